"""Golden histories: runs recorded once, which today's code must keep replaying.

Each ``tests/golden/<workflow>/<scenario>.jsonl`` was recorded with the Stepper from the
workflows in ``tests/golden_workflows.py`` (one event per line, keys sorted). A failure here
means the code changed in a way that breaks runs already in flight: branch on
``fg.get_version`` and record a new golden for the new branch. Never re-record a golden to
make this pass; ``pytest --regen-golden`` only writes the files that are missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import flowgen as fg
from flowgen._stores.codec import CODEC, history_to_json
from flowgen.testing import Stepper, check_replay, load_history, save_history
from tests import golden_workflows as gw

GOLDEN = Path(__file__).parent / "golden"

REPLAYING = sorted(s for s in gw.RECORDERS if not s.endswith("_nondeterministic"))
DIVERGING = sorted(s for s in gw.RECORDERS if s.endswith("_nondeterministic"))

EXPECTED_STATUS = {
    "process_order/shipped_after_retries": fg.RunStatus.COMPLETED,
    "process_order/invalid_order": fg.RunStatus.FAILED,
    "book_trip/rolled_back_card_declined": fg.RunStatus.FAILED,
    "book_trip/cancelled_while_booking_flight": fg.RunStatus.CANCELLED,
    "expense/decision_before_deadline": fg.RunStatus.COMPLETED,
    "expense/deadline_first": fg.RunStatus.COMPLETED,
    "expense/decision_buffered_before_wait": fg.RunStatus.COMPLETED,
    "sync_customers/first_run_continued_as_new": fg.RunStatus.CONTINUED_AS_NEW,
    "sync_customers/second_run_completed": fg.RunStatus.COMPLETED,
    "onboarding/recorded_before_get_version": fg.RunStatus.COMPLETED,
    "onboarding/welcome_v2": fg.RunStatus.COMPLETED,
}


def golden(scenario: str, regen: bool) -> list[fg.Event]:
    path = GOLDEN / f"{scenario}.jsonl"
    if regen and not path.exists():
        save_history(path, gw.RECORDERS[scenario]())
    if not path.exists():
        pytest.fail(f"{path} is missing: record it once with `pytest --regen-golden`")
    return load_history(path)


def workflow_of(scenario: str) -> fg.Workflow[object]:
    return gw.WORKFLOWS[scenario.split("/")[0]]  # type: ignore[return-value]


def kinds(history: list[fg.Event], kind: type) -> list[fg.Event]:
    return [e for e in history if isinstance(e, kind)]


@pytest.mark.parametrize("scenario", REPLAYING)
def test_golden_history_replays_to_its_recorded_end(
    scenario: str, regen_golden: bool
) -> None:
    history = golden(scenario, regen_golden)
    result = check_replay(workflow_of(scenario), history)
    assert result.status is EXPECTED_STATUS[scenario]
    end = history[-1]
    if isinstance(end, fg.WorkflowCompleted):
        assert CODEC.encode(result.result, "result") == end.result
    elif not isinstance(end, fg.WorkflowContinuedAsNew):
        assert result.error is not None
        assert result.error.type == end.error.type  # type: ignore[union-attr]
    assert result.pending == {}


@pytest.mark.parametrize("scenario", DIVERGING)
def test_nondeterministic_golden_names_seq_both_commands_and_the_yield_line(
    scenario: str, regen_golden: bool
) -> None:
    history = golden(scenario, regen_golden)
    with pytest.raises(fg.NonDeterminismError) as caught:
        check_replay(workflow_of(scenario), history)
    message = str(caught.value)
    assert caught.value.seq == 0
    assert "at seq 0" in message
    assert "activity_scheduled 'golden.charge_payment'" in message  # what was recorded
    assert "activity 'golden.validate_order'" in message  # what the code yields now
    site = re.search(r"golden_workflows\.py:(\d+)", message)
    assert site is not None, message
    source = Path(gw.__file__).read_text().splitlines()
    assert "fg.call(validate_order, order_id)" in source[int(site.group(1)) - 1]


def test_retried_activity_golden_records_each_failed_attempt(
    regen_golden: bool,
) -> None:
    history = golden("process_order/shipped_after_retries", regen_golden)
    failed = kinds(history, fg.ActivityAttemptFailed)
    assert [e.attempt for e in failed] == [1, 2]  # type: ignore[attr-defined]
    assert [e.error.type for e in failed] == ["CarrierUnavailable"] * 2  # type: ignore[attr-defined]
    side_effect = kinds(history, fg.SideEffectRecorded)[0]
    # The tracking number is replayed from the record, not drawn again.
    assert check_replay(gw.process_order, history).result.startswith(  # type: ignore[union-attr]
        f"{side_effect.value} charged"  # type: ignore[attr-defined]
    )


def test_saga_golden_compensates_last_in_first_out(regen_golden: bool) -> None:
    history = golden("book_trip/rolled_back_card_declined", regen_golden)
    names = [e.name for e in kinds(history, fg.ActivityScheduled)]  # type: ignore[attr-defined]
    assert names[-2:] == ["golden.cancel_flight", "golden.cancel_hotel"]


def test_history_recorded_before_get_version_replays_through_the_default_branch(
    regen_golden: bool,
) -> None:
    history = golden("onboarding/recorded_before_get_version", regen_golden)
    assert not kinds(history, fg.VersionMarked)
    stepper = Stepper.from_history(gw.onboarding, history)
    stepper.forward()  # create_account completed: past the get_version
    assert stepper.locals["version"] == fg.DEFAULT_VERSION
    assert stepper.command == fg.call(gw.send_welcome_v1, "ann")
    stepper.goto(stepper.outcomes)
    assert stepper.status is fg.RunStatus.COMPLETED
    assert not kinds(stepper.history, fg.VersionMarked)


def test_history_recorded_after_get_version_takes_the_new_branch(
    regen_golden: bool,
) -> None:
    history = golden("onboarding/welcome_v2", regen_golden)
    assert [(e.change_id, e.version) for e in kinds(history, fg.VersionMarked)] == [  # type: ignore[attr-defined]
        ("welcome-email", 1)
    ]
    assert check_replay(gw.onboarding, history).result == "acct-bob"


def test_continue_as_new_goldens_chain_two_runs(regen_golden: bool) -> None:
    first = golden("sync_customers/first_run_continued_as_new", regen_golden)
    second = golden("sync_customers/second_run_completed", regen_golden)
    end = first[-1]
    assert isinstance(end, fg.WorkflowContinuedAsNew)
    start = second[0]
    assert isinstance(start, fg.WorkflowStarted)
    assert (start.workflow_id, start.args) == (first[0].workflow_id, end.args)  # type: ignore[union-attr]
    assert start.run_id != first[0].run_id  # type: ignore[union-attr]
    assert check_replay(gw.sync_customers, second).result == 5


def test_golden_files_are_canonical_one_event_per_line_with_sorted_keys(
    regen_golden: bool,
) -> None:
    for scenario in gw.RECORDERS:
        history = golden(scenario, regen_golden)
        text = (GOLDEN / f"{scenario}.jsonl").read_text(encoding="utf-8")
        assert text == history_to_json(history), scenario
        assert len(text.splitlines()) == len(history)


def test_every_golden_file_has_a_recorder_and_an_expectation() -> None:
    on_disk = {
        str(p.relative_to(GOLDEN).with_suffix("")) for p in GOLDEN.rglob("*.jsonl")
    }
    assert on_disk <= set(gw.RECORDERS)
    assert set(REPLAYING) == set(EXPECTED_STATUS)


def test_the_stepper_records_the_same_events_as_the_engine() -> None:
    # Goldens are recorded with the Stepper; they are only worth keeping if an engine run of
    # the same workflow records the same kinds of events at the same seqs.
    from flowgen._stores.memory import MemoryStore
    from flowgen.testing import ManualClock

    gw.SHIPPER.failures = 2
    recorded = gw.record_shipped_after_retries()
    gw.SHIPPER.failures = 2
    engine = fg.Engine(store=MemoryStore(), clock=ManualClock())
    try:
        handle = engine.start(gw.process_order, "o-1", id="order-o-1")
        engine.run_until_idle()
        by_engine = handle.history()
    finally:
        engine.close()

    def shape(history: list[fg.Event]) -> list[tuple[type, object]]:
        return [(type(e), getattr(e, "seq", None)) for e in history]

    assert shape(by_engine) == shape(recorded)
