"""``flowgen schedules`` and ``flowgen schedule pause|unpause|trigger|delete``: on the file,
and through a running application's control socket."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import flowgen as fg
from flowgen.cli import main
from flowgen.testing import ManualClock
from tests.cli_process import flowgen, start_app


@fg.workflow
def nightly_report(region: str) -> str:
    return region
    yield  # a generator


def cli(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    capsys.readouterr()
    got = main(list(args))
    out, err = capsys.readouterr()
    assert got == code, (args, out, err)
    return out if code == 0 else err


def rows(text: str) -> list[list[str]]:
    lines = text.strip().splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    return [line.split() for line in lines[rule + 1 :] if line.strip()]


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "app.duckdb")
    engine = fg.Engine(path, clock=ManualClock())
    engine.schedule("nightly", nightly_report, "eu", cron="0 3 * * *")
    engine.schedule(
        "poll", nightly_report, "us", every=timedelta(minutes=15), overlap="allow"
    )
    engine.close()
    return path


def test_schedules_lists_every_schedule_like_ls(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli(capsys, "--db", db, "schedules")
    assert out.splitlines()[0].split() == [
        "id",
        "workflow",
        "when",
        "overlap",
        "state",
        "next",
        "(UTC)",
        "last",
        "run",
        "skipped",
    ]
    assert rows(out) == [
        ["nightly", "nightly_report", "cron", "0", "3", "*", "*", "*", "skip", "active",
         "2031-03-08", "03:00:00", "0"],
        ["poll", "nightly_report", "every", "15m", "allow", "active",
         "2031-03-07", "09:30:00", "0"],
    ]  # fmt: skip


def test_pause_unpause_and_delete_on_the_file(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli(
        capsys, "--db", db, "schedule", "pause", "nightly", "--note", "db upgrade"
    )
    assert out.strip() == "schedule 'nightly' paused"
    listed = rows(cli(capsys, "--db", db, "schedules"))
    assert listed[0][-4:] == ["paused", "(db", "upgrade)", "0"]
    cli(capsys, "--db", db, "schedule", "unpause", "nightly")
    assert rows(cli(capsys, "--db", db, "schedules"))[0][9] == "active"
    cli(capsys, "--db", db, "schedule", "delete", "poll")
    assert [r[0] for r in rows(cli(capsys, "--db", db, "schedules"))] == ["nightly"]
    err = cli(capsys, "--db", db, "schedule", "delete", "poll", code=1)
    assert "no schedule with id 'poll'" in err
    with fg.Engine(db, clock=ManualClock()) as engine:  # the application sees it all
        assert [s.schedule_id for s in engine.schedules()] == ["nightly"]
        assert not engine.get_schedule("nightly").paused


def test_no_schedules_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "empty.duckdb")
    fg.Engine(path).close()
    assert cli(capsys, "--db", path, "schedules").strip() == "no schedules yet"


APP = """
import json, sys
import flowgen as fg

@fg.workflow
def nightly_report(region):
    return region
    yield

with fg.Engine(sys.argv[1]) as engine:
    engine.schedule("nightly", nightly_report, "eu", cron="0 3 * * *")
    print("ready", flush=True)
    sys.stdin.readline()
    row = engine.get_schedule("nightly")
    print(json.dumps({"paused": row.paused, "note": row.note}), flush=True)
"""


def test_through_the_running_application(tmp_path: Path) -> None:
    db = str(tmp_path / "app.duckdb")
    app = start_app(APP, db)
    try:
        assert app.stdout is not None and app.stdin is not None
        listed = flowgen("--db", db, "schedules")
        assert listed.returncode == 0, listed.stderr
        assert rows(listed.stdout)[0][:2] == ["nightly", "nightly_report"]
        paused = flowgen("--db", db, "schedule", "pause", "nightly", "--note", "later")
        assert paused.returncode == 0, paused.stderr
        triggered = flowgen("--db", db, "schedule", "trigger", "nightly")
        assert triggered.returncode == 0, triggered.stderr
        assert "triggered: latest run nightly/" in triggered.stdout
        listed = flowgen("--db", db, "schedules")
        assert rows(listed.stdout)[0][-2].startswith("nightly/")  # the triggered run
        unknown = flowgen("--db", db, "schedule", "pause", "nope")
        assert unknown.returncode == 1
        assert "no schedule with id 'nope'" in unknown.stderr
        app.stdin.write("report\n")
        app.stdin.flush()
        assert json.loads(app.stdout.readline()) == {"paused": True, "note": "later"}
    finally:
        if app.poll() is None:
            app.kill()
        app.communicate(timeout=60)


DELETING_APP = """
import json, sys
import flowgen as fg

@fg.workflow
def hourly_sync():
    return "synced"
    yield

with fg.Engine(sys.argv[1]) as engine:
    engine.schedule("hourly", hourly_sync, every=3600)
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps([s.schedule_id for s in engine.schedules()]), flush=True)
"""


def test_a_delete_through_the_running_application_is_answered_there(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "app.duckdb")
    app = start_app(DELETING_APP, db)
    try:
        assert app.stdout is not None and app.stdin is not None
        deleted = flowgen("--db", db, "schedule", "delete", "hourly")
        assert deleted.returncode == 0, deleted.stderr
        assert deleted.stdout.strip() == "schedule 'hourly' deleted"
        app.stdin.write("report\n")
        app.stdin.flush()
        assert json.loads(app.stdout.readline()) == []
    finally:
        if app.poll() is None:
            app.kill()
        app.communicate(timeout=60)


def test_on_postgresql_beside_a_running_engine(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = ManualClock()
    engine = fg.Engine(pg_url, clock=clock)  # holds the database's engine lock
    try:
        engine.schedule("nightly", nightly_report, "eu", cron="0 3 * * *")
        assert rows(cli(capsys, "--db", pg_url, "schedules"))[0][:2] == [
            "nightly",
            "nightly_report",
        ]
        cli(capsys, "--db", pg_url, "schedule", "pause", "nightly", "--note", "later")
        assert engine.get_schedule("nightly").note == "later"
        clock.set(datetime(2031, 3, 8, 3, tzinfo=UTC))
        engine.run_until_idle()
        assert engine.list_runs() == []  # the engine reads the row before firing
        cli(capsys, "--db", pg_url, "schedule", "unpause", "nightly")
        assert not engine.get_schedule("nightly").paused
    finally:
        engine.close()
