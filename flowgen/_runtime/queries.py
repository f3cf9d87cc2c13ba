"""Queries at run time: `Engine.query` answered on the decision loop.

Rules:

- A query reads a run's state through the handler its code registered (``fg.on_query``)
  and records nothing.
- A running run is asked through its live interpreter (from the cache, replayed if it was
  evicted); a closed run is replayed from its history (`InterpreterCache.replayed`), so
  a finished run still answers.
- An id no run has is `UnknownWorkflow`.
- The answer crosses to the caller through encode→decode, like every value that leaves a
  workflow: the caller never holds a reference into the run's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowgen._runtime.items import Query
from flowgen._stores.codec import decode, encode
from flowgen._vocabulary.errors import UnknownWorkflow

if TYPE_CHECKING:  # the loop is handed in; this module only names its type
    from flowgen._runtime.loop import DecisionLoop

__all__ = ["answer_query"]


def answer_query(loop: DecisionLoop, item: Query) -> object:
    """The answer of the run *item* names to its query (on the loop's thread)."""
    run = loop.table.running(item.workflow_id)
    if run is not None:
        interp = loop.cache.get(run)
    else:
        run_id = loop.table.current.get(item.workflow_id)
        record = loop.store.get_run(item.workflow_id) if run_id is None else None
        if run_id is None and record is None:
            raise UnknownWorkflow(f"no workflow with id {item.workflow_id!r}")
        interp = loop.cache.replayed(
            item.workflow_id, run_id or (record.run_id if record else "")
        )
    answer = interp.query(item.name, *item.args)
    return decode(encode(answer, f"answer of query {item.name!r}"))
