"""flowgen: durable workflows as plain Python generators, with histories in DuckDB.

A workflow is a generator function that yields commands (call an activity, sleep, wait for
a signal, ...). The engine performs each command, records its outcome in the run's history
and sends it back in. After a crash the run is rebuilt by running the generator again
against its history. See https://flowgen.readthedocs.io (or ``docs/``) for the tour.
"""

# `testing` so that `fg.testing.ManualClock` works after `import flowgen` (DESIGN.md).
from flowgen import testing as testing
from flowgen._core.dsl import (
    ActivityDefinition as ActivityDefinition,
    Saga as Saga,
    Workflow as Workflow,
    WorkflowDefinition as WorkflowDefinition,
    activity as activity,
    call as call,
    child as child,
    continue_as_new as continue_as_new,
    current_time as current_time,
    gather as gather,
    get_version as get_version,
    info as info,
    on_query as on_query,
    patched as patched,
    race as race,
    send_signal as send_signal,
    set_tags as set_tags,
    side_effect as side_effect,
    sleep as sleep,
    wait_signal as wait_signal,
    workflow as workflow,
)
from flowgen._core.interpreter import (
    Codec as Codec,
    Interpreter as Interpreter,
    RunStatus as RunStatus,
    Step as Step,
    error_info as error_info,
    replay as replay,
)

# `_render.html` is imported for its effect: it installs `_repr_html_` on every command and
# event class.
from flowgen._render import html as _html  # noqa: F401
from flowgen._runtime.draws import random as random, uuid4 as uuid4
from flowgen._runtime.engine import Engine as Engine
from flowgen._runtime.handle import WorkflowHandle as WorkflowHandle
from flowgen._runtime.invoke import (
    ActivityInfo as ActivityInfo,
    ActivityTimeout as ActivityTimeout,
    activity_info as activity_info,
    heartbeat as heartbeat,
)
from flowgen._runtime.limits import WaitingActivity as WaitingActivity
from flowgen._runtime.stepper import (
    ReplayResult as ReplayResult,
    Stepper as Stepper,
    check_replay as check_replay,
)
from flowgen._stores.duckdb_store import DuckDBStore as DuckDBStore
from flowgen._stores.memory import MemoryStore as MemoryStore
from flowgen._stores.protocol import (
    ScheduleRecord as ScheduleRecord,
    WorkflowRecord as WorkflowRecord,
)
from flowgen._vocabulary.commands import (
    DEFAULT_VERSION as DEFAULT_VERSION,
    ActivityOptions as ActivityOptions,
    CallActivity as CallActivity,
    Command as Command,
    ContinueAsNew as ContinueAsNew,
    CurrentTime as CurrentTime,
    Gather as Gather,
    GetInfo as GetInfo,
    GetVersion as GetVersion,
    ParentClose as ParentClose,
    Patched as Patched,
    Race as Race,
    RecordSideEffect as RecordSideEffect,
    RegisterQuery as RegisterQuery,
    SendSignal as SendSignal,
    SetTags as SetTags,
    StartChild as StartChild,
    StartTimer as StartTimer,
    WaitSignal as WaitSignal,
    WorkflowInfo as WorkflowInfo,
)
from flowgen._vocabulary.errors import (
    ActivityError as ActivityError,
    Cancelled as Cancelled,
    ChildWorkflowError as ChildWorkflowError,
    CompensationError as CompensationError,
    ErrorInfo as ErrorInfo,
    FlowgenError as FlowgenError,
    HistoryCorruptError as HistoryCorruptError,
    NonDeterminismError as NonDeterminismError,
    NonRetryableError as NonRetryableError,
    NotAFlowgenDatabase as NotAFlowgenDatabase,
    SchemaVersionError as SchemaVersionError,
    SignalSendError as SignalSendError,
    SignalTimeout as SignalTimeout,
    StoreError as StoreError,
    StoreLockedError as StoreLockedError,
    UnknownActivity as UnknownActivity,
    UnknownSchedule as UnknownSchedule,
    UnknownWorkflow as UnknownWorkflow,
    UsageError as UsageError,
    WorkflowAlreadyExists as WorkflowAlreadyExists,
    WorkflowClosed as WorkflowClosed,
    WorkflowFailed as WorkflowFailed,
    WorkflowInterrupt as WorkflowInterrupt,
)
from flowgen._vocabulary.events import (
    ActivityAttemptFailed as ActivityAttemptFailed,
    ActivityCompleted as ActivityCompleted,
    ActivityFailed as ActivityFailed,
    ActivityHeartbeat as ActivityHeartbeat,
    ActivityResultIgnored as ActivityResultIgnored,
    ActivityScheduled as ActivityScheduled,
    CancelRequested as CancelRequested,
    ChildCompleted as ChildCompleted,
    ChildFailed as ChildFailed,
    ChildStarted as ChildStarted,
    CommandCancelled as CommandCancelled,
    Event as Event,
    JsonValue as JsonValue,
    SideEffectRecorded as SideEffectRecorded,
    SignalReceived as SignalReceived,
    SignalSendFailed as SignalSendFailed,
    SignalSent as SignalSent,
    SignalTimedOut as SignalTimedOut,
    SignalWaitStarted as SignalWaitStarted,
    TagsSet as TagsSet,
    TimerFired as TimerFired,
    TimerStarted as TimerStarted,
    VersionMarked as VersionMarked,
    WorkflowCancelled as WorkflowCancelled,
    WorkflowCompleted as WorkflowCompleted,
    WorkflowContinuedAsNew as WorkflowContinuedAsNew,
    WorkflowErrored as WorkflowErrored,
    WorkflowStarted as WorkflowStarted,
    WorkflowTerminated as WorkflowTerminated,
)
from flowgen._vocabulary.limits import (
    DEFAULT_TASK_QUEUE as DEFAULT_TASK_QUEUE,
    RateLimit as RateLimit,
)
from flowgen._vocabulary.retry import RetryPolicy as RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "ActivityAttemptFailed",
    "ActivityCompleted",
    "ActivityDefinition",
    "ActivityError",
    "ActivityFailed",
    "ActivityHeartbeat",
    "ActivityInfo",
    "ActivityOptions",
    "ActivityResultIgnored",
    "ActivityScheduled",
    "ActivityTimeout",
    "CallActivity",
    "CancelRequested",
    "Cancelled",
    "ChildCompleted",
    "ChildFailed",
    "ChildStarted",
    "ChildWorkflowError",
    "Codec",
    "Command",
    "CommandCancelled",
    "CompensationError",
    "ContinueAsNew",
    "CurrentTime",
    "DEFAULT_TASK_QUEUE",
    "DEFAULT_VERSION",
    "DuckDBStore",
    "Engine",
    "ErrorInfo",
    "Event",
    "FlowgenError",
    "Gather",
    "GetInfo",
    "GetVersion",
    "HistoryCorruptError",
    "Interpreter",
    "JsonValue",
    "MemoryStore",
    "NonDeterminismError",
    "NonRetryableError",
    "NotAFlowgenDatabase",
    "ParentClose",
    "Patched",
    "Race",
    "RateLimit",
    "RecordSideEffect",
    "RegisterQuery",
    "ReplayResult",
    "RetryPolicy",
    "RunStatus",
    "Saga",
    "ScheduleRecord",
    "SchemaVersionError",
    "SendSignal",
    "SetTags",
    "SideEffectRecorded",
    "SignalReceived",
    "SignalSendError",
    "SignalSendFailed",
    "SignalSent",
    "SignalTimedOut",
    "SignalTimeout",
    "SignalWaitStarted",
    "StartChild",
    "StartTimer",
    "Step",
    "Stepper",
    "StoreError",
    "StoreLockedError",
    "TagsSet",
    "TimerFired",
    "TimerStarted",
    "UnknownActivity",
    "UnknownSchedule",
    "UnknownWorkflow",
    "UsageError",
    "VersionMarked",
    "WaitSignal",
    "WaitingActivity",
    "Workflow",
    "WorkflowAlreadyExists",
    "WorkflowCancelled",
    "WorkflowClosed",
    "WorkflowCompleted",
    "WorkflowContinuedAsNew",
    "WorkflowDefinition",
    "WorkflowErrored",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowInterrupt",
    "WorkflowRecord",
    "WorkflowStarted",
    "WorkflowTerminated",
    "__version__",
    "activity",
    "activity_info",
    "call",
    "check_replay",
    "child",
    "continue_as_new",
    "current_time",
    "error_info",
    "gather",
    "get_version",
    "heartbeat",
    "info",
    "on_query",
    "patched",
    "race",
    "random",
    "replay",
    "send_signal",
    "set_tags",
    "side_effect",
    "sleep",
    "uuid4",
    "wait_signal",
    "workflow",
]


def _fixup_module_metadata() -> None:
    # Reprs, tracebacks and the API docs show `flowgen.X`, not `flowgen._private.X`.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("flowgen._"):
            try:
                obj.__module__ = __name__
            except (
                AttributeError,
                TypeError,
            ):  # aliases and builtins cannot be changed
                pass


_fixup_module_metadata()
