"""The gates CI enforces, as tests, so the README's one test command runs them all.

Each gate runs the real tool in a subprocess on the repository: ruff (lint and format),
mypy --strict on the package (and the typing tests), the import-layer contract, and 100%
branch coverage of the pure core, the codec, the memory store and the Stepper.

A gate's verdict never depends on the machine's speed: the gates run without
pytest-timeout (a cold mypy on a loaded 2-core machine takes minutes, and that is no
failure), and each subprocess gets only a hang guard of `HANG_GUARD` seconds. The tools
that share a cache in the repository (ruff's, mypy's, import-linter's) run one after
another on one xdist worker (`xdist_group`). The coverage gate runs the core tests under
Hypothesis' ``coverage`` profile (tests/conftest.py): derandomized, so the same code gets
the same verdict every time, and small, so the gate is cheap; the full budgets of the
property tests run in the ordinary test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

HANG_GUARD = 1800
"""Seconds after which a gate's subprocess is taken for hung (never a speed limit)."""

pytestmark = pytest.mark.timeout(0)  # the gates' own hang guard is HANG_GUARD

tools_sharing_a_cache = pytest.mark.xdist_group("repository-caches")

CORE_MODULES = [
    "flowgen/_vocabulary/commands.py",
    "flowgen/_vocabulary/events.py",
    "flowgen/_vocabulary/errors.py",
    "flowgen/_vocabulary/retry.py",
    "flowgen/_vocabulary/status.py",
    "flowgen/_vocabulary/durations.py",
    "flowgen/_vocabulary/text.py",
    "flowgen/_core/dsl.py",
    "flowgen/_core/decisions.py",
    "flowgen/_core/history.py",
    "flowgen/_core/interpreter.py",
    "flowgen/_core/awaiting.py",
    "flowgen/_core/tree.py",
    "flowgen/_core/signals.py",
    "flowgen/_core/versions.py",
    "flowgen/_core/lifecycle.py",
    "flowgen/_core/divergence.py",
    "flowgen/_core/conditions.py",
    "flowgen/_core/outcome.py",
    "flowgen/_core/updates.py",
    "flowgen/_core/workflow_code.py",
    "flowgen/_stores/codec.py",
    "flowgen/_stores/protocol.py",
    "flowgen/_stores/memory.py",
    "flowgen/_runtime/stepper.py",
    "flowgen/_runtime/stepper_support.py",
    "flowgen/_runtime/stepper_view.py",
]
CORE_TESTS = [
    "tests/test_commands.py",
    "tests/test_dsl.py",
    "tests/test_retry.py",
    "tests/test_codec.py",
    "tests/test_interpreter.py",
    "tests/test_attempt_outcome.py",
    "tests/test_stepper.py",
    "tests/test_replay_properties.py",
    "tests/test_memory_store.py",
    "tests/test_wait_condition.py",
]


def run(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=HANG_GUARD,
        env=env,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


@tools_sharing_a_cache
def test_ruff_lint_passes() -> None:
    assert_ok(run("ruff", "check", "flowgen", "tests", "benchmarks"))


@tools_sharing_a_cache
def test_ruff_format_is_applied() -> None:
    assert_ok(run("ruff", "format", "--check", "flowgen", "tests", "benchmarks"))


@tools_sharing_a_cache
def test_mypy_strict_passes_on_the_package() -> None:
    assert_ok(run("mypy", "flowgen"))


@tools_sharing_a_cache
def test_mypy_checks_the_typed_dsl_examples() -> None:
    typing_tests = ROOT / "tests" / "typing"
    if not typing_tests.is_dir():
        pytest.fail("tests/typing/ with the DSL typing checks is missing")
    assert_ok(run("mypy", "--strict", "--warn-unused-ignores", str(typing_tests)))


@tools_sharing_a_cache
def test_import_layers_are_respected() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=HANG_GUARD,
    )
    assert_ok(result)


def test_core_and_codec_have_full_branch_coverage(tmp_path: Path) -> None:
    data = str(tmp_path / ".coverage")
    tests = [t for t in CORE_TESTS if (ROOT / t).exists()]
    assert tests, "the core test files are missing"
    env = {**os.environ, "HYPOTHESIS_PROFILE": "coverage"}
    assert_ok(
        run(
            "coverage",
            "run",
            f"--data-file={data}",
            "--branch",
            "--source=flowgen",
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-n0",  # one process: coverage follows it
            "--timeout=0",  # HANG_GUARD is the hang guard
            *tests,
            env=env,
        )
    )
    assert_ok(
        run(
            "coverage",
            "report",
            f"--data-file={data}",
            "--fail-under=100",
            "--include=" + ",".join(CORE_MODULES),
        )
    )
