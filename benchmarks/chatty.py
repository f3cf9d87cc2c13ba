"""A chatty workflow: one workflow of N sequential trivial activities, CPU and wall per step.

One worker process, background engine on a DuckDB file (``with fg.Engine(path) as e``, the
default journal): a warm-up workflow of ``WARMUP`` steps, then one ``bench.many_steps``
workflow of N steps (N = 2,000; 200 with ``--quick``), started and awaited from the main
thread. Every step is a decision made durable (the activity's outcome and the next call) and
an activity run on the pool, so the figure is the engine's fixed cost per step.

Reported: CPU ms per step (``time.process_time`` over the whole process, all threads, from
the start to the result) and wall ms per step, against DBOS Transact 3.4 doing the same (one
workflow of N sequential ``@DBOS.step`` calls on its SQLite system database, in its own
fresh process, measured alternately run by run); and CPU ms per step against the fixed
target of 0.2 ms (issue 10, item 9).

    python -m benchmarks.chatty --worker 2000
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Config, emit, figure, ratios, run_worker, within_limit

#: Steps of the unmeasured warm-up workflow run first in the same process (imports, the
#: pool's threads, DuckDB's first statements).
WARMUP = 50
#: The target of issue 10, item 9: CPU ms per step of a chatty workflow.
TARGET_CPU_MS = 0.2


def worker(n: int) -> dict[str, Any]:
    import flowgen as fg
    from benchmarks._workflows import many_steps

    with tempfile.TemporaryDirectory(prefix="flowgen-bench-chatty-") as tmp:
        path = str(Path(tmp) / "chatty.duckdb")
        with fg.Engine(path) as e:
            assert e.start(many_steps, WARMUP).result(timeout=600) == sum(
                range(1, WARMUP + 1)
            )
            wall0 = time.perf_counter()
            cpu0 = time.process_time()
            total = e.start(many_steps, n).result(timeout=1800)
            cpu_s = time.process_time() - cpu0
            wall_s = time.perf_counter() - wall0
            assert total == n * (n + 1) // 2, total
            commits = e.commits
    return {
        "steps": n,
        "warmup_steps": WARMUP,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "cpu_ms_per_step": cpu_s * 1000.0 / n,
        "wall_ms_per_step": wall_s * 1000.0 / n,
        "commits": commits,
    }


def run(cfg: Config) -> dict[str, Any]:
    n = 200 if cfg.quick else 2000
    peer_note = cfg.peer_note("dbos")
    peer = not peer_note
    runs: dict[str, list[dict[str, Any]]] = {"flowgen": [], "dbos": []}
    for r in range(cfg.repeats):
        res = run_worker("chatty", n)
        runs["flowgen"].append(res)
        cfg.log(
            f"  chatty run {r + 1}: {n} steps, {res['cpu_ms_per_step']:.3f} CPU ms/step, "
            f"{res['wall_ms_per_step']:.3f} wall ms/step"
        )
        if peer:
            from benchmarks.peers import dbos_bench

            peer_res = dbos_bench.run_chatty(n, warmup=WARMUP)
            runs["dbos"].append(peer_res)
            cfg.log(
                f"  chatty DBOS run {r + 1}: {peer_res['cpu_ms_per_step']:.3f} CPU ms/step, "
                f"{peer_res['wall_ms_per_step']:.3f} wall ms/step"
            )

    def values(side: str, key: str) -> list[float | None]:
        return [res[key] for res in runs[side]]

    def anchor(key: str) -> list[float | None] | None:
        return values("dbos", key) if peer else None

    def against(key: str) -> list[float | None] | None:
        return ratios(values("flowgen", key), values("dbos", key)) if peer else None

    dbos_name = "DBOS 3.4 (SQLite), one workflow of the same steps"
    label = f"one workflow of {n:,} sequential trivial activities"
    figures = [
        within_limit(
            "chatty.cpu_per_step_target",
            f"CPU per step, {label}",
            "CPU ms/step",
            values("flowgen", "cpu_ms_per_step"),
            limit=TARGET_CPU_MS,
            limit_name=f"{TARGET_CPU_MS} ms",
            note="process CPU, all threads, start -> result",
        ),
        figure(
            "chatty.cpu_per_step_vs_dbos",
            f"CPU per step, {label}",
            "CPU ms/step",
            values("flowgen", "cpu_ms_per_step"),
            anchor_name=dbos_name,
            anchor=anchor("cpu_ms_per_step"),
            ratio=against("cpu_ms_per_step"),
            ratio_text="flowgen / DBOS",
            target="(reported)",
            note=peer_note,
        ),
        figure(
            "chatty.wall_per_step_vs_dbos",
            f"wall time per step, {label}",
            "ms/step",
            values("flowgen", "wall_ms_per_step"),
            anchor_name=dbos_name,
            anchor=anchor("wall_ms_per_step"),
            ratio=against("wall_ms_per_step"),
            ratio_text="flowgen / DBOS",
            target="(reported)",
            note=peer_note,
        ),
    ]
    return {
        "params": {"steps": n, "warmup_steps": WARMUP},
        "figures": figures,
        "raw": runs,
    }


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--worker":
        emit(worker(int(sys.argv[2])))
    else:
        sys.exit("usage: python -m benchmarks.chatty --worker STEPS")
