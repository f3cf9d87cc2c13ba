"""The engine: performs what workflows decide, records it, and survives crashes.

Theory of operation
===================

One *decision loop* owns every interpreter (and so every live generator). Everything that
happens to a run reaches it as an *item* in one inbox: a start, a signal, a cancel, an
activity's outcome from a worker thread, a timer that came due. The loop takes every item
waiting (up to ``max_batch``), feeds each to its run's interpreter, and gathers the events
and row changes of all of them into one `Batch`, which the store commits in **one
transaction** (group commit: ~2 ms of DuckDB CPU shared by every step in it). Only after
the commit does the engine act: submit activities, arm timers, answer callers. So nothing is
acted on that is not durable, and nothing acknowledged (a start, a signal, a result) can be
lost, even to ``kill -9``.

Work that crosses runs stays in the same transaction: a child's start, a signal one
workflow sends another, a child's result delivered to its parent, a cancel propagated to a
child, the next run of a continue-as-new. They are queued as items of the batch being built.

If the commit fails, nothing of the batch was written: the interpreters it touched are
dropped (they are rebuilt from the store by replay), callers get the error, and outcomes
from workers are queued again.

Interpreters live in a bounded LRU cache; an evicted run is rebuilt by replaying its stored
history when its next item arrives. Opening an existing file *recovers* every unfinished
run the same way and resumes what it was waiting for: activities in flight run again
(at-least-once; `activity_info().idempotency_key` lets them deduplicate), timers keep their
recorded due times, buffered signals stay buffered.

Threads: as a context manager the engine runs the decision loop, a timer thread and a pool of
activity threads in the background. Without it (``Engine(..., clock=ManualClock())``), no
thread is started: API calls process their own items, and `Engine.run_until_idle` runs
activities inline and jumps the manual clock from timer to timer.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

import attrs

from flowgen._core.dsl import parameter_types, workflow_return_type
from flowgen._core.interpreter import Interpreter, Step, error_info
from flowgen._runtime.clock import Clock, ManualClock, SystemClock
from flowgen._runtime.handle import WorkflowHandle
from flowgen._runtime.invoke import ActivityInfo, ActivityTimeout, run_attempt
from flowgen._runtime.registry import Registry, _needs_instance
from flowgen._stores.codec import CODEC, check_text, decode, encode
from flowgen._stores.locations import open_store
from flowgen._stores.memory import MemoryStore
from flowgen._stores.protocol import Batch, EventRow, RunUpdate, Store, WorkflowRecord
from flowgen._vocabulary.commands import (
    ActivityOptions,
    CallActivity,
    RecordSideEffect,
    SendSignal,
    StartChild,
    WaitSignal,
)
from flowgen._vocabulary.errors import (
    ErrorInfo,
    FlowgenError,
    HistoryCorruptError,
    NonDeterminismError,
    StoreError,
    UnknownActivity,
    UnknownWorkflow,
    UsageError,
    WorkflowAlreadyExists,
    WorkflowClosed,
    WorkflowFailed,
)
from flowgen._vocabulary.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CancelRequested,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    CommandCancelled,
    Event,
    JsonValue,
    SideEffectRecorded,
    SignalReceived,
    SignalSendFailed,
    SignalSent,
    SignalTimedOut,
    SignalWaitStarted,
    TagsSet,
    TimerFired,
    TimerStarted,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowErrored,
    WorkflowStarted,
    WorkflowTerminated,
)
from flowgen._vocabulary.retry import RetryPolicy

__all__ = ["Engine"]

log = logging.getLogger("flowgen")

# How long the decision loop waits with nothing to do, after a commit, before it asks the
# store to flush (long enough that a busy engine never does it between two steps).
_IDLE_FLUSH_SECONDS = 0.2

WorkflowFn = Callable[..., Generator[Any, Any, object]]
OnConflict = Literal["fail", "use_existing", "terminate_existing"]
_Key = tuple[str, str]  # (workflow_id, run_id)

_RECENT_OUTCOMES = 1024
"""How many closed runs' outcomes the engine keeps for `WorkflowHandle.result`."""

_STATUS_OF_END: dict[type, str] = {
    WorkflowCompleted: "completed",
    WorkflowErrored: "failed",
    WorkflowCancelled: "cancelled",
    WorkflowContinuedAsNew: "continued_as_new",
    WorkflowTerminated: "terminated",
}


@attrs.define(eq=False)
class _Run:
    """What the engine keeps about a run besides its (evictable) interpreter."""

    workflow_id: str
    run_id: str
    name: str
    fn: WorkflowFn | None
    next_event_id: int = 0
    signals: int = 0
    status: str = "running"
    tags: dict[str, JsonValue] = attrs.field(factory=dict)
    parent_id: str | None = None
    cancel_requested: bool = False
    stuck: BaseException | None = None

    @property
    def key(self) -> _Key:
        return (self.workflow_id, self.run_id)


# ---------------------------------------------------------------------------------------------
# Items: everything that reaches the decision loop.


@attrs.define(eq=False)
class _Item:
    future: Future[object] | None = attrs.field(default=None, kw_only=True)


@attrs.define(eq=False)
class _Txn:
    """What one batch builds, item by item, before its single commit.

    Attributes:
        batch: The rows the transaction writes.
        effects: What to do once it is committed (start activities, arm timers).
        work: The items to apply; work that crosses runs is appended as it appears.
        snapshots: Each touched run as it was before, to undo the batch if it fails.
    """

    # Every run id the engine writes is a fresh uuid4 (see Batch.fresh_run_ids).
    batch: Batch = attrs.field(factory=lambda: Batch(fresh_run_ids=True))
    effects: list[Callable[[], None]] = attrs.field(factory=list)
    work: list[_Item] = attrs.field(factory=list)
    snapshots: dict[_Key, _Run | None] = attrs.field(factory=dict)


@attrs.define(eq=False)
class _Start(_Item):
    record: WorkflowRecord
    fn: WorkflowFn
    on_conflict: OnConflict = "fail"
    signal: tuple[str, JsonValue] | None = None
    parent: tuple[_Key, int] | None = None  # a child's (parent run, seq)
    # The id was made here from a fresh uuid4 (122 random bits): no stored run can have
    # it, so the read that looks for one is skipped (~1 ms of a sequential start).
    fresh_id: bool = False


@attrs.define(eq=False)
class _Feed(_Item):
    """An incoming event for the current run of a workflow id (or a specific run)."""

    workflow_id: str
    run_id: str | None
    event: Event
    strict: bool = False  # raise to the caller if the run is closed (signals, cancels)


@attrs.define(eq=False)
class _SignalItem(_Item):
    workflow_id: str
    name: str
    payload: JsonValue
    sender: str | None = None


@attrs.define(eq=False)
class _CancelItem(_Item):
    workflow_id: str
    reason: str


@attrs.define(eq=False)
class _Due(_Item):
    """A timer-heap entry that came due: the loop decides what it means now."""

    kind: str
    key: _Key
    seq: int
    attempt: int = 0


@attrs.define(eq=False)
class _Recover(_Item):
    record: WorkflowRecord
    history: list[Event]


@attrs.define(eq=False)
class _Query(_Item):
    workflow_id: str
    name: str
    args: tuple[object, ...]


@attrs.define(eq=False)
class _Call(_Item):
    """Run a function on the decision loop (for reads of interpreter state)."""

    fn: Callable[[], object]


# ---------------------------------------------------------------------------------------------


class Engine:
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
            `PostgresStore` (``pip install "flowgen[postgres]"``).
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

    Raises:
        StoreLockedError: Another process holds the file.
        NotAFlowgenDatabase: The file is corrupt or belongs to another program.
        SchemaVersionError: The file was written by another flowgen schema version.
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
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.path = path
        self.clock: Clock = clock if clock is not None else SystemClock()
        owns_store = store is None
        if store is None:
            store = open_store(path, duckdb_threads=duckdb_threads)
        self.store: Store = store
        self.registry = Registry()
        self.registry.register(*workflows, *activities)
        self.retry = retry if retry is not None else RetryPolicy()
        self.max_workers = max_workers
        self.cache_size = cache_size
        self.max_batch = max_batch
        self.commits = 0
        self.steps = 0

        self._runs: dict[_Key, _Run] = {}
        self._current: dict[str, str] = {}  # workflow id -> run id of its latest run
        self._cache: OrderedDict[_Key, Interpreter] = OrderedDict()
        self._child_links: dict[str, tuple[_Key, int]] = {}
        self._inbox: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._lock = threading.RLock()  # held while items are processed
        self._closed_cv = threading.Condition()
        self._timers: list[tuple[datetime, int, _Due]] = []
        self._timer_lock = threading.Lock()
        self._timer_wakeup = threading.Event()
        self._counter = itertools.count()
        self._manual_work: list[Callable[[], None]] = []
        self._just_closed: list[_Key] = []
        # The stored runs of the ids this batch's starts use, read in one go.
        self._prefetched: dict[str, WorkflowRecord | None] = {}
        # The histories of the evicted runs this batch wakes, read in one go.
        self._histories: dict[_Key, list[Event]] = {}
        # How runs closed in the batch being built ended, and how the last few committed
        # ones did, by workflow id: `handle.result()` answers from here without a read.
        self._closing: dict[_Key, tuple[str, str, JsonValue, ErrorInfo | None]] = {}
        self._recent: OrderedDict[
            str, tuple[str, str, str, JsonValue, ErrorInfo | None]
        ] = OrderedDict()
        # Child links changed in the batch being built, with their previous values: an
        # undone batch puts them back.
        self._link_log: list[tuple[str, tuple[_Key, int] | None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._running = False
        self._closed = False
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        try:
            self._recover()
        except BaseException:
            if owns_store:  # release the file: the caller may well try again
                store.close()
            raise

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Engine:
        self.start_background()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "background" if self._running else "by hand"
        return f"<flowgen.Engine {self.path!r} {len(self._runs)} open run(s), {mode}>"

    def start_background(self) -> None:
        """Start the decision loop, the timer thread and the activity pool."""
        if self._closed:
            raise UsageError("this engine is closed")
        if self._running:
            return
        self._running = True
        self._pool = ThreadPoolExecutor(
            self.max_workers, thread_name_prefix="flowgen-activity"
        )
        for target, name in (
            (self._decision_loop, "flowgen-decisions"),
            (self._timer_loop, "flowgen-timers"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        # Work queued while driven by hand now goes to the pool.
        work, self._manual_work = self._manual_work, []
        for job in work:
            self._pool.submit(job)

    def close(self) -> None:
        """Stop the threads and release the store. Unfinished runs resume on the next open."""
        if self._closed:
            return
        self._closed = True
        if self._running:
            self._running = False
            self._inbox.put(None)
            self._timer_wakeup.set()
            for thread in self._threads:
                thread.join(timeout=10)
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
        # A call racing close() may have queued its item behind the stop marker: answer it
        # rather than leave its caller waiting forever. Nothing of it was written.
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is not None and item.future is not None and not item.future.done():
                item.future.set_exception(
                    UsageError("the engine closed before this call ran")
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
            id: The workflow id; a fresh one if omitted.
            on_conflict: If a workflow with this id exists: ``"fail"`` raises
                `WorkflowAlreadyExists`, ``"use_existing"`` returns its handle,
                ``"terminate_existing"`` ends a running one and starts anew.
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
        result = self._submit(item)
        assert isinstance(result, WorkflowHandle)
        return result

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
        results = self._submit_many(items)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return [r for r in results if isinstance(r, WorkflowHandle)]

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
            check_text(signal, "the signal name"),
            encode(payload, f"payload of signal {signal!r}"),
        )
        result = self._submit(item)
        assert isinstance(result, WorkflowHandle)
        return result

    def get(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an existing workflow id.

        Raises:
            UnknownWorkflow: No run has this id.
        """
        record = self.store.get_run(workflow_id)
        if record is None:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
        return WorkflowHandle(self, workflow_id, record.run_id)

    def signal(self, workflow_id: str, name: str, payload: object = None) -> None:
        """Send a signal; it is durable when this returns, and buffered until waited for.

        Raises:
            UnknownWorkflow: No run has this id.
            WorkflowClosed: The run has finished.
            TypeError: The payload cannot be serialized.
        """
        encoded = encode(payload, f"payload of signal {name!r}")
        if not name:
            raise UsageError(f"a signal name must be a non-empty string, got {name!r}")
        check_text(name, "the signal name")
        self._submit(_SignalItem(workflow_id, name, encoded))

    def cancel(self, workflow_id: str, reason: str = "") -> None:
        """Cancel a run: `Cancelled` is thrown at its current yield (children cancelled too).

        Raises:
            UnknownWorkflow: No run has this id.
            WorkflowClosed: The run has finished.
        """
        self._submit(_CancelItem(workflow_id, check_text(reason, "the cancel reason")))

    def query(self, workflow_id: str, name: str, *args: object) -> object:
        """Answer a query from the run's current state, recording nothing.

        Raises:
            UnknownWorkflow: No run has this id.
            LookupError: The workflow registered no handler of that name.
        """
        return self._submit(_Query(workflow_id, name, args))

    def sql(self, query: str, params: object = None) -> Any:
        """Run SQL on the engine's own DuckDB connection; returns a DuckDB relation.

        ``engine.sql("select name, count(*) from activities group by all").df()``
        """
        sql = getattr(self.store, "sql", None)
        if sql is None:
            raise UsageError(
                "this engine's store does not speak SQL (use a DuckDB store)"
            )
        return sql(query, params)

    def replay(self, workflow_id: str, run_id: str | None = None) -> Any:
        """A `Stepper` over a stored run, positioned at its start, for time travel."""
        from flowgen._runtime.stepper import Stepper

        record = self.store.get_run(workflow_id, run_id)
        if record is None:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
        definition = self.registry.workflow(record.name)
        history = self.store.load_history(record.workflow_id, record.run_id)
        return Stepper.from_history(definition.fn, history)

    def register(self, *items: object) -> None:
        """Register workflows, activities, or objects with activity methods."""
        self.registry.register(*items)

    def run_until_idle(self, *, max_steps: int | None = None) -> int:
        """Drive a hand-driven engine until nothing is left to do now.

        Runs queued activities inline, fires due timers, and with a `ManualClock` (autojump
        on) jumps the clock to the next timer, so sleeps of days finish at once.

        Args:
            max_steps: Stop after this many rounds (a guard against workflows that never
                settle); ``None`` for no limit.

        Returns:
            How many rounds of work were done.
        """
        if self._running:
            raise UsageError(
                "run_until_idle() is for engines driven by hand, not in a `with` block"
            )
        rounds = 0
        while max_steps is None or rounds < max_steps:
            rounds += 1
            if self._pump():
                continue
            if self._manual_work:
                work, self._manual_work = self._manual_work, []
                for job in work:
                    job()
                continue
            if self._fire_due_timers():
                continue
            clock = self.clock
            if isinstance(clock, ManualClock) and clock.autojump:
                with self._timer_lock:
                    next_due = self._timers[0][0] if self._timers else None
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
        limit: int | None = None,
    ) -> list[WorkflowRecord]:
        """Runs, newest first, filtered by status, workflow name and tag values."""
        encoded = {k: encode(v, f"tag {k!r}") for k, v in (tags or {}).items()}
        return self.store.list_runs(
            status=status, name=name, tags=encoded or None, limit=limit
        )

    # -- submitting items ---------------------------------------------------------------------

    def _start_item(
        self,
        workflow: WorkflowFn | str,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        workflow_id: str | None,
        on_conflict: OnConflict,
        tags: dict[str, object] | None,
    ) -> _Start:
        if on_conflict not in ("fail", "use_existing", "terminate_existing"):
            raise ValueError(
                f"on_conflict must be 'fail', 'use_existing' or 'terminate_existing', got {on_conflict!r}"
            )
        definition = self.registry.workflow(workflow)
        from flowgen._core.interpreter import _describe_argument

        encoded_args = [
            encode(
                a,
                f"{_describe_argument(definition.fn, i)} of workflow {definition.name!r}",
            )
            for i, a in enumerate(args)
        ]
        encoded_kwargs = {
            k: encode(v, f"argument {k!r} of workflow {definition.name!r}")
            for k, v in kwargs.items()
        }
        encoded_tags = {
            check_text(k, "a tag name"): encode(v, f"tag {k!r}")
            for k, v in (tags or {}).items()
        }
        run_id = uuid.uuid4().hex
        record = WorkflowRecord(
            workflow_id=workflow_id or f"{definition.name}-{uuid.uuid4().hex}",
            run_id=run_id,
            name=definition.name,
            status="running",
            args=encoded_args,
            kwargs=encoded_kwargs,
            started_at=self.clock.now(),
            tags=encoded_tags,
        )
        return _Start(record, definition.fn, on_conflict, fresh_id=workflow_id is None)

    def _submit(self, item: _Item) -> object:
        if self._closed:
            raise UsageError("this engine is closed")
        future: Future[object] = Future()
        item.future = future
        self._inbox.put(item)
        if not self._running:
            self._pump()
        return future.result()

    def _submit_many(self, items: Sequence[_Item]) -> list[object]:
        if self._closed:
            raise UsageError("this engine is closed")
        futures: list[Future[object]] = []
        for item in items:
            item.future = Future()
            futures.append(item.future)
            self._inbox.put(item)
        if not self._running:
            self._pump()
        results: list[object] = []
        for future in futures:
            error = future.exception()
            results.append(error if error is not None else future.result())
        return results

    def _pump(self) -> bool:
        """Process every item in the inbox (hand-driven mode). True if any was."""
        did = False
        with self._lock:
            while True:
                items = self._take(block=False)
                if not items:
                    return did
                did = True
                self._process(items)

    def _take(self, *, block: bool, timeout: float | None = None) -> list[_Item]:
        items: list[_Item] = []
        try:
            first = self._inbox.get(block=block, timeout=timeout)
        except queue.Empty:
            return items
        if first is None:
            return items
        items.append(first)
        while len(items) < self.max_batch:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._inbox.put(None)  # keep the stop marker for the loop
                break
            items.append(item)
        return items

    def _decision_loop(self) -> None:
        # A store that defers writing its tables (DuckDBStore's journal) is flushed once
        # the loop has had nothing to do for IDLE_FLUSH_SECONDS after a commit, so SQL
        # through any cursor soon sees an idle engine's work.
        flush = getattr(self.store, "flush", None)
        committed = self.commits
        while self._running:
            dirty = flush is not None and self.commits != committed
            items = self._take(
                block=True, timeout=_IDLE_FLUSH_SECONDS if dirty else None
            )
            if not items:
                if dirty and flush is not None and self._running:
                    committed = self.commits
                    try:
                        flush()
                    except Exception:  # kept by the store; retried later
                        log.exception("flowgen: flushing the store failed")
                continue
            with self._lock:
                try:
                    self._process(items)
                except Exception:  # pragma: no cover - a bug; keep the loop alive
                    log.exception("flowgen: decision loop failed")

    # -- the batch -------------------------------------------------------------------------------

    def _process(self, items: list[_Item]) -> None:
        self._link_log.clear()
        self._prefetch_runs(items)
        self._prefetch_histories(items)
        txn = _Txn(work=list(items))
        answers: list[tuple[Future[object], object]] = []
        index = 0
        while index < len(txn.work):
            item = txn.work[index]
            index += 1
            try:
                answer = self._apply(item, txn)
            except StoreError as exc:
                # A read failed halfway through an item: the batch may hold half a step.
                # Drop all of it, exactly as if its commit had failed.
                self._abandon(items, txn.snapshots, exc)
                return
            except Exception as exc:  # noqa: BLE001  # to the caller, e.g. a query handler's error
                if item.future is not None:
                    answers.append((item.future, exc))
                else:
                    log.error("flowgen: %s failed: %r", type(item).__name__, exc)
                continue
            if item.future is not None:
                answers.append((item.future, answer))
        if txn.batch:
            try:
                self.store.commit(txn.batch)
            except Exception as exc:  # noqa: BLE001  # nothing was written: undo and report
                self._abandon(items, txn.snapshots, exc)
                return
            self.commits += 1
        for effect in txn.effects:
            effect()
        for future, answer in answers:
            if future.done():
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
        self._trim_cache()
        if txn.batch.updates:
            with self._closed_cv:
                self._closed_cv.notify_all()

    def _abandon(
        self, items: list[_Item], snapshots: dict[_Key, _Run | None], exc: Exception
    ) -> None:
        """Nothing of the batch was written: undo it, fail its callers, retry its news."""
        self._undo(snapshots)
        error = (
            exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {exc}")
        )
        for item in items:
            if item.future is not None:
                if not item.future.done():
                    item.future.set_exception(error)
            elif isinstance(item, (_Feed, _Due)):
                self._retry_later(item)
        log.error("flowgen: store failed, batch undone: %s", exc)

    def _set_link(
        self, child_id: str, link: tuple[_Key, int] | None
    ) -> tuple[_Key, int] | None:
        """Link *child_id* to its parent's (run, seq), or unlink it; returns the old link."""
        previous = self._child_links.get(child_id)
        self._link_log.append((child_id, previous))
        if link is None:
            self._child_links.pop(child_id, None)
        else:
            self._child_links[child_id] = link
        return previous

    def _take_link(self, child_id: str) -> tuple[_Key, int] | None:
        return self._set_link(child_id, None)

    def _undo(self, snapshots: dict[_Key, _Run | None]) -> None:
        self._just_closed.clear()
        self._closing.clear()
        # A child whose end is undone is running again: its parent must still hear of it.
        for child_id, link in reversed(self._link_log):
            if link is None:
                self._child_links.pop(child_id, None)
            else:
                self._child_links[child_id] = link
        self._link_log.clear()
        for key, snapshot in snapshots.items():
            self._cache.pop(key, None)
            if snapshot is None:
                self._runs.pop(key, None)
                if self._current.get(key[0]) == key[1]:
                    del self._current[key[0]]
            else:
                self._runs[key] = snapshot
                self._current[key[0]] = (
                    key[1]
                    if snapshot.status == "running"
                    else self._current.get(key[0], key[1])
                )

    def _retry_later(self, item: _Item) -> None:
        item.future = None
        delay = 0.05

        def again() -> None:
            self._inbox.put(item)

        if self._running:
            threading.Timer(delay, again).start()
        else:
            self._manual_work.append(again)

    def _touch(self, run: _Run, snapshots: dict[_Key, _Run | None]) -> None:
        if run.key not in snapshots:
            snapshots[run.key] = attrs.evolve(run, tags=dict(run.tags))

    def _apply(
        self,
        item: _Item,
        txn: _Txn,
    ) -> object:
        match item:
            case _Start():
                return self._apply_start(item, txn)
            case _SignalItem():
                run = self._open_run(item.workflow_id)
                event = SignalReceived(
                    at=self.clock.now(),
                    name=item.name,
                    payload=item.payload,
                    index=run.signals,
                    sender=item.sender,
                )
                self._feed(run, event, txn)
                return None
            case _CancelItem():
                run = self._open_run(item.workflow_id)
                if run.cancel_requested:
                    return None  # asked already; the first request is being honoured
                self._feed(
                    run,
                    CancelRequested(at=self.clock.now(), reason=item.reason),
                    txn,
                )
                return None
            case _Feed():
                target = self._runs.get(
                    (
                        item.workflow_id,
                        item.run_id or self._current.get(item.workflow_id, ""),
                    )
                )
                if target is None or target.status != "running":
                    return None  # late news for a run that has ended
                self._feed(target, item.event, txn)
                return None
            case _Due():
                self._apply_due(item, txn)
                return None
            case _Recover():
                self._apply_recover(item, txn)
                return None
            case _Query():
                run_id = self._current.get(item.workflow_id)
                record = (
                    self.store.get_run(item.workflow_id) if run_id is None else None
                )
                if run_id is None and record is None:
                    raise UnknownWorkflow(f"no workflow with id {item.workflow_id!r}")
                interp = self._interpreter_for(
                    item.workflow_id, run_id or (record.run_id if record else "")
                )
                answer = interp.query(item.name, *item.args)
                return decode(encode(answer, f"answer of query {item.name!r}"))
            case _Call():
                return item.fn()
        raise AssertionError(f"unknown item {item!r}")  # pragma: no cover

    def _open_run(self, workflow_id: str) -> _Run:
        run_id = self._current.get(workflow_id)
        run = self._runs.get((workflow_id, run_id)) if run_id else None
        if run is not None and run.status == "running":
            return run
        record = self.store.get_run(workflow_id)
        if record is None:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
        raise WorkflowClosed(
            f"workflow {workflow_id!r} has finished ({record.status}); it takes no more signals or cancels"
        )

    def _prefetch_runs(self, items: list[_Item]) -> None:
        """Read the stored runs of the ids several starts use in one query, not one each.

        Only ids the loop does not hold a run for can collide with a stored run. A store
        without ``latest_runs`` (an optional method) is read once per start.
        """
        self._prefetched = {}
        latest_runs = getattr(self.store, "latest_runs", None)
        if latest_runs is None:
            return
        ids = [
            item.record.workflow_id
            for item in items
            if isinstance(item, _Start)
            and not item.fresh_id
            and (
                item.record.workflow_id,
                self._current.get(item.record.workflow_id, ""),
            )
            not in self._runs
        ]
        if len(ids) < 2:
            return  # for one id, get_run is as cheap
        try:
            found: dict[str, WorkflowRecord] = latest_runs(ids)
        except StoreError:
            return  # each start reads for itself, and fails by itself
        self._prefetched = {workflow_id: found.get(workflow_id) for workflow_id in ids}

    def _prefetch_histories(self, items: list[_Item]) -> None:
        """Load the histories of the evicted runs this batch wakes in one query, not one each.

        A run whose live generator was evicted is rebuilt by replay when its next item
        arrives (`_interpreter`); with many such items in a batch (signals to a crowd of
        parked runs) one `load_histories` replaces a read per run.
        """
        self._histories = {}
        keys: list[_Key] = []
        for item in items:
            if isinstance(item, (_SignalItem, _CancelItem)):
                key = (item.workflow_id, self._current.get(item.workflow_id, ""))
            elif isinstance(item, _Feed):
                key = (
                    item.workflow_id,
                    item.run_id or self._current.get(item.workflow_id, ""),
                )
            elif isinstance(item, _Due):
                key = item.key
            else:
                continue
            run = self._runs.get(key)
            if (
                run is not None
                and run.status == "running"
                and run.stuck is None
                and key not in self._cache
            ):
                keys.append(key)
        if len(keys) < 2:
            return  # for one run, load_history is as cheap
        try:
            self._histories = self.store.load_histories(keys)
        except StoreError:
            return  # each rebuild reads for itself, and fails by itself

    def _apply_start(
        self,
        item: _Start,
        txn: _Txn,
    ) -> WorkflowHandle:
        record = item.record
        workflow_id = record.workflow_id
        existing_id = self._current.get(workflow_id)
        existing = self._runs.get((workflow_id, existing_id)) if existing_id else None
        stored = None
        if existing is None and not item.fresh_id:
            stored = (
                self._prefetched[workflow_id]
                if workflow_id in self._prefetched
                else self.store.get_run(workflow_id)
            )
        if existing is not None or stored is not None:
            running = existing is not None and existing.status == "running"
            if item.parent is not None and running:
                (parent_id, parent_run), seq = item.parent
                if self._child_links.get(workflow_id) == item.parent:
                    self._take_link(workflow_id)  # (not another parent's running child)
                txn.work.append(
                    _Feed(
                        parent_id,
                        parent_run,
                        ChildFailed(
                            at=self.clock.now(),
                            seq=seq,
                            child_id=workflow_id,
                            error=ErrorInfo(
                                "WorkflowAlreadyExists",
                                f"a workflow with id {workflow_id!r} is already running",
                            ),
                        ),
                    )
                )
                return WorkflowHandle(self, workflow_id, record.run_id)
            if item.on_conflict == "fail" and item.parent is None:
                raise WorkflowAlreadyExists(
                    f"a workflow with id {workflow_id!r} already exists "
                    f"({existing.status if existing else stored.status if stored else '?'}); "
                    f"pass on_conflict='use_existing' or 'terminate_existing'"
                )
            if item.on_conflict == "use_existing" and (running or item.signal is None):
                run_id = (
                    existing.run_id
                    if existing is not None
                    else stored.run_id
                    if stored
                    else ""
                )
                if item.signal is not None and existing is not None:
                    name, payload = item.signal
                    self._feed(
                        existing,
                        SignalReceived(
                            at=self.clock.now(),
                            name=name,
                            payload=payload,
                            index=existing.signals,
                        ),
                        txn,
                    )
                return WorkflowHandle(self, workflow_id, run_id)
            if running and existing is not None:
                self._feed(
                    existing,
                    WorkflowTerminated(
                        at=self.clock.now(), reason="terminated by a new start"
                    ),
                    txn,
                )
        run = _Run(
            record.workflow_id,
            record.run_id,
            record.name,
            item.fn,
            tags=dict(record.tags),
            parent_id=record.parent_id,
        )
        txn.snapshots.setdefault(run.key, None)
        self._runs[run.key] = run
        self._current[workflow_id] = run.run_id
        txn.batch.runs.append(record)
        interp = Interpreter(item.fn, codec=CODEC)
        self._cache[run.key] = interp
        started = WorkflowStarted(
            at=record.started_at,
            workflow_id=workflow_id,
            run_id=record.run_id,
            name=record.name,
            args=record.args,
            kwargs=record.kwargs,
            parent_id=record.parent_id,
        )
        self._feed(run, started, txn, interp=interp)
        if item.signal is not None and run.status == "running":
            name, payload = item.signal
            self._feed(
                run,
                SignalReceived(
                    at=self.clock.now(), name=name, payload=payload, index=run.signals
                ),
                txn,
            )
        return WorkflowHandle(self, workflow_id, record.run_id)

    def _feed(
        self,
        run: _Run,
        event: Event,
        txn: _Txn,
        *,
        interp: Interpreter | None = None,
    ) -> None:
        """Record *event* for *run*, feed it, and record and schedule what it decides."""
        if interp is None and run.stuck is None:
            try:
                interp = self._interpreter(run)
            except (UnknownWorkflow, NonDeterminismError, HistoryCorruptError) as exc:
                self._stick(run, exc)
        if interp is None or run.stuck is not None:
            # A stuck run still records what happens to it (a signal is acknowledged); the
            # reaction comes when fixed code reopens the file and replays.
            if isinstance(event, (SignalReceived, CancelRequested, WorkflowTerminated)):
                self._touch(run, txn.snapshots)
                self._append(run, event, txn)
                run.signals += isinstance(event, SignalReceived)
                if isinstance(event, WorkflowTerminated):
                    self._ended(run, event, txn)
            return
        seq = getattr(event, "seq", None)
        if isinstance(seq, int) and not isinstance(event, WorkflowStarted):
            if not interp.is_pending(seq):
                return  # the command was cancelled or resolved meanwhile: drop the news
            attempt = getattr(event, "attempt", None)
            if isinstance(attempt, int) and attempt != interp.attempts(seq)[0] + 1:
                return  # a timed-out attempt finishing late
        self._touch(run, txn.snapshots)
        self._append(run, event, txn)
        if isinstance(event, SignalReceived):
            run.signals += 1
        if isinstance(event, CancelRequested):
            run.cancel_requested = True
        try:
            step = interp.feed(event)
            self.steps += 1
            self._handle_step(run, interp, step, txn)
        except (NonDeterminismError, HistoryCorruptError) as exc:
            self._stick(run, exc)
            return
        if isinstance(event, WorkflowTerminated):
            self._ended(run, event, txn)
        elif isinstance(event, ActivityAttemptFailed):
            txn.effects.append(
                partial(
                    self._arm,
                    event.retry_at,
                    _Due("retry", run.key, event.seq, event.attempt + 1),
                )
            )

    def _stick(self, run: _Run, exc: BaseException) -> None:
        # The incoming event stays recorded; the reaction is missing. Fixing the code and
        # reopening the file resumes the run from exactly here.
        if isinstance(exc, UnknownWorkflow):
            # A process may host only some of a file's workflows: not an error by itself.
            log.info(
                "flowgen: workflow %r waits for its code: %s", run.workflow_id, exc
            )
        else:
            log.error("flowgen: workflow %r is stuck: %s", run.workflow_id, exc)
        run.stuck = exc
        self._cache.pop(run.key, None)

    def _append(self, run: _Run, event: Event, txn: _Txn) -> None:
        txn.batch.events.append(
            EventRow(run.workflow_id, run.run_id, run.next_event_id, event)
        )
        run.next_event_id += 1

    def _handle_step(
        self,
        run: _Run,
        interp: Interpreter,
        step: Step,
        txn: _Txn,
    ) -> None:
        steps = [step]
        while steps:
            current = steps.pop(0)
            for event in current.events:
                self._append(run, event, txn)
                self._decided(run, interp, event, txn)
            for seq, command in current.perform:
                if not interp.is_pending(seq):
                    continue
                outcome = self._perform_now(run, seq, command, txn)
                if outcome is None:
                    return
                self._append(run, outcome, txn)
                steps.append(interp.feed(outcome))

    def _perform_now(
        self,
        run: _Run,
        seq: int,
        command: RecordSideEffect[Any] | SendSignal,
        txn: _Txn,
    ) -> Event | None:
        now = self.clock.now()
        if isinstance(command, RecordSideEffect):
            try:
                value = encode(command.fn(), f"result of side effect {command.name!r}")
            except Exception as exc:  # noqa: BLE001  # the run waits; a restart retries it
                self._stick(
                    run, FlowgenError(f"side effect {command.name!r} failed: {exc!r}")
                )
                return None
            return SideEffectRecorded(at=now, seq=seq, name=command.name, value=value)
        target_id = command.workflow_id
        target_run_id = self._current.get(target_id)
        target = self._runs.get((target_id, target_run_id)) if target_run_id else None
        if target is None or target.status != "running":
            stored = self.store.get_run(target_id)
            why = (
                "does not exist"
                if stored is None and target is None
                else "has finished"
            )
            return SignalSendFailed(
                at=now,
                seq=seq,
                workflow_id=target_id,
                name=command.name,
                error=ErrorInfo("SignalSendError", f"workflow {target_id!r} {why}"),
            )
        payload = encode(command.payload, f"payload of signal {command.name!r}")
        txn.work.append(
            _SignalItem(
                target_id, command.name, payload, sender=f"{run.workflow_id}/{seq}"
            )
        )
        return SignalSent(at=now, seq=seq, workflow_id=target_id, name=command.name)

    def _decided(
        self,
        run: _Run,
        interp: Interpreter,
        event: Event,
        txn: _Txn,
    ) -> None:
        """Schedule the effects of a decision event (acted on after the commit)."""
        key = run.key
        match event:
            case ActivityScheduled(seq=seq):
                command = interp.pending.get(seq)
                if isinstance(command, CallActivity):
                    txn.effects.append(
                        partial(self._start_attempt, key, event, command, 1)
                    )
            case TimerStarted(seq=seq, fire_at=fire_at):
                txn.effects.append(partial(self._arm, fire_at, _Due("timer", key, seq)))
            case SignalWaitStarted(seq=seq, deadline=deadline) if deadline is not None:
                txn.effects.append(
                    partial(self._arm, deadline, _Due("signal_timeout", key, seq))
                )
            case ChildStarted(
                seq=seq, name=name, child_id=child_id, args=args, kwargs=kwargs
            ):
                if child_id not in self._child_links:
                    # An id that is another parent's running child keeps its parent:
                    # this start conflicts, and this parent hears that at once.
                    self._set_link(child_id, (key, seq))
                command_ = interp.pending.get(seq)
                fn = command_.fn if isinstance(command_, StartChild) else None
                try:
                    definition = self.registry.workflow(fn if fn is not None else name)  # type: ignore[arg-type]
                except UnknownWorkflow as exc:
                    txn.work.append(
                        _Feed(
                            run.workflow_id,
                            run.run_id,
                            ChildFailed(
                                at=event.at,
                                seq=seq,
                                child_id=child_id,
                                error=error_info(exc),
                            ),
                        )
                    )
                    return
                record = WorkflowRecord(
                    workflow_id=child_id,
                    run_id=uuid.uuid4().hex,
                    name=definition.name,
                    status="running",
                    args=args,
                    kwargs=kwargs,
                    started_at=self.clock.now(),
                    parent_id=run.workflow_id,
                )
                txn.work.append(
                    _Start(record, definition.fn, on_conflict="fail", parent=(key, seq))
                )
            case CommandCancelled(seq=seq):
                for child_id, link in list(self._child_links.items()):
                    if link == (key, seq):
                        txn.work.append(_CancelItem(child_id, "parent cancelled"))
            case TagsSet(tags=tags):
                run.tags.update(tags)
                txn.batch.updates.append(
                    RunUpdate(run.workflow_id, run.run_id, tags=dict(run.tags))
                )
            case (
                WorkflowCompleted()
                | WorkflowErrored()
                | WorkflowCancelled()
                | WorkflowContinuedAsNew()
            ):
                self._ended(run, event, txn)

    def _ended(self, run: _Run, event: Event, txn: _Txn) -> None:
        status = _STATUS_OF_END[type(event)]
        run.status = status
        self._just_closed.append(run.key)
        result = event.result if isinstance(event, WorkflowCompleted) else None
        error: ErrorInfo | None = getattr(event, "error", None)
        if isinstance(event, WorkflowTerminated):
            error = ErrorInfo("Terminated", event.reason)
        self._closing[run.key] = (run.name, status, result, error)
        txn.batch.updates.append(
            RunUpdate(
                run.workflow_id,
                run.run_id,
                status=status,
                result=result,
                error=error,
                closed_at=event.at,
            )
        )
        link = self._take_link(run.workflow_id)
        if link is not None and isinstance(event, WorkflowContinuedAsNew):
            # The parent hears from the last run of the chain, not from this one.
            self._set_link(run.workflow_id, link)
        elif link is not None:
            (parent_id, parent_run), seq = link
            outcome: Event
            if isinstance(event, WorkflowCompleted):
                outcome = ChildCompleted(
                    at=event.at, seq=seq, child_id=run.workflow_id, value=event.result
                )
            else:
                info = (
                    error
                    if isinstance(error, ErrorInfo)
                    else ErrorInfo(status, f"child workflow {status}")
                )
                outcome = ChildFailed(
                    at=event.at, seq=seq, child_id=run.workflow_id, error=info
                )
            txn.work.append(_Feed(parent_id, parent_run, outcome))
        if isinstance(event, WorkflowContinuedAsNew):
            record = WorkflowRecord(
                workflow_id=run.workflow_id,
                run_id=uuid.uuid4().hex,
                name=run.name,
                status="running",
                args=event.args,
                kwargs=event.kwargs,
                started_at=event.at,
                tags=dict(run.tags),
                parent_id=run.parent_id,
            )
            assert run.fn is not None
            txn.work.append(_Start(record, run.fn, on_conflict="terminate_existing"))

    # -- interpreters ----------------------------------------------------------------------------

    def _interpreter(self, run: _Run) -> Interpreter:
        interp = self._cache.get(run.key)
        if interp is not None:
            self._cache.move_to_end(run.key)
            return interp
        if run.fn is None:
            run.fn = self.registry.workflow(run.name).fn
        history = self._histories.pop(run.key, None)
        if history is None:
            history = self.store.load_history(run.workflow_id, run.run_id)
        interp = Interpreter(run.fn, codec=CODEC)
        step = interp.replay(history)
        if (
            step.events or step.perform
        ):  # pragma: no cover - committed histories are complete
            log.warning(
                "flowgen: rebuilding %r decided %d new event(s)",
                run.workflow_id,
                len(step.events),
            )
        self._cache[run.key] = interp
        return interp

    def _interpreter_for(self, workflow_id: str, run_id: str) -> Interpreter:
        run = self._runs.get((workflow_id, run_id))
        if run is not None and run.status == "running":
            return self._interpreter(run)
        record = self.store.get_run(workflow_id, run_id)
        if record is None:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
        interp = Interpreter(self.registry.workflow(record.name).fn, codec=CODEC)
        interp.replay(self.store.load_history(workflow_id, record.run_id))
        return interp

    def _trim_cache(self) -> None:
        for key in self._just_closed:
            self._cache.pop(key, None)
            run = self._runs.get(key)
            if run is not None and run.status != "running":
                del self._runs[key]
            closing = self._closing.pop(key, None)
            if closing is not None:
                self._recent[key[0]] = (key[1], *closing)
                self._recent.move_to_end(key[0])
                if len(self._recent) > _RECENT_OUTCOMES:
                    self._recent.popitem(last=False)
        self._just_closed.clear()
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # -- activities ------------------------------------------------------------------------------

    def _start_attempt(
        self,
        key: _Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
    ) -> None:
        job = partial(self._run_attempt, key, scheduled, command, attempt)
        if self._running and self._pool is not None:
            with self._inflight_lock:
                self._inflight += 1
            self._pool.submit(job)
            timeout = self._options(command).timeout
            if timeout is not None:
                self._arm(
                    self.clock.now() + timedelta(seconds=timeout),
                    _Due("activity_timeout", key, scheduled.seq, attempt),
                )
        else:
            self._manual_work.append(job)

    def _options(self, command: CallActivity[Any]) -> ActivityOptions:
        # What the activity's @fg.activity declared, also when the workflow called it by
        # name (then the command itself carries only the defaults).
        if command.fn is not None and not _needs_instance(command.fn):
            return command.options
        try:
            definition, _ = self.registry.activity(command.name)
        except UnknownActivity:
            return command.options
        return definition.options

    def _run_attempt(
        self,
        key: _Key,
        scheduled: ActivityScheduled,
        command: CallActivity[Any],
        attempt: int,
    ) -> None:
        workflow_id, run_id = key
        started = self.clock.now()
        options = self._options(command)
        policy = options.retry or self.retry
        # An error outside the activity's own code (no such activity, arguments that do not
        # decode, a result that cannot be stored) would only repeat itself: no retries.
        outside = True
        try:
            fn: Callable[..., object]
            if command.fn is not None and not _needs_instance(command.fn):
                fn = command.fn
            else:
                # By name, or a method named on its class (`fg.call(Bank.charge, ...)`):
                # run what was registered under the name, bound to its object.
                definition, fn = self.registry.activity(command.name)
                policy = definition.options.retry or policy
            hints = parameter_types(fn)
            from flowgen._core.interpreter import _positional_names

            names, star = _positional_names(getattr(fn, "__func__", fn))
            if getattr(fn, "__self__", None) is not None and names:
                names = names[1:]
            args = [
                decode(a, hints.get(names[i] if i < len(names) else star or "", object))
                for i, a in enumerate(scheduled.args)
            ]
            kwargs = {
                k: decode(v, hints.get(k, object)) for k, v in scheduled.kwargs.items()
            }
            info = ActivityInfo(
                workflow_id, run_id, scheduled.seq, command.name, attempt, scheduled.at
            )
            outside = False
            value = run_attempt(
                fn,
                args,
                kwargs,
                info,
                options.timeout if self._running else None,
            )
            outside = True
            payload = encode(value, f"result of activity {command.name!r}")
            event: Event = ActivityCompleted(
                at=self.clock.now(),
                seq=scheduled.seq,
                value=payload,
                attempt=attempt,
                started_at=started,
            )
        except Exception as exc:  # noqa: BLE001  # an activity's failure is data
            info_ = error_info(exc, attempts=attempt)
            if outside:
                info_ = attrs.evolve(info_, non_retryable=True)
            now = self.clock.now()
            delay = policy.delay_after(
                attempt, info_.type, non_retryable=info_.non_retryable
            )
            if delay is None:
                event = ActivityFailed(
                    at=now,
                    seq=scheduled.seq,
                    error=info_,
                    attempt=attempt,
                    started_at=started,
                )
            else:
                event = ActivityAttemptFailed(
                    at=now,
                    seq=scheduled.seq,
                    error=info_,
                    attempt=attempt,
                    retry_at=now + timedelta(seconds=delay),
                    started_at=started,
                )
        finally:
            if self._running:
                with self._inflight_lock:
                    self._inflight -= 1
        self._inbox.put(_Feed(workflow_id, run_id, event))

    # -- timers ----------------------------------------------------------------------------------

    def _arm(self, due: datetime, item: _Due) -> None:
        with self._timer_lock:
            heapq.heappush(self._timers, (due, next(self._counter), item))
        self._timer_wakeup.set()

    def _fire_due_timers(self) -> bool:
        now = self.clock.now()
        fired = False
        while True:
            with self._timer_lock:
                if not self._timers or self._timers[0][0] > now:
                    break
                _, _, item = heapq.heappop(self._timers)
            self._inbox.put(item)
            fired = True
        return fired

    def _timer_loop(self) -> None:
        while self._running:
            self._timer_wakeup.clear()
            self._fire_due_timers()
            with self._timer_lock:
                next_due = self._timers[0][0] if self._timers else None
            if next_due is None:
                self._timer_wakeup.wait(0.5)
            else:
                self.clock.sleep_until(next_due, self._timer_wakeup)

    def _apply_due(
        self,
        item: _Due,
        txn: _Txn,
    ) -> None:
        run = self._runs.get(item.key)
        if run is None or run.status != "running" or run.stuck is not None:
            return
        try:
            interp = self._interpreter(run)
        except (UnknownWorkflow, NonDeterminismError, HistoryCorruptError) as exc:
            self._stick(run, exc)
            return
        if not interp.is_pending(item.seq):
            return
        now = self.clock.now()
        match item.kind:
            case "timer":
                self._feed(
                    run,
                    TimerFired(at=now, seq=item.seq),
                    txn,
                    interp=interp,
                )
            case "signal_timeout":
                self._feed(
                    run,
                    SignalTimedOut(at=now, seq=item.seq),
                    txn,
                    interp=interp,
                )
            case "retry":
                command = interp.pending[item.seq]
                scheduled = interp.scheduled_event(item.seq)
                if (
                    isinstance(command, CallActivity)
                    and isinstance(scheduled, ActivityScheduled)
                    and interp.attempts(item.seq)[0] == item.attempt - 1
                ):
                    self._start_attempt(item.key, scheduled, command, item.attempt)
            case "activity_timeout":
                command = interp.pending[item.seq]
                if interp.attempts(item.seq)[0] != item.attempt - 1 or not isinstance(
                    command, CallActivity
                ):
                    return  # that attempt already reported
                options = self._options(command)
                error = error_info(
                    ActivityTimeout(
                        f"activity {command.name!r} attempt {item.attempt} ran past its {options.timeout} s timeout"
                    ),
                    attempts=item.attempt,
                )
                policy = options.retry or self.retry
                delay = policy.delay_after(item.attempt, error.type)
                event: Event
                if delay is None:
                    event = ActivityFailed(
                        at=now, seq=item.seq, error=error, attempt=item.attempt
                    )
                else:
                    retry_at = now + timedelta(seconds=delay)
                    event = ActivityAttemptFailed(
                        at=now,
                        seq=item.seq,
                        error=error,
                        attempt=item.attempt,
                        retry_at=retry_at,
                    )
                self._feed(run, event, txn, interp=interp)

    # -- recovery --------------------------------------------------------------------------------

    def _recover(self) -> None:
        records = self.store.unfinished()
        if not records:
            return
        histories = self.store.load_histories(
            [(r.workflow_id, r.run_id) for r in records]
        )
        # A run the store could not read is left out: it quarantined it (status corrupt).
        items: list[_Item] = [
            _Recover(r, histories[r.workflow_id, r.run_id], future=Future())
            for r in records
            if (r.workflow_id, r.run_id) in histories
        ]
        with self._lock:
            for start in range(0, len(items), 4096):
                self._process(items[start : start + 4096])
        # A store failure undid a batch of recovered runs (and what they were to resume):
        # opening failed, and nothing was acted on. Opening again recovers them.
        for item in items:
            assert item.future is not None
            error = item.future.exception() if item.future.done() else None
            if isinstance(error, StoreError):
                raise error
            if error is not None:  # pragma: no cover - a bug; the others still resume
                log.error("flowgen: recovering a run failed: %r", error)

    def _apply_recover(
        self,
        item: _Recover,
        txn: _Txn,
    ) -> None:
        record, history = item.record, item.history
        run = _Run(
            record.workflow_id,
            record.run_id,
            record.name,
            None,
            tags=dict(record.tags),
            parent_id=record.parent_id,
        )
        run.next_event_id = len(history)
        run.signals = sum(isinstance(e, SignalReceived) for e in history)
        run.cancel_requested = any(isinstance(e, CancelRequested) for e in history)
        self._runs[run.key] = run
        current = self._current.get(run.workflow_id)
        if (
            current is None
            or self._runs[(run.workflow_id, current)].status != "running"
        ):
            self._current[run.workflow_id] = run.run_id
        try:
            run.fn = self.registry.workflow(record.name).fn
            interp = Interpreter(run.fn, codec=CODEC)
            step = interp.replay(history)
        except (UnknownWorkflow, NonDeterminismError, HistoryCorruptError) as exc:
            self._stick(run, exc)
            return
        self._cache[run.key] = interp
        txn.snapshots.setdefault(run.key, attrs.evolve(run))
        self._handle_step(run, interp, step, txn)
        if run.status != "running":
            return
        self._resume_pending(run, interp, txn)

    def _resume_pending(
        self,
        run: _Run,
        interp: Interpreter,
        txn: _Txn,
    ) -> None:
        key = run.key
        for seq, command in interp.pending.items():
            scheduled = interp.scheduled_event(seq)
            match command:
                case CallActivity() if isinstance(scheduled, ActivityScheduled):
                    failed, retry_at = interp.attempts(seq)
                    if retry_at is not None and failed:
                        txn.effects.append(
                            partial(
                                self._arm, retry_at, _Due("retry", key, seq, failed + 1)
                            )
                        )
                    else:
                        txn.effects.append(
                            partial(
                                self._start_attempt, key, scheduled, command, failed + 1
                            )
                        )
                case WaitSignal() if (
                    isinstance(scheduled, SignalWaitStarted)
                    and scheduled.deadline is not None
                ):
                    txn.effects.append(
                        partial(
                            self._arm,
                            scheduled.deadline,
                            _Due("signal_timeout", key, seq),
                        )
                    )
                case _ if isinstance(scheduled, TimerStarted):
                    txn.effects.append(
                        partial(self._arm, scheduled.fire_at, _Due("timer", key, seq))
                    )
                case StartChild() if isinstance(scheduled, ChildStarted):
                    self._child_links[scheduled.child_id] = (key, seq)
                    child = self.store.get_run(scheduled.child_id)
                    if (
                        child is not None
                        and child.is_closed
                        and child.status != "continued_as_new"
                    ):
                        outcome: Event
                        if child.status == "completed":
                            outcome = ChildCompleted(
                                at=self.clock.now(),
                                seq=seq,
                                child_id=child.workflow_id,
                                value=child.result,
                            )
                        else:
                            outcome = ChildFailed(
                                at=self.clock.now(),
                                seq=seq,
                                child_id=child.workflow_id,
                                error=child.error or ErrorInfo(child.status, ""),
                            )
                        txn.work.append(_Feed(run.workflow_id, run.run_id, outcome))
                case _:
                    pass

    # -- reading state -------------------------------------------------------------------------

    def _status(self, workflow_id: str) -> str:
        run_id = self._current.get(workflow_id)
        run = self._runs.get((workflow_id, run_id)) if run_id else None
        if run is not None:
            return run.status
        record = self.store.get_run(workflow_id)
        if record is None:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
        return record.status

    def _stuck(self, workflow_id: str) -> BaseException | None:
        run_id = self._current.get(workflow_id)
        run = self._runs.get((workflow_id, run_id)) if run_id else None
        if run is None:
            self._status(workflow_id)  # UnknownWorkflow for an unknown id
            return None
        return run.stuck

    def _waiting_for(self, workflow_id: str) -> dict[int, str]:
        from flowgen._vocabulary.commands import describe_command

        def read() -> dict[int, str]:
            run_id = self._current.get(workflow_id)
            run = self._runs.get((workflow_id, run_id)) if run_id else None
            if run is None or run.status != "running":
                return {}
            interp = self._interpreter(run)
            return {
                seq: describe_command(c) for seq, c in sorted(interp.pending.items())
            }

        answer = self._submit(_Call(read))
        assert isinstance(answer, dict)
        return answer

    def _result(self, workflow_id: str, timeout: float | None) -> object:
        deadline = None if timeout is None else self._monotonic() + timeout
        while True:
            if self._running:
                # Answer from memory while the loop knows the run (no read per poll).
                run_id = self._current.get(workflow_id)
                run = self._runs.get((workflow_id, run_id)) if run_id else None
                if (
                    run is not None
                    and run.stuck is None
                    and (run.status == "running" or run.key in self._closing)
                ):
                    # Running, or closed in a batch not committed yet: wait for the loop.
                    self._wait_closed(workflow_id, timeout, deadline)
                    continue
                recent = self._recent.get(workflow_id)
                if recent is not None and recent[0] == run_id:
                    _, name, status, result, error = recent
                    return self._outcome_of(workflow_id, name, status, result, error)
            record = self.store.get_run(workflow_id)
            if record is None:
                raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
            in_memory = self._runs.get((workflow_id, record.run_id))
            if in_memory is not None and in_memory.stuck is not None:
                # It cannot move until code that matches its history reopens the file.
                raise in_memory.stuck.with_traceback(None)
            if (
                record.is_closed
                and record.status != "continued_as_new"
                and (in_memory is None or in_memory.status != "running")
            ):
                return self._outcome(record)
            if not self._running:
                if self.run_until_idle() > 1:
                    continue
                record = self.store.get_run(workflow_id)
                if (
                    record is not None
                    and record.is_closed
                    and record.status != "continued_as_new"
                ):
                    return self._outcome(record)
                with self._timer_lock:
                    next_due = self._timers[0][0] if self._timers else None
                if next_due is not None and not isinstance(self.clock, ManualClock):
                    wait = (next_due - self.clock.now()).total_seconds()
                    if deadline is not None:
                        wait = min(wait, deadline - self._monotonic())
                    if wait > 0:
                        self._timer_wakeup.wait(wait)
                    if deadline is None or self._monotonic() < deadline:
                        continue
                waits = ", ".join(self._waiting_for(workflow_id).values()) or "nothing"
                raise TimeoutError(
                    f"workflow {workflow_id!r} is still running, waiting for {waits}; "
                    f"nothing else can happen on this hand-driven engine until you signal it "
                    f"or advance the clock"
                )
            self._wait_closed(workflow_id, timeout, deadline)

    def _wait_closed(
        self, workflow_id: str, timeout: float | None, deadline: float | None
    ) -> None:
        remaining = None if deadline is None else deadline - self._monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(
                f"workflow {workflow_id!r} did not finish within {timeout} s"
            )
        with self._closed_cv:
            self._closed_cv.wait(0.05 if remaining is None else min(remaining, 0.05))

    def _outcome(self, record: WorkflowRecord) -> object:
        return self._outcome_of(
            record.workflow_id, record.name, record.status, record.result, record.error
        )

    def _outcome_of(
        self,
        workflow_id: str,
        name: str,
        status: str,
        result: JsonValue,
        error: ErrorInfo | None,
    ) -> object:
        if status == "completed":
            try:
                fn = self.registry.workflow(name).fn
                return decode(result, workflow_return_type(fn))
            except UnknownWorkflow:
                return result
        raise WorkflowFailed(workflow_id, status, error or ErrorInfo(status, ""))

    @staticmethod
    def _monotonic() -> float:
        from flowgen._runtime.clock import monotonic

        return monotonic()


def memory_engine(**kwargs: Any) -> Engine:
    """An engine on a `MemoryStore` (no SQL): the fastest throwaway engine, for tests."""
    return Engine(store=MemoryStore(), **kwargs)
