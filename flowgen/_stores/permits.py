"""Permits: the store-level seam that activity limits are counted through.

A *pool* is a name (``"running:<activity>"``, ``"started:<activity>"``) with a capacity; a
`Permit` is one of its slots, numbered ``0 .. capacity - 1``. Whoever holds a permit gives
it back when done with it. The runtime (`flowgen._runtime.limits`) turns an activity's
``max_concurrent`` and ``rate_limit`` into pools; this module only counts.

Rules:

- A pool is counted where the store is shared. A store of one process (`MemoryStore`, a
  DuckDB file, whose engine is its only writer) gets `LocalPermits`: a set of taken slots
  per pool, in memory, exact, at the cost of a dict lookup. A store that engines share
  declares `SharesPermits` and gives permits counted in the store
  (`flowgen._stores.postgres_permits`: one advisory lock per slot, released by PostgreSQL
  itself when an engine's connection ends, so a crashed engine's permits come back).
- ``take`` never waits: it returns a free slot or ``None``. Waiting (and in what order) is
  the runtime's business, which polls a shared pool (`Permits.shared`), since nothing
  tells this engine when another one gives a permit back.
- Capacities are the taker's: an engine whose code says 4 takes slots 0-3, one whose code
  says 2 takes slots 0-1, so together they never exceed the larger.
- Thread-safe: permits are taken on the decision loop and given back on activity threads.
"""

from __future__ import annotations

import threading  # noqa: TID251  # a lock, not a thread: permits are shared by threads
from typing import Protocol, runtime_checkable

import attrs

__all__ = ["LocalPermits", "Permit", "Permits", "SharesPermits"]


@attrs.frozen
class Permit:
    """Slot *slot* of pool *pool*, held until given back."""

    pool: str
    slot: int


class Permits(Protocol):
    """Counts taken slots of named pools (see the module docstring)."""

    @property
    def shared(self) -> bool:
        """True if others (other engines) take from the same pools: waiters must poll."""

    def take(self, pool: str, capacity: int) -> Permit | None:
        """A free slot of *pool* below *capacity*, now taken; ``None`` if all are taken."""

    def give_back(self, permit: Permit) -> None:
        """Free *permit*'s slot (giving back a slot not held is a no-op)."""

    def taken(self, pool: str) -> int:
        """How many slots of *pool* this holder has taken (for display and tests)."""


@runtime_checkable
class SharesPermits(Protocol):
    """A store whose engines share permits (PostgreSQL: a fleet on one database)."""

    def permits(self) -> Permits:
        """Permits counted in the store; closed with the store."""


class LocalPermits:
    """Permits of a store one process writes: counted in memory, exactly."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: dict[str, set[int]] = {}  # guarded by _lock

    def take(self, pool: str, capacity: int) -> Permit | None:
        """See `Permits.take`."""
        with self._lock:
            taken = self._taken.setdefault(pool, set())
            for slot in range(capacity):
                if slot not in taken:
                    taken.add(slot)
                    return Permit(pool, slot)
        return None

    def give_back(self, permit: Permit) -> None:
        """See `Permits.give_back`."""
        with self._lock:
            taken = self._taken.get(permit.pool)
            if taken is not None:
                taken.discard(permit.slot)
                if not taken:
                    del self._taken[permit.pool]

    def taken(self, pool: str) -> int:
        """See `Permits.taken`."""
        with self._lock:
            return len(self._taken.get(pool, ()))
