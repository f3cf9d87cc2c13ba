"""Shared test configuration: Hypothesis profiles.

* ``dev`` (the default): a fair number of examples, no deadline (shared machines are noisy).
* ``fast`` (``FAST=1``): 10 examples per property, for a quick loop while editing.
* ``ci`` (``CI=true``): more examples, and ``print_blob=True`` so a failure found in CI can
  be replayed locally with ``@reproduce_failure``. Not derandomized: every CI run explores
  new examples, and the database of failures is what makes one reproducible. CI's extended
  part runs the ``slow`` suites under it too (``.ci/run``).
* ``coverage``: what the coverage gate runs the core tests under
  (``tests/test_quality_gates.py``): 10 examples, derandomized and without the example
  database, so the gate's verdict is the same on every run of the same code. It checks
  which branches the tests reach; the properties themselves run under the profiles above.

``HYPOTHESIS_PROFILE=<name>`` picks a profile explicitly.

Also: ``--regen-golden`` (records the golden histories under ``tests/golden/`` that are
missing, see ``test_golden.py``), and ``tests/typing/`` is left to mypy, never collected.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "fast", max_examples=10, deadline=None, suppress_health_check=_SLOW_DATA
)
settings.register_profile(
    "coverage",
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=_SLOW_DATA,
)
settings.register_profile(
    "ci",
    max_examples=250,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_DATA,
)


def _profile() -> str:
    explicit = os.environ.get("HYPOTHESIS_PROFILE")
    if explicit:
        return explicit
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return "ci"
    if os.environ.get("FAST", "") not in ("", "0"):
        return "fast"
    return "dev"


settings.load_profile(_profile())


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


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis' reporting hook touches mypy_extensions.TypedDict, deprecated upstream:
    # with filterwarnings=error that turned every failing property into an INTERNALERROR
    # that hid the falsifying example.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning",
    )


# A throwaway PostgreSQL server for the PostgreSQL store's tests: the fixtures
# ``postgres_cluster`` and ``pg_url`` (see tests/pg.py); engines of one fleet on it:
# ``engines`` and ``member`` (tests/fleet_fixtures.py).
pytest_plugins = ["tests.pg", "tests.fleet_fixtures"]
