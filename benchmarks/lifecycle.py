"""Life-cycle cost: total interpreter CPU over the life of a workflow that wakes once per step.

The workload is ``sleepy(n)``: n one-second timers in sequence, so the run wakes n times. The
engine is driven by hand (``ManualClock`` with autojump, ``run_until_idle``) on a
``MemoryStore``, so what is measured is the decision work, not the disk: the CPU spent inside
``Interpreter.feed`` and ``Interpreter.replay`` (counted with ``time.process_time`` around
each call), and beside it the CPU of the engine's whole decision loop (``DecisionLoop.process``).

* **cached**: the live generator stays in the engine's cache, each wake feeds one event, so the
  life of a 10,000-step run should cost 10x that of a 1,000-step run (linear).
* **evicted**: ``cache_size=1`` and two such runs whose timers alternate (the second starts
  half a second later), so each wake finds its run evicted by the other's: the engine rebuilds
  it by replaying its whole history, then feeds the new event. The cost of wake k is then
  proportional to k and the life costs n^2/2 steps of replay: 10x the steps costs ~100x.
  That is the price of eviction by design (a generator cannot be saved, only re-run); the
  cache exists to avoid paying it. Sizes here are 10x smaller (100 and 1,000 steps).

    python -m benchmarks.lifecycle --worker 10000 10000 0
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks._common import Config, emit, figure, ratios, run_worker


def worker(n: int, cache_size: int, pair: bool) -> dict[str, Any]:
    import flowgen as fg
    from benchmarks._workflows import sleepy
    from flowgen._core.interpreter import Interpreter
    from flowgen._runtime.loop import DecisionLoop
    from flowgen._stores.memory import MemoryStore
    from flowgen.testing import ManualClock

    spent = {"feed": 0.0, "replay": 0.0, "process": 0.0}
    calls = {"feed": 0, "replay": 0, "process": 0}

    def timed(owner: type, name: str, key: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] += time.process_time() - start
                calls[key] += 1

        setattr(owner, name, wrapper)

    timed(Interpreter, "feed", "feed")
    timed(Interpreter, "feed_many", "feed")
    timed(Interpreter, "replay", "replay")
    timed(DecisionLoop, "process", "process")  # one batch of the decision loop

    clock = ManualClock()
    engine = fg.Engine(store=MemoryStore(), clock=clock, cache_size=cache_size)
    cpu0, t0 = time.process_time(), time.perf_counter()
    handles = [engine.start(sleepy, n, id="life-a")]
    if pair:
        clock.advance(0.5)
        handles.append(engine.start(sleepy, n, id="life-b"))
    engine.run_until_idle()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    for h in handles:
        assert h.result() == n
    engine.close()
    runs = len(handles)
    return {
        "steps": n,
        "cache_size": cache_size,
        "runs": runs,
        "interpreter_cpu_s": (spent["feed"] + spent["replay"]) / runs,
        "feed_cpu_s": spent["feed"] / runs,
        "replay_cpu_s": spent["replay"] / runs,
        "replays": calls["replay"],
        "feeds": calls["feed"],
        "decision_loop_cpu_s": spent["process"] / runs,
        "process_cpu_s": cpu / runs,
        "wall_s": wall,
    }


def run(cfg: Config) -> dict[str, Any]:
    small, large = (100, 1000) if cfg.quick else (1000, 10_000)
    e_small, e_large = (30, 300) if cfg.quick else (100, 1000)
    raw: dict[str, list[dict[str, Any]]] = {
        "cached_small": [],
        "cached_large": [],
        "evicted_small": [],
        "evicted_large": [],
    }
    for r in range(cfg.repeats):
        for key, n, cache, pair in (
            ("cached_small", small, 10_000, 0),
            ("cached_large", large, 10_000, 0),
            ("evicted_small", e_small, 1, 1),
            ("evicted_large", e_large, 1, 1),
        ):
            res = run_worker("lifecycle", n, cache, pair)
            raw[key].append(res)
            cfg.log(
                f"  lifecycle {key} ({n} steps) run {r + 1}: interpreter "
                f"{res['interpreter_cpu_s'] * 1000:.0f} ms CPU, {res['replays']} replays"
            )

    def values(key: str, field: str = "interpreter_cpu_s") -> list[float | None]:
        return [res[field] for res in raw[key]]

    figures = [
        figure(
            "lifecycle.cached",
            f"interpreter CPU over a life of {large:,} vs {small:,} wakes (cached)",
            "CPU s",
            values("cached_large"),
            anchor_name=f"the same, {small:,} wakes",
            anchor=values("cached_small"),
            ratio=ratios(values("cached_large"), values("cached_small")),
            ratio_text=f"{large:,} / {small:,} steps",
            target="~10 (linear, not ~100)",
            met=lambda x: x <= 13,
        ),
        figure(
            "lifecycle.cached.loop",
            f"decision-loop CPU over a life of {large:,} vs {small:,} wakes (cached)",
            "CPU s",
            values("cached_large", "decision_loop_cpu_s"),
            anchor_name=f"the same, {small:,} wakes",
            anchor=values("cached_small", "decision_loop_cpu_s"),
            ratio=ratios(
                values("cached_large", "decision_loop_cpu_s"),
                values("cached_small", "decision_loop_cpu_s"),
            ),
            ratio_text=f"{large:,} / {small:,} steps",
            target="~10 (linear, not ~100)",
            met=lambda x: x <= 13,
        ),
        figure(
            "lifecycle.evicted",
            f"interpreter CPU over a life of {e_large:,} vs {e_small:,} wakes, "
            f"evicted before every wake (cache_size=1)",
            "CPU s",
            values("evicted_large"),
            anchor_name=f"the same, {e_small:,} wakes",
            anchor=values("evicted_small"),
            ratio=ratios(values("evicted_large"), values("evicted_small")),
            ratio_text=f"{e_large:,} / {e_small:,} steps",
            target="~10 (linear, not ~100)",
            met=lambda x: x <= 13,
            note=(
                "quadratic by nature: an evicted run is rebuilt by replaying its whole "
                "history at each wake, so wake k costs k steps of replay"
            ),
        ),
    ]
    return {
        "params": {
            "cached_steps": [small, large],
            "evicted_steps": [e_small, e_large],
            "store": "memory",
        },
        "figures": figures,
        "raw": raw,
    }


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        emit(worker(int(sys.argv[2]), int(sys.argv[3]), bool(int(sys.argv[4]))))
    else:
        sys.exit("usage: python -m benchmarks.lifecycle --worker STEPS CACHE_SIZE PAIR")
