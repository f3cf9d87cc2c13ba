"""Scale of waiting: N workflows parked on ``wait_signal``, then all signalled.

One worker process, background engine on a DuckDB file, live-generator cache bounded
(``cache_size=10_000``, so with N = 100,000 nine in ten parked runs are evicted and are
rebuilt by replay when their signal comes):

1. start N ``parked`` workflows with ``Engine.start_many`` in chunks of 2,000 (group commit
   batches their starts; without it, ``start`` from 128 caller threads);
2. peak RSS of the process once all are parked (``ru_maxrss``), and the RSS of the same
   process before the engine was opened, for the cost per parked workflow;
3. signal them all from 128 threads (their signals share transactions) and time until a
   query polled every 50 ms sees all N completed.

Anchors: the 1 GiB target for peak RSS; for the signal phase, the start phase of the same
run (the same number of transactions' worth of work: one event in, one decision out).

Reopening: one process parks N workflows on a file and closes it; a fresh process reopens
the file (recovery holds parked runs without replaying them) and reports the time to open
and its peak RSS, then signals one run and waits for it to finish.

    python -m benchmarks.waiting --worker 100000 10000
    python -m benchmarks.waiting --worker park PATH 100000
    python -m benchmarks.waiting --worker reopen PATH 100000
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Config,
    emit,
    fan_out,
    figure,
    peak_rss_mib,
    ratios,
    run_worker,
    within_limit,
)

THREADS = 128
CHUNK = 2000


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def worker(n: int, cache_size: int) -> dict[str, Any]:
    import flowgen as fg
    from benchmarks._workflows import parked

    base_rss = _rss_mib()
    with tempfile.TemporaryDirectory(prefix="flowgen-bench-wait-") as tmp:
        path = str(Path(tmp) / "waiting.duckdb")
        ids: list[str] = [""] * n
        with fg.Engine(path, cache_size=cache_size) as e:
            opened_rss = _rss_mib()

            t0 = time.perf_counter()
            start_many = getattr(e, "start_many", None)
            if start_many is not None:
                # Engine.start_many: one call per chunk, its starts share transactions.
                for lo in range(0, n, CHUNK):
                    handles = start_many(
                        parked, [(i,) for i in range(lo, min(n, lo + CHUNK))]
                    )
                    for i, h in enumerate(handles, lo):
                        ids[i] = h.workflow_id
            else:

                def start(i: int) -> None:
                    ids[i] = e.start(parked, i).workflow_id

                fan_out(n, THREADS, start)
            start_s = time.perf_counter() - t0
            parked_rss = _rss_mib()
            parked_peak = peak_rss_mib()

            def count() -> int:
                return int(
                    e.sql(
                        "select count(*) from workflows where status = 'completed'"
                    ).fetchall()[0][0]
                )

            t1 = time.perf_counter()
            fan_out(n, THREADS, lambda i: e.signal(ids[i], "go", 1))
            signalled_s = time.perf_counter() - t1
            while count() < n:
                time.sleep(0.05)
            finish_s = time.perf_counter() - t1
            for i in (0, n // 2, n - 1):
                assert e.get(ids[i]).result(timeout=60) == i + 1
            commits = e.commits
    return {
        "workflows": n,
        "cache_size": cache_size,
        "start_s": start_s,
        "starts_per_s": n / start_s,
        "signal_calls_s": signalled_s,
        "signal_to_all_done_s": finish_s,
        "finished_per_s": n / finish_s,
        "base_rss_mib": base_rss,
        "opened_rss_mib": opened_rss,
        "parked_rss_mib": parked_rss,
        "parked_peak_rss_mib": parked_peak,
        "kib_per_parked_workflow": (parked_rss - opened_rss) * 1024 / n,
        "commits": commits,
    }


def worker_park(path: str, n: int) -> dict[str, Any]:
    import flowgen as fg
    from benchmarks._workflows import parked

    t0 = time.perf_counter()
    with fg.Engine(path, cache_size=10_000) as e:
        for lo in range(0, n, CHUNK):
            e.start_many(
                parked,
                [(i,) for i in range(lo, min(n, lo + CHUNK))],
                ids=[f"parked-{i}" for i in range(lo, min(n, lo + CHUNK))],
            )
    return {"workflows": n, "park_s": time.perf_counter() - t0}


def worker_reopen(path: str, n: int) -> dict[str, Any]:
    import flowgen as fg
    from benchmarks._workflows import parked

    base_rss = _rss_mib()
    t0 = time.perf_counter()
    c0 = time.process_time()
    with fg.Engine(path, cache_size=10_000, workflows=[parked]) as e:
        reopen_s = time.perf_counter() - t0
        reopen_cpu_s = time.process_time() - c0
        reopen_peak = peak_rss_mib()
        e.signal(f"parked-{n - 1}", "go", 1)
        assert e.get(f"parked-{n - 1}").result(timeout=60) == n
        running = e.sql(
            "select count(*) from workflows where status = 'running'"
        ).fetchall()[0][0]
        assert running == n - 1, running
    return {
        "workflows": n,
        "reopen_s": reopen_s,
        "reopen_cpu_s": reopen_cpu_s,
        "reopen_peak_rss_mib": reopen_peak,
        "base_rss_mib": base_rss,
    }


def _reopen_once(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="flowgen-bench-reopen-") as tmp:
        path = str(Path(tmp) / "parked.duckdb")
        parked = run_worker("waiting", "park", path, n)
        reopened = run_worker("waiting", "reopen", path, n)
    return {**parked, **reopened}


def run(cfg: Config) -> dict[str, Any]:
    n = 5_000 if cfg.quick else 100_000
    cache = 10_000
    runs: list[dict[str, Any]] = []
    reopens: list[dict[str, Any]] = []
    for r in range(cfg.repeats):
        res = run_worker("waiting", n, cache)
        runs.append(res)
        cfg.log(
            f"  waiting run {r + 1}: {n} parked, peak RSS {res['peak_rss_mib']:.0f} MiB, "
            f"start {res['start_s']:.1f} s, signal -> all done {res['signal_to_all_done_s']:.1f} s"
        )
        reopen = _reopen_once(n)
        reopens.append(reopen)
        cfg.log(
            f"  reopen run {r + 1}: {n} parked, open {reopen['reopen_s']:.2f} s, "
            f"peak RSS {reopen['reopen_peak_rss_mib']:.0f} MiB"
        )
    peak = [res["peak_rss_mib"] for res in runs]
    start = [res["starts_per_s"] for res in runs]
    finish = [res["finished_per_s"] for res in runs]
    figures = [
        within_limit(
            "waiting.peak_rss",
            f"peak RSS with {n:,} workflows parked on wait_signal (cache_size={cache:,})",
            "MiB",
            peak,
            limit=1024.0,
            limit_name="1 GiB",
            note=f"{statistics_median([r['kib_per_parked_workflow'] for r in runs]):.1f} KiB per parked workflow",
        ),
        figure(
            "waiting.signal_all",
            f"signal all {n:,}, until all finished (90% rebuilt by replay)"
            if n > cache
            else f"signal all {n:,}, until all finished",
            "wf/s",
            finish,
            anchor_name="starting them, same run",
            anchor=start,
            ratio=ratios(finish, start),
            ratio_text="finish rate / start rate",
            target="(reported)",
            note=(
                "signal -> all done: "
                f"{statistics_median([r['signal_to_all_done_s'] for r in runs]):.1f} s"
            ),
        ),
    ]
    figures += [
        within_limit(
            "waiting.reopen_peak_rss",
            f"peak RSS of a fresh process reopening a file with {n:,} parked workflows",
            "MiB",
            [r["reopen_peak_rss_mib"] for r in reopens],
            limit=1024.0,
            limit_name="1 GiB",
            note=(
                "before the process opened the file: "
                f"{statistics_median([r['base_rss_mib'] for r in reopens]):.0f} MiB"
            ),
        ),
        figure(
            "waiting.reopen",
            f"reopen a file with {n:,} parked workflows (parked runs held, not replayed)",
            "s",
            [r["reopen_s"] for r in reopens],
            anchor_name="parking them, same run",
            anchor=[r["park_s"] for r in reopens],
            ratio=ratios(
                [r["reopen_s"] for r in reopens], [r["park_s"] for r in reopens]
            ),
            ratio_text="reopen time / time to park them",
            target="(reported)",
            note=(
                "CPU to reopen: "
                f"{statistics_median([r['reopen_cpu_s'] for r in reopens]):.2f} s"
            ),
        ),
    ]
    return {
        "params": {"workflows": n, "cache_size": cache, "caller_threads": THREADS},
        "figures": figures,
        "raw": runs + reopens,
    }


def statistics_median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1:3] == ["--worker", "park"]:
        emit(worker_park(sys.argv[3], int(sys.argv[4])))
    elif len(sys.argv) >= 5 and sys.argv[1:3] == ["--worker", "reopen"]:
        emit(worker_reopen(sys.argv[3], int(sys.argv[4])))
    elif len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        emit(worker(int(sys.argv[2]), int(sys.argv[3])))
    else:
        sys.exit("usage: python -m benchmarks.waiting --worker N CACHE_SIZE")
