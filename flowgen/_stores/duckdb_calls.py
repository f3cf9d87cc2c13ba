"""``activity_calls``: one typed row per activity call that ended, kept as rows arrive.

Rules
=====

* **What it holds.** ``activity_calls`` has the ``activities`` view's columns (``workflow_id,
  run_id, seq, name, attempts, status, scheduled_at, started_at, closed_at, duration_s,
  last_error, error_type``) and its rows for every call that ended (``status`` completed,
  failed or cancelled). The questions asked most ("p50/p95 latency and failure rate per
  activity") then read typed columns, instead of extracting times and errors from JSON and
  joining each call to its final attempt at query time. A call still open is in
  ``activity_calls_open`` (same columns less ``status``, ``closed_at``, ``duration_s``: the
  ``activities`` view shows it as ``scheduled``), until its end moves it over.
* **A call's row is written once**, when it ends: an outcome for a call that ended (a
  cancelled one, one of a run that ended) is a corrupt history, never recorded (see
  `flowgen._core.interpreter`), so an ended call never changes. So `fold_calls` only
  appends to the big table; everything it updates and deletes is in the small open table
  (the calls in flight), and its cost follows the rows that arrived, not the size of the
  database.
* **Where.** In the same transaction as the events: the embedded store's table writer
  (journaled commits moved into the tables, `flowgen._stores.duckdb_writer`), and the
  analytics copy of a PostgreSQL store (`flowgen._stores.duckdb_mirror`). The version-2
  migration fills both tables from the events already stored, with the view's own query
  (`flowgen._stores.duckdb_schema`).
* **The same answers as the view.** `fold_calls` applies the view's rules to the new events
  (a call's attempts are its highest attempt number; it started when its first attempt
  did; its error is its last failed attempt's; it ended at its final outcome, else at its
  first cancel, else at its run's end), events in any order within what arrived. The
  tests compare ``activity_calls`` and ``activity_calls_open`` with the view after every
  kind of outcome, on both stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import duckdb

from flowgen._stores.duckdb_schema import CALLS_FILL
from flowgen._vocabulary.events import EVENT_TAGS, TERMINAL_EVENTS

__all__ = ["CALL_KINDS", "CallFolder", "fold_calls", "prepare_fold", "rebuild_calls"]

_ATTEMPTS: Final = "'activity_attempt_failed', 'activity_failed', 'activity_completed'"
_FINALS: Final = "'activity_failed', 'activity_completed'"
_ENDS: Final = ", ".join(f"'{EVENT_TAGS[cls]}'" for cls in TERMINAL_EVENTS)

CALL_KINDS: Final = frozenset(
    {
        "activity_scheduled",
        "activity_attempt_failed",
        "activity_completed",
        "activity_failed",
        "command_cancelled",
        *(EVENT_TAGS[cls] for cls in TERMINAL_EVENTS),
    }
)
"""The event kinds that can change a call: the only ones `fold_calls` reads."""


def _seconds(end: str, start: str) -> str:
    return f"(epoch_us({end}) - epoch_us({start})) / 1e6"


def _statements(source: str) -> tuple[str, ...]:
    """`fold_calls`' statements over the new events in *source* (events' columns)."""
    return (
        # New calls.
        f"""INSERT INTO activity_calls_open
SELECT workflow_id, run_id, seq, name, 0, recorded_at, NULL, NULL, NULL
FROM {source} WHERE kind = 'activity_scheduled'""",
        # Attempts that ended: the highest attempt, the first attempt's start, the last
        # failed attempt's error (earlier arrivals hold lower attempts).
        f"""UPDATE activity_calls_open AS o SET
    attempts = greatest(o.attempts, d.attempts),
    started_at = coalesce(o.started_at, d.started_at),
    last_error = CASE WHEN d.errors > 0 THEN d.last_error ELSE o.last_error END,
    error_type = CASE WHEN d.errors > 0 THEN d.error_type ELSE o.error_type END
FROM (
    SELECT run_id, seq, max(attempt) AS attempts,
        arg_min(CAST(payload->>'$.started_at' AS TIMESTAMPTZ), attempt) AS started_at,
        count(*) FILTER (WHERE kind <> 'activity_completed') AS errors,
        arg_max(payload->>'$.error.message', attempt)
            FILTER (WHERE kind <> 'activity_completed') AS last_error,
        arg_max(payload->>'$.error.type', attempt)
            FILTER (WHERE kind <> 'activity_completed') AS error_type
    FROM {source} WHERE kind IN ({_ATTEMPTS}) GROUP BY run_id, seq
) d
WHERE o.run_id = d.run_id AND o.seq = d.seq""",
        # The calls that ended, and how: a final outcome, else a cancel, else the run's end.
        f"""INSERT INTO activity_calls_ending
SELECT o.run_id, o.seq,
    CASE f.kind
        WHEN 'activity_completed' THEN 'completed'
        WHEN 'activity_failed' THEN 'failed'
        ELSE 'cancelled'
    END AS status,
    coalesce(f.at, c.at, r.at) AS closed_at
FROM activity_calls_open o
LEFT JOIN (
    SELECT run_id, seq, min(kind) AS kind, min(recorded_at) AS at
    FROM {source} WHERE kind IN ({_FINALS}) GROUP BY run_id, seq
) f ON f.run_id = o.run_id AND f.seq = o.seq
LEFT JOIN (
    SELECT run_id, seq, min(recorded_at) AS at
    FROM {source} WHERE kind = 'command_cancelled' GROUP BY run_id, seq
) c ON c.run_id = o.run_id AND c.seq = o.seq
LEFT JOIN (
    SELECT run_id, min(recorded_at) AS at
    FROM {source} WHERE kind IN ({_ENDS}) GROUP BY run_id
) r ON r.run_id = o.run_id
WHERE coalesce(f.at, c.at, r.at) IS NOT NULL""",
        f"""INSERT INTO activity_calls
SELECT o.workflow_id, o.run_id, o.seq, o.name, o.attempts, e.status, o.scheduled_at,
    o.started_at, e.closed_at, {_seconds("e.closed_at", "o.scheduled_at")},
    o.last_error, o.error_type
FROM activity_calls_open o
JOIN activity_calls_ending e ON e.run_id = o.run_id AND e.seq = o.seq""",
        """DELETE FROM activity_calls_open o USING activity_calls_ending e
WHERE e.run_id = o.run_id AND e.seq = o.seq""",
        "DELETE FROM activity_calls_ending",
    )


def prepare_fold(cursor: duckdb.DuckDBPyConnection) -> None:
    """Create the temp table `fold_calls` works in, on *cursor*'s connection.

    Once per connection, outside any transaction (DDL never shares a transaction with
    rows being written).
    """
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS activity_calls_ending (run_id VARCHAR, "
        "seq INTEGER, status VARCHAR, closed_at TIMESTAMPTZ)"
    )


def fold_calls(cursor: duckdb.DuckDBPyConnection, source: str) -> None:
    """Apply the new events in the relation *source* to the call tables.

    Runs in the caller's transaction, on a connection `prepare_fold` prepared. *source*
    has the ``events`` table's columns (a table, a view, or a registered Arrow table); only
    rows of `CALL_KINDS` matter.

    Raises:
        duckdb.Error: As DuckDB raises it; the caller's transaction rolls back.
    """
    for statement in _statements(source):
        cursor.execute(statement)


def rebuild_calls(cursor: duckdb.DuckDBPyConnection) -> None:
    """Compute both call tables again from every stored event (the view's own query).

    What the version-2 migration does once; for rows written into ``events`` by other
    means than flowgen's writers (a bulk load). Runs in the caller's transaction.
    """
    cursor.execute("DELETE FROM activity_calls")
    cursor.execute("DELETE FROM activity_calls_open")
    for statement in CALLS_FILL:
        cursor.execute(statement)


class CallFolder:
    """`fold_calls` for an embedded store's writer: the new events go through a temp table.

    Made once per writer cursor, outside any transaction (it creates the temp table);
    `fold` then runs inside the writer's transactions.

    Args:
        cursor: The store's writer cursor.
    """

    _TABLE: Final = "activity_calls_arrived"

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {self._TABLE} AS "
            "SELECT * FROM events LIMIT 0"
        )
        prepare_fold(cursor)
        self._appender: duckdb.Appender | None = None

    def fold(self, event_rows: Sequence[tuple[Any, ...]]) -> None:
        """Fold the ``events`` rows just written (`event_row` tuples) into the call tables.

        Raises:
            duckdb.Error: As DuckDB raises it; the caller's transaction rolls back.
        """
        rows = [row for row in event_rows if row[4] in CALL_KINDS]
        if not rows:
            return
        if self._appender is None:
            self._appender = self._cursor.appender(self._TABLE)
        try:
            self._appender.append_rows(rows)
            self._appender.flush()
            fold_calls(self._cursor, self._TABLE)
            self._cursor.execute(f"DELETE FROM {self._TABLE}")
        except duckdb.Error:
            self.clear()  # the transaction rolls back: the rows it appended go with it
            raise

    def clear(self) -> None:
        """Drop the appender (after a failed transaction: it may hold rows)."""
        if self._appender is not None:
            try:
                self._appender.clear()
            except duckdb.Error:  # pragma: no cover - nothing left to discard
                pass
            self._appender = None
