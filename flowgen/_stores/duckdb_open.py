"""Opening a DuckDB file for a store, and explaining why it cannot be opened.

Rules
=====

* A path DuckDB cannot take (a NUL, a name that is not UTF-8, a name too long for the
  files kept beside it) is a `StoreError` naming it, before anything is claimed or made;
  an empty one (DuckDB's database in memory) is a `ValueError`.
* Opening never modifies a file that turns out not to be a flowgen database: a SQLite file is
  refused before DuckDB sees it (DuckDB would download its sqlite extension to attach it),
  and a file DuckDB cannot read is reported as not a flowgen database.
* Every refusal says what holds the file and what to do instead: DuckDB's own lock messages
  (another process has the file) are turned into `StoreLockedError` with the holder's pid
  and the ways to read while it runs.
* **A file is one database whatever path spells it.** Across processes DuckDB's own lock
  is on the file itself. Inside a process DuckDB shares one database among the connections
  to one path, but a symlink or a hard link is another path: a second database on the same
  file, with a journal of its own, and commits of one overwrite the other's. So a store
  `claim`s the file's identity (device and inode) for its life, before DuckDB opens it:
  another store of this process may open the same path (DuckDB shares the database; the
  journal's own lock decides), a store through another path of the same file is refused.
  A file that does not exist yet is claimed by its real path (what a symlink resolves to),
  then by its identity once DuckDB has created it.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Final

import duckdb

from flowgen._vocabulary.errors import (
    NotAFlowgenDatabase,
    StoreError,
    StoreLockedError,
    StorePermissionError,
)
from flowgen._vocabulary.text import surrogate_at

__all__ = ["FileClaim", "HeldByAnotherProcess", "check_path", "claim", "connect"]

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"

# The files the stores of this process have open: identity -> (absolute path, stores).
# An identity is (st_dev, st_ino), or ("new", real path) while DuckDB creates the file.
_Identity = tuple[object, object]
_claims: dict[_Identity, tuple[str, int]] = {}
_claims_lock = threading.Lock()


class HeldByAnotherProcess(StoreLockedError):
    """Another process has the file open (DuckDB's lock): it may let go, so worth a retry."""


def _identity(path: str) -> _Identity:
    try:
        stat = os.stat(path)
    except OSError:
        return ("new", os.path.realpath(path))
    return (stat.st_dev, stat.st_ino)


class FileClaim:
    """A store's claim on its file's identity, held until `release`."""

    def __init__(self, identity: _Identity, path: str) -> None:
        self._identity: _Identity | None = identity
        self._path = path

    def settle(self) -> None:
        """Re-key a claim made before the file existed by the identity it now has."""
        if self._identity is None or self._identity[0] != "new":
            return
        identity = _identity(self._path)
        with _claims_lock:
            self._drop(self._identity)
            path, count = _claims.get(identity, (self._path, 0))
            _claims[identity] = (path, count + 1)
        self._identity = identity

    def release(self) -> None:
        """Give the claim up (idempotent)."""
        if self._identity is None:
            return
        with _claims_lock:
            self._drop(self._identity)
        self._identity = None

    @staticmethod
    def _drop(identity: _Identity) -> None:
        path, count = _claims[identity]
        if count > 1:
            _claims[identity] = (path, count - 1)
        else:
            del _claims[identity]


def claim(path: str) -> FileClaim | None:
    """Claim the database file *path* for a store of this process (None for ``:memory:``).

    Raises:
        StoreLockedError: A store of this process has the same file open through another
            path (a symlink or a hard link); nothing was opened.
    """
    if path == ":memory:":
        return None
    absolute = os.path.abspath(path)
    identity = _identity(path)
    with _claims_lock:
        held = _claims.get(identity)
        if held is not None and held[0] != absolute:
            raise StoreLockedError(
                f"cannot open {path}: it is the same file as {held[0]}, which a store of "
                f"this process has open (through a symlink or a hard link, another path "
                f"is the same database). Use that store (engine.store, store.sql(...)), "
                f"or close it first"
            )
        _claims[identity] = (absolute, 1 if held is None else held[1] + 1)
    return FileClaim(identity, absolute)


def _permission_denied(path: str, reason: object) -> StorePermissionError:
    return StorePermissionError(
        f"cannot open {path}: permission denied ({reason}). flowgen reads and writes the "
        f"file, and creates files beside it (its journal and lock): run as a user who "
        f"may write the file and its folder (this process runs as uid {os.geteuid()})"
    )


_BESIDE: Final = (".wal", ".journal", ".quarantine", ".sock")
"""The files beside a database (DuckDB's WAL, the journal, the quarantine, the socket)."""

_NAME_MAX: Final = 255
"""The longest file name, in bytes, of Linux's and macOS's file systems."""


def check_path(path: object) -> None:
    """Refuse a path DuckDB cannot open, before anything is made or claimed.

    Raises:
        TypeError: *path* is no `str` (``bytes``, say).
        ValueError: *path* is empty: DuckDB made it a database in memory, whose
            acknowledged commits were gone at the next open.
        StoreError: *path* holds a NUL, or a lone surrogate (``os.fsdecode`` of a file
            name that is not UTF-8): DuckDB takes UTF-8 names only, and failed with a
            bare ``RuntimeError: std::bad_cast``.
    """
    if not isinstance(path, str):
        raise TypeError(
            f"a database path must be a str or an os.PathLike of one, got "
            f"{type(path).__name__}: {path!r:.60}"
        )
    if not path:  # DuckDB's in-memory database, with a journal beside the cwd
        raise ValueError(
            "a database path must not be empty: give a file, or ':memory:' for a "
            "throwaway store"
        )
    if "\0" in path:
        raise StoreError(f"cannot open {path!r}: a file name holds no NUL character")
    bad = surrogate_at(path)
    if bad is not None:
        raise StoreError(
            f"cannot open {path!r}: DuckDB opens only file names in UTF-8, and this "
            f"one is not UTF-8 (a lone surrogate at index {bad}); rename the file"
        )
    # DuckDB made the file, then failed on its WAL's longer name ("cannot rollback - no
    # transaction is active"), leaving a file no longer a database.
    allowed = _NAME_MAX - max(len(suffix) for suffix in _BESIDE)
    if len(os.fsencode(os.path.basename(path))) > allowed:
        raise StoreError(
            f"cannot open {path}: its name is too long for the files kept beside it "
            f"({', '.join(_BESIDE)}): at most {allowed} bytes"
        )


def connect(path: str) -> duckdb.DuckDBPyConnection:
    exists = path != ":memory:" and os.path.exists(path)
    if exists and os.path.isfile(path):
        try:
            with open(path, "rb") as file:
                head = file.read(len(_SQLITE_MAGIC))
        except PermissionError as exc:
            raise _permission_denied(path, exc.strerror) from None
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
        if (
            "Permission denied" in message
        ):  # read-only file, or a folder we cannot write
            raise _permission_denied(path, message) from None
        # Precise phrases: a corrupt file's error mentions a "block", which contains "lock".
        if "Could not set lock" in message or "Conflicting lock" in message:
            raise HeldByAnotherProcess(_locked_message(path, message)) from None
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
    # Two lines: what happened, and what to do. DuckDB's own text adds nothing to them.
    return (
        f"cannot open {path}: {holder} has it open, and DuckDB lets one process open a "
        f"database file (no other can, not even read-only).\n"
        f"While a flowgen engine holds it, the `flowgen` command line goes through that "
        f"engine; from code, read inside that process (engine.sql(...)) or a Parquet "
        f"snapshot it writes (engine.store.export_parquet(DIR))."
    )
