"""Run the notebooks and check them against the outputs committed with them.

The notebooks are committed with their outputs, so that a reader sees the tables and charts
on a code host without running anything. This script keeps those outputs honest::

    python tests/notebook_check.py notebooks/*.ipynb            # CI: execute and compare
    python tests/notebook_check.py --update notebooks/*.ipynb   # after editing a notebook

Each notebook is executed top to bottom in a fresh kernel (nbclient, from the ``notebook``
extra), in its own directory as JupyterLab would. It fails when a cell raises, when an output
is a warning (anything on stderr, or text that says "warning"), or when an output differs
from the committed one in more than what changes from run to run: times and durations,
temporary paths (a kernel's cell files among them), random hex ids, memory addresses and
the bytes of images (a chart's pixels depend on the matplotlib version; that there is a
chart is checked). ``--update`` writes the fresh outputs into the files instead.

The comparison itself (`normalise`, `differences`, `warnings_in`) reads notebooks as plain
JSON, so ``tests/test_notebook_check.py`` checks it and the committed files without a
kernel.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

Notebook = dict[str, Any]

# What differs between two honest runs, and what each becomes. Order matters: paths first
# (a temp path holds hex and digits), then times, then ids.
_TEMP_DIRS = sorted(
    {re.escape(tempfile.gettempdir()), "/tmp", "/var/folders/[^/]+/[^/]+/T"},
    key=len,
    reverse=True,
)
_VOLATILE: list[tuple[re.Pattern[str], str]] = [
    # A traceback's frames: where the checkout or site-packages is, and the line numbers
    # of code that moved (File "/work/repo/flowgen/_core/interpreter.py", line 884).
    (
        re.compile(r'File (&quot;|")(?:[^"&]*[/\\])?([^/\\"&]+)\1, line \d+'),
        r"File \1\2\1, line <n>",
    ),
    # Where the checkout is, as jupysql names the pyproject.toml it reads its settings
    # from: a clone in another folder (CI's) must compare equal.
    (re.compile(r"(?:/[^\s'\"<>]*)?/pyproject\.toml"), "<checkout>/pyproject.toml"),
    (re.compile(rf"(?:{'|'.join(_TEMP_DIRS)})/[^\s'\"<>):,]*"), "<tmp>"),
    # 2031-03-07 09:26:53.120+00:00, 2031-03-07T09:26:53Z, 09:26:53 alone
    (
        re.compile(
            r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
        ),
        "<time>",
    ),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<time>"),
    # 0.052s, 1.5 ms, +3.2 s, 33.5 s, 2 h/s, 12 µs, 3m 20.0s, 2d 03h 00m
    (
        re.compile(
            r"[+]?\b\d+(?:\.\d+)?\s?(?:ms|µs|us|ns|s|m|h|d|it/s|h/s|/s)(?![\w/])"
        ),
        "<duration>",
    ),
    # 3m 20.0s and 2d 03h 00m are one duration, however many parts a run needed.
    (re.compile(r"<duration>(?:\s+<duration>)+"), "<duration>"),
    (re.compile(r"\b0x[0-9a-f]{6,}\b"), "<address>"),
    # uuid4 hex and the like: at least 8 hex digits with a letter and a digit among them
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{8,}\b"), "<hex>"),
    # ... and a quoted id of 8 hex digits that happen to be all decimal (1 draw in 40):
    # the notebooks' tracking numbers (uuid4().hex[:8]) print as "52479179" then.
    (re.compile(r"(?<=[\"'])[0-9a-f]{8}(?=[\"'])"), "<hex>"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
        "<hex>",
    ),
]
_WARNING = re.compile(r"(?i)\bwarnings?\b|\bdeprecat|isn't installed|is not installed")


def normalise_text(text: str) -> str:
    """*text* with what changes from run to run replaced by placeholders."""
    for pattern, placeholder in _VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


def _normalise_output(output: dict[str, Any]) -> str:
    kind = output["output_type"]
    if kind == "stream":
        return f"[{output['name']}]\n{normalise_text(_text(output['text']))}"
    if kind == "error":
        return f"[error] {output['ename']}: {normalise_text(output['evalue'])}"
    parts = [f"[{kind}]"]
    for mime, value in sorted(output.get("data", {}).items()):
        if mime.startswith("image/"):
            parts.append(f"{mime}: <image>")
        elif mime.startswith("text/") or mime.endswith("json"):
            body = value if isinstance(value, str | list) else json.dumps(value)
            parts.append(f"{mime}:\n{normalise_text(_text(body))}")
        else:
            parts.append(f"{mime}: <data>")
    return "\n".join(parts)


def normalise(notebook: Notebook) -> list[str]:
    """Each code cell's outputs as one text, with the volatile parts replaced."""
    return [
        "\n".join(_normalise_output(o) for o in cell.get("outputs", []))
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
    ]


def _code_cells(notebook: Notebook) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            yield index, cell


def warnings_in(notebook: Notebook) -> list[str]:
    """Outputs a reader should not see: errors, anything on stderr, warning text."""
    found: list[str] = []
    for index, cell in _code_cells(notebook):
        for output in cell.get("outputs", []):
            kind = output["output_type"]
            if kind == "error":
                found.append(f"cell {index}: raised {output['ename']}")
            elif kind == "stream" and output["name"] == "stderr":
                found.append(f"cell {index}: stderr: {_text(output['text'])[:200]!r}")
            else:
                texts = [_text(output.get("text", ""))] + [
                    _text(v)
                    for mime, v in output.get("data", {}).items()
                    if mime == "text/plain"
                ]
                for text in texts:
                    if _WARNING.search(text):
                        found.append(f"cell {index}: a warning: {text[:200]!r}")
    return found


def differences(committed: Notebook, fresh: Notebook) -> list[str]:
    """Where *fresh*'s outputs differ from *committed*'s beyond the volatile parts."""
    if len(committed["cells"]) != len(fresh["cells"]):
        return ["the notebooks have different cells"]
    found: list[str] = []
    indices = [i for i, _ in _code_cells(committed)]
    for index, old, new in zip(
        indices, normalise(committed), normalise(fresh), strict=True
    ):
        if old != new:
            diff = "\n".join(
                difflib.unified_diff(
                    old.splitlines(),
                    new.splitlines(),
                    "committed",
                    "fresh",
                    lineterm="",
                    n=1,
                )
            )
            found.append(f"cell {index} differs:\n{diff}")
    return found


def execute(path: Path) -> Notebook:
    """Run *path* top to bottom in a fresh kernel in its directory; return the result."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    return json.loads(nbformat.writes(notebook))


def main(argv: Sequence[str] | None = None) -> int:
    """Check (or with ``--update``, rewrite) the notebooks; 0 if all are as committed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument(
        "--update", action="store_true", help="write the fresh outputs into the files"
    )
    args = parser.parse_args(argv)
    failed = False
    for path in args.notebooks:
        committed = json.loads(path.read_text())
        fresh = execute(path)
        problems = warnings_in(fresh)
        if not args.update:
            problems += differences(committed, fresh)
        elif not problems:
            path.write_text(
                json.dumps(fresh, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
            )
        print(f"{path}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print("  " + problem.replace("\n", "\n  "))
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
