"""``flowgen --db postgresql://...``: the commands that drive an engine work on PostgreSQL.

``signal``, ``cancel`` and ``worker`` open an engine on the URL; ``ls``, ``show`` and
``check-replay`` read runs and histories from PostgreSQL, ``sql`` and ``export`` are
answered by DuckDB over an analytics copy, and ``mirror`` keeps a DuckDB file that follows
the database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

import flowgen as fg
from flowgen._stores.postgres_store import PostgresStore
from tests.cli_process import flowgen as run_flowgen

PG_APP = """
import flowgen as fg


@fg.activity(name="pg_shout")
def shout(text: str) -> str:
    return text.upper()


@fg.workflow(name="pg_waiter")
def waiter():
    word = yield fg.wait_signal("word")
    return (yield fg.call(shout, word))
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "pgapp.py").write_text(PG_APP)
    return tmp_path


def flowgen(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_flowgen(*args, app_dir=app_dir)


def test_signal_and_worker_on_postgresql(
    app_dir: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(app_dir))
    import pgapp  # type: ignore[import-not-found]

    engine = fg.Engine(pg_url)  # by hand: the starts are recorded, nothing runs
    engine.start(pgapp.waiter, id="w-1")
    engine.start(pgapp.waiter, id="w-2")
    engine.close()

    done = flowgen(app_dir, "--db", pg_url, "signal", "w-1", "word", '"hello"')
    assert done.returncode == 0, done.stderr
    done = flowgen(app_dir, "--db", pg_url, "cancel", "w-2")
    assert done.returncode == 0, done.stderr
    done = flowgen(
        app_dir, "--db", pg_url, "worker", "--import", "pgapp",
        "--until-done", "--timeout", "30",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "done: no run of the imported workflows is running" in done.stdout

    with PostgresStore(pg_url) as store:
        first, second = store.get_run("w-1"), store.get_run("w-2")
    assert first is not None
    assert (first.status, first.result) == ("completed", "HELLO")
    assert second is not None
    assert second.status == "cancelled"


def two_waiting_runs(url: str, app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(app_dir))
    import pgapp  # type: ignore[import-not-found]

    engine = fg.Engine(url)  # by hand: the starts are recorded, nothing runs
    engine.start(pgapp.waiter, id="w-1")
    engine.start(pgapp.waiter, id="w-2")
    engine.run_until_idle()
    engine.close()
    return pgapp


def test_the_reading_commands_answer_on_postgresql(
    app_dir: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_waiting_runs(pg_url, app_dir, monkeypatch)
    url = pg_url.replace("flowgen@", "flowgen:hunter2@")
    done = flowgen(app_dir, "--db", url, "ls")
    assert done.returncode == 0, done.stderr
    assert [line.split()[:3] for line in done.stdout.splitlines()[2:]] == [
        ["w-2", "pg_waiter", "running"],
        ["w-1", "pg_waiter", "running"],
    ]
    done = flowgen(app_dir, "--db", url, "show", "w-1")
    assert done.returncode == 0, done.stderr
    assert "signal_wait_started" in done.stdout
    query = "select workflow_id, status from workflows order by 1"
    done = flowgen(app_dir, "--db", url, "sql", query, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "workflow_id,status\nw-1,running\nw-2,running\n"
    query = "select name, status from signal_waits order by all"
    done = flowgen(app_dir, "--db", url, "sql", query, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"name": "word", "status": "waiting"}] * 2
    done = flowgen(app_dir, "--db", url, "sql", "delete from workflows")
    assert done.returncode == 1
    assert "DELETE statements are refused" in done.stderr
    done = flowgen(app_dir, "--db", url, "export", str(app_dir / "snap"))
    assert done.returncode == 0, done.stderr
    assert (app_dir / "snap" / "activity_calls.parquet").exists()
    assert duckdb.sql(
        f"select count(*) from '{app_dir / 'snap' / 'signal_waits.parquet'}'"
    ).fetchall() == [(2,)]
    done = flowgen(app_dir, "--db", url, "check-replay", "pgapp:waiter")
    assert done.returncode == 0, done.stderr
    assert "2 ok, 0 diverged" in done.stdout
    for text in (done.stdout, done.stderr):
        assert "hunter2" not in text


def file_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_mirror_catches_up_then_copies_only_what_changed(
    app_dir: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pgapp = two_waiting_runs(pg_url, app_dir, monkeypatch)
    target = app_dir / "analytics.duckdb"
    done = flowgen(app_dir, "--db", pg_url, "mirror", "--to", str(target))
    assert done.returncode == 0, done.stderr
    events = pg_rows(pg_url, "select count(*) from events")[0][0]
    assert f"{events} events copied" in done.stdout
    assert file_rows(target, "select count(*) from events") == [(events,)]
    # A signal and a worker: new events, and both runs' rows change status.
    engine = fg.Engine(pg_url)
    engine.signal("w-1", "word", "hi")
    engine.cancel("w-2")
    engine.close()
    done = flowgen(
        app_dir, "--db", pg_url, "worker", "--import", "pgapp",
        "--until-done", "--timeout", "30",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = flowgen(app_dir, "--db", pg_url, "mirror", "--to", str(target))
    assert done.returncode == 0, done.stderr
    now = pg_rows(pg_url, "select count(*) from events")[0][0]
    assert f"{now - events} events copied" in done.stdout
    assert file_rows(
        target, "select workflow_id, status, result from workflows order by 1"
    ) == [("w-1", "completed", '"HI"'), ("w-2", "cancelled", None)]
    assert file_rows(target, "select name, status, attempts from activity_calls") == [
        ("pg_shout", "completed", 1)
    ]
    del pgapp


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
def test_mirror_follows_until_stopped_cleanly(
    app_dir: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    stop_with: signal.Signals,
) -> None:
    pgapp = two_waiting_runs(pg_url, app_dir, monkeypatch)
    target = app_dir / "analytics.duckdb"
    env = {k: v for k, v in os.environ.items() if k != "FLOWGEN_DB"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(app_dir), env.get("PYTHONPATH", "")) if p
    )
    follower = subprocess.Popen(
        [sys.executable, "-m", "flowgen", "--db", pg_url, "mirror", "--to",
         str(target), "--follow", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        lines = [follower.stdout.readline(), follower.stdout.readline()]
        assert "events copied" in lines[0]
        assert lines[1].startswith("following every 0.2 s")
        engine = fg.Engine(pg_url)  # while it follows: a new run
        engine.start(pgapp.waiter, id="w-3")
        engine.close()
        assert re.match(r"\+\d+ events \(", follower.stdout.readline())
        follower.send_signal(stop_with)
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert follower.returncode == 0, err
    assert "stopped" in out
    assert file_rows(target, "select workflow_id from workflows order by 1") == [
        ("w-1",),
        ("w-2",),
        ("w-3",),
    ]


def test_mirror_needs_a_postgresql_database(app_dir: Path) -> None:
    done = flowgen(
        app_dir, "--db", str(app_dir / "app.duckdb"), "mirror", "--to", "x.duckdb"
    )
    assert done.returncode == 1
    assert "copies a PostgreSQL database" in done.stderr


def pg_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as con:
        return con.execute(query).fetchall()


def test_mirror_refuses_a_file_that_is_not_its_copy_and_a_bad_interval(
    app_dir: Path, pg_url: str
) -> None:
    PostgresStore(pg_url).close()
    embedded = app_dir / "app.duckdb"
    fg.Engine(str(embedded)).close()
    before = embedded.read_bytes()
    done = flowgen(app_dir, "--db", pg_url, "mirror", "--to", str(embedded))
    assert done.returncode == 1
    assert "is a flowgen database of its own" in done.stderr
    assert embedded.read_bytes() == before
    done = flowgen(
        app_dir, "--db", pg_url, "mirror", "--to", "x.duckdb", "--follow",
        "--interval", "0",
    )  # fmt: skip
    assert done.returncode == 1
    assert "--interval must be > 0" in done.stderr
