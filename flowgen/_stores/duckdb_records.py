"""The body of a DuckDB store's journal record: a validated batch's rows as JSON.

Rules
=====

* A body is ``[run rows, event rows, [[update columns, update rows], ...]]``, compact JSON;
  times are epoch microseconds (exact, and no time zone to get wrong), everything else is
  the row value as it would be appended.
* `plan_from_json` is the exact inverse of `plan_to_json` for the rows. A recovered plan
  updates no cache: it only has to reach the tables.
* Bodies are what `flowgen._stores.journal.Journal` checksums and stores; it knows nothing of
  what they mean.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from flowgen._stores.codec import compact_encoder
from flowgen._stores.duckdb_rows import EPOCH, Plan, from_us

__all__ = ["plan_from_json", "plan_to_json"]

_ONE_US: Final = timedelta(microseconds=1)


def _time_json(value: object) -> int:
    # json.dumps calls this only for what it cannot write itself: the rows' datetimes.
    if isinstance(value, datetime):
        return (value - EPOCH) // _ONE_US
    raise TypeError(f"{type(value).__name__} in a journaled row")  # pragma: no cover


_encode_body: Final = compact_encoder(default=_time_json)


def plan_to_json(plan: Plan) -> bytes:
    """A plan's rows as one journal record body (times as epoch microseconds)."""
    return _encode_body(
        [plan.run_rows, plan.event_rows, list(plan.update_rows.items())]
    ).encode()


def _with_times(row: list[Any], positions: Iterable[int]) -> tuple[Any, ...]:
    for position in positions:
        if row[position] is not None:
            row[position] = from_us(row[position])
    return tuple(row)


def plan_from_json(body: bytes) -> Plan:
    """The inverse of `plan_to_json` (the rows only: a recovered plan updates no cache)."""
    run_rows, event_rows, update_items = json.loads(body)
    updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for columns, rows in update_items:
        key = tuple(columns)
        times = [index + 1 for index, column in enumerate(key) if column == "closed_at"]
        updates[key] = [_with_times(row, times) for row in rows]
    return Plan(
        run_rows=[_with_times(row, (10, 11)) for row in run_rows],
        event_rows=[_with_times(row, (8,)) for row in event_rows],
        update_rows=updates,
        cache_after={},
    )
