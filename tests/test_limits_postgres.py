"""Activity limits shared through PostgreSQL: permits are advisory locks of the database.

Until engines share a database as a fleet, one engine at a time runs a PostgreSQL database;
a second holder of permits (a `PostgresStore` of its own, as another engine's would be)
stands for the rest of the fleet here.
"""

from __future__ import annotations

import time

import pytest

import flowgen as fg
from flowgen._runtime.clock import MANUAL_EPOCH, ManualClock
from flowgen._stores.postgres_store import PostgresStore
from tests.pg import PostgresCluster
from tests.test_limits import Probe, fan_out, probe, waiting_of

__all__ = ["probe"]  # the fixture, used by name


def test_two_holders_on_one_database_share_each_pool(pg_url: str) -> None:
    with PostgresStore(pg_url) as one, PostgresStore(pg_url) as other:
        mine, theirs = one.permits(), other.permits()
        first = mine.take("running:charge", 2)
        second = theirs.take("running:charge", 2)
        assert first is not None and second is not None
        assert first.slot != second.slot
        assert mine.take("running:charge", 2) is None
        assert theirs.take("running:charge", 2) is None
        assert theirs.take("running:refund", 2) is not None  # another pool
        mine.give_back(first)
        assert theirs.take("running:charge", 2) == first
        # A bigger capacity in one engine's code adds slots, never takes another's.
        assert mine.take("running:charge", 3) is not None
        assert mine.take("running:charge", 3) is None


def test_a_holder_s_permits_come_back_when_its_connection_ends(pg_url: str) -> None:
    other = PostgresStore(pg_url)
    theirs = other.permits()
    assert theirs.take("started:charge", 1) is not None
    with PostgresStore(pg_url) as one:
        mine = one.permits()
        assert mine.take("started:charge", 1) is None
        other.close()  # as a crashed engine's session ends: the server frees its locks
        # The server ends the session a moment after the client hangs up.
        deadline = time.monotonic() + 60  # a hang guard
        while (permit := mine.take("started:charge", 1)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert permit.slot == 0


def test_databases_on_other_schemas_do_not_share_permits(
    postgres_cluster: PostgresCluster,
) -> None:
    schemas = [postgres_cluster.create_schema() for _ in range(2)]
    try:
        stores = [PostgresStore(postgres_cluster.url(schema=s)) for s in schemas]
        holders = [store.permits() for store in stores]
        assert all(h.take("running:charge", 1) is not None for h in holders)
        for store in stores:
            store.close()
    finally:
        for name in schemas:
            postgres_cluster.drop_schema(name)


def test_an_engine_counts_the_permits_another_holder_has_taken(
    probe: Probe, pg_url: str
) -> None:
    probe.hold = True
    with PostgresStore(pg_url) as elsewhere:
        fleet = elsewhere.permits()
        held = fleet.take("running:limits.two_at_a_time", 2)
        assert held is not None
        with fg.Engine(pg_url, max_workers=8) as engine:
            handle = engine.start(fan_out, "limits.two_at_a_time", 4)
            probe.wait_until(lambda: probe.running == 1)
            # One slot of two is the other holder's: three attempts wait, not two.
            waiting = waiting_of(engine, 3)
            assert len(waiting) == 3
            assert probe.most == 1
            fleet.give_back(held)  # the engine polls a shared pool and takes it
            probe.wait_until(lambda: probe.running == 2)
            probe.release.set()
            assert handle.result(timeout=60) == [0, 1, 2, 3]
    assert probe.most == 2


@pytest.mark.parametrize("capacity", [1, 3])
def test_a_holder_never_takes_a_slot_twice(pg_url: str, capacity: int) -> None:
    # Advisory locks stack within a session: the holder must skip the slots it has.
    with PostgresStore(pg_url) as store:
        permits = store.permits()
        taken = [permits.take("running:x", capacity) for _ in range(capacity + 1)]
        assert taken[-1] is None
        assert sorted(p.slot for p in taken[:-1] if p is not None) == list(
            range(capacity)
        )
        assert permits.taken("running:x") == capacity


def test_a_hand_driven_engine_waits_for_another_holder_without_spinning(
    probe: Probe, pg_url: str
) -> None:
    clock = ManualClock()
    with PostgresStore(pg_url) as elsewhere:
        fleet = elsewhere.permits()
        held = fleet.take("running:limits.one_at_a_time", 1)
        assert held is not None
        engine = fg.Engine(pg_url, clock=clock)
        try:
            handle = engine.start(fan_out, "limits.one_at_a_time", 2)
            engine.run_until_idle()  # returns: nothing to do here until the permit is back
            assert clock.now() == MANUAL_EPOCH  # no clock jumped while it waited
            assert [w.on for w in engine.waiting_activities()] == [
                "max_concurrent=1"
            ] * 2
            assert probe.started == []
            fleet.give_back(held)
            engine.run_until_idle()
            assert handle.result() == [0, 1]
            assert probe.most == 1
        finally:
            engine.close()


def test_attempts_waiting_by_hand_are_polled_once_the_engine_runs_in_the_background(
    probe: Probe, pg_url: str
) -> None:
    with PostgresStore(pg_url) as elsewhere:
        fleet = elsewhere.permits()
        held = fleet.take("running:limits.one_at_a_time", 1)
        assert held is not None
        engine = fg.Engine(pg_url, clock=ManualClock())
        try:
            handle = engine.start(fan_out, "limits.one_at_a_time", 1)
            engine.run_until_idle()
            assert len(engine.waiting_activities()) == 1
            fleet.give_back(held)  # no event of this engine will tell it
            engine.start_background()
            assert handle.result(timeout=60) == [0]
        finally:
            engine.close()


@fg.activity(name="limits.pg.two_per_ten_seconds", rate_limit="2/10s")
def two_per_ten_seconds(item: int) -> int:
    return item


@fg.workflow(name="limits.pg.spaced")
def spaced() -> fg.Workflow[str]:
    yield fg.call(two_per_ten_seconds, 0)
    yield fg.sleep(5)
    yield fg.call(two_per_ten_seconds, 1)
    return str((yield fg.wait_signal("done")))


def test_an_engine_gives_each_rate_window_back_on_time_for_the_others(
    pg_url: str,
) -> None:
    clock = ManualClock()
    engine = fg.Engine(pg_url, clock=clock)
    try:
        engine.start(spaced)
        engine.run_until_idle()  # starts at +0 s and +5 s; windows end at +10 s, +15 s
        assert (clock.now() - MANUAL_EPOCH).total_seconds() == 15
        with PostgresStore(pg_url) as elsewhere:
            fleet = elsewhere.permits()
            pool = "started:limits.pg.two_per_ten_seconds"
            taken = [fleet.take(pool, 2) for _ in range(2)]
            assert None not in taken  # both windows were given back
    finally:
        engine.close()
