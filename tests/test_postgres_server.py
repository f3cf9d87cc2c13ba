"""The throwaway PostgreSQL server the store tests run against (``tests/pg.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from tests.pg import PostgresCluster


def test_each_test_gets_a_fresh_database_on_postgresql_15(pg_url: str) -> None:
    with psycopg.connect(pg_url) as con:
        version = con.execute("SHOW server_version_num").fetchone()
        tables = con.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'public'"
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["FLOWGEN_PG_BIN"] = os.fspath(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n0",  # one test: no xdist workers to start
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
