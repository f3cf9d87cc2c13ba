"""Retention (`Engine.prune`): old closed runs are exported to Parquet and deleted.

On the three stores through the public API (Parquet export: DuckDB and PostgreSQL), by
hand on a ManualClock; a DuckDB file is reopened after a prune (and pruned with commits
still in its journal); a background engine keeps working while it prunes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.memory import MemoryStore
from tests.engine_workflows import Tools, sleepy_child, snapshot, steps, wait_for

DAY = timedelta(days=1)


@pytest.fixture
def tools() -> Iterator[Tools]:
    tools = Tools()
    yield tools
    tools.release_all()


@pytest.fixture(params=["memory", "duckdb", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory"
    if request.param == "duckdb":
        return str(tmp_path / "retention.duckdb")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def opened(where: str, tools: Tools) -> Iterator[Any]:
    """``opened()`` -> a hand-driven engine on *where* (the same MemoryStore each time)."""
    clock = ManualClock()
    memory = MemoryStore() if where == "memory" else None
    engines: list[fg.Engine] = []

    def open_one() -> fg.Engine:
        if memory is not None:
            engine = fg.Engine(store=memory, clock=clock, activities=[tools])
        else:
            engine = fg.Engine(where, clock=clock, activities=[tools])
        engines.append(engine)
        return engine

    yield open_one
    for engine in engines:
        engine.close()


def run_ids(engine: fg.Engine) -> set[str]:
    return {run.run_id for run in engine.list_runs(limit=None)}


def test_prune_deletes_closed_runs_older_than_the_cutoff_and_nothing_else(
    opened: Any, tools: Tools
) -> None:
    engine = opened()
    clock = engine.clock
    old_done = engine.start(steps, ["a"], id="old-done")
    old_running = engine.start(wait_for, "go", id="old-running")
    engine.run_until_idle()
    clock.advance(40 * DAY)
    recent = engine.start(steps, ["b"], id="recent")
    engine.run_until_idle()
    clock.advance(DAY)
    assert old_done.status() == "completed" and recent.status() == "completed"
    events_before = len(engine.store.load_history("old-done", old_done.run_id))

    result = engine.prune(older_than="30d")

    assert (result.runs, result.events, result.files) == (1, events_before, ())
    assert result.cutoff == clock.now() - 30 * DAY
    assert run_ids(engine) == {old_running.run_id, recent.run_id}
    assert engine.store.get_run("old-done") is None
    assert engine.store.load_history("old-done", old_done.run_id) == []
    with pytest.raises(fg.UnknownWorkflow):
        engine.get("old-done")
    # The engine goes on: the old running run still takes its signal; the id is free.
    engine.signal("old-running", "go", 1)
    engine.start(steps, ["c"], id="old-done")
    engine.run_until_idle()
    assert old_running.result() == [1]
    assert engine.get("old-done").result() == ["done c"]
    # Nothing more is old enough.
    assert engine.prune(timedelta(days=30)).runs == 0


@fg.workflow
def child_then_wait(seconds: float) -> fg.Workflow[list[object]]:
    """Run a `sleepy_child`, then wait for ``go``: a running parent of a closed child."""
    woke = yield from fg.child(sleepy_child, seconds)  # id "parent/0"
    go = yield fg.wait_signal("go")
    return [woke, go]


def test_a_closed_child_whose_parent_runs_is_kept(opened: Any, tools: Tools) -> None:
    engine = opened()
    parent = engine.start(child_then_wait, 1.0, id="parent")
    engine.run_until_idle()
    child = engine.get("parent/0")
    assert (child.status(), parent.status()) == ("completed", "running")
    engine.clock.advance(40 * DAY)

    assert engine.prune("30d").runs == 0
    assert engine.store.get_run("parent/0") is not None
    # Once the parent has closed, both go.
    engine.signal("parent", "go", 1)
    engine.run_until_idle()
    assert parent.result() == ["woke", 1]
    engine.clock.advance(40 * DAY)
    assert engine.prune("30d").runs == 2


def test_export_writes_both_tables_readable_with_duckdb(
    opened: Any, tools: Tools, where: str, tmp_path: Path
) -> None:
    engine = opened()
    if where == "memory":
        with pytest.raises(fg.UsageError, match="cannot export"):
            engine.prune("1d", export_to=tmp_path / "archive")
        return
    handles = [engine.start(steps, [f"k{i}", "z"], id=f"run-{i}") for i in range(3)]
    engine.run_until_idle()
    engine.clock.advance(2 * DAY)
    before = snapshot(engine.store)
    records = {r.run_id: r for r in before[0]}

    result = engine.prune("1d", export_to=tmp_path / "archive")

    assert result.runs == 3
    assert sorted(Path(f).name.split("-")[0] for f in result.files) == [
        "events",
        "workflows",
    ]
    con = duckdb.connect()
    archive = tmp_path / "archive"
    rows = con.execute(
        f"select run_id, workflow_id, status, args, started_at, closed_at "
        f"from '{archive}/workflows-*.parquet' order by workflow_id"
    ).fetchall()
    assert [row[1] for row in rows] == ["run-0", "run-1", "run-2"]
    for run_id, workflow_id, status, args, started_at, closed_at in rows:
        record = records[run_id]
        assert (workflow_id, status) == (record.workflow_id, "completed")
        assert json.loads(args) == record.args  # JSON as the codec wrote it
        assert (started_at, closed_at) == (record.started_at, record.closed_at)
    events = con.execute(
        f"select run_id, event_id, kind, payload from '{archive}/events-*.parquet' "
        f"order by run_id, event_id"
    ).fetchall()
    histories = before[1]
    assert len(events) == sum(len(h) for h in histories.values()) == result.events
    by_run: dict[str, list[str]] = {}
    for run_id, _event_id, kind, _payload in events:
        by_run.setdefault(run_id, []).append(kind)
    assert set(by_run) == {h.run_id for h in handles}
    assert run_ids(engine) == set()


def test_bad_input_deletes_nothing(opened: Any, tools: Tools, tmp_path: Path) -> None:
    engine = opened()
    engine.start(steps, ["a"], id="a")
    engine.run_until_idle()
    engine.clock.advance(40 * DAY)
    before = snapshot(engine.store)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for bad, error, message in [
        ("30x", ValueError, "older_than must be a duration such as '30d'"),
        ("", ValueError, "older_than must be a duration"),
        (0, ValueError, "older_than must be positive"),
        (-5.0, ValueError, "older_than must be positive"),
        (timedelta(0), ValueError, "older_than must be positive"),
        (float("nan"), ValueError, "older_than must be positive"),
        ("1000000w", ValueError, "older_than must be at most"),
        (True, TypeError, "older_than must be a timedelta"),
        (None, TypeError, "older_than must be a timedelta"),
    ]:
        with pytest.raises(error, match=message):
            engine.prune(bad)
    if not isinstance(engine.store, MemoryStore):
        with pytest.raises(ValueError, match="export_to must be a directory"):
            engine.prune("30d", export_to=a_file)
    assert snapshot(engine.store) == before


def test_a_duckdb_file_is_pruned_through_its_journal_and_reopens(
    tmp_path: Path, tools: Tools
) -> None:
    """Runs whose commits are still journaled are pruned, and stay pruned after a reopen."""
    path = str(tmp_path / "journal.duckdb")
    clock = ManualClock()
    engine = fg.Engine(path, clock=clock, activities=[tools])
    store = engine.store
    assert isinstance(store, fg.DuckDBStore)
    for i in range(5):
        engine.start(steps, [f"k{i}"], id=f"run-{i}")
    engine.run_until_idle()
    assert store._pending  # journaled, not yet in the tables (what prune must not race)
    clock.advance(2 * DAY)
    keep = engine.start(steps, ["late"], id="late")
    engine.run_until_idle()

    assert engine.prune("1d").runs == 5
    engine.close()

    reopened = fg.Engine(path, clock=clock, activities=[tools])
    try:
        assert run_ids(reopened) == {keep.run_id}
        counts = reopened.sql(
            "select (select count(*) from workflows), (select count(*) from events)"
        ).fetchone()
        assert counts == (1, len(reopened.get("late").history()))
        reopened.start(steps, ["again"], id="run-0")
        reopened.run_until_idle()
        assert reopened.get("run-0").result() == ["done again"]
    finally:
        reopened.close()


def test_a_background_engine_keeps_working_while_it_prunes(
    tmp_path: Path, tools: Tools
) -> None:
    clock = ManualClock()
    path = str(tmp_path / "live.duckdb")
    with fg.Engine(path, clock=clock, activities=[tools]) as engine:
        old = [engine.start(steps, [f"o{i}"], id=f"old-{i}") for i in range(30)]
        for handle in old:
            assert handle.result(timeout=30) == [f"done o{old.index(handle)}"]
        clock.advance(2 * DAY)
        started: list[fg.WorkflowHandle] = []
        stop = threading.Event()

        def keep_starting() -> None:
            i = 0
            while not stop.is_set() and i < 200:
                started.append(engine.start(steps, [f"n{i}"], id=f"new-{i}"))
                i += 1

        starter = threading.Thread(target=keep_starting)
        starter.start()
        result = engine.prune("1d")
        stop.set()
        starter.join(timeout=60)
        assert result.runs == 30
        for i, handle in enumerate(started):
            assert handle.result(timeout=30) == [f"done n{i}"]
        assert run_ids(engine) == {h.run_id for h in started}
