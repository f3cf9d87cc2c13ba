"""The gate between an activity attempt being due and it running: task queues and limits.

Every attempt the engine would start (the first after its ``activity_scheduled`` is
committed, a retry come due, one resumed by recovery) passes `Gate.admit`. It runs at once
unless one of three things holds it back:

1. **Its task queue is not served here.** ``@fg.activity(task_queue="gpu")`` runs only on an
   engine given ``task_queues=[..., "gpu"]`` (an activity naming no queue is on
   ``"default"``, which an engine serves unless its list leaves it out). Elsewhere it waits,
   for as long as this engine runs: on a DuckDB file, until the application reopens it
   with an engine that serves the queue; on a shared store, the fleet's claiming routes it
   to an engine that does.
2. **``max_concurrent=N``**: N attempts of the activity run already. A permit of the pool
   ``running:<activity>`` is held from the start of an attempt to its end (the end of the
   function, also when a plain function runs past its timeout: its thread still runs).
3. **``rate_limit=RateLimit(count, per)``**: ``count`` attempts started in the last ``per``
   seconds. A permit of the pool ``started:<activity>`` is held from an attempt's start for
   ``per`` seconds of the engine's clock (so a `ManualClock` drives it in tests), which
   is exactly "at most ``count`` starts in any window of ``per`` seconds".

Rules:

- **Waiting records nothing.** A held attempt is a pending activity call, as it was before
  the gate existed: its history is unchanged (no event, no attempt counted), so replay and
  determinism are untouched. A restart forgets the waiting line and recovery re-admits
  every pending call, in the order of recovery (nothing is lost; the order among waiters
  is not kept across a restart). ``Engine.waiting_activities()`` (and ``flowgen show`` /
  ``ls`` through the control socket) says what waits and on what.
- **In order, per activity.** Attempts of one activity wait in line and start first come,
  first served; a waiting line never blocks another activity.
- **Permits are counted per store** (`flowgen._stores.permits`): in memory for a store one
  process writes (a DuckDB file, memory), in the database for one engines share
  (PostgreSQL), so a fleet shares each limit. Each engine's own code gives the limit.
- **Who wakes the line.** An attempt that ends gives its ``running`` permit back (on its
  activity thread) and asks the decision loop to look at the line again; a rate permit's
  window ending is a timer of the engine's clock. A shared store is also polled every
  `POLL_SECONDS` of real time in the background, since nothing tells this engine when
  another one gives a permit back; driven by hand, at each ``run_until_idle`` (`poke`).
- **Threads.** `admit` and `wake` run on the decision loop's thread, with its lock held
  (attempts start in a batch's effects, in recovery, in a timer's item; `wake` is a `Call`
  item), as does `waiting` (callers reach it through a `Call`): that is where
  `still_wanted` may read the run's interpreter, so a call cancelled or resolved while it
  waited is dropped, never run. Activity threads read the lines when they give a permit
  back: `Gate._lock` guards them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Final, Literal

import attrs

from flowgen._runtime.cache import InterpreterCache
from flowgen._runtime.clock import Clock
from flowgen._runtime.items import Call, Item, Key
from flowgen._runtime.jobs import Jobs
from flowgen._runtime.runs import RunTable
from flowgen._runtime.timers import TimerHeap
from flowgen._stores.permits import Permit, Permits
from flowgen._vocabulary.commands import ActivityOptions
from flowgen._vocabulary.limits import DEFAULT_TASK_QUEUE

if TYPE_CHECKING:
    from flowgen._runtime.loop import DecisionLoop

__all__ = [
    "POLL_SECONDS",
    "Gate",
    "Ticket",
    "WaitingActivity",
    "WaitingFor",
    "nothing",
    "still_pending",
]

log = logging.getLogger("flowgen")

_UNSERVED_FLOOR: Final = 64

POLL_SECONDS: Final = 0.5
"""How often attempts waiting for a permit of a shared store (PostgreSQL) look again."""

WaitingFor = Literal["task_queue", "max_concurrent", "rate_limit"]


@attrs.frozen
class WaitingActivity:
    """An activity attempt the engine holds back (see ``Engine.waiting_activities``).

    Nothing about it is recorded: the call is pending in its run's history, as any call
    whose attempt has not reported yet.

    Attributes:
        workflow_id: The calling run's workflow id.
        run_id: The calling run's id.
        seq: The call's sequence number in the run.
        activity: The activity's registered name.
        attempt: The attempt that waits, from 1.
        waiting_for: ``"task_queue"`` (no engine here serves its queue),
            ``"max_concurrent"`` or ``"rate_limit"`` (its limit is reached).
        on: What it waits on, in short: ``"task queue 'gpu'"``,
            ``"max_concurrent=4"``, ``"rate limit 10/1s"``.
        detail: The same in words, e.g. ``"task queue 'gpu', which this engine does not
            serve (it serves 'default')"``.
        since: When it began to wait (the engine's clock).
    """

    workflow_id: str
    run_id: str
    seq: int
    activity: str
    attempt: int
    waiting_for: WaitingFor
    on: str
    detail: str
    since: datetime


@attrs.define(eq=False)
class Ticket:
    """An attempt at the gate.

    Attributes:
        key: Its run.
        seq: Its call's sequence number.
        attempt: Its number.
        name: The activity's registered name.
        options: The activity's options (its queue and limits).
        start: Starts the attempt; it is given what to call once the attempt has ended.
        since: When it reached the gate.
        waiting_for: What holds it back, once it waits.
        wanted: Whether the attempt is still wanted, for an attempt whose run this
            engine does not hold (a fleet's claimed attempt: the run's table and
            interpreter are another engine's); ``None`` asks the run here.
    """

    key: Key
    seq: int
    attempt: int
    name: str
    options: ActivityOptions
    start: Callable[[Callable[[], None]], None]
    since: datetime
    waiting_for: WaitingFor | None = None
    wanted: Callable[[], bool] | None = None


def nothing() -> None:
    """What releases an attempt that holds no permit."""


class Gate:
    """Holds activity attempts back until their queue is served and permits are free.

    Args:
        permits: Where permits are counted (the store's, see `flowgen._stores.permits`).
        clock: The engine's clock (rate windows are measured on it).
        timers: Where the wake-ups of rate windows are armed.
        jobs: Where activities run (whether the engine runs in the background).
        deliver: Puts an item into the decision loop's inbox.
        task_queues: The queues this engine serves.
        still_wanted: Whether a waiting ticket's call still awaits that attempt (read on
            the decision loop's thread, with its lock held).
    """

    @classmethod
    def of_loop(
        cls, loop: DecisionLoop, permits: Permits, task_queues: frozenset[str]
    ) -> Gate:
        """The gate of a decision loop: its clock, timers, jobs, inbox and runs."""
        return cls(
            permits,
            loop.clock,
            loop.timers,
            loop.jobs,
            loop.inbox.put,
            task_queues=task_queues,
            still_wanted=still_pending(loop.table, loop.cache),
        )

    def __init__(
        self,
        permits: Permits,
        clock: Clock,
        timers: TimerHeap,
        jobs: Jobs,
        deliver: Callable[[Item], None],
        *,
        task_queues: frozenset[str],
        still_wanted: Callable[[Ticket], bool],
    ) -> None:
        self.permits = permits
        self.task_queues = task_queues
        self._clock = clock
        self._timers = timers
        self._jobs = jobs
        self._deliver = deliver
        self._run_wants = still_wanted
        self._lock = threading.Lock()
        self._lines: dict[str, deque[Ticket]] = {}  # guarded by _lock
        self._unserved: list[Ticket] = []  # guarded by _lock
        self._unserved_kept = _UNSERVED_FLOOR  # guarded by _lock
        self._told: set[str] = set()  # queues whose waiting was logged; under _lock
        # Loop thread only: rate permits by when their window ends, and the earliest
        # wake-up armed (so a line of a thousand waiters arms one timer, not a thousand).
        self._windows: list[tuple[datetime, int, Permit]] = []
        self._counter = itertools.count()
        self._wake_at: datetime | None = None
        self._polling = False  # a poll of a shared store is under way

    # -- on the decision loop's thread --------------------------------------------------------

    def _still_wanted(self, ticket: Ticket) -> bool:
        return ticket.wanted() if ticket.wanted is not None else self._run_wants(ticket)

    def free(self, options: ActivityOptions) -> bool:
        """True if attempts of an activity with *options* start at once, never held.

        The hot path: most activities name no queue and no limit, and skip the gate.
        """
        return (
            options.max_concurrent is None
            and options.rate_limit is None
            and (options.task_queue or DEFAULT_TASK_QUEUE) in self.task_queues
        )

    def admit(self, ticket: Ticket) -> None:
        """Start *ticket*'s attempt now, or hold it in its line (see the module docstring)."""
        options = ticket.options
        if (options.task_queue or DEFAULT_TASK_QUEUE) not in self.task_queues:
            self._hold_unserved(ticket)
            return
        if options.max_concurrent is None and options.rate_limit is None:
            ticket.start(nothing)
            return
        # In line before trying: an attempt that ends meanwhile sees a waiter and wakes
        # the line, so no give-back can slip between a failed take and the wait.
        with self._lock:
            line = self._lines.setdefault(ticket.name, deque())
            line.append(ticket)
            first = len(line) == 1
        if first:  # else others wait first: first come, first served
            self._wake_line(ticket.name)

    def poke(self) -> None:
        """Have the decision loop look at the waiting lines again (any thread)."""
        with self._lock:
            waiting = any(self._lines.values())
        if waiting:
            self._deliver(Call(fn=self.wake))

    def wake(self) -> None:
        """Look at every waiting line again: start what may start now, in order."""
        now = self._clock.now()
        if self._wake_at is not None and self._wake_at <= now:
            self._wake_at = None
        self._end_windows(now)
        if self.permits.shared and self._windows:  # others may wait: on time, again
            self._wake_later(self._windows[0][0])
        with self._lock:
            names = [name for name, line in self._lines.items() if line]
        for name in names:
            self._wake_line(name)

    def _wake_line(self, name: str) -> None:
        while True:
            with self._lock:
                line = self._lines.get(name)
                if not line:
                    self._lines.pop(name, None)
                    return
                ticket = line[0]
            if self._still_wanted(ticket) and not self._try_start(ticket):
                return
            with self._lock:
                line.popleft()

    def _try_start(self, ticket: Ticket) -> bool:
        """Take the ticket's permits and start it; False (holding none) if one is taken."""
        options = ticket.options
        running: Permit | None = None
        if options.max_concurrent is not None:
            running = self.permits.take(
                f"running:{ticket.name}", options.max_concurrent
            )
            if running is None:
                ticket.waiting_for = "max_concurrent"
                self._poll()
                return False
        if options.rate_limit is not None:
            now = self._clock.now()
            self._end_windows(now)
            pool = f"started:{ticket.name}"
            started = self.permits.take(pool, options.rate_limit.count)
            if started is None:
                if running is not None:
                    self.permits.give_back(running)
                ticket.waiting_for = "rate_limit"
                ends = [end for end, _, permit in self._windows if permit.pool == pool]
                if ends:  # one of ours comes back then
                    self._wake_later(min(ends))
                self._poll()
                return False
            window_end = now + timedelta(seconds=options.rate_limit.per)
            heapq.heappush(self._windows, (window_end, next(self._counter), started))
            if self.permits.shared:  # others wait for it: give it back on time
                self._wake_later(window_end)
        ticket.waiting_for = None
        ticket.start(self._releaser(ticket.name, running))
        return True

    def _end_windows(self, now: datetime) -> None:
        while self._windows and self._windows[0][0] <= now:
            self.permits.give_back(heapq.heappop(self._windows)[2])

    def _poll(self) -> None:
        """Look again in `POLL_SECONDS` of real time, if others may give permits back.

        Only in the background: a hand-driven engine looks again when it is driven next
        (`poke`), so ``run_until_idle`` never spins on a permit another engine holds.
        """
        if not self.permits.shared or self._polling or not self._jobs.background:
            return
        self._polling = True
        self._jobs.later(partial(self._deliver, Call(fn=self._polled)), POLL_SECONDS)

    def _polled(self) -> None:
        self._polling = False
        self.wake()

    def _wake_later(self, when: datetime) -> None:
        if self._wake_at is not None and self._wake_at <= when:
            return
        self._wake_at = when
        self._timers.arm(when, Call(fn=self.wake))

    def _hold_unserved(self, ticket: Ticket) -> None:
        ticket.waiting_for = "task_queue"
        queue = ticket.options.task_queue or DEFAULT_TASK_QUEUE
        with self._lock:
            self._unserved.append(ticket)
            if len(self._unserved) > 2 * self._unserved_kept:
                # Calls cancelled or resolved meanwhile go (on the loop's thread, as
                # here), once the list has doubled: amortised, never a scan per attempt.
                self._unserved = [t for t in self._unserved if self._still_wanted(t)]
                self._unserved_kept = max(len(self._unserved), _UNSERVED_FLOOR)
            first = queue not in self._told
            self._told.add(queue)
        if first:
            log.info(
                "flowgen: activities of task queue %r wait: this engine serves %s "
                "(Engine(task_queues=[...]), flowgen worker --queue)",
                queue,
                _names(self.task_queues),
            )

    # -- on an activity's thread --------------------------------------------------------------

    def _releaser(self, name: str, running: Permit | None) -> Callable[[], None]:
        if running is None:
            return nothing

        def release() -> None:
            self.permits.give_back(running)
            with self._lock:
                waiting = bool(self._lines.get(name))
            if waiting:
                self._deliver(Call(fn=self.wake))

        return release

    # -- on the decision loop's thread (through a Call item, for callers) ---------------------

    def waiting(self) -> list[WaitingActivity]:
        """What waits, oldest first; calls no longer wanted are dropped first."""
        with self._lock:
            self._unserved = [t for t in self._unserved if self._still_wanted(t)]
            for line in self._lines.values():
                wanted = [t for t in line if self._still_wanted(t)]
                line.clear()
                line.extend(wanted)
            tickets = [
                (t, t.waiting_for or line[0].waiting_for or "max_concurrent")
                for line in self._lines.values()
                for t in line
            ]
            tickets += [(t, "task_queue") for t in self._unserved]
        return sorted(
            (self._describe(t, why) for t, why in tickets),
            key=lambda w: (w.since, w.seq),
        )

    def _describe(self, ticket: Ticket, waiting_for: WaitingFor) -> WaitingActivity:
        options = ticket.options
        if waiting_for == "task_queue":
            on = f"task queue {options.task_queue or DEFAULT_TASK_QUEUE!r}"
            detail = (
                f"{on}, which this engine does not serve (it serves "
                f"{_names(self.task_queues)})"
            )
        elif waiting_for == "rate_limit":
            on = f"rate limit {options.rate_limit}"
            detail = f"{on} (at most that many starts per window)"
        else:
            on = f"max_concurrent={options.max_concurrent}"
            detail = f"{on} (that many attempts of it run already)"
        workflow_id, run_id = ticket.key
        return WaitingActivity(
            workflow_id,
            run_id,
            ticket.seq,
            ticket.name,
            ticket.attempt,
            waiting_for,
            on,
            detail,
            ticket.since,
        )


def still_pending(table: RunTable, cache: InterpreterCache) -> Callable[[Ticket], bool]:
    """Whether a ticket's call still awaits that very attempt (on the loop's thread).

    False once its run has ended or is stuck, or the call was cancelled or resolved, or
    another attempt reported meanwhile.
    """

    def wanted(ticket: Ticket) -> bool:
        run = table.runs.get(ticket.key)
        if run is None or not run.is_running or run.stuck is not None:
            return False
        try:
            interp = cache.get(run)
        except Exception:  # noqa: BLE001  # stuck: the loop says why at its next event
            return False
        return (
            interp.is_pending(ticket.seq)
            and interp.attempts(ticket.seq)[0] == ticket.attempt - 1
        )

    return wanted


def _names(queues: frozenset[str]) -> str:
    return ", ".join(repr(q) for q in sorted(queues))
