"""The command line given hostile arguments: one short message and exit code 1, never a
traceback, nothing written, and the file still opens.

Each case calls `flowgen.cli.main` in this process (the same parser and code as
``python -m flowgen``) on a DuckDB file holding runs that wait for a signal; an exception
escaping ``main`` is a traceback a user would have seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import flowgen as fg
from flowgen.cli import main

SURROGATE = "bad\udcff\udcfename"  # what argv holds for the bytes b"bad\xff\xfename"
DEEP = "[" * 50_000 + "]" * 50_000


@fg.workflow(name="cli_hostile_waiter")
def waiter() -> fg.Workflow[object]:
    yield fg.on_update("add", lambda x: x)
    got = yield fg.wait_signal("go")
    return got


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "hostile.duckdb")
    engine = fg.Engine(path, control_socket=False)
    engine.start(waiter, id="w-1")
    engine.run_until_idle()
    engine.close()
    return path


def _events(path: str) -> int:
    engine = fg.Engine(path, control_socket=False)
    try:
        return len(engine.get("w-1").history())
    finally:
        engine.close()


def _refused(
    path: str, argv: list[str], capsys: pytest.CaptureFixture[str], *, mentions: str
) -> str:
    before = _events(path)
    capsys.readouterr()
    assert main(["--db", path, *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flowgen: ")
    assert mentions in err
    assert len(err) < 1_100, "the message quotes a huge argument whole"
    assert _events(path) == before, "a refused command wrote to the file"
    return err


@pytest.mark.parametrize(
    ("payload", "mentions"),
    [
        ("NaN", "NaN is not JSON"),
        ("Infinity", "Infinity is not JSON"),
        ("[-Infinity]", "-Infinity is not JSON"),
        ("1e400", "beyond a float's range"),
        (DEEP, "nested too deep"),
        ("1" + "0" * 5_000, "PAYLOAD must be JSON"),
        ('"\\udc80"', "lone surrogate"),
    ],
    ids=["nan", "infinity", "minus-infinity", "1e400", "deep", "huge-int", "surrogate"],
)
def test_a_signal_payload_that_cannot_be_stored_is_one_message(
    db: str, payload: str, mentions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(db, ["signal", "w-1", "go", payload], capsys, mentions=mentions)


def test_an_update_argument_that_is_no_json_is_refused_before_anything_else(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(
        db, ["update", "w-1", "add", "NaN"], capsys, mentions="each ARG must be JSON"
    )
    _refused(db, ["update", "w-1", "add", DEEP], capsys, mentions="nested too deep")


@pytest.mark.parametrize(
    "argv",
    [
        ["signal", "w-1", SURROGATE, "1"],
        ["cancel", "w-1", "--reason", SURROGATE],
        ["schedule", "pause", SURROGATE],
        ["schedule", "trigger", SURROGATE],
    ],
    ids=["signal-name", "cancel-reason", "schedule-pause", "schedule-trigger"],
)
def test_a_name_with_a_lone_surrogate_is_one_message(
    db: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(db, argv, capsys, mentions="lone surrogate")


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("", "no statement"),
        ("   ", "no statement"),
        (f"select '{SURROGATE}'", "lone surrogate"),
    ],
    ids=["empty", "blank", "surrogate"],
)
def test_an_sql_query_duckdb_cannot_take_is_one_message(
    db: str, query: str, mentions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(db, ["sql", query], capsys, mentions=mentions)


def test_an_export_directory_that_cannot_be_made_is_one_message_and_makes_nothing(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("in the way")
    _refused(db, ["export", str(a_file)], capsys, mentions=str(a_file))
    _refused(db, ["export", str(a_file / "below")], capsys, mentions="below")
    undecodable = tmp_path / SURROGATE
    _refused(db, ["export", str(undecodable)], capsys, mentions="lone surrogate")
    assert not undecodable.exists()


def test_a_tag_filter_nested_too_deep_is_taken_as_text(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--db", db, "ls", "--tag", f"k={DEEP}"]) == 0
    assert "no runs match" in capsys.readouterr().out


def test_a_huge_id_is_quoted_cut_short(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused(db, ["show", "x" * 100_000], capsys, mentions="characters left out")
    assert "no workflow with id" in err


def _within(seconds: float, call: Callable[[], object]) -> object:
    """*call*'s result, or a failure if it has not returned after *seconds* (a hang)."""
    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"still running after {seconds} s"
    return box[0]


@pytest.mark.parametrize(
    ("option", "mentions"),
    [
        (["--timeout", "nan"], "--timeout must be seconds >= 0"),
        (["--max-workers", "0"], "--max-workers must be >= 1"),
    ],
)
def test_a_worker_option_out_of_range_is_refused_not_waited_on(
    db: str, option: list[str], mentions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--db", db, "worker", "--import", __name__, "--until-done", *option]
    assert _within(60, lambda: main(argv)) == 1
    assert mentions in capsys.readouterr().err


HOLDER = """
import sys
import flowgen as fg

engine = fg.Engine(sys.argv[1])
engine.start_background()
print("ready", flush=True)
sys.stdin.read()
engine.close()
"""


def test_a_command_the_socket_does_not_serve_says_so_while_an_application_holds_the_file(
    db: str,
) -> None:
    # It said the application "serves no `flowgen` command (an engine with
    # control_socket=False, or not an engine)" while that application answered ls.
    from tests.cli_process import flowgen, reap, start_app

    holder = start_app(HOLDER, db)
    try:
        assert "w-1" in flowgen("--db", db, "ls").stdout  # served over the socket
        refused = flowgen("--db", db, "check-replay", f"{__name__}:waiter")
    finally:
        reap(holder)
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 2, refused.stderr
    assert "check-replay needs the file itself" in lines[1]
    assert "serves no `flowgen` command" not in refused.stderr


@pytest.mark.parametrize(
    "argv",
    [["ls", "--name", SURROGATE], ["show", "w-1", "--run", SURROGATE]],
    ids=["ls-name", "show-run"],
)
def test_a_filter_with_a_lone_surrogate_is_named_as_over_the_socket(
    db: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # On the file it said "reading ... failed: Invalid Input Error: Python Conversion
    # Failure", where the application's socket answers that the text cannot be stored.
    err = _refused(db, argv, capsys, mentions="cannot be stored")
    assert "Conversion Failure" not in err


def test_prune_to_a_directory_name_duckdb_cannot_take_makes_and_deletes_nothing(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The export made the directory, then DuckDB refused its name (the runs were kept).
    undecodable = tmp_path / SURROGATE
    argv = ["prune", "--older-than", "1s", "--export-to", str(undecodable)]
    _refused(db, argv, capsys, mentions="lone surrogate")
    assert not undecodable.exists()


def test_a_socket_request_whose_query_is_no_text_is_a_query_error(db: str) -> None:
    # A request is JSON, so a client (not only the command line) can send any value.
    from flowgen._runtime.control import ControlError, request
    from tests.cli_process import reap, start_app

    holder = start_app(HOLDER, db)
    try:
        with pytest.raises(ControlError, match="a query is text, got int") as refused:
            request(db, "sql", query=5)
        assert refused.value.type_name == "QueryError"
        assert request(db, "sql", query="select 1 as one") is not None
    finally:
        reap(holder)


COUNTING_HOLDER = """
import sys, threading
import flowgen as fg

engine = fg.Engine(sys.argv[1])
engine.start_background()
print("ready", flush=True)
for line in sys.stdin:  # each line asks: how many requests is the socket serving?
    serving = [t for t in threading.enumerate() if t.name == "flowgen-control-request"]
    print(len(serving), flush=True)
engine.close()
"""

ENDLESS = "select count(*) from range(100000000000) t(a), range(1000) u(b)"


def test_a_query_whose_client_went_away_is_interrupted(db: str) -> None:
    # A `flowgen sql` interrupted by Ctrl-C left its query running inside the application,
    # at full CPU, for as long as it took (here: days), holding one of 8 request slots.
    import json
    import socket
    import time

    from flowgen._runtime.control import socket_path
    from tests.cli_process import reap, start_app

    holder = start_app(COUNTING_HOLDER, db)
    assert holder.stdin is not None and holder.stdout is not None

    def serving() -> int:
        holder.stdin.write("count\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        return int(holder.stdout.readline())  # type: ignore[union-attr]

    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(socket_path(db))
        client.sendall(json.dumps({"op": "sql", "query": ENDLESS}).encode() + b"\n")
        deadline = time.monotonic() + 60  # a hang guard only
        while serving() == 0:  # the request has not started yet
            assert time.monotonic() < deadline
            time.sleep(0.05)
        client.close()  # Ctrl-C
        while serving() != 0:
            assert time.monotonic() < deadline, "the abandoned query still runs"
            time.sleep(0.1)
    finally:
        reap(holder)
