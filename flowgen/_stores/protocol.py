"""Persistence: the `Store` protocol the engine writes through, and `MemoryStore`.

A store holds two things: one row per run (``workflows``) and each run's append-only history
(``events``, numbered 0, 1, 2, ... per run). The engine writes only through `Store.commit`,
with a `Batch` that may span many runs: *group commit*. One batch is one transaction, so
"record every event of a step before acting on it" holds for all the runs in it at once, and
the ~2 ms a DuckDB commit costs is shared among them.

``flowgen._stores.memory.MemoryStore`` keeps everything in dicts: for tests, and for the
in-memory engine when speed matters more than SQL. ``flowgen._stores.duckdb_store.DuckDBStore``
is the real thing.

A run's status is one of `RUN_STATUSES`, derived from `flowgen._vocabulary.status.RunStatus`
(the one vocabulary; this module only re-exports it for stores). Abilities beyond `Store`
are optional and declared as protocols (`ReadsLatestRuns`, `Flushes`, `SpeaksSQL`,
`LeasesRuns`): callers test for them with ``isinstance``, never with ``getattr``.

A store shared by a fleet of engines (`LeasesRuns`: PostgreSQL) also carries *messages*: what
one engine has for a run another engine holds (a signal, a cancel, an activity's outcome, a
child's end). A `Batch` posts them (`Batch.messages`) and consumes them (`Batch.consumed`, by
id) in the same transaction as the events they become, so a message is delivered once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from flowgen._stores.parked import ParkedRun
from flowgen._vocabulary.errors import ErrorInfo, HistoryCorruptError, StoreError
from flowgen._vocabulary.events import ActivityScheduled, Event, JsonValue
from flowgen._vocabulary.limits import DEFAULT_TASK_QUEUE
from flowgen._vocabulary.status import (
    CLOSED_STATUSES as _CLOSED,
    STORED_STATUSES,
    RunStatus,
)

__all__ = [
    "CLOSED_STATUSES",
    "RUN_STATUSES",
    "Batch",
    "EventRow",
    "FindsParkedRuns",
    "FleetOptions",
    "Flushes",
    "Prunes",
    "KeepsSchedules",
    "LeasesRuns",
    "Message",
    "MessagesRaced",
    "ReadsLatestRuns",
    "RunUpdate",
    "ScheduleRecord",
    "SpeaksSQL",
    "Store",
    "Task",
    "TaskState",
    "TaskWatch",
    "TellsClosings",
    "WorkflowRecord",
]

RUN_STATUSES: tuple[RunStatus, ...] = STORED_STATUSES
"""Values of ``workflows.status`` (see `flowgen._vocabulary.status`, their one home).
``corrupt``: the store could not read the run's history and quarantined it (the reason is
in ``error``); nothing runs it again."""

CLOSED_STATUSES: frozenset[RunStatus] = _CLOSED
"""The statuses of a run that has ended."""


@attrs.frozen
class WorkflowRecord:
    """One row of ``workflows``: one run of a workflow.

    Attributes:
        workflow_id: The workflow id (shared by the runs of a continue-as-new chain).
        run_id: This run's id (unique).
        name: The workflow's registered name.
        status: One of `RUN_STATUSES`: a `RunStatus`, or its string as read back (they
            compare equal); a store refuses any other value before writing anything.
        args: Encoded positional arguments.
        kwargs: Encoded keyword arguments.
        result: The encoded result, once completed.
        error: The failure, once failed, cancelled or terminated.
        tags: Searchable tags (merged by `set_tags`, and given at start).
        parent_id: The parent's workflow id, for a child workflow.
        started_at: When the run started.
        closed_at: When the run ended.
    """

    workflow_id: str
    run_id: str
    name: str
    # A `RunStatus` given here is kept as its plain value: what leaves a store (a row, its
    # repr) is the string it always was, whichever way the record was made.
    status: str = attrs.field(converter=str)
    args: list[JsonValue]
    kwargs: dict[str, JsonValue]
    started_at: datetime
    result: JsonValue = None
    error: ErrorInfo | None = None
    tags: dict[str, JsonValue] = attrs.field(factory=dict)
    parent_id: str | None = None
    closed_at: datetime | None = None

    @property
    def is_closed(self) -> bool:
        """True once the run has ended."""
        return self.status in CLOSED_STATUSES


@attrs.frozen
class ScheduleRecord:
    """One row of ``schedules``: a schedule, its definition and where it has got to.

    Made by `Engine.schedule`; see `flowgen._runtime.schedules` for what each field means
    to the engine.

    Attributes:
        schedule_id: The schedule's id; its runs' workflow ids are
            ``<schedule_id>/<scheduled time, ISO, UTC>``.
        workflow: The registered name of the workflow it starts.
        args: Encoded positional arguments of every run.
        kwargs: Encoded keyword arguments of every run.
        cron: The cron expression, or ``None`` for an interval.
        every_seconds: The interval in seconds, or ``None`` for a cron expression.
        timezone: The IANA zone the cron expression is read in (``"UTC"`` by default).
        overlap: ``"skip"``, ``"buffer_one"`` or ``"allow"``: what a firing does while
            the schedule's previous run is still running.
        jitter_seconds: Each firing is delayed by a fixed amount in ``[0, jitter)``
            derived from the schedule id and its scheduled time.
        catchup_window_seconds: Firings missed (the engine was down) by at most this
            much are started late; ``None``: only the latest missed one is.
        paused: A paused schedule starts nothing; unpausing skips what it missed.
        note: Why it was paused (or anything an operator wants to say).
        next_at: The next scheduled time not yet handled.
        fires_at: When that firing starts a run: ``next_at`` plus its jitter.
        buffered_at: With ``overlap="buffer_one"``, the scheduled time of the firing
            waiting for the previous run to close.
        last_workflow_id: The workflow id of the latest run the schedule started.
        last_fired_at: When that run was started.
        created_at: When the schedule was made.
        updated_at: When its row last changed.
        revision: Bumped by every change; a change is applied only over the revision
            it was decided on (engines sharing a store never undo each other's).
        skipped: How many firings started no run: skipped by the overlap policy, or missed
            and not caught up (schema version 3).
        triggered_at: When a trigger (``engine.trigger_schedule``, ``flowgen schedule
            trigger``) asked for a run not yet handled; ``None`` when none waits (schema
            version 3).
    """

    schedule_id: str
    workflow: str
    args: list[JsonValue]
    kwargs: dict[str, JsonValue]
    cron: str | None
    every_seconds: int | None
    timezone: str
    overlap: str
    jitter_seconds: float
    catchup_window_seconds: float | None
    paused: bool
    note: str
    next_at: datetime
    fires_at: datetime
    created_at: datetime
    updated_at: datetime
    buffered_at: datetime | None = None
    last_workflow_id: str | None = None
    last_fired_at: datetime | None = None
    revision: int = 0
    skipped: int = 0
    triggered_at: datetime | None = None


@attrs.frozen
class EventRow:
    """An event and its place in its run's history.

    Attributes:
        workflow_id: The run's workflow id.
        run_id: The run's id.
        event_id: Position in the run's history (0 is ``workflow_started``).
        event: The event.
    """

    workflow_id: str
    run_id: str
    event_id: int
    event: Event


@attrs.frozen
class RunUpdate:
    """New values for a run's row: status, result, error, tags and closing time.

    ``None`` leaves a column as it is; ``tags`` replaces the whole tag object.
    """

    workflow_id: str
    run_id: str
    status: str | None = attrs.field(
        default=None, converter=attrs.converters.optional(str)
    )
    result: JsonValue = None
    error: ErrorInfo | None = None
    tags: dict[str, JsonValue] | None = None
    closed_at: datetime | None = None


MessageKind = Literal[
    "signal",
    "cancel",
    "terminate",
    "update",
    "feed",
    "child",
    "started",
    "update_reply",
]


@attrs.frozen
class Message:
    """Something for the run of a workflow id that another engine of a fleet holds.

    Attributes:
        workflow_id: The workflow whose current run (or *run_id*) it is for.
        run_id: The run it is for, or ``None`` for the current run of *workflow_id*.
        kind: ``signal`` (body: name, payload, sender), ``cancel`` (reason),
            ``terminate`` (reason), ``update`` (name, args, update_id, given_id, token:
            the caller's, for a refusal's reply), ``update_reply`` (token, error: a
            refused update's answer, for the caller), ``feed`` (an
            event, as `flowgen._stores.codec.event_to_dict` writes it: an activity's
            outcome, a child's end), ``child`` (child_id: a child whose end the engine
            that ran it could not tell its parent: the parent's engine reads the child),
            ``started`` (task, seq, attempt, started_at: a posted attempt with deadlines
            started on another engine; its holder arms a timer for them).
        body: The kind's fields, as JSON.
        id: The store's number for it (0 until stored; messages are taken in this order).
    """

    workflow_id: str
    run_id: str | None
    kind: MessageKind
    body: dict[str, JsonValue]
    id: int = 0


class MessagesRaced(StoreError):
    """A fleet's commit raced a run's close; nothing was written, the batch is applied again.

    See `flowgen._stores.postgres_requests`.

    Attributes:
        closed: Workflow ids a request was posted to whose run is not running any more
            (applied again, the request finds the run closed).
        pending: Ids of requests posted to runs the batch closes, which it did not
            consume (applied again with those requests first).
    """

    def __init__(
        self,
        message: str,
        *,
        closed: frozenset[str] = frozenset(),
        pending: tuple[int, ...] = (),
    ) -> None:
        super().__init__(message)
        self.closed = closed
        self.pending = pending


@attrs.frozen
class Task:
    """An activity attempt posted for any engine of a fleet to run.

    Attributes:
        workflow_id: The calling run's workflow id.
        run_id: The calling run's id.
        attempt: The attempt's number.
        scheduled: The call's ``activity_scheduled`` event (name, encoded arguments).
        task_queue: The activity's task queue: only an engine serving it takes the task.
        id: The store's number for it (0 until stored).
    """

    workflow_id: str
    run_id: str
    attempt: int
    scheduled: ActivityScheduled
    task_queue: str = DEFAULT_TASK_QUEUE
    id: int = 0


@attrs.frozen
class TaskState:
    """A posted attempt as its run's holder reads it (`TaskWatch.states`, `TaskWatch.claim`).

    Attributes:
        id: The task's number.
        scheduled: The call's ``activity_scheduled`` event.
        started_at: When the engine running it started it (that engine's clock), or
            ``None`` while no engine runs it.
        beat_at: When that engine last recorded a heartbeat of it, or ``None``.
        details: The last recorded heartbeat's details (encoded), of this attempt or of
            an engine that ran it before and died.
    """

    id: int
    scheduled: ActivityScheduled
    started_at: datetime | None
    beat_at: datetime | None
    details: JsonValue = None


class TaskWatch(Protocol):
    """Posted attempts' starts and heartbeats, in the store (`flowgen._stores.postgres_task_watch`)."""

    def start(self, task: Task, at: datetime, *, tell: bool) -> tuple[bool, JsonValue]:
        """Mark a taken task started at *at*; ``(still ours, last heartbeat details)``.

        With *tell*, a ``started`` message goes to the run's holder in the same statement.
        """

    def beat(self, task: Task, at: datetime, details: JsonValue) -> bool:
        """Record a heartbeat of a task run here; False if it is no longer this engine's."""

    def states(self, run_id: str, seq: int, attempt: int) -> list[TaskState]:
        """The posted tasks of attempt *attempt* of the call *seq* of run *run_id*."""

    def claim(self, ids: Collection[int]) -> list[TaskState]:
        """Delete tasks whose attempt timed out; those that were still there."""


@attrs.frozen
class FleetOptions:
    """How an engine takes part in a fleet of engines sharing one PostgreSQL database.

    ``fg.Engine("postgresql://...", fleet=fg.FleetOptions(lease=10, poll=1))``.

    Attributes:
        lease: Seconds a run's lease lasts. The engine renews its leases every third of
            it; an engine that stops renewing (killed, partitioned) loses its runs to
            another engine once it lapses. Commits for a run check its fencing epoch, so
            an engine whose lease lapsed cannot write for it.
        poll: Seconds between two looks for free runs and messages when no notification
            came (``LISTEN/NOTIFY`` wakes engines at once; polling is the fallback). A
            dead engine's runs are taken over within ``lease + poll``.
        claim_batch: The most free runs one look claims.
        runs_workflows: False for an engine that only starts, signals, cancels and
            reads (a web application's, a script's): the runs it starts are left to the
            fleet's workers, and it claims nothing.
        share_activities: Post this engine's activity attempts for any engine of the
            fleet to run (each one's outcome comes back as a message), rather than run
            them on its own threads. Every engine that runs workflows runs posted
            attempts, as many at once as its ``max_workers``; an activity must be
            registered under its name on each (decorated functions are).
    """

    lease: float = 10.0
    poll: float = 1.0
    claim_batch: int = 64
    runs_workflows: bool = True
    share_activities: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.lease > 0:
            raise ValueError(
                f"FleetOptions.lease must be > 0 seconds, got {self.lease}"
            )
        if not self.poll > 0:
            raise ValueError(f"FleetOptions.poll must be > 0 seconds, got {self.poll}")
        if self.claim_batch < 1:
            raise ValueError(
                f"FleetOptions.claim_batch must be >= 1, got {self.claim_batch}"
            )


@attrs.define
class Batch:
    """Everything one transaction writes: new runs, events and row updates, for many runs.

    On a fleet's store, also the messages it posts for runs held elsewhere and the ids of
    the messages it consumed (see the module's docstring).
    """

    runs: list[WorkflowRecord] = attrs.field(factory=list)
    events: list[EventRow] = attrs.field(factory=list)
    updates: list[RunUpdate] = attrs.field(factory=list)
    messages: list[Message] = attrs.field(factory=list)
    consumed: list[int] = attrs.field(factory=list)
    # The writer vouches that the new runs' ids were never used before (the engine makes
    # every run id from a fresh uuid4), so a store may skip looking for them: DuckDBStore's
    # journal otherwise pays a query per batch of starts (~0.3-0.8 ms of CPU).
    fresh_run_ids: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.runs or self.events or self.updates or self.messages or self.consumed
        )

    def extend(self, other: Batch) -> None:
        """Add everything of *other* to this batch."""
        self.fresh_run_ids = self.fresh_run_ids and other.fresh_run_ids
        self.runs.extend(other.runs)
        self.events.extend(other.events)
        self.updates.extend(other.updates)
        self.messages.extend(other.messages)
        self.consumed.extend(other.consumed)


class Store(Protocol):
    """What the engine needs from persistence. Implementations must be thread-safe."""

    def commit(self, batch: Batch) -> None:
        """Write *batch* atomically: all of it is durable when this returns, or none of it.

        Raises:
            StoreError: If the write failed; nothing of the batch was written.
        """

    def load_history(self, workflow_id: str, run_id: str) -> list[Event]:
        """The run's events in order.

        Raises:
            HistoryCorruptError: If the stored events are not numbered 0, 1, 2, ...
        """

    def load_histories(
        self, runs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Event]]:
        """Several runs' histories at once (for recovery), keyed by ``(workflow_id, run_id)``."""

    def get_run(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowRecord | None:
        """A run by id; without *run_id*, the latest run of *workflow_id*."""

    def list_runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        tags: dict[str, JsonValue] | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRecord]:
        """Runs, newest first, filtered by status, name and tag values."""

    def unfinished(self) -> list[WorkflowRecord]:
        """Every run whose status is ``running`` (what recovery resumes)."""

    def close(self) -> None:
        """Release the store (the file lock, for DuckDB)."""


# Optional abilities: a store declares one by having the method (structural typing, as for
# `Store` itself); the runtime, the CLI and the notebook ask with ``isinstance(store, X)``
# and fall back to what every `Store` can do.


@runtime_checkable
class ReadsLatestRuns(Protocol):
    """A store that reads the latest runs of many workflow ids in one go.

    The engine uses it for a batch of starts with given ids (one read, not one per start).
    """

    def latest_runs(self, workflow_ids: Sequence[str]) -> dict[str, WorkflowRecord]:
        """The latest run of each of *workflow_ids* that has one, as `Store.get_run` gives it."""


@runtime_checkable
class FindsParkedRuns(Protocol):
    """A store that tells its parked runs without loading their histories.

    Recovery holds these runs without reading or replaying them (see
    `flowgen._stores.parked`); a store without it has each history read and checked.
    """

    def parked_runs(self) -> dict[tuple[str, str], ParkedRun]:
        """Every running run that is parked, by ``(workflow_id, run_id)``."""


@runtime_checkable
class Flushes(Protocol):
    """A store that defers writing to its tables (DuckDBStore's journal) and can catch up.

    The engine's decision loop calls `flush` once it has been idle for a moment after a
    commit, so SQL through any cursor soon sees an idle engine's work.
    """

    def flush(self) -> None:
        """Make every commit visible to readers of the store's tables."""


@runtime_checkable
class SpeaksSQL(Protocol):
    """A store that answers SQL over its tables (``workflows``, ``events``, ...)."""

    def sql(self, query: str, params: object = None) -> Any:
        """Run *query* on the store's own connection; returns a relation (``.df()``, ...)."""


@runtime_checkable
class Prunes(Protocol):
    """A store that deletes old closed runs (`flowgen._runtime.retention` states the rules)."""

    def prunable(self, closed_before: datetime, limit: int) -> list[str]:
        """Run ids of up to *limit* runs to prune, those that closed first first.

        A run qualifies if it is closed, closed before *closed_before*, and no run of its
        parent's workflow id is running.
        """

    def check_export(self) -> None:
        """Raise `UsageError` if this store cannot export runs to Parquet."""

    def export_runs(
        self, run_ids: Sequence[str], directory: str, stem: str
    ) -> list[str]:
        """Write the rows of *run_ids* to ``<directory>/{workflows,events}-<stem>.parquet``.

        Returns the paths written. Raises `StoreError` if it failed.
        """

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete the rows of the closed runs *run_ids* in one transaction; returns the events deleted."""

    def reclaim(self) -> None:
        """Make the space of deleted rows reusable (DuckDB: CHECKPOINT)."""


@runtime_checkable
class LeasesRuns(Protocol):
    """A store shared by a fleet: each running run is held by one engine through a lease.

    The rules are `flowgen._stores.postgres_leases`'s; the runtime's side is
    `flowgen._runtime.fleet`. Every commit of such a store checks that the engine still
    holds the runs it writes for (raising `LeaseLost` otherwise, nothing written).
    """

    def fleet_options(self) -> FleetOptions | None:
        """How this engine takes part in the fleet; ``None`` for a store opened outside one."""

    def claim(self, workflow_names: Collection[str]) -> list[WorkflowRecord]:
        """Take up to ``claim_batch`` free runs of the workflows named (code here).

        Free: nobody holds them, or their lease lapsed.
        """

    def renew(self) -> frozenset[str]:
        """Extend the leases of the runs held; returns the run ids found lost."""

    def update_answer(
        self, run_id: str, update_id: str, token: str
    ) -> tuple[dict[str, JsonValue] | None, Event | None, str | None]:
        """What an update posted to *run_id* came to, and the run's status.

        Returns the holder's reply to *token* (deleted as it is read), the update's end
        in the run's history, and the run's status; each ``None`` if there is none.
        """

    def unheld_runs(self, run_ids: Collection[str] | None = None) -> set[str]:
        """The running runs (of *run_ids*, or all) no engine holds: free, or lapsed."""

    def messages(self) -> list[Message]:
        """The messages for the runs held, oldest first."""

    def release(self, run_ids: Iterable[str]) -> None:
        """Give runs back at once (their lease cleared: any engine may claim them)."""

    def hand_back(self) -> None:
        """Give back every run held (the engine stops); another engine takes them at once."""

    def post_task(self, task: Task) -> None:
        """Post an activity attempt for any engine of the fleet to run."""

    def take_tasks(self, limit: int, task_queues: Collection[str]) -> list[Task]:
        """Take up to *limit* posted attempts of *task_queues* nobody runs (held for a lease)."""

    def renew_tasks(self, task_ids: Collection[int]) -> None:
        """Extend this engine's hold on the attempts it runs."""

    def finish_task(
        self, task: Task, events: Sequence[Event], late: Sequence[Event] = ()
    ) -> None:
        """Delete a task this engine ran and post its events (outcome last) to the holder.

        If the task is gone (its holder timed it out, or another engine ran it), *late* is
        posted instead (the note that its outcome was ignored).
        """

    def task_watch(self) -> TaskWatch:
        """Where posted attempts' starts and heartbeats are recorded and read."""

    def wait(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for a notification of the fleet; True if one came."""

    def wake(self) -> None:
        """Notify every engine of the fleet (this one too): each looks for work now."""


@runtime_checkable
class TellsClosings(Protocol):
    """A fleet's store that tells which runs closed anywhere in the fleet (``LISTEN``).

    Every fenced commit that closes runs notifies their workflow ids when it commits
    (`flowgen._stores.postgres_leases`); an engine's callers waiting for results of runs
    held elsewhere learn of them on one listening connection (`flowgen._runtime.closings`).
    """

    def listen_closings(self) -> None:
        """Listen for closed runs on a connection of its own (again, if it was lost).

        Raises:
            StoreError: The server could not be reached.
        """

    def closings(self, timeout: float) -> frozenset[str] | None:
        """Wait up to *timeout* seconds for runs to close; the workflow ids heard of.

        Returns every workflow id notified since the last call (empty if none came in
        time), or ``None`` when a notification did not say which (look at every run).

        Raises:
            StoreError: The listening connection was lost (call `listen_closings` again;
                what closed meanwhile was not heard).
        """


@runtime_checkable
class KeepsSchedules(Protocol):
    """A store that keeps schedules (``schedules``): every store flowgen ships does.

    Writes are compare-and-set on `ScheduleRecord.revision`, so engines sharing a store
    (a PostgreSQL fleet) never overwrite a change they did not see.
    """

    def save_schedule(
        self, schedule: ScheduleRecord, *, expected_revision: int | None
    ) -> bool:
        """Write *schedule*; whether it was written.

        With *expected_revision* ``None`` it is a new schedule: written only if no
        schedule has its id. Otherwise it replaces the stored row only if that row's
        revision is *expected_revision*.
        """

    def load_schedules(self, schedule_id: str | None = None) -> list[ScheduleRecord]:
        """Every schedule (or the one of *schedule_id*), by id."""

    def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; whether one had that id."""

    def lock_firing(self, schedule_id: str) -> bool:
        """Try to take the right to fire *schedule_id* now; whether it was taken.

        Among engines sharing the store, one at a time holds it (a store one process
        owns always grants it); a holder that dies loses it. Give it back with
        `unlock_firing`.
        """

    def unlock_firing(self, schedule_id: str) -> None:
        """Give back what `lock_firing` took."""


def apply_update(run: WorkflowRecord, update: RunUpdate) -> WorkflowRecord:
    """*run* with the non-``None`` fields of *update* applied."""
    return attrs.evolve(
        run,
        status=run.status if update.status is None else update.status,
        result=run.result if update.result is None else update.result,
        error=run.error if update.error is None else update.error,
        tags=run.tags if update.tags is None else update.tags,
        closed_at=run.closed_at if update.closed_at is None else update.closed_at,
    )


def check_numbering(workflow_id: str, run_id: str, event_ids: Iterable[int]) -> None:
    """Raise `HistoryCorruptError` unless *event_ids* are 0, 1, 2, ... in order."""
    for expected, event_id in enumerate(event_ids):
        if event_id != expected:
            raise HistoryCorruptError(
                f"history of {workflow_id!r} (run {run_id}) has event {event_id} where "
                f"{expected} belongs: events are missing, duplicated or out of order"
            )
