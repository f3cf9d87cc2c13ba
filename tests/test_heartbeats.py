"""Heartbeats and the three activity timeouts, through the public API.

Time is a `ManualClock` everywhere: an activity "works for a minute" by moving the clock,
so nothing here depends on how fast the machine is (waits on threads are hang guards).
The tests that take ``path`` (a DuckDB file here) run again on PostgreSQL
(tests/test_engine_postgres.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import flowgen as fg
from flowgen.testing import ManualClock

HANG_GUARD = 60.0  # seconds; only ever a guard against a hang, never a speed limit


class Job:
    """Activities bound to one test's clock and gates (``activities=[job]``)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.infos: list[fg.ActivityInfo] = []
        self.stall_on_attempt = 1
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.late_heartbeat: list[BaseException] = []

    @fg.activity(
        name="hb.download",
        heartbeat_timeout=10,
        retry=fg.RetryPolicy(max_attempts=3, initial_interval=1.0),
    )
    def download(self, chunks: int) -> list[int]:
        """Fetch *chunks* chunks, heartbeating each; stalls for a minute on one attempt."""
        info = fg.activity_info()
        self.infos.append(info)
        done = info.heartbeat_details or 0
        assert isinstance(done, int)
        fetched = []
        for chunk in range(done, chunks):
            if chunk == 3 and info.attempt == self.stall_on_attempt:
                self.clock.advance(60)  # stuck on a slow server: no heartbeat for 60 s
            self.clock.advance(1)
            fetched.append(chunk)
            fg.heartbeat(chunk + 1)
        return fetched

    @fg.activity(name="hb.slow", timeout=10, retry=fg.RetryPolicy(max_attempts=2))
    def slow(self, seconds: float) -> str:
        """Works for *seconds* of the clock's time on the first attempt, at once after."""
        info = fg.activity_info()
        self.infos.append(info)
        if info.attempt == 1:
            self.clock.advance(seconds)
        return f"done on attempt {info.attempt}"

    @fg.activity(
        name="hb.flaky",
        schedule_to_close=30,
        retry=fg.RetryPolicy(max_attempts=10, initial_interval=10.0, backoff=2.0),
    )
    def flaky(self) -> None:
        """Always fails: only the schedule-to-close bound stops its retries."""
        self.infos.append(fg.activity_info())
        raise ConnectionError("the server is down")

    @fg.activity(
        name="hb.crawl",
        schedule_to_close=100,
        retry=fg.RetryPolicy(max_attempts=10, initial_interval=1.0),
    )
    def crawl(self) -> str:
        """Works for 150 s of the clock's time: past the bound of the whole call."""
        self.infos.append(fg.activity_info())
        self.clock.advance(150)
        return "too late"

    @fg.activity(
        name="hb.held",
        heartbeat_timeout=10,
        retry=fg.RetryPolicy(max_attempts=2, initial_interval=1.0),
    )
    def held(self, note: str) -> str:
        """Heartbeats, then waits at the gate on attempt 1 (in a background engine)."""
        info = fg.activity_info()
        self.infos.append(info)
        fg.heartbeat({"step": note, "attempt": info.attempt})
        if info.attempt == 1:
            self.entered.set()
            assert self.gate.wait(HANG_GUARD)
            try:
                fg.heartbeat("after the timeout")
            except fg.ActivityTimeout as exc:
                self.late_heartbeat.append(exc)
        return f"{note} by attempt {info.attempt}"

    @fg.activity(name="hb.chatty", heartbeat_timeout=10)
    def chatty(self, beats: int) -> int:
        """Heartbeats *beats* times, a tenth of a second of the clock's time apart."""
        for beat in range(beats):
            self.clock.advance(0.1)
            fg.heartbeat(beat)
        return beats


@fg.workflow(name="hb.fetch")
def fetch(chunks: int) -> fg.Workflow[list[int]]:
    return (yield from fg.call(Job.download, chunks))


@fg.workflow(name="hb.call_slow")
def call_slow(seconds: float) -> fg.Workflow[str]:
    return (yield from fg.call(Job.slow, seconds))


@fg.workflow(name="hb.call_flaky")
def call_flaky() -> fg.Workflow[None]:
    yield from fg.call(Job.flaky)


@fg.workflow(name="hb.call_crawl")
def call_crawl() -> fg.Workflow[str]:
    return (yield from fg.call(Job.crawl))


@fg.workflow(name="hb.call_held")
def call_held(note: str) -> fg.Workflow[str]:
    return (yield from fg.call(Job.held, note))


@fg.workflow(name="hb.call_chatty")
def call_chatty(beats: int) -> fg.Workflow[int]:
    return (yield from fg.call(Job.chatty, beats))


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "heartbeats.duckdb")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def job(clock: ManualClock) -> Iterator[Job]:
    job = Job(clock)
    yield job
    job.gate.set()


def of_kind(history: list[fg.Event], kind: type) -> list[fg.Event]:
    return [event for event in history if isinstance(event, kind)]


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


# -- start-to-close on a hand-driven engine ---------------------------------------------------


def test_a_start_to_close_timeout_is_enforced_on_a_hand_driven_engine(
    clock: ManualClock, job: Job
) -> None:
    engine = fg.Engine(clock=clock, activities=[job])
    handle = engine.start(call_slow, 60.0)
    engine.run_until_idle()
    assert handle.result() == "done on attempt 2"
    history = handle.history()
    (failed,) = of_kind(history, fg.ActivityAttemptFailed)
    assert failed.attempt == 1
    assert failed.error.type == "ActivityTimeout"
    assert "ran past its 10 s timeout" in failed.error.message
    (ignored,) = of_kind(history, fg.ActivityResultIgnored)
    assert (ignored.attempt, ignored.outcome) == (1, "activity_completed")
    engine.close()


def test_a_deadline_has_passed_once_the_clock_reaches_it(
    clock: ManualClock, job: Job
) -> None:
    # As a timer is due once the clock reaches its time: a background engine's timer that
    # comes due exactly at the deadline finds it passed (it is never re-armed for the same
    # moment, which would spin).
    with fg.Engine(clock=clock, activities=[job]) as engine:
        handle = engine.start(call_held, "c", id="held-exact")
        assert job.entered.wait(HANG_GUARD)
        clock.advance(10)  # exactly the heartbeat timeout
        wait_until(
            lambda: of_kind(
                engine.get("held-exact").history(), fg.ActivityAttemptFailed
            ),
            "attempt 1 timed out at its deadline",
        )
        job.gate.set()
        wait_until(lambda: len(job.infos) == 2 or clock.advance(0.5) is None, "retry")
        assert handle.result(timeout=HANG_GUARD) == "c by attempt 2"


def test_an_attempt_within_its_timeout_leaves_the_clock_where_it_was(
    clock: ManualClock, job: Job
) -> None:
    engine = fg.Engine(clock=clock, activities=[job])
    start = clock.now()
    job.infos.clear()
    handle = engine.start(call_slow, 5.0)
    engine.run_until_idle()
    assert handle.result() == "done on attempt 1"
    # The timer armed for the attempt's deadline is disarmed once it reported in time:
    # autojump does not move the clock to a deadline nobody waits for.
    assert clock.now() == start + timedelta(seconds=5)
    (info,) = job.infos
    assert info.deadline == start + timedelta(seconds=10)
    assert of_kind(handle.history(), fg.ActivityResultIgnored) == []
    engine.close()


# -- heartbeats -------------------------------------------------------------------------------


def test_a_stalled_attempt_fails_on_its_heartbeat_timeout_and_the_next_resumes(
    path: str, clock: ManualClock, job: Job
) -> None:
    engine = fg.Engine(path, clock=clock, activities=[job])
    handle = engine.start(fetch, 6, id="fetch-1")
    engine.run_until_idle()
    # Attempt 1 fetched chunks 0-2 and stalled; attempt 2 resumed at chunk 3.
    assert handle.result() == [3, 4, 5]
    first, second = job.infos
    assert (first.attempt, first.heartbeat_details) == (1, None)
    assert (second.attempt, second.heartbeat_details) == (2, 3)
    assert (second.workflow_id, second.heartbeat_timeout) == ("fetch-1", 10.0)
    history = handle.history()
    (failed,) = of_kind(history, fg.ActivityAttemptFailed)
    assert failed.error.type == "ActivityTimeout"
    assert "no heartbeat for its 10 s heartbeat timeout" in failed.error.message
    beats = of_kind(history, fg.ActivityHeartbeat)
    assert beats[0].attempt == 1
    assert [b.details for b in beats if b.attempt == 1][-1] == 3
    (ignored,) = of_kind(history, fg.ActivityResultIgnored)
    assert ignored.attempt == 1
    engine.close()


def test_heartbeats_are_recorded_throttled(clock: ManualClock, job: Job) -> None:
    engine = fg.Engine(clock=clock, activities=[job])
    handle = engine.start(call_chatty, 200)  # 200 heartbeats over 20 s of the clock
    engine.run_until_idle()
    assert handle.result() == 200
    beats = of_kind(handle.history(), fg.ActivityHeartbeat)
    # The first at once, then at most one per 8 s (80% of the 10 s heartbeat timeout).
    assert [b.details for b in beats] == [0, 80, 160]
    engine.close()


def test_heartbeat_outside_an_activity_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"fg.heartbeat\(\) can only be called"):
        fg.heartbeat(1)


def test_heartbeat_details_that_cannot_be_stored_fail_the_attempt(
    clock: ManualClock,
) -> None:
    @fg.activity(name="hb.unstorable", retry=fg.RetryPolicy(max_attempts=1))
    def unstorable() -> None:
        fg.heartbeat(object())

    @fg.workflow(name="hb.call_unstorable")
    def call_unstorable() -> fg.Workflow[None]:
        yield from fg.call(unstorable)

    engine = fg.Engine(clock=clock)
    handle = engine.start(call_unstorable)
    engine.run_until_idle()
    with pytest.raises(fg.WorkflowFailed, match="heartbeat details"):
        handle.result()
    assert of_kind(handle.history(), fg.ActivityHeartbeat) == []
    engine.close()


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("heartbeat_timeout", -1, ValueError),
        ("heartbeat_timeout", float("nan"), ValueError),
        ("heartbeat_timeout", "10", TypeError),
        ("schedule_to_close", timedelta(days=365 * 101), ValueError),
        ("schedule_to_close", -0.5, ValueError),
    ],
)
def test_bad_timeouts_are_refused_where_they_are_given(
    option: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"activity\\({option}=...\\)"):
        fg.activity(**{option: value})  # type: ignore[arg-type]


# -- schedule-to-close ------------------------------------------------------------------------


def test_schedule_to_close_bounds_every_attempt_and_retry_delay(
    clock: ManualClock, job: Job
) -> None:
    engine = fg.Engine(clock=clock, activities=[job])
    start = clock.now()
    handle = engine.start(call_flaky)
    engine.run_until_idle()
    with pytest.raises(fg.WorkflowFailed, match="the server is down"):
        handle.result()
    # Attempts at +0 and +10 s; the third would start at +30 s, the bound: none.
    assert [info.attempt for info in job.infos] == [1, 2]
    assert job.infos[1].deadline == start + timedelta(seconds=30)
    (final,) = of_kind(handle.history(), fg.ActivityFailed)
    assert final.attempt == 2
    engine.close()


def test_an_attempt_past_schedule_to_close_fails_the_call_for_good(
    clock: ManualClock, job: Job
) -> None:
    engine = fg.Engine(clock=clock, activities=[job])
    handle = engine.start(call_crawl)
    engine.run_until_idle()
    with pytest.raises(fg.WorkflowFailed, match="100 s schedule-to-close timeout"):
        handle.result()
    assert len(job.infos) == 1  # retries were left, but no time
    history = handle.history()
    (final,) = of_kind(history, fg.ActivityFailed)
    assert final.error.type == "ActivityTimeout"
    (ignored,) = of_kind(history, fg.ActivityResultIgnored)
    assert ignored.outcome == "activity_completed"
    engine.close()


# -- a background engine: the timer notices, the late result is ignored ------------------------


def test_the_timer_fails_a_silent_attempt_in_the_background(
    path: str, clock: ManualClock, job: Job
) -> None:
    with fg.Engine(path, clock=clock, activities=[job]) as engine:
        handle = engine.start(call_held, "a", id="held-1")
        assert job.entered.wait(HANG_GUARD)
        clock.advance(11)  # past the heartbeat timeout of attempt 1, held at its gate
        wait_until(lambda: len(job.infos) == 2 or clock.advance(0.5) is None, "retry")
        assert handle.result(timeout=HANG_GUARD) == "a by attempt 2"
        second = job.infos[1]
        assert second.heartbeat_details == {"step": "a", "attempt": 1}
        job.gate.set()  # attempt 1 wakes up, long after its timeout
        wait_until(
            lambda: job.late_heartbeat, "attempt 1's heartbeat after the timeout"
        )
        # Its heartbeat after the timeout raised in the activity: nobody waits for it.
        (late,) = job.late_heartbeat
        assert "heartbeat timeout" in str(late)
        (failed,) = of_kind(handle.history(), fg.ActivityAttemptFailed)
        assert failed.attempt == 1
        assert failed.error.type == "ActivityTimeout"


# -- durable details: a restart in the middle ------------------------------------------------


def test_the_next_attempt_after_a_restart_reads_the_recorded_details(
    path: str, clock: ManualClock, job: Job
) -> None:
    with fg.Engine(path, clock=clock, activities=[job]) as engine:
        engine.start(call_held, "b", id="held-2")
        assert job.entered.wait(HANG_GUARD)
        # The first heartbeat of an attempt is recorded at once (in the next commit).
        wait_until(
            lambda: of_kind(engine.get("held-2").history(), fg.ActivityHeartbeat),
            "the first heartbeat recorded",
        )
    # The engine closed with attempt 1 still running (its thread is abandoned, as a crash
    # would). A new engine on the file runs that attempt again, with the recorded details.
    rerun = Job(clock)
    rerun.gate.set()
    reopened = fg.Engine(path, clock=clock, activities=[rerun])
    try:
        reopened.run_until_idle()
        handle = reopened.get("held-2")
        assert handle.result() == "b by attempt 1"
        (info,) = rerun.infos
        assert info.attempt == 1
        assert info.heartbeat_details == {"step": "b", "attempt": 1}
    finally:
        job.gate.set()
        reopened.close()


# -- the Stepper and the notebook renderings -------------------------------------------------


@fg.activity(
    name="hb.resumable",
    heartbeat_timeout=30,
    schedule_to_close=600,
    retry=fg.RetryPolicy(max_attempts=2, initial_interval=1.0),
)
def resumable(items: int) -> int:
    """Heartbeats each item; attempt 1 fails at item 2."""
    info = fg.activity_info()
    start = info.heartbeat_details or 0
    assert isinstance(start, int)
    for item in range(start, items):
        if item == 2 and info.attempt == 1:
            raise ConnectionError("dropped")
        fg.heartbeat(item + 1)
    return start


@fg.workflow(name="hb.call_resumable")
def call_resumable(items: int) -> fg.Workflow[int]:
    return (yield from fg.call(resumable, items))


def test_the_stepper_hands_a_retry_the_last_heartbeat_details() -> None:
    stepper = fg.Stepper(call_resumable, 4)
    stepper.next()
    # The pending activity shows its timeouts, by Temporal's names.
    view = stepper._repr_html_()
    assert "heartbeat timeout" in view
    assert "schedule-to-close timeout" in view
    stepper.run()
    assert stepper.result == 2  # attempt 2 started from the details of attempt 1


def test_the_notes_render_as_notes(clock: ManualClock, job: Job) -> None:
    engine = fg.Engine(clock=clock, activities=[job])
    handle = engine.start(call_slow, 60.0)
    engine.run_until_idle()
    history = handle.history()
    (ignored,) = of_kind(history, fg.ActivityResultIgnored)
    card = ignored._repr_html_()  # type: ignore[attr-defined]
    assert "note event" in card
    assert "activity_completed ignored" in card
    assert "activity_result_ignored" in handle._repr_html_()
    beat = fg.ActivityHeartbeat(at=clock.now(), seq=0, attempt=1, details={"row": 7})
    assert "heartbeat: {&quot;row&quot;: 7}" in beat._repr_html_()  # type: ignore[attr-defined]
    engine.close()


def test_replay_skips_the_notes(clock: ManualClock, job: Job) -> None:
    engine = fg.Engine(clock=clock, activities=[job])
    handle = engine.start(fetch, 6, id="fetch-replayed")
    engine.run_until_idle()
    history = handle.history()
    assert of_kind(history, fg.ActivityHeartbeat)
    assert of_kind(history, fg.ActivityResultIgnored)
    # Notes are neither fed nor checked: the history replays against the code as it is,
    # and the engine's own replay (a Stepper over the stored history) reaches the result.
    assert fg.check_replay(fetch, history).result == [3, 4, 5]
    stepper = engine.replay("fetch-replayed")
    assert stepper.outcomes == 2  # attempt 1's failure, attempt 2's result: no note
    stepper.goto(stepper.outcomes)
    assert stepper.result == [3, 4, 5]
    engine.close()


def test_the_timeline_marks_heartbeats_on_the_activity_row(
    clock: ManualClock, job: Job
) -> None:
    engine = fg.Engine(clock=clock, activities=[job])
    handle = engine.start(fetch, 6, id="fetch-drawn")
    engine.run_until_idle()
    figure = handle.timeline()
    rows = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert rows == ["run", "0 · hb.download"]  # the notes draw on the activity's row
    beats = len(of_kind(handle.history(), fg.ActivityHeartbeat))
    dots = [line for line in figure.axes[0].lines if line.get_marker() == "."]
    assert len(dots) == beats > 0  # one dot per recorded heartbeat
    assert figure._repr_png_().startswith(b"\x89PNG")
    engine.close()
