"""Fleet: flowgen engines sharing one PostgreSQL database, against DBOS on the same server.

One throwaway PostgreSQL 15 server per run (``tests/pg_server.py``: unprivileged, Unix
socket, PostgreSQL's default durability: ``fsync`` on, as in production), a fresh database
per measurement, every process a fresh one, flowgen and DBOS interleaved run by run.

Throughput: 1,000 workflows of three trivial activities (200 with ``--quick``), 16 in flight
in all, under ids the callers choose, every result checked. Three shapes:

* ``flowgen`` N: N engine processes (``fg.Engine("postgresql://...")``), each running its
  share (``order-<member>-<i>``) from 16 / N caller threads (each thread starts a workflow,
  waits for its result, starts the next) and running what the fleet gives it: a web
  application's N processes serving 16 requests at once.
* ``workers`` N: one caller process (an engine that runs no workflow:
  ``fg.FleetOptions(runs_workflows=False)``) runs all 1,000 from 16 caller threads, and N
  ``flowgen worker`` processes do the work, each one member of the fleet with its own
  ``--concurrency`` (8, the default); SIGTERM stops them. The caller learns each result
  from the notification the closing commit sends (``LISTEN``), not by polling.
* ``dbos`` N: DBOS Transact 3.4 on the same server, N processes with an executor id each
  (its production setup), the same shares and caller threads as ``flowgen`` N (each thread
  calls the workflow under ``SetWorkflowID``).

Every process warms up (5 workflows per caller), says ``ready``, and all get the go at once;
the wall time runs from the first caller's start to the last one's end (``time.monotonic``
is system-wide). Reported: workflows/s, client CPU ms per workflow (every flowgen or DBOS
process, all threads) and PostgreSQL's CPU ms per workflow (the server's processes, from
``/proc``: what the shared database pays).

Takeover: a worker stands by; another engine starts 20 runs (5 with ``--quick``) whose third
activity blocks in that process and is killed with SIGKILL once each run is inside it (or
done); the time from the kill until the survivor has every result, against the configured
lease plus a second (``FleetOptions(lease=5)``; the poll fallback is its default, 1 s).

Figures: flowgen 1 process / DBOS 1 process at 16 in flight (target >= 3x); 2 workers / 1
worker (target >= 1.6x on 2 cores), at 16 in flight in all (the caller's 16 threads, however
many workers: each of 2 workers has 8 runs to batch, of 4 workers 4); beside it, N workers
fed 16 in flight each (16 N caller threads) against 1 worker at 16, and against 1 worker at
the same 16 N (what the workers add at an equal offered load); the other counts and shapes,
reported; the takeover time
/ (lease + 1 s) (target <= 1); beside them, WAL flushes per workflow (``pg_stat_wal``) and
commits per workflow, which explain most of the differences.

    python -m benchmarks.fleet --worker caller URL NAME WORKFLOWS IN_FLIGHT WARMUP RUNS
    python -m flowgen --db URL worker --import benchmarks._workflows
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ROOT,
    Config,
    child_env,
    emit,
    fan_out,
    figure,
    ratios,
    within_limit,
    worker_cmd,
)
from benchmarks._workflows import BLOCK_ENV
from tests.pg_server import PostgresCluster

IN_FLIGHT = 16
WARMUP = 5
#: The lease the takeover measurement configures (seconds); the target is lease + 1 s.
LEASE_S = 5.0
#: A hang guard per member and phase, not a speed expectation.
TIMEOUT_S = 600.0
#: PostgreSQL's defaults (durable), plus timing of WAL flushes for `wal`.
SERVER_SETTINGS = {"track_wal_io_timing": "on"}
DBOS_WORKER = ROOT / "benchmarks" / "peers" / "_dbos_worker.py"


# -- the member processes --------------------------------------------------------------------


class Member:
    """One member process: started, ``ready`` awaited, given the go, its result read.

    The protocol (both systems): the member prints ``ready`` on stdout when warmed up, reads
    one line from stdin (the go), and reports one JSON object, on its last stdout line or in
    *out* (the DBOS worker writes a file).
    """

    #: A worker runs no workflows of its own: it is stopped once the callers are done.
    standby = False

    def __init__(
        self, cmd: list[str], out: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.cmd = cmd
        self.out = out
        # Closed by kill(), which every member gets (its life spans several calls).
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**child_env(), **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def failure(self, what: str) -> RuntimeError:
        self.stderr.seek(0)
        return RuntimeError(
            f"{what} ({' '.join(self.cmd[:4])} ...):\n{self.stderr.read()[-3000:]}"
        )

    def wait_ready(self) -> None:
        """Block until the member said ``ready``; its stderr if it died first."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.wait(timeout=TIMEOUT_S)
            raise self.failure(
                f"member exited ({self.process.returncode}) before ready"
            )

    def say(self, word: str) -> None:
        """One line on the member's stdin (``go``; ``stop`` for a standby worker)."""
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def result(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        code = self.process.wait(timeout=TIMEOUT_S)
        if code != 0:
            raise self.failure(f"member failed ({code})")
        if self.out is not None:
            return dict(json.loads(self.out.read_text()))
        lines = [line for line in stdout.splitlines() if line.strip()]
        return dict(json.loads(lines[-1]))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.stderr.close()


class CliWorker(Member):
    """``flowgen worker`` itself as a member: ready when it prints its first line, stopped
    with SIGTERM (as a process manager stops it), its CPU read from ``/proc``."""

    standby = True
    cpu0 = cpu = 0.0

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("flowgen worker"):
            self.process.wait(timeout=TIMEOUT_S)
            raise self.failure(
                f"flowgen worker exited ({self.process.returncode}) before its first line"
            )

    def say(self, word: str) -> None:
        if word == "go":
            self.cpu0 = process_cpu_s(self.process.pid)
        else:
            self.cpu = process_cpu_s(self.process.pid) - self.cpu0
            self.process.send_signal(signal.SIGTERM)

    def result(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        self.process.stdout.read()
        code = self.process.wait(timeout=TIMEOUT_S)
        if code != 0:
            raise self.failure(f"flowgen worker failed ({code})")
        return {"workflows": 0, "cpu_s": self.cpu}


def process_cpu_s(pid: int) -> float:
    """CPU seconds process *pid* has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_s(cluster: PostgresCluster) -> float:
    """CPU seconds PostgreSQL's processes have used so far (the postmaster's own, its live
    children's, and those of its children that have ended: ``cutime``/``cstime``)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif ppid == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wal(cluster: PostgresCluster, reset: bool = False) -> dict[str, float]:
    """The server's WAL flushes (``fdatasync`` of the WAL) and their time since the last
    reset (``pg_stat_wal``; the server has ``track_wal_io_timing`` on)."""
    import psycopg

    with psycopg.connect(cluster.url("postgres"), autocommit=True) as con:
        if reset:
            con.execute("SELECT pg_stat_reset_shared('wal')")
            return {}
        row = con.execute("SELECT wal_sync, wal_sync_time FROM pg_stat_wal").fetchone()
    assert row is not None
    return {"syncs": float(row[0]), "sync_ms": float(row[1])}


def run_fleet(cluster: PostgresCluster, members: list[Member]) -> dict[str, Any]:
    """Run ready members to the end: the go to all at once, then the callers' results,
    then ``stop`` to the standby workers (they report the CPU they used meanwhile)."""
    # Backends report WAL statistics at most once a second: let the warm-up's arrive first.
    time.sleep(1.1)
    wal(cluster, reset=True)
    cpu0 = server_cpu_s(cluster)
    for member in members:
        member.say("go")
    callers = [m for m in members if not m.standby]
    workers = [m for m in members if m.standby]
    results = [member.result() for member in callers]
    for member in workers:
        member.say("stop")
    results += [member.result() for member in workers]
    time.sleep(0.2)  # let the postmaster reap the members' backends (their CPU counts)
    server = server_cpu_s(cluster) - cpu0
    flushed = wal(cluster)
    workflows = sum(r["workflows"] for r in results)
    timed = [r for r in results if r["workflows"]]
    wall = max(r["end"] for r in timed) - min(r["start"] for r in timed)
    client = sum(r["cpu_s"] for r in results)
    return {
        "processes": len(results),
        "workflows": workflows,
        "wall_s": wall,
        "workflows_per_s": workflows / wall,
        "client_cpu_ms_per_workflow": client * 1000.0 / workflows,
        "server_cpu_ms_per_workflow": server * 1000.0 / workflows,
        "wal_syncs_per_workflow": flushed["syncs"] / workflows,
        "wal_sync_ms_mean": flushed["sync_ms"] / flushed["syncs"]
        if flushed["syncs"]
        else None,
        "per_member": results,
    }


def start_members(make: list[Callable[[], Member]]) -> list[Member]:
    """Start members one after another, each awaited until ready (killing all on failure)."""
    started: list[Member] = []
    try:
        for new in make:
            member = new()
            started.append(member)
            member.wait_ready()
    except BaseException:
        for member in started:
            member.kill()
        raise
    return started


def _dbos_cmd(url: str, executor: str, n: int, window: int, out: Path) -> list[str]:
    return [
        sys.executable,
        str(DBOS_WORKER),
        "fleet-member",
        "--url",
        url,
        "--executor-id",
        executor,
        "--workflows",
        str(n),
        "--in-flight",
        str(window),
        "--warmup",
        str(WARMUP),
        "--out",
        str(out),
    ]


def plan(
    system: str,
    count: int,
    n: int,
    url: str,
    tag: str,
    tmp: Path,
    in_flight: int = IN_FLIGHT,
) -> list[Callable[[], Member]]:
    """The processes of one measurement, in the order they start (see the docstring)."""
    if system == "workers":
        worker = [sys.executable, "-m", "flowgen", "--db", url, "worker"]
        worker += ["--import", "benchmarks._workflows"]
        caller = worker_cmd("fleet", "caller", url, "c", n, in_flight, WARMUP, "no")
        return [
            *(partial(CliWorker, worker) for _ in range(count)),
            partial(Member, caller),
        ]
    window = max(in_flight // count, 1)
    shares = [n // count + (1 if m < n % count else 0) for m in range(count)]
    if system == "flowgen":
        return [
            partial(
                Member,
                worker_cmd(
                    "fleet", "caller", url, f"m{m}", share, window, WARMUP, "yes"
                ),
            )
            for m, share in enumerate(shares)
        ]
    out = [tmp / f"{tag}-{m}.json" for m in range(count)]
    return [
        partial(Member, _dbos_cmd(url, f"{tag}-m{m}", share, window, out[m]), out[m])
        for m, share in enumerate(shares)
    ]


def measure(
    cluster: PostgresCluster,
    system: str,
    count: int,
    n: int,
    tag: str,
    tmp: Path,
    in_flight: int = IN_FLIGHT,
) -> dict[str, Any]:
    """*system* (``flowgen``, ``workers``, ``dbos``) with *count* processes on a fresh
    database, *in_flight* workflows in flight in all."""
    database = f"fleet_{tag}"
    cluster.admin(f"CREATE DATABASE {database}")
    try:
        url = cluster.url(database)
        members = start_members(plan(system, count, n, url, tag, tmp, in_flight))
        try:
            return {"system": system, "count": count, **run_fleet(cluster, members)}
        finally:
            for member in members:
                member.kill()
    finally:
        cluster.admin(f"DROP DATABASE {database} WITH (FORCE)")


def measure_takeover(cluster: PostgresCluster, k: int, tag: str) -> dict[str, Any]:
    """Kill -9 a member whose runs are all inside their third activity; time the takeover.

    The survivor joins first and stands by; the victim (step three blocks in it) starts *k*
    runs and says ``ready`` once each is inside step three there or already finished (a
    fleet may run some elsewhere). The clock starts at the SIGKILL and stops when the
    survivor has every result.
    """
    database = f"fleet_{tag}"
    cluster.admin(f"CREATE DATABASE {database}")
    url = cluster.url(database)
    lease = str(LEASE_S)
    survivor = start_members(
        [partial(Member, worker_cmd("fleet", "survivor", url, k, lease))]
    )[0]
    try:
        victim = Member(
            worker_cmd("fleet", "victim", url, k, lease), env={BLOCK_ENV: "1"}
        )
        try:
            victim.wait_ready()
            assert victim.process.stdout is not None
            inside = int(victim.process.stdout.readline())
            killed = time.monotonic()
            victim.kill()  # SIGKILL
        finally:
            victim.kill()
        survivor.say("go")
        res = survivor.result()
    finally:
        survivor.kill()
        cluster.admin(f"DROP DATABASE {database} WITH (FORCE)")
    return {
        "workflows": k,
        "taken_over": inside,
        "lease_s": LEASE_S,
        "takeover_s": res["end"] - killed,
        "step_executions_in_survivor": res["step_executions"],
    }


# -- the flowgen members (child processes) ---------------------------------------------------


def fleet_engine(url: str, **options: Any) -> Any:
    """An engine on *url*; *options* go to ``fg.FleetOptions`` (a fleet build only)."""
    import flowgen as fg

    if not options:
        return fg.Engine(url)
    return fg.Engine(url, fleet=fg.FleetOptions(**options))


def victim(url: str, k: int, lease: float) -> None:
    """Start *k* runs whose step three blocks here; ``ready``, then how many are inside it."""
    import flowgen as fg
    from benchmarks import _workflows as w

    engine = fg.Engine(url, fleet=fg.FleetOptions(lease=lease), max_workers=k + 8)
    engine.start_background()
    handles = [engine.start(w.three_steps, i, id=f"takeover-{i}") for i in range(k)]
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        done = sum(h.status() == "completed" for h in handles)
        if w.entered_step_three + done >= k:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the runs did not reach step three")
        time.sleep(0.01)
    print("ready", flush=True)
    print(w.entered_step_three, flush=True)
    time.sleep(3600)  # until kill -9


def survivor(url: str, k: int, lease: float) -> dict[str, Any]:
    """Stand by until the go (the victim was killed), then wait for every run's result."""
    from benchmarks import _workflows as w

    with fleet_engine(url, lease=lease) as engine:
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(k):
            assert engine.get(f"takeover-{i}").result(timeout=TIMEOUT_S) == i + 3
        end = time.monotonic()
    return {"end": end, "step_executions": dict(w.step_executions)}


def caller(
    url: str, name: str, n: int, window: int, warmup: int, runs: bool
) -> dict[str, Any]:
    """Warm up, ``ready``, wait for the go, run *n* workflows from *window* caller threads
    (each starts one, waits for its result, starts the next: *window* in flight).

    With *runs* false, the engine runs no workflow: the fleet's workers do.
    """
    from benchmarks._workflows import three_steps

    options = {} if runs else {"runs_workflows": False}
    with fleet_engine(url, **options) as engine:
        for i in range(warmup):
            got = engine.start(three_steps, -1 - i, id=f"warmup-{name}-{i}").result(
                timeout=TIMEOUT_S
            )
            assert got == 2 - i
        print("ready", flush=True)
        sys.stdin.readline()

        def call(i: int) -> None:
            handle = engine.start(three_steps, i, id=f"order-{name}-{i}")
            assert handle.result(timeout=TIMEOUT_S) == i + 3

        commits0, steps0 = engine.commits, engine.steps
        start, cpu0 = time.monotonic(), time.process_time()
        fan_out(n, window, call)
        end, cpu = time.monotonic(), time.process_time() - cpu0
        commits, steps = engine.commits - commits0, engine.steps - steps0
    return {
        "workflows": n,
        "in_flight": window,
        "start": start,
        "end": end,
        "cpu_s": cpu,
        "commits": commits,
        "items_per_commit": steps / commits if commits else None,
    }


# -- the benchmark ---------------------------------------------------------------------------


def shapes(counts: tuple[int, ...], peer_note: str) -> list[tuple[int, str, int]]:
    """(processes, system, in flight in all) of one round, in the order they run.

    Each system at 16 in flight in all; and, since 16 in flight spread over N workers
    leaves each less to do, N workers fed 16 each (one caller), beside 1 worker at that
    same load: what more workers add at an equal offered load.
    """
    out = []
    for count in counts:
        for system in ("flowgen", "workers", "dbos"):
            if not (system == "dbos" and peer_note):
                out.append((count, system, IN_FLIGHT))
    for count in counts[1:]:
        out += [
            (1, "workers", IN_FLIGHT * count),
            (count, "workers", IN_FLIGHT * count),
        ]
    return out


def run(cfg: Config) -> dict[str, Any]:
    n = 200 if cfg.quick else 1000
    counts = (1, 2) if cfg.quick else (1, 2, 4)
    k = 5 if cfg.quick else 20
    peer_note = cfg.peer_note("dbos")
    cluster = PostgresCluster(SERVER_SETTINGS)
    cluster.start()
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="flowgen-bench-fleet-") as tmp:
            for r in range(cfg.repeats):
                for count, system, in_flight in shapes(counts, peer_note):
                    key = f"{system}{count}"
                    if in_flight != IN_FLIGHT:
                        key += f"_at_{in_flight}"
                    tag = f"{key}_r{r}"
                    res = measure(cluster, system, count, n, tag, Path(tmp), in_flight)
                    runs.setdefault(key, []).append(res)
                    cfg.log(
                        f"  fleet {key} run {r + 1}: {res['workflows_per_s']:.0f} wf/s, "
                        f"client {res['client_cpu_ms_per_workflow']:.2f} + server "
                        f"{res['server_cpu_ms_per_workflow']:.2f} CPU ms/wf, "
                        f"{res['wal_syncs_per_workflow']:.2f} WAL syncs/wf "
                        f"({res['wal_sync_ms_mean'] or 0:.2f} ms each), "
                        f"load {os.getloadavg()[0]:.1f}"
                    )
                res = measure_takeover(cluster, k, f"takeover_r{r}")
                runs.setdefault("takeover", []).append(res)
                cfg.log(
                    f"  fleet takeover run {r + 1}: {res['takeover_s']:.2f} s for "
                    f"{res['taken_over']} runs (lease {LEASE_S:g} s)"
                )
    finally:
        cluster.stop()
    return {
        "params": {
            "workflows": n,
            "in_flight": IN_FLIGHT,
            "members": list(counts),
            "warmup_per_member": WARMUP,
            "takeover_workflows": k,
            "lease_s": LEASE_S,
            "postgresql": "15, default durability (fsync on), Unix socket",
        },
        "figures": figures(runs, counts, peer_note),
        "raw": runs,
    }


def _values(
    runs: dict[str, list[dict[str, Any]]], key: str, field: str
) -> list[float | None]:
    return [res.get(field) for res in runs.get(key, [])]


def _rerun_note(takeovers: list[dict[str, Any]]) -> str:
    """How many runs moved and how many checkpointed steps ran again (must be none)."""
    moved = sorted({res["taken_over"] for res in takeovers})
    rerun = sum(
        res["step_executions_in_survivor"]["step_one"]
        + res["step_executions_in_survivor"]["step_two"]
        for res in takeovers
    )
    return (
        f"lease {LEASE_S:g} s, poll 1 s; runs taken over per kill: "
        f"{', '.join(map(str, moved))}; checkpointed steps run again: {rerun}"
    )


def figures(
    runs: dict[str, list[dict[str, Any]]], counts: tuple[int, ...], peer_note: str
) -> list[dict[str, Any]]:
    out = []
    fg1 = _values(runs, "flowgen1", "workflows_per_s")
    dbos1 = None if peer_note else _values(runs, "dbos1", "workflows_per_s")
    out.append(
        figure(
            "fleet.flowgen_vs_dbos_pg",
            f"1 process, {IN_FLIGHT} in flight, PostgreSQL",
            "wf/s",
            fg1,
            anchor_name="DBOS 3.4 on PostgreSQL",
            anchor=dbos1,
            ratio=ratios(fg1, dbos1) if dbos1 else None,
            ratio_text="flowgen / DBOS",
            target=">= 3x",
            met=lambda x: x >= 3,
            note=peer_note,
        )
    )
    for fid, label, unit, field in (
        (
            "client_cpu",
            "client CPU per workflow",
            "CPU ms/wf",
            "client_cpu_ms_per_workflow",
        ),
        (
            "server_cpu",
            "PostgreSQL server CPU per workflow",
            "CPU ms/wf",
            "server_cpu_ms_per_workflow",
        ),
        (
            "wal_syncs",
            "WAL flushes (fsync) per workflow",
            "syncs/wf",
            "wal_syncs_per_workflow",
        ),
    ):
        fg_v = _values(runs, "flowgen1", field)
        dbos_v = None if peer_note else _values(runs, "dbos1", field)
        out.append(
            figure(
                f"fleet.{fid}_vs_dbos_pg",
                f"{label}, 1 process, {IN_FLIGHT} in flight",
                unit,
                fg_v,
                anchor_name="DBOS 3.4 on PostgreSQL",
                anchor=dbos_v,
                ratio=ratios(dbos_v, fg_v) if dbos_v else None,
                ratio_text="DBOS / flowgen",
                target="(reported)",
                note=peer_note,
            )
        )
    for count in counts[1:]:
        for shape, what, anchor_name in (
            ("workers", "worker processes, 1 caller", "1 worker"),
            ("flowgen", "processes each starting its share", "1 process"),
        ):
            key = f"{shape}{count}"
            values = _values(runs, key, "workflows_per_s")
            base = _values(runs, f"{shape}1", "workflows_per_s")
            target = shape == "workers" and count == 2
            out.append(
                figure(
                    f"fleet.{shape}_1_to_{count}",
                    f"{count} {what} vs 1, {IN_FLIGHT} in flight in all",
                    "wf/s",
                    values,
                    anchor_name=f"flowgen, {anchor_name}",
                    anchor=base,
                    ratio=ratios(values, base),
                    ratio_text=f"{count} / 1",
                    target=">= 1.6x" if target else "(reported)",
                    met=(lambda x: x >= 1.6) if target else None,
                )
            )
    for count in counts[1:]:
        load = IN_FLIGHT * count
        loaded = _values(runs, f"workers{count}_at_{load}", "workflows_per_s")
        for fid, label, base_key in (
            (
                f"fleet.workers_1_to_{count}_fed",
                f"{count} workers at {load} in flight vs 1 worker at {IN_FLIGHT}",
                "workers1",
            ),
            (
                f"fleet.workers_1_to_{count}_same_load",
                f"{count} workers vs 1 worker, both at {load} in flight",
                f"workers1_at_{load}",
            ),
        ):
            base = _values(runs, base_key, "workflows_per_s")
            out.append(
                figure(
                    fid,
                    label,
                    "wf/s",
                    loaded,
                    anchor_name="flowgen, 1 worker",
                    anchor=base,
                    ratio=ratios(loaded, base),
                    ratio_text=f"{count} / 1",
                    target="(reported)",
                )
            )
    for count in counts:
        key = f"workers{count}"
        values = _values(runs, key, "workflows_per_s")
        dbos_n = None if peer_note else _values(runs, f"dbos{count}", "workflows_per_s")
        out.append(
            figure(
                f"fleet.workers_{count}_vs_dbos_{count}",
                f"{count} flowgen worker(s) + 1 caller vs {count} DBOS process(es)",
                "wf/s",
                values,
                anchor_name=f"DBOS 3.4, {count} process(es)",
                anchor=dbos_n,
                ratio=ratios(values, dbos_n) if dbos_n else None,
                ratio_text="flowgen / DBOS",
                target="(reported)",
                note=peer_note,
            )
        )
    out.append(
        within_limit(
            "fleet.takeover",
            "takeover after kill -9 of a member (last run done)",
            "s",
            _values(runs, "takeover", "takeover_s"),
            limit=LEASE_S + 1,
            limit_name="lease + 1 s",
            note=_rerun_note(runs["takeover"]),
        )
    )
    return out


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        mode, *rest = sys.argv[2:]
        if mode == "caller":
            url, name, n_, k_, w_, runs_ = rest
            emit(caller(url, name, int(n_), int(k_), int(w_), runs_ == "yes"))
        elif mode == "victim":
            victim(rest[0], int(rest[1]), float(rest[2]))
        elif mode == "survivor":
            emit(survivor(rest[0], int(rest[1]), float(rest[2])))
        else:
            sys.exit(f"unknown worker mode {mode!r}")
    else:
        sys.exit(__doc__)
