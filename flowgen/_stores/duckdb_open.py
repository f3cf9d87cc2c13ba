"""Opening a DuckDB file for a store, and explaining why it cannot be opened.

Rules
=====

* Opening never modifies a file that turns out not to be a flowgen database: a SQLite file is
  refused before DuckDB sees it (DuckDB would download its sqlite extension to attach it),
  and a file DuckDB cannot read is reported as not a flowgen database.
* Every refusal says what holds the file and what to do instead: DuckDB's own lock messages
  (another process has the file) are turned into `StoreLockedError` with the holder's pid
  and the ways to read while it runs.
"""

from __future__ import annotations

import os
import re
from typing import Final

import duckdb

from flowgen._vocabulary.errors import NotAFlowgenDatabase, StoreError, StoreLockedError

__all__ = ["connect"]

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def connect(path: str) -> duckdb.DuckDBPyConnection:
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
