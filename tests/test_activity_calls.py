"""``activity_calls``: the typed per-call table holds the ``activities`` view's answers.

On a real DuckDB file, through the engine: every way a call ends (completed after retries,
failed for good, lost a race, its run cancelled) and a call still open, committed in many
transactions (reads between steps move the journal into the tables each time); then the
same after reopening, and a version-1 file migrated to version 2 (its calls filled from
the events it holds).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

import flowgen as fg
from flowgen._stores.duckdb_schema import SCHEMA_VERSION
from flowgen.testing import ManualClock

# activity_calls and activity_calls_open, as the activities view shows them.
CALLS_AS_VIEW = """
select workflow_id, run_id, seq, name, attempts, status, scheduled_at, started_at,
    closed_at, duration_s, last_error, error_type
from activity_calls
union all
select workflow_id, run_id, seq, name, attempts, 'scheduled', scheduled_at, started_at,
    null, null, last_error, error_type
from activity_calls_open
"""

HOUR = 3600.0
tries: dict[str, int] = {}


@fg.activity(retry=fg.RetryPolicy(max_attempts=3, initial_interval=1))
def flaky_charge(order_id: str) -> str:
    tries[order_id] = tries.get(order_id, 0) + 1
    if tries[order_id] < 3:  # two failed attempts, then the third completes
        raise ConnectionError("gateway timeout")
    return f"receipt-{order_id}"


@fg.activity(retry=fg.RetryPolicy(max_attempts=2, initial_interval=1))
def refused(order_id: str) -> str:
    raise ValueError(f"refused {order_id}")


@fg.activity(retry=fg.RetryPolicy(max_attempts=5, initial_interval=HOUR))
def slow_to_retry(order_id: str) -> str:
    raise TimeoutError(f"no answer for {order_id}")


@fg.workflow
def charged(order_id: str) -> fg.Workflow[str]:
    receipt = yield fg.call(flaky_charge, order_id)
    return receipt


@fg.workflow
def refusing(order_id: str) -> fg.Workflow[str]:
    result = yield fg.call(refused, order_id)
    return result


@fg.workflow
def racing(order_id: str) -> fg.Workflow[int]:
    # The timer wins: the call, retrying in an hour, is cancelled.
    winner, _ = yield fg.race(fg.call(slow_to_retry, order_id), fg.sleep(60))
    return winner


@fg.workflow
def waiting(order_id: str) -> fg.Workflow[str]:
    result = yield fg.call(slow_to_retry, order_id)
    return result


def differences(con: Any) -> list[tuple[Any, ...]]:
    """Rows of the view that the tables lack, and rows of the tables the view lacks."""
    missing = con.sql(f"select * from activities except all ({CALLS_AS_VIEW})")
    extra = con.sql(f"({CALLS_AS_VIEW}) except all select * from activities")
    return [("missing", *row) for row in missing.fetchall()] + [
        ("extra", *row) for row in extra.fetchall()
    ]


def run_every_ending(engine: fg.Engine) -> None:
    tries.clear()  # each order's charge fails twice, whichever test ran before
    for i in range(3):
        engine.start(charged, f"c-{i}", id=f"charged-{i}")
    engine.start(refusing, "r-1", id="refusing-1")
    engine.start(racing, "x-1", id="racing-1")
    engine.start(waiting, "w-1", id="waiting-1")
    engine.start(waiting, "w-2", id="cancelled-1")
    for _ in range(6):
        engine.run_until_idle()
        assert differences(engine) == []  # a read: the journal moves into the tables
        engine.clock.advance(timedelta(seconds=30))  # type: ignore[attr-defined]
    engine.cancel("cancelled-1")
    engine.run_until_idle()


def test_every_way_a_call_ends_matches_the_view(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.duckdb")
    engine = fg.Engine(path, clock=ManualClock(autojump=False))
    try:
        run_every_ending(engine)
        assert differences(engine) == []
        statuses = dict(
            engine.sql(
                f"select status, count(*) from ({CALLS_AS_VIEW}) group by all"
            ).fetchall()
        )
        assert statuses == {"completed": 3, "failed": 1, "cancelled": 2, "scheduled": 1}
        assert engine.sql(
            "select name, attempts, error_type, last_error from activity_calls "
            "where status = 'failed'"
        ).fetchall() == [("refused", 2, "ValueError", "refused r-1")]
        assert engine.sql(
            "select workflow_id, error_type, last_error from activity_calls_open"
        ).fetchall() == [("waiting-1", "TimeoutError", "no answer for w-1")]
    finally:
        engine.close()
    with fg.Engine(path) as reopened:
        assert differences(reopened) == []


def test_a_version_1_file_gets_its_calls_from_the_events_it_holds(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "old.duckdb")
    engine = fg.Engine(path, clock=ManualClock(autojump=False))
    try:
        run_every_ending(engine)
    finally:
        engine.close()
    expected = duckdb.connect(path)
    try:
        view = sorted(expected.execute("select * from activities").fetchall(), key=repr)
        # What a version-1 file is: the same tables and views, without version 2's.
        for table in ("schedules", "activity_calls", "activity_calls_open"):
            expected.execute(f"drop table {table}")
        expected.execute(
            "update flowgen_meta set value = '1' where key = 'schema_version'"
        )
    finally:
        expected.close()
    with fg.Engine(path) as migrated:
        assert migrated.sql(
            "select value from flowgen_meta where key = 'schema_version'"
        ).fetchall() == [(str(SCHEMA_VERSION),)]  # every migration ran
        assert differences(migrated) == []
        assert sorted(migrated.sql(CALLS_AS_VIEW).fetchall(), key=repr) == view
        assert len(view) == 7


def test_a_transaction_that_rolls_back_leaves_the_calls_as_the_events(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    from flowgen._stores.duckdb_rows import event_row
    from flowgen._stores.duckdb_schema import prepare_schema
    from flowgen._stores.duckdb_writer import TableWriter
    from flowgen._stores.protocol import EventRow
    from flowgen._vocabulary.events import (
        ActivityCompleted,
        ActivityScheduled,
        WorkflowStarted,
    )

    at = datetime(2026, 1, 1, tzinfo=UTC)
    con = duckdb.connect(str(tmp_path / "writer.duckdb"))
    try:
        prepare_schema(con, "writer.duckdb")
        writer = TableWriter(con.cursor(), "writer.duckdb")

        def rows(*events: Any, first: int = 0) -> list[tuple[Any, ...]]:
            return [
                event_row(EventRow("wf", "run-1", first + i, event))
                for i, event in enumerate(events)
            ]

        writer.transaction(
            [],
            rows(
                WorkflowStarted(at, "wf", "run-1", "order", []),
                ActivityScheduled(at, 1, "a"),
            ),
            {},
            applied=None,
        )
        # A transaction that ends one call and opens another, then fails (event 1 again:
        # the primary key refuses it): none of it may stay, in the tables or the writer.
        bad = rows(
            ActivityCompleted(at, 1, "x", 1, at), ActivityScheduled(at, 2, "b"), first=2
        )
        with pytest.raises(duckdb.Error):
            writer.transaction(
                [],
                [*bad, rows(ActivityScheduled(at, 9, "c"), first=1)[0]],
                {},
                applied=None,
            )
        assert differences(con) == []
        assert con.sql("select seq from activity_calls_open").fetchall() == [(1,)]
        writer.transaction([], bad, {}, applied=None)
        assert differences(con) == []
        assert con.sql("select seq, status from activity_calls").fetchall() == [
            (1, "completed")
        ]
        assert con.sql("select seq from activity_calls_open").fetchall() == [(2,)]
    finally:
        con.close()
