"""Hostile and careless input, found by an independent attack on the public surface.

Each test here reproduces a defect that was found by feeding the engine what a careless or
hostile user would: an exception whose ``str()`` raises, text that is a ``str`` subclass,
numbers no JSON reader takes back, arguments of the wrong type. The rule every test holds
the engine to: a clear error naming the problem, before anything is written; an
acknowledged record is never lost; no background thread dies; the file reopens.
Every test works on a real DuckDB file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import flowgen as fg

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


WORKFLOWS = [calls_unprintable, raises_unprintable, returns]


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
