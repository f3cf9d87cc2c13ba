"""Runs that `engine.prune` deleted leave every table and view that held them.

On PostgreSQL (tests/pg.py), the analytics copy follows a prune at its next refresh: a copy
kept in a file (``flowgen mirror``) and the one behind ``engine.sql`` hold, after the
prune, exactly what a copy made after the prune holds, including a copy that lagged
behind the pruned runs' last events (their calls were still open in it). ``flowgen mirror`` follows
``flowgen prune`` the same way. On an embedded file, a prune deletes the runs' rows from
``activity_calls`` too, not only from the two tables the history lives in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores import postgres_schema
from flowgen._stores.duckdb_mirror import AnalyticsCopy
from flowgen._stores.postgres_store import PostgresStore
from tests.cli_process import flowgen, ok
from tests.engine_workflows import Tools, call_one, steps, wait_for
from tests.old_schemas import downgrade

DAY = timedelta(days=1)


def run_tables(sql: Any) -> list[str]:
    """Every table and view of a DuckDB-schema database that has rows of runs."""
    return [
        str(name)
        for (name,) in sql(
            "select distinct table_name from information_schema.columns "
            "where column_name = 'run_id' and table_schema = 'main' order by 1"
        ).fetchall()
    ]


def contents(sql: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table and view with runs in it, in a stable order."""
    return {
        table: sorted(sql(f"select * from {table}").fetchall(), key=repr)
        for table in run_tables(sql)
    }


def without(
    tables: dict[str, list[tuple[Any, ...]]], run_ids: set[str]
) -> dict[str, list[tuple[Any, ...]]]:
    """*tables* less the rows of *run_ids* (every such table has ``run_id`` second)."""
    return {
        table: [row for row in rows if row[1] not in run_ids]
        for table, rows in tables.items()
    }


@pytest.fixture
def tools() -> Iterator[Tools]:
    tools = Tools()
    yield tools
    tools.release_all()


def make_old_and_recent_runs(engine: fg.Engine, tools: Tools) -> set[str]:
    """Two runs that will be old (one with a call still open), one running, and one
    recent; the run ids of the two that a 30-day prune deletes."""
    tools.failures["old"] = 1  # its call stays open until the retry's back-off passes
    old_call = engine.start(call_one, "flaky", "old", id="old-call")
    old_steps = engine.start(steps, ["a", "b"], id="old-steps")
    engine.start(wait_for, "go", id="running")
    engine.run_until_idle()
    return {old_call.run_id, old_steps.run_id}


def finish_and_age(engine: fg.Engine) -> None:
    """The old call completes; 40 days pass; a recent run completes."""
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(seconds=10))
    engine.run_until_idle()
    assert engine.get("old-call").result() == "done old"
    clock.advance(40 * DAY)
    engine.start(steps, ["c"], id="recent")
    engine.run_until_idle()


def test_a_copy_follows_a_prune_of_postgresql_at_its_next_refresh(
    tmp_path: Path, pg_url: str, tools: Tools
) -> None:
    engine = fg.Engine(pg_url, clock=ManualClock(autojump=False), activities=[tools])
    with contextlib.ExitStack() as closing:
        closing.callback(engine.close)
        pruned = make_old_and_recent_runs(engine, tools)
        lagging = closing.enter_context(
            AnalyticsCopy(pg_url, "pg", str(tmp_path / "lagging.duckdb"))
        )
        following = closing.enter_context(
            AnalyticsCopy(pg_url, "pg", str(tmp_path / "following.duckdb"))
        )
        lagging.refresh()
        # The lagging copy holds the old run's call open: its end is never copied, since
        # the prune deletes its events first.
        assert lagging.sql(
            "select workflow_id, attempts from activity_calls_open"
        ).fetchall() == [("old-call", 1)]
        finish_and_age(engine)
        following.refresh()
        before = contents(following.sql)
        in_memory_before = contents(engine.sql)
        assert {"events", "workflows", "activity_calls"} <= set(before)
        assert {row[1] for row in before["workflows"]} >= pruned

        result = engine.prune(older_than="30d")

        assert result.runs == 2
        assert lagging.refresh() > 0  # it copies what the others did meanwhile
        following.refresh()
        with AnalyticsCopy(pg_url, "pg", str(tmp_path / "fresh.duckdb")) as fresh:
            fresh.refresh()
            expected = contents(fresh.sql)
        for table, rows in expected.items():
            assert not {row[1] for row in rows} & pruned, table
        # Every other row is as it was, in every table and view of each copy.
        assert expected == without(before, pruned)
        assert contents(following.sql) == expected
        assert contents(lagging.sql) == expected
        assert contents(engine.sql) == without(in_memory_before, pruned)
        with psycopg.connect(pg_url) as con:
            recorded = con.execute("select run_id from pruned_runs").fetchall()
        assert {run_id for (run_id,) in recorded} == pruned


def test_a_copy_resumed_from_its_file_follows_a_prune_made_while_it_was_closed(
    tmp_path: Path, pg_url: str, tools: Tools
) -> None:
    engine = fg.Engine(pg_url, clock=ManualClock(autojump=False), activities=[tools])
    target = str(tmp_path / "mirror.duckdb")
    try:
        pruned = make_old_and_recent_runs(engine, tools)
        finish_and_age(engine)
        with AnalyticsCopy(pg_url, "pg", target) as copy:
            copy.refresh()
            before = contents(copy.sql)
        assert engine.prune(older_than="30d").runs == 2
        with AnalyticsCopy(pg_url, "pg", target) as copy:
            copy.refresh()
            assert contents(copy.sql) == without(before, pruned)
    finally:
        engine.close()


def test_an_embedded_prune_deletes_the_runs_calls_too(
    tmp_path: Path, tools: Tools
) -> None:
    path = str(tmp_path / "app.duckdb")
    engine = fg.Engine(path, clock=ManualClock(autojump=False), activities=[tools])
    try:
        pruned = make_old_and_recent_runs(engine, tools)
        finish_and_age(engine)
        before = contents(engine.sql)
        assert {row[1] for row in before["activity_calls"]} >= pruned
        assert engine.prune(older_than="30d").runs == 2
        assert contents(engine.sql) == without(before, pruned)
    finally:
        engine.close()
    engine = fg.Engine(path, activities=[tools])  # and so it reads after reopening
    try:
        assert contents(engine.sql) == without(before, pruned)
    finally:
        engine.close()


def test_a_version_2_database_migrates_and_its_prunes_are_then_followed(
    tmp_path: Path, pg_url: str, tools: Tools, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database made by the flowgen before `pruned_runs` (schema version 2): made by
    # today's, then what versions 3 and 4 added taken away (today's engine reads columns
    # a version-2 database lacks, so it cannot make one).
    engine = fg.Engine(pg_url, clock=ManualClock(autojump=False), activities=[tools])
    try:
        pruned = make_old_and_recent_runs(engine, tools)
        finish_and_age(engine)
    finally:
        engine.close()
    downgrade(pg_url, 2)
    monkeypatch.setattr(postgres_schema, "SCHEMA_VERSION", 2)  # as flowgen then was
    with psycopg.connect(pg_url) as con:
        assert con.execute("select to_regclass('pruned_runs')").fetchall() == [(None,)]
    target = str(tmp_path / "mirror.duckdb")
    with AnalyticsCopy(
        pg_url, "pg", target
    ) as copy:  # a copy of the version-2 database
        copy.refresh()
        before = contents(copy.sql)
    monkeypatch.undo()
    PostgresStore(pg_url).close()  # today's flowgen migrates it
    with psycopg.connect(pg_url) as con:
        assert con.execute(
            "select value from flowgen_meta where key = 'schema_version'"
        ).fetchall() == [(str(postgres_schema.SCHEMA_VERSION),)]
    clock = ManualClock(autojump=False)
    clock.advance(41 * DAY)  # past the old runs' 30 days, not the recent one's
    engine = fg.Engine(pg_url, clock=clock, activities=[tools])
    try:
        assert engine.prune(older_than="30d").runs == 2
    finally:
        engine.close()
    with AnalyticsCopy(pg_url, "pg", target) as copy:
        copy.refresh()
        assert contents(copy.sql) == without(before, pruned)


def test_flowgen_mirror_follows_flowgen_prune(
    tmp_path: Path, pg_url: str, tools: Tools
) -> None:
    # Runs made 60 days ago by the engine's clock, so that the command line's prune (on
    # the real clock) finds the old ones old and the recent one recent.
    clock = ManualClock(datetime.now(UTC) - 60 * DAY, autojump=False)
    engine = fg.Engine(pg_url, clock=clock, activities=[tools])
    try:
        pruned = make_old_and_recent_runs(engine, tools)
        finish_and_age(engine)
    finally:
        engine.close()
    target = str(tmp_path / "analytics.duckdb")
    ok(flowgen("--db", pg_url, "mirror", "--to", target))
    with duckdb.connect(target, read_only=True) as con:
        before = contents(con.sql)
    assert "pruned 2 run(s)" in ok(
        flowgen("--db", pg_url, "prune", "--older-than", "30d")
    )
    ok(flowgen("--db", pg_url, "mirror", "--to", target))
    with duckdb.connect(target, read_only=True) as con:
        assert contents(con.sql) == without(before, pruned)
