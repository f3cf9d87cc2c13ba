"""The Stepper: run a workflow by hand, one command at a time, with no engine.

Theory of operation
===================

A `Stepper` is a tiny engine that performs nothing on its own. It owns an `Interpreter`
(with the JSON codec, exactly as the engine's), a `ManualClock` and a history (a list of
events, ``workflow_started`` first). Every call that resolves a command (`Stepper.send`,
`Stepper.throw`, `Stepper.signal`, `Stepper.run`, ...) builds the *incoming event* the engine
would record, feeds it to the interpreter, and appends it and the decisions it provoked to the
history. So:

* Whatever a workflow receives has been through encode then decode (the event holds the
  encoded value; the interpreter decodes it with the command's result type), on the first
  step as on a replay. A value that cannot be encoded is refused with a `TypeError` that
  names it, and nothing is recorded.
* The history a Stepper builds is a real history: save it (``flowgen.testing.save_history``),
  replay it with `check_replay`, or open it again with `Stepper.from_history`.
* Time is the stepper's own `ManualClock`, starting at ``MANUAL_EPOCH``. It moves only with
  `Stepper.advance`, when a timer fires or a signal wait times out (to its due time), and when
  `Stepper.run` waits out an activity's retry delay (no real sleeping).

Outcomes
--------
An *outcome* is an incoming event after ``workflow_started``: an activity attempt's result
or failure, a timer firing, a signal, a side effect's value, a child's end, a signal sent, a
cancel request. `Stepper.fork` and `Stepper.from_history` count positions in outcomes; the
decision events that follow an outcome belong to it.

Generators cannot be copied, so a fork is a replay: `Stepper.fork` builds a new interpreter
and replays the first *k* outcomes of this stepper's history (with their decisions), never
touching the original. `Stepper.from_history` keeps a recorded history and moves a position
through it; every move rebuilds by replay (`Interpreter.replay` with ``outcomes=k``: the
whole history is indexed, so `get_version` decides what the recorded run decided).

Retries
-------
`Stepper.run` performs an activity the way the engine does: each failed attempt that the
activity's `RetryPolicy` (the engine's default, three attempts, when it declares none) allows
to be retried is recorded as ``activity_attempt_failed``, the clock jumps to the retry time and
the next attempt runs at once; the last failure is recorded as ``activity_failed``. Pass
``retries=False`` for one attempt only. Timeouts are not enforced (the call runs in-process,
to the end).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import re
from collections.abc import Callable, Generator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar

import attrs

from flowgen._core.dsl import parameter_types, workflow_definition, workflow_return_type
from flowgen._core.interpreter import Interpreter, RunStatus, error_info
from flowgen._runtime.clock import MANUAL_EPOCH, ManualClock
from flowgen._runtime.invoke import ActivityInfo, run_attempt
from flowgen._runtime.registry import Registry
from flowgen._stores.codec import CODEC
from flowgen._vocabulary.commands import (
    CallActivity,
    Command,
    RecordSideEffect,
    SendSignal,
    StartChild,
    StartTimer,
    WaitSignal,
    describe_command,
)
from flowgen._vocabulary.errors import (
    Cancelled,
    ErrorInfo,
    HistoryCorruptError,
    SignalTimeout,
    UnknownActivity,
)
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    INCOMING_EVENTS,
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
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
    TimerFired,
    TimerStarted,
    WorkflowStarted,
    WorkflowTerminated,
)
from flowgen._vocabulary.retry import NO_RETRY, RetryPolicy

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = ["ReplayResult", "Stepper", "check_replay"]

R = TypeVar("R")
P = ParamSpec("P")

WorkflowFn = Callable[..., Generator[Any, Any, R]]

_OUTCOMES = tuple(cls for cls in INCOMING_EVENTS if cls is not WorkflowStarted)
_RUN_NUMBER = re.compile(r"^(.*-)(\d+)$")


def _outcome_positions(history: Sequence[Event]) -> list[int]:
    """Indices of the outcomes (incoming events after ``workflow_started``)."""
    return [i for i, e in enumerate(history) if i and isinstance(e, _OUTCOMES)]


def _prefix(history: Sequence[Event], k: int) -> list[Event]:
    """The first *k* outcomes of *history* with the decisions that follow each of them."""
    positions = _outcome_positions(history)
    if not 0 <= k <= len(positions):
        raise ValueError(
            f"k must be between 0 and {len(positions)} (the outcomes recorded), got {k}"
        )
    return list(history[: positions[k]] if k < len(positions) else history)


def _started_event(history: Sequence[Event]) -> WorkflowStarted:
    first = history[0] if history else None
    if not isinstance(first, WorkflowStarted):
        raise HistoryCorruptError("a history must begin with a workflow_started event")
    return first


def _argument_names(fn: Callable[..., object]) -> tuple[list[str], str | None]:
    """Positional parameter names of *fn* (``self`` dropped for a bound method), and ``*args``."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return [], None
    names = [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    star = next((p.name for p in parameters if p.kind is p.VAR_POSITIONAL), None)
    return names, star


def _encode_arguments(
    fn: Callable[..., object],
    what: str,
    args: Sequence[object],
    kwargs: dict[str, object],
) -> tuple[list[JsonValue], dict[str, JsonValue]]:
    names, star = _argument_names(fn)

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


def _decode_arguments(
    fn: Callable[..., object], scheduled: ActivityScheduled
) -> tuple[list[object], dict[str, object]]:
    """An activity's recorded arguments, decoded with its parameter annotations."""
    hints = parameter_types(fn)
    names, star = _argument_names(fn)
    args = [
        CODEC.decode(a, hints.get(names[i] if i < len(names) else star or "", object))
        for i, a in enumerate(scheduled.args)
    ]
    kwargs = {
        k: CODEC.decode(v, hints.get(k, object)) for k, v in scheduled.kwargs.items()
    }
    return args, kwargs


def _call_activity(
    fn: Callable[..., object],
    args: list[object],
    kwargs: dict[str, object],
    info: ActivityInfo,
) -> object:
    """One attempt, in-process; ``async def`` activities get a fresh event loop.

    Inside a running loop (a Jupyter cell) that fresh loop runs on a helper thread.
    """
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  # async callable objects too
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running here: asyncio.run() is allowed
        is_async = False
    if not is_async:  # a plain function stays on this thread (thread-bound resources)
        return run_attempt(fn, args, kwargs, info)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run_attempt, fn, args, kwargs, info).result()


def _short(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe_event(event: Event, start: datetime) -> str:
    """One line per event, e.g. ``t+0s activity_completed seq=0 value=150``."""
    parts = [f"t+{(event.at - start).total_seconds():g}s", EVENT_TAGS[type(event)]]
    for field in attrs.fields(type(event)):
        if field.name == "at":
            continue
        value = getattr(event, field.name)
        if value is None or value == [] or value == {} or field.name == "started_at":
            continue
        if isinstance(value, ErrorInfo):
            parts.append(f"error={_short(str(value))}")
        elif isinstance(value, datetime):
            parts.append(f"{field.name}=t+{(value - start).total_seconds():g}s")
        else:
            parts.append(f"{field.name}={_short(value)}")
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


class Stepper(Generic[R]):
    """Run a workflow by hand, one command at a time, with no engine.

    ::

        s = fg.Stepper(process_order, "o-1")
        s.next()                  # CallActivity('validate_order', ('o-1',))
        s.send(True)              # the side effect's command
        s.run()                   # performs it for real; the charge is next
        s.throw(CardDeclined("no"))
        s.status, s.error, s.history, s.locals

    Each step builds the event the engine would record, feeds it to the interpreter with the
    JSON codec and appends it (and the decisions that follow) to `history`; see the module
    docstring for time, outcomes and retries. A new stepper has not started the workflow
    yet: `next` (or any step) does.

    Args:
        workflow: The workflow's generator function.
        *args: Its positional arguments (encoded and decoded, as the engine would).
        **kwargs: Its keyword arguments.

    Raises:
        TypeError: If an argument cannot be serialized (the message names it).
    """

    def __init__(
        self,
        workflow: Callable[P, Generator[Any, Any, R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        definition = workflow_definition(workflow)
        encoded_args, encoded_kwargs = _encode_arguments(
            workflow, f"workflow {definition.name!r}", args, kwargs
        )
        clock = ManualClock(MANUAL_EPOCH)
        started = WorkflowStarted(
            at=clock.now(),
            workflow_id=f"stepper-{definition.name}",
            run_id="run-1",
            name=definition.name,
            args=encoded_args,
            kwargs=encoded_kwargs,
        )
        self._setup(workflow, started, clock)

    @classmethod
    def create(
        cls,
        workflow: WorkflowFn[R],
        args: Sequence[object] = (),
        kwargs: dict[str, object] | None = None,
        *,
        workflow_id: str | None = None,
        run_id: str = "run-1",
        name: str | None = None,
        parent_id: str | None = None,
        clock: ManualClock | None = None,
        activities: Iterable[object] = (),
    ) -> Stepper[R]:
        """A stepper with everything `Stepper` picks by default made explicit.

        Args:
            workflow: The workflow's generator function.
            args: Its positional arguments.
            kwargs: Its keyword arguments.
            workflow_id: The run's workflow id; ``"stepper-<name>"`` by default.
            run_id: The run's id.
            name: The name the history records; the workflow's registered name by default
                (give it to record a run of yesterday's code under today's name).
            parent_id: The parent's workflow id, to step a child workflow.
            clock: The clock to share (a fresh `ManualClock` at ``MANUAL_EPOCH`` by default).
            activities: Activity functions or objects with ``@fg.activity`` methods, for
                `run` to find activities the workflow calls by name.

        Returns:
            A stepper that has not started the run yet.

        Raises:
            TypeError: If an argument cannot be serialized (the message names it).
        """
        definition = workflow_definition(workflow)
        label = name or definition.name
        encoded_args, encoded_kwargs = _encode_arguments(
            workflow, f"workflow {label!r}", args, dict(kwargs or {})
        )
        clock = clock if clock is not None else ManualClock(MANUAL_EPOCH)
        started = WorkflowStarted(
            at=clock.now(),
            workflow_id=workflow_id or f"stepper-{label}",
            run_id=run_id,
            name=label,
            args=encoded_args,
            kwargs=encoded_kwargs,
            parent_id=parent_id,
        )
        self = cls.__new__(cls)
        self._setup(workflow, started, clock)
        self._registry.register(*activities)
        return self

    @classmethod
    def from_history(
        cls, workflow: WorkflowFn[R], history: Sequence[Event]
    ) -> Stepper[R]:
        """A stepper over a recorded run, positioned at its start, for time travel.

        Move with `forward`, `back` and `goto`; look with `command`, `locals`, `history`
        (the events up to the position) and `next_outcome`. It only replays what was
        recorded: to try another outcome from here, `fork` it.

        Args:
            workflow: The workflow function as the code stands today.
            history: The recorded events, ``workflow_started`` first.

        Returns:
            A stepper at position 0 (the run started, no outcome fed yet).

        Raises:
            NonDeterminismError: The code diverges from the history before its first outcome.
            HistoryCorruptError: The history does not begin with ``workflow_started``.
        """
        recorded = list(history)
        started = _started_event(recorded)
        self = cls.__new__(cls)
        self._setup(workflow, started, ManualClock(started.at))
        self._recorded = recorded
        self._goto(0)
        return self

    def _setup(
        self, workflow: WorkflowFn[R], started: WorkflowStarted, clock: ManualClock
    ) -> None:
        self._fn = workflow
        self._started = started
        self._clock = clock
        self._interp = Interpreter(workflow, codec=CODEC)
        self._history: list[Event] = []
        self._signals = 0
        self._recorded: list[Event] | None = None
        self._position = 0
        self._registry = Registry()

    # -- looking ------------------------------------------------------------------------------

    @property
    def workflow(self) -> WorkflowFn[R]:
        """The workflow function being stepped."""
        return self._fn

    @property
    def workflow_id(self) -> str:
        """The run's workflow id (``"stepper-<name>"`` unless given to `create`)."""
        return self._started.workflow_id

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._started.run_id

    @property
    def status(self) -> RunStatus:
        """Where the run is: ``NEW`` before the first step, ``WAITING`` at a ``yield``, ..."""
        return self._interp.status

    @property
    def pending(self) -> dict[int, Command]:
        """Every command awaited right now, by seq (several under ``gather``/``race``)."""
        return self._interp.pending

    @property
    def command(self) -> Command | None:
        """The pending command with the lowest seq, or ``None`` (not started, or ended)."""
        pending = self._interp.pending
        return pending[min(pending)] if pending else None

    @property
    def seq(self) -> int | None:
        """The seq of `command`, or ``None``."""
        pending = self._interp.pending
        return min(pending) if pending else None

    @property
    def result(self) -> R | None:
        """The workflow's result, decoded to its return type, once it completed."""
        if self._interp.status is not RunStatus.COMPLETED:
            return None
        value: Any = CODEC.decode(self._interp.result, workflow_return_type(self._fn))
        return value  # type: ignore[no-any-return]  # decoded to R's own annotation

    @property
    def error(self) -> ErrorInfo | None:
        """The failure, if the run failed, was cancelled or terminated."""
        return self._interp.error

    @property
    def history(self) -> list[Event]:
        """A copy of the events so far (up to the position, for `from_history`).

        A plain list, shown as a table in Jupyter.
        """
        from flowgen._render.html import History

        return History(self._history)

    @property
    def locals(self) -> dict[str, object]:
        """The workflow function's local variables at the ``yield`` where it waits.

        Also while it waits inside ``yield from`` (a DSL helper, ``saga.compensate()``).
        """
        return self._interp.frame_locals()

    @property
    def yield_site(self) -> str:
        """``file:line`` of the ``yield`` the workflow waits at (``"?"`` if none)."""
        return self._interp.yield_site()

    @property
    def now(self) -> datetime:
        """The stepper's clock: the time the next event will carry."""
        return self._clock.now()

    @property
    def clock(self) -> ManualClock:
        """The stepper's `ManualClock`."""
        return self._clock

    @property
    def interpreter(self) -> Interpreter:
        """The interpreter underneath (for tags, queries and other introspection)."""
        return self._interp

    @property
    def outcomes(self) -> int:
        """How many outcomes the history holds (all of the recording, for `from_history`)."""
        source = self._recorded if self._recorded is not None else self._history
        return len(_outcome_positions(source))

    @property
    def position(self) -> int:
        """How many outcomes have been fed so far."""
        if self._recorded is not None:
            return self._position
        return len(_outcome_positions(self._history))

    @property
    def recorded(self) -> list[Event] | None:
        """The whole recorded history of a `from_history` stepper (else ``None``)."""
        return None if self._recorded is None else list(self._recorded)

    @property
    def next_outcome(self) -> Event | None:
        """The recorded outcome `forward` will feed next (`from_history` only)."""
        if self._recorded is None:
            return None
        positions = _outcome_positions(self._recorded)
        if self._position >= len(positions):
            return None
        return self._recorded[positions[self._position]]

    def query(self, name: str, *args: object) -> object:
        """Answer a query with the handler the workflow registered with `on_query`."""
        return self._interp.query(name, *args)

    # -- stepping -----------------------------------------------------------------------------

    def next(self) -> Command | None:
        """Start the run if it has not started, and return the pending command (lowest seq).

        Returns:
            The command the workflow waits for, or ``None`` if the run has ended.
        """
        self._ensure_started()
        return self.command

    def send(self, value: object = None, *, seq: int | None = None) -> Command | None:
        """Resolve a pending command with *value*, as if it had been performed.

        The event built depends on the command: ``activity_completed``, ``timer_fired``
        (*value* must be ``None``; the clock moves to the due time), ``signal_received`` (the
        wait's name, the next signal index), ``side_effect_recorded``, ``child_completed`` or
        ``signal_sent`` (*value* must be ``None``). A signal goes to the oldest wait for its
        name, as it would in the engine.

        Args:
            value: The outcome, encoded then decoded as in the engine.
            seq: Which pending command; the lowest seq by default.

        Returns:
            The next pending command, or ``None`` when the run has ended.

        Raises:
            TypeError: If *value* cannot be serialized, or does not fit the command.
            ValueError: If *seq* is not pending.
            RuntimeError: If nothing is pending, or this stepper replays a recording.
        """
        seq, command = self._pending_at(seq)
        what = f"value sent to {describe_command(command)} (seq {seq})"
        now = self._clock.now()
        event: Event
        match command:
            case CallActivity():
                event = ActivityCompleted(
                    at=now,
                    seq=seq,
                    value=CODEC.encode(value, what),
                    attempt=self._interp.attempts(seq)[0] + 1,
                )
            case StartTimer():
                self._no_value(value, command, "fire_timer()")
                return self.fire_timer(seq=seq)
            case WaitSignal(name=name):
                event = self._signal_event(name, CODEC.encode(value, what))
            case RecordSideEffect(name=name):
                event = SideEffectRecorded(
                    at=now, seq=seq, name=name, value=CODEC.encode(value, what)
                )
            case StartChild():
                event = ChildCompleted(
                    at=now,
                    seq=seq,
                    child_id=self._child_id(seq),
                    value=CODEC.encode(value, what),
                )
            case SendSignal(workflow_id=target, name=name):
                self._no_value(value, command, "send(None)")
                event = SignalSent(at=now, seq=seq, workflow_id=target, name=name)
            case _:  # pragma: no cover  # only leaf commands are ever pending
                raise AssertionError(command)
        return self._feed(event)

    def throw(self, exc: BaseException, *, seq: int | None = None) -> Command | None:
        """Fail a pending command with *exc*, as if performing it had failed.

        ``fg.Cancelled(reason)`` records a cancel request instead (it cancels the run, not one
        command). Otherwise: an activity gets ``activity_failed`` (its retries spent), a signal
        wait ``signal_timed_out`` (*exc* must be a `SignalTimeout`; the clock moves to the
        deadline), a child ``child_failed``, a signal to send ``signal_send_failed``.

        Args:
            exc: The exception; it is recorded as `ErrorInfo` (type name, message).
            seq: Which pending command; the lowest seq by default.

        Returns:
            The next pending command, or ``None`` when the run has ended.

        Raises:
            TypeError: If *exc* is not an exception, or the command cannot fail that way.
            ValueError: If *seq* is not pending, or a wait without a timeout is timed out.
            RuntimeError: If nothing is pending, or this stepper replays a recording.
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"throw() needs an exception instance, got {exc!r}")
        if isinstance(exc, Cancelled):
            return self.cancel(exc.info.message)
        seq, command = self._pending_at(seq)
        now = self._clock.now()
        event: Event
        match command:
            case CallActivity():
                attempt = self._interp.attempts(seq)[0] + 1
                event = ActivityFailed(
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
                scheduled = self._interp.scheduled_event(seq)
                if isinstance(scheduled, SignalWaitStarted) and scheduled.deadline:
                    self._clock.set(scheduled.deadline)
                event = SignalTimedOut(at=self._clock.now(), seq=seq)
            case StartChild():
                event = ChildFailed(
                    at=now, seq=seq, child_id=self._child_id(seq), error=error_info(exc)
                )
            case SendSignal(workflow_id=target, name=name):
                event = SignalSendFailed(
                    at=now,
                    seq=seq,
                    workflow_id=target,
                    name=name,
                    error=error_info(exc),
                )
            case _:
                raise TypeError(
                    f"{describe_command(command)} (seq {seq}) cannot fail: a timer only "
                    f"fires and a side effect only records a value (use send(), or "
                    f"throw(fg.Cancelled()) to cancel the run)"
                )
        return self._feed(event)

    def fail_attempt(
        self,
        exc: BaseException,
        *,
        seq: int | None = None,
        retry_after: float | timedelta = 1.0,
    ) -> Command | None:
        """Record one failed attempt of a pending activity that will be retried.

        The activity stays pending; the clock moves on to the retry time.

        Args:
            exc: The attempt's exception.
            seq: Which pending activity; the lowest seq by default.
            retry_after: The delay before the next attempt.

        Returns:
            The pending command (the same activity, unless it is not the lowest seq).
        """
        seq, command = self._pending_at(seq)
        if not isinstance(command, CallActivity):
            raise TypeError(
                f"fail_attempt() is for activities; seq {seq} is {describe_command(command)}"
            )
        delay = (
            retry_after
            if isinstance(retry_after, timedelta)
            else timedelta(seconds=retry_after)
        )
        attempt = self._interp.attempts(seq)[0] + 1
        now = self._clock.now()
        result = self._feed(
            ActivityAttemptFailed(
                at=now,
                seq=seq,
                error=error_info(exc, attempts=attempt),
                attempt=attempt,
                retry_at=now + delay,
            )
        )
        self._clock.set(now + delay)
        return result

    def signal(
        self, name: str, payload: object = None, *, sender: str | None = None
    ) -> Command | None:
        """Deliver a signal; it waits in a buffer if the workflow is not waiting for it.

        Args:
            name: The signal's name.
            payload: Its payload (encoded then decoded with the wait's result type).
            sender: ``"<workflow id>/<seq>"`` of the sending workflow, if one sent it.

        Returns:
            The next pending command, or ``None`` when the run has ended.
        """
        self._ensure_live()
        payload_json = CODEC.encode(payload, f"payload of signal {name!r}")
        return self._feed(self._signal_event(name, payload_json, sender))

    def fire_timer(self, *, seq: int | None = None) -> Command | None:
        """Fire a pending timer; the clock moves to its due time first.

        Args:
            seq: Which timer; by default the one due first.

        Returns:
            The next pending command, or ``None`` when the run has ended.
        """
        self._ensure_live()
        self._ensure_started()
        if seq is None:
            timers = [
                (started.fire_at, s)
                for s, cmd in self._interp.pending.items()
                if isinstance(cmd, StartTimer)
                and isinstance(started := self._interp.scheduled_event(s), TimerStarted)
            ]
            if not timers:
                raise RuntimeError(
                    f"no timer is pending (pending: {self._describe_pending()})"
                )
            seq = min(timers)[1]
        seq, command = self._pending_at(seq)
        if not isinstance(command, StartTimer):
            raise TypeError(f"seq {seq} is {describe_command(command)}, not a timer")
        started = self._interp.scheduled_event(seq)
        if isinstance(started, TimerStarted):
            self._clock.set(started.fire_at)
        return self._feed(TimerFired(at=self._clock.now(), seq=seq))

    def cancel(self, reason: str = "") -> Command | None:
        """Request cancellation: `Cancelled` is thrown at the workflow's ``yield``.

        Returns:
            The next pending command (a saga's compensation, say), or ``None``.
        """
        self._ensure_live()
        return self._feed(CancelRequested(at=self._clock.now(), reason=reason))

    def terminate(self, reason: str = "") -> None:
        """End the run from outside, without running any more workflow code."""
        self._ensure_live()
        self._feed(WorkflowTerminated(at=self._clock.now(), reason=reason))

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the stepper's clock forward; later events carry the new time.

        Returns:
            The new time.
        """
        return self._clock.advance(seconds)

    def run(self, *, seq: int | None = None, retries: bool = True) -> Command | None:
        """Perform a pending command for real, in this process, and record its outcome.

        * An activity is called (plain function, bound method, or ``async def`` in a fresh
          event loop) with its recorded arguments decoded by its parameter annotations, so
          it sees what it would see in the engine; ``fg.activity_info()`` works inside it.
          Failures follow its `RetryPolicy` (see the module docstring); with
          ``retries=False`` the first failure is final.
        * A side effect's function is called and its value recorded. If it raises, the
          exception propagates and nothing is recorded (the engine would retry it later).
        * A timer fires (`fire_timer`); a signal to send is recorded as sent (there is no
          engine to deliver it).

        Signal waits and child workflows cannot be performed here: `signal` or `send` /
        `throw` their outcome.

        Args:
            seq: Which pending command; the lowest seq by default.
            retries: Honour the activity's retry policy (default) or make one attempt.

        Returns:
            The next pending command, or ``None`` when the run has ended.

        Raises:
            TypeError: If the command cannot be performed here.
            UnknownActivity: An activity called by name that no registry knows.
        """
        seq, command = self._pending_at(seq)
        match command:
            case CallActivity():
                return self._run_activity(seq, command, retries=retries)
            case RecordSideEffect(name=name, fn=fn):
                value = CODEC.encode(fn(), f"result of side effect {name!r}")
                return self._feed(
                    SideEffectRecorded(
                        at=self._clock.now(), seq=seq, name=name, value=value
                    )
                )
            case StartTimer():
                return self.fire_timer(seq=seq)
            case SendSignal():
                return self.send(None, seq=seq)
            case _:
                raise TypeError(
                    f"run() cannot perform {describe_command(command)} (seq {seq}): "
                    f"deliver it with signal() / send(), or fail it with throw()"
                )

    def _run_activity(
        self, seq: int, command: CallActivity[Any], *, retries: bool
    ) -> Command | None:
        policy: RetryPolicy | None = command.options.retry
        try:
            definition, fn = self._registry.resolve(command)  # what runs: see Registry
        except UnknownActivity as exc:
            raise UnknownActivity(
                f"{exc} (or resolve it by hand with send() / throw())"
            ) from None
        policy = policy or definition.options.retry
        if not retries:
            policy = NO_RETRY
        elif policy is None:
            policy = RetryPolicy()  # the engine's default
        scheduled = self._interp.scheduled_event(seq)
        assert isinstance(scheduled, ActivityScheduled)
        while True:
            attempt = self._interp.attempts(seq)[0] + 1
            started = self._clock.now()
            info = ActivityInfo(
                self._started.workflow_id,
                self._started.run_id,
                seq,
                command.name,
                attempt,
                scheduled.at,
            )
            try:
                args, kwargs = _decode_arguments(fn, scheduled)
                value = _call_activity(fn, args, kwargs, info)
                payload = CODEC.encode(value, f"result of activity {command.name!r}")
            except Exception as exc:  # noqa: BLE001  # an activity's failure is data
                error = error_info(exc, attempts=attempt)
                if isinstance(
                    exc, TypeError
                ):  # cannot encode or decode: retrying is futile
                    error = attrs.evolve(error, non_retryable=True)
                now = self._clock.now()
                delay = policy.delay_after(
                    attempt, error.type, non_retryable=error.non_retryable
                )
                if delay is None:
                    return self._feed(
                        ActivityFailed(
                            at=now,
                            seq=seq,
                            error=error,
                            attempt=attempt,
                            started_at=started,
                        )
                    )
                retry_at = now + timedelta(seconds=delay)
                self._feed(
                    ActivityAttemptFailed(
                        at=now,
                        seq=seq,
                        error=error,
                        attempt=attempt,
                        retry_at=retry_at,
                        started_at=started,
                    )
                )
                self._clock.set(retry_at)
                continue
            return self._feed(
                ActivityCompleted(
                    at=self._clock.now(),
                    seq=seq,
                    value=payload,
                    attempt=attempt,
                    started_at=started,
                )
            )

    # -- branching and time travel ----------------------------------------------------------

    def fork(self, k: int | None = None) -> Stepper[R]:
        """A new stepper that has replayed the first *k* outcomes of this one's history.

        The fork has the decisions that followed the *k*-th outcome and waits for a
        different next one (outcome k + 1). This stepper is never touched.

        Args:
            k: How many outcomes to keep; by default all so far (`position`).

        Returns:
            A live stepper (it records new outcomes, even when forked from a recording).

        Raises:
            ValueError: If *k* is negative or beyond the recorded outcomes.
        """
        source = self._recorded if self._recorded is not None else self._history
        if not source:  # not started: a fork is a fresh stepper of the same run
            return self._fresh(self._started, ManualClock(self._clock.now()))
        prefix = _prefix(source, self.position if k is None else k)
        fork = self._fresh(_started_event(prefix), ManualClock(prefix[-1].at))
        step = fork._interp.replay(prefix)
        fork._history = [*prefix, *step.events]
        fork._signals = sum(isinstance(e, SignalReceived) for e in prefix)
        return fork

    def forward(self) -> Command | None:
        """Feed the next recorded outcome (`from_history` only).

        Returns:
            The pending command at the new position.

        Raises:
            IndexError: At the end of the recording.
        """
        return self.goto(self._require_recording().position + 1)

    def back(self) -> Command | None:
        """Go back one outcome (rebuilt by replay: generators cannot be rewound).

        Raises:
            IndexError: At the start of the recording.
        """
        return self.goto(self._require_recording().position - 1)

    def goto(self, k: int) -> Command | None:
        """Move to the position after the first *k* recorded outcomes (`from_history` only).

        Returns:
            The pending command at position *k*.

        Raises:
            IndexError: If *k* lies outside ``0..outcomes``.
            NonDeterminismError: If today's code diverges from the recording on the way.
        """
        recording = self._require_recording()
        if not 0 <= k <= recording.outcomes:
            raise IndexError(
                f"position {k} is outside the recording (0..{recording.outcomes})"
            )
        self._goto(k)
        return self.command

    def _goto(self, k: int) -> None:
        assert self._recorded is not None
        interp = Interpreter(self._fn, codec=CODEC)
        step = interp.replay(self._recorded, outcomes=k)
        prefix = _prefix(self._recorded, k)
        self._interp = interp
        self._position = k
        self._history = [*prefix, *step.events]
        self._signals = sum(isinstance(e, SignalReceived) for e in prefix)
        self._clock = ManualClock(prefix[-1].at)

    def next_run(self) -> Stepper[R]:
        """The next run of a workflow that continued as new, as a fresh stepper.

        It keeps the workflow id, takes the next run id, and starts at this run's end time.

        Raises:
            RuntimeError: If the run did not continue as new.
        """
        continued = self._interp.continue_args
        if self._interp.status is not RunStatus.CONTINUED_AS_NEW or continued is None:
            raise RuntimeError(
                f"the run is {self.status.value}, not continued_as_new: it has no next run"
            )
        match = _RUN_NUMBER.match(self._started.run_id)
        run_id = (
            f"{match.group(1)}{int(match.group(2)) + 1}"
            if match
            else f"{self._started.run_id}-2"
        )
        end = self._history[-1].at if self._history else self._clock.now()
        started = attrs.evolve(
            self._started,
            at=end,
            run_id=run_id,
            args=list(continued[0]),
            kwargs=dict(continued[1]),
        )
        return self._fresh(started, ManualClock(end))

    # -- helpers ----------------------------------------------------------------------------

    def _fresh(self, started: WorkflowStarted, clock: ManualClock) -> Stepper[R]:
        other: Stepper[R] = Stepper.__new__(Stepper)
        other._setup(self._fn, started, clock)
        other._registry = self._registry
        return other

    def _require_recording(self) -> Stepper[R]:
        if self._recorded is None:
            raise RuntimeError(
                "forward(), back() and goto() move through a recording: open one with "
                "Stepper.from_history(workflow, history)"
            )
        return self

    def _ensure_live(self) -> None:
        if self._recorded is not None:
            raise RuntimeError(
                "this stepper replays a recorded history and takes no new outcomes; "
                "use .fork() to try a different path from here"
            )

    def _ensure_started(self) -> None:
        if self._interp.status is RunStatus.NEW and self._recorded is None:
            step = self._interp.feed(self._started)
            self._history = [self._started, *step.events]

    def _pending_at(self, seq: int | None) -> tuple[int, Command]:
        self._ensure_live()
        self._ensure_started()
        pending = self._interp.pending
        if not pending:
            raise RuntimeError(f"nothing is pending: the run is {self.status.value}")
        if seq is None:
            seq = min(pending)
        elif seq not in pending:
            raise ValueError(
                f"seq {seq} is not pending (pending: {self._describe_pending()})"
            )
        return seq, pending[seq]

    def _feed(self, event: Event) -> Command | None:
        self._ensure_started()
        step = self._interp.feed(event)
        self._history.append(event)
        self._history.extend(step.events)
        if isinstance(event, SignalReceived):
            self._signals += 1
        return self.command

    def _signal_event(
        self, name: str, payload: JsonValue, sender: str | None = None
    ) -> SignalReceived:
        return SignalReceived(
            at=self._clock.now(),
            name=name,
            payload=payload,
            index=self._signals,
            sender=sender,
        )

    def _child_id(self, seq: int) -> str:
        started = self._interp.scheduled_event(seq)
        assert isinstance(started, ChildStarted)
        return started.child_id

    @staticmethod
    def _no_value(value: object, command: Command, instead: str) -> None:
        if value is not None:
            raise TypeError(
                f"{describe_command(command)} takes no value; send(None) or {instead}, "
                f"got {value!r}"
            )

    def _describe_pending(self) -> str:
        pending = self._interp.pending
        if not pending:
            return "nothing"
        return ", ".join(
            f"seq {s}: {describe_command(c)}" for s, c in sorted(pending.items())
        )

    def _repr_html_(self) -> str:
        from flowgen._render.html import stepper_html

        position = self.yield_site if self.status is RunStatus.WAITING else ""
        if self._recorded is not None:
            position = (
                f"{position} (outcome {self._position} of {self.outcomes})".strip()
            )
        return stepper_html(
            workflow=self._started.name,
            status=self.status.value,
            pending=self.pending,
            variables=self.locals,
            history=self._history,
            result=self.result,
            error=self.error,
            position=position,
        )

    def __repr__(self) -> str:
        name = self._started.name
        args = ", ".join(
            [repr(a) for a in self._started.args]
            + [f"{k}={v!r}" for k, v in self._started.kwargs.items()]
        )
        status = self.status
        if len(args) > 80:
            args = args[:77] + "..."
        lines = [f"<Stepper {name}({args}) {status.value}"]
        if self._recorded is not None:
            upcoming = self.next_outcome
            lines[0] += f", position {self._position}/{self.outcomes}"
            if upcoming is not None:
                lines.append(
                    f"  next recorded: {_describe_event(upcoming, self._started.at)}"
                )
        if status is RunStatus.NEW:
            lines.append("  not started: call .next()")
        elif status is RunStatus.WAITING:
            lines[0] += f" at {self.yield_site}"
            for s, cmd in sorted(self._interp.pending.items()):
                lines.append(f"  pending seq {s}: {cmd!r}")
        elif status is RunStatus.COMPLETED:
            lines.append(f"  result: {_short(self.result, 100)}")
        elif self.error is not None:
            lines.append(f"  error: {_short(str(self.error), 100)}")
        shown = self._history[-5:]
        if shown:
            lines.append(
                f"  history: {len(self._history)} events"
                + (", the last 5:" if len(self._history) > 5 else ":")
            )
            first = len(self._history) - len(shown)
            lines.extend(
                f"    {first + i:>3} {_describe_event(e, self._started.at)}"
                for i, e in enumerate(shown)
            )
        return "\n".join(lines) + ">"
