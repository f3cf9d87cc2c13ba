"""The Stepper's helpers that hold no stepper state, and `check_replay`.

What is here: positions of outcomes in a history and its prefixes (for `Stepper.fork` and
`Stepper.from_history`), encoding a workflow's arguments with messages that name them,
running an activity in-process (also inside a running event loop), the events `Stepper.send`
and `Stepper.throw` record for a hand-given outcome, one-line descriptions of events, and
`check_replay` with its `ReplayResult`.

Rules: everything a Stepper records is built by these functions from what the caller gives
them (the interpreter, the clock, the next signal index); none of them keeps state between
calls. The events are the ones the engine records for the same outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attrs

from flowgen._core.dsl import workflow_return_type
from flowgen._core.history import is_incoming
from flowgen._core.interpreter import Interpreter, RunStatus, error_info
from flowgen._runtime.clock import ManualClock
from flowgen._runtime.invoke import ActivityInfo, Beat, argument_names, run_attempt
from flowgen._stores.codec import CODEC
from flowgen._vocabulary.commands import (
    CallActivity,
    Command,
    RecordSideEffect,
    SendSignal,
    StartChild,
    WaitSignal,
    describe_command,
)
from flowgen._vocabulary.errors import (
    ErrorInfo,
    HistoryCorruptError,
    SignalTimeout,
)
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    ActivityCompleted,
    ActivityFailed,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    Event,
    JsonValue,
    SideEffectRecorded,
    SignalReceived,
    SignalSendFailed,
    SignalSent,
    SignalTimedOut,
    SignalWaitStarted,
    WorkflowStarted,
)

__all__ = ["ReplayResult", "check_replay"]

R = TypeVar("R")

WorkflowFn = Callable[..., Generator[Any, Any, R]]

_RUN_NUMBER = re.compile(r"^(.*-)(\d+)$")


def outcome_positions(history: Sequence[Event]) -> list[int]:
    """Indices of the outcomes (incoming events after ``workflow_started``)."""
    return [i for i, e in enumerate(history) if i and is_incoming(e)]


def prefix(history: Sequence[Event], k: int) -> list[Event]:
    """The first *k* outcomes of *history* with the decisions that follow each of them."""
    positions = outcome_positions(history)
    if not 0 <= k <= len(positions):
        raise ValueError(
            f"k must be between 0 and {len(positions)} (the outcomes recorded), got {k}"
        )
    return list(history[: positions[k]] if k < len(positions) else history)


def started_event(history: Sequence[Event]) -> WorkflowStarted:
    """The ``workflow_started`` event a history must begin with."""
    first = history[0] if history else None
    if not isinstance(first, WorkflowStarted):
        raise HistoryCorruptError("a history must begin with a workflow_started event")
    return first


def next_run_id(run_id: str) -> str:
    """The run id after *run_id*: ``run-1`` becomes ``run-2``, ``x`` becomes ``x-2``."""
    match = _RUN_NUMBER.match(run_id)
    return f"{match.group(1)}{int(match.group(2)) + 1}" if match else f"{run_id}-2"


def encode_arguments(
    fn: Callable[..., object],
    what: str,
    args: Sequence[object],
    kwargs: dict[str, object],
) -> tuple[list[JsonValue], dict[str, JsonValue]]:
    """Encode a call's arguments; a `TypeError` names the one that cannot be."""
    names, star = argument_names(fn)

    def name(index: int) -> str:
        if index < len(names):
            return f"argument {names[index]!r}"
        return (
            f"argument *{star}[{index - len(names)}]"
            if star
            else f"positional argument {index}"
        )

    encoded_args = [CODEC.encode(a, f"{name(i)} of {what}") for i, a in enumerate(args)]
    encoded_kwargs = {
        k: CODEC.encode(v, f"argument {k!r} of {what}") for k, v in kwargs.items()
    }
    return encoded_args, encoded_kwargs


def call_activity(
    fn: Callable[..., object],
    args: list[object],
    kwargs: dict[str, object],
    info: ActivityInfo,
    timeout: float | None = None,
    *,
    beat: Beat | None = None,
) -> object:
    """One attempt, in-process; ``async def`` activities get a fresh event loop.

    Inside a running loop (a Jupyter cell) that fresh loop runs on a helper thread.
    *timeout* is not enforced: the Stepper runs every attempt to its end. *beat* gets the
    attempt's heartbeat details (the next attempt's ``heartbeat_details``).
    """
    del timeout
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  # async callable objects too
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running here: asyncio.run() is allowed
        is_async = False
    if not is_async:  # a plain function stays on this thread (thread-bound resources)
        return run_attempt(fn, args, kwargs, info, beat=beat)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run_attempt, fn, args, kwargs, info, beat=beat).result()


def _child_id(interp: Interpreter, seq: int) -> str:
    started = interp.scheduled_event(seq)
    assert isinstance(started, ChildStarted)
    return started.child_id


def no_value(value: object, command: Command, instead: str) -> None:
    """Refuse a value sent to a command that takes none."""
    if value is not None:
        raise TypeError(
            f"{describe_command(command)} takes no value; send(None) or {instead}, "
            f"got {value!r}"
        )


def describe_pending(pending: Mapping[int, Command]) -> str:
    """``seq 0: activity 'charge', seq 1: timer``, or ``nothing``."""
    if not pending:
        return "nothing"
    return ", ".join(
        f"seq {s}: {describe_command(c)}" for s, c in sorted(pending.items())
    )


def refuse_a_tuple_for_the_group(pending: Mapping[int, Command], value: object) -> None:
    """Refuse a tuple with one item per pending command, sent without a seq.

    ``a, b = yield fg.gather(...)`` receives a tuple, but each branch has its own outcome
    (and its own event), as in the engine: such a tuple is a mistake, said clearly.
    """
    if len(pending) > 1 and isinstance(value, tuple) and len(value) == len(pending):
        raise TypeError(
            f"the workflow waits on {len(pending)} commands at once (gather or race): "
            f"{describe_pending(pending)}; send one outcome per branch: "
            f"send(value, seq=N) for each (to send this tuple to one command, give "
            f"its seq=)"
        )


def sent_event(
    interp: Interpreter,
    seq: int,
    command: Command,
    value: object,
    *,
    now: datetime,
    signal_index: int,
) -> Event:
    """The event that resolves the pending *command* at *seq* with *value* (not a timer).

    Raises:
        TypeError: *value* cannot be serialized, or the command takes none.
    """
    what = f"value sent to {describe_command(command)} (seq {seq})"
    match command:
        case CallActivity():
            return ActivityCompleted(
                at=now,
                seq=seq,
                value=CODEC.encode(value, what),
                attempt=interp.attempts(seq)[0] + 1,
            )
        case WaitSignal(name=name):
            return SignalReceived(
                at=now, name=name, payload=CODEC.encode(value, what), index=signal_index
            )
        case RecordSideEffect(name=name):
            return SideEffectRecorded(
                at=now, seq=seq, name=name, value=CODEC.encode(value, what)
            )
        case StartChild():
            return ChildCompleted(
                at=now,
                seq=seq,
                child_id=_child_id(interp, seq),
                value=CODEC.encode(value, what),
            )
        case SendSignal(workflow_id=target, name=name):
            no_value(value, command, "send(None)")
            return SignalSent(at=now, seq=seq, workflow_id=target, name=name)
    raise AssertionError(command)  # pragma: no cover  # timers are fired by the Stepper


def thrown_event(
    interp: Interpreter,
    seq: int,
    command: Command,
    exc: BaseException,
    *,
    clock: ManualClock,
) -> Event:
    """The event that fails the pending *command* at *seq* with *exc*.

    A signal wait's timeout moves *clock* to the wait's deadline first.

    Raises:
        TypeError: The command cannot fail that way.
        ValueError: A wait without a timeout is timed out.
    """
    now = clock.now()
    match command:
        case CallActivity():
            attempt = interp.attempts(seq)[0] + 1
            return ActivityFailed(
                at=now,
                seq=seq,
                error=error_info(exc, attempts=attempt),
                attempt=attempt,
            )
        case WaitSignal(name=name, timeout=timeout):
            if not isinstance(exc, SignalTimeout):
                raise TypeError(
                    f"a signal wait can only time out: throw fg.SignalTimeout({name!r}) "
                    f"(or fg.Cancelled() to cancel the run), not {exc!r}"
                )
            if timeout is None:
                raise ValueError(
                    f"the wait for signal {name!r} (seq {seq}) has no timeout, so it "
                    f"cannot time out"
                )
            scheduled = interp.scheduled_event(seq)
            assert isinstance(scheduled, SignalWaitStarted)
            assert scheduled.deadline is not None  # a wait with a timeout has one
            clock.set(scheduled.deadline)
            return SignalTimedOut(at=clock.now(), seq=seq)
        case StartChild():
            return ChildFailed(
                at=now, seq=seq, child_id=_child_id(interp, seq), error=error_info(exc)
            )
        case SendSignal(workflow_id=target, name=name):
            return SignalSendFailed(
                at=now, seq=seq, workflow_id=target, name=name, error=error_info(exc)
            )
    raise TypeError(
        f"{describe_command(command)} (seq {seq}) cannot fail: a timer only "
        f"fires and a side effect only records a value (use send(), or "
        f"throw(fg.Cancelled()) to cancel the run)"
    )


def short(value: object, width: int = 60) -> str:
    """``repr(value)``, cut to *width* characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def describe_event(event: Event, start: datetime) -> str:
    """One line per event, e.g. ``t+0s activity_completed seq=0 value=150``."""
    parts = [f"t+{(event.at - start).total_seconds():g}s", EVENT_TAGS[type(event)]]
    for field in attrs.fields(type(event)):
        if field.name == "at":
            continue
        value = getattr(event, field.name)
        if value is None or value == [] or value == {} or field.name == "started_at":
            continue
        if isinstance(value, ErrorInfo):
            parts.append(f"error={short(str(value))}")
        elif isinstance(value, datetime):
            parts.append(f"{field.name}=t+{(value - start).total_seconds():g}s")
        else:
            parts.append(f"{field.name}={short(value)}")
    return " ".join(parts)


@attrs.frozen
class ReplayResult:
    """Where a replayed history leaves its run (what `check_replay` returns).

    Attributes:
        status: The run's status at the end of the history.
        result: The workflow's result, decoded to its return type, if it completed.
        error: The failure, if the run failed, was cancelled or terminated.
        pending: The commands still awaited, by seq, if the history is of a run in flight.
    """

    status: RunStatus
    result: object = None
    error: ErrorInfo | None = None
    pending: dict[int, Command] = attrs.field(factory=dict)


def check_replay(
    workflow: WorkflowFn[object], history: Sequence[Event]
) -> ReplayResult:
    """Replay a stored *history* against today's code, as the engine would after a restart.

    Run it over stored histories before deploying a change (``flowgen check-replay``), and
    over golden histories in tests. Payloads go through the JSON codec exactly as in the
    engine. To check many histories, loop.

    Args:
        workflow: The workflow function as the code stands today.
        history: The recorded events, ``workflow_started`` first.

    Returns:
        The run's status and result (or error) at the end of the history.

    Raises:
        NonDeterminismError: Today's code does not decide what the history recorded; the
            message names the workflow, the seq, both commands and the file:line of the
            ``yield``.
        HistoryCorruptError: The history is inconsistent in itself.
    """
    interp = Interpreter(workflow, codec=CODEC)
    interp.replay(list(history))
    result = (
        CODEC.decode(interp.result, workflow_return_type(workflow))
        if interp.status is RunStatus.COMPLETED
        else None
    )
    return ReplayResult(
        status=interp.status, result=result, error=interp.error, pending=interp.pending
    )
