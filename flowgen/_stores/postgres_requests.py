"""Requests to a run another engine of a fleet holds: posted only to a running run, never left.

`flowgen._stores.postgres_leases` carries the fleet's messages; this module holds the rules
that make a *request* (a signal, a cancel, a terminate, an update: `REQUEST_KINDS`) behave
as it does on one engine, where a request to a run that has finished is refused and one
that was acknowledged is in the run's history.

Rules
=====

* **A request is posted only to a running run** (`guard_requests`, in the posting
  transaction, before the message is written): the target's row is locked ``FOR SHARE``
  and must be running (the workflow id's running run, or the run the message names). A
  holder closing that run writes its status with ``UPDATE``, which waits for the lock, and
  a request posted after that close committed finds the run closed. A request whose run
  is not running fails the whole transaction with `MessagesRaced` (nothing written); the
  engine applies the batch again, and now reads the run as closed: the caller gets
  `WorkflowClosed`, as on one engine.
* **A run is closed only once its requests are in** (`check_closing`, in the closing
  transaction, after its status was written: the lock is held, no guarded request can come
  in any more): a request posted to it that this transaction does not consume fails the
  transaction with `MessagesRaced` naming the messages; the engine applies the batch again
  with those requests first, so an acknowledged request is recorded before the run ends,
  as it would have been had it come a moment earlier. News (an activity's outcome, a
  child's end) for the runs it closes is deleted with the close: nobody would read it.
* **Sweeping** (`sweep`, with each renewal): news for runs that are not running (posted as
  they closed, without a lock) and update replies older than `REPLY_RETENTION` are
  deleted. No message for a closed run stays.
* **Update replies** (kind ``update_reply``) are for the engine that asked, not for a run's
  holder: the holder posts one when it refuses an update (the caller's ``token`` and the
  error), in the transaction that consumes the request. An accepted update has no reply:
  its end is in the run's history. The caller reads both with `update_answer`, in one
  statement, with the run's status (a consistent snapshot: a reply or an end committed
  with the close is seen with it), and deletes its reply as it reads it.
* A deadlock between two such transactions (each closing a run the other posts a request
  to) is `MessagesRaced` too: PostgreSQL aborts one, which is applied again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

import psycopg

from flowgen._stores.protocol import Batch, Message, MessagesRaced

__all__ = [
    "REPLY_KIND",
    "REPLY_RETENTION",
    "REQUEST_KINDS",
    "check_closing",
    "guard_requests",
    "sweep",
    "unheld_runs",
    "update_answer",
]

_Connection = psycopg.Connection[tuple[Any, ...]]

REQUEST_KINDS: Final = ("signal", "cancel", "terminate", "update")
"""The message kinds a caller is acknowledged for: they must reach a running run."""

REPLY_KIND: Final = "update_reply"
"""A holder's answer to an update it refused (for the caller, not for a run's holder)."""

REPLY_RETENTION: Final = 600
"""Seconds an update reply nobody read is kept (its caller timed out or died)."""

_GUARD: Final = """SELECT workflow_id, run_id FROM workflows
WHERE workflow_id = ANY(%s::text[]) AND status = 'running'
ORDER BY run_id FOR SHARE"""

# One statement: drop the news for the closing runs, list the requests they did not take
# (a data-modifying CTE runs whether or not it is read; a refusal rolls it back).
_CLOSING: Final = """WITH dropped AS (
    DELETE FROM fleet_messages
    WHERE kind IN ('feed', 'child') AND workflow_id = ANY(%(workflows)s::text[])
      AND (run_id IS NULL OR run_id = ANY(%(runs)s::text[])))
SELECT id FROM fleet_messages
WHERE kind = ANY(%(kinds)s::text[]) AND workflow_id = ANY(%(workflows)s::text[])
  AND (run_id IS NULL OR run_id = ANY(%(runs)s::text[]))
  AND id <> ALL(%(consumed)s::bigint[])
ORDER BY id"""

_SWEEP: Final = f"""DELETE FROM fleet_messages m
WHERE (m.kind IN ('feed', 'child') AND NOT EXISTS (
        SELECT 1 FROM workflows w
        WHERE w.workflow_id = m.workflow_id AND w.status = 'running'
          AND (m.run_id IS NULL OR w.run_id = m.run_id)))
   OR (m.kind = '{REPLY_KIND}'
       AND m.posted_at < now() - make_interval(secs => {REPLY_RETENTION}))
RETURNING m.id"""

_ANSWER: Final = f"""WITH reply AS (
    DELETE FROM fleet_messages WHERE id = (
        SELECT id FROM fleet_messages
        WHERE kind = '{REPLY_KIND}' AND body->>'token' = %(token)s
        ORDER BY id LIMIT 1)
    RETURNING body::text)
SELECT (SELECT body FROM reply),
    (SELECT payload::text FROM events
     WHERE run_id = %(run)s AND kind IN ('update_completed', 'update_failed')
       AND payload->>'update_id' = %(update)s
     ORDER BY event_id LIMIT 1),
    (SELECT status FROM workflows WHERE run_id = %(run)s)"""

_UNHELD: Final = """SELECT run_id FROM workflows
WHERE status = 'running' AND (owner IS NULL OR lease_expires_at < now())"""


def guard_requests(con: _Connection, messages: Sequence[Message]) -> None:
    """Lock the runs *messages*' requests go to; refuse the batch if one is not running.

    Raises:
        MessagesRaced: A request's run is not running (it closed since it was read).
    """
    requests = [m for m in messages if m.kind in REQUEST_KINDS]
    if not requests:
        return
    targets = sorted({m.workflow_id for m in requests})
    running = con.execute(_GUARD, [targets]).fetchall()
    workflows = {str(workflow_id) for workflow_id, _ in running}
    runs = {str(run_id) for _, run_id in running}
    closed = frozenset(
        m.workflow_id
        for m in requests
        if m.workflow_id not in workflows
        or (m.run_id is not None and m.run_id not in runs)
    )
    if closed:
        raise MessagesRaced(
            f"{len(closed)} workflow(s) closed while requests were posted to them: "
            f"{', '.join(sorted(closed)[:5])}",
            closed=closed,
        )


def check_closing(con: _Connection, batch: Batch, closing: Collection[str]) -> None:
    """Before the runs *closing* close: refuse if requests wait for them; drop their news.

    Raises:
        MessagesRaced: Requests were posted to those runs that the batch does not consume
            (their ids: the engine applies them first).
    """
    keys = {
        (row.workflow_id, row.run_id) for row in batch.updates if row.run_id in closing
    }
    params = {
        "kinds": list(REQUEST_KINDS),
        "workflows": sorted({workflow_id for workflow_id, _ in keys}),
        "runs": sorted(closing),
        "consumed": sorted(set(batch.consumed)),
    }
    pending = tuple(int(i) for (i,) in con.execute(_CLOSING, params).fetchall())
    if pending:
        raise MessagesRaced(
            f"{len(pending)} request(s) came in for runs this batch closes",
            pending=pending,
        )


def sweep(read: Any) -> None:
    """Delete news for runs that are not running and unread replies past their retention."""
    read(_SWEEP, ())


def update_answer(
    read: Any, run_id: str, update_id: str, token: str
) -> tuple[str | None, str | None, str | None]:
    """(the caller's reply, the update's end event, the run's status): JSON texts, or None."""
    params = {"run": run_id, "update": update_id, "token": token}
    ((reply, end, status),) = read(_ANSWER, params)
    return reply, end, status


def unheld_runs(read: Any, run_ids: Collection[str] | None = None) -> set[str]:
    """The running runs (of *run_ids*, or all) no engine holds (free, or lease lapsed)."""
    if run_ids is None:
        return {str(run_id) for (run_id,) in read(_UNHELD, ())}
    query = _UNHELD + " AND run_id = ANY(%s::text[])"
    return {str(run_id) for (run_id,) in read(query, [list(run_ids)])}
