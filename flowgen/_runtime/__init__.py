"""Layer 3, the runtime: the engine that performs what workflows decide.

The engine drives interpreters, commits their events through a store, runs activity
attempts, arms timers and recovers unfinished runs; `clock`, `registry` and `invoke`
(running one activity attempt) serve it, `handle` is what callers hold, and `stepper`
drives one workflow by hand.

Rules: the only layer that uses threads and clocks; imports every layer below it and
nothing above (the CLI, the notebook helpers and ``flowgen.testing`` sit above).
"""
