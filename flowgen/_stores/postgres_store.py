"""`PostgresStore`: the `Store` in a PostgreSQL database, the shared store of many engines.

The only module with `flowgen._stores.postgres_schema` that imports psycopg (an optional
extra: ``pip install "flowgen-durable[postgres]"``), and only when a PostgreSQL store is opened.

Theory of operation
===================

**Writes.** `PostgresStore.commit` writes one `Batch` in one transaction on the store's one
writer connection, under a lock. `flowgen._stores.duckdb_plan.plan_batch` checks the batch
against the runs it refers to and turns it into rows (the rules DuckDB's store applies: one
copy); where those runs continue comes from `_NextEventIds`, else from one query in the
transaction. The rows go in with one statement per table: ``INSERT ... SELECT FROM
unnest(<one array per column>)`` for new runs and for events, one ``UPDATE ... FROM
unnest(...)`` per shape of row change. Never a statement per row; the statements' text does
not depend on the number of rows, so the server plans them once (psycopg prepares them after
a few uses). BEGIN, the writes and COMMIT go in one pipeline: one round trip when no lookup
is needed.

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

**Not yet**: `sql` (DuckDB over an analytics copy of these tables is the plan; until then it
raises `UsageError`), and the fleet's leases (the columns exist, see the schema).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg

from flowgen._stores.codec import dumps
from flowgen._stores.duckdb_plan import Lookups, plan_batch
from flowgen._stores.duckdb_rows import Plan, decode_history, record
from flowgen._stores.postgres_schema import prepare_schema
from flowgen._stores.protocol import Batch, WorkflowRecord
from flowgen._stores.url import is_postgres_url
from flowgen._vocabulary.errors import HistoryCorruptError, StoreError, UsageError
from flowgen._vocabulary.events import TERMINAL_EVENTS, Event, JsonValue

__all__ = ["PostgresStore"]

Connection = psycopg.Connection[tuple[Any, ...]]

# The SQL type of each column, for the arrays `unnest` takes.
_SQL_TYPES: Final = {
    "workflow_id": "text",
    "run_id": "text",
    "name": "text",
    "status": "text",
    "args": "json",
    "kwargs": "json",
    "result": "json",
    "error": "json",
    "tags": "json",
    "parent_id": "text",
    "started_at": "timestamptz",
    "closed_at": "timestamptz",
    "event_id": "integer",
    "seq": "integer",
    "kind": "text",
    "payload": "json",
    "attempt": "integer",
    "recorded_at": "timestamptz",
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


def _display(url: str) -> str:
    """*url* without its password, for messages."""
    url = re.sub(r"(://[^:/@?]*):[^@/?]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", url)


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    arrays = ", ".join(f"%s::{_SQL_TYPES[column]}[]" for column in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"


def _update_sql(columns: Sequence[str]) -> str:
    names = ("run_id", *columns)
    arrays = ", ".join(f"%s::{_SQL_TYPES[column]}[]" for column in names)
    sets = ", ".join(f"{column} = u.{column}" for column in columns)
    return (
        f"UPDATE workflows w SET {sets}, txid = pg_current_xact_id() "
        f"FROM unnest({arrays}) AS u({', '.join(names)}) WHERE w.run_id = u.run_id"
    )


_INSERT_RUNS: Final = _insert_sql("workflows", _RUN_COLUMNS)
_INSERT_EVENTS: Final = _insert_sql("events", _EVENT_COLUMNS)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """*rows* as one list per column (what `unnest` takes)."""
    return [list(column) for column in zip(*rows, strict=True)] or [[]] * width


def _commit_error(exc: psycopg.Error, where: str) -> Exception:
    if isinstance(exc, psycopg.errors.UniqueViolation):
        what = "an event id" if "events" in str(exc) else "a run id"
        return HistoryCorruptError(
            f"{what} of this batch is already stored in {where} (another engine or "
            f"connection wrote it first); nothing was written. PostgreSQL: {exc}"
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


class PostgresStore:
    """A `Store` in a PostgreSQL database, shared by any number of engines and processes.

    Args:
        url: A libpq URL, ``postgresql://user:password@host:port/database`` (any
            ``?param=value`` libpq takes, e.g. ``host=/run/postgresql`` for a socket).
            The schema is created in an empty database.

    Raises:
        StoreError: The server cannot be reached, or refused the connection.
        NotAFlowgenDatabase: The database holds tables of something else (left untouched).
        SchemaVersionError: The database was written by a newer flowgen.

    Example:
        >>> store = PostgresStore("postgresql://app@db.internal/orders")  # doctest: +SKIP
        >>> store.list_runs(status="running")  # doctest: +SKIP
        []
    """

    def __init__(self, url: str) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"url must be a postgresql:// URL, got {url!r}")
        self.url = url
        self.where = _display(url)
        self._closed = False
        self._write_lock = threading.Lock()
        self._idle: list[Connection] = []
        self._idle_lock = threading.Lock()
        self._next = _NextEventIds()
        self._writer = self._connect()
        try:
            prepare_schema(self._writer, self.where)
        except BaseException:
            self._writer.close()
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresStore {self.where!r} ({state})>"

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> Connection:
        try:
            con = psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.where}: {exc}") from None
        return con

    @contextmanager
    def _reader(self) -> Iterator[Connection]:
        self._check_open()
        with self._idle_lock:
            con = self._idle.pop() if self._idle else None
        if con is None:
            con = self._connect()
        try:
            yield con
        except psycopg.Error as exc:
            con.close()
            raise StoreError(f"reading {self.where} failed: {exc}") from None
        except BaseException:
            con.close()
            raise
        with self._idle_lock:
            if self._closed or con.closed:
                con.close()
            else:
                self._idle.append(con)

    def _read(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._reader() as con:
            return con.execute(query, params).fetchall()

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

    def sql(self, query: str, params: object = None) -> Any:
        """Not yet: SQL on a PostgreSQL engine is answered by DuckDB over a copy, later.

        Raises:
            UsageError: Always, for now.
        """
        raise UsageError(
            f"SQL through the engine is not available yet on PostgreSQL ({self.where}): "
            f"query its tables with psql or psycopg meanwhile (the tables and columns are "
            f"those of docs/sql.md; the views are DuckDB's only)"
        )

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
            con = self._writer
            lookups = Lookups(
                cached=self._next.cached,
                taken=lambda run_ids, fresh: [],  # the primary key refuses a taken id
                stored=lambda run_ids: self._known_runs(con, run_ids),
            )
            try:
                # One round trip when every run is cached: BEGIN, the writes and COMMIT
                # go in one pipeline (a lookup, when needed, syncs it once more).
                with con.pipeline(), con.transaction():
                    plan = plan_batch(batch, lookups)
                    self._write(con, plan)
            except psycopg.Error as exc:
                # The cache may be what was wrong (another engine wrote to one of these
                # runs): read the truth next time.
                self._next.forget(row.run_id for row in batch.events)
                raise _commit_error(exc, self.where) from None
            self._next.update(plan.cache_after)

    def _known_runs(
        self, con: Connection, run_ids: Collection[str]
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

    def _write(self, con: Connection, plan: Plan) -> None:
        with con.pipeline():
            if plan.run_rows:
                con.execute(_INSERT_RUNS, _columns(plan.run_rows, len(_RUN_COLUMNS)))
            if plan.event_rows:
                con.execute(
                    _INSERT_EVENTS, _columns(plan.event_rows, len(_EVENT_COLUMNS))
                )
            for columns, rows in plan.update_rows.items():
                con.execute(_update_sql(columns), _columns(rows, len(columns) + 1))

    # -- reads -----------------------------------------------------------------------------

    def load_history(self, workflow_id: str, run_id: str) -> list[Event]:
        """The run's events in order (empty for an unknown run).

        Raises:
            HistoryCorruptError: The stored events are not numbered 0, 1, 2, ..., or one
                cannot be decoded (the message names the run and the event id).
        """
        rows = self._read(
            "SELECT event_id, payload::text FROM events "
            "WHERE run_id = %s AND workflow_id = %s ORDER BY event_id",
            [run_id, workflow_id],
        )
        return self._next.remember(
            workflow_id, run_id, decode_history(workflow_id, run_id, rows)
        )

    def load_histories(
        self, runs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Event]]:
        """Several runs' histories, keyed by ``(workflow_id, run_id)``, in one query."""
        keys = list(dict.fromkeys(runs))
        if not keys:
            return {}
        rows = self._read(
            "SELECT workflow_id, run_id, event_id, payload::text FROM events "
            "WHERE run_id = ANY(%s::text[]) ORDER BY run_id, event_id",
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
            key: self._next.remember(*key, decode_history(key[0], key[1], group))
            for key, group in grouped.items()
        }

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
