"""Replay: from-scratch replay of an N-step history (N activities in sequence).

Three flowgen figures, measured in one worker process, interleaved run by run:

* **bare loop** (the floor): the same workflow generator, driven by a plain loop that sends
  each recorded activity value into it (``gen.send(v)``), no matching, no decoding;
* **flowgen replay, in memory**: ``flowgen.replay(fn, history, codec=flowgen._stores.codec.CODEC)``
  on events already in memory (indexing the history, matching every command by seq and
  name, decoding every value, checking the run ends as recorded);
* **flowgen replay, from DuckDB**: ``DuckDBStore.load_history`` of the run from a file
  (opened once, outside the clock) plus the same replay.

Against Temporal's ``Replayer`` (temporalio, offline, on a history built by hand from its
protobuf events; ``benchmarks/peers/temporal_replay.py``), unsandboxed and sandboxed, at the
same number of activities: CPU µs per activity.

    python -m benchmarks.replay --worker 10000 5
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ROOT,
    Config,
    child_env,
    emit,
    figure,
    ratios,
    run_worker,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def build_history(n: int) -> list[Any]:
    """The history of ``many_steps(n)``, decided by flowgen's own interpreter."""
    from benchmarks._workflows import many_steps
    from flowgen._core.interpreter import Interpreter
    from flowgen._stores.codec import CODEC
    from flowgen._vocabulary.events import ActivityCompleted, WorkflowStarted

    interp = Interpreter(many_steps, codec=CODEC)
    history: list[Any] = []
    started = WorkflowStarted(
        at=T0, workflow_id="replay-1", run_id="run-1", name="bench.many_steps", args=[n]
    )
    history.append(started)
    history.extend(interp.feed(started).events)
    for i in range(n):
        completed = ActivityCompleted(
            at=T0 + timedelta(milliseconds=i + 1),
            seq=i,
            value=i + 1,
            started_at=T0 + timedelta(milliseconds=i),
        )
        history.append(completed)
        history.extend(interp.feed(completed).events)
    assert interp.result == n * (n + 1) // 2, interp.result
    return history


def bare_loop(fn: Any, n: int, values: list[Any]) -> object:
    """The floor: drive the generator with the recorded values, nothing else."""
    gen = fn(n)
    next(gen)
    try:
        for value in values:
            gen.send(value)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the workflow did not finish")


def worker(n: int, runs: int) -> dict[str, Any]:
    import flowgen
    from benchmarks._workflows import many_steps
    from flowgen._stores.codec import CODEC
    from flowgen._stores.protocol import Batch, EventRow, WorkflowRecord
    from flowgen._vocabulary.events import ActivityCompleted

    expected = n * (n + 1) // 2
    history = build_history(n)
    values = [e.value for e in history if isinstance(e, ActivityCompleted)]
    out: dict[str, Any] = {
        "steps": n,
        "history_events": len(history),
        "bare_us_per_step": [],
        "replay_us_per_step": [],
        "duckdb_us_per_step": [],
        "duckdb_load_us_per_step": [],
    }
    store = None
    tmp = tempfile.TemporaryDirectory(prefix="flowgen-bench-replay-")
    try:
        from flowgen._stores.duckdb_store import DuckDBStore
    except ImportError:
        out["duckdb"] = "no DuckDB store yet"
    else:
        path = str(Path(tmp.name) / "replay.duckdb")
        seed = DuckDBStore(path)
        record = WorkflowRecord(
            "replay-1", "run-1", "bench.many_steps", "running", [n], {}, T0
        )
        seed.commit(
            Batch(
                runs=[record],
                events=[
                    EventRow("replay-1", "run-1", i, e) for i, e in enumerate(history)
                ],
            )
        )
        seed.close()
        store = DuckDBStore(path)
        assert store.load_history("replay-1", "run-1") == history
    # One unmeasured pass of each, so imports and caches are warm.
    bare_loop(many_steps, n, values)
    flowgen.replay(many_steps, history, codec=CODEC)
    for _ in range(runs):
        c = time.process_time()
        result = bare_loop(many_steps, n, values)
        out["bare_us_per_step"].append((time.process_time() - c) / n * 1e6)
        assert result == expected

        c = time.process_time()
        interp = flowgen.replay(many_steps, history, codec=CODEC)
        out["replay_us_per_step"].append((time.process_time() - c) / n * 1e6)
        assert interp.result == expected

        if store is not None:
            c = time.process_time()
            loaded = store.load_history("replay-1", "run-1")
            loaded_at = time.process_time()
            interp = flowgen.replay(many_steps, loaded, codec=CODEC)
            done = time.process_time()
            out["duckdb_us_per_step"].append((done - c) / n * 1e6)
            out["duckdb_load_us_per_step"].append((loaded_at - c) / n * 1e6)
            assert interp.result == expected
    if store is not None:
        store.close()
    tmp.cleanup()
    return out


def temporal(n: int, repeats: int, mode: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.peers.temporal_replay",
            "--steps",
            str(n),
            "--repeats",
            str(repeats),
            "--mode",
            mode,
            "--json",
        ],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"temporal replay failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(cfg: Config) -> dict[str, Any]:
    n = 1000 if cfg.quick else 10_000
    runs = max(cfg.repeats, 2 if cfg.quick else 5)
    fg = run_worker("replay", n, runs)
    cfg.log(
        f"  replay {n} steps: bare {min(fg['bare_us_per_step']):.2f} us/step, flowgen "
        f"{min(fg['replay_us_per_step']):.2f}, with DuckDB load "
        f"{min(fg['duckdb_us_per_step'] or [float('nan')]):.2f}"
    )
    # Temporal's cost per activity grows with the history, so it runs at the same length.
    # A 10,000-activity replay takes it ~15-25 s, so 3 of each runner (1 in --quick).
    t_runs = 1 if cfg.quick else min(cfg.repeats, 3)
    peer_note = cfg.peer_note("temporalio")
    peer = not peer_note
    tem: dict[str, dict[str, Any]] = {}
    if peer:
        for mode in ("unsandboxed", "sandboxed"):
            res = temporal(n, t_runs, mode)
            tem[mode] = res.get(mode) or res
            cfg.log(
                f"  replay Temporal {mode}: {tem[mode]['cpu_us_per_activity']:.0f} us/activity"
            )

    replay = fg["replay_us_per_step"]
    duck = fg["duckdb_us_per_step"] or None
    note = peer_note

    def temporal_runs(mode: str) -> list[float | None] | None:
        return tem[mode]["cpu_us_per_activity_runs"] if peer else None

    def speedup(mode: str, mine: list[float]) -> list[float | None] | None:
        theirs = temporal_runs(mode)
        if theirs is None:
            return None
        # Temporal ran fewer times: pair each of its runs with flowgen's median-ordered runs.
        ordered = sorted(mine)
        return ratios(
            theirs, ordered[len(ordered) // 2 : len(ordered) // 2 + len(theirs)]
        )

    figures = [
        figure(
            "replay.memory_vs_bare",
            f"replay of a {n:,}-step history, events in memory",
            "CPU us/step",
            replay,
            anchor_name="bare generator loop (floor)",
            anchor=fg["bare_us_per_step"],
            ratio=ratios(replay, fg["bare_us_per_step"]),
            ratio_text="flowgen / bare loop",
            target="<= 5x",
            met=lambda x: x <= 5,
        ),
        figure(
            "replay.duckdb_vs_bare",
            f"replay of a {n:,}-step history, loaded from DuckDB",
            "CPU us/step",
            duck or [],
            anchor_name="bare generator loop (floor)",
            anchor=fg["bare_us_per_step"],
            ratio=ratios(duck, fg["bare_us_per_step"]) if duck else None,
            ratio_text="flowgen / bare loop",
            target="(reported)",
            note=f"load alone: {min(fg['duckdb_load_us_per_step'] or [0]):.1f} us/step (min)",
        ),
        figure(
            "replay.memory_vs_temporal",
            f"replay per activity, {n:,} activities",
            "CPU us/activity",
            replay,
            anchor_name="Temporal Replayer, unsandboxed",
            anchor=temporal_runs("unsandboxed"),
            ratio=speedup("unsandboxed", replay),
            ratio_text="Temporal / flowgen",
            target=">= 100x",
            met=lambda x: x >= 100,
            note=note,
        ),
        figure(
            "replay.duckdb_vs_temporal",
            f"replay per activity incl. DuckDB load, {n:,} activities",
            "CPU us/activity",
            duck or [],
            anchor_name="Temporal Replayer, unsandboxed",
            anchor=temporal_runs("unsandboxed"),
            ratio=speedup("unsandboxed", duck) if duck else None,
            ratio_text="Temporal / flowgen",
            target=">= 100x",
            met=lambda x: x >= 100,
            note=note,
        ),
        figure(
            "replay.memory_vs_temporal_sandboxed",
            f"replay per activity, {n:,} activities",
            "CPU us/activity",
            replay,
            anchor_name="Temporal Replayer, sandboxed (its default)",
            anchor=temporal_runs("sandboxed"),
            ratio=speedup("sandboxed", replay),
            ratio_text="Temporal / flowgen",
            target=">= 100x",
            met=lambda x: x >= 100,
            note=note,
        ),
    ]
    return {
        "params": {"steps": n, "runs": runs, "temporal_runs": t_runs if peer else 0},
        "figures": figures,
        "raw": {"flowgen": fg, "temporal": tem},
    }


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        emit(worker(int(sys.argv[2]), int(sys.argv[3])))
    else:
        sys.exit("usage: python -m benchmarks.replay --worker STEPS RUNS")
