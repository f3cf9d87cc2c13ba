"""Public objects used wrongly: a clear TypeError, ValueError or UsageError naming the
argument, before anything is made or written, and never a hang.

The engine's constructor (a path DuckDB cannot open, a lock_timeout of NaN, a max_workers
that is no int), an engine used after `close`, and a `ManualClock` moved by something that is no duration.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

import flowgen as fg
from flowgen.cli import main
from flowgen.testing import ManualClock


@fg.workflow(name="misuse_waiter")
def waiter() -> fg.Workflow[object]:
    got = yield fg.wait_signal("go")
    return got


@pytest.mark.parametrize("lock_timeout", [float("nan"), -1, True, "10"])
def test_a_lock_timeout_that_is_no_number_of_seconds_is_refused_before_opening(
    tmp_path: Path, lock_timeout: object
) -> None:
    # NaN made the wait for a file another process holds endless: the deadline
    # now + NaN is never reached.
    path = tmp_path / "t.duckdb"
    with pytest.raises(ValueError, match="lock_timeout must be seconds >= 0"):
        fg.Engine(str(path), lock_timeout=lock_timeout)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("max_workers", [float("nan"), True, 2.5])
def test_a_max_workers_that_is_no_int_is_refused(
    tmp_path: Path, max_workers: object
) -> None:
    with pytest.raises(TypeError, match="max_workers must be an int"):
        fg.Engine(str(tmp_path / "t.duckdb"), max_workers=max_workers)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_path_duckdb_cannot_open_is_a_store_error_naming_it(tmp_path: Path) -> None:
    # A name that is not UTF-8 reached DuckDB, which failed with RuntimeError: std::bad_cast.
    undecodable = os.fsdecode(os.fsencode(str(tmp_path)) + b"/bad\xff.duckdb")
    with pytest.raises(fg.StoreError, match="not UTF-8"):
        fg.Engine(undecodable)
    with pytest.raises(fg.StoreError, match="NUL"):
        fg.Engine(str(tmp_path / "a\0b.duckdb"))
    with pytest.raises(TypeError, match="a database path must be a str"):
        fg.Engine(os.fsencode(str(tmp_path / "b.duckdb")))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_on_a_file_whose_name_is_not_utf8_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = os.fsencode(str(tmp_path)) + b"/bad\xff.duckdb"
    with open(name, "wb") as file:
        file.write(b"not even DuckDB")
    assert main(["--db", os.fsdecode(name), "ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flowgen: ") and "not UTF-8" in err
    with open(name, "rb") as file:
        assert file.read() == b"not even DuckDB"


def test_run_until_idle_on_a_closed_engine_is_a_usage_error(tmp_path: Path) -> None:
    engine = fg.Engine(str(tmp_path / "t.duckdb"), control_socket=False)
    engine.start(waiter, id="w")
    engine.close()
    with pytest.raises(fg.UsageError, match="closed"):
        engine.run_until_idle()


@pytest.mark.parametrize(
    ("seconds", "error"),
    [
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (1e300, ValueError),
        (10**400, ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
    ids=["nan", "inf", "1e300", "10**400", "str", "bool"],
)
def test_a_manual_clock_moved_by_no_duration_says_so(
    seconds: object, error: type[Exception]
) -> None:
    # NaN said "cannot convert float NaN to integer", 1e300 raised OverflowError.
    clock = ManualClock()
    before = clock.now()
    with pytest.raises(error, match=r"advance\(\) takes"):
        clock.advance(seconds)  # type: ignore[arg-type]
    stepper = fg.Stepper(waiter)
    with pytest.raises(error, match=r"advance\(\) takes"):
        stepper.advance(seconds)  # type: ignore[arg-type]
    assert clock.now() == before


def test_a_manual_clock_set_or_started_with_no_aware_datetime_says_so() -> None:
    with pytest.raises(TypeError, match="must be a datetime"):
        ManualClock(float("nan"))  # type: ignore[arg-type]
    clock = ManualClock()
    with pytest.raises(TypeError, match="timezone-aware datetime"):
        clock.set(datetime(2030, 1, 1))  # naive on purpose
    with pytest.raises(TypeError, match="timezone-aware datetime"):
        clock.set("2030-01-01")  # type: ignore[arg-type]


def test_a_clock_that_is_no_clock_is_refused_before_opening(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="clock must be a Clock"):
        fg.Engine(str(tmp_path / "t.duckdb"), clock="2030-01-01")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_save_and_load_history_refuse_what_is_no_history_naming_it(
    tmp_path: Path,
) -> None:
    # save_history([1]) raised KeyError: <class 'int'>; a file of text that is no JSON
    # object raised JSONDecodeError or AttributeError, where HistoryCorruptError is promised.
    from flowgen.testing import load_history, save_history

    with pytest.raises(TypeError, match="item 0 is int"):
        save_history(tmp_path / "h.jsonl", [1])  # type: ignore[list-item]
    assert not (tmp_path / "h.jsonl").exists()
    bad = tmp_path / "bad.jsonl"
    for text, mentions in [
        ("{]\n", "line 1: not JSON"),
        ('\n[{"kind": "workflow_started"}]\n', "line 2: an event is a JSON object"),
        ('{"kind": "nope"}\n', "unknown event kind"),
    ]:
        bad.write_text(text)
        with pytest.raises(fg.HistoryCorruptError, match=mentions):
            load_history(bad)
    stepper = fg.Stepper(waiter)
    stepper.next()
    stepper.signal("go", 1)
    save_history(tmp_path / "good.jsonl", stepper.history)
    assert load_history(tmp_path / "good.jsonl") == stepper.history


def test_an_empty_path_is_refused_not_taken_as_a_database_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Engine("") (an unset variable, say) acknowledged starts that were gone at the next
    # open: DuckDB made it a database in memory, with a journal beside the working folder.
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(ValueError, match="must not be empty"):
        fg.Engine("")
    assert list(tmp_path.iterdir()) == [tmp_path / "cwd"]
    assert list((tmp_path / "cwd").iterdir()) == []


def test_a_file_name_too_long_for_the_files_beside_it_is_refused_before_making_it(
    tmp_path: Path,
) -> None:
    # A 255-byte name: DuckDB made the file, then failed on its WAL's name ("cannot
    # rollback - no transaction is active"), and the file was no database after that.
    path = tmp_path / ("d" * 248 + ".duckdb")
    with pytest.raises(fg.StoreError, match="name is too long"):
        fg.Engine(str(path))
    assert list(tmp_path.iterdir()) == []
    fg.Engine(str(tmp_path / ("d" * 237 + ".duckdb"))).close()  # 244 bytes: the longest
