"""Limits on activities: rate limits, concurrency limits and task queues, as values.

Rules:

- A `RateLimit` of ``count`` per ``per`` seconds means: at most ``count`` attempts of the
  activity *start* in any window of ``per`` seconds (a sliding window, as DBOS's queue
  limiter; not a token bucket, which lets up to twice as many through at a window's edge).
  ``"10/s"``, ``"100/min"``, ``"5/h"`` and ``"3/2.5s"`` are its short forms
  (`RateLimit.parse`).
- ``max_concurrent`` is at most that many attempts of the activity running at once.
- A task queue is a name; an activity names one (``@fg.activity(task_queue="gpu")``), an
  engine serves some (``Engine(task_queues=[...])``). An activity that names none is on
  `DEFAULT_TASK_QUEUE`, which an engine serves unless told otherwise.
- Every value is checked where it is given, with an error naming the argument, before
  anything is recorded: a count or a concurrency below 1, a window that is not a positive
  finite duration (at most `flowgen._vocabulary.durations.MAX_SECONDS`), a queue name that
  is not a non-empty string a store can hold.
- Nothing here reads a clock: enforcing is the runtime's (`flowgen._runtime.limits`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

import attrs

from flowgen._vocabulary.durations import check_at_most_max, finite
from flowgen._vocabulary.text import surrogate_at, unstorable_why

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "RateLimit",
    "check_max_concurrent",
    "check_task_queue",
    "check_task_queues",
    "rate_limit_of",
]

DEFAULT_TASK_QUEUE: Final = "default"
"""The task queue of an activity that names none, and what an engine serves by default."""

# The units of the short form "<count>/<number?><unit>", in seconds.
_UNITS: Final = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_SHORT_FORM: Final = re.compile(
    r"\s*(?P<count>\d+)\s*/\s*(?P<number>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*"
)


def _check_count(_inst: object, _attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"RateLimit count must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"RateLimit count must be >= 1, got {value!r}")


def _to_seconds(value: float | timedelta) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"RateLimit per must be seconds (a number) or a timedelta, got {value!r}"
        )
    if not finite(seconds) or seconds <= 0:
        raise ValueError(
            f"RateLimit per must be a finite duration > 0 seconds, got {value!r}"
        )
    check_at_most_max(seconds, "RateLimit per", value)
    return float(seconds)


@attrs.frozen
class RateLimit:
    """At most *count* attempts of an activity start in any window of *per* seconds.

    Shared by every engine on one store (see ``@fg.activity(rate_limit=...)``).

    Attributes:
        count: How many starts a window allows (>= 1).
        per: The window, in seconds (a number or a timedelta; > 0).

    Example:
        >>> RateLimit(10, per=1.0) == RateLimit.parse("10/s")
        True
        >>> RateLimit.parse("100/min")
        RateLimit(count=100, per=60.0)

    Raises:
        TypeError: *count* is not an int, or *per* not a number or a timedelta.
        ValueError: *count* is below 1, or *per* is not a positive finite duration.
    """

    count: int = attrs.field(validator=_check_count)
    per: float = attrs.field(default=1.0, converter=_to_seconds)

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """A rate limit from its short form: ``"10/s"``, ``"100/min"``, ``"3/2.5s"``.

        Units: ``ms``, ``s`` (``sec``, ``second``), ``m`` (``min``, ``minute``), ``h``
        (``hour``), ``d`` (``day``); a plural ``s`` is allowed.

        Raises:
            ValueError: *text* is not of that form, or its numbers are out of range.
        """
        match = _SHORT_FORM.fullmatch(text.lower())
        unit = match and _unit_seconds(match.group("unit"))
        if match is None or unit is None:
            raise ValueError(
                f"a rate limit is '<count>/<unit>' such as '10/s', '100/min' or "
                f"'3/2.5s' (units: ms, s, m/min, h, d), got {text!r}"
            )
        number = float(match.group("number") or 1)
        return cls(int(match.group("count")), per=number * unit)

    def __str__(self) -> str:
        return f"{self.count}/{self.per:g}s"


def _unit_seconds(unit: str) -> float | None:
    if unit in _UNITS:
        return _UNITS[unit]
    return _UNITS.get(unit[:-1]) if unit.endswith("s") and len(unit) > 2 else None


def rate_limit_of(value: object) -> RateLimit | None:
    """``@fg.activity(rate_limit=...)``: a `RateLimit`, its short form, or ``None``.

    Raises:
        TypeError: *value* is none of these.
        ValueError: A short form that does not parse.
    """
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, str):
        return RateLimit.parse(value)
    raise TypeError(
        f"activity(rate_limit=...) must be a fg.RateLimit or a string such as '10/s', "
        f"got {value!r}"
    )


def check_max_concurrent(value: object) -> int | None:
    """``@fg.activity(max_concurrent=...)``: ``None`` or an int >= 1.

    Raises:
        TypeError: Not an int.
        ValueError: Below 1 (``0`` would never run the activity: leave it out instead).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"activity(max_concurrent=...) must be an int >= 1, got {value!r}"
        )
    if value < 1:
        raise ValueError(
            f"activity(max_concurrent=...) must be >= 1 (0 would never run it), "
            f"got {value!r}"
        )
    return value


def check_task_queue(value: object, what: str = "activity(task_queue=...)") -> str:
    """A task queue's name: a non-empty string a store can hold.

    Raises:
        TypeError: Not a non-empty string, or holding a lone surrogate.
    """
    if not isinstance(value, str) or not value or value.isspace():
        raise TypeError(f"{what} must be a non-empty string, got {value!r}")
    if (index := surrogate_at(value)) is not None:
        raise TypeError(f"{what}: {unstorable_why(value, index)}")
    return value


def check_task_queues(value: object) -> frozenset[str]:
    """``Engine(task_queues=...)``: a non-empty list (or other iterable) of queue names.

    Raises:
        TypeError: A bare string (``["gpu"]`` was meant), not an iterable, or a name
            that is not a non-empty string.
        ValueError: No queue at all (the engine would run no activity).
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"Engine(task_queues=...) takes a list of queue names, such as "
            f"task_queues=[{value!r}], got the string {value!r}"
        )
    try:
        names = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"Engine(task_queues=...) takes a list of queue names, got {value!r}"
        ) from None
    if not names:
        raise ValueError(
            "Engine(task_queues=...) must name at least one queue (an engine serving "
            f"none would run no activity); the default is [{DEFAULT_TASK_QUEUE!r}]"
        )
    return frozenset(
        check_task_queue(n, "Engine(task_queues=...) entry") for n in names
    )
