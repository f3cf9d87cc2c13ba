"""The commands on schedules: ``flowgen schedules``, ``flowgen schedule pause|unpause|trigger|delete``.

Like ``ls`` and ``signal``, they go through the engine that holds the file when one serves
it (the control socket), and otherwise open the database's store themselves (no engine, no
workflow code): ``schedules`` reads the ``schedules`` table, and the changes are made by
`change_schedule`, the rules the engine uses, at the current time. On PostgreSQL they work
beside running engines, which see a change when they next read the row. A trigger made
without an engine is recorded and waits for the next engine that serves the database.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from flowgen._runtime.control import schedule_from_json
from flowgen._runtime.schedules import change_schedule, describe_cadence
from flowgen._stores.locations import is_postgres_url
from flowgen._stores.protocol import KeepsSchedules, ScheduleRecord
from flowgen.cli.common import (
    EXIT_OK,
    existing_db,
    open_store,
    through_engine,
)
from flowgen.cli.console import Output
from flowgen.cli.table import format_timestamp

__all__ = ["cmd_schedule", "cmd_schedules"]

_COLUMNS = (
    "id",
    "workflow",
    "when",
    "overlap",
    "state",
    "next (UTC)",
    "last run",
    "skipped",
)


def cmd_schedules(args: argparse.Namespace) -> int:
    """``flowgen schedules``: every schedule, by id."""
    remote: Any = through_engine(args, "schedules")
    if remote is not None:
        schedules = [schedule_from_json(s) for s in remote]
    else:
        schedules = _read_schedules(args)
    out = Output()
    if not schedules:
        out.line("no schedules yet")
        return EXIT_OK
    out.table(_COLUMNS, [_row(s) for s in schedules])
    return EXIT_OK


def _schedule_store(args: argparse.Namespace) -> KeepsSchedules:
    """The store of the database, without an engine (on PostgreSQL, beside running ones)."""
    path = existing_db(args)
    if is_postgres_url(path):
        from flowgen._stores.postgres_store import PostgresStore

        return PostgresStore(path)
    return open_store(args)


def _read_schedules(args: argparse.Namespace) -> list[ScheduleRecord]:
    store = _schedule_store(args)
    try:
        return store.load_schedules()
    finally:
        store.close()  # type: ignore[attr-defined]


def _row(schedule: ScheduleRecord) -> tuple[str, ...]:
    state = "paused" if schedule.paused else "active"
    if schedule.note:
        state += f" ({schedule.note})"
    if schedule.triggered_at is not None:
        state += ", triggered"
    return (
        schedule.schedule_id,
        schedule.workflow,
        describe_cadence(schedule),
        schedule.overlap,
        state,
        ""
        if schedule.paused
        else format_timestamp(schedule.fires_at, seconds_only=True),
        schedule.last_workflow_id or "",
        str(schedule.skipped),
    )


def cmd_schedule(args: argparse.Namespace) -> int:
    """``flowgen schedule pause|unpause|trigger|delete ID``."""
    remote: Any = through_engine(
        args, "schedule", action=args.action, id=args.id, note=args.note
    )
    out = Output()
    row: ScheduleRecord | None
    if remote is None:
        store = _schedule_store(args)
        try:
            row = change_schedule(
                store, args.id, args.action, args.note, datetime.now(UTC)
            )
        finally:
            store.close()  # type: ignore[attr-defined]
    elif args.action == "delete":
        row = None  # the engine answered {"deleted": id}
    else:
        row = schedule_from_json(remote)
    if args.action == "trigger":
        assert row is not None  # only a delete answers None
        out.line(f"schedule {args.id!r} triggered: {_trigger_outcome(row)}")
        return EXIT_OK
    done = {"pause": "paused", "unpause": "unpaused", "delete": "deleted"}
    out.line(f"schedule {args.id!r} {done[args.action]}")
    return EXIT_OK


def _trigger_outcome(row: ScheduleRecord) -> str:
    if row.triggered_at is not None:
        return "recorded; the next engine that serves this database and runs its workflow starts it"
    if row.buffered_at is not None:
        return f"buffered until {row.last_workflow_id} closes (overlap='buffer_one')"
    return f"latest run {row.last_workflow_id}, {row.skipped} firing(s) skipped so far"
