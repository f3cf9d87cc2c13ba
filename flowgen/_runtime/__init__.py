"""Layer 3, the runtime: the engine that performs what workflows decide.

`engine` is the public face; `loop` is the decision loop that drives interpreters and
commits their events through a store, one batch per transaction. Each of its other jobs
has a module of its own: `items` and `inbox` (what reaches the loop), `runs` (its run
table), `cache` (live interpreters), `prefetch` (a batch's reads in bulk), `crossing`
(work between runs), `attempts` and `jobs`
(activity attempts and where they run), `timers`, `recovery` and `results` (waiting for
an outcome). `clock`, `registry` and `invoke` (running one activity attempt) serve them,
`handle` is what callers hold, and `stepper` drives one workflow by hand.

Rules: the only layer that uses threads and clocks; imports every layer below it and
nothing above (the CLI, the notebook helpers and ``flowgen.testing`` sit above).
"""
