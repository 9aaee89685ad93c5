"""Notebook inputs: a notebook takes another's output folder from the same refresh.

Tiny generated notebooks: ``up`` writes a value (or fails, or fails its gate);
``down`` reads it from the folder the runner passes in ``up_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxlib.pipeline.errors import PipelineSpecError
from cxlib.pipeline.plan import plan_runs
from cxlib.pipeline.runner import run_pipeline
from cxlib.pipeline.spec import load_pipeline

from .conftest import write_notebook

#: executes notebooks with papermill and real kernels (make check leaves them out)
pytestmark = pytest.mark.notebooks

UP = """\
output_dir: str = ""  # where artifacts go
value: str = "a"  # what to hand on
mode: str = "ok"  # ok, raise or gated
"""
UP_BODY = """\
import pathlib
from cxlib.pipeline.artifacts import Artifacts

out = Artifacts(output_dir, notebook="up")
if mode == "raise":
    raise ValueError("up failed on purpose")
(out.path / "value.txt").write_text(value)
if mode == "gated":
    out.diagnostics({"max_r_hat": 1.5, "min_ess_bulk": 1000.0, "divergences": 0})
out.finish()
"""
DOWN = """\
output_dir: str = ""  # where artifacts go
up_dir: str = ""  # output folder of the up notebook
suffix: str = ""  # added to what up wrote
"""
DOWN_BODY = """\
import pathlib
assert pathlib.Path(up_dir).is_absolute(), up_dir
value = (pathlib.Path(up_dir) / "value.txt").read_text()
(pathlib.Path(output_dir) / "seen.txt").write_text(value + suffix)
"""
LAST = """\
output_dir: str = ""  # where artifacts go
down_dir: str = ""  # output folder of the down notebook
"""


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dep-notebooks")
    return {
        "up": write_notebook(folder / "up.ipynb", UP, UP_BODY),
        "down": write_notebook(folder / "down.ipynb", DOWN, DOWN_BODY),
        "last": write_notebook(folder / "last.ipynb", LAST, "assert down_dir"),
    }


@pytest.fixture
def dep_spec(make_spec, notebooks):
    """A spec with ``down`` listed before ``up``: the runner orders them itself."""

    def make(up: dict | None = None, down: dict | None = None, *extra, **overrides):
        entries = [
            {"path": str(notebooks["down"]), "inputs": {"up_dir": "up"}, **(down or {})},
            {"path": str(notebooks["up"]), **(up or {})},
            *extra,
        ]
        return make_spec("deps", notebooks=entries, **overrides)

    return make


def seen(record) -> str:
    return (Path(record.manifest["output_dir"]) / "seen.txt").read_text()


def by_slot(result) -> dict:
    return {r.slot: r for r in result.records}


def test_inputs_run_first_and_receive_the_output_folder(dep_spec):
    result = run_pipeline(dep_spec(), progress=False)
    assert result.ok, result.summary_table()
    runs = by_slot(result)
    up, down = runs["up/default"], runs["down/default"]
    assert [r.notebook for r in result.records] == ["up", "down"]  # inputs first
    assert down.manifest["parameters"]["up_dir"] == up.manifest["output_dir"]
    assert down.manifest["inputs"] == {"up_dir": {"slot": "up/default", "run_id": up.run_id}}
    assert seen(down) == "a"
    assert up.published and down.published


def test_a_new_input_run_reruns_the_dependent_and_an_unchanged_one_is_reused(dep_spec):
    first = by_slot(run_pipeline(dep_spec(), progress=False))
    again = run_pipeline(dep_spec(), progress=False)
    assert again.counts() == {"skipped": 2}

    # only the dependent changed: the input is up to date and its last run's folder is used
    changed = by_slot(run_pipeline(dep_spec(down={"parameters": {"suffix": "!"}}), progress=False))
    assert changed["up/default"].status == "skipped"
    assert changed["down/default"].status == "succeeded"
    assert (
        changed["down/default"].manifest["parameters"]["up_dir"]
        == first["up/default"].manifest["output_dir"]
    )
    assert seen(changed["down/default"]) == "a!"

    # a new run of the input makes the dependent run again, on the new output
    new = by_slot(run_pipeline(dep_spec(up={"parameters": {"value": "b"}}), progress=False))
    assert new["up/default"].status == "succeeded" and new["down/default"].status == "succeeded"
    assert seen(new["down/default"]) == "b"
    forced = run_pipeline(dep_spec(up={"parameters": {"value": "b"}}), force=True, progress=False)
    assert forced.counts() == {"succeeded": 2}


@pytest.mark.parametrize(("mode", "status"), [("raise", "failed"), ("gated", "gated")])
def test_a_failed_or_gated_input_blocks_its_dependents(dep_spec, notebooks, tmp_path, mode, status):
    last = {"path": str(notebooks["last"]), "inputs": {"down_dir": "down"}}
    result = run_pipeline(
        dep_spec({"parameters": {"mode": mode}}, None, last), jobs=2, progress=False
    )
    runs = by_slot(result)
    assert runs["up/default"].status == status
    assert runs["down/default"].status == "blocked"
    assert runs["down/default"].error.startswith(f"not run: its input up/default is {status}")
    assert runs["last/default"].status == "blocked"
    assert "its input down/default is blocked" in runs["last/default"].error
    assert not result.ok and len(result.failed) == 3
    assert "BLOCKED" in result.summary_table()
    notebooks_run = {
        json.loads(p.read_text())["notebook"]["name"]
        for p in (tmp_path / "runs" / "telecom").glob("*/manifest.json")
    }
    assert notebooks_run == {"up"}  # blocked runs leave no run folder


def test_same_parameter_set_or_a_named_one_and_parallel_jobs(dep_spec):
    spec = dep_spec(
        None,
        {"parameter_sets": ["w1", "w2"]},
        parameter_sets={"w1": {}, "w2": {}, "w3": {}},
    )
    result = run_pipeline(spec, jobs=2, progress=False)
    assert result.ok, result.summary_table()
    runs = by_slot(result)
    for label in ("w1", "w2"):
        assert (
            runs[f"down/{label}"].manifest["inputs"]["up_dir"]["run_id"]
            == runs[f"up/{label}"].run_id
        )
    named = dep_spec(None, {"inputs": {"up_dir": "up/w3"}}, parameter_sets={"w1": {}, "w3": {}})
    tasks = {t.slot: t for t in plan_runs(load_pipeline(named))}
    assert tasks["down/w1"].inputs == (("up_dir", "up/w3"),)
    assert [t.notebook for t in tasks.values()][:2] == ["up", "up"]


# ---------------------------------------------------------------- refused before anything runs
def refused(spec_path) -> str:
    with pytest.raises(PipelineSpecError) as excinfo:
        run_pipeline(spec_path, progress=False)
    text = str(excinfo.value)
    assert "Nothing was run." in text
    return text


def test_unknown_notebook_cycle_and_self_input_are_refused(make_spec, notebooks, tmp_path):
    down, up = str(notebooks["down"]), str(notebooks["up"])
    text = refused(make_spec("x", notebooks=[{"path": down, "inputs": {"up_dir": "upp"}}, up]))
    assert "notebooks[0].inputs.up_dir: 'upp' names no notebook of the pipeline" in text
    assert "did you mean 'up'?" in text
    text = refused(make_spec("x", notebooks=[{"path": down, "inputs": {"up_dir": "down"}}]))
    assert "down cannot take its own output as an input" in text
    text = refused(
        make_spec(
            "x",
            notebooks=[
                {"path": down, "inputs": {"up_dir": "last"}},
                {"path": str(notebooks["last"]), "inputs": {"down_dir": "down"}},
            ],
        )
    )
    assert "notebook inputs form a cycle: down -> last -> down" in text
    assert not (tmp_path / "runs").exists()


def test_undeclared_or_overridden_input_parameters_and_missing_sets_are_refused(
    make_spec, notebooks
):
    down, up = str(notebooks["down"]), str(notebooks["up"])
    text = refused(make_spec("x", notebooks=[{"path": down, "inputs": {"upd": "up"}}, up]))
    assert "notebooks[0].inputs.upd: down.ipynb does not declare a parameter 'upd'" in text
    assert "did you mean 'up_dir'?" in text
    text = refused(
        make_spec(
            "x",
            notebooks=[
                {"path": down, "inputs": {"up_dir": "up"}, "parameters": {"up_dir": "/x"}},
                up,
            ],
        )
    )
    assert "notebooks[0].parameters.up_dir: the runner sets 'up_dir' of down.ipynb" in text
    text = refused(make_spec("x", notebooks=[{"path": down, "inputs": {"output_dir": "up"}}, up]))
    assert "the runner sets 'output_dir' itself" in text
    text = refused(
        make_spec(
            "x",
            notebooks=[
                {"path": down, "inputs": {"up_dir": "up"}},
                {"path": up, "parameter_sets": ["a"]},
            ],
            parameter_sets={"a": {}, "b": {}},
        )
    )
    assert "down runs parameter set(s) 'b' that up does not (it runs: a)" in text
    text = refused(make_spec("x", notebooks=[{"path": down, "inputs": {"up_dir": "up/zz"}}, up]))
    assert "up runs no parameter set 'zz'" in text


def test_optional_inputs_take_a_gated_run_and_go_without_a_failed_one(
    dep_spec, notebooks, tmp_path
):
    # gated: finished with complete artifacts; the dependent runs on them
    down = {"optional_inputs": ["up_dir"]}
    runs = by_slot(run_pipeline(dep_spec({"parameters": {"mode": "gated"}}, down), progress=False))
    assert runs["up/default"].status == "gated" and not runs["up/default"].published
    gated_dir = runs["up/default"].manifest["output_dir"]
    assert runs["down/default"].status == "succeeded" and runs["down/default"].published
    assert runs["down/default"].manifest["parameters"]["up_dir"] == gated_dir
    assert seen(runs["down/default"]) == "a"

    # failed: the dependent runs without it, its parameter left at the notebook's default
    maybe = write_notebook(
        tmp_path / "maybe.ipynb",
        'output_dir: str = ""  # where artifacts go\nup_dir: str = ""  # up\'s output, if any\n',
        "import pathlib\n"
        "(pathlib.Path(output_dir) / 'seen.txt').write_text(up_dir or 'without up')\n",
    )
    spec = dep_spec(
        {"parameters": {"mode": "raise"}},
        None,
        {"path": str(maybe), "inputs": {"up_dir": "up"}, "optional_inputs": ["up_dir"]},
    )
    runs = by_slot(run_pipeline(spec, force=True, progress=False))
    assert runs["up/default"].status == "failed"
    assert runs["down/default"].status == "blocked"  # a required input still blocks
    assert runs["maybe/default"].status == "succeeded"
    assert "up_dir" not in runs["maybe/default"].manifest["parameters"]
    assert runs["maybe/default"].manifest["inputs"]["up_dir"]["run_id"] is None
    assert seen(runs["maybe/default"]) == "without up"


def test_optional_inputs_must_be_inputs(make_spec, notebooks):
    down, up = str(notebooks["down"]), str(notebooks["up"])
    entry = {"path": down, "inputs": {"up_dir": "up"}, "optional_inputs": ["upp_dir"]}
    text = refused(make_spec("x", notebooks=[entry, up]))
    assert "notebooks[0].optional_inputs: 'upp_dir' is not one of its inputs (up_dir)" in text
    assert "did you mean 'up_dir'?" in text
