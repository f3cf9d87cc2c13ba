"""Pruning a PostgreSQL store: choose, export and delete old closed runs (rules: retention).

Rules
=====

* Deletes run on the store's writer connection under its write lock, one transaction per
  chunk of runs (`flowgen._runtime.retention` makes the chunks), so a prune never holds
  locks on many rows for long, and another engine's commits go on between chunks.
* The export reads the chunk's rows with ``COPY ... TO STDOUT`` (CSV, in bulk) into a
  temporary file, and DuckDB turns that into Parquet with the columns and types of the
  DuckDB store's tables, so an archive reads the same whichever store wrote it. The
  PostgreSQL-only columns (``row_order``, the lease columns, ``txid``) are left out.
* The transaction that deletes a chunk's runs also names them in ``pruned_runs`` (schema
  version 3), stamped with its ``txid`` like every row it writes: what an analytics copy
  reads to delete them in turn (`flowgen._stores.duckdb_mirror`).
* The space of deleted rows becomes reusable after a ``VACUUM``; `vacuum` runs a plain one
  (it takes no lock that blocks readers or writers) on both tables. It never runs
  ``VACUUM FULL``, which would shrink the files but lock the tables while it rewrites
  them: that is for the operator to schedule (docs/operations.md).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import duckdb
import psycopg

from flowgen._stores.protocol import CLOSED_STATUSES
from flowgen._vocabulary.errors import StoreError

__all__ = ["delete_runs", "export_runs", "prunable", "vacuum"]

_Connection = psycopg.Connection[tuple[Any, ...]]

_CLOSED: Final = sorted(str(status) for status in CLOSED_STATUSES)

_PRUNABLE: Final = """SELECT w.run_id FROM workflows w
WHERE w.status = ANY(%s::text[]) AND w.closed_at < %s
  AND NOT EXISTS (
    SELECT 1 FROM workflows p WHERE p.workflow_id = w.parent_id AND p.status = 'running'
  )
ORDER BY w.closed_at, w.run_id
LIMIT %s"""

# The columns of each table's export, typed as the DuckDB store's tables type them, and
# the order its rows are written in.
_EXPORTS: Final = {
    "workflows": (
        {
            "workflow_id": "VARCHAR",
            "run_id": "VARCHAR",
            "name": "VARCHAR",
            "status": "VARCHAR",
            "args": "JSON",
            "kwargs": "JSON",
            "result": "JSON",
            "error": "JSON",
            "tags": "JSON",
            "parent_id": "VARCHAR",
            "started_at": "TIMESTAMPTZ",
            "closed_at": "TIMESTAMPTZ",
        },
        "closed_at, run_id",
    ),
    "events": (
        {
            "workflow_id": "VARCHAR",
            "run_id": "VARCHAR",
            "event_id": "INTEGER",
            "seq": "INTEGER",
            "kind": "VARCHAR",
            "name": "VARCHAR",
            "payload": "JSON",
            "attempt": "INTEGER",
            "recorded_at": "TIMESTAMPTZ",
        },
        "run_id, event_id",
    ),
}


# A run id is pruned once; should one come back (a run restored from an archive, pruned
# again), the later prune is the one a copy must follow.
_DELETE_RUNS: Final = """WITH gone AS (
    DELETE FROM workflows WHERE run_id = ANY(%s::text[]) RETURNING run_id
)
INSERT INTO pruned_runs (run_id) SELECT run_id FROM gone
ON CONFLICT (run_id) DO UPDATE SET pruned_at = excluded.pruned_at, txid = excluded.txid"""


def _from_postgres(column: str, kind: str) -> str:
    """How COPY reads *column*: JSON as its text, times as exact epoch microseconds."""
    if kind == "JSON":
        return f"{column}::text"
    if kind == "TIMESTAMPTZ":
        return f"(extract(epoch FROM {column}) * 1000000)::bigint"
    return column


def _in_csv(kind: str) -> str:
    return {"JSON": "VARCHAR", "TIMESTAMPTZ": "BIGINT"}.get(kind, kind)


def _to_duckdb(column: str, kind: str) -> str:
    if kind == "TIMESTAMPTZ":
        return f"make_timestamp({column})::TIMESTAMPTZ AS {column}"
    return f"{column}::{kind} AS {column}"


def prunable(con: _Connection, closed_before: datetime, limit: int) -> list[str]:
    """Up to *limit* run ids to prune, those that closed first first (see `Prunes`)."""
    rows = con.execute(_PRUNABLE, [_CLOSED, closed_before, limit]).fetchall()
    return [run_id for (run_id,) in rows]


def export_runs(
    con: _Connection, run_ids: Sequence[str], directory: str, stem: str
) -> list[str]:
    """Write the rows of *run_ids* to ``<directory>/{workflows,events}-<stem>.parquet``.

    Raises:
        StoreError: Reading or writing failed.
    """
    written = []
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            local = duckdb.connect()
            try:
                local.execute("SET TimeZone = 'UTC'")
                for table, (types, order) in _EXPORTS.items():
                    columns = ", ".join(_from_postgres(c, k) for c, k in types.items())
                    csv_types = {c: _in_csv(k) for c, k in types.items()}
                    csv = os.path.join(scratch, f"{table}.csv")
                    with (
                        open(csv, "wb") as out,
                        con.cursor().copy(
                            f"COPY (SELECT {columns} FROM {table} "
                            f"WHERE run_id = ANY(%s::text[]) ORDER BY {order}) "
                            f"TO STDOUT (FORMAT csv, HEADER true)",
                            [list(run_ids)],
                        ) as copy,
                    ):
                        for block in copy:
                            out.write(block)
                    path = os.path.join(directory, f"{table}-{stem}.parquet")
                    select = ", ".join(_to_duckdb(c, k) for c, k in types.items())
                    local.execute(
                        f"COPY (SELECT {select} FROM read_csv(?, header = true, "
                        f"columns = {csv_types!r})) TO '{_quoted(path)}' (FORMAT parquet)",
                        [csv],
                    ).fetchall()
                    written.append(path)
            finally:
                local.close()
    except (OSError, psycopg.Error, duckdb.Error) as exc:
        raise StoreError(f"exporting runs to {directory} failed: {exc}") from None
    return written


def _quoted(path: str) -> str:
    return path.replace("'", "''")


def delete_runs(con: _Connection, run_ids: Sequence[str]) -> int:
    """Delete the rows of *run_ids* from both tables in one transaction; the events deleted.

    The same transaction records the runs it deleted in ``pruned_runs``.

    Raises:
        StoreError: PostgreSQL refused; nothing was deleted.
    """
    try:
        with con.transaction():
            cursor = con.execute(
                "DELETE FROM events WHERE run_id = ANY(%s::text[])", [list(run_ids)]
            )
            events = cursor.rowcount
            con.execute(_DELETE_RUNS, [list(run_ids)])
    except psycopg.Error as exc:
        raise StoreError(f"deleting runs failed, nothing was deleted: {exc}") from None
    return events


def vacuum(con: _Connection) -> None:
    """A plain ``VACUUM`` of both tables: their dead rows' space becomes reusable.

    Raises:
        StoreError: PostgreSQL refused.
    """
    try:
        con.execute("VACUUM workflows, events")
    except psycopg.Error as exc:
        raise StoreError(f"VACUUM failed: {exc}") from None
