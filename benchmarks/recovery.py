"""Recovery: N workflows killed mid-way with kill -9, then the time to finish them all.

1. Phase 1 (a worker process, background engine on a DuckDB file): start N ``three_steps``
   workflows; step three blocks forever (the environment variable
   ``FLOWGEN_BENCH_BLOCK_STEP3=1`` is set for this process only; the workflow code is the
   same in both phases). Steps one and two are durable once step three has begun (its
   ``activity_scheduled`` was committed before it ran), so when all N have entered step
   three the worker says so, and the parent waits 0.5 s and sends SIGKILL.
2. Phase 2 (a fresh worker): the clock starts just before ``fg.Engine(path)`` (the open
   recovers every unfinished run: replays its history, runs step three again) and stops when
   a query polled every 10 ms (as in the DBOS measurement) sees all N ``completed``. Reported beside it: how many step executions phase 2 ran
   (steps one and two must be 0: they were checkpointed).

Against DBOS Transact 3.4 doing the same (``benchmarks/peers/dbos_bench.py recovery``: clock
from just before ``DBOS(...)`` until all N are ``SUCCESS``).

    python -m benchmarks.recovery --worker start PATH 200
    python -m benchmarks.recovery --worker resume PATH 200
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ROOT,
    Config,
    child_env,
    emit,
    figure,
    ratios,
    run_worker,
    worker_cmd,
)

ID_PREFIX = "recovery-"


def worker_start(path: str, n: int) -> None:
    import flowgen as fg
    from benchmarks import _workflows as w

    engine = fg.Engine(path, max_workers=n + 8)
    engine.start_background()
    for i in range(n):
        engine.start(w.three_steps, i, id=f"{ID_PREFIX}{i:05d}")
    while w.entered_step_three < n:
        time.sleep(0.01)
    print("ready", flush=True)
    time.sleep(3600)  # until kill -9


def worker_resume(path: str, n: int) -> dict[str, Any]:
    import flowgen as fg
    from benchmarks import _workflows as w

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    engine = fg.Engine(path)
    opened = time.perf_counter() - t0
    with engine as e:
        # Like the DBOS measurement: poll the status table every 10 ms until all are done
        # (each handle's result() would add its own reads to the clock), then check results.
        done_sql = (
            "select count(*) from workflows "
            f"where workflow_id like '{ID_PREFIX}%' and status = 'completed'"
        )
        deadline = t0 + 120
        while e.sql(done_sql).fetchall()[0][0] < n:
            if time.perf_counter() > deadline:
                raise TimeoutError("recovery did not finish in 120 s")
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        for i in range(n):
            assert e.get(f"{ID_PREFIX}{i:05d}").result(timeout=120) == i + 3
    return {
        "workflows": n,
        "recovery_wall_s": wall,
        "open_s": opened,
        "cpu_s": cpu,
        "step_executions_in_recovery": dict(w.step_executions),
        "checkpointed_steps_rerun": w.step_executions["step_one"]
        + w.step_executions["step_two"],
    }


def measure(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="flowgen-bench-recovery-") as tmp:
        path = str(Path(tmp) / "recovery.duckdb")
        env = child_env()
        env["FLOWGEN_BENCH_BLOCK_STEP3"] = "1"
        start = time.perf_counter()
        proc = subprocess.Popen(
            worker_cmd("recovery", "start", path, n),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                proc.kill()
                raise RuntimeError(
                    f"phase 1 did not get ready: {line!r}\n{proc.stderr.read() if proc.stderr else ''}"
                )
            phase1 = time.perf_counter() - start
            time.sleep(0.5)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        resumed = run_worker("recovery", "resume", path, n)
    resumed["phase1_s"] = phase1
    resumed["killed_with"] = "SIGKILL"
    return resumed


def run(cfg: Config) -> dict[str, Any]:
    n = 50 if cfg.quick else 200
    peer_note = cfg.peer_note("dbos")
    peer = not peer_note
    mine: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for r in range(cfg.repeats):
        res = measure(n)
        mine.append(res)
        cfg.log(
            f"  recovery run {r + 1}: {res['recovery_wall_s']:.2f} s "
            f"(open {res['open_s']:.2f} s), steps re-run {res['checkpointed_steps_rerun']}"
        )
        if peer:
            from benchmarks.peers import dbos_bench

            d = dbos_bench.run_recovery(n)
            theirs.append(d)
            cfg.log(f"  recovery DBOS run {r + 1}: {d['recovery_wall_s']:.2f} s")
    fg_s = [res["recovery_wall_s"] for res in mine]
    dbos_s = [d["recovery_wall_s"] for d in theirs] if peer else None
    rerun = max(res["checkpointed_steps_rerun"] for res in mine)
    figures = [
        figure(
            "recovery.wall",
            f"recovery of {n} workflows killed mid-way (kill -9): open -> all done",
            "s",
            fg_s,
            anchor_name="DBOS 3.4 (SQLite), same",
            anchor=dbos_s,
            ratio=ratios(dbos_s, fg_s) if dbos_s else None,
            ratio_text="DBOS / flowgen",
            target=">= 5x faster",
            met=lambda x: x >= 5,
            note=(peer_note + "; " if not peer else "")
            + f"checkpointed steps run again: {rerun}",
        ),
    ]
    return {
        "params": {"workflows": n},
        "figures": figures,
        "raw": {"flowgen": mine, "dbos": theirs},
    }


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        what, path_, n_ = sys.argv[2:5]
        if what == "start":
            worker_start(path_, int(n_))
        else:
            emit(worker_resume(path_, int(n_)))
    else:
        sys.exit("usage: python -m benchmarks.recovery --worker start|resume PATH N")
