"""The pytest plugin, used the way a user's project uses it: pytest in a subprocess.

The inner test file lives in a temporary directory with no ``conftest.py``: what it finds
(``flowgen_engine``, ``flowgen_clock``) comes from the plugin the installed distribution
registers under the ``pytest11`` entry point group, as in any project that installs
flowgen. After a change of the entry points, reinstall (``pip install -e ".[test]"``, the
README's test command, does).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import flowgen.pytest_plugin

PROJECT_TESTS = """
from datetime import timedelta

import pytest

import flowgen as fg
from flowgen.testing import ManualClock, assert_replays, save_history

ENGINES = []


@fg.activity(name="shop.charge", retry=fg.RetryPolicy(max_attempts=3, initial_interval=60))
def charge(order_id: str, amount: int) -> str:
    raise RuntimeError("the real charge ran in a test")


@fg.workflow(name="shop.order")
def order(order_id: str) -> fg.Workflow[str]:
    yield fg.sleep(timedelta(days=2))
    return (yield fg.call(charge, order_id, 150))


@fg.workflow(name="shop.order_v2")
def order_v2(order_id: str) -> fg.Workflow[str]:
    return (yield fg.call(charge, order_id, 150))  # no more sleep: diverges


def test_the_engine_runs_by_hand_on_a_manual_clock(flowgen_engine, flowgen_clock):
    ENGINES.append(flowgen_engine)
    assert isinstance(flowgen_engine.clock, ManualClock)
    assert flowgen_engine.clock is flowgen_clock
    began = flowgen_clock.now()
    flowgen_engine.override_activity(charge, lambda order_id, amount: f"fake-{order_id}")
    handle = flowgen_engine.start(order, "o-1", id="order-o-1")
    assert handle.status() == "running"  # nothing happens until the test drives it
    flowgen_engine.run_until_idle()
    assert handle.status() == "completed"
    assert handle.result() == "fake-o-1"
    assert flowgen_clock.now() - began >= timedelta(days=2)


def test_the_engine_is_closed_after_its_test():
    (engine,) = ENGINES
    with pytest.raises(fg.UsageError, match="closed"):
        engine.start(order, "o-2")


def test_each_test_gets_a_fresh_engine_without_overrides(flowgen_engine):
    assert flowgen_engine not in ENGINES
    with pytest.raises(fg.UnknownWorkflow):
        flowgen_engine.get("order-o-1")  # the first test's run is not here
    handle = flowgen_engine.start(order, "o-3")
    flowgen_engine.run_until_idle()
    with pytest.raises(fg.WorkflowFailed, match="the real charge ran"):
        handle.result()


def test_a_failing_fake_is_retried_as_production_would(flowgen_engine):
    attempts = []

    def declined(order_id, amount):
        attempts.append(fg.activity_info().attempt)
        raise ConnectionError("card network down")

    flowgen_engine.override_activity("shop.charge", declined)
    handle = flowgen_engine.start(order, "o-4")
    flowgen_engine.run_until_idle()
    assert attempts == [1, 2, 3]
    assert handle.status() == "failed"


@pytest.fixture
def recorded(flowgen_engine, tmp_path):
    flowgen_engine.override_activity(charge, lambda order_id, amount: "r-5")
    handle = flowgen_engine.start(order, "o-5")
    flowgen_engine.run_until_idle()
    path = tmp_path / "golden" / "order.json"
    save_history(path, handle.history())
    return path


def test_a_recorded_history_replays_on_todays_code(recorded):
    replayed = assert_replays(order, recorded)
    assert replayed.status is fg.RunStatus.COMPLETED and replayed.result == "r-5"


def test_changed_code_fails_the_replay_assertion(recorded):
    assert_replays(order_v2, recorded)  # expected to FAIL, with the divergence
"""


def installed_plugins() -> list[str]:
    return [ep.value for ep in importlib.metadata.entry_points(group="pytest11")]


def test_installing_flowgen_registers_the_plugin() -> None:
    assert "flowgen.pytest_plugin" in installed_plugins(), (
        "the installed flowgen registers no pytest11 entry point: reinstall it "
        '(pip install -e ".[test]")'
    )
    (entry,) = [
        ep
        for ep in importlib.metadata.entry_points(group="pytest11")
        if ep.value == "flowgen.pytest_plugin"
    ]
    assert entry.load() is flowgen.pytest_plugin


def test_a_projects_tests_get_the_fixtures_from_the_installed_plugin(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_shop.py").write_text(PROJECT_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard
        check=False,
    )
    out = result.stdout + result.stderr
    assert "fixture 'flowgen_engine' not found" not in out
    assert "1 failed, 5 passed" in out, out
    assert "FAILED test_shop.py::test_changed_code_fails_the_replay_assertion" in out, (
        out
    )
    # The failure says which file does not replay on which code, and why.
    assert "order.json does not replay on today's order_v2" in out, out
    assert "diverged from its history" in out, out
