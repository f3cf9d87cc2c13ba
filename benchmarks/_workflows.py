"""The workflows and activities the benchmarks run (a module of their own, so that a worker
process, and a recovering one, registers them under the same names)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator
from typing import Any

import flowgen as fg

#: Set only in the recovery benchmark's first process: step three blocks forever there.
BLOCK_ENV = "FLOWGEN_BENCH_BLOCK_STEP3"

#: CPU milliseconds each step of `three_steps` burns (``python -m benchmarks.fleet_scaling``'s
#: "work in the activities" variant, where a worker process can be the bottleneck); read
#: once at import, so a worker process takes it from the environment it was started with.
STEP_CPU_ENV = "FLOWGEN_BENCH_STEP_CPU_MS"
_STEP_CPU_S = float(os.environ.get(STEP_CPU_ENV) or 0) / 1000.0

#: How many step-three calls have begun in this process (the recovery worker watches it).
entered_step_three = 0
_entered_lock = threading.Lock()
step_executions = {"step_one": 0, "step_two": 0, "step_three": 0}


def _work() -> None:
    """Burn `_STEP_CPU_S` of this thread's CPU (nothing by default)."""
    if _STEP_CPU_S:
        end = time.thread_time() + _STEP_CPU_S
        while time.thread_time() < end:
            pass


@fg.activity(name="bench.step_one")
def step_one(i: int) -> int:
    step_executions["step_one"] += 1
    _work()
    return i + 1


@fg.activity(name="bench.step_two")
def step_two(i: int) -> int:
    step_executions["step_two"] += 1
    _work()
    return i + 1


@fg.activity(name="bench.step_three")
def step_three(i: int) -> int:
    global entered_step_three
    with _entered_lock:
        entered_step_three += 1
        step_executions["step_three"] += 1
    if os.environ.get(BLOCK_ENV) == "1":
        threading.Event().wait()  # until kill -9
    _work()
    return i + 1


@fg.workflow(name="bench.three_steps")
def three_steps(i: int) -> Generator[Any, Any, int]:
    """Three sequential trivial activities: the throughput and recovery workload."""
    a = yield fg.call(step_one, i)
    b = yield fg.call(step_two, a)
    c = yield fg.call(step_three, b)
    return c


@fg.activity(name="bench.add_one")
def add_one(i: int) -> int:
    return i + 1


@fg.workflow(name="bench.many_steps")
def many_steps(n: int) -> Generator[Any, Any, int]:
    """*n* activities in sequence; returns the sum of their results (the replay workload)."""
    total = 0
    for i in range(n):
        total += yield fg.call(add_one, i)
    return total


@fg.workflow(name="bench.sleepy")
def sleepy(n: int) -> Generator[Any, Any, int]:
    """Wakes once per step on a one-second timer (the life-cycle workload)."""
    for _ in range(n):
        yield fg.sleep(1)
    return n


@fg.workflow(name="bench.parked")
def parked(i: int) -> Generator[Any, Any, int]:
    """Parks on a signal, then finishes (the scale-of-waiting workload)."""
    value = yield fg.wait_signal("go")
    return i + int(value)
