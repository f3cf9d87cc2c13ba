"""``flowgen --db postgresql://...``: the commands that drive an engine work on PostgreSQL.

``signal``, ``cancel`` and ``worker`` open an engine on the URL; the commands that read a
DuckDB file (``ls``, ``show``, ``sql``, ``export``) say they are not available there yet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flowgen as fg
from flowgen._stores.postgres_store import PostgresStore

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
    env = {k: v for k, v in os.environ.items() if k != "FLOWGEN_DB"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(app_dir), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "-m", "flowgen", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


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


@pytest.mark.parametrize("command", [["ls"], ["show", "w-1"], ["sql", "select 1"]])
def test_commands_that_read_duckdb_say_they_are_not_available_on_postgresql(
    app_dir: Path, pg_url: str, command: list[str]
) -> None:
    url = pg_url.replace("flowgen@", "flowgen:hunter2@")
    done = flowgen(app_dir, "--db", url, *command)
    assert done.returncode != 0
    assert f"`flowgen {command[0]}` reads a DuckDB file" in done.stderr
    assert "not available yet" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
