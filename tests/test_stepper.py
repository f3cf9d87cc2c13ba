"""The Stepper: running a workflow by hand, one command at a time, with no engine."""

from __future__ import annotations

from datetime import UTC, datetime

import flowgen as fg
from flowgen._codec import CODEC
from flowgen._interpreter import Interpreter

T0 = datetime(2031, 3, 7, 9, 26, 53, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# Interpreter and codec fixes found while building the Stepper.


def _mutates_what_it_receives(items: list[str]) -> fg.Workflow[list[str]]:
    items.append("changed by the workflow")
    got = yield fg.wait_signal("more")
    got.append("changed too")
    yield fg.sleep(1)
    return items


def test_a_workflow_mutating_a_received_value_leaves_the_recorded_events_unchanged() -> None:
    started = fg.WorkflowStarted(
        at=T0, workflow_id="w", run_id="r", name="m", args=[["a"]]
    )
    signal = fg.SignalReceived(at=T0, name="more", payload=["b"], index=0)
    interp = Interpreter(_mutates_what_it_receives, codec=CODEC)
    interp.feed(started)
    interp.feed(signal)
    assert started.args == [["a"]]
    assert signal.payload == ["b"]


def _versioned() -> fg.Workflow[int]:
    yield fg.call("first")
    v = yield fg.get_version("change", fg.DEFAULT_VERSION, 1)
    yield fg.side_effect(lambda: 1, name="token")
    return v


def test_partial_replay_decides_get_version_as_the_recorded_run_did() -> None:
    # Recorded before get_version existed: after "first" comes the side effect, an
    # *incoming* event, so a history cut after outcome 1 would not show that the run went
    # past the get_version, and a plain prefix replay would take the new branch.
    history: list[fg.Event] = [
        fg.WorkflowStarted(at=T0, workflow_id="w", run_id="r", name="_versioned"),
        fg.ActivityScheduled(at=T0, seq=0, name="first"),
        fg.ActivityCompleted(at=T0, seq=0, value=None),
        fg.SideEffectRecorded(at=T0, seq=1, name="token", value=1),
        fg.WorkflowCompleted(at=T0, result=fg.DEFAULT_VERSION),
    ]
    interp = Interpreter(_versioned, codec=CODEC)
    step = interp.replay(history, outcomes=1)
    assert step.events == ()
    assert interp.frame_locals()["v"] == fg.DEFAULT_VERSION
    assert interp.pending == {1: fg.side_effect(lambda: 1, name="token")}
    # The whole history still replays the same way.
    assert fg.replay(_versioned, history, codec=CODEC).status is fg.RunStatus.COMPLETED
