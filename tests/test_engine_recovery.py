"""Recovery: close an engine mid-run, reopen the same DuckDB file, and everything resumes.

In-flight activities run again (at-least-once), timers keep their original due times,
buffered signals stay buffered, retries keep their schedule and their attempt numbers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from tests import workflows as w
from tests.engine_workflows import (
    SIDE_EFFECT_CALLS,
    Tools,
    events_of,
    info_twice,
    long_sleep,
    needs_a_token,
    open_engine,
    parent_elsewhere,
    parent_of_sleepy,
    sleep_then_wait,
    steps,
    wait_for,
)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "recovery.duckdb")


@pytest.fixture
def tools() -> Iterator[Tools]:
    tools = Tools()
    yield tools
    tools.release_all()


def reopen(path: str, clock: ManualClock, **kwargs: object) -> fg.Engine:
    return open_engine(path, clock=clock, **kwargs)


def test_in_flight_activities_run_again_after_a_reopen(path: str, tools: Tools) -> None:
    clock = ManualClock()
    first = reopen(path, clock, activities=[tools])
    handle = first.start(steps, ["a", "b"], id="steps")
    # Scheduled and committed, but not run: the process "dies" here.
    assert [e.name for e in events_of(handle, fg.ActivityScheduled)] == ["Tools.work"]
    first.close()
    assert tools.runs_of("work") == []

    second = reopen(path, clock, activities=[tools])
    resumed = second.get("steps")
    assert resumed.result() == ["done a", "done b"]
    assert [i.attempt for i in tools.runs_of("work", "a")] == [1]
    assert len(tools.runs_of("work", "b")) == 1
    second.close()


def test_an_activity_running_when_the_engine_closes_runs_again_after_a_reopen(
    path: str,
) -> None:
    before, after = Tools(), Tools()
    gate = before.gate("a")
    try:
        with open_engine(path, activities=[before]) as engine:
            engine.start(steps, ["a"], id="blocked")
            before.wait_entered("a")  # running on a pool thread, never to report
    finally:
        gate.set()  # the old attempt finishes into a closed engine: ignored
    with open_engine(path, activities=[after]) as engine:
        assert engine.get("blocked").result(timeout=10) == ["done a"]
        history = engine.get("blocked").history()
    assert len(before.runs_of("work", "a")) == 1
    assert len(after.runs_of("work", "a")) == 1  # at least once per call, in total 2
    completions = [e for e in history if isinstance(e, fg.ActivityCompleted)]
    assert len(completions) == 1


@fg.activity
def _add_one(value: int) -> int:
    return value + 1


@fg.workflow
def _count_to(n: int) -> Any:
    value = 0
    for _ in range(n):
        value = yield fg.call(_add_one, value)
    return value


def test_closing_while_activity_threads_commit_their_outcomes_loses_nothing(
    path: str,
) -> None:
    # An idle loop lets the activity's own thread commit its outcome (and take the next
    # attempt): close() must wait for such a batch, and whatever it cut off resumes.
    ids = [f"count-{i}" for i in range(6)]
    with fg.Engine(path, workflows=[_count_to], max_workers=3) as engine:
        handles = [engine.start(_count_to, 300, id=id_) for id_ in ids]
        deadline = time.monotonic() + 120  # a hang guard
        while sum(len(h.history()) for h in handles) < 200:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    with fg.Engine(path, workflows=[_count_to]) as engine:
        for id_ in ids:
            handle = engine.get(id_)
            assert handle.result(timeout=120) == 300
            history = handle.history()
            completed = [e.seq for e in history if isinstance(e, fg.ActivityCompleted)]
            assert completed == sorted(set(completed)) and len(completed) == 300


_DECIDING = threading.Event()


@fg.activity
def _add_one_later(value: int) -> int:
    time.sleep(0.2)  # the loop is idle when this ends: its thread takes the outcome
    return value + 1


@fg.workflow
def _slow_to_decide() -> Any:
    first = yield fg.call(_add_one_later, 0)
    if not _DECIDING.is_set():  # the first time only, not on replay
        _DECIDING.set()
        time.sleep(0.5)  # a slow decision, made on the thread that ran the activity
    return (yield fg.call(_add_one, first))


def test_close_waits_for_the_batch_an_activity_thread_is_committing(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    _DECIDING.clear()
    with fg.Engine(path, workflows=[_slow_to_decide]) as engine:
        engine.start(_slow_to_decide, id="slow")
        assert _DECIDING.wait(timeout=120)
    # The decision's batch was committed before the store closed: the second call is in
    # the file, and nothing failed.
    reader = fg.Engine(path)  # without the workflow's code: it reads, decides nothing
    try:
        history = reader.get("slow").history()
    finally:
        reader.close()
    assert len([e for e in history if isinstance(e, fg.ActivityScheduled)]) == 2
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    with fg.Engine(path, workflows=[_slow_to_decide]) as engine:
        handle = engine.get("slow")
        assert handle.result(timeout=120) == 2
        completed = [e for e in handle.history() if isinstance(e, fg.ActivityCompleted)]
        assert len(completed) == 2


def test_a_timer_fires_at_its_original_due_time_after_a_reopen(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock)
    start = clock.now()
    first.start(long_sleep, 1.0, id="sleeper")
    clock.advance(timedelta(hours=3))
    first.run_until_idle()
    first.close()

    later = ManualClock(clock.now())  # a new process, three hours into the sleep
    second = reopen(path, later)
    handle = second.get("sleeper")
    assert handle.result() == 86400.0
    (timer,) = events_of(handle, fg.TimerStarted)
    (fired,) = events_of(handle, fg.TimerFired)
    assert timer.fire_at == start + timedelta(days=1)
    assert fired.at == timer.fire_at  # not three hours later
    assert later.now() == timer.fire_at
    second.close()


def test_a_timer_that_came_due_while_closed_fires_at_once_on_reopen(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock)
    first.start(long_sleep, 1.0, id="overdue")
    first.close()

    much_later = ManualClock(clock.now() + timedelta(days=5), autojump=False)
    second = reopen(path, much_later)
    handle = second.get("overdue")
    assert handle.result() == 5 * 86400.0  # fired when the engine came back
    (fired,) = events_of(handle, fg.TimerFired)
    assert fired.at == much_later.now()
    second.close()


def test_buffered_signals_stay_buffered_across_a_reopen(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock)
    first.start(sleep_then_wait, 60.0, id="buffered")
    first.signal("buffered", "go", "payload-1")
    first.signal("buffered", "other", "payload-2")
    first.close()

    second = reopen(path, ManualClock(clock.now()))
    handle = second.get("buffered")
    assert handle.result() == "payload-1"
    received = events_of(handle, fg.SignalReceived)
    assert [(e.name, e.index) for e in received] == [("go", 0), ("other", 1)]
    second.close()


def test_signals_after_a_reopen_continue_the_numbering(path: str) -> None:
    clock = ManualClock()
    first = reopen(path, clock)
    first.start(wait_for, "item", 3, id="numbered")
    first.signal("numbered", "item", 1)
    first.close()
    second = reopen(path, clock)
    second.signal("numbered", "item", 2)
    second.signal("numbered", "item", 3)
    handle = second.get("numbered")
    assert handle.result() == [1, 2, 3]
    assert [e.index for e in events_of(handle, fg.SignalReceived)] == [0, 1, 2]
    second.close()


def test_a_retry_keeps_its_schedule_attempt_number_and_idempotency_key_across_a_reopen(
    path: str, tools: Tools
) -> None:
    clock = ManualClock(autojump=False)
    tools.failures["k"] = 1
    first = reopen(path, clock, activities=[tools])
    handle = first.start(info_twice, "k", id="retry")
    first.run_until_idle()  # attempt 1 fails; attempt 2 is due in 2 s
    (failed,) = events_of(handle, fg.ActivityAttemptFailed)
    first.close()

    second = reopen(path, ManualClock(clock.now()), activities=[tools])
    handle = second.get("retry")
    assert handle.result() == "done k"
    (completed,) = events_of(handle, fg.ActivityCompleted)
    assert completed.attempt == 2
    assert completed.at == failed.retry_at
    infos = tools.runs_of("flaky")
    assert [i.attempt for i in infos] == [1, 2]
    assert len({i.idempotency_key for i in infos}) == 1
    second.close()


def test_the_expense_deadline_holds_across_a_restart(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock)
    start = clock.now()
    first.start(w.expense, w.Claim("ada", 10.0), id="claim")
    first.run_until_idle()
    clock.advance(timedelta(days=1))
    first.close()

    second = reopen(path, ManualClock(clock.now()))
    handle = second.get("claim")
    assert handle.result() == "auto-rejected"
    (fired,) = events_of(handle, fg.TimerFired)
    assert fired.at == start + timedelta(days=3)
    second.close()


def test_a_decision_after_a_restart_still_beats_the_deadline(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock)
    first.start(w.expense, w.Claim("bo", 10.0), id="claim")
    first.run_until_idle()
    first.close()
    second = reopen(path, ManualClock(clock.now() + timedelta(days=2)))
    second.signal("claim", "decision", "approved")
    assert second.get("claim").result() == "approved"
    second.close()


def test_a_parent_and_its_child_resume_together(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock)
    first.start(parent_of_sleepy, 600.0, id="parent")
    first.run_until_idle()
    first.close()
    second = reopen(path, ManualClock(clock.now()))
    assert second.get("parent").result() == "woke"
    (started,) = events_of(second.get("parent"), fg.ChildStarted)
    assert second.get(started.child_id).status() == "completed"
    second.close()


def test_a_continue_as_new_chain_resumes_mid_chain(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock)
    first.start(w.sync_customers, None, 0, 1, id="sync")
    first.run_until_idle()  # first page done, asleep in its rate-limit sleep
    first.close()
    second = reopen(path, ManualClock(clock.now()))
    assert second.get("sync").result() == len(w.CUSTOMERS)
    statuses = sorted(r.status for r in second.list_runs(name="sync_customers"))
    assert statuses == ["completed", "continued_as_new", "continued_as_new"]
    second.close()


def test_finished_runs_keep_their_results_after_a_reopen(path: str) -> None:
    clock = ManualClock()
    first = reopen(path, clock)
    first.start(w.process_order, "o-9", id="order")
    first.start(w.book_trip, w.Trip("declined", "Rome"), id="trip")
    first.run_until_idle()
    first.close()
    second = reopen(path, clock)
    assert str(second.get("order").result()).startswith("TRK-")
    with pytest.raises(fg.WorkflowFailed) as failed:
        second.get("trip").result()
    assert "CardDeclined" in str(failed.value.error)
    second.close()


# ---------------------------------------------------------------------------------------------
# A workflow whose code is gone when the file is reopened.


def retired(n: int) -> fg.Workflow[int]:
    yield fg.sleep(10)
    return n * 2


retired.__flowgen_workflow__ = fg.WorkflowDefinition("retired_workflow", retired)  # type: ignore[attr-defined]


def test_an_unknown_workflow_name_at_reopen_gives_a_clear_error_not_a_crash(
    path: str,
) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock, workflows=[retired])
    first.start(retired, 21, id="orphan")
    first.start(long_sleep, 0.001, id="other")
    first.close()

    # The code of "retired_workflow" is not registered in this process.
    second = reopen(path, ManualClock(clock.now()))
    orphan = second.get("orphan")
    assert orphan.status() == "running"  # kept for a process that has the code
    assert isinstance(orphan.stuck(), fg.UnknownWorkflow)
    assert second.get("other").stuck() is None
    with pytest.raises(fg.UnknownWorkflow, match="retired_workflow"):
        orphan.result()
    assert second.get("other").result() == 0.001 * 86400  # the others carry on
    second.signal("orphan", "note", "kept")  # still recorded
    second.close()

    third = reopen(path, ManualClock(clock.now()), workflows=[retired])
    assert third.get("orphan").result() == 42
    assert len(events_of(third.get("orphan"), fg.SignalReceived)) == 1
    third.close()


def test_an_unknown_workflow_name_in_a_background_engine_is_reported_by_result(
    path: str,
) -> None:
    first = reopen(path, ManualClock(autojump=False), workflows=[retired])
    first.start(retired, 1, id="orphan")
    first.close()
    with open_engine(path) as engine:
        with pytest.raises(fg.UnknownWorkflow, match="retired_workflow"):
            engine.get("orphan").result(timeout=10)


def test_a_failing_side_effect_stops_the_run_and_a_restart_retries_it(
    path: str,
) -> None:
    SIDE_EFFECT_CALLS.clear()
    clock = ManualClock()
    first = reopen(path, clock)
    handle = first.start(needs_a_token, id="token")
    with pytest.raises(fg.FlowgenError, match="side effect 'token_failing_once'"):
        handle.result()
    assert isinstance(handle.stuck(), fg.FlowgenError)
    assert handle.status() == "running"
    first.close()
    second = reopen(path, clock)
    assert second.get("token").result() == "token"
    assert SIDE_EFFECT_CALLS == ["call", "call"]
    (recorded,) = events_of(second.get("token"), fg.SideEffectRecorded)
    assert recorded.value == "token"
    second.close()


def test_a_child_that_ended_while_its_parent_was_stuck_is_delivered_on_reopen(
    path: str,
) -> None:
    clock = ManualClock(autojump=False)
    first = reopen(path, clock, workflows=[parent_elsewhere])
    first.start(parent_elsewhere, 5.0, id="parent")
    first.run_until_idle()  # the child sleeps
    first.close()

    # A process without the parent's code: the child finishes, the parent cannot hear it.
    second = reopen(path, ManualClock(clock.now() + timedelta(seconds=5)))
    assert second.get("parent/0").result() == "woke"
    assert isinstance(second.get("parent").stuck(), fg.UnknownWorkflow)
    second.close()

    third = reopen(path, ManualClock(clock.now()), workflows=[parent_elsewhere])
    assert third.get("parent").result() == "parent saw woke"
    third.close()
