"""OpenTelemetry: what a tracing backend and a metrics dashboard receive from the engine.

Tested with the real SDK: spans through an `InMemorySpanExporter` (a `SimpleSpanProcessor`
exports each span as it ends), metrics through an `InMemoryMetricReader`. Each test has
providers of its own, passed to the engine (``tracer_provider=``, ``meter_provider=``);
one test goes through the global providers, which a process can set only once.

What a user relies on: a span per run (``workflow <name>``) and per activity attempt
(``activity <name>``) with the attributes a dashboard filters on; the caller's span is the
run's parent and activity spans are the run's children; a run resumed after kill -9, in
another process, continues the same trace; counters and an attempt-latency histogram.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from opentelemetry.trace import StatusCode

import flowgen as fg
from flowgen._stores.codec import event_to_dict
from flowgen.testing import ManualClock
from tests import tracing_workflows as tw

ROOT = Path(__file__).resolve().parent.parent


class Otel:
    """An SDK tracer provider and meter provider of one test, and what they received."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("app")

    def engine(self, path: str = ":memory:", **options: Any) -> fg.Engine:
        options.setdefault("clock", ManualClock())
        return fg.Engine(
            path,
            tracing=True,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            **options,
        )

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        (span,) = self.spans(name)
        return span

    def points(self, metric: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """The data points of *metric*, by their attributes."""
        data = self.reader.get_metrics_data()
        found: dict[frozenset[tuple[str, Any]], Any] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        for point in m.data.data_points:
                            found[frozenset(point.attributes.items())] = point
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    telemetry = Otel()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


def ns(at: datetime) -> int:
    return round(at.timestamp() * 1e6) * 1000


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


# ---------------------------------------------------------------------------------------------
# Spans.


def test_a_run_is_a_span_under_the_callers_span_and_its_attempts_spans_under_it(
    otel: Otel,
) -> None:
    engine = otel.engine()
    with otel.tracer.start_as_current_span("POST /ship") as request:
        handle = engine.start(tw.traced_shipping, "o-1", id="ship-o-1")
    engine.run_until_idle()
    assert handle.result() == "shipped o-1"
    history = handle.history()
    engine.close()

    run = otel.span("workflow traced_shipping")
    first, second = otel.spans("activity traced_flaky")
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in (run, first, second)} == {trace_id}
    assert parent_id(run) == request.get_span_context().span_id
    assert parent_id(first) == parent_id(second) == run.context.span_id
    assert dict(run.attributes or {}) == {
        "flowgen.workflow.id": "ship-o-1",
        "flowgen.run.id": handle.run_id,
        "flowgen.workflow.name": "traced_shipping",
        "flowgen.status": "completed",
    }
    assert run.status.status_code is StatusCode.UNSET
    assert dict(first.attributes or {}) == {
        "flowgen.workflow.id": "ship-o-1",
        "flowgen.run.id": handle.run_id,
        "flowgen.workflow.name": "traced_shipping",
        "flowgen.activity.name": "traced_flaky",
        "flowgen.seq": 0,
        "flowgen.attempt": 1,
        "flowgen.status": "retrying",
        "flowgen.error.type": "ConnectionError",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert first.status.description == "ConnectionError: first attempt drops"
    (exception,) = first.events
    assert exception.name == "exception"
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ConnectionError"
    assert "first attempt drops" in str(exception.attributes["exception.stacktrace"])
    assert second.attributes is not None
    assert second.attributes["flowgen.attempt"] == 2
    assert second.attributes["flowgen.status"] == "completed"
    assert second.status.status_code is StatusCode.UNSET

    # The run's span covers the run as its history records it, attempts inside it.
    assert run.start_time == ns(history[0].at)
    assert run.end_time == ns(history[-1].at)
    for attempt in (first, second):
        assert run.start_time <= attempt.start_time <= attempt.end_time  # type: ignore[operator]
        assert attempt.end_time <= run.end_time  # type: ignore[operator]


def test_the_history_keeps_the_runs_span_as_w3c_trace_context(otel: Otel) -> None:
    engine = otel.engine()
    with otel.tracer.start_as_current_span("POST /ship") as request:
        handle = engine.start(tw.traced_shipping, "o-1")
    engine.run_until_idle()
    started = handle.history()[0]
    engine.close()
    assert isinstance(started, fg.WorkflowStarted)
    run = otel.span("workflow traced_shipping").context
    assert started.trace_context is not None
    version, trace_hex, span_hex, _flags = started.trace_context["traceparent"].split(
        "-"
    )
    assert version == "00"
    assert (int(trace_hex, 16), int(span_hex, 16)) == (run.trace_id, run.span_id)
    assert int(started.trace_context["parent_span_id"], 16) == (
        request.get_span_context().span_id
    )


def test_a_failed_run_and_its_failed_attempts_are_errors_naming_the_error_type(
    otel: Otel,
) -> None:
    engine = otel.engine()
    handle = engine.start(tw.traced_declined, "o-2")
    engine.run_until_idle()
    with pytest.raises(fg.WorkflowFailed):
        handle.result()
    engine.close()
    run = otel.span("workflow traced_declined")
    assert run.attributes is not None
    assert run.attributes["flowgen.status"] == "failed"
    assert run.attributes["flowgen.error.type"] == "ActivityError"
    assert run.status.status_code is StatusCode.ERROR
    statuses = [
        (s.attributes or {}).get("flowgen.status")
        for s in otel.spans("activity traced_decline")
    ]
    assert statuses == ["retrying", "failed"]
    for attempt in otel.spans("activity traced_decline"):
        assert attempt.status.status_code is StatusCode.ERROR
        assert (attempt.attributes or {})["flowgen.error.type"] == "Declined"


def test_a_run_started_outside_any_span_starts_a_trace_of_its_own(otel: Otel) -> None:
    engine = otel.engine()
    engine.start(tw.traced_shipping, "o-3")
    engine.start(tw.traced_shipping, "o-4")
    engine.run_until_idle()
    engine.close()
    runs = otel.spans("workflow traced_shipping")
    assert [s.parent for s in runs] == [None, None]
    assert len({s.context.trace_id for s in runs}) == 2
    for run in runs:
        attempts = [
            s
            for s in otel.spans("activity traced_flaky")
            if s.context.trace_id == run.context.trace_id
        ]
        assert len(attempts) == 2
        assert {parent_id(s) for s in attempts} == {run.context.span_id}


def test_a_child_runs_span_and_a_continued_runs_span_are_children_of_the_starting_run(
    otel: Otel,
) -> None:
    engine = otel.engine()
    with otel.tracer.start_as_current_span("request") as request:
        engine.start(tw.traced_parent, "o-5")
        engine.start(tw.traced_countdown, 2)
    engine.run_until_idle()
    engine.close()
    trace_id = request.get_span_context().trace_id
    parent = otel.span("workflow traced_parent")
    child = otel.span("workflow traced_shipping")
    assert parent_id(parent) == request.get_span_context().span_id
    assert parent_id(child) == parent.context.span_id
    assert {parent_id(s) for s in otel.spans("activity traced_flaky")} == {
        child.context.span_id
    }
    # Run n+1 of a continue-as-new chain was started by run n.
    chain = sorted(otel.spans("workflow traced_countdown"), key=lambda s: s.start_time)  # type: ignore[arg-type, return-value]
    assert [(s.attributes or {})["flowgen.status"] for s in chain] == [
        "continued_as_new",
        "continued_as_new",
        "completed",
    ]
    assert parent_id(chain[0]) == request.get_span_context().span_id
    assert [parent_id(s) for s in chain[1:]] == [s.context.span_id for s in chain[:-1]]
    assert {s.context.trace_id for s in otel.spans()} == {trace_id}


def test_an_attempts_span_is_current_while_the_activity_runs(otel: Otel) -> None:
    seen: list[trace.SpanContext] = []

    @fg.activity(name="traced_lookup")
    def lookup(order: str) -> str:
        # What an instrumented library (an HTTP client) does inside the activity.
        with otel.tracer.start_as_current_span("GET /stock"):
            seen.append(trace.get_current_span().get_span_context())
        return order

    @fg.activity(name="traced_async_lookup")
    async def async_lookup(order: str) -> str:
        with otel.tracer.start_as_current_span("GET /price"):
            seen.append(trace.get_current_span().get_span_context())
        return order

    @fg.workflow(name="traced_lookups")
    def lookups(order: str) -> Any:
        yield fg.call(lookup, order)
        return (yield fg.call(async_lookup, order))

    engine = otel.engine()
    engine.start(lookups, "o-6")
    engine.run_until_idle()
    engine.close()
    assert parent_id(otel.span("GET /stock")) == (
        otel.span("activity traced_lookup").context.span_id
    )
    assert parent_id(otel.span("GET /price")) == (
        otel.span("activity traced_async_lookup").context.span_id
    )
    # The activity's span is no longer current once the attempt is over.
    assert not trace.get_current_span().get_span_context().is_valid
    assert len(seen) == 2


def test_an_engine_in_the_background_traces_from_its_own_threads(otel: Otel) -> None:
    with (
        otel.engine(clock=None) as engine,
        otel.tracer.start_as_current_span("request") as request,
    ):
        handle = engine.start(tw.traced_shipping, "o-7")
        assert handle.result(timeout=60) == "shipped o-7"
    # Closing joined the engine's threads: every span is exported.
    run = otel.span("workflow traced_shipping")
    assert parent_id(run) == request.get_span_context().span_id
    assert {parent_id(s) for s in otel.spans("activity traced_flaky")} == {
        run.context.span_id
    }


def test_an_async_engines_start_takes_the_callers_span_as_parent(otel: Otel) -> None:
    from flowgen.aio import AsyncEngine

    async def handle_request() -> trace.SpanContext:
        async with AsyncEngine(
            ":memory:",
            tracing=True,
            tracer_provider=otel.tracer_provider,
            meter_provider=otel.meter_provider,
        ) as engine:
            with otel.tracer.start_as_current_span("POST /ship") as request:
                handle = await engine.start(tw.traced_shipping, "o-17")
            assert await handle.result(timeout=60) == "shipped o-17"
        return request.get_span_context()

    request = asyncio.run(handle_request())
    run = otel.span("workflow traced_shipping")
    assert run.context.trace_id == request.trace_id
    assert parent_id(run) == request.span_id
    assert {parent_id(s) for s in otel.spans("activity traced_flaky")} == {
        run.context.span_id
    }


def test_without_tracing_nothing_is_recorded_and_histories_are_as_before(
    otel: Otel,
) -> None:
    engine = fg.Engine(":memory:", clock=ManualClock())
    with otel.tracer.start_as_current_span("request"):
        handle = engine.start(tw.traced_shipping, "o-8")
    engine.run_until_idle()
    assert "trace_context" not in event_to_dict(handle.history()[0])
    engine.close()
    assert otel.spans() == [otel.span("request")]


class BrokenSampler(Sampler):
    """A sampler that raises: a broken tracing setup, as a bad plugin makes one."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        raise RuntimeError("the sampler is broken")

    def get_description(self) -> str:
        return "BrokenSampler"


def test_a_broken_tracing_setup_never_stops_a_run(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    broken = TracerProvider(sampler=BrokenSampler())
    engine = fg.Engine(
        ":memory:",
        clock=ManualClock(),
        tracing=True,
        tracer_provider=broken,
        meter_provider=otel.meter_provider,
    )
    with otel.tracer.start_as_current_span("request"):
        handle = engine.start(tw.traced_shipping, "o-15")
    engine.run_until_idle()
    assert handle.result() == "shipped o-15"
    engine.close()
    assert "flowgen: tracing failed" in caplog.text
    # What does not depend on the broken part still works: the metrics.
    assert len(otel.points("flowgen.activity.duration")) == 2


def test_providers_without_tracing_are_refused(otel: Otel) -> None:
    with pytest.raises(ValueError, match="tracing=True"):
        fg.Engine(":memory:", tracer_provider=otel.tracer_provider)


def test_flowgen_works_without_opentelemetry_and_tracing_names_the_extra(
    tmp_path: Path,
) -> None:
    # A fresh interpreter where `import opentelemetry` fails, as without the extra.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # an import of it now raises ImportError
        import flowgen as fg
        from tests import tracing_workflows as tw
        engine = fg.Engine(sys.argv[1], clock=fg.testing.ManualClock())
        handle = engine.start(tw.traced_shipping, "o-9")
        engine.run_until_idle()
        assert handle.result() == "shipped o-9", handle.result()
        engine.close()
        try:
            fg.Engine(":memory:", tracing=True)
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "plain.duckdb")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "Engine(tracing=True) needs OpenTelemetry, which is not installed: "
        'pip install "flowgen-durable[otel]"'
    )


def test_flowgen_does_not_import_opentelemetry_unless_tracing() -> None:
    script = textwrap.dedent(
        """
        import sys
        import flowgen as fg
        engine = fg.Engine(":memory:")
        engine.close()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Metrics.


def test_counters_of_runs_and_a_histogram_of_attempt_latency(otel: Otel) -> None:
    clock = ManualClock()

    @fg.activity(name="traced_slow")
    def slow(seconds: float) -> float:
        clock.advance(seconds)  # the attempt takes this long by the engine's clock
        return seconds

    @fg.workflow(name="traced_slow_steps")
    def slow_steps() -> Any:
        yield fg.call(slow, 0.5)
        yield fg.call(slow, 2.0)
        return "done"

    engine = otel.engine(clock=clock)
    for order in ("o-10", "o-11"):
        engine.start(tw.traced_shipping, order)
    engine.start(tw.traced_declined, "o-12")
    engine.start(slow_steps)
    engine.run_until_idle()
    # The histogram holds the durations the activity_attempts view does.
    [(in_sql,)] = engine.sql(
        "select sum(duration_s) from activity_attempts where name = 'traced_slow'"
    ).fetchall()
    engine.close()

    def counts(metric: str) -> dict[str, int]:
        return {
            dict(key)["flowgen.workflow.name"]: point.value
            for key, point in otel.points(metric).items()
        }

    assert counts("flowgen.workflows.started") == {
        "traced_shipping": 2,
        "traced_declined": 1,
        "traced_slow_steps": 1,
    }
    assert counts("flowgen.workflows.completed") == {
        "traced_shipping": 2,
        "traced_slow_steps": 1,
    }
    assert counts("flowgen.workflows.failed") == {"traced_declined": 1}
    closed = {
        tuple(sorted(dict(key).values())): point.value
        for key, point in otel.points("flowgen.workflows.closed").items()
    }
    assert closed == {
        ("completed", "traced_shipping"): 2,
        ("completed", "traced_slow_steps"): 1,
        ("failed", "traced_declined"): 1,
    }
    latency = {
        (dict(key)["flowgen.activity.name"], dict(key)["flowgen.status"]): point
        for key, point in otel.points("flowgen.activity.duration").items()
    }
    assert {k: p.count for k, p in latency.items()} == {
        ("traced_flaky", "retrying"): 2,
        ("traced_flaky", "completed"): 2,
        ("traced_decline", "retrying"): 1,
        ("traced_decline", "failed"): 1,
        ("traced_slow", "completed"): 2,
    }
    assert latency["traced_slow", "completed"].sum == pytest.approx(2.5)
    assert in_sql == pytest.approx(2.5)
    assert latency["traced_slow", "completed"].max == pytest.approx(2.0)


def test_the_global_providers_are_used_by_default_even_when_set_after_the_engine() -> (
    None
):
    # The global providers can be set once per process: in a fresh one.
    script = textwrap.dedent(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        import flowgen as fg
        from tests import tracing_workflows as tw

        def engine():
            return fg.Engine(":memory:", clock=fg.testing.ManualClock(), tracing=True)

        early = engine()  # opened before OpenTelemetry is configured
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        late = engine()

        for order, e in (("o-13", early), ("o-16", late)):
            with trace.get_tracer("app").start_as_current_span("request") as request:
                e.start(tw.traced_shipping, order)
            e.run_until_idle()
            e.close()
            parent = request.get_span_context()
            spans = [
                s for s in exporter.get_finished_spans()
                if s.context.trace_id == parent.trace_id and s.name != "request"
            ]
            (run,) = [s for s in spans if s.name.startswith("workflow")]
            linked = run.parent.span_id == parent.span_id and all(
                s.parent.span_id == run.context.span_id for s in spans if s is not run
            )
            print(order, sorted(s.name for s in spans), linked)
        started = [
            point.value
            for r in reader.get_metrics_data().resource_metrics
            for s in r.scope_metrics
            for m in s.metrics if m.name == "flowgen.workflows.started"
            for point in m.data.data_points
        ]
        print(started)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names = [
        "activity traced_flaky",
        "activity traced_flaky",
        "workflow traced_shipping",
    ]
    assert done.stdout.strip().splitlines() == [
        f"o-13 {names} True",
        f"o-16 {names} True",
        "[2]",
    ]


# ---------------------------------------------------------------------------------------------
# A run that outlives its process.


def test_a_run_resumed_on_another_engine_continues_its_trace(
    otel: Otel, tmp_path: Path
) -> None:
    db = str(tmp_path / "shop.duckdb")
    first = Otel()
    engine = first.engine(db)
    with first.tracer.start_as_current_span("POST /ship") as request:
        handle = engine.start(tw.traced_shipping, "o-14")
    engine.close()  # before any attempt ran: the run resumes on the next open
    assert first.spans() == [first.span("POST /ship")]

    second = otel.engine(db)  # another engine, another provider (another process, say)
    second.run_until_idle()
    resumed = second.get(handle.workflow_id)
    assert resumed.result() == "shipped o-14"
    history = resumed.history()
    second.close()
    run = otel.span("workflow traced_shipping")
    assert run.context.trace_id == request.get_span_context().trace_id
    assert parent_id(run) == request.get_span_context().span_id
    assert run.start_time == ns(history[0].at)
    attempts = otel.spans("activity traced_flaky")
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.context.trace_id == request.get_span_context().trace_id
        assert parent_id(attempt) == run.context.span_id
    # Resuming is not starting: the run was counted where it started.
    assert otel.points("flowgen.workflows.started") == {}
    assert list(otel.points("flowgen.workflows.completed")) == [
        frozenset({("flowgen.workflow.name", "traced_shipping")})
    ]


def test_a_run_killed_with_sigkill_mid_way_continues_its_trace_when_resumed(
    otel: Otel, tmp_path: Path
) -> None:
    db = tmp_path / "shop.duckdb"
    spans_file = tmp_path / "worker-spans.jsonl"
    blocked = tmp_path / "charge-started"
    env = {**os.environ, tw.CHARGE_BLOCKS: str(blocked)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.tracing_workflows", str(db), str(spans_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120  # a hang guard, not a timing assertion
        while not blocked.exists():
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            assert time.monotonic() < deadline, "the worker never reached the charge"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
        if worker.stderr:
            worker.stderr.close()

    # What the killed worker exported: its request span, and the first step's attempt.
    before = {
        span["name"]: span
        for span in map(json.loads, spans_file.read_text().splitlines())
    }
    assert set(before) == {"POST /checkout", "activity traced_reserve"}
    request = before["POST /checkout"]["context"]
    reserve = before["activity traced_reserve"]

    engine = otel.engine(str(db), clock=None)  # recovers the run, by hand
    engine.run_until_idle()
    handle = engine.get("checkout-o-1")
    assert handle.result() == "reserved o-1, charged o-1"
    history = handle.history()
    engine.close()

    run = otel.span("workflow traced_checkout")
    charge = otel.span("activity traced_charge")
    trace_id = int(request["trace_id"], 16)
    assert run.context.trace_id == charge.context.trace_id == trace_id
    assert int(reserve["context"]["trace_id"], 16) == trace_id
    # The run's span is the parent of attempts in both processes, the request its parent.
    assert int(reserve["parent_id"], 16) == run.context.span_id
    assert parent_id(charge) == run.context.span_id
    assert parent_id(run) == int(request["span_id"], 16)
    assert run.start_time == ns(history[0].at)
    assert run.end_time == ns(history[-1].at)
    assert (charge.attributes or {})["flowgen.workflow.id"] == "checkout-o-1"


# ---------------------------------------------------------------------------------------------
# Runs started from other runs: reset, retry, continue-as-new, schedules.


def origin(span: ReadableSpan) -> object:
    return (span.attributes or {}).get("flowgen.origin")


def test_a_retried_and_a_reset_run_link_to_the_span_of_the_run_they_came_from(
    otel: Otel, tmp_path: Path
) -> None:
    db = str(tmp_path / "shop.duckdb")
    engine = otel.engine(db)
    failed = engine.start(tw.traced_declined, "o-20", id="order-20")
    engine.run_until_idle()
    assert failed.status() == "failed"
    first_run = failed.run_id
    with otel.tracer.start_as_current_span("POST /retry") as request:
        engine.retry("order-20")
    engine.close()  # before the retried run ran: it resumes on the next open
    engine = otel.engine(db)
    engine.run_until_idle()
    retried = engine.get("order-20")
    assert retried.status() == "failed"
    reset = engine.reset("order-20", event_id=0, run_id=first_run)  # outside any span
    engine.run_until_idle()
    engine.close()
    spans = {
        (s.attributes or {})["flowgen.run.id"]: s
        for s in otel.spans("workflow traced_declined")
    }
    original, again, copy = (
        spans[first_run],
        spans[retried.run_id],
        spans[reset.run_id],
    )
    assert origin(original) is None and not original.links
    # The retry: a child of the span it was asked from, linked to the run it retries.
    assert parent_id(again) == request.get_span_context().span_id
    assert again.context.trace_id == request.get_span_context().trace_id
    assert origin(again) == f"retry of run {first_run}"
    (link,) = again.links
    assert link.context.span_id == original.context.span_id
    assert link.context.trace_id == original.context.trace_id
    assert (link.attributes or {})["flowgen.origin"] == f"retry of run {first_run}"
    # The reset: asked outside any span, so a trace of its own, linked all the same.
    assert copy.parent is None
    assert copy.context.trace_id != original.context.trace_id
    assert origin(copy) == f"reset of run {first_run}"
    assert [link.context.span_id for link in copy.links] == [original.context.span_id]
    # Its attempts are under its own span.
    assert any(
        parent_id(s) == copy.context.span_id
        for s in otel.spans("activity traced_decline")
    )


def test_a_continued_run_links_to_the_run_it_continues(otel: Otel) -> None:
    engine = otel.engine()
    handle = engine.start(tw.traced_countdown, 1)
    engine.run_until_idle()
    assert handle.result() == 0
    engine.close()
    chain = sorted(otel.spans("workflow traced_countdown"), key=lambda s: s.start_time)  # type: ignore[arg-type, return-value]
    first, second = chain
    assert not first.links and origin(first) is None
    assert parent_id(second) == first.context.span_id
    assert origin(second) == (
        f"continue_as_new of run {(first.attributes or {})['flowgen.run.id']}"
    )
    assert [link.context.span_id for link in second.links] == [first.context.span_id]


def test_a_schedules_runs_say_so_and_a_trigger_is_a_child_of_its_callers_span(
    otel: Otel,
) -> None:
    clock = ManualClock()
    engine = otel.engine(clock=clock)
    engine.schedule("nightly", tw.traced_shipping, "o-30", cron="0 3 * * *")
    with otel.tracer.start_as_current_span("POST /trigger") as request:
        triggered = engine.trigger_schedule("nightly")
    engine.run_until_idle()  # the triggered run ends (else overlap="skip" skips 03:00)
    clock.set(clock.now().replace(hour=3, minute=0, second=0) + timedelta(days=1))
    engine.run_until_idle()
    engine.close()
    spans = {
        (s.attributes or {})["flowgen.workflow.id"]: s
        for s in otel.spans("workflow traced_shipping")
    }
    assert triggered is not None
    by_trigger = spans.pop(triggered)
    (fired,) = spans.values()
    assert parent_id(by_trigger) == request.get_span_context().span_id
    assert origin(by_trigger) == origin(fired) == "schedule nightly"
    assert fired.parent is None  # fired by the scheduler: a trace of its own
    assert not fired.links and not by_trigger.links
