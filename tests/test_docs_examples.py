"""Every ```python block in docs/*.md runs, and every ```sql block runs on its page's engine.

The blocks of one page run in order, in one namespace, in a fresh temporary directory, so a
page reads like a session. A ```sql block is run with ``engine.sql(...)`` on the page's
``engine`` (defined by an earlier python block): the schema reference is checked against
the real views. Fragments that must not run use another language tag (```text, ```pycon).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(python|sql)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
PAGES = sorted(
    p for p in DOCS.glob("*.md") if FENCE.search(p.read_text(encoding="utf-8"))
)


def blocks(page: Path) -> list[tuple[str, str, int]]:
    text = page.read_text(encoding="utf-8")
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def test_the_docs_have_examples() -> None:
    names = {p.name for p in PAGES}
    assert {"index.md", "tutorial.md", "concepts.md", "testing.md", "sql.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_examples_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # As in a script or a notebook: a page that redefines `order` replaces the workflow
    # registered under that name by an earlier page (same module, same name).
    namespace: dict[str, object] = {"__name__": "__main__"}
    # A page runs as its own program would: the names other test modules registered in
    # this process (tests/workflows.py has a `send_welcome_v1` too) are not its business.
    from flowgen._core import dsl as _dsl

    saved = dict(_dsl.ACTIVITIES), dict(_dsl.WORKFLOWS)
    _dsl.ACTIVITIES.clear()
    _dsl.WORKFLOWS.clear()
    try:
        for language, code, line in blocks(page):
            where = f"{page.name}:{line}"
            if language == "python":
                exec(compile(code, where, "exec"), namespace)
            else:
                engine = namespace.get("engine")
                assert engine is not None, (
                    f"{where}: a sql block needs an `engine` above it"
                )
                engine.sql(code).fetchall()  # type: ignore[attr-defined]
    finally:
        engine = namespace.get("engine")
        close = getattr(engine, "close", None)
        if callable(close):
            close()
        _dsl.ACTIVITIES.clear()
        _dsl.ACTIVITIES.update(saved[0])
        _dsl.WORKFLOWS.clear()
        _dsl.WORKFLOWS.update(saved[1])
    assert os.getcwd() == str(tmp_path)
