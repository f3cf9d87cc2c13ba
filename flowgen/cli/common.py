"""What every ``flowgen`` command shares: finding the database, importing code, errors.

The database is ``--db PATH``, else ``$FLOWGEN_DB``, else ``./flowgen.duckdb``; a command
that reads never creates it. A failure the user can fix is a `CommandError`: one message
and exit code 1, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flowgen._stores.locations import is_postgres_url
from flowgen._vocabulary.events import JsonValue

if TYPE_CHECKING:
    from flowgen._runtime.engine import Engine
    from flowgen._stores.duckdb_store import DuckDBStore
    from flowgen._stores.postgres_store import PostgresStore

__all__ = [
    "DEFAULT_DB",
    "EXIT_ERROR",
    "EXIT_LOCKED",
    "EXIT_OK",
    "CommandError",
    "db_path",
    "existing_db",
    "import_module",
    "json_argument",
    "json_text",
    "open_engine",
    "open_store",
    "through_engine",
    "unknown",
]

DEFAULT_DB = "flowgen.duckdb"
"""The database used when neither ``--db`` nor ``$FLOWGEN_DB`` names one."""

EXIT_OK, EXIT_ERROR, EXIT_LOCKED = 0, 1, 2


class CommandError(Exception):
    """A failure the command reports as one message and exit code 1 (no traceback)."""


def db_path(args: argparse.Namespace) -> str:
    """The database path the arguments and environment name (kept as ``args.db_path``)."""
    path: str = args.db or os.environ.get("FLOWGEN_DB") or DEFAULT_DB
    args.db_path = path
    return path


def existing_db(args: argparse.Namespace) -> str:
    """`db_path`, which must exist: reading never creates a database."""
    path = db_path(args)
    if is_postgres_url(path):
        return path  # a server: opening the store says if it is not there
    if not Path(path).exists():
        hint = "" if args.db else " (set --db PATH or $FLOWGEN_DB)"
        raise CommandError(
            f"no flowgen database at {path}{hint}; `flowgen demo --db {path}` creates one "
            f"with a few runs in it"
        )
    return path


def open_store(args: argparse.Namespace) -> DuckDBStore | PostgresStore:
    """The store of `existing_db`, without an engine (no workflow code runs).

    On PostgreSQL, a store that only reads (no engine lock): its runs and histories are
    read from PostgreSQL, and its SQL (``sql``, ``export``) is answered by DuckDB over an
    analytics copy (see `flowgen._stores.postgres_analytics`).
    """
    path = existing_db(args)
    if is_postgres_url(path):
        from flowgen._stores.postgres_store import PostgresStore

        return PostgresStore(path)
    from flowgen._stores.duckdb_store import DuckDBStore

    return DuckDBStore(path)


def through_engine(
    args: argparse.Namespace, op: str, **fields: JsonValue
) -> JsonValue | None:
    """The answer to *op* of the engine that holds `existing_db`, if one serves it.

    ``None`` when no engine answers on the socket beside the file (none runs, or one was
    killed): the command then opens the file itself. See `flowgen._runtime.control`.
    """
    from flowgen._runtime.control import ControlError, request, serves

    path = existing_db(args)
    if not serves(path):
        return None
    try:
        return request(path, op, **fields)
    except ControlError as exc:
        if exc.type_name == "UnknownWorkflow":
            raise unknown(str(fields.get("id"))) from None
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(
            f"the engine that holds {path} stopped answering ({exc}); run the command "
            f"again"
        ) from None


def open_engine(args: argparse.Namespace) -> Engine:
    """An engine on `existing_db`, after importing ``args.imports``; driven by hand."""
    from flowgen._runtime.engine import Engine
    from flowgen._stores.protocol import FleetOptions

    path = existing_db(args)
    for module in args.imports:
        import_module(module)
    # Driven by hand and never run: opening resumes the runs whose code is loaded (their
    # pending activities and timers are queued, not performed), the others stay stuck
    # harmlessly, and closing drops the queue; the next open resumes everything again.
    # No socket of its own (it lives for one command), and no waiting for the file: an
    # application holding it without a socket is reported at once. On PostgreSQL it is
    # a client of the fleet: it claims no run (signals and cancels go to their holders).
    fleet = FleetOptions(runs_workflows=False) if is_postgres_url(path) else None
    return Engine(path, control_socket=False, lock_timeout=0, fleet=fleet)


def import_module(module: str) -> object:
    """Import *module* as ``python -m`` would (the current directory on the path)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CommandError(f"cannot import {module!r}: {exc}") from None


def unknown(workflow_id: str, run_id: str | None = None) -> CommandError:
    """The error for an id (or run) the database does not have."""
    if run_id:
        return CommandError(f"no run {run_id!r} of workflow {workflow_id!r}")
    return CommandError(f"no workflow with id {workflow_id!r} (see `flowgen ls`)")


def json_argument(text: str, what: str) -> JsonValue:
    """*text*, a JSON value given on the command line as *what* (``PAYLOAD``, ``each ARG``).

    The one rule for JSON arguments: ``NaN`` and ``Infinity`` (which Python's parser takes
    but JSON has not), a number beyond a float's range (``1e400``) and nesting too deep to
    parse are refused like any text that is not
    JSON, with a `CommandError` that quotes the start of *text*.
    """

    def not_json(constant: str) -> JsonValue:
        raise ValueError(f"{constant} is not JSON")

    def finite(number: str) -> float:
        value = float(number)
        if math.isinf(value):
            raise ValueError(f"{number[:20]} is beyond a float's range")
        return value

    shown = text if len(text) <= 60 else f"{text[:60]}..."
    try:
        value: JsonValue = json.loads(text, parse_constant=not_json, parse_float=finite)
    except (ValueError, RecursionError) as exc:
        why = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise CommandError(
            f"{what} must be JSON, got {shown!r} ({why}); for text, quote it twice: "
            f"'\"{shown}\"'"
        ) from None
    return value


def json_text(value: object) -> str:
    """*value* as compact JSON text, for one line of output."""
    return json.dumps(value, default=str, ensure_ascii=False)
