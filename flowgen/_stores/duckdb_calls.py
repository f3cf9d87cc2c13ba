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
  `flowgen._core.interpreter`), so an ended call never changes. So a fold only appends
  to the big table; everything it updates and deletes is in the small open table
  (the calls in flight), and its cost follows the rows that arrived, not the size of the
  database.
* **Where, and how.** In the same transaction as the events. The analytics copy of a
  PostgreSQL store (`flowgen._stores.duckdb_mirror`) copies big chunks: `fold_calls`, six
  set-based statements over the chunk. The embedded store's table writer
  (`flowgen._stores.duckdb_writer`) writes many small transactions (a commit, one journal
  apply), where planning six statements each time would cost more than the apply itself:
  `CallFolder` folds its rows in Python, the open calls kept in memory. The version-2
  migration fills both tables from the events already stored, with the view's own query
  (`flowgen._stores.duckdb_schema`).
* **The same answers as the view.** Both folds apply the view's rules to the new events
  (a call's attempts are its highest attempt number; it started when its first attempt
  did; its error is its last failed attempt's; it ended at its final outcome, else at its
  first cancel, else at its run's end). The tests compare ``activity_calls`` and ``activity_calls_open`` with the view after every
  kind of outcome, on both stores.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import duckdb

from flowgen._stores.duckdb_schema import CALLS_FILL
from flowgen._vocabulary.events import EVENT_TAGS, TERMINAL_EVENTS

__all__ = ["CALL_KINDS", "CallFolder", "fold_calls", "prepare_fold", "rebuild_calls"]

_ATTEMPTS: Final = "'activity_attempt_failed', 'activity_failed', 'activity_completed'"
_FINALS: Final = "'activity_failed', 'activity_completed'"
_RUN_ENDS: Final = frozenset(EVENT_TAGS[cls] for cls in TERMINAL_EVENTS)
_ENDS: Final = ", ".join(f"'{kind}'" for kind in sorted(_RUN_ENDS))

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


_ATTEMPT_KINDS: Final = frozenset(
    {"activity_attempt_failed", "activity_failed", "activity_completed"}
)
_ENDING_KINDS: Final = CALL_KINDS - {"activity_scheduled", "activity_attempt_failed"}


def _statements(source: str, kinds: Collection[str] | None) -> list[str]:
    """`fold_calls`' statements over the new events in *source* (events' columns).

    With *kinds* (the kinds *source* holds), only the statements those kinds need: each
    statement costs its planning even when it finds nothing to do.
    """
    everything = _all_statements(source)
    if kinds is None:
        return list(everything)
    chosen = []
    if "activity_scheduled" in kinds:
        chosen.append(everything[0])
    if _ATTEMPT_KINDS.intersection(kinds):
        chosen.append(everything[1])
    if _ENDING_KINDS.intersection(kinds):
        chosen.extend(everything[2:])
    return chosen


def _all_statements(source: str) -> tuple[str, ...]:
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


def fold_calls(
    cursor: duckdb.DuckDBPyConnection,
    source: str,
    kinds: Collection[str] | None = None,
) -> None:
    """Apply the new events in the relation *source* to the call tables.

    Runs in the caller's transaction, on a connection `prepare_fold` prepared. *source*
    has the ``events`` table's columns (a table, a view, or a registered Arrow table); only
    rows of `CALL_KINDS` matter. *kinds*, if given, are the kinds it holds (fewer
    statements run).

    Raises:
        duckdb.Error: As DuckDB raises it; the caller's transaction rolls back.
    """
    for statement in _statements(source, kinds):
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


_Key = tuple[str, int]
# Positions in an open call's row (activity_calls_open's columns).
_AT_ATTEMPTS, _AT_SCHEDULED, _AT_STARTED, _AT_LAST_ERROR, _AT_ERROR_TYPE = 4, 5, 6, 7, 8
_FINAL_STATUS: Final = {
    "activity_completed": "completed",
    "activity_failed": "failed",
}


def _iso(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


class CallFolder:
    """The call tables of an embedded store, folded in Python as its writer writes events.

    The writer's transactions are small and many (a commit, or one journal apply), so a
    fixed cost per transaction matters more than a cost per row: the set-based
    `fold_calls` plans six statements each time (4-5x the cost of the apply it joins, 700
    calls per apply, measured). Here the open calls are kept in memory too (loaded from
    ``activity_calls_open`` at open), the new event rows are read in order, and the
    transaction gets at most an append to each table and one ``DELETE`` of open rows that
    ended or changed. The rules are `fold_calls`' (the view's); the tests hold both to the
    view. A failed transaction makes the memory reload from the table.

    Args:
        cursor: The store's writer cursor (one thread at a time, under its lock).
    """

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor
        self._appenders: dict[str, duckdb.Appender] = {}
        self._open: dict[_Key, list[Any]] = {}
        self._by_run: dict[str, set[int]] = {}
        self._stored: set[_Key] = set()  # the keys activity_calls_open holds
        self._written: set[_Key] | None = None  # what this transaction leaves there
        self._stale = True

    def _reload(self) -> None:
        rows = self._cursor.execute(
            "SELECT workflow_id, run_id, seq, name, attempts, scheduled_at, started_at, "
            "last_error, error_type FROM activity_calls_open"
        ).fetchall()
        self._open = {(row[1], row[2]): list(row) for row in rows}
        self._by_run = {}
        for run_id, seq in self._open:
            self._by_run.setdefault(run_id, set()).add(seq)
        self._stored = set(self._open)
        self._stale = False

    def fold(self, event_rows: Sequence[tuple[Any, ...]]) -> None:
        """Fold the ``events`` rows just written (`event_row` tuples, in order).

        Raises:
            duckdb.Error: As DuckDB raises it; the caller rolls back and calls
                `rolled_back`.
        """
        if self._stale:
            self._reload()
        ended: list[tuple[Any, ...]] = []
        touched: set[_Key] = set()
        for row in event_rows:
            kind = row[4]
            if kind not in CALL_KINDS:
                continue
            if kind == "activity_scheduled":
                key = (row[1], row[3])
                self._open[key] = [
                    row[0],
                    row[1],
                    row[3],
                    row[5],
                    0,
                    row[8],
                    None,
                    None,
                    None,
                ]
                self._by_run.setdefault(row[1], set()).add(row[3])
                touched.add(key)
            elif kind in _RUN_ENDS:
                for seq in sorted(self._by_run.get(row[1], ())):
                    ended.append(self._end((row[1], seq), "cancelled", row[8]))
                    touched.add((row[1], seq))
            else:
                key = (row[1], row[3])
                if key in self._open:  # else not an activity (a timer cancelled, ...)
                    touched.add(key)
                    if kind == "command_cancelled":
                        ended.append(self._end(key, "cancelled", row[8]))
                    else:
                        ended.extend(self._attempt(key, kind, row))
        if touched:
            self._write(ended, touched)

    def _attempt(
        self, key: _Key, kind: str, row: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        call = self._open[key]
        payload = json.loads(row[6])
        if call[_AT_ATTEMPTS] == 0:  # its first attempt: when the call started
            call[_AT_STARTED] = _iso(payload.get("started_at"))
        call[_AT_ATTEMPTS] = max(call[_AT_ATTEMPTS], row[7] or 0)
        if kind != "activity_completed":
            error = payload.get("error") or {}
            call[_AT_LAST_ERROR], call[_AT_ERROR_TYPE] = (
                error.get("message"),
                error.get("type"),
            )
        status = _FINAL_STATUS.get(kind)
        return [] if status is None else [self._end(key, status, row[8])]

    def _end(self, key: _Key, status: str, at: datetime) -> tuple[Any, ...]:
        call = self._open.pop(key)
        seqs = self._by_run[key[0]]
        seqs.discard(key[1])
        if not seqs:
            del self._by_run[key[0]]
        micros = (at - call[_AT_SCHEDULED]) // timedelta(microseconds=1)
        return (*call[:5], status, call[5], call[6], at, micros / 1e6, *call[7:])

    def _write(self, ended: list[tuple[Any, ...]], touched: set[_Key]) -> None:
        gone = touched & self._stored  # rows of the table that ended or changed
        if gone:
            self._cursor.execute(
                "DELETE FROM activity_calls_open o USING "
                "(SELECT unnest(?) AS run_id, unnest(?) AS seq) k "
                "WHERE o.run_id = k.run_id AND o.seq = k.seq",
                [[run_id for run_id, _ in gone], [seq for _, seq in gone]],
            )
        still_open = [self._open[key] for key in touched if key in self._open]
        if ended:
            self._append("activity_calls", ended)
        if still_open:
            self._append("activity_calls_open", still_open)
        self._written = (self._stored - gone) | {(c[1], c[2]) for c in still_open}

    def _append(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        appender = self._appenders.get(table)
        if appender is None:
            appender = self._appenders[table] = self._cursor.appender(table)
        appender.append_rows(rows)
        appender.flush()

    def committed(self) -> None:
        """The writer's transaction committed: what it wrote is the table's now."""
        if self._written is not None and not self._stale:
            self._stored = self._written
        self._written = None

    def rolled_back(self) -> None:
        """The writer's transaction rolled back: drop the appenders, reload next time."""
        self.clear()
        self._written = None
        self._stale = True

    def clear(self) -> None:
        """Drop the appenders (at close, or after a failed transaction: rows in them)."""
        for appender in self._appenders.values():
            try:
                appender.clear()
            except duckdb.Error:  # pragma: no cover - nothing left to discard
                pass
        self._appenders.clear()
