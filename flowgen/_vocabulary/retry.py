"""Retry policies and their backoff maths: pure functions of the attempt number.

The engine asks `RetryPolicy.delay_after` how long to wait after a failed attempt; ``None``
means "give up". No clock and no randomness live here: jitter, if wanted, is the engine's
business, and the delay it chose is recorded in the ``activity_attempt_failed`` event.
"""

from __future__ import annotations

import math

import attrs

from flowgen._vocabulary.durations import check_at_most_max, finite

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = ["RetryPolicy"]


def _to_float(value: float) -> float:
    """``float(value)``; an int too large for a float is infinite (refused as such)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _finite_non_negative(
    _inst: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not finite(value) or value < 0:
        raise ValueError(
            f"{attribute.name} must be a finite number >= 0, got {value!r}"
        )
    check_at_most_max(value, attribute.name, value)


def _at_least_one(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


def _backoff_at_least_one(
    _inst: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not math.isfinite(value) or value < 1:
        raise ValueError(
            f"{attribute.name} must be a finite number >= 1, got {value!r}"
        )


def _type_names(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, (tuple, list, set, frozenset)) else (value,)
    names = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, type) and issubclass(item, BaseException):
            names.append(item.__name__)
        else:
            raise TypeError(
                f"non_retryable must hold exception classes or their names, got {item!r}"
            )
    return tuple(sorted(set(names)))


@attrs.frozen
class RetryPolicy:
    """How an activity is retried: exponential backoff, capped.

    The delay after attempt *n* (1-based) is ``initial_interval * backoff ** (n - 1)``, capped
    at ``max_interval``. After ``max_attempts`` attempts the activity fails for good and
    `ActivityError` is thrown into the workflow.

    Args:
        max_attempts: Attempts in total, the first one included (1 means no retries).
        initial_interval: Seconds to wait after the first failed attempt.
        backoff: Factor by which the wait grows after each failure (>= 1).
        max_interval: The longest wait between two attempts, in seconds.
        non_retryable: Exception classes (or their class names) that fail the activity at
            once. Raising `NonRetryableError` does the same.
    """

    max_attempts: int = attrs.field(default=3, validator=_at_least_one)
    initial_interval: float = attrs.field(
        default=1.0, converter=_to_float, validator=_finite_non_negative
    )
    backoff: float = attrs.field(
        default=2.0, converter=_to_float, validator=_backoff_at_least_one
    )
    max_interval: float = attrs.field(
        default=60.0, converter=_to_float, validator=_finite_non_negative
    )
    non_retryable: tuple[str, ...] = attrs.field(default=(), converter=_type_names)

    def delay_after(
        self, attempt: int, error_type: str, *, non_retryable: bool = False
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up.

        Args:
            attempt: The attempt that just failed, counting from 1.
            error_type: The failed attempt's exception class name.
            non_retryable: True if the error itself asked not to be retried.

        Returns:
            The delay in seconds, or ``None`` when no attempt is left or retrying is futile.
        """
        if (
            non_retryable
            or error_type in self.non_retryable
            or attempt >= self.max_attempts
        ):
            return None
        try:
            delay = self.initial_interval * self.backoff ** (attempt - 1)
        except OverflowError:  # a huge attempt count: the cap applies long before
            return self.max_interval
        return min(delay, self.max_interval)


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)

attrs.resolve_types(RetryPolicy)
