"""Parked runs: what recovery may hold without replaying them (one rule, two forms).

Rules
=====

* A running run is *parked* when its recorded history ends waiting for a signal with no
  deadline (its last event is a ``signal_wait_started`` without one) and nothing else is
  open: every activity call, timer, child and signal wait with a deadline it scheduled has
  an event that closes it (`CLOSING_EVENTS`). Recovery has nothing to resume for such a
  run (no attempt to run, no timer to arm, no child to follow), so it is held without a
  replay until something comes for it.
* Conservative by construction: a signal wait with a deadline that a signal satisfied has
  no event naming its seq, so its run counts as not parked and is simply replayed.
* The rule has a Python form (`is_parked`, for any store, over a loaded history) and a SQL
  form (`DuckDBStore.parked_runs`, over the tables, so reopening a file reads and decodes
  nothing of its parked runs); both are built from the event classes below, and a
  property test holds them equal.
* `ParkedRun` carries what the engine keeps about a held run, counted from its history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

from flowgen._vocabulary.events import (
    EVENT_TAGS,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    CommandCancelled,
    Event,
    SignalReceived,
    SignalTimedOut,
    SignalWaitStarted,
    TimerFired,
    TimerStarted,
    WorkflowStarted,
)

__all__ = [
    "CLOSING_KINDS",
    "DUCKDB_PARKED_RUNS",
    "OPENING_KINDS",
    "ParkedRun",
    "is_parked",
    "parked_run",
]

OPENING_EVENTS: Final = (ActivityScheduled, TimerStarted, ChildStarted)
"""Decisions that wait for an outcome (besides signal waits, which depend on a deadline)."""
CLOSING_EVENTS: Final = (
    ActivityCompleted,
    ActivityFailed,
    TimerFired,
    ChildCompleted,
    ChildFailed,
    SignalTimedOut,
    CommandCancelled,
)
"""Events that close what an opening event (or a timed signal wait) waits for."""
OPENING_KINDS: Final = tuple(EVENT_TAGS[cls] for cls in OPENING_EVENTS)
CLOSING_KINDS: Final = tuple(EVENT_TAGS[cls] for cls in CLOSING_EVENTS)


@attrs.frozen
class ParkedRun:
    """What the engine keeps about a parked run, counted from its history.

    Attributes:
        events: How many events the run recorded (its next event's id).
        signals: How many signals it received (the next one's index).
        cancel_requested: A cancel was recorded.
        trace_context: Its ``workflow_started`` event's trace context, if traced.
    """

    events: int
    signals: int
    cancel_requested: bool
    trace_context: dict[str, str] | None = None


def _waits_without_deadline(event: Event) -> bool:
    return isinstance(event, SignalWaitStarted) and event.deadline is None


def is_parked(history: Sequence[Event]) -> bool:
    """True if *history* ends waiting for a signal with no deadline, and for nothing else."""
    if not history or not _waits_without_deadline(history[-1]):
        return False
    closed = {e.seq for e in history if isinstance(e, CLOSING_EVENTS)}
    return all(
        e.seq in closed
        for e in history
        if isinstance(e, OPENING_EVENTS)
        or (isinstance(e, SignalWaitStarted) and e.deadline is not None)
    )


def parked_run(history: Sequence[Event]) -> ParkedRun | None:
    """The `ParkedRun` of *history*, or ``None`` if the run is not parked."""
    if not is_parked(history):
        return None
    first = history[0]
    return ParkedRun(
        events=len(history),
        signals=sum(isinstance(e, SignalReceived) for e in history),
        cancel_requested=any(isinstance(e, CancelRequested) for e in history),
        trace_context=first.trace_context
        if isinstance(first, WorkflowStarted)
        else None,
    )


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


_WAIT: Final = EVENT_TAGS[SignalWaitStarted]

DUCKDB_PARKED_RUNS: Final = f"""
WITH running AS (
    SELECT workflow_id, run_id FROM workflows WHERE status = 'running'
), ev AS (
    SELECT e.run_id, e.event_id, e.seq, e.kind,
        e.kind = '{_WAIT}' AND (e.payload->>'$.deadline') IS NOT NULL AS timed_wait
    FROM events e SEMI JOIN running r ON e.run_id = r.run_id
), open_runs AS (
    SELECT DISTINCT w.run_id FROM ev w
    WHERE (w.kind IN ({_sql_list(OPENING_KINDS)}) OR w.timed_wait)
      AND NOT EXISTS (
        SELECT 1 FROM ev c
        WHERE c.run_id = w.run_id AND c.seq = w.seq
          AND c.kind IN ({_sql_list(CLOSING_KINDS)})
      )
), counted AS (
    SELECT run_id,
        count(*) AS events,
        count(*) FILTER (WHERE kind = '{EVENT_TAGS[SignalReceived]}') AS signals,
        bool_or(kind = '{EVENT_TAGS[CancelRequested]}') AS cancel_requested,
        arg_max(kind, event_id) AS last_kind,
        arg_max(timed_wait, event_id) AS last_timed
    FROM ev ANTI JOIN open_runs o ON ev.run_id = o.run_id
    GROUP BY run_id
)
SELECT r.workflow_id, c.run_id, c.events, c.signals, c.cancel_requested,
    CAST(s.payload->'$.trace_context' AS VARCHAR)
FROM counted c
JOIN running r ON r.run_id = c.run_id
JOIN events s ON s.run_id = c.run_id AND s.event_id = 0
WHERE c.last_kind = '{_WAIT}' AND NOT c.last_timed
"""
"""The rule in SQL over a DuckDB file's tables: one row per parked run (see `ParkedRun`)."""
