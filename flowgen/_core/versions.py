"""Versions and tags: what a run decides from its own state, keyed by name, not by seq.

The interpreter owns one `VersionBook` per run and asks it what `get_version`, `patched`
and `set_tags` answer and whether that answer is a new decision to record. Nothing here
reads a clock: the time and whether the recorded run went past this point are parameters.

Rules
=====

* **A version is keyed by change id.** If the history has a ``version_marked`` event for
  the id, that version is the answer (the interpreter checks it lies in the code's
  ``[min, max]``). If not, the answer depends on whether the run already went past this
  point when it was recorded: if the history holds a command at this seq or later, or the
  run's end, the run was recorded by code without the change and gets `DEFAULT_VERSION`
  (nothing recorded); otherwise the run is new here, gets *max*, and a ``version_marked``
  event is recorded. A version decided once is the answer for the rest of the run.
* **`patched(change_id)`** is `get_version` with the versions `DEFAULT_VERSION` (old code)
  and 1: true when the run takes the new path.
* **Tags are matched by order**, like seqs but without one: ``set_tags`` calls take the
  history's ``tags_set`` events in order, so an old history that lacks a call shifts
  nothing; once those are used up, the same past-this-point test keeps a replay from
  recording its tags twice.
"""

from __future__ import annotations

from datetime import datetime

from flowgen._core.history import RecordedHistory
from flowgen._vocabulary.commands import DEFAULT_VERSION
from flowgen._vocabulary.events import JsonValue, TagsSet, VersionMarked

__all__ = ["VersionBook"]


class VersionBook:
    """The versions and tags of one run: recorded ones, and the ones decided here.

    Args:
        recorded: What the history says (`RecordedHistory`).
        tags: The run's tags, updated in place by `set_tags`.
    """

    def __init__(self, recorded: RecordedHistory, tags: dict[str, JsonValue]) -> None:
        self.recorded = recorded
        self.tags = tags
        self.decided: dict[str, int] = {}
        self.tags_to_match = recorded.tags_set

    def known(self, change_id: str) -> int | None:
        """The version recorded or decided for *change_id*, if any."""
        found = self.recorded.versions.get(change_id)
        return found if found is not None else self.decided.get(change_id)

    def version(
        self, change_id: str, new: int, past: bool, now: datetime
    ) -> tuple[int, VersionMarked | None]:
        """The version of *change_id* (*new* for a new run) and the decision to record."""
        found = self.known(change_id)
        if found is not None:
            return found, None
        if past:
            return DEFAULT_VERSION, None
        self.decided[change_id] = new
        return new, VersionMarked(at=now, change_id=change_id, version=new)

    def patched(
        self, change_id: str, past: bool, now: datetime
    ) -> tuple[bool, VersionMarked | None]:
        """`fg.patched`: whether the run takes the new path, and the decision to record."""
        number, marked = self.version(change_id, 1, past, now)
        return number != DEFAULT_VERSION, marked

    def set_tags(
        self, encoded: dict[str, JsonValue], past: bool, now: datetime
    ) -> TagsSet | None:
        """Merge *encoded* tags in; the ``tags_set`` event to record, if new."""
        self.tags.update(encoded)
        if self.tags_to_match:
            self.tags_to_match -= 1
            return None
        return None if past else TagsSet(at=now, tags=encoded)
