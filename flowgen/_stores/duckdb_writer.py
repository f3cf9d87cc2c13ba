"""Writing a DuckDB store's tables: one transaction of rows, through DuckDB's appender.

Rules
=====

* `TableWriter.transaction` writes a transaction's rows with one appender per table (and
  per shape of row change), made once and reused for the writer cursor's life: making an
  appender costs as much as a small flush. Measured against the alternatives at its body.
* A transaction is all or nothing: on any DuckDB error it is rolled back, and the
  appenders are dropped (a failed one may still hold rows that must never be flushed later).
* The number of the last journal record the rows come from is written in the same
  transaction (``flowgen_meta.journal_applied``), so recovery applies each record once.
* Validating a batch reads the tables on the same cursor (`stored_run_ids`,
  `next_event_ids`), so that it sees what the transactions wrote.
* The calls the events open and end are folded into ``activity_calls`` in the same
  transaction (`flowgen._stores.duckdb_calls`).
* One thread at a time: the store calls it under its write lock.
"""

from __future__ import annotations

from typing import Any

import duckdb

from flowgen._stores.duckdb_calls import CallFolder
from flowgen._vocabulary.errors import StoreError

__all__ = ["TableWriter"]

_PUT_APPLIED = "INSERT OR REPLACE INTO flowgen_meta VALUES ('journal_applied', ?)"
_SET_APPLIED = "UPDATE flowgen_meta SET value = ? WHERE key = 'journal_applied'"


class TableWriter:
    """The writer cursor of a store, and the appenders it reuses.

    Args:
        cursor: The store's writer cursor (used by no one else while a transaction runs).
        path: The database file (for messages).
    """

    def __init__(self, cursor: duckdb.DuckDBPyConnection, path: str) -> None:
        self.cursor = cursor
        self.path = path
        self._appenders: dict[tuple[str, ...], duckdb.Appender] = {}
        self._calls = CallFolder(cursor)
        # True once a transaction of this writer committed the journal_applied row
        # (nothing deletes it afterwards).
        self._applied_row = False

    def clear(self) -> None:
        """Drop the appenders (at close, or after a failed transaction).

        Rows a failed appender still holds are discarded first: they must never be
        flushed later (and DuckDB warns of an appender dropped with rows in it).
        """
        for appender in self._appenders.values():
            try:
                appender.clear()
            except duckdb.Error:  # pragma: no cover - nothing left to discard
                pass
        self._appenders.clear()
        self._calls.clear()

    def transaction(
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
        cursor = self.cursor
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
                self._calls.fold(event_rows)
            for columns, rows in update_rows.items():
                self._flush(("update", *columns), rows)
            if applied is not None:
                # An UPDATE costs half an INSERT OR REPLACE (~0.5 of 1 ms per apply),
                # once the row is known to be there: a commit of this writer put it.
                cursor.execute(
                    _SET_APPLIED if self._applied_row else _PUT_APPLIED, [str(applied)]
                )
            cursor.execute("COMMIT")
        except duckdb.Error:
            self._rollback_quietly()
            self.clear()
            self._calls.rolled_back()
            raise
        self._calls.committed()
        self._applied_row = self._applied_row or applied is not None

    def _flush(self, key: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Write *rows* with the writer's appender for *key*, made once and reused.

        ``("insert", table)`` appends rows; ``("update", *columns)`` sets *columns* of the
        ``workflows`` rows whose run_id is each row's first value. Making an appender costs
        0.3-0.5 ms, as much as a small flush, so they live as long as the writer cursor.
        """
        appender = self._appenders.get(key)
        if appender is None:
            if key[0] == "insert":
                appender = self.cursor.appender(key[1])
            else:
                appender = self.cursor.appender(
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
            self.cursor.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a failed COMMIT has already ended the transaction

    def stored_run_ids(self, run_ids: list[str]) -> list[str]:
        """Those of *run_ids* that have a row in the table."""
        if not run_ids:
            return []
        try:
            rows = self.cursor.execute(
                "SELECT run_id FROM workflows WHERE run_id IN (SELECT unnest(?))",
                [run_ids],
            ).fetchall()
        except duckdb.Error as exc:
            raise StoreError(f"reading {self.path} failed: {exc}") from None
        return [run_id for (run_id,) in rows]

    def next_event_ids(self, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        """(workflow_id, next event id) of the stored runs among *run_ids*, in one query."""
        try:
            rows = self.cursor.execute(
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

    def workflow_ids(self) -> set[str]:
        """Every workflow id the ``workflows`` table holds."""
        rows = self.cursor.execute(
            "SELECT DISTINCT workflow_id FROM workflows"
        ).fetchall()
        return {workflow_id for (workflow_id,) in rows}
