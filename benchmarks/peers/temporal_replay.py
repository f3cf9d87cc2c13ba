"""Peer benchmark: the Temporal Python SDK's ``Replayer``, offline, on a hand-built history.

No server is involved. ``build_history`` writes, as ``temporalio.api.history.v1`` protobuf
events, the history a Temporal server would have recorded for one run of
``SequentialActivities`` (``temporal_workflows.py``): N activities one after another, each
scheduled, started and completed in its own workflow task. ``run_replay`` then replays it
with ``Replayer(...).replay_workflow(WorkflowHistory(...))``, with the default sandboxed
runner or ``UnsandboxedWorkflowRunner``, and reports process CPU time (``time.process_time``,
all threads, the SDK's Rust core included) per activity.

A replay counts only if it succeeds and the workflow's own return value, captured by a
workflow interceptor, equals ``N * (N + 1) / 2``. The workflow also checks each activity's
recorded result, so a replay that fed outcomes to the wrong calls would fail.

Usage:
    python benchmarks/peers/temporal_replay.py --steps 1000 --json
    python -m benchmarks.peers.temporal_replay --steps 100 --mode unsandboxed --checks
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import temporalio.api.history.v1 as hist
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import ActivityType, Payload, Payloads, WorkflowType
from temporalio.api.enums.v1 import EventType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.client import WorkflowHistory
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

try:
    from benchmarks.peers.temporal_workflows import (
        ACTIVITY_NAME,
        WORKFLOW_NAME,
        SequentialActivities,
    )
except ImportError:  # run as a script: put the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.peers.temporal_workflows import (
        ACTIVITY_NAME,
        WORKFLOW_NAME,
        SequentialActivities,
    )

WORKFLOW_ID = "replay-bench"
RUN_ID = "replay-bench-run-1"
TASK_QUEUE = "replay-bench"
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _payloads(value: int) -> Payloads:
    """Encode an int the way the default data converter does (``json/plain``)."""
    return Payloads(
        payloads=[
            Payload(
                metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode()
            )
        ]
    )


class _HistoryWriter:
    """Appends events with consecutive ids and increasing timestamps."""

    def __init__(self) -> None:
        self.events: list[hist.HistoryEvent] = []

    def add(self, event_type: EventType.ValueType, **attributes: Any) -> int:
        """Append one event.

        Args:
            event_type: The event's type.
            **attributes: Exactly one ``*_event_attributes`` keyword.

        Returns:
            The new event's id.
        """
        event_id = len(self.events) + 1
        when = Timestamp()
        when.FromDatetime(_EPOCH + timedelta(milliseconds=event_id))
        self.events.append(
            hist.HistoryEvent(
                event_id=event_id, event_time=when, event_type=event_type, **attributes
            )
        )
        return event_id

    def workflow_task(self, queue: TaskQueue) -> int:
        """Append a scheduled/started/completed workflow task; return the completed event's id."""
        scheduled = self.add(
            EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
            workflow_task_scheduled_event_attributes=hist.WorkflowTaskScheduledEventAttributes(
                task_queue=queue, start_to_close_timeout=Duration(seconds=10), attempt=1
            ),
        )
        started = self.add(
            EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
            workflow_task_started_event_attributes=hist.WorkflowTaskStartedEventAttributes(
                scheduled_event_id=scheduled, request_id=f"request-{scheduled}"
            ),
        )
        return self.add(
            EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
            workflow_task_completed_event_attributes=hist.WorkflowTaskCompletedEventAttributes(
                scheduled_event_id=scheduled, started_event_id=started
            ),
        )


def build_history(steps: int) -> WorkflowHistory:
    """Build the history of one completed ``SequentialActivities`` run with ``steps`` activities.

    Activity ``i`` is recorded with input ``i`` and result ``i + 1``; the run's result is the
    sum. Event layout: started, one workflow task, then per activity scheduled / started /
    completed followed by a workflow task, then workflow-execution-completed.

    Args:
        steps: Number of activities (0 or more).

    Returns:
        The history, ready for ``Replayer.replay_workflow``.
    """
    queue = TaskQueue(name=TASK_QUEUE)
    w = _HistoryWriter()
    w.add(
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        workflow_execution_started_event_attributes=hist.WorkflowExecutionStartedEventAttributes(
            workflow_type=WorkflowType(name=WORKFLOW_NAME),
            task_queue=queue,
            input=_payloads(steps),
            workflow_task_timeout=Duration(seconds=10),
            original_execution_run_id=RUN_ID,
            first_execution_run_id=RUN_ID,
            attempt=1,
            workflow_id=WORKFLOW_ID,
        ),
    )
    completed_task = w.workflow_task(queue)
    for i in range(steps):
        scheduled = w.add(
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
            activity_task_scheduled_event_attributes=hist.ActivityTaskScheduledEventAttributes(
                activity_id=str(i + 1),
                activity_type=ActivityType(name=ACTIVITY_NAME),
                task_queue=queue,
                input=_payloads(i),
                start_to_close_timeout=Duration(seconds=10),
                workflow_task_completed_event_id=completed_task,
            ),
        )
        started = w.add(
            EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
            activity_task_started_event_attributes=hist.ActivityTaskStartedEventAttributes(
                scheduled_event_id=scheduled, attempt=1
            ),
        )
        w.add(
            EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
            activity_task_completed_event_attributes=hist.ActivityTaskCompletedEventAttributes(
                result=_payloads(i + 1),
                scheduled_event_id=scheduled,
                started_event_id=started,
            ),
        )
        completed_task = w.workflow_task(queue)
    w.add(
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        workflow_execution_completed_event_attributes=hist.WorkflowExecutionCompletedEventAttributes(
            result=_payloads(steps * (steps + 1) // 2),
            workflow_task_completed_event_id=completed_task,
        ),
    )
    return WorkflowHistory(WORKFLOW_ID, w.events)


class _ResultCapture(Interceptor):
    """Records the value each replayed workflow run returned."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def workflow_interceptor_class(
        self,
        input: WorkflowInterceptorClassInput,  # noqa: A002 (the SDK's parameter name)
    ) -> type[WorkflowInboundInterceptor]:
        """Return an inbound interceptor class that appends each run's result to ``results``."""
        results = self.results

        class _Inbound(WorkflowInboundInterceptor):
            async def execute_workflow(
                self,
                input: ExecuteWorkflowInput,  # noqa: A002
            ) -> Any:
                value = await super().execute_workflow(input)
                results.append(value)
                return value

        return _Inbound


async def replay_once(
    history: WorkflowHistory, *, sandboxed: bool, runtime: Runtime | None = None
) -> tuple[Any, float, float]:
    """Replay ``history`` once with a fresh ``Replayer``.

    Args:
        history: A ``SequentialActivities`` history.
        sandboxed: Use the default sandboxed runner; otherwise ``UnsandboxedWorkflowRunner``.
        runtime: Temporal runtime; ``None`` for the SDK's default one.

    Returns:
        The workflow's return value, the process CPU seconds and the wall seconds of the replay.

    Raises:
        RuntimeError: The replay failed (for instance a nondeterminism error) or the workflow
            returned nothing.
    """
    capture = _ResultCapture()
    options: dict[str, Any] = (
        {} if sandboxed else {"workflow_runner": UnsandboxedWorkflowRunner()}
    )
    replayer = Replayer(
        workflows=[SequentialActivities],
        interceptors=[capture],
        runtime=runtime,
        **options,
    )
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    outcome = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    wall_s = time.perf_counter() - wall_start
    cpu_s = time.process_time() - cpu_start
    if outcome.replay_failure is not None:
        raise RuntimeError(f"replay failed: {outcome.replay_failure!r}")
    if len(capture.results) != 1:
        raise RuntimeError(
            f"expected one workflow result, captured {capture.results!r}"
        )
    return capture.results[0], cpu_s, wall_s


def run_replay(
    steps: int = 1000, sandboxed: bool = True, *, repeats: int = 3
) -> dict[str, Any]:
    """Measure replay cost per activity for an N-activity history.

    Each repeat uses a fresh ``Replayer``; the first repeat of a process also pays one-off
    start-up (Temporal's runtime, and the sandbox's first import of the workflow module). A
    1-activity history is replayed as often to estimate the fixed cost per replay, so both
    the plain and the marginal per-activity figures are reported. Calls ``asyncio.run``, so
    it must not be called from a running event loop (use ``replay_once`` there).

    Args:
        steps: Activities in the history.
        sandboxed: Default sandboxed runner (True) or ``UnsandboxedWorkflowRunner`` (False).
        repeats: Replays of each history.

    Returns:
        CPU µs per activity (median, min and every run), marginal CPU µs per activity, wall
        time, and history size.

    Raises:
        RuntimeError: A replay failed or returned a wrong result.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    build_start = time.perf_counter()
    history = build_history(steps)
    build_s = time.perf_counter() - build_start
    baseline = build_history(1)
    expected = steps * (steps + 1) // 2

    async def measure() -> tuple[list[float], list[float], list[float]]:
        cpu: list[float] = []
        wall: list[float] = []
        base_cpu: list[float] = []
        for _ in range(max(repeats, 1)):
            value, c, w = await replay_once(history, sandboxed=sandboxed)
            if value != expected:
                raise RuntimeError(f"replay returned {value!r}, expected {expected}")
            cpu.append(c)
            wall.append(w)
            base_value, base_c, _ = await replay_once(baseline, sandboxed=sandboxed)
            if base_value != 1:
                raise RuntimeError(
                    f"baseline replay returned {base_value!r}, expected 1"
                )
            base_cpu.append(base_c)
        return cpu, wall, base_cpu

    cpu, wall, base_cpu = asyncio.run(measure())
    per_activity_us = [c / steps * 1e6 for c in cpu]
    base_median = statistics.median(base_cpu)
    marginal = (
        (statistics.median(cpu) - base_median) / (steps - 1) * 1e6
        if steps > 1
        else None
    )
    return {
        "runner": "sandboxed" if sandboxed else "unsandboxed",
        "steps": steps,
        "history_events": len(history.events),
        "history_build_ms": build_s * 1000.0,
        "repeats": repeats,
        "replay_ok": True,
        "result": expected,
        "cpu_us_per_activity": statistics.median(per_activity_us),
        "cpu_us_per_activity_min": min(per_activity_us),
        "cpu_us_per_activity_runs": per_activity_us,
        "marginal_cpu_us_per_activity": marginal,
        "fixed_cpu_ms_per_replay": base_median * 1000.0,
        "wall_ms_per_replay": statistics.median(wall) * 1000.0,
    }


def run_checks() -> dict[str, Any]:
    """Replay deliberately altered 5-activity histories and report which changes are caught.

    Unsandboxed, with the interceptor, as in ``run_replay``. An alteration is "detected" when
    the replay fails.

    Returns:
        For each alteration, whether replay failed and the start of the error message.
    """

    def altered(change: str) -> WorkflowHistory:
        events = list(build_history(5).events)
        for event in events:
            if (
                change == "activity_result"
                and event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            ):
                event.activity_task_completed_event_attributes.result.CopyFrom(
                    _payloads(99)
                )
                break
            if (
                change == "activity_name"
                and event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            ):
                event.activity_task_scheduled_event_attributes.activity_type.name = (
                    "renamed"
                )
            if (
                change == "activity_input"
                and event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            ):
                event.activity_task_scheduled_event_attributes.input.CopyFrom(
                    _payloads(-7)
                )
            if (
                change == "workflow_result"
                and event.event_type
                == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
            ):
                event.workflow_execution_completed_event_attributes.result.CopyFrom(
                    _payloads(-1)
                )
        return WorkflowHistory(WORKFLOW_ID, events)

    # Core's default logging writes to stdout, and each expected failure logs a warning:
    # forward Core's logs to a Python logger instead, at ERROR only.
    quiet = Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"),
                forwarding=LogForwardingConfig(
                    logger=logging.getLogger("benchmarks.peers.temporal_core")
                ),
            )
        )
    )

    async def check(change: str) -> dict[str, Any]:
        try:
            await replay_once(altered(change), sandboxed=False, runtime=quiet)
        except RuntimeError as exc:
            return {"detected": True, "error": str(exc)[:160]}
        return {"detected": False}

    descriptions = {
        "activity_result": "first activity's recorded result changed (caught by the workflow's own check)",
        "activity_name": "every activity type renamed in the history",
        "activity_input": "every activity's recorded input changed",
        "workflow_result": "recorded workflow result changed",
    }

    async def run_all() -> dict[str, Any]:
        return {
            name: {"change": text, **await check(name)}
            for name, text in descriptions.items()
        }

    # The SDK logs each failed workflow task with a traceback; those failures are expected.
    sdk_logger = logging.getLogger("temporalio")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(run_all())
    finally:
        sdk_logger.setLevel(level)


def _versions() -> dict[str, str]:
    return {
        "temporalio": metadata.version("temporalio"),
        "protobuf": metadata.version("protobuf"),
        "python": platform.python_version(),
    }


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print one JSON object.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        description="Temporal Replayer peer benchmark (offline)."
    )
    parser.add_argument(
        "--steps", type=int, default=1000, help="activities in the history"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--mode", choices=["both", "sandboxed", "unsandboxed"], default="both"
    )
    parser.add_argument(
        "--checks", action="store_true", help="also replay altered histories"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print compact one-line JSON (default: indented)",
    )
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "peer": "temporal",
        "benchmark": "replay",
        "versions": _versions(),
        "steps": args.steps,
    }
    if args.mode in ("both", "unsandboxed"):
        result["unsandboxed"] = run_replay(
            args.steps, sandboxed=False, repeats=args.repeats
        )
    if args.mode in ("both", "sandboxed"):
        result["sandboxed"] = run_replay(
            args.steps, sandboxed=True, repeats=args.repeats
        )
    if args.checks:
        result["checks"] = run_checks()
    result = _round(result)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
