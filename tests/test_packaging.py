"""The distribution name is used everywhere a user copies an install command from.

On PyPI ``flowgen`` is an unrelated project, so ``pip install flowgen`` (or
``"flowgen[notebook]"``) installs the wrong thing; ours is ``flowgen-durable``, imported as
``flowgen``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = "flowgen-durable"


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_distribution_is_flowgen_durable_and_imports_as_flowgen() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert project["name"] == DIST
    assert project["scripts"] == {"flowgen": "flowgen.cli:main"}
    assert (ROOT / "flowgen" / "__init__.py").exists()
    # Extras that pull in other extras name the distribution, not the import name.
    for extra in project["optional-dependencies"].values():
        for requirement in extra:
            assert not requirement.startswith("flowgen["), requirement


def test_no_install_command_names_the_other_project() -> None:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    texts += sorted((ROOT / "flowgen").rglob("*.py"))
    wrong = re.compile(r"""pip install (?:-U |--upgrade )?["']?flowgen(?![-\w])""")
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in texts
        if "_build" not in path.parts
        for match in wrong.finditer(path.read_text())
    ]
    assert not offenders
    readme = (ROOT / "README.md").read_text()
    assert f"pip install {DIST}" in readme
