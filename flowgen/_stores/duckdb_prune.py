"""Pruning a DuckDB store: choose, export and delete old closed runs (rules: retention).

Rules
=====

* Everything here runs on the store's writer cursor under its write lock, after the
  journal has been moved into the tables (`DuckDBStore` does both): no commit can land
  between choosing the runs and deleting them.
* A chunk's runs are named in a temporary table (``flowgen_prune``), so the export and the
  deletes join against it instead of splicing ids into SQL.
* A run's rows are deleted from every table that holds rows of runs (`RUN_TABLES`: its
  events, its row, and its calls in ``activity_calls`` and ``activity_calls_open``), in one
  transaction: a run is gone with everything about it, or not at all. `delete_named_runs`
  is that rule, also used by the analytics copy of a PostgreSQL store to follow its prunes
  (`flowgen._stores.duckdb_mirror`).
* The space: DuckDB marks deleted rows, and a CHECKPOINT (`reclaim`) rewrites the row
  groups they leave sparse and puts freed blocks on the file's free list, which new rows
  reuse; the file does not shrink (measured in docs/operations.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import duckdb

from flowgen._stores.protocol import CLOSED_STATUSES
from flowgen._vocabulary.errors import StoreError

__all__ = ["RUN_TABLES", "delete_named_runs", "delete_runs", "export_runs", "prunable"]

RUN_TABLES: Final = ("events", "workflows", "activity_calls", "activity_calls_open")
"""The tables of the DuckDB schema that hold rows of runs (a ``run_id`` column)."""

_CLOSED: Final = ", ".join(f"'{status}'" for status in sorted(CLOSED_STATUSES))

_PRUNABLE: Final = f"""SELECT w.run_id FROM workflows w
WHERE w.status IN ({_CLOSED}) AND w.closed_at < ?
  AND NOT EXISTS (
    SELECT 1 FROM workflows p WHERE p.workflow_id = w.parent_id AND p.status = 'running'
  )
ORDER BY w.closed_at, w.run_id
LIMIT ?"""


def prunable(
    cursor: duckdb.DuckDBPyConnection, closed_before: datetime, limit: int
) -> list[str]:
    """Up to *limit* run ids to prune, those that closed first first (see `Prunes`)."""
    rows = cursor.execute(_PRUNABLE, [closed_before, limit]).fetchall()
    return [run_id for (run_id,) in rows]


def _name_runs(cursor: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> None:
    cursor.execute(
        "CREATE OR REPLACE TEMPORARY TABLE flowgen_prune AS "
        "SELECT unnest(?::VARCHAR[]) AS run_id",
        [list(run_ids)],
    )


def export_runs(
    cursor: duckdb.DuckDBPyConnection,
    run_ids: Sequence[str],
    directory: str,
    stem: str,
) -> list[str]:
    """Write the rows of *run_ids* to ``<directory>/{workflows,events}-<stem>.parquet``.

    Raises:
        StoreError: DuckDB could not write them (e.g. the directory is not writable).
    """
    written = []
    try:
        os.makedirs(directory, exist_ok=True)
        _name_runs(cursor, run_ids)
        for table in ("workflows", "events"):
            path = os.path.join(directory, f"{table}-{stem}.parquet")
            quoted = path.replace("'", "''")
            order = "run_id, event_id" if table == "events" else "closed_at, run_id"
            cursor.execute(
                f"COPY (SELECT t.* FROM {table} t SEMI JOIN flowgen_prune USING (run_id) "
                f"ORDER BY {order}) TO '{quoted}' (FORMAT parquet)"
            ).fetchall()
            written.append(path)
    except (OSError, duckdb.Error) as exc:
        raise StoreError(f"exporting runs to {directory} failed: {exc}") from None
    return written


def delete_runs(cursor: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> int:
    """Delete the rows of *run_ids* (every `RUN_TABLES` table) in one transaction.

    Returns:
        How many events were deleted.

    Raises:
        StoreError: DuckDB refused; nothing was deleted.
    """
    try:
        _name_runs(cursor, run_ids)
        cursor.execute("BEGIN TRANSACTION")
        events = delete_named_runs(cursor, "flowgen_prune")
        cursor.execute("COMMIT")
    except duckdb.Error as exc:
        try:
            cursor.execute("ROLLBACK")
        except duckdb.Error:
            pass  # no transaction was open
        raise StoreError(f"deleting runs failed, nothing was deleted: {exc}") from None
    return events


def delete_named_runs(cursor: duckdb.DuckDBPyConnection, names: str) -> int:
    """Delete the rows of the runs named in table *names* from every `RUN_TABLES` table.

    Runs in the caller's transaction. *names* is a table (or a registered Arrow table) with
    a ``run_id`` column. Returns how many events were deleted.
    """
    deleted = 0
    for table in RUN_TABLES:
        row = cursor.execute(
            f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM {names})"
        ).fetchone()
        if table == "events":
            deleted = int(row[0]) if row else 0
    return deleted
