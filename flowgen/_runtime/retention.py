"""Retention: `Engine.prune` deletes old closed runs, optionally exporting them first.

Rules
=====

* **What is pruned**: every run whose status is closed (completed, failed, cancelled,
  continued as new, terminated, corrupt) and whose ``closed_at`` is older than the cut-off
  (the engine's clock minus *older_than*): its ``workflows`` row and all its ``events``.
  Never a running run, and never a closed child whose parent's workflow id still has a
  running run (the parent's history points at it, and a parent that is recovered or reset
  reads the child's outcome from its row). Other runs of the same workflow id are kept
  (a continue-as-new chain loses its old links; a reset or retry keeps its ``origin_run_id``
  as a plain value, with nothing left behind it).
* **Live-safe**: the runs are chosen, exported and deleted in chunks of `CHUNK` runs, each
  chunk as one call on the engine's decision loop, between two of its batches. So nothing
  the loop decides can interleave with a chunk (no run closes, starts or is reset
  halfway), a closed run never changes again, and the DuckDB store moves its journal into
  the tables (under its write lock) before it deletes: a prune never races a commit.
  Between chunks the engine goes on working; the prune is what waits.
* **Export** (``export_to=DIR``): before a chunk is deleted, its rows of both tables are
  written to ``DIR/workflows-<stem>-<n>.parquet`` and ``DIR/events-<stem>-<n>.parquet``
  (``<stem>`` is the cut-off time and a random suffix, so prunes never overwrite each
  other's files), with the same columns as the tables: read them back with DuckDB,
  ``select * from 'DIR/events-*.parquet'``. A chunk whose export fails is not deleted.
* **Space**: after the last chunk the store is asked to reclaim it (`Prunes.reclaim`):
  DuckDB runs a CHECKPOINT, after which the file's freed blocks are reused by new rows (the
  file itself does not shrink); PostgreSQL deletes in the same chunks and leaves the space
  to autovacuum (or a ``VACUUM`` the operator runs), see docs/operations.md.
* Bad input is refused before anything is deleted: a duration that is not positive or not
  understood, an export directory that is a file, a store that cannot prune or export.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

import attrs

from flowgen._runtime.arguments import text_argument
from flowgen._stores.protocol import Prunes, Store
from flowgen._vocabulary.durations import check_at_most_max, finite
from flowgen._vocabulary.errors import UsageError

__all__ = ["CHUNK", "PruneResult", "parse_age", "prune_runs"]

CHUNK: Final = 1000
"""How many runs one call on the decision loop chooses, exports and deletes."""

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")


@attrs.frozen
class PruneResult:
    """What `Engine.prune` did.

    Attributes:
        runs: How many runs were deleted.
        events: How many events they had.
        cutoff: Runs that closed before this time were pruned.
        files: The Parquet files written (empty without ``export_to``).
    """

    runs: int
    events: int
    cutoff: datetime
    files: tuple[str, ...] = ()


def parse_age(value: timedelta | float | str) -> timedelta:
    """*value* as a positive `timedelta`: a timedelta, seconds, or ``"30d"``, ``"12h"``...

    Units: ``s``, ``m`` (minutes), ``h``, ``d``, ``w``.

    Raises:
        ValueError: It is not positive, too long, or text in no known unit.
        TypeError: It is of another type.
    """
    if isinstance(value, str):
        match = _AGE.fullmatch(value)
        if match is None:
            raise ValueError(
                f"older_than must be a duration such as '30d', '12h', '90m', '45s' or "
                f"'2w', got {value!r}"
            )
        seconds = float(match[1]) * _UNITS[match[2]]
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"older_than must be a timedelta, seconds or text such as '30d', got "
            f"{type(value).__name__}: {value!r}"
        )
    else:
        seconds = value
    if not finite(seconds) or seconds <= 0:
        raise ValueError(f"older_than must be positive, got {value!r}")
    check_at_most_max(seconds, "older_than", value)
    return timedelta(seconds=seconds)


def prune_runs(
    store: Store,
    now: datetime,
    on_loop: Callable[[Callable[[], object]], object],
    older_than: timedelta | float | str,
    export_to: str | os.PathLike[str] | None,
) -> PruneResult:
    """Prune *store* (see the module's rules); *on_loop* runs a call on the decision loop."""
    cutoff = now - parse_age(older_than)
    if not isinstance(store, Prunes):
        raise UsageError(f"{type(store).__name__} cannot prune runs")
    target = None if export_to is None else os.fspath(export_to)
    if target is not None:
        if os.path.exists(target) and not os.path.isdir(target):
            raise ValueError(f"export_to must be a directory, {target!r} is a file")
        # Checked before the export makes the directory: DuckDB then refused the name.
        text_argument(target, "export_to")
        store.check_export()
    stem = f"{cutoff:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    runs = events = 0
    files: list[str] = []
    part = 0
    while True:
        part += 1
        chunk = f"{stem}-{part:04d}"

        def one_chunk(chunk: str = chunk) -> tuple[int, int, list[str]]:
            run_ids = store.prunable(cutoff, CHUNK)
            written = (
                []
                if target is None or not run_ids
                else (store.export_runs(run_ids, target, chunk))
            )
            deleted = store.delete_runs(run_ids) if run_ids else 0
            return len(run_ids), deleted, written

        answer = on_loop(one_chunk)
        assert isinstance(answer, tuple)
        chunk_runs, chunk_events, written = answer
        runs += chunk_runs
        events += chunk_events
        files.extend(written)
        if chunk_runs < CHUNK:
            break
    if runs:
        store.reclaim()
    return PruneResult(runs, events, cutoff, tuple(files))
