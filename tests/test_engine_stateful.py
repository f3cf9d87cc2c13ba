"""A Hypothesis state machine drives a hand-driven engine through random lives.

Rules: start a workflow, let the queued activities complete or fail, deliver a signal,
cancel a run, advance the clock to the next due timer (or by an arbitrary amount), and
restart the engine from its store (close, then reopen on the same store). After every rule:

* every stored history replays from scratch (``fg.replay``) to exactly the engine's current
  view of the run: the same status, the same awaited commands, the same result, and no
  decision that the store does not hold;
* event ids are contiguous and no (run, seq) has two outcomes.

The default test keeps the store in memory across restarts; the slow one reopens a DuckDB
file each time.
"""

from __future__ import annotations

import collections
import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import flowgen as fg
from flowgen._core.interpreter import Interpreter
from flowgen._runtime.clock import ManualClock
from flowgen._runtime.registry import Registry
from flowgen._stores.codec import CODEC
from flowgen._stores.memory import MemoryStore
from flowgen._stores.protocol import Store
from flowgen._vocabulary.commands import describe_command
from tests import workflows as w
from tests.engine_workflows import (
    Tools,
    info_twice,
    long_sleep,
    parent_of_sleepy,
    sleep_then_wait,
    steps,
    wait_for,
)

OUTCOMES = (
    fg.ActivityCompleted,
    fg.ActivityFailed,
    fg.TimerFired,
    fg.ChildCompleted,
    fg.ChildFailed,
    fg.SignalTimedOut,
    fg.SideEffectRecorded,
    fg.SignalSent,
    fg.SignalSendFailed,
    fg.CommandCancelled,
)

STARTS: dict[str, st.SearchStrategy[tuple[Any, tuple[Any, ...]]]] = {
    "steps": st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map(
        lambda keys: (steps, (keys,))
    ),
    "sleep_then_wait": st.sampled_from([1.0, 30.0]).map(
        lambda s: (sleep_then_wait, (s, "go"))
    ),
    "wait_for": st.integers(1, 2).map(lambda n: (wait_for, ("item", n))),
    "info_twice": st.just((info_twice, ("r",))),
    "parent_of_sleepy": st.sampled_from([5.0, 100.0]).map(
        lambda s: (parent_of_sleepy, (s,))
    ),
    "expense": st.just((w.expense, (w.Claim("ada", 1.0),))),
    "book_trip": st.sampled_from(["ada", "declined"]).map(
        lambda who: (w.book_trip, (w.Trip(who, "Rome"),))
    ),
    "long_sleep": st.just((long_sleep, (1.0,))),
}


class EngineLives(RuleBasedStateMachine):
    """One engine after another on one store, driven by hand."""

    def make_store(self) -> Store:
        return MemoryStore()

    def reopen_store(self, store: Store) -> Store:
        return store

    @initialize()
    def open(self) -> None:
        self.clock = ManualClock(autojump=False)
        self.tools = Tools()
        self.registry = Registry()
        self.ids = itertools.count()
        self.store = self.make_store()
        self.engine = self._engine()
        self.started: list[str] = []
        self.calls: dict[str, tuple[Any, tuple[Any, ...]]] = {}

    def _engine(self) -> fg.Engine:
        return fg.Engine(
            store=self.store, clock=self.clock, activities=[self.tools], cache_size=3
        )

    def teardown(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is None:
            return
        try:
            self._everything_settles()
        finally:
            self.engine.close()

    def _everything_settles(self) -> None:
        """Liveness: with time and activities flowing, runs end or wait for a signal."""
        self.clock.autojump = True
        self.engine.run_until_idle(max_steps=10_000)
        for record in self.store.unfinished():
            waits = self.engine.get(record.workflow_id).waiting_for().values()
            assert waits, record.workflow_id
            assert all(
                wait.startswith(("signal wait", "child workflow")) for wait in waits
            ), (record.workflow_id, waits)

    # -- rules ---------------------------------------------------------------------------------

    @rule(data=st.data(), kind=st.sampled_from(sorted(STARTS)))
    def start(self, data: st.DataObject, kind: str) -> None:
        fn, args = data.draw(STARTS[kind])
        workflow_id = f"{kind}-{next(self.ids)}"
        self.engine.start(fn, *args, id=workflow_id)
        self.started.append(workflow_id)
        self.calls[workflow_id] = (fn, args)

    @precondition(lambda self: self.started)
    @rule(
        data=st.data(),
        on_conflict=st.sampled_from(["use_existing", "terminate_existing"]),
    )
    def start_again(self, data: st.DataObject, on_conflict: Any) -> None:
        workflow_id = data.draw(st.sampled_from(self.started))
        fn, args = self.calls[workflow_id]
        before = self.store.get_run(workflow_id)
        assert before is not None
        handle = self.engine.start(fn, *args, id=workflow_id, on_conflict=on_conflict)
        if on_conflict == "use_existing":
            assert handle.run_id == before.run_id
        else:
            assert handle.run_id != before.run_id
            old = self.store.get_run(workflow_id, before.run_id)
            assert old is not None
            assert old.status == (
                "terminated" if before.status == "running" else before.status
            )

    @rule(fail=st.booleans())
    def activities_run(self, fail: bool) -> None:
        """Run what is queued (activities complete, or every attempt fails)."""
        self.tools.fail_all = fail
        self.engine.run_until_idle(max_steps=1)
        self.tools.fail_all = False
        self.engine.run_until_idle(max_steps=1)  # record what they reported

    @precondition(lambda self: self.started)
    @rule(
        data=st.data(),
        name=st.sampled_from(["go", "item", "decision"]),
        payload=st.integers(0, 3),
    )
    def signal(self, data: st.DataObject, name: str, payload: int) -> None:
        workflow_id = data.draw(st.sampled_from(self.started))
        before = self._histories()
        try:
            self.engine.signal(workflow_id, name, payload)
        except fg.WorkflowClosed:
            assert self._histories() == before
            return
        record = self.store.get_run(workflow_id)
        assert record is not None
        last = self.store.load_history(workflow_id, record.run_id)
        assert any(
            isinstance(e, fg.SignalReceived) and e.payload == payload for e in last
        )

    @precondition(lambda self: self.started)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        workflow_id = data.draw(st.sampled_from(self.started))
        try:
            self.engine.cancel(workflow_id, "the machine said so")
        except fg.WorkflowClosed:
            pass

    @rule()
    def clock_to_next_timer(self) -> None:
        due = self._next_due()
        if due is not None:
            self.clock.set(due)
        self.engine.run_until_idle(max_steps=2)

    @rule(seconds=st.sampled_from([0.5, 10.0, 3600.0, 4 * 86400.0]))
    def clock_advances(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.run_until_idle(max_steps=2)

    @rule()
    def restart(self) -> None:
        self.engine.close()
        self.store = self.reopen_store(self.store)
        self.engine = self._engine()

    # -- the invariant -------------------------------------------------------------------------

    def _histories(self) -> dict[tuple[str, str], list[fg.Event]]:
        runs = self.store.list_runs()
        return self.store.load_histories([(r.workflow_id, r.run_id) for r in runs])

    def _next_due(self) -> datetime | None:
        dues = []
        for record in self.store.unfinished():
            history = self.store.load_history(record.workflow_id, record.run_id)
            interp = fg.replay(
                self.registry.workflow(record.name).fn, history, codec=CODEC
            )
            for seq in interp.pending:
                event = interp.scheduled_event(seq)
                if isinstance(event, fg.TimerStarted):
                    dues.append(event.fire_at)
                elif isinstance(event, fg.SignalWaitStarted) and event.deadline:
                    dues.append(event.deadline)
                _, retry_at = interp.attempts(seq)
                if retry_at is not None:
                    dues.append(retry_at)
        return min(dues, default=None)

    @invariant()
    def stored_histories_replay_to_the_engines_view(self) -> None:
        if not hasattr(self, "engine"):
            return
        for record in self.store.list_runs():
            history = self.store.load_history(record.workflow_id, record.run_id)
            self._check_history(record.workflow_id, history)
            interp = Interpreter(self.registry.workflow(record.name).fn, codec=CODEC)
            step = interp.replay(history)
            # Every decision the engine made is in the store: a replay decides nothing new.
            assert step.events == (), (record.workflow_id, step.events)
            assert step.perform == ()
            stored_status = record.status
            if interp.status.is_closed:
                assert interp.status.value == stored_status, record.workflow_id
                if stored_status == "completed":
                    assert CODEC.encode(interp.result, "result") == record.result
                continue
            assert stored_status == "running", record.workflow_id
            latest = self.store.get_run(record.workflow_id)
            assert latest is not None
            if latest.run_id != record.run_id:  # pragma: no cover - no chains here
                continue
            handle = self.engine.get(record.workflow_id)
            assert handle.status() == "running"
            expected = {
                seq: describe_command(c) for seq, c in sorted(interp.pending.items())
            }
            assert handle.waiting_for() == expected, record.workflow_id

    def _check_history(self, workflow_id: str, history: list[fg.Event]) -> None:
        assert isinstance(history[0], fg.WorkflowStarted)
        outcomes = collections.Counter(
            e.seq for e in history if isinstance(e, OUTCOMES)
        )
        assert all(n == 1 for n in outcomes.values()), (workflow_id, outcomes)
        attempts = collections.Counter(
            (e.seq, e.attempt)
            for e in history
            if isinstance(
                e, (fg.ActivityAttemptFailed, fg.ActivityCompleted, fg.ActivityFailed)
            )
        )
        assert all(n == 1 for n in attempts.values()), (workflow_id, attempts)
        indexes = [e.index for e in history if isinstance(e, fg.SignalReceived)]
        assert indexes == list(range(len(indexes))), workflow_id


EngineLives.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None
)
test_engine_lives_on_a_memory_store = EngineLives.TestCase


class EngineLivesOnDuckDB(EngineLives):
    """The same lives, reopening a DuckDB file at every restart."""

    directory: Path

    def make_store(self) -> Store:
        from flowgen._stores.duckdb_store import DuckDBStore

        self.path = str(self.directory / f"lives-{id(self)}-{next(self.ids)}.duckdb")
        return DuckDBStore(self.path)

    def reopen_store(self, store: Store) -> Store:
        from flowgen._stores.duckdb_store import DuckDBStore

        store.close()
        return DuckDBStore(self.path)

    def _check_history(self, workflow_id: str, history: list[fg.Event]) -> None:
        super()._check_history(workflow_id, history)
        gaps = self.store.sql(  # type: ignore[attr-defined]
            "select run_id from events where workflow_id = ? group by run_id "
            "having min(event_id) <> 0 or max(event_id) <> count(*) - 1",
            [workflow_id],
        ).fetchall()
        assert gaps == []


@pytest.mark.slow
def test_engine_lives_on_a_duckdb_file(tmp_path: Path) -> None:
    EngineLivesOnDuckDB.directory = tmp_path
    EngineLivesOnDuckDB.TestCase.settings = settings(
        max_examples=30, stateful_step_count=25, deadline=None
    )
    EngineLivesOnDuckDB.TestCase().runTest()
