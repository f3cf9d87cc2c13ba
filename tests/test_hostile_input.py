"""Hostile and careless input, found by an independent attack on the public surface.

Each test here reproduces a defect that was found by feeding the engine what a careless or
hostile user would: an exception whose ``str()`` raises, text that is a ``str`` subclass,
numbers no JSON reader takes back, arguments of the wrong type. The rule every test holds
the engine to: a clear error naming the problem, before anything is written; an
acknowledged record is never lost; no background thread dies; the file reopens.
Every test works on a real DuckDB file.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import flowgen as fg
from flowgen.aio import AsyncEngine
from tests.engine_workflows import snapshot

# ---------------------------------------------------------------------------------------------
# Workflows and activities.


class Unprintable(Exception):
    """An exception whose message cannot be had: ``str()`` (and ``repr()``) raise."""

    def __str__(self) -> str:
        raise RuntimeError("str() of this exception raises")

    def __repr__(self) -> str:
        raise RuntimeError("repr() of this exception raises")


@fg.activity(retry=fg.RetryPolicy(max_attempts=2, initial_interval=0.01))
def raise_unprintable() -> None:
    raise Unprintable


@fg.workflow
def calls_unprintable() -> fg.Workflow[str]:
    try:
        yield fg.call(raise_unprintable)
    except fg.ActivityError as failed:
        return f"caught {failed.type}"
    return "not raised"


@fg.workflow
def raises_unprintable() -> fg.Workflow[None]:
    yield fg.sleep(0)
    raise Unprintable


@fg.workflow
def returns(value: object) -> fg.Workflow[object]:
    yield fg.sleep(0)
    return value


@fg.workflow
def waits() -> fg.Workflow[object]:
    added: list[object] = []
    yield fg.on_update("add", added.append)
    got = yield fg.wait_signal("go")
    return [got, added]


HUGE = 10**5000  # 5,001 digits: beyond what int() and json.loads read back (4,300)


@fg.activity
def huge_number() -> int:
    return HUGE


@fg.workflow
def calls_huge_number() -> fg.Workflow[str]:
    try:
        yield fg.call(huge_number)
    except fg.ActivityError as failed:
        return str(failed)
    return "not raised"


@fg.workflow
def sleeps(seconds: int) -> fg.Workflow[None]:
    yield fg.sleep(seconds)


WORKFLOWS = [
    calls_unprintable,
    raises_unprintable,
    returns,
    waits,
    calls_huge_number,
    sleeps,
]

BAD = os.fsdecode(b"report-\x80.csv")  # 'report-\udc80.csv': a lone surrogate


class Text(str):
    """A `str` subclass, as an enum-like or tagged string type of an application is."""


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "hostile.duckdb")


@pytest.fixture
def engine(path: str) -> Iterator[fg.Engine]:
    with fg.Engine(path, workflows=WORKFLOWS) as engine:
        yield engine


def _reopens(path: str) -> dict[str, str]:
    """Reopen the file (the engine on it closed) and give every run's status by id."""
    with fg.Engine(path, workflows=WORKFLOWS) as engine:
        return {r.workflow_id: r.status for r in engine.list_runs(limit=None)}


# ---------------------------------------------------------------------------------------------
# An exception whose str() raises is still a failure recorded as data.


def test_an_activity_raising_an_exception_whose_str_raises_fails_as_data(
    engine: fg.Engine, path: str
) -> None:
    handle = engine.start(calls_unprintable, id="unprintable-activity")
    # It used to kill the activity thread (the engine stopped), on every reopen.
    assert handle.result(timeout=30) == "caught Unprintable"
    (failed,) = [e for e in handle.history() if isinstance(e, fg.ActivityFailed)]
    assert "str() of this exception raises" in failed.error.message
    assert engine.start(returns, 1).result(timeout=30) == 1  # the engine still serves
    engine.close()
    assert _reopens(path)["unprintable-activity"] == "completed"


def test_a_workflow_raising_an_exception_whose_str_raises_fails_as_data(
    engine: fg.Engine, path: str
) -> None:
    # start() used to raise that RuntimeError after the run was written, and the run
    # could never be recovered: it failed so on every reopen.
    handle = engine.start(raises_unprintable, id="unprintable-workflow")
    with pytest.raises(fg.WorkflowFailed) as failed:
        handle.result(timeout=30)
    assert failed.value.error.type == "Unprintable"
    assert "str() of this exception raises" in failed.value.error.message
    engine.close()
    assert _reopens(path)["unprintable-workflow"] == "failed"


# ---------------------------------------------------------------------------------------------
# Text that is a str subclass is checked as any str; text that is no str is refused.


@pytest.fixture
def waiting(engine: fg.Engine) -> fg.WorkflowHandle:
    handle = engine.start(waits, id="waiting")
    assert engine.update("waiting", "add", 1) is None  # its handler is registered
    return handle


SUBCLASS_TEXT: dict[str, Callable[[fg.Engine], object]] = {
    "workflow id": lambda e: e.start(returns, 1, id=Text(BAD)),
    "tag name": lambda e: e.start(returns, 1, tags={Text(BAD): 1}),
    "signal name": lambda e: e.signal("waiting", Text(BAD), 1),
    "cancel reason": lambda e: e.cancel("waiting", Text(BAD)),
    "update id": lambda e: e.update("waiting", "add", 2, update_id=Text(BAD)),
    "schedule id": lambda e: e.pause_schedule(Text(BAD)),
}


@pytest.mark.parametrize("call", SUBCLASS_TEXT.values(), ids=SUBCLASS_TEXT.keys())
def test_a_str_subclass_with_a_lone_surrogate_is_refused_before_anything_is_written(
    engine: fg.Engine,
    waiting: fg.WorkflowHandle,
    path: str,
    call: Callable[[fg.Engine], object],
) -> None:
    before = snapshot(engine.store)
    # A str subclass slipped past the check (made for exact strs): the record was
    # acknowledged, then refused by DuckDB and quarantined, and the run it belonged to
    # was lost (a start) or quarantined as corrupt (a signal, a cancel, an update).
    with pytest.raises(TypeError, match="lone surrogate"):
        call(engine)
    assert snapshot(engine.store) == before
    engine.signal("waiting", "go", "ok")
    assert waiting.result(timeout=30) == ["ok", [1]]
    engine.close()
    assert not Path(path + ".quarantine").exists()
    assert _reopens(path)["waiting"] == "completed"


NOT_TEXT: dict[str, Callable[[fg.Engine], object]] = {
    "signal name int": lambda e: e.signal("waiting", 5, 1),  # type: ignore[arg-type]
    "signal name bytes": lambda e: e.signal("waiting", b"go", 1),  # type: ignore[arg-type]
    "cancel reason int": lambda e: e.cancel("waiting", 5),  # type: ignore[arg-type]
    "cancel reason bytes": lambda e: e.cancel("waiting", b"r"),  # type: ignore[arg-type]
    "tag name int": lambda e: e.start(returns, 1, tags={5: 1}),  # type: ignore[dict-item]
    "signal_with_start name": lambda e: e.signal_with_start(
        waits,
        id="waiting",
        signal=5,  # type: ignore[arg-type]
    ),
    "schedule note": lambda e: e.pause_schedule("nightly", note=5),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("call", NOT_TEXT.values(), ids=NOT_TEXT.keys())
def test_a_name_or_reason_that_is_no_str_is_refused_naming_it(
    engine: fg.Engine, waiting: fg.WorkflowHandle, call: Callable[[fg.Engine], object]
) -> None:
    engine.schedule("nightly", returns, 1, cron="0 3 * * *")
    before = snapshot(engine.store)
    schedule = engine.get_schedule("nightly")
    # They were written (an int name), or failed the whole commit with a StoreError
    # (bytes: not JSON).
    with pytest.raises(TypeError, match=r"must be a str, got (int|bytes)"):
        call(engine)
    assert snapshot(engine.store) == before
    assert engine.get_schedule("nightly") == schedule


# ---------------------------------------------------------------------------------------------
# An int too long for JSON readers is refused where it enters, as any value JSON cannot take.


HUGE_INPUTS: dict[str, tuple[Callable[[fg.Engine], object], str]] = {
    "argument": (lambda e: e.start(returns, HUGE), "argument 'value'"),
    "nested": (
        lambda e: e.start(returns, {"n": [HUGE]}),
        r"argument 'value'.*\['n'\]\[0\]",
    ),
    "tag": (lambda e: e.start(returns, 1, tags={"n": HUGE}), "tag 'n'"),
    "signal payload": (lambda e: e.signal("waiting", "go", HUGE), "payload of signal"),
    "update argument": (
        lambda e: e.update("waiting", "add", -HUGE),
        "argument 0 of update",
    ),
}


@pytest.mark.parametrize("call", HUGE_INPUTS.values(), ids=HUGE_INPUTS.keys())
def test_an_int_too_long_for_json_is_refused_before_anything_is_written(
    engine: fg.Engine,
    waiting: fg.WorkflowHandle,
    call: tuple[Callable[[fg.Engine], object], str],
) -> None:
    before = snapshot(engine.store)
    calling, where = call
    # It used to be acknowledged up to the commit, which then failed whole with a StoreError
    # ("Exceeds the limit (4300 digits) for integer string conversion").
    with pytest.raises(TypeError, match=f"{where}.*4300 digits"):
        calling(engine)
    assert snapshot(engine.store) == before
    engine.signal("waiting", "go", 10**4299)  # the longest int still taken
    assert waiting.result(timeout=30) == [10**4299, [1]]


def test_an_activity_returning_an_int_too_long_for_json_fails_the_attempt_as_data(
    engine: fg.Engine, path: str
) -> None:
    # The run hung: every commit of the result failed (on every reopen too).
    handle = engine.start(calls_huge_number, id="huge-result")
    assert "result of activity" in str(handle.result(timeout=30))
    engine.close()
    assert _reopens(path)["huge-result"] == "completed"


# ---------------------------------------------------------------------------------------------
# Wrong filters of list_runs are refused naming them (they reached the store's SQL).


BAD_FILTERS: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "limit float": ({"limit": 1.5}, TypeError, "limit must be an int"),
    "limit str": ({"limit": "5"}, TypeError, "limit must be an int"),
    "limit bool": ({"limit": True}, TypeError, "limit must be an int"),
    "limit beyond 64 bits": ({"limit": 2**70}, ValueError, "limit must be at most"),
    "name int": ({"name": 5}, TypeError, "the workflow name must be a str"),
    "name surrogate": ({"name": BAD}, TypeError, "the workflow name cannot be stored"),
    "tags not a dict": ({"tags": [("a", 1)]}, TypeError, "tags must be a dict"),
    "tag name int": ({"tags": {5: 1}}, TypeError, "a tag name must be a str"),
    "tag name surrogate": (
        {"tags": {BAD: 1}},
        TypeError,
        "a tag name cannot be stored",
    ),
}


@pytest.mark.parametrize("bad", BAD_FILTERS.values(), ids=BAD_FILTERS.keys())
def test_a_bad_list_runs_filter_is_refused_naming_it(
    engine: fg.Engine, bad: tuple[dict[str, Any], type[Exception], str]
) -> None:
    engine.start(returns, 1, id="listed").result(timeout=30)
    filters, error, message = bad
    # Each used to raise a StoreError from the SQL, an AttributeError, or to be taken
    # (a limit of 1.5 or True).
    with pytest.raises(error, match=message):
        engine.list_runs(**filters)
    assert [r.workflow_id for r in engine.list_runs(limit=2**63 - 1)] == ["listed"]


# ---------------------------------------------------------------------------------------------
# A bad id or run id for replay, reset and retry is refused naming it.


BAD_RUN_IDS: dict[str, tuple[Callable[[fg.Engine], object], str]] = {
    "replay id int": (lambda e: e.replay(5), "workflow id must be a str"),  # type: ignore[arg-type]
    "replay id surrogate": (
        lambda e: e.replay(BAD),
        "the workflow id cannot be stored",
    ),
    "replay run id int": (
        lambda e: e.replay("closed", 5),  # type: ignore[arg-type]
        "run id must be a str",
    ),
    "reset run id int": (
        lambda e: e.reset("closed", event_id=1, run_id=5),  # type: ignore[arg-type]
        "run id must be a str",
    ),
    "reset run id surrogate": (
        lambda e: e.reset("closed", event_id=1, run_id=BAD),
        "the run id cannot be stored",
    ),
    "retry run id surrogate": (
        lambda e: e.retry("closed", run_id=BAD),
        "the run id cannot be stored",
    ),
    "retry run id bytes": (
        lambda e: e.retry("closed", run_id=b"r"),  # type: ignore[arg-type]
        "run id must be a str",
    ),
}


@pytest.mark.parametrize("bad", BAD_RUN_IDS.values(), ids=BAD_RUN_IDS.keys())
def test_a_bad_id_for_replay_reset_or_retry_is_refused_naming_it(
    engine: fg.Engine, bad: tuple[Callable[[fg.Engine], object], str]
) -> None:
    engine.start(returns, 1, id="closed").result(timeout=30)
    before = snapshot(engine.store)
    call, message = bad
    # They reached the store's SQL: a StoreError (and, for reset and retry, a failed
    # batch on the decision loop), or UnknownWorkflow for an id of the wrong type.
    with pytest.raises(TypeError, match=message):
        call(engine)
    assert snapshot(engine.store) == before


# ---------------------------------------------------------------------------------------------
# A result timeout that is no number of seconds is refused (NaN waited forever).


def _within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run *call* on a thread; what it raised, or fail if it has not ended in *seconds*."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            raised.append(exc)
        else:
            raised.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert raised, f"still waiting after {seconds} s (a hang guard)"
    return raised[0]


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(math.nan, ValueError), ("1", ValueError), (True, ValueError)],
    ids=["nan", "str", "bool"],
)
def test_a_result_timeout_that_is_no_number_is_refused(
    engine: fg.Engine, waiting: fg.WorkflowHandle, timeout: object, error: type
) -> None:
    raised = _within(20, lambda: waiting.result(timeout=timeout))  # type: ignore[arg-type]
    assert isinstance(raised, error)
    assert "timeout must be" in str(raised)


def test_an_async_result_timeout_of_nan_is_refused(path: str) -> None:
    async def main() -> None:
        async with AsyncEngine(path, workflows=WORKFLOWS) as engine:
            handle = await engine.start(waits, id="waiting")
            with pytest.raises(ValueError, match="timeout must be"):
                await asyncio.wait_for(handle.result(timeout=math.nan), 20)

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# A duration given as an int too large for a float is refused as too long (OverflowError).


TOO_LONG = 10**400


DURATIONS: dict[str, Callable[[], object]] = {
    "sleep": lambda: fg.sleep(TOO_LONG),
    "wait_signal timeout": lambda: fg.wait_signal("go", timeout=TOO_LONG),
    "wait_condition timeout": lambda: fg.wait_condition(lambda: True, timeout=TOO_LONG),
    "activity timeout": lambda: fg.activity(timeout=TOO_LONG),
    "retry interval": lambda: fg.RetryPolicy(initial_interval=TOO_LONG),
    "retry max interval": lambda: fg.RetryPolicy(max_interval=-TOO_LONG),
    "rate limit window": lambda: fg.RateLimit(1, per=TOO_LONG),
}


@pytest.mark.parametrize("make", DURATIONS.values(), ids=DURATIONS.keys())
def test_a_duration_too_large_for_a_float_is_a_value_error(
    make: Callable[[], object],
) -> None:
    with pytest.raises(ValueError, match=r"at most 3155760000 s|finite number >= 0"):
        make()


def test_a_workflow_sleeping_an_int_too_large_for_a_float_fails_naming_sleep(
    engine: fg.Engine,
) -> None:
    handle = engine.start(sleeps, TOO_LONG)
    with pytest.raises(fg.WorkflowFailed, match=r"ValueError: sleep\(\) duration"):
        handle.result(timeout=30)


ENGINE_DURATIONS: dict[str, Callable[[fg.Engine], object]] = {
    "schedule every int": lambda e: e.schedule("s", returns, 1, every=TOO_LONG),
    "schedule every float": lambda e: e.schedule("s", returns, 1, every=1e300),
    "schedule jitter": lambda e: e.schedule("s", returns, 1, every=60, jitter=TOO_LONG),
    "prune older_than": lambda e: e.prune(older_than=TOO_LONG),
}


@pytest.mark.parametrize("call", ENGINE_DURATIONS.values(), ids=ENGINE_DURATIONS.keys())
def test_an_engine_duration_too_long_is_a_value_error_and_stores_nothing(
    engine: fg.Engine, call: Callable[[fg.Engine], object]
) -> None:
    with pytest.raises(ValueError, match=r"at most 3155760000 s"):
        call(engine)
    assert engine.schedules() == []
