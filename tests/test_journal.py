"""DuckDBStore's journal: commits durable in one fsync'd record, moved into DuckDB later.

What a user relies on: a commit that returned survives kill -9 whether or not its rows
reached the tables; a torn last record (the crash hit mid-write) is dropped, damage is
refused; each record is applied exactly once; reads through the store see every commit;
and the tables end up exactly as committing each batch straight into DuckDB leaves them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

import flowgen as fg
from flowgen._stores.duckdb_store import DuckDBStore
from flowgen._stores.protocol import Batch, EventRow, RunUpdate, WorkflowRecord
from flowgen._vocabulary.errors import HistoryCorruptError, StoreLockedError
from flowgen._vocabulary.events import TimerFired, TimerStarted, WorkflowStarted
from tests.strategies import examples

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def start(workflow_id: str, run_id: str) -> Batch:
    return Batch(
        runs=[WorkflowRecord(workflow_id, run_id, "order", "running", [1], {}, T0)],
        events=[
            EventRow(
                workflow_id,
                run_id,
                0,
                WorkflowStarted(T0, workflow_id, run_id, "order", [1]),
            )
        ],
    )


def snapshot(store: DuckDBStore) -> tuple[list[tuple[Any, ...]], ...]:
    return (
        store.sql("select * from workflows order by run_id").fetchall(),
        store.sql("select * from events order by run_id, event_id").fetchall(),
    )


def abandon(store: DuckDBStore) -> None:
    """Close *store* as kill -9 leaves it: journaled commits not applied, the journal kept."""
    assert store._journal is not None
    store._journal.close(remove=False)
    store._pending.clear()
    store.close()


def killed_with_runs(db: Path, runs: int) -> bytes:
    """Make *db* hold *runs* started runs in its journal only, as kill -9 leaves it.

    Returns the journal's records (the bytes before the zeros the file grows by).
    """
    store = DuckDBStore(db)
    for i in range(1, runs + 1):
        store.commit(start(f"wf-{i}", f"run-{i}"))
    assert store._journal is not None
    end = store._journal._end
    abandon(store)
    return Path(f"{db}.journal").read_bytes()[:end]


def raw_count(path: Path, table: str) -> int:
    """Rows in *table* as DuckDB alone sees the file (no journal applied)."""
    import duckdb

    con = duckdb.connect(str(path))
    try:
        (count,) = con.execute(f"select count(*) from {table}").fetchone() or (0,)
        return int(count)
    finally:
        con.close()


def test_a_commit_survives_kill_9_before_its_rows_reach_the_tables(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.duckdb"
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.test_journal import start
        from flowgen._stores.duckdb_store import DuckDBStore
        store = DuckDBStore({str(db)!r})
        store.apply_seconds = float("inf")  # however slow the machine: only journaled
        for i in range(50):
            store.commit(start(f"wf-{{i}}", f"run-{{i}}"))
        print("acknowledged", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    assert done.stdout.strip() == "acknowledged"
    journal = Path(f"{db}.journal")
    assert journal.stat().st_size > 0
    assert raw_count(db, "workflows") == 0  # only the journal has them
    store = DuckDBStore(db)
    try:
        assert len(store.list_runs()) == 50
        assert store.load_history("wf-7", "run-7")[0].workflow_id == "wf-7"
    finally:
        store.close()
    assert raw_count(db, "workflows") == 50
    assert not journal.exists()  # a clean close leaves no journal


def test_a_torn_last_record_is_dropped_and_the_rest_applied(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    records = killed_with_runs(db, 2)
    # The second record, cut short mid-write (zeros after it, as the file grows).
    Path(f"{db}.journal").write_bytes(records[:-7] + bytes(100))
    store = DuckDBStore(db)
    try:
        assert [r.workflow_id for r in store.list_runs()] == ["wf-1"]
        # The store goes on from there: the cut record's run id is free.
        store.commit(start("wf-2", "run-2"))
        assert len(store.list_runs()) == 2
    finally:
        store.close()


def test_a_damaged_record_followed_by_more_is_refused_and_nothing_changes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.duckdb"
    data = bytearray(killed_with_runs(db, 2))
    data[30] ^= 0xFF  # inside the first record's body
    journal = Path(f"{db}.journal")
    journal.write_bytes(bytes(data))
    with pytest.raises(
        HistoryCorruptError, match=r"damaged at byte 0 .* follows at byte"
    ):
        DuckDBStore(db)
    assert journal.read_bytes() == bytes(data)
    assert raw_count(db, "workflows") == 0


def test_records_already_applied_are_skipped_on_recovery(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    store = DuckDBStore(db)
    store.commit(start("wf-1", "run-1"))
    store.commit(
        Batch(events=[EventRow("wf-1", "run-1", 1, TimerStarted(at(1), 0, at(2)))])
    )
    store.flush()
    # Applied records stay in the journal until it grows big; a crash now leaves them.
    abandon(store)
    assert Path(f"{db}.journal").stat().st_size > 0
    store = DuckDBStore(db)
    try:
        assert len(store.load_history("wf-1", "run-1")) == 2  # not 4, and no key error
        store.commit(Batch(events=[EventRow("wf-1", "run-1", 2, TimerFired(at(2), 0))]))
    finally:
        store.close()
    store = DuckDBStore(db)
    try:
        assert len(store.load_history("wf-1", "run-1")) == 3
    finally:
        store.close()


def test_a_journal_left_by_a_crash_is_applied_by_a_store_without_one(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.duckdb"
    killed_with_runs(db, 1)
    direct = DuckDBStore(db, journal=False)
    try:
        assert [r.workflow_id for r in direct.list_runs()] == ["wf-1"]
        assert not Path(f"{db}.journal").exists()
        direct.commit(start("wf-2", "run-2"))
        assert raw_count(db, "workflows") == 2  # straight into DuckDB
    finally:
        direct.close()


def test_a_second_store_on_the_file_in_this_process_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    first = DuckDBStore(db)
    try:
        first.commit(start("wf-1", "run-1"))
        with pytest.raises(StoreLockedError, match="another DuckDBStore"):
            DuckDBStore(db)
        with pytest.raises(StoreLockedError):
            fg.Engine(str(db))
        assert [r.workflow_id for r in first.list_runs()] == ["wf-1"]
    finally:
        first.close()
    again = DuckDBStore(db)
    again.close()


def test_every_read_through_the_store_sees_every_commit(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "f.duckdb")
    try:
        kept = store.cursor()
        store.commit(start("wf-1", "run-1"))
        assert store.get_run("wf-1") is not None
        assert store.sql("select count(*) from events").fetchall() == [(1,)]
        store.commit(start("wf-2", "run-2"))
        assert store.cursor().execute("select count(*) from workflows").fetchall() == [
            (2,)
        ]
        store.commit(start("wf-3", "run-3"))
        # A cursor kept from earlier reads the tables as they are: flush() first.
        assert kept.execute("select count(*) from workflows").fetchall() == [(2,)]
        store.flush()
        assert kept.execute("select count(*) from workflows").fetchall() == [(3,)]
    finally:
        store.close()


def test_the_backlog_moves_into_the_tables_by_size_and_by_age(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "f.duckdb")
    try:
        kept = store.cursor()
        store.apply_rows = 6  # each start is 2 rows
        store.commit(start("wf-1", "run-1"))
        store.commit(start("wf-2", "run-2"))
        assert kept.execute("select count(*) from workflows").fetchall() == [(0,)]
        store.commit(start("wf-3", "run-3"))
        assert kept.execute("select count(*) from workflows").fetchall() == [(3,)]
        store.apply_rows = 1000
        store.apply_seconds = 0.05
        store.commit(start("wf-4", "run-4"))
        time.sleep(0.1)
        store.commit(start("wf-5", "run-5"))
        assert kept.execute("select count(*) from workflows").fetchall() == [(5,)]
    finally:
        store.close()


def test_the_engine_flushes_when_idle(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"

    @fg.workflow
    def hello(name: str) -> Any:
        return f"hello {name}"
        yield  # pragma: no cover

    with fg.Engine(str(db), workflows=[hello]) as engine:  # background threads
        store = engine.store
        assert isinstance(store, DuckDBStore)
        kept = store.cursor()
        # A background engine answers result() from memory, and nothing here reads
        # through the store: only the idle flush can move the rows.
        assert engine.start(hello, "ada").result(timeout=10) == "hello ada"
        deadline = time.monotonic() + 120  # a hang guard: a loaded machine is slow
        found: list[Any] = []
        while time.monotonic() < deadline and found != [("completed",)]:
            time.sleep(0.05)
            found = kept.execute("select status from workflows").fetchall()
        assert found == [("completed",)]
        with (
            store._write_lock
        ):  # the move ends (its list emptied) under the store's lock
            assert not store._pending


def _wait_for_rows(kept: Any, query: str, expected: list[Any]) -> list[Any]:
    deadline = time.monotonic() + 120  # a hang guard: a loaded machine is slow
    found: list[Any] = []
    while time.monotonic() < deadline and found != expected:
        time.sleep(0.05)
        found = kept.execute(query).fetchall()
    return found


def test_the_engine_flushes_when_idle_after_an_activity_thread_committed(
    tmp_path: Path,
) -> None:
    # The run's last commit is made by the activity's thread (the loop was idle, so the
    # outcome was handed in there), long after the loop thread flushed the start and went
    # to sleep: the loop thread must still flush once the engine is idle again.
    db = tmp_path / "f.duckdb"
    go = threading.Event()

    @fg.activity
    def slow() -> str:
        assert go.wait(timeout=120)
        return "done"

    @fg.workflow
    def one_call() -> Any:
        return (yield fg.call(slow))

    with fg.Engine(str(db), workflows=[one_call]) as engine:
        store = engine.store
        assert isinstance(store, DuckDBStore)
        kept = store.cursor()
        handle = engine.start(one_call)
        query = "select status from workflows"
        assert _wait_for_rows(kept, query, [("running",)]) == [("running",)]
        time.sleep(0.5)  # the loop thread is asleep, with nothing left to flush
        go.set()
        assert handle.result(timeout=120) == "done"
        assert _wait_for_rows(kept, query, [("completed",)]) == [("completed",)]


def test_the_tables_end_up_as_committing_each_batch_straight_leaves_them(
    tmp_path: Path,
) -> None:
    # Row changes of one run across many journaled commits merge in order (the later value
    # of a column wins), and a run inserted by one of them gets them folded in.
    batches = [
        start("wf-1", "run-1"),
        Batch(
            events=[EventRow("wf-1", "run-1", 1, TimerStarted(at(1), 0, at(2)))],
            updates=[RunUpdate("wf-1", "run-1", tags={"step": 1})],
        ),
        start("wf-2", "run-2"),
        Batch(
            events=[EventRow("wf-1", "run-1", 2, TimerFired(at(2), 0))],
            updates=[
                RunUpdate("wf-1", "run-1", tags={"step": 2}),
                RunUpdate("wf-2", "run-2", tags={"x": None}),
            ],
        ),
        Batch(
            updates=[
                RunUpdate(
                    "wf-1", "run-1", status="completed", result=[1, 2], closed_at=at(3)
                ),
            ]
        ),
    ]
    direct = DuckDBStore(tmp_path / "direct.duckdb", journal=False)
    journaled = DuckDBStore(tmp_path / "journaled.duckdb")
    try:
        # The first batch reaches the tables alone, so the rest updates a stored run too.
        for store in (direct, journaled):
            store.commit(batches[0])
        journaled.flush()
        for batch in batches[1:]:
            direct.commit(batch)
            journaled.commit(batch)
        assert len(journaled._pending) == 4
        assert snapshot(journaled) == snapshot(direct)
        # And with every batch in one apply: the updates fold into inserted rows.
        again = DuckDBStore(tmp_path / "again.duckdb")
        try:
            for batch in batches:
                again.commit(batch)
            assert snapshot(again) == snapshot(direct)
        finally:
            again.close()
    finally:
        direct.close()
        journaled.close()


def test_a_run_id_in_use_is_refused_while_its_run_is_only_journaled(
    tmp_path: Path,
) -> None:
    store = DuckDBStore(tmp_path / "f.duckdb")
    try:
        batch = start("wf-1", "run-1")
        batch.updates.append(
            RunUpdate("wf-1", "run-1", status="completed", closed_at=at(1))
        )
        store.commit(batch)  # closed: it leaves the cache, and is not in the table yet
        with pytest.raises(HistoryCorruptError, match="already exists"):
            store.commit(start("wf-1", "run-1"))
        store.flush()
        with pytest.raises(HistoryCorruptError, match="already exists"):
            store.commit(start("wf-1", "run-1"))
        assert len(store.list_runs()) == 1
    finally:
        store.close()


def test_a_closed_store_can_be_reopened_with_no_journal_left(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    with DuckDBStore(db) as store:
        store.commit(start("wf-1", "run-1"))
    assert not Path(f"{db}.journal").exists()
    assert raw_count(db, "events") == 1
    assert os.path.exists(db)


def test_a_big_applied_journal_is_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowgen._stores.journal

    monkeypatch.setattr(flowgen._stores.journal, "_ROTATE_AT", 1000)
    db = tmp_path / "f.duckdb"
    store = DuckDBStore(db)
    try:
        for i in range(8):
            store.commit(start(f"wf-{i}", f"run-{i}"))
        assert store._journal._end >= 1000  # type: ignore[union-attr]
        store.flush()
        assert store._journal._end == 0  # type: ignore[union-attr]
        assert Path(f"{db}.journal").stat().st_size == 0
        store.commit(start("wf-9", "run-9"))  # and it goes on from the start
    finally:
        abandon(store)
    store = DuckDBStore(db)
    try:
        assert len(store.list_runs()) == 9
    finally:
        store.close()


def test_a_journal_write_that_fails_is_a_failed_commit(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    store = DuckDBStore(db)
    try:
        store.commit(start("wf-1", "run-1"))
        journal = store._journal
        assert journal is not None
        good_fd = journal._fd
        journal._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails
        with pytest.raises(fg.StoreError, match="could not be written"):
            store.commit(start("wf-2", "run-2"))
        os.close(journal._fd)
        journal._fd = good_fd
        # Nothing of it was recorded: the same run can be committed now.
        store.commit(start("wf-2", "run-2"))
        assert [r.workflow_id for r in store.list_runs()] == ["wf-2", "wf-1"]
    finally:
        store.close()


# One step of a random workload: ("start",), ("event", run), ("update", run, fields),
# ("flush",) or ("read",); runs are picked by index among those started.
_UPDATE_FIELD = st.sampled_from(["status", "result", "error", "tags", "closed_at"])
_STEP = st.one_of(
    st.just(("start",)),
    st.tuples(st.just("event"), st.integers(0, 5)),
    st.tuples(
        st.just("update"),
        st.integers(0, 5),
        st.lists(_UPDATE_FIELD, min_size=1, max_size=5, unique=True),
        st.integers(0, 3),
    ),
    st.just(("flush",)),
    st.just(("read",)),
)


_WORKLOAD = st.lists(st.lists(_STEP, min_size=1, max_size=4), max_size=25)


@examples(0.5)  # the big budget runs in CI's extended part (below)
@given(steps=_WORKLOAD)
def test_any_workload_leaves_the_tables_as_direct_commits_do(
    steps: list[list[tuple[Any, ...]]],
) -> None:
    assert_workload_matches(steps)


@pytest.mark.slow
@examples(10)
@given(steps=_WORKLOAD)
def test_any_workload_leaves_the_tables_as_direct_commits_do_big_budget(
    steps: list[list[tuple[Any, ...]]],
) -> None:
    assert_workload_matches(steps)


def assert_workload_matches(steps: list[list[tuple[Any, ...]]]) -> None:
    """Journal mode, with moves at random points, ends with the same rows as direct mode.

    Each inner list is one batch: new runs, events and row changes of several runs, so
    the merge of many journaled batches (later column values win, changes folded into
    runs inserted in the same move) is exercised against one transaction per batch.
    """
    from flowgen._vocabulary.errors import ErrorInfo

    # In memory: the merge is the same code with or without the file, and many examples
    # run in seconds (the file's own behaviour is tested above).
    direct = DuckDBStore(":memory:", journal=False)
    journaled = DuckDBStore(":memory:")
    try:
        runs: list[str] = []
        next_event: dict[str, int] = {}
        for number, batch_steps in enumerate(steps):
            batch = Batch()
            reads = False
            for step in batch_steps:
                if step[0] == "start":
                    run_id = f"run-{len(runs)}"
                    runs.append(run_id)
                    new = start(f"wf-{run_id}", run_id)
                    batch.runs += new.runs
                    batch.events += new.events
                    next_event[run_id] = 1
                elif step[0] == "event" and runs:
                    run_id = runs[step[1] % len(runs)]
                    event_id = next_event[run_id]
                    batch.events.append(
                        EventRow(
                            f"wf-{run_id}",
                            run_id,
                            event_id,
                            TimerStarted(at(number), event_id, at(number + 1)),
                        )
                    )
                    next_event[run_id] = event_id + 1
                elif step[0] == "update" and runs:
                    run_id = runs[step[1] % len(runs)]
                    value = step[3]
                    changes: dict[str, Any] = {
                        "status": ["running", "completed", "failed", "cancelled"][
                            value
                        ],
                        "result": {"n": number, "v": value},
                        "error": ErrorInfo("E", f"boom {number}", False, value),
                        "tags": {"step": number, "v": value},
                        "closed_at": at(number + value),
                    }
                    batch.updates.append(
                        RunUpdate(
                            f"wf-{run_id}",
                            run_id,
                            **{field: changes[field] for field in step[2]},
                        )
                    )
                elif step[0] == "flush":
                    journaled.flush()
                elif step[0] == "read":
                    reads = True
            if batch:
                direct.commit(batch)
                journaled.commit(batch)
            if reads:
                assert snapshot(journaled) == snapshot(direct)
        assert snapshot(journaled) == snapshot(direct)
    finally:
        direct.close()
        journaled.close()


def test_a_record_with_a_damaged_header_is_not_taken_for_the_end(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.duckdb"
    data = bytearray(killed_with_runs(db, 3))
    second = data.find(b"FGJ1", 1)
    data[second] = ord("X")  # the second record's magic: the third still follows
    journal = Path(f"{db}.journal")
    journal.write_bytes(bytes(data))
    with pytest.raises(HistoryCorruptError, match=f"damaged at byte {second}"):
        DuckDBStore(db)
    assert journal.read_bytes() == bytes(data)


def test_a_foreign_file_where_the_journal_goes_is_left_untouched(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.duckdb"
    DuckDBStore(db).close()
    journal = Path(f"{db}.journal")
    journal.write_text("my notes, not a journal\n")
    with pytest.raises(fg.StoreError, match="not a flowgen journal"):
        DuckDBStore(db)
    assert journal.read_text() == "my notes, not a journal\n"
    journal.unlink()
    DuckDBStore(db).close()
