"""One rule turns an activity attempt into its outcome event, in the engine and the Stepper.

`flowgen._core.outcome.attempt_outcome` decides; the engine (`Engine._run_attempt`) and the
Stepper (`Stepper.run`) only perform the attempt. These tests pin the rule on the pure
function, then drive a hand-driven engine and a Stepper with the same scripted attempts and
check that both record the same events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import flowgen as fg
from flowgen._core.dsl import ActivityDefinition
from flowgen._core.outcome import attempt_outcome, attempt_policy
from flowgen._runtime.clock import MANUAL_EPOCH
from flowgen._stores.memory import MemoryStore
from flowgen._vocabulary.commands import ActivityOptions, CallActivity
from flowgen.testing import ManualClock

T0 = MANUAL_EPOCH


class Flaky(Exception):
    pass


class Fatal(Exception):
    pass


def command(retry: fg.RetryPolicy | None = None) -> CallActivity[Any]:
    return CallActivity(name="act", options=ActivityOptions(retry=retry))


def definition(retry: fg.RetryPolicy | None) -> ActivityDefinition:
    return ActivityDefinition("act", fn=print, options=ActivityOptions(retry=retry))


# -- the rule, on the pure function -------------------------------------------------------------


def test_a_result_completes_the_activity() -> None:
    event = attempt_outcome(
        seq=3, attempt=2, policy=fg.RetryPolicy(), started_at=T0, now=T0, value=[1]
    )
    assert event == fg.ActivityCompleted(
        at=T0, seq=3, value=[1], attempt=2, started_at=T0
    )


def test_a_retryable_failure_schedules_the_next_attempt_after_the_policy_delay() -> (
    None
):
    policy = fg.RetryPolicy(initial_interval=5, backoff=3)
    now = T0 + timedelta(seconds=1)
    event = attempt_outcome(
        seq=0, attempt=2, policy=policy, started_at=T0, now=now, error=Flaky("x")
    )
    assert isinstance(event, fg.ActivityAttemptFailed)
    assert (event.at, event.retry_at, event.started_at) == (
        now,
        now + timedelta(seconds=15),
        T0,
    )
    assert (event.error.type, event.error.message, event.error.attempts) == (
        "Flaky",
        "x",
        2,
    )


@pytest.mark.parametrize(
    ("error", "policy", "in_activity"),
    [
        (fg.NonRetryableError("no"), fg.RetryPolicy(), True),
        (Fatal("no"), fg.RetryPolicy(non_retryable=(Fatal,)), True),
        (Flaky("last"), fg.RetryPolicy(max_attempts=1), True),
        (Flaky("outside"), fg.RetryPolicy(), False),  # no such activity, bad arguments
    ],
)
def test_these_failures_fail_the_activity_at_once(
    error: Exception, policy: fg.RetryPolicy, in_activity: bool
) -> None:
    event = attempt_outcome(
        seq=0,
        attempt=1,
        policy=policy,
        started_at=T0,
        now=T0,
        error=error,
        in_activity=in_activity,
    )
    assert isinstance(event, fg.ActivityFailed)
    assert event.error.type == type(error).__name__
    assert event.error.non_retryable is (
        isinstance(error, fg.NonRetryableError) or not in_activity
    )


@pytest.mark.parametrize(
    ("deadline_after", "retried"), [(16, True), (15, False), (10, False)]
)
def test_no_retry_starts_at_or_past_the_schedule_to_close_deadline(
    deadline_after: float, retried: bool
) -> None:
    policy = fg.RetryPolicy(initial_interval=15, max_attempts=5)
    event = attempt_outcome(
        seq=0,
        attempt=1,
        policy=policy,
        started_at=T0,
        now=T0,
        error=Flaky("x"),
        deadline=T0 + timedelta(seconds=deadline_after),
    )
    assert isinstance(event, fg.ActivityAttemptFailed) is retried
    assert isinstance(event, fg.ActivityFailed) is not retried


def test_a_type_error_raised_by_the_activity_is_retried_like_any_other() -> None:
    event = attempt_outcome(
        seq=0,
        attempt=1,
        policy=fg.RetryPolicy(),
        started_at=T0,
        now=T0,
        error=TypeError("bad"),
    )
    assert isinstance(event, fg.ActivityAttemptFailed)


def test_the_definition_that_runs_decides_the_policy_else_the_runner_default() -> None:
    default, declared = fg.RetryPolicy(max_attempts=7), fg.RetryPolicy(max_attempts=2)
    # By name (the command carries only defaults): the registered definition's policy.
    assert attempt_policy(command(), definition(declared), default) is declared
    # Neither declares one: the runner's default.
    assert attempt_policy(command(), definition(None), default) is default
    # No definition found (the attempt fails anyway): what the command says.
    assert attempt_policy(command(declared), None, default) is declared
    assert attempt_policy(command(), None, default) is default


def test_attempt_outcome_wants_a_value_or_an_error() -> None:
    with pytest.raises(TypeError, match="error"):
        attempt_outcome(
            seq=0,
            attempt=1,
            policy=fg.RetryPolicy(),
            started_at=T0,
            now=T0,
            value=1,
            error=Flaky(),
        )


# -- the Stepper does what the engine does ------------------------------------------------------


class Till:
    """An object holding resources; its activity is a method."""

    def __init__(self) -> None:
        self.calls = 0

    @fg.activity(
        name="test_attempt_outcome.Till.ring",
        retry=fg.RetryPolicy(max_attempts=2, initial_interval=1),
    )
    def ring(self, amount: int) -> int:
        self.calls += 1
        if self.calls == 1:
            raise TypeError("the printer jammed")  # the activity's own TypeError
        return amount * 2


def ring_unbound(amount: int) -> fg.Workflow[int]:
    return (yield fg.call(Till.ring, amount))  # the method named on its class


def test_stepper_runs_a_method_named_on_its_class_bound_to_the_registered_object() -> (
    None
):
    till = Till()
    stepper = fg.Stepper.create(ring_unbound, [21], activities=[till])
    stepper.next()
    stepper.run()
    assert (stepper.status, stepper.result, till.calls) == (
        fg.RunStatus.COMPLETED,
        42,
        2,
    )


def test_stepper_retries_a_type_error_raised_by_the_activity_as_the_engine_does() -> (
    None
):
    till = Till()
    stepper = fg.Stepper.create(ring_unbound, [5], activities=[till])
    stepper.next()
    stepper.run()
    failed = [e for e in stepper.history if isinstance(e, fg.ActivityAttemptFailed)]
    assert [(e.error.type, e.error.non_retryable) for e in failed] == [
        ("TypeError", False)
    ]
    assert stepper.result == 10

    engine = fg.Engine(store=MemoryStore(), clock=ManualClock(), activities=[Till()])
    handle = engine.start(ring_unbound, 5)
    engine.run_until_idle()
    assert handle.result() == 10
    assert activity_events(handle.history()) == activity_events(stepper.history)
    engine.close()


# -- the property: same attempts, same events ---------------------------------------------------

Step = tuple[
    str, int
]  # ("ok", value) | ("flaky" | "type" | "nonretryable" | "fatal" | "unencodable", _)

STEPS = st.one_of(
    st.tuples(st.just("ok"), st.integers(-5, 5)),
    st.tuples(
        st.sampled_from(["flaky", "type", "nonretryable", "fatal", "unencodable"]),
        st.just(0),
    ),
)
POLICIES = st.one_of(
    st.none(),
    st.builds(
        fg.RetryPolicy,
        max_attempts=st.integers(1, 4),
        initial_interval=st.sampled_from([0.0, 1.0, 2.5]),
        backoff=st.sampled_from([1.0, 2.0]),
        non_retryable=st.sampled_from([(), (Fatal,), ("TypeError",)]),
    ),
)


def perform(script: Iterator[Step], amount: int) -> object:
    kind, value = next(script, ("ok", 0))
    match kind:
        case "ok":
            return amount + value
        case "flaky":
            raise Flaky("flaky")
        case "type":
            raise TypeError("the activity's own TypeError")
        case "nonretryable":
            raise fg.NonRetryableError("stop")
        case "fatal":
            raise Fatal("fatal")
    return lambda: amount  # "unencodable": a result that cannot be stored


@attrs.define
class Scenario:
    """An activity declared with *policy*, called the way *how* says, with its parts."""

    how: str
    policy: fg.RetryPolicy | None
    script: list[Step]
    flow: Callable[..., Any] = attrs.field(init=False)
    registered: list[object] = attrs.field(init=False)
    state: dict[str, Iterator[Step]] = attrs.field(init=False, factory=dict)

    def build(self) -> Scenario:
        state = self.state
        state["script"] = iter(self.script)

        @fg.activity(name="test_attempt_outcome.charge", retry=self.policy)
        def charge(amount: int) -> object:
            return perform(state["script"], amount)

        class Bank:
            @fg.activity(name="test_attempt_outcome.Bank.charge", retry=self.policy)
            def charge(self, amount: int) -> object:
                return perform(state["script"], amount)

        bank = Bank()
        target: Any = {
            "function": charge,
            "by_name": "test_attempt_outcome.charge",
            "bound_method": bank.charge,
            "unbound_method": Bank.charge,
        }[self.how]
        self.registered = [bank] if "method" in self.how else [charge]

        def flow(amount: int) -> fg.Workflow[object]:
            try:
                return (yield fg.call(target, amount))
            except fg.ActivityError as exc:
                return f"gave up: {exc.info.type}"

        self.flow = flow
        return self

    def rewind(self) -> None:
        self.state["script"] = iter(self.script)


def activity_events(history: list[fg.Event]) -> list[fg.Event]:
    """The attempts' outcomes, tracebacks aside (their frames differ by runner)."""
    kinds = (fg.ActivityCompleted, fg.ActivityAttemptFailed, fg.ActivityFailed)
    return [
        attrs.evolve(e, error=attrs.evolve(e.error, traceback=""))
        if not isinstance(e, fg.ActivityCompleted)
        else e
        for e in history
        if isinstance(e, kinds)
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    how=st.sampled_from(["function", "by_name", "bound_method", "unbound_method"]),
    policy=POLICIES,
    default=POLICIES,
    script=st.lists(STEPS, max_size=5),
)
def test_engine_and_stepper_record_the_same_events_for_the_same_attempts(
    how: str,
    policy: fg.RetryPolicy | None,
    default: fg.RetryPolicy | None,
    script: list[Step],
) -> None:
    scenario = Scenario(how, policy, script).build()
    engine = fg.Engine(
        store=MemoryStore(),
        clock=ManualClock(),
        activities=scenario.registered,
        retry=default,
    )
    try:
        handle = engine.start(scenario.flow, 10)
        engine.run_until_idle()
        in_production = handle.history()
        assert handle.status() == "completed"
    finally:
        engine.close()

    scenario.rewind()
    stepper = fg.Stepper.create(
        scenario.flow, [10], activities=scenario.registered, retry=default
    )
    stepper.next()
    stepper.run()
    assert stepper.status is fg.RunStatus.COMPLETED
    assert activity_events(stepper.history) == activity_events(in_production)
    assert activity_events(in_production)  # the activity ran at least once
