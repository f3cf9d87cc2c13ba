"""Serialization: the one private cattrs converter, and the only module that imports cattrs.

Two jobs:

* **Payloads** (activity arguments and results, signal payloads, workflow results) become
  JSON values with `encode` and come back with `decode`, guided by a type hint (an activity's
  return annotation, a workflow's parameter annotations). attrs classes, dataclasses,
  datetimes, enums, tuples, sets and containers of them round-trip. `encode` produces exactly
  what a JSON round trip would (tuples become lists, non-string keys become strings), so the
  value a workflow sees on its first run equals the one it sees on replay.
* **Bytes** (``bytes``, ``bytearray``, ``memoryview``) are written, at any depth, as the
  tagged object ``{"$bytes": "<standard base64>"}`` (SQL reads it back with DuckDB's
  ``from_base64(x->>'$."$bytes"')`` or PostgreSQL's ``decode(x->>'$bytes', 'base64')``), and
  `decode` turns every such one-key object back into ``bytes`` at any depth whatever the hint,
  so bytes never arrive as a string where nothing says they are bytes (an untyped activity,
  a ``dict[str, Any]``, a signal payload). A ``bytearray`` or ``memoryview`` comes back as
  ``bytes`` (as a ``bytearray`` under that hint). A ``bytes`` hint also reads the base85
  string older flowgen versions wrote (cattrs' JSON default), so histories recorded before
  keep decoding. The tag is reserved: a dict of the user's whose only key is ``"$bytes"``
  would come back as bytes, so `encode` refuses it (naming its place) instead.
* **Events** become JSON objects tagged with their stable ``kind`` (never the class name),
  and back. Loading a history only ever builds flowgen's own event classes: no pickle, no
  code runs.

Values that cannot be represented are refused with a `TypeError` that names the argument.
That includes text that is not Unicode: a ``str`` holding a surrogate code point (a lone
surrogate such as U+DC80 is what ``os.fsdecode`` makes of a file name that is not UTF-8).
JSON's escapes would carry it, but no store can hold it (DuckDB refuses it, and so does
any UTF-8 database), so it is refused here, before anything is written: by `encode` for
payloads, by `check_text` for the bare names (signal names, cancel reasons, tag keys), and by
`dumps` as the last gate before a store. So is an int of more than `MAX_INT_DIGITS` digits:
Python's ``int``/``str`` conversions (and so ``json.dumps`` and ``json.loads``) refuse it by
default, and a commit holding one used to fail whole.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import typing
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, time, timedelta
from typing import Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter
from cattrs.strategies import configure_tagged_union

from flowgen._vocabulary.errors import ErrorInfo, HistoryCorruptError
from flowgen._vocabulary.events import (
    EVENT_TAGS,
    TAG_TO_EVENT,
    Event,
    JsonValue,
    WorkflowStarted,
)
from flowgen._vocabulary.text import surrogate_at, unstorable_why

__all__ = [
    "BYTES_TAG",
    "CODEC",
    "MAX_INT_DIGITS",
    "JsonCodec",
    "check_text",
    "decode",
    "dumps",
    "encode",
    "event_from_dict",
    "event_to_dict",
    "history_from_json",
    "history_to_json",
    "loads",
    "to_datetime",
]

_converter = make_converter()

_SCALARS: Final = (str, int, bool, type(None))

MAX_INT_DIGITS: Final = 4300
"""The most decimal digits of an int a value may hold: Python's default limit for ``str(int)``
and ``int(str)`` (``sys.get_int_max_str_digits()``), so every JSON reader takes it back."""

_INT_BOUND: Final = 10**MAX_INT_DIGITS


def _too_long(value: int) -> str:
    return (
        f"an int of {value.bit_length()} bits has more than {MAX_INT_DIGITS} digits, "
        f"which JSON cannot carry (pass it as a str)"
    )


BYTES_TAG: Final = "$bytes"
"""The only key of the JSON object that stands for bytes (see the module docstring)."""

_BYTES_TYPES: Final = (bytes, bytearray, memoryview)


def _passthrough(value: Any, _type: Any = None) -> Any:
    return value


def _is_json_hint(hint: Any) -> bool:
    # cattrs may hand over a part of the JsonValue union (it peels off the scalars), so
    # recognise the alias by the forward reference every part of it carries.
    return hint is JsonValue or "JsonValue" in repr(hint)


# Payload fields of events already hold JSON: never walk them again.
_converter.register_structure_hook_func(_is_json_hint, _passthrough)
_converter.register_unstructure_hook_func(_is_json_hint, _passthrough)
# `object` nested in a hint (``list[object]``, ``dict[str, object]``) means "any JSON value",
# as it does at the top level; cattrs knows `Any` but not `object`.
_converter.register_structure_hook_func(lambda hint: hint is object, _passthrough)
# timedelta is not in the JSON preconf converter; seconds as a float read naturally in SQL.
_converter.register_unstructure_hook(timedelta, lambda td: td.total_seconds())
_converter.register_structure_hook(timedelta, lambda v, _t: timedelta(seconds=v))
_converter.register_unstructure_hook(time, lambda t: t.isoformat())
_converter.register_structure_hook(time, lambda v, _t: time.fromisoformat(v))
# Bytes stay bytes through unstructuring (the preconf converter would make base85 text of
# them): `_to_json` tags them, where it can also refuse a user's dict that looks tagged.
for _bytes_type in _BYTES_TYPES:
    _converter.register_unstructure_hook(_bytes_type, _passthrough)


def _structure_bytes(value: object, _type: object = bytes) -> bytes:
    # `decode` has already turned the tagged object into bytes; a str is the base85 form
    # older versions wrote, read under a `bytes` hint only.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return base64.b85decode(value)
    raise TypeError(f"{value!r:.100} is not bytes")


_converter.register_structure_hook(bytes, _structure_bytes)
_converter.register_structure_hook(
    bytearray, lambda v, _t: bytearray(_structure_bytes(v))
)
_converter.register_structure_hook(
    memoryview, lambda v, _t: memoryview(_structure_bytes(v))
)
# A UUID is its canonical string (what `fg.uuid4` records).
_converter.register_unstructure_hook(uuid.UUID, str)
_converter.register_structure_hook(uuid.UUID, lambda v, _t: uuid.UUID(v))
# Fields added after schema v1 are written only when set, so histories recorded before they
# existed serialize byte for byte as they did (golden files stay canonical).
_converter.register_unstructure_hook(
    ErrorInfo,
    make_dict_unstructure_fn(
        ErrorInfo, _converter, cause=override(omit_if_default=True)
    ),
)
_converter.register_unstructure_hook(
    WorkflowStarted,
    make_dict_unstructure_fn(
        WorkflowStarted,
        _converter,
        trace_context=override(omit_if_default=True),
        origin_kind=override(omit_if_default=True),
        origin_run_id=override(omit_if_default=True),
        origin_event=override(omit_if_default=True),
    ),
)
configure_tagged_union(
    Event,
    _converter,
    tag_generator=EVENT_TAGS.__getitem__,
    tag_name="kind",
)


def check_text(text: str, what: str) -> str:
    """Refuse text no store can hold; returns *text* unchanged.

    Args:
        text: A name, reason or key that is stored as text.
        what: What it is, for the error message (``"signal name"``).

    Raises:
        TypeError: *text* holds a surrogate code point; the message names *what*. A
            `str` subclass is checked as a `str` (and comes back as a plain one).
    """
    if type(text) is not str and isinstance(text, str):
        text = str.__str__(text)  # its own __str__ or encode() could hide a surrogate
    if type(text) is str and (index := surrogate_at(text)) is not None:
        raise TypeError(f"{what} cannot be stored: {unstorable_why(text, index)}")
    return text


class _NotJson(Exception):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(path, why)
        self.path = path
        self.why = why


def _to_json(value: object, path: str) -> JsonValue:
    """Normalize an unstructured value to what ``json.loads(json.dumps(value))`` gives."""
    if type(value) in _SCALARS:
        if type(value) is str and (index := surrogate_at(value)) is not None:
            raise _NotJson(path, unstorable_why(value, index))
        if type(value) is int and not -_INT_BOUND < value < _INT_BOUND:
            raise _NotJson(path, _too_long(value))
        return value  # type: ignore[return-value]  # exactly str, int, bool or None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson(path, f"{value!r} is not a finite number (JSON has no NaN)")
        return float(value)
    # Subclasses (IntEnum and str-mixin enum members, which cattrs passes through) become
    # the plain values JSON gives back, or the first run would see other types than replay.
    if isinstance(value, str):
        return _to_json(str.__str__(value), path)
    if isinstance(value, int):
        return _to_json(int(value), path)
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return _dict_to_json(value, path)
    if isinstance(value, _BYTES_TYPES):
        return {BYTES_TAG: base64.b64encode(bytes(value)).decode("ascii")}
    raise _NotJson(
        path,
        f"{type(value).__qualname__} is not JSON, nor an attrs class, dataclass, enum, "
        f"datetime or container of them",
    )


def _dict_to_json(value: dict[Any, Any], path: str) -> JsonValue:
    result: dict[str, JsonValue] = {}
    for key, item in value.items():
        if isinstance(key, str):
            name = str.__str__(key)
            if (index := surrogate_at(name)) is not None:
                raise _NotJson(path, f"key: {unstorable_why(name, index)}")
        elif isinstance(key, bool):
            name = "true" if key else "false"
        elif isinstance(key, (int, float)) or key is None:
            name = json.dumps(key)
        else:
            raise _NotJson(path, f"key {key!r} is not a string or a number")
        result[name] = _to_json(item, f"{path}[{key!r}]")
    if len(result) == 1 and BYTES_TAG in result:
        raise _NotJson(
            path,
            f"a dict whose only key is {BYTES_TAG!r} is reserved for bytes "
            f"(it would be decoded as bytes); add another key or rename it",
        )
    return result


def encode(value: object, what: str = "value") -> JsonValue:
    """Turn *value* into JSON data (dicts, lists, strings, numbers, booleans, None).

    Args:
        value: Anything cattrs can unstructure: attrs classes, dataclasses, datetimes,
            enums, and containers of them.
        what: What the value is, for the error message (``"argument 'amount' of ..."``).

    Returns:
        The JSON value, exactly as a JSON round trip would give it.

    Raises:
        TypeError: If the value cannot be represented; the message names *what*.
    """
    if type(value) in _SCALARS:  # the hot path: most payloads are small scalars
        if type(value) is str and (index := surrogate_at(value)) is not None:
            raise TypeError(
                f"{what} cannot be serialized: {unstorable_why(value, index)}"
            )
        if type(value) is int and not -_INT_BOUND < value < _INT_BOUND:
            raise TypeError(f"{what} cannot be serialized: {_too_long(value)}")
        return value  # type: ignore[return-value]
    try:
        unstructured = _converter.unstructure(value)
        return _to_json(unstructured, "")
    except _NotJson as exc:
        where = f" at {exc.path}" if exc.path else ""
        raise TypeError(f"{what} cannot be serialized{where}: {exc.why}") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"{what} cannot be serialized: {exc}") from None


def decode(payload: JsonValue, type_hint: object = object) -> object:
    """Rebuild a value of *type_hint* from JSON data made by `encode`.

    Raises:
        TypeError: If the payload does not fit the type.
    """
    if type(payload) in _SCALARS or type(payload) is float:
        if type_hint is object or type_hint is Any:
            return payload
        if type(payload) is type_hint and type_hint in _SCALARS:
            return payload  # e.g. an int for an int (before the costlier check below)
        if _is_json_hint(type_hint):
            return payload
    else:
        # A fresh copy: the payload belongs to a recorded event, which the receiver (workflow
        # code, an activity) must not be able to change by mutating what it got.
        payload = _copy_json(payload)
        if type_hint is object or type_hint is Any or _is_json_hint(type_hint):
            return payload
    try:
        return _converter.structure(payload, type_hint)  # type: ignore[arg-type]  # a runtime type hint
    except Exception as exc:  # noqa: BLE001  # cattrs raises many kinds; one clear error
        detail = (
            "; ".join(cattrs.transform_error(exc))
            if isinstance(exc, cattrs.BaseValidationError)
            else str(exc)
        )
        raise TypeError(
            f"cannot decode {payload!r:.100} as {_type_name(type_hint)}: {detail}"
        ) from None


def _copy_json(payload: JsonValue) -> Any:
    """A fresh copy of *payload*, with every tagged bytes object turned into ``bytes``."""
    if isinstance(payload, list):
        return [_copy_json(item) for item in payload]
    if isinstance(payload, dict):
        if len(payload) == 1 and BYTES_TAG in payload:
            return _tagged_bytes(payload[BYTES_TAG])
        return {key: _copy_json(item) for key, item in payload.items()}
    return payload


def _tagged_bytes(text: JsonValue) -> bytes:
    try:
        if isinstance(text, str):
            return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    raise TypeError(
        f"cannot decode {{{BYTES_TAG!r}: {text!r:.60}}}: the value of a {BYTES_TAG!r} "
        f"object must be standard base64 text"
    )


def _type_name(hint: object) -> str:
    return getattr(hint, "__qualname__", None) or repr(hint)


@attrs.frozen
class JsonCodec:
    """The codec the engine gives the interpreter: `encode` and `decode` above.

    The functions themselves, not methods calling them: one Python call less for each
    value a workflow sends or receives, on every replayed step.
    """

    encode = staticmethod(encode)
    decode = staticmethod(decode)


CODEC: Final = JsonCodec()


def compact_encoder(
    default: Callable[[Any], Any] | None = None,
) -> Callable[[Any], str]:
    """A function giving compact JSON text, made once (the hot paths encode every event).

    It is ``json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=default)``'s
    ``encode``, without the C encoder that method builds on every call (about 0.9 us, as
    much as encoding a small event): the C encoder is made here, once, with no table of
    containers seen (values here come from `encode`, so they hold no cycle; one would end
    in `RecursionError`). Where there is no C encoder, the method itself.
    """
    encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=default)
    make = getattr(json.encoder, "c_make_encoder", None)  # not in the type stubs
    if make is None:  # pragma: no cover - CPython always has it
        return encoder.encode
    one_shot = make(
        None,  # no cycle check (see above)
        encoder.default,
        json.encoder.encode_basestring_ascii,
        None,  # no indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
    join = "".join

    def encode(value: Any) -> str:
        return join(one_shot(value, 0))

    return encode


_encode_compact: Final = compact_encoder()


def dumps(value: JsonValue) -> str:
    """Compact JSON text of an encoded value (keys in insertion order).

    Raises:
        TypeError: A string in *value* holds a surrogate code point (see the module's
            docstring): JSON would escape it, and the store would refuse it forever.
    """
    text = _encode_compact(value)
    # Every non-ASCII character is escaped, and only surrogates (and the pairs that spell
    # characters beyond the BMP) as "\\ud...": the rare text that has one is walked.
    if "\\ud" in text:
        _check_json_text(value, "")
    return text


def _check_json_text(value: object, path: str) -> None:
    if isinstance(value, str):
        check_text(value, f"the JSON value{' at ' + path if path else ''}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_text(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json_text(key, f"{path} (a key)")
            _check_json_text(item, f"{path}[{key!r}]")


def loads(text: str) -> JsonValue:
    """Parse JSON text made by `dumps`."""
    result: JsonValue = json.loads(text)
    return result


def event_to_dict(event: Event) -> dict[str, JsonValue]:
    """An event as a JSON object, with its stable tag under ``"kind"``."""
    # Only flowgen's own kinds (anything else: KeyError, as from the tagged union).
    data: dict[str, JsonValue] = _EVENT_UNSTRUCTURE[type(event)](event)
    data["kind"] = EVENT_TAGS[type(event)]  # last, where the tagged union puts it
    return data


# Each kind's unstructure hook, called directly: what the tagged union calls, without its
# two dispatches per event (every recorded event is unstructured once).
_EVENT_UNSTRUCTURE: Final[dict[type, Any]] = {
    cls: _converter.get_unstructure_hook(cls) for cls in TAG_TO_EVENT.values()
}


# Each kind's structure hook, called directly: what the tagged union does after copying the
# object and popping its tag, at half the cost per event of a loaded history.
_EVENT_HOOKS: Final[dict[str, tuple[type, Any]]] = {
    tag: (cls, _converter.get_structure_hook(cls)) for tag, cls in TAG_TO_EVENT.items()
}


def event_from_dict(data: Mapping[str, JsonValue]) -> Event:
    """Rebuild an event from `event_to_dict` output.

    Raises:
        HistoryCorruptError: If the object is not a valid flowgen event.
    """
    kind = data.get("kind")
    hook = _EVENT_HOOKS.get(kind) if isinstance(kind, str) else None
    if hook is None:
        raise HistoryCorruptError(f"unknown event kind {kind!r}")
    cls, structure = hook
    try:
        event: Event = structure(data, cls)
    except Exception as exc:  # noqa: BLE001  # any structuring failure means a bad record
        detail = (
            "; ".join(cattrs.transform_error(exc))
            if isinstance(exc, cattrs.BaseValidationError)
            else str(exc)
        )
        raise HistoryCorruptError(f"invalid {kind} event: {detail}") from None
    return event


def history_to_json(events: typing.Iterable[Event]) -> str:
    """A history as text: one event per line, keys sorted (readable diffs for goldens)."""
    return "".join(
        json.dumps(event_to_dict(e), sort_keys=True, allow_nan=False) + "\n"
        for e in events
    )


def history_from_json(text: str) -> list[Event]:
    """Parse `history_to_json` output back into events."""
    return [
        event_from_dict(json.loads(line)) for line in text.splitlines() if line.strip()
    ]


def to_datetime(value: object) -> datetime:
    """Parse an ISO timestamp made by the converter (used by stores)."""
    result: datetime = _converter.structure(value, datetime)
    return result
