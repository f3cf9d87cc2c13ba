"""The sans-IO interpreter, driven by hand: each semantic of DESIGN.md pinned by one test.

The tests build a ``workflow_started`` event, feed incoming events with `Interpreter.feed`,
collect the decisions of each `Step` into a history, and compare with `flowgen.replay` from
scratch where it matters.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from attrs import evolve as attrs_evolve

import flowgen as fg
from flowgen._core.interpreter import Interpreter, RunStatus, Step, error_info
from flowgen._stores.codec import CODEC, encode
from flowgen._vocabulary.errors import HistoryCorruptError, NonDeterminismError
from flowgen._vocabulary.events import Event
from tests import workflows as w
from tests.strategies import T0

# ---------------------------------------------------------------------------------------------
# Helpers.


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def started(
    fn: Callable[..., Any], *args: object, **kwargs: object
) -> fg.WorkflowStarted:
    return fg.WorkflowStarted(
        at=T0,
        workflow_id="wf-1",
        run_id="run-1",
        name=getattr(fn, "__name__", "wf"),
        args=[encode(a) for a in args],
        kwargs={k: encode(v) for k, v in kwargs.items()},
    )


class Live:
    """A live run: the interpreter and the history the engine would record."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: object,
        codec: Any = CODEC,
        **kwargs: object,
    ) -> None:
        self.fn = fn
        self.interpreter = Interpreter(fn, codec=codec)
        self.history: list[Event] = []
        self.step = self.feed(started(fn, *args, **kwargs))

    def feed(self, event: Event) -> Step:
        self.step = self.interpreter.feed(event)
        self.history.append(event)
        self.history.extend(self.step.events)
        return self.step

    @property
    def status(self) -> RunStatus:
        return self.interpreter.status

    def replayed(self) -> Interpreter:
        """A from-scratch replay of the history so far, checked to decide nothing new."""
        interpreter = Interpreter(self.fn, codec=CODEC)
        step = interpreter.replay(self.history)
        assert step.events == ()
        assert interpreter.status is self.status
        assert interpreter.result == self.interpreter.result
        assert interpreter.error == self.interpreter.error
        return interpreter


def seqs(events: tuple[Event, ...] | list[Event]) -> list[int]:
    return [e.seq for e in events if hasattr(e, "seq")]


def kinds(events: tuple[Event, ...] | list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def line_of(fn: Callable[..., Any], offset: int) -> str:
    """``file:line`` of the line *offset* lines below ``def fn``."""
    code = fn.__code__
    return f"{code.co_filename}:{code.co_firstlineno + offset}"


# ---------------------------------------------------------------------------------------------
# Sequence numbers.


def every_leaf_command() -> fg.Workflow[None]:
    yield fg.call(w.echo, "a")
    yield fg.sleep(1)
    yield fg.wait_signal("s")
    yield fg.side_effect(w.new_tracking_number)
    yield fg.child(w.child_double, 1)
    yield fg.send_signal("other", "ping", 1)
    yield fg.call(w.echo, "b")


def test_every_leaf_command_takes_the_next_seq() -> None:
    run = Live(every_leaf_command)
    assert run.step.events == (
        fg.ActivityScheduled(at=T0, seq=0, name="echo", args=["a"]),
    )
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value="a"))
    assert run.step.events == (fg.TimerStarted(at=at(1), seq=1, fire_at=at(2)),)
    run.feed(fg.TimerFired(at=at(2), seq=1))
    assert run.step.events == (fg.SignalWaitStarted(at=at(2), seq=2, name="s"),)
    run.feed(fg.SignalReceived(at=at(3), name="s", payload=None, index=0))
    assert run.step.events == ()
    [(seq, command)] = run.step.perform
    assert (seq, command.name) == (3, "new_tracking_number")
    run.feed(fg.SideEffectRecorded(at=at(3), seq=3, name=command.name, value="TRK"))
    assert run.step.events == (
        fg.ChildStarted(
            at=at(3), seq=4, name="child_double", child_id="wf-1/4", args=[1]
        ),
    )
    run.feed(fg.ChildCompleted(at=at(4), seq=4, child_id="wf-1/4", value=2))
    assert run.step.perform == ((5, fg.SendSignal("other", "ping", 1)),)
    run.feed(fg.SignalSent(at=at(4), seq=5, workflow_id="other", name="ping"))
    assert run.step.events == (
        fg.ActivityScheduled(at=at(4), seq=6, name="echo", args=["b"]),
    )
    run.feed(fg.ActivityCompleted(at=at(5), seq=6, value="b"))
    assert run.status is RunStatus.COMPLETED
    assert seqs(run.history[1:-1]) == [0, 0, 1, 1, 2, 3, 4, 4, 5, 6, 6]
    run.replayed()


def test_gather_and_race_children_are_numbered_depth_first_left_to_right() -> None:
    # gather(a, race(b, gather(c, d)), e) numbers a=0, b=1, c=2, d=3, e=4.
    run = Live(w.nested_combinators)
    assert kinds(run.step.events) == [
        "ActivityScheduled",
        "SignalWaitStarted",
        "ActivityScheduled",
        "TimerStarted",
    ]
    assert seqs(run.step.events) == [0, 1, 2, 3]
    assert [seq for seq, _ in run.step.perform] == [4]
    assert sorted(run.interpreter.pending) == [0, 1, 2, 3, 4]


def locals_between_calls() -> fg.Workflow[list[object]]:
    now = yield fg.current_time()
    me = yield fg.info()
    v = yield fg.get_version("change", fg.DEFAULT_VERSION, 3)
    yield fg.set_tags(step=1)
    yield fg.on_query("q", lambda: "answer")
    first = yield fg.call(w.echo, "first")
    yield fg.current_time()
    yield fg.info()
    yield fg.set_tags(step=2)
    second = yield fg.call(w.echo, "second")
    return [now.isoformat(), me.workflow_id, v, first, second]


def test_local_commands_take_no_seq() -> None:
    run = Live(locals_between_calls)
    assert kinds(run.step.events) == ["VersionMarked", "TagsSet", "ActivityScheduled"]
    assert seqs(run.step.events) == [0]
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value="first"))
    assert kinds(run.step.events) == ["TagsSet", "ActivityScheduled"]
    assert seqs(run.step.events) == [1]
    run.feed(fg.ActivityCompleted(at=at(2), seq=1, value="second"))
    assert run.interpreter.result == [T0.isoformat(), "wf-1", 3, "first", "second"]
    run.replayed()


@fg.activity(name="charge_in_interpreter_tests")
def charge(order_id: str, amount: float, *extras: object, note: str = "") -> str:
    return order_id


def unserializable_arguments() -> fg.Workflow[list[str]]:
    errors: list[str] = []
    bad = object()
    for command in (
        fg.call(charge, bad, 1.0),
        fg.call(charge, "o", 1.0, "x", bad),
        fg.call(charge, "o", 1.0, note=bad),  # type: ignore[arg-type]
        fg.call("by_name", 1, bad),
        fg.child(w.child_double, bad),  # type: ignore[arg-type]
        fg.send_signal("other", "ping", bad),
        fg.gather(fg.call(w.echo, 1), fg.call(w.echo, bad)),
    ):
        try:
            yield command
        except TypeError as exc:
            errors.append(str(exc))
    yield fg.call(w.echo, "after")
    return errors


def test_unserializable_argument_gives_its_seq_back_with_a_type_error_naming_it() -> (
    None
):
    run = Live(unserializable_arguments)
    # Every refused command gave its seq back: the first command recorded takes seq 0.
    assert run.step.events == (
        fg.ActivityScheduled(at=T0, seq=0, name="echo", args=["after"]),
    )
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value="after"))
    errors = run.interpreter.result
    assert isinstance(errors, list)
    expected = [
        "argument 'order_id' of activity 'charge_in_interpreter_tests'",
        "argument *extras[1] of activity 'charge_in_interpreter_tests'",
        "argument 'note' of activity 'charge_in_interpreter_tests'",
        "positional argument 1 of activity 'by_name'",
        "argument 'n' of child workflow 'child_double'",
        "payload of signal 'ping'",
        "argument 'value' of activity 'echo'",
    ]
    assert len(errors) == len(expected)
    for message, name in zip(errors, expected, strict=True):
        assert message.startswith(name), message
        assert "cannot be serialized" in message
    run.replayed()


class Service:
    @fg.activity(name="service_lookup")
    def lookup(self, key: str) -> str:
        return key


def bound_method_argument() -> fg.Workflow[str]:
    try:
        yield fg.call(Service().lookup, object())  # type: ignore[arg-type]
    except TypeError as exc:
        return str(exc)
    return "accepted"


def builtin_argument() -> fg.Workflow[str]:
    try:
        yield fg.call(type, object())
    except TypeError as exc:
        return str(exc)
    return "accepted"


@pytest.mark.parametrize(
    ("fn", "named"),
    [
        (bound_method_argument, "argument 'key' of activity 'service_lookup'"),
        (builtin_argument, "positional argument 0 of activity 'type'"),
    ],
)
def test_argument_names_skip_self_and_fall_back_to_positions(
    fn: Callable[..., Any], named: str
) -> None:
    run = Live(fn)
    assert isinstance(run.interpreter.result, str)
    assert run.interpreter.result.startswith(named)


def empty_gathers() -> fg.Workflow[object]:
    nothing = yield fg.gather()
    try:
        yield fg.gather(fg.call(w.echo, 1), fg.gather())
    except TypeError as exc:
        return [list(nothing), str(exc), (yield fg.call(w.echo, 2))]
    return "accepted"


def test_empty_gather_returns_at_once_and_cannot_be_nested() -> None:
    run = Live(empty_gathers)
    assert run.step.events == (
        fg.ActivityScheduled(at=T0, seq=0, name="echo", args=[2]),
    )
    run.feed(fg.ActivityCompleted(at=T0, seq=0, value=2))
    assert run.interpreter.result == [
        [],
        "an empty gather() cannot be nested in gather()/race()",
        2,
    ]


# ---------------------------------------------------------------------------------------------
# Matching recorded events by seq.


def two_calls_v1() -> fg.Workflow[None]:
    yield fg.call(w.echo, 1)
    yield fg.call(w.double, 2)


def two_calls_renamed() -> fg.Workflow[None]:
    yield fg.call(w.echo, 1)
    yield fg.call(w.echo, 2)  # was double: line 2 below the def


def two_calls_retimed() -> fg.Workflow[None]:
    yield fg.call(w.echo, 1)
    yield from fg.sleep(2)  # was an activity: line 2 below the def


def recorded_two_calls() -> list[Event]:
    run = Live(two_calls_v1)
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value=1))
    return run.history


def test_another_name_at_a_recorded_seq_is_nondeterminism_naming_id_seq_events_and_line() -> (
    None
):
    with pytest.raises(NonDeterminismError) as caught:
        fg.replay(two_calls_renamed, recorded_two_calls())
    message = str(caught.value)
    assert "workflow 'wf-1' (two_calls_v1)" in message
    assert "seq 1" in message
    assert "activity_scheduled 'double'" in message
    assert "activity 'echo'" in message
    assert f"at {line_of(two_calls_renamed, 2)}." in message
    assert caught.value.workflow_id == "wf-1"
    assert caught.value.seq == 1


def test_another_kind_at_a_recorded_seq_is_nondeterminism_at_the_yield_from_line() -> (
    None
):
    with pytest.raises(NonDeterminismError) as caught:
        fg.replay(two_calls_retimed, recorded_two_calls())
    message = str(caught.value)
    assert "the history has activity_scheduled 'double' at seq 1" in message
    assert "but the code now yields timer" in message
    # `yield from` inside flowgen's own helpers still points at the workflow's line.
    assert f"at {line_of(two_calls_retimed, 2)}." in message
    assert caught.value.seq == 1


def test_changed_arguments_are_not_compared() -> None:
    def same_calls_other_args() -> fg.Workflow[None]:
        yield fg.call(w.echo, "changed")
        yield fg.call(w.double, 99)

    replayed = fg.replay(same_calls_other_args, recorded_two_calls())
    assert replayed.status is RunStatus.WAITING
    assert replayed.pending == {1: fg.call(w.double, 99)}


def test_recorded_command_the_code_never_reaches_is_nondeterminism() -> None:
    def stops_early() -> fg.Workflow[None]:
        yield fg.call(w.echo, 1)
        yield fg.sleep(0)

    history = recorded_two_calls()
    history.append(fg.ActivityScheduled(at=at(1), seq=2, name="echo", args=[3]))
    with pytest.raises(
        NonDeterminismError, match="at seq 2, but the code never reaches it"
    ):
        fg.replay(two_calls_v1, history)


def test_recorded_end_the_code_does_not_reach_is_nondeterminism() -> None:
    history = [*recorded_two_calls(), fg.WorkflowCompleted(at=at(1), result=None)]
    with pytest.raises(
        NonDeterminismError,
        match=r"records workflow_completed, but the code is still waiting for activity "
        r"'double' \(seq 1\)",
    ):
        fg.replay(two_calls_v1, history)


def test_recorded_cancellation_the_code_did_not_make_is_nondeterminism() -> None:
    history = [
        *recorded_two_calls(),
        fg.CommandCancelled(at=at(1), seq=0, reason="race"),
    ]
    with pytest.raises(
        NonDeterminismError, match="cancelled seq 0, but the code did not"
    ):
        fg.replay(two_calls_v1, history)


def returns_argument(value: object) -> fg.Workflow[object]:
    yield fg.sleep(0)
    if value == "raise":
        raise ValueError("asked to")
    if value == "raise-other":
        raise KeyError("asked to")
    return value


@pytest.mark.parametrize(
    ("recorded", "now", "message"),
    [
        (
            fg.WorkflowCompleted(at=T0, result="old"),
            "new",
            (
                r"records workflow_completed \(result 'old'\), but the code now ends "
                r"with workflow_completed \(result 'new'\)"
            ),
        ),
        (
            fg.WorkflowErrored(at=T0, error=fg.ErrorInfo("KeyError", "'asked to'")),
            "raise",
            (
                r"records workflow_failed \(KeyError: 'asked to'\), but the code now "
                r"ends with workflow_failed \(ValueError: asked to\)"
            ),
        ),
        (
            fg.WorkflowCancelled(at=T0, error=fg.ErrorInfo("Cancelled", "")),
            "raise",
            r"workflow_cancelled \(Cancelled\).*workflow_failed",
        ),
        (
            fg.WorkflowContinuedAsNew(at=T0, args=[1]),
            "done",
            r"workflow_continued_as_new \(no result\).*workflow_completed",
        ),
    ],
)
def test_a_different_end_than_recorded_is_nondeterminism(
    recorded: Event, now: object, message: str
) -> None:
    history: list[Event] = [
        started(returns_argument, now),
        fg.TimerStarted(at=T0, seq=0, fire_at=T0),
        fg.TimerFired(at=T0, seq=0),
        recorded,
    ]
    with pytest.raises(NonDeterminismError, match=message) as caught:
        fg.replay(returns_argument, history)
    assert caught.value.seq is None


def test_a_different_end_than_recorded_names_the_line_where_the_code_ends() -> None:
    history: list[Event] = [
        started(returns_argument, "new"),
        fg.TimerStarted(at=T0, seq=0, fire_at=T0),
        fg.TimerFired(at=T0, seq=0),
        fg.WorkflowCompleted(at=T0, result="old"),
    ]
    with pytest.raises(NonDeterminismError) as caught:
        fg.replay(returns_argument, history)
    message = str(caught.value)
    assert " at ?" not in message
    assert f"at {line_of(returns_argument, 6)} (where the code now ends)." in message


def takes_nothing() -> fg.Workflow[int]:
    return 1
    yield  # a generator


def test_code_that_now_fails_at_its_call_diverges_with_no_line_to_name() -> None:
    history: list[Event] = [
        started(returns_argument, "x"),  # recorded with an argument it no longer takes
        fg.TimerStarted(at=T0, seq=0, fire_at=T0),
        fg.TimerFired(at=T0, seq=0),
        fg.WorkflowCompleted(at=T0, result="x"),
    ]
    with pytest.raises(NonDeterminismError) as caught:
        fg.replay(takes_nothing, history)
    assert (
        "the history records workflow_completed (result 'x'), but the code now ends "
        "with workflow_failed (TypeError: takes_nothing() takes 0 positional arguments "
        "but 1 was given). If the code changed" in str(caught.value)
    )  # no "at file:line": no line of the workflow ran


def calls_then_returns_one() -> fg.Workflow[int]:
    yield fg.call(w.echo, 1)
    yield fg.call(w.double, 2)
    return 1


def returns_one_early() -> fg.Workflow[int]:
    yield fg.call(w.echo, 1)
    return 1  # the call of double is gone: line 2 below the def


def test_code_that_ends_early_with_the_same_result_is_nondeterminism() -> None:
    run = Live(calls_then_returns_one)
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value=1))
    run.feed(fg.ActivityCompleted(at=at(2), seq=1, value=4))
    assert run.interpreter.status is RunStatus.COMPLETED
    with pytest.raises(NonDeterminismError) as caught:
        fg.replay(returns_one_early, run.history, codec=CODEC)
    message = str(caught.value)
    assert (
        "the history has activity_scheduled 'double' at seq 1, but the code never "
        "reaches it at " in message
    )
    assert f"at {line_of(returns_one_early, 2)} (where the code now ends)." in message
    assert caught.value.seq == 1


def ends_at_once_with_one() -> fg.Workflow[int]:
    yield fg.wait_signal("go")
    return 1


def test_code_that_ends_before_recorded_signals_arrive_is_nondeterminism() -> None:
    # Only a signal, no command, follows where the code now ends.
    history: list[Event] = [
        started(ends_at_once_with_one),
        fg.SignalWaitStarted(at=T0, seq=0, name="go"),
        fg.SignalReceived(at=at(1), name="go", payload=None, index=0),
        fg.SignalReceived(at=at(2), name="go", payload=None, index=1),
        fg.WorkflowCompleted(at=at(2), result=1),
    ]
    with pytest.raises(
        NonDeterminismError,
        match=r"the history records signal_received 'go' after the point where the "
        r"code now ends",
    ):
        fg.replay(ends_at_once_with_one, history, codec=CODEC)


def test_a_failure_of_the_same_type_replays_whatever_its_message() -> None:
    history: list[Event] = [
        started(returns_argument, "raise"),
        fg.TimerStarted(at=T0, seq=0, fire_at=T0),
        fg.TimerFired(at=T0, seq=0),
        fg.WorkflowErrored(at=T0, error=fg.ErrorInfo("ValueError", "0x7f3a21 moved")),
    ]
    assert fg.replay(returns_argument, history).status is RunStatus.FAILED


def continues(n: int) -> fg.Workflow[None]:
    yield fg.continue_as_new(n + 1, flag=True)


def test_continue_as_new_with_other_arguments_than_recorded_is_nondeterminism() -> None:
    run = Live(continues, 1)
    assert run.step.events == (
        fg.WorkflowContinuedAsNew(at=T0, args=[2], kwargs={"flag": True}),
    )
    run.replayed()
    tampered = [run.history[0], fg.WorkflowContinuedAsNew(at=T0, args=[3], kwargs={})]
    with pytest.raises(NonDeterminismError, match="workflow_continued_as_new"):
        fg.replay(continues, tampered)


def test_yield_site_is_unknown_before_the_run_starts() -> None:
    interpreter = Interpreter(two_calls_v1)
    assert interpreter.yield_site() == "?"
    assert interpreter.frame_locals() == {}


# ---------------------------------------------------------------------------------------------
# Histories that are corrupt in themselves.


def test_a_history_must_begin_with_workflow_started() -> None:
    with pytest.raises(HistoryCorruptError, match="must begin with a workflow_started"):
        fg.replay(two_calls_v1, [])
    with pytest.raises(HistoryCorruptError, match="must begin with a workflow_started"):
        fg.replay(two_calls_v1, [fg.TimerFired(at=T0, seq=0)])
    with pytest.raises(
        HistoryCorruptError, match="first event must be workflow_started"
    ):
        Interpreter(two_calls_v1).feed(fg.TimerFired(at=T0, seq=0))


def test_replay_needs_a_fresh_interpreter() -> None:
    run = Live(two_calls_v1)
    with pytest.raises(RuntimeError, match="fresh Interpreter"):
        run.interpreter.replay(run.history)


ACTIVITY_0 = fg.ActivityScheduled(at=T0, seq=0, name="echo", args=[1])


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([ACTIVITY_0, ACTIVITY_0], "seq 0 is recorded twice"),
        (
            [ACTIVITY_0, fg.TimerStarted(at=T0, seq=0, fire_at=T0)],
            "seq 0 is recorded twice: activity_scheduled 'echo' and timer_started",
        ),
        (
            [
                ACTIVITY_0,
                fg.CommandCancelled(at=T0, seq=0, reason="x"),
                fg.CommandCancelled(at=T0, seq=0, reason="x"),
            ],
            "seq 0 is cancelled twice",
        ),
        (
            [
                fg.VersionMarked(at=T0, change_id="c", version=1),
                fg.VersionMarked(at=T0, change_id="c", version=1),
            ],
            "version of change 'c' is recorded twice",
        ),
        (
            [fg.WorkflowTerminated(at=T0), ACTIVITY_0],
            r"event 2 \(activity_scheduled 'echo'\) comes after the run ended",
        ),
        ([fg.TimerFired(at=T0, seq=5)], "timer_fired for seq 5, which is not awaited"),
        (
            [ACTIVITY_0, fg.TimerFired(at=T0, seq=0)],
            "timer_fired for seq 0, which is activity 'echo'",
        ),
        (
            [fg.ActivityCompleted(at=T0, seq=0, value=1)],
            "activity_completed for seq 0, whose command the history never recorded",
        ),
        (
            [ACTIVITY_0, fg.ActivityCompleted(at=T0, seq=0, value=1, attempt=2)],
            "activity_completed for seq 0 is attempt 2, expected 1",
        ),
        (
            [
                ACTIVITY_0,
                fg.ActivityAttemptFailed(
                    at=T0, seq=0, error=fg.ErrorInfo("E", ""), attempt=1, retry_at=T0
                ),
                fg.ActivityFailed(at=T0, seq=0, error=fg.ErrorInfo("E", ""), attempt=1),
            ],
            "activity_failed for seq 0 is attempt 1, expected 2",
        ),
        (
            [ACTIVITY_0, fg.SignalReceived(at=T0, name="s", payload=1, index=1)],
            "signal_received 's' has index 1, expected 0",
        ),
        (
            [ACTIVITY_0, fg.CancelRequested(at=T0), fg.CancelRequested(at=T0)],
            "cancel_requested is recorded twice",
        ),
        (
            [ACTIVITY_0, started(two_calls_v1)],
            "workflow_started is recorded twice",
        ),
    ],
)
def test_a_corrupt_history_is_refused(events: list[Event], message: str) -> None:
    def waits_for_echo() -> fg.Workflow[None]:
        while True:
            try:
                yield fg.call(w.echo, 1)
            except fg.Cancelled:
                pass

    with pytest.raises(HistoryCorruptError, match=message):
        fg.replay(waits_for_echo, [started(waits_for_echo), *events])


def test_feeding_a_decision_as_an_incoming_event_is_history_corrupt() -> None:
    run = Live(two_calls_v1)
    with pytest.raises(
        HistoryCorruptError, match="is a decision, not an incoming event"
    ):
        run.feed(fg.TimerStarted(at=T0, seq=5, fire_at=T0))


def test_an_outcome_for_a_cancelled_seq_is_history_corrupt() -> None:
    run = Live(w.expense, w.Claim("bob", 1.0))
    run.feed(fg.ActivityCompleted(at=T0, seq=0, value=None))
    run.feed(fg.SignalReceived(at=T0, name="decision", payload="yes", index=0))
    assert fg.CommandCancelled(at=T0, seq=2, reason="race") in run.step.events
    with pytest.raises(HistoryCorruptError, match="for seq 2, which was cancelled"):
        run.feed(fg.TimerFired(at=T0, seq=2))


def test_signal_timed_out_for_a_wait_without_timeout_is_history_corrupt() -> None:
    run = Live(w.collect_signals, 1)
    with pytest.raises(HistoryCorruptError, match="whose wait has no timeout"):
        run.feed(fg.SignalTimedOut(at=T0, seq=0))


def test_an_event_after_the_run_ended_is_history_corrupt() -> None:
    run = Live(w.collect_signals, 0)
    assert run.status is RunStatus.COMPLETED
    with pytest.raises(HistoryCorruptError, match="arrived after the run ended"):
        run.feed(fg.SignalReceived(at=T0, name="item", payload=1, index=0))


# ---------------------------------------------------------------------------------------------
# Failures are data; a fresh exception is built on every replay.

CAUGHT: list[BaseException] = []


def keeps_what_it_catches() -> fg.Workflow[str]:
    try:
        yield fg.call(w.charge_card, w.Trip("declined", "Oslo"))
    except fg.ActivityError as exc:
        CAUGHT.append(exc)
        return f"{exc.activity}|{exc.type}|{exc.attempts}|{exc.info.message}"
    return "charged"


def test_activity_error_carries_type_message_and_attempts() -> None:
    CAUGHT.clear()
    run = Live(keeps_what_it_catches)
    card = fg.ErrorInfo("CardDeclined", "card of declined declined", non_retryable=True)
    run.feed(
        fg.ActivityAttemptFailed(at=at(1), seq=0, error=card, attempt=1, retry_at=at(2))
    )
    run.feed(
        fg.ActivityAttemptFailed(at=at(2), seq=0, error=card, attempt=2, retry_at=at(4))
    )
    run.feed(fg.ActivityFailed(at=at(4), seq=0, error=card, attempt=3))
    assert (
        run.interpreter.result == "charge_card|CardDeclined|3|card of declined declined"
    )
    [error] = CAUGHT
    assert isinstance(error, fg.ActivityError)
    assert str(error) == (
        "activity 'charge_card' failed after 3 attempt(s): "
        "CardDeclined: card of declined declined"
    )
    assert error.info == fg.ErrorInfo(
        "CardDeclined", "card of declined declined", non_retryable=True, attempts=3
    )


def test_failures_are_rebuilt_as_fresh_exceptions_on_every_replay() -> None:
    CAUGHT.clear()
    run = Live(keeps_what_it_catches)
    run.feed(
        fg.ActivityFailed(at=at(1), seq=0, error=fg.ErrorInfo("CardDeclined", "no"))
    )
    run.replayed()
    run.replayed()
    live, first, second = CAUGHT
    assert first is not live
    assert second is not first
    assert first.__traceback__ is not second.__traceback__
    for error in (live, first, second):
        assert isinstance(error, fg.ActivityError)
        assert (error.activity, error.type, error.attempts, error.info) == (
            "charge_card",
            "CardDeclined",
            1,
            fg.ErrorInfo("CardDeclined", "no", attempts=1),
        )


def catches_interrupts() -> fg.Workflow[list[object]]:
    seen: list[object] = []
    for command in (
        fg.child(w.child_double, 1),
        fg.wait_signal("answer", timeout=timedelta(seconds=30)),
        fg.send_signal("gone", "ping"),
    ):
        try:
            yield command
        except fg.WorkflowInterrupt as exc:
            seen.append([type(exc).__name__, str(exc), exc.info.type])
    return seen


def test_child_failure_signal_timeout_and_refused_send_are_thrown_at_the_yield() -> (
    None
):
    run = Live(catches_interrupts)
    child_id = "wf-1/0"
    run.feed(
        fg.ChildFailed(
            at=at(1), seq=0, child_id=child_id, error=fg.ErrorInfo("Boom", "x")
        )
    )
    assert run.step.events == (
        fg.SignalWaitStarted(at=at(1), seq=1, name="answer", deadline=at(31)),
    )
    run.feed(fg.SignalTimedOut(at=at(31), seq=1))
    refused = fg.ErrorInfo("WorkflowClosed", "gone is closed")
    run.feed(
        fg.SignalSendFailed(
            at=at(31), seq=2, workflow_id="gone", name="ping", error=refused
        )
    )
    assert run.interpreter.result == [
        ["ChildWorkflowError", "child workflow 'wf-1/0' failed: Boom: x", "Boom"],
        [
            "SignalTimeout",
            "no 'answer' signal before the timeout",
            "SignalTimeout",
        ],
        ["SignalSendError", "gone is closed", "WorkflowClosed"],
    ]
    run.replayed()


def test_a_payload_that_does_not_decode_is_thrown_at_the_yield() -> None:
    def books() -> fg.Workflow[str]:
        try:
            yield fg.call(w.make_booking, "hotel")
        except TypeError as exc:
            return str(exc)
        return "decoded"

    run = Live(books)
    run.feed(fg.ActivityCompleted(at=T0, seq=0, value="not a booking"))
    assert isinstance(run.interpreter.result, str)
    assert run.interpreter.result.startswith("cannot decode 'not a booking' as Booking")


def test_an_uncaught_exception_fails_the_run_with_its_type_message_and_traceback() -> (
    None
):
    run = Live(w.process_order, "bad-1")
    run.feed(fg.ActivityCompleted(at=T0, seq=0, value=False))
    assert run.status is RunStatus.FAILED
    error = run.interpreter.error
    assert error is not None
    assert (error.type, error.message, error.non_retryable) == (
        "InvalidOrder",
        "bad-1",
        False,
    )
    assert "raise InvalidOrder(order_id)" in error.traceback
    assert run.step.events == (fg.WorkflowErrored(at=T0, error=error),)
    run.replayed()


def test_error_info_records_an_exception_whose_str_raises() -> None:
    class Opaque(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    class Worse(Exception):
        def __str__(self) -> str:
            raise Opaque()

    assert error_info(Opaque()).message == (
        "<str() of this Opaque raised RuntimeError: no text>"
    )
    assert error_info(Worse()).message == "<str() of this Worse raised Opaque>"
    assert error_info(Opaque()).type == "Opaque"


def test_error_info_records_non_retryable_and_interrupt_details() -> None:
    assert error_info(fg.NonRetryableError("stop")).non_retryable
    info = error_info(fg.ActivityError("a", fg.ErrorInfo("X", "m", attempts=2)))
    assert (info.type, info.attempts) == ("ActivityError", 2)
    assert info.message == "activity 'a' failed after 2 attempt(s): X: m"
    cancelled = error_info(fg.Cancelled("user asked"), attempts=4)
    assert (cancelled.type, cancelled.message, cancelled.attempts) == (
        "Cancelled",
        "user asked",
        4,
    )


# ---------------------------------------------------------------------------------------------
# get_version, keyed by change id.


def onboarding_history(fn: Callable[..., Any]) -> list[Event]:
    run = Live(fn, "ada")
    for seq in range(4):
        pending = run.interpreter.pending[seq]
        if isinstance(pending, fg.StartTimer):
            run.feed(fg.TimerFired(at=at(seq), seq=seq))
        else:
            run.feed(fg.ActivityCompleted(at=at(seq), seq=seq, value=None))
    assert run.status is RunStatus.COMPLETED
    return run.history


def test_a_history_recorded_before_get_version_existed_replays_through_default_version() -> (
    None
):
    old = onboarding_history(w.onboarding_v1)
    interpreter = Interpreter(w.onboarding, codec=CODEC)
    assert interpreter.replay(old).events == ()
    assert interpreter.status is RunStatus.COMPLETED
    names = [e.name for e in old if isinstance(e, fg.ActivityScheduled)]
    assert names == ["create_account", "send_welcome_v1", "send_tips"]


def test_an_unfinished_old_run_takes_the_default_branch_when_it_resumes() -> None:
    old = onboarding_history(w.onboarding_v1)[:6]  # waiting for the 7-day timer
    assert isinstance(old[-1], fg.TimerStarted)
    interpreter = Interpreter(w.onboarding, codec=CODEC)
    assert interpreter.replay(old).events == ()
    step = interpreter.feed(fg.TimerFired(at=at(9), seq=2))
    assert step.events == (
        fg.ActivityScheduled(at=at(9), seq=3, name="send_tips", args=["ada"]),
    )


def test_a_new_run_records_max_version_and_a_version_marked_event() -> None:
    run = Live(w.onboarding, "ada")
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value="acct-ada"))
    assert run.step.events == (
        fg.VersionMarked(at=at(1), change_id="welcome-email", version=1),
        fg.ActivityScheduled(
            at=at(1),
            seq=1,
            name="send_welcome_v2",
            args=["ada"],
            kwargs={"locale": "en"},
        ),
    )
    history = onboarding_history(w.onboarding)
    assert sum(isinstance(e, fg.VersionMarked) for e in history) == 1
    assert Interpreter(w.onboarding, codec=CODEC).replay(history).events == ()


def nap_before_change() -> fg.Workflow[str]:
    yield fg.sleep(1)
    return "old"


def nap_after_change() -> fg.Workflow[str]:
    yield fg.sleep(1)
    first = yield from fg.patched("longer-nap")
    again = yield fg.patched("longer-nap")  # the same answer for the whole run
    assert again is first
    return "new" if first else "old"


def nap_versioned() -> fg.Workflow[list[object]]:
    version = yield fg.get_version("longer-nap", fg.DEFAULT_VERSION, 3)
    yield fg.sleep(1)
    return [version, (yield fg.patched("longer-nap"))]


def test_patched_is_true_in_a_new_run_and_records_version_1() -> None:
    run = Live(nap_after_change)
    step = run.feed(fg.TimerFired(at=at(1), seq=0))
    assert step.events[0] == fg.VersionMarked(
        at=at(1), change_id="longer-nap", version=1
    )
    assert run.status is RunStatus.COMPLETED
    assert run.interpreter.result == "new"
    assert Interpreter(nap_after_change, codec=CODEC).replay(run.history).events == ()


def test_patched_is_false_replaying_a_history_recorded_before_the_change() -> None:
    old = Live(nap_before_change)
    old.feed(fg.TimerFired(at=at(1), seq=0))
    assert isinstance(old.history[-1], fg.WorkflowCompleted)  # past the change's point
    interpreter = Interpreter(nap_after_change, codec=CODEC)
    assert interpreter.replay(old.history).events == ()
    assert interpreter.result == "old"
    assert interpreter.status is RunStatus.COMPLETED


def test_patched_reads_a_version_recorded_by_get_version() -> None:
    run = Live(nap_versioned)
    run.feed(fg.TimerFired(at=at(1), seq=0))
    assert run.interpreter.result == [3, True]  # no second version_marked event
    assert sum(isinstance(e, fg.VersionMarked) for e in run.history) == 1


def test_the_same_edit_without_get_version_is_caught() -> None:
    with pytest.raises(NonDeterminismError, match=r"send_welcome_v1.*send_welcome_v2"):
        fg.replay(w.onboarding_edited, onboarding_history(w.onboarding_v1))


def asks_version_twice(low: int, high: int) -> fg.Workflow[list[int]]:
    first = yield fg.get_version("change", low, high)
    yield fg.sleep(1)
    second = yield fg.get_version("change", low, high)
    return [first, second]


def test_a_change_id_has_one_version_for_the_whole_run() -> None:
    run = Live(asks_version_twice, fg.DEFAULT_VERSION, 2)
    run.feed(fg.TimerFired(at=T0, seq=0))
    assert run.interpreter.result == [2, 2]
    assert sum(isinstance(e, fg.VersionMarked) for e in run.history) == 1
    run.replayed()


def test_a_recorded_version_is_kept_when_the_code_supports_more() -> None:
    run = Live(asks_version_twice, fg.DEFAULT_VERSION, 1)
    run.feed(fg.TimerFired(at=T0, seq=0))
    history = [e for e in run.history if not isinstance(e, fg.WorkflowCompleted)]
    history[0] = started(asks_version_twice, fg.DEFAULT_VERSION, 5)
    assert fg.replay(asks_version_twice, history).result == [1, 1]


def test_a_recorded_version_outside_the_supported_range_is_nondeterminism() -> None:
    run = Live(asks_version_twice, fg.DEFAULT_VERSION, 1)
    history = list(run.history)
    history[0] = started(asks_version_twice, 2, 3)
    with pytest.raises(
        NonDeterminismError,
        match=r"get_version\('change'\) is 1 in this run's history, outside the "
        r"supported range 2\.\.3",
    ) as caught:
        fg.replay(asks_version_twice, history)
    assert caught.value.seq == 0


# ---------------------------------------------------------------------------------------------
# Cancellation.


def test_cancel_is_thrown_at_the_current_yield_and_pending_commands_are_cancelled() -> (
    None
):
    run = Live(w.nightly_etl, ["a", "b", "c"])
    run.feed(fg.ActivityCompleted(at=at(1), seq=1, value=5))
    run.feed(fg.CancelRequested(at=at(2), reason="operator"))
    assert run.step.events == (
        fg.CommandCancelled(at=at(2), seq=0, reason="cancel"),
        fg.CommandCancelled(at=at(2), seq=2, reason="cancel"),
        fg.WorkflowCancelled(at=at(2), error=run.interpreter.error),  # type: ignore[arg-type]
    )
    assert run.status is RunStatus.CANCELLED
    assert run.interpreter.error is not None
    assert (run.interpreter.error.type, run.interpreter.error.message) == (
        "Cancelled",
        "operator",
    )
    assert run.interpreter.pending == {}
    assert run.interpreter.cancel_requested
    run.replayed()


TRIP = w.Trip("ada", "Lima")


def trip_history(*outcomes: Event) -> tuple[Live, list[str]]:
    run = Live(w.book_trip, TRIP)
    for event in outcomes:
        run.feed(event)
    names = [e.name for e in run.history if isinstance(e, fg.ActivityScheduled)]
    return run, names


HOTEL = fg.ActivityCompleted(
    at=at(1), seq=0, value={"kind": "hotel", "reference": "H1"}
)
FLIGHT = fg.ActivityCompleted(
    at=at(2), seq=1, value={"kind": "flight", "reference": "F1"}
)


def test_a_caught_cancel_lets_the_saga_compensate_last_in_first_out() -> None:
    run, names = trip_history(
        HOTEL, FLIGHT, fg.CancelRequested(at=at(3), reason="stop")
    )
    assert names == ["book_hotel", "book_flight", "charge_card", "cancel_flight"]
    assert run.step.events[0] == fg.CommandCancelled(at=at(3), seq=2, reason="cancel")
    assert run.step.events[1] == fg.ActivityScheduled(
        at=at(3),
        seq=3,
        name="cancel_flight",
        args=[{"kind": "flight", "reference": "F1"}],
    )
    run.feed(fg.ActivityCompleted(at=at(4), seq=3, value=None))
    assert run.step.events == (
        fg.ActivityScheduled(
            at=at(4),
            seq=4,
            name="cancel_hotel",
            args=[{"kind": "hotel", "reference": "H1"}],
        ),
    )
    run.feed(fg.ActivityCompleted(at=at(5), seq=4, value=None))
    assert run.status is RunStatus.CANCELLED
    assert run.interpreter.error is not None
    assert run.interpreter.error.type == "Cancelled"
    run.replayed()


def test_a_failed_step_registers_no_compensation_and_the_run_fails_with_the_original_error() -> (
    None
):
    failure = fg.ErrorInfo("NoSeats", "sold out")
    run, names = trip_history(HOTEL, fg.ActivityFailed(at=at(2), seq=1, error=failure))
    assert names == ["book_hotel", "book_flight", "cancel_hotel"]
    run.feed(fg.ActivityCompleted(at=at(3), seq=2, value=None))
    assert run.status is RunStatus.FAILED
    assert run.interpreter.error is not None
    assert run.interpreter.error.type == "ActivityError"
    assert "NoSeats: sold out" in run.interpreter.error.message
    run.replayed()


def test_a_failing_compensation_does_not_stop_the_others_and_errors_are_grouped() -> (
    None
):
    run = Live(w.saga_of_three, 2)
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value=None))
    run.feed(fg.ActivityCompleted(at=at(2), seq=1, value=None))
    run.feed(fg.ActivityFailed(at=at(3), seq=2, error=fg.ErrorInfo("Nope", "step 2")))
    assert run.step.events == (
        fg.ActivityScheduled(at=at(3), seq=3, name="echo", args=["undo-1"]),
    )
    run.feed(fg.ActivityFailed(at=at(4), seq=3, error=fg.ErrorInfo("Stuck", "undo 1")))
    assert run.step.events == (
        fg.ActivityScheduled(at=at(4), seq=4, name="echo", args=["undo-0"]),
    )
    run.feed(fg.ActivityCompleted(at=at(5), seq=4, value=None))
    assert run.status is RunStatus.FAILED
    error = run.interpreter.error
    assert error is not None
    assert (error.type, error.message) == (
        "CompensationError",
        "1 compensation(s) failed (1 sub-exception)",
    )
    assert "Stuck: undo 1" in error.traceback
    run.replayed()


def test_an_uncaught_cancel_while_compensating_ends_the_run_cancelled() -> None:
    run, _ = trip_history(HOTEL, fg.CancelRequested(at=at(2), reason="first"))
    assert run.interpreter.pending == {
        2: fg.call(w.cancel_hotel, w.Booking("hotel", "H1"))
    }
    with pytest.raises(HistoryCorruptError, match="recorded twice"):
        run.feed(fg.CancelRequested(at=at(3), reason="again"))


def test_terminate_ends_the_run_without_running_workflow_code() -> None:
    run = Live(w.forever_catching_cancel)
    run.feed(fg.CancelRequested(at=at(1)))
    assert run.status is RunStatus.WAITING  # caught: it called echo and sleeps again
    run.feed(fg.ActivityCompleted(at=at(2), seq=1, value=1))
    run.feed(fg.WorkflowTerminated(at=at(3), reason="enough"))
    assert run.step.events == ()
    assert run.status is RunStatus.TERMINATED
    assert run.interpreter.error == fg.ErrorInfo("Terminated", "enough")
    assert run.interpreter.pending == {}
    replayed = run.replayed()
    assert replayed.pending == {}


# ---------------------------------------------------------------------------------------------
# race and gather.


def test_race_returns_the_winners_index_and_value_and_cancels_the_losers() -> None:
    run = Live(w.expense, w.Claim("bob", 10.0))
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value=None))
    assert seqs(run.step.events) == [1, 2]
    run.feed(fg.SignalReceived(at=at(2), name="decision", payload="approved", index=0))
    assert run.step.events == (
        fg.CommandCancelled(at=at(2), seq=2, reason="race"),
        fg.ActivityScheduled(
            at=at(2),
            seq=3,
            name="record_decision",
            args=[{"claimant": "bob", "amount": 10.0}, "approved"],
        ),
    )
    run.feed(fg.ActivityCompleted(at=at(3), seq=3, value=None))
    assert run.interpreter.result == "approved"
    run.replayed()


def test_race_won_by_the_deadline_takes_the_timeout_branch() -> None:
    run = Live(w.expense, w.Claim("bob", 10.0))
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value=None))
    timer = run.interpreter.scheduled_event(2)
    assert timer == fg.TimerStarted(at=at(1), seq=2, fire_at=at(1) + timedelta(days=3))
    run.feed(fg.TimerFired(at=timer.fire_at, seq=2))
    assert (
        fg.CommandCancelled(at=timer.fire_at, seq=1, reason="race") in run.step.events
    )
    run.feed(fg.ActivityCompleted(at=timer.fire_at, seq=3, value=None))
    assert run.interpreter.result == "auto-rejected"


def racing_failure() -> fg.Workflow[str]:
    try:
        yield fg.race(fg.call(w.echo, 1), fg.sleep(5))
    except fg.ActivityError as exc:
        return exc.type
    return "no error"


def test_a_race_won_by_a_failure_throws_it_and_cancels_the_others() -> None:
    run = Live(racing_failure)
    run.feed(fg.ActivityFailed(at=at(1), seq=0, error=fg.ErrorInfo("Down", "")))
    assert run.step.events == (
        fg.CommandCancelled(at=at(1), seq=1, reason="race"),
        fg.WorkflowCompleted(at=at(1), result="Down"),
    )


def test_gather_returns_results_in_argument_order_whatever_order_they_arrive() -> None:
    run = Live(w.nightly_etl, ["a", "b", "c"])
    assert run.interpreter.query("progress") == {"done": 0, "of": 3}
    for seq, rows in ((2, 30), (0, 10), (1, 20)):
        run.feed(fg.ActivityCompleted(at=at(seq), seq=seq, value=rows))
    assert run.interpreter.result == 60
    assert run.interpreter.tags == {"rows": 60}
    assert run.interpreter.query("progress") == {"done": 3, "of": 3}


def gathers_and_catches() -> fg.Workflow[object]:
    try:
        yield fg.gather(fg.call(w.echo, 1), fg.call(w.echo, 2), fg.sleep(9))
    except fg.ActivityError as exc:
        return exc.info.message
    return "all done"


def test_gather_throws_the_first_failure_and_cancels_the_rest() -> None:
    run = Live(gathers_and_catches)
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value=1))
    run.feed(fg.ActivityFailed(at=at(2), seq=1, error=fg.ErrorInfo("E", "second")))
    assert run.step.events == (
        fg.CommandCancelled(at=at(2), seq=2, reason="gather"),
        fg.WorkflowCompleted(at=at(2), result="second"),
    )
    run.replayed()


def test_nested_combinators_resolve_through_every_level() -> None:
    run = Live(w.nested_combinators)
    run.feed(
        fg.SideEffectRecorded(at=at(1), seq=4, name="new_tracking_number", value="t")
    )
    run.feed(fg.ActivityCompleted(at=at(2), seq=2, value="c"))
    run.feed(fg.TimerFired(at=at(3), seq=3))  # the inner gather wins the race
    assert run.step.events == (fg.CommandCancelled(at=at(3), seq=1, reason="race"),)
    run.feed(fg.ActivityCompleted(at=at(4), seq=0, value="a"))
    assert run.interpreter.result == ["a", [1, ["c", None]], "t"]
    run.replayed()


def test_a_nested_failure_cancels_siblings_at_every_level() -> None:
    run = Live(w.nested_combinators)
    run.feed(fg.ActivityFailed(at=at(1), seq=2, error=fg.ErrorInfo("E", "c failed")))
    assert run.step.events[:-1] == (
        fg.CommandCancelled(at=at(1), seq=3, reason="gather"),
        fg.CommandCancelled(at=at(1), seq=1, reason="race"),
        fg.CommandCancelled(at=at(1), seq=4, reason="gather"),
        fg.CommandCancelled(at=at(1), seq=0, reason="gather"),
    )
    assert run.status is RunStatus.FAILED
    assert (
        run.step.perform == ()
    )  # the side effect was cancelled before it was performed
    run.replayed()


def test_a_cancelled_side_effect_is_not_performed() -> None:
    run = Live(w.side_effect_race)
    assert [seq for seq, _ in run.step.perform] == [0, 1]
    run.feed(
        fg.SideEffectRecorded(at=at(1), seq=1, name="new_tracking_number", value="B")
    )
    assert run.step.events == (
        fg.CommandCancelled(at=at(1), seq=0, reason="race"),
        fg.WorkflowCompleted(at=at(1), result=[1, "B"]),
    )
    assert not run.interpreter.is_pending(0)
    run.replayed()


# ---------------------------------------------------------------------------------------------
# Signals.


def test_signals_before_the_wait_are_buffered_and_delivered_first_in_first_out() -> (
    None
):
    run = Live(w.collect_signals, 3)
    assert run.step.events == (fg.SignalWaitStarted(at=T0, seq=0, name="item"),)
    for index, payload in enumerate(["x", "y", "z"]):
        run.feed(
            fg.SignalReceived(at=at(index), name="item", payload=payload, index=index)
        )
    assert run.interpreter.result == ["x", "y", "z"]
    assert seqs(run.history) == [0, 1, 2]
    run.replayed()


def test_a_signal_of_another_name_waits_in_its_own_buffer() -> None:
    run = Live(w.collect_signals, 2)
    run.feed(fg.SignalReceived(at=at(1), name="other", payload=0, index=0))
    assert run.step.events == ()
    assert run.status is RunStatus.WAITING
    run.feed(fg.SignalReceived(at=at(2), name="item", payload=1, index=1))
    run.feed(fg.SignalReceived(at=at(3), name="item", payload=2, index=2))
    assert run.interpreter.result == [1, 2]


def gathers_two_waits() -> fg.Workflow[object]:
    both = yield fg.gather(fg.wait_signal("s"), fg.wait_signal("s"))
    return both


def test_waits_for_the_same_signal_take_arrivals_in_seq_order() -> None:
    run = Live(gathers_two_waits)
    run.feed(fg.SignalReceived(at=at(1), name="s", payload="first", index=0))
    run.feed(fg.SignalReceived(at=at(2), name="s", payload="second", index=1))
    assert run.interpreter.result == ["first", "second"]


def test_wait_signal_timeout_throws_signal_timeout() -> None:
    run = Live(w.greeter, 3)
    assert run.step.events == (
        fg.SignalWaitStarted(at=T0, seq=0, name="greet", deadline=at(30)),
    )
    run.feed(
        fg.SignalReceived(
            at=at(1), name="greet", payload={"name": "K", "reply_to": "a"}, index=0
        )
    )
    run.feed(fg.ActivityCompleted(at=at(2), seq=1, value="Hello, K!"))
    assert run.step.perform == ((2, fg.SendSignal("a", "greeting", "Hello, K!")),)
    run.feed(fg.SignalSent(at=at(2), seq=2, workflow_id="a", name="greeting"))
    run.feed(fg.SignalTimedOut(at=at(32), seq=3))
    assert run.interpreter.result == 1
    run.replayed()


# ---------------------------------------------------------------------------------------------
# continue-as-new, tags, queries, time, info.


def test_continue_as_new_ends_the_run_with_the_next_runs_arguments() -> None:
    run = Live(w.sync_customers, None, 0, 1)
    run.feed(
        fg.ActivityCompleted(
            at=at(1), seq=0, value={"items": ["a", "b"], "next_cursor": "2"}
        )
    )
    assert run.step.events == (
        fg.ActivityScheduled(at=at(1), seq=1, name="push_to_crm", args=[["a", "b"]]),
    )
    run.feed(fg.ActivityCompleted(at=at(2), seq=1, value=2))
    run.feed(fg.TimerFired(at=at(3), seq=2))
    assert run.step.events == (fg.WorkflowContinuedAsNew(at=at(3), args=["2", 2, 1]),)
    assert run.status is RunStatus.CONTINUED_AS_NEW
    assert run.interpreter.continue_args == (["2", 2, 1], {})
    run.replayed()


def refuses_bad_local_arguments() -> fg.Workflow[list[str]]:
    errors = []
    try:
        yield fg.set_tags(ok=1, bad=object())
    except TypeError as exc:
        errors.append(str(exc))
    try:
        yield fg.continue_as_new(object())
    except TypeError as exc:
        errors.append(str(exc))
    try:
        yield fg.continue_as_new(flag=object())
    except TypeError as exc:
        errors.append(str(exc))
    return errors


def test_unserializable_tags_and_continue_arguments_raise_at_the_yield() -> None:
    run = Live(refuses_bad_local_arguments)
    errors = run.interpreter.result
    assert isinstance(errors, list)
    assert errors[0].startswith("tag 'bad' cannot be serialized")
    assert errors[1].startswith("continue_as_new() positional argument 0 cannot be")
    assert errors[2].startswith("continue_as_new() argument 'flag' cannot be")
    assert run.interpreter.tags == {}
    assert run.status is RunStatus.COMPLETED


def test_set_tags_records_encoded_tags_once() -> None:
    run = Live(locals_between_calls)
    assert run.step.events[1] == fg.TagsSet(at=T0, tags={"step": 1})
    assert run.interpreter.tags == {"step": 1}
    replayed = run.replayed()
    assert replayed.tags == {"step": 1}


def tags_then_waits() -> fg.Workflow[None]:
    yield fg.set_tags(stage="late")
    yield fg.sleep(1)


def test_tags_added_to_the_code_later_are_not_recorded_into_old_histories() -> None:
    old = [
        started(tags_then_waits),
        fg.TimerStarted(at=T0, seq=0, fire_at=at(1)),
    ]
    interpreter = Interpreter(tags_then_waits)
    assert interpreter.replay(old).events == ()
    assert interpreter.tags == {"stage": "late"}


def test_queries_answer_from_the_current_state_and_name_the_registered_ones() -> None:
    run = Live(w.nightly_etl, ["a"])
    assert run.interpreter.query("progress") == {"done": 0, "of": 1}
    with pytest.raises(
        LookupError, match=r"no query handler 'nope' \(registered: progress\)"
    ):
        run.interpreter.query("nope")
    with pytest.raises(LookupError, match=r"registered: none"):
        Interpreter(w.nightly_etl).query("progress")


def clock_reader() -> fg.Workflow[list[str]]:
    times = [(yield fg.current_time())]
    yield fg.sleep(60)
    times.append((yield fg.current_time()))
    me = yield fg.info()
    times.append(me.started_at)
    return [t.isoformat() for t in times]


def test_current_time_is_the_time_of_the_waking_event() -> None:
    run = Live(clock_reader)
    run.feed(fg.TimerFired(at=at(61.5), seq=0))
    assert run.interpreter.result == [
        T0.isoformat(),
        at(61.5).isoformat(),
        T0.isoformat(),
    ]
    run.replayed()


def test_info_describes_the_run_from_its_start_event() -> None:
    run = Live(w.ask_for_greeting, "greeter-1", "Kyle")
    assert run.step.perform == (
        (0, fg.SendSignal("greeter-1", "greet", {"name": "Kyle", "reply_to": "wf-1"})),
    )
    assert run.interpreter.info == fg.WorkflowInfo(
        "wf-1", "run-1", "ask_for_greeting", T0
    )


def test_child_ids_default_to_parent_id_slash_seq() -> None:
    def children() -> fg.Workflow[object]:
        return (
            yield fg.gather(
                fg.child(w.child_double, 1),
                fg.StartChild("child_double", (2,), workflow_id="mine"),
            )
        )

    run = Live(children)
    assert [e.child_id for e in run.step.events] == ["wf-1/0", "mine"]  # type: ignore[union-attr]
    run.feed(fg.ChildCompleted(at=at(1), seq=1, child_id="mine", value=4))
    run.feed(fg.ChildCompleted(at=at(2), seq=0, child_id="wf-1/0", value=2))
    assert run.interpreter.result == [2, 4]


# ---------------------------------------------------------------------------------------------
# Values in and out: encode -> decode on the first run as on replay.


def test_arguments_and_results_are_decoded_to_their_annotated_types() -> None:
    seen: list[object] = []

    def typed(trip: w.Trip, *more: w.Trip, colour: w.Colour) -> fg.Workflow[str]:
        booking = yield from fg.call(w.book_hotel, trip)
        seen.append((trip, more, colour, booking))
        return booking.reference

    run = Live(typed, w.Trip("a", "b"), w.Trip("c", "d"), colour=w.Colour.RED)
    run.feed(
        fg.ActivityCompleted(at=T0, seq=0, value={"kind": "hotel", "reference": "R"})
    )
    assert run.interpreter.result == "R"
    run.replayed()
    expected = (
        w.Trip("a", "b"),
        (w.Trip("c", "d"),),
        w.Colour.RED,
        w.Booking("hotel", "R"),
    )
    assert seen == [expected, expected]


def test_the_plain_values_codec_passes_values_through() -> None:
    trip = w.Trip("x", "y")
    interpreter = Interpreter(w.book_trip)
    interpreter.feed(
        fg.WorkflowStarted(at=T0, workflow_id="w", run_id="r", name="b", args=[trip])  # type: ignore[list-item]
    )
    assert interpreter.pending[0].args == (trip,)  # type: ignore[union-attr]
    assert interpreter.pending[0].args[0] is trip  # type: ignore[union-attr]


def test_an_unserializable_result_fails_the_run() -> None:
    def returns_object() -> fg.Workflow[object]:
        yield fg.sleep(0)
        return object()

    run = Live(returns_object)
    run.feed(fg.TimerFired(at=T0, seq=0))
    assert run.status is RunStatus.FAILED
    assert run.interpreter.error is not None
    assert run.interpreter.error.type == "TypeError"
    assert run.interpreter.error.message.startswith(
        "the workflow's result cannot be serialized"
    )


# ---------------------------------------------------------------------------------------------
# Misuse inside workflow code.


def yields_junk() -> fg.Workflow[list[str]]:
    errors = []
    for junk in (42, w.child_double(1)):
        try:
            yield junk
        except TypeError as exc:
            errors.append(str(exc))
    return errors


def test_yielding_something_else_than_a_command_throws_type_error() -> None:
    run = Live(yields_junk)
    first, second = run.interpreter.result  # type: ignore[misc]
    assert first.startswith(
        "workflow yielded a int object (42), which is not a flowgen command"
    )
    assert "use `yield from` to call a helper generator" in second


def test_a_workflow_that_is_not_a_generator_fails_the_run() -> None:
    def plain(x: int) -> int:
        return x

    run = Live(plain, 1)
    assert run.status is RunStatus.FAILED
    assert run.interpreter.error is not None
    assert (
        run.interpreter.error.message
        == "workflow 'plain' must be a generator function (use yield)"
    )


def test_a_wrong_call_signature_fails_the_run() -> None:
    run = Live(w.collect_signals)  # `count` is missing
    assert run.status is RunStatus.FAILED
    assert run.interpreter.error is not None
    assert run.interpreter.error.type == "TypeError"
    assert "count" in run.interpreter.error.message


def yields_in_finally() -> fg.Workflow[None]:
    try:
        yield fg.sleep(1)
    finally:
        yield fg.sleep(2)  # unsupported: close() makes Python raise RuntimeError


def test_a_yield_in_finally_does_not_break_closing_the_run() -> None:
    run = Live(yields_in_finally)
    assert run.interpreter.frame_locals() == {}
    run.feed(fg.WorkflowTerminated(at=at(1), reason="stop"))
    assert run.status is RunStatus.TERMINATED


def test_frame_locals_show_the_workflow_variables_while_it_waits() -> None:
    run = Live(w.greeter, 2)
    assert run.interpreter.frame_locals()["served"] == 0
    assert run.interpreter.yield_site().startswith(w.__file__.removesuffix("c"))
    assert run.interpreter.events_fed == 1


def test_the_interpreter_reports_pending_commands_and_their_first_events() -> None:
    run = Live(w.expense, w.Claim("bob", 1.0))
    assert run.interpreter.is_pending(0)
    assert not run.interpreter.is_pending(1)
    assert run.interpreter.scheduled_event(0) == run.step.events[0]
    assert run.interpreter.scheduled_event(9) is None


def test_feed_many_returns_the_decisions_of_all_events_as_one_step() -> None:
    interpreter = Interpreter(w.collect_signals, codec=CODEC)
    step = interpreter.feed_many(
        [
            started(w.collect_signals, 2),
            fg.SignalReceived(at=at(1), name="item", payload=1, index=0),
            fg.SignalReceived(at=at(2), name="item", payload=2, index=1),
        ]
    )
    assert kinds(step.events) == [
        "SignalWaitStarted",
        "SignalWaitStarted",
        "WorkflowCompleted",
    ]
    assert step.status is RunStatus.COMPLETED


def test_a_history_cut_after_an_incoming_event_yields_the_missing_decisions() -> None:
    run = Live(w.process_order, "o-1")
    run.feed(fg.ActivityCompleted(at=at(1), seq=0, value=True))
    # A crash after recording the completion, before recording the reaction to it:
    # the replay asks again for the side effect the live run asked for.
    step = Interpreter(w.process_order, codec=CODEC).replay(run.history[:3])
    assert step.events == ()
    assert step.perform == run.step.perform
    assert [seq for seq, _ in step.perform] == [1]


def test_attempts_reports_failed_attempts_and_the_retry_time() -> None:
    run = Live(w.process_order, "o-1")
    assert run.interpreter.attempts(0) == (0, None)
    error = fg.ErrorInfo("Flaky", "1")
    run.feed(
        fg.ActivityAttemptFailed(
            at=at(1), seq=0, error=error, attempt=1, retry_at=at(2)
        )
    )
    run.feed(
        fg.ActivityAttemptFailed(
            at=at(2), seq=0, error=error, attempt=2, retry_at=at(4)
        )
    )
    assert run.interpreter.attempts(0) == (2, at(4))
    assert run.replayed().attempts(0) == (2, at(4))


def test_a_buffered_signal_that_does_not_decode_is_thrown_when_the_wait_begins() -> (
    None
):
    def waits_for_a_number() -> fg.Workflow[object]:
        yield fg.sleep(1)
        try:
            return (yield fg.wait_signal("n", result_type=int))
        except TypeError as exc:
            return str(exc)

    run = Live(waits_for_a_number)
    run.feed(fg.SignalReceived(at=at(0.5), name="n", payload="seven", index=0))
    run.feed(fg.TimerFired(at=at(1), seq=0))
    assert run.step.events[0] == fg.SignalWaitStarted(at=at(1), seq=1, name="n")
    assert isinstance(run.interpreter.result, str)
    assert run.interpreter.result.startswith("cannot decode 'seven' as int")
    run.replayed()


def test_replay_can_stop_after_some_outcomes_to_travel_back_in_time() -> None:
    run = Live(w.onboarding, "ada")
    for seq, event in enumerate(
        [
            fg.ActivityCompleted(at=at(1), seq=0, value="acct"),
            fg.ActivityCompleted(at=at(2), seq=1, value=None),
            fg.TimerFired(at=at(3), seq=2),
            fg.ActivityCompleted(at=at(4), seq=3, value=None),
        ]
    ):
        assert event.seq == seq
        run.feed(event)
    assert run.status is RunStatus.COMPLETED
    # After one outcome the run waits for send_welcome_v2 (the marker is in the history,
    # so the recorded branch is taken, and nothing is decided again).
    back = Interpreter(w.onboarding, codec=CODEC)
    assert back.replay(run.history, outcomes=1).events == ()
    assert back.status is RunStatus.WAITING
    assert back.pending == {1: fg.call(w.send_welcome_v2, "ada", locale="en")}
    start = Interpreter(w.onboarding, codec=CODEC)
    start.replay(run.history, outcomes=0)
    assert start.pending == {0: fg.call(w.create_account, "ada")}
    everything = Interpreter(w.onboarding, codec=CODEC)
    assert everything.replay(run.history, outcomes=10).events == ()
    assert everything.status is RunStatus.COMPLETED


def test_a_wait_cancelled_by_a_race_leaves_later_signals_for_the_next_wait() -> None:
    run = Live(w.signal_juggler, 2)
    # Round 1: wait "a" is seq 0, wait "b" seq 1, the send seq 2 (performed on the spot).
    assert seqs(run.step.events) == [0, 1]
    assert run.step.perform == ((2, fg.SendSignal("peer", "tick", 0)),)
    run.feed(fg.SignalReceived(at=at(1), name="b", payload=5, index=0))
    run.feed(fg.SignalSent(at=at(1), seq=2, workflow_id="peer", name="tick"))
    # The gather won round 1, so the wait for "a" at seq 0 was cancelled...
    assert run.step.events[0] == fg.CommandCancelled(at=at(1), seq=0, reason="race")
    assert seqs(run.step.events[1:]) == [3, 4]
    assert run.step.perform == ((5, fg.SendSignal("peer", "tick", 1)),)
    # ...and an "a" arriving now goes to round 2's wait (seq 3), which wins the race.
    run.feed(fg.SignalReceived(at=at(3), name="a", payload=7, index=1))
    assert run.step.events[:2] == (
        fg.CommandCancelled(at=at(3), seq=5, reason="race"),
        fg.CommandCancelled(at=at(3), seq=4, reason="race"),
    )
    assert (
        run.step.perform == ()
    )  # the send of round 2 was cancelled before it happened
    assert run.interpreter.result == [[1, [5, None]], [0, 7]]
    assert run.interpreter.tags == {"round": 1}
    run.replayed()


def test_an_activity_error_escaping_the_workflow_records_its_root_cause() -> None:
    from flowgen._core.interpreter import error_info
    from flowgen._vocabulary.errors import ActivityError, ChildWorkflowError, ErrorInfo

    declined = ErrorInfo("CardDeclined", "no funds", attempts=3)
    info = error_info(ActivityError("charge", declined))
    assert (info.type, info.cause) == ("ActivityError", "CardDeclined")
    # A child that failed with an escaped ActivityError keeps the deepest cause.
    nested = error_info(ChildWorkflowError("child-1", info))
    assert (nested.type, nested.cause) == ("ChildWorkflowError", "CardDeclined")
    assert error_info(ValueError("x")).cause == ""
    assert "traceback" not in repr(info)


# ---------------------------------------------------------------------------------------------
# Updates: validators record nothing; handlers are branches; their ends replay.


def accepted(update_id: str, name: str, *args: object, at_: float = 1) -> fg.Event:
    return fg.UpdateAccepted(
        at=at(at_), update_id=update_id, name=name, args=[encode(a) for a in args]
    )


class Unencodable:
    pass


def updatable(limit: int) -> fg.Workflow[list[object]]:
    items: list[object] = []

    def check(item: int) -> None:
        if len(items) >= limit:
            raise ValueError("full")

    def add(item: int) -> int:
        items.append(item)
        return len(items)

    def slow(item: int) -> fg.Workflow[int]:
        yield fg.sleep(10)
        got = yield fg.wait_signal("more")
        items.append([item, got])
        return len(items)

    def stubborn() -> fg.Workflow[str]:
        try:
            yield fg.wait_signal("never")
        except fg.Cancelled:
            yield fg.sleep(1)  # a handler may catch the cancel and go on
            return "caught"
        return "signalled"

    def restart() -> fg.Workflow[str]:
        try:
            yield fg.continue_as_new(1)
        except TypeError as exc:
            return str(exc)
        return "unreachable"

    def bad_result() -> object:
        return Unencodable()

    def boom(*why: str) -> None:
        raise RuntimeError(" ".join(why))

    def no_yield_validator(item: int) -> fg.Workflow[None]:
        yield fg.sleep(item)

    def cleanup() -> fg.Workflow[None]:
        try:
            yield fg.wait_signal("never")
        finally:
            yield fg.sleep(1)  # unsupported; closing it must not break the run's end

    yield fg.on_update("add", add, validator=check)
    yield fg.on_update("slow", slow)
    yield fg.on_update("stubborn", stubborn)
    yield fg.on_update("restart", restart)
    yield fg.on_update("bad_result", bad_result)
    yield fg.on_update("boom", boom)
    yield fg.on_update("odd", add, validator=no_yield_validator)
    yield fg.on_update("cleanup", cleanup)
    yield fg.wait_signal("checkout")
    return items


def test_a_validator_runs_on_the_current_state_and_records_nothing() -> None:
    run = Live(updatable, 1)
    interpreter = run.interpreter
    interpreter.validate_update("add", [1])
    run.feed(accepted("u-1", "add", 1))
    assert kinds(run.step.events) == ["UpdateCompleted"]
    with pytest.raises(fg.UpdateRejected, match="ValueError: full") as info:
        interpreter.validate_update("add", [2])
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.workflow_id == "wf-1" and info.value.update == "add"
    with pytest.raises(fg.UpdateRejected, match="no update handler 'nope'"):
        interpreter.validate_update("nope", [])
    with pytest.raises(fg.UpdateRejected, match="TypeError"):
        interpreter.validate_update("add", [1, 2])  # arguments that do not fit
    with pytest.raises(fg.UpdateRejected, match="generator function"):
        interpreter.validate_update("odd", [1])
    interpreter.validate_update("slow", [1])  # no validator: accepted
    assert interpreter.update_outcome("u-1") == run.step.events[0]
    assert interpreter.update_outcome("u-2") is None
    assert run.history[-1] == fg.UpdateCompleted(
        at=at(1), update_id="u-1", name="add", result=1
    )
    run.replayed()


def test_a_handlers_commands_take_the_next_seqs_and_it_ends_when_they_resolve() -> None:
    run = Live(updatable, 5)
    run.feed(accepted("u-1", "slow", 7))
    assert [(type(e).__name__, e.seq) for e in run.step.events] == [("TimerStarted", 1)]
    assert run.interpreter.update_outcome("u-1") == "running"
    run.feed(
        accepted("u-2", "add", 1, at_=2)
    )  # the main code and a plain handler go on
    run.feed(fg.TimerFired(at=at(11), seq=1))
    assert kinds(run.step.events) == ["SignalWaitStarted"]
    run.feed(fg.SignalReceived(at=at(12), name="more", payload="x", index=0))
    (ended,) = run.step.events
    assert ended == fg.UpdateCompleted(at(12), "u-1", "slow", 2)
    run.feed(fg.SignalReceived(at=at(13), name="checkout", payload=None, index=1))
    assert run.interpreter.result == [1, [7, "x"]]
    run.replayed()


def test_failing_handlers_end_their_update_not_the_run() -> None:
    run = Live(updatable, 5)
    run.feed(accepted("u-1", "boom", "bad", "luck"))
    (failed,) = run.step.events
    assert isinstance(failed, fg.UpdateErrored)
    assert (failed.error.type, failed.error.message) == ("RuntimeError", "bad luck")
    run.feed(accepted("u-2", "bad_result"))
    (unencodable,) = run.step.events
    assert isinstance(unencodable, fg.UpdateErrored)
    assert unencodable.error.type == "TypeError"
    run.feed(accepted("u-3", "restart"))
    (restarted,) = run.step.events
    assert restarted == fg.UpdateCompleted(
        at(1),
        "u-3",
        "restart",
        "continue_as_new() cannot be yielded in an update handler",
    )
    assert run.status is RunStatus.WAITING
    run.replayed()


def test_a_cancel_reaches_running_handlers_before_the_main_code() -> None:
    run = Live(updatable, 5)
    run.feed(accepted("u-1", "stubborn"))
    run.feed(accepted("u-2", "slow", 1))
    run.feed(fg.CancelRequested(at=at(2), reason="stop"))
    events = run.step.events
    assert kinds(events) == [
        "CommandCancelled",
        "CommandCancelled",
        "CommandCancelled",
        "TimerStarted",  # stubborn caught it and sleeps
        "UpdateErrored",  # slow did not
        "CommandCancelled",  # then the main code ends the run: stubborn's sleep goes
        "WorkflowCancelled",  # and stubborn is closed
    ]
    assert run.interpreter.update_outcome("u-1") == "running"  # closed, never ended
    run.replayed()


def test_a_run_that_ends_closes_its_running_handlers() -> None:
    run = Live(updatable, 5)
    run.feed(accepted("u-1", "cleanup"))
    run.feed(fg.SignalReceived(at=at(2), name="checkout", payload=None, index=0))
    assert run.status is RunStatus.COMPLETED
    assert kinds(run.step.events)[-1] == "WorkflowCompleted"
    run.replayed()


def test_replay_checks_updates_against_the_code() -> None:
    run = Live(updatable, 5)
    run.feed(accepted("u-1", "add", 1))
    run.feed(accepted("u-2", "boom", "x"))
    history = run.history
    other_result = [
        attrs_evolve(e, result=9) if isinstance(e, fg.UpdateCompleted) else e
        for e in history
    ]
    with pytest.raises(NonDeterminismError, match="update_completed \\(result 9\\)"):
        fg.replay(
            updatable,
            other_result,
            codec=CODEC,
        )
    other_error = [
        attrs_evolve(e, error=fg.ErrorInfo("KeyError", "k"))
        if isinstance(e, fg.UpdateErrored)
        else e
        for e in history
    ]
    with pytest.raises(NonDeterminismError, match="update_failed \\(KeyError"):
        fg.replay(updatable, other_error, codec=CODEC)
    unknown = [*history, accepted("u-3", "gone")]
    with pytest.raises(NonDeterminismError, match="no handler of that name"):
        fg.replay(updatable, unknown, codec=CODEC)
    twice = [*history, accepted("u-1", "add", 2)]
    with pytest.raises(HistoryCorruptError, match="accepted twice"):
        fg.replay(updatable, twice, codec=CODEC)
    ended_twice = [*history, history[-1]]
    with pytest.raises(HistoryCorruptError, match="ended twice"):
        fg.replay(updatable, ended_twice, codec=CODEC)
    never_ended = [
        *history,
        fg.UpdateCompleted(at=at(3), update_id="u-9", name="add", result=1),
    ]
    with pytest.raises(NonDeterminismError, match="never ends that update"):
        fg.replay(updatable, never_ended, codec=CODEC)
    # A history cut short after an acceptance: the handler's end is decided again.
    cut = history[
        : history.index(
            next(e for e in history if e.__class__.__name__ == "UpdateCompleted")
        )
    ]
    step = Interpreter(updatable, codec=CODEC).replay(cut)
    assert kinds(step.events) == ["UpdateCompleted"]


def test_validators_and_handlers_are_workflow_code() -> None:
    @fg.activity(name="upd_direct")
    def direct(n: int) -> int:
        return n + 1

    def wf() -> fg.Workflow[None]:
        def check(n: int) -> None:
            direct(n)  # forgot fg.call: refused, as in the main code

        yield fg.on_update("checked", lambda n: n, validator=check)
        yield fg.on_update("calls", direct)
        yield fg.wait_signal("never")

    run = Live(wf)
    with pytest.raises(fg.UpdateRejected, match="called directly inside a workflow"):
        run.interpreter.validate_update("checked", [1])
    run.feed(accepted("u-1", "calls", 1))
    (failed,) = run.step.events
    assert isinstance(failed, fg.UpdateErrored)
    assert failed.error.type == "UsageError"
    assert direct(1) == 2  # outside workflow code, a plain call
