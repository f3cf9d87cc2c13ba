"""Bytes round-trip as bytes everywhere, on DuckDB and on PostgreSQL.

The JSON codec used to write bytes as a base85 string, so they came back as bytes only where
the receiver had a ``bytes`` annotation; an untyped activity result, a ``dict[str, Any]``, a
signal payload to an untyped handler or a workflow result read with no hint got the string.
Now `encode` writes ``{"$bytes": "<base64>"}`` at any depth and `decode` turns it back into
``bytes`` whatever the hint; a ``bytes`` hint still reads the old base85 string, and a user
dict whose only key is ``"$bytes"`` is refused (it would come back as bytes).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import attrs
import psycopg
import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from tests.engine_workflows import events_of, snapshot

BLOB = b"\x00\xff"


@fg.activity
def raw_blob(times):  # type: ignore[no-untyped-def]  # untyped on purpose: no hint to decode by
    return BLOB * times


@fg.activity
def echo_untyped(value):  # type: ignore[no-untyped-def]  # untyped on purpose
    return value


@fg.activity
def typed_blob() -> bytes:
    return BLOB


@fg.activity
def reserved_key():  # type: ignore[no-untyped-def]
    return {"$bytes": "AP8="}


@fg.workflow
def carries_bytes(nested):  # type: ignore[no-untyped-def]  # untyped: no hint anywhere
    blob = yield from fg.call(raw_blob, 1)
    echoed = yield from fg.call(
        echo_untyped, {"blob": blob, "list": [bytearray(b"ab"), memoryview(b"cd")]}
    )
    signalled = yield from fg.wait_signal("data")
    return {"blob": blob, "echoed": echoed, "nested": nested, "signalled": signalled}


@fg.workflow
def reads_typed_blob() -> fg.Workflow[bytes]:
    return (yield from fg.call(typed_blob))


@fg.workflow
def reads_reserved_key():  # type: ignore[no-untyped-def]
    return (yield from fg.call(reserved_key))


def typed(value: object) -> object:
    """*value* with the type of every part spelled out: ``b"x" == bytearray(b"x")`` in
    Python, and a silent type change is exactly what these tests look for."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


NESTED = {"a": [BLOB, {"b": b""}], "c": b"\x80 not utf-8"}
EXPECTED = {
    "blob": BLOB,
    "echoed": {"blob": BLOB, "list": [b"ab", b"cd"]},
    "nested": NESTED,
    "signalled": {"image": b"\x89PNG"},
}


@pytest.fixture(params=["duckdb", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "bytes.duckdb")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def engines(location: str) -> Iterator[list[fg.Engine]]:
    opened: list[fg.Engine] = []
    yield opened
    for engine in opened:
        engine.close()


def open_engine(location: str, engines: list[fg.Engine]) -> fg.Engine:
    engine = fg.Engine(location, clock=ManualClock())
    engines.append(engine)
    return engine


def run_carries_bytes(engine: fg.Engine) -> object:
    handle = engine.start(carries_bytes, NESTED, id="bytes")
    handle.signal("data", {"image": b"\x89PNG"})
    return handle.result(timeout=30)


def test_bytes_arrive_as_bytes_without_any_hint(
    location: str, engines: list[fg.Engine]
) -> None:
    engine = open_engine(location, engines)
    result = run_carries_bytes(engine)
    # The first run saw bytes: the untyped activity result, nested in an argument and in
    # what an untyped activity got and gave back, in a signal payload, in the result.
    assert typed(result) == typed(EXPECTED)


def test_a_replay_from_the_recorded_history_sees_what_the_first_run_saw(
    location: str, engines: list[fg.Engine]
) -> None:
    first = open_engine(location, engines)
    result = run_carries_bytes(first)
    history = first.get("bytes").history()
    first.close()
    replayed = fg.check_replay(carries_bytes, history)
    assert replayed.status is fg.RunStatus.COMPLETED
    assert typed(replayed.result) == typed(result)
    # Read back from the store with no hint, on a reopened engine, and replayed step by step.
    again = open_engine(location, engines)
    assert typed(again.get("bytes").result(timeout=30)) == typed(EXPECTED)
    stepper = again.replay("bytes")
    stepper.goto(stepper.outcomes)
    assert typed(stepper.result) == typed(EXPECTED)


def test_bytes_are_stored_as_tagged_base64_readable_in_sql(
    location: str, engines: list[fg.Engine]
) -> None:
    engine = open_engine(location, engines)
    run_carries_bytes(engine)
    completed = events_of(engine.get("bytes"), fg.ActivityCompleted)[0]
    assert completed.value == {"$bytes": base64.b64encode(BLOB).decode()}
    # DuckDB reads a key that starts with "$" through a quoted JSON path.
    assert engine.sql(
        "select from_base64(result->>'$.blob.\"$bytes\"') from workflows "
        "where workflow_id = 'bytes'"
    ).fetchall() == [(BLOB,)]
    if location.startswith("postgresql"):
        with psycopg.connect(location) as con:
            (pg_row,) = con.execute(
                "select decode(result->'blob'->>'$bytes', 'base64') from workflows "
                "where workflow_id = 'bytes'"
            ).fetchall()
        assert pg_row == (BLOB,)


def test_a_history_recorded_with_base85_still_decodes_with_a_bytes_hint(
    location: str, engines: list[fg.Engine]
) -> None:
    engine = open_engine(location, engines)
    handle = engine.start(reads_typed_blob, id="typed")
    assert typed(handle.result(timeout=30)) == ("bytes", BLOB)
    # What an older flowgen recorded: the result as cattrs' base85 string.
    history = [
        attrs.evolve(event, value=base64.b85encode(BLOB).decode())
        if isinstance(event, fg.ActivityCompleted)
        else event
        for event in handle.history()
    ]
    replayed = fg.check_replay(reads_typed_blob, history)
    assert typed(replayed.result) == ("bytes", BLOB)


def test_a_dict_whose_only_key_is_the_bytes_tag_is_refused_naming_its_place(
    location: str, engines: list[fg.Engine]
) -> None:
    engine = open_engine(location, engines)
    engine.start(carries_bytes, {}, id="waiting")
    before = snapshot(engine.store)
    with pytest.raises(
        TypeError,
        match=r"argument 'nested' of workflow 'carries_bytes' .*at \['a'\]\[1\]",
    ):
        engine.start(carries_bytes, {"a": [1, {"$bytes": "AP8="}]}, id="never")
    with pytest.raises(TypeError, match=r"payload of signal 'data'.*'\$bytes'"):
        engine.signal("waiting", "data", {"$bytes": "AP8="})
    assert snapshot(engine.store) == before
    # With another key beside it, it is an ordinary dict.
    engine.start(carries_bytes, {"$bytes": "x", "y": 1}, id="fine")
    # An activity returning one fails that attempt as data, as any unstorable result does.
    handle = engine.start(reads_reserved_key, id="reserved")
    with pytest.raises(fg.WorkflowFailed) as failed:
        handle.result(timeout=30)
    assert "result of activity 'reserved_key'" in failed.value.error.message
    assert events_of(handle, fg.ActivityCompleted) == []
