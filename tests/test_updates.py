"""Updates: ``yield fg.on_update(name, handler, validator=...)`` and ``engine.update(...)``.

Through the public API, on a DuckDB file (tests/test_engine_postgres.py runs every test here
that takes ``path`` again on PostgreSQL): a validator's error rejects an update and nothing
is recorded; an accepted update is recorded and answers with its handler's result; a handler
may yield commands beside the main code; an update id makes a retry return the same answer;
a recorded update replays after a reopen.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from tests.engine_workflows import open_engine

PRICES = {"apple": 1.5, "pear": 2.0}


@fg.activity(name="upd_price")
def price(item: str) -> float:
    """The price of *item* (an activity: the handler that asks it yields a command)."""
    return PRICES.get(item, 3.0)


@fg.workflow(name="upd_cart")
def cart(owner: str) -> fg.Workflow[dict[str, Any]]:
    """A shopping cart: items come in by update, the checkout signal ends it."""
    items: list[str] = []
    total = 0.0

    def check(item: str) -> None:
        if not item:
            raise ValueError("an item needs a name")
        if item in items:
            raise ValueError(f"{item!r} is in the cart already")

    def add_item(item: str) -> int:
        items.append(item)
        return len(items)

    def add_priced(item: str) -> Generator[Any, Any, float]:
        nonlocal total
        cost = yield from fg.call(price, item)
        yield fg.sleep(60)  # a durable timer inside a handler
        items.append(item)
        total += cost
        return total

    def remove(item: str) -> int:
        items.remove(item)  # ValueError for an item not in the cart: the update fails
        return len(items)

    yield fg.on_update("add_item", add_item, validator=check)
    yield fg.on_update("add_priced", add_priced, validator=check)
    yield fg.on_update("remove", remove)
    yield fg.on_query("items", lambda: list(items))
    yield fg.wait_signal("checkout")
    return {"owner": owner, "items": items, "total": total}


@fg.workflow(name="upd_short")
def short_lived(seconds: float) -> fg.Workflow[str]:
    """Ends after *seconds*, whatever its update handlers are doing."""

    def slow() -> Generator[Any, Any, str]:
        yield fg.sleep(seconds * 2)
        return "late"

    yield fg.on_update("slow", slow)
    yield fg.sleep(seconds)
    return "done"


@fg.workflow(name="upd_waiter")
def waiter() -> fg.Workflow[str]:
    """An update whose handler waits for a signal; cancelling the run reaches it."""

    def wait_for_go() -> Generator[Any, Any, str]:
        go = yield fg.wait_signal("go")
        return f"went {go}"

    yield fg.on_update("wait", wait_for_go)
    try:
        yield fg.wait_signal("never")
    except fg.Cancelled:
        return "cancelled"
    return "signalled"


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "updates.duckdb")


@pytest.fixture
def engine(path: str) -> Iterator[fg.Engine]:
    engine = open_engine(path, clock=ManualClock())
    yield engine
    engine.close()


def kinds(handle: fg.WorkflowHandle) -> list[str]:
    return [type(e).__name__ for e in handle.history()]


def test_an_update_answers_with_its_handlers_result_and_is_recorded(
    engine: fg.Engine,
) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    assert engine.update("cart-1", "add_item", "apple") == 1
    assert engine.update("cart-1", "add_item", "pear", update_id="u-2") == 2
    assert engine.query("cart-1", "items") == ["apple", "pear"]
    accepted = [e for e in handle.history() if isinstance(e, fg.UpdateAccepted)]
    completed = [e for e in handle.history() if isinstance(e, fg.UpdateCompleted)]
    assert [(e.name, e.args) for e in accepted] == [
        ("add_item", ["apple"]),
        ("add_item", ["pear"]),
    ]
    assert [e.result for e in completed] == [1, 2]
    assert accepted[1].update_id == completed[1].update_id == "u-2"
    engine.signal("cart-1", "checkout")
    assert handle.result()["items"] == ["apple", "pear"]


def test_a_validator_that_raises_rejects_the_update_and_records_nothing(
    engine: fg.Engine,
) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    engine.update("cart-1", "add_item", "apple")
    before = handle.history()
    with pytest.raises(
        fg.UpdateRejected, match="'apple' is in the cart already"
    ) as info:
        engine.update("cart-1", "add_item", "apple")
    assert isinstance(info.value.__cause__, ValueError)  # the validator's own error
    assert info.value.error.type == "ValueError"
    with pytest.raises(fg.UpdateRejected, match="needs a name"):
        engine.update("cart-1", "add_priced", "")
    assert handle.history() == before
    assert engine.query("cart-1", "items") == ["apple"]
    # A rejected update id may be sent again once the state allows it.
    with pytest.raises(fg.UpdateRejected):
        engine.update("cart-1", "add_item", "apple", update_id="again")
    engine.update("cart-1", "remove", "apple")
    assert engine.update("cart-1", "add_item", "apple", update_id="again") == 1


def test_an_unknown_update_name_is_rejected_and_records_nothing(
    engine: fg.Engine,
) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    before = handle.history()
    with pytest.raises(fg.UpdateRejected, match=r"no update handler 'nope'.*add_item"):
        engine.update("cart-1", "nope", 1)
    assert handle.history() == before


def test_bad_arguments_get_a_clear_error_before_anything_is_recorded(
    engine: fg.Engine,
) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    before = handle.history()
    with pytest.raises(TypeError, match="argument 0 of update 'add_item'"):
        engine.update("cart-1", "add_item", object())
    with pytest.raises(TypeError, match="update name must be a non-empty string"):
        engine.update("cart-1", "", "apple")
    with pytest.raises(TypeError, match="update_id must be a non-empty string"):
        engine.update("cart-1", "add_item", "apple", update_id="")
    with pytest.raises(ValueError, match="timeout must be seconds >= 0"):
        engine.update("cart-1", "add_item", "apple", timeout=-1)
    with pytest.raises(TypeError, match="workflow id must be a str"):
        engine.update(7, "add_item", "apple")  # type: ignore[arg-type]
    with pytest.raises(fg.UnknownWorkflow):
        engine.update("no-such-cart", "add_item", "apple")
    # Arguments that do not fit the handler: rejected, like a validator's error.
    with pytest.raises(fg.UpdateRejected, match="TypeError"):
        engine.update("cart-1", "add_item", "a", "b")
    assert handle.history() == before


def test_a_handler_may_yield_commands_beside_the_main_code(engine: fg.Engine) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    assert engine.update("cart-1", "add_priced", "pear") == 2.0
    assert engine.update("cart-1", "add_priced", "apple") == 3.5
    history = handle.history()
    scheduled = [e for e in history if isinstance(e, fg.ActivityScheduled)]
    timers = [e for e in history if isinstance(e, fg.TimerStarted)]
    # The main code's wait_signal took seq 0; the handlers' commands took the next ones.
    assert [(e.seq, e.name, e.args) for e in scheduled] == [
        (1, "upd_price", ["pear"]),
        (3, "upd_price", ["apple"]),
    ]
    assert [e.seq for e in timers] == [2, 4]
    engine.signal("cart-1", "checkout")
    assert handle.result() == {
        "owner": "kyle",
        "items": ["pear", "apple"],
        "total": 3.5,
    }
    fg.check_replay(cart, handle.history())  # and it replays


def test_a_failing_handler_raises_update_failed_and_the_run_goes_on(
    engine: fg.Engine,
) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    with pytest.raises(fg.UpdateFailed, match="ValueError") as info:
        engine.update("cart-1", "remove", "ghost", update_id="r-1")
    assert info.value.error.type == "ValueError"
    assert info.value.update_id == "r-1"
    (failed,) = [e for e in handle.history() if isinstance(e, fg.UpdateErrored)]
    assert failed.update_id == "r-1"
    assert handle.status() == "running"
    assert engine.update("cart-1", "add_item", "apple") == 1


def test_an_update_id_makes_a_retry_return_the_same_answer_without_running_again(
    engine: fg.Engine,
) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    assert engine.update("cart-1", "add_item", "apple", update_id="once") == 1
    # The validator would reject "apple" now; the retry is not validated again.
    assert engine.update("cart-1", "add_item", "apple", update_id="once") == 1
    assert engine.query("cart-1", "items") == ["apple"]
    with pytest.raises(fg.UpdateFailed):
        engine.update("cart-1", "remove", "ghost", update_id="bad")
    with pytest.raises(fg.UpdateFailed):  # the same failure, not a second call
        engine.update("cart-1", "remove", "ghost", update_id="bad")
    accepted = [e for e in handle.history() if isinstance(e, fg.UpdateAccepted)]
    assert [e.update_id for e in accepted] == ["once", "bad"]


def test_a_recorded_update_replays_after_a_reopen(path: str) -> None:
    clock = ManualClock(autojump=False)
    first = open_engine(path, clock=clock)
    first.start(cart, "kyle", id="cart-1")
    assert first.update("cart-1", "add_item", "apple") == 1
    # A handler that waits on a timer when the engine closes.
    with pytest.raises(TimeoutError, match="still running"):
        first.update("cart-1", "add_priced", "pear", update_id="p-1")
    first.close()

    second = open_engine(path, clock=ManualClock(clock.now()))
    try:
        # Replayed: the state the updates built is back, and the handler resumes.
        assert second.query("cart-1", "items") == ["apple"]
        assert second.update("cart-1", "add_priced", "pear", update_id="p-1") == 2.0
        assert second.query("cart-1", "items") == ["apple", "pear"]
        with pytest.raises(fg.UpdateRejected):
            second.update("cart-1", "add_item", "pear")  # the replayed state validates
        second.signal("cart-1", "checkout")
        handle = second.get("cart-1")
        assert handle.result()["items"] == ["apple", "pear"]
        accepted = [e for e in handle.history() if isinstance(e, fg.UpdateAccepted)]
        assert len(accepted) == 2  # the retry after the reopen recorded nothing new
    finally:
        second.close()


def test_an_update_to_a_closed_run_is_refused_unless_it_was_recorded(
    engine: fg.Engine,
) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    assert engine.update("cart-1", "add_item", "apple", update_id="a") == 1
    engine.signal("cart-1", "checkout")
    handle.result()
    with pytest.raises(fg.WorkflowClosed, match="takes no more updates"):
        engine.update("cart-1", "add_item", "pear")
    # A retry of an update the run recorded still gets its answer.
    assert engine.update("cart-1", "add_item", "apple", update_id="a") == 1


def test_a_run_that_ends_before_its_update_tells_the_caller(engine: fg.Engine) -> None:
    handle = engine.start(short_lived, 10.0, id="short")
    with pytest.raises(fg.WorkflowClosed, match="before update 'slow'"):
        engine.update("short", "slow")
    assert handle.result() == "done"
    assert not [e for e in handle.history() if isinstance(e, fg.UpdateCompleted)]


def test_a_cancel_reaches_a_running_handler(engine: fg.Engine) -> None:
    handle = engine.start(waiter, id="w")
    with pytest.raises(TimeoutError, match="still running"):
        engine.update("w", "wait", update_id="u")
    engine.cancel("w")
    with pytest.raises(fg.UpdateFailed, match="Cancelled"):
        engine.update("w", "wait", update_id="u")
    assert handle.result() == "cancelled"


def test_a_timed_out_caller_gets_the_answer_later_in_the_background(path: str) -> None:
    with open_engine(path) as engine:
        engine.start(waiter, id="w")
        with pytest.raises(TimeoutError, match="did not finish within"):
            engine.update("w", "wait", update_id="u", timeout=0.05)
        answers: list[object] = []
        caller = threading.Thread(
            target=lambda: answers.append(engine.update("w", "wait", update_id="u"))
        )
        caller.start()
        engine.signal("w", "go", "now")
        caller.join(timeout=30)
        assert answers == ["went now"]
        assert engine.update("w", "wait", update_id="u", timeout=30) == "went now"


def test_replay_checks_a_handlers_end(engine: fg.Engine) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    engine.update("cart-1", "add_item", "apple")
    history = handle.history()
    fg.check_replay(cart, history)
    changed = [
        fg.UpdateCompleted(e.at, e.update_id, e.name, 99)
        if isinstance(e, fg.UpdateCompleted)
        else e
        for e in history
    ]
    with pytest.raises(fg.NonDeterminismError, match="update_completed"):
        fg.check_replay(cart, changed)


def test_the_async_engine_sends_updates_and_awaits_their_results(path: str) -> None:
    from flowgen.aio import AsyncEngine

    async def main() -> None:
        async with AsyncEngine(path) as engine:
            handle = await engine.start(cart, "kyle", id="cart-1")
            assert await engine.update("cart-1", "add_item", "apple") == 1
            assert await handle.update("add_item", "pear", update_id="p") == 2
            with pytest.raises(fg.UpdateRejected, match="in the cart already"):
                await engine.update("cart-1", "add_item", "apple")
            await engine.start(waiter, id="w")
            with pytest.raises(TimeoutError, match="did not finish within"):
                await engine.update("w", "wait", update_id="u", timeout=0.05)
            await engine.signal("w", "go", 1)
            assert (
                await engine.update("w", "wait", update_id="u", timeout=60) == "went 1"
            )

    asyncio.run(asyncio.wait_for(main(), 120))  # a hang guard, not a speed target


def test_a_handle_sends_updates(engine: fg.Engine) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    assert handle.update("add_item", "apple") == 1
    assert engine.get("cart-1").update("add_item", "pear", update_id="x") == 2


def test_updates_show_in_the_history_and_on_the_timeline(engine: fg.Engine) -> None:
    handle = engine.start(cart, "kyle", id="cart-1")
    engine.update("cart-1", "add_priced", "pear", update_id="p-1")
    with pytest.raises(fg.UpdateFailed):
        engine.update("cart-1", "remove", "ghost", update_id="r-1")
    table = handle.history()._repr_html_()
    assert "update_accepted" in table and "update_completed" in table
    assert "update_failed" in table and "id p-1" in table
    figure = handle.timeline()
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == [
        "run",
        "0 · wait 'checkout'",
        "1 · upd_price",
        "2 · sleep 1m 00s",
        "update add_priced",
        "update remove",
    ]
    notes = [t.get_text() for t in figure.axes[0].texts]
    assert "p-1" in notes and "r-1" in notes


def test_an_update_is_reached_on_a_run_held_parked_after_a_reopen(path: str) -> None:
    # A run that waits for a signal with no deadline is held on open without a replay;
    # an update rebuilds it (its validator needs the state) and runs its handler.
    first = open_engine(path, clock=ManualClock())
    first.start(cart, "kyle", id="cart-1")
    first.close()
    second = open_engine(path, clock=ManualClock())
    try:
        assert second.update("cart-1", "add_item", "apple") == 1
        with pytest.raises(fg.UpdateRejected):
            second.update("cart-1", "add_item", "apple")
        assert second.update("cart-1", "add_priced", "pear") == 2.0
    finally:
        second.close()


KILLED_APP = """
import sys, threading, time
import flowgen as fg
from tests.test_updates import cart

engine = fg.Engine(sys.argv[1])
engine.start_background()
engine.start(cart, "kyle", id="cart-1")
print("added", engine.update("cart-1", "add_item", "apple"), flush=True)
# The handler of this one waits on a 60 s timer when the process is killed.
threading.Thread(
    target=engine.update, args=("cart-1", "add_priced", "pear"),
    kwargs={"update_id": "p-1"}, daemon=True,
).start()
while not any(isinstance(e, fg.TimerStarted) for e in engine.get("cart-1").history()):
    time.sleep(0.01)
print("waiting", flush=True)
time.sleep(600)
"""


def test_kill_9_while_a_handler_waits_then_the_update_finishes_after_a_reopen(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import sys

    db = str(tmp_path / "killed.duckdb")
    root = Path(__file__).resolve().parent.parent
    app = subprocess.Popen(
        [sys.executable, "-c", KILLED_APP, db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "added 1"
        assert app.stdout.readline().strip() == "waiting"
        os.kill(app.pid, signal.SIGKILL)
        app.wait(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
        app.communicate(timeout=60)

    engine = open_engine(db, clock=ManualClock())  # jumps to the handler's timer
    try:
        assert engine.query("cart-1", "items") == [
            "apple"
        ]  # the accepted update replays
        assert engine.update("cart-1", "add_priced", "pear", update_id="p-1") == 2.0
        history = engine.get("cart-1").history()
        assert [e.update_id for e in history if isinstance(e, fg.UpdateAccepted)][
            1:
        ] == ["p-1"]
        assert engine.query("cart-1", "items") == ["apple", "pear"]
    finally:
        engine.close()
