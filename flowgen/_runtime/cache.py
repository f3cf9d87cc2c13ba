"""The interpreter cache: live generators kept in memory, the others rebuilt by replay.

Rules:

- At most ``size`` interpreters stay live, least recently used evicted first (evicted after
  each batch, never in the middle of one). A closed run's interpreter is dropped at once.
- An evicted run loses nothing: its history is in the store, and the next item for it
  rebuilds its interpreter by replaying that history (`InterpreterCache.get`). Replaying a
  committed history decides nothing new.
- A batch that wakes several evicted runs reads their histories in one query
  (`InterpreterCache.prefetch`), not one query per run.
- Only the decision loop touches the cache (under the loop's lock): interpreters are not
  thread-safe, and a generator may be resumed by one thread only.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from flowgen._core.interpreter import Interpreter
from flowgen._runtime.items import Key, Run
from flowgen._runtime.registry import Registry
from flowgen._stores.codec import CODEC
from flowgen._stores.protocol import Store
from flowgen._vocabulary.errors import StoreError, UnknownWorkflow
from flowgen._vocabulary.events import Event

__all__ = ["InterpreterCache"]

log = logging.getLogger("flowgen")


class InterpreterCache:
    """Interpreters of running runs by ``(workflow_id, run_id)``, least recently used first.

    Args:
        store: Where evicted runs' histories are read from.
        registry: Where a run's workflow function is found by name.
        size: How many interpreters stay live.
    """

    def __init__(self, store: Store, registry: Registry, size: int) -> None:
        self._store = store
        self._registry = registry
        self._size = size
        self._live: OrderedDict[Key, Interpreter] = OrderedDict()
        # The histories of the evicted runs the batch being applied wakes, read in one go.
        self._histories: dict[Key, list[Event]] = {}

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def add(self, key: Key, interp: Interpreter) -> None:
        """Keep *interp* live as the most recently used."""
        self._live[key] = interp

    def drop(self, key: Key) -> None:
        """Forget a run's interpreter (it closed, got stuck, or its batch was undone)."""
        self._live.pop(key, None)

    def trim(self) -> None:
        """Evict the least recently used interpreters beyond the cache's size."""
        while len(self._live) > self._size:
            self._live.popitem(last=False)

    def get(self, run: Run) -> Interpreter:
        """The run's interpreter, rebuilt by replaying its stored history if evicted.

        Raises:
            UnknownWorkflow: The run's workflow is not registered in this process.
            NonDeterminismError: The code no longer matches the history.
            HistoryCorruptError: The stored history is not a valid one.
        """
        interp = self._live.get(run.key)
        if interp is not None:
            self._live.move_to_end(run.key)
            return interp
        if run.fn is None:
            run.fn = self._registry.workflow(run.name).fn
        history = self._histories.pop(run.key, None)
        if history is None:
            history = self._store.load_history(run.workflow_id, run.run_id)
        interp = Interpreter(run.fn, codec=CODEC)
        step = interp.replay(history)
        if (
            step.events or step.perform
        ):  # pragma: no cover - committed histories are complete
            log.warning(
                "flowgen: rebuilding %r decided %d new event(s)",
                run.workflow_id,
                len(step.events),
            )
        self._live[run.key] = interp
        return interp

    def replayed(self, workflow_id: str, run_id: str) -> Interpreter:
        """A throwaway interpreter of a stored run the loop does not hold (a closed one).

        Raises:
            UnknownWorkflow: No such run, or its workflow is not registered here.
        """
        record = self._store.get_run(workflow_id, run_id)
        if record is None:
            raise UnknownWorkflow(f"no workflow with id {workflow_id!r}")
        interp = Interpreter(self._registry.workflow(record.name).fn, codec=CODEC)
        interp.replay(self._store.load_history(workflow_id, record.run_id))
        return interp

    def prefetch(self, keys: list[Key]) -> None:
        """Read the histories of the evicted runs among *keys* in one query, for `get`.

        With fewer than two such runs nothing is read here (one `load_history` is as
        cheap); a failed read leaves each rebuild to read for itself, and fail by itself.
        """
        self._histories = {}
        evicted = [key for key in keys if key not in self._live]
        if len(evicted) < 2:
            return
        try:
            self._histories = self._store.load_histories(evicted)
        except StoreError:
            return
