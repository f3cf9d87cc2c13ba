"""`DuckDBStore`: the `Store` in a DuckDB file.

The store's jobs each have a module of their own, with the rules they keep:
`flowgen._stores.duckdb_schema` (every table and view, and the checks that open a file),
`flowgen._stores.duckdb_open` (opening, and why a file cannot be opened),
`flowgen._stores.duckdb_plan` (validating a batch), `flowgen._stores.duckdb_rows` (rows),
`flowgen._stores.duckdb_records` (a journal record's body), `flowgen._stores.duckdb_writer`
(a transaction of rows). Only these modules import duckdb. This one holds them together.

Theory of operation
===================

**Writes** go through `DuckDBStore.commit`, one `Batch` (many runs' events and row changes) at
a time, under one lock. A batch is validated in Python first (`plan_batch`) against a per-run
cache of the next event id, so a bad batch is refused before anything is written.

By default a validated batch becomes one record of the journal (`flowgen._stores.journal`): durable
when `commit` returns, at ~0.15 ms of CPU where a DuckDB transaction costs ~2-3 ms. The
journaled batches move into the tables together, in one transaction (`_apply_pending`), when
they are many or old, before any read through this store, when the engine idles, and at
close; the number of the last record moved is written in that same transaction, so recovery
at open applies each record exactly once. With ``journal=False`` each batch is its own
transaction. Either way rows go in with DuckDB's appender (see `TableWriter`).

**Reads** run on a cursor owned by the calling thread (`threading.local`): DuckDB cursors are
not thread-safe, and in duckdb 2.0 a new ``execute()`` silently ends an unfinished result on
the same cursor, so every read fetches everything it executes.

**Opening** never modifies a file that turns out not to be a flowgen database: the checks
(SQLite header, DuckDB's own refusal, the lock held by another process, a missing or newer
``flowgen_meta``) all happen before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import duckdb

from flowgen._stores import duckdb_prune
from flowgen._stores.duckdb_backlog import Backlog, open_backlog
from flowgen._stores.duckdb_open import check_path, claim, connect
from flowgen._stores.duckdb_plan import Lookups, plan_batch
from flowgen._stores.duckdb_result import SQLResult
from flowgen._stores.duckdb_rows import (
    RUN_COLUMNS,
    STARTED_US,
    Plan,
    decode_histories,
    decode_history,
    record,
    runs_query,
)
from flowgen._stores.duckdb_schema import (
    SCHEMA_VERSION,
    TABLES,
    VIEWS,
    export_parquet,
    prepare_schema,
    widen_status_check,
)
from flowgen._stores.duckdb_writer import TableWriter
from flowgen._stores.journal import Journal
from flowgen._stores.parked import DUCKDB_PARKED_RUNS, ParkedRun
from flowgen._stores.protocol import (
    Batch,
    ScheduleRecord,
    WorkflowRecord,
)
from flowgen._stores.quarantine import quarantine_or_raise, quarantine_running
from flowgen._stores.schedule_rows import (
    schedule_from_row,
    statements,
)
from flowgen._vocabulary.errors import (
    HistoryCorruptError,
    NotAFlowgenDatabase,
    StoreError,
)
from flowgen._vocabulary.events import (
    TERMINAL_EVENTS,
    Event,
    JsonValue,
)

__all__ = ["SCHEMA_VERSION", "TABLES", "VIEWS", "DuckDBStore"]

log = logging.getLogger("flowgen")

_SCHEDULES = statements("?", lambda column: f"epoch_us({column})", str)


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

    apply_rows: int = 5000
    """Journaled rows that make the next commit move them all into DuckDB.

    A move costs ~5 ms of CPU whatever it holds (its COMMIT, the bookkeeping rows) and
    ~5 us per row: 5,000 rows keep that fixed part near a tenth, where 2,000 made it a
    quarter (a chatty workflow's step, measured: 26 -> 18 us of CPU for its rows). A read
    waits for the rows still journaled: up to ~50 ms after a burst."""
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
        check_path(self.path)
        self._closed = False
        self._claim = claim(self.path)  # before DuckDB opens it: see duckdb_open
        try:
            self._con = self._open_database()
        except BaseException:
            if self._claim is not None:
                self._claim.release()
            raise
        if threads is not None:
            self._con.execute(f"SET threads = {int(threads)}")
        # Re-entrant: a read made while writing (e.g. validating a batch) applies the
        # journal under the same lock.
        self._write_lock = threading.RLock()
        self._writer = self._con.cursor()
        self._tables = TableWriter(self._writer, self.path)
        self._local = threading.local()
        self._cursors: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()
        self._cursors_lock = threading.Lock()
        # run_id -> (workflow_id, next event id), for running runs this store has written or
        # loaded: the cheap first check of a batch's numbering (the primary key backs it up).
        self._next: dict[str, tuple[str, int]] = {}
        self._next_lock = threading.Lock()
        # What validating a batch looks up (made once: it is asked at every commit).
        self._lookups = Lookups(
            cached=self._cached, taken=self._taken, stored=self._stored
        )
        self._journaled = journal
        self._backlog = Backlog(self.path, self._tables, None, None)
        if self.path != ":memory:":
            try:
                self._backlog = open_backlog(
                    self.path, self._writer, self._tables, keep=journal
                )
                # After the journal's checks (a foreign journal leaves the file as it is).
                widen_status_check(self._writer)
                self._tables.clear()  # appenders of a rebuilt table must not be reused
            except BaseException:
                self._writer.close()
                self._con.close()
                if self._claim is not None:
                    self._claim.release()
                raise
        # Every workflow id in the tables or the journal (all applied by now), so that a
        # start with id= learns its id is new without a read, which would first move the
        # journal into the tables: a DuckDB transaction (11 CPU ms per id'd start, where an
        # anonymous one costs 2). Only a journaled store keeps it: it is then the file's one
        # writer (the journal's lock; DuckDB's across processes), while with journal=False
        # another store of this process may write the file. Added to under _write_lock
        # once a commit holding the id returns; read without a lock (a set's `in` is
        # atomic; a start racing a commit of its id is decided by the decision loop).
        self._ids = self._tables.workflow_ids() if journal else None

    def _open_database(self) -> duckdb.DuckDBPyConnection:
        """Connect, and create or check the schema (see duckdb_open and duckdb_schema)."""
        existed = self.path != ":memory:" and os.path.exists(self.path)
        con = connect(self.path)
        try:
            prepare_schema(con, self.path)
            if self._claim is not None:
                self._claim.settle()
        except duckdb.Error as exc:
            # DuckDB reads some of a file only when asked (e.g. a corrupt catalog block).
            con.close()
            if existed:
                raise NotAFlowgenDatabase(
                    f"{self.path} is not a flowgen database: DuckDB cannot read it "
                    f"({exc})"
                ) from None
            raise StoreError(f"cannot create a store in {self.path}: {exc}") from None
        except BaseException:
            con.close()
            raise
        return con

    @property
    def _pending(self) -> list[Plan]:
        # Journaled commits not yet in the tables, in order (guarded by _write_lock).
        return self._backlog.plans

    @property
    def _journal(self) -> Journal | None:
        return self._backlog.journal

    @property
    def quarantined(self) -> list[tuple[int, str]]:
        """Journal records DuckDB refused since this store opened: (number, reason).

        They were acknowledged, so they are kept, in ``<path>.quarantine/`` (see
        `flowgen._stores.quarantine`), out of the way of every other commit.
        """
        return list(self._backlog.quarantined)

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

    def sql(self, query: str, params: object = None) -> SQLResult:
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
            A ``duckdb.DuckDBPyRelation`` that also has DB-API ``fetchone()`` and
            ``fetchmany()`` (`SQLResult`).
        """
        self._check_open()
        self.flush()
        cursor = getattr(self._local, "user", None)
        if cursor is None:
            cursor = self._local.user = self._new_cursor()
        return SQLResult(cursor.sql(query, params=params))

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
        cursor = self._new_cursor()
        try:
            return export_parquet(cursor, os.fspath(directory), progress=progress)
        finally:
            cursor.close()

    # -- pruning (rules: flowgen._runtime.retention and flowgen._stores.duckdb_prune) ------

    def prunable(self, closed_before: datetime, limit: int) -> list[str]:
        """See `Prunes.prunable`."""
        with self._write_lock:
            self._check_open()
            self._apply_pending()
            return duckdb_prune.prunable(self._writer, closed_before, limit)

    def check_export(self) -> None:
        """A DuckDB store exports runs (see `Prunes.check_export`)."""

    def export_runs(
        self, run_ids: Sequence[str], directory: str, stem: str
    ) -> list[str]:
        """See `Prunes.export_runs`."""
        with self._write_lock:
            self._check_open()
            self._apply_pending()
            return duckdb_prune.export_runs(self._writer, run_ids, directory, stem)

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """See `Prunes.delete_runs`; the journal is moved into the tables first."""
        with self._write_lock:
            self._check_open()
            self._apply_pending()
            deleted = duckdb_prune.delete_runs(self._writer, run_ids)
        with self._next_lock:
            for run_id in run_ids:
                self._next.pop(run_id, None)
        return deleted

    def reclaim(self) -> None:
        """See `Prunes.reclaim`: a CHECKPOINT, so new rows reuse the freed blocks."""
        self.checkpoint()

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
            self._tables.clear()
            with self._cursors_lock:
                cursors = list(self._cursors)
            for cursor in (*cursors, self._writer):
                cursor.close()
            self._con.close()
            if self._claim is not None:
                self._claim.release()

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

    # -- schedules (not journaled: a row per firing, read without flushing the journal) ---

    def save_schedule(
        self, schedule: ScheduleRecord, *, expected_revision: int | None
    ) -> bool:
        """See `KeepsSchedules.save_schedule`."""
        query, params = _SCHEDULES.save(schedule, expected_revision)
        return self._change_schedules(query, params) == 1

    def load_schedules(self, schedule_id: str | None = None) -> list[ScheduleRecord]:
        """See `KeepsSchedules.load_schedules`."""
        self._check_open()
        query = _SCHEDULES.select + (
            " WHERE schedule_id = ?" if schedule_id is not None else ""
        )
        params = [schedule_id] if schedule_id is not None else []
        try:
            rows = self._reader().execute(query + " ORDER BY schedule_id", params)
            return [schedule_from_row(row) for row in rows.fetchall()]
        except duckdb.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None

    def lock_firing(self, schedule_id: str) -> bool:
        """See `KeepsSchedules.lock_firing`: one process owns this store, so always."""
        return True

    def unlock_firing(self, schedule_id: str) -> None:
        """See `KeepsSchedules.unlock_firing`."""

    def delete_schedule(self, schedule_id: str) -> bool:
        """See `KeepsSchedules.delete_schedule`."""
        return self._change_schedules(_SCHEDULES.delete, [schedule_id]) == 1

    def _change_schedules(self, query: str, params: list[Any]) -> int:
        with self._write_lock:
            self._check_open()
            try:
                (changed,) = self._reader().execute(query, params).fetchone() or (0,)
            except duckdb.Error as exc:
                raise StoreError(
                    f"writing a schedule to {self.path} failed: {exc}"
                ) from None
        return int(changed)

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
            if self._ids is not None and plan.run_rows:
                self._ids.update(row[0] for row in plan.run_rows)

    def _journal_plan(self, plan: Plan) -> None:
        """Journal *plan* (durable on return), then apply the backlog if it is due."""
        self._backlog.add(plan)
        if self._backlog.due(self.apply_rows, self.apply_seconds):
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
        """Write every journaled plan into the tables (under the lock)."""
        self._backlog.apply()

    def _transaction(
        self,
        run_rows: list[tuple[Any, ...]],
        event_rows: list[tuple[Any, ...]],
        update_rows: dict[tuple[str, ...], list[tuple[Any, ...]]],
        *,
        applied: int | None,
    ) -> None:
        self._tables.transaction(run_rows, event_rows, update_rows, applied=applied)

    def _plan(self, batch: Batch) -> Plan:
        """Validate *batch* against the stored histories; turn it into rows."""
        return plan_batch(batch, self._lookups)

    def _cached(self, run_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        with self._next_lock:
            return {
                run_id: self._next[run_id] for run_id in run_ids if run_id in self._next
            }

    def _taken(self, run_ids: list[str], fresh: bool) -> list[str]:
        if not self._journaled:
            return []  # the table's primary key refuses a used run id at commit
        # A journaled batch reaches the tables (and their primary key) only later, so a run
        # id already used by a run that left the cache (closed) is looked for here: among
        # the journaled runs, then in the table (one query, skipped when the writer vouches
        # for its ids: Batch.fresh_run_ids).
        taken = [run_id for run_id in run_ids if run_id in self._backlog.run_ids]
        if not fresh:
            taken += self._tables.stored_run_ids([r for r in run_ids if r not in taken])
        return taken

    def _stored(self, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        self._apply_pending()  # the lookup reads the tables
        return self._tables.next_event_ids(run_ids)

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
                cannot be decoded (the message names the run and the event id). A running
                run is quarantined first (see `load_histories`).
        """
        # Filter on run_id alone, so the index serves it (see duckdb_schema).
        rows = self._read(
            "SELECT workflow_id, event_id, payload FROM events "
            "WHERE run_id = ? ORDER BY event_id",
            [run_id],
        )
        try:
            return self._decode_history(
                workflow_id,
                run_id,
                [
                    (event_id, payload)
                    for wf, event_id, payload in rows
                    if wf == workflow_id
                ],
            )
        except HistoryCorruptError as exc:
            self._quarantine_runs({(workflow_id, run_id): str(exc)})
            raise

    def load_histories(
        self, runs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Event]]:
        """Several runs' histories, keyed by ``(workflow_id, run_id)``, in one query.

        A running run whose history cannot be decoded (an event kind this flowgen does
        not know, a damaged row) is quarantined: its status becomes ``corrupt``, with the
        reason in ``error``, and it is left out of the result, so that one bad history
        does not stop recovery from serving every other run.

        Raises:
            HistoryCorruptError: As `load_history`, for the first bad history of a run
                that is not running.
        """
        keys = list(dict.fromkeys(runs))
        if not keys:
            return {}
        rows = self._read(
            "SELECT workflow_id, run_id, event_id, payload FROM events "
            "WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id, event_id",
            [[run_id for _, run_id in keys]],
        )
        histories, bad = decode_histories(keys, rows, self._decode_history)
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
                    "WHERE run_id IN (SELECT unnest(?)) AND status = 'running'",
                    [run_ids],
                )
            ]

        return quarantine_running(reasons, running_of, self.commit)

    def _decode_history(
        self, workflow_id: str, run_id: str, rows: Sequence[tuple[int, str]]
    ) -> list[Event]:
        events = decode_history(workflow_id, run_id, rows)
        # Remember where a running history continues; a closed one gets no more events.
        if events and not isinstance(events[-1], TERMINAL_EVENTS):
            self._remember(run_id, workflow_id, len(events))
        return events

    def get_run(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowRecord | None:
        """A run by id; without *run_id*, the latest run of *workflow_id* (or ``None``)."""
        if self._ids is not None and workflow_id not in self._ids:
            self._check_open()
            return None  # never stored nor journaled: no read (see _ids)
        # Bare equality filters, so the indexes serve them (see duckdb_schema); the rest is
        # done here.
        if run_id is None:
            rows = self._read(
                f"SELECT {RUN_COLUMNS}, rowid FROM workflows WHERE workflow_id = ?",
                [workflow_id],
            )
            if not rows:
                return None
            # Ties in started_at (a continue-as-new under a manual clock) go to the row
            # inserted last: rows are only appended and updated in place, never moved.
            latest = max(rows, key=lambda row: (row[STARTED_US], row[-1]))
            return record(latest[:-1])
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM workflows WHERE run_id = ?", [run_id]
        )
        return record(rows[0]) if rows and rows[0][0] == workflow_id else None

    def latest_runs(self, workflow_ids: Sequence[str]) -> dict[str, WorkflowRecord]:
        """The latest run of each of *workflow_ids* that has one, in one query.

        "Latest" as in `get_run`: the newest ``started_at``, ties to the row inserted last.
        The engine reads the ids of a batch of starts this way (~1 ms for the lot, where
        `get_run` costs ~1 ms each).
        """
        ids = list(dict.fromkeys(workflow_ids))
        if self._ids is not None:
            ids = [workflow_id for workflow_id in ids if workflow_id in self._ids]
        if not ids:
            self._check_open()
            return {}
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM workflows "
            "WHERE workflow_id IN (SELECT unnest(?)) ORDER BY started_at, rowid",
            [ids],
        )
        return {row[0]: record(row) for row in rows}  # later rows win

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
        query, params = runs_query(status=status, name=name, tags=tags, limit=limit)
        return [record(row) for row in self._read(query, params)]

    def parked_runs(self) -> dict[tuple[str, str], ParkedRun]:
        """Every running run that is parked (see `flowgen._stores.parked`), by key.

        Answered by SQL over the tables: nothing of these runs' histories is decoded.
        """
        return {
            (workflow_id, run_id): ParkedRun(
                events=events,
                signals=signals,
                cancel_requested=bool(cancel_requested),
                trace_context=json.loads(context) if context else None,
            )
            for workflow_id, run_id, events, signals, cancel_requested, context in (
                self._read(DUCKDB_PARKED_RUNS)
            )
        }

    def unfinished(self) -> list[WorkflowRecord]:
        """Every run whose status is ``running``, oldest first (what recovery resumes)."""
        rows = self._read(
            f"SELECT {RUN_COLUMNS} FROM workflows WHERE status = 'running' "
            "ORDER BY started_at, rowid"
        )
        return [record(row) for row in rows]


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
