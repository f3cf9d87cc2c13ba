"""Reopening a file never starts one scheduled attempt twice (issue 10, item 1).

A signal or a cancel sent by the CLI without ``--import`` is recorded for a run whose code
the CLI does not have; the reaction (an activity, a compensation) is decided when the file
is reopened with the code, by the replay. It used to be scheduled twice on open: once as
the replay's new decision, once as a command the recovered run was waiting for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path

from hypothesis import given, settings, strategies as st

import flowgen as fg
from flowgen._core.dsl import WORKFLOWS, WorkflowDefinition
from flowgen._runtime.clock import ManualClock
from flowgen._runtime.engine import memory_engine

CALLS: list[str] = []


@fg.activity(name="reopen.charge")
def charge(order: str) -> str:
    CALLS.append(f"charge {order}")
    return f"charged {order}"


@fg.activity(name="reopen.refund")
def refund(order: str) -> str:
    CALLS.append(f"refund {order}")
    return f"refunded {order}"


@fg.workflow(name="reopen.decide_then_charge")
def decide_then_charge(order: str) -> Generator[object, object, object]:
    decision = yield fg.wait_signal("decide")
    return (yield fg.call(charge, f"{order} {decision}"))


@fg.workflow(name="reopen.saga")
def saga(order: str) -> Generator[object, object, object]:
    try:
        yield fg.wait_signal("never")
    except fg.Cancelled:
        yield fg.call(refund, order)
        raise
    return "done"


def flowgen_cli(*args: str) -> str:
    """``python -m flowgen ARGS`` in a subprocess that does not import these workflows."""
    result = subprocess.run(
        [sys.executable, "-m", "flowgen", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def parked(
    path: str,
    workflow: Callable[..., Generator[object, object, object]],
    workflow_id: str,
    signal: str,
) -> None:
    """Start *workflow* on the file and leave it waiting for *signal*, then close."""
    with fg.Engine(path) as engine:
        handle = engine.start(workflow, "o-1", id=workflow_id)
        # The wait is decided and committed with the start itself.
        assert list(handle.waiting_for().values()) == [f"signal wait {signal!r}"]


def test_a_cli_signal_then_reopen_runs_the_activity_once(tmp_path: Path) -> None:
    path = str(tmp_path / "app.duckdb")
    parked(path, decide_then_charge, "order-1", "decide")
    flowgen_cli("--db", path, "signal", "order-1", "decide", '"ok"')
    CALLS.clear()
    engine = fg.Engine(path, clock=ManualClock())
    try:
        engine.run_until_idle()
        assert engine.get("order-1").result() == "charged o-1 ok"
    finally:
        engine.close()
    assert CALLS == ["charge o-1 ok"]


def test_a_cli_cancel_then_reopen_compensates_once(tmp_path: Path) -> None:
    path = str(tmp_path / "app.duckdb")
    parked(path, saga, "saga-1", "never")
    flowgen_cli("--db", path, "cancel", "saga-1", "--reason", "changed my mind")
    CALLS.clear()
    engine = fg.Engine(path, clock=ManualClock())
    try:
        engine.run_until_idle()
        assert engine.get("saga-1").status() == "cancelled"
    finally:
        engine.close()
    assert CALLS == ["refund o-1"]


# -- the property: at most one start per scheduled attempt per process life ----------------

STARTS: list[tuple[str, int]] = []


@fg.activity(name="reopen.step")
def step(order: str) -> str:
    info = fg.activity_info()
    STARTS.append((info.idempotency_key, info.attempt))
    return order


@fg.workflow(name="reopen.signalled")
def signalled(order: str) -> Generator[object, object, object]:
    first = yield fg.wait_signal("go")
    yield fg.call(step, f"{order} {first}")
    second = yield fg.wait_signal("go")
    return (yield fg.call(step, f"{order} {second}"))


@fg.workflow(name="reopen.compensating")
def compensating(order: str) -> Generator[object, object, object]:
    try:
        yield fg.call(step, f"{order} reserve")
        yield fg.sleep(3600)
        yield fg.wait_signal("go")
    except fg.Cancelled:
        yield fg.call(step, f"{order} release")
        raise
    return "done"


WORKFLOW_NAMES = ("reopen.signalled", "reopen.compensating")

# One engine life each: (what, workflow id, with the workflows' code, runs its work).
# Without running its work the life ends like a crash after a commit: what was scheduled
# never started in it.
life = st.tuples(
    st.sampled_from(["open", "signal", "cancel"]),
    st.sampled_from(["s-1", "c-1"]),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=20, deadline=None)
@given(lives=st.lists(life, min_size=1, max_size=8))
def test_no_scheduled_attempt_starts_twice_in_one_process_life(
    lives: list[tuple[str, str, bool, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "app.duckdb")
        with fg.Engine(path, clock=ManualClock()) as engine:
            engine.start(signalled, "s", id="s-1")
            engine.start(compensating, "c", id="c-1")
        for what, workflow_id, with_code, runs in lives:
            STARTS.clear()
            hidden = {} if with_code else _hide(WORKFLOW_NAMES)
            try:
                engine = fg.Engine(path, clock=ManualClock())
                try:
                    if what != "open":
                        _send(engine, what, workflow_id)
                    if runs:
                        engine.run_until_idle(max_steps=200)
                finally:
                    engine.close()
            finally:
                WORKFLOWS.update(hidden)
            assert len(STARTS) == len(set(STARTS)), STARTS


def _hide(names: tuple[str, ...]) -> dict[str, WorkflowDefinition]:
    """Unregister workflows, as in a process that does not import them (the CLI)."""
    return {name: WORKFLOWS.pop(name) for name in names}


def _send(engine: fg.Engine, what: str, workflow_id: str) -> None:
    try:
        if what == "signal":
            engine.signal(workflow_id, "go", "x")
        else:
            engine.cancel(workflow_id, "by the property")
    except fg.WorkflowClosed:
        pass  # it has finished: nothing to send


def test_statuses_reach_users_as_the_plain_strings_they_always_were() -> None:
    """`handle.status()` and records show ``'running'``, not ``<RunStatus.RUNNING: ...>``.

    The vocabulary is one str enum; what leaves the engine (a handle's status, a row) is
    its plain value, so a notebook or a log prints exactly what it printed before.
    """
    engine = memory_engine(clock=ManualClock())
    try:
        handle = engine.start(decide_then_charge, "o-1", id="plain-1")
        assert type(handle.status()) is str
        assert repr(handle.status()) == "'running'"
        assert type(engine.get("plain-1").record().status) is str
        engine.signal("plain-1", "decide", "ok")
        engine.run_until_idle()
        assert repr(handle.status()) == "'completed'"
        [record] = engine.list_runs()
        assert "status='completed'" in repr(record)
    finally:
        engine.close()
