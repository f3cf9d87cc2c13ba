"""Worker scaling alone: one caller and 1, 2 or 4 ``flowgen worker``s at several loads.

The ``workers`` shape of `benchmarks.fleet` (one caller process, an engine that runs no
workflow, keeping a number of three-step workflows in flight; N ``flowgen worker``
processes, ``--concurrency 8`` each, doing the work) at 16, 32 and 64 in flight in all,
every count at every load, alternated run by run, a few rounds. Each ratio N / 1 is taken
within its round (the same noise) and at the same offered load; N workers fed 16 in flight
each are also set against 1 worker at 16. Beside each run: the caller's and the workers'
CPU, PostgreSQL's, its WAL flushes per workflow and the load average (a shared machine
makes the absolute figures noisy; the ratios within a round less so).

    python -m benchmarks.fleet_scaling [ROUNDS [WORKFLOWS [STEP_CPU_MS]]]   # 3 x 1,000, 0 ms

With STEP_CPU_MS, each of the three activities burns that much CPU in the worker that runs
it (`benchmarks._workflows.STEP_CPU_ENV`): work in the activities, so that a worker process,
not PostgreSQL or the caller, is what one worker's throughput is bound by. With trivial
steps on two cores a worker uses about a third of a core and adding one adds nothing
(docs/fleet.md says why); with real work in the steps the workers are the bottleneck and
their number is what counts.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._workflows import STEP_CPU_ENV
from benchmarks.fleet import IN_FLIGHT, SERVER_SETTINGS, measure
from tests.pg_server import PostgresCluster


def scaling(
    rounds: int,
    n: int,
    counts: tuple[int, ...] = (1, 2, 4),
    loads: tuple[int, ...] = (16, 32, 64),
) -> dict[str, Any]:
    """``workers`` N for each N of *counts* at each load of *loads* (workflows in flight in
    all, from one caller process), alternated run by run, *rounds* times; each ratio N / 1
    is taken within its round and load (the same noise, the same offered load).


    """
    cluster = PostgresCluster(SERVER_SETTINGS)
    cluster.start()
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="flowgen-bench-scaling-") as tmp:
            for r in range(rounds):
                for in_flight in loads:
                    for count in counts:
                        tag = f"s{count}_{in_flight}_r{r}"
                        res = measure(
                            cluster, "workers", count, n, tag, Path(tmp), in_flight
                        )
                        # The caller first, then the workers (see run_fleet).
                        member_cpu = [m["cpu_s"] for m in res.pop("per_member")]
                        row = {
                            "round": r,
                            "workers": count,
                            "in_flight": in_flight,
                            "step_cpu_ms": float(os.environ.get(STEP_CPU_ENV) or 0),
                            "load_avg_1m": round(os.getloadavg()[0], 1),
                            "caller_cpu_ms_per_workflow": member_cpu[0] * 1000 / n,
                            "workers_cpu_ms_per_workflow": sum(member_cpu[1:])
                            * 1000
                            / n,
                            **res,
                        }
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        cluster.stop()
    return {"runs": rows, "ratios": scaling_ratios(rows)}


def scaling_ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """N / 1 workers' workflows/s within each round and load, and N workers at their
    load against 1 worker at 16 in flight (the offered load grown with the workers)."""
    rate = {
        (row["round"], row["in_flight"], row["workers"]): row["workflows_per_s"]
        for row in rows
    }
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, values: list[float]) -> None:
        if values:
            out[name] = {
                "median": round(statistics.median(values), 2),
                "runs": [round(v, 2) for v in values],
            }

    names = {(in_flight, count) for (_, in_flight, count) in rate if count != 1}
    for in_flight, count in sorted(names):
        add(
            f"{count}_vs_1_at_{in_flight}",
            [
                value / rate[(r, in_flight, 1)]
                for (r, f, c), value in rate.items()
                if f == in_flight and c == count and (r, in_flight, 1) in rate
            ],
        )
        if in_flight == IN_FLIGHT * count:
            add(
                f"{count}_at_{in_flight}_vs_1_at_{IN_FLIGHT}",
                [
                    value / rate[(r, IN_FLIGHT, 1)]
                    for (r, f, c), value in rate.items()
                    if f == in_flight and c == count and (r, IN_FLIGHT, 1) in rate
                ],
            )
    return out


if __name__ == "__main__":
    rounds_ = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n_arg = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    if len(sys.argv) > 3:
        os.environ[STEP_CPU_ENV] = sys.argv[3]  # the workers inherit it
    print(json.dumps(scaling(rounds_, n_arg), indent=1))
