"""The building blocks of flowgen's HTML: escaping, short text, durations, times, tables.

Rules:

* Every value that came from a user (arguments, results, payloads, error messages,
  tracebacks, ids) reaches the HTML through `escape`; a view never writes one raw.
* Payloads show as compact JSON (`json_text`; ``repr`` for what JSON cannot hold),
  shortened to `PAYLOAD_CHARS` unless a view asks for more. Times are UTC (`time_text`);
  durations read as a person writes them (`format_duration`).
* Every card is one ``<div class="flowgen">`` carrying `STYLE`, a stylesheet scoped to it
  (`wrap`), so a notebook full of reprs stays light.

Shared by the events view (`flowgen._render.html`), the Stepper view
(`flowgen._render.stepper_html`) and the timeline (`flowgen._render.timeline`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from flowgen._vocabulary.errors import ErrorInfo

__all__ = [
    "PAYLOAD_CHARS",
    "STYLE",
    "badge",
    "call_args",
    "details_table",
    "error_html",
    "escape",
    "format_duration",
    "json_text",
    "shorten",
    "table",
    "time_text",
    "wrap",
]

PAYLOAD_CHARS = 120
"""The most characters a payload takes in a table before it is shortened."""

_STATUS_COLORS: Mapping[str, str] = {
    "running": "#1f6feb",
    "waiting": "#1f6feb",
    "new": "#6e7781",
    "completed": "#1a7f37",
    "failed": "#cf222e",
    "cancelled": "#9a6700",
    "terminated": "#9a6700",
    "continued_as_new": "#8250df",
}

# Colours are chosen to read on light and dark Jupyter themes alike.
STYLE = """<style>
.flowgen{font-size:13px;line-height:1.4}
.flowgen table{border-collapse:collapse;margin:4px 0}
.flowgen th,.flowgen td{padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid rgba(128,128,128,.25)}
.flowgen th{font-weight:600}
.flowgen code,.flowgen pre{font-family:var(--jp-code-font-family,ui-monospace,monospace);font-size:12px}
.flowgen pre{white-space:pre-wrap;margin:2px 0;max-height:24em;overflow:auto}
.flowgen .fg-badge{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px;font-weight:600}
.flowgen .fg-fail{color:#cf222e}
.flowgen .fg-decision{opacity:.8}
.flowgen .fg-muted{opacity:.65}
.flowgen details>summary{cursor:pointer}
</style>"""
"""The one stylesheet, scoped to ``.flowgen``, that every card carries (`wrap`)."""


def escape(value: object) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


def shorten(text: str, limit: int) -> str:
    """*text*, cut to *limit* characters with an ellipsis when it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_text(value: object, limit: int = PAYLOAD_CHARS) -> str:
    """A payload as compact JSON text (``repr`` for what JSON cannot hold), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):  # a circular or otherwise odd value
        text = repr(value)
    return shorten(text, limit)


def call_args(
    args: Sequence[object], kwargs: Mapping[str, object], limit: int = PAYLOAD_CHARS
) -> str:
    """``"o-1", 10.0, retries=3``: arguments as a call would show them."""
    parts = [json_text(a, limit) for a in args]
    parts += [f"{k}={json_text(v, limit)}" for k, v in kwargs.items()]
    return shorten(", ".join(parts), limit)


def format_duration(seconds: float) -> str:
    """A short human duration: ``"250 ms"``, ``"4.2 s"``, ``"3m 05s"``, ``"2h 01m"``, ``"3d 4h"``."""
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s == 0:
        return "0 s"
    if s < 1:
        return f"{sign}{s * 1000:.0f} ms"
    if s < 60:
        return f"{sign}{s:.1f} s"
    whole = int(s)
    if whole < 3600:
        return f"{sign}{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{sign}{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{sign}{whole // 86400}d {whole % 86400 // 3600}h"


def time_text(at: datetime | None) -> str:
    """``2031-03-07 09:26:53 UTC`` (milliseconds shown only when there are any)."""
    if at is None:
        return ""
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%d %H:%M:%S")
    if at.microsecond:
        text += f".{at.microsecond // 1000:03d}"
    return text + " UTC"


def badge(status: str) -> str:
    """A run's status as a coloured pill."""
    color = _STATUS_COLORS.get(status, "#6e7781")
    return f'<span class="fg-badge" style="background:{color}">{escape(status)}</span>'


def error_html(error: ErrorInfo, *, open_traceback: bool = False) -> str:
    """A failure: its type and message in red, its attempts, and its traceback folded."""
    text = f'<span class="fg-fail"><b>{escape(error.type)}</b>'
    if error.message:
        text += f": {escape(error.message)}"
    text += "</span>"
    if error.attempts:
        text += f' <span class="fg-muted">after {error.attempts} attempt(s)</span>'
    if error.traceback:
        opened = " open" if open_traceback else ""
        text += (
            f"<details{opened}><summary>traceback</summary>"
            f"<pre>{escape(error.traceback)}</pre></details>"
        )
    return text


def table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table; keys are plain text, values are HTML already."""
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def details_table(rows: list[tuple[str, str]]) -> str:
    """`table` of *rows*, or nothing at all when there are none."""
    return table(rows) if rows else ""


def wrap(body: str) -> str:
    """*body* as one card: a ``<div class="flowgen">`` carrying the stylesheet."""
    return f'<div class="flowgen">{STYLE}{body}</div>'
