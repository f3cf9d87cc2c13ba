"""kill -9 of the engine running a shared activity attempt, in the middle of the attempt.

An engine holds a run (the *holder*, in a process of its own) whose activity runs on the
task queue ``remote``, which only two ``flowgen worker`` processes serve: one of them takes
the attempt, counts and heartbeats, and is killed with ``kill -9`` mid-count. The workers
hold their tasks for a 60 s lease, far beyond the test: only the holder's heartbeat timeout
(2 s) can move the attempt. Then: the attempt failed as ``ActivityTimeout`` on its heartbeat
timeout, the retry ran on the other worker and resumed from the last heartbeat details the
database held, the run finished with its outcome recorded once, and nothing was left in
``fleet_tasks``.

Slow (real processes and real seconds): ``pytest -m slow tests/test_fleet_kill_attempt.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowgen._stores.postgres_store import PostgresStore
from tests.test_fleet import check_fenced_histories, rows
from tests.test_fleet_kill import _drain

ROOT = Path(__file__).resolve().parent.parent
HANG_GUARD = 120.0
"""The longest anything here may take (a hang guard, never a measure)."""

STEPS = 80
"""The activity counts this many steps, one per 0.1 s."""

HOLDER = """
import json
import sys
import flowgen as fg
from tests.fleet_app import fleet_resumed

url, steps = sys.argv[1], int(sys.argv[2])
options = fg.FleetOptions(share_activities=True, lease=5.0, poll=0.2)
with fg.Engine(url, fleet=options, task_queues=["default"]) as engine:
    handle = engine.start(fleet_resumed, steps, id="resumed")
    print(json.dumps(handle.result(timeout=120)), flush=True)
"""

WORKER = (
    sys.executable,
    "-m",
    "flowgen",
    "--db",
    "{url}",
    "worker",
    "--import=tests.fleet_app",
    "--share-activities",
    "--queue=remote",
    "--lease=60",
    "--poll=0.2",
)


def wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_of_the_engine_running_a_shared_attempt(pg_url: str) -> None:
    with PostgresStore(pg_url):  # the tables, before anything reads them
        pass
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [part.format(url=pg_url) for part in WORKER]
    workers = []
    for _ in range(2):
        worker = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        _drain(worker.stderr)
        workers.append(worker)
    try:
        with subprocess.Popen(
            [sys.executable, "-c", HOLDER, pg_url, str(STEPS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        ) as holder:
            _drain(holder.stderr)

            def counted() -> list[tuple[str, int]]:
                return rows(
                    pg_url,
                    "select taken_by, (details->>'step')::int from fleet_tasks "
                    "where attempt = 1 and details is not null",
                )

            # Mid-count (a tenth of the way at least), the worker running it is killed.
            wait_for(
                lambda: any(step >= STEPS // 10 for _, step in counted()),
                "the attempt counting",
            )
            ((taken_by, seen),) = counted()
            (victim,) = [w for w in workers if f":{w.pid}:" in taken_by]
            victim.kill()
            victim.wait(timeout=HANG_GUARD)
            assert holder.stdout is not None
            result = json.loads(holder.stdout.readline())
            assert holder.wait(timeout=HANG_GUARD) == 0
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait(timeout=HANG_GUARD)
    # The holder recorded what the dead worker left in the database as the first attempt's
    # last heartbeat; the retry, on the other worker, resumed from it.
    ((last,),) = rows(
        pg_url,
        "select payload->>'details' from events where kind = 'activity_heartbeat' "
        "and attempt = 1 order by event_id desc limit 1",
    )
    resumed_from = json.loads(last)
    assert resumed_from["step"] >= seen
    assert resumed_from["pid"] == victim.pid
    assert result == {"resumed_from": resumed_from, "attempt": 2}
    # The first attempt failed on its heartbeat timeout (the holder's doing: its task's
    # 60 s lease never lapsed), the second completed: one outcome, recorded once.
    outcomes = rows(
        pg_url,
        "select kind, attempt, payload->'error'->>'type', payload->'error'->>'message' "
        "from events where kind in ('activity_attempt_failed', 'activity_failed', "
        "'activity_completed') order by event_id",
    )
    assert [row[:3] for row in outcomes] == [
        ("activity_attempt_failed", 1, "ActivityTimeout"),
        ("activity_completed", 2, None),
    ]
    assert "sent no heartbeat for its 2 s heartbeat timeout" in outcomes[0][3]
    assert rows(pg_url, "select count(*) from fleet_tasks") == [(0,)]
    check_fenced_histories(pg_url)
