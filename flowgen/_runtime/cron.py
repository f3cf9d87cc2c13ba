"""Cadences: when a schedule fires. A 5-field cron expression, or a fixed interval.

Why our own parser: flowgen's runtime dependencies are attrs, cattrs and duckdb, and the
cron libraries are either unmaintained or large for what a schedule needs (croniter changed
hands in 2025). Standard 5-field cron is small and fully specified, so it lives here, with
its tests (``tests/test_cron.py``).

Rules
=====

* **Syntax** (Vixie cron, as ``man 5 crontab``): ``minute hour day-of-month month
  day-of-week``; each field is ``*``, a number, a range ``a-b``, a step ``*/n``, ``a-b/n``
  or ``a/n`` (from *a* to the field's end), or a comma list of these. Months ``jan``-``dec``
  and weekdays ``sun``-``sat`` may be named (any case); weekday 0 and 7 are Sunday. Macros:
  ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``),
  ``@hourly``. Anything else is a `ValueError` naming the field and what is wrong, and so is
  an expression that can never fire (``0 0 30 2 *``).
* **Day matching**: when both day-of-month and day-of-week are restricted (neither starts
  with ``*``), a day matches if *either* does (``0 9 1 * mon``: the 1st, and every Monday),
  as in every cron since Vixie's; otherwise both must.
* **Time zones**: fields are read in the cadence's time zone (UTC unless given, through
  `zoneinfo`). A wall time that does not exist (the hour skipped when clocks go forward) is
  skipped; one that happens twice (clocks go back) fires once, at its first occurrence.
* **Intervals** (`Every`): firings at whole multiples of the interval since the Unix epoch,
  in UTC (``every=timedelta(hours=1)`` fires on the hour), so every engine and every
  restart agrees on them without remembering when the schedule was made. Whole seconds,
  at least one.
* Times in and out are tz-aware UTC `datetime`; every result is strictly after its argument.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Final, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from flowgen._vocabulary.durations import check_at_most_max

__all__ = ["Cadence", "Cron", "Every", "time_zone"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS: Final = {
    name: i + 1
    for i, name in enumerate(
        [
            "jan",
            "feb",
            "mar",
            "apr",
            "may",
            "jun",
            "jul",
            "aug",
            "sep",
            "oct",
            "nov",
            "dec",
        ]
    )
}
_WEEKDAYS: Final = {
    name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}

# (name, lowest, highest, names): the five fields in order. Weekday 7 is read as 0.
_FIELDS: Final[tuple[tuple[str, int, int, dict[str, int]], ...]] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)

_SEARCH_DAYS: Final = 366 * 9
"""How far ahead a firing is looked for: past a leap day that skips a century year (2100)."""

_ITEM: Final = re.compile(r"^(?:(\*)|(\w+)(?:-(\w+))?)(?:/(\w+))?$")


class Cadence(Protocol):
    """When a schedule fires: `Cron` or `Every`."""

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after *moment* (tz-aware), in UTC."""

    def describe(self) -> str:
        """How a person reads it (``cron 0 3 * * * (Europe/Paris)``, ``every 1h``)."""

    def count(self, start: datetime, end: datetime) -> int:
        """How many firings fall in ``[start, end)`` (without walking them one by one)."""


def time_zone(name: str) -> ZoneInfo:
    """The `ZoneInfo` called *name*.

    Raises:
        ValueError: No time zone has that name.
    """
    if not name:
        raise ValueError(f"timezone must be an IANA zone name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone {name!r} is no IANA time zone (e.g. 'UTC', 'Europe/Paris')"
        ) from None


def _number(text: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text.lower())
    if value is None:
        if not text.isdigit():
            raise ValueError(f"cron {field} field: {text!r} is not a number")
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"cron {field} field: {value} is outside {low}-{high}")
    return value


def _parse_field(
    text: str, field: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"cron {field} field: cannot read {item!r}")
        star, first, last, step_text = match.groups()
        step = 1
        if step_text is not None:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(
                    f"cron {field} field: step {step_text!r} must be a number >= 1"
                )
            step = int(step_text)
        if star:
            start, end = low, high
        else:
            start = _number(first, field, low, high, names)
            # `a/n` runs from a to the field's end; a bare `a` is just a.
            end = high if last is None and step_text is not None else start
            if last is not None:
                end = _number(last, field, low, high, names)
            if end < start:
                raise ValueError(f"cron {field} field: range {item!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@attrs.frozen
class Cron:
    """A 5-field cron expression read in a time zone (see the module's rules).

    Build it with `Cron.parse`.
    """

    expression: str
    zone: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    either_day: bool  # both day fields restricted: a day matches if either does

    @classmethod
    def parse(cls, expression: str, zone: str = "UTC") -> Cron:
        """Read *expression* in time zone *zone*.

        Raises:
            ValueError: The expression is malformed, a value is out of range, it can
                never fire, or the zone is unknown (the message says which).
        """
        if not isinstance(expression, str):
            raise TypeError(f"cron must be a str, got {type(expression).__name__}")
        time_zone(zone)
        text = _MACROS.get(expression.strip().lower(), expression)
        if text.strip().startswith("@"):
            raise ValueError(
                f"cron {expression!r}: unknown macro; use one of {', '.join(_MACROS)}"
            )
        parts = text.split()
        if len(parts) != len(_FIELDS):
            raise ValueError(
                f"cron {expression!r} has {len(parts)} fields; it needs 5: "
                "minute hour day-of-month month day-of-week (e.g. '0 3 * * *')"
            )
        sets = [
            _parse_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)
        ]
        weekdays = frozenset(d % 7 for d in sets[4])
        cron = cls(
            expression=expression,
            zone=zone,
            minutes=tuple(sorted(sets[0])),
            hours=tuple(sorted(sets[1])),
            days=sets[2],
            months=sets[3],
            weekdays=weekdays,
            either_day=not parts[2].startswith("*") and not parts[4].startswith("*"),
        )
        if cron._first_on_or_after(_EPOCH) is None:
            raise ValueError(f"cron {expression!r} never fires (no such date)")
        return cron

    def describe(self) -> str:
        """``cron 0 3 * * *``, with the zone when it is not UTC."""
        zone = "" if self.zone == "UTC" else f" ({self.zone})"
        return f"cron {self.expression}{zone}"

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        return (in_month or in_week) if self.either_day else (in_month and in_week)

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after *moment*, in UTC."""
        found = self._first_on_or_after(moment + timedelta(microseconds=1))
        if found is None:  # parse() refused cadences that never fire; a guard
            raise ValueError(f"cron {self.expression!r} has no firing after {moment}")
        return found

    def count(self, start: datetime, end: datetime) -> int:
        """How many firings fall in ``[start, end)``: day by day, not firing by firing.

        A day whose UTC offset is the same at both ends (no clock change) that lies wholly
        inside the range has every one of its wall times; the others are checked time by
        time, with the rules of `next_after`.
        """
        if end <= start:
            return 0
        zone = ZoneInfo(self.zone)
        first_day = start.astimezone(zone).date()
        last_day = end.astimezone(zone).date()
        per_day = len(self.hours) * len(self.minutes)
        total = 0
        day = first_day
        while day <= last_day:
            if not self._day_matches(day):
                pass
            elif first_day < day < last_day and _steady(day, zone):
                total += per_day
            else:
                total += sum(1 for t in self._firings_on(day, zone) if start <= t < end)
            day += timedelta(days=1)
        return total

    def _firings_on(self, day: date, zone: ZoneInfo) -> Iterator[datetime]:
        """The firings on a matching *day*, in UTC (a wall time that does not exist skipped)."""
        for hour in self.hours:
            for minute in self.minutes:
                wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                utc = wall.astimezone(UTC)
                if utc.astimezone(zone).replace(tzinfo=None) == wall.replace(
                    tzinfo=None
                ):
                    yield utc

    def _first_on_or_after(self, moment: datetime) -> datetime | None:
        zone = ZoneInfo(self.zone)
        local = moment.astimezone(zone)
        start = local.date()
        for offset in range(_SEARCH_DAYS):
            day = start + timedelta(days=offset)
            if not self._day_matches(day):
                continue
            for hour in self.hours:
                if offset == 0 and hour < local.hour:
                    continue
                for minute in self.minutes:
                    wall = datetime(
                        day.year, day.month, day.day, hour, minute, tzinfo=zone
                    )
                    utc = wall.astimezone(UTC)
                    if utc.astimezone(zone).replace(tzinfo=None) != wall.replace(
                        tzinfo=None
                    ):
                        continue  # a wall time the clocks skipped
                    if utc >= moment:
                        return utc
        return None


def _steady(day: date, zone: ZoneInfo) -> bool:
    """Whether *day* has no clock change in *zone* (its offset at both midnights agrees)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    following = midnight + timedelta(days=1)
    return midnight.utcoffset() == following.replace(tzinfo=zone).utcoffset()


@attrs.frozen
class Every:
    """A fixed interval: firings at whole multiples of *seconds* since the Unix epoch (UTC)."""

    seconds: int

    @classmethod
    def parse(cls, every: timedelta | float) -> Every:
        """An interval from a `timedelta` or a number of seconds.

        Raises:
            ValueError: It is not a whole number of seconds, or below one second.
            TypeError: It is neither a number nor a `timedelta`.
        """
        if isinstance(every, bool) or not isinstance(every, (timedelta, int, float)):
            raise TypeError(
                f"every must be a timedelta or a number of seconds, got {every!r}"
            )
        seconds = every.total_seconds() if isinstance(every, timedelta) else every
        check_at_most_max(seconds, "every", every)  # NaN, too: it is no whole number
        if not seconds >= 1 or seconds != int(seconds):
            raise ValueError(
                f"every must be a whole number of seconds, at least 1, got {every!r}"
            )
        return cls(int(seconds))

    def describe(self) -> str:
        """``every 1h30m``."""
        rest = self.seconds
        parts = []
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if rest >= size:
                parts.append(f"{rest // size}{unit}")
                rest %= size
        return f"every {''.join(parts)}"

    def count(self, start: datetime, end: datetime) -> int:
        """How many multiples of the interval fall in ``[start, end)``."""
        if end <= start:
            return 0
        step = timedelta(seconds=self.seconds)
        # ceil((t - epoch) / step): the index of the first multiple at or after t.
        return -((_EPOCH - end) // step) + ((_EPOCH - start) // step)

    def next_after(self, moment: datetime) -> datetime:
        """The first multiple of the interval strictly after *moment*, in UTC."""
        elapsed = moment - _EPOCH
        step = timedelta(seconds=self.seconds)
        return _EPOCH + (elapsed // step + 1) * step
