"""Shared attempts' deadlines: the run's holder enforces them, whichever engine runs the attempt.

In a fleet that shares activity attempts (`FleetOptions.share_activities`), an attempt of a
run held by one engine (the *holder*) may run on another (the *runner*). The three
timeouts of `flowgen._runtime.heartbeats` still bound it; this module makes them hold when
the runner hangs or dies, through the store (`flowgen._stores.protocol.TaskWatch`).

Rules:

- **The runner records, the holder decides.** The runner marks the task started when it
  starts the attempt (its clock) and, if the activity has a start-to-close or heartbeat
  timeout, tells the holder in the same statement (a ``started`` message); it records the
  attempt's heartbeats in the task's row as they happen (`BeatRecorder`). The holder arms
  a timer for the attempt's next deadline: schedule-to-close when it posts the attempt
  (`SharedDeadlines.posted`), the others when it hears the attempt started
  (`SharedDeadlines.started`); when the timer comes due it reads the task's row
  (`SharedDeadlines.due`) and, if a deadline passed, fails the attempt with
  ``ActivityTimeout`` (then retried by its policy: `flowgen._runtime.attempts`).
- **Heartbeats are recorded throttled**, as Temporal's SDKs send them: the first of an
  attempt at once, then one at most every `record_seconds` (a fifth of the heartbeat
  timeout; without one, the details' throttle of `flowgen._runtime.heartbeats.throttle_seconds`,
  for their durability only). A heartbeat the throttle skipped is at most that much
  younger than the recorded one, so the holder counts the heartbeat timeout from the
  recorded beat plus that interval: it never fails an attempt that did heartbeat in time,
  and fails a hung one at most one interval late.
- **One outcome per attempt.** The holder claims a timed-out attempt by deleting its task
  (`TaskWatch.claim`), before it records the timeout. The runner's outcome then finds no
  task: it is posted as an ``activity_result_ignored`` note only (`late_notes`), never as a
  second outcome. If the runner reported first (its task is gone), the holder records
  nothing: the outcome is on its way. A claimed timeout is remembered (the last
  `_REMEMBERED` of them) so that a batch retried after a failed commit decides the same.
- **The runner stops where it can**: a heartbeat of an attempt whose task is no longer its
  own (timed out by the holder, or its lease lapsed and another engine took it) raises
  ``ActivityTimeout`` in the activity, as a local attempt's heartbeat after its timeout
  does.
- **The details outlive the runner**: the row keeps the last recorded details; when the
  holder times the attempt out it records them as an ``activity_heartbeat`` note, and the
  next attempt, on any engine, starts with them (`TaskWatch.start`).
- **A hand-driven holder disarms the timers of an attempt once its outcome is applied**
  (`SharedDeadlines.reported`, as a local attempt's are), so autojump never moves the
  clock to a deadline nobody waits for; in the background a stale timer costs one look
  when it comes due (the loop drops it: the attempt moved on).
- **Clocks.** The holder compares times the runner wrote with its own clock: the engines of
  a fleet must share a time source (NTP), as PostgreSQL's own leases need the server's.
  A clock skew moves a deadline by the skew.
- Thread-safety: `SharedDeadlines` is used on the decision loop's thread only, except its
  claimed memory, which has a lock of its own; a `BeatRecorder` belongs to one attempt,
  called on its activity thread (and the loop's, for an ``async def`` one), under its lock.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import attrs

from flowgen._runtime.clock import Clock
from flowgen._runtime.heartbeats import (
    Expiry,
    first_expiry,
    next_deadline,
    throttle_seconds,
)
from flowgen._runtime.invoke import ActivityTimeout
from flowgen._runtime.items import Due, Key
from flowgen._runtime.timers import TimerHeap
from flowgen._stores.protocol import Task, TaskState, TaskWatch
from flowgen._vocabulary.commands import ActivityOptions
from flowgen._vocabulary.errors import StoreError
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    ActivityResultIgnored,
    ActivityScheduled,
    Event,
    JsonValue,
)

__all__ = [
    "BeatRecorder",
    "SharedDeadlines",
    "TimedOut",
    "late_notes",
    "record_seconds",
    "tells_holder",
]

log = logging.getLogger("flowgen")

RECORD_FRACTION = 0.2
"""Of the heartbeat timeout: how often a shared attempt's heartbeats are recorded at most."""

_REMEMBERED = 1024
"""How many claimed timeouts the holder remembers, for batches retried after a failure."""

_RETRY_SECONDS = 1.0
"""How soon the holder looks again when reading an attempt's task failed."""


def record_seconds(options: ActivityOptions) -> float:
    """How long after one recorded heartbeat of a shared attempt the next may be recorded."""
    if options.heartbeat_timeout is None:
        return throttle_seconds(options)
    return options.heartbeat_timeout * RECORD_FRACTION


def tells_holder(options: ActivityOptions) -> bool:
    """Does the holder need to hear that an attempt started (for a deadline from its start)?"""
    return options.timeout is not None or options.heartbeat_timeout is not None


def late_notes(
    task: Task, events: Sequence[Event], now: datetime
) -> list[ActivityResultIgnored]:
    """What is posted instead of an attempt's *events* (outcome last) if its task is gone.

    The attempt's own notes of an ignored result when it noticed its timeout itself (they
    say what the activity returned), else a note that its outcome came late.
    """
    own = [event for event in events if isinstance(event, ActivityResultIgnored)]
    if own or not events:
        return own
    note = ActivityResultIgnored(
        at=now,
        seq=task.scheduled.seq,
        attempt=task.attempt,
        outcome=EVENT_TAGS[type(events[-1])],
        reason=(
            f"reported after its run's holder timed attempt {task.attempt} out "
            "(or another engine took it over)"
        ),
    )
    return [note]


class BeatRecorder:
    """Records a shared attempt's heartbeats in the store, throttled (the runner's side).

    Args:
        watch: The store's task watch.
        task: The attempt's task.
        options: The activity's options here.
    """

    def __init__(self, watch: TaskWatch, task: Task, options: ActivityOptions) -> None:
        self._watch = watch
        self._task = task
        self._interval = timedelta(seconds=record_seconds(options))
        self._lock = threading.Lock()
        self._recorded: datetime | None = None  # guarded by _lock

    def __call__(self, at: datetime, details: JsonValue) -> None:
        """A heartbeat at *at*: record it unless one was recorded less than an interval ago.

        Raises:
            ActivityTimeout: The task is no longer this engine's: nobody waits for it.
        """
        with self._lock:
            if self._recorded is not None and at - self._recorded < self._interval:
                return
            self._recorded = at
            try:
                ours = self._watch.beat(self._task, at, details)
            except (
                StoreError
            ) as exc:  # its holder may fail it: it did heartbeat, though
                log.warning("flowgen: recording a heartbeat failed: %s", exc)
                return
        if not ours:
            task = self._task
            raise ActivityTimeout(
                f"activity {task.scheduled.name!r} attempt {task.attempt} was timed out "
                "by its run's holder (or taken over by another engine)"
            )


@attrs.frozen
class TimedOut:
    """A shared attempt the holder claimed as timed out.

    Attributes:
        expiry: The deadline that passed.
        scheduled_at: When its call was scheduled.
        started_at: When it started (its runner's clock), or when it was found unstarted.
        beat_at: When its last heartbeat was recorded, if one was.
        details: Its last recorded heartbeat's details.
    """

    expiry: Expiry
    scheduled_at: datetime
    started_at: datetime
    beat_at: datetime | None
    details: JsonValue


class SharedDeadlines:
    """The holder's side: timers for shared attempts' deadlines, and what they mean.

    Args:
        watch: The store's task watch.
        timers: Where the engine's timers are armed.
        clock: The engine's clock.
        options_of: The options of the activity registered under a name.
        by_hand: True while the engine is driven by hand (its timers of reported
            attempts are then disarmed, as autojump would move the clock to them).
    """

    def __init__(
        self,
        watch: TaskWatch,
        timers: TimerHeap,
        clock: Clock,
        options_of: Callable[[str], ActivityOptions],
        by_hand: Callable[[], bool] = lambda: False,
    ) -> None:
        self._watch = watch
        self._timers = timers
        self._clock = clock
        self._options_of = options_of
        self._by_hand = by_hand
        self._lock = threading.Lock()
        self._claimed: OrderedDict[tuple[Key, int, int], TimedOut] = OrderedDict()
        # Timers armed by hand-driven engines, until their attempt reports: under _lock.
        self._armed: dict[tuple[Key, int, int], list[Due]] = {}

    def _arm(self, due: datetime, key: Key, seq: int, attempt: int) -> None:
        timer = Due("activity_timeout", key, seq, attempt)
        if self._by_hand():
            with self._lock:
                self._armed.setdefault((key, seq, attempt), []).append(timer)
        self._timers.arm(due, timer)

    def reported(self, key: Key, seq: int, attempt: int) -> None:
        """An attempt's outcome came: a hand-driven engine disarms its timers.

        (In the background a stale timer costs one look when it comes due; disarming is
        a scan of the heap, which only a hand-driven engine's is small enough for.)
        """
        with self._lock:
            timers = self._armed.pop((key, seq, attempt), [])
        for timer in timers:
            self._timers.disarm(timer)

    def posted(self, key: Key, scheduled: ActivityScheduled, attempt: int) -> None:
        """An attempt was posted: arm its schedule-to-close, if it has one."""
        bound = self._options_of(scheduled.name).schedule_to_close
        if bound is not None:
            due = scheduled.at + timedelta(seconds=bound)
            self._arm(due, key, scheduled.seq, attempt)

    def started(self, key: Key, body: dict[str, JsonValue]) -> None:
        """A ``started`` message: arm a timer for the attempt's first deadline from its start."""
        seq, attempt, name = body["seq"], body["attempt"], body["name"]
        assert isinstance(seq, int)
        assert isinstance(attempt, int)
        options = self._options_of(str(name))
        started_at = datetime.fromisoformat(str(body["started_at"]))
        due = next_deadline(options, scheduled_at=None, started_at=started_at)
        if due is not None:
            self._arm(due, key, seq, attempt)

    def due(self, key: Key, name: str, seq: int, attempt: int) -> TimedOut | None:
        """A timer for a shared attempt came due: has it timed out (then it is claimed)?

        Returns:
            The timeout to record, or ``None``: the attempt reported (its outcome is on
            its way), or its deadline moved (the timer is armed again), or it is not
            posted (it ran here).
        """
        with self._lock:
            remembered = self._claimed.get((key, seq, attempt))
            self._armed.pop(
                (key, seq, attempt), None
            )  # came due: armed again if need be
        if remembered is not None:
            return remembered
        now = self._clock.now()
        options = self._options_of(name)
        try:
            states = self._watch.states(key[1], seq, attempt)
        except StoreError as exc:
            log.warning(
                "flowgen: reading a shared attempt failed, looking again: %s", exc
            )
            self._arm(now + timedelta(seconds=_RETRY_SECONDS), key, seq, attempt)
            return None
        views = [(state, *_view(state, options, now)) for state in states]
        if not views:
            return None
        waiting = [again for _, expiry, again in views if expiry is None]
        if not waiting:  # every task of the attempt is past a deadline
            return self._claim(key, seq, attempt, views, now)
        moved = [again for again in waiting if again is not None]
        if moved:  # a heartbeat moved its deadline (unstarted: the runner will say)
            self._arm(min(moved), key, seq, attempt)
        return None

    def _claim(
        self,
        key: Key,
        seq: int,
        attempt: int,
        views: list[tuple[TaskState, Expiry | None, datetime | None]],
        now: datetime,
    ) -> TimedOut | None:
        try:
            claimed = self._watch.claim([state.id for state, _, _ in views])
        except StoreError as exc:
            log.warning("flowgen: timing out a shared attempt failed, again: %s", exc)
            self._arm(now + timedelta(seconds=_RETRY_SECONDS), key, seq, attempt)
            return None
        if len(claimed) < len(views):
            return None  # it reported meanwhile: its outcome is on its way
        first = min(
            ((state, expiry) for state, expiry, _ in views if expiry is not None),
            key=lambda pair: pair[1].at,
        )
        beaten = [s for s in claimed if s.beat_at is not None]
        last = max(beaten, key=lambda s: s.beat_at or now, default=None)
        found = TimedOut(
            first[1],
            first[0].scheduled.at,
            first[0].started_at or now,
            None if last is None else last.beat_at,
            None if last is None else last.details,
        )
        with self._lock:
            self._claimed[(key, seq, attempt)] = found
            while len(self._claimed) > _REMEMBERED:
                self._claimed.popitem(last=False)
        return found


def _view(
    state: TaskState, options: ActivityOptions, now: datetime
) -> tuple[Expiry | None, datetime | None]:
    """A posted attempt's deadline that passed by *now*, and else when to look again."""
    if state.started_at is None:  # nobody runs it: only schedule-to-close can pass
        bounded = attrs.evolve(options, timeout=None, heartbeat_timeout=None)
        scheduled_at = state.scheduled.at
        expiry = first_expiry(
            bounded,
            scheduled_at=scheduled_at,
            started_at=now,
            last_beat_at=None,
            now=now,
        )
        again = next_deadline(bounded, scheduled_at=scheduled_at, started_at=now)
        return expiry, again
    # A beat the throttle skipped is younger than the recorded one by less than this.
    grace = timedelta(seconds=record_seconds(options))
    last_beat = None if state.beat_at is None else state.beat_at + grace
    expiry = first_expiry(
        options,
        scheduled_at=state.scheduled.at,
        started_at=state.started_at,
        last_beat_at=last_beat,
        now=now,
    )
    again = next_deadline(
        options,
        scheduled_at=state.scheduled.at,
        started_at=state.started_at,
        last_beat_at=last_beat,
    )
    return expiry, again
