"""`PostgresStore`: the `Store` in a PostgreSQL database, the shared store of many engines.

The only module with `flowgen._stores.postgres_schema` that imports psycopg (an optional
extra: ``pip install "flowgen-durable[postgres]"``), and only when a PostgreSQL store is opened.

Theory of operation
===================

**Writes.** `PostgresStore.commit` writes one `Batch` in one transaction on the store's one
writer connection, under a lock. `flowgen._stores.duckdb_plan.plan_batch` checks the batch
against the runs it refers to and turns it into rows (the rules DuckDB's store applies: one
copy); where those runs continue comes from `_NextEventIds`, else from one query in the
transaction. New runs and events go in with one COPY per table, row changes with one
``UPDATE ... FROM unnest(<one array per column>)`` per shape of change: never a statement
per row. Measured against one ``INSERT ... SELECT FROM unnest(...)`` per table, all of a
commit in one pipeline (a single round trip; COPY can't be pipelined), with 1 / 10 / 100
started-and-finished runs of 4 events per commit, interleaved, on a Unix socket: wall
2.6 / 5.1 / 29 ms against 3.3 / 10.5 / 69 ms; client CPU 0.7 / 1.4 / 6.6 against 1.0 / 2.6 /
22 ms (psycopg formats COPY rows in C, and array parameters in Python); server CPU 0.45 /
1.0 / 4.0 against 0.5 / 1.25 / 6.0 ms.

The database is the authority: the primary keys refuse a run id or an event id that another
transaction (another engine, another process) stored first, and the whole batch rolls back
with `HistoryCorruptError`, as a batch that fails the checks does. A batch's rows are
visible to every reader the moment `commit` returns; there is nothing to flush.

**Reads** take an autocommit connection from a small pool (one per thread reading at that
moment; kept for reuse, closed with the store): a psycopg connection runs one statement at a
time, and the writer's transaction must not see readers' statements. Rows are read as
DuckDB's store reads them (JSON as text, times as epoch microseconds) and decoded by the
same code (`flowgen._stores.duckdb_rows`): UTC times, exact to the microsecond.

**Opening** connects, then creates the schema in an empty database, migrates an older one,
or refuses a database that is not flowgen's or is newer, before writing anything
(`flowgen._stores.postgres_schema`). Messages name the database by its URL without its
password.

**A fleet.** A store opened with `FleetOptions` (what `fg.Engine` does) is one engine's
share of the database: it holds running runs through leases with a fencing epoch, fences
every commit, claims free runs and carries messages for runs held elsewhere; the rules are
`flowgen._stores.postgres_leases`'s, the calls `flowgen._stores.postgres_fleet`'s
(`FleetCalls`). A store opened without (a reader, a tool) fences
nothing: it must not write for runs an engine holds.

**SQL** (`sql`, `cursor`, `export_parquet`) is answered by DuckDB over an analytics copy of
these tables, refreshed before each answer (`flowgen._stores.postgres_analytics`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, Final

import psycopg

from flowgen._stores import postgres_prune
from flowgen._stores.codec import dumps
from flowgen._stores.duckdb_plan import Lookups, plan_batch
from flowgen._stores.duckdb_rows import Plan, decode_histories, decode_history, record
from flowgen._stores.postgres_analytics import AnalyticsReads
from flowgen._stores.postgres_fleet import FleetCalls
from flowgen._stores.postgres_leases import (
    EVENT_COLUMNS_TAIL,
    RUN_COLUMNS_TAIL,
    Leases,
)
from flowgen._stores.postgres_permits import PostgresPermits
from flowgen._stores.postgres_schema import prepare_schema
from flowgen._stores.protocol import (
    Batch,
    FleetOptions,
    MessagesRaced,
    ScheduleRecord,
    WorkflowRecord,
)
from flowgen._stores.quarantine import quarantine_or_raise, quarantine_running
from flowgen._stores.schedule_rows import (
    schedule_from_row,
    statements,
)
from flowgen._stores.url import display_url as _display, is_postgres_url
from flowgen._vocabulary.errors import (
    HistoryCorruptError,
    LeaseLost,
    StoreError,
)
from flowgen._vocabulary.events import (
    TERMINAL_EVENTS,
    Event,
    JsonValue,
)

__all__ = ["PostgresStore"]

log = logging.getLogger("flowgen")

_Connection = psycopg.Connection[tuple[Any, ...]]

# The SQL type of each column a row change may set, for the arrays `unnest` takes.
_UPDATE_TYPES: Final = {
    "run_id": "text",
    "status": "text",
    "result": "json",
    "error": "json",
    "tags": "json",
    "closed_at": "timestamptz",
}

# The columns of a `run_row`, and of an `event_row` (flowgen._stores.duckdb_rows).
_RUN_COLUMNS: Final = (
    "workflow_id",
    "run_id",
    "name",
    "status",
    "args",
    "kwargs",
    "result",
    "error",
    "tags",
    "parent_id",
    "started_at",
    "closed_at",
)
_EVENT_COLUMNS: Final = (
    "workflow_id",
    "run_id",
    "event_id",
    "seq",
    "kind",
    "name",
    "payload",
    "attempt",
    "recorded_at",
)

# A run as `record` reads it: JSON as its text, times as epoch microseconds (exact).
_RECORD_COLUMNS: Final = (
    "workflow_id, run_id, name, status, args::text, kwargs::text, result::text, "
    "error::text, tags::text, parent_id, "
    "(extract(epoch FROM started_at) * 1000000)::bigint, "
    "(extract(epoch FROM closed_at) * 1000000)::bigint"
)
_SELECT_RUN: Final = f"SELECT {_RECORD_COLUMNS} FROM workflows"
_SCHEDULES: Final = statements(
    "%s",
    lambda column: f"(extract(epoch FROM {column}) * 1000000)::bigint",
    lambda column: f"{column}::text",
)


# The right to fire one schedule (see `PostgresStore.lock_firing`): flowgen's schedule key
# ("sche" in ASCII) and the schema and schedule id, so other schemas don't collide.
_FIRING_KEY: Final = "x'73636865'::int, hashtext(current_schema() || '/' || %s)"
_TRY_FIRING_LOCK: Final = f"SELECT pg_try_advisory_lock({_FIRING_KEY})"
_FIRING_UNLOCK: Final = f"SELECT pg_advisory_unlock({_FIRING_KEY})"


def _update_sql(columns: Sequence[str]) -> str:
    names = ("run_id", *columns)
    arrays = ", ".join(f"%s::{_UPDATE_TYPES[column]}[]" for column in names)
    sets = ", ".join(f"{column} = u.{column}" for column in columns)
    return (
        f"UPDATE workflows w SET {sets}, txid = pg_current_xact_id() "
        f"FROM unnest({arrays}) AS u({', '.join(names)}) WHERE w.run_id = u.run_id"
    )


_COPY_RUNS: Final = f"COPY workflows ({', '.join(_RUN_COLUMNS)}) FROM STDIN"
_COPY_EVENTS: Final = f"COPY events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN"
_COPY_LEASED_RUNS: Final = (
    f"COPY workflows ({', '.join(_RUN_COLUMNS + RUN_COLUMNS_TAIL)}) FROM STDIN"
)
_COPY_FENCED_EVENTS: Final = (
    f"COPY events ({', '.join(_EVENT_COLUMNS + EVENT_COLUMNS_TAIL)}) FROM STDIN"
)


def _copy(
    cursor: psycopg.Cursor[Any], statement: str, rows: Sequence[tuple[Any, ...]]
) -> None:
    """*rows* into a table with one COPY (psycopg formats each row in C)."""
    with cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """*rows* as one list per column (what `unnest` takes)."""
    return [list(column) for column in zip(*rows, strict=True)] or [[]] * width


def _commit_error(exc: psycopg.Error, where: str) -> Exception:
    if isinstance(exc, psycopg.errors.DeadlockDetected):  # see postgres_requests
        return MessagesRaced(f"commit to {where} was chosen to end a deadlock: {exc}")
    if isinstance(exc, psycopg.errors.UniqueViolation):
        what = "an event id" if "events" in str(exc) else "a run id"
        return HistoryCorruptError(
            f"{what} of this batch is already stored in {where} (another engine or "
            f"connection wrote it first); nothing was written. PostgreSQL: {exc}"
        )
    if isinstance(exc, psycopg.OperationalError):
        # The server or the network went away; if that was after COMMIT was sent, the
        # batch may be stored: say so rather than "nothing written".
        return StoreError(
            f"commit to {where} failed, the connection was lost: {exc}. If it was lost "
            f"while committing, the batch may have been written; read it back to know"
        )
    if isinstance(exc, psycopg.DataError) and "NUL" in str(exc):
        # psycopg refuses it before sending anything; DuckDB stores it.
        return StoreError(
            f"a text of this batch (a workflow or run id, a workflow, activity or signal "
            f"name) holds a NUL character (\\x00), which PostgreSQL cannot store in a "
            f"text column; nothing was written to {where}"
        )
    return StoreError(
        f"commit to {where} failed and was rolled back, nothing written: {exc}"
    )


class _NextEventIds:
    """run id -> (workflow id, next event id) of running runs this store wrote or loaded.

    The first check of a batch's numbering, sparing a lookup per commit. It can only be
    behind the database (another engine appended since), never ahead, so the worst it does
    is let a duplicate event id reach the primary key, which refuses the batch; the entries
    of a refused batch's runs are dropped. A closed run leaves it (it gets no more events),
    which bounds it by the running runs. Thread-safe: commits and readers both update it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def cached(self, run_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        with self._lock:
            return {r: self._entries[r] for r in run_ids if r in self._entries}

    def update(self, after: dict[str, tuple[str, int] | None]) -> None:
        with self._lock:
            for run_id, entry in after.items():
                if entry is None:
                    self._entries.pop(run_id, None)
                else:
                    self._entries[run_id] = entry

    def forget(self, run_ids: Iterable[str]) -> None:
        with self._lock:
            for run_id in run_ids:
                self._entries.pop(run_id, None)

    def remember(
        self, workflow_id: str, run_id: str, events: list[Event]
    ) -> list[Event]:
        """Note where a loaded running history continues; returns *events*."""
        if events and not isinstance(events[-1], TERMINAL_EVENTS):
            with self._lock:  # racing a commit: never lower what a commit stored
                entry = self._entries.get(run_id)
                if entry is None or entry[1] < len(events):
                    self._entries[run_id] = (workflow_id, len(events))
        return events


class PostgresStore(FleetCalls, AnalyticsReads):
    """A `Store` in a PostgreSQL database, shared by any number of engines and processes.

    Args:
        url: A libpq URL, ``postgresql://user:password@host:port/database`` (any
            ``?param=value`` libpq takes, e.g. ``host=/run/postgresql`` for a socket).
            The schema is created in an empty database.
        fleet: Open it as one engine of a fleet (what `fg.Engine` does): leases,
            fenced commits, claims and messages (see `FleetOptions`; the calls are
            `flowgen._stores.postgres_fleet.FleetCalls`'). Without it, a store
            that reads, or a tool's.

    Raises:
        StoreError: The server cannot be reached, or refused the connection.
        NotAFlowgenDatabase: The database holds tables of something else (left untouched).
        SchemaVersionError: The database was written by a newer flowgen.

    Example:
        >>> store = PostgresStore("postgresql://app@db.internal/orders")  # doctest: +SKIP
        >>> store.list_runs(status="running")  # doctest: +SKIP
        []
    """

    _record_columns = _RECORD_COLUMNS

    def __init__(self, url: str, *, fleet: FleetOptions | None = None) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"url must be a postgresql:// URL, got {url!r}")
        self.url = url
        self.where = _display(url)
        self._closed = False
        self._write_lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._idle_lock = threading.Lock()
        self._next: _NextEventIds = _NextEventIds()
        self._permits: list[PostgresPermits] = []  # guarded by _idle_lock
        self._writer = self._connect()
        try:
            prepare_schema(self._writer, self.where)
        except psycopg.Error as exc:
            self._writer.close()
            raise StoreError(
                f"cannot prepare flowgen's tables in {self.where}, nothing was changed: "
                f"{exc}"
            ) from None
        except BaseException:
            self._writer.close()
            raise
        self.leases: Leases | None = None
        self._listener: _Connection | None = None
        self._closings_listener: _Connection | None = None
        if fleet is not None:
            (schema,) = self._writer.execute("SELECT current_schema()").fetchone() or (
                "public",
            )
            self.leases = Leases(fleet, f"flowgen:{schema}", self.where)
            self.leases.prepare(self._writer)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresStore {self.where!r} ({state})>"

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> _Connection:
        try:
            con = psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.where}: {exc}") from None
        return con

    def _read(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run a read on a pooled connection (a new one when none is idle).

        A pooled connection the server ended while it sat idle (a restart, a failover,
        an idle timeout) is only found out by using it: the read then runs once more on a
        new connection, since a read changes nothing.
        """
        self._check_open()
        with self._idle_lock:
            con = self._idle.pop() if self._idle else None
        reused = con is not None
        try:
            if con is None:
                con = self._connect()
            try:
                rows = con.execute(query, params).fetchall()
            except psycopg.OperationalError:
                if not reused:
                    raise
                con.close()
                con = self._connect()
                rows = con.execute(query, params).fetchall()
        except psycopg.Error as exc:
            if con is not None:
                con.close()
            raise StoreError(f"reading {self.where} failed: {exc}") from None
        except BaseException:
            if con is not None:
                con.close()
            raise
        with self._idle_lock:
            if self._closed or con.closed:
                con.close()
            else:
                self._idle.append(con)
        return rows

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store {self.where} is closed")

    def close(self) -> None:
        """Close every connection of the store. Idempotent."""
        with self._write_lock, self._idle_lock:
            if self._closed:
                return
            self._closed = True
            for con in (*self._idle, self._writer):
                con.close()
            self._idle.clear()
            permits, self._permits = self._permits, []
            self._close_listeners()
        for holder in permits:
            holder.close()
        self._close_analytics()

    def permits(self) -> PostgresPermits:
        """Activity permits counted in this database, shared by every engine on it.

        Each call gives a holder of its own (one connection, opened at its first take),
        closed with the store (`flowgen._stores.postgres_permits`).
        """
        holder = PostgresPermits(self.url, self.where)
        with self._idle_lock:
            self._check_open()
            self._permits.append(holder)
        return holder

    # -- schedules -------------------------------------------------------------------------

    def save_schedule(
        self, schedule: ScheduleRecord, *, expected_revision: int | None
    ) -> bool:
        """See `KeepsSchedules.save_schedule`."""
        query, params = _SCHEDULES.save(schedule, expected_revision)
        return self._change_schedules(query, params) == 1

    def load_schedules(self, schedule_id: str | None = None) -> list[ScheduleRecord]:
        """See `KeepsSchedules.load_schedules`."""
        where = " WHERE schedule_id = %s" if schedule_id is not None else ""
        rows = self._read(
            _SCHEDULES.select + where + " ORDER BY schedule_id",
            [schedule_id] if schedule_id is not None else [],
        )
        return [schedule_from_row(row) for row in rows]

    def lock_firing(self, schedule_id: str) -> bool:
        """See `KeepsSchedules.lock_firing`: a session advisory lock on the writer.

        PostgreSQL releases it when the connection ends, however it ends, so a dead
        engine never keeps a schedule from firing.
        """
        return bool(self._schedule_lock(_TRY_FIRING_LOCK, schedule_id))

    def unlock_firing(self, schedule_id: str) -> None:
        """See `KeepsSchedules.unlock_firing`."""
        self._schedule_lock(_FIRING_UNLOCK, schedule_id)

    def _schedule_lock(self, statement: str, schedule_id: str) -> object:
        with self._write_lock:
            self._check_open()
            if self._writer.closed:  # a lock held on it went with it
                self._writer = self._connect()
                if self.leases is not None:
                    self.leases.prepare(self._writer)
            try:
                row = self._writer.execute(statement, [schedule_id]).fetchone()
            except psycopg.Error as exc:
                raise StoreError(
                    f"locking schedule {schedule_id!r} in {self.where} failed: {exc}"
                ) from None
        return None if row is None else row[0]

    def delete_schedule(self, schedule_id: str) -> bool:
        """See `KeepsSchedules.delete_schedule`."""
        return self._change_schedules(_SCHEDULES.delete, [schedule_id]) == 1

    def _change_schedules(self, query: str, params: list[Any]) -> int:
        # On the writer connection, one statement in autocommit: a compare-and-set that
        # PostgreSQL's row lock makes atomic among engines.
        with self._write_lock:
            self._check_open()
            if self._writer.closed:
                self._writer = self._connect()
                if self.leases is not None:
                    self.leases.prepare(self._writer)
            try:
                return self._writer.execute(query, params).rowcount
            except psycopg.Error as exc:
                raise StoreError(
                    f"writing a schedule to {self.where} failed: {exc}"
                ) from None

    # -- writes ----------------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        """Write *batch* in one transaction: all of it is committed on return, or none.

        Raises:
            HistoryCorruptError: The batch does not continue a run's history (an event id
                out of sequence or already stored, an unknown run, a run that exists).
                Nothing was written.
            StoreError: The write failed (a status or time the store refuses, the server);
                nothing was written.
        """
        if not batch:
            return
        with self._write_lock:
            self._check_open()
            if self._writer.closed:  # lost with the server earlier: try a new one
                self._writer = self._connect()
                if self.leases is not None:
                    self.leases.prepare(self._writer)
            con = self._writer
            leases = self.leases
            lookups = Lookups(
                cached=self._next.cached,
                taken=lambda run_ids, fresh: [],  # the primary key refuses a taken id
                stored=lambda run_ids: self._known_runs(con, run_ids),
            )
            try:
                with con.transaction():
                    epochs = None if leases is None else leases.fence(con, batch)
                    plan = plan_batch(batch, lookups)
                    if leases is None:
                        self._write(con, plan)
                    else:
                        assert epochs is not None
                        self._write(con, leases.fenced(plan, epochs))
                        leases.after_write(con, batch)
            except LeaseLost as exc:
                self._next.forget(exc.run_ids)
                if leases is not None:
                    leases.forget(exc.run_ids)
                raise
            except psycopg.Error as exc:
                # The cache may be what was wrong (another engine wrote to one of these
                # runs): read the truth next time.
                self._next.forget(row.run_id for row in batch.events)
                raise _commit_error(exc, self.where) from None
            self._next.update(plan.cache_after)
            if leases is not None:
                leases.committed(batch)

    def _known_runs(
        self, con: _Connection, run_ids: Collection[str]
    ) -> dict[str, tuple[str, int]]:
        """(workflow id, next event id) of the stored runs among *run_ids*."""
        rows = con.execute(
            """SELECT w.run_id, w.workflow_id,
                coalesce((SELECT max(e.event_id) + 1 FROM events e
                          WHERE e.run_id = w.run_id), 0)
            FROM workflows w WHERE w.run_id = ANY(%s::text[])""",
            [list(run_ids)],
        ).fetchall()
        return {run_id: (workflow_id, next_id) for run_id, workflow_id, next_id in rows}

    def _write(self, con: _Connection, plan: Plan) -> None:
        # A fleet's store writes its new runs' owner and epoch, and each event's epoch.
        fenced = self.leases is not None
        cursor = con.cursor()
        if plan.run_rows:
            _copy(cursor, _COPY_LEASED_RUNS if fenced else _COPY_RUNS, plan.run_rows)
        if plan.event_rows:
            copy_events = _COPY_FENCED_EVENTS if fenced else _COPY_EVENTS
            _copy(cursor, copy_events, plan.event_rows)
        for columns, rows in plan.update_rows.items():
            cursor.execute(_update_sql(columns), _columns(rows, len(columns) + 1))

    # -- pruning (rules: flowgen._runtime.retention and flowgen._stores.postgres_prune) ----

    def prunable(self, closed_before: datetime, limit: int) -> list[str]:
        """See `Prunes.prunable`."""
        try:
            with self._write_lock:
                self._check_open()
                return postgres_prune.prunable(self._writer, closed_before, limit)
        except psycopg.Error as exc:
            raise StoreError(f"reading {self.where} failed: {exc}") from None

    def check_export(self) -> None:
        """A PostgreSQL store exports runs (see `Prunes.check_export`)."""

    def export_runs(
        self, run_ids: Sequence[str], directory: str, stem: str
    ) -> list[str]:
        """See `Prunes.export_runs`."""
        with self._write_lock:
            self._check_open()
            return postgres_prune.export_runs(self._writer, run_ids, directory, stem)

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """See `Prunes.delete_runs`."""
        with self._write_lock:
            self._check_open()
            deleted = postgres_prune.delete_runs(self._writer, run_ids)
        self._next.forget(run_ids)
        return deleted

    def reclaim(self) -> None:
        """See `Prunes.reclaim`: a plain VACUUM of both tables (no blocking lock)."""
        with self._write_lock:
            self._check_open()
            postgres_prune.vacuum(self._writer)

    # -- reads -----------------------------------------------------------------------------

    def load_history(self, workflow_id: str, run_id: str) -> list[Event]:
        """The run's events in order (empty for an unknown run).

        Raises:
            HistoryCorruptError: The stored events are not numbered 0, 1, 2, ..., or one
                cannot be decoded (the message names the run and the event id). A running
                run is quarantined first (see `load_histories`).
        """
        rows = self._read(
            "SELECT event_id, payload::text FROM events "
            "WHERE run_id = %s AND workflow_id = %s ORDER BY event_id",
            [run_id, workflow_id],
        )
        try:
            events = decode_history(workflow_id, run_id, rows)
        except HistoryCorruptError as exc:
            self._quarantine_runs({(workflow_id, run_id): str(exc)})
            raise
        return self._next.remember(workflow_id, run_id, events)

    def load_histories(
        self, runs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Event]]:
        """Several runs' histories, keyed by ``(workflow_id, run_id)``, in one query.

        A running run whose history cannot be decoded is quarantined (status
        ``corrupt``) and left out, so one bad history does not stop recovery.

        Raises:
            HistoryCorruptError: As `load_history`, for a bad history of a run that is not
                running.
        """
        keys = list(dict.fromkeys(runs))
        if not keys:
            return {}
        rows = self._read(
            "SELECT workflow_id, run_id, event_id, payload::text FROM events "
            "WHERE run_id = ANY(%s::text[]) ORDER BY run_id, event_id",
            [[run_id for _, run_id in keys]],
        )
        histories, bad = decode_histories(
            keys,
            rows,
            lambda workflow_id, run_id, group: self._next.remember(
                workflow_id, run_id, decode_history(workflow_id, run_id, group)
            ),
        )
        quarantine_or_raise(bad, self._quarantine_runs)
        return histories

    def _quarantine_runs(
        self, reasons: dict[tuple[str, str], str]
    ) -> set[tuple[str, str]]:
        """Mark those of the runs whose history cannot be read that are running ``corrupt``.

        The one rule is `flowgen._stores.quarantine.quarantine_running`; returns the runs
        marked.
        """

        def running_of(run_ids: list[str]) -> list[tuple[str, str]]:
            return [
                (workflow_id, run_id)
                for workflow_id, run_id in self._read(
                    "SELECT workflow_id, run_id FROM workflows "
                    "WHERE run_id = ANY(%s::text[]) AND status = 'running'",
                    [run_ids],
                )
            ]

        return quarantine_running(reasons, running_of, self.commit)

    def get_run(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowRecord | None:
        """A run by id; without *run_id*, the latest run of *workflow_id* (or ``None``)."""
        if run_id is None:
            rows = self._read(
                f"{_SELECT_RUN} WHERE workflow_id = %s "
                "ORDER BY started_at DESC, row_order DESC LIMIT 1",
                [workflow_id],
            )
        else:
            rows = self._read(
                f"{_SELECT_RUN} WHERE run_id = %s AND workflow_id = %s",
                [run_id, workflow_id],
            )
        return record(rows[0]) if rows else None

    def latest_runs(self, workflow_ids: Sequence[str]) -> dict[str, WorkflowRecord]:
        """The latest run of each of *workflow_ids* that has one, in one query."""
        ids = list(dict.fromkeys(workflow_ids))
        if not ids:
            return {}
        rows = self._read(
            f"SELECT DISTINCT ON (workflow_id) {_RECORD_COLUMNS} FROM workflows "
            "WHERE workflow_id = ANY(%s::text[]) "
            "ORDER BY workflow_id, started_at DESC, row_order DESC",
            [ids],
        )
        return {row[0]: record(row) for row in rows}

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
            where.append("status = %s")
            params.append(status)
        if name is not None:
            where.append("name = %s")
            params.append(name)
        for key, value in (tags or {}).items():
            if value is None:
                where.append("coalesce((tags -> %s)::jsonb, 'null') = 'null'")
                params.append(key)
            else:
                where.append("(tags -> %s)::jsonb = %s::jsonb")
                params.extend((key, dumps(value)))
        query = _SELECT_RUN
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY started_at DESC, row_order DESC"
        if limit is not None:
            query += " LIMIT %s"
            params.append(int(limit))
        return [record(row) for row in self._read(query, params)]

    def unfinished(self) -> list[WorkflowRecord]:
        """Every run whose status is ``running``, oldest first (what recovery resumes)."""
        rows = self._read(
            f"{_SELECT_RUN} WHERE status = 'running' ORDER BY started_at, row_order"
        )
        return [record(row) for row in rows]
