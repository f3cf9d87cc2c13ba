"""Triggering a schedule now, and the count of firings that started no run.

On a MemoryStore, a DuckDB file and PostgreSQL (the ``where`` fixture of
tests/test_schedules.py), with a ManualClock moved by hand: ``engine.trigger_schedule(id)``
starts a run at once under the overlap policy (skipped, buffered or allowed), on a paused
schedule too, without moving the regular firings; a trigger recorded with no engine to
handle it (``flowgen schedule trigger`` on the file) is handled by the next engine that
opens the database; ``skipped`` counts the firings skipped by the overlap policy and the
missed ones not caught up, and survives a restart.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import flowgen as fg
import tests.test_schedules as schedules_suite
from flowgen.cli import main
from flowgen.testing import ManualClock
from tests.old_schemas import downgrade
from tests.test_schedules import HOUR, OpenEngine, ids, report, until_done, utc

where = schedules_suite.where  # the fixture: a MemoryStore, a DuckDB file, PostgreSQL

# The ManualClock's epoch is 2031-03-07 09:26:53 UTC.
NOW_ID = "2031-03-07T09:26:53Z"


def test_a_trigger_starts_a_run_now_and_leaves_the_firings_alone(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    engine = where(clock)
    engine.schedule("nightly", report, "eu", cron="0 3 * * *")
    assert engine.trigger_schedule("nightly") == f"nightly/{NOW_ID}"
    run = engine.get(f"nightly/{NOW_ID}")
    assert run.result() == "report eu"
    assert [r.workflow_id for r in engine.list_runs(tags={"schedule": "nightly"})] == [
        f"nightly/{NOW_ID}"
    ]
    row = engine.get_schedule("nightly")
    assert row.last_workflow_id == f"nightly/{NOW_ID}"
    assert row.triggered_at is None
    assert row.next_at == utc(2031, 3, 8, 3)  # the regular firing is not moved
    clock.set(utc(2031, 3, 8, 3))
    engine.run_until_idle()
    assert ids(engine) == [f"nightly/{NOW_ID}", "nightly/2031-03-08T03:00:00Z"]


def test_a_trigger_follows_the_overlap_policy(where: OpenEngine) -> None:
    clock = ManualClock(autojump=False)
    engine = where(clock)
    engine.schedule("skip", until_done, every=HOUR)
    engine.schedule("buffer", until_done, every=HOUR, overlap="buffer_one")
    engine.schedule("allow", until_done, every=HOUR, overlap="allow")
    for schedule_id in ("skip", "buffer", "allow"):
        assert engine.trigger_schedule(schedule_id) == f"{schedule_id}/{NOW_ID}"
    clock.advance(timedelta(seconds=1))
    later = "2031-03-07T09:26:54Z"
    assert engine.trigger_schedule("skip") is None  # its run still runs
    assert engine.get_schedule("skip").skipped == 1
    assert (
        "<th>skipped</th><td>1 firing(s)</td>"
        in engine.get_schedule("skip")._repr_html_()
    )  # type: ignore[attr-defined]
    assert "skipped" not in engine.get_schedule("allow")._repr_html_()  # type: ignore[attr-defined]
    assert engine.trigger_schedule("buffer") is None
    assert engine.get_schedule("buffer").buffered_at == utc(2031, 3, 7, 9, 26, 54)
    assert engine.trigger_schedule("allow") == f"allow/{later}"
    engine.signal(f"buffer/{NOW_ID}", "done")
    engine.run_until_idle()
    assert ids(engine, "running") == [
        f"allow/{NOW_ID}",
        f"allow/{later}",
        f"buffer/{later}",  # started once the first run closed
        f"skip/{NOW_ID}",
    ]


def test_a_paused_schedule_can_be_triggered_and_stays_paused(
    where: OpenEngine,
) -> None:
    clock = ManualClock()
    engine = where(clock)
    engine.schedule("nightly", report, "eu", cron="0 3 * * *")
    engine.pause_schedule("nightly", "maintenance")
    assert engine.trigger_schedule("nightly") == f"nightly/{NOW_ID}"
    row = engine.get_schedule("nightly")
    assert row.paused and row.note == "maintenance"
    clock.set(utc(2031, 3, 9, 3))
    engine.run_until_idle()
    assert ids(engine) == [f"nightly/{NOW_ID}"]


def test_an_unknown_schedule_cannot_be_triggered(where: OpenEngine) -> None:
    engine = where(ManualClock())
    with pytest.raises(fg.UnknownSchedule, match="no schedule with id 'nope'"):
        engine.trigger_schedule("nope")
    with pytest.raises(TypeError, match="a schedule id must be a str"):
        engine.trigger_schedule(7)  # type: ignore[arg-type]


def test_skipped_counts_overlap_skips_and_missed_firings_across_a_restart(
    where: OpenEngine,
) -> None:
    clock = ManualClock(autojump=False)
    first = where(clock)
    first.schedule("job", until_done, every=HOUR)  # overlap="skip"
    first.schedule("hourly", report, "eu", cron="0 * * * *")
    first.schedule("windowed", report, "us", cron="0 * * * *", catchup_window=2 * HOUR)
    for hour in (10, 11, 12):
        clock.set(utc(2031, 3, 7, hour))
        first.run_until_idle()
    assert first.get_schedule("job").skipped == 2  # 11:00 and 12:00: 10:00 still runs
    assert first.get_schedule("hourly").skipped == 0
    first.close()
    clock.set(utc(2031, 3, 7, 17, 30))  # down for 13:00 to 17:00
    second = where(clock)
    second.run_until_idle()
    counts = {s.schedule_id: s.skipped for s in second.schedules()}
    # job: 13:00 to 17:00, the latest kept but skipped (10:00 still runs): 2 + 5.
    # hourly: only 17:00 is caught up, 13:00 to 16:00 missed. windowed: what is at most
    # 2 h late is caught up (16:00, 17:00), 13:00 to 15:00 missed.
    assert counts == {"job": 7, "hourly": 4, "windowed": 3}
    assert ids(second)[-2:] == [
        "windowed/2031-03-07T16:00:00Z",
        "windowed/2031-03-07T17:00:00Z",
    ]


def _database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh database of *kind*: a DuckDB file, or the test's PostgreSQL schema."""
    if kind == "duckdb":
        return str(tmp_path / "app.duckdb")
    return str(request.getfixturevalue("pg_url"))


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_a_trigger_recorded_without_an_engine_runs_when_one_opens(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = _database(kind, tmp_path, request)
    clock = ManualClock()
    first = fg.Engine(db, clock=clock)
    first.schedule("nightly", report, "eu", cron="0 3 * * *")
    first.close()
    capsys.readouterr()
    assert main(["--db", db, "schedule", "trigger", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "triggered: recorded" in out
    assert main(["--db", db, "schedules"]) == 0
    assert "triggered" in capsys.readouterr().out
    second = fg.Engine(db, clock=clock)
    card = second.get_schedule("nightly")._repr_html_()  # type: ignore[attr-defined]
    assert "<th>triggered</th>" in card
    try:
        second.run_until_idle()
        (run,) = second.list_runs(tags={"schedule": "nightly"})
        assert run.workflow_id.startswith("nightly/")
        assert second.get(run.workflow_id).result() == "report eu"
        assert second.get_schedule("nightly").triggered_at is None
    finally:
        second.close()


def _downgrade(db: str) -> None:
    """Make *db* what the schema version before the new columns left (DuckDB 2, PostgreSQL 3)."""
    downgrade(db, 3 if db.startswith("postgresql://") else 2)


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_an_older_database_gets_the_new_columns_with_its_schedules_intact(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = _database(kind, tmp_path, request)
    clock = ManualClock()
    first = fg.Engine(db, clock=clock)
    before = first.schedule("nightly", report, "eu", cron="0 3 * * *")
    first.close()
    _downgrade(db)
    second = fg.Engine(db, clock=clock)
    try:
        row = second.get_schedule("nightly")
        assert (row.skipped, row.triggered_at) == (0, None)
        assert row == before
        assert second.trigger_schedule("nightly") == f"nightly/{NOW_ID}"
    finally:
        second.close()


def test_an_analytics_copy_of_an_older_postgresql_database_copies_its_schedules(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowgen._stores import postgres_schema
    from flowgen._stores.duckdb_mirror import AnalyticsCopy

    clock = ManualClock()
    with_columns = fg.Engine(pg_url, clock=clock)
    with_columns.schedule("nightly", report, "eu", cron="0 3 * * *")
    with_columns.close()
    _downgrade(pg_url)  # schema version 3: no skipped, no triggered_at
    monkeypatch.setattr(postgres_schema, "SCHEMA_VERSION", 3)  # as flowgen then was
    with AnalyticsCopy(pg_url, "pg", str(tmp_path / "copy.duckdb")) as copy:
        copy.refresh()
        assert copy.sql(
            "select schedule_id, skipped, triggered_at from schedules"
        ).fetchall() == [("nightly", 0, None)]
