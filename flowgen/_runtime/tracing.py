"""OpenTelemetry: a span per run, a span per activity attempt, and the engine's metrics.

Turned on by ``Engine(..., tracing=True)``, with ``pip install "flowgen-durable[otel]"``. This is
the only module of flowgen that imports ``opentelemetry``, and only once an engine turns
tracing on (in `Telemetry`): flowgen imports and runs without it.

Spans
=====

- ``workflow <name>``: one per run, from the run's start to its end. Its parent is the span
  that was current where `Engine.start` was called (without one, the run starts a trace);
  the parent of a child workflow's span, and of the next run of a continue-as-new, is the
  span of the run that started it.
- A run started from another (`Engine.retry`, `Engine.reset`, a continue-as-new, a
  schedule) carries ``flowgen.origin``, recorded in its ``trace_context`` with the
  ``traceparent`` of the earlier run's span (``origin_traceparent``), to which its span
  has a link. A retry or reset is a child of the span current where it was asked for; a
  schedule's trigger, of the span current at `Engine.trigger_schedule`.
- ``activity <name>``: one per attempt, a child of its run's span. It is the current span
  while the activity runs, so what the activity's own instrumented libraries trace (an HTTP
  call, a query) nests under it.

Both carry ``flowgen.``-prefixed attributes (`ATTRIBUTES` lists them) and, on failure, span
status ERROR with the error's type and message, and an ``exception`` event holding the
recorded traceback. Their times are the engine clock's, the instants the history records, so
a run's span encloses its attempts' spans under a `ManualClock` too.

A run that outlives its process
-------------------------------

A run may start in one process and end in another (after a crash, or on another engine of
the same file), so its span cannot be a span object held open in memory. Instead:

1. When the run starts, its span's identity is decided and **recorded in its history**:
   the trace id (the caller's, else a fresh one), a fresh span id, and the parent's span id
   go into ``WorkflowStarted.trace_context`` (W3C ``traceparent`` and ``tracestate`` of the
   run's span, and ``parent_span_id``), committed in the same transaction as the start.
2. Every activity span, in whichever process runs the attempt, names that recorded span as
   its parent (read back from the history when a run is recovered).
3. The run's span is emitted once, when the run ends, by the process that commits the end:
   started at the recorded start time, ended at the end event's time, **with the recorded
   trace and span ids**. The OpenTelemetry API cannot choose a span's ids, so the span is
   started through a copy of the SDK's tracer whose id generator hands out the recorded ids
   for that one call (a context variable; every other call reaches the provider's own
   generator). The provider's tracer itself is not changed.

Why recorded ids rather than ids derived from the run id (a hash): the trace id must be the
caller's, which nothing in the run determines, and the parent must be the caller's span; both
have to be written down anyway, and the run's span id is written beside them.

What follows from it:

- A run's span appears when the run ends; until then a backend shows its activity spans
  under a parent that arrives later (backends join them by id). A process killed between
  committing a run's end and emitting its span loses that one span.
- Sampling: the run's span carries the caller's sampled flag; a run that starts a trace is
  recorded as sampled, and the provider's sampler decides as each span is emitted.
- The global tracer provider may be set after the engine opens: until it is, spans go
  nowhere (as OpenTelemetry's own proxy does), then they go to it.
- With a tracer provider that is not the SDK's (no ``id_generator`` on its tracers), a run
  span gets that provider's own ids, and activity spans name a parent that is never emitted.
  A warning says so when the engine opens.
- Runs started while tracing was off have no recorded context: their spans are roots.
- An attempt that runs past its timeout is recorded as timed out when the timeout comes
  due (by the loop, `Attempts.timed_out`); its span ends when its thread returns, with the
  outcome the thread saw.

Tracing never stops a run: the engine calls this module on the decision loop and on
activity threads, and an error inside OpenTelemetry (a broken sampler, exporter or recorded
context) is logged, once at ERROR and then at DEBUG, never raised.

Metrics
=======

Through the meter provider: counters ``flowgen.workflows.started``, ``.completed``,
``.failed`` and ``.closed`` (every end, by ``flowgen.status``), all by
``flowgen.workflow.name``; and the histogram ``flowgen.activity.duration`` (seconds, by
``flowgen.activity.name`` and ``flowgen.status``), the durations the ``activity_attempts``
view holds. A run recovered after a crash is not counted as started again.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs

from flowgen._stores.protocol import WorkflowRecord
from flowgen._vocabulary.errors import ErrorInfo
from flowgen._vocabulary.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    Event,
    WorkflowStarted,
)
from flowgen._vocabulary.status import RunStatus

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

__all__ = [
    "ATTRIBUTES",
    "INSTALL_HINT",
    "ORIGIN",
    "AttemptSpan",
    "RunTrace",
    "Telemetry",
    "origin_of",
]

log = logging.getLogger("flowgen")

INSTALL_HINT: Final = 'pip install "flowgen-durable[otel]"'
"""How to get what `Telemetry` needs (named in the error when it is missing)."""

WORKFLOW_ID: Final = "flowgen.workflow.id"
RUN_ID: Final = "flowgen.run.id"
WORKFLOW_NAME: Final = "flowgen.workflow.name"
ACTIVITY_NAME: Final = "flowgen.activity.name"
SEQ: Final = "flowgen.seq"
ATTEMPT: Final = "flowgen.attempt"
STATUS: Final = "flowgen.status"
ERROR_TYPE: Final = "flowgen.error.type"
ORIGIN: Final = "flowgen.origin"
ATTRIBUTES: Final = (
    WORKFLOW_ID,
    RUN_ID,
    WORKFLOW_NAME,
    ACTIVITY_NAME,
    SEQ,
    ATTEMPT,
    STATUS,
    ERROR_TYPE,
    ORIGIN,
)
"""The attributes of flowgen's spans (``flowgen.activity.*`` and seq/attempt: attempts only).

``flowgen.status`` of a run: its `RunStatus` (``completed``, ``failed``, ``cancelled``,
``terminated``, ``continued_as_new``); of an attempt: ``completed``, ``retrying`` (it failed
and will be retried) or ``failed`` (for good).

``flowgen.origin`` of a run started from another (also a key of its recorded
``trace_context``): ``retry of run <id>``, ``reset of run <id>``, ``continue_as_new of run
<id>``, or ``schedule <id>`` (a firing or a trigger).
"""

PARENT_SPAN_ID: Final = "parent_span_id"
"""The key of ``WorkflowStarted.trace_context`` naming the run span's parent (16 hex)."""
ORIGIN_TRACEPARENT: Final = "origin_traceparent"
"""The key of ``WorkflowStarted.trace_context`` naming the span of the run a relaunched run
came from (W3C ``traceparent``): the run's span links to it."""
_W3C: Final = frozenset(("traceparent", "tracestate"))

_ATTEMPT_STATUS: Final[dict[type, str]] = {
    ActivityCompleted: "completed",
    ActivityAttemptFailed: "retrying",
    ActivityFailed: "failed",
}

_preset_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "flowgen_preset_span_ids", default=None
)
"""The (trace id, span id) the next span started on this thread must get (see `_PresetIds`)."""


@attrs.frozen
class RunTrace:
    """What tracing keeps about a run (on the loop's `Run`): plain data, no OpenTelemetry.

    Attributes:
        name: The workflow's name.
        started_at: When the run started (its span's start).
        context: ``WorkflowStarted.trace_context``, or ``None`` if it started untraced.
    """

    name: str
    started_at: datetime
    context: dict[str, str] | None

    @classmethod
    def recovered(cls, record: WorkflowRecord, history: list[Event]) -> RunTrace:
        """The trace of a stored run, read back from its ``WorkflowStarted``."""
        first = history[0] if history else None
        context = first.trace_context if isinstance(first, WorkflowStarted) else None
        return cls(record.name, record.started_at, context)

    def as_parent(self) -> dict[str, str] | None:
        """The run's span as the parent of a run it starts (W3C headers), if traced."""
        if self.context is None:
            return None
        return {k: v for k, v in self.context.items() if k in _W3C}

    def as_origin(self, origin: str) -> dict[str, str]:
        """What a run this one relaunches (continue-as-new) starts with: parent and link."""
        parent = self.as_parent() or {}
        return {**parent, **origin_of(origin, self.context)}


class _PresetIds:
    """An SDK id generator that hands out `_preset_ids` when set, else asks *base*."""

    def __init__(self, base: Any) -> None:
        self._base = base

    def generate_trace_id(self) -> int:
        preset = _preset_ids.get()
        return preset[0] if preset else int(self._base.generate_trace_id())

    def generate_span_id(self) -> int:
        preset = _preset_ids.get()
        return preset[1] if preset else int(self._base.generate_span_id())

    def is_trace_id_random(self) -> bool:
        return bool(getattr(self._base, "is_trace_id_random", bool)())


@attrs.frozen
class _Tracers:
    """The tracer of spans, the one of run spans (`_PresetIds`), and the SDK's ids."""

    tracer: Tracer
    run_tracer: Tracer
    ids: Any  # the provider's IdGenerator, or None for a provider not the SDK's


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _nanoseconds(at: datetime) -> int:
    """An aware datetime as OpenTelemetry's time: integer nanoseconds since the epoch."""
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


class Telemetry:
    """Spans and metrics of one engine, through the given or the global providers.

    Args:
        tracer_provider: Where spans go; the global one (``opentelemetry.trace``) if
            ``None`` (which may be set after the engine opens).
        meter_provider: Where metrics go; the global one if ``None``.

    Raises:
        ImportError: OpenTelemetry is not installed (the message says how to get it).
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        try:
            from opentelemetry import metrics, trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError as exc:
            raise ImportError(
                f"Engine(tracing=True) needs OpenTelemetry, which is not installed: {INSTALL_HINT}"
            ) from exc
        self._tracers: _Tracers
        self._waiting = False  # for a global provider to be set (see `_ready`)
        self._use(tracer_provider or trace.get_tracer_provider())
        if self._waiting:
            log.info(
                "flowgen: tracing=True, but no OpenTelemetry TracerProvider is set yet "
                "(opentelemetry.trace.set_tracer_provider): spans start once one is"
            )
        self._propagator = TraceContextTextMapPropagator()
        self._reported = False  # whether a failure of tracing was logged at ERROR
        meter = metrics.get_meter("flowgen", meter_provider=meter_provider)
        self._started = meter.create_counter(
            "flowgen.workflows.started", unit="{run}", description="Runs started."
        )
        self._completed = meter.create_counter(
            "flowgen.workflows.completed", unit="{run}", description="Runs completed."
        )
        self._failed = meter.create_counter(
            "flowgen.workflows.failed", unit="{run}", description="Runs failed."
        )
        self._closed = meter.create_counter(
            "flowgen.workflows.closed",
            unit="{run}",
            description="Runs ended, by flowgen.status.",
        )
        self._durations = meter.create_histogram(
            "flowgen.activity.duration",
            unit="s",
            description="Activity attempt latency, by activity and flowgen.status.",
        )

    # -- tracers -------------------------------------------------------------------------------

    def _use(self, provider: TracerProvider) -> None:
        """Take the tracers of spans from *provider*."""
        from opentelemetry import trace

        self._waiting = isinstance(provider, trace.ProxyTracerProvider)
        tracer = provider.get_tracer("flowgen")
        # Run spans are started with recorded ids: through a copy of the SDK's tracer whose
        # id generator can be told them (the provider's own tracer stays as it is).
        ids = getattr(tracer, "id_generator", None)
        run_tracer = tracer
        if ids is not None:
            run_tracer = copy.copy(tracer)
            run_tracer.id_generator = _PresetIds(ids)  # type: ignore[attr-defined]
        elif not self._waiting:
            log.warning(
                "flowgen: the TracerProvider is not the OpenTelemetry SDK's: a run's span "
                "cannot take its recorded id, and activity spans name a parent never emitted"
            )
        self._tracers = _Tracers(tracer, run_tracer, ids)  # one assignment: atomic

    def _ready(self) -> _Tracers:
        """The tracers, taken from the global provider if it was set since the last look."""
        if self._waiting:
            from opentelemetry import trace

            provider = trace.get_tracer_provider()
            if not isinstance(provider, trace.ProxyTracerProvider):
                self._use(provider)
        return self._tracers

    # -- failures of tracing itself ------------------------------------------------------------

    def _broken(self, what: str) -> None:
        """Tracing failed (a broken sampler, exporter or history): log it, never raise.

        The engine calls its telemetry on the decision loop and on activity threads; an
        error there must not stop a run, so each public method catches everything.
        """
        if self._reported:
            log.debug("flowgen: tracing failed %s", what, exc_info=True)
            return
        self._reported = True
        log.exception(
            "flowgen: tracing failed %s (later failures are logged at DEBUG)", what
        )

    # -- trace contexts -------------------------------------------------------------------------

    def caller_context(self) -> dict[str, str] | None:
        """The current span of this thread as W3C headers, or ``None`` if there is none."""
        carrier: dict[str, str] = {}
        try:
            self._propagator.inject(carrier)
        except Exception:  # noqa: BLE001  # tracing never stops a start
            self._broken("reading the caller's span")
        return carrier or None

    def start_run(
        self, name: str, started_at: datetime, parent: Mapping[str, str] | None
    ) -> RunTrace:
        """Decide the span of a run that starts now, a child of *parent* (W3C headers)."""
        try:
            context = self._new_run_context(parent)
        except Exception:  # noqa: BLE001  # tracing never stops a start
            self._broken(f"deciding the span of a run of {name!r}")
            context = None
        return RunTrace(name, started_at, context)

    def _new_run_context(self, parent: Mapping[str, str] | None) -> dict[str, str]:
        from opentelemetry import trace

        parent_span = self._span_context(parent)
        if parent_span is not None:
            trace_id = parent_span.trace_id
            flags, state = parent_span.trace_flags, parent_span.trace_state
        else:  # the run starts a trace, recorded as sampled (see the module's docstring)
            trace_id = self._new_trace_id()
            flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
            state = trace.TraceState()
        own = trace.SpanContext(
            trace_id,
            self._new_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=state,
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(
            carrier, context=trace.set_span_in_context(trace.NonRecordingSpan(own))
        )
        if parent_span is not None:
            carrier[PARENT_SPAN_ID] = trace.format_span_id(parent_span.span_id)
        for key in (ORIGIN, ORIGIN_TRACEPARENT):  # recorded for the span's link
            if parent and parent.get(key):
                carrier[key] = parent[key]
        return carrier

    def _span_context(self, carrier: Mapping[str, str] | None) -> SpanContext | None:
        """The span W3C headers name, or ``None`` if they name none (or are malformed)."""
        if not carrier:
            return None
        return _parsed(carrier.get("traceparent", ""), carrier.get("tracestate", ""))

    def _new_trace_id(self) -> int:
        ids = self._ready().ids
        return int(ids.generate_trace_id()) if ids else random.getrandbits(128) or 1

    def _new_span_id(self) -> int:
        ids = self._ready().ids
        return int(ids.generate_span_id()) if ids else random.getrandbits(64) or 1

    # -- runs -----------------------------------------------------------------------------------

    def run_started(self, name: str) -> None:
        """Count a run that started (called once its start is committed)."""
        try:
            self._started.add(1, {WORKFLOW_NAME: name})
        except Exception:  # noqa: BLE001  # tracing never stops a run
            self._broken(f"counting a start of {name!r}")

    def run_closed(
        self,
        workflow_id: str,
        run_id: str,
        run: RunTrace,
        status: RunStatus,
        error: ErrorInfo | None,
        ended_at: datetime,
    ) -> None:
        """Count a run that ended and emit its span (called once its end is committed)."""
        try:
            labels = {WORKFLOW_NAME: run.name}
            self._closed.add(1, {**labels, STATUS: status.value})
            if status is RunStatus.COMPLETED:
                self._completed.add(1, labels)
            elif status is RunStatus.FAILED:
                self._failed.add(1, labels)
            span = self._start_run_span(workflow_id, run_id, run)
            failed = error if status is RunStatus.FAILED else None
            _finish(span, status.value, failed, ended_at)
        except Exception:  # noqa: BLE001  # tracing never stops a run
            self._broken(f"emitting the span of run {run_id!r}")

    def _start_run_span(self, workflow_id: str, run_id: str, run: RunTrace) -> Span:
        """The run's span, with its recorded ids and parent when it has them."""
        from opentelemetry import trace
        from opentelemetry.context import Context

        attributes = {WORKFLOW_ID: workflow_id, RUN_ID: run_id, WORKFLOW_NAME: run.name}
        options: dict[str, Any] = {
            "context": Context(),
            "start_time": _nanoseconds(run.started_at),
            "attributes": attributes,
        }
        tracers = self._ready()
        own = self._span_context(run.context)
        if own is None or run.context is None:  # started untraced: a span of its own
            return tracers.tracer.start_span(f"workflow {run.name}", **options)
        origin = run.context.get(ORIGIN)
        if origin:
            attributes[ORIGIN] = origin
            linked = _parsed(run.context.get(ORIGIN_TRACEPARENT, ""), "")
            if linked is not None:
                options["links"] = [trace.Link(linked, {ORIGIN: origin})]
        parent_id = run.context.get(PARENT_SPAN_ID)
        if parent_id:
            parent = trace.SpanContext(
                own.trace_id,
                int(parent_id, 16),
                is_remote=True,
                trace_flags=own.trace_flags,
                trace_state=own.trace_state,
            )
            options["context"] = trace.set_span_in_context(
                trace.NonRecordingSpan(parent)
            )
        token = _preset_ids.set((own.trace_id, own.span_id))
        try:
            return tracers.run_tracer.start_span(f"workflow {run.name}", **options)
        finally:
            _preset_ids.reset(token)

    # -- activity attempts ----------------------------------------------------------------------

    def attempt(
        self,
        run: RunTrace | None,
        key: tuple[str, str],
        seq: int,
        activity: str,
        attempt: int,
        started_at: datetime,
    ) -> AttemptSpan:
        """Start the span of an activity attempt, current on this thread until it ends."""
        from opentelemetry import context as otel_context, trace

        try:
            parent = self._span_context(run.context) if run is not None else None
            parent_context = (
                trace.set_span_in_context(trace.NonRecordingSpan(parent))
                if parent is not None
                else otel_context.Context()
            )
            workflow_id, run_id = key
            attributes: dict[str, str | int] = {
                WORKFLOW_ID: workflow_id,
                RUN_ID: run_id,
                ACTIVITY_NAME: activity,
                SEQ: seq,
                ATTEMPT: attempt,
            }
            if run is not None:
                attributes[WORKFLOW_NAME] = run.name
            span = self._ready().tracer.start_span(
                f"activity {activity}",
                context=parent_context,
                start_time=_nanoseconds(started_at),
                attributes=attributes,
            )
            token = otel_context.attach(trace.set_span_in_context(span))
        except Exception:  # noqa: BLE001  # tracing never stops an attempt
            self._broken(f"starting the span of an attempt of {activity!r}")
            return AttemptSpan(self, None, None, activity, started_at)
        return AttemptSpan(self, span, token, activity, started_at)


class AttemptSpan:
    """The span of a running attempt: `ended` with its outcome event, on the same thread.

    Without a span (starting it failed), `ended` still records the attempt's latency.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        span: Span | None,
        token: object,
        activity: str,
        started_at: datetime,
    ) -> None:
        self._telemetry = telemetry
        self._span = span
        self._token = token
        self._activity = activity
        self._started_at = started_at

    def ended(self, event: Event | None) -> None:
        """The attempt is over: *event* is its outcome (``None`` if none was made)."""
        from opentelemetry import context as otel_context

        try:
            if self._token is not None:
                otel_context.detach(self._token)  # type: ignore[arg-type]
            if event is None:
                if self._span is not None:
                    self._span.end()
                return
            status = _ATTEMPT_STATUS.get(type(event), "failed")
            # The attempt's start as its event records it (activity_attempts' started_at).
            started_at = getattr(event, "started_at", None) or self._started_at
            self._telemetry._durations.record(
                max(0.0, (event.at - started_at).total_seconds()),
                {ACTIVITY_NAME: self._activity, STATUS: status},
            )
            if self._span is not None:
                error: ErrorInfo | None = getattr(event, "error", None)
                _finish(self._span, status, error, event.at)
        except Exception:  # noqa: BLE001  # tracing never stops an attempt
            self._telemetry._broken(
                f"ending the span of an attempt of {self._activity!r}"
            )


def origin_of(origin: str, context: Mapping[str, str] | None) -> dict[str, str]:
    """The keys a relaunched run records of its *origin* (and the origin run's span)."""
    found = {ORIGIN: origin}
    if context and context.get("traceparent"):
        found[ORIGIN_TRACEPARENT] = context["traceparent"]
    return found


@functools.lru_cache(maxsize=4096)
def _parsed(traceparent: str, tracestate: str) -> SpanContext | None:
    """The span W3C headers name, parsed once for all the attempts of a run."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import (
        TraceContextTextMapPropagator,
    )

    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = TraceContextTextMapPropagator().extract(carrier)
    span = trace.get_current_span(context).get_span_context()
    return span if span.is_valid else None


def _finish(span: Span, status: str, error: ErrorInfo | None, at: datetime) -> None:
    """Set a span's outcome and end it at *at*."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(STATUS, status)
    if error is not None:
        span.set_attribute(ERROR_TYPE, error.type)
        span.set_status(Status(StatusCode.ERROR, f"{error.type}: {error.message}"))
        span.add_event(
            "exception",
            {
                "exception.type": error.type,
                "exception.message": error.message,
                "exception.stacktrace": error.traceback,
            },
            timestamp=_nanoseconds(at),
        )
    span.end(end_time=_nanoseconds(at))
