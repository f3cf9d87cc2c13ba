"""Where a store lives: a DuckDB file (or ``":memory:"``), or a PostgreSQL URL.

The one place that tells them apart, so the engine and the command line open the same
store for the same string. PostgreSQL's driver is imported only when a URL names it.
"""

from __future__ import annotations

from flowgen._stores.protocol import FleetOptions, Store
from flowgen._stores.url import is_postgres_url

__all__ = ["is_postgres_url", "open_store"]


def open_store(
    location: str,
    *,
    duckdb_threads: int | None = None,
    fleet: FleetOptions | None = None,
) -> Store:
    """Open the store *location* names.

    Args:
        location: A ``postgresql://`` (or ``postgres://``) URL for a `PostgresStore`;
            anything else is a DuckDB file path (or ``":memory:"``) for a `DuckDBStore`.
        duckdb_threads: DuckDB's worker threads (a DuckDB store only).
        fleet: How an engine on a PostgreSQL store takes part in its fleet (``None``:
            the defaults of `FleetOptions`).

    Raises:
        StoreError: As the store's constructor raises it (and its subclasses).
    """
    if is_postgres_url(location):
        from flowgen._stores.postgres_store import PostgresStore

        return PostgresStore(location, fleet=fleet or FleetOptions())
    from flowgen._stores.duckdb_store import DuckDBStore

    return DuckDBStore(location, threads=duckdb_threads)
