"""The engine: performs what workflows decide, records it, and survives crashes.

Theory of operation
===================

`Engine` is the public face: it checks and encodes what callers give it, turns each call
into an item for the *decision loop*, and waits for the answer. The loop
(`flowgen._runtime.loop`) owns every interpreter; it applies items in batches and commits
each batch in one transaction before acting on it, so nothing is acted on that is not
durable, and nothing acknowledged can be lost, even to ``kill -9``.

The other jobs each have a module that states its rules: the items and batches
(`items`), the queue they arrive by (`inbox`), the run table and how a failed batch is
undone (`runs`), the interpreter cache (`cache`), a batch's reads in bulk (`prefetch`),
work that crosses runs (`crossing`), activity attempts and retries (`attempts`), timers
(`timers`), where background work runs (`jobs`), recovery of unfinished runs on open
(`recovery`), and waiting for a result (`results`).

Threads: as a context manager the engine runs the decision loop, a timer thread and a pool of
activity threads in the background. Without it (``Engine(..., clock=ManualClock())``), no
thread is started: API calls process their own items, and `Engine.run_until_idle` runs
activities inline and jumps the manual clock from timer to timer.

State shared between threads, and its owner:

- the run table and the interpreter cache: the decision loop, under `DecisionLoop.lock`;
- the inbox: `Inbox`, a thread-safe queue: anyone puts, only the loop takes;
- the timer heap: `TimerHeap`, under its own lock; the job list and pool: `Jobs`, likewise;
- ``_running`` and ``_closed``: set only by the thread that calls `start_background` and
  `close`; other threads read them without a lock (a plain attribute read is atomic), and
  a stale read only delays a stop by one wait of the loop or timer thread;
- ``_failure``: set once, by the first background thread that dies (`Engine._died`); read
  without a lock by callers, who raise it. A dying thread stops the engine loudly: the
  other threads stop, it is logged as critical, and every caller, waiting or new, gets a
  `FlowgenError` naming the thread, caused by what killed it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flowgen._core.decisions import describe_argument
from flowgen._runtime.arguments import (
    call_arguments,
    run_filter,
    run_id_argument,
    seconds_argument,
    text_argument,
    workflow_id_argument,
)
from flowgen._runtime.cache import InterpreterCache
from flowgen._runtime.clock import Clock, ManualClock, SystemClock
from flowgen._runtime.control import ControlServer, open_waiting, serves
from flowgen._runtime.fleet import Fleet, join_fleet
from flowgen._runtime.fleet_requests import terminate_then_start
from flowgen._runtime.handle import WorkflowHandle
from flowgen._runtime.items import (
    CancelItem,
    Item,
    OnConflict,
    Query,
    SignalItem,
    Start,
    WorkflowFn,
)
from flowgen._runtime.jobs import Jobs
from flowgen._runtime.lineage_api import LineageMethods
from flowgen._runtime.loop import DecisionLoop
from flowgen._runtime.loop_thread import stop_handing_in
from flowgen._runtime.recovery import recover
from flowgen._runtime.registry import Registry
from flowgen._runtime.results import ResultWaiter
from flowgen._runtime.run_state_api import RunStateMethods
from flowgen._runtime.schedule_api import ScheduleMethods
from flowgen._runtime.schedules import Scheduler
from flowgen._runtime.stepper import Stepper
from flowgen._runtime.timers import TimerHeap
from flowgen._runtime.tracing import Telemetry
from flowgen._runtime.update_api import UpdateMethods
from flowgen._stores.codec import encode
from flowgen._stores.memory import MemoryStore
from flowgen._stores.permits import LocalPermits, SharesPermits
from flowgen._stores.protocol import FleetOptions, SpeaksSQL, Store, WorkflowRecord
from flowgen._vocabulary.errors import FlowgenError, UnknownWorkflow, UsageError
from flowgen._vocabulary.limits import DEFAULT_TASK_QUEUE, check_task_queues
from flowgen._vocabulary.retry import RetryPolicy
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:  # types only: OpenTelemetry is imported when tracing is on
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["Engine", "memory_engine"]

log = logging.getLogger("flowgen")

_JOIN_SECONDS = 10
"""How long `Engine.close` waits for each of its threads to stop."""

_FAILURE_POLL_SECONDS = 0.5
"""How often a caller waiting for an answer looks whether the engine has stopped."""


class Engine(ScheduleMethods, LineageMethods, UpdateMethods, RunStateMethods):
    """Runs workflows durably on an embedded store.

    ::

        with fg.Engine("orders.duckdb") as engine:       # background threads
            handle = engine.start(order, "o-1", id="order-o-1")
            handle.result(timeout=30)

        engine = fg.Engine(":memory:", clock=fg.testing.ManualClock())   # driven by hand
        engine.start(order, "o-2"); engine.run_until_idle(); engine.close()

    Args:
        path: A DuckDB file (created if missing), or ``":memory:"`` for a throwaway store.
            Commits go to ``<path>.journal`` first (see `DuckDBStore`); never copy or
            delete it on its own while it exists. Or a ``postgresql://`` URL: a
            `PostgresStore` (``pip install "flowgen-durable[postgres]"``).
        clock: Where time comes from; `SystemClock` by default. A `ManualClock` makes
            `run_until_idle` skip straight to the next timer.
        store: Use this store instead of opening *path*: a `MemoryStore` in tests, or a
            `DuckDBStore` opened with other options (``journal=False``).
        workflows: Workflow functions to register (decorated ones are found anyway).
        activities: Activity functions, or objects whose ``@fg.activity`` methods should
            run bound to them (how activities get shared resources).
        retry: The retry policy of activities that declare none.
        max_workers: Threads running activities in the background.
        cache_size: Live generators kept in memory; others are rebuilt by replay.
        max_batch: The most items one transaction takes (group commit).
        duckdb_threads: DuckDB's worker threads for a store the engine opens. One by
            default: a pool of workers costs every small transaction CPU (16 callers,
            one transaction per commit: 2.05 -> 1.67 CPU ms per workflow, sequential
            11.2 -> 9.3). For heavy analytics in the engine's process,
            ``engine.sql("SET threads = 4")`` or pass ``None``.
        activity_loop: A running event loop (in another thread) that ``async def``
            activities run on, so they may use its loop-bound resources; by default each
            attempt gets a fresh loop. `flowgen.aio.AsyncEngine` passes the loop it was
            entered on.
        tracing: Emit OpenTelemetry spans (``workflow <name>`` per run, ``activity
            <name>`` per attempt) and metrics; needs
            ``pip install "flowgen-durable[otel]"``. See `flowgen._runtime.tracing` and
            docs/observability.md.
        tracer_provider: Where spans go when tracing; the global provider by default.
        meter_provider: Where metrics go when tracing; the global provider by default.
        control_socket: Serve the ``flowgen`` command line over ``<path>.sock`` while
            the engine holds a DuckDB file (see `flowgen._runtime.control`).
        lock_timeout: Seconds to wait while another process (a ``flowgen`` command) has
            the file open, before raising `StoreLockedError`.
        task_queues: The task queues whose activities this engine runs
            (``@fg.activity(task_queue=...)``); ``["default"]`` by default, the queue of
            activities that name none. An activity of another queue waits here,
            recording nothing (`waiting_activities` lists it).
        fleet: On a ``postgresql://`` URL, how this engine takes part in the fleet of
            engines sharing the database (lease time, polling, whether it runs
            workflows); the defaults of `FleetOptions` if omitted. See
            `flowgen._runtime.fleet` and docs/postgres.md.

    Raises:
        TypeError: *task_queues* is a string, or holds something else than names.
        ValueError: *task_queues* is empty.
        StoreLockedError: Another process still held the file after *lock_timeout*.
        NotAFlowgenDatabase: The file is corrupt or belongs to another program.
        SchemaVersionError: The file was written by another flowgen schema version.
        ImportError: ``tracing=True`` without OpenTelemetry installed.
    """

    def __init__(
        self,
        path: str = ":memory:",
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        workflows: Sequence[WorkflowFn] = (),
        activities: Sequence[object] = (),
        retry: RetryPolicy | None = None,
        max_workers: int = 8,
        cache_size: int = 10_000,
        max_batch: int = 512,
        duckdb_threads: int | None = 1,
        activity_loop: asyncio.AbstractEventLoop | None = None,
        tracing: bool = False,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        control_socket: bool = True,
        lock_timeout: float = 10.0,
        task_queues: Iterable[str] = (DEFAULT_TASK_QUEUE,),
        fleet: FleetOptions | None = None,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise TypeError(f"max_workers must be an int, got {max_workers!r:.60}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        lock_timeout = seconds_argument(lock_timeout, "lock_timeout")
        if clock is not None and not all(
            callable(getattr(clock, m, None)) for m in ("now", "sleep_until")
        ):  # it failed at the first start(), with AttributeError
            raise TypeError(
                f"clock must be a Clock (now, sleep_until), got {clock!r:.60}"
            )
        if not tracing and (tracer_provider is not None or meter_provider is not None):
            raise ValueError("tracer_provider and meter_provider need tracing=True")
        served = check_task_queues(task_queues)
        self._telemetry = (
            Telemetry(tracer_provider, meter_provider) if tracing else None
        )
        self.path = path
        self.clock: Clock = clock if clock is not None else SystemClock()
        owns_store = store is None
        if store is None:
            store = open_waiting(
                path,
                duckdb_threads=duckdb_threads,
                lock_timeout=lock_timeout,
                fleet=fleet,
            )
        self.store: Store = store
        self.registry = Registry()
        self.registry.register(*workflows, *activities)
        self.retry_policy = retry if retry is not None else RetryPolicy()
        """The retry policy of activities that declare none."""
        self.max_workers = max_workers
        self.cache_size = cache_size
        self.max_batch = max_batch
        self._timers = TimerHeap(self.clock)
        self._jobs = Jobs(
            max_workers,
            lambda exc: self._died("activity", exc),
            activity_loop=activity_loop,
        )
        self._loop = DecisionLoop(
            store,
            self.registry,
            self.clock,
            self.retry_policy,
            timers=self._timers,
            jobs=self._jobs,
            cache_size=cache_size,
            max_batch=max_batch,
            permits=store.permits()
            if isinstance(store, SharesPermits)
            else LocalPermits(),
            task_queues=served,
            telemetry=self._telemetry,
        )
        self._results = ResultWaiter(
            self._loop,
            store,
            self.registry,
            self.clock,
            self._timers,
            background=lambda: self._running,
            drive=self.run_until_idle,
            waiting_for=self._waiting_for,
            failure=lambda: self._failure,
        )
        self._threads: list[threading.Thread] = []
        self._running = False
        self._closed = False
        self._failure: FlowgenError | None = None
        self._control: ControlServer | None = None
        self._fleet: Fleet | None = None
        try:
            self._fleet = join_fleet(store, self._loop, fleet, slots=max_workers)
            if self._fleet is None:
                recover(store, self._loop.process_locked)
            else:  # the free runs (a dead engine's, handed back), as recovery would
                self._loop.process_locked(self._fleet.look())
            self._schedules = Scheduler(self)
            if owns_store and control_socket and serves(path):
                self._control = ControlServer.start(self, path)
        except BaseException:
            if owns_store:  # release the file: the caller may well try again
                store.close()
            raise

    @property
    def commits(self) -> int:
        """Transactions committed so far (one per batch)."""
        return self._loop.commits

    @property
    def steps(self) -> int:
        """Events fed to workflows so far."""
        return self._loop.steps

    @property
    def _cache(self) -> InterpreterCache:
        return self._loop.cache

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Engine:
        self.start_background()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "background" if self._running else "by hand"
        with self._loop.lock:
            open_runs = len(self._loop.table.runs)
        return f"<flowgen.Engine {self.path!r} {open_runs} open run(s), {mode}>"

    def start_background(self) -> None:
        """Start the decision loop, the timer thread and the activity pool."""
        if self._closed:
            raise UsageError("this engine is closed")
        if self._running:
            return
        self._running = True
        # Work queued while driven by hand now goes to the pool.
        self._jobs.start()
        bodies: list[tuple[str, Callable[[], None]]] = [
            ("decision-loop", lambda: self._loop.run(self._is_running)),
            ("timer", lambda: self._timers.run(self._is_running, self._loop.inbox.put)),
            ("schedules", lambda: self._schedules.run(self._is_running)),
        ]
        fleet = self._fleet
        if fleet is not None and fleet.runs_workflows:
            bodies.append(
                ("fleet", lambda: fleet.run(self._is_running, self._loop.inbox.put))
            )
        for name, body in bodies:
            thread = threading.Thread(
                target=self._guarded,
                args=(name, body),
                name=f"flowgen-{name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._loop.gate.poke()  # attempts waiting for a shared permit: poll from now on

    def _is_running(self) -> bool:
        return self._running and self._failure is None

    def _guarded(self, name: str, body: Callable[[], None]) -> None:
        """Run a background thread's *body*; if it dies, the engine stops loudly."""
        try:
            body()
        except BaseException as exc:  # noqa: BLE001  # reported to every caller
            self._died(name, exc)

    def _died(self, name: str, exc: BaseException) -> None:
        """A background thread died of *exc*: stop the engine and tell every caller."""
        if self._failure is None:
            error = FlowgenError(f"the engine stopped: its {name} thread died: {exc!r}")
            error.__cause__ = exc
            self._failure = error
            log.critical(
                "flowgen: the %s thread died; the engine stops: %r",
                name,
                exc,
                exc_info=exc,
            )
        self._loop.inbox.stop()  # the other threads stop
        self._timers.wakeup.set()
        self._schedules.wakeup.set()
        if self._fleet is not None:
            self._fleet.wake()
        self._fail_queued()
        with self._loop.closed:
            self._loop.closed.notify_all()

    def _fail_queued(self) -> None:
        """Answer every item still queued with the engine's failure (nothing of it ran)."""
        error = self._failure
        if error is None:
            return
        for item in self._loop.inbox.drain():
            if item.future is not None and not item.future.done():
                item.future.set_exception(error)

    def close(self) -> None:
        """Stop the threads and release the store. Unfinished runs resume on the next open."""
        if self._closed:
            return
        self._closed = True
        if self._control is not None:  # first: no request may reach a closing engine
            self._control.close()
        if self._running:
            self._running = False
            self._loop.inbox.stop()
            self._timers.wakeup.set()
            self._schedules.wakeup.set()
            if self._fleet is not None:
                self._fleet.wake()
            for thread in self._threads:
                thread.join(timeout=_JOIN_SECONDS)
            stop_handing_in(self._loop, _JOIN_SECONDS)
            self._jobs.stop()
        if self._fleet is not None:  # nothing commits any more: give the runs back
            self._fleet.close()
        # A call racing close() may have queued its item behind the stop marker: answer it
        # rather than leave its caller waiting forever. Nothing of it was written.
        for item in self._loop.inbox.drain():
            if item.future is not None and not item.future.done():
                item.future.set_exception(
                    UsageError("the engine closed before this call ran")
                )
        self._loop.updates.abandon(
            UsageError(
                "the engine closed before the update finished; it resumes when the file "
                "is reopened (call update() again with the same update_id)"
            )
        )
        self.store.close()

    # -- public API -----------------------------------------------------------------------------

    def start(
        self,
        workflow: WorkflowFn | str,
        *args: object,
        id: str | None = None,  # noqa: A002  # the contract's name: engine.start(..., id=...)
        on_conflict: OnConflict = "fail",
        tags: dict[str, object] | None = None,
        **kwargs: object,
    ) -> WorkflowHandle:
        """Start a workflow run; it is durable when this returns.

        Args:
            workflow: The workflow function, or its registered name.
            *args: Positional arguments (serializable).
            id: The workflow id (a non-empty `str`); a fresh one if omitted.
            on_conflict: If a workflow with this id exists: ``"fail"`` raises
                `WorkflowAlreadyExists`, ``"use_existing"`` returns its handle,
                ``"terminate_existing"`` ends a running one and starts anew (on a
                PostgreSQL fleet, through the engine that holds it: the start waits
                for its end).
            tags: Searchable tags for the ``workflows.tags`` column.
            **kwargs: Keyword arguments (serializable).

        Returns:
            A handle on the run.

        Raises:
            UnknownWorkflow: No workflow of that name is registered.
            TypeError: An argument cannot be serialized (the message names it).
            WorkflowAlreadyExists: The id is taken and ``on_conflict="fail"``.
        """
        item = self._start_item(workflow, args, kwargs, id, on_conflict, tags)
        answer = self._submit_starts([item])[0]
        if isinstance(answer, BaseException):
            raise answer
        return self._handle(answer)

    def start_many(
        self,
        workflow: WorkflowFn | str,
        arguments: Iterable[Sequence[object]],
        *,
        ids: Sequence[str] | None = None,
        on_conflict: OnConflict = "fail",
        tags: dict[str, object] | None = None,
    ) -> list[WorkflowHandle]:
        """Start many runs of one workflow at once, sharing transactions (group commit).

        ``engine.start_many(order, [("o-1",), ("o-2",)], ids=["order-1", "order-2"])``.
        Every argument is checked before anything is written.

        Args:
            workflow: The workflow function, or its registered name.
            arguments: One tuple of positional arguments per run.
            ids: The workflow ids, one per run; fresh ones if omitted.
            on_conflict: As for `start`, applied to each run.
            tags: Tags given to every run.

        Returns:
            A handle per run, in order.

        Raises:
            The first error any start raised (e.g. `WorkflowAlreadyExists`), after every
            other run was started.
        """
        argument_list = [tuple(args) for args in arguments]
        if ids is not None and len(ids) != len(argument_list):
            raise ValueError(
                f"start_many: {len(ids)} ids for {len(argument_list)} runs"
            )
        items = [
            self._start_item(
                workflow, args, {}, ids[i] if ids else None, on_conflict, tags
            )
            for i, args in enumerate(argument_list)
        ]
        results = self._submit_starts(items)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return [self._handle(r) for r in results]

    def signal_with_start(
        self,
        workflow: WorkflowFn | str,
        *args: object,
        id: str,  # noqa: A002
        signal: str,
        payload: object = None,
        **kwargs: object,
    ) -> WorkflowHandle:
        """Signal the workflow *id*, starting it first if it is not running (atomically)."""
        item = self._start_item(workflow, args, kwargs, id, "use_existing", None)
        item.signal = (
            text_argument(signal, "the signal name"),
            encode(payload, f"payload of signal {signal!r}"),
        )
        return self._handle(self._submit(item))

    def get(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an existing workflow id.

        Raises:
            UnknownWorkflow: No run has this id.
            TypeError, ValueError: *workflow_id* is no workflow id (see `start`).
        """
        record = self.store.get_run(workflow_id_argument(workflow_id))
        if record is None:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
        return WorkflowHandle(self, workflow_id, record.run_id)

    def signal(self, workflow_id: str, name: str, payload: object = None) -> None:
        """Send a signal; it is durable when this returns, and buffered until waited for.

        Raises:
            UnknownWorkflow: No run has this id.
            WorkflowClosed: The run has finished.
            TypeError: The payload cannot be serialized.
            TypeError, ValueError: *workflow_id* is no workflow id (see `start`).
        """
        workflow_id_argument(workflow_id)
        encoded = encode(payload, f"payload of signal {name!r}")
        if not name:
            raise UsageError(f"a signal name must be a non-empty string, got {name!r}")
        name = text_argument(name, "the signal name")
        self._submit(SignalItem(workflow_id, name, encoded))

    def cancel(self, workflow_id: str, reason: str = "") -> None:
        """Cancel a run: `Cancelled` is thrown at its current yield (children cancelled too).

        Raises:
            UnknownWorkflow: No run has this id.
            WorkflowClosed: The run has finished.
            TypeError, ValueError: *workflow_id* is no workflow id (see `start`).
        """
        workflow_id_argument(workflow_id)
        self._submit(
            CancelItem(workflow_id, text_argument(reason, "the cancel reason"))
        )

    def query(self, workflow_id: str, name: str, *args: object) -> object:
        """Answer a query from the run's current state, recording nothing.

        Raises:
            UnknownWorkflow: No run has this id.
            LookupError: The workflow registered no handler of that name.
            TypeError, ValueError: *workflow_id* is no workflow id (see `start`).
        """
        return self._submit(Query(workflow_id_argument(workflow_id), name, args))

    def sql(self, query: str, params: object = None) -> Any:
        """Run SQL on the engine's own DuckDB connection; returns a DuckDB relation.

        ``engine.sql("select name, count(*) from activities group by all").df()``
        """
        if not isinstance(self.store, SpeaksSQL):
            raise UsageError(
                "this engine's store does not speak SQL (use a DuckDB store)"
            )
        return self.store.sql(query, params)

    def replay(self, workflow_id: str, run_id: str | None = None) -> Stepper[object]:
        """A `Stepper` over a stored run, positioned at its start, for time travel."""
        record = self.store.get_run(
            workflow_id_argument(workflow_id), run_id_argument(run_id)
        )
        if record is None:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
        definition = self.registry.workflow(record.name)
        history = self.store.load_history(record.workflow_id, record.run_id)
        return Stepper.from_history(definition.fn, history)

    def _on_closed(
        self, workflow_id: str, callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Call *callback* on the loop's thread when a run of *workflow_id* next closes.

        What `flowgen.aio` waits on instead of a thread; see `ResultWaiter.on_closed`.
        Returns the function that withdraws the callback.
        """
        return self._results.on_closed(workflow_id, callback)

    def register(self, *items: object) -> None:
        """Register workflows, activities, or objects with activity methods."""
        self.registry.register(*items)

    def override_activity(
        self, activity: str | Callable[..., object], fake: Callable[..., object]
    ) -> None:
        """In a test: run *fake* wherever a workflow calls *activity* (or its name).

        The attempt keeps the activity's retry policy and timeout; see `Registry.resolve`.
        """
        self.registry.override(activity, fake)

    def run_until_idle(self, *, max_steps: int | None = None) -> int:
        """Drive a hand-driven engine until nothing is left to do now.

        Runs queued activities inline, fires due timers and schedules, and with a
        `ManualClock` (autojump on) jumps the clock to the next timer, so sleeps of days
        finish at once. The autojump skips to workflow timers only, never to a schedule's
        next firing (there is always one): move the clock to fire schedules.

        Args:
            max_steps: Stop after this many rounds (a guard against workflows that never
                settle); ``None`` for no limit.

        Returns:
            How many rounds of work were done.
        """
        if self._closed:  # it would pump a closed store, and say it did work
            raise UsageError("this engine is closed")
        if self._running:
            raise UsageError(
                "run_until_idle() is for engines driven by hand, not in a `with` block"
            )
        rounds = 0
        self._loop.gate.poke()  # permits other engines gave back meanwhile
        while max_steps is None or rounds < max_steps:
            rounds += 1
            if (
                self._loop.pump()
                or self._jobs.run_waiting()
                or self._schedules.fire_due()
            ):
                continue
            fleet = self._fleet  # hand-driven: look for the fleet's work on this thread
            if fleet is not None and (
                fleet.pump(self._loop.inbox.put) or self._jobs.run_waiting()
            ):
                continue
            due = self._timers.pop_due()
            for item in due:
                self._loop.inbox.put(item)
            if due:
                continue
            clock = self.clock
            if isinstance(clock, ManualClock) and clock.autojump:
                next_due = self._timers.next_due()
                if next_due is not None:
                    clock.set(next_due)
                    continue
            break
        return rounds

    def list_runs(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        tags: dict[str, object] | None = None,
        limit: int | None = 100,
    ) -> list[WorkflowRecord]:
        """Runs, newest first, filtered by status, workflow name and tag values.

        Args:
            status: Only runs with this status (a `RunStatus` or its string).
            name: Only runs of this workflow name.
            tags: Only runs whose tags have these values.
            limit: At most this many (the newest); ``None`` for all of them.

        Raises:
            ValueError: *status* is no run status, or *limit* is below 1.
            TypeError: A filter of the wrong type (the message names it).
        """
        status, name, encoded, limit = run_filter(status, name, tags, limit)
        return self.store.list_runs(status=status, name=name, tags=encoded, limit=limit)

    # -- submitting items ---------------------------------------------------------------------

    def _start_item(
        self,
        workflow: WorkflowFn | str,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        workflow_id: str | None,
        on_conflict: OnConflict,
        tags: dict[str, object] | None,
    ) -> Start:
        if workflow_id is not None:
            workflow_id_argument(workflow_id)
        if on_conflict not in ("fail", "use_existing", "terminate_existing"):
            raise ValueError(
                f"on_conflict must be 'fail', 'use_existing' or 'terminate_existing', got {on_conflict!r}"
            )
        definition = self.registry.workflow(workflow)
        call_arguments(definition.fn, args, kwargs, f"workflow {definition.name!r}")
        encoded_args = [
            encode(
                a,
                f"{describe_argument(definition.fn, i)} of workflow {definition.name!r}",
            )
            for i, a in enumerate(args)
        ]
        encoded_kwargs = {
            k: encode(v, f"argument {k!r} of workflow {definition.name!r}")
            for k, v in kwargs.items()
        }
        encoded_tags = {
            text_argument(k, "a tag name"): encode(v, f"tag {k!r}")
            for k, v in (tags or {}).items()
        }
        run_id = uuid.uuid4().hex
        record = WorkflowRecord(
            workflow_id=workflow_id or f"{definition.name}-{uuid.uuid4().hex}",
            run_id=run_id,
            name=definition.name,
            status=RunStatus.RUNNING,
            args=encoded_args,
            kwargs=encoded_kwargs,
            started_at=self.clock.now(),
            tags=encoded_tags,
        )
        return Start(
            record,
            definition.fn,
            on_conflict,
            fresh_id=workflow_id is None,
            trace_parent=(
                self._telemetry.caller_context() if self._telemetry else None
            ),
        )

    def _submit(self, item: Item) -> object:
        answer = self._submit_many([item])[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _submit_many(self, items: Sequence[Item]) -> list[object]:
        """Queue *items* and wait for their answers: a result, or the exception raised."""
        if self._closed:
            raise UsageError("this engine is closed")
        if self._failure is not None:
            raise self._failure
        futures: list[Future[object]] = []
        for item in items:
            item.future = Future()
            futures.append(item.future)
            self._loop.inbox.put(item)
        # Queued after a thread died? Then _died's sweep may have missed them: sweep again.
        self._fail_queued()
        if not self._running:
            self._loop.pump()
        return [self._answer(future) for future in futures]

    def _submit_starts(self, items: Sequence[Item]) -> list[object]:
        """`_submit_many` for starts: a fleet's run held elsewhere is terminated there."""
        answers = self._submit_many(items)
        if self._fleet is None:
            return answers
        return terminate_then_start(self._submit_many, self.store, items, answers)

    def _answer(self, future: Future[object]) -> object:
        """What *future* holds (the exception, if it failed), or the engine's failure."""
        while True:
            try:
                error = future.exception(timeout=_FAILURE_POLL_SECONDS)
            except TimeoutError:
                if self._failure is not None:
                    raise self._failure from None
                continue
            return error if error is not None else future.result()

    @staticmethod
    def _check_id(value: object) -> str:
        return workflow_id_argument(value)

    def _handle(self, answer: object) -> WorkflowHandle:
        """The handle on the run a start item was answered with."""
        assert isinstance(answer, tuple)
        workflow_id, run_id = answer
        return WorkflowHandle(self, workflow_id, run_id)


def memory_engine(**kwargs: Any) -> Engine:
    """An engine on a `MemoryStore` (no SQL): the fastest throwaway engine, for tests."""
    return Engine(store=MemoryStore(), **kwargs)
