"""DuckDBStore on real files: round trips, atomic group commits, views, bad files, threads.

The behaviour shared with MemoryStore is in test_store_contract.py; this file covers what
only a database has: the schema (a snapshot, so a change is deliberate), SQL views, files
that are not ours, the single-writer lock, transactions and concurrent cursors.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import duckdb
import pytest
from hypothesis import given, settings, strategies as st

from flowgen._stores import duckdb_schema
from flowgen._stores.duckdb_store import SCHEMA_VERSION, TABLES, VIEWS, DuckDBStore
from flowgen._stores.protocol import Batch, EventRow, RunUpdate, WorkflowRecord
from flowgen._vocabulary.errors import (
    ErrorInfo,
    HistoryCorruptError,
    NotAFlowgenDatabase,
    SchemaVersionError,
    StoreError,
    StoreLockedError,
)
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityHeartbeat,
    ActivityResultIgnored,
    ActivityScheduled,
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    CommandCancelled,
    Event,
    SideEffectRecorded,
    SignalReceived,
    SignalSendFailed,
    SignalSent,
    SignalTimedOut,
    SignalWaitStarted,
    TagsSet,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
    UpdateErrored,
    VersionMarked,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
    WorkflowStarted,
    WorkflowTerminated,
)
from tests.strategies import events as any_event

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(workflow_id: str, run_id: str, **changes: Any) -> WorkflowRecord:
    base = WorkflowRecord(workflow_id, run_id, "order", "running", ["o-1"], {}, T0)
    return attrs.evolve(base, **changes)


def start_batch(workflow_id: str, run_id: str, events: list[Event]) -> Batch:
    """A batch creating the run and its first events."""
    return Batch(
        runs=[record(workflow_id, run_id)],
        events=[EventRow(workflow_id, run_id, i, e) for i, e in enumerate(events)],
    )


def started(workflow_id: str = "wf", run_id: str = "run-1") -> WorkflowStarted:
    return WorkflowStarted(T0, workflow_id, run_id, "order", ["o-1"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(store: DuckDBStore, query: str) -> list[tuple[Any, ...]]:
    return store.sql(query).fetchall()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "flowgen.duckdb"


@pytest.fixture(params=[True, False], ids=["journal", "direct"])
def store(db_path: Path, request: pytest.FixtureRequest) -> Any:
    # Every store test runs both ways a store commits: through its journal (the default)
    # and straight into DuckDB, one transaction per batch.
    s = DuckDBStore(db_path, journal=request.param)
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------
# Every event kind, through a file and back.

ERROR = ErrorInfo("CardDeclined", "no funds", True, 2, "Traceback ...")

ONE_OF_EACH: list[Event] = [
    WorkflowStarted(T0, "wf", "run-1", "order", ["o-1", 2.5], {"rush": True}, "parent"),
    ActivityScheduled(at(1), 0, "charge", ["o-1", {"amount": 10}], {"currency": "EUR"}),
    ActivityHeartbeat(at(1.8), 0, 1, {"rows": 7}),
    ActivityResultIgnored(
        at(2), 0, 1, "activity_completed", "reported after its timeout"
    ),
    ActivityAttemptFailed(at(2), 0, ERROR, 1, at(3), at(1.5)),
    ActivityCompleted(at(4), 0, {"receipt": "r-1"}, 2, at(3.5)),
    ActivityScheduled(at(4), 1, "ship", []),
    ActivityFailed(at(5), 1, ERROR, 1, None),
    TimerStarted(at(5), 2, at(65)),
    TimerFired(at(65), 2),
    SignalWaitStarted(at(65), 3, "approve", at(3600)),
    SignalReceived(at(70), "approve", [True, None, "é😀"], 0, "boss/4"),
    SignalWaitStarted(at(70), 4, "late", None),
    SignalTimedOut(at(80), 4),
    SideEffectRecorded(at(80), 5, "uuid", "0b6f"),
    VersionMarked(at(80), "new-shipping", 2),
    SignalSent(at(80), 6, "greeter-1", "greet"),
    SignalSendFailed(at(81), 7, "gone-1", "greet", ERROR),
    ChildStarted(at(81), 8, "invoice", "invoice-1", [1], {"k": "v"}),
    ChildCompleted(at(90), 8, "invoice-1", 3),
    ChildStarted(at(90), 9, "invoice", "invoice-2"),
    ChildFailed(at(95), 9, "invoice-2", ERROR),
    TagsSet(at(95), {"stage": "shipped", "n": 1}),
    CommandCancelled(at(96), 10, "race"),
    UpdateAccepted(at(96), "u-1", "add_item", ["apple", {"n": 2}]),
    UpdateCompleted(at(96), "u-1", "add_item", {"count": 1}),
    UpdateErrored(at(96), "u-2", "remove", ERROR),
    CancelRequested(at(97), "user asked"),
    WorkflowCancelled(at(98), ErrorInfo("Cancelled", "user asked")),
    WorkflowCompleted(at(99), {"total": 12.5}),
    WorkflowErrored(at(99), ERROR),
    WorkflowContinuedAsNew(at(99), [2], {}),
    WorkflowTerminated(at(100), "admin"),
]


def test_the_samples_cover_every_event_kind() -> None:
    assert {type(e) for e in ONE_OF_EACH} == set(EVENT_TAGS)


def test_every_event_kind_round_trips_through_a_file(db_path: Path) -> None:
    with DuckDBStore(db_path) as store:
        store.commit(start_batch("wf", "run-1", ONE_OF_EACH))
    with DuckDBStore(db_path) as store:
        assert store.load_history("wf", "run-1") == ONE_OF_EACH
        stored = rows(
            store,
            "select event_id, seq, kind, name, attempt, epoch_us(recorded_at) "
            "from events order by event_id",
        )
    for (event_id, seq, kind, name, attempt, recorded_us), event in zip(
        stored, ONE_OF_EACH, strict=True
    ):
        assert kind == EVENT_TAGS[type(event)]
        assert seq == getattr(event, "seq", None)
        assert attempt == getattr(event, "attempt", None)
        expected_name = (
            event.change_id
            if isinstance(event, VersionMarked)
            else getattr(event, "name", None)
        )
        assert name == expected_name, event_id
        assert recorded_us == (event.at - datetime(1970, 1, 1, tzinfo=UTC)) // (
            timedelta(microseconds=1)
        )


@pytest.fixture(scope="module")
def shared_store() -> Any:
    s = DuckDBStore(":memory:")
    yield s
    s.close()


_run_numbers = itertools.count()


@settings(max_examples=40)
@given(st.lists(any_event, min_size=1, max_size=8))
def test_any_events_round_trip_losslessly(
    shared_store: DuckDBStore, events: list[Event]
) -> None:
    # Odd time zones, unicode, big integers and nested payloads: the payload column keeps
    # the codec's text verbatim, so what comes back is equal, offsets included.
    run_id = f"run-{next(_run_numbers)}"
    shared_store.commit(start_batch("wf", run_id, events))
    loaded = shared_store.load_history("wf", run_id)
    assert loaded == events
    assert [e.at.utcoffset() for e in loaded] == [e.at.utcoffset() for e in events]


# ---------------------------------------------------------------------------------------------
# Group commit, refusals, rollback.


def test_group_commit_writes_several_runs_in_one_transaction(
    store: DuckDBStore,
) -> None:
    batch = Batch()
    for i in range(3):
        batch.extend(
            start_batch(f"wf-{i}", f"run-{i}", [started(f"wf-{i}", f"run-{i}")])
        )
    store.commit(batch)
    step = Batch()
    for i in range(3):  # interleaved across runs, as the engine gathers them
        step.events.append(
            EventRow(f"wf-{i}", f"run-{i}", 1, ActivityScheduled(at(1), 0, "charge"))
        )
    for i in range(3):
        step.events.append(
            EventRow(f"wf-{i}", f"run-{i}", 2, ActivityCompleted(at(2), 0, i))
        )
        step.updates.append(RunUpdate(f"wf-{i}", f"run-{i}", tags={"i": i}))
    store.commit(step)
    for i in range(3):
        history = store.load_history(f"wf-{i}", f"run-{i}")
        assert [type(e) for e in history] == [
            WorkflowStarted,
            ActivityScheduled,
            ActivityCompleted,
        ]
        run = store.get_run(f"wf-{i}")
        assert run is not None
        assert run.tags == {"i": i}


def snapshot(store: DuckDBStore) -> tuple[list[tuple[Any, ...]], ...]:
    return (
        rows(store, "select * from workflows order by run_id"),
        rows(store, "select * from events order by run_id, event_id"),
    )


@pytest.mark.parametrize(
    ("event_id", "why"),
    [(3, "gap"), (1, "duplicate"), (0, "restart")],
)
def test_a_batch_that_breaks_numbering_changes_nothing(
    store: DuckDBStore, event_id: int, why: str
) -> None:
    store.commit(start_batch("wf", "run-1", [started(), TimerStarted(at(1), 0, at(9))]))
    before = snapshot(store)
    bad = start_batch("wf-2", "run-2", [started("wf-2", "run-2")])
    bad.events.append(EventRow("wf", "run-1", event_id, TimerFired(at(9), 0)))
    bad.updates.append(RunUpdate("wf", "run-1", status="completed"))
    with pytest.raises(HistoryCorruptError, match=f"event_id {event_id} appended"):
        store.commit(bad)
    assert snapshot(store) == before
    # The refusal did not disturb the numbering: the right next event still goes in.
    store.commit(Batch(events=[EventRow("wf", "run-1", 2, TimerFired(at(9), 0))]))
    assert len(store.load_history("wf", "run-1")) == 3


def test_events_or_updates_for_an_unknown_run_are_refused(store: DuckDBStore) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    before = snapshot(store)
    with pytest.raises(HistoryCorruptError, match="unknown run"):
        store.commit(Batch(events=[EventRow("wf", "nope", 0, started("wf", "nope"))]))
    with pytest.raises(HistoryCorruptError, match="unknown run"):
        store.commit(Batch(updates=[RunUpdate("other-wf", "run-1", status="failed")]))
    assert snapshot(store) == before


def test_the_same_batch_twice_fails_without_duplicate_rows(store: DuckDBStore) -> None:
    batch = start_batch("wf", "run-1", [started(), ActivityScheduled(at(1), 0, "x")])
    store.commit(batch)
    before = snapshot(store)
    with pytest.raises(HistoryCorruptError):
        store.commit(batch)
    assert snapshot(store) == before
    assert rows(store, "select count(*) from events") == [(2,)]


def test_a_failure_inside_the_transaction_rolls_everything_back(
    db_path: Path,
) -> None:
    store = DuckDBStore(db_path, journal=False)
    try:
        store.commit(start_batch("wf", "run-1", [started()]))
        # A row written behind the store's back (raw SQL), so only DuckDB's primary key
        # knows: the batch's new run goes in, then its events hit the key; all must go.
        store.sql(
            "insert into events select 'wf-2', 'run-2', 0, seq, kind, name, payload, "
            "attempt, recorded_at from events where run_id = 'run-1'"
        ).fetchall()
        before = snapshot(store)
        batch = start_batch("wf-2", "run-2", [started("wf-2", "run-2")])
        batch.events.append(EventRow("wf", "run-1", 1, TimerStarted(at(1), 0, at(2))))
        with pytest.raises(HistoryCorruptError, match="already stored"):
            store.commit(batch)
        assert snapshot(store) == before
        # Nothing of it is remembered either: the same event id is still the next one.
        store.commit(Batch(events=batch.events[1:]))
        assert len(store.load_history("wf", "run-1")) == 2
    finally:
        store.close()


def test_a_status_the_table_would_refuse_is_refused_before_anything_is_written(
    store: DuckDBStore,
) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    before = snapshot(store)
    batch = start_batch("wf-2", "run-2", [started("wf-2", "run-2")])
    batch.events.append(EventRow("wf", "run-1", 1, TimerStarted(at(1), 0, at(2))))
    batch.updates.append(RunUpdate("wf", "run-1", status="exploded"))
    with pytest.raises(StoreError, match="status 'exploded' is not one of"):
        store.commit(batch)
    with pytest.raises(StoreError, match="status 'paused' is not one of"):
        store.commit(Batch(runs=[record("wf-3", "run-3", status="paused")]))
    assert snapshot(store) == before
    batch.updates.clear()
    store.commit(batch)
    assert len(store.load_history("wf", "run-1")) == 2
    assert len(store.load_history("wf-2", "run-2")) == 1


def test_naive_datetimes_are_refused_before_anything_is_written(
    store: DuckDBStore,
) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        store.commit(
            Batch(runs=[record("wf", "run-1", started_at=datetime(2026, 3, 1, 12))])
        )
    assert snapshot(store) == ([], [])


def test_the_primary_key_catches_a_writer_the_cache_cannot_see(db_path: Path) -> None:
    # Two stores on one file take journal=False: a journaled store locks its journal.
    first = DuckDBStore(db_path, journal=False)
    second = DuckDBStore(db_path, journal=False)  # DuckDB shares one database instance
    try:
        first.commit(start_batch("wf", "run-1", [started()]))
        assert second.load_history("wf", "run-1") == [started()]  # caches "next is 1"
        first.commit(
            Batch(events=[EventRow("wf", "run-1", 1, TimerStarted(at(1), 0, at(2)))])
        )
        stale = Batch(
            events=[EventRow("wf", "run-1", 1, TimerStarted(at(1), 0, at(3)))]
        )
        with pytest.raises(HistoryCorruptError, match="already stored"):
            second.commit(stale)
        # The failure dropped the stale entry: the truth is read again.
        second.commit(Batch(events=[EventRow("wf", "run-1", 2, TimerFired(at(2), 0))]))
        assert len(first.load_history("wf", "run-1")) == 3
    finally:
        second.close()
        first.close()


def test_recreating_a_closed_run_is_refused(store: DuckDBStore) -> None:
    # A closed run leaves the store's cache, so only the database knows it exists: its
    # primary key refuses a direct commit, the journaled store looks the run id up first.
    batch = start_batch("wf", "run-1", [started()])
    batch.updates.append(RunUpdate("wf", "run-1", status="completed", closed_at=T0))
    store.commit(batch)
    before = snapshot(store)
    with pytest.raises(HistoryCorruptError, match=r"already (stored|exists)"):
        store.commit(start_batch("wf", "run-1", [started()]))
    assert snapshot(store) == before


def test_two_transactions_appending_the_same_event_the_second_commit_fails(
    store: DuckDBStore,
) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    a, b = store.cursor(), store.cursor()
    insert = (
        "insert into events values ('wf', 'run-1', 1, 0, 'timer_fired', null, "
        "'{}', null, now())"
    )
    a.execute("begin")
    b.execute("begin")
    a.execute(insert)
    b.execute(insert)  # appends never conflict ...
    a.execute("commit")
    with pytest.raises(duckdb.TransactionException, match="constraint"):
        b.execute("commit")  # ... but the primary key does, at the second commit
    assert rows(store, "select count(*) from events") == [(2,)]


def test_numbering_continues_after_reopening(db_path: Path) -> None:
    with DuckDBStore(db_path) as store:
        store.commit(start_batch("wf", "run-1", [started()]))
    with DuckDBStore(db_path) as store:  # an empty cache: the stored history decides
        with pytest.raises(HistoryCorruptError, match="where 1 belongs"):
            store.commit(Batch(events=[EventRow("wf", "run-1", 2, TimerFired(T0, 0))]))
        store.commit(
            Batch(
                events=[EventRow("wf", "run-1", 1, TimerStarted(T0, 0, at(1)))],
                updates=[RunUpdate("wf", "run-1", tags={"x": 1})],
            )
        )
        assert len(store.load_history("wf", "run-1")) == 2


# ---------------------------------------------------------------------------------------------
# Loading.


def test_load_histories_reads_many_runs_with_one_query(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = Batch()
    for i in range(50):
        events: list[Event] = [started(f"wf-{i}", f"run-{i}")]
        events += [TimerStarted(at(k), k, at(k + 1)) for k in range(i % 4)]
        batch.extend(start_batch(f"wf-{i}", f"run-{i}", events))
    store.commit(batch)
    keys = [(f"wf-{i}", f"run-{i}") for i in range(50)] + [("wf-0", "missing")]
    queries: list[str] = []
    real_read = DuckDBStore._read

    def counting_read(self: DuckDBStore, query: str, params: object = None) -> Any:
        queries.append(query)
        return real_read(self, query, params)

    monkeypatch.setattr(DuckDBStore, "_read", counting_read)
    histories = store.load_histories(keys)
    assert len(queries) == 1
    monkeypatch.undo()
    assert list(histories) == keys
    assert histories["wf-0", "missing"] == []
    for key in keys[:-1]:
        assert histories[key] == store.load_history(*key)
        assert len(histories[key]) == 1 + int(key[1].split("-")[1]) % 4


def test_a_stored_gap_is_reported_on_load(store: DuckDBStore) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    store.cursor().execute(
        "insert into events values ('wf', 'run-1', 2, 0, 'timer_fired', null, ?, null, "
        "now())",
        ['{"kind": "timer_fired", "at": "2026-03-01T12:00:00+00:00", "seq": 0}'],
    )
    with pytest.raises(HistoryCorruptError, match="has event 2 where 1 belongs"):
        store.load_history("wf", "run-1")
    with pytest.raises(HistoryCorruptError, match="has event 2 where 1 belongs"):
        store.load_histories([("wf", "run-1")])


def test_a_payload_that_does_not_decode_names_the_run_and_event(
    store: DuckDBStore,
) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    store.cursor().execute(
        "insert into events values ('wf', 'run-1', 1, 0, 'timer_fired', null, ?, null, "
        "now())",
        ['{"kind": "timer_fired", "seq": "not a number"}'],
    )
    with pytest.raises(HistoryCorruptError, match=r"'wf' \(run run-1\): event 1"):
        store.load_history("wf", "run-1")


# ---------------------------------------------------------------------------------------------
# The schema and its views.

SCHEMA_SNAPSHOT = {
    "activity_calls": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "seq INTEGER",
        "name VARCHAR",
        "attempts INTEGER",
        "status VARCHAR",
        "scheduled_at TIMESTAMP WITH TIME ZONE",
        "started_at TIMESTAMP WITH TIME ZONE",
        "closed_at TIMESTAMP WITH TIME ZONE",
        "duration_s DOUBLE",
        "last_error VARCHAR",
        "error_type VARCHAR",
    ],
    "activity_calls_open": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "seq INTEGER",
        "name VARCHAR",
        "attempts INTEGER",
        "scheduled_at TIMESTAMP WITH TIME ZONE",
        "started_at TIMESTAMP WITH TIME ZONE",
        "last_error VARCHAR",
        "error_type VARCHAR",
    ],
    "activities": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "seq INTEGER",
        "name VARCHAR",
        "attempts INTEGER",
        "status VARCHAR",
        "scheduled_at TIMESTAMP WITH TIME ZONE",
        "started_at TIMESTAMP WITH TIME ZONE",
        "closed_at TIMESTAMP WITH TIME ZONE",
        "duration_s DOUBLE",
        "last_error VARCHAR",
        "error_type VARCHAR",
    ],
    "activity_attempts": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "seq INTEGER",
        "name VARCHAR",
        "attempt INTEGER",
        "started_at TIMESTAMP WITH TIME ZONE",
        "closed_at TIMESTAMP WITH TIME ZONE",
        "duration_s DOUBLE",
        "outcome VARCHAR",
        "error_type VARCHAR",
        "error_message VARCHAR",
        "retry_at TIMESTAMP WITH TIME ZONE",
        "event_id INTEGER",
    ],
    "children": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "seq INTEGER",
        "name VARCHAR",
        "child_id VARCHAR",
        "status VARCHAR",
        "started_at TIMESTAMP WITH TIME ZONE",
        "closed_at TIMESTAMP WITH TIME ZONE",
        "duration_s DOUBLE",
        "error_type VARCHAR",
        "error_message VARCHAR",
    ],
    "events": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "event_id INTEGER",
        "seq INTEGER",
        "kind VARCHAR",
        "name VARCHAR",
        "payload JSON",
        "attempt INTEGER",
        "recorded_at TIMESTAMP WITH TIME ZONE",
    ],
    "flowgen_meta": ["key VARCHAR", "value VARCHAR"],
    "schedules": [
        "schedule_id VARCHAR",
        "workflow VARCHAR",
        "args JSON",
        "kwargs JSON",
        "cron VARCHAR",
        "every_seconds BIGINT",
        "timezone VARCHAR",
        "overlap VARCHAR",
        "jitter_seconds DOUBLE",
        "catchup_window_seconds DOUBLE",
        "paused BOOLEAN",
        "note VARCHAR",
        "next_at TIMESTAMP WITH TIME ZONE",
        "fires_at TIMESTAMP WITH TIME ZONE",
        "created_at TIMESTAMP WITH TIME ZONE",
        "updated_at TIMESTAMP WITH TIME ZONE",
        "buffered_at TIMESTAMP WITH TIME ZONE",
        "last_workflow_id VARCHAR",
        "last_fired_at TIMESTAMP WITH TIME ZONE",
        "revision BIGINT",
        "skipped BIGINT",
        "triggered_at TIMESTAMP WITH TIME ZONE",
    ],
    "signal_waits": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "seq INTEGER",
        "name VARCHAR",
        "started_at TIMESTAMP WITH TIME ZONE",
        "deadline TIMESTAMP WITH TIME ZONE",
        "status VARCHAR",
        "closed_at TIMESTAMP WITH TIME ZONE",
        "signal_event_id INTEGER",
    ],
    "signals": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "event_id INTEGER",
        "signal_index INTEGER",
        "name VARCHAR",
        "payload JSON",
        "sender VARCHAR",
        "received_at TIMESTAMP WITH TIME ZONE",
        "wait_seq INTEGER",
    ],
    "timers": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "seq INTEGER",
        "scheduled_at TIMESTAMP WITH TIME ZONE",
        "fire_at TIMESTAMP WITH TIME ZONE",
        "fired_at TIMESTAMP WITH TIME ZONE",
        "status VARCHAR",
        "closed_at TIMESTAMP WITH TIME ZONE",
        "duration_s DOUBLE",
        "cancel_reason VARCHAR",
    ],
    "workflows": [
        "workflow_id VARCHAR",
        "run_id VARCHAR",
        "name VARCHAR",
        "status VARCHAR",
        "args JSON",
        "kwargs JSON",
        "result JSON",
        "error JSON",
        "tags JSON",
        "parent_id VARCHAR",
        "started_at TIMESTAMP WITH TIME ZONE",
        "closed_at TIMESTAMP WITH TIME ZONE",
    ],
}


def test_schema_snapshot(store: DuckDBStore) -> None:
    # The schema is part of the API: if this fails, the change must be deliberate (a new
    # SCHEMA_VERSION with a migration, docs updated), never a side effect.
    columns: dict[str, list[str]] = {}
    for table, column, data_type in rows(
        store,
        "select table_name, column_name, data_type from information_schema.columns "
        "where table_schema = 'main' order by table_name, ordinal_position",
    ):
        columns.setdefault(table, []).append(f"{column} {data_type}")
    assert columns == SCHEMA_SNAPSHOT
    assert sorted((*TABLES, *VIEWS)) == sorted(SCHEMA_SNAPSHOT)
    meta = dict(rows(store, "select key, value from flowgen_meta order by key"))
    # database_id: the file's identity (a uuid4, hex), named by its journal; journal_path:
    # where its journal is (so that another name of the file finds it).
    assert sorted(meta) == [
        "application",
        "database_id",
        "journal_path",
        "schema_version",
    ]
    assert meta["application"] == "flowgen"
    assert re.fullmatch("[0-9a-f]{32}", meta["database_id"])
    assert meta["journal_path"] == os.path.realpath(store.path) + ".journal"
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert rows(
        store, "select table_name, expressions from duckdb_indexes() order by all"
    ) == [("events", "[run_id]"), ("workflows", "[workflow_id]")]
    constraints = rows(
        store,
        "select table_name, constraint_type, constraint_column_names "
        "from duckdb_constraints() where constraint_type in ('PRIMARY KEY', 'CHECK') "
        "order by all",
    )
    assert constraints == [
        ("events", "PRIMARY KEY", ["run_id", "event_id"]),
        ("flowgen_meta", "PRIMARY KEY", ["key"]),
        ("schedules", "CHECK", ["overlap"]),
        ("schedules", "PRIMARY KEY", ["schedule_id"]),
        ("workflows", "CHECK", ["status"]),
        ("workflows", "PRIMARY KEY", ["run_id"]),
    ]


def test_status_is_checked_and_kinds_and_statuses_are_not_enums(
    store: DuckDBStore,
) -> None:
    assert rows(
        store,
        "select count(*) from duckdb_columns() where data_type like 'ENUM%'",
    ) == [(0,)]
    with pytest.raises(duckdb.ConstraintException, match="CHECK"):
        store.cursor().execute(
            "insert into workflows values ('w', 'r', 'n', 'bogus', '[]', '{}', null, "
            "null, '{}', null, now(), null)"
        )


def view_history() -> list[Event]:
    """A run with a retried activity, a failed one, timers, signals and a child."""
    timeout = ErrorInfo("TimeoutError", "slow")
    declined = ErrorInfo("CardDeclined", "no funds")
    return [
        started(),  # 0
        ActivityScheduled(at(0), 0, "charge", ["o-1"]),  # 1
        ActivityAttemptFailed(at(2), 0, timeout, 1, at(3), at(1)),  # 2
        ActivityAttemptFailed(at(5), 0, declined, 2, at(7), at(3)),  # 3
        ActivityCompleted(at(10), 0, "r-1", 3, at(7)),  # 4
        ActivityScheduled(at(10), 1, "ship"),  # 5
        ActivityFailed(at(12), 1, ErrorInfo("Lost", "gone", True), 1, at(11)),  # 6
        TimerStarted(at(12), 2, at(3612)),  # 7: loses the race below
        SignalWaitStarted(at(12), 3, "approve"),  # 8
        SignalReceived(at(20), "approve", {"by": "kim"}, 0, "boss/4"),  # 9
        CommandCancelled(at(20), 2, "race"),  # 10
        TimerStarted(at(20), 4, at(80)),  # 11
        TimerFired(at(80), 4),  # 12
        ChildStarted(at(80), 5, "invoice", "invoice-1"),  # 13
        ChildCompleted(at(90), 5, "invoice-1", 3),  # 14
        ActivityScheduled(at(90), 6, "notify"),  # 15: still running
        SignalReceived(at(95), "extra", None, 1),  # 16: buffered, nobody waits
        SignalWaitStarted(at(96), 7, "later", at(100)),  # 17
        SignalTimedOut(at(100), 7),  # 18
        TimerStarted(at(100), 8, at(200)),  # 19: pending
    ]


def query(store: DuckDBStore, sql: str) -> list[dict[str, Any]]:
    relation = store.sql(sql)
    names = relation.columns
    return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


def test_the_activities_view(store: DuckDBStore) -> None:
    store.commit(start_batch("wf", "run-1", view_history()))
    got = query(store, "select * from activities order by seq")
    assert got == [
        {
            "workflow_id": "wf",
            "run_id": "run-1",
            "seq": 0,
            "name": "charge",
            "attempts": 3,
            "status": "completed",
            "scheduled_at": at(0),
            "started_at": at(1),
            "closed_at": at(10),
            "duration_s": 10.0,
            "last_error": "no funds",
            "error_type": "CardDeclined",
        },
        {
            "workflow_id": "wf",
            "run_id": "run-1",
            "seq": 1,
            "name": "ship",
            "attempts": 1,
            "status": "failed",
            "scheduled_at": at(10),
            "started_at": at(11),
            "closed_at": at(12),
            "duration_s": 2.0,
            "last_error": "gone",
            "error_type": "Lost",
        },
        {
            "workflow_id": "wf",
            "run_id": "run-1",
            "seq": 6,
            "name": "notify",
            "attempts": 0,
            "status": "scheduled",
            "scheduled_at": at(90),
            "started_at": None,
            "closed_at": None,
            "duration_s": None,
            "last_error": None,
            "error_type": None,
        },
    ]
    # The question the view exists for.
    assert rows(
        store,
        "select name, quantile_cont(duration_s, 0.5) from activities "
        "where status = 'completed' group by name",
    ) == [("charge", 10.0)]


def test_the_activity_attempts_view(store: DuckDBStore) -> None:
    store.commit(start_batch("wf", "run-1", view_history()))
    got = rows(
        store,
        "select seq, name, attempt, started_at, closed_at, duration_s, outcome, "
        "error_type, error_message, retry_at from activity_attempts order by event_id",
    )
    assert got == [
        (0, "charge", 1, at(1), at(2), 1.0, "failed", "TimeoutError", "slow", at(3)),
        (
            0,
            "charge",
            2,
            at(3),
            at(5),
            2.0,
            "failed",
            "CardDeclined",
            "no funds",
            at(7),
        ),
        (0, "charge", 3, at(7), at(10), 3.0, "completed", None, None, None),
        (1, "ship", 1, at(11), at(12), 1.0, "failed", "Lost", "gone", None),
    ]


def test_the_timers_view(store: DuckDBStore) -> None:
    store.commit(start_batch("wf", "run-1", view_history()))
    got = rows(
        store,
        "select seq, scheduled_at, fire_at, fired_at, status, closed_at, duration_s, "
        "cancel_reason from timers order by seq",
    )
    assert got == [
        (2, at(12), at(3612), None, "cancelled", at(20), 3600.0, "race"),
        (4, at(20), at(80), at(80), "fired", at(80), 60.0, None),
        (8, at(100), at(200), None, "pending", None, 100.0, None),
    ]


def test_the_signals_views(store: DuckDBStore) -> None:
    store.commit(start_batch("wf", "run-1", view_history()))
    assert rows(
        store,
        "select event_id, signal_index, name, payload, sender, received_at, wait_seq "
        "from signals order by event_id",
    ) == [
        (9, 0, "approve", '{"by":"kim"}', "boss/4", at(20), 3),
        (16, 1, "extra", "null", None, at(95), None),
    ]
    assert rows(
        store,
        "select seq, name, started_at, deadline, status, closed_at, signal_event_id "
        "from signal_waits order by seq",
    ) == [
        (3, "approve", at(12), None, "received", at(20), 9),
        (7, "later", at(96), at(100), "timed_out", at(100), None),
    ]


def test_the_children_view(store: DuckDBStore) -> None:
    store.commit(start_batch("wf", "run-1", view_history()))
    assert query(store, "select * from children") == [
        {
            "workflow_id": "wf",
            "run_id": "run-1",
            "seq": 5,
            "name": "invoice",
            "child_id": "invoice-1",
            "status": "completed",
            "started_at": at(80),
            "closed_at": at(90),
            "duration_s": 10.0,
            "error_type": None,
            "error_message": None,
        }
    ]


def test_commands_left_open_by_a_run_that_ended_count_as_cancelled(
    store: DuckDBStore,
) -> None:
    history = [*view_history(), WorkflowTerminated(at(150), "admin")]
    store.commit(start_batch("wf", "run-1", history))
    assert rows(
        store, "select seq, status, closed_at from activities where seq = 6"
    ) == [(6, "cancelled", at(150))]
    assert rows(store, "select status, closed_at from timers where seq = 8") == [
        ("cancelled", at(150))
    ]


def call_histories() -> list[Batch]:
    """Calls in every state, in a run that goes on and in one terminated under them."""
    timeout = ErrorInfo("TimeoutError", "slow")
    going = [
        started("wf-a", "run-a"),
        # 0: retried, then completed
        ActivityScheduled(at(0), 0, "charge"),
        ActivityAttemptFailed(at(2), 0, timeout, 1, at(3), at(1)),
        ActivityCompleted(at(5), 0, "r", 2, at(3)),
        # 1: retried, then failed for good
        ActivityScheduled(at(5), 1, "ship"),
        ActivityAttemptFailed(at(6), 1, timeout, 1, at(7), at(5)),
        ActivityFailed(at(8), 1, ErrorInfo("Lost", "gone", True), 2, at(7)),
        # 2: cancelled before any attempt ended (a lost race)
        ActivityScheduled(at(8), 2, "quote"),
        CommandCancelled(at(9), 2, "race"),
        # 3: retried, the next attempt still running
        ActivityScheduled(at(9), 3, "mail"),
        ActivityAttemptFailed(at(10), 3, timeout, 1, at(70), at(9.5)),
        # 4: retried, then cancelled
        ActivityScheduled(at(10), 4, "sms"),
        ActivityAttemptFailed(at(11), 4, timeout, 1, at(71), at(10)),
        CommandCancelled(at(12), 4, "cancel"),
        # 5: its result was recorded after a cancel: the outcome wins
        ActivityScheduled(at(12), 5, "fax"),
        CommandCancelled(at(13), 5, "race"),
        ActivityCompleted(at(14), 5, "late", 1, at(12.5)),
        # 6: still scheduled
        ActivityScheduled(at(14), 6, "call"),
    ]
    ended = [
        started("wf-b", "run-b"),
        ActivityScheduled(at(0), 0, "charge"),  # open when the run ended
        ActivityScheduled(at(0), 1, "ship"),  # retrying when the run ended
        ActivityAttemptFailed(at(1), 1, timeout, 1, at(60), at(0.5)),
        ActivityScheduled(at(0), 2, "quote"),  # completed before the end
        ActivityCompleted(at(3), 2, "q", 1, at(1)),
        ActivityScheduled(at(3), 3, "mail"),  # cancelled, then the run ended
        CommandCancelled(at(4), 3, "cancel"),
        WorkflowTerminated(at(30), "admin"),
    ]
    return [start_batch("wf-a", "run-a", going), start_batch("wf-b", "run-b", ended)]


ACTIVITY_COLUMNS = (
    "run_id, seq, name, attempts, status, scheduled_at, started_at, closed_at, "
    "duration_s, last_error, error_type"
)
SLOW = ("slow", "TimeoutError")  # last_error, error_type
NONE = (None, None)
CALLS = [
    ("run-a", 0, "charge", 2, "completed", at(0), at(1), at(5), 5.0, *SLOW),
    ("run-a", 1, "ship", 2, "failed", at(5), at(5), at(8), 3.0, "gone", "Lost"),
    ("run-a", 2, "quote", 0, "cancelled", at(8), None, at(9), 1.0, *NONE),
    ("run-a", 3, "mail", 1, "scheduled", at(9), at(9.5), None, None, *SLOW),
    ("run-a", 4, "sms", 1, "cancelled", at(10), at(10), at(12), 2.0, *SLOW),
    ("run-a", 5, "fax", 1, "completed", at(12), at(12.5), at(14), 2.0, *NONE),
    ("run-a", 6, "call", 0, "scheduled", at(14), None, None, None, *NONE),
    ("run-b", 0, "charge", 0, "cancelled", at(0), None, at(30), 30.0, *NONE),
    ("run-b", 1, "ship", 1, "cancelled", at(0), at(0.5), at(30), 30.0, *SLOW),
    ("run-b", 2, "quote", 1, "completed", at(0), at(1), at(3), 3.0, *NONE),
    ("run-b", 3, "mail", 0, "cancelled", at(3), None, at(4), 1.0, *NONE),
]


def test_the_activities_view_in_every_state_of_a_call(store: DuckDBStore) -> None:
    # The view joins a cancel or the run's end only to calls without a final outcome: each
    # state, and a run filter reaching every part of the view, pinned here.
    for batch in call_histories():
        store.commit(batch)
    got = rows(store, f"select {ACTIVITY_COLUMNS} from activities order by run_id, seq")
    assert got == CALLS
    for run_id in ("run-a", "run-b"):
        assert rows(
            store,
            f"select {ACTIVITY_COLUMNS} from activities where run_id = '{run_id}' "
            "order by seq",
        ) == [call for call in CALLS if call[0] == run_id]
    assert rows(
        store,
        "select name, count(*), sum(attempts), count(*) filter (where status = 'failed') "
        "from activities group by name order by name",
    ) == [
        ("call", 1, 0, 0),
        ("charge", 2, 2, 0),
        ("fax", 1, 1, 0),
        ("mail", 2, 1, 0),
        ("quote", 2, 1, 0),
        ("ship", 2, 3, 1),
        ("sms", 1, 1, 0),
    ]


# The `activities` view as flowgen created it until the cancels and run ends were joined only
# to calls without an outcome: a file made then keeps it until opened by this flowgen.
OLD_ACTIVITIES_VIEW = """CREATE OR REPLACE VIEW activities AS
WITH finals AS (
    -- A call's last attempt, completed or failed for good: one row per call that ended, so
    -- joined as it is (grouping every attempt by (run_id, seq) cost more than the rest).
    SELECT run_id, seq, kind, attempt, recorded_at, payload
    FROM events WHERE kind IN ('activity_completed', 'activity_failed')
),
retries AS (
    -- The attempts that failed and were retried: few, so grouping them is cheap.
    SELECT
        run_id,
        seq,
        max(attempt) AS attempts,
        arg_min(CAST(payload->>'$.started_at' AS TIMESTAMPTZ), attempt) AS started_at,
        arg_max(payload->>'$.error.message', attempt) AS last_error,
        arg_max(payload->>'$.error.type', attempt) AS error_type
    FROM events WHERE kind = 'activity_attempt_failed' GROUP BY run_id, seq
),
outcomes AS (
    SELECT
        coalesce(f.run_id, t.run_id) AS run_id,
        coalesce(f.seq, t.seq) AS seq,
        greatest(f.attempt, t.attempts) AS attempts,
        CASE
            WHEN t.run_id IS NOT NULL THEN t.started_at
            ELSE CAST(f.payload->>'$.started_at' AS TIMESTAMPTZ)
        END AS started_at,
        f.recorded_at AS closed_at,
        coalesce(f.kind = 'activity_completed', false) AS completed,
        coalesce(f.kind = 'activity_failed', false) AS failed,
        CASE
            WHEN f.kind = 'activity_failed' THEN f.payload->>'$.error.message'
            ELSE t.last_error
        END AS last_error,
        CASE
            WHEN f.kind = 'activity_failed' THEN f.payload->>'$.error.type'
            ELSE t.error_type
        END AS error_type
    FROM finals f FULL OUTER JOIN retries t ON t.run_id = f.run_id AND t.seq = f.seq
),
cancels AS (
    SELECT run_id, seq, min(recorded_at) AS cancelled_at, arg_min(payload->>'$.reason', event_id) AS cancel_reason
    FROM events WHERE kind = 'command_cancelled' GROUP BY run_id, seq
),
run_ends AS (
    SELECT run_id, min(recorded_at) AS ended_at
    FROM events WHERE kind IN ('workflow_completed', 'workflow_failed', 'workflow_cancelled', 'workflow_continued_as_new', 'workflow_terminated') GROUP BY run_id
),
calls AS (
    SELECT
        s.workflow_id,
        s.run_id,
        s.seq,
        s.name,
        coalesce(o.attempts, 0) AS attempts,
        CASE
            WHEN o.completed THEN 'completed'
            WHEN o.failed THEN 'failed'
            WHEN c.cancelled_at IS NOT NULL OR r.ended_at IS NOT NULL THEN 'cancelled'
            ELSE 'scheduled'
        END AS status,
        s.recorded_at AS scheduled_at,
        o.started_at,
        coalesce(o.closed_at, c.cancelled_at, r.ended_at) AS closed_at,
        o.last_error,
        o.error_type
    FROM events s
    LEFT JOIN outcomes o ON o.run_id = s.run_id AND o.seq = s.seq
    LEFT JOIN cancels c ON c.run_id = s.run_id AND c.seq = s.seq
    LEFT JOIN run_ends r ON r.run_id = s.run_id
    WHERE s.kind = 'activity_scheduled'
)
SELECT
    workflow_id, run_id, seq, name, attempts, status, scheduled_at, started_at, closed_at,
    (epoch_us(closed_at) - epoch_us(scheduled_at)) / 1e6 AS duration_s,
    last_error, error_type
FROM calls"""


def view_comments(store: DuckDBStore) -> dict[str, str]:
    return dict(
        rows(store, "select view_name, comment from duckdb_views() where not internal")
    )


def test_opening_a_file_re_creates_views_left_by_an_older_flowgen(
    db_path: Path,
) -> None:
    with DuckDBStore(db_path) as store:
        for batch in call_histories():
            store.commit(batch)
        current = view_comments(store)
        current_sql = rows(
            store,
            "select view_name, sql from duckdb_views() where not internal order by 1",
        )
    assert sorted(current) == sorted(VIEWS)
    con = duckdb.connect(str(db_path))
    con.execute(OLD_ACTIVITIES_VIEW)
    con.execute("drop view timers")
    # The old view computes the same rows (the slower way).
    assert (
        con.execute(
            f"select {ACTIVITY_COLUMNS} from activities order by run_id, seq"
        ).fetchall()
        == CALLS
    )
    con.close()
    with DuckDBStore(db_path) as store:
        assert view_comments(store) == current
        assert (
            rows(
                store,
                "select view_name, sql from duckdb_views() where not internal "
                "order by 1",
            )
            == current_sql
        )
        got = rows(
            store, f"select {ACTIVITY_COLUMNS} from activities order by run_id, seq"
        )
        assert got == CALLS
        assert rows(store, "select count(*) from timers") == [(0,)]
    # A file whose views are current is opened without a write.
    before = sha256(db_path)
    DuckDBStore(db_path).close()
    assert sha256(db_path) == before


# ---------------------------------------------------------------------------------------------
# Files that are not ours, or not free. None of them is modified.


NEXT = duckdb_schema.SCHEMA_VERSION + 1
"""A schema version no flowgen has yet (what the migration tests pretend to be)."""


def make_flowgen_file(path: Path) -> None:
    with DuckDBStore(path) as store:
        store.commit(start_batch("wf", "run-1", [started()]))


def test_random_bytes_are_not_a_flowgen_database(tmp_path: Path) -> None:
    path = tmp_path / "random.duckdb"
    path.write_bytes(os.urandom(64 * 1024))
    before = sha256(path)
    with pytest.raises(
        NotAFlowgenDatabase, match="not a valid DuckDB database"
    ) as info:
        DuckDBStore(path)
    assert str(path) in str(info.value)
    assert sha256(path) == before
    assert sorted(os.listdir(tmp_path)) == ["random.duckdb"]


def test_an_empty_file_is_not_a_flowgen_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    path.touch()
    with pytest.raises(NotAFlowgenDatabase, match=str(path)):
        DuckDBStore(path)
    assert path.stat().st_size == 0


def test_a_sqlite_file_is_not_a_flowgen_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as con:
        con.execute("create table orders (id integer primary key)")
    con.close()
    before = sha256(path)
    with pytest.raises(NotAFlowgenDatabase, match="SQLite") as info:
        DuckDBStore(path)
    assert str(path) in str(info.value)
    assert sha256(path) == before


def test_a_truncated_file_is_not_a_flowgen_database(tmp_path: Path) -> None:
    whole = tmp_path / "whole.duckdb"
    make_flowgen_file(whole)
    path = tmp_path / "truncated.duckdb"
    path.write_bytes(whole.read_bytes()[:5000])
    before = sha256(path)
    with pytest.raises(NotAFlowgenDatabase, match="DuckDB cannot open it"):
        DuckDBStore(path)
    assert sha256(path) == before


def test_a_corrupt_flowgen_file_is_not_a_flowgen_database(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.duckdb"
    make_flowgen_file(path)
    data = bytearray(path.read_bytes())
    for offset in range(0, 64 * 1024, 7):  # scribble over the header and first blocks
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    # DuckDB says "checksum ... in block ...": not to be mistaken for a lock.
    with pytest.raises(NotAFlowgenDatabase, match="Corrupt database file"):
        DuckDBStore(path)
    assert path.read_bytes() == bytes(data)


def test_another_applications_duckdb_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create table orders (id integer)")
    con.execute("create table customers (id integer)")
    con.execute("insert into orders values (1)")
    con.close()
    before = sha256(path)
    with pytest.raises(NotAFlowgenDatabase) as info:
        DuckDBStore(path)
    assert "not a flowgen database (it has tables customers, orders but no " in str(
        info.value
    )
    assert sha256(path) == before
    assert sorted(os.listdir(tmp_path)) == ["shop.duckdb"]


def test_a_newer_schema_version_is_refused_untouched(db_path: Path) -> None:
    make_flowgen_file(db_path)
    con = duckdb.connect(str(db_path))
    con.execute("update flowgen_meta set value = '99' where key = 'schema_version'")
    con.execute("checkpoint")
    con.close()
    before = sha256(db_path)
    with pytest.raises(SchemaVersionError) as info:
        DuckDBStore(db_path)
    message = str(info.value)
    assert "schema version 99" in message
    assert f"schema version {SCHEMA_VERSION}" in message
    assert "Upgrade flowgen" in message
    assert sha256(db_path) == before


def file_dump(path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [
            *con.execute(
                "select table_name, column_name, data_type from information_schema.columns "
                "order by all"
            ).fetchall(),
            *con.execute("select * from flowgen_meta order by key").fetchall(),
            *con.execute("select * from workflows").fetchall(),
        ]
    finally:
        con.close()


def test_opening_an_older_version_runs_the_missing_migrations(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_flowgen_file(db_path)
    # A flowgen with the next schema version, which adds a column.
    monkeypatch.setattr(duckdb_schema, "SCHEMA_VERSION", NEXT)
    monkeypatch.setitem(
        duckdb_schema.MIGRATIONS,
        NEXT,
        ("ALTER TABLE workflows ADD COLUMN note VARCHAR DEFAULT 'migrated'",),
    )
    with DuckDBStore(db_path) as store:
        assert store.load_history("wf", "run-1") == [started()]
        assert rows(store, "select note from workflows") == [("migrated",)]
        assert rows(
            store, "select value from flowgen_meta where key = 'schema_version'"
        ) == [(str(NEXT),)]
    with DuckDBStore(db_path):  # and the next open has nothing to do
        pass
    # A new file gets version 1 and every migration.
    fresh = db_path.with_name("fresh.duckdb")
    with DuckDBStore(fresh) as store:
        assert "note" in {
            name
            for (name,) in rows(
                store,
                "select column_name from "
                "information_schema.columns where table_name = 'workflows'",
            )
        }
    monkeypatch.undo()
    with pytest.raises(SchemaVersionError, match=f"schema version {NEXT}"):
        DuckDBStore(db_path)


def test_a_version_1_file_gets_the_schedules_table(db_path: Path) -> None:
    # A file as flowgen 0.1 (schema version 1) left it: none of version 2's tables.
    make_flowgen_file(db_path)
    con = duckdb.connect(str(db_path))
    try:
        for table in ("schedules", "activity_calls", "activity_calls_open"):
            con.execute(f"DROP TABLE {table}")
        con.execute("UPDATE flowgen_meta SET value = '1' WHERE key = 'schema_version'")
    finally:
        con.close()
    with DuckDBStore(db_path) as store:
        assert store.load_history("wf", "run-1") == [started()]
        assert store.load_schedules() == []
        assert rows(store, "select count(*) from schedules") == [(0,)]
        assert rows(
            store, "select value from flowgen_meta where key = 'schema_version'"
        ) == [(str(duckdb_schema.SCHEMA_VERSION),)]


def test_a_failing_migration_changes_nothing(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_flowgen_file(db_path)
    before = file_dump(db_path)
    monkeypatch.setattr(duckdb_schema, "SCHEMA_VERSION", NEXT)
    monkeypatch.setitem(
        duckdb_schema.MIGRATIONS,
        NEXT,
        ("ALTER TABLE workflows ADD COLUMN note VARCHAR", "SELECT no_such_function()"),
    )
    with pytest.raises(StoreError, match=r"nothing was changed: .*no_such_function"):
        DuckDBStore(db_path)
    assert file_dump(db_path) == before
    monkeypatch.undo()
    with DuckDBStore(db_path) as store:  # and this flowgen still opens it
        assert store.load_history("wf", "run-1") == [started()]


HOLD_OPEN = """
import sys
from flowgen._stores.duckdb_store import DuckDBStore
store = DuckDBStore(sys.argv[1])
print("open", flush=True)
sys.stdin.read()
"""


def test_a_file_held_by_another_process_raises_store_locked(db_path: Path) -> None:
    make_flowgen_file(db_path)
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "open"
            before = sha256(db_path)
            with pytest.raises(StoreLockedError) as info:
                DuckDBStore(db_path)
            message = str(info.value)
            assert f"process {holder.pid} has it open" in message
            assert "not even read-only" in message
            assert "engine.sql" in message
            assert "Parquet" in message
            assert sha256(db_path) == before
        finally:
            holder.kill()
            holder.wait()
    # Once the holder is gone, the file opens and nothing was lost.
    with DuckDBStore(db_path) as store:
        assert store.load_history("wf", "run-1") == [started()]


def test_a_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        DuckDBStore(tmp_path / "no" / "such" / "dir.duckdb")


# ---------------------------------------------------------------------------------------------
# Connections, threads, closing, export.


def test_readers_on_other_threads_see_whole_commits_only(store: DuckDBStore) -> None:
    runs = 4
    batch = Batch()
    for i in range(runs):
        batch.extend(
            start_batch(f"wf-{i}", f"run-{i}", [started(f"wf-{i}", f"run-{i}")])
        )
    store.commit(batch)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def write() -> None:
        try:
            for step in range(1, 80):
                store.commit(
                    Batch(
                        events=[
                            EventRow(
                                f"wf-{i}", f"run-{i}", step, TimerFired(at(step), 0)
                            )
                            for i in range(runs)
                        ],
                        updates=[
                            RunUpdate(f"wf-{i}", f"run-{i}", tags={"step": step})
                            for i in range(runs)
                        ],
                    )
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                histories = store.load_histories(
                    [(f"wf-{i}", f"run-{i}") for i in range(runs)]
                )
                lengths = {len(h) for h in histories.values()}
                # One transaction per step: all runs move together, or none.
                assert len(lengths) == 1, lengths
                seen.append(lengths.pop())
                run = store.get_run("wf-0")
                assert run is not None
                (count,) = store.sql("select count(*) from events").fetchall()[0]
                assert count % runs == 0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [
        threading.Thread(target=read) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert seen
    assert store.load_history("wf-3", "run-3")[-1] == TimerFired(at(79), 0)


def test_sql_and_cursor_work_from_any_thread(store: DuckDBStore) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    results: dict[str, Any] = {}

    def in_thread() -> None:
        relation = store.sql("select workflow_id, status from workflows")
        results["sql"] = relation.fetchall()
        cursor = store.cursor()
        results["cursor"] = cursor.execute(
            "select count(*) from events where run_id = ?", ["run-1"]
        ).fetchall()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert results == {"sql": [("wf", "running")], "cursor": [(1,)]}
    assert store.sql("select ? + 1", [41]).fetchall() == [(42,)]
    assert isinstance(store.connection, duckdb.DuckDBPyConnection)


def test_a_relation_being_read_is_not_ended_by_the_stores_own_reads(
    store: DuckDBStore,
) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    reader = store.sql("select * from range(100000)").to_arrow_reader(1000)
    first = reader.read_next_batch()
    store.load_history("wf", "run-1")  # on the store's own cursor, not sql()'s
    rest = sum(batch.num_rows for batch in reader)
    assert first.num_rows + rest == 100000


def test_close_is_idempotent_and_releases_the_file(db_path: Path) -> None:
    store = DuckDBStore(db_path)
    store.commit(start_batch("wf", "run-1", view_history()))
    cursor = store.cursor()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_run("wf")
    with pytest.raises(StoreError, match="closed"):
        store.commit(start_batch("wf-2", "run-2", [started("wf-2", "run-2")]))
    with pytest.raises(duckdb.ConnectionException):
        cursor.execute("select 1")
    # Closed means closed: a read-only connection (which DuckDB refuses while this
    # process has the file open read-write) can now query the tables and views.
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        assert con.execute("select count(*) from activities").fetchall() == [(3,)]
    finally:
        con.close()
    assert not (db_path.parent / (db_path.name + ".wal")).exists()  # checkpointed


def test_export_parquet_writes_every_table_and_view(
    store: DuckDBStore, tmp_path: Path
) -> None:
    store.commit(start_batch("wf", "run-1", view_history()))
    written = store.export_parquet(tmp_path / "export")
    names = sorted(Path(p).stem for p in written)
    assert names == sorted((*TABLES, *VIEWS))
    other = duckdb.connect()  # any DuckDB, no flowgen
    try:
        for path in written:
            name = Path(path).stem
            (count,) = other.execute(
                "select count(*) from read_parquet(?)", [path]
            ).fetchone() or (None,)
            assert [(count,)] == rows(store, f"select count(*) from {name}"), name
        assert other.execute(
            "select attempts, status from read_parquet(?) where seq = 0",
            [str(tmp_path / "export" / "activities.parquet")],
        ).fetchall() == [(3, "completed")]
    finally:
        other.close()


def test_checkpoint_empties_the_wal(db_path: Path) -> None:
    with DuckDBStore(db_path) as store:
        store.commit(start_batch("wf", "run-1", [started()]))
        store.flush()  # from the journal into the tables (and DuckDB's WAL)
        wal = db_path.parent / (db_path.name + ".wal")
        assert wal.exists() and wal.stat().st_size > 0
        store.checkpoint()
        assert not wal.exists() or wal.stat().st_size == 0


def test_timestamps_come_back_as_utc_whatever_the_input_offset(
    store: DuckDBStore,
) -> None:
    plus_two = datetime(
        2026, 3, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))
    )
    store.commit(
        Batch(runs=[record("wf", "run-1", started_at=plus_two, closed_at=plus_two)])
    )
    run = store.get_run("wf")
    assert run is not None
    assert run.started_at == plus_two
    assert run.started_at.tzinfo is UTC
    assert run.started_at.microsecond == 123456


def test_store_repr_and_context_manager(db_path: Path) -> None:
    with DuckDBStore(db_path) as store:
        assert repr(store) == f"<DuckDBStore {str(db_path)!r} (open)>"
    assert repr(store).endswith("(closed)>")


def test_threads_sets_duckdbs_worker_threads_and_the_engine_uses_one() -> None:
    import flowgen as fg

    store = DuckDBStore(":memory:", threads=2)
    try:
        assert store.sql("select current_setting('threads')").fetchall() == [(2,)]
    finally:
        store.close()
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        DuckDBStore(":memory:", threads=0)
    engine = fg.Engine(":memory:")
    try:
        assert engine.sql("select current_setting('threads')").fetchall() == [(1,)]
    finally:
        engine.close()
