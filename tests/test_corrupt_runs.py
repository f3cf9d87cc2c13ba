"""One unreadable history is quarantined; every other run is served.

An unknown event kind in one run's rows (an edit by hand, a file written by a newer flowgen)
used to make ``fg.Engine(path)`` refuse to open: recovery loads every running history, and
the first that could not be decoded stopped it. That run now gets the status ``corrupt``,
with the reason in ``error``, visible in ``flowgen ls`` and in SQL, and the engine opens
and serves every other run.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.duckdb_store import DuckDBStore
from tests.engine_workflows import Tools, wait_for
from tests.test_cli import _env, flowgen, ok, table_rows


def parked_runs(db: Path, count: int) -> None:
    """*count* runs waiting for the signal 'go', written to *db*."""
    with fg.Engine(str(db), clock=ManualClock(), activities=[Tools()]) as engine:
        for i in range(count):
            engine.start(wait_for, "go", id=f"run-{i}")


def damage(db: Path, workflow_id: str, *, column_too: bool) -> None:
    """Give the last event of *workflow_id*'s history a kind no flowgen knows."""
    con = duckdb.connect(str(db))
    try:
        ((run_id, event_id, payload),) = con.execute(
            "select run_id, event_id, payload from events where workflow_id = ? "
            "order by event_id desc limit 1",
            [workflow_id],
        ).fetchall()
        data = json.loads(payload)
        data["kind"] = "from_the_future"
        con.execute(
            "update events set payload = ?, kind = ? where run_id = ? and event_id = ?",
            [
                json.dumps(data),
                "from_the_future" if column_too else data.get("kind"),
                run_id,
                event_id,
            ],
        )
    finally:
        con.close()


@pytest.mark.parametrize("column_too", [True, False])
def test_an_unknown_event_kind_quarantines_that_run_and_the_rest_are_served(
    tmp_path: Path, column_too: bool
) -> None:
    db = tmp_path / "c.duckdb"
    parked_runs(db, 3)
    damage(db, "run-1", column_too=column_too)
    with fg.Engine(str(db), clock=ManualClock(), activities=[Tools()]) as engine:
        for i in (0, 2):
            engine.signal(f"run-{i}", "go", i)
            assert engine.get(f"run-{i}").result(timeout=30) == [i]
        bad = engine.get("run-1")
        assert bad.status() == "corrupt"
        with pytest.raises(fg.WorkflowFailed) as failed:
            bad.result(timeout=30)
        assert "from_the_future" in failed.value.error.message
        with pytest.raises(fg.WorkflowClosed, match="corrupt"):
            engine.signal("run-1", "go", 1)
        ((status, error),) = engine.sql(
            "select status, error->>'$.message' from workflows "
            "where workflow_id = 'run-1'"
        ).fetchall()
        assert status == "corrupt"
        assert "unknown event kind 'from_the_future'" in error
    # The file reopens, and the run stays quarantined (it is not retried on every open).
    with fg.Engine(str(db), clock=ManualClock(), activities=[Tools()]) as engine:
        assert engine.get("run-1").status() == "corrupt"
        assert {r.workflow_id: r.status for r in engine.list_runs()} == {
            "run-0": "completed",
            "run-1": "corrupt",
            "run-2": "completed",
        }
    out = ok(flowgen("--db", str(db), "ls", env=_env()))
    assert any("run-1" in row and "corrupt" in row for row in table_rows(out))


def test_a_store_read_quarantines_a_running_run_it_cannot_decode(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.duckdb"
    parked_runs(db, 2)
    damage(db, "run-0", column_too=True)
    with DuckDBStore(db) as store:
        runs = {r.workflow_id: r for r in store.unfinished()}
        keys = [(r.workflow_id, r.run_id) for r in runs.values()]
        histories = store.load_histories(keys)
        assert list(histories) == [("run-1", runs["run-1"].run_id)]
        record = store.get_run("run-0")
        assert record is not None and record.status == "corrupt"
        assert record.error is not None
        assert record.error.type == "HistoryCorruptError"
        assert record.closed_at is not None
        assert [r.workflow_id for r in store.unfinished()] == ["run-1"]


def test_a_file_made_before_corrupt_existed_can_quarantine_too(tmp_path: Path) -> None:
    # Files made by an older flowgen CHECK the six statuses of then; opening widens it,
    # keeping every row in its order.
    db = tmp_path / "old.duckdb"
    parked_runs(db, 3)
    con = duckdb.connect(str(db))
    try:
        ((ddl,),) = con.execute(
            "select sql from duckdb_tables() where table_name = 'workflows'"
        ).fetchall()
        old = ddl.replace(", 'corrupt'", "").replace("workflows", "workflows_old", 1)
        assert "'corrupt'" not in old
        con.execute(old)
        con.execute("insert into workflows_old select * from workflows order by rowid")
        con.execute("drop table workflows")
        con.execute("alter table workflows_old rename to workflows")
        con.execute("create index workflows_workflow_id on workflows (workflow_id)")
        before = con.execute("select * from workflows order by rowid").fetchall()
    finally:
        con.close()
    damage(db, "run-2", column_too=False)
    with fg.Engine(str(db), clock=ManualClock(), activities=[Tools()]) as engine:
        assert engine.get("run-2").status() == "corrupt"
        rows = engine.sql("select * from workflows order by rowid").fetchall()
    assert [row[:3] for row in rows] == [row[:3] for row in before]
