"""The backlog of a DuckDB store: journaled commits on their way into the tables.

Rules
=====

* A commit is journaled (`Backlog.add`: one fsync'd record, see `flowgen._stores.journal`)
  and acknowledged; its rows wait here, in order, until `Backlog.apply` moves every waiting
  commit into the tables in one transaction, which also records the number of the last
  record moved (``flowgen_meta.journal_applied``). Recovery at open (`Backlog.recover`)
  applies exactly the records after that number.
* Record numbers increase by one per commit over the life of the database file; each plan
  carries its own (`Plan.number`).
* **No acknowledged record may block the file.** When DuckDB refuses the transaction for
  what it holds (a data or constraint error: never for IO, memory or a lock, which pass),
  the commits are applied one by one, each in its own transaction, and the ones refused are
  moved into the quarantine (`flowgen._stores.quarantine`) and marked applied, so every
  other commit reaches the tables and later reads and opens work. Any other failure leaves
  the commits waiting (they are in the journal) and raises `StoreError`.
* One thread at a time: the store calls everything here under its write lock.
"""

from __future__ import annotations

import logging
import os
import time

import duckdb

from flowgen._stores.duckdb_records import plan_from_json, plan_to_json
from flowgen._stores.duckdb_rows import Plan, merge_plans
from flowgen._stores.duckdb_schema import database_id
from flowgen._stores.duckdb_writer import TableWriter
from flowgen._stores.journal import Journal
from flowgen._stores.quarantine import quarantine_dir, write_quarantined
from flowgen._vocabulary.errors import HistoryCorruptError, StoreError, StoreLockedError

__all__ = ["Backlog", "open_backlog"]

log = logging.getLogger("flowgen")


def _refused(exc: duckdb.Error) -> bool:
    """True if DuckDB refused rows for what they hold (so it always will)."""
    if isinstance(
        exc, (duckdb.DataError, duckdb.IntegrityError, duckdb.InvalidInputException)
    ):
        return True
    # A duplicate key may show only at COMMIT.
    return isinstance(exc, duckdb.TransactionException) and (
        "duplicate key" in str(exc).lower()
    )


class Backlog:
    """Journaled commits not yet in the tables, and the journal they are in.

    Args:
        path: The database file (for messages).
        tables: The store's table writer.
        journal: The open journal, or ``None`` for a throwaway store.
        quarantine: The quarantine directory, or ``None`` to keep refused records in
            memory only (`quarantined`).
    """

    def __init__(
        self,
        path: str,
        tables: TableWriter,
        journal: Journal | None,
        quarantine: str | None,
    ) -> None:
        self.path = path
        self.journal = journal
        self.plans: list[Plan] = []
        self.run_ids: set[str] = set()  # the run ids the waiting plans insert
        self.number = 0  # the last record journaled
        self.quarantined: list[tuple[int, str]] = []  # (record number, reason)
        self._tables = tables
        self._quarantine = quarantine
        self._rows = 0
        self._since = 0.0

    def add(self, plan: Plan) -> None:
        """Journal *plan*: durable when this returns, or `StoreError` and not journaled."""
        number = self.number + 1
        if self.journal is not None:
            self.journal.append(number, plan_to_json(plan))
        self.number = plan.number = number
        if not self.plans:
            self._since = time.monotonic()
        self.plans.append(plan)
        rows = len(plan.run_rows) + len(plan.event_rows)
        if plan.run_rows:  # most commits of a busy engine start no run
            self.run_ids.update(row[1] for row in plan.run_rows)
        for update_rows in plan.update_rows.values():
            rows += len(update_rows)
        self._rows += rows

    def due(self, rows: int, seconds: float) -> bool:
        """True once *rows* rows wait, or the oldest waiting commit is *seconds* old."""
        return self._rows >= rows or time.monotonic() - self._since >= seconds

    def apply(self) -> None:
        """Move every waiting commit into the tables (see the module's rules).

        Raises:
            StoreError: DuckDB failed for another reason than the rows; the commits
                that did not reach the tables wait, and are in the journal.
        """
        if not self.plans:
            return
        runs, events, updates = merge_plans(self.plans)
        try:
            self._tables.transaction(runs, events, updates, applied=self.number)
        except duckdb.Error as exc:
            if not _refused(exc):
                raise self._failed(exc) from None
            self._apply_one_by_one()
        self.plans = []
        self.run_ids.clear()
        self._rows = 0
        if self.journal is not None:
            self.journal.applied()

    def _apply_one_by_one(self) -> None:
        while self.plans:
            plan = self.plans[0]
            try:
                self._tables.transaction(
                    plan.run_rows,
                    plan.event_rows,
                    plan.update_rows,
                    applied=plan.number,
                )
            except duckdb.Error as exc:
                if not _refused(exc):
                    raise self._failed(exc) from None
                self._quarantine_plan(plan, str(exc))
            del self.plans[0]

    def _quarantine_plan(self, plan: Plan, reason: str) -> None:
        where = "memory"
        if self._quarantine is not None:
            try:
                where = write_quarantined(
                    self._quarantine, plan.number, plan_to_json(plan), reason
                )
            except OSError as exc:
                raise StoreError(
                    f"journal record {plan.number} is refused by DuckDB ({reason}) and "
                    f"could not be quarantined in {self._quarantine} ({exc}); it stays "
                    f"in the journal"
                ) from None
        try:  # marked applied, so that no later apply or open tries it again
            self._tables.transaction([], [], {}, applied=plan.number)
        except duckdb.Error as exc:
            raise self._failed(exc) from None
        self.quarantined.append((plan.number, reason))
        log.error(
            "flowgen: journal record %d of %s was refused by DuckDB and moved to "
            "the quarantine (%s): %s",
            plan.number,
            self.path,
            where,
            reason,
        )

    def _failed(self, exc: duckdb.Error) -> StoreError:
        where = "" if self.journal is None else f" (kept in {self.journal.path})"
        return StoreError(
            f"moving {len(self.plans)} journaled commits into {self.path} "
            f"failed{where}, they are tried again on the next read or open: {exc}"
        )

    def recover(self, applied: int, identity: str | None) -> None:
        """At open: apply the records a crash left in the journal, exactly once.

        Args:
            applied: The number of the last record already in the tables.
            identity: The database's identity, which the journal must name.

        Raises:
            StoreError: The journal is another database's (nothing was changed).
            HistoryCorruptError: A record cannot be read; nothing was changed.
            StoreError: As `apply`.
        """
        assert self.journal is not None
        records = self.journal.recover(identity)
        self.number = max([applied, *(number for number, _ in records)])
        for number, body in records:
            if number <= applied:
                continue
            try:
                plan = plan_from_json(body)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                self.plans.clear()
                raise HistoryCorruptError(
                    f"the journal {self.journal.path} has record {number} that cannot "
                    f"be read ({exc!r}); the database and the journal were left as they are"
                ) from None
            plan.number = number
            self.plans.append(plan)
        if self.plans:
            self.apply()
        else:
            self.journal.applied()


def open_backlog(
    path: str, writer: duckdb.DuckDBPyConnection, tables: TableWriter, *, keep: bool
) -> Backlog:
    """Open the journal of the database *path*, and apply what a crash left in it.

    The journal is found by the file's real path (a symlink's target), and must be this
    database's (its identity record, see `flowgen._stores.journal`): both are checked
    before anything is written. Where the journal is is kept in ``flowgen_meta``
    (``journal_path``): a file opened through another name (a hard link, which no real
    path resolves) while its journal elsewhere still holds records is refused, or those
    acknowledged records would be skipped forever once this name's journal passed them. A file made before databases had an identity gets one.
    Without *keep*, the journal is removed once applied (the store commits directly).
    """
    real = os.path.realpath(path)
    found = _journal_elsewhere(path, real + ".journal", writer)
    journal = Journal(real + ".journal")
    try:
        backlog = Backlog(path, tables, journal, quarantine_dir(real))
        identity = database_id(writer, assign=False)
        rows = writer.execute(
            "SELECT value FROM flowgen_meta WHERE key = 'journal_applied'"
        ).fetchall()
        backlog.recover(int(rows[0][0]) if rows else 0, identity)
        if identity is None:  # a file made before databases had an identity
            identity = database_id(writer, assign=True)
        if found != journal.path:
            writer.execute(
                "INSERT OR REPLACE INTO flowgen_meta VALUES ('journal_path', ?)",
                [journal.path],
            )
            # Into the file itself, not only DuckDB's WAL: a file renamed after a crash
            # (its WAL left behind too) must still say where its journal is.
            writer.execute("CHECKPOINT")
    except BaseException:
        journal.close(remove=False)
        raise
    journal.identity = identity
    if not keep:
        journal.close(remove=True)  # empty now: every record is applied
        backlog.journal = None
    return backlog


def _journal_elsewhere(
    path: str, journal: str, writer: duckdb.DuckDBPyConnection
) -> str | None:
    """The journal path ``flowgen_meta`` records; refuse one elsewhere that holds records.

    Raises:
        StoreLockedError: The database's journal is another file that is not empty.
    """
    rows = writer.execute(
        "SELECT value FROM flowgen_meta WHERE key = 'journal_path'"
    ).fetchall()
    recorded = str(rows[0][0]) if rows else None
    if recorded is None or recorded == journal:
        return recorded
    # Only another name of this very file (a hard link) shares its commits; a copy is
    # another file, and the recorded journal is not its business.
    try:
        size = os.path.getsize(recorded)
    except OSError:
        return recorded  # gone (the files were moved): this name's journal takes over
    try:
        same_file = os.path.samefile(recorded.removesuffix(".journal"), path)
    except OSError:  # that name is gone: this file was renamed, its journal left behind
        if size == 0:
            return recorded
        raise StoreError(
            f"cannot open {path}: it was renamed or moved from "
            f"{recorded.removesuffix('.journal')} without its journal {recorded}, which "
            f"may hold acknowledged commits not yet in the database. Move that journal "
            f"to {journal} and open it again. Nothing was changed"
        ) from None
    if not same_file or size == 0:
        return recorded
    raise StoreLockedError(
        f"cannot open {path}: this database's journal is {recorded}, and it holds "
        f"commits not yet in the database (a crash left them). It was last opened "
        f"as {recorded.removesuffix('.journal')}, another name of the same file (a "
        f"hard link); open it by that name once, to apply them. Nothing was changed"
    )
