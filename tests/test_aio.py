"""flowgen.aio: the engine's API as coroutines, on a real DuckDB file and a real loop.

Also serves the FastAPI example of docs/examples through a real ASGI server (uvicorn) on a
loopback socket and drives an order end to end over HTTP.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import flowgen as fg
from flowgen._runtime.engine import Engine
from flowgen.aio import AsyncEngine, AsyncWorkflowHandle
from flowgen.testing import ManualClock

ROOT = Path(__file__).resolve().parent.parent


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 120))  # a hang guard, not a speed target


@fg.activity
def aio_add(a: int, b: int) -> int:
    return a + b


@fg.activity
def aio_thread_of_plain() -> int:
    return threading.get_ident()


APP_QUEUE: dict[str, asyncio.Queue[str]] = {}


@fg.activity
async def aio_put_on_app_queue(text: str) -> int:
    await APP_QUEUE["queue"].put(text)
    return threading.get_ident()


@fg.workflow
def aio_adder(a: int, b: int) -> fg.Workflow[int]:
    total = yield fg.call(aio_add, a, b)
    more = yield fg.wait_signal("more")
    assert isinstance(more, int)
    return total + more


@fg.workflow
def aio_threads(text: str) -> fg.Workflow[tuple[int, int]]:
    on_loop = yield fg.call(aio_put_on_app_queue, text)
    plain = yield fg.call(aio_thread_of_plain)
    return (on_loop, plain)


@fg.workflow
def aio_waiter() -> fg.Workflow[str]:
    value = yield fg.wait_signal("go")
    return str(value)


def test_start_signal_query_and_result_on_a_duckdb_file(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(str(tmp_path / "aio.duckdb")) as engine:
            handle = await engine.start(aio_adder, 1, 2, id="adder-1")
            assert isinstance(handle, AsyncWorkflowHandle)
            assert await handle.status() == "running"
            await engine.signal("adder-1", "more", 4)
            assert await handle.result(timeout=60) == 7
            again = await engine.get("adder-1")
            assert again.run_id == handle.run_id
            assert await again.status() == "completed"
            history = await again.history()
            assert type(history[-1]).__name__ == "WorkflowCompleted"
            with pytest.raises(fg.UnknownWorkflow):
                await engine.get("no-such-id")

    run(main)
    # The runs are in the file, as the synchronous engine sees it.
    with fg.Engine(str(tmp_path / "aio.duckdb")) as engine:
        assert engine.get("adder-1").result(timeout=10) == 7


def test_start_many_signal_with_start_and_cancel(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(str(tmp_path / "aio.duckdb")) as engine:
            handles = await engine.start_many(aio_waiter, [(), ()], ids=["w-1", "w-2"])
            assert [h.workflow_id for h in handles] == ["w-1", "w-2"]
            started = await engine.signal_with_start(
                aio_waiter, id="w-3", signal="go", payload="three"
            )
            assert await started.result(timeout=60) == "three"
            await handles[0].signal("go", "one")
            assert await handles[0].result(timeout=60) == "one"
            await handles[1].cancel("not needed")
            with pytest.raises(fg.WorkflowFailed) as failed:
                await handles[1].result(timeout=60)
            assert failed.value.status == "cancelled"

    run(main)


def test_async_activities_run_on_the_loop_the_engine_was_entered_on(
    tmp_path: Path,
) -> None:
    # The app's queue is bound to the app's loop: an activity run on a fresh loop of its
    # own (the synchronous engine's way) could not use it.
    async def main() -> None:
        queue: asyncio.Queue[str] = asyncio.Queue()
        APP_QUEUE["queue"] = queue
        consumer = asyncio.create_task(queue.get())
        await asyncio.sleep(0)  # the consumer now waits on the app's loop
        loop_thread = threading.get_ident()
        async with AsyncEngine(str(tmp_path / "aio.duckdb")) as engine:
            handle = await engine.start(aio_threads, "hello")
            on_loop, plain = await handle.result(timeout=60)
        assert on_loop == loop_thread
        assert plain != loop_thread  # a plain function never blocks the loop
        assert await consumer == "hello"

    run(main)


def test_blocking_engine_calls_run_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, set[int]] = {"start": set(), "signal": set()}
    real_start, real_signal = Engine.start, Engine.signal

    def start(self: Engine, *args: Any, **kwargs: Any) -> Any:
        threads["start"].add(threading.get_ident())
        return real_start(self, *args, **kwargs)

    def signal(self: Engine, *args: Any, **kwargs: Any) -> Any:
        threads["signal"].add(threading.get_ident())
        return real_signal(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "start", start)
    monkeypatch.setattr(Engine, "signal", signal)

    async def main() -> None:
        loop_thread = threading.get_ident()
        async with AsyncEngine(str(tmp_path / "aio.duckdb")) as engine:
            handle = await engine.start(aio_waiter, id="off-loop")
            await engine.signal("off-loop", "go", 1)
            assert await handle.result(timeout=60) == "1"
        assert threads["start"] and loop_thread not in threads["start"]
        assert threads["signal"] and loop_thread not in threads["signal"]

    run(main)


def test_waiting_for_many_results_holds_no_thread(tmp_path: Path) -> None:
    # 200 results awaited at once, more than the threads that carry blocking calls: if a
    # waiter held one, the signals below could never run.
    count = 200

    async def main() -> None:
        async with AsyncEngine(str(tmp_path / "aio.duckdb")) as engine:
            handles = await engine.start_many(
                aio_waiter,
                [() for _ in range(count)],
                ids=[f"m-{i}" for i in range(count)],
            )
            waiters = [asyncio.create_task(h.result(timeout=90)) for h in handles]
            await asyncio.sleep(0)
            threads_while_waiting = threading.active_count()
            await asyncio.gather(*(h.signal("go", i) for i, h in enumerate(handles)))
            results = await asyncio.gather(*waiters)
        assert results == [str(i) for i in range(count)]
        assert threads_while_waiting < count

    run(main)


def test_a_result_not_ready_in_time_raises_timeout_error(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(str(tmp_path / "aio.duckdb")) as engine:
            handle = await engine.start(aio_waiter, id="never")
            with pytest.raises(TimeoutError, match="never"):
                await handle.result(timeout=0.05)
            assert await handle.status() == "running"

    run(main)


def test_an_engine_not_entered_says_how_to_use_it() -> None:
    engine = AsyncEngine(":memory:")

    async def main() -> None:
        with pytest.raises(fg.UsageError, match="async with AsyncEngine"):
            await engine.start(aio_waiter)

    run(main)


def _load_example() -> Any:
    path = ROOT / "docs" / "examples" / "fastapi_orders.py"
    spec = importlib.util.spec_from_file_location("fastapi_orders", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastapi_orders"] = module
    spec.loader.exec_module(module)
    return module


def test_the_fastapi_example_serves_an_order_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORDERS_DB", str(tmp_path / "orders.duckdb"))
    example = _load_example()

    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(example.app, log_level="warning", lifespan="on")
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=60
            ) as client:
                placed = await client.post("/orders/o-1")
                assert placed.status_code == 200, placed.text
                assert placed.json() == {
                    "workflow_id": "order-o-1",
                    "status": "running",
                }
                missing = await client.post("/orders/nope/approve")
                assert missing.status_code == 404
                approved = await client.post("/orders/o-1/approve")
                assert approved.status_code == 200, approved.text
                done = await client.get("/orders/o-1", params={"wait": 60})
                assert done.json() == {"status": "completed", "result": "receipt-o-1"}
            assert example.notifications.get_nowait() == "o-1: charged"
        finally:
            server.should_exit = True
            await serving

    run(main)


def test_reset_retry_and_prune(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(str(tmp_path / "aio.duckdb")) as engine:
            first = await engine.start(aio_adder, 1, 2, id="adder-2")
            await engine.signal("adder-2", "more", 4)
            assert await first.result(timeout=60) == 7
            # Events: started, scheduled, completed, signal_wait_started, signal, ...
            reset = await engine.reset("adder-2", event_id=3)
            assert await reset.status() == "running"  # waits for "more" again
            await engine.signal("adder-2", "more", 10)
            assert await reset.result(timeout=60) == 13
            retried = await engine.retry("adder-2")
            await engine.signal("adder-2", "more", 0)
            assert await retried.result(timeout=60) == 3
            assert len({first.run_id, reset.run_id, retried.run_id}) == 3
            await engine.start(aio_waiter, id="w-9")
            with pytest.raises(fg.WorkflowStillRunning):
                await engine.retry("w-9")
            pruned = await engine.prune("30d")
            assert pruned.runs == 0  # nothing is that old


AIO_CLOCK = ManualClock()
AIO_SEEN: list[fg.ActivityInfo] = []


@fg.activity(
    heartbeat_timeout=10, retry=fg.RetryPolicy(max_attempts=2, initial_interval=0)
)
async def aio_count_up(to: int) -> int:
    """Counts up, heartbeating each number; attempt 1 stalls for a minute at 3."""
    info = fg.activity_info()
    AIO_SEEN.append(info)
    start = info.heartbeat_details or 0
    assert isinstance(start, int)
    for number in range(start, to):
        if number == 3 and info.attempt == 1:
            AIO_CLOCK.advance(
                60
            )  # no heartbeat for 60 s: this heartbeat comes too late
        await asyncio.sleep(0)
        fg.heartbeat(number + 1)
    return start


@fg.workflow
def aio_counter(to: int) -> fg.Workflow[int]:
    return (yield from fg.call(aio_count_up, to))


def test_an_async_activity_heartbeats_and_its_retry_resumes_from_the_details(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        path = str(tmp_path / "aio-heartbeat.duckdb")
        async with AsyncEngine(path, clock=AIO_CLOCK) as engine:
            handle = await engine.start(aio_counter, 5)
            assert await handle.result(timeout=60) == 3  # attempt 2 started at 3
            history = await handle.history()
        (failed,) = [e for e in history if isinstance(e, fg.ActivityAttemptFailed)]
        assert "heartbeat timeout" in failed.error.message
        assert [info.heartbeat_details for info in AIO_SEEN] == [None, 3]

    run(main)


@fg.activity(timeout=0.05)
async def aio_nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@fg.workflow
def aio_napper(seconds: float) -> fg.Workflow[str]:
    return (yield from fg.call(aio_nap, seconds))


def test_an_async_attempt_on_a_manual_clock_times_out_by_that_clock_alone() -> None:
    async def main() -> None:
        # 0.3 s of real time, 0 s of the manual clock: within its 0.05 s timeout.
        async with AsyncEngine(clock=ManualClock()) as engine:
            handle = await engine.start(aio_napper, 0.3)
            assert await handle.result(timeout=60) == "rested"

    run(main)


STUCK_CLOCK = ManualClock()
STUCK_CANCELLED: list[int] = []


@fg.activity(
    heartbeat_timeout=5, retry=fg.RetryPolicy(max_attempts=2, initial_interval=0)
)
async def aio_stuck_once() -> int:
    """Attempt 1 heartbeats, then waits forever: only a cancellation ends it."""
    info = fg.activity_info()
    fg.heartbeat("started")
    if info.attempt == 1:
        try:
            await asyncio.Event().wait()
        finally:
            STUCK_CANCELLED.append(info.attempt)
    return info.attempt


@fg.workflow
def aio_stuck() -> fg.Workflow[int]:
    return (yield from fg.call(aio_stuck_once))


def wait_for_attempt(handle: Any, clock: ManualClock) -> None:
    """Move the manual clock past attempt 1's heartbeat timeout, once it runs."""
    deadline = time.monotonic() + 60  # a hang guard only
    while not any(
        isinstance(e, fg.ActivityHeartbeat) for e in handle.history()
    ):  # attempt 1's first heartbeat is recorded: it runs, and waits
        assert time.monotonic() < deadline, "attempt 1 never heartbeat"
        time.sleep(0.01)
    clock.advance(6)


@pytest.mark.parametrize("on_app_loop", [True, False])
def test_an_async_attempt_past_its_heartbeat_timeout_is_cancelled(
    on_app_loop: bool,
) -> None:
    STUCK_CANCELLED.clear()
    if not on_app_loop:  # a background engine: each attempt on a fresh loop
        with fg.Engine(clock=STUCK_CLOCK) as engine:
            handle = engine.start(aio_stuck)
            wait_for_attempt(handle, STUCK_CLOCK)
            assert handle.result(timeout=60) == 2
    else:

        async def main() -> None:
            async with AsyncEngine(clock=STUCK_CLOCK) as engine:
                handle = await engine.start(aio_stuck)
                await asyncio.to_thread(wait_for_attempt, handle.sync, STUCK_CLOCK)
                assert await handle.result(timeout=60) == 2

        run(main)
    assert STUCK_CANCELLED == [1]  # attempt 1 was cancelled, not left waiting
