"""``flowgen reset``, ``retry`` and ``prune``: on a file, and through a running application.

On a file no application holds, the command opens it (the new run moves when code that
defines it opens the file). While an application holds it, the real CLI (subprocesses)
goes through the application's control socket and the new run starts there at once.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

import flowgen as fg
from flowgen._runtime.clock import ManualClock
from flowgen.cli.main import main
from tests.cli_process import flowgen, ok, reap, start_app


@fg.workflow
def two_steps(fail: bool) -> fg.Workflow[list[str]]:
    first = yield fg.side_effect(lambda: "first")
    second = yield from fg.call(maybe_fail, fail)
    return [first, second]


FAIL_NEXT = {"fail": True}


@fg.activity(retry=fg.RetryPolicy(max_attempts=1))
def maybe_fail(fail: bool) -> str:
    if fail and FAIL_NEXT["fail"]:
        raise RuntimeError("down")
    return "second"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def failed_file(tmp_path: Path) -> str:
    """A DuckDB file with one failed run of `two_steps` (id ``t-1``), closed in 2020."""
    db = str(tmp_path / "lineage.duckdb")
    clock = ManualClock(datetime(2020, 1, 1, tzinfo=UTC))
    FAIL_NEXT["fail"] = True
    with_engine = fg.Engine(db, clock=clock, control_socket=False)
    try:
        handle = with_engine.start(two_steps, True, id="t-1")
        with_engine.run_until_idle()
        assert handle.status() == "failed"
    finally:
        with_engine.close()
    return db


def test_reset_and_retry_on_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = failed_file(tmp_path)
    # Event 2 schedules the activity that failed: the new run calls it again.
    code, out, err = cli(capsys, "--db", db, "reset", "t-1", "--event", "2")
    assert code == 0, err
    assert "of 't-1' reset from run" in out and "events 0..2 copied" in out

    code, _, err = cli(capsys, "--db", db, "retry", "t-1")
    assert code == 1
    assert "'t-1' is running" in err and "--terminate" in err  # the reset run runs

    code, out, err = cli(capsys, "--db", db, "retry", "t-1", "--terminate")
    assert code == 0, err
    assert "retries run" in out

    code, out, err = cli(capsys, "--db", db, "show", "t-1")
    assert code == 0, err
    assert "origin    a retry of run" in out

    # The application opens the file: the retried run runs, with the same argument.
    FAIL_NEXT["fail"] = False
    engine = fg.Engine(db, clock=ManualClock(), control_socket=False)
    try:
        engine.run_until_idle()
        assert engine.get("t-1").result() == ["first", "second"]
        rows = engine.sql(
            "select payload->>'origin_kind', status from events join workflows "
            "using (run_id) where kind = 'workflow_started' order by started_at"
        ).fetchall()
        assert rows == [
            (None, "failed"),
            ("reset", "terminated"),
            ("retry", "completed"),
        ]
    finally:
        engine.close()


def test_bad_requests_on_the_command_line_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = failed_file(tmp_path)
    before = duckdb.connect(db).execute("select count(*) from events").fetchall()
    for args, message in [
        (("reset", "nobody", "--event", "1"), "no workflow with id 'nobody'"),
        (("retry", "nobody"), "no workflow with id 'nobody'"),
        (("reset", "t-1", "--event", "99"), "event_id must be between 0 and"),
        (("reset", "t-1", "--event", "-1"), "event_id must be between 0 and"),
        (("prune", "--older-than", "30 days"), "--older-than: older_than must be"),
        (("prune", "--older-than", "0s"), "older_than must be positive"),
    ]:
        code, _, err = cli(capsys, "--db", db, *args)
        assert (code, message in err) == (1, True), (args, err)
    after = duckdb.connect(db).execute("select count(*) from events").fetchall()
    assert after == before


def test_prune_on_a_file_exports_then_deletes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = failed_file(tmp_path)  # the run closed on the manual clock: long ago
    archive = tmp_path / "archive"
    code, out, err = cli(
        capsys, "--db", db, "prune", "--older-than", "30d", "--export-to", str(archive)
    )
    assert code == 0, err
    assert "pruned 1 run(s)" in out and "2 files" in out
    con = duckdb.connect()
    kinds = con.execute(
        f"select kind from '{archive}/events-*.parquet' order by event_id"
    ).fetchall()
    assert kinds[0] == ("workflow_started",) and kinds[-1] == ("workflow_failed",)
    code, out, _ = cli(capsys, "--db", db, "ls")
    assert "t-1" not in out


APP = """
import json, sys
import flowgen as fg

@fg.workflow
def echo(value):
    got = yield fg.side_effect(lambda: value)
    return got

engine = fg.Engine(sys.argv[1], workflows=[echo])
with engine:
    engine.start(echo, "hello", id="e-1").result(timeout=60)
    print("ready", flush=True)
    if sys.stdin.readline():
        runs = engine.list_runs(limit=None)
        print(json.dumps(sorted(
            [r.workflow_id, r.status, engine.get(r.workflow_id).result(timeout=60)]
            for r in runs
        )), flush=True)
"""


def test_reset_retry_and_prune_go_through_a_running_application(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "app.duckdb")
    script = tmp_path / "app.py"
    script.write_text(APP)
    app = start_app(script, db)
    try:
        retried = ok(flowgen("--db", db, "retry", "e-1"))
        assert "of 'e-1' retries run" in retried and "it is now" in retried
        reset = ok(flowgen("--db", db, "reset", "e-1", "--event", "1"))
        assert "events 0..1 copied" in reset
        refused = flowgen("--db", db, "reset", "e-1", "--event", "50")
        assert refused.returncode == 1 and "event_id must be between" in refused.stderr

        time.sleep(1.5)  # every run closed at least a second ago (a lower bound only)
        pruned = ok(flowgen("--db", db, "prune", "--older-than", "1s"))
        assert "pruned 3 run(s)" in pruned
        out, err = app.communicate("stop\n", timeout=120)
        assert app.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == []
    finally:
        reap(app)


def test_retry_and_prune_on_postgresql(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    FAIL_NEXT["fail"] = True
    engine = fg.Engine(pg_url, clock=ManualClock(datetime(2020, 1, 1, tzinfo=UTC)))
    try:
        engine.start(two_steps, True, id="t-1")
        engine.run_until_idle()
        assert engine.get("t-1").status() == "failed"
    finally:
        engine.close()
    code, out, err = cli(capsys, "--db", pg_url, "retry", "t-1")
    assert code == 0, err
    assert "of 't-1' retries run" in out
    code, out, err = cli(capsys, "--db", pg_url, "retry", "t-1")
    assert code == 1 and "'t-1' is running" in err
    code, out, err = cli(capsys, "--db", pg_url, "prune", "--older-than", "30d")
    assert code == 0, err
    assert "pruned 1 run(s)" in out  # the failed run of 2020; the retry runs
