"""The workflows the fleet tests run, in-process and in ``flowgen worker`` processes.

Import this module as ``tests.fleet_app`` (``flowgen worker --import tests.fleet_app``).
"""

from __future__ import annotations

from typing import Any

import flowgen as fg


@fg.activity
def fleet_double(n: int) -> int:
    return 2 * n


@fg.workflow
def fleet_job(n: int) -> fg.Workflow[list[Any]]:
    """An activity, a signal ``go``, a short timer, another activity."""
    a = yield from fg.call(fleet_double, n)
    signalled = yield from fg.wait_signal("go")
    yield from fg.sleep(0.05)
    b = yield from fg.call(fleet_double, a)
    return [a, signalled, b]


@fg.workflow
def fleet_gated(n: int) -> fg.Workflow[list[Any]]:
    """Wait for the signal ``go``, then an activity."""
    signalled = yield from fg.wait_signal("go")
    return [signalled, (yield from fg.call(fleet_double, n))]


@fg.workflow
def fleet_parent(n: int) -> fg.Workflow[list[Any]]:
    """Run `fleet_gated` as a child (its id: ``<this id>/0``) and return what it returned."""
    return (yield from fg.child(fleet_gated, n))


@fg.activity(task_queue="gpu")
def fleet_on_gpu(n: int) -> int:
    return 3 * n


@fg.workflow
def fleet_gpu_job(n: int) -> fg.Workflow[int]:
    """One activity on the task queue ``gpu``."""
    return (yield from fg.call(fleet_on_gpu, n))


@fg.activity(name="fleet.one_at_a_time", max_concurrent=1)
def fleet_one_at_a_time(n: int) -> int:
    return 4 * n


@fg.workflow
def fleet_limited_job(n: int) -> fg.Workflow[int]:
    """One activity of which one attempt runs at a time, in the whole fleet."""
    return (yield from fg.call(fleet_one_at_a_time, n))


@fg.activity(timeout=10, retry=fg.RetryPolicy(max_attempts=1))
def fleet_bounded(n: int) -> int:
    return 5 * n


@fg.workflow
def fleet_bounded_job(n: int) -> fg.Workflow[int]:
    """One activity with a 10 s start-to-close timeout and no retry."""
    return (yield from fg.call(fleet_bounded, n))


@fg.workflow
def fleet_cart(owner: str) -> fg.Workflow[dict[str, Any]]:
    """Items come in by update (``add``: validated; ``add_when``: waits for a signal
    ``ok`` inside its handler; ``remove``: fails for an unknown item); ``checkout`` ends it."""
    items: list[str] = []

    def check(item: str) -> None:
        if item in items:
            raise ValueError(f"{item!r} is in the cart already")

    def add(item: str) -> int:
        items.append(item)
        return len(items)

    def add_when(item: str) -> fg.Workflow[int]:
        yield from fg.wait_signal("ok")
        items.append(item)
        return len(items)

    def remove(item: str) -> int:
        items.remove(item)
        return len(items)

    yield fg.on_update("add", add, validator=check)
    yield fg.on_update("add_when", add_when, validator=check)
    yield fg.on_update("remove", remove)
    yield from fg.wait_signal("checkout")
    return {"owner": owner, "items": items}
