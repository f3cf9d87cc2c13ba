"""The API reference documents every public name exactly once, on the page of its role.

``docs/api/*.md`` lists the names by hand (grouped: writing workflows, running them,
errors, testing, notebooks, stores, events) rather than one alphabetical page, so a name
added to ``__all__`` must be placed on a page too; this test says which.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import flowgen
import flowgen.aio
import flowgen.notebook
import flowgen.testing

API = Path(__file__).resolve().parent.parent / "docs" / "api"
PAGES = ["workflows", "running", "errors", "testing", "notebooks", "stores", "events"]


def documented() -> Counter[str]:
    """The dotted names of the ``auto*::`` directives, resolved against ``currentmodule``."""
    names: Counter[str] = Counter()
    for page in PAGES:
        module = "flowgen"
        for line in (API / f"{page}.md").read_text().splitlines():
            current = re.match(r"\.\. currentmodule:: (\S+)", line)
            if current:
                module = current.group(1)
            auto = re.match(r"\.\. auto\w+:: (\S+)", line)
            if auto:
                name = auto.group(1)
                names[name if name.startswith("flowgen.") else f"{module}.{name}"] += 1
    return names


def public_objects() -> dict[str, object]:
    """Every public name, keyed by where the docs should show it (one key per object)."""
    objects: dict[str, object] = {}
    for module in (flowgen, flowgen.testing, flowgen.notebook, flowgen.aio):
        for name in module.__all__:
            if name.startswith("__"):
                continue
            obj = getattr(module, name)
            # `flowgen.testing.Stepper` is `flowgen.Stepper`: one entry, under `flowgen`.
            if module is not flowgen and getattr(flowgen, name, None) is obj:
                continue
            objects[f"{module.__name__}.{name}"] = obj
    return objects


def test_every_public_name_is_documented_once() -> None:
    names = documented()
    missing = sorted(set(public_objects()) - set(names))
    assert not missing, f"add these to a page of docs/api/: {missing}"
    twice = sorted(n for n, count in names.items() if count > 1)
    assert not twice, f"documented more than once: {twice}"
    unknown = sorted(set(names) - set(public_objects()))
    assert not unknown, f"docs/api/ names what is not public: {unknown}"


def test_the_pages_come_in_the_order_of_roles_with_events_last() -> None:
    index = (API / "index.md").read_text()
    toctree = re.search(r"```\{toctree\}\n:hidden:\n\n(.*?)```", index, re.DOTALL)
    assert toctree is not None
    assert toctree.group(1).split() == PAGES
