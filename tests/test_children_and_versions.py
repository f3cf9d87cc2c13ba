"""Children and versions, finished (issue 13 item 7): `fg.patched`, the recorded
`fg.uuid4` / `fg.random`, and what a closing parent does to its running children
(`fg.child(...).options(parent_close=...)`).

The durable parts restart the engine in the middle, on a DuckDB file.
"""

from __future__ import annotations

import uuid
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


# ---------------------------------------------------------------------------------------------
# fg.uuid4 / fg.random: produced once by the runtime, recorded, replayed forever.


@fg.activity(name="cv-note")
def note(token: str, draw: float) -> None:
    """Records what the workflow drew, in the history, before the restart."""


@fg.workflow(name="cv-raffle")
def raffle() -> fg.Workflow[list[object]]:
    ticket = yield from fg.uuid4()
    draw = yield fg.random()
    yield from fg.call(note, str(ticket), draw)
    yield from fg.wait_signal("close")  # the engine restarts here, so this run replays
    return [type(ticket).__name__, str(ticket), type(draw).__name__, draw]


def test_uuid4_and_random_are_recorded_once_and_replayed_after_a_restart(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "raffle.duckdb")
    clock = ManualClock(autojump=False)
    first = fg.Engine(path, clock=clock)
    first.start(raffle, id="raffle-1")
    first.run_until_idle()
    noted = events_of(first.get("raffle-1"), fg.ActivityScheduled)[0].args
    first.close()

    again = fg.Engine(path, clock=ManualClock(clock.now()))
    again.signal("raffle-1", "close")
    handle = again.get("raffle-1")
    result = handle.result()
    assert isinstance(result, list)
    kind, ticket, draw_kind, draw = result
    assert (kind, draw_kind) == ("UUID", "float")
    assert [ticket, draw] == list(noted)  # the values drawn before the restart
    assert uuid.UUID(ticket).version == 4
    assert 0.0 <= draw < 1.0
    recorded = events_of(handle, fg.SideEffectRecorded)
    assert [e.name for e in recorded] == ["flowgen.uuid4", "flowgen.random"]
    again.close()


def test_two_runs_draw_different_values() -> None:
    draws = []
    for _ in range(2):
        stepper = fg.Stepper(raffle)
        command = stepper.next()
        while not isinstance(command, fg.WaitSignal):
            command = stepper.run()  # the draws, then the activity
        stepper.signal("close")
        assert stepper.result[0] == "UUID"  # type: ignore[index]
        # A replay of the recorded history gets the recorded values back.
        assert fg.check_replay(raffle, stepper.history).result == stepper.result
        draws.append(stepper.result)
    assert draws[0] != draws[1]
