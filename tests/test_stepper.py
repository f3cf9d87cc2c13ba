"""The Stepper: running a workflow by hand, one command at a time, with no engine."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import attrs
import pytest

import flowgen as fg
from flowgen._core.interpreter import Interpreter
from flowgen._runtime.clock import MANUAL_EPOCH, ManualClock
from flowgen._stores.codec import CODEC
from tests import workflows as w

T0 = datetime(2031, 3, 7, 9, 26, 53, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# Interpreter and codec fixes found while building the Stepper.


def _mutates_what_it_receives(items: list[str]) -> fg.Workflow[list[str]]:
    items.append("changed by the workflow")
    got = yield fg.wait_signal("more")
    got.append("changed too")
    yield fg.sleep(1)
    return items


def test_a_workflow_mutating_a_received_value_leaves_the_recorded_events_unchanged() -> (
    None
):
    started = fg.WorkflowStarted(
        at=T0, workflow_id="w", run_id="r", name="m", args=[["a"]]
    )
    signal = fg.SignalReceived(at=T0, name="more", payload=["b"], index=0)
    interp = Interpreter(_mutates_what_it_receives, codec=CODEC)
    interp.feed(started)
    interp.feed(signal)
    assert started.args == [["a"]]
    assert signal.payload == ["b"]


def test_object_nested_in_a_type_hint_decodes_as_plain_json() -> None:
    assert CODEC.decode([1, "a"], list[object]) == [1, "a"]
    assert CODEC.decode({"k": [None]}, dict[str, object]) == {"k": [None]}
    assert CODEC.decode([1, None], tuple[object, ...]) == (1, None)


def _versioned() -> fg.Workflow[int]:
    yield fg.call("first")
    v = yield fg.get_version("change", fg.DEFAULT_VERSION, 1)
    yield fg.side_effect(lambda: 1, name="token")
    return v


def test_partial_replay_decides_get_version_as_the_recorded_run_did() -> None:
    # Recorded before get_version existed: after "first" comes the side effect, an
    # *incoming* event, so a history cut after outcome 1 would not show that the run went
    # past the get_version, and a plain prefix replay would take the new branch.
    history: list[fg.Event] = [
        fg.WorkflowStarted(at=T0, workflow_id="w", run_id="r", name="_versioned"),
        fg.ActivityScheduled(at=T0, seq=0, name="first"),
        fg.ActivityCompleted(at=T0, seq=0, value=None),
        fg.SideEffectRecorded(at=T0, seq=1, name="token", value=1),
        fg.WorkflowCompleted(at=T0, result=fg.DEFAULT_VERSION),
    ]
    interp = Interpreter(_versioned, codec=CODEC)
    step = interp.replay(history, outcomes=1)
    assert step.events == ()
    assert interp.frame_locals()["v"] == fg.DEFAULT_VERSION
    assert interp.pending == {1: fg.side_effect(lambda: 1, name="token")}
    # The whole history still replays the same way.
    assert fg.replay(_versioned, history, codec=CODEC).status is fg.RunStatus.COMPLETED


# ---------------------------------------------------------------------------------------------
# Sample workflows (local: the Stepper's own behaviour, not the scenarios).


@attrs.frozen
class Price:
    amount: int
    currency: str = "EUR"


class CardDeclined(Exception):
    pass


def fetch_price(item: int) -> Price:
    return Price(item * 10)


def charge(price: Price) -> str:
    assert isinstance(price, Price), "the activity sees the attrs class, not a dict"
    return f"r-{price.amount}"


def refund(price: Price) -> None:
    assert isinstance(price, Price)


def order_flow(item: int) -> fg.Workflow[str]:
    price = yield from fg.call(fetch_price, item)
    if price.amount > 100:
        yield from fg.sleep(60)  # cooling-off period
    try:
        receipt = yield from fg.call(charge, price)
    except fg.ActivityError:
        yield from fg.call(refund, price)
        raise
    return receipt


def test_a_new_stepper_has_not_started_the_workflow() -> None:
    stepper = fg.Stepper(order_flow, 7)
    assert stepper.status is fg.RunStatus.NEW
    assert stepper.command is None
    assert stepper.history == []
    assert "not started" in repr(stepper)


def test_next_starts_the_run_and_returns_the_first_command() -> None:
    stepper = fg.Stepper(order_flow, 7)
    assert stepper.next() == fg.call(fetch_price, 7)
    assert stepper.status is fg.RunStatus.WAITING
    assert stepper.next() == fg.call(fetch_price, 7)  # no step taken
    started = stepper.history[0]
    assert isinstance(started, fg.WorkflowStarted)
    assert (started.workflow_id, started.run_id, started.at) == (
        "stepper-order_flow",
        "run-1",
        MANUAL_EPOCH,
    )


def test_send_steps_the_workflow_like_a_generator() -> None:
    stepper = fg.Stepper(order_flow, 15)
    assert stepper.next() == fg.call(fetch_price, 15)
    assert stepper.send(Price(150)) == fg.sleep(60)
    assert stepper.send(None) == fg.call(charge, Price(150))
    assert stepper.send("r-150") is None
    assert stepper.status is fg.RunStatus.COMPLETED
    assert stepper.result == "r-150"


def test_throw_fails_an_activity_into_the_workflows_except_block() -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    stepper.send(Price(70))
    assert stepper.throw(CardDeclined("no")) == fg.call(refund, Price(70))
    failed = stepper.history[-2]
    assert isinstance(failed, fg.ActivityFailed)
    assert (failed.error.type, failed.error.message, failed.attempt) == (
        "CardDeclined",
        "no",
        1,
    )
    assert stepper.send(None) is None
    assert stepper.status is fg.RunStatus.FAILED
    assert stepper.error is not None and stepper.error.type == "ActivityError"


def test_an_attrs_value_sent_in_arrives_as_that_class() -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    stepper.send(Price(70))
    assert stepper.locals["price"] == Price(70)
    assert type(stepper.locals["price"]) is Price
    completed = stepper.history[2]
    assert isinstance(completed, fg.ActivityCompleted)
    assert completed.value == {
        "amount": 70,
        "currency": "EUR",
    }  # the history holds JSON


def test_run_performs_activities_and_the_attrs_result_comes_back_as_that_class() -> (
    None
):
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    assert stepper.run() == fg.call(charge, Price(70))
    assert type(stepper.locals["price"]) is Price
    assert stepper.run() is None  # charge() asserts it received a Price
    assert stepper.result == "r-70"


def test_a_value_that_cannot_be_encoded_is_refused_and_nothing_is_recorded() -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    before = stepper.history
    with pytest.raises(TypeError, match="value sent to activity 'fetch_price'"):
        stepper.send(object())
    assert stepper.history == before
    assert stepper.command == fg.call(fetch_price, 7)


def wants_a_callback(item: int, callback: object) -> fg.Workflow[None]:
    yield fg.sleep(1)


def test_a_workflow_argument_that_cannot_be_encoded_is_a_type_error_naming_it() -> None:
    with pytest.raises(
        TypeError, match="argument 'callback' of workflow 'wants_a_callback'"
    ):
        fg.Stepper(wants_a_callback, 1, lambda: None)
    with pytest.raises(TypeError, match="argument 'callback'"):
        fg.Stepper(wants_a_callback, 1, callback=object())


def test_send_to_a_seq_that_is_not_pending_is_a_value_error() -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    with pytest.raises(
        ValueError, match=r"seq 5 is not pending.*seq 0: activity 'fetch_price'"
    ):
        stepper.send(1, seq=5)


def test_stepping_a_run_that_ended_is_a_runtime_error() -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    stepper.run()
    stepper.run()
    with pytest.raises(RuntimeError, match="nothing is pending: the run is completed"):
        stepper.send("again")


def test_a_timer_takes_no_value_and_a_side_effect_cannot_fail() -> None:
    stepper = fg.Stepper(order_flow, 15)
    stepper.next()
    stepper.send(Price(150))
    with pytest.raises(TypeError, match="takes no value"):
        stepper.send(5)
    with pytest.raises(TypeError, match="cannot fail"):
        stepper.throw(ValueError("no"))
    with pytest.raises(TypeError, match="exception instance"):
        stepper.throw("no")  # type: ignore[arg-type]


# -- time, timers and signals -----------------------------------------------------------------


def approval(claim: str) -> fg.Workflow[str]:
    now = yield from fg.current_time()
    try:
        decision = yield from fg.wait_signal("decision", timeout=timedelta(days=1))
    except fg.SignalTimeout:
        decision = "timed out"
    later = yield from fg.current_time()
    return f"{claim}: {decision} after {(later - now).total_seconds():g}s"


def test_fire_timer_moves_the_clock_to_the_timers_due_time() -> None:
    stepper = fg.Stepper(order_flow, 15)
    stepper.next()
    stepper.send(Price(150))
    stepper.fire_timer()
    fired = stepper.history[-2]
    assert isinstance(fired, fg.TimerFired)
    assert fired.at == MANUAL_EPOCH + timedelta(seconds=60)
    assert stepper.now == MANUAL_EPOCH + timedelta(seconds=60)


def test_advance_moves_the_time_of_the_events_that_follow() -> None:
    stepper = fg.Stepper(approval, "c-1")
    stepper.next()
    stepper.advance(timedelta(hours=2))
    assert stepper.signal("decision", "approved") is None
    assert stepper.result == "c-1: approved after 7200s"


def test_signal_timeout_is_thrown_at_the_wait_and_the_clock_jumps_to_the_deadline() -> (
    None
):
    stepper = fg.Stepper(approval, "c-2")
    stepper.next()
    stepper.throw(fg.SignalTimeout("decision"))
    assert isinstance(stepper.history[-2], fg.SignalTimedOut)
    assert stepper.result == "c-2: timed out after 86400s"


def test_a_signal_wait_fails_only_by_timing_out() -> None:
    stepper = fg.Stepper(approval, "c-3")
    stepper.next()
    with pytest.raises(TypeError, match="can only time out"):
        stepper.throw(ValueError("no"))


def two_signals() -> fg.Workflow[list[object]]:
    first = yield fg.wait_signal("x")
    second = yield fg.wait_signal("x")
    return [first, second]


def test_signals_sent_before_the_wait_are_buffered_in_order_with_their_index() -> None:
    stepper = fg.Stepper(two_signals)
    stepper.next()
    stepper.signal("other", 0)
    stepper.send("a")  # resolves the wait: a signal named like the wait
    stepper.signal("x", "b")
    assert [
        (e.name, e.index) for e in stepper.history if isinstance(e, fg.SignalReceived)
    ] == [("other", 0), ("x", 1), ("x", 2)]
    assert stepper.result == ["a", "b"]


def never_times_out() -> fg.Workflow[object]:
    return (yield fg.wait_signal("x"))


def test_timing_out_a_wait_without_a_timeout_is_a_value_error() -> None:
    stepper = fg.Stepper(never_times_out)
    stepper.next()
    with pytest.raises(ValueError, match="has no timeout"):
        stepper.throw(fg.SignalTimeout("x"))


# -- cancellation, sagas and locals -----------------------------------------------------------


def book(trip: str) -> str:
    return f"hotel-{trip}"


def cancel_booking(booking: str) -> None:
    pass


def trip_saga(trip: str) -> fg.Workflow[str]:
    saga = fg.Saga()
    try:
        hotel = yield from fg.call(book, trip)
        saga.add(fg.call(cancel_booking, hotel))
        yield fg.wait_signal("confirm")
        return hotel
    except Exception:
        yield from saga.compensate()
        raise


def test_throw_cancelled_requests_cancellation_and_the_saga_rolls_back() -> None:
    stepper = fg.Stepper(trip_saga, "t-1")
    stepper.next()
    stepper.run()
    assert stepper.throw(fg.Cancelled("changed my mind")) == fg.call(
        cancel_booking, "hotel-t-1"
    )
    assert any(isinstance(e, fg.CancelRequested) for e in stepper.history)
    # Inside `yield from saga.compensate()`, locals are still the workflow function's.
    assert stepper.locals["hotel"] == "hotel-t-1"
    assert "test_stepper.py:" in stepper.yield_site
    stepper.run()
    assert stepper.status is fg.RunStatus.CANCELLED
    assert stepper.error is not None and stepper.error.message == "changed my mind"


def test_terminate_ends_the_run_without_running_workflow_code() -> None:
    stepper = fg.Stepper(trip_saga, "t-2")
    stepper.next()
    stepper.terminate("ops")
    assert stepper.status is fg.RunStatus.TERMINATED
    assert stepper.command is None


# -- run(): performing commands for real -------------------------------------------------------


async def fetch_async(item: int) -> Price:
    await asyncio.sleep(0)
    return Price(item)


def uses_async(item: int) -> fg.Workflow[Price]:
    return (yield from fg.call(fetch_async, item))


def test_run_performs_an_async_activity_in_a_fresh_event_loop() -> None:
    stepper = fg.Stepper(uses_async, 3)
    stepper.next()
    assert stepper.run() is None
    assert stepper.result == Price(3)


def test_run_performs_an_async_activity_from_inside_a_running_loop() -> None:
    # A Jupyter cell runs inside an event loop, where asyncio.run() would refuse.
    async def cell() -> object:
        stepper = fg.Stepper(uses_async, 4)
        stepper.next()
        stepper.run()
        return stepper.result

    assert asyncio.run(cell()) == Price(4)


class Flaky(Exception):
    pass


class Inventory:
    """An object holding resources; its activity is a bound method."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[fg.ActivityInfo] = []

    @fg.activity(
        name="test_stepper.reserve",
        retry=fg.RetryPolicy(max_attempts=3, initial_interval=5),
    )
    def reserve(self, sku: str) -> int:
        self.seen.append(fg.activity_info())
        if self.failures:
            self.failures -= 1
            raise Flaky(f"try again ({self.failures} left)")
        return 42


INVENTORY = Inventory(failures=0)


def reserve_flow(sku: str) -> fg.Workflow[int]:
    return (yield from fg.call(INVENTORY.reserve, sku))


def test_run_honours_the_retry_policy_and_records_each_failed_attempt() -> None:
    INVENTORY.failures, INVENTORY.seen = 2, []
    stepper = fg.Stepper(reserve_flow, "sku-1")
    stepper.next()
    assert stepper.run() is None
    assert stepper.result == 42
    attempts = [e for e in stepper.history if isinstance(e, fg.ActivityAttemptFailed)]
    assert [(e.attempt, e.retry_at - e.at) for e in attempts] == [
        (1, timedelta(seconds=5)),
        (2, timedelta(seconds=10)),
    ]
    assert stepper.now == MANUAL_EPOCH + timedelta(seconds=15)  # no real sleeping
    assert [i.attempt for i in INVENTORY.seen] == [1, 2, 3]
    assert {i.idempotency_key for i in INVENTORY.seen} == {
        "stepper-reserve_flow/run-1/0"
    }


def test_run_gives_up_when_the_retries_are_spent() -> None:
    INVENTORY.failures = 5
    stepper = fg.Stepper(reserve_flow, "sku-2")
    stepper.next()
    stepper.run()
    assert stepper.status is fg.RunStatus.FAILED
    failed = stepper.history[-2]
    assert isinstance(failed, fg.ActivityFailed)
    assert (failed.attempt, failed.error.type) == (3, "Flaky")


def test_run_without_retries_fails_at_the_first_error() -> None:
    INVENTORY.failures = 1
    stepper = fg.Stepper(reserve_flow, "sku-3")
    stepper.next()
    stepper.run(retries=False)
    assert stepper.status is fg.RunStatus.FAILED
    assert not any(isinstance(e, fg.ActivityAttemptFailed) for e in stepper.history)


def test_fail_attempt_records_a_retry_and_keeps_the_activity_pending() -> None:
    stepper = fg.Stepper(reserve_flow, "sku-4")
    stepper.next()
    assert stepper.fail_attempt(Flaky("x"), retry_after=30) == fg.call(
        INVENTORY.reserve, "sku-4"
    )
    stepper.send(7)
    completed = stepper.history[-2]
    assert isinstance(completed, fg.ActivityCompleted)
    assert (completed.attempt, completed.at) == (
        2,
        MANUAL_EPOCH + timedelta(seconds=30),
    )


def shout(token: str) -> str:  # not decorated: known only where it is registered
    return token.upper()


def wants_a_token() -> fg.Workflow[str]:
    token = yield from fg.side_effect(lambda: "tok-1", name="token")
    result = yield from fg.call("shout", token)
    return f"{token}/{result}"


def test_run_records_a_side_effect_and_refuses_an_unknown_activity_called_by_name() -> (
    None
):
    stepper = fg.Stepper(wants_a_token)
    stepper.next()
    assert stepper.run() == fg.call("shout", "tok-1")
    with pytest.raises(fg.UnknownActivity, match="'shout'"):
        stepper.run()
    assert stepper.send("ok") is None
    assert stepper.result == "tok-1/ok"


def test_run_finds_activities_called_by_name_in_the_given_registry() -> None:
    stepper = fg.Stepper.create(wants_a_token, activities=[shout])
    stepper.next()
    stepper.run()
    stepper.run()
    assert stepper.result == "tok-1/TOK-1"


def test_run_cannot_perform_a_signal_wait() -> None:
    stepper = fg.Stepper(never_times_out)
    stepper.next()
    with pytest.raises(TypeError, match="run\\(\\) cannot perform signal wait 'x'"):
        stepper.run()


# -- gather, children and signals to send -------------------------------------------------------


def child_flow(n: int) -> fg.Workflow[int]:
    yield fg.sleep(1)
    return n * 2


def parent_flow(n: int) -> fg.Workflow[tuple[object, ...]]:
    both = yield fg.gather(fg.child(child_flow, n), fg.send_signal("other", "ping", n))
    try:
        yield fg.child(child_flow, n + 1)
    except fg.ChildWorkflowError as exc:
        return (*both, exc.child_id)
    return both


def test_gather_children_and_signal_sends_are_resolved_by_seq() -> None:
    stepper = fg.Stepper(parent_flow, 5)
    stepper.next()
    assert stepper.pending == {
        0: fg.child(child_flow, 5),
        1: fg.send_signal("other", "ping", 5),
    }
    stepper.send(None, seq=1)  # the signal was delivered
    assert isinstance(stepper.history[-1], fg.SignalSent)
    assert stepper.send(10) == fg.child(child_flow, 6)
    assert stepper.throw(ValueError("child broke")) is None
    failed = next(e for e in stepper.history if isinstance(e, fg.ChildFailed))
    assert failed.child_id == "stepper-parent_flow/2"
    assert stepper.result == (10, None, "stepper-parent_flow/2")  # decoded as annotated


def test_a_signal_send_can_fail() -> None:
    stepper = fg.Stepper(parent_flow, 5)
    stepper.next()
    stepper.throw(fg.SignalSendError(fg.ErrorInfo("SignalSendError", "gone")), seq=1)
    assert [type(e) for e in stepper.history[-3:]] == [
        fg.SignalSendFailed,
        fg.CommandCancelled,  # the gather's other branch
        fg.WorkflowErrored,
    ]
    assert stepper.status is fg.RunStatus.FAILED


# -- fork, from_history, check_replay ------------------------------------------------------------


def test_fork_replays_the_first_k_outcomes_and_never_changes_the_original() -> None:
    original = fg.Stepper(order_flow, 15)
    original.next()
    original.send(Price(150))
    original.send(None)
    original.send("r-150")
    before = original.history
    fork = original.fork(1)  # after the price, before the timer fired
    assert fork.command == fg.sleep(60)
    assert fork.history == before[: len(fork.history)]
    assert fork.locals["price"] == Price(150)
    fork.fire_timer()
    fork.throw(CardDeclined("no"))
    fork.send(None)
    assert fork.status is fg.RunStatus.FAILED
    assert original.history == before
    assert original.result == "r-150"


def test_fork_of_zero_outcomes_waits_for_a_different_first_outcome() -> None:
    original = fg.Stepper(order_flow, 15)
    original.next()
    original.send(Price(150))
    fork = original.fork(0)
    assert fork.send(Price(20)) == fg.call(charge, Price(20))
    assert original.command == fg.sleep(60)
    with pytest.raises(ValueError, match="between 0 and 1"):
        original.fork(2)


def test_a_fork_cannot_reach_the_original_through_a_mutated_payload() -> None:
    original = fg.Stepper(_mutates_what_it_receives, ["a"])
    original.next()
    original.signal("more", ["b"])
    fork = original.fork()
    assert fork.locals["items"] == ["a", "changed by the workflow"]
    assert original.history[0].args == [["a"]]  # type: ignore[union-attr]


def test_from_history_starts_at_the_beginning_and_travels_both_ways() -> None:
    recorded = fg.Stepper(order_flow, 15)
    recorded.next()
    for outcome in (Price(150), None, "r-150"):
        recorded.send(outcome)
    replay = fg.Stepper.from_history(order_flow, recorded.history)
    assert (replay.position, replay.outcomes) == (0, 3)
    assert replay.command == fg.call(fetch_price, 15)
    assert isinstance(replay.next_outcome, fg.ActivityCompleted)
    assert replay.forward() == fg.sleep(60)
    assert replay.locals["price"] == Price(150)
    replay.goto(3)
    assert replay.result == "r-150"
    assert replay.history == recorded.history
    assert replay.back() == fg.call(charge, Price(150))
    assert replay.position == 2
    with pytest.raises(IndexError):
        replay.goto(4)
    assert "position 2/3" in repr(replay)


def test_from_history_takes_no_new_outcomes_but_can_fork_from_where_it_is() -> None:
    recorded = fg.Stepper(order_flow, 15)
    recorded.next()
    recorded.send(Price(150))
    replay = fg.Stepper.from_history(order_flow, recorded.history)
    with pytest.raises(RuntimeError, match=r"use \.fork"):
        replay.send(Price(1))
    fork = replay.fork()  # at position 0
    assert fork.send(Price(1)) == fg.call(charge, Price(1))
    with pytest.raises(RuntimeError, match="from_history"):
        fork.forward()


def order_flow_changed(item: int) -> fg.Workflow[str]:
    price = yield from fg.call(fetch_price, item)
    yield from fg.call(refund, price)  # new code, without get_version
    return "x"


def test_from_history_finds_a_divergence_at_the_step_where_it_happens() -> None:
    recorded = fg.Stepper(order_flow, 15)
    recorded.next()
    recorded.send(Price(150))
    replay = fg.Stepper.from_history(order_flow_changed, recorded.history)
    with pytest.raises(
        fg.NonDeterminismError, match=r"timer_started at seq 1.*activity .refund."
    ):
        replay.forward()


def test_check_replay_returns_status_result_and_what_is_pending() -> None:
    stepper = fg.Stepper(order_flow, 15)
    stepper.next()
    stepper.send(Price(150))
    in_flight = fg.check_replay(order_flow, stepper.history)
    assert in_flight.status is fg.RunStatus.WAITING
    assert in_flight.pending == {1: fg.sleep(60)}
    stepper.send(None)
    stepper.send("r-150")
    done = fg.check_replay(order_flow, stepper.history)
    assert (done.status, done.result, done.error) == (
        fg.RunStatus.COMPLETED,
        "r-150",
        None,
    )


def test_check_replay_raises_on_divergence_and_on_corrupt_histories() -> None:
    stepper = fg.Stepper(order_flow, 15)
    stepper.next()
    stepper.send(Price(150))
    with pytest.raises(fg.NonDeterminismError):
        fg.check_replay(order_flow_changed, stepper.history)
    with pytest.raises(fg.HistoryCorruptError):
        fg.check_replay(order_flow, stepper.history[1:])


def batches(start: int, total: int = 0) -> fg.Workflow[int]:
    value = yield from fg.call(fetch_price, start)
    total += value.amount
    if start < 2:
        yield from fg.continue_as_new(start + 1, total)
    return total


def test_next_run_continues_a_run_that_continued_as_new() -> None:
    first = fg.Stepper(batches, 1)
    first.next()
    first.run()
    assert first.status is fg.RunStatus.CONTINUED_AS_NEW
    second = first.next_run()
    assert second.next() == fg.call(fetch_price, 2)
    second.run()
    assert second.result == 30
    assert (second.workflow_id, second.run_id) == ("stepper-batches", "run-2")
    with pytest.raises(RuntimeError, match="no next run"):
        second.next_run()


def test_repr_shows_the_status_the_pending_command_and_the_last_events() -> None:
    stepper = fg.Stepper(order_flow, 15)
    stepper.next()
    stepper.send(Price(150))
    text = repr(stepper)
    assert text.startswith("<Stepper order_flow(15) waiting at ")
    assert "pending seq 1: StartTimer(seconds=60.0)" in text
    assert "activity_completed seq=0 value={'amount': 150, 'currency': 'EUR'}" in text
    stepper.send(None)
    stepper.send("r-150")
    assert "result: 'r-150'" in repr(stepper)


def test_history_is_a_copy() -> None:
    stepper = fg.Stepper(order_flow, 15)
    stepper.next()
    stepper.history.clear()
    assert len(stepper.history) == 2


def test_a_stepper_renders_itself_in_jupyter() -> None:
    stepper = fg.Stepper(order_flow, 15)
    stepper.next()
    stepper.send(Price(150))
    html = stepper._repr_html_()
    assert "order_flow" in html
    assert "waiting" in html
    assert "seq 1" in html


def test_run_records_an_unencodable_result_as_a_non_retryable_failure() -> None:
    def fetch_price(item: int) -> object:  # shadows the module's: returns a lambda
        return lambda: item

    def flow() -> fg.Workflow[object]:
        return (yield fg.call(fetch_price, 1))

    stepper = fg.Stepper(flow)
    stepper.next()
    stepper.run()
    failed = stepper.history[-2]
    assert isinstance(failed, fg.ActivityFailed)
    assert (failed.attempt, failed.error.type, failed.error.non_retryable) == (
        1,
        "TypeError",
        True,
    )
    assert "result of activity" in failed.error.message


def sleeps_then_signals() -> fg.Workflow[str]:
    yield fg.on_query("stage", lambda: "sleeping")
    yield fg.gather(fg.sleep(10), fg.sleep(5))
    yield fg.send_signal("other", "done")
    return "ok"


def test_run_fires_timers_earliest_first_and_records_signals_as_sent() -> None:
    stepper = fg.Stepper(sleeps_then_signals)
    stepper.next()
    assert stepper.query("stage") == "sleeping"
    assert stepper.seq == 0
    with pytest.raises(TypeError, match="fail_attempt\\(\\) is for activities"):
        stepper.fail_attempt(ValueError("x"))
    stepper.fire_timer()  # the 5 s timer (seq 1) is due first
    assert stepper.pending == {0: fg.sleep(10)}
    assert stepper.now == MANUAL_EPOCH + timedelta(seconds=5)
    assert stepper.run() == fg.send_signal("other", "done")
    assert stepper.run() is None
    assert isinstance(stepper.history[-2], fg.SignalSent)
    with pytest.raises(RuntimeError, match="no timer is pending"):
        stepper.fire_timer()


def test_fire_timer_refuses_a_seq_that_is_not_a_timer() -> None:
    stepper = fg.Stepper(never_times_out)
    stepper.next()
    with pytest.raises(TypeError, match="not a timer"):
        stepper.fire_timer(seq=0)


def test_from_history_needs_workflow_started_first() -> None:
    with pytest.raises(fg.HistoryCorruptError, match="workflow_started"):
        fg.Stepper.from_history(order_flow, [])


def test_a_live_stepper_has_no_recording_to_travel_through() -> None:
    stepper = fg.Stepper(order_flow, 1)
    assert stepper.fork().status is fg.RunStatus.NEW  # not started: a fresh copy
    stepper.next()
    assert (stepper.recorded, stepper.next_outcome) == (None, None)
    with pytest.raises(RuntimeError, match="from_history"):
        stepper.back()


def test_create_sets_ids_and_records_yesterdays_code_under_todays_name() -> None:
    clock = ManualClock(MANUAL_EPOCH + timedelta(days=1))
    stepper = fg.Stepper.create(
        order_flow,
        [15],
        workflow_id="order-15",
        run_id="r",
        name="orders.v2",
        clock=clock,
    )
    stepper.next()
    started = stepper.history[0]
    assert isinstance(started, fg.WorkflowStarted)
    assert (started.workflow_id, started.run_id, started.name, started.at) == (
        "order-15",
        "r",
        "orders.v2",
        clock.now(),
    )
    assert stepper.clock is clock
    assert stepper.interpreter.info is not None
    assert stepper.workflow is order_flow


# ---------------------------------------------------------------------------------------------
# What the Stepper says when it is looked at or misused.


def one_argument(item: int) -> fg.Workflow[int]:
    return item
    yield  # a generator


def test_an_extra_argument_that_cannot_be_encoded_is_named_by_its_position() -> None:
    with pytest.raises(TypeError, match="positional argument 1 of workflow 'one_arg"):
        fg.Stepper.create(one_argument, [1, object()])


def token_flow() -> fg.Workflow[str]:
    token = yield fg.side_effect(lambda: "live", name="token")
    return f"got {token}"


def test_send_records_a_side_effects_value_without_calling_it() -> None:
    stepper = fg.Stepper(token_flow)
    stepper.next()
    assert stepper.send("given") is None
    assert stepper.result == "got given"
    recorded = stepper.history[1]
    assert isinstance(recorded, fg.SideEffectRecorded)
    assert (recorded.seq, recorded.name, recorded.value) == (0, "token", "given")


def test_fire_timer_on_a_run_that_ended_says_nothing_is_pending() -> None:
    stepper = fg.Stepper(token_flow)
    stepper.next()
    stepper.send("x")
    with pytest.raises(RuntimeError, match=r"no timer is pending \(pending: nothing\)"):
        stepper.fire_timer()


def test_a_recording_at_its_end_has_no_next_outcome_and_shows_its_position() -> None:
    recorded = fg.Stepper(order_flow, 15)
    recorded.next()
    for outcome in (Price(150), None, "r-150"):
        recorded.send(outcome)
    replay = fg.Stepper.from_history(order_flow, recorded.history)
    assert "(outcome 0 of 3)" in replay._repr_html_()
    assert "next recorded: t+0s activity_completed seq=0" in repr(replay)
    replay.goto(3)
    assert replay.next_outcome is None
    text = repr(replay)
    assert "position 3/3" in text
    assert "next recorded" not in text
    assert "(outcome 3 of 3)" in replay._repr_html_()


def test_repr_of_a_failed_run_shows_its_error_and_the_failed_event() -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    stepper.send(Price(70))
    stepper.throw(CardDeclined("no funds"))
    stepper.send(None)  # the refund
    text = repr(stepper)
    assert text.startswith("<Stepper order_flow(7) failed")
    assert "error: \"ActivityError: activity 'charge' failed after 1 attempt(s)" in text
    assert "activity_failed seq=1 error='CardDeclined: no funds' attempt=1" in text


def test_repr_cuts_long_arguments_and_a_continued_run_shows_no_error() -> None:
    stepper = fg.Stepper(one_argument, 10**100)
    assert repr(stepper).startswith(
        f"<Stepper one_argument({str(10**100)[:77]}...) new"
    )
    first = fg.Stepper(batches, 1)
    first.next()
    first.run()
    text = repr(first)
    assert text.startswith("<Stepper batches(1) continued_as_new\n  history: ")
    assert "error" not in text
    assert "workflow_continued_as_new args=[2, 10]" in text


def two_prices() -> fg.Workflow[int]:
    first, second = yield fg.gather(fg.call(fetch_price, 1), fg.call(fetch_price, 2))
    return first.amount + second.amount


def test_a_tuple_for_a_whole_gather_is_refused_with_one_outcome_per_branch_asked() -> (
    None
):
    stepper = fg.Stepper(two_prices)
    stepper.next()
    with pytest.raises(
        TypeError,
        match=r"waits on 2 commands at once \(gather or race\).*seq 0: activity "
        r"'fetch_price'.*seq 1: activity 'fetch_price'.*one outcome per branch: "
        r"send\(value, seq=N\)",
    ):
        stepper.send((Price(10), Price(20)))
    assert (stepper.status, len(stepper.history)) == (fg.RunStatus.WAITING, 3)
    # One outcome per branch, in any order.
    assert stepper.send(Price(20), seq=1) == fg.call(fetch_price, 1)
    assert stepper.send(Price(10)) is None
    assert stepper.result == 30


def pair() -> tuple[int, int]:
    return (1, 2)


def pair_and_sleep() -> fg.Workflow[tuple[int, int]]:
    got, _ = yield fg.gather(fg.call(pair), fg.sleep(1))
    return got


def test_a_tuple_meant_for_one_branch_goes_there_with_its_seq() -> None:
    stepper = fg.Stepper(pair_and_sleep)
    stepper.next()
    stepper.send((3, 4), seq=0)
    stepper.fire_timer()
    assert stepper.result == (3, 4)


# ---------------------------------------------------------------------------------------------
# Updates, stepped by hand.


def test_a_stepper_steps_an_update_and_its_handlers_commands() -> None:
    s = fg.Stepper(w.updatable_cart, 2)
    assert s.next() == fg.wait_signal("checkout")
    with pytest.raises(LookupError, match="no update yet"):
        s.update_result()
    s.update("add", 1)
    assert s.update_result() == 1
    with pytest.raises(fg.UpdateRejected, match="in the cart already"):
        s.update("add", 1)
    assert s.update_ids == ["update-1"]  # rejected: nothing recorded
    with pytest.raises(TypeError, match="argument 0 of update 'add'"):
        s.update("add", object())
    command = s.update("add_checked", 2, update_id="c-1")
    assert command == fg.wait_signal("checkout")  # the lowest seq still pending
    assert s.pending[1] == fg.call(w.echo, 2)
    with pytest.raises(RuntimeError, match="still running"):
        s.update_result("c-1")
    s.update("add_checked", 2, update_id="c-1")  # a known id: nothing new
    assert s.update_ids == ["update-1", "c-1"]
    s.run(seq=1)  # the handler's activity, for real
    s.fire_timer()  # its sleep
    assert s.update_result("c-1") == 2
    s.update("drop", 9)
    with pytest.raises(fg.UpdateFailed, match="ValueError") as failed:
        s.update_result()
    assert failed.value.update_id == "update-3"
    with pytest.raises(LookupError, match="no update with id 'zz'"):
        s.update_result("zz")
    assert s.signal("checkout") is None
    assert s.result == [1, 2]
    fg.check_replay(w.updatable_cart, s.history)

    # Time travel over the stepped history replays the updates; a fork may send another
    # update at the same point.
    replay = fg.Stepper.from_history(w.updatable_cart, s.history)
    replay.goto(1)  # after the first update
    assert replay.update_result("update-1") == 1
    with pytest.raises(RuntimeError, match="takes no new outcomes"):
        replay.update("add", 5)
    fork = s.fork(1)
    with pytest.raises(fg.UpdateRejected, match="in the cart already"):
        fork.update("add", 1)
    fork.update("add", 5, update_id="update-2")
    with pytest.raises(fg.UpdateRejected, match="full"):
        fork.update("add", 7)
    fork.update("drop", 5)  # update-2 is taken: the next free number
    assert fork.update_ids == ["update-1", "update-2", "update-3"]
    assert fork.update_result() == 1


@fg.workflow(name="stepper_waits_for_go")
def _waits_for_go() -> fg.Workflow[object]:
    got = yield fg.wait_signal("go")
    return got


def test_a_stepper_refuses_a_signal_name_or_reason_no_store_can_hold() -> None:
    # The engine refuses these (engine.signal, engine.cancel); a Stepper took them, so a
    # test passed on what the engine would refuse.
    stepper = fg.Stepper(_waits_for_go)
    stepper.next()
    with pytest.raises(fg.UsageError, match="signal name must be a non-empty string"):
        stepper.signal(None, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="signal name cannot be stored"):
        stepper.signal("go\udc80", 1)
    with pytest.raises(TypeError, match="cancel reason must be a str"):
        stepper.cancel(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="terminate reason must be a str"):
        stepper.terminate(5)  # type: ignore[arg-type]
    assert stepper.send(1) is None
    assert stepper.status == "completed"
