"""`Journal`: the append-only, fsync'd file a `DuckDBStore` commits to before DuckDB.

Why a journal
=============

A small DuckDB transaction costs ~1.9 ms of CPU whatever it holds (appender flushes, the
commit's bookkeeping; the fdatasync itself is 0.2 ms). A workflow of three activities is
four decisions, so one caller running workflows in sequence paid ~8 ms of DuckDB per
workflow. Appending one checksummed record to a file and ``fdatasync`` costs a few tens of
microseconds of CPU, and makes the decision exactly as durable: the record is on disk before
`commit` returns, the same point at which DuckDB's own WAL would be. The store then moves the
journaled rows into its tables in big transactions (thousands of rows each, where DuckDB's
per-row cost is small) and before anything reads the tables.

The format
==========

A file of records, each a header and a body::

    magic b"FGJ1" | body length u32 | record number u64 | crc32(body) u32 | body

little-endian. Record numbers increase by one over the life of the database file; the store
keeps the number of the last record it moved into DuckDB in ``flowgen_meta``, in the same
transaction as the rows, so a record is applied exactly once whatever the crash point. The
body is the store's business (JSON rows). A crash can tear only the record being written, the
last one: a tail that is short or fails its checksum was never acknowledged and is cut off.
A bad record *followed by another record* is not a torn write but damage, and is refused.

**The identity record.** A journal belongs to one database: the first record of a file
(number 0) holds ``{"database": <its flowgen_meta.database_id>}``, written with the first
record after the file was created or emptied. `Journal.recover` refuses a journal whose
identity is not the database's, before it changes anything: a journal copied or moved
beside another database would otherwise be applied to it, in part (its numbers are the
other database's). A journal without the record (written before databases had an identity)
is applied as before.

The file grows in zero-filled steps of `_STEP` ahead of the records, and applied records are
left in place (recovery skips them by number) until the file passes `_ROTATE_AT`, when it is
emptied: an fdatasync of a record written over blocks that already exist does not have to
write the file's size and extents too. Measured on this machine's ext4 (600-byte records):
113-127 us of wall time and 29-36 us of CPU per record, against 187-222 us and 60-62 us when
every record grows the file. The zeros after the last record end the log.

This module does plain file IO and knows nothing of DuckDB or of what a body means.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zlib
from typing import Final

from flowgen._vocabulary.errors import HistoryCorruptError, StoreError, StoreLockedError

try:  # POSIX; elsewhere the file is not locked (DuckDB's own lock still guards processes)
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

__all__ = ["Journal"]

# Where the platform lacks them: macOS has no fdatasync (fsync is what DuckDB uses there
# too), Windows has no O_CLOEXEC and wants O_BINARY.
_sync = getattr(os, "fdatasync", os.fsync)
_pwrite = getattr(os, "pwrite", None)
_OPEN_FLAGS: Final = (
    os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)

_MAGIC: Final = b"FGJ1"
_HEADER: Final = struct.Struct("<4sIQI")
_STEP: Final = 1 << 20  # zeros written ahead of the records, per step
_ROTATE_AT: Final = 64 << 20  # an applied journal this big is emptied


class Journal:
    """An open journal file: `recover` once, then `append` records, `applied` when applied.

    Opening takes an exclusive ``flock`` on the file, so a second store on the same
    database in this process (which DuckDB itself would allow: it shares one database
    instance per process) is refused instead of replaying or truncating this one's records.

    Args:
        path: The journal file, created if missing.

    Raises:
        StoreLockedError: Another open store (in this process or another) holds it.
        StoreError: The file cannot be opened.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # The database's identity, written as the file's first record (see the module).
        self.identity: str | None = None
        try:
            self._fd = os.open(path, _OPEN_FLAGS, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open the journal {path}: {exc}") from None
        # A symlink to /dev/null, a FIFO: no place for records that must survive.
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            os.close(self._fd)
            raise StoreError(
                f"cannot open the journal {path}: it is not a regular file (a device or "
                f"a pipe, maybe through a symlink); move it away to open the database"
            )
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(self._fd)
                raise StoreLockedError(
                    f"cannot open {path}: another DuckDBStore has this database open "
                    f"(in this process, or in another one). Use that store (engine.store, "
                    f"store.sql(...), store.cursor()) or close it first"
                ) from None
        self._end = 0  # where the next record goes
        self._allocated = 0  # bytes of file, records and the zeros ahead of them
        self._closed = False

    def recover(self, identity: str | None) -> list[tuple[int, bytes]]:
        """Read the records (number, body) in order; cut off a torn last record.

        Args:
            identity: The database's identity (``None`` for a database that has none
                yet): the journal's identity record must name it, if it has one.

        Raises:
            StoreError: The journal belongs to another database. Nothing is changed.
            HistoryCorruptError: A damaged record is followed by a good one (not a torn
                write: the file was changed or the disk lost data). Nothing is cut off.
            StoreError: The file is not a flowgen journal at all. It is left untouched.
        """
        with open(self._fd, "rb", closefd=False) as file:
            file.seek(0)
            data = file.read()
        records: list[tuple[int, bytes]] = []
        offset = 0
        while (record := _record_at(data, offset)) is not None:
            records.append(record[:2])
            offset = record[2]
        head = data[offset : offset + len(_MAGIC)]
        if offset == 0 and head and not _MAGIC.startswith(head) and any(head):
            raise StoreError(
                f"{self.path} is not a flowgen journal (it does not start with "
                f"{_MAGIC!r}); it was left untouched. Move it away to open the database"
            )
        # What stops the records must be the end: the zeros ahead of them, or the one
        # record a crash tore. A good record further on means damage, not a crash.
        found = data.find(_MAGIC, offset + 1)
        while found != -1:
            if _record_at(data, found) is not None:
                raise HistoryCorruptError(
                    f"the journal {self.path} is damaged at byte {offset} (a record "
                    f"there is unreadable and a good one follows at byte {found}). It "
                    f"was left as it is; restore the database and its journal from a "
                    f"backup"
                )
            found = data.find(_MAGIC, found + 1)
        if records and records[0][0] == 0:
            self._check_identity(records.pop(0)[1], identity)
        # Cut what follows the last good record (a torn one, old zeros): a shorter record
        # written there later must not leave a remnant of a longer one behind it.
        self._truncate(offset)
        self._end = self._allocated = offset
        return records

    def _check_identity(self, body: bytes, identity: str | None) -> None:
        try:
            found = json.loads(body)["database"]
        except (ValueError, KeyError, TypeError):
            found = None
        if found != identity or identity is None:
            raise StoreError(
                f"the journal {self.path} belongs to another database (identity "
                f"{found!r}; this database's is {identity!r}): it was moved or copied "
                f"here. Neither file was changed. Move the journal back beside its own "
                f"database (or away, if that database is gone) to open this one"
            )

    def append(self, number: int, body: bytes) -> None:
        """Write one record and fdatasync it: durable when this returns, or not written.

        Raises:
            StoreError: The write or the sync failed (disk full, IO error); the file is cut
                back to where it was.
        """
        record = _record(number, body)
        start = self._end
        if start == 0 and self.identity is not None:
            # The file's first record names its database (see the module).
            record = (
                _record(0, json.dumps({"database": self.identity}).encode()) + record
            )
        try:
            if start + len(record) > self._allocated:
                # Zeros first, then the record over them; this one sync covers both.
                grow = max(_STEP, start + len(record) - self._allocated)
                self._write(bytes(grow), self._allocated)
                self._allocated += grow
            self._write(record, start)
            _sync(self._fd)
        except OSError as exc:
            try:
                self._truncate(start)
                self._allocated = start
            except OSError:  # pragma: no cover - the disk is failing; recovery cuts it
                pass
            raise StoreError(
                f"commit failed, nothing written: the journal {self.path} could not be "
                f"written ({exc})"
            ) from None
        self._end = start + len(record)

    def applied(self) -> None:
        """Every record in the file is in DuckDB: empty it once it has grown big.

        Emptying is not synced: if a crash undoes it, the records are skipped on recovery
        (their numbers are at most the applied one), and the next `append` syncs the file.
        """
        if self._end >= _ROTATE_AT:
            self._truncate(0)
            self._end = self._allocated = 0

    def close(self, *, remove: bool) -> None:
        """Close the file (releasing the lock); *remove* deletes it first (it is empty)."""
        if self._closed:
            return
        self._closed = True
        if remove:
            try:
                os.unlink(self.path)
            except OSError:  # pragma: no cover - e.g. removed by hand: nothing to keep
                pass
        os.close(self._fd)

    def _truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def _write(self, data: bytes, offset: int) -> None:
        # One thread writes at a time (the store's lock), so seek + write is as good as
        # pwrite where there is none (Windows).
        if _pwrite is None:  # pragma: no cover - not on Linux
            os.lseek(self._fd, offset, os.SEEK_SET)
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            return
        written = _pwrite(
            self._fd, data, offset
        )  # all of it, but for a signal or a full disk
        while written < len(data):
            written += _pwrite(self._fd, data[written:], offset + written)


def _record(number: int, body: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, len(body), number, zlib.crc32(body)) + body


def _record_at(data: bytes, offset: int) -> tuple[int, bytes, int] | None:
    """The whole, checksummed record at *offset*: (number, body, where it ends), or None."""
    if offset + _HEADER.size > len(data):
        return None
    magic, length, number, checksum = _HEADER.unpack_from(data, offset)
    end = offset + _HEADER.size + length
    if magic != _MAGIC or end > len(data):
        return None
    body = data[offset + _HEADER.size : end]
    if zlib.crc32(body) != checksum:
        return None
    return number, body, end
