"""The fleet under fire: three ``flowgen worker`` processes, one killed with ``kill -9`` again
and again (and restarted), while a driver process starts runs and signals them.

Then: every start and signal the driver got an answer for is in the database, every run
finished with the result its inputs give, no outcome was recorded twice (one completion per
activity call, one fired timer, one signal each), and no run was written by two engines
(each history's fencing epochs never go back, and each epoch was claimed by one engine).
Takeover times (from a kill to the first claim of each run the dead worker held) are
printed: ``pytest -s tests/test_fleet_kill.py``.

The short test (one kill) runs in the normal suite; the long one is ``slow`` (CI's extended
part): ``pytest -m slow -s tests/test_fleet_kill.py``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import pytest

from tests.test_fleet import check_fenced_histories, rows

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 180.0
"""The longest the runs may take to finish once the driver is done (a hang guard)."""

LEASE, POLL = 1.0, 0.2
"""The workers' lease and polling: a dead worker's runs move within about 1.2 s."""

WORKER = (sys.executable, "-m", "flowgen")
WORKER_OPTIONS = (
    "--import=tests.fleet_app",
    "--concurrency=4",
    f"--lease={LEASE}",
    f"--poll={POLL}",
)

DRIVER = """
import sys
import time
import flowgen as fg
from tests.fleet_app import fleet_job

url, runs = sys.argv[1], int(sys.argv[2])
LAG = int(sys.argv[3])  # runs waiting for their signal at any moment: what a kill leaves
with fg.Engine(url, fleet=fg.FleetOptions(runs_workflows=False)) as client:
    for i in range(runs):
        time.sleep(0.02)  # a steady stream, so kills land among the runs
        client.start(fleet_job, i, id=f"run-{i}")
        print("started", i, flush=True)
        if i >= LAG:  # a run started a moment ago, held by a worker by now
            client.signal(f"run-{i - LAG}", "go", i - LAG)
            print("signalled", i - LAG, flush=True)
    for i in range(max(0, runs - LAG), runs):
        client.signal(f"run-{i}", "go", i)
        print("signalled", i, flush=True)
"""


@attrs.define
class Kill:
    pid: int
    at: float  # the server's clock (epoch seconds)
    held: list[str]  # run ids the worker held when it died


@attrs.define
class Fleet:
    url: str
    share_activities: bool = False
    workers: list[subprocess.Popen[str]] = attrs.field(factory=list)
    kills: list[Kill] = attrs.field(factory=list)

    def start_worker(self) -> subprocess.Popen[str]:
        worker = subprocess.Popen(
            [*WORKER, "--db", self.url, "worker", *WORKER_OPTIONS]
            + (["--share-activities"] if self.share_activities else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
        )
        _drain(worker.stderr)
        return worker

    def kill_one(self, rng: random.Random) -> None:
        index = rng.randrange(len(self.workers))
        victim = self.workers[index]
        victim.kill()
        victim.wait(timeout=60)
        ((now,),) = rows(self.url, "select extract(epoch from now())::float8")
        held = [
            run_id
            for (run_id,) in rows(
                self.url,
                "select run_id from workflows where status = 'running' "
                "and owner like %s",
                f"%:{victim.pid}:%",
            )
        ]
        self.kills.append(Kill(victim.pid, now, held))
        self.workers[index] = self.start_worker()

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def _drain(stream: IO[str] | None) -> None:
    """Read a worker's stderr in the background, so its pipe never fills."""

    def drain() -> None:
        with stream:
            stream.read()

    if stream is not None:
        threading.Thread(target=drain, daemon=True).start()


@pytest.fixture
def fleet(pg_url: str, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """Three workers; ``indirect`` parametrization True: they share activity attempts."""
    made = Fleet(pg_url, share_activities=getattr(request, "param", False))
    try:
        made.workers = [made.start_worker() for _ in range(3)]
        yield made
    finally:
        made.stop()


def under_fire(
    fleet: Fleet, runs: int, kills: int, seed: int, lag: int = 10
) -> dict[str, Any]:
    """Drive *runs* runs through the fleet while killing a worker *kills* times.

    The driver signals each run *lag* starts after starting it: about that many runs wait
    for their signal at any moment, held by the workers, for a kill to leave behind.
    """
    rng = random.Random(seed)
    started: set[int] = set()
    signalled: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-c", DRIVER, fleet.url, str(runs), str(lag)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    ) as driver:
        _drain(driver.stderr)
        assert driver.stdout is not None
        # Kill at random points while the driver works (and after, for what is left).
        failed: list[BaseException] = []
        going = threading.Event()
        killer = threading.Thread(
            target=_kill_at_random,
            args=(fleet, rng, kills, going, failed),
            daemon=True,
        )
        killer.start()
        for line in driver.stdout:
            going.set()
            what, number = line.split()
            (started.add if what == "started" else signalled.append)(int(number))
        going.set()
        assert driver.wait(timeout=HANG_GUARD) == 0
        killer.join(timeout=HANG_GUARD)
        if failed:
            raise failed[0]
    deadline = time.monotonic() + HANG_GUARD
    while rows(
        fleet.url, "select count(*) from workflows where status = 'running'"
    ) != [(0,)]:
        assert time.monotonic() < deadline, "the runs did not finish"
        time.sleep(0.2)
    fleet.stop()
    check_everything(fleet.url, started, signalled)
    return {
        "runs": len(started),
        "signals": len(signalled),
        "kills": len(fleet.kills),
        "takeovers": takeover_times(fleet),
    }


def _kill_at_random(
    fleet: Fleet,
    rng: random.Random,
    kills: int,
    going: threading.Event,
    failed: list[BaseException],
) -> None:
    going.wait(HANG_GUARD)  # the driver's first run is stored
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 1.5))
            fleet.kill_one(rng)
    except BaseException as exc:  # raised again on the test's thread
        failed.append(exc)


def check_everything(url: str, started: set[int], signalled: list[int]) -> None:
    # Every acknowledged start is there and finished with what its inputs give.
    results = dict(
        rows(
            url,
            "select workflow_id, result::text from workflows where status = %s",
            "completed",
        )
    )
    assert rows(url, "select count(*) from workflows where status <> 'completed'") == [
        (0,)
    ]
    for i in started:
        assert json.loads(results[f"run-{i}"]) == [2 * i, i, 4 * i], i
    # Every acknowledged signal is recorded, once.
    assert sorted(signalled) == sorted(started)
    received = rows(
        url,
        "select workflow_id, count(*) from events where kind = 'signal_received' "
        "group by workflow_id",
    )
    assert dict(received) == {f"run-{i}": 1 for i in started}
    # No outcome recorded twice: one completion per activity call, one fired timer.
    assert (
        rows(
            url,
            "select run_id, seq, kind, count(*) from events "
            "where kind in ('activity_completed', 'activity_failed', 'timer_fired') "
            "group by run_id, seq, kind having count(*) > 1",
        )
        == []
    )
    assert rows(url, "select count(*) from fleet_messages") == [(0,)]
    check_fenced_histories(url)


def takeover_times(fleet: Fleet) -> list[float]:
    """Seconds from each kill to the first claim after it of each run the dead worker held."""
    times: list[float] = []
    for kill in fleet.kills:
        for run_id in kill.held:
            claimed = rows(
                fleet.url,
                "select min(extract(epoch from claimed_at))::float8 from fleet_claims "
                "where run_id = %s and extract(epoch from claimed_at) > %s",
                run_id,
                kill.at,
            )[0][0]
            # A run the dead worker held moves only through a claim.
            assert claimed is not None, (
                f"run {run_id} of a dead worker was never claimed"
            )
            times.append(claimed - kill.at)
    return times


def report(stats: dict[str, Any]) -> str:
    takeovers = stats["takeovers"]
    shown = (
        f"takeover (kill -> claim) of {len(takeovers)} run(s): median "
        f"{statistics.median(takeovers):.2f} s, max {max(takeovers):.2f} s "
        f"(lease {LEASE} s + poll {POLL} s)"
        if takeovers
        else "no run was held by a killed worker"
    )
    return (
        f"fleet: {stats['runs']} runs, {stats['signals']} signals, {stats['kills']} "
        f"kill(s) -9 of 3 workers; {shown}"
    )


def test_a_fleet_of_three_workers_loses_nothing_to_a_kill(fleet: Fleet) -> None:
    stats = under_fire(fleet, runs=30, kills=1, seed=1)
    print(report(stats))
    assert stats["kills"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("fleet", [False, True], indirect=True, ids=["", "shared"])
def test_a_fleet_of_three_workers_loses_nothing_to_repeated_kills(fleet: Fleet) -> None:
    seed = int(os.environ.get("FLEET_SEED", "7"))
    stats = under_fire(fleet, runs=300, kills=12, seed=seed, lag=40)
    print(report(stats), "(activity attempts shared)" if fleet.share_activities else "")
    assert stats["kills"] == 12
