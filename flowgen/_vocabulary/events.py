"""History events: past-tense facts, the only thing a history holds.

Every event is a frozen attrs class with an ``at`` timestamp (tz-aware UTC). Payload fields
(``args``, ``value``, ``payload``, ``result``, ...) always hold *encoded* JSON values, exactly
what the store holds, so an in-memory history and one loaded from DuckDB are equal.

Events come in two families, and the difference matters for replay (see ``_core/interpreter.py``):

* **incoming** events are facts from the outside world that the engine feeds in: a workflow
  started, an activity finished, a timer fired, a signal arrived, a cancel was requested.
  Replay feeds them to the generator in history order.
* **decision** events are what the interpreter decided in reaction: schedule an activity,
  start a timer, mark a version, finish the run. Replay does not feed them; it *checks* that
  today's code decides the same things, by sequence number.
* **note** events (`NOTE_EVENTS`) record what happened to a running activity that the
  workflow never sees: the details of its last heartbeat (throttled), a late result that
  was ignored. Replay neither feeds nor checks them; the engine reads them back (a retry's
  ``fg.activity_info().heartbeat_details``, after a restart too), and SQL sees them.

The string tags in `EVENT_TAGS` are the ``kind`` column of the ``events`` table: part of the
storage schema, independent of the class names, never to be renamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TypeAlias

import attrs

from flowgen._vocabulary.errors import ErrorInfo

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = [
    "ActivityAttemptFailed",
    "ActivityCompleted",
    "ActivityFailed",
    "ActivityHeartbeat",
    "ActivityResultIgnored",
    "ActivityScheduled",
    "CancelRequested",
    "ChildCompleted",
    "ChildFailed",
    "ChildStarted",
    "CommandCancelled",
    "Event",
    "JsonValue",
    "SideEffectRecorded",
    "SignalReceived",
    "SignalSendFailed",
    "SignalSent",
    "SignalTimedOut",
    "SignalWaitStarted",
    "TagsSet",
    "TimerFired",
    "TimerStarted",
    "UpdateAccepted",
    "UpdateCompleted",
    "UpdateErrored",
    "VersionMarked",
    "WorkflowCancelled",
    "WorkflowCompleted",
    "WorkflowContinuedAsNew",
    "WorkflowErrored",
    "WorkflowStarted",
    "WorkflowTerminated",
]

JsonValue: TypeAlias = (
    bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
)
"""A value as JSON holds it: what every payload field of an event contains."""

# ---------------------------------------------------------------------------------------------
# Incoming events: facts the engine feeds in.


@attrs.frozen
class WorkflowStarted:
    """A run began. Always the first event of a history.

    Attributes:
        workflow_id: The workflow id (the same for every run of a continue-as-new chain).
        run_id: This run's id.
        name: The workflow's registered name.
        args: Encoded positional arguments.
        kwargs: Encoded keyword arguments.
        parent_id: The parent's workflow id, for a child workflow.
        trace_context: The run's OpenTelemetry span, when the engine that started it
            traced (``Engine(..., tracing=True)``): W3C ``traceparent`` and
            ``tracestate`` of the run's span, and ``parent_span_id``, the span it is a
            child of. Kept so a resumed run continues the same trace.
        origin_kind: How this run was made from an earlier run of the same id:
            ``"reset"`` (`Engine.reset`: its history begins with the earlier run's events)
            or ``"retry"`` (`Engine.retry`: a fresh run with the same arguments); ``None``
            for a run started anew. See `flowgen._runtime.lineage`.
        origin_run_id: The run id of that earlier run.
        origin_event: For a reset, the last event id of the earlier run that this history
            copies (events ``0..origin_event``; this event 0 stands for its event 0).
    """

    at: datetime
    workflow_id: str
    run_id: str
    name: str
    args: list[JsonValue] = attrs.field(factory=list)
    kwargs: dict[str, JsonValue] = attrs.field(factory=dict)
    parent_id: str | None = None
    trace_context: dict[str, str] | None = None
    origin_kind: str | None = None
    origin_run_id: str | None = None
    origin_event: int | None = None


@attrs.frozen
class ActivityCompleted:
    """An activity attempt returned *value* (encoded)."""

    at: datetime
    seq: int
    value: JsonValue
    attempt: int = 1
    started_at: datetime | None = None


@attrs.frozen
class ActivityAttemptFailed:
    """An activity attempt failed and will be retried at *retry_at*."""

    at: datetime
    seq: int
    error: ErrorInfo
    attempt: int
    retry_at: datetime
    started_at: datetime | None = None


@attrs.frozen
class ActivityFailed:
    """An activity failed for good: its retries are spent or the error was non-retryable."""

    at: datetime
    seq: int
    error: ErrorInfo
    attempt: int = 1
    started_at: datetime | None = None


@attrs.frozen
class TimerFired:
    """The timer started at *seq* reached its due time."""

    at: datetime
    seq: int


@attrs.frozen
class SignalReceived:
    """A signal arrived (buffered until a `wait_signal` for its name takes it).

    Attributes:
        name: The signal's name.
        payload: The encoded payload.
        index: How many signals this run received before this one (0, 1, 2, ...), so a
            duplicated, dropped or reordered signal is detected on replay.
        sender: ``"<workflow id>/<seq>"`` when another workflow sent it with `send_signal`.
    """

    at: datetime
    name: str
    payload: JsonValue
    index: int
    sender: str | None = None


@attrs.frozen
class SignalTimedOut:
    """The `wait_signal` at *seq* reached its timeout first."""

    at: datetime
    seq: int


@attrs.frozen
class SideEffectRecorded:
    """The side effect at *seq* was performed once and returned *value* (encoded)."""

    at: datetime
    seq: int
    name: str
    value: JsonValue


@attrs.frozen
class SignalSent:
    """The `send_signal` at *seq* was delivered to *workflow_id*."""

    at: datetime
    seq: int
    workflow_id: str
    name: str


@attrs.frozen
class SignalSendFailed:
    """The `send_signal` at *seq* could not be delivered (unknown or finished run)."""

    at: datetime
    seq: int
    workflow_id: str
    name: str
    error: ErrorInfo


@attrs.frozen
class ChildCompleted:
    """The child workflow started at *seq* returned *value* (encoded)."""

    at: datetime
    seq: int
    child_id: str
    value: JsonValue


@attrs.frozen
class ChildFailed:
    """The child workflow started at *seq* failed, was cancelled or terminated."""

    at: datetime
    seq: int
    child_id: str
    error: ErrorInfo


@attrs.frozen
class CancelRequested:
    """`Engine.cancel` asked this run to stop; `Cancelled` is thrown at its current yield."""

    at: datetime
    reason: str = ""


@attrs.frozen
class UpdateAccepted:
    """`Engine.update` called the handler *name*: its validator (if any) accepted it.

    A rejected update records nothing; an accepted one starts its handler, which runs
    beside the workflow's main code (see ``_core/updates.py``).

    Attributes:
        update_id: The update's id, unique in the run (the caller's ``update_id=`` or a
            fresh one): a retried call with the same id gets the same answer.
        name: The update handler's name.
        args: Encoded positional arguments.
    """

    at: datetime
    update_id: str
    name: str
    args: list[JsonValue] = attrs.field(factory=list)


@attrs.frozen
class WorkflowTerminated:
    """The run was ended from outside without running any more workflow code."""

    at: datetime
    reason: str = ""


# ---------------------------------------------------------------------------------------------
# Decision events: what the interpreter decided.


@attrs.frozen
class ActivityScheduled:
    """The workflow asked for activity *name* at *seq*, with encoded arguments."""

    at: datetime
    seq: int
    name: str
    args: list[JsonValue] = attrs.field(factory=list)
    kwargs: dict[str, JsonValue] = attrs.field(factory=dict)


@attrs.frozen
class TimerStarted:
    """The workflow started a timer at *seq* that fires at *fire_at*."""

    at: datetime
    seq: int
    fire_at: datetime


@attrs.frozen
class SignalWaitStarted:
    """The workflow waits at *seq* for signal *name*, until *deadline* if one is set."""

    at: datetime
    seq: int
    name: str
    deadline: datetime | None = None


@attrs.frozen
class ChildStarted:
    """The workflow started child workflow *name* as *child_id* at *seq*."""

    at: datetime
    seq: int
    name: str
    child_id: str
    args: list[JsonValue] = attrs.field(factory=list)
    kwargs: dict[str, JsonValue] = attrs.field(factory=dict)


@attrs.frozen
class VersionMarked:
    """This run follows *version* of the change *change_id* (keyed by id, not by seq)."""

    at: datetime
    change_id: str
    version: int


@attrs.frozen
class TagsSet:
    """The workflow merged *tags* into its searchable tags."""

    at: datetime
    tags: dict[str, JsonValue]


@attrs.frozen
class CommandCancelled:
    """The command at *seq* is no longer awaited (a race was won, a gather failed, a cancel).

    Attributes:
        seq: The command's sequence number.
        reason: Why: ``"race"``, ``"gather"`` or ``"cancel"``.
    """

    at: datetime
    seq: int
    reason: str


@attrs.frozen
class UpdateCompleted:
    """The handler of the update *update_id* returned *result* (encoded)."""

    at: datetime
    update_id: str
    name: str
    result: JsonValue


@attrs.frozen
class UpdateErrored:
    """The update's handler raised (stored kind ``update_failed``): the caller gets `UpdateFailed`."""

    at: datetime
    update_id: str
    name: str
    error: ErrorInfo


@attrs.frozen
class WorkflowCompleted:
    """The workflow returned *result* (encoded)."""

    at: datetime
    result: JsonValue


@attrs.frozen
class WorkflowErrored:
    """The workflow raised: the run ended ``failed`` (stored kind ``workflow_failed``)."""

    at: datetime
    error: ErrorInfo


@attrs.frozen
class WorkflowCancelled:
    """`Cancelled` escaped the workflow: the run ended ``cancelled``."""

    at: datetime
    error: ErrorInfo


@attrs.frozen
class WorkflowContinuedAsNew:
    """The run ended and a new run of the same workflow starts with *args* and *kwargs*."""

    at: datetime
    args: list[JsonValue] = attrs.field(factory=list)
    kwargs: dict[str, JsonValue] = attrs.field(factory=dict)


# ---------------------------------------------------------------------------------------------
# Notes: facts about a running activity that the workflow never sees.


@attrs.frozen
class ActivityHeartbeat:
    """Attempt *attempt* of the activity at *seq* heartbeat with *details* (encoded).

    Recorded throttled (not every ``fg.heartbeat``): the first heartbeat of an attempt, then
    at most one per throttle interval, and the latest details before a retry.
    """

    at: datetime
    seq: int
    attempt: int
    details: JsonValue = None


@attrs.frozen
class ActivityResultIgnored:
    """Attempt *attempt* of the activity at *seq* reported after it had timed out.

    Attributes:
        outcome: The tag of what it reported (``activity_completed``, ...), not recorded
            as its outcome: the attempt had already failed as timed out.
        reason: Why it was ignored.
    """

    at: datetime
    seq: int
    attempt: int
    outcome: str
    reason: str


Event: TypeAlias = (
    WorkflowStarted
    | ActivityCompleted
    | ActivityAttemptFailed
    | ActivityFailed
    | TimerFired
    | SignalReceived
    | SignalTimedOut
    | SideEffectRecorded
    | SignalSent
    | SignalSendFailed
    | ChildCompleted
    | ChildFailed
    | CancelRequested
    | WorkflowTerminated
    | UpdateAccepted
    | ActivityScheduled
    | TimerStarted
    | SignalWaitStarted
    | ChildStarted
    | VersionMarked
    | TagsSet
    | CommandCancelled
    | UpdateCompleted
    | UpdateErrored
    | WorkflowCompleted
    | WorkflowErrored
    | WorkflowCancelled
    | WorkflowContinuedAsNew
    | ActivityHeartbeat
    | ActivityResultIgnored
)
"""Every event a history may hold (a closed union)."""

EVENT_TAGS: Mapping[type, str] = {
    WorkflowStarted: "workflow_started",
    ActivityCompleted: "activity_completed",
    ActivityAttemptFailed: "activity_attempt_failed",
    ActivityFailed: "activity_failed",
    TimerFired: "timer_fired",
    SignalReceived: "signal_received",
    SignalTimedOut: "signal_timed_out",
    SideEffectRecorded: "side_effect_recorded",
    SignalSent: "signal_sent",
    SignalSendFailed: "signal_send_failed",
    ChildCompleted: "child_completed",
    ChildFailed: "child_failed",
    CancelRequested: "cancel_requested",
    WorkflowTerminated: "workflow_terminated",
    ActivityScheduled: "activity_scheduled",
    TimerStarted: "timer_started",
    SignalWaitStarted: "signal_wait_started",
    ChildStarted: "child_started",
    VersionMarked: "version_marked",
    TagsSet: "tags_set",
    CommandCancelled: "command_cancelled",
    WorkflowCompleted: "workflow_completed",
    WorkflowErrored: "workflow_failed",
    WorkflowCancelled: "workflow_cancelled",
    WorkflowContinuedAsNew: "workflow_continued_as_new",
    ActivityHeartbeat: "activity_heartbeat",
    ActivityResultIgnored: "activity_result_ignored",
    UpdateAccepted: "update_accepted",
    UpdateCompleted: "update_completed",
    UpdateErrored: "update_failed",
}
"""Stable storage tags (the ``kind`` column). Part of the schema: never rename one."""

TAG_TO_EVENT: Mapping[str, type] = {tag: cls for cls, tag in EVENT_TAGS.items()}

INCOMING_EVENTS: tuple[type, ...] = (
    WorkflowStarted,
    ActivityCompleted,
    ActivityAttemptFailed,
    ActivityFailed,
    TimerFired,
    SignalReceived,
    SignalTimedOut,
    SideEffectRecorded,
    SignalSent,
    SignalSendFailed,
    ChildCompleted,
    ChildFailed,
    CancelRequested,
    WorkflowTerminated,
    UpdateAccepted,
)
"""Facts from the outside world; everything else is a decision or a note."""

NOTE_EVENTS: tuple[type, ...] = (ActivityHeartbeat, ActivityResultIgnored)
"""Facts about a running activity that the workflow never sees (neither fed nor checked)."""

TERMINAL_EVENTS: tuple[type, ...] = (
    WorkflowCompleted,
    WorkflowErrored,
    WorkflowCancelled,
    WorkflowContinuedAsNew,
    WorkflowTerminated,
)
"""Events that close a run."""


def event_seq(event: Event) -> int | None:
    """The sequence number an event belongs to, or ``None`` for run-level events."""
    seq: object = getattr(event, "seq", None)
    return seq if isinstance(seq, int) else None


# Resolve the string annotations now, while this module's globals are at hand: the package
# later renames `__module__` to "flowgen" for nicer reprs, and cattrs reads these types.
for _cls in EVENT_TAGS:
    attrs.resolve_types(_cls)
