"""Leases: which engine of a fleet holds each running run, and the fencing that makes it so.

Rules
=====

* **One holder per run.** ``workflows.owner`` names the engine that holds a running run,
  ``lease_expires_at`` until when (the server's clock: no engine's clock matters), and
  ``epoch`` the fencing epoch it holds it at. A run is *free* when it has no owner or its
  lease has lapsed; any engine may then *claim* it (`Leases.claim`: ``FOR UPDATE SKIP
  LOCKED``, so engines claiming at once never wait for or take the same run), which sets
  the owner, the lease, and bumps the epoch. An engine claims only runs of the workflows
  it has code for (their names, given to each claim): a run whose code no engine has
  stays free (``owner`` NULL), visibly waiting, until an engine with its code joins.
  Every claim is logged in ``fleet_claims`` (run, epoch, owner): the primary key makes
  each epoch one engine's.
* **Claims are not flushed.** A claim commits without waiting for its WAL to reach the
  disk (``synchronous_commit`` off for its transaction alone): on the critical path of
  every run a worker takes, it saved about 0.35 of 1.65 WAL flushes per workflow in the
  fleet benchmark. It is safe because nothing depends on a claim but the claimer's later
  commits, which are flushed, and WAL is flushed in order: a fenced commit that returned
  made the claim before it durable. A claim lost with a crash leaves the run as it was
  (free, or at the older epoch and owner) and its log entry gone: the claimer's commits
  fail the fence (owner and epoch), and any engine may claim the run again.
* **Every commit is fenced.** The first statement of a commit's transaction reads the rows
  of the existing runs the batch writes for, ``WHERE epoch = <the epoch this engine claimed
  it at> AND owner = <this engine>``, and locks them (``FOR KEY SHARE``) until the commit
  ends, so a claim racing the commit skips them. A run that statement does not find was
  claimed by another engine since (this one's lease lapsed: a pause, a partition): the
  transaction rolls back whole and `LeaseLost` names those runs; nothing was written.
  The runtime then drops the lost runs and retries the rest of the batch
  (`flowgen._runtime.fleet`). Each event row carries the epoch it was written at
  (``events.epoch``): a run's events never go back to an older epoch. The fence writes
  nothing (no row version per commit): extending leases is the renewer's job.
* **New runs** are the starting engine's, at epoch 1, their lease set by the column's
  default from the writer's session setting (`LEASE_SETTING`, on the server's clock); an
  engine that runs no workflows (`FleetOptions.runs_workflows` off) stores them free at
  epoch 0 for the fleet's workers to claim. Either way the first epoch's claim is logged,
  so the log says who wrote event 0.
* **Renewal.** `Leases.renew` extends every held lease in one statement (the runtime calls
  it every third of the lease); a run it no longer finds is reported lost.
* **Handing back.** An engine that stops clears its owner and lease (`Leases.hand_back`),
  and its hold on the posted attempts it took, so another engine takes them at once
  instead of after the lease.
* **Posted attempts** (``fleet_tasks``, `FleetOptions.share_activities`): any engine takes
  those of the task queues it serves with ``SKIP LOCKED`` for a lease (renewed while it
  runs them), and deletes each in
  the transaction that posts its outcome to the run's holder; an attempt whose lease
  lapsed is another engine's, and its first engine posts nothing for it.
* **Messages** (``fleet_messages``) carry what an engine has for a run another engine holds
  (see `flowgen._stores.protocol.Message`); the holder reads those of its runs
  (`Leases.messages`) and deletes each in the transaction that records it (a consumed id
  that is gone makes that transaction fail: it was delivered already). Posting one, storing
  a free run, and handing back notify every engine (``NOTIFY`` on a channel per schema,
  sent when the transaction commits); polling is the fallback. A request (a signal, a
  cancel, a terminate, an update) reaches only a running run, and a run closes only once
  the requests posted to it are in: `flowgen._stores.postgres_requests`. Update replies
  are for their callers, not listed to the holder.
* **Closings.** A fenced commit that closes runs notifies their workflow ids on a second
  channel (`closings_channel`; a JSON array per notification, as many as the 8,000-byte
  payload limit needs, ``null`` for an id too long to fit: "look at every run"), in the
  same statement as the notification above, sent when the transaction commits: the
  engines whose callers wait for those runs' results learn of it at once
  (`flowgen._runtime.closings`), and the engines looking for work are not woken by it.

The held epochs (`Leases.held`) are the engine's: filled by claims and its own new runs,
emptied as runs close, get lost or are handed back, under a lock (commits, the renewer and
the loop all touch them).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Final

import attrs
import psycopg

from flowgen._stores import postgres_requests
from flowgen._stores.codec import dumps, loads
from flowgen._stores.duckdb_rows import Plan
from flowgen._stores.protocol import (
    CLOSED_STATUSES,
    Batch,
    FleetOptions,
    Message,
)
from flowgen._vocabulary.errors import LeaseLost, StoreError
from flowgen._vocabulary.events import JsonValue

__all__ = [
    "EVENT_COLUMNS_TAIL",
    "RUN_COLUMNS_TAIL",
    "Leases",
    "closed_workflow_ids",
    "closings_channel",
    "closings_payloads",
    "engine_name",
]

log = logging.getLogger("flowgen")

_Connection = psycopg.Connection[tuple[Any, ...]]
Read = Callable[[str, Any], list[tuple[Any, ...]]]
"""Runs one statement on an autocommit connection and returns its rows (the store's)."""

RUN_COLUMNS_TAIL: Final = ("owner", "epoch")
"""What a leasing store's COPY of new runs adds to each row."""

EVENT_COLUMNS_TAIL: Final = ("epoch",)
"""What a leasing store's COPY of events adds to each row."""

_INTERVAL: Final = "make_interval(secs => %(lease)s)"

# The fence: the rows of the runs a commit writes for, still at the epoch this engine holds,
# locked until the commit ends (a claim skips a locked row). It writes nothing: leases are
# the renewer's to extend, so a commit costs one read of locked rows, not a row version.
# (By the primary key: a join with unnest of the ids and epochs was planned as a scan.)
_FENCE: Final = """SELECT run_id, epoch FROM workflows
WHERE run_id = ANY(%(runs)s::text[]) AND owner = %(owner)s
FOR KEY SHARE"""

# A run closed since the held epochs were read is renewed harmlessly (it is not claimable):
# only a run claimed by another engine is missing from what the renewal finds.
_RENEW: Final = f"""UPDATE workflows SET lease_expires_at = now() + {_INTERVAL}
WHERE run_id = ANY(%(runs)s::text[]) AND owner = %(owner)s
RETURNING run_id, epoch"""

LEASE_SETTING: Final = "flowgen.lease"
"""The writer connection's session setting a new run's lease is computed from: the column
default of ``lease_expires_at`` is ``now()`` plus that many seconds, so the COPY of new runs
sets their lease on the server's clock with no statement of its own."""

_LOG_CLAIMS: Final = """INSERT INTO fleet_claims (run_id, epoch, owner)
SELECT run_id, %(epoch)s, %(owner)s FROM unnest(%(runs)s::text[]) AS n(run_id)"""

_POST: Final = """INSERT INTO fleet_messages (workflow_id, run_id, kind, body)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::json[])"""

_CONSUME: Final = "DELETE FROM fleet_messages WHERE id = ANY(%s::bigint[])"

_RELEASE: Final = """UPDATE workflows SET owner = NULL, lease_expires_at = NULL
WHERE owner = %(owner)s AND status = 'running'"""

_RELEASE_TASKS: Final = """UPDATE fleet_tasks SET taken_by = NULL, taken_until = NULL
WHERE taken_by = %(owner)s RETURNING id"""

# One statement for every notification of a commit: (channel, payload) pairs.
_NOTIFY: Final = "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS n(c, p)"

_PAYLOAD_BYTES: Final = 7900
"""The most bytes of one closings notification (PostgreSQL refuses 8,000 or more)."""

_MESSAGES: Final = """SELECT m.id, m.workflow_id, m.run_id, m.kind, m.body::text
FROM fleet_messages m
WHERE m.workflow_id IN (
    SELECT workflow_id FROM workflows WHERE owner = %s AND status = 'running')
  AND m.kind <> 'update_reply'
ORDER BY m.id LIMIT 1000"""


_POST_TASK: Final = """WITH posted AS (
    INSERT INTO fleet_tasks (workflow_id, run_id, attempt, scheduled, task_queue)
    VALUES (%(workflow_id)s, %(run_id)s, %(attempt)s, %(scheduled)s, %(task_queue)s)
    RETURNING id)
SELECT pg_notify(%(channel)s, 'task') FROM posted"""

_TAKE_TASKS: Final = f"""WITH free AS (
    SELECT id FROM fleet_tasks
    WHERE (taken_by IS NULL OR taken_until < now())
        AND task_queue = ANY(%(queues)s::text[])
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE fleet_tasks t SET taken_by = %(owner)s, taken_until = now() + {_INTERVAL}
FROM free WHERE t.id = free.id
RETURNING t.id, t.workflow_id, t.run_id, t.attempt, t.scheduled::text, t.task_queue"""

_RENEW_TASKS: Final = f"""UPDATE fleet_tasks SET taken_until = now() + {_INTERVAL}
WHERE id = ANY(%(ids)s::bigint[]) AND taken_by = %(owner)s RETURNING id"""

# The outcome goes to the run's holder only if this engine still has the task (a task
# whose lease lapsed is another engine's now, which posts its own outcome).
_FINISH_TASK: Final = """WITH done AS (
    DELETE FROM fleet_tasks WHERE id = %(id)s AND taken_by = %(owner)s
    RETURNING workflow_id, run_id),
posted AS (
    INSERT INTO fleet_messages (workflow_id, run_id, kind, body)
    SELECT workflow_id, run_id, 'feed', b.body
    FROM done, unnest(%(bodies)s::json[]) WITH ORDINALITY AS b(body, n)
    ORDER BY b.n RETURNING id)
SELECT pg_notify(%(channel)s, 'work') FROM posted"""


# A claim's commit need not wait for its WAL flush (see "Claims are not flushed" in the
# module's rules): set for the claim's own transaction only.
_NO_FLUSH: Final = "SELECT set_config('synchronous_commit', 'off', true)"


def _claim_sql(record_columns: str) -> str:
    # One statement, so it is atomic on an autocommit connection: pick free runs (skipping
    # rows another transaction holds), take them with a new epoch, log the claims.
    return f"""WITH free AS (
    SELECT run_id FROM workflows
    WHERE status = 'running' AND owner IS DISTINCT FROM %(owner)s
      AND (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < now())
      AND name = ANY(%(names)s::text[])
    ORDER BY started_at, row_order
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE workflows w SET owner = %(owner)s, epoch = w.epoch + 1,
        lease_expires_at = now() + {_INTERVAL}
    FROM free WHERE w.run_id = free.run_id
    RETURNING w.*
), logged AS (
    INSERT INTO fleet_claims (run_id, epoch, owner)
    SELECT run_id, epoch, %(owner)s FROM taken
)
SELECT {record_columns}, epoch FROM taken, ({_NO_FLUSH}) AS no_flush"""


def closings_channel(channel: str) -> str:
    """The channel of closed runs beside *channel* (a name PostgreSQL keeps whole)."""
    name = f"{channel}:closed"
    if len(name.encode()) < 64:  # NAMEDATALEN: a longer channel name is refused
        return name
    return f"flowgen:closed:{hashlib.sha1(channel.encode()).hexdigest()}"


def closings_payloads(workflow_ids: Sequence[str]) -> list[str]:
    """*workflow_ids* as JSON arrays, each under PostgreSQL's payload limit.

    An id that cannot fit alone is sent as ``null`` (a listener then looks at every run).
    """
    payloads: list[str] = []
    chunk: list[JsonValue] = []
    size = 2
    for workflow_id in dict.fromkeys(workflow_ids):
        length = len(dumps(workflow_id).encode()) + 1
        if length + 2 > _PAYLOAD_BYTES:
            payloads.append("null")
            continue
        if size + length > _PAYLOAD_BYTES:
            payloads.append(dumps(chunk))
            chunk, size = [], 2
        chunk.append(workflow_id)
        size += length
    if chunk:
        payloads.append(dumps(chunk))
    return payloads


def closed_workflow_ids(batch: Batch) -> list[str]:
    """The workflow ids of the runs *batch* closes (new runs stored closed included)."""
    closed = [
        update.workflow_id
        for update in batch.updates
        if update.status is not None and update.status in CLOSED_STATUSES
    ]
    closed.extend(r.workflow_id for r in batch.runs if r.status in CLOSED_STATUSES)
    return closed


def engine_name() -> str:
    """A name for this engine, unique in the fleet: host, process id, a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Leases:
    """One engine's side of the leases of a PostgreSQL store (see the module's rules).

    Args:
        options: The lease time, and whether this engine runs workflows.
        channel: The ``NOTIFY`` channel of the store's schema (closed runs are told on
            `closings_channel` of it).
        where: The database, for messages.
    """

    def __init__(self, options: FleetOptions, channel: str, where: str) -> None:
        self.options = options
        self.owner = engine_name()
        self.channel = channel
        self.closings = closings_channel(channel)
        self.where = where
        self._held: dict[str, int] = {}  # run id -> epoch; guarded by _lock
        self._lock = threading.Lock()

    # -- the held epochs ---------------------------------------------------------------------

    def held(self) -> dict[str, int]:
        """A copy of the runs held, with their epochs."""
        with self._lock:
            return dict(self._held)

    def hold(self, epochs: dict[str, int]) -> None:
        """Note runs claimed at these epochs."""
        with self._lock:
            self._held.update(epochs)

    def forget(self, run_ids: Iterable[str]) -> None:
        """Runs no longer held (lost, released, closed)."""
        with self._lock:
            for run_id in run_ids:
                self._held.pop(run_id, None)

    @property
    def _new_epoch(self) -> int:
        return 1 if self.options.runs_workflows else 0

    def _params(self, **more: object) -> dict[str, object]:
        return {"owner": self.owner, "lease": self.options.lease, **more}

    # -- inside a commit's transaction -------------------------------------------------------

    def prepare(self, con: _Connection) -> None:
        """Set up the store's writer connection (on every new one): new runs' lease."""
        lease = self.options.lease if self.options.runs_workflows else 0
        con.execute("SELECT set_config(%s, %s, false)", [LEASE_SETTING, str(lease)])

    def fence(self, con: _Connection, batch: Batch) -> dict[str, int]:
        """Check and lock the existing runs *batch* writes for (see `_FENCE`).

        Returns the epoch of every run the batch writes for (new ones included).

        Raises:
            LeaseLost: This engine no longer holds some of them (nothing written).
        """
        new = {record.run_id for record in batch.runs}
        touched = {row.run_id for row in batch.events} | {
            update.run_id for update in batch.updates
        }
        existing = touched - new
        epochs = dict.fromkeys(new, self._new_epoch)
        if not existing:
            return epochs
        with self._lock:
            held = {r: self._held[r] for r in existing if r in self._held}
        found: set[str] = set()
        if held:
            rows = con.execute(_FENCE, self._params(runs=list(held))).fetchall()
            found = {str(r) for r, epoch in rows if held.get(str(r)) == epoch}
        lost = frozenset(existing - found)
        if lost:
            raise LeaseLost(
                f"this engine no longer holds {len(lost)} run(s) of the batch in "
                f"{self.where} (another engine claimed them after this one's lease "
                f"lapsed); nothing was written: {', '.join(sorted(lost)[:5])}",
                lost,
            )
        epochs.update(held)
        return epochs

    def fenced(self, plan: Plan, epochs: dict[str, int]) -> Plan:
        """*plan* with its new runs' owner and epoch, and each event's epoch.

        The columns `RUN_COLUMNS_TAIL` and `EVENT_COLUMNS_TAIL` name.
        """
        owner = self.owner if self.options.runs_workflows else None
        tail = (owner, self._new_epoch)
        return attrs.evolve(
            plan,
            run_rows=[row + tail for row in plan.run_rows],
            event_rows=[(*row, epochs[row[1]]) for row in plan.event_rows],
        )

    def after_write(self, con: _Connection, batch: Batch) -> None:
        """The rest of a fenced commit: new runs' leases and claims, messages, notify."""
        new = [record.run_id for record in batch.runs]
        notify = bool(batch.messages)
        if new:
            con.execute(_LOG_CLAIMS, self._params(runs=new, epoch=self._new_epoch))
            notify = notify or not self.options.runs_workflows  # free runs: for workers
        if batch.messages:
            postgres_requests.guard_requests(con, batch.messages)
            con.execute(_POST, _message_columns(batch.messages))
        if batch.consumed:
            ids = sorted(set(batch.consumed))
            deleted = con.execute(_CONSUME, [ids]).rowcount
            if deleted != len(ids):
                raise StoreError(
                    f"{len(ids) - deleted} message(s) this batch consumed were consumed "
                    f"already in {self.where}; nothing was written"
                )
        closing = _closing(batch)
        if closing:
            postgres_requests.check_closing(con, batch, closing)
        channels, payloads = ([self.channel], ["work"]) if notify else ([], [])
        for payload in closings_payloads(closed_workflow_ids(batch)):
            channels.append(self.closings)
            payloads.append(payload)
        if channels:
            con.execute(_NOTIFY, [channels, payloads])

    def committed(self, batch: Batch) -> None:
        """A fenced commit went through: hold its new runs, forget those it closed."""
        closed = _closing(batch)
        with self._lock:
            if self.options.runs_workflows:
                for record in batch.runs:
                    if record.status not in CLOSED_STATUSES:
                        self._held[record.run_id] = 1
            for run_id in closed:
                self._held.pop(run_id, None)

    # -- one statement each, on an autocommit connection ------------------------------------

    def claim(
        self, read: Read, record_columns: str, workflow_names: Collection[str]
    ) -> list[tuple[tuple[Any, ...], int]]:
        """Claim up to ``claim_batch`` free runs of *workflow_names*: (record row, epoch)."""
        params = self._params(
            limit=self.options.claim_batch, names=sorted(workflow_names)
        )
        rows = read(_claim_sql(record_columns), params)
        claimed = [(tuple(row[:-1]), int(row[-1])) for row in rows]
        self.hold({str(row[1]): epoch for row, epoch in claimed})
        return claimed

    def renew(self, read: Read) -> frozenset[str]:
        """Extend every held lease; returns (and forgets) the runs found lost."""
        postgres_requests.sweep(read)
        held = self.held()
        if not held:
            return frozenset()
        rows = read(_RENEW, self._params(runs=list(held)))
        found = {str(r) for r, epoch in rows if held.get(str(r)) == epoch}
        lost: set[str] = set()
        with self._lock:  # only those still held at the epoch the renewal tried
            for run_id in held.keys() - found:
                if self._held.get(run_id) == held[run_id]:
                    del self._held[run_id]
                    lost.add(run_id)
        return frozenset(lost)

    def messages(self, read: Read) -> list[Message]:
        """The messages for the runs held, oldest first."""
        messages = []
        for number, workflow_id, run_id, kind, body in read(_MESSAGES, [self.owner]):
            fields = loads(body)
            assert isinstance(fields, dict)
            messages.append(Message(workflow_id, run_id, kind, fields, id=int(number)))
        return messages

    def release(self, read: Read, run_ids: Collection[str]) -> None:
        """Give *run_ids* back at once, and tell the fleet."""
        if not run_ids:
            return
        self.forget(run_ids)
        read(
            _RELEASE + " AND run_id = ANY(%(runs)s::text[]) RETURNING run_id",
            self._params(runs=list(run_ids)),
        )
        read(_NOTIFY, [[self.channel], ["work"]])

    def post_task(
        self,
        read: Read,
        workflow_id: str,
        run_id: str,
        attempt: int,
        scheduled: str,
        task_queue: str,
    ) -> None:
        """Post an activity attempt (its ``activity_scheduled`` event, as JSON text)."""
        read(
            _POST_TASK,
            {
                "workflow_id": workflow_id,
                "run_id": run_id,
                "attempt": attempt,
                "scheduled": scheduled,
                "task_queue": task_queue,
                "channel": self.channel,
            },
        )

    def take_tasks(
        self, read: Read, limit: int, task_queues: Collection[str]
    ) -> list[tuple[int, str, str, int, str, str]]:
        """Take up to *limit* posted attempts of *task_queues* nobody runs.

        Returns (id, workflow id, run id, attempt, scheduled event as JSON text, task
        queue) of each.
        """
        params = self._params(limit=limit, queues=sorted(task_queues))
        return [
            (int(i), str(w), str(r), int(a), str(e), str(q))
            for i, w, r, a, e, q in read(_TAKE_TASKS, params)
        ]

    def renew_tasks(self, read: Read, ids: Collection[int]) -> None:
        """Extend this engine's hold on the attempts it runs."""
        if ids:
            read(_RENEW_TASKS, self._params(ids=list(ids)))

    def finish_task(self, read: Read, task_id: int, bodies: Sequence[str]) -> None:
        """Delete a task this engine ran and post its events (JSON text, in order)."""
        read(
            _FINISH_TASK,
            self._params(id=task_id, bodies=list(bodies), channel=self.channel),
        )

    def hand_back(self, read: Read) -> None:
        """Give back every run and posted attempt this engine holds; tell the fleet."""
        with self._lock:
            self._held.clear()
        read(_RELEASE + " RETURNING run_id", self._params())
        read(_RELEASE_TASKS, self._params())
        read(_NOTIFY, [[self.channel], ["work"]])


def _closing(batch: Batch) -> list[str]:
    """The runs *batch* closes."""
    return [
        update.run_id
        for update in batch.updates
        if update.status is not None and update.status in CLOSED_STATUSES
    ]


def _message_columns(messages: Sequence[Message]) -> list[list[Any]]:
    return [
        [m.workflow_id for m in messages],
        [m.run_id for m in messages],
        [m.kind for m in messages],
        [dumps(m.body) for m in messages],
    ]
