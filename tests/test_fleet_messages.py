"""A fleet's requests to a run another engine holds: updates, terminate, racing signals, code.

Engines of one fleet on the tests' own PostgreSQL server (tests/pg.py), in this process:
hand-driven ones where a test must choose who moves when, background ones where a caller
blocks while the holder works. What they check, each against what one engine on a file
does: an update reaches the holder, which validates and runs it, and the caller gets its
answer (a result, `UpdateRejected` with nothing recorded, `UpdateFailed`, a timeout), once,
even if the holder dies mid-update; ``on_conflict="terminate_existing"`` ends the run the
holder runs (its children by their ``parent_close``) and starts anew; a signal never stays
acknowledged and unrecorded: one posted while the run closes is refused (`WorkflowClosed`)
or recorded before the close; an engine claims only runs of workflows it has code for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

import flowgen as fg
from flowgen.aio import AsyncEngine
from tests.cli_process import flowgen, ok
from tests.fleet_app import fleet_cart, fleet_gated, fleet_parent
from tests.test_fleet import check_fenced_histories, eventually, owner_of, rows

HANG_GUARD = 60.0
"""The longest a caller waits for what the fleet does in well under a second."""


@pytest.fixture
def worker(pg_url: str, engines: list[fg.Engine]) -> Callable[..., fg.Engine]:
    """A background engine of the fleet (its threads look for work every 50 ms)."""

    def make(**options: Any) -> fg.Engine:
        engine = fg.Engine(pg_url, fleet=fg.FleetOptions(poll=0.05, **options))
        engine.start_background()
        engines.append(engine)
        return engine

    return make


def a_row_lock_is_awaited(url: str) -> bool:
    """True while some transaction waits for a row another one holds."""
    waiting = rows(
        url,
        "select count(*) from pg_locks where not granted and locktype in "
        "('tuple', 'transactionid')",
    )
    return waiting != [(0,)]


def events_of(url: str, workflow_id: str) -> list[str]:
    return [
        kind
        for (kind,) in rows(
            url,
            "select e.kind from events e join workflows w using (run_id) "
            "where w.workflow_id = %s order by w.started_at, e.event_id",
            workflow_id,
        )
    ]


# -- updates ----------------------------------------------------------------------------------


def test_an_update_reaches_the_run_another_engine_holds(
    pg_url: str, member: Callable[..., fg.Engine], worker: Callable[..., fg.Engine]
) -> None:
    holder = worker()
    cart = holder.start(fleet_cart, "ann", id="cart-1")
    caller = member(
        runs_workflows=False
    )  # runs nothing: every update goes to the holder
    assert caller.update("cart-1", "add", "apple", timeout=HANG_GUARD) == 1
    assert caller.update("cart-1", "add", "pear", timeout=HANG_GUARD) == 2
    recorded = events_of(pg_url, "cart-1")
    # The validator rejects on the holder: the caller gets why, nothing is recorded.
    with pytest.raises(fg.UpdateRejected, match="in the cart already"):
        caller.update("cart-1", "add", "apple", timeout=HANG_GUARD)
    assert events_of(pg_url, "cart-1") == recorded
    # An unknown update name is rejected too; a handler that raises fails the update.
    with pytest.raises(fg.UpdateRejected):
        caller.update("cart-1", "no_such_update", timeout=HANG_GUARD)
    with pytest.raises(fg.UpdateFailed):
        caller.update("cart-1", "remove", "plum", timeout=HANG_GUARD)
    # An update id already answered is answered again, not applied again.
    assert caller.update("cart-1", "add", "fig", update_id="u-fig") == 3
    assert caller.update("cart-1", "add", "fig", update_id="u-fig") == 3
    caller.signal("cart-1", "checkout")
    assert cart.result(timeout=HANG_GUARD) == {
        "owner": "ann",
        "items": ["apple", "pear", "fig"],
    }
    assert events_of(pg_url, "cart-1").count("update_accepted") == 4
    # Every request and reply was consumed.
    eventually(
        lambda: rows(pg_url, "select count(*) from fleet_messages") == [(0,)],
        "no message is left",
    )
    # A closed run takes no more updates, as on one engine.
    with pytest.raises(fg.WorkflowClosed):
        caller.update("cart-1", "add", "kiwi", timeout=HANG_GUARD)
    check_fenced_histories(pg_url)


def test_an_asyncio_caller_awaits_an_update_another_engine_runs(
    pg_url: str, worker: Callable[..., fg.Engine]
) -> None:
    holder = worker()
    holder.start(fleet_cart, "dee", id="cart-4")

    async def call() -> list[object]:
        options = fg.FleetOptions(runs_workflows=False)
        async with AsyncEngine(pg_url, fleet=options) as engine:
            added = await engine.update("cart-4", "add", "plum", timeout=HANG_GUARD)
            with pytest.raises(fg.UpdateRejected):
                await engine.update("cart-4", "add", "plum", timeout=HANG_GUARD)
            return [added]

    assert asyncio.run(call()) == [1]
    assert events_of(pg_url, "cart-4").count("update_accepted") == 1


def test_an_update_times_out_then_survives_its_holders_death_applied_once(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    holder = member(lease=0.5)  # hand-driven: it moves only when the test drives it
    holder.start(fleet_cart, "bob", id="cart-2")
    caller = member(runs_workflows=False)
    # Nobody drives the holder: the caller's timeout is honoured.
    with pytest.raises(TimeoutError):
        caller.update("cart-2", "add_when", "tea", update_id="u-tea", timeout=0.3)
    holder.run_until_idle()  # accepts the update; its handler waits for "ok"
    assert events_of(pg_url, "cart-2").count("update_accepted") == 1
    answer: list[object] = []

    def call() -> None:
        try:
            answer.append(
                caller.update(
                    "cart-2", "add_when", "tea", update_id="u-tea", timeout=HANG_GUARD
                )
            )
        except Exception as exc:  # the test reads it below
            answer.append(exc)

    waiting = threading.Thread(target=call)
    waiting.start()
    # The holder dies mid-update (never drives nor renews again): once its lease lapsed,
    # another engine takes the run over, replays it and finishes the handler.
    successor = member(lease=0.5)
    eventually(
        lambda: (
            successor.run_until_idle() >= 0
            and rows(pg_url, "select owner from workflows where workflow_id = 'cart-2'")
            == [(owner_of(successor),)]
        ),
        "the successor claims the run",
    )
    caller.signal("cart-2", "ok")
    eventually(lambda: successor.run_until_idle() >= 0 and bool(answer), "an answer")
    waiting.join(HANG_GUARD)
    assert answer == [1]
    kinds = events_of(pg_url, "cart-2")
    assert kinds.count("update_accepted") == 1
    assert kinds.count("update_completed") == 1


def test_flowgen_update_reaches_a_run_a_worker_holds(
    pg_url: str, worker: Callable[..., fg.Engine]
) -> None:
    holder = worker()
    holder.start(fleet_cart, "cy", id="cart-3")
    # The command runs no workflow: it needs no --import, the holder has the code.
    assert (
        ok(flowgen("--db", pg_url, "update", "cart-3", "add", '"milk"')).strip() == "1"
    )
    done = flowgen("--db", pg_url, "update", "cart-3", "add", '"milk"')
    assert done.returncode == 1
    assert "in the cart already" in done.stderr
    assert events_of(pg_url, "cart-3").count("update_accepted") == 1


# -- terminate_existing -----------------------------------------------------------------------


def test_terminate_existing_ends_the_run_another_engine_holds(
    pg_url: str, member: Callable[..., fg.Engine], worker: Callable[..., fg.Engine]
) -> None:
    holder = worker()
    old = holder.start(fleet_parent, 1, id="parent-t")
    eventually(
        lambda: rows(pg_url, "select count(*) from workflows") == [(2,)],
        "the parent started its child",
    )
    caller = member(runs_workflows=False)
    new = caller.start(fleet_parent, 2, id="parent-t", on_conflict="terminate_existing")
    assert new.run_id != old.run_id
    with pytest.raises(fg.WorkflowFailed):
        old.result(timeout=HANG_GUARD)
    query = "select run_id, status from workflows where workflow_id = 'parent-t'"
    statuses = dict(rows(pg_url, query))
    assert statuses == {old.run_id: "terminated", new.run_id: "running"}
    # The old parent's child ended with it, as its parent_close ("terminate") says.
    eventually(
        lambda: (
            ("terminated",)
            in rows(
                pg_url, "select status from workflows where workflow_id = 'parent-t/0'"
            )
        ),
        "the old child is terminated",
    )
    # The new run goes on on the fleet (its own child under the same id).
    eventually(
        lambda: (
            ("running",)
            in rows(
                pg_url, "select status from workflows where workflow_id = 'parent-t/0'"
            )
        ),
        "the new parent started its child",
    )
    caller.signal("parent-t/0", "go", "new")
    assert holder.get("parent-t").result(timeout=HANG_GUARD) == ["new", 4]
    check_fenced_histories(pg_url)


@pytest.mark.parametrize("kind", ["retry", "reset"])
def test_a_relaunch_with_terminate_ends_the_run_another_engine_holds(
    kind: str,
    pg_url: str,
    member: Callable[..., fg.Engine],
    worker: Callable[..., fg.Engine],
) -> None:
    holder = worker()
    first = holder.start(fleet_gated, 1, id="gated-r")
    holder.signal("gated-r", "go", "first")
    assert first.result(timeout=HANG_GUARD) == ["first", 2]
    second = holder.start(
        fleet_gated, 5, id="gated-r", on_conflict="terminate_existing"
    )
    eventually(lambda: second.status() == "running", "the second run runs")
    caller = member(runs_workflows=False)
    relaunch = caller.retry if kind == "retry" else caller.reset
    options: dict[str, Any] = {"run_id": first.run_id, "terminate": True}
    if kind == "reset":
        options["event_id"] = 1
    third = relaunch("gated-r", **options)
    assert third.run_id not in (first.run_id, second.run_id)
    with pytest.raises(fg.WorkflowFailed):
        second.result(timeout=HANG_GUARD)
    query = "select run_id, status from workflows where workflow_id = 'gated-r'"
    assert dict(rows(pg_url, query)) == {
        first.run_id: "completed",
        second.run_id: "terminated",
        third.run_id: "running",
    }
    ended = rows(
        pg_url,
        "select payload->>'reason' from events where run_id = %s "
        "and kind = 'workflow_terminated'",
        second.run_id,
    )
    assert ended == [(f"terminated by a {kind}",)]
    caller.signal("gated-r", "go", "third")
    assert holder.get("gated-r").result(timeout=HANG_GUARD) == ["third", 2]
    check_fenced_histories(pg_url)


# -- a signal racing its run's end ------------------------------------------------------------


def test_a_signal_posted_while_the_run_closes_is_refused_not_left(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    holder = member()
    holder.start(fleet_gated, 1, id="racing")
    sender = member(runs_workflows=False)
    # The holder's closing transaction, in flight: it has written the run's new status
    # and not committed yet (a transaction of the test's, standing for the holder's).
    closing = psycopg.connect(pg_url)
    closing.execute(
        "update workflows set status = 'completed', closed_at = now() "
        "where workflow_id = 'racing'"
    )
    outcome: list[object] = []

    def signal() -> None:
        try:
            sender.signal("racing", "go", "late")
            outcome.append("acknowledged")
        except Exception as exc:  # the test reads it below
            outcome.append(exc)

    sending = threading.Thread(target=signal)
    sending.start()
    eventually(
        lambda: a_row_lock_is_awaited(pg_url) or bool(outcome),
        "the signal waits for the closing transaction",
    )
    closing.commit()
    closing.close()
    sending.join(HANG_GUARD)
    # As on one engine, a signal to a finished run is refused, and nothing is left over.
    assert len(outcome) == 1 and isinstance(outcome[0], fg.WorkflowClosed), outcome
    assert rows(pg_url, "select count(*) from fleet_messages") == [(0,)]


SIGNALLER: dict[str, fg.Engine] = {}


@fg.activity(name="fleet_signal_then_return")
def signal_then_return(workflow_id: str) -> str:
    """Signals the calling run from another engine, just before the run ends."""
    SIGNALLER["engine"].signal(workflow_id, "extra", "just in time")
    return "done"


@fg.workflow(name="fleet_ends_after_a_call")
def ends_after_a_call(workflow_id: str) -> fg.Workflow[str]:
    return (yield from fg.call(signal_then_return, workflow_id))


def test_a_signal_acknowledged_before_the_run_closes_is_recorded_before_its_end(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    holder = member()
    SIGNALLER["engine"] = member(runs_workflows=False)
    handle = holder.start(ends_after_a_call, "closing", id="closing")
    holder.run_until_idle()  # the activity signals, then the run ends on the holder
    assert handle.result() == "done"
    kinds = events_of(pg_url, "closing")
    assert "signal_received" in kinds
    assert kinds.index("signal_received") < kinds.index("workflow_completed")
    assert rows(pg_url, "select count(*) from fleet_messages") == [(0,)]


def test_messages_left_for_closed_runs_are_swept_with_the_renewals(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    engine = member(lease=0.3)  # renews (and sweeps) every 0.1 s when it looks
    done = engine.start(fleet_gated, 1, id="done")
    engine.signal("done", "go", "now")
    engine.run_until_idle()
    assert done.result() == ["now", 2]
    waiting = engine.start(fleet_gated, 2, id="waiting")
    # News posted as "done" closed (a late activity outcome, a child's end, a shared
    # attempt's start), a reply nobody read for an hour, and a signal for a running run
    # (which stays, delivered).
    rows(
        pg_url,
        "insert into fleet_messages (workflow_id, run_id, kind, body, posted_at) values "
        "('done', %s, 'feed', '{}', now()), ('done', null, 'child', '{}', now()), "
        "('done', null, 'started', '{}', now()), "
        "('done', null, 'update_reply', '{}', now() - interval '1 hour')",
        done.run_id,
    )
    eventually(
        lambda: (
            engine.run_until_idle() >= 0
            and rows(pg_url, "select count(*) from fleet_messages") == [(0,)]
        ),
        "the leftovers are swept",
    )
    assert waiting.status() == "running"
    member(runs_workflows=False).signal("waiting", "go", "later")
    engine.run_until_idle()
    assert waiting.result() == ["later", 4]


# -- claiming only what this engine has code for ----------------------------------------------


def fleet_unregistered(n: int) -> fg.Workflow[int]:
    """Registered only on the engines given it (not decorated)."""
    doubled = yield from fg.wait_signal("go")
    return int(doubled) + n


def test_an_engine_claims_only_runs_of_workflows_it_has_code_for(
    pg_url: str, member: Callable[..., fg.Engine]
) -> None:
    client = member(workflows=(fleet_unregistered,), runs_workflows=False)
    handle = client.start(fleet_unregistered, 1, id="needs-code")
    other = client.start(fleet_gated, 2, id="any-worker")
    lacking = member()  # knows the decorated workflows only
    lacking.run_until_idle()
    owners = dict(rows(pg_url, "select workflow_id, owner from workflows"))
    assert owners == {"any-worker": owner_of(lacking), "needs-code": None}
    # It waits visibly: `flowgen ls` says no engine holds it.
    listed = ok(flowgen("--db", pg_url, "ls")).splitlines()
    (line,) = [text for text in listed if "needs-code" in text]
    assert "running (held by no engine)" in line
    (line,) = [text for text in listed if "any-worker" in text]
    assert "held by no engine" not in line
    having = member(workflows=(fleet_unregistered,))
    having.run_until_idle()
    assert rows(
        pg_url, "select owner from workflows where workflow_id = 'needs-code'"
    ) == [(owner_of(having),)]
    client.signal("needs-code", "go", 41)
    client.signal("any-worker", "go", "x")
    having.run_until_idle()
    lacking.run_until_idle()
    assert handle.result() == 42
    assert other.result() == ["x", 4]


# -- a deadlock between two commits ----------------------------------------------------------


@fg.workflow(name="fleet_deadlock_sender")
def deadlock_sender(target: str) -> fg.Workflow[str]:
    """On ``go``, signal *target* (which another engine holds) and end, in one commit."""
    yield from fg.wait_signal("go")
    yield fg.send_signal(target, "hello", "from the sender")
    return "sent"


@fg.workflow(name="fleet_deadlock_receiver")
def deadlock_receiver() -> fg.Workflow[str]:
    return (yield from fg.wait_signal("hello"))


def _deadlocks(url: str) -> int:
    ((count,),) = rows(
        url,
        "select deadlocks from pg_stat_database where datname = current_database()",
    )
    return int(count)


def test_a_commit_chosen_to_end_a_deadlock_is_applied_again(
    pg_url: str, engines: list[fg.Engine]
) -> None:
    # The sender's holder commits "signal the receiver, end": it writes the sender's row
    # (locking it), then locks the receiver's row FOR SHARE to post the signal. A
    # transaction of the test's holds the receiver's row and then asks for the sender's:
    # a deadlock, which PostgreSQL ends by aborting the holder's commit (its
    # deadlock_timeout is the shorter). Applied again, it commits: nothing is lost or
    # doubled.
    holder_url = pg_url.replace(
        "&options=", "&options=" + quote("-c deadlock_timeout=3s ", safe=""), 1
    )
    workflows = [deadlock_sender, deadlock_receiver]

    def engine(url: str) -> fg.Engine:
        made = fg.Engine(url, workflows=workflows, fleet=fg.FleetOptions(poll=0.05))
        engines.append(made)
        made.start_background()
        return made

    holder, other = engine(holder_url), engine(pg_url)
    receiving = other.start(deadlock_receiver, id="receiver")
    sending = holder.start(deadlock_sender, "receiver", id="sender")
    before = _deadlocks(pg_url)
    blocker = psycopg.connect(pg_url)
    blocker.execute("set deadlock_timeout = '60s'")
    blocker.execute("select 1 from workflows where workflow_id = 'receiver' for update")
    signalling = threading.Thread(target=holder.signal, args=("sender", "go"))
    signalling.start()
    eventually(
        lambda: a_row_lock_is_awaited(pg_url),
        "the holder's commit waits for the receiver's row",
    )
    # Closes the cycle; returns once PostgreSQL has aborted the holder's commit.
    blocker.execute("select 1 from workflows where workflow_id = 'sender' for update")
    blocker.rollback()
    blocker.close()
    signalling.join(HANG_GUARD)
    assert sending.result(timeout=HANG_GUARD) == "sent"
    assert receiving.result(timeout=HANG_GUARD) == "from the sender"
    assert events_of(pg_url, "sender").count("signal_sent") == 1
    assert events_of(pg_url, "receiver").count("signal_received") == 1
    eventually(lambda: _deadlocks(pg_url) > before, "PostgreSQL counts the deadlock")
