"""Layer 1, the pure core: the DSL users write workflows with and the sans-IO interpreter.

`dsl` turns calls such as ``fg.call(charge, ...)`` into frozen commands; `interpreter` feeds
recorded outcomes into a workflow's generator and says what the workflow decided next.

Rules: imports only the vocabulary (layer 0). Never reads a clock, randomness, the
environment or IO, never starts a thread: everything it knows arrives as event data, so the
same history always yields the same decisions.
"""
