"""Waiting for a result another engine of a fleet finishes: told by LISTEN/NOTIFY, not polled.

Background engines on the tests' own PostgreSQL server (tests/pg.py): a caller that runs no
workflows (its fallback poll set to a minute) and a worker that runs them. The caller must
learn that the worker closed the run from the notification its commit sends, reading the
store only a bounded number of times however long the run takes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

import flowgen as fg
from flowgen._stores.postgres_leases import closings_payloads
from flowgen._stores.postgres_store import PostgresStore
from flowgen._stores.protocol import WorkflowRecord
from flowgen.aio import AsyncEngine
from tests.fleet_app import fleet_gated

HANG_GUARD = 60.0
"""The longest a test waits for something the fleet does in well under a second."""

SLOW_POLL = 60.0
"""The caller's fallback poll: far longer than the test may take (the hang guard)."""


class CountingStore(PostgresStore):
    """A real `PostgresStore` that counts the runs read per thread (what polling costs)."""

    def __init__(self, url: str, *, fleet: fg.FleetOptions) -> None:
        super().__init__(url, fleet=fleet)
        self.reads: dict[int, int] = {}
        self._reads_lock = threading.Lock()

    def get_run(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowRecord | None:
        with self._reads_lock:
            me = threading.get_ident()
            self.reads[me] = self.reads.get(me, 0) + 1
        return super().get_run(workflow_id, run_id)


def owner_of_run(url: str, workflow_id: str) -> str | None:
    with psycopg.connect(url) as con:
        row = con.execute(
            "SELECT owner FROM workflows WHERE workflow_id = %s", [workflow_id]
        ).fetchone()
    return None if row is None else row[0]


def eventually(check: object, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + HANG_GUARD
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


@pytest.fixture
def worker(pg_url: str) -> Iterator[fg.Engine]:
    with fg.Engine(pg_url, fleet=fg.FleetOptions()) as engine:
        yield engine


def test_a_result_another_engine_finishes_is_told_not_polled(
    pg_url: str, worker: fg.Engine
) -> None:
    options = fg.FleetOptions(runs_workflows=False, poll=SLOW_POLL)
    store = CountingStore(pg_url, fleet=options)
    with fg.Engine(store=store) as caller:
        handle = caller.start(fleet_gated, 3, id="told-1")
        eventually(lambda: owner_of_run(pg_url, "told-1") is not None, "claimed")
        answers: list[object] = []
        waiter = threading.Thread(
            target=lambda: answers.append(handle.result(timeout=HANG_GUARD))
        )
        waiter.start()
        eventually(lambda: waiter.ident in store.reads, "the caller waits")
        # Long enough for a caller that polls every 50 ms to read the run several times.
        time.sleep(0.5)
        worker.signal("told-1", "go", "now")
        waiter.join(HANG_GUARD)
        assert not waiter.is_alive(), "the result never came"
        assert answers == [["now", 6]]
        # Once before waiting, once when the listener began listening (it wakes every
        # caller: what closed before was not heard), once when told the run closed.
        assert store.reads[waiter.ident] <= 3


def test_an_async_caller_is_told_too(pg_url: str, worker: fg.Engine) -> None:
    options = fg.FleetOptions(runs_workflows=False, poll=SLOW_POLL)

    async def scenario() -> object:
        async with AsyncEngine(pg_url, fleet=options) as caller:
            handle = await caller.start(fleet_gated, 4, id="told-2")
            eventually(lambda: owner_of_run(pg_url, "told-2") is not None, "claimed")
            waiting = asyncio.ensure_future(handle.result())
            await asyncio.sleep(0.2)
            worker.signal("told-2", "go", "later")
            return await asyncio.wait_for(waiting, HANG_GUARD)

    assert asyncio.run(scenario()) == ["later", 8]


def test_closings_payloads_fit_postgresqls_limit_and_lose_no_id() -> None:
    ids = [f"order-{i:05d}-" + "x" * 50 for i in range(400)] + ["y" * 9000, "z"]
    payloads = closings_payloads(ids)
    assert all(len(p.encode()) < 8000 for p in payloads)
    decoded = [json.loads(p) for p in payloads]
    told = {i for d in decoded if isinstance(d, list) for i in d}
    assert told == set(ids) - {"y" * 9000}
    assert None in decoded  # the id too long to tell: "look at every run"
    assert len(payloads) > 2
