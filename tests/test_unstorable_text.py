"""Text no store can hold (a lone surrogate) is refused before anything is written, and an
acknowledged journal record DuckDB refuses is quarantined instead of blocking the file.

``os.fsdecode`` of a file name that is not UTF-8 gives a ``str`` with a lone surrogate
(``"\\udc80"``). JSON escapes it, so it used to be acknowledged (journaled), and then DuckDB
refused the record on every later read and open: the database was bricked. Every test here
works on a real DuckDB file and reopens it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.codec import check_text, dumps, encode
from flowgen._stores.duckdb_store import DuckDBStore
from flowgen._stores.protocol import Batch, EventRow
from flowgen._vocabulary.events import SignalReceived
from tests.engine_workflows import Tools, call_one, events_of, snapshot, wait_for
from tests.test_journal import T0, abandon, start

BAD = os.fsdecode(b"report-\x80.csv")  # 'report-\udc80.csv'


def test_os_fsdecode_gives_a_lone_surrogate() -> None:
    assert "\udc80" in BAD


# ---------------------------------------------------------------------------------------------
# The codec refuses it, naming the place.


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (BAD, ""),
        ([1, BAD], "at [1]"),
        ({"file": BAD}, "at ['file']"),
        ({BAD: 1}, "key"),
        ({"a": [{"b": BAD}]}, "at ['a'][0]['b']"),
    ],
)
def test_encode_refuses_a_lone_surrogate_naming_the_place(
    value: object, where: str
) -> None:
    with pytest.raises(TypeError, match=r"argument 'path'.*lone surrogate") as refused:
        encode(value, "argument 'path'")
    assert where in str(refused.value)


def test_text_with_real_non_ascii_characters_still_round_trips() -> None:
    value = {"naïve": ["日本", "😀", "\\udc80 (a backslash, not a surrogate)"]}
    assert encode(value) == value
    assert json.loads(dumps(value)) == value  # type: ignore[arg-type]


def test_check_text_and_dumps_refuse_a_lone_surrogate() -> None:
    with pytest.raises(TypeError, match="the signal name cannot be stored"):
        check_text(BAD, "the signal name")
    with pytest.raises(TypeError, match="lone surrogate"):
        dumps({"k": [BAD]})
    assert check_text("fine", "x") == "fine"


# ---------------------------------------------------------------------------------------------
# The engine refuses it before anything is written; the file keeps working.


@pytest.fixture
def tools() -> Tools:
    return Tools()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "text.duckdb")


@pytest.fixture
def engine(db: str, tools: Tools) -> Iterator[fg.Engine]:
    engine = fg.Engine(db, clock=ManualClock(), activities=[tools])
    engine.start(wait_for, "go", id="running")
    yield engine
    engine.close()


def reopen_and_read(db: str, tools: Tools) -> None:
    """The file opens, reads and takes new work after the refusal."""
    with fg.Engine(db, clock=ManualClock(), activities=[tools]) as again:
        assert {r.workflow_id for r in again.list_runs()} >= {"running"}
        again.signal("running", "go", "ok")
        assert again.get("running").result(timeout=30) == ["ok"]


def test_a_lone_surrogate_in_a_signal_name_or_payload_is_refused(
    engine: fg.Engine, db: str, tools: Tools
) -> None:
    before = snapshot(engine.store)
    with pytest.raises(TypeError, match="the signal name cannot be stored"):
        engine.signal("running", BAD, 1)
    with pytest.raises(TypeError, match=r"payload of signal 'go'.*lone surrogate"):
        engine.signal("running", "go", {"file": BAD})
    with pytest.raises(TypeError, match="the signal name cannot be stored"):
        engine.signal_with_start(wait_for, "go", id="new", signal=BAD, payload=1)
    assert snapshot(engine.store) == before
    engine.close()
    reopen_and_read(db, tools)


def test_a_lone_surrogate_in_an_argument_or_a_tag_is_refused(
    engine: fg.Engine, db: str, tools: Tools
) -> None:
    before = snapshot(engine.store)
    with pytest.raises(TypeError, match="argument 'name' of workflow 'wait_for'"):
        engine.start(wait_for, BAD, id="never")
    with pytest.raises(TypeError, match=r"tag 'file'.*lone surrogate"):
        engine.start(wait_for, "go", id="never", tags={"file": BAD})
    with pytest.raises(TypeError, match="a tag name cannot be stored"):
        engine.start(wait_for, "go", id="never", tags={BAD: 1})
    assert snapshot(engine.store) == before
    engine.close()
    reopen_and_read(db, tools)


def test_a_lone_surrogate_in_a_cancel_reason_is_refused(
    engine: fg.Engine, db: str, tools: Tools
) -> None:
    before = snapshot(engine.store)
    with pytest.raises(TypeError, match="the cancel reason cannot be stored"):
        engine.cancel("running", BAD)
    assert snapshot(engine.store) == before
    engine.close()
    reopen_and_read(db, tools)


@fg.activity
def listing(key: str) -> list[str]:
    """What os.fsdecode made of a directory listing."""
    return [key, BAD]


@fg.workflow
def lists() -> fg.Workflow[list[str]]:
    return (yield from fg.call(listing, "k"))


def test_an_activity_result_with_a_lone_surrogate_fails_that_attempt_as_data(
    db: str, tools: Tools
) -> None:
    with fg.Engine(db, clock=ManualClock(), activities=[tools]) as engine:
        handle = engine.start(lists, id="lists")
        with pytest.raises(fg.WorkflowFailed) as failed:
            handle.result(timeout=30)
        assert "result of activity 'listing'" in failed.value.error.message
        assert "lone surrogate" in failed.value.error.message
        (final,) = events_of(handle, fg.ActivityFailed)
        assert final.error.type == "TypeError"
        assert events_of(handle, fg.ActivityCompleted) == []
    with DuckDBStore(db) as store:  # the file opens, and holds the failure
        assert store.get_run("lists").status == "failed"  # type: ignore[union-attr]


def test_call_one_still_works_after_a_refusal(db: str, tools: Tools) -> None:
    with fg.Engine(db, clock=ManualClock(), activities=[tools]) as engine:
        with pytest.raises(TypeError):
            engine.start(call_one, BAD, "k", id="never")
        assert engine.start(call_one, "work", "k").result(timeout=30) == "done k"


# ---------------------------------------------------------------------------------------------
# The store's own gate, and the quarantine.


def signal_batch(workflow_id: str, run_id: str, event_id: int, name: str) -> Batch:
    return Batch(
        events=[EventRow(workflow_id, run_id, event_id, SignalReceived(T0, name, 1, 0))]
    )


def test_the_store_refuses_a_batch_with_a_lone_surrogate_naming_the_event(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.duckdb"
    with DuckDBStore(db) as store:
        store.commit(start("wf", "run-1"))
        with pytest.raises(TypeError, match=r"event 1 \(SignalReceived\) of run run-1"):
            store.commit(signal_batch("wf", "run-1", 1, BAD))
        store.commit(signal_batch("wf", "run-1", 1, "fine"))  # nothing was written
    with DuckDBStore(db) as store:
        assert [e.name for e in store.load_history("wf", "run-1")[1:]] == ["fine"]  # type: ignore[attr-defined]


def journal_a_refused_record(db: Path) -> None:
    """Leave *db* as an older flowgen did: two starts and, between them, an acknowledged
    signal DuckDB refuses (a lone surrogate), all in the journal only (kill -9)."""
    store = DuckDBStore(db)
    store.commit(start("wf-1", "run-1"))
    plan = store._plan(signal_batch("wf-1", "run-1", 1, "x"))
    # What the journal of an older flowgen held: the row, with the surrogate, acknowledged.
    row = list(plan.event_rows[0])
    row[5] = BAD
    plan.event_rows[0] = tuple(row)
    store._journal_plan(plan)
    store.commit(start("wf-3", "run-3"))
    abandon(store)


def test_an_acknowledged_record_duckdb_refuses_is_quarantined_and_the_rest_applied(
    tmp_path: Path,
) -> None:
    db = tmp_path / "q.duckdb"
    journal_a_refused_record(db)
    store = DuckDBStore(db)  # used to fail here, and on every later open
    try:
        assert store.quarantined and store.quarantined[0][0] == 2
        assert {r.workflow_id for r in store.list_runs()} == {"wf-1", "wf-3"}
        assert len(store.load_history("wf-1", "run-1")) == 1
        store.commit(start("wf-4", "run-4"))  # and it keeps working
    finally:
        store.close()
    (kept,) = sorted(Path(f"{db}.quarantine").iterdir())
    assert kept.name == "record-2.json"
    content = json.loads(kept.read_text())
    assert content["record"] == 2
    assert "surrogate" in content["reason"]
    assert content["body"][1][0][:3] == ["wf-1", "run-1", 1]
    with DuckDBStore(db) as store:  # reopens cleanly; nothing quarantined again
        assert store.quarantined == []
        assert len(store.list_runs()) == 3


@fg.activity(retry=fg.RetryPolicy(max_attempts=2, initial_interval=0.01))
def open_report() -> None:
    raise FileNotFoundError(f"no such file: {BAD}")


@fg.workflow
def reports() -> fg.Workflow[None]:
    yield from fg.call(open_report)


def test_an_activity_error_naming_a_non_utf8_file_fails_the_run_cleanly(
    db: str,
) -> None:
    # Its message held a lone surrogate: the failure was refused by the store on every
    # retry of the batch, and the run never ended. It is kept escaped instead.
    with fg.Engine(db) as engine:
        handle = engine.start(reports, id="reports")
        with pytest.raises(fg.WorkflowFailed) as failed:
            handle.result(timeout=30)
        assert "no such file: report-\\udc80.csv" in str(failed.value)
        assert [e.attempt for e in events_of(handle, fg.ActivityAttemptFailed)] == [1]
    with DuckDBStore(db) as store:
        record = store.get_run("reports")
        assert record is not None and record.status == "failed"


@fg.workflow(name="tests.unstorable.waits_on_a_bad_name")
def waits_on_a_bad_name() -> fg.Workflow[object]:
    return (yield fg.wait_signal(BAD))


@fg.workflow(name="tests.unstorable.tags_a_bad_name")
def tags_a_bad_name() -> fg.Workflow[None]:
    yield fg.set_tags(**{BAD: 1})


@fg.workflow(name="tests.unstorable.signals_a_bad_name")
def signals_a_bad_name() -> fg.Workflow[None]:
    yield fg.send_signal("elsewhere", BAD)


@pytest.mark.parametrize(
    "workflow", [waits_on_a_bad_name, tags_a_bad_name, signals_a_bad_name]
)
def test_a_name_with_a_lone_surrogate_in_workflow_code_fails_that_run(
    db: str, engine: fg.Engine, tools: Tools, workflow: object
) -> None:
    # The name comes from the workflow's own code: refused where the command is built,
    # the run fails with a TypeError as data, and the file and other runs go on. (The
    # store refused the batch instead, and the engine retried it forever.)
    handle = engine.start(workflow)  # type: ignore[arg-type]
    with pytest.raises(fg.WorkflowFailed) as failed:
        handle.result()
    assert failed.value.error.type == "TypeError"
    assert "surrogate" in failed.value.error.message
    engine.close()
    reopen_and_read(db, tools)
