"""engine.sql(): SQL over the history, as DuckDB answers it, with what users reach for first."""

from __future__ import annotations

from pathlib import Path

import flowgen as fg


def test_engine_sql_answers_the_db_api_fetches_duckdb_2_dropped(tmp_path: Path) -> None:
    # DuckDB 2.0 relations have no fetchone()/fetchmany(); engine.sql() users reach for
    # them first (issue 10 item 7). They walk the rows of one run of the query, as on a
    # DB-API cursor, while everything a relation does still works.
    with fg.Engine(str(tmp_path / "sql.duckdb")) as engine:
        result = engine.sql("select * from range(3) t(n) order by n")
        assert result.fetchone() == (0,)
        assert result.fetchmany(5) == [(1,), (2,)]
        assert result.fetchone() is None
        again = engine.sql("select count(*) from workflows")
        assert again.fetchall() == [(0,)]
        assert again.columns == ["count_star()"]
        assert list(engine.sql("select 7 as x")) == [(7,)]
        assert engine.sql("select 1 as x").df()["x"].tolist() == [1]
        assert "x" in repr(engine.sql("select 1 as x"))
