"""The fleet's test fixtures (a pytest plugin: ``tests/conftest.py``), for every test module
that runs engines of one fleet on the tests' PostgreSQL server (`tests.pg`).

* ``engines``: the engines a test opened, closed after it.
* ``member``: a hand-driven engine of the fleet on the test's database (``ManualClock``;
  keyword arguments are `fg.FleetOptions`' besides ``task_queues`` and ``workflows``).

A module needing other engines (another clock, shared attempts) defines its own fixture of
the same name, which takes precedence there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock

__all__ = ["engines", "member"]


@pytest.fixture
def engines() -> Iterator[list[fg.Engine]]:
    made: list[fg.Engine] = []
    yield made
    for engine in made:
        engine.close()


@pytest.fixture
def member(pg_url: str, engines: list[fg.Engine]) -> Callable[..., fg.Engine]:
    """A hand-driven engine of the fleet on the test's database."""

    def make(
        task_queues: tuple[str, ...] = ("default",),
        workflows: tuple[Any, ...] = (),
        **options: Any,
    ) -> fg.Engine:
        engine = fg.Engine(
            pg_url,
            clock=ManualClock(),
            task_queues=task_queues,
            workflows=workflows,
            fleet=fg.FleetOptions(**options),
        )
        engines.append(engine)
        return engine

    return make
