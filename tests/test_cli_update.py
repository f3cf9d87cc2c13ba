"""``flowgen update ID NAME [ARG ...]``: through the running application, or on the file.

The real command line in subprocesses, against a real application process that holds the
DuckDB file (the update goes through its control socket), and against the file alone
(``--import`` loads the workflow's code, and the handler runs in the command's process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_process import cli_env, flowgen as run_flowgen, reap, start_app

CART = """
import flowgen as fg

@fg.workflow
def cli_cart():
    items = []

    def check(item):
        if item in items:
            raise ValueError(f"{item!r} is in the cart already")

    def add_item(item):
        items.append(item)
        return {"count": len(items), "items": list(items)}

    yield fg.on_update("add_item", add_item, validator=check)
    yield fg.wait_signal("checkout")
    return items
"""

APP = """
import sys
import flowgen as fg
from cartapp import cli_cart

with fg.Engine(sys.argv[1]) as engine:
    if engine.store.get_run("cart-1") is None:
        engine.start(cli_cart, id="cart-1")
    print("ready", flush=True)
    sys.stdin.readline()
"""


def flowgen(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_flowgen(*args, cwd=cwd)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cartapp.py").write_text(CART)
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def running_app(app_dir: Path) -> Iterator[str]:
    db = str(app_dir / "cart.duckdb")
    app = start_app(app_dir / "app.py", db, env=cli_env(app_dir), cwd=app_dir)
    assert app.stdin is not None
    try:
        yield db
        app.stdin.write("stop\n")
        app.stdin.flush()
        app.wait(timeout=60)
        assert app.returncode == 0
    finally:
        reap(app)


def test_an_update_goes_through_the_application_that_holds_the_file(
    running_app: str, app_dir: Path
) -> None:
    db = running_app
    added = flowgen(app_dir, "--db", db, "update", "cart-1", "add_item", '"apple"')
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"count": 1, "items": ["apple"]}

    again = flowgen(app_dir, "--db", db, "update", "cart-1", "add_item", '"apple"')
    assert again.returncode == 1
    assert "rejected" in again.stderr and "in the cart already" in again.stderr

    unknown = flowgen(app_dir, "--db", db, "update", "cart-1", "nope")
    assert unknown.returncode == 1 and "no update handler 'nope'" in unknown.stderr
    bad = flowgen(app_dir, "--db", db, "update", "cart-1", "add_item", "apple")
    assert bad.returncode == 1 and "must be JSON" in bad.stderr

    retried = [
        flowgen(
            app_dir,
            "--db",
            db,
            "update",
            "cart-1",
            "add_item",
            '"pear"',
            "--update-id",
            "pear-1",
        )
        for _ in range(2)
    ]
    assert [json.loads(r.stdout)["count"] for r in retried] == [2, 2]
    shown = flowgen(app_dir, "--db", db, "show", "cart-1")
    assert shown.stdout.count("update_accepted") == 2, shown.stdout  # rejections: none


def test_an_update_on_the_file_needs_the_workflows_code(app_dir: Path) -> None:
    db = str(app_dir / "cart.duckdb")
    start = (
        "import sys, flowgen as fg; sys.path.insert(0, '.');"
        "from cartapp import cli_cart;"
        f"e = fg.Engine({db!r}); e.start(cli_cart, id='cart-1'); e.close()"
    )
    subprocess.run(
        [sys.executable, "-c", start],
        cwd=app_dir,
        env=cli_env(),
        check=True,
        timeout=120,
    )
    without = flowgen(app_dir, "--db", db, "update", "cart-1", "add_item", '"apple"')
    assert without.returncode == 1
    assert "--import" in without.stderr and "cli_cart" in without.stderr
    with_code = flowgen(
        app_dir,
        "--db",
        db,
        "update",
        "cart-1",
        "add_item",
        '"apple"',
        "--import",
        "cartapp",
    )
    assert with_code.returncode == 0, with_code.stderr
    assert json.loads(with_code.stdout) == {"count": 1, "items": ["apple"]}
    rejected = flowgen(
        app_dir,
        "--db",
        db,
        "update",
        "cart-1",
        "add_item",
        '"apple"',
        "--import",
        "cartapp",
    )
    assert rejected.returncode == 1 and "in the cart already" in rejected.stderr
    missing = flowgen(app_dir, "--db", db, "update", "no-such", "add_item", "1")
    assert missing.returncode == 1 and "no workflow with id 'no-such'" in missing.stderr
