"""`Engine`'s schedule methods: thin, checked entries into `flowgen._runtime.schedules`.

A mixin so the engine's module stays the life cycle and the run API; every rule about
schedules (catching up, overlap, jitter, the firing's id) lives in
`flowgen._runtime.schedules`, and this module only checks arguments and delegates.
"""

from __future__ import annotations

from datetime import timedelta

from flowgen._runtime.items import WorkflowFn
from flowgen._runtime.schedules import Definition, Scheduler
from flowgen._stores.protocol import ScheduleRecord

__all__ = ["ScheduleMethods"]


class ScheduleMethods:
    """The schedule methods of `Engine` (see `flowgen._runtime.schedules` for the rules)."""

    _schedules: Scheduler

    def schedule(
        self,
        schedule_id: str,
        workflow: WorkflowFn | str,
        /,
        *args: object,
        cron: str | None = None,
        every: timedelta | float | None = None,
        timezone: str | None = None,
        overlap: str = "skip",
        jitter: timedelta | float | None = None,
        catchup_window: timedelta | float | None = None,
        **kwargs: object,
    ) -> ScheduleRecord:
        """Start *workflow* on a schedule, durably: it survives restarts.

        ``engine.schedule("nightly-report", report, "eu", cron="0 3 * * *")``. Each
        firing starts a run with the id ``<schedule_id>/<scheduled time>`` (e.g.
        ``nightly-report/2031-03-08T03:00:00Z``), tagged ``schedule=<schedule_id>``; that
        id makes a firing start once, even across a crash or engines racing for it.

        Calling it again with the same id and definition changes nothing (so an
        application may call it at every start); with another definition, the schedule
        takes it and fires next at its first time after now (a pause stays).

        Args:
            schedule_id: The schedule's id (a non-empty `str`).
            workflow: The workflow function, or its registered name.
            *args: Positional arguments of every run (serializable).
            cron: A 5-field cron expression (``"0 3 * * *"``, ``"*/15 9-17 * * mon-fri"``,
                ``"@daily"``), read in *timezone*.
            every: Or an interval (a `timedelta` or seconds, whole seconds): firings at
                its multiples since the Unix epoch, in UTC.
            timezone: The IANA zone *cron* is read in; UTC by default.
            overlap: While the previous run of the schedule still runs, a firing is
                skipped (``"skip"``), kept until it closes (``"buffer_one"``, at most one),
                or started anyway (``"allow"``).
            jitter: Delay each firing by a fixed amount in ``[0, jitter)`` derived from
                the schedule id and the scheduled time (so every engine agrees).
            catchup_window: After downtime, start the firings missed by at most this
                long, in order; by default only the latest missed firing is started.
            **kwargs: Keyword arguments of every run (serializable).

        Returns:
            The schedule's row as stored.

        Raises:
            ValueError: Neither or both of *cron* and *every*; a malformed cron
                expression (the message names the field), an unknown time zone, an
                *overlap* not listed above, a negative jitter. Nothing was stored.
            TypeError: An argument cannot be serialized (the message names it).
            UnknownWorkflow: No workflow of that name is registered.
            UsageError: The engine's store keeps no schedules.
        """
        when = Definition.check(
            cron=cron,
            every=every,
            timezone=timezone,
            overlap=overlap,
            jitter=jitter,
            catchup_window=catchup_window,
        )
        return self._schedules.define(schedule_id, workflow, args, kwargs, when)

    def schedules(self) -> list[ScheduleRecord]:
        """Every schedule of the store, by id (paused ones too)."""
        return self._schedules.list()

    def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        """The schedule *schedule_id*, as stored.

        Raises:
            UnknownSchedule: No schedule has this id.
        """
        return self._schedules.get(schedule_id)

    def pause_schedule(self, schedule_id: str, note: str = "") -> ScheduleRecord:
        """Pause a schedule: it starts nothing until unpaused. Pausing twice is harmless.

        Args:
            schedule_id: The schedule.
            note: Why (stored, shown by ``flowgen schedules``).

        Raises:
            UnknownSchedule: No schedule has this id.
        """
        return self._changed(schedule_id, "pause", note)

    def unpause_schedule(self, schedule_id: str, note: str = "") -> ScheduleRecord:
        """Unpause a schedule: it fires next at its first scheduled time after now.

        What came due while it was paused is not caught up.

        Raises:
            UnknownSchedule: No schedule has this id.
        """
        return self._changed(schedule_id, "unpause", note)

    def trigger_schedule(self, schedule_id: str) -> str | None:
        """Start a run of the schedule now, under its overlap policy (Temporal's trigger).

        The trigger is recorded first (the row's ``triggered_at``), so it survives a crash:
        an engine that registers the workflow handles it, at once here if this one does.
        It starts a run with the id ``<schedule_id>/<now>`` (tagged like every firing,
        and counted as the schedule's latest run) unless the previous run still runs:
        then ``overlap="skip"`` skips it (counted in ``skipped``), ``"buffer_one"`` keeps
        it until that run closes, ``"allow"`` starts it anyway. A paused schedule is
        triggered too. Its regular firings are not moved. A second trigger before the
        first was handled merges into it.

        Args:
            schedule_id: The schedule.

        Returns:
            The workflow id of the run started, or ``None`` if none started now (skipped,
            buffered, or waiting for an engine that registers the workflow).

        Raises:
            UnknownSchedule: No schedule has this id.
            UsageError: The engine's store keeps no schedules, or the engine is closed.
        """
        return self._schedules.trigger(schedule_id)

    def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule. Runs it started are left as they are.

        Raises:
            UnknownSchedule: No schedule has this id.
        """
        self._schedules.change(schedule_id, "delete")

    def _changed(self, schedule_id: str, action: str, note: str) -> ScheduleRecord:
        row = self._schedules.change(schedule_id, action, note)
        assert row is not None  # only a delete answers None
        return row
