"""The ``schedules`` table's rows and statements, shared by the DuckDB and PostgreSQL stores.

Rules:

* One row per schedule; its columns are `ScheduleRecord`'s fields, in `COLUMNS` order
  (documented in ``docs/sql.md``). ``args`` and ``kwargs`` are JSON; times are timestamps
  with a time zone, read back as epoch microseconds (exact, and the same on both stores).
* Every write is compare-and-set on ``revision`` (see `KeepsSchedules`): an insert does
  nothing if the id exists, an update only applies over the revision it names. The answer
  is how many rows changed, so the caller knows whether it won.
* The statements differ between the stores only in their placeholder (``?`` or ``%s``)
  and how a timestamp becomes microseconds, given by the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs

from flowgen._stores.codec import dumps
from flowgen._stores.protocol import ScheduleRecord

__all__ = [
    "COLUMNS",
    "OVERLAPS",
    "Statements",
    "schedule_from_row",
    "schedule_row",
    "statements",
    "update_parameters",
]

OVERLAPS: Final = ("skip", "buffer_one", "allow")
"""The values of ``schedules.overlap`` (the one list; the runtime checks against it)."""

COLUMNS: Final = tuple(field.name for field in attrs.fields(ScheduleRecord))
"""The table's columns, in `ScheduleRecord` order."""

_TIMES: Final = frozenset(
    (
        "next_at",
        "fires_at",
        "created_at",
        "updated_at",
        "buffered_at",
        "last_fired_at",
        "triggered_at",
    )
)
_JSON: Final = frozenset(("args", "kwargs"))
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@attrs.frozen
class Statements:
    """The SQL of one store's dialect."""

    insert: str
    update: str
    select: str
    delete: str

    def save(
        self, schedule: ScheduleRecord, expected_revision: int | None
    ) -> tuple[str, list[Any]]:
        """The statement and parameters that save *schedule* (see `KeepsSchedules`).

        A new schedule (*expected_revision* ``None``) is inserted unless its id exists;
        a changed one is updated only if its stored revision is still *expected_revision*.
        """
        if expected_revision is None:
            return self.insert, schedule_row(schedule)
        return self.update, update_parameters(schedule, expected_revision)


def statements(
    placeholder: str, micros: Callable[[str], str], text: Callable[[str], str]
) -> Statements:
    """The statements, with *placeholder* for each parameter.

    Args:
        placeholder: ``?`` (DuckDB) or ``%s`` (psycopg).
        micros: A timestamp column as epoch microseconds, in the store's SQL.
        text: A JSON column as its text, in the store's SQL.
    """
    names = ", ".join(COLUMNS)
    marks = ", ".join(placeholder for _ in COLUMNS)
    settings = ", ".join(f"{c} = {placeholder}" for c in COLUMNS if c != "schedule_id")
    reads = ", ".join(
        micros(c) if c in _TIMES else text(c) if c in _JSON else c for c in COLUMNS
    )
    return Statements(
        insert=(
            f"INSERT INTO schedules ({names}) VALUES ({marks}) "
            "ON CONFLICT (schedule_id) DO NOTHING"
        ),
        update=(
            f"UPDATE schedules SET {settings} "
            f"WHERE schedule_id = {placeholder} AND revision = {placeholder}"
        ),
        select=f"SELECT {reads} FROM schedules",
        delete=f"DELETE FROM schedules WHERE schedule_id = {placeholder}",
    )


def schedule_row(schedule: ScheduleRecord) -> list[Any]:
    """The row of *schedule*, in `COLUMNS` order (JSON columns as text)."""
    values = attrs.astuple(schedule, recurse=False)
    return [
        dumps(value) if name in _JSON else value
        for name, value in zip(COLUMNS, values, strict=True)
    ]


def update_parameters(schedule: ScheduleRecord, expected_revision: int) -> list[Any]:
    """The parameters of `Statements.update` (every column but the id, then the check)."""
    row = schedule_row(schedule)
    return [*row[1:], schedule.schedule_id, expected_revision]


def schedule_from_row(row: tuple[Any, ...]) -> ScheduleRecord:
    """The `ScheduleRecord` of a row read with `Statements.select`."""
    fields: dict[str, Any] = {}
    for name, value in zip(COLUMNS, row, strict=True):
        if name in _TIMES:
            value = None if value is None else _EPOCH + timedelta(microseconds=value)
        elif name in _JSON:
            value = json.loads(value)
        fields[name] = value
    return ScheduleRecord(**fields)
