"""Which code runs for an activity in a test: registered fakes and `Engine.override_activity`.

A test replaces an activity by its registered name. The fake runs wherever the workflow
calls the activity (by function, by name, or a method named on its class), under the real
activity's options (retry policy, timeout), so the test sees production's retries; the
history records the real name.
"""

from __future__ import annotations

from typing import Any

import pytest

import flowgen as fg
from flowgen.testing import ManualClock

CHARGES: list[str] = []


@fg.activity(
    name="override.charge",
    retry=fg.RetryPolicy(max_attempts=3, initial_interval=1.0),
)
def charge(order_id: str, amount: int) -> str:
    CHARGES.append(order_id)  # the real thing: a test must never get here
    return f"real-receipt-{order_id}"


@fg.workflow(name="override.order")
def order(order_id: str) -> fg.Workflow[str]:
    return (yield fg.call(charge, order_id, 150))


@fg.workflow(name="override.order_by_name")
def order_by_name(order_id: str) -> fg.Workflow[str]:
    return (yield fg.call("override.charge", order_id, 150))


class Bank:
    @fg.activity(name="override.Bank.pay")
    def pay(self, order_id: str) -> str:
        CHARGES.append(order_id)
        return f"bank-{order_id}"


@fg.workflow(name="override.pay")
def pay(order_id: str) -> fg.Workflow[str]:
    return (yield fg.call(Bank.pay, order_id))


@pytest.fixture(autouse=True)
def _no_real_charges() -> Any:
    CHARGES.clear()
    yield
    assert CHARGES == [], "the real activity ran"


def engine(**kwargs: Any) -> fg.Engine:
    return fg.Engine(":memory:", clock=ManualClock(), **kwargs)


def fake_charge(order_id: str, amount: int) -> str:
    return f"fake-receipt-{order_id}-{amount}"


def registered_as(name: str, fn: Any) -> Any:
    """*fn* as `Engine(activities=[...])` registers it under *name*: by qualified name."""
    fn.__qualname__ = name
    return fn


def test_a_fake_registered_under_the_activitys_name_runs_instead_of_it() -> None:
    fake = registered_as(
        "override.charge", lambda order_id, amount: f"registered-{order_id}"
    )
    with_fake = engine(activities=[fake])
    try:
        assert with_fake.start(order, "o-1").result() == "registered-o-1"
    finally:
        with_fake.close()


def test_override_activity_runs_the_fake_where_the_workflow_calls_the_function() -> (
    None
):
    e = engine()
    try:
        e.override_activity(charge, fake_charge)
        handle = e.start(order, "o-2")
        assert handle.result() == "fake-receipt-o-2-150"
        (scheduled,) = [
            ev for ev in handle.history() if isinstance(ev, fg.ActivityScheduled)
        ]
        assert scheduled.name == "override.charge"  # the history records the real name
    finally:
        e.close()


def test_override_activity_by_name_covers_calls_by_name() -> None:
    e = engine()
    try:
        e.override_activity("override.charge", fake_charge)
        assert e.start(order_by_name, "o-3").result() == "fake-receipt-o-3-150"
        assert e.start(order, "o-4").result() == "fake-receipt-o-4-150"
    finally:
        e.close()


def test_override_activity_covers_a_method_named_on_its_class() -> None:
    e = engine(activities=[Bank()])
    try:
        e.override_activity(Bank.pay, lambda order_id: f"fake-bank-{order_id}")
        assert e.start(pay, "o-5").result() == "fake-bank-o-5"
    finally:
        e.close()


def test_a_failing_fake_is_retried_under_the_real_activitys_policy() -> None:
    attempts: list[int] = []

    def declined(order_id: str, amount: int) -> str:
        attempts.append(fg.activity_info().attempt)
        raise ConnectionError("card network down")

    e = engine()
    try:
        e.override_activity(charge, declined)
        handle = e.start(order, "o-6")
        with pytest.raises(fg.WorkflowFailed):
            handle.result()
        assert attempts == [1, 2, 3]  # max_attempts=3, as @fg.activity declared
    finally:
        e.close()


def test_the_latest_override_wins() -> None:
    e = engine()
    try:
        e.override_activity(charge, fake_charge)
        e.override_activity(charge, lambda order_id, amount: "second")
        assert e.start(order, "o-7").result() == "second"
    finally:
        e.close()


def test_override_activity_refuses_bad_input_before_anything_changes() -> None:
    e = engine()
    try:
        with pytest.raises(fg.UnknownActivity, match=r"override\.chrage"):
            e.override_activity("override.chrage", fake_charge)
        with pytest.raises(TypeError, match="fake"):
            e.override_activity(charge, "not a function")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="no function at all"):
            e.override_activity(42, fake_charge)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="is a workflow"):
            e.override_activity(order, fake_charge)
        _, runs = e.registry.resolve(fg.call(charge, "o-8", 150))
        assert runs is charge  # nothing was overridden
    finally:
        e.close()


def test_the_stepper_runs_an_activity_registered_with_it_by_name() -> None:
    fake = registered_as(
        "override.charge", lambda order_id, amount: f"stepped-{order_id}"
    )
    stepper = fg.Stepper.create(order, ["o-9"], activities=[fake])
    stepper.next()
    stepper.run()
    assert stepper.result == "stepped-o-9"


def test_override_activity_applies_on_a_background_engines_activity_threads() -> None:
    with fg.Engine(store=fg.MemoryStore()) as background:
        background.override_activity(charge, fake_charge)
        handle = background.start(order, "o-10")
        assert handle.result(timeout=60) == "fake-receipt-o-10-150"  # a hang guard
