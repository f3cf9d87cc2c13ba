"""Plain-text tables and cell formatting for the command line and the demo.

No dependencies: a table is a header, a dashed rule and aligned rows, numbers right-aligned.
Timestamps are shown in UTC to the millisecond, ``None`` as an empty cell, and a line
break inside a cell as a backslash and ``n``, so that one row stays one line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from flowgen._stores.codec import event_to_dict
from flowgen._vocabulary.events import EVENT_TAGS, Event

__all__ = [
    "HISTORY_COLUMNS",
    "format_cell",
    "format_duration",
    "format_history",
    "format_table",
    "format_timestamp",
    "history_rows",
]


def format_timestamp(value: datetime, *, seconds_only: bool = False) -> str:
    """A timestamp as ``2031-03-07 09:26:53.120`` in UTC (naive ones are taken as UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S") + (
        "" if seconds_only else f".{value.microsecond // 1000:03d}"
    )


def format_duration(seconds: float) -> str:
    """A duration for humans: ``0.052s``, ``3m 20.0s``, ``2d 03h 00m``."""
    if seconds < 60:
        return f"{seconds:.3f}s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)}m {rest:04.1f}s"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return (
        f"{days}d {hours:02d}h {minutes:02d}m" if days else f"{hours}h {minutes:02d}m"
    )


def format_cell(value: object, *, width: int | None = None) -> str:
    """One value as table text; cut to *width* characters (with ``…``) if given."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(round(value, 6))
    elif isinstance(value, datetime):
        text = format_timestamp(value)
    elif isinstance(value, date):
        text = value.isoformat()
    elif isinstance(value, timedelta):
        text = format_duration(value.total_seconds())
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(", ", ": "))
    else:
        text = str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if width is not None and len(text) > width:
        text = text[: max(width - 1, 0)] + "…"
    return text


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def format_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    max_width: int | None = None,
    indent: str = "",
) -> str:
    """Rows under a header, columns aligned; numeric columns are right-aligned.

    Args:
        columns: The column names.
        rows: The rows, each as long as *columns*.
        max_width: Cut every cell to this many characters.
        indent: Put this in front of every line.

    Returns:
        The table, one line per row, without a trailing newline.
    """
    cells = [[format_cell(v, width=max_width) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    numeric = [
        bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows)
        for i in range(len(columns))
    ]

    def line(texts: Sequence[str]) -> str:
        parts = [
            t.rjust(w) if num else t.ljust(w)
            for t, w, num in zip(texts, widths, numeric, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(columns), indent + "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


_HIDDEN_FIELDS = frozenset({"kind", "at", "seq", "traceback"})


HISTORY_COLUMNS = ("#", "at (UTC)", "elapsed", "kind", "seq", "details")
"""The columns of `history_rows`."""


def history_rows(history: Sequence[Event]) -> list[tuple[object, ...]]:
    """A history as table rows: event number, time, time since the start, kind, seq, details.

    Args:
        history: The run's events, ``workflow_started`` first.

    Returns:
        One row per event, under `HISTORY_COLUMNS`.
    """
    start = history[0].at if history else None
    return [
        (
            event_id,
            format_timestamp(event.at),
            "+" + format_duration((event.at - start).total_seconds())
            if start is not None
            else "",
            EVENT_TAGS[type(event)],
            getattr(event, "seq", None),
            format_cell(_event_details(event), width=90),
        )
        for event_id, event in enumerate(history)
    ]


def format_history(history: Sequence[Event], *, indent: str = "") -> str:
    """A history as a plain-text table (see `history_rows`).

    Args:
        history: The run's events, ``workflow_started`` first.
        indent: Put this in front of every line.

    Returns:
        The table text.
    """
    return format_table(HISTORY_COLUMNS, history_rows(history), indent=indent)


def _event_details(event: Event) -> str:
    data = event_to_dict(event)
    kind = data.get("kind")
    parts: list[str] = []
    for key, value in data.items():
        if key in _HIDDEN_FIELDS or value in (None, [], {}):
            continue
        if kind == "workflow_started" and key in ("workflow_id", "run_id"):
            continue
        if key == "error" and isinstance(value, dict):
            text = f"{value.get('type')}: {value.get('message')}"
        elif key.endswith("_at") or key in ("fire_at", "deadline", "retry_at"):
            text = str(value).replace("T", " ")[:23]
        elif isinstance(value, str) and key in (
            "name",
            "workflow_id",
            "child_id",
            "reason",
        ):
            text = value
        else:
            text = json.dumps(value, ensure_ascii=False, default=str)
        parts.append(f"{key}={text}")
    return " ".join(parts)
