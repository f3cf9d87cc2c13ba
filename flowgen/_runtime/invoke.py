"""Running one activity attempt: plain functions, bound methods and ``async def`` alike.

The engine calls `attempt_event` on a worker thread (or inline, when driven by hand), the
Stepper in the caller's thread: it finds the function to run (`Registry.resolve`), decodes
the recorded arguments by its annotations, runs it (`run_attempt`), encodes the result, and
lets `flowgen._core.outcome.attempt_outcome` decide which event records the attempt. Inside,
`activity_info` tells the activity who it is working for, including an idempotency key that
is the same for every attempt and every replay of the call: pass it to the payment provider,
and a retried charge cannot charge twice. `heartbeat` tells the runner the attempt is alive
and how far it got (the engine's rules: `flowgen._runtime.heartbeats`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Coroutine
from datetime import datetime
from types import FunctionType
from typing import Any, Final

import attrs

from flowgen._core.decisions import positional_names
from flowgen._core.dsl import ActivityDefinition, parameter_types
from flowgen._core.outcome import AttemptOutcome, attempt_outcome, attempt_policy
from flowgen._runtime.registry import Registry
from flowgen._stores.codec import CODEC
from flowgen._vocabulary.commands import CallActivity
from flowgen._vocabulary.errors import FlowgenError
from flowgen._vocabulary.events import ActivityScheduled, JsonValue
from flowgen._vocabulary.retry import NO_RETRY, RetryPolicy

__all__ = [
    "ActivityInfo",
    "ActivityTimeout",
    "activity_info",
    "Beat",
    "Stop",
    "Stoppable",
    "argument_names",
    "attempt_event",
    "decode_arguments",
    "heartbeat",
    "run_attempt",
]

Stop = Callable[[], None]
"""Stops a running ``async def`` attempt (cancels its task, from any thread)."""
Stoppable = Callable[[Stop], None]
"""Given, as an ``async def`` attempt starts, the `Stop` that cancels it."""

Beat = Callable[[JsonValue], None]
"""Where an attempt's `heartbeat` details go, encoded (the engine's
`flowgen._runtime.heartbeats.Heartbeats.beat`, or the Stepper's)."""

Call = Callable[
    [
        Callable[..., object],
        list[object],
        dict[str, object],
        "ActivityInfo",
        float | None,
    ],
    object,
]
"""How an attempt is run: `run_attempt`, or the Stepper's variant for a running loop."""


@attrs.frozen
class ActivityInfo:
    """Who an activity attempt is working for (see `activity_info`).

    Attributes:
        workflow_id: The calling run's workflow id.
        run_id: The calling run's id.
        seq: The call's sequence number in the run.
        name: The activity's registered name.
        attempt: This attempt's number, from 1.
        scheduled_at: When the workflow asked for the call.
        heartbeat_details: The details of the last `heartbeat` of an earlier attempt of
            this call (or of this attempt before a restart), as plain JSON; ``None`` if
            none. Resume from there.
        started_at: When this attempt started.
        deadline: When this attempt times out at the latest, heartbeats aside (its
            start-to-close or the call's schedule-to-close timeout); ``None`` if unbounded.
        heartbeat_timeout: Seconds this attempt may go without a `heartbeat`, or ``None``.
        idempotency_key: ``"<workflow_id>/<run_id>/<seq>"``: the same for every attempt and
            every replay of this call, different for every other call.
    """

    workflow_id: str
    run_id: str
    seq: int
    name: str
    attempt: int
    scheduled_at: datetime | None = None
    heartbeat_details: JsonValue = None
    started_at: datetime | None = None
    deadline: datetime | None = None
    heartbeat_timeout: float | None = None

    @property
    def idempotency_key(self) -> str:
        """A key that identifies this call across retries, replays and restarts."""
        return f"{self.workflow_id}/{self.run_id}/{self.seq}"


class ActivityTimeout(FlowgenError, TimeoutError):
    """An activity attempt ran past one of its timeouts (also a `TimeoutError`).

    Recorded as the attempt's failure (type ``ActivityTimeout``, the message says which
    timeout), and raised by `heartbeat` in an attempt that already timed out.
    """


_current: contextvars.ContextVar[ActivityInfo] = contextvars.ContextVar(
    "flowgen_activity"
)
_beat: contextvars.ContextVar[Beat | None] = contextvars.ContextVar(
    "flowgen_heartbeat", default=None
)


def activity_info() -> ActivityInfo:
    """The `ActivityInfo` of the activity attempt running in this thread or task.

    Raises:
        RuntimeError: When called outside an activity.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError(
            "fg.activity_info() can only be called inside an activity"
        ) from None


def heartbeat(details: object = None) -> None:
    """Tell the engine this activity attempt is alive, and how far it got.

    Call it regularly from a long activity: with ``@fg.activity(heartbeat_timeout=...)``,
    an attempt that goes longer than that without a heartbeat fails as timed out and is
    retried by its policy. The next attempt finds the last *details* in
    ``fg.activity_info().heartbeat_details``, also after a restart: the engine records
    them, throttled (see the concepts docs), never once per call.

    Args:
        details: How far the attempt got (anything JSON can hold, or an attrs class);
            the next attempt receives it as plain JSON.

    Raises:
        RuntimeError: Called outside an activity.
        TypeError: *details* cannot be stored.
        ActivityTimeout: This attempt already timed out (nobody waits for its result):
            stop working.
    """
    info = activity_info_or_none()
    if info is None:
        raise RuntimeError("fg.heartbeat() can only be called inside an activity")
    # Encoded here, on the activity's thread: details that cannot be stored fail this call,
    # before anything is kept.
    encoded = CODEC.encode(details, f"heartbeat details of activity {info.name!r}")
    beat = _beat.get()
    if beat is not None:  # else run by hand with nowhere to report: checked only
        beat(encoded)


def activity_info_or_none() -> ActivityInfo | None:
    """The `ActivityInfo` of the attempt running here, or ``None`` outside an activity."""
    return _current.get(None)


def run_attempt(
    fn: Callable[..., object],
    args: list[object],
    kwargs: dict[str, object],
    info: ActivityInfo,
    timeout: float | None = None,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    beat: Beat | None = None,
    stoppable: Stoppable | None = None,
) -> object:
    """Run one attempt of *fn* and return its result (exceptions propagate).

    ``async def`` activities run on *loop* when one is given (an application's running
    loop: this thread hands the coroutine over and waits), else in a fresh event loop;
    either way *timeout* cancels them. A plain function's timeout is enforced by the
    engine, which stops waiting for it. *beat* receives the attempt's `heartbeat` calls;
    *stoppable* receives, as an ``async def`` attempt starts, how to stop it (a stopped
    attempt raises `ActivityTimeout`: the runner stops only attempts that timed out).

    Raises:
        RuntimeError: *loop* is given but closed, or is this thread's own running loop
            (waiting for it here could never end).
    """
    token = _current.set(info)
    beat_token = _beat.set(beat)
    try:
        if _is_async(fn):
            hooks = (beat, stoppable)
            coroutine = _run_async(fn, args, kwargs, info, timeout, hooks)
            return _run_coroutine(coroutine, loop)
        result = fn(*args, **kwargs)
        if type(result) in _PLAIN:  # never awaitable: skip isawaitable's ~0.5 us
            return result
        if inspect.isawaitable(result):  # a sync wrapper that returned a coroutine
            awaiting = _await(result, info, timeout, (beat, stoppable))
            return _run_coroutine(awaiting, loop)
        return result
    finally:
        _beat.reset(beat_token)
        _current.reset(token)


# Results that are certainly not awaitable (exact types: a subclass could be).
_PLAIN: Final = frozenset({int, str, float, bool, type(None), dict, list, tuple, bytes})


def _is_async(fn: Callable[..., object]) -> bool:
    """True for an ``async def`` function, or a callable object whose ``__call__`` is one."""
    if type(fn) is FunctionType:  # the usual activity: asked once per function
        return _is_async_function(fn)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  # async callables objects too
    )


@functools.lru_cache(maxsize=4096)  # inspect's unwrapping costs ~5 us per attempt
def _is_async_function(fn: FunctionType) -> bool:
    return inspect.iscoroutinefunction(fn)


def _run_coroutine(
    coroutine: Coroutine[Any, Any, object], loop: asyncio.AbstractEventLoop | None
) -> object:
    if loop is None:
        return asyncio.run(coroutine)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coroutine.close()
        raise RuntimeError(
            "an async activity cannot run on the event loop of the thread that waits for "
            "it; run the engine in the background (`with engine:` / AsyncEngine)"
        )
    # The coroutine runs with this thread's context (activity_info()) copied to its task.
    try:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    except RuntimeError:  # the loop is closed: the attempt fails (and is retried)
        coroutine.close()
        raise
    return future.result()


async def _run_async(
    fn: Callable[..., object],
    args: list[object],
    kwargs: dict[str, object],
    info: ActivityInfo,
    timeout: float | None,
    hooks: tuple[Beat | None, Stoppable | None],
) -> object:
    # Set here too: a loop of another thread runs this task in a copy of *its* context.
    _current.set(info)
    _beat.set(hooks[0])
    awaitable = fn(*args, **kwargs)
    assert inspect.isawaitable(awaitable)
    return await _await(awaitable, info, timeout, hooks)


async def _await(
    awaitable: object,
    info: ActivityInfo,
    timeout: float | None,
    hooks: tuple[Beat | None, Stoppable | None],
) -> object:
    beat, stoppable = hooks
    _current.set(info)
    _beat.set(beat)
    assert inspect.isawaitable(awaitable)
    stopped: list[bool] = []  # set (by any thread) just before the runner cancels us
    if stoppable is not None:
        stoppable(_stopper(stopped))
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise ActivityTimeout(
            f"activity {info.name!r} attempt {info.attempt} ran past its {timeout} s timeout"
        ) from None
    except asyncio.CancelledError:
        if not stopped:  # cancelled by its loop, not by us: not ours to turn into data
            raise
        raise ActivityTimeout(
            f"activity {info.name!r} attempt {info.attempt} timed out and was cancelled"
        ) from None


def _stopper(stopped: list[bool]) -> Stop:
    """How to cancel the task running now, from any thread (a no-op once it ended)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def stop() -> None:
        stopped.append(True)
        if task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # its loop is closed: the attempt is over anyway
                pass

    return stop


def argument_names(fn: Callable[..., object]) -> tuple[list[str], str | None]:
    """Positional parameter names of *fn* (``self`` dropped for a bound method), and ``*args``.

    Read once per function (`flowgen._core.decisions.positional_names` caches it;
    `inspect.signature` cost ~8% of an attempt's CPU): a bound method is looked up by its
    function, so every object's methods share one entry.
    """
    if inspect.ismethod(fn):
        names, star = positional_names(fn.__func__)
        return list(names[1:]), star
    try:
        names, star = positional_names(fn)
    except TypeError:  # an unhashable callable object: read it each time
        names, star = positional_names.__wrapped__(fn)
    return list(names), star


def decode_arguments(
    fn: Callable[..., object], scheduled: ActivityScheduled
) -> tuple[list[object], dict[str, object]]:
    """An activity's recorded arguments, decoded with its parameter annotations."""
    hints = parameter_types(fn)
    names, star = argument_names(fn)
    args = [
        CODEC.decode(a, hints.get(names[i] if i < len(names) else star or "", object))
        for i, a in enumerate(scheduled.args)
    ]
    kwargs = {
        k: CODEC.decode(v, hints.get(k, object)) for k, v in scheduled.kwargs.items()
    }
    return args, kwargs


def attempt_event(
    command: CallActivity[object],
    scheduled: ActivityScheduled,
    info: ActivityInfo,
    *,
    registry: Registry,
    default: RetryPolicy,
    now: Callable[[], datetime],
    timeout: float | None = None,
    call: Call = run_attempt,
    retries: bool = True,
    deadline: datetime | None = None,
    resolved: tuple[ActivityDefinition, Callable[..., object]] | None = None,
) -> AttemptOutcome:
    """Perform one attempt of *command* and return the event that records it.

    Args:
        command: The workflow's call.
        scheduled: Its ``activity_scheduled`` event (the recorded arguments).
        info: Who the attempt works for (``info.attempt`` is its number).
        registry: Where activities called by name (or by their class's method) are found.
        default: The retry policy of activities that declare none.
        now: The runner's clock.
        timeout: Passed to *call* (``async def`` activities are cancelled after it).
        call: How the function is run.
        retries: ``False`` makes any failure final (the Stepper's ``run(retries=False)``).
        deadline: The call's schedule-to-close deadline: no retry starts at or after it.
        resolved: What ``registry.resolve(command)`` gave the caller already, if it asked.

    Returns:
        What `flowgen._core.outcome.attempt_outcome` decides. Never raises for a failed
        attempt: a failure is data.
    """
    started = now()
    definition: ActivityDefinition | None = None
    payload: JsonValue = None
    error: Exception | None = None
    # An error outside the activity's own code (no such activity, arguments that do not
    # decode, a result that cannot be stored) would only repeat itself: no retries.
    in_activity = False
    try:
        definition, fn = resolved or registry.resolve(command)
        args, kwargs = decode_arguments(fn, scheduled)
        in_activity = True
        value = call(fn, args, kwargs, info, timeout)
        in_activity = False
        payload = CODEC.encode(value, f"result of activity {command.name!r}")
    except Exception as exc:  # noqa: BLE001  # an activity's failure is data
        error = exc
    return attempt_outcome(
        seq=scheduled.seq,
        attempt=info.attempt,
        policy=attempt_policy(command, definition, default) if retries else NO_RETRY,
        started_at=started,
        now=now(),
        value=payload,
        error=error,
        in_activity=in_activity,
        deadline=deadline,
    )
