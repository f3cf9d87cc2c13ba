"""Heartbeats and the three activity timeouts: who watches a running attempt, and when it ends.

Theory of operation
===================

Every running activity attempt has a `Watch`, opened when the attempt starts (on its
activity thread, or inline when the engine is driven by hand) and closed when it reports.
Three timeouts bound it (Temporal's, with Temporal's names in the docs):

- **start-to-close** (``@fg.activity(timeout=...)``): from the attempt's start;
- **heartbeat** (``heartbeat_timeout=...``): from the attempt's start, then from its last
  ``fg.heartbeat``;
- **schedule-to-close** (``schedule_to_close=...``): from the call's recorded
  ``activity_scheduled``, so all attempts and retry delays together, across restarts. No
  retry starts at or after it (`flowgen._core.outcome.attempt_outcome`).

Which deadline passed first is one pure rule, `first_expiry`, read on the engine's clock
(a `ManualClock` in tests: time is never read anywhere else).

Rules
-----

- **Exactly one outcome per attempt.** A watch is *running* until either its thread reports
  (`Heartbeats.finish`) or the timer armed for its next deadline comes due and finds the
  deadline passed (`Heartbeats.due`); the first of the two claims it, under the registry's
  lock. A thread that reports after its deadline reports a timeout, whoever noticed: a
  hand-driven engine runs attempts inline, so there the thread itself notices (the
  attempt's clock moved past the deadline while it ran); in the background the timer
  usually does first.
- **A late result is ignored, and recorded as such**: an ``activity_result_ignored`` note
  names the attempt and what it reported; the attempt's outcome stays the timeout. Like
  every note it is recorded while its run is open (a run closed meanwhile records nothing
  more: the note is dropped with any other late news).
- **A heartbeat moves only the heartbeat deadline.** When the timer comes due for a
  deadline a heartbeat has since moved, it is armed again for the new one.
- **A timed-out attempt is stopped where Python can.** An ``async def`` one is cancelled
  (its task, on whichever loop runs it: `Heartbeats.stoppable`), and fails as
  `ActivityTimeout`. A thread cannot be stopped from outside: its next heartbeat raises
  `ActivityTimeout` in the activity, so the code of an attempt nobody waits for anymore
  stops there.
- **Durable details, throttled** (as Temporal's SDKs throttle what they send): a heartbeat
  only updates the watch in memory. It is recorded, as an ``activity_heartbeat`` note in
  the run's history, for the first heartbeat of an attempt, then at most once per throttle
  interval (`throttle_seconds`: 80% of the heartbeat timeout, else 30 s, at most 60 s), and
  the latest unrecorded details once more just before a timed-out attempt's failure. A note
  goes through the decision loop's inbox into its next group commit: a heartbeat never
  writes by itself, and never waits for a write. A crash loses at most one interval of
  details.
- **Why notes in the history, not a table of their own**: the details then live and die
  with the run's history: committed in the same group commit as everything else, read in
  the same read when a run is recovered (no extra query, no schema change, the same on
  DuckDB and PostgreSQL), shown by SQL over ``events`` and in the notebooks. Temporal keeps
  them in its server's mutable state instead; what matters is the same: throttled, and
  never seen by the workflow (replay skips notes, `flowgen._core.history`).
- **The next attempt reads the last details** (`ActivityInfo.heartbeat_details`): of the
  previous attempt in this process, else of the last ``activity_heartbeat`` note of the
  call in its history (read when a run is recovered: after a restart, or by another engine
  of a fleet taking the run over).
- **An attempt another engine of a fleet posted** (``share_activities``) is watched here
  too, in a registry of its own (`flowgen._runtime.attempts`), with no timer: its run's
  holder enforces its deadlines from the start and heartbeats recorded in the store
  (`Watch.on_beat`), and the details it starts with are the store's
  (`flowgen._runtime.shared_attempts`).
- **Ownership and locking**: watches and last details are shared by activity threads
  (heartbeats, reports), the timer thread's items applied by the decision loop, and
  recovery: every access holds `Heartbeats._lock`. Nothing is kept for a call once it
  completes or fails for good.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal

import attrs

from flowgen._runtime.clock import Clock
from flowgen._runtime.invoke import ActivityTimeout, Stop
from flowgen._runtime.items import Feed, Key
from flowgen._vocabulary.commands import ActivityOptions
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    ActivityCompleted,
    ActivityFailed,
    ActivityHeartbeat,
    ActivityResultIgnored,
    Event,
    JsonValue,
)

__all__ = [
    "Expiry",
    "Heartbeats",
    "TimeoutKind",
    "Watch",
    "first_expiry",
    "ignored_note",
    "next_deadline",
    "throttle_seconds",
]

TimeoutKind = Literal["start_to_close", "heartbeat", "schedule_to_close"]

DEFAULT_THROTTLE_SECONDS = 30.0
"""How often heartbeat details are recorded when the activity has no heartbeat timeout."""
MAX_THROTTLE_SECONDS = 60.0
"""The longest interval between two recorded heartbeats of one attempt."""
THROTTLE_FRACTION = 0.8
"""Of the heartbeat timeout: recorded details are never older than that when it comes due."""


@attrs.frozen
class Expiry:
    """A deadline of an attempt that passed.

    Attributes:
        kind: Which timeout.
        at: When it came due.
        seconds: The timeout itself.
    """

    kind: TimeoutKind
    at: datetime
    seconds: float

    def message(self, name: str, attempt: int) -> str:
        """What the attempt's ``ActivityTimeout`` says."""
        match self.kind:
            case "heartbeat":
                return (
                    f"activity {name!r} attempt {attempt} sent no heartbeat for its "
                    f"{self.seconds:g} s heartbeat timeout"
                )
            case "schedule_to_close":
                return (
                    f"activity {name!r} ran past its {self.seconds:g} s "
                    f"schedule-to-close timeout (attempt {attempt})"
                )
            case _:
                return (
                    f"activity {name!r} attempt {attempt} ran past its "
                    f"{self.seconds:g} s timeout"
                )


def _deadlines(
    options: ActivityOptions,
    scheduled_at: datetime | None,
    started_at: datetime,
    last_beat_at: datetime | None,
) -> list[Expiry]:
    found: list[Expiry] = []
    if options.timeout is not None:
        at = started_at + timedelta(seconds=options.timeout)
        found.append(Expiry("start_to_close", at, options.timeout))
    if options.heartbeat_timeout is not None:
        since = last_beat_at or started_at
        at = since + timedelta(seconds=options.heartbeat_timeout)
        found.append(Expiry("heartbeat", at, options.heartbeat_timeout))
    if options.schedule_to_close is not None and scheduled_at is not None:
        at = scheduled_at + timedelta(seconds=options.schedule_to_close)
        found.append(Expiry("schedule_to_close", at, options.schedule_to_close))
    return found


def next_deadline(
    options: ActivityOptions,
    *,
    scheduled_at: datetime | None,
    started_at: datetime,
    last_beat_at: datetime | None = None,
) -> datetime | None:
    """The earliest deadline of an attempt, or ``None`` if it has no timeout."""
    found = _deadlines(options, scheduled_at, started_at, last_beat_at)
    return min((expiry.at for expiry in found), default=None)


def first_expiry(
    options: ActivityOptions,
    *,
    scheduled_at: datetime | None,
    started_at: datetime,
    last_beat_at: datetime | None,
    now: datetime,
) -> Expiry | None:
    """The deadline of an attempt that passed first by *now*, or ``None``.

    A deadline has passed once *now* reaches it, as a timer is due once the clock reaches
    its time: so a timer that comes due for a deadline nobody moved always finds it passed
    (never re-armed for the same moment). Of two that passed, the earlier wins
    (schedule-to-close on a tie, since it leaves no retry).
    """
    passed = [
        expiry
        for expiry in _deadlines(options, scheduled_at, started_at, last_beat_at)
        if now >= expiry.at
    ]
    if not passed:
        return None
    return min(passed, key=lambda e: (e.at, e.kind != "schedule_to_close"))


def throttle_seconds(options: ActivityOptions) -> float:
    """How long after one recorded heartbeat of an attempt the next may be recorded."""
    if options.heartbeat_timeout is None:
        return DEFAULT_THROTTLE_SECONDS
    return min(options.heartbeat_timeout * THROTTLE_FRACTION, MAX_THROTTLE_SECONDS)


@attrs.define(eq=False)
class Watch:
    """One running attempt, as the timeouts see it (its fields: under `Heartbeats._lock`).

    Attributes:
        key: The run's key.
        seq: The call's seq.
        attempt: The attempt's number.
        name: The activity's name.
        options: The options of the definition that runs.
        scheduled_at: When the call was scheduled (its ``activity_scheduled``).
        started_at: When this attempt started.
        last_beat_at: When it last called ``fg.heartbeat``.
        details: Its last heartbeat's details (encoded).
        recorded_at: When its details were last sent to be recorded.
        unrecorded: The last details were not sent to be recorded yet.
        state: ``running``, ``finished`` (its thread reported in time) or ``timed_out``.
        expired: The deadline that passed, once it timed out.
        stop: Cancels the attempt, when it is an ``async def`` one that runs.
        kept: Where its notes are kept instead of sent to the inbox (an attempt another
            engine of a fleet posted: they go to the run's holder with its outcome).
        on_beat: Called with the time and details of each heartbeat, outside the lock
            (an attempt another engine posted: `flowgen._runtime.shared_attempts`
            records them in the store); it may raise `ActivityTimeout`.
    """

    key: Key
    seq: int
    attempt: int
    name: str
    options: ActivityOptions
    scheduled_at: datetime | None
    started_at: datetime
    last_beat_at: datetime | None = None
    details: JsonValue = None
    recorded_at: datetime | None = None
    unrecorded: bool = False
    state: Literal["running", "finished", "timed_out"] = "running"
    expired: Expiry | None = None
    stop: Stop | None = None
    kept: list[Event] | None = None
    on_beat: Callable[[datetime, JsonValue], None] | None = None

    unbounded: bool = attrs.field(init=False)
    """True for an attempt with no timeout at all (most: nothing to compute)."""

    @unbounded.default
    def _no_timeout(self) -> bool:
        options = self.options
        return (
            options.timeout is None
            and options.heartbeat_timeout is None
            and options.schedule_to_close is None
        )

    @property
    def schedule_deadline(self) -> datetime | None:
        """When the whole call must be over (schedule-to-close), if it is bounded."""
        if self.options.schedule_to_close is None or self.scheduled_at is None:
            return None
        return self.scheduled_at + timedelta(seconds=self.options.schedule_to_close)

    def expiry(self, now: datetime) -> Expiry | None:
        """The deadline that passed first by *now*, if any."""
        if self.unbounded:
            return None
        return first_expiry(
            self.options,
            scheduled_at=self.scheduled_at,
            started_at=self.started_at,
            last_beat_at=self.last_beat_at,
            now=now,
        )

    def next_deadline(self) -> datetime | None:
        """When the timer should look at this attempt next."""
        if self.unbounded:
            return None
        return next_deadline(
            self.options,
            scheduled_at=self.scheduled_at,
            started_at=self.started_at,
            last_beat_at=self.last_beat_at,
        )

    def note(self, now: datetime) -> ActivityHeartbeat:
        """Its last details as a note to record (marked as sent)."""
        self.recorded_at = now
        self.unrecorded = False
        return ActivityHeartbeat(
            at=now, seq=self.seq, attempt=self.attempt, details=self.details
        )


class Heartbeats:
    """The watches of running attempts and the last heartbeat details of pending calls.

    Args:
        clock: Where the time comes from.
        deliver: Puts an item into the decision loop's inbox (a note to record).
    """

    def __init__(self, clock: Clock, deliver: Callable[[Feed], None]) -> None:
        self._clock = clock
        self._deliver = deliver
        self._lock = threading.Lock()
        self._watches: dict[tuple[Key, int, int], Watch] = {}  # guarded by _lock
        self._details: dict[tuple[Key, int], JsonValue] = {}  # guarded by _lock

    def open(
        self,
        key: Key,
        seq: int,
        attempt: int,
        name: str,
        options: ActivityOptions,
        scheduled_at: datetime | None,
    ) -> Watch:
        """Watch attempt *attempt* of the call *seq*, starting now."""
        watch = Watch(key, seq, attempt, name, options, scheduled_at, self._clock.now())
        with self._lock:
            if attempt > 1:
                for earlier in range(1, attempt):  # timed out, kept for a retried timer
                    self._watches.pop((key, seq, earlier), None)
            self._watches[(key, seq, attempt)] = watch
        return watch

    def stoppable(self, watch: Watch, stop: Stop) -> None:
        """An ``async def`` attempt started: *stop* cancels it (at once if it timed out)."""
        with self._lock:
            watch.stop = stop
            late = watch.state == "timed_out"
        if late:
            stop()

    def details(self, key: Key, seq: int) -> JsonValue:
        """The last heartbeat details known for the call *seq* (``None`` if none)."""
        if not self._details:  # most engines: no activity ever beat (no lock needed)
            return None
        with self._lock:
            return self._details.get((key, seq))

    def beat(self, watch: Watch, encoded: JsonValue) -> None:
        """``fg.heartbeat(details)`` of *watch*'s attempt (on its activity thread).

        Args:
            watch: The attempt's watch.
            encoded: Its details, encoded (`flowgen._runtime.invoke.heartbeat` checked
                them).

        Raises:
            ActivityTimeout: The attempt already timed out; nobody waits for it.
        """
        now = self._clock.now()
        with self._lock:
            expiry = watch.expiry(now) if watch.state == "running" else None
            expiry = expiry or watch.expired
            if expiry is not None:
                raise ActivityTimeout(expiry.message(watch.name, watch.attempt))
            watch.last_beat_at = now
            watch.details = encoded
            watch.unrecorded = True
            self._details[(watch.key, watch.seq)] = encoded
            throttle = timedelta(seconds=throttle_seconds(watch.options))
            note = None
            if watch.recorded_at is None or now - watch.recorded_at >= throttle:
                note = watch.note(now)
        if watch.on_beat is not None:
            watch.on_beat(now, encoded)
        if note is not None and watch.kept is not None:
            watch.kept.append(note)
        elif note is not None:
            self._deliver(Feed(watch.key[0], watch.key[1], note))

    def finish(self, watch: Watch) -> tuple[Expiry | None, bool]:
        """The attempt's thread reports: did it time out, and had that been noticed?

        Returns:
            ``(expiry, noticed)``: *expiry* is the deadline that passed before the report
            (``None`` if it came in time); *noticed* is true when the timer already
            failed the attempt (its outcome is recorded: the report only adds a note).
        """
        now = self._clock.now()
        with self._lock:
            if watch.state == "timed_out":
                # Left for the timer's retry, should the batch that recorded the timeout
                # fail to commit; the next attempt, or the call's end, drops it.
                return None, True
            self._watches.pop((watch.key, watch.seq, watch.attempt), None)
            expiry = watch.expiry(now)
            watch.state = "finished" if expiry is None else "timed_out"
            watch.expired = expiry
            return expiry, False

    def due(
        self, key: Key, seq: int, attempt: int
    ) -> tuple[Expiry | datetime, Watch] | None:
        """The timer armed for attempt *attempt* of *seq* came due: what it means now.

        Returns:
            ``(expiry, watch)`` when the attempt timed out (it is claimed: its report
            will be ignored), ``(when, watch)`` when a heartbeat moved its deadline to
            *when* (arm the timer again), ``None`` when it already reported or is not
            watched here.
        """
        now = self._clock.now()
        with self._lock:
            watch = self._watches.get((key, seq, attempt))
            if watch is None:
                return None
            if watch.expired is not None:
                # Claimed already, by a batch whose commit failed: the loop retries the
                # timer, and the timeout must be decided again. (A committed timeout moved
                # the attempt on: the loop drops the timer before asking.)
                return (watch.expired, watch)
            expiry = watch.expiry(now)
            if expiry is None:
                again = watch.next_deadline()
                return None if again is None else (again, watch)
            # Kept until its thread reports (`finish`), so a retried timer finds it.
            watch.state, watch.expired = "timed_out", expiry
            return (expiry, watch)

    def flush(self, watch: Watch, now: datetime) -> ActivityHeartbeat | None:
        """The details of a timed-out attempt not recorded yet, as a note (else ``None``)."""
        with self._lock:
            return watch.note(now) if watch.unrecorded else None

    def settled(self, key: Key, seq: int, event: Event | None) -> None:
        """Forget the details of a call once *event* ends it for good."""
        if isinstance(event, (ActivityCompleted, ActivityFailed)):
            with self._lock:
                self._details.pop((key, seq), None)
                self._watches.pop((key, seq, event.attempt), None)

    def recovered(self, key: Key, history: Sequence[Event], pending: set[int]) -> None:
        """Take the last recorded details of the *pending* calls of a recovered run."""
        last: dict[int, JsonValue] = {}
        for event in history:
            if isinstance(event, ActivityHeartbeat) and event.seq in pending:
                last[event.seq] = event.details
        with self._lock:
            for seq, details in last.items():
                self._details[(key, seq)] = details


def ignored_note(
    watch: Watch, outcome: Event, now: datetime, expiry: Expiry | None
) -> ActivityResultIgnored:
    """The note recording that *watch*'s attempt reported *outcome* after timing out."""
    why = (
        expiry.message(watch.name, watch.attempt)
        if expiry is not None
        else f"attempt {watch.attempt} had already timed out"
    )
    return ActivityResultIgnored(
        at=now,
        seq=watch.seq,
        attempt=watch.attempt,
        outcome=EVENT_TAGS[type(outcome)],
        reason=f"reported after its timeout: {why}",
    )
