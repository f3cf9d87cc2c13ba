"""Smoke test of the benchmark runner: it runs and writes the JSON it documents.

No timing assertions: the figures depend on the machine. Only the shape of the output is
checked (the keys `docs/benchmarks.md` and CI rely on).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_quick(only: str, out: Path, timeout: float, *extra: str) -> dict[str, Any]:
    """``benchmarks/run.py --quick --only ONLY --no-peers --json OUT``: the results."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--only",
            only,
            "--no-peers",
            "--json",
            str(out),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results: dict[str, Any] = json.loads(out.read_text())
    return results


def test_quick_replay_writes_the_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    md = tmp_path / "results.md"
    results = run_quick("replay", out, 110, "--markdown", str(md))
    assert results["mode"] == "quick"
    for key in ("nproc", "cpu_model", "ram_gib", "python", "duckdb"):
        assert key in results["machine"]
    section = results["benchmarks"]["replay"]
    assert "error" not in section
    figures = {fig["id"]: fig for fig in section["figures"]}
    assert "replay.memory_vs_bare" in figures
    for fig in figures.values():
        for key in (
            "label",
            "unit",
            "flowgen",
            "anchor_name",
            "ratio",
            "target",
            "met",
        ):
            assert key in fig
    floor = figures["replay.memory_vs_bare"]
    for key in ("median", "min", "max", "runs"):
        assert key in floor["flowgen"]
        assert key in floor["anchor"]
        assert key in floor["ratio"]
    assert floor["met"] in (True, False)
    # Without peers, the Temporal rows say so instead of failing.
    temporal = figures["replay.memory_vs_temporal"]
    assert temporal["anchor"] is None
    assert "peer not" in temporal["note"]
    assert "| replay |" in md.read_text()


# A hang guard for a run of a dozen processes on a shared machine, not a speed expectation.
@pytest.mark.timeout(600)
def test_quick_fleet_runs_on_a_real_postgresql_and_writes_its_figures(
    tmp_path: Path,
) -> None:
    # benchmarks/fleet.py starts its own PostgreSQL server (tests/pg_server.py) and its
    # member processes; without peers the DBOS columns say so.
    out = tmp_path / "results.json"
    section = run_quick("fleet", out, 600)["benchmarks"]["fleet"]
    assert "error" not in section
    figures = {fig["id"]: fig for fig in section["figures"]}
    one = figures["fleet.flowgen_vs_dbos_pg"]
    assert one["flowgen"]["median"] > 0
    assert one["anchor"] is None
    assert "peer not" in one["note"]
    # The fleet's shapes all ran: two engines on one database, one caller and two
    # `flowgen worker` processes.
    for fid in ("fleet.workers_1_to_2", "fleet.flowgen_1_to_2"):
        assert figures[fid]["flowgen"]["median"] > 0, figures[fid]["note"]
    # And the workers fed 16 in flight each, beside 1 worker at that same load.
    for fid in ("fleet.workers_1_to_2_fed", "fleet.workers_1_to_2_same_load"):
        assert figures[fid]["ratio"]["median"] > 0, figures[fid]
    for key in (
        "flowgen1",
        "flowgen2",
        "workers1",
        "workers2",
        "workers1_at_32",
        "workers2_at_32",
    ):
        (res,) = section["raw"][key]
        assert res["workflows"] == 200
    # A member killed with kill -9 had its runs taken over; no checkpointed step ran again.
    (takeover,) = section["raw"]["takeover"]
    assert takeover["taken_over"] == 5
    assert takeover["step_executions_in_survivor"] == {
        "step_one": 0,
        "step_two": 0,
        "step_three": 5,
    }


def test_quick_chatty_writes_its_figures(tmp_path: Path) -> None:
    # One workflow of 200 sequential activities in a fresh worker process; without peers
    # the DBOS columns say so, and the fixed 0.2 CPU ms target still gives a verdict.
    out = tmp_path / "results.json"
    section = run_quick("chatty", out, 300)["benchmarks"]["chatty"]
    assert "error" not in section
    assert section["params"]["steps"] == 200
    figures = {fig["id"]: fig for fig in section["figures"]}
    target = figures["chatty.cpu_per_step_target"]
    for key in ("median", "min", "max", "runs"):
        assert key in target["flowgen"]
        assert key in target["anchor"]
        assert key in target["ratio"]
    assert target["anchor"]["median"] == 0.2
    assert target["met"] in (True, False)
    for fid in ("chatty.cpu_per_step_vs_dbos", "chatty.wall_per_step_vs_dbos"):
        assert figures[fid]["flowgen"]["median"] > 0
        assert figures[fid]["anchor"] is None
        assert "peer not" in figures[fid]["note"]
    (res,) = section["raw"]["flowgen"]
    assert res["steps"] == 200
    assert res["commits"] > 0
