"""Type checks for the workflow DSL and the Stepper: checked by mypy, never run.

    mypy --strict --warn-unused-ignores tests/typing

(pytest skips this directory: see ``collect_ignore_glob`` in ``tests/conftest.py``.) Each
``# type: ignore[code]`` marks a line that *must* be an error: with ``warn_unused_ignores``
an ignore that stops being needed fails the check, so the ignore proves the error exists.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, assert_type

import attrs

import flowgen as fg
from flowgen.testing import run_script


@attrs.frozen
class Receipt:
    order_id: str
    amount: float


@fg.activity
def fetch_price(item: int) -> int:
    return item * 10


@fg.activity
def describe(item: int) -> str:
    return str(item)


@fg.activity
def charge(order_id: str, amount: float) -> Receipt:
    return Receipt(order_id, amount)


@fg.activity
async def fetch_remote(item: int) -> float:
    return float(item)


def new_token() -> str:
    return "t"


@fg.workflow
def invoice(order_id: str, lines: int) -> fg.Workflow[float]:
    yield from fg.sleep(1)
    return 1.0 * lines


@fg.workflow
def order(item: int) -> fg.Workflow[str]:
    assert_type((yield from fg.call(fetch_price, 7)), int)
    price = yield from fg.call(fetch_price, item)
    assert_type(price, int)
    assert_type((yield from fg.call(charge, "o-1", 10.0)), Receipt)
    assert_type((yield from fg.call(charge, order_id="o-1", amount=1.5)), Receipt)
    assert_type(
        (yield from fg.call(fetch_remote, 1)), float
    )  # async def: the awaited type

    # Wrong arguments are errors (each ignore is checked to be needed).
    # `call` is overloaded (sync, async, by name), so mypy reports `call-overload`.
    yield from fg.call(fetch_price, "seven")  # type: ignore[call-overload]
    yield from fg.call(fetch_price)  # type: ignore[call-overload]
    yield from fg.call(charge, "o-1", 10.0, 3)  # type: ignore[call-overload]
    yield from fg.child(invoice, "o-1", "many")  # type: ignore[arg-type]

    pair = yield from fg.gather(fg.call(fetch_price, 1), fg.call(describe, 2))
    assert_type(pair, tuple[int, str])
    triple = yield from fg.gather(
        fg.call(fetch_price, 1), fg.call(describe, 2), fg.call(charge, "o", 1.0)
    )
    assert_type(triple, tuple[int, str, Receipt])
    winner = yield from fg.race(fg.call(fetch_price, 1), fg.call(fetch_price, 2))
    assert_type(winner, tuple[int, int])

    assert_type((yield from fg.sleep(timedelta(hours=1))), None)
    assert_type((yield from fg.current_time()), datetime)
    assert_type((yield from fg.get_version("change", fg.DEFAULT_VERSION, 1)), int)
    assert_type((yield from fg.info()), fg.WorkflowInfo)
    assert_type((yield from fg.side_effect(new_token)), str)
    assert_type((yield from fg.wait_signal("approve", result_type=bool)), bool)
    assert_type((yield from fg.wait_signal("approve", timeout=60)), Any)
    assert_type((yield from fg.wait_signal("x", result_type=list[int])), list[int])
    assert_type((yield from fg.child(invoice, "o-1", 3)), float)
    assert_type((yield from fg.send_signal("greeter-1", "greet", {"n": 1})), None)

    # A plain `yield` works too, untyped.
    anything = yield fg.call(fetch_price, 1)
    assert_type(anything, Any)
    return str(price)


def stepping() -> None:
    stepper = fg.Stepper(order, 7)
    assert_type(stepper, fg.Stepper[str])
    assert_type(stepper.result, str | None)
    assert_type(stepper.next(), fg.Command | None)
    assert_type(stepper.fork(1), fg.Stepper[str])
    assert_type(fg.Stepper.from_history(order, stepper.history), fg.Stepper[str])
    fg.Stepper(order, "seven")  # type: ignore[arg-type]
    assert_type(run_script(order, 7, script=[(fg.call(fetch_price, 7), 70)]), str)
    assert_type(fg.check_replay(order, stepper.history), fg.ReplayResult)
