"""A file this user may not read or write gets `StorePermissionError`, and is left untouched.

The checks run as an unprivileged user: root ignores file permissions, so under root the
test forks and drops to ``nobody`` before opening (the interpreter and flowgen are already
loaded, so nothing else needs permissions); as any other user it opens in-process.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import flowgen as fg


def as_unprivileged(open_it: Callable[[], object]) -> tuple[str, str]:
    """Run *open_it* as a user without privileges: (exception type name, message)."""
    if os.geteuid() != 0:
        return _outcome(open_it)
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, try, report, and leave without cleanup
        try:
            os.close(read)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            kind, message = _outcome(open_it)
            os.write(write, f"{kind}\n{message}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    os.waitpid(pid, 0)
    kind, _, message = report.partition("\n")
    return kind, message


def _outcome(open_it: Callable[[], object]) -> tuple[str, str]:
    try:
        opened = open_it()
    except Exception as exc:  # the test looks at which
        return type(exc).__name__, str(exc)
    close = getattr(opened, "close", None)
    if close is not None:
        close()
    return "opened", ""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder every user may reach (pytest's own tmp_path is in a private 0700 one)."""
    folder = Path(tempfile.mkdtemp(prefix="flowgen-perm-"))
    folder.chmod(0o755)
    yield folder
    for below in (folder, *folder.rglob("*")):
        if below.is_dir():
            below.chmod(0o755)
    shutil.rmtree(folder)


@pytest.fixture
def shared_dir(base: Path) -> Path:
    folder = base / "shared"
    folder.mkdir()
    folder.chmod(0o777)  # the unprivileged user may create files here
    return folder


@pytest.mark.parametrize(
    ("mode", "why"),
    [(0o600, "unreadable"), (0o644, "read-only")],
)
def test_a_file_this_user_may_not_open_gets_store_permission_error(
    shared_dir: Path, mode: int, why: str
) -> None:
    path = shared_dir / f"{why}.duckdb"
    fg.Engine(str(path)).close()
    if os.geteuid() != 0:
        path.chmod(
            mode & 0o400
        )  # not root: our own file, made unwritable (or unreadable)
    else:
        path.chmod(mode)  # root's file: nobody may read it (600) or only read it (644)
    before = digest(path)
    kind, message = as_unprivileged(lambda: fg.Engine(str(path)))
    assert kind == "StorePermissionError", message
    # ... and not because the folders on the way are closed: another file opens there.
    assert as_unprivileged(lambda: fg.Engine(str(shared_dir / "mine.duckdb")))[0] == (
        "opened"
    )
    assert f"cannot open {path}: permission denied" in message
    assert "run as a user who may write the file and its folder" in message
    assert digest(path) == before
    assert issubclass(fg.StorePermissionError, PermissionError)
    assert issubclass(fg.StorePermissionError, fg.StoreError)


def test_a_new_file_in_a_folder_this_user_may_not_write(base: Path) -> None:
    folder = base / "closed"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        kind, message = as_unprivileged(lambda: fg.Engine(str(folder / "new.duckdb")))
    finally:
        folder.chmod(0o755)
    assert kind == "StorePermissionError", message
    assert "permission denied" in message
    assert os.listdir(folder) == []
