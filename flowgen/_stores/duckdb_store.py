"""`DuckDBStore`: the `Store` in a DuckDB file, and the only module that imports duckdb.

Theory of operation
===================

**The schema is part of the API.** Users query it with SQL, so every table, column and view
below is documented and pinned by a snapshot test (``tests/test_duckdb_store.py``); change it
only together with `SCHEMA_VERSION` and a migration. All DDL lives in `_SCHEMA`, run once when
a file is created, in one transaction, followed by a CHECKPOINT (DDL never shares a
transaction with decisions). A view's definition (not its columns) may change without a new
schema version: opening a file re-creates the views whose fingerprint (their DuckDB comment)
is not the current one, in a transaction of its own, before anything else is written.

* ``workflows``: one row per run. JSON columns (``args``, ``kwargs``, ``result``, ``error``,
  ``tags``) hold exactly what the codec produced; ``error`` is an `ErrorInfo` as an object.
* ``events``: each run's history, one row per event. ``payload`` is the event's complete
  ``event_to_dict`` form (its ``kind`` included), the only column loading reads, so a history
  reloads losslessly; ``seq``, ``kind``, ``name``, ``attempt`` and ``recorded_at`` are copies
  pulled out for SQL.
* ``flowgen_meta``: ``application = 'flowgen'`` and ``schema_version``, checked on open.
* Views for the questions users ask: ``activities``, ``activity_attempts``, ``timers``,
  ``signals``, ``signal_waits``, ``children``.

Kinds and statuses are VARCHAR, never ENUM (an ENUM can't gain values later). ``status`` has a
CHECK; ``kind`` does not, so a future flowgen can add an event kind without rewriting the table.

**Writes** go through `DuckDBStore.commit`, one `Batch` (many runs' events and row changes) at
a time, under one lock. A batch is validated in Python first (event ids continue each run's
numbering, runs exist, statuses are known, a new run id is unused), against a per-run cache of
the next event id, so a bad batch is refused before anything is written; the DuckDB primary
key on ``events (run_id, event_id)`` is the backstop for writers the cache can't see.

By default a validated batch becomes one record of the journal (`flowgen._stores.journal`): durable
when `commit` returns, at ~0.15 ms of CPU where a DuckDB transaction costs ~2-3 ms. The
journaled batches move into the tables together, in one transaction (`_apply_pending`), when
they are many or old, before any read through this store, when the engine idles, and at
close; the number of the last record moved is written in that same transaction, so recovery
at open applies each record exactly once. With ``journal=False`` each batch is its own
transaction. Either way rows go in with DuckDB's appender (one statement per table per
transaction, no pyarrow needed); measured against one multi-row ``INSERT ... VALUES`` and
Arrow + ``INSERT ... SELECT``, see `_transaction`.

**Reads** run on a cursor owned by the calling thread (`threading.local`): DuckDB cursors are
not thread-safe, and in duckdb 2.0 a new ``execute()`` silently ends an unfinished result on
the same cursor, so every read fetches everything it executes. Times are fetched as epoch
microseconds and turned into tz-aware UTC datetimes here (no pytz needed, and exact).

**Opening** never modifies a file that turns out not to be a flowgen database: the checks
(SQLite header, DuckDB's own refusal, the lock held by another process, a missing or newer
``flowgen_meta``) all happen before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
import duckdb

from flowgen._stores.codec import dumps, event_from_dict, event_to_dict, loads
from flowgen._stores.journal import Journal
from flowgen._stores.protocol import (
    CLOSED_STATUSES,
    RUN_STATUSES,
    Batch,
    RunUpdate,
    WorkflowRecord,
    apply_update,
    check_numbering,
)
from flowgen._vocabulary.errors import (
    ErrorInfo,
    HistoryCorruptError,
    NotAFlowgenDatabase,
    SchemaVersionError,
    StoreError,
    StoreLockedError,
)
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    TERMINAL_EVENTS,
    Event,
    JsonValue,
    VersionMarked,
    event_seq,
)

__all__ = ["SCHEMA_VERSION", "DuckDBStore"]

SCHEMA_VERSION: Final = 1
"""The version of the tables and views below; stored in ``flowgen_meta``."""

_APPLICATION: Final = "flowgen"

log = logging.getLogger("flowgen")

# ---------------------------------------------------------------------------------------------
# The schema: the one place that defines it.


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


_SCHEMA: Final[tuple[str, ...]] = (
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

TABLES: Final = ("workflows", "events", "flowgen_meta")
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

_RUN_COLUMNS: Final = (
    "workflow_id, run_id, name, status, args, kwargs, result, error, tags, parent_id, "
    "epoch_us(started_at), epoch_us(closed_at)"
)
_STARTED_US: Final = 10  # position of epoch_us(started_at) in _RUN_COLUMNS
# Columns of a RunUpdate that may be set, in the order `_update_row` gives them.
_UPDATE_FIELDS: Final = ("status", "result", "error", "tags", "closed_at")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def _from_us(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _aware(value: datetime, what: str) -> datetime:
    # A naive datetime would be read by DuckDB in the session's time zone: refuse it rather
    # than store a time that means something else on another machine.
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(
            f"{what} is a naive datetime ({value.isoformat()}); flowgen stores "
            f"tz-aware times only, nothing was written"
        )
    return value


def _error_json(error: ErrorInfo | None) -> str | None:
    return None if error is None else dumps(attrs.asdict(error))


def _error_from_json(text: str | None) -> ErrorInfo | None:
    if text is None:
        return None
    data = json.loads(text)
    return ErrorInfo(
        type=data["type"],
        message=data["message"],
        non_retryable=data.get("non_retryable", False),
        attempts=data.get("attempts", 0),
        traceback=data.get("traceback", ""),
    )


def _json_or_none(value: JsonValue) -> str | None:
    # SQL NULL, not JSON 'null', for "no value": `result IS NULL` reads naturally.
    return None if value is None else dumps(value)


def _event_name(event: Event) -> str | None:
    if isinstance(event, VersionMarked):
        return event.change_id
    name: object = getattr(event, "name", None)
    return name if isinstance(name, str) else None


def _event_attempt(event: Event) -> int | None:
    attempt: object = getattr(event, "attempt", None)
    return attempt if isinstance(attempt, int) else None


@attrs.define
class _Plan:
    """A validated batch, as rows ready to append."""

    run_rows: list[tuple[Any, ...]]
    event_rows: list[tuple[Any, ...]]
    # Update rows grouped by the set of columns they change (one appender per shape).
    update_rows: dict[tuple[str, ...], list[tuple[Any, ...]]]
    # run_id -> (workflow_id, next event id) after the commit; None for runs now closed.
    cache_after: dict[str, tuple[str, int] | None]


class DuckDBStore:
    """A `Store` in a DuckDB file: durable histories you can query with SQL.

    One process may have the file open (DuckDB's rule: while a process has a database open
    for writing, no other process can open it, not even read-only). Inside that process,
    read through this store: `sql`, `cursor` or `connection`.

    Args:
        path: The database file, created (with the schema) if missing; ``":memory:"`` for
            a throwaway store.
        threads: DuckDB's worker threads; ``None`` keeps DuckDB's default (one per core).
            Waking a pool of workers costs every small commit CPU (measured: 16 callers
            2.05 -> 1.67 CPU ms per workflow with 1 thread), while big analytical queries
            want them all; change it any time with ``SET threads = N``.
        journal: Commit through the journal (the default): each `commit` appends one
            fsync'd record to ``<path>.journal`` and returns, and the store moves the
            journaled rows into its tables in big transactions: when
            `apply_rows` rows or `apply_seconds` have built up, before any read through
            this store (`sql`, `cursor`, `connection`, the `Store` reads), when the engine
            has been idle for a moment, and at `close`. Equally durable, and a fraction of
            the CPU per commit (see `flowgen._stores.journal`). ``False`` commits each batch in its
            own DuckDB transaction. Either way, a journal left by a crash is applied when
            the file is opened.

    Raises:
        StoreLockedError: Another process has the file open, or another store of this
            process does.
        NotAFlowgenDatabase: The file is not a DuckDB database, or one without flowgen's
            tables (it is left untouched).
        SchemaVersionError: The file was written by a flowgen with a newer schema.
        StoreError: The file cannot be opened for another reason (a missing directory, no
            permission, ...).

    Example:
        >>> store = DuckDBStore(":memory:")
        >>> store.sql("select count(*) from workflows").fetchall()
        [(0,)]
        >>> store.close()

    .. versionadded:: 0.1
    """

    apply_rows: int = 2000
    """Journaled rows that make the next commit move them all into DuckDB."""
    apply_seconds: float = 1.0
    """Age of the oldest journaled commit that makes the next commit move them into DuckDB."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        threads: int | None = None,
        journal: bool = True,
    ) -> None:
        if threads is not None and (isinstance(threads, bool) or threads < 1):
            raise ValueError(
                f"threads must be a whole number >= 1 or None, got {threads!r}"
            )
        self.path: str = os.fspath(path)
        self._closed = False
        existed = self.path != ":memory:" and os.path.exists(self.path)
        self._con = _open(self.path)
        try:
            _prepare_schema(self._con, self.path)
        except duckdb.Error as exc:
            # DuckDB reads some of a file only when asked (e.g. a corrupt catalog block).
            self._con.close()
            if existed:
                raise NotAFlowgenDatabase(
                    f"{self.path} is not a flowgen database: DuckDB cannot read it "
                    f"({exc})"
                ) from None
            raise StoreError(f"cannot create a store in {self.path}: {exc}") from None
        except BaseException:
            self._con.close()
            raise
        if threads is not None:
            self._con.execute(f"SET threads = {int(threads)}")
        # Re-entrant: a read made while writing (e.g. validating a batch) applies the
        # journal under the same lock.
        self._write_lock = threading.RLock()
        self._writer = self._con.cursor()
        self._appenders: dict[tuple[str, ...], duckdb.Appender] = {}
        self._local = threading.local()
        self._cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
        self._cursors_lock = threading.Lock()
        # run_id -> (workflow_id, next event id), for running runs this store has written or
        # loaded: the cheap first check of a batch's numbering (the primary key backs it up).
        self._next: dict[str, tuple[str, int]] = {}
        self._next_lock = threading.Lock()
        # Journaled commits not yet in the tables (in order), and the number of the last
        # record journaled; all of it guarded by _write_lock.
        self._journaled = journal
        self._pending: list[_Plan] = []
        self._pending_runs: set[str] = set()  # the run ids the pending plans insert
        self._pending_rows = 0
        self._pending_since = 0.0
        self._record_number = 0
        self._journal: Journal | None = None
        if self.path != ":memory:":
            try:
                self._journal = Journal(self.path + ".journal")
                self._recover_journal()
            except BaseException:
                if self._journal is not None:
                    self._journal.close(remove=False)
                self._writer.close()
                self._con.close()
                raise
            if not journal:
                self._journal.close(remove=True)  # empty now: every record is applied
                self._journal = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<DuckDBStore {self.path!r} ({state})>"

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections -----------------------------------------------------------------------

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection (e.g. for jupysql's ``%sql``).

        Use it from one thread at a time; `cursor` gives each thread its own. Journaled
        commits are moved into the tables first; call `flush` before reading through it
        again later.
        """
        self._check_open()
        self.flush()
        return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB cursor on this database, for the caller's own use on one thread.

        It sees everything committed when it is made (call `flush` to see later commits
        through it), and is closed when the store closes.
        """
        self._check_open()
        self.flush()
        return self._new_cursor()

    def sql(self, query: str, params: object = None) -> duckdb.DuckDBPyRelation:
        """Run *query* on a cursor owned by the calling thread; returns a DuckDB relation.

        The relation is lazy: it runs when consumed (``.df()``, ``.fetchall()``, ``.pl()``)
        and again each time, so it sees what was committed meanwhile. Consume it on the
        thread that created it. The tables are for reading: write to them only through the
        engine.

        Args:
            query: SQL, e.g. ``"select name, quantile_cont(duration_s, 0.95) from activities
                group by name"``.
            params: Values for ``?`` or ``$name`` placeholders.

        Returns:
            A ``duckdb.DuckDBPyRelation``.
        """
        self._check_open()
        self.flush()
        cursor = getattr(self._local, "user", None)
        if cursor is None:
            cursor = self._local.user = self._new_cursor()
        return cursor.sql(query, params=params)

    def checkpoint(self) -> None:
        """Write the WAL into the database file (DuckDB's CHECKPOINT); cheap when idle.

        Raises:
            StoreError: If DuckDB refused (e.g. another cursor holds a transaction open).
        """
        self._check_open()
        with self._write_lock:
            self._apply_pending()
            try:
                self._writer.execute("CHECKPOINT").fetchall()
            except duckdb.Error as exc:
                raise StoreError(f"checkpoint of {self.path} failed: {exc}") from None

    def export_parquet(
        self,
        directory: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], object] | None = None,
    ) -> list[str]:
        """Copy every table and view to ``<directory>/<name>.parquet``.

        The files are one consistent snapshot (one transaction), readable by any DuckDB
        (``select * from 'dir/activities.parquet'``) or pandas/polars, from any process: the
        way to analyse a database that a running engine holds open.

        Args:
            directory: Where to write (created if missing).
            progress: Called as ``progress(files_written, files_in_all)`` after each file.

        Returns:
            The paths written.
        """
        self._check_open()
        self.flush()
        target = os.fspath(directory)
        os.makedirs(target, exist_ok=True)
        written = []
        cursor = self._new_cursor()
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
        finally:
            cursor.close()
        return written

    def close(self) -> None:
        """CHECKPOINT and close the database (releasing the file lock). Idempotent.

        Cursors handed out by `cursor` and `sql` are closed too.
        """
        with self._write_lock:
            if self._closed:
                return
            try:
                self._apply_pending()
            except StoreError as exc:
                log.warning("flowgen: %s", exc)  # kept in the journal for the next open
            self._closed = True
            try:
                self._writer.execute("CHECKPOINT").fetchall()
            except duckdb.Error:
                pass  # e.g. a cursor's open transaction: the WAL is replayed on next open
            if self._journal is not None:
                self._journal.close(remove=not self._pending)
            self._appenders.clear()
            with self._cursors_lock:
                cursors = list(self._cursors)
            for cursor in (*cursors, self._writer):
                cursor.close()
            self._con.close()

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._con.cursor()
        with self._cursors_lock:
            self._cursors.add(cursor)
        return cursor

    def _reader(self) -> duckdb.DuckDBPyConnection:
        # The store's own reads use a cursor separate from `sql`'s, so a relation a user is
        # still streaming on this thread is never ended by one of our executes.
        cursor = getattr(self._local, "reader", None)
        if cursor is None:
            cursor = self._local.reader = self._new_cursor()
        return cursor

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store {self.path} is closed")

    def _read(self, query: str, params: object = None) -> list[tuple[Any, ...]]:
        self._check_open()
        self.flush()
        try:
            return self._reader().execute(query, params).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None

    # -- writes ----------------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        """Make *batch* durable, all of it or none, before returning.

        Through the journal (the default) that is one fsync'd record; the rows reach the
        tables later, always before a read through this store. Otherwise, one DuckDB
        transaction.

        Raises:
            HistoryCorruptError: The batch does not continue a run's history (an event id
                out of sequence or already stored, an unknown run, a run that exists).
                Nothing was written.
            StoreError: The write failed (DuckDB refused it, the journal could not be
                written); nothing was written.
        """
        if not batch:
            return
        with self._write_lock:
            self._check_open()
            plan = self._plan(batch)
            if self._journaled:
                self._journal_plan(plan)
            else:
                try:
                    self._transaction(
                        plan.run_rows, plan.event_rows, plan.update_rows, applied=None
                    )
                except duckdb.Error as exc:
                    # The cache may be what was wrong (another writer): read the truth
                    # next time.
                    with self._next_lock:
                        for run_id in plan.cache_after:
                            self._next.pop(run_id, None)
                    raise _commit_error(exc) from None
            with self._next_lock:
                for run_id, entry in plan.cache_after.items():
                    if entry is None:
                        self._next.pop(run_id, None)
                    else:
                        self._next[run_id] = entry

    def _journal_plan(self, plan: _Plan) -> None:
        """Journal *plan* (durable on return), then apply the backlog if it is due."""
        number = self._record_number + 1
        if self._journal is not None:
            self._journal.append(number, _plan_to_json(plan))
        self._record_number = number
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(plan)
        self._pending_runs.update(row[1] for row in plan.run_rows)
        self._pending_rows += (
            len(plan.run_rows)
            + len(plan.event_rows)
            + sum(len(rows) for rows in plan.update_rows.values())
        )
        if (
            self._pending_rows >= self.apply_rows
            or time.monotonic() - self._pending_since >= self.apply_seconds
        ):
            try:
                self._apply_pending()
            except StoreError as exc:
                # The batch is committed (journaled): never report it as failed. The rows
                # stay journaled, and the next read or commit tries again.
                log.warning("flowgen: %s", exc)

    def flush(self) -> None:
        """Move journaled commits into the tables now (a no-op when there are none).

        Every read through this store does it first; call it before reading the tables
        through a cursor or connection you kept from earlier.

        Raises:
            StoreError: DuckDB refused the rows. They stay in the journal (nothing is
                lost) and are tried again on the next read, commit or open.
        """
        if self._pending:
            with self._write_lock:
                self._check_open()
                self._apply_pending()

    def _apply_pending(self) -> None:
        """Write every journaled plan into the tables in one transaction (under the lock)."""
        if not self._pending:
            return
        runs, events, updates = _merge_plans(self._pending)
        try:
            self._transaction(runs, events, updates, applied=self._record_number)
        except duckdb.Error as exc:
            where = "" if self._journal is None else f" (kept in {self._journal.path})"
            raise StoreError(
                f"moving {len(self._pending)} journaled commits into {self.path} "
                f"failed{where}, they are tried again on the next read or open: {exc}"
            ) from None
        self._pending = []
        self._pending_runs.clear()
        self._pending_rows = 0
        if self._journal is not None:
            self._journal.applied()

    def _recover_journal(self) -> None:
        """At open: apply the records a crash left in the journal, exactly once."""
        assert self._journal is not None
        rows = self._writer.execute(
            "SELECT value FROM flowgen_meta WHERE key = 'journal_applied'"
        ).fetchall()
        applied = int(rows[0][0]) if rows else 0
        records = self._journal.recover()
        self._record_number = max([applied, *(number for number, _ in records)])
        todo = [(number, body) for number, body in records if number > applied]
        for number, body in todo:
            try:
                self._pending.append(_plan_from_json(body))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                self._pending.clear()
                raise HistoryCorruptError(
                    f"the journal {self._journal.path} has record {number} that cannot "
                    f"be read ({exc!r}); the database and the journal were left as they are"
                ) from None
        if self._pending:
            self._apply_pending()
        else:
            self._journal.applied()

    def _transaction(
        self,
        run_rows: list[tuple[Any, ...]],
        event_rows: list[tuple[Any, ...]],
        update_rows: dict[tuple[str, ...], list[tuple[Any, ...]]],
        *,
        applied: int | None,
    ) -> None:
        """Write rows in one DuckDB transaction; *applied* also records a journal number.

        Raises:
            duckdb.Error: After rolling back; nothing was written.
        """
        cursor = self._writer
        try:
            cursor.execute("BEGIN TRANSACTION")
            # DuckDB's appender: one statement per table per flush, and no pyarrow.
            # Measured on a file (2 cores, txn/s with 5 / 50 / 500 events per
            # transaction): appender 431 / 347 / 172; one multi-row INSERT ... VALUES
            # 399 / 179 / 18 (its parse and bind cost grows with the rows); an Arrow
            # table + INSERT ... SELECT 271 / 307 / 155 (registering it costs ~1 ms).
            # A statement per row would be ~900 rows/s. For row updates, one appender per
            # shape of update beat one UPDATE ... FROM (VALUES ...) at 100 runs per
            # commit (19 vs 30 ms) and tied at 1 and 10.
            if run_rows:
                self._flush(("insert", "workflows"), run_rows)
            if event_rows:
                self._flush(("insert", "events"), event_rows)
            for columns, rows in update_rows.items():
                self._flush(("update", *columns), rows)
            if applied is not None:
                cursor.execute(
                    "INSERT OR REPLACE INTO flowgen_meta VALUES ('journal_applied', ?)",
                    [str(applied)],
                )
            cursor.execute("COMMIT")
        except duckdb.Error:
            self._rollback_quietly()
            # An appender that failed may still hold rows: never flush them later.
            self._appenders.clear()
            raise

    def _flush(self, key: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Write *rows* with the writer's appender for *key*, made once and reused.

        ``("insert", table)`` appends rows; ``("update", *columns)`` sets *columns* of the
        ``workflows`` rows whose run_id is each row's first value. Making an appender costs
        0.3-0.5 ms, as much as a small flush, so they live as long as the writer cursor.
        """
        appender = self._appenders.get(key)
        if appender is None:
            if key[0] == "insert":
                appender = self._writer.appender(key[1])
            else:
                appender = self._writer.appender(
                    "workflows",
                    columns=["run_id", *key[1:]],
                    action="update",
                    key=["run_id"],
                )
            self._appenders[key] = appender
        appender.append_rows(rows)
        appender.flush()

    def _rollback_quietly(self) -> None:
        try:
            self._writer.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a failed COMMIT has already ended the transaction

    def _plan(self, batch: Batch) -> _Plan:
        """Validate *batch* against the stored histories; turn it into rows."""
        new_runs: dict[str, WorkflowRecord] = {}
        with self._next_lock:
            cached = {run.run_id for run in batch.runs if run.run_id in self._next}
        for run in batch.runs:
            if run.run_id in new_runs or run.run_id in cached:
                raise HistoryCorruptError(
                    f"run {run.run_id} of {run.workflow_id!r} already exists"
                )
            _check_status(run.status, run.run_id)
            new_runs[run.run_id] = run
        for update in batch.updates:
            if update.status is not None:
                _check_status(update.status, update.run_id)
        if self._journaled and new_runs:
            # A journaled batch reaches the tables (and their primary key) only later, so
            # a run id already used by a run that left the cache (closed) is looked for
            # here: among the journaled runs, then in the table (one query, skipped when
            # the writer vouches for its ids: Batch.fresh_run_ids).
            taken = [run_id for run_id in new_runs if run_id in self._pending_runs]
            if not batch.fresh_run_ids:
                taken += self._stored_run_ids([r for r in new_runs if r not in taken])
            if taken:
                run = new_runs[taken[0]]
                raise HistoryCorruptError(
                    f"run {run.run_id} of {run.workflow_id!r} already exists; nothing "
                    f"was written"
                )
        referenced = {row.run_id for row in batch.events}
        referenced.update(update.run_id for update in batch.updates)
        with self._next_lock:
            known = {
                run_id: self._next[run_id]
                for run_id in referenced - new_runs.keys()
                if run_id in self._next
            }
        missing = referenced - new_runs.keys() - known.keys()
        if missing:
            self._apply_pending()  # the lookup reads the tables
            known.update(self._lookup_runs(sorted(missing)))

        def owner(workflow_id: str, run_id: str, what: str) -> int:
            if run_id in new_runs and new_runs[run_id].workflow_id == workflow_id:
                return 0
            entry = known.get(run_id)
            if entry is None or entry[0] != workflow_id:
                raise HistoryCorruptError(
                    f"{what} for unknown run {run_id} of {workflow_id!r}"
                )
            return entry[1]

        next_ids: dict[str, int] = {}
        event_rows = []
        for row in batch.events:
            expected = next_ids.get(row.run_id)
            if expected is None:
                expected = owner(row.workflow_id, row.run_id, "events")
            if row.event_id != expected:
                raise HistoryCorruptError(
                    f"run {row.run_id} of {row.workflow_id!r}: event_id {row.event_id} "
                    f"appended where {expected} belongs; nothing was written"
                )
            next_ids[row.run_id] = expected + 1
            event = row.event
            event_rows.append(
                (
                    row.workflow_id,
                    row.run_id,
                    row.event_id,
                    event_seq(event),
                    EVENT_TAGS[type(event)],
                    _event_name(event),
                    dumps(event_to_dict(event)),
                    _event_attempt(event),
                    _aware(event.at, f"event {row.event_id} of run {row.run_id}"),
                )
            )

        # Several updates of one run in a batch are merged, the later winning, so each run
        # gets one row change (DuckDB's UPDATE ... FROM picks an arbitrary one of duplicates).
        merged: dict[str, RunUpdate] = {}
        for update in batch.updates:
            owner(update.workflow_id, update.run_id, "update")
            previous = merged.get(update.run_id)
            merged[update.run_id] = (
                update if previous is None else _merge_updates(previous, update)
            )
        update_rows: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for run_id, update in merged.items():
            if run_id in new_runs:  # inserted in this batch: insert the updated row
                new_runs[run_id] = apply_update(new_runs[run_id], update)
                continue
            columns, row_values = _update_row(update)
            if columns:
                update_rows.setdefault(columns, []).append((run_id, *row_values))

        cache_after: dict[str, tuple[str, int] | None] = {}
        for run_id, next_id in next_ids.items():
            workflow_id = (
                new_runs[run_id].workflow_id if run_id in new_runs else known[run_id][0]
            )
            cache_after[run_id] = (workflow_id, next_id)
        for run_id, run in new_runs.items():
            cache_after.setdefault(run_id, (run.workflow_id, 0))
        # A closed run gets no more events: forget it (this bounds the cache by the number
        # of running runs).
        for run_id, update in merged.items():
            if update.status in CLOSED_STATUSES:
                cache_after[run_id] = None
        for run_id, run in new_runs.items():
            if run.status in CLOSED_STATUSES:
                cache_after[run_id] = None
        return _Plan(
            run_rows=[_run_row(run) for run in new_runs.values()],
            event_rows=event_rows,
            update_rows=update_rows,
            cache_after=cache_after,
        )

    def _stored_run_ids(self, run_ids: list[str]) -> list[str]:
        """Those of *run_ids* that have a row in the table."""
        if not run_ids:
            return []
        try:
            rows = self._writer.execute(
                "SELECT run_id FROM workflows WHERE run_id IN (SELECT unnest(?))",
                [run_ids],
            ).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None
        return [run_id for (run_id,) in rows]

    def _lookup_runs(self, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        """(workflow_id, next event id) of the stored runs among *run_ids*, in one query."""
        try:
            rows = self._writer.execute(
                """SELECT w.run_id, w.workflow_id, coalesce(m.next_id, 0)
                FROM workflows w
                LEFT JOIN (
                    SELECT run_id, max(event_id) + 1 AS next_id FROM events
                    WHERE run_id IN (SELECT unnest(?)) GROUP BY run_id
                ) m ON m.run_id = w.run_id
                WHERE w.run_id IN (SELECT unnest(?))""",
                [run_ids, run_ids],
            ).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None
        return {run_id: (workflow_id, next_id) for run_id, workflow_id, next_id in rows}

    def _remember(self, run_id: str, workflow_id: str, next_id: int) -> None:
        # Called by readers, possibly racing a commit: never lower what a commit stored.
        with self._next_lock:
            entry = self._next.get(run_id)
            if entry is None or entry[1] < next_id:
                self._next[run_id] = (workflow_id, next_id)

    # -- reads -----------------------------------------------------------------------------

    def load_history(self, workflow_id: str, run_id: str) -> list[Event]:
        """The run's events in order (empty for an unknown run).

        Raises:
            HistoryCorruptError: The stored events are not numbered 0, 1, 2, ..., or one
                cannot be decoded (the message names the run and the event id).
        """
        # Filter on run_id alone, so the index serves it (see _SCHEMA).
        rows = self._read(
            "SELECT workflow_id, event_id, payload FROM events "
            "WHERE run_id = ? ORDER BY event_id",
            [run_id],
        )
        return self._decode_history(
            workflow_id,
            run_id,
            [
                (event_id, payload)
                for wf, event_id, payload in rows
                if wf == workflow_id
            ],
        )

    def load_histories(
        self, runs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Event]]:
        """Several runs' histories, keyed by ``(workflow_id, run_id)``, in one query.

        Raises:
            HistoryCorruptError: As `load_history`, for the first bad history.
        """
        keys = list(dict.fromkeys(runs))
        if not keys:
            return {}
        rows = self._read(
            "SELECT workflow_id, run_id, event_id, payload FROM events "
            "WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id, event_id",
            [[run_id for _, run_id in keys]],
        )
        grouped: dict[tuple[str, str], list[tuple[int, str]]] = {
            key: [] for key in keys
        }
        for workflow_id, run_id, event_id, payload in rows:
            group = grouped.get((workflow_id, run_id))
            if group is not None:
                group.append((event_id, payload))
        return {
            key: self._decode_history(key[0], key[1], group)
            for key, group in grouped.items()
        }

    def _decode_history(
        self, workflow_id: str, run_id: str, rows: Sequence[tuple[int, str]]
    ) -> list[Event]:
        check_numbering(workflow_id, run_id, (event_id for event_id, _ in rows))
        events = []
        # One parse for the whole history (the JSON column holds one valid value per row,
        # so joined with commas they are a list of as many); any doubt: one row at a time.
        try:
            parsed = loads("[" + ",".join(payload for _, payload in rows) + "]")
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or len(parsed) != len(rows):
            parsed = [None] * len(rows)
        for (event_id, payload), data in zip(rows, parsed, strict=True):
            try:
                if data is None:
                    data = loads(payload)
                if not isinstance(data, dict):
                    raise HistoryCorruptError("the payload is not a JSON object")
                events.append(event_from_dict(data))
            except (HistoryCorruptError, ValueError) as exc:
                raise HistoryCorruptError(
                    f"history of {workflow_id!r} (run {run_id}): event {event_id} cannot "
                    f"be decoded: {exc}"
                ) from None
        # Remember where a running history continues; a closed one gets no more events.
        if events and not isinstance(events[-1], TERMINAL_EVENTS):
            self._remember(run_id, workflow_id, len(events))
        return events

    def get_run(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowRecord | None:
        """A run by id; without *run_id*, the latest run of *workflow_id* (or ``None``)."""
        # Bare equality filters, so the indexes serve them (see _SCHEMA); the rest is
        # done here.
        if run_id is None:
            rows = self._read(
                f"SELECT {_RUN_COLUMNS}, rowid FROM workflows WHERE workflow_id = ?",
                [workflow_id],
            )
            if not rows:
                return None
            # Ties in started_at (a continue-as-new under a manual clock) go to the row
            # inserted last: rows are only appended and updated in place, never moved.
            latest = max(rows, key=lambda row: (row[_STARTED_US], row[-1]))
            return _record(latest[:-1])
        rows = self._read(
            f"SELECT {_RUN_COLUMNS} FROM workflows WHERE run_id = ?", [run_id]
        )
        return _record(rows[0]) if rows and rows[0][0] == workflow_id else None

    def latest_runs(self, workflow_ids: Sequence[str]) -> dict[str, WorkflowRecord]:
        """The latest run of each of *workflow_ids* that has one, in one query.

        "Latest" as in `get_run`: the newest ``started_at``, ties to the row inserted last.
        The engine reads the ids of a batch of starts this way (~1 ms for the lot, where
        `get_run` costs ~1 ms each).
        """
        ids = list(dict.fromkeys(workflow_ids))
        if not ids:
            return {}
        rows = self._read(
            f"SELECT {_RUN_COLUMNS} FROM workflows "
            "WHERE workflow_id IN (SELECT unnest(?)) ORDER BY started_at, rowid",
            [ids],
        )
        return {row[0]: _record(row) for row in rows}  # later rows win

    def list_runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        tags: dict[str, JsonValue] | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRecord]:
        """Runs, newest first, filtered by status, name and tag values (JSON equality).

        A tag filtered as ``None`` matches runs where it is null or absent.
        """
        where: list[str] = []
        params: list[object] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if name is not None:
            where.append("name = ?")
            params.append(name)
        for key, value in (tags or {}).items():
            # A JSON pointer, so any key works ("a.b", "x/y"). json_extract gives minified
            # JSON text and json(?) minifies ours the same way, so comparing the texts is
            # JSON equality (for objects, with their keys in the same order).
            pointer = "/" + key.replace("~", "~0").replace("/", "~1")
            if value is None:
                where.append("coalesce(json_extract(tags, ?), 'null') = 'null'")
                params.append(pointer)
            else:
                where.append("json_extract(tags, ?) = json(?)")
                params.extend((pointer, dumps(value)))
        query = f"SELECT {_RUN_COLUMNS} FROM workflows"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY started_at DESC, rowid DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [_record(row) for row in self._read(query, params)]

    def unfinished(self) -> list[WorkflowRecord]:
        """Every run whose status is ``running``, oldest first (what recovery resumes)."""
        rows = self._read(
            f"SELECT {_RUN_COLUMNS} FROM workflows WHERE status = 'running' "
            "ORDER BY started_at, rowid"
        )
        return [_record(row) for row in rows]


# ---------------------------------------------------------------------------------------------
# Rows.


def _check_status(status: str, run_id: str) -> None:
    # The table's CHECK, checked before anything is written or journaled.
    if status not in RUN_STATUSES:
        raise StoreError(
            f"run {run_id}: status {status!r} is not one of {', '.join(RUN_STATUSES)}; "
            f"nothing was written"
        )


def _run_row(run: WorkflowRecord) -> tuple[Any, ...]:
    return (
        run.workflow_id,
        run.run_id,
        run.name,
        run.status,
        dumps(run.args),
        dumps(run.kwargs),
        _json_or_none(run.result),
        _error_json(run.error),
        dumps(run.tags),
        run.parent_id,
        _aware(run.started_at, f"started_at of run {run.run_id}"),
        None
        if run.closed_at is None
        else _aware(run.closed_at, f"closed_at of run {run.run_id}"),
    )


def _update_row(update: RunUpdate) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The columns *update* sets, and their values (``None`` fields are left alone)."""
    values: dict[str, Any] = {}
    if update.status is not None:
        values["status"] = update.status
    if update.result is not None:
        values["result"] = dumps(update.result)
    if update.error is not None:
        values["error"] = _error_json(update.error)
    if update.tags is not None:
        values["tags"] = dumps(update.tags)
    if update.closed_at is not None:
        values["closed_at"] = _aware(
            update.closed_at, f"closed_at of run {update.run_id}"
        )
    columns = tuple(field for field in _UPDATE_FIELDS if field in values)
    return columns, tuple(values[field] for field in columns)


def _merge_updates(first: RunUpdate, second: RunUpdate) -> RunUpdate:
    return RunUpdate(
        first.workflow_id,
        first.run_id,
        status=second.status if second.status is not None else first.status,
        result=second.result if second.result is not None else first.result,
        error=second.error if second.error is not None else first.error,
        tags=second.tags if second.tags is not None else first.tags,
        closed_at=second.closed_at if second.closed_at is not None else first.closed_at,
    )


# Where each column a RunUpdate may set sits in a `_run_row`.
_RUN_ROW_POSITIONS: Final = {
    "status": 3,
    "result": 6,
    "error": 7,
    "tags": 8,
    "closed_at": 11,
}
_ONE_US: Final = timedelta(microseconds=1)


def _merge_plans(
    plans: Sequence[_Plan],
) -> tuple[
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    dict[tuple[str, ...], list[tuple[Any, ...]]],
]:
    """The rows of *plans* written one after another, as one transaction's rows.

    A run's row changes merge in order, the later value of a column winning (what
    applying them one by one would leave), and a run inserted by one of the plans gets
    them folded into the inserted row: most runs of a busy engine start and finish
    between two applies, and are inserted once, finished.
    """
    if len(plans) == 1:
        plan = plans[0]
        return plan.run_rows, plan.event_rows, plan.update_rows
    runs: list[tuple[Any, ...]] = []
    inserted: dict[str, int] = {}
    events: list[tuple[Any, ...]] = []
    changes: dict[str, dict[str, Any]] = {}
    for plan in plans:
        for row in plan.run_rows:
            inserted[row[1]] = len(runs)
            runs.append(row)
        events.extend(plan.event_rows)
        for columns, rows in plan.update_rows.items():
            for row in rows:
                changes.setdefault(row[0], {}).update(
                    zip(columns, row[1:], strict=True)
                )
    updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for run_id, values in changes.items():
        index = inserted.get(run_id)
        if index is not None:
            row_values = list(runs[index])
            for column, value in values.items():
                row_values[_RUN_ROW_POSITIONS[column]] = value
            runs[index] = tuple(row_values)
            continue
        columns = tuple(field for field in _UPDATE_FIELDS if field in values)
        updates.setdefault(columns, []).append(
            (run_id, *(values[column] for column in columns))
        )
    return runs, events, updates


def _time_json(value: object) -> int:
    # json.dumps calls this only for what it cannot write itself: the rows' datetimes.
    if isinstance(value, datetime):
        return (value - _EPOCH) // _ONE_US
    raise TypeError(f"{type(value).__name__} in a journaled row")  # pragma: no cover


def _plan_to_json(plan: _Plan) -> bytes:
    """A plan's rows as one journal record body (times as epoch microseconds)."""
    return json.dumps(
        [plan.run_rows, plan.event_rows, list(plan.update_rows.items())],
        separators=(",", ":"),
        default=_time_json,
    ).encode()


def _with_times(row: list[Any], positions: Iterable[int]) -> tuple[Any, ...]:
    for position in positions:
        if row[position] is not None:
            row[position] = _from_us(row[position])
    return tuple(row)


def _plan_from_json(body: bytes) -> _Plan:
    """The inverse of `_plan_to_json` (the rows only: a recovered plan updates no cache)."""
    run_rows, event_rows, update_items = json.loads(body)
    updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for columns, rows in update_items:
        key = tuple(columns)
        times = [index + 1 for index, column in enumerate(key) if column == "closed_at"]
        updates[key] = [_with_times(row, times) for row in rows]
    return _Plan(
        run_rows=[_with_times(row, (10, 11)) for row in run_rows],
        event_rows=[_with_times(row, (8,)) for row in event_rows],
        update_rows=updates,
        cache_after={},
    )


def _record(row: tuple[Any, ...]) -> WorkflowRecord:
    (
        workflow_id,
        run_id,
        name,
        status,
        args,
        kwargs,
        result,
        error,
        tags,
        parent_id,
        started_us,
        closed_us,
    ) = row
    started_at = _from_us(started_us)
    assert started_at is not None  # NOT NULL column
    return WorkflowRecord(
        workflow_id=workflow_id,
        run_id=run_id,
        name=name,
        status=status,
        args=json.loads(args),
        kwargs=json.loads(kwargs),
        started_at=started_at,
        result=None if result is None else json.loads(result),
        error=_error_from_json(error),
        tags=json.loads(tags),
        parent_id=parent_id,
        closed_at=_from_us(closed_us),
    )


def _commit_error(exc: duckdb.Error) -> Exception:
    message = str(exc)
    # A duplicate key shows up at the INSERT (the row is already committed) or at COMMIT (a
    # concurrent transaction committed it first): either way the batch does not continue
    # the stored history, the same refusal as an event id out of sequence.
    if isinstance(exc, (duckdb.ConstraintException, duckdb.TransactionException)) and (
        "duplicate key" in message.lower()
    ):
        what = "an event id" if "event_id" in message else "a run or event id"
        return HistoryCorruptError(
            f"{what} of this batch is already stored (did another store or connection "
            f"write to this file?); nothing was written. DuckDB: {message}"
        )
    return StoreError(f"commit failed and was rolled back, nothing written: {message}")


# ---------------------------------------------------------------------------------------------
# Opening.


def _open(path: str) -> duckdb.DuckDBPyConnection:
    exists = path != ":memory:" and os.path.exists(path)
    if exists and os.path.isfile(path):
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
        # DuckDB would try to download and load its sqlite extension to attach this file:
        # network access, and then a "database" that is not ours. Refuse it first.
        if head == _SQLITE_MAGIC:
            raise NotAFlowgenDatabase(
                f"{path} is not a flowgen database: it is a SQLite database file"
            )
    try:
        return duckdb.connect(path)
    except duckdb.Error as exc:
        message = str(exc)
        # Precise phrases: a corrupt file's error mentions a "block", which contains "lock".
        if "Could not set lock" in message or "Conflicting lock" in message:
            raise StoreLockedError(_locked_message(path, message)) from None
        if isinstance(exc, duckdb.ConnectionException):
            raise StoreLockedError(
                f"cannot open {path}: this process already has it open with other "
                f"settings (a duckdb.connect(..., read_only=True) of your own?). Close "
                f"that connection, or read through the store: store.sql(...) or "
                f"store.cursor(). DuckDB: {message}"
            ) from None
        if exists:
            raise NotAFlowgenDatabase(
                f"{path} is not a flowgen database: DuckDB cannot open it ({message})"
            ) from None
        raise StoreError(f"cannot open {path}: {message}") from None


def _locked_message(path: str, message: str) -> str:
    pid = re.search(r"PID (\d+)", message)
    holder = f"process {pid.group(1)}" if pid else "another process"
    return (
        f"cannot open {path}: {holder} has it open. DuckDB lets one process open a "
        f"database file for writing, and while it does no other process can open it at "
        f"all, not even read-only. Stop that process (its flowgen engine) first; or, to "
        f"read while it runs, query from inside it (engine.sql(...) or store.cursor(): "
        f"a notebook must share the engine's process), or read a Parquet snapshot that "
        f"process writes (engine.store.export_parquet(DIR); `flowgen export DIR` needs "
        f"the file free, like every other process). "
        f"DuckDB: {message}"
    )


def _prepare_schema(con: duckdb.DuckDBPyConnection, path: str) -> None:
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
    if "flowgen_meta" not in tables:
        listed = ", ".join(tables[:10]) + (", ..." if len(tables) > 10 else "")
        raise NotAFlowgenDatabase(
            f"{path} is not a flowgen database (it has tables {listed} but no "
            f"flowgen_meta); use another file for flowgen"
        )
    meta = dict(con.execute("SELECT key, value FROM flowgen_meta").fetchall())
    if meta.get("application") != _APPLICATION:
        raise NotAFlowgenDatabase(
            f"{path} is not a flowgen database: its flowgen_meta table says application "
            f"{meta.get('application')!r}"
        )
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise NotAFlowgenDatabase(
            f"{path} has an unreadable schema_version "
            f"{meta.get('schema_version')!r} in flowgen_meta"
        ) from None
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path} has flowgen schema version {version}, written by a newer flowgen; "
            f"this flowgen reads schema version {SCHEMA_VERSION}. Upgrade flowgen "
            f"(pip install -U flowgen-durable) to open it; the file was not changed"
        )
    if version < SCHEMA_VERSION:
        # No older schema has ever been released; a migration goes here when one exists.
        raise SchemaVersionError(
            f"{path} has flowgen schema version {version}, which this flowgen (schema "
            f"version {SCHEMA_VERSION}) cannot migrate; the file was not changed"
        )
    absent = [name for name in TABLES if name not in tables]
    if absent:
        raise NotAFlowgenDatabase(
            f"{path} says it is a flowgen database but lacks the tables "
            f"{', '.join(absent)}"
        )
    _refresh_views(con)


# Each view carries, as its DuckDB comment, a fingerprint of the statement that created it: a
# file keeps the view definitions of the flowgen that created it, and opening compares these
# (one catalog query) instead of DuckDB's stored SQL, which DuckDB re-renders (comparing that
# would mean rendering `_SCHEMA` in a scratch database first: 35 ms per process).
_VIEW_DDL: Final = {
    match.group(1): statement
    for statement in _SCHEMA
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
        for statement in _SCHEMA:
            con.execute(statement)
        _comment_views(con, VIEWS)
        con.execute(
            "INSERT INTO flowgen_meta VALUES (?, ?), (?, ?)",
            ["application", _APPLICATION, "schema_version", str(SCHEMA_VERSION)],
        )
        con.execute("COMMIT")
    except duckdb.Error:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT").fetchall()
