"""The workflow DSL: decorators, command helpers and `Saga`. Pure: nothing here does IO.

Each helper only *builds* a command (see ``commands.py``); yielding it is what makes the
engine act. The helpers exist for typing and convenience: ``yield from fg.call(fetch, 7)`` has
the type of ``fetch``'s result, and mypy checks ``7`` against ``fetch``'s parameters.

The decorators attach a definition to the function and record it in a small catalog, so an
engine that reopens a database can find the workflow and activity functions by the names the
history recorded. Redefining a function under the same module and name (a re-run notebook
cell) replaces the old definition; two *different* functions claiming one name is an error.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any, ParamSpec, TypeAlias, TypeVar, overload

import attrs

from flowgen._core.workflow_code import refuse_direct_call
from flowgen._vocabulary.commands import (
    COMMAND_KINDS,
    DEFAULT_VERSION,
    ActivityOptions,
    CallActivity,
    Command,
    ContinueAsNew,
    CurrentTime,
    Gather,
    GetInfo,
    GetVersion,
    Patched,
    Race,
    RecordSideEffect,
    RegisterQuery,
    RegisterUpdate,
    SendSignal,
    SetTags,
    StartChild,
    StartTimer,
    WaitSignal,
    _Yieldable,
)
from flowgen._vocabulary.durations import check_at_most_max, finite
from flowgen._vocabulary.errors import CompensationError
from flowgen._vocabulary.limits import (
    RateLimit,
    check_max_concurrent,
    check_task_queue,
    rate_limit_of,
)
from flowgen._vocabulary.retry import RetryPolicy

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = [
    "DEFAULT_VERSION",
    "ActivityDefinition",
    "Saga",
    "Workflow",
    "WorkflowDefinition",
    "activity",
    "call",
    "child",
    "continue_as_new",
    "current_time",
    "gather",
    "get_version",
    "info",
    "on_query",
    "on_update",
    "patched",
    "race",
    "send_signal",
    "set_tags",
    "side_effect",
    "sleep",
    "wait_signal",
    "workflow",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
F = TypeVar("F", bound=Callable[..., Any])

Workflow: TypeAlias = Generator[Command, Any, R]
"""The return annotation of a workflow function: ``def order(id: str) -> Workflow[str]``."""

_ACTIVITY_ATTR = "__flowgen_activity__"
_WORKFLOW_ATTR = "__flowgen_workflow__"


@attrs.frozen
class ActivityDefinition:
    """What ``@fg.activity`` records about a function.

    Attributes:
        name: The registered name (what histories record).
        fn: The function (unbound, for a method).
        options: Retry policy and timeout.
    """

    name: str
    fn: Callable[..., object] = attrs.field(eq=False)
    options: ActivityOptions = attrs.field(factory=ActivityOptions)


@attrs.frozen
class WorkflowDefinition:
    """What ``@fg.workflow`` records about a generator function.

    Attributes:
        name: The registered name (what histories record).
        fn: The generator function.
    """

    name: str
    fn: Callable[..., Generator[Command, Any, object]] = attrs.field(eq=False)


# The catalog of decorated definitions by name. It is written only by the decorators, at
# import time, and read by the runtime's registry; workflow code never sees it.
ACTIVITIES: dict[str, ActivityDefinition] = {}
WORKFLOWS: dict[str, WorkflowDefinition] = {}


def _origin(fn: Callable[..., object]) -> tuple[str, str]:
    return (getattr(fn, "__module__", "?"), getattr(fn, "__qualname__", repr(fn)))


def _catalog_add(table: dict[str, Any], kind: str, name: str, definition: Any) -> None:
    previous = table.get(name)
    if previous is not None and _origin(previous.fn) != _origin(definition.fn):
        module, qualname = _origin(previous.fn)
        raise ValueError(
            f"{kind} name {name!r} is already used by {module}.{qualname}; "
            f"pass name=... to tell them apart"
        )
    table[name] = definition


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} must be a non-empty string, got {name!r}")
    return name


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"{what} must be seconds (a number) or a timedelta, got {value!r}"
        )
    if not finite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a finite duration >= 0, got {value!r}")
    check_at_most_max(seconds, what, value)
    return float(seconds)


def _optional_seconds(value: float | timedelta | None, what: str) -> float | None:
    return None if value is None else _seconds(value, what)


@overload
def activity(fn: F, /) -> F: ...
@overload
def activity(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    heartbeat_timeout: float | timedelta | None = None,
    schedule_to_close: float | timedelta | None = None,
    max_concurrent: int | None = None,
    rate_limit: RateLimit | str | None = None,
    task_queue: str | None = None,
) -> Callable[[F], F]: ...
def activity(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    heartbeat_timeout: float | timedelta | None = None,
    schedule_to_close: float | timedelta | None = None,
    max_concurrent: int | None = None,
    rate_limit: RateLimit | str | None = None,
    task_queue: str | None = None,
) -> F | Callable[[F], F]:
    """Declare an activity: a function that does real work (IO, side effects) for workflows.

    Plain functions, methods of an object holding resources, and ``async def`` functions all
    work. The function comes back wrapped (`functools.wraps`: same name, signature and
    docstring) so it can still be called directly in tests and scripts, but called directly
    inside a workflow's code it raises `UsageError`: there it must be ``yield fg.call(...)``,
    or it would run again on every replay and record nothing.

    Args:
        fn: The function (when used as ``@fg.activity`` without parentheses).
        name: The name histories record; the function's qualified name by default. Keep it
            stable: renaming an activity breaks replay of runs recorded under the old name.
        retry: How failed attempts are retried; the engine's default policy if ``None``.
        timeout: Start-to-close timeout of one attempt (seconds or a timedelta).
        heartbeat_timeout: How long an attempt may go without calling `heartbeat`
            (counted from its start, then from each heartbeat) before it fails as timed
            out and is retried by its policy; the next attempt reads the last details from
            ``fg.activity_info().heartbeat_details``.
        schedule_to_close: A bound on the whole call, from its scheduling to its final
            outcome: all attempts and retry delays together. No retry starts past it.
        max_concurrent: At most this many attempts of it run at once, counted on all the
            engines of one store (a fleet on one PostgreSQL database shares it); more
            wait, in order, recording nothing.
        rate_limit: At most ``count`` attempts start in any window of ``per`` seconds,
            on all the engines of one store: a `RateLimit`, or its short form such as
            ``"10/s"`` or ``"100/min"``.
        task_queue: Only engines serving this queue run it
            (``Engine(task_queues=[...])``, ``flowgen worker --queue``); the default
            queue if ``None``. Elsewhere it waits, recording nothing.

    Returns:
        The wrapped function, or a decorator when called with options.

    Raises:
        TypeError: If an option has the wrong type.
        ValueError: If another function is already registered under the name, a timeout
            is negative, not finite or longer than 100 years, or an option is out of range
            (``max_concurrent=0``, a rate limit whose count is below 1 or whose window is
            not positive).
    """
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"activity(retry=...) must be a fg.RetryPolicy, got {retry!r}")
    options = ActivityOptions(
        retry=retry,
        timeout=_optional_seconds(timeout, "activity(timeout=...)"),
        heartbeat_timeout=_optional_seconds(
            heartbeat_timeout, "activity(heartbeat_timeout=...)"
        ),
        schedule_to_close=_optional_seconds(
            schedule_to_close, "activity(schedule_to_close=...)"
        ),
        max_concurrent=check_max_concurrent(max_concurrent),
        rate_limit=rate_limit_of(rate_limit),
        task_queue=None if task_queue is None else check_task_queue(task_queue),
    )

    def decorate(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@fg.activity needs a function, got {func!r}")
        registered = _check_name(name or func.__qualname__, "activity name")
        wrapper = _refusing_direct_calls(func, registered)
        definition = ActivityDefinition(name=registered, fn=wrapper, options=options)
        _catalog_add(ACTIVITIES, "activity", definition.name, definition)
        setattr(wrapper, _ACTIVITY_ATTR, definition)
        return wrapper

    return decorate(fn) if fn is not None else decorate


def _refusing_direct_calls(func: F, name: str) -> F:
    """*func*, wrapped to raise when called directly inside workflow code.

    See `flowgen._core.workflow_code`; everywhere else (the engine's attempts included)
    the wrapper is a plain call. Only plain functions (and methods) are wrapped: called
    without ``yield fg.call``, an ``async def`` activity runs nothing (it makes a coroutine
    that the workflow cannot await), and a callable object keeps its own identity.
    """
    if not inspect.isfunction(func) or inspect.iscoroutinefunction(func):
        return func

    @functools.wraps(func)
    def refusing(*args: Any, **kwargs: Any) -> Any:
        refuse_direct_call(name)
        return func(*args, **kwargs)

    return typing.cast(F, refusing)


@overload
def workflow(fn: F, /) -> F: ...
@overload
def workflow(*, name: str | None = None) -> Callable[[F], F]: ...
def workflow(
    fn: F | None = None, /, *, name: str | None = None
) -> F | Callable[[F], F]:
    """Declare a workflow: a generator function that yields commands.

    Args:
        fn: The generator function (when used as ``@fg.workflow`` without parentheses).
        name: The name histories record; the function's qualified name by default.

    Returns:
        The function itself, or a decorator when called with ``name=``.

    Raises:
        TypeError: If the function is not a generator function.
        ValueError: If another function is already registered under the name.
    """

    def decorate(func: F) -> F:
        if not inspect.isgeneratorfunction(func):
            raise TypeError(
                f"@fg.workflow needs a generator function (one that yields commands), "
                f"got {func!r}"
            )
        definition = WorkflowDefinition(
            name=_check_name(name or func.__qualname__, "workflow name"), fn=func
        )
        _catalog_add(WORKFLOWS, "workflow", definition.name, definition)
        setattr(func, _WORKFLOW_ATTR, definition)
        return func

    return decorate(fn) if fn is not None else decorate


def activity_definition(fn: Callable[..., object]) -> ActivityDefinition:
    """The definition of an activity function (decorated or not; methods included)."""
    definition = getattr(fn, _ACTIVITY_ATTR, None)
    if isinstance(definition, ActivityDefinition):
        return definition
    if not callable(fn):
        raise TypeError(
            f"an activity must be a function or a registered name, got {fn!r}"
        )
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return ActivityDefinition(name=name, fn=fn)


def workflow_definition(fn: Callable[..., object]) -> WorkflowDefinition:
    """The definition of a workflow function (decorated or not)."""
    definition = getattr(fn, _WORKFLOW_ATTR, None)
    if isinstance(definition, WorkflowDefinition):
        return definition
    if not inspect.isgeneratorfunction(fn):
        raise TypeError(
            f"a workflow must be a generator function (one that yields commands), got {fn!r}"
        )
    return WorkflowDefinition(name=fn.__qualname__, fn=fn)


def _hints_of(fn: Callable[..., object]) -> Mapping[str, object]:
    return _annotations(fn)[0]


_NO_HINTS: tuple[Mapping[str, object], Mapping[str, object]] = (
    MappingProxyType({}),
    MappingProxyType({}),
)


def _annotations(
    fn: Callable[..., object],
) -> tuple[Mapping[str, object], Mapping[str, object]]:
    """*fn*'s resolved annotations and its parameters' alone (read-only), or none.

    Asked for every attempt and every result decoded: resolved once per function
    (``typing.get_type_hints`` costs several microseconds). A failure is not kept, so a
    forward reference that resolves later is read then. Unresolvable annotations: none
    (the values decode as plain JSON).
    """
    try:
        return _cached_annotations(fn)
    except TypeError:  # an unhashable callable object (or a bad annotation): uncached
        pass
    except Exception:  # noqa: BLE001  # unresolvable annotations
        return _NO_HINTS
    try:
        return _cached_annotations.__wrapped__(fn)
    except Exception:  # noqa: BLE001  # unresolvable annotations
        return _NO_HINTS


@functools.lru_cache(maxsize=4096)
def _cached_annotations(
    fn: Callable[..., object],
) -> tuple[Mapping[str, object], Mapping[str, object]]:
    hints = typing.get_type_hints(fn)
    parameters = {name: hint for name, hint in hints.items() if name != "return"}
    return MappingProxyType(hints), MappingProxyType(parameters)


def _target(fn: Callable[..., object]) -> Callable[..., object]:
    # Bound methods hash by their instance; their annotations live on the function.
    func: Callable[..., object] = getattr(fn, "__func__", fn)
    return func


def return_type(fn: Callable[..., object]) -> object:
    """The type an activity's result decodes to: its return annotation, or `object`."""
    hint = _hints_of(_target(fn)).get("return", object)
    # `-> None` (NoneType once resolved) is read as "no promise": decode as plain JSON.
    return object if hint is None or hint is type(None) else hint


def workflow_return_type(fn: Callable[..., object]) -> object:
    """The type a workflow's result decodes to: ``R`` of its ``Workflow[R]`` annotation."""
    hint = _hints_of(_target(fn)).get("return", object)
    if typing.get_origin(hint) in (Generator, Iterator, typing.Generator):
        args = typing.get_args(hint)
        return args[2] if len(args) == 3 else object
    return object


def handler_return_type(fn: Callable[..., object]) -> object:
    """The type an update handler's result decodes to.

    ``R`` of a generator function's ``Generator[..., ..., R]`` annotation, a plain function's
    return annotation, or `object` when there is none.
    """
    hint = _hints_of(_target(fn)).get("return", object)
    if typing.get_origin(hint) in (Generator, Iterator, typing.Generator):
        return workflow_return_type(fn)
    return return_type(fn)


def parameter_types(fn: Callable[..., object]) -> Mapping[str, object]:
    """The annotated parameter types of *fn*, used to decode the arguments it receives."""
    return _annotations(_target(fn))[1]


# ---------------------------------------------------------------------------------------------
# Command helpers.


@overload
def call(
    fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
) -> CallActivity[R]: ...
@overload
def call(
    fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
) -> CallActivity[R]: ...
@overload
def call(fn: str, /, *args: object, **kwargs: object) -> CallActivity[Any]: ...
def call(
    fn: Callable[..., object] | str, /, *args: object, **kwargs: object
) -> CallActivity[Any]:
    """Run an activity durably: ``result = yield from fg.call(charge, order_id, 10.0)``.

    The activity runs on the engine's worker threads; its result is recorded, so after a
    crash it is not run again. It is retried as its `RetryPolicy` says; when the retries are
    spent, `ActivityError` is thrown into the workflow.

    Args:
        fn: The activity function (or its registered name).
        *args: Positional arguments; they must be serializable.
        **kwargs: Keyword arguments; they must be serializable.

    Returns:
        The command. Yield it; the activity's result (decoded to its return type) comes back.
    """
    if isinstance(fn, str):
        return CallActivity(
            name=_check_name(fn, "activity name"), args=args, kwargs=kwargs
        )
    definition = activity_definition(fn)
    return CallActivity(
        name=definition.name,
        args=args,
        kwargs=kwargs,
        fn=fn,
        result_type=return_type(fn),
        options=definition.options,
    )


def sleep(duration: float | timedelta) -> StartTimer:
    """Sleep durably: ``yield fg.sleep(timedelta(hours=1))`` (or a number of seconds).

    The due time is recorded, so it holds across restarts; under a `ManualClock` the engine
    skips straight to it.
    """
    return StartTimer(_seconds(duration, "sleep() duration"))


@overload
def wait_signal(
    name: str, *, timeout: float | timedelta | None = None
) -> WaitSignal[Any]: ...
@overload
def wait_signal(
    name: str, *, timeout: float | timedelta | None = None, result_type: type[T]
) -> WaitSignal[T]: ...
@overload
def wait_signal(
    name: str, *, timeout: float | timedelta | None = None, result_type: object
) -> WaitSignal[Any]: ...
def wait_signal(
    name: str,
    *,
    timeout: float | timedelta | None = None,
    result_type: object = object,
) -> WaitSignal[Any]:
    """Wait for the next signal called *name* and return its payload.

    Signals sent before the wait are buffered, so none is lost.

    Args:
        name: The signal's name.
        timeout: How long to wait; `SignalTimeout` is thrown when it runs out.
        result_type: The type the payload is decoded to (plain JSON values by default).

    Returns:
        The command; yield it.
    """
    return WaitSignal(
        name=_check_name(name, "signal name"),
        timeout=None
        if timeout is None
        else _seconds(timeout, "wait_signal(timeout=...)"),
        result_type=result_type,
    )


def side_effect(
    fn: Callable[[], R], *, name: str | None = None, result_type: object = None
) -> RecordSideEffect[R]:
    """Call *fn* once, record its result and replay the recording forever after.

    Use it for anything non-deterministic inside a workflow: ``uuid.uuid4``, ``random``, ...

    Args:
        fn: A function taking no arguments.
        name: A name for the recording (the function's qualified name by default).
        result_type: The type the recorded value decodes to (``fn``'s return annotation by
            default).

    Returns:
        The command; yield it.
    """
    if not callable(fn):
        raise TypeError(
            f"side_effect() needs a function taking no arguments, got {fn!r}"
        )
    label = name or getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return RecordSideEffect(
        name=_check_name(label, "side effect name"),
        fn=fn,
        result_type=return_type(fn) if result_type is None else result_type,
    )


def current_time() -> CurrentTime:
    """The workflow's current time, deterministic on replay (tz-aware UTC).

    It is the time of the event that last woke the workflow, so it stands still between two
    yields.
    """
    return CurrentTime()


def get_version(change_id: str, min_supported: int, max_supported: int) -> GetVersion:
    """Branch safely around a code change under running workflows.

    ``v = yield fg.get_version("new-shipping", fg.DEFAULT_VERSION, 2)`` gives runs recorded
    before the change `DEFAULT_VERSION`, and new runs *max_supported*. Versions are keyed by
    *change_id*, not by position, so adding a call does not shift old histories.

    Args:
        change_id: A stable name for the change.
        min_supported: The oldest version the code still handles.
        max_supported: The newest version; what new runs record.

    Returns:
        The command; yield it.
    """
    return GetVersion(_check_name(change_id, "change_id"), min_supported, max_supported)


def patched(change_id: str) -> Patched:
    """Whether this run follows the code after the change *change_id*: `get_version` as a boolean.

    ``if (yield fg.patched("express-shipping")):`` takes the new path in new runs (``True``;
    a ``version_marked`` event with version 1 is recorded) and the old path when replaying a
    history recorded before the change (``False``). Once no recorded run takes the old path,
    the branch can go (keep the call while any such history may still replay).

    Args:
        change_id: A stable name for the change.

    Returns:
        The command; yield it (``yield from`` gives a ``bool`` to the type checker).
    """
    return Patched(_check_name(change_id, "change_id"))


def child(
    fn: Callable[P, Generator[Any, Any, R]] | str, /, *args: P.args, **kwargs: P.kwargs
) -> StartChild[R]:
    """Start a child workflow and wait for its result.

    The child's id is ``"<parent id>/<seq>"``; build `StartChild` directly to choose it.
    Its failure is thrown into the parent as `ChildWorkflowError`; cancelling the parent
    cancels the child. Keyword arguments are the child's own; what happens to the child if
    the parent's run closes first is set with ``.options(parent_close=...)`` (terminated,
    by default): ``yield from fg.child(report, day=d).options(parent_close="abandon")``.

    Args:
        fn: The child's workflow function (or its registered name).
        *args: Positional arguments.
        **kwargs: Keyword arguments.

    Returns:
        The command; yield it.
    """
    if isinstance(fn, str):
        return StartChild(
            name=_check_name(fn, "workflow name"), args=args, kwargs=kwargs
        )
    definition = workflow_definition(fn)
    return StartChild(
        name=definition.name,
        args=args,
        kwargs=kwargs,
        fn=fn,
        result_type=workflow_return_type(fn),
    )


@overload
def gather(c1: _Yieldable[T1], /) -> Gather[tuple[T1]]: ...
@overload
def gather(c1: _Yieldable[T1], c2: _Yieldable[T2], /) -> Gather[tuple[T1, T2]]: ...
@overload
def gather(
    c1: _Yieldable[T1], c2: _Yieldable[T2], c3: _Yieldable[T3], /
) -> Gather[tuple[T1, T2, T3]]: ...
@overload
def gather(
    c1: _Yieldable[T1], c2: _Yieldable[T2], c3: _Yieldable[T3], c4: _Yieldable[T4], /
) -> Gather[tuple[T1, T2, T3, T4]]: ...
@overload
def gather(*commands: _Yieldable[T]) -> Gather[tuple[T, ...]]: ...
def gather(*commands: _Yieldable[Any]) -> Gather[Any]:
    """Run commands concurrently and return all their results, in order.

    ``a, b = yield from fg.gather(fg.call(x), fg.call(y))``. The first failure is thrown into
    the workflow and the commands still pending are cancelled.

    Returns:
        The command; yield it. A tuple of the results comes back.
    """
    return Gather(commands)  # type: ignore[arg-type]  # the overloads carry the types


def race(*commands: _Yieldable[T]) -> Race[tuple[int, T]]:
    """Run commands concurrently; the first to finish wins, the others are cancelled.

    ``i, value = yield fg.race(fg.wait_signal("decision"), fg.sleep(timedelta(days=3)))``

    Returns:
        The command; yield it. ``(index, result)`` of the winner comes back; if the winner
        failed, its error is thrown.
    """
    return Race(commands)  # type: ignore[arg-type]  # the signature carries the types


def send_signal(workflow_id: str, name: str, payload: object = None) -> SendSignal:
    """Signal another workflow, durably: ``yield fg.send_signal("greeter-1", "greet", {...})``.

    Throws `SignalSendError` into the workflow if the target is unknown or finished.
    """
    return SendSignal(
        _check_name(workflow_id, "workflow_id"),
        _check_name(name, "signal name"),
        payload,
    )


def info() -> GetInfo:
    """This run's `WorkflowInfo`: ``me = yield fg.info()``."""
    return GetInfo()


def set_tags(**tags: object) -> SetTags:
    """Merge searchable tags into the run (the ``tags`` JSON column of ``workflows``)."""
    return SetTags(tags)


def on_query(name: str, handler: Callable[..., object]) -> RegisterQuery:
    """Register a read-only handler answering ``engine.query(id, name)``.

    The handler runs against the workflow's current state and must not change it.
    """
    if not callable(handler):
        raise TypeError(f"on_query() needs a callable handler, got {handler!r}")
    return RegisterQuery(_check_name(name, "query name"), handler)


def on_update(
    name: str,
    handler: Callable[..., object],
    *,
    validator: Callable[..., object] | None = None,
) -> RegisterUpdate:
    """Register a handler answering ``engine.update(id, name, *args)``; it may change state.

    ``yield fg.on_update("add_item", add_item, validator=check_item)``

    When an update arrives, *validator* (if given) is called with its arguments against the
    workflow's current state, recording nothing: if it raises, the caller gets
    `UpdateRejected` and the history is unchanged. Otherwise the update is recorded
    (``update_accepted``) and *handler* is called with the same arguments. A plain function's
    return value is the update's result at once; a generator function runs beside the
    workflow's main code, yielding commands (activities, timers, ...) like a branch of its
    own, and its return value is the result. Either way the result (or the handler's
    error) is recorded, and replays deterministically.

    Args:
        name: The update's name.
        handler: The function called with the update's arguments.
        validator: A function called first with the same arguments; it raises to reject.
            It must not change the workflow's state or yield.

    Returns:
        The command to yield.

    Raises:
        TypeError: *name* is not a non-empty string, or *handler* / *validator* is not
            callable.
    """
    if not callable(handler):
        raise TypeError(f"on_update() needs a callable handler, got {handler!r}")
    if validator is not None and not callable(validator):
        raise TypeError(
            f"on_update(validator=...) must be callable or None, got {validator!r}"
        )
    return RegisterUpdate(_check_name(name, "update name"), handler, validator)


def continue_as_new(*args: object, **kwargs: object) -> ContinueAsNew:
    """End this run and start a fresh one with new arguments (and an empty history)."""
    return ContinueAsNew(args, kwargs)


class Saga:
    """Compensations for the steps that succeeded, run last-in-first-out on failure.

    ::

        saga = fg.Saga()
        try:
            hotel = yield fg.call(book_hotel, trip)
            saga.add(fg.call(cancel_hotel, hotel))
            ...
        except Exception:                 # fg.Cancelled included
            yield from saga.compensate()
            raise

    Compensations are commands, so they are durable and replay-safe like any other step.
    """

    def __init__(self) -> None:
        self._compensations: list[Command] = []

    def add(self, compensation: Command) -> None:
        """Register *compensation* (a command, e.g. ``fg.call(cancel_hotel, h)``)."""
        if not isinstance(compensation, tuple(COMMAND_KINDS)):
            raise TypeError(
                f"Saga.add() needs a command such as fg.call(...), got {compensation!r}"
            )
        self._compensations.append(compensation)

    def __len__(self) -> int:
        return len(self._compensations)

    def compensate(self) -> Generator[Command, Any, None]:
        """Run the registered compensations, newest first; use with ``yield from``.

        A failing compensation does not stop the others.

        Raises:
            CompensationError: After all ran, if any failed (it groups their errors).
        """
        errors: list[Exception] = []
        while self._compensations:
            compensation = self._compensations.pop()
            try:
                yield compensation
            except Exception as exc:  # noqa: BLE001  # collected and raised together below
                errors.append(exc)
        if errors:
            raise CompensationError(f"{len(errors)} compensation(s) failed", errors)
