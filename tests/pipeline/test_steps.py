"""The planner's and the runner's named steps, each on its own (no notebook is executed)."""

from __future__ import annotations

import json
from concurrent.futures import Future
from pathlib import Path

import pytest
from tqdm.auto import tqdm

from cxlib.pipeline.errors import PipelineSpecError
from cxlib.pipeline.plan import (
    RunTask,
    check_shared_parameters,
    layered_values,
    parameter_layers,
    read_notebook,
    resolve_study,
    run_parameters,
    select_study,
)
from cxlib.pipeline.publish import read_pointer
from cxlib.pipeline.runner import (
    RefreshState,
    RunRecord,
    check_run_options,
    execute_runs,
    input_runs,
    latest_succeeded,
    ready_tasks,
)


# ---------------------------------------------------------------- planner steps
def test_resolve_study_names_the_entry_and_takes_the_last_file_of_a_glob(
    spec_from, tmp_path, small_study
):
    exports = tmp_path / "exports"
    exports.mkdir()
    for name in ("wave-2.csv", "wave-10.csv", "wave-1.csv"):
        (exports / name).write_text("x\n")
    spec = spec_from(
        {
            "name": "p",
            "studies": [
                {"spec": "missing.yaml"},
                {"spec": str(small_study), "data": "exports/nothing-*.csv"},
                {"spec": str(small_study), "data": "exports/wave-*.csv"},
            ],
            "notebooks": [{"path": "nb.ipynb"}],
        }
    )
    missing, no_match, found = (resolve_study(spec, i, e) for i, e in enumerate(spec.studies))
    assert missing.startswith("studies[0].spec: study spec ") and "does not exist" in missing
    assert no_match.startswith("studies[1].data: the glob ") and "matches no file" in no_match
    assert found.name == "telecom" and found.index == 2 and found.path == small_study
    assert found.data_file.name == "wave-2.csv"  # name order: wave-1, wave-10, wave-2


def test_select_study_refuses_an_unknown_one_only_when_nothing_else_is_wrong(
    spec_from, small_study
):
    spec = spec_from(
        {"name": "p", "studies": [{"spec": str(small_study)}], "notebooks": [{"path": "nb.ipynb"}]}
    )
    studies = [resolve_study(spec, 0, spec.studies[0])]
    assert select_study(spec, studies, None, any_problems=False) == studies
    assert select_study(spec, studies, "telecom", any_problems=False) == studies
    with pytest.raises(PipelineSpecError) as excinfo:
        select_study(spec, studies, "telekom", any_problems=False)
    assert "--study 'telekom': the pipeline has no such study (it has: telecom)" in str(
        excinfo.value
    )
    assert "did you mean 'telecom'?" in str(excinfo.value)
    # the study may be one that failed to load: the problems already say why
    assert select_study(spec, studies, "telekom", any_problems=True) == []


@pytest.fixture
def toy_spec(spec_from, small_study, toy_notebook):
    return spec_from(
        {
            "name": "p",
            "studies": [{"spec": str(small_study), "parameters": {"wave": "study"}}],
            "notebooks": [
                {
                    "path": str(toy_notebook),
                    "parameters": {"sleep_s": 0.5, "mode": "ok"},
                    "fast_parameters": {"sleep_s": 0},
                }
            ],
            "parameters": {"wave": "pipeline", "r_hat": 1.0, "no_such": 1},
            "parameter_sets": {"default": {"wave": "set", "mdoe": "raise"}},
            "fast_parameters": {"wave": "fast"},
        }
    )


def test_layered_values_later_layers_win_and_strict_layers_name_declared_parameters(
    toy_spec, tmp_path
):
    study = resolve_study(toy_spec, 0, toy_spec.studies[0])
    notebook, problems = read_notebook(toy_spec, 0, toy_spec.notebooks[0])
    assert problems == []

    layers = parameter_layers(toy_spec, study, notebook, "default", fast=False)
    values, problems = layered_values(layers, notebook)
    assert values["wave"] == ("parameter_sets.default", "set")
    assert values["sleep_s"] == ("notebooks[0].parameters", 0.5)
    assert values["r_hat"] == ("parameters", 1.0)
    assert "no_such" not in values  # a shared parameter goes only where it is declared
    assert problems == [
        "parameter_sets.default.mdoe: toy.ipynb does not declare a parameter 'mdoe' (it "
        "declares: " + ", ".join(notebook.declared) + "); did you mean 'mode'?"
    ]

    fast_values, _ = layered_values(
        parameter_layers(toy_spec, study, notebook, "default", fast=True), notebook
    )
    assert fast_values["wave"] == ("fast_parameters", "fast")
    assert fast_values["sleep_s"] == ("notebooks[0].fast_parameters", 0)

    shared = check_shared_parameters(toy_spec, [study], [notebook], runs=tmp_path, fast=False)
    assert shared == [
        "parameters.no_such: no notebook of the pipeline declares a parameter 'no_such'"
    ]


def test_run_parameters_coerce_and_keep_the_output_folder_inside_the_run(toy_spec, tmp_path):
    notebook, _ = read_notebook(toy_spec, 0, toy_spec.notebooks[0])
    runs = tmp_path / "runs"
    final, subdir, problems = run_parameters(
        toy_spec,
        {"sleep_s": ("parameters", 1), "output_dir": ("parameter_sets.x", "out/tables")},
        notebook,
        runs=runs,
        study_name="telecom",
    )
    assert final == {"sleep_s": 1.0} and isinstance(final["sleep_s"], float)
    assert subdir == "out/tables" and problems == []

    final, subdir, problems = run_parameters(
        toy_spec,
        {
            "output_dir": ("parameter_sets.x", "../../elsewhere"),
            "data_path": ("parameters", "x.csv"),
            "mode": ("parameters", 3),
        },
        notebook,
        runs=runs,
        study_name="telecom",
    )
    assert subdir == "artifacts" and final == {}
    assert len(problems) == 3
    assert problems[0].startswith("parameter_sets.x.output_dir: '../../elsewhere' lies outside")
    assert problems[1] == (
        "parameters.data_path: the runner sets 'data_path' (from the study entry's `data:`); "
        "remove it here"
    )
    assert problems[2].startswith("parameters.mode: toy.ipynb parameter 'mode' ")


# ---------------------------------------------------------------- runner steps
def make_task(notebook: str, runs_dir: Path, *, inputs=(), optional=()) -> RunTask:
    """A planned run of ``notebook`` (label ``default``) in study ``s``, without files."""
    return RunTask(
        pipeline="p",
        study="s",
        study_path="s.yaml",
        notebook=notebook,
        notebook_path=f"{notebook}.ipynb",
        label="default",
        parameters={},
        data_path="data.csv",
        data_hash="d",
        key=f"key-{notebook}",
        key_parts={"notebook_hash": "n", "study_hash": "s", "code_version": "v"},
        gates={},
        runs_dir=str(runs_dir),
        inputs=tuple((f"{slot.split('/')[0]}_dir", slot) for slot in inputs),
        optional_inputs=tuple(f"{slot.split('/')[0]}_dir" for slot in optional),
    )


def test_input_runs_give_usable_inputs_and_say_why_a_run_is_blocked(tmp_path):
    task = make_task(
        "down", tmp_path, inputs=["up/default", "opt/default"], optional=["opt/default"]
    )
    up = {"run_id": "r-up", "output_dir": str(tmp_path / "up")}
    gated = RunRecord("s", "opt", "default", "gated", run_id="r-opt", manifest={"run_id": "r-opt"})
    failed = RunRecord("s", "up", "default", "failed", run_id="r-bad")

    inputs, blocked = input_runs(task, {("s", "up/default"): up, ("s", "opt/default"): gated})
    assert blocked == "" and inputs == {"up_dir": up, "opt_dir": {"run_id": "r-opt"}}
    inputs, blocked = input_runs(task, {("s", "up/default"): up})  # optional one not planned
    assert blocked == "" and inputs == {"up_dir": up, "opt_dir": None}
    opt_failed = RunRecord(
        "s", "opt", "default", "failed", run_id="r-x", manifest={"run_id": "r-x"}
    )
    _, blocked = input_runs(task, {("s", "up/default"): up, ("s", "opt/default"): opt_failed})
    assert blocked == ""  # goes without a failed optional input
    _, blocked = input_runs(task, {("s", "up/default"): failed})
    assert blocked == "its input up/default is failed (r-bad)"
    _, blocked = input_runs(task, {})
    assert blocked == "its input up/default was not planned"


def test_ready_tasks_wait_for_planned_inputs_and_start_the_most_awaited_first(tmp_path):
    a, b = make_task("a", tmp_path), make_task("b", tmp_path)
    c = make_task("c", tmp_path, inputs=["b/default"])
    d = make_task("d", tmp_path, inputs=["outside/default"])  # not planned: it will be blocked
    planned = {("s", t.slot) for t in (a, b, c, d)}
    weight = {("s", "b/default"): 1}
    assert ready_tasks([a, b, c, d], {}, planned, weight) == [b, a, d]
    assert ready_tasks([a, c], {("s", "b/default"): {}}, planned, weight) == [a, c]


def write_manifest(study_dir: Path, run_id: str, key: str, status: str) -> None:
    (study_dir / run_id).mkdir(parents=True)
    manifest = {"run_id": run_id, "key": key, "status": status}
    (study_dir / run_id / "manifest.json").write_text(json.dumps(manifest))


def test_latest_succeeded_takes_the_newest_succeeded_run_of_each_key(tmp_path):
    write_manifest(tmp_path, "20260101T000000Z-a", "k1", "succeeded")
    write_manifest(tmp_path, "20260301T000000Z-a", "k1", "succeeded")
    write_manifest(tmp_path, "20260401T000000Z-a", "k1", "failed")
    write_manifest(tmp_path, "20260201T000000Z-b", "k2", "gated")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    latest = latest_succeeded(tmp_path)
    assert set(latest) == {"k1"} and latest["k1"]["run_id"] == "20260301T000000Z-a"


def test_check_run_options(spec_from):
    spec = spec_from(
        {"name": "p", "studies": [{"spec": "s.yaml"}], "notebooks": [{"path": "n.ipynb"}]}
    )
    check_run_options(spec, executor="local", scheduler=None, jobs=1)
    for kwargs, fragment in [
        ({"executor": "slurm", "scheduler": None, "jobs": 1}, "use one of local, dask"),
        ({"executor": "dask", "scheduler": None, "jobs": 1}, "needs the scheduler's address"),
        ({"executor": "local", "scheduler": None, "jobs": 0}, "jobs must be at least 1, got 0"),
    ]:
        with pytest.raises(PipelineSpecError, match=fragment):
            check_run_options(spec, **kwargs)


class FakeStore:
    def __init__(self):
        self.recorded: list[str] = []

    def record_run(self, manifest):
        self.recorded.append(manifest["run_id"])

    def sync_study(self, study_dir):
        pass


class FakeExecutor:
    """Finishes each run at once, as ``status`` says; one at a time comes back from wait."""

    def __init__(self, capacity: int, status: dict[str, str]):
        self.capacity, self.status = capacity, status
        self.submitted: list[str] = []
        self.tasks: dict[str, RunTask] = {}
        self.most_at_once = 0

    def submit(self, task: RunTask, run_id: str) -> Future:
        self.submitted.append(task.notebook)
        self.tasks[task.notebook] = task
        future: Future = Future()
        status = self.status.get(task.notebook, "succeeded")
        if status == "lost":
            future.set_exception(OSError("the worker went away"))
            return future
        run_dir = Path(task.runs_dir) / task.study / run_id
        future.set_result(
            {
                "run_id": run_id,
                "study": task.study,
                "notebook": {"name": task.notebook},
                "label": task.label,
                "slot": task.slot,
                "status": status,
                "key": task.key,
                "fast": False,
                "data": {"hash": task.data_hash},
                "timings": {"finished_at": "2026-01-01T00:00:00Z", "duration_s": 1.0},
                "run_dir": str(run_dir),
                "output_dir": str(run_dir / "artifacts"),
                "parameters": task.parameters,
                "error": None if status == "succeeded" else {"type": "E", "message": "boom"},
            }
        )
        return future

    def wait(self, futures: list, timeout: float | None = None) -> list:
        self.most_at_once = max(self.most_at_once, len(futures))
        return futures[:1]


def test_execute_runs_with_an_injected_executor(spec_from, tmp_path):
    spec = spec_from(
        {"name": "p", "studies": [{"spec": "s.yaml"}], "notebooks": [{"path": "n.ipynb"}]}
    )
    runs = tmp_path / "runs"
    tasks = [
        make_task("a", runs),
        make_task("b", runs, inputs=["a/default"]),
        make_task("bad", runs),
        make_task("after_bad", runs, inputs=["bad/default"]),
        make_task("lost", runs),
        make_task("c", runs),
    ]
    store, pool = FakeStore(), FakeExecutor(2, {"bad": "failed", "lost": "lost"})
    with tqdm(total=len(tasks), disable=True) as bar:
        state = RefreshState(spec, tasks, store, runs, bar=bar)
        stops: list[int] = []
        execute_runs(state, pool, lambda: stops.append(1))
    status = {r.notebook: r for r in state.result.records}
    assert {n: r.status for n, r in status.items()} == {
        "a": "succeeded",
        "b": "succeeded",
        "bad": "failed",
        "after_bad": "blocked",
        "lost": "failed",
        "c": "succeeded",
    }
    assert (
        status["after_bad"].error
        == f"not run: its input bad/default is failed ({status['bad'].run_id})"
    )
    assert "after_bad" not in pool.submitted and pool.most_at_once == 2
    assert pool.submitted.index("a") < pool.submitted.index("b")
    assert "OSError: the worker went away" in status["lost"].error
    lost = json.loads((runs / "s" / status["lost"].run_id / "manifest.json").read_text())
    assert lost["status"] == "failed"  # the lost worker's run is on disk as failed
    assert len(store.recorded) == 5 and stops  # every executed run recorded; stop checked
    # b got a's output folder (and a's run id in its key) ...
    a_out = runs / "s" / status["a"].run_id / "artifacts"
    assert pool.tasks["b"].parameters == {"a_dir": str(a_out.resolve())}
    assert pool.tasks["b"].key_parts["inputs"] == {"a_dir": status["a"].run_id}
    assert pool.tasks["b"].key != tasks[1].key
    # ... and the study was published once its last run resolved
    pointer = read_pointer(runs / "s")
    assert set(pointer["runs"]) == {"a/default", "b/default", "c/default"}
    assert state.remaining == {"s": 0}
