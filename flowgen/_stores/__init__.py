"""Layer 2, persistence: how histories become rows and rows become histories again.

`codec` is the one home of cattrs (values to JSON and back, by type hint); `protocol`
declares the `Store` the runtime writes through, with its rows and the in-memory store;
`duckdb_store` is the embedded DuckDB file (the one home of duckdb) and `journal` its
fsync'd commit log; `postgres_store` and `postgres_schema` are the PostgreSQL database (the
one home of psycopg, an optional extra), sharing DuckDB's batch rules (`duckdb_plan`,
`duckdb_rows`) and `schema_meta`; `locations` opens the store a path or URL names.

Rules: imports only the vocabulary and the pure core. Knows nothing of the engine, its
threads or its callers: a store is handed a `Batch` and commits it whole or not at all.
"""
