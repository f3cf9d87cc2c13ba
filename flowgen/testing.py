"""Tools for testing workflows without an engine (public, like ``trio.testing``).

* `Stepper`: run a workflow by hand, one command at a time (``send``, ``throw``, ``run``,
  ``fork``, ``locals``), and step through recorded histories (`Stepper.from_history`).
* `run_script`: run a workflow against a script of expected commands and their outcomes,
  in the style of python-effect's ``perform_sequence``; a mismatch fails with a transcript.
* `check_replay`: replay a stored history against today's code; `assert_replays` does it
  as a test assertion, from a golden file or a list of events.
* `save_history` / `load_history`: golden files, one event per line with sorted keys.
* `ManualClock`: time that moves only when told (for ``fg.Engine(clock=...)``).

Installing flowgen also registers a pytest plugin (`flowgen.pytest_plugin`): the
``flowgen_engine`` and ``flowgen_clock`` fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

from flowgen._core.interpreter import RunStatus
from flowgen._runtime.clock import ManualClock
from flowgen._runtime.stepper import ReplayResult, Stepper, check_replay
from flowgen._stores.codec import history_from_json, history_to_json
from flowgen._vocabulary.commands import Command
from flowgen._vocabulary.errors import (
    HistoryCorruptError,
    NonDeterminismError,
    WorkflowFailed,
)
from flowgen._vocabulary.events import EVENT_TAGS, Event

__all__ = [
    "ManualClock",
    "ReplayResult",
    "Stepper",
    "assert_replays",
    "check_replay",
    "load_history",
    "run_script",
    "save_history",
]

R = TypeVar("R")

_END_OF_SCRIPT = "*** END OF SCRIPT ***"


def _describe_outcome(outcome: object) -> str:
    if isinstance(outcome, BaseException):
        return f"raise {outcome!r}"
    return repr(outcome)


def _describe_end(stepper: Stepper[Any]) -> str:
    if stepper.status is RunStatus.COMPLETED:
        return f"(the run completed with result {stepper.result!r})"
    return f"(the run ended {stepper.status.value}: {stepper.error})"


def run_script(
    workflow: Callable[..., Generator[Any, Any, R]],
    /,
    *args: object,
    script: Sequence[tuple[Command, object]],
    **kwargs: object,
) -> R:
    """Run *workflow* against a script of ``(expected_command, outcome)`` pairs.

    Each step, the next pair's command must be pending (equal, as commands compare: by
    name and arguments, not by function object); the outcome is sent in, or thrown if it is
    an exception instance (see `Stepper.send` and `Stepper.throw`). Under ``gather`` or
    ``race`` several commands are pending, and the script may resolve them in any order.

    ::

        assert run_script(order, "o-1", script=[
            (fg.call(fetch_price, "o-1"), 150),
            (fg.sleep(60), None),
            (fg.call(charge, "o-1", 150), "r-1"),
        ]) == "r-1"

    Args:
        workflow: The workflow's generator function.
        *args: Its positional arguments.
        script: The expected commands, in order, each with its outcome.
        **kwargs: Its keyword arguments.

    Returns:
        The workflow's result, once the script is used up and the run has completed.

    Raises:
        AssertionError: The workflow yielded a command the script did not expect, ended
            before the script did, or still waits when the script is used up. The message
            is a transcript: one ``script:`` line per step taken, then ``NOT FOUND:`` (what
            the workflow did instead) and ``NEXT EXPECTED:`` (the script's next step).
        WorkflowFailed: The run failed or was cancelled, as ``handle.result()`` raises it.
    """
    stepper = Stepper(workflow, *args, **kwargs)
    stepper.next()
    transcript: list[str] = []

    def mismatch(not_found: list[str], expected: str) -> AssertionError:
        lines = [
            *transcript,
            *(f"NOT FOUND: {line}" for line in not_found),
            f"NEXT EXPECTED: {expected}",
        ]
        return AssertionError(
            f"run_script({getattr(workflow, '__qualname__', workflow)}) went off script:\n"
            + "\n".join(lines)
        )

    for expected, outcome in script:
        step_text = f"{expected!r} -> {_describe_outcome(outcome)}"
        pending = stepper.pending
        if not pending:
            raise mismatch([_describe_end(stepper)], step_text)
        seq = next((s for s, c in sorted(pending.items()) if c == expected), None)
        if seq is None:
            raise mismatch(
                [f"{c!r} (seq {s})" for s, c in sorted(pending.items())], step_text
            )
        if isinstance(outcome, BaseException):
            stepper.throw(outcome, seq=seq)
        else:
            stepper.send(outcome, seq=seq)
        transcript.append(f"script: {step_text}")
    pending = stepper.pending
    if pending:
        raise mismatch(
            [f"{c!r} (seq {s})" for s, c in sorted(pending.items())], _END_OF_SCRIPT
        )
    if stepper.status is not RunStatus.COMPLETED:
        assert stepper.error is not None
        raise WorkflowFailed(stepper.workflow_id, stepper.status.value, stepper.error)
    return stepper.result  # type: ignore[return-value]  # completed: the result is R


def save_history(path: str | PathLike[str], events: Iterable[Event]) -> None:
    """Write a history as a golden file: one JSON event per line, keys sorted.

    The parent directory is created if needed. The format is the codec's stable one (event
    kinds by tag, never by class name), so the file stays valid across refactorings.
    """
    events = list(events)
    for index, event in enumerate(events):
        if type(event) not in EVENT_TAGS:  # it raised KeyError: <class 'int'>
            raise TypeError(
                f"save_history() takes flowgen events; item {index} is "
                f"{type(event).__name__}: {event!r:.60}"
            )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(history_to_json(events), encoding="utf-8", newline="\n")


def load_history(path: str | PathLike[str]) -> list[Event]:
    """Read a history written by `save_history`.

    Raises:
        HistoryCorruptError: If a line is not a valid flowgen event.
    """
    events: list[Event] = []
    for number, line in enumerate(
        Path(path).read_text(encoding="utf-8").splitlines(), 1
    ):
        # One line at a time: text that is no JSON object raised a bare JSONDecodeError
        # or AttributeError, where the codec says HistoryCorruptError of what is no event.
        try:
            item = json.loads(line) if line.strip() else None
        except ValueError as exc:
            raise HistoryCorruptError(
                f"{path}, line {number}: not JSON ({exc})"
            ) from None
        if item is not None and not isinstance(item, dict):
            raise HistoryCorruptError(
                f"{path}, line {number}: an event is a JSON object, got "
                f"{type(item).__name__}"
            )
        events.extend(history_from_json(line) if item is not None else ())
    return events


def assert_replays(
    workflow: Callable[..., Generator[Any, Any, object]],
    history: Iterable[Event] | str | PathLike[str],
) -> ReplayResult:
    """Assert that a stored history replays on today's code (`check_replay` as a test).

    ::

        def test_yesterdays_orders_still_replay():
            assert_replays(order, "tests/golden/order/big_order.json")

    Args:
        workflow: The workflow function as the code stands today.
        history: The recorded events, or the path of a golden file `save_history` wrote.

    Returns:
        Where the replay leaves the run (status, result or error, pending commands), for
        further assertions.

    Raises:
        AssertionError: Today's code does not decide what the history recorded, or the
            history is inconsistent in itself; the message says where and why.
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this one
    if isinstance(history, (str, PathLike)):
        where = f"{history}"
        events = load_history(history)
    else:
        where = "the history"
        events = list(history)
    try:
        return check_replay(workflow, events)
    except (NonDeterminismError, HistoryCorruptError) as exc:
        name = getattr(workflow, "__qualname__", repr(workflow))
        # The message says it all; the interpreter's frames would only bury it.
        raise AssertionError(
            f"{where} does not replay on today's {name}: {exc}"
        ) from None
