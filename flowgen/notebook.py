"""Jupyter helpers: a timeline of one run, charts of a whole database, progress for long runs.

Needs the optional extra: ``pip install "flowgen[notebook]"`` (matplotlib, pandas, jupysql,
IPython). The core never imports this module; `WorkflowHandle.timeline` imports it when
called.

* `timeline` draws one run as a Gantt chart: each command on its own row (activities with
  every attempt, retries and their back-off visible; timers; signal waits and the signals
  that arrived; child workflows), from the run's history alone.
* `latency_chart` and `failures_chart` read the ``activities`` and ``activity_attempts``
  views of an engine's DuckDB store.
* `Progress`, `progress` and `run_until_idle` show a progress bar for long loops and
  hand-driven engines: an HTML bar updated in place under Jupyter, a one-line text bar on a
  terminal. No extra dependency.

Charts are built on `matplotlib.figure.Figure` directly (not pyplot), so a chart returned
from a cell is shown once, and nothing is left in pyplot's global state.
"""

from __future__ import annotations

import html
import importlib
import io
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs
import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

from flowgen._engine import Engine
from flowgen._errors import UsageError
from flowgen._events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
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
    VersionMarked,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
    WorkflowTerminated,
)
from flowgen._render import format_duration

if TYPE_CHECKING:
    from flowgen._handle import WorkflowHandle

__all__ = [
    "Chart",
    "Progress",
    "failures_chart",
    "latency_chart",
    "progress",
    "run_until_idle",
    "timeline",
]

T = TypeVar("T")

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
    """One lane per command seq, in seq order, and the lane of run-level markers."""
    lanes: dict[int, _Lane] = {}
    run = _Lane(None, "run")
    end = events[-1].at
    # Signal waits take signals of their name first-in first-out (see _interpreter.py);
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
            case _:
                pass
    # A run that ended leaves nothing open past its end.
    for row in lanes.values():
        for bar in row.bars:
            bar.end = min(bar.end, max(end, bar.start)) if bar.open else bar.end
    return [lanes[seq] for seq in sorted(lanes)], run


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


# ---------------------------------------------------------------------------------------------
# Charts of a whole database.


def _rows(engine: Engine, query: str) -> list[tuple[Any, ...]]:
    try:
        relation = engine.sql(query)
    except UsageError as exc:
        raise UsageError(
            f"{exc}: the charts read the SQL views of a DuckDB store"
        ) from None
    rows: list[tuple[Any, ...]] = relation.fetchall()
    return rows


def latency_chart(
    engine: Engine,
    *,
    per: str = "call",
    ax: Axes | None = None,
) -> Figure:
    """p50 and p95 duration per activity, from the ``activities`` view.

    Args:
        engine: An engine on a DuckDB store.
        per: ``"call"``: from scheduling to the final outcome, retries and back-off
            included (``activities.duration_s``); ``"attempt"``: each attempt's own run time
            (``activity_attempts.duration_s``).
        ax: Draw into these axes instead of a new figure.

    Returns:
        A horizontal bar chart, slowest p95 on top, with the call count on each bar.

    Raises:
        ValueError: *per* is not ``"call"`` or ``"attempt"``.
        UsageError: The engine's store does not speak SQL.
    """
    if per == "call":
        source = "activities WHERE status = 'completed' AND"
    elif per == "attempt":
        source = "activity_attempts WHERE"
    else:
        raise ValueError(f"per must be 'call' or 'attempt', got {per!r}")
    rows = _rows(
        engine,
        f"""SELECT name, count(*) AS n,
                quantile_cont(duration_s, 0.5) AS p50,
                quantile_cont(duration_s, 0.95) AS p95
            FROM {source} duration_s IS NOT NULL
            GROUP BY name ORDER BY p95 DESC""",
    )
    if ax is None:
        figure = Chart(
            figsize=(8, 1.2 + 0.45 * max(len(rows), 1)), layout="constrained"
        )
        ax = figure.add_subplot()
    else:
        figure = ax.get_figure(root=True)  # type: ignore[assignment]
    names = [str(r[0]) for r in rows]
    p50 = [float(r[2]) for r in rows]
    p95 = [float(r[3]) for r in rows]
    ys = list(range(len(rows)))
    ax.barh(ys, p95, height=0.6, color=_SKY, label="p95")
    ax.barh(ys, p50, height=0.35, color=_BLUE, label="p50")
    top = max(p95, default=0.0)
    for y, row, p95_value in zip(ys, rows, p95, strict=True):
        ax.annotate(
            f"{format_duration(p95_value)}  (n={row[1]})",
            (p95_value, y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(ys, names)
    ax.invert_yaxis()
    _duration_axis(ax.xaxis, top * 1.3)
    ax.set_xlim(0, top * 1.3 if top > 0 else 1.0)
    ax.set_title(f"activity duration per {per} (completed)", loc="left")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if not rows:
        ax.text(0.5, 0.5, "no activities yet", transform=ax.transAxes, ha="center")
    return figure


_BUCKETS = (
    (1, "1 second"),
    (10, "10 seconds"),
    (60, "1 minute"),
    (600, "10 minutes"),
    (3600, "1 hour"),
    (6 * 3600, "6 hours"),
    (86400, "1 day"),
    (7 * 86400, "7 days"),
)


def failures_chart(
    engine: Engine,
    *,
    bucket: str | None = None,
    top: int = 6,
    ax: Axes | None = None,
) -> Figure:
    """Failed activity attempts over time, stacked by error type.

    Every failed attempt counts (retried ones too), from the ``activity_attempts`` view.

    Args:
        engine: An engine on a DuckDB store.
        bucket: The width of a bar as a DuckDB interval, e.g. ``"1 hour"``; chosen from the
            time span by default (at most about 40 bars).
        top: Show this many error types; the rest are summed as ``other``.
        ax: Draw into these axes instead of a new figure.

    Returns:
        A stacked bar chart over time.

    Raises:
        UsageError: The engine's store does not speak SQL.
    """
    if bucket is None:
        span_rows = _rows(
            engine,
            "SELECT epoch(max(closed_at)) - epoch(min(closed_at)) "
            "FROM activity_attempts WHERE outcome = 'failed'",
        )
        span = float(span_rows[0][0] or 0.0)
        bucket = next((b for s, b in _BUCKETS if span / s <= 40), "30 days")
    interval = bucket.replace("'", "")
    width_s = float(_rows(engine, f"SELECT epoch(INTERVAL '{interval}')")[0][0])
    rows = _rows(
        engine,
        f"""SELECT time_bucket(INTERVAL '{interval}', closed_at) AS t,
                coalesce(error_type, '?') AS error, count(*) AS n
            FROM activity_attempts WHERE outcome = 'failed'
            GROUP BY ALL ORDER BY t""",
    )
    totals: dict[str, int] = {}
    for _t, error, n in rows:
        totals[error] = totals.get(error, 0) + int(n)
    kept = sorted(totals, key=lambda e: -totals[e])[:top]
    buckets = sorted({t for t, _e, _n in rows})
    series: dict[str, list[int]] = {e: [0] * len(buckets) for e in [*kept, "other"]}
    position = {t: i for i, t in enumerate(buckets)}
    for t, error, n in rows:
        series[error if error in kept else "other"][position[t]] += int(n)
    if not any(series["other"]):
        del series["other"]
    if ax is None:
        figure = Chart(figsize=(10, 3.6), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = ax.get_figure(root=True)  # type: ignore[assignment]
    palette = [_RED, _ORANGE, _PURPLE, _BLUE, _SKY, _GREEN, _GREY]
    bottom = [0] * len(buckets)
    xs = [mdates.date2num(t.replace(tzinfo=None)) for t in buckets]  # type: ignore[no-untyped-call]
    width = width_s / 86400 * 0.9  # date units are days
    for i, (error, counts) in enumerate(series.items()):
        ax.bar(
            xs,
            counts,
            bottom=bottom,
            width=width,
            align="edge",
            color=palette[i % len(palette)],
            label=f"{error} ({sum(counts)})",
        )
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("failed attempts")
    ax.set_xlabel("time (UTC)")
    ax.set_title(f"failed activity attempts per {interval}", loc="left")
    if series:
        ax.legend(
            fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0)
        )
    else:
        ax.text(0.5, 0.5, "no failures", transform=ax.transAxes, ha="center")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return figure


# ---------------------------------------------------------------------------------------------
# Progress.


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where HTML output can be updated in place)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    if get_ipython is None:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def _ipython_display() -> Any:
    """``IPython.display`` (untyped, so reached through ``Any``)."""
    return importlib.import_module("IPython.display")


class Progress:
    """A progress bar: updated in place under Jupyter, one carriage-returned line on a terminal.

    ::

        with Progress(total=3000, desc="starting") as bar:
            for i in range(3000):
                engine.start(order, i)
                bar.update()

    Args:
        total: The number of steps, if known.
        desc: A label in front of the bar.
        unit: What a step is called (``"runs"``, ``"it"``, ...).
        min_interval: Seconds between two redraws.
        file: Where the text bar goes (``sys.stderr`` by default).
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        *,
        unit: str = "it",
        min_interval: float = 0.1,
        file: Any = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.min_interval = min_interval
        self._file = file if file is not None else sys.stderr
        self._started = time.monotonic()
        self._drawn = 0.0
        self._handle: Any = None
        self._closed = False
        if _in_kernel() and file is None:
            self._handle = _ipython_display().display(
                _ipython_display().HTML(self._html()), display_id=True
            )
        self._draw(force=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count *n* more steps done."""
        self.n += n
        self._draw()

    def set(self, n: int, total: int | None = None) -> None:
        """Set the steps done (and the total, if it changed)."""
        self.n = n
        if total is not None:
            self.total = total
        self._draw()

    def close(self) -> None:
        """Draw the final state (idempotent)."""
        if self._closed:
            return
        self._draw(force=True)
        self._closed = True
        if self._handle is None:
            self._file.write("\n")
            self._file.flush()

    def __str__(self) -> str:
        elapsed = time.monotonic() - self._started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            done = min(self.n / self.total, 1.0)
            filled = int(done * 20)
            bar = "█" * filled + " " * (20 - filled)
            text = f"{head}{done:4.0%} |{bar}| {self.n}/{self.total} {self.unit}"
        else:
            text = f"{head}{self.n} {self.unit}"
        return f"{text} [{format_duration(elapsed)}, {rate:,.0f} {self.unit}/s]"

    def _html(self) -> str:
        value = f' value="{self.n}" max="{self.total}"' if self.total else ""
        return (
            f'<div class="flowgen"><progress{value} style="width:20em"></progress> '
            f"<code>{html.escape(str(self))}</code></div>"
        )

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._closed or (not force and now - self._drawn < self.min_interval):
            return
        self._drawn = now
        if self._handle is not None:
            self._handle.update(_ipython_display().HTML(self._html()))
        else:
            self._file.write("\r" + str(self))
            self._file.flush()


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """Iterate over *iterable* with a `Progress` bar (like ``tqdm(iterable)``).

    Args:
        iterable: What to iterate over.
        total: Its length, if ``len()`` cannot tell.
        desc: A label in front of the bar.
        unit: What an item is called.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, unit=unit) as bar:
        for item in iterable:
            yield item
            bar.update()


def _run_counts(engine: Engine) -> tuple[int, int]:
    """(closed runs, all runs) of the engine's store."""
    sql = getattr(engine.store, "sql", None)
    if sql is not None:
        row = sql(
            "SELECT count(*) FILTER (WHERE status <> 'running'), count(*) FROM workflows"
        ).fetchall()[0]
        return int(row[0]), int(row[1])
    runs = engine.store.list_runs()
    return sum(r.is_closed for r in runs), len(runs)


def run_until_idle(
    engine: Engine, *, desc: str = "closed runs", every: float = 0.25
) -> int:
    """`Engine.run_until_idle`, with a bar of closed runs out of all runs.

    For engines driven by hand (a `ManualClock`): a few thousand runs take a few seconds,
    and this shows them closing.

    Args:
        engine: A hand-driven engine.
        desc: The bar's label.
        every: Seconds between two counts of the runs (a query each).

    Returns:
        How many rounds of work were done, as `Engine.run_until_idle` returns.
    """
    rounds = 0
    closed, total = _run_counts(engine)
    with Progress(total, desc, unit="runs") as bar:
        bar.set(closed)
        chunk = 16
        while True:
            began = time.monotonic()
            done = engine.run_until_idle(max_steps=chunk)
            rounds += done
            if done < chunk:
                break
            # Aim for one count per *every* seconds, whatever a round costs.
            took = time.monotonic() - began
            chunk = max(
                1, min(chunk * 4, int(chunk * every / took) if took else chunk * 4)
            )
            closed, total = _run_counts(engine)
            bar.set(closed, total)
        closed, total = _run_counts(engine)
        bar.set(closed, total)
    return rounds
