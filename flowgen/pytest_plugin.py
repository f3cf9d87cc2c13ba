"""flowgen's pytest plugin, registered by installing flowgen (entry point group ``pytest11``).

Any test of a project that has flowgen installed can ask for these fixtures, with no
``conftest.py`` and no import::

    def test_order(flowgen_engine):
        flowgen_engine.override_activity(charge, fake_charge)
        handle = flowgen_engine.start(order, "o-1")
        flowgen_engine.run_until_idle()
        assert handle.result() == "receipt-o-1"

Rules:

- ``flowgen_engine`` is an `Engine` on a fresh in-memory store (`MemoryStore`) and on
  ``flowgen_clock``, driven by hand: no thread runs, nothing happens between the test's
  own calls (``run_until_idle()``, ``handle.result()``), and sleeps of days take no time.
  It is closed after the test, whatever the test did; its overrides die with it.
- ``flowgen_clock`` is a `ManualClock` that jumps to the next timer when the engine is
  idle. A test that moves time itself overrides the fixture, as pytest fixtures are
  overridden: ``@pytest.fixture def flowgen_clock(): return ManualClock(autojump=False)``.
- Nothing here is global: a test that wants another store or a background engine builds
  its own ``fg.Engine`` (or overrides ``flowgen_engine`` in its ``conftest.py``).

Asserting that stored histories replay on today's code is `flowgen.testing.assert_replays`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowgen._runtime.clock import ManualClock
from flowgen._runtime.engine import Engine
from flowgen._stores.memory import MemoryStore

__all__ = ["flowgen_clock", "flowgen_engine"]


@pytest.fixture
def flowgen_clock() -> ManualClock:
    """The time of ``flowgen_engine``: a `ManualClock` that jumps to the next timer."""
    return ManualClock()


@pytest.fixture
def flowgen_engine(flowgen_clock: ManualClock) -> Iterator[Engine]:
    """An engine on an in-memory store and ``flowgen_clock``, driven by hand, closed after.

    Yields:
        The engine. Replace an activity with ``override_activity(activity, fake)``; run
        what is due with ``run_until_idle()``.
    """
    engine = Engine(store=MemoryStore(), clock=flowgen_clock)
    try:
        yield engine
    finally:
        engine.close()
