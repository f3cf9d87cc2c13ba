"""Timers: the heap of what comes due when, and the timer thread that delivers it.

Rules:

- A timer is a `Due` item armed for a moment: a workflow's timer, a signal wait's deadline,
  an activity retry, an activity attempt's timeout; or a `Call` (the activity gate's
  wake-up when a rate window ends, `flowgen._runtime.limits`). When its moment comes it is put into the
  decision loop's inbox, and the loop decides what it means *then* (the command may have
  been resolved or cancelled meanwhile: a late timer is dropped there, by `apply_due`).
- Timers are armed only after the batch that decided them is committed, so a timer never
  fires for something not durable. They are not stored: recovery re-arms them from the
  recorded due times.
- The heap is shared by the decision loop (arming), the timer thread (firing), activity
  threads (arming timeouts) and callers waiting for results (peeking at the next due time):
  every access holds `TimerHeap._lock`. `wakeup` is set whenever the heap changes or the
  engine stops, so the timer thread never sleeps past a new, earlier timer.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from flowgen._runtime.clock import Clock
from flowgen._runtime.items import STUCK_ERRORS, Call, Due, Txn
from flowgen._vocabulary.commands import CallActivity
from flowgen._vocabulary.events import ActivityScheduled, SignalTimedOut, TimerFired

if TYPE_CHECKING:  # the loop is handed in; this module only names its type
    from flowgen._runtime.loop import DecisionLoop

__all__ = ["TimerHeap", "apply_due"]

_IDLE_WAIT_SECONDS = 0.5
"""How long the timer thread sleeps with no timer armed before it looks again."""


class TimerHeap:
    """Due items by due time; `run` is the timer thread's body.

    Args:
        clock: Where the time comes from (a `ManualClock` moves only when told).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # Guarded by _lock: (due, tie-breaker, item); the counter keeps equal due times in
        # the order they were armed.
        self._heap: list[tuple[datetime, int, Due | Call]] = []
        self._counter = itertools.count()
        self.wakeup = threading.Event()
        """Set when the heap changed or the engine stops: the timer thread looks again."""

    def arm(self, due: datetime, item: Due | Call) -> None:
        """Deliver *item* once the clock reaches *due*."""
        with self._lock:
            heapq.heappush(self._heap, (due, next(self._counter), item))
        self.wakeup.set()

    def disarm(self, item: Due) -> None:
        """Take *item* off the heap, if it is still armed.

        A linear scan: for hand-driven engines, whose heaps are small.
        """
        with self._lock:
            kept = [entry for entry in self._heap if entry[2] != item]
            if len(kept) != len(self._heap):
                heapq.heapify(kept)
                self._heap = kept

    def next_due(self) -> datetime | None:
        """When the earliest armed timer is due, or ``None`` if none is armed."""
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def pop_due(self) -> list[Due | Call]:
        """Take every item that is due now, in due order."""
        now = self._clock.now()
        due: list[Due | Call] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                due.append(heapq.heappop(self._heap)[2])
        return due

    def run(
        self, running: Callable[[], bool], deliver: Callable[[Due | Call], None]
    ) -> None:
        """The timer thread: deliver due items until *running* turns false."""
        while running():
            self.wakeup.clear()
            for item in self.pop_due():
                deliver(item)
            next_due = self.next_due()
            if next_due is None:
                self.wakeup.wait(_IDLE_WAIT_SECONDS)
            else:
                self._clock.sleep_until(next_due, self.wakeup)


def apply_due(loop: DecisionLoop, item: Due, txn: Txn) -> None:
    """A timer came due: act on it if what it was armed for still waits."""
    run = loop.table.runs.get(item.key)
    if run is None or not run.is_running or run.stuck is not None:
        return
    try:
        interp = loop.cache.get(run)
    except STUCK_ERRORS as exc:
        loop.stick(run, exc)
        return
    if not interp.is_pending(item.seq):
        return
    now = loop.clock.now()
    match item.kind:
        case "timer":
            loop.feed_run(run, TimerFired(at=now, seq=item.seq), txn, interp)
        case "signal_timeout":
            loop.feed_run(run, SignalTimedOut(at=now, seq=item.seq), txn, interp=interp)
        case "retry" | "activity_timeout":
            command = interp.pending[item.seq]
            # A retry or a timeout armed for another attempt than the current one is
            # stale: that attempt already reported.
            if not isinstance(command, CallActivity) or (
                interp.attempts(item.seq)[0] != item.attempt - 1
            ):
                return
            if item.kind == "activity_timeout":
                timed_out = loop.attempts.timed_out(
                    item.key, command, item.seq, item.attempt
                )
                for event in timed_out:
                    loop.feed_run(run, event, txn, interp)
                return
            scheduled = interp.scheduled_event(item.seq)
            if isinstance(scheduled, ActivityScheduled):
                loop.attempts.start(item.key, scheduled, command, item.attempt)
