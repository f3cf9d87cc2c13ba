"""Children and versions, finished (issue 13 item 7): `fg.patched`, the recorded
`fg.uuid4` / `fg.random`, and what a closing parent does to its running children
(`fg.child(...).options(parent_close=...)`).

The durable parts restart the engine in the middle, on a DuckDB file.
"""

from __future__ import annotations

from pathlib import Path

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from tests.engine_workflows import events_of

# ---------------------------------------------------------------------------------------------
# fg.patched: yesterday's code (no change), then today's (with the change behind patched).


def shipping_before_change(order: str) -> fg.Workflow[str]:
    yield from fg.wait_signal("packed")
    yield from fg.wait_signal("shipped")
    return f"{order}: standard"


shipping_before_change.__flowgen_workflow__ = fg.WorkflowDefinition(  # type: ignore[attr-defined]
    "cv-shipping", shipping_before_change
)


def shipping_after_change(order: str) -> fg.Workflow[str]:
    yield from fg.wait_signal("packed")
    express = yield from fg.patched("express-shipping")
    again = yield fg.patched("express-shipping")  # one answer for the whole run
    assert again is express
    yield from fg.wait_signal("shipped")
    return f"{order}: {'express' if express else 'standard'}"


shipping_after_change.__flowgen_workflow__ = fg.WorkflowDefinition(  # type: ignore[attr-defined]
    "cv-shipping", shipping_after_change
)


def test_patched_is_false_for_a_run_recorded_before_the_change_and_true_for_a_new_one(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "shipping.duckdb")
    clock = ManualClock(autojump=False)
    yesterday = fg.Engine(path, clock=clock, workflows=[shipping_before_change])
    yesterday.start("cv-shipping", "o-old", id="ship-old")
    yesterday.signal("ship-old", "packed")
    yesterday.run_until_idle()  # waits for "shipped": its history runs past the change
    yesterday.close()

    today = fg.Engine(
        path, clock=ManualClock(clock.now()), workflows=[shipping_after_change]
    )
    new = today.start("cv-shipping", "o-new", id="ship-new")
    today.signal("ship-new", "packed")
    today.signal("ship-new", "shipped")
    today.signal("ship-old", "shipped")
    assert today.get("ship-old").result() == "o-old: standard"
    assert new.result() == "o-new: express"
    marked = events_of(new, fg.VersionMarked)
    assert [(e.change_id, e.version) for e in marked] == [("express-shipping", 1)]
    assert events_of(today.get("ship-old"), fg.VersionMarked) == []
    today.close()
