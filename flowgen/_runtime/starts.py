"""A start whose workflow id is taken: what `on_conflict` makes of it.

Rules:

- A child whose id is running already fails at once: its parent hears `ChildFailed`
  (``WorkflowAlreadyExists``) in the same batch, and the start answers with the running run.
- ``fail`` (a start from the API) raises `WorkflowAlreadyExists`, naming the run's status.
- ``use_existing`` answers with the existing run; a signal-with-start delivers its signal to
  it. A closed run with a signal to deliver is started anew instead (the signal needs a
  running run).
- ``terminate_existing`` terminates a running run in the same batch, then starts anew.
- In a fleet (`flowgen._runtime.fleet`), a run the store says is running but this engine does
  not hold is another engine's: it counts as running, a signal-with-start posts its signal
  to the holder, and ``terminate_existing`` is refused with `HeldElsewhere` (this engine
  cannot write for that run): its caller has the holder terminate it, then starts again
  (`flowgen._runtime.fleet_requests`), rather than leave two runs of one id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flowgen._runtime.clock import Clock
from flowgen._runtime.fleet_requests import HeldElsewhere
from flowgen._runtime.items import Feed, Key, Run, SignalItem, Start, Txn
from flowgen._runtime.runs import RunTable
from flowgen._stores.protocol import WorkflowRecord
from flowgen._vocabulary.errors import ErrorInfo, WorkflowAlreadyExists
from flowgen._vocabulary.events import (
    ChildFailed,
    Event,
    SignalReceived,
    WorkflowTerminated,
)

if TYPE_CHECKING:  # the fleet is handed in, only on a fleet's store
    from flowgen._runtime.fleet import Fleet

__all__ = ["start_conflict"]


def start_conflict(
    item: Start,
    existing: Run | None,
    stored: WorkflowRecord | None,
    txn: Txn,
    *,
    table: RunTable,
    clock: Clock,
    fleet: Fleet | None,
    feed: Callable[[Run, Event, Txn], None],
) -> Key | None:
    """A start whose id is taken: the run to answer with, or ``None`` to start anew.

    Args:
        item: The start.
        existing: The id's latest run in the loop's table, if any.
        stored: The id's latest stored run, when the table has none.
        txn: The batch being built.
        table: The loop's run table.
        clock: Where the time comes from.
        fleet: This engine's part of a fleet, if any.
        feed: Records an event for a run this engine holds (`DecisionLoop._feed`).
    """
    record = item.record
    workflow_id = record.workflow_id
    # In a fleet, a run the store says is running may be held by another engine.
    elsewhere = existing is None and fleet is not None and fleet.runs_elsewhere(stored)
    running = (existing is not None and existing.is_running) or elsewhere
    if item.parent is not None and running:
        # A child whose id runs already: the parent hears it failed, at once.
        (parent_id, parent_run), seq = item.parent
        if table.child_links.get(workflow_id) == item.parent:
            table.take_link(workflow_id)  # (not another parent's running child)
        error = ErrorInfo(
            "WorkflowAlreadyExists",
            f"a workflow with id {workflow_id!r} is already running",
        )
        failed = ChildFailed(at=clock.now(), seq=seq, child_id=workflow_id, error=error)
        txn.work.append(Feed(parent_id, parent_run, failed))
        return (workflow_id, record.run_id)
    if item.on_conflict == "fail" and item.parent is None:
        status = existing.status if existing else stored.status if stored else "?"
        raise WorkflowAlreadyExists(
            f"a workflow with id {workflow_id!r} already exists ({status}); "
            f"pass on_conflict='use_existing' or 'terminate_existing'"
        )
    if item.on_conflict == "use_existing" and (running or item.signal is None):
        run_id = existing.run_id if existing else stored.run_id if stored else ""
        if item.signal is not None:
            name, payload = item.signal
            if existing is not None:
                index = existing.signals
                signal = SignalReceived(
                    at=clock.now(), name=name, payload=payload, index=index
                )
                feed(existing, signal, txn)
            elif fleet is not None:
                fleet.post(SignalItem(workflow_id, name, payload), txn)
        return (workflow_id, run_id)
    if elsewhere:  # the caller has the holder terminate it, then starts again
        assert stored is not None
        raise HeldElsewhere(stored)
    if running and existing is not None:
        reason = "terminated by a new start"
        feed(existing, WorkflowTerminated(at=clock.now(), reason=reason), txn)
    return None
