"""asyncio: the engine's API as coroutines, for applications that live on an event loop.

One design, two drivers (as httpx has ``Client`` and ``AsyncClient``): `AsyncEngine` drives
the same `Engine`, so histories, files and semantics are the same; only the calling
convention changes::

    from flowgen.aio import AsyncEngine

    async with AsyncEngine("orders.duckdb") as engine:
        handle = await engine.start(order, "o-1", id="order-o-1")
        await engine.signal("order-o-1", "approve", True)
        receipt = await handle.result(timeout=30)

Rules:

* **A blocking call never runs on the loop.** Opening the file (which may recover runs),
  committing a start or a signal (an fsync), reading a history and closing all run on this
  module's own threads; the loop only awaits them.
* **``async def`` activities run on the loop the engine was entered on**, so they may use
  the loop-bound resources the application made (an ``aiohttp`` session, an ``asyncpg``
  pool, an `asyncio.Queue`). A plain activity still runs on the engine's worker threads,
  never on the loop.
* Waiting for a result holds no thread: the engine tells the loop when the run closes.
  Waiting for an update's result holds none either: its ticket's future is awaited.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from flowgen._runtime.arguments import timeout_argument
from flowgen._runtime.engine import Engine
from flowgen._runtime.fleet_requests import (
    look_remote_update,
    next_pause,
    remote_pending,
    remote_timeout,
)
from flowgen._runtime.handle import WorkflowHandle
from flowgen._runtime.items import OnConflict, WorkflowFn
from flowgen._runtime.limits import WaitingActivity
from flowgen._runtime.retention import PruneResult
from flowgen._runtime.updates import UpdateTicket
from flowgen._stores.protocol import ScheduleRecord
from flowgen._vocabulary.errors import UsageError
from flowgen._vocabulary.events import Event

__all__ = ["AsyncEngine", "AsyncWorkflowHandle"]

P = ParamSpec("P")
T = TypeVar("T")

# Threads that carry blocking engine calls off the loop. Starts from many threads share
# the engine's transactions (group commit), so a few threads keep a busy loop's commits
# batched.
_CALL_THREADS = 16


class AsyncWorkflowHandle:
    """A `WorkflowHandle` whose methods are coroutines.

    Attributes:
        workflow_id: The workflow id.
        run_id: The id of the run the handle was created for.
    """

    def __init__(self, engine: AsyncEngine, handle: WorkflowHandle) -> None:
        self._engine = engine
        self.sync = handle
        """The synchronous `WorkflowHandle` behind this one (for notebooks and charts)."""
        self.workflow_id = handle.workflow_id
        self.run_id = handle.run_id

    def __repr__(self) -> str:
        return f"<AsyncWorkflowHandle {self.workflow_id!r}>"

    async def result(self, timeout: float | None = None) -> object:
        """Wait for the workflow to finish and return its result (see `WorkflowHandle.result`).

        Raises:
            WorkflowFailed: The run failed, was cancelled or terminated.
            TimeoutError: The run did not finish within *timeout* seconds.
        """
        return await self._engine._result(self.sync, timeout)

    async def status(self) -> str:
        """The latest run's status: ``running``, ``completed``, ``failed``, ..."""
        return await self._engine._call(self.sync.status)

    async def history(self) -> list[Event]:
        """The latest run's events, in order."""
        return await self._engine._call(self.sync.history)

    async def signal(self, name: str, payload: object = None) -> None:
        """Send this workflow a signal (see `AsyncEngine.signal`)."""
        await self._engine.signal(self.workflow_id, name, payload)

    async def cancel(self, reason: str = "") -> None:
        """Cancel this workflow (see `AsyncEngine.cancel`)."""
        await self._engine.cancel(self.workflow_id, reason)

    async def query(self, name: str, *args: object) -> object:
        """Ask this workflow a question (see `AsyncEngine.query`)."""
        return await self._engine.query(self.workflow_id, name, *args)

    async def update(
        self,
        name: str,
        *args: object,
        update_id: str | None = None,
        timeout: float | None = None,
    ) -> object:
        """Send this workflow an update; its result (see `AsyncEngine.update`)."""
        return await self._engine.update(
            self.workflow_id, name, *args, update_id=update_id, timeout=timeout
        )


class AsyncEngine:
    """The `Engine`, driven from an event loop: ``async with AsyncEngine(path) as engine``.

    Takes the same arguments as `Engine`. The file is opened (and unfinished runs are
    recovered) when the ``async with`` block is entered, off the loop, and closed when it is
    left.

    Example::

        async with AsyncEngine("orders.duckdb") as engine:
            handle = await engine.start(order, "o-1", id="order-o-1")
            print(await handle.result(timeout=30))
    """

    def __init__(self, path: str = ":memory:", **options: Any) -> None:
        self._path = path
        self._options = options
        self._engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        state = "open" if self._engine is not None else "not entered"
        return f"<flowgen.aio.AsyncEngine {self._path!r} {state}>"

    @property
    def sync(self) -> Engine:
        """The synchronous `Engine` behind this one (``engine.sync.sql(...)``, charts).

        Raises:
            UsageError: Outside the ``async with`` block.
        """
        if self._engine is None:
            raise UsageError(
                "this AsyncEngine is not open: use it as `async with AsyncEngine(...) as "
                "engine:`"
            )
        return self._engine

    async def __aenter__(self) -> AsyncEngine:
        if self._engine is not None:
            raise UsageError("this AsyncEngine is already open")
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(
            _CALL_THREADS, thread_name_prefix="flowgen-aio"
        )
        try:
            engine = await self._loop.run_in_executor(
                self._threads,
                functools.partial(
                    Engine, self._path, activity_loop=self._loop, **self._options
                ),
            )
            await self._loop.run_in_executor(self._threads, engine.start_background)
        except BaseException:
            self._threads.shutdown(wait=False)
            self._threads = None
            raise
        self._engine = engine
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the engine and release the file; unfinished runs resume on the next open."""
        engine, self._engine = self._engine, None
        threads, self._threads = self._threads, None
        if engine is not None and threads is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(threads, engine.close)
            finally:
                threads.shutdown(wait=False)

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking engine call on this engine's threads and await it."""
        self.sync  # noqa: B018  # raises the clear error outside `async with`
        assert self._loop is not None
        # In the caller's context, as asyncio.to_thread does: the engine reads the current
        # OpenTelemetry span there (a run's span is a child of the caller's).
        context = contextvars.copy_context()
        return await self._loop.run_in_executor(
            self._threads, functools.partial(context.run, fn, *args, **kwargs)
        )

    async def _result(self, handle: WorkflowHandle, timeout: float | None) -> object:
        """Wait, holding no thread, until *handle*'s workflow has finished; its result.

        Each round registers for the next close of a run of the workflow, then looks (so a
        run that closes in between is not missed), then waits for the close. A run that
        continues as new closes too: the next round waits for the run after it.
        """
        loop = asyncio.get_running_loop()
        timeout = timeout_argument(timeout)
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            closed: asyncio.Future[None] = loop.create_future()
            withdraw = self.sync._on_closed(
                handle.workflow_id, functools.partial(_wake, loop, closed)
            )
            try:
                try:
                    # timeout=0: answers from what is known now, never waits.
                    return await self._call(handle.result, 0)
                except TimeoutError:
                    pass  # still running
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"workflow {handle.workflow_id!r} did not finish within "
                        f"{timeout} s"
                    )
                try:
                    await asyncio.wait_for(closed, remaining)
                except TimeoutError:
                    raise TimeoutError(
                        f"workflow {handle.workflow_id!r} did not finish within "
                        f"{timeout} s"
                    ) from None
            finally:
                withdraw()

    def _handle(self, handle: WorkflowHandle) -> AsyncWorkflowHandle:
        return AsyncWorkflowHandle(self, handle)

    async def start(
        self,
        workflow: WorkflowFn | str,
        *args: object,
        id: str | None = None,  # noqa: A002  # the contract's name, as Engine.start
        on_conflict: OnConflict = "fail",
        tags: dict[str, object] | None = None,
        **kwargs: object,
    ) -> AsyncWorkflowHandle:
        """Start a workflow run; it is durable when the coroutine returns (see `Engine.start`)."""
        handle = await self._call(
            self.sync.start,
            workflow,
            *args,
            id=id,
            on_conflict=on_conflict,
            tags=tags,
            **kwargs,
        )
        return self._handle(handle)

    async def start_many(
        self,
        workflow: WorkflowFn | str,
        arguments: Iterable[Sequence[object]],
        *,
        ids: Sequence[str] | None = None,
        on_conflict: OnConflict = "fail",
        tags: dict[str, object] | None = None,
    ) -> list[AsyncWorkflowHandle]:
        """Start many runs of one workflow at once (see `Engine.start_many`)."""
        handles = await self._call(
            self.sync.start_many,
            workflow,
            list(arguments),
            ids=ids,
            on_conflict=on_conflict,
            tags=tags,
        )
        return [self._handle(handle) for handle in handles]

    async def signal_with_start(
        self,
        workflow: WorkflowFn | str,
        *args: object,
        id: str,  # noqa: A002  # the contract's name, as Engine.signal_with_start
        signal: str,
        payload: object = None,
        **kwargs: object,
    ) -> AsyncWorkflowHandle:
        """Signal a workflow, starting it first if needed (see `Engine.signal_with_start`)."""
        handle = await self._call(
            self.sync.signal_with_start,
            workflow,
            *args,
            id=id,
            signal=signal,
            payload=payload,
            **kwargs,
        )
        return self._handle(handle)

    async def get(self, workflow_id: str) -> AsyncWorkflowHandle:
        """A handle on an existing workflow id (see `Engine.get`)."""
        return self._handle(await self._call(self.sync.get, workflow_id))

    async def signal(self, workflow_id: str, name: str, payload: object = None) -> None:
        """Send a workflow a signal; durable when the coroutine returns (see `Engine.signal`)."""
        await self._call(self.sync.signal, workflow_id, name, payload)

    async def cancel(self, workflow_id: str, reason: str = "") -> None:
        """Cancel a workflow (see `Engine.cancel`)."""
        await self._call(self.sync.cancel, workflow_id, reason)

    async def query(self, workflow_id: str, name: str, *args: object) -> object:
        """Ask a running workflow a question (see `Engine.query`)."""
        return await self._call(self.sync.query, workflow_id, name, *args)

    async def reset(
        self,
        workflow_id: str,
        *,
        event_id: int,
        run_id: str | None = None,
        terminate: bool = False,
    ) -> AsyncWorkflowHandle:
        """A new run that replays a closed run up to *event_id* (see `Engine.reset`)."""
        handle = await self._call(
            self.sync.reset,
            workflow_id,
            event_id=event_id,
            run_id=run_id,
            terminate=terminate,
        )
        return self._handle(handle)

    async def retry(
        self, workflow_id: str, *, run_id: str | None = None, terminate: bool = False
    ) -> AsyncWorkflowHandle:
        """A fresh run with a closed run's arguments (see `Engine.retry`)."""
        handle = await self._call(
            self.sync.retry, workflow_id, run_id=run_id, terminate=terminate
        )
        return self._handle(handle)

    async def prune(
        self,
        older_than: timedelta | float | str,
        *,
        export_to: str | os.PathLike[str] | None = None,
    ) -> PruneResult:
        """Delete old closed runs, live-safe (see `Engine.prune`)."""
        return await self._call(self.sync.prune, older_than, export_to=export_to)

    # -- schedules (see `Engine.schedule`) ---------------------------------------------------

    async def schedule(
        self,
        schedule_id: str,
        workflow: WorkflowFn | str,
        /,
        *args: object,
        cron: str | None = None,
        every: timedelta | float | None = None,
        timezone: str | None = None,
        overlap: str = "skip",
        jitter: timedelta | float | None = None,
        catchup_window: timedelta | float | None = None,
        **kwargs: object,
    ) -> ScheduleRecord:
        """Start *workflow* on a schedule, durably (see `Engine.schedule`)."""
        return await self._call(
            self.sync.schedule,
            schedule_id,
            workflow,
            *args,
            cron=cron,
            every=every,
            timezone=timezone,
            overlap=overlap,
            jitter=jitter,
            catchup_window=catchup_window,
            **kwargs,
        )

    async def schedules(self) -> list[ScheduleRecord]:
        """Every schedule of the store, by id (see `Engine.schedules`)."""
        return await self._call(self.sync.schedules)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        """The schedule *schedule_id* (see `Engine.get_schedule`)."""
        return await self._call(self.sync.get_schedule, schedule_id)

    async def pause_schedule(self, schedule_id: str, note: str = "") -> ScheduleRecord:
        """Pause a schedule (see `Engine.pause_schedule`)."""
        return await self._call(self.sync.pause_schedule, schedule_id, note)

    async def unpause_schedule(
        self, schedule_id: str, note: str = ""
    ) -> ScheduleRecord:
        """Unpause a schedule (see `Engine.unpause_schedule`)."""
        return await self._call(self.sync.unpause_schedule, schedule_id, note)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule (see `Engine.delete_schedule`)."""
        await self._call(self.sync.delete_schedule, schedule_id)

    # -- activities held back (see `Engine.waiting_activities`) -------------------------------

    async def waiting_activities(self) -> list[WaitingActivity]:
        """The activity attempts held back, and why (see `Engine.waiting_activities`)."""
        return await self._call(self.sync.waiting_activities)

    # -- updates (see `Engine.update`) --------------------------------------------------------

    async def update(
        self,
        workflow_id: str,
        name: str,
        *args: object,
        update_id: str | None = None,
        timeout: float | None = None,
    ) -> object:
        """Send a workflow an update and await its handler's result (see `Engine.update`).

        The update is checked, validated and recorded on this engine's threads; waiting for
        its handler to finish holds no thread.

        Raises:
            The errors of `Engine.update`.
        """
        ticket = await self._call(
            self.sync._send_update, workflow_id, name, args, update_id, timeout
        )
        if ticket.remote is not None:  # posted to another engine of a fleet
            return await self._remote_update(ticket, timeout)
        try:
            end = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(ticket.end)), timeout
            )
        except TimeoutError:
            raise TimeoutError(
                f"update {name!r} (id {ticket.update_id!r}) of workflow {workflow_id!r} "
                f"did not finish within {timeout} s; it goes on: call update() again "
                f"with update_id={ticket.update_id!r}"
            ) from None
        return ticket.value(end)

    async def _remote_update(
        self, ticket: UpdateTicket, timeout: float | None
    ) -> object:
        """The answer to an update posted to the engine of the fleet that holds the run.

        Each look at the store runs on a thread; the waits between looks hold none.
        """
        store = self.sync.store
        assert self._loop is not None
        deadline = None if timeout is None else self._loop.time() + timeout
        pause = None
        while True:
            answer = await self._call(look_remote_update, store, ticket)
            if not remote_pending(answer):
                return answer
            if deadline is not None and self._loop.time() >= deadline:
                raise remote_timeout(ticket, timeout)
            pause = next_pause(store, pause)
            left = None if deadline is None else max(0.0, deadline - self._loop.time())
            await asyncio.sleep(pause if left is None else min(pause, left))


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    """Settle *future* from another thread (the engine's decision loop)."""
    loop.call_soon_threadsafe(_settle, future)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
