"""Group commit on a DuckDB file: decisions/s with 1, 10 and 100 runs per commit.

A *decision* is what one workflow step writes: two events (an activity's completion and the
next activity's scheduling) and one row change of its run (new tags). The engine gathers the
decisions of many runs into one `Batch`, and `DuckDBStore.commit` makes a batch durable
at once. Both ways a store commits are measured, alternately: ``direct`` (one DuckDB
transaction per batch: how far sharing the ~2 ms transaction goes) and ``journal`` (the
default: one fsync'd journal record per batch, the rows moved into DuckDB in big
transactions; that moving is inside the timing, the last of it by a ``flush()``).

Each case runs for ``--seconds`` on a fresh file with ``--runs`` started runs (plus
``--preload`` extra events, to measure against a table that is not empty), and reports
decisions/s, commits/s, wall ms per commit and process CPU ms per commit. The last line of
output is one JSON object with every number.

Usage:
    python benchmarks/store_commit.py
    python benchmarks/store_commit.py --sizes 1,10,100 --seconds 5 --preload 1000000
    python benchmarks/store_commit.py --modes direct
    python benchmarks/store_commit.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta

import duckdb

from flowgen._stores.duckdb_store import DuckDBStore
from flowgen._stores.protocol import Batch, EventRow, RunUpdate, WorkflowRecord
from flowgen._vocabulary.events import (
    ActivityCompleted,
    ActivityScheduled,
    WorkflowStarted,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_store(
    path: str, runs: int, preload: int, journal: bool
) -> tuple[DuckDBStore, dict[str, int]]:
    """A store with *runs* started runs, and *preload* more events in other runs."""
    store = DuckDBStore(path, journal=journal)
    next_ids: dict[str, int] = {}
    batch = Batch()
    for i in range(runs):
        wf, run = f"order-{i}", f"run-{i:06d}"
        batch.runs.append(WorkflowRecord(wf, run, "order", "running", [i], {}, T0))
        batch.events.append(
            EventRow(wf, run, 0, WorkflowStarted(T0, wf, run, "order", [i]))
        )
        batch.events.append(
            EventRow(wf, run, 1, ActivityScheduled(T0, 0, "charge", [i, 10.0]))
        )
        next_ids[run] = 2
    store.commit(batch)
    done = 0
    while done < preload:  # old, closed runs of 50 events each, 100 runs per commit
        batch = Batch()
        for _ in range(100):
            if done >= preload:
                break
            wf, run = f"old-{done}", f"old-run-{done:09d}"
            batch.runs.append(WorkflowRecord(wf, run, "order", "completed", [], {}, T0))
            count = min(50, preload - done)
            batch.events.extend(
                EventRow(wf, run, k, ActivityScheduled(T0, k, "charge", [k]))
                for k in range(count)
            )
            done += count
        store.commit(batch)
    store.checkpoint()
    return store, next_ids


def decision_batch(
    runs: list[str], next_ids: dict[str, int], step: int, now: datetime
) -> Batch:
    """One decision (2 events + 1 update) for each run in *runs*."""
    batch = Batch()
    for run in runs:
        wf = "order-" + str(int(run.split("-")[1]))
        n = next_ids[run]
        seq = (n - 1) // 2
        batch.events.append(
            EventRow(
                wf,
                run,
                n,
                ActivityCompleted(now, seq, {"receipt": step}, 1, now),
            )
        )
        batch.events.append(
            EventRow(wf, run, n + 1, ActivityScheduled(now, seq + 1, "ship", [step]))
        )
        batch.updates.append(RunUpdate(wf, run, tags={"step": step}))
        next_ids[run] = n + 2
    return batch


def measure(
    size: int, mode: str, args: argparse.Namespace, directory: str
) -> dict[str, float | str]:
    path = os.path.join(directory, f"commit-{mode}-{size}.duckdb")
    store, next_ids = make_store(
        path, max(args.runs, size), args.preload, journal=mode == "journal"
    )
    runs = sorted(next_ids)
    commits = 0
    offset = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < args.seconds:
        chosen = [runs[(offset + k) % len(runs)] for k in range(size)]
        offset += size
        now = T0 + timedelta(milliseconds=commits)
        store.commit(decision_batch(chosen, next_ids, commits, now))
        commits += 1
    store.flush()  # every row in the tables, inside the timing
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    store.close()
    return {
        "mode": mode,
        "runs_per_commit": size,
        "commits": commits,
        "decisions_per_s": commits * size / wall,
        "commits_per_s": commits / wall,
        "wall_ms_per_commit": wall / commits * 1000,
        "cpu_ms_per_commit": cpu / commits * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="runs per commit")
    parser.add_argument(
        "--modes", default="journal,direct", help="how the store commits"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per case")
    parser.add_argument("--runs", type=int, default=1000, help="started runs")
    parser.add_argument("--preload", type=int, default=0, help="extra stored events")
    parser.add_argument("--dir", default=None, help="where the files go (a temp dir)")
    parser.add_argument("--quick", action="store_true", help="0.5 s per case")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 0.5
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        results = [
            measure(size, mode, args, directory) for size in sizes for mode in modes
        ]
    print(
        f"{'mode':>8} {'runs/commit':>11} {'decisions/s':>12} {'commits/s':>10} "
        f"{'ms/commit':>10} {'cpu ms/commit':>14}"
    )
    for r in results:
        print(
            f"{r['mode']:>8} {r['runs_per_commit']:>11} {r['decisions_per_s']:>12,.0f} "
            f"{r['commits_per_s']:>10,.0f} {r['wall_ms_per_commit']:>10.2f} "
            f"{r['cpu_ms_per_commit']:>14.2f}"
        )
    print(
        json.dumps(
            {
                "benchmark": "store_commit",
                "decision": "2 events + 1 run update",
                "seconds_per_case": args.seconds,
                "preload_events": args.preload,
                "duckdb": duckdb.__version__,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
