"""`PostgresPermits`: activity permits shared by every engine on one PostgreSQL database.

Each slot of a pool is a session-level advisory lock, keyed by two int4s: a hash of the
schema and the pool's name, and the slot's number. Taking a permit is one statement that
tries the slots in order and stops at the first it gets; giving it back unlocks it.

Rules:

- **No table, nothing to clean up.** PostgreSQL releases a session's advisory locks when
  its connection ends, however it ends (close, crash, ``kill -9``, a network cut), so the
  permits of a dead engine come back by themselves; the locks are visible in ``pg_locks``
  (``locktype = 'advisory'``, ``objid`` the slot).
- **One connection per holder**, held open while the permits are: a lock belongs to the
  session that took it. Advisory locks stack within a session (taking one twice succeeds
  twice), so the slots this holder took are remembered here and never tried again until
  given back: the statement skips them.
- **The keys.** ``hashtext('flowgen-permit:' || current_schema() || ':' || pool)`` and the
  slot. Two pools whose hashes collide share their slots: the limits are then stricter,
  never looser. flowgen's other advisory locks (the engine lock, the schema lock) use
  other keys (a constant first int4, or one bigint key: another key space).
- **A lost connection** frees every slot this holder had, on the server. The next `take`
  reconnects and starts afresh; until the attempts holding them end, the activity may run
  more than its limit allows (logged).
- Thread-safe: one lock guards the connection and the set of held slots.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import psycopg

from flowgen._stores.permits import Permit

__all__ = ["PostgresPermits"]

log = logging.getLogger("flowgen")

# The first free slot of a pool, taken: the CASE keeps the lock from being tried on a slot
# this session already holds (PostgreSQL may reorder the terms of an AND, never a CASE's),
# and LIMIT 1 stops at the first lock obtained.
_TAKE: Final = """
SELECT slot FROM generate_series(0, %(capacity)s - 1) AS slot
WHERE CASE WHEN slot = ANY(%(held)s::int[]) THEN false
      ELSE pg_try_advisory_lock(
          hashtext('flowgen-permit:' || current_schema() || ':' || %(pool)s), slot)
      END
LIMIT 1
"""
_GIVE_BACK: Final = """
SELECT pg_advisory_unlock(
    hashtext('flowgen-permit:' || current_schema() || ':' || %(pool)s), %(slot)s)
"""


class PostgresPermits:
    """Permits counted in a PostgreSQL database, shared by every engine on it.

    Args:
        url: The database's libpq URL.
        where: The database as messages name it (without its password).
    """

    shared = True

    def __init__(self, url: str, where: str) -> None:
        self._url = url
        self._where = where
        self._lock = threading.Lock()
        self._con: psycopg.Connection[tuple[Any, ...]] | None = None  # guarded by _lock
        self._held: dict[str, set[int]] = {}  # guarded by _lock
        self._closed = False

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._con is None or self._con.closed:
            if self._con is not None and self._held:
                log.warning(
                    "flowgen: the connection holding activity permits on %s was lost; "
                    "its permits were released by the server while their attempts run",
                    self._where,
                )
            self._held.clear()
            self._con = psycopg.connect(self._url, autocommit=True)
        return self._con

    def take(self, pool: str, capacity: int) -> Permit | None:
        """See `flowgen._stores.permits.Permits.take`; ``None`` also if the server is away."""
        with self._lock:
            if self._closed:
                return None
            try:
                con = self._connection()  # first: a new session holds nothing
                held = self._held.setdefault(pool, set())
                if len(held) >= capacity:
                    return None
                row = con.execute(
                    _TAKE, {"capacity": capacity, "held": sorted(held), "pool": pool}
                ).fetchone()
            except psycopg.Error as exc:
                log.warning(
                    "flowgen: taking an activity permit on %s failed (tried again "
                    "later): %s",
                    self._where,
                    exc,
                )
                self._drop_connection()
                return None
            if row is None:
                return None
            held.add(int(row[0]))
            return Permit(pool, int(row[0]))

    def give_back(self, permit: Permit) -> None:
        """See `flowgen._stores.permits.Permits.give_back`."""
        with self._lock:
            held = self._held.get(permit.pool)
            if held is None or permit.slot not in held:
                return
            held.discard(permit.slot)
            if self._con is None or self._con.closed:
                return  # the server released it with the session
            try:
                self._con.execute(
                    _GIVE_BACK, {"pool": permit.pool, "slot": permit.slot}
                )
            except psycopg.Error as exc:
                # The session is unusable: ending it releases every lock it held.
                log.warning(
                    "flowgen: giving back an activity permit on %s failed: %s",
                    self._where,
                    exc,
                )
                self._drop_connection()

    def taken(self, pool: str) -> int:
        """See `flowgen._stores.permits.Permits.taken`."""
        with self._lock:
            return len(self._held.get(pool, ()))

    def _drop_connection(self) -> None:
        if self._con is not None:
            self._con.close()
        self._held.clear()

    def close(self) -> None:
        """End the session: the server releases every permit it held. Idempotent."""
        with self._lock:
            self._closed = True
            self._drop_connection()
