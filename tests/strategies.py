"""Hypothesis strategies and the drawn-outcome harness for the pure core.

* ``json_values``, ``error_infos``, ``aware_datetimes`` and ``events`` generate the data a
  history holds (every event kind, with encoded payloads).
* `run_with_drawn_outcomes` plays the engine: it drives a workflow live through an
  `Interpreter`, drawing every outcome from Hypothesis (activity values, failed attempts and
  failures, timers, signal arrivals and payloads, side-effect values, child results, signals
  sent or refused, a cancel or a terminate at a random point), and records the history in the
  order the engine would (each incoming event, then the decisions of its step).
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
from hypothesis import settings, strategies as st

import flowgen as fg
from flowgen._core.interpreter import Codec, Interpreter, RunStatus, Step
from flowgen._stores.codec import CODEC, encode
from flowgen._vocabulary.commands import (
    CallActivity,
    Command,
    RecordSideEffect,
    SendSignal,
    StartChild,
    StartTimer,
    WaitSignal,
)
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    INCOMING_EVENTS,
    ChildStarted,
    Event,
    JsonValue,
    SignalWaitStarted,
    TimerStarted,
)
from tests import workflows as w

T0 = datetime(2031, 5, 7, 9, 41, 13, 250_000, tzinfo=UTC)
"""An odd, fixed epoch (style guide R4): nothing may confuse it with the real clock."""

EVENT_CLASSES: tuple[type, ...] = tuple(EVENT_TAGS)


def examples(fraction: float, *, at_least: int = 3) -> settings:
    """Settings running *fraction* of the profile's examples (for expensive properties)."""
    return settings(
        max_examples=max(at_least, int(settings.default.max_examples * fraction))
    )


# ---------------------------------------------------------------------------------------------
# Values.

finite_floats = st.floats(allow_nan=False, allow_infinity=False)

json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text()

json_values: st.SearchStrategy[JsonValue] = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
"""JSON data exactly as ``json.loads`` gives it (no tuples, string keys, finite floats)."""

small_json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=3,
)

timezones = st.just(UTC) | st.builds(
    timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))
)
aware_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 1, 1), timezones=timezones
)
"""Timezone-aware datetimes (the only kind a history holds)."""

error_infos = st.builds(
    fg.ErrorInfo,
    type=st.sampled_from(["ValueError", "CardDeclined", "TimeoutError", "Tampered"]),
    message=st.text(max_size=12),
    non_retryable=st.booleans(),
    attempts=st.integers(0, 5),
    traceback=st.text(max_size=12),
)

_names = st.text(min_size=1, max_size=8)

_FIELD_STRATEGIES: Mapping[str, st.SearchStrategy[Any]] = {
    "at": aware_datetimes,
    "fire_at": aware_datetimes,
    "retry_at": aware_datetimes,
    "started_at": st.none() | aware_datetimes,
    "deadline": st.none() | aware_datetimes,
    "seq": st.integers(0, 10_000),
    "index": st.integers(0, 10_000),
    "attempt": st.integers(1, 50),
    "version": st.integers(-1, 50),
    "name": _names,
    "workflow_id": _names,
    "run_id": _names,
    "child_id": _names,
    "change_id": _names,
    "update_id": _names,
    "reason": st.text(max_size=8),
    "parent_id": st.none() | _names,
    "sender": st.none() | _names,
    "args": st.lists(json_values, max_size=3),
    "kwargs": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    "tags": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    "value": json_values,
    "details": json_values,
    "outcome": st.sampled_from(["activity_completed", "activity_failed"]),
    "payload": json_values,
    "result": json_values,
    "error": error_infos,
    "origin_kind": st.none() | st.sampled_from(["reset", "retry"]),
    "origin_run_id": st.none() | _names,
    "origin_event": st.none() | st.integers(0, 10_000),
    "trace_context": st.none()
    | st.dictionaries(
        st.sampled_from(["traceparent", "tracestate", "parent_span_id"]),
        st.text(max_size=20),
    ),
}


def events_of(cls: type) -> st.SearchStrategy[Event]:
    """Events of the class *cls*, every field drawn (payloads as encoded JSON)."""
    return st.builds(
        cls, **{f.name: _FIELD_STRATEGIES[f.name] for f in attrs.fields(cls)}
    )


events: st.SearchStrategy[Event] = st.sampled_from(EVENT_CLASSES).flatmap(events_of)
"""Events of every kind."""


def values_of(hint: object) -> st.SearchStrategy[Any]:
    """Decoded values of the type *hint* (what an activity of that return type returns)."""
    if hint is object or hint is Any:
        return small_json_values
    if hint is None or hint is type(None):
        return st.none()
    if hint is float:
        return finite_floats
    if hint is str:
        return st.text(max_size=6)
    if hint is int:
        return st.integers(-1000, 1000)
    return st.from_type(hint)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Payload types for codec round trips.


class Suit(enum.Enum):
    HEARTS = "hearts"
    SPADES = "spades"


class Rank(enum.IntEnum):
    ACE = 1
    KING = 13


@attrs.frozen
class Card:
    suit: Suit
    rank: Rank
    dealt_at: datetime


@attrs.frozen
class Hand:
    owner: str
    cards: tuple[Card, ...]
    tags: frozenset[str] = frozenset()
    notes: dict[str, list[int]] = attrs.field(factory=dict)
    backup: Card | None = None


cards = st.builds(Card, st.sampled_from(Suit), st.sampled_from(Rank), aware_datetimes)
hands = st.builds(
    Hand,
    owner=st.text(max_size=5),
    cards=st.lists(cards, max_size=3).map(tuple),
    tags=st.frozensets(st.text(max_size=3), max_size=3),
    notes=st.dictionaries(
        st.text(max_size=3), st.lists(st.integers(), max_size=3), max_size=3
    ),
    backup=st.none() | cards,
)

# ---------------------------------------------------------------------------------------------
# The drawn-outcome harness.


@attrs.frozen
class Snapshot:
    """What a run looks like from outside: the values P1/P2 compare."""

    status: RunStatus
    result: JsonValue
    error: fg.ErrorInfo | None
    pending: tuple[int, ...]
    perform: tuple[int, ...]
    """Seqs of the side effects and signals to send that await performing, in order."""


def snapshot(interpreter: Interpreter, perform: Sequence[int]) -> Snapshot:
    return Snapshot(
        status=interpreter.status,
        result=interpreter.result,
        error=interpreter.error,
        pending=tuple(sorted(interpreter.pending)),
        perform=tuple(perform),
    )


@attrs.frozen
class FedStep:
    """One incoming event fed to the live run: where it sits and what it led to."""

    position: int
    """Index of the incoming event in the history; its decisions follow it."""
    step: Step
    state: Snapshot
    """The live run right after the step."""


@attrs.frozen
class DrawnRun:
    """A run driven live with drawn outcomes."""

    history: list[Event]
    interpreter: Interpreter
    """The live interpreter, left where the run stopped."""
    steps: list[FedStep]

    @property
    def final(self) -> Snapshot:
        return self.steps[-1].state

    def fed_before(self, k: int) -> FedStep:
        """The last incoming event among ``history[:k]`` (``k >= 1``)."""
        return max(
            (fed for fed in self.steps if fed.position < k), key=lambda f: f.position
        )


@attrs.frozen
class Sample:
    """A workflow with arguments, and the payloads of the signals it may receive."""

    fn: Callable[..., Any]
    args: tuple[object, ...] = ()
    kwargs: Mapping[str, object] = attrs.field(factory=dict)
    signals: Mapping[str, st.SearchStrategy[Any]] = attrs.field(factory=dict)
    updates: Mapping[str, st.SearchStrategy[Any]] = attrs.field(factory=dict)
    """Argument strategies by update name: updates of these names may arrive any time."""


def _greet_requests() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries(
        {"name": st.text(max_size=4), "reply_to": st.sampled_from(["ask-1", "ask-2"])}
    )


SAMPLES: tuple[Sample, ...] = (
    Sample(w.process_order, ("o-1",)),
    Sample(w.book_trip, (w.Trip("ada", "Lima", 2),)),
    Sample(w.greeter, (2,), signals={"greet": _greet_requests()}),
    Sample(w.ask_for_greeting, ("greeter-1", "Kyle"), signals={"greeting": st.text()}),
    Sample(
        w.expense, (w.Claim("bob", 12.5),), signals={"decision": st.text(max_size=4)}
    ),
    Sample(w.sync_customers, (None, 0, 2)),
    Sample(w.nightly_etl, (["users", "orders", "items"],)),
    Sample(w.onboarding, ("ada",)),
    Sample(w.everything_once, (3,), signals={"go": small_json_values}),
    Sample(w.nested_combinators, (), signals={"b": small_json_values}),
    Sample(w.side_effect_race),
    Sample(w.saga_of_three, (1,)),
    Sample(w.collect_signals, (2,), signals={"item": st.integers(0, 9)}),
    Sample(w.forever_catching_cancel),
    Sample(w.parent_of_child, (4,)),
    Sample(
        w.signal_juggler,
        (2,),
        signals={"a": st.integers(0, 9), "b": st.integers(0, 9)},
    ),
    Sample(
        w.updatable_cart,
        (3,),
        signals={"extra": st.integers(0, 9), "checkout": st.none()},
        updates={
            name: st.integers(0, 3)
            for name in ("add", "add_checked", "wait_then_add", "drop")
        },
    ),
)
"""Every sample workflow the properties run, with signals it understands."""


def _due(clock: datetime, due: datetime | None) -> datetime:
    return clock if due is None or due <= clock else due


def run_with_drawn_outcomes(
    workflow: Callable[..., Any],
    args: Sequence[object],
    data: st.DataObject,
    *,
    kwargs: Mapping[str, object] | None = None,
    signals: Mapping[str, st.SearchStrategy[Any]] | None = None,
    updates: Mapping[str, st.SearchStrategy[Any]] | None = None,
    max_events: int = 25,
    finish: bool = False,
    codec: Codec = CODEC,
    workflow_id: str = "wf-1",
) -> DrawnRun:
    """Drive *workflow* live, drawing each outcome from *data*; return the whole run.

    The history is recorded as the engine records it: each incoming event, then the
    decisions of its step. Side effects and signals to send (a step's ``perform``) are
    performed first, in order, as long as they are still awaited.

    Args:
        workflow: The workflow's generator function.
        args: Its positional arguments (decoded values; they are encoded here).
        data: Where the outcomes come from.
        kwargs: Its keyword arguments.
        signals: Payload strategies by signal name. Signals of these names may arrive at
            any time (they are buffered until waited for); a waited-for name not listed
            gets small JSON payloads.
        updates: Argument strategies by update name. An update of these names (once the
            workflow registered its handler) may arrive at any time; one its validator
            rejects records nothing, as in the engine.
        max_events: How many outside events (outcomes, signals, updates, cancel) to draw
            at most.
        finish: Close the run when the budget is spent: cancel it (with a little more
            budget for compensations), then terminate it if it is still open.
        codec: The codec of the live interpreter.
        workflow_id: The run's workflow id.
    """
    signals = dict(signals or {})
    updates = dict(updates or {})
    interpreter = Interpreter(workflow, codec=codec)
    history: list[Event] = []
    steps: list[FedStep] = []
    outstanding: list[tuple[int, Command]] = []
    attempts: dict[int, int] = {}
    state = {"clock": T0, "signals": 0, "cancelled": False, "updates": 0}

    def feed(event: Event) -> None:
        assert isinstance(event, INCOMING_EVENTS)
        position = len(history)
        step = interpreter.feed(event)
        history.append(event)
        history.extend(step.events)
        outstanding.extend(step.perform)
        outstanding[:] = [(s, c) for s, c in outstanding if interpreter.is_pending(s)]
        steps.append(
            FedStep(position, step, snapshot(interpreter, [s for s, _ in outstanding]))
        )

    def tick() -> datetime:
        seconds = data.draw(st.sampled_from([0, 1, 7, 3600, 86_400 * 2]), label="wait")
        state["clock"] += timedelta(seconds=seconds)
        return state["clock"]

    def perform(seq: int, command: Command) -> Event:
        at = tick()
        if isinstance(command, RecordSideEffect):
            value = data.draw(
                values_of(command.result_type), label=f"side effect {seq}"
            )
            return fg.SideEffectRecorded(
                at=at, seq=seq, name=command.name, value=encode(value)
            )
        assert isinstance(command, SendSignal)
        if data.draw(st.booleans(), label=f"signal {seq} refused"):
            return fg.SignalSendFailed(
                at=at,
                seq=seq,
                workflow_id=command.workflow_id,
                name=command.name,
                error=fg.ErrorInfo("WorkflowClosed", f"{command.workflow_id} closed"),
            )
        return fg.SignalSent(
            at=at, seq=seq, workflow_id=command.workflow_id, name=command.name
        )

    def signal(name: str) -> Event:
        payload = data.draw(
            signals.get(name, small_json_values), label=f"{name} payload"
        )
        index = state["signals"]
        state["signals"] = index + 1
        return fg.SignalReceived(
            at=tick(), name=name, payload=encode(payload), index=index
        )

    def choices(luck: int) -> list[tuple[str, object]]:
        """What may happen next: successes only, or failures too, or a disruption too."""
        good: list[tuple[str, object]] = []
        bad: list[tuple[str, object]] = []
        for seq, command in sorted(interpreter.pending.items()):
            if isinstance(command, CallActivity):
                good.append(("complete", seq))
                bad.append(("fail", seq))
                if attempts.get(seq, 0) < 3:
                    bad.append(("retry", seq))
            elif isinstance(command, StartTimer):
                good.append(("fire", seq))
            elif isinstance(command, WaitSignal):
                good.append(("signal", command.name))
                if command.timeout is not None:
                    bad.append(("time out", seq))
            elif isinstance(command, StartChild):
                good.append(("child completes", seq))
                bad.append(("child fails", seq))
        good += [("signal", name) for name in signals]
        good += [
            ("update", name) for name in updates if name in interpreter.updates.handlers
        ]
        options = good + bad if luck >= 7 else good
        if luck == 9 or not options:
            if not state["cancelled"]:
                options.append(("cancel", None))
            options.append(("terminate", None))
        return sorted(set(options), key=options.index)

    def update(name: str) -> Event | None:
        """An accepted update, or ``None`` if its validator rejects it (nothing recorded)."""
        args = [encode(data.draw(updates[name], label=f"{name} argument"))]
        try:
            interpreter.validate_update(name, args)
        except fg.UpdateRejected:
            return None
        state["updates"] += 1
        return fg.UpdateAccepted(
            at=tick(), update_id=f"u-{state['updates']}", name=name, args=args
        )

    def outside_event(kind: str, arg: Any) -> Event | None:
        pending = interpreter.pending
        if kind == "signal":
            return signal(arg)
        if kind == "update":
            return update(arg)
        at = tick()
        if kind == "cancel":
            state["cancelled"] = True
            return fg.CancelRequested(at=at, reason="drawn cancel")
        if kind == "terminate":
            return fg.WorkflowTerminated(at=at, reason="drawn terminate")
        seq = arg
        if kind in ("complete", "fail", "retry"):
            attempt = attempts[seq] = attempts.get(seq, 0) + 1
            if kind == "complete":
                hint = pending[seq].result_type  # type: ignore[union-attr]
                value = data.draw(values_of(hint), label=f"activity {seq}")
                return fg.ActivityCompleted(
                    at=at, seq=seq, value=encode(value), attempt=attempt
                )
            error = data.draw(error_infos, label=f"activity {seq} error")
            if kind == "fail":
                return fg.ActivityFailed(at=at, seq=seq, error=error, attempt=attempt)
            return fg.ActivityAttemptFailed(
                at=at,
                seq=seq,
                error=error,
                attempt=attempt,
                retry_at=at + timedelta(seconds=attempt),
            )
        scheduled = interpreter.scheduled_event(seq)
        if kind == "fire":
            assert isinstance(scheduled, TimerStarted)
            state["clock"] = _due(at, scheduled.fire_at)
            return fg.TimerFired(at=state["clock"], seq=seq)
        if kind == "time out":
            assert isinstance(scheduled, SignalWaitStarted)
            state["clock"] = _due(at, scheduled.deadline)
            return fg.SignalTimedOut(at=state["clock"], seq=seq)
        assert isinstance(scheduled, ChildStarted)
        if kind == "child completes":
            hint = pending[seq].result_type  # type: ignore[union-attr]
            value = data.draw(values_of(hint), label=f"child {seq}")
            return fg.ChildCompleted(
                at=at, seq=seq, child_id=scheduled.child_id, value=encode(value)
            )
        error = data.draw(error_infos, label=f"child {seq} error")
        return fg.ChildFailed(at=at, seq=seq, child_id=scheduled.child_id, error=error)

    feed(
        fg.WorkflowStarted(
            at=T0,
            workflow_id=workflow_id,
            run_id="run-1",
            name=getattr(workflow, "__name__", "workflow"),
            args=[encode(a) for a in args],
            kwargs={k: encode(v) for k, v in (kwargs or {}).items()},
        )
    )
    budget = max_events
    while not interpreter.status.is_closed:
        if outstanding:
            feed(perform(*outstanding[0]))
        elif budget > 0:
            budget -= 1
            # 0-6: things go well; 7-8: failures and timeouts too; 9: cancel or terminate
            # too. Hypothesis shrinks towards 0, so towards the plainest run.
            luck = data.draw(st.integers(0, 9), label="luck")
            kind, arg = data.draw(st.sampled_from(choices(luck)), label="event")
            event = outside_event(kind, arg)
            if event is not None:
                feed(event)
        elif not finish:
            break
        elif not state["cancelled"]:
            feed(fg.CancelRequested(at=tick(), reason="drawn cancel"))
            state["cancelled"] = True
            budget = 8  # a little time to compensate
        else:
            feed(fg.WorkflowTerminated(at=tick(), reason="drawn terminate"))
    return DrawnRun(history, interpreter, steps)


def incoming_positions(history: Sequence[Event]) -> list[int]:
    return [i for i, e in enumerate(history) if isinstance(e, INCOMING_EVENTS)]


def expected_after_prefix(run: DrawnRun, k: int) -> tuple[list[Event], Snapshot]:
    """What replaying ``history[:k]`` must decide, and the state it must reach.

    The decisions are those of the last incoming event's step that ``history[:k]`` lacks;
    the state is the live run's right after that step.
    """
    fed = run.fed_before(k)
    end_of_step = fed.position + 1 + len(fed.step.events)
    return list(run.history[k:end_of_step]) if k < end_of_step else [], fed.state


def replay_step(
    fn: Callable[..., Any], history: Sequence[Event], codec: Codec = CODEC
) -> tuple[Interpreter, Step]:
    """Replay *history* on a fresh interpreter; return it and the decisions it made."""
    interpreter = Interpreter(fn, codec=codec)
    step = interpreter.replay(history)
    return interpreter, step


def state_of(interpreter: Interpreter, step: Step) -> Snapshot:
    return snapshot(interpreter, [seq for seq, _ in step.perform])


def outcome(interpreter: Interpreter) -> tuple[object, ...]:
    """How a run ended, as far as a caller can tell (tracebacks aside)."""
    error = interpreter.error
    return (
        interpreter.status,
        interpreter.result,
        None if error is None else attrs.evolve(error, traceback=""),
        interpreter.continue_args,
    )


# ---------------------------------------------------------------------------------------------
# Tampering with a history.

_DEFAULTS: Mapping[str, Callable[[Event], object]] = {
    "seq": lambda e: 0,
    "index": lambda e: 0,
    "attempt": lambda e: 1,
    "version": lambda e: 0,
    "fire_at": lambda e: e.at,
    "retry_at": lambda e: e.at,
    "error": lambda e: fg.ErrorInfo("Tampered", "retagged"),
    "value": lambda e: None,
    "payload": lambda e: None,
    "result": lambda e: None,
    "tags": lambda e: {},
}


def retag(event: Event, cls: type) -> Event:
    """*event* as a *cls*: the fields they share are kept, the others made up."""
    fields: dict[str, object] = {}
    for field in attrs.fields(cls):
        if hasattr(event, field.name):
            fields[field.name] = getattr(event, field.name)
        elif field.default is attrs.NOTHING:
            make = _DEFAULTS.get(field.name, lambda e: "tampered")
            fields[field.name] = make(event)
    return typing.cast(Event, cls(**fields))
