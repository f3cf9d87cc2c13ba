"""What a run awaits, and how each outcome resolves it: the interpreter's waiting half.

`Awaiting` is the base of `flowgen._core.interpreter.Interpreter`: it owns the leaves the
run awaits (by seq, in their `flowgen._core.tree` trees), the signals it holds
(`flowgen._core.signals`), the attempts counted per activity and the seqs cancelled; the
interpreter owns the generators, the history and the decisions. Pure: no clock, no IO.

Rules
=====

* **An outcome resolves exactly one awaited leaf**, found by its seq. One for a seq that
  is not awaited (never scheduled, already resolved, cancelled), of the wrong kind, or (in
  a replay) for a command the history never recorded is `HistoryCorruptError`.
* **Attempts are counted**: each activity outcome carries its attempt number, which must
  be the next one; ``activity_attempt_failed`` keeps the leaf awaited until its retry.
* **Failures are thrown fresh**: each time one is fed, a new `ActivityError`,
  `ChildWorkflowError`, `SignalTimeout` or `SignalSendError` is built from the recorded
  `ErrorInfo` and thrown at the ``yield``. A payload that does not decode into the type
  the command asked for is thrown in the same way.
* **Containers are copied**: a decoded outcome goes through the codec even when untyped, so
  workflow code that mutates what it received cannot change the recorded event.
* **A resolved root wakes its owner**: the main code, or the update handler that awaits
  that tree (``_core/updates.py``).
* **Conditions** (``fg.wait_condition``, rules in ``_core/conditions.py``) are awaited here
  too: `_wake_condition` wakes the code of the first one met; a condition's timeout is an
  ordinary timer leaf, whose firing answers ``False``.
* **A cancelled leaf is recorded once**: ``command_cancelled`` is decided unless the
  history already holds it, and a side effect or signal not yet performed is dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import attrs

from flowgen._core.conditions import (
    CONDITION_MET,
    ConditionWaits,
    describe_condition,
)
from flowgen._core.history import RecordedHistory, event_name
from flowgen._core.lifecycle import Codec
from flowgen._core.signals import SignalMailbox
from flowgen._core.tree import Group, Leaf, Node, climb, leaves_under
from flowgen._core.updates import UpdateBranch
from flowgen._vocabulary.commands import (
    CallActivity,
    Command,
    RecordSideEffect,
    SendSignal,
    StartChild,
    StartTimer,
    WaitCondition,
    WaitSignal,
    describe_command,
)
from flowgen._vocabulary.errors import (
    ActivityError,
    ChildWorkflowError,
    HistoryCorruptError,
    SignalSendError,
    SignalTimeout,
)
from flowgen._vocabulary.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ChildCompleted,
    ChildFailed,
    CommandCancelled,
    Event,
    JsonValue,
    SideEffectRecorded,
    SignalReceived,
    SignalSendFailed,
    SignalSent,
    SignalTimedOut,
    TimerFired,
)

__all__ = ["SEQ_OUTCOMES", "Awaiting"]

# The outcomes that resolve one awaited command, found by their seq (exact types: the hot
# path tests membership; subclasses take the slower match).
SEQ_OUTCOMES: Final = frozenset(
    (
        ActivityCompleted,
        ActivityAttemptFailed,
        ActivityFailed,
        TimerFired,
        SignalTimedOut,
        SideEffectRecorded,
        SignalSent,
        SignalSendFailed,
        ChildCompleted,
        ChildFailed,
    )
)


class Awaiting:
    """The leaves a run awaits and the outcomes that resolve them (see the module rules)."""

    # Owned by the interpreter; read and set here.
    codec: Codec
    now: datetime | None
    _ready: tuple[bool, object] | None
    _update_roots: dict[object, UpdateBranch]
    _woken: list[UpdateBranch]
    _emitted: list[Event]
    _perform: list[tuple[int, RecordSideEffect[Any] | SendSignal]]
    _recorded: RecordedHistory
    _replaying: bool
    _new_in_replay: set[int]

    def __init__(self) -> None:
        self._root: Node | None = None
        self._leaves: dict[int, Leaf] = {}
        self._signals = SignalMailbox()
        self._attempts: dict[int, int] = {}
        self._retry_at: dict[int, datetime] = {}
        self._cancelled: set[int] = set()
        self._conditions = ConditionWaits()

    def _emit(self, event: Event) -> None:
        self._emitted.append(event)

    def _now(self) -> datetime:
        assert self.now is not None
        return self.now

    @property
    def pending(self) -> dict[int, Command]:
        """The leaf commands awaited right now, by seq."""
        return {seq: leaf.command for seq, leaf in self._leaves.items()}

    @property
    def conditions(self) -> list[WaitCondition]:
        """The conditions the run's code waits on (``fg.wait_condition``), oldest first.

        A condition's timeout, if any, is also in `pending`, as the timer it records.
        """
        return [wait.command for wait in self._conditions.waiting]

    def is_pending(self, seq: int) -> bool:
        """True if the command at *seq* still awaits its outcome."""
        return seq in self._leaves

    def attempts(self, seq: int) -> tuple[int, datetime | None]:
        """Failed attempts recorded so far for the activity at *seq*, and when to retry."""
        return self._attempts.get(seq, 0), self._retry_at.get(seq)

    def _resolve_outcome(self, event: Event) -> None:
        """Resolve the awaited command an outcome is for (by its seq)."""
        match event:
            case ActivityCompleted(seq=seq, value=value, attempt=attempt):
                leaf = self._awaited(event, seq, CallActivity)
                self._count_attempt(seq, attempt, event)
                self._resolve_decoded(leaf, value)
            case ActivityAttemptFailed(seq=seq, attempt=attempt, retry_at=retry_at):
                self._awaited(event, seq, CallActivity)
                self._count_attempt(seq, attempt, event)
                self._retry_at[seq] = retry_at
            case ActivityFailed(seq=seq, error=error, attempt=attempt):
                leaf = self._awaited(event, seq, CallActivity)
                self._count_attempt(seq, attempt, event)
                name = leaf.command.name  # type: ignore[union-attr]
                self._resolve(
                    leaf,
                    False,
                    ActivityError(name, attrs.evolve(error, attempts=attempt)),
                )
            case TimerFired(seq=seq):
                self._resolve(self._awaited(event, seq, StartTimer), True, None)
            case SignalTimedOut(seq=seq):
                leaf = self._awaited(event, seq, WaitSignal)
                command = leaf.command
                assert isinstance(command, WaitSignal)
                if command.timeout is None:
                    raise HistoryCorruptError(
                        f"signal_timed_out for seq {seq}, whose wait has no timeout"
                    )
                self._resolve(leaf, False, SignalTimeout(command.name))
            case SideEffectRecorded(seq=seq, value=value):
                self._resolve_decoded(
                    self._awaited(event, seq, RecordSideEffect), value
                )
            case SignalSent(seq=seq):
                self._resolve(self._awaited(event, seq, SendSignal), True, None)
            case SignalSendFailed(seq=seq, error=error):
                leaf = self._awaited(event, seq, SendSignal)
                self._resolve(leaf, False, SignalSendError(error))
            case ChildCompleted(seq=seq, value=value):
                self._resolve_decoded(self._awaited(event, seq, StartChild), value)
            case ChildFailed(seq=seq, child_id=child_id, error=error):
                leaf = self._awaited(event, seq, StartChild)
                self._resolve(leaf, False, ChildWorkflowError(child_id, error))
            case _:
                raise HistoryCorruptError(
                    f"{event_name(event)} is a decision, not an incoming event"
                )

    def _awaited(self, event: Event, seq: int, kind: type) -> Leaf:
        leaf = self._leaves.get(seq)
        if leaf is None:
            why = "was cancelled" if seq in self._cancelled else "is not awaited"
            raise HistoryCorruptError(f"{event_name(event)} for seq {seq}, which {why}")
        if not isinstance(leaf.command, kind):
            raise HistoryCorruptError(
                f"{event_name(event)} for seq {seq}, which is "
                f"{describe_command(leaf.command)}"
            )
        if self._replaying and seq in self._new_in_replay:
            raise HistoryCorruptError(
                f"{event_name(event)} for seq {seq}, whose command the history never recorded"
            )
        return leaf

    def _count_attempt(self, seq: int, attempt: int, event: Event) -> None:
        expected = self._attempts.get(seq, 0) + 1
        if attempt != expected:
            raise HistoryCorruptError(
                f"{event_name(event)} for seq {seq} is attempt {attempt}, expected {expected}"
            )
        self._attempts[seq] = attempt

    def _receive_signal(self, event: SignalReceived) -> None:
        seq = self._signals.receive(event)
        if seq is not None:
            self._deliver_signal(seq, event)

    def _deliver_signal(self, seq: int, event: SignalReceived) -> None:
        leaf = self._leaves[seq]
        self._resolve_decoded(leaf, event.payload)

    def _resolve_decoded(self, leaf: Leaf, payload: JsonValue) -> None:
        hint = getattr(leaf.command, "result_type", object)
        try:
            # Containers go through the codec even undecoded: it copies them, so a workflow
            # that mutates what it received cannot change the recorded event.
            value = (
                payload
                if hint is object and not isinstance(payload, (list, dict))
                else self.codec.decode(payload, hint)
            )
        except Exception as exc:  # noqa: BLE001  # a payload that does not fit is thrown in
            self._resolve(leaf, False, exc)
            return
        self._resolve(leaf, True, value)

    def _forget(self, leaf: Leaf) -> None:
        del self._leaves[leaf.seq]
        command = leaf.command
        if isinstance(command, WaitSignal):
            self._signals.stop_waiting(command.name, leaf.seq)

    def _resolve(self, leaf: Leaf, ok: bool, value: object) -> None:
        self._forget(leaf)
        ended = climb(leaf, ok, value, self._cancel_under)
        if ended is None:  # a gather still waits for others
            return
        root, ok, value = ended
        if self._conditions.waiting and self._conditions.timed_out(root):
            value = False  # a wait_condition's timeout fired first (conditions.py)
        roots = self._update_roots
        branch = roots.pop(root, None) if roots else None
        if branch is None:
            self._ready = (ok, value)
        else:  # what an update handler awaits (updates.py)
            branch.ready = (ok, value)
            self._woken.append(branch)

    def _wake_condition(self) -> bool:
        """Wake the code of the first condition met (conditions.py); False if none is."""
        found = self._conditions.first_met()
        if found is None:
            return False
        wait, ok, value = found
        if wait.timer is not None:
            self._update_roots.pop(wait.timer, None)
            self._cancel_leaf(wait.timer, CONDITION_MET)
        if wait.branch is None:
            self._ready = (ok, value)
        else:
            wait.branch.ready = (ok, value)
            self._woken.append(wait.branch)
        return True

    def _cancel_under(self, group: Group, reason: str) -> None:
        for leaf in leaves_under(group):
            if leaf.seq in self._leaves:
                self._cancel_leaf(leaf, reason)

    def _cancel_all(self, reason: str, *, emit: bool = True) -> None:
        for leaf in sorted(self._leaves.values(), key=lambda leaf: leaf.seq):
            self._cancel_leaf(leaf, reason, emit=emit)
        self._root = None
        self._update_roots.clear()
        self._conditions.clear()

    def _cancel_leaf(self, leaf: Leaf, reason: str, *, emit: bool = True) -> None:
        self._forget(leaf)
        self._perform = [(seq, cmd) for seq, cmd in self._perform if seq != leaf.seq]
        self._cancelled.add(leaf.seq)
        if emit and leaf.seq not in self._recorded.cancelled:
            self._emit(CommandCancelled(at=self._now(), seq=leaf.seq, reason=reason))

    def _describe_pending(self) -> str:
        waits = [
            f"{describe_command(leaf.command)} (seq {seq})"
            for seq, leaf in sorted(self._leaves.items())
        ]
        waits += [describe_condition(wait.command) for wait in self._conditions.waiting]
        return ", ".join(waits) or "an update"  # an open run awaits something
