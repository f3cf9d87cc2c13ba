"""The workload `test_crash.py` kills with SIGKILL: a mixed set of workflows on a DuckDB file.

Run as ``python -m tests.crash_worker DB DIR SEED [SIZE]`` from the repository root. It opens
``fg.Engine(DB)`` in background mode (which resumes whatever an earlier, killed worker left),
then works through the plan for SEED: it starts workflows and sends signals, skipping what
``DIR/acks`` says it already did. Each line of ``acks`` is written (and fsynced) only after the
engine call returned, so an acknowledged start or signal is one the engine promised to keep.
A start that may have been committed without its ack is repeated with
``on_conflict="use_existing"``; a signal that may have been committed without its ack is looked
up in the target's history before it is sent again (a client-side check, so the test can hold
the store to exactly once). When everything is acknowledged it waits for every workflow to
finish, writes ``done`` and exits.

Every activity execution appends ``workflow_id run_id seq attempt name`` to
``DIR/executions`` (fsynced before the activity returns), so the test can count executions
against the calls the store recorded.

The workload mixes activities with retries (a deterministic first-attempt failure),
``gather``, timers, client signals and signals sent by other workflows, child workflows,
a saga that rolls back, and a continue-as-new chain.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from typing import Any

import attrs

import flowgen as fg

RETRY = fg.RetryPolicy(max_attempts=6, initial_interval=0.1, backoff=1.5)
_log_lock = threading.Lock()
_executions_path = ""


def _append(path: str, line: str) -> None:
    with _log_lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def _executed() -> fg.ActivityInfo:
    info = fg.activity_info()
    _append(
        _executions_path,
        f"{info.workflow_id} {info.run_id} {info.seq} {info.attempt} {info.name}",
    )
    return info


class Flaky(Exception):
    """A first attempt that fails on purpose."""


class Declined(Exception):
    """The saga's last step: never works."""


# ---------------------------------------------------------------------------------------------
# Activities.


@fg.activity(name="crash_step", retry=RETRY)
def crash_step(key: str, i: int) -> str:
    info = _executed()
    time.sleep(0.04 + 0.02 * (i % 3))
    if info.attempt == 1 and i % 3 == 1:
        raise Flaky(f"{key}:{i} first attempt")
    return f"{key}:{i}"


@fg.activity(name="crash_book", retry=RETRY)
def crash_book(key: str, what: str) -> str:
    _executed()
    return f"{what}-{key}"


@fg.activity(name="crash_undo", retry=RETRY)
def crash_undo(booking: str) -> str:
    _executed()
    time.sleep(0.05)
    return f"undone {booking}"


@fg.activity(name="crash_charge", retry=fg.RetryPolicy(non_retryable=(Declined,)))
def crash_charge(key: str) -> str:
    _executed()
    raise Declined(f"card of {key} declined")


# ---------------------------------------------------------------------------------------------
# Workflows.


@fg.workflow(name="crash_chain")
def crash_chain(key: str, n: int) -> fg.Workflow[list[str]]:
    out = []
    for i in range(n):
        out.append((yield from fg.call(crash_step, key, i)))
    return out


@fg.workflow(name="crash_fanout")
def crash_fanout(key: str, n: int) -> fg.Workflow[list[str]]:
    results = yield from fg.gather(*(fg.call(crash_step, key, i) for i in range(n)))
    return list(results)


@fg.workflow(name="crash_timers")
def crash_timers(key: str, n: int) -> fg.Workflow[int]:
    for i in range(n):
        yield from fg.sleep(0.1 + 0.1 * (i % 2))
        yield from fg.call(crash_step, key, i)
    return n


@fg.workflow(name="crash_signals")
def crash_signals(n: int) -> fg.Workflow[list[int]]:
    """Wait until *n* distinct ``item`` payloads have arrived; return them sorted."""
    seen: set[int] = set()
    while len(seen) < n:
        seen.add((yield from fg.wait_signal("item", result_type=int)))
    return sorted(seen)


@fg.workflow(name="crash_sender")
def crash_sender(target: str, payload: int) -> fg.Workflow[int]:
    yield from fg.sleep(0.02)
    yield from fg.send_signal(target, "item", payload)
    return payload


@fg.workflow(name="crash_parent")
def crash_parent(key: str) -> fg.Workflow[list[Any]]:
    child = yield from fg.child(crash_chain, f"{key}-child", 2)
    own = yield from fg.call(crash_step, key, 9)
    return [child, own]


@fg.workflow(name="crash_saga")
def crash_saga(key: str) -> fg.Workflow[str]:
    saga = fg.Saga()
    try:
        hotel = yield from fg.call(crash_book, key, "hotel")
        saga.add(fg.call(crash_undo, hotel))
        yield from fg.sleep(0.03)
        flight = yield from fg.call(crash_book, key, "flight")
        saga.add(fg.call(crash_undo, flight))
        yield from fg.call(crash_charge, key)
        return "booked"
    except Exception:
        yield from saga.compensate()
        raise


@fg.workflow(name="crash_rounds")
def crash_rounds(key: str, round_: int, total: int) -> fg.Workflow[int]:
    yield from fg.call(crash_step, f"{key}-r{round_}", round_)
    yield from fg.sleep(0.02)
    if round_ + 1 < total:
        yield from fg.continue_as_new(key, round_ + 1, total)
    return round_


# ---------------------------------------------------------------------------------------------
# The plan.


@attrs.frozen
class Start:
    workflow_id: str
    name: str
    args: tuple[Any, ...]

    @property
    def ack(self) -> str:
        return f"start {self.workflow_id}"


@attrs.frozen
class Signal:
    workflow_id: str
    payload: int

    @property
    def ack(self) -> str:
        return f"signal {self.workflow_id} {self.payload}"


def plan(seed: int, size: int = 1) -> list[Start | Signal]:
    """The operations of one workload, in order (deterministic for *seed*).

    *size* groups of workflows, each of the same mix (ids end in ``-g<n>``).
    """
    rng = random.Random(seed)
    ops: list[Start | Signal] = []
    others: list[Start | Signal] = []
    for g in range(size):
        targets = [f"sig-{i}-g{g}" for i in range(2)]
        for target in targets:
            ops.append(Start(target, "crash_signals", (6,)))
        payloads = {target: list(range(6)) for target in targets}
        for payloads_of in payloads.values():
            rng.shuffle(payloads_of)
        for i in range(4):
            others.append(
                Start(
                    f"chain-{i}-g{g}", "crash_chain", (f"c{i}g{g}", rng.randint(3, 7))
                )
            )
        others.append(
            Start(f"fanout-g{g}", "crash_fanout", (f"fg{g}", rng.randint(2, 5)))
        )
        for i in range(2):
            others.append(Start(f"timers-{i}-g{g}", "crash_timers", (f"t{i}g{g}", 3)))
        for i in range(2):
            others.append(Start(f"parent-{i}-g{g}", "crash_parent", (f"p{i}g{g}",)))
        others.append(Start(f"saga-g{g}", "crash_saga", (f"sg{g}",)))
        others.append(Start(f"rounds-g{g}", "crash_rounds", (f"rg{g}", 0, 3)))
        for target in targets:
            # Half of a target's signals come from the client, half from sender workflows.
            for payload in payloads[target][:3]:
                others.append(Signal(target, payload))
            for payload in payloads[target][3:]:
                others.append(
                    Start(
                        f"sender-{target}-{payload}", "crash_sender", (target, payload)
                    )
                )
    rng.shuffle(others)
    return ops + others


def expected_results(ops: list[Start | Signal]) -> dict[str, tuple[str, Any]]:
    """``workflow_id -> (status, result)`` of the latest run, once everything finished."""
    expected: dict[str, tuple[str, Any]] = {}
    for op in ops:
        if not isinstance(op, Start):
            continue
        args = op.args
        match op.name:
            case "crash_chain" | "crash_fanout":
                key, n = args
                expected[op.workflow_id] = (
                    "completed",
                    [f"{key}:{i}" for i in range(n)],
                )
            case "crash_timers":
                expected[op.workflow_id] = ("completed", args[1])
            case "crash_signals":
                expected[op.workflow_id] = ("completed", list(range(args[0])))
            case "crash_sender":
                expected[op.workflow_id] = ("completed", args[1])
            case "crash_parent":
                (key,) = args
                child = [f"{key}-child:0", f"{key}-child:1"]
                expected[op.workflow_id] = ("completed", [child, f"{key}:9"])
                expected[f"{op.workflow_id}/0"] = ("completed", child)
            case "crash_saga":
                expected[op.workflow_id] = ("failed", None)
            case "crash_rounds":
                expected[op.workflow_id] = ("completed", args[2] - 1)
    return expected


WORKFLOWS = {
    fn.__name__: fn
    for fn in (
        crash_chain,
        crash_fanout,
        crash_timers,
        crash_signals,
        crash_sender,
        crash_parent,
        crash_saga,
        crash_rounds,
    )
}


# ---------------------------------------------------------------------------------------------
# The worker.


def _read_acks(path: str) -> set[str]:
    try:
        with open(path) as file:
            return {line.strip() for line in file if line.endswith("\n")}
    except FileNotFoundError:
        return set()


def _already_received(engine: fg.Engine, op: Signal) -> bool:
    for event in engine.get(op.workflow_id).history():
        if isinstance(event, fg.SignalReceived) and event.sender is None:
            if event.payload == op.payload:
                return True
    return False


def main(db: str, directory: str, seed: int, size: int = 1) -> int:
    global _executions_path
    _executions_path = os.path.join(directory, "executions")
    acks_path = os.path.join(directory, "acks")
    acks = _read_acks(acks_path)
    ops = plan(seed, size)
    pacing = random.Random(seed * 7919 + len(acks))
    with fg.Engine(db, max_workers=4) as engine:
        print("ready", flush=True)
        for op in ops:
            if op.ack in acks:
                continue
            if isinstance(op, Start):
                engine.start(
                    WORKFLOWS[op.name],
                    *op.args,
                    id=op.workflow_id,
                    on_conflict="use_existing",
                )
            elif not _already_received(engine, op):
                engine.signal(op.workflow_id, "item", op.payload)
            _append(acks_path, op.ack)
            time.sleep(pacing.uniform(0.0, 0.08))
        for workflow_id in expected_results(ops):
            try:
                engine.get(workflow_id).result(timeout=120)
            except fg.WorkflowFailed:
                pass
    _append(acks_path, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:5])))
