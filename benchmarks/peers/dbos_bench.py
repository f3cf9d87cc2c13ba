"""Peer benchmark: DBOS Transact on its default SQLite system database.

Each measurement runs DBOS in a fresh Python process (``_dbos_worker.py`` beside this file)
on a SQLite file in its own temporary directory, which is removed afterwards. DBOS keeps
process-global state (one instance, one registry, ``GlobalParams``), so separate processes
are what keep two runs, or a run and the caller, from disturbing each other; the recovery
benchmark needs a real process to ``kill -9`` anyway. This module itself never imports
``dbos``.

Benchmarks:
    throughput: N workflows of three trivial ``@DBOS.step`` calls, (a) one caller in
        sequence and (b) K in flight through ``DBOS.start_workflow`` handles; workflows/s
        (wall) and process CPU ms per workflow. DBOS runs in-process, so the process's CPU
        time (all threads) is its whole cost.
    chatty: one workflow of N sequential trivial ``@DBOS.step`` calls (after a smaller
        warm-up workflow); process CPU ms and wall ms per step.
    recovery: N workflows checkpoint step 1 and step 2, then block in step 3; the process is
        killed with SIGKILL once every step 2 is in the database, and a fresh process
        relaunches DBOS on the same file. Reports the time from launch until all N are done
        and how many steps ran again.
    analytics: a p50/p95-per-step query on DBOS's own tables (``operation_outputs`` has
        ``started_at_epoch_ms`` and ``completed_at_epoch_ms``) after a sequential run.

Usage:
    python benchmarks/peers/dbos_bench.py throughput --workflows 1000 --in-flight 16 --json
    python benchmarks/peers/dbos_bench.py chatty --steps 2000 --json
    python benchmarks/peers/dbos_bench.py recovery --workflows 200 --json
    python benchmarks/peers/dbos_bench.py analytics --workflows 1000 --json
    python -m benchmarks.peers.dbos_bench all --workflows 50     # quick mode
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

#: The worker script run in a child process for every measurement.
WORKER = Path(__file__).resolve().with_name("_dbos_worker.py")
#: Environment variable the worker reads to block in step 3 (never passed on by us).
BLOCK_ENV = "FLOWGEN_BENCH_DBOS_BLOCK_STEP3"
#: Id prefix of the recovery benchmark's workflows (must match the worker).
RECOVERY_ID_PREFIX = "recovery-"

#: p50/p95/mean/max duration per step name, nearest-rank percentiles with window functions
#: (SQLite has no percentile aggregate). DBOS stores epoch milliseconds, so that is the
#: resolution.
STEP_LATENCY_SQL = """
WITH d AS (
    SELECT function_name,
           completed_at_epoch_ms - started_at_epoch_ms AS ms,
           ROW_NUMBER() OVER (
               PARTITION BY function_name
               ORDER BY completed_at_epoch_ms - started_at_epoch_ms
           ) AS rn,
           COUNT(*) OVER (PARTITION BY function_name) AS n
    FROM operation_outputs
    WHERE started_at_epoch_ms IS NOT NULL AND completed_at_epoch_ms IS NOT NULL
)
SELECT function_name,
       MAX(n) AS n,
       AVG(ms) AS mean_ms,
       MIN(CASE WHEN rn >= 0.50 * n THEN ms END) AS p50_ms,
       MIN(CASE WHEN rn >= 0.95 * n THEN ms END) AS p95_ms,
       MAX(ms) AS max_ms
FROM d
GROUP BY function_name
ORDER BY function_name
"""

#: The same statistics for whole workflows, measured from the first step's start to the last
#: step's end. ``workflow_status.created_at/updated_at`` would be the natural columns, but on
#: Python < 3.12 DBOS fills them from SQLite's ``strftime('%s')``: whole seconds.
WORKFLOW_LATENCY_SQL = """
WITH spans AS (
    SELECT workflow_uuid,
           MAX(completed_at_epoch_ms) - MIN(started_at_epoch_ms) AS ms
    FROM operation_outputs
    WHERE started_at_epoch_ms IS NOT NULL AND completed_at_epoch_ms IS NOT NULL
    GROUP BY workflow_uuid
),
d AS (
    SELECT ms,
           ROW_NUMBER() OVER (ORDER BY ms) AS rn,
           COUNT(*) OVER () AS n
    FROM spans
)
SELECT MAX(n) AS n,
       AVG(ms) AS mean_ms,
       MIN(CASE WHEN rn >= 0.50 * n THEN ms END) AS p50_ms,
       MIN(CASE WHEN rn >= 0.95 * n THEN ms END) AS p95_ms,
       MAX(ms) AS max_ms
FROM d
"""


def _versions() -> dict[str, str]:
    """Return the versions that matter for reading the figures."""

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "dbos": version("dbos"),
        "sqlalchemy": version("sqlalchemy"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def _child_env() -> dict[str, str]:
    """Return the environment for a worker: ours, minus anything that steers DBOS."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DBOS__") and k != BLOCK_ENV
    }


def _worker_cmd(mode: str, db_path: Path, workflows: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(WORKER),
        mode,
        "--db",
        str(db_path),
        "--workflows",
        str(workflows),
        *extra,
    ]


def _run_worker(
    mode: str, db_path: Path, workflows: int, *extra: str, timeout_s: float = 1800.0
) -> tuple[dict[str, Any], float]:
    """Run the worker to completion and return its JSON result.

    Args:
        mode: The worker's mode.
        db_path: The SQLite file for DBOS (its directory is the worker's cwd).
        workflows: Number of workflows.
        *extra: Further worker arguments.
        timeout_s: Kill the worker after this long.

    Returns:
        The worker's result and the wall time from spawn to exit in seconds (interpreter
        start and ``import dbos`` included).

    Raises:
        RuntimeError: The worker failed; the message holds the end of its stderr.
    """
    out = db_path.with_suffix(f".{mode}.json")
    cmd = _worker_cmd(mode, db_path, workflows, *extra, "--out", str(out))
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=db_path.parent,
        env=_child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    process_wall_s = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"DBOS worker {mode!r} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(out.read_text()), process_wall_s


def _connect_ro(db_path: Path) -> sqlite3.Connection:
    """Open DBOS's SQLite file read-only, waiting out a writer's lock for up to 30 s."""
    return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30.0)


def _rows(con: sqlite3.Connection, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [c[0] for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def analytics_query(db_path: Path, repeats: int = 5) -> dict[str, Any]:
    """Time p50/p95 latency queries on a DBOS SQLite system database.

    Args:
        db_path: A DBOS SQLite file (not being written to).
        repeats: How many times to run each query; the first run is reported apart as the
            cold one.

    Returns:
        ``supported``, the per-step and per-workflow results, and query times in ms.
    """
    con = _connect_ro(db_path)
    try:
        columns = {
            row[1] for row in con.execute("PRAGMA table_info(operation_outputs)")
        }
        needed = {"function_name", "started_at_epoch_ms", "completed_at_epoch_ms"}
        if not needed <= columns:
            return {
                "supported": False,
                "why": f"operation_outputs lacks {sorted(needed - columns)}: DBOS stores no step timing",
            }
        timed: dict[str, Any] = {}
        for label, sql in (
            ("per_step", STEP_LATENCY_SQL),
            ("per_workflow", WORKFLOW_LATENCY_SQL),
        ):
            times_ms: list[float] = []
            rows: list[dict[str, Any]] = []
            for _ in range(max(repeats, 1)):
                start = time.perf_counter()
                rows = _rows(con, sql)
                times_ms.append((time.perf_counter() - start) * 1000.0)
            timed[label] = {
                "rows": rows,
                "query_ms_first": times_ms[0],
                "query_ms_median": statistics.median(times_ms),
                "query_ms_min": min(times_ms),
            }
        step_rows = con.execute("SELECT COUNT(*) FROM operation_outputs").fetchone()[0]
    finally:
        con.close()
    return {
        "supported": True,
        "timestamp_resolution_ms": 1,
        "note": (
            "step start/end are epoch milliseconds, so trivial steps read 0-1 ms; per_workflow is "
            "first step start to last step end (workflow_status timestamps are whole seconds here)"
        ),
        "operation_output_rows": step_rows,
        "db_bytes": db_path.stat().st_size,
        "repeats": repeats,
        **timed,
    }


def run_throughput(
    workflows: int = 1000,
    in_flight: int = 16,
    *,
    warmup: int = 10,
    analytics: bool = True,
    ids: bool = False,
) -> dict[str, Any]:
    """Measure DBOS workflow throughput, one caller in sequence and K in flight.

    Each mode runs in its own process on a fresh SQLite file.

    Args:
        workflows: Measured workflows per mode (three trivial steps each).
        in_flight: Workflows kept in flight in the concurrent mode; 1 or less skips it.
        warmup: Unmeasured workflows run first in each mode.
        analytics: Also time the latency queries on the sequential run's database.
        ids: Start every workflow under ``SetWorkflowID`` (an id per workflow).

    Returns:
        ``sequential`` and ``in_flight`` results (``None`` when skipped) and ``analytics``.
    """
    result: dict[str, Any] = {
        "peer": "dbos",
        "benchmark": "throughput",
        "versions": _versions(),
        "workflows": workflows,
    }
    with tempfile.TemporaryDirectory(prefix="flowgen-peer-dbos-") as tmp:
        seq_db = Path(tmp) / "sequential.sqlite"
        flags = ("--ids",) if ids else ()
        seq, seq_wall = _run_worker(
            "throughput",
            seq_db,
            workflows,
            "--in-flight",
            "1",
            "--warmup",
            str(warmup),
            *flags,
        )
        seq["process_wall_s"] = seq_wall
        result["sequential"] = seq
        if analytics:
            result["analytics"] = analytics_query(seq_db)
        if in_flight > 1:
            par_db = Path(tmp) / "in_flight.sqlite"
            par, par_wall = _run_worker(
                "throughput",
                par_db,
                workflows,
                "--in-flight",
                str(in_flight),
                "--warmup",
                str(warmup),
                *flags,
            )
            par["process_wall_s"] = par_wall
            result["in_flight"] = par
        else:
            result["in_flight"] = None
    return result


def run_chatty(steps: int = 2000, *, warmup: int = 50) -> dict[str, Any]:
    """Measure one DBOS workflow of *steps* sequential trivial steps, in a fresh process.

    Args:
        steps: Steps of the measured workflow.
        warmup: Steps of an unmeasured chatty workflow run first in the same process.

    Returns:
        The worker's figures (``cpu_ms_per_step``, ``wall_ms_per_step``, ...) with the
        benchmark's name and versions.
    """
    with tempfile.TemporaryDirectory(prefix="flowgen-peer-dbos-") as tmp:
        res, process_wall_s = _run_worker(
            "chatty", Path(tmp) / "chatty.sqlite", steps, "--warmup", str(warmup)
        )
    return {
        "peer": "dbos",
        "benchmark": "chatty",
        "versions": _versions(),
        "process_wall_s": process_wall_s,
        **res,
    }


def run_analytics(workflows: int = 1000, *, repeats: int = 5) -> dict[str, Any]:
    """Run a sequential throughput pass, then time the latency queries on its database.

    Args:
        workflows: Workflows to run first (three steps each).
        repeats: Runs of each query.

    Returns:
        The ``analytics_query`` result plus the benchmark's name and versions.
    """
    with tempfile.TemporaryDirectory(prefix="flowgen-peer-dbos-") as tmp:
        db = Path(tmp) / "analytics.sqlite"
        _run_worker("throughput", db, workflows, "--in-flight", "1", "--warmup", "0")
        out = analytics_query(db, repeats=repeats)
    return {
        "peer": "dbos",
        "benchmark": "analytics",
        "versions": _versions(),
        "workflows": workflows,
        **out,
    }


def _scalar(con: sqlite3.Connection, sql: str, *params: object) -> int:
    try:
        row = con.execute(sql, params).fetchone()
    except (
        sqlite3.OperationalError
    ):  # schema not created yet, or locked past the timeout
        return 0
    return int(row[0] or 0)


def _step_counts(con: sqlite3.Connection) -> dict[str, int]:
    rows = con.execute(
        "SELECT function_name, COUNT(*) FROM operation_outputs WHERE workflow_uuid LIKE ? GROUP BY function_name",
        (RECOVERY_ID_PREFIX + "%",),
    ).fetchall()
    return {str(name): int(n) for name, n in rows}


def run_recovery(workflows: int = 200, *, timeout_s: float = 300.0) -> dict[str, Any]:
    """Kill DBOS mid-way through N workflows, relaunch it, and time the recovery.

    Phase 1 (a worker process): start N workflows; each checkpoints step 1 and step 2 and
    then blocks in step 3. Once the database holds N step-2 checkpoints (polled read-only),
    wait 0.5 s so the blocked calls are all inside step 3, then SIGKILL the process. Phase 2
    (a fresh worker): launch DBOS on the same file (step 3 no longer blocks) and time until
    all N are ``SUCCESS``.

    Args:
        workflows: Number of workflows.
        timeout_s: Limit for each phase.

    Returns:
        Recovery time (from DBOS construction to all done, and from the database's
        timestamps), the steps that ran again, and what the database held at the kill.

    Raises:
        RuntimeError: Phase 1 did not reach step 2 everywhere in time, or phase 2 failed.
    """
    with tempfile.TemporaryDirectory(prefix="flowgen-peer-dbos-") as tmp:
        db = Path(tmp) / "recovery.sqlite"
        env = _child_env()
        env[BLOCK_ENV] = "1"
        stderr_path = Path(tmp) / "phase1.stderr"
        with stderr_path.open("w") as stderr:
            start = time.perf_counter()
            proc = subprocess.Popen(
                _worker_cmd("recovery-start", db, workflows),
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            try:
                step_two_sql = "SELECT COUNT(*) FROM operation_outputs WHERE workflow_uuid LIKE ? AND function_name LIKE ?"
                reached = 0
                while reached < workflows:
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"DBOS phase-1 worker exited early ({proc.returncode}):\n{stderr_path.read_text()[-4000:]}"
                        )
                    if time.perf_counter() - start > timeout_s:
                        raise RuntimeError(
                            f"only {reached} of {workflows} workflows reached step 2 in {timeout_s} s"
                        )
                    time.sleep(0.05)
                    if db.exists():
                        con = _connect_ro(db)
                        try:
                            reached = _scalar(
                                con, step_two_sql, RECOVERY_ID_PREFIX + "%", "%step_two"
                            )
                        finally:
                            con.close()
                phase1_s = time.perf_counter() - start
                time.sleep(0.5)
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        con = _connect_ro(db)
        try:
            pending_at_kill = _scalar(
                con,
                "SELECT COUNT(*) FROM workflow_status WHERE workflow_uuid LIKE ? AND status = 'PENDING'",
                RECOVERY_ID_PREFIX + "%",
            )
            checkpoints_at_kill = _step_counts(con)
        finally:
            con.close()

        resumed, process_wall_s = _run_worker(
            "recovery-resume", db, workflows, "--timeout", str(timeout_s)
        )

        con = _connect_ro(db)
        try:
            checkpoints_after = _step_counts(con)
            succeeded = _scalar(
                con,
                "SELECT COUNT(*) FROM workflow_status WHERE workflow_uuid LIKE ? AND status = 'SUCCESS'",
                RECOVERY_ID_PREFIX + "%",
            )
        finally:
            con.close()

    executions = resumed.pop("step_executions_in_recovery")
    return {
        "peer": "dbos",
        "benchmark": "recovery",
        "versions": _versions(),
        "workflows": workflows,
        "phase1_s_until_all_step2_checkpointed": phase1_s,
        "killed_with": "SIGKILL",
        "pending_at_kill": pending_at_kill,
        "checkpoints_at_kill": checkpoints_at_kill,
        "checkpoints_after_recovery": checkpoints_after,
        "succeeded_after_recovery": succeeded,
        "step_executions_in_recovery": executions,
        "checkpointed_steps_rerun": executions["step_one"] + executions["step_two"],
        "recovery_process_wall_s": process_wall_s,
        **resumed,
    }


def _round(value: Any) -> Any:
    """Round floats to 4 significant decimals for readable JSON."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run one benchmark and print one JSON object.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        description="DBOS Transact peer benchmarks (SQLite store)."
    )
    sub = parser.add_subparsers(dest="benchmark", required=True)
    tp = sub.add_parser("throughput", help="workflows/s and CPU ms per workflow")
    tp.add_argument("--workflows", type=int, default=1000)
    tp.add_argument("--in-flight", type=int, default=16)
    tp.add_argument("--warmup", type=int, default=10)
    tp.add_argument(
        "--no-analytics", action="store_true", help="skip the latency query"
    )
    ch = sub.add_parser("chatty", help="CPU and wall ms per step of one long workflow")
    ch.add_argument("--steps", type=int, default=2000)
    ch.add_argument("--warmup", type=int, default=50)
    rc = sub.add_parser("recovery", help="time to recover workflows after kill -9")
    rc.add_argument("--workflows", type=int, default=200)
    rc.add_argument("--timeout", type=float, default=300.0)
    an = sub.add_parser("analytics", help="p50/p95 per-step query on DBOS's tables")
    an.add_argument("--workflows", type=int, default=1000)
    an.add_argument("--repeats", type=int, default=5)
    al = sub.add_parser("all", help="throughput (with analytics) and recovery")
    al.add_argument("--workflows", type=int, default=1000, help="throughput workflows")
    al.add_argument(
        "--recovery-workflows",
        type=int,
        default=None,
        help="default: min(200, --workflows)",
    )
    al.add_argument("--in-flight", type=int, default=16)
    for p in (tp, ch, rc, an, al):
        p.add_argument(
            "--json",
            action="store_true",
            help="print compact one-line JSON (default: indented)",
        )
    args = parser.parse_args(argv)

    if args.benchmark == "throughput":
        result = run_throughput(
            args.workflows,
            args.in_flight,
            warmup=args.warmup,
            analytics=not args.no_analytics,
        )
    elif args.benchmark == "chatty":
        result = run_chatty(args.steps, warmup=args.warmup)
    elif args.benchmark == "recovery":
        result = run_recovery(args.workflows, timeout_s=args.timeout)
    elif args.benchmark == "analytics":
        result = run_analytics(args.workflows, repeats=args.repeats)
    else:
        recovery_n = args.recovery_workflows or min(200, args.workflows)
        result = {
            "peer": "dbos",
            "benchmark": "all",
            "throughput": run_throughput(args.workflows, args.in_flight),
            "recovery": run_recovery(recovery_n),
        }
    result = _round(result)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
