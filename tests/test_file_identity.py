"""One database file is one database, whatever path spells it, and its journal is its own.

* Two stores on one file through another spelling of its path (a symlink, a hard link)
  used to pass the one-writer lock, which was taken on ``<given path>.journal``: through a
  hard link, acknowledged runs vanished. The lock is on the file's identity (device and
  inode), in this process and across processes.
* Every database has an identity (``flowgen_meta.database_id``), written into its journal's
  first record; a journal from another database is refused, and neither file is touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import flowgen as fg
from flowgen._stores.duckdb_store import DuckDBStore
from flowgen._vocabulary.errors import StoreError, StoreLockedError
from tests.test_journal import abandon, raw_count, start


def symlink(db: Path) -> Path:
    other = db.with_name("through-a-symlink.duckdb")
    other.symlink_to(db)
    return other


def hard_link(db: Path) -> Path:
    other = db.with_name("through-a-hard-link.duckdb")
    os.link(db, other)
    return other


SPELLINGS = [
    pytest.param(symlink, id="symlink"),
    pytest.param(hard_link, id="hard-link"),
]


@pytest.mark.parametrize("spell", SPELLINGS)
@pytest.mark.parametrize("journal", [True, False])
def test_a_second_store_through_another_path_in_this_process_is_refused(
    tmp_path: Path, spell: Callable[[Path], Path], journal: bool
) -> None:
    db = tmp_path / "f.duckdb"
    first = DuckDBStore(db, journal=journal)
    try:
        first.commit(start("wf-1", "run-1"))
        other = spell(db)
        with pytest.raises(StoreLockedError, match="same file") as refused:
            DuckDBStore(other, journal=journal)
        assert str(db) in str(refused.value)
        with pytest.raises(StoreLockedError):
            fg.Engine(str(other))
        first.commit(start("wf-2", "run-2"))
        assert [r.workflow_id for r in first.list_runs()] == ["wf-2", "wf-1"]
    finally:
        first.close()
    # Closed: the other spelling opens it, and sees every run.
    with DuckDBStore(other) as again:
        assert len(again.list_runs()) == 2


def test_engines_through_a_hard_link_lose_no_acknowledged_run(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    DuckDBStore(db).close()
    other = hard_link(db)

    @fg.workflow(name="noop")
    def noop(i: int) -> fg.Workflow[int]:
        return i
        yield  # pragma: no cover

    with fg.Engine(str(db), workflows=[noop]) as engine:
        for i in range(50):
            assert engine.start(noop, i, id=f"run-{i}").result(timeout=30) == i
        with pytest.raises(StoreLockedError):
            fg.Engine(str(other), workflows=[noop])
    with DuckDBStore(other) as store:
        assert len(store.list_runs()) == 50


HOLD_OPEN = """
import sys
from flowgen._stores.duckdb_store import DuckDBStore
store = DuckDBStore(sys.argv[1])
print("open", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("spell", SPELLINGS)
def test_a_store_through_another_path_in_another_process_is_refused(
    tmp_path: Path, spell: Callable[[Path], Path]
) -> None:
    db = tmp_path / "f.duckdb"
    with DuckDBStore(db) as store:
        store.commit(start("wf-1", "run-1"))
    other = spell(db)
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(other)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "open"
            with pytest.raises(StoreLockedError, match=f"process {holder.pid}"):
                DuckDBStore(db)
        finally:
            holder.kill()
            holder.wait()
    with DuckDBStore(db) as store:
        assert len(store.list_runs()) == 1


def test_a_symlinked_database_finds_its_journal_after_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "f.duckdb"
    other = symlink(db)
    store = DuckDBStore(other)
    store.commit(start("wf-1", "run-1"))
    abandon(store)  # kill -9: the run is in the journal only
    with DuckDBStore(db) as again:
        assert [r.workflow_id for r in again.list_runs()] == ["wf-1"]


def test_a_hard_link_opened_after_a_crash_does_not_skip_the_journaled_commits(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.duckdb"
    store = DuckDBStore(db)
    for i in range(50):
        store.commit(start(f"wf-{i}", f"run-{i}"))
    abandon(store)  # kill -9: the 50 runs are in f.duckdb.journal only
    other = hard_link(db)
    before = sha256(db)
    with pytest.raises(StoreLockedError, match="open it by that name") as refused:
        DuckDBStore(other)
    assert f"{db}.journal" in str(refused.value)
    assert sha256(db) == before
    assert not Path(f"{other}.journal").exists()
    with DuckDBStore(db) as again:  # by its name: applied
        assert len(again.list_runs()) == 50
    with DuckDBStore(other) as again:  # and now the other name opens too
        assert len(again.list_runs()) == 50
        again.commit(start("wf-50", "run-50"))
    with DuckDBStore(db) as again:
        assert len(again.list_runs()) == 51


def test_a_copy_of_the_file_is_not_refused_for_its_original_s_journal(
    tmp_path: Path,
) -> None:
    db = tmp_path / "f.duckdb"
    store = DuckDBStore(db)
    store.commit(start("wf-1", "run-1"))
    store.flush()
    store.commit(start("wf-2", "run-2"))
    abandon(store)
    copy = tmp_path / "copy.duckdb"
    shutil.copy(db, copy)  # the file alone: its journal's commits are not in it
    with DuckDBStore(copy) as store:
        assert [r.workflow_id for r in store.list_runs()] == ["wf-1"]
    with DuckDBStore(db) as store:
        assert len(store.list_runs()) == 2


# ---------------------------------------------------------------------------------------------
# The database's identity, in its journal.


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_database_has_an_identity(tmp_path: Path) -> None:
    query = "select value from flowgen_meta where key = 'database_id'"
    with (
        DuckDBStore(tmp_path / "a.duckdb") as a,
        DuckDBStore(tmp_path / "b.duckdb") as b,
    ):
        ((id_a,),) = a.sql(query).fetchall()
        ((id_b,),) = b.sql(query).fetchall()
    assert len(id_a) == 32 and len(id_b) == 32 and id_a != id_b


def test_a_journal_from_another_database_is_refused_touching_neither_file(
    tmp_path: Path,
) -> None:
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    DuckDBStore(b).close()
    store = DuckDBStore(a)
    store.commit(start("wf-a", "run-a"))
    abandon(store)  # a's run is in a's journal only
    shutil.copy(f"{a}.journal", f"{b}.journal")
    before = (sha256(b), sha256(Path(f"{b}.journal")))
    with pytest.raises(StoreError, match="belongs to another database") as refused:
        DuckDBStore(b)
    assert f"{b}.journal" in str(refused.value)
    assert (sha256(b), sha256(Path(f"{b}.journal"))) == before
    assert raw_count(b, "workflows") == 0
    # a's own journal still applies to a.
    with DuckDBStore(a) as store:
        assert [r.workflow_id for r in store.list_runs()] == ["wf-a"]


def test_a_journal_written_before_databases_had_an_identity_still_applies(
    tmp_path: Path,
) -> None:
    # A journal of an older flowgen has no identity record: it is applied as before.
    db = tmp_path / "f.duckdb"
    store = DuckDBStore(db)
    store.commit(start("wf-1", "run-1"))
    assert store._journal is not None
    end = store._journal._end
    abandon(store)
    data = Path(f"{db}.journal").read_bytes()[:end]
    header_end = data.find(b"FGJ1", 1)  # the identity record comes first; drop it
    Path(f"{db}.journal").write_bytes(data[header_end:])
    with DuckDBStore(db) as again:
        assert [r.workflow_id for r in again.list_runs()] == ["wf-1"]
