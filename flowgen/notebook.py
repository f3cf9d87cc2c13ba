"""Jupyter helpers: a timeline of one run, charts of a whole database, progress for long runs.

Needs the optional extra: ``pip install "flowgen-durable[notebook]"`` (JupyterLab,
matplotlib, pandas, jupysql, IPython). The core never imports this module; `WorkflowHandle.timeline` imports the chart
it draws from ``flowgen._render.timeline``, where `timeline` lives.

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
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from flowgen._render.html_parts import format_duration
from flowgen._render.timeline import (
    _BLUE,
    _GREEN,
    _GREY,
    _ORANGE,
    _PURPLE,
    _RED,
    _SKY,
    Chart,
    _duration_axis,
    timeline,
)
from flowgen._runtime.engine import Engine
from flowgen._stores.protocol import SpeaksSQL
from flowgen._vocabulary.errors import UsageError

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
    if isinstance(engine.store, SpeaksSQL):
        row = engine.store.sql(
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
