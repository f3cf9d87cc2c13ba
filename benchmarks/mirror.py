"""The analytics copy's catch-up: events/s copied from PostgreSQL into DuckDB.

A throwaway PostgreSQL 15 server (``tests/pg.py``'s, on a Unix socket; ``fsync=off``) gets a
flowgen schema filled with the workload of ``benchmarks/analytics.py`` (generated into a
DuckDB file with the real schema, then loaded with one ``COPY ... FROM STDIN (FORMAT csv)``
per table). Then, alternately, run by run, each into a new DuckDB file:

* **flowgen's mirror**: ``AnalyticsCopy(url, ..., file).refresh()``, what ``flowgen mirror
  --to FILE`` runs: ADBC reads both tables as Arrow in chunks (``COPY ... TO STDOUT (FORMAT
  binary)`` under the hood), DuckDB appends them to the schema's tables (primary key and
  indexes kept), folds the calls into ``activity_calls``, and moves the horizon;
* **a bare Arrow copy** of the same rows: ADBC's ``fetch_arrow_table`` of the same columns,
  then ``CREATE TABLE ... AS SELECT`` from the Arrow tables into an empty DuckDB file: no
  schema, no keys, no views, no per-call table.

The figure is flowgen's events/s against the bare copy's, run by run.

    python -m benchmarks.mirror --worker 2000000 3
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Config, emit, figure, ratios, run_worker

COLUMNS = {
    "workflows": (
        "workflow_id, run_id, name, status, args, kwargs, result, error, tags, "
        "parent_id, started_at, closed_at"
    ),
    "events": "workflow_id, run_id, event_id, seq, kind, name, payload, attempt, recorded_at",
}
# What the bare copy reads: the mirror's columns (JSON as text).
BARE_SELECT = {
    "workflows": (
        "SELECT workflow_id, run_id, name, status, args::text AS args, "
        "kwargs::text AS kwargs, result::text AS result, error::text AS error, "
        "tags::text AS tags, parent_id, started_at, closed_at FROM workflows"
    ),
    "events": (
        "SELECT workflow_id, run_id, event_id, seq, kind, name, payload::text AS payload, "
        "attempt, recorded_at FROM events"
    ),
}


def load(url: str, source: str, tmp: Path) -> float:
    """Copy the tables of the DuckDB file *source* into PostgreSQL; the seconds it took."""
    import duckdb
    import psycopg

    t0 = time.perf_counter()
    con = duckdb.connect(source, read_only=True)
    try:
        with psycopg.connect(url) as pg:
            for table, columns in COLUMNS.items():
                csv = tmp / f"{table}.csv"
                con.execute(
                    f"COPY (SELECT {columns} FROM {table}) TO '{csv}' (FORMAT csv, HEADER false)"
                )
                with (
                    pg.cursor() as cursor,
                    cursor.copy(
                        f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)"
                    ) as copy,
                    open(csv, "rb") as data,
                ):
                    while chunk := data.read(1 << 20):
                        copy.write(chunk)
                csv.unlink()
            pg.execute("ANALYZE")
    finally:
        con.close()
    return time.perf_counter() - t0


def mirror_once(url: str, target: str) -> float:
    """Seconds for flowgen's analytics copy to catch up into a new file."""
    from flowgen._stores.duckdb_mirror import AnalyticsCopy

    t0 = time.perf_counter()
    with AnalyticsCopy(url, "benchmark", target) as copy:
        copy.refresh()
    return time.perf_counter() - t0


def bare_once(url: str, target: str) -> float:
    """Seconds for a bare Arrow copy of the same rows into a new DuckDB file."""
    import duckdb
    from adbc_driver_postgresql import dbapi

    t0 = time.perf_counter()
    con = duckdb.connect(target)
    try:
        with dbapi.connect(url) as pg:
            for table, query in BARE_SELECT.items():
                with contextlib.closing(pg.cursor()) as cursor:
                    cursor.execute(query)
                    arrow = cursor.fetch_arrow_table()
                con.register("arrow_rows", arrow)
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM arrow_rows")
                con.unregister("arrow_rows")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return time.perf_counter() - t0


def worker(target_events: int, repeats: int) -> dict[str, Any]:
    from benchmarks.analytics import build
    from flowgen._stores.postgres_store import PostgresStore
    from tests.pg import PostgresCluster

    cluster = PostgresCluster()
    cluster.start()
    try:
        url = cluster.url(schema=cluster.create_schema())
        PostgresStore(url).close()  # flowgen's schema, as an engine makes it
        with tempfile.TemporaryDirectory(prefix="flowgen-bench-mirror-") as name:
            tmp = Path(name)
            source = str(tmp / "source.duckdb")
            built = build(source, target_events, 4)
            load_s = load(url, source, tmp)
            Path(source).unlink()
            mirror_s: list[float] = []
            bare_s: list[float] = []
            for run in range(repeats):
                target = tmp / f"mirror-{run}.duckdb"
                mirror_s.append(mirror_once(url, str(target)))
                target.unlink()
                target = tmp / f"bare-{run}.duckdb"
                bare_s.append(bare_once(url, str(target)))
                target.unlink()
    finally:
        cluster.stop()
    return {
        "events": built["events"],
        "runs": built["runs"],
        "load_s": load_s,
        "mirror_s": mirror_s,
        "bare_s": bare_s,
    }


def run(cfg: Config) -> dict[str, Any]:
    events = 50_000 if cfg.quick else 2_000_000
    result = run_worker("mirror", events, cfg.repeats)
    n = result["events"]
    mirror = [n / s for s in result["mirror_s"]]
    bare = [n / s for s in result["bare_s"]]
    cfg.log(
        f"  mirror {n:,} events: flowgen {min(result['mirror_s']):.2f} s, bare Arrow "
        f"copy {min(result['bare_s']):.2f} s"
    )
    return {
        "params": {"events": n, "repeats": cfg.repeats},
        "figures": [
            figure(
                "mirror.catch_up",
                f"analytics copy catch-up from PostgreSQL, {n:,} events",
                "events/s",
                mirror,
                anchor_name="a bare Arrow copy of the same rows (ADBC, no schema)",
                anchor=bare,
                ratio=ratios(mirror, bare),
                ratio_text="flowgen / bare (1: as fast as a bare copy)",
                target="(reported)",
                note=(
                    "flowgen also keeps the schema's keys and indexes and folds the calls "
                    f"into activity_calls; loading PostgreSQL took {result['load_s']:.0f} s"
                ),
            )
        ],
        "raw": result,
    }


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        emit(worker(int(sys.argv[2]), int(sys.argv[3])))
    else:
        sys.exit("usage: python -m benchmarks.mirror --worker EVENTS REPEATS")
