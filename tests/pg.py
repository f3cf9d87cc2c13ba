"""A real, throwaway PostgreSQL 15 server for the tests (a pytest plugin: ``tests/conftest.py``).

Fixtures:

* ``postgres_cluster`` (session): one server per pytest process, so each pytest-xdist worker
  has its own (no lock, no shared port: it listens only on a Unix socket in a temporary
  directory of its own). Started on first use, stopped at the end of the session, failed
  tests included (the fixture's finalizer, and ``atexit`` for an interrupted session).
* ``pg_url``: a fresh, empty database for one test, as a ``postgresql://`` URL: a schema of
  its own in the server's one test database, named in the URL (``search_path``), and dropped
  after the test.

Rules:

* The server is `tests.pg_server.PostgresCluster` (unprivileged, binaries from
  ``$FLOWGEN_PG_BIN``; a server left by a killed pytest is removed by the next one).
  Missing binaries or a missing psycopg make every PostgreSQL test FAIL with a message saying
  what to install: never a silent skip (CI must not go green without having run them).
* The server trades durability for speed (``fsync=off``): these tests check flowgen, not
  PostgreSQL's crash safety, and no test kills the server. Nothing else is tuned.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator

import pytest

from tests.pg_server import PostgresCluster, PostgresUnavailableError

__all__ = ["PostgresCluster", "pg_url", "postgres_cluster"]

#: The tests check flowgen, not PostgreSQL's crash safety (see the module docstring).
TEST_SETTINGS = {"fsync": "off"}


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running PostgreSQL server for this pytest process (see the module docstring)."""
    try:
        cluster = PostgresCluster(TEST_SETTINGS)
    except PostgresUnavailableError as exc:
        pytest.fail(f"PostgreSQL tests cannot run: {exc}", pytrace=False)
    atexit.register(cluster.stop)  # an interrupted session still stops it
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        atexit.unregister(cluster.stop)


@pytest.fixture
def pg_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, as a ``postgresql://`` URL.

    A schema of its own in the tests' database (the URL sets ``search_path``): to flowgen
    and to any SQL through the URL, an empty database; 2 ms to make and drop, where a
    database takes ~0.3 s (DROP DATABASE forces a checkpoint).
    """
    name = postgres_cluster.create_schema()
    try:
        yield postgres_cluster.url(schema=name)
    finally:
        postgres_cluster.drop_schema(name)
