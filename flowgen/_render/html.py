"""The events view: the HTML (and compact text) of events, histories, handles and schedules.

Pure string building on `flowgen._render.html_parts` (which owns escaping: every value that
came from a user passes through its `escape`). Nothing here imports IPython, a plotting
library or anything above the vocabulary layer, so it costs nothing to import and works
wherever HTML is shown (Jupyter, VS Code, the docs).

What renders what:

* `event_html` is installed as ``_repr_html_`` on every event class when this module is
  imported (``flowgen/__init__.py`` imports it). It is assigned from here rather than
  defined in ``events.py`` so the vocabulary layer never imports a renderer. (Commands and
  the Stepper are `flowgen._render.stepper_html`'s.)
* A history is a table of one row per event: its kind, seq, name (an outcome row shows its
  command's name), a payload shortened to `PAYLOAD_CHARS`, and its time as an offset from
  the first event (hover for the absolute time); decisions dimmed, failures red; longer
  than `MAX_ROWS`, its first and last rows only. `history_text` is the same table as
  aligned text.
* `History` is the list `WorkflowHandle.history` returns: a plain ``list`` of events whose
  ``repr()`` is unchanged, with a table for Jupyter and a compact text table for IPython.
* `handle_html` renders a `WorkflowHandle`: status, input, result or error, what the run is
  waiting for right now (activities with their attempts, timers with due times, signal
  waits), and its history. It never raises (a closed engine shows as unreadable).
* `schedule_html` renders a schedule's row.

The handle and schedule are read through small protocols (duck typing), since the runtime
and the stores sit above or beside this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, SupportsIndex, overload

from flowgen._render.html_parts import (
    PAYLOAD_CHARS,
    badge,
    call_args,
    error_html,
    escape,
    format_duration,
    json_text,
    table,
    time_text,
    wrap,
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
    "MAX_ROWS",
    "History",
    "describe_origin",
    "event_html",
    "event_summary",
    "handle_html",
    "history_html",
    "history_table",
    "history_text",
    "schedule_html",
]

MAX_ROWS = 200
"""History tables longer than this show their first and last rows only."""

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


def _offset(at: datetime, start: datetime | None) -> str:
    if start is None:
        return time_text(at)
    return "+" + format_duration((at - start).total_seconds())


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
            text = f"({call_args(args, kwargs, limit)})"
            text += f" child of {parent}" if parent else ""
            origin = describe_origin(event)
            return (f"{text}; {origin}" if origin else text), None
        case ActivityScheduled(args=args, kwargs=kwargs):
            return f"({call_args(args, kwargs, limit)})", None
        case ChildStarted(child_id=child_id, args=args, kwargs=kwargs):
            return f"{child_id} ({call_args(args, kwargs, limit)})", None
        case ActivityCompleted(value=value, attempt=attempt, started_at=started, at=at):
            text = f"→ {json_text(value, limit)}"
            if attempt > 1:
                text += f"  (attempt {attempt})"
            if started is not None:
                text += f"  in {format_duration((at - started).total_seconds())}"
            return text, None
        case ActivityAttemptFailed(error=error, attempt=attempt, retry_at=retry_at):
            return f"attempt {attempt}: {error}; retry at {time_text(retry_at)}", error
        case ActivityFailed(error=error, attempt=attempt):
            return f"attempt {attempt}: {error} (gave up)", error
        case ActivityHeartbeat(details=details, attempt=attempt):
            return f"attempt {attempt} heartbeat: {json_text(details, limit)}", None
        case ActivityResultIgnored(outcome=outcome, attempt=attempt, reason=reason):
            return f"attempt {attempt}: {outcome} ignored, {reason}", None
        case TimerStarted(fire_at=fire_at, at=at):
            wait = format_duration((fire_at - at).total_seconds())
            return f"fires at {time_text(fire_at)} (after {wait})", None
        case SignalWaitStarted(deadline=deadline):
            return (f"until {time_text(deadline)}" if deadline else "no deadline"), None
        case SignalReceived(payload=payload, index=index, sender=sender):
            text = f"#{index} {json_text(payload, limit)}"
            return (text + f" from {sender}" if sender else text), None
        case SideEffectRecorded(value=value) | ChildCompleted(value=value):
            return f"→ {json_text(value, limit)}", None
        case SignalSent(workflow_id=target):
            return f"to {target}", None
        case SignalSendFailed(workflow_id=target, error=error):
            return f"to {target}: {error}", error
        case ChildFailed(error=error):
            return str(error), error
        case VersionMarked(version=version):
            return f"version {version}", None
        case TagsSet(tags=tags):
            return json_text(tags, limit), None
        case CommandCancelled(reason=reason):
            return f"cancelled ({reason})", None
        case CancelRequested(reason=reason) | WorkflowTerminated(reason=reason):
            return reason, None
        case WorkflowCompleted(result=result):
            return f"→ {json_text(result, limit)}", None
        case WorkflowErrored(error=error) | WorkflowCancelled(error=error):
            return str(error), error
        case WorkflowContinuedAsNew(args=args, kwargs=kwargs):
            return f"({call_args(args, kwargs, limit)})", None
        case UpdateAccepted(update_id=update_id, args=args):
            return f"({call_args(args, {}, limit)}) id {update_id}", None
        case UpdateCompleted(update_id=update_id, result=result):
            return f"→ {json_text(result, limit)}  id {update_id}", None
        case UpdateErrored(update_id=update_id, error=error):
            return f"{error}  id {update_id}", error
        case _:
            return "", None


def event_summary(
    event: Event, *, limit: int = PAYLOAD_CHARS
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
    head = f"<b>{escape(kind)}</b>"
    if seq is not None:
        head += f" seq {seq}"
    if name:
        head += f" <code>{escape(name)}</code>"
    rows = [("at", escape(time_text(event.at)))]
    if error is not None:
        rows.append(("error", error_html(error, open_traceback=True)))
    elif details:
        rows.append(("details", f"<code>{escape(details)}</code>"))
    rows.append(("family", f'<span class="fg-muted">{family} event</span>'))
    return wrap(head + table(rows))


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
        f"<tr{css}><td>{event_id}</td><td>{escape(kind)}</td>"
        f"<td>{'' if seq is None else seq}</td><td><code>{escape(name)}</code></td>"
        f"<td><code>{escape(details)}</code></td>"
        f'<td title="{escape(time_text(event.at))}">{escape(_offset(event.at, start))}</td></tr>'
    )


def history_html(
    events: Sequence[Event],
    *,
    max_rows: int | None = MAX_ROWS,
    limit: int = PAYLOAD_CHARS,
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
    return wrap(history_table(events, max_rows=max_rows, limit=limit, title=title))


def history_table(
    events: Sequence[Event],
    *,
    max_rows: int | None = MAX_ROWS,
    limit: int = PAYLOAD_CHARS,
    title: str | None = None,
) -> str:
    """`history_html`'s table without its card (for views that hold a history)."""
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
    caption = f"<caption>{escape(title)}</caption>" if title else ""
    started = (
        f'<div class="fg-muted">{len(events)} events; times are offsets from '
        f"{escape(time_text(start))}</div>"
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
# Handles and schedules.


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
        text = f"<code>seq {seq}</code> {escape(description)}"
        match first.get(seq):
            case ActivityScheduled(at=at, args=args, kwargs=kwargs):
                text += f" <code>({escape(call_args(args, kwargs, 60))})</code>"
                failed = failures.get(seq, [])
                if failed:
                    last = failed[-1]
                    text += (
                        f", attempt {last.attempt + 1} after {len(failed)} failure(s); "
                        f'last: <span class="fg-fail">{escape(last.error)}</span>; '
                        f"retry at {escape(time_text(last.retry_at))}"
                    )
                else:
                    text += f", scheduled at {escape(time_text(at))}"
            case TimerStarted(fire_at=fire_at):
                text += f", due at {escape(time_text(fire_at))}"
                if now is not None:
                    text += f" (in {escape(format_duration((fire_at - now).total_seconds()))})"
            case SignalWaitStarted(at=at, deadline=deadline):
                text += f", waiting since {escape(time_text(at))}"
                if deadline is not None:
                    text += f", deadline {escape(time_text(deadline))}"
            case ChildStarted(child_id=child_id):
                text += f", child <code>{escape(child_id)}</code>"
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
        return wrap(
            f"<b>workflow</b> <code>{escape(handle.workflow_id)}</code> "
            f'<span class="fg-fail">cannot be read: {escape(type(exc).__name__)}: {escape(exc)}</span>'
        )
    head = (
        f"<b>workflow</b> <code>{escape(handle.workflow_id)}</code> {badge(status)} "
        f'<span class="fg-muted">{escape(record.name)} · run {escape(record.run_id)}</span>'
    )
    rows = [
        (
            "input",
            f"<code>{escape(record.name)}({escape(call_args(record.args, record.kwargs))})</code>",
        )
    ]
    when = time_text(record.started_at)
    if record.closed_at is not None:
        took = format_duration((record.closed_at - record.started_at).total_seconds())
        when += f" → {time_text(record.closed_at)} ({took})"
    rows.append(("time", escape(when)))
    if events and isinstance(events[0], WorkflowStarted):
        origin = describe_origin(events[0])
        if origin:
            rows.append(("origin", escape(origin)))
    if record.parent_id:
        rows.append(("parent", f"<code>{escape(record.parent_id)}</code>"))
    if record.tags:
        rows.append(("tags", f"<code>{escape(json_text(record.tags))}</code>"))
    if status == "completed":
        rows.append(
            ("result", f"<code>{escape(json_text(record.result, 2000))}</code>")
        )
    elif record.error is not None:
        rows.append(("error", error_html(record.error)))
    if status == "running":
        lines = _waiting_rows(waiting, events, _now_of(handle))
        rows.append(
            ("waiting for", f"<ul>{''.join(lines)}</ul>" if lines else "nothing (busy)")
        )
    history = (
        f"<details><summary>history ({len(events)} events)</summary>"
        f"{history_table(events)}</details>"
    )
    return wrap(head + table(rows) + history)


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

    @property
    def skipped(self) -> int: ...

    @property
    def triggered_at(self) -> datetime | None: ...


def schedule_html(schedule: _ScheduleLike, when: str) -> str:
    """A schedule's row: what it starts, *when* (its cadence, described), where it is."""
    state = "paused" if schedule.paused else "active"
    head = (
        f"<b>schedule</b> <code>{escape(schedule.schedule_id)}</code> "
        f"{badge('waiting' if state == 'active' else 'cancelled')} "
        f'<span class="fg-muted">{escape(state)}</span>'
    )
    call = call_args(schedule.args, schedule.kwargs)
    rows = [
        ("starts", f"<code>{escape(schedule.workflow)}({escape(call)})</code>"),
        ("when", escape(when)),
        ("overlap", escape(schedule.overlap)),
    ]
    if schedule.jitter_seconds:
        rows.append(
            ("jitter", escape(f"up to {format_duration(schedule.jitter_seconds)}"))
        )
    if schedule.note:
        rows.append(("note", escape(schedule.note)))
    if not schedule.paused:
        rows.append(("next firing", escape(time_text(schedule.fires_at))))
    if schedule.buffered_at is not None:
        rows.append(("buffered", escape(time_text(schedule.buffered_at))))
    if schedule.triggered_at is not None:  # recorded, not yet started by an engine
        rows.append(("triggered", escape(time_text(schedule.triggered_at))))
    if schedule.last_workflow_id is not None:
        last = f"<code>{escape(schedule.last_workflow_id)}</code>"
        rows.append(
            ("last run", f"{last} at {escape(time_text(schedule.last_fired_at))}")
        )
    if schedule.skipped:
        rows.append(("skipped", escape(f"{schedule.skipped} firing(s)")))
    return wrap(head + table(rows))


# ---------------------------------------------------------------------------------------------
# Install the reprs on the event classes (which must not import this module).


def _install() -> None:
    for cls in EVENT_TAGS:
        setattr(cls, "_repr_html_", event_html)  # noqa: B010  # a method, set from outside


_install()
