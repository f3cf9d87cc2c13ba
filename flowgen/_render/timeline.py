"""One run's timeline: a Gantt chart drawn from its history alone.

`timeline` draws each command on its own row (activities with every attempt, retries and
their back-off visible; timers; signal waits and the signals that arrived; child workflows),
then each update, from its acceptance to its handler's end (red if it failed).
`Chart` and the colours are shared with the database charts of ``flowgen.notebook``.

matplotlib is imported by this module, which nothing imports until a chart is asked for
(``WorkflowHandle.timeline``, ``flowgen.notebook``), so the rest of flowgen never loads it.
Charts are built on `matplotlib.figure.Figure` directly (not pyplot), so a chart returned
from a cell is shown once, and nothing is left in pyplot's global state.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import attrs
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MultipleLocator

from flowgen._render.html_parts import format_duration
from flowgen._vocabulary.events import (
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
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
    UpdateErrored,
    VersionMarked,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
    WorkflowTerminated,
)

if TYPE_CHECKING:
    from flowgen._runtime.handle import WorkflowHandle

__all__ = ["Chart", "timeline"]


# Colours (colour-blind safe, after Okabe & Ito) shared by every chart.
_GREEN = "#009E73"
_RED = "#D55E00"
_BLUE = "#0072B2"
_SKY = "#56B4E9"
_ORANGE = "#E69F00"
_PURPLE = "#CC79A7"
_GREY = "#999999"
_END_COLORS = {
    "completed": _GREEN,
    "failed": _RED,
    "cancelled": _ORANGE,
    "terminated": _ORANGE,
    "continued_as_new": _PURPLE,
    "running": _BLUE,
}


class Chart(Figure):
    """A matplotlib `Figure` that shows itself as a PNG in Jupyter, whatever the backend.

    The charts are built without pyplot, so Jupyter's inline backend may never have been
    switched on; this ``_repr_png_`` makes a returned chart appear anyway (once: when the
    inline backend is on, IPython's own figure printer takes precedence).
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


class _HasHistory(Protocol):
    def history(self) -> Sequence[Event]: ...


# ---------------------------------------------------------------------------------------------
# Timeline of one run.


@attrs.define
class _Bar:
    start: datetime
    end: datetime
    color: str
    open: bool = False  # still running at the end of the history
    hatch: str | None = None
    alpha: float = 1.0
    height: float = 0.6


@attrs.define
class _Lane:
    seq: int | None
    label: str
    bars: list[_Bar] = attrs.field(factory=list)
    marks: list[tuple[datetime, str, str]] = attrs.field(
        factory=list
    )  # (at, marker, color)
    note: str = ""


def _history_of(source: object) -> tuple[list[Event], str | None]:
    """The events and a title from a handle, a `Stepper` or a plain sequence of events."""
    history = getattr(source, "history", None)
    if callable(history):  # a WorkflowHandle
        events = list(history())
        status = getattr(source, "status", None)
        title = f"{getattr(source, 'workflow_id', '')}"
        if callable(status):
            title += f" ({status()})"
        return events, title
    if history is not None:  # a Stepper: history is a property
        return list(history), f"{getattr(source, 'workflow_id', 'stepper')}"
    if isinstance(source, Iterable):
        return list(source), None
    raise TypeError(
        f"timeline() needs a WorkflowHandle, a Stepper or a list of events, got {source!r}"
    )


def _lanes(events: Sequence[Event]) -> tuple[list[_Lane], _Lane]:
    """One lane per command seq, in seq order, then one per update; the run-level lane."""
    lanes: dict[int, _Lane] = {}
    updates: dict[str, _Lane] = {}  # by update id, in the order they were accepted
    run = _Lane(None, "run")
    end = events[-1].at
    # Signal waits take signals of their name first-in first-out (see _core/interpreter.py);
    # a wait that timed out or was cancelled took none.
    waits: dict[str, list[int]] = {}
    wait_start: dict[int, datetime] = {}
    last_attempt_end: dict[int, datetime] = {}
    scheduled_at: dict[int, datetime] = {}

    def lane(seq: int, label: str) -> _Lane:
        if seq not in lanes:
            lanes[seq] = _Lane(seq, label)
        return lanes[seq]

    for event in events:
        match event:
            case ActivityScheduled(at=at, seq=seq, name=name):
                lane(seq, f"{seq} · {name}")
                scheduled_at[seq] = at
                last_attempt_end[seq] = at
            case (
                ActivityCompleted(at=at, seq=seq, attempt=attempt, started_at=started)
                | ActivityAttemptFailed(
                    at=at, seq=seq, attempt=attempt, started_at=started
                )
                | ActivityFailed(at=at, seq=seq, attempt=attempt, started_at=started)
            ):
                row = lane(seq, f"{seq} · activity")
                began = started or last_attempt_end.get(seq, at)
                previous = last_attempt_end.get(seq)
                if previous is not None and began > previous:
                    # Waiting: in the queue before attempt 1, a retry's back-off after.
                    row.bars.append(
                        _Bar(previous, began, _GREY, alpha=0.35, height=0.25)
                    )
                ok = isinstance(event, ActivityCompleted)
                row.bars.append(_Bar(began, at, _GREEN if ok else _RED))
                if not ok:
                    row.marks.append((at, "x", _RED))
                last_attempt_end[seq] = at
                if attempt > 1:
                    row.note = f"{attempt} attempts"
                if isinstance(event, ActivityAttemptFailed):
                    row.bars.append(
                        _Bar(at, event.retry_at, _GREY, alpha=0.35, height=0.25)
                    )
                    last_attempt_end[seq] = event.retry_at
            case ActivityHeartbeat(at=at, seq=seq):  # a recorded heartbeat: a dot
                lane(seq, f"{seq} · activity").marks.append((at, ".", _GREEN))
            case ActivityResultIgnored(at=at, seq=seq):  # a late result: a hollow x
                lane(seq, f"{seq} · activity").marks.append((at, "x", _GREY))
            case TimerStarted(at=at, seq=seq, fire_at=fire_at):
                row = lane(
                    seq,
                    f"{seq} · sleep {format_duration((fire_at - at).total_seconds())}",
                )
                row.bars.append(_Bar(at, fire_at, _SKY, open=True, alpha=0.8))
            case TimerFired(at=at, seq=seq):
                row = lane(seq, f"{seq} · timer")
                if row.bars:
                    row.bars[-1].end, row.bars[-1].open = at, False
                row.marks.append((at, "|", _BLUE))
            case SignalWaitStarted(at=at, seq=seq, name=name, deadline=deadline):
                row = lane(seq, f"{seq} · wait {name!r}")
                waits.setdefault(name, []).append(seq)
                wait_start[seq] = at
                row.bars.append(
                    _Bar(at, end, _PURPLE, open=True, alpha=0.45, hatch="//")
                )
                if deadline is not None:
                    row.marks.append((deadline, "|", _GREY))
            case SignalReceived(at=at, name=name):
                run.marks.append((at, "v", _PURPLE))
                queue = waits.get(name)
                if queue:
                    seq = queue.pop(0)
                    row = lanes[seq]
                    taken = max(at, wait_start[seq])
                    row.bars[-1].end, row.bars[-1].open = taken, False
                    row.bars[-1].alpha, row.bars[-1].hatch = 0.8, None
                    row.marks.append((taken, "v", _PURPLE))
            case SignalTimedOut(at=at, seq=seq):
                row = lane(seq, f"{seq} · wait")
                _close(row, at)
                row.marks.append((at, "x", _ORANGE))
                _forget_wait(waits, seq)
            case ChildStarted(at=at, seq=seq, name=name, child_id=child_id):
                row = lane(seq, f"{seq} · child {name}")
                row.note = child_id
                row.bars.append(_Bar(at, end, _BLUE, open=True, alpha=0.8))
            case ChildCompleted(at=at, seq=seq) | ChildFailed(at=at, seq=seq):
                row = lane(seq, f"{seq} · child")
                _close(row, at)
                if isinstance(event, ChildFailed):
                    row.bars[-1].color = _RED
                    row.marks.append((at, "x", _RED))
            case CommandCancelled(at=at, seq=seq, reason=reason):
                row = lane(seq, f"{seq} · cancelled")
                _close(row, at)
                for bar in row.bars:
                    bar.alpha = min(bar.alpha, 0.35)
                row.marks.append((at, "x", _GREY))
                row.note = (row.note + f" cancelled ({reason})").strip()
                _forget_wait(waits, seq)
            case SideEffectRecorded(at=at, seq=seq, name=name):
                lane(seq, f"{seq} · side effect {name}").marks.append((at, "o", _GREY))
            case SignalSent(at=at, seq=seq, name=name, workflow_id=target):
                row = lane(seq, f"{seq} · send {name!r}")
                row.note = f"→ {target}"
                row.marks.append((at, ">", _PURPLE))
            case SignalSendFailed(at=at, seq=seq, name=name):
                lane(seq, f"{seq} · send {name!r}").marks.append((at, "x", _RED))
            case VersionMarked(at=at):
                run.marks.append((at, "d", _GREY))
            case CancelRequested(at=at):
                run.marks.append((at, "X", _ORANGE))
            case UpdateAccepted(at=at, update_id=update_id, name=name):
                row = updates[update_id] = _Lane(None, f"update {name}")
                row.note = update_id
                row.bars.append(_Bar(at, end, _ORANGE, open=True, alpha=0.8))
                row.marks.append((at, ">", _ORANGE))
            case (
                UpdateCompleted(at=at, update_id=update_id)
                | UpdateErrored(at=at, update_id=update_id)
            ) if update_id in updates:
                row = updates[update_id]
                _close(row, at)
                if isinstance(event, UpdateErrored):
                    row.bars[-1].color = _RED
                    row.marks.append((at, "x", _RED))
            case _:
                pass
    # A run that ended leaves nothing open past its end.
    for row in (*lanes.values(), *updates.values()):
        for bar in row.bars:
            bar.end = min(bar.end, max(end, bar.start)) if bar.open else bar.end
    return [*(lanes[seq] for seq in sorted(lanes)), *updates.values()], run


def _close(row: _Lane, at: datetime) -> None:
    if row.bars and row.bars[-1].open:
        row.bars[-1].end, row.bars[-1].open = at, False


def _forget_wait(waits: dict[str, list[int]], seq: int) -> None:
    for queue in waits.values():
        if seq in queue:
            queue.remove(seq)


def _run_end(events: Sequence[Event]) -> tuple[datetime, str]:
    last = events[-1]
    match last:
        case WorkflowCompleted():
            return last.at, "completed"
        case WorkflowErrored():
            return last.at, "failed"
        case WorkflowCancelled():
            return last.at, "cancelled"
        case WorkflowTerminated():
            return last.at, "terminated"
        case WorkflowContinuedAsNew():
            return last.at, "continued_as_new"
        case _:
            return last.at, "running"


_NICE_STEPS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
    3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600,
    86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400,
)  # fmt: skip


def _duration_axis(axis: Any, span: float, *, plus: bool = False) -> None:
    """Ticks at round durations (1 s, 5 m, 1 h, 1 d, ...), labelled like ``+5m 00s``."""
    step = next((s for s in _NICE_STEPS if span / s <= 8), _NICE_STEPS[-1])
    axis.set_major_locator(MultipleLocator(step))
    prefix = "+" if plus else ""

    def label(x: float, _pos: object) -> str:
        if x == 0:
            return "0"
        text = format_duration(x)
        for zero in (" 00s", " 00m", " 0h"):
            text = text.removesuffix(zero)
        text = text.replace(".0 s", " s")
        return prefix + text

    axis.set_major_formatter(FuncFormatter(label))


def timeline(
    source: WorkflowHandle | _HasHistory | Sequence[Event],
    *,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """A Gantt chart of one run, drawn from its history.

    One row per command, by seq: activities show each attempt (green if it returned, red if
    it failed) with the queueing and retry back-off between attempts in grey; timers run to
    their firing; signal waits run to the signal that ended them (hatched while still
    waiting, ▼ where a signal arrived); child workflows run to their end. The top row shows
    the run with every signal that arrived. Times are offsets from the start.

    Args:
        source: A `WorkflowHandle`, a `Stepper`, or a history (a list of events).
        title: The chart's title; the workflow id and status by default.
        ax: Draw into these axes instead of a new figure.

    Returns:
        The matplotlib figure (shown when it is a cell's last value; ``.savefig()`` it).

    Raises:
        TypeError: *source* is none of the above.
        ValueError: The history is empty.
    """
    events, default_title = _history_of(source)
    if not events:
        raise ValueError("timeline() of an empty history")
    lanes, run = _lanes(events)
    start = events[0].at
    end, status = _run_end(events)
    span = (end - start).total_seconds()

    def x(at: datetime) -> float:
        return (at - start).total_seconds()

    rows = [run, *lanes]
    if ax is None:
        figure = Chart(figsize=(10, 1.2 + 0.42 * len(rows)), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.get_figure(root=True)  # type: ignore[assignment]  # root=True: a Figure
    run_color = _END_COLORS.get(status, _GREY)
    ax.barh(0, max(span, 1e-9), left=0, height=0.25, color=run_color, alpha=0.5)
    for y, row in enumerate(rows):
        for bar in row.bars:
            width = max(x(bar.end) - x(bar.start), span * 0.002)
            ax.barh(
                y,
                width,
                left=x(bar.start),
                height=bar.height,
                color=bar.color,
                alpha=bar.alpha,
                hatch=bar.hatch,
                edgecolor=bar.color if bar.hatch else "none",
                linestyle="--" if bar.open else "-",
            )
        for at, marker, color in row.marks:
            ax.plot(x(at), y, marker=marker, color=color, markersize=7, linestyle="")
        if row.note:
            last = max((x(b.end) for b in row.bars), default=None)
            if last is None:
                last = max((x(m[0]) for m in row.marks), default=0.0)
            ax.annotate(
                row.note,
                (last, y),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color="#555555",
            )
    ax.set_yticks(range(len(rows)), [row.label for row in rows])
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=9)
    _duration_axis(ax.xaxis, span, plus=True)
    ax.set_xlim(-span * 0.02, span * 1.04 if span > 0 else 1.0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(title if title is not None else (default_title or "run"), loc="left")
    ax.set_xlabel(f"time since start ({start:%Y-%m-%d %H:%M:%S} UTC); run {status}")
    used = {bar.color for row in rows for bar in row.bars} | {
        color for row in rows for _at, _marker, color in row.marks
    }
    legend = [
        (_GREEN, Patch(color=_GREEN, label="attempt ok")),
        (_RED, Patch(color=_RED, label="attempt failed")),
        (_GREY, Patch(color=_GREY, alpha=0.35, label="queued / back-off")),
        (_SKY, Patch(color=_SKY, label="timer")),
        (_PURPLE, Patch(color=_PURPLE, alpha=0.8, label="signal wait / signal")),
        (_BLUE, Patch(color=_BLUE, alpha=0.8, label="child workflow")),
    ]
    ax.legend(
        handles=[handle for color, handle in legend if color in used],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
    )
    return figure
