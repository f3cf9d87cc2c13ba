"""The command line, end to end: ``python -m flowgen ...`` on DuckDB files.

A small application module (``cliapp``) is written into a temporary directory and put on
``PYTHONPATH``; a setup script records a few runs of it once, and each test works on a copy
of that file. The demo runs once per module and its file is reused.

What needs a process of its own runs in a subprocess, as a user would type it: the demo,
everything that imports application code (``--import``, ``check-replay``: the workflow
names must not land in this process's catalog), the process holding the lock, and readers
of the Parquet export. The rest calls `flowgen.cli.main` in this process (each interpreter
start costs ~0.5 s), which is the same code behind the same argument parser.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from flowgen.cli import main
from tests.cli_process import cli_env as _env, flowgen, ok

APP = """
import flowgen as fg


@fg.activity(name="cli_greet")
def greet(name: str) -> str:
    return f"hello {name}"


@fg.workflow(name="cli_waiter")
def waiter(n: int):
    got = yield fg.wait_signal("go")
    text = yield fg.call(greet, got["name"])
    return text


@fg.workflow(name="cli_batches")
def batches(n: int):
    if n < 2:
        yield fg.continue_as_new(n + 1)
    return n
"""

# The same workflow name, but the code now does something else first: stored runs diverge.
APP_CHANGED = """
import flowgen as fg


@fg.activity(name="cli_greet")
def greet(name: str) -> str:
    return f"hello {name}"


@fg.workflow(name="cli_waiter")
def waiter(n: int):
    yield fg.call(greet, "first, a new step")
    got = yield fg.wait_signal("go")
    text = yield fg.call(greet, got["name"])
    return text
"""

SETUP = """
import sys
import flowgen as fg
import cliapp

engine = fg.Engine(sys.argv[1], control_socket=False)
engine.start(cliapp.waiter, 1, id="w-1", tags={"team": "eu", "prio": 2})
engine.start(cliapp.waiter, 2, id="w-2", tags={"team": "us", "prio": 1})
engine.start(cliapp.waiter, 3, id="w-3", tags={"team": "eu", "prio": 1})
engine.start(cliapp.waiter, 4, id="done-1")
engine.signal("done-1", "go", {"name": "Ada"})
engine.start(cliapp.batches, 0, id="chain")
engine.run_until_idle()
assert engine.get("done-1").status() == "completed"
engine.close()
"""

# The application opens the file: runs what is pending, prints every run's status.
RESUME = """
import json
import sys
import flowgen as fg
import cliapp

engine = fg.Engine(sys.argv[1], control_socket=False)
engine.run_until_idle()
print(json.dumps({r.workflow_id: [r.status, r.result] for r in engine.list_runs()}))
engine.close()
"""

# An application that holds the file and serves no `flowgen` command (no control socket).
HOLDER = """
import sys
import flowgen as fg

engine = fg.Engine(sys.argv[1], control_socket=False)
print("ready", flush=True)
sys.stdin.readline()
engine.close()
"""

EXPORT_READER = """
import json, sys, duckdb
con = duckdb.connect()
d = sys.argv[1]
print(json.dumps({
    "runs": con.sql(f"select count(*) from '{d}/workflows.parquet'").fetchall()[0][0],
    "retried": con.sql(
        f"select workflow_id, attempts from '{d}/activities.parquet' "
        "where name = 'reserve_stock' order by 1"
    ).fetchall(),
    "timers": con.sql(f"select status from '{d}/timers.parquet'").fetchall(),
}))
"""


def fails(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("flowgen: "), result.stderr
    return result.stderr


def cli(
    capsys: pytest.CaptureFixture[str], *args: str, code: int = 0
) -> tuple[str, str]:
    """``flowgen ARGS`` in this process: (stdout, stderr), after checking the exit code."""
    capsys.readouterr()
    got = main(list(args))
    out, err = capsys.readouterr()
    assert got == code, (args, out, err)
    if code:
        assert "flowgen: " in err, err
    return out, err


def run_python(script: str, *args: str, app_dir: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=_env(app_dir),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def table_rows(text: str) -> list[list[str]]:
    """The rows of a plain-text table (header and rule dropped), split on runs of spaces."""
    lines = text.strip().splitlines()
    rule = next(i for i, line in enumerate(lines) if line and set(line) <= {"-", " "})
    return [line.split() for line in lines[rule + 1 :] if line.strip()]


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(database path, stdout) of one `python -m flowgen --db PATH demo`."""
    db = str(tmp_path_factory.mktemp("demo") / "demo.duckdb")
    return db, ok(flowgen("--db", db, "demo"))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(application directory, database): w-1, w-2, w-3 wait for "go"; done-1 is done; and
    a continue-as-new chain of three runs, "chain"."""
    app_dir = tmp_path_factory.mktemp("app")
    (app_dir / "cliapp.py").write_text(APP)
    (app_dir / "cliapp_changed.py").write_text(APP_CHANGED)
    db = app_dir / "recorded.duckdb"
    run_python(SETUP, str(db), app_dir=app_dir)
    return app_dir, db


@pytest.fixture
def app(recorded: tuple[Path, Path], tmp_path: Path) -> tuple[Path, str]:
    """(application directory, a fresh copy of the recorded database)."""
    app_dir, template = recorded
    db = tmp_path / "app.duckdb"
    shutil.copy(template, db)
    return app_dir, str(db)


# ---------------------------------------------------------------------------------------------
# demo


def test_demo_runs_the_tour_and_prints_the_sql_result(demo: tuple[str, str]) -> None:
    db, out = demo
    assert f"database: {db}" in out
    assert "order-1 completed: shipped, tracking number TRACK-ORDER-1" in out
    assert "order-2 failed: OrderRejected" in out
    assert "activity_attempt_failed" in out  # the retried attempts, in the history
    assert "timer_fired" in out
    assert "signal_received" in out
    # the SQL result: one row per activity call; reserve_stock took three attempts
    sql_result = out.split("order by workflow_id, seq")[1].split("Done in")[0]
    rows = {(r[0], r[1]): r[2:4] for r in table_rows(sql_result)}
    assert rows == {
        ("order-1", "reserve_stock"): ["3", "completed"],
        ("order-1", "charge_card"): ["1", "completed"],
        ("order-1", "ship_order"): ["1", "completed"],
        ("order-2", "reserve_stock"): ["3", "completed"],
        ("order-2", "charge_card"): ["1", "completed"],
        ("order-2", "refund_card"): ["1", "completed"],
        ("order-2", "release_stock"): ["1", "completed"],
    }
    assert f"flowgen --db {db} ls" in out


def test_demo_without_db_uses_a_new_temporary_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # (The tour itself is not imported here: its workflow names would enter this process's
    # catalog, next to the test suite's own process_order.)
    paths: list[str] = []
    fake = types.ModuleType("flowgen.cli.demo")

    def run_demo(path: str, out: object) -> int:
        paths.append(path)
        return 0

    fake.run_demo = run_demo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flowgen.cli.demo", fake)
    monkeypatch.setenv("FLOWGEN_DB", str(tmp_path / "mine.duckdb"))
    monkeypatch.chdir(tmp_path)
    cli(capsys, "demo")
    (path,) = paths
    assert Path(path).name == "demo.duckdb"
    assert Path(path).parent != tmp_path  # neither $FLOWGEN_DB nor ./flowgen.duckdb
    assert not Path(path).exists()
    cli(capsys, "--db", str(tmp_path / "given.duckdb"), "demo")
    assert paths[1] == str(tmp_path / "given.duckdb")


# ---------------------------------------------------------------------------------------------
# ls, show


def test_ls_lists_runs_with_filters(
    app: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db = app
    out, _ = cli(capsys, "--db", db, "ls")
    assert out.splitlines()[0].split() == [
        "id",
        "name",
        "status",
        "started",
        "(UTC)",
        "closed",
        "(UTC)",
    ]
    assert sorted(r[0] for r in table_rows(out)) == [
        "chain",
        "chain",
        "chain",
        "done-1",
        "w-1",
        "w-2",
        "w-3",
    ]
    running = table_rows(cli(capsys, "--db", db, "ls", "--status", "running")[0])
    assert sorted(r[0] for r in running) == ["w-1", "w-2", "w-3"]
    assert all(r[1:3] == ["cli_waiter", "running"] for r in running)
    done = table_rows(
        cli(capsys, "--db", db, "ls", "--name", "cli_waiter", "--status", "completed")[
            0
        ]
    )
    assert [r[0] for r in done] == ["done-1"]
    assert len(done[0]) == 7  # id name status started (date, time) closed (date, time)
    by_name = table_rows(cli(capsys, "--db", db, "ls", "--name", "cli_waiter")[0])
    assert len(by_name) == 4
    eu = table_rows(cli(capsys, "--db", db, "ls", "--tag", "team=eu")[0])
    assert sorted(r[0] for r in eu) == ["w-1", "w-3"]
    eu1 = cli(capsys, "--db", db, "ls", "--tag", "team=eu", "--tag", "prio=1")[0]
    assert [r[0] for r in table_rows(eu1)] == ["w-3"]
    assert "no runs match" in cli(capsys, "--db", db, "ls", "--name", "nope")[0]
    limited, _ = cli(capsys, "--db", db, "ls", "--limit", "2")
    assert len(table_rows(limited.split("(2 of")[0])) == 2
    assert "(2 of 7 runs shown" in limited
    _, err = cli(capsys, "--db", db, "ls", "--tag", "team", code=1)
    assert "KEY=VALUE" in err


def test_db_defaults_to_env_then_to_the_current_directory(
    app: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, db = app
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.setenv("FLOWGEN_DB", db)
    assert "w-1" in cli(capsys, "ls")[0]
    monkeypatch.delenv("FLOWGEN_DB")
    _, err = cli(capsys, "ls", code=1)
    assert "no flowgen database at flowgen.duckdb" in err
    assert not (empty / "flowgen.duckdb").exists()  # reading never creates a file


def test_show_prints_the_run_and_its_history(
    demo: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = demo
    out, _ = cli(capsys, "--db", db, "show", "order-2")
    head, history = out.split("history: ")
    fields = dict(line.split(None, 1) for line in head.strip().splitlines())
    assert fields["workflow"] == "order-2"
    assert fields["name"] == "process_order"
    assert fields["status"] == "failed"
    assert fields["args"] == '["order-2", 990.0]'
    assert fields["error"].startswith("OrderRejected: order order-2 was rejected")
    rows = table_rows(history)
    assert rows[0][0] == "0"
    assert rows[0][4] == "workflow_started"
    kinds = [r[4] for r in rows]
    assert kinds.count("activity_attempt_failed") == 2
    assert kinds[-1] == "workflow_failed"
    again, _ = cli(capsys, "--db", db, "show", "order-2", "--run", fields["run"])
    assert again == out


def test_show_tells_where_a_run_is_in_a_continue_as_new_chain(
    app: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db = app
    out, _ = cli(capsys, "--db", db, "show", "chain")
    assert "(run 3 of 3 with this id, a continue-as-new chain" in out
    assert "result    2" in out
    first = out.split("run       ")[1].split()[0]
    assert first.isalnum()


def test_show_unknown_id_is_a_clear_error(
    demo: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = demo
    err = fails(flowgen("--db", db, "show", "no-such-order"))  # as a user sees it
    assert "no workflow with id 'no-such-order'" in err
    _, err = cli(capsys, "--db", db, "show", "order-1", "--run", "nope", code=1)
    assert "no run 'nope' of workflow 'order-1'" in err


# ---------------------------------------------------------------------------------------------
# sql

QUERY = "select name, attempts, status from activities where workflow_id = 'order-1' order by seq"


def test_sql_prints_a_table(
    demo: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = demo
    out, _ = cli(capsys, "--db", db, "sql", QUERY)
    assert out.splitlines()[0].split() == ["name", "attempts", "status"]
    assert table_rows(out.split("(3 rows)")[0]) == [
        ["reserve_stock", "3", "completed"],
        ["charge_card", "1", "completed"],
        ["ship_order", "1", "completed"],
    ]


def test_sql_csv_and_json(
    demo: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = demo
    out, _ = cli(capsys, "--db", db, "sql", QUERY, "--format", "csv")
    assert list(csv.reader(io.StringIO(out))) == [
        ["name", "attempts", "status"],
        ["reserve_stock", "3", "completed"],
        ["charge_card", "1", "completed"],
        ["ship_order", "1", "completed"],
    ]
    out, _ = cli(capsys, "--db", db, "sql", QUERY, "--format", "json")
    assert json.loads(out)[0] == {
        "name": "reserve_stock",
        "attempts": 3,
        "status": "completed",
    }
    # JSON columns come out as JSON, timestamps as ISO 8601 in UTC
    query = (
        "select args, error, started_at from workflows where workflow_id = 'order-2'"
    )
    out, _ = cli(capsys, "--db", db, "sql", query, "--format", "json")
    (row,) = json.loads(out)
    assert row["args"] == ["order-2", 990.0]
    assert row["error"]["type"] == "OrderRejected"
    assert row["started_at"].endswith("+00:00")


def test_sql_refuses_writes_and_reports_errors(
    demo: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = demo
    count = "select count(*) as n from events"
    before = table_rows(cli(capsys, "--db", db, "sql", count)[0])
    _, err = cli(capsys, "--db", db, "sql", "delete from events", code=1)
    assert "only reads" in err
    assert "DELETE" in err
    err = fails(flowgen("--db", db, "sql", "selec 1"))  # as a user sees it
    assert "SQL error" in err
    assert "syntax error" in err
    assert table_rows(cli(capsys, "--db", db, "sql", count)[0]) == before


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("copy (select * from events) to '{out}' (format csv)", "COPY"),
        ("set threads = 1", "SET"),
        ("set variable x = 1", "SET"),
        ("load json", "LOAD"),
        ("install json", "LOAD"),
        ("attach '{out}.db' as other", "ATTACH"),
        ("export database '{out}.dir'", "EXPORT"),
    ],
)
def test_sql_refuses_what_writes_files_or_changes_the_session(
    demo: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    statement: str,
    kind: str,
) -> None:
    # The help promises a read-only query: COPY ... TO writes a file outside the rolled
    # back transaction, and SET/LOAD change what later statements do (issue 10 item 7).
    db, _ = demo
    out = tmp_path / "leak.csv"
    _, err = cli(capsys, "--db", db, "sql", statement.format(out=out), code=1)
    assert "only reads" in err
    assert kind in err
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# export


def test_export_writes_parquet_any_duckdb_reads(
    demo: tuple[str, str], tmp_path: Path
) -> None:
    db, _ = demo
    target = tmp_path / "snapshot"
    out = ok(flowgen("--db", db, "export", str(target)))
    for name in ("workflows", "events", "activities", "timers", "signals"):
        assert (target / f"{name}.parquet").exists()
        assert f"{name}.parquet" in out
    got = json.loads(run_python(textwrap.dedent(EXPORT_READER), str(target)))
    assert got["runs"] == 2
    assert got["retried"] == [["order-1", 3], ["order-2", 3]]
    assert got["timers"] == [["fired"], ["fired"]]


# ---------------------------------------------------------------------------------------------
# signal, cancel


def test_signal_and_cancel_without_the_code_are_recorded_for_the_application(
    app: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    app_dir, db = app
    out, err = cli(capsys, "--db", db, "signal", "w-1", "go", '{"name": "Kyle"}')
    assert "signal 'go' recorded for workflow 'w-1'" in out
    assert "not loaded here" in out
    assert err == ""  # the engine's "stuck" log lines stay quiet
    history, _ = cli(capsys, "--db", db, "show", "w-1")
    assert "signal_received" in history
    assert "activity_scheduled" not in history  # no code here, so no reaction yet
    out, _ = cli(capsys, "--db", db, "cancel", "w-3", "--reason", "customer left")
    assert "cancel request recorded for workflow 'w-3'" in out
    assert "cancel_requested" in cli(capsys, "--db", db, "show", "w-3")[0]
    # The application opens the file: the workflows react.
    resumed = json.loads(run_python(RESUME, db, app_dir=app_dir))
    assert resumed["w-1"] == ["completed", "hello Kyle"]
    assert resumed["w-2"] == ["running", None]
    assert resumed["w-3"][0] == "cancelled"


def test_signal_and_cancel_with_import_react_now(app: tuple[Path, str]) -> None:
    app_dir, db = app
    env = _env(app_dir)
    out = ok(
        flowgen(
            "--db",
            db,
            "signal",
            "w-2",
            "go",
            '{"name": "Ann"}',
            "--import",
            "cliapp",
            env=env,
        )
    )
    assert "the workflow took it and is running" in out
    out = ok(flowgen("--db", db, "cancel", "w-1", "--import", "cliapp", env=env))
    assert "is now cancelled" in out
    # Imported code that cannot replay the run: the signal is still recorded, with a warning.
    result = flowgen(
        "--db",
        db,
        "signal",
        "w-3",
        "go",
        '{"name": "Bo"}',
        "--import",
        "cliapp_changed",
        env=env,
    )
    assert "signal 'go' recorded for workflow 'w-3'." in ok(result)
    assert (
        "warning: the imported code of workflow 'cli_waiter' does not replay"
        in result.stderr
    )
    assert "NonDeterminismError" in result.stderr
    resumed = json.loads(run_python(RESUME, db, app_dir=app_dir))
    assert resumed["w-2"] == ["completed", "hello Ann"]
    assert resumed["w-1"][0] == "cancelled"
    assert resumed["w-3"] == ["completed", "hello Bo"]


def test_signal_errors_change_nothing(
    app: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db = app
    err = fails(flowgen("--db", db, "signal", "w-1", "go", "{not json"))
    assert "PAYLOAD must be JSON" in err
    _, err = cli(capsys, "--db", db, "signal", "nobody", "go", "1", code=1)
    assert "no workflow with id 'nobody'" in err
    _, err = cli(capsys, "--db", db, "signal", "done-1", "go", "1", code=1)
    assert "has finished (completed)" in err
    _, err = cli(capsys, "--db", db, "cancel", "nobody", code=1)
    assert "no workflow with id 'nobody'" in err
    args = ("--db", db, "signal", "w-1", "go", "1", "--import", "no_such_module")
    _, err = cli(capsys, *args, code=1)
    assert "cannot import 'no_such_module'" in err
    history, _ = cli(capsys, "--db", db, "show", "w-1")
    assert "signal_received" not in history


# ---------------------------------------------------------------------------------------------
# check-replay


def test_check_replay_passes_on_unchanged_code(app: tuple[Path, str]) -> None:
    app_dir, db = app
    env = _env(app_dir)
    out = ok(flowgen("--db", db, "check-replay", "cliapp:waiter", env=env))
    assert (
        "replaying 4 stored run(s) of workflow 'cli_waiter'" in out
    )  # not cli_batches
    # A summary; the runs that replay fine are listed only when asked.
    assert "4 ok, 0 diverged" in out
    assert "w-1" not in out and "---" not in out
    verbose = ok(
        flowgen("--db", db, "check-replay", "cliapp:waiter", "--verbose", env=env)
    )
    assert verbose.startswith(out.split("\n")[0])
    rows = table_rows(verbose.split("\n\n")[0])
    assert sorted((r[0], r[3]) for r in rows) == [
        ("done-1", "ok"),
        ("w-1", "ok"),
        ("w-2", "ok"),
        ("w-3", "ok"),
    ]
    assert "4 ok, 0 diverged" in out


def test_check_replay_reports_each_diverging_run(app: tuple[Path, str]) -> None:
    app_dir, db = app
    args = ("--db", db, "check-replay", "cliapp_changed:waiter", "--status", "running")
    result = flowgen(*args, env=_env(app_dir))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    rows = table_rows(out.split("\n\n")[0])
    assert sorted((r[0], r[3]) for r in rows) == [
        ("w-1", "DIVERGED"),
        ("w-2", "DIVERGED"),
        ("w-3", "DIVERGED"),
    ]
    assert out.count("NonDeterminismError") == 3
    assert "seq 0" in out
    assert "0 ok, 3 diverged" in out


def test_check_replay_bad_targets(
    app: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db = app
    _, err = cli(capsys, "--db", db, "check-replay", "cliapp", code=1)
    assert "MODULE:WORKFLOW" in err
    _, err = cli(capsys, "--db", db, "check-replay", "json:nope", code=1)
    assert "module 'json' has no 'nope'" in err
    _, err = cli(capsys, "--db", db, "check-replay", "json:loads", code=1)
    assert "is not a workflow" in err
    _, err = cli(capsys, "--db", db, "check-replay", "no_such_module:x", code=1)
    assert "cannot import 'no_such_module'" in err


# ---------------------------------------------------------------------------------------------
# another process holds the file


def test_a_locked_database_gets_a_clear_message_and_exit_code_2(
    app: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db = app
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready", holder.stderr
        err = fails(flowgen("--db", db, "ls"), code=2)
        assert f"process {holder.pid} has it open" in err
        assert len(err.strip().splitlines()) == 2, err  # what holds it, what to do
        assert "How to proceed" in err
        assert "export_parquet" in err
        _, err = cli(capsys, "--db", db, "signal", "w-1", "go", "1", code=2)
        assert "engine.signal(...)" in err
        _, err = cli(capsys, "--db", db, "sql", "select 1", code=2)
        assert "has it open" in err
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    cli(capsys, "--db", db, "ls")  # usable again once the holder is gone


# ---------------------------------------------------------------------------------------------
# help


def test_help_and_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = cli(capsys, "--help")
    for command in (
        "demo",
        "ls",
        "show",
        "sql",
        "signal",
        "cancel",
        "export",
        "check-replay",
    ):
        assert command in out
    assert "--import" in cli(capsys, "signal", "--help")[0]
    assert main([]) == 1
    assert "usage: flowgen" in capsys.readouterr().out
    _, err = cli(capsys, "ls", "--format", "xml", code=2)
    assert "unrecognized arguments" in err


# ---------------------------------------------------------------------------------------------
# worker

WORKER_APP = """
import time
from pathlib import Path

import flowgen as fg


@fg.activity(name="cli_note")
def note(path: str, n: int) -> int:
    with open(path, "a") as file:
        file.write(f"{n}\\n")
    return n * 10


@fg.workflow(name="cli_sleeper")
def sleeper(path: str, n: int):
    yield fg.sleep(0.3)
    return (yield fg.call(note, path, n))
"""

WORKER_SETUP = """
import sys
import flowgen as fg
import cliapp, workerapp

engine = fg.Engine(sys.argv[1])  # driven by hand: starts are recorded, nothing runs
for n in range(3):
    engine.start(workerapp.sleeper, sys.argv[2], n, id=f"sleeper-{n}")
engine.start(cliapp.waiter, 9, id="not-imported")
engine.close()
"""


def test_worker_finishes_the_unfinished_runs_of_the_imported_code(
    recorded: tuple[Path, Path], tmp_path: Path
) -> None:
    app_dir, _ = recorded
    (app_dir / "workerapp.py").write_text(WORKER_APP)
    db, notes = tmp_path / "work.duckdb", tmp_path / "notes.txt"
    run_python(WORKER_SETUP, str(db), str(notes), app_dir=app_dir)
    out = ok(
        flowgen(
            "--db", str(db), "worker", "--import", "workerapp", "--until-done",
            "--timeout", "30", env=_env(app_dir),
        )
    )  # fmt: skip
    assert "3 unfinished run(s) of cli_sleeper" in out
    assert "done: no run of the imported workflows is running" in out
    assert sorted(notes.read_text().split()) == ["0", "1", "2"]
    statuses = json.loads(run_python(RESUME, str(db), app_dir=app_dir))
    assert statuses["sleeper-1"] == ["completed", 10]
    # A workflow the worker did not import is left as it was.
    assert statuses["not-imported"] == ["running", None]
    assert not Path(f"{db}.journal").exists()


def test_worker_until_done_gives_up_at_the_timeout_and_says_what_is_left(
    app: tuple[Path, str],
) -> None:
    app_dir, db = app
    err = fails(
        flowgen(
            "--db", db, "worker", "--import", "cliapp", "--until-done",
            "--timeout", "1", env=_env(app_dir),
        )
    )  # fmt: skip
    assert "--timeout 1 s passed with 3 run(s) still running" in err
    assert "'w-1'" in err


def test_worker_stops_cleanly_on_sigterm(app: tuple[Path, str]) -> None:
    app_dir, db = app
    process = subprocess.Popen(
        [sys.executable, "-m", "flowgen", "--db", db, "worker", "--import", "cliapp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(app_dir),
    )
    try:
        assert process.stdout is not None
        assert "unfinished run(s)" in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped: unfinished runs resume" in out
    assert not Path(f"{db}.journal").exists()
    ok(flowgen("--db", db, "ls"))  # the file is free again


def test_worker_argument_errors(app: tuple[Path, str]) -> None:
    _, db = app
    err = fails(flowgen("--db", db, "worker", "--import", "cliapp", "--timeout", "5"))
    assert "--timeout goes with --until-done" in err
    assert flowgen("--db", db, "worker").returncode == 2  # --import is required
    err = fails(flowgen("--db", db, "worker", "--import", "no_such_module_xyz"))
    assert "cannot import 'no_such_module_xyz'" in err
