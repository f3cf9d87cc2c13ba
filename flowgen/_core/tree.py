"""The tree of what a workflow awaits: ``gather`` and ``race`` over leaf commands.

The interpreter owns one tree per generator that waits (the main code, each update
handler); this module owns its shape and how an outcome travels up it. It decides nothing
and records nothing: matching a leaf against the history and recording a cancellation are
the interpreter's.

Rules
=====

* **A plain yield of a leaf is a tree of one.** ``gather``/``race`` take no seq themselves;
  `build` numbers their leaves depth-first, in argument order (``gather(a, race(b, c), d)``
  numbers a, b, c, d), handing each leaf to the caller as it is reached, so a leaf that is
  refused (an argument that cannot be serialized, a divergence) stops the walk at the same
  point on every run.
* **An empty gather.** ``gather()`` of nothing is done at once (its result is ``()``);
  nested in another ``gather``/``race`` it is a `TypeError`.
* **Outcomes climb** (`climb`): a race ends with the first outcome of any child (a success
  as ``(index, value)``) and cancels the other children; a gather collects every success,
  in argument order, as a tuple, and its first failure cancels the rest and propagates.
* **Cancellation order.** `leaves_under` lists a group's leaves last child first, depth
  first: the order their ``command_cancelled`` events are recorded in (the golden
  histories hold it). The caller skips the leaves already resolved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final

from flowgen._vocabulary.commands import (
    CallActivity,
    Command,
    Gather,
    Race,
    RecordSideEffect,
    SendSignal,
    StartChild,
    StartTimer,
    WaitSignal,
)

__all__ = [
    "AWAITABLE",
    "Group",
    "Leaf",
    "Node",
    "build",
    "climb",
    "is_done_at_once",
    "leaves_under",
]

AWAITABLE: Final = (
    Gather,
    Race,
    CallActivity,
    StartTimer,
    WaitSignal,
    RecordSideEffect,
    StartChild,
    SendSignal,
)
"""The commands a workflow waits on (a leaf takes a seq; a group numbers its leaves)."""


class Node:
    """A place in the tree: its group (``None`` at the root) and its index there."""

    __slots__ = ("index", "parent")

    def __init__(self, parent: Group | None, index: int) -> None:
        self.parent = parent
        self.index = index


class Leaf(Node):
    """One awaited command and its seq."""

    __slots__ = ("command", "seq")

    def __init__(
        self, parent: Group | None, index: int, seq: int, command: Command
    ) -> None:
        self.parent = parent  # Node.__init__, inlined: one leaf per step
        self.index = index
        self.seq = seq
        self.command = command


class Group(Node):
    """A ``gather`` or ``race``: its children and, for a gather, the results so far."""

    __slots__ = ("children", "is_race", "remaining", "results")

    def __init__(self, parent: Group | None, index: int, is_race: bool) -> None:
        super().__init__(parent, index)
        self.is_race = is_race
        self.children: list[Node] = []
        self.results: list[object] = []
        self.remaining = 0


TakeLeaf = Callable[[Group | None, int, Command], Leaf]
"""Number one leaf command at ``(parent, index)``: the caller's matching and deciding."""


def build(
    command: Command, parent: Group | None, index: int, take_leaf: TakeLeaf
) -> Node:
    """The tree of *command*, its leaves numbered by *take_leaf* depth-first.

    Raises:
        TypeError: An empty ``gather()`` nested in a group (or whatever *take_leaf* raises).
    """
    if isinstance(command, (Gather, Race)):
        group = Group(parent, index, isinstance(command, Race))
        for i, child in enumerate(command.commands):
            group.children.append(build(child, group, i, take_leaf))
        group.results = [None] * len(group.children)
        group.remaining = len(group.children)
        if not group.children and parent is not None:
            raise TypeError("an empty gather() cannot be nested in gather()/race()")
        return group
    return take_leaf(parent, index, command)


def is_done_at_once(root: Node) -> bool:
    """True for ``gather()`` of nothing: its result ``()`` is there at once."""
    return isinstance(root, Group) and not root.children


def climb(
    leaf: Leaf, ok: bool, value: object, cancel: Callable[[Group, str], None]
) -> tuple[Node, bool, object] | None:
    """Carry *leaf*'s outcome up; the root and the outcome it ends with, if it ends.

    *cancel* is called with each group whose other children the outcome cancels, and the
    reason (``"race"`` or ``"gather"``). ``None`` when a gather still waits for others.
    """
    node: Node = leaf
    while True:
        parent = node.parent
        if parent is None:
            return node, ok, value
        if parent.is_race:
            cancel(parent, "race")
            if ok:
                value = (node.index, value)
        elif ok:
            parent.results[node.index] = value
            parent.remaining -= 1
            if parent.remaining:
                return None
            value = tuple(parent.results)
        else:
            cancel(parent, "gather")
        node = parent


def leaves_under(group: Group) -> Iterator[Leaf]:
    """The leaves below *group*, in the order their cancellations are recorded."""
    stack: list[Node] = list(group.children)
    while stack:
        node = stack.pop()
        if isinstance(node, Group):
            stack.extend(node.children)
        else:
            assert isinstance(node, Leaf)
            yield node
