"""Store faults: commits and reads that fail at seeded points.

`FaultyStore` wraps a `MemoryStore`; while faults are on, each commit and each read raises
`StoreError` with a seeded probability. It records every activity call whose
``activity_scheduled`` event was committed, and the activities check, when they run, that
theirs was: the engine must never act on a decision that is not durable. Callers of
``start`` and ``signal`` that get an error must find nothing of their call in the store; they
retry, as a client would. Once faults stop, every workflow completes with the right result.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._runtime.registry import Registry
from flowgen._stores.codec import CODEC
from flowgen._stores.memory import MemoryStore
from flowgen._stores.protocol import Batch, WorkflowRecord
from tests import workflows as w
from tests.engine_workflows import Tools, info_twice, steps, wait_for

# ---------------------------------------------------------------------------------------------
# The faulty store and the activities that check it.


class FaultyStore:
    """A `MemoryStore` whose commits and reads fail at seeded points."""

    def __init__(
        self,
        seed: int,
        *,
        commit_rate: float = 0.3,
        read_rate: float = 0.15,
        max_faults: int | None = None,
    ) -> None:
        self.inner = MemoryStore()
        self.rng = random.Random(seed)
        self.commit_rate = commit_rate
        self.read_rate = read_rate
        self.faults = True
        self.lock = threading.Lock()
        self.scheduled: set[tuple[str, str, int]] = set()
        self.failed_commits = 0
        self.failed_reads = 0
        self.max_faults = max_faults  # faults stop by themselves after this many

    def _fail(self, what: str, rate: float) -> None:
        with self.lock:
            fail = self.faults and self.rng.random() < rate
            if fail:
                if what == "commit":
                    self.failed_commits += 1
                else:
                    self.failed_reads += 1
                total = self.failed_commits + self.failed_reads
                if self.max_faults is not None and total >= self.max_faults:
                    self.faults = False
        if fail:
            raise fg.StoreError(f"injected {what} failure")

    def commit(self, batch: Batch) -> None:
        self._fail("commit", self.commit_rate)
        self.inner.commit(batch)
        with self.lock:
            for row in batch.events:
                if isinstance(row.event, fg.ActivityScheduled):
                    self.scheduled.add((row.workflow_id, row.run_id, row.event.seq))

    def load_history(self, workflow_id: str, run_id: str) -> list[fg.Event]:
        self._fail("read", self.read_rate)
        return self.inner.load_history(workflow_id, run_id)

    def load_histories(
        self, runs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[fg.Event]]:
        self._fail("read", self.read_rate)
        return self.inner.load_histories(runs)

    def get_run(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowRecord | None:
        self._fail("read", self.read_rate)
        return self.inner.get_run(workflow_id, run_id)

    def list_runs(self, **kwargs: Any) -> list[WorkflowRecord]:
        self._fail("read", self.read_rate)
        return self.inner.list_runs(**kwargs)

    def unfinished(self) -> list[WorkflowRecord]:
        self._fail("read", self.read_rate)
        return self.inner.unfinished()

    def close(self) -> None:
        self.inner.close()


class CheckedTools(Tools):
    """`Tools` whose every execution checks that its call was committed first."""

    def __init__(self, store: FaultyStore) -> None:
        super().__init__()
        self.store = store
        self.uncommitted: list[tuple[str, str, int]] = []

    def _enter(self, name: str, key: str) -> None:
        info = fg.activity_info()
        call = (info.workflow_id, info.run_id, info.seq)
        with self.store.lock:
            if call not in self.store.scheduled:
                self.uncommitted.append(call)
        super()._enter(name, key)


def retrying(call: Any, check_unchanged: Any = None) -> Any:
    """Call *call* until the store lets it through, as a client would; count the errors."""
    for _ in range(200):
        try:
            return call()
        except fg.StoreError:
            if check_unchanged is not None:
                check_unchanged()
    raise AssertionError("the store never let the call through")


def open_engine(store: FaultyStore, clock: ManualClock, tools: Tools) -> fg.Engine:
    return retrying(
        lambda: fg.Engine(store=store, clock=clock, activities=[tools], cache_size=2)
    )


# ---------------------------------------------------------------------------------------------


WORKLOAD = [
    ("chain-a", steps, (["a1", "a2", "a3"],)),
    ("chain-b", steps, (["b1", "b2"],)),
    ("signals", wait_for, ("item", 3)),
    ("retrying", info_twice, ("r",)),
    ("order", w.process_order, ("o-1",)),
    ("trip", w.book_trip, (w.Trip("declined", "Rome"),)),
    ("parent", w.parent_of_child, (4,)),
    ("expense", w.expense, (w.Claim("ada", 3.0),)),
    ("sync", w.sync_customers, (None, 0, 1)),
]


def run_with_faults(seed: int, *, restarts: bool) -> FaultyStore:
    w.reset_activity_state()
    store = FaultyStore(seed)
    tools = CheckedTools(store)
    tools.failures["r"] = 1
    clock = ManualClock()
    engine = open_engine(store, clock, tools)
    rng = random.Random(seed)

    def nothing_of(workflow_id: str) -> Any:
        def check() -> None:
            assert store.inner.get_run(workflow_id) is None, (
                "a failed start was written"
            )

        return check

    for workflow_id, fn, args in WORKLOAD:
        retrying(
            lambda e=engine, fn=fn, args=args, workflow_id=workflow_id: e.start(
                fn, *args, id=workflow_id, on_conflict="use_existing"
            ),
            nothing_of(workflow_id),
        )
        engine.run_until_idle(max_steps=rng.randint(0, 4))
        if restarts and rng.random() < 0.3:
            engine.close()
            engine = open_engine(store, clock, tools)

    for n in range(3):
        signals_before = len(
            store.inner.load_history("signals", run_of(store, "signals"))
        )

        def unchanged(before: int = signals_before) -> None:
            history = store.inner.load_history("signals", run_of(store, "signals"))
            assert len(history) == before, "a failed signal was written"

        retrying(lambda e=engine, n=n: e.signal("signals", "item", n), unchanged)
        engine.run_until_idle(max_steps=rng.randint(0, 4))
    retrying(lambda: engine.signal("expense", "decision", "approved"))
    for _ in range(20):
        engine.run_until_idle(max_steps=rng.randint(1, 6))
        if restarts and rng.random() < 0.2:
            engine.close()
            engine = open_engine(store, clock, tools)

    # Faults stop: everything completes.
    store.faults = False
    engine.run_until_idle()
    results = {}
    for workflow_id, _, _ in WORKLOAD:
        try:
            results[workflow_id] = engine.get(workflow_id).result()
        except fg.WorkflowFailed as exc:
            results[workflow_id] = exc.error.type
    engine.close()

    assert tools.uncommitted == []
    assert results["chain-a"] == ["done a1", "done a2", "done a3"]
    assert results["chain-b"] == ["done b1", "done b2"]
    assert results["signals"] == [0, 1, 2]
    assert results["retrying"] == "done r"
    assert str(results["order"]).startswith("TRK-")
    assert results["trip"] == "ActivityError"
    assert results["parent"] == 9
    assert results["expense"] == "approved"
    assert results["sync"] == len(w.CUSTOMERS)
    registry = Registry()
    for record in store.inner.list_runs():
        history = store.inner.load_history(record.workflow_id, record.run_id)
        assert record.status != "running", record.workflow_id
        replayed = fg.replay(registry.workflow(record.name).fn, history, codec=CODEC)
        assert replayed.status.value == record.status, record.workflow_id
        received = [e.payload for e in history if isinstance(e, fg.SignalReceived)]
        assert len(received) == len(set(map(repr, received))), record.workflow_id
    return store


def run_of(store: FaultyStore, workflow_id: str) -> str:
    record = store.inner.get_run(workflow_id)
    assert record is not None
    return record.run_id


@pytest.mark.parametrize("seed", range(6))
def test_commit_and_read_faults_never_act_on_uncommitted_decisions(seed: int) -> None:
    store = run_with_faults(seed, restarts=False)
    assert store.failed_commits > 0
    assert store.failed_reads > 0


@pytest.mark.parametrize("seed", range(6))
def test_faults_across_engine_restarts_still_complete_every_workflow(seed: int) -> None:
    store = run_with_faults(100 + seed, restarts=True)
    assert store.failed_commits > 0


@pytest.mark.parametrize("seed", range(3))
def test_faults_in_a_background_engine_are_retried_until_everything_completes(
    seed: int,
) -> None:
    store = FaultyStore(seed, commit_rate=0.4, read_rate=0.2, max_faults=25)
    tools = CheckedTools(store)
    workload = [
        ("chain", steps, (["x", "y", "z"],)),
        ("signals", wait_for, ("item", 2)),
        ("parent", w.parent_of_child, (20,)),
        ("trip", w.book_trip, (w.Trip("declined", "Oslo"),)),
        ("etl", w.nightly_etl, (["a", "bb", "ccc"],)),
    ]
    engine = retrying(lambda: fg.Engine(store=store, activities=[tools], max_workers=4))
    with engine:
        for workflow_id, fn, args in workload:
            retrying(
                lambda fn=fn, args=args, workflow_id=workflow_id: engine.start(
                    fn, *args, id=workflow_id, on_conflict="use_existing"
                )
            )
        for n in range(2):
            retrying(lambda n=n: engine.signal("signals", "item", n))
        results = {}
        for workflow_id, _, _ in workload:
            handle = engine.get(workflow_id) if not store.faults else None
            try:
                results[workflow_id] = retrying(
                    lambda workflow_id=workflow_id, handle=handle: (
                        handle or engine.get(workflow_id)
                    ).result(timeout=30)
                )
            except fg.WorkflowFailed as exc:
                results[workflow_id] = exc.error.type
    assert tools.uncommitted == []
    assert store.failed_commits + store.failed_reads > 0
    assert results == {
        "chain": ["done x", "done y", "done z"],
        "signals": [0, 1],
        "parent": 41,
        "trip": "ActivityError",
        "etl": 600,
    }
