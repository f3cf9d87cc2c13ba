"""``flowgen demo``: a guided tour that runs a real workflow on an embedded DuckDB file.

Two orders go through one workflow. Reserving stock fails twice and is retried; the card is
charged; a durable timer (a short fraud-check window) is still pending when the engine is
stopped, as if the process had crashed, and is honoured after the file is reopened; a
reviewer's signal approves one order and rejects the other, whose saga then refunds the card
and releases the stock, newest step first. The tour ends with the history of the rejected
order and one SQL query over the ``activities`` view.

Real clock, short waits: the whole tour takes about three seconds.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TextIO

# Written with the public API's names (``fg.activity`` is `activity` here, and so on),
# imported from their modules: the command line may not import the package's top level,
# which pulls in ``flowgen.testing``.
from flowgen._core.dsl import (
    Saga,
    Workflow,
    activity,
    call,
    sleep,
    wait_signal,
    workflow,
)
from flowgen._runtime.engine import Engine
from flowgen._runtime.handle import WorkflowHandle
from flowgen._runtime.invoke import activity_info
from flowgen._vocabulary.errors import WorkflowFailed
from flowgen._vocabulary.retry import RetryPolicy
from flowgen.cli.table import format_history, format_table

__all__ = ["DEMO_SQL", "process_order", "run_demo"]

FRAUD_CHECK_WINDOW = timedelta(seconds=1.5)
"""How long the workflow's durable timer waits before asking a reviewer."""

DEMO_SQL = """\
select workflow_id, name, attempts, status,
       round(duration_s, 3) as seconds, last_error
from activities
order by workflow_id, seq"""
"""The query the demo ends with: one row per activity call."""


class OrderRejected(Exception):
    """A reviewer said no."""


@activity(retry=RetryPolicy(max_attempts=4, initial_interval=0.1, backoff=2.0))
def reserve_stock(order_id: str) -> str:
    """Reserve the items; the warehouse API times out on the first two attempts."""
    time.sleep(0.02)
    if activity_info().attempt < 3:
        raise ConnectionError("warehouse API timed out")
    return f"reservation-{order_id}"


@activity
def charge_card(order_id: str, amount: float) -> str:
    """Charge the customer; returns the payment receipt."""
    time.sleep(0.05)
    return f"receipt-{order_id}-{amount:.2f}"


@activity
def ship_order(order_id: str) -> str:
    """Hand the parcel to the carrier; returns the tracking number."""
    time.sleep(0.03)
    return f"TRACK-{order_id.upper()}"


@activity
def refund_card(receipt: str) -> None:
    """Compensation for `charge_card`."""
    time.sleep(0.03)


@activity
def release_stock(reservation: str) -> None:
    """Compensation for `reserve_stock`."""
    time.sleep(0.01)


@workflow
def process_order(order_id: str, amount: float) -> Workflow[str]:
    """Reserve, charge, wait out a fraud-check window, ask a reviewer, ship; undo on failure."""
    saga = Saga()
    try:
        reservation = yield call(reserve_stock, order_id)  # retried on failure
        saga.add(call(release_stock, reservation))
        receipt = yield call(charge_card, order_id, amount)
        saga.add(call(refund_card, receipt))
        yield sleep(FRAUD_CHECK_WINDOW)  # a durable timer
        approved = yield wait_signal("approve", timeout=timedelta(minutes=5))
        if not approved:
            raise OrderRejected(f"order {order_id} was rejected by a reviewer")
        tracking: str = yield call(ship_order, order_id)
        return tracking
    except Exception:  # Cancelled included
        yield from saga.compensate()  # refund_card, then release_stock
        raise


def _wait_for_timer(handle: WorkflowHandle, deadline: float) -> None:
    while time.monotonic() < deadline:
        if any(w.startswith("timer") for w in handle.waiting_for().values()):
            return
        time.sleep(0.01)


def _free_ids(engine: Engine) -> tuple[str, str]:
    # A fresh file gets order-1 and order-2; running the demo again on it adds order-3, ...
    k = 1
    while engine.store.get_run(f"order-{k}") or engine.store.get_run(f"order-{k + 1}"):
        k += 2
    return f"order-{k}", f"order-{k + 1}"


def run_demo(path: str, *, out: TextIO) -> int:
    """Run the tour on the database *path* (created if missing), narrating to *out*.

    Args:
        path: The DuckDB file to use.
        out: Where the narration goes.

    Returns:
        The exit code: 0 if everything happened as the tour says, else 1.

    Raises:
        StoreLockedError: Another process has *path* open.
    """

    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()

    began = time.monotonic()
    say("flowgen demo: durable workflows as plain Python generators, stored in DuckDB")
    say(f"database: {path}")
    say()
    say(
        "The workflow (flowgen/cli/demo.py): reserve stock (the warehouse API fails twice,"
    )
    say("so it is retried), charge the card, wait out a 1.5 s fraud-check window on a")
    say(
        "durable timer, wait for a reviewer's 'approve' signal, ship. A saga undoes the"
    )
    say("finished steps if anything fails.")
    say()

    say("1. Start two orders on an engine (each start is durable when it returns).")
    with Engine(path) as engine:
        first, second = _free_ids(engine)
        h1 = engine.start(process_order, first, 42.0, id=first)
        h2 = engine.start(process_order, second, 990.0, id=second)
        say(f"   started {first} (42.00) and {second} (990.00)")
        deadline = time.monotonic() + 10
        _wait_for_timer(h1, deadline)
        _wait_for_timer(h2, deadline)
        waiting = {h.workflow_id: list(h.waiting_for().values()) for h in (h1, h2)}
        for workflow_id, what in waiting.items():
            say(
                f"   {workflow_id}: stock reserved on attempt 3, card charged; waiting for {', '.join(what) or 'nothing'}"
            )
    say()
    say(
        "2. Stop the engine while both timers are pending, as if the process had crashed."
    )
    say(
        "   Nothing in flight is lost: every step was committed before it was acted on."
    )
    say()

    say(
        "3. Reopen the file: the unfinished runs resume, their timers keep their due time."
    )
    with Engine(path) as engine:
        say(
            f"   resumed: {first} is {engine.get(first).status()}, {second} is {engine.get(second).status()}"
        )
        say(f"   signal {first}: approve = true; signal {second}: approve = false")
        engine.signal(first, "approve", True)
        engine.signal(second, "approve", False)
        tracking = engine.get(first).result(timeout=30)
        say(f"   {first} completed: shipped, tracking number {tracking}")
        try:
            engine.get(second).result(timeout=30)
        except WorkflowFailed as exc:
            say(f"   {second} failed: {exc.error}")
            say(
                "   and its saga ran refund_card, then release_stock (newest step first)"
            )
        else:  # pragma: no cover - the workflow raises OrderRejected
            say(f"   {second} completed, which the tour did not expect")
            return 1
        history = engine.get(second).history()
        say()
        say(f"4. The history of {second}, as stored in the events table:")
        say(format_history(history, indent="   "))
        say()
        say(
            "5. One SQL query over the history (the activities view, one row per call):"
        )
        say("   " + DEMO_SQL.replace("\n", "\n   "))
        say()
        relation = engine.sql(DEMO_SQL)
        columns, rows = list(relation.columns), relation.fetchall()
        say(format_table(columns, rows, indent="   "))
    say()
    say(f"Done in {time.monotonic() - began:.1f} s. Look around with:")
    say(f"   flowgen --db {path} ls")
    say(f"   flowgen --db {path} show {second}")
    say(
        f'   flowgen --db {path} sql "select name, avg(duration_s) from activity_attempts group by name"'
    )
    return 0
