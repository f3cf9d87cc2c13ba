"""Analytics: latency and failure questions answered from the ``activities`` view.

A flowgen DuckDB file is created by ``DuckDBStore`` (so it has the real schema, views
included), then filled in bulk: the runs and their histories are generated with numpy into
Arrow tables, and ``INSERT ... SELECT`` from each Arrow table writes the rows, building each
event's JSON payload (exactly the ``event_to_dict`` form the store reads back) in SQL. Never
executemany. The workload: ``order`` workflows of S activities in sequence; each activity
name has its own latency distribution (log-normal) and failure probability; a failed attempt
is retried after a second, up to 3 attempts; a run whose activity fails 3 times fails.

Then, through ``fg.Engine(path).sql(...)`` (the user's path), each query timed (first run
reported apart, median of the rest):

* p50/p95 latency per activity name, completed calls (``quantile_cont`` on ``duration_s``);
* failure rate per activity name (calls that failed for good, and attempts that failed).

Figures: at 10 M events, against the 1 s target; and at the size of the DBOS peer's run
(1,000 workflows of 3 steps, the same data its ``operation_outputs`` table holds), the same
p50/p95 query on flowgen's file against DBOS's window-function query on its SQLite tables.

    python -m benchmarks.analytics --worker 10000000 4 5
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    Config,
    emit,
    figure,
    ratios,
    run_worker,
    within_limit,
)

NAMES = [
    "reserve_stock",
    "check_fraud",
    "charge_card",
    "capture_payment",
    "book_courier",
    "print_label",
    "send_email",
    "update_crm",
]
# Median latency (ms) and attempt failure probability of each activity name.
MEDIAN_MS = [12, 45, 180, 60, 350, 25, 90, 30]
FAIL_P = [0.002, 0.01, 0.04, 0.015, 0.08, 0.005, 0.03, 0.02]
ERRORS = [
    ("TimeoutError", "the service did not answer in time"),
    ("ConnectionError", "connection reset by peer"),
    ("ValueError", "the request was refused"),
]
BASE_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z

# Kinds, by code in the generated arrays.
STARTED, SCHEDULED, ATTEMPT_FAILED, FAILED, COMPLETED, WF_COMPLETED, WF_FAILED = range(
    7
)
KINDS = [
    "workflow_started",
    "activity_scheduled",
    "activity_attempt_failed",
    "activity_failed",
    "activity_completed",
    "workflow_completed",
    "workflow_failed",
]

TS = "strftime(make_timestamp({col}), '%Y-%m-%dT%H:%M:%S.%f+00:00')"

EVENTS_SQL = f"""
INSERT INTO events
SELECT
    'order-' || g AS workflow_id,
    'run-' || g AS run_id,
    event_id,
    seq,
    kind,
    name,
    CASE kind
        WHEN 'workflow_started' THEN
            '{{"at":"' || {TS.format(col="at_us")} || '","workflow_id":"order-' || g
            || '","run_id":"run-' || g || '","name":"order","args":[' || g
            || '],"kwargs":{{}},"parent_id":null,"kind":"workflow_started"}}'
        WHEN 'activity_scheduled' THEN
            '{{"at":"' || {TS.format(col="at_us")} || '","seq":' || seq || ',"name":"' || name
            || '","args":[' || g || '],"kwargs":{{}},"kind":"activity_scheduled"}}'
        WHEN 'activity_completed' THEN
            '{{"at":"' || {TS.format(col="at_us")} || '","seq":' || seq || ',"value":' || g
            || ',"attempt":' || attempt || ',"started_at":"'
            || {TS.format(col="started_us")} || '","kind":"activity_completed"}}'
        WHEN 'activity_attempt_failed' THEN
            '{{"at":"' || {TS.format(col="at_us")} || '","seq":' || seq
            || ',"error":{{"type":"' || err_type || '","message":"' || err_message
            || '","non_retryable":false,"attempts":' || attempt || ',"traceback":""}}'
            || ',"attempt":' || attempt || ',"retry_at":"' || {TS.format(col="retry_us")}
            || '","started_at":"' || {TS.format(col="started_us")}
            || '","kind":"activity_attempt_failed"}}'
        WHEN 'activity_failed' THEN
            '{{"at":"' || {TS.format(col="at_us")} || '","seq":' || seq
            || ',"error":{{"type":"' || err_type || '","message":"' || err_message
            || '","non_retryable":false,"attempts":' || attempt || ',"traceback":""}}'
            || ',"attempt":' || attempt || ',"started_at":"' || {TS.format(col="started_us")}
            || '","kind":"activity_failed"}}'
        WHEN 'workflow_completed' THEN
            '{{"at":"' || {TS.format(col="at_us")} || '","result":' || g
            || ',"kind":"workflow_completed"}}'
        ELSE
            '{{"at":"' || {TS.format(col="at_us")} || '","error":{{"type":"ActivityError",'
            || '"message":"activity failed","non_retryable":false,"attempts":0,'
            || '"traceback":""}},"kind":"workflow_failed"}}'
    END AS payload,
    attempt,
    make_timestamp(at_us)::TIMESTAMPTZ AS recorded_at
FROM batch
"""

WORKFLOWS_SQL = """
INSERT INTO workflows
SELECT
    'order-' || g, 'run-' || g, 'order',
    CASE WHEN failed THEN 'failed' ELSE 'completed' END,
    '[' || g || ']', '{}',
    CASE WHEN failed THEN NULL ELSE CAST(g AS VARCHAR) END,
    CASE WHEN failed THEN '{"type":"ActivityError","message":"activity failed","non_retryable":false,"attempts":0,"traceback":""}' END,
    '{}', NULL,
    make_timestamp(started_us)::TIMESTAMPTZ,
    make_timestamp(closed_us)::TIMESTAMPTZ
FROM runs
"""

LATENCY_SQL = """
select name, count(*) as calls,
       quantile_cont(duration_s, 0.5) as p50_s,
       quantile_cont(duration_s, 0.95) as p95_s
from activities
where status = 'completed'
group by name
order by name
"""

FAILURE_SQL = """
select name, count(*) as calls,
       avg(case when status = 'failed' then 1.0 else 0.0 end) as failure_rate,
       sum(attempts) as attempts,
       1.0 - count(*) filter (where status = 'completed') / sum(attempts) as attempt_failure_rate
from activities
group by name
order by name
"""

# The same questions from the typed per-call table (schema version 2): the calls that ended.
CALLS_LATENCY_SQL = LATENCY_SQL.replace("from activities", "from activity_calls")
CALLS_FAILURE_SQL = FAILURE_SQL.replace("from activities", "from activity_calls")


def generate(con: Any, g0: int, count: int, steps: int, seed: int) -> tuple[int, int]:
    """Append *count* runs (ids g0...) and their histories; returns (events, failed runs)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    g = np.arange(g0, g0 + count, dtype=np.int64)
    s_idx = np.arange(steps)
    name_idx = (2 * s_idx[None, :] + (g[:, None] & 1)) % len(NAMES)  # (W, S)
    p = np.asarray(FAIL_P)[name_idx]
    u = rng.random((count, steps, 3))
    f1 = u[:, :, 0] < p
    f2 = f1 & (u[:, :, 1] < 0.5)  # a failure is transient half of the time
    f3 = f2 & (u[:, :, 2] < 0.5)
    nfail = f1.astype(np.int64) + f2 + f3  # failed attempts, 0..3
    final_failed = nfail == 3
    alive = np.ones((count, steps), dtype=bool)
    alive[:, 1:] = np.cumprod(~final_failed[:, :-1], axis=1).astype(bool)
    run_failed = (final_failed & alive).any(axis=1)

    # Durations of up to 3 attempts (µs), log-normal around each name's median.
    med = np.asarray(MEDIAN_MS, dtype=np.float64)[name_idx] * 1000.0
    dur = (med[:, :, None] * rng.lognormal(0.0, 0.6, (count, steps, 3))).astype(
        np.int64
    )
    queue = rng.integers(50, 2000, (count, steps, 3))  # µs from scheduling to start
    retry = 1_000_000
    attempts_made = np.where(final_failed, 3, nfail + 1)
    # Start of each attempt relative to the activity's scheduling, and its end.
    a_start = np.zeros((count, steps, 3), dtype=np.int64)
    a_end = np.zeros((count, steps, 3), dtype=np.int64)
    t = np.zeros((count, steps), dtype=np.int64)
    for a in range(3):
        a_start[:, :, a] = t + queue[:, :, a]
        a_end[:, :, a] = a_start[:, :, a] + dur[:, :, a]
        t = a_end[:, :, a] + retry
    act_total = np.take_along_axis(a_end, (attempts_made - 1)[:, :, None], 2)[:, :, 0]
    act_total = np.where(alive, act_total + 300, 0)  # + decision latency
    wf_start = BASE_US + g * 40_000
    act_offset = np.zeros((count, steps), dtype=np.int64)
    act_offset[:, 1:] = np.cumsum(act_total, axis=1)[:, :-1]
    sched_at = wf_start[:, None] + 200 + act_offset  # (W, S)
    wf_end = wf_start + 200 + act_total.sum(axis=1) + 100

    # The slot grid: started, then 4 slots per step (scheduled + 3 outcomes), then the end.
    width = 2 + 4 * steps
    kind = np.full((count, width), -1, dtype=np.int8)
    at = np.zeros((count, width), dtype=np.int64)
    started = np.zeros((count, width), dtype=np.int64)
    retry_at = np.zeros((count, width), dtype=np.int64)
    seq = np.full((count, width), -1, dtype=np.int64)
    attempt = np.zeros((count, width), dtype=np.int64)
    nm = np.full((count, width), -1, dtype=np.int64)
    kind[:, 0] = STARTED
    at[:, 0] = wf_start
    for s in range(steps):
        base = 1 + 4 * s
        live = alive[:, s]
        kind[:, base] = np.where(live, SCHEDULED, -1)
        at[:, base] = sched_at[:, s]
        seq[:, base] = s
        nm[:, base] = name_idx[:, s]
        for a in range(3):
            col = base + 1 + a
            made = live & (attempts_made[:, s] > a)
            last = attempts_made[:, s] == a + 1
            k = np.where(
                last & ~final_failed[:, s],
                COMPLETED,
                np.where(last & final_failed[:, s], FAILED, ATTEMPT_FAILED),
            )
            kind[:, col] = np.where(made, k, -1)
            at[:, col] = sched_at[:, s] + a_end[:, s, a]
            started[:, col] = sched_at[:, s] + a_start[:, s, a]
            retry_at[:, col] = at[:, col] + retry
            seq[:, col] = s
            attempt[:, col] = a + 1
            nm[:, col] = name_idx[:, s]
    kind[:, -1] = np.where(run_failed, WF_FAILED, WF_COMPLETED)
    at[:, -1] = wf_end

    mask = kind >= 0
    event_id = np.cumsum(mask, axis=1) - 1
    err = rng.integers(0, len(ERRORS), (count, width))
    flat = mask.ravel()
    n_events = int(flat.sum())
    k_flat = kind.ravel()[flat]
    seq_flat = seq.ravel()[flat]
    nm_flat = nm.ravel()[flat]
    att_flat = attempt.ravel()[flat]
    is_outcome = np.isin(k_flat, [ATTEMPT_FAILED, FAILED, COMPLETED])
    is_err = np.isin(k_flat, [ATTEMPT_FAILED, FAILED])
    err_flat = err.ravel()[flat]
    names = np.asarray(NAMES, dtype=object)
    batch = pa.table(
        {
            "g": pa.array(np.repeat(g, width)[flat]),
            "event_id": pa.array(event_id.ravel()[flat].astype(np.int32)),
            "seq": pa.array(seq_flat, mask=seq_flat < 0).cast(pa.int32()),
            "kind": pa.DictionaryArray.from_arrays(
                pa.array(k_flat.astype(np.int32)), pa.array(KINDS)
            ).cast(pa.string()),
            "name": pa.array(
                np.where(nm_flat >= 0, names[np.maximum(nm_flat, 0)], None)
            ),
            "attempt": pa.array(att_flat, mask=~is_outcome).cast(pa.int32()),
            "at_us": pa.array(at.ravel()[flat]),
            "started_us": pa.array(started.ravel()[flat]),
            "retry_us": pa.array(retry_at.ravel()[flat]),
            "err_type": pa.array(
                np.where(
                    is_err, np.asarray([e[0] for e in ERRORS], object)[err_flat], None
                )
            ),
            "err_message": pa.array(
                np.where(
                    is_err, np.asarray([e[1] for e in ERRORS], object)[err_flat], None
                )
            ),
        }
    )
    runs = pa.table(
        {
            "g": pa.array(g),
            "failed": pa.array(run_failed),
            "started_us": pa.array(wf_start),
            "closed_us": pa.array(wf_end),
        }
    )
    con.register("batch", batch)
    con.register("runs", runs)
    con.execute("BEGIN TRANSACTION")
    con.execute(WORKFLOWS_SQL)
    con.execute(EVENTS_SQL)
    con.execute("COMMIT")
    con.unregister("batch")
    con.unregister("runs")
    return n_events, int(run_failed.sum())


def build(path: str, target_events: int, steps: int) -> dict[str, Any]:
    """Create a flowgen file at *path* holding about *target_events* events."""
    import duckdb

    from flowgen._stores.duckdb_store import DuckDBStore

    DuckDBStore(path).close()  # the schema, exactly as flowgen creates it
    con = duckdb.connect(path)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    per_run = 2 + 2 * steps + 0.05 * steps  # expected events per run
    runs_wanted = max(1, int(target_events / per_run))
    chunk = 100_000
    t0 = time.perf_counter()
    events = failed = 0
    for start in range(0, runs_wanted, chunk):
        e, f = generate(con, start, min(chunk, runs_wanted - start), steps, seed=start)
        events += e
        failed += f
    # The per-call table, as a file migrated to schema version 2 has it: the generated
    # events bypassed flowgen's writer, which keeps it as rows arrive.
    from flowgen._stores.duckdb_calls import rebuild_calls

    t_calls = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    rebuild_calls(con)
    con.execute("COMMIT")
    calls_fill_s = time.perf_counter() - t_calls
    con.execute("CHECKPOINT")
    con.close()
    return {
        "calls_fill_s": calls_fill_s,
        "runs": runs_wanted,
        "events": events,
        "failed_runs": failed,
        "activities_per_run": steps,
        "generate_s": time.perf_counter() - t0,
        "db_mib": Path(path).stat().st_size / 1024 / 1024,
    }


def time_queries(path: str, repeats: int) -> dict[str, Any]:
    import flowgen as fg
    from flowgen._stores.protocol import Batch  # noqa: F401  # flowgen imported before timing

    out: dict[str, Any] = {}
    # An analytics session gives DuckDB every core, as docs/operations.md advises (the
    # engine's default of one DuckDB thread is for cheap commits, not for scans).
    with fg.Engine(path, duckdb_threads=None) as e:
        # The history of a generated run reads back through the store: the rows match the
        # schema the engine writes.
        history = e.store.load_history("order-1", "run-1")
        assert history
        assert type(history[0]).__name__ == "WorkflowStarted"
        for label, sql in (
            ("latency", LATENCY_SQL),
            ("failure", FAILURE_SQL),
            ("calls_latency", CALLS_LATENCY_SQL),
            ("calls_failure", CALLS_FAILURE_SQL),
        ):
            times = []
            rows: list[Any] = []
            for _ in range(repeats + 1):
                t = time.perf_counter()
                rows = e.sql(sql).fetchall()
                times.append(time.perf_counter() - t)
            out[label] = {
                "first_s": times[0],
                "runs_s": times[1:],
                "median_s": statistics.median(times[1:]),
                "rows": [list(map(_plain, row)) for row in rows],
            }
    # The per-call table answers exactly what the view answers.
    for view, table in (("latency", "calls_latency"), ("failure", "calls_failure")):
        assert out[view]["rows"] == out[table]["rows"], (view, table)
    return out


def _plain(value: Any) -> Any:
    return (
        float(value)
        if hasattr(value, "as_integer_ratio") and not isinstance(value, int)
        else value
    )


def worker(target_events: int, steps: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="flowgen-bench-analytics-") as tmp:
        path = str(Path(tmp) / "analytics.duckdb")
        built = build(path, target_events, steps)
        timed = time_queries(path, repeats)
    return {**built, **timed}


def _calls_figure(big: dict[str, Any], label: str, what: str) -> dict[str, Any]:
    """The per-call table against the view, same question, same file, run by run."""
    table = big[f"calls_{label}"]
    fig = figure(
        f"analytics.calls_{label}",
        f"{what} per activity from the per-call table, {big['events']:,} events",
        "s",
        table["runs_s"],
        anchor_name="the activities view, same question, same file",
        anchor=big[label]["runs_s"],
        ratio=ratios(big[label]["runs_s"], table["runs_s"]),
        ratio_text="view / table (>1: the table faster)",
        target="< 1 s",
        note=(
            f"first (cold) run {table['first_s']:.2f} s; the table filled from the "
            f"stored events in {big['calls_fill_s']:.1f} s"
        ),
    )
    fig["met"] = table["median_s"] < 1.0  # the target is on the time, not the ratio
    return fig


def run(cfg: Config) -> dict[str, Any]:
    events = 200_000 if cfg.quick else 10_000_000
    repeats = max(cfg.repeats, 3)
    big = run_worker("analytics", events, 4, repeats)
    cfg.log(
        f"  analytics {big['events']:,} events ({big['generate_s']:.0f} s to generate): "
        f"p50/p95 {big['latency']['median_s'] * 1000:.0f} ms, failure rate "
        f"{big['failure']['median_s'] * 1000:.0f} ms; from activity_calls "
        f"{big['calls_latency']['median_s'] * 1000:.0f} ms and "
        f"{big['calls_failure']['median_s'] * 1000:.0f} ms"
    )
    # The size of DBOS's data: its throughput run's 1,000 workflows (+10 warm-up) of 3 steps.
    dbos_wf = 200 if cfg.quick else 1000
    small = run_worker(
        "analytics", int((dbos_wf + 10) * (2 + 2 * 3 + 0.15)), 3, repeats
    )
    peer_note = cfg.peer_note("dbos")
    peer = not peer_note
    dbos: dict[str, Any] | None = None
    if peer:
        dbos = cfg.shared.get("dbos_analytics")
        if dbos is None or "per_step" not in dbos:
            from benchmarks.peers import dbos_bench

            dbos = dbos_bench.run_analytics(dbos_wf, repeats=repeats)
        cfg.log(
            f"  analytics DBOS ({dbos.get('operation_output_rows')} step rows): "
            f"{dbos['per_step']['query_ms_median']:.1f} ms"
        )
    lat = big["latency"]["runs_s"]
    fail = big["failure"]["runs_s"]
    small_lat_ms = [t * 1000 for t in small["latency"]["runs_s"]]
    dbos_ms = [dbos["per_step"]["query_ms_median"]] * repeats if dbos else None
    figures = [
        within_limit(
            "analytics.latency",
            f"p50/p95 latency per activity, {big['events']:,} events",
            "s",
            lat,
            limit=1.0,
            limit_name="1 s",
            note=f"first (cold) run {big['latency']['first_s']:.2f} s",
        ),
        within_limit(
            "analytics.failure",
            f"failure rate per activity, {big['events']:,} events",
            "s",
            fail,
            limit=1.0,
            limit_name="1 s",
            note=f"first (cold) run {big['failure']['first_s']:.2f} s",
        ),
        _calls_figure(big, "latency", "p50/p95 latency"),
        _calls_figure(big, "failure", "failure rate"),
        figure(
            "analytics.vs_dbos",
            f"p50/p95 per activity at DBOS's size ({small['runs']:,} wf x 3 steps, "
            f"{small['events']:,} events)",
            "ms",
            small_lat_ms,
            anchor_name="DBOS 3.4, same question on its SQLite tables",
            anchor=dbos_ms,
            ratio=ratios(dbos_ms, small_lat_ms) if dbos_ms else None,
            ratio_text="DBOS / flowgen (>1: flowgen faster)",
            target="(reported)",
            note=(
                peer_note
                if not peer
                else "DBOS keeps whole-ms step times and no failure reason per attempt; "
                "its query is window functions (SQLite has no percentile aggregate)"
            ),
        ),
    ]
    return {
        "params": {"events": big["events"], "repeats": repeats},
        "figures": figures,
        "raw": {"flowgen": big, "flowgen_small": small, "dbos": dbos},
    }


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        emit(worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    else:
        sys.exit("usage: python -m benchmarks.analytics --worker EVENTS STEPS REPEATS")
