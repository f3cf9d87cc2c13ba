"""The fleet: this engine's part among many engines sharing one PostgreSQL store.

The store holds the leases and fences every commit (`flowgen._stores.postgres_leases`);
this module is the runtime's side. The embedded stores (memory, DuckDB) have no fleet: the
engine makes a `Fleet` only for a store that `LeasesRuns`, and the decision loop calls it
at the few places where a run may be held by another engine.

Rules:

- **Looking for work** (`Fleet.look`): renew the leases held when a third of the lease has
  passed (runs found lost are dropped from the loop), claim free runs (nobody's, or whose
  lease lapsed: a dead engine's) and resume each like a run found on open (a `Recover`
  item: replay, then what it waited for: activities in flight run again, timers are armed
  at their recorded due times), and take the messages for the runs held. Only runs of
  the workflows this engine has code for are claimed (`Registry.workflow_names`): a run
  whose code no engine has waits, free, for one that has it. The fleet thread
  looks when notified (``LISTEN``: a start left for the workers, a message posted, runs
  handed back) and every `FleetOptions.poll` seconds otherwise, so a dead engine's runs are
  taken over within ``lease + poll``. A hand-driven engine looks in `run_until_idle`.
- **A message is delivered once.** An item made from a message carries its id; the batch
  that applies the item deletes the message in the same transaction (`Batch.consumed`).
  Until the message is gone from the store it is not delivered again: ids in flight are
  remembered, and forgotten only when the store no longer lists them (consumed) or the
  batch carrying them failed (to be taken again).
- **What belongs to another engine is posted, not applied**: a signal or cancel for a run
  this engine does not hold but the store says is running, an activity's outcome or a
  child's end for a run that moved away (`Fleet.post`, `Fleet.forward`,
  `Fleet.orphan_closed`): a message, written in the batch, for the holder.
- **Requests** (a signal, a cancel, a terminate, an update) reach only a running run, and
  a run closes only once the requests posted to it are in (the store's rules:
  `flowgen._stores.postgres_requests`): a commit refused for that (`MessagesRaced`) wrote
  nothing and is applied again (`Fleet.again`), behind the requests it missed. Updates
  and terminations: `flowgen._runtime.fleet_requests`.
- **A lost lease** (`LeaseLost` from a commit): nothing of the batch was written; the loop
  undoes it, the lost runs are dropped from the run table and the interpreter cache, and
  the rest of the batch is applied again at once (its callers wait for that answer). A
  lost run's items then find no run here and are posted to its holder.
- **An engine that runs no workflows** (`FleetOptions.runs_workflows` off) stores a new run
  with its ``workflow_started`` event only, free, for a worker to claim and run; it claims
  nothing and has no fleet thread.
- **Activity attempts on any engine** (`FleetOptions.share_activities`): an attempt is
  posted (``fleet_tasks``) after the batch that scheduled it commits, instead of run here,
  with its activity's task queue and taking no permit here; any engine that runs workflows
  takes posted attempts of the task queues it serves (``SKIP LOCKED``) as it has free
  activity threads, holds each for a lease (renewed with its runs), performs it by the
  activity's registered name, and posts the outcome to the run's holder as a message in the
  transaction that deletes the task. A task whose engine died is taken again once its lease
  lapses (at least once, as always). A taken attempt passes this engine's gate (its
  ``max_concurrent`` and ``rate_limit`` permits, counted in the database for the whole
  fleet) before it runs, keeping its slot and lease while it waits; its permits are given
  back once its outcome is posted. It is watched like a local attempt: its heartbeat
  notes are posted to the holder with its outcome (in order, in one transaction), and a
  deadline passed by the time it reports makes its outcome an ``ActivityTimeout`` (posted
  with the late-result note). No timer fails it before it reports. If posting fails,
  it passes the posting engine's gate like any attempt.
- **Stopping** hands every lease back (`Fleet.close`), so another engine takes the runs at
  once. The fleet thread runs under the engine's guard: anything but a store error (logged,
  tried again at the next look) stops the engine loudly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING

from flowgen._runtime.clock import monotonic
from flowgen._runtime.items import (
    Call,
    CancelItem,
    Feed,
    Item,
    Key,
    Recover,
    SignalItem,
    Start,
    Txn,
)
from flowgen._runtime.limits import Ticket, nothing
from flowgen._runtime.recovery import ended_child
from flowgen._runtime.updates import update_of
from flowgen._stores.codec import event_from_dict, event_to_dict
from flowgen._stores.protocol import (
    EventRow,
    FleetOptions,
    LeasesRuns,
    Message,
    MessageKind,
    MessagesRaced,
    Store,
    Task,
    WorkflowRecord,
)
from flowgen._vocabulary.commands import CallActivity
from flowgen._vocabulary.errors import LeaseLost, StoreError, UnknownWorkflow
from flowgen._vocabulary.events import ActivityScheduled, JsonValue, WorkflowStarted
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:  # the loop is handed in; this module only names its type
    from flowgen._runtime.items import Run
    from flowgen._runtime.loop import DecisionLoop

__all__ = ["Fleet", "fleet_of", "join_fleet"]

log = logging.getLogger("flowgen")


def fleet_of(store: Store) -> FleetOptions | None:
    """The fleet options of *store*, if it is one engine's share of a fleet."""
    if isinstance(store, LeasesRuns):
        return store.fleet_options()
    return None


def join_fleet(
    store: Store,
    loop: DecisionLoop,
    options: FleetOptions | None,
    *,
    slots: int,
) -> Fleet | None:
    """This engine's part of the fleet of *store*, or ``None`` for a store of one engine.

    Args:
        store: The engine's store.
        loop: The engine's decision loop (its fleet is set).
        options: What the engine was given as ``fleet=`` (the store has them already).
        slots: Posted attempts run at once (the engine's ``max_workers``).

    Raises:
        ValueError: *options* were given for a store that is no fleet's.
    """
    if fleet_of(store) is None:
        if options is not None:
            raise ValueError(
                "fleet= applies to an engine on a postgresql:// URL (a store shared by "
                "many engines), not to this one"
            )
        return None
    fleet = Fleet(store, loop, slots=slots)
    loop.fleet = fleet
    return fleet


class Fleet:
    """This engine's part of the fleet (see the module's rules).

    Args:
        store: The engine's store, opened with `FleetOptions`.
        loop: The engine's decision loop.
    """

    def __init__(self, store: Store, loop: DecisionLoop, *, slots: int = 8) -> None:
        options = fleet_of(store)
        assert options is not None
        assert isinstance(store, LeasesRuns)
        self.options = options
        self._leases: LeasesRuns = store
        self._store = store
        self._loop = loop
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()  # message ids delivered, not yet consumed
        self._to_release: set[str] = set()  # runs whose resumption failed
        self._renewed = monotonic()
        self._slots = slots  # posted attempts run at once (the engine's max_workers)
        self._tasks: set[int] = set()  # the ids of those running here; under _lock
        if options.share_activities and options.runs_workflows:
            loop.attempts.share = self._post_task

    @property
    def runs_workflows(self) -> bool:
        """False for an engine that only starts, signals and reads."""
        return self.options.runs_workflows

    # -- looking for work ---------------------------------------------------------------------

    def look(self) -> list[Item]:
        """Renew leases if due, claim free runs, take messages: the items for the loop.

        Raises:
            StoreError: The store failed (nothing claimed is lost: an unresumed claim
                lapses like a dead engine's).
        """
        if not self.options.runs_workflows:
            return []
        items: list[Item] = []
        lost = self._renew_if_due()
        if lost:
            items.append(Call(partial(self._drop, lost)))
        with self._lock:
            release, self._to_release = self._to_release, set()
        if release:
            self._leases.release(release)
        items.extend(self._claimed())
        items.extend(self._message_items())
        if self.options.share_activities:
            items.extend(self._take_tasks())
        return items

    def _renew_if_due(self) -> frozenset[str]:
        if monotonic() - self._renewed < self.options.lease / 3:
            return frozenset()
        self._renewed = monotonic()
        with self._lock:
            running = set(self._tasks)
        self._leases.renew_tasks(running)
        lost = self._leases.renew()
        if lost:
            log.warning(
                "flowgen: %d run(s) were taken over by another engine (this one's "
                "lease lapsed): %s",
                len(lost),
                ", ".join(sorted(lost)[:5]),
            )
        return lost

    def _claimed(self) -> list[Item]:
        records = self._leases.claim(self._loop.registry.workflow_names)
        if not records:
            return []
        self._renewed = min(self._renewed, monotonic())
        try:
            histories = self._store.load_histories(
                [(r.workflow_id, r.run_id) for r in records]
            )
        except StoreError:  # unread, they would be held and renewed, never run
            with self._lock:
                self._to_release.update(r.run_id for r in records)
            raise
        items: list[Item] = []
        for record in records:
            key = (record.workflow_id, record.run_id)
            if key not in histories:  # quarantined by the store
                continue
            item = Recover(record, histories[key], future=Future())
            item.future.add_done_callback(partial(self._resumed, record))  # type: ignore[union-attr]
            items.append(item)
        log.info("flowgen: claimed %d run(s)", len(items))
        return items

    def _resumed(self, record: WorkflowRecord, future: Future[object]) -> None:
        # On the loop's thread, after the batch: a claim whose resumption was undone is
        # dropped and given back at the next look, for any engine to take.
        if future.exception() is not None:
            with self._lock:
                self._to_release.add(record.run_id)
            self._loop.inbox.put(Call(partial(self._drop, {record.run_id})))

    def _message_items(self) -> list[Item]:
        messages = self._leases.messages()
        with self._lock:
            # Ids the store no longer lists were consumed: forget them (a listing that
            # started before their batch committed still shows them, so they stay).
            self._in_flight &= {m.id for m in messages}
            fresh = [m for m in messages if m.id not in self._in_flight]
            self._in_flight.update(m.id for m in fresh)
        return [self._delivery(message) for message in fresh]

    def _delivery(self, message: Message) -> Item:
        """The item that applies *message* (taken again if its batch fails)."""
        item = self._item_of(message)
        future: Future[object] = Future()
        future.add_done_callback(partial(self._delivered, message.id))
        item.future = future
        return item

    def _delivered(self, message_id: int, future: Future[object]) -> None:
        # Its batch failed: nothing consumed it, so take it again at the next look.
        error = future.exception()
        if isinstance(error, StoreError):
            with self._lock:
                self._in_flight.discard(message_id)

    def _item_of(self, message: Message) -> Item:
        body = message.body
        match message.kind:
            case "signal":
                sender = body.get("sender")
                return SignalItem(
                    message.workflow_id,
                    str(body["name"]),
                    body.get("payload"),
                    sender=None if sender is None else str(sender),
                    message=message.id,
                )
            case "cancel" | "terminate":
                reason = str(body.get("reason", ""))
                terminate = message.kind == "terminate"
                return CancelItem(
                    message.workflow_id, reason, terminate=terminate, message=message.id
                )
            case "update":
                return update_of(message)
            case "feed":
                event = body["event"]
                assert isinstance(event, dict)
                return Feed(
                    message.workflow_id,
                    message.run_id,
                    event_from_dict(event),
                    message=message.id,
                )
            case _:  # "child"
                return self._child_news(message)

    def _child_news(self, message: Message) -> Item:
        """A child's end that its engine could not tell the parent: read it, feed it."""
        child_id = str(message.body["child_id"])
        with self._loop.lock:  # the run table is the loop's
            link = self._loop.table.child_links.get(child_id)
        outcome = None
        if link is not None:
            outcome = ended_child(
                self._store.get_run(child_id), link[1], self._loop.clock
            )
        if link is None or outcome is None:
            return Call(lambda: None, message=message.id)  # nobody waits: consume it
        (parent_id, parent_run), _ = link
        return Feed(parent_id, parent_run, outcome, message=message.id)

    def pump(self, deliver: Callable[[Item], None]) -> bool:
        """One look, its items delivered (a hand-driven engine's); True if any came."""
        items = self.look()
        for item in items:
            deliver(item)
        return bool(items)

    # -- activity attempts any engine runs (FleetOptions.share_activities) -------------------

    def _post_task(
        self, key: Key, scheduled: ActivityScheduled, attempt: int, task_queue: str
    ) -> bool:
        """Post an attempt (after its batch committed); False if it must run here."""
        try:
            self._leases.post_task(Task(key[0], key[1], attempt, scheduled, task_queue))
        except StoreError as exc:
            log.warning("flowgen: posting an attempt failed, it runs here: %s", exc)
            return False
        return True

    def _take_tasks(self) -> list[Item]:
        """Take posted attempts of the queues served here, as many as there are free slots.

        Returns the items that pass each through this engine's gate on the loop's thread.
        An attempt waiting there for a permit keeps its slot (and its lease): this engine
        never takes more attempts than it can run.
        """
        with self._lock:
            free = self._slots - len(self._tasks)
        if free <= 0:
            return []
        tasks = self._leases.take_tasks(free, self._loop.gate.task_queues)
        with self._lock:
            self._tasks.update(task.id for task in tasks)
        return [Call(partial(self._admit_task, task)) for task in tasks]

    def _admit_task(self, task: Task) -> None:
        """On the loop's thread: a taken attempt passes the gate (its permits), then runs."""
        scheduled = task.scheduled
        options = self._loop.attempts.options(CallActivity(scheduled.name))
        start = partial(self._start_task, task)
        gate = self._loop.gate
        if gate.free(options):
            start(nothing)
            return
        key = (task.workflow_id, task.run_id)
        now = self._loop.clock.now()
        wanted = partial(self._holds_task, task.id)
        seq, name = scheduled.seq, scheduled.name
        gate.admit(
            Ticket(key, seq, task.attempt, name, options, start, now, wanted=wanted)
        )

    def _holds_task(self, task_id: int) -> bool:
        with self._lock:
            return task_id in self._tasks

    def _start_task(self, task: Task, release: Callable[[], None]) -> None:
        self._loop.jobs.submit(partial(self._run_task, task, release))

    def _run_task(self, task: Task, release: Callable[[], None]) -> None:
        """Perform a posted attempt (on an activity thread); its outcome to the holder."""
        try:
            key = (task.workflow_id, task.run_id)
            attempts = self._loop.attempts
            events = attempts.perform_posted(key, task.scheduled, task.attempt)
            self._leases.finish_task(task, events)
        except StoreError as exc:  # the task's lease lapses: another engine runs it
            log.warning("flowgen: reporting a posted attempt failed: %s", exc)
        finally:
            with self._lock:
                self._tasks.discard(task.id)
            release()  # its permits, once its outcome is posted

    # -- the fleet thread ---------------------------------------------------------------------

    def run(self, running: Callable[[], bool], deliver: Callable[[Item], None]) -> None:
        """The fleet thread: look for work when notified or every poll, until stopped."""
        while running():
            full = False
            try:
                items = self.look()
                full = sum(isinstance(i, Recover) for i in items) >= (
                    self.options.claim_batch
                )
            except StoreError as exc:
                log.warning("flowgen: looking for work failed, trying again: %s", exc)
                items = []
            for item in items:
                deliver(item)
            if full or not running():
                continue  # more free runs may wait
            try:
                self._leases.wait(self._wait_seconds())
            except StoreError as exc:
                log.warning("flowgen: waiting for the fleet failed: %s", exc)
                threading.Event().wait(self.options.poll)

    def _wait_seconds(self) -> float:
        until_renewal = self.options.lease / 3 - (monotonic() - self._renewed)
        return max(0.0, min(self.options.poll, until_renewal))

    def wake(self) -> None:
        """Wake every engine's fleet thread (this one's too, e.g. to stop)."""
        try:
            self._leases.wake()
        except StoreError as exc:
            log.warning("flowgen: notifying the fleet failed: %s", exc)

    def close(self) -> None:
        """Hand every lease back (the engine stops): another engine takes them at once."""
        if not self.options.runs_workflows:
            return
        try:
            self._leases.hand_back()
        except StoreError as exc:  # they lapse instead
            log.warning("flowgen: handing the runs back failed: %s", exc)

    # -- on the decision loop's thread --------------------------------------------------------

    def _drop(self, run_ids: Iterable[str]) -> None:
        """Forget runs another engine holds now: the run table's and the cache's."""
        lost = set(run_ids)
        table = self._loop.table
        for key in [key for key in table.runs if key[1] in lost]:
            del table.runs[key]
            if table.current.get(key[0]) == key[1]:
                del table.current[key[0]]
            self._loop.cache.drop(key)

    def again(self, exc: LeaseLost | MessagesRaced, items: list[Item]) -> list[Item]:
        """A commit was refused, nothing written: the items to apply again at once.

        Lost runs are dropped (`lost`). A batch that closed runs requests came in for is
        applied again later, behind those requests: the ones not delivered yet are
        queued first, and the batch's items after them (`MessagesRaced.pending`).
        """
        if isinstance(exc, LeaseLost):
            return self.lost(exc.run_ids, items)
        if not exc.pending:
            return items  # a request to a run that closed: applied again, it finds that
        wanted = set(exc.pending)
        try:
            messages = [m for m in self._leases.messages() if m.id in wanted]
        except StoreError as error:  # the next look delivers them; the batch waits
            log.warning("flowgen: reading the fleet's messages failed: %s", error)
            messages = []
        with self._lock:
            fresh = [m for m in messages if m.id not in self._in_flight]
            self._in_flight.update(m.id for m in fresh)
        for message in fresh:
            self._loop.inbox.put(self._delivery(message))
        for item in items:  # (the requests in flight were queued before them)
            self._loop.inbox.put(item)
        return []

    def lost(self, run_ids: frozenset[str], items: list[Item]) -> list[Item]:
        """A commit found *run_ids* lost: drop them; the items to apply again."""
        self._drop(run_ids)
        return [
            item
            for item in items
            if not (isinstance(item, Recover) and item.record.run_id in run_ids)
        ]

    @staticmethod
    def runs_elsewhere(record: WorkflowRecord | None) -> bool:
        """True if *record* (read from the store) is a run this engine may not apply to.

        Called for a run the loop does not hold: running in the store means another
        engine holds it, or nobody yet (it will be claimed, with its messages).
        """
        return record is not None and record.status == RunStatus.RUNNING

    def waits_for_code(self, record: WorkflowRecord | None) -> UnknownWorkflow | None:
        """Why a running run no engine holds cannot move here: its code is not registered.

        ``None`` for a run this engine could claim, or that another engine holds, and on
        an engine that runs no workflows. Reads the store only for a run whose code is
        missing here.
        """
        if (
            not self.runs_workflows
            or record is None
            or record.status != RunStatus.RUNNING
            or record.name in self._loop.registry.workflow_names
            or not self._leases.unheld_runs([record.run_id])
        ):
            return None
        return UnknownWorkflow(
            f"no workflow named {record.name!r} is registered in this process, so this "
            f"engine does not claim run {record.run_id!r} of {record.workflow_id!r}: it "
            f"waits, held by no engine, for an engine of the fleet that has its code "
            f"(import the module that defines it)"
        )

    def post(self, item: SignalItem | CancelItem, txn: Txn) -> None:
        """Post a signal or cancel for a run held elsewhere, in the batch."""
        if isinstance(item, SignalItem):
            body = {"name": item.name, "payload": item.payload, "sender": item.sender}
            txn.batch.messages.append(Message(item.workflow_id, None, "signal", body))
        else:
            body = {"reason": item.reason}
            kind: MessageKind = "terminate" if item.terminate else "cancel"
            txn.batch.messages.append(Message(item.workflow_id, None, kind, body))

    def forward(self, item: Feed, txn: Txn) -> None:
        """Post news for a run this engine does not hold, if it still runs."""
        record = self._store.get_run(item.workflow_id, item.run_id)
        if record is None or not self.runs_elsewhere(record):
            return  # late news for a run that has ended
        body: dict[str, JsonValue] = {"event": event_to_dict(item.event)}
        message = Message(item.workflow_id, record.run_id, "feed", body)
        txn.batch.messages.append(message)

    def orphan_closed(self, run: Run, txn: Txn) -> None:
        """A child closed with no parent link here: tell its parent's engine, if it runs."""
        assert run.parent_id is not None
        if self.runs_elsewhere(self._store.get_run(run.parent_id)):
            body: dict[str, JsonValue] = {"child_id": run.workflow_id}
            txn.batch.messages.append(Message(run.parent_id, None, "child", body))

    def start_elsewhere(self, item: Start, txn: Txn) -> Key:
        """Store a new run free, with its first event only, for a worker to run."""
        record = item.record
        txn.batch.runs.append(record)
        started = WorkflowStarted(
            at=record.started_at,
            workflow_id=record.workflow_id,
            run_id=record.run_id,
            name=record.name,
            args=record.args,
            kwargs=record.kwargs,
            parent_id=record.parent_id,
        )
        txn.batch.events.append(EventRow(record.workflow_id, record.run_id, 0, started))
        if item.signal is not None:
            name, payload = item.signal
            self.post(SignalItem(record.workflow_id, name, payload), txn)
        return (record.workflow_id, record.run_id)
