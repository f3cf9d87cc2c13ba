"""Activity attempts: running one, and turning how it went into its outcome event.

Rules:

- An attempt starts only after the batch that scheduled it (or failed the previous one) is
  committed. It runs on an activity thread in the background, or inline on the caller's
  thread when the engine is driven by hand (`flowgen._runtime.jobs`).
- Its outcome reaches the decision loop as an event in the inbox (`Feed`), never directly:
  the loop drops it if the call was cancelled or resolved meanwhile, or if it is a
  timed-out attempt finishing late.
- Which definition runs: the function the workflow called, unless it was called by name or
  is a method named on its class; then what is registered under the name, bound to its
  object. Its ``@fg.activity`` options (timeout, retry policy) win over the command's; the
  engine's policy applies to an activity that declares none.
- An error outside the activity's own code (no such activity, arguments that do not
  decode, a result that cannot be stored) would only repeat itself: it is not retried.
- An attempt that runs past its timeout fails as an `ActivityTimeout` when its timer comes
  due (`Attempts.timed_out`), retried like any other failure.
- Attempts keep no state of their own between calls: every field is set at construction
  and read-only, so any thread may call any method.
- When the engine traces, each attempt has a span (`flowgen._runtime.tracing`), a child of
  its run's span, which `start` looks up when the attempt is submitted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import attrs

from flowgen._core.dsl import parameter_types
from flowgen._core.interpreter import _positional_names, error_info
from flowgen._runtime.clock import Clock
from flowgen._runtime.invoke import ActivityInfo, ActivityTimeout, run_attempt
from flowgen._runtime.items import Due, Feed, Item, Key
from flowgen._runtime.jobs import Jobs
from flowgen._runtime.registry import Registry, _needs_instance
from flowgen._runtime.timers import TimerHeap
from flowgen._runtime.tracing import RunTrace, Telemetry
from flowgen._stores.codec import decode, encode
from flowgen._vocabulary.commands import ActivityOptions, CallActivity
from flowgen._vocabulary.errors import UnknownActivity
from flowgen._vocabulary.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
)
from flowgen._vocabulary.retry import RetryPolicy

__all__ = ["Attempts"]


class Attempts:
    """Starts activity attempts and reports their outcomes to the decision loop.

    Args:
        registry: Where activities called by name are found.
        retry: The engine's retry policy, for activities that declare none.
        clock: Where the time comes from.
        jobs: Where attempts run.
        timers: Where attempt timeouts are armed.
        deliver: Puts an item into the decision loop's inbox.
        telemetry: Spans and metrics of attempts, when the engine traces.
        trace_of: What tracing keeps about a run, by key (read when an attempt starts).
    """

    def __init__(
        self,
        registry: Registry,
        retry: RetryPolicy,
        clock: Clock,
        jobs: Jobs,
        timers: TimerHeap,
        deliver: Callable[[Item], None],
        *,
        telemetry: Telemetry | None = None,
        trace_of: Callable[[Key], RunTrace | None] = lambda key: None,
    ) -> None:
        self._registry = registry
        self._telemetry = telemetry
        self._trace_of = trace_of
        self._retry = retry
        self._clock = clock
        self._jobs = jobs
        self._timers = timers
        self._deliver = deliver

    def start(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
    ) -> None:
        """Run attempt number *attempt* of a scheduled call (after its batch committed)."""
        trace = self._trace_of(key) if self._telemetry is not None else None
        job = partial(self._run, key, scheduled, command, attempt, trace)
        if self._jobs.submit(job):
            timeout = self.options(command).timeout
            if timeout is not None:
                self._timers.arm(
                    self._clock.now() + timedelta(seconds=timeout),
                    Due("activity_timeout", key, scheduled.seq, attempt),
                )

    def options(self, command: CallActivity[Any]) -> ActivityOptions:
        """The options of the activity a command calls."""
        # What the activity's @fg.activity declared, also when the workflow called it by
        # name (then the command itself carries only the defaults).
        if command.fn is not None and not _needs_instance(command.fn):
            return command.options
        try:
            definition, _ = self._registry.activity(command.name)
        except UnknownActivity:
            return command.options
        return definition.options

    def timed_out(self, command: CallActivity[Any], seq: int, attempt: int) -> Event:
        """The outcome of an attempt whose timeout came due before it reported."""
        options = self.options(command)
        error = error_info(
            ActivityTimeout(
                f"activity {command.name!r} attempt {attempt} ran past its {options.timeout} s timeout"
            ),
            attempts=attempt,
        )
        now = self._clock.now()
        policy = options.retry or self._retry
        delay = policy.delay_after(attempt, error.type)
        if delay is None:
            return ActivityFailed(at=now, seq=seq, error=error, attempt=attempt)
        return ActivityAttemptFailed(
            at=now,
            seq=seq,
            error=error,
            attempt=attempt,
            retry_at=now + timedelta(seconds=delay),
        )

    def _run(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
        trace: RunTrace | None,
    ) -> None:
        started = self._clock.now()
        span = None
        if self._telemetry is not None:
            span = self._telemetry.attempt(
                trace, key, scheduled.seq, command.name, attempt, started
            )
        try:
            event = self._attempt(key, scheduled, command, attempt, started)
        except BaseException:
            if span is not None:
                span.ended(None)
            raise
        if span is not None:
            span.ended(event)
        self._deliver(Feed(key[0], key[1], event))

    def _attempt(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
        started: datetime,
    ) -> Event:
        """Run the attempt on this thread; its outcome event."""
        workflow_id, run_id = key
        options = self.options(command)
        policy = options.retry or self._retry
        # An error outside the activity's own code (no such activity, arguments that do not
        # decode, a result that cannot be stored) would only repeat itself: no retries.
        outside = True
        try:
            fn: Callable[..., object]
            if command.fn is not None and not _needs_instance(command.fn):
                fn = command.fn
            else:
                # By name, or a method named on its class (`fg.call(Bank.charge, ...)`):
                # run what was registered under the name, bound to its object.
                definition, fn = self._registry.activity(command.name)
                policy = definition.options.retry or policy
            args, kwargs = _decoded_arguments(fn, scheduled)
            info = ActivityInfo(
                workflow_id, run_id, scheduled.seq, command.name, attempt, scheduled.at
            )
            outside = False
            value = run_attempt(
                fn,
                args,
                kwargs,
                info,
                options.timeout if self._jobs.background else None,
            )
            outside = True
            payload = encode(value, f"result of activity {command.name!r}")
            event: Event = ActivityCompleted(
                at=self._clock.now(),
                seq=scheduled.seq,
                value=payload,
                attempt=attempt,
                started_at=started,
            )
        except Exception as exc:  # noqa: BLE001  # an activity's failure is data
            event = self._failed(exc, scheduled.seq, attempt, started, policy, outside)
        return event

    def _failed(
        self,
        exc: Exception,
        seq: int,
        attempt: int,
        started: datetime,
        policy: RetryPolicy,
        outside: bool,
    ) -> Event:
        info = error_info(exc, attempts=attempt)
        if outside:
            info = attrs.evolve(info, non_retryable=True)
        now = self._clock.now()
        delay = policy.delay_after(attempt, info.type, non_retryable=info.non_retryable)
        if delay is None:
            return ActivityFailed(
                at=now, seq=seq, error=info, attempt=attempt, started_at=started
            )
        return ActivityAttemptFailed(
            at=now,
            seq=seq,
            error=info,
            attempt=attempt,
            retry_at=now + timedelta(seconds=delay),
            started_at=started,
        )


def _decoded_arguments(
    fn: Callable[..., object], scheduled: ActivityScheduled
) -> tuple[list[object], dict[str, object]]:
    """The scheduled call's arguments, decoded to the types *fn* annotates."""
    hints = parameter_types(fn)
    names, star = _positional_names(getattr(fn, "__func__", fn))
    if getattr(fn, "__self__", None) is not None and names:
        names = names[1:]
    args = [
        decode(a, hints.get(names[i] if i < len(names) else star or "", object))
        for i, a in enumerate(scheduled.args)
    ]
    kwargs = {k: decode(v, hints.get(k, object)) for k, v in scheduled.kwargs.items()}
    return args, kwargs
