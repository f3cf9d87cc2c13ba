"""Clocks: the only place the runtime reads the time (trio's Clock / MockClock pattern).

`SystemClock` is wall-clock UTC. `ManualClock` is time under a test's or a notebook's
control: it starts at a fixed, odd epoch (so code that sneaks a look at the real clock stands
out), moves only when told, and an engine driven by `Engine.run_until_idle` jumps it straight
to the next due timer, so a 30-day sleep takes milliseconds.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from flowgen._vocabulary.durations import MAX_SECONDS, finite

__all__ = ["Clock", "ManualClock", "SystemClock"]

MAX_WAIT_SECONDS = 3600.0
"""The longest a `SystemClock` waits at once; the timer thread then looks again."""


class Clock(Protocol):
    """Where the engine gets the time from."""

    def now(self) -> datetime:
        """The current time, tz-aware UTC."""

    def sleep_until(self, deadline: datetime, wakeup: threading.Event) -> None:
        """Block until *deadline* or until *wakeup* is set, whichever comes first.

        It may return earlier (a bounded wait): the caller looks at the time again.
        """


class SystemClock:
    """Real time: `datetime.now(UTC)`."""

    def now(self) -> datetime:
        """The current time, tz-aware UTC."""
        return datetime.now(UTC)

    def sleep_until(self, deadline: datetime, wakeup: threading.Event) -> None:
        """Wait on *wakeup* until *deadline*, or for at most `MAX_WAIT_SECONDS`.

        A caller that wants the deadline itself looks again after a bounded wait: a wait of
        centuries would overflow the platform's thread waits.
        """
        delay = (deadline - self.now()).total_seconds()
        if delay > 0:
            wakeup.wait(min(delay, MAX_WAIT_SECONDS))

    def __repr__(self) -> str:
        return "SystemClock()"


MANUAL_EPOCH = datetime(2031, 3, 7, 9, 26, 53, tzinfo=UTC)
"""Where a `ManualClock` starts: a fixed, odd moment nobody would mistake for "now"."""


class ManualClock:
    """Time that moves only when told to: ``advance``, ``set``, or the engine's autojump.

    Args:
        start: The starting time (tz-aware); `MANUAL_EPOCH` by default.
        autojump: When true, an engine driven by ``run_until_idle`` jumps the clock to the
            next due timer whenever nothing else is left to do.
    """

    def __init__(
        self, start: datetime = MANUAL_EPOCH, *, autojump: bool = True
    ) -> None:
        if not isinstance(start, datetime):
            raise TypeError(
                f"ManualClock(start=...) must be a datetime, got {start!r:.60}"
            )
        if start.tzinfo is None:
            raise ValueError("ManualClock(start=...) must be timezone-aware")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.autojump = autojump

    def now(self) -> datetime:
        """The clock's current time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the clock forward by *seconds* (or a timedelta); returns the new time.

        Raises:
            TypeError: *seconds* is neither a number nor a timedelta.
            ValueError: It is negative, NaN, or longer than `MAX_SECONDS` (100 years).
        """
        delta = seconds if isinstance(seconds, timedelta) else _delta(seconds)
        if delta < timedelta(0):
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        with self._changed:
            self._now += delta
            self._changed.notify_all()
            return self._now

    def set(self, when: datetime) -> None:
        """Move the clock forward to *when* (never back)."""
        if getattr(when, "tzinfo", None) is None:  # naive, or no datetime at all
            raise TypeError(f"set() takes a timezone-aware datetime, got {when!r:.60}")
        with self._changed:
            if when > self._now:
                self._now = when
                self._changed.notify_all()

    def sleep_until(self, deadline: datetime, wakeup: threading.Event) -> None:
        """Wait until the clock reaches *deadline*, *wakeup* is set, or a short while passes.

        A background engine on a manual clock polls here; tests move time with `advance`.
        """
        with self._changed:
            if self._now < deadline and not wakeup.is_set():
                self._changed.wait(0.05)

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"


def monotonic() -> float:
    """Seconds from an arbitrary point, for measuring durations (never for workflow time)."""
    return time.monotonic()


def _delta(seconds: object) -> timedelta:
    """*seconds* given to `ManualClock.advance`, checked, as a timedelta."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"advance() takes seconds or a timedelta, got {type(seconds).__name__}: "
            f"{seconds!r:.60}"
        )
    if not finite(seconds) or abs(seconds) > MAX_SECONDS:  # NaN, inf, 10**400, 1e300
        raise ValueError(
            f"advance() takes a finite number of seconds, at most {MAX_SECONDS:.0f} "
            f"(100 years), got {seconds!r:.60}"
        )
    return timedelta(seconds=seconds)
