"""SQL on a PostgreSQL store: DuckDB over its analytics copy, refreshed before each answer.

`AnalyticsReads` gives `flowgen._stores.postgres_store.PostgresStore` what a DuckDB store
answers with SQL (``sql``, ``cursor``, ``export_parquet``, ``flush``): each call first
brings the store's in-memory analytics copy up to date with what PostgreSQL has committed
(`flowgen._stores.duckdb_mirror.AnalyticsCopy.refresh`), then answers from it, so a query
sees every commit that returned before it was asked, like on an embedded file (a commit
whose transaction is older than one still running anywhere on the server is seen once that
one ends: see the copy's rules). The copy is made at the first SQL call (one full copy of
the tables, then only what changed) and closed with the store.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import duckdb

from flowgen._stores.duckdb_mirror import AnalyticsCopy, Progress
from flowgen._stores.duckdb_result import SQLResult

__all__ = ["AnalyticsReads"]


class AnalyticsReads:
    """SQL over an analytics copy, for a store with ``url`` and ``where`` (a mixin)."""

    url: str
    where: str
    _analytics: AnalyticsCopy | None = None
    _analytics_lock = threading.Lock()

    def _check_open(self) -> None:  # pragma: no cover - the store's own
        raise NotImplementedError

    def _read(
        self, query: str, params: Sequence[object] = ()
    ) -> list[tuple[Any, ...]]:  # pragma: no cover - the store's own
        raise NotImplementedError

    def run_ids(self, workflow_id: str) -> list[str]:
        """The run ids of *workflow_id*, oldest first (a continue-as-new chain).

        Read from PostgreSQL itself: what ``flowgen show`` needs, without a copy.
        """
        return [
            str(run_id)
            for (run_id,) in self._read(
                "SELECT run_id FROM workflows WHERE workflow_id = %s "
                "ORDER BY started_at, row_order",
                [workflow_id],
            )
        ]

    def analytics(self) -> AnalyticsCopy:
        """The store's analytics copy (an in-memory DuckDB), brought up to date.

        Raises:
            StoreError: PostgreSQL cannot be read, or ADBC's PostgreSQL driver is missing.
        """
        self._check_open()
        with self._analytics_lock:
            if self._analytics is None:
                self._analytics = AnalyticsCopy(self.url, self.where)
        self._analytics.refresh()
        return self._analytics

    def sql(self, query: str, params: object = None) -> SQLResult:
        """Run *query* with DuckDB over the analytics copy (refreshed first).

        The tables and views are those of a DuckDB store (``docs/sql.md``), so every
        query that runs on an embedded file runs here. The result is a DuckDB relation
        (``.df()``, ``.fetchall()``, ...), consumed on the calling thread.
        """
        return self.analytics().sql(query, params)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB cursor on the analytics copy as of now (`flush` to see later commits)."""
        return self.analytics().cursor()

    def flush(self) -> None:
        """Bring the analytics copy up to date, if one was made (for cursors kept).

        The engine's loop calls it when idle after commits (the `Flushes` protocol), so a
        copy in use stays close behind; without a copy it does nothing.
        """
        if self._analytics is not None:
            self.analytics()

    def export_parquet(
        self, directory: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> list[str]:
        """Every table and view as ``<directory>/<name>.parquet``, from the copy."""
        return self.analytics().export_parquet(directory, progress=progress)

    def _close_analytics(self) -> None:
        copy: Any = self._analytics
        self._analytics = None
        if copy is not None:
            copy.close()
