"""The README's commands and its tour work as written.

The tour's ``orders.py`` is taken from the README itself, run twice in a fresh directory
(the second run returns the stored result), and the command-line examples that follow it
are run against the file it wrote.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def test_the_quickstart_commands_are_the_ones_ci_runs() -> None:
    commands = [b.strip() for b in blocks("bash")]
    assert "pip install . && python -m flowgen demo" in commands
    assert 'pip install -e ".[test]" && python -m pytest' in commands
    assert "python benchmarks/run.py" in commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && python -m pytest' in ci


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    (orders,) = [b for b in blocks("python") if "def process_order" in b]
    (tmp_path / "orders.py").write_text(orders)
    first = run([sys.executable, "orders.py"], tmp_path)
    tracking = re.search(r"tracking number: (TRK-[0-9A-F]{8})", first)
    assert tracking is not None, first
    assert re.search(r"ship_order\s*│\s*3\s*│\s*completed", first), first
    second = run([sys.executable, "orders.py"], tmp_path)
    assert f"tracking number: {tracking.group(1)}" in second  # the stored result

    # The command-line examples, as printed (with `flowgen` as `python -m flowgen`).
    commands = next(b for b in blocks("bash") if "flowgen --db orders.duckdb ls" in b)
    lines = [
        line.split("  #")[0].strip()
        for line in commands.replace("\n  ", " ").splitlines()
    ]
    outputs = {}
    for line in lines:
        args = shlex.split(line)
        assert args[0] == "flowgen"
        outputs[args[3]] = run([sys.executable, "-m", "flowgen", *args[1:]], tmp_path)
    assert "order-o-1  process_order  completed" in outputs["ls"]
    assert "side_effect_recorded" in outputs["show"]
    assert re.search(r"ship_order\s+ConnectionError\s+2", outputs["sql"])
