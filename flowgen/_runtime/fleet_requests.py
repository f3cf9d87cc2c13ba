"""Updates and terminations for a run another engine of a fleet holds: sent, run, answered.

On one engine, `Engine.update` and ``on_conflict="terminate_existing"`` act on the run in
the engine's own decision loop. In a fleet the run may be held by another engine; this
module carries them there as messages (`flowgen._runtime.fleet` delivers them; the store
makes a request reach only a running run, and a run close only once its requests are in:
`flowgen._stores.postgres_requests`), with the same answers as on one engine.

Rules:

- **An update to a run held elsewhere** is posted (kind ``update``) in the caller's batch,
  naming the run it was read as (its run id), the update's name, arguments and id, and a
  fresh *token* of the caller's. The holder applies it as a local update
  (`flowgen._runtime.updates.apply_update`: idempotency, validator, ``update_accepted``),
  consuming the message in the batch that records the acceptance, so an update is applied
  once whoever holds the run and whatever dies. A refusal (`UpdateRejected`, the run
  closed, no such run) records nothing and posts a reply (kind ``update_reply``) for the
  token, in that same batch.
- **The caller waits by reading the store** (`wait_remote_update`), every few
  milliseconds up to the fleet's poll, until its timeout: the reply to its token, else
  the update's end (``update_completed`` / ``update_failed``) in the run's history, else
  the run closed without it (`WorkflowClosed`); an asyncio caller (`flowgen.aio`) looks on
  a thread and waits between looks without one. One statement reads the three, so an end
  committed with the close is seen with it. If the holder dies mid-update, the run's
  next holder replays it and ends the update there: the caller reads that end. Its
  result is decoded to the handler's return annotation when the workflow's code is here
  (the run replayed on the caller, read-only), else returned as JSON.
- **Terminating a run held elsewhere** (`terminate_then_start`): the start is refused on
  the decision loop with `HeldElsewhere` (nothing written for it); the caller posts a
  terminate request (kind ``terminate``) to the holder, which terminates the run like a
  local ``terminate_existing`` (its children by their ``parent_close``), waits until the
  run is closed in the store, and submits the start again. A holder that died is replaced
  within ``lease + poll``; a run still running after `terminate_wait` raises.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from flowgen._core.dsl import handler_return_type
from flowgen._runtime.items import CancelItem, Item, Txn
from flowgen._stores.codec import decode, encode
from flowgen._stores.protocol import (
    FleetOptions,
    LeasesRuns,
    Message,
    Store,
    WorkflowRecord,
)
from flowgen._vocabulary.errors import (
    ErrorInfo,
    FlowgenError,
    UnknownWorkflow,
    UpdateRejected,
    UsageError,
    WorkflowClosed,
)
from flowgen._vocabulary.events import Event, JsonValue
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:  # the loop is handed in; only named here
    from flowgen._runtime.loop import DecisionLoop

__all__ = [
    "HeldElsewhere",
    "PostedUpdate",
    "look_remote_update",
    "next_pause",
    "post_update",
    "refusal_reply",
    "remote_pending",
    "remote_timeout",
    "terminate_then_start",
    "terminate_wait",
    "wait_remote_update",
]

_FIRST_LOOK = 0.005
"""Seconds before a waiting caller's first look at the store; doubled up to the poll."""

_REFUSALS: dict[str, Callable[[str], FlowgenError]] = {
    "WorkflowClosed": WorkflowClosed,
    "UnknownWorkflow": UnknownWorkflow,
}


class HeldElsewhere(UsageError):
    """``terminate_existing`` for a run another engine holds (nothing written).

    The engine's caller catches it (`terminate_then_start`); it escapes only if a run is
    not terminated in time.

    Attributes:
        record: The running run, as read from the store.
        reason: Why it is terminated, as its history will say.
    """

    def __init__(
        self, record: WorkflowRecord, reason: str = "terminated by a new start"
    ) -> None:
        super().__init__(
            f"workflow {record.workflow_id!r} runs on another engine of the fleet: "
            f"on_conflict='terminate_existing' terminates it through that engine"
        )
        self.record = record
        self.reason = reason


# -- updates ------------------------------------------------------------------------------------


def post_update(
    loop: DecisionLoop,
    workflow_id: str,
    update: dict[str, JsonValue],
    record: WorkflowRecord,
    txn: Txn,
) -> tuple[str, object]:
    """Post an update to the engine holding *record*, in the batch.

    Args:
        loop: The decision loop (the update's result type is read from a replay of the
            run when its code is here).
        workflow_id: The workflow id.
        update: name, args, update_id, given_id, and the token of an update this engine
            passes on (none for its own caller's: a fresh one).
        record: The running run, as read from the store.
        txn: The batch.

    Returns:
        The caller's token and the type the update's result decodes to.
    """
    token = str(update.get("token") or uuid.uuid4().hex)
    body = {**update, "token": token}
    txn.batch.messages.append(Message(workflow_id, record.run_id, "update", body))
    result_type: object = object
    try:  # the handler's annotation, if this engine has the workflow's code
        interp = loop.cache.replayed(workflow_id, record.run_id)
        handler = interp.updates.handlers.get(str(update["name"]))
        if handler is not None:
            result_type = handler_return_type(handler.handler)
    except FlowgenError:
        pass
    return token, result_type


def refusal_reply(
    workflow_id: str, update_id: str, token: str, error: Exception
) -> Message:
    """The reply to a posted update the holder refused (nothing recorded)."""
    info = (
        error.error
        if isinstance(error, UpdateRejected)
        else ErrorInfo(type(error).__name__, str(error))
    )
    body: dict[str, JsonValue] = {
        "token": token,
        "update_id": update_id,
        "refused": type(error).__name__,
        "error": encode(info),
    }
    return Message(workflow_id, None, "update_reply", body)


class PostedUpdate(Protocol):
    """What a caller waits on for an update posted to another engine (an `UpdateTicket`)."""

    @property
    def workflow_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def update_id(self) -> str: ...
    @property
    def remote(self) -> tuple[str, str] | None: ...
    def value(self, end: Event) -> object: ...


_PENDING: Final = object()
"""What `look_remote_update` returns while the update's answer is not in yet."""


def look_remote_update(store: Store, ticket: PostedUpdate) -> object:
    """One look at the store for the answer to an update posted to another engine.

    Returns the update's result, or `_PENDING` (`remote_pending`) if it is not in yet.

    Raises:
        UpdateRejected, UpdateFailed, WorkflowClosed, UnknownWorkflow: As `Engine.update`.
    """
    assert ticket.remote is not None
    assert isinstance(store, LeasesRuns)
    run_id, token = ticket.remote
    reply, end, status = store.update_answer(run_id, ticket.update_id, token)
    if reply is not None:
        raise _refusal(ticket, reply)
    if end is not None:
        return ticket.value(end)
    if status is not None and status != RunStatus.RUNNING:
        raise WorkflowClosed(
            f"workflow {ticket.workflow_id!r} ended ({status}) before update "
            f"{ticket.name!r} (id {ticket.update_id!r}) finished"
        )
    return _PENDING


def remote_pending(answer: object) -> bool:
    """True if *answer* (from `look_remote_update`) says: not in yet, look again."""
    return answer is _PENDING


def remote_timeout(ticket: PostedUpdate, timeout: float | None) -> TimeoutError:
    """The error of a caller whose *timeout* passed before a posted update's answer."""
    return TimeoutError(
        f"update {ticket.name!r} (id {ticket.update_id!r}) of workflow "
        f"{ticket.workflow_id!r} did not finish within {timeout} s (the run is held by "
        f"another engine of the fleet); it goes on if it was accepted: call update() "
        f"again with update_id={ticket.update_id!r}"
    )


def next_pause(store: Store, pause: float | None) -> float:
    """Seconds before a waiting caller's next look: doubled from a few ms up to the poll."""
    options = (store.fleet_options() if isinstance(store, LeasesRuns) else None) or (
        FleetOptions()
    )
    return _FIRST_LOOK if pause is None else min(pause * 2, options.poll)


def wait_remote_update(
    store: Store,
    ticket: PostedUpdate,
    timeout: float | None,
    failure: Callable[[], BaseException | None],
) -> object:
    """Wait for the answer to an update posted to another engine (see the rules).

    Raises:
        UpdateRejected, UpdateFailed, WorkflowClosed, UnknownWorkflow: As `Engine.update`.
        TimeoutError: *timeout* passed first; the update goes on (if it was accepted).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = None
    while True:
        problem = failure()
        if problem is not None:
            raise problem
        answer = look_remote_update(store, ticket)
        if not remote_pending(answer):
            return answer
        if deadline is not None and time.monotonic() >= deadline:
            raise remote_timeout(ticket, timeout)
        pause = next_pause(store, pause)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        time.sleep(pause if left is None else min(pause, left))


def _refusal(ticket: PostedUpdate, reply: dict[str, JsonValue]) -> FlowgenError:
    info = decode(reply.get("error"), ErrorInfo)
    assert isinstance(info, ErrorInfo)
    refused = str(reply.get("refused", ""))
    if refused in _REFUSALS:
        return _REFUSALS[refused](info.message)
    if refused == "UpdateRejected":
        return UpdateRejected(ticket.workflow_id, ticket.name, info)
    return UsageError(info.message)


# -- terminate_existing -------------------------------------------------------------------------


def terminate_wait(options: FleetOptions) -> float:
    """Seconds a start waits for a run held elsewhere to be terminated: two takeovers."""
    return 2 * (options.lease + options.poll) + 30.0


def terminate_then_start(
    submit: Callable[[Sequence[Item]], list[object]],
    store: Store,
    items: Sequence[Item],
    answers: list[object],
) -> list[object]:
    """The answers to *items*, once the starts refused with `HeldElsewhere` went through.

    Args:
        submit: Queues items on the engine's decision loop; their answers.
        store: The engine's store (a fleet's).
        items: The start items submitted.
        answers: What they were answered with.
    """
    answers = list(answers)
    for _ in range(3):  # a run started again under the id meanwhile: terminate it too
        refused = [
            i for i, answer in enumerate(answers) if isinstance(answer, HeldElsewhere)
        ]
        if not refused:
            return answers
        for i in refused:
            answer = answers[i]
            assert isinstance(answer, HeldElsewhere)
            record = answer.record
            submit([CancelItem(record.workflow_id, answer.reason, terminate=True)])
            _wait_closed(store, record)
        again = [attrs.evolve(items[i], future=None) for i in refused]
        for i, answer in zip(refused, submit(again), strict=True):
            answers[i] = answer
    return answers


def _wait_closed(store: Store, record: WorkflowRecord) -> None:
    assert isinstance(store, LeasesRuns)
    options = store.fleet_options() or FleetOptions()
    deadline = time.monotonic() + terminate_wait(options)
    pause = None
    while True:
        now = store.get_run(record.workflow_id, record.run_id)
        if now is None or now.status != RunStatus.RUNNING:
            return
        if time.monotonic() >= deadline:
            raise UsageError(
                f"workflow {record.workflow_id!r} (run {record.run_id!r}) was not "
                f"terminated by the engine that holds it within "
                f"{terminate_wait(options):.0f} s; nothing was started"
            )
        pause = next_pause(store, pause)
        time.sleep(pause)
