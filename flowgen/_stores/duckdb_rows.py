"""Rows of a DuckDB store: how runs, row changes and events become table rows, and back.

Rules
=====

* A row is a plain tuple in the table's column order, ready for DuckDB's appender. JSON
  columns hold exactly what the codec's `dumps` gives; SQL NULL, not JSON ``null``, stands
  for "no value" (``result IS NULL`` reads naturally).
* Times are tz-aware: a naive datetime would be read by DuckDB in the session's time zone,
  so it is refused (`aware`) before anything is written. Times are read back as epoch
  microseconds and turned into UTC datetimes here (no pytz needed, and exact).
* A `Plan` is a validated batch as rows (see `flowgen._stores.duckdb_plan`). Plans written
  one after another merge into one transaction's rows with `merge_plans`, the later value of
  a column winning, as applying them one by one would leave it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs

from flowgen._stores.codec import (
    check_text,
    dumps,
    event_from_dict,
    event_to_dict,
    loads,
)
from flowgen._stores.protocol import (
    RUN_STATUSES,
    EventRow,
    RunUpdate,
    WorkflowRecord,
    check_numbering,
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
    "decode_histories",
    "EPOCH",
    "RUN_COLUMNS",
    "UPDATE_FIELDS",
    "STARTED_US",
    "Plan",
    "aware",
    "check_status",
    "decode_history",
    "event_row",
    "from_us",
    "merge_plans",
    "record",
    "run_row",
    "runs_query",
    "update_row",
]

RUN_COLUMNS: Final = (
    "workflow_id, run_id, name, status, args, kwargs, result, error, tags, parent_id, "
    "epoch_us(started_at), epoch_us(closed_at)"
)
STARTED_US: Final = 10  # position of epoch_us(started_at) in RUN_COLUMNS
# Columns of a RunUpdate that may be set, in the order `update_row` gives them.
UPDATE_FIELDS: Final = ("status", "result", "error", "tags", "closed_at")

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def from_us(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + timedelta(microseconds=us)


def aware(value: datetime, what: str) -> datetime:
    # A naive datetime would be read by DuckDB in the session's time zone: refuse it rather
    # than store a time that means something else on another machine.
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(
            f"{what} is a naive datetime ({value.isoformat()}); flowgen stores "
            f"tz-aware times only, nothing was written"
        )
    return value


def error_json(error: ErrorInfo | None) -> str | None:
    return None if error is None else dumps(attrs.asdict(error))


def _error_from_json(text: str | None) -> ErrorInfo | None:
    if text is None:
        return None
    data = json.loads(text)
    return ErrorInfo(
        type=data["type"],
        message=data["message"],
        non_retryable=data.get("non_retryable", False),
        attempts=data.get("attempts", 0),
        traceback=data.get("traceback", ""),
    )


def _json_or_none(value: JsonValue) -> str | None:
    # SQL NULL, not JSON 'null', for "no value": `result IS NULL` reads naturally.
    return None if value is None else dumps(value)


def _event_name(event: Event) -> str | None:
    if isinstance(event, VersionMarked):
        return event.change_id
    name: object = getattr(event, "name", None)
    return name if isinstance(name, str) else None


def _event_attempt(event: Event) -> int | None:
    attempt: object = getattr(event, "attempt", None)
    return attempt if isinstance(attempt, int) else None


def event_row(row: EventRow) -> tuple[Any, ...]:
    """The ``events`` row of *row*: its copies for SQL, and the complete event as JSON."""
    event = row.event
    at = event.at
    if at.tzinfo is None or at.utcoffset() is None:  # the message only when it fails
        aware(at, f"event {row.event_id} of run {row.run_id}")
    return (
        row.workflow_id,
        row.run_id,
        row.event_id,
        event_seq(event),
        EVENT_TAGS[type(event)],
        _event_name(event),
        dumps(event_to_dict(event)),
        _event_attempt(event),
        at,
    )


@attrs.define
class Plan:
    """A validated batch, as rows ready to append."""

    run_rows: list[tuple[Any, ...]]
    event_rows: list[tuple[Any, ...]]
    # Update rows grouped by the set of columns they change (one appender per shape).
    update_rows: dict[tuple[str, ...], list[tuple[Any, ...]]]
    # run_id -> (workflow_id, next event id) after the commit; None for runs now closed.
    cache_after: dict[str, tuple[str, int] | None]
    # The number of its journal record, once journaled (see duckdb_backlog).
    number: int = 0


def check_status(status: str, run_id: str) -> None:
    # The table's CHECK, checked before anything is written or journaled.
    if status not in RUN_STATUSES:
        raise StoreError(
            f"run {run_id}: status {status!r} is not one of {', '.join(RUN_STATUSES)}; "
            f"nothing was written"
        )


def run_row(run: WorkflowRecord) -> tuple[Any, ...]:
    """The ``workflows`` row of *run*.

    Raises:
        TypeError: A text of the run cannot be stored (see `flowgen._stores.codec`).
        StoreError: A time is naive.
    """
    return (
        check_text(run.workflow_id, "the workflow id"),
        check_text(run.run_id, "the run id"),
        check_text(run.name, "the workflow name"),
        run.status,
        dumps(run.args),
        dumps(run.kwargs),
        _json_or_none(run.result),
        error_json(run.error),
        dumps(run.tags),
        None if run.parent_id is None else check_text(run.parent_id, "the parent id"),
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
    return RunUpdate(
        first.workflow_id,
        first.run_id,
        status=second.status if second.status is not None else first.status,
        result=second.result if second.result is not None else first.result,
        error=second.error if second.error is not None else first.error,
        tags=second.tags if second.tags is not None else first.tags,
        closed_at=second.closed_at if second.closed_at is not None else first.closed_at,
    )


# Where each column a RunUpdate may set sits in a `run_row`.
_RUN_ROW_POSITIONS: Final = {
    "status": 3,
    "result": 6,
    "error": 7,
    "tags": 8,
    "closed_at": 11,
}


def merge_plans(
    plans: Sequence[Plan],
) -> tuple[
    list[tuple[Any, ...]],
    list[tuple[Any, ...]],
    dict[tuple[str, ...], list[tuple[Any, ...]]],
]:
    """The rows of *plans* written one after another, as one transaction's rows.

    A run's row changes merge in order, the later value of a column winning (what
    applying them one by one would leave), and a run inserted by one of the plans gets
    them folded into the inserted row: most runs of a busy engine start and finish
    between two applies, and are inserted once, finished.
    """
    if len(plans) == 1:
        plan = plans[0]
        return plan.run_rows, plan.event_rows, plan.update_rows
    runs: list[tuple[Any, ...]] = []
    inserted: dict[str, int] = {}
    events: list[tuple[Any, ...]] = []
    changes: dict[str, dict[str, Any]] = {}
    for plan in plans:
        for row in plan.run_rows:
            inserted[row[1]] = len(runs)
            runs.append(row)
        events.extend(plan.event_rows)
        for columns, rows in plan.update_rows.items():
            for row in rows:
                changes.setdefault(row[0], {}).update(
                    zip(columns, row[1:], strict=True)
                )
    updates: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for run_id, values in changes.items():
        index = inserted.get(run_id)
        if index is not None:
            row_values = list(runs[index])
            for column, value in values.items():
                row_values[_RUN_ROW_POSITIONS[column]] = value
            runs[index] = tuple(row_values)
            continue
        columns = tuple(field for field in UPDATE_FIELDS if field in values)
        updates.setdefault(columns, []).append(
            (run_id, *(values[column] for column in columns))
        )
    return runs, events, updates


def record(row: tuple[Any, ...]) -> WorkflowRecord:
    (
        workflow_id,
        run_id,
        name,
        status,
        args,
        kwargs,
        result,
        error,
        tags,
        parent_id,
        started_us,
        closed_us,
    ) = row
    started_at = from_us(started_us)
    assert started_at is not None  # NOT NULL column
    return WorkflowRecord(
        workflow_id=workflow_id,
        run_id=run_id,
        name=name,
        status=status,
        args=json.loads(args),
        kwargs=json.loads(kwargs),
        started_at=started_at,
        result=None if result is None else json.loads(result),
        error=_error_from_json(error),
        tags=json.loads(tags),
        parent_id=parent_id,
        closed_at=from_us(closed_us),
    )


def decode_history(
    workflow_id: str, run_id: str, rows: Sequence[tuple[int, str]]
) -> list[Event]:
    """A run's events from its ``(event_id, payload)`` rows, in order.

    Raises:
        HistoryCorruptError: The rows are not numbered 0, 1, 2, ..., or one cannot be
            decoded (the message names the run and the event id).
    """
    check_numbering(workflow_id, run_id, (event_id for event_id, _ in rows))
    events = []
    # One parse for the whole history (the JSON column holds one valid value per row,
    # so joined with commas they are a list of as many); any doubt: one row at a time.
    try:
        parsed = loads("[" + ",".join(payload for _, payload in rows) + "]")
    except ValueError:
        parsed = None
    if not isinstance(parsed, list) or len(parsed) != len(rows):
        parsed = [None] * len(rows)
    for (event_id, payload), data in zip(rows, parsed, strict=True):
        try:
            if data is None:
                data = loads(payload)
            if not isinstance(data, dict):
                raise HistoryCorruptError("the payload is not a JSON object")
            events.append(event_from_dict(data))
        except (HistoryCorruptError, ValueError) as exc:
            raise HistoryCorruptError(
                f"history of {workflow_id!r} (run {run_id}): event {event_id} cannot "
                f"be decoded: {exc}"
            ) from None
    return events


def runs_query(
    *,
    status: str | None,
    name: str | None,
    tags: dict[str, JsonValue] | None,
    limit: int | None,
) -> tuple[str, list[object]]:
    """The query (and its parameters) of `DuckDBStore.list_runs`: newest first, filtered.

    A tag filtered as ``None`` matches runs where it is null or absent.
    """
    where: list[str] = []
    params: list[object] = []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if name is not None:
        where.append("name = ?")
        params.append(name)
    for key, value in (tags or {}).items():
        # A JSON pointer, so any key works ("a.b", "x/y"). json_extract gives minified
        # JSON text and json(?) minifies ours the same way, so comparing the texts is
        # JSON equality (for objects, with their keys in the same order).
        pointer = "/" + key.replace("~", "~0").replace("/", "~1")
        if value is None:
            where.append("coalesce(json_extract(tags, ?), 'null') = 'null'")
            params.append(pointer)
        else:
            where.append("json_extract(tags, ?) = json(?)")
            params.extend((pointer, dumps(value)))
    query = f"SELECT {RUN_COLUMNS} FROM workflows"
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY started_at DESC, rowid DESC"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    return query, params


def decode_histories(
    keys: Sequence[tuple[str, str]],
    rows: Iterable[tuple[str, str, int, str]],
    decode: Callable[[str, str, Sequence[tuple[int, str]]], list[Event]],
) -> tuple[
    dict[tuple[str, str], list[Event]], dict[tuple[str, str], HistoryCorruptError]
]:
    """Several runs' histories from one read of their rows, for both stores.

    Args:
        keys: The runs, as ``(workflow_id, run_id)``.
        rows: ``(workflow_id, run_id, event_id, payload)``, by run and event id.
        decode: A store's `decode_history` for one run (it may remember where the run's
            history continues).

    Returns:
        The histories that decode, and the error of each run whose history does not (the
        store quarantines those: `flowgen._stores.quarantine`).
    """
    grouped: dict[tuple[str, str], list[tuple[int, str]]] = {key: [] for key in keys}
    for workflow_id, run_id, event_id, payload in rows:
        group = grouped.get((workflow_id, run_id))
        if group is not None:
            group.append((event_id, payload))
    histories: dict[tuple[str, str], list[Event]] = {}
    bad: dict[tuple[str, str], HistoryCorruptError] = {}
    for key, group in grouped.items():
        try:
            histories[key] = decode(key[0], key[1], group)
        except HistoryCorruptError as exc:
            bad[key] = exc
    return histories, bad
