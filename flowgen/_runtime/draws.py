"""Deterministic randomness for workflow code: `uuid4` and `random`, recorded like side effects.

Rules:

* A workflow may not call ``uuid.uuid4()`` or ``random.random()`` itself: a replay would draw
  another value and decide differently. These helpers return a `RecordSideEffect` whose
  function lives here, in the runtime (the pure core never imports ``uuid`` or ``random``):
  the engine or the Stepper calls it once, records the value in a ``side_effect_recorded``
  event, and every replay gets the recorded value back.
* The value reaches the workflow through the codec (encode, then decode to the helper's
  result type), on the first run and on replay alike: a `uuid.UUID` is recorded as its
  string and comes back a `uuid.UUID`; a float stays a float.
* The side effects' names (``flowgen.uuid4``, ``flowgen.random``) are recorded in histories:
  they never change.
"""

from __future__ import annotations

import random as _random
import uuid as _uuid

from flowgen._vocabulary.commands import RecordSideEffect

__all__ = ["random", "uuid4"]

# One generator seeded from the OS, not the `random` module's shared one, so that a workflow
# process seeding `random` for its own reasons does not make every run draw the same values.
_SOURCE = _random.Random()


def uuid4() -> RecordSideEffect[_uuid.UUID]:
    """A random UUID, drawn once and replayed from the history forever after.

    ``order_key = yield from fg.uuid4()`` gives a `uuid.UUID` (version 4).

    Returns:
        The command; yield it.
    """
    return RecordSideEffect(
        name="flowgen.uuid4", fn=_uuid.uuid4, result_type=_uuid.UUID
    )


def random() -> RecordSideEffect[float]:
    """A random float in ``[0.0, 1.0)``, drawn once and replayed from the history forever after.

    ``draw = yield from fg.random()``; for anything else (a choice, a shuffle) derive it from
    the draw, or use `side_effect` with your own function.

    Returns:
        The command; yield it.
    """
    return RecordSideEffect(name="flowgen.random", fn=_SOURCE.random, result_type=float)
