"""Children and versions, finished (issue 13 item 7): `fg.patched`, the recorded
`fg.uuid4` / `fg.random`, and what a closing parent does to its running children
(`fg.child(...).options(parent_close=...)`).

The durable parts restart the engine in the middle, on a DuckDB file.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

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


# ---------------------------------------------------------------------------------------------
# What a closing parent does to its running children: .options(parent_close=...).


@fg.workflow(name="cv-child")
def waiting_child(tag: str) -> fg.Workflow[str]:
    said = yield from fg.wait_signal("go")
    return f"{tag}:{said}"


@fg.workflow(name="cv-parent")
def parent(policy: str) -> fg.Workflow[str]:
    command = fg.child(waiting_child, tag="c")  # a keyword argument of the child's own
    if policy != "default":
        command = command.options(parent_close=policy)  # type: ignore[arg-type]
    return (yield from command)


def child_runs(engine: fg.Engine, workflow_id: str = "p/0") -> list[str]:
    """The statuses of the runs of *workflow_id*, oldest first."""
    rows = engine.sql(
        "select status from workflows where workflow_id = ? order by started_at, run_id",
        [workflow_id],
    ).fetchall()
    return [status for (status,) in rows]


def start_parent_then_restart(path: str, policy: str) -> ManualClock:
    """A parent waiting on its child, recorded by one engine that then closes.

    Returns the clock of the restarted engine: a minute later, so that runs sort by age.
    """
    clock = ManualClock(autojump=False)
    first = fg.Engine(path, clock=clock)
    first.start(parent, policy, id="p")
    first.run_until_idle()
    assert child_runs(first) == ["running"]
    first.close()
    return ManualClock(clock.now() + timedelta(minutes=1))


@pytest.mark.parametrize("policy", ["default", "terminate"])
def test_terminate_existing_on_a_parent_terminates_its_child_so_the_new_parent_starts_it_again(
    tmp_path: Path, policy: str
) -> None:
    path = str(tmp_path / "parent.duckdb")
    clock = start_parent_then_restart(path, policy)

    engine = fg.Engine(path, clock=clock)  # the restart
    again = engine.start(parent, policy, id="p", on_conflict="terminate_existing")
    engine.run_until_idle()
    assert child_runs(engine) == ["terminated", "running"]  # the old child, the new one
    engine.signal("p/0", "go", "ok")
    assert again.result() == "c:ok"
    assert child_runs(engine, "p") == ["terminated", "completed"]
    engine.close()


def test_an_abandoned_child_outlives_its_parent(tmp_path: Path) -> None:
    path = str(tmp_path / "parent.duckdb")
    clock = start_parent_then_restart(path, "abandon")

    engine = fg.Engine(path, clock=clock)  # the restart
    again = engine.start(parent, "abandon", id="p", on_conflict="terminate_existing")
    # The old child still runs under its id, so the new parent's child cannot start.
    with pytest.raises(fg.WorkflowFailed, match="WorkflowAlreadyExists"):
        again.result()
    assert child_runs(engine) == ["running"]
    engine.signal("p/0", "go", "late")
    assert engine.get("p/0").result() == "c:late"  # it finished on its own
    engine.close()


def test_request_cancel_cancels_the_child_when_its_parent_closes(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "parent.duckdb")
    clock = start_parent_then_restart(path, "request_cancel")

    engine = fg.Engine(path, clock=clock)  # the restart
    again = engine.start(
        parent, "request_cancel", id="p", on_conflict="terminate_existing"
    )
    engine.run_until_idle()
    # The old child took the cancel at its wait and ended; the new parent started its own.
    assert child_runs(engine) == ["cancelled", "running"]
    assert events_of(engine.get("p/0"), fg.CancelRequested) == []  # the new child
    engine.signal("p/0", "go", "ok")
    assert again.result() == "c:ok"  # the old child's end never reached the new parent
    engine.close()


def test_options_returns_a_new_command_and_refuses_an_unknown_policy() -> None:
    command = fg.child(waiting_child, tag="c")
    abandoning = command.options(parent_close="abandon")
    assert command.parent_close == "terminate"  # the default, as in Temporal
    assert abandoning.parent_close == "abandon"
    assert abandoning.kwargs == {"tag": "c"}
    assert abandoning != command
    assert "on parent close" in abandoning._repr_html_()  # type: ignore[attr-defined]
    assert "abandon" in abandoning._repr_html_()  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="parent_close must be"):
        command.options(parent_close="ignore")  # type: ignore[arg-type]


def test_the_engine_forgets_a_childs_parent_close_once_the_child_has_ended() -> None:
    engine = fg.Engine(store=fg.MemoryStore(), clock=ManualClock())
    for i in range(3):
        handle = engine.start(parent, "abandon", id=f"p{i}")
        engine.run_until_idle()
        assert engine._loop.table.parent_close == {f"p{i}/0": "abandon"}
        engine.signal(f"p{i}/0", "go", i)
        assert handle.result() == f"c:{i}"
    assert engine._loop.table.parent_close == {}  # no entry left per child ever started
    engine.close()
