"""Schedules through the public API: firing, catching up, overlap, jitter, pause, delete.

Every test runs on a MemoryStore, a DuckDB file and PostgreSQL (the ``where`` fixture), with
a ManualClock moved by hand (``autojump=False`` where a test needs runs left running).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

import flowgen as fg
from flowgen.testing import ManualClock

# The ManualClock's epoch is 2031-03-07 09:26:53 UTC.
HOUR = timedelta(hours=1)


@fg.workflow
def report(region: str) -> str:
    return f"report {region}"
    yield  # a generator


@fg.workflow
def until_done() -> str:
    yield fg.wait_signal("done")
    return "done"


@fg.workflow
def slow_report(region: str) -> str:
    yield fg.sleep(timedelta(minutes=30))
    return f"slow {region}"


OpenEngine = Callable[[ManualClock], fg.Engine]


@pytest.fixture(params=["memory", "duckdb", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenEngine]:
    """Opens engines on one store (again after a close: a restart)."""
    engines: list[fg.Engine] = []
    memory = fg.MemoryStore()

    def open_engine(clock: ManualClock) -> fg.Engine:
        if request.param == "memory":
            engine = fg.Engine(store=memory, clock=clock)
        elif request.param == "duckdb":
            engine = fg.Engine(str(tmp_path / "app.duckdb"), clock=clock)
        else:
            engine = fg.Engine(request.getfixturevalue("pg_url"), clock=clock)
        engines.append(engine)
        return engine

    yield open_engine
    for engine in engines:
        engine.close()


def ids(engine: fg.Engine, status: str | None = None) -> list[str]:
    return sorted(r.workflow_id for r in engine.list_runs(status=status, limit=None))


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_a_cron_schedule_starts_a_run_at_each_firing(where: OpenEngine) -> None:
    clock = ManualClock()
    engine = where(clock)
    row = engine.schedule("nightly", report, "eu", cron="0 3 * * *")
    assert row.next_at == utc(2031, 3, 8, 3)
    assert row.workflow == "report" and row.args == ["eu"]
    engine.run_until_idle()
    assert ids(engine) == []  # the autojump does not jump to schedules
    clock.set(utc(2031, 3, 8, 3))
    engine.run_until_idle()
    assert ids(engine) == ["nightly/2031-03-08T03:00:00Z"]
    run = engine.get("nightly/2031-03-08T03:00:00Z")
    assert run.result() == "report eu"
    assert (
        engine.list_runs(tags={"schedule": "nightly"})[0].workflow_id == run.workflow_id
    )
    clock.advance(timedelta(days=1))
    engine.run_until_idle()
    assert ids(engine) == [
        "nightly/2031-03-08T03:00:00Z",
        "nightly/2031-03-09T03:00:00Z",
    ]
    (row,) = engine.schedules()
    assert row.next_at == utc(2031, 3, 10, 3)
    assert row.last_workflow_id == "nightly/2031-03-09T03:00:00Z"
    assert row.last_fired_at == utc(2031, 3, 9, 3)


def test_an_interval_fires_on_its_multiples_with_keyword_arguments(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    engine = where(clock)
    engine.schedule("quarterly", report, every=timedelta(minutes=15), region="us")
    clock.set(utc(2031, 3, 7, 9, 30))
    engine.run_until_idle()
    clock.set(utc(2031, 3, 7, 9, 45))
    engine.run_until_idle()
    assert ids(engine) == [
        "quarterly/2031-03-07T09:30:00Z",
        "quarterly/2031-03-07T09:45:00Z",
    ]
    assert engine.get("quarterly/2031-03-07T09:45:00Z").result() == "report us"


def test_after_a_restart_only_the_latest_missed_firing_runs_by_default(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    first = where(clock)
    first.schedule("hourly", report, "eu", cron="0 * * * *")
    clock.set(utc(2031, 3, 7, 10))
    first.run_until_idle()
    assert ids(first) == ["hourly/2031-03-07T10:00:00Z"]
    first.close()
    clock.set(utc(2031, 3, 7, 15, 30))  # down for 11:00 to 15:00
    second = where(clock)
    second.run_until_idle()
    assert ids(second) == [
        "hourly/2031-03-07T10:00:00Z",
        "hourly/2031-03-07T15:00:00Z",
    ]
    clock.set(utc(2031, 3, 7, 16))  # and it keeps firing
    second.run_until_idle()
    assert ids(second)[-1] == "hourly/2031-03-07T16:00:00Z"
    assert len(ids(second)) == 3


def test_a_catchup_window_starts_the_missed_firings_within_it_in_order(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    first = where(clock)
    first.schedule(
        "hourly",
        report,
        "eu",
        cron="0 * * * *",
        overlap="allow",
        catchup_window=3 * HOUR,
    )
    first.close()
    clock.set(utc(2031, 3, 7, 15, 30))  # missed 10:00 to 15:00
    second = where(clock)
    second.run_until_idle()
    assert ids(second) == [
        "hourly/2031-03-07T13:00:00Z",
        "hourly/2031-03-07T14:00:00Z",
        "hourly/2031-03-07T15:00:00Z",
    ]


def test_a_firing_already_started_before_a_crash_is_not_started_again(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    engine = where(clock)
    engine.schedule("nightly", report, "eu", cron="0 3 * * *")
    # The state a crash leaves between the start of a firing's run and the row moving on:
    # the run exists, the schedule still says 03:00 is next.
    engine.start(report, "eu", id="nightly/2031-03-08T03:00:00Z")
    clock.set(utc(2031, 3, 8, 3))
    engine.run_until_idle()
    assert ids(engine) == ["nightly/2031-03-08T03:00:00Z"]
    assert len(engine.list_runs()) == 1  # one run, not two
    (row,) = engine.schedules()
    assert row.next_at == utc(2031, 3, 9, 3)
    assert row.last_workflow_id == "nightly/2031-03-08T03:00:00Z"


def test_two_engines_on_one_store_start_a_firing_once() -> None:
    # What a fleet does (both engines see the firing due): the second finds it handled.
    store = fg.MemoryStore()
    clock = ManualClock()
    one = fg.Engine(store=store, clock=clock)
    two = fg.Engine(store=store, clock=clock)
    one.schedule("nightly", report, "eu", cron="0 3 * * *")
    two.schedules()  # two has read the row
    clock.set(utc(2031, 3, 8, 3))
    one.run_until_idle()
    two.run_until_idle()
    assert [r.workflow_id for r in store.list_runs()] == [
        "nightly/2031-03-08T03:00:00Z"
    ]
    one.close()
    two.close()


def test_overlap_skip_skips_firings_while_the_previous_run_runs(
    where: OpenEngine,
) -> None:
    clock = ManualClock(autojump=False)
    engine = where(clock)
    engine.schedule("job", until_done, every=HOUR)  # overlap="skip" by default
    clock.set(utc(2031, 3, 7, 10))
    engine.run_until_idle()
    clock.set(utc(2031, 3, 7, 11))
    engine.run_until_idle()
    assert ids(engine) == ["job/2031-03-07T10:00:00Z"]  # 11:00 skipped
    engine.signal("job/2031-03-07T10:00:00Z", "done")
    engine.run_until_idle()
    clock.set(utc(2031, 3, 7, 12))
    engine.run_until_idle()
    assert ids(engine) == ["job/2031-03-07T10:00:00Z", "job/2031-03-07T12:00:00Z"]


def test_overlap_buffer_one_starts_one_firing_once_the_previous_run_closes(
    where: OpenEngine,
) -> None:
    clock = ManualClock(autojump=False)
    engine = where(clock)
    engine.schedule("job", until_done, every=HOUR, overlap="buffer_one")
    for hour in (10, 11, 12):  # 11:00 is kept, 12:00 dropped
        clock.set(utc(2031, 3, 7, hour))
        engine.run_until_idle()
    assert ids(engine) == ["job/2031-03-07T10:00:00Z"]
    assert engine.get_schedule("job").buffered_at == utc(2031, 3, 7, 11)
    engine.signal("job/2031-03-07T10:00:00Z", "done")
    engine.run_until_idle()
    assert ids(engine) == ["job/2031-03-07T10:00:00Z", "job/2031-03-07T11:00:00Z"]
    assert ids(engine, "running") == ["job/2031-03-07T11:00:00Z"]
    assert engine.get_schedule("job").buffered_at is None


def test_overlap_allow_starts_every_firing(where: OpenEngine) -> None:
    clock = ManualClock(autojump=False)
    engine = where(clock)
    engine.schedule("job", until_done, every=HOUR, overlap="allow")
    for hour in (10, 11):
        clock.set(utc(2031, 3, 7, hour))
        engine.run_until_idle()
    assert ids(engine, "running") == [
        "job/2031-03-07T10:00:00Z",
        "job/2031-03-07T11:00:00Z",
    ]


def test_jitter_delays_each_firing_by_the_same_amount_everywhere(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    engine = where(clock)
    row = engine.schedule("job", report, "eu", every=HOUR, jitter=timedelta(minutes=10))
    delay = row.fires_at - row.next_at
    assert timedelta(0) <= delay < timedelta(minutes=10)
    assert delay > timedelta(0)  # (this id and time hash to a non-zero delay)
    # Another store, another engine: the same delay for the same firing.
    elsewhere = fg.Engine(store=fg.MemoryStore(), clock=ManualClock())
    again = elsewhere.schedule("job", report, "eu", every=HOUR, jitter=600)
    elsewhere.close()
    assert again.fires_at == row.fires_at
    clock.set(row.next_at)
    engine.run_until_idle()
    assert ids(engine) == []  # scheduled, not yet fired
    clock.set(row.fires_at)
    engine.run_until_idle()
    assert ids(engine) == ["job/2031-03-07T10:00:00Z"]  # named by its scheduled time
    assert engine.get("job/2031-03-07T10:00:00Z").result() == "report eu"


def test_a_paused_schedule_starts_nothing_and_resumes_after_now(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    engine = where(clock)
    engine.schedule("hourly", report, "eu", cron="0 * * * *")
    paused = engine.pause_schedule("hourly", note="maintenance")
    assert paused.paused and paused.note == "maintenance"
    assert engine.pause_schedule("hourly", note="maintenance") == paused  # idempotent
    clock.set(utc(2031, 3, 7, 13, 30))
    engine.run_until_idle()
    assert ids(engine) == []
    resumed = engine.unpause_schedule("hourly")
    assert not resumed.paused
    assert resumed.next_at == utc(2031, 3, 7, 14)  # 10:00 to 13:00 are not caught up
    engine.run_until_idle()
    assert ids(engine) == []
    clock.set(utc(2031, 3, 7, 14))
    engine.run_until_idle()
    assert ids(engine) == ["hourly/2031-03-07T14:00:00Z"]


def test_a_pause_survives_a_restart(where: OpenEngine) -> None:
    clock = ManualClock()
    first = where(clock)
    first.schedule("hourly", report, "eu", cron="0 * * * *")
    first.pause_schedule("hourly")
    first.close()
    clock.set(utc(2031, 3, 7, 12))
    second = where(clock)
    # An application that declares its schedules at every start does not unpause them.
    second.schedule("hourly", report, "eu", cron="0 * * * *")
    second.run_until_idle()
    assert ids(second) == []
    assert second.get_schedule("hourly").paused


def test_a_deleted_schedule_fires_no_more_and_its_runs_stay(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    engine = where(clock)
    engine.schedule("hourly", report, "eu", cron="0 * * * *")
    clock.set(utc(2031, 3, 7, 10))
    engine.run_until_idle()
    engine.delete_schedule("hourly")
    assert engine.schedules() == []
    with pytest.raises(fg.UnknownSchedule, match="no schedule with id 'hourly'"):
        engine.get_schedule("hourly")
    with pytest.raises(fg.UnknownSchedule):
        engine.delete_schedule("hourly")
    with pytest.raises(fg.UnknownSchedule):
        engine.pause_schedule("hourly")
    clock.set(utc(2031, 3, 7, 12))
    engine.run_until_idle()
    assert ids(engine) == ["hourly/2031-03-07T10:00:00Z"]


def test_scheduling_again_keeps_the_same_definition_and_takes_a_new_one(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    engine = where(clock)
    first = engine.schedule("job", report, "eu", cron="0 3 * * *")
    assert engine.schedule("job", report, "eu", cron="0 3 * * *") == first
    engine.pause_schedule("job")
    changed = engine.schedule("job", report, "us", cron="30 4 * * *", overlap="allow")
    assert changed.args == ["us"] and changed.cron == "30 4 * * *"
    assert changed.overlap == "allow" and changed.paused
    assert changed.next_at == utc(2031, 3, 8, 4, 30)
    assert changed.created_at == first.created_at
    assert changed.revision > first.revision
    assert engine.schedules() == [changed]


def test_a_time_zone_reads_the_cron_expression_in_local_time(
    where: OpenEngine,
) -> None:
    engine = where(ManualClock())
    row = engine.schedule(
        "paris", report, "fr", cron="0 3 * * *", timezone="Europe/Paris"
    )
    assert row.next_at == utc(2031, 3, 8, 2)  # 03:00 CET
    assert row.timezone == "Europe/Paris"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, ValueError, "exactly one of cron="),
        ({"cron": "0 3 * * *", "every": 60}, ValueError, "not both"),
        ({"cron": "0 3 * *"}, ValueError, "has 4 fields"),
        ({"cron": "0 25 * * *"}, ValueError, "hour field: 25 is outside 0-23"),
        (
            {"cron": "0 3 * * *", "overlap": "queue"},
            ValueError,
            "overlap must be one of",
        ),
        ({"cron": "0 3 * * *", "timezone": "Nowhere/City"}, ValueError, "no IANA"),
        ({"every": 60, "timezone": "UTC"}, ValueError, "timezone= applies to cron="),
        ({"every": 0.5}, ValueError, "every must be a whole number"),
        ({"every": 60, "jitter": -1}, ValueError, "jitter must be >= 0"),
        ({"every": 60, "catchup_window": 0}, ValueError, "catchup_window must be > 0"),
        ({"every": 60, "jitter": "5m"}, TypeError, "jitter must be a timedelta"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_stored(
    where: OpenEngine, options: dict[str, object], error: type[Exception], message: str
) -> None:
    engine = where(ManualClock())
    with pytest.raises(error, match=message):
        engine.schedule("job", report, "eu", **options)  # type: ignore[arg-type]
    assert engine.schedules() == []


def test_an_unknown_workflow_or_an_unstorable_argument_is_refused(
    where: OpenEngine,
) -> None:
    engine = where(ManualClock())
    with pytest.raises(fg.UnknownWorkflow, match="no workflow named 'nope'"):
        engine.schedule("job", "nope", cron="0 3 * * *")
    with pytest.raises(TypeError, match="region"):
        engine.schedule("job", report, object(), cron="0 3 * * *")
    with pytest.raises(ValueError, match="schedule id must not be empty"):
        engine.schedule("", report, "eu", cron="0 3 * * *")
    assert engine.schedules() == []


def test_a_background_engine_fires_schedules_on_its_own(tmp_path: Path) -> None:
    clock = ManualClock()
    with fg.Engine(str(tmp_path / "app.duckdb"), clock=clock) as engine:
        engine.schedule("job", slow_report, "eu", every=HOUR)
        clock.set(utc(2031, 3, 7, 10))
        deadline = datetime.now(UTC) + timedelta(seconds=60)  # a hang guard only
        while not ids(engine) and datetime.now(UTC) < deadline:
            time.sleep(0.01)
        assert ids(engine) == ["job/2031-03-07T10:00:00Z"]
        clock.advance(timedelta(minutes=30))
        handle = engine.get("job/2031-03-07T10:00:00Z")
        assert handle.result(timeout=60) == "slow eu"


def test_the_async_engine_schedules_too(tmp_path: Path) -> None:
    from flowgen.aio import AsyncEngine

    clock = ManualClock()

    async def main() -> None:
        async with AsyncEngine(str(tmp_path / "app.duckdb"), clock=clock) as engine:
            row = await engine.schedule("job", report, "eu", every=HOUR)
            assert await engine.schedules() == [row]
            assert (await engine.pause_schedule("job", "wait")).paused
            assert not (await engine.unpause_schedule("job")).paused
            assert (await engine.get_schedule("job")).next_at == utc(2031, 3, 7, 10)
            clock.set(utc(2031, 3, 7, 10))
            while not (await engine.get_schedule("job")).last_workflow_id:
                await asyncio.sleep(0.01)
            handle = await engine.get("job/2031-03-07T10:00:00Z")
            assert await handle.result(timeout=60) == "report eu"
            await engine.delete_schedule("job")
            assert await engine.schedules() == []

    asyncio.run(asyncio.wait_for(main(), 120))  # a hang guard, not a speed target


def test_on_postgresql_one_store_at_a_time_holds_a_schedule_firing(pg_url: str) -> None:
    from flowgen._stores.postgres_store import PostgresStore

    one, two = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        assert one.lock_firing("nightly")
        assert not two.lock_firing("nightly")
        assert two.lock_firing("hourly")  # another schedule: free
        one.unlock_firing("nightly")
        assert two.lock_firing("nightly")
        two.close()  # a holder that goes away (or dies) gives it back, once its
        # server process has ended (a moment after the connection closed)
        deadline = time.monotonic() + 60  # a hang guard only
        while not one.lock_firing("nightly") and time.monotonic() < deadline:
            time.sleep(0.01)
        one.unlock_firing("nightly")
        assert one.lock_firing("nightly")
    finally:
        one.close()
        two.close()


def test_an_engine_leaves_a_firing_another_engine_holds(pg_url: str) -> None:
    from flowgen._stores.postgres_store import PostgresStore

    clock = ManualClock()
    engine = fg.Engine(pg_url, clock=clock)
    other = PostgresStore(pg_url)  # another engine's store, in the middle of firing
    try:
        engine.schedule("nightly", report, "eu", cron="0 3 * * *")
        assert other.lock_firing("nightly")
        clock.set(utc(2031, 3, 8, 3))
        engine.run_until_idle()
        assert ids(engine) == []
        other.unlock_firing("nightly")
        clock.advance(1)  # the engine looks again a moment later
        engine.run_until_idle()
        assert ids(engine) == ["nightly/2031-03-08T03:00:00Z"]
    finally:
        other.close()
        engine.close()


# A process that fires a schedule and is killed (kill -9) right after the firing's run is
# durable, before the schedule's row moves on: the worst moment for a crash.
KILLED_WHILE_FIRING = """
import os, signal, sys
from datetime import UTC, datetime
import flowgen as fg
from flowgen._stores.duckdb_store import DuckDBStore
from flowgen.testing import ManualClock
from tests.test_schedules import report

save = DuckDBStore.save_schedule

def save_or_die(self, schedule, *, expected_revision):
    if schedule.last_workflow_id is not None:  # the run is started and durable
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, schedule, expected_revision=expected_revision)

DuckDBStore.save_schedule = save_or_die
clock = ManualClock()
engine = fg.Engine(sys.argv[1], clock=clock)
engine.schedule("nightly", report, "eu", cron="0 3 * * *")
clock.set(datetime(2031, 3, 8, 3, tzinfo=UTC))
engine.run_until_idle()
print("not killed", flush=True)
"""


def test_killed_between_a_firing_and_its_record_the_run_starts_once(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "app.duckdb")
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_FIRING, db],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
    clock = ManualClock(utc(2031, 3, 8, 3, 0, 5))
    engine = fg.Engine(db, clock=clock)
    try:
        (row,) = engine.schedules()
        assert row.next_at == utc(2031, 3, 8, 3)  # the crash left the row behind
        engine.run_until_idle()
        assert ids(engine) == ["nightly/2031-03-08T03:00:00Z"]
        assert len(engine.list_runs()) == 1
        assert engine.get("nightly/2031-03-08T03:00:00Z").result() == "report eu"
        (row,) = engine.schedules()
        assert row.next_at == utc(2031, 3, 9, 3)
        assert row.last_workflow_id == "nightly/2031-03-08T03:00:00Z"
    finally:
        engine.close()


def test_a_schedule_of_a_workflow_this_engine_lacks_is_left_for_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    db = str(tmp_path / "app.duckdb")
    engine = fg.Engine(db, clock=clock)
    row = engine.schedule("nightly", report, "eu", cron="0 3 * * *")
    engine.close()
    # Another application's schedule: its workflow is not registered here.
    store = fg.DuckDBStore(db)
    assert store.save_schedule(
        attrs.evolve(row, workflow="elsewhere", revision=1), expected_revision=0
    )
    store.close()
    engine = fg.Engine(db, clock=clock)
    try:
        clock.set(utc(2031, 3, 8, 3))
        engine.run_until_idle()
        engine.run_until_idle()
        assert ids(engine) == []
        assert engine.get_schedule("nightly").next_at == utc(2031, 3, 8, 3)  # untouched
        warnings = [r for r in caplog.records if "does not register" in r.message]
        assert len(warnings) == 1  # said once
    finally:
        engine.close()


def test_a_closed_engine_refuses_schedule_calls(where: OpenEngine) -> None:
    engine = where(ManualClock())
    engine.close()
    with pytest.raises(fg.UsageError, match="this engine is closed"):
        engine.schedule("job", report, "eu", every=HOUR)
    with pytest.raises(fg.UsageError, match="this engine is closed"):
        engine.schedules()


def test_a_schedule_renders_itself_in_jupyter() -> None:
    engine = fg.Engine(":memory:", clock=ManualClock())
    row = engine.schedule(
        "nightly<1>", report, "eu", cron="0 3 * * *", jitter=timedelta(minutes=5)
    )
    page = row._repr_html_()  # type: ignore[attr-defined]
    assert "nightly&lt;1&gt;" in page  # escaped
    assert "report(&quot;eu&quot;)" in page
    assert "cron 0 3 * * *" in page and "up to 5m 00s" in page
    assert "2031-03-08 03:0" in page  # the next firing (jitter included)
    paused = engine.pause_schedule("nightly<1>", note="upgrade")
    assert "paused" in paused._repr_html_() and "upgrade" in paused._repr_html_()  # type: ignore[attr-defined]
    engine.close()


def test_overlap_sees_a_run_still_running_across_a_restart(where: OpenEngine) -> None:
    clock = ManualClock(autojump=False)
    first = where(clock)
    first.schedule("job", until_done, every=HOUR)
    clock.set(utc(2031, 3, 7, 10))
    first.run_until_idle()
    first.close()
    # Reopened: the 10:00 run (parked, waiting for its signal) still runs.
    second = where(clock)
    clock.set(utc(2031, 3, 7, 11))
    second.run_until_idle()
    assert ids(second) == ["job/2031-03-07T10:00:00Z"]  # 11:00 skipped
    second.signal("job/2031-03-07T10:00:00Z", "done")
    second.run_until_idle()
    clock.set(utc(2031, 3, 7, 12))
    second.run_until_idle()
    assert ids(second, "running") == ["job/2031-03-07T12:00:00Z"]
