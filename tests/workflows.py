"""Sample workflows from ``shared/scenarios.md``, shared by tests, docs, goldens and notebooks.

Each activity has a small, deterministic body so the engine tests can run it for real; the
interpreter tests never call them (they feed outcomes by hand or draw them with Hypothesis).
Nothing here imports Hypothesis or pytest: docs and notebooks import this module too.

Import it as ``tests.workflows`` everywhere (``tests`` is a package), never as ``workflows``:
the decorators keep a catalog keyed by module and name, and one file imported under two module
names would claim every name twice.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import attrs

import flowgen as fg

# ---------------------------------------------------------------------------------------------
# 1. Order processing, where a retry never double-charges.


class InvalidOrder(Exception):
    """The order failed validation."""


class ShippingUnavailable(Exception):
    """The carrier refused the parcel (a transient failure)."""


@fg.activity
def validate_order(order_id: str) -> bool:
    return not order_id.startswith("bad")


_tracking_numbers = itertools.count(1000)


def new_tracking_number() -> str:
    return f"TRK-{next(_tracking_numbers)}"


@fg.activity
def charge_payment(order_id: str, amount: float) -> str:
    return f"receipt-{order_id}-{amount:.2f}"


SHIP_FAILURES_BEFORE_SUCCESS = 2
_ship_attempts: dict[str, int] = {}


@fg.activity(retry=fg.RetryPolicy(max_attempts=5, initial_interval=1.0))
def ship_order(order_id: str, tracking: str) -> str:
    """Fails twice per order, then ships (scenario 1: the retries are events)."""
    attempt = _ship_attempts[order_id] = _ship_attempts.get(order_id, 0) + 1
    if attempt <= SHIP_FAILURES_BEFORE_SUCCESS:
        raise ShippingUnavailable(f"attempt {attempt} for {order_id}")
    return f"shipped {order_id} as {tracking}"


def reset_activity_state() -> None:
    """Forget the attempts counted by the flaky activities (call between engine tests)."""
    _ship_attempts.clear()


@fg.workflow
def process_order(order_id: str) -> fg.Workflow[str]:
    ok = yield from fg.call(validate_order, order_id)
    if not ok:
        raise InvalidOrder(order_id)
    tracking = yield from fg.side_effect(new_tracking_number)
    yield from fg.call(charge_payment, order_id, 100.0)
    yield from fg.call(ship_order, order_id, tracking)  # fails twice, then succeeds
    return tracking


# ---------------------------------------------------------------------------------------------
# 2. Trip booking saga, rolled back on failure or on cancel.


@attrs.frozen
class Trip:
    traveller: str
    destination: str
    nights: int = 1


@attrs.frozen
class Booking:
    kind: str
    reference: str


class CardDeclined(Exception):
    """The payment card was declined."""


@fg.activity
def book_hotel(trip: Trip) -> Booking:
    return Booking("hotel", f"H-{trip.destination}-{trip.nights}")


@fg.activity
def cancel_hotel(booking: Booking) -> None:
    return None


@fg.activity
def book_flight(trip: Trip) -> Booking:
    return Booking("flight", f"F-{trip.destination}")


@fg.activity
def cancel_flight(booking: Booking) -> None:
    return None


@fg.activity(retry=fg.RetryPolicy(non_retryable=(CardDeclined,)))
def charge_card(trip: Trip) -> str:
    if trip.traveller == "declined":
        raise CardDeclined(f"card of {trip.traveller} declined")
    return "charged"


@fg.workflow
def book_trip(trip: Trip) -> fg.Workflow[str]:
    saga = fg.Saga()
    try:
        hotel = yield from fg.call(book_hotel, trip)
        saga.add(fg.call(cancel_hotel, hotel))
        flight = yield from fg.call(book_flight, trip)
        saga.add(fg.call(cancel_flight, flight))
        yield from fg.call(charge_card, trip)  # raises CardDeclined
        return "booked"
    except Exception:  # fg.Cancelled included
        yield from saga.compensate()  # cancel_flight, then cancel_hotel
        raise


# ---------------------------------------------------------------------------------------------
# 3. A stateful greeter that other workflows talk to.


@fg.activity
def greet(name: str) -> str:
    return f"Hello, {name}!"


@fg.workflow
def greeter(max_greetings: int = 3) -> fg.Workflow[int]:
    served = 0
    yield from fg.current_time()
    while served < max_greetings:
        try:
            req = yield from fg.wait_signal("greet", timeout=timedelta(seconds=30))
        except fg.SignalTimeout:
            break
        text = yield from fg.call(greet, req["name"])
        yield from fg.send_signal(req["reply_to"], "greeting", text)
        served += 1
    return served


@fg.workflow
def ask_for_greeting(greeter_id: str, name: str) -> fg.Workflow[object]:
    me = yield from fg.info()  # this run's id, name, start time
    yield from fg.send_signal(
        greeter_id, "greet", {"name": name, "reply_to": me.workflow_id}
    )
    return (yield from fg.wait_signal("greeting"))


# ---------------------------------------------------------------------------------------------
# 4. Human approval with a deadline.


@dataclasses.dataclass(frozen=True)
class Claim:
    claimant: str
    amount: float


@fg.activity
def notify_manager(claim: Claim) -> None:
    return None


@fg.activity
def record_decision(claim: Claim, decision: str) -> None:
    return None


@fg.workflow
def expense(claim: Claim) -> fg.Workflow[str]:
    yield from fg.call(notify_manager, claim)
    i, decision = yield from fg.race(
        fg.wait_signal("decision", result_type=str), fg.sleep(timedelta(days=3))
    )
    if i == 1:
        decision = "auto-rejected"
    yield from fg.call(record_decision, claim, decision)
    return decision


# ---------------------------------------------------------------------------------------------
# 5. Batch processing that runs forever, with continue-as-new.


@attrs.frozen
class Page:
    items: tuple[str, ...]
    next_cursor: str | None = None


CUSTOMERS = tuple(f"c{i:03d}" for i in range(25))


@fg.activity
def fetch_page(cursor: str | None) -> Page:
    start = int(cursor or 0)
    end = start + 10
    return Page(CUSTOMERS[start:end], str(end) if end < len(CUSTOMERS) else None)


@fg.activity
def push_to_crm(items: tuple[str, ...]) -> int:
    return len(items)


@fg.workflow
def sync_customers(
    cursor: str | None = None, synced: int = 0, pages_per_run: int = 100
) -> fg.Workflow[int]:
    for _ in range(pages_per_run):
        page = yield from fg.call(fetch_page, cursor)
        yield from fg.call(push_to_crm, page.items)
        synced += len(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return synced
        yield from fg.sleep(1.0)  # stay under the CRM's rate limit
    yield from fg.continue_as_new(cursor, synced, pages_per_run)


# ---------------------------------------------------------------------------------------------
# 6. Fan-out, fan-in, with progress you can ask for.


@fg.activity
def load_table(table: str) -> int:
    return len(table) * 100


@fg.workflow
def nightly_etl(tables: list[str]) -> fg.Workflow[int]:
    done: list[str] = []
    yield from fg.on_query("progress", lambda: {"done": len(done), "of": len(tables)})
    results = yield from fg.gather(*(fg.call(load_table, t) for t in tables))
    done.extend(tables)
    yield from fg.set_tags(rows=sum(results))
    return sum(results)


# ---------------------------------------------------------------------------------------------
# 7. Changing code under running workflows. `onboarding_v1` is the code as it was before the
# change; `onboarding` is today's; `onboarding_edited` is the same edit made without
# `get_version`, which replay must catch.


@fg.activity
def create_account(user: str) -> str:
    return f"acct-{user}"


@fg.activity
def send_welcome_v1(user: str) -> None:
    return None


@fg.activity
def send_welcome_v2(user: str, locale: str = "en") -> None:
    return None


@fg.activity
def send_tips(user: str) -> None:
    return None


@fg.workflow(name="onboarding_v1")
def onboarding_v1(user: str) -> fg.Workflow[None]:
    yield from fg.call(create_account, user)
    yield from fg.call(send_welcome_v1, user)
    yield from fg.sleep(timedelta(days=7))
    yield from fg.call(send_tips, user)


@fg.workflow
def onboarding(user: str) -> fg.Workflow[None]:
    yield from fg.call(create_account, user)
    v = yield from fg.get_version("welcome-email", fg.DEFAULT_VERSION, 1)
    if v == fg.DEFAULT_VERSION:
        yield from fg.call(send_welcome_v1, user)
    else:
        yield from fg.call(send_welcome_v2, user, locale="en")
    yield from fg.sleep(timedelta(days=7))
    yield from fg.call(send_tips, user)


@fg.workflow(name="onboarding_edited")
def onboarding_edited(user: str) -> fg.Workflow[None]:
    yield from fg.call(create_account, user)
    yield from fg.call(send_welcome_v2, user, locale="en")  # edited without get_version
    yield from fg.sleep(timedelta(days=7))
    yield from fg.call(send_tips, user)


# ---------------------------------------------------------------------------------------------
# Small workflows for edge cases.


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


@fg.activity
def echo(value: object) -> object:
    return value


@fg.activity
def double(n: int) -> int:
    return 2 * n


@fg.activity
def make_booking(kind: str) -> Booking:
    return Booking(kind, f"{kind}-1")


@fg.workflow
def child_double(n: int) -> fg.Workflow[int]:
    return (yield from fg.call(double, n))


@fg.workflow
def parent_of_child(n: int) -> fg.Workflow[int]:
    """Starts a child and adds one to its result; a child failure is rethrown."""
    value = yield from fg.child(child_double, n)
    return value + 1


@fg.workflow
def everything_once(n: int) -> Generator[Any, Any, list[object]]:
    """One of each command, in a fixed order: exercises every event kind."""
    start = yield from fg.current_time()
    me = yield from fg.info()
    yield from fg.on_query("n", lambda: n)
    v = yield from fg.get_version("everything", fg.DEFAULT_VERSION, 2)
    a = yield from fg.call(double, n)
    token = yield from fg.side_effect(new_tracking_number)
    yield from fg.sleep(5)
    yield from fg.set_tags(stage="middle", n=n)
    c = yield from fg.child(child_double, a)
    both = yield from fg.gather(fg.call(double, c), fg.sleep(1))
    i, won = yield from fg.race(fg.wait_signal("go", timeout=60), fg.sleep(120))
    yield from fg.send_signal("elsewhere", "hello", {"from": me.workflow_id})
    end = yield from fg.current_time()
    return [v, a, token, c, list(both), i, won, (end - start).total_seconds()]


@fg.workflow
def nested_combinators() -> fg.Workflow[object]:
    """``gather(a, race(b, gather(c, d)), e)``: numbered a=0, b=1, c=2, d=3, e=4."""
    result = yield from fg.gather(
        fg.call(echo, "a"),
        fg.race(fg.wait_signal("b"), fg.gather(fg.call(echo, "c"), fg.sleep(4))),
        fg.side_effect(new_tracking_number),
    )
    return result


@fg.workflow
def forever_catching_cancel() -> fg.Workflow[int]:
    """Catches every `Cancelled` and keeps sleeping: only a terminate ends it."""
    caught = 0
    while True:
        try:
            yield from fg.sleep(10)
        except fg.Cancelled:
            caught += 1
            yield from fg.call(echo, caught)


@fg.workflow
def collect_signals(count: int, name: str = "item") -> fg.Workflow[list[object]]:
    """Waits for *count* signals called *name* and returns their payloads in order."""
    received: list[object] = []
    for _ in range(count):
        received.append((yield from fg.wait_signal(name)))
    return received


@fg.workflow
def side_effect_race() -> fg.Workflow[object]:
    """Two side effects race: the first performed wins, the other is cancelled."""
    return (
        yield from fg.race(
            fg.side_effect(new_tracking_number), fg.side_effect(new_tracking_number)
        )
    )


@fg.workflow
def saga_of_three(fail_at: int) -> fg.Workflow[str]:
    """Three steps with compensations; the step numbered *fail_at* is told to fail."""
    saga = fg.Saga()
    try:
        for step in range(3):
            yield from fg.call(echo, f"step-{step}" if step != fail_at else "fail")
            saga.add(fg.call(echo, f"undo-{step}"))
        return "done"
    except Exception:
        yield from saga.compensate()
        raise


@fg.workflow
def signal_juggler(rounds: int = 2) -> fg.Workflow[list[object]]:
    """Races a signal wait against a wait-and-send, round after round.

    A wait cancelled by the race gives up its claim: a signal of its name arriving later
    is buffered for the next round's wait.
    """
    got: list[object] = []
    for r in range(rounds):
        i, value = yield from fg.race(
            fg.wait_signal("a", timeout=10),
            fg.gather(fg.wait_signal("b"), fg.send_signal("peer", "tick", r)),
        )
        got.append([i, value])
        yield from fg.set_tags(round=r)
    return got


@fg.workflow
def updatable_cart(limit: int) -> fg.Workflow[list[object]]:
    """Items come in by update until the checkout signal.

    A validator refuses a duplicate or an item past *limit*; one handler calls an activity
    and sleeps, one waits for a signal, one fails for an item not in the cart.
    """
    items: list[object] = []

    def check(item: object) -> None:
        if item in items:
            raise ValueError(f"{item!r} is in the cart already")
        if len(items) >= limit:
            raise ValueError("the cart is full")

    def add(item: object) -> int:
        items.append(item)
        return len(items)

    def add_checked(item: object) -> Generator[Any, Any, int]:
        checked = yield fg.call(echo, item)
        yield fg.sleep(5)
        items.append(checked)
        return len(items)

    def wait_then_add(item: object) -> Generator[Any, Any, int]:
        extra = yield fg.wait_signal("extra")
        items.append([item, extra])
        return len(items)

    def drop(item: object) -> int:
        items.remove(item)  # ValueError for an item not in the cart: the update fails
        return len(items)

    yield fg.on_update("add", add, validator=check)
    yield fg.on_update("add_checked", add_checked, validator=check)
    yield fg.on_update("wait_then_add", wait_then_add)
    yield fg.on_update("drop", drop)
    yield fg.wait_signal("checkout")
    return items


SAMPLE_WORKFLOWS = (
    process_order,
    book_trip,
    greeter,
    ask_for_greeting,
    expense,
    sync_customers,
    nightly_etl,
    onboarding,
)
"""The scenario workflows, in scenarios.md order."""
