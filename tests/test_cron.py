"""Cron expressions and intervals: what a schedule's cadence fires on (flowgen._runtime.cron)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings, strategies as st

from flowgen._runtime.cron import Cron, Every

T0 = datetime(2031, 3, 7, 9, 26, 53, tzinfo=UTC)  # a Friday


def firings(cron: Cron | Every, start: datetime, count: int) -> list[datetime]:
    found, moment = [], start
    for _ in range(count):
        moment = cron.next_after(moment)
        found.append(moment)
    return found


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_a_daily_expression_fires_at_its_time_each_day() -> None:
    assert firings(Cron.parse("0 3 * * *"), T0, 3) == [
        utc(2031, 3, 8, 3),
        utc(2031, 3, 9, 3),
        utc(2031, 3, 10, 3),
    ]


def test_next_after_is_strictly_after() -> None:
    cron = Cron.parse("0 3 * * *")
    assert cron.next_after(utc(2031, 3, 8, 3)) == utc(2031, 3, 9, 3)
    assert cron.next_after(utc(2031, 3, 8, 2, 59, 59)) == utc(2031, 3, 8, 3)


def test_steps_ranges_and_lists() -> None:
    assert firings(Cron.parse("*/20 * * * *"), T0, 3) == [
        utc(2031, 3, 7, 9, 40),
        utc(2031, 3, 7, 10, 0),
        utc(2031, 3, 7, 10, 20),
    ]
    assert firings(Cron.parse("5,35 9-10 * * *"), T0, 4) == [
        utc(2031, 3, 7, 9, 35),
        utc(2031, 3, 7, 10, 5),
        utc(2031, 3, 7, 10, 35),
        utc(2031, 3, 8, 9, 5),
    ]
    assert firings(Cron.parse("0 8-18/5 * * *"), T0, 3) == [
        utc(2031, 3, 7, 13),
        utc(2031, 3, 7, 18),
        utc(2031, 3, 8, 8),
    ]
    # `a/n`: from a to the end of the field.
    assert firings(Cron.parse("50/5 * * * *"), T0, 3) == [
        utc(2031, 3, 7, 9, 50),
        utc(2031, 3, 7, 9, 55),
        utc(2031, 3, 7, 10, 50),
    ]


def test_names_of_months_and_weekdays_in_any_case() -> None:
    weekdays = firings(Cron.parse("0 9 * * MON-wed"), T0, 4)
    assert [d.strftime("%a %d") for d in weekdays] == [
        "Mon 10",
        "Tue 11",
        "Wed 12",
        "Mon 17",
    ]
    assert Cron.parse("0 0 1 jun,Dec *").next_after(T0) == utc(2031, 6, 1)


def test_sunday_is_0_and_7() -> None:
    assert Cron.parse("0 0 * * 0").next_after(T0) == utc(2031, 3, 9)
    assert Cron.parse("0 0 * * 7").next_after(T0) == utc(2031, 3, 9)


def test_both_day_fields_restricted_match_either() -> None:
    # The 1st of the month, and every Monday (Vixie cron's rule).
    days = firings(Cron.parse("0 9 1 * mon"), utc(2031, 3, 25), 3)
    assert days == [utc(2031, 3, 31, 9), utc(2031, 4, 1, 9), utc(2031, 4, 7, 9)]
    # One of them `*`: both must match (`*` matches every day).
    assert Cron.parse("0 9 * * mon").next_after(utc(2031, 3, 25)) == utc(2031, 3, 31, 9)
    assert Cron.parse("0 9 1 * *").next_after(utc(2031, 3, 25)) == utc(2031, 4, 1, 9)


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@yearly", utc(2032, 1, 1)),
        ("@annually", utc(2032, 1, 1)),
        ("@monthly", utc(2031, 4, 1)),
        ("@weekly", utc(2031, 3, 9)),
        ("@daily", utc(2031, 3, 8)),
        ("@midnight", utc(2031, 3, 8)),
        ("@hourly", utc(2031, 3, 7, 10)),
    ],
)
def test_macros(macro: str, expected: datetime) -> None:
    assert Cron.parse(macro).next_after(T0) == expected


def test_leap_day_fires_in_leap_years_only() -> None:
    assert firings(Cron.parse("0 0 29 2 *"), T0, 2) == [
        utc(2032, 2, 29),
        utc(2036, 2, 29),
    ]


def test_a_time_zone_reads_the_fields_in_local_time() -> None:
    paris = Cron.parse("0 3 * * *", "Europe/Paris")
    assert paris.next_after(utc(2031, 1, 10)) == utc(2031, 1, 10, 2)  # CET, UTC+1
    assert paris.next_after(utc(2031, 7, 10)) == utc(2031, 7, 10, 1)  # CEST, UTC+2
    assert paris.describe() == "cron 0 3 * * * (Europe/Paris)"
    assert Cron.parse("0 3 * * *").describe() == "cron 0 3 * * *"


def test_a_wall_time_skipped_by_daylight_saving_is_skipped() -> None:
    # 2031-03-30: Paris jumps from 02:00 to 03:00; 02:30 does not exist that day.
    paris = Cron.parse("30 2 * * *", "Europe/Paris")
    assert firings(paris, utc(2031, 3, 29, 12), 2) == [
        utc(2031, 3, 31, 0, 30),
        utc(2031, 4, 1, 0, 30),
    ]


def test_a_wall_time_that_happens_twice_fires_once() -> None:
    # 2031-10-26: Paris goes back from 03:00 to 02:00; 02:30 happens twice.
    paris = Cron.parse("30 2 * * *", "Europe/Paris")
    assert firings(paris, utc(2031, 10, 25, 12), 2) == [
        utc(2031, 10, 26, 0, 30),  # the first 02:30 (CEST)
        utc(2031, 10, 27, 1, 30),  # the next day's (CET)
    ]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 3 * *", "has 4 fields; it needs 5"),
        ("0 3 * * * *", "has 6 fields"),
        ("60 * * * *", "minute field: 60 is outside 0-59"),
        ("0 24 * * *", "hour field: 24 is outside 0-23"),
        ("0 0 0 * *", "day of month field: 0 is outside 1-31"),
        ("0 0 * 13 *", "month field: 13 is outside 1-12"),
        ("0 0 * * 8", "day of week field: 8 is outside 0-7"),
        ("0 0 * foo *", "month field: 'foo' is not a number"),
        ("*/0 * * * *", "minute field: step '0' must be a number >= 1"),
        ("5-1 * * * *", "minute field: range '5-1' runs backwards"),
        ("1-2-3 * * * *", "minute field: cannot read '1-2-3'"),
        ("0 0 30 2 *", "never fires"),
        ("@fortnightly", "unknown macro"),
        ("", "has 0 fields"),
    ],
)
def test_bad_expressions_are_refused_naming_the_problem(
    expression: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Cron.parse(expression)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="'Mars/Olympus' is no IANA time zone"):
        Cron.parse("0 3 * * *", "Mars/Olympus")


def test_every_fires_on_multiples_since_the_epoch() -> None:
    hourly = Every.parse(timedelta(hours=1))
    assert firings(hourly, T0, 2) == [utc(2031, 3, 7, 10), utc(2031, 3, 7, 11)]
    assert hourly.next_after(utc(2031, 3, 7, 10)) == utc(2031, 3, 7, 11)
    assert Every.parse(90).next_after(utc(2031, 3, 7, 10)) == utc(2031, 3, 7, 10, 1, 30)
    assert Every.parse(timedelta(hours=1, minutes=30)).describe() == "every 1h30m"
    assert Every.parse(86400 + 5).describe() == "every 1d5s"


@pytest.mark.parametrize(
    ("every", "error"),
    [
        (0, ValueError),
        (0.5, ValueError),
        (1.5, ValueError),
        (-60, ValueError),
        (timedelta(milliseconds=1500), ValueError),
        ("60", TypeError),
        (True, TypeError),
    ],
)
def test_bad_intervals_are_refused(every: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="every must be"):
        Every.parse(every)  # type: ignore[arg-type]


# -- a property: the next firing is the first matching minute, found by brute force ----------


def _field(
    draw: st.DrawFn, low: int, high: int, end: int | None = None
) -> tuple[str, set[int], bool]:
    """A field's text, the values it means, and whether it is restricted (no leading *).

    Explicit values are drawn from *low*-*high*; ``*`` covers *low*-*end* (the field's end).
    """
    end = high if end is None else end
    kind = draw(st.sampled_from(["star", "step", "list", "range"]))
    if kind == "star":
        return "*", set(range(low, end + 1)), False
    if kind == "step":
        step = draw(st.integers(1, high - low + 1))
        return f"*/{step}", set(range(low, end + 1, step)), False
    if kind == "list":
        values = draw(st.sets(st.integers(low, high), min_size=1, max_size=4))
        return ",".join(map(str, sorted(values))), values, True
    first = draw(st.integers(low, high))
    last = draw(st.integers(first, high))
    step = draw(st.integers(1, 5))
    return f"{first}-{last}/{step}", set(range(first, last + 1, step)), True


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, Callable[[datetime], bool]]:
    minute, minutes, _ = _field(draw, 0, 59)
    hour, hours, _ = _field(draw, 0, 23)
    day, days, day_restricted = _field(
        draw, 1, 28, 31
    )  # days every month has: one is near
    weekday, weekdays, week_restricted = _field(draw, 0, 6)

    def matches(t: datetime) -> bool:
        in_month, in_week = t.day in days, t.isoweekday() % 7 in weekdays
        either = day_restricted and week_restricted
        day_ok = (in_month or in_week) if either else (in_month and in_week)
        return t.minute in minutes and t.hour in hours and day_ok

    return f"{minute} {hour} {day} * {weekday}", matches


@settings(max_examples=60, deadline=None)
@given(expressions(), st.integers(0, 366 * 24 * 60))
def test_next_after_is_the_first_matching_minute(
    expression: tuple[str, Callable[[datetime], bool]], offset: int
) -> None:
    text, matches = expression
    start = T0 + timedelta(minutes=offset, seconds=7)
    found = Cron.parse(text).next_after(start)
    moment = start.replace(second=0) + timedelta(minutes=1)
    while not matches(moment):  # within 31 days: a day of 1-28 or a weekday comes
        moment += timedelta(minutes=1)
    assert found == moment, text


def walked(cadence: Cron | Every, start: datetime, end: datetime) -> int:
    """The firings in ``[start, end)``, counted one by one with `next_after`."""
    count, moment = 0, cadence.next_after(start - timedelta(microseconds=1))
    while moment < end:
        count += 1
        moment = cadence.next_after(moment)
    return count


@pytest.mark.parametrize(
    ("expression", "zone"),
    [
        ("* * * * *", "UTC"),
        ("30 2 * * *", "Europe/Paris"),  # a wall time clocks skip once a year
        ("*/15 0-3 * * *", "America/Santiago"),  # clock changes at midnight
        ("0 9 1 * mon", "Europe/London"),
        ("5 1,2,3 * * *", "America/New_York"),  # 1:05 happens twice in November
        ("*/7 * * * *", "Australia/Lord_Howe"),  # a half-hour clock change
    ],
)
@settings(max_examples=25, deadline=None)
@given(
    offset=st.integers(min_value=0, max_value=400 * 86400),
    span=st.integers(min_value=0, max_value=20 * 86400),
)
def test_counting_firings_agrees_with_walking_them(
    expression: str, zone: str, offset: int, span: int
) -> None:
    cron = Cron.parse(expression, zone)
    start = T0 + timedelta(seconds=offset)
    end = start + timedelta(seconds=span)
    assert cron.count(start, end) == walked(cron, start, end)


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.integers(min_value=1, max_value=90_000),
    offset=st.integers(min_value=-(10**12), max_value=10**12),
    span=st.integers(min_value=0, max_value=10**11),
)
def test_counting_interval_firings_agrees_with_walking_them(
    seconds: int, offset: int, span: int
) -> None:
    every = Every(seconds)
    start = T0 + timedelta(microseconds=offset)
    end = start + timedelta(microseconds=span)
    if span // 1_000_000 // seconds > 10_000:  # too many to walk in a test
        end = start + timedelta(seconds=seconds * 10_000)
    assert every.count(start, end) == walked(every, start, end)


def test_a_year_of_minutely_firings_is_counted_without_walking_them() -> None:
    cron = Cron.parse("* * * * *", "Europe/Paris")
    # 2031 is not a leap year. The hour the clocks skip in March has no firings; the hour
    # they repeat in October fires once (the module's rules): 60 fewer than a plain year.
    assert cron.count(utc(2031, 1, 1), utc(2032, 1, 1)) == 365 * 24 * 60 - 60
