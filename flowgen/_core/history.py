"""What a recorded history says, apart from what the workflow's code does with it.

Replay has two sides. The *recorded* side is fixed the moment the history is read: which
event opened each seq, which seqs were cancelled, which version each change id got, how
many ``tags_set`` events there are, how the run ended, and the incoming events to feed in
order. The *code* side (the generator, what it awaits, what it decides now) lives in the
`Interpreter`, which consults a `RecordedHistory` and never changes it.

Rules
=====

* Immutable: built once by `RecordedHistory.of`, frozen, its mappings read-only views.
  A fresh run has `EMPTY`: nothing recorded, so everything the code yields is new.
* `RecordedHistory.of` checks that the history is consistent in itself and raises
  `HistoryCorruptError` if not: it must begin with ``workflow_started``, no seq may be
  opened or cancelled twice, no change id versioned twice, and nothing may follow the end.
  Whether the code agrees with it is the interpreter's business (`NonDeterminismError`).
* An event *opens* a seq when it is the first event of a leaf command: the decision that
  scheduled it (``activity_scheduled``, ``timer_started``, ``signal_wait_started``,
  ``child_started``) or the record of a command performed on the spot
  (``side_effect_recorded``, ``signal_sent``, ``signal_send_failed``).
* The *incoming* events are those the interpreter feeds: ``workflow_started``, the outcomes,
  signals, accepted updates, cancel requests and ``workflow_terminated``; decisions are only
  indexed (an update's end by its update id, in `RecordedHistory.update_ends`). Notes (a
  heartbeat's details, an ignored late result) are neither: replay skips them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import attrs

from flowgen._vocabulary.errors import HistoryCorruptError
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    INCOMING_EVENTS,
    NOTE_EVENTS,
    ActivityScheduled,
    ChildStarted,
    CommandCancelled,
    Event,
    SideEffectRecorded,
    SignalSendFailed,
    SignalSent,
    SignalWaitStarted,
    TagsSet,
    TimerStarted,
    UpdateCompleted,
    UpdateErrored,
    VersionMarked,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
    WorkflowStarted,
    WorkflowTerminated,
)

__all__ = ["EMPTY", "RecordedHistory", "event_name", "is_incoming"]

# The events that open a seq.
FIRST_EVENTS: Final = (
    ActivityScheduled,
    TimerStarted,
    SignalWaitStarted,
    ChildStarted,
    SideEffectRecorded,
    SignalSent,
    SignalSendFailed,
)
TERMINAL_DECISIONS: Final = (
    WorkflowCompleted,
    WorkflowErrored,
    WorkflowCancelled,
    WorkflowContinuedAsNew,
)
DECISIONS: Final = (
    ActivityScheduled,
    TimerStarted,
    SignalWaitStarted,
    ChildStarted,
    VersionMarked,
    TagsSet,
    CommandCancelled,
    UpdateCompleted,
    UpdateErrored,
    *TERMINAL_DECISIONS,
)
# Exact types, for fast checks on the hot paths (isinstance over a tuple of a dozen classes
# costs more than the step itself); subclasses still take the isinstance path.
INCOMING: Final = frozenset(INCOMING_EVENTS) - frozenset(DECISIONS)
_NOT_INDEXED: Final = INCOMING - frozenset(
    (*FIRST_EVENTS, CommandCancelled, VersionMarked, TagsSet, WorkflowTerminated)
)


def event_name(event: object) -> str:
    """An event's tag, with its name when it has one (``activity_scheduled 'charge'``)."""
    tag = EVENT_TAGS.get(type(event), type(event).__name__)
    name = getattr(event, "name", None)
    return f"{tag} {name!r}" if isinstance(name, str) else tag


def is_incoming(event: Event) -> bool:
    """True for an event the interpreter feeds (not a decision it makes, nor a note)."""
    return type(event) in INCOMING or not isinstance(event, (*DECISIONS, *NOTE_EVENTS))


def _index_update_end(
    update_ends: dict[str, Event], event: UpdateCompleted | UpdateErrored
) -> None:
    if event.update_id in update_ends:
        raise HistoryCorruptError(
            f"update {event.update_id!r} is recorded as ended twice"
        )
    update_ends[event.update_id] = event


def _read_only(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping))


@attrs.frozen
class RecordedHistory:
    """One run's recorded history, indexed for replay (see the module docstring).

    Attributes:
        incoming: The events to feed, in order, ``workflow_started`` first (empty for
            `EMPTY`).
        first_events: The event that opened each seq.
        cancelled: The seqs the history records as cancelled.
        versions: The version recorded for each change id.
        tags_set: How many ``tags_set`` events the history holds.
        update_ends: How each finished update ended (``update_completed`` or
            ``update_failed``), by update id.
        end: The event that ended the run (a terminal decision or ``workflow_terminated``),
            or ``None`` while it runs.
        last_seq: The highest seq the history opened, -1 if none.
    """

    incoming: tuple[Event, ...] = ()
    first_events: Mapping[int, Event] = attrs.field(factory=dict, converter=_read_only)
    cancelled: frozenset[int] = frozenset()
    versions: Mapping[str, int] = attrs.field(factory=dict, converter=_read_only)
    tags_set: int = 0
    update_ends: Mapping[str, Event] = attrs.field(factory=dict, converter=_read_only)
    end: Event | None = None
    last_seq: int = -1

    @classmethod
    def of(cls, history: Sequence[Event]) -> RecordedHistory:
        """Index *history*.

        Raises:
            HistoryCorruptError: The history is inconsistent in itself.
        """
        if not history or not isinstance(history[0], WorkflowStarted):
            raise HistoryCorruptError(
                "a history must begin with a workflow_started event"
            )
        incoming: list[Event] = []
        first_events: dict[int, Event] = {}
        cancelled: set[int] = set()
        versions: dict[str, int] = {}
        tags_set = 0
        update_ends: dict[str, Event] = {}
        end: Event | None = None
        feed = incoming.append
        for position, event in enumerate(history):
            if end is not None:
                raise HistoryCorruptError(
                    f"event {position} ({event_name(event)}) comes after the run ended"
                )
            if type(event) in _NOT_INDEXED:  # an outcome: the common case first
                feed(event)
                continue
            if is_incoming(event):
                feed(event)
            if isinstance(event, FIRST_EVENTS):
                if event.seq in first_events:
                    raise HistoryCorruptError(
                        f"seq {event.seq} is recorded twice: "
                        f"{event_name(first_events[event.seq])} and {event_name(event)}"
                    )
                first_events[event.seq] = event
            elif isinstance(event, CommandCancelled):
                if event.seq in cancelled:
                    raise HistoryCorruptError(f"seq {event.seq} is cancelled twice")
                cancelled.add(event.seq)
            elif isinstance(event, VersionMarked):
                if event.change_id in versions:
                    raise HistoryCorruptError(
                        f"version of change {event.change_id!r} is recorded twice"
                    )
                versions[event.change_id] = event.version
            elif isinstance(event, TagsSet):
                tags_set += 1
            elif isinstance(event, (UpdateCompleted, UpdateErrored)):
                _index_update_end(update_ends, event)
            elif isinstance(
                event, (*TERMINAL_DECISIONS, WorkflowTerminated)
            ):  # notes fall through: replay skips them
                end = event
        return cls(
            incoming=tuple(incoming),
            first_events=first_events,
            cancelled=frozenset(cancelled),
            versions=versions,
            tags_set=tags_set,
            update_ends=update_ends,
            end=end,
            last_seq=max(first_events, default=-1),
        )

    def past(self, seq: int) -> bool:
        """True if the recorded run went past *seq*: it opened *seq* or later, or ended."""
        return self.last_seq >= seq or self.end is not None


EMPTY: Final = RecordedHistory()
"""The history of a run that has recorded nothing yet."""
