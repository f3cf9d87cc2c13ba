"""The public API's plain arguments, checked where they enter: one copy of each rule.

Rules:

- Text the engine stores or looks up (a workflow id, a signal name, a cancel reason, a tag
  name, a schedule's note) is a `str`. A `str` subclass is taken as the plain `str` it
  holds; text no store can hold is refused (`flowgen._stores.codec.check_text`). Anything
  else is a `TypeError` naming the argument: an ``int`` used to be stored as given, and
  ``bytes`` to fail the whole commit it was part of.
- A workflow id is such text, and not empty; a run id (when one is given) is such text.
- `Engine.list_runs`'s filters: a status of `STORED_STATUSES`, a workflow name that is
  stored text, tags as a dict keyed by stored text (the values encoded as stored), and a
  limit that is ``None`` or an int (not a bool) from 1 to 2**63 - 1 (what SQL's ``LIMIT``
  takes).
- A timeout a caller waits with (``handle.result``, ``engine.update``) is ``None`` (no
  limit) or a number of seconds >= 0 (not a bool; ``inf`` waits as ``None``): NaN waited
  forever.
- A number of seconds the engine waits (``Engine(lock_timeout=...)``) is a number >= 0
  (not a bool; ``inf`` waits without limit): NaN made the wait for a held file endless.
- A workflow's arguments bind to its function's signature (`call_arguments`): a start
  with too many, too few or unknown arguments is a `TypeError` naming the workflow, where
  it used to be acknowledged and then fail as data. A function without a signature
  (a builtin) is not checked.
- Every check runs before anything is submitted: a refusal writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

from flowgen._core.decisions import signature_of
from flowgen._stores.codec import check_text, encode
from flowgen._vocabulary.events import JsonValue
from flowgen._vocabulary.status import STORED_STATUSES

__all__ = [
    "RunFilter",
    "call_arguments",
    "id_argument",
    "run_filter",
    "run_id_argument",
    "seconds_argument",
    "text_argument",
    "timeout_argument",
    "workflow_id_argument",
]

_MAX_LIMIT: Final = 2**63 - 1


def text_argument(value: object, what: str) -> str:
    """*value*, checked as stored text (see the rules); a plain `str`.

    Raises:
        TypeError: *value* is no `str`, or holds a surrogate code point; the message
            names *what*.
    """
    if not isinstance(value, str):
        raise TypeError(
            f"{what} must be a str, got {type(value).__name__}: {value!r:.60}"
        )
    return check_text(value, what)


def workflow_id_argument(value: object) -> str:
    """*value*, checked as a workflow id: what every method taking an id checks first.

    Raises:
        TypeError: It is not a `str`, or holds a surrogate code point (as
            ``os.fsdecode`` of a non-UTF-8 name gives), which no store can hold.
        ValueError: It is empty.
    """
    return id_argument(value, "workflow id")


def id_argument(value: object, kind: str) -> str:
    """*value*, checked as an id of *kind* (``"schedule id"``): a non-empty storable `str`.

    Raises:
        TypeError: It is not a `str`, or holds a surrogate code point.
        ValueError: It is empty.
    """
    if not isinstance(value, str):
        raise TypeError(
            f"a {kind} must be a str, got {type(value).__name__}: {value!r}"
        )
    if not value:
        raise ValueError(f"a {kind} must not be empty")
    return check_text(value, f"the {kind}")


def timeout_argument(value: object) -> float | None:
    """*value*, checked as a caller's timeout in seconds (see the rules).

    Raises:
        ValueError: It is neither ``None`` nor a number of seconds >= 0 (NaN included).
    """
    if value is not None and not _is_seconds(value):
        raise ValueError(f"timeout must be seconds >= 0 or None, got {value!r:.60}")
    return value  # type: ignore[return-value]  # None or checked seconds


def seconds_argument(value: object, what: str) -> float:
    """*value*, checked as a number of seconds to wait (see the rules).

    Raises:
        ValueError: It is not a number >= 0 (NaN and bools included); the message names
            *what*.
    """
    if not _is_seconds(value):
        raise ValueError(f"{what} must be seconds >= 0, got {value!r:.60}")
    return value  # type: ignore[return-value]  # checked seconds


def _is_seconds(value: object) -> bool:
    # An int or float (not a bool) >= 0: `not value >= 0` is true for NaN too.
    return (
        not isinstance(value, bool) and isinstance(value, (int, float)) and value >= 0
    )


def run_id_argument(value: object) -> str | None:
    """*value*, checked as an optional run id (``None``: the latest run).

    Raises:
        TypeError: It is neither ``None`` nor stored text (see the rules).
    """
    return None if value is None else text_argument(value, "the run id")


RunFilter = tuple[str | None, str | None, dict[str, JsonValue] | None, int | None]
"""`Engine.list_runs`'s filters, checked: status, name, encoded tags, limit."""


def run_filter(status: object, name: object, tags: object, limit: object) -> RunFilter:
    """`Engine.list_runs`'s filters, checked (see the rules), the tags encoded.

    Raises:
        ValueError: *status* is no run status, or *limit* is out of range.
        TypeError: *name*, *tags* or *limit* is of the wrong type, or the text of a name
            no store can hold; the message names it.
    """
    if status is not None and status not in STORED_STATUSES:
        raise ValueError(
            f"status {status!r} is not a run status; use one of "
            f"{', '.join(STORED_STATUSES)}"
        )
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int or None, got {limit!r}")
        if limit < 1:
            raise ValueError(f"limit must be >= 1 (or None for all), got {limit}")
        if limit > _MAX_LIMIT:
            raise ValueError(
                f"limit must be at most 2**63 - 1 (or None for all), got {limit}"
            )
    if tags is not None and not isinstance(tags, dict):
        raise TypeError(f"tags must be a dict of tag values by name, got {tags!r:.60}")
    encoded = {
        text_argument(k, "a tag name"): encode(v, f"tag {k!r}")
        for k, v in (tags or {}).items()
    }
    return (
        status,  # type: ignore[return-value]  # one of STORED_STATUSES, as given
        None if name is None else text_argument(name, "the workflow name"),
        encoded or None,
        limit,
    )


def call_arguments(
    fn: Callable[..., object],
    args: Sequence[object],
    kwargs: Mapping[str, object],
    what: str,
) -> None:
    """Refuse *args* and *kwargs* unless *fn* could be called with them (see the rules).

    Raises:
        TypeError: They do not bind to *fn*'s signature; the message names *what*
            (``"workflow 'checkout'"``) and why.
    """
    signature = signature_of(fn)
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{what} cannot take these arguments: {exc}") from None
