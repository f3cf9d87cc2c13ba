"""PostgresStore on a real PostgreSQL 15 server (tests/pg.py): what only it has.

The behaviour every store shares is in test_store_contract.py. Here: exact JSON round trips,
the schema (the documented columns are DuckDB's), databases that are not ours or are
newer, migrations, several stores (engines) on one database, threads, and the refusals
shared with DuckDBStore.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings, strategies as st

from flowgen._stores import postgres_schema
from flowgen._stores.duckdb_rows import event_row
from flowgen._stores.duckdb_store import DuckDBStore
from flowgen._stores.postgres_store import PostgresStore
from flowgen._stores.protocol import Batch, EventRow, FleetOptions, RunUpdate
from flowgen._vocabulary.errors import (
    HistoryCorruptError,
    NotAFlowgenDatabase,
    SchemaVersionError,
    StoreError,
)
from flowgen._vocabulary.events import ActivityCompleted, Event, TimerFired
from tests.pg import PostgresCluster
from tests.strategies import events as any_event
from tests.test_duckdb_store import ONE_OF_EACH, T0, at, record, start_batch, started


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(pg_url) as s:
        yield s


def query(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as con:
        cursor = con.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def dump(url: str) -> list[tuple[Any, ...]]:
    """Every table and row of the database: to show that a refusal changed nothing."""
    tables = query(
        url,
        "select table_name from information_schema.tables "
        "where table_schema = current_schema() order by 1",
    )
    return [
        (name, query(url, f"select * from {name} order by 1")) for (name,) in tables
    ]


# ---------------------------------------------------------------------------------------------
# Round trips.


def test_every_event_kind_round_trips(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        store.commit(start_batch("wf", "run-1", ONE_OF_EACH))
    with PostgresStore(pg_url) as store:  # a new connection: nothing cached
        assert store.load_history("wf", "run-1") == ONE_OF_EACH


def test_json_comes_back_as_the_codec_wrote_it(store: PostgresStore) -> None:
    # jsonb would re-order these keys and make 1e16 an int: a replay would feed the
    # workflow other values than the first run saw (see postgres_schema).
    value = {"zz": 1e16, "a": [0.1, 1e-7, -0.0], "m": {"b": 2, "a": "\u0000é😀"}}
    store.commit(
        Batch(
            runs=[record("wf", "run-1", args=[value], tags={"b": 1, "a": 1e16})],
            events=[
                EventRow("wf", "run-1", 0, started()),
                EventRow("wf", "run-1", 1, ActivityCompleted(at(1), 0, value)),
            ],
            updates=[RunUpdate("wf", "run-1", result=value)],
        )
    )
    completed = store.load_history("wf", "run-1")[1]
    assert isinstance(completed, ActivityCompleted)
    assert completed.value == value
    assert isinstance(completed.value, dict)
    assert list(completed.value) == ["zz", "a", "m"]
    assert isinstance(completed.value["m"], dict)
    assert list(completed.value["m"]) == ["b", "a"]
    assert type(completed.value["zz"]) is float
    run = store.get_run("wf")
    assert run is not None
    assert run.args == [value]
    assert isinstance(run.args[0], dict)
    assert list(run.args[0]) == ["zz", "a", "m"]
    assert isinstance(run.result, dict)
    assert type(run.result["zz"]) is float
    assert list(run.tags) == ["b", "a"]


@pytest.fixture(scope="module")
def shared_store(postgres_cluster: PostgresCluster) -> Iterator[PostgresStore]:
    name = postgres_cluster.create_schema()
    try:
        with PostgresStore(postgres_cluster.url(schema=name)) as s:
            yield s
    finally:
        postgres_cluster.drop_schema(name)


_run_numbers = itertools.count()


@settings(max_examples=40)
@given(st.lists(any_event, min_size=1, max_size=8))
def test_any_events_round_trip_losslessly(
    shared_store: PostgresStore, events: list[Event]
) -> None:
    run_id = f"run-{next(_run_numbers)}"
    batch = start_batch("wf", run_id, events)
    texts = [value for row in batch.events for value in event_row(row)[:6]]
    if any(isinstance(text, str) and "\x00" in text for text in texts):
        # PostgreSQL's text columns cannot hold NUL (inside JSON it is "\u0000", fine).
        with pytest.raises(StoreError, match="holds a NUL character"):
            shared_store.commit(batch)
        assert shared_store.get_run("wf", run_id) is None
        return
    shared_store.commit(batch)
    loaded = shared_store.load_history("wf", run_id)
    assert loaded == events
    assert [e.at.utcoffset() for e in loaded] == [e.at.utcoffset() for e in events]


def test_times_come_back_as_utc(store: PostgresStore) -> None:

    plus_two = timezone(timedelta(hours=2))
    store.commit(
        Batch(
            runs=[
                record(
                    "wf", "run-1", started_at=datetime(2026, 3, 1, 14, tzinfo=plus_two)
                )
            ]
        )
    )
    run = store.get_run("wf")
    assert run is not None
    assert run.started_at == T0
    assert run.started_at.utcoffset() == timedelta(0)


# ---------------------------------------------------------------------------------------------
# The schema.


def columns(url: str, table: str) -> list[str]:
    return [
        name
        for (name,) in query(
            url,
            "select column_name from information_schema.columns "
            "where table_schema = current_schema() and table_name = %s "
            "order by ordinal_position",
            [table],
        )
    ]


def test_the_documented_tables_and_columns_are_duckdbs(
    store: PostgresStore, pg_url: str
) -> None:
    duck = DuckDBStore(":memory:")
    try:
        for table in ("workflows", "events", "flowgen_meta"):
            documented = [
                name
                for (name,) in duck.sql(
                    "select column_name from information_schema.columns "
                    f"where table_name = '{table}' order by ordinal_position"
                ).fetchall()
            ]
            assert columns(pg_url, table)[: len(documented)] == documented, table
    finally:
        duck.close()
    # The rest is the store's bookkeeping (the fleet's lease, the analytics copy's key).
    assert columns(pg_url, "workflows")[12:] == [
        "row_order",
        "owner",
        "lease_expires_at",
        "epoch",
        "txid",
    ]
    assert columns(pg_url, "events")[9:] == ["txid", "epoch"]
    meta = dict(query(pg_url, "select key, value from flowgen_meta"))
    assert re.fullmatch(r"[0-9a-f]{32}", meta.pop("database_id"))
    assert meta == {
        "application": "flowgen",
        "schema_version": str(postgres_schema.SCHEMA_VERSION),
    }


def test_the_database_checks_statuses_and_keeps_kinds_open(
    store: PostgresStore, pg_url: str
) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    with pytest.raises(psycopg.errors.CheckViolation):
        query(pg_url, "update workflows set status = 'paused'")
    query(
        pg_url,
        "insert into events (workflow_id, run_id, event_id, kind, payload, recorded_at) "
        "values ('wf', 'run-1', 1, 'a_future_kind', '{}', now())",
    )


def test_rows_record_the_transaction_that_wrote_them(
    store: PostgresStore, pg_url: str
) -> None:
    # What the analytics copy follows: every write stamps the row with its transaction.
    store.commit(start_batch("wf", "run-1", [started()]))
    ((first,),) = query(pg_url, "select txid::text::bigint from workflows")
    store.commit(
        Batch(
            events=[EventRow("wf", "run-1", 1, TimerFired(at(1), 0))],
            updates=[RunUpdate("wf", "run-1", tags={"n": 1})],
        )
    )
    ((second,),) = query(pg_url, "select txid::text::bigint from workflows")
    assert second > first
    assert query(
        pg_url, "select event_id, txid::text::bigint from events order by event_id"
    ) == [(0, first), (1, second)]


# ---------------------------------------------------------------------------------------------
# Databases that are not ours, or not this version.


def test_another_applications_database_is_refused_untouched(pg_url: str) -> None:
    query(pg_url, "create table orders (id integer)")
    query(pg_url, "create table customers (id integer)")
    query(pg_url, "insert into orders values (1)")
    before = dump(pg_url)
    with pytest.raises(NotAFlowgenDatabase) as info:
        PostgresStore(pg_url)
    assert "not a flowgen database (it has tables customers, orders but no " in str(
        info.value
    )
    assert dump(pg_url) == before


def test_another_application_in_flowgen_meta_is_refused(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    query(pg_url, "update flowgen_meta set value = 'shop' where key = 'application'")
    before = dump(pg_url)
    with pytest.raises(NotAFlowgenDatabase, match="says application 'shop'"):
        PostgresStore(pg_url)
    assert dump(pg_url) == before


def test_an_unreadable_schema_version_is_refused(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    query(pg_url, "update flowgen_meta set value = 'x' where key = 'schema_version'")
    with pytest.raises(NotAFlowgenDatabase, match="unreadable schema_version 'x'"):
        PostgresStore(pg_url)


def test_a_newer_schema_version_is_refused_untouched(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    query(pg_url, "update flowgen_meta set value = '99' where key = 'schema_version'")
    before = dump(pg_url)
    with pytest.raises(SchemaVersionError) as info:
        PostgresStore(pg_url)
    message = str(info.value)
    assert "schema version 99" in message
    assert f"schema version {postgres_schema.SCHEMA_VERSION}" in message
    assert "Upgrade flowgen" in message
    assert dump(pg_url) == before


def test_a_flowgen_database_missing_a_table_is_refused(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    query(pg_url, "drop table events")
    with pytest.raises(NotAFlowgenDatabase, match="lacks the tables events"):
        PostgresStore(pg_url)


NEXT = postgres_schema.SCHEMA_VERSION + 1
"""A schema version no flowgen has yet (what the migration tests pretend to be)."""


def test_opening_an_older_version_runs_the_missing_migrations(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PostgresStore(pg_url) as store:
        store.commit(start_batch("wf", "run-1", [started()]))
    # A flowgen with the next schema version, which adds a column.
    monkeypatch.setattr(postgres_schema, "SCHEMA_VERSION", NEXT)
    monkeypatch.setitem(
        postgres_schema.MIGRATIONS,
        NEXT,
        ("ALTER TABLE workflows ADD COLUMN note text NOT NULL DEFAULT 'migrated'",),
    )
    with PostgresStore(pg_url) as store:
        assert store.load_history("wf", "run-1") == [started()]
    assert query(pg_url, "select note from workflows") == [("migrated",)]
    assert query(
        pg_url, "select value from flowgen_meta where key = 'schema_version'"
    ) == [(str(NEXT),)]
    with PostgresStore(pg_url):  # and the next open has nothing to do
        pass
    monkeypatch.undo()
    with pytest.raises(SchemaVersionError, match=f"schema version {NEXT}"):
        PostgresStore(pg_url)


def test_a_failing_migration_changes_nothing(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    PostgresStore(pg_url).close()
    before = dump(pg_url)
    monkeypatch.setattr(postgres_schema, "SCHEMA_VERSION", NEXT)
    monkeypatch.setitem(
        postgres_schema.MIGRATIONS,
        NEXT,
        ("ALTER TABLE workflows ADD COLUMN note text", "SELECT no_such_function()"),
    )
    with pytest.raises(StoreError, match=r"nothing was changed: .*no_such_function"):
        PostgresStore(pg_url)
    assert dump(pg_url) == before
    assert "note" not in columns(pg_url, "workflows")


def test_engines_opening_an_empty_database_together_create_the_schema_once(
    pg_url: str,
) -> None:
    errors: list[BaseException] = []
    stores: list[PostgresStore] = []

    def open_store() -> None:
        try:
            stores.append(PostgresStore(pg_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for s in stores:
        s.close()
    assert not errors, errors
    assert len(stores) == 4


def test_a_role_that_may_not_create_tables_gets_a_store_error(
    pg_url: str, postgres_cluster: PostgresCluster
) -> None:
    query(pg_url, "CREATE ROLE reader LOGIN")
    ((schema,),) = query(pg_url, "select current_schema()")
    query(pg_url, f"GRANT USAGE ON SCHEMA {schema} TO reader")  # but not CREATE
    url = pg_url.replace("flowgen@", "reader@")
    with pytest.raises(
        StoreError, match=r"cannot prepare flowgen's tables in .*permission"
    ):
        PostgresStore(url)
    query(pg_url, f"REVOKE USAGE ON SCHEMA {schema} FROM reader")
    query(pg_url, "DROP ROLE reader")


def test_an_unreachable_server_is_a_store_error_without_the_password(
    tmp_path: Any,
) -> None:
    url = f"postgresql://app:s3cret@/orders?host={tmp_path}&connect_timeout=5"
    with pytest.raises(StoreError, match="cannot connect to") as info:
        PostgresStore(url)
    assert "s3cret" not in str(info.value)
    assert "app:***@" in str(info.value)


def test_a_url_that_is_not_postgresql_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a postgresql:// URL"):
        PostgresStore("orders.duckdb")


# ---------------------------------------------------------------------------------------------
# Refusals shared with DuckDBStore (the rules of flowgen._stores.plan).


def test_a_status_the_table_would_refuse_is_refused_before_anything_is_written(
    store: PostgresStore, pg_url: str
) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    before = dump(pg_url)
    with pytest.raises(StoreError, match="status 'exploded' is not one of"):
        store.commit(Batch(runs=[record("x", "run-x", status="exploded")]))
    with pytest.raises(StoreError, match="status 'paused' is not one of"):
        store.commit(Batch(updates=[RunUpdate("wf", "run-1", status="paused")]))
    assert dump(pg_url) == before


def test_a_nul_in_a_text_column_is_refused_before_anything_is_written(
    store: PostgresStore, pg_url: str
) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    before = dump(pg_url)
    bad = start_batch("w\x00f", "run-2", [started("w\x00f", "run-2")])
    bad.events.append(EventRow("wf", "run-1", 1, TimerFired(at(1), 0)))
    with pytest.raises(StoreError, match="holds a NUL character"):
        store.commit(bad)
    assert dump(pg_url) == before
    # Inside JSON it is an escape, stored like any other character.
    store.commit(Batch(updates=[RunUpdate("wf", "run-1", tags={"n": "a\x00b"})]))
    run = store.get_run("wf")
    assert run is not None
    assert run.tags == {"n": "a\x00b"}


def test_naive_datetimes_are_refused_before_anything_is_written(
    store: PostgresStore, pg_url: str
) -> None:
    before = dump(pg_url)
    with pytest.raises(StoreError, match="naive datetime"):
        store.commit(
            Batch(runs=[record("wf", "run-1", started_at=datetime(2026, 3, 1))])
        )
    assert dump(pg_url) == before


def test_a_stored_gap_is_reported_on_load(store: PostgresStore, pg_url: str) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    query(
        pg_url,
        "insert into events (workflow_id, run_id, event_id, kind, payload, recorded_at) "
        "select workflow_id, run_id, 2, kind, payload, recorded_at from events",
    )
    with pytest.raises(HistoryCorruptError, match="has event 2 where 1 belongs"):
        store.load_history("wf", "run-1")
    with pytest.raises(HistoryCorruptError, match="has event 2 where 1 belongs"):
        store.load_histories([("wf", "run-1")])


def test_a_payload_that_does_not_decode_names_the_run_and_event(
    store: PostgresStore, pg_url: str
) -> None:
    store.commit(start_batch("wf", "run-1", [started()]))
    query(
        pg_url,
        "insert into events (workflow_id, run_id, event_id, kind, payload, recorded_at) "
        "values ('wf', 'run-1', 1, 'timer_fired', '[1]', now())",
    )
    with pytest.raises(HistoryCorruptError, match=r"'wf' \(run run-1\): event 1"):
        store.load_history("wf", "run-1")


# ---------------------------------------------------------------------------------------------
# Several stores on one database: what several engines (processes, machines) share.


def test_a_second_store_sees_every_commit_at_once(pg_url: str) -> None:
    with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
        one.commit(start_batch("wf", "run-1", [started()]))
        assert two.load_history("wf", "run-1") == [started()]
        two.commit(Batch(events=[EventRow("wf", "run-1", 1, TimerFired(at(1), 0))]))
        # The first store still believes event 1 comes next: the primary key refuses it,
        # and the store reads the truth for its next commit.
        with pytest.raises(HistoryCorruptError, match="already stored"):
            one.commit(Batch(events=[EventRow("wf", "run-1", 1, TimerFired(at(1), 0))]))
        one.commit(Batch(events=[EventRow("wf", "run-1", 2, TimerFired(at(2), 0))]))
        assert len(two.load_history("wf", "run-1")) == 3


def test_two_stores_appending_the_same_event_at_once_one_wins(pg_url: str) -> None:
    with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
        one.commit(start_batch("wf", "run-1", [started()]))
        # `two` is stopped between its check and its write: `one` commits event 1 in
        # between. The primary key refuses the second append, and the whole batch.
        other = Batch(events=[EventRow("wf", "run-1", 1, TimerFired(at(1), 0))])
        real_write = two._write

        def write_late(con: Any, plan: Any) -> None:
            one.commit(Batch(events=[EventRow("wf", "run-1", 1, TimerFired(at(9), 0))]))
            real_write(con, plan)

        two._write = write_late  # type: ignore[method-assign]
        poisoned = start_batch("fresh", "run-f", [started("fresh", "run-f")])
        poisoned.extend(other)
        with pytest.raises(
            HistoryCorruptError, match="an event id of this batch is already"
        ):
            two.commit(poisoned)
        del two._write
        assert one.load_history("wf", "run-1")[1] == TimerFired(at(9), 0)
        assert two.get_run("fresh") is None
        # Both carry on.
        two.commit(Batch(events=[EventRow("wf", "run-1", 2, TimerFired(at(2), 0))]))


def test_a_run_id_another_store_created_is_refused(pg_url: str) -> None:
    with PostgresStore(pg_url) as one, PostgresStore(pg_url) as two:
        one.commit(start_batch("wf", "run-1", [started()]))
        with pytest.raises(HistoryCorruptError, match="a run id of this batch"):
            two.commit(start_batch("wf", "run-1", [started()]))
        assert len(one.load_history("wf", "run-1")) == 1


def test_readers_on_other_threads_see_whole_commits_only(store: PostgresStore) -> None:
    runs = 4
    batch = Batch()
    for i in range(runs):
        batch.extend(
            start_batch(f"wf-{i}", f"run-{i}", [started(f"wf-{i}", f"run-{i}")])
        )
    store.commit(batch)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def write() -> None:
        try:
            for step in range(1, 60):
                store.commit(
                    Batch(
                        events=[
                            EventRow(
                                f"wf-{i}", f"run-{i}", step, TimerFired(at(step), 0)
                            )
                            for i in range(runs)
                        ],
                        updates=[
                            RunUpdate(f"wf-{i}", f"run-{i}", tags={"step": step})
                            for i in range(runs)
                        ],
                    )
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def read() -> None:
        try:
            while not stop.is_set():
                histories = store.load_histories(
                    [(f"wf-{i}", f"run-{i}") for i in range(runs)]
                )
                lengths = {len(h) for h in histories.values()}
                assert len(lengths) == 1, lengths  # all runs move together, or none
                seen.append(lengths.pop())
                assert store.get_run("wf-0") is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [
        threading.Thread(target=read) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert seen
    assert store.load_history("wf-3", "run-3")[-1] == TimerFired(at(59), 0)


# ---------------------------------------------------------------------------------------------
# Connections the server ends (a restart, a failover, an idle timeout).


def end_sessions(url: str) -> int:
    """End every session of *url*'s test (but this one), as a server restart would."""
    ((ended,),) = query(
        url,
        "select count(pg_terminate_backend(pid, 60000)) from pg_stat_activity "
        "where application_name = current_setting('application_name') "
        "and pid <> pg_backend_pid()",
    )
    return int(ended)


def test_reads_and_commits_carry_on_after_the_server_ends_the_connections(
    pg_url: str,
) -> None:
    with PostgresStore(pg_url, fleet=FleetOptions()) as store:
        store.commit(start_batch("wf", "run-1", [started()]))
        assert store.get_run("wf") is not None  # a reader connection is pooled now
        assert end_sessions(pg_url) == 2  # the writer and the reader
        # A read runs again on a new connection.
        assert store.load_history("wf", "run-1") == [started()]
        # A commit on the lost writer fails, and says it cannot know more...
        batch = Batch(events=[EventRow("wf", "run-1", 1, TimerFired(at(1), 0))])
        with pytest.raises(StoreError, match=r"connection was lost.*may have been"):
            store.commit(batch)
        assert len(store.load_history("wf", "run-1")) == 1  # (here: it was not)
        # ... and the next one runs on a new connection, fenced by the run's lease.
        store.commit(batch)
        assert len(store.load_history("wf", "run-1")) == 2
        assert query(pg_url, "select owner, epoch from workflows") == [(store.owner, 1)]
        assert query(pg_url, "select epoch from events order by event_id") == [
            (1,),
            (1,),
        ]


# ---------------------------------------------------------------------------------------------
# The rest of the surface.


def test_sql_is_answered_by_duckdb_over_a_copy_that_sees_every_commit(
    store: PostgresStore,
) -> None:
    assert store.sql("select count(*) from workflows").fetchall() == [(0,)]
    store.commit(start_batch("wf", "r1", [started("wf", "r1")]))
    # The copy is refreshed before each answer: the commit that returned is seen.
    assert store.sql("select workflow_id, run_id from workflows").fetchall() == [
        ("wf", "r1")
    ]
    assert store.sql("select count(*) from activities").fetchall() == [(0,)]


def test_close_is_idempotent_and_a_closed_store_says_so(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    store.load_history("wf", "nope")  # a pooled reader connection to close too
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_run("wf")
    with pytest.raises(StoreError, match="closed"):
        store.commit(start_batch("wf", "run-1", [started()]))
    assert "closed" in repr(store)
    # Every connection of the store is gone. A server backend leaves pg_stat_activity a
    # moment after its client hangs up (it exits on its own), so look until it has: a
    # leaked connection never leaves, and the hang guard then fails the test.
    deadline = time.monotonic() + 60
    while (
        left := query(
            pg_url,
            "select count(*) from pg_stat_activity "
            "where application_name = current_setting('application_name') "
            "and pid <> pg_backend_pid()",
        )
    ) != [(0,)]:
        assert time.monotonic() < deadline, f"connections left open: {left}"
        time.sleep(0.05)


def test_repr_names_the_database_without_its_password(pg_url: str) -> None:
    url = pg_url.replace("flowgen@", "flowgen:hunter2@")
    with PostgresStore(url) as store:
        assert "hunter2" not in repr(store)
        assert "flowgen:***@" in repr(store)
        assert "(open)" in repr(store)
