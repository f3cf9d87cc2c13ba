"""Reset and retry: a new run of a workflow id, made from one of its closed runs.

Rules
=====

* **Retry** (`Engine.retry`) starts a fresh run of the id with the earlier run's workflow
  name, arguments, keyword arguments, parent id and tags (as its row holds them). Its
  history is its own ``WorkflowStarted`` and what the workflow decides from there.
* **Reset** (`Engine.reset`) starts a new run whose history *begins with the earlier run's
  events* ``0..k``: ``k`` is an event id, the ``#`` column of ``flowgen show`` and
  ``events.event_id`` in SQL. They are copied as they were recorded (their times
  too), except event 0, a ``WorkflowStarted`` that names the new run and its origin. The
  new run is then replayed from them and runs live from there, as a run recovered on open
  is (`flowgen._runtime.recovery`): an activity in flight at ``k`` runs again (attempt
  numbers go on from the copied ones), a failed attempt waits for its recorded retry time,
  timers and signal deadlines keep their recorded due times (one already past fires at
  once), signals received before ``k`` stay buffered, and a child started before ``k`` is
  not started again (its outcome is delivered if it has one). Everything after ``k`` is
  done anew, by today's code.
* **Decision points.** After an incoming event (an outcome, a signal, a timer) the workflow
  runs to its next ``yield`` and its decisions are recorded right after it, as one step.
  A reset never splits a step's decisions (say, between two activities one ``gather``
  scheduled): when event ``k`` is a decision followed by another decision of the same step,
  the copy ends at the step's incoming event instead, and the replay makes the whole step's
  decisions again, the same ones. `reset_point` is that rule; ``origin_event`` records the
  last event copied. ``k`` may not be the run's closing event (or later): that would copy a
  run that has already ended; `retry` starts over instead.
* **Which runs.** The id's latest run by default, or the run given by ``run_id``. It must
  have closed (completed, failed, cancelled, terminated or continued as new); a workflow id
  has at most one running run, so if the id's latest run is still running the call is
  refused, unless ``terminate=True``: then that run is terminated ("terminated by a reset"
  / "... retry") in the same transaction that starts the new one. A ``corrupt`` run (its
  history cannot be read) can be retried but not reset.
* **The earlier run is kept**, unchanged; the new run is the id's latest, so `Engine.get`,
  signals, cancels and results go to it. Its ``WorkflowStarted`` carries ``origin_kind``
  (``"reset"`` or ``"retry"``), ``origin_run_id`` and, for a reset, ``origin_event``: SQL
  follows the lineage through ``events`` (docs/sql.md). The new run is nobody's child: a
  parent heard of the earlier run's end and is not told of this one's.
* **Traced** (``Engine(tracing=True)``, `traced_relaunch`): the new run's span is a child
  of the span current where `Engine.reset`/`retry` was called (or starts a trace), and
  links to the earlier run's span (recorded in its ``WorkflowStarted``, when it had one),
  with ``flowgen.origin = "reset of run <id>"`` / ``"retry of run <id>"``.
* **Nothing is written for a bad request**: an unknown id or run id, an event id out of
  range, a running run without ``terminate``, a corrupt run to reset, a copy that would
  wait for a child whose runs were pruned (`flowgen._runtime.retention`) are refused
  before the transaction, with an error naming the problem.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import attrs

from flowgen._core.history import is_incoming
from flowgen._runtime.clock import Clock
from flowgen._runtime.fleet_requests import HeldElsewhere
from flowgen._runtime.items import Item, Key, Recover, Run, Txn
from flowgen._runtime.recovery import apply_recover
from flowgen._runtime.tracing import Telemetry, origin_of
from flowgen._stores.protocol import EventRow, Store, WorkflowRecord
from flowgen._vocabulary.errors import (
    HistoryCorruptError,
    UnknownWorkflow,
    WorkflowClosed,
    WorkflowStillRunning,
)
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    TERMINAL_EVENTS,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    Event,
    WorkflowStarted,
    WorkflowTerminated,
)
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:  # the loop is handed in; this module only names its type
    from flowgen._runtime.loop import DecisionLoop

__all__ = [
    "OriginKind",
    "Relaunch",
    "Relaunched",
    "apply_relaunch",
    "relaunch",
    "reset_point",
]

OriginKind = Literal["reset", "retry"]


@attrs.define(eq=False)
class Relaunch(Item):
    """Reset or retry: start a new run of *workflow_id* from one of its runs.

    Attributes:
        workflow_id: The workflow id.
        kind: ``"reset"`` or ``"retry"``.
        run_id: The earlier run; ``None`` for the id's latest.
        event_id: For a reset, the last event to keep (before `reset_point` rounds it).
        terminate: Terminate the id's running run first, instead of refusing.
        new_run_id: The new run's id (a fresh uuid4).
        at: When the new run starts.
    """

    workflow_id: str
    kind: OriginKind
    run_id: str | None
    event_id: int | None
    terminate: bool
    at: datetime
    new_run_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    # The caller's span (W3C headers), the new run's span's parent; only when tracing.
    trace_parent: dict[str, str] | None = None

    @classmethod
    def of(
        cls,
        workflow_id: str,
        kind: OriginKind,
        run_id: str | None,
        event_id: object,
        terminate: bool,
        clock: Clock,
    ) -> Relaunch:
        """A request for a checked *workflow_id* (what `Engine.reset` and `retry` submit).

        Raises:
            TypeError: *event_id* (of a reset) is not an int.
        """
        if kind == "reset" and type(event_id) is not int:
            raise TypeError(f"event_id must be an int, got {event_id!r}")
        return cls(
            workflow_id,
            kind,
            run_id,
            event_id if isinstance(event_id, int) else None,
            terminate,
            clock.now(),
        )


@attrs.frozen
class Relaunched:
    """What a `Relaunch` writes: the new run's row and history, and whom it terminates.

    Attributes:
        record: The new run's row.
        history: Its first events (copied for a reset; its ``WorkflowStarted`` alone for a
            retry), to be stored and replayed.
        terminate: The running run to terminate first, or ``None``.
    """

    record: WorkflowRecord
    history: list[Event]
    terminate: Run | None

    @property
    def rows(self) -> list[EventRow]:
        """The history as rows of the new run."""
        record = self.record
        return [
            EventRow(record.workflow_id, record.run_id, event_id, event)
            for event_id, event in enumerate(self.history)
        ]


def reset_point(history: list[Event], event_id: int) -> int:
    """How many events of *history* a reset to *event_id* copies (see the module's rules).

    Args:
        history: A closed run's history.
        event_id: The last event to keep.

    Returns:
        ``event_id + 1``, or fewer when that would split a step's decisions.

    Raises:
        ValueError: *event_id* is negative, beyond the history, or its closing event.
    """
    closing = next(
        (i for i, e in enumerate(history) if isinstance(e, TERMINAL_EVENTS)),
        len(history),
    )
    if not 0 <= event_id < closing:
        last = closing - 1
        end = (
            f"; event {closing} ({EVENT_TAGS[type(history[closing])]}) ends it"
            if closing < len(history)
            else ""
        )
        raise ValueError(
            f"event_id must be between 0 and {last} (the run has {len(history)} "
            f"events{end}), got {event_id}"
        )
    keep = event_id + 1
    if is_incoming(history[event_id]) or keep == len(history):
        return keep
    if is_incoming(history[keep]):
        return keep  # the step's last decision
    while not is_incoming(history[keep - 1]):
        keep -= 1  # inside a step's decisions: back to the event they reacted to
    return keep


def relaunch(item: Relaunch, *, running: Run | None, store: Store) -> Relaunched:
    """Check *item* against the stored runs and build what it writes; writes nothing.

    Args:
        item: The request.
        running: The run of the id that is running in this engine, if any.
        store: Where the earlier run is read.

    Raises:
        UnknownWorkflow: No run has this id (or this run id).
        WorkflowStillRunning: The id's latest run is running and *terminate* is false,
            or the run to reset is the one running.
        ValueError: The event id is out of range (see `reset_point`).
        WorkflowClosed: A reset of a corrupt run (its history cannot be read).
    """
    workflow_id = item.workflow_id
    earlier = store.get_run(workflow_id, item.run_id)
    if earlier is None:
        which = f" and run id {item.run_id!r}" if item.run_id else ""
        raise UnknownWorkflow(f"no workflow with id {workflow_id!r}{which}")
    if running is not None and not item.terminate:
        raise WorkflowStillRunning(
            f"workflow {workflow_id!r} is running (run {running.run_id}): only a closed "
            f"run can be {_verb(item.kind)}; terminate it first, or pass terminate=True "
            f"(--terminate on the command line)"
        )
    latest = earlier if item.run_id is None else store.get_run(workflow_id)
    if running is None and latest is not None and not latest.is_closed:
        raise WorkflowStillRunning(
            f"workflow {workflow_id!r} is running (run {latest.run_id}) outside this "
            f"engine: only a closed run can be {_verb(item.kind)}"
        )
    if item.kind == "retry":
        history: list[Event] = [_started(item, earlier)]
    else:
        history = _reset_history(item, earlier, store)
    record = WorkflowRecord(
        workflow_id=workflow_id,
        run_id=item.new_run_id,
        name=earlier.name,
        status=RunStatus.RUNNING,
        args=list(earlier.args),
        kwargs=dict(earlier.kwargs),
        started_at=item.at,
        tags=dict(earlier.tags),
        parent_id=earlier.parent_id,
    )
    return Relaunched(record, history, running)


def _reset_history(
    item: Relaunch, earlier: WorkflowRecord, store: Store
) -> list[Event]:
    if earlier.status == RunStatus.CORRUPT:
        raise WorkflowClosed(
            f"run {earlier.run_id} of {item.workflow_id!r} is corrupt (its history cannot "
            f"be read): it can be retried, not reset"
        )
    assert item.event_id is not None
    old = store.load_history(earlier.workflow_id, earlier.run_id)
    keep = reset_point(old, item.event_id)
    first = old[0]
    if not isinstance(first, WorkflowStarted):
        raise HistoryCorruptError(
            f"history of {item.workflow_id!r} (run {earlier.run_id}) does not begin with "
            f"workflow_started"
        )
    started = attrs.evolve(
        first,
        run_id=item.new_run_id,
        trace_context=None,
        origin_kind="reset",
        origin_run_id=earlier.run_id,
        origin_event=keep - 1,
    )
    prefix = [started, *old[1:keep]]
    _check_children(prefix, store, item.workflow_id)
    return prefix


def _check_children(prefix: list[Event], store: Store, workflow_id: str) -> None:
    """Refuse a prefix that waits for a child whose runs are gone (pruned).

    The new run would hear of that child from its row (see `recovery`), and wait forever.
    """
    ended = {e.seq for e in prefix if isinstance(e, (ChildCompleted, ChildFailed))}
    for event_id, event in enumerate(prefix):
        if (
            isinstance(event, ChildStarted)
            and event.seq not in ended
            and store.get_run(event.child_id) is None
        ):
            raise ValueError(
                f"event_id: the copy of {workflow_id!r} would wait for child "
                f"{event.child_id!r} (started at event {event_id}), whose runs have been "
                f"pruned; reset to an event before it, or retry"
            )


def traced_relaunch(
    made: Relaunched, telemetry: Telemetry, store: Store, caller: dict[str, str] | None
) -> Relaunched:
    """*made* with its new run's span decided: a child of *caller*, linked to its origin."""
    first = made.history[0]
    assert isinstance(first, WorkflowStarted)
    assert first.origin_run_id is not None
    try:
        earlier = store.load_history(first.workflow_id, first.origin_run_id)[:1]
    except Exception:  # noqa: BLE001  # a corrupt earlier run: no span to link to
        earlier = []
    origin_context = (
        earlier[0].trace_context
        if earlier and isinstance(earlier[0], WorkflowStarted)
        else None
    )
    origin = f"{first.origin_kind} of run {first.origin_run_id}"
    parent = {**(caller or {}), **origin_of(origin, origin_context)}
    trace = telemetry.start_run(first.name, first.at, parent)
    started = attrs.evolve(first, trace_context=trace.context)
    return attrs.evolve(made, history=[started, *made.history[1:]])


def _started(item: Relaunch, earlier: WorkflowRecord) -> WorkflowStarted:
    return WorkflowStarted(
        at=item.at,
        workflow_id=earlier.workflow_id,
        run_id=item.new_run_id,
        name=earlier.name,
        args=list(earlier.args),
        kwargs=dict(earlier.kwargs),
        parent_id=earlier.parent_id,
        origin_kind="retry",
        origin_run_id=earlier.run_id,
    )


def _verb(kind: OriginKind) -> str:
    return "reset" if kind == "reset" else "retried"


def apply_relaunch(loop: DecisionLoop, item: Relaunch, txn: Txn) -> Key | None:
    """Reset or retry (`flowgen._runtime.lineage`): a new run, recovered from its start."""
    current = loop.table.current_run(item.workflow_id)
    if current is not None and current.key in txn.snapshots:
        # Changed by this batch, not yet stored: decide in the next batch, on the truth.
        again = attrs.evolve(item)
        item.future = None
        loop.inbox.put(again)
        return None
    running = loop.table.running(item.workflow_id)
    if running is None and item.terminate and loop.fleet is not None:
        latest = loop.store.get_run(item.workflow_id)
        if loop.fleet.runs_elsewhere(latest):
            # Nothing written: the caller has the holder terminate it, then asks again.
            assert latest is not None
            raise HeldElsewhere(latest, f"terminated by a {item.kind}")
    made = relaunch(item, running=running, store=loop.store)
    if loop.telemetry is not None:
        made = traced_relaunch(made, loop.telemetry, loop.store, item.trace_parent)
    if made.terminate is not None:
        reason = f"terminated by a {item.kind}"
        loop.feed_run(
            made.terminate, WorkflowTerminated(at=item.at, reason=reason), txn
        )
    record = made.record
    txn.snapshots.setdefault((record.workflow_id, record.run_id), None)
    txn.batch.runs.append(record)
    txn.batch.events.extend(made.rows)
    apply_recover(loop, Recover(record, made.history), txn)
    return (record.workflow_id, record.run_id)
