"""Layer 2, presentation: how events, histories, handles and steppers look to a person.

`html` builds the ``_repr_html_`` of every flowgen object from plain strings; `timeline`
draws one run's chart with matplotlib (imported only when a chart is asked for).

Rules: imports only the vocabulary; reads the objects it renders through small protocols,
since the runtime and the public faces sit above it.
"""
