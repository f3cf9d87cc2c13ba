"""Who runs the decision loop in the background: its own thread, or the thread news comes from.

Rules
=====

* The loop thread (`run_loop`) takes items from the inbox and processes a batch at a time
  under the loop's lock (`flowgen._runtime.loop`), until the engine stops.
* **Handing in** (`hand_in`). An activity thread whose attempt is done gives its outcome
  to the loop from its own thread. When nothing else is going on (the loop's inbox empty,
  its lock free, and no other attempt running or waiting for a thread) the thread
  processes the outcome itself, under the lock, as the loop thread would have: the loop
  thread is not woken, and the next attempt the commit submits is taken by this same
  thread (`flowgen._runtime.workers` counts it idle before it hands in). One step of a
  workflow then costs one thread sleep, the journal's sync, instead of three (waking the
  loop, waking an activity thread, the sync): about 30 us of CPU per step, measured with
  ``python -m benchmarks.chatty``. Otherwise the outcome is queued, in the order it came:
  other outcomes are on their way, and the loop thread commits them together (group
  commit: one sync for many steps). Handing in while other attempts run cost a
  concurrent engine a commit of its own per hand-in (measured, 16 workflows in flight:
  0.78 -> ~1.0 CPU ms per workflow).
* Nothing is handed in before the loop thread runs or after the engine stops
  (`stop_handing_in`, which waits for a batch being processed by hand-in to end): those
  outcomes go to the inbox, where a stopping engine leaves them (they run again on reopen,
  as after a crash).
* **The idle flush.** A store that defers writing its tables (`Flushes`: DuckDBStore's
  journal) is flushed once nothing was committed for ``_IDLE_FLUSH_SECONDS``, so SQL
  through any cursor soon sees an idle engine's work. The loop thread keeps that watch:
  asleep without a timeout, it is woken (`Inbox.wake`) by the first hand-in that commits,
  and it flushes only after a whole wait with no commit by anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowgen._runtime.items import Item
from flowgen._stores.protocol import Flushes

if TYPE_CHECKING:
    from flowgen._runtime.loop import DecisionLoop

__all__ = ["hand_in", "run_loop", "stop_handing_in"]

log = logging.getLogger("flowgen")

# How long the decision loop waits with nothing committed, before it asks the store to
# flush (long enough that a busy engine never does it between two steps).
_IDLE_FLUSH_SECONDS = 0.2


def run_loop(loop: DecisionLoop, running: Callable[[], bool]) -> None:
    """The loop thread: take items and process them until *running* turns false."""
    store = loop.store if isinstance(loop.store, Flushes) else None
    loop.running = running  # hand-ins may process from now on
    flushed = loop.commits
    while running():
        # `asleep` is set before `commits` is read, and a hand-in reads `asleep` after it
        # counted its commit: one of the two sees the other, so no commit goes unflushed.
        loop.asleep = store is not None
        seen = loop.commits
        dirty = store is not None and seen != flushed
        if dirty:
            loop.asleep = False
        items = loop.take(block=True, timeout=_IDLE_FLUSH_SECONDS if dirty else None)
        loop.asleep = False
        if not items:
            # Idle only if nobody committed during the whole wait (a hand-in may have).
            if store is not None and dirty and loop.commits == seen and running():
                flushed = seen
                try:
                    store.flush()
                except Exception:  # kept by the store; retried later
                    log.exception("flowgen: flushing the store failed")
            continue
        with loop.lock:
            try:
                loop.process(items)
            except Exception:  # pragma: no cover - a bug; keep the loop alive
                log.exception("flowgen: decision loop failed")


def hand_in(loop: DecisionLoop, items: list[Item]) -> None:
    """Give *items* (an attempt's reports) to the loop, from the thread that ran it."""
    running = loop.running
    if (
        running is None
        or not loop.inbox.empty()
        or not loop.jobs.quiet()
        or not loop.lock.acquire(False)
    ):
        for item in items:
            loop.inbox.put(item)
        return
    try:
        if loop.running is None or not running():  # stopped meanwhile
            for item in items:
                loop.inbox.put(item)
            return
        try:
            loop.process(items)
        except Exception:  # pragma: no cover - a bug; keep the engine going
            log.exception("flowgen: decision loop failed")
    finally:
        loop.lock.release()
    if loop.asleep:  # the loop thread waits with no timeout: let it watch for idleness
        loop.asleep = False
        loop.inbox.wake()


def stop_handing_in(loop: DecisionLoop, timeout: float) -> None:
    """From now on outcomes go to the inbox; waits for a hand-in under way to end.

    Waits at most *timeout* seconds (as long as for the loop thread to end): a batch stuck
    in the store must not hang the engine's close.
    """
    loop.running = None  # read again under the lock by a hand-in that took it
    if loop.lock.acquire(timeout=timeout):
        loop.lock.release()
