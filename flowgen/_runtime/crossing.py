"""Work that crosses runs: what one run's step asks of another, as items of the same batch.

Rules:

- A step of one run may start another (a child, the next run of a continue-as-new), or tell
  another something (a child's end to its parent). That work is an item appended to the
  batch being built, so it is committed in the same transaction as the step that caused it:
  a parent never waits for a child whose start was lost, and never misses its end.
- A child starts with ``on_conflict="fail"``: an id that is running already fails the
  child in the parent (`ChildFailed` with ``WorkflowAlreadyExists``), not the parent.
- A child of an unknown workflow fails in the parent at once, with `UnknownWorkflow`.
- A parent hears of its child's end once, from the last run of a continue-as-new chain:
  `ChildCompleted` with its value, or `ChildFailed` with its error (or one naming its end).
- When a run closes (completed, failed, cancelled, terminated, continued as new), each child
  still running gets what its `StartChild.parent_close` says: terminated (the default), a
  cancel request, or nothing (abandoned). Either way the child is unlinked first, so its
  end concerns no one. This one is applied at once, not queued as an item: a link names a
  child by workflow id, and the parent's next run (``terminate_existing``) may link a new
  child under the same id later in the same batch; the old child's end must not reach it.
  A child the parent cancelled itself (a race's loser, a cancelled gather, a cancelled
  parent's child) is left to finish its cancellation, whatever its ``parent_close``.
- The next run of a continue-as-new keeps the workflow id, the tags and the parent, and
  replaces the run that asked for it (``on_conflict="terminate_existing"``).
- When the engine traces, a run started by another run (a child, the next run of a
  continue-as-new) has a span that is a child of the starting run's span.

Everything here is a function of its arguments: the loop decides when to call them and
keeps the child links (`flowgen._runtime.runs`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import attrs

from flowgen._core.interpreter import error_info
from flowgen._runtime.items import Feed, Item, Key, Run, Start
from flowgen._runtime.registry import Registry
from flowgen._stores.protocol import WorkflowRecord
from flowgen._vocabulary.commands import Command, ParentClose, StartChild
from flowgen._vocabulary.errors import ErrorInfo, UnknownWorkflow
from flowgen._vocabulary.events import (
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    Event,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
)
from flowgen._vocabulary.status import RunStatus

__all__ = [
    "ParentClosed",
    "child_start",
    "children_at_close",
    "news_for_parent",
    "next_run",
]


@attrs.frozen
class ParentClosed:
    """The parent of the running child *workflow_id* closed: terminate or cancel the child."""

    workflow_id: str
    terminate: bool  # else a cancel request
    reason: str


def child_start(
    run: Run,
    command: Command | None,
    event: ChildStarted,
    registry: Registry,
    now: datetime,
) -> Item:
    """The item that starts the child *event* records, or fails it in *run* at once."""
    fn = command.fn if isinstance(command, StartChild) else None
    try:
        definition = registry.workflow(fn if fn is not None else event.name)  # type: ignore[arg-type]
    except UnknownWorkflow as exc:
        failed = ChildFailed(
            at=event.at, seq=event.seq, child_id=event.child_id, error=error_info(exc)
        )
        return Feed(run.workflow_id, run.run_id, failed)
    record = WorkflowRecord(
        workflow_id=event.child_id,
        run_id=uuid.uuid4().hex,
        name=definition.name,
        status=RunStatus.RUNNING,
        args=event.args,
        kwargs=event.kwargs,
        started_at=now,
        parent_id=run.workflow_id,
    )
    return Start(
        record,
        definition.fn,
        on_conflict="fail",
        parent=(run.key, event.seq),
        trace_parent=run.trace.as_parent() if run.trace else None,
    )


def news_for_parent(
    child_id: str,
    link: tuple[Key, int],
    end: Event,
    status: RunStatus,
    error: ErrorInfo | None,
) -> Feed:
    """What the parent at *link* hears of its child's *end*."""
    (parent_id, parent_run), seq = link
    outcome: Event
    if isinstance(end, WorkflowCompleted):
        outcome = ChildCompleted(
            at=end.at, seq=seq, child_id=child_id, value=end.result
        )
    else:
        info = error or ErrorInfo(status.value, f"child workflow {status}")
        outcome = ChildFailed(at=end.at, seq=seq, child_id=child_id, error=info)
    return Feed(parent_id, parent_run, outcome)


def children_at_close(
    parent: Run, status: RunStatus, children: list[tuple[str, ParentClose]]
) -> list[ParentClosed]:
    """What the running *children* of *parent*, closing with *status*, are told."""
    reason = f"parent workflow {parent.workflow_id!r} closed ({status})"
    return [
        ParentClosed(child_id, terminate=policy == "terminate", reason=reason)
        for child_id, policy in children
        if policy != "abandon"
    ]


def next_run(run: Run, end: WorkflowContinuedAsNew) -> Start:
    """The start of the run that continues *run* as new."""
    record = WorkflowRecord(
        workflow_id=run.workflow_id,
        run_id=uuid.uuid4().hex,
        name=run.name,
        status=RunStatus.RUNNING,
        args=end.args,
        kwargs=end.kwargs,
        started_at=end.at,
        tags=dict(run.tags),
        parent_id=run.parent_id,
    )
    assert run.fn is not None
    return Start(
        record,
        run.fn,
        on_conflict="terminate_existing",
        trace_parent=(
            run.trace.as_origin(f"continue_as_new of run {run.run_id}")
            if run.trace
            else None
        ),
    )
