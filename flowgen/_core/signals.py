"""The signals one run has received and the waits for them.

The interpreter owns one `SignalMailbox`; the mailbox owns which signal goes to which
``wait_signal`` and which wait for a signal. It decides and records nothing.

Rules
=====

* **Signals are counted.** Each ``signal_received`` carries its index among the run's
  signals; it must be the next one (a missing, duplicated or moved signal is
  `HistoryCorruptError`).
* **Oldest wait first.** A signal goes to the oldest wait for its name; with none, it is
  buffered.
* **Buffered signals are kept in order**, per name, and the next wait of that name takes
  the oldest at once.
"""

from __future__ import annotations

from collections import deque

from flowgen._vocabulary.errors import HistoryCorruptError
from flowgen._vocabulary.events import SignalReceived

__all__ = ["SignalMailbox"]


class SignalMailbox:
    """The signals one run received and has not delivered, and the waits by signal name."""

    def __init__(self) -> None:
        self.buffered: dict[str, deque[SignalReceived]] = {}
        self.waits: dict[str, list[int]] = {}
        self.seen = 0

    def receive(self, event: SignalReceived) -> int | None:
        """Count *event* in; the seq of the wait it goes to, or ``None`` (buffered).

        Raises:
            HistoryCorruptError: The signal's index is not the next one.
        """
        if event.index != self.seen:
            raise HistoryCorruptError(
                f"signal_received {event.name!r} has index {event.index}, "
                f"expected {self.seen} (a signal is missing, duplicated or moved)"
            )
        self.seen += 1
        waiting = self.waits.get(event.name)
        if waiting:
            return waiting[0]
        self.buffered.setdefault(event.name, deque()).append(event)
        return None

    def wait(self, name: str, seq: int) -> None:
        """The command at *seq* waits for signal *name*."""
        self.waits.setdefault(name, []).append(seq)

    def stop_waiting(self, name: str, seq: int) -> None:
        """The wait at *seq* is resolved or cancelled."""
        self.waits[name].remove(seq)

    def take(self, name: str) -> SignalReceived | None:
        """The oldest buffered signal *name*, taken out, or ``None``."""
        buffered = self.buffered.get(name)
        return buffered.popleft() if buffered else None
