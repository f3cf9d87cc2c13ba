"""Validating a batch for a DuckDB store, and turning it into rows: `plan_batch`.

Rules
=====

A batch is validated in Python before anything is written or journaled, so a bad batch is
refused whole, with a `HistoryCorruptError` or `StoreError` saying what is wrong:

* a new run's id is unused: not twice in the batch, not a run the store is writing (its
  next-event cache), not a journaled run, not a stored one (the last looked up only when the
  writer does not vouch for its ids: `Batch.fresh_run_ids`);
* every status is one of `RUN_STATUSES` (the table's CHECK, checked first);
* every text can be stored: a string holding a surrogate code point (see
  `flowgen._stores.codec`) is refused with a `TypeError` naming the run, event and value,
  because DuckDB would refuse it only after the batch was acknowledged;
* events and row changes go to runs that exist, under the workflow id they were written
  with, and a run's events continue its numbering: 0, 1, 2, ... with no gap or repeat. The
  next event id of a run comes from the store's cache when it has it, else from the tables
  (one query for the whole batch).

The DuckDB primary key on ``events (run_id, event_id)`` is the backstop for writers the
cache can't see. Several changes of one run in a batch merge into one (the later value of a
column winning): DuckDB's update appender would pick an arbitrary one of duplicates. A run
inserted by the batch gets its changes folded into the inserted row. A run that closes
leaves the cache (it gets no more events), which bounds the cache by the running runs.

This module reads nothing itself: the store hands it its lookups (`Lookups`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from flowgen._stores.duckdb_rows import (
    Plan,
    check_status,
    event_row,
    merge_updates,
    run_row,
    update_row,
)
from flowgen._stores.protocol import (
    CLOSED_STATUSES,
    Batch,
    RunUpdate,
    WorkflowRecord,
    apply_update,
)
from flowgen._vocabulary.errors import HistoryCorruptError

__all__ = ["Lookups", "plan_batch"]

# run_id -> (workflow_id, next event id)
_Known = dict[str, tuple[str, int]]


@attrs.frozen
class Lookups:
    """What validating a batch needs to know of the runs a store holds.

    Attributes:
        cached: The next-event cache entries of those of the given run ids that have one.
        taken: Those of the given new run ids already used by a run the cache does not
            hold; the flag is `Batch.fresh_run_ids` (the writer vouches for its ids).
        stored: ``(workflow_id, next event id)`` of the given run ids that are stored.
    """

    cached: Callable[[Iterable[str]], _Known]
    taken: Callable[[list[str], bool], list[str]]
    stored: Callable[[list[str]], _Known]


def plan_batch(batch: Batch, lookups: Lookups) -> Plan:
    """Validate *batch* against the stored histories; turn it into rows.

    Raises:
        HistoryCorruptError: The batch does not continue a run's history (an event id out
            of sequence, an unknown run, a run id already used).
        StoreError: A status is unknown, a time is naive, or a lookup failed.
    """
    new_runs = _new_runs(batch, lookups)
    known = _known_runs(batch, new_runs, lookups)
    next_ids, event_rows = _event_rows(batch, new_runs, known)
    merged = _merged_updates(batch, new_runs, known)
    update_rows: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for run_id, update in merged.items():
        if run_id in new_runs:  # inserted in this batch: insert the updated row
            new_runs[run_id] = apply_update(new_runs[run_id], update)
            continue
        try:
            columns, row_values = update_row(update)
        except TypeError as exc:
            raise TypeError(
                f"the new values of run {run_id} of {update.workflow_id!r}: {exc}; "
                f"nothing was written"
            ) from None
        if columns:
            update_rows.setdefault(columns, []).append((run_id, *row_values))
    return Plan(
        run_rows=[_run_row(run) for run in new_runs.values()],
        event_rows=event_rows,
        update_rows=update_rows,
        cache_after=_cache_after(next_ids, new_runs, known, merged),
    )


def _run_row(run: WorkflowRecord) -> tuple[Any, ...]:
    try:
        return run_row(run)
    except TypeError as exc:
        raise TypeError(
            f"run {run.run_id} of {run.workflow_id!r}: {exc}; nothing was written"
        ) from None


def _new_runs(batch: Batch, lookups: Lookups) -> dict[str, WorkflowRecord]:
    """The batch's new runs by run id, each checked unused, and every status checked."""
    new_runs: dict[str, WorkflowRecord] = {}
    cached = lookups.cached(run.run_id for run in batch.runs)
    for run in batch.runs:
        if run.run_id in new_runs or run.run_id in cached:
            raise HistoryCorruptError(
                f"run {run.run_id} of {run.workflow_id!r} already exists"
            )
        check_status(run.status, run.run_id)
        new_runs[run.run_id] = run
    for update in batch.updates:
        if update.status is not None:
            check_status(update.status, update.run_id)
    if new_runs:
        taken = lookups.taken(list(new_runs), batch.fresh_run_ids)
        if taken:
            run = new_runs[taken[0]]
            raise HistoryCorruptError(
                f"run {run.run_id} of {run.workflow_id!r} already exists; nothing "
                f"was written"
            )
    return new_runs


def _known_runs(
    batch: Batch, new_runs: dict[str, WorkflowRecord], lookups: Lookups
) -> _Known:
    """Where each stored run the batch writes to continues: the cache, else the tables."""
    referenced = {row.run_id for row in batch.events}
    referenced.update(update.run_id for update in batch.updates)
    referenced -= new_runs.keys()
    known = lookups.cached(referenced)
    missing = referenced - known.keys()
    if missing:
        known.update(lookups.stored(sorted(missing)))
    return known


def _owner(
    new_runs: dict[str, WorkflowRecord],
    known: _Known,
    workflow_id: str,
    run_id: str,
    what: str,
) -> int:
    """The next event id of the run *what* goes to; refuses an unknown run."""
    if run_id in new_runs and new_runs[run_id].workflow_id == workflow_id:
        return 0
    entry = known.get(run_id)
    if entry is None or entry[0] != workflow_id:
        raise HistoryCorruptError(f"{what} for unknown run {run_id} of {workflow_id!r}")
    return entry[1]


def _event_rows(
    batch: Batch, new_runs: dict[str, WorkflowRecord], known: _Known
) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Each run's next event id after the batch, and the batch's ``events`` rows."""
    next_ids: dict[str, int] = {}
    rows = []
    for row in batch.events:
        expected = next_ids.get(row.run_id)
        if expected is None:
            expected = _owner(new_runs, known, row.workflow_id, row.run_id, "events")
        if row.event_id != expected:
            raise HistoryCorruptError(
                f"run {row.run_id} of {row.workflow_id!r}: event_id {row.event_id} "
                f"appended where {expected} belongs; nothing was written"
            )
        next_ids[row.run_id] = expected + 1
        try:
            rows.append(event_row(row))
        except TypeError as exc:
            raise TypeError(
                f"event {row.event_id} ({type(row.event).__name__}) of run {row.run_id} "
                f"of {row.workflow_id!r}: {exc}; nothing was written"
            ) from None
    return next_ids, rows


def _merged_updates(
    batch: Batch, new_runs: dict[str, WorkflowRecord], known: _Known
) -> dict[str, RunUpdate]:
    """One change per run: several of a run in a batch merge, the later winning."""
    merged: dict[str, RunUpdate] = {}
    for update in batch.updates:
        _owner(new_runs, known, update.workflow_id, update.run_id, "update")
        previous = merged.get(update.run_id)
        merged[update.run_id] = (
            update if previous is None else merge_updates(previous, update)
        )
    return merged


def _cache_after(
    next_ids: dict[str, int],
    new_runs: dict[str, WorkflowRecord],
    known: _Known,
    merged: dict[str, RunUpdate],
) -> dict[str, tuple[str, int] | None]:
    """The cache entries after the commit: ``None`` for a run that is now closed."""
    cache_after: dict[str, tuple[str, int] | None] = {}
    for run_id, next_id in next_ids.items():
        workflow_id = (
            new_runs[run_id].workflow_id if run_id in new_runs else known[run_id][0]
        )
        cache_after[run_id] = (workflow_id, next_id)
    for run_id, run in new_runs.items():
        cache_after.setdefault(run_id, (run.workflow_id, 0))
    # A closed run gets no more events: forget it.
    for run_id, update in merged.items():
        if update.status in CLOSED_STATUSES:
            cache_after[run_id] = None
    for run_id, run in new_runs.items():
        if run.status in CLOSED_STATUSES:
            cache_after[run_id] = None
    return cache_after
