"""Rich display: the HTML (and compact text) behind every ``_repr_html_`` in flowgen.

Pure string building. Nothing here imports IPython, a plotting library or anything above
the vocabulary layer, so it costs nothing to import and works wherever HTML is shown
(Jupyter, VS Code, the docs). Every value that came from a user (arguments, results, signal
payloads, error messages, tracebacks, workflow ids) passes through `html.escape`.

What renders what:

* `event_html` and `command_html` are installed as ``_repr_html_`` on every event and
  command class when this module is imported (``flowgen/__init__.py`` imports it). They are
  assigned from here rather than defined in ``events.py``/``commands.py`` so the
  vocabulary layer never imports a renderer.
* `History` is the list `WorkflowHandle.history` returns: a plain ``list`` of events whose
  ``repr()`` is unchanged, with a table for Jupyter and a compact text table for IPython.
* `handle_html` renders a `WorkflowHandle`: status, input, result or error, what the run is
  waiting for right now (activities with their attempts, timers with due times, signal
  waits), and its history.
* `stepper_html` renders a `Stepper`: the pending command, the workflow's locals and the
  history so far.

The handle and stepper are read through small protocols (duck typing), since the runtime
and ``flowgen.testing`` sit above this module.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, Protocol, SupportsIndex, overload

from flowgen._vocabulary.commands import (
    COMMAND_KINDS,
    ActivityOptions,
    CallActivity,
    ContinueAsNew,
    Gather,
    GetVersion,
    Patched,
    Race,
    RecordSideEffect,
    RegisterQuery,
    SendSignal,
    SetTags,
    StartChild,
    StartTimer,
    WaitSignal,
    describe_command,
)
from flowgen._vocabulary.errors import ErrorInfo
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    INCOMING_EVENTS,
    NOTE_EVENTS,
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityHeartbeat,
    ActivityResultIgnored,
    ActivityScheduled,
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    CommandCancelled,
    Event,
    SideEffectRecorded,
    SignalReceived,
    SignalSendFailed,
    SignalSent,
    SignalTimedOut,
    SignalWaitStarted,
    TagsSet,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
    UpdateErrored,
    VersionMarked,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
    WorkflowStarted,
    WorkflowTerminated,
    event_seq,
)

__all__ = [
    "History",
    "command_html",
    "describe_origin",
    "event_html",
    "event_summary",
    "format_duration",
    "handle_html",
    "history_html",
    "history_text",
    "schedule_html",
    "stepper_html",
]

MAX_ROWS = 200
"""History tables longer than this show their first and last rows only."""

_PAYLOAD_CHARS = 120
_LOCAL_CHARS = 200

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

_FAILURE_EVENTS: tuple[type, ...] = (
    ActivityAttemptFailed,
    ActivityFailed,
    ChildFailed,
    SignalSendFailed,
    SignalTimedOut,
    WorkflowErrored,
    WorkflowCancelled,
    WorkflowTerminated,
    CancelRequested,
)

# One stylesheet, scoped to `.flowgen`, so a notebook full of reprs stays light. Colours
# are chosen to read on light and dark Jupyter themes alike.
_STYLE = """<style>
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


# ---------------------------------------------------------------------------------------------
# Small formatting helpers.


def _e(value: object) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: object, limit: int = _PAYLOAD_CHARS) -> str:
    """A payload as compact JSON text (``repr`` for what JSON cannot hold), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):  # a circular or otherwise odd value
        text = repr(value)
    return _shorten(text, limit)


def _call_args(
    args: Sequence[object], kwargs: Mapping[str, object], limit: int = _PAYLOAD_CHARS
) -> str:
    """``"o-1", 10.0, retries=3``: arguments as a call would show them."""
    parts = [_json(a, limit) for a in args]
    parts += [f"{k}={_json(v, limit)}" for k, v in kwargs.items()]
    return _shorten(", ".join(parts), limit)


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


def _time(at: datetime | None) -> str:
    """``2031-03-07 09:26:53 UTC`` (milliseconds shown only when there are any)."""
    if at is None:
        return ""
    at = at.astimezone(UTC)
    text = at.strftime("%Y-%m-%d %H:%M:%S")
    if at.microsecond:
        text += f".{at.microsecond // 1000:03d}"
    return text + " UTC"


def _offset(at: datetime, start: datetime | None) -> str:
    if start is None:
        return _time(at)
    return "+" + format_duration((at - start).total_seconds())


def _badge(status: str) -> str:
    color = _STATUS_COLORS.get(status, "#6e7781")
    return f'<span class="fg-badge" style="background:{color}">{_e(status)}</span>'


def _error_html(error: ErrorInfo, *, open_traceback: bool = False) -> str:
    text = f'<span class="fg-fail"><b>{_e(error.type)}</b>'
    if error.message:
        text += f": {_e(error.message)}"
    text += "</span>"
    if error.attempts:
        text += f' <span class="fg-muted">after {error.attempts} attempt(s)</span>'
    if error.traceback:
        opened = " open" if open_traceback else ""
        text += (
            f"<details{opened}><summary>traceback</summary>"
            f"<pre>{_e(error.traceback)}</pre></details>"
        )
    return text


def _table(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column key/value table; keys are plain text, values are HTML already."""
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _details_table(rows: list[tuple[str, str]]) -> str:
    """`_table` of *rows*, or nothing at all when there are none."""
    return _table(rows) if rows else ""


def _wrap(body: str) -> str:
    return f'<div class="flowgen">{_STYLE}{body}</div>'


# ---------------------------------------------------------------------------------------------
# Events.


def _event_name(event: Event) -> str:
    match event:
        case (
            WorkflowStarted(name=name)
            | ActivityScheduled(name=name)
            | SignalWaitStarted(name=name)
            | SignalReceived(name=name)
            | SideEffectRecorded(name=name)
            | SignalSent(name=name)
            | SignalSendFailed(name=name)
            | ChildStarted(name=name)
            | UpdateAccepted(name=name)
            | UpdateCompleted(name=name)
            | UpdateErrored(name=name)
        ):
            return name
        case VersionMarked(change_id=change_id):
            return change_id
        case ChildCompleted(child_id=child_id) | ChildFailed(child_id=child_id):
            return child_id
        case _:
            return ""


def _event_details(event: Event, limit: int) -> tuple[str, ErrorInfo | None]:
    """The key payload of *event* as text, and its error if it records one."""
    match event:
        case WorkflowStarted(args=args, kwargs=kwargs, parent_id=parent):
            text = f"({_call_args(args, kwargs, limit)})"
            text += f" child of {parent}" if parent else ""
            origin = describe_origin(event)
            return (f"{text}; {origin}" if origin else text), None
        case ActivityScheduled(args=args, kwargs=kwargs):
            return f"({_call_args(args, kwargs, limit)})", None
        case ChildStarted(child_id=child_id, args=args, kwargs=kwargs):
            return f"{child_id} ({_call_args(args, kwargs, limit)})", None
        case ActivityCompleted(value=value, attempt=attempt, started_at=started, at=at):
            text = f"→ {_json(value, limit)}"
            if attempt > 1:
                text += f"  (attempt {attempt})"
            if started is not None:
                text += f"  in {format_duration((at - started).total_seconds())}"
            return text, None
        case ActivityAttemptFailed(error=error, attempt=attempt, retry_at=retry_at):
            return f"attempt {attempt}: {error}; retry at {_time(retry_at)}", error
        case ActivityFailed(error=error, attempt=attempt):
            return f"attempt {attempt}: {error} (gave up)", error
        case ActivityHeartbeat(details=details, attempt=attempt):
            return f"attempt {attempt} heartbeat: {_json(details, limit)}", None
        case ActivityResultIgnored(outcome=outcome, attempt=attempt, reason=reason):
            return f"attempt {attempt}: {outcome} ignored, {reason}", None
        case TimerStarted(fire_at=fire_at, at=at):
            wait = format_duration((fire_at - at).total_seconds())
            return f"fires at {_time(fire_at)} (after {wait})", None
        case SignalWaitStarted(deadline=deadline):
            return (f"until {_time(deadline)}" if deadline else "no deadline"), None
        case SignalReceived(payload=payload, index=index, sender=sender):
            text = f"#{index} {_json(payload, limit)}"
            return (text + f" from {sender}" if sender else text), None
        case SideEffectRecorded(value=value) | ChildCompleted(value=value):
            return f"→ {_json(value, limit)}", None
        case SignalSent(workflow_id=target):
            return f"to {target}", None
        case SignalSendFailed(workflow_id=target, error=error):
            return f"to {target}: {error}", error
        case ChildFailed(error=error):
            return str(error), error
        case VersionMarked(version=version):
            return f"version {version}", None
        case TagsSet(tags=tags):
            return _json(tags, limit), None
        case CommandCancelled(reason=reason):
            return f"cancelled ({reason})", None
        case CancelRequested(reason=reason) | WorkflowTerminated(reason=reason):
            return reason, None
        case WorkflowCompleted(result=result):
            return f"→ {_json(result, limit)}", None
        case WorkflowErrored(error=error) | WorkflowCancelled(error=error):
            return str(error), error
        case WorkflowContinuedAsNew(args=args, kwargs=kwargs):
            return f"({_call_args(args, kwargs, limit)})", None
        case UpdateAccepted(update_id=update_id, args=args):
            return f"({_call_args(args, {}, limit)}) id {update_id}", None
        case UpdateCompleted(update_id=update_id, result=result):
            return f"→ {_json(result, limit)}  id {update_id}", None
        case UpdateErrored(update_id=update_id, error=error):
            return f"{error}  id {update_id}", error
        case _:
            return "", None


def event_summary(
    event: Event, *, limit: int = _PAYLOAD_CHARS
) -> tuple[str, int | None, str, str]:
    """``(kind, seq, name, details)`` of *event*: one row of a history table, as text.

    Args:
        event: Any history event.
        limit: The most characters a payload may take before it is shortened.
    """
    details, _ = _event_details(event, limit)
    return (
        EVENT_TAGS.get(type(event), type(event).__name__),
        event_seq(event),
        _event_name(event),
        details,
    )


def event_html(event: Event) -> str:
    """One event as a small card: its kind, seq, fields, and an error's traceback."""
    kind, seq, name, details = event_summary(event, limit=2000)
    _, error = _event_details(event, 2000)
    family = "incoming" if isinstance(event, INCOMING_EVENTS) else "decision"
    if isinstance(event, NOTE_EVENTS):
        family = "note"  # never fed to the workflow: replay skips it
    head = f"<b>{_e(kind)}</b>"
    if seq is not None:
        head += f" seq {seq}"
    if name:
        head += f" <code>{_e(name)}</code>"
    rows = [("at", _e(_time(event.at)))]
    if error is not None:
        rows.append(("error", _error_html(error, open_traceback=True)))
    elif details:
        rows.append(("details", f"<code>{_e(details)}</code>"))
    rows.append(("family", f'<span class="fg-muted">{family} event</span>'))
    return _wrap(head + _table(rows))


def _named(events: Sequence[Event]) -> dict[int, str]:
    """The name each seq was given by its first event (so an outcome row can show it)."""
    names: dict[int, str] = {}
    for event in events:
        seq = event_seq(event)
        if seq is not None and seq not in names:
            name = _event_name(event)
            if name:
                names[seq] = name
    return names


def _event_row(
    event_id: int,
    event: Event,
    start: datetime | None,
    limit: int,
    names: Mapping[int, str],
) -> str:
    kind, seq, name, details = event_summary(event, limit=limit)
    if not name and seq is not None:
        name = names.get(seq, "")
    css = ""
    if isinstance(event, _FAILURE_EVENTS):
        css = ' class="fg-fail"'
    elif not isinstance(event, INCOMING_EVENTS):
        css = ' class="fg-decision"'
    return (
        f"<tr{css}><td>{event_id}</td><td>{_e(kind)}</td>"
        f"<td>{'' if seq is None else seq}</td><td><code>{_e(name)}</code></td>"
        f"<td><code>{_e(details)}</code></td>"
        f'<td title="{_e(_time(event.at))}">{_e(_offset(event.at, start))}</td></tr>'
    )


def history_html(
    events: Sequence[Event],
    *,
    max_rows: int | None = MAX_ROWS,
    limit: int = _PAYLOAD_CHARS,
    title: str | None = None,
) -> str:
    """A compact table of a history: event_id, kind, seq, name, key payload, time.

    Times are offsets from the first event (hover for the absolute time). Decisions are
    dimmed, failures red.

    Args:
        events: The history, ``workflow_started`` first.
        max_rows: Show at most this many rows (the first and last halves); ``None`` for all.
        limit: The most characters a payload may take before it is shortened.
        title: A caption above the table.
    """
    return _wrap(_history_table(events, max_rows=max_rows, limit=limit, title=title))


def _history_table(
    events: Sequence[Event],
    *,
    max_rows: int | None = MAX_ROWS,
    limit: int = _PAYLOAD_CHARS,
    title: str | None = None,
) -> str:
    start = events[0].at if events else None
    numbered = list(enumerate(events))
    head, hidden = len(numbered), 0
    if max_rows is not None and len(numbered) > max_rows:
        head = max(max_rows // 2, 1)
        tail = max(max_rows - head, 1)
        hidden = len(numbered) - head - tail
        numbered = numbered[:head] + numbered[-tail:]
    names = _named(events)
    rows = [
        _event_row(event_id, event, start, limit, names) for event_id, event in numbered
    ]
    if hidden:
        rows.insert(
            head,
            f'<tr><td colspan="6" class="fg-muted">… {hidden} more events …</td></tr>',
        )
    caption = f"<caption>{_e(title)}</caption>" if title else ""
    started = (
        f'<div class="fg-muted">{len(events)} events; times are offsets from '
        f"{_e(_time(start))}</div>"
        if start is not None
        else '<div class="fg-muted">no events</div>'
    )
    header = (
        "<tr><th>#</th><th>kind</th><th>seq</th><th>name</th>"
        "<th>details</th><th>time</th></tr>"
    )
    return f"{started}<table>{caption}{header}{''.join(rows)}</table>"


def history_text(
    events: Sequence[Event], *, max_rows: int | None = MAX_ROWS, width: int = 60
) -> str:
    """The same table as `history_html`, as aligned plain text (for terminals)."""
    start = events[0].at if events else None
    lines = []
    names = _named(events)
    for event_id, event in enumerate(events):
        kind, seq, name, details = event_summary(event, limit=width)
        if not name and seq is not None:
            name = names.get(seq, "")
        lines.append(
            (
                str(event_id),
                kind,
                "" if seq is None else str(seq),
                name,
                details,
                _offset(event.at, start),
            )
        )
    head, hidden = len(lines), 0
    if max_rows is not None and len(lines) > max_rows:
        head = max(max_rows // 2, 1)
        tail = max(max_rows - head, 1)
        hidden = len(lines) - head - tail
        lines = lines[:head] + lines[-tail:]
    header = ("#", "kind", "seq", "name", "details", "time")
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(6)]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))

    out = [fmt(header).rstrip(), *(fmt(row).rstrip() for row in lines)]
    if hidden:
        out.insert(head + 1, f"… {hidden} more events …")
    return "\n".join(out)


class History(list[Event]):
    """A run's events, in order: a plain ``list`` that renders itself as a table.

    ``repr()`` is the ordinary list repr (exact, for debugging and test diffs); Jupyter
    shows `history_html`, and IPython's terminal shows `history_text`.
    """

    @overload
    def __getitem__(self, index: SupportsIndex) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> History: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Event | History:
        if isinstance(index, slice):
            return History(super().__getitem__(index))
        return super().__getitem__(index)

    def _repr_html_(self) -> str:
        return history_html(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("History([...])" if cycle else history_text(self))


# ---------------------------------------------------------------------------------------------
# Commands.


def _timeout_rows(options: ActivityOptions) -> list[tuple[str, str]]:
    """An activity's timeouts, by Temporal's names, as key/value rows."""
    timeouts = (
        ("start-to-close timeout", options.timeout),
        ("heartbeat timeout", options.heartbeat_timeout),
        ("schedule-to-close timeout", options.schedule_to_close),
    )
    return [
        (key, _e(format_duration(value)))
        for key, value in timeouts
        if value is not None
    ]


def _command_details(command: object) -> list[tuple[str, str]]:
    """Key/value rows (values are HTML) describing *command*'s arguments."""
    rows: list[tuple[str, str]] = []
    match command:
        case CallActivity(args=args, kwargs=kwargs, options=options):
            rows.append(("arguments", f"<code>({_e(_call_args(args, kwargs))})</code>"))
            if options.retry is not None:
                rows.append(("retry", f"<code>{_e(options.retry)}</code>"))
            rows.extend(_timeout_rows(options))
        case StartChild(args=args, kwargs=kwargs, workflow_id=workflow_id):
            rows.append(("arguments", f"<code>({_e(_call_args(args, kwargs))})</code>"))
            if workflow_id is not None:
                rows.append(("workflow id", f"<code>{_e(workflow_id)}</code>"))
            rows.append(("on parent close", _e(command.parent_close)))
        case StartTimer(seconds=seconds):
            rows.append(("duration", _e(format_duration(seconds))))
        case WaitSignal(timeout=timeout):
            rows.append(
                (
                    "timeout",
                    _e(format_duration(timeout) if timeout is not None else "none"),
                )
            )
        case SendSignal(workflow_id=target, payload=payload):
            rows.append(("to", f"<code>{_e(target)}</code>"))
            rows.append(("payload", f"<code>{_e(_json(payload))}</code>"))
        case GetVersion(change_id=change_id, min_supported=lo, max_supported=hi):
            rows.append(("change", f"<code>{_e(change_id)}</code>"))
            rows.append(("supported", _e(f"{lo} … {hi}")))
        case Patched(change_id=change_id):
            rows.append(("change", f"<code>{_e(change_id)}</code>"))
        case SetTags(tags=tags):
            rows.append(("tags", f"<code>{_e(_json(tags))}</code>"))
        case ContinueAsNew(args=args, kwargs=kwargs):
            rows.append(("arguments", f"<code>({_e(_call_args(args, kwargs))})</code>"))
        case Gather(commands=children) | Race(commands=children):
            items = "".join(
                f"<li>{_e(describe_command(child))}"
                f"{_table(_command_details(child))}</li>"
                for child in children
            )
            rows.append(("commands", f"<ol start=0>{items}</ol>"))
        case RecordSideEffect() | RegisterQuery():
            pass
        case _:
            pass
    return rows


def _command_title(command: object) -> str:
    description = describe_command(command)
    if isinstance(command, (CallActivity, StartChild)):
        description += f"({_call_args(command.args, command.kwargs, 60)})"
    return description


def command_html(command: object) -> str:
    """A command as a card: what it asks for and with which arguments."""
    rows = _command_details(command)
    kind = type(command).__name__
    head = f"<b>{_e(describe_command(command))}</b> "
    head += f'<span class="fg-muted">{_e(kind)} command</span>'
    return _wrap(head + (_table(rows) if rows else ""))


# ---------------------------------------------------------------------------------------------
# Handles and steppers.


class _RecordLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def args(self) -> list[Any]: ...
    @property
    def kwargs(self) -> dict[str, Any]: ...
    @property
    def result(self) -> object: ...
    @property
    def error(self) -> ErrorInfo | None: ...
    @property
    def tags(self) -> dict[str, Any]: ...
    @property
    def parent_id(self) -> str | None: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def closed_at(self) -> datetime | None: ...


class _HandleLike(Protocol):
    workflow_id: str

    def record(self) -> _RecordLike: ...
    def status(self) -> str: ...
    def history(self) -> Sequence[Event]: ...
    def waiting_for(self) -> dict[int, str]: ...


def _waiting_rows(
    waiting: Mapping[int, str], events: Sequence[Event], now: datetime | None
) -> list[str]:
    """One line (HTML) per awaited seq, enriched from the history."""
    first: dict[int, Event] = {}
    failures: dict[int, list[ActivityAttemptFailed]] = {}
    for event in events:
        seq = event_seq(event)
        if seq is None:
            continue
        if isinstance(
            event, (ActivityScheduled, TimerStarted, SignalWaitStarted, ChildStarted)
        ):
            first.setdefault(seq, event)
        elif isinstance(event, ActivityAttemptFailed):
            failures.setdefault(seq, []).append(event)
    lines = []
    for seq, description in sorted(waiting.items()):
        text = f"<code>seq {seq}</code> {_e(description)}"
        match first.get(seq):
            case ActivityScheduled(at=at, args=args, kwargs=kwargs):
                text += f" <code>({_e(_call_args(args, kwargs, 60))})</code>"
                failed = failures.get(seq, [])
                if failed:
                    last = failed[-1]
                    text += (
                        f", attempt {last.attempt + 1} after {len(failed)} failure(s); "
                        f'last: <span class="fg-fail">{_e(last.error)}</span>; '
                        f"retry at {_e(_time(last.retry_at))}"
                    )
                else:
                    text += f", scheduled at {_e(_time(at))}"
            case TimerStarted(fire_at=fire_at):
                text += f", due at {_e(_time(fire_at))}"
                if now is not None:
                    text += (
                        f" (in {_e(format_duration((fire_at - now).total_seconds()))})"
                    )
            case SignalWaitStarted(at=at, deadline=deadline):
                text += f", waiting since {_e(_time(at))}"
                if deadline is not None:
                    text += f", deadline {_e(_time(deadline))}"
            case ChildStarted(child_id=child_id):
                text += f", child <code>{_e(child_id)}</code>"
            case _:
                pass
        lines.append(f"<li>{text}</li>")
    return lines


def _now_of(handle: object) -> datetime | None:
    clock = getattr(getattr(handle, "_engine", None), "clock", None)
    now = getattr(clock, "now", None)
    if callable(now):
        value = now()
        if isinstance(value, datetime):
            return value
    return None


def describe_origin(started: WorkflowStarted) -> str:
    """Where a reset or retried run comes from, in words (``""`` for a run started anew)."""
    if started.origin_run_id is None:
        return ""
    if started.origin_kind == "reset":
        return (
            f"reset from run {started.origin_run_id}: its events "
            f"0..{started.origin_event} replayed, then live"
        )
    return f"a retry of run {started.origin_run_id} (same arguments, started anew)"


def handle_html(handle: _HandleLike) -> str:
    """A workflow handle: status, input, result or error, what it waits for, its history."""
    try:
        record = handle.record()
        status = handle.status()
        events = handle.history()
        waiting = handle.waiting_for() if status == "running" else {}
    except Exception as exc:  # noqa: BLE001  # a display must never raise (a closed engine)
        return _wrap(
            f"<b>workflow</b> <code>{_e(handle.workflow_id)}</code> "
            f'<span class="fg-fail">cannot be read: {_e(type(exc).__name__)}: {_e(exc)}</span>'
        )
    head = (
        f"<b>workflow</b> <code>{_e(handle.workflow_id)}</code> {_badge(status)} "
        f'<span class="fg-muted">{_e(record.name)} · run {_e(record.run_id)}</span>'
    )
    rows = [
        (
            "input",
            f"<code>{_e(record.name)}({_e(_call_args(record.args, record.kwargs))})</code>",
        )
    ]
    when = _time(record.started_at)
    if record.closed_at is not None:
        took = format_duration((record.closed_at - record.started_at).total_seconds())
        when += f" → {_time(record.closed_at)} ({took})"
    rows.append(("time", _e(when)))
    if events and isinstance(events[0], WorkflowStarted):
        origin = describe_origin(events[0])
        if origin:
            rows.append(("origin", _e(origin)))
    if record.parent_id:
        rows.append(("parent", f"<code>{_e(record.parent_id)}</code>"))
    if record.tags:
        rows.append(("tags", f"<code>{_e(_json(record.tags))}</code>"))
    if status == "completed":
        rows.append(("result", f"<code>{_e(_json(record.result, 2000))}</code>"))
    elif record.error is not None:
        rows.append(("error", _error_html(record.error)))
    if status == "running":
        lines = _waiting_rows(waiting, events, _now_of(handle))
        rows.append(
            ("waiting for", f"<ul>{''.join(lines)}</ul>" if lines else "nothing (busy)")
        )
    history = (
        f"<details><summary>history ({len(events)} events)</summary>"
        f"{_history_table(events)}</details>"
    )
    return _wrap(head + _table(rows) + history)


class _ScheduleLike(Protocol):
    # Read-only: a frozen `ScheduleRecord` (the store layer, which this one never imports).
    @property
    def schedule_id(self) -> str: ...

    @property
    def workflow(self) -> str: ...

    @property
    def args(self) -> list[Any]: ...

    @property
    def kwargs(self) -> dict[str, Any]: ...

    @property
    def overlap(self) -> str: ...

    @property
    def jitter_seconds(self) -> float: ...

    @property
    def paused(self) -> bool: ...

    @property
    def note(self) -> str: ...

    @property
    def fires_at(self) -> datetime: ...

    @property
    def buffered_at(self) -> datetime | None: ...

    @property
    def last_workflow_id(self) -> str | None: ...

    @property
    def last_fired_at(self) -> datetime | None: ...


def schedule_html(schedule: _ScheduleLike, when: str) -> str:
    """A schedule's row: what it starts, *when* (its cadence, described), where it is."""
    state = "paused" if schedule.paused else "active"
    head = (
        f"<b>schedule</b> <code>{_e(schedule.schedule_id)}</code> "
        f"{_badge('waiting' if state == 'active' else 'cancelled')} "
        f'<span class="fg-muted">{_e(state)}</span>'
    )
    call = _call_args(schedule.args, schedule.kwargs)
    rows = [
        ("starts", f"<code>{_e(schedule.workflow)}({_e(call)})</code>"),
        ("when", _e(when)),
        ("overlap", _e(schedule.overlap)),
    ]
    if schedule.jitter_seconds:
        rows.append(("jitter", _e(f"up to {format_duration(schedule.jitter_seconds)}")))
    if schedule.note:
        rows.append(("note", _e(schedule.note)))
    if not schedule.paused:
        rows.append(("next firing", _e(_time(schedule.fires_at))))
    if schedule.buffered_at is not None:
        rows.append(("buffered", _e(_time(schedule.buffered_at))))
    if schedule.last_workflow_id is not None:
        last = f"<code>{_e(schedule.last_workflow_id)}</code>"
        rows.append(("last run", f"{last} at {_e(_time(schedule.last_fired_at))}"))
    return _wrap(head + _table(rows))


def _locals_table(variables: Mapping[str, object]) -> str:
    rows = []
    for name, value in variables.items():
        if name.startswith("."):  # comprehension internals
            continue
        try:
            text = repr(value)
        except Exception as exc:  # noqa: BLE001  # a broken __repr__ must not break the view
            text = f"<repr failed: {type(exc).__name__}>"
        rows.append((name, f"<code>{_e(_shorten(text, _LOCAL_CHARS))}</code>"))
    return _table(rows) if rows else '<span class="fg-muted">none</span>'


# How Jupyter names the code of a cell: ipykernel compiles it as a temp file
# (``/tmp/ipykernel_3812/1834760319.py``), plain IPython as ``<ipython-input-4-...>``.
_NOTEBOOK_CELL = re.compile(
    r"(?:[/\\]ipykernel_\d+[/\\]\d+\.py|<ipython-input-[^>]*>)$"
)


def yield_site_label(site: str) -> str:
    """A ``file:line`` yield site as a reader wants it: the file's name, or the cell's line.

    A kernel's temp-file path means nothing to a reader and changes with every kernel, so a
    workflow defined in a notebook is shown as ``line 42 of a notebook cell``; one in a
    module as ``orders.py:42`` (the whole path is the tooltip).
    """
    path, sep, line = site.rpartition(":")
    if not sep or not line.isdigit():
        return site
    if _NOTEBOOK_CELL.search(path):
        return f"line {line} of a notebook cell"
    return f"{PurePath(path).name}:{line}"


def _pending_details(command: object) -> list[tuple[str, str]]:
    # An activity's title shows its arguments already: only its timeouts are added.
    if isinstance(command, CallActivity):
        return _timeout_rows(command.options)
    return _command_details(command)


def stepper_html(
    *,
    workflow: str,
    status: str,
    pending: Mapping[int, object] | None,
    variables: Mapping[str, object],
    history: Sequence[Event],
    result: object = None,
    error: ErrorInfo | None = None,
    position: str = "",
) -> str:
    """A Stepper: the pending command(s), the workflow's locals and the history so far.

    Args:
        workflow: The workflow's name.
        status: The run's status (``waiting``, ``completed``, ...).
        pending: The awaited commands by seq (``None`` or empty once the run has ended).
        variables: The workflow function's local variables where it is suspended.
        history: The events recorded so far.
        result: The result, once completed.
        error: The failure, once failed or cancelled.
        position: Where the generator is suspended, e.g. ``"orders.py:42"``.
    """
    head = f"<b>Stepper</b> <code>{_e(workflow)}</code> {_badge(status)}"
    if position:
        site = re.match(r"(.+:\d+)(.*)$", position)  # "file:line (outcome 3 of 4)"
        label = yield_site_label(site[1]) + site[2] if site else position
        # The whole path as a tooltip, unless it is a kernel's temp file.
        tooltip = (
            f' title="{_e(site[1])}"' if site and not label.startswith("line ") else ""
        )
        head += f' <span class="fg-muted"{tooltip}>at {_e(label)}</span>'
    rows: list[tuple[str, str]] = []
    if pending:
        items = "".join(
            f"<li><code>seq {seq}</code> <b>{_e(_command_title(command))}</b>"
            f"{_details_table(_pending_details(command))}</li>"
            for seq, command in sorted(pending.items())
        )
        rows.append(("pending", f"<ul>{items}</ul>"))
    elif status == "completed":
        rows.append(("result", f"<code>{_e(_shorten(repr(result), 2000))}</code>"))
    elif error is not None:
        rows.append(("error", _error_html(error)))
    rows.append(("locals", _locals_table(variables)))
    body = _table(rows)
    body += (
        f"<details open><summary>history so far ({len(history)} events)</summary>"
        f"{_history_table(history)}</details>"
    )
    return _wrap(head + body)


# ---------------------------------------------------------------------------------------------
# Install the reprs on the vocabulary classes (which must not import this module).


def _install() -> None:
    for cls in EVENT_TAGS:
        setattr(cls, "_repr_html_", event_html)  # noqa: B010  # a method, set from outside
    for cls in COMMAND_KINDS:
        setattr(cls, "_repr_html_", command_html)  # noqa: B010


_install()
