"""The command line and applications as real subprocesses, for the CLI tests.

One copy of how the tests run ``python -m flowgen`` and an application script:

* `cli_env`: the test process's environment without ``FLOWGEN_DB`` (a developer's own
  default database must never leak into a test), with an application folder first on
  ``PYTHONPATH`` when given, so ``--import app`` finds the test's module.
* `flowgen`: ``python -m flowgen ARGS``, output captured, never raising on a non-zero exit
  (tests assert on the exit code and the message).
* `ok`: the output of a command that must have succeeded, without a traceback on stderr
  (the failure shows all of it).
* `start_app`: an application script started with pipes, returned once it printed its
  ``ready`` line (a script that dies first fails the test with its stderr).
* `reap`: kill a process if it still runs and close its pipes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["cli_env", "flowgen", "ok", "reap", "start_app"]


def cli_env(app_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a subprocess: ours, minus ``FLOWGEN_DB``, *app_dir* importable."""
    env = {k: v for k, v in os.environ.items() if k != "FLOWGEN_DB"}
    if app_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(app_dir), env.get("PYTHONPATH", "")) if p
        )
    env.update(extra)
    return env


def flowgen(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    app_dir: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m flowgen ARGS`` in a subprocess (*app_dir* importable, see `cli_env`)."""
    return subprocess.run(
        [sys.executable, "-m", "flowgen", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else cli_env(app_dir),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The standard output of a command that must have exited 0."""
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def start_app(
    script: Path | str,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready: str | None = "ready",
) -> subprocess.Popen[str]:
    """Run ``python SCRIPT ARGS`` with pipes; once it printed *ready*, return it.

    *script* is a path, or the source text itself (run with ``-c``). With ``ready=None``
    the process is returned at once, for a test that reads its first lines itself.
    """
    target = [str(script)] if isinstance(script, Path) else ["-c", script]
    process = subprocess.Popen(
        [sys.executable, *target, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else cli_env(),
        cwd=cwd,
    )
    if ready is None:
        return process
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != ready:
        process.kill()
        _, err = process.communicate(timeout=60)
        reap(process)
        raise AssertionError(f"the application did not start: {line!r} {err}")
    return process


def reap(process: subprocess.Popen[str]) -> None:
    """Kill *process* if it still runs, and close its pipes."""
    if process.poll() is None:
        process.kill()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
    process.wait(timeout=60)
