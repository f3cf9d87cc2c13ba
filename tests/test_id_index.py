"""A start with ``id=`` learns whether its id is taken without moving the journal.

``engine.start(..., id=...)`` asks the store for the id's latest run, and every read used to
move the journal into DuckDB first: a whole DuckDB transaction per start (11 CPU ms against
2 for an anonymous start). The journaled store now keeps every workflow id it holds (in the
tables or the journal) in memory, and answers "no such id" from it; an id it holds is read
as before. These tests pin the behaviour (no journal move, and the right answers, across
reopening); the cost is measured by ``benchmarks/throughput.py`` (``*_ids`` modes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.duckdb_store import DuckDBStore
from tests.engine_workflows import Tools, wait_for
from tests.test_journal import abandon, start


def test_an_unknown_id_is_answered_without_moving_the_journal(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "f.duckdb")
    try:
        store.commit(start("wf-1", "run-1"))
        assert len(store._pending) == 1
        assert store.get_run("order-1") is None
        assert store.latest_runs(["order-1", "order-2"]) == {}
        assert len(store._pending) == 1  # nothing was moved into DuckDB
        # A known id is read (through the tables, the journal moved first).
        record = store.get_run("wf-1")
        assert record is not None and record.run_id == "run-1"
        assert store.get_run("wf-1", "run-1") == record
        assert store.get_run("order-1", "run-1") is None
        assert store.latest_runs(["wf-1", "order-1"]) == {"wf-1": record}
    finally:
        store.close()


def test_ids_in_the_journal_and_in_the_tables_are_known_after_reopening(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.duckdb"
    store = DuckDBStore(db)
    store.commit(start("in-the-tables", "run-1"))
    store.flush()
    store.commit(start("in-the-journal", "run-2"))
    abandon(store)  # kill -9: run-2 is in the journal only
    with DuckDBStore(db) as store:
        assert store.get_run("in-the-tables") is not None
        assert store.get_run("in-the-journal") is not None
        assert store.get_run("never") is None


def test_a_store_without_a_journal_reads_as_before(tmp_path: Path) -> None:
    # Another store of this process may write the file: no index, every answer is read.
    db = tmp_path / "f.duckdb"
    first = DuckDBStore(db, journal=False)
    second = DuckDBStore(db, journal=False)
    try:
        assert second.get_run("wf-1") is None
        first.commit(start("wf-1", "run-1"))
        assert second.get_run("wf-1") is not None
    finally:
        second.close()
        first.close()


def test_id_d_starts_still_find_every_conflict(tmp_path: Path) -> None:
    db = str(tmp_path / "f.duckdb")
    with fg.Engine(db, clock=ManualClock(), activities=[Tools()]) as engine:
        engine.start(wait_for, "go", id="order-1")
        with pytest.raises(fg.WorkflowAlreadyExists):
            engine.start(wait_for, "go", id="order-1")
        engine.signal("order-1", "go", 1)
        assert engine.get("order-1").result(timeout=30) == [1]
        with pytest.raises(fg.WorkflowAlreadyExists):
            engine.start(wait_for, "go", id="order-1")  # closed, still taken
        again = engine.start(wait_for, "go", id="order-1", on_conflict="use_existing")
        assert again.result(timeout=30) == [1]
    with fg.Engine(db, clock=ManualClock(), activities=[Tools()]) as engine:
        with pytest.raises(fg.WorkflowAlreadyExists):
            engine.start(wait_for, "go", id="order-1")
        engine.start(wait_for, "go", id="order-2")
        with pytest.raises(fg.UnknownWorkflow):
            engine.get("order-3")
