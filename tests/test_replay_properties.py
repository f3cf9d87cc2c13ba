"""The replay properties of style guide §6.4, over every sample workflow.

P1 replay is stable, P2 incremental ≡ from-scratch replay, P4 tampering never changes an
outcome silently, P5 the run-status table is total. (P3, the codec round trips, lives in
``test_codec.py``.) Each history comes from `run_with_drawn_outcomes`, which plays the engine
with outcomes drawn by Hypothesis.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import flowgen as fg
from flowgen._core.interpreter import Interpreter, RunStatus
from flowgen._core.lifecycle import TRANSITIONS, Trigger, transition
from flowgen._stores.codec import CODEC
from flowgen._vocabulary.errors import HistoryCorruptError, NonDeterminismError
from flowgen._vocabulary.events import INCOMING_EVENTS, TERMINAL_EVENTS
from tests import workflows as w
from tests.strategies import (
    EVENT_CLASSES,
    SAMPLES,
    T0,
    DrawnRun,
    Sample,
    examples,
    expected_after_prefix,
    outcome,
    replay_step,
    retag,
    run_with_drawn_outcomes,
    snapshot,
    state_of,
)

SAMPLE_IDS = [sample.fn.__name__ for sample in SAMPLES]


def drawn_run(sample: Sample, data: st.DataObject, **options: object) -> DrawnRun:
    return run_with_drawn_outcomes(
        sample.fn,
        sample.args,
        data,
        kwargs=sample.kwargs,
        signals=sample.signals,
        updates=sample.updates,
        **options,  # type: ignore[arg-type]
    )


def assert_replay_reproduces(sample: Sample, run: DrawnRun) -> None:
    """P1 on one run: the full history, then every prefix of it."""
    replayed = fg.replay(sample.fn, run.history, codec=CODEC)
    assert snapshot(replayed, ()) == run.final
    assert replayed.tags == run.interpreter.tags
    _, step = replay_step(sample.fn, run.history)
    assert step.events == ()
    assert step.perform == ()
    for k in range(1, len(run.history) + 1):
        interpreter, step = replay_step(sample.fn, run.history[:k])
        decisions, state = expected_after_prefix(run, k)
        assert list(step.events) == decisions, f"prefix of {k} events"
        assert state_of(interpreter, step) == state, f"prefix of {k} events"


# ---------------------------------------------------------------------------------------------
# P1: replay is stable.


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
@examples(0.4)
@given(data=st.data())
def test_replay_of_full_history_and_every_prefix_matches_the_live_run(
    sample: Sample, data: st.DataObject
) -> None:
    run = drawn_run(sample, data, finish=data.draw(st.booleans(), label="finish"))
    assert_replay_reproduces(sample, run)


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
@examples(5)
@given(data=st.data())
def test_replay_of_long_runs_matches_the_live_run(
    sample: Sample, data: st.DataObject
) -> None:
    run = drawn_run(sample, data, max_events=80, finish=True)
    assert_replay_reproduces(sample, run)


# ---------------------------------------------------------------------------------------------
# P2: incremental execution decides what a from-scratch replay decides.


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
@examples(0.4)
@given(data=st.data())
def test_live_step_equals_replay_from_scratch_after_each_event(
    sample: Sample, data: st.DataObject
) -> None:
    run = drawn_run(sample, data, finish=data.draw(st.booleans(), label="finish"))
    for fed in run.steps:
        # The history up to and including the incoming event, without its decisions.
        interpreter, step = replay_step(sample.fn, run.history[: fed.position + 1])
        assert step.events == fed.step.events
        assert state_of(interpreter, step) == fed.state


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
@examples(0.4)
@given(data=st.data())
def test_rebuilt_interpreter_fed_the_rest_records_the_same_history(
    sample: Sample, data: st.DataObject
) -> None:
    # An evicted (or crashed) run is rebuilt by replaying a prefix; it then takes the
    # remaining incoming events one at a time, and must decide exactly what was recorded.
    run = drawn_run(sample, data, finish=data.draw(st.booleans(), label="finish"))
    k = data.draw(st.integers(1, len(run.history)), label="cut")
    interpreter, step = replay_step(sample.fn, run.history[:k])
    rebuilt = [*run.history[:k], *step.events]
    for event in run.history[len(rebuilt) :]:
        if isinstance(event, INCOMING_EVENTS):
            rebuilt.append(event)
            rebuilt.extend(interpreter.feed(event).events)
    assert rebuilt == run.history
    assert snapshot(interpreter, ()) == snapshot(run.interpreter, ())


@pytest.mark.parametrize("sample", SAMPLES[:3], ids=SAMPLE_IDS[:3])
@examples(0.2)
@given(data=st.data())
def test_feed_many_decides_what_feeding_one_at_a_time_decides(
    sample: Sample, data: st.DataObject
) -> None:
    run = drawn_run(sample, data)
    interpreter = Interpreter(sample.fn, codec=CODEC)
    decisions = list(interpreter.feed_many(run.history[:1]).events)
    incoming = [e for e in run.history[1:] if isinstance(e, INCOMING_EVENTS)]
    decisions += interpreter.feed_many(incoming).events
    assert decisions == [e for e in run.history if not isinstance(e, INCOMING_EVENTS)]
    assert snapshot(interpreter, ()) == snapshot(run.interpreter, ())


# ---------------------------------------------------------------------------------------------
# P4: a tampered history is refused, or it replays to the same outcome.


def tamper(history: list[fg.Event], data: st.DataObject) -> tuple[str, list[fg.Event]]:
    tampered = list(history)
    how = data.draw(
        st.sampled_from(["drop", "duplicate", "swap", "retag"]), label="how"
    )
    i = data.draw(st.integers(0, len(tampered) - 1), label="at")
    if how == "drop":
        del tampered[i]
    elif how == "duplicate":
        tampered.insert(i, tampered[i])
    elif how == "swap":
        j = data.draw(st.integers(0, len(tampered) - 1), label="with")
        tampered[i], tampered[j] = tampered[j], tampered[i]
    else:
        kind = data.draw(st.sampled_from(EVENT_CLASSES), label="as")
        tampered[i] = retag(tampered[i], kind)
    return how, tampered


def assert_tampering_is_caught_or_harmless(sample: Sample, data: st.DataObject) -> None:
    run = drawn_run(sample, data, finish=True)
    assert run.interpreter.status.is_closed
    how, tampered = tamper(run.history, data)
    try:
        replayed = fg.replay(sample.fn, tampered, codec=CODEC)
    except (HistoryCorruptError, NonDeterminismError):
        return
    if any(isinstance(e, TERMINAL_EVENTS) for e in tampered):
        assert outcome(replayed) == outcome(run.interpreter), how
    # Otherwise the history has lost its end and reads as one cut short by a crash: it is
    # a valid history of some run, so replaying it must only not fail (P1 covers prefixes).


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
@examples(1)
@given(data=st.data())
def test_tampered_history_is_refused_or_replays_to_the_same_outcome(
    sample: Sample, data: st.DataObject
) -> None:
    assert_tampering_is_caught_or_harmless(sample, data)


@pytest.mark.slow
@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
@examples(20)
@given(data=st.data())
def test_tampered_history_is_refused_or_harmless_under_a_big_budget(
    sample: Sample, data: st.DataObject
) -> None:
    assert_tampering_is_caught_or_harmless(sample, data)


def test_dropping_a_signal_is_detected() -> None:
    history = [
        fg.WorkflowStarted(at=T0, workflow_id="w", run_id="r", name="c", args=[2]),
        fg.SignalWaitStarted(at=T0, seq=0, name="item"),
        fg.SignalReceived(at=T0, name="item", payload=1, index=0),
        fg.SignalWaitStarted(at=T0, seq=1, name="item"),
        fg.SignalReceived(at=T0, name="item", payload=2, index=1),
        fg.WorkflowCompleted(at=T0, result=[1, 2]),
    ]
    assert fg.replay(w.collect_signals, history).result == [1, 2]
    with pytest.raises(HistoryCorruptError, match="index 1, expected 0"):
        fg.replay(w.collect_signals, [*history[:2], *history[3:]])


# ---------------------------------------------------------------------------------------------
# P5: the run-status state machine is total.


@given(st.sampled_from(RunStatus), st.sampled_from(Trigger))
def test_every_status_and_trigger_is_a_legal_move_or_history_corrupt(
    status: RunStatus, trigger: Trigger
) -> None:
    if (status, trigger) in TRANSITIONS:
        assert transition(status, trigger) is TRANSITIONS[status, trigger]
    else:
        with pytest.raises(HistoryCorruptError, match=f"{status.value} cannot"):
            transition(status, trigger)


def test_closed_statuses_have_no_way_out() -> None:
    for (source, _), target in TRANSITIONS.items():
        assert not source.is_closed
        assert target is not RunStatus.NEW
    closed = {s for s in RunStatus if s.is_closed}
    assert (
        closed
        == {
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.CONTINUED_AS_NEW,
            RunStatus.TERMINATED,
            RunStatus.CORRUPT,  # set by a store that cannot read the history, never by replay
        }
    )


@settings(max_examples=20)
@given(st.sampled_from([s for s in RunStatus if s.is_closed]))
def test_an_event_after_the_run_closed_is_history_corrupt(status: RunStatus) -> None:
    interpreter = Interpreter(w.collect_signals)
    interpreter.feed(
        fg.WorkflowStarted(at=T0, workflow_id="w", run_id="r", name="c", args=[0])
    )
    assert interpreter.status is RunStatus.COMPLETED
    interpreter.status = status
    with pytest.raises(
        HistoryCorruptError, match=f"after the run ended \\({status.value}"
    ):
        interpreter.feed(fg.TimerFired(at=T0, seq=0))
