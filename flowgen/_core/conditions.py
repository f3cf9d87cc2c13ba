"""Waiting on workflow state: ``fg.wait_condition`` and the waits a run holds.

Temporal's way for the main code to wait until an update handler (or another branch of
the run) changed the state it reads. `wait_condition` builds the `WaitCondition` command;
`ConditionWaits` holds the waits of one run for its interpreter, which calls `first_met`
at the points below.

Rules
=====

* **Checked at once.** When a generator yields a wait whose predicate is already true,
  ``True`` is sent back at once and nothing is recorded (no seq taken).
* **Checked after every event.** Otherwise the generator waits; after each incoming event
  has been fed and the code it woke (the main code, update handlers) has run, the
  interpreter asks `first_met`: the waits are checked in the order they began, the first
  one met wakes its generator with ``True``, that code runs, and the check starts again
  until none is met. Events are fed in history order and predicates read only workflow
  state, so a replay makes the same checks with the same answers: the predicate is never
  recorded.
* **The timeout is a timer.** With ``timeout=``, the wait takes a seq and records a
  ``timer_started`` like `fg.sleep` (so the engine, the Stepper and a `ManualClock` treat it
  as any timer); when it fires first, ``False`` is sent back. When the predicate is met
  first, the timer is cancelled (``command_cancelled``, reason ``"condition"``). ``False``
  on a timeout, as in Temporal's TypeScript, Go and Java SDKs (Temporal's Python SDK raises
  ``asyncio.TimeoutError`` instead; a boolean needs no ``try`` in a generator).
* **A predicate that raises** has its exception thrown into the waiting generator at the
  ``yield``, like a failed command (in the main code, uncaught, it fails the run). It runs
  as workflow code: calling an activity directly in it is `UsageError`.
* **Cancellation and the end.** A cancel request or the run's end drops every wait (the
  timers with the other awaited commands); the waiting generators get `Cancelled` or are
  closed as any other would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import attrs

from flowgen._core.tree import Leaf
from flowgen._core.updates import UpdateBranch
from flowgen._core.workflow_code import IN_WORKFLOW_CODE
from flowgen._vocabulary.commands import WaitCondition
from flowgen._vocabulary.durations import check_at_most_max, finite

__all__ = [
    "CONDITION_MET",
    "ConditionWait",
    "ConditionWaits",
    "check",
    "describe_condition",
    "wait_condition",
]

CONDITION_MET = "condition"
"""The reason recorded when a met condition cancels its timeout's timer."""


def wait_condition(
    predicate: Callable[[], object], *, timeout: float | timedelta | None = None
) -> WaitCondition:
    """Wait until *predicate* returns true: ``ok = yield fg.wait_condition(lambda: state.done)``.

    The predicate reads workflow state that update handlers (``fg.on_update``) or another
    branch of the run change. It is checked at once, then after every event the run is
    fed, and it is never recorded, so it must read workflow state only (no clock, no IO).

    Args:
        predicate: A function of no arguments; the wait ends when it returns a true value.
        timeout: How long to wait (seconds or a `timedelta`); ``None`` waits forever. It
            is recorded as a timer.

    Returns:
        The command; yield it. ``True`` comes back once the predicate is true, ``False``
        if the timeout ran out first.

    Raises:
        TypeError: *predicate* is not callable, or *timeout* is not a duration.
        ValueError: *timeout* is negative, not finite or too long for a timer.
    """
    seconds: float | None = None
    if timeout is not None:
        value = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(
                f"wait_condition(timeout=...) must be seconds (a number) or a timedelta, "
                f"got {timeout!r}"
            )
        if not finite(value) or value < 0:
            raise ValueError(
                f"wait_condition(timeout=...) must be a finite duration >= 0, got {timeout!r}"
            )
        check_at_most_max(value, "wait_condition(timeout=...)", timeout)
        seconds = float(value)
    return WaitCondition(predicate, seconds)


def describe_condition(command: WaitCondition) -> str:
    """How a wait is shown: ``wait_condition(<name>)``, with its timeout if it has one."""
    timeout = "" if command.timeout is None else f", timeout={command.timeout:g} s"
    return f"wait_condition({command.name}{timeout})"


def check(predicate: Callable[[], object]) -> tuple[bool, object]:
    """Call *predicate* as workflow code: ``(True, met)``, or ``(False, exc)`` if it raised."""
    mark = IN_WORKFLOW_CODE.set(True)
    try:
        return True, bool(predicate())
    except Exception as exc:  # noqa: BLE001  # thrown into the waiting code
        return False, exc
    finally:
        IN_WORKFLOW_CODE.reset(mark)


@attrs.define
class ConditionWait:
    """One generator waiting on a predicate.

    Attributes:
        command: What it yielded.
        branch: The update handler waiting, or ``None`` for the main code.
        timer: The leaf of the timeout's timer, or ``None`` without a timeout.
    """

    command: WaitCondition
    branch: UpdateBranch | None
    timer: Leaf | None


class ConditionWaits:
    """The condition waits of one run, in the order they began."""

    def __init__(self) -> None:
        self.waiting: list[ConditionWait] = []

    def add(self, wait: ConditionWait) -> None:
        """A generator began waiting."""
        self.waiting.append(wait)

    def first_met(self) -> tuple[ConditionWait, bool, object] | None:
        """The first wait whose predicate is true (or raised), taken out, and the answer."""
        for wait in self.waiting:
            ok, met = check(wait.command.predicate)
            if not ok or met:
                self.waiting.remove(wait)
                return wait, ok, met
        return None

    def timed_out(self, root: object) -> ConditionWait | None:
        """The wait whose timeout's timer *root* is, taken out (its timer fired)."""
        for wait in self.waiting:
            if wait.timer is root:
                self.waiting.remove(wait)
                return wait
        return None

    def clear(self) -> None:
        """Drop every wait (a cancel request, the run's end)."""
        self.waiting.clear()
