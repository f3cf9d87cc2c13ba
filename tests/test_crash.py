"""kill -9 at random points, restart, repeat: nothing acknowledged is lost, nothing doubles.

A subprocess (``tests/crash_worker.py``) runs a mixed workload on a DuckDB file in background
mode and acknowledges each start and signal in an ``acks`` file after the engine call
returned. The test SIGKILLs it at seeded random moments (some during the open and its
recovery, most while it works), restarts it (which resumes), and finally lets it finish.
Then it checks, on the file:

* every acknowledged start has its run; every acknowledged signal is in its target's history
  exactly once (and every signal a workflow sent, exactly once);
* each run's event ids are 0..n-1, and per (run, seq) at most one outcome was recorded (per
  attempt at most one attempt outcome);
* every workflow finished with the right result (the saga failed after compensating);
* every recorded activity attempt was executed (the executions log has it), so executions
  are at least one per recorded call;
* every stored history replays under the workflow code to the stored status.

``python -m pytest -m slow tests/test_crash.py`` runs the long variant (>= 200 kill points).
"""

from __future__ import annotations

import collections
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

import flowgen as fg
from flowgen._stores.codec import CODEC
from tests import crash_worker

REPO = Path(__file__).resolve().parent.parent

OUTCOME_KINDS = (
    "activity_completed",
    "activity_failed",
    "timer_fired",
    "child_completed",
    "child_failed",
    "signal_timed_out",
    "side_effect_recorded",
    "signal_sent",
    "signal_send_failed",
    "command_cancelled",
)
ATTEMPT_KINDS = ("activity_attempt_failed", "activity_completed", "activity_failed")


@attrs.define
class Figures:
    kill_points: int = 0
    killed_before_ready: int = 0
    acked_starts: int = 0
    acked_signals: int = 0
    lost: int = 0
    duplicated: int = 0
    recorded_attempts: int = 0
    executions: int = 0
    progress: list[tuple[int, int]] = attrs.field(
        factory=list
    )  # (acks, executions) per kill

    @property
    def re_executions(self) -> int:
        return self.executions - self.recorded_attempts


def spawn(db: Path, directory: Path, seed: int, size: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    stderr = open(directory / "stderr", "ab")  # the child owns it
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.crash_worker",
                str(db),
                str(directory),
                str(seed),
                str(size),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    finally:
        stderr.close()


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return bool(ready) and proc.stdout.readline().strip() == b"ready"


def kill_loop(tmp_path: Path, seed: int, kills: int, size: int = 1) -> Figures:
    """Run the workload for *seed*, SIGKILLing it *kills* times, then to completion.

    A life that finished before its kill point does not count; the next one resumes.
    """
    db, directory = tmp_path / "crash.duckdb", tmp_path
    rng = random.Random(seed)
    figures = Figures()
    lives = 0
    while figures.kill_points < kills:
        lives += 1
        assert lives <= 3 * kills, "the worker kept finishing before its kill point"
        proc = spawn(db, directory, seed, size)
        ready = False
        if rng.random() < 0.2:
            time.sleep(rng.uniform(0.0, 1.5))  # often inside the open and its recovery
        elif wait_ready(proc, timeout=60):
            ready = True
            time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            figures.kill_points += 1
            figures.killed_before_ready += not ready
        proc.wait(timeout=60)
        figures.progress.append(
            (lines(directory / "acks"), lines(directory / "executions"))
        )
        assert proc.stdout is not None
        proc.stdout.close()
    proc = spawn(db, directory, seed, size)
    try:
        returncode = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stdout is not None
        proc.stdout.close()
    stderr = (directory / "stderr").read_text(errors="replace")
    assert returncode == 0, stderr[-3000:]
    assert "done" in (directory / "acks").read_text().splitlines()
    check_invariants(db, directory, crash_worker.plan(seed, size), figures)
    return figures


def check_invariants(
    db: Path,
    directory: Path,
    ops: list[crash_worker.Start | crash_worker.Signal],
    figures: Figures,
) -> None:
    from flowgen._stores.duckdb_store import DuckDBStore

    acks = set((directory / "acks").read_text().splitlines())
    executions = collections.Counter(
        tuple(line.split()[:4])
        for line in (directory / "executions").read_text().splitlines()
    )
    figures.executions = sum(executions.values())
    store = DuckDBStore(str(db))
    try:
        runs = store.list_runs()
        histories = store.load_histories([(r.workflow_id, r.run_id) for r in runs])
        by_id = {r.workflow_id: store.get_run(r.workflow_id) for r in runs}

        # Nothing acknowledged is lost; no signal doubles.
        for op in ops:
            if op.ack not in acks:
                continue
            if isinstance(op, crash_worker.Start):
                figures.acked_starts += 1
                figures.lost += by_id.get(op.workflow_id) is None
            else:
                figures.acked_signals += 1
                target = by_id[op.workflow_id]
                assert target is not None
                got = [
                    e
                    for e in histories[target.workflow_id, target.run_id]
                    if isinstance(e, fg.SignalReceived)
                    and e.sender is None
                    and e.payload == op.payload
                ]
                figures.lost += not got
                figures.duplicated += max(0, len(got) - 1)
        for record in runs:
            history = histories[record.workflow_id, record.run_id]
            senders = collections.Counter(
                e.sender
                for e in history
                if isinstance(e, fg.SignalReceived) and e.sender
            )
            figures.duplicated += sum(n - 1 for n in senders.values())
            indexes = [e.index for e in history if isinstance(e, fg.SignalReceived)]
            assert indexes == list(range(len(indexes))), record.workflow_id

        # Histories are contiguous; per (run, seq) at most one outcome, per attempt one.
        rows = store.sql(
            "select run_id, count(*), min(event_id), max(event_id) from events group by run_id"
        ).fetchall()
        for run_id, count, lowest, highest in rows:
            assert (lowest, highest) == (0, count - 1), run_id
        doubled = store.sql(
            "select run_id, seq, count(*) from events where kind in "
            f"({', '.join(repr(k) for k in OUTCOME_KINDS)}) group by run_id, seq "
            "having count(*) > 1"
        ).fetchall()
        doubled_attempts = store.sql(
            "select run_id, seq, attempt, count(*) from events where kind in "
            f"({', '.join(repr(k) for k in ATTEMPT_KINDS)}) group by all "
            "having count(*) > 1"
        ).fetchall()
        figures.duplicated += len(doubled) + len(doubled_attempts)

        # Every recorded attempt was executed at least once.
        attempts = store.sql(
            "select workflow_id, run_id, seq, attempt from events where kind in "
            f"({', '.join(repr(k) for k in ATTEMPT_KINDS)})"
        ).fetchall()
        figures.recorded_attempts = len(attempts)
        unexecuted = [a for a in attempts if executions[tuple(str(x) for x in a)] < 1]
        assert unexecuted == [], unexecuted[:5]
        calls = store.sql(
            "select count(*) from events where kind = 'activity_scheduled'"
        ).fetchall()[0][0]
        assert calls <= figures.executions

        # Every workflow finished right; every history replays to its stored status.
        for workflow_id, (status, result) in crash_worker.expected_results(ops).items():
            record = by_id.get(workflow_id)
            assert record is not None, workflow_id
            assert record.status == status, (workflow_id, record.status, record.error)
            if status == "completed":
                assert record.result == result, workflow_id
        for op in ops:
            if isinstance(op, crash_worker.Start) and op.name == "crash_saga":
                saga = by_id[op.workflow_id]
                assert saga is not None
                assert saga.error is not None
                assert "Declined" in saga.error.message
                undo = [
                    e.args
                    for e in histories[saga.workflow_id, saga.run_id]
                    if isinstance(e, fg.ActivityScheduled) and e.name == "crash_undo"
                ]
                key = op.args[0]
                assert undo == [[f"flight-{key}"], [f"hotel-{key}"]]
            if isinstance(op, crash_worker.Start) and op.name == "crash_rounds":
                rounds = [r for r in runs if r.workflow_id == op.workflow_id]
                assert sorted(r.status for r in rounds) == [
                    "completed",
                    "continued_as_new",
                    "continued_as_new",
                ]
        for record in runs:
            assert record.status != "running", record.workflow_id
            replayed = fg.replay(
                crash_worker.WORKFLOWS[record.name],
                histories[record.workflow_id, record.run_id],
                codec=CODEC,
            )
            assert replayed.status.value == record.status, record.workflow_id
    finally:
        store.close()
    assert figures.lost == 0
    assert figures.duplicated == 0


def report(figures: Figures, **extra: Any) -> None:
    line = json.dumps(
        {**attrs.asdict(figures), "re_executions": figures.re_executions, **extra}
    )
    print(f"kill -9 figures: {line}")


def test_kill_9_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    figures = kill_loop(tmp_path, seed=1, kills=5)
    report(figures, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_kill_9_loop_over_many_seeds(tmp_path: Path, seed: int) -> None:
    # 20 seeds x 10 kill points: 200 kill points in all.
    figures = kill_loop(tmp_path, seed=seed, kills=10, size=3)
    report(figures, seed=seed)
