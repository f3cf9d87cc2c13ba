"""Read-only SQL: the one rule for what ``flowgen sql`` runs, wherever it runs.

Rules
=====

* Only queries run: ``SELECT``, ``EXPLAIN``, ``PRAGMA`` and ``CALL``. Anything else is
  refused before any statement runs: statements that change the tables (INSERT, UPDATE,
  DELETE, CREATE, DROP, BEGIN, ...), which belong to the engine; COPY and EXPORT, which
  write files outside any transaction; SET, LOAD and INSTALL, which change what the
  statements after them do.
* The query runs in a transaction that is rolled back, so a CALL cannot change the
  database either.
* A query that holds no statement (an empty one), or text DuckDB cannot encode (a lone
  surrogate), is a `QueryError` naming it, like any query DuckDB refuses.
* The command line applies it on a file it opened itself, and a running engine applies it
  to the queries the command line sends it (`flowgen._runtime.control`): one copy.
"""

from __future__ import annotations

from typing import Any, Final

import duckdb

from flowgen._vocabulary.errors import UsageError
from flowgen._vocabulary.text import surrogate_at, unstorable_why

__all__ = ["READ_STATEMENTS", "QueryError", "RefusedStatement", "read_query"]

READ_STATEMENTS: Final = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL"})
"""The statement kinds a read-only query may hold."""


class RefusedStatement(UsageError):
    """The query holds a statement that is not a read (see `READ_STATEMENTS`)."""


class QueryError(UsageError):
    """DuckDB refused the query (its message follows ``SQL error:``)."""


def read_query(
    cursor: duckdb.DuckDBPyConnection, query: str
) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    """Run *query* read-only on *cursor*: (column names, type names, rows).

    Raises:
        RefusedStatement: A statement of *query* is not a read; nothing ran.
        QueryError: DuckDB refused the query.
    """
    try:
        return _read_query(cursor, query)
    except Exception as exc:
        # Not only duckdb.Error: DuckDB raises some of its errors as other classes of its
        # own modules.
        if type(exc).__module__.split(".")[0] in ("duckdb", "_duckdb"):
            raise QueryError(f"SQL error: {exc}") from None
        raise


def _read_query(
    cursor: duckdb.DuckDBPyConnection, query: str
) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    if not isinstance(query, str):  # a request on the socket is JSON: any value
        raise QueryError(f"SQL error: a query is text, got {type(query).__name__}")
    bad = surrogate_at(query)
    if bad is not None:  # DuckDB's parser takes UTF-8 only, and says so in a TypeError
        raise QueryError(f"SQL error: {unstorable_why(query, bad)}")
    statements = cursor.extract_statements(query)
    if not statements:  # DuckDB would answer None: no columns, no rows, no message
        raise QueryError(f"SQL error: the query holds no statement, got {query[:40]!r}")
    kinds = [str(s.type).rpartition(".")[2] for s in statements]
    refused = [k for k in kinds if k not in READ_STATEMENTS]
    if refused:
        raise RefusedStatement(
            f"flowgen sql only reads ({', '.join(sorted(READ_STATEMENTS))}); "
            f"{refused[0]} statements are refused: the tables belong to the "
            f"engine (change runs through its API), and a query writes no files"
        )
    cursor.execute("BEGIN TRANSACTION")
    try:
        relation = cursor.sql(query)
        columns = list(relation.columns)
        types = [str(t) for t in relation.types]
        rows = relation.fetchall()
    finally:
        cursor.execute("ROLLBACK")
    return columns, types, rows
