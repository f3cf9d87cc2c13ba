"""Updates: what a run knows about its update handlers and the updates it accepted.

An update (`fg.on_update`, `Engine.update`) is a request that may change the workflow's
state and answers with a result. This module owns the update side of one `Interpreter`;
the interpreter drives the handlers' generators with the same code as the main one.

Rules
=====

* **Validation records nothing.** `UpdateState.validate` finds the handler registered under
  the update's name, decodes the arguments for it and calls its validator, against the
  workflow's current state (the owning engine does it on the decision loop, just before it
  records the update). Any failure (no such handler, arguments that do not fit, a validator
  that raises or yields) is `UpdateRejected`, and the history is unchanged. A validator is
  never called on replay: the history says the update was accepted.
* **An accepted update is an incoming event.** ``update_accepted`` is fed in history order
  like a signal, so the handler runs at the same point on every replay. Its update id must
  be new in the run (a second one is `HistoryCorruptError`), and today's code must have a
  handler of that name registered at that point (else `NonDeterminismError`).
* Validators and handlers are workflow code (`flowgen._core.workflow_code`): an activity
  called directly in one raises `UsageError` (a rejection, or the update's failure).
* **A handler is a concurrent branch.** A plain function's return value is the result at
  once. A generator function becomes an `UpdateBranch`: its commands take sequence numbers
  from the run's one counter, in the order they are yielded (deterministic, since the events
  that wake the main code and the handlers are fed in history order); when an outcome
  resolves what a branch awaits, the branch runs, branches in the order they were woken,
  before the main code (only a cancel wakes both at once). A handler may not
  `continue_as_new` (a `TypeError` at its yield).
* **A handler's end is a decision.** Returning records ``update_completed`` with the encoded
  result; raising (a result that cannot be encoded included) records ``update_failed``;
  neither ends the run. On replay the recorded end must be the one the code reaches
  (`same_update_end`: the same result, or the same exception type), and a recorded end the
  code never reaches is `NonDeterminismError` once the whole history is fed.
* **Cancellation and the run's end.** A cancel request cancels every awaited command and
  throws `Cancelled` into every running handler, then into the main code, so a handler ends
  (or catches it) before the main code can end the run. When the run ends, handlers still
  running are closed and record nothing: their callers hear that the run closed
  (`WorkflowClosed`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowgen._core.decisions import positional_names
from flowgen._core.dsl import parameter_types
from flowgen._core.lifecycle import message_of
from flowgen._core.workflow_code import IN_WORKFLOW_CODE
from flowgen._vocabulary.commands import RegisterUpdate
from flowgen._vocabulary.errors import ErrorInfo, HistoryCorruptError, UpdateRejected
from flowgen._vocabulary.events import (
    Event,
    JsonValue,
    UpdateAccepted,
    UpdateCompleted,
    UpdateErrored,
)

if TYPE_CHECKING:
    from flowgen._core.interpreter import Codec

__all__ = [
    "RUNNING",
    "UpdateBranch",
    "UpdateState",
    "decode_update_args",
    "end_mismatch",
]

RUNNING = "running"
"""What `UpdateState.outcome` says of an update accepted and not ended yet."""


class UpdateBranch:
    """One accepted update whose handler is a generator still running.

    Attributes:
        update_id: The update's id.
        name: The update's name.
        gen: The handler's generator.
        ready: What to send (``(True, value)``) or throw (``(False, exc)``) into it next,
            once woken; ``None`` while it waits.
    """

    __slots__ = ("gen", "name", "ready", "update_id")

    def __init__(
        self, update_id: str, name: str, gen: Generator[Any, Any, object]
    ) -> None:
        self.update_id = update_id
        self.name = name
        self.gen = gen
        self.ready: tuple[bool, object] | None = None


class UpdateState:
    """The handlers a run registered and the updates it accepted (owned by an interpreter).

    Attributes:
        handlers: The registered handlers, by update name.
        running: Accepted updates whose handler has not ended, by update id, in the order
            they were accepted.
        woken: Branches with something to send or throw, in the order they were woken.
        roots: What each waiting branch awaits (the root of its tree of awaited commands),
            to find the branch when that root is resolved. Keys are the interpreter's
            nodes, compared by identity.
        ends: How each update ended, by update id (decided here or replayed).
        accepted: Every update id accepted so far.
    """

    __slots__ = ("accepted", "ends", "handlers", "roots", "running", "woken")

    def __init__(self) -> None:
        self.handlers: dict[str, RegisterUpdate] = {}
        self.running: dict[str, UpdateBranch] = {}
        self.woken: list[UpdateBranch] = []
        self.roots: dict[object, UpdateBranch] = {}
        self.ends: dict[str, Event] = {}
        self.accepted: set[str] = set()

    def outcome(self, update_id: str) -> Event | str | None:
        """How the update *update_id* stands: its end event, `RUNNING`, or ``None`` (unknown)."""
        end = self.ends.get(update_id)
        if end is not None:
            return end
        return RUNNING if update_id in self.accepted else None

    def validate(
        self,
        codec: Codec,
        workflow_id: str,
        name: str,
        args: Sequence[JsonValue],
    ) -> None:
        """Call the validator of update *name* with *args* (encoded); record nothing.

        Raises:
            UpdateRejected: No handler of that name, arguments that do not fit it, or its
                validator raised (that exception is the ``__cause__``).
        """
        registration = self.handlers.get(name)
        if registration is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise UpdateRejected(
                workflow_id,
                name,
                ErrorInfo(
                    "UnknownUpdate",
                    f"the workflow has no update handler {name!r} (registered: {known})",
                ),
            )
        try:
            values = decode_update_args(codec, registration.handler, args)
            if registration.validator is None:
                return
            answer = _as_workflow_code(registration.validator, values)
        except Exception as exc:
            raise UpdateRejected(
                workflow_id, name, ErrorInfo(type(exc).__name__, message_of(exc))
            ) from exc
        if inspect.isgenerator(answer):
            answer.close()
            raise UpdateRejected(
                workflow_id,
                name,
                ErrorInfo(
                    "TypeError",
                    f"the validator of update {name!r} is a generator function; a "
                    f"validator must be a plain function that raises to reject",
                ),
            )

    def accept(self, codec: Codec, event: UpdateAccepted) -> tuple[bool, object] | None:
        """Call the handler of the accepted update *event* (registered: the caller checked).

        Returns:
            How a plain function ended, ``(True, its value)`` or ``(False, its exception)``;
            ``None`` when it is a generator function, now a woken `UpdateBranch`.

        Raises:
            HistoryCorruptError: The run accepted this update id before.
        """
        if event.update_id in self.accepted:
            raise HistoryCorruptError(f"update {event.update_id!r} is accepted twice")
        self.accepted.add(event.update_id)
        handler = self.handlers[event.name].handler
        try:
            answer = _as_workflow_code(
                handler, decode_update_args(codec, handler, event.args)
            )
        except Exception as exc:  # noqa: BLE001  # the handler's failure ends the update
            return False, exc
        if not inspect.isgenerator(answer):
            return True, answer
        branch = UpdateBranch(event.update_id, event.name, answer)
        branch.ready = (True, None)
        self.running[event.update_id] = branch
        self.woken.append(branch)
        return None

    def end(
        self,
        codec: Codec,
        now: datetime,
        update_id: str,
        name: str,
        outcome: tuple[bool, object],
        describe: Callable[[BaseException], ErrorInfo],
    ) -> UpdateCompleted | UpdateErrored:
        """The update's handler ended with *outcome* (ok, value or exception): its event.

        A result that cannot be encoded fails the update (its `TypeError` is recorded);
        *describe* records an exception as data (`flowgen.error_info`).
        """
        self.running.pop(update_id, None)
        ok, value = outcome
        event: UpdateCompleted | UpdateErrored | None = None
        if ok:
            try:
                result = codec.encode(value, f"the result of update {name!r}")
                event = UpdateCompleted(
                    at=now, update_id=update_id, name=name, result=result
                )
            except TypeError as exc:
                value = exc
        if event is None:
            assert isinstance(value, BaseException)
            event = UpdateErrored(
                at=now, update_id=update_id, name=name, error=describe(value)
            )
        self.ends[update_id] = event
        return event

    def close(self) -> None:
        """The run ended: close every running handler, which records nothing more."""
        branches = list(self.running.values())
        self.running.clear()
        self.woken.clear()
        self.roots.clear()
        for branch in branches:
            try:
                branch.gen.close()
            except RuntimeError:  # a `yield` inside `finally:`; unsupported
                pass


def _as_workflow_code(fn: Callable[..., object], args: Sequence[object]) -> object:
    """Call a validator or handler as workflow code (`flowgen._core.workflow_code`)."""
    mark = IN_WORKFLOW_CODE.set(True)
    try:
        return fn(*args)
    finally:
        IN_WORKFLOW_CODE.reset(mark)


def decode_update_args(
    codec: Codec, handler: Callable[..., object], args: Sequence[JsonValue]
) -> list[object]:
    """Decode an update's encoded *args* with *handler*'s parameter annotations."""
    hints = parameter_types(handler)
    names, star = positional_names(handler)
    values = []
    for index, payload in enumerate(args):
        name = names[index] if index < len(names) else star
        values.append(codec.decode(payload, hints.get(name or "", object)))
    return values


def end_mismatch(recorded: Event, event: Event) -> str | None:
    """Why a handler's end differs from the one the history recorded, or ``None``.

    The same end is the same result, or the same exception type (messages and tracebacks
    may hold addresses).
    """
    match recorded, event:
        case UpdateCompleted(result=before), UpdateCompleted(result=now) if (
            before == now
        ):
            return None
        case UpdateErrored(error=before), UpdateErrored(error=now) if (
            before.type == now.type
        ):
            return None
    return (
        f"the history records {_end_text(recorded)} for update "
        f"{getattr(recorded, 'update_id', '?')!r}, but the code now ends it with "
        f"{_end_text(event)}"
    )


def _end_text(event: Event) -> str:
    if isinstance(event, UpdateCompleted):
        return f"update_completed (result {event.result!r:.80})"
    return f"update_failed ({getattr(event, 'error', '')})"
