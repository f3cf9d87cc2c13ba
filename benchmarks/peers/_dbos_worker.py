"""The DBOS side of ``dbos_bench.py``: one DBOS process per measurement.

``dbos_bench.py`` starts this file as a script in a fresh interpreter for each mode, so DBOS's
process-global state (its instance, registry and ``GlobalParams``) never leaks from one run
into the next, and so the recovery benchmark can ``kill -9`` a process that is really
running DBOS. The file imports nothing from the ``benchmarks`` package on purpose: it must
run the same way whoever launches it. The result of a run is written as one JSON object to
the ``--out`` file (DBOS logs to stderr, but a file keeps stdout out of the contract).

Modes:
    ``throughput``: launch DBOS, run N workflows of three trivial steps either one after
    another (``--in-flight 1``) or with a window of K workflows started through
    ``DBOS.start_workflow``, and report wall time and process CPU time.
    ``chatty``: launch DBOS, run a warm-up chatty workflow of ``--warmup`` steps, then one
    workflow of N (``--workflows``) sequential trivial steps, and report wall time and
    process CPU time per step.
    ``recovery-start``: start N workflows that checkpoint two steps and then block forever in
    their third; the parent kills this process.
    ``recovery-resume``: relaunch DBOS on the same database, let it recover the pending
    workflows, and report how long it takes until all of them are done and which steps ran
    again.
    ``fleet-member``: one process of a fleet on a PostgreSQL system database (``--url``,
    ``--executor-id``), the peer side of ``benchmarks/fleet.py``: launch DBOS, run the
    warm-up, print ``ready`` on stdout, wait for a line on stdin (the go that all members
    get at once), then run its workflows from ``--in-flight`` caller threads (each calls
    the workflow under an id of its own, one after another) and report its start and end on the system-wide monotonic clock, so that the parent can take
    the fleet's wall time from the first start to the last end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID, WorkflowHandle

#: When this environment variable is "1", ``step_three`` blocks forever (first recovery phase).
BLOCK_ENV = "FLOWGEN_BENCH_DBOS_BLOCK_STEP3"
#: DBOS application name used for every run.
APP_NAME = "flowgen-peer-bench"
#: Explicit executor id, so both recovery phases own the same pending workflows.
EXECUTOR_ID = "flowgen-bench-executor"
#: Prefix of the ids the recovery benchmark gives its workflows.
RECOVERY_ID_PREFIX = "recovery-"

_calls: Counter[str] = Counter()
_calls_lock = threading.Lock()


def _count(step: str) -> None:
    with _calls_lock:
        _calls[step] += 1


@DBOS.step()
def step_one(i: int) -> int:
    """First trivial step.

    Args:
        i: The workflow's input.

    Returns:
        ``i + 1``.
    """
    _count("step_one")
    return i + 1


@DBOS.step()
def step_two(x: int) -> int:
    """Second trivial step.

    Args:
        x: The first step's result.

    Returns:
        ``x + 1``.
    """
    _count("step_two")
    return x + 1


@DBOS.step()
def step_three(x: int) -> int:
    """Third trivial step; blocks forever when ``BLOCK_ENV`` is set (recovery phase one).

    Args:
        x: The second step's result.

    Returns:
        ``x + 1``.
    """
    _count("step_three")
    if os.environ.get(BLOCK_ENV) == "1":
        threading.Event().wait()
    return x + 1


@DBOS.workflow()
def three_steps(i: int) -> int:
    """A workflow of three sequential trivial steps.

    Args:
        i: Any small int.

    Returns:
        ``i + 3``.
    """
    return step_three(step_two(step_one(i)))


@DBOS.step()
def add_one(x: int) -> int:
    """The chatty workflow's trivial step.

    Args:
        x: Any int.

    Returns:
        ``x + 1``.
    """
    return x + 1


@DBOS.workflow()
def chatty(n: int) -> int:
    """One workflow of *n* sequential trivial steps.

    Args:
        n: How many steps.

    Returns:
        The sum of the steps' results (``n * (n + 1) / 2``).
    """
    total = 0
    for i in range(n):
        total += add_one(i)
    return total


def _config(db_path: Path) -> DBOSConfig:
    """Build the explicit DBOS configuration used by every mode.

    ``application_version`` is left to DBOS's default (a hash of the workflows' source), as an
    application would have it; both recovery phases run this same file, so it matches.

    Args:
        db_path: The SQLite file that holds DBOS's system database.

    Returns:
        The configuration.
    """
    return {
        "name": APP_NAME,
        "system_database_url": f"sqlite:///{db_path}",
        "executor_id": EXECUTOR_ID,
        "log_level": "WARNING",
        "run_migrations": True,
    }


def _peak_rss_mib() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _throughput(
    db_path: Path, workflows: int, in_flight: int, warmup: int, *, ids: bool = False
) -> dict[str, Any]:
    """Run the throughput measurement in this process.

    Args:
        db_path: SQLite file for DBOS's system database (created by DBOS).
        workflows: Number of measured workflows.
        in_flight: 1 for one caller in sequence; K > 1 to keep K workflows started through
            ``DBOS.start_workflow`` in flight (a FIFO window: when K are running, wait for the
            oldest before starting the next).
        warmup: Workflows run before the measurement starts (not counted).
        ids: Start each measured workflow under ``SetWorkflowID(f"order-{i}")`` (as real
            applications do), to compare with flowgen's ``start(..., id=...)``.

    Returns:
        The measured figures.

    Raises:
        RuntimeError: A workflow returned a wrong result.
    """
    launch_start = time.perf_counter()
    DBOS(config=_config(db_path))
    DBOS.launch()
    launch_s = time.perf_counter() - launch_start
    try:
        for i in range(warmup):
            three_steps(-1 - i)
        results: list[int] = []
        wall_start = time.perf_counter()
        cpu_start = time.process_time()
        if in_flight <= 1:
            for i in range(workflows):
                if ids:
                    with SetWorkflowID(f"order-{i}"):
                        results.append(three_steps(i))
                else:
                    results.append(three_steps(i))
        else:
            window: deque[WorkflowHandle[int]] = deque()
            for i in range(workflows):
                if len(window) >= in_flight:
                    results.append(window.popleft().get_result())
                if ids:
                    with SetWorkflowID(f"order-{i}"):
                        window.append(DBOS.start_workflow(three_steps, i))
                else:
                    window.append(DBOS.start_workflow(three_steps, i))
            while window:
                results.append(window.popleft().get_result())
        cpu_s = time.process_time() - cpu_start
        wall_s = time.perf_counter() - wall_start
        if results != [i + 3 for i in range(workflows)]:
            raise RuntimeError("a DBOS workflow returned a wrong result")
        app_version = DBOS.application_version
    finally:
        DBOS.destroy()
    return {
        "mode": ("sequential" if in_flight <= 1 else "in_flight")
        + ("_ids" if ids else ""),
        "in_flight": max(in_flight, 1),
        "workflows": workflows,
        "warmup_workflows": warmup,
        "steps_per_workflow": 3,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "workflows_per_s": workflows / wall_s,
        "cpu_ms_per_workflow": cpu_s * 1000.0 / workflows,
        "launch_s": launch_s,
        "peak_rss_mib": _peak_rss_mib(),
        "application_version": app_version,
    }


def _chatty(db_path: Path, steps: int, warmup: int) -> dict[str, Any]:
    """Run the chatty measurement in this process: one workflow of *steps* steps.

    Args:
        db_path: SQLite file for DBOS's system database (created by DBOS).
        steps: Steps of the measured workflow.
        warmup: Steps of a chatty workflow run first (not counted).

    Returns:
        The measured figures.

    Raises:
        RuntimeError: The workflow returned a wrong result.
    """
    DBOS(config=_config(db_path))
    DBOS.launch()
    try:
        if warmup > 0:
            chatty(warmup)
        wall_start = time.perf_counter()
        cpu_start = time.process_time()
        total = chatty(steps)
        cpu_s = time.process_time() - cpu_start
        wall_s = time.perf_counter() - wall_start
        if total != steps * (steps + 1) // 2:
            raise RuntimeError("the DBOS chatty workflow returned a wrong result")
    finally:
        DBOS.destroy()
    return {
        "mode": "chatty",
        "steps": steps,
        "warmup_steps": warmup,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "cpu_ms_per_step": cpu_s * 1000.0 / steps,
        "wall_ms_per_step": wall_s * 1000.0 / steps,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _fleet_member(
    url: str,
    executor_id: str,
    workflows: int,
    in_flight: int,
    warmup: int,
) -> dict[str, Any]:
    """Run one fleet member's share on PostgreSQL (see the module docstring).

    Args:
        url: The PostgreSQL system database (``postgresql://...``).
        executor_id: This process's executor id (one per member, as in production).
        workflows: This member's measured workflows.
        in_flight: Caller threads, each calling the workflow, one after another (so
            that many in flight).
        warmup: Workflows run before ``ready`` (not counted).

    Returns:
        The measured figures; ``start``/``end`` are ``time.monotonic()`` (system-wide).

    Raises:
        RuntimeError: A workflow returned a wrong result.
    """
    DBOS(
        config={
            "name": APP_NAME,
            "system_database_url": url,
            "executor_id": executor_id,
            "log_level": "WARNING",
            "run_migrations": True,
        }
    )
    DBOS.launch()
    try:
        for i in range(warmup):
            with SetWorkflowID(f"warmup-{executor_id}-{i}"):
                three_steps(-1 - i)
        print("ready", flush=True)
        sys.stdin.readline()
        results: dict[int, int] = {}
        errors: list[BaseException] = []

        def call(first: int) -> None:
            try:
                for i in range(first, workflows, in_flight):
                    with SetWorkflowID(f"order-{executor_id}-{i}"):
                        results[i] = three_steps(i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(c,)) for c in range(in_flight)]
        start, cpu_start = time.monotonic(), time.process_time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        end, cpu_s = time.monotonic(), time.process_time() - cpu_start
        if errors:
            raise errors[0]
        if [results.get(i) for i in range(workflows)] != [
            i + 3 for i in range(workflows)
        ]:
            raise RuntimeError("a DBOS workflow returned a wrong result")
    finally:
        DBOS.destroy()
    return {
        "workflows": workflows,
        "in_flight": in_flight,
        "start": start,
        "end": end,
        "cpu_s": cpu_s,
        "peak_rss_mib": _peak_rss_mib(),
    }


def _recovery_start(db_path: Path, workflows: int) -> None:
    """Start the workflows that the parent will kill mid-way, then wait to be killed.

    Args:
        db_path: SQLite file for DBOS's system database.
        workflows: Number of workflows to start.
    """
    os.environ[BLOCK_ENV] = "1"
    DBOS(config=_config(db_path))
    DBOS.launch()
    for i in range(workflows):
        with SetWorkflowID(f"{RECOVERY_ID_PREFIX}{i:05d}"):
            DBOS.start_workflow(three_steps, i)
    threading.Event().wait()


def _count_done(con: sqlite3.Connection) -> int:
    row = con.execute(
        "SELECT COUNT(*) FROM workflow_status WHERE workflow_uuid LIKE ? AND status = 'SUCCESS'",
        (RECOVERY_ID_PREFIX + "%",),
    ).fetchone()
    return int(row[0])


def _recovery_resume(db_path: Path, workflows: int, timeout_s: float) -> dict[str, Any]:
    """Relaunch DBOS on the killed process's database and time the recovery.

    Completion is detected by polling the status table every 10 ms with a separate read-only
    SQLite connection, because DBOS's own ``get_result`` polls once a second and would round
    the figure up. Results are then checked through DBOS's handles.

    Args:
        db_path: The SQLite file the killed process wrote.
        workflows: How many workflows were started (ids ``recovery-00000`` ...).
        timeout_s: Give up after this long.

    Returns:
        The measured figures.

    Raises:
        RuntimeError: Recovery did not finish in time, or a workflow returned a wrong result.
    """
    os.environ.pop(BLOCK_ENV, None)
    poll = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30.0)
    launch_epoch_ms = time.time() * 1000.0
    wall_start = time.perf_counter()
    cpu_start = time.process_time()
    DBOS(config=_config(db_path))
    DBOS.launch()
    launch_s = time.perf_counter() - wall_start
    try:
        deadline = wall_start + timeout_s
        done = 0
        while True:
            done = _count_done(poll)
            if done >= workflows:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"only {done} of {workflows} workflows recovered in {timeout_s} s"
                )
            time.sleep(0.01)
        wall_s = time.perf_counter() - wall_start
        cpu_s = time.process_time() - cpu_start
        results: list[object] = [
            DBOS.retrieve_workflow(f"{RECOVERY_ID_PREFIX}{i:05d}").get_result()
            for i in range(workflows)
        ]
        if results != [i + 3 for i in range(workflows)]:
            raise RuntimeError("a recovered DBOS workflow returned a wrong result")
        first_ms, last_ms = poll.execute(
            "SELECT MIN(completed_at_epoch_ms), MAX(completed_at_epoch_ms)"
            " FROM operation_outputs WHERE workflow_uuid LIKE ? AND function_name = ?",
            (RECOVERY_ID_PREFIX + "%", "step_three"),
        ).fetchone()
        with _calls_lock:
            calls = dict(_calls)
        app_version = DBOS.application_version
    finally:
        poll.close()
        DBOS.destroy()
    return {
        "workflows": workflows,
        "recovery_wall_s": wall_s,
        "recovery_s_to_first_step3_end_by_db": (float(first_ms) - launch_epoch_ms)
        / 1000.0,
        "recovery_s_to_last_step3_end_by_db": (float(last_ms) - launch_epoch_ms)
        / 1000.0,
        "launch_s": launch_s,
        "cpu_s": cpu_s,
        "step_executions_in_recovery": {
            name: calls.get(name, 0) for name in ("step_one", "step_two", "step_three")
        },
        "peak_rss_mib": _peak_rss_mib(),
        "application_version": app_version,
    }


def main(argv: list[str] | None = None) -> int:
    """Run one mode and write its JSON result to ``--out``.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode",
        choices=[
            "throughput",
            "chatty",
            "recovery-start",
            "recovery-resume",
            "fleet-member",
        ],
    )
    parser.add_argument(
        "--db", type=Path, help="the SQLite file (all but fleet-member)"
    )
    parser.add_argument("--url", help="fleet-member: the PostgreSQL system database")
    parser.add_argument("--executor-id", default=EXECUTOR_ID, help="fleet-member")
    parser.add_argument(
        "--workflows", type=int, required=True, help="chatty: the workflow's steps"
    )
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--ids", action="store_true", help="SetWorkflowID per workflow")
    args = parser.parse_args(argv)
    if args.mode != "recovery-start" and args.out is None:
        parser.error("--out is required for this mode")
    if (args.mode == "fleet-member") != (args.db is None):
        parser.error("fleet-member takes --url, every other mode --db")
    if args.mode == "fleet-member":
        result = _fleet_member(
            args.url, args.executor_id, args.workflows, args.in_flight, args.warmup
        )
        args.out.write_text(json.dumps(result))
        return 0
    if args.mode == "recovery-start":
        _recovery_start(args.db, args.workflows)
        return 0
    if args.mode == "throughput":
        result = _throughput(
            args.db, args.workflows, args.in_flight, args.warmup, ids=args.ids
        )
    elif args.mode == "chatty":
        result = _chatty(args.db, args.workflows, args.warmup)
    else:
        result = _recovery_resume(args.db, args.workflows, args.timeout)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
