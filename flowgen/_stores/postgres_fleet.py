"""The fleet's calls of a PostgreSQL store: claims, leases, posted attempts and messages.

`FleetCalls` gives `flowgen._stores.postgres_store.PostgresStore` the `LeasesRuns` calls of
a store opened as one engine of a fleet. The rules (who holds a run, fencing, what a claim
takes, how messages and posted attempts are delivered) are
`flowgen._stores.postgres_leases`'s; this mixin only turns the store's rows into records,
tasks and messages, and keeps the one listening connection of `wait`. Outside a fleet (no
`FleetOptions`) every call but `owner` and `fleet_options` refuses with `UsageError`.

Two listening connections at most, each made on first use: the fleet thread's (`wait`:
work to look for) and the closings listener's (`listen_closings`, `closings`: runs closed
anywhere, for callers waiting for results), so neither wakes the other.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, ClassVar, Protocol

import psycopg
import psycopg.sql

from flowgen._stores import postgres_requests
from flowgen._stores.codec import dumps, event_from_dict, event_to_dict, loads
from flowgen._stores.duckdb_rows import record
from flowgen._stores.postgres_leases import Leases
from flowgen._stores.protocol import FleetOptions, Message, Task, WorkflowRecord
from flowgen._vocabulary.errors import StoreError, UsageError
from flowgen._vocabulary.events import ActivityScheduled, Event, JsonValue

__all__ = ["FleetCalls"]

_Connection = psycopg.Connection[tuple[Any, ...]]


class _Forgets(Protocol):
    """What the store keeps of where runs continue (its `_NextEventIds`)."""

    def forget(self, run_ids: Iterable[str]) -> None: ...


class FleetCalls:
    """A fleet engine's calls, for a store with ``leases`` and a listener (a mixin)."""

    where: str
    _closed: bool
    leases: Leases | None
    _listener: _Connection | None
    _closings_listener: _Connection | None = None
    _next: _Forgets
    _record_columns: ClassVar[str]
    """The columns of a run as `record` reads it (the store's)."""

    def _connect(self) -> _Connection:  # pragma: no cover - the store's own
        raise NotImplementedError

    def _read(
        self, query: str, params: Sequence[object] = ()
    ) -> list[tuple[Any, ...]]:  # pragma: no cover - the store's own
        raise NotImplementedError

    def _fleet(self) -> Leases:
        if self.leases is None:
            raise UsageError(
                f"this store of {self.where} was opened outside a fleet (no FleetOptions)"
            )
        return self.leases

    @property
    def owner(self) -> str | None:
        """This engine's name in the fleet (host, process id, a random part), or ``None``."""
        return None if self.leases is None else self.leases.owner

    def fleet_options(self) -> FleetOptions | None:
        """How this store's engine takes part in the fleet; ``None`` outside one."""
        return None if self.leases is None else self.leases.options

    def claim(self, workflow_names: Collection[str]) -> list[WorkflowRecord]:
        """Take up to ``claim_batch`` running runs of *workflow_names* nobody holds."""
        claimed = self._fleet().claim(self._read, self._record_columns, workflow_names)
        return [record(row) for row, _ in claimed]

    def renew(self) -> frozenset[str]:
        """Extend the leases of the runs held; returns the run ids found lost."""
        lost = self._fleet().renew(self._read)
        self._next.forget(lost)
        return lost

    def messages(self) -> list[Message]:
        """The messages for the runs held, oldest first."""
        return self._fleet().messages(self._read)

    def release(self, run_ids: Iterable[str]) -> None:
        """Give runs back at once (their lease cleared: any engine may claim them)."""
        ids = list(run_ids)
        self._next.forget(ids)
        self._fleet().release(self._read, ids)

    def hand_back(self) -> None:
        """Give back every run held (the engine stops); another engine takes them at once."""
        self._fleet().hand_back(self._read)

    def post_task(self, task: Task) -> None:
        """Post an activity attempt for any engine of the fleet to run."""
        scheduled = dumps(event_to_dict(task.scheduled))
        self._fleet().post_task(
            self._read,
            task.workflow_id,
            task.run_id,
            task.attempt,
            scheduled,
            task.task_queue,
        )

    def take_tasks(self, limit: int, task_queues: Collection[str]) -> list[Task]:
        """Take up to *limit* posted attempts of *task_queues* nobody runs (held here)."""
        tasks = []
        taken = self._fleet().take_tasks(self._read, limit, task_queues)
        for number, workflow_id, run_id, attempt, text, queue in taken:
            fields = loads(text)
            assert isinstance(fields, dict)
            scheduled = event_from_dict(fields)
            assert isinstance(scheduled, ActivityScheduled)
            tasks.append(
                Task(workflow_id, run_id, attempt, scheduled, queue, id=number)
            )
        return tasks

    def renew_tasks(self, task_ids: Collection[int]) -> None:
        """Extend this engine's hold on the attempts it runs."""
        self._fleet().renew_tasks(self._read, task_ids)

    def finish_task(self, task: Task, events: Sequence[Event]) -> None:
        """Delete a task this engine ran and post its events (outcome last) to the holder."""
        bodies = [dumps({"event": event_to_dict(event)}) for event in events]
        self._fleet().finish_task(self._read, task.id, bodies)

    def wait(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for a notification of the fleet; True if one came.

        On a connection of its own, listening (made on first use; a lost one is made
        again on the next call, and this call just waits).
        """
        channel = self._fleet().channel
        try:
            if self._listener is None or self._listener.closed:
                self._listener = self._connect()
                self._listener.execute(
                    psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel))
                )
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error as exc:
            if self._listener is not None:
                self._listener.close()
            raise StoreError(f"listening to {self.where} failed: {exc}") from None
        return False

    def update_answer(
        self, run_id: str, update_id: str, token: str
    ) -> tuple[dict[str, JsonValue] | None, Event | None, str | None]:
        """See `LeasesRuns.update_answer` (`flowgen._stores.postgres_requests`)."""
        self._fleet()
        reply, end, status = postgres_requests.update_answer(
            self._read, run_id, update_id, token
        )
        body = loads(reply) if reply is not None else None
        fields = loads(end) if end is not None else None
        event = event_from_dict(fields) if isinstance(fields, dict) else None
        return body if isinstance(body, dict) else None, event, status

    def unheld_runs(self, run_ids: Collection[str] | None = None) -> set[str]:
        """The running runs (of *run_ids*, or all) no engine holds: free, or lapsed."""
        return postgres_requests.unheld_runs(self._read, run_ids)

    def wake(self) -> None:
        """Notify every engine of the fleet (this one too): each looks for work now."""
        self._read("SELECT pg_notify(%s, 'wake')", [self._fleet().channel])

    def listen_closings(self) -> None:
        """Listen for runs closed anywhere in the fleet (see `TellsClosings`).

        On a connection of its own, made again if it was lost; idempotent.
        """
        channel = self._fleet().closings
        if self._closings_listener is not None and not self._closings_listener.closed:
            return
        con = self._connect()
        try:
            con.execute(
                psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel))
            )
        except psycopg.Error as exc:
            con.close()
            raise StoreError(f"listening to {self.where} failed: {exc}") from None
        self._closings_listener = con
        if self._closed:  # closed meanwhile, after its listeners: none may outlive it
            con.close()
            raise StoreError(f"the store {self.where} is closed")

    def closings(self, timeout: float) -> frozenset[str] | None:
        """The workflow ids of runs closed since the last call (see `TellsClosings`).

        Waits up to *timeout* seconds for the first notification, then takes every one
        already received without waiting.
        """
        con = self._closings_listener
        if con is None or con.closed:
            raise StoreError(f"not listening to {self.where} (call listen_closings)")
        heard: set[str] = set()
        try:
            for notify in con.notifies(timeout=timeout, stop_after=1):
                if not _add_closed(heard, notify.payload):
                    return None
            for notify in con.notifies(timeout=0):
                if not _add_closed(heard, notify.payload):
                    return None
        except psycopg.Error as exc:
            con.close()
            raise StoreError(f"listening to {self.where} failed: {exc}") from None
        return frozenset(heard)

    def _close_listeners(self) -> None:
        for con in (self._listener, self._closings_listener):
            if con is not None:
                con.close()


def _add_closed(heard: set[str], payload: str) -> bool:
    """Add the workflow ids of one closings notification; False if it names none."""
    try:
        ids = loads(payload)
    except ValueError:
        return False
    if not isinstance(ids, list):
        return False
    heard.update(str(workflow_id) for workflow_id in ids)
    return True
