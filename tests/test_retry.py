"""Retry policies: validation and the backoff maths, pure functions of the attempt number."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

import flowgen as fg
from flowgen._vocabulary.retry import DEFAULT_RETRY, NO_RETRY

policies = st.builds(
    fg.RetryPolicy,
    max_attempts=st.integers(1, 20),
    initial_interval=st.floats(0, 1e4),
    backoff=st.floats(1, 10),
    max_interval=st.floats(0, 1e6),
)


def test_defaults_retry_three_times_doubling_from_one_second() -> None:
    policy = fg.RetryPolicy()
    assert policy == DEFAULT_RETRY
    assert [policy.delay_after(n, "E") for n in (1, 2, 3)] == [1.0, 2.0, None]
    assert NO_RETRY.delay_after(1, "E") is None


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    policy = fg.RetryPolicy(
        max_attempts=10, initial_interval=0.5, backoff=3, max_interval=10
    )
    assert [policy.delay_after(n, "E") for n in range(1, 6)] == [
        0.5,
        1.5,
        4.5,
        10.0,
        10.0,
    ]


def test_a_huge_attempt_number_is_capped_not_an_overflow() -> None:
    policy = fg.RetryPolicy(max_attempts=10**6, backoff=10, max_interval=30)
    assert policy.delay_after(5000, "E") == 30.0


def test_non_retryable_errors_stop_at_once() -> None:
    class CardDeclined(Exception):
        pass

    policy = fg.RetryPolicy(max_attempts=5, non_retryable=(CardDeclined, "KeyError"))
    assert policy.non_retryable == ("CardDeclined", "KeyError")
    assert policy.delay_after(1, "CardDeclined") is None
    assert policy.delay_after(1, "KeyError") is None
    assert policy.delay_after(1, "ValueError") == 1.0
    assert policy.delay_after(1, "ValueError", non_retryable=True) is None


@pytest.mark.parametrize(
    ("given_", "stored"),
    [
        (ValueError, ("ValueError",)),
        ("Timeout", ("Timeout",)),
        ([KeyError, "B", "A", "B"], ("A", "B", "KeyError")),
        ({TypeError}, ("TypeError",)),
        (frozenset(), ()),
    ],
)
def test_non_retryable_is_stored_as_sorted_unique_class_names(
    given_: object, stored: tuple[str, ...]
) -> None:
    assert fg.RetryPolicy(non_retryable=given_).non_retryable == stored  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [3, [ValueError, int], [None]])
def test_non_retryable_refuses_what_is_not_an_exception_class_or_name(
    bad: object,
) -> None:
    with pytest.raises(TypeError, match="non_retryable must hold exception classes"):
        fg.RetryPolicy(non_retryable=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_attempts", 0, "max_attempts must be >= 1, got 0"),
        ("initial_interval", -1, "initial_interval must be a finite number >= 0"),
        ("initial_interval", math.nan, "initial_interval must be a finite number >= 0"),
        ("max_interval", math.inf, "max_interval must be a finite number >= 0"),
        ("backoff", 0.5, "backoff must be a finite number >= 1"),
        ("backoff", math.inf, "backoff must be a finite number >= 1"),
    ],
)
def test_invalid_settings_are_refused_naming_the_setting(
    field: str, value: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fg.RetryPolicy(**{field: value})


@given(policies, st.integers(1, 40))
def test_a_delay_is_given_while_attempts_remain_and_never_exceeds_the_cap(
    policy: fg.RetryPolicy, attempt: int
) -> None:
    delay = policy.delay_after(attempt, "E")
    if attempt >= policy.max_attempts:
        assert delay is None
    else:
        assert delay is not None
        assert 0 <= delay <= policy.max_interval


@given(policies, st.integers(1, 39))
def test_delays_never_shrink_from_one_attempt_to_the_next(
    policy: fg.RetryPolicy, attempt: int
) -> None:
    policy = fg.RetryPolicy(
        max_attempts=100,
        initial_interval=policy.initial_interval,
        backoff=policy.backoff,
        max_interval=policy.max_interval,
    )
    now, later = policy.delay_after(attempt, "E"), policy.delay_after(attempt + 1, "E")
    assert now is not None
    assert later is not None
    assert now <= later


def test_a_duration_too_large_for_a_float_is_refused_as_too_long() -> None:
    with pytest.raises(ValueError):
        fg.RetryPolicy(initial_interval=10**400)
    with pytest.raises(ValueError):
        fg.RetryPolicy(max_interval=-(10**400))
