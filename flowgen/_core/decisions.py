"""What a leaf command decides the first time it is yielded, and whether a record matches.

The interpreter numbers the leaves of what the workflow yields; for each leaf, this module
says which event records it (`first_event`), whether the event a history holds at its seq
is still the same command (`matches`), and whether the end the code reaches is the one the
history recorded (`same_end`). Pure functions of their arguments: the time and the codec
are parameters.

Rules
=====

* Each kind of leaf has one kind of first event (`FIRST_EVENT_OF`): a decision that
  schedules it (activity, timer, signal wait, child), or the record of a command performed
  on the spot (side effect, signal sent or failed). Those last two decide nothing here:
  the runner performs them and feeds the record in.
* A recorded first event matches a command when the kinds agree and so do the names
  (activity, signal, side effect, child workflow). Arguments are not compared (a changed
  argument is a data change, not a code path change), but they are encoded all the same
  (`check_encodable`): one that cannot be serialized raises the same `TypeError` on a
  replay as on the first run, naming the argument.
* Two ends are the same when they are of the same kind with the same result (or the same
  continue-as-new arguments); failures and cancellations compare by exception type only,
  since messages and tracebacks may hold addresses.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from flowgen._core.dsl import parameter_types
from flowgen._vocabulary.commands import (
    CallActivity,
    Command,
    ContinueAsNew,
    RecordSideEffect,
    SendSignal,
    StartChild,
    StartTimer,
    WaitSignal,
    WorkflowInfo,
)
from flowgen._vocabulary.durations import check_at_most_max
from flowgen._vocabulary.events import (
    ActivityScheduled,
    ChildStarted,
    Event,
    JsonValue,
    SideEffectRecorded,
    SignalSendFailed,
    SignalSent,
    SignalWaitStarted,
    TimerStarted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
    WorkflowStarted,
)

if TYPE_CHECKING:
    from flowgen._core.interpreter import Codec

__all__ = [
    "FIRST_EVENT_OF",
    "check_encodable",
    "decode_arguments",
    "encode_continue_arguments",
    "describe_argument",
    "first_event",
    "matches",
    "outcome_text",
    "positional_names",
    "same_end",
    "signature_of",
]

FIRST_EVENT_OF: Final[Mapping[type, type | tuple[type, ...]]] = {
    CallActivity: ActivityScheduled,
    StartTimer: TimerStarted,
    WaitSignal: SignalWaitStarted,
    StartChild: ChildStarted,
    RecordSideEffect: SideEffectRecorded,
    SendSignal: (SignalSent, SignalSendFailed),
}
"""The first recorded event of each kind of leaf command, for matching by seq."""


def signature_of(fn: Callable[..., object]) -> inspect.Signature | None:
    """*fn*'s signature, read once per function; ``None`` for one without (a builtin).

    ``inspect.signature`` costs 10-20 us, and starts, calls and attempts ask for it: the
    one cache of it. An unhashable callable object is read each time.
    """
    try:
        return _cached_signature(fn)
    except TypeError:  # unhashable: no cache entry for it
        return _cached_signature.__wrapped__(fn)


@functools.lru_cache(maxsize=4096)
def _cached_signature(fn: Callable[..., object]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature
        return None


@functools.lru_cache(maxsize=1024)
def positional_names(fn: Callable[..., object]) -> tuple[tuple[str, ...], str | None]:
    """*fn*'s positional parameter names, and the name of its ``*args`` (or ``None``)."""
    signature = signature_of(fn)
    if signature is None:
        return (), None
    parameters = signature.parameters.values()
    names = tuple(
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
    star = next((p.name for p in parameters if p.kind is p.VAR_POSITIONAL), None)
    return names, star


def describe_argument(fn: Callable[..., object] | None, index: int) -> str:
    """The positional argument *index* of *fn*, for a message: ``argument 'price'``."""
    if fn is not None:
        names, star = positional_names(getattr(fn, "__func__", fn))
        if getattr(fn, "__self__", None) is not None and names:
            names = names[1:]  # a bound method: `self` is not passed
        if index < len(names):
            return f"argument {names[index]!r}"
        if star is not None:
            return f"argument *{star}[{index - len(names)}]"
    return f"positional argument {index}"


def encode_arguments(
    codec: Codec,
    fn: Callable[..., object] | None,
    args: Sequence[object],
    kwargs: Mapping[str, object],
    kind: str,
    name: str,
) -> tuple[list[JsonValue], dict[str, JsonValue]]:
    """Encode the arguments of a call of *kind* (``"activity"``, ``"child workflow"``).

    A `TypeError` names the first argument that cannot be encoded. The messages are
    built only when one fails: formatting them for every argument of every replayed
    step cost more than the encoding.
    """
    encode = codec.encode
    try:
        return (
            [encode(a, kind) for a in args],
            {k: encode(v, kind) for k, v in kwargs.items()},
        )
    except TypeError as exc:
        error = exc
    what = f"of {kind} {name!r}"
    for i, a in enumerate(args):
        encode(a, f"{describe_argument(fn, i)} {what}")
    for k, v in kwargs.items():
        encode(v, f"argument {k!r} {what}")
    raise error  # pragma: no cover - encoding the same values fails the same way


def decode_arguments(
    codec: Codec, fn: Callable[..., object], event: WorkflowStarted
) -> tuple[list[object], dict[str, object]]:
    """The arguments *event* recorded, decoded by the types *fn* annotates."""
    hints = parameter_types(fn)
    names, star = positional_names(fn)
    args = []
    for index, payload in enumerate(event.args):
        name = names[index] if index < len(names) else star
        args.append(codec.decode(payload, hints.get(name or "", object)))
    kwargs = {
        key: codec.decode(payload, hints.get(key, object))
        for key, payload in event.kwargs.items()
    }
    return args, kwargs


def encode_continue_arguments(
    codec: Codec, fn: Callable[..., object], command: ContinueAsNew
) -> tuple[list[JsonValue], dict[str, JsonValue]]:
    """The arguments of ``continue_as_new``, encoded; a `TypeError` names a bad one."""
    encoded_args = [
        codec.encode(a, f"continue_as_new() {describe_argument(fn, i)}")
        for i, a in enumerate(command.args)
    ]
    encoded_kwargs = {
        k: codec.encode(v, f"continue_as_new() argument {k!r}")
        for k, v in command.kwargs.items()
    }
    return encoded_args, encoded_kwargs


def check_encodable(codec: Codec, command: Command) -> None:
    """Raise what `first_event` would raise for *command*, deciding nothing."""
    _check_duration(command)
    match command:
        case CallActivity(name=name, args=args, kwargs=kwargs, fn=fn):
            encode_arguments(codec, fn, args, kwargs, "activity", name)
        case StartChild(name=name, args=args, kwargs=kwargs, fn=fn):
            encode_arguments(codec, fn, args, kwargs, "child workflow", name)
        case SendSignal(payload=payload, name=name):
            codec.encode(payload, f"payload of signal {name!r}")
        case _:
            pass


def _check_duration(command: Command) -> None:
    match command:
        case StartTimer(seconds=seconds):
            check_at_most_max(seconds, "a timer", seconds)
        case WaitSignal(timeout=float() as timeout):
            check_at_most_max(timeout, "a signal wait's timeout", timeout)
        case _:
            pass


def first_event(
    codec: Codec,
    seq: int,
    command: Command,
    now: datetime,
    info: WorkflowInfo | None,
) -> Event | None:
    """The decision that records the leaf *command* at *seq*, decided at *now*.

    ``None`` for a side effect or a signal to send: performed on the spot, they are
    recorded with their outcome. *info* names the run (a child's default id is
    ``"<workflow id>/<seq>"``).

    Raises:
        TypeError: An argument or payload cannot be serialized (the message names it).
        ValueError: A timer or signal timeout is longer than `MAX_SECONDS` (a command
            built by hand: `fg.sleep` and `fg.wait_signal` refuse it where it is given).
    """
    _check_duration(command)
    match command:
        case CallActivity(name=name, args=args, kwargs=kwargs, fn=fn):
            encoded_args, encoded_kwargs = encode_arguments(
                codec, fn, args, kwargs, "activity", name
            )
            return ActivityScheduled(
                at=now, seq=seq, name=name, args=encoded_args, kwargs=encoded_kwargs
            )
        case StartTimer(seconds=seconds):
            return TimerStarted(
                at=now, seq=seq, fire_at=now + timedelta(seconds=seconds)
            )
        case WaitSignal(name=name, timeout=timeout):
            deadline = None if timeout is None else now + timedelta(seconds=timeout)
            return SignalWaitStarted(at=now, seq=seq, name=name, deadline=deadline)
        case StartChild(
            name=name, args=args, kwargs=kwargs, workflow_id=child_id, fn=fn
        ):
            encoded_args, encoded_kwargs = encode_arguments(
                codec, fn, args, kwargs, "child workflow", name
            )
            assert info is not None  # a started run
            return ChildStarted(
                at=now,
                seq=seq,
                name=name,
                child_id=child_id or f"{info.workflow_id}/{seq}",
                args=encoded_args,
                kwargs=encoded_kwargs,
            )
        case SendSignal(payload=payload, name=name):
            codec.encode(payload, f"payload of signal {name!r}")
            return None
        case _:  # RecordSideEffect: performed on the spot, recorded with its value
            return None


def matches(command: Command, recorded: Event) -> bool:
    """True if *recorded*, the first event at the command's seq, still records *command*."""
    if not isinstance(recorded, FIRST_EVENT_OF[type(command)]):
        return False
    name = getattr(command, "name", None)
    recorded_name = getattr(recorded, "name", None)
    return recorded_name is None or name is None or name == recorded_name


def same_end(recorded: Event, event: Event) -> bool:
    """True if the code ends the run the way the history recorded it."""
    # Failures compare by exception type only: messages and tracebacks may hold addresses.
    match recorded, event:
        case WorkflowCompleted(result=before), WorkflowCompleted(result=now):
            return before == now
        case (
            WorkflowContinuedAsNew(args=args_before, kwargs=kwargs_before),
            WorkflowContinuedAsNew(args=args_now, kwargs=kwargs_now),
        ):
            return (args_before, kwargs_before) == (args_now, kwargs_now)
        case (WorkflowErrored(error=before), WorkflowErrored(error=now)) | (
            WorkflowCancelled(error=before),
            WorkflowCancelled(error=now),
        ):
            return before.type == now.type
    return False


def outcome_text(event: Event) -> str:
    """An end's result or error, for a message."""
    if isinstance(event, WorkflowCompleted):
        return f"result {event.result!r:.80}"
    error = getattr(event, "error", None)
    return str(error) if error is not None else "no result"
