"""Temporal workflow definitions replayed by ``temporal_replay.py``.

Temporal's workflow sandbox re-imports the module that defines a workflow and refuses
workflows defined in ``__main__``, so the definition lives in its own importable module.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

#: Activity type name recorded in the hand-built history.
ACTIVITY_NAME = "noop"

#: Workflow type name recorded in the hand-built history.
WORKFLOW_NAME = "SequentialActivities"


@workflow.defn(name=WORKFLOW_NAME)
class SequentialActivities:
    """Runs ``steps`` trivial activities one after another and sums their results."""

    @workflow.run
    async def run(self, steps: int) -> int:
        """Execute the activities in sequence.

        Activity ``i`` (0-based) is called with ``i`` and must have returned ``i + 1``;
        any other recorded value fails the workflow task, so a replay that feeds the
        wrong outcome to the wrong call does not pass silently.

        Args:
            steps: How many activities to run.

        Returns:
            The sum of all activity results, ``steps * (steps + 1) // 2``.

        Raises:
            RuntimeError: An activity result differs from the expected ``i + 1``.
        """
        total = 0
        for i in range(steps):
            value = await workflow.execute_activity(
                ACTIVITY_NAME,
                i,
                result_type=int,
                start_to_close_timeout=timedelta(seconds=10),
            )
            if value != i + 1:
                raise RuntimeError(f"activity {i} returned {value!r}, expected {i + 1}")
            total += value
        return total
