"""Activity limits and task queues: ``@fg.activity(max_concurrent=, rate_limit=, task_queue=)``.

Through the public API, with real threads in the background (the most attempts ever seen
running at once, counted by the activities themselves, waited for with conditions: never
with wall-clock speed), a `ManualClock` for rate windows, restarts on a DuckDB file and on
PostgreSQL, and permits shared with another holder on one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import flowgen as fg
from flowgen._core.dsl import ACTIVITIES
from flowgen._runtime.clock import ManualClock
from flowgen._runtime.items import Call
from flowgen._runtime.jobs import Jobs
from flowgen._runtime.limits import Gate, Ticket
from flowgen._runtime.timers import TimerHeap
from flowgen._stores.memory import MemoryStore
from flowgen._stores.permits import LocalPermits
from flowgen.aio import AsyncEngine
from flowgen.cli.main import main

HANG_GUARD = 60.0  # seconds; a guard against hangs, never a speed limit


class Probe:
    """What activities report: who runs now, the most ever running at once, in what order."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.running = 0
        self.most = 0
        self.started: list[object] = []
        self.release = threading.Event()
        self.hold = False  # when true, attempts wait for `release` before they end

    def enter(self, item: object) -> None:
        with self.changed:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(item)
            self.changed.notify_all()
        if self.hold:
            assert self.release.wait(HANG_GUARD), "the test never released the attempt"
        with self.changed:
            self.running -= 1
            self.changed.notify_all()

    def wait_until(self, what: Callable[[], bool]) -> None:
        with self.changed:
            assert self.changed.wait_for(what, HANG_GUARD), "hang guard"


PROBE = Probe()
CLOCK_READINGS: list[object] = []


@fg.activity(name="limits.two_at_a_time", max_concurrent=2)
def two_at_a_time(item: int) -> int:
    PROBE.enter(item)
    return item


@fg.activity(name="limits.unlimited")
def unlimited(item: int) -> int:
    PROBE.enter(item)
    return item


@fg.activity(name="limits.one_at_a_time", max_concurrent=1)
def one_at_a_time(item: int) -> int:
    PROBE.enter(item)
    return item


FAILURES: dict[int, int] = {}


@fg.activity(
    name="limits.flaky_one_at_a_time",
    max_concurrent=1,
    retry=fg.RetryPolicy(max_attempts=3, initial_interval=1.0),
)
def flaky_one_at_a_time(item: int) -> int:
    PROBE.enter(item)
    if FAILURES.get(item, 0) > 0:
        FAILURES[item] -= 1
        raise RuntimeError(f"item {item} failed")
    return item


@fg.activity(name="limits.two_per_ten_seconds", rate_limit="2/10s")
def two_per_ten_seconds(item: int) -> int:
    PROBE.enter(item)
    return item


@fg.activity(name="limits.on_gpu", task_queue="gpu")
def on_gpu(item: int) -> int:
    PROBE.enter(item)
    return item * 10


@fg.workflow(name="limits.fan_out")
def fan_out(activity: str, count: int) -> fg.Workflow[list[int]]:
    results = yield fg.gather(*(fg.call(activity, i) for i in range(count)))
    return list(results)


@fg.workflow(name="limits.one_or_stop")
def one_or_stop(activity: str) -> fg.Workflow[str]:
    winner, _ = yield fg.race(
        fg.gather(fg.call(activity, 1), fg.call(activity, 2)), fg.wait_signal("stop")
    )
    return "calls" if winner == 0 else "stopped"


@pytest.fixture
def probe() -> Iterator[Probe]:
    global PROBE
    PROBE = Probe()
    yield PROBE
    PROBE.release.set()


@pytest.fixture(params=["duckdb", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where an engine keeps its runs: a DuckDB file, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "runs.duckdb")


def waiting_of(engine: fg.Engine, count: int) -> list[fg.WaitingActivity]:
    """Ask the engine what waits until *count* attempts do (a hang guard, no timing)."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        waiting = engine.waiting_activities()
        if len(waiting) >= count:
            return waiting
        assert time.monotonic() < deadline, waiting
        time.sleep(0.01)


def kinds(handle: fg.WorkflowHandle) -> list[str]:
    return [type(event).__name__ for event in handle.history()]


# -- max_concurrent, with real threads --------------------------------------------------------


def test_max_concurrent_caps_the_attempts_running_at_once(
    probe: Probe, location: str
) -> None:
    probe.hold = True
    with fg.Engine(location, max_workers=8) as engine:
        handle = engine.start(fan_out, "limits.two_at_a_time", 6)
        probe.wait_until(lambda: probe.running == 2)
        waiting = waiting_of(engine, 4)
        assert [w.waiting_for for w in waiting] == ["max_concurrent"] * 4
        assert {w.activity for w in waiting} == {"limits.two_at_a_time"}
        assert "max_concurrent=2" in waiting[0].detail
        assert probe.running == 2  # four attempts wait, eight threads are free
        probe.release.set()
        assert handle.result(timeout=HANG_GUARD) == [0, 1, 2, 3, 4, 5]
        assert engine.waiting_activities() == []
    assert probe.most == 2
    assert sorted(probe.started) == [0, 1, 2, 3, 4, 5]  # type: ignore[type-var]


def test_without_a_limit_the_same_calls_all_run_at_once(
    probe: Probe, tmp_path: Path
) -> None:
    # What makes the test above able to fail: the same fan-out, unlimited, runs 6 at once.
    probe.hold = True
    with fg.Engine(str(tmp_path / "f.duckdb"), max_workers=8) as engine:
        handle = engine.start(fan_out, "limits.unlimited", 6)
        probe.wait_until(lambda: probe.running == 6)
        assert engine.waiting_activities() == []
        probe.release.set()
        assert handle.result(timeout=HANG_GUARD) == [0, 1, 2, 3, 4, 5]
    assert probe.most == 6


def test_a_limit_counts_every_run_of_the_activity_in_order(probe: Probe) -> None:
    # Three runs, one activity limited to one at a time: they take turns, first come
    # first served, and a waiting line records nothing in any history.
    engine = fg.Engine(store=MemoryStore(), clock=ManualClock())
    try:
        handles = [
            engine.start(fan_out, "limits.one_at_a_time", 2, id=f"r{i}")
            for i in range(3)
        ]
        plain = engine.start(fan_out, "limits.unlimited", 2, id="plain")
        engine.run_until_idle()
        assert [h.result() for h in handles] == [[0, 1]] * 3
        assert probe.most == 1
        assert kinds(handles[0]) == kinds(plain)
    finally:
        engine.close()


def test_a_retry_waits_in_line_like_a_first_attempt(probe: Probe) -> None:
    FAILURES.clear()
    FAILURES.update({0: 2})
    engine = fg.Engine(store=MemoryStore(), clock=ManualClock())
    try:
        handle = engine.start(fan_out, "limits.flaky_one_at_a_time", 3)
        engine.run_until_idle()
        assert handle.result() == [0, 1, 2]
    finally:
        engine.close()
    assert probe.most == 1
    assert probe.started == [0, 1, 2, 0, 0]  # item 0's retries queue behind 1 and 2


def test_an_attempt_cancelled_while_it_waits_never_runs(probe: Probe) -> None:
    probe.hold = True
    with fg.Engine(store=MemoryStore(), max_workers=4) as engine:
        handle = engine.start(one_or_stop, "limits.one_at_a_time")
        probe.wait_until(lambda: probe.running == 1)
        [waiting] = waiting_of(engine, 1)
        assert waiting.activity == "limits.one_at_a_time"
        engine.signal(handle.workflow_id, "stop")
        assert handle.result(timeout=HANG_GUARD) == "stopped"
        assert engine.waiting_activities() == []
        probe.release.set()
        probe.wait_until(lambda: probe.running == 0)
    assert probe.started == [1]


def test_an_async_engine_serves_queues_and_says_what_waits(probe: Probe) -> None:
    async def main() -> list[str]:
        async with AsyncEngine(store=MemoryStore(), task_queues=["gpu"]) as engine:
            gpu = await engine.start(fan_out, "limits.on_gpu", 2)
            assert await gpu.result(timeout=HANG_GUARD) == [0, 10]
            await engine.start(fan_out, "limits.unlimited", 1)
            return [w.on for w in await engine.waiting_activities()]

    waiting = asyncio.run(asyncio.wait_for(main(), HANG_GUARD))  # a hang guard
    assert waiting == ["task queue 'default'"]


# -- rate limits, on the engine's clock ------------------------------------------------------


def test_a_rate_limit_lets_count_attempts_start_per_window_of_the_engine_clock(
    probe: Probe, location: str
) -> None:
    clock = ManualClock()
    starts: list[float] = []
    engine = fg.Engine(location, clock=clock)
    t0 = clock.now()

    def timed(item: int) -> int:
        starts.append((clock.now() - t0).total_seconds())
        return item

    engine.override_activity("limits.two_per_ten_seconds", timed)
    try:
        handle = engine.start(fan_out, "limits.two_per_ten_seconds", 5)
        engine.run_until_idle()
        assert handle.result() == [0, 1, 2, 3, 4]
    finally:
        engine.close()
    assert starts == [0.0, 0.0, 10.0, 10.0, 20.0]
    # "at most 2 in any window of 10 s", checked over every window that starts at a start
    assert all(sum(s <= t < s + 10 for t in starts) <= 2 for s in starts)


def test_a_rate_limited_attempt_waits_recording_nothing() -> None:
    clock = ManualClock(autojump=False)
    engine = fg.Engine(store=MemoryStore(), clock=clock)
    engine.override_activity("limits.two_per_ten_seconds", lambda item: item)
    try:
        handle = engine.start(fan_out, "limits.two_per_ten_seconds", 3)
        engine.run_until_idle()
        before = handle.history()
        [waiting] = engine.waiting_activities()
        assert (waiting.waiting_for, waiting.seq) == ("rate_limit", 2)
        assert "2/10s" in waiting.detail
        engine.run_until_idle()
        assert handle.history() == before  # waiting records nothing, however long
        clock.advance(timedelta(seconds=10))
        engine.run_until_idle()
        assert handle.result() == [0, 1, 2]
        assert engine.waiting_activities() == []
    finally:
        engine.close()


# -- task queues --------------------------------------------------------------------------------


def test_an_activity_of_a_queue_no_engine_serves_waits_and_runs_after_a_reopen(
    probe: Probe, location: str
) -> None:
    path = location
    clock = ManualClock()
    first = fg.Engine(path, clock=clock)
    handle = first.start(fan_out, "limits.on_gpu", 2, id="train")
    first.run_until_idle()
    assert handle.status() == "running"
    waiting = first.waiting_activities()
    assert [(w.workflow_id, w.seq, w.waiting_for) for w in waiting] == [
        ("train", 0, "task_queue"),
        ("train", 1, "task_queue"),
    ]
    assert "task queue 'gpu', which this engine does not serve" in waiting[0].detail
    recorded = handle.history()
    first.close()
    assert probe.started == []

    gpu = fg.Engine(path, clock=clock, task_queues=["default", "gpu"])
    try:
        gpu.run_until_idle()
        assert gpu.get("train").result() == [0, 10]
        history = gpu.get("train").history()
        assert history[: len(recorded)] == recorded
        assert [e.attempt for e in history if isinstance(e, fg.ActivityCompleted)] == [
            1,
            1,
        ]
    finally:
        gpu.close()


def test_an_engine_serving_only_its_queue_leaves_default_activities_waiting(
    probe: Probe,
) -> None:
    engine = fg.Engine(store=MemoryStore(), clock=ManualClock(), task_queues=["gpu"])
    try:
        gpu = engine.start(fan_out, "limits.on_gpu", 1)
        plain = engine.start(fan_out, "limits.unlimited", 1)
        engine.run_until_idle()
        assert gpu.result() == [0]
        assert plain.status() == "running"
        [waiting] = engine.waiting_activities()
        assert waiting.activity == "limits.unlimited"
        assert "task queue None" not in waiting.detail
        assert "'default'" in waiting.detail
    finally:
        engine.close()


# -- a restart in the middle --------------------------------------------------------------------


def test_attempts_waiting_for_a_permit_resume_after_a_restart(
    probe: Probe, location: str
) -> None:
    path = location
    probe.hold = True
    engine = fg.Engine(path, max_workers=4)
    engine.start_background()
    engine.start(fan_out, "limits.one_at_a_time", 3, id="batch")
    probe.wait_until(lambda: probe.running == 1)
    assert len(waiting_of(engine, 2)) == 2
    engine.close()  # one attempt running, two waiting: none of them has an outcome
    probe.release.set()
    probe.wait_until(lambda: probe.running == 0)

    again = Probe()
    globals()["PROBE"] = again
    with fg.Engine(path, max_workers=4) as reopened:
        handle = reopened.get("batch")
        assert handle.result(timeout=HANG_GUARD) == [0, 1, 2]
        history = handle.history()
    assert again.most == 1
    assert sorted(again.started) == [0, 1, 2]  # type: ignore[type-var]
    completed = [e for e in history if isinstance(e, fg.ActivityCompleted)]
    assert sorted((e.seq, e.attempt) for e in completed) == [(0, 1), (1, 1), (2, 1)]


# -- bad arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_concurrent": 0}, ValueError, "max_concurrent=...\\) must be >= 1"),
        ({"max_concurrent": -3}, ValueError, "must be >= 1"),
        ({"max_concurrent": 2.5}, TypeError, "must be an int"),
        ({"max_concurrent": True}, TypeError, "must be an int"),
        ({"rate_limit": "ten a second"}, ValueError, "'<count>/<unit>'"),
        ({"rate_limit": "0/s"}, ValueError, "count must be >= 1"),
        ({"rate_limit": "5/0s"}, ValueError, "per must be a finite duration > 0"),
        ({"rate_limit": 10}, TypeError, "fg.RateLimit or a string"),
        ({"task_queue": ""}, TypeError, "task_queue=...\\) must be a non-empty string"),
        ({"task_queue": 7}, TypeError, "must be a non-empty string"),
    ],
)
def test_bad_limit_options_are_refused_where_the_activity_is_declared(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        fg.activity(name="limits.never", **options)  # type: ignore[call-overload]
    assert "limits.never" not in ACTIVITIES  # nothing was registered


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((-1,), ValueError, "count must be >= 1"),
        ((0,), ValueError, "count must be >= 1"),
        ((1.5,), TypeError, "count must be an int"),
        ((5, -1.0), ValueError, "per must be a finite duration > 0"),
        ((5, float("inf")), ValueError, "per must be a finite duration > 0"),
        ((5, "1s"), TypeError, "per must be seconds"),
    ],
)
def test_a_bad_rate_limit_is_refused(
    args: tuple[object, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        fg.RateLimit(*args)  # type: ignore[arg-type]


def test_rate_limit_short_forms() -> None:
    assert fg.RateLimit.parse("10/s") == fg.RateLimit(10, per=1.0)
    assert fg.RateLimit.parse("100 / min") == fg.RateLimit(100, per=60)
    assert fg.RateLimit.parse("3/2.5s") == fg.RateLimit(3, per=2.5)
    assert fg.RateLimit.parse("5/hours") == fg.RateLimit(5, per=timedelta(hours=1))
    assert fg.RateLimit.parse("20/500ms") == fg.RateLimit(20, per=0.5)


@pytest.mark.parametrize(
    ("queues", "error", "message"),
    [
        ("gpu", TypeError, r"task_queues=\['gpu'\]"),
        ([], ValueError, "at least one queue"),
        ([3], TypeError, "must be a non-empty string"),
        (5, TypeError, "takes a list of queue names"),
    ],
)
def test_bad_task_queues_are_refused_before_the_file_is_created(
    queues: object, error: type[Exception], message: str, tmp_path: Path
) -> None:
    path = tmp_path / "never.duckdb"
    with pytest.raises(error, match=message):
        fg.Engine(str(path), task_queues=queues)  # type: ignore[arg-type]
    assert not path.exists()


# -- permits: the store-level seam ---------------------------------------------------------------


def test_local_permits_count_slots_below_each_capacity() -> None:
    permits = LocalPermits()
    first, second = permits.take("p", 2), permits.take("p", 2)
    assert first is not None and second is not None
    assert permits.take("p", 2) is None
    assert permits.take("other", 1) is not None
    permits.give_back(first)
    assert permits.take("p", 2) == first
    assert permits.taken("p") == 2


# -- the command line ---------------------------------------------------------------------------


def test_ls_and_show_say_what_an_activity_waits_on(
    probe: Probe, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "shown.duckdb")
    engine = fg.Engine(path, clock=ManualClock())  # serves the CLI over <file>.sock
    try:
        engine.start(fan_out, "limits.on_gpu", 1, id="train")
        engine.start(fan_out, "limits.unlimited", 1, id="plain")
        engine.run_until_idle()
        capsys.readouterr()
        assert main(["--db", path, "ls"]) == 0
        listed = capsys.readouterr().out
        assert "running (waiting on task queue 'gpu')" in listed
        assert "completed" in listed
        assert main(["--db", path, "show", "train"]) == 0
        shown = capsys.readouterr().out
        assert (
            "activity 'limits.on_gpu' (seq 0, attempt 1) on task queue 'gpu', which "
            "this engine does not serve (it serves 'default')"
        ) in " ".join(shown.split())
    finally:
        engine.close()


WORKER_APP = """
import flowgen as fg

@fg.activity(name="app.render", task_queue="gpu")
def render(frame: int) -> str:
    return f"frame {frame}"

@fg.workflow(name="app.film")
def film(frames: int):
    return (yield fg.gather(*(fg.call(render, i) for i in range(frames))))
"""


def test_a_worker_serving_a_queue_runs_its_activities(tmp_path: Path) -> None:
    (tmp_path / "filmapp.py").write_text(WORKER_APP)
    db = str(tmp_path / "film.duckdb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    setup = (
        "import sys, filmapp, flowgen as fg\n"
        "with fg.Engine(sys.argv[1]) as engine:\n"
        "    engine.start(filmapp.film, 2, id='film')\n"
        "    print([w.on for w in engine.waiting_activities()])\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", setup, db], env=env, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "[\"task queue 'gpu'\", \"task queue 'gpu'\"]"
    worker = [sys.executable, "-m", "flowgen", "--db", db, "worker"]
    worker += ["--import", "filmapp", "--until-done", "--timeout", "60"]
    bad = subprocess.run(
        [*worker, "--queue", ""], env=env, capture_output=True, text=True
    )
    assert bad.returncode != 0
    assert "--queue" in bad.stderr and "non-empty string" in bad.stderr
    done = subprocess.run(
        [*worker, "--queue", "gpu"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "done: no run of the imported workflows is running" in done.stdout
    with fg.Engine(db) as engine:
        assert engine.get("film").result(timeout=HANG_GUARD) == ["frame 0", "frame 1"]


def test_the_gate_asks_a_claimed_attempt_s_own_wanted_not_the_run_table() -> None:
    # The seam a fleet's claimed attempts use: their run is another engine's, so the
    # gate asks the ticket whether it is still wanted (see flowgen._runtime.limits).
    clock = ManualClock()
    delivered: list[object] = []
    gate = Gate(
        LocalPermits(),
        clock,
        TimerHeap(clock),
        Jobs(1, lambda exc: None),
        delivered.append,
        task_queues=frozenset({fg.DEFAULT_TASK_QUEUE}),
        still_wanted=lambda ticket: False,  # no run of this engine wants anything
    )
    options = fg.ActivityOptions(max_concurrent=1)
    started: list[str] = []
    releases: list[Callable[[], None]] = []
    wanted = {"a": True, "b": True, "c": False}

    def ticket(name: str) -> Ticket:
        def start(release: Callable[[], None]) -> None:
            started.append(name)
            releases.append(release)

        def still() -> bool:
            return wanted[name]

        return Ticket(("w", "r"), 0, 1, "x", options, start, clock.now(), wanted=still)

    gate.admit(ticket("a"))
    gate.admit(ticket("c"))
    gate.admit(ticket("b"))
    assert started == ["a"]
    releases.pop()()  # "a" ends: the gate is asked to look again
    [wake] = delivered
    assert isinstance(wake, Call)
    wake.fn()
    assert started == ["a", "b"]  # "c" is no longer wanted: dropped, never run
