"""How much space `Engine.prune` frees in a DuckDB file, and whether new rows reuse it.

Not part of the suite (``benchmarks/run.py``): a one-off measurement, quoted in
docs/operations.md ("Retention"). Run ``python -m benchmarks.prune_space [RUNS]`` from the
repository root; it writes into a temporary directory and prints, after each phase, the
file's size and DuckDB's block counts (``pragma_database_size``, after a CHECKPOINT):
RUNS runs of three activities; all of them pruned (with a Parquet export); RUNS new runs;
RUNS more without a prune, for comparison.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta

import flowgen as fg
from flowgen.testing import ManualClock


@fg.activity
def work(i: int) -> str:
    return f"result {i} " + "x" * 200


@fg.workflow
def three(i: int) -> fg.Workflow[list[str]]:
    a = yield fg.call(work, i)
    b = yield fg.call(work, i + 1)
    c = yield fg.call(work, i + 2)
    return [a, b, c]


def _size(engine: fg.Engine, path: str) -> str:
    assert isinstance(engine.store, fg.DuckDBStore)
    engine.store.checkpoint()
    total, used, free = engine.sql(
        "select total_blocks, used_blocks, free_blocks from pragma_database_size()"
    ).fetchone()
    return f"file {os.path.getsize(path) / 1e6:.1f} MB, blocks {used} used / {free} free of {total}"


def main(runs: int) -> None:
    directory = tempfile.mkdtemp(prefix="flowgen-prune-")
    path = os.path.join(directory, "space.duckdb")
    archive = os.path.join(directory, "archive")
    clock = ManualClock()
    engine = fg.Engine(path, clock=clock)

    def start(prefix: str) -> None:
        ids = [f"{prefix}-{i}" for i in range(runs)]
        engine.start_many(three, [(i,) for i in range(runs)], ids=ids)
        engine.run_until_idle()

    start("a")
    print(f"after {runs:,} runs: {_size(engine, path)}")
    clock.advance(timedelta(days=40))
    began = time.perf_counter()
    result = engine.prune("30d", export_to=archive)
    took = time.perf_counter() - began
    exported = sum(
        os.path.getsize(os.path.join(archive, f)) for f in os.listdir(archive)
    )
    print(
        f"prune: {result.runs:,} runs, {result.events:,} events in {took:.1f} s "
        f"(Parquet export {exported / 1e6:.1f} MB)"
    )
    print(f"after the prune: {_size(engine, path)}")
    start("b")
    print(f"after {runs:,} new runs: {_size(engine, path)}")
    start("c")
    print(f"after {runs:,} more, without a prune: {_size(engine, path)}")
    engine.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
