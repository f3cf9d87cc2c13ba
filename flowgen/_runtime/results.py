"""Waiting for a run's result: what `WorkflowHandle.result` does, on any thread.

Rules:

- The answer comes from memory while the decision loop holds the run: the loop publishes
  how a run ended (`flowgen._runtime.runs.Outcome`) once the batch that ended it is
  committed, never before, so a caller never sees an outcome that a failed commit takes
  back. Otherwise it comes from the store.
- The run table belongs to the decision loop: a waiting caller looks at it only through
  `RunTable.view` and `RunTable.held`, while holding the loop's lock (so it sees the state
  between two batches, never half a batch), and never holds that lock while it waits or
  reads the store.
- A background engine notifies `DecisionLoop.closed` after every batch that closed runs;
  waiters also look again every `_POLL_SECONDS`, because some changes (a run getting stuck)
  notify nobody.
- In a fleet, a run this engine does not hold (another engine's, or nobody's yet) closes
  elsewhere: its caller waits on the engine's one listener for closed runs
  (`flowgen._runtime.closings`), registered before it reads the store, and looks again
  only when told or every `FleetOptions.poll` seconds (the fallback), never every
  `_POLL_SECONDS`. A thread-less caller (`on_closed`) is called back from there too.
- A hand-driven engine has no loop thread: the waiting caller drives it
  (`Engine.run_until_idle`) until the run ends or nothing is left to do; then it waits for
  the next timer only on a real clock, and says what the run waits for when nothing can
  happen any more.
- If a background thread died, the engine has stopped: every waiter raises why.
- A continued-as-new run is not an outcome: the caller waits for the last run of the chain.
- An update's caller waits the same way, on the ticket the decision loop answered it with
  (`flowgen._runtime.updates`), with the same rules for background and hand-driven engines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from flowgen._core.dsl import workflow_return_type
from flowgen._runtime.clock import MAX_WAIT_SECONDS, Clock, ManualClock, monotonic
from flowgen._runtime.closings import watch_closings
from flowgen._runtime.fleet import fleet_of
from flowgen._runtime.registry import Registry
from flowgen._runtime.runs import Outcome
from flowgen._runtime.timers import TimerHeap
from flowgen._runtime.updates import UpdateTicket
from flowgen._stores.codec import decode
from flowgen._stores.protocol import Store, WorkflowRecord
from flowgen._vocabulary.errors import ErrorInfo, UnknownWorkflow, WorkflowFailed
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:  # the loop is handed in; this module only names its type
    from flowgen._runtime.loop import DecisionLoop

__all__ = ["ResultWaiter"]

_POLL_SECONDS = 0.05
"""How often a waiting caller looks again without being notified."""


class ResultWaiter:
    """Answers `WorkflowHandle.result` for one engine.

    Args:
        loop: The engine's decision loop (its lock, run table and ``closed`` condition).
        store: Where runs the loop does not hold are read.
        registry: Where a result's type is found (the workflow's return annotation).
        clock: The engine's clock (a hand-driven engine on a real clock waits for timers).
        timers: The engine's timers (when the next one is due).
        background: True while the engine runs its own threads.
        drive: Drives a hand-driven engine until idle; returns its rounds of work.
        waiting_for: What a run waits for, for the message of a hand-driven timeout.
        failure: Why the engine stopped, if a background thread died (raised to waiters).
    """

    def __init__(
        self,
        loop: DecisionLoop,
        store: Store,
        registry: Registry,
        clock: Clock,
        timers: TimerHeap,
        *,
        background: Callable[[], bool],
        drive: Callable[[], int],
        waiting_for: Callable[[str], dict[int, str]],
        failure: Callable[[], BaseException | None],
    ) -> None:
        self._loop = loop
        self._store = store
        self._registry = registry
        self._clock = clock
        self._timers = timers
        self._background = background
        self._drive = drive
        self._waiting_for = waiting_for
        self._failure = failure
        # Callbacks of callers that wait without a thread (`flowgen.aio`), by workflow id.
        # Guarded by `_listeners_lock`: added on any thread, fired on the loop's thread.
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._listeners_lock = threading.Lock()
        loop.on_closed = self._closed
        options = fleet_of(store)
        self._closings = watch_closings(
            store, None if options is None else options.poll, background
        )

    def on_closed(
        self, workflow_id: str, callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Call *callback* once, when a run of *workflow_id* next closes.

        For a caller that waits without holding a thread: it registers, then looks (so a
        run that closes in between is not missed), then waits for the call. A run that
        continues as new closes too: the caller looks again and registers again.
        *callback* runs on the decision loop's thread, so it must be quick and must not
        block (an event loop's ``call_soon_threadsafe``).

        Returns:
            A function that withdraws the callback (a no-op once it has run).
        """
        with self._listeners_lock:
            self._listeners.setdefault(workflow_id, []).append(callback)
        # In a fleet the run may close on another engine: hear of that too (once).
        unwatch: Callable[[], None] = _nothing
        if self._closings is not None and self._background():
            unwatch = self._closings.watch(
                workflow_id, partial(self._heard, workflow_id)
            )

        def withdraw() -> None:
            unwatch()
            with self._listeners_lock:
                waiting = self._listeners.get(workflow_id, [])
                if callback in waiting:
                    waiting.remove(callback)
                if not waiting:
                    self._listeners.pop(workflow_id, None)

        return withdraw

    def _heard(self, workflow_id: str) -> None:
        # On the closings listener's thread: a run of *workflow_id* closed somewhere.
        self._closed([workflow_id])

    def _closed(self, workflow_ids: list[str]) -> None:
        with self._listeners_lock:
            due = [
                callback
                for workflow_id in workflow_ids
                for callback in self._listeners.pop(workflow_id, ())
            ]
        for callback in due:
            try:
                callback()
            except Exception:  # a waiter's bug must not stop the loop
                logging.getLogger("flowgen").exception(
                    "flowgen: a result callback failed"
                )

    def result(self, workflow_id: str, timeout: float | None) -> object:
        """Wait for *workflow_id* to finish; its decoded result (see `WorkflowHandle.result`)."""
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            failure = self._failure()
            if failure is not None:
                raise failure
            if self._background():
                with self._loop.lock:
                    view = self._loop.table.view(workflow_id)
                if view.owed:
                    # Running, or closed in a batch not committed yet: wait for the loop.
                    self._wait_closed(workflow_id, timeout, deadline)
                    continue
                if view.outcome is not None:
                    return self._value(workflow_id, view.outcome)
            if self._closings is not None and self._background():
                ended = self._wait_elsewhere(workflow_id, timeout, deadline)
                if ended is not None:
                    return self._value(workflow_id, ended)
                continue
            record = self._store.get_run(workflow_id)
            if record is None:
                raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
            ended = self._ended(record)
            if ended is not None:
                return self._value(workflow_id, ended)
            self._raise_if_no_code(record)
            if not self._background():
                if self._drive() > 1:
                    continue
                ended = self._ended(self._store.get_run(workflow_id), held=False)
                if ended is not None:
                    return self._value(workflow_id, ended)
                if self._waited_for_timer(deadline):
                    continue
                waits = ", ".join(self._waiting_for(workflow_id).values()) or "nothing"
                raise TimeoutError(
                    f"workflow {workflow_id!r} is still running, waiting for {waits}; "
                    f"nothing else can happen on this hand-driven engine until you signal "
                    f"it or advance the clock"
                )
            self._wait_closed(workflow_id, timeout, deadline)

    def update_end(self, ticket: UpdateTicket, timeout: float | None) -> object:
        """Wait for an accepted update to end; its decoded result (see `Engine.update`).

        The same rules as `result`: a background engine's caller waits on the ticket; a
        hand-driven engine's caller drives it until the update ends or nothing can happen.

        Raises:
            UpdateFailed: The handler raised.
            WorkflowClosed: The run ended before the update did.
            TimeoutError: *timeout* passed first; the update goes on.
        """
        deadline = None if timeout is None else monotonic() + timeout
        end = ticket.end
        while not end.done():
            failure = self._failure()
            if failure is not None:
                raise failure
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"update {ticket.name!r} (id {ticket.update_id!r}) of workflow "
                    f"{ticket.workflow_id!r} did not finish within {timeout} s; it goes "
                    f"on: call update() again with update_id={ticket.update_id!r}"
                )
            if self._background():
                wait = (
                    _POLL_SECONDS
                    if remaining is None
                    else min(remaining, _POLL_SECONDS)
                )
                try:
                    end.exception(timeout=wait)
                except TimeoutError:
                    pass
                continue
            if self._drive() > 1 or end.done() or self._waited_for_timer(deadline):
                continue
            waits = (
                ", ".join(self._waiting_for(ticket.workflow_id).values()) or "nothing"
            )
            raise TimeoutError(
                f"update {ticket.name!r} (id {ticket.update_id!r}) of workflow "
                f"{ticket.workflow_id!r} is still running; the run waits for {waits}; "
                f"nothing else can happen on this hand-driven engine until you signal it "
                f"or advance the clock"
            )
        return ticket.value(end.result())

    def _ended(
        self, record: WorkflowRecord | None, *, held: bool = True
    ) -> Outcome | None:
        """The stored run's outcome if it has ended for good, else ``None``.

        With *held*, the loop's own view of the run wins: a run it holds as stuck raises
        why, and one it still runs has not ended whatever a stale read says.
        """
        if record is None:
            return None
        if held:
            with self._loop.lock:
                in_memory = self._loop.table.held((record.workflow_id, record.run_id))
            if in_memory is not None and in_memory[1] is not None:
                # It cannot move until code that matches its history reopens the file.
                raise in_memory[1].with_traceback(None)
            if in_memory is not None and in_memory[0]:
                return None
        # The last run of a continue-as-new chain answers, not this one.
        if not record.is_closed or record.status == RunStatus.CONTINUED_AS_NEW:
            return None
        return Outcome(
            record.run_id,
            record.name,
            RunStatus(record.status),
            record.result,
            record.error,
        )

    def _waited_for_timer(self, deadline: float | None) -> bool:
        """On a real clock, sleep until the next timer (or *deadline*); True to look again.

        A hand-driven engine with nothing left to do now can still move when a timer comes
        due, but only on a real clock: a `ManualClock` moves only when told.
        """
        next_due = self._timers.next_due()
        if next_due is None or isinstance(self._clock, ManualClock):
            return False
        wait = (next_due - self._clock.now()).total_seconds()
        if deadline is not None:
            wait = min(wait, deadline - monotonic())
        if wait > 0:
            self._timers.wakeup.wait(min(wait, MAX_WAIT_SECONDS))
        return deadline is None or monotonic() < deadline

    def _wait_elsewhere(
        self, workflow_id: str, timeout: float | None, deadline: float | None
    ) -> Outcome | None:
        """In a fleet, a run the loop does not hold: its outcome, or ``None`` once told.

        Listens before it reads (see the module's rules); waits until the listener hears
        that a run of *workflow_id* closed, or the fleet's poll passes.
        """
        closings = self._closings
        assert closings is not None
        told = threading.Event()
        unwatch = closings.watch(workflow_id, told.set)
        try:
            record = self._store.get_run(workflow_id)
            if record is None:
                raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
            ended = self._ended(record)
            if ended is not None:
                return ended
            self._raise_if_no_code(record)
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"workflow {workflow_id!r} did not finish within {timeout} s"
                )
            told.wait(
                closings.poll if remaining is None else min(remaining, closings.poll)
            )
            return None
        finally:
            unwatch()

    def _raise_if_no_code(self, record: WorkflowRecord) -> None:
        """A fleet's run no engine holds, whose code this engine lacks, raises why."""
        fleet = self._loop.fleet
        waiting = None if fleet is None else fleet.waits_for_code(record)
        if waiting is not None:
            raise waiting

    def _wait_closed(
        self, workflow_id: str, timeout: float | None, deadline: float | None
    ) -> None:
        remaining = None if deadline is None else deadline - monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(
                f"workflow {workflow_id!r} did not finish within {timeout} s"
            )
        with self._loop.closed:
            self._loop.closed.wait(
                _POLL_SECONDS if remaining is None else min(remaining, _POLL_SECONDS)
            )

    def _value(self, workflow_id: str, outcome: Outcome) -> object:
        """The run's result decoded to its workflow's return type, or `WorkflowFailed`."""
        return outcome_value(self._registry, workflow_id, outcome)


def _nothing() -> None:
    """Withdraws nothing."""


def outcome_value(registry: Registry, workflow_id: str, outcome: Outcome) -> object:
    """A completed run's result decoded to its type; `WorkflowFailed` for any other end."""
    if outcome.status == RunStatus.COMPLETED:
        try:
            fn = registry.workflow(outcome.name).fn
            return decode(outcome.result, workflow_return_type(fn))
        except UnknownWorkflow:
            return outcome.result
    status = outcome.status.value
    raise WorkflowFailed(workflow_id, status, outcome.error or ErrorInfo(status, ""))
