"""The runner: success and publish, failures, gates, timeouts, kills, locks, skips."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from cxlib.cli import cx
from cxlib.pipeline.errors import StudyBusyError
from cxlib.pipeline.publish import read_pointer
from cxlib.pipeline.runner import run_pipeline
from cxlib.pipeline.store import ResultsStore

from .conftest import write_notebook

#: executes notebooks with papermill and real kernels (make check leaves them out)
pytestmark = pytest.mark.notebooks

STUDY = "telecom"


def study_dir(tmp_path) -> Path:
    return tmp_path / "runs" / STUDY


def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "runs" / "results.duckdb")


def no_temp_files(tmp_path) -> bool:
    return not [p for p in (tmp_path / "runs").rglob("*.tmp")]


def test_success_publishes_with_manifest_html_and_store(make_spec, tmp_path):
    spec = make_spec(
        parameter_sets={"w01": {"wave": "01"}, "q3": {"wave": "2026-Q3"}},
        execution={"export_html": True, "timeout_s": 60},
    )
    result = run_pipeline(spec, jobs=2, progress=False)
    assert result.ok, result.summary_table()
    assert [r.status for r in result.records] == ["succeeded", "succeeded"]
    assert all(r.published for r in result.records)

    pointer = read_pointer(study_dir(tmp_path))
    assert set(pointer["runs"]) == {"toy/w01", "toy/q3"}
    run = study_dir(tmp_path) / pointer["runs"]["toy/w01"]["run_id"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["parameters"]["wave"] == "01"  # a string stays a string
    assert manifest["parameters"]["output_dir"] == str(run / "artifacts")
    assert manifest["data"]["hash"] and len(manifest["data"]["hash"]) == 64
    assert manifest["code"]["version"].startswith("0.")
    assert manifest["packages"]["papermill"] and manifest["packages"]["python"]
    assert manifest["timings"]["duration_s"] > 0 and manifest["timings"]["execution_s"] > 0
    assert manifest["error"] is None and manifest["gate_failures"] == []
    assert (run / "toy.ipynb").is_file() and (run / "toy.html").is_file()
    assert "wave '01'" in (run / "toy.html").read_text()
    assert (run / "artifacts" / "tables" / "toy_values.parquet").is_file()
    assert {a["path"] for a in manifest["artifacts"]} >= {
        "manifest.json",
        "tables/toy_values.parquet",
    }

    rows = store(tmp_path).query(
        "select wave, run_id, study from published_toy_values order by wave"
    )
    assert rows["wave"].tolist() == ["01", "2026-Q3"]
    assert set(rows["study"]) == {STUDY}
    catalog = store(tmp_path).runs()
    assert {r["status"] for r in catalog} == {"succeeded"} and all(r["published"] for r in catalog)
    assert no_temp_files(tmp_path)

    listing = CliRunner().invoke(cx, ["runs", "--db", str(tmp_path / "runs" / "results.duckdb")])
    assert listing.exit_code == 0 and "toy/w01" in listing.output and " *" in listing.output
    shown = CliRunner().invoke(
        cx, ["runs", "show", run.name[:-2], "--db", str(tmp_path / "runs" / "results.duckdb")]
    )
    assert shown.exit_code == 0, shown.output
    assert "succeeded (published)" in shown.output and "wave = '01'" in shown.output


def test_skip_when_unchanged_force_and_data_change(make_spec, tmp_path, small_study):
    spec = make_spec()
    first = run_pipeline(spec, progress=False)
    assert first.counts() == {"succeeded": 1}
    again = run_pipeline(spec, progress=False)
    assert again.counts() == {"skipped": 1}
    assert again.records[0].run_id == first.records[0].run_id
    assert again.records[0].published

    forced = run_pipeline(spec, force=True, progress=False)
    assert forced.counts() == {"succeeded": 1}
    assert forced.records[0].run_id != first.records[0].run_id

    # exports picked by a glob: the same bytes under a new name are still up to date,
    # a new export with other answers triggers a refresh
    import pandas as pd

    exports = tmp_path / "exports"
    exports.mkdir()
    original = small_study.parent / "responses.parquet"
    (exports / "2026-01.parquet").write_bytes(original.read_bytes())
    globbed = make_spec(
        "globbed", studies=[{"spec": str(small_study), "data": str(exports / "*.parquet")}]
    )
    assert run_pipeline(globbed, progress=False).counts() == {"skipped": 1}
    pd.read_parquet(original).head(300).to_parquet(exports / "2026-02.parquet")
    refreshed = run_pipeline(globbed, progress=False)
    assert refreshed.counts() == {"succeeded": 1}
    assert refreshed.records[0].manifest["data"]["path"].endswith("2026-02.parquet")
    assert run_pipeline(globbed, progress=False).counts() == {"skipped": 1}


COSTS_PARAMETERS = """\
output_dir: str = ""  # where artifacts go
study_path: str = ""  # the study spec
costs_path: str = ""  # a cost table (CSV); empty: the spec's source.touchpoint_costs
"""

COSTS_BODY = """\
import pathlib

import pandas as pd

from cxlib.pipeline.artifacts import Artifacts
from cxlib.study import load_study

out = Artifacts(output_dir, notebook="costs")
source = pathlib.Path(costs_path) if costs_path else load_study(study_path).source_path("touchpoint_costs")
out.table("toy_costs", pd.read_csv(source))
out.finish()
"""


def test_side_tables_are_part_of_the_data_hash(make_spec, tmp_path, small_study, toy_notebook):
    """A changed cost table reruns the notebook that reads it, and only that one."""
    import shutil

    folder = tmp_path / "study"
    folder.mkdir()
    spec_file = shutil.copy(small_study, folder / "study.yaml")
    shutil.copy(small_study.parent / "responses.parquet", folder / "responses.parquet")
    costs = folder / "touchpoint_costs.csv"  # the sample spec's source.touchpoint_costs
    costs.write_text("touchpoint,cost_per_point\nshop,100\n")
    reader = write_notebook(tmp_path / "nb" / "costs.ipynb", COSTS_PARAMETERS, COSTS_BODY)
    spec = make_spec(
        studies=[{"spec": str(spec_file)}],
        notebooks=[{"path": str(toy_notebook)}, {"path": str(reader)}],
    )

    def statuses(**kwargs) -> dict[str, str]:
        result = run_pipeline(spec, progress=False, **kwargs)
        return {r.notebook: r.status for r in result.records}

    assert statuses() == {"toy": "succeeded", "costs": "succeeded"}
    assert statuses() == {"toy": "skipped", "costs": "skipped"}  # unchanged: up to date
    (run,) = [r for r in store(tmp_path).runs() if r["notebook"] == "costs"]
    manifest = json.loads((Path(run["run_dir"]) / "manifest.json").read_text())
    side = manifest["data"]["side_files"]["source.touchpoint_costs"]
    assert side["path"] == str(costs) and len(side["hash"]) == 64

    costs.write_text("touchpoint,cost_per_point\nshop,120\n")  # a new price
    assert statuses() == {"toy": "skipped", "costs": "succeeded"}
    assert store(tmp_path).query("select cost_per_point from published_toy_costs")[
        "cost_per_point"
    ].tolist() == [120]
    assert statuses() == {"toy": "skipped", "costs": "skipped"}
    costs.touch()  # the same bytes, a new modification time: still up to date
    assert statuses() == {"toy": "skipped", "costs": "skipped"}

    # a file given as a `*_path` parameter counts the same way
    given = tmp_path / "other_costs.csv"
    given.write_text("touchpoint,cost_per_point\nshop,80\n")
    spec = make_spec(
        studies=[{"spec": str(spec_file)}],
        notebooks=[{"path": str(reader), "parameters": {"costs_path": str(given)}}],
    )
    assert statuses() == {"costs": "succeeded"}
    assert statuses() == {"costs": "skipped"}
    given.write_text("touchpoint,cost_per_point\nshop,90\n")
    assert statuses() == {"costs": "succeeded"}


def test_notebook_that_raises_keeps_folder_and_previous_publication(make_spec, tmp_path):
    good = run_pipeline(make_spec(), progress=False)
    before = read_pointer(study_dir(tmp_path))
    published_before = store(tmp_path).query("select run_id from published_toy_values")

    spec = make_spec(parameters={"mode": "raise"}, execution={"export_html": True, "timeout_s": 60})
    result = CliRunner().invoke(cx, ["run", str(spec)])
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "boom: the toy notebook failed on purpose" in result.output

    assert read_pointer(study_dir(tmp_path)) == before  # the published result is unchanged
    assert store(tmp_path).query("select run_id from published_toy_values").equals(published_before)
    failed = [r for r in store(tmp_path).runs() if r["status"] == "failed"]
    assert len(failed) == 1 and "ValueError: boom" in failed[0]["error"]
    run = Path(failed[0]["run_dir"])
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["error"]["type"] == "ValueError"
    assert manifest["error"]["cell_index"] is not None
    assert "raise ValueError" in manifest["error"]["traceback"]
    executed = nbformat.read(run / "toy.ipynb", as_version=4)
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert (
        errors and errors[0]["ename"] == "ValueError"
    )  # the executed notebook keeps the traceback
    assert (run / "toy.html").is_file()
    assert good.records[0].run_id in {e["run_id"] for e in before["runs"].values()}


def test_gate_failure_is_not_published(make_spec, tmp_path):
    ok = run_pipeline(
        make_spec(parameters={"write_diagnostics": True, "r_hat": 1.001}), progress=False
    )
    assert ok.counts() == {"succeeded": 1}
    assert ok.records[0].diagnostics["max_r_hat"] == 1.001
    before = read_pointer(study_dir(tmp_path))

    gated = run_pipeline(
        make_spec(parameters={"write_diagnostics": True, "r_hat": 1.2}), progress=False
    )
    assert not gated.ok
    record = gated.records[0]
    assert record.status == "gated" and not record.published
    assert record.gate_failures == ["R-hat 1.2 > 1.01 (max_r_hat)"]
    assert read_pointer(study_dir(tmp_path)) == before
    row = store(tmp_path).runs(status="gated")[0]
    assert row["max_r_hat"] == pytest.approx(1.2) and "R-hat" in row["gate_failures"]
    assert "GATED" in gated.summary_table()


def test_execution_timeout_fails_the_run(make_spec, tmp_path, toy_notebook):
    spec = make_spec(
        parameters={"sleep_s": 30.0}, notebooks=[{"path": str(toy_notebook), "timeout_s": 1}]
    )
    started = time.perf_counter()
    result = run_pipeline(spec, progress=False)
    assert time.perf_counter() - started < 20
    record = result.records[0]
    assert record.status == "failed"
    assert "execution timeout (1 s" in record.error
    assert read_pointer(study_dir(tmp_path)) is None


def test_run_time_limit_stops_a_notebook_whose_cells_each_stay_in_time(make_spec, tmp_path):
    spec = make_spec(
        parameters={"sleep_s": 30.0},
        execution={"export_html": False, "timeout_s": 60, "run_timeout_s": 2},
    )
    started = time.perf_counter()
    (record,) = run_pipeline(spec, progress=False).records
    assert time.perf_counter() - started < 20
    assert record.status == "failed"
    assert "execution.run_timeout_s = 2 s" in record.error
    assert read_pointer(study_dir(tmp_path)) is None


def test_pipeline_time_limit_fails_the_running_run_and_starts_no_more(make_spec, tmp_path):
    spec = make_spec(
        parameters={"sleep_s": 30.0},
        parameter_sets={"first": {"wave": "1"}, "second": {"wave": "2"}},
        execution={"export_html": False, "timeout_s": 60, "pipeline_timeout_s": 3},
    )
    started = time.perf_counter()
    result = run_pipeline(spec, progress=False)
    assert time.perf_counter() - started < 25
    first, second = result.records
    assert first.status == "failed" and "pipeline's time limit" in first.error
    assert second.status == "blocked"
    assert "execution.pipeline_timeout_s = 3 s" in second.error and not second.run_id
    assert not result.ok
    assert read_pointer(study_dir(tmp_path)) is None


def test_killed_run_leaves_nothing_half_published_and_rerun_succeeds(make_spec, tmp_path):
    first = run_pipeline(make_spec(), progress=False)
    before = read_pointer(study_dir(tmp_path))
    slow = make_spec(parameters={"sleep_s": 60.0})
    code = (
        "from cxlib.pipeline.runner import run_pipeline\n"
        f"run_pipeline({str(slow)!r}, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        first_id = first.records[0].run_id
        started = _wait_for(
            lambda: [
                p for p in study_dir(tmp_path).glob("*/artifacts/started") if first_id not in str(p)
            ],
            60,
        )
        run_dir = started[0].parent.parent
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert read_pointer(study_dir(tmp_path)) == before
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "running"
    assert no_temp_files(tmp_path)

    rerun = run_pipeline(make_spec(parameters={"sleep_s": 0.5}), progress=False)
    assert rerun.counts() == {"succeeded": 1}
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "aborted"
    after = read_pointer(study_dir(tmp_path))
    assert after["runs"]["toy/default"]["run_id"] == rerun.records[0].run_id
    assert after["previous"] == before["publication_id"]
    statuses = {r["run_id"]: r["status"] for r in store(tmp_path).runs()}
    assert statuses[run_dir.name] == "aborted"
    assert no_temp_files(tmp_path)


def test_second_runner_on_a_study_waits_or_exits(make_spec, tmp_path):
    spec = make_spec(parameters={"sleep_s": 3.0})
    results = {}
    thread = threading.Thread(
        target=lambda: results.setdefault("a", run_pipeline(spec, progress=False))
    )
    thread.start()
    try:
        _wait_for(lambda: list(study_dir(tmp_path).glob("*/artifacts/started")), 60)
        with pytest.raises(StudyBusyError) as excinfo:
            run_pipeline(spec, progress=False)
        message = str(excinfo.value)
        assert "study 'telecom' is being refreshed by another runner" in message
        assert f"pid {os.getpid()}" in message and "--wait" in message
        cli = CliRunner().invoke(cx, ["run", str(spec)])
        assert cli.exit_code == 2 and "being refreshed by another runner" in cli.output
        waited = run_pipeline(spec, progress=False, wait_s=60)  # queues behind the first
    finally:
        thread.join(60)
    assert results["a"].counts() == {"succeeded": 1}
    assert waited.counts() == {"skipped": 1}  # the first runner's result is up to date
    assert len(list(study_dir(tmp_path).glob("*/manifest.json"))) == 1


def _wait_for(condition, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _as_from_a_shell() -> None:
    """In the child before exec: SIGINT at its default, as a shell starts a command.

    The runner keeps SIGINT ignored when its parent ignores it (as under nohup), and an
    ignored disposition survives exec; something earlier in a full test session leaves
    the pytest process with SIGINT ignored, so without this the runner ignored Ctrl-C here
    and its notebooks ran into their 60 s cell timeout (reproduced by ignoring SIGINT in
    the pytest process).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_parallel_runner_stops_its_notebooks_at_once(make_spec, tmp_path, sig):
    spec = make_spec(
        parameters={"sleep_s": 120.0},
        parameter_sets={"first": {"wave": "1"}, "second": {"wave": "2"}},
    )
    cx_bin = Path(sys.executable).with_name("cx")
    proc = subprocess.Popen(
        [str(cx_bin), "run", str(spec), "--jobs", "2"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_from_a_shell,
    )
    try:
        # both notebooks are inside their long cell: wait for that state, however long
        # kernels take to start on a loaded machine, but stop at once if a run ended
        _wait_for_runs_started(proc, study_dir(tmp_path), 2, timeout_s=240)
        kernels = _kernel_pids(proc.pid)
        assert len(kernels) == 2
        started = time.monotonic()
        os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=60)  # not the notebooks' 120 s
        assert time.monotonic() - started < 60
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "stopped 2 running notebook(s)" in out, out
    _wait_for(lambda: not [pid for pid in kernels if _running(pid)], 30)  # no kernel left
    manifests = [json.loads(p.read_text()) for p in study_dir(tmp_path).glob("*/manifest.json")]
    assert [m["status"] for m in manifests] == ["failed", "failed"]
    name = signal.Signals(sig).name
    assert all(
        m["error"]["type"] == "Interrupted" and f"{name} received" in m["error"]["message"]
        for m in manifests
    ), [m["error"] for m in manifests]
    assert read_pointer(study_dir(tmp_path)) is None


def _wait_for_runs_started(proc, folder: Path, n: int, timeout_s: float) -> None:
    """Wait until ``n`` runs wrote their ``started`` marker; fail fast if the runner or a run ended."""

    def state():
        if proc.poll() is not None:
            raise AssertionError(f"the runner exited early:\n{proc.stdout.read()}")
        for path in folder.glob("*/manifest.json"):
            try:
                manifest = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if manifest["status"] != "running":
                raise AssertionError(f"run {path.parent.name} ended: {manifest['error']}")
        return len(list(folder.glob("*/artifacts/started"))) == n

    _wait_for(state, timeout_s)


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (killed, not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _kernel_pids(parent: int) -> list[int]:
    """The kernel processes a runner started (Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            try:
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:  # it just exited
                continue
            if b"ipykernel" in cmdline:
                pids.append(int(stat.parent.name))
    return pids
