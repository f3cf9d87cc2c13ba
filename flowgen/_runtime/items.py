"""What reaches the decision loop, and what one batch of it builds.

Rules:

- Everything that happens to a run reaches the decision loop as an *item* in one inbox (a
  thread-safe queue): a start, a signal, a cancel, an activity's outcome from a worker
  thread (`Feed`), a timer that came due (`Due`), a run to recover, a query, a read of
  loop-owned state (`Call`). Only the decision loop takes items out and applies them.
- An item that has a caller carries a `Future`; the loop answers it only after the batch
  the item was applied in is committed (or fails it, if the commit failed).
- One batch builds one `Txn`: the rows of its single commit, the effects to run once it is
  committed, the items still to apply (work that crosses runs is appended as it appears),
  and a snapshot of every run it touched, so a failed commit can be undone.
- `Run` is what the loop keeps about a run besides its evictable interpreter; it belongs to
  the loop (see `flowgen._runtime.runs`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from concurrent.futures import Future
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from flowgen._stores.parked import ParkedRun
from flowgen._stores.protocol import Batch, WorkflowRecord
from flowgen._vocabulary.errors import (
    HistoryCorruptError,
    NonDeterminismError,
    UnknownWorkflow,
)
from flowgen._vocabulary.events import Event, JsonValue
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:
    from flowgen._runtime.tracing import RunTrace

__all__ = [
    "Call",
    "CancelItem",
    "Due",
    "DueKind",
    "Feed",
    "Hold",
    "Item",
    "Key",
    "OnConflict",
    "Query",
    "Recover",
    "Run",
    "SignalItem",
    "Start",
    "Txn",
    "WorkflowFn",
]

WorkflowFn = Callable[..., Generator[Any, Any, object]]
OnConflict = Literal["fail", "use_existing", "terminate_existing"]
Key = tuple[str, str]
"""A run's ``(workflow_id, run_id)``."""


@attrs.define(eq=False)
class Run:
    """What the engine keeps about a run besides its (evictable) interpreter.

    Attributes:
        next_event_id: The number the run's next recorded event gets.
        signals: How many signals the run has received (the next one's index).
        status: `RunStatus.RUNNING` until the run ends.
        cancel_requested: A cancel was recorded (a second request is a no-op).
        stuck: Why the run cannot move in this process (its code is missing or no longer
            matches its history), or ``None``.
        trace: What tracing keeps about the run, when the engine traces
            (`flowgen._runtime.tracing`).
    """

    workflow_id: str
    run_id: str
    name: str
    fn: WorkflowFn | None
    next_event_id: int = 0
    signals: int = 0
    status: RunStatus = RunStatus.RUNNING
    tags: dict[str, JsonValue] = attrs.field(factory=dict)
    parent_id: str | None = None
    cancel_requested: bool = False
    stuck: BaseException | None = None
    trace: RunTrace | None = None

    @property
    def key(self) -> Key:
        """The run's ``(workflow_id, run_id)``."""
        return (self.workflow_id, self.run_id)

    @property
    def is_running(self) -> bool:
        """True until the run has ended."""
        return self.status is RunStatus.RUNNING


# What makes a run stuck in this process rather than failed (`DecisionLoop.stick`).
STUCK_ERRORS: Final = (UnknownWorkflow, NonDeterminismError, HistoryCorruptError)

# Every field of a Run, in the order its __init__ takes them.
_run_fields: Final = attrgetter(*(field.name for field in attrs.fields(Run)))


@attrs.define(eq=False)
class Item:
    """Something for the decision loop to apply; *future* answers its caller, if any.

    *message* is the id of the fleet's message it was made from (`flowgen._runtime.fleet`):
    the batch that applies it consumes the message.
    """

    future: Future[object] | None = attrs.field(default=None, kw_only=True)
    message: int | None = attrs.field(default=None, kw_only=True)


@attrs.define(eq=False)
class Txn:
    """What one batch builds, item by item, before its single commit.

    Attributes:
        batch: The rows the transaction writes.
        effects: What to do once it is committed (start activities, arm timers).
        work: The items to apply; work that crosses runs is appended as it appears.
        snapshots: Each touched run as it was before, to undo the batch if it fails
            (``None`` for a run the batch created).
    """

    # Every run id the engine writes is a fresh uuid4 (see Batch.fresh_run_ids).
    batch: Batch = attrs.field(factory=lambda: Batch(fresh_run_ids=True))
    effects: list[Callable[[], None]] = attrs.field(factory=list)
    work: list[Item] = attrs.field(factory=list)
    snapshots: dict[Key, Run | None] = attrs.field(factory=dict)

    def touch(self, run: Run) -> None:
        """Remember *run* as it is now, the first time this batch changes it."""
        key = run.key
        if key not in self.snapshots:
            # attrs.evolve, at a third of its cost (once per run per batch).
            snapshot = Run(*_run_fields(run))
            snapshot.tags = dict(run.tags)
            self.snapshots[key] = snapshot


@attrs.define(eq=False)
class Start(Item):
    """Start a run (from the API, a parent's `StartChild`, or a continue-as-new)."""

    record: WorkflowRecord
    fn: WorkflowFn
    on_conflict: OnConflict = "fail"
    signal: tuple[str, JsonValue] | None = None
    parent: tuple[Key, int] | None = None  # a child's (parent run, seq)
    # The id was made here from a fresh uuid4 (122 random bits): no stored run can have
    # it, so the read that looks for one is skipped (~1 ms of a sequential start).
    fresh_id: bool = False
    # The span the run's span is a child of (W3C headers): the caller's current span, or
    # the span of the run that starts this one; used only when the engine traces.
    trace_parent: dict[str, str] | None = None


@attrs.define(eq=False)
class Feed(Item):
    """An incoming event for the current run of a workflow id (or a specific run)."""

    workflow_id: str
    run_id: str | None
    event: Event


@attrs.define(eq=False)
class SignalItem(Item):
    """A signal for the current run of *workflow_id* (from the API or another run)."""

    workflow_id: str
    name: str
    payload: JsonValue
    sender: str | None = None


@attrs.define(eq=False)
class CancelItem(Item):
    """A cancel request for the current run of *workflow_id*; with *terminate*, its end.

    *terminate* ends the run at once (``workflow_terminated``), as a parent's close with
    ``parent_close="terminate"`` or ``terminate_existing`` does.
    """

    workflow_id: str
    reason: str
    terminate: bool = False


DueKind = Literal["timer", "signal_timeout", "retry", "activity_timeout"]


@attrs.define(eq=False)
class Due(Item):
    """A timer-heap entry that came due: the loop decides what it means now."""

    kind: DueKind
    key: Key
    seq: int
    attempt: int = 0


@attrs.define(eq=False)
class Recover(Item):
    """An unfinished run found on open, with its stored history."""

    record: WorkflowRecord
    history: list[Event]


@attrs.define(eq=False)
class Hold(Item):
    """Parked runs found on open, held without their histories (see recovery)."""

    runs: list[tuple[WorkflowRecord, ParkedRun]]


@attrs.define(eq=False)
class Query(Item):
    """Ask a run's query handler (answered from its interpreter, recording nothing)."""

    workflow_id: str
    name: str
    args: tuple[object, ...]


@attrs.define(eq=False)
class Call(Item):
    """Run a function on the decision loop (for reads of interpreter state)."""

    fn: Callable[[], object]
