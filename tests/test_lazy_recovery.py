"""Reopening a file holds parked runs without replaying them (issue 10, item 10).

A run parked on a signal with no deadline has nothing for recovery to resume; it is held
as if evicted and replayed only when something comes for it. Everything else a run waits
for (timers, deadlines, activities, children) is resumed at open, as before.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, strategies as st

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.duckdb_store import DuckDBStore
from flowgen._stores.parked import ParkedRun, parked_run
from flowgen._stores.protocol import Batch, EventRow, WorkflowRecord
from flowgen._vocabulary.events import Event, WorkflowStarted
from tests.strategies import EVENT_CLASSES, aware_datetimes, events_of, examples

entered: Counter[str] = Counter()  # how often each workflow's body began (a replay too)


@fg.activity(name="lazy.double")
def double(n: int) -> int:
    return 2 * n


@fg.workflow(name="lazy.parked")
def parked_flow(n: int) -> Any:
    entered["parked"] += 1
    n = yield fg.call(double, n)
    value = yield fg.wait_signal("go")
    return n + int(value)


@fg.workflow(name="lazy.timed")
def timed_flow() -> Any:
    entered["timed"] += 1
    return (yield fg.wait_signal("go", timeout=timedelta(hours=1)))


@fg.workflow(name="lazy.sleeper")
def sleeper() -> Any:
    entered["sleeper"] += 1
    yield fg.sleep(timedelta(hours=1))
    return "woke"


WORKFLOWS = [parked_flow, timed_flow, sleeper]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(autojump=False)


def engine_on(path: Path, clock: ManualClock, workflows: list[Any]) -> fg.Engine:
    """A hand-driven engine (the test moves its clock and runs its work)."""
    return fg.Engine(path, clock=clock, workflows=workflows)


def test_parked_runs_are_not_replayed_on_open_and_finish_when_signalled(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "lazy.duckdb"
    engine = engine_on(path, clock, WORKFLOWS)
    for i in range(5):
        engine.start(parked_flow, i, id=f"p-{i}")
    engine.start(timed_flow, id="t")
    engine.start(sleeper, id="s")
    engine.run_until_idle()
    engine.close()
    entered.clear()

    engine = engine_on(path, clock, WORKFLOWS)
    try:
        # Only the runs with a deadline or a timer were replayed to arm them.
        assert entered == Counter(timed=1, sleeper=1)
        assert engine.get("p-3").status() == "running"
        engine.signal("p-3", "go", 100)
        assert engine.get("p-3").result(timeout=30) == 106
        assert entered["parked"] == 1  # rebuilt by replay when its signal came
        clock.advance(timedelta(hours=2))
        engine.run_until_idle()
        assert engine.get("s").result(timeout=30) == "woke"
        assert engine.get("t").status() == "failed"  # its deadline passed
        for i in (0, 1, 2, 4):
            engine.signal(f"p-{i}", "go", 1)
        assert [engine.get(f"p-{i}").result(timeout=30) for i in range(5)] == [
            1,
            3,
            5,
            106,
            9,
        ]
    finally:
        engine.close()


def test_a_held_run_finds_out_its_code_is_missing_and_keeps_its_signal(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "held.duckdb"

    def orphan() -> Any:
        return int((yield fg.wait_signal("go"))) * 21

    engine = engine_on(path, clock, [fg.workflow(name="lazy.orphan")(orphan)])
    engine.start(orphan, id="p")
    engine.run_until_idle()
    engine.close()
    # A process without the workflow's code (e.g. a worker for other workflows).
    fg._core.dsl.WORKFLOWS.pop("lazy.orphan")
    engine = engine_on(path, clock, [sleeper])
    handle = engine.get("p")
    assert isinstance(handle.stuck(), fg.UnknownWorkflow)
    engine.signal("p", "go", 2)  # acknowledged, recorded while stuck
    engine.run_until_idle()
    assert handle.status() == "running"
    engine.close()
    engine = engine_on(path, clock, [fg.workflow(name="lazy.orphan")(orphan)])
    try:
        engine.run_until_idle()
        assert engine.get("p").result(timeout=30) == 42
    finally:
        engine.close()
        fg._core.dsl.WORKFLOWS.pop("lazy.orphan")


def test_a_cancel_reaches_a_held_run(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "cancel.duckdb"
    engine = engine_on(path, clock, WORKFLOWS)
    engine.start(parked_flow, 1, id="p")
    engine.run_until_idle()
    engine.close()
    engine = engine_on(path, clock, WORKFLOWS)
    engine.cancel("p", reason="not needed")
    engine.run_until_idle()
    assert engine.get("p").status() == "cancelled"
    engine.close()


# -- the rule's two forms agree -------------------------------------------------------------

_SMALL_SEQ = st.integers(0, 3)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """A workflow_started then any events, their seqs drawn from a few (to collide)."""
    first = draw(events_of(WorkflowStarted))
    rest = draw(
        st.lists(
            st.sampled_from(
                [cls for cls in EVENT_CLASSES if cls is not WorkflowStarted]
            ).flatmap(events_of),
            max_size=8,
        )
    )
    rest = [
        attrs.evolve(e, seq=draw(_SMALL_SEQ)) if hasattr(e, "seq") else e for e in rest
    ]
    return [first, *rest]


@examples(0.3, at_least=20)
@given(st.lists(histories(), min_size=1, max_size=6), aware_datetimes)
def test_the_sql_rule_and_the_python_rule_agree(
    runs: list[list[Event]], started_at: Any
) -> None:
    store = DuckDBStore(":memory:", journal=False)
    try:
        batch = Batch(
            runs=[
                WorkflowRecord(
                    f"wf-{i}", f"run-{i}", "any", "running", [], {}, started_at
                )
                for i in range(len(runs))
            ],
            events=[
                EventRow(f"wf-{i}", f"run-{i}", n, event)
                for i, history in enumerate(runs)
                for n, event in enumerate(history)
            ],
        )
        store.commit(batch)
        expected: dict[tuple[str, str], ParkedRun] = {}
        for i, history in enumerate(runs):
            found = parked_run(history)
            if found is not None:
                expected[f"wf-{i}", f"run-{i}"] = found
        assert store.parked_runs() == expected
    finally:
        store.close()
