"""A run's life as the interpreter sees it: the status machine, and how values are recorded.

Rules
=====

* **Every legal status change is in `TRANSITIONS`**, keyed by ``(status, trigger)``;
  anything missing is illegal and fails closed (`HistoryCorruptError`): a run starts,
  blocks at a ``yield`` and wakes any number of times, and ends exactly once (a waiting run
  only by termination).
* **Values cross a `Codec`** (``flowgen._stores.codec`` implements it), injected so that the
  pure core never imports cattrs; `PLAIN_VALUES` passes values through for tests and the
  `Stepper`'s defaults.
* **An exception is recorded as data** by `error_info`: its class name, message and
  formatted traceback. A `WorkflowInterrupt` keeps the cause it carries; a `Cancelled`
  keeps its original reason and type.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Mapping
from datetime import datetime
from typing import Final, Protocol

from flowgen._vocabulary.errors import (
    Cancelled,
    ErrorInfo,
    HistoryCorruptError,
    NonRetryableError,
    WorkflowInterrupt,
)
from flowgen._vocabulary.events import (
    Event,
    JsonValue,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
)
from flowgen._vocabulary.status import RunStatus

__all__ = [
    "PLAIN_VALUES",
    "TRANSITIONS",
    "Codec",
    "Trigger",
    "end_event",
    "error_info",
    "message_of",
    "transition",
]


class Codec(Protocol):
    """How the interpreter turns values into JSON and back (``flowgen._stores.codec`` implements it).

    Injected, so the pure core never imports cattrs, and a test can drive the interpreter with
    plain values.
    """

    def encode(self, value: object, what: str) -> JsonValue:
        """Encode *value*; raise `TypeError` naming *what* if it cannot be serialized."""

    def decode(self, payload: JsonValue, type_hint: object) -> object:
        """Decode *payload* into *type_hint*."""


class _PlainValues:
    """The identity codec: values pass through unchanged (for tests and `Stepper` defaults)."""

    def encode(self, value: object, what: str) -> JsonValue:
        return value  # type: ignore[return-value]  # the identity codec trusts its caller

    def decode(self, payload: JsonValue, type_hint: object) -> object:
        return payload


PLAIN_VALUES: Final[Codec] = _PlainValues()


class Trigger(enum.Enum):
    """What moves a run from one status to the next."""

    __hash__ = object.__hash__

    START = "start"
    BLOCK = "block"
    WAKE = "wake"
    RETURN = "return"
    RAISE = "raise"
    CANCEL = "cancel"
    CONTINUE = "continue"
    TERMINATE = "terminate"


TRANSITIONS: Final[Mapping[tuple[RunStatus, Trigger], RunStatus]] = {
    (RunStatus.NEW, Trigger.START): RunStatus.RUNNING,
    (RunStatus.RUNNING, Trigger.BLOCK): RunStatus.WAITING,
    (RunStatus.WAITING, Trigger.WAKE): RunStatus.RUNNING,
    (RunStatus.RUNNING, Trigger.RETURN): RunStatus.COMPLETED,
    (RunStatus.RUNNING, Trigger.RAISE): RunStatus.FAILED,
    (RunStatus.RUNNING, Trigger.CANCEL): RunStatus.CANCELLED,
    (RunStatus.RUNNING, Trigger.CONTINUE): RunStatus.CONTINUED_AS_NEW,
    (RunStatus.WAITING, Trigger.TERMINATE): RunStatus.TERMINATED,
}
"""Every legal status change; anything missing is illegal and fails closed."""


def transition(status: RunStatus, trigger: Trigger) -> RunStatus:
    """The status after *trigger*, or `HistoryCorruptError` if the move is illegal."""
    try:
        return TRANSITIONS[status, trigger]
    except KeyError:
        raise HistoryCorruptError(
            f"a run that is {status.value} cannot {trigger.value}"
        ) from None


def end_event(
    trigger: Trigger,
    now: datetime,
    result: JsonValue,
    continue_args: tuple[list[JsonValue], dict[str, JsonValue]] | None,
    error: ErrorInfo | None,
) -> Event:
    """The event that ends a run by *trigger* (``RETURN``, ``CONTINUE``, ``CANCEL``, ``RAISE``)."""
    if trigger is Trigger.RETURN:
        return WorkflowCompleted(at=now, result=result)
    if trigger is Trigger.CONTINUE:
        assert continue_args is not None
        return WorkflowContinuedAsNew(
            at=now, args=continue_args[0], kwargs=continue_args[1]
        )
    assert error is not None
    if trigger is Trigger.CANCEL:
        return WorkflowCancelled(at=now, error=error)
    return WorkflowErrored(at=now, error=error)


def message_of(exc: BaseException) -> str:
    """``str(exc)``, or what says why there is none: an exception's ``__str__`` may raise.

    Its failure is the failing code's, not the engine's: recorded as the message, it fails
    the attempt (or the run) as data instead of killing the thread that records it.
    """
    try:
        return str(exc)
    except Exception as failure:  # noqa: BLE001  # any __str__ may raise anything
        try:
            why = f"{type(failure).__name__}: {failure}"
        except Exception:  # noqa: BLE001  # ... and so may its own
            why = type(failure).__name__
        return f"<str() of this {type(exc).__name__} raised {why}>"


def error_info(exc: BaseException, *, attempts: int = 0) -> ErrorInfo:
    """Record *exc* as data: its class name, message and formatted traceback."""
    if isinstance(exc, WorkflowInterrupt):
        base = exc.info
        return ErrorInfo(
            type=base.type if isinstance(exc, Cancelled) else type(exc).__name__,
            message=message_of(exc) if not isinstance(exc, Cancelled) else base.message,
            non_retryable=base.non_retryable,
            attempts=attempts or base.attempts,
            traceback="".join(traceback.format_exception(exc)),
            cause="" if isinstance(exc, Cancelled) else base.cause or base.type,
        )
    return ErrorInfo(
        type=type(exc).__name__,
        message=message_of(exc),
        non_retryable=isinstance(exc, NonRetryableError),
        attempts=attempts,
        traceback="".join(traceback.format_exception(exc)),
    )
