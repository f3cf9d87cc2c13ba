"""The ``flowgen`` command line: look inside a flowgen database, signal, cancel, export, check.

::

    flowgen demo                                  # a guided tour on a fresh file
    flowgen ls --status running                   # runs, newest first
    flowgen show order-o-1                        # one run and its history
    flowgen sql "select * from activities"        # any SQL (also --format csv|json)
    flowgen signal order-o-1 approve true         # PAYLOAD is JSON
    flowgen cancel order-o-1
    flowgen update cart-1 add_item '"apple"'     # each ARG is JSON; prints the result
    flowgen export snapshot/                      # Parquet files any DuckDB can read
    flowgen reset order-o-1 --event 12            # a new run: events 0..12 replayed, then live
    flowgen retry order-o-1                       # a fresh run with the same arguments
    flowgen prune --older-than 30d --export-to archive/   # delete old closed runs
    flowgen check-replay app.orders:process_order # replay stored histories on today's code
    flowgen worker --import app.orders --until-done  # finish the unfinished runs
    flowgen schedules                             # schedules, their next firing and last run
    flowgen schedule pause nightly --note "db maintenance"   # also unpause, delete
    flowgen --db postgresql://... mirror --to analytics.duckdb  # a DuckDB copy for BI tools

The database is ``--db PATH``, else ``$FLOWGEN_DB``, else ``./flowgen.duckdb``.

DuckDB allows one process to have a file open for writing, and while it does no other process
can open the file at all. So the command line works on a database no application has open;
when one does, the command stops with exit code 2 and says how to proceed (call the same
methods in that process, stop it, or read a Parquet snapshot).

On a terminal, tables are drawn in colour and long commands (``check-replay``, ``export``,
``worker --until-done``) show their progress on stderr, when the ``cli`` extra (rich) is
installed; piped, the output is plain aligned text and no progress (`flowgen.cli.console`).

Exit codes: 0 success, 1 an error (unknown id, bad input, a replay that diverged), 2 the
database is locked by another process (and argparse's own usage errors). An error is one
message (a long one cut in the middle), never a traceback: the API's ``TypeError`` and
``ValueError`` for an argument it refuses are reported like the command's own errors.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from flowgen._runtime.schedules import ACTIONS as SCHEDULE_ACTIONS
from flowgen._stores.protocol import RUN_STATUSES
from flowgen._vocabulary.errors import FlowgenError, StoreLockedError
from flowgen.cli.common import EXIT_ERROR, EXIT_LOCKED, EXIT_OK, CommandError
from flowgen.cli.console import error
from flowgen.cli.inspecting import (
    SHOW_EVENTS,
    cmd_export,
    cmd_ls,
    cmd_show,
    cmd_sql,
)
from flowgen.cli.lineage import add_lineage_commands
from flowgen.cli.mirroring import MIRROR_HELP, cmd_mirror
from flowgen.cli.operating import (
    DETAILS_SHOWN,
    cmd_cancel,
    cmd_check_replay,
    cmd_signal,
    cmd_worker,
)
from flowgen.cli.scheduling import cmd_schedule, cmd_schedules
from flowgen.cli.updating import UPDATE_HELP, cmd_update

__all__ = ["main"]

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
        # Two lines: what holds the file (the error's first line), and what to do here.
        error(str(exc).splitlines()[0])
        error(_locked_advice(args))
        return EXIT_LOCKED
    except (CommandError, FlowgenError) as exc:
        error(str(exc))
        return EXIT_ERROR
    except (TypeError, ValueError) as exc:
        # The engine's API refuses a wrong argument (a payload it cannot store, a name
        # with a lone surrogate) with these, naming it: a message, as the socket answers.
        error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except BrokenPipeError:  # `flowgen ls | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # silence the exit flush
        return EXIT_OK


def _locked_advice(args: argparse.Namespace) -> str:
    # An engine with a socket, but this command needs the file itself.
    path = getattr(args, "db_path", None)
    if path is not None and _answers(path):
        return (
            f"How to proceed: the application holding it answers `flowgen` commands "
            f"(ls, show, sql, signal, cancel, update, export, ...), but {args.command} "
            f"needs the file itself: stop the application and run this again."
        )
    if args.command in ("signal", "cancel", "update", "reset", "retry", "prune"):
        return (
            f"How to proceed: it serves no `flowgen` command (an engine with "
            f"control_socket=False, or not an engine): {args.command} it from inside that "
            f"process (engine.{args.command}(...)), or stop it and run this again."
        )
    return (
        "How to proceed: it serves no `flowgen` command (an engine with "
        "control_socket=False, or not an engine): query it there (engine.sql(...), "
        "engine.store.export_parquet(DIR)), or stop it and run this again."
    )


def _answers(path: str) -> bool:
    """Whether an engine answers the command line on the socket beside *path*."""
    from flowgen._runtime.control import ControlError, request

    try:
        return request(path, "schedules") is not None
    except (ControlError, OSError, ValueError):
        return False


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
code as it is now, without running any activity. Run it before deploying a change to a
workflow. The exit code is 1 if any run diverged (or its history is corrupt), else 0.

It prints a summary and the runs that diverged ("DIVERGED", "CORRUPT"), the first {details}
with their NonDeterminismError message; --verbose lists every run ("ok" too) and every
message. On a terminal a progress bar shows on stderr.

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
  * --queue NAME (repeatable) runs the activities of task queue NAME
    (@fg.activity(task_queue=NAME)) and no other: --queue gpu on a GPU box,
    --queue default --queue gpu for both. Without it, the default queue.

A DuckDB file must not be open in another process (DuckDB allows a single writer). On
PostgreSQL (--db postgresql://...) any number of workers share the database, each one a
member of the fleet: it claims runs nobody holds (new ones, a dead worker's once its lease
lapsed, those a stopped worker handed back), and on SIGTERM or Ctrl-C it hands its runs back
so another takes them at once. --concurrency N is how many activity attempts it runs at once.
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
        help=(
            "the flowgen DuckDB file, or a postgresql:// URL (default: $FLOWGEN_DB, "
            "else ./flowgen.duckdb)"
        ),
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
        "--status",
        choices=RUN_STATUSES,
        metavar="STATUS",
        help=f"only runs with this status ({', '.join(RUN_STATUSES)})",
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
    ls.set_defaults(handler=cmd_ls)

    show = sub.add_parser(
        "show",
        help="one run's row and its history",
        description=(
            "Print one run's row and its history, event by event. A long history is "
            f"summarised: its event kinds counted, its first and last {SHOW_EVENTS} events "
            "printed; --all prints every event."
        ),
    )
    show.add_argument("id", metavar="ID", help="the workflow id")
    show.add_argument(
        "--run", metavar="RUN_ID", help="a specific run (default: the latest)"
    )
    show.add_argument(
        "--all", action="store_true", help="print every event of a long history"
    )
    show.add_argument(
        "--events",
        type=int,
        default=SHOW_EVENTS,
        metavar="N",
        help=f"of a long history, print the first and last N events (default: {SHOW_EVENTS})",
    )
    show.set_defaults(handler=cmd_show)

    sql = sub.add_parser(
        "sql",
        help="run a SQL query and print the result",
        description=(
            "Run a SQL query on the database: tables workflows, events and "
            "activity_calls; views activities, activity_attempts, timers, signals, "
            "signal_waits and children. Read-only: statements that would change the "
            "database are refused. On PostgreSQL, DuckDB answers it over a copy of the "
            "tables (flowgen mirror keeps one in a file)."
        ),
    )
    sql.add_argument("query", metavar="QUERY")
    sql.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="output format (default: table)",
    )
    sql.set_defaults(handler=cmd_sql)

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
            command.set_defaults(handler=cmd_signal)
        else:
            command.add_argument("--reason", default="", help="why (recorded)")
            command.set_defaults(handler=cmd_cancel)
        _add_imports(
            command, "import MODULE first, so the workflow reacts now (repeatable)"
        )

    schedules = sub.add_parser(
        "schedules",
        help="list the schedules: when they fire, their next firing and last run",
        description=(
            "List every schedule (engine.schedule(...)), by id: its workflow, cron "
            "expression or interval, overlap policy, whether it is paused (and the note "
            "given), when it next fires (UTC, jitter included), the id of the last run "
            "it started, and how many firings it skipped (the overlap policy, or missed "
            "while no engine ran)."
        ),
    )
    schedules.set_defaults(handler=cmd_schedules)

    schedule = sub.add_parser(
        "schedule",
        help="pause, unpause, trigger or delete a schedule",
        description=(
            "Pause a schedule (it starts nothing until unpaused), unpause it (it fires "
            "next at its first scheduled time after now; what came due while paused is "
            "not caught up), trigger it (start a run now, under its overlap policy; "
            "without a running application the trigger is recorded and the next engine "
            "that opens the database starts it), or delete it (the runs it started are "
            "left as they are). "
            "Through the running application when it serves this database, else on the "
            "database itself."
        ),
    )
    schedule.add_argument("action", choices=SCHEDULE_ACTIONS)
    schedule.add_argument("id", metavar="ID", help="the schedule id")
    schedule.add_argument(
        "--note", default="", help="why (stored, shown by `flowgen schedules`)"
    )
    schedule.set_defaults(handler=cmd_schedule)

    update = sub.add_parser(
        "update",
        help="send a workflow an update and print its result (each ARG is JSON)",
        description=UPDATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    update.add_argument("id", metavar="ID", help="the workflow id")
    update.add_argument("name", metavar="NAME", help="the update name")
    update.add_argument("args", metavar="ARG", nargs="*", help="an argument, as JSON")
    update.add_argument(
        "--update-id",
        default=None,
        help="the update's id: the same id again gets the same answer (default: fresh)",
    )
    update.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the handler's result (default: 60)",
    )
    update.set_defaults(handler=cmd_update)
    _add_imports(update, "import MODULE first, to run the update here (repeatable)")

    export = sub.add_parser(
        "export",
        help="write a Parquet snapshot of the tables and views",
        description=_EXPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("dir", metavar="DIR", help="the directory to write into")
    export.set_defaults(handler=cmd_export)

    check = sub.add_parser(
        "check-replay",
        help="replay stored histories against today's workflow code",
        description=_CHECK_REPLAY_HELP.format(details=DETAILS_SHOWN),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "target", metavar="MODULE:WORKFLOW", help="e.g. app.orders:process_order"
    )
    check.add_argument(
        "--status",
        choices=RUN_STATUSES,
        metavar="STATUS",
        help=f"only runs with this status ({', '.join(RUN_STATUSES)})",
    )
    check.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        # Not False: the global -v (before the command) must not be reset.
        default=argparse.SUPPRESS,
        help="list every run, those that replay too, and every divergence in full",
    )
    check.set_defaults(handler=cmd_check_replay)

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
        "--concurrency",
        dest="max_workers",
        type=int,
        default=8,
        metavar="N",
        help="activity attempts run at once, on threads (default: 8)",
    )
    worker.add_argument(
        "--lease",
        type=float,
        metavar="SECONDS",
        help="PostgreSQL: how long a run's lease lasts (default: 10); a dead worker's "
        "runs are taken over within lease + poll",
    )
    worker.add_argument(
        "--poll",
        type=float,
        metavar="SECONDS",
        help="PostgreSQL: how often to look for work when not notified (default: 1)",
    )
    worker.add_argument(
        "--share-activities",
        action="store_true",
        default=None,
        help="PostgreSQL: post activity attempts for any worker of the fleet to run",
    )
    worker.add_argument(
        "--queue",
        action="append",
        dest="queues",
        metavar="NAME",
        help="serve task queue NAME (repeatable; default: the 'default' queue)",
    )
    worker.set_defaults(handler=cmd_worker)
    add_lineage_commands(sub, _add_imports)

    mirror = sub.add_parser(
        "mirror",
        help="keep a DuckDB copy of a PostgreSQL database (for BI tools)",
        description=MIRROR_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mirror.add_argument(
        "--to",
        required=True,
        metavar="FILE",
        help="the DuckDB file to keep the copy in",
    )
    mirror.add_argument(
        "--follow",
        action="store_true",
        help="after catching up, keep copying what changes until Ctrl-C or SIGTERM",
    )
    mirror.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="with --follow: how often to copy what changed (default: 1)",
    )
    mirror.set_defaults(handler=cmd_mirror)
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
# Commands


def _cmd_demo(args: argparse.Namespace) -> int:
    from flowgen.cli.demo import run_demo

    if args.db:
        path = args.db
    else:
        path = str(Path(tempfile.mkdtemp(prefix="flowgen-demo-")) / "demo.duckdb")
    args.db_path = path
    return run_demo(path, out=sys.stdout)
