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
