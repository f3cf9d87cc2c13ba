"""Reads the decision loop does for a whole batch at once, not per item.

* the stored runs of the ids a batch of starts uses (`Store.latest_runs`, optional);
* the histories of the evicted runs a batch wakes (`Store.load_histories`).

Both must decide exactly what the per-item reads decided: conflicts are still caught, and a
rebuilt run continues from its stored history.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

import flowgen as fg
from flowgen._stores.memory import MemoryStore


@fg.workflow(name="tests.batch_reads.parked")
def parked(i: int) -> Generator[Any, Any, int]:
    first = yield fg.wait_signal("go")
    second = yield fg.wait_signal("go")
    return i * 100 + first + second


@pytest.fixture(params=["memory", "duckdb"])
def engine(request: pytest.FixtureRequest) -> Iterator[fg.Engine]:
    kwargs: dict[str, Any] = {"cache_size": 1, "max_batch": 64}
    if request.param == "memory":
        e = fg.Engine(store=MemoryStore(), **kwargs)
    else:
        e = fg.Engine(":memory:", **kwargs)
    with e:
        yield e


def together(n: int, job: Callable[[int], object]) -> list[object]:
    """Run job(0..n-1) from n threads released at once, so their items share batches."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = job(i)
        except Exception as exc:  # compared below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_evicted_runs_woken_in_one_batch_continue_from_their_histories(
    engine: fg.Engine,
) -> None:
    n = 24
    handles = engine.start_many(parked, [(i,) for i in range(n)])
    ids = [h.workflow_id for h in handles]
    # cache_size=1: all but one are evicted; each signal round wakes them together.
    together(n, lambda i: engine.signal(ids[i], "go", 1))
    together(n, lambda i: engine.signal(ids[i], "go", 2))
    assert [engine.get(i).result(timeout=30) for i in ids] == [
        i * 100 + 3 for i in range(n)
    ]


def test_concurrent_starts_still_see_stored_runs(engine: fg.Engine) -> None:
    n = 24
    engine.start_many(
        parked, [(i,) for i in range(n)], ids=[f"b-{i}" for i in range(n)]
    )
    # Half the ids exist (stored, evicted from the loop's cache or not), half are new.
    results = together(
        2 * n, lambda i: engine.start(parked, i, id=f"b-{i}", on_conflict="fail")
    )
    assert all(isinstance(r, fg.WorkflowAlreadyExists) for r in results[:n])
    assert all(isinstance(r, fg.WorkflowHandle) for r in results[n:])
    reused = together(
        n, lambda i: engine.start(parked, i, id=f"b-{i}", on_conflict="use_existing")
    )
    assert [h.workflow_id for h in reused] == [f"b-{i}" for i in range(n)]  # type: ignore[attr-defined]
    assert len(engine.list_runs(name="tests.batch_reads.parked")) == 2 * n
