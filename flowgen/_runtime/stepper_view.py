"""A Stepper's state, and everything that only looks at it.

`StepperView` declares what a `flowgen.testing.Stepper` holds (the workflow, its
``workflow_started`` event, the interpreter, the clock, the history, and for a stepper over
a recording that recording and the position in it) and answers every question about it:
status, pending commands, result, history, locals, text and HTML views. It never feeds the
interpreter: the `Stepper` (in ``stepper.py``) does, and it is the only writer of this
state.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any, Generic, TypeVar

from flowgen._core.conditions import describe_condition
from flowgen._core.dsl import workflow_return_type
from flowgen._core.interpreter import Interpreter, RunStatus
from flowgen._runtime.clock import ManualClock
from flowgen._runtime.registry import Registry
from flowgen._runtime.stepper_support import (
    describe_event,
    describe_pending,
    outcome_positions,
    short,
)
from flowgen._stores.codec import CODEC
from flowgen._vocabulary.commands import Command, WaitCondition
from flowgen._vocabulary.errors import ErrorInfo
from flowgen._vocabulary.events import Event, WorkflowStarted
from flowgen._vocabulary.retry import RetryPolicy

__all__ = ["StepperView"]

R = TypeVar("R")

WorkflowFn = Callable[..., Generator[Any, Any, R]]


class StepperView(Generic[R]):
    """The state of a `Stepper` and the read-only questions about it (see the module)."""

    def _setup(
        self, workflow: WorkflowFn[R], started: WorkflowStarted, clock: ManualClock
    ) -> None:
        self._fn = workflow
        self._started = started
        self._clock = clock
        self._interp = Interpreter(workflow, codec=CODEC)
        self._history: list[Event] = []
        self._signals = 0
        self._recorded: list[Event] | None = None
        self._position = 0
        self._registry = Registry()
        self._retry = RetryPolicy()  # the engine's default

    # -- looking ------------------------------------------------------------------------------

    @property
    def workflow(self) -> WorkflowFn[R]:
        """The workflow function being stepped."""
        return self._fn

    @property
    def workflow_id(self) -> str:
        """The run's workflow id (``"stepper-<name>"`` unless given to `create`)."""
        return self._started.workflow_id

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._started.run_id

    @property
    def status(self) -> RunStatus:
        """Where the run is: ``NEW`` before the first step, ``WAITING`` at a ``yield``, ..."""
        return self._interp.status

    @property
    def pending(self) -> dict[int, Command]:
        """Every command awaited right now, by seq (several under ``gather``/``race``)."""
        return self._interp.pending

    @property
    def command(self) -> Command | None:
        """The pending command with the lowest seq, or ``None`` (not started, or ended)."""
        pending = self._interp.pending
        return pending[min(pending)] if pending else None

    @property
    def waiting_on(self) -> list[WaitCondition]:
        """The conditions the run waits on (``fg.wait_condition``), oldest first.

        Nothing of a condition is pending but the timer of its timeout: with none, a run
        waiting on a condition has no `command` and waits for an `update`.
        """
        return self._interp.conditions

    @property
    def seq(self) -> int | None:
        """The seq of `command`, or ``None``."""
        pending = self._interp.pending
        return min(pending) if pending else None

    @property
    def result(self) -> R | None:
        """The workflow's result, decoded to its return type, once it completed."""
        if self._interp.status is not RunStatus.COMPLETED:
            return None
        value: Any = CODEC.decode(self._interp.result, workflow_return_type(self._fn))
        return value  # type: ignore[no-any-return]  # decoded to R's own annotation

    @property
    def error(self) -> ErrorInfo | None:
        """The failure, if the run failed, was cancelled or terminated."""
        return self._interp.error

    @property
    def history(self) -> list[Event]:
        """A copy of the events so far (up to the position, for `from_history`).

        A plain list, shown as a table in Jupyter.
        """
        from flowgen._render.html import History

        return History(self._history)

    @property
    def locals(self) -> dict[str, object]:
        """The workflow function's local variables at the ``yield`` where it waits.

        Also while it waits inside ``yield from`` (a DSL helper, ``saga.compensate()``).
        """
        return self._interp.frame_locals()

    @property
    def yield_site(self) -> str:
        """``file:line`` of the ``yield`` the workflow waits at (``"?"`` if none)."""
        return self._interp.yield_site()

    @property
    def now(self) -> datetime:
        """The stepper's clock: the time the next event will carry."""
        return self._clock.now()

    @property
    def clock(self) -> ManualClock:
        """The stepper's `ManualClock`."""
        return self._clock

    @property
    def interpreter(self) -> Interpreter:
        """The interpreter underneath (for tags, queries and other introspection)."""
        return self._interp

    @property
    def outcomes(self) -> int:
        """How many outcomes the history holds (all of the recording, for `from_history`)."""
        source = self._recorded if self._recorded is not None else self._history
        return len(outcome_positions(source))

    @property
    def position(self) -> int:
        """How many outcomes have been fed so far."""
        if self._recorded is not None:
            return self._position
        return len(outcome_positions(self._history))

    @property
    def recorded(self) -> list[Event] | None:
        """The whole recorded history of a `from_history` stepper (else ``None``)."""
        return None if self._recorded is None else list(self._recorded)

    @property
    def next_outcome(self) -> Event | None:
        """The recorded outcome `forward` will feed next (`from_history` only)."""
        if self._recorded is None:
            return None
        positions = outcome_positions(self._recorded)
        if self._position >= len(positions):
            return None
        return self._recorded[positions[self._position]]

    def query(self, name: str, *args: object) -> object:
        """Answer a query with the handler the workflow registered with `on_query`."""
        return self._interp.query(name, *args)

    # -- showing ------------------------------------------------------------------------------

    def _describe_pending(self) -> str:
        return describe_pending(self._interp.pending)

    def _repr_html_(self) -> str:
        from flowgen._render.stepper_html import stepper_html

        position = self.yield_site if self.status is RunStatus.WAITING else ""
        if position and self._interp.conditions:
            waits = "; ".join(map(describe_condition, self._interp.conditions))
            position = f"{position}, waiting on {waits}"
        if self._recorded is not None:
            position = (
                f"{position} (outcome {self._position} of {self.outcomes})".strip()
            )
        return stepper_html(
            workflow=self._started.name,
            status=self.status.value,
            pending=self.pending,
            variables=self.locals,
            history=self._history,
            result=self.result,
            error=self.error,
            position=position,
        )

    def __repr__(self) -> str:
        name = self._started.name
        args = ", ".join(
            [repr(a) for a in self._started.args]
            + [f"{k}={v!r}" for k, v in self._started.kwargs.items()]
        )
        status = self.status
        if len(args) > 80:
            args = args[:77] + "..."
        lines = [f"<Stepper {name}({args}) {status.value}"]
        if self._recorded is not None:
            upcoming = self.next_outcome
            lines[0] += f", position {self._position}/{self.outcomes}"
            if upcoming is not None:
                lines.append(
                    f"  next recorded: {describe_event(upcoming, self._started.at)}"
                )
        if status is RunStatus.NEW:
            lines.append("  not started: call .next()")
        elif status is RunStatus.WAITING:
            lines[0] += f" at {self.yield_site}"
            for s, cmd in sorted(self._interp.pending.items()):
                lines.append(f"  pending seq {s}: {cmd!r}")
            lines.extend(
                f"  waiting on: {describe_condition(condition)}"
                for condition in self._interp.conditions
            )
        elif status is RunStatus.COMPLETED:
            lines.append(f"  result: {short(self.result, 100)}")
        elif self.error is not None:
            lines.append(f"  error: {short(str(self.error), 100)}")
        shown = self._history[-5:]
        if shown:
            lines.append(
                f"  history: {len(self._history)} events"
                + (", the last 5:" if len(self._history) > 5 else ":")
            )
            first = len(self._history) - len(shown)
            lines.extend(
                f"    {first + i:>3} {describe_event(e, self._started.at)}"
                for i, e in enumerate(shown)
            )
        return "\n".join(lines) + ">"
