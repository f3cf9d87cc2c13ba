"""Activity attempts: running one, and turning how it went into its outcome event.

Rules:

- An attempt starts only after the batch that scheduled it (or failed the previous one) is
  committed. It runs on an activity thread in the background, or inline on the caller's
  thread when the engine is driven by hand (`flowgen._runtime.jobs`).
- Its outcome reaches the decision loop as an event (`Feed`), handed in from its thread
  once its job is done (`hand_in`: applied there at once when the loop is idle, else put in
  the inbox), never applied by the attempt itself: the loop drops it if the call was
  cancelled or resolved meanwhile, or if it is a timed-out attempt finishing late. Its
  permits are released after that.
- Which definition runs: the function the workflow called, unless it was called by name or
  is a method named on its class; then what is registered under the name, bound to its
  object. Its ``@fg.activity`` options (timeout, retry policy) win over the command's; the
  engine's policy applies to an activity that declares none.
- Which event records an attempt is decided by one pure rule,
  `flowgen._core.outcome.attempt_outcome`, which the `Stepper` calls too (through
  `flowgen._runtime.invoke.attempt_event`): an error outside the activity's own code (no
  such activity, arguments that do not decode, a result that cannot be stored) would only
  repeat itself, so it is not retried.
- An attempt that runs past one of its timeouts (start-to-close, heartbeat,
  schedule-to-close) fails as an `ActivityTimeout`, retried like any other failure (no
  retry past schedule-to-close). Its watch is opened when it starts, on the engine's clock,
  and a timer is armed for its next deadline; the timer (`Attempts.timed_out`) or the
  attempt's own late report, whichever comes first, records the timeout. The rules, and
  heartbeats: `flowgen._runtime.heartbeats`. Driven by hand, an attempt runs inline, so its
  own report notices a deadline the clock passed while it ran (a `ManualClock` moved by
  the activity or a heartbeat); its timer, left over, is disarmed so autojump skips it.
- An attempt posted to a fleet (`share`) is timed out by this engine, its run's holder,
  from what the engine running it records in the store (`flowgen._runtime.shared_attempts`):
  the same timer, read through `Attempts.shared` when no local watch answers it. An
  attempt another engine posted runs here watched apart (its own `Heartbeats`), so the two
  roles never mix.
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

from flowgen._core.dsl import ActivityDefinition
from flowgen._core.outcome import attempt_outcome
from flowgen._runtime.clock import Clock, SystemClock
from flowgen._runtime.heartbeats import Expiry, Heartbeats, Watch, ignored_note
from flowgen._runtime.invoke import (
    ActivityInfo,
    ActivityTimeout,
    attempt_event,
    run_attempt,
)
from flowgen._runtime.items import Due, Feed, Item, Key
from flowgen._runtime.jobs import Jobs
from flowgen._runtime.limits import Gate, Ticket, nothing
from flowgen._runtime.registry import Registry
from flowgen._runtime.shared_attempts import SharedDeadlines
from flowgen._runtime.timers import TimerHeap
from flowgen._runtime.tracing import RunTrace, Telemetry
from flowgen._runtime.workers import Then
from flowgen._vocabulary.commands import ActivityOptions, CallActivity
from flowgen._vocabulary.errors import UnknownActivity
from flowgen._vocabulary.events import (
    ActivityScheduled,
    Event,
    JsonValue,
)
from flowgen._vocabulary.limits import DEFAULT_TASK_QUEUE
from flowgen._vocabulary.retry import RetryPolicy

__all__ = ["Attempts"]

# What `Registry.resolve` gives: the definition, and the function an attempt runs.
_Resolved = tuple[ActivityDefinition, Callable[..., object]]


class Attempts:
    """Starts activity attempts and reports their outcomes to the decision loop.

    Args:
        registry: Where activities called by name are found.
        retry: The engine's retry policy, for activities that declare none.
        clock: Where the time comes from.
        jobs: Where attempts run.
        timers: Where attempt timeouts are armed.
        deliver: Puts an item into the decision loop's inbox.
        hand_in: Gives an attempt's reports to the decision loop, from its thread once
            its job is done (`DecisionLoop.hand_in`); by default, puts them in the inbox.
        gate: What holds attempts back (task queues, limits); ``None`` for nothing.
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
        gate: Gate | None = None,
        telemetry: Telemetry | None = None,
        trace_of: Callable[[Key], RunTrace | None] = lambda key: None,
        hand_in: Callable[[list[Item]], None] | None = None,
    ) -> None:
        self._registry = registry
        self._telemetry = telemetry
        self._trace_of = trace_of
        self._retry = retry
        self._clock = clock
        self._jobs = jobs
        self._timers = timers
        self._deliver = deliver
        self._hand_in = hand_in or partial(_put_each, deliver)
        self.heartbeats = Heartbeats(clock, deliver)
        """Watches of running attempts and the last heartbeat details of pending calls."""
        # Attempts other engines posted, run here: watched apart, so that a timer of this
        # engine as a run's holder never takes one of them for its own.
        self._posted = Heartbeats(clock, deliver)
        self._gate = gate
        self.share: Callable[[Key, ActivityScheduled, int, str], bool] | None = None
        """Set by a fleet that shares attempts out (`flowgen._runtime.fleet`): posts an
        attempt (key, scheduled event, attempt, task queue) for any engine serving its
        task queue to run; False if it could not (it then runs here)."""
        self.shared: SharedDeadlines | None = None
        """Set with `share`: the deadlines of attempts posted, enforced here (their
        run's holder: `flowgen._runtime.shared_attempts`)."""

    def start(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
    ) -> None:
        """Run attempt number *attempt* of a scheduled call (after its batch committed).

        It passes the gate first (`flowgen._runtime.limits`): it may wait there for its
        task queue or a permit, recording nothing. In a fleet that shares attempts out, it
        is posted for any engine to run instead (`share`).
        """
        options = self.options(command)
        # Posted, it takes no permit here: the engine that takes it passes its own gate.
        queue = options.task_queue or DEFAULT_TASK_QUEUE
        if self.share is not None and self.share(key, scheduled, attempt, queue):
            if self.shared is not None:
                self.shared.posted(key, scheduled, attempt)
            return
        gate = self._gate
        if gate is None or gate.free(options):
            self._submit(key, scheduled, command, attempt, nothing)
            return
        start = partial(self._submit, key, scheduled, command, attempt)
        now = self._clock.now()
        gate.admit(
            Ticket(key, scheduled.seq, attempt, command.name, options, start, now)
        )

    def _submit(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
        release: Callable[[], None],
    ) -> None:
        trace = self._trace_of(key) if self._telemetry is not None else None
        # Its timeouts are armed when it starts running (`_attempt`): not while it waited
        # at the gate, nor in a pool's queue.
        self._jobs.submit(
            partial(self._run, key, scheduled, command, attempt, trace, release)
        )

    def options(self, command: CallActivity[Any]) -> ActivityOptions:
        """The options of the activity a command calls."""
        return _options(command, self._resolve(command))

    def _resolve(self, command: CallActivity[Any]) -> _Resolved | None:
        """What the registry resolves *command* to, or ``None`` for an unknown activity."""
        try:
            return self._registry.resolve(command)
        except UnknownActivity:
            return None

    def timed_out(
        self, key: Key, command: CallActivity[Any], seq: int, attempt: int
    ) -> list[Event]:
        """What the timer armed for an attempt's next deadline means, once it came due.

        Returns:
            The events to record: the attempt's last unrecorded heartbeat details and its
            timeout, or nothing (it reported in time; or a heartbeat moved its deadline,
            and the timer is armed again).
        """
        found = self.heartbeats.due(key, seq, attempt)
        if found is None:
            return self._shared_timed_out(key, command, seq, attempt)
        expiry, watch = found
        if not isinstance(expiry, Expiry):  # a heartbeat moved the deadline
            self._timers.arm(expiry, Due("activity_timeout", key, seq, attempt))
            return []
        if watch.stop is not None:  # an async attempt: cancel it (a thread cannot be)
            watch.stop()
        now = self._clock.now()
        flushed = self.heartbeats.flush(watch, now)
        event = self._timeout(command, watch, expiry, now)
        self.heartbeats.settled(key, seq, event)
        return [flushed, event] if flushed is not None else [event]

    def _shared_timed_out(
        self, key: Key, command: CallActivity[Any], seq: int, attempt: int
    ) -> list[Event]:
        """A timer for an attempt posted to the fleet: its last details and its timeout."""
        if self.shared is None:
            return []
        found = self.shared.due(key, command.name, seq, attempt)
        if found is None:
            return []
        watch = Watch(  # the attempt as its holder sees it, from the store
            key,
            seq,
            attempt,
            command.name,
            self.options(command),
            found.scheduled_at,
            found.started_at,
            last_beat_at=found.beat_at,
            details=found.details,
            unrecorded=found.beat_at is not None,
        )
        now = self._clock.now()
        event = self._timeout(command, watch, found.expiry, now)
        if not watch.unrecorded:
            return [event]
        return [watch.note(now), event]

    def _timeout(
        self, command: CallActivity[Any], watch: Watch, expiry: Expiry, now: datetime
    ) -> Event:
        return attempt_outcome(
            seq=watch.seq,
            attempt=watch.attempt,
            policy=self.options(command).retry or self._retry,
            started_at=watch.started_at,
            now=now,
            error=ActivityTimeout(expiry.message(command.name, watch.attempt)),
            deadline=watch.schedule_deadline,
        )

    def _run(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
        trace: RunTrace | None,
        release: Callable[[], None],
    ) -> Then:
        """The attempt's job: perform it; its reports are handed in by the follow-up."""
        try:
            reports = self._attempt(key, scheduled, command, attempt, trace)
        except BaseException:
            release()
            raise
        return partial(self._report_then_release, reports, release)

    def _report_then_release(
        self, reports: list[Item], release: Callable[[], None]
    ) -> None:
        try:
            self._hand_in(reports)
        finally:  # its permits, if it held any (after its outcome is in the loop's hands)
            release()

    def _attempt(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
        trace: RunTrace | None,
    ) -> list[Item]:
        """Perform the attempt; the items that report it to the loop."""
        workflow_id, run_id = key
        resolved = self._resolve(command)  # once: the options, then what runs
        options = _options(command, resolved)
        watch = self.heartbeats.open(
            key, scheduled.seq, attempt, command.name, options, scheduled.at
        )
        first_deadline = watch.next_deadline()
        timer = None
        if first_deadline is not None:
            timer = Due("activity_timeout", key, scheduled.seq, attempt)
            self._timers.arm(first_deadline, timer)
        info = ActivityInfo(
            workflow_id,
            run_id,
            scheduled.seq,
            command.name,
            attempt,
            scheduled.at,
            heartbeat_details=self.heartbeats.details(key, scheduled.seq),
            started_at=watch.started_at,
            deadline=_bound(watch),
            heartbeat_timeout=options.heartbeat_timeout,
        )
        span = None
        if self._telemetry is not None:
            span = self._telemetry.attempt(
                trace, key, scheduled.seq, command.name, attempt, self._clock.now()
            )
        # A deadline that passed before the start (schedule-to-close, across a restart)
        # leaves nothing to run.
        expired = watch.expiry(watch.started_at)
        try:
            event = (
                None
                if expired
                else self._perform(command, scheduled, info, watch, resolved)
            )
        except BaseException:
            if span is not None:
                span.ended(None)
            raise
        finally:
            if timer is not None and not self._jobs.background:
                # Driven by hand, a timer left for an attempt that reported would only
                # make autojump move the clock for nothing.
                self._timers.disarm(timer)
        outcome, reports = self._report(command, watch, event)
        if span is not None:
            span.ended(outcome)
        self.heartbeats.settled(key, scheduled.seq, outcome)
        return [Feed(workflow_id, run_id, report) for report in reports]

    def _perform(
        self,
        command: CallActivity[Any],
        scheduled: ActivityScheduled,
        info: ActivityInfo,
        watch: Watch,
        resolved: _Resolved | None = None,
    ) -> Event:
        # The outcome rule is `flowgen._core.outcome.attempt_outcome`, shared with the
        # Stepper; `attempt_event` performs the attempt and asks it.
        return attempt_event(
            command,
            scheduled,
            info,
            registry=self._registry,
            default=self._retry,
            now=self._clock.now,
            timeout=self._wall_timeout(watch.options),
            call=partial(
                run_attempt,
                loop=self._jobs.activity_loop,
                beat=partial(self.heartbeats.beat, watch),
                stoppable=partial(self.heartbeats.stoppable, watch),
            ),
            deadline=watch.schedule_deadline,
            resolved=resolved,
        )

    def perform_posted(
        self,
        key: Key,
        scheduled: ActivityScheduled,
        attempt: int,
        *,
        details: JsonValue = None,
        on_beat: Callable[[datetime, JsonValue], None] | None = None,
    ) -> list[Event]:
        """Perform an attempt an engine of the fleet posted, on this thread.

        The activity is found by its registered name, with its options here. It is
        watched like a local attempt (its throttled heartbeat notes are kept, for the
        run's holder to get with its outcome, in order), and its report notices a deadline that passed
        while it ran: then it fails as `ActivityTimeout` per its retry policy. No timer
        fails it here: its run's holder does (`flowgen._runtime.shared_attempts`), from
        the heartbeats *on_beat* records in the store.

        Args:
            key: The run's key.
            scheduled: The call's ``activity_scheduled`` event.
            attempt: The attempt's number.
            details: The last heartbeat details of the call, as the store has them.
            on_beat: Called with each heartbeat (time, details).

        Returns:
            The events for the run's holder to record, its outcome last.
        """
        command: CallActivity[Any] = CallActivity(scheduled.name)
        options = self.options(command)
        seq = scheduled.seq
        posted = self._posted
        watch = posted.open(key, seq, attempt, scheduled.name, options, scheduled.at)
        kept: list[
            Event
        ] = []  # its notes go with its outcome, in order, not to the inbox
        watch.kept = kept
        watch.on_beat = on_beat
        info = ActivityInfo(
            key[0],
            key[1],
            seq,
            scheduled.name,
            attempt,
            scheduled.at,
            heartbeat_details=details,
            started_at=watch.started_at,
            deadline=_bound(watch),
            heartbeat_timeout=options.heartbeat_timeout,
        )
        expired = watch.expiry(watch.started_at)  # past schedule-to-close already
        event = None if expired else self._perform(command, scheduled, info, watch)
        outcome, reports = self._report(command, watch, event, posted)
        posted.settled(key, seq, outcome)
        return [*kept, *reports]

    def _wall_timeout(self, options: ActivityOptions) -> float | None:
        """The start-to-close timeout an ``async def`` attempt is cancelled after.

        ``asyncio.wait_for`` measures real time: only when the engine's clock is real time
        too (a `ManualClock`'s attempts time out by its time alone, through their watch),
        and only in the background (inline, nothing else could go on meanwhile).
        *options* are the attempt's (its watch's), resolved once as it started.
        """
        if not self._jobs.background or not isinstance(self._clock, SystemClock):
            return None
        return options.timeout

    def _report(
        self,
        command: CallActivity[Any],
        watch: Watch,
        event: Event | None,
        registry: Heartbeats | None = None,
    ) -> tuple[Event | None, list[Event]]:
        """An attempt reported *event* (``None``: it never ran, being past a deadline).

        Returns:
            Its outcome (``None`` if the timer recorded its timeout already) and the events
            to record: the outcome, or its timeout with a note that *event* was ignored.
        """
        registry = registry or self.heartbeats
        expiry, noticed = registry.finish(watch)
        if expiry is None and not noticed:  # in time: the common case
            assert event is not None  # an attempt that never ran had a deadline passed
            return event, [event]
        now = self._clock.now()
        if noticed:  # the timer failed it already: only say its report came late
            late: list[Event] = []
            if event is not None:
                late.append(ignored_note(watch, event, now, None))
            return None, late
        assert expiry is not None  # not in time, not noticed: it passed its deadline
        # Its deadline passed while it ran (a hand-driven engine runs attempts inline, so
        # this is where it notices): the attempt timed out, and what it said is ignored.
        flushed = registry.flush(watch, now)
        timeout = self._timeout(command, watch, expiry, now)
        ignored = None if event is None else ignored_note(watch, event, now, expiry)
        # The note first: the timeout may close the run, and a closed run records nothing.
        return timeout, [e for e in (flushed, ignored, timeout) if e is not None]


def _put_each(put: Callable[[Item], None], items: list[Item]) -> None:
    for item in items:
        put(item)


def _options(command: CallActivity[Any], resolved: _Resolved | None) -> ActivityOptions:
    # What the activity's @fg.activity declared, also when the workflow called it by name
    # (then the command itself carries only the defaults).
    return command.options if resolved is None else resolved[0].options


def _bound(watch: Watch) -> datetime | None:
    """When an attempt times out at the latest, heartbeats aside."""
    if watch.unbounded:
        return None
    ends = [
        watch.started_at + timedelta(seconds=watch.options.timeout)
        if watch.options.timeout is not None
        else None,
        watch.schedule_deadline,
    ]
    return min((end for end in ends if end is not None), default=None)
