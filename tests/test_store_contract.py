"""The `Store` contract, run against every store: MemoryStore, DuckDBStore(":memory:") and
PostgresStore (on a fresh database of the tests' own PostgreSQL server, see tests/pg.py).

The engine is written against the protocol, and tests often swap one store for another,
so all must behave the same way on everything the engine relies on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import attrs
import pytest

from flowgen._stores.duckdb_store import DuckDBStore
from flowgen._stores.memory import MemoryStore
from flowgen._stores.postgres_store import PostgresStore
from flowgen._stores.protocol import (
    Batch,
    EventRow,
    KeepsSchedules,
    RunUpdate,
    Store,
    WorkflowRecord,
)
from flowgen._vocabulary.errors import ErrorInfo, HistoryCorruptError
from flowgen._vocabulary.events import (
    ActivityCompleted,
    ActivityScheduled,
    Event,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowStarted,
)
from tests.schedule_contract import check_schedule_rows

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "duckdb", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    s: Store
    if request.param == "memory":
        s = MemoryStore()
    elif request.param == "duckdb":
        s = DuckDBStore(":memory:")
    else:
        s = PostgresStore(request.getfixturevalue("pg_url"))
    yield s
    s.close()


def run(
    workflow_id: str, run_id: str, *, minutes: int = 0, **changes: object
) -> WorkflowRecord:
    base = WorkflowRecord(
        workflow_id,
        run_id,
        "order",
        "running",
        [workflow_id],
        {"rush": False},
        T0 + timedelta(minutes=minutes),
    )
    return attrs.evolve(base, **changes)


def started(workflow_id: str, run_id: str) -> WorkflowStarted:
    return WorkflowStarted(T0, workflow_id, run_id, "order", [workflow_id])


def new_run(record: WorkflowRecord, *more: Event) -> Batch:
    events = [started(record.workflow_id, record.run_id), *more]
    return Batch(
        runs=[record],
        events=[
            EventRow(record.workflow_id, record.run_id, i, e)
            for i, e in enumerate(events)
        ],
    )


def state(store: Store, keys: list[tuple[str, str]]) -> object:
    return (
        store.list_runs(),
        store.load_histories(keys),
        store.unfinished(),
    )


def test_commit_then_load(store: Store) -> None:
    scheduled = ActivityScheduled(T0, 0, "charge", ["o-1", 10.0])
    store.commit(new_run(run("wf", "r1"), scheduled))
    store.commit(
        Batch(events=[EventRow("wf", "r1", 2, ActivityCompleted(T0, 0, {"ok": 1}))])
    )
    assert store.load_history("wf", "r1") == [
        started("wf", "r1"),
        scheduled,
        ActivityCompleted(T0, 0, {"ok": 1}),
    ]
    assert store.get_run("wf", "r1") == run("wf", "r1")


def test_an_empty_batch_is_a_no_op(store: Store) -> None:
    store.commit(Batch())
    assert store.list_runs() == []


def test_unknown_runs_read_as_nothing(store: Store) -> None:
    store.commit(new_run(run("wf", "r1")))
    assert store.load_history("wf", "nope") == []
    assert store.load_history("other", "r1") == []
    assert store.get_run("nope") is None
    assert store.get_run("wf", "nope") is None
    assert store.get_run("other", "r1") is None
    assert store.load_histories([("wf", "nope")]) == {("wf", "nope"): []}
    assert store.load_histories([]) == {}


def test_load_histories_is_keyed_by_workflow_and_run(store: Store) -> None:
    batch = Batch()
    for i in range(5):
        batch.extend(new_run(run(f"wf-{i}", f"r{i}")))
    batch.events.append(EventRow("wf-3", "r3", 1, TimerStarted(T0, 0, T0)))
    store.commit(batch)
    keys = [("wf-3", "r3"), ("wf-0", "r0")]
    histories = store.load_histories(keys)
    assert list(histories) == keys
    assert histories["wf-3", "r3"] == [
        started("wf-3", "r3"),
        TimerStarted(T0, 0, T0),
    ]
    assert histories["wf-0", "r0"] == [started("wf-0", "r0")]


def test_get_run_without_run_id_gives_the_latest_run(store: Store) -> None:
    store.commit(new_run(run("wf", "r1")))
    # continue-as-new at the very same instant (a manual clock): the newer row wins ties.
    store.commit(
        Batch(
            events=[EventRow("wf", "r1", 1, WorkflowContinuedAsNew(T0, ["wf"]))],
            updates=[RunUpdate("wf", "r1", status="continued_as_new", closed_at=T0)],
        )
    )
    store.commit(new_run(run("wf", "r2")))
    latest = store.get_run("wf")
    assert latest is not None
    assert latest.run_id == "r2"
    # Updating the older run afterwards does not make it the latest.
    store.commit(Batch(updates=[RunUpdate("wf", "r1", tags={"old": True})]))
    latest = store.get_run("wf")
    assert latest is not None
    assert latest.run_id == "r2"
    first = store.get_run("wf", "r1")
    assert first is not None
    assert first.status == "continued_as_new"
    assert first.is_closed
    assert first.tags == {"old": True}


def test_latest_runs_reads_many_ids_as_get_run_does(store: Store) -> None:
    store.commit(new_run(run("wf", "r1")))
    store.commit(
        Batch(
            events=[EventRow("wf", "r1", 1, WorkflowContinuedAsNew(T0, ["wf"]))],
            updates=[RunUpdate("wf", "r1", status="continued_as_new", closed_at=T0)],
        )
    )
    store.commit(new_run(run("wf", "r2")))  # same started_at: the newer row wins
    store.commit(new_run(run("other", "r3", minutes=5)))
    assert isinstance(store, (MemoryStore, DuckDBStore, PostgresStore))  # optional
    latest_runs = store.latest_runs
    found = latest_runs(["wf", "nobody", "other", "wf"])
    assert set(found) == {"wf", "other"}
    assert found["wf"] == store.get_run("wf")
    assert found["wf"].run_id == "r2"
    assert found["other"] == store.get_run("other")
    assert latest_runs([]) == {}


def test_updates_change_only_what_they_set(store: Store) -> None:
    store.commit(new_run(run("wf", "r1", tags={"a": 1})))
    store.commit(Batch(updates=[RunUpdate("wf", "r1", tags={"b": [1, 2]})]))
    store.commit(
        Batch(
            updates=[
                RunUpdate("wf", "r1", status="completed", result={"total": 12.5}),
                RunUpdate("wf", "r1", closed_at=T0 + timedelta(hours=1)),
            ]
        )
    )
    assert store.get_run("wf", "r1") == run(
        "wf",
        "r1",
        tags={"b": [1, 2]},
        status="completed",
        result={"total": 12.5},
        closed_at=T0 + timedelta(hours=1),
    )
    error = ErrorInfo("CardDeclined", "no funds", True, 3, "Traceback ...")
    store.commit(Batch(updates=[RunUpdate("wf", "r1", status="failed", error=error)]))
    record = store.get_run("wf")
    assert record is not None
    assert (record.status, record.error, record.result) == (
        "failed",
        error,
        {"total": 12.5},
    )


def test_a_run_created_and_updated_in_one_batch(store: Store) -> None:
    batch = new_run(run("wf", "r1"), WorkflowCompleted(T0, "done"))
    batch.updates.append(
        RunUpdate("wf", "r1", status="completed", result="done", closed_at=T0)
    )
    store.commit(batch)
    assert store.get_run("wf") == run(
        "wf", "r1", status="completed", result="done", closed_at=T0
    )
    assert store.unfinished() == []


def test_list_runs_filters_and_orders_newest_first(store: Store) -> None:
    batch = Batch()
    batch.extend(new_run(run("a", "ra", minutes=1, tags={"region": "eu", "n": 1})))
    batch.extend(
        new_run(run("b", "rb", minutes=2, name="invoice", tags={"region": "us"}))
    )
    batch.extend(
        new_run(run("c", "rc", minutes=3, tags={"region": "eu", "nested": {"x": [1]}}))
    )
    batch.extend(new_run(run("d", "rd", minutes=4, status="completed", closed_at=T0)))
    store.commit(batch)

    def ids(**filters: object) -> list[str]:
        return [r.workflow_id for r in store.list_runs(**filters)]  # type: ignore[arg-type]

    assert ids() == ["d", "c", "b", "a"]
    assert ids(limit=2) == ["d", "c"]
    assert ids(status="running") == ["c", "b", "a"]
    assert ids(status="completed") == ["d"]
    assert ids(name="invoice") == ["b"]
    assert ids(tags={"region": "eu"}) == ["c", "a"]
    assert ids(tags={"region": "eu", "n": 1}) == ["a"]
    assert ids(tags={"nested": {"x": [1]}}) == ["c"]
    assert ids(tags={"region": "mars"}) == []
    # JSON equality: the string "1" is not the number 1.
    assert ids(tags={"n": "1"}) == []
    assert ids(status="running", name="order", tags={"region": "eu"}, limit=1) == ["c"]
    # None matches a tag that is absent (or null).
    assert ids(tags={"n": None}) == ["d", "c", "b"]
    assert ids(limit=0) == []


def test_unfinished_lists_running_runs(store: Store) -> None:
    batch = Batch()
    batch.extend(new_run(run("a", "ra", minutes=1)))
    batch.extend(new_run(run("b", "rb", minutes=2)))
    batch.extend(new_run(run("c", "rc", minutes=3)))
    store.commit(batch)
    store.commit(Batch(updates=[RunUpdate("b", "rb", status="cancelled")]))
    assert [r.run_id for r in store.unfinished()] == ["ra", "rc"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            Batch(events=[EventRow("wf", "r1", 3, TimerFired(T0, 0))]), id="gap"
        ),
        pytest.param(
            Batch(events=[EventRow("wf", "r1", 1, TimerFired(T0, 0))]), id="duplicate"
        ),
        pytest.param(
            Batch(
                events=[
                    EventRow("wf", "r1", 2, TimerFired(T0, 0)),
                    EventRow("wf", "r1", 2, TimerFired(T0, 0)),
                ]
            ),
            id="duplicate-in-batch",
        ),
        pytest.param(
            Batch(events=[EventRow("wf", "nope", 0, started("wf", "nope"))]),
            id="unknown-run",
        ),
        pytest.param(
            Batch(events=[EventRow("other", "r1", 2, TimerFired(T0, 0))]),
            id="wrong-workflow",
        ),
        pytest.param(
            Batch(updates=[RunUpdate("wf", "nope", status="failed")]),
            id="update-unknown-run",
        ),
        pytest.param(new_run(run("wf", "r1")), id="run-exists"),
        pytest.param(
            Batch(runs=[run("x", "rx"), run("x", "rx")]), id="run-twice-in-batch"
        ),
    ],
)
def test_a_bad_batch_is_refused_and_changes_nothing(store: Store, bad: Batch) -> None:
    store.commit(new_run(run("wf", "r1"), TimerStarted(T0, 0, T0)))
    keys = [("wf", "r1"), ("x", "rx"), ("wf", "nope")]
    before = state(store, keys)
    # Every bad batch also carries good parts, which must not be written either.
    poisoned = Batch(
        runs=[run("fresh", "rf")],
        events=[EventRow("fresh", "rf", 0, started("fresh", "rf"))],
    )
    poisoned.extend(bad)
    with pytest.raises(HistoryCorruptError):
        store.commit(poisoned)
    assert state(store, keys) == before
    assert store.get_run("fresh") is None
    # And the store carries on: the next good event is accepted.
    store.commit(Batch(events=[EventRow("wf", "r1", 2, TimerFired(T0, 0))]))
    assert len(store.load_history("wf", "r1")) == 3


def test_schedules_are_kept_exactly_and_changed_by_compare_and_set(
    store: Store,
) -> None:
    assert isinstance(store, KeepsSchedules)
    check_schedule_rows(store)
