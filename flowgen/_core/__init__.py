"""Layer 1, the pure core: the DSL users write workflows with and the sans-IO interpreter.

`dsl` turns calls such as ``fg.call(charge, ...)`` into frozen commands; `history` indexes
what a recorded history says; `decisions` says which event records a command and whether a
recorded one still matches; `interpreter` feeds recorded outcomes into a workflow's
generator and says what the workflow decided next; `outcome` decides which event records an
activity attempt (the rule the engine and the Stepper share).

Rules: imports only the vocabulary (layer 0). Never reads a clock, randomness, the
environment or IO, never starts a thread: everything it knows arrives as event data, so the
same history always yields the same decisions.
"""
