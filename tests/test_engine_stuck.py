"""A run whose code is missing or changed is reported as stuck, and still records signals."""

from __future__ import annotations

from pathlib import Path

import flowgen as fg
from flowgen._runtime.clock import ManualClock


def test_a_run_whose_code_changed_is_stuck_and_keeps_its_signals(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "stuck.duckdb")

    @fg.activity(name="stuck.step")
    def step(n: int) -> int:
        return n

    def v1():  # recorded by yesterday's code
        yield fg.wait_signal("go")
        return (yield fg.call(step, 1))

    def v2():  # today's code calls another activity at seq 0
        yield fg.call(step, 0)
        return (yield fg.wait_signal("go"))

    fg.workflow(name="stuck.flow")(v1)
    with fg.Engine(path, clock=ManualClock()) as engine:
        handle = engine.start(v1, id="s-1")
        assert handle.stuck() is None

    fg._core.dsl.WORKFLOWS.pop("stuck.flow")
    v2.__qualname__ = v1.__qualname__  # the same function, edited
    engine = fg.Engine(
        path, clock=ManualClock(), workflows=[fg.workflow(name="stuck.flow")(v2)]
    )
    try:
        handle = engine.get("s-1")
        assert isinstance(handle.stuck(), fg.NonDeterminismError)
        assert handle.status() == "running"
        engine.signal(
            "s-1", "go", True
        )  # acknowledged: recorded although the run is stuck
    finally:
        engine.close()
    fg._core.dsl.WORKFLOWS.pop("stuck.flow")
    with fg.Engine(
        path, clock=ManualClock(), workflows=[fg.workflow(name="stuck.flow")(v1)]
    ) as engine:
        assert engine.get("s-1").result(timeout=10) == 1
