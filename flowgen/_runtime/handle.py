"""`WorkflowHandle`: what `Engine.start` and `Engine.get` return.

A handle is a workflow id and the engine that runs it; every question it answers (status,
result, history, what it waits for) is asked of that engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowgen._stores.protocol import WorkflowRecord
from flowgen._vocabulary.errors import UnknownWorkflow
from flowgen._vocabulary.events import Event

if TYPE_CHECKING:  # the engine imports this module; the handle only refers to it
    from flowgen._runtime.engine import Engine

__all__ = ["WorkflowHandle"]


class WorkflowHandle:
    """A handle on a workflow id: its result, status, history; signal, cancel or query it.

    Returned by `Engine.start` and `Engine.get`. It follows a continue-as-new chain: the
    result is the last run's.

    Attributes:
        workflow_id: The workflow id.
        run_id: The id of the run the handle was created for.
    """

    def __init__(self, engine: Engine, workflow_id: str, run_id: str) -> None:
        self._engine = engine
        self.workflow_id = workflow_id
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow_id!r} {self.status()}>"

    def _repr_html_(self) -> str:
        from flowgen._render.html import handle_html

        return handle_html(self)

    def record(self) -> WorkflowRecord:
        """The row of the latest run of this workflow id."""
        record = self._engine.store.get_run(self.workflow_id)
        if record is None:  # pragma: no cover - a handle only exists for a stored run
            raise UnknownWorkflow(f"no workflow with id {self.workflow_id!r}")
        return record

    def status(self) -> str:
        """The latest run's status: ``running``, ``completed``, ``failed``, ``cancelled``, ..."""
        return self._engine._status(self.workflow_id)

    def stuck(self) -> BaseException | None:
        """Why this running workflow cannot make progress in this process, or ``None``.

        A run is stuck when its code is not registered here (`UnknownWorkflow`) or no
        longer matches its history (`NonDeterminismError`). What happens to it (signals,
        cancels) is still recorded; it moves again when a process with fixed code opens
        the file.
        """
        return self._engine._stuck(self.workflow_id)

    def result(self, timeout: float | None = None) -> object:
        """Wait for the workflow to finish and return its result (decoded to its type).

        On an engine without background threads this drives the engine by hand until the
        run finishes or nothing is left to do.

        Args:
            timeout: Seconds to wait; ``None`` waits as long as it takes.

        Raises:
            WorkflowFailed: The run failed, was cancelled or terminated.
            TimeoutError: The run did not finish in time (or is waiting on something that
                only a signal can bring, on a hand-driven engine).
            UnknownWorkflow: The run's workflow code is not registered in this process.
            NonDeterminismError: The code no longer matches the run's history.
        """
        return self._engine._result(self.workflow_id, timeout)

    def history(self) -> list[Event]:
        """The latest run's events, in order (a list that renders as a table in Jupyter)."""
        from flowgen._render.html import History

        record = self.record()
        return History(
            self._engine.store.load_history(record.workflow_id, record.run_id)
        )

    def signal(self, name: str, payload: object = None) -> None:
        """Send this workflow a signal (see `Engine.signal`)."""
        self._engine.signal(self.workflow_id, name, payload)

    def cancel(self, reason: str = "") -> None:
        """Cancel this workflow (see `Engine.cancel`)."""
        self._engine.cancel(self.workflow_id, reason)

    def query(self, name: str, *args: object) -> object:
        """Ask this workflow a question (see `Engine.query`)."""
        return self._engine.query(self.workflow_id, name, *args)

    def update(
        self,
        name: str,
        *args: object,
        update_id: str | None = None,
        timeout: float | None = None,
    ) -> object:
        """Send this workflow an update and wait for its result (see `Engine.update`)."""
        return self._engine.update(
            self.workflow_id, name, *args, update_id=update_id, timeout=timeout
        )

    def waiting_for(self) -> dict[int, str]:
        """What the run awaits right now, by seq: ``{3: "activity 'charge'"}``."""
        return self._engine._waiting_for(self.workflow_id)

    def timeline(self, **options: Any) -> Any:
        """A chart of this run: see `flowgen.notebook.timeline` (needs ``flowgen-durable[notebook]``)."""
        from flowgen._render.timeline import timeline

        return timeline(self, **options)
