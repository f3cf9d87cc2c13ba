"""flowgen.notebook: the timeline of a run, the database charts and the progress bars."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

import flowgen as fg
from flowgen import notebook
from flowgen._runtime.engine import memory_engine
from flowgen.testing import ManualClock

clock_for_activities: list[ManualClock] = []
failures_left: dict[str, int] = {}


@fg.activity(retry=fg.RetryPolicy(max_attempts=4, initial_interval=10))
def nb_work(key: str, seconds: float) -> str:
    clock_for_activities[-1].advance(seconds)
    if failures_left.get(key, 0) > 0:
        failures_left[key] -= 1
        raise TimeoutError(f"{key} timed out")
    return key


@fg.workflow
def nb_child(seconds: float) -> fg.Workflow[str]:
    yield fg.sleep(seconds)
    return "child done"


@fg.workflow
def nb_everything(key: str) -> fg.Workflow[str]:
    yield fg.call(nb_work, key, 5.0)
    yield fg.gather(fg.call(nb_work, f"{key}-b", 2.0), fg.child(nb_child, 30.0))
    yield fg.sleep(timedelta(minutes=5))
    index, _ = yield fg.race(fg.wait_signal("go"), fg.sleep(3600))
    yield fg.call(nb_work, f"{key}-flaky", 1.0)
    yield fg.side_effect(lambda: 4, name="dice")
    return f"{key}:{index}"


def run_everything(
    engine: fg.Engine, clock: ManualClock, key: str
) -> fg.WorkflowHandle:
    failures_left[f"{key}-flaky"] = 2
    h = engine.start(nb_everything, key, id=key)
    for _ in range(4):
        engine.run_until_idle()
        clock.advance(400)
    h.signal("go")
    engine.run_until_idle()
    for _ in range(3):
        clock.advance(60)
        engine.run_until_idle()
    return h


@pytest.fixture
def engine_and_clock() -> tuple[fg.Engine, ManualClock]:
    clock = ManualClock(autojump=False)
    clock_for_activities.append(clock)
    engine = fg.Engine(":memory:", clock=clock)
    yield engine, clock  # type: ignore[misc]
    engine.close()


def labels(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.axes[0].get_yticklabels()]


def test_timeline_draws_one_row_per_command_from_a_handle(
    engine_and_clock: tuple[fg.Engine, ManualClock],
) -> None:
    engine, clock = engine_and_clock
    h = run_everything(engine, clock, "k1")
    assert h.result() == "k1:0"
    figure = h.timeline()
    assert isinstance(figure, Figure)
    assert labels(figure) == [
        "run",
        "0 · nb_work",
        "1 · nb_work",
        "2 · child nb_child",
        "3 · sleep 5m 00s",
        "4 · wait 'go'",
        "5 · sleep 1h 00m",
        "6 · nb_work",
        "7 · side effect dice",
    ]
    notes = [t.get_text() for t in figure.axes[0].texts]
    assert "3 attempts" in notes
    assert "cancelled (race)" in notes
    assert "k1/2" in notes  # the child's id
    assert figure.axes[0].get_title(loc="left") == "k1 (completed)"
    assert figure._repr_png_().startswith(b"\x89PNG")  # Jupyter shows it without pyplot


def test_timeline_takes_a_history_or_a_stepper_and_refuses_anything_else(
    engine_and_clock: tuple[fg.Engine, ManualClock],
) -> None:
    engine, clock = engine_and_clock
    h = run_everything(engine, clock, "k2")
    from_list = notebook.timeline(list(h.history()), title="mine")
    assert from_list.axes[0].get_title(loc="left") == "mine"
    stepper = engine.replay("k2")
    stepper.goto(3)
    assert labels(notebook.timeline(stepper))[:3] == [
        "run",
        "0 · nb_work",
        "1 · nb_work",
    ]
    with pytest.raises(ValueError, match="empty history"):
        notebook.timeline([])
    with pytest.raises(TypeError, match="WorkflowHandle, a Stepper or a list"):
        notebook.timeline(42)  # type: ignore[arg-type]


def test_a_running_run_shows_open_waits(
    engine_and_clock: tuple[fg.Engine, ManualClock],
) -> None:
    engine, _clock = engine_and_clock
    h = engine.start(nb_everything, "k3", id="k3")
    engine.run_until_idle()
    figure = h.timeline()
    assert labels(figure)[-1] == "2 · child nb_child"
    assert "running" in figure.axes[0].get_xlabel()


def test_latency_and_failure_charts_read_the_views(
    engine_and_clock: tuple[fg.Engine, ManualClock],
) -> None:
    engine, clock = engine_and_clock
    for key in ("a", "b", "c"):
        run_everything(engine, clock, key)
    latency = notebook.latency_chart(engine)
    assert labels(latency) == ["nb_work"]
    per_attempt = notebook.latency_chart(engine, per="attempt")
    assert "per attempt" in per_attempt.axes[0].get_title(loc="left")
    failures = notebook.failures_chart(engine)
    legend = [t.get_text() for t in failures.axes[0].get_legend().get_texts()]
    assert legend == ["TimeoutError (6)"]
    hourly = notebook.failures_chart(engine, bucket="1 hour")
    assert "per 1 hour" in hourly.axes[0].get_title(loc="left")
    with pytest.raises(ValueError, match="per must be"):
        notebook.latency_chart(engine, per="run")


def test_charts_of_an_empty_database_say_so() -> None:
    with fg.Engine(":memory:") as engine:
        assert notebook.latency_chart(engine).axes[0].texts[0].get_text() == (
            "no activities yet"
        )
        assert notebook.failures_chart(engine).axes[0].texts[0].get_text() == (
            "no failures"
        )


def test_charts_need_a_sql_store() -> None:
    engine = memory_engine(clock=ManualClock())
    with pytest.raises(fg.UsageError, match="SQL views of a DuckDB store"):
        notebook.latency_chart(engine)


def test_progress_writes_one_updating_line_outside_jupyter() -> None:
    out = io.StringIO()
    with notebook.Progress(total=4, desc="runs", unit="runs", file=out) as bar:
        for _ in range(4):
            bar.update()
    final = out.getvalue().split("\r")[-1]
    assert final.startswith("runs: 100% |████████████████████| 4/4 runs [")
    assert final.endswith("runs/s]\n")
    unknown = io.StringIO()
    bar = notebook.Progress(desc="seen", file=unknown)
    bar.set(7)
    bar.close()
    bar.close()
    assert unknown.getvalue().split("\r")[-1].startswith("seen: 7 it [")


def test_progress_wraps_an_iterable(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(notebook.progress(range(3), desc="x")) == [0, 1, 2]
    assert list(notebook.progress(iter("ab"))) == ["a", "b"]
    err = capsys.readouterr().err
    assert "3/3 it" in err and "2 it [" in err


def test_run_until_idle_drives_a_hand_driven_engine_to_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = ManualClock()
    clock_for_activities.append(clock)
    with_engine = fg.Engine(":memory:", clock=clock)
    try:
        for i in range(30):
            with_engine.start(nb_child, float(i), id=f"c{i}")
        rounds = notebook.run_until_idle(with_engine)
        assert rounds > 1
        assert with_engine.list_runs(status="running") == []
    finally:
        with_engine.close()
    assert "30/30 runs" in capsys.readouterr().err
