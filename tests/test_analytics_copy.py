"""DuckDB answers the questions on PostgreSQL: the analytics copy (flowgen._stores.duckdb_mirror).

Against a real PostgreSQL server (tests/pg.py) and real DuckDB files: every example query of
docs/sql.md gives the same answer on an embedded file and on a PostgreSQL engine; the copy
follows new rows and status changes incrementally, never skips a row that a concurrent
transaction committed out of order, resumes a file where it got to, and refuses a file that
is not its own. ``activity_calls`` holds the rows of the ``activities`` view.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

import flowgen as fg
from flowgen._core import dsl
from flowgen._stores.duckdb_mirror import AnalyticsCopy
from flowgen._vocabulary.errors import NotAFlowgenDatabase, UsageError
from flowgen.testing import ManualClock
from tests.test_activity_calls import differences, run_every_ending

SQL_DOC = Path(__file__).resolve().parent.parent / "docs" / "sql.md"
FENCE = re.compile(r"^```(python|sql)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")


def _doc_blocks() -> tuple[str, list[str]]:
    """The setup code of docs/sql.md (its first python block) and its SQL examples."""
    text = SQL_DOC.read_text(encoding="utf-8")
    blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    setup = next(code for language, code in blocks if language == "python")
    return setup, [code for language, code in blocks if language == "sql"]


def _run_setup(setup: str, location: str) -> Any:
    """Run docs/sql.md's setup with its engine on *location*; the engine (left open)."""
    saved = dict(dsl.ACTIVITIES), dict(dsl.WORKFLOWS)
    dsl.ACTIVITIES.clear()
    dsl.WORKFLOWS.clear()
    try:
        code = setup.replace('fg.Engine("shop.duckdb"', f"fg.Engine({location!r}")
        assert code != setup
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(code, "sql.md", "exec"), namespace)
        return namespace["engine"]
    finally:
        dsl.ACTIVITIES.clear()
        dsl.ACTIVITIES.update(saved[0])
        dsl.WORKFLOWS.clear()
        dsl.WORKFLOWS.update(saved[1])


def _normalized(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with run ids (random per database) masked, in a stable order."""
    masked = [
        tuple(RUN_ID.sub("<run>", v) if isinstance(v, str) else v for v in row)
        for row in rows
    ]
    return sorted(masked, key=repr)


def test_every_example_query_of_the_sql_docs_answers_the_same_on_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    setup, queries = _doc_blocks()
    assert len(queries) >= 10
    embedded = _run_setup(setup, str(tmp_path / "shop.duckdb"))
    on_pg = _run_setup(setup, pg_url)
    try:
        for query in queries:
            expected = _normalized(embedded.sql(query).fetchall())
            got = _normalized(on_pg.sql(query).fetchall())
            assert got == expected, query
        # Every view, row for row, and the typed per-call table equals its view.
        for view in (
            "activities",
            "activity_attempts",
            "timers",
            "signals",
            "signal_waits",
            "children",
            "activity_calls",
            "activity_calls_open",
        ):
            query = f"select * exclude (run_id) from {view}"
            assert _normalized(on_pg.sql(query).fetchall()) == _normalized(
                embedded.sql(query).fetchall()
            ), view
        assert differences(on_pg) == []
        assert on_pg.sql("select count(*) from activity_calls").fetchall() == [(4,)]
    finally:
        embedded.close()
        on_pg.close()


def _events(url: str) -> int:
    with psycopg.connect(url) as con:
        row = con.execute("select count(*) from events").fetchone()
        assert row is not None
        return int(row[0])


@fg.activity
def mirrored_step(x: int) -> int:
    return x + 1


@fg.workflow
def mirrored(x: int) -> fg.Workflow[int]:
    y = yield fg.call(mirrored_step, x)
    approved = yield fg.wait_signal("go")
    return y if approved else -1


def _run_one(url: str, runs: int = 1) -> None:
    """*runs* runs of `mirrored`, each parked on its signal."""
    engine = fg.Engine(url, clock=ManualClock())
    try:
        for i in range(runs):
            engine.start(mirrored, i, id=f"m-{i}")
        engine.run_until_idle()
    finally:
        engine.close()


def test_the_copy_follows_new_runs_and_status_changes(
    tmp_path: Path, pg_url: str
) -> None:
    target = str(tmp_path / "copy.duckdb")
    engine = fg.Engine(pg_url, clock=ManualClock())
    try:
        engine.start(mirrored, 1, id="m-1")
        engine.run_until_idle()
        with AnalyticsCopy(pg_url, "pg", target) as copy:
            assert copy.refresh() == _events(pg_url)
            assert copy.sql("select status from workflows").fetchall() == [("running",)]
            assert copy.refresh() == 0  # nothing new
            engine.signal("m-1", "go", True)
            engine.run_until_idle()
            copied = copy.refresh()
            assert copied > 0
            assert copy.sql("select status, result from workflows").fetchall() == [
                ("completed", "2")
            ]
            assert copy.sql("select count(*) from events").fetchall() == [
                (_events(pg_url),)
            ]
            assert copy.sql(
                "select name, status, attempts from activity_calls"
            ).fetchall() == [("mirrored_step", "completed", 1)]
    finally:
        engine.close()


def test_a_row_committed_out_of_order_is_never_skipped(
    tmp_path: Path, pg_url: str
) -> None:
    # Transaction A takes its txid first and commits last; B commits in between. A copy
    # refreshed after B's commit must not move past A's rows.
    _run_one(pg_url)
    copy = AnalyticsCopy(pg_url, "pg", str(tmp_path / "copy.duckdb"))
    try:
        copy.refresh()
        before = _events(pg_url)
        row = (
            "insert into events (workflow_id, run_id, event_id, kind, payload, "
            "recorded_at) select workflow_id, run_id, 1000 + %s, 'marker', '{}', now() "
            "from workflows"
        )
        with psycopg.connect(pg_url) as first, psycopg.connect(pg_url) as second:
            first.execute("select pg_current_xact_id()")  # A's txid, taken first
            first.execute(row, [1])
            second.execute(row, [2])
            second.commit()  # B commits first
            assert copy.refresh() == 0  # A still runs: B waits behind it
            first.commit()
        assert copy.refresh() == 2
        assert copy.sql(
            "select event_id from events where kind = 'marker' order by 1"
        ).fetchall() == [(1001,), (1002,)]
        assert copy.sql("select count(*) from events").fetchall() == [(before + 2,)]
    finally:
        copy.close()


def test_a_catch_up_in_chunks_resumes_where_the_file_got_to(
    tmp_path: Path, pg_url: str
) -> None:
    _run_one(pg_url, 6)
    total = _events(pg_url)
    target = str(tmp_path / "copy.duckdb")
    seen: list[tuple[int, int]] = []
    with AnalyticsCopy(pg_url, "pg", target) as copy:
        # Stop after the first chunk, as a SIGINT would.
        copied = copy.refresh(
            chunk_events=3,
            progress=lambda n, of: seen.append((n, of)),
            stop=lambda: True,
        )
        assert 0 < copied < total
        assert seen == [(copied, total)]
    with AnalyticsCopy(pg_url, "pg", target) as copy:  # reopened: resumes
        assert copy.refresh(chunk_events=3) == total - copied
        assert copy.sql("select count(*) from events").fetchall() == [(total,)]
        assert copy.sql(
            "select count(*) from (select run_id, event_id from events "
            "group by all having count(*) > 1)"
        ).fetchall() == [(0,)]


def test_a_file_that_is_not_this_databases_copy_is_refused(
    tmp_path: Path, pg_url: str
) -> None:
    with pytest.raises(NotAFlowgenDatabase, match="no flowgen tables"):
        AnalyticsCopy(pg_url, "pg", str(tmp_path / "nothing.duckdb"))
    _run_one(pg_url)
    embedded = str(tmp_path / "app.duckdb")
    fg.Engine(embedded).close()
    with pytest.raises(UsageError, match="flowgen database of its own"):
        AnalyticsCopy(pg_url, "pg", embedded)
    other = str(tmp_path / "other.duckdb")
    AnalyticsCopy(pg_url, "pg", other).close()
    with psycopg.connect(pg_url) as con:
        con.execute(
            "insert into flowgen_meta values ('database_id', 'another') "
            "on conflict (key) do update set value = excluded.value"
        )
    with pytest.raises(UsageError, match="copy of another database"):
        AnalyticsCopy(pg_url, "pg", other)


def test_sql_on_a_postgresql_engine_from_several_threads(pg_url: str) -> None:
    engine = fg.Engine(pg_url, clock=ManualClock())
    try:
        engine.start(mirrored, 1, id="m-1")
        engine.run_until_idle()
        answers: list[Any] = []

        def ask() -> None:
            answers.append(engine.sql("select count(*) from workflows").fetchall())

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert answers == [[(1,)]] * 4
    finally:
        engine.close()


def test_the_copy_folds_every_way_a_call_ends_as_the_view_does(pg_url: str) -> None:
    engine = fg.Engine(pg_url, clock=ManualClock(autojump=False))
    try:
        # Each step is read back through engine.sql: one refresh of the copy per step.
        run_every_ending(engine)
        assert differences(engine) == []
        assert engine.sql("select count(*) from activity_calls").fetchall() == [(6,)]
    finally:
        engine.close()


def test_the_notebook_charts_draw_the_same_from_a_postgresql_engine(
    tmp_path: Path, pg_url: str
) -> None:
    from flowgen import notebook
    from tests.test_notebook import labels

    drawn = []
    for location in (str(tmp_path / "charts.duckdb"), pg_url):
        engine = fg.Engine(location, clock=ManualClock(autojump=False))
        try:
            run_every_ending(engine)
            failures = notebook.failures_chart(engine).axes[0].get_legend()
            drawn.append(
                (
                    labels(notebook.latency_chart(engine, per="attempt")),
                    [t.get_text() for t in failures.get_texts()],
                )
            )
        finally:
            engine.close()
    assert drawn[1] == drawn[0]
    assert sorted(drawn[0][0]) == ["flaky_charge", "refused", "slow_to_retry"]


def test_schedules_are_copied_as_they_are_now(tmp_path: Path, pg_url: str) -> None:
    engine = fg.Engine(pg_url, clock=ManualClock())
    try:
        engine.schedule("nightly", mirrored, 1, cron="0 3 * * *")
        query = "select schedule_id, workflow, args, cron, paused from schedules"
        assert engine.sql(query).fetchall() == [
            ("nightly", "mirrored", "[1]", "0 3 * * *", False)
        ]
        engine.pause_schedule("nightly")
        # A schedule changes in place: the next answer sees it.
        assert engine.sql("select paused from schedules").fetchall() == [(True,)]
    finally:
        engine.close()
