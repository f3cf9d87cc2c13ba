"""An order service on FastAPI: flowgen's AsyncEngine on the application's own event loop.

Run it with ``uvicorn docs.examples.fastapi_orders:app`` (``pip install fastapi uvicorn``),
then::

    curl -X POST localhost:8000/orders/o-1                 # starts the workflow
    curl -X POST localhost:8000/orders/o-1/approve         # signals it
    curl localhost:8000/orders/o-1                         # its status, and the result

The engine is opened when the application starts (FastAPI's lifespan) and closed when it
stops; unfinished orders resume on the next start. The ``async def`` activity uses an
``asyncio.Queue`` the application made on its loop: it runs on that same loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, HTTPException

import flowgen as fg
from flowgen.aio import AsyncEngine

# Loop-bound resources of the application (an aiohttp session, an asyncpg pool, ...): here a
# queue of notifications that a background task would send.
notifications: asyncio.Queue[str] = asyncio.Queue()


@fg.activity
async def notify_customer(order_id: str, text: str) -> str:
    await notifications.put(f"{order_id}: {text}")
    return "queued"


@fg.activity
def web_charge(order_id: str) -> str:
    return f"receipt-{order_id}"


@fg.workflow
def web_order(order_id: str) -> fg.Workflow[str]:
    approved = yield fg.wait_signal("approve", timeout=timedelta(days=1))
    if not approved:
        yield fg.call(notify_customer, order_id, "rejected")
        return "rejected"
    receipt = yield fg.call(web_charge, order_id)
    yield fg.call(notify_customer, order_id, "charged")
    return receipt


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncEngine(os.environ.get("ORDERS_DB", "orders.duckdb")) as engine:
        app.state.engine = engine
        yield


app = FastAPI(lifespan=lifespan)


def engine_of() -> AsyncEngine:
    engine: AsyncEngine = app.state.engine
    return engine


@app.post("/orders/{order_id}")
async def place_order(order_id: str) -> dict[str, str]:
    handle = await engine_of().start(
        web_order, order_id, id=f"order-{order_id}", on_conflict="use_existing"
    )
    return {"workflow_id": handle.workflow_id, "status": await handle.status()}


@app.post("/orders/{order_id}/approve")
async def approve(order_id: str) -> dict[str, str]:
    try:
        await engine_of().signal(f"order-{order_id}", "approve", True)
    except fg.UnknownWorkflow:
        raise HTTPException(404, f"no order {order_id}") from None
    return {"signalled": "approve"}


@app.get("/orders/{order_id}")
async def status(order_id: str, wait: float = 0.0) -> dict[str, object]:
    try:
        handle = await engine_of().get(f"order-{order_id}")
    except fg.UnknownWorkflow:
        raise HTTPException(404, f"no order {order_id}") from None
    if wait > 0:
        try:
            return {"status": "completed", "result": await handle.result(timeout=wait)}
        except TimeoutError:
            pass
    return {"status": await handle.status()}
