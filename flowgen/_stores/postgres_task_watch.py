"""`PostgresTaskWatch`: a posted attempt's start and heartbeats, kept in ``fleet_tasks``.

An activity attempt posted for any engine of a fleet (``fleet_tasks``, see
`flowgen._stores.postgres_leases`) runs on one engine while another holds its run. These
statements let the holder enforce the attempt's deadlines and keep its heartbeat details
beyond the engine running it (the runtime's rules: `flowgen._runtime.shared_attempts`).

Rules:

* **Only the engine that has the task writes its start and heartbeats**: every write is
  ``WHERE id = <task> AND taken_by = <this engine>``; a write that finds no row tells the
  caller the task is no longer its (its holder timed it out and deleted it, or its lease
  lapsed and another engine took it).
* **Starting** (`start`) sets ``started_at`` (the running engine's clock, like every time
  here: the holder compares them with its own, as engines of one fleet share a time
  source), clears ``beat_at`` (a dead engine's heartbeats do not keep a new start alive)
  and keeps ``details``; with *tell* it posts a ``started`` message (the task, the call's seq, the attempt, the activity's name, when) to the run's holder in
  the same statement, so the holder arms a timer. It returns the last heartbeat details
  known for the call: the task's own (an engine that ran it before died), else those of the
  call's last ``activity_heartbeat`` note in the run's history (an earlier attempt's). One
  statement, one round trip.
* **A heartbeat** (`beat`) sets ``beat_at`` and ``details``. The runtime throttles them.
* **The holder reads** the tasks of an attempt when a deadline comes due (`states`: the
  table holds only attempts in flight; the run id and attempt narrow it, the call's seq is
  read from the stored event), and **claims** a timed-out one by deleting it (`claim`):
  from then on its engine's outcome finds no row and is posted as a late note only
  (`flowgen._stores.postgres_leases`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, Final

from flowgen._stores.codec import dumps, event_from_dict, loads
from flowgen._stores.protocol import Task, TaskState
from flowgen._vocabulary.events import ActivityScheduled, JsonValue

__all__ = ["PostgresTaskWatch"]

Read = Callable[[str, Any], list[tuple[Any, ...]]]
"""Runs one statement on an autocommit connection and returns its rows (the store's)."""

_START: Final = """WITH started AS (
    UPDATE fleet_tasks SET started_at = %(at)s, beat_at = NULL
    WHERE id = %(id)s AND taken_by = %(owner)s
    RETURNING workflow_id, run_id, details, (scheduled->>'seq')::int AS seq,
        scheduled->>'name' AS name),
told AS (
    INSERT INTO fleet_messages (workflow_id, run_id, kind, body)
    SELECT workflow_id, run_id, 'started', json_build_object(
        'task', %(id)s::bigint, 'seq', seq, 'attempt', %(attempt)s::int, 'name', name,
        'started_at', %(at_text)s::text)
    FROM started WHERE %(tell)s
    RETURNING id)
SELECT coalesce(s.details, (
        SELECT e.payload->'details' FROM events e
        WHERE e.run_id = s.run_id AND e.kind = 'activity_heartbeat' AND e.seq = s.seq
        ORDER BY e.event_id DESC LIMIT 1))::text,
    (SELECT count(pg_notify(%(channel)s, 'work')) FROM told)
FROM started s"""

_BEAT: Final = """UPDATE fleet_tasks SET beat_at = %(at)s, details = %(details)s::json
WHERE id = %(id)s AND taken_by = %(owner)s RETURNING id"""

_STATES: Final = """SELECT id, scheduled::text, started_at, beat_at, details::text
FROM fleet_tasks
WHERE run_id = %(run_id)s AND attempt = %(attempt)s AND (scheduled->>'seq')::int = %(seq)s
ORDER BY id"""

_CLAIM: Final = """DELETE FROM fleet_tasks WHERE id = ANY(%(ids)s::bigint[])
RETURNING id, scheduled::text, started_at, beat_at, details::text"""


class PostgresTaskWatch:
    """One engine's side of posted attempts' starts and heartbeats (see the module's rules).

    Args:
        read: The store's autocommit statement runner.
        owner: This engine's name in the fleet.
        channel: The store's ``NOTIFY`` channel.
    """

    def __init__(self, read: Read, owner: str, channel: str) -> None:
        self._read = read
        self._owner = owner
        self._channel = channel

    def start(self, task: Task, at: datetime, *, tell: bool) -> tuple[bool, JsonValue]:
        """See `flowgen._stores.protocol.TaskWatch.start`."""
        found = self._read(
            _START,
            {
                "id": task.id,
                "owner": self._owner,
                "at": at,
                "at_text": at.isoformat(),
                "attempt": task.attempt,
                "tell": tell,
                "channel": self._channel,
            },
        )
        if not found:
            return False, None
        details = found[0][0]
        return True, None if details is None else loads(details)

    def beat(self, task: Task, at: datetime, details: JsonValue) -> bool:
        """See `flowgen._stores.protocol.TaskWatch.beat`."""
        params = {
            "id": task.id,
            "owner": self._owner,
            "at": at,
            "details": dumps(details),
        }
        return bool(self._read(_BEAT, params))

    def states(self, run_id: str, seq: int, attempt: int) -> list[TaskState]:
        """See `flowgen._stores.protocol.TaskWatch.states`."""
        params = {"run_id": run_id, "seq": seq, "attempt": attempt}
        return [_state(row) for row in self._read(_STATES, params)]

    def claim(self, ids: Collection[int]) -> list[TaskState]:
        """See `flowgen._stores.protocol.TaskWatch.claim`."""
        if not ids:
            return []
        return [_state(row) for row in self._read(_CLAIM, {"ids": sorted(ids)})]


def _state(row: tuple[Any, ...]) -> TaskState:
    number, scheduled, started_at, beat_at, details = row
    fields = loads(scheduled)
    assert isinstance(fields, dict)
    event = event_from_dict(fields)
    assert isinstance(event, ActivityScheduled)
    return TaskState(
        int(number),
        event,
        started_at,
        beat_at,
        None if details is None else loads(details),
    )
