"""Shared plumbing of the benchmark suite: figures, medians and spreads, worker processes.

Every benchmark module (``throughput``, ``replay``, ...) exposes ``run(cfg) -> dict`` and
returns a *section*: its parameters, raw per-run numbers and a list of *figures*. A figure is
one row of the results table: flowgen's value, the anchor it is compared with (a peer measured
in the same run, a floor such as a bare generator loop, or a fixed target), and the ratio
between the two, each as the median over several runs with the spread (min-max) beside it.
Ratios are computed run by run (flowgen's run *i* against the anchor's run *i*, interleaved so
that a noisy moment hits both), and the median and spread of those ratios are reported.

Measurements that need a clean process (CPU time of the whole process, peak RSS, a kill -9)
run in a fresh ``python -m benchmarks.<module> --worker ...`` child that prints one JSON object
on its last stdout line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER_MISSING = "peer not installed (pip install -e '.[bench]')"
PEER_SKIPPED = "peer not measured (--no-peers)"


@dataclass
class Config:
    """What `run.py` asks of a benchmark module."""

    quick: bool = False
    repeats: int = 3
    peers: bool = True
    #: Results of peer runs shared between modules of one invocation (e.g. DBOS analytics
    #: comes with its throughput run).
    shared: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = lambda message: print(
        message, file=sys.stderr, flush=True
    )

    def peer_note(self, module: str) -> str:
        """Why the peer importable as *module* is not measured ("" if it is)."""
        if not self.peers:
            return PEER_SKIPPED
        return "" if have(module) else PEER_MISSING


# -- statistics ------------------------------------------------------------------------------


def spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Median, min, max and every run of *values* (``None`` entries are dropped)."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None
    return {
        "median": statistics.median(kept),
        "min": min(kept),
        "max": max(kept),
        "runs": kept,
    }


def figure(
    fid: str,
    label: str,
    unit: str,
    flowgen: Sequence[float | None],
    *,
    anchor_name: str,
    anchor: Sequence[float | None] | None = None,
    anchor_unit: str | None = None,
    ratio: Sequence[float | None] | None = None,
    ratio_text: str = "",
    target: str = "",
    met: Callable[[float], bool] | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One row of the table. *ratio* holds one value per run; the median decides *met*."""
    ratio_stats = spread(ratio) if ratio is not None else None
    verdict: bool | None = None
    if met is not None and ratio_stats is not None:
        verdict = bool(met(ratio_stats["median"]))
    return {
        "id": fid,
        "label": label,
        "unit": unit,
        "flowgen": spread(flowgen),
        "anchor_name": anchor_name,
        "anchor_unit": anchor_unit or unit,
        "anchor": spread(anchor) if anchor is not None else None,
        "ratio_text": ratio_text,
        "ratio": ratio_stats,
        "target": target,
        "met": verdict,
        "note": note,
    }


def within_limit(
    fid: str,
    label: str,
    unit: str,
    flowgen: Sequence[float | None],
    *,
    limit: float,
    limit_name: str,
    note: str = "",
) -> dict[str, Any]:
    """A figure whose anchor is a fixed limit: met when flowgen / limit <= 1."""
    anchor = [limit] * len(flowgen)
    return figure(
        fid,
        label,
        unit,
        flowgen,
        anchor_name=f"target: {limit_name}",
        anchor=anchor,
        ratio=ratios(flowgen, anchor),
        ratio_text=f"flowgen / {limit_name}",
        target="<= 1",
        met=lambda x: x <= 1,
        note=note,
    )


def ratios(
    numerators: Sequence[float | None], denominators: Sequence[float | None]
) -> list[float | None]:
    """Run-by-run ratios (``None`` where either side is missing or the divisor is 0)."""
    out: list[float | None] = []
    for a, b in zip(numerators, denominators, strict=False):
        out.append(None if a is None or b is None or b == 0 else a / b)
    return out


# -- processes -------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_env() -> dict[str, str]:
    """The environment for a worker: ours, with the repository on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.pop("FLOWGEN_BENCH_BLOCK_STEP3", None)
    return env


def worker_cmd(module: str, *args: object) -> list[str]:
    return [sys.executable, "-m", f"benchmarks.{module}", "--worker", *map(str, args)]


def run_worker(module: str, *args: object, timeout: float = 1800.0) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --worker ARGS`` and parse its last stdout line."""
    start = time.perf_counter()
    proc = subprocess.run(
        worker_cmd(module, *args),
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark worker {module} {args} failed ({proc.returncode}):\n"
            f"{proc.stderr[-4000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"benchmark worker {module} printed nothing:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result.setdefault("process_wall_s", time.perf_counter() - start)
    return result


def emit(result: dict[str, Any]) -> None:
    """A worker's answer: one JSON line on stdout."""
    result.setdefault("peak_rss_mib", peak_rss_mib())
    print(json.dumps(result), flush=True)


# -- peers and the machine -------------------------------------------------------------------


def have(module: str) -> bool:
    """True if *module* can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def duckdb_store_available() -> bool:
    return have("flowgen._stores.duckdb_store")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """Where the numbers come from."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 0
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "nproc": cpus,
        "cpu_model": model,
        "ram_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": _version("duckdb"),
        "pyarrow": _version("pyarrow"),
        "attrs": _version("attrs"),
        "cattrs": _version("cattrs"),
        "dbos": _version("dbos"),
        "temporalio": _version("temporalio"),
        "flowgen_commit": commit,
        "loadavg": os.getloadavg(),
    }


def fan_out(n: int, threads: int, job: Callable[[int], object]) -> None:
    """Run ``job(i)`` for i in range(n) on *threads* caller threads (thread c takes
    c, c + threads, ...); the first exception of any thread is raised here."""
    errors: list[BaseException] = []

    def run(c: int) -> None:
        try:
            for i in range(c, n, threads):
                job(i)
        except BaseException as exc:
            errors.append(exc)

    started = [threading.Thread(target=run, args=(c,)) for c in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    if errors:
        raise errors[0]
