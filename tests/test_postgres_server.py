"""The throwaway PostgreSQL server the store tests run against (``tests/pg.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.pg import PostgresCluster


def test_each_test_gets_a_fresh_database_on_postgresql_15(pg_url: str) -> None:
    with psycopg.connect(pg_url) as con:
        version = con.execute("SHOW server_version_num").fetchone()
        tables = con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = current_schema()"
        ).fetchone()
        con.execute("CREATE TABLE scratch (x int)")  # a later test must not see it
    assert version is not None
    assert 150000 <= int(version[0]) < 160000
    assert tables == (0,)


def test_a_second_test_does_not_see_the_first_ones_tables(pg_url: str) -> None:
    with psycopg.connect(pg_url) as con:
        found = con.execute("SELECT to_regclass('scratch') IS NULL").fetchone()
    assert found == (True,)


def test_the_server_runs_unprivileged_on_a_socket_only(
    postgres_cluster: PostgresCluster, pg_url: str
) -> None:
    with psycopg.connect(pg_url) as con:
        listen = con.execute("SHOW listen_addresses").fetchone()
        data = con.execute("SHOW data_directory").fetchone()
    assert listen == ("",)
    assert data is not None
    owner = os.stat(data[0]).st_uid
    assert owner != 0 or os.geteuid() != 0
    assert owner == os.stat(postgres_cluster.root).st_uid


def test_missing_server_binaries_fail_the_tests_with_a_clear_message(
    tmp_path: os.PathLike[str],
) -> None:
    # Never a silent skip: CI without PostgreSQL must go red, saying what to install.
    # A pytest of its own: not an xdist worker (the variables xdist sets are left out).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))
    }
    env["FLOWGEN_PG_BIN"] = os.fspath(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_a_second_test_does_not_see_the_first_ones_tables",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 error" in done.stdout
    assert "PostgreSQL tests cannot run" in done.stdout
    assert "initdb does not exist" in done.stdout


ABANDON = """
import sys
from tests.pg import PostgresCluster

cluster = PostgresCluster()
cluster.start()
print(cluster.root, flush=True)
sys.stdin.read()
"""


def test_a_server_left_by_a_killed_pytest_is_stopped_by_the_next_one() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", ABANDON],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as owner:
        assert owner.stdout is not None
        root = Path(owner.stdout.readline().strip())
        server = int((root / "data" / "postmaster.pid").read_text().split()[0])
        owner.kill()  # kill -9: no finalizer, no atexit
        owner.wait(timeout=60)
    assert root.exists()
    os.kill(server, 0)  # still running
    cluster = PostgresCluster()  # the next session's server cleans up first
    try:
        assert not root.exists()
        deadline = time.monotonic() + 60
        while Path(f"/proc/{server}").exists() and _state(server) != "Z":
            assert time.monotonic() < deadline, "the abandoned server is still running"
            time.sleep(0.05)
    finally:
        cluster.stop()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
