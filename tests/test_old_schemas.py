"""The inverse migrations the migration tests rely on (`tests.old_schemas`) are whole.

Every migration has its inverse, and a database taken back to the oldest version and
opened again by today's engine has exactly the columns of a new one, on DuckDB and on
PostgreSQL: so a test that plays an older database plays one an older flowgen made.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg
import pytest

import flowgen as fg
from tests.old_schemas import OLDEST, UNDO, current, downgrade

COLUMNS = (
    "select table_name, column_name, data_type from information_schema.columns "
    "where table_schema = current_schema() order by 1, 2, 3"
)


@pytest.mark.parametrize("store", ["duckdb", "postgres"])
def test_every_migration_can_be_undone(store: str) -> None:
    assert set(UNDO[store]) == set(range(OLDEST[store] + 1, current(store) + 1))


def _columns(db: str) -> list[tuple[str, ...]]:
    if db.startswith("postgresql://"):
        with psycopg.connect(db) as pg:
            return [tuple(map(str, row)) for row in pg.execute(COLUMNS).fetchall()]
    con = duckdb.connect(db, read_only=True)
    try:
        return [tuple(map(str, row)) for row in con.execute(COLUMNS).fetchall()]
    finally:
        con.close()


@pytest.mark.parametrize("store", ["duckdb", "postgres"])
def test_a_downgraded_database_migrates_back_to_todays_columns(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = (
        str(tmp_path / "old.duckdb")
        if store == "duckdb"
        else str(request.getfixturevalue("pg_url"))
    )
    fg.Engine(db).close()
    today = _columns(db)
    downgrade(db, OLDEST[store])
    assert _columns(db) != today  # the undo took something away
    fg.Engine(db).close()  # migrates
    assert _columns(db) == today
