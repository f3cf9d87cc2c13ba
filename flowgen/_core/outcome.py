"""An activity attempt's outcome event: the one rule the engine and the Stepper share.

The engine (on a worker thread) and the Stepper (in the caller's thread) perform an attempt
each in their own way, then ask `attempt_outcome` which event records it. Nothing here reads
a clock or runs code: the times, the result and the exception are parameters.

Rules
=====

* **Which policy.** The options of the definition that runs decide: the one ``fg.call``
  copied into the command from ``@fg.activity``, or the registered one when the workflow
  called the activity by name or named a method on its class (the command then carries
  only defaults). When that definition declares no `RetryPolicy`, the runner's default
  applies (``Engine(retry=...)``, ``Stepper.create(retry=...)``). See `attempt_policy`.
* **A result** is ``activity_completed``, carrying the encoded value.
* **A failure of the activity's own code** is retried as the policy says: it fails the
  activity at once (``activity_failed``) when the exception is a `NonRetryableError`, its
  class name is in the policy's ``non_retryable``, or no attempt is left; otherwise it is
  ``activity_attempt_failed`` with ``retry_at = now + delay``. Any exception type counts,
  `TypeError` included: the activity's code may fail differently next time.
* **No retry past the schedule-to-close deadline** (``@fg.activity(schedule_to_close=...)``,
  counted from the call's ``activity_scheduled``): a failure whose retry would start at or
  after it fails the activity for good (``activity_failed``), as Temporal does.
* **A failure outside the activity's code** (no such activity, recorded arguments that do
  not decode, a result that cannot be stored) would only repeat itself: ``activity_failed``
  at once, recorded as non-retryable.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from flowgen._core.dsl import ActivityDefinition
from flowgen._core.interpreter import error_info
from flowgen._vocabulary.commands import CallActivity
from flowgen._vocabulary.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    JsonValue,
)
from flowgen._vocabulary.retry import RetryPolicy

__all__ = ["AttemptOutcome", "attempt_outcome", "attempt_policy"]

AttemptOutcome = ActivityCompleted | ActivityAttemptFailed | ActivityFailed


def attempt_policy(
    command: CallActivity[object],
    definition: ActivityDefinition | None,
    default: RetryPolicy,
) -> RetryPolicy:
    """The retry policy that governs an attempt of *command*.

    Args:
        command: The workflow's call.
        definition: The definition of the function that runs (from the registry, or the
            one ``fg.call`` read off the function); ``None`` when none was found (the
            attempt then fails outside the activity's code).
        default: The runner's policy for activities that declare none.

    Returns:
        The definition's policy, else the command's, else *default*.
    """
    options = definition.options if definition is not None else command.options
    return options.retry or default


def attempt_outcome(
    *,
    seq: int,
    attempt: int,
    policy: RetryPolicy,
    started_at: datetime | None,
    now: datetime,
    value: JsonValue = None,
    error: BaseException | None = None,
    in_activity: bool = True,
    deadline: datetime | None = None,
) -> AttemptOutcome:
    """The event that records one attempt of the activity call *seq*.

    Args:
        seq: The call's sequence number.
        attempt: This attempt's number, from 1.
        policy: The governing policy (see `attempt_policy`).
        started_at: When the attempt started (``None`` when not known, as for a timeout
            noticed by the engine's timer).
        now: When it ended.
        value: The encoded result, when the attempt returned.
        error: The exception, when it failed.
        in_activity: Whether *error* came from the activity's own code (``False``: no
            such activity, arguments that do not decode, a result that cannot be stored).
        deadline: The call's schedule-to-close deadline, if it has one: no retry starts
            at or after it.

    Returns:
        ``activity_completed``, ``activity_attempt_failed`` or ``activity_failed``.

    Raises:
        TypeError: Both a value and an error were given.
    """
    if error is None:
        return ActivityCompleted(
            at=now, seq=seq, value=value, attempt=attempt, started_at=started_at
        )
    if value is not None:
        raise TypeError("an attempt ends with a value or an error, not both")
    info = error_info(error, attempts=attempt)
    if not in_activity:
        info = attrs.evolve(info, non_retryable=True)
    delay = policy.delay_after(attempt, info.type, non_retryable=info.non_retryable)
    if (
        delay is not None
        and deadline is not None
        and now + timedelta(seconds=delay) >= deadline
    ):
        delay = None  # the retry would start past the schedule-to-close deadline
    if delay is None:
        return ActivityFailed(
            at=now, seq=seq, error=info, attempt=attempt, started_at=started_at
        )
    return ActivityAttemptFailed(
        at=now,
        seq=seq,
        error=info,
        attempt=attempt,
        retry_at=now + timedelta(seconds=delay),
        started_at=started_at,
    )
