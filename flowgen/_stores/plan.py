"""A `Batch` checked against the stored runs and turned into rows: the rules SQL stores share.

Rules (one copy, for every store that writes rows; `MemoryStore` keeps records instead):

* A batch is refused whole, before anything is written, with `HistoryCorruptError` when it
  does not continue the stored histories: an event id out of sequence (gap or duplicate), an
  event or update for a run that does not exist or belongs to another workflow id, a run
  given twice. With `StoreError` when a status is not one of ``RUN_STATUSES`` or a time is
  naive (a naive time would be read in the server's time zone).
* Whether a *new* run's id is already stored is the store's own check (a primary key, or a
  journal lookup): `plan_batch` sees only the batch and the stored runs it is given.
* Several updates of one run in a batch merge in order, the later value of a column winning,
  so each run gets one row change; a run inserted by the batch gets them folded into its
  inserted row.
* Rows hold JSON as text exactly as the codec wrote it (``dumps``), and times as tz-aware
  datetimes. An event row's ``payload`` is the event's complete ``event_to_dict`` form.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, Final

import attrs

from flowgen._stores.codec import dumps, event_to_dict
from flowgen._stores.protocol import (
    CLOSED_STATUSES,
    RUN_STATUSES,
    Batch,
    RunUpdate,
    WorkflowRecord,
    apply_update,
)
from flowgen._vocabulary.errors import ErrorInfo, HistoryCorruptError, StoreError
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    Event,
    JsonValue,
    VersionMarked,
    event_seq,
)

__all__ = [
    "EVENT_COLUMNS",
    "RUN_COLUMNS",
    "UPDATE_FIELDS",
    "Plan",
    "aware",
    "check_status",
    "error_json",
    "json_or_none",
    "merge_updates",
    "plan_batch",
    "run_row",
    "update_row",
]

RUN_COLUMNS: Final = (
    "workflow_id",
    "run_id",
    "name",
    "status",
    "args",
    "kwargs",
    "result",
    "error",
    "tags",
    "parent_id",
    "started_at",
    "closed_at",
)
"""The columns of ``workflows``, in the order of a `run_row`."""
EVENT_COLUMNS: Final = (
    "workflow_id",
    "run_id",
    "event_id",
    "seq",
    "kind",
    "name",
    "payload",
    "attempt",
    "recorded_at",
)
"""The columns of ``events``, in the order of an event row."""
UPDATE_FIELDS: Final = ("status", "result", "error", "tags", "closed_at")
"""Columns of a `RunUpdate` that may be set, in the order `update_row` gives them."""

KnownRuns = Callable[[Collection[str]], Mapping[str, tuple[str, int]]]
"""Looks up stored runs: run id -> (workflow id, next event id), for those that exist."""


def check_status(status: str, run_id: str) -> None:
    """Raise `StoreError` unless *status* is a run status (the table's CHECK, checked first)."""
    if status not in RUN_STATUSES:
        raise StoreError(
            f"run {run_id}: status {status!r} is not one of {', '.join(RUN_STATUSES)}; "
            f"nothing was written"
        )


def aware(value: datetime, what: str) -> datetime:
    """*value*, if tz-aware; a naive datetime would mean another time on another machine."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(
            f"{what} is a naive datetime ({value.isoformat()}); flowgen stores "
            f"tz-aware times only, nothing was written"
        )
    return value


def error_json(error: ErrorInfo | None) -> str | None:
    """An `ErrorInfo` as a JSON object's text (``None`` for no error)."""
    return None if error is None else dumps(attrs.asdict(error))


def json_or_none(value: JsonValue) -> str | None:
    """SQL NULL, not JSON ``null``, for "no value": ``result IS NULL`` reads naturally."""
    return None if value is None else dumps(value)


def run_row(run: WorkflowRecord) -> tuple[Any, ...]:
    """*run* as a ``workflows`` row (`RUN_COLUMNS`)."""
    return (
        run.workflow_id,
        run.run_id,
        run.name,
        run.status,
        dumps(run.args),
        dumps(run.kwargs),
        json_or_none(run.result),
        error_json(run.error),
        dumps(run.tags),
        run.parent_id,
        aware(run.started_at, f"started_at of run {run.run_id}"),
        None
        if run.closed_at is None
        else aware(run.closed_at, f"closed_at of run {run.run_id}"),
    )


def update_row(update: RunUpdate) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The columns *update* sets, and their values (``None`` fields are left alone)."""
    values: dict[str, Any] = {}
    if update.status is not None:
        values["status"] = update.status
    if update.result is not None:
        values["result"] = dumps(update.result)
    if update.error is not None:
        values["error"] = error_json(update.error)
    if update.tags is not None:
        values["tags"] = dumps(update.tags)
    if update.closed_at is not None:
        values["closed_at"] = aware(
            update.closed_at, f"closed_at of run {update.run_id}"
        )
    columns = tuple(field for field in UPDATE_FIELDS if field in values)
    return columns, tuple(values[field] for field in columns)


def merge_updates(first: RunUpdate, second: RunUpdate) -> RunUpdate:
    """One update doing what *first* then *second* do."""
    return RunUpdate(
        first.workflow_id,
        first.run_id,
        status=second.status if second.status is not None else first.status,
        result=second.result if second.result is not None else first.result,
        error=second.error if second.error is not None else first.error,
        tags=second.tags if second.tags is not None else first.tags,
        closed_at=second.closed_at if second.closed_at is not None else first.closed_at,
    )


def _event_name(event: Event) -> str | None:
    if isinstance(event, VersionMarked):
        return event.change_id
    name: object = getattr(event, "name", None)
    return name if isinstance(name, str) else None


def _event_attempt(event: Event) -> int | None:
    attempt: object = getattr(event, "attempt", None)
    return attempt if isinstance(attempt, int) else None


def event_row(
    workflow_id: str, run_id: str, event_id: int, event: Event
) -> tuple[Any, ...]:
    """An event as an ``events`` row (`EVENT_COLUMNS`)."""
    return (
        workflow_id,
        run_id,
        event_id,
        event_seq(event),
        EVENT_TAGS[type(event)],
        _event_name(event),
        dumps(event_to_dict(event)),
        _event_attempt(event),
        aware(event.at, f"event {event_id} of run {run_id}"),
    )


@attrs.define
class Plan:
    """A validated batch, as rows ready to write.

    Attributes:
        new_runs: The runs the batch inserts, with the batch's updates of them applied.
        run_rows: Their ``workflows`` rows.
        event_rows: The ``events`` rows, in the batch's order.
        updates: One merged update per stored run the batch changes.
        update_rows: Their rows, grouped by the set of columns they change (run id first).
        cache_after: run id -> (workflow id, next event id) after the commit; ``None`` for
            runs now closed (they get no more events).
    """

    new_runs: dict[str, WorkflowRecord]
    run_rows: list[tuple[Any, ...]]
    event_rows: list[tuple[Any, ...]]
    updates: dict[str, RunUpdate]
    update_rows: dict[tuple[str, ...], list[tuple[Any, ...]]]
    cache_after: dict[str, tuple[str, int] | None]


def _new_runs(batch: Batch) -> dict[str, WorkflowRecord]:
    new_runs: dict[str, WorkflowRecord] = {}
    for run in batch.runs:
        if run.run_id in new_runs:
            raise HistoryCorruptError(
                f"run {run.run_id} of {run.workflow_id!r} already exists"
            )
        check_status(run.status, run.run_id)
        new_runs[run.run_id] = run
    for update in batch.updates:
        if update.status is not None:
            check_status(update.status, update.run_id)
    return new_runs


def plan_batch(batch: Batch, known_runs: KnownRuns) -> Plan:
    """Check *batch* against the stored runs; turn it into rows.

    Args:
        batch: What to write.
        known_runs: Called once, with the ids of the stored runs the batch refers to (not
            those it inserts); gives each existing one's workflow id and next event id.

    Raises:
        HistoryCorruptError: The batch does not continue the stored histories.
        StoreError: A status is unknown or a time is naive.
    """
    new_runs = _new_runs(batch)
    referenced = {row.run_id for row in batch.events}
    referenced.update(update.run_id for update in batch.updates)
    missing = referenced - new_runs.keys()
    known = dict(known_runs(missing)) if missing else {}

    def next_event_id(workflow_id: str, run_id: str, what: str) -> int:
        if run_id in new_runs and new_runs[run_id].workflow_id == workflow_id:
            return 0
        entry = known.get(run_id)
        if entry is None or entry[0] != workflow_id:
            raise HistoryCorruptError(
                f"{what} for unknown run {run_id} of {workflow_id!r}"
            )
        return entry[1]

    next_ids: dict[str, int] = {}
    event_rows = []
    for row in batch.events:
        expected = next_ids.get(row.run_id)
        if expected is None:
            expected = next_event_id(row.workflow_id, row.run_id, "events")
        if row.event_id != expected:
            raise HistoryCorruptError(
                f"run {row.run_id} of {row.workflow_id!r}: event_id {row.event_id} "
                f"appended where {expected} belongs; nothing was written"
            )
        next_ids[row.run_id] = expected + 1
        event_rows.append(
            event_row(row.workflow_id, row.run_id, row.event_id, row.event)
        )

    merged: dict[str, RunUpdate] = {}
    for update in batch.updates:
        next_event_id(update.workflow_id, update.run_id, "update")
        previous = merged.get(update.run_id)
        merged[update.run_id] = (
            update if previous is None else merge_updates(previous, update)
        )
    updates: dict[str, RunUpdate] = {}
    update_rows: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for run_id, update in merged.items():
        if run_id in new_runs:  # inserted by this batch: insert the updated row
            new_runs[run_id] = apply_update(new_runs[run_id], update)
            continue
        columns, values = update_row(update)
        if columns:
            updates[run_id] = update
            update_rows.setdefault(columns, []).append((run_id, *values))

    return Plan(
        new_runs=new_runs,
        run_rows=[run_row(run) for run in new_runs.values()],
        event_rows=event_rows,
        updates=updates,
        update_rows=update_rows,
        cache_after=_cache_after(new_runs, known, next_ids, merged),
    )


def _cache_after(
    new_runs: Mapping[str, WorkflowRecord],
    known: Mapping[str, tuple[str, int]],
    next_ids: Mapping[str, int],
    merged: Mapping[str, RunUpdate],
) -> dict[str, tuple[str, int] | None]:
    cache_after: dict[str, tuple[str, int] | None] = {}
    for run_id, next_id in next_ids.items():
        workflow_id = (
            new_runs[run_id].workflow_id if run_id in new_runs else known[run_id][0]
        )
        cache_after[run_id] = (workflow_id, next_id)
    for run_id, run in new_runs.items():
        cache_after.setdefault(run_id, (run.workflow_id, 0))
    # A closed run gets no more events: forget it (this bounds a cache by the running runs).
    for run_id, update in merged.items():
        if update.status in CLOSED_STATUSES:
            cache_after[run_id] = None
    for run_id, run in new_runs.items():
        if run.status in CLOSED_STATUSES:
            cache_after[run_id] = None
    return cache_after
