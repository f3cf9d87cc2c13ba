"""start_many: many runs in shared transactions, all-or-nothing argument checks."""

from __future__ import annotations

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock


@fg.activity(name="start_many.double")
def double(n: int) -> int:
    return 2 * n


@fg.workflow(name="start_many.flow")
def doubling(n: int) -> fg.Workflow[int]:
    return (yield from fg.call(double, n))


def test_start_many_starts_every_run_in_few_transactions() -> None:
    engine = fg.Engine(":memory:", clock=ManualClock())
    try:
        before = engine.commits
        handles = engine.start_many(doubling, [(i,) for i in range(50)])
        assert engine.commits - before < 5  # one batch, not fifty transactions
        engine.run_until_idle()
        assert [h.result() for h in handles] == [2 * i for i in range(50)]
    finally:
        engine.close()


def test_start_many_checks_every_argument_before_writing_anything() -> None:
    engine = fg.Engine(":memory:", clock=ManualClock())
    try:
        with pytest.raises(
            TypeError, match=r"argument 'n' of workflow 'start_many\.flow'"
        ):
            engine.start_many(doubling, [(1,), (object(),)], ids=["a", "b"])
        assert engine.sql("select count(*) from workflows").fetchall() == [(0,)]
    finally:
        engine.close()


def test_start_many_reports_a_conflict_after_starting_the_others() -> None:
    engine = fg.Engine(":memory:", clock=ManualClock())
    try:
        engine.start(doubling, 1, id="taken")
        with pytest.raises(fg.WorkflowAlreadyExists):
            engine.start_many(doubling, [(1,), (2,)], ids=["taken", "free"])
        assert engine.get("free").status() == "running"
    finally:
        engine.close()


@fg.workflow(name="start_many.kid")
def kid(n: int) -> fg.Workflow[int]:
    return (yield from fg.call(double, n))


@fg.workflow(name="start_many.chain")
def chain(n: int) -> fg.Workflow[int]:
    result = yield from fg.child(kid, n)
    if n == 0:
        return result
    yield fg.continue_as_new(n - 1)
    raise AssertionError("unreachable")


def test_each_run_of_a_continue_as_new_chain_can_start_its_child_under_the_same_id() -> (
    None
):
    engine = fg.Engine(":memory:", clock=ManualClock())
    try:
        handle = engine.start(chain, 3, id="chain")
        assert handle.result() == 0
        rows = engine.sql(
            "select status, result from workflows where workflow_id = 'chain/0' order by started_at"
        ).fetchall()
        assert [r[0] for r in rows] == ["completed"] * 4
    finally:
        engine.close()
