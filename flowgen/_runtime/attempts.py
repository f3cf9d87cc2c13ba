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
- Which event records an attempt is decided by one pure rule,
  `flowgen._core.outcome.attempt_outcome`, which the `Stepper` calls too (through
  `flowgen._runtime.invoke.attempt_event`): an error outside the activity's own code (no
  such activity, arguments that do not decode, a result that cannot be stored) would only
  repeat itself, so it is not retried.
- An attempt that runs past its timeout fails as an `ActivityTimeout` when its timer comes
  due (`Attempts.timed_out`), retried like any other failure.
- Attempts keep no state of their own between calls: every field is set at construction
  and read-only, so any thread may call any method.
- When the engine traces, each attempt has a span (`flowgen._runtime.tracing`), a child of
  its run's span, which `start` looks up when the attempt is submitted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from flowgen._core.outcome import attempt_outcome
from flowgen._runtime.clock import Clock
from flowgen._runtime.invoke import (
    ActivityInfo,
    ActivityTimeout,
    attempt_event,
    run_attempt,
)
from flowgen._runtime.items import Due, Feed, Item, Key
from flowgen._runtime.jobs import Jobs
from flowgen._runtime.registry import Registry
from flowgen._runtime.timers import TimerHeap
from flowgen._runtime.tracing import RunTrace, Telemetry
from flowgen._vocabulary.commands import ActivityOptions, CallActivity
from flowgen._vocabulary.errors import UnknownActivity
from flowgen._vocabulary.events import (
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
        self.share: Callable[[Key, ActivityScheduled, int], bool] | None = None
        """Set by a fleet that shares attempts out (`flowgen._runtime.fleet`): posts an
        attempt for any engine to run; False if it could not (it then runs here)."""

    def start(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
    ) -> None:
        """Run attempt number *attempt* of a scheduled call (after its batch committed)."""
        if self.share is not None and self.share(key, scheduled, attempt):
            background = self._jobs.background  # its timeout is this engine's to keep
        else:
            trace = self._trace_of(key) if self._telemetry is not None else None
            job = partial(self._run, key, scheduled, command, attempt, trace)
            background = self._jobs.submit(job)
        if background:
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
        try:
            definition, _ = self._registry.resolve(command)
        except UnknownActivity:
            return command.options
        return definition.options

    def timed_out(self, command: CallActivity[Any], seq: int, attempt: int) -> Event:
        """The outcome of an attempt whose timeout came due before it reported."""
        options = self.options(command)
        timed_out = ActivityTimeout(
            f"activity {command.name!r} attempt {attempt} ran past its {options.timeout} s timeout"
        )
        return attempt_outcome(
            seq=seq,
            attempt=attempt,
            policy=options.retry or self._retry,
            started_at=None,
            now=self._clock.now(),
            error=timed_out,
        )

    def _run(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
        trace: RunTrace | None,
    ) -> None:
        event = self.perform(key, scheduled, command, attempt, trace)
        self._deliver(Feed(key[0], key[1], event))

    def perform(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
        trace: RunTrace | None = None,
    ) -> Event:
        """Perform attempt number *attempt* on this thread: the event that records it.

        *command* may be rebuilt from *scheduled* (``CallActivity(scheduled.name)``, by
        an engine of a fleet running another engine's attempt): the activity is then
        found by its registered name.
        """
        workflow_id, run_id = key
        info = ActivityInfo(
            workflow_id, run_id, scheduled.seq, command.name, attempt, scheduled.at
        )
        span = None
        if self._telemetry is not None:
            span = self._telemetry.attempt(
                trace, key, scheduled.seq, command.name, attempt, self._clock.now()
            )
        # The outcome rule is `flowgen._core.outcome.attempt_outcome`, shared with the
        # Stepper; `attempt_event` performs the attempt and asks it.
        try:
            event = attempt_event(
                command,
                scheduled,
                info,
                registry=self._registry,
                default=self._retry,
                now=self._clock.now,
                timeout=self.options(command).timeout
                if self._jobs.background
                else None,
                call=partial(run_attempt, loop=self._jobs.activity_loop),
            )
        except BaseException:
            if span is not None:
                span.ended(None)
            raise
        if span is not None:
            span.ended(event)
        return event
