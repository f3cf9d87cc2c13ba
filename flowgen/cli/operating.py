"""The commands that act on runs: ``signal``, ``cancel``, ``worker`` and ``check-replay``.

``signal`` and ``cancel`` record a request (and, with ``--import``, let the workflow react
now); ``worker`` runs the unfinished workflows of the imported modules; ``check-replay``
replays stored histories against today's code. On a terminal, ``worker --until-done`` and
``check-replay`` show their progress on stderr; piped, they print only their results.
``check-replay`` prints a summary and the runs that diverged (``--verbose``: every run).
"""

from __future__ import annotations

import argparse
import inspect
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flowgen._core.dsl import workflow_definition
from flowgen._stores.protocol import FleetOptions, WorkflowRecord
from flowgen._stores.url import is_postgres_url
from flowgen._vocabulary.errors import (
    HistoryCorruptError,
    NonDeterminismError,
    UnknownWorkflow,
    WorkflowClosed,
)
from flowgen._vocabulary.limits import DEFAULT_TASK_QUEUE, check_task_queues
from flowgen.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    CommandError,
    existing_db,
    import_module,
    json_argument,
    open_engine,
    open_store,
    through_engine,
    unknown,
)
from flowgen.cli.console import Output, error

if TYPE_CHECKING:
    from flowgen._runtime.engine import Engine
    from flowgen._stores.duckdb_store import DuckDBStore
    from flowgen._stores.postgres_store import PostgresStore

__all__ = [
    "DETAILS_SHOWN",
    "cmd_cancel",
    "cmd_check_replay",
    "cmd_signal",
    "cmd_worker",
]

DETAILS_SHOWN = 10
"""How many divergence messages ``check-replay`` prints in full without ``--verbose``."""


def cmd_signal(args: argparse.Namespace) -> int:
    """``flowgen signal ID NAME [PAYLOAD]``."""
    payload = json_argument(args.payload, "PAYLOAD")
    remote = through_engine(args, "signal", id=args.id, name=args.name, payload=payload)
    if remote is not None:
        return _delivered_live(args, "signal", remote)
    return _deliver(args, "signal", lambda e: e.signal(args.id, args.name, payload))


def cmd_cancel(args: argparse.Namespace) -> int:
    """``flowgen cancel ID``."""
    remote = through_engine(args, "cancel", id=args.id, reason=args.reason)
    if remote is not None:
        return _delivered_live(args, "cancel", remote)
    return _deliver(args, "cancel", lambda e: e.cancel(args.id, args.reason))


def _done(args: argparse.Namespace, what: str) -> str:
    if what == "signal":
        return f"signal {args.name!r} recorded for workflow {args.id!r}"
    return f"cancel request recorded for workflow {args.id!r}"


def _delivered_live(args: argparse.Namespace, what: str, reply: Any) -> int:
    """Report a signal or cancel the running engine that holds the file took."""
    out = Output()
    done = _done(args, what)
    if reply["stuck"] is not None:
        out.line(f"{done}.")
        error(
            f"warning: the application that holds {args.db_path} cannot move workflow "
            f"{reply['name']!r} ({reply['stuck']}); it reacts once code that runs it "
            f"opens the file."
        )
    elif reply["status"] is None:  # the application was closing as it answered
        out.line(f"{done}; the application holding {args.db_path} took it.")
    else:
        out.line(
            f"{done}; the running application took it and the workflow is now "
            f"{reply['status']}."
        )
    return EXIT_OK


def _deliver(
    args: argparse.Namespace, what: str, send: Callable[[Engine], None]
) -> int:
    engine = open_engine(args)
    try:
        record = engine.store.get_run(args.id)
        if record is None:
            raise unknown(args.id)
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
        raise unknown(args.id) from None
    finally:
        engine.close()
    out = Output()
    done = _done(args, what)
    if not loaded:
        out.line(f"{done}.")
        out.line(
            f"The code of workflow {record.name!r} is not loaded here, so it has not reacted "
            f"yet: it will when a process that defines {record.name!r} next opens "
            f"{args.db_path} (or pass --import MODULE to have it react now)."
        )
    elif stuck is not None:
        out.line(f"{done}.")
        error(
            f"warning: the imported code of workflow {record.name!r} does not replay this "
            f"run's history, so the run cannot react ({type(stuck).__name__}: {stuck}). "
            f"It resumes from here once code that replays it opens {args.db_path}; "
            f"`flowgen check-replay MODULE:WORKFLOW` checks a fix."
        )
    elif status == "running":
        out.line(f"{done}; the workflow took it and is running.")
        out.line(
            "What it decided is recorded; the activities and timers it is waiting on run "
            f"when your application next opens {args.db_path}."
        )
    else:
        out.line(f"{done}; the workflow took it and is now {status}.")
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


def cmd_worker(args: argparse.Namespace) -> int:
    """``flowgen worker --import MODULE [--queue NAME] [--until-done [--timeout S]]``."""
    from flowgen._runtime.engine import Engine

    if args.timeout is not None and not args.until_done:
        raise CommandError("--timeout goes with --until-done")
    if args.timeout is not None and not args.timeout >= 0:  # nan would wait forever
        raise CommandError(f"--timeout must be seconds >= 0, got {args.timeout}")
    if args.max_workers < 1:
        raise CommandError(f"--max-workers must be >= 1, got {args.max_workers}")
    path = existing_db(args)
    fleet = _fleet_options(args, path)
    for module in args.imports:
        import_module(module)
    stop = threading.Event()
    # SIGTERM (a process manager stopping it) ends the loop like Ctrl-C does; only the main
    # thread may install a handler (main() may run on another, e.g. in a test).
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if on_main else None
    queues = args.queues or [DEFAULT_TASK_QUEUE]
    try:
        check_task_queues(queues)
    except TypeError as exc:
        raise CommandError(f"--queue: {exc}") from None
    engine = Engine(path, max_workers=args.max_workers, task_queues=queues, fleet=fleet)
    out = Output()
    try:
        names = engine.registry.workflow_names
        left = _running_of(engine, names)
        out.line(
            f"flowgen worker on {path}: {len(left)} unfinished run(s) of "
            f"{', '.join(sorted(names)) or 'no workflow'}",
            flush=True,
        )
        engine.start_background()
        if args.until_done:
            still = _run_until_done(engine, names, args.timeout, stop, out, len(left))
            if still is None:  # done
                out.line(
                    f"done: no run of the imported workflows is running in {path}."
                )
                return EXIT_OK
            if still:  # the timeout passed
                shown = ", ".join(repr(r.workflow_id) for r in still[:10])
                more = f" and {len(still) - 10} more" if len(still) > 10 else ""
                raise CommandError(
                    f"--timeout {args.timeout:g} s passed with {len(still)} run(s) still "
                    f"running: {shown}{more}; they resume when the file is opened next"
                )
        else:
            while not stop.wait(0.5):
                pass
        if is_postgres_url(path):
            out.line(
                "stopped: its runs are handed back to the fleet (another worker takes "
                "them at once, or the next one started)."
            )
        else:
            out.line(f"stopped: unfinished runs resume when {path} is opened next.")
        return EXIT_OK
    finally:
        engine.close()
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _fleet_options(args: argparse.Namespace, path: str) -> FleetOptions | None:
    """The worker's `FleetOptions` on PostgreSQL, else ``None``.

    From ``--lease``, ``--poll`` and ``--share-activities``, refused on a DuckDB file.
    """
    given = {
        name: value
        for name, value in (
            ("lease", args.lease),
            ("poll", args.poll),
            ("share_activities", args.share_activities),
        )
        if value is not None
    }
    if not is_postgres_url(path):
        if given:
            raise CommandError(
                f"--{' and --'.join(given).replace('_', '-')} apply to a fleet on "
                f"PostgreSQL "
                f"(--db postgresql://...), not to {path}"
            )
        return None
    try:
        return FleetOptions(**given)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _run_until_done(
    engine: Engine,
    names: Iterable[str],
    timeout: float | None,
    stop: threading.Event,
    out: Output,
    unfinished: int,
) -> list[WorkflowRecord] | None:
    """Wait until no run of *names* can move; show how many finished, on a terminal.

    Returns:
        ``None`` once done (the runs that cannot move here are reported), the runs still
        running when *timeout* passed, or ``[]`` if stopped (SIGTERM, Ctrl-C).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    stuck: dict[str, BaseException | None] = {}
    finished = 0
    with out.progress("finished runs", total=unfinished) as advance:
        # Polled, not pushed: a read of the runs' rows every half second is nothing next to
        # the work, and it sees what the engine committed whichever thread did it.
        while not stop.wait(0.5):
            left = _running_of(engine, names)
            # Children and continue-as-new runs join the count as they start.
            now = max(unfinished - len(left), finished)
            advance(now - finished, total=max(unfinished, now + len(left)))
            finished = now
            stuck = {r.workflow_id: engine.get(r.workflow_id).stuck() for r in left}
            if all(problem is not None for problem in stuck.values()):
                break
            if deadline is not None and time.monotonic() >= deadline:
                return left
        else:
            return []
    for workflow_id, problem in stuck.items():
        error(
            f"left {workflow_id!r}: it cannot move here "
            f"({type(problem).__name__}: {problem})"
        )
    return None


def _running_of(engine: Engine, names: Iterable[str]) -> list[WorkflowRecord]:
    wanted = set(names)
    return [r for r in engine.store.list_runs(status="running") if r.name in wanted]


def cmd_check_replay(args: argparse.Namespace) -> int:
    """``flowgen check-replay MODULE:WORKFLOW``: replay the stored runs on today's code."""
    module_name, sep, attr = args.target.partition(":")
    if not sep or not module_name or not attr:
        raise CommandError(
            f"expected MODULE:WORKFLOW (e.g. app.orders:process_order), got {args.target!r}"
        )
    path = existing_db(args)
    module = import_module(module_name)
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

    out = Output()
    store = open_store(args)
    try:
        runs = store.list_runs(name=name, status=args.status)
        runs.reverse()  # oldest first
        results: list[tuple[WorkflowRecord, str, str]] = []
        with out.progress("replaying", total=len(runs)) as advance:
            for record in runs:
                results.append((record, *_replay_one(store, fn, record)))
                advance()
    finally:
        store.close()
    which = f" with status {args.status!r}" if args.status else ""
    if not results:
        out.line(
            f"no stored runs of workflow {name!r}{which} in {path}: nothing to check"
        )
        return EXIT_OK
    failed = [result for result in results if result[1] != "ok"]
    out.line(f"replaying {len(results):,} stored run(s) of workflow {name!r}{which}:")
    listed = results if args.verbose else failed
    if listed:
        out.table(
            ("id", "run", "status", "replay"),
            [
                (r.workflow_id, r.run_id[:12], r.status, verdict)
                for r, verdict, _ in listed
            ],
        )
    detailed = failed if args.verbose else failed[:DETAILS_SHOWN]
    for record, verdict, message in detailed:
        out.line()
        out.line(f"{record.workflow_id} (run {record.run_id}) {verdict}:", style="bold")
        out.line("  " + message.replace("\n", "\n  "))
    if len(detailed) < len(failed):
        out.line()
        out.line(
            f"({len(failed) - len(detailed):,} more diverged runs are listed above "
            f"without their message; --verbose prints every message)"
        )
    out.line()
    out.line(
        f"{len(results) - len(failed):,} ok, {len(failed):,} diverged",
        style="bold red" if failed else "bold green",
    )
    return EXIT_ERROR if failed else EXIT_OK


def _replay_one(
    store: DuckDBStore | PostgresStore,
    fn: Callable[..., object],
    record: WorkflowRecord,
) -> tuple[str, str]:
    """(verdict, message) of replaying *record*'s stored history against *fn*."""
    from flowgen._runtime.stepper import check_replay

    try:
        check_replay(fn, store.load_history(record.workflow_id, record.run_id))  # type: ignore[arg-type]
    except NonDeterminismError as exc:
        return "DIVERGED", f"NonDeterminismError: {exc}"
    except HistoryCorruptError as exc:
        return "CORRUPT", f"HistoryCorruptError: {exc}"
    except Exception as exc:  # noqa: BLE001  # reported per run, like a divergence
        return "ERROR", f"{type(exc).__name__}: {exc}"
    return "ok", ""
