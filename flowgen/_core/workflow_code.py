"""Whether this thread is running a workflow's code right now, and what that forbids.

Rules
=====

* The interpreter marks each resumption of a workflow's generator (`IN_WORKFLOW_CODE`),
  and only that: side effects, query handlers and activities run outside it.
* A function declared with ``@fg.activity`` called directly while the mark is set raises
  `UsageError` (`refuse_direct_call`): called inline it would do its work again on every
  replay, and record nothing. Everywhere else (tests, other activities, scripts) calling it
  directly is a plain call.
* A context variable, not a thread-local: an ``async def`` activity's task does not
  inherit the mark, and nothing here reads a clock, randomness, the environment or IO.
"""

from __future__ import annotations

from contextvars import ContextVar

from flowgen._vocabulary.errors import UsageError

__all__ = ["IN_WORKFLOW_CODE", "refuse_direct_call"]

IN_WORKFLOW_CODE: ContextVar[bool] = ContextVar(
    "flowgen_in_workflow_code", default=False
)
"""True while the interpreter resumes a workflow's generator (set, then reset, around it)."""


def refuse_direct_call(name: str) -> None:
    """Raise `UsageError` if an activity named *name* is called inside workflow code."""
    if IN_WORKFLOW_CODE.get():
        raise UsageError(
            f"activity {name!r} was called directly inside a workflow; activities run "
            f"through the engine: `result = yield fg.call({name.rsplit('.', 1)[-1]}, ...)` "
            "(called inline it would run again on every replay and record nothing)"
        )
