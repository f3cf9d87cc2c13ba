"""Layer 2, presentation: how events, histories, handles and steppers look to a person.

The ``_repr_html_`` of every flowgen object is built from plain strings: `html` is the
events view (events, histories, handles, schedules), `stepper_html` the Stepper view
(commands and a Stepper), both on `html_parts` (escaping, durations, times, tables).
`timeline` draws one run's chart with matplotlib (imported only when a chart is asked for).

Rules: imports only the vocabulary; reads the objects it renders through small protocols,
since the runtime and the public faces sit above it.
"""
