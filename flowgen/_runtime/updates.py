"""Updates at run time: `Engine.update` reaching a run's handler, and its caller waiting.

The pure side (validators, handlers as branches, replay) is ``_core/updates.py``; this
module is what the decision loop does with an update, and what its caller waits on.

Rules:

- An update reaches the decision loop as an `UpdateItem`, like a signal. The loop applies
  it to the run's interpreter in its batch: first the idempotency check, then the validator
  (`Interpreter.validate_update`), against the run's current state, recording nothing; only
  then ``update_accepted`` is recorded and fed, which calls the handler. So a rejected update
  (`UpdateRejected`: the validator raised, no such handler, arguments that do not fit, a run
  stuck in this process) changes nothing, and an accepted one is committed before anyone
  hears of it.
- The item is answered with an `UpdateTicket` once its batch is committed: a future of the
  update's end. The loop sets it after the commit of the batch that records the handler's
  end (``update_completed`` / ``update_failed``), or fails it with `WorkflowClosed` after
  the commit of the batch that closes the run first (a handler still running then is closed
  and records nothing). `UpdateWaiters` holds the tickets; it belongs to the decision loop
  and is touched only under its lock (apply, and the effects run after a commit).
- Idempotency: an update id is unique in its run. An update whose id the run already
  accepted is not validated nor recorded again: the ticket waits for that update's end, or
  has it at once. After the run has closed, a call with an id the run recorded an end for
  still gets that end (the closed run is replayed to find it); any other call to a closed
  run is `WorkflowClosed`.
- An update to a run another engine of a fleet holds is posted to it, and one posted
  here is applied like a local one but answered by a reply in the store
  (`flowgen._runtime.fleet_requests`).
- The caller waits on the ticket (`flowgen._runtime.results.ResultWaiter.update_end`): a
  timeout leaves the update running, and a call with the same update id later gets its
  answer. A completed update's result is decoded to the handler's return annotation.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from flowgen._core.dsl import handler_return_type
from flowgen._core.interpreter import Interpreter
from flowgen._core.updates import RUNNING
from flowgen._runtime.arguments import timeout_argument
from flowgen._runtime.fleet_requests import post_update, refusal_reply
from flowgen._runtime.items import Item, Key
from flowgen._stores.codec import check_text, decode, encode
from flowgen._stores.protocol import Message, WorkflowRecord
from flowgen._vocabulary.commands import describe_command
from flowgen._vocabulary.errors import (
    ErrorInfo,
    FlowgenError,
    HistoryCorruptError,
    NonDeterminismError,
    UnknownWorkflow,
    UpdateFailed,
    UpdateRejected,
    UsageError,
    WorkflowClosed,
)
from flowgen._vocabulary.events import (
    Event,
    JsonValue,
    UpdateAccepted,
    UpdateCompleted,
    UpdateErrored,
)
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:  # the loop is handed in; this module only names its type
    from flowgen._runtime.items import Run, Txn
    from flowgen._runtime.loop import DecisionLoop

__all__ = [
    "UpdateItem",
    "UpdateTicket",
    "UpdateWaiters",
    "accept_by_hand",
    "answer_of",
    "apply_update",
    "update_item",
    "update_of",
]

_STUCK_ERRORS = (UnknownWorkflow, NonDeterminismError, HistoryCorruptError)
_REFUSED = (UpdateRejected, WorkflowClosed, UnknownWorkflow, UsageError)
"""What a posted update's holder replies to its caller instead of raising."""


@attrs.define(eq=False)
class UpdateItem(Item):
    """An update for the current run of *workflow_id* (from `Engine.update`).

    Attributes:
        workflow_id: The workflow id.
        name: The update's name.
        args: Encoded positional arguments.
        update_id: The update's id (the caller's, or a fresh one).
        given_id: True if the caller chose *update_id* (only such an id can already be
            recorded in a closed run).
        reply_to: The token of an engine of the fleet that posted it (its refusal is
            replied to that token: `flowgen._runtime.fleet_requests`); ``None`` for a
            caller of this engine.
    """

    workflow_id: str
    name: str
    args: list[JsonValue]
    update_id: str
    given_id: bool = False
    reply_to: str | None = None


@attrs.frozen(eq=False)
class UpdateTicket:
    """What an `UpdateItem` is answered with: where the update's end will be told.

    Attributes:
        workflow_id: The workflow id.
        name: The update's name.
        update_id: The update's id.
        result_type: The type a completed update's result decodes to.
        end: Set to the ``update_completed`` / ``update_failed`` event once that is
            committed, or to `WorkflowClosed` if the run closes first.
        remote: (run id, token) of an update posted to the run's holder on another engine
            of the fleet: *end* is not set, the caller reads the store
            (`flowgen._runtime.fleet_requests.wait_remote_update`).
    """

    workflow_id: str
    name: str
    update_id: str
    result_type: object = object
    end: Future[Event] = attrs.field(factory=Future)
    remote: tuple[str, str] | None = None

    def value(self, end: Event) -> object:
        """The decoded result of a completed update, or `UpdateFailed` for a failed one."""
        if isinstance(end, UpdateCompleted):
            return decode(end.result, self.result_type)
        error = getattr(end, "error", None) or ErrorInfo("UpdateFailed", "")
        raise UpdateFailed(self.workflow_id, self.name, self.update_id, error)


def update_item(
    workflow_id: str,
    name: object,
    args: Sequence[object],
    update_id: object,
    timeout: object,
) -> UpdateItem:
    """Check `Engine.update`'s arguments and encode them: clear errors, nothing recorded.

    Raises:
        TypeError: A name or update id that is not a non-empty string, or an argument that
            cannot be serialized (named by its position).
        ValueError: A timeout that is not seconds >= 0 (or ``None``).
    """
    if not isinstance(name, str) or not name:
        raise UsageError(f"an update name must be a non-empty string, got {name!r}")
    check_text(name, "the update name")
    given = update_id is not None
    if update_id is None:
        update_id = uuid.uuid4().hex
    elif not isinstance(update_id, str) or not update_id:
        raise UsageError(
            f"update_id must be a non-empty string or None, got {update_id!r}"
        )
    check_text(update_id, "the update id")
    timeout = timeout_argument(timeout)
    encoded = [
        encode(arg, f"argument {index} of update {name!r}")
        for index, arg in enumerate(args)
    ]
    return UpdateItem(workflow_id, name, encoded, update_id, given_id=given)


def update_of(message: Message) -> UpdateItem:
    """The item of an update another engine of the fleet posted (see `UpdateItem`)."""
    body = message.body
    args = body.get("args")
    return UpdateItem(
        message.workflow_id,
        str(body["name"]),
        list(args) if isinstance(args, list) else [],
        str(body["update_id"]),
        given_id=bool(body.get("given_id")),
        reply_to=str(body["token"]),
        message=message.id,
    )


class UpdateWaiters:
    """Tickets waiting for updates to end, by run and update id (the loop's; its lock)."""

    def __init__(self) -> None:
        self._waiting: dict[Key, dict[str, list[UpdateTicket]]] = {}

    def wait(self, key: Key, ticket: UpdateTicket) -> None:
        """Hold *ticket* until the update ends or the run closes."""
        self._waiting.setdefault(key, {}).setdefault(ticket.update_id, []).append(
            ticket
        )

    def ended(self, key: Key, event: UpdateCompleted | UpdateErrored) -> None:
        """The update's end was committed: tell its tickets (after the commit)."""
        by_id = self._waiting.get(key)
        if by_id is None:
            return
        for ticket in by_id.pop(event.update_id, ()):
            if not ticket.end.done():
                ticket.end.set_result(event)
        if not by_id:
            del self._waiting[key]

    def run_closed(self, key: Key, status: RunStatus) -> None:
        """The run's close was committed: its updates still running never end."""
        for tickets in self._waiting.pop(key, {}).values():
            for ticket in tickets:
                if not ticket.end.done():
                    ticket.end.set_exception(
                        WorkflowClosed(
                            f"workflow {ticket.workflow_id!r} ended ({status.value}) "
                            f"before update {ticket.name!r} (id {ticket.update_id!r}) "
                            f"finished"
                        )
                    )

    def abandon(self, error: Exception) -> None:
        """The engine closed: no ticket will hear from this process any more."""
        waiting, self._waiting = self._waiting, {}
        for by_id in waiting.values():
            for tickets in by_id.values():
                for ticket in tickets:
                    if not ticket.end.done():
                        ticket.end.set_exception(error)


def apply_update(loop: DecisionLoop, item: UpdateItem, txn: Txn) -> UpdateTicket | None:
    """Apply *item* on the decision loop: the answer is the ticket its caller waits on.

    An update another engine of the fleet posted (`UpdateItem.reply_to`) is answered
    with ``None``: a refusal is replied to its caller in the batch.

    Raises:
        UpdateRejected: See the module docstring; nothing was recorded.
        UnknownWorkflow: No run has this id.
        WorkflowClosed: The run has finished (and recorded no end for this update id).
    """
    if item.reply_to is None:
        return _apply(loop, item, txn)
    try:
        _apply(loop, item, txn)
    except _REFUSED as exc:
        reply = refusal_reply(item.workflow_id, item.update_id, item.reply_to, exc)
        txn.batch.messages.append(reply)
    return None


def _apply(loop: DecisionLoop, item: UpdateItem, txn: Txn) -> UpdateTicket:
    run = loop.table.running(item.workflow_id)
    if run is None:
        if loop.fleet is not None:  # held by another engine of the fleet: post it there
            record = loop.store.get_run(item.workflow_id)
            if loop.fleet.runs_elsewhere(record):
                assert record is not None
                return _posted(loop, item, record, txn)
        return _closed_run_answer(loop, item)
    interp = _interpreter(loop, run, item)
    handler = interp.updates.handlers.get(item.name)
    ticket = UpdateTicket(
        item.workflow_id,
        item.name,
        item.update_id,
        object if handler is None else handler_return_type(handler.handler),
    )
    known = interp.update_outcome(item.update_id)
    local = item.reply_to is None  # a posted update's caller reads the store
    if isinstance(known, str) and known == RUNNING:
        if local:
            loop.updates.wait(run.key, ticket)
        return ticket
    if known is not None and not isinstance(known, str):
        # Its end is in the interpreter: committed, or in this batch (whose commit the
        # caller hears of first).
        ticket.end.set_result(known)
        return ticket
    interp.validate_update(item.name, item.args)
    if local:
        loop.updates.wait(run.key, ticket)
    accepted = UpdateAccepted(
        at=loop.clock.now(), update_id=item.update_id, name=item.name, args=item.args
    )
    loop.feed_run(run, accepted, txn, interp)
    return ticket


def _posted(
    loop: DecisionLoop, item: UpdateItem, record: WorkflowRecord, txn: Txn
) -> UpdateTicket:
    """Post *item* to the engine of the fleet holding *record*; the caller's ticket."""
    update: dict[str, JsonValue] = {
        "name": item.name,
        "args": item.args,
        "update_id": item.update_id,
        "given_id": item.given_id,
        "token": item.reply_to,
    }
    token, result_type = post_update(loop, item.workflow_id, update, record, txn)
    return UpdateTicket(
        item.workflow_id,
        item.name,
        item.update_id,
        result_type,
        remote=(record.run_id, token),
    )


def _interpreter(loop: DecisionLoop, run: Run, item: UpdateItem) -> Interpreter:
    """The run's live interpreter, or `UpdateRejected` if the run cannot move here."""
    if run.stuck is None:
        try:
            return loop.cache.get(run)
        except _STUCK_ERRORS as exc:
            loop.stick(run, exc)
    stuck = run.stuck
    raise UpdateRejected(
        item.workflow_id,
        item.name,
        ErrorInfo(
            type(stuck).__name__,
            f"the run cannot move in this process ({stuck}); fix its code and reopen",
        ),
    )


def _closed_run_answer(loop: DecisionLoop, item: UpdateItem) -> UpdateTicket:
    """A run that is not running: the recorded end of this update id, else the error."""
    run_id = loop.table.current.get(item.workflow_id)
    if item.given_id:
        if run_id is None:
            record = loop.store.get_run(item.workflow_id)
            run_id = None if record is None else record.run_id
        if run_id is not None:
            try:
                interp = loop.cache.replayed(item.workflow_id, run_id)
            except FlowgenError:  # its code is not here: no recorded answer to give
                interp = None
            known = None if interp is None else interp.update_outcome(item.update_id)
            if interp is not None and known is not None and not isinstance(known, str):
                handler = interp.updates.handlers.get(item.name)
                ticket = UpdateTicket(
                    item.workflow_id,
                    item.name,
                    item.update_id,
                    object if handler is None else handler_return_type(handler.handler),
                )
                ticket.end.set_result(known)
                return ticket
    loop.open_run(item.workflow_id, takes="updates")  # raises why it is not running
    raise AssertionError("unreachable: the run is not running")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# The Stepper's updates: the same checks and events, with no decision loop.


def accept_by_hand(
    interp: Interpreter,
    workflow_id: str,
    now: datetime,
    name: object,
    args: Sequence[object],
    update_id: str | None,
    accepted: Sequence[str],
) -> UpdateAccepted | None:
    """The ``update_accepted`` event a `Stepper` feeds, or ``None`` for a known update id.

    The checks of `Engine.update` (`update_item`, then the validator), in the same order;
    an id the run already accepted is answered by `answer_of`, not accepted again. A fresh
    id is ``update-<n>``, the first not among *accepted*, so a stepped history is the same
    on every run.

    Raises:
        UpdateRejected, TypeError, ValueError: As `Engine.update`; nothing is recorded.
    """
    if update_id is None:
        number = len(accepted) + 1
        while f"update-{number}" in accepted:
            number += 1
        update_id = f"update-{number}"
    item = update_item(workflow_id, name, args, update_id, None)
    if interp.update_outcome(item.update_id) is not None:
        return None
    interp.validate_update(item.name, item.args)
    return UpdateAccepted(
        at=now, update_id=item.update_id, name=item.name, args=item.args
    )


def answer_of(interp: Interpreter, update_id: str) -> object:
    """The result of the update *update_id* as `Engine.update` returns it (or raises).

    Raises:
        UpdateFailed: Its handler raised.
        LookupError: The run never accepted an update with this id.
        RuntimeError: Its handler still runs (its commands are pending).
    """
    outcome = interp.update_outcome(update_id)
    if outcome is None:
        raise LookupError(f"the run accepted no update with id {update_id!r}")
    if isinstance(outcome, str):
        raise RuntimeError(
            f"update {update_id!r} is still running: its handler waits for "
            f"{', '.join(describe_command(c) for c in interp.pending.values()) or 'nothing'}"
        )
    name = str(getattr(outcome, "name", ""))
    handler = interp.updates.handlers.get(name)
    workflow_id = interp.info.workflow_id if interp.info is not None else ""
    ticket = UpdateTicket(
        workflow_id,
        name,
        update_id,
        object if handler is None else handler_return_type(handler.handler),
    )
    return ticket.value(outcome)
