"""``activity_calls``: the ``activities`` view kept as a typed table, one row per call.

Rules
=====

* **The same rows as the ``activities`` view**, column for column (``workflow_id, run_id,
  seq, name, attempts, status, scheduled_at, started_at, closed_at, duration_s,
  last_error, error_type``), but stored: the questions asked most ("p50/p95 latency and
  failure rate per activity") read typed columns instead of extracting times and errors
  from JSON and joining each call to its final attempt at query time. The rows are
  computed by the view's own SQL (`calls_select`, derived from the view's one
  definition in `flowgen._stores.duckdb_schema`), so the table and the view cannot
  disagree: a test compares them after every kind of call outcome.
* **Kept up to date where rows reach the tables**, in the same transaction: the embedded
  store's table writer (journaled commits moved into the tables, see
  `flowgen._stores.duckdb_writer`) and the analytics copy of a PostgreSQL store (see
  `flowgen._stores.duckdb_mirror`). `refresh_calls` recomputes the calls of the runs that
  received an event that can change a call (an activity event, a cancel, the run's end):
  it deletes their rows and inserts them again from those runs' events, found through the
  ``events_run_id`` index. When many runs changed (a catch-up, a recovery), rebuilding the
  whole table in one statement is cheaper than the index lookups: past `REBUILD_ABOVE`
  runs it does that.
* A file whose schema has no ``activity_calls`` (a DuckDB file of an older version that
  has not been migrated) is left alone: `has_calls_table` says so once, at open.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, Final

import duckdb

from flowgen._stores.duckdb_schema import SCHEMA
from flowgen._vocabulary.events import EVENT_TAGS, TERMINAL_EVENTS

__all__ = [
    "CALLS_DDL",
    "CALL_KINDS",
    "REBUILD_ABOVE",
    "calls_select",
    "has_calls_table",
    "refresh_calls",
    "touched_runs",
]

CALLS_DDL: Final[tuple[str, ...]] = (
    """CREATE TABLE activity_calls (
    workflow_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL,
    name VARCHAR,
    attempts INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    scheduled_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    closed_at TIMESTAMPTZ,
    duration_s DOUBLE,
    last_error VARCHAR,
    error_type VARCHAR
)""",
    # refresh_calls deletes a run's calls with `WHERE run_id IN (...)`: served by this
    # index (without it, every refresh scans the whole table).
    "CREATE INDEX activity_calls_run_id ON activity_calls (run_id)",
)
"""The statements that create the table (in the DuckDB schema's version-2 migration)."""

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
"""The event kinds that can change a call's row: a run with one of them is refreshed."""

REBUILD_ABOVE: Final = 2_000
"""Past this many changed runs, `refresh_calls` rebuilds the whole table instead."""

_VIEW: Final = next(s for s in SCHEMA if s.startswith("CREATE VIEW activities AS\n"))
_BODY: Final = _VIEW.removeprefix("CREATE VIEW activities AS\n")
# The view reads `events` in five places (finals, retries, cancels, run ends, the calls).
_SOURCES: Final = _BODY.count("FROM events")
assert _SOURCES == 5, "the activities view changed shape"
assert _BODY.startswith("WITH "), "the activities view changed shape"


def calls_select(runs_param: bool) -> str:
    """The ``activities`` view's query; with *runs_param*, only the runs in ``?``.

    The restricted form reads the runs' events once (``run_id IN (SELECT unnest(?))``,
    served by the ``events_run_id`` index) into a CTE that stands in for ``events``.
    """
    if not runs_param:
        return _BODY
    body = _BODY.replace("FROM events", "FROM changed_events")
    return body.replace(
        "WITH ",
        "WITH changed_events AS MATERIALIZED (\n"
        "    SELECT * FROM events WHERE run_id IN (SELECT unnest(?))\n"
        "),\n",
        1,
    )


def touched_runs(kind_and_run: Iterable[tuple[str, str]]) -> set[str]:
    """The run ids among ``(kind, run_id)`` pairs whose kind can change a call."""
    return {run_id for kind, run_id in kind_and_run if kind in CALL_KINDS}


def has_calls_table(cursor: duckdb.DuckDBPyConnection) -> bool:
    """True if the database has the ``activity_calls`` table."""
    rows = cursor.execute(
        "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'activity_calls'"
    ).fetchall()
    return bool(rows)


def refresh_calls(
    cursor: duckdb.DuckDBPyConnection, run_ids: Collection[str] | None
) -> None:
    """Recompute the calls of *run_ids* (``None``: every run), inside the caller's transaction.

    Raises:
        duckdb.Error: As DuckDB raises it; the caller's transaction rolls back.
    """
    if run_ids is not None and not run_ids:
        return
    if run_ids is None or len(run_ids) > REBUILD_ABOVE:
        cursor.execute("DELETE FROM activity_calls")
        cursor.execute(f"INSERT INTO activity_calls {calls_select(False)}")
        return
    ids: list[Any] = list(run_ids)
    cursor.execute(
        "DELETE FROM activity_calls WHERE run_id IN (SELECT unnest(?))", [ids]
    )
    cursor.execute(f"INSERT INTO activity_calls {calls_select(True)}", [ids])
