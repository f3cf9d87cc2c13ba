"""``yield fg.wait_condition(predicate, timeout=...)``: waiting on state an update changes.

Through the public API: the Stepper (by hand), the engine on a DuckDB file with a restart in
the middle (tests/test_engine_postgres.py runs every test here that takes ``path`` again on
PostgreSQL), and replay: a condition already true answers at once and records nothing; one
that an update handler makes true wakes the main code with ``True``; its timeout is a
recorded timer whose firing answers ``False``, cancelled (reason ``"condition"``) when the
condition comes first; a handler may wait on what the main code sets; a predicate that
raises throws into the waiting code; a cancel reaches a waiting run; bad arguments are
refused before anything is recorded.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from tests.engine_workflows import open_engine


@fg.workflow(name="cond_approval")
def approval(timeout: float | None) -> fg.Workflow[dict[str, Any]]:
    """Waits until an ``approve`` update came in (or *timeout* ran out)."""
    state = {"approved_by": ""}

    def approve(who: str) -> str:
        state["approved_by"] = who
        return "ok"

    yield fg.on_update("approve", approve)
    met = yield fg.wait_condition(lambda: bool(state["approved_by"]), timeout=timeout)
    return {"met": met, "by": state["approved_by"]}


@fg.workflow(name="cond_already")
def already_true() -> fg.Workflow[bool]:
    """A condition already true: answered at once."""
    ready = True
    met = yield fg.wait_condition(lambda: ready, timeout=60)
    return met


@fg.workflow(name="cond_counter")
def counter(target: int) -> fg.Workflow[int]:
    """Counts ``bump`` updates; a handler waits until the main code has seen *target*."""
    state = {"count": 0, "seen": 0}

    def bump() -> int:
        state["count"] += 1
        return state["count"]

    def wait_seen(n: int) -> Generator[Any, Any, str]:
        yield fg.wait_condition(lambda: state["seen"] >= n)
        return f"seen {n}"

    yield fg.on_update("bump", bump)
    yield fg.on_update("wait_seen", wait_seen)
    while state["seen"] < target:
        yield fg.wait_condition(lambda: state["count"] > state["seen"])
        state["seen"] += 1
    yield fg.sleep(10)  # the handlers waiting on "seen" are woken before this
    return state["seen"]


@fg.workflow(name="cond_raises")
def raises() -> fg.Workflow[str]:
    """A predicate that raises once an update set a bad value."""
    state: dict[str, Any] = {"value": None}

    def put(value: Any) -> None:
        state["value"] = value

    yield fg.on_update("put", put)
    try:
        yield fg.wait_condition(
            lambda: 10 / state["value"] > 1 if state["value"] is not None else False
        )
    except ZeroDivisionError:
        return "caught ZeroDivisionError"
    return "met"


@fg.workflow(name="cond_cancel")
def cancellable() -> fg.Workflow[str]:
    """Waits forever on a condition; a cancel ends the wait."""
    try:
        yield fg.wait_condition(lambda: False, timeout=timedelta(days=1))
    except fg.Cancelled:
        return "cancelled"
    return "met"


@fg.workflow(name="cond_handler_timeout")
def handler_timeout() -> fg.Workflow[str]:
    """A handler waits (with a timeout) on a flag the main code sets after a sleep."""
    state = {"flag": False}

    def await_flag(seconds: float) -> Generator[Any, Any, bool]:
        met = yield fg.wait_condition(lambda: state["flag"], timeout=seconds)
        return met

    yield fg.on_update("await_flag", await_flag)
    yield fg.sleep(50)
    state["flag"] = True
    yield fg.sleep(500)
    return "done"


@fg.workflow(name="cond_odd")
def odd_waits() -> fg.Workflow[str]:
    """A predicate that raises at once."""
    try:
        yield fg.wait_condition(lambda: 1 / 0 > 1)
    except ZeroDivisionError:
        return "raised at once"
    return "met"


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "conditions.duckdb")


@pytest.fixture
def engine(path: str) -> Iterator[fg.Engine]:
    engine = open_engine(path, clock=ManualClock(autojump=False))
    yield engine
    engine.close()


def kinds(events: list[fg.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- by hand ---------------------------------------------------------------------------------


def test_an_update_that_makes_the_condition_true_wakes_the_main_code() -> None:
    stepper = fg.Stepper.create(approval, (None,))
    assert stepper.next() is None  # nothing pending: it waits on the condition
    assert stepper.status is fg.RunStatus.WAITING
    assert [c.name for c in stepper.waiting_on] == [approval_lambda_name()]
    stepper.update("approve", "ana")
    assert stepper.status is fg.RunStatus.COMPLETED
    assert stepper.result == {"met": True, "by": "ana"}
    # Without a timeout the wait records nothing of its own.
    assert kinds(stepper.history) == [
        "WorkflowStarted",
        "UpdateAccepted",
        "UpdateCompleted",
        "WorkflowCompleted",
    ]


def approval_lambda_name() -> str:
    source = Path(__file__).read_text().splitlines()
    line = next(
        i
        for i, text in enumerate(source, 1)
        if "met = yield fg.wait_condition(" in text
    )
    return f"approval.<locals>.<lambda> at test_wait_condition.py:{line}"


def test_a_condition_already_true_answers_at_once_and_records_nothing() -> None:
    stepper = fg.Stepper.create(already_true)
    stepper.next()
    assert stepper.result is True
    assert kinds(stepper.history) == ["WorkflowStarted", "WorkflowCompleted"]


def test_the_timeout_is_a_recorded_timer_that_answers_false() -> None:
    stepper = fg.Stepper.create(approval, (3600.0,))
    command = stepper.next()
    assert command == fg.StartTimer(3600.0)  # the timeout's timer, pending like a sleep
    assert "waiting on: wait_condition(approval.<locals>.<lambda>" in repr(stepper)
    assert "waiting on wait_condition(approval.&lt;locals&gt;" in stepper._repr_html_()
    stepper.fire_timer()
    assert stepper.result == {"met": False, "by": ""}
    assert kinds(stepper.history) == [
        "WorkflowStarted",
        "TimerStarted",
        "TimerFired",
        "WorkflowCompleted",
    ]


def test_a_condition_met_before_its_timeout_cancels_the_timer() -> None:
    stepper = fg.Stepper.create(approval, (3600.0,))
    stepper.next()
    stepper.update("approve", "bo")
    assert stepper.result == {"met": True, "by": "bo"}
    cancelled = [e for e in stepper.history if isinstance(e, fg.CommandCancelled)]
    assert [(e.seq, e.reason) for e in cancelled] == [(0, "condition")]
    # The whole history replays to the same end and decides nothing new.
    replayed = fg.replay(approval, stepper.history)
    assert replayed.status is fg.RunStatus.COMPLETED
    assert replayed.result == {"met": True, "by": "bo"}


def test_the_main_code_and_the_handlers_wake_each_other() -> None:
    stepper = fg.Stepper.create(counter, (2,))
    stepper.next()
    stepper.update("wait_seen", 2)  # a handler waits on what the main code sets
    stepper.update("bump")
    assert stepper.status is fg.RunStatus.WAITING
    stepper.update("bump")
    # The main code saw both bumps, which met the handler's condition: it ended.
    assert stepper.update_result("update-1") == "seen 2"
    assert stepper.command == fg.StartTimer(10)
    stepper.fire_timer()
    assert stepper.result == 2
    assert fg.replay(counter, stepper.history).result == 2


def test_a_handler_waits_with_a_timeout_while_other_timers_fire() -> None:
    stepper = fg.Stepper.create(handler_timeout)
    stepper.next()  # the main code sleeps (seq 0)
    stepper.update("await_flag", 100.0)  # its timeout: seq 1
    stepper.update("await_flag", 30.0)  # seq 2, due before the main code's sleep
    stepper.fire_timer(seq=2)  # the second handler's timeout, not the first's
    assert stepper.update_result("update-2") is False
    stepper.fire_timer(seq=0)  # the main code's sleep: no condition's timeout
    # The main code set the flag: the first handler's condition is met, its timer cancelled.
    assert stepper.update_result("update-1") is True
    cancelled = [e for e in stepper.history if isinstance(e, fg.CommandCancelled)]
    assert [(e.seq, e.reason) for e in cancelled] == [(1, "condition")]
    stepper.fire_timer()
    assert stepper.result == "done"
    assert fg.replay(handler_timeout, stepper.history).result == "done"


def test_a_predicate_raising_at_once_throws_at_the_yield() -> None:
    stepper = fg.Stepper.create(odd_waits)
    stepper.next()
    assert stepper.result == "raised at once"
    assert kinds(stepper.history) == ["WorkflowStarted", "WorkflowCompleted"]


def test_a_predicate_that_raises_throws_into_the_waiting_code() -> None:
    stepper = fg.Stepper.create(raises)
    stepper.next()
    stepper.update("put", 0)
    assert stepper.result == "caught ZeroDivisionError"


def test_a_cancel_reaches_a_run_waiting_on_a_condition() -> None:
    stepper = fg.Stepper.create(cancellable)
    stepper.next()
    stepper.cancel("stop")
    assert stepper.result == "cancelled"
    cancelled = [e for e in stepper.history if isinstance(e, fg.CommandCancelled)]
    assert [e.reason for e in cancelled] == ["cancel"]


def test_a_wait_is_named_after_its_predicate() -> None:
    def approved() -> bool:
        return True

    class Ready:
        def __call__(self) -> bool:
            return True

    assert fg.wait_condition(approved).name.endswith("approved")
    assert fg.wait_condition(Ready(), timeout=5).name == "Ready"
    assert fg.wait_condition(approved) == fg.wait_condition(approved)  # by name
    assert "wait_condition" in fg.wait_condition(approved)._repr_html_()


def test_bad_arguments_are_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="needs a function taking no arguments"):
        fg.wait_condition(True)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"wait_condition\(timeout=...\) must be a finite"
    ):
        fg.wait_condition(lambda: True, timeout=-1)
    with pytest.raises(
        TypeError, match=r"wait_condition\(timeout=...\) must be seconds"
    ):
        fg.wait_condition(lambda: True, timeout="1h")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"wait_condition\(timeout=...\) must be at most"
    ):
        fg.wait_condition(lambda: True, timeout=1e12)
    with pytest.raises(
        ValueError, match=r"wait_condition\(timeout=...\) must be at most"
    ):
        fg.WaitCondition(lambda: True, timeout=1e12)  # built by hand: the same check
    with pytest.raises(TypeError, match="must be activity calls"):
        fg.gather(fg.wait_condition(lambda: True))  # type: ignore[arg-type]


# -- on the engine, with a restart in the middle -----------------------------------------------


def test_an_update_after_a_restart_meets_the_condition(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = open_engine(path, clock=clock)
    first.start(approval, 3600.0, id="ap-1")
    first.close()

    second = open_engine(path, clock=ManualClock(clock.now()))
    try:
        assert second.update("ap-1", "approve", "cy") == "ok"
        handle = second.get("ap-1")
        assert handle.result() == {"met": True, "by": "cy"}
        history = handle.history()
        assert kinds(history) == [
            "WorkflowStarted",
            "TimerStarted",
            "UpdateAccepted",
            "UpdateCompleted",
            "CommandCancelled",
            "WorkflowCompleted",
        ]
    finally:
        second.close()


def test_the_timeout_fires_after_a_restart(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = open_engine(path, clock=clock)
    first.start(approval, 3600.0, id="ap-2")
    first.close()

    later = ManualClock(clock.now())
    second = open_engine(path, clock=later)
    try:
        later.advance(3600)
        assert second.get("ap-2").result() == {"met": False, "by": ""}
    finally:
        second.close()


def test_a_condition_met_from_a_state_rebuilt_by_replay(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = open_engine(path, clock=clock)
    first.start(counter, 2, id="count-1")
    assert first.update("count-1", "bump") == 1
    first.close()

    second = open_engine(path, clock=ManualClock(clock.now(), autojump=True))
    try:
        assert (
            second.update("count-1", "bump") == 2
        )  # the first bump came back by replay
        assert second.get("count-1").result() == 2
    finally:
        second.close()
