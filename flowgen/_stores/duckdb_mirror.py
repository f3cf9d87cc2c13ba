"""The analytics copy: DuckDB over the tables of a PostgreSQL store, followed incrementally.

On a PostgreSQL engine, ``engine.sql(...)``, ``flowgen sql``, the notebook charts and
``flowgen mirror`` are answered by DuckDB over this copy, so every view and example query of
``docs/sql.md`` works unchanged: the copy has the DuckDB schema (tables, views, and the
typed ``activity_calls`` table, see `flowgen._stores.duckdb_calls`), made by the same
code that makes an embedded file.

Rules
=====

**What is copied, and when.** Every row of PostgreSQL's ``workflows`` and ``events`` carries
``txid`` (xid8), the transaction that last wrote it (an insert, or an update of a run's
status: see `flowgen._stores.postgres_schema`). A refresh, in one REPEATABLE READ snapshot:

1. reads the *horizon*, ``pg_snapshot_xmin(pg_current_snapshot())``: every transaction
   below it has ended (committed or rolled back), so no row with a ``txid`` below it can
   still appear or change, and each one that committed is visible in the snapshot;
2. copies the rows with ``copied <= txid < horizon`` (``copied`` is the previous horizon,
   kept in the copy's ``flowgen_meta`` as ``mirror_horizon``), in bulk as Arrow (ADBC's
   PostgreSQL driver reads them with ``COPY ... TO STDOUT (FORMAT binary)``): events are
   appended, workflow rows replace the copy's row of their run (``INSERT OR REPLACE``), so a
   status change follows;
3. folds the new events into ``activity_calls`` (`flowgen._stores.duckdb_calls`), and
   writes the new horizon, all in one DuckDB transaction.

Why not a sequence: its values are taken in one order and committed in another, so a
reader that has copied up to 10 can later see 9 commit, and would skip it. A ``txid`` at or
above the horizon may belong to a transaction still running: those rows wait for a later
refresh (their transaction ends, the horizon passes them). So no row is skipped and none is
copied twice; a row updated again is copied again, with its new ``txid``. The price: a
transaction left open anywhere in the PostgreSQL cluster holds the horizon, and the copy
lags until it ends (it never goes wrong).

**Chunks.** A catch-up of a big database is cut into chunks of about `CHUNK_EVENTS` events
(the ``events_txid`` index finds the ``txid`` at which a chunk ends); each chunk is one
DuckDB transaction that also moves ``mirror_horizon`` up, so an interrupted catch-up resumes
where its last chunk ended. A single PostgreSQL transaction is never split.

**Which database.** The copy records the source's identity (``mirror_of``, PostgreSQL's
``flowgen_meta.database_id``, else its database and schema names); a file that mirrors another database, or that is a flowgen database of its own (an
embedded store's file), is refused before anything is written.

**Schedules** change in place and carry no ``txid``: each refresh copies the (small)
``schedules`` table whole.

**Prunes.** ``engine.prune`` deletes runs from PostgreSQL and, in the same transaction,
names them in ``pruned_runs`` with that transaction's ``txid`` (schema version 3: see
`flowgen._stores.postgres_schema`). The refresh that copies a ``txid`` range reads, in the
same snapshot, the runs pruned in that range, and deletes their rows from every table of
the copy that holds rows of runs (``events``, ``workflows``, ``activity_calls``,
``activity_calls_open``: `flowgen._stores.duckdb_prune.delete_named_runs`; the views
follow) in the DuckDB transaction that copies the range: so a copy that follows a pruned
database holds what a copy made after the prune holds. A pruned run's rows are gone from
the snapshot, so none of them is copied again. A new copy (horizon 0) is empty: it reads no
pruned runs. A database older than version 3 has no ``pruned_runs``: its prunes are not
followed (a copy made after them lacks their runs).

**Threads.** Refreshes run one at a time (a lock); queries run on a cursor per thread, and
see every refresh committed before they start.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any, Final

import duckdb

from flowgen._stores.duckdb_calls import fold_calls, prepare_fold
from flowgen._stores.duckdb_prune import delete_named_runs
from flowgen._stores.duckdb_result import SQLResult
from flowgen._stores.duckdb_schema import export_parquet, prepare_schema
from flowgen._stores.schedule_rows import COLUMNS as SCHEDULE_COLUMNS
from flowgen._vocabulary.errors import NotAFlowgenDatabase, StoreError, UsageError

__all__ = ["CHUNK_EVENTS", "AnalyticsCopy", "Progress"]

CHUNK_EVENTS: Final = 500_000
"""About how many events one catch-up chunk (one DuckDB transaction) copies."""

Progress = Callable[[int, int], object]
"""``progress(events_copied_so_far, events_to_copy)``, called after each chunk."""

# The documented columns, in the DuckDB tables' order: JSON as its text (DuckDB casts it to
# JSON on insert), times as timestamptz (Arrow timestamps in UTC, microseconds).
_WORKFLOW_COLUMNS: Final = (
    "workflow_id, run_id, name, status, args::text AS args, kwargs::text AS kwargs, "
    "result::text AS result, error::text AS error, tags::text AS tags, parent_id, "
    "started_at, closed_at"
)
_EVENT_COLUMNS: Final = (
    "workflow_id, run_id, event_id, seq, kind, name, payload::text AS payload, attempt, "
    "recorded_at"
)

# Schedules, in the DuckDB table's column order (JSON as its text); the columns a later
# schema version added, as their defaults when the source predates them.
_SCHEDULE_DEFAULTS: Final = {
    "skipped": "0::bigint",
    "triggered_at": "NULL::timestamptz",
}


def _select_schedules(present: set[str]) -> str:
    """The query that reads the source's ``schedules``, whose columns are *present*."""
    columns = []
    for name in SCHEDULE_COLUMNS:
        if name not in present:
            columns.append(f"{_SCHEDULE_DEFAULTS[name]} AS {name}")
        elif name in ("args", "kwargs"):
            columns.append(f"{name}::text AS {name}")
        else:
            columns.append(name)
    return f"SELECT {', '.join(columns)} FROM schedules"


# The source's identity: flowgen's own when the schema has one (see postgres_schema),
# else the database's and the schema's names.
_SOURCE_IDENTITY: Final = (
    "SELECT coalesce("
    "(SELECT value FROM flowgen_meta WHERE key = 'database_id'), "
    "current_database() || '/' || current_schema())"
)


class AnalyticsCopy:
    """A DuckDB copy of a PostgreSQL store's tables, with the DuckDB schema's views.

    Args:
        url: The PostgreSQL database (a libpq URL).
        where: How messages name it (the URL without its password).
        target: The DuckDB file to keep the copy in (created if missing, resumed if it is a
            copy of this database), or ``":memory:"``.

    Raises:
        StoreError: The driver is missing, PostgreSQL cannot be reached, or *target*
            cannot be opened (another process holds it).
        NotAFlowgenDatabase: PostgreSQL holds no flowgen tables.
        UsageError: *target* is a copy of another database, or a flowgen database of
            its own (an embedded store's file), or not flowgen's; it is left as it was.

    Example:
        >>> copy = AnalyticsCopy("postgresql://app@db/orders", "db/orders", "a.duckdb")  # doctest: +SKIP
        >>> copy.refresh()  # doctest: +SKIP
        1204
        >>> copy.sql("select name, count(*) from activity_calls group by all").fetchall()  # doctest: +SKIP
    """

    def __init__(self, url: str, where: str, target: str = ":memory:") -> None:
        self.url = url
        self.where = where
        self.target = target
        self._lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._closed = False
        self._source: Any = None
        self._con = _open_duckdb(target)
        try:
            self._source = self._connect()
            identity = self._identity()
            self._horizon = _claim(self._con, target, identity, where)
            prepare_fold(self._con)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<AnalyticsCopy of {self.where!r} in {self.target!r}>"

    # -- PostgreSQL ------------------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            from adbc_driver_postgresql import dbapi  # type: ignore[import-untyped]
        except ImportError:
            raise StoreError(
                "SQL on a PostgreSQL store is answered by DuckDB over a copy, read with "
                'ADBC\'s PostgreSQL driver: pip install "flowgen-durable[postgres]"'
            ) from None
        try:
            return dbapi.connect(self.url, autocommit=True)
        except dbapi.Error as exc:
            raise StoreError(f"cannot connect to {self.where}: {exc}") from None

    def _identity(self) -> str:
        try:
            rows = self._fetch(_SOURCE_IDENTITY)
        except Exception as exc:
            if type(exc).__module__.startswith("adbc_driver"):
                raise NotAFlowgenDatabase(
                    f"{self.where} holds no flowgen tables to copy (open it with "
                    f"fg.Engine first): {exc}"
                ) from None
            raise
        return str(rows[0][0])

    def _fetch(self, query: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(self._source.cursor()) as cursor:
            cursor.execute(query)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def _arrow(self, query: str) -> Any:
        with contextlib.closing(self._source.cursor()) as cursor:
            cursor.execute(query)
            return cursor.fetch_arrow_table()

    # -- refreshing ------------------------------------------------------------------------

    @property
    def horizon(self) -> int:
        """Every row PostgreSQL committed in a transaction below this ``txid`` is copied."""
        return self._horizon

    def refresh(
        self,
        *,
        chunk_events: int = CHUNK_EVENTS,
        progress: Progress | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> int:
        """Copy what PostgreSQL committed since the last refresh; returns the events copied.

        Args:
            chunk_events: About how many events each DuckDB transaction copies.
            progress: Called as ``progress(copied, to_copy)`` after each chunk.
            stop: Checked between chunks: when it returns True, stop (what is copied
                stays copied, and the next refresh goes on from there).

        Raises:
            StoreError: PostgreSQL or DuckDB failed; the copy is as the last chunk left it.
        """
        with self._lock:
            self._check_open()
            try:
                return self._refresh(chunk_events, progress, stop)
            except duckdb.Error as exc:
                raise StoreError(
                    f"the analytics copy of {self.where} in {self.target} failed: {exc}"
                ) from None
            except Exception as exc:
                if type(exc).__module__.startswith("adbc_driver"):
                    self._reconnect()
                    raise StoreError(f"reading {self.where} failed: {exc}") from None
                raise

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self._source.close()
        self._source = self._connect()

    def _refresh(
        self,
        chunk_events: int,
        progress: Progress | None,
        stop: Callable[[], bool] | None,
    ) -> int:
        self._copy_schedules()
        copied = 0
        total: int | None = None
        while True:
            self._begin()
            try:
                horizon = int(
                    self._fetch(
                        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
                    )[0][0]
                )
                if total is None:
                    total = self._count(self._horizon, horizon)
                if horizon <= self._horizon:
                    break
                end = self._chunk_end(horizon, chunk_events)
                workflows = self._arrow(
                    f"SELECT {_WORKFLOW_COLUMNS} FROM workflows "
                    f"WHERE {_txid_range(self._horizon, end)}"
                )
                events = self._arrow(
                    f"SELECT {_EVENT_COLUMNS} FROM events "
                    f"WHERE {_txid_range(self._horizon, end)}"
                )
                pruned = self._pruned(end)
            finally:
                self._end()
            self._store(workflows, events, pruned, end)
            copied += events.num_rows
            if progress is not None:
                progress(copied, max(total, copied))
            if end >= horizon or (stop is not None and stop()):
                break
        return copied

    def _pruned(self, end: int) -> Any:
        """The runs pruned from PostgreSQL in this chunk's ``txid`` range (Arrow), or None.

        None for a new copy (it holds nothing to delete) and for a database older than
        ``pruned_runs``. Read in the chunk's snapshot.
        """
        if (
            self._horizon == 0
            or self._fetch("SELECT to_regclass('pruned_runs') IS NULL")[0][0]
        ):
            return None
        return self._arrow(
            f"SELECT run_id FROM pruned_runs WHERE {_txid_range(self._horizon, end)}"
        )

    def _copy_schedules(self) -> None:
        """Replace the copy's ``schedules`` with PostgreSQL's (a small table, read whole).

        Schedules change in place and carry no ``txid``: each refresh copies them all, in
        one DuckDB transaction.
        """
        if self._fetch("SELECT to_regclass('schedules') IS NULL")[0][0]:
            return  # a database older than schedules
        present = {
            name
            for (name,) in self._fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'schedules' AND table_schema = current_schema()"
            )
        }
        schedules = self._arrow(_select_schedules(present))
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            con.register("mirror_schedules", schedules)
            con.execute("DELETE FROM schedules")
            con.execute("INSERT INTO schedules SELECT * FROM mirror_schedules")
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            with contextlib.suppress(duckdb.Error):
                con.unregister("mirror_schedules")

    def _begin(self) -> None:
        with contextlib.closing(self._source.cursor()) as cursor:
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _end(self) -> None:
        with (
            contextlib.suppress(Exception),
            contextlib.closing(self._source.cursor()) as cursor,
        ):
            cursor.execute("COMMIT")

    def _count(self, start: int, horizon: int) -> int:
        """How many events the rows below *horizon* not yet copied hold (for progress)."""
        if horizon <= start:
            return 0
        return int(
            self._fetch(
                f"SELECT count(*) FROM events WHERE {_txid_range(start, horizon)}"
            )[0][0]
        )

    def _chunk_end(self, horizon: int, chunk_events: int) -> int:
        """The ``txid`` this chunk stops before: the horizon, or ~*chunk_events* on."""
        rows = self._fetch(
            f"SELECT txid::text::bigint FROM events "
            f"WHERE {_txid_range(self._horizon, horizon)} "
            f"ORDER BY txid OFFSET {int(chunk_events)} LIMIT 1"
        )
        if not rows:
            return horizon
        # Never split a transaction: the chunk ends just past the whole of this one.
        return min(horizon, int(rows[0][0]) + 1)

    def _store(self, workflows: Any, events: Any, pruned: Any, end: int) -> None:
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            if pruned is not None and pruned.num_rows:
                con.register("mirror_pruned", pruned)
                delete_named_runs(con, "mirror_pruned")
            if workflows.num_rows:
                con.register("mirror_workflows", workflows)
                con.execute(
                    "INSERT OR REPLACE INTO workflows SELECT * FROM mirror_workflows"
                )
            if events.num_rows:
                con.register("mirror_events", events)
                con.execute("INSERT INTO events SELECT * FROM mirror_events")
                fold_calls(con, "mirror_events")
            con.execute(
                "INSERT OR REPLACE INTO flowgen_meta VALUES ('mirror_horizon', ?)",
                [str(end)],
            )
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            for name in ("mirror_pruned", "mirror_workflows", "mirror_events"):
                with contextlib.suppress(duckdb.Error):
                    con.unregister(name)
        self._horizon = end

    # -- reading ---------------------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new DuckDB cursor on the copy, for one thread (closed with the copy)."""
        self._check_open()
        cursor = self._con.cursor()
        self._cursors.append(cursor)
        return cursor

    def sql(self, query: str, params: object = None) -> SQLResult:
        """Run *query* on the copy, on a cursor owned by the calling thread (no refresh)."""
        self._check_open()
        cursor = getattr(self._local, "user", None)
        if cursor is None:
            cursor = self._local.user = self.cursor()
        return SQLResult(cursor.sql(query, params=params))

    def export_parquet(
        self, directory: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> list[str]:
        """Every table and view of the copy as ``<directory>/<name>.parquet``."""
        cursor = self.cursor()
        return export_parquet(cursor, os.fspath(directory), progress=progress)

    def checkpoint(self) -> None:
        """Write DuckDB's WAL into the copy's file."""
        with self._lock:
            self._check_open()
            self._con.execute("CHECKPOINT").fetchall()

    # -- life cycle ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the analytics copy of {self.where} is closed")

    def close(self) -> None:
        """Close the copy (its file keeps everything committed) and the source connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cursor in self._cursors:
                with contextlib.suppress(duckdb.Error):
                    cursor.close()
            if self._source is not None:
                with contextlib.suppress(Exception):
                    self._source.close()
            with contextlib.suppress(duckdb.Error):
                if self.target != ":memory:":
                    self._con.execute("CHECKPOINT").fetchall()
                self._con.close()

    def __enter__(self) -> AnalyticsCopy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _txid_range(start: int, end: int) -> str:
    return f"txid >= '{int(start)}'::xid8 AND txid < '{int(end)}'::xid8"


def _open_duckdb(target: str) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(target)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open the analytics copy {target}: {exc}") from None
    return con


def _claim(
    con: duckdb.DuckDBPyConnection, target: str, identity: str, where: str
) -> int:
    """Make *target* a copy of the source *identity* (or check it is); its horizon.

    Everything is checked before anything is written: a file that is not this database's
    copy is left as it was (an older copy of it is migrated like an embedded file).

    Raises:
        UsageError: *target* is another flowgen database (an embedded store's own file),
            not flowgen's at all, or a copy of another database.
    """
    try:
        mirrored = _mirrored(con)
        if mirrored is not None and mirrored != identity:
            raise UsageError(
                f"{target} is an analytics copy of another database ({mirrored}), not "
                f"of {where}; copy to a new file. Nothing was changed"
            )
        if mirrored is None and not _empty(con):
            raise UsageError(
                f"{target} is a flowgen database of its own (or not flowgen's), not a "
                f"copy of {where}: an analytics copy goes to a new file (or one it made "
                f"before); nothing was changed"
            )
        prepare_schema(con, target)
    except Exception:
        con.close()
        raise
    if mirrored is None:
        con.execute(
            "INSERT OR REPLACE INTO flowgen_meta VALUES "
            "('mirror_of', ?), ('mirror_horizon', '0')",
            [identity],
        )
        return 0
    rows = con.execute(
        "SELECT value FROM flowgen_meta WHERE key = 'mirror_horizon'"
    ).fetchall()
    return int(rows[0][0]) if rows else 0


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        str(name)
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = "
            "current_database() AND table_schema = 'main'"
        ).fetchall()
    }


def _mirrored(con: duckdb.DuckDBPyConnection) -> str | None:
    """The identity of the database the file copies, if it is a copy."""
    if "flowgen_meta" not in _tables(con):
        return None
    rows = con.execute(
        "SELECT value FROM flowgen_meta WHERE key = 'mirror_of'"
    ).fetchall()
    return str(rows[0][0]) if rows else None


def _empty(con: duckdb.DuckDBPyConnection) -> bool:
    """True for a new file (no tables at all)."""
    return not _tables(con)
