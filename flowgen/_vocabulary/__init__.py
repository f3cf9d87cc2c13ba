"""Layer 0, the vocabulary: what workflows, histories and errors are made of.

Frozen attrs classes and nothing else: the commands a workflow yields (`commands`), the
events a history records (`events`), the exception tree and `ErrorInfo`, a failure as data
(`errors`), the retry policy with its pure arithmetic (`retry`), run statuses (`status`)
and the longest duration accepted (`durations`).

Rules: no module here imports anything of flowgen outside this package, nor IO, a clock,
randomness, threads, asyncio, logging or a boundary library (cattrs, duckdb, psycopg).
"""
