"""When today's code no longer decides what a history recorded: finding it, and saying so.

The interpreter matches each command as it is yielded (`flowgen._core.decisions`); this
module owns the checks made once the whole history has been fed, and the wording of every
`NonDeterminismError` the interpreter raises.

Rules
=====

* **Every recorded decision must be made again** by the end of a replay: a recorded command
  at a seq the code never reached, a recorded cancellation it did not make, a recorded
  update end it never reached, or a recorded end of the run while the code still waits, is
  a divergence (`incomplete`, checked in that order).
* **The code may not end early**: an incoming event recorded after the point where the code
  now ends is a divergence (`ended_early`).
* **An error names the place**: the workflow, the seq when there is one, and the
  ``file:line`` of the user's ``yield`` (flowgen's own frames skipped, `user_frame`), or,
  once the code ended, the line where it ended; and it says how to change code on purpose
  (`fg.get_version`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Set as AbstractSet
from types import FrameType
from typing import Final

from flowgen._core.dsl import parameter_types
from flowgen._core.history import RecordedHistory, event_name
from flowgen._vocabulary.commands import CallActivity, WorkflowInfo
from flowgen._vocabulary.errors import NonDeterminismError
from flowgen._vocabulary.events import Event

__all__ = ["divergence", "ended_early", "incomplete", "user_frame"]

_FLOWGEN_FILES: Final = frozenset(
    {inspect.getfile(CallActivity), inspect.getfile(parameter_types)}
)
Finding = tuple[int | None, str]
"""A divergence found: the seq it is at (if any) and what differs."""


def _unreached(recorded: RecordedHistory, next_seq: int) -> Finding:
    event = recorded.first_events[next_seq]
    return (
        next_seq,
        (
            f"the history has {event_name(event)} at seq {next_seq}, "
            f"but the code never reaches it"
        ),
    )


def incomplete(
    recorded: RecordedHistory,
    next_seq: int,
    cancelled: AbstractSet[int],
    ended_updates: Mapping[str, object],
    closed: bool,
    describe_pending: Callable[[], str],
) -> Finding | None:
    """The first recorded decision the code did not make again, once all is fed."""
    if recorded.last_seq >= next_seq:
        return _unreached(recorded, next_seq)
    stray = recorded.cancelled - cancelled
    if stray:
        seq = min(stray)
        return seq, f"the history cancelled seq {seq}, but the code did not"
    unended = [
        event
        for update_id, event in recorded.update_ends.items()
        if update_id not in ended_updates
    ]
    if unended:
        return (
            None,
            (
                f"the history records {event_name(unended[0])} (update id "
                f"{getattr(unended[0], 'update_id', '?')!r}), but the code never ends "
                f"that update's handler that way"
            ),
        )
    if recorded.end is not None and not closed:
        return (
            None,
            (
                f"the history records {event_name(recorded.end)}, but the code "
                f"is still waiting for {describe_pending()}"
            ),
        )
    return None


def ended_early(recorded: RecordedHistory, next_seq: int, event: Event) -> Finding:
    """The code ended (as recorded, or the end would differ) before *event* came."""
    if recorded.last_seq >= next_seq:
        return _unreached(recorded, next_seq)
    return (
        None,
        (
            f"the history records {event_name(event)} after the point where the code "
            f"now ends"
        ),
    )


def user_frame(gen: object) -> FrameType | None:
    """The innermost frame of the user's code in generator *gen* (``yield from`` followed)."""
    frame: FrameType | None = None
    while inspect.isgenerator(gen) and gen.gi_frame is not None:
        if gen.gi_frame.f_code.co_filename not in _FLOWGEN_FILES:
            frame = gen.gi_frame
        gen = gen.gi_yieldfrom
    return frame


def divergence(
    info: WorkflowInfo | None,
    frame: FrameType | None,
    end_site: str,
    seq: int | None,
    what: str,
) -> NonDeterminismError:
    """The error for a divergence *what*, at *frame* (or *end_site*, where the code ended)."""
    workflow = f"workflow {info.workflow_id!r} ({info.name})" if info else "workflow"
    if frame is not None:
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}"
    elif end_site:
        where = f" at {end_site} (where the code now ends)"
    else:
        where = ""
    return NonDeterminismError(
        f"{workflow} diverged from its history: {what}{where}. If the code changed on "
        f"purpose, branch on fg.get_version() so recorded runs keep the old path.",
        workflow_id=info.workflow_id if info else "",
        seq=seq,
    )
