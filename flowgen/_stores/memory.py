"""`MemoryStore`: a `Store` in dicts, for tests and throwaway engines.

Not durable. It keeps the same rules as the DuckDB store (events numbered 0, 1, 2, ... per
run, a batch applied whole or not at all, closed runs never reopened), so the store contract
tests run against both.
"""

from __future__ import annotations

import threading  # noqa: TID251  # a lock, not a thread: a Store must be thread-safe
from collections.abc import Sequence
from datetime import datetime

from flowgen._stores.protocol import (
    Batch,
    ScheduleRecord,
    WorkflowRecord,
    apply_update,
)
from flowgen._vocabulary.errors import HistoryCorruptError, UsageError
from flowgen._vocabulary.events import Event, JsonValue

__all__ = ["MemoryStore"]

_NO_EXPORT = "a MemoryStore cannot export runs to Parquet (use DuckDB)"


class MemoryStore:
    """A `Store` in dicts. Not durable; for tests and throwaway engines."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], WorkflowRecord] = {}
        self._latest: dict[str, str] = {}
        self._events: dict[tuple[str, str], list[Event]] = {}
        self._schedules: dict[str, ScheduleRecord] = {}
        self.commits = 0
        # Readers (handles, queries, the CLI) run on other threads than the committer: a
        # reader iterating a dict while a commit grows it would fail, or see half a batch.
        self._lock = threading.RLock()

    def commit(self, batch: Batch) -> None:
        """See `Store.commit`."""
        with self._lock:
            self._commit(batch)

    def _commit(self, batch: Batch) -> None:
        # Validate everything first, so a bad batch changes nothing (as a transaction would).
        pending: dict[tuple[str, str], int] = {}
        known = set(self._runs)
        for run in batch.runs:
            key = (run.workflow_id, run.run_id)
            if key in known:
                raise HistoryCorruptError(f"run {key} already exists")
            known.add(key)
        for row in batch.events:
            key = (row.workflow_id, row.run_id)
            if key not in known:
                raise HistoryCorruptError(f"events for unknown run {key}")
            expected = pending.get(key, len(self._events.get(key, ())))
            if row.event_id != expected:
                raise HistoryCorruptError(
                    f"run {key}: event_id {row.event_id} appended, expected {expected}"
                )
            pending[key] = expected + 1
        for update in batch.updates:
            if (update.workflow_id, update.run_id) not in known:
                raise HistoryCorruptError(
                    f"update of unknown run {update.workflow_id!r}"
                )
        for run in batch.runs:
            self._runs[run.workflow_id, run.run_id] = run
            self._latest[run.workflow_id] = run.run_id
            self._events.setdefault((run.workflow_id, run.run_id), [])
        for row in batch.events:
            self._events[row.workflow_id, row.run_id].append(row.event)
        for update in batch.updates:
            key = (update.workflow_id, update.run_id)
            self._runs[key] = apply_update(self._runs[key], update)
        self.commits += 1

    def load_history(self, workflow_id: str, run_id: str) -> list[Event]:
        """See `Store.load_history`."""
        with self._lock:
            return list(self._events.get((workflow_id, run_id), ()))

    def load_histories(
        self, runs: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Event]]:
        """See `Store.load_histories`."""
        with self._lock:
            return {key: self.load_history(*key) for key in runs}

    def get_run(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowRecord | None:
        """See `Store.get_run`."""
        with self._lock:
            run_id = run_id or self._latest.get(workflow_id)
            return None if run_id is None else self._runs.get((workflow_id, run_id))

    def latest_runs(self, workflow_ids: Sequence[str]) -> dict[str, WorkflowRecord]:
        """The latest run of each of *workflow_ids* that has one (see `Store`)."""
        with self._lock:
            found = {}
            for workflow_id in workflow_ids:
                run_id = self._latest.get(workflow_id)
                if run_id is not None:
                    found[workflow_id] = self._runs[workflow_id, run_id]
            return found

    def list_runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        tags: dict[str, JsonValue] | None = None,
        limit: int | None = None,
    ) -> list[WorkflowRecord]:
        """See `Store.list_runs`."""
        with self._lock:
            runs = [
                run
                for run in self._runs.values()
                if (status is None or run.status == status)
                and (name is None or run.name == name)
                and all(run.tags.get(k) == v for k, v in (tags or {}).items())
            ]
        runs.sort(key=lambda run: run.started_at, reverse=True)
        return runs[:limit] if limit is not None else runs

    def unfinished(self) -> list[WorkflowRecord]:
        """See `Store.unfinished`."""
        with self._lock:
            return [run for run in self._runs.values() if run.status == "running"]

    # -- pruning (see flowgen._runtime.retention) ------------------------------------------

    def prunable(self, closed_before: datetime, limit: int) -> list[str]:
        """See `Prunes.prunable`."""
        with self._lock:
            running_ids = {
                run.workflow_id for run in self._runs.values() if not run.is_closed
            }
            old = [
                run
                for run in self._runs.values()
                if run.is_closed
                and run.closed_at is not None
                and run.closed_at < closed_before
                and run.parent_id not in running_ids
            ]
        old.sort(key=lambda run: run.closed_at or closed_before)
        return [run.run_id for run in old[:limit]]

    def check_export(self) -> None:
        """A memory store exports nothing: see `Prunes.check_export`."""
        raise UsageError(_NO_EXPORT)

    def export_runs(
        self, run_ids: Sequence[str], directory: str, stem: str
    ) -> list[str]:
        """Not for a memory store (see `check_export`)."""
        raise UsageError(_NO_EXPORT)

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """See `Prunes.delete_runs`."""
        wanted = set(run_ids)
        with self._lock:
            keys = [key for key in self._runs if key[1] in wanted]
            events = 0
            for key in keys:
                del self._runs[key]
                events += len(self._events.pop(key, ()))
            for workflow_id in {workflow_id for workflow_id, _ in keys}:
                left = [r for r in self._runs.values() if r.workflow_id == workflow_id]
                if left:  # ties in started_at go to the run stored last (stable sort)
                    latest = sorted(left, key=lambda r: r.started_at)[-1]
                    self._latest[workflow_id] = latest.run_id
                else:
                    self._latest.pop(workflow_id, None)
            self.commits += 1
        return events

    def reclaim(self) -> None:
        """Nothing to reclaim: deleted runs are gone from the dicts."""

    def save_schedule(
        self, schedule: ScheduleRecord, *, expected_revision: int | None
    ) -> bool:
        """See `KeepsSchedules.save_schedule`."""
        with self._lock:
            stored = self._schedules.get(schedule.schedule_id)
            if expected_revision is None and stored is not None:
                return False
            if expected_revision is not None and (
                stored is None or stored.revision != expected_revision
            ):
                return False
            self._schedules[schedule.schedule_id] = schedule
            return True

    def load_schedules(self, schedule_id: str | None = None) -> list[ScheduleRecord]:
        """See `KeepsSchedules.load_schedules`."""
        with self._lock:
            found = sorted(self._schedules.values(), key=lambda s: s.schedule_id)
        return [s for s in found if schedule_id is None or s.schedule_id == schedule_id]

    def lock_firing(self, schedule_id: str) -> bool:
        """See `KeepsSchedules.lock_firing`: one process owns this store, so always."""
        return True

    def unlock_firing(self, schedule_id: str) -> None:
        """See `KeepsSchedules.unlock_firing`."""

    def delete_schedule(self, schedule_id: str) -> bool:
        """See `KeepsSchedules.delete_schedule`."""
        with self._lock:
            return self._schedules.pop(schedule_id, None) is not None

    def close(self) -> None:
        """Nothing to release."""
