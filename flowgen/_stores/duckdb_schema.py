"""The schema of a DuckDB store: every table and view, and the checks that open a file.

Rules
=====

**The schema is part of the API.** Users query it with SQL, so every table, column and view
below is documented and pinned by a snapshot test (``tests/test_duckdb_store.py``); change it
only together with `SCHEMA_VERSION` and a migration. All DDL lives in `SCHEMA` (version 1) and
`MIGRATIONS` (``MIGRATIONS[n]`` takes a file from version n-1 to n): a new file runs them all,
an older file runs the ones it lacks, in one transaction followed by a CHECKPOINT (DDL never
shares a transaction with decisions). A failing migration changes nothing. A view's definition (not its columns) may change without a new
schema version: opening a file re-creates the views whose fingerprint (their DuckDB comment)
is not the current one, in a transaction of its own, before anything else is written.

* ``workflows``: one row per run. JSON columns (``args``, ``kwargs``, ``result``, ``error``,
  ``tags``) hold exactly what the codec produced; ``error`` is an `ErrorInfo` as an object.
* ``events``: each run's history, one row per event. ``payload`` is the event's complete
  ``event_to_dict`` form (its ``kind`` included), the only column loading reads, so a history
  reloads losslessly; ``seq``, ``kind``, ``name``, ``attempt`` and ``recorded_at`` are copies
  pulled out for SQL.
* ``flowgen_meta``: ``application = 'flowgen'`` and ``schema_version``, checked on open;
  ``database_id``, the file's identity (a uuid4 in hex, made when the file is created, or
  when a file made before identities existed is first opened), which its journal names
  (see `flowgen._stores.journal`); ``journal_path``, where the journal is (see
  `flowgen._stores.duckdb_backlog`); and ``journal_applied``, the last journal record in
  the tables.
* ``activity_calls`` (version 2): the ``activities`` view's rows and columns for every
  call that ended, as a typed table written once when the call ends; the calls still open
  are in ``activity_calls_open`` (the view's columns less ``status``, ``closed_at`` and
  ``duration_s``). Kept in the transaction that writes the events
  (`flowgen._stores.duckdb_calls`).
* ``schedules`` (version 2): one row per schedule, `ScheduleRecord`'s fields (see
  `flowgen._stores.schedule_rows` and `flowgen._runtime.schedules`); version 3 adds
  ``skipped`` (firings that started no run) and ``triggered_at`` (a trigger not yet
  handled).
* Views for the questions users ask: ``activities``, ``activity_attempts``, ``timers``,
  ``signals``, ``signal_waits``, ``children``.

Kinds and statuses are VARCHAR, never ENUM (an ENUM can't gain values later). ``status`` has a
CHECK; ``kind`` does not, so a future flowgen can add an event kind without rewriting the table.

`prepare_schema` never modifies a file that turns out not to be a flowgen database: a missing
or foreign ``flowgen_meta``, or a newer schema version, is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Final

import duckdb

from flowgen._stores.protocol import RUN_STATUSES
from flowgen._stores.schedule_rows import OVERLAPS
from flowgen._stores.schema_meta import APPLICATION, META_TABLE, check_meta
from flowgen._vocabulary.errors import StoreError
from flowgen._vocabulary.events import EVENT_TAGS, TERMINAL_EVENTS
from flowgen._vocabulary.text import surrogate_at, unstorable_why

__all__ = [
    "CALLS_FILL",
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TABLES",
    "VIEWS",
    "database_id",
    "export_parquet",
    "prepare_schema",
    "widen_status_check",
]

SCHEMA_VERSION: Final = 3
"""The version of the tables and views below; stored in ``flowgen_meta``."""


def _sql_list(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_STATUSES: Final = _sql_list(RUN_STATUSES)
_TERMINAL_KINDS: Final = _sql_list(EVENT_TAGS[cls] for cls in TERMINAL_EVENTS)
_ATTEMPT_KINDS: Final = _sql_list(
    ("activity_attempt_failed", "activity_failed", "activity_completed")
)

# Common table expressions the views share. A command that will never get an outcome is
# "cancelled": explicitly (`command_cancelled` for its seq: a lost race, a failed gather, a
# cancel) or because its run ended first (a terminated run stops without cancelling anything).
_CANCELS: Final = """cancels AS (
    SELECT run_id, seq, min(recorded_at) AS cancelled_at, arg_min(payload->>'$.reason', event_id) AS cancel_reason
    FROM events WHERE kind = 'command_cancelled' GROUP BY run_id, seq
)"""
_RUN_ENDS: Final = f"""run_ends AS (
    SELECT run_id, min(recorded_at) AS ended_at
    FROM events WHERE kind IN ({_TERMINAL_KINDS}) GROUP BY run_id
)"""


# In `activities`: the call's run id while it has no final outcome, else NULL (see `calls`).
_OPEN_RUN: Final = "CASE WHEN o.closed_at IS NULL THEN s.run_id END"


def _seconds(end: str, start: str) -> str:
    # Durations are DOUBLE seconds (not INTERVAL): `quantile_cont(duration_s, 0.95)`,
    # `avg(...)` and plotting work on them directly. Microsecond-exact.
    return f"(epoch_us({end}) - epoch_us({start})) / 1e6"


SCHEMA: Final[tuple[str, ...]] = (
    f"""CREATE TABLE workflows (
    workflow_id VARCHAR NOT NULL,
    run_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    status VARCHAR NOT NULL CHECK (status IN ({_STATUSES})),
    args JSON NOT NULL,
    kwargs JSON NOT NULL,
    result JSON,
    error JSON,
    tags JSON NOT NULL,
    parent_id VARCHAR,
    started_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ
)""",
    # The primary key is the optimistic "append event N" check: two transactions appending
    # the same event of a run can't both commit (DuckDB fails the second COMMIT), whoever
    # wrote them (a second store on this file in this process, a user's SQL, a stale
    # cache). Its price, measured interleaved with and without it (commits of 2 events +
    # 1 update per run, CPU ms per commit, on a file, 2 cores): 1 run 3.26 vs 2.93, 10 runs
    # 3.80 vs 3.18, 100 runs 7.39 vs 6.93; with 200k events already stored, 10 runs 3.86 vs
    # 4.05, 100 runs 7.96 vs 7.40. So 0-20% on real commits (a bulk load of 1M rows is
    # 2.8x slower: 0.5 -> 1.4 s) and ~37 bytes per event on disk, for histories that can't
    # get a duplicated event id by any path. Worth it.
    """CREATE TABLE events (
    workflow_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    event_id INTEGER NOT NULL,
    seq INTEGER,
    kind VARCHAR NOT NULL,
    name VARCHAR,
    payload JSON NOT NULL,
    attempt INTEGER,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, event_id)
)""",
    # Loading one history is `WHERE run_id = ?`. DuckDB's index scan serves one equality
    # filter on one indexed column, and nothing else (measured, 1M interleaved events of
    # 50k runs: 9.6-12.6 ms without an index, 1.5-2 ms with this one; the composite primary
    # key and a (workflow_id, run_id) index are not used, and neither is this index once the
    # query adds `AND workflow_id = ?`, so readers check the workflow id in Python). Not on
    # workflow_id: a continue-as-new chain shares one workflow_id across many runs, and the
    # engine always knows the run.
    "CREATE INDEX events_run_id ON events (run_id)",
    # get_run(workflow_id) is on the engine's hot path (start, signal, cancel, handles):
    # 500k runs, 14-20 ms without this index, 1-1.5 ms with it (again: only for a bare
    # `WHERE workflow_id = ?`, not with ORDER BY ... LIMIT, so the latest run is picked
    # in Python).
    "CREATE INDEX workflows_workflow_id ON workflows (workflow_id)",
    """CREATE TABLE flowgen_meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
)""",
    # One row per attempt that ended (completed, failed and retried, failed for good).
    f"""CREATE VIEW activity_attempts AS
SELECT
    e.workflow_id,
    e.run_id,
    e.seq,
    s.name,
    e.attempt,
    CAST(e.payload->>'$.started_at' AS TIMESTAMPTZ) AS started_at,
    e.recorded_at AS closed_at,
    {_seconds("e.recorded_at", "CAST(e.payload->>'$.started_at' AS TIMESTAMPTZ)")} AS duration_s,
    CASE e.kind WHEN 'activity_completed' THEN 'completed' ELSE 'failed' END AS outcome,
    e.payload->>'$.error.type' AS error_type,
    e.payload->>'$.error.message' AS error_message,
    CAST(e.payload->>'$.retry_at' AS TIMESTAMPTZ) AS retry_at,
    e.event_id
FROM events e
LEFT JOIN events s
    ON s.run_id = e.run_id AND s.seq = e.seq AND s.kind = 'activity_scheduled'
WHERE e.kind IN ({_ATTEMPT_KINDS})""",
    # One row per activity call. duration_s runs from scheduled_at to closed_at: how long the
    # workflow waited for the call, queueing, every attempt and the retry delays included
    # (per-attempt execution times are in activity_attempts).
    #
    # Cost, at 10 M events (benchmarks/analytics.py: 3.9 M calls, 2 cores). Most of it is the
    # one join that can't go: scheduled calls to their final attempts (0.4-0.6 CPU s of
    # ~1.6, the p50/p95 aggregate 0.2). Cancels and run ends are joined only to calls without
    # a final outcome (see `calls`), which skips probing 3.9 M calls against ~1 M run ends:
    # CPU per query 1.70 -> 1.62 s (p50/p95) and 1.56 -> 1.43 s (failure rate); wall,
    # benchmarks.analytics.time_queries on one file, old and new alternated 3 times, machine
    # otherwise idle: 0.885-0.898 -> 0.797-0.870 s and 0.768-0.774 -> 0.757-0.796 s; with a
    # busy loop on the other core: 1.32-1.48 -> 1.29-1.31 s and 1.21-1.62 -> 1.24-1.25 s. Tried
    # and dropped: one GROUP BY (run_id, seq) over every activity event (2.6 vs 1.65 s on one
    # thread); a MATERIALIZED CTE so run_ends is computed only for open calls' runs (-16%
    # CPU, but it stops `WHERE run_id = ?` reaching the scans: 11 ms -> 1.4 s); DuckDB
    # settings (preserve_insertion_order, join filter pushdown): no change.
    f"""CREATE VIEW activities AS
WITH finals AS (
    -- A call's last attempt, completed or failed for good: one row per call that ended, so
    -- joined as it is (grouping every attempt by (run_id, seq) cost more than the rest).
    SELECT run_id, seq, kind, attempt, recorded_at, payload
    FROM events WHERE kind IN ('activity_completed', 'activity_failed')
),
retries AS (
    -- The attempts that failed and were retried: few, so grouping them is cheap.
    SELECT
        run_id,
        seq,
        max(attempt) AS attempts,
        arg_min(CAST(payload->>'$.started_at' AS TIMESTAMPTZ), attempt) AS started_at,
        arg_max(payload->>'$.error.message', attempt) AS last_error,
        arg_max(payload->>'$.error.type', attempt) AS error_type
    FROM events WHERE kind = 'activity_attempt_failed' GROUP BY run_id, seq
),
outcomes AS (
    SELECT
        coalesce(f.run_id, t.run_id) AS run_id,
        coalesce(f.seq, t.seq) AS seq,
        greatest(f.attempt, t.attempts) AS attempts,
        CASE
            WHEN t.run_id IS NOT NULL THEN t.started_at
            ELSE CAST(f.payload->>'$.started_at' AS TIMESTAMPTZ)
        END AS started_at,
        f.recorded_at AS closed_at,
        coalesce(f.kind = 'activity_completed', false) AS completed,
        coalesce(f.kind = 'activity_failed', false) AS failed,
        CASE
            WHEN f.kind = 'activity_failed' THEN f.payload->>'$.error.message'
            ELSE t.last_error
        END AS last_error,
        CASE
            WHEN f.kind = 'activity_failed' THEN f.payload->>'$.error.type'
            ELSE t.error_type
        END AS error_type
    FROM finals f FULL OUTER JOIN retries t ON t.run_id = f.run_id AND t.seq = f.seq
),
{_CANCELS},
{_RUN_ENDS},
calls AS (
    SELECT
        s.workflow_id,
        s.run_id,
        s.seq,
        s.name,
        coalesce(o.attempts, 0) AS attempts,
        CASE
            WHEN o.completed THEN 'completed'
            WHEN o.failed THEN 'failed'
            WHEN c.cancelled_at IS NOT NULL OR r.ended_at IS NOT NULL THEN 'cancelled'
            ELSE 'scheduled'
        END AS status,
        s.recorded_at AS scheduled_at,
        o.started_at,
        coalesce(o.closed_at, c.cancelled_at, r.ended_at) AS closed_at,
        o.last_error,
        o.error_type
    FROM events s
    LEFT JOIN outcomes o ON o.run_id = s.run_id AND o.seq = s.seq
    -- A cancel or the run's end only matters to a call without a final outcome (o.closed_at,
    -- from a NOT NULL column, is NULL exactly then): for every other call the key is NULL,
    -- which is never looked up. `AND ... = s.run_id` adds nothing to the match; it lets a
    -- `WHERE run_id = ?` on the view reach run_ends and cancels (without it, 12 -> 150 ms).
    LEFT JOIN cancels c
        ON c.run_id = {_OPEN_RUN} AND c.run_id = s.run_id AND c.seq = s.seq
    LEFT JOIN run_ends r ON r.run_id = {_OPEN_RUN} AND r.run_id = s.run_id
    WHERE s.kind = 'activity_scheduled'
)
SELECT
    workflow_id, run_id, seq, name, attempts, status, scheduled_at, started_at, closed_at,
    {_seconds("closed_at", "scheduled_at")} AS duration_s,
    last_error, error_type
FROM calls""",
    f"""CREATE VIEW timers AS
WITH fired AS (
    SELECT run_id, seq, min(recorded_at) AS fired_at
    FROM events WHERE kind = 'timer_fired' GROUP BY run_id, seq
),
{_CANCELS},
{_RUN_ENDS}
SELECT
    t.workflow_id,
    t.run_id,
    t.seq,
    t.recorded_at AS scheduled_at,
    CAST(t.payload->>'$.fire_at' AS TIMESTAMPTZ) AS fire_at,
    f.fired_at,
    CASE
        WHEN f.fired_at IS NOT NULL THEN 'fired'
        WHEN c.cancelled_at IS NOT NULL OR r.ended_at IS NOT NULL THEN 'cancelled'
        ELSE 'pending'
    END AS status,
    coalesce(f.fired_at, c.cancelled_at, r.ended_at) AS closed_at,
    {_seconds("CAST(t.payload->>'$.fire_at' AS TIMESTAMPTZ)", "t.recorded_at")} AS duration_s,
    c.cancel_reason
FROM events t
LEFT JOIN fired f ON f.run_id = t.run_id AND f.seq = t.seq
LEFT JOIN cancels c ON c.run_id = t.run_id AND c.seq = t.seq
LEFT JOIN run_ends r ON r.run_id = t.run_id
WHERE t.kind = 'timer_started'""",
    # One row per signal received. wait_seq is the wait_signal that took it (NULL while it is
    # buffered). Signals of one name go to that name's waits first-in first-out (see
    # _core/interpreter.py), and a wait that timed out or was cancelled took none, so the n-th
    # signal of a name belongs to the n-th wait of that name that did neither.
    """CREATE VIEW signals AS
WITH received AS (
    SELECT
        workflow_id, run_id, event_id, name, recorded_at,
        payload->'$.payload' AS signal_payload,
        payload->>'$.sender' AS sender,
        CAST(payload->>'$.index' AS INTEGER) AS signal_index,
        row_number() OVER (PARTITION BY run_id, name ORDER BY event_id) AS n
    FROM events WHERE kind = 'signal_received'
),
takers AS (
    SELECT w.run_id, w.name, w.seq,
        row_number() OVER (PARTITION BY w.run_id, w.name ORDER BY w.event_id) AS n
    FROM events w
    WHERE w.kind = 'signal_wait_started' AND NOT EXISTS (
        SELECT 1 FROM events x
        WHERE x.run_id = w.run_id AND x.seq = w.seq
            AND x.kind IN ('signal_timed_out', 'command_cancelled')
    )
)
SELECT
    r.workflow_id,
    r.run_id,
    r.event_id,
    r.signal_index,
    r.name,
    r.signal_payload AS payload,
    r.sender,
    r.recorded_at AS received_at,
    t.seq AS wait_seq
FROM received r
LEFT JOIN takers t ON t.run_id = r.run_id AND t.name = r.name AND t.n = r.n""",
    f"""CREATE VIEW signal_waits AS
WITH timeouts AS (
    SELECT run_id, seq, min(recorded_at) AS timed_out_at
    FROM events WHERE kind = 'signal_timed_out' GROUP BY run_id, seq
),
{_CANCELS},
{_RUN_ENDS}
SELECT
    w.workflow_id,
    w.run_id,
    w.seq,
    w.name,
    w.recorded_at AS started_at,
    CAST(w.payload->>'$.deadline' AS TIMESTAMPTZ) AS deadline,
    CASE
        WHEN s.event_id IS NOT NULL THEN 'received'
        WHEN o.timed_out_at IS NOT NULL THEN 'timed_out'
        WHEN c.cancelled_at IS NOT NULL OR r.ended_at IS NOT NULL THEN 'cancelled'
        ELSE 'waiting'
    END AS status,
    -- A signal buffered before the wait began was taken the moment the wait began.
    CASE
        WHEN s.event_id IS NOT NULL THEN greatest(s.received_at, w.recorded_at)
        ELSE coalesce(o.timed_out_at, c.cancelled_at, r.ended_at)
    END AS closed_at,
    s.event_id AS signal_event_id
FROM events w
LEFT JOIN signals s ON s.run_id = w.run_id AND s.wait_seq = w.seq
LEFT JOIN timeouts o ON o.run_id = w.run_id AND o.seq = w.seq
LEFT JOIN cancels c ON c.run_id = w.run_id AND c.seq = w.seq
LEFT JOIN run_ends r ON r.run_id = w.run_id
WHERE w.kind = 'signal_wait_started'""",
    # A child runs on its own, so a parent that ended does not make it "cancelled": status is
    # what the parent knows (join workflows ON workflow_id = child_id for the child's own).
    f"""CREATE VIEW children AS
WITH outcomes AS (
    SELECT run_id, seq, kind, recorded_at,
        payload->>'$.error.type' AS error_type,
        payload->>'$.error.message' AS error_message
    FROM events WHERE kind IN ('child_completed', 'child_failed')
),
{_CANCELS}
SELECT
    s.workflow_id,
    s.run_id,
    s.seq,
    s.name,
    s.payload->>'$.child_id' AS child_id,
    CASE
        WHEN o.kind = 'child_completed' THEN 'completed'
        WHEN o.kind = 'child_failed' THEN 'failed'
        WHEN c.cancelled_at IS NOT NULL THEN 'cancelled'
        ELSE 'running'
    END AS status,
    s.recorded_at AS started_at,
    coalesce(o.recorded_at, c.cancelled_at) AS closed_at,
    {_seconds("coalesce(o.recorded_at, c.cancelled_at)", "s.recorded_at")} AS duration_s,
    o.error_type,
    o.error_message
FROM events s
LEFT JOIN outcomes o ON o.run_id = s.run_id AND o.seq = s.seq
LEFT JOIN cancels c ON c.run_id = s.run_id AND c.seq = s.seq
WHERE s.kind = 'child_started'""",
)

_OVERLAPS: Final = _sql_list(OVERLAPS)

# Version 2: schedules (`flowgen._runtime.schedules`; the rows in `schedule_rows`).
_V2_SCHEDULES: Final = (
    f"""CREATE TABLE schedules (
    schedule_id VARCHAR PRIMARY KEY,
    workflow VARCHAR NOT NULL,
    args JSON NOT NULL,
    kwargs JSON NOT NULL,
    cron VARCHAR,
    every_seconds BIGINT,
    timezone VARCHAR NOT NULL,
    overlap VARCHAR NOT NULL CHECK (overlap IN ({_OVERLAPS})),
    jitter_seconds DOUBLE NOT NULL,
    catchup_window_seconds DOUBLE,
    paused BOOLEAN NOT NULL,
    note VARCHAR NOT NULL,
    next_at TIMESTAMPTZ NOT NULL,
    fires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    buffered_at TIMESTAMPTZ,
    last_workflow_id VARCHAR,
    last_fired_at TIMESTAMPTZ,
    revision BIGINT NOT NULL
)""",
)


# The `activities` view's query (for the version-2 tables' first rows).
_ACTIVITIES: Final = next(
    ddl for ddl in SCHEMA if ddl.startswith("CREATE VIEW activities AS\n")
).removeprefix("CREATE VIEW activities AS\n")

# Version 2: `activity_calls`, the calls that ended as a typed table, and the calls still open
# (see flowgen._stores.duckdb_calls, which keeps them as rows arrive); filled here from the
# events a file already holds, with the view's own query.
_V2_ACTIVITY_CALLS: Final = (
    """CREATE TABLE activity_calls (
    workflow_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL,
    name VARCHAR,
    attempts INTEGER NOT NULL,
    status VARCHAR NOT NULL,
    scheduled_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    closed_at TIMESTAMPTZ NOT NULL,
    duration_s DOUBLE NOT NULL,
    last_error VARCHAR,
    error_type VARCHAR
)""",
    """CREATE TABLE activity_calls_open (
    workflow_id VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL,
    name VARCHAR,
    attempts INTEGER NOT NULL,
    scheduled_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    last_error VARCHAR,
    error_type VARCHAR
)""",
)

CALLS_FILL: Final = (
    f"""INSERT INTO activity_calls
SELECT * FROM ({_ACTIVITIES}) WHERE status <> 'scheduled'""",
    f"""INSERT INTO activity_calls_open
SELECT workflow_id, run_id, seq, name, attempts, scheduled_at, started_at, last_error,
    error_type
FROM ({_ACTIVITIES}) WHERE status = 'scheduled'""",
)
"""Fill empty ``activity_calls`` and ``activity_calls_open`` from the stored events."""

# Version 3: a schedule's count of skipped firings and its pending trigger (appended, in
# `ScheduleRecord` order; a row from version 2 has skipped none and no trigger).
_V3_SCHEDULES: Final = (
    "ALTER TABLE schedules ADD COLUMN skipped BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE schedules ADD COLUMN triggered_at TIMESTAMPTZ",
)

MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    2: (*_V2_SCHEDULES, *_V2_ACTIVITY_CALLS, *CALLS_FILL),
    3: _V3_SCHEDULES,
}
"""``MIGRATIONS[n]``: the statements that take a file from version n-1 to n (n >= 2)."""

# The first version ever stored in a file: every version since has its migrations above.
_OLDEST_STORED: Final = 1

TABLES: Final = (
    "workflows",
    "events",
    "flowgen_meta",
    "schedules",
    "activity_calls",
    "activity_calls_open",
)
"""The tables of the schema."""
VIEWS: Final = (
    "activities",
    "activity_attempts",
    "timers",
    "signals",
    "signal_waits",
    "children",
)
"""The analysis views of the schema."""


def prepare_schema(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Create the schema in a new database, or check an existing one's version."""
    tables = [
        name
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema = 'main' "
            "ORDER BY table_name"
        ).fetchall()
    ]
    if not tables:
        _create_schema(con)
        return
    meta = None
    if META_TABLE in tables:
        meta = dict(con.execute(f"SELECT key, value FROM {META_TABLE}").fetchall())
    version = check_meta(
        path,
        tables,
        meta,
        current=SCHEMA_VERSION,
        oldest_migratable=_OLDEST_STORED,
        required=TABLES,
        kind="file",
    )
    if version is not None and version < SCHEMA_VERSION:
        _migrate(con, path, version)
    _refresh_views(con)


def _migrations_after(version: int) -> list[str]:
    return [
        statement
        for step in range(version + 1, SCHEMA_VERSION + 1)
        for statement in MIGRATIONS[step]
    ]


def _migrate(con: duckdb.DuckDBPyConnection, path: str, version: int) -> None:
    """Take a file from *version* to `SCHEMA_VERSION`, in one transaction, or change nothing."""
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in _migrations_after(version):
            con.execute(statement)
        con.execute(
            "UPDATE flowgen_meta SET value = ? WHERE key = 'schema_version'",
            [str(SCHEMA_VERSION)],
        )
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise StoreError(
            f"cannot migrate {path} from flowgen schema version {version} to "
            f"{SCHEMA_VERSION}, nothing was changed: {exc}"
        ) from None
    con.execute("CHECKPOINT").fetchall()


# Each view carries, as its DuckDB comment, a fingerprint of the statement that created it: a
# file keeps the view definitions of the flowgen that created it, and opening compares these
# (one catalog query) instead of DuckDB's stored SQL, which DuckDB re-renders (comparing that
# would mean rendering `SCHEMA` in a scratch database first: 35 ms per process).
_VIEW_DDL: Final = {
    match.group(1): statement
    for statement in (*SCHEMA, *(ddl for step in MIGRATIONS.values() for ddl in step))
    if (match := re.match(r"CREATE VIEW (\w+) AS", statement))
}
_VIEW_COMMENTS: Final = {
    name: f"flowgen view, definition sha256 {hashlib.sha256(ddl.encode()).hexdigest()[:16]}"
    for name, ddl in _VIEW_DDL.items()
}


def _comment_views(con: duckdb.DuckDBPyConnection, names: Iterable[str]) -> None:
    for name in names:
        con.execute(f"COMMENT ON VIEW {name} IS '{_VIEW_COMMENTS[name]}'")


def _refresh_views(con: duckdb.DuckDBPyConnection) -> None:
    """Re-create the views of a file made by an older flowgen (or changed or dropped since).

    Views are created with the schema, so without this a file would keep the definitions
    (and the speed) of the flowgen that created it. Their columns belong to the schema
    version; only how they are computed changes. Nothing is written when every view is
    current. Runs at open, before any decision is committed, in a transaction of its own.
    """
    stored = dict(
        con.execute(
            "SELECT view_name, comment FROM duckdb_views() "
            "WHERE database_name = current_database() AND schema_name = 'main' "
            "AND NOT internal"
        ).fetchall()
    )
    stale = [name for name in VIEWS if stored.get(name) != _VIEW_COMMENTS[name]]
    if not stale:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for name in stale:
            con.execute(
                _VIEW_DDL[name].replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1)
            )
        _comment_views(con, stale)
        con.execute("COMMIT")
    except duckdb.Error:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT").fetchall()


def _create_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in (*SCHEMA, *_migrations_after(1)):
            con.execute(statement)
        _comment_views(con, VIEWS)
        con.execute(
            "INSERT INTO flowgen_meta VALUES (?, ?), (?, ?), (?, ?)",
            [
                "application",
                APPLICATION,
                "schema_version",
                str(SCHEMA_VERSION),
                "database_id",
                uuid.uuid4().hex,
            ],
        )
        con.execute("COMMIT")
    except duckdb.Error:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT").fetchall()


def database_id(con: duckdb.DuckDBPyConnection, *, assign: bool) -> str | None:
    """The file's identity; with *assign*, one is made for a file that has none yet.

    A file made before identities existed gets one the first time it is opened, in a
    transaction of its own (only after its journal was checked: see the store).
    """
    rows = con.execute(
        "SELECT value FROM flowgen_meta WHERE key = 'database_id'"
    ).fetchall()
    if rows:
        return str(rows[0][0])
    if not assign:
        return None
    identity = uuid.uuid4().hex
    con.execute("INSERT INTO flowgen_meta VALUES ('database_id', ?)", [identity])
    return identity


def widen_status_check(con: duckdb.DuckDBPyConnection) -> None:
    """Let a file made when there were fewer run statuses hold every one of today's.

    The columns stay as they are (so no new schema version): only the CHECK on
    ``workflows.status`` widens (``corrupt`` joined later), and DuckDB changes a CHECK
    only by rebuilding the table. Done once, at open, in one transaction: the rows keep
    their order (the rowid breaks ties of ``started_at`` in `DuckDBStore.get_run`).
    """
    rows = con.execute(
        "SELECT sql FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = 'workflows'"
    ).fetchall()
    if rows and all(f"'{status}'" in rows[0][0] for status in RUN_STATUSES):
        return
    table = next(ddl for ddl in SCHEMA if ddl.startswith("CREATE TABLE workflows ("))
    index = next(ddl for ddl in SCHEMA if ddl.startswith("CREATE INDEX workflows_"))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(table.replace("workflows (", "workflows_widened (", 1))
        con.execute(
            "INSERT INTO workflows_widened SELECT * FROM workflows ORDER BY rowid"
        )
        con.execute("DROP TABLE workflows")
        con.execute("ALTER TABLE workflows_widened RENAME TO workflows")
        con.execute(index)
        con.execute("COMMIT")
    except duckdb.Error:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT").fetchall()


def export_parquet(
    cursor: duckdb.DuckDBPyConnection,
    target: str,
    *,
    progress: Callable[[int, int], object] | None = None,
) -> list[str]:
    """Copy every table and view to ``<target>/<name>.parquet``, in one transaction.

    *progress*, if given, is called as ``progress(files_written, files_in_all)`` after each
    file.

    Raises:
        StoreError: The directory cannot be made or written (a file is in the way, a
            name DuckDB cannot encode), or DuckDB failed; nothing is made for a name it
            cannot encode.
    """
    bad = surrogate_at(target)
    if bad is not None:
        raise StoreError(f"cannot export to {target!r}: {unstorable_why(target, bad)}")
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot export to {target}: {exc.strerror or exc}") from None
    written = []
    try:
        cursor.execute("BEGIN TRANSACTION")
        for name in (*TABLES, *VIEWS):
            path = os.path.join(target, f"{name}.parquet")
            quoted = path.replace("'", "''")
            cursor.execute(
                f"COPY (SELECT * FROM {name}) TO '{quoted}' (FORMAT parquet)"
            ).fetchall()
            written.append(path)
            if progress is not None:
                progress(len(written), len(TABLES) + len(VIEWS))
        cursor.execute("COMMIT")
    except duckdb.Error as exc:
        raise StoreError(f"export to {target} failed: {exc}") from None
    return written
