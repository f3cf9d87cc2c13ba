"""The quarantine: acknowledged journal records the database refused, kept for the operator.

Rules
=====

A journal record was acknowledged to a caller (its commit returned), so it is never thrown
away; but a record the database refuses for what it holds (a value DuckDB cannot store, a
key it already has) would be refused on every try, and left in the journal it would block
every later read and every open. Such a record is moved here, and the store keeps working
without it.

* The quarantine of the database ``orders.duckdb`` is the directory
  ``orders.duckdb.quarantine/`` beside it. Each refused record is one file,
  ``record-<number>.json``: ``{"record": <its journal number>, "quarantined_at": <ISO time>,
  "reason": <the database's refusal>, "body": <the record's rows, as journaled>}``. The file
  is fsync'd before the record is marked applied, so a crash between the two leaves it both
  quarantined and in the journal (and a second quarantine of it rewrites the same file).
* A throwaway store (``":memory:"``) has no directory: its refused records are kept in memory
  (`DuckDBStore.quarantined`) and logged.
* A run whose stored history cannot be read (an event kind this flowgen does not know, a
  damaged row) is quarantined where it is: `corrupt_runs` gives it the status ``corrupt``,
  with the reason in ``error`` (visible in ``flowgen ls`` and in SQL), and nothing resumes
  it again. Its rows are left as they are.
* Nothing here reads the records back: an operator inspects them, repairs what they hold by
  hand if it matters, and deletes the files.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from flowgen._stores.protocol import Batch, RunUpdate
from flowgen._vocabulary.errors import ErrorInfo

__all__ = [
    "CORRUPT",
    "corrupt_runs",
    "quarantine_dir",
    "quarantine_or_raise",
    "quarantine_running",
    "write_quarantined",
]

CORRUPT = "corrupt"
"""The status of a run whose stored history cannot be read."""


def corrupt_runs(
    runs: Iterable[tuple[str, str]],
    reasons: Mapping[tuple[str, str], str],
    now: datetime,
) -> Batch:
    """The batch that quarantines *runs* (``(workflow_id, run_id)``): status ``corrupt``."""
    return Batch(
        updates=[
            RunUpdate(
                workflow_id,
                run_id,
                status=CORRUPT,
                error=ErrorInfo("HistoryCorruptError", reasons[workflow_id, run_id]),
                closed_at=now,
            )
            for workflow_id, run_id in sorted(runs)
        ]
    )


def quarantine_dir(database: str) -> str:
    """The quarantine directory of the database file *database*."""
    return database + ".quarantine"


def write_quarantined(directory: str, number: int, body: bytes, reason: str) -> str:
    """Keep the refused record *number* in *directory*; returns the file written (synced).

    Raises:
        OSError: The file could not be written.
    """
    os.makedirs(directory, exist_ok=True)
    try:
        rows: object = json.loads(body)
    except ValueError:
        rows = body.decode("utf-8", "backslashreplace")
    content = json.dumps(
        {
            "record": number,
            "quarantined_at": datetime.now(UTC).isoformat(),
            "reason": reason,
            "body": rows,
        },
        indent=1,
    ).encode()
    path = os.path.join(directory, f"record-{number}.json")
    with open(path, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    if hasattr(os, "O_DIRECTORY"):  # the new name is durable too (POSIX)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def quarantine_running(
    reasons: Mapping[tuple[str, str], str],
    running_of: Callable[[list[str]], Iterable[tuple[str, str]]],
    commit: Callable[[Batch], None],
) -> set[tuple[str, str]]:
    """Mark ``corrupt`` those of the runs whose history cannot be read that are running.

    One rule for every store: nothing resumes a marked run again, the reason is in its
    ``error``, its events stay as they are for the operator to inspect.

    Args:
        reasons: Why each run's history cannot be read, by ``(workflow_id, run_id)``.
        running_of: The store's read of which of these run ids are running, as
            ``(workflow_id, run_id)`` pairs.
        commit: The store's commit.

    Returns:
        The runs marked.
    """
    running = {
        key for key in running_of([run_id for _, run_id in reasons]) if key in reasons
    }
    if running:
        commit(corrupt_runs(running, reasons, datetime.now(UTC)))
        for workflow_id, run_id in sorted(running):
            logging.getLogger("flowgen").error(
                "flowgen: run %s of %r quarantined (corrupt): %s",
                run_id,
                workflow_id,
                reasons[workflow_id, run_id],
            )
    return running


def quarantine_or_raise(
    bad: Mapping[tuple[str, str], Exception],
    quarantine: Callable[[dict[tuple[str, str], str]], set[tuple[str, str]]],
) -> None:
    """Quarantine the running runs among *bad*; raise the error of any other one.

    A running run's unreadable history must not stop recovery from serving every other
    run; a closed one's is the caller's to hear about.
    """
    if not bad:
        return
    quarantined = quarantine({key: str(error) for key, error in bad.items()})
    for key, error in bad.items():
        if key not in quarantined:
            raise error
