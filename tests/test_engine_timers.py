"""Long timers, and background threads that die (issue 10, item 3).

A duration beyond the documented maximum (100 years) is refused where the workflow asks
for it, so the run fails with a clear error instead of reaching the timer thread; and if a
background thread dies anyway, the engine stops loudly and every caller hears why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator
from datetime import datetime

import pytest

import flowgen as fg
from flowgen._runtime.clock import SystemClock


@fg.workflow(name="timers.sleeper")
def sleeper(seconds: float) -> Generator[object, object, object]:
    yield fg.sleep(seconds)
    return "woke"


@fg.workflow(name="timers.waiter")
def waiter(seconds: float) -> Generator[object, object, object]:
    try:
        return (yield fg.wait_signal("go", timeout=seconds))
    except fg.SignalTimeout:
        return "timed out"


@pytest.mark.parametrize("seconds", [1e10, 1e300])
@pytest.mark.parametrize("workflow", [sleeper, waiter])
def test_a_duration_beyond_the_maximum_fails_the_run_and_timers_keep_firing(
    workflow: fg.WorkflowFn, seconds: float
) -> None:
    with fg.Engine(":memory:") as engine:
        handle = engine.start(workflow, seconds)
        with pytest.raises(fg.WorkflowFailed) as failed:
            handle.result(timeout=30)
        assert failed.value.error.type == "ValueError"
        assert "at most 3155760000 s (100 years)" in failed.value.error.message
        assert handle.status() == "failed"
        # The timer thread is alive: a short timer still fires.
        assert engine.start(sleeper, 0.01).result(timeout=30) == "woke"
        assert engine.start(waiter, 0.01).result(timeout=30) == "timed out"


def test_the_maximum_duration_itself_is_accepted_and_timers_keep_firing() -> None:
    with fg.Engine(":memory:") as engine:
        handle = engine.start(sleeper, 3_155_760_000)
        assert handle.waiting_for() == {0: "timer"}
        assert handle.status() == "running"
        assert engine.start(sleeper, 0.01).result(timeout=30) == "woke"
        assert handle.status() == "running"


class _BrokenTimerClock(SystemClock):
    """Real time, but the timer thread's wait fails (a stand-in for any bug in it)."""

    def sleep_until(self, deadline: datetime, wakeup: threading.Event) -> None:
        raise RuntimeError("the timer thread broke")


def test_a_dying_background_thread_stops_the_engine_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.CRITICAL, logger="flowgen"):
        engine = fg.Engine(":memory:", clock=_BrokenTimerClock())
        with engine:
            handle = engine.start(sleeper, 60)
            with pytest.raises(fg.FlowgenError, match="timer thread died") as waited:
                handle.result(timeout=30)
            assert "the timer thread broke" in repr(waited.value.__cause__)
            with pytest.raises(fg.FlowgenError, match="timer thread died"):
                engine.start(sleeper, 1)
    assert any(
        r.levelno == logging.CRITICAL and "timer thread died" in r.getMessage()
        for r in caplog.records
    )
