"""Workflows, activities and helpers for the engine tests (scenario workflows live in
``tests/workflows.py``).

Activities that need per-test state are methods of `Tools`: each test makes its own
``Tools()`` and passes it to ``Engine(activities=[tools])``, so the workflows below call
``fg.call(Tools.work, ...)`` and the engine runs the method bound to that test's object.
`Tools` records every execution (with its `fg.ActivityInfo`), can hold an activity on a
`threading.Event` gate, and can make an activity fail a given number of times.

Import this module as ``tests.engine_workflows``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen._stores.memory import MemoryStore
from flowgen._stores.protocol import Store, WorkflowRecord
from flowgen._vocabulary.commands import StartChild
from flowgen._vocabulary.events import Event

GATE_TIMEOUT = 20.0
"""The longest a gated activity waits for its test to open the gate (a stuck-test guard)."""


class Flaky(Exception):
    """A transient failure injected by `Tools`."""


class Tools:
    """Activities bound to one test's state."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ran: list[tuple[str, str, fg.ActivityInfo]] = []
        self.gates: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}
        self.failures: dict[str, int] = {}
        self.fail_all = False  # every attempt fails while set

    # -- helpers for tests ----------------------------------------------------------------------

    def gate(self, key: str) -> threading.Event:
        """Hold every ``work``/``slow`` call for *key* until the returned event is set."""
        self.entered[key] = threading.Event()
        gate = self.gates[key] = threading.Event()
        return gate

    def wait_entered(self, key: str, timeout: float = GATE_TIMEOUT) -> None:
        """Block until an activity for *key* is running (and held at its gate)."""
        if not self.entered[key].wait(timeout):
            raise AssertionError(f"activity for {key!r} never started")

    def release_all(self) -> None:
        for gate in self.gates.values():
            gate.set()

    def runs_of(self, name: str, key: str | None = None) -> list[fg.ActivityInfo]:
        with self.lock:
            return [
                info
                for what, k, info in self.ran
                if what == name and (key is None or k == key)
            ]

    def _enter(self, name: str, key: str) -> None:
        with self.lock:
            self.ran.append((name, key, fg.activity_info()))
        entered = self.entered.get(key)
        if entered is not None:
            entered.set()
        gate = self.gates.get(key)
        if gate is not None:
            gate.wait(GATE_TIMEOUT)
        with self.lock:
            left = self.failures.get(key, 0)
            if left:
                self.failures[key] = left - 1
            left += self.fail_all
        if left:
            raise Flaky(f"{name} {key}: injected failure ({left} left)")

    # -- activities -----------------------------------------------------------------------------

    @fg.activity
    def work(self, key: str) -> str:
        self._enter("work", key)
        return f"done {key}"

    @fg.activity(
        retry=fg.RetryPolicy(max_attempts=4, initial_interval=2.0, backoff=3.0)
    )
    def flaky(self, key: str) -> str:
        self._enter("flaky", key)
        return f"done {key}"

    @fg.activity(timeout=0.3, retry=fg.RetryPolicy(max_attempts=2, initial_interval=0))
    def slow(self, key: str) -> str:
        self._enter("slow", key)
        return f"done {key}"

    @fg.activity
    def refuse(self, key: str) -> str:
        self._enter("refuse", key)
        raise fg.NonRetryableError(f"{key} can never work")

    @fg.activity(retry=fg.RetryPolicy(max_attempts=5, non_retryable=(ValueError,)))
    def reject(self, key: str) -> str:
        self._enter("reject", key)
        raise ValueError(f"{key} is not a valid value")

    @fg.activity
    def unserializable(self, key: str) -> object:
        self._enter("unserializable", key)
        return threading.Lock()

    @fg.activity
    def load(self, table: str) -> int:
        self._enter("load", table)
        return len(table) * 100


# ---------------------------------------------------------------------------------------------
# Plain and async activities (module level; they record into a list a test may clear).

PLAIN_CALLS: list[int] = []


@fg.activity
def add_one(n: int) -> int:
    PLAIN_CALLS.append(n)
    return n + 1


@fg.activity
async def add_two_later(n: int) -> int:
    info = fg.activity_info()
    assert info.name == "add_two_later"
    return n + 2


# ---------------------------------------------------------------------------------------------
# Workflows.


@fg.workflow
def steps(keys: list[str]) -> fg.Workflow[list[str]]:
    """One ``Tools.work`` call per key, in order."""
    out = []
    for key in keys:
        out.append((yield from fg.call(Tools.work, key)))
    return out


@fg.workflow
def call_one(activity: str, key: str) -> fg.Workflow[object]:
    """Call the `Tools` activity named *activity* (by its registered name)."""
    return (yield fg.call(f"Tools.{activity}", key))


@fg.workflow
def three_kinds(n: int) -> fg.Workflow[list[Any]]:
    """A plain function, a bound method and an ``async def`` activity."""
    a = yield from fg.call(add_one, n)
    b = yield from fg.call(Tools.work, f"k{a}")
    c = yield from fg.call(add_two_later, a)
    return [a, b, c]


@fg.workflow
def sleep_then_wait(seconds: float, name: str = "go") -> fg.Workflow[object]:
    """Sleep, then take the signal *name* (which may well have arrived meanwhile)."""
    yield from fg.sleep(seconds)
    return (yield from fg.wait_signal(name))


@fg.workflow
def wait_for(name: str, count: int = 1) -> fg.Workflow[list[Any]]:
    """Take *count* signals called *name*; return their payloads."""
    got = []
    for _ in range(count):
        got.append((yield from fg.wait_signal(name)))
    return got


@fg.workflow
def long_sleep(days: float) -> fg.Workflow[float]:
    """Sleep *days*; return how many seconds of workflow time passed."""
    start = yield from fg.current_time()
    yield from fg.sleep(timedelta(days=days))
    end = yield from fg.current_time()
    return (end - start).total_seconds()


@fg.workflow
def tagged(stage: str) -> fg.Workflow[str]:
    yield from fg.set_tags(stage=stage, step=1)
    yield from fg.sleep(1)
    yield from fg.set_tags(step=2)
    return stage


@fg.workflow
def sleepy_child(seconds: float) -> fg.Workflow[str]:
    yield from fg.sleep(seconds)
    return "woke"


@fg.workflow
def parent_of_sleepy(seconds: float) -> fg.Workflow[str]:
    return (yield from fg.child(sleepy_child, seconds))


@fg.workflow
def failing_child(message: str) -> fg.Workflow[None]:
    yield from fg.sleep(1)
    raise RuntimeError(message)


@fg.workflow
def parent_catching(message: str) -> fg.Workflow[list[str]]:
    try:
        yield from fg.child(failing_child, message)
    except fg.ChildWorkflowError as exc:
        return [exc.child_id, exc.info.type, exc.info.message]
    return []


@fg.workflow
def parent_not_catching(message: str) -> fg.Workflow[None]:
    yield from fg.child(failing_child, message)


@fg.workflow
def etl_in_waves(first: list[str], second: list[str]) -> fg.Workflow[int]:
    """Scenario 6 in two waves, so a query between them sees progress."""
    done: list[str] = []
    yield from fg.on_query(
        "progress", lambda: {"done": len(done), "of": len(first) + len(second)}
    )
    total = 0
    for wave in (first, second):
        results = yield from fg.gather(*(fg.call(Tools.load, t) for t in wave))
        done.extend(wave)
        total += sum(results)
    yield from fg.set_tags(rows=total)
    return total


@fg.workflow
def info_twice(key: str) -> fg.Workflow[str]:
    """A flaky call, then a sleep (so a test can restart the engine between them)."""
    value = yield from fg.call(Tools.flaky, key)
    yield from fg.sleep(60)
    return value


# Versioning (scenario 7) across a restart: yesterday's code of `onboarding`, registered
# under that name on the first engine only. It cannot be decorated here, since the catalog
# already maps "onboarding" to today's code (tests.workflows.onboarding); an engine given
# it explicitly (``Engine(workflows=[onboarding_before_change])``) prefers it.


def onboarding_before_change(user: str) -> fg.Workflow[None]:
    from tests.workflows import create_account, send_tips, send_welcome_v1

    yield from fg.call(create_account, user)
    yield from fg.call(send_welcome_v1, user)
    yield from fg.sleep(timedelta(days=7))
    yield from fg.call(send_tips, user)


onboarding_before_change.__flowgen_workflow__ = fg.WorkflowDefinition(  # type: ignore[attr-defined]
    "onboarding", onboarding_before_change
)


def onboarding_edited_badly(user: str) -> fg.Workflow[None]:
    """Today's edit of `onboarding_before_change` made without `get_version`."""
    from tests.workflows import create_account, send_tips, send_welcome_v2

    yield from fg.call(create_account, user)
    yield from fg.call(send_welcome_v2, user, locale="en")
    yield from fg.sleep(timedelta(days=7))
    yield from fg.call(send_tips, user)


onboarding_edited_badly.__flowgen_workflow__ = fg.WorkflowDefinition(  # type: ignore[attr-defined]
    "onboarding", onboarding_edited_badly
)


# ---------------------------------------------------------------------------------------------
# Helpers.


def manual_engine(
    store: Store | None = None, clock: ManualClock | None = None, **kwargs: Any
) -> fg.Engine:
    """A hand-driven engine on a `MemoryStore` (or *store*) and a `ManualClock`."""
    return fg.Engine(
        store=store if store is not None else MemoryStore(),
        clock=clock if clock is not None else ManualClock(),
        **kwargs,
    )


@contextmanager
def background(engine: fg.Engine) -> Iterator[fg.Engine]:
    """``with engine:``, but a failing test still closes it."""
    with engine:
        yield engine


def snapshot(
    store: Store,
) -> tuple[list[WorkflowRecord], dict[tuple[str, str], list[Event]]]:
    """Everything a store holds: its runs and every run's history (for 'nothing changed')."""
    runs = sorted(store.list_runs(), key=lambda r: (r.workflow_id, r.run_id))
    histories = store.load_histories([(r.workflow_id, r.run_id) for r in runs])
    return runs, histories


def events_of(handle: fg.WorkflowHandle, kind: type) -> list[Any]:
    return [e for e in handle.history() if isinstance(e, kind)]


def db_path(tmp_path: Path, name: str = "flowgen.duckdb") -> str:
    return str(tmp_path / name)


def open_engine(path: str, **kwargs: Any) -> fg.Engine:
    """``fg.Engine(path, **kwargs)``: an engine on the DuckDB file at *path*."""
    return fg.Engine(path, **kwargs)


@fg.workflow
def parent_of_named_child(tag: str, child_id: str) -> fg.Workflow[str]:
    """Starts `sleepy_child` under an explicit id; reports a failed start as text."""
    try:
        return (
            yield StartChild(
                name="sleepy_child", args=(5.0,), workflow_id=child_id, fn=sleepy_child
            )
        )
    except fg.ChildWorkflowError as exc:
        return f"{tag}: {exc.info.type}"


@fg.activity(timeout=0.2, retry=fg.RetryPolicy(max_attempts=2, initial_interval=0))
async def hang_async(seconds: float) -> str:
    import asyncio

    await asyncio.sleep(seconds)
    return "finished"


@fg.workflow
def call_hang_async(seconds: float) -> fg.Workflow[str]:
    return (yield from fg.call(hang_async, seconds))


SIDE_EFFECT_CALLS: list[str] = []


def token_failing_once() -> str:
    SIDE_EFFECT_CALLS.append("call")
    if len(SIDE_EFFECT_CALLS) == 1:
        raise RuntimeError("entropy unavailable")
    return "token"


@fg.workflow
def needs_a_token() -> fg.Workflow[str]:
    yield from fg.sleep(1)
    return (yield from fg.side_effect(token_failing_once))


@fg.workflow
def parent_of_unknown() -> fg.Workflow[list[str]]:
    try:
        yield from fg.child("no_such_workflow")
    except fg.ChildWorkflowError as exc:
        return [exc.info.type, exc.info.message]
    return []


def parent_elsewhere(seconds: float) -> fg.Workflow[str]:
    """A parent whose code only the first process has (registered by hand)."""
    child = yield from fg.child(sleepy_child, seconds)
    return f"parent saw {child}"


parent_elsewhere.__flowgen_workflow__ = fg.WorkflowDefinition(  # type: ignore[attr-defined]
    "parent_elsewhere", parent_elsewhere
)
