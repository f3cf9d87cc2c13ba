"""The committed notebooks carry clean outputs, and the checker CI runs on them compares well.

CI's notebook step executes every notebook with ``tests/notebook_check.py`` and compares the
fresh outputs with the committed ones after masking what changes from run to run. These
tests need no kernel: they pin what the masking hides and what it must not hide, and check
the committed files themselves.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.notebook_check import differences, normalise_text, warnings_in

NOTEBOOKS = sorted(
    (Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")
)

# jupysql's output when the `toml` package is missing, as it appeared in 01_quickstart.
TOML_WARNING = {
    "output_type": "display_data",
    "metadata": {},
    "data": {
        "text/plain": "The 'toml' package isn't installed. To load settings from "
        "pyproject.toml or ~/.jupysql/config, install with: pip install toml",
        "text/html": "<span>The &#x27;toml&#x27; package isn&#x27;t installed.</span>",
    },
}


def notebook(*outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "cells": [
            {"cell_type": "markdown", "source": "# title", "metadata": {}},
            *(
                {"cell_type": "code", "source": "x", "outputs": [o], "metadata": {}}
                for o in outputs
            ),
        ]
    }


def result(text: str) -> dict[str, Any]:
    return {"output_type": "execute_result", "data": {"text/plain": text}}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "PosixPath('/tmp/flowgen-quickstart-0lm8xtcj/orders.duckdb')",
            "PosixPath('<tmp>')",
        ),
        ("waiting at /tmp/ipykernel_3812/1834760319.py:42", "waiting at <tmp>:42"),
        ("72/72 h [33.5 s, 2 h/s]", "72/<duration> [<duration>, <duration>]"),
        (
            '<td title="2026-12-04 21:40:03 UTC">+0.6 s</td>',
            '<td title="<time> UTC"><duration></td>',
        ),
        ("took 3m 20.0s", "took <duration>"),
        ("[1m 02.3s, 1.2 h/s]", "[<duration>, <duration>]"),
        (
            '  File "/work/repo/flowgen/_core/interpreter.py", line 884, in _run',
            '  File "interpreter.py", line <n>, in _run',
        ),
        (
            "File &quot;/site-packages/flowgen/_core/interpreter.py&quot;, line 829, in",
            "File &quot;interpreter.py&quot;, line <n>, in",
        ),
        ("order-o-1/78115e3fa3ce416d9addc67c97471f79/2", "order-o-1/<hex>/2"),
        ("{'tracking': 'f3a29c41'}", "{'tracking': '<hex>'}"),
        ("{'tracking': '52479179'}", "{'tracking': '<hex>'}"),
        (
            'order-o-1  process_order  completed  "52479179"',
            'order-o-1  process_order  completed  "<hex>"',
        ),
        ("<object at 0x7fc46a4d13d0>", "<object at <address>>"),
        (  # jupysql names the checkout's pyproject.toml: CI clones elsewhere
            "Did not find user configurations in /work/main/pyproject.toml.",
            "Did not find user configurations in <checkout>/pyproject.toml.",
        ),
        (
            "Tip: You may define configurations in /tmp/ci3/pyproject.toml or x",
            "Tip: You may define configurations in <checkout>/pyproject.toml or x",
        ),
    ],
)
def test_what_changes_from_run_to_run_is_masked(text: str, masked: str) -> None:
    assert normalise_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "ship_order       3  completed  carrier API unavailable",
        "<Chart size 1000x330 with 1 Axes>",
        "['book hotel Albergo for t-2', 'cancel hotel booking H-t-2']",
        "charge_payment |  983  | 20.49 | 42.09",
        "pending seq 2: CallActivity(name='charge_payment', args=('o-1', 100.0))",
        "{'c-1': 'completed', 'c-2': 'running'}",
    ],
)
def test_what_a_run_decided_is_not_masked(text: str) -> None:
    assert normalise_text(text) == text


def test_a_different_result_is_a_difference_a_different_timing_is_not() -> None:
    committed = notebook(result("ship_order 3 attempts in 0.631 s"))
    slower = notebook(result("ship_order 3 attempts in 1.402 s"))
    assert differences(committed, slower) == []
    fewer = notebook(result("ship_order 2 attempts in 0.631 s"))
    (problem,) = differences(committed, fewer)
    assert problem.startswith("cell 1 differs")
    assert "-ship_order 3 attempts" in problem and "+ship_order 2 attempts" in problem


def test_a_chart_is_compared_by_its_presence_not_its_pixels() -> None:
    def chart(png: str) -> dict[str, Any]:
        return {
            "output_type": "execute_result",
            "data": {"image/png": png, "text/plain": "<Chart size 1000x330>"},
        }

    assert differences(notebook(chart("iVBORw0KGgo=")), notebook(chart("AAAA"))) == []
    assert differences(notebook(chart("AAAA")), notebook(result("<Chart>"))) != []


def test_warnings_and_errors_in_outputs_are_reported() -> None:
    stderr = {"output_type": "stream", "name": "stderr", "text": "UserWarning: x\n"}
    error = {"output_type": "error", "ename": "KeyError", "evalue": "'x'"}
    found = warnings_in(notebook(result("fine"), TOML_WARNING, stderr, error))
    assert [f.split(":")[0] for f in found] == ["cell 2", "cell 3", "cell 4"]
    assert "toml" in found[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_committed_notebooks_were_run_and_show_no_warnings(path: Path) -> None:
    committed = json.loads(path.read_text())
    code = [c for c in committed["cells"] if c["cell_type"] == "code"]
    # Run top to bottom in one kernel: execution counts 1, 2, 3, ...
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1))
    assert warnings_in(committed) == []
    assert differences(committed, copy.deepcopy(committed)) == []


def test_the_committed_notebooks_show_their_charts() -> None:
    charts = {
        path.name: sum(
            "image/png" in output.get("data", {})
            for cell in json.loads(path.read_text())["cells"]
            for output in cell.get("outputs", [])
        )
        for path in NOTEBOOKS
    }
    assert all(charts[name] > 0 for name in charts if "05" not in name), charts
