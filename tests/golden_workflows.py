"""The workflows behind the golden histories in ``tests/golden/``. STABLE CODE.

A golden history is a compatibility contract: a run recorded by this code must replay under
every later version of it. So never change what a workflow here yields, or in which order.
Change it the way users must: behind ``fg.get_version``, with a new golden recorded for the
new branch, keeping the old golden (see ``onboarding``).

The ``*_v0`` functions are yesterday's code, kept only to record the goldens that today's
code must still replay (``onboarding_v0``) or must refuse to (``process_order_v0``). They are
not decorated, and record under today's names (``Stepper.create(name=...)``).

Registered names carry a ``golden.`` prefix so they never clash with ``tests.workflows`` in
the process-wide catalog of decorated functions.

`RECORDERS` maps ``"<workflow>/<scenario>"`` (the file ``tests/golden/<workflow>/<scenario>.jsonl``)
to a function that records that history with the Stepper, performing the activities for
real (``Stepper.run``). ``pytest --regen-golden`` calls them for the files that are missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator
from datetime import timedelta
from typing import Any

import attrs

import flowgen as fg
from flowgen.testing import Stepper

# ---------------------------------------------------------------------------------------------
# Order processing, with a side effect and a retried activity (scenarios.md §1).


class InvalidOrder(Exception):
    """The order failed validation."""


class CarrierUnavailable(Exception):
    """The shipping carrier did not answer (retryable)."""


@attrs.frozen
class Receipt:
    order_id: str
    amount: float


@fg.activity(name="golden.validate_order")
def validate_order(order_id: str) -> bool:
    return not order_id.startswith("bad-")


def new_tracking_number() -> str:
    return f"TRK-{uuid.uuid4().hex[:10]}"


@fg.activity(name="golden.charge_payment")
def charge_payment(order_id: str, amount: float) -> Receipt:
    return Receipt(order_id, amount)


class Shipper:
    """Holds the carrier connection (an activity as a bound method); flaky on demand."""

    def __init__(self) -> None:
        self.failures = 0
        self.calls = 0

    @fg.activity(
        name="golden.ship_order",
        retry=fg.RetryPolicy(max_attempts=5, initial_interval=2.0, backoff=2.0),
    )
    def ship(self, order_id: str, tracking: str) -> str:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise CarrierUnavailable(f"carrier busy (call {self.calls})")
        return f"{order_id} shipped as {tracking}"


SHIPPER = Shipper()


@fg.workflow(name="golden.process_order")
def process_order(order_id: str) -> fg.Workflow[str]:
    ok = yield from fg.call(validate_order, order_id)
    if not ok:
        raise InvalidOrder(order_id)
    tracking = yield from fg.side_effect(new_tracking_number)
    receipt = yield from fg.call(charge_payment, order_id, 100.0)
    yield from fg.call(SHIPPER.ship, order_id, tracking)
    return f"{tracking} charged {receipt.amount}"


def process_order_v0(order_id: str) -> fg.Workflow[str]:
    """Yesterday's code: it charged before validating (changed without get_version)."""
    receipt = yield from fg.call(charge_payment, order_id, 100.0)
    ok = yield from fg.call(validate_order, order_id)
    if not ok:
        raise InvalidOrder(order_id)
    tracking = yield from fg.side_effect(new_tracking_number)
    yield from fg.call(SHIPPER.ship, order_id, tracking)
    return f"{tracking} charged {receipt.amount}"


# ---------------------------------------------------------------------------------------------
# Trip booking saga, rolled back (scenarios.md §2).


@attrs.frozen
class Trip:
    trip_id: str
    destination: str
    card: str


@attrs.frozen
class Booking:
    kind: str
    ref: str


class CardDeclined(fg.NonRetryableError):
    """The card was declined: retrying cannot help."""


@fg.activity(name="golden.book_hotel")
def book_hotel(trip: Trip) -> Booking:
    return Booking("hotel", f"H-{trip.trip_id}")


@fg.activity(name="golden.cancel_hotel")
def cancel_hotel(booking: Booking) -> None:
    assert isinstance(booking, Booking)


@fg.activity(name="golden.book_flight")
def book_flight(trip: Trip) -> Booking:
    return Booking("flight", f"F-{trip.trip_id}-{trip.destination}")


@fg.activity(name="golden.cancel_flight")
def cancel_flight(booking: Booking) -> None:
    assert isinstance(booking, Booking)


@fg.activity(name="golden.charge_card")
def charge_card(trip: Trip) -> str:
    if trip.card == "declined":
        raise CardDeclined(f"card for trip {trip.trip_id} declined")
    return f"C-{trip.trip_id}"


@fg.workflow(name="golden.book_trip")
def book_trip(trip: Trip) -> fg.Workflow[str]:
    saga = fg.Saga()
    try:
        hotel = yield from fg.call(book_hotel, trip)
        saga.add(fg.call(cancel_hotel, hotel))
        flight = yield from fg.call(book_flight, trip)
        saga.add(fg.call(cancel_flight, flight))
        yield from fg.call(charge_card, trip)
        return "booked"
    except Exception:  # fg.Cancelled included
        yield from saga.compensate()
        raise


# ---------------------------------------------------------------------------------------------
# A signal racing a timer: approval with a deadline (scenarios.md §4).


@attrs.frozen
class Claim:
    claim_id: str
    amount: float


@fg.activity(name="golden.notify_manager")
def notify_manager(claim: Claim) -> None:
    assert isinstance(claim, Claim)


@fg.activity(name="golden.record_decision")
def record_decision(claim: Claim, decision: str) -> str:
    return f"{claim.claim_id}: {decision}"


@fg.workflow(name="golden.expense")
def expense(claim: Claim) -> fg.Workflow[str]:
    yield from fg.call(notify_manager, claim)
    index, decision = yield from fg.race(
        fg.wait_signal("decision", result_type=str), fg.sleep(timedelta(days=3))
    )
    if index == 1:
        decision = "auto-rejected"
    yield from fg.call(record_decision, claim, str(decision))
    return str(decision)


# ---------------------------------------------------------------------------------------------
# Continue-as-new: a batch that keeps each run's history bounded (scenarios.md §5).


@attrs.frozen
class Page:
    items: tuple[str, ...]
    next_cursor: str | None


PAGES = {
    None: Page(("ann", "bob"), "p2"),
    "p2": Page(("cy",), "p3"),
    "p3": Page(("dee", "eve"), None),
}


@fg.activity(name="golden.fetch_page")
def fetch_page(cursor: str | None) -> Page:
    return PAGES[cursor]


@fg.activity(name="golden.push_to_crm")
def push_to_crm(items: list[str]) -> int:
    return len(items)


@fg.workflow(name="golden.sync_customers")
def sync_customers(cursor: str | None = None, synced: int = 0) -> fg.Workflow[int]:
    for _ in range(2):
        page = yield from fg.call(fetch_page, cursor)
        yield from fg.call(push_to_crm, list(page.items))
        synced += len(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return synced
        yield from fg.sleep(1.0)
    yield from fg.continue_as_new(cursor, synced)


# ---------------------------------------------------------------------------------------------
# Versioning: code changed under running workflows (scenarios.md §7).


@fg.activity(name="golden.create_account")
def create_account(user: str) -> str:
    return f"acct-{user}"


@fg.activity(name="golden.send_welcome_v1")
def send_welcome_v1(user: str) -> None:
    assert user


@fg.activity(name="golden.send_welcome_v2")
def send_welcome_v2(user: str, locale: str = "en") -> None:
    assert user and locale


@fg.activity(name="golden.send_tips")
def send_tips(user: str) -> None:
    assert user


@fg.workflow(name="golden.onboarding")
def onboarding(user: str) -> fg.Workflow[str]:
    account = yield from fg.call(create_account, user)
    version = yield from fg.get_version("welcome-email", fg.DEFAULT_VERSION, 1)
    if version == fg.DEFAULT_VERSION:
        yield from fg.call(send_welcome_v1, user)
    else:
        yield from fg.call(send_welcome_v2, user, locale="en")
    yield from fg.sleep(timedelta(days=7))
    yield from fg.call(send_tips, user)
    return account


def onboarding_v0(user: str) -> fg.Workflow[str]:
    """Yesterday's code, before the ``welcome-email`` change and its get_version existed."""
    account = yield from fg.call(create_account, user)
    yield from fg.call(send_welcome_v1, user)
    yield from fg.sleep(timedelta(days=7))
    yield from fg.call(send_tips, user)
    return account


# ---------------------------------------------------------------------------------------------
# Recording.


def _scrubbed(history: list[fg.Event]) -> list[fg.Event]:
    # Tracebacks hold this machine's file paths; replay never reads them, diffs would.
    def scrub(event: fg.Event) -> fg.Event:
        changes = {
            field.name: attrs.evolve(value, traceback="")
            for field in attrs.fields(type(event))
            if isinstance(value := getattr(event, field.name), fg.ErrorInfo)
        }
        return attrs.evolve(event, **changes) if changes else event  # type: ignore[misc]

    return [scrub(event) for event in history]


def _run_to_end(stepper: Stepper[Any]) -> list[fg.Event]:
    stepper.next()
    while stepper.command is not None:
        stepper.run()
    return _scrubbed(stepper.history)


def record_shipped_after_retries() -> list[fg.Event]:
    SHIPPER.failures = 2
    return _run_to_end(Stepper.create(process_order, ["o-1"], workflow_id="order-o-1"))


def record_invalid_order() -> list[fg.Event]:
    return _run_to_end(
        Stepper.create(process_order, ["bad-7"], workflow_id="order-bad-7")
    )


def record_charge_before_validate() -> list[fg.Event]:
    SHIPPER.failures = 0
    stepper = Stepper.create(
        process_order_v0, ["o-2"], workflow_id="order-o-2", name="golden.process_order"
    )
    return _run_to_end(stepper)


TRIP = Trip("t-1", "LIS", "declined")


def record_trip_rolled_back() -> list[fg.Event]:
    return _run_to_end(Stepper.create(book_trip, [TRIP], workflow_id="trip-t-1"))


def record_trip_cancelled() -> list[fg.Event]:
    stepper = Stepper.create(
        book_trip, [attrs.evolve(TRIP, card="ok")], workflow_id="trip-t-2"
    )
    stepper.next()
    stepper.run()  # the hotel is booked
    stepper.advance(30)
    stepper.cancel("customer changed their mind")  # while the flight is being booked
    while stepper.command is not None:  # the compensation: cancel_hotel
        stepper.run()
    return _scrubbed(stepper.history)


CLAIM = Claim("c-9", 120.5)


def record_decision_before_deadline() -> list[fg.Event]:
    stepper = Stepper.create(expense, [CLAIM], workflow_id="expense-c-9")
    stepper.next()
    stepper.run()  # notify_manager; now the race is pending
    stepper.advance(timedelta(hours=5))
    stepper.signal("decision", "approved")
    stepper.run()  # record_decision
    return _scrubbed(stepper.history)


def record_deadline_first() -> list[fg.Event]:
    stepper = Stepper.create(expense, [CLAIM], workflow_id="expense-c-10")
    stepper.next()
    stepper.run()
    stepper.fire_timer()  # three days pass
    stepper.run()
    return _scrubbed(stepper.history)


def record_decision_buffered() -> list[fg.Event]:
    stepper = Stepper.create(expense, [CLAIM], workflow_id="expense-c-11")
    stepper.next()
    stepper.signal("decision", "approved early")  # before the wait: buffered
    stepper.run()  # notify_manager; the race takes the buffered signal at once
    stepper.run()
    return _scrubbed(stepper.history)


def _sync_runs() -> tuple[list[fg.Event], list[fg.Event]]:
    first = Stepper.create(sync_customers, workflow_id="sync-crm")
    first_history = _run_to_end(first)
    second = first.next_run()
    return first_history, _run_to_end(second)


def record_onboarding_before_get_version() -> list[fg.Event]:
    stepper = Stepper.create(
        onboarding_v0, ["ann"], workflow_id="onboarding-ann", name="golden.onboarding"
    )
    return _run_to_end(stepper)


def record_onboarding_welcome_v2() -> list[fg.Event]:
    return _run_to_end(
        Stepper.create(onboarding, ["bob"], workflow_id="onboarding-bob")
    )


RECORDERS: dict[str, Callable[[], list[fg.Event]]] = {
    "process_order/shipped_after_retries": record_shipped_after_retries,
    "process_order/invalid_order": record_invalid_order,
    "process_order/charge_before_validate_nondeterministic": record_charge_before_validate,
    "book_trip/rolled_back_card_declined": record_trip_rolled_back,
    "book_trip/cancelled_while_booking_flight": record_trip_cancelled,
    "expense/decision_before_deadline": record_decision_before_deadline,
    "expense/deadline_first": record_deadline_first,
    "expense/decision_buffered_before_wait": record_decision_buffered,
    "sync_customers/first_run_continued_as_new": lambda: _sync_runs()[0],
    "sync_customers/second_run_completed": lambda: _sync_runs()[1],
    "onboarding/recorded_before_get_version": record_onboarding_before_get_version,
    "onboarding/welcome_v2": record_onboarding_welcome_v2,
}

WORKFLOWS: dict[str, Callable[..., Generator[Any, Any, object]]] = {
    "process_order": process_order,
    "book_trip": book_trip,
    "expense": expense,
    "sync_customers": sync_customers,
    "onboarding": onboarding,
}
"""Today's code for each workflow directory under ``tests/golden/``."""
