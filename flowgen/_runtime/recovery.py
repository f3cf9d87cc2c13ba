"""Recovery: opening a file resumes every unfinished run where it stopped.

Rules:

- Every run the store lists as running is resumed as one more kind of item of the decision
  loop (`Recover`), in batches of `_RUNS_PER_BATCH` whose histories are read in one query
  per batch (so memory is bounded by a batch, not by the file), and what recovery decides
  is committed like any other step.
- Recovery is lazy for *parked* runs (`flowgen._stores.parked`): a run whose recorded
  history ends waiting for a signal with no deadline, with nothing else open, has nothing
  to resume. It is held like a run the interpreter cache evicted, without a replay, and is
  rebuilt by replay when its signal (or a cancel, a query...) comes. A store that
  `FindsParkedRuns` names them without their histories being read (`Hold`, one item for
  all of them); with another store, each history is read and checked. A parked run costs its entry in
  the run table until then; whether its code is still registered and still matches its
  history is found out then too (and it is stuck from then on, as any other run).
  Every other run is rebuilt by replaying its history now.
- A run resumes what its *recorded* history left it waiting for. What the replay decides
  anew (the reaction to a signal or a cancel recorded while its code was missing, e.g. by
  the CLI without ``--import``) is scheduled once, as a new decision of its step, like any
  other; it is never also resumed, or it would start twice.
- A run resumes what it was waiting for, from what its history recorded:
  an activity in flight runs again (at-least-once: its attempt number is the next one, and
  `activity_info().idempotency_key` lets it deduplicate); an attempt that failed waits for
  its recorded retry time; timers and signal deadlines keep their recorded due times;
  buffered signals stay buffered; a child that ended while nobody listened is reported
  to its parent now.
- A run whose code is missing or no longer matches its history is *stuck*, not fatal: it is
  held, records what happens to it, and moves when fixed code reopens the file.
- If the store fails while recovering, opening fails and nothing was acted on: opening
  again recovers the same runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs

from flowgen._core.interpreter import Interpreter
from flowgen._runtime.clock import Clock
from flowgen._runtime.items import (
    STUCK_ERRORS,
    Due,
    Feed,
    Hold,
    Item,
    Key,
    Recover,
    Run,
    Txn,
)
from flowgen._runtime.runs import RunTable
from flowgen._runtime.timers import TimerHeap
from flowgen._runtime.tracing import RunTrace
from flowgen._stores.codec import CODEC
from flowgen._stores.parked import ParkedRun, is_parked
from flowgen._stores.protocol import FindsParkedRuns, Store, WorkflowRecord
from flowgen._vocabulary.commands import CallActivity, StartChild, WaitSignal
from flowgen._vocabulary.errors import ErrorInfo, StoreError
from flowgen._vocabulary.events import (
    ActivityScheduled,
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    Event,
    SignalReceived,
    SignalWaitStarted,
    TimerStarted,
)
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:  # the loop is handed in; this module only names its type
    from flowgen._runtime.loop import DecisionLoop

__all__ = [
    "apply_recover",
    "ended_child",
    "held_run",
    "hold_parked",
    "recover",
    "recovered_run",
    "resume_pending",
]

log = logging.getLogger("flowgen")

_RUNS_PER_BATCH = 4096
"""How many recovered runs one transaction resumes."""

# The events that record what a command waits for since (see Interpreter.scheduled_event).
_WAITING_SINCE = (ActivityScheduled, TimerStarted, SignalWaitStarted, ChildStarted)

StartAttempt = Callable[[Key, ActivityScheduled, CallActivity[Any], int], None]


def recover(store: Store, process: Callable[[list[Item]], None]) -> None:
    """Resume every unfinished run of *store*, through *process* (the decision loop).

    Raises:
        StoreError: A read or a commit failed; nothing was acted on.
    """
    records = store.unfinished()
    parked = store.parked_runs() if isinstance(store, FindsParkedRuns) else {}
    if parked:
        held = [
            (r, parked[r.workflow_id, r.run_id])
            for r in records
            if (r.workflow_id, r.run_id) in parked
        ]
        process([Hold(held, future=Future())])
        records = [r for r in records if (r.workflow_id, r.run_id) not in parked]
    for start in range(0, len(records), _RUNS_PER_BATCH):
        batch = records[start : start + _RUNS_PER_BATCH]
        histories = store.load_histories([(r.workflow_id, r.run_id) for r in batch])
        # A run the store could not read is left out: it quarantined it (status corrupt).
        items: list[Item] = [
            Recover(r, histories[r.workflow_id, r.run_id], future=Future())
            for r in batch
            if (r.workflow_id, r.run_id) in histories
        ]
        del histories
        process(items)
        _raise_store_failure(items)


def _raise_store_failure(items: list[Item]) -> None:
    # A store failure undid a batch of recovered runs (and what they were to resume):
    # opening fails, and nothing of that batch was acted on. Opening again recovers them.
    for item in items:
        assert item.future is not None
        error = item.future.exception() if item.future.done() else None
        if isinstance(error, StoreError):
            raise error
        if error is not None:  # pragma: no cover - a bug; the others still resume
            log.error("flowgen: recovering a run failed: %r", error)


def recovered_run(record: WorkflowRecord, history: list[Event]) -> Run:
    """The loop's `Run` for a stored unfinished run, counted from its history."""
    run = Run(
        record.workflow_id,
        record.run_id,
        record.name,
        None,
        tags=dict(record.tags),
        parent_id=record.parent_id,
    )
    run.next_event_id = len(history)
    run.signals = sum(isinstance(e, SignalReceived) for e in history)
    run.cancel_requested = any(isinstance(e, CancelRequested) for e in history)
    return run


def held_run(record: WorkflowRecord, parked: ParkedRun) -> Run:
    """The loop's `Run` for a parked run, held without its history (see the rules)."""
    return Run(
        record.workflow_id,
        record.run_id,
        record.name,
        None,
        next_event_id=parked.events,
        signals=parked.signals,
        tags=dict(record.tags),
        parent_id=record.parent_id,
        cancel_requested=parked.cancel_requested,
    )


def resume_pending(
    run: Run,
    interp: Interpreter,
    history: list[Event],
    txn: Txn,
    *,
    table: RunTable,
    timers: TimerHeap,
    start_attempt: StartAttempt,
    store: Store,
    clock: Clock,
) -> None:
    """Resume what the replayed *run* waited for in its recorded *history*, once *txn* is committed.

    Commands the replay decided beyond *history* are left alone: the step that decided
    them schedules them (see the module's rules).
    """
    key = run.key
    recorded = {e.seq for e in history if isinstance(e, _WAITING_SINCE)}
    for seq, command in interp.pending.items():
        if seq not in recorded:
            continue  # decided by this replay, scheduled by its step
        scheduled = interp.scheduled_event(seq)
        match command:
            case CallActivity() if isinstance(scheduled, ActivityScheduled):
                failed, retry_at = interp.attempts(seq)
                if retry_at is not None and failed:
                    due = Due("retry", key, seq, failed + 1)
                    txn.effects.append(partial(timers.arm, retry_at, due))
                else:
                    txn.effects.append(
                        partial(start_attempt, key, scheduled, command, failed + 1)
                    )
            case WaitSignal() if (
                isinstance(scheduled, SignalWaitStarted)
                and scheduled.deadline is not None
            ):
                due = Due("signal_timeout", key, seq)
                txn.effects.append(partial(timers.arm, scheduled.deadline, due))
            case _ if isinstance(scheduled, TimerStarted):
                due = Due("timer", key, seq)
                txn.effects.append(partial(timers.arm, scheduled.fire_at, due))
            case StartChild() if isinstance(scheduled, ChildStarted):
                table.child_links[scheduled.child_id] = (key, seq)
                table.parent_close[scheduled.child_id] = command.parent_close
                outcome = ended_child(store.get_run(scheduled.child_id), seq, clock)
                if outcome is not None:
                    txn.work.append(Feed(run.workflow_id, run.run_id, outcome))
            case _:
                pass


def ended_child(child: WorkflowRecord | None, seq: int, clock: Clock) -> Event | None:
    """What the parent hears of a child that ended while nobody listened, or ``None``."""
    # A continued-as-new child still runs, under its next run.
    if (
        child is None
        or not child.is_closed
        or child.status == RunStatus.CONTINUED_AS_NEW
    ):
        return None
    if child.status == RunStatus.COMPLETED:
        return ChildCompleted(
            at=clock.now(), seq=seq, child_id=child.workflow_id, value=child.result
        )
    return ChildFailed(
        at=clock.now(),
        seq=seq,
        child_id=child.workflow_id,
        error=child.error or ErrorInfo(child.status, ""),
    )


def apply_recover(loop: DecisionLoop, item: Recover, txn: Txn) -> None:
    """Hold an unfinished run found on open, replay it, and resume what it waits for."""
    run = recovered_run(item.record, item.history)
    if loop.telemetry is not None:
        run.trace = RunTrace.recovered(item.record, item.history)
    loop.table.add_recovered(run)
    if is_parked(item.history):
        return  # held as if evicted: replayed when something comes for it
    try:
        run.fn = loop.registry.workflow(run.name).fn
        interp = Interpreter(run.fn, codec=CODEC)
        step = interp.replay(item.history)
    except STUCK_ERRORS as exc:
        loop.stick(run, exc)
        return
    loop.cache.add(run.key, interp)
    loop.attempts.heartbeats.recovered(run.key, item.history, set(interp.pending))
    txn.snapshots.setdefault(run.key, attrs.evolve(run))
    loop.handle_step(run, interp, step, txn)
    if not run.is_running:
        return
    resume_pending(
        run,
        interp,
        item.history,
        txn,
        table=loop.table,
        timers=loop.timers,
        start_attempt=loop.attempts.start,
        store=loop.store,
        clock=loop.clock,
    )


def hold_parked(loop: DecisionLoop, item: Hold) -> None:
    """Hold parked runs found on open, as if evicted (nothing to resume, no replay)."""
    for record, parked in item.runs:
        run = held_run(record, parked)
        if loop.telemetry is not None:
            run.trace = RunTrace(record.name, record.started_at, parked.trace_context)
        loop.table.add_recovered(run)
