"""`Engine`'s reset, retry and prune: thin, checked entries into their rules' modules.

A mixin, as `flowgen._runtime.schedule_api` is, so the engine's module stays the life
cycle and the run API. The rules live in `flowgen._runtime.lineage` (reset and retry) and
`flowgen._runtime.retention` (prune); this module only checks arguments and submits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flowgen._runtime.arguments import run_id_argument
from flowgen._runtime.clock import Clock
from flowgen._runtime.handle import WorkflowHandle
from flowgen._runtime.items import Call, Item
from flowgen._runtime.lineage import OriginKind, Relaunch
from flowgen._runtime.retention import PruneResult, prune_runs
from flowgen._runtime.tracing import Telemetry
from flowgen._stores.protocol import Store

__all__ = ["LineageMethods"]


class LineageMethods:
    """The reset, retry and prune methods of `Engine`."""

    clock: Clock
    store: Store
    _telemetry: Telemetry | None

    if TYPE_CHECKING:  # the engine's own

        def _submit(self, item: Item) -> object: ...
        def _submit_starts(self, items: Sequence[Item]) -> list[object]: ...
        def _handle(self, answer: object) -> WorkflowHandle: ...
        def _check_id(self, value: object) -> str: ...

    def reset(
        self,
        workflow_id: str,
        *,
        event_id: int,
        run_id: str | None = None,
        terminate: bool = False,
    ) -> WorkflowHandle:
        """A new run of *workflow_id*: a closed run's events 0..*event_id* replayed, then live.

        ``engine.reset("order-o-1", event_id=12)``; *event_id* is the ``#`` of ``flowgen
        show``. *run_id* picks a run (the latest by default); *terminate* ends a running
        one first. The earlier run is kept. Rules: `flowgen._runtime.lineage`.

        Raises:
            UnknownWorkflow: No run has this id (or run id).
            WorkflowStillRunning: The id's latest run runs (and not *terminate*).
            ValueError: *event_id* is out of the run's range.
        """
        return self._relaunch(workflow_id, "reset", run_id, event_id, terminate)

    def retry(
        self, workflow_id: str, *, run_id: str | None = None, terminate: bool = False
    ) -> WorkflowHandle:
        """A fresh run of *workflow_id* with a closed run's arguments (see `reset`)."""
        return self._relaunch(workflow_id, "retry", run_id, None, terminate)

    def _relaunch(
        self, workflow_id: str, kind: OriginKind, *request: Any
    ) -> WorkflowHandle:
        run_id, event_id, terminate = request
        item = Relaunch.of(
            self._check_id(workflow_id),
            kind,
            run_id_argument(run_id),
            event_id,
            terminate,
            self.clock,
        )
        if self._telemetry is not None:  # the caller's span: the new run's parent
            item.trace_parent = self._telemetry.caller_context()
        # On a fleet, a run held elsewhere is terminated by its holder first.
        (answer,) = self._submit_starts([item])
        if isinstance(answer, BaseException):
            raise answer
        return self._handle(answer)

    def prune(
        self,
        older_than: timedelta | float | str,
        *,
        export_to: str | os.PathLike[str] | None = None,
    ) -> PruneResult:
        """Delete, live, the runs closed longer ago than *older_than* (``"30d"``, seconds, ...).

        ``engine.prune(older_than=timedelta(days=30), export_to="archive/")``: with
        *export_to*, the runs are written to Parquet there first. Rules and errors:
        `flowgen._runtime.retention`.
        """
        on_loop = lambda fn: self._submit(Call(fn))  # noqa: E731  # one chunk, on the loop
        return prune_runs(self.store, self.clock.now(), on_loop, older_than, export_to)
