"""A real, throwaway PostgreSQL 15 server: the one copy the tests and the benchmarks use.

`PostgresCluster` runs ``initdb`` and ``postgres`` in a temporary directory, listening only on
a Unix socket there, and removes everything when stopped. ``tests/pg.py`` wraps it in pytest
fixtures; ``benchmarks/fleet.py`` starts one per benchmark run. Nothing here imports pytest.

Rules:

* ``initdb`` and ``postgres`` refuse to run as root: as root, the server runs as the
  unprivileged user ``flowgen-pg`` (created if missing), and owns only its temporary
  directory. As any other user, it runs as that user.
* The binaries come from ``$FLOWGEN_PG_BIN``, else ``/usr/lib/postgresql/15/bin``. Missing
  binaries or a missing psycopg raise `PostgresUnavailableError`, whose message says what to
  install (the tests turn it into a failure, never a silent skip).
* A server whose owner died without stopping it (SIGKILL) is stopped and removed by the next
  `PostgresCluster` made on the machine (each cluster directory names its owner's pid).
* Settings are PostgreSQL's defaults except ``max_connections=200`` (a fleet of engines and
  a peer each hold a pool) and what the caller passes as *settings* (the tests turn ``fsync``
  off; the benchmarks keep a durable server, as in production).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

PG_BIN = Path(os.environ.get("FLOWGEN_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = "flowgen-pg"
# The database role initdb creates (trust auth, on the socket only).
SUPERUSER = "flowgen"
DATABASE = "flowgen_tests"  # one per server; each test works in a schema of its own
_START_TIMEOUT = 60.0  # a hang guard, not a speed expectation


class PostgresUnavailableError(RuntimeError):
    """The server binaries or the driver are missing; the message says what to install."""


def _missing(what: str) -> None:
    raise PostgresUnavailableError(
        f"cannot start a PostgreSQL server: {what}. Install the server (Debian: apt-get install "
        f"postgresql-15, or point FLOWGEN_PG_BIN at a PostgreSQL 15 bin directory) and the "
        f'driver (pip install -e ".[postgres]"); .ci/run does both.'
    )


def _server_user() -> str | None:
    """The user to run the server as (None: this process's own user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        # Another xdist worker may be creating it at the same moment: check again after.
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            capture_output=True,
            check=False,
        )
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            _missing(
                f"cannot create the unprivileged user {SERVER_USER!r} for the server"
            )
    return SERVER_USER


_PREFIX = "flowgen-pg-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned_clusters() -> None:
    """Stop and remove the servers of test processes that died without stopping theirs.

    An owner killed with SIGKILL (or ``os._exit``) runs no finalizer: its server would run
    on. Each cluster directory names its owner's pid; a live owner's cluster (another xdist
    worker's) is left alone.
    """
    for root in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # being created right now, or not ours
        if _alive(owner):
            continue
        try:
            server = int((root / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            server = 0
        if server and _alive(server):
            os.kill(server, signal.SIGQUIT)  # immediate shutdown
        shutil.rmtree(root, ignore_errors=True)


class PostgresCluster:
    """One throwaway PostgreSQL server in a temporary directory, on a Unix socket."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        """Prepare (not start) a server.

        Args:
            settings: ``postgres -c NAME=VALUE`` settings on top of the defaults.

        Raises:
            PostgresUnavailableError: The binaries or psycopg are missing.
        """
        self.settings = {"max_connections": "200", **(settings or {})}
        for binary in ("initdb", "postgres"):
            if not (PG_BIN / binary).exists():
                _missing(f"{PG_BIN / binary} does not exist")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            _missing("the psycopg package is not installed")
        self.user = _server_user()
        _remove_abandoned_clusters()
        self.root = Path(tempfile.mkdtemp(prefix=_PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.log = self.root / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run_as_server(self, *args: str | os.PathLike[str], **kwargs: Any) -> Any:
        return subprocess.run(
            [os.fspath(a) for a in args], user=self.user, check=False, **kwargs
        )

    def start(self) -> None:
        """initdb, then start ``postgres`` and wait until it accepts connections."""
        done = self._run_as_server(
            PG_BIN / "initdb",
            "-D",
            self.data,
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        with open(self.log, "wb") as log:
            self._process = subprocess.Popen(
                [
                    os.fspath(PG_BIN / "postgres"),
                    "-D",
                    os.fspath(self.data),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    f"unix_socket_directories={self.socket_dir}",
                    *(
                        arg
                        for name, value in self.settings.items()
                        for arg in ("-c", f"{name}={value}")
                    ),
                ],
                user=self.user,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches the owner, not it
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self._process.returncode}:\n"
                    f"{self.log.read_text(errors='replace')}"
                )
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=5):
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres did not accept connections within {_START_TIMEOUT} s:\n"
                        f"{self.log.read_text(errors='replace')}"
                    ) from None
                time.sleep(0.05)
        self.admin(f"CREATE DATABASE {DATABASE}")

    def url(self, database: str = DATABASE, schema: str | None = None) -> str:
        """A libpq URL for *database* on this server (the socket directory as the host).

        With *schema*, sessions of the URL work in that schema (``search_path``) and are
        named after it (``application_name``), so they can be found and ended.
        """
        url = f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir), safe='')}"
        if schema is not None:
            url += f"&options={quote(f'-c search_path={schema}')}&application_name={schema}"
        return url

    def admin(self, statement: str, database: str = "postgres") -> None:
        """Run *statement* (e.g. CREATE DATABASE) outside a transaction."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as con:
            con.execute(statement)

    def create_schema(self) -> str:
        """A new empty schema in the tests' database; its name (see `url`)."""
        name = f"t{next(self._names)}"
        self.admin(f"CREATE SCHEMA {name}", DATABASE)
        return name

    def drop_schema(self, name: str) -> None:
        """Drop schema *name*, first ending any session a test left open in it."""
        self.admin(
            "SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity "
            f"WHERE application_name = '{name}'",
            DATABASE,
        )
        self.admin(f"DROP SCHEMA {name} CASCADE", DATABASE)

    def stop(self) -> None:
        """Stop the server (immediately: its data is thrown away) and remove its files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # immediate shutdown
            try:
                process.wait(timeout=_START_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
