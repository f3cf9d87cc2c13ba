"""A database as an older flowgen left it: today's, with what later versions added undone.

Today's engine reads columns an older database lacks, so it cannot make one; the tests of
migrations make a database with today's engine, then take it back with `downgrade`. One
copy of the inverse of every migration, per store (`UNDO`): a migration without its
inverse fails `test_every_migration_can_be_undone` before it can leave a test half-right.
"""

from __future__ import annotations

from typing import Final

import duckdb
import psycopg

from flowgen._stores import duckdb_schema, postgres_schema

__all__ = ["OLDEST", "UNDO", "current", "downgrade"]

#: ``UNDO[store][n]``: the statements that take a database from version n back to n-1.
UNDO: Final[dict[str, dict[int, tuple[str, ...]]]] = {
    "duckdb": {
        3: (
            "ALTER TABLE schedules DROP COLUMN skipped",
            "ALTER TABLE schedules DROP COLUMN triggered_at",
        ),
    },
    "postgres": {
        3: ("DROP TABLE pruned_runs",),
        4: (
            "ALTER TABLE fleet_tasks DROP COLUMN started_at",
            "ALTER TABLE fleet_tasks DROP COLUMN beat_at",
            "ALTER TABLE fleet_tasks DROP COLUMN details",
            "ALTER TABLE schedules DROP COLUMN skipped",
            "ALTER TABLE schedules DROP COLUMN triggered_at",
        ),
    },
}

#: The oldest version `UNDO` reaches, per store (earlier ones are made otherwise).
OLDEST: Final = {"duckdb": 2, "postgres": 2}


def current(store: str) -> int:
    """Today's schema version of *store* (read from its migrations: a test may patch
    ``SCHEMA_VERSION`` to play an older flowgen)."""
    module = duckdb_schema if store == "duckdb" else postgres_schema
    return max(module.MIGRATIONS, default=1)


def downgrade(db: str, version: int) -> None:
    """Take the flowgen database *db* (a DuckDB path or a PostgreSQL URL, no engine on
    it) back to schema *version*."""
    store = "postgres" if db.startswith("postgresql://") else "duckdb"
    if not OLDEST[store] <= version <= current(store):
        raise ValueError(
            f"{store} databases go back to version {OLDEST[store]} at most"
        )
    statements = [
        statement
        for step in range(current(store), version, -1)
        for statement in UNDO[store][step]
    ]
    statements.append(
        f"UPDATE flowgen_meta SET value = '{version}' WHERE key = 'schema_version'"
    )
    if store == "postgres":
        with psycopg.connect(db, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)
        return
    con = duckdb.connect(db)
    try:
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()
