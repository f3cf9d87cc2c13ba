"""The commands that make runs from runs and delete old ones: ``reset``, ``retry``, ``prune``.

``flowgen reset ID --event K`` and ``flowgen retry ID`` record a new run of ID (rules:
`flowgen._runtime.lineage`); ``flowgen prune --older-than 30d [--export-to DIR]`` deletes
old closed runs (rules: `flowgen._runtime.retention`). While an application holds the
DuckDB file, each goes through it (the control socket, `flowgen._runtime.control`), and
the new run starts there at once; otherwise the command opens the database itself, and a
new run whose code is not imported (``--import MODULE``) moves when the application next
opens it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from flowgen._runtime.control import prune_reply, relaunch_reply
from flowgen._runtime.retention import parse_age
from flowgen._vocabulary.errors import UnknownWorkflow
from flowgen.cli.common import EXIT_OK, CommandError, open_engine, through_engine
from flowgen.cli.console import Output

__all__ = ["add_lineage_commands", "cmd_prune", "cmd_reset", "cmd_retry"]

_RESET_HELP = """\
Start a new run of workflow ID whose history begins with events 0..K of its latest run
(the # column of `flowgen show ID`), copied, then runs live from there: what happened up
to K is not done again, everything after K is done anew by today's code. K inside one
step's decisions (say, between two activities one gather scheduled) moves back to the
event that step reacted to. The earlier run is kept; its row and events stay as they were.

Only a closed run can be reset: if ID's latest run still runs, terminate it first, or pass
--terminate. The new run's first event names its origin (origin_kind, origin_run_id,
origin_event): see the lineage query in docs/sql.md.

  flowgen reset order-1 --event 12
  flowgen reset order-1 --event 12 --run 5f3c...      # an older run of the id
"""

_RETRY_HELP = """\
Start a fresh run of workflow ID with the same arguments as its latest run (a closed one;
--terminate ends a running one first). The earlier run is kept; the new run's first event
names it (origin_kind = 'retry', origin_run_id).
"""

_PRUNE_HELP = """\
Delete the runs that closed longer ago than --older-than (30d, 12h, 90m, 45s, 2w): their
rows and all their events. Never a running run, nor a closed child whose parent still runs.
With --export-to DIR, each chunk of runs is first written to DIR/workflows-*.parquet and
DIR/events-*.parquet (the tables' columns; read them with any DuckDB:
duckdb -c "select * from 'DIR/events-*.parquet'"). On DuckDB the freed blocks are reused
by new rows after the CHECKPOINT prune runs (the file does not shrink); on PostgreSQL a
plain VACUUM makes the space reusable. Safe while an application runs: it goes through it.
"""


def add_lineage_commands(sub: Any, add_imports: Any) -> None:
    """Add ``reset``, ``retry`` and ``prune`` to the subcommands *sub*."""
    formatter = argparse.RawDescriptionHelpFormatter
    reset = sub.add_parser(
        "reset",
        help="a new run of a workflow that replays a closed run up to an event",
        description=_RESET_HELP,
        formatter_class=formatter,
    )
    reset.add_argument("id", metavar="ID", help="the workflow id")
    reset.add_argument(
        "--event",
        type=int,
        required=True,
        metavar="K",
        help="the last event to keep (the # of `flowgen show`)",
    )
    retry = sub.add_parser(
        "retry",
        help="a fresh run of a workflow with its closed run's arguments",
        description=_RETRY_HELP,
        formatter_class=formatter,
    )
    retry.add_argument("id", metavar="ID", help="the workflow id")
    for command, handler in ((reset, cmd_reset), (retry, cmd_retry)):
        command.add_argument(
            "--run", metavar="RUN_ID", help="which run (default: the latest)"
        )
        command.add_argument(
            "--terminate",
            action="store_true",
            help="terminate the id's running run first instead of refusing",
        )
        add_imports(command, "import MODULE first, so the new run starts now")
        command.set_defaults(handler=handler)
    prune = sub.add_parser(
        "prune",
        help="delete old closed runs (optionally exporting them to Parquet first)",
        description=_PRUNE_HELP,
        formatter_class=formatter,
    )
    prune.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="closed longer ago than this: 30d, 12h, 90m, 45s, 2w",
    )
    prune.add_argument(
        "--export-to", metavar="DIR", help="write the runs to Parquet files here first"
    )
    prune.set_defaults(handler=cmd_prune, imports=[])


def cmd_reset(args: argparse.Namespace) -> int:
    """``flowgen reset ID --event K [--run RUN_ID] [--terminate]``."""
    return _relaunch(args, "reset")


def cmd_retry(args: argparse.Namespace) -> int:
    """``flowgen retry ID [--run RUN_ID] [--terminate]``."""
    return _relaunch(args, "retry")


def _relaunch(args: argparse.Namespace, kind: str) -> int:
    fields: dict[str, Any] = {
        "id": args.id,
        "run": args.run,
        "terminate": args.terminate,
    }
    if kind == "reset":
        fields["event"] = args.event
    remote: Any = through_engine(args, kind, **fields)
    if remote is None:
        remote = _relaunch_here(args, kind, fields)
    out = Output()
    origin = remote["origin_run_id"]
    if kind == "reset":
        what = (
            f"run {remote['run_id']} of {args.id!r} reset from run {origin}: events "
            f"0..{remote['origin_event']} copied"
        )
    else:
        what = f"run {remote['run_id']} of {args.id!r} retries run {origin}"
    if remote["stuck"] is not None:
        out.line(f"{what}.")
        out.line(
            f"The code of workflow {remote['name']!r} is not loaded here, so it has not "
            f"moved yet: it will when a process that defines it next opens "
            f"{args.db_path} (or pass --import MODULE)."
        )
    else:
        out.line(f"{what}; it is now {remote['status']}.")
    return EXIT_OK


def _relaunch_here(
    args: argparse.Namespace, kind: str, fields: dict[str, Any]
) -> dict[str, Any]:
    engine = open_engine(args)
    try:
        if kind == "reset":
            handle = engine.reset(
                args.id,
                event_id=args.event,
                run_id=args.run,
                terminate=args.terminate,
            )
        else:
            handle = engine.retry(args.id, run_id=args.run, terminate=args.terminate)
        return relaunch_reply(engine, handle)
    except UnknownWorkflow as exc:
        raise CommandError(f"{exc} (see `flowgen ls`)") from None
    except (ValueError, TypeError) as exc:  # an event id out of range: nothing written
        raise CommandError(str(exc)) from None
    finally:
        engine.close()


def cmd_prune(args: argparse.Namespace) -> int:
    """``flowgen prune --older-than AGE [--export-to DIR]``."""
    try:
        parse_age(args.older_than)  # a bad AGE is refused before anything opens
    except ValueError as exc:
        raise CommandError(f"--older-than: {exc}") from None
    export = None if args.export_to is None else os.path.abspath(args.export_to)
    remote: Any = through_engine(
        args, "prune", older_than=args.older_than, export_to=export
    )
    if remote is None:
        engine = open_engine(args)
        try:
            remote = prune_reply(engine.prune(args.older_than, export_to=export))
        except ValueError as exc:  # an export directory that is a file: nothing deleted
            raise CommandError(str(exc)) from None
        finally:
            engine.close()
    out = Output()
    out.line(
        f"pruned {remote['runs']:,} run(s) ({remote['events']:,} events) that closed "
        f"before {remote['cutoff']} UTC."
    )
    if remote["files"]:
        out.line(f"exported to {args.export_to} first: {len(remote['files'])} files.")
    return EXIT_OK
