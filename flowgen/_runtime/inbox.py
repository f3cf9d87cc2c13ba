"""The inbox: the one queue through which everything reaches the decision loop.

Rules:

- Any thread puts items (callers, activity threads, the timer thread); only the decision
  loop takes them, up to a batch at a time (a hand-driven engine's caller takes them on the
  loop's behalf, under the loop's lock). The queue is thread-safe: no other lock is needed.
- `Inbox.stop` puts a stop marker: the loop thread ends when it takes it. A batch never
  swallows the marker: taking it ends the batch, and the marker stays for the loop.
- After the loop has stopped, `Inbox.drain` takes what is left, so its callers can be
  answered rather than left waiting.
- `Inbox.wake` wakes the loop thread with nothing to do (an empty `take`): someone else
  committed on the loop's behalf (`flowgen._runtime.loop_thread`) while it slept.
"""

from __future__ import annotations

import enum
import queue

from flowgen._runtime.items import Item

__all__ = ["Inbox"]


class _Marker(enum.Enum):
    STOP = "stop"  # the loop thread ends
    WAKE = "wake"  # the loop thread looks around (nothing to apply)


class Inbox:
    """Items for the decision loop, first in first out."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Item | _Marker] = queue.SimpleQueue()

    def put(self, item: Item) -> None:
        """Queue *item* for the loop (any thread)."""
        self._queue.put(item)

    def stop(self) -> None:
        """Tell the loop thread to end once it has taken what was queued before."""
        self._queue.put(_Marker.STOP)

    def empty(self) -> bool:
        """True if nothing waits (a marker counts as something)."""
        return self._queue.empty()

    def wake(self) -> None:
        """Make the loop thread's `take` return (empty) if it waits."""
        self._queue.put(_Marker.WAKE)

    def take(
        self, most: int, *, block: bool, timeout: float | None = None
    ) -> list[Item]:
        """Up to *most* items (waiting up to *timeout* for the first if *block*).

        Returns an empty list if nothing came, or if the first thing was a marker.
        """
        items: list[Item] = []
        try:
            first = self._queue.get(block=block, timeout=timeout)
        except queue.Empty:
            return items
        if isinstance(first, _Marker):
            return items
        items.append(first)
        # Only the loop takes, so what `empty` says stays true until it takes again (and
        # no Empty exception is raised once per batch).
        while len(items) < most and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _Marker.WAKE:
                continue
            if item is _Marker.STOP:
                self._queue.put(item)  # keep the stop marker for the loop
                break
            items.append(item)
        return items

    def drain(self) -> list[Item]:
        """Every item left, stop markers skipped (once the loop has stopped)."""
        items: list[Item] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return items
            if not isinstance(item, _Marker):
                items.append(item)
