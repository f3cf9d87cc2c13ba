"""The run table: what the decision loop knows about runs, and how it undoes a batch.

Rules:

- The table belongs to the decision loop. It is read and written only while the loop's
  lock is held (`DecisionLoop.lock`): by the loop itself, and by callers that look at a
  run's state (`Engine._status`, `WorkflowHandle.result`) between two batches.
- It holds every running run (``runs``), the latest run of each workflow id it has seen
  (``current``), which parent waits on each running child (``child links``), and what
  each linked child gets when its parent's run closes (``parent_close``, from the child's
  `StartChild`; rebuilt by replay after a restart, so never stored).
- A batch changes the table as it goes. If its commit fails, `RunTable.undo` puts every run
  it touched back as it was (from the batch's snapshots) and unlinks or relinks children,
  so the table again says exactly what the store says.
- How a run ended is kept in two steps: *closing* (decided in the batch being built, not
  committed yet) and, once committed, among the *recent* outcomes (the last
  `RECENT_OUTCOMES` by workflow id), from which `WorkflowHandle.result` answers without a
  read. A closed run leaves ``runs`` once its batch is committed (`RunTable.settle`).
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

from flowgen._runtime.items import Key, Run
from flowgen._vocabulary.commands import ParentClose
from flowgen._vocabulary.errors import ErrorInfo
from flowgen._vocabulary.events import JsonValue
from flowgen._vocabulary.status import RunStatus

__all__ = ["RECENT_OUTCOMES", "ChildLink", "Outcome", "RunTable", "RunView"]

RECENT_OUTCOMES = 1024
"""How many closed runs' outcomes the engine keeps for `WorkflowHandle.result`."""

ChildLink = tuple[Key, int]
"""The parent run and the seq of its `StartChild` command."""


@attrs.frozen
class Outcome:
    """How a run ended: what `WorkflowHandle.result` returns or raises."""

    run_id: str
    name: str
    status: RunStatus
    result: JsonValue
    error: ErrorInfo | None


@attrs.frozen
class RunView:
    """A caller's look at a workflow id's run in the table, taken under the loop's lock.

    Attributes:
        run_id: The id of the latest run the loop has seen, or ``None``.
        owed: The loop still owes an outcome: the run is running (and not stuck), or it
            closed in a batch that is not committed yet.
        stuck: Why the run cannot move in this process, if it is stuck.
        outcome: How the run ended, if its batch was committed recently.
    """

    run_id: str | None
    owed: bool
    stuck: BaseException | None
    outcome: Outcome | None


class RunTable:
    """Running runs, the latest run per workflow id, child links and recent outcomes."""

    def __init__(self) -> None:
        self.runs: dict[Key, Run] = {}
        self.current: dict[str, str] = {}  # workflow id -> run id of its latest run
        self.child_links: dict[str, ChildLink] = {}
        self.parent_close: dict[str, ParentClose] = {}  # child id -> its parent_close
        # Child links changed in the batch being built, with their previous values: an
        # undone batch puts them back.
        self._link_log: list[tuple[str, ChildLink | None]] = []
        self._closing: dict[Key, Outcome] = {}
        self._recent: OrderedDict[str, Outcome] = OrderedDict()

    # -- reading ------------------------------------------------------------------------------

    def current_run(self, workflow_id: str) -> Run | None:
        """The latest run of *workflow_id* the table holds (running, or closed this batch)."""
        run_id = self.current.get(workflow_id)
        return self.runs.get((workflow_id, run_id)) if run_id else None

    def running(self, workflow_id: str, run_id: str | None = None) -> Run | None:
        """The run (the current one if *run_id* is ``None``) if it is running, else ``None``."""
        key = (workflow_id, run_id or self.current.get(workflow_id, ""))
        run = self.runs.get(key)
        return run if run is not None and run.is_running else None

    def key_of(self, workflow_id: str, run_id: str | None = None) -> Key:
        """The key of *run_id*, or of the current run of *workflow_id*."""
        return (workflow_id, run_id or self.current.get(workflow_id, ""))

    def view(self, workflow_id: str) -> RunView:
        """What a caller waiting for *workflow_id*'s result may know now (see `RunView`)."""
        run_id = self.current.get(workflow_id)
        run = self.runs.get((workflow_id, run_id)) if run_id else None
        owed = (
            run is not None
            and run.stuck is None
            and (run.is_running or run.key in self._closing)
        )
        recent = self._recent.get(workflow_id)
        outcome = recent if recent is not None and recent.run_id == run_id else None
        return RunView(run_id, owed, None if run is None else run.stuck, outcome)

    def held(self, key: Key) -> tuple[bool, BaseException | None] | None:
        """``(running, stuck)`` of a run the table holds, or ``None``."""
        run = self.runs.get(key)
        return None if run is None else (run.is_running, run.stuck)

    # -- changing -----------------------------------------------------------------------------

    def add(self, run: Run) -> None:
        """Hold *run* as the latest run of its workflow id."""
        self.runs[run.key] = run
        self.current[run.workflow_id] = run.run_id

    def add_recovered(self, run: Run) -> None:
        """Hold a recovered *run*; it is the current one unless another is running."""
        self.runs[run.key] = run
        if self.running(run.workflow_id) is None:
            self.current[run.workflow_id] = run.run_id

    def closing(self, run: Run, outcome: Outcome) -> None:
        """*run* ended in the batch being built (its outcome is published on `settle`)."""
        run.status = outcome.status
        self._closing[run.key] = outcome

    def set_link(self, child_id: str, link: ChildLink | None) -> ChildLink | None:
        """Link *child_id* to its parent's (run, seq), or unlink it; returns the old link."""
        previous = self.child_links.get(child_id)
        self._link_log.append((child_id, previous))
        if link is None:
            self.child_links.pop(child_id, None)
        else:
            self.child_links[child_id] = link
        return previous

    def take_link(self, child_id: str) -> ChildLink | None:
        """Unlink *child_id* from its parent; returns the link it had."""
        return self.set_link(child_id, None)

    def release_children(self, parent: Key) -> list[tuple[str, ParentClose]]:
        """Unlink every child of the run *parent* (it closes); each with its parent_close."""
        children = [
            child for child, (key, _) in self.child_links.items() if key == parent
        ]
        for child in children:
            self.take_link(child)
        return [
            (child, self.parent_close.get(child, "terminate")) for child in children
        ]

    def children_of(self, link: ChildLink) -> list[str]:
        """The child ids linked to a parent's (run, seq)."""
        return [child for child, to in self.child_links.items() if to == link]

    # -- batches ------------------------------------------------------------------------------

    def begin(self) -> None:
        """A batch starts: nothing of it is to undo yet."""
        self._link_log.clear()

    def undo(self, snapshots: dict[Key, Run | None]) -> list[Key]:
        """Put back what a batch changed (its commit failed); returns the runs it touched."""
        self._closing.clear()
        # A child whose end is undone is running again: its parent must still hear of it.
        for child_id, link in reversed(self._link_log):
            if link is None:
                self.child_links.pop(child_id, None)
            else:
                self.child_links[child_id] = link
        self._link_log.clear()
        for key, snapshot in snapshots.items():
            if snapshot is None:
                self.runs.pop(key, None)
                if self.current.get(key[0]) == key[1]:
                    del self.current[key[0]]
            else:
                self.runs[key] = snapshot
                self.current[key[0]] = (
                    key[1] if snapshot.is_running else self.current.get(key[0], key[1])
                )
        return list(snapshots)

    def settle(self) -> list[Key]:
        """The batch is committed: publish how its runs ended; returns the closed runs."""
        closed = list(self._closing)
        for key, outcome in self._closing.items():
            run = self.runs.get(key)
            if run is not None and not run.is_running:
                del self.runs[key]
            self._recent[key[0]] = outcome
            self._recent.move_to_end(key[0])
            if len(self._recent) > RECENT_OUTCOMES:
                self._recent.popitem(last=False)
        self._closing.clear()
        # A child's parent_close matters while it is linked: forget those unlinked here.
        for child_id, _ in self._link_log:
            if child_id not in self.child_links:
                self.parent_close.pop(child_id, None)
        return closed
