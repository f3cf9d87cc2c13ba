"""The command line as an operator meets it: a terminal gets colour and progress, a pipe text.

Every command here runs in a subprocess as a user would type it: piped (stdout and stderr
captured), or in a pseudo-terminal (`pty`), which is what makes rich draw colour and
progress bars. The plain fallback is checked in a terminal too, with rich made
unimportable, as on a machine without the ``cli`` extra.

The databases: one run with a 3,000-step history, and 120 runs of a workflow of which the
changed code diverges from 12.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowgen._stores.protocol import RUN_STATUSES

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

APP = """
import flowgen as fg


@fg.activity(name="term_step")
def step(i: int) -> int:
    return i


@fg.workflow(name="term_long")
def long(n: int):
    total = 0
    for i in range(n):
        total += yield fg.call(step, i)
    return total


@fg.workflow(name="term_branchy")
def branchy(n: int):
    if n % 10 == 3:
        yield fg.call(step, n)
    return n
"""

# The same workflow names; for n % 10 == 3 the code now sleeps where it called `step`.
APP_CHANGED = """
import flowgen as fg


@fg.activity(name="term_step")
def step(i: int) -> int:
    return i


@fg.workflow(name="term_branchy")
def branchy(n: int):
    if n % 10 == 3:
        yield fg.sleep(1)
    return n
"""

SETUP = """
import sys
import flowgen as fg
from flowgen.testing import ManualClock
import termapp

engine = fg.Engine(sys.argv[1], clock=ManualClock())
engine.start(termapp.long, 3000, id="long-1")
for n in range(120):
    engine.start(termapp.branchy, n, id=f"b-{n:03d}")
engine.run_until_idle()
assert engine.get("long-1").status() == "completed"
engine.close()
"""

# Run the command line with rich unimportable, as without the `cli` extra.
WITHOUT_RICH = (
    "import sys; sys.modules['rich'] = None; from flowgen.cli import main; "
    "sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(application directory, database)."""
    app_dir = tmp_path_factory.mktemp("termapp")
    (app_dir / "termapp.py").write_text(APP)
    (app_dir / "termapp_changed.py").write_text(APP_CHANGED)
    db = str(app_dir / "term.duckdb")
    subprocess.run(
        [sys.executable, "-c", SETUP, db],
        env=env(app_dir),
        check=True,
        timeout=300,
        capture_output=True,
    )
    return app_dir, db


def env(app_dir: Path) -> dict[str, str]:
    variables = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FLOWGEN_DB", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")
    }
    variables["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(app_dir), variables.get("PYTHONPATH", "")) if p
    )
    return {**variables, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}


def piped(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m flowgen ARGS`` with stdout and stderr captured (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "flowgen", *args],
        env=env(app_dir),
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def in_terminal(app_dir: Path, *argv: str) -> tuple[int, str]:
    """Run ``python ARGV`` in a pseudo-terminal: (exit code, what the terminal received)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdin, stdout and stderr are the terminal
        os.chdir(app_dir)
        os.execve(sys.executable, [sys.executable, *argv], env(app_dir))
    received = bytearray()
    deadline = time.monotonic() + 120  # a hang guard only
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), received.decode("utf-8", "replace")


def flowgen_in_terminal(app_dir: Path, *args: str) -> tuple[int, str]:
    return in_terminal(app_dir, "-m", "flowgen", *args)


# ---------------------------------------------------------------------------------------------
# piped: plain text


def test_piped_output_is_plain_text(app: tuple[Path, str]) -> None:
    app_dir, db = app
    for args in (
        ("ls", "--limit", "5"),
        ("show", "long-1"),
        ("sql", "select status, count(*) from workflows group by all"),
        ("check-replay", "termapp:branchy"),
    ):
        result = piped(app_dir, "--db", db, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert not ANSI.search(result.stdout + result.stderr), args
        assert result.stderr == ""  # no progress when piped
    listed = piped(app_dir, "--db", db, "ls", "--limit", "3").stdout.splitlines()
    assert listed[0].split()[:3] == ["id", "name", "status"]
    assert set(listed[1]) <= {"-", " "}


def test_ls_with_an_unknown_status_names_the_valid_ones(app: tuple[Path, str]) -> None:
    app_dir, db = app
    for command in (("ls",), ("check-replay", "termapp:branchy")):
        result = piped(app_dir, "--db", db, *command, "--status", "bogus")
        assert result.returncode == 2, result
        assert result.stdout == ""
        assert "invalid choice: 'bogus'" in result.stderr
        for status in RUN_STATUSES:
            assert status in result.stderr


def test_show_summarises_a_3000_step_history(app: tuple[Path, str]) -> None:
    app_dir, db = app
    result = piped(app_dir, "--db", db, "show", "long-1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 60
    assert (
        "history: 6,002 events (3,000 activity_scheduled, 3,000 activity_completed, "
        "1 workflow_started, 1 workflow_completed)"
    ) in lines
    numbers = [line.split()[0] for line in lines if re.match(r"\s*\d+\s+20\d\d-", line)]
    assert numbers == [str(i) for i in [*range(15), *range(5987, 6002)]]
    assert "5,972 events not shown (--all shows them)" in result.stdout

    fewer = piped(app_dir, "--db", db, "show", "long-1", "--events", "2").stdout
    assert "5,998 events not shown" in fewer

    everything = piped(app_dir, "--db", db, "show", "long-1", "--all")
    rows = [
        line
        for line in everything.stdout.splitlines()
        if re.match(r"\s*\d+\s+20\d\d-", line)
    ]
    assert len(rows) == 6002
    assert "not shown" not in everything.stdout


def test_check_replay_prints_a_summary_and_only_the_runs_that_diverged(
    app: tuple[Path, str],
) -> None:
    app_dir, db = app
    result = piped(app_dir, "--db", db, "check-replay", "termapp_changed:branchy")
    assert result.returncode == 1
    out = result.stdout
    assert out.startswith("replaying 120 stored run(s) of workflow 'term_branchy':")
    diverged = sorted(set(re.findall(r"^b-\d{3}", out, flags=re.MULTILINE)))
    assert diverged == [f"b-{n:03d}" for n in range(3, 120, 10)]  # none of the ok ones
    assert out.count("NonDeterminismError") == 10  # the first 10 messages in full
    assert "(2 more diverged runs are listed above without their message" in out
    assert out.rstrip().endswith("108 ok, 12 diverged")

    verbose = piped(
        app_dir, "--db", db, "check-replay", "termapp_changed:branchy", "--verbose"
    ).stdout
    assert verbose.count("NonDeterminismError") == 12
    assert len(re.findall(r"^b-\d{3} .* ok$", verbose, flags=re.MULTILINE)) == 108


# ---------------------------------------------------------------------------------------------
# a terminal: colour and progress, with rich; plain text and a progress line without


def test_a_terminal_gets_colour_and_an_aligned_table(app: tuple[Path, str]) -> None:
    app_dir, db = app
    code, screen = flowgen_in_terminal(app_dir, "--db", db, "ls", "--limit", "3")
    assert code == 0, screen
    assert ANSI.search(screen), screen
    text = ANSI.sub("", screen)
    header = next(line for line in text.splitlines() if line.strip().startswith("id"))
    assert header.split()[:3] == ["id", "name", "status"]
    # "completed" in green: an SGR sequence with 32 right before the word.
    assert re.search(r"\x1b\[[0-9;]*32m\s*completed", screen), screen


def test_check_replay_in_a_terminal_shows_progress_then_the_result(
    app: tuple[Path, str],
) -> None:
    app_dir, db = app
    code, screen = flowgen_in_terminal(
        app_dir, "--db", db, "check-replay", "termapp_changed:branchy"
    )
    assert code == 1
    text = ANSI.sub("", screen)
    assert "replaying" in text.split("replaying 120 stored run(s)")[0]  # the bar
    assert "120/120" in text
    assert "108 ok, 12 diverged" in text


def test_export_in_a_terminal_shows_progress(
    app: tuple[Path, str], tmp_path: Path
) -> None:
    app_dir, db = app
    code, screen = flowgen_in_terminal(
        app_dir, "--db", db, "export", str(tmp_path / "snap")
    )
    assert code == 0, screen
    text = ANSI.sub("", screen)
    assert "exporting" in text
    assert "wrote " in text and (tmp_path / "snap" / "events.parquet").exists()


def test_without_rich_a_terminal_gets_plain_tables_and_a_progress_line(
    app: tuple[Path, str],
) -> None:
    app_dir, db = app
    code, screen = in_terminal(
        app_dir,
        "-c",
        WITHOUT_RICH,
        "--db",
        db,
        "check-replay",
        "termapp_changed:branchy",
    )
    assert code == 1, screen
    assert "\rreplaying: 0/120" in screen  # the progress line, rewritten in place
    assert "\x1b[32m" not in screen  # no colour
    assert re.search(r"^id +run +status +replay\r?$", screen, flags=re.MULTILINE)
    assert "108 ok, 12 diverged" in screen


WORKER_APP = """
import flowgen as fg


@fg.workflow(name="term_napper")
def napper(n: int):
    yield fg.sleep(1.0)
    return n
"""

WORKER_SETUP = """
import sys
import flowgen as fg
import termworker

engine = fg.Engine(sys.argv[1])  # driven by hand: the starts are recorded, nothing runs
for n in range(5):
    engine.start(termworker.napper, n, id=f"nap-{n}")
engine.close()
"""


def test_worker_until_done_in_a_terminal_shows_the_runs_it_finished(
    app: tuple[Path, str], tmp_path: Path
) -> None:
    app_dir, _ = app
    (app_dir / "termworker.py").write_text(WORKER_APP)
    db = str(tmp_path / "naps.duckdb")
    subprocess.run(
        [sys.executable, "-c", WORKER_SETUP, db],
        env=env(app_dir),
        check=True,
        timeout=120,
        capture_output=True,
    )
    code, screen = flowgen_in_terminal(
        app_dir, "--db", db, "worker", "--import", "termworker", "--until-done",
        "--timeout", "60",
    )  # fmt: skip
    assert code == 0, screen
    text = ANSI.sub("", screen)
    assert "5 unfinished run(s) of term_napper" in text
    assert "finished runs" in text and "5/5" in text
    assert "done: no run of the imported workflows is running" in text
