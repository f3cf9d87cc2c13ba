"""Layer 2, persistence: how histories become rows and rows become histories again.

`codec` is the one home of cattrs (values to JSON and back, by type hint); `protocol`
declares the `Store` the runtime writes through, with its rows and the in-memory store;
`duckdb_store` is the embedded DuckDB file (the one home of duckdb) and `journal` its
fsync'd commit log.

Rules: imports only the vocabulary and the pure core. Knows nothing of the engine, its
threads or its callers: a store is handed a `Batch` and commits it whole or not at all.
"""
