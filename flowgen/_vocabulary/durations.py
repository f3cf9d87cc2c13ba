"""Durations: the longest one flowgen accepts, and the one check of it.

Rules:

- A duration a workflow or a decorator gives (``fg.sleep``, ``fg.wait_signal(timeout=...)``,
  ``@fg.activity(timeout=...)``, a `RetryPolicy` interval) is at most `MAX_SECONDS`: 100
  years of 365.25 days. Anything longer is refused where it is given, with a `ValueError`
  naming it, before anything is recorded: a due time that far out is a bug, and beyond
  ~290 years it no longer fits the waits of the platform's threads (the timer thread would
  die on it), nor much later a `datetime`.
- An int is a finite number however large (`finite`): one too large for a float is refused
  as too long, where ``math.isfinite`` or ``float()`` would raise `OverflowError`.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["MAX_SECONDS", "check_at_most_max", "finite"]

MAX_SECONDS: Final = 3_155_760_000.0
"""The longest duration accepted, in seconds: 100 years of 365.25 days."""


def check_at_most_max(seconds: float, what: str, given: object) -> None:
    """Raise `ValueError` naming *what* if *seconds* is longer than `MAX_SECONDS`."""
    if seconds > MAX_SECONDS:
        raise ValueError(
            f"{what} must be at most {MAX_SECONDS:.0f} s (100 years), got {given!r}"
        )


def finite(seconds: float) -> bool:
    """`math.isfinite`, true for every int (however large: `check_at_most_max` bounds it)."""
    return isinstance(seconds, int) or math.isfinite(seconds)
