"""Run status: the one vocabulary of where a run is in its life.

Rules:

- `RunStatus` is the only spelling of a status: the interpreter's state machine, the
  engine's runs, a store's ``workflows.status`` column, the CLI and the notebook all use it.
- It is a `str` enum: a member *is* its string (``RunStatus.COMPLETED == "completed"``), so
  the DuckDB column, JSON and the journal keep the plain strings they always held, and a
  status read back from a store compares equal to its member.
- `RunStatus.CORRUPT` is a store's alone: a run whose history it could not read is
  quarantined with it, and no interpreter ever has it.
- Two members live only inside an interpreter and are never stored: `RunStatus.NEW` (the
  ``workflow_started`` event has not been fed yet) and `RunStatus.WAITING` (suspended at a
  ``yield``; a store says ``running``). `STORED_STATUSES` are the values of the column,
  `CLOSED_STATUSES` those of a run that has ended, whichever way.
"""

from __future__ import annotations

import enum
from typing import Final

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = ["RunStatus"]


class RunStatus(enum.StrEnum):
    """Where a run is in its life: a `str`, equal to the value stored for it.

    The interpreter moves a run through `NEW`, `RUNNING` and `WAITING` to one closed status;
    a store records `RUNNING` for every run that has not ended.
    """

    NEW = "new"
    """Created; the ``workflow_started`` event has not been fed yet (never stored)."""
    RUNNING = "running"
    """Not ended. In an interpreter: workflow code is executing right now."""
    WAITING = "waiting"
    """Suspended at a ``yield``, waiting for an outcome (never stored: stores say running)."""
    COMPLETED = "completed"
    """Returned a value."""
    FAILED = "failed"
    """Raised an exception."""
    CANCELLED = "cancelled"
    """Ended by a cancel request."""
    CONTINUED_AS_NEW = "continued_as_new"
    """Ended by starting its next run under the same workflow id."""
    TERMINATED = "terminated"
    """Ended from outside, without running its code (a conflicting start)."""
    CORRUPT = "corrupt"
    """Quarantined by its store: its history could not be read (the reason is in its
    ``error``). Nothing runs it again (never an interpreter's status)."""

    @property
    def is_closed(self) -> bool:
        """True once the run has ended, whichever way."""
        return self in CLOSED_STATUSES


CLOSED_STATUSES: Final[frozenset[RunStatus]] = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.CONTINUED_AS_NEW,
        RunStatus.TERMINATED,
        RunStatus.CORRUPT,
    }
)
"""The statuses of a run that has ended."""

STORED_STATUSES: Final[tuple[RunStatus, ...]] = (
    RunStatus.RUNNING,
    RunStatus.COMPLETED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.CONTINUED_AS_NEW,
    RunStatus.TERMINATED,
    RunStatus.CORRUPT,
)
"""The values of a store's ``workflows.status`` column, in the order they are listed."""
