"""Which thread processes an activity's outcome (flowgen._runtime.loop_thread).

Alone, an activity's thread commits its outcome itself and runs the workflow on to its
next command (one thread sleep per step). While other attempts run, the outcome goes
through the inbox, and the loop thread commits it with the others (group commit).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import flowgen as fg

_DECIDED_ON: list[str] = []
_RELEASE = threading.Event()
_BLOCKING = threading.Event()


_LOOP_LOCK: list[Any] = []  # the engine's loop lock, while a test runs


@fg.activity
def quick(value: int) -> int:
    # The batch that started this attempt has ended (its thread let go of the loop's
    # lock), however slow the machine: the loop is idle when this attempt reports.
    for lock in _LOOP_LOCK:
        with lock:
            pass
    return value + 1


@fg.activity
def blocks() -> str:
    _BLOCKING.set()
    assert _RELEASE.wait(timeout=120)
    return "released"


_FINISHED = threading.Event()


@fg.workflow
def notes_its_thread(steps: int) -> Any:
    value = 0
    for _ in range(steps):
        value = yield fg.call(quick, value)
        _DECIDED_ON.append(threading.current_thread().name)
    _FINISHED.set()
    return value


@fg.workflow
def waits_on_blocks() -> Any:
    return (yield fg.call(blocks))


def test_alone_an_activity_thread_commits_its_outcome_and_runs_the_next_step(
    tmp_path: Path,
) -> None:
    _DECIDED_ON.clear()
    _FINISHED.clear()
    with fg.Engine(str(tmp_path / "f.duckdb"), workflows=[notes_its_thread]) as engine:
        _LOOP_LOCK[:] = [engine._loop.lock]
        try:
            handle = engine.start(notes_its_thread, 20)
            # Not `result()` yet: it reads the run under the loop's lock, which would
            # send a step's outcome through the inbox if it came just then.
            assert _FINISHED.wait(timeout=120)
        finally:
            _LOOP_LOCK.clear()
        assert handle.result(timeout=120) == 20
    # Every decision was made on the thread of the activity that reported, which then
    # ran the next attempt itself: always the same thread.
    assert len(_DECIDED_ON) == 20
    assert len(set(_DECIDED_ON)) == 1
    assert _DECIDED_ON[0].startswith("flowgen-activity")


def test_while_other_attempts_run_outcomes_go_to_the_loop_thread(
    tmp_path: Path,
) -> None:
    _DECIDED_ON.clear()
    _RELEASE.clear()
    _BLOCKING.clear()
    workflows = [notes_its_thread, waits_on_blocks]
    with fg.Engine(str(tmp_path / "f.duckdb"), workflows=workflows) as engine:
        blocked = engine.start(waits_on_blocks)
        assert _BLOCKING.wait(timeout=120)  # an attempt runs, and keeps running
        _LOOP_LOCK[:] = [engine._loop.lock]  # the loop idle when each step reports
        try:
            assert engine.start(notes_its_thread, 20).result(timeout=120) == 20
        finally:
            _LOOP_LOCK.clear()
            _RELEASE.set()
        assert blocked.result(timeout=120) == "released"
    assert _DECIDED_ON == ["flowgen-decision-loop"] * 20
