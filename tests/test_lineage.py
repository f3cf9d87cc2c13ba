"""Reset and retry (`Engine.reset`, `Engine.retry`): a new run made from a closed one.

Each behaviour runs on the three stores: by hand on a MemoryStore, on a DuckDB file and on
PostgreSQL (the tests' own server, tests/pg.py), through the public API. The durable ones
close the engine in the middle and reopen the file (or database).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.memory import MemoryStore
from tests.engine_workflows import Tools, sleepy_child, snapshot, steps

STORES = ["memory", "duckdb", "postgres"]


@pytest.fixture
def tools() -> Iterator[Tools]:
    tools = Tools()
    yield tools
    tools.release_all()


@pytest.fixture(params=STORES)
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the engines of a test keep their runs: ``memory``, a file or a database."""
    if request.param == "memory":
        return "memory"
    if request.param == "duckdb":
        return str(tmp_path / "lineage.duckdb")
    return str(request.getfixturevalue("pg_url"))


class Engines:
    """Opens the engines of one test on *where* (one MemoryStore survives a 'reopen')."""

    def __init__(self, where: str, tools: Tools) -> None:
        self.where = where
        self.tools = tools
        self.clock = ManualClock()
        self.memory = MemoryStore() if where == "memory" else None
        self.open: list[fg.Engine] = []

    def __call__(self, **kwargs: Any) -> fg.Engine:
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("activities", [self.tools])
        if self.memory is not None:
            engine = fg.Engine(store=self.memory, **kwargs)
        else:
            engine = fg.Engine(self.where, **kwargs)
        self.open.append(engine)
        return engine


@pytest.fixture
def engines(where: str, tools: Tools) -> Iterator[Engines]:
    made = Engines(where, tools)
    yield made
    for engine in made.open:
        engine.close()


@fg.workflow
def fan_out(keys: list[str]) -> fg.Workflow[list[str]]:
    """One ``Tools.work`` per key, all at once; then one more after them."""
    done = yield fg.gather(*(fg.call(Tools.work, key) for key in keys))
    last = yield from fg.call(Tools.work, "last")
    return [*done, last]


@fg.workflow
def wait_then_work(key: str) -> fg.Workflow[list[object]]:
    """Wait for ``go``, then call ``Tools.work``."""
    got = yield fg.wait_signal("go")
    done = yield from fg.call(Tools.work, key)
    return [got, done]


def kinds(history: list[fg.Event]) -> list[str]:
    return [type(event).__name__ for event in history]


def failed_steps_run(engine: fg.Engine, tools: Tools) -> fg.WorkflowHandle:
    """A run of `steps` over a, b, c whose ``b`` fails for good (4 attempts)."""
    tools.failures["b"] = 100
    handle = engine.start(steps, ["a", "b", "c"], id="order-1")
    engine.run_until_idle()
    assert handle.status() == "failed"
    tools.failures["b"] = 0
    return handle


# -- reset ------------------------------------------------------------------------------------


def test_reset_copies_the_events_up_to_k_then_runs_live(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    old = failed_steps_run(engine, tools)
    old_history = old.history()
    assert kinds(old_history)[:4] == [
        "WorkflowStarted",
        "ActivityScheduled",  # a
        "ActivityCompleted",
        "ActivityScheduled",  # b, which failed after this
    ]

    new = engine.reset("order-1", event_id=3)
    engine.run_until_idle()

    assert new.result() == ["done a", "done b", "done c"]
    assert new.run_id != old.run_id
    history = new.history()
    assert history[1:4] == old_history[1:4]  # copied as recorded, times included
    started = history[0]
    assert isinstance(started, fg.WorkflowStarted)
    assert started.run_id == new.run_id
    assert (started.origin_kind, started.origin_run_id, started.origin_event) == (
        "reset",
        old.run_id,
        3,
    )
    assert started.at == old_history[0].at
    # a was not run again; b was (its first attempt in the new run), then c.
    assert len(tools.runs_of("work", "a")) == 1
    assert [info.attempt for info in tools.runs_of("work", "b")][-1] == 1
    # The earlier run is kept as it was; the id's latest run is the new one.
    assert engine.get("order-1").run_id == new.run_id
    assert old.status() == "completed"  # the handle follows the id...
    kept = engine.store.get_run("order-1", old.run_id)
    assert kept is not None and kept.status == "failed"  # ...the row stays
    assert engine.store.load_history("order-1", old.run_id) == old_history


def test_reset_inside_a_gather_goes_back_to_the_step_that_scheduled_it(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    tools.failures["last"] = 100
    old = engine.start(fan_out, ["x", "y", "z"], id="fan-1")
    engine.run_until_idle()
    assert old.status() == "failed"
    tools.failures["last"] = 0
    old_history = old.history()
    assert kinds(old_history)[:4] == ["WorkflowStarted", *["ActivityScheduled"] * 3]

    new = engine.reset("fan-1", event_id=2)  # between two activities of one gather
    engine.run_until_idle()

    history = new.history()
    started = history[0]
    assert isinstance(started, fg.WorkflowStarted)
    assert started.origin_event == 0  # back to the event the gather reacted to
    # The step is decided again, the same way.
    assert kinds(history)[:4] == ["WorkflowStarted", *["ActivityScheduled"] * 3]
    assert [e.name for e in history[1:4]] == [e.name for e in old_history[1:4]]  # type: ignore[attr-defined]
    assert new.result() == ["done x", "done y", "done z", "done last"]


def test_reset_on_the_last_decision_of_a_step_keeps_all_of_it(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    tools.failures["last"] = 100
    old = engine.start(fan_out, ["x", "y"], id="fan-2")
    engine.run_until_idle()
    tools.failures["last"] = 0

    new = engine.reset("fan-2", event_id=2)  # the gather's last activity_scheduled
    engine.run_until_idle()

    started = new.history()[0]
    assert isinstance(started, fg.WorkflowStarted)
    assert started.origin_event == 2
    assert new.history()[1:3] == old.history()[1:3]
    assert new.result() == ["done x", "done y", "done last"]


def test_reset_before_a_signal_waits_for_it_again(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    old = engine.start(wait_then_work, "k", id="waiter")
    engine.run_until_idle()
    engine.signal("waiter", "go", "first")
    engine.run_until_idle()
    assert old.result() == ["first", "done k"]

    new = engine.reset("waiter", event_id=1)  # signal_wait_started: before the signal
    engine.run_until_idle()
    assert new.status() == "running"
    engine.signal("waiter", "go", "second")
    engine.run_until_idle()
    assert new.result() == ["second", "done k"]


def test_a_reset_run_survives_a_restart_before_it_moves(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    old_history = failed_steps_run(engine, tools).history()
    new = engine.reset("order-1", event_id=3)  # b in flight in the new run
    engine.close()  # before the new run's activity ran
    assert not tools.runs_of("work", "c")

    reopened = engines()
    reopened.run_until_idle()
    handle = reopened.get("order-1")
    assert handle.run_id == new.run_id
    assert handle.result() == ["done a", "done b", "done c"]
    assert handle.history()[1:4] == old_history[1:4]


# -- retry ------------------------------------------------------------------------------------


def test_retry_starts_a_fresh_run_with_the_same_arguments(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    old = failed_steps_run(engine, tools)

    new = engine.retry("order-1")
    engine.run_until_idle()

    assert new.result() == ["done a", "done b", "done c"]
    started = new.history()[0]
    assert isinstance(started, fg.WorkflowStarted)
    assert started.args == [["a", "b", "c"]]
    assert (started.origin_kind, started.origin_run_id, started.origin_event) == (
        "retry",
        old.run_id,
        None,
    )
    assert len(tools.runs_of("work", "a")) == 2  # everything ran again
    kept = engine.store.get_run("order-1", old.run_id)
    assert kept is not None and kept.status == "failed"


def test_retry_survives_a_restart(engines: Engines, tools: Tools) -> None:
    engine = engines()
    failed_steps_run(engine, tools)
    new = engine.retry("order-1")
    engine.close()

    reopened = engines()
    reopened.run_until_idle()
    assert reopened.get("order-1").run_id == new.run_id
    assert reopened.get("order-1").result() == ["done a", "done b", "done c"]


def test_a_retry_of_a_reset_run_chains_the_lineage(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    first = failed_steps_run(engine, tools)
    tools.failures["b"] = 100
    second = engine.reset("order-1", event_id=3)
    engine.run_until_idle()
    assert second.status() == "failed"
    tools.failures["b"] = 0
    third = engine.retry("order-1")
    engine.run_until_idle()
    chain = [third.history()[0]]
    # (a handle follows its id: the second run's history is read by its run id)
    chain.append(engine.store.load_history("order-1", second.run_id)[0])
    assert [(s.origin_kind, s.origin_run_id) for s in chain] == [  # type: ignore[attr-defined]
        ("retry", second.run_id),
        ("reset", first.run_id),
    ]
    if isinstance(engine.store, fg.DuckDBStore):
        rows = engine.sql(LINEAGE_QUERY, [third.run_id]).fetchall()
        assert rows == [
            (third.run_id, "retry", second.run_id, None, 0),
            (second.run_id, "reset", first.run_id, 3, 1),
            (first.run_id, None, None, None, 2),
        ]


LINEAGE_QUERY = """
WITH RECURSIVE origins AS (
    SELECT run_id, payload->>'origin_kind' AS origin_kind,
           payload->>'origin_run_id' AS origin_run_id,
           (payload->>'origin_event')::INTEGER AS origin_event
    FROM events WHERE kind = 'workflow_started'
),
lineage AS (
    SELECT *, 0 AS depth FROM origins WHERE run_id = ?
    UNION ALL
    SELECT o.*, l.depth + 1 FROM origins o JOIN lineage l ON o.run_id = l.origin_run_id
)
SELECT run_id, origin_kind, origin_run_id, origin_event, depth FROM lineage ORDER BY depth
"""
"""A run's ancestors, nearest first (docs/sql.md has the same walk, from the roots)."""


# -- which runs, and bad requests --------------------------------------------------------------


def test_a_running_run_is_refused_unless_terminate(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    old = engine.start(wait_then_work, "k", id="waiter")
    engine.run_until_idle()
    before = snapshot(engine.store)

    with pytest.raises(fg.WorkflowStillRunning, match="'waiter' is running"):
        engine.reset("waiter", event_id=1)
    with pytest.raises(fg.WorkflowStillRunning, match="terminate=True"):
        engine.retry("waiter")
    assert snapshot(engine.store) == before

    new = engine.retry("waiter", terminate=True)
    engine.run_until_idle()
    kept = engine.store.get_run("waiter", old.run_id)
    assert kept is not None and kept.status == "terminated"
    assert kept.error is not None and "terminated by a retry" in str(kept.error)
    assert new.status() == "running"
    engine.signal("waiter", "go", 1)
    engine.run_until_idle()
    assert new.result() == [1, "done k"]


def test_reset_with_terminate_copies_the_running_runs_events(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    tools.failures["b"] = 100
    old = engine.start(steps, ["a", "b"], id="order-2")
    # Only the start: b fails and is retried later, by the manual clock.
    engine.run_until_idle(max_steps=3)
    assert old.status() == "running"
    tools.failures["b"] = 0
    new = engine.reset("order-2", event_id=2, terminate=True)
    engine.run_until_idle()
    assert engine.store.get_run("order-2", old.run_id).status == "terminated"  # type: ignore[union-attr]
    assert new.result() == ["done a", "done b"]


def test_bad_requests_change_nothing(engines: Engines, tools: Tools) -> None:
    engine = engines()
    old = failed_steps_run(engine, tools)
    count = len(old.history())
    before = snapshot(engine.store)

    with pytest.raises(fg.UnknownWorkflow, match="no workflow with id 'nope'"):
        engine.reset("nope", event_id=1)
    with pytest.raises(fg.UnknownWorkflow, match="no workflow with id 'nope'"):
        engine.retry("nope")
    with pytest.raises(fg.UnknownWorkflow, match="run id 'r-x'"):
        engine.retry("order-1", run_id="r-x")
    with pytest.raises(ValueError, match=r"event_id must be between 0 and \d+"):
        engine.reset("order-1", event_id=-1)
    with pytest.raises(ValueError, match=f"the run has {count} events"):
        engine.reset("order-1", event_id=count + 5)
    with pytest.raises(ValueError, match=r"\(workflow_failed\) ends it"):
        engine.reset("order-1", event_id=count - 1)  # the closing event
    with pytest.raises(TypeError, match="event_id must be an int"):
        engine.reset("order-1", event_id="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event_id must be an int"):
        engine.reset("order-1", event_id=True)
    with pytest.raises(ValueError, match="must not be empty"):
        engine.retry("")
    assert snapshot(engine.store) == before


def test_an_older_run_can_be_reset_by_its_run_id(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    first = failed_steps_run(engine, tools)
    second = engine.retry("order-1")
    engine.run_until_idle()
    assert second.result() == ["done a", "done b", "done c"]

    third = engine.reset("order-1", event_id=2, run_id=first.run_id)
    engine.run_until_idle()
    started = third.history()[0]
    assert isinstance(started, fg.WorkflowStarted)
    assert started.origin_run_id == first.run_id
    assert third.result() == ["done a", "done b", "done c"]


def test_reset_and_retry_in_the_background(tmp_path: Path, tools: Tools) -> None:
    tools.failures["b"] = 100
    once = fg.RetryPolicy(
        max_attempts=1
    )  # fails for good at once: no retry to wait for
    path = str(tmp_path / "bg.duckdb")
    with fg.Engine(path, activities=[tools], retry=once) as engine:
        old = engine.start(steps, ["a", "b"], id="bg-1")
        with pytest.raises(fg.WorkflowFailed):
            old.result(timeout=30)
        tools.failures["b"] = 0
        reset = engine.reset("bg-1", event_id=3)
        assert reset.result(timeout=30) == ["done a", "done b"]
        retried = engine.retry("bg-1")
        assert retried.result(timeout=30) == ["done a", "done b"]


@fg.workflow
def parent_then_fail(seconds: float) -> fg.Workflow[str]:
    """A child that sleeps, then a signal ``go`` that must be true."""
    woke = yield from fg.child(sleepy_child, seconds)  # id "<parent id>/0"
    go = yield fg.wait_signal("go")
    if not go:
        raise RuntimeError("told to fail")
    return str(woke)


def test_a_reset_that_would_wait_for_a_pruned_child_is_refused(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    parent = engine.start(parent_then_fail, 1.0, id="p")
    engine.run_until_idle()  # the child slept and completed; the parent waits for go
    engines.clock.advance(timedelta(days=40))
    engine.signal("p", "go", False)
    engine.run_until_idle()
    assert parent.status() == "failed"
    history = parent.history()
    started_child = next(
        i for i, e in enumerate(history) if isinstance(e, fg.ChildStarted)
    )
    child_done = next(
        i for i, e in enumerate(history) if isinstance(e, fg.ChildCompleted)
    )
    # The child closed 40 days before its parent: it goes, the parent stays.
    assert engine.prune("30d").runs == 1
    assert engine.store.get_run("p/0") is None
    before = snapshot(engine.store)

    with pytest.raises(ValueError, match=r"child 'p/0' .* pruned"):
        engine.reset("p", event_id=started_child)
    assert snapshot(engine.store) == before

    # A copy that holds the child's outcome needs no row of it.
    again = engine.reset("p", event_id=child_done)
    engine.run_until_idle()
    engine.signal("p", "go", True)
    engine.run_until_idle()
    assert again.result() == "woke"


def test_the_notebook_rendering_names_the_origin(
    engines: Engines, tools: Tools
) -> None:
    engine = engines()
    old = failed_steps_run(engine, tools)
    new = engine.reset("order-1", event_id=3)
    engine.run_until_idle()
    html = new._repr_html_()
    assert f"reset from run {old.run_id}: its events 0..3 replayed" in html
    retried = engine.retry("order-1")
    assert f"a retry of run {new.run_id}" in retried._repr_html_()
    assert "origin" not in engine.start(steps, [], id="plain")._repr_html_()
