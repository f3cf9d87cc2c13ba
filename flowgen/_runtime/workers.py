"""`Workers`: the activity threads behind `flowgen._runtime.jobs`, one queue for all.

Rules:

- A job is one ``put`` on a `queue.SimpleQueue` (C code). A thread is started only when
  none is idle and fewer than *max_workers* exist; threads then live until `stop`. This is
  what `concurrent.futures.ThreadPoolExecutor` does, less its per-job `Future`, work item
  and the Python-level semaphore it takes and releases around every job: 15-20 us of CPU
  per job of a chatty workflow, where a trivial activity costs about as much.
- The idle count is a plain integer under a lock (a C lock): `submit` takes one idle
  thread's place, a thread gives it back when its job is done.
- `stop` drops the jobs not started yet (they resume when the database is reopened, as
  they would after a crash) and lets every thread end once its job is done; it does not
  wait for them. The threads are daemons: an engine never closed does not hold up the
  interpreter's exit (an attempt cut short there runs again on reopen).
- A job may return a follow-up (`Job` returns `Then`), run on the same thread once the
  thread is counted idle: an attempt's outcome goes to the decision loop there, which may
  act on it on this thread at once (`DecisionLoop.hand_in`), and the next attempt it
  submits is then taken by this very thread from the queue, with no thread woken.
- A job reports its own failures; anything it or its follow-up raises goes to
  *on_failure*.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["Job", "Then", "Workers"]

Then = Callable[[], None] | None
"""What a job leaves to run after its thread is counted idle, if anything."""
Job = Callable[[], Then]
"""Work for a pool thread."""

_STOP: Final = None  # what a thread takes as "end now"


class Workers:
    """A pool of threads that run jobs from one queue.

    Args:
        max_workers: The most threads it starts.
        name: The threads' name prefix (``name_0``, ``name_1``, ...).
        on_failure: Called with what a job raised.
    """

    def __init__(
        self,
        max_workers: int,
        name: str,
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self._max_workers = max_workers
        self._name = name
        self._on_failure = on_failure
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # guarded by _lock
        self._idle = 0  # threads waiting for a job, guarded by _lock
        self._stopped = False  # guarded by _lock

    def submit(self, job: Job) -> None:
        """Run *job* on an idle thread, a new one, or the next one free."""
        with self._lock:
            if self._stopped:
                return  # dropped, as stop drops the queued jobs
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self._max_workers
                index = self._threads
                self._threads += start
            self._queue.put(job)
        if start:
            name = f"{self._name}_{index}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def quiet(self) -> bool:
        """True if no job waits and every thread is idle (or running a follow-up).

        Asked by a job's follow-up: its own thread already counts as idle then, so true
        means no other job runs, whose outcome could join this one's.
        """
        with self._lock:
            return self._idle == self._threads and self._queue.empty()

    def stop(self) -> None:
        """Drop the jobs not started; every thread ends after the job it runs."""
        with self._lock:
            self._stopped = True
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            for _ in range(self._threads):
                self._queue.put(_STOP)

    def _work(self) -> None:
        take = self._queue.get
        while (job := take()) is not _STOP:
            then: Then = None
            try:
                then = job()
            except BaseException as exc:  # noqa: BLE001  # reported, never kept
                self._on_failure(exc)
            del job  # not kept alive while this thread waits
            with self._lock:
                self._idle += 1
            if then is None:
                continue
            try:
                then()
            except BaseException as exc:  # noqa: BLE001  # reported, never kept
                self._on_failure(exc)
            del then
