"""The sans-IO interpreter: feed events in, get decisions out. The heart of flowgen.

Theory of operation
===================

A workflow is a generator function. The `Interpreter` owns one live generator and drives it:
it sends recorded outcomes in, takes the commands it yields, and reports what it decided as
*decision events* (see ``events.py``). It never performs a command, reads a clock, or does
any IO; the engine (or a `Stepper`, or a test) does that and feeds the facts back in.

Replay is not a mode. `replay` builds a fresh interpreter and feeds it a recorded history
(indexed once into an immutable `flowgen._core.history.RecordedHistory`: what the history
says, which the interpreter consults and never changes);
the engine's fast path keeps the interpreter (and its generator) alive between events and
feeds each new event as it arrives. Both run the same code, so they decide the same things
(a Hypothesis property checks it on every prefix of every sample history).

Sequence numbers
----------------
Every *leaf* command a workflow yields takes the next sequence number (``seq``), starting at
0: `CallActivity`, `StartTimer`, `WaitSignal`, `RecordSideEffect`, `StartChild`,
`SendSignal`. Outcomes are matched to commands by seq; ``gather``/``race`` take no seq
themselves (``_core/tree.py`` numbers their leaves).

* Commands answered from the run's own state take no seq: `current_time`, `info`,
  `get_version` and `patched` (keyed by change id: ``_core/versions.py``), `set_tags`,
  `on_query`, `on_update`, `continue_as_new`. So adding or removing one of them never
  shifts the numbering of an old history. A `wait_condition` takes a seq only for the timer
  of its timeout (``_core/conditions.py``).
* A command whose arguments cannot be serialized gives its seq back: the `TypeError` is
  thrown at its ``yield`` and the next command takes the same number.

Matching
--------
Each leaf seq has exactly one *first* event in a history (``_core/decisions.py`` says which
event, and when a recorded one still matches the command yielded at its seq; if not,
`NonDeterminismError`). Incoming events are fed in history order. An outcome for a seq that
is not awaited (never scheduled, already resolved, cancelled) or of the wrong kind is
`HistoryCorruptError`, and so is a duplicated start, cancel request or terminal event, or a
signal out of order (``_core/signals.py``). When the whole history has been fed, every
recorded decision must have been made again (``_core/divergence.py``).

Decisions already in the history are not emitted again, so a replay of a complete history
decides nothing new. A history cut short (a crash between recording an incoming event and
recording the reaction to it) simply yields the missing decisions: that is recovery.

Time
----
The workflow's clock is the ``at`` of the incoming event being fed: `current_time` returns
it, and a timer's due time is ``at + seconds``. It is recorded, so replay sees the same time.

Failures and cancellation
-------------------------
Failures are recorded as `ErrorInfo`; each time one is fed, a *fresh* exception is built and
thrown at the ``yield`` (`ActivityError`, `ChildWorkflowError`, `SignalTimeout`,
`SignalSendError`). A ``cancel_requested`` event cancels every awaited command and throws
`Cancelled`; the workflow may catch it (to compensate) and go on yielding. An exception that
escapes the generator ends the run: `Cancelled` as ``cancelled``, anything else as
``failed``. `GeneratorExit` and other `BaseException`s are never caught.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Generator, Iterable, Sequence
from datetime import datetime
from types import FrameType
from typing import Any

import attrs

from flowgen._core.awaiting import SEQ_OUTCOMES, Awaiting
from flowgen._core.conditions import (
    ConditionWait,
    check as check_condition,
)
from flowgen._core.decisions import (
    check_encodable,
    decode_arguments,
    encode_continue_arguments,
    first_event,
    matches,
    outcome_text,
    same_end,
)
from flowgen._core.divergence import divergence, ended_early, incomplete, user_frame
from flowgen._core.history import EMPTY, RecordedHistory, event_name
from flowgen._core.lifecycle import (
    PLAIN_VALUES,
    Codec,
    Trigger,
    end_event,
    error_info,
    transition,
)
from flowgen._core.tree import (
    AWAITABLE,
    Group,
    Leaf,
    build,
    is_done_at_once,
)
from flowgen._core.updates import UpdateBranch, UpdateState, end_mismatch
from flowgen._core.versions import VersionBook
from flowgen._core.workflow_code import IN_WORKFLOW_CODE
from flowgen._vocabulary.commands import (
    Command,
    ContinueAsNew,
    CurrentTime,
    GetInfo,
    GetVersion,
    Patched,
    RecordSideEffect,
    RegisterQuery,
    RegisterUpdate,
    SendSignal,
    SetTags,
    StartTimer,
    WaitCondition,
    WaitSignal,
    WorkflowInfo,
    describe_command,
)
from flowgen._vocabulary.errors import (
    Cancelled,
    ErrorInfo,
    HistoryCorruptError,
    NonDeterminismError,
)
from flowgen._vocabulary.events import (
    CancelRequested,
    Event,
    JsonValue,
    SignalReceived,
    UpdateAccepted,
    WorkflowStarted,
    WorkflowTerminated,
)
from flowgen._vocabulary.status import RunStatus

# Everything in __all__ gets re-exported as part of the flowgen public API.
__all__ = ["Codec", "Interpreter", "RunStatus", "Step", "error_info", "replay"]


@attrs.frozen
class Step:
    """What the interpreter decided in reaction to what it was fed.

    Attributes:
        events: New decision events to record, in order (before acting on any of them).
        status: The run's status afterwards.
        perform: Commands to perform on the spot and feed back before recording: side
            effects and signals to send, as ``(seq, command)``.
    """

    events: tuple[Event, ...]
    status: RunStatus
    perform: tuple[tuple[int, RecordSideEffect[Any] | SendSignal], ...] = ()


class Interpreter(Awaiting):
    """Drives one workflow generator through its history. Pure: no clock, no IO.

    Use `replay` on a fresh interpreter to catch up with a recorded history, then `feed`
    each new incoming event as it happens. Both return a `Step`: the decisions to record.

    Args:
        fn: The workflow's generator function.
        codec: Encodes decision payloads and decodes outcomes (plain values by default).
    """

    def __init__(
        self,
        fn: Callable[..., Generator[Any, Any, object]],
        *,
        codec: Codec = PLAIN_VALUES,
    ):
        super().__init__()
        self.fn = fn
        self.codec = codec
        self.status = RunStatus.NEW
        self.info: WorkflowInfo | None = None
        self.now: datetime | None = None
        self.next_seq = 0
        self.tags: dict[str, JsonValue] = {}
        self.queries: dict[str, Callable[..., object]] = {}
        self.updates = UpdateState()
        # The same objects as `updates.roots` / `updates.woken`, one lookup closer: the
        # hot path looks at them on every step.
        self._update_roots = self.updates.roots
        self._woken = self.updates.woken
        self.result: JsonValue = None
        self.error: ErrorInfo | None = None
        self.continue_args: tuple[list[JsonValue], dict[str, JsonValue]] | None = None
        self.cancel_requested = False
        self.events_fed = 0
        self._gen: Generator[Any, Any, object] | None = None
        # The workflow function's own frame while it runs, then where it ended ("file:line").
        self._frame: FrameType | None = None
        self._end_site = ""
        self._ready: tuple[bool, object] | None = None  # what to send the code next
        self._emitted: list[Event] = []
        self._perform: list[tuple[int, RecordSideEffect[Any] | SendSignal]] = []
        # What the history says (fixed by `replay`), apart from what the code decides here.
        self._recorded: RecordedHistory = EMPTY
        self._decided: dict[int, Event] = {}  # the first events decided here, by seq
        self._book = VersionBook(EMPTY, self.tags)  # versions and tags (versions.py)
        self._replaying = False
        self._new_in_replay: set[int] = set()

    # -- public API -----------------------------------------------------------------------

    def scheduled_event(self, seq: int) -> Event | None:
        """The recorded (or just decided) first event of *seq*, e.g. its ``timer_started``."""
        found = self._decided.get(seq)
        return found if found is not None else self._recorded.first_events.get(seq)

    def replay(self, history: Sequence[Event], *, outcomes: int | None = None) -> Step:
        """Catch up with a recorded *history* (on a fresh interpreter).

        Args:
            history: The recorded events, ``workflow_started`` first.
            outcomes: Feed only the first *outcomes* incoming events after
                ``workflow_started`` (time travel, `Stepper.from_history`). The whole history
                is still indexed, so `get_version` and the matching by seq decide what the
                recorded run decided at that point; the check that every recorded decision
                was made again is skipped until the end is reached. ``None`` feeds them all.

        Returns:
            The decisions the history lacks (none for a complete history) and anything to
            perform on the spot.

        Raises:
            NonDeterminismError: The code no longer decides what the history recorded.
            HistoryCorruptError: The history is inconsistent in itself.
        """
        if self.status is not RunStatus.NEW:
            raise RuntimeError("replay() needs a fresh Interpreter")
        recorded = self._recorded = RecordedHistory.of(history)
        self._book = VersionBook(recorded, self.tags)
        self._replaying = True
        fed, stopped = -1, False  # workflow_started is not an outcome
        try:
            for event in recorded.incoming:
                if outcomes is not None and fed >= outcomes:
                    stopped = True
                    break
                if self.status.is_closed:  # the history goes on: the code ends early
                    raise self._ended_early(event)
                fed += 1
                self._feed_one(event)
        finally:
            self._replaying = False
        if not stopped:
            self._check_complete()
        return self._step()

    def feed(self, event: Event) -> Step:
        """Feed one new incoming event (an outcome, a signal, a cancel request, ...).

        Returns:
            The decisions to record before acting on any of them.
        """
        self._feed_one(event)
        return self._step()

    def feed_many(self, events: Iterable[Event]) -> Step:
        """Feed several new incoming events; their decisions come back as one step."""
        for event in events:
            self._feed_one(event)
        return self._step()

    def query(self, name: str, *args: object) -> object:
        """Answer a query with the handler the workflow registered with `on_query`.

        Raises:
            LookupError: If the workflow registered no handler of that name.
        """
        handler = self.queries.get(name)
        if handler is None:
            known = ", ".join(sorted(self.queries)) or "none"
            raise LookupError(
                f"workflow has no query handler {name!r} (registered: {known})"
            )
        return handler(*args)

    def validate_update(self, name: str, args: Sequence[JsonValue]) -> None:
        """Run the validator of update *name* on the current state; record nothing.

        Raises:
            UpdateRejected: No handler of that name, arguments that do not fit it, or its
                validator raised (see ``_core/updates.py``).
        """
        workflow_id = self.info.workflow_id if self.info is not None else ""
        self.updates.validate(self.codec, workflow_id, name, args)

    def update_outcome(self, update_id: str) -> Event | str | None:
        """The end event of update *update_id*, ``"running"``, or ``None`` if never accepted."""
        return self.updates.outcome(update_id)

    def yield_site(self) -> str:
        """``file:line`` of the ``yield`` the workflow is suspended at (or ``"?"``)."""
        frame = self._user_frame()
        if frame is None:
            return "?"
        return f"{frame.f_code.co_filename}:{frame.f_lineno}"

    def frame_locals(self) -> dict[str, object]:
        """The workflow function's local variables where it is suspended now."""
        gen = self._gen
        frame: FrameType | None = getattr(gen, "gi_frame", None)
        if frame is None:
            return {}
        return dict(frame.f_locals)

    # -- the end of a replay ------------------------------------------------------------------

    def _check_complete(self) -> None:
        found = incomplete(
            self._recorded,
            self.next_seq,
            self._cancelled,
            self.updates.ends,
            self.status.is_closed,
            self._describe_pending,
        )
        if found is not None:
            raise self._divergence(*found)

    def _ended_early(self, event: Event) -> NonDeterminismError:
        """The code ended (as recorded, or the end would differ) before *event* came."""
        return self._divergence(*ended_early(self._recorded, self.next_seq, event))

    # -- feeding ------------------------------------------------------------------------------

    def _step(self) -> Step:
        step = Step(tuple(self._emitted), self.status, tuple(self._perform))
        self._emitted.clear()
        self._perform.clear()
        return step

    def _feed_one(self, event: Event) -> None:
        self.events_fed += 1
        if self.status is RunStatus.NEW:
            if not isinstance(event, WorkflowStarted):
                raise HistoryCorruptError(
                    f"the first event must be workflow_started, got {event_name(event)}"
                )
            self._start(event)
            return
        if self.status.is_closed:
            raise HistoryCorruptError(
                f"{event_name(event)} arrived after the run ended ({self.status.value})"
            )
        self.now = event.at
        if type(event) in SEQ_OUTCOMES:  # the common case first: one set lookup
            self._resolve_outcome(event)
        else:
            match event:
                case SignalReceived():
                    self._receive_signal(event)
                case CancelRequested(reason=reason):
                    if self.cancel_requested:
                        raise HistoryCorruptError("cancel_requested is recorded twice")
                    self.cancel_requested = True
                    self._cancel_all("cancel")
                    self._ready = (False, Cancelled(reason))
                    if self.updates.running:
                        # Handlers hear of the cancel before the main code (updates.py).
                        for branch in self.updates.running.values():
                            branch.ready = (False, Cancelled(reason))
                            self._woken.append(branch)
                        self._drive_handlers()
                case UpdateAccepted():
                    self._accept_update(event)
                case WorkflowTerminated():
                    self.status = transition(self.status, Trigger.TERMINATE)
                    self.error = ErrorInfo("Terminated", event.reason)
                    self._cancel_all("terminate", emit=False)
                    self._close_generator()
                    return
                case WorkflowStarted():
                    raise HistoryCorruptError("workflow_started is recorded twice")
                case _:  # a subclass of an outcome, or a decision
                    self._resolve_outcome(event)
        self._drive()

    def _start(self, event: WorkflowStarted) -> None:
        self.status = transition(self.status, Trigger.START)
        self.now = event.at
        self.info = WorkflowInfo(
            workflow_id=event.workflow_id,
            run_id=event.run_id,
            name=event.name,
            started_at=event.at,
            parent_id=event.parent_id,
        )
        args, kwargs = decode_arguments(self.codec, self.fn, event)
        try:
            gen = self.fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  # a bad call signature fails the run
            self._finish(Trigger.RAISE, exc)
            return
        if not inspect.isgenerator(gen):  # never kept: closing it would fail
            self._finish(
                Trigger.RAISE,
                TypeError(
                    f"workflow {event.name!r} must be a generator function (use yield)"
                ),
            )
            return
        self._gen = gen
        self._frame = gen.gi_frame
        self._ready = (True, None)
        self._drive()

    # -- resolving what the workflow awaits ------------------------------------------------

    # -- running the generator ----------------------------------------------------------------

    def _drive(self) -> None:
        while True:
            while self._ready is not None:
                ok, value = self._ready
                self._ready = None
                self._root = None
                if self.status is RunStatus.WAITING:
                    self.status = transition(self.status, Trigger.WAKE)
                self._run(ok, value)
            if self._woken:  # the main code has run: the handlers go now
                self._drive_handlers()
            # Then the first condition met, if any, wakes its code (conditions.py).
            if not self._conditions.waiting or not self._wake_condition():
                return

    def _wait_condition(
        self, command: WaitCondition, branch: UpdateBranch | None
    ) -> tuple[object, BaseException | None] | None:
        """What to send back at once (met, or the predicate raised), or ``None``: it waits."""
        ok, met = check_condition(command.predicate)
        if not ok:
            assert isinstance(met, Exception)
            return None, met
        if met:
            return True, None
        timer: Leaf | None = None
        if command.timeout is not None:
            self._await(StartTimer(command.timeout))  # checked by WaitCondition
            assert isinstance(self._root, Leaf)
            timer = self._root
            if branch is not None:
                self._update_roots[timer] = branch
        self._conditions.add(ConditionWait(command, branch, timer))
        if branch is None:
            self.status = transition(self.status, Trigger.BLOCK)
        return None

    def _drive_handlers(self) -> None:
        """Run the woken update handlers, in the order they were woken (see updates.py)."""
        # `_ready` is the slot a command answered at once lands in: keep the main code's
        # (a cancel wakes it with the handlers, which go first) while the handlers use it.
        main, self._ready = self._ready, None
        woken = self._woken
        while woken and not self.status.is_closed:
            branch = woken.pop(0)
            ready, branch.ready = branch.ready, None
            assert ready is not None
            self._root = None
            self._run(*ready, branch=branch)
        self._ready = main

    def _run(self, ok: bool, value: object, branch: UpdateBranch | None = None) -> None:
        gen = self._gen if branch is None else branch.gen
        assert gen is not None
        send: object = value if ok else None
        throw: BaseException | None = None if ok else value  # type: ignore[assignment]
        while True:
            mark = IN_WORKFLOW_CODE.set(True)  # not a `with`: this is the hot path
            try:
                try:
                    command = gen.throw(throw) if throw is not None else gen.send(send)
                finally:
                    IN_WORKFLOW_CODE.reset(mark)
            except StopIteration as stop:
                self._ended(branch, Trigger.RETURN, stop.value)
                return
            except Cancelled as exc:
                self._ended(branch, Trigger.CANCEL, exc)
                return
            except Exception as exc:  # noqa: BLE001  # the workflow's own failure ends the run
                self._ended(branch, Trigger.RAISE, exc)
                return
            send, throw = None, None
            if isinstance(command, AWAITABLE):
                try:
                    self._await(command)
                except (TypeError, ValueError) as exc:
                    throw = type(exc)(str(exc))
                    continue
                if self._ready is None:
                    if branch is None:
                        self.status = transition(self.status, Trigger.BLOCK)
                    else:
                        self._update_roots[self._root] = branch
                    return
                ok, result = self._ready
                self._ready = None
                self._root = None
                if ok:
                    send = result
                else:
                    throw = result  # type: ignore[assignment]
            elif isinstance(command, WaitCondition):
                answer = self._wait_condition(command, branch)
                if answer is None:
                    return
                send, throw = answer
            elif isinstance(command, ContinueAsNew):
                if branch is not None:
                    throw = TypeError(
                        "continue_as_new() cannot be yielded in an update handler"
                    )
                    continue
                throw = self._continue_as_new(command)
                if throw is None:
                    return
            else:
                send, throw = self._answer(command)

    def _answer(self, command: object) -> tuple[object, BaseException | None]:
        """What to send (or throw) back for a command answered from the run's own state."""
        match command:
            case CurrentTime():
                return self._now(), None
            case GetInfo():
                return self.info, None
            case GetVersion():
                return self._version(command), None
            case Patched(change_id=change_id):
                patched, marked = self._book.patched(
                    change_id, self._past_this_point(), self._now()
                )
                if marked is not None:
                    self._emit(marked)
                return patched, None
            case SetTags(tags=tags):
                try:
                    encoded = {
                        k: self.codec.encode(v, f"tag {k!r}") for k, v in tags.items()
                    }
                except TypeError as exc:
                    return None, TypeError(str(exc))
                event = self._book.set_tags(
                    encoded, self._past_this_point(), self._now()
                )
                if event is not None:
                    self._emit(event)
                return None, None
            case RegisterQuery(name=name, handler=handler):
                self.queries[name] = handler
                return None, None
            case RegisterUpdate(name=name):
                self.updates.handlers[name] = command
                return None, None
        return None, self._not_a_command(command)

    def _ended(
        self, branch: UpdateBranch | None, trigger: Trigger, value: object
    ) -> None:
        """A generator ended: the main one ends the run, a handler ends its update."""
        if branch is None:
            self._finish(trigger, value)
        else:
            ok = trigger is Trigger.RETURN
            self._end_update(branch.update_id, branch.name, ok, value)

    # -- updates (the rules are in updates.py) ------------------------------------------------

    def _accept_update(self, event: UpdateAccepted) -> None:
        if event.name not in self.updates.handlers:
            raise self._divergence(
                None,
                f"the history accepted update {event.name!r}, but the code has "
                f"registered no handler of that name at this point",
            )
        ended = self.updates.accept(self.codec, event)
        if ended is not None:  # a plain function: it answered at once
            self._end_update(event.update_id, event.name, *ended)

    def _end_update(self, update_id: str, name: str, ok: bool, value: object) -> None:
        event = self.updates.end(
            self.codec, self._now(), update_id, name, (ok, value), error_info
        )
        recorded = self._recorded.update_ends.get(update_id)
        if recorded is None:
            self._emit(event)
        elif (why := end_mismatch(recorded, event)) is not None:
            raise self._divergence(None, why)

    def _continue_as_new(self, command: ContinueAsNew) -> TypeError | None:
        """End the run as continued-as-new, or the `TypeError` an argument raises."""
        try:
            self.continue_args = encode_continue_arguments(self.codec, self.fn, command)
        except TypeError as exc:
            return TypeError(str(exc))
        self._finish(Trigger.CONTINUE, None)
        return None

    def _not_a_command(self, value: object) -> TypeError:
        hint = (
            " (a generator: use `yield from` to call a helper generator)"
            if inspect.isgenerator(value)
            else ""
        )
        return TypeError(
            f"workflow yielded {describe_command(value)}{hint}; yield fg.call(...), "
            f"fg.sleep(...) and the other flowgen commands"
        )

    def _finish(self, trigger: Trigger, value: object) -> None:
        now = self._now()
        if trigger is Trigger.RETURN:
            try:
                self.result = self.codec.encode(value, "the workflow's result")
            except TypeError as exc:
                trigger, value = Trigger.RAISE, exc
        if trigger is Trigger.RAISE or trigger is Trigger.CANCEL:
            assert isinstance(value, BaseException)
            self.error = error_info(value)
        event = end_event(trigger, now, self.result, self.continue_args, self.error)
        self.status = transition(self.status, trigger)
        frame, self._frame = self._frame, None
        if frame is not None:  # its last line: the return, the raise, continue_as_new
            self._end_site = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        self._cancel_all("workflow ended")
        self._close_generator()
        recorded = self._recorded.end
        if recorded is None:
            self._emit(event)
            return
        if not same_end(recorded, event):
            raise self._divergence(
                None,
                f"the history records {event_name(recorded)} ({outcome_text(recorded)}), "
                f"but the code now ends with {event_name(event)} ({outcome_text(event)})",
            )

    def _close_generator(self) -> None:
        self.updates.close()
        if self._gen is not None:
            try:
                self._gen.close()
            except (
                RuntimeError
            ):  # a `yield` inside `finally:`; documented as unsupported
                pass

    # -- commands ---------------------------------------------------------------------------

    def _await(self, command: Command) -> None:
        """Number the leaves of *command*, match or decide them, and wait for them."""
        first_seq = self.next_seq
        planned: list[tuple[Leaf, Event | None]] = []
        try:
            root = build(command, None, 0, functools.partial(self._plan, planned))
        except (TypeError, ValueError):
            # A command refused as it is decided (an argument that cannot be serialized,
            # a hand-built timer too long for any clock) gives its seqs back.
            self.next_seq = first_seq
            raise
        if is_done_at_once(root):
            self._ready = (True, ())
        self._root = root
        for leaf, event in planned:
            self._leaves[leaf.seq] = leaf
            leaf_command = leaf.command
            if isinstance(leaf_command, WaitSignal):
                self._signals.wait(leaf_command.name, leaf.seq)
            if event is not None:
                self._emit(event)
                self._decided[leaf.seq] = event
                if self._replaying:
                    self._new_in_replay.add(leaf.seq)
            elif (
                isinstance(leaf_command, (RecordSideEffect, SendSignal))
                and leaf.seq not in self._recorded.first_events
            ):
                self._perform.append((leaf.seq, leaf_command))
                if self._replaying:
                    self._new_in_replay.add(leaf.seq)
        # Signals that arrived before the wait are delivered now, oldest first.
        for leaf, _ in planned:
            leaf_command = leaf.command
            if isinstance(leaf_command, WaitSignal) and leaf.seq in self._leaves:
                buffered = self._signals.take(leaf_command.name)
                if buffered is not None:
                    self._deliver_signal(leaf.seq, buffered)

    def _plan(
        self,
        planned: list[tuple[Leaf, Event | None]],
        parent: Group | None,
        index: int,
        command: Command,
    ) -> Leaf:
        """Number one leaf; match it with the history or decide its first event."""
        seq = self.next_seq
        self.next_seq += 1
        leaf = Leaf(parent, index, seq, command)
        # Only the history can hold this seq: what the code decided is below next_seq.
        recorded = self._recorded.first_events.get(seq)
        if recorded is not None:
            # Encoded all the same (and thrown away): an argument that cannot be serialized
            # must give its seq back here as on the first run, not match what came after it.
            check_encodable(self.codec, command)
            self._match(seq, command, recorded)
            planned.append((leaf, None))
        else:
            planned.append(
                (leaf, first_event(self.codec, seq, command, self._now(), self.info))
            )
        return leaf

    def _match(self, seq: int, command: Command, recorded: Event) -> None:
        if not matches(command, recorded):
            raise self._divergence(
                seq,
                f"the history has {event_name(recorded)} at seq {seq}, "
                f"but the code now yields {describe_command(command)}",
            )

    def _version(self, command: GetVersion) -> int:
        version, marked = self._book.version(
            command.change_id,
            command.max_supported,
            self._past_this_point(),
            self._now(),
        )
        if marked is not None:
            self._emit(marked)
        if not command.min_supported <= version <= command.max_supported:
            raise self._divergence(
                self.next_seq,
                f"get_version({command.change_id!r}) is {version} in this run's history, "
                f"outside the supported range {command.min_supported}..{command.max_supported}",
            )
        return version

    def _past_this_point(self) -> bool:
        return self._recorded.past(self.next_seq)

    # -- helpers ----------------------------------------------------------------------------

    def _user_frame(self) -> FrameType | None:
        return user_frame(self._gen)

    def _divergence(self, seq: int | None, what: str) -> NonDeterminismError:
        return divergence(self.info, self._user_frame(), self._end_site, seq, what)


def replay(
    fn: Callable[..., Generator[Any, Any, object]],
    history: Sequence[Event],
    *,
    codec: Codec = PLAIN_VALUES,
) -> Interpreter:
    """Replay *history* from scratch against *fn*: the reference the engine's cache must match.

    Args:
        fn: The workflow's generator function (today's code).
        history: The recorded events, ``workflow_started`` first.
        codec: How payloads are decoded (plain values by default).

    Returns:
        The interpreter, caught up: its ``status``, ``result``, ``error`` and ``pending``
        describe where the run stands.

    Raises:
        NonDeterminismError: Today's code does not decide what the history recorded.
        HistoryCorruptError: The history is inconsistent in itself.
    """
    interpreter = Interpreter(fn, codec=codec)
    interpreter.replay(history)
    return interpreter
