"""Jobs: where work off the decision loop runs (activity attempts, retried news).

Rules:

- Driven by hand (no `with` block), no thread is started: jobs wait in a list that
  `Engine.run_until_idle` drains on the caller's thread.
- Once the engine runs in the background, jobs go to a pool of activity threads
  (`flowgen._runtime.workers`); the jobs that waited in the list move there at once.
- The list and the pool are touched by the decision loop (submitting after a commit), by
  callers (draining, starting, stopping) and by activity threads: both are guarded by
  `Jobs._lock`. A job itself always runs outside the lock.
- ``async def`` activities run on `Jobs.activity_loop` when the engine was given one (an
  application's running event loop, `flowgen.aio`): the job's thread hands the coroutine to
  that loop and waits for it, so the activity may use the loop's resources. Without one,
  each attempt runs its coroutine on a fresh loop of its own.
- A job may return a follow-up, run on its thread once the job is done (in the pool, once
  the thread counts as idle: `flowgen._runtime.workers`); by hand, right after it.
- A job reports its own failures as data (an activity's failure is an event). Anything a
  job raises on a background thread is a bug: it is handed to ``on_failure`` (the engine
  stops loudly), never left in a future nobody reads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from flowgen._runtime.workers import Job, Workers

__all__ = ["Jobs"]


class Jobs:
    """A pool of activity threads in the background, a list drained by hand otherwise.

    Args:
        max_workers: The pool's threads.
        on_failure: Called with what a job raised on a background thread (a job reports
            its own failures as data: anything it raises is a bug, never swallowed).
        activity_loop: The running event loop ``async def`` activities run on, or
            ``None`` for a fresh loop per attempt.
    """

    def __init__(
        self,
        max_workers: int,
        on_failure: Callable[[BaseException], None],
        *,
        activity_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.activity_loop = activity_loop
        """Where ``async def`` activities run (set once, at construction; read by any
        thread)."""
        self._max_workers = max_workers
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._pool: Workers | None = None  # guarded by _lock
        self._waiting: list[Job] = []  # guarded by _lock

    @property
    def background(self) -> bool:
        """True while jobs run on the pool."""
        return self._pool is not None

    def start(self) -> None:
        """Run jobs on a pool from now on, starting with those that waited."""
        with self._lock:
            self._pool = Workers(
                self._max_workers, "flowgen-activity", self._on_failure
            )
            waiting, self._waiting = self._waiting, []
            for job in waiting:
                self._pool.submit(job)

    def stop(self) -> None:
        """Stop taking jobs; those not started yet are dropped (they resume on reopen)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def submit(self, job: Job) -> bool:
        """Run *job* on the pool, or keep it for `run_waiting`; True if it went to the pool."""
        with self._lock:
            if self._pool is None:
                self._waiting.append(job)
                return False
            self._pool.submit(job)  # what it raises goes to on_failure
            return True

    def quiet(self) -> bool:
        """True in the background when no other job runs or waits (`Workers.quiet`)."""
        pool = self._pool
        return pool is not None and pool.quiet()

    def later(self, job: Callable[[], None], delay: float) -> None:
        """Run *job* after *delay* seconds in the background, or at the next drain by hand."""
        with self._lock:
            if self._pool is None:
                self._waiting.append(job)
                return
        threading.Timer(delay, self._guarded, (job,)).start()

    def _guarded(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001  # a pool would keep it to itself
            self._on_failure(exc)

    def run_waiting(self) -> bool:
        """Run the jobs kept while driven by hand, on this thread; True if there were any."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for job in waiting:
            then = job()
            if then is not None:
                then()
        return bool(waiting)
