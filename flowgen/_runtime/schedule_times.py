"""When a schedule fires: its runs' ids, jitter, catching up, and the firings it skips.

Pure functions of a schedule's row and a time (nothing here reads a clock or a store):
`flowgen._runtime.schedules` asks them what is due and records the answers.

Rules
=====

* **A firing's run id** is ``<schedule id>/<scheduled time>`` (UTC, ISO 8601, e.g.
  ``nightly/2031-03-08T03:00:00Z``; a trigger's time keeps its microseconds, when it has
  any): `firing_id`.
* **Jitter** delays each firing by ``[0, jitter)``, an amount derived from a hash of the
  schedule id and the scheduled time (`jitter_of`): every engine, every restart and every
  replay agrees on it. The run's id keeps the scheduled time, not the jittered one.
* **Catching up** (`due_times`): when the scheduler finds several firings due at once (the
  engine was down, the machine slept, a test moved a `ManualClock` far ahead), with
  ``catchup_window=None`` (the default) only the latest one starts and the others are
  skipped; with a window, every one due for at most that long starts, in order, and the
  older ones are skipped. So by default a due firing always starts, however late.
* **Skipped firings are counted** (``ScheduleRecord.skipped``): those skipped by the overlap
  policy, and those `due_times` passes over when catching up (`missed`, counted by the
  cadence, never walked one by one, however long the engine was down). Firings a paused
  schedule does not start are not counted: a pause means no runs.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from datetime import datetime, timedelta
from typing import Final, Protocol

from flowgen._runtime.cron import Cadence, Cron, Every
from flowgen._stores.protocol import ScheduleRecord

__all__ = [
    "cadence_of",
    "describe_cadence",
    "due_times",
    "fires",
    "firing_id",
    "jitter_of",
    "missed",
    "parse_cron",
]

log = logging.getLogger("flowgen")


class _Defined(Protocol):
    """What says when a schedule fires: a row, or a definition not stored yet."""

    @property
    def cron(self) -> str | None: ...
    @property
    def every_seconds(self) -> int | None: ...
    @property
    def timezone(self) -> str: ...


_MICRO: Final = timedelta(microseconds=1)


def firing_id(schedule_id: str, scheduled: datetime) -> str:
    """The workflow id of the run *schedule_id* starts for its firing at *scheduled*.

    Scheduled times are whole seconds; a trigger's time keeps its microseconds (when it
    has any), so two triggers in one second start two runs.
    """
    if scheduled.microsecond:
        return f"{schedule_id}/{scheduled:%Y-%m-%dT%H:%M:%S.%fZ}"
    return f"{schedule_id}/{scheduled:%Y-%m-%dT%H:%M:%SZ}"


def jitter_of(
    schedule_id: str, scheduled: datetime, jitter_seconds: float
) -> timedelta:
    """How long the firing at *scheduled* waits: in ``[0, jitter)``, the same everywhere."""
    span = int(jitter_seconds * 1_000_000)
    if span <= 0:
        return timedelta(0)
    digest = hashlib.sha256(firing_id(schedule_id, scheduled).encode()).digest()
    return timedelta(microseconds=int.from_bytes(digest[:8], "big") % span)


def cadence_of(schedule: _Defined) -> Cadence:
    """When *schedule* fires."""
    if schedule.cron is not None:
        return parse_cron(schedule.cron, schedule.timezone)
    assert schedule.every_seconds is not None  # one of them, checked on creation
    return Every(schedule.every_seconds)


def describe_cadence(schedule: ScheduleRecord) -> str:
    """How a person reads *schedule*'s cadence (``cron 0 3 * * *``, ``every 1h``)."""
    return cadence_of(schedule).describe()


@functools.lru_cache(maxsize=256)  # parsing checks the expression can fire (~1 ms)
def parse_cron(expression: str, zone: str) -> Cron:
    """`Cron.parse`, remembered: a schedule's cadence is asked for at every firing."""
    return Cron.parse(expression, zone)


def fires(schedule: ScheduleRecord, scheduled: datetime) -> datetime:
    return scheduled + jitter_of(
        schedule.schedule_id, scheduled, schedule.jitter_seconds
    )


def _recent_start(
    schedule: ScheduleRecord, cadence: Cadence, now: datetime
) -> datetime:
    """A scheduled time at or before the latest due one, near it (so few are walked)."""
    first = schedule.next_at
    span = timedelta(minutes=1) + timedelta(seconds=schedule.jitter_seconds)
    while True:
        low = now - span
        if low <= first:
            return first
        candidate = cadence.next_after(low - _MICRO)
        if fires(schedule, candidate) <= now:
            return candidate
        span *= 2


def due_times(
    schedule: ScheduleRecord, cadence: Cadence, now: datetime
) -> tuple[list[datetime], datetime]:
    """The scheduled times to handle at *now* after catching up, and the next ``next_at``.

    Firings are walked in order from ``next_at`` while their (jittered) time has come;
    which of them are kept is the catch-up rule in the module's docstring.
    """
    if fires(schedule, schedule.next_at) > now:
        return [], schedule.next_at
    window = schedule.catchup_window_seconds
    if window is None:
        start = _recent_start(schedule, cadence, now)
    else:
        oldest = now - timedelta(seconds=window + schedule.jitter_seconds)
        start = max(schedule.next_at, cadence.next_after(oldest - _MICRO))
    times: list[datetime] = []
    scheduled = start
    while fires(schedule, scheduled) <= now:
        times.append(scheduled)
        scheduled = cadence.next_after(scheduled)
    if window is None:
        kept = times[-1:]
    else:
        late = timedelta(seconds=window)
        kept = [t for t in times if now - fires(schedule, t) <= late]
    if kept[:1] != [schedule.next_at]:
        log.info(
            "schedule %r: firings from %s to %s skipped (missed; catchup_window=%s)",
            schedule.schedule_id,
            schedule.next_at.isoformat(),
            (kept[0] if kept else scheduled).isoformat(),
            window,
        )
    return kept, scheduled


def missed(
    schedule: ScheduleRecord, cadence: Cadence, kept: list[datetime], next_at: datetime
) -> int:
    """How many firings `due_times` passed over without keeping them (missed, skipped).

    Counted with `Cadence.count`, not walked: after a long downtime they may be many.
    """
    return cadence.count(schedule.next_at, next_at) - len(kept)
