"""Prefetching: what a batch's items will read, read in one query each, not one per item.

Rules:

- Starts with a given id must look for a stored run of that id. Only ids the loop holds no
  run for can collide with a stored run; with two or more, a store that `ReadsLatestRuns`
  answers them all in one read. A store that cannot, or a read that fails, leaves each
  start to read for itself (and fail by itself).
- Items for running runs whose interpreters were evicted (signals to a crowd of parked
  runs, their timers, their activities' outcomes) rebuild them by replay; their histories
  are read together (`InterpreterCache.prefetch`).
- Prefetching only reads: what it finds is used by the batch being applied and dropped
  after it. It runs on the decision loop, under its lock.
"""

from __future__ import annotations

from flowgen._runtime.items import CancelItem, Due, Feed, Item, Key, SignalItem, Start
from flowgen._runtime.runs import RunTable
from flowgen._stores.protocol import ReadsLatestRuns, Store, WorkflowRecord
from flowgen._vocabulary.errors import StoreError

__all__ = ["stored_runs_for_starts", "woken_runs"]


def stored_runs_for_starts(
    items: list[Item], table: RunTable, store: Store
) -> dict[str, WorkflowRecord | None]:
    """The stored latest run (or ``None``) of each id the batch's starts look for."""
    ids = [
        item.record.workflow_id
        for item in items
        if isinstance(item, Start)
        and not item.fresh_id
        and table.current_run(item.record.workflow_id) is None
    ]
    if len(ids) < 2 or not isinstance(store, ReadsLatestRuns):
        return {}  # for one id, get_run is as cheap
    try:
        found = store.latest_runs(ids)
    except StoreError:
        return {}
    return {workflow_id: found.get(workflow_id) for workflow_id in ids}


def woken_runs(items: list[Item], table: RunTable) -> list[Key]:
    """The running, unstuck runs the batch's items are for (whose histories may be needed)."""
    woken: list[Key] = []
    for item in items:
        if isinstance(item, (SignalItem, CancelItem)):
            woken.append(table.key_of(item.workflow_id))
        elif isinstance(item, Feed):
            woken.append(table.key_of(item.workflow_id, item.run_id))
        elif isinstance(item, Due):
            woken.append(item.key)
    return [key for key in woken if table.held(key) == (True, None)]
