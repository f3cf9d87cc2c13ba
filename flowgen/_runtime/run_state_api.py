"""What a `WorkflowHandle` reads of a run: its status, why it is stuck, what it waits for.

A mixin of `Engine`, as `flowgen._runtime.schedule_api` is, so the engine's module stays
the life cycle and the run API. The rules:

* The run table and the interpreters belong to the decision loop: a run it holds is read
  under its lock (the status) or on its thread (`Call`: why it is stuck, what it waits
  for); a run it does not hold is read from the store.
* A run another engine of a fleet holds is never stuck here, unless no engine can hold it
  for want of its code (`flowgen._runtime.fleet.Fleet.waits_for_code`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowgen._runtime.arguments import timeout_argument
from flowgen._runtime.fleet import Fleet
from flowgen._runtime.items import Call, Item
from flowgen._runtime.limits import WaitingActivity
from flowgen._runtime.loop import DecisionLoop
from flowgen._runtime.results import ResultWaiter
from flowgen._stores.protocol import Store
from flowgen._vocabulary.commands import describe_command
from flowgen._vocabulary.errors import UnknownWorkflow

__all__ = ["RunStateMethods"]


class RunStateMethods:
    """The run-reading methods of `Engine` (for `WorkflowHandle`)."""

    _loop: DecisionLoop
    _fleet: Fleet | None
    _results: ResultWaiter
    store: Store

    if TYPE_CHECKING:  # the engine's own

        def _submit(self, item: Item) -> object: ...

    def _status(self, workflow_id: str) -> str:
        with self._loop.lock:  # the run table belongs to the decision loop
            run = self._loop.table.current_run(workflow_id)
            status: str | None = None if run is None else run.status
        if status is None:
            record = self.store.get_run(workflow_id)
            if record is None:
                raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
            status = record.status
        # The plain string on every path ('running', not <RunStatus.RUNNING: 'running'>):
        # the table holds RunStatus members, a store may hand back either.
        return str(status)

    def _stuck(self, workflow_id: str) -> BaseException | None:
        loop = self._loop

        # (In a tuple: an exception as the answer would be raised to the caller.)
        def read() -> tuple[
            BaseException | None
        ]:  # on the loop: the run table is its own
            run = loop.table.current_run(workflow_id)
            if run is None:
                raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
            # A run held without its interpreter (parked on open, or evicted) finds out
            # now whether its code is here and still matches its history.
            loop.rebuild(run)
            return (run.stuck,)

        with loop.lock:
            held = loop.table.current_run(workflow_id) is not None
        if not held:
            self._status(workflow_id)  # UnknownWorkflow for an unknown id
            if self._fleet is None:
                return None
            return self._fleet.waits_for_code(self.store.get_run(workflow_id))
        answer = self._submit(Call(read))
        assert isinstance(answer, tuple)
        stuck: BaseException | None = answer[0]
        return stuck

    def waiting_activities(self) -> list[WaitingActivity]:
        """The activity attempts this engine holds back, oldest first, and why.

        An attempt waits for its task queue (this engine does not serve it) or for a
        permit (``max_concurrent`` or ``rate_limit``). Waiting records nothing: the call
        is pending in its run's history, and it starts when it may.
        """
        answer = self._submit(Call(self._loop.gate.waiting))
        assert isinstance(answer, list)
        return answer

    def _waiting_for(self, workflow_id: str) -> dict[int, str]:
        loop = self._loop

        def read() -> dict[int, str]:  # on the decision loop: interpreters are its own
            run = loop.table.running(workflow_id)
            if run is None:
                return {}
            interp = loop.cache.get(run)
            return {
                seq: describe_command(c) for seq, c in sorted(interp.pending.items())
            }

        answer = self._submit(Call(read))
        assert isinstance(answer, dict)
        return answer

    def _result(self, workflow_id: str, timeout: float | None) -> object:
        return self._results.result(workflow_id, timeout_argument(timeout))
