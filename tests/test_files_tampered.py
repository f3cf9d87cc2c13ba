"""Files on disk changed behind flowgen's back, after a real ``kill -9``: a database renamed
without its journal is refused with a message saying where the journal is, never opened
as if the acknowledged commits in that journal had not happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowgen as fg

ROOT = Path(__file__).resolve().parent.parent

# Starts N runs (each acknowledged: start() returned), then dies by SIGKILL, so that the
# journal beside the file holds commits DuckDB has not received yet.
KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import flowgen as fg
    from tests.test_files_tampered import waiter

    engine = fg.Engine(sys.argv[1], control_socket=False)
    engine.start_background()
    for i in range(int(sys.argv[2])):
        engine.start(waiter, id=f"k-{i}")
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@fg.workflow(name="tampered_waiter")
def waiter() -> fg.Workflow[object]:
    got = yield fg.wait_signal("go")
    return got


def _killed_after_starting(path: Path, runs: int) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(path), str(runs)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9, done.stderr.decode()
    assert Path(f"{path}.journal").exists()


def _ids(path: Path) -> set[str]:
    engine = fg.Engine(str(path), control_socket=False)
    try:
        return {record.workflow_id for record in engine.list_runs(limit=None)}
    finally:
        engine.close()


def test_a_database_renamed_without_its_journal_is_refused_until_the_journal_follows(
    tmp_path: Path,
) -> None:
    # It opened with none of the 20 acknowledged runs (they were in the journal left at the
    # old name), and later commits under the new name passed their record numbers.
    old, new = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    _killed_after_starting(old, 20)
    old.rename(new)
    before = new.read_bytes()
    with pytest.raises(fg.StoreError, match="without its journal") as refused:
        fg.Engine(str(new), control_socket=False)
    assert f"{old}.journal" in str(refused.value)
    assert new.read_bytes() == before, "the refused database was changed"
    assert not Path(f"{new}.journal").exists()
    Path(f"{old}.journal").rename(f"{new}.journal")
    assert _ids(new) == {f"k-{i}" for i in range(20)}


def _crashed(tmp_path: Path) -> Path:
    path = tmp_path / "a.duckdb"
    _killed_after_starting(path, 5)
    return path


@pytest.mark.parametrize("kind", ["symlink-to-dev-null", "fifo"])
def test_a_journal_that_is_no_regular_file_is_refused_naming_it(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A journal symlinked to /dev/null raised a bare OSError (EINVAL), a FIFO an
    # io.UnsupportedOperation: tracebacks on the command line.
    from flowgen.cli import main

    path = _crashed(tmp_path)
    journal = Path(f"{path}.journal")
    journal.rename(tmp_path / "kept.journal")
    if kind == "fifo":
        os.mkfifo(journal)
    else:
        journal.symlink_to("/dev/null")
    before = path.read_bytes()
    with pytest.raises(fg.StoreError, match="not a regular file"):
        fg.Engine(str(path), control_socket=False)
    assert main(["--db", str(path), "ls"]) == 1
    assert "not a regular file" in capsys.readouterr().err
    assert path.read_bytes() == before
    journal.unlink()
    (tmp_path / "kept.journal").rename(journal)
    assert _ids(path) == {f"k-{i}" for i in range(5)}
