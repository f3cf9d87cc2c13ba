"""`MemoryStore`: the `Store` protocol in dicts (group commit, numbering, latest run, lists)."""

from __future__ import annotations

import threading
from datetime import timedelta

import attrs
import pytest

import flowgen as fg
from flowgen._stores.memory import MemoryStore
from flowgen._stores.protocol import (
    CLOSED_STATUSES,
    Batch,
    EventRow,
    RunUpdate,
    WorkflowRecord,
    apply_update,
    check_numbering,
)
from tests.schedule_contract import check_schedule_rows
from tests.strategies import T0


def record(
    workflow_id: str = "wf-1",
    run_id: str = "run-1",
    *,
    name: str = "order",
    status: str = "running",
    minutes: int = 0,
    tags: dict[str, fg.JsonValue] | None = None,
) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id=workflow_id,
        run_id=run_id,
        name=name,
        status=status,
        args=["o-1"],
        kwargs={},
        started_at=T0 + timedelta(minutes=minutes),
        tags=tags or {},
    )


def rows(run: WorkflowRecord, *events: fg.Event, first: int = 0) -> list[EventRow]:
    return [
        EventRow(run.workflow_id, run.run_id, first + i, event)
        for i, event in enumerate(events)
    ]


STARTED = fg.WorkflowStarted(at=T0, workflow_id="wf-1", run_id="run-1", name="order")
TIMER = fg.TimerStarted(at=T0, seq=0, fire_at=T0 + timedelta(seconds=5))
FIRED = fg.TimerFired(at=T0 + timedelta(seconds=5), seq=0)


def snapshot(store: MemoryStore) -> tuple[object, ...]:
    return (
        store.list_runs(),
        {
            r.run_id: store.load_history(r.workflow_id, r.run_id)
            for r in store.list_runs()
        },
        store.commits,
    )


def test_a_committed_batch_loads_back_in_order() -> None:
    store = MemoryStore()
    run = record()
    store.commit(Batch(runs=[run], events=rows(run, STARTED, TIMER)))
    store.commit(Batch(events=rows(run, FIRED, first=2)))
    assert store.load_history("wf-1", "run-1") == [STARTED, TIMER, FIRED]
    assert store.load_histories([("wf-1", "run-1"), ("nope", "x")]) == {
        ("wf-1", "run-1"): [STARTED, TIMER, FIRED],
        ("nope", "x"): [],
    }
    assert store.get_run("wf-1", "run-1") == run
    assert store.commits == 2


def test_a_loaded_history_is_a_copy() -> None:
    store = MemoryStore()
    run = record()
    store.commit(Batch(runs=[run], events=rows(run, STARTED)))
    store.load_history("wf-1", "run-1").append(FIRED)
    assert store.load_history("wf-1", "run-1") == [STARTED]


def test_one_batch_spans_many_runs() -> None:
    store = MemoryStore()
    a, b = record("a", "ra"), record("b", "rb")
    batch = Batch(runs=[a])
    batch.extend(Batch(runs=[b], events=[*rows(a, STARTED), *rows(b, STARTED)]))
    assert bool(batch)
    assert not Batch()
    store.commit(batch)
    assert store.load_history("a", "ra") == store.load_history("b", "rb") == [STARTED]
    assert store.commits == 1


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            lambda run: Batch(events=rows(run, TIMER, first=1)),
            "event_id 1 appended, expected 2",
        ),
        (
            lambda run: Batch(events=rows(run, TIMER, first=3)),
            "event_id 3 appended, expected 2",
        ),
        (
            lambda run: Batch(
                events=[*rows(run, FIRED, first=2), *rows(run, FIRED, first=2)]
            ),
            "event_id 2 appended, expected 3",
        ),
        (lambda run: Batch(runs=[run]), "already exists"),
        (
            lambda run: Batch(runs=[record("x", "y"), record("x", "y")]),
            r"run \('x', 'y'\) already exists",
        ),
        (
            lambda run: Batch(events=rows(record("x", "y"), STARTED)),
            "events for unknown run",
        ),
        (
            lambda run: Batch(updates=[RunUpdate("x", "y", status="completed")]),
            "update of unknown run 'x'",
        ),
    ],
)
def test_a_bad_batch_is_refused_and_changes_nothing(
    batch: object, message: str
) -> None:
    store = MemoryStore()
    run = record()
    store.commit(Batch(runs=[run], events=rows(run, STARTED, TIMER)))
    before = snapshot(store)
    bad = batch(run)  # type: ignore[operator]
    # A good part in the same batch must not be written either.
    bad.runs.append(record("new", "run-new"))
    with pytest.raises(fg.HistoryCorruptError, match=message):
        store.commit(bad)
    assert snapshot(store) == before
    assert store.get_run("new") is None


def test_updates_change_only_the_columns_they_set() -> None:
    store = MemoryStore()
    run = record(tags={"stage": "start"})
    store.commit(Batch(runs=[run]))
    store.commit(Batch(updates=[RunUpdate("wf-1", "run-1", tags={"stage": "paid"})]))
    closed_at = T0 + timedelta(hours=1)
    store.commit(
        Batch(
            updates=[
                RunUpdate(
                    "wf-1", "run-1", status="completed", result=[1], closed_at=closed_at
                )
            ]
        )
    )
    updated = store.get_run("wf-1")
    assert updated == attrs.evolve(
        run, status="completed", result=[1], tags={"stage": "paid"}, closed_at=closed_at
    )
    assert updated is not None
    assert updated.is_closed
    error = fg.ErrorInfo("Boom", "x")
    assert apply_update(updated, RunUpdate("wf-1", "run-1", error=error)).error == error
    assert apply_update(updated, RunUpdate("wf-1", "run-1")) == updated


def test_get_run_without_run_id_gives_the_latest_run_of_the_id() -> None:
    store = MemoryStore()
    first = record(status="continued_as_new")
    second = record(run_id="run-2", minutes=5)
    store.commit(Batch(runs=[first]))
    store.commit(Batch(runs=[second]))
    assert store.get_run("wf-1") == second
    assert store.get_run("wf-1", "run-1") == first
    assert store.get_run("wf-1", "run-9") is None
    assert store.get_run("unknown") is None


def test_latest_runs_reads_several_ids_at_once() -> None:
    store = MemoryStore()
    store.commit(Batch(runs=[record(status="continued_as_new")]))
    store.commit(Batch(runs=[record(run_id="run-2", minutes=5)]))
    assert store.latest_runs(["wf-1", "unknown"]) == {"wf-1": store.get_run("wf-1")}


def test_list_runs_filters_by_status_name_and_tags_newest_first() -> None:
    store = MemoryStore()
    runs = [
        record("a", "1", name="order", status="completed", minutes=1, tags={"t": 1}),
        record(
            "b", "2", name="order", status="running", minutes=3, tags={"t": 1, "u": "x"}
        ),
        record("c", "3", name="etl", status="running", minutes=2, tags={"t": 2}),
    ]
    store.commit(Batch(runs=runs))
    ids = lambda found: [r.workflow_id for r in found]  # noqa: E731
    assert ids(store.list_runs()) == ["b", "c", "a"]
    assert ids(store.list_runs(status="running")) == ["b", "c"]
    assert ids(store.list_runs(name="order")) == ["b", "a"]
    assert ids(store.list_runs(tags={"t": 1})) == ["b", "a"]
    assert ids(store.list_runs(tags={"t": 1, "u": "x"})) == ["b"]
    assert ids(store.list_runs(tags={"t": 3})) == []
    assert ids(store.list_runs(name="order", status="completed")) == ["a"]
    assert ids(store.list_runs(limit=2)) == ["b", "c"]
    assert ids(store.list_runs(limit=0)) == []
    assert ids(store.unfinished()) == ["b", "c"]
    store.close()


def test_closed_statuses() -> None:
    assert CLOSED_STATUSES == {
        "completed",
        "failed",
        "cancelled",
        "continued_as_new",
        "terminated",
        "corrupt",  # quarantined by the store: nothing runs it again (issue 10 item 6)
    }
    assert not record(status="running").is_closed
    assert record(status="terminated").is_closed


def test_check_numbering_accepts_0_1_2_and_names_the_first_gap() -> None:
    check_numbering("w", "r", [0, 1, 2])
    check_numbering("w", "r", [])
    with pytest.raises(fg.HistoryCorruptError, match="has event 2 where 1 belongs"):
        check_numbering("w", "r", [0, 2, 3])
    with pytest.raises(fg.HistoryCorruptError, match="has event 0 where 1 belongs"):
        check_numbering("w", "r", [0, 0])


def test_readers_on_other_threads_never_see_a_commit_half_done() -> None:
    # Without a lock, list_runs iterating the runs while a commit adds one failed within
    # a handful of commits ("dictionary changed size during iteration").
    store = MemoryStore()
    store.commit(Batch(runs=[record(f"w{i}", "r") for i in range(20_000)]))
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                store.list_runs(status="running")
                store.unfinished()
            except RuntimeError as exc:  # pragma: no cover  # the failure being tested
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            store.commit(Batch(runs=[record(f"x{i}", "r")]))
    finally:
        done.set()
        reader.join()
    assert errors == []
    assert len(store.unfinished()) == 20_200


# -- pruning (flowgen._runtime.retention states the rules) ----------------------------------


def closed(
    workflow_id: str, run_id: str, *, minutes: int, parent: str | None = None
) -> WorkflowRecord:
    return attrs.evolve(
        record(workflow_id, run_id, minutes=minutes),
        status="completed",
        closed_at=T0 + timedelta(minutes=minutes + 1),
        parent_id=parent,
    )


def started(run: WorkflowRecord) -> fg.WorkflowStarted:
    return fg.WorkflowStarted(
        at=run.started_at, workflow_id=run.workflow_id, run_id=run.run_id, name="order"
    )


def test_prunable_runs_are_closed_before_the_cutoff_oldest_first() -> None:
    store = MemoryStore()
    old_b = closed("b", "b-1", minutes=5)
    old_a = closed("a", "a-1", minutes=1)
    recent = closed("c", "c-1", minutes=100)
    running_parent = record("p", "p-1", minutes=0)
    child_of_running = closed("p/0", "k-1", minutes=0, parent="p")
    child_of_closed = closed("a/0", "k-2", minutes=0, parent="a")
    runs = [old_b, old_a, recent, running_parent, child_of_running, child_of_closed]
    store.commit(Batch(runs=runs))
    cutoff = T0 + timedelta(minutes=50)
    assert store.prunable(cutoff, 10) == ["k-2", "a-1", "b-1"]
    assert store.prunable(cutoff, 2) == ["k-2", "a-1"]


def test_delete_runs_removes_rows_and_events_and_moves_the_latest_back() -> None:
    store = MemoryStore()
    first = closed("wf", "r-1", minutes=0)
    tie = closed("wf", "r-2", minutes=3)
    last = closed("wf", "r-3", minutes=3)  # started with r-2: stored last, it is latest
    other = closed("solo", "s-1", minutes=0)
    store.commit(
        Batch(
            runs=[first, tie, last, other],
            events=rows(last, started(last)) + rows(other, started(other)),
        )
    )
    assert store.get_run("wf") == last
    assert store.delete_runs(["r-3", "s-1", "no-such-run"]) == 2
    assert store.get_run("wf") == tie  # the later of the two left, by started_at
    assert store.get_run("wf", "r-3") is None
    assert store.load_history("wf", "r-3") == []
    assert store.get_run("solo") is None
    assert store.delete_runs(["r-1"]) == 0
    assert store.get_run("wf") == tie
    store.reclaim()  # nothing to do in dicts


def test_a_memory_store_exports_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(fg.UsageError, match="cannot export runs to Parquet"):
        store.check_export()
    with pytest.raises(fg.UsageError, match="cannot export runs to Parquet"):
        store.export_runs(["r-1"], "archive", "stem")


def test_schedules_are_kept_exactly_and_changed_by_compare_and_set() -> None:
    check_schedule_rows(MemoryStore())


# -- what a fleet's store adds to the protocol (PostgreSQL's; tests/test_fleet.py) -------------


def test_fleet_options_refuse_what_no_fleet_can_run_with() -> None:
    assert fg.FleetOptions() == fg.FleetOptions(
        lease=10.0, poll=1.0, claim_batch=64, runs_workflows=True
    )
    with pytest.raises(ValueError, match=r"lease must be > 0 seconds, got 0"):
        fg.FleetOptions(lease=0)
    with pytest.raises(ValueError, match=r"poll must be > 0 seconds, got -1"):
        fg.FleetOptions(poll=-1)
    with pytest.raises(ValueError, match=r"claim_batch must be >= 1, got 0"):
        fg.FleetOptions(claim_batch=0)


def test_lease_lost_is_a_store_error_naming_the_runs() -> None:
    error = fg.LeaseLost("lost two runs", frozenset({"r1", "r2"}))
    assert isinstance(error, fg.StoreError)
    assert error.run_ids == {"r1", "r2"}
    assert str(error) == "lost two runs"
