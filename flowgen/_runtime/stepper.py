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

The Stepper lives in three modules: this one steps and travels (it is the only writer of
the state); ``stepper_view`` declares the state and answers every read-only question about
it (status, pending, result, locals, text and HTML); ``stepper_support`` holds the helpers
that keep no state (the events for hand-given outcomes, prefixes of histories) and
`check_replay`.

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
`Stepper.run` performs an activity with the engine's own procedure
(`flowgen._runtime.invoke.attempt_event`) and outcome rule
(`flowgen._core.outcome.attempt_outcome`), so it records what production records: the same
function (a method named on its class runs bound to the object registered with
``activities=``), the same policy (the activity's `RetryPolicy`, else ``retry=`` of
`Stepper.create`, else the engine's default of three attempts), the same non-retryable
errors. Each failed attempt that may be retried is recorded as ``activity_attempt_failed``,
the clock jumps to the retry time and the next attempt runs at once; the last failure is
recorded as ``activity_failed``. Pass ``retries=False`` for one attempt only. Timeouts are
not enforced (the call runs in-process, to the end). One difference is deliberate: an
activity that no registry knows raises `UnknownActivity` and records nothing (the engine
would record a failure), since it is the test's setup that is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ParamSpec, TypeVar

import attrs

from flowgen._core.dsl import workflow_definition
from flowgen._core.interpreter import Interpreter, RunStatus, error_info
from flowgen._runtime.arguments import text_argument
from flowgen._runtime.clock import MANUAL_EPOCH, ManualClock
from flowgen._runtime.invoke import ActivityInfo, attempt_event
from flowgen._runtime.stepper_support import (
    ReplayResult,
    call_activity,
    check_replay,
    encode_arguments,
    next_run_id,
    no_value,
    prefix,
    refuse_a_tuple_for_the_group,
    sent_event,
    started_event,
    thrown_event,
)
from flowgen._runtime.stepper_view import StepperView
from flowgen._runtime.updates import accept_by_hand, answer_of
from flowgen._stores.codec import CODEC
from flowgen._vocabulary.commands import (
    CallActivity,
    Command,
    RecordSideEffect,
    SendSignal,
    StartTimer,
    describe_command,
)
from flowgen._vocabulary.errors import Cancelled, UnknownActivity, UsageError
from flowgen._vocabulary.events import (
    ActivityAttemptFailed,
    ActivityScheduled,
    CancelRequested,
    Event,
    JsonValue,
    SideEffectRecorded,
    SignalReceived,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    WorkflowStarted,
    WorkflowTerminated,
)
from flowgen._vocabulary.retry import RetryPolicy

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = ["ReplayResult", "Stepper", "check_replay"]

R = TypeVar("R")
P = ParamSpec("P")

WorkflowFn = Callable[..., Generator[Any, Any, R]]


class Stepper(StepperView[R]):
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

    Under ``gather`` or ``race`` several commands are pending at once (`pending`), and each
    takes its own outcome, as in the engine: ``send(value, seq=N)`` (or ``throw``, ``run``,
    ...) per branch; without ``seq`` a step goes to the lowest pending seq (`command`). The
    tuple the workflow receives from a ``gather`` is built from those outcomes: sending a
    tuple with one item per pending command without ``seq`` is refused with a `TypeError`
    that says so (give ``seq=`` to send a tuple to one command).

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
        encoded_args, encoded_kwargs = encode_arguments(
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
        retry: RetryPolicy | None = None,
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
                `run` to find activities the workflow calls by name (or by their
                class's method).
            retry: The retry policy of activities that declare none, as
                ``Engine(retry=...)``; the engine's default (three attempts) if ``None``.

        Returns:
            A stepper that has not started the run yet.

        Raises:
            TypeError: If an argument cannot be serialized (the message names it).
        """
        definition = workflow_definition(workflow)
        label = name or definition.name
        encoded_args, encoded_kwargs = encode_arguments(
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
        if retry is not None:
            self._retry = retry
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
        started = started_event(recorded)
        self = cls.__new__(cls)
        self._setup(workflow, started, ManualClock(started.at))
        self._recorded = recorded
        self._goto(0)
        return self

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
            TypeError: If *value* cannot be serialized, or does not fit the command, or
                is a tuple with one item per pending command of a ``gather`` (send one
                outcome per branch, with ``seq``).
            ValueError: If *seq* is not pending.
            RuntimeError: If nothing is pending, or this stepper replays a recording.
        """
        if seq is None:
            self._ensure_live()
            self._ensure_started()
            refuse_a_tuple_for_the_group(self._interp.pending, value)
        seq, command = self._pending_at(seq)
        if isinstance(command, StartTimer):
            no_value(value, command, "fire_timer()")
            return self.fire_timer(seq=seq)
        return self._feed(
            sent_event(
                self._interp,
                seq,
                command,
                value,
                now=self._clock.now(),
                signal_index=self._signals,
            )
        )

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
        return self._feed(
            thrown_event(self._interp, seq, command, exc, clock=self._clock)
        )

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
        if not name:
            raise UsageError(f"a signal name must be a non-empty string, got {name!r}")
        name = text_argument(name, "the signal name")
        payload_json = CODEC.encode(payload, f"payload of signal {name!r}")
        return self._feed(
            SignalReceived(
                at=self._clock.now(),
                name=name,
                payload=payload_json,
                index=self._signals,
                sender=sender,
            )
        )

    def update(
        self, name: str, *args: object, update_id: str | None = None
    ) -> Command | None:
        """Send an update, as `Engine.update` does: validated first, then recorded.

        The validator runs on the workflow's current state; if it raises, `UpdateRejected`
        is raised and nothing is recorded. Otherwise ``update_accepted`` is recorded and the
        handler runs: a plain function's result is recorded at once; a generator function's
        commands become pending beside the main code's (perform them with `run`, `send`,
        `fire_timer`, ...). Read the answer with `update_result`. An *update_id* the run
        already accepted records nothing again.

        Args:
            name: The update's name.
            *args: Its arguments (encoded, then decoded with the handler's annotations).
            update_id: Its id; ``"update-<n>"`` (the next free number) if omitted.

        Returns:
            The next pending command, or ``None`` when the run has ended.
        """
        self._ensure_live()
        self._ensure_started()
        accepted = accept_by_hand(
            self._interp,
            self._started.workflow_id,
            self._clock.now(),
            name,
            args,
            update_id,
            self.update_ids,
        )
        return self.command if accepted is None else self._feed(accepted)

    @property
    def update_ids(self) -> list[str]:
        """The ids of the updates the run accepted so far, in order."""
        return [e.update_id for e in self._history if isinstance(e, UpdateAccepted)]

    def update_result(self, update_id: str | None = None) -> object:
        """The result of an accepted update, as `Engine.update` would return it.

        Args:
            update_id: Which update; the latest accepted if omitted.

        Raises:
            UpdateFailed: Its handler raised.
            LookupError: No update with this id (or none at all) was accepted.
            RuntimeError: Its handler still waits for a command.
        """
        if update_id is None:
            ids = self.update_ids
            if not ids:
                raise LookupError("the run accepted no update yet")
            update_id = ids[-1]
        return answer_of(self._interp, update_id)

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
        assert isinstance(started, TimerStarted)  # a pending timer was started
        self._clock.set(started.fire_at)
        return self._feed(TimerFired(at=self._clock.now(), seq=seq))

    def cancel(self, reason: str = "") -> Command | None:
        """Request cancellation: `Cancelled` is thrown at the workflow's ``yield``.

        Returns:
            The next pending command (a saga's compensation, say), or ``None``.
        """
        self._ensure_live()
        reason = text_argument(reason, "the cancel reason")
        return self._feed(CancelRequested(at=self._clock.now(), reason=reason))

    def terminate(self, reason: str = "") -> None:
        """End the run from outside, without running any more workflow code."""
        self._ensure_live()
        reason = text_argument(reason, "the terminate reason")
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
        try:
            self._registry.resolve(command)  # what runs: see Registry
        except UnknownActivity as exc:  # a test's setup, not the run's: record nothing
            raise UnknownActivity(
                f"{exc} (or resolve it by hand with send() / throw())"
            ) from None
        scheduled = self._interp.scheduled_event(seq)
        assert isinstance(scheduled, ActivityScheduled)
        details: list[JsonValue] = [None]  # the last heartbeat's, for the next attempt
        while True:
            info = ActivityInfo(
                self._started.workflow_id,
                self._started.run_id,
                seq,
                command.name,
                self._interp.attempts(seq)[0] + 1,
                scheduled.at,
                heartbeat_details=details[0],
                heartbeat_timeout=command.options.heartbeat_timeout,
            )
            # The engine's own procedure and outcome rule (`attempt_outcome`), in-process.
            event = attempt_event(
                command,
                scheduled,
                info,
                registry=self._registry,
                default=self._retry,
                now=self._clock.now,
                call=partial(call_activity, beat=partial(details.__setitem__, 0)),
                retries=retries,
            )
            result = self._feed(event)
            if not isinstance(event, ActivityAttemptFailed):
                return result
            self._clock.set(event.retry_at)

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
        fork = self._fresh(self._started, self._clock)
        fork._replay(source, self.position if k is None else k, whole=False)
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
        self._replay(self._recorded, k, whole=True)
        self._position = k

    def _replay(self, source: list[Event], k: int, *, whole: bool) -> None:
        """Rebuild by replay: the first *k* outcomes of *source* fed to a new interpreter.

        With *whole*, the whole of *source* is indexed (a recording: `get_version` answers
        as the recorded run did at that point); else only its first *k* outcomes (a fork,
        which goes its own way after them).
        """
        kept = prefix(source, k)
        interp = Interpreter(self._fn, codec=CODEC)
        step = interp.replay(source, outcomes=k) if whole else interp.replay(kept)
        self._interp = interp
        self._started = started_event(kept)
        self._history = [*kept, *step.events]
        self._signals = sum(isinstance(e, SignalReceived) for e in kept)
        self._clock = ManualClock(kept[-1].at)

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
        run_id = next_run_id(self._started.run_id)
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
        other._retry = self._retry
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
