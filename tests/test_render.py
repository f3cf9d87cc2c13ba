"""Rich display: every command, event, history, handle and stepper renders, escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import flowgen as fg
from flowgen._render.html import (
    History,
    event_html,
    event_summary,
    history_html,
    history_text,
)
from flowgen._render.html_parts import format_duration
from flowgen._render.stepper_html import command_html
from flowgen._vocabulary.commands import COMMAND_KINDS
from flowgen.testing import ManualClock

T0 = datetime(2031, 3, 7, 9, 26, 53, tzinfo=UTC)
EVIL = "<script>alert('x')</script>"
ERROR = fg.ErrorInfo("CardDeclined", EVIL, attempts=2, traceback=f"Traceback\n{EVIL}")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# One event of every kind, with user data that needs escaping wherever a payload goes.
EVERY_EVENT: list[fg.Event] = [
    fg.WorkflowStarted(
        at=T0, workflow_id=EVIL, run_id="r", name="order", args=[EVIL], parent_id="p"
    ),
    fg.ActivityScheduled(at=at(0), seq=0, name="charge", args=[EVIL], kwargs={"k": 1}),
    fg.ActivityAttemptFailed(
        at=at(1), seq=0, error=ERROR, attempt=1, retry_at=at(2), started_at=at(0.5)
    ),
    fg.ActivityCompleted(at=at(3), seq=0, value=EVIL, attempt=2, started_at=at(2)),
    fg.TimerStarted(at=at(3), seq=1, fire_at=at(3603)),
    fg.TimerFired(at=at(3603), seq=1),
    fg.SignalWaitStarted(at=at(3603), seq=2, name="approve", deadline=at(90000)),
    fg.SignalReceived(at=at(3700), name="approve", payload={"by": EVIL}, index=0),
    fg.SideEffectRecorded(at=at(3700), seq=3, name="token", value=EVIL),
    fg.SignalSent(at=at(3700), seq=4, workflow_id="other", name="greet"),
    fg.SignalSendFailed(at=at(3700), seq=5, workflow_id="gone", name="g", error=ERROR),
    fg.ChildStarted(at=at(3700), seq=6, name="invoice", child_id="c-1", args=[1]),
    fg.ChildCompleted(at=at(3800), seq=6, child_id="c-1", value=[1, 2]),
    fg.ChildStarted(at=at(3800), seq=7, name="invoice", child_id="c-2"),
    fg.ChildFailed(at=at(3900), seq=7, child_id="c-2", error=ERROR),
    fg.SignalWaitStarted(at=at(3900), seq=8, name="late", deadline=at(3960)),
    fg.SignalTimedOut(at=at(3960), seq=8),
    fg.VersionMarked(at=at(3960), change_id="new-shipping", version=2),
    fg.TagsSet(at=at(3960), tags={"stage": EVIL}),
    fg.TimerStarted(at=at(3960), seq=9, fire_at=at(4000)),
    fg.CommandCancelled(at=at(3970), seq=9, reason="cancel"),
    fg.UpdateAccepted(at=at(3965), update_id=EVIL, name="add_item", args=[EVIL]),
    fg.UpdateCompleted(at=at(3965), update_id=EVIL, name="add_item", result=EVIL),
    fg.UpdateErrored(at=at(3966), update_id="u-2", name=EVIL, error=ERROR),
    fg.CancelRequested(at=at(3970), reason=EVIL),
    fg.WorkflowCancelled(at=at(3970), error=ERROR),
]
ENDINGS: list[fg.Event] = [
    fg.WorkflowCompleted(at=T0, result=EVIL),
    fg.WorkflowErrored(at=T0, error=ERROR),
    fg.WorkflowContinuedAsNew(at=T0, args=[EVIL]),
    fg.WorkflowTerminated(at=T0, reason=EVIL),
    fg.ActivityFailed(at=T0, seq=0, error=ERROR, attempt=3),
    fg.ActivityHeartbeat(at=T0, seq=0, attempt=1, details={"at": EVIL}),
    fg.ActivityResultIgnored(
        at=T0, seq=0, attempt=1, outcome="activity_completed", reason=EVIL
    ),
]


def assert_escaped(text: str) -> None:
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


def test_every_event_kind_renders_escaped_as_a_card_and_a_row() -> None:
    covered = {type(e) for e in EVERY_EVENT + ENDINGS}
    assert covered == set(fg.Event.__args__)  # type: ignore[attr-defined]
    for event in EVERY_EVENT + ENDINGS:
        card = event._repr_html_()  # type: ignore[union-attr]
        assert card == event_html(event)
        kind, _seq, _name, details = event_summary(event)
        assert kind in card
        if EVIL in details or EVIL in repr(event):
            assert "<script>" not in card


def test_history_table_escapes_payloads_and_names_outcome_rows_by_their_command() -> (
    None
):
    table = history_html(EVERY_EVENT)
    assert_escaped(table)
    assert table.count("<tr") == len(EVERY_EVENT) + 1  # + the header
    # activity_completed carries no name: the row takes it from activity_scheduled's seq.
    assert table.count("<code>charge</code>") == 3
    assert "+1h 00m" in table  # offsets from the start


def test_long_histories_show_their_first_and_last_rows() -> None:
    events = [EVERY_EVENT[0]] + [
        fg.SignalReceived(at=at(i), name="s", payload=i, index=i) for i in range(500)
    ]
    table = history_html(events, max_rows=10)
    assert "… 491 more events …" in table
    assert table.count("<tr") == 10 + 2
    text = history_text(events, max_rows=10)
    assert "… 491 more events …" in text.splitlines()[6]
    assert len(history_html(events, max_rows=None)) > len(table)


def test_history_text_is_an_aligned_table() -> None:
    lines = history_text(EVERY_EVENT).splitlines()
    assert lines[0].split() == ["#", "kind", "seq", "name", "details", "time"]
    assert lines[3].startswith("2   activity_attempt_failed")
    column = lines[0].index("kind")
    assert all(line[column - 2 : column] == "  " for line in lines[1:])


def test_history_is_a_plain_list_with_rich_display() -> None:
    history = History(EVERY_EVENT)
    assert history == EVERY_EVENT
    assert repr(history) == repr(EVERY_EVENT)
    assert isinstance(history[1:3], History)
    assert history[0] is EVERY_EVENT[0]
    assert_escaped(history._repr_html_())

    class Printer:
        def __init__(self) -> None:
            self.out = ""

        def text(self, text: str) -> None:
            self.out += text

    printer = Printer()
    history._repr_pretty_(printer, False)
    assert printer.out == history_text(history)


EVERY_COMMAND: list[object] = [
    fg.call("charge", EVIL, amount=3),
    fg.CallActivity(
        "ship",
        ("o",),
        options=fg.ActivityOptions(retry=fg.RetryPolicy(max_attempts=2), timeout=5),
    ),
    fg.sleep(timedelta(days=3)),
    fg.wait_signal("approve", timeout=60),
    fg.wait_signal("approve"),
    fg.WaitCondition(lambda: True, 60, name=EVIL),
    fg.side_effect(lambda: 1, name="token"),
    fg.StartChild("invoice", (EVIL,), workflow_id="c-1"),
    fg.send_signal("other", "greet", {"name": EVIL}),
    fg.get_version("change", fg.DEFAULT_VERSION, 2),
    fg.patched(EVIL),
    fg.current_time(),
    fg.info(),
    fg.set_tags(stage=EVIL),
    fg.on_query("progress", lambda: 1),
    fg.on_update(EVIL, lambda item: item, validator=lambda item: None),
    fg.continue_as_new(EVIL),
    fg.gather(fg.call("a", EVIL), fg.race(fg.wait_signal("s"), fg.sleep(1))),
]


def test_every_command_kind_renders_escaped() -> None:
    kinds = {type(c) for c in EVERY_COMMAND}
    assert kinds | {fg.Race} == set(COMMAND_KINDS)  # race: inside the gather
    for command in EVERY_COMMAND:
        card = command._repr_html_()  # type: ignore[attr-defined]
        assert card == command_html(command)
        assert "<script>" not in card
    gathered = command_html(EVERY_COMMAND[-1])
    assert "race" in gathered
    assert "signal wait &#x27;s&#x27;" in gathered
    assert "3d 0h" in command_html(EVERY_COMMAND[2])
    assert "<th>timeout</th><td>1m 00s</td>" in command_html(EVERY_COMMAND[5])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (0.25, "250 ms"),
        (4.25, "4.2 s"),
        (185, "3m 05s"),
        (7260, "2h 01m"),
        (3 * 86400 + 4 * 3600, "3d 4h"),
        (-90, "-1m 30s"),
    ],
)
def test_durations_read_like_a_person_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- handles and steppers ------------------------------------------------------------------------

flaky_calls: list[int] = []


@fg.activity(retry=fg.RetryPolicy(max_attempts=5, initial_interval=30))
def render_flaky(key: str) -> str:
    flaky_calls.append(1)
    if len(flaky_calls) < 3:
        raise ConnectionError(f"down {EVIL}")
    return key


@fg.workflow
def render_flow(key: str) -> fg.Workflow[str]:
    yield fg.sleep(60)
    got = yield fg.wait_signal("go", timeout=timedelta(days=1))
    yield fg.call(render_flaky, key)
    return f"{key}:{got}"


@fg.workflow
def render_fails(key: str) -> fg.Workflow[None]:
    yield fg.sleep(1)
    raise ValueError(EVIL)


def test_a_handle_shows_status_input_what_it_waits_for_and_its_history() -> None:
    flaky_calls.clear()
    clock = ManualClock(autojump=False)
    engine = fg.Engine(":memory:", clock=clock)
    try:
        h = engine.start(render_flow, EVIL, id="w-1")
        view = h._repr_html_()
        assert_escaped(view)
        assert ">running<" in view
        assert "timer" in view and "due at 2031-03-07 09:27:53 UTC (in 1m 00s)" in view
        clock.advance(60)
        engine.run_until_idle()
        view = h._repr_html_()
        assert "signal wait &#x27;go&#x27;" in view and "deadline 2031-03-08" in view
        h.signal("go", 7)
        engine.run_until_idle()  # attempt 1 fails; the retry waits for the clock
        view = h._repr_html_()
        assert "attempt 2 after 1 failure(s)" in view
        assert "ConnectionError" in view and "retry at" in view
        clock.advance(3600)
        engine.run_until_idle()
        clock.advance(3600)
        engine.run_until_idle()
        assert h.result() == f"{EVIL}:7"
        view = h._repr_html_()
        assert ">completed<" in view and "waiting for" not in view
        assert "history (" in view
        assert_escaped(view)
        assert isinstance(h.history(), History)

        bad = engine.start(render_fails, "k", id="w-2")
        clock.advance(1)
        engine.run_until_idle()
        view = bad._repr_html_()
        assert ">failed<" in view and "ValueError" in view and "traceback" in view
        assert_escaped(view)
    finally:
        engine.close()
    # A closed engine still renders (a message), never raises.
    assert "cannot be read" in h._repr_html_()


def test_a_stepper_shows_the_pending_command_its_locals_and_history() -> None:
    stepper = fg.Stepper(render_flow, EVIL)
    stepper.next()
    stepper.fire_timer()
    view = stepper._repr_html_()
    assert "Stepper" in view and "render_flow" in view
    assert "signal wait &#x27;go&#x27;" in view
    assert "<th>key</th>" in view  # a local variable
    assert "history so far (4 events)" in view
    assert_escaped(view)
    stepper.send("yes")
    stepper.send("done")
    view = stepper._repr_html_()
    assert ">completed<" in view and "result" in view


# A notebook cell is compiled as a kernel temp file, /tmp/ipykernel_<pid>/<hash>.py: a
# path that means nothing to a reader and changes with every kernel.
_CELL = """
import flowgen as fg


@fg.activity
def lookup(key: str) -> str:
    return key


@fg.workflow
def in_a_cell(key: str):
    value = yield fg.call(lookup, key)
    return value
"""


def test_a_stepper_in_a_notebook_cell_shows_the_line_not_the_kernel_temp_file() -> None:
    filename = "/tmp/ipykernel_3812/1834760319.py"
    namespace: dict[str, object] = {}
    exec(compile(_CELL, filename, "exec"), namespace)
    s = fg.Stepper(namespace["in_a_cell"], "k-1")  # type: ignore[arg-type]
    s.next()
    assert s.yield_site == f"{filename}:12"  # where the yield is (the engine's view)
    html = s._repr_html_()
    assert "ipykernel" not in html
    assert "/tmp" not in html
    assert "line 12 of a notebook cell" in html


def test_a_stepper_in_a_file_shows_the_file_name_and_line() -> None:
    s = fg.Stepper(render_flow, "k-1")
    s.next()
    html = s._repr_html_()
    assert s.yield_site.startswith(__file__)
    line = s.yield_site.rpartition(":")[2]
    assert f">at test_render.py:{line}</span>" in html  # the name, not the whole path


@fg.activity(name="render.plain_step")
def plain_step(n: int) -> int:
    return n


@fg.workflow(name="render.one_plain_call")
def one_plain_call() -> fg.Workflow[int]:
    return (yield from fg.call(plain_step, 1))


def test_a_pending_activity_without_timeouts_renders_no_empty_details_table() -> None:
    # The committed notebooks caught it: a Stepper showed `<table></table>` after each
    # pending activity that has no timeouts to list.
    stepper = fg.Stepper(one_plain_call)
    stepper.next()
    view = stepper._repr_html_()
    assert "plain_step" in view
    assert "<table></table>" not in view
