"""The engine's behaviour, driven by hand (ManualClock) and in the background (`with Engine`).

Recovery lives in ``test_engine_recovery.py``, bad input in ``test_engine_bad_input.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.codec import CODEC
from flowgen._stores.memory import MemoryStore
from tests import workflows as w
from tests.engine_workflows import (
    PLAIN_CALLS,
    Tools,
    call_hang_async,
    call_one,
    etl_in_waves,
    events_of,
    long_sleep,
    manual_engine,
    parent_catching,
    parent_not_catching,
    parent_of_named_child,
    parent_of_sleepy,
    parent_of_unknown,
    sleep_then_wait,
    sleepy_child,
    steps,
    tagged,
    three_kinds,
    wait_for,
)

MakeEngine = Callable[..., fg.Engine]


@pytest.fixture
def tools() -> Iterator[Tools]:
    tools = Tools()
    yield tools
    tools.release_all()


@pytest.fixture(params=["by_hand", "background"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_engine(mode: str, tools: Tools, tmp_path: Path) -> Iterator[MakeEngine]:
    """Engines on a ManualClock: by hand on a MemoryStore, or in the background on a
    DuckDB file (as a user would run it).

    In the background the manual clock does not jump by itself: a test moves it.
    """
    engines: list[fg.Engine] = []

    def make(**kwargs: object) -> fg.Engine:
        kwargs.setdefault("clock", ManualClock())
        kwargs.setdefault("activities", [tools])
        if mode == "background":
            path = str(tmp_path / f"engine-{len(engines)}.duckdb")
            engine = fg.Engine(path, **kwargs)  # type: ignore[arg-type]
            engine.start_background()
        else:
            kwargs.setdefault("store", MemoryStore())
            engine = fg.Engine(**kwargs)  # type: ignore[arg-type]
        engines.append(engine)
        return engine

    yield make
    tools.release_all()
    for engine in engines:
        engine.close()


def finish(handle: fg.WorkflowHandle) -> object:
    return handle.result(timeout=10)


def advance_until_done(
    engine: fg.Engine, handle: fg.WorkflowHandle, step: float = 1.0
) -> object:
    """Move a background engine's manual clock until the run closes; return its result."""
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    if not engine._running:
        return handle.result()
    deadline = time.monotonic() + 10
    while handle.status() == "running":
        assert time.monotonic() < deadline, handle.waiting_for()
        clock.advance(step)
        try:
            return handle.result(timeout=0.02)
        except TimeoutError:
            continue
    return handle.result(timeout=10)


# ---------------------------------------------------------------------------------------------
# Starting: ids and conflicts.


def test_start_with_an_id_gives_a_handle_on_that_id_and_its_result(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.start(steps, ["a", "b"], id="order-1")
    assert handle.workflow_id == "order-1"
    assert finish(handle) == ["done a", "done b"]
    assert handle.status() == "completed"
    record = engine.store.get_run("order-1")
    assert record is not None
    assert record.name == "steps"
    assert record.args == [["a", "b"]]
    assert record.run_id == handle.run_id


def test_start_without_an_id_makes_a_fresh_one_named_after_the_workflow(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    first = engine.start(steps, [])
    second = engine.start(steps, [])
    assert first.workflow_id.startswith("steps-")
    assert first.workflow_id != second.workflow_id
    assert finish(first) == finish(second) == []


def test_start_by_registered_name(make_engine: MakeEngine) -> None:
    engine = make_engine()
    assert finish(engine.start("steps", ["x"], id="by-name")) == ["done x"]


def test_start_with_a_taken_id_fails_by_default_and_changes_nothing(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.start(wait_for, "go", id="dup")
    before = handle.history()
    with pytest.raises(fg.WorkflowAlreadyExists, match=r"'dup'.*on_conflict"):
        engine.start(wait_for, "other", id="dup")
    assert handle.history() == before
    assert len(engine.list_runs()) == 1
    # A finished run's id is taken too.
    handle.signal("go", 1)
    assert finish(handle) == [1]
    with pytest.raises(fg.WorkflowAlreadyExists):
        engine.start(wait_for, "go", id="dup", on_conflict="fail")


def test_on_conflict_use_existing_returns_the_running_run(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    first = engine.start(wait_for, "go", id="shared")
    again = engine.start(wait_for, "go", id="shared", on_conflict="use_existing")
    assert again.run_id == first.run_id
    assert len(engine.list_runs()) == 1
    again.signal("go", "once")
    assert finish(first) == ["once"]
    # On a finished run too: its handle, nothing started.
    done = engine.start(wait_for, "go", id="shared", on_conflict="use_existing")
    assert done.run_id == first.run_id
    assert finish(done) == ["once"]
    assert len(engine.list_runs()) == 1


def test_on_conflict_terminate_existing_ends_the_running_run_and_starts_anew(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    old = engine.start(wait_for, "go", id="job")
    new = engine.start(wait_for, "go", id="job", on_conflict="terminate_existing")
    assert new.run_id != old.run_id
    old_record = engine.store.get_run("job", old.run_id)
    assert old_record is not None
    assert old_record.status == "terminated"
    terminated = engine.store.load_history("job", old.run_id)[-1]
    assert isinstance(terminated, fg.WorkflowTerminated)
    assert engine.get("job").run_id == new.run_id
    engine.signal("job", "go", "new run")
    assert finish(new) == ["new run"]
    # A finished run is simply followed by a new one.
    newest = engine.start(wait_for, "go", id="job", on_conflict="terminate_existing")
    assert newest.run_id not in (old.run_id, new.run_id)
    assert engine.store.get_run("job", new.run_id).status == "completed"  # type: ignore[union-attr]
    assert [r.status for r in engine.list_runs(name="wait_for")].count("running") == 1


# ---------------------------------------------------------------------------------------------
# Tags and handles.


def test_tags_given_at_start_and_set_by_the_workflow_are_merged_and_searchable(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.start(tagged, "shipping", id="t-1", tags={"team": "ops"})
    engine.start(tagged, "billing", id="t-2", tags={"team": "ops"})
    assert handle.record().tags == {"team": "ops", "stage": "shipping", "step": 1}
    advance_until_done(engine, handle)
    assert handle.record().tags == {"team": "ops", "stage": "shipping", "step": 2}
    assert [r.workflow_id for r in engine.list_runs(tags={"stage": "shipping"})] == [
        "t-1"
    ]
    assert {r.workflow_id for r in engine.list_runs(tags={"team": "ops"})} == {
        "t-1",
        "t-2",
    }


def test_get_gives_a_handle_on_an_existing_id(make_engine: MakeEngine) -> None:
    engine = make_engine()
    started = engine.start(steps, ["a"], id="known")
    handle = engine.get("known")
    assert handle.workflow_id == "known"
    assert handle.run_id == started.run_id
    assert finish(handle) == ["done a"]
    assert handle.history() == started.history()
    assert "known" in repr(handle)


# ---------------------------------------------------------------------------------------------
# Signals.


def test_a_signal_sent_before_the_wait_is_buffered_until_the_workflow_takes_it(
    make_engine: MakeEngine, mode: str
) -> None:
    engine = make_engine(clock=ManualClock(autojump=False))
    handle = engine.start(sleep_then_wait, 10.0, id="buffered")
    engine.signal("buffered", "go", {"n": 1})  # durable now; the workflow is asleep
    engine.signal("buffered", "other", "ignored")
    kinds = [type(e).__name__ for e in handle.history()]
    assert kinds == [
        "WorkflowStarted",
        "TimerStarted",
        "SignalReceived",
        "SignalReceived",
    ]
    engine.clock.advance(10)  # type: ignore[attr-defined]
    if mode == "by_hand":
        engine.run_until_idle()
    assert finish(handle) == {"n": 1}
    history = handle.history()
    received = next(
        i for i, e in enumerate(history) if isinstance(e, fg.SignalReceived)
    )
    waited = next(
        i for i, e in enumerate(history) if isinstance(e, fg.SignalWaitStarted)
    )
    assert received < waited


def test_signals_of_one_name_are_taken_in_the_order_they_arrived(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.start(wait_for, "item", 3, id="fifo")
    for n in (1, 2, 3):
        engine.signal("fifo", "item", n)
    assert finish(handle) == [1, 2, 3]
    indexes = [e.index for e in events_of(handle, fg.SignalReceived)]
    assert indexes == [0, 1, 2]


def test_signal_with_start_starts_a_missing_workflow_with_the_signal_buffered(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.signal_with_start(
        wait_for, "go", id="sws", signal="go", payload="first"
    )
    assert finish(handle) == ["first"]
    assert len(engine.list_runs()) == 1


def test_signal_with_start_signals_a_running_workflow_without_starting_another(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    started = engine.start(wait_for, "go", 2, id="sws")
    engine.signal("sws", "go", 1)
    again = engine.signal_with_start(
        wait_for, "go", 2, id="sws", signal="go", payload=2
    )
    assert again.run_id == started.run_id
    assert finish(started) == [1, 2]
    assert len(engine.list_runs()) == 1


# ---------------------------------------------------------------------------------------------
# Cancellation.


def test_cancel_propagates_to_a_running_child(make_engine: MakeEngine) -> None:
    engine = make_engine(clock=ManualClock(autojump=False))
    parent = engine.start(parent_of_sleepy, 3600.0, id="parent")
    # The child's start was committed with the parent's, before start() returned.
    (started,) = events_of(parent, fg.ChildStarted)
    child_id = started.child_id
    assert engine.get(child_id).status() == "running"
    engine.cancel("parent", "no longer needed")
    with pytest.raises(fg.WorkflowFailed) as failed:
        finish(parent)
    assert failed.value.status == "cancelled"
    child = engine.get(child_id)
    with pytest.raises(fg.WorkflowFailed) as child_failed:
        finish(child)
    assert child_failed.value.status == "cancelled"
    assert child.record().parent_id == "parent"
    assert any(isinstance(e, fg.CancelRequested) for e in child.history())


def drive_until(engine: fg.Engine, condition: Callable[[], bool]) -> None:
    """Drive a hand-driven engine one round at a time until *condition* holds."""
    for _ in range(1000):
        if condition():
            return
        engine.run_until_idle(max_steps=1)
    raise AssertionError("condition never held")


def scheduled_names(handle: fg.WorkflowHandle) -> list[str]:
    return [e.name for e in events_of(handle, fg.ActivityScheduled)]


def test_cancel_rolls_back_the_saga_and_ends_the_run_cancelled() -> None:
    engine = manual_engine()
    trip = w.Trip("ada", "Lisbon")
    handle = engine.start(w.book_trip, trip, id="trip")
    # The hotel is booked and the flight is being booked when the cancel arrives.
    drive_until(engine, lambda: "book_flight" in scheduled_names(handle))
    engine.cancel("trip", "traveller changed plans")
    engine.run_until_idle()
    with pytest.raises(fg.WorkflowFailed) as failed:
        handle.result()
    assert failed.value.status == "cancelled"
    assert handle.status() == "cancelled"
    # Only the hotel was added to the saga: the flight's step never got to its add.
    assert scheduled_names(handle) == ["book_hotel", "book_flight", "cancel_hotel"]
    cancelled = events_of(handle, fg.CommandCancelled)
    assert [e.seq for e in cancelled] == [1]
    assert isinstance(handle.history()[-1], fg.WorkflowCancelled)


def test_cancel_after_two_steps_compensates_last_in_first_out() -> None:
    engine = manual_engine()
    handle = engine.start(w.book_trip, w.Trip("ada", "Oslo"), id="trip")
    drive_until(engine, lambda: "charge_card" in scheduled_names(handle))
    engine.cancel("trip")
    engine.run_until_idle()
    assert handle.status() == "cancelled"
    assert scheduled_names(handle)[3:] == ["cancel_flight", "cancel_hotel"]
    completed = {e.seq for e in events_of(handle, fg.ActivityCompleted)}
    assert {3, 4} <= completed  # both compensations ran to completion


def test_a_failing_step_rolls_the_saga_back_and_fails_with_the_original_error() -> None:
    engine = manual_engine()
    handle = engine.start(w.book_trip, w.Trip("declined", "Rome"), id="trip")
    with pytest.raises(fg.WorkflowFailed) as failed:
        handle.result()
    assert failed.value.status == "failed"
    assert "CardDeclined" in str(failed.value.error)
    assert scheduled_names(handle)[3:] == ["cancel_flight", "cancel_hotel"]


def test_a_second_cancel_while_the_first_is_honoured_is_a_no_op(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(clock=ManualClock(autojump=False))
    handle = engine.start(w.forever_catching_cancel, id="stubborn")
    engine.cancel("stubborn")
    engine.cancel("stubborn")
    assert len(events_of(handle, fg.CancelRequested)) == 1


# ---------------------------------------------------------------------------------------------
# Queries (scenario 6).


def test_query_answers_from_the_running_workflow_while_an_activity_is_blocked(
    tools: Tools,
) -> None:
    gate = tools.gate("slow")
    with fg.Engine(store=MemoryStore(), activities=[tools], max_workers=4) as engine:
        handle = engine.start(etl_in_waves, ["a", "bb"], ["slow"], id="etl")
        tools.wait_entered("slow")  # the second wave is running on a pool thread
        before = len(handle.history())
        assert engine.query("etl", "progress") == {"done": 2, "of": 3}
        assert handle.query("progress") == {"done": 2, "of": 3}
        assert len(handle.history()) == before  # a query records nothing
        gate.set()
        assert finish(handle) == 100 + 200 + 400
        # A finished run still answers, from its replayed state.
        assert engine.query("etl", "progress") == {"done": 3, "of": 3}
        assert handle.record().tags == {"rows": 700}


def test_scenario_6_loads_run_in_parallel_on_the_activity_threads(
    tools: Tools,
) -> None:
    gates = {t: tools.gate(t) for t in ("x", "yy", "zzz")}
    with fg.Engine(store=MemoryStore(), activities=[tools], max_workers=4) as engine:
        handle = engine.start(etl_in_waves, ["x", "yy", "zzz"], [], id="fan-out")
        for table in gates:  # all three are running at once
            tools.wait_entered(table)
        for gate in gates.values():
            gate.set()
        assert finish(handle) == 600


def test_nightly_etl_scenario_runs_and_tags_its_row_count(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.start(w.nightly_etl, ["users", "orders"], id="nightly")
    assert finish(handle) == 1100
    assert handle.record().tags == {"rows": 1100}
    assert engine.query("nightly", "progress") == {"done": 2, "of": 2}


def test_a_query_without_a_handler_of_that_name_is_a_lookup_error(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    engine.start(wait_for, "go", id="q")
    with pytest.raises(LookupError):
        engine.query("q", "nope")


# ---------------------------------------------------------------------------------------------
# Retries.


def test_failed_attempts_are_events_with_attempt_numbers_and_backoff(
    make_engine: MakeEngine, tools: Tools
) -> None:
    engine = make_engine()
    tools.failures["k"] = 3
    start = engine.clock.now()
    handle = engine.start(call_one, "flaky", "k", id="retried")
    assert advance_until_done(engine, handle) == "done k"
    failed = events_of(handle, fg.ActivityAttemptFailed)
    assert [e.attempt for e in failed] == [1, 2, 3]
    # RetryPolicy(initial_interval=2, backoff=3): waits of 2, 6 and 18 seconds.
    assert [(e.retry_at - e.at).total_seconds() for e in failed] == [2, 6, 18]
    assert all(e.error.type == "Flaky" for e in failed)
    (completed,) = events_of(handle, fg.ActivityCompleted)
    assert completed.attempt == 4
    assert completed.at >= start + timedelta(seconds=26)
    assert [i.attempt for i in tools.runs_of("flaky")] == [1, 2, 3, 4]


def test_an_activity_whose_retries_are_spent_fails_the_workflow_with_activity_error(
    tools: Tools,
) -> None:
    tools.failures["k"] = 99
    engine = manual_engine(activities=[tools])
    handle = engine.start(call_one, "flaky", "k")
    with pytest.raises(fg.WorkflowFailed) as failed:
        handle.result()
    assert failed.value.error.type == "ActivityError"
    assert "after 4 attempt(s)" in failed.value.error.message
    assert "Flaky" in failed.value.error.message
    (final,) = events_of(handle, fg.ActivityFailed)
    assert final.attempt == 4
    assert len(tools.runs_of("flaky")) == 4


def test_a_non_retryable_error_fails_the_activity_at_once(
    make_engine: MakeEngine, tools: Tools
) -> None:
    engine = make_engine()
    handle = engine.start(call_one, "refuse", "k")
    with pytest.raises(fg.WorkflowFailed) as failed:
        finish(handle)
    assert "NonRetryableError" in failed.value.error.message
    (final,) = events_of(handle, fg.ActivityFailed)
    assert final.attempt == 1
    assert final.error.non_retryable
    assert events_of(handle, fg.ActivityAttemptFailed) == []
    assert len(tools.runs_of("refuse")) == 1


def test_an_error_type_the_retry_policy_names_non_retryable_fails_at_once(
    make_engine: MakeEngine, tools: Tools
) -> None:
    engine = make_engine()
    handle = engine.start(call_one, "reject", "k")
    with pytest.raises(fg.WorkflowFailed) as failed:
        finish(handle)
    assert "ValueError: k is not a valid value" in failed.value.error.message
    assert events_of(handle, fg.ActivityAttemptFailed) == []
    assert len(tools.runs_of("reject")) == 1


def test_a_slow_sync_activity_times_out_in_background_mode(tools: Tools) -> None:
    tools.gate("s")  # never opened while the engine runs: every attempt hangs
    with fg.Engine(store=MemoryStore(), activities=[tools]) as engine:
        handle = engine.start(call_one, "slow", "s", id="slow")
        with pytest.raises(fg.WorkflowFailed) as failed:
            finish(handle)
        assert "ActivityTimeout" in failed.value.error.message
        (attempt_failed,) = events_of(handle, fg.ActivityAttemptFailed)
        assert attempt_failed.attempt == 1
        assert attempt_failed.error.type == "ActivityTimeout"
        (final,) = events_of(handle, fg.ActivityFailed)
        assert final.attempt == 2
        assert "0.3 s timeout" in final.error.message
        tools.release_all()


def test_a_hanging_async_activity_times_out_once_per_attempt() -> None:
    with fg.Engine(store=MemoryStore()) as engine:
        handle = engine.start(call_hang_async, 30.0)
        with pytest.raises(fg.WorkflowFailed) as failed:
            finish(handle)
        assert "ActivityTimeout" in failed.value.error.message
        # The worker's own timeout and the engine's race; one event per attempt.
        attempts = [
            e.attempt
            for e in handle.history()
            if isinstance(e, (fg.ActivityAttemptFailed, fg.ActivityFailed))
        ]
        assert attempts == [1, 2]


# ---------------------------------------------------------------------------------------------
# Activities: plain, bound, async; activity_info.


def test_activities_may_be_plain_functions_bound_methods_and_async_functions(
    make_engine: MakeEngine, tools: Tools
) -> None:
    PLAIN_CALLS.clear()
    engine = make_engine()
    handle = engine.start(three_kinds, 1)
    assert finish(handle) == [2, "done k2", 4]
    assert PLAIN_CALLS == [1]
    (info,) = tools.runs_of("work")
    assert info.name == "Tools.work"
    assert info.workflow_id == handle.workflow_id


def test_a_method_activity_whose_object_was_not_registered_fails_clearly() -> None:
    engine = manual_engine()  # no Engine(activities=[tools])
    handle = engine.start(steps, ["a"])
    with pytest.raises(fg.WorkflowFailed) as failed:
        handle.result()
    assert "UnknownActivity" in failed.value.error.message
    assert "Engine(activities=[...])" in failed.value.error.message
    (final,) = events_of(handle, fg.ActivityFailed)
    assert final.attempt == 1  # not retried: registering cannot happen meanwhile


def test_activity_info_attempt_and_idempotency_key_are_stable_across_retries(
    make_engine: MakeEngine, tools: Tools
) -> None:
    engine = make_engine()
    tools.failures["k"] = 2
    handle = engine.start(call_one, "flaky", "k", id="keyed")
    advance_until_done(engine, handle)
    infos = tools.runs_of("flaky")
    assert [i.attempt for i in infos] == [1, 2, 3]
    assert {i.idempotency_key for i in infos} == {f"keyed/{handle.run_id}/0"}
    assert {i.seq for i in infos} == {0}
    (scheduled,) = events_of(handle, fg.ActivityScheduled)
    assert {i.scheduled_at for i in infos} == {scheduled.at}


# ---------------------------------------------------------------------------------------------
# Timers.


def test_a_30_day_sleep_finishes_at_once_under_a_manual_clock() -> None:
    clock = ManualClock()
    engine = manual_engine(clock=clock)
    start = clock.now()
    began = time.monotonic()
    handle = engine.start(long_sleep, 30.0)
    assert handle.result() == 30 * 86400
    assert time.monotonic() - began < 5
    assert clock.now() == start + timedelta(days=30)
    (timer,) = events_of(handle, fg.TimerStarted)
    (fired,) = events_of(handle, fg.TimerFired)
    assert timer.fire_at == start + timedelta(days=30)
    assert fired.at == timer.fire_at


def test_a_background_engine_fires_timers_when_the_manual_clock_moves() -> None:
    clock = ManualClock()
    with fg.Engine(store=MemoryStore(), clock=clock) as engine:
        handle = engine.start(long_sleep, 1.0)
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.1)
        clock.advance(timedelta(days=1))
        assert finish(handle) == 86400


def test_a_background_engine_fires_short_timers_on_the_system_clock() -> None:
    with fg.Engine(store=MemoryStore()) as engine:
        handle = engine.start(sleepy_child, 0.05)
        assert finish(handle) == "woke"


# ---------------------------------------------------------------------------------------------
# Children.


def test_a_child_result_returns_to_the_parent(make_engine: MakeEngine) -> None:
    engine = make_engine()
    handle = engine.start(w.parent_of_child, 5, id="p")
    assert finish(handle) == 11
    (started,) = events_of(handle, fg.ChildStarted)
    child = engine.get(started.child_id)
    assert child.record().parent_id == "p"
    assert child.record().status == "completed"
    assert finish(child) == 10


def test_a_failing_child_raises_child_workflow_error_in_the_parent(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.start(parent_catching, "boom", id="p")
    child_id, error_type, message = advance_until_done(engine, handle)  # type: ignore[misc]
    assert (error_type, message) == ("RuntimeError", "boom")
    assert engine.get(child_id).status() == "failed"


def test_an_uncaught_child_failure_fails_the_parent(make_engine: MakeEngine) -> None:
    engine = make_engine()
    handle = engine.start(parent_not_catching, "kaput", id="p")
    with pytest.raises(fg.WorkflowFailed) as failed:
        advance_until_done(engine, handle)
    assert failed.value.error.type == "ChildWorkflowError"
    assert "kaput" in failed.value.error.message


def test_a_child_id_running_for_another_parent_fails_only_the_second_start(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(clock=ManualClock(autojump=False))
    first = engine.start(parent_of_named_child, "A", "shared", id="A")
    second = engine.start(parent_of_named_child, "B", "shared", id="B")
    assert advance_until_done(engine, second) == "B: WorkflowAlreadyExists"
    engine.clock.advance(5)  # type: ignore[attr-defined]
    if not engine._running:
        engine.run_until_idle()
    assert advance_until_done(engine, first) == "woke"  # A still hears of its child
    assert engine.get("shared").record().parent_id == "A"


def test_a_child_of_an_unknown_workflow_name_fails_in_the_parent(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.start(parent_of_unknown)
    error_type, message = finish(handle)  # type: ignore[misc]
    assert error_type == "UnknownWorkflow"
    assert "no_such_workflow" in message


def test_a_hand_driven_engine_on_the_system_clock_waits_for_a_short_timer() -> None:
    engine = fg.Engine(store=MemoryStore())  # no threads, real time
    handle = engine.start(sleepy_child, 0.05)
    assert handle.result(timeout=10) == "woke"
    engine.close()


# ---------------------------------------------------------------------------------------------
# Continue-as-new (scenario 5).


def test_continue_as_new_chains_runs_with_bounded_histories(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    handle = engine.start(w.sync_customers, None, 0, 1, id="sync")
    assert advance_until_done(engine, handle) == len(w.CUSTOMERS)
    runs = engine.list_runs(name="sync_customers")
    assert sorted(r.status for r in runs) == [
        "completed",
        "continued_as_new",
        "continued_as_new",
    ]
    assert {r.workflow_id for r in runs} == {"sync"}
    assert engine.get("sync").record().status == "completed"
    for run in runs:
        history = engine.store.load_history("sync", run.run_id)
        assert len(history) <= 9  # one page per run: the history never grows
    by_start = sorted(
        runs, key=lambda r: (r.started_at, r.status != "continued_as_new")
    )
    assert [r.args[:2] for r in by_start] == [[None, 0], ["10", 10], ["20", 20]]


def test_a_long_continue_as_new_chain_keeps_every_history_small() -> None:
    engine = manual_engine()
    handle = engine.start(w.sync_customers, None, 0, 1, id="sync")
    handle.result()
    runs = engine.list_runs()
    lengths = [len(engine.store.load_history("sync", r.run_id)) for r in runs]
    assert max(lengths) <= 9
    assert sum(lengths) > max(lengths)


# ---------------------------------------------------------------------------------------------
# Scenario 3: the greeter, with send_signal.


def test_the_greeter_serves_three_askers_and_a_fourth_keeps_waiting() -> None:
    engine = manual_engine(clock=ManualClock(autojump=False))
    greeter = engine.start(w.greeter, 3, id="greeter-1")
    askers = [
        engine.start(w.ask_for_greeting, "greeter-1", name, id=f"asker-{name}")
        for name in ("Kyle", "Ana", "Bo", "Dee")
    ]
    engine.run_until_idle()
    assert greeter.result() == 3
    for asker, name in zip(askers[:3], ("Kyle", "Ana", "Bo"), strict=True):
        assert asker.result() == f"Hello, {name}!"
    assert askers[3].status() == "running"
    assert "greeting" in " ".join(askers[3].waiting_for().values())
    received = events_of(greeter, fg.SignalReceived)
    sent = events_of(greeter, fg.SignalSent)
    assert [e.payload["name"] for e in received] == ["Kyle", "Ana", "Bo", "Dee"]
    assert [e.sender for e in received] == [
        f"asker-{n}/0" for n in ("Kyle", "Ana", "Bo", "Dee")
    ]
    assert [(e.workflow_id, e.name) for e in sent] == [
        ("asker-Kyle", "greeting"),
        ("asker-Ana", "greeting"),
        ("asker-Bo", "greeting"),
    ]


def test_the_greeter_gives_up_30_seconds_after_its_last_wait() -> None:
    clock = ManualClock()
    engine = manual_engine(clock=clock)
    start = clock.now()
    greeter = engine.start(w.greeter, 3, id="greeter-2")
    assert greeter.result() == 0
    assert clock.now() == start + timedelta(seconds=30)
    assert len(events_of(greeter, fg.SignalTimedOut)) == 1


def test_signalling_a_finished_greeter_from_a_workflow_raises_signal_send_error() -> (
    None
):
    engine = manual_engine()
    greeter = engine.start(w.greeter, 0, id="greeter-3")
    assert greeter.result() == 0
    asker = engine.start(w.ask_for_greeting, "greeter-3", "Late")
    with pytest.raises(fg.WorkflowFailed) as failed:
        asker.result()
    assert failed.value.error.type == "SignalSendError"
    assert "has finished" in failed.value.error.message


# ---------------------------------------------------------------------------------------------
# Scenario 4: expense approval racing a deadline.


def test_a_decision_signalled_before_the_deadline_wins(make_engine: MakeEngine) -> None:
    engine = make_engine(clock=ManualClock(autojump=False))
    handle = engine.start(w.expense, w.Claim("ada", 12.5), id="claim-1")
    engine.clock.advance(timedelta(days=2))  # type: ignore[attr-defined]
    engine.signal("claim-1", "decision", "approved")
    assert finish(handle) == "approved"
    assert len(events_of(handle, fg.CommandCancelled)) == 1  # the deadline timer


def test_without_a_decision_the_deadline_auto_rejects_after_three_days() -> None:
    clock = ManualClock()
    engine = manual_engine(clock=clock)
    start = clock.now()
    handle = engine.start(w.expense, w.Claim("bo", 99.0), id="claim-2")
    assert handle.result() == "auto-rejected"
    assert clock.now() == start + timedelta(days=3)
    with pytest.raises(fg.WorkflowClosed):
        engine.signal("claim-2", "decision", "too late")


# ---------------------------------------------------------------------------------------------
# Scenario 7: versioning across a restart with changed code.


def test_old_runs_replay_the_old_branch_after_a_restart_with_changed_code(
    tmp_path: Path,
) -> None:
    from tests.engine_workflows import onboarding_before_change

    path = str(tmp_path / "onboarding.duckdb")
    clock = ManualClock(autojump=False)
    yesterday = fg.Engine(path, clock=clock, workflows=[onboarding_before_change])
    old = yesterday.start("onboarding", "old-user", id="onb-old")
    yesterday.run_until_idle()  # parked in its 7-day sleep
    assert scheduled_names(old) == ["create_account", "send_welcome_v1"]
    yesterday.close()

    today = fg.Engine(path, clock=ManualClock(clock.now()))  # today's `onboarding`
    new = today.start("onboarding", "new-user", id="onb-new")
    assert today.get("onb-old").result() is None
    assert new.result() is None
    assert scheduled_names(today.get("onb-old")) == [
        "create_account",
        "send_welcome_v1",
        "send_tips",
    ]
    assert scheduled_names(new) == ["create_account", "send_welcome_v2", "send_tips"]
    assert len(events_of(new, fg.VersionMarked)) == 1
    assert events_of(today.get("onb-old"), fg.VersionMarked) == []
    # Every stored onboarding history (selected with SQL) replays under today's code.
    selected = today.sql(
        "select workflow_id, run_id from workflows where name = 'onboarding'"
    ).fetchall()
    assert len(selected) == 2
    for workflow_id, run_id in selected:
        history = today.store.load_history(workflow_id, run_id)
        assert fg.replay(w.onboarding, history, codec=CODEC).status.is_closed
    today.close()


# ---------------------------------------------------------------------------------------------
# The bounded cache.


def test_a_cache_of_two_still_finishes_twenty_parked_workflows(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine(cache_size=2)
    handles = [engine.start(wait_for, "go", 2, id=f"parked-{i}") for i in range(20)]
    for round_ in range(2):
        for i in range(20):
            engine.signal(f"parked-{i}", "go", [i, round_])
    for i, handle in enumerate(handles):
        assert finish(handle) == [[i, 0], [i, 1]]
    assert len(engine._cache) <= 2


def test_an_evicted_workflow_is_rebuilt_by_replay_and_decides_the_same() -> None:
    engine = manual_engine(cache_size=1)
    a = engine.start(wait_for, "item", 2, id="a")
    b = engine.start(wait_for, "item", 2, id="b")  # evicts a
    engine.signal("a", "item", "a1")
    engine.signal("b", "item", "b1")
    engine.signal("a", "item", "a2")
    engine.signal("b", "item", "b2")
    assert a.result() == ["a1", "a2"]
    assert b.result() == ["b1", "b2"]
    for handle in (a, b):
        history = handle.history()
        interp = fg.replay(wait_for, history, codec=CODEC)
        assert interp.status is fg.RunStatus.COMPLETED


def test_the_same_edit_without_get_version_stops_the_old_run_with_a_clear_error(
    tmp_path: Path,
) -> None:
    from tests.engine_workflows import onboarding_before_change, onboarding_edited_badly

    path = str(tmp_path / "onboarding.duckdb")
    clock = ManualClock(autojump=False)
    yesterday = fg.Engine(path, clock=clock, workflows=[onboarding_before_change])
    before = yesterday.start("onboarding", "old-user", id="onb-old")
    yesterday.run_until_idle()
    before_history = before.history()
    yesterday.close()

    today = fg.Engine(path, clock=clock, workflows=[onboarding_edited_badly])
    handle = today.get("onb-old")
    assert isinstance(handle.stuck(), fg.NonDeterminismError)
    with pytest.raises(fg.NonDeterminismError) as error:
        handle.result()
    assert error.value.seq == 1
    assert "send_welcome_v1" in str(error.value)
    assert "send_welcome_v2" in str(error.value)
    assert handle.status() == "running"  # waits for a fixed deployment
    assert handle.history() == before_history  # nothing recorded after the divergence
    today.close()

    fixed = fg.Engine(path, clock=ManualClock(clock.now()))  # with get_version
    assert fixed.get("onb-old").result() is None
    fixed.close()


# ---------------------------------------------------------------------------------------------
# SQL over the DuckDB file (scenarios 5 and 8).


@pytest.fixture
def sql_engine(tmp_path: Path, tools: Tools) -> Iterator[fg.Engine]:
    engine = fg.Engine(
        str(tmp_path / "sql.duckdb"), clock=ManualClock(), activities=[tools]
    )
    yield engine
    engine.close()


def test_sql_over_workflows_shows_the_continue_as_new_chain(
    sql_engine: fg.Engine,
) -> None:
    sql_engine.start(w.sync_customers, None, 0, 1, id="sync").result()
    chain = sql_engine.sql(
        "select status, args->>'$[1]' as synced from workflows "
        "where workflow_id = 'sync' order by started_at, status = 'completed'"
    ).fetchall()
    assert chain == [
        ("continued_as_new", "0"),
        ("continued_as_new", "10"),
        ("completed", "20"),
    ]
    sizes = sql_engine.sql(
        "select count(*) from events where workflow_id = 'sync' group by run_id"
    ).fetchall()
    assert len(sizes) == 3
    assert max(n for (n,) in sizes) <= 9


def test_sql_over_activities_and_events_answers_what_failed_and_how_often(
    sql_engine: fg.Engine, tools: Tools
) -> None:
    w.reset_activity_state()
    sql_engine.start(w.process_order, "o-1", id="order").result()
    tools.failures["k"] = 99
    with pytest.raises(fg.WorkflowFailed):
        sql_engine.start(call_one, "flaky", "k", id="flaky").result()
    calls = sql_engine.sql(
        "select name, attempts, status from activities "
        "where workflow_id = 'order' order by seq"
    ).fetchall()
    assert calls == [
        ("validate_order", 1, "completed"),
        ("charge_payment", 1, "completed"),
        ("ship_order", 3, "completed"),
    ]
    failing = sql_engine.sql(
        "select name, error_type, count(*) from activity_attempts "
        "where outcome = 'failed' group by all order by name"
    ).fetchall()
    assert failing == [
        ("Tools.flaky", "Flaky", 4),
        ("ship_order", "ShippingUnavailable", 2),
    ]
    retries = sql_engine.sql(
        "select attempt from events where workflow_id = 'flaky' "
        "and kind = 'activity_attempt_failed' order by event_id"
    ).fetchall()
    assert retries == [(1,), (2,), (3,)]
    df = sql_engine.sql("select name, count(*) as n from activities group by all").df()
    assert set(df["name"]) == {
        "validate_order",
        "charge_payment",
        "ship_order",
        "Tools.flaky",
    }


def test_sql_reaches_into_tags_and_sees_timers_and_signals(
    sql_engine: fg.Engine,
) -> None:
    sql_engine.start(tagged, "packing", id="tagged").result()
    handle = sql_engine.start(sleep_then_wait, 5.0, id="waiter")
    sql_engine.signal("waiter", "go", {"n": 7})
    handle.result()
    assert sql_engine.sql(
        "select tags->>'$.stage', tags->>'$.step' from workflows where workflow_id = 'tagged'"
    ).fetchall() == [("packing", "2")]
    assert sql_engine.sql(
        "select status from timers where workflow_id = 'waiter'"
    ).fetchall() == [("fired",)]
    assert sql_engine.sql(
        "select name, payload->>'$.n' from signals where workflow_id = 'waiter'"
    ).fetchall() == [("go", "7")]


def test_list_runs_shows_the_newest_100_unless_asked_and_names_a_bad_status() -> None:
    # Issue 10 item 7: a database of a million runs must not be read whole by a bare
    # list_runs(); and a misspelt status is an error, not an empty list.
    engine = fg.Engine(store=MemoryStore(), clock=ManualClock())
    engine.start_many(w.greeter, [(0,)] * 120)
    engine.run_until_idle()
    assert len(engine.list_runs()) == 100
    assert len(engine.list_runs(limit=None)) == 120
    assert len(engine.list_runs(limit=7)) == 7
    with pytest.raises(ValueError, match="limit"):
        engine.list_runs(limit=0)
    with pytest.raises(ValueError, match=r"'bogus'.*completed"):
        engine.list_runs(status="bogus")
    engine.close()


@fg.workflow(name="tests.engine.until_go")
def until_go() -> fg.Workflow[str]:
    value = yield fg.wait_signal("go")
    return str(value)


def test_a_cancel_that_races_the_run_finishing_names_how_it_finished() -> None:
    # Issue 10 item 7: the cancel and the signal that ends the run land in one batch (the
    # loop takes every item waiting); the run has finished in that batch, not in the
    # store yet, and the error said "has finished (running)".
    from flowgen._runtime.items import CancelItem, SignalItem

    engine = fg.Engine(store=MemoryStore(), clock=ManualClock())
    handle = engine.start(until_go, id="race-1")
    answers = engine._submit_many(
        [SignalItem("race-1", "go", "now"), CancelItem("race-1", "too late")]
    )
    assert answers[0] is None
    assert isinstance(answers[1], fg.WorkflowClosed)
    assert "has finished (completed)" in str(answers[1])
    assert handle.result() == "now"
    engine.close()
