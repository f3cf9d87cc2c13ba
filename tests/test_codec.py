"""The codec: events to JSON and back by stable tag, payloads by type hint (P3)."""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, strategies as st

import flowgen as fg
from flowgen._stores import codec
from flowgen._stores.codec import (
    CODEC,
    JsonCodec,
    check_text,
    decode,
    dumps,
    encode,
    event_from_dict,
    event_to_dict,
    history_from_json,
    history_to_json,
    loads,
    to_datetime,
)
from flowgen._vocabulary.events import EVENT_TAGS, JsonValue
from tests import workflows as w
from tests.strategies import (
    EVENT_CLASSES,
    T0,
    Card,
    Hand,
    Rank,
    Suit,
    aware_datetimes,
    events,
    events_of,
    examples,
    finite_floats,
    hands,
    json_values,
)


def same_json(a: object, b: object) -> bool:
    """Equal *and* of the same types all the way down (``1 == 1.0 == True`` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same_json, a, b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_json(a[k], b[k]) for k in a)  # type: ignore[call-overload]
    return a == b


# ---------------------------------------------------------------------------------------------
# Events.


@given(events)
def test_every_event_round_trips_through_a_dict_and_json_text(event: fg.Event) -> None:
    data = event_to_dict(event)
    assert data["kind"] == EVENT_TAGS[type(event)]
    assert event_from_dict(data) == event
    assert event_from_dict(json.loads(json.dumps(data))) == event


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: EVENT_TAGS[c])
@examples(0.25)
@given(data=st.data())
def test_each_event_kind_round_trips(cls: type, data: st.DataObject) -> None:
    event = data.draw(events_of(cls))
    assert event_from_dict(json.loads(dumps(event_to_dict(event)))) == event


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: EVENT_TAGS[c])
@examples(0.25)
@given(data=st.data())
def test_each_event_kind_is_written_as_the_tagged_union_writes_it(
    cls: type, data: st.DataObject
) -> None:
    # event_to_dict calls each kind's hook directly: the text a store keeps must be the
    # union's, byte for byte (key order included), or recorded histories would change.
    event = data.draw(events_of(cls))
    union = codec._converter.unstructure(event, fg.Event)
    assert dumps(event_to_dict(event)) == dumps(union)


def test_event_tags_are_stable_snake_case_and_unique() -> None:
    tags = list(EVENT_TAGS.values())
    assert len(set(tags)) == len(tags) == 30
    assert all(tag.islower() and " " not in tag for tag in tags)
    assert EVENT_TAGS[fg.WorkflowErrored] == "workflow_failed"


def test_an_event_dict_holds_payloads_as_json_and_times_as_iso_text() -> None:
    event = fg.ActivityCompleted(at=T0, seq=3, value={"a": [1, 2.5, None]}, attempt=2)
    assert event_to_dict(event) == {
        "kind": "activity_completed",
        "at": "2031-05-07T09:41:13.250000+00:00",
        "seq": 3,
        "value": {"a": [1, 2.5, None]},
        "attempt": 2,
        "started_at": None,
    }


def test_a_trace_context_is_written_only_when_the_run_has_one() -> None:
    # Histories recorded without tracing serialize byte for byte as before the field.
    untraced = fg.WorkflowStarted(at=T0, workflow_id="w", run_id="r", name="order")
    assert "trace_context" not in event_to_dict(untraced)
    assert event_from_dict(event_to_dict(untraced)) == untraced
    context = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "parent_span_id": "00f067aa0ba902b7",
    }
    traced = attrs.evolve(untraced, trace_context=context)
    assert event_to_dict(traced)["trace_context"] == context
    assert event_from_dict(json.loads(dumps(event_to_dict(traced)))) == traced


@given(st.lists(events, max_size=6))
def test_a_history_round_trips_through_text_one_event_per_line(
    history: list[fg.Event],
) -> None:
    text = history_to_json(history)
    assert text.count("\n") == len(history)
    for line in text.splitlines():
        assert list(json.loads(line)) == sorted(json.loads(line))
    assert history_from_json(text + "\n  \n") == history


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "unknown event kind None"),
        ({"kind": 3}, "unknown event kind 3"),
        ({"kind": "ActivityCompleted"}, "unknown event kind 'ActivityCompleted'"),
        (
            {"kind": "timer_fired", "at": "2031-01-01T00:00:00+00:00"},
            "invalid timer_fired event: required field missing @ \\$.seq",
        ),
        (
            {"kind": "timer_fired", "at": "noon", "seq": 1},
            "invalid timer_fired event: .* @ \\$.at",
        ),
    ],
)
def test_an_invalid_event_record_is_history_corrupt(
    data: dict[str, JsonValue], message: str
) -> None:
    with pytest.raises(fg.HistoryCorruptError, match=message):
        event_from_dict(data)


def test_to_datetime_reads_the_converters_timestamps() -> None:
    assert to_datetime("2031-05-07T09:41:13.250000+00:00") == T0
    assert to_datetime(event_to_dict(fg.TimerFired(at=T0, seq=0))["at"]) == T0


# ---------------------------------------------------------------------------------------------
# Payloads: decode(encode(v), T) == v.


class Level(enum.Enum):
    LOW = 1
    HIGH = "high"


class Colour(enum.StrEnum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Shipment:
    parcels: list[tuple[str, float]]
    when: datetime
    level: Level = Level.LOW
    claim: w.Claim | None = None


shipments = st.builds(
    Shipment,
    parcels=st.lists(st.tuples(st.text(max_size=4), finite_floats), max_size=3),
    when=aware_datetimes,
    level=st.sampled_from(Level),
    claim=st.none() | st.builds(w.Claim, st.text(max_size=3), finite_floats),
)

ROUND_TRIPS: list[tuple[object, st.SearchStrategy[Any]]] = [
    (Hand, hands),
    (
        Card,
        st.builds(Card, st.sampled_from(Suit), st.sampled_from(Rank), aware_datetimes),
    ),
    (Shipment, shipments),
    (datetime, aware_datetimes),
    (date, st.dates()),
    (time, st.times()),
    (
        timedelta,
        st.integers(-(10**9), 10**9).map(lambda ms: timedelta(milliseconds=ms)),
    ),
    (Level, st.sampled_from(Level)),
    (Colour, st.sampled_from(Colour)),
    (Rank, st.sampled_from(Rank)),
    (tuple[int, str, bool], st.tuples(st.integers(), st.text(), st.booleans())),
    (tuple[float, ...], st.lists(finite_floats).map(tuple)),
    (set[str], st.sets(st.text(max_size=5))),
    (frozenset[int], st.frozensets(st.integers())),
    (
        dict[str, list[tuple[int, datetime]]],
        st.dictionaries(
            st.text(max_size=4),
            st.lists(st.tuples(st.integers(), aware_datetimes), max_size=3),
        ),
    ),
    (list[Hand | None], st.lists(st.none() | hands, max_size=2)),
    (dict[int, str], st.dictionaries(st.integers(), st.text(max_size=3), max_size=4)),
    (bytes, st.binary(max_size=20)),
    (
        w.Page,
        st.builds(
            w.Page, st.lists(st.text(max_size=3)).map(tuple), st.none() | st.text()
        ),
    ),
    (float, finite_floats),
]


@pytest.mark.parametrize(
    ("hint", "values"), ROUND_TRIPS, ids=[repr(h) for h, _ in ROUND_TRIPS]
)
@examples(0.5)
@given(data=st.data())
def test_decode_of_encode_gives_the_value_back(
    hint: object, values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    value = data.draw(values)
    payload = encode(value)
    assert decode(payload, hint) == value
    assert decode(loads(dumps(payload)), hint) == value
    # What encode gives is exactly what a JSON round trip gives: same values, same types.
    assert same_json(json.loads(json.dumps(payload)), payload)


@given(json_values)
def test_json_values_encode_to_themselves_and_decode_untyped(value: JsonValue) -> None:
    assert same_json(encode(value), value)
    assert same_json(decode(value), value)
    assert same_json(decode(value, JsonValue), value)
    assert same_json(decode(value, Any), value)


def test_enum_members_encode_to_plain_json_values() -> None:
    # An IntEnum member is an int: left in the payload, the first run would see Rank.ACE
    # where a replay from the store sees 1.
    payload = encode({"rank": Rank.KING, "colour": Colour.RED, "level": Level.HIGH})
    assert same_json(payload, {"rank": 13, "colour": "red", "level": "high"})
    assert same_json(encode([Rank.ACE]), [1])


def test_encode_normalizes_like_json_tuples_to_lists_and_keys_to_strings() -> None:
    payload = encode({1: (1, 2), None: {"x"}, 2.5: True, False: 0})
    assert same_json(payload, {"1": [1, 2], "null": ["x"], "2.5": True, "false": 0})
    assert same_json(json.loads(json.dumps(payload)), payload)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (
            float("nan"),
            "argument 'amount' cannot be serialized: nan is not a finite number",
        ),
        (
            [1.0, float("inf")],
            r"argument 'amount' cannot be serialized at \[1\]: inf is not",
        ),
        (
            {"a": {"b": -float("inf")}},
            r"at \['a'\]\['b'\]: -inf is not a finite number",
        ),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_argument(
    value: object, where: str
) -> None:
    with pytest.raises(TypeError, match=where):
        encode(value, "argument 'amount'")


def test_an_attrs_field_holding_nan_is_refused_with_its_path() -> None:
    with pytest.raises(
        TypeError, match=r"claim cannot be serialized at \['amount'\]: nan"
    ):
        encode(w.Claim("bob", float("nan")), "claim")


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (Opaque(), "Opaque is not JSON, nor an attrs class"),
        ([1, Opaque()], r"at \[1\]: Opaque is not JSON"),
        ({Opaque(): 1}, "key <.*Opaque object .*> is not a string or a number"),
        ({(1, 2): 3}, "unhashable type"),
    ],
)
def test_a_value_that_is_not_serializable_raises_type_error_naming_it(
    value: object, why: str
) -> None:
    with pytest.raises(
        TypeError, match=f"^payload of signal 'x' cannot be serialized.*{why}"
    ):
        encode(value, "payload of signal 'x'")


def test_a_self_containing_value_is_refused_not_a_crash() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="the workflow's result cannot be serialized"):
        encode(loop, "the workflow's result")


@pytest.mark.parametrize(
    ("payload", "hint", "message"),
    [
        ("x", int, "cannot decode 'x' as int: invalid literal"),
        ({"owner": 1}, Hand, r"cannot decode \{'owner': 1\} as Hand: .*\$\.cards"),
        ("purple", Level, "cannot decode 'purple' as Level"),
    ],
)
def test_a_payload_that_does_not_fit_its_type_raises_type_error(
    payload: JsonValue, hint: object, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        decode(payload, hint)


def test_decode_hands_out_copies_never_the_recorded_payload() -> None:
    payload: JsonValue = {"items": [1, [2]], "n": 1}
    for hint in (object, dict[str, object], Any):
        value = decode(payload, hint)
        assert value == payload
        value["items"][1].append(3)  # type: ignore[index]
        assert payload == {"items": [1, [2]], "n": 1}


def test_scalars_decode_as_they_are() -> None:
    for value in (None, True, 0, "s", 1.5):
        assert decode(value) is value
        assert decode(value, type(value)) is value
    assert decode(5, float) == 5.0
    assert isinstance(decode(5, float), float)


def test_nested_object_hints_mean_any_json() -> None:
    assert decode([1, {"a": [2]}], list[object]) == [1, {"a": [2]}]
    assert decode({"k": [None]}, dict[str, object]) == {"k": [None]}


def test_the_codec_object_delegates_to_encode_and_decode() -> None:
    assert isinstance(CODEC, JsonCodec)
    assert CODEC.encode(w.Trip("a", "b"), "trip") == {
        "traveller": "a",
        "destination": "b",
        "nights": 1,
    }
    assert CODEC.decode({"traveller": "a", "destination": "b"}, w.Trip) == w.Trip(
        "a", "b"
    )
    with pytest.raises(TypeError, match=r"^trip cannot be serialized"):
        CODEC.encode(Opaque(), "trip")


def test_dumps_is_compact_and_refuses_nan() -> None:
    assert dumps({"a": [1, "b"], "c": None}) == '{"a":[1,"b"],"c":null}'
    assert loads('{"a":[1,"b"]}') == {"a": [1, "b"]}
    with pytest.raises(ValueError, match="not JSON compliant"):
        dumps(float("nan"))


def test_aware_datetimes_keep_their_instant_and_offset() -> None:
    lima = T0.astimezone(timezone(timedelta(hours=-5)))
    back = decode(encode(lima), datetime)
    assert back == T0
    assert isinstance(back, datetime)
    assert back.utcoffset() == timedelta(hours=-5)


# Text no store can hold: a surrogate code point (os.fsdecode of a non-UTF-8 file name).
LONE = "report-\udc80.csv"


class Named(enum.StrEnum):
    BAD = LONE


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (LONE, "argument 'p' cannot be serialized: the text 'report-\\udc80.csv'"),
        ([1, LONE], "at [1]"),
        ({"f": (LONE,)}, "at ['f'][0]"),
        ({LONE: 1}, "key: the text"),
        (Named.BAD, "lone surrogate '\\udc80' at index 7"),
    ],
)
def test_encode_refuses_a_lone_surrogate_naming_its_place(
    value: object, where: str
) -> None:
    with pytest.raises(TypeError, match="lone surrogate") as refused:
        encode(value, "argument 'p'")
    assert where in str(refused.value)


def test_text_beyond_ascii_is_not_a_surrogate() -> None:
    value = {"naïve": ["日本", "😀", "a \\udc80 that is a backslash"]}
    assert encode(value) == value
    assert json.loads(dumps(value)) == value  # type: ignore[arg-type]
    assert check_text("日本", "a name") == "日本"
    assert check_text(3, "a name") == 3  # type: ignore[arg-type]  # not text: not checked


def test_check_text_refuses_a_lone_surrogate_naming_what_it_is() -> None:
    with pytest.raises(
        TypeError, match=r"^the signal name cannot be stored: .*index 7"
    ):
        check_text(LONE, "the signal name")


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (LONE, "the JSON value cannot"),
        ({"k": [LONE]}, "at ['k'][0]"),
        ({LONE: 1}, "(a key)"),
    ],
)
def test_dumps_refuses_a_lone_surrogate_json_would_escape(
    value: JsonValue, where: str
) -> None:
    with pytest.raises(TypeError, match="lone surrogate") as refused:
        dumps(value)
    assert where in str(refused.value)


def test_failure_text_keeps_a_lone_surrogate_as_its_escape() -> None:
    # An exception's message often holds a file name; os.fsdecode of one that is not
    # UTF-8 has a lone surrogate. The failure is data for humans: kept, escaped.
    info = fg.ErrorInfo(LONE, f"cannot open {LONE}", traceback=LONE, cause=LONE)
    escaped = "report-\\udc80.csv"
    assert (info.type, info.traceback, info.cause) == (escaped, escaped, escaped)
    assert info.message == f"cannot open {escaped}"
    assert fg.ErrorInfo("E", "déjà vu").message == "déjà vu"  # real text stays
    assert json.loads(dumps(encode(info))) == encode(info)


def test_a_uuid_round_trips_as_its_string() -> None:
    value = uuid.UUID("12345678-1234-4678-9234-567812345678")
    assert encode(value) == "12345678-1234-4678-9234-567812345678"
    assert decode(encode(value), uuid.UUID) == value


# ---------------------------------------------------------------------------------------------
# Bytes: tagged base64 at any depth, decoded whatever the hint (tests/test_bytes_payloads.py
# runs them through the engine).

BLOB = b"\x00\xff"


def typed(value: object) -> object:
    """*value* with every part's type spelled out (``b"x" == bytearray(b"x")``)."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("value", [b"", BLOB, bytearray(b"ab"), memoryview(b"cd")])
def test_encode_tags_bytes_with_standard_base64(value: Any) -> None:
    payload = encode(value)
    assert payload == {"$bytes": base64.b64encode(bytes(value)).decode()}
    assert typed(decode(payload)) == ("bytes", bytes(value))
    assert typed(decode(payload, bytes)) == ("bytes", bytes(value))
    assert typed(decode(payload, bytearray)) == ("bytearray", bytearray(value))


def test_decode_turns_the_tag_into_bytes_at_any_depth_whatever_the_hint() -> None:
    payload = encode({"k": [BLOB, {"deep": BLOB}]})
    expected = typed({"k": [BLOB, {"deep": BLOB}]})
    assert typed(decode(payload)) == expected
    assert typed(decode(payload, dict[str, Any])) == expected
    assert typed(decode(payload, fg.JsonValue)) == expected
    assert typed(decode(payload, dict[str, list[object]])) == expected


def test_a_tag_that_is_not_base64_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"\$bytes.*base64"):
        decode({"x": {"$bytes": "not base64!"}})
    with pytest.raises(TypeError, match=r"\$bytes.*base64"):
        decode([{"$bytes": 1}])


def test_a_bytes_hint_still_reads_the_base85_text_older_versions_wrote() -> None:
    old = base64.b85encode(BLOB).decode()
    assert typed(decode(old, bytes)) == ("bytes", BLOB)
    assert typed(decode({"blob": old}, dict[str, bytes])) == {"blob": ("bytes", BLOB)}
    with pytest.raises(TypeError, match="is not bytes"):
        decode(5, bytes)


@pytest.mark.parametrize(
    ("value", "where"),
    [({"$bytes": "AP8="}, ""), ({"a": [1, {"$bytes": 1}]}, " at ['a'][1]")],
)
def test_a_dict_whose_only_key_is_the_bytes_tag_is_refused(
    value: object, where: str
) -> None:
    with pytest.raises(TypeError) as refused:
        encode(value, "argument 'x'")
    assert str(refused.value).startswith(f"argument 'x' cannot be serialized{where}: ")
    assert "reserved for bytes" in str(refused.value)
    assert encode({"$bytes": "AP8=", "other": 1}) == {"$bytes": "AP8=", "other": 1}


def test_an_int_too_long_for_json_is_refused_naming_its_place() -> None:
    huge = 10**5000
    with pytest.raises(TypeError, match=r"the amount cannot be serialized: an int of"):
        codec.encode(huge, "the amount")
    with pytest.raises(TypeError, match=r"at \['n'\]\[1\].*more than 4300 digits"):
        codec.encode({"n": [1, -huge]}, "the payload")
    assert codec.encode(10**4299, "fine") == 10**4299


def test_a_str_subclass_is_checked_and_stored_as_a_plain_str() -> None:
    class Name(str):
        def __str__(self) -> str:
            return "hidden"

    checked = codec.check_text(Name("ok"), "the signal name")
    assert checked == "ok" and type(checked) is str
    with pytest.raises(TypeError, match="the signal name cannot be stored"):
        codec.check_text(Name("bad \udc80"), "the signal name")
