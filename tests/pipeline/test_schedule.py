"""cx schedule: cron and data triggers with fake clocks, and one short real loop."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from cxlib.errors import CxError
from cxlib.pipeline.publish import read_pointer
from cxlib.pipeline.schedule import Scheduler


class FakeRun:
    """A refresh handle that finishes when the test says so."""

    def __init__(self):
        self.finished = False

    def done(self) -> bool:
        return self.finished


class Launcher:
    def __init__(self):
        self.calls: list[tuple[str, str]] = []
        self.handles: list[FakeRun] = []

    def __call__(self, study, trigger):
        self.calls.append((study, trigger.reason))
        handle = FakeRun()
        self.handles.append(handle)
        return handle

    def finish_all(self):
        for h in self.handles:
            h.finished = True


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def scheduled(make_spec, tmp_path):
    def build(cron="0 6 * * *", watch_data=False, launcher=None):
        spec = make_spec(schedule={"cron": cron, "timezone": "UTC", "watch_data": watch_data})
        launcher = launcher or Launcher()
        return Scheduler(spec, launch=launcher), launcher

    return build


def test_cron_fires_once_per_scheduled_time(scheduled):
    scheduler, launcher = scheduled()
    assert scheduler.tick(at(1, 5)) == []  # first start: remembers the time, no history to catch up
    assert scheduler.tick(at(1, 5, 59)) == []
    started = scheduler.tick(at(1, 6, 0))
    assert [(t.study, t.reason) for t in started] == [("telecom", "cron")]
    launcher.finish_all()
    assert scheduler.tick(at(1, 6, 1)) == []
    assert scheduler.tick(at(1, 23)) == []
    assert len(scheduler.tick(at(2, 6, 0))) == 1


def test_missed_runs_are_caught_up_once(scheduled, make_spec):
    scheduler, launcher = scheduled()
    scheduler.tick(at(1, 7))
    # the scheduler is down for three days; a new one starts from the saved state
    again = Scheduler(scheduler.spec, launch=launcher, state_path=scheduler.state_path)
    started = again.tick(at(4, 9))
    assert len(started) == 1
    assert "caught up once for 3 missed times" in started[0].detail
    launcher.finish_all()
    assert again.tick(at(4, 9, 30)) == []
    assert launcher.calls == [("telecom", "cron")]


def test_no_overlapping_runs_of_a_study(scheduled):
    scheduler, launcher = scheduled(cron="*/10 * * * *")
    scheduler.tick(at(1, 6, 0))
    assert len(scheduler.tick(at(1, 6, 10))) == 1
    # still running at the next two scheduled times: nothing starts, one refresh is kept
    assert scheduler.tick(at(1, 6, 20)) == []
    assert scheduler.tick(at(1, 6, 30)) == []
    assert list(scheduler.pending) == ["telecom"]
    launcher.finish_all()
    assert len(scheduler.tick(at(1, 6, 31))) == 1  # served once after the run finished
    assert scheduler.tick(at(1, 6, 32)) == []
    assert len(launcher.calls) == 2


def test_data_change_triggers_a_refresh(scheduled, small_study, tmp_path, make_spec):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "wave1.parquet").write_bytes((small_study.parent / "responses.parquet").read_bytes())
    spec = make_spec(
        studies=[{"spec": str(small_study), "data": str(exports / "*.parquet")}],
        schedule={"watch_data": True},
    )
    launcher = Launcher()
    scheduler = Scheduler(spec, launch=launcher)
    first = scheduler.tick(at(1, 6))
    assert [(t.reason, t.detail) for t in first] == [("start", "first check of the data")]
    launcher.finish_all()
    assert scheduler.tick(at(1, 6, 1)) == []
    (exports / "wave2.parquet").write_bytes(b"new wave")
    changed = scheduler.tick(at(1, 6, 2))
    assert [(t.reason, t.detail) for t in changed] == [("data", "new wave2.parquet")]


def test_side_table_change_triggers_a_refresh(small_study, tmp_path, make_spec):
    """A changed cost table counts as new data for the notebook that reads it."""
    import shutil

    from .conftest import write_notebook

    folder = tmp_path / "study"
    folder.mkdir()
    spec_file = shutil.copy(small_study, folder / "study.yaml")
    shutil.copy(small_study.parent / "responses.parquet", folder / "responses.parquet")
    costs = folder / "touchpoint_costs.csv"
    costs.write_text("touchpoint,cost_per_point\nshop,100\n")
    reader = write_notebook(
        tmp_path / "costs.ipynb",
        'output_dir: str = ""  # where artifacts go\n',
        'print(study.source_path("touchpoint_costs"))',
    )
    spec = make_spec(
        studies=[{"spec": str(spec_file)}],
        notebooks=[{"path": str(reader)}],
        schedule={"watch_data": True},
    )
    launcher = Launcher()
    scheduler = Scheduler(spec, launch=launcher)
    assert [t.reason for t in scheduler.tick(at(1, 6))] == ["start"]
    launcher.finish_all()
    assert scheduler.tick(at(1, 6, 1)) == []
    costs.write_text("touchpoint,cost_per_point\nshop,120\n")
    changed = scheduler.tick(at(1, 6, 2))
    assert [(t.reason, t.detail) for t in changed] == [("data", "changed touchpoint_costs.csv")]


def test_pipeline_without_schedule_is_refused(make_spec):
    with pytest.raises(CxError, match="has no `schedule:` section"):
        Scheduler(make_spec())


def test_real_loop_refreshes_and_publishes(make_spec, tmp_path):
    spec = make_spec(schedule={"watch_data": True, "poll_s": 0.05})
    scheduler = Scheduler(spec)
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run_forever, kwargs={"stop": stop})
    loop.start()
    try:
        deadline = time.monotonic() + 60
        while read_pointer(tmp_path / "runs" / "telecom") is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(60)
    assert not loop.is_alive()
    pointer = read_pointer(tmp_path / "runs" / "telecom")
    assert pointer is not None and "toy/default" in pointer["runs"]
    assert [t.reason for t in scheduler.history] == ["start"]  # polled many times, ran once
    assert datetime.fromisoformat(pointer["published_at"].replace("Z", "+00:00")) > datetime.now(
        UTC
    ) - timedelta(minutes=5)


def test_cli_schedule_without_schedule_and_unknown_run(make_spec, tmp_path):
    from click.testing import CliRunner

    from cxlib.cli import cx

    result = CliRunner().invoke(cx, ["schedule", str(make_spec()), "--once"])
    assert result.exit_code == 2 and "has no `schedule:` section" in result.output
    shown = CliRunner().invoke(
        cx,
        ["runs", "show", "nope", "--db", str(tmp_path / "x.duckdb"), "--runs-dir", str(tmp_path)],
    )
    assert shown.exit_code == 2 and "run 'nope' is not in the catalog" in shown.output
