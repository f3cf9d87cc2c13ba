"""What every store does with ``schedules`` (`KeepsSchedules`): run by the store contract
suite on every store, and by tests/test_memory_store.py (the MemoryStore coverage gate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs

from flowgen._stores.protocol import KeepsSchedules, ScheduleRecord

T0 = datetime(2031, 3, 7, 9, 26, 53, 123456, tzinfo=UTC)


def schedule(schedule_id: str = "nightly", **changes: object) -> ScheduleRecord:
    row = ScheduleRecord(
        schedule_id=schedule_id,
        workflow="report",
        args=["eu", {"n": 1.5, "z": [1, None]}],
        kwargs={"b": 2, "a": "x"},
        cron="0 3 * * *",
        every_seconds=None,
        timezone="Europe/Paris",
        overlap="buffer_one",
        jitter_seconds=12.5,
        catchup_window_seconds=None,
        paused=False,
        note="",
        next_at=T0,
        fires_at=T0 + timedelta(seconds=3, microseconds=7),
        created_at=T0,
        updated_at=T0,
    )
    return attrs.evolve(row, **changes)  # type: ignore[misc]


def check_schedule_rows(store: KeepsSchedules) -> None:
    """Insert, compare-and-set, read back exactly, delete; and the firing lock."""
    first = schedule()
    assert store.load_schedules() == []
    assert store.save_schedule(first, expected_revision=None)
    assert not store.save_schedule(first, expected_revision=None)  # the id is taken
    other = schedule(
        "poll",
        cron=None,
        every_seconds=900,
        timezone="UTC",
        overlap="allow",
        catchup_window_seconds=3600.0,
        buffered_at=T0,
        last_workflow_id="poll/2031-03-07T09:15:00Z",
        last_fired_at=T0,
    )
    assert store.save_schedule(other, expected_revision=None)
    assert store.load_schedules() == [first, other]  # by id, exactly as written
    assert store.load_schedules("poll") == [other]
    assert store.load_schedules("nope") == []
    changed = attrs.evolve(first, paused=True, note="why", revision=1)
    assert not store.save_schedule(changed, expected_revision=5)  # a stale revision
    assert store.load_schedules("nightly") == [first]
    assert store.save_schedule(changed, expected_revision=0)
    assert store.load_schedules("nightly") == [changed]
    assert not store.save_schedule(schedule("gone"), expected_revision=0)  # no such row
    assert store.delete_schedule("nightly")
    assert not store.delete_schedule("nightly")
    assert store.load_schedules() == [other]
    assert store.lock_firing("poll")
    store.unlock_firing("poll")
