"""flowgen.testing: scripted runs, golden files and the re-exports."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

import flowgen as fg
from flowgen import testing
from flowgen._runtime.clock import ManualClock


@attrs.frozen
class Price:
    amount: int


class CardDeclined(Exception):
    pass


def fetch_price(item: int) -> Price:
    raise AssertionError("scripted runs never call activities")


def charge(amount: int) -> str:
    raise AssertionError("scripted runs never call activities")


def refund(amount: int) -> None:
    raise AssertionError("scripted runs never call activities")


def order_flow(item: int) -> fg.Workflow[str]:
    price = yield from fg.call(fetch_price, item)
    if price.amount > 100:
        yield from fg.sleep(60)
    try:
        return (yield from fg.call(charge, price.amount))
    except fg.ActivityError:
        yield from fg.call(refund, price.amount)
        raise


def test_run_script_returns_the_result_of_a_run_that_follows_the_script() -> None:
    result = testing.run_script(
        order_flow,
        7,
        script=[
            (fg.call(fetch_price, 7), Price(150)),
            (fg.sleep(60), None),
            (fg.call(charge, 150), "r-1"),
        ],
    )
    assert result == "r-1"


def test_run_script_throws_exception_outcomes_and_raises_the_runs_failure() -> None:
    with pytest.raises(fg.WorkflowFailed) as caught:
        testing.run_script(
            order_flow,
            7,
            script=[
                (fg.call(fetch_price, 7), Price(50)),
                (fg.call(charge, 50), CardDeclined("no")),
                (fg.call(refund, 50), None),
            ],
        )
    assert caught.value.status == "failed"
    assert caught.value.error.type == "ActivityError"
    assert "CardDeclined: no" in caught.value.error.message


def test_run_script_mismatch_fails_with_a_transcript() -> None:
    with pytest.raises(AssertionError) as caught:
        testing.run_script(
            order_flow,
            7,
            script=[
                (fg.call(fetch_price, 7), Price(150)),
                (fg.call(charge, 150), "r-1"),  # forgot the cooling-off timer
            ],
        )
    assert str(caught.value).splitlines() == [
        "run_script(order_flow) went off script:",
        "script: CallActivity(name='fetch_price', args=(7,), kwargs={}) -> Price(amount=150)",
        "NOT FOUND: StartTimer(seconds=60.0) (seq 1)",
        "NEXT EXPECTED: CallActivity(name='charge', args=(150,), kwargs={}) -> 'r-1'",
    ]


def test_run_script_reports_a_script_that_ends_before_the_run() -> None:
    with pytest.raises(AssertionError) as caught:
        testing.run_script(order_flow, 7, script=[(fg.call(fetch_price, 7), Price(5))])
    lines = str(caught.value).splitlines()
    assert lines[-2:] == [
        "NOT FOUND: CallActivity(name='charge', args=(5,), kwargs={}) (seq 1)",
        "NEXT EXPECTED: *** END OF SCRIPT ***",
    ]


def test_run_script_reports_a_run_that_ends_before_the_script() -> None:
    with pytest.raises(AssertionError) as caught:
        testing.run_script(
            order_flow,
            7,
            script=[
                (fg.call(fetch_price, 7), Price(5)),
                (fg.call(charge, 5), "r-5"),
                (fg.call(refund, 5), None),
            ],
        )
    lines = str(caught.value).splitlines()
    assert lines[-2:] == [
        "NOT FOUND: (the run completed with result 'r-5')",
        "NEXT EXPECTED: CallActivity(name='refund', args=(5,), kwargs={}) -> None",
    ]


def both(a: int, b: int) -> fg.Workflow[tuple[int, int]]:
    x, y = yield fg.gather(fg.call(fetch_price, a), fg.call(fetch_price, b))
    return (x.amount, y.amount)


def test_run_script_resolves_concurrent_commands_in_the_scripts_order() -> None:
    result = testing.run_script(
        both,
        1,
        2,
        script=[
            (fg.call(fetch_price, 2), Price(20)),  # the second branch first
            (fg.call(fetch_price, 1), Price(10)),
        ],
    )
    assert result == (10, 20)


def approval() -> fg.Workflow[str]:
    try:
        return str((yield fg.wait_signal("decision", timeout=60)))
    except fg.SignalTimeout:
        return "timed out"


def test_run_script_delivers_signals_and_timeouts() -> None:
    assert (
        testing.run_script(
            approval, script=[(fg.wait_signal("decision", timeout=60), "ok")]
        )
        == "ok"
    )
    timeout = fg.SignalTimeout("decision")
    assert (
        testing.run_script(
            approval, script=[(fg.wait_signal("decision", timeout=60), timeout)]
        )
        == "timed out"
    )


def test_save_and_load_history_round_trip_one_sorted_event_per_line(
    tmp_path: Path,
) -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    stepper.send(Price(150))
    stepper.send(None)
    stepper.throw(CardDeclined("no"))
    path = tmp_path / "golden" / "order_flow" / "declined.jsonl"
    testing.save_history(path, stepper.history)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(stepper.history)
    assert lines[0].startswith(
        '{"args": [7], "at": "2031-03-07T09:26:53+00:00", "kind":'
    )
    assert testing.load_history(path) == stepper.history
    assert testing.check_replay(order_flow, testing.load_history(path)).pending == {
        3: fg.call(refund, 150)
    }


def test_load_history_rejects_a_line_that_is_not_an_event(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "no_such_event"}\n', encoding="utf-8")
    with pytest.raises(fg.HistoryCorruptError, match="no_such_event"):
        testing.load_history(path)


def test_assert_replays_returns_where_the_replay_leaves_the_run(
    tmp_path: Path,
) -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    stepper.send(Price(150))
    stepper.send(None)
    stepper.send("r-1")
    replayed = testing.assert_replays(order_flow, stepper.history)
    assert replayed.status is fg.RunStatus.COMPLETED and replayed.result == "r-1"
    path = tmp_path / "golden.jsonl"
    testing.save_history(path, stepper.history)
    assert testing.assert_replays(order_flow, path) == replayed
    assert testing.assert_replays(order_flow, str(path)) == replayed


def test_assert_replays_fails_with_the_divergence_when_the_code_changed(
    tmp_path: Path,
) -> None:
    def order_flow_without_the_timer(item: int) -> fg.Workflow[str]:
        price = yield from fg.call(fetch_price, item)
        return (yield from fg.call(charge, price.amount))

    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    stepper.send(Price(150))
    path = tmp_path / "big_order.jsonl"
    testing.save_history(path, stepper.history)
    with pytest.raises(AssertionError) as caught:
        testing.assert_replays(order_flow_without_the_timer, path)
    message = str(caught.value)
    assert message.startswith(
        f"{path} does not replay on today's "
        "test_assert_replays_fails_with_the_divergence_when_the_code_changed."
        "<locals>.order_flow_without_the_timer: "
    )
    assert "the history has timer_started at seq 1" in message
    assert "fg.get_version()" in message


def test_assert_replays_fails_on_a_history_inconsistent_in_itself() -> None:
    stepper = fg.Stepper(order_flow, 7)
    stepper.next()
    stepper.send(Price(150))
    started, _, completed, *_ = stepper.history
    with pytest.raises(AssertionError, match="the history does not replay") as caught:
        testing.assert_replays(order_flow, [started, completed])
    assert "whose command the history never recorded" in str(caught.value)


def test_testing_re_exports_the_clock_stepper_and_check_replay() -> None:
    assert testing.ManualClock is ManualClock
    assert testing.Stepper is fg.Stepper
    assert testing.check_replay is fg.check_replay
    assert sorted(testing.__all__) == testing.__all__
    for name in testing.__all__:
        assert getattr(testing, name).__doc__, name
