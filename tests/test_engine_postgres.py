"""The engine on PostgreSQL: ``fg.Engine("postgresql://...")`` runs what it runs on DuckDB.

Two ways, both on the tests' own PostgreSQL server (tests/pg.py):

* The engine suites that take their store from a fixture run here again with that fixture
  pointing at a fresh PostgreSQL database: every recovery test of test_engine_recovery.py
  (close mid-run, reopen the same database, everything resumes), the heartbeat tests of
  test_heartbeats.py that take ``path`` (a restart mid-attempt included), every update test
  of test_updates.py that opens its engine on ``path``, and every test of
  test_engine.py that makes its engines with ``make_engine``, by hand on a ManualClock and
  in the background, and every test of test_wait_condition.py that takes ``path``. Imported, not copied: one copy of each test, two stores.
* A few end-to-end runs written here: starts, an activity with retries, a 30-day timer on a
  ManualClock, a signal, results, and a reopen that resumes all of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import flowgen as fg
import tests.test_engine as engine_suite
import tests.test_engine_recovery as recovery_suite
import tests.test_heartbeats as heartbeat_suite
import tests.test_updates as updates_suite
import tests.test_wait_condition as conditions_suite
from flowgen._runtime.clock import ManualClock
from flowgen._stores.postgres_store import PostgresStore
from tests.engine_workflows import (
    Tools,
    events_of,
    long_sleep,
    sleep_then_wait,
    steps,
    wait_for,
)
from tests.pg import PostgresCluster

# -- the engine suites, on PostgreSQL --------------------------------------------------------

for _name, _test in vars(recovery_suite).items():
    if _name.startswith("test_"):
        globals()[f"{_name}__recovery"] = _test
for _name, _test in vars(engine_suite).items():
    if _name.startswith("test_") and "make_engine" in _test.__code__.co_varnames:
        globals()[f"{_name}__engine"] = _test
for _name, _test in vars(heartbeat_suite).items():
    if _name.startswith("test_") and "path" in _test.__code__.co_varnames:
        globals()[f"{_name}__heartbeats"] = _test
tools = engine_suite.tools
mode = engine_suite.mode
clock = heartbeat_suite.clock
job = heartbeat_suite.job
for _name, _test in vars(updates_suite).items():
    if _name.startswith("test_") and {"path", "engine"} & set(
        _test.__code__.co_varnames
    ):
        globals()[f"{_name}__updates"] = _test
for _name, _test in vars(conditions_suite).items():
    if _name.startswith("test_") and "path" in _test.__code__.co_varnames:
        globals()[f"{_name}__conditions"] = _test
engine = updates_suite.engine


@pytest.fixture
def path(pg_url: str) -> str:
    """What test_engine_recovery's tests open and reopen: here, a PostgreSQL database."""
    return pg_url


@pytest.fixture
def make_engine(
    mode: str, tools: Tools, postgres_cluster: PostgresCluster
) -> Iterator[engine_suite.MakeEngine]:
    """test_engine's engines, each on a fresh PostgreSQL database of its own."""
    engines: list[fg.Engine] = []
    schemas: list[str] = []

    def make(**kwargs: object) -> fg.Engine:
        kwargs.setdefault("clock", ManualClock())
        kwargs.setdefault("activities", [tools])
        schemas.append(postgres_cluster.create_schema())
        engine = fg.Engine(postgres_cluster.url(schema=schemas[-1]), **kwargs)  # type: ignore[arg-type]
        if mode == "background":
            engine.start_background()
        engines.append(engine)
        return engine

    yield make
    tools.release_all()
    for engine in engines:
        engine.close()
    for name in schemas:
        postgres_cluster.drop_schema(name)


# -- end to end -----------------------------------------------------------------------------


def test_a_postgresql_url_opens_a_postgres_store(pg_url: str) -> None:
    with fg.Engine(pg_url) as engine:
        assert isinstance(engine.store, PostgresStore)


def test_engine_sql_on_postgresql_is_answered_by_duckdb(pg_url: str) -> None:
    engine = fg.Engine(pg_url, clock=ManualClock())
    try:
        assert engine.sql("select count(*) from workflows").fetchall() == [(0,)]
        # A DuckDB relation, as on an embedded file.
        assert engine.sql("select 1 as x").df()["x"].tolist() == [1]
    finally:
        engine.close()


def rows(url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as con:
        cursor = con.execute(statement)
        return cursor.fetchall() if cursor.description else []


def test_start_retries_a_timer_a_signal_results_and_a_reopen_on_postgresql(
    pg_url: str,
) -> None:
    clock = ManualClock()
    tools = Tools()
    tools.failures["flaky-1"] = 2
    first = fg.Engine(pg_url, clock=clock, activities=[tools])
    retried = first.start("call_one", "flaky", "flaky-1", id="retried")
    slept = first.start(long_sleep, 30, id="slept")
    waiting = first.start(sleep_then_wait, 5.0, "go", id="waiting")
    first.signal("waiting", "go", {"approved": True})
    first.run_until_idle()
    assert retried.result() == "done flaky-1"
    assert [e.attempt for e in events_of(retried, fg.ActivityAttemptFailed)] == [1, 2]
    assert slept.result() == 30 * 24 * 3600.0
    assert waiting.result() == {"approved": True}
    # One left running across a reopen: scheduled and committed, never run.
    pending = first.start(steps, ["a", "b"], id="pending")
    first.close()
    assert tools.runs_of("work") == []

    second = fg.Engine(pg_url, clock=clock, activities=[tools])
    try:
        second.run_until_idle()
        assert second.get("pending").result() == ["done a", "done b"]
        assert second.get("retried").result() == "done flaky-1"
        assert pending.workflow_id == "pending"
    finally:
        second.close()
    # What the engine wrote is in PostgreSQL's tables, for any client to read.
    assert rows(pg_url, "select workflow_id, status from workflows order by 1") == [
        ("pending", "completed"),
        ("retried", "completed"),
        ("slept", "completed"),
        ("waiting", "completed"),
    ]
    assert rows(
        pg_url,
        "select count(*) from events where workflow_id = 'retried' "
        "and kind = 'activity_attempt_failed'",
    ) == [(2,)]


def test_a_background_engine_on_postgresql_runs_many_workflows(pg_url: str) -> None:
    tools = Tools()
    with fg.Engine(pg_url, activities=[tools]) as engine:
        handles = [
            engine.start(steps, [f"k{i}", f"l{i}"], id=f"many-{i}") for i in range(40)
        ]
        waiter = engine.start("wait_for", "ping", 2, id="waiter")
        engine.signal("waiter", "ping", 1)
        engine.signal("waiter", "ping", 2)
        assert [h.result(timeout=30) for h in handles] == [
            [f"done k{i}", f"done l{i}"] for i in range(40)
        ]
        assert waiter.result(timeout=30) == [1, 2]
    with fg.Engine(pg_url) as engine:  # reopened: everything is there, closed
        assert engine.get("many-39").status() == "completed"
        assert len(engine.store.list_runs(status="completed")) == 41


# -- many engines on one database: tests/test_fleet.py -----------------------------------------


# -- a history this flowgen cannot read: quarantined, as on DuckDB ---------------------------


def test_an_unknown_event_kind_quarantines_that_run_and_the_rest_are_served(
    pg_url: str,
) -> None:
    with fg.Engine(pg_url, clock=ManualClock(), activities=[Tools()]) as engine:
        for i in range(3):
            engine.start(wait_for, "go", id=f"run-{i}")
    rows(
        pg_url,
        "update events set payload = jsonb_set(payload::jsonb, '{kind}', "
        "'\"from_the_future\"')::json, kind = 'from_the_future' "
        "where workflow_id = 'run-1' and event_id = "
        "(select max(event_id) from events where workflow_id = 'run-1')",
    )
    with fg.Engine(pg_url, clock=ManualClock(), activities=[Tools()]) as engine:
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
    # Reopened, the run stays quarantined (it is not retried on every open).
    with fg.Engine(pg_url, clock=ManualClock(), activities=[Tools()]) as engine:
        assert engine.get("run-1").status() == "corrupt"
    assert rows(pg_url, "select workflow_id, status from workflows order by 1") == [
        ("run-0", "completed"),
        ("run-1", "corrupt"),
        ("run-2", "completed"),
    ]
