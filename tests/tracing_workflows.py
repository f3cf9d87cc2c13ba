"""Workflows `test_tracing.py` traces, in this process and in a worker it kills with SIGKILL.

``python -m tests.tracing_workflows DB SPANS`` is that worker: it opens ``fg.Engine(DB,
tracing=True)`` in the background with an SDK TracerProvider that writes every finished span
to SPANS (one JSON object a line, flushed at once), starts `traced_checkout` inside a span of
its own (``POST /checkout``), and waits to be killed. Its `traced_charge` blocks for good when
``TRACED_CHARGE_BLOCKS`` names a file (which it creates first): the test kills the worker as
soon as that file exists, so the run is left mid-way, its first step done and traced.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import flowgen as fg

CHARGE_BLOCKS = "TRACED_CHARGE_BLOCKS"


@fg.activity
def traced_reserve(order: str) -> str:
    return f"reserved {order}"


@fg.activity
def traced_charge(order: str) -> str:
    blocks = os.environ.get(CHARGE_BLOCKS)
    if blocks:
        Path(blocks).touch()
        time.sleep(3600)  # killed here
    return f"charged {order}"


class Declined(Exception):
    """A card that never works."""


@fg.activity(retry=fg.RetryPolicy(max_attempts=2, initial_interval=0.01))
def traced_decline(order: str) -> str:
    raise Declined(f"card declined for {order}")


@fg.activity(retry=fg.RetryPolicy(max_attempts=3, initial_interval=0.01))
def traced_flaky(order: str) -> str:
    if fg.activity_info().attempt == 1:
        raise ConnectionError("first attempt drops")
    return f"shipped {order}"


@fg.workflow
def traced_checkout(order: str) -> Generator[Any, Any, str]:
    reserved = yield fg.call(traced_reserve, order)
    charged = yield fg.call(traced_charge, order)
    return f"{reserved}, {charged}"


@fg.workflow
def traced_declined(order: str) -> Generator[Any, Any, str]:
    return (yield fg.call(traced_decline, order))


@fg.workflow
def traced_shipping(order: str) -> Generator[Any, Any, str]:
    return (yield fg.call(traced_flaky, order))


@fg.workflow
def traced_parent(order: str) -> Generator[Any, Any, str]:
    return (yield fg.child(traced_shipping, order))


@fg.workflow
def traced_countdown(n: int) -> Generator[Any, Any, int]:
    yield fg.call(traced_reserve, str(n))
    if n > 0:
        yield fg.continue_as_new(n - 1)
    return n


def main(db: str, spans: str) -> None:
    """The worker: start `traced_checkout` under a span of its own, then wait to die."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    def one_line(span: ReadableSpan) -> str:
        return span.to_json(indent=None) + "\n"

    out = open(spans, "w")  # written until the process is killed
    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=out, formatter=one_line)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with fg.Engine(db, tracing=True, tracer_provider=provider) as engine:
        with provider.get_tracer("shop").start_as_current_span("POST /checkout"):
            engine.start(traced_checkout, "o-1", id="checkout-o-1")
        time.sleep(3600)


if __name__ == "__main__":
    main(*sys.argv[1:3])
