"""Commands: what a workflow yields. Inert, comparable values (redux-saga's effects).

Creating a command does nothing; only yielding it does. Each command is a frozen attrs class.
Fields that hold live objects (the activity function, the type its result decodes to, a query
handler) are excluded from equality and repr: two commands are equal when they ask for the
same thing, whatever function object stands behind them.

Every command can be used both ways::

    receipt = yield fg.call(charge, "o-1", 10.0)         # receipt: object
    receipt = yield from fg.call(charge, "o-1", 10.0)    # receipt: Receipt, checked by mypy

``yield from`` works because each command's ``__iter__`` yields the command itself and returns
what is sent back; the type parameter only exists for the type checker. Commands are never
stored: the history stores *events* (see ``events.py``), so the generic classes never meet
cattrs (style guide §3, finding 3).

Which commands take a sequence number is decided in ``_core/interpreter.py`` (see its header).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping
from datetime import datetime
from typing import Any, Generic, Literal, NoReturn, TypeAlias, TypeVar, cast, get_args

import attrs

from flowgen._vocabulary.durations import check_at_most_max
from flowgen._vocabulary.limits import RateLimit
from flowgen._vocabulary.retry import RetryPolicy
from flowgen._vocabulary.text import surrogate_at, unstorable_why

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = [
    "ActivityOptions",
    "CallActivity",
    "Command",
    "ContinueAsNew",
    "CurrentTime",
    "Gather",
    "GetInfo",
    "GetVersion",
    "ParentClose",
    "Patched",
    "Race",
    "RecordSideEffect",
    "RegisterQuery",
    "RegisterUpdate",
    "SendSignal",
    "SetTags",
    "StartChild",
    "StartTimer",
    "WaitCondition",
    "WaitSignal",
    "WorkflowInfo",
]

T_co = TypeVar("T_co", covariant=True)

DEFAULT_VERSION = -1
"""What `get_version` returns for a run recorded before the change existed."""


class _Yieldable(Generic[T_co]):
    """Mixin: makes ``x = yield from command`` work and gives ``x`` the command's type."""

    __slots__ = ()

    def __iter__(self) -> Generator[Command, object, T_co]:
        # The interpreter sends back the outcome already decoded to the right type.
        return cast(T_co, (yield cast("Command", self)))


def _frozen_mapping(value: Mapping[str, object] | None) -> dict[str, object]:
    return dict(value or {})


def _storable(inst: object, attribute: attrs.Attribute[str], value: object) -> None:
    """Refuse a name no store can hold, where the workflow's code builds the command.

    It then fails that run (a `TypeError` at the ``yield``), instead of a batch the store
    refuses (see `flowgen._vocabulary.text`).
    """
    if isinstance(value, str) and (index := surrogate_at(value)) is not None:
        raise TypeError(
            f"{type(inst).__name__}.{attribute.name}: {unstorable_why(value, index)}"
        )


@attrs.frozen
class ActivityOptions:
    """Per-activity settings, from ``@fg.activity(retry=..., timeout=..., ...)``.

    Attributes:
        retry: The retry policy; ``None`` means the engine's default.
        timeout: Start-to-close timeout of one attempt, in seconds; ``None`` for none.
        heartbeat_timeout: An attempt that goes this many seconds without calling
            ``fg.heartbeat`` (counted from its start, then from its last heartbeat) fails
            as timed out, and is retried by its policy; ``None`` for none.
        schedule_to_close: Seconds from the call being scheduled to its final outcome, all
            attempts and retry delays together; ``None`` for no bound.
        max_concurrent: At most this many attempts running at once, on all the engines
            of one store; ``None`` for no limit.
        rate_limit: At most so many attempts starting per window, on all the engines of
            one store; ``None`` for no limit.
        task_queue: The queue whose engines run it; ``None`` for the default queue.
    """

    retry: RetryPolicy | None = None
    timeout: float | None = None
    heartbeat_timeout: float | None = None
    schedule_to_close: float | None = None
    max_concurrent: int | None = None
    rate_limit: RateLimit | None = None
    task_queue: str | None = None


@attrs.frozen
class CallActivity(_Yieldable[T_co]):
    """Run the activity registered as *name* with *args*; its result comes back.

    Attributes:
        name: The activity's registered name (what the history records).
        args: Positional arguments.
        kwargs: Keyword arguments.
        fn: The function itself, when the workflow named it directly (not compared).
        result_type: The type the result is decoded to (the function's return annotation).
        options: Retry policy and timeout from the activity's decorator.
    """

    name: str = attrs.field(validator=_storable)
    args: tuple[object, ...] = ()
    kwargs: dict[str, object] = attrs.field(factory=dict, converter=_frozen_mapping)
    fn: Callable[..., object] | None = attrs.field(default=None, eq=False, repr=False)
    result_type: object = attrs.field(default=object, eq=False, repr=False)
    options: ActivityOptions = attrs.field(
        factory=ActivityOptions, eq=False, repr=False
    )


def _check_seconds(
    _inst: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{attribute.name} must be a finite number of seconds >= 0, got {value!r}"
        )


def _check_optional_seconds(
    inst: object, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None:
        _check_seconds(inst, cast("attrs.Attribute[float]", attribute), value)


@attrs.frozen
class StartTimer(_Yieldable[None]):
    """Sleep durably for *seconds*: the due time survives restarts."""

    seconds: float = attrs.field(converter=float, validator=_check_seconds)


@attrs.frozen
class WaitSignal(_Yieldable[T_co]):
    """Wait for the next signal called *name*; its payload comes back.

    Signals that arrived before the wait are buffered and delivered in arrival order.

    Attributes:
        name: The signal's name.
        timeout: Seconds to wait before `SignalTimeout` is thrown; ``None`` waits forever.
        result_type: The type the payload is decoded to.
    """

    name: str = attrs.field(validator=_storable)
    timeout: float | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(float),
        validator=_check_optional_seconds,
    )
    result_type: object = attrs.field(default=object, eq=False, repr=False)


def _predicate_name(predicate: Callable[[], object]) -> str:
    """``name`` for a predicate: its qualified name, and where a lambda was written."""
    name = getattr(predicate, "__qualname__", None) or type(predicate).__name__
    code = getattr(predicate, "__code__", None)
    if name.endswith("<lambda>") and code is not None:
        file = code.co_filename.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{name} at {file}:{code.co_firstlineno}"
    return str(name)


def _check_predicate(
    _inst: object,
    _attribute: attrs.Attribute[Callable[[], object]],
    value: Callable[[], object],
) -> None:
    if not callable(value):  # a type annotation is no check at run time
        raise TypeError(
            f"wait_condition() needs a function taking no arguments, got {value!r:.80}"
        )


@attrs.frozen
class WaitCondition(_Yieldable[bool]):
    """Wait until *predicate* returns true (``fg.wait_condition``): ``True`` comes back.

    The predicate reads workflow state that an update handler (or another branch of the
    workflow) changes; the interpreter calls it again after every event it is fed. It is
    never recorded: a replay reaches the same answers by reading the same state. Only the
    timeout is recorded, as a timer (``timer_started``); when it fires first, ``False``
    comes back.

    Attributes:
        predicate: A function of no arguments, reading workflow state only (excluded from
            equality and repr, like every live object in a command).
        timeout: Seconds to wait before ``False`` comes back; ``None`` waits forever.
        name: How the wait is shown (the predicate's name; a lambda's file and line).
    """

    def __attrs_post_init__(self) -> None:
        if (
            self.timeout is not None
        ):  # it becomes a timer: refused here, not at the yield
            check_at_most_max(self.timeout, "wait_condition(timeout=...)", self.timeout)

    predicate: Callable[[], object] = attrs.field(
        eq=False, repr=False, validator=_check_predicate
    )
    timeout: float | None = attrs.field(
        default=None,
        converter=attrs.converters.optional(float),
        validator=_check_optional_seconds,
    )
    name: str = attrs.field(
        default=attrs.Factory(
            lambda self: _predicate_name(self.predicate), takes_self=True
        )
    )


@attrs.frozen
class RecordSideEffect(_Yieldable[T_co]):
    """Call *fn* once, record its result, and replay the recorded result forever after.

    Attributes:
        name: A name for the side effect (the function's qualified name by default).
        fn: The function to call, with no arguments.
        result_type: The type the recorded value is decoded to.
    """

    name: str = attrs.field(validator=_storable)
    fn: Callable[[], object] = attrs.field(eq=False, repr=False)
    result_type: object = attrs.field(default=object, eq=False, repr=False)


ParentClose: TypeAlias = Literal["terminate", "abandon", "request_cancel"]
"""What happens to a running child when its parent's run closes (see `StartChild`)."""

_PARENT_CLOSE: tuple[str, ...] = get_args(ParentClose)


def _check_parent_close(
    _instance: object, _attribute: attrs.Attribute[str], value: str
) -> None:
    if value not in _PARENT_CLOSE:
        raise ValueError(
            f"parent_close must be one of {', '.join(map(repr, _PARENT_CLOSE))}, "
            f"got {value!r}"
        )


@attrs.frozen
class StartChild(_Yieldable[T_co]):
    """Start a child workflow and wait for its result.

    Attributes:
        name: The child workflow's registered name.
        args: Positional arguments.
        kwargs: Keyword arguments.
        workflow_id: The child's id; by default ``"<parent id>/<seq>"``.
        fn: The child's workflow function, when named directly (not compared).
        result_type: The type the child's result is decoded to.
        parent_close: What happens to the child if it still runs when the parent's run
            closes (completed, failed, cancelled, terminated or continued as new):
            ``"terminate"`` (the default, as in Temporal) terminates it, ``"request_cancel"``
            cancels it (it may clean up), ``"abandon"`` leaves it running on its own.
    """

    name: str = attrs.field(validator=_storable)
    args: tuple[object, ...] = ()
    kwargs: dict[str, object] = attrs.field(factory=dict, converter=_frozen_mapping)
    workflow_id: str | None = attrs.field(default=None, validator=_storable)
    fn: Callable[..., object] | None = attrs.field(default=None, eq=False, repr=False)
    result_type: object = attrs.field(default=object, eq=False, repr=False)
    parent_close: ParentClose = attrs.field(
        default="terminate", validator=_check_parent_close
    )

    def options(self, *, parent_close: ParentClose) -> StartChild[T_co]:
        """The same child start with other options (commands are frozen: a new one).

        ``yield from fg.child(report, day).options(parent_close="abandon")``

        Args:
            parent_close: ``"terminate"``, ``"abandon"`` or ``"request_cancel"``: see the
                class.

        Returns:
            The new command.

        Raises:
            ValueError: An unknown *parent_close*.
        """
        return attrs.evolve(self, parent_close=parent_close)


@attrs.frozen
class SendSignal(_Yieldable[None]):
    """Send the signal *name* with *payload* to the run *workflow_id*, durably.

    Throws `SignalSendError` into the workflow if that run does not exist or has finished.
    """

    workflow_id: str = attrs.field(validator=_storable)
    name: str = attrs.field(validator=_storable)
    payload: object = None


@attrs.frozen
class GetVersion(_Yieldable[int]):
    """Ask which version of the change *change_id* this run follows.

    A new run records *max_supported*; a run recorded before the change existed gets
    `DEFAULT_VERSION`. See "Versioning" in ``_core/interpreter.py``.
    """

    change_id: str = attrs.field(validator=_storable)
    min_supported: int
    max_supported: int = attrs.field()

    @max_supported.validator
    def _check(self, _attribute: attrs.Attribute[int], value: int) -> None:
        if value < self.min_supported:
            raise ValueError(
                f"get_version({self.change_id!r}): max_supported {value} "
                f"< min_supported {self.min_supported}"
            )


@attrs.frozen
class Patched(_Yieldable[bool]):
    """Ask whether this run follows the code after the change *change_id*.

    ``True`` for a new run (which records version 1), ``False`` for a run recorded before
    the change existed (`DEFAULT_VERSION`). It shares its ``version_marked`` event with
    `GetVersion`: a change id recorded with any version other than `DEFAULT_VERSION` is
    patched.
    """

    change_id: str = attrs.field(validator=_storable)


@attrs.frozen
class CurrentTime(_Yieldable[datetime]):
    """Ask for the workflow's deterministic time (the time of the event that woke it)."""


@attrs.frozen
class WorkflowInfo:
    """Facts about the running workflow, from its ``workflow_started`` event.

    Attributes:
        workflow_id: The run's workflow id (stable across continue-as-new).
        run_id: This run's id.
        name: The workflow's registered name.
        started_at: When the run started (tz-aware UTC).
        parent_id: The parent's workflow id, for a child workflow.
    """

    workflow_id: str
    run_id: str
    name: str
    started_at: datetime
    parent_id: str | None = None


@attrs.frozen
class GetInfo(_Yieldable[WorkflowInfo]):
    """Ask for this run's `WorkflowInfo`."""


def _check_tags(
    _inst: object,
    _attribute: attrs.Attribute[dict[str, object]],
    value: dict[str, object],
) -> None:
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"set_tags: tag names must be strings, got {key!r}")
        _storable(_inst, cast("attrs.Attribute[str]", _attribute), key)


@attrs.frozen
class SetTags(_Yieldable[None]):
    """Merge *tags* into the run's searchable tags (a JSON column of ``workflows``)."""

    tags: dict[str, object] = attrs.field(
        converter=_frozen_mapping, validator=_check_tags
    )


@attrs.frozen
class RegisterQuery(_Yieldable[None]):
    """Register *handler* to answer `Engine.query` calls named *name* (read-only)."""

    name: str = attrs.field(validator=_storable)
    handler: Callable[..., object] = attrs.field(eq=False, repr=False)


@attrs.frozen
class RegisterUpdate(_Yieldable[None]):
    """Register *handler* to answer `Engine.update` calls named *name* (see ``fg.on_update``).

    Attributes:
        name: The update's name.
        handler: Called with the update's arguments when an update is accepted: a plain
            function (its return value is the result) or a generator function, whose
            commands run beside the workflow's main code (its return value is the result).
        validator: Called first with the same arguments, on the workflow's current state;
            if it raises, the update is rejected and nothing is recorded. ``None`` accepts
            every update.
    """

    name: str = attrs.field(validator=_storable)
    handler: Callable[..., object] = attrs.field(eq=False, repr=False)
    validator: Callable[..., object] | None = attrs.field(
        default=None, eq=False, repr=False
    )


@attrs.frozen
class ContinueAsNew(_Yieldable[NoReturn]):
    """End this run and start a fresh one of the same workflow with new arguments."""

    args: tuple[object, ...] = ()
    kwargs: dict[str, object] = attrs.field(factory=dict, converter=_frozen_mapping)


def _check_children(
    _inst: object,
    attribute: attrs.Attribute[tuple[object, ...]],
    value: tuple[object, ...],
) -> None:
    for child in value:
        if not isinstance(child, (*LEAF_COMMANDS, Gather, Race)):
            raise TypeError(
                f"{attribute.name} of gather()/race() must be activity calls, timers, "
                f"signal waits, side effects, child workflows, signals to send or nested "
                f"gather()/race(), got {child!r}"
            )


@attrs.frozen
class Gather(_Yieldable[T_co]):
    """Run *commands* concurrently; their results come back as a tuple, in order.

    The first failure is thrown into the workflow and the commands still pending are cancelled.
    """

    commands: tuple[Command, ...] = attrs.field(
        converter=tuple, validator=_check_children
    )


@attrs.frozen
class Race(_Yieldable[T_co]):
    """Run *commands* concurrently; the first to finish wins and the others are cancelled.

    ``(index, result)`` of the winner comes back; if the winner failed, its error is thrown.
    """

    commands: tuple[Command, ...] = attrs.field(
        converter=tuple, validator=_check_children
    )

    @commands.validator
    def _not_empty(
        self,
        _attribute: attrs.Attribute[tuple[Command, ...]],
        value: tuple[Command, ...],
    ) -> None:
        if not value:
            raise ValueError("race() needs at least one command")


Command: TypeAlias = (
    CallActivity[Any]
    | StartTimer
    | WaitSignal[Any]
    | RecordSideEffect[Any]
    | StartChild[Any]
    | SendSignal
    | WaitCondition
    | GetVersion
    | Patched
    | CurrentTime
    | GetInfo
    | SetTags
    | RegisterQuery
    | RegisterUpdate
    | ContinueAsNew
    | Gather[Any]
    | Race[Any]
)
"""Everything a workflow may yield (a closed union: the interpreter matches it exhaustively)."""

LEAF_COMMANDS: tuple[type, ...] = (
    CallActivity,
    StartTimer,
    WaitSignal,
    RecordSideEffect,
    StartChild,
    SendSignal,
)
"""Commands that take a sequence number and wait for an outcome."""

COMMAND_KINDS: Mapping[type, str] = {
    CallActivity: "activity",
    StartTimer: "timer",
    WaitSignal: "signal wait",
    RecordSideEffect: "side effect",
    StartChild: "child workflow",
    SendSignal: "signal send",
    WaitCondition: "wait_condition",
    GetVersion: "get_version",
    Patched: "patched",
    CurrentTime: "current_time",
    GetInfo: "info",
    SetTags: "set_tags",
    RegisterQuery: "on_query",
    RegisterUpdate: "on_update",
    ContinueAsNew: "continue_as_new",
    Gather: "gather",
    Race: "race",
}
"""Human names of command classes, for error messages."""


def describe_command(command: object) -> str:
    """A short human description, e.g. ``activity 'charge'``, for error messages."""
    kind = COMMAND_KINDS.get(type(command))
    if kind is None:
        return f"a {type(command).__name__} object ({command!r:.80}), which is not a flowgen command"
    name = getattr(command, "name", None)
    return f"{kind} {name!r}" if isinstance(name, str) else kind


for _cls in (*COMMAND_KINDS, ActivityOptions, WorkflowInfo):
    attrs.resolve_types(_cls)
