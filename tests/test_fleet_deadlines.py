"""A shared attempt's deadlines, enforced by the engine that holds its run.

With ``share_activities`` an attempt may run on another engine of the fleet. These tests
check, on the tests' PostgreSQL server, that the run's holder fails such an attempt once a
deadline passes without a report (start-to-close, heartbeat, schedule-to-close), retries it
per its policy with the last heartbeat details the database holds, discards a late outcome
(recorded as an ``activity_result_ignored`` note, never as a second outcome), and never
fails an attempt whose heartbeats keep it alive. Every clock is a `ManualClock` shared by the
engines of a test: no test depends on how fast anything runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._runtime.shared_attempts import BeatRecorder
from flowgen._stores.postgres_store import PostgresStore
from tests.fleet_app import (
    fleet_beating,
    fleet_beating_job,
    fleet_bounded_job,
    fleet_double,
    fleet_job,
    fleet_stalling,
    fleet_stalling_job,
    fleet_unserved_job,
)
from tests.test_fleet import check_fenced_histories, eventually, rows

HANG_GUARD = 60.0
"""The longest a hung activity of a test waits to be let go (a hang guard)."""


@pytest.fixture
def engines() -> Iterator[list[fg.Engine]]:
    made: list[fg.Engine] = []
    yield made
    for engine in reversed(made):
        engine.close()


@pytest.fixture
def clock() -> ManualClock:
    """The fleet's one clock: the holder moves it, by hand only."""
    return ManualClock(autojump=False)


@pytest.fixture
def member(
    pg_url: str, engines: list[fg.Engine], clock: ManualClock
) -> Callable[..., fg.Engine]:
    """An engine of the fleet sharing activity attempts, on the test's database and clock."""

    def make(**options: Any) -> fg.Engine:
        engine = fg.Engine(
            pg_url,
            clock=clock,
            max_workers=2,
            fleet=fg.FleetOptions(share_activities=True, poll=0.05, **options),
        )
        engines.append(engine)
        return engine

    return make


def hung_until(
    release: threading.Event, started: threading.Event
) -> Callable[..., Any]:
    """An activity whose first attempt heartbeats once, then hangs until *release*."""

    def activity(n: int) -> Any:
        info = fg.activity_info()
        if info.attempt == 1:
            fg.heartbeat({"done": n})
            started.set()
            release.wait(HANG_GUARD)
            return "late"
        return {"resumed_from": info.heartbeat_details, "attempt": info.attempt}

    return activity


def settle(
    holder: fg.Engine, clock: ManualClock, handle: fg.WorkflowHandle[Any]
) -> None:
    """Drive the holder (moving the clock past any retry delay) until the run ends."""
    deadline = time.monotonic() + HANG_GUARD
    while handle.status() == "running":
        assert time.monotonic() < deadline, "the run never finished"
        holder.run_until_idle()
        clock.advance(60)
        time.sleep(0.02)


def test_a_hung_shared_attempt_fails_on_its_heartbeat_timeout_and_its_retry_resumes(
    pg_url: str, member: Callable[..., fg.Engine], clock: ManualClock
) -> None:
    release, started = threading.Event(), threading.Event()
    activity = hung_until(release, started)
    holder = member()  # driven by hand: it runs nothing until told
    holder.override_activity(fleet_beating, activity)
    handle = holder.start(fleet_beating_job, 3, id="hung")
    executor = member()
    executor.override_activity(fleet_beating, activity)
    try:
        with executor:  # takes the attempt in the background: it beats once and hangs
            assert started.wait(HANG_GUARD)
            holder.run_until_idle()
            clock.advance(30)  # far past its 5 s heartbeat timeout, with no report
            holder.run_until_idle()
            history = handle.history()
            failed = [e for e in history if isinstance(e, fg.ActivityAttemptFailed)]
            assert [(e.attempt, e.error.type) for e in failed] == [
                (1, "ActivityTimeout")
            ]
            assert "sent no heartbeat for its 5 s heartbeat timeout" in (
                failed[0].error.message
            )
            release.set()  # the hung attempt returns at last: its outcome is discarded
            eventually(
                lambda: rows(pg_url, "select count(*) from fleet_messages") == [(1,)],
                "the late outcome's note posted",
            )
            holder.run_until_idle()
            settle(holder, clock, handle)
    finally:
        release.set()
    # The retry read the details the hung attempt recorded before it stopped reporting.
    assert handle.result() == {"resumed_from": {"done": 3}, "attempt": 2}
    history = handle.history()
    completed = [e for e in history if isinstance(e, fg.ActivityCompleted)]
    assert [e.attempt for e in completed] == [2]
    (ignored,) = [e for e in history if isinstance(e, fg.ActivityResultIgnored)]
    assert (ignored.attempt, ignored.outcome) == (1, "activity_completed")
    notes = [e for e in history if isinstance(e, fg.ActivityHeartbeat)]
    assert [(e.attempt, e.details) for e in notes][:1] == [(1, {"done": 3})]
    assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
    assert rows(pg_url, "select count(*) from fleet_messages") == [(0,)]
    check_fenced_histories(pg_url)


def test_a_hung_shared_attempt_fails_on_its_start_to_close_timeout(
    pg_url: str, member: Callable[..., fg.Engine], clock: ManualClock
) -> None:
    release, started = threading.Event(), threading.Event()
    activity = hung_until(release, started)
    holder = member()
    holder.override_activity(fleet_stalling, activity)
    handle = holder.start(fleet_stalling_job, 4, id="stalled")
    executor = member()
    executor.override_activity(fleet_stalling, activity)
    try:
        with executor:
            assert started.wait(HANG_GUARD)
            holder.run_until_idle()
            clock.advance(9)  # within its 10 s: nothing fails yet
            holder.run_until_idle()
            history = handle.history()
            assert not any(isinstance(e, fg.ActivityAttemptFailed) for e in history)
            clock.advance(2)
            holder.run_until_idle()
            (failed,) = [
                e for e in handle.history() if isinstance(e, fg.ActivityAttemptFailed)
            ]
            assert failed.attempt == 1
            assert "ran past its 10 s timeout" in failed.error.message
            settle(holder, clock, handle)
    finally:
        release.set()
    assert handle.result() == {"resumed_from": {"done": 4}, "attempt": 2}
    completed = [e for e in handle.history() if isinstance(e, fg.ActivityCompleted)]
    assert [e.attempt for e in completed] == [2]
    check_fenced_histories(pg_url)


def test_heartbeats_keep_a_shared_attempt_alive_past_its_heartbeat_timeout(
    pg_url: str, member: Callable[..., fg.Engine], clock: ManualClock
) -> None:
    holder = member()
    executor = member()

    def beating(n: int) -> str:
        for step in range(4):  # 16 s in all, one heartbeat every 4 s (its timeout: 5 s)
            fg.heartbeat({"step": step})
            clock.advance(4)
            holder.run_until_idle()  # its deadlines come due: the heartbeats moved them
        return "done"

    holder.override_activity(fleet_beating, lambda n: "the holder ran it")
    executor.override_activity(fleet_beating, beating)
    handle = holder.start(fleet_beating_job, 1, id="alive")
    executor.run_until_idle()  # runs it inline, the holder looking on
    holder.run_until_idle()
    assert handle.result() == "done"
    history = handle.history()
    failures = (fg.ActivityFailed, fg.ActivityAttemptFailed, fg.ActivityResultIgnored)
    assert not any(isinstance(e, failures) for e in history)
    check_fenced_histories(pg_url)


def test_a_shared_attempt_nobody_takes_fails_at_its_schedule_to_close(
    pg_url: str, member: Callable[..., fg.Engine], clock: ManualClock
) -> None:
    holder = member()  # serves the default queue only: nobody runs "nowhere"
    handle = holder.start(fleet_unserved_job, 1, id="unserved")
    holder.run_until_idle()
    clock.advance(29)
    holder.run_until_idle()
    assert handle.status() == "running"
    clock.advance(1)
    holder.run_until_idle()
    with pytest.raises(fg.WorkflowFailed, match="30 s schedule-to-close timeout"):
        handle.result()
    # Nobody will run it now: the posted attempt is gone.
    assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
    check_fenced_histories(pg_url)


def test_a_dead_engines_heartbeat_details_reach_the_engine_that_runs_the_attempt_again(
    pg_url: str, member: Callable[..., fg.Engine], clock: ManualClock
) -> None:
    def resumed(n: int) -> dict[str, Any]:
        return {"resumed_from": fg.activity_info().heartbeat_details}

    holder = member()
    holder.override_activity(fleet_double, resumed)
    handle = holder.start(fleet_job, 1, id="orphaned")
    # An engine takes the attempt, starts it, records a heartbeat and dies (its store
    # closes without a word): its hold on the task lapses after its short lease.
    with PostgresStore(
        pg_url, fleet=fg.FleetOptions(share_activities=True, lease=0.2)
    ) as dead:
        (task,) = dead.take_tasks(1, ["default"])
        watch = dead.task_watch()
        assert watch.start(task, clock.now(), tell=False) == (True, None)
        assert watch.beat(task, clock.now(), {"copied": 40})
    survivor = member()
    survivor.override_activity(fleet_double, resumed)
    eventually(
        lambda: (
            survivor.run_until_idle() > 0
            and rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
        ),
        "the lapsed attempt taken and run again",
    )
    holder.run_until_idle()
    events = [e for e in handle.history() if isinstance(e, fg.ActivityCompleted)]
    assert [e.value for e in events] == [{"resumed_from": {"copied": 40}}]
    check_fenced_histories(pg_url)


def test_a_heartbeat_of_an_attempt_its_holder_timed_out_stops_the_activity(
    pg_url: str, member: Callable[..., fg.Engine], clock: ManualClock
) -> None:
    holder = member()
    handle = holder.start(fleet_beating_job, 1, id="stopped")
    with PostgresStore(pg_url, fleet=fg.FleetOptions(share_activities=True)) as runner:
        (task,) = runner.take_tasks(1, ["default"])
        watch = runner.task_watch()
        assert watch.start(task, clock.now(), tell=True) == (True, None)
        options = fg.ActivityOptions(heartbeat_timeout=5)  # fleet_beating's
        beat = BeatRecorder(watch, task, options)
        beat(clock.now(), {"step": 1})  # recorded: the task is still this engine's
        holder.run_until_idle()  # hears it started: a timer for its 5 s heartbeat timeout
        clock.advance(10)
        holder.run_until_idle()  # times it out, deleting its task
        assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
        failed = [
            e for e in handle.history() if isinstance(e, fg.ActivityAttemptFailed)
        ]
        assert [e.attempt for e in failed] == [1]
        with pytest.raises(fg.ActivityTimeout, match="timed out by its run's holder"):
            beat(clock.now(), {"step": 2})


def test_a_reported_shared_attempt_leaves_no_timer_for_autojump(
    pg_url: str, engines: list[fg.Engine]
) -> None:
    clock = ManualClock()  # autojump: a timer left over would move it
    holder, runner = (
        fg.Engine(pg_url, clock=clock, fleet=fg.FleetOptions(share_activities=True))
        for _ in range(2)
    )
    engines.extend([holder, runner])
    handle = holder.start(fleet_bounded_job, 2, id="reported")  # a 10 s timeout
    begun = clock.now()
    runner.run_until_idle()  # runs it at once: started, then its outcome, posted
    holder.run_until_idle()  # arms its deadline when it hears it started, then the outcome
    assert handle.result() == 10
    assert clock.now() == begun  # nothing was left to jump to
