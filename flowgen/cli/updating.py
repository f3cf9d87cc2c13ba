"""``flowgen update ID NAME [ARG ...]``: send a workflow an update and print its result.

An update runs the workflow's validator and handler (``fg.on_update``), so it needs the
workflow's code: the command goes through the control socket to the application that holds
the file when one serves it (the usual case: `flowgen._runtime.control`). Otherwise it opens
the file itself and needs ``--import MODULE`` for the workflow's code; a handler that waits
for an activity or a timer then runs it here, driven by hand, until the update ends. On a
PostgreSQL database the command is a client of the fleet: the engine holding the run runs
the validator and handler (`flowgen._runtime.fleet_requests`), so no code is needed here.

Each ARG is JSON. The result is printed as one line of JSON. A rejected update (its
validator raised, or no such handler) records nothing and exits with 1, as do a failed
handler, a closed run and a timeout (``--timeout``, default 60 s; the update goes on, and
the same ``--update-id`` gets its answer later).
"""

from __future__ import annotations

import argparse
import json

from flowgen._stores.codec import encode
from flowgen._stores.protocol import LeasesRuns
from flowgen._vocabulary.errors import UnknownWorkflow
from flowgen._vocabulary.events import JsonValue
from flowgen.cli.common import (
    EXIT_OK,
    CommandError,
    json_argument,
    open_engine,
    through_engine,
    unknown,
)
from flowgen.cli.console import Output

__all__ = ["UPDATE_HELP", "cmd_update"]

UPDATE_HELP = """\
Send the workflow ID the update NAME with the arguments ARG (each one JSON: 'true',
'"text"', '{"amount": 10}') and print the handler's result as JSON.

The workflow's validator runs first, on its current state: if it rejects the update,
nothing is recorded and the command exits with 1, printing why. Otherwise the update is
recorded and the command waits for its handler (at most --timeout seconds; the update goes
on after that, and the same --update-id gets its answer later).

When an application holds the database, the update goes to it through its control socket.
Otherwise this command opens the database itself, and --import MODULE must load the
workflow's code (its handler then runs here, activities and timers included). On a
PostgreSQL database (--db postgresql://...) the engine of the fleet holding the run runs
the handler: no --import is needed.
"""


def cmd_update(args: argparse.Namespace) -> int:
    """``flowgen update ID NAME [ARG ...]``."""
    values = [json_argument(text, "each ARG") for text in args.args]
    if args.timeout is not None and not args.timeout >= 0:
        raise CommandError(f"--timeout must be seconds >= 0, got {args.timeout}")
    remote = through_engine(
        args,
        "update",
        id=args.id,
        name=args.name,
        arguments=values,
        update_id=args.update_id,
        timeout=args.timeout,
    )
    if remote is not None:
        result: JsonValue = remote["result"]  # type: ignore[index,call-overload]
    else:
        result = _update_here(args, values)
    Output().line(json.dumps(result))
    return EXIT_OK


def _update_here(args: argparse.Namespace, values: list[JsonValue]) -> JsonValue:
    """No application holds the file: open it here and run the handler, driven by hand."""
    engine = open_engine(args)
    try:
        record = engine.store.get_run(args.id)
        if record is None:
            raise unknown(args.id)
        # On a fleet's database the run's holder runs them: no code is needed here.
        if (
            not record.is_closed
            and not isinstance(engine.store, LeasesRuns)
            and record.name not in engine.registry.workflow_names
        ):
            raise CommandError(
                f"the code of workflow {record.name!r} is not loaded here, and an update "
                f"runs its validator and handler: pass --import MODULE (the module that "
                f"defines it), or send the update while your application holds the file"
            )
        value = engine.update(
            args.id,
            args.name,
            *values,
            update_id=args.update_id,
            timeout=args.timeout,
        )
        return encode(value, f"the result of update {args.name!r}")
    except UnknownWorkflow:
        raise unknown(args.id) from None
    except TimeoutError as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.close()
