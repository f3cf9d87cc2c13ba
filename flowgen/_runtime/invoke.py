"""Running one activity attempt: plain functions, bound methods and ``async def`` alike.

The engine calls `run_attempt` on a worker thread (or inline, when driven by hand). Inside,
`activity_info` tells the activity who it is working for, including an idempotency key that
is the same for every attempt and every replay of the call: pass it to the payment provider,
and a retried charge cannot charge twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from datetime import datetime

import attrs

__all__ = ["ActivityInfo", "ActivityTimeout", "activity_info", "run_attempt"]


@attrs.frozen
class ActivityInfo:
    """Who an activity attempt is working for (see `activity_info`).

    Attributes:
        workflow_id: The calling run's workflow id.
        run_id: The calling run's id.
        seq: The call's sequence number in the run.
        name: The activity's registered name.
        attempt: This attempt's number, from 1.
        scheduled_at: When the workflow asked for the call.
        idempotency_key: ``"<workflow_id>/<run_id>/<seq>"``: the same for every attempt and
            every replay of this call, different for every other call.
    """

    workflow_id: str
    run_id: str
    seq: int
    name: str
    attempt: int
    scheduled_at: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """A key that identifies this call across retries, replays and restarts."""
        return f"{self.workflow_id}/{self.run_id}/{self.seq}"


class ActivityTimeout(TimeoutError):
    """An activity attempt ran past its start-to-close timeout."""


_current: contextvars.ContextVar[ActivityInfo] = contextvars.ContextVar(
    "flowgen_activity"
)


def activity_info() -> ActivityInfo:
    """The `ActivityInfo` of the activity attempt running in this thread or task.

    Raises:
        RuntimeError: When called outside an activity.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError(
            "fg.activity_info() can only be called inside an activity"
        ) from None


def run_attempt(
    fn: Callable[..., object],
    args: list[object],
    kwargs: dict[str, object],
    info: ActivityInfo,
    timeout: float | None = None,
) -> object:
    """Run one attempt of *fn* and return its result (exceptions propagate).

    ``async def`` activities run in a fresh event loop, where *timeout* cancels them; a plain
    function's timeout is enforced by the engine, which stops waiting for it.
    """
    token = _current.set(info)
    try:
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004  # async callables objects too
        ):
            return asyncio.run(_run_async(fn, args, kwargs, info, timeout))
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):  # a sync wrapper that returned a coroutine
            return asyncio.run(_await(result, info, timeout))
        return result
    finally:
        _current.reset(token)


async def _run_async(
    fn: Callable[..., object],
    args: list[object],
    kwargs: dict[str, object],
    info: ActivityInfo,
    timeout: float | None,
) -> object:
    awaitable = fn(*args, **kwargs)
    assert inspect.isawaitable(awaitable)
    return await _await(awaitable, info, timeout)


async def _await(
    awaitable: object, info: ActivityInfo, timeout: float | None
) -> object:
    _current.set(info)
    assert inspect.isawaitable(awaitable)
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise ActivityTimeout(
            f"activity {info.name!r} attempt {info.attempt} ran past its {timeout} s timeout"
        ) from None
