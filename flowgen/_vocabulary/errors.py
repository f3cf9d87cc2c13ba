"""flowgen's exceptions, and `ErrorInfo`, a failure recorded as data.

The tree, split by who is at fault and what the caller should do::

    FlowgenError
    ├── UsageError (also TypeError)        you called the API wrongly
    │   └── UnknownActivity               no activity of that name is registered
    ├── UnknownWorkflow (also LookupError) no workflow of that name or id
    ├── UnknownSchedule (also LookupError) no schedule of that id
    ├── WorkflowAlreadyExists              start() with an id that is taken
    ├── WorkflowClosed                     signal or cancel to a run that has finished
    ├── NonDeterminismError                the code no longer matches its recorded history
    ├── HistoryCorruptError                the history itself is invalid
    ├── WorkflowFailed                     handle.result() of a run that failed or was cancelled
    ├── StoreError                         the database file cannot be used
    │   ├── StoreLockedError               another process holds the file (one writer)
    │   ├── SchemaVersionError             the file was written by another flowgen version
    │   └── NotAFlowgenDatabase            the file is corrupt or belongs to something else
    └── WorkflowInterrupt                  thrown *into* workflow code at a ``yield``
        ├── ActivityError                  an activity failed after its retries were spent
        ├── ChildWorkflowError             a child workflow failed or was cancelled
        ├── SignalTimeout                  wait_signal(timeout=...) ran out
        ├── SignalSendError                send_signal() to a run that is unknown or closed
        └── Cancelled                      engine.cancel(); catch it to roll back a saga

Everything a workflow sees at a ``yield`` is rebuilt from an `ErrorInfo` on every replay, so a
workflow never receives the same exception object twice (python-trio/outcome's lesson).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = [
    "ActivityError",
    "Cancelled",
    "ChildWorkflowError",
    "CompensationError",
    "ErrorInfo",
    "FlowgenError",
    "HistoryCorruptError",
    "LeaseLost",
    "NonDeterminismError",
    "NonRetryableError",
    "NotAFlowgenDatabase",
    "SchemaVersionError",
    "SignalSendError",
    "SignalTimeout",
    "StoreError",
    "StoreLockedError",
    "UnknownActivity",
    "UnknownSchedule",
    "UnknownWorkflow",
    "UpdateFailed",
    "UpdateRejected",
    "UsageError",
    "WorkflowAlreadyExists",
    "WorkflowClosed",
    "WorkflowFailed",
    "WorkflowInterrupt",
    "WorkflowStillRunning",
]


def _storable(text: str) -> str:
    # Failure text is for humans, and every store must hold it: a surrogate code point
    # (os.fsdecode of a file name that is not UTF-8, in an exception's message) becomes
    # its escape, "\\udc80". Done when the record is made, so the first run and every
    # replay see the same text.
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@attrs.frozen
class ErrorInfo:
    """A failure recorded as data: what a history stores instead of an exception object.

    Attributes:
        type: The exception's class name, e.g. ``"CardDeclined"`` (stable across replays).
        message: ``str(exception)``.
        non_retryable: True when retrying cannot help (the engine stops at once).
        attempts: How many attempts were made before giving up (activities only).
        traceback: The formatted traceback of the original failure, for humans (left out
            of the repr, which stays one line).
        cause: For an `ActivityError` or `ChildWorkflowError` that escaped the workflow,
            the type name of the failure underneath (``"CardDeclined"``), so SQL can group
            failed runs by root cause.

    Text that no store could hold (a lone surrogate such as U+DC80) is kept as its
    backslash escape (a backslash, then ``udc80``).
    """

    type: str = attrs.field(converter=_storable)
    message: str = attrs.field(converter=_storable)
    non_retryable: bool = False
    attempts: int = 0
    traceback: str = attrs.field(default="", repr=False, converter=_storable)
    cause: str = attrs.field(default="", converter=_storable)

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


class FlowgenError(Exception):
    """Base class of every error flowgen raises."""


class UsageError(FlowgenError, TypeError):
    """The API was called wrongly (also a `TypeError`, so ``except TypeError`` catches it)."""


class UnknownActivity(UsageError):
    """No activity is registered under this name."""


class UnknownWorkflow(FlowgenError, LookupError):
    """No workflow definition has this name, or no run has this id."""


class UnknownSchedule(FlowgenError, LookupError):
    """No schedule has this id (`Engine.get_schedule`, ``pause_schedule``, ...)."""


class WorkflowAlreadyExists(FlowgenError):
    """`Engine.start` was given an id that is already in use (with ``on_conflict="fail"``)."""


class WorkflowClosed(FlowgenError):
    """A signal or cancellation was sent to a run that has already finished."""


class WorkflowStillRunning(UsageError):
    """`Engine.reset` or `Engine.retry` of a workflow id whose latest run still runs.

    Only a closed run can be reset or retried; ``terminate=True`` terminates the running
    run first, in the same transaction.
    """


class NonDeterminismError(FlowgenError):
    """Replaying a history under today's code diverged from what was recorded.

    The message names the workflow, the sequence number, what the history recorded, what the
    code yielded and the file and line of the ``yield``. The fix is almost always a
    `get_version` branch around the change.

    Attributes:
        workflow_id: The run's workflow id.
        seq: The sequence number where the divergence was found (``None`` if not at a seq).
    """

    def __init__(self, message: str, *, workflow_id: str = "", seq: int | None = None):
        super().__init__(message)
        self.workflow_id = workflow_id
        self.seq = seq


class HistoryCorruptError(FlowgenError):
    """A history is internally inconsistent: an outcome without its command, a duplicate, ..."""


class WorkflowFailed(FlowgenError):
    """Raised by ``handle.result()`` when the run failed or was cancelled.

    Attributes:
        workflow_id: The run's workflow id.
        status: ``"failed"``, ``"cancelled"`` or ``"terminated"``.
        error: The failure, as recorded.
    """

    def __init__(self, workflow_id: str, status: str, error: ErrorInfo):
        super().__init__(f"workflow {workflow_id!r} {status}: {error}")
        self.workflow_id = workflow_id
        self.status = status
        self.error = error


class UpdateRejected(FlowgenError):
    """`Engine.update` was refused, and nothing was recorded.

    Its validator raised (that exception is the ``__cause__``, and ``error`` records it),
    the workflow registered no update handler of that name, or the arguments do not fit
    the handler. A rejected update may be sent again (with the same ``update_id``).

    Attributes:
        workflow_id: The run's workflow id.
        update: The update's name.
        error: Why, as data (the validator's exception type and message).
    """

    def __init__(self, workflow_id: str, update: str, error: ErrorInfo):
        super().__init__(
            f"update {update!r} of workflow {workflow_id!r} rejected: {error}"
        )
        self.workflow_id = workflow_id
        self.update = update
        self.error = error


class UpdateFailed(FlowgenError):
    """Raised by `Engine.update` when the accepted update's handler raised.

    Attributes:
        workflow_id: The run's workflow id.
        update: The update's name.
        update_id: The update's id.
        error: The handler's failure, as recorded (``update_failed`` event).
    """

    def __init__(self, workflow_id: str, update: str, update_id: str, error: ErrorInfo):
        super().__init__(
            f"update {update!r} of workflow {workflow_id!r} failed: {error}"
        )
        self.workflow_id = workflow_id
        self.update = update
        self.update_id = update_id
        self.error = error


class StoreError(FlowgenError):
    """The database cannot be used as a flowgen store."""


class StoreLockedError(StoreError):
    """Another process holds the database file open (DuckDB allows one writer process)."""


class LeaseLost(StoreError):
    """A commit touched runs whose lease this engine no longer holds (a fleet on PostgreSQL).

    Another engine claimed them after this one's lease lapsed (a fencing epoch moved on),
    so nothing of the commit was written; the engine drops those runs and retries the rest.

    Attributes:
        run_ids: The runs whose lease was lost.
    """

    def __init__(self, message: str, run_ids: frozenset[str]) -> None:
        super().__init__(message)
        self.run_ids = run_ids


class SchemaVersionError(StoreError):
    """The database was written with a schema version this flowgen cannot read."""


class NotAFlowgenDatabase(StoreError):
    """The file is not a flowgen database: corrupt, or written by another program."""


class NonRetryableError(Exception):
    """Raise (or subclass) this in an activity to fail it at once, without retries."""


class WorkflowInterrupt(FlowgenError):
    """Base class of the errors thrown into workflow code at a ``yield``.

    Attributes:
        info: The failure as recorded in the history.
    """

    def __init__(self, info: ErrorInfo, message: str | None = None):
        super().__init__(message if message is not None else info.message or info.type)
        self.info = info


class ActivityError(WorkflowInterrupt):
    """An activity failed after its retries were spent (thrown into the workflow).

    Attributes:
        activity: The activity's registered name.
        type: The original exception's class name, e.g. ``"CardDeclined"``.
        attempts: How many attempts were made.
    """

    def __init__(self, activity: str, info: ErrorInfo):
        super().__init__(
            info,
            f"activity {activity!r} failed after {info.attempts} attempt(s): {info}",
        )
        self.activity = activity
        self.type = info.type
        self.attempts = info.attempts


class ChildWorkflowError(WorkflowInterrupt):
    """A child workflow failed or was cancelled (thrown into the parent).

    Attributes:
        child_id: The child's workflow id.
    """

    def __init__(self, child_id: str, info: ErrorInfo):
        super().__init__(info, f"child workflow {child_id!r} failed: {info}")
        self.child_id = child_id


class SignalTimeout(WorkflowInterrupt):
    """`wait_signal` reached its timeout before the signal arrived."""

    def __init__(self, name: str):
        super().__init__(
            ErrorInfo("SignalTimeout", f"no {name!r} signal before the timeout")
        )
        self.name = name


class SignalSendError(WorkflowInterrupt):
    """`send_signal` named a run that does not exist or has finished."""


class Cancelled(WorkflowInterrupt):
    """The run was cancelled with `Engine.cancel`.

    It is an `Exception`, so ``except Exception`` in a saga catches it and can compensate; if
    it escapes the workflow the run ends as ``cancelled``.
    """

    def __init__(self, reason: str = ""):
        super().__init__(ErrorInfo("Cancelled", reason))


class CompensationError(FlowgenError, ExceptionGroup[Exception]):
    """One or more saga compensations failed; the others still ran.

    An `ExceptionGroup`, so ``except*`` can pick out the individual failures.
    """

    def __new__(
        cls, message: str, exceptions: Sequence[Exception]
    ) -> CompensationError:
        return super().__new__(cls, message, exceptions)

    def derive(  # type: ignore[override]  # narrower than ExceptionGroup's overloads
        self, excs: Sequence[Exception]
    ) -> CompensationError:
        """A group of the same kind holding *excs* (used by ``except*``)."""
        return CompensationError(self.message, excs)


attrs.resolve_types(ErrorInfo)
