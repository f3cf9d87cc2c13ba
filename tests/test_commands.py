"""Layer 0, the vocabulary: commands, events and errors are inert, validated values."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, strategies as st

import flowgen as fg
from flowgen._vocabulary.commands import (
    COMMAND_KINDS,
    LEAF_COMMANDS,
    Command,
    CurrentTime,
    GetInfo,
    describe_command,
)
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    INCOMING_EVENTS,
    TAG_TO_EVENT,
    TERMINAL_EVENTS,
    event_seq,
)
from tests import workflows as w
from tests.strategies import EVENT_CLASSES, T0, events

# ---------------------------------------------------------------------------------------------
# Commands.


def test_creating_a_command_does_nothing_and_equal_requests_compare_equal() -> None:
    # Live objects (the function, the result type, options) do not take part in equality.
    by_function = fg.call(w.double, 2)
    by_name = fg.CallActivity("double", (2,))
    assert by_function == by_name
    assert by_function.fn is w.double
    assert by_function.result_type is int
    assert repr(by_function) == "CallActivity(name='double', args=(2,), kwargs={})"
    assert fg.side_effect(w.new_tracking_number) == fg.RecordSideEffect(
        "new_tracking_number", fn=lambda: None
    )


def test_commands_are_frozen() -> None:
    command = fg.sleep(1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        command.seconds = 2  # type: ignore[misc]


def test_keyword_arguments_are_copied_so_the_caller_cannot_change_a_command() -> None:
    kwargs: dict[str, object] = {"locale": "en"}
    command = fg.CallActivity("a", kwargs=kwargs)
    kwargs["locale"] = "fr"
    assert command.kwargs == {"locale": "en"}
    assert fg.ContinueAsNew().kwargs == {}
    assert fg.StartChild("c", kwargs=None).kwargs == {}  # type: ignore[arg-type]


def test_yield_from_a_command_yields_it_and_returns_what_is_sent_back() -> None:
    command = fg.call(w.double, 2)
    gen = iter(command)
    assert next(gen) is command
    with pytest.raises(StopIteration) as stop:
        gen.send(4)
    assert stop.value.value == 4


@given(st.floats(min_value=0, allow_infinity=False) | st.integers(0, 10**12))
def test_a_timer_accepts_any_finite_non_negative_number_of_seconds(
    seconds: float,
) -> None:
    timer = fg.StartTimer(seconds)
    assert timer.seconds == float(seconds)
    assert isinstance(timer.seconds, float)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.001])
def test_a_timer_refuses_nan_infinity_and_negative_seconds(bad: float) -> None:
    with pytest.raises(
        ValueError, match="seconds must be a finite number of seconds >= 0"
    ):
        fg.StartTimer(bad)


def test_a_signal_wait_timeout_is_optional_but_must_be_finite() -> None:
    assert fg.WaitSignal("s").timeout is None
    assert fg.WaitSignal("s", timeout=3).timeout == 3.0
    with pytest.raises(ValueError, match="timeout must be a finite number"):
        fg.WaitSignal("s", timeout=math.nan)


def test_get_version_refuses_a_max_below_its_min() -> None:
    assert (
        fg.GetVersion("c", fg.DEFAULT_VERSION, fg.DEFAULT_VERSION).max_supported == -1
    )
    with pytest.raises(
        ValueError, match=r"get_version\('c'\): max_supported 1 < min_supported 2"
    ):
        fg.GetVersion("c", 2, 1)


def test_tag_names_must_be_strings() -> None:
    assert fg.SetTags({"a": 1}).tags == {"a": 1}
    with pytest.raises(TypeError, match="tag names must be strings, got 1"):
        fg.SetTags({1: "a"})  # type: ignore[dict-item]


def test_gather_and_race_hold_only_commands_they_can_run_concurrently() -> None:
    nested = fg.Gather([fg.sleep(1), fg.Race([fg.wait_signal("s")])])
    assert isinstance(nested.commands, tuple)
    for not_allowed in (fg.current_time(), fg.get_version("c", 0, 1), "sleep", None):
        with pytest.raises(
            TypeError, match="commands of gather\\(\\)/race\\(\\) must be"
        ):
            fg.Gather([fg.sleep(1), not_allowed])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="got"):
            fg.Race([not_allowed])  # type: ignore[list-item]


def test_race_needs_at_least_one_command_but_gather_may_be_empty() -> None:
    assert fg.Gather(()).commands == ()
    with pytest.raises(ValueError, match="race\\(\\) needs at least one command"):
        fg.Race(())


def test_command_kinds_name_every_command_of_the_closed_union() -> None:
    assert set(COMMAND_KINDS) == {
        typing.get_origin(c) or c for c in typing.get_args(Command)
    }
    assert set(LEAF_COMMANDS) <= set(COMMAND_KINDS)


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (fg.call(w.echo, 1), "activity 'echo'"),
        (fg.sleep(1), "timer"),
        (fg.wait_signal("go"), "signal wait 'go'"),
        (fg.side_effect(w.new_tracking_number), "side effect 'new_tracking_number'"),
        (fg.child(w.child_double, 1), "child workflow 'child_double'"),
        (fg.send_signal("x", "ping"), "signal send 'ping'"),
        (fg.get_version("c", 0, 1), "get_version"),
        (CurrentTime(), "current_time"),
        (GetInfo(), "info"),
        (fg.set_tags(a=1), "set_tags"),
        (fg.on_query("q", lambda: 1), "on_query 'q'"),
        (fg.continue_as_new(), "continue_as_new"),
        (fg.gather(fg.sleep(1)), "gather"),
        (fg.race(fg.sleep(1)), "race"),
        (42, "a int object (42), which is not a flowgen command"),
    ],
)
def test_describe_command_names_kind_and_name(command: object, text: str) -> None:
    assert describe_command(command) == text


def test_workflow_info_and_activity_options_are_plain_values() -> None:
    info = fg.WorkflowInfo("w", "r", "n", T0)
    assert info.parent_id is None
    assert fg.ActivityOptions() == fg.ActivityOptions(retry=None, timeout=None)


# ---------------------------------------------------------------------------------------------
# Events.


def test_every_event_kind_has_a_tag_and_is_incoming_or_a_decision() -> None:
    assert set(EVENT_TAGS) == set(typing.get_args(fg.Event))
    assert {TAG_TO_EVENT[tag] for tag in EVENT_TAGS.values()} == set(EVENT_CLASSES)
    assert set(INCOMING_EVENTS) < set(EVENT_CLASSES)
    assert fg.WorkflowTerminated in INCOMING_EVENTS
    assert set(TERMINAL_EVENTS) - set(INCOMING_EVENTS) == {
        fg.WorkflowCompleted,
        fg.WorkflowErrored,
        fg.WorkflowCancelled,
        fg.WorkflowContinuedAsNew,
    }


@given(events)
def test_event_seq_is_the_seq_of_seq_events_and_none_for_run_events(
    event: fg.Event,
) -> None:
    if any(f.name == "seq" for f in attrs.fields(type(event))):
        assert event_seq(event) == event.seq  # type: ignore[union-attr]
    else:
        assert event_seq(event) is None


def test_events_are_frozen_and_default_their_optional_fields() -> None:
    event = fg.ActivityCompleted(at=T0, seq=1, value=None)
    assert (event.attempt, event.started_at) == (1, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.seq = 2  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Errors.


def test_error_info_reads_as_type_and_message() -> None:
    assert str(fg.ErrorInfo("CardDeclined", "no funds")) == "CardDeclined: no funds"
    assert str(fg.ErrorInfo("Cancelled", "")) == "Cancelled"


def test_the_exception_tree_says_who_is_at_fault() -> None:
    assert issubclass(fg.UsageError, TypeError)
    assert issubclass(fg.UnknownActivity, fg.UsageError)
    assert issubclass(fg.UnknownWorkflow, LookupError)
    for interrupt in (
        fg.ActivityError,
        fg.ChildWorkflowError,
        fg.SignalTimeout,
        fg.SignalSendError,
        fg.Cancelled,
    ):
        assert issubclass(interrupt, fg.WorkflowInterrupt)
        assert issubclass(interrupt, Exception)  # catchable by `except Exception`
    for store_error in (
        fg.StoreLockedError,
        fg.SchemaVersionError,
        fg.NotAFlowgenDatabase,
    ):
        assert issubclass(store_error, fg.StoreError)
    assert not issubclass(fg.NonRetryableError, fg.FlowgenError)


def test_a_fleets_refused_commit_is_a_store_error_naming_what_to_apply_again() -> None:
    # The decision loop applies such a batch again, and a fleet's message delivered in
    # it is taken again (its batch failed with a StoreError).
    from flowgen._stores.protocol import MessagesRaced

    lost = fg.LeaseLost("lost", frozenset({"r1"}))
    closed = MessagesRaced("closed", closed=frozenset({"w1"}))
    pending = MessagesRaced("pending", pending=(7, 9))
    assert all(isinstance(e, fg.StoreError) for e in (lost, closed, pending))
    assert (lost.run_ids, closed.closed, closed.pending) == ({"r1"}, {"w1"}, ())
    assert (pending.closed, pending.pending) == (frozenset(), (7, 9))


def test_interrupts_carry_the_recorded_failure() -> None:
    info = fg.ErrorInfo("Boom", "x", attempts=2)
    error = fg.ActivityError("charge", info)
    assert (error.activity, error.type, error.attempts, error.info) == (
        "charge",
        "Boom",
        2,
        info,
    )
    assert str(error) == "activity 'charge' failed after 2 attempt(s): Boom: x"
    child = fg.ChildWorkflowError("wf/1", info)
    assert (child.child_id, str(child)) == (
        "wf/1",
        "child workflow 'wf/1' failed: Boom: x",
    )
    timeout = fg.SignalTimeout("approve")
    assert (timeout.name, timeout.info.type) == ("approve", "SignalTimeout")
    assert fg.Cancelled("stop").info == fg.ErrorInfo("Cancelled", "stop")
    assert str(fg.Cancelled()) == "Cancelled"
    assert str(fg.SignalSendError(fg.ErrorInfo("WorkflowClosed", "done"))) == "done"
    assert str(fg.WorkflowInterrupt(info, "custom")) == "custom"


def test_workflow_failed_names_the_run_status_and_error() -> None:
    error = fg.WorkflowFailed("order-1", "failed", fg.ErrorInfo("InvalidOrder", "o-1"))
    assert str(error) == "workflow 'order-1' failed: InvalidOrder: o-1"
    assert (error.workflow_id, error.status) == ("order-1", "failed")


def test_nondeterminism_error_carries_workflow_id_and_seq() -> None:
    error = fg.NonDeterminismError("diverged", workflow_id="w", seq=3)
    assert (str(error), error.workflow_id, error.seq) == ("diverged", "w", 3)
    assert fg.NonDeterminismError("x").seq is None


def test_compensation_error_is_an_exception_group_that_except_star_can_split() -> None:
    first, second = ValueError("a"), KeyError("b")
    group = fg.CompensationError("2 compensation(s) failed", [first, second])
    assert isinstance(group, ExceptionGroup)
    assert isinstance(group, fg.FlowgenError)
    assert group.exceptions == (first, second)
    caught: list[BaseException] = []
    try:
        raise group
    except* KeyError as split:
        caught.append(split)
        assert isinstance(split, fg.CompensationError)
        assert split.exceptions == (second,)
    except* ValueError as rest:
        caught.append(rest)
    assert len(caught) == 2


@pytest.mark.parametrize(
    "build",
    [
        lambda bad: fg.CallActivity(bad),
        lambda bad: fg.WaitSignal(bad),
        lambda bad: fg.RecordSideEffect(bad, lambda: 1),
        lambda bad: fg.StartChild(bad),
        lambda bad: fg.StartChild("child", workflow_id=bad),
        lambda bad: fg.SendSignal(bad, "go"),
        lambda bad: fg.SendSignal("other", bad),
        lambda bad: fg.GetVersion(bad, 0, 1),
        lambda bad: fg.Patched(bad),
        lambda bad: fg.RegisterQuery(bad, lambda: None),
        lambda bad: fg.SetTags({bad: 1}),
    ],
)
def test_a_name_no_store_can_hold_is_refused_where_the_command_is_built(
    build: Callable[[str], object],
) -> None:
    # os.fsdecode of a non-UTF-8 file name: a lone surrogate, which UTF-8 cannot encode.
    with pytest.raises(TypeError, match="lone surrogate"):
        build("report-\udc80.csv")
    build("rapport-été.csv")  # real non-ASCII text is fine


@pytest.mark.parametrize("seconds", [1e10, 1e300, float(10**12)])
def test_a_sleep_or_timeout_longer_than_100_years_is_refused_where_it_is_given(
    seconds: float,
) -> None:
    # Issue 10 item 3: such a due time killed the timer thread (Event.wait overflows).
    with pytest.raises(ValueError, match="at most 3155760000 s"):
        fg.sleep(seconds)
    with pytest.raises(ValueError, match="at most 3155760000 s"):
        fg.wait_signal("go", timeout=seconds)
    assert fg.sleep(3_155_760_000.0).seconds == 3_155_760_000.0


def test_child_options_returns_a_new_frozen_command() -> None:
    command = fg.child(w.child_double, 2)
    assert command.parent_close == "terminate"
    cancelling = command.options(parent_close="request_cancel")
    assert cancelling.parent_close == "request_cancel"
    assert (cancelling.name, cancelling.args) == (command.name, command.args)
    assert command.parent_close == "terminate"  # unchanged
    with pytest.raises(ValueError, match=r"parent_close must be one of .*'abandon'"):
        fg.StartChild("report", parent_close="later")  # type: ignore[arg-type]


def test_patched_is_a_command_named_by_its_change() -> None:
    assert fg.patched("express") == fg.Patched("express")
    assert describe_command(fg.patched("express")) == "patched"
