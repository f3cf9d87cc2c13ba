"""The public API's plain arguments, checked where they enter: one copy of each rule.

Rules:

- Text the engine stores or looks up (a workflow id, a signal name, a cancel reason, a tag
  name, a schedule's note) is a `str`. A `str` subclass is taken as the plain `str` it
  holds; text no store can hold is refused (`flowgen._stores.codec.check_text`). Anything
  else is a `TypeError` naming the argument: an ``int`` used to be stored as given, and
  ``bytes`` to fail the whole commit it was part of.
- A workflow id is such text, and not empty.
- Every check runs before anything is submitted: a refusal writes nothing.
"""

from __future__ import annotations

from flowgen._stores.codec import check_text

__all__ = ["text_argument", "workflow_id_argument"]


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
    if not isinstance(value, str):
        raise TypeError(
            f"a workflow id must be a str, got {type(value).__name__}: {value!r}"
        )
    if not value:
        raise ValueError("a workflow id must not be empty")
    return check_text(value, "the workflow id")
