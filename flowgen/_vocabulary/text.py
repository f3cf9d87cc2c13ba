r"""Text no store can hold: the one rule, for the commands that carry names and the codec.

A lone surrogate code point (``"\udc80"``, what ``os.fsdecode`` gives for a file name that
is not UTF-8) is not Unicode: UTF-8 cannot encode it, so neither DuckDB nor PostgreSQL can
store it. JSON would escape it, which is how such text used to be acknowledged and then
refused by the database on every read. Text is checked where it enters: a caller's
argument (`flowgen._stores.codec`), or a name the workflow's own code puts in a command
(`flowgen._vocabulary.commands`), which then fails that run as data.

Pure: no IO, nothing but `str`.
"""

from __future__ import annotations

__all__ = ["surrogate_at", "unstorable_why"]


def surrogate_at(text: str) -> int | None:
    """Where *text* holds a surrogate code point (not storable as UTF-8), or None."""
    if text.isascii():  # the hot path: one C-level scan
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def unstorable_why(text: str, index: int) -> str:
    """Why *text*, with a surrogate at *index*, cannot be stored, and what to do instead."""
    return (
        f"the text {text[:40]!r} has a lone surrogate {text[index]!r} at index {index}, "
        f"which is not Unicode and cannot be stored (os.fsdecode gives these for file "
        f"names that are not UTF-8: decode such names with errors='replace', or pass "
        f"them as bytes.hex())"
    )
