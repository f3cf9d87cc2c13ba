"""What ``engine.sql()`` returns: a DuckDB relation that also fetches row by row.

DuckDB 2.0 took ``fetchone()`` and ``fetchmany()`` off relations: a relation keeps no
result, so each call would run the query again. Users of ``engine.sql()`` reach for them
first (they are DB-API), so `SQLResult` keeps one: the query runs once, at the first
``fetchone``/``fetchmany``, and successive calls walk its rows, as on a DB-API cursor.
Everything else (``.df()``, ``.fetchall()``, ``.show()``, ``.arrow()``, ``.columns``,
chaining such as ``.filter(...)``, the display in Jupyter) is the relation's own, by
delegation, and runs the query as the relation does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb

__all__ = ["SQLResult"]


class SQLResult:
    """A `duckdb.DuckDBPyRelation` with DB-API ``fetchone`` and ``fetchmany``.

    Attributes:
        relation: The DuckDB relation itself.
    """

    __slots__ = ("_rows", "relation")

    def __init__(self, relation: duckdb.DuckDBPyRelation) -> None:
        self.relation = relation
        self._rows: Iterator[tuple[Any, ...]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.relation, name)

    def __repr__(self) -> str:
        return repr(self.relation)

    def __str__(self) -> str:
        return str(self.relation)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.relation.fetchall())

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row of this result, or ``None`` after the last (the query runs once)."""
        if self._rows is None:
            self._rows = iter(self.relation.fetchall())
        return next(self._rows, None)

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        """The next *size* rows of this result (fewer at its end; the query runs once)."""
        rows = []
        for _ in range(size):
            row = self.fetchone()
            if row is None:
                break
            rows.append(row)
        return rows
