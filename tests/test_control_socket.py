"""The command line while the application runs (issue 10, item 8), with real processes.

An application process holds the DuckDB file and serves the command line over
``<file>.sock``: ``flowgen ls``, ``show``, ``sql``, ``signal``, ``cancel`` and ``export``
from the real CLI (subprocesses) succeed while it runs and take no lock. A command holding
the file makes a starting application wait, not crash. A socket left by ``kill -9`` is
stale: the CLI falls back to opening the file, and the next engine replaces it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowgen as fg
from flowgen._runtime.control import MAX_REQUEST, request, socket_path
from tests.cli_process import cli_env, flowgen, ok, reap, start_app

# A small application: two workflows waiting on signals, kept up until stdin says stop;
# then it prints what became of them.
APP = """
import json, sys
import flowgen as fg

@fg.workflow
def waiter():
    got = yield fg.wait_signal("go")
    return got

engine = fg.Engine(sys.argv[1], workflows=[waiter])
with engine:
    if engine.store.get_run("w-1") is None:
        engine.start(waiter, id="w-1")
        engine.start(waiter, id="w-2")
    print("ready", flush=True)
    if sys.stdin.readline():
        print(json.dumps({
            "w-1": engine.get("w-1").result(timeout=60),
            "w-2": engine.get("w-2").status(),
        }), flush=True)
"""

# A `flowgen` command's worth of holding the file: a store open until stdin closes.
HOLD_STORE = """
import sys
from flowgen._stores.duckdb_store import DuckDBStore
store = DuckDBStore(sys.argv[1])
print("open", flush=True)
sys.stdin.read()
store.close()
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    db = str(tmp_path / "app.duckdb")
    process = launch_app(db, tmp_path)
    yield process, db
    reap(process)


def launch_app(db: str, app_dir: Path) -> subprocess.Popen[str]:
    """`APP` on *db*, returned once it is ready."""
    script = app_dir / "app.py"
    script.write_text(APP)
    return start_app(script, db)


def stop_app(app: subprocess.Popen[str]) -> dict[str, object]:
    out, err = app.communicate("stop\n", timeout=120)
    assert app.returncode == 0, err
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_every_command_works_while_the_application_runs(
    app: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    process, db = app
    listed = ok(flowgen("--db", db, "ls"))
    assert "w-1" in listed and "w-2" in listed and "running" in listed
    shown = ok(flowgen("--db", db, "show", "w-1"))
    assert "waiter" in shown and "running" in shown and "workflow_started" in shown
    rows = json.loads(
        ok(
            flowgen(
                "--db",
                db,
                "sql",
                "--format",
                "json",
                "select workflow_id, started_at from workflows order by workflow_id",
            )
        )
    )
    assert [r["workflow_id"] for r in rows] == ["w-1", "w-2"]
    assert isinstance(rows[0]["started_at"], str)  # a timestamp, printed as ISO text

    written = tmp_path / "snapshot"
    exported = ok(flowgen("--db", db, "export", str(written)))
    assert "Parquet files" in exported
    assert (written / "workflows.parquet").exists()

    signalled = ok(flowgen("--db", db, "signal", "w-1", "go", '"approved"'))
    assert "signal 'go' recorded for workflow 'w-1'" in signalled
    cancelled = ok(flowgen("--db", db, "cancel", "w-2", "--reason", "not needed"))
    assert "cancel request recorded for workflow 'w-2'" in cancelled

    # The application itself saw both, and it was never stopped or locked out.
    assert stop_app(process) == {"w-1": "approved", "w-2": "cancelled"}
    assert not os.path.exists(socket_path(db))  # removed on close
    listed = ok(flowgen("--db", db, "ls"))  # the file itself now: nothing serves it
    assert "completed" in listed and "cancelled" in listed


def test_refusals_come_back_from_the_application_as_from_the_file(
    app: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    _, db = app
    target = tmp_path / "out.csv"
    refused = flowgen("--db", db, "sql", f"COPY workflows TO '{target}'")
    assert refused.returncode == 1
    assert "flowgen sql only reads" in refused.stderr
    assert not target.exists()
    wrong = flowgen("--db", db, "sql", "select * from no_such_table")
    assert wrong.returncode == 1 and "SQL error" in wrong.stderr
    missing = flowgen("--db", db, "show", "nobody")
    assert missing.returncode == 1 and "no workflow with id 'nobody'" in missing.stderr
    missing = flowgen("--db", db, "signal", "nobody", "go")
    assert missing.returncode == 1 and "no workflow with id 'nobody'" in missing.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    failed = flowgen("--db", db, "export", str(a_file))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    # A request that failed leaves the server serving.
    assert "w-1" in ok(flowgen("--db", db, "ls"))


def test_the_socket_is_its_owners_only(app: tuple[subprocess.Popen[str], str]) -> None:
    _, db = app
    mode = os.stat(socket_path(db)).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    # No staging directory is left beside the file.
    assert not [
        p for p in os.listdir(os.path.dirname(db)) if p.startswith(".flowgen-sock")
    ]


def _raw(db: str, payload: bytes) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(60)
        client.connect(socket_path(db))
        client.sendall(payload)
        reply: dict[str, object] = json.loads(client.makefile("rb").readline())
    return reply


def test_a_bad_client_gets_an_error_and_cannot_hang_the_engine(
    app: tuple[subprocess.Popen[str], str],
) -> None:
    _, db = app
    # A client that connects and says nothing holds only its own request's thread.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(socket_path(db))
        assert request(db, "ls") is not None
        too_long = _raw(db, b"x" * (MAX_REQUEST + 10))
        assert too_long["ok"] is False
        garbage = _raw(db, b"not json\n")
        assert garbage["ok"] is False
        unknown_op = _raw(db, b'{"op": "drop_everything"}\n')
        assert unknown_op["ok"] is False
    # And the engine still serves.
    assert len(request(db, "ls") or []) == 2  # type: ignore[arg-type]


def test_a_stale_socket_after_kill_9_falls_back_and_is_replaced(
    app: tuple[subprocess.Popen[str], str], tmp_path: Path
) -> None:
    process, db = app
    reap(process)  # SIGKILL: no close, the socket file stays behind
    assert os.path.exists(socket_path(db))
    assert request(db, "ls") is None  # nothing answers: stale
    listed = ok(flowgen("--db", db, "ls"))  # the CLI opens the file itself
    assert "w-1" in listed
    ok(flowgen("--db", db, "signal", "w-1", "go", '"from the file"'))
    # The next application replaces the stale socket and serves again.
    again = launch_app(db, tmp_path)
    try:
        assert stat.S_IMODE(os.stat(socket_path(db)).st_mode) == 0o600
        assert request(db, "ls") is not None
        ok(flowgen("--db", db, "cancel", "w-2"))
        assert stop_app(again) == {"w-1": "from the file", "w-2": "cancelled"}
    finally:
        if again.poll() is None:
            again.kill()
            again.wait(timeout=60)


def test_an_application_starting_while_a_command_holds_the_file_waits(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "app.duckdb")
    fg.Engine(db).close()  # the file exists, as for any `flowgen` command
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_STORE, db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        script = tmp_path / "app.py"
        script.write_text(APP)
        app = start_app(script, db, ready=None)
        try:
            assert app.stderr is not None and app.stdout is not None
            waiting = app.stderr.readline()  # the engine says it waits for the file
            assert "waiting up to 10 s for" in waiting, waiting
            assert f"process {holder.pid} has it open" in waiting
            holder.communicate("", timeout=60)  # the command finishes
            assert app.stdout.readline().strip() == "ready"
            ok(flowgen("--db", db, "signal", "w-1", "go", "1"))
            ok(flowgen("--db", db, "cancel", "w-2"))
            assert stop_app(app) == {"w-1": 1, "w-2": "cancelled"}
        finally:
            reap(app)


def test_the_wait_is_bounded_and_the_message_is_two_lines(tmp_path: Path) -> None:
    db = str(tmp_path / "app.duckdb")
    fg.Engine(db).close()
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_STORE, db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        try:
            with pytest.raises(fg.StoreLockedError) as info:
                fg.Engine(db, lock_timeout=0.3)
        finally:
            holder.communicate("", timeout=60)
    lines = str(info.value).splitlines()
    assert len(lines) == 2, lines
    assert f"process {holder.pid} has it open" in lines[0]
    assert "waited 0.3 s" in lines[0]
    with fg.Engine(db):  # free again: it opens at once
        pass


def test_no_socket_in_memory_or_when_turned_off(tmp_path: Path) -> None:
    with fg.Engine(":memory:"):
        assert not list(Path.cwd().glob(":memory:*"))
    db = str(tmp_path / "quiet.duckdb")
    with fg.Engine(db, control_socket=False):
        assert not os.path.exists(socket_path(db))
    with fg.Engine(db):
        assert os.path.exists(socket_path(db))
        assert request(db, "ls") == []
    assert not os.path.exists(socket_path(db))


def test_a_path_too_long_for_a_socket_address_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    db = str(deep / "app.duckdb")
    assert len(socket_path(db)) > 108
    with fg.Engine(db) as engine:
        assert engine.list_runs() == []
        assert stat.S_IMODE(os.stat(socket_path(db)).st_mode) == 0o600
        assert request(db, "ls") == []
        assert "no runs yet" in ok(flowgen("--db", db, "ls"))
