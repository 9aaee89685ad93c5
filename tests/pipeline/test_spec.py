"""Pipeline specs: shape, and every bad input refused with a clear error before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cxlib.cli import cx
from cxlib.pipeline.errors import PipelineSpecError
from cxlib.pipeline.params import (
    DeclaredParameter,
    NotebookParameterError,
    coerce_parameter,
    declared_parameters,
)
from cxlib.pipeline.plan import plan_runs
from cxlib.pipeline.runner import run_pipeline
from cxlib.pipeline.spec import YamlScalar, load_pipeline

from .conftest import REPO, TOY_PARAMETERS, write_notebook


def problems_of(excinfo) -> str:
    return str(excinfo.value)


def assert_refused(spec_path, tmp_path, *fragments):
    """run_pipeline refuses the spec, naming the problem, and creates no run folder."""
    with pytest.raises(PipelineSpecError) as excinfo:
        run_pipeline(spec_path, progress=False)
    text = problems_of(excinfo)
    for fragment in fragments:
        assert fragment in text, text
    assert "Nothing was run." in text
    assert not (tmp_path / "runs").exists() or not any(
        (tmp_path / "runs").glob("*/*/manifest.json")
    )
    return text


# ---------------------------------------------------------------- the demo pipeline
def test_demo_pipeline_is_valid_and_lists_every_notebook():
    spec = load_pipeline(REPO / "pipelines" / "demo.yaml")
    listed = {Path(spec.resolve(n.path)).name for n in spec.notebooks}
    on_disk = {p.name for p in (REPO / "notebooks").glob("*.ipynb")}
    assert on_disk <= listed, "every research notebook runs in the demo pipeline"
    assert spec.parameter_sets == {"all": {}, "each_segment": {"segment": "each"}}
    assert spec.per_segment_sets == ["each_segment"]  # one set per segment of each study
    assert spec.alerts[0].segments is None  # every segment the study has
    assert spec.schedule.cron == "0 6 * * 1"
    assert [a.name for a in spec.alerts] == ["nps-drop", "rage-clicks"]
    assert spec.alerts[1].parsed.kind == "digital"
    assert spec.alerts[0].parsed.kind == "change"
    assert spec.gates.max_r_hat == 1.01


def test_research_notebooks_have_typed_documented_parameters():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        declared = declared_parameters(path)
        assert "output_dir" in declared, path.name
        for p in declared.values():
            assert p.type_name not in ("Any", "None"), f"{path.name}: {p.name} has no type"
            assert p.help, f"{path.name}: {p.name} has no comment"


def test_research_notebooks_are_committed_without_outputs():
    import nbformat

    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


# ---------------------------------------------------------------- shape errors
def test_unknown_key_names_file_key_and_suggestion(make_spec, tmp_path):
    path = make_spec(notebooks=[{"path": "x.ipynb", "parmeters": {}}])
    with pytest.raises(PipelineSpecError) as excinfo:
        load_pipeline(path)
    text = problems_of(excinfo)
    assert str(path) in text
    assert "notebooks[0].parmeters: unknown key 'parmeters'" in text
    assert "did you mean 'parameters'?" in text


def test_duplicate_key_and_bad_yaml(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nname: b\n")
    with pytest.raises(PipelineSpecError, match="duplicate key 'name'"):
        load_pipeline(path)
    path.write_text("studies: [unclosed\n")
    with pytest.raises(PipelineSpecError, match="not valid YAML"):
        load_pipeline(path)
    with pytest.raises(PipelineSpecError, match="no such file"):
        load_pipeline(tmp_path / "missing.yaml")


def test_bad_cron_timezone_and_unknown_parameter_set(spec_from, small_study, toy_notebook):
    with pytest.raises(PipelineSpecError) as excinfo:
        spec_from(
            {
                "studies": [str(small_study)],
                "notebooks": [{"path": str(toy_notebook), "parameter_sets": ["consumr"]}],
                "parameter_sets": {"consumer": {}},
                "schedule": {"cron": "every monday", "timezone": "Mars/Olympus"},
            }
        )
    text = problems_of(excinfo)
    assert "schedule.cron: 'every monday' is not a cron expression" in text
    assert "unknown time zone 'Mars/Olympus'" in text
    with pytest.raises(PipelineSpecError, match="did you mean 'consumer'"):
        spec_from(
            {
                "studies": [str(small_study)],
                "notebooks": [{"path": str(toy_notebook), "parameter_sets": ["consumr"]}],
                "parameter_sets": {"consumer": {}},
            }
        )


def test_time_limits_must_be_positive_seconds(spec_from, small_study, toy_notebook):
    base = {"studies": [str(small_study)], "notebooks": [str(toy_notebook)]}
    with pytest.raises(PipelineSpecError) as excinfo:
        spec_from(base | {"execution": {"pipeline_timeout_s": 0, "run_timeout_s": "soon"}})
    text = problems_of(excinfo)
    assert "execution.pipeline_timeout_s" in text and "greater than 0" in text
    assert "execution.run_timeout_s" in text
    with pytest.raises(PipelineSpecError, match="execution.pipeline_timout_s.*pipeline_timeout_s"):
        spec_from(base | {"execution": {"pipeline_timout_s": 600}})
    spec = spec_from(base | {"execution": {"pipeline_timeout_s": 600, "run_timeout_s": 300}})
    assert (spec.execution.pipeline_timeout_s, spec.execution.run_timeout_s) == (600, 300)
    (task,) = plan_runs(spec)
    assert task.run_timeout_s == 300 and task.deadline is None  # the runner sets the deadline


# ---------------------------------------------------------------- what the spec names
def test_notebook_that_does_not_exist(make_spec, tmp_path, toy_notebook):
    path = make_spec(notebooks=[{"path": str(toy_notebook.with_name("tyo.ipynb"))}])
    assert_refused(
        path, tmp_path, "notebooks[0].path: notebook", "does not exist", "did you mean 'toy.ipynb'?"
    )


def test_study_that_does_not_exist(make_spec, tmp_path):
    path = make_spec(studies=[{"spec": str(tmp_path / "nostudy.yaml")}])
    assert_refused(path, tmp_path, "studies[0].spec: study spec", "nostudy.yaml' does not exist")


def test_unknown_study_filter(make_spec):
    with pytest.raises(PipelineSpecError, match="--study 'nope': the pipeline has no such study"):
        run_pipeline(make_spec(), study="nope", progress=False)


def test_parameter_the_notebook_does_not_declare(make_spec, tmp_path):
    path = make_spec(parameter_sets={"a": {"sleep": 1}})
    text = assert_refused(
        path, tmp_path, "parameter_sets.a.sleep: toy.ipynb does not declare a parameter 'sleep'"
    )
    assert "did you mean 'sleep_s'?" in text


def test_shared_parameter_no_notebook_declares(make_spec, tmp_path):
    path = make_spec(parameters={"draws": 100})
    assert_refused(
        path, tmp_path, "parameters.draws: no notebook of the pipeline declares a parameter 'draws'"
    )


def test_parameter_of_the_wrong_type(make_spec, tmp_path):
    path = make_spec(
        parameter_sets={"a": {"sleep_s": "long"}, "b": {"write_diagnostics": "yes please"}}
    )
    assert_refused(
        path,
        tmp_path,
        "parameter_sets.a.sleep_s: toy.ipynb parameter 'sleep_s' is declared `float` in the notebook, "
        "but the pipeline gives str 'long'",
        "parameter_sets.b.write_diagnostics",
    )


def test_output_path_outside_the_runs_directory(make_spec, tmp_path):
    path = make_spec(
        parameter_sets={"a": {"output_dir": "/etc/cx"}, "b": {"output_dir": "../../elsewhere"}}
    )
    text = assert_refused(
        path, tmp_path, "parameter_sets.a.output_dir: '/etc/cx' lies outside the runs directory"
    )
    assert (
        "parameter_sets.b.output_dir: '../../elsewhere' lies outside the run's own folder" in text
    )


def test_output_subfolder_inside_the_run_folder_is_fine(make_spec, tmp_path):
    tasks = plan_runs(load_pipeline(make_spec(parameters={"output_dir": "results"})))
    assert tasks[0].output_subdir == "results"


def test_data_glob_matching_nothing(make_spec, tmp_path, small_study):
    path = make_spec(
        studies=[{"spec": str(small_study), "data": str(tmp_path / "exports" / "*.csv")}]
    )
    assert_refused(path, tmp_path, "studies[0].data: the glob", "exports/*.csv' matches no file")


def test_runner_owned_parameters_are_refused(make_spec, tmp_path):
    path = make_spec(parameter_sets={"a": {"data_path": "/tmp/other.csv"}})
    assert_refused(path, tmp_path, "the runner sets 'data_path'")


def test_all_problems_are_reported_together(make_spec, tmp_path):
    path = make_spec(
        studies=[{"spec": str(tmp_path / "nostudy.yaml")}],
        parameter_sets={"a": {"sleep": 1, "output_dir": "/etc"}},
    )
    text = assert_refused(path, tmp_path, "3 problems")
    assert "nostudy.yaml" in text and "'sleep'" in text and "/etc" in text


def test_cli_reports_bad_spec_with_exit_2(make_spec):
    path = make_spec(parameter_sets={"a": {"sleep": 1}})
    result = CliRunner().invoke(cx, ["run", str(path)])
    assert result.exit_code == 2
    assert "does not declare a parameter 'sleep'" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- notebooks' parameters cells
def test_notebook_without_parameters_cell(tmp_path, make_spec):
    nb = write_notebook(tmp_path / "bare.ipynb", None, "x = 1")
    path = make_spec(notebooks=[str(nb)])
    assert_refused(path, tmp_path, "bare.ipynb has no cell tagged 'parameters'")


def test_notebook_without_output_dir(tmp_path, make_spec):
    nb = write_notebook(tmp_path / "noout.ipynb", "x: int = 1  # a number\n", "x")
    path = make_spec(notebooks=[str(nb)])
    assert_refused(path, tmp_path, "noout.ipynb declares no 'output_dir' parameter")


def test_parameters_papermill_cannot_read_are_reported(tmp_path):
    nb = write_notebook(
        tmp_path / "union.ipynb",
        'output_dir: str = ""  # out\nsegment: str | None = None  # a segment\nn: int = 1  # a = b\n',
    )
    with pytest.raises(NotebookParameterError) as excinfo:
        declared_parameters(nb)
    assert "'n' (cell 1, line 3)" in str(excinfo.value)
    assert "'segment' (cell 1, line 2)" in str(excinfo.value)


def test_declared_parameters_of_toy(toy_notebook):
    declared = declared_parameters(toy_notebook)
    assert list(declared)[:4] == ["output_dir", "study_path", "data_path", "wave"]
    assert declared["sleep_s"].type_name == "float"
    assert declared["wave"].help == "a wave id; must stay a string"
    assert "output_dir" in TOY_PARAMETERS


# ---------------------------------------------------------------- values: strings stay strings
@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        ("str", YamlScalar(1, "01"), "01"),
        ("str", YamlScalar(2026.1, "2026.10"), "2026.10"),
        ("str", "01", "01"),
        ("int", YamlScalar(1, "01"), 1),
        ("float", 3, 3.0),
        ("Optional[str]", YamlScalar(None, "null"), None),
        ("Optional[str]", YamlScalar(7, "007"), "007"),
        ("bool", YamlScalar(True, "true"), True),
        ("list", ["a", "b"], ["a", "b"]),
    ],
)
def test_coerce_parameter(type_name, value, expected):
    got = coerce_parameter(DeclaredParameter("p", type_name, ""), value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("type_name", "value", "message"),
    [
        ("str", 1, "declared `str` in the notebook, but the pipeline gives int 1"),
        ("int", True, "gives bool True"),
        ("int", 1.5, "gives float 1.5"),
        ("bool", YamlScalar(1, "1"), "gives int 1"),
        ("str", YamlScalar(None, "null"), "gives null"),
    ],
)
def test_coerce_parameter_refuses(type_name, value, message):
    with pytest.raises(NotebookParameterError, match=message.replace("[", r"\[")):
        coerce_parameter(DeclaredParameter("p", type_name, ""), value)


def test_unquoted_yaml_id_stays_a_string(tmp_path, small_study, toy_notebook):
    path = tmp_path / "p.yaml"
    path.write_text(
        f"studies: [{small_study}]\nnotebooks: [{toy_notebook}]\n"
        "parameter_sets:\n  w01: {wave: 01}\n  w2: {wave: 2026-01-05, sleep_s: 0}\n"
        f"runs_dir: {tmp_path / 'runs'}\n"
    )
    tasks = plan_runs(load_pipeline(path))
    assert tasks[0].parameters == {"wave": "01"}
    assert tasks[1].parameters == {"wave": "2026-01-05", "sleep_s": 0.0}


def test_alert_rule_that_does_not_parse(make_spec, tmp_path):
    path = make_spec(alerts=[{"name": "nps-low", "rule": "NPS is below 20"}])
    with pytest.raises(PipelineSpecError) as excinfo:
        load_pipeline(path)
    assert "alerts[0].rule" in str(excinfo.value)
    assert "cannot read the alert rule" in str(excinfo.value)
