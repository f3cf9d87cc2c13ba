"""Learning that a run another engine of a fleet held has closed, for waiting callers.

`flowgen._runtime.results` waits for a run this engine holds on the decision loop's
``closed`` condition. A run held elsewhere in a fleet (or by nobody yet: a run started for
the workers) closes in another process; without this module its caller would read the
store every poll. With it, every engine keeps one listening connection
(`flowgen._stores.protocol.TellsClosings`) shared by all its waiting callers.

Rules:

- **Listen before looking.** A caller registers the workflow id it waits for (`watch`,
  with what wakes it: a thread's event, an event loop's callback) before it reads the store, and `watch` returns only once the listener listens (or failed
  to: see below), so a run that closes between the read and the wait is still heard of.
- **One thread, one connection**, started by the first caller that waits (an engine whose
  callers never wait for runs held elsewhere opens none), ending when the engine stops
  running; the next caller starts it again.
- **What is heard wakes its callers**: a notification names the workflow ids that closed;
  the callers watching them look again. One that names none (``null``: an id too long to
  tell) wakes every caller.
- **Polling is the slow fallback**: a caller looks again every `FleetOptions.poll` seconds
  whatever it heard, so a lost notification (the listening connection dropped, the server
  restarted) costs at most that. When the connection is lost the listener listens again
  and wakes every caller (what closed meanwhile was not heard).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from flowgen._stores.protocol import Store, TellsClosings
from flowgen._vocabulary.errors import StoreError

__all__ = ["ClosingsWatch", "watch_closings"]

log = logging.getLogger("flowgen")

_LISTEN_WAIT_SECONDS = 5.0
"""How long a caller waits for the listener to listen before it just polls."""


def watch_closings(
    store: Store, poll: float | None, running: Callable[[], bool]
) -> ClosingsWatch | None:
    """A watch over *store*'s closed runs, or ``None`` for a store that tells none.

    Args:
        store: The engine's store.
        poll: The fleet's poll (`FleetOptions.poll`), ``None`` outside a fleet.
        running: True while the engine runs its background threads.
    """
    if poll is None or not isinstance(store, TellsClosings):
        return None
    return ClosingsWatch(store, poll, running)


class ClosingsWatch:
    """One engine's listener for runs closed anywhere in its fleet (see the module's rules).

    Args:
        store: The store that tells closings.
        poll: Seconds a caller waits before it looks again whatever it heard.
        running: True while the engine runs (the listener stops when it turns False).
    """

    def __init__(
        self, store: TellsClosings, poll: float, running: Callable[[], bool]
    ) -> None:
        self.poll = poll
        self._store = store
        self._running = running
        self._lock = threading.Lock()
        self._watchers: dict[str, list[Callable[[], None]]] = {}  # under _lock
        self._thread: threading.Thread | None = None  # under _lock
        self._listening = threading.Event()

    def watch(self, workflow_id: str, wake: Callable[[], None]) -> Callable[[], None]:
        """Call *wake* each time a run of *workflow_id* may have closed, until withdrawn.

        Returns once the listener listens (at most `_LISTEN_WAIT_SECONDS`): read the store
        after this, then wait to be woken. *wake* runs on the listener's thread, so it
        must be quick and must not block (``Event.set``, ``call_soon_threadsafe``).

        Returns:
            A function that withdraws *wake*.
        """
        with self._lock:
            self._watchers.setdefault(workflow_id, []).append(wake)
            if self._thread is None or not self._thread.is_alive():
                self._listening.clear()
                self._thread = threading.Thread(
                    target=self._listen, name="flowgen-closings", daemon=True
                )
                self._thread.start()
        self._listening.wait(_LISTEN_WAIT_SECONDS)

        def withdraw() -> None:
            with self._lock:
                watchers = self._watchers.get(workflow_id, [])
                if wake in watchers:
                    watchers.remove(wake)
                if not watchers:
                    self._watchers.pop(workflow_id, None)

        return withdraw

    def wake(self, workflow_ids: Iterable[str] | None) -> None:
        """Wake the callers of *workflow_ids* (every caller for ``None``)."""
        with self._lock:
            if workflow_ids is None:
                due = [w for watchers in self._watchers.values() for w in watchers]
            else:
                due = [w for i in workflow_ids for w in self._watchers.get(i, ())]
        for wake in due:
            try:
                wake()
            except Exception:  # a caller's bug must not stop the listener
                log.exception("flowgen: waking a caller waiting for a result failed")

    def _listen(self) -> None:
        """The listener thread: hear closings and wake their callers while the engine runs."""
        while self._running():
            try:
                self._store.listen_closings()
            except StoreError as exc:
                log.warning("flowgen: listening for closed runs failed: %s", exc)
                self._listening.set()  # callers poll meanwhile
                threading.Event().wait(self.poll)
                continue
            self._listening.set()
            self.wake(None)  # what closed while not listening was not heard
            try:
                while self._running():
                    self.wake(self._store.closings(self.poll))
            except StoreError as exc:
                if self._running():
                    log.warning("flowgen: listening for closed runs failed: %s", exc)
        self._listening.set()
