"""The commands that read a database: ``ls``, ``show``, ``sql`` and ``export``.

None of them changes the database or runs workflow code. What they print is laid out by
`flowgen.cli.console.Output`: rich tables in colour on a terminal, plain aligned text in a
pipe. A long history is summarised (``show`` prints its first and last events and counts
the rest; ``--all`` prints every one), and ``export`` shows its progress on a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from flowgen._render.html import describe_origin
from flowgen._runtime.arguments import run_id_argument, text_argument
from flowgen._runtime.control import decode_cell, history_from_json, record_from_json
from flowgen._stores.duckdb_read_only import QueryError, RefusedStatement, read_query
from flowgen._stores.duckdb_store import DuckDBStore
from flowgen._stores.protocol import WorkflowRecord
from flowgen._vocabulary.events import EVENT_TAGS, Event, JsonValue, WorkflowStarted
from flowgen.cli.common import (
    EXIT_OK,
    CommandError,
    json_text,
    open_store,
    through_engine,
    unknown,
)
from flowgen.cli.console import Output
from flowgen.cli.table import (
    HISTORY_COLUMNS,
    format_duration,
    format_timestamp,
    history_rows,
)

__all__ = [
    "SHOW_EVENTS",
    "cmd_export",
    "cmd_ls",
    "cmd_show",
    "cmd_sql",
]

SHOW_EVENTS = 15
"""How many events ``flowgen show`` prints at each end of a long history (``--events``)."""


def cmd_ls(args: argparse.Namespace) -> int:
    """``flowgen ls``: runs, newest first, filtered by status, name and tags."""
    tags = [_parse_tag(t) for t in args.tag]
    if args.name is not None:  # the engine's rule, on the file as over the socket
        text_argument(args.name, "the workflow name")
    if args.limit < 0:
        raise CommandError(f"--limit must be >= 0, got {args.limit}")
    remote: Any = through_engine(args, "ls", status=args.status, name=args.name)
    if remote is not None:
        runs = [record_from_json(r) for r in remote]
    else:
        store = open_store(args)
        try:
            runs = store.list_runs(status=args.status, name=args.name)
            unheld = unheld_runs(store) if runs else set()
        finally:
            store.close()
    runs = [r for r in runs if all(_tag_matches(r.tags, k, v) for k, v in tags)]
    if remote is not None:
        unheld = set()
    shown = runs if args.limit == 0 else runs[: args.limit]
    waits = _waiting(args) if remote is not None else {}
    rows = [
        (
            r.workflow_id,
            r.name,
            _status_with_wait(r, waits, unheld),
            format_timestamp(r.started_at, seconds_only=True),
            format_timestamp(r.closed_at, seconds_only=True) if r.closed_at else "",
        )
        for r in shown
    ]
    out = Output()
    if not rows:
        out.line(
            "no runs match" if (args.status or args.name or tags) else "no runs yet"
        )
        return EXIT_OK
    out.table(("id", "name", "status", "started (UTC)", "closed (UTC)"), rows)
    if len(shown) < len(runs):
        out.line(f"({len(shown)} of {len(runs)} runs shown; --limit 0 shows all)")
    return EXIT_OK


def unheld_runs(store: DuckDBStore | Any) -> set[str]:
    """On a fleet's PostgreSQL database, the running runs no engine holds (none on a file).

    A run whose workflow code no engine of the fleet has stays so, visibly, until an
    engine with its code claims it.
    """
    if isinstance(store, DuckDBStore):
        return set()
    found: set[str] = store.unheld_runs()
    return found


def _waiting(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """The activity attempts the engine holds back, by run id (see ``Gate``)."""
    found: Any = through_engine(args, "waiting") or []
    waits: dict[str, list[dict[str, Any]]] = {}
    for wait in found:
        waits.setdefault(wait["run_id"], []).append(wait)
    return waits


def _status_with_wait(
    record: WorkflowRecord, waits: dict[str, list[dict[str, Any]]], unheld: set[str]
) -> str:
    if record.run_id in unheld:  # a fleet's run waiting for an engine with its code
        return f"{record.status} (held by no engine)"
    on = sorted({wait["on"] for wait in waits.get(record.run_id, ())})
    return f"{record.status} (waiting on {', '.join(on)})" if on else record.status


def _parse_tag(text: str) -> tuple[str, list[JsonValue]]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--tag takes KEY=VALUE, got {text!r}")
    candidates: list[JsonValue] = [raw]
    with contextlib.suppress(ValueError, RecursionError):  # not JSON: the plain text
        value: JsonValue = json.loads(raw)
        if value != raw:
            candidates.insert(0, value)
    return key, candidates


def _tag_matches(tags: dict[str, JsonValue], key: str, values: list[JsonValue]) -> bool:
    if key not in tags:
        return False
    found = tags[key]
    # 1 == True in Python; a tag set to true must not match --tag k=1.
    return any(found == v and type(found) is type(v) for v in values)


def cmd_show(args: argparse.Namespace) -> int:
    """``flowgen show ID``: the run's row, then its history (summarised when long)."""
    if args.events < 1:
        raise CommandError(f"--events must be >= 1, got {args.events}")
    run_id_argument(args.run)  # the engine's rule, on the file as over the socket
    record, history, run_ids = _load_run(args)
    out = Output()
    fields = _describe_record(record, run_ids, history[0] if history else None)
    if record.status == "running":
        fields += [
            (
                "waiting",
                (
                    f"activity {wait['activity']!r} (seq {wait['seq']}, attempt "
                    f"{wait['attempt']}) on {wait['detail']}"
                ),
            )
            for wait in _waiting(args).get(record.run_id, ())
        ]
    out.fields(fields)
    out.line()
    rows = history_rows(history)
    hidden = len(rows) - 2 * args.events
    if args.all or hidden <= 0:
        out.line(f"history: {len(history):,} events")
        out.table(HISTORY_COLUMNS, rows)
        return EXIT_OK
    out.line(f"history: {len(history):,} events ({_count_kinds(history)})")
    gap = (
        None,
        "",
        "",
        "",
        None,
        f"... {hidden:,} events not shown (--all shows them)",
    )
    out.table(HISTORY_COLUMNS, [*rows[: args.events], gap, *rows[-args.events :]])
    return EXIT_OK


def _load_run(
    args: argparse.Namespace,
) -> tuple[WorkflowRecord, list[Event], list[str]]:
    """The run ``show`` prints, its history and the run ids of its workflow id, in order."""
    remote: Any = through_engine(args, "show", id=args.id, run=args.run)
    if remote is not None:
        if remote["record"] is None:
            raise unknown(args.id, args.run)
        return (
            record_from_json(remote["record"]),
            history_from_json(remote["history"]),
            list(remote["run_ids"]),
        )
    store = open_store(args)
    try:
        record = store.get_run(args.id, args.run)
        if record is None:
            raise unknown(args.id, args.run)
        history = store.load_history(record.workflow_id, record.run_id)
        if isinstance(store, DuckDBStore):
            chain = [
                run_id
                for (run_id,) in store.sql(
                    "select run_id from workflows where workflow_id = ? "
                    "order by started_at",
                    [record.workflow_id],
                ).fetchall()
            ]
        else:  # PostgreSQL: read there, rather than copying the database for this
            chain = store.run_ids(record.workflow_id)
    finally:
        store.close()
    return record, list(history), chain


def _count_kinds(history: Sequence[Event]) -> str:
    counts = Counter(EVENT_TAGS[type(event)] for event in history)
    return ", ".join(f"{n:,} {kind}" for kind, n in counts.most_common())


def _describe_record(
    record: WorkflowRecord, run_ids: list[str], first: Event | None
) -> list[tuple[str, str]]:
    run = record.run_id
    reset_or_retry = isinstance(first, WorkflowStarted) and first.origin_kind
    if len(run_ids) > 1 and run in run_ids:
        chain = "" if reset_or_retry else ", a continue-as-new chain"
        run += (
            f" (run {run_ids.index(run) + 1} of {len(run_ids)} with this id{chain}: "
            f"--run RUN_ID shows another)"
        )
    lines: list[tuple[str, str]] = [
        ("workflow", record.workflow_id),
        ("run", run),
        ("name", record.name),
        ("status", record.status),
        ("started", format_timestamp(record.started_at) + " UTC"),
    ]
    if record.closed_at is not None:
        took = (record.closed_at - record.started_at).total_seconds()
        lines.append(
            (
                "closed",
                f"{format_timestamp(record.closed_at)} UTC (took {format_duration(took)})",
            )
        )
    lines.append(("args", json_text(record.args)))
    if record.kwargs:
        lines.append(("kwargs", json_text(record.kwargs)))
    if isinstance(first, WorkflowStarted) and first.origin_run_id is not None:
        lines.append(("origin", describe_origin(first)))
    if record.parent_id:
        lines.append(("parent", record.parent_id))
    if record.tags:
        lines.append(("tags", json_text(record.tags)))
    if record.status == "completed":
        lines.append(("result", json_text(record.result)))
    if record.error is not None:
        lines.append(("error", str(record.error)))
    return lines


def cmd_sql(args: argparse.Namespace) -> int:
    """``flowgen sql QUERY``: a read-only query, as a table, CSV or JSON.

    What it may run is `flowgen._stores.duckdb_read_only`'s rule, on the running engine or
    on the file.
    """
    remote: Any = through_engine(args, "sql", query=args.query)
    if remote is not None:
        columns, types = list(remote["columns"]), list(remote["types"])
        rows = [tuple(decode_cell(cell) for cell in row) for row in remote["rows"]]
    else:
        store = open_store(args)
        try:
            columns, types, rows = read_query(store.cursor(), args.query)
        except (RefusedStatement, QueryError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            store.close()
    _print_result(columns, types, rows, args.format, Output())
    return EXIT_OK


def _print_result(
    columns: list[str],
    types: list[str],
    rows: list[tuple[Any, ...]],
    fmt: str,
    output: Output,
) -> None:
    out = output.out
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        if columns:
            writer.writerow(columns)
        writer.writerows([[_csv_cell(v) for v in row] for row in rows])
    elif fmt == "json":
        records = [
            {
                column: _json_cell(value, type_name)
                for column, type_name, value in zip(columns, types, row, strict=True)
            }
            for row in rows
        ]
        out.write(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    elif columns:
        output.table(columns, rows)
        output.line(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    else:
        output.line("ok")


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return value


def _json_cell(value: object, type_name: str) -> object:
    if value is None:
        return None
    if type_name == "JSON" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_cell(v, "") for v in value]
    if isinstance(value, dict):
        return {str(k): _json_cell(v, "") for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def cmd_export(args: argparse.Namespace) -> int:
    """``flowgen export DIR``: a Parquet snapshot of every table and view."""
    out = Output()
    remote: Any = through_engine(args, "export", dir=os.path.abspath(args.dir))
    if remote is not None:
        written: list[str] = list(remote)
    else:
        store = open_store(args)
        try:
            with out.progress("exporting", total=None) as advance:
                written = store.export_parquet(
                    args.dir, progress=lambda _, total: advance(1, total=total)
                )
        finally:
            store.close()
    out.line(f"wrote {len(written)} Parquet files to {args.dir}:")
    for path in written:
        out.line(f"  {Path(path).name}")
    example = next((p for p in written if p.endswith("activities.parquet")), None)
    if example is not None:
        out.line(
            f"read them with any DuckDB, e.g.: duckdb -c \"select * from '{example}'\""
        )
    return EXIT_OK
