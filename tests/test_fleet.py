"""A fleet: many engines on one PostgreSQL database, each run held by one of them at a time.

Engines in this process (hand-driven, so nothing renews a lease unless the test says so)
and in other processes (killed with ``kill -9``, stopped with SIGTERM), all on the tests'
own PostgreSQL server (tests/pg.py). What they check: free runs are shared out and each is
run by one engine; signals reach a run another engine holds; an engine whose lease lapsed
cannot commit for the run (the fencing epoch); a dead engine's runs are taken over and
finish; ``flowgen worker`` hands its runs back when stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.postgres_store import PostgresStore
from flowgen._stores.protocol import Batch, EventRow
from flowgen._vocabulary.events import SignalReceived
from flowgen.cli.main import main
from tests.fleet_app import (
    fleet_bounded,
    fleet_bounded_job,
    fleet_double,
    fleet_gated,
    fleet_gpu_job,
    fleet_job,
    fleet_limited_job,
    fleet_on_gpu,
    fleet_parent,
)

HANG_GUARD = 60.0
"""The longest a test waits for something the fleet does in well under a second."""


def rows(url: str, statement: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as con:
        cursor = con.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def owner_of(engine: fg.Engine) -> str:
    assert isinstance(engine.store, PostgresStore)
    owner = engine.store.owner
    assert owner is not None
    return owner


def check_fenced_histories(url: str) -> None:
    """No run was written by two engines: along each history the epoch never goes back,
    and every epoch written at was claimed (``fleet_claims``: one owner per epoch)."""
    for (run_id,) in rows(url, "select run_id from workflows"):
        epochs = [
            e
            for (e,) in rows(
                url,
                "select epoch from events where run_id = %s order by event_id",
                run_id,
            )
        ]
        assert epochs == sorted(epochs), run_id
    assert rows(
        url,
        "select count(*) from events e where not exists (select 1 from fleet_claims "
        "c where c.run_id = e.run_id and c.epoch = e.epoch)",
    ) == [(0,)]


# -- sharing the work -------------------------------------------------------------------------


def test_free_runs_are_shared_out_and_each_is_run_by_one_engine(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    client = member(runs_workflows=False)
    for i in range(10):
        client.start(fleet_gated, i, id=f"g-{i}")
    # A client runs nothing: the runs are stored free, with their first event only.
    assert rows(pg_url, "select count(*) from workflows where owner is null") == [(10,)]
    assert rows(pg_url, "select count(*) from events") == [(10,)]
    first, second = member(claim_batch=6), member(claim_batch=6)  # each claims on open
    for i in range(10):
        client.signal(f"g-{i}", "go", i)  # the holder gets it as a message
    first.run_until_idle()
    second.run_until_idle()
    for i in range(10):
        assert client.get(f"g-{i}").result() == [i, 2 * i]
    claims = rows(
        pg_url,
        "select owner, count(*) from fleet_claims where epoch = 1 group by owner",
    )
    assert sorted(claims) == sorted([(owner_of(first), 6), (owner_of(second), 4)])
    # Each run's activity ran once, recorded once; every message was consumed.
    assert rows(
        pg_url,
        "select count(*), count(distinct run_id) from events "
        "where kind = 'activity_completed'",
    ) == [(10, 10)]
    assert rows(pg_url, "select count(*) from fleet_messages") == [(0,)]
    check_fenced_histories(pg_url)


def test_a_signal_and_a_childs_end_reach_the_engine_that_holds_the_run(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    first, second = member(), member()
    held = first.start(fleet_gated, 1, id="held-by-first")
    second.signal("held-by-first", "go", "from second")
    assert rows(pg_url, "select kind from fleet_messages") == [("signal",)]
    first.run_until_idle()
    assert held.result() == ["from second", 2]
    # A parent on one engine, its child handed to another: the child's end is posted.
    parent = first.start(fleet_parent, 5, id="parent")
    first.run_until_idle()
    assert isinstance(first.store, PostgresStore)
    child_run = first.store.get_run("parent/0")
    assert child_run is not None
    first.store.release([child_run.run_id])
    second.run_until_idle()  # claims the child
    assert rows(
        pg_url, "select owner from workflows where workflow_id = 'parent/0'"
    ) == [(owner_of(second),)]
    first.signal("parent/0", "go", "to the child")  # posted to the second engine
    second.run_until_idle()  # the child ends; the parent is the first engine's
    first.run_until_idle()
    assert parent.result() == ["to the child", 10]
    assert rows(pg_url, "select count(*) from fleet_messages") == [(0,)]
    check_fenced_histories(pg_url)


def test_an_attempt_one_engine_posts_runs_on_another(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    first = member(share_activities=True)
    second = member(share_activities=True)
    # Which engine ran each attempt shows in its result: the second one's is a fake.
    second.override_activity(fleet_double, lambda n: 1000 + n)
    handle = first.start(fleet_job, 3, id="shared")
    assert rows(pg_url, "select attempt, taken_by from fleet_tasks") == [(1, None)]
    second.run_until_idle()  # takes the attempt, runs it, posts its outcome to first
    assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
    assert rows(pg_url, "select kind from fleet_messages") == [("feed",)]
    first.signal("shared", "go", "s")
    first.run_until_idle()  # the outcome, then its own second attempt, taken by itself
    assert handle.result() == [1003, "s", 2006]
    assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
    assert rows(pg_url, "select count(*) from fleet_messages") == [(0,)]
    assert rows(
        pg_url, "select count(*) from events where kind = 'activity_completed'"
    ) == [(2,)]
    check_fenced_histories(pg_url)


def test_a_posted_attempt_runs_only_on_an_engine_serving_its_task_queue(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    first = member(share_activities=True)  # serves "default" only
    # Which engine ran the attempt shows in its result.
    first.override_activity(fleet_on_gpu, lambda n: -n)
    handle = first.start(fleet_gpu_job, 5, id="gpu")
    assert rows(pg_url, "select task_queue, taken_by from fleet_tasks") == [
        ("gpu", None)
    ]
    first.run_until_idle()  # it does not serve "gpu": the attempt waits for an engine
    assert rows(pg_url, "select task_queue, taken_by from fleet_tasks") == [
        ("gpu", None)
    ]
    assert handle.status() == "running"
    second = member(share_activities=True, task_queues=("default", "gpu"))
    second.override_activity(fleet_on_gpu, lambda n: 1000 + n)
    second.run_until_idle()  # takes the attempt, runs it, posts its outcome to first
    assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
    first.run_until_idle()
    assert handle.result() == 1005
    assert rows(
        pg_url, "select count(*) from events where kind = 'activity_completed'"
    ) == [(1,)]
    check_fenced_histories(pg_url)


def test_a_taken_attempt_waits_for_its_permit_counted_for_the_whole_fleet(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    first = member(share_activities=True)
    handle = first.start(fleet_limited_job, 2, id="limited")
    with PostgresStore(pg_url) as elsewhere:  # another engine runs one attempt already
        permits = elsewhere.permits()
        held = permits.take("running:fleet.one_at_a_time", 1)
        assert held is not None
        second = member(share_activities=True)
        second.run_until_idle()  # takes the attempt: it waits for the permit
        assert rows(pg_url, "select taken_by from fleet_tasks") == [(owner_of(second),)]
        [waiting] = second.waiting_activities()
        assert (waiting.workflow_id, waiting.waiting_for) == (
            "limited",
            "max_concurrent",
        )
        permits.give_back(held)
    second.run_until_idle()  # the permit is free: it runs, its outcome goes to first
    assert second.waiting_activities() == []
    assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
    first.run_until_idle()
    assert handle.result() == 8
    # Its permit was given back once its outcome was posted.
    with PostgresStore(pg_url) as elsewhere:
        assert elsewhere.permits().take("running:fleet.one_at_a_time", 1) is not None
    check_fenced_histories(pg_url)


def test_a_shared_attempt_past_its_timeout_fails_on_the_engine_that_ran_it(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    first = member(share_activities=True)
    second = member(share_activities=True)
    clock = second.clock
    assert isinstance(clock, ManualClock)

    def slow(n: int) -> int:  # runs 20 s of the second engine's clock
        clock.advance(20)
        return n

    second.override_activity(fleet_bounded, slow)
    handle = first.start(fleet_bounded_job, 1, id="bounded")
    second.run_until_idle()  # runs it past its 10 s: the outcome posted is a timeout
    assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
    first.run_until_idle()
    with pytest.raises(fg.WorkflowFailed, match="ran past its 10 s timeout"):
        handle.result()
    history = handle.history()
    (failed,) = [e for e in history if isinstance(e, fg.ActivityFailed)]
    assert failed.error.type == "ActivityTimeout"
    assert "ran past its 10 s timeout" in failed.error.message
    (ignored,) = [e for e in history if isinstance(e, fg.ActivityResultIgnored)]
    assert (ignored.attempt, ignored.outcome) == (1, "activity_completed")
    check_fenced_histories(pg_url)


def test_a_shared_attempts_heartbeat_details_reach_the_runs_history(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    first = member(share_activities=True)
    second = member(share_activities=True)

    def beating(n: int) -> int:
        fg.heartbeat({"done": "half"})
        return 7 * n

    second.override_activity(fleet_bounded, beating)
    handle = first.start(fleet_bounded_job, 1, id="beating")
    second.run_until_idle()  # runs it; its heartbeat note is forwarded to the holder
    first.run_until_idle()
    assert handle.result() == 7
    (note,) = [e for e in handle.history() if isinstance(e, fg.ActivityHeartbeat)]
    assert (note.attempt, note.details) == (1, {"done": "half"})
    check_fenced_histories(pg_url)


# -- fencing ----------------------------------------------------------------------------------


def test_an_engine_whose_lease_lapsed_cannot_commit_for_the_run(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    # Hand-driven engines renew nothing while idle: the first one's lease simply lapses.
    first, second = member(lease=0.5), member(lease=0.5)
    handle = first.start(fleet_gated, 3, id="moved")
    run_id = handle.run_id
    eventually(
        lambda: (
            second.run_until_idle() > 0
            and rows(pg_url, "select owner from workflows")[0][0] == owner_of(second)
        ),
        "the second engine claims the run once the first one's lease lapsed",
    )
    assert rows(pg_url, "select epoch from workflows") == [(2,)]
    # The first engine still holds the run in memory. Its store refuses a commit for it...
    assert isinstance(first.store, PostgresStore)
    late = SignalReceived(at=first.clock.now(), name="go", payload="late", index=0)
    ((stored,),) = rows(pg_url, "select count(*) from events")
    with pytest.raises(fg.LeaseLost) as lost:
        first.store.commit(Batch(events=[EventRow("moved", run_id, stored, late)]))
    assert lost.value.run_ids == {run_id}
    assert rows(pg_url, "select count(*) from events") == [(stored,)]
    # ... and its engine, told so by that commit, drops the run and posts the signal to
    # the engine that holds it now.
    first.signal("moved", "go", "via the new holder")
    with first._loop.lock:
        assert ("moved", run_id) not in first._loop.table.runs
    second.run_until_idle()
    assert handle.result() == ["via the new holder", 6]
    check_fenced_histories(pg_url)


def test_a_renewing_engine_keeps_its_runs(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    # Renewed every third of the lease: a stall of a whole lease would be needed to lose it.
    first = fg.Engine(pg_url, fleet=fg.FleetOptions(lease=2.0, poll=0.1))
    with first:
        first.start(fleet_gated, 4, id="kept")
        second = member(lease=2.0)
        until = time.monotonic() + 3.0  # more than a lease
        while time.monotonic() < until:
            second.run_until_idle()
            time.sleep(0.05)
        assert rows(pg_url, "select owner, epoch from workflows") == [
            (owner_of(first), 1)
        ]
        second.signal("kept", "go", "kept")
        assert first.get("kept").result(timeout=HANG_GUARD) == ["kept", 8]


# -- takeover ---------------------------------------------------------------------------------

HOLDER = """
import sys
import flowgen as fg
from tests.fleet_app import fleet_gated

engine = fg.Engine(sys.argv[1], fleet=fg.FleetOptions(lease=1.0, poll=0.2))
engine.start_background()
for i in range(5):
    engine.start(fleet_gated, i, id=f"k-{i}")
print(engine.store.owner, flush=True)
sys.stdin.read()
"""


def test_a_killed_engines_runs_are_taken_over_and_finish(pg_url: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        dead = holder.stdout.readline().strip()
        assert dead
        holder.kill()
        holder.wait(timeout=HANG_GUARD)
    options = fg.FleetOptions(lease=1.0, poll=0.2)
    with fg.Engine(pg_url, fleet=options) as heir:
        for i in range(5):
            heir.signal(f"k-{i}", "go", i)
        for i in range(5):
            assert heir.get(f"k-{i}").result(timeout=HANG_GUARD) == [i, 2 * i]
        heir_name = owner_of(heir)
    assert sorted(
        rows(pg_url, "select epoch, owner, count(*) from fleet_claims group by 1, 2")
    ) == [(1, dead, 5), (2, heir_name, 5)]
    check_fenced_histories(pg_url)


# -- flowgen worker ---------------------------------------------------------------------------


WORKER = (sys.executable, "-m", "flowgen")


def test_flowgen_worker_runs_the_fleets_work_and_hands_it_back_on_sigterm(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    client = member(runs_workflows=False)
    client.start(fleet_gated, 1, id="first")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with subprocess.Popen(
        [
            *WORKER,
            "--db",
            pg_url,
            "worker",
            "--import",
            "tests.fleet_app",
            "--concurrency=2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as worker:
        eventually(
            lambda: rows(pg_url, "select owner from workflows")[0][0] is not None,
            "the worker claims the run",
        )
        client.signal("first", "go", "one")
        eventually(
            lambda: rows(pg_url, "select status from workflows") == [("completed",)],
            "the worker runs it to its end",
        )
        client.start(fleet_gated, 2, id="second")
        eventually(
            lambda: (
                rows(
                    pg_url, "select owner from workflows where workflow_id = 'second'"
                )[0][0]
                is not None
            ),
            "the worker claims the second run",
        )
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=HANG_GUARD)
    assert worker.returncode == 0, err
    assert "handed back" in out
    # Handed back: no owner, no lease: the next engine takes it at once.
    assert rows(
        pg_url,
        "select owner, lease_expires_at from workflows where workflow_id = 'second'",
    ) == [(None, None)]
    heir = member()
    heir.signal("second", "go", "two")
    heir.run_until_idle()
    assert heir.get("second").result() == ["two", 4]
    assert client.get("first").result() == ["one", 2]
    check_fenced_histories(pg_url)


def test_worker_fleet_options_are_refused_on_a_duckdb_file(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "a.duckdb")
    fg.Engine(path).close()
    argv = ["--db", path, "worker", "--import", "tests.fleet_app", "--lease", "2"]
    assert main([*argv, "--share-activities"]) == 1
    assert "--lease and --share-activities apply to a fleet on PostgreSQL" in (
        capsys.readouterr().err
    )


def test_fleet_options_are_checked_and_need_postgresql(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="lease must be > 0"):
        fg.FleetOptions(lease=0)
    with pytest.raises(ValueError, match="poll must be > 0"):
        fg.FleetOptions(poll=-1)
    with pytest.raises(ValueError, match="claim_batch must be >= 1"):
        fg.FleetOptions(claim_batch=0)
    with pytest.raises(ValueError, match="postgresql://"):
        fg.Engine(str(tmp_path / "a.duckdb"), fleet=fg.FleetOptions())


def test_job_runs_on_one_engine(pg_url: str, member: Callable[..., fg.Engine]) -> None:
    engine = member()
    handle = engine.start(fleet_job, 3, id="fleet_job")
    engine.signal("fleet_job", "go", "s")
    engine.run_until_idle()
    assert handle.result() == [6, "s", 12]
