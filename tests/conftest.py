"""Shared pytest configuration for flowgen's tests."""

from __future__ import annotations

import pytest

# tests/typing/ holds files checked by mypy only (``mypy tests/typing``): never run them.
collect_ignore_glob = ["typing/*"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help=(
            "record the golden histories under tests/golden/ that are missing. Existing "
            "files are never overwritten: a golden is a compatibility contract, so a "
            "failing replay means 'add a get_version branch', not 're-record'. To re-record "
            "one on purpose, delete it first."
        ),
    )


@pytest.fixture
def regen_golden(request: pytest.FixtureRequest) -> bool:
    """True when pytest runs with ``--regen-golden``."""
    return bool(request.config.getoption("--regen-golden"))
