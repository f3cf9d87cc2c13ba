"""The ``flowgen`` command line: look inside a flowgen database, signal, cancel, export, check.

::

    flowgen demo                                  # a guided tour on a fresh file
    flowgen ls --status running                   # runs, newest first
    flowgen show order-o-1                        # one run and its history
    flowgen sql "select * from activities"        # any SQL (also --format csv|json)
    flowgen signal order-o-1 approve true         # PAYLOAD is JSON
    flowgen cancel order-o-1
    flowgen export snapshot/                      # Parquet files any DuckDB can read
    flowgen check-replay app.orders:process_order # replay stored histories on today's code
    flowgen worker --import app.orders --until-done  # finish the unfinished runs

The database is ``--db PATH``, else ``$FLOWGEN_DB``, else ``./flowgen.duckdb``.

DuckDB allows one process to have a file open for writing, and while it does no other process
can open the file at all. So the command line works on a database no application has open;
when one does, the command stops with exit code 2 and says how to proceed (call the same
methods in that process, stop it, or read a Parquet snapshot).

Exit codes: 0 success, 1 an error (unknown id, bad input, a replay that diverged), 2 the
database is locked by another process (and argparse's own usage errors).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import inspect
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from flowgen._core.dsl import workflow_definition
from flowgen._stores.locations import is_postgres_url
from flowgen._stores.protocol import WorkflowRecord
from flowgen._vocabulary.errors import (
    FlowgenError,
    HistoryCorruptError,
    NonDeterminismError,
    StoreLockedError,
    UnknownWorkflow,
    WorkflowClosed,
)
from flowgen._vocabulary.events import JsonValue
from flowgen.cli.table import (
    format_duration,
    format_history,
    format_table,
    format_timestamp,
)

if TYPE_CHECKING:
    from flowgen._runtime.engine import Engine
    from flowgen._stores.duckdb_store import DuckDBStore

__all__ = ["main"]

DEFAULT_DB = "flowgen.duckdb"
"""The database used when neither ``--db`` nor ``$FLOWGEN_DB`` names one."""

EXIT_OK, EXIT_ERROR, EXIT_LOCKED = 0, 1, 2


class CommandError(Exception):
    """A failure the command reports as one message and exit code 1 (no traceback)."""


# ---------------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowgen`` command line.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` if ``None``.

    Returns:
        The exit code: 0 on success, 1 on an error, 2 if another process holds the database
        (or the arguments are wrong).
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    command: Callable[[argparse.Namespace], int] = args.handler
    try:
        with _quiet_engine_log(verbose=args.verbose):
            return command(args)
    except StoreLockedError as exc:
        _error(str(exc))
        _error(_locked_advice(args))
        return EXIT_LOCKED
    except (CommandError, FlowgenError) as exc:
        _error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:  # `flowgen ls | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # silence the exit flush
        return EXIT_OK


def _error(message: str) -> None:
    print(f"flowgen: {message}", file=sys.stderr)


def _locked_advice(args: argparse.Namespace) -> str:
    if args.command in ("signal", "cancel"):
        return (
            f"How to proceed: {args.command} it from inside the process that holds the "
            f"file (engine.{args.command}(...)), or stop that process and run this "
            f"command again; the workflow reacts when the file is opened next."
        )
    return (
        "How to proceed: stop the process that holds the file and run this command "
        "again. While it runs, only that process can read the file: query it there "
        "(engine.sql(...)), or have it write a snapshot (engine.store.export_parquet(DIR)) "
        "and read DIR/*.parquet with any DuckDB."
    )


@contextlib.contextmanager
def _quiet_engine_log(*, verbose: bool) -> Iterator[None]:
    """Keep the engine's log lines (e.g. "workflow ... is stuck") off the terminal.

    The commands report what matters themselves; ``--verbose`` shows the log as well.
    """
    logger = logging.getLogger("flowgen")
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if verbose else logging.NullHandler()
    )
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


# ---------------------------------------------------------------------------------------------
# Arguments

_SIGNAL_HELP = """\
Record a signal for the workflow ID; it stays buffered until the workflow waits for NAME.
PAYLOAD is JSON ('true', '"text"', '{"amount": 10}'); it defaults to null.

The signal is durable when this command returns. What happens next depends on whether the
workflow's code is loaded in this process:

  * without --import (the usual case), nothing but the signal is recorded. The workflow
    reacts when a process that defines it (your application) next opens the database.
    The application's unfinished runs are untouched, however many there are.
  * with --import MODULE (repeatable), the modules are imported first, so the workflow
    takes the signal now: what it decides is recorded (for example, the activities it
    schedules), and that work is done when your application next opens the database.
    Opening the database this way also lets every other unfinished run of the imported
    workflows catch up on what was recorded for it; no activity or timer runs here.

The database must not be open in another process (DuckDB allows a single writer); to
signal a workflow that a running application owns, call engine.signal() in it.
"""

_CANCEL_HELP = """\
Ask the workflow ID to cancel: fg.Cancelled is thrown at the yield it waits on, so a saga can
compensate; if the workflow lets it escape, the run ends as "cancelled". The request is
durable when this command returns.

  * without --import, only the request is recorded; the workflow reacts when a process that
    defines it (your application) next opens the database.
  * with --import MODULE (repeatable), the workflow reacts now: its compensations are
    recorded, and the activities among them run when your application next opens the
    database (other unfinished runs of the imported workflows catch up as well).

The database must not be open in another process; to cancel a workflow that a running
application owns, call engine.cancel() in it.
"""

_CHECK_REPLAY_HELP = """\
Replay every stored run of a workflow (optionally only those with --status) against the
code as it is now, without running any activity, and report "ok" or "DIVERGED" per run with
the NonDeterminismError message. Run it before deploying a change to a workflow. The exit
code is 1 if any run diverged (or its history is corrupt), else 0.

MODULE is imported like `python -m` would (the current directory is on the path).
"""

_WORKER_HELP = """\
Run the unfinished workflows whose code MODULE defines (--import, repeatable): open the
database as your application would, resume every unfinished run of those workflows from its
history (activities in flight run again, timers keep their due times), and keep running them
until interrupted (Ctrl-C, or SIGTERM from a process manager), when it stops cleanly. Runs
of workflows not imported are left alone.

  * --until-done exits 0 once no run of the imported workflows is running. Runs that
    cannot move here (their code no longer replays their history) are listed and left; a
    run waiting for a signal keeps the worker waiting, so pair it with --timeout.
  * --timeout SECONDS (with --until-done) gives up after SECONDS with exit code 1, and lists
    the runs still running.

The database must not be open in another process (DuckDB allows a single writer).
"""

_EXPORT_HELP = """\
Write a Parquet snapshot of the tables (workflows, events) and views (activities, timers,
signals, ...) into DIR, one file each, from one transaction. Any DuckDB, pandas or Arrow
reads it, from any process, also once an application has the database open again:

  duckdb -c "select * from 'DIR/activities.parquet'"
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowgen",
        description=(
            "Durable workflows as plain Python generators, with histories in DuckDB. "
            "Inspect a flowgen database, send signals, cancel runs, export and check "
            "histories."
        ),
        epilog=(
            "The database is --db PATH, else $FLOWGEN_DB, else ./flowgen.duckdb. "
            "Start with: flowgen demo"
        ),
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="the flowgen DuckDB file (default: $FLOWGEN_DB, else ./flowgen.duckdb)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the engine's log messages",
    )
    parser.set_defaults(command=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run a guided tour: a real workflow on an embedded DuckDB file",
        description=(
            "Run a multi-step order workflow (a flaky activity that is retried, a durable "
            "timer across an engine restart, signals, a saga that compensates) and print "
            "what happened, ending with a SQL query over the history. Uses --db PATH if "
            "given, else a new file in a temporary directory ($FLOWGEN_DB is ignored, so "
            "that the demo never writes into your own database)."
        ),
    )
    demo.set_defaults(handler=_cmd_demo)

    ls = sub.add_parser("ls", help="list runs, newest first")
    ls.add_argument(
        "--status", help="only runs with this status (running, completed, ...)"
    )
    ls.add_argument("--name", help="only runs of this workflow name")
    ls.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs whose tag KEY equals VALUE (JSON, or else plain text); repeatable",
    )
    ls.add_argument(
        "--limit", type=int, default=100, help="show at most this many (0: all; 100)"
    )
    ls.set_defaults(handler=_cmd_ls)

    show = sub.add_parser("show", help="one run's row and its history")
    show.add_argument("id", metavar="ID", help="the workflow id")
    show.add_argument(
        "--run", metavar="RUN_ID", help="a specific run (default: the latest)"
    )
    show.set_defaults(handler=_cmd_show)

    sql = sub.add_parser(
        "sql",
        help="run a SQL query and print the result",
        description=(
            "Run a SQL query on the database: tables workflows and events; views "
            "activities, activity_attempts, timers, signals, signal_waits and children. "
            "Read-only: statements that would change the database are refused."
        ),
    )
    sql.add_argument("query", metavar="QUERY")
    sql.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="output format (default: table)",
    )
    sql.set_defaults(handler=_cmd_sql)

    for name, help_text, description in (
        ("signal", "send a workflow a signal (PAYLOAD is JSON)", _SIGNAL_HELP),
        ("cancel", "cancel a workflow run", _CANCEL_HELP),
    ):
        command = sub.add_parser(
            name,
            help=help_text,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument("id", metavar="ID", help="the workflow id")
        if name == "signal":
            command.add_argument("name", metavar="NAME", help="the signal name")
            command.add_argument(
                "payload",
                metavar="PAYLOAD",
                nargs="?",
                default="null",
                help="the payload as JSON (default: null)",
            )
            command.set_defaults(handler=_cmd_signal)
        else:
            command.add_argument("--reason", default="", help="why (recorded)")
            command.set_defaults(handler=_cmd_cancel)
        _add_imports(
            command, "import MODULE first, so the workflow reacts now (repeatable)"
        )

    export = sub.add_parser(
        "export",
        help="write a Parquet snapshot of the tables and views",
        description=_EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("dir", metavar="DIR", help="the directory to write into")
    export.set_defaults(handler=_cmd_export)

    check = sub.add_parser(
        "check-replay",
        help="replay stored histories against today's workflow code",
        description=_CHECK_REPLAY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "target", metavar="MODULE:WORKFLOW", help="e.g. app.orders:process_order"
    )
    check.add_argument("--status", help="only runs with this status")
    check.set_defaults(handler=_cmd_check_replay)

    worker = sub.add_parser(
        "worker",
        help="run the unfinished workflows of the imported modules",
        description=_WORKER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_imports(
        worker,
        "import MODULE (its workflows and activities) first (repeatable)",
        required=True,
    )
    worker.add_argument(
        "--until-done",
        action="store_true",
        help="exit once no run of the imported workflows is running",
    )
    worker.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="with --until-done: give up after SECONDS (exit code 1)",
    )
    worker.add_argument(
        "--max-workers",
        type=int,
        default=8,
        metavar="N",
        help="threads running activities (default: 8)",
    )
    worker.set_defaults(handler=_cmd_worker)
    return parser


def _add_imports(
    command: argparse.ArgumentParser, help_text: str, *, required: bool = False
) -> None:
    command.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        required=required,
        help=help_text,
    )


# ---------------------------------------------------------------------------------------------
# Opening the database


def _db_path(args: argparse.Namespace) -> str:
    path: str = args.db or os.environ.get("FLOWGEN_DB") or DEFAULT_DB
    args.db_path = path
    return path


def _existing_db(args: argparse.Namespace) -> str:
    path = _db_path(args)
    if is_postgres_url(path):
        return path  # a server: opening the store says if it is not there
    if not Path(path).exists():
        hint = "" if args.db else " (set --db PATH or $FLOWGEN_DB)"
        raise CommandError(
            f"no flowgen database at {path}{hint}; `flowgen demo --db {path}` creates one "
            f"with a few runs in it"
        )
    return path


def _open_store(args: argparse.Namespace) -> DuckDBStore:
    from flowgen._stores.duckdb_store import DuckDBStore

    path = _existing_db(args)
    if is_postgres_url(path):
        raise CommandError(
            f"`flowgen {args.command}` reads a DuckDB file, and on PostgreSQL it is not "
            f"available yet (signal, cancel and worker are)"
        )
    return DuckDBStore(path)


def _open_engine(args: argparse.Namespace) -> Engine:
    from flowgen._runtime.engine import Engine

    path = _existing_db(args)
    for module in args.imports:
        _import(module)
    # Driven by hand and never run: opening resumes the runs whose code is loaded (their
    # pending activities and timers are queued, not performed), the others stay stuck
    # harmlessly, and closing drops the queue; the next open resumes everything again.
    return Engine(path)


def _import(module: str) -> object:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CommandError(f"cannot import {module!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Commands


def _cmd_demo(args: argparse.Namespace) -> int:
    from flowgen.cli.demo import run_demo

    if args.db:
        path = args.db
    else:
        path = str(Path(tempfile.mkdtemp(prefix="flowgen-demo-")) / "demo.duckdb")
    args.db_path = path
    return run_demo(path, out=sys.stdout)


def _cmd_ls(args: argparse.Namespace) -> int:
    tags = [_parse_tag(t) for t in args.tag]
    if args.limit < 0:
        raise CommandError(f"--limit must be >= 0, got {args.limit}")
    store = _open_store(args)
    try:
        runs = store.list_runs(status=args.status, name=args.name)
    finally:
        store.close()
    runs = [r for r in runs if all(_tag_matches(r.tags, k, v) for k, v in tags)]
    shown = runs if args.limit == 0 else runs[: args.limit]
    rows = [
        (
            r.workflow_id,
            r.name,
            r.status,
            format_timestamp(r.started_at, seconds_only=True),
            format_timestamp(r.closed_at, seconds_only=True) if r.closed_at else "",
        )
        for r in shown
    ]
    if not rows:
        print("no runs match" if (args.status or args.name or tags) else "no runs yet")
        return EXIT_OK
    print(format_table(("id", "name", "status", "started (UTC)", "closed (UTC)"), rows))
    if len(shown) < len(runs):
        print(f"({len(shown)} of {len(runs)} runs shown; --limit 0 shows all)")
    return EXIT_OK


def _parse_tag(text: str) -> tuple[str, list[JsonValue]]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise CommandError(f"--tag takes KEY=VALUE, got {text!r}")
    candidates: list[JsonValue] = [raw]
    with contextlib.suppress(ValueError):
        value: JsonValue = json.loads(raw)
        if value != raw:
            candidates.insert(0, value)
    return key, candidates


def _tag_matches(tags: dict[str, JsonValue], key: str, values: list[JsonValue]) -> bool:
    if key not in tags:
        return False
    found = tags[key]
    # 1 == True in Python; a tag set to true must not match --tag k=1.
    return any(found == v and type(found) is type(v) for v in values)


def _cmd_show(args: argparse.Namespace) -> int:
    store = _open_store(args)
    try:
        record = store.get_run(args.id, args.run)
        if record is None:
            raise _unknown(args.id, args.run)
        history = store.load_history(record.workflow_id, record.run_id)
        chain = store.sql(
            "select run_id from workflows where workflow_id = ? order by started_at",
            [record.workflow_id],
        ).fetchall()
    finally:
        store.close()
    run_ids = [run_id for (run_id,) in chain]
    print(_describe_record(record, run_ids))
    print()
    print(f"history: {len(history)} events")
    print(format_history(history))
    return EXIT_OK


def _unknown(workflow_id: str, run_id: str | None = None) -> CommandError:
    if run_id:
        return CommandError(f"no run {run_id!r} of workflow {workflow_id!r}")
    return CommandError(f"no workflow with id {workflow_id!r} (see `flowgen ls`)")


def _describe_record(record: WorkflowRecord, run_ids: list[str]) -> str:
    run = record.run_id
    if len(run_ids) > 1 and run in run_ids:
        run += (
            f" (run {run_ids.index(run) + 1} of {len(run_ids)} with this id, a "
            f"continue-as-new chain: --run RUN_ID shows another)"
        )
    lines: list[tuple[str, str]] = [
        ("workflow", record.workflow_id),
        ("run", run),
        ("name", record.name),
        ("status", record.status),
        ("started", format_timestamp(record.started_at) + " UTC"),
    ]
    if record.closed_at is not None:
        took = (record.closed_at - record.started_at).total_seconds()
        lines.append(
            (
                "closed",
                f"{format_timestamp(record.closed_at)} UTC (took {format_duration(took)})",
            )
        )
    lines.append(("args", _json(record.args)))
    if record.kwargs:
        lines.append(("kwargs", _json(record.kwargs)))
    if record.parent_id:
        lines.append(("parent", record.parent_id))
    if record.tags:
        lines.append(("tags", _json(record.tags)))
    if record.status == "completed":
        lines.append(("result", _json(record.result)))
    if record.error is not None:
        lines.append(("error", str(record.error)))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def _json(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


# What `flowgen sql` runs. Anything else (INSERT, UPDATE, DELETE, CREATE, DROP, BEGIN, ...)
# is refused: the tables belong to the engine. The statement also runs in a transaction that
# is rolled back, so even COPY ... FROM or a CALL cannot change the database.
_READ_STATEMENTS = frozenset(
    {"SELECT", "EXPLAIN", "PRAGMA", "COPY", "CALL", "SET", "VARIABLE_SET", "LOAD"}
)


def _is_duckdb_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb")


def _cmd_sql(args: argparse.Namespace) -> int:
    store = _open_store(args)
    try:
        cursor = store.cursor()
        try:
            kinds = [
                str(s.type).rpartition(".")[2]
                for s in cursor.extract_statements(args.query)
            ]
            refused = [k for k in kinds if k not in _READ_STATEMENTS]
            if refused:
                raise CommandError(
                    f"flowgen sql only reads; {refused[0]} statements are refused (the "
                    f"tables belong to the engine: change runs through the engine's API)"
                )
            cursor.execute("BEGIN TRANSACTION")
            try:
                relation = cursor.sql(args.query)
                columns = list(relation.columns)
                types = [str(t) for t in relation.types]
                rows = relation.fetchall()
            finally:
                cursor.execute("ROLLBACK")
        except Exception as exc:
            if _is_duckdb_error(exc):
                raise CommandError(f"SQL error: {exc}") from None
            raise
    finally:
        store.close()
    _print_result(columns, types, rows, args.format, sys.stdout)
    return EXIT_OK


def _print_result(
    columns: list[str],
    types: list[str],
    rows: list[tuple[Any, ...]],
    fmt: str,
    out: TextIO,
) -> None:
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        if columns:
            writer.writerow(columns)
        writer.writerows([[_csv_cell(v) for v in row] for row in rows])
    elif fmt == "json":
        records = [
            {
                column: _json_cell(value, type_name)
                for column, type_name, value in zip(columns, types, row, strict=True)
            }
            for row in rows
        ]
        out.write(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    elif columns:
        out.write(format_table(columns, rows) + "\n")
        out.write(f"({len(rows)} row{'' if len(rows) == 1 else 's'})\n")
    else:
        out.write("ok\n")


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return value


def _json_cell(value: object, type_name: str) -> object:
    if value is None:
        return None
    if type_name == "JSON" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_cell(v, "") for v in value]
    if isinstance(value, dict):
        return {str(k): _json_cell(v, "") for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _parse_payload(text: str) -> JsonValue:
    try:
        payload: JsonValue = json.loads(text)
    except ValueError as exc:
        raise CommandError(
            f"PAYLOAD must be JSON, got {text!r} ({exc}); for text, quote it twice: "
            f"'\"{text}\"'"
        ) from None
    return payload


def _cmd_signal(args: argparse.Namespace) -> int:
    payload = _parse_payload(args.payload)
    return _deliver(args, "signal", lambda e: e.signal(args.id, args.name, payload))


def _cmd_cancel(args: argparse.Namespace) -> int:
    return _deliver(args, "cancel", lambda e: e.cancel(args.id, args.reason))


def _deliver(
    args: argparse.Namespace, what: str, send: Callable[[Engine], None]
) -> int:
    engine = _open_engine(args)
    try:
        record = engine.store.get_run(args.id)
        if record is None:
            raise _unknown(args.id)
        if record.is_closed:
            raise WorkflowClosed(
                f"workflow {args.id!r} has finished ({record.status}); it takes no more "
                f"signals or cancels"
            )
        loaded = record.name in engine.registry.workflow_names
        stuck = _replay_problem(engine, record) if loaded else None
        send(engine)
        status = engine.get(args.id).status()
    except UnknownWorkflow:
        raise _unknown(args.id) from None
    finally:
        engine.close()
    done = (
        f"signal {args.name!r} recorded for workflow {args.id!r}"
        if what == "signal"
        else f"cancel request recorded for workflow {args.id!r}"
    )
    if not loaded:
        print(f"{done}.")
        print(
            f"The code of workflow {record.name!r} is not loaded here, so it has not reacted "
            f"yet: it will when a process that defines {record.name!r} next opens "
            f"{args.db_path} (or pass --import MODULE to have it react now)."
        )
    elif stuck is not None:
        print(f"{done}.")
        _error(
            f"warning: the imported code of workflow {record.name!r} does not replay this "
            f"run's history, so the run cannot react ({type(stuck).__name__}: {stuck}). "
            f"It resumes from here once code that replays it opens {args.db_path}; "
            f"`flowgen check-replay MODULE:WORKFLOW` checks a fix."
        )
    elif status == "running":
        print(f"{done}; the workflow took it and is running.")
        print(
            "What it decided is recorded; the activities and timers it is waiting on run "
            f"when your application next opens {args.db_path}."
        )
    else:
        print(f"{done}; the workflow took it and is now {status}.")
    return EXIT_OK


def _replay_problem(engine: Engine, record: WorkflowRecord) -> Exception | None:
    """Why the loaded code cannot rebuild *record*'s run (the engine then leaves it stuck)."""
    from flowgen._runtime.stepper import check_replay

    try:
        check_replay(
            engine.registry.workflow(record.name).fn,
            engine.store.load_history(record.workflow_id, record.run_id),
        )
    except (NonDeterminismError, HistoryCorruptError) as exc:
        return exc
    return None


def _cmd_worker(args: argparse.Namespace) -> int:
    from flowgen._runtime.engine import Engine

    if args.timeout is not None and not args.until_done:
        raise CommandError("--timeout goes with --until-done")
    path = _existing_db(args)
    for module in args.imports:
        _import(module)
    stop = threading.Event()
    # SIGTERM (a process manager stopping it) ends the loop like Ctrl-C does; only the main
    # thread may install a handler (main() may run on another, e.g. in a test).
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if on_main else None
    engine = Engine(path, max_workers=args.max_workers)
    try:
        names = engine.registry.workflow_names
        left = _running_of(engine, names)
        print(
            f"flowgen worker on {path}: {len(left)} unfinished run(s) of "
            f"{', '.join(sorted(names)) or 'no workflow'}",
            flush=True,
        )
        engine.start_background()
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        # Polled, not pushed: a read of the runs' rows every half second is nothing next to
        # the work, and it sees what the engine committed whichever thread did it.
        while not stop.wait(0.5):
            if not args.until_done:
                continue
            left = _running_of(engine, names)
            stuck = {r.workflow_id: engine.get(r.workflow_id).stuck() for r in left}
            if all(problem is not None for problem in stuck.values()):
                for workflow_id, problem in stuck.items():
                    _error(
                        f"left {workflow_id!r}: it cannot move here "
                        f"({type(problem).__name__}: {problem})"
                    )
                print(f"done: no run of the imported workflows is running in {path}.")
                return EXIT_OK
            if deadline is not None and time.monotonic() >= deadline:
                shown = ", ".join(repr(r.workflow_id) for r in left[:10])
                more = f" and {len(left) - 10} more" if len(left) > 10 else ""
                raise CommandError(
                    f"--timeout {args.timeout:g} s passed with {len(left)} run(s) still "
                    f"running: {shown}{more}; they resume when the file is opened next"
                )
        print(f"stopped: unfinished runs resume when {path} is opened next.")
        return EXIT_OK
    finally:
        engine.close()
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _running_of(engine: Engine, names: Iterable[str]) -> list[WorkflowRecord]:
    wanted = set(names)
    return [r for r in engine.store.list_runs(status="running") if r.name in wanted]


def _cmd_export(args: argparse.Namespace) -> int:
    store = _open_store(args)
    try:
        written = store.export_parquet(args.dir)
    finally:
        store.close()
    print(f"wrote {len(written)} Parquet files to {args.dir}:")
    for path in written:
        print(f"  {Path(path).name}")
    example = next((p for p in written if p.endswith("activities.parquet")), None)
    if example is not None:
        print(
            f"read them with any DuckDB, e.g.: duckdb -c \"select * from '{example}'\""
        )
    return EXIT_OK


def _cmd_check_replay(args: argparse.Namespace) -> int:
    from flowgen._runtime.stepper import check_replay

    module_name, sep, attr = args.target.partition(":")
    if not sep or not module_name or not attr:
        raise CommandError(
            f"expected MODULE:WORKFLOW (e.g. app.orders:process_order), got {args.target!r}"
        )
    path = _existing_db(args)
    module = _import(module_name)
    fn: object = module
    for part in attr.split("."):
        try:
            fn = getattr(fn, part)
        except AttributeError:
            raise CommandError(f"module {module_name!r} has no {attr!r}") from None
    if not inspect.isgeneratorfunction(fn):
        raise CommandError(
            f"{args.target} is not a workflow (a generator function decorated with "
            f"@fg.workflow), it is {fn!r}"
        )
    name = workflow_definition(fn).name

    from flowgen._stores.duckdb_store import DuckDBStore

    store = DuckDBStore(path)
    try:
        runs = store.list_runs(name=name, status=args.status)
        runs.reverse()  # oldest first
        results: list[tuple[WorkflowRecord, str, str]] = []
        for record in runs:
            try:
                history = store.load_history(record.workflow_id, record.run_id)
                check_replay(fn, history)
            except NonDeterminismError as exc:
                results.append((record, "DIVERGED", f"NonDeterminismError: {exc}"))
            except HistoryCorruptError as exc:
                results.append((record, "CORRUPT", f"HistoryCorruptError: {exc}"))
            except Exception as exc:  # noqa: BLE001  # reported per run, like a divergence
                results.append((record, "ERROR", f"{type(exc).__name__}: {exc}"))
            else:
                results.append((record, "ok", ""))
    finally:
        store.close()
    which = f" with status {args.status!r}" if args.status else ""
    if not results:
        print(f"no stored runs of workflow {name!r}{which} in {path}: nothing to check")
        return EXIT_OK
    print(f"replaying {len(results)} stored run(s) of workflow {name!r}{which}:")
    print(
        format_table(
            ("id", "run", "status", "replay"),
            [
                (r.workflow_id, r.run_id[:12], r.status, verdict)
                for r, verdict, _ in results
            ],
        )
    )
    failed = [
        (r, verdict, message) for r, verdict, message in results if verdict != "ok"
    ]
    for record, verdict, message in failed:
        print()
        print(f"{record.workflow_id} (run {record.run_id}) {verdict}:")
        print("  " + message.replace("\n", "\n  "))
    print()
    print(f"{len(results) - len(failed)} ok, {len(failed)} diverged")
    return EXIT_ERROR if failed else EXIT_OK
