"""Bad input gets a clear flowgen error and changes nothing.

Each test snapshots the store (every run and every history) before the bad call and checks
it after. The file-level errors (a locked, foreign, newer or corrupt file) are tested here
through ``fg.Engine(path)``; the DuckDB store's own tests cover the store directly.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowgen as fg
import flowgen.testing
from flowgen._runtime.clock import ManualClock
from tests.engine_workflows import (
    Tools,
    call_one,
    events_of,
    snapshot,
    steps,
    wait_for,
)

UNSERIALIZABLE = threading.Lock()


@pytest.fixture
def tools() -> Tools:
    return Tools()


@pytest.fixture
def engine(tmp_path: Path, tools: Tools) -> Iterator[fg.Engine]:
    engine = fg.Engine(
        str(tmp_path / "bad.duckdb"), clock=ManualClock(), activities=[tools]
    )
    engine.start(wait_for, "go", id="running")
    finished = engine.start(steps, ["a"], id="finished")
    assert finished.result() == ["done a"]
    yield engine
    engine.close()


# ---------------------------------------------------------------------------------------------
# Unknown names and ids.


def test_starting_an_unknown_workflow_name_raises_unknown_workflow(
    engine: fg.Engine,
) -> None:
    before = snapshot(engine.store)
    with pytest.raises(fg.UnknownWorkflow, match=r"'nope'.*Engine\(workflows="):
        engine.start("nope")
    assert snapshot(engine.store) == before


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.get("ghost"),
        lambda e: e.signal("ghost", "go", 1),
        lambda e: e.cancel("ghost"),
        lambda e: e.query("ghost", "progress"),
    ],
    ids=["get", "signal", "cancel", "query"],
)
def test_an_unknown_id_raises_unknown_workflow(engine: fg.Engine, call: object) -> None:
    before = snapshot(engine.store)
    with pytest.raises(fg.UnknownWorkflow, match="'ghost'"):
        call(engine)  # type: ignore[operator]
    assert snapshot(engine.store) == before


@pytest.mark.parametrize(
    ("bad", "error", "says"),
    [
        ("", ValueError, "empty"),
        (5, TypeError, "must be a str, got int"),
        ("order-\udc80", TypeError, "surrogate"),  # os.fsdecode of a non-UTF-8 name
    ],
    ids=["empty", "not-a-str", "surrogate"],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda e, i: e.start(steps, ["a"], id=i),
        lambda e, i: e.signal_with_start(wait_for, "go", id=i, signal="go"),
        lambda e, i: e.get(i),
        lambda e, i: e.signal(i, "go", 1),
        lambda e, i: e.cancel(i),
        lambda e, i: e.query(i, "progress"),
    ],
    ids=["start", "signal_with_start", "get", "signal", "cancel", "query"],
)
def test_a_bad_workflow_id_is_refused_naming_it_before_anything_is_written(
    engine: fg.Engine, call: object, bad: object, error: type[Exception], says: str
) -> None:
    # Issue 10 item 7: an id that is no text, or text no store can hold, got a StoreError
    # from deep in a read (and an empty id quietly started a run under a fresh id).
    before = snapshot(engine.store)
    with pytest.raises(error, match=f"workflow id.*{says}"):
        call(engine, bad)  # type: ignore[operator]
    assert snapshot(engine.store) == before


def test_unknown_workflow_is_also_a_lookup_error(engine: fg.Engine) -> None:
    with pytest.raises(LookupError):
        engine.get("ghost")


# ---------------------------------------------------------------------------------------------
# Values that cannot be serialized.


def test_a_non_serializable_argument_raises_type_error_naming_it_and_writes_nothing(
    engine: fg.Engine,
) -> None:
    before = snapshot(engine.store)
    with pytest.raises(TypeError, match="argument 'keys' of workflow 'steps'"):
        engine.start(steps, [UNSERIALIZABLE], id="never")
    with pytest.raises(TypeError, match="argument 'keys'"):
        engine.start(steps, keys=UNSERIALIZABLE, id="never")
    with pytest.raises(TypeError, match="tag 'owner'"):
        engine.start(steps, [], id="never", tags={"owner": UNSERIALIZABLE})
    assert snapshot(engine.store) == before
    with pytest.raises(fg.UnknownWorkflow):
        engine.get("never")


def test_arguments_the_workflow_cannot_take_are_refused_before_anything_is_written(
    engine: fg.Engine,
) -> None:
    # They used to be acknowledged, and the run then failed with the TypeError as data.
    before = snapshot(engine.store)
    with pytest.raises(TypeError, match="workflow 'steps' cannot take these arguments"):
        engine.start(steps, id="never")
    with pytest.raises(TypeError, match="too many positional arguments"):
        engine.start(steps, ["a"], ["b"], id="never")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        engine.start(steps, ["a"], colour="red", id="never")
    with pytest.raises(TypeError, match="workflow 'steps' cannot take"):
        engine.signal_with_start(steps, id="never", signal="go")
    assert snapshot(engine.store) == before
    with pytest.raises(fg.UnknownWorkflow):
        engine.get("never")


def test_a_non_serializable_signal_payload_raises_type_error_and_writes_nothing(
    engine: fg.Engine,
) -> None:
    before = snapshot(engine.store)
    with pytest.raises(TypeError, match="payload of signal 'go'"):
        engine.signal("running", "go", UNSERIALIZABLE)
    with pytest.raises(TypeError, match="payload of signal 'go'"):
        engine.signal_with_start(
            wait_for, "go", id="new", signal="go", payload=UNSERIALIZABLE
        )
    assert snapshot(engine.store) == before


def test_a_non_serializable_activity_result_fails_the_activity_clearly_and_once(
    engine: fg.Engine, tools: Tools
) -> None:
    handle = engine.start(call_one, "unserializable", "k", id="bad-result")
    with pytest.raises(fg.WorkflowFailed) as failed:
        handle.result()
    message = failed.value.error.message
    assert "result of activity 'Tools.unserializable' cannot be serialized" in message
    (final,) = events_of(handle, fg.ActivityFailed)
    assert final.error.type == "TypeError"
    assert final.error.non_retryable
    assert events_of(handle, fg.ActivityCompleted) == []
    # Running it again would only repeat its side effects: it ran once.
    assert len(tools.runs_of("unserializable")) == 1


# ---------------------------------------------------------------------------------------------
# Finished runs and misuse.


def test_a_signal_to_a_finished_run_raises_workflow_closed(engine: fg.Engine) -> None:
    before = snapshot(engine.store)
    with pytest.raises(fg.WorkflowClosed, match="'finished' has finished"):
        engine.signal("finished", "go", 1)
    with pytest.raises(fg.WorkflowClosed):
        engine.get("finished").signal("go")
    with pytest.raises(fg.WorkflowClosed):
        engine.cancel("finished")
    assert snapshot(engine.store) == before


def test_wrong_arguments_raise_value_or_type_errors_naming_them(
    engine: fg.Engine,
) -> None:
    before = snapshot(engine.store)
    with pytest.raises(ValueError, match="on_conflict"):
        engine.start(steps, [], on_conflict="replace")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="signal name"):
        engine.signal("running", "", 1)
    assert snapshot(engine.store) == before
    with pytest.raises(ValueError, match="cache_size"):
        fg.Engine(store=engine.store, cache_size=0)
    with pytest.raises(ValueError, match="max_workers"):
        fg.Engine(store=engine.store, max_workers=0)


def test_a_closed_engine_refuses_calls(tmp_path: Path) -> None:
    engine = fg.Engine(str(tmp_path / "closed.duckdb"), clock=ManualClock())
    engine.close()
    with pytest.raises(fg.UsageError, match="closed"):
        engine.start(steps, [])
    with pytest.raises(fg.UsageError, match="closed"):
        engine.start_background()
    engine.close()  # closing twice is fine


def test_run_until_idle_in_a_background_engine_is_a_usage_error(
    tmp_path: Path,
) -> None:
    with (
        fg.Engine(str(tmp_path / "bg.duckdb")) as engine,
        pytest.raises(fg.UsageError, match="run_until_idle"),
    ):
        engine.run_until_idle()


# ---------------------------------------------------------------------------------------------
# Files: one writer process, foreign files, other schema versions, corruption.

OPEN_IN_CHILD = """
import json, sys
import flowgen as fg
import flowgen.testing
try:
    fg.Engine(sys.argv[1]).close()
except Exception as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({"type": None}))
"""


def open_in_another_process(path: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", OPEN_IN_CHILD, path],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_second_process_opening_the_file_gets_store_locked_error(
    engine: fg.Engine,
) -> None:
    before = snapshot(engine.store)
    error = open_in_another_process(engine.path)
    assert error["type"] == "StoreLockedError"
    assert "one process" in error["message"]
    assert "engine.sql" in error["message"]  # how to read while it runs
    assert snapshot(engine.store) == before
    # The holder carries on undisturbed.
    engine.signal("running", "go", "still here")
    assert engine.get("running").result() == ["still here"]


def test_after_the_holder_closes_another_process_may_open_the_file(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "handover.duckdb")
    fg.Engine(path, clock=ManualClock()).close()
    assert open_in_another_process(path) == {"type": None}


def test_a_duckdb_file_of_another_program_is_not_a_flowgen_database(
    tmp_path: Path,
) -> None:
    import duckdb

    path = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE invoices (id INTEGER, total DOUBLE)")
    con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    con.close()
    before = path.read_bytes()
    with pytest.raises(fg.NotAFlowgenDatabase, match="invoices"):
        fg.Engine(str(path))
    assert path.read_bytes() == before
    con = duckdb.connect(str(path))
    assert con.execute("SELECT * FROM invoices").fetchall() == [(1, 9.5)]
    con.close()


@pytest.mark.parametrize(
    "content",
    [b"just some text\n" * 100, b"\x00" * 4096, b"SQLite format 3\x00" + b"\x00" * 200],
    ids=["text", "zeros", "sqlite"],
)
def test_a_file_that_is_not_a_database_is_refused(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "not-a-db.duckdb"
    path.write_bytes(content)
    with pytest.raises(fg.NotAFlowgenDatabase, match="not a flowgen database"):
        fg.Engine(str(path))
    assert path.read_bytes() == content


def test_a_file_written_by_a_newer_schema_version_is_refused_unchanged(
    tmp_path: Path,
) -> None:
    import duckdb

    path = tmp_path / "newer.duckdb"
    engine = fg.Engine(str(path), clock=ManualClock())
    engine.start(wait_for, "go", id="from-the-future")
    engine.close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE flowgen_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    before = path.read_bytes()
    with pytest.raises(fg.SchemaVersionError, match=r"999.*newer flowgen"):
        fg.Engine(str(path))
    assert path.read_bytes() == before


def test_a_corrupt_flowgen_file_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.duckdb"
    engine = fg.Engine(str(path), clock=ManualClock())
    for i in range(20):
        engine.start(wait_for, "go", id=f"w-{i}")
    engine.close()
    data = bytearray(path.read_bytes())
    # Scribble over the database header and the first blocks.
    for offset in range(0, min(len(data), 64 * 1024), 7):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    wal = Path(str(path) + ".wal")
    if wal.exists():
        wal.unlink()
    with pytest.raises(fg.StoreError) as error:
        fg.Engine(str(path))
    assert isinstance(error.value, (fg.NotAFlowgenDatabase, fg.SchemaVersionError))
    assert path.read_bytes() == bytes(data)


# ---------------------------------------------------------------------------------------------
# A command built by hand with a duration too long for any clock (issue 10, item 3).


@fg.workflow(name="bad_input.hand_built_timer")
def hand_built_timer() -> Any:
    try:
        yield fg.StartTimer(1e300)  # fg.sleep refuses it; the command itself allows it
    except ValueError as exc:
        yield fg.sleep(1)  # the seq the refused timer gave back
        return f"caught: {exc}"
    return "slept"


@fg.workflow(name="bad_input.hand_built_wait")
def hand_built_wait() -> Any:
    yield fg.gather(fg.StartTimer(1), fg.WaitSignal("go", timeout=1e300))


def test_a_hand_built_timer_too_long_is_thrown_into_the_workflow_where_it_is_yielded(
    tmp_path: Path,
) -> None:
    # It overflowed the interpreter (OverflowError from timedelta), which failed the run
    # with an error naming nothing the user wrote.
    engine = fg.Engine(str(tmp_path / "t.duckdb"), clock=ManualClock())
    try:
        handle = engine.start(hand_built_timer)
        engine.run_until_idle()
        assert handle.result(timeout=10) == (
            "caught: a timer must be at most 3155760000 s (100 years), got 1e+300"
        )
        # Nothing was recorded for the refused timer: the sleep after it took its seq.
        assert [e.seq for e in events_of(handle, fg.TimerStarted)] == [0]
        fg.testing.assert_replays(hand_built_timer, handle.history())

        failing = engine.start(hand_built_wait)
        engine.run_until_idle()
        with pytest.raises(fg.WorkflowFailed, match="a signal wait's timeout must be"):
            failing.result(timeout=10)
        # The gather as a whole was refused: none of its branches was recorded.
        assert events_of(failing, fg.TimerStarted) == []
        assert events_of(failing, fg.SignalWaitStarted) == []
    finally:
        engine.close()


# ---------------------------------------------------------------------------------------------
# An activity called directly inside a workflow (issue 10, item 7).


@fg.activity(name="bad_input.charge")
def charge(amount: int) -> int:
    return amount * 100


@fg.activity(name="bad_input.refund")
async def refund(amount: int) -> int:
    return -amount


@fg.workflow(name="bad_input.calls_directly")
def calls_directly() -> Any:
    cents = charge(5)  # forgot `yield fg.call(...)`: ran inline, on every replay
    yield fg.sleep(1)
    return cents


@fg.workflow(name="bad_input.calls_properly")
def calls_properly() -> Any:
    cents = yield fg.call(charge, 5)
    back = yield fg.call(refund, 5)
    return cents + back


def test_an_activity_called_directly_inside_a_workflow_fails_the_run_naming_it(
    tmp_path: Path,
) -> None:
    engine = fg.Engine(str(tmp_path / "direct.duckdb"), clock=ManualClock())
    try:
        handle = engine.start(calls_directly)
        engine.run_until_idle()
        with pytest.raises(fg.WorkflowFailed) as info:
            handle.result(timeout=10)
        message = str(info.value)
        assert "UsageError" in message
        assert "activity 'bad_input.charge' was called directly inside a workflow" in (
            message
        )
        assert "yield fg.call(charge, ...)" in message
        assert events_of(handle, fg.TimerStarted) == []  # it failed where it called
        # Through the engine, and directly outside a workflow, they are plain calls.
        assert engine.start(calls_properly).result(timeout=10) == 495
    finally:
        engine.close()
    assert charge(1) == 100
    assert charge.__name__ == "charge"
    assert asyncio.run(refund(2)) == -2
