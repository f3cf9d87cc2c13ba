"""Schedules: start a workflow on a cron expression or an interval, durably.

Theory of operation
===================

A schedule is a row of ``schedules`` (`ScheduleRecord`): what to start (a workflow and its
encoded arguments), when (`flowgen._runtime.cron`: a cron expression in a time zone, or an
interval), and where it has got to (``next_at``, the next scheduled time not yet handled).
The `Scheduler` of each engine keeps a copy of the rows, and when a firing's time comes
it handles it against the stored row and writes the row back.

Rules
=====

* **A firing's run has a deterministic id**: ``<schedule id>/<scheduled time>`` (UTC, ISO
  8601, e.g. ``nightly/2031-03-08T03:00:00Z``), started with ``on_conflict="fail"``, and
  the schedule's row moves past that time only after the start is durable. So a crash
  between the two, or two engines racing for the same firing (a PostgreSQL fleet), starts
  the run once: the second start finds the id taken (`WorkflowAlreadyExists`) and only
  moves the row on. Runs are tagged ``schedule=<schedule id>``.
* **Rows change by compare-and-set** on ``revision`` (`KeepsSchedules`): a change decided
  on a stale row is dropped and the row read again, never written over another engine's.
* **One engine fires a schedule at a time**: firing holds the store's firing lock for the
  schedule (`KeepsSchedules.lock_firing`: an advisory lock on PostgreSQL, which a dead
  engine loses with its connection; always granted by a store one process owns), and reads
  the row again under it. An engine that does not get it leaves the firing to the holder.
  Together with the deterministic id this keeps a firing to one run even if the store's
  check of a taken id could race.
* **When a firing is due** (jitter, catching up, what counts as skipped): the rules of
  `flowgen._runtime.schedule_times`.
* **Overlap** (what a firing does while the schedule's previous run is still running):
  ``"skip"`` (the default) skips it; ``"buffer_one"`` keeps it (at most one: later ones are
  skipped) and starts it once the previous run has closed; ``"allow"`` starts it anyway.
* **Pause**: a paused schedule starts nothing; unpausing resumes at the next scheduled time
  after now (what came due while paused is not caught up).
* **A workflow this engine does not know** (another process's code, a CLI engine) is left
  alone: its schedule fires on an engine that registers it.
* **Driving by hand**: `Engine.run_until_idle` fires what is due at the clock's time; its
  autojump goes to workflow timers only (a schedule always has a next firing, so jumping
  to them would never end). Move a `ManualClock` (``advance``, ``set``) to fire them.
* Threads: in the background a thread of its own (``flowgen-schedules``) runs `Scheduler.run`;
  firing starts runs through the engine like any caller. ``_records`` and every change of
  a row are guarded by ``Scheduler._lock``, never held by the decision loop.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import attrs

from flowgen._render.html import schedule_html
from flowgen._runtime.arguments import id_argument, text_argument
from flowgen._runtime.clock import monotonic
from flowgen._runtime.cron import Every, time_zone
from flowgen._runtime.items import Start, WorkflowFn
from flowgen._runtime.schedule_times import (
    cadence_of,
    describe_cadence,
    due_times,
    fires,
    firing_id,
    jitter_of,
    missed,
    parse_cron,
)
from flowgen._runtime.tracing import origin_of
from flowgen._stores.protocol import KeepsSchedules, ScheduleRecord, WorkflowRecord
from flowgen._stores.schedule_rows import OVERLAPS
from flowgen._vocabulary.durations import check_at_most_max
from flowgen._vocabulary.errors import (
    UnknownSchedule,
    UnknownWorkflow,
    UsageError,
    WorkflowAlreadyExists,
)
from flowgen._vocabulary.events import JsonValue
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:
    from flowgen._runtime.engine import Engine

__all__ = [
    "ACTIONS",
    "Scheduler",
    "change_schedule",
    "Definition",
    "cadence_of",
    "check_schedule_id",
    "describe_cadence",
    "due_times",
    "firing_id",
    "jitter_of",
]

log = logging.getLogger("flowgen")

REFRESH_SECONDS: Final = 5.0
"""How often (real seconds) a background scheduler re-reads the rows other engines wrote."""
POLL_SECONDS: Final = 0.5
"""How often a background scheduler looks whether a buffered firing's predecessor closed."""
RETRY_SECONDS: Final = 10.0
"""How long a schedule whose firing failed (a store error) waits before it is tried again."""


def _schedule_repr_html(schedule: ScheduleRecord) -> str:
    return schedule_html(schedule, describe_cadence(schedule))


# Jupyter shows a schedule's row as a table: assigned from here (as the events' renderings
# are from flowgen._render), since the store layer never imports a renderer.
setattr(ScheduleRecord, "_repr_html_", _schedule_repr_html)  # noqa: B010


def _seconds(value: object, what: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (timedelta, int, float)):
        raise TypeError(
            f"{what} must be a timedelta or a number of seconds, got {value!r}"
        )
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if seconds < 0 or (positive and seconds == 0) or seconds != seconds:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{what} must be {bound} seconds, got {value!r}")
    check_at_most_max(seconds, what, value)
    return float(seconds)


@attrs.frozen
class Definition:
    """What a caller asked for, checked: the fields of a row that say what and when."""

    workflow: str
    args: list[JsonValue]
    kwargs: dict[str, JsonValue]
    cron: str | None
    every_seconds: int | None
    timezone: str
    overlap: str
    jitter_seconds: float
    catchup_window_seconds: float | None

    @classmethod
    def check(
        cls,
        *,
        cron: str | None,
        every: timedelta | float | None,
        timezone: str | None,
        overlap: str,
        jitter: timedelta | float | None,
        catchup_window: timedelta | float | None,
    ) -> Definition:
        """The when-part of a definition (the workflow and arguments are filled later).

        Raises:
            ValueError, TypeError: An argument is wrong; the message names it.
        """
        if (cron is None) == (every is None):
            raise ValueError(
                "a schedule needs exactly one of cron='0 3 * * *' or every=timedelta(...)"
                + (", not both" if cron is not None else "")
            )
        if every is not None and timezone is not None:
            raise ValueError("timezone= applies to cron= only (every= counts in UTC)")
        zone = "UTC" if timezone is None else timezone
        time_zone(zone)
        every_seconds = None
        if cron is not None:
            parse_cron(cron, zone)
        else:
            assert every is not None
            every_seconds = Every.parse(every).seconds
        if overlap not in OVERLAPS:
            raise ValueError(
                f"overlap must be one of {', '.join(map(repr, OVERLAPS))}, got {overlap!r}"
            )
        return cls(
            workflow="",
            args=[],
            kwargs={},
            cron=cron,
            every_seconds=every_seconds,
            timezone=zone,
            overlap=overlap,
            jitter_seconds=0.0
            if jitter is None
            else _seconds(jitter, "jitter", positive=False),
            catchup_window_seconds=None
            if catchup_window is None
            else _seconds(catchup_window, "catchup_window", positive=True),
        )

    def same_as(self, schedule: ScheduleRecord) -> bool:
        """Whether *schedule* already has this definition."""
        return all(
            getattr(schedule, field.name) == getattr(self, field.name)
            for field in attrs.fields(Definition)
        )


ACTIONS: Final = ("pause", "unpause", "trigger", "delete")
"""What `change_schedule` does to a schedule (and ``flowgen schedule ACTION ID``)."""


def _paused(row: ScheduleRecord, note: str, now: datetime) -> ScheduleRecord:
    return attrs.evolve(row, paused=True, note=note)


def _unpaused(row: ScheduleRecord, note: str, now: datetime) -> ScheduleRecord:
    if not row.paused:
        return row
    next_at = cadence_of(row).next_after(
        now
    )  # what came due while paused is not caught up
    return attrs.evolve(
        row, paused=False, note=note, next_at=next_at, fires_at=fires(row, next_at)
    )


def _triggered(row: ScheduleRecord, note: str, now: datetime) -> ScheduleRecord:
    if row.triggered_at is not None:
        return row  # one trigger waits at a time: a second merges into it
    return attrs.evolve(row, triggered_at=now)


_CHANGES: Final = {"pause": _paused, "unpause": _unpaused, "trigger": _triggered}


def change_schedule(
    store: KeepsSchedules, schedule_id: str, action: str, note: str, now: datetime
) -> ScheduleRecord | None:
    """Pause, unpause, trigger or delete a stored schedule at *now*; the row as written.

    A trigger only records that a run is wanted (``triggered_at``); the engine that fires
    the schedule handles it (see the module's rules).

    A delete answers ``None``. Changing nothing (pausing a paused schedule) writes nothing.

    The one copy of these rules: the engine and the command line (on a database no
    engine serves) both change schedules through it, by compare-and-set.

    Raises:
        UnknownSchedule: No schedule has this id.
        ValueError: *action* is not one of `ACTIONS`.
    """
    check_schedule_id(schedule_id)
    text_argument(note, "the note")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if action == "delete":
        if not store.delete_schedule(schedule_id):
            raise UnknownSchedule(f"no schedule with id {schedule_id!r}")
        return None
    change = _CHANGES[action]
    while True:
        rows = store.load_schedules(schedule_id)
        if not rows:
            raise UnknownSchedule(f"no schedule with id {schedule_id!r}")
        (row,) = rows
        changed = change(row, note, now)
        if changed == row:
            return row
        changed = attrs.evolve(changed, updated_at=now, revision=row.revision + 1)
        if store.save_schedule(changed, expected_revision=row.revision):
            return changed


def check_schedule_id(value: object) -> str:
    """*value* as a schedule id: a non-empty `str` a store can hold."""
    return id_argument(value, "schedule id")


def _looked_at(schedule: ScheduleRecord) -> datetime:
    """When *schedule* next needs handling: its next firing, or its trigger (due now)."""
    if schedule.triggered_at is None:
        return schedule.fires_at
    return min(schedule.triggered_at, schedule.fires_at)


@attrs.define
class _Progress:
    """What handling one schedule's row has changed so far (see `Scheduler._handle`)."""

    last: str | None
    fired_at: datetime | None
    buffered: datetime | None
    skipped: int

    def started(self, workflow_id: str, now: datetime) -> None:
        self.last, self.fired_at = workflow_id, now


class Scheduler:
    """One engine's view of the schedules in its store, and the firing of them.

    Args:
        engine: The engine whose store holds the schedules and whose runs they start.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        store = engine.store
        self._store: KeepsSchedules | None = (
            store if isinstance(store, KeepsSchedules) else None
        )
        self._lock = threading.RLock()
        # Guarded by _lock: the rows as last read or written, by id; ids whose firing
        # failed, with when to try again; ids whose workflow this engine lacks (logged once).
        self._records: dict[str, ScheduleRecord] = {}
        self._retry_at: dict[str, datetime] = {}
        self._foreign: set[str] = set()
        # Guarded by _lock: the last runs of schedules known to have closed, and the runs
        # this engine started (see `_running`); each holds at most a few ids per schedule.
        self._closed: set[str] = set()
        self._started: set[str] = set()
        # Guarded by _lock: the run a trigger started, by schedule id, for `trigger`.
        self._triggered: dict[str, str] = {}
        self._refreshed = monotonic()
        self.wakeup = threading.Event()
        """Set when a schedule changed or the engine stops: the thread looks again."""
        if self._store is not None:
            self._records = {s.schedule_id: s for s in self._store.load_schedules()}

    # -- the API (Engine's thin methods) ------------------------------------------------------

    def _keeps(self) -> KeepsSchedules:
        if self._engine._closed:
            raise UsageError("this engine is closed")
        if self._store is None:
            raise UsageError(
                f"this engine's store ({type(self._engine.store).__name__}) keeps no "
                f"schedules"
            )
        return self._store

    def define(
        self,
        schedule_id: str,
        workflow: WorkflowFn | str,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        when: Definition,
    ) -> ScheduleRecord:
        """Create the schedule, or change an existing one's definition (see `Engine.schedule`)."""
        store = self._keeps()
        check_schedule_id(schedule_id)
        # The engine's own checks and encoding of a start (the one copy of those rules).
        start = self._engine._start_item(
            workflow, args, kwargs, firing_id(schedule_id, self._now()), "fail", None
        )
        definition = attrs.evolve(
            when,
            workflow=start.record.name,
            args=start.record.args,
            kwargs=start.record.kwargs,
        )
        with self._lock:
            while True:
                now = self._now()
                stored = self._read(schedule_id)
                if stored is not None and definition.same_as(stored):
                    return stored
                next_at = cadence_of(definition).next_after(now)
                fields = attrs.asdict(definition, recurse=False)
                if stored is None:
                    row = ScheduleRecord(
                        schedule_id=schedule_id,
                        paused=False,
                        note="",
                        next_at=next_at,
                        fires_at=next_at,
                        created_at=now,
                        updated_at=now,
                        **fields,
                    )
                else:
                    row = attrs.evolve(
                        stored,
                        next_at=next_at,
                        buffered_at=None,
                        updated_at=now,
                        revision=stored.revision + 1,
                        **fields,
                    )
                row = attrs.evolve(row, fires_at=fires(row, next_at))
                expected = None if stored is None else stored.revision
                if store.save_schedule(row, expected_revision=expected):
                    self._remember(row)
                    return row

    def list(self) -> list[ScheduleRecord]:
        """Every schedule in the store, by id (read afresh)."""
        rows = self._keeps().load_schedules()
        with self._lock:
            self._records = {s.schedule_id: s for s in rows}
        return rows

    def get(self, schedule_id: str) -> ScheduleRecord:
        """The stored schedule *schedule_id*.

        Raises:
            UnknownSchedule: No schedule has this id.
        """
        check_schedule_id(schedule_id)
        self._keeps()
        with self._lock:
            row = self._read(schedule_id)
        if row is None:
            raise UnknownSchedule(f"no schedule with id {schedule_id!r}")
        return row

    def change(
        self, schedule_id: str, action: str, note: str = ""
    ) -> ScheduleRecord | None:
        """Pause, unpause, trigger or delete a schedule (see `change_schedule`).

        A trigger is handled at once if this engine registers the schedule's workflow
        (`trigger`).
        """
        if action == "trigger":
            self.trigger(schedule_id)
            return self.get(schedule_id)
        store = self._keeps()
        with self._lock:
            row = change_schedule(store, schedule_id, action, note, self._now())
            if row is None:
                self._records.pop(schedule_id, None)
                self._retry_at.pop(schedule_id, None)
            else:
                self._remember(row)
            return row

    def trigger(self, schedule_id: str) -> str | None:
        """Record a trigger and handle it now: the run's id, or ``None`` if none started."""
        store = self._keeps()
        with self._lock:
            row = change_schedule(store, schedule_id, "trigger", "", self._now())
            assert row is not None
            assert row.triggered_at is not None
            self._remember(row)
            self._triggered.pop(schedule_id, None)
            self._fire(schedule_id)
            # None: skipped, buffered, or it waits (another engine fires the schedule now,
            # or this one does not register its workflow).
            return self._triggered.pop(schedule_id, None)

    # -- firing -----------------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """When a schedule next needs looking at (``None``: none will)."""
        with self._lock:
            times = [
                self._retry_at.get(s.schedule_id, _looked_at(s))
                for s in self._records.values()
                if (not s.paused or s.triggered_at is not None)
                and s.schedule_id not in self._foreign
            ]
            if any(s.buffered_at is not None for s in self._records.values()):
                times.append(self._now() + timedelta(seconds=POLL_SECONDS))
        return min(times, default=None)

    def fire_due(self) -> bool:
        """Handle every firing due now; whether a run was started."""
        if self._store is None:
            return False
        now = self._now()
        with self._lock:
            candidates = [
                s.schedule_id
                for s in self._records.values()
                if s.schedule_id not in self._foreign
                and self._retry_at.get(s.schedule_id, now) <= now
                and (
                    s.triggered_at is not None
                    or (
                        not s.paused
                        and (s.fires_at <= now or s.buffered_at is not None)
                    )
                )
            ]
            started = False
            for schedule_id in candidates:
                try:
                    started |= self._fire(schedule_id)
                except Exception as exc:  # one schedule, not the engine
                    log.exception(
                        "schedule %r: firing failed, tried again in %g s: %r",
                        schedule_id,
                        RETRY_SECONDS,
                        exc,
                    )
                    self._retry_at[schedule_id] = now + timedelta(seconds=RETRY_SECONDS)
        return started

    def _fire(self, schedule_id: str) -> bool:
        """Handle what is due of one schedule against its stored row (under the lock)."""
        assert self._store is not None
        while True:
            self._retry_at.pop(schedule_id, None)
            if not self._store.lock_firing(schedule_id):
                # Another engine is firing it (its write moves the row on): look again
                # in a moment, not in a busy loop.
                self._retry_at[schedule_id] = self._now() + timedelta(
                    seconds=POLL_SECONDS
                )
                return False
            try:
                # Read under the lock: what the last holder of it wrote.
                done, started = self._fire_locked(self._read(schedule_id))
            finally:
                self._store.unlock_firing(schedule_id)
            if done:
                return started
            # Another engine (or call) changed the row meanwhile: decide again on it.

    def _fire_locked(self, row: ScheduleRecord | None) -> tuple[bool, bool]:
        """Handle *row*, holding its firing lock: (whether it is done, whether started)."""
        assert self._store is not None
        if row is None or (row.paused and row.triggered_at is None):
            return True, False
        if row.workflow not in self._engine.registry.workflow_names:
            if row.schedule_id not in self._foreign:
                self._foreign.add(row.schedule_id)
                log.warning(
                    "schedule %r starts workflow %r, which this engine does not "
                    "register: it fires on an engine that does",
                    row.schedule_id,
                    row.workflow,
                )
            return True, False
        now = self._now()
        changed, started = self._handle(row, now)
        if changed == row:
            return True, started
        changed = attrs.evolve(changed, updated_at=now, revision=row.revision + 1)
        saved = self._store.save_schedule(changed, expected_revision=row.revision)
        if saved:
            self._remember(changed)
        return saved, started

    def _handle(
        self, row: ScheduleRecord, now: datetime
    ) -> tuple[ScheduleRecord, bool]:
        """*row* after handling what is due at *now*, and whether a run was started.

        In order: a buffered firing whose predecessor closed, a trigger, then the firings
        due (a paused schedule handles only its trigger).
        """
        progress = _Progress(
            row.last_workflow_id, row.last_fired_at, row.buffered_at, row.skipped
        )
        started = False
        buffered = progress.buffered
        if not row.paused and buffered is not None and not self._running(progress.last):
            progress.started(self._start(row, buffered), now)
            progress.buffered = None
            started = True
        if row.triggered_at is not None and self._firing(
            row, row.triggered_at, now, progress, triggered=True
        ):
            assert progress.last is not None
            self._triggered[row.schedule_id] = progress.last
            started = True
        next_at = row.next_at
        if not row.paused:
            cadence = cadence_of(row)
            due, next_at = due_times(row, cadence, now)
            progress.skipped += missed(row, cadence, due, next_at)
            for scheduled in due:
                started |= self._firing(row, scheduled, now, progress)
        if progress.last != row.last_workflow_id and row.last_workflow_id is not None:
            self._closed.discard(row.last_workflow_id)  # no schedule asks again
        changed = attrs.evolve(
            row,
            next_at=next_at,
            fires_at=fires(row, next_at),
            buffered_at=progress.buffered,
            last_workflow_id=progress.last,
            last_fired_at=progress.fired_at,
            skipped=progress.skipped,
            triggered_at=None,
        )
        return changed, started

    def _firing(
        self,
        row: ScheduleRecord,
        scheduled: datetime,
        now: datetime,
        progress: _Progress,
        *,
        triggered: bool = False,
    ) -> bool:
        """One firing (or trigger) at *scheduled*, under the overlap policy: whether it started."""
        if row.overlap != "allow" and self._running(progress.last):
            if row.overlap == "buffer_one" and progress.buffered is None:
                progress.buffered = scheduled
            else:
                progress.skipped += 1
                log.info(
                    "schedule %r: firing %s skipped, %r is still running (overlap=%r)",
                    row.schedule_id,
                    scheduled.isoformat(),
                    progress.last,
                    row.overlap,
                )
            return False
        progress.started(self._start(row, scheduled, triggered=triggered), now)
        return True

    def _running(self, workflow_id: str | None) -> bool:
        """Whether the run *workflow_id* (a schedule's last) is still running.

        Answered from the decision loop's run table when it can be (a read of the store
        would flush DuckDB's journal at every firing): the table holds every run this
        engine started and is running; one it no longer holds has closed. Only a run the
        engine did not start since it opened (before a restart, or another engine's) is
        looked up in the store, and a closed one is remembered (a run never reopens).
        """
        if workflow_id is None or workflow_id in self._closed:
            return False
        loop = self._engine._loop
        with loop.lock:  # the run table belongs to the decision loop
            run = loop.table.current_run(workflow_id)
            status: str | None = None if run is None else run.status
        if status is None and workflow_id in self._started:
            status = RunStatus.COMPLETED  # (some closed status: the table let it go)
        if status is None:
            try:
                status = self._engine._status(workflow_id)
            except UnknownWorkflow:
                status = RunStatus.COMPLETED  # no run at all: nothing overlaps it
        if status == RunStatus.RUNNING:
            return True
        self._closed.add(workflow_id)
        self._started.discard(workflow_id)
        return False

    def _start(
        self, row: ScheduleRecord, scheduled: datetime, *, triggered: bool = False
    ) -> str:
        """Start the run of the firing at *scheduled* (once: see the module's rules).

        Traced, its span has ``flowgen.origin = "schedule <id>"``; a trigger's run is a
        child of the span current where `trigger` was called.
        """
        engine = self._engine
        workflow_id = firing_id(row.schedule_id, scheduled)
        record = WorkflowRecord(
            workflow_id=workflow_id,
            run_id=uuid.uuid4().hex,
            name=row.workflow,
            status=RunStatus.RUNNING,
            args=row.args,
            kwargs=row.kwargs,
            started_at=self._now(),
            tags={"schedule": row.schedule_id},
        )
        fn = engine.registry.workflow(row.workflow).fn
        trace_parent = None
        if engine._telemetry is not None:
            caller = engine._telemetry.caller_context() if triggered else None
            trace_parent = {
                **(caller or {}),
                **origin_of(f"schedule {row.schedule_id}", None),
            }
        try:
            engine._submit(Start(record, fn, "fail", trace_parent=trace_parent))
            self._started.add(workflow_id)
        except WorkflowAlreadyExists:
            pass  # started before a crash, or by another engine: the firing is done
        return workflow_id

    # -- the thread ---------------------------------------------------------------------------

    def run(self, running: Callable[[], bool]) -> None:
        """The background thread: fire schedules as they come due until *running* is false."""
        clock = self._engine.clock
        while running():
            self.wakeup.clear()
            self.fire_due()
            if monotonic() - self._refreshed >= REFRESH_SECONDS:
                try:
                    self._refresh()
                except Exception as exc:  # noqa: BLE001  # a failed read: the engine goes on
                    log.warning("schedules: cannot re-read the schedules: %r", exc)
            due = self.next_due()
            if due is None:
                # Nothing to fire: wait for a schedule to be made here (a poke) or for the
                # next re-read, both real time (the re-read is), not the engine's clock.
                self.wakeup.wait(REFRESH_SECONDS)
                continue
            limit = clock.now() + timedelta(seconds=REFRESH_SECONDS)
            clock.sleep_until(min(due, limit), self.wakeup)

    def _refresh(self) -> None:
        """Re-read every row: schedules other engines made, changed or deleted."""
        self._refreshed = monotonic()
        if self._store is not None:
            rows = self._store.load_schedules()
            with self._lock:
                self._records = {s.schedule_id: s for s in rows}

    # -- helpers --------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._engine.clock.now()

    def _read(self, schedule_id: str) -> ScheduleRecord | None:
        assert self._store is not None
        rows = self._store.load_schedules(schedule_id)
        row = rows[0] if rows else None
        if row is None:
            self._records.pop(schedule_id, None)
        else:
            self._records[schedule_id] = row
        return row

    def _remember(self, row: ScheduleRecord) -> None:
        self._records[row.schedule_id] = row
        self.wakeup.set()
