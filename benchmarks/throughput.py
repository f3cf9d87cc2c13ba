"""Throughput: N workflows of three sequential trivial activities on a durable DuckDB file.

Modes (each in a fresh process, on a fresh file in a temporary directory, background engine,
10 unmeasured warm-up workflows first, every result checked):

* ``sequential``: one caller, ``engine.start(...).result()`` in a loop;
* ``in_flight``: one caller keeps K workflows in flight with a FIFO window of handles (start
  the next when the oldest has finished), what DBOS's in-flight mode does;
* ``callers``: K caller threads, each running workflows one after another (K in flight),
  with K = 16 and K = 64 (DBOS measured with 16 and with 64 in flight as their anchors);
* ``sequential_direct``: ``sequential`` on a store opened with ``journal=False``, one DuckDB
  transaction per commit: what the journal saves, measured in the same run (reported).
* ``sequential_ids`` and ``in_flight_ids``: ``sequential`` and ``in_flight`` with an id per
  workflow (``engine.start(..., id=f"order-{i}")``, as real applications start them), side
  by side with the anonymous starts above, against DBOS starting each workflow under
  ``SetWorkflowID``.

Figures: completed workflows per second (wall) and CPU ms per workflow (process CPU time of
the whole process, all threads: flowgen runs in-process, so that is its whole cost), next to
DBOS Transact 3.4 on its default SQLite store doing the same in the same run.

    python -m benchmarks.throughput --worker sequential 1000 1 10
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Config,
    emit,
    fan_out,
    figure,
    ratios,
    run_worker,
)


def open_engine(path: str, **kwargs: Any) -> tuple[Any, str]:
    """A flowgen engine on a DuckDB file (or a MemoryStore if the DuckDB store is absent)."""
    import flowgen as fg

    try:
        import flowgen._stores.duckdb_store
    except ImportError:
        from flowgen._stores.memory import MemoryStore

        return fg.Engine(store=MemoryStore(), **kwargs), "memory (no DuckDB store yet)"
    return fg.Engine(path, **kwargs), "duckdb"


def worker(mode: str, n: int, k: int, warmup: int) -> dict[str, Any]:
    from benchmarks._workflows import three_steps

    with_ids = mode.endswith("_ids")
    mode = mode.removesuffix("_ids")

    def start(e: Any, i: int) -> Any:
        if with_ids:
            return e.start(three_steps, i, id=f"order-{i}")
        return e.start(three_steps, i)

    with tempfile.TemporaryDirectory(prefix="flowgen-bench-tp-") as tmp:
        path = str(Path(tmp) / "throughput.duckdb")
        if mode == "sequential_direct":
            import flowgen as fg

            mode, store = "sequential", "duckdb, journal=False"
            engine = fg.Engine(store=fg.DuckDBStore(path, threads=1, journal=False))
        else:
            engine, store = open_engine(path)
        with engine as e:
            for i in range(warmup):
                assert e.start(three_steps, -1 - i).result(timeout=60) == 2 - i
            commits0, steps0 = e.commits, e.steps
            cpu0, t0 = time.process_time(), time.perf_counter()
            if mode == "sequential":
                for i in range(n):
                    assert start(e, i).result(timeout=60) == i + 3
            elif mode == "in_flight":
                window: deque[tuple[int, Any]] = deque()
                for i in range(n):
                    if len(window) >= k:
                        j, h = window.popleft()
                        assert h.result(timeout=60) == j + 3
                    window.append((i, start(e, i)))
                while window:
                    j, h = window.popleft()
                    assert h.result(timeout=60) == j + 3
            elif mode == "callers":

                def call(i: int) -> None:
                    assert start(e, i).result(timeout=60) == i + 3

                fan_out(n, k, call)
            else:
                raise SystemExit(f"unknown mode {mode!r}")
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
            commits, steps = e.commits - commits0, e.steps - steps0
    return {
        "mode": mode + ("_ids" if with_ids else ""),
        "store": store,
        "workflows": n,
        "in_flight": k,
        "wall_s": wall,
        "cpu_s": cpu,
        "workflows_per_s": n / wall,
        "cpu_ms_per_workflow": cpu * 1000.0 / n,
        "commits": commits,
        "items_per_commit": steps / commits if commits else None,
    }


def run(cfg: Config) -> dict[str, Any]:
    n = 200 if cfg.quick else 1000
    k = 16
    k_many = 64
    warmup = 10
    peer_note = cfg.peer_note("dbos")
    peer = not peer_note
    runs: dict[str, list[dict[str, Any]]] = {
        "sequential": [],
        "in_flight": [],
        "callers": [],
        "callers64": [],
        "sequential_direct": [],
        "sequential_ids": [],
        "in_flight_ids": [],
        "dbos": [],
    }
    for r in range(cfg.repeats):
        for mode, worker_mode, kk in (
            ("sequential", "sequential", 1),
            ("in_flight", "in_flight", k),
            ("callers", "callers", k),
            ("callers64", "callers", k_many),
            ("sequential_direct", "sequential_direct", 1),
            ("sequential_ids", "sequential_ids", 1),
            ("in_flight_ids", "in_flight_ids", k),
        ):
            res = run_worker("throughput", worker_mode, n, kk, warmup)
            runs[mode].append(res)
            cfg.log(
                f"  throughput {mode} run {r + 1}: {res['workflows_per_s']:.0f} wf/s, "
                f"{res['cpu_ms_per_workflow']:.2f} CPU ms/wf ({res['store']})"
            )
        if peer:
            from benchmarks.peers import dbos_bench

            res = dbos_bench.run_throughput(n, k, warmup=warmup, analytics=r == 0)
            if r == 0:
                cfg.shared["dbos_analytics"] = {
                    "workflows": n,
                    **res.get("analytics", {}),
                }
            with tempfile.TemporaryDirectory(prefix="flowgen-peer-dbos-") as tmp:
                many, _ = dbos_bench._run_worker(
                    "throughput",
                    Path(tmp) / "in_flight_many.sqlite",
                    n,
                    "--in-flight",
                    str(k_many),
                    "--warmup",
                    str(warmup),
                )
            res["in_flight_many"] = many
            with_ids = dbos_bench.run_throughput(
                n, k, warmup=warmup, analytics=False, ids=True
            )
            res["sequential_ids"] = with_ids["sequential"]
            res["in_flight_ids"] = with_ids["in_flight"]
            runs["dbos"].append(res)
            cfg.log(
                f"  throughput DBOS run {r + 1}: sequential "
                f"{res['sequential']['workflows_per_s']:.0f} wf/s, {k} in flight "
                f"{res['in_flight']['workflows_per_s']:.0f} wf/s, {k_many} in flight "
                f"{many['workflows_per_s']:.0f} wf/s"
            )

    def fg_values(mode: str, key: str) -> list[float | None]:
        return [res[key] for res in runs[mode]]

    def dbos_values(mode: str, key: str) -> list[float | None] | None:
        if not peer:
            return None
        return [res[mode][key] for res in runs["dbos"]]

    def against(mode: str, fg_mode: str, key: str) -> list[float | None] | None:
        peer_values = dbos_values(mode, key)
        if peer_values is None:
            return None
        return ratios(fg_values(fg_mode, key), peer_values)

    note = peer_note
    store = runs["sequential"][0]["store"]
    if store != "duckdb":
        note = f"{note}; store: {store}".strip("; ")
    # (flowgen mode, DBOS mode it is compared with, label, target for wf/s): each mode gives
    # a throughput figure and a CPU-per-workflow figure.
    modes = [
        ("sequential", "sequential", "1 caller in sequence", 2),
        (
            "in_flight",
            "in_flight",
            f"{k} in flight, 1 caller (FIFO window of handles)",
            10,
        ),
        ("callers", "in_flight", f"{k} in flight, {k} caller threads", 10),
        (
            "callers64",
            "in_flight_many",
            f"{k_many} in flight, {k_many} caller threads",
            10,
        ),
    ]
    dbos_label = {
        "sequential": "sequential",
        "in_flight": f"{k} in flight",
        "in_flight_many": f"{k_many} in flight",
        "sequential_ids": "sequential, SetWorkflowID",
        "in_flight_ids": f"{k} in flight, SetWorkflowID",
    }
    cpu_label = {
        "sequential": "1 caller in sequence",
        "in_flight": f"{k} in flight (1 caller)",
        "callers": f"{k} in flight ({k} callers)",
        "callers64": f"{k_many} in flight ({k_many} callers)",
    }
    figures = []
    for fg_mode, dbos_mode, label, times in modes:
        suffix = f" ({n} wf x 3 activities)" if fg_mode == "sequential" else ""
        figures.append(
            figure(
                f"throughput.{fg_mode}.wf_per_s",
                f"throughput, {label}{suffix}",
                "wf/s",
                fg_values(fg_mode, "workflows_per_s"),
                anchor_name=f"DBOS 3.4 (SQLite), {dbos_label[dbos_mode]}",
                anchor=dbos_values(dbos_mode, "workflows_per_s"),
                ratio=against(dbos_mode, fg_mode, "workflows_per_s"),
                ratio_text="flowgen / DBOS",
                target=f">= {times}x",
                met=lambda x, times=times: x >= times,
                note=note,
            )
        )
    for fg_mode, dbos_mode, _, _ in modes:
        figures.append(
            figure(
                f"throughput.{fg_mode}.cpu_ms_per_wf",
                f"CPU per workflow, {cpu_label[fg_mode]}",
                "CPU ms/wf",
                fg_values(fg_mode, "cpu_ms_per_workflow"),
                anchor_name=f"DBOS 3.4 (SQLite), {dbos_label[dbos_mode]}",
                anchor=dbos_values(dbos_mode, "cpu_ms_per_workflow"),
                ratio=against(dbos_mode, fg_mode, "cpu_ms_per_workflow"),
                ratio_text="flowgen / DBOS",
                target="<= 0.2x",
                met=lambda x: x <= 0.2,
                note=note,
            )
        )
    figures.append(
        figure(
            "throughput.sequential_direct.wf_per_s",
            "throughput, 1 caller in sequence, journal=False (a DuckDB transaction "
            "per commit)",
            "wf/s",
            fg_values("sequential_direct", "workflows_per_s"),
            anchor_name="flowgen, journaled (the default), same run",
            anchor=fg_values("sequential", "workflows_per_s"),
            ratio=ratios(
                fg_values("sequential", "workflows_per_s"),
                fg_values("sequential_direct", "workflows_per_s"),
            ),
            ratio_text="journal / journal=False",
            target="(reported)",
            note=f"CPU ms/wf: "
            f"{_median(fg_values('sequential_direct', 'cpu_ms_per_workflow')):.2f} "
            f"vs {_median(fg_values('sequential', 'cpu_ms_per_workflow')):.2f} journaled",
        )
    )
    for ids_mode, anonymous, label in (
        ("sequential_ids", "sequential", "1 caller in sequence"),
        ("in_flight_ids", "in_flight", f"{k} in flight, 1 caller"),
    ):
        figures.append(
            figure(
                f"throughput.{ids_mode}.cpu_ms_per_wf",
                f"CPU per workflow started with id=, {label}",
                "CPU ms/wf",
                fg_values(ids_mode, "cpu_ms_per_workflow"),
                anchor_name="flowgen, anonymous starts, same run",
                anchor=fg_values(anonymous, "cpu_ms_per_workflow"),
                ratio=ratios(
                    fg_values(ids_mode, "cpu_ms_per_workflow"),
                    fg_values(anonymous, "cpu_ms_per_workflow"),
                ),
                ratio_text="with id= / anonymous",
                target="<= 1.3x",
                met=lambda x: x <= 1.3,
                note=f"wf/s: {_median(fg_values(ids_mode, 'workflows_per_s')):.0f} with "
                f"id= vs {_median(fg_values(anonymous, 'workflows_per_s')):.0f} anonymous",
            )
        )
        figures.append(
            figure(
                f"throughput.{ids_mode}.wf_per_s",
                f"throughput with id=, {label}",
                "wf/s",
                fg_values(ids_mode, "workflows_per_s"),
                anchor_name=f"DBOS 3.4 (SQLite), {dbos_label[ids_mode]}",
                anchor=dbos_values(ids_mode, "workflows_per_s"),
                ratio=against(ids_mode, ids_mode, "workflows_per_s"),
                ratio_text="flowgen / DBOS",
                target=">= 10x" if anonymous == "in_flight" else ">= 2x",
                met=lambda x, t=(10 if anonymous == "in_flight" else 2): x >= t,
                note=note,
            )
        )
    return {
        "params": {
            "workflows": n,
            "in_flight": [k, k_many],
            "warmup": warmup,
            "store": store,
        },
        "figures": figures,
        "raw": runs,
    }


def _median(values: list[float | None]) -> float:
    return statistics.median(v for v in values if v is not None)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        mode, n_, k_, w_ = sys.argv[2:6]
        emit(worker(mode, int(n_), int(k_), int(w_)))
    else:
        sys.exit("usage: python -m benchmarks.throughput --worker MODE N K WARMUP")
