"""The DSL: decorators and their catalog, command helpers, and `Saga`."""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import flowgen as fg
from flowgen._core import dsl as _dsl
from flowgen._core.dsl import (
    ACTIVITIES,
    WORKFLOWS,
    activity_definition,
    parameter_types,
    return_type,
    workflow_definition,
    workflow_return_type,
)
from flowgen._core.interpreter import Interpreter
from flowgen._stores.codec import CODEC
from tests import workflows as w

# ---------------------------------------------------------------------------------------------
# Decorators and the catalog.


def test_activity_decorator_returns_the_function_and_records_its_definition() -> None:
    definition = ACTIVITIES["ship_order"]
    assert definition.fn is w.ship_order
    assert definition.options.retry == fg.RetryPolicy(
        max_attempts=5, initial_interval=1.0
    )
    assert activity_definition(w.ship_order) is definition
    assert w.validate_order("o-1") is True  # still callable directly


def test_activity_options_take_a_name_and_a_timeout_in_seconds_or_timedelta() -> None:
    @fg.activity(name="dsl_timed", timeout=timedelta(minutes=2))
    def timed() -> None:
        return None

    @fg.activity(name="dsl_timed_seconds", timeout=5)
    def timed_seconds() -> None:
        return None

    assert activity_definition(timed).options.timeout == 120.0
    assert activity_definition(timed_seconds).options.timeout == 5.0
    assert ACTIVITIES["dsl_timed"].fn is timed


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"retry": 3}, TypeError, r"activity\(retry=...\) must be a fg.RetryPolicy"),
        ({"timeout": "soon"}, TypeError, r"activity\(timeout=...\) must be seconds"),
        ({"timeout": True}, TypeError, r"activity\(timeout=...\) must be seconds"),
        (
            {"timeout": -1},
            ValueError,
            r"activity\(timeout=...\) must be a finite duration",
        ),
        ({"timeout": math.inf}, ValueError, "finite duration >= 0, got inf"),
        ({"name": 3}, TypeError, "activity name must be a non-empty string, got 3"),
    ],
)
def test_activity_refuses_bad_options(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):

        @fg.activity(**options)
        def act() -> None:
            return None


def test_activity_refuses_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match=r"@fg.activity needs a function, got 3"):
        fg.activity(3)  # type: ignore[type-var]


def test_two_functions_cannot_claim_one_name_but_a_redefinition_replaces_the_old() -> (
    None
):
    def first() -> int:
        return 1

    fg.activity(name="dsl_claimed")(first)

    def first_again() -> (
        int
    ):  # the same module and qualified name: a re-run notebook cell
        return 2

    first_again.__qualname__ = first.__qualname__
    fg.activity(name="dsl_claimed")(first_again)
    # Registered wrapped (see test_an_activity_called_directly_inside_workflow_code_...).
    assert ACTIVITIES["dsl_claimed"].fn.__wrapped__ is first_again

    def other() -> int:
        return 3

    with pytest.raises(
        ValueError, match=r"activity name 'dsl_claimed' is already used by .*first"
    ):
        fg.activity(name="dsl_claimed")(other)


def test_workflow_decorator_records_generator_functions_only() -> None:
    assert WORKFLOWS["process_order"].fn is w.process_order
    assert workflow_definition(w.onboarding_v1).name == "onboarding_v1"

    def not_a_generator() -> int:
        return 1

    with pytest.raises(TypeError, match=r"@fg.workflow needs a generator function"):
        fg.workflow(not_a_generator)
    with pytest.raises(
        ValueError, match="workflow name 'process_order' is already used"
    ):

        @fg.workflow(name="process_order")
        def impostor() -> fg.Workflow[None]:
            yield fg.sleep(1)


def test_definitions_of_undecorated_functions_use_their_qualified_names() -> None:
    def helper(x: int) -> str:
        return str(x)

    definition = activity_definition(helper)
    assert definition.name.endswith("helper")
    assert definition.options == fg.ActivityOptions()

    class Callable:
        def __call__(self) -> int:
            return 1

    assert activity_definition(Callable()).name.endswith("Callable")
    with pytest.raises(
        TypeError, match="an activity must be a function or a registered name"
    ):
        activity_definition(42)  # type: ignore[arg-type]

    def flow() -> fg.Workflow[None]:
        yield fg.sleep(1)

    assert workflow_definition(flow).name.endswith("flow")
    with pytest.raises(TypeError, match="a workflow must be a generator function"):
        workflow_definition(helper)


# ---------------------------------------------------------------------------------------------
# Type hints: what results and arguments decode to.


def annotated(trip: w.Trip, count: int = 1) -> w.Booking:
    return w.Booking("x", "y")


def returns_none() -> None:
    return None


def unresolvable() -> NoSuchType:  # type: ignore[name-defined]  # noqa: F821
    return None


def test_return_type_is_the_annotation_none_or_missing_meaning_any_json() -> None:
    assert return_type(annotated) is w.Booking
    assert return_type(returns_none) is object
    assert return_type(lambda: 1) is object
    assert return_type(unresolvable) is object


def test_return_type_of_a_bound_method_reads_the_function() -> None:
    class Shop:
        def price(self, item: str) -> float:
            return 1.0

    assert return_type(Shop().price) is float
    assert parameter_types(Shop().price) == {"item": str}


def test_workflow_return_type_is_r_of_its_generator_annotation() -> None:
    assert workflow_return_type(w.process_order) is str
    assert workflow_return_type(w.everything_once) == list[object]

    def iterator() -> Iterator[int]:
        yield 1

    def plain() -> int:
        return 1

    assert workflow_return_type(iterator) is object
    assert workflow_return_type(plain) is object


def test_parameter_types_leave_out_the_return_annotation() -> None:
    assert parameter_types(annotated) == {"trip": w.Trip, "count": int}
    assert parameter_types(unresolvable) == {}


# ---------------------------------------------------------------------------------------------
# Command helpers.


def test_call_by_function_carries_name_function_result_type_and_options() -> None:
    command = fg.call(w.charge_card, w.Trip("a", "b"))
    assert command == fg.CallActivity("charge_card", (w.Trip("a", "b"),))
    assert command.fn is w.charge_card
    assert command.result_type is str
    assert command.options.retry is not None
    assert command.options.retry.non_retryable == ("CardDeclined",)


def test_call_by_name_has_no_function_and_decodes_plain_json() -> None:
    command = fg.call("remote_task", 1, flag=True)
    assert command == fg.CallActivity("remote_task", (1,), {"flag": True})
    assert (command.fn, command.result_type) == (None, object)
    with pytest.raises(TypeError, match="activity name must be a non-empty string"):
        fg.call("")


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [(5, 5.0), (0.5, 0.5), (timedelta(hours=1), 3600.0), (0, 0.0)],
)
def test_sleep_takes_seconds_or_a_timedelta(
    duration: float | timedelta, seconds: float
) -> None:
    assert fg.sleep(duration) == fg.StartTimer(seconds)


@pytest.mark.parametrize(
    ("duration", "error"),
    [
        ("5", TypeError),
        (True, TypeError),
        (None, TypeError),
        (-1, ValueError),
        (math.nan, ValueError),
        (timedelta(seconds=-1), ValueError),
    ],
)
def test_sleep_refuses_what_is_not_a_finite_duration(
    duration: object, error: type
) -> None:
    with pytest.raises(error, match=r"sleep\(\) duration must be"):
        fg.sleep(duration)  # type: ignore[arg-type]


def test_wait_signal_takes_a_timeout_and_the_type_to_decode_to() -> None:
    command = fg.wait_signal("approve", timeout=timedelta(days=1), result_type=bool)
    assert command == fg.WaitSignal("approve", timeout=86400.0)
    assert command.result_type is bool
    assert fg.wait_signal("x").result_type is object
    with pytest.raises(TypeError, match="signal name must be a non-empty string"):
        fg.wait_signal(None)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match=r"wait_signal\(timeout=...\)"):
        fg.wait_signal("x", timeout=-2)


def test_side_effect_is_named_after_its_function_and_decodes_to_its_return_type() -> (
    None
):
    def token() -> str:
        return "t"

    command = fg.side_effect(token)
    assert command.name.endswith("token")
    assert command.result_type is str
    assert command.fn is token
    named = fg.side_effect(token, name="tok", result_type=bytes)
    assert (named.name, named.result_type) == ("tok", bytes)

    class Dice:
        def __call__(self) -> int:
            return 4

    assert fg.side_effect(Dice()).name.endswith("Dice")
    with pytest.raises(TypeError, match="side_effect\\(\\) needs a function"):
        fg.side_effect("uuid4")  # type: ignore[arg-type]


def test_local_command_helpers() -> None:
    assert fg.current_time() == fg.CurrentTime()
    assert fg.info() == fg.GetInfo()
    assert fg.get_version("c", fg.DEFAULT_VERSION, 2) == fg.GetVersion("c", -1, 2)
    with pytest.raises(TypeError, match="change_id must be a non-empty string"):
        fg.get_version("", 0, 1)
    assert fg.set_tags(stage="done", n=1) == fg.SetTags({"stage": "done", "n": 1})
    assert fg.continue_as_new(1, x=2) == fg.ContinueAsNew((1,), {"x": 2})


def test_on_query_needs_a_name_and_a_callable() -> None:
    def handler() -> int:
        return 1

    command = fg.on_query("progress", handler)
    assert (command.name, command.handler) == ("progress", handler)
    with pytest.raises(TypeError, match="on_query\\(\\) needs a callable handler"):
        fg.on_query("progress", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query name"):
        fg.on_query("", handler)


def test_child_by_function_or_by_name() -> None:
    command = fg.child(w.child_double, 2)
    assert command == fg.StartChild("child_double", (2,))
    assert (command.fn, command.result_type, command.workflow_id) == (
        w.child_double,
        int,
        None,
    )
    by_name = fg.child("remote_flow", x=1)
    assert by_name == fg.StartChild("remote_flow", (), {"x": 1})
    assert by_name.result_type is object
    with pytest.raises(TypeError, match="workflow name"):
        fg.child("")


def test_gather_and_race_build_their_commands_in_order() -> None:
    a, b = fg.call(w.echo, 1), fg.sleep(1)
    assert fg.gather(a, b) == fg.Gather((a, b))
    assert fg.race(a, b) == fg.Race((a, b))
    assert fg.gather() == fg.Gather(())


def test_send_signal_checks_its_target_and_name() -> None:
    assert fg.send_signal("g-1", "greet", {"n": 1}) == fg.SendSignal(
        "g-1", "greet", {"n": 1}
    )
    with pytest.raises(TypeError, match="workflow_id must be a non-empty string"):
        fg.send_signal("", "greet")
    with pytest.raises(TypeError, match="signal name"):
        fg.send_signal("g-1", 3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Saga.


def test_saga_add_takes_commands_only() -> None:
    saga = fg.Saga()
    saga.add(fg.call(w.cancel_hotel, w.Booking("hotel", "h")))
    saga.add(fg.sleep(1))
    saga.add(fg.gather(fg.call(w.echo, 1)))
    assert len(saga) == 3
    with pytest.raises(TypeError, match=r"Saga.add\(\) needs a command"):
        saga.add(w.cancel_hotel)  # type: ignore[arg-type]


def test_saga_compensates_last_in_first_out() -> None:
    saga = fg.Saga()
    undo = [fg.call(w.echo, f"undo-{i}") for i in range(3)]
    for command in undo:
        saga.add(command)
    steps = saga.compensate()
    assert next(steps) is undo[2]
    assert steps.send(None) is undo[1]
    assert steps.send(None) is undo[0]
    with pytest.raises(StopIteration):
        steps.send(None)
    assert len(saga) == 0
    assert list(saga.compensate()) == []


def test_a_failing_compensation_does_not_stop_the_others() -> None:
    saga = fg.Saga()
    for i in range(3):
        saga.add(fg.call(w.echo, i))
    steps = saga.compensate()
    next(steps)
    failure = fg.ActivityError("echo", fg.ErrorInfo("Stuck", "2"))
    assert steps.throw(failure) == fg.call(w.echo, 1)
    other = ValueError("1")
    assert steps.throw(other) == fg.call(w.echo, 0)
    with pytest.raises(
        fg.CompensationError, match="2 compensation\\(s\\) failed"
    ) as caught:
        steps.send(None)
    assert caught.value.exceptions == (failure, other)


def test_saga_compensation_lets_base_exceptions_through() -> None:
    saga = fg.Saga()
    saga.add(fg.sleep(1))
    saga.add(fg.sleep(2))
    steps = saga.compensate()
    next(steps)
    with pytest.raises(KeyboardInterrupt):
        steps.throw(KeyboardInterrupt())


def test_workflow_alias_is_a_generator_type() -> None:
    assert fg.Workflow[int] == Generator[fg.Command, Any, int]
    assert _dsl.DEFAULT_VERSION == fg.DEFAULT_VERSION == -1


def test_patched_refuses_an_empty_change_id() -> None:
    with pytest.raises(TypeError, match="change_id must be a non-empty string"):
        fg.patched("")


def test_on_update_checks_its_arguments() -> None:
    command = fg.on_update("add", len, validator=bool)
    assert command == fg.RegisterUpdate("add", print)  # handlers are not compared
    assert fg.on_update("add", len).validator is None
    with pytest.raises(TypeError, match="update name must be a non-empty string"):
        fg.on_update("", lambda: None)
    with pytest.raises(TypeError, match="callable handler"):
        fg.on_update("x", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="validator"):
        fg.on_update("x", lambda: None, validator=3)  # type: ignore[arg-type]


def test_an_update_handlers_result_type_comes_from_its_annotation() -> None:
    from flowgen._core.dsl import handler_return_type

    def plain(x: int) -> list[int]:
        return [x]

    def stepping(x: int) -> Generator[fg.Command, object, dict[str, int]]:
        yield fg.sleep(x)
        return {"x": x}

    def nothing(x: int) -> None:
        return None

    def unannotated(x):  # type: ignore[no-untyped-def]
        return x

    assert handler_return_type(plain) == list[int]
    assert handler_return_type(stepping) == dict[str, int]
    assert handler_return_type(nothing) is object
    assert handler_return_type(unannotated) is object


def test_an_activity_called_directly_inside_workflow_code_raises_usage_error() -> None:
    @fg.activity(name="dsl_direct")
    def direct(n: int) -> int:
        return n + 1

    def wf() -> Any:
        return direct(1)  # forgot `yield fg.call(direct, 1)`
        yield  # a generator

    interp = Interpreter(wf, codec=CODEC)
    step = interp.feed(
        fg.WorkflowStarted(
            at=datetime(2026, 1, 1, tzinfo=UTC),
            workflow_id="wf-1",
            run_id="run-1",
            name="wf",
            args=[],
            kwargs={},
        )
    )
    assert isinstance(step.events[-1], fg.WorkflowErrored)
    error = step.events[-1].error
    assert error.type == "UsageError"
    assert "activity 'dsl_direct' was called directly inside a workflow" in (
        error.message
    )
    assert direct(1) == 2  # outside workflow code, a plain call
    assert activity_definition(direct).fn is direct

    async def coroutine() -> None:
        return None

    class Callable:
        def __call__(self) -> None:
            return None

    instance = Callable()
    # Neither can run inline by mistake, so neither is wrapped.
    assert fg.activity(name="dsl_direct_async")(coroutine) is coroutine
    assert fg.activity(name="dsl_direct_object")(instance) is instance


def test_signature_of_reads_any_callable_once_and_none_for_a_builtin() -> None:
    from flowgen._core.decisions import signature_of

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, a: int, b: int = 2) -> int:
            return a + b

    def plain(x: int) -> int:
        return x

    assert list(signature_of(Unhashable()).parameters) == ["a", "b"]  # type: ignore[union-attr]
    assert signature_of(plain) is signature_of(plain)
    assert signature_of(min) is None  # a builtin without one
