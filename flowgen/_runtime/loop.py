"""The decision loop: every interpreter, fed one batch of items at a time, one commit each.

Theory of operation
===================

One *decision loop* owns every interpreter (and so every live generator). Everything that
happens to a run reaches it as an item (`flowgen._runtime.items`) in one inbox
(`flowgen._runtime.inbox`). The loop takes every item waiting (up to ``max_batch``),
applies each to its run's interpreter, and gathers the events and row changes of all of them into one `Batch`, which the store commits
in **one transaction** (group commit: ~2 ms of DuckDB CPU shared by every step in it). Only
after the commit does it act: start activities, arm timers, answer callers. So nothing is
acted on that is not durable, and nothing acknowledged (a start, a signal, a result) can be
lost, even to ``kill -9``.

Reading order: `DecisionLoop.run` (the thread) takes items; `process` applies a batch and
commits it; `_apply` dispatches one item; `_feed` records an event for a run and feeds it to
its interpreter; `handle_step` records what the interpreter decided; `_decided` schedules
the effects of each decision (after the commit); `_ended` closes a run. The items of
other modules are applied there, on the loop (`loop` handed in): timers and deadlines
(`flowgen._runtime.timers.apply_due`), recovered and parked runs
(`flowgen._runtime.recovery.apply_recover`, `hold_parked`), resets and retries
(`flowgen._runtime.lineage.apply_relaunch`), updates (`flowgen._runtime.updates`) and
queries (`flowgen._runtime.queries`).

When the engine traces, `_apply_start` decides a run's span (recorded in its
``WorkflowStarted``), `_ended` emits it after the commit (`flowgen._runtime.tracing`).

Work that crosses runs stays in the same transaction: a child's start, a signal one
workflow sends another, a child's result delivered to its parent, a cancel propagated to a
child, the next run of a continue-as-new. They are appended to the batch's work as they
appear.

If the commit fails, nothing of the batch was written: the runs it touched are put back as
they were (their interpreters dropped, to be rebuilt by replay), callers get the error, and
news from workers and timers is queued again.

Locking: the loop's state (the run table, the interpreter cache, the batch being built) is
touched only while `DecisionLoop.lock` is held. The loop thread holds it for each batch; an
activity thread holds it while it processes its own outcome, if the loop was idle
(`flowgen._runtime.loop_thread`); a hand-driven engine's caller holds it while it pumps the
inbox; callers that read a run's state take it between batches. Anyone may put into the inbox; only the loop takes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any

from flowgen._core.interpreter import Interpreter, Step
from flowgen._runtime.attempts import Attempts
from flowgen._runtime.cache import InterpreterCache
from flowgen._runtime.clock import Clock
from flowgen._runtime.crossing import (
    ParentClosed,
    child_start,
    children_at_close,
    news_for_parent,
    next_run,
)
from flowgen._runtime.inbox import Inbox
from flowgen._runtime.items import (
    STUCK_ERRORS,
    Call,
    CancelItem,
    Due,
    Feed,
    Hold,
    Item,
    Key,
    Query,
    Recover,
    Run,
    SignalItem,
    Start,
    Txn,
)
from flowgen._runtime.jobs import Jobs
from flowgen._runtime.limits import Gate
from flowgen._runtime.lineage import Relaunch, apply_relaunch
from flowgen._runtime.loop_thread import hand_in, run_loop
from flowgen._runtime.prefetch import stored_runs_for_starts, woken_runs
from flowgen._runtime.queries import answer_query
from flowgen._runtime.recovery import apply_recover, hold_parked
from flowgen._runtime.registry import Registry
from flowgen._runtime.runs import Outcome, RunTable
from flowgen._runtime.starts import start_conflict
from flowgen._runtime.timers import TimerHeap, apply_due
from flowgen._runtime.tracing import RunTrace, Telemetry
from flowgen._runtime.updates import UpdateItem, UpdateWaiters, apply_update
from flowgen._stores.codec import CODEC, encode
from flowgen._stores.permits import Permits
from flowgen._stores.protocol import (
    EventRow,
    MessagesRaced,
    RunUpdate,
    Store,
    WorkflowRecord,
)
from flowgen._vocabulary.commands import (
    CallActivity,
    RecordSideEffect,
    SendSignal,
    StartChild,
)
from flowgen._vocabulary.errors import (
    ErrorInfo,
    FlowgenError,
    HistoryCorruptError,
    LeaseLost,
    NonDeterminismError,
    StoreError,
    UnknownWorkflow,
    UsageError,
    WorkflowClosed,
)
from flowgen._vocabulary.events import (
    NOTE_EVENTS,
    ActivityAttemptFailed,
    ActivityScheduled,
    CancelRequested,
    ChildStarted,
    CommandCancelled,
    Event,
    SideEffectRecorded,
    SignalReceived,
    SignalSendFailed,
    SignalSent,
    SignalWaitStarted,
    TagsSet,
    TimerStarted,
    UpdateCompleted,
    UpdateErrored,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
    WorkflowStarted,
    WorkflowTerminated,
)
from flowgen._vocabulary.retry import RetryPolicy
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:  # the fleet is handed in, only on a fleet's store
    from flowgen._runtime.fleet import Fleet

__all__ = ["DecisionLoop"]

log = logging.getLogger("flowgen")

_RETRY_NEWS_SECONDS = 0.05
"""How long news from a worker or a timer waits before it is tried again after a failed commit."""

_STATUS_OF_END: dict[type, RunStatus] = {
    WorkflowCompleted: RunStatus.COMPLETED,
    WorkflowErrored: RunStatus.FAILED,
    WorkflowCancelled: RunStatus.CANCELLED,
    WorkflowContinuedAsNew: RunStatus.CONTINUED_AS_NEW,
    WorkflowTerminated: RunStatus.TERMINATED,
}


class DecisionLoop:
    """Applies items to interpreters in batches, one commit per batch.

    Args:
        store: Where batches are committed and histories read.
        registry: Workflow and activity functions by name.
        clock: Where the time comes from.
        retry: The engine's retry policy for activities that declare none.
        timers: Where timers are armed (after commit).
        jobs: Where activity attempts run.
        cache_size: Live interpreters kept in memory.
        max_batch: The most items one batch takes.
        permits: Where activity limits are counted (`flowgen._stores.permits`).
        task_queues: The task queues whose activities this engine runs.
        telemetry: Spans and metrics, when the engine traces (`flowgen._runtime.tracing`).
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        retry: RetryPolicy,
        *,
        timers: TimerHeap,
        jobs: Jobs,
        cache_size: int,
        max_batch: int,
        permits: Permits,
        task_queues: frozenset[str],
        telemetry: Telemetry | None = None,
    ) -> None:
        self.store = store
        self.telemetry = telemetry
        self.registry = registry
        self.clock = clock
        self.timers = timers
        self.jobs = jobs
        self.max_batch = max_batch
        self.inbox = Inbox()
        """Items for the loop: any thread puts, only the loop takes."""
        self.lock = threading.RLock()
        """Held while a batch is applied: guards `table`, `cache` and the batch state."""
        self.closed = threading.Condition()
        """Notified after every committed batch that closed runs (result waiters)."""
        self.on_closed: Callable[[list[str]], None] | None = None
        """Called on the loop's thread, after a batch is committed, with the workflow ids
        of the runs it closed (`ResultWaiter.finished` wakes the callers that wait without
        a thread). Must be quick and must not block."""
        self.table = RunTable()
        self.cache = InterpreterCache(store, registry, cache_size)
        self.gate = Gate.of_loop(self, permits, task_queues)
        """Holds activity attempts back for their task queue and limits."""
        self.attempts = Attempts(
            registry,
            retry,
            clock,
            jobs,
            timers,
            self.inbox.put,
            hand_in=self.hand_in,
            gate=self.gate,
            telemetry=telemetry,
            trace_of=self._trace_of,
        )
        self.updates = UpdateWaiters()
        """Callers waiting for updates to end (`flowgen._runtime.updates`)."""
        self.commits = 0
        """Batches committed (read by anyone: a statistic)."""
        self.steps = 0
        """Events fed to interpreters (read by anyone: a statistic)."""
        # The stored runs of the ids this batch's starts use, read in one go.
        self._prefetched: dict[str, WorkflowRecord | None] = {}
        self.running: Callable[[], bool] | None = None
        """Whether the engine still runs, once the loop thread does; ``None`` before and
        after (`flowgen._runtime.loop_thread`: when outcomes may be handed in)."""
        self.asleep = False
        """The loop thread waits for the inbox with no timeout (`loop_thread`)."""
        self.fleet: Fleet | None = None
        """This engine's part of a fleet (`flowgen._runtime.fleet`), on a store shared
        by many engines: where runs this engine does not hold are reached."""

    # -- the thread ---------------------------------------------------------------------------

    def run(self, running: Callable[[], bool]) -> None:
        """The loop thread (`flowgen._runtime.loop_thread.run_loop`)."""
        run_loop(self, running)

    def hand_in(self, items: list[Item]) -> None:
        """An attempt's reports, from its thread (`flowgen._runtime.loop_thread`)."""
        hand_in(self, items)

    def _trace_of(self, key: Key) -> RunTrace | None:
        # Called as an attempt is submitted (after the commit, under the loop's lock).
        run = self.table.runs.get(key)
        return None if run is None else run.trace

    def take(self, *, block: bool, timeout: float | None = None) -> list[Item]:
        """Up to ``max_batch`` items from the inbox (waiting for the first if *block*)."""
        return self.inbox.take(self.max_batch, block=block, timeout=timeout)

    def pump(self) -> bool:
        """Process every item in the inbox on this thread (hand-driven). True if any was."""
        did = False
        with self.lock:
            while True:
                items = self.take(block=False)
                if not items:
                    return did
                did = True
                self.process(items)

    def process_locked(self, items: list[Item]) -> None:
        """`process` under the loop's lock (recovery, from the engine's constructor)."""
        with self.lock:
            self.process(items)

    # -- the batch ----------------------------------------------------------------------------

    def process(self, items: list[Item]) -> None:
        """Apply *items* and commit them as one transaction; then act and answer."""
        self.table.begin()
        self._prefetch(items)
        txn = Txn(work=list(items))
        answers = self._apply_all(items, txn)
        if answers is None or (txn.batch and not self._commit(items, txn)):
            return
        for effect in txn.effects:
            effect()
        for future, answer in answers:
            if future.done():
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
        closed = self.table.settle()
        for key in closed:
            self.cache.drop(key)
        self.cache.trim()
        if txn.batch.updates:
            with self.closed:
                self.closed.notify_all()
        if closed and self.on_closed is not None:
            self.on_closed([workflow_id for workflow_id, _ in closed])

    def _apply_all(
        self, items: list[Item], txn: Txn
    ) -> list[tuple[Future[object], object]] | None:
        """Apply the batch's work, item by item: the answers, or ``None`` if abandoned."""
        answers: list[tuple[Future[object], object]] = []
        index = 0
        while index < len(txn.work):
            item = txn.work[index]
            index += 1
            if item.message is not None:  # a fleet's message: consumed with the batch
                txn.batch.consumed.append(item.message)
            try:
                answer = self._apply(item, txn)
            except StoreError as exc:
                # A read failed halfway through an item: the batch may hold half a step.
                # Drop all of it, exactly as if its commit had failed.
                self._abandon(items, txn.snapshots, exc)
                return None
            except Exception as exc:  # noqa: BLE001  # to the caller, e.g. a query handler's error
                if item.future is not None:
                    answers.append((item.future, exc))
                else:
                    log.error("flowgen: %s failed: %r", type(item).__name__, exc)
                continue
            if item.future is not None:
                answers.append((item.future, answer))
        return answers

    def _commit(self, items: list[Item], txn: Txn) -> bool:
        """Commit the batch; False if it failed (then it was undone, or applied again)."""
        try:
            self.store.commit(txn.batch)
        except (LeaseLost, MessagesRaced) as exc:  # nothing written: apply again
            if self.fleet is None:
                raise
            for key in self.table.undo(txn.snapshots):
                self.cache.drop(key)
            self.process(self.fleet.again(exc, items))
            return False
        except Exception as exc:  # noqa: BLE001  # nothing was written: undo and report
            self._abandon(items, txn.snapshots, exc)
            return False
        self.commits += 1
        return True

    def _abandon(
        self, items: list[Item], snapshots: dict[Key, Run | None], exc: Exception
    ) -> None:
        """Nothing of the batch was written: undo it, fail its callers, retry its news."""
        for key in self.table.undo(snapshots):
            self.cache.drop(key)
        error = (
            exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {exc}")
        )
        for item in items:
            if item.future is not None:
                if not item.future.done():
                    item.future.set_exception(error)
            elif isinstance(item, (Feed, Due, Call)):  # a Call without a caller: news
                item.future = None
                self.jobs.later(partial(self.inbox.put, item), _RETRY_NEWS_SECONDS)
        log.error("flowgen: store failed, batch undone: %s", exc)

    def _apply(self, item: Item, txn: Txn) -> object:
        match item:
            case Start():
                return self._apply_start(item, txn)
            case SignalItem():
                self._apply_signal(item, txn)
            case CancelItem():
                self._apply_cancel(item, txn)
            case Feed():
                self._apply_feed(item, txn)
            case Due():
                apply_due(self, item, txn)
            case Recover():
                apply_recover(self, item, txn)
            case Relaunch():
                return apply_relaunch(self, item, txn)
            case Hold():
                hold_parked(self, item)
            case Query():
                return answer_query(self, item)
            case UpdateItem():
                return apply_update(self, item, txn)
            case Call():
                return item.fn()
        return None

    def _apply_signal(self, item: SignalItem, txn: Txn) -> None:
        run = self._open_run(item, txn)
        if run is None:
            return  # posted to the engine that holds it
        event = SignalReceived(
            at=self.clock.now(),
            name=item.name,
            payload=item.payload,
            index=run.signals,
            sender=item.sender,
        )
        self._feed(run, event, txn)

    def _apply_cancel(self, item: CancelItem, txn: Txn) -> None:
        run = self._open_run(item, txn)
        if run is None or (run.cancel_requested and not item.terminate):
            return  # posted to its holder, or the first request is being honoured
        request = WorkflowTerminated if item.terminate else CancelRequested
        self._feed(run, request(at=self.clock.now(), reason=item.reason), txn)

    def _apply_feed(self, item: Feed, txn: Txn) -> None:
        target = self.table.running(item.workflow_id, item.run_id)
        if target is not None:
            self._feed(target, item.event, txn)
        elif self.fleet is not None:  # another engine's run now, or ended
            self.fleet.forward(item, txn)

    def _parent_closed(self, item: ParentClosed, txn: Txn) -> None:
        child = self.table.running(item.workflow_id)
        if child is None:  # it ended meanwhile, or another engine holds it: tell it
            request = CancelItem(
                item.workflow_id, item.reason, terminate=item.terminate
            )
            self._open_run(request, txn, quiet=True)
            return
        now = self.clock.now()
        if item.terminate:
            self._feed(child, WorkflowTerminated(at=now, reason=item.reason), txn)
        elif not child.cancel_requested:
            self._feed(child, CancelRequested(at=now, reason=item.reason), txn)

    # -- what `flowgen._runtime.updates` calls ------------------------------------------------

    def feed_run(
        self, run: Run, event: Event, txn: Txn, interp: Interpreter | None = None
    ) -> None:
        """`_feed` for another module of the loop (an accepted update, a timer...)."""
        self._feed(run, event, txn, interp=interp)

    def open_run(self, workflow_id: str, *, takes: str = "signals or cancels") -> Run:
        """The running run of *workflow_id*, or why not, naming what it no longer *takes*."""
        run = self.table.running(workflow_id)
        if run is not None:
            return run
        # A run that ended in this very batch is not in the store yet: the table knows.
        held = self.table.runs.get(self.table.key_of(workflow_id))
        status: str
        if held is not None:
            status = held.status
        else:
            record = self.store.get_run(workflow_id)
            if record is None:
                raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
            if self.fleet is not None and self.fleet.runs_elsewhere(record):
                raise UsageError(
                    f"workflow {workflow_id!r} runs on another engine of the fleet: "
                    f"{takes} do not reach it from here yet"
                )
            status = record.status
        raise WorkflowClosed(
            f"workflow {workflow_id!r} has finished ({status}); it takes no more {takes}"
        )

    def _open_run(
        self, item: SignalItem | CancelItem, txn: Txn, *, quiet: bool = False
    ) -> Run | None:
        """The run a signal or cancel is for; ``None`` if posted to the fleet's holder.

        *quiet*: ``None`` rather than an error for a run that is not running.
        """
        if self.fleet is not None and self.table.running(item.workflow_id) is None:
            record = self.store.get_run(item.workflow_id)
            if self.fleet.runs_elsewhere(record):
                self.fleet.post(item, txn)
                return None
        if quiet:
            return self.table.running(item.workflow_id)
        return self.open_run(item.workflow_id)

    def _prefetch(self, items: list[Item]) -> None:
        """Read what several items of the batch need in one query each (`prefetch`)."""
        if len(items) < 2:  # one item reads for itself (most batches of an idle loop)
            self._prefetched = {}
            self.cache.prefetch([])
            return
        self._prefetched = stored_runs_for_starts(items, self.table, self.store)
        self.cache.prefetch(woken_runs(items, self.table))

    # -- starting a run -----------------------------------------------------------------------

    def _apply_start(self, item: Start, txn: Txn) -> Key:
        record = item.record
        workflow_id = record.workflow_id
        existing = self.table.current_run(workflow_id)
        stored = None
        if existing is None and not item.fresh_id:
            stored = (
                self._prefetched[workflow_id]
                if workflow_id in self._prefetched
                else self.store.get_run(workflow_id)
            )
        if existing is not None or stored is not None:
            answer = start_conflict(
                item,
                existing,
                stored,
                txn,
                table=self.table,
                clock=self.clock,
                fleet=self.fleet,
                feed=self._feed,
            )
            if answer is not None:
                return answer
        if self.fleet is not None and not self.fleet.runs_workflows:
            return self.fleet.start_elsewhere(item, txn)
        run = Run(
            record.workflow_id,
            record.run_id,
            record.name,
            item.fn,
            tags=dict(record.tags),
            parent_id=record.parent_id,
        )
        txn.snapshots.setdefault(run.key, None)
        self.table.add(run)
        txn.batch.runs.append(record)
        interp = Interpreter(item.fn, codec=CODEC)
        self.cache.add(run.key, interp)
        if self.telemetry is not None:
            run.trace = self.telemetry.start_run(
                record.name, record.started_at, item.trace_parent
            )
            txn.effects.append(partial(self.telemetry.run_started, record.name))
        started = WorkflowStarted(
            at=record.started_at,
            workflow_id=workflow_id,
            run_id=record.run_id,
            name=record.name,
            args=record.args,
            kwargs=record.kwargs,
            parent_id=record.parent_id,
            trace_context=run.trace.context if run.trace else None,
        )
        self._feed(run, started, txn, interp=interp)
        if item.signal is not None and run.is_running:
            name, payload = item.signal
            signal = SignalReceived(
                at=self.clock.now(), name=name, payload=payload, index=run.signals
            )
            self._feed(run, signal, txn)
        return (workflow_id, record.run_id)

    # -- feeding a run ------------------------------------------------------------------------

    def _feed(
        self, run: Run, event: Event, txn: Txn, *, interp: Interpreter | None = None
    ) -> None:
        """Record *event* for *run*, feed it, and record and schedule what it decides."""
        if isinstance(event, NOTE_EVENTS):  # recorded, never fed (`heartbeats`)
            txn.touch(run)
            self._append(run, event, txn)
            return
        if interp is None and run.stuck is None:
            try:
                interp = self.cache.get(run)
            except STUCK_ERRORS as exc:
                self.stick(run, exc)
        if interp is None or run.stuck is not None:
            self._record_while_stuck(run, event, txn)
            return
        seq = getattr(event, "seq", None)
        if isinstance(seq, int) and not isinstance(event, WorkflowStarted):
            if not interp.is_pending(seq):
                return  # the command was cancelled or resolved meanwhile: drop the news
            attempt = getattr(event, "attempt", None)
            if isinstance(attempt, int) and attempt != interp.attempts(seq)[0] + 1:
                return  # a timed-out attempt finishing late
        txn.touch(run)
        self._append(run, event, txn)
        if isinstance(event, SignalReceived):
            run.signals += 1
        if isinstance(event, CancelRequested):
            run.cancel_requested = True
        try:
            step = interp.feed(event)
            self.steps += 1
            self.handle_step(run, interp, step, txn)
        except (NonDeterminismError, HistoryCorruptError) as exc:
            self.stick(run, exc)
            return
        if isinstance(event, WorkflowTerminated):
            self._ended(run, event, txn)
        elif isinstance(event, ActivityAttemptFailed):
            due = Due("retry", run.key, event.seq, event.attempt + 1)
            txn.effects.append(partial(self.timers.arm, event.retry_at, due))

    def _record_while_stuck(self, run: Run, event: Event, txn: Txn) -> None:
        # A stuck run still records what happens to it (a signal is acknowledged); the
        # reaction comes when fixed code reopens the file and replays.
        if isinstance(event, (SignalReceived, CancelRequested, WorkflowTerminated)):
            txn.touch(run)
            self._append(run, event, txn)
            run.signals += isinstance(event, SignalReceived)
            if isinstance(event, WorkflowTerminated):
                self._ended(run, event, txn)

    def rebuild(self, run: Run) -> None:
        """Rebuild *run*'s interpreter if it is not live, making it stuck if that fails."""
        if run.is_running and run.stuck is None and run.key not in self.cache:
            try:
                self.cache.get(run)
            except STUCK_ERRORS as exc:
                self.stick(run, exc)

    def stick(self, run: Run, exc: BaseException) -> None:
        """Hold *run* as unable to move in this process, for the reason *exc*."""
        # The incoming event stays recorded; the reaction is missing. Fixing the code and
        # reopening the file resumes the run from exactly here.
        if isinstance(exc, UnknownWorkflow):
            # A process may host only some of a file's workflows: not an error by itself.
            log.info(
                "flowgen: workflow %r waits for its code: %s", run.workflow_id, exc
            )
        else:
            log.error("flowgen: workflow %r is stuck: %s", run.workflow_id, exc)
        run.stuck = exc
        self.cache.drop(run.key)

    def _append(self, run: Run, event: Event, txn: Txn) -> None:
        txn.batch.events.append(
            EventRow(run.workflow_id, run.run_id, run.next_event_id, event)
        )
        run.next_event_id += 1

    def handle_step(self, run: Run, interp: Interpreter, step: Step, txn: Txn) -> None:
        """Record what *step* decided for *run*, and schedule it (`_decided`)."""
        steps = [step]
        while steps:
            current = steps.pop(0)
            for event in current.events:
                self._append(run, event, txn)
                self._decided(run, interp, event, txn)
            for seq, command in current.perform:
                if not interp.is_pending(seq):
                    continue
                outcome = self._perform_now(run, seq, command, txn)
                if outcome is None:
                    return
                self._append(run, outcome, txn)
                steps.append(interp.feed(outcome))

    def _perform_now(
        self,
        run: Run,
        seq: int,
        command: RecordSideEffect[Any] | SendSignal,
        txn: Txn,
    ) -> Event | None:
        now = self.clock.now()
        if isinstance(command, RecordSideEffect):
            try:
                value = encode(command.fn(), f"result of side effect {command.name!r}")
            except Exception as exc:  # noqa: BLE001  # the run waits; a restart retries it
                self.stick(
                    run, FlowgenError(f"side effect {command.name!r} failed: {exc!r}")
                )
                return None
            return SideEffectRecorded(at=now, seq=seq, name=command.name, value=value)
        target_id = command.workflow_id
        if self.table.running(target_id) is None:
            stored = self.store.get_run(target_id)
            # In a fleet, a run the store says is running is another engine's: post it.
            if self.fleet is None or not self.fleet.runs_elsewhere(stored):
                exists = (
                    stored is not None or self.table.current_run(target_id) is not None
                )
                why = "has finished" if exists else "does not exist"
                return SignalSendFailed(
                    at=now,
                    seq=seq,
                    workflow_id=target_id,
                    name=command.name,
                    error=ErrorInfo("SignalSendError", f"workflow {target_id!r} {why}"),
                )
        payload = encode(command.payload, f"payload of signal {command.name!r}")
        sender = f"{run.workflow_id}/{seq}"
        txn.work.append(SignalItem(target_id, command.name, payload, sender=sender))
        return SignalSent(at=now, seq=seq, workflow_id=target_id, name=command.name)

    def _decided(self, run: Run, interp: Interpreter, event: Event, txn: Txn) -> None:
        """Schedule the effects of a decision event (acted on after the commit)."""
        key = run.key
        match event:
            case ActivityScheduled(seq=seq):
                command = interp.pending.get(seq)
                if isinstance(command, CallActivity):
                    txn.effects.append(
                        partial(self.attempts.start, key, event, command, 1)
                    )
            case TimerStarted(seq=seq, fire_at=fire_at):
                due = Due("timer", key, seq)
                txn.effects.append(partial(self.timers.arm, fire_at, due))
            case SignalWaitStarted(seq=seq, deadline=deadline) if deadline is not None:
                due = Due("signal_timeout", key, seq)
                txn.effects.append(partial(self.timers.arm, deadline, due))
            case ChildStarted(seq=seq, child_id=child_id):
                if child_id not in self.table.child_links:
                    # An id that is another parent's running child keeps its parent: this
                    # start conflicts, and this parent hears that at once.
                    self.table.set_link(child_id, (key, seq))
                command = interp.pending.get(seq)
                if isinstance(command, StartChild):
                    self.table.parent_close[child_id] = command.parent_close
                now = self.clock.now()
                txn.work.append(child_start(run, command, event, self.registry, now))
            case CommandCancelled(seq=seq):
                for child_id in self.table.children_of((key, seq)):
                    txn.work.append(CancelItem(child_id, "parent cancelled"))
                    # Being cancelled already: the parent's close leaves it to finish that.
                    self.table.parent_close[child_id] = "abandon"
            case UpdateCompleted() | UpdateErrored():
                txn.effects.append(partial(self.updates.ended, key, event))
            case TagsSet(tags=tags):
                run.tags.update(tags)
                txn.batch.updates.append(
                    RunUpdate(run.workflow_id, run.run_id, tags=dict(run.tags))
                )
            case (
                WorkflowCompleted()
                | WorkflowErrored()
                | WorkflowCancelled()
                | WorkflowContinuedAsNew()
            ):
                self._ended(run, event, txn)

    def _ended(self, run: Run, event: Event, txn: Txn) -> None:
        """Close *run*: its row, its parent's news, and a continue-as-new's next run."""
        status = _STATUS_OF_END[type(event)]
        result = event.result if isinstance(event, WorkflowCompleted) else None
        error: ErrorInfo | None = getattr(event, "error", None)
        if isinstance(event, WorkflowTerminated):
            error = ErrorInfo("Terminated", event.reason)
        self.table.closing(run, Outcome(run.run_id, run.name, status, result, error))
        txn.effects.append(partial(self.updates.run_closed, run.key, status))
        if self.telemetry is not None and run.trace is not None:
            end = (run.workflow_id, run.run_id, run.trace, status, error, event.at)
            txn.effects.append(partial(self.telemetry.run_closed, *end))
        txn.batch.updates.append(
            RunUpdate(
                run.workflow_id,
                run.run_id,
                status=status,
                result=result,
                error=error,
                closed_at=event.at,
            )
        )
        link = self.table.take_link(run.workflow_id)
        if link is not None and isinstance(event, WorkflowContinuedAsNew):
            # The parent hears from the last run of the chain, not from this one.
            self.table.set_link(run.workflow_id, link)
        elif link is not None:
            txn.work.append(
                news_for_parent(run.workflow_id, link, event, status, error)
            )
        elif (
            run.parent_id is not None
            and self.fleet is not None
            and not isinstance(event, WorkflowContinuedAsNew)
        ):
            self.fleet.orphan_closed(run, txn)
        released = self.table.release_children(run.key)
        for closed in children_at_close(run, status, released):
            self._parent_closed(closed, txn)
        if isinstance(event, WorkflowContinuedAsNew):
            txn.work.append(next_run(run, event))
