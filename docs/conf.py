"""Sphinx configuration: furo, MyST Markdown, the notebooks executed by myst-nb, autodoc."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import flowgen  # noqa: E402

project = "flowgen"
author = "The flowgen developers"
copyright = "2026, The flowgen developers"
version = release = flowgen.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

# The notebooks live in ../notebooks (where nbmake runs them); Sphinx reads files under
# docs/ only, so each build copies them here (the copy is git-ignored).
_NOTEBOOKS = HERE / "notebooks"
shutil.rmtree(_NOTEBOOKS, ignore_errors=True)
_NOTEBOOKS.mkdir()
for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    shutil.copy2(notebook, _NOTEBOOKS / notebook.name)

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"

# Notebooks are committed with their outputs (CI's notebook step executes them and compares
# with tests/notebook_check.py), so the build shows those outputs and runs nothing.
nb_execution_mode = "off"
nb_execution_timeout = 180
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Docstrings are Google style; references in single backticks resolve as Python objects.
default_role = "py:obj"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" of attrs classes: no duplicate object entries
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options: dict[str, object] = {}

html_theme = "furo"
html_title = f"flowgen {release}"
html_static_path: list[str] = []
