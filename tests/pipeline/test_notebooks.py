"""Every research notebook in notebooks/ runs through the runner with fast parameters.

The notebooks run as the demo pipeline runs them (its parameter sets: all
respondents and one per segment, its fast parameters), on a simulated copy of the sample
study with 8,000 respondents (conftest's ``model_study`` says why).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cxlib.pipeline.runner import run_pipeline
from cxlib.pipeline.spec import load_pipeline, pipeline_from_dict
from cxlib.study import load_study

from .conftest import REPO

#: executes notebooks with papermill and real kernels (make check leaves them out)
pytestmark = pytest.mark.notebooks

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory, model_study):
    """The demo pipeline (every notebook, fast) on the 8,000-respondent study, run once."""
    tmp = tmp_path_factory.mktemp("demo")
    demo = REPO / "pipelines" / "demo.yaml"
    raw = yaml.safe_load(demo.read_text())
    raw["studies"] = [{"spec": str(model_study)}]
    raw["runs_dir"] = str(tmp / "runs")
    raw["results_db"] = str(tmp / "runs" / "results.duckdb")
    raw["execution"]["export_html"] = False  # exported in test_runner; saves a second per run
    listed = {Path(n["path"] if isinstance(n, dict) else n).name for n in raw["notebooks"]}
    raw["notebooks"] += [str(p) for p in NOTEBOOKS if p.name not in listed]
    spec = pipeline_from_dict(raw, path=demo)
    return tmp, run_pipeline(spec, fast=True, jobs=2, progress=False)


def test_demo_pipeline_shape_matches():
    assert load_pipeline(REPO / "pipelines" / "demo.yaml").name == "demo"
    assert NOTEBOOKS, "notebooks/ has research notebooks"


@pytest.mark.parametrize("notebook", [p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_fast_parameters(demo_result, notebook):
    _, result = demo_result
    records = [r for r in result.records if r.notebook == notebook]
    assert records, f"{notebook} did not run"
    for record in records:
        assert record.status == "succeeded", f"{record.slot}: {record.error}"
        assert record.manifest["fast"] and not record.published  # smoke runs never go live
        out = Path(record.manifest["output_dir"])
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["notebook"] == notebook
        for entry in manifest["files"]:
            assert (out / entry["path"]).is_file()


def test_data_quality_artifacts(demo_result):
    _, result = demo_result
    by_label = {r.label: r for r in result.records if r.notebook == "01-data-quality"}
    assert set(by_label) == {"all", "consumer", "small-business", "enterprise"}
    out = Path(by_label["consumer"].manifest["output_dir"])
    report = json.loads((out / "quality_report.json").read_text())
    assert set(report["segments"]["segment"]) == {"Consumer"}
    items = pd.read_parquet(out / "tables" / "data_quality_items.parquet")
    assert {"study", "segment", "wave", "item", "missing", "floor", "ceiling", "flag"} <= set(
        items.columns
    )
    assert set(items["segment"]) == {"Consumer"}


def test_smoke_runs_are_not_published(demo_result):
    tmp, result = demo_result
    from cxlib.pipeline.store import ResultsStore

    store = ResultsStore(tmp / "runs" / "results.duckdb")
    assert store.query("select count(*) as n from published_runs")["n"][0] == 0
    assert "data_quality_summary" not in store.tables()  # nor loaded into the history
    assert {r["status"] for r in store.runs()} == {"succeeded"}


def test_data_quality_is_published_to_the_store(tmp_path, small_study):
    """A real (not --fast) run of the data-quality notebook, split by segment, goes live."""
    raw = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())
    raw.update(
        studies=[{"spec": str(small_study)}],
        runs_dir=str(tmp_path / "runs"),
        notebooks=[
            {"path": "../notebooks/01-data-quality.ipynb", "parameter_sets": ["all", "consumer"]}
        ],
        parameter_sets={"all": {}, "consumer": {"segment": "Consumer"}},
    )
    raw["execution"]["export_html"] = False
    result = run_pipeline(
        pipeline_from_dict(raw, path=REPO / "pipelines" / "demo.yaml"), jobs=2, progress=False
    )
    assert result.ok and all(r.published for r in result.records), result.summary_table()

    from cxlib.pipeline.store import ResultsStore

    store = ResultsStore(tmp_path / "runs" / "results.duckdb")  # follows runs_dir by default
    summary = store.query(
        "select segment, n_respondents from published_data_quality_summary order by segment"
    )
    assert summary.to_dict("list")["segment"] == ["Consumer", "all"]
    counts = dict(zip(summary["segment"], summary["n_respondents"], strict=True))
    assert counts["all"] == 400 and 0 < counts["Consumer"] < 400
    cells = store.query("select * from published_data_quality_cells where segment = 'Consumer'")
    assert len(cells) > 0 and "below_min_cell_size" in cells.columns
    items = store.query("select count(*) as n from published_data_quality_items")["n"][0]
    assert items == 2 * len(load_study(small_study).item_names)
    rules = store.query("select pipeline, name, rule from alert_rules")
    assert rules.to_dict("records") == [
        {"pipeline": "demo", "name": "nps-drop", "rule": "P(change(NPS) < -5) > 0.95"},
        {"pipeline": "demo", "name": "rage-clicks", "rule": "P(rage_click_rate > 0.25) > 0.9"},
    ]


def test_data_quality_publishes_rows_left_out_and_texts_read_as_missing(tmp_path):
    """Issue #22: 01's published tables count the Qualtrics rows left out and the "NA" texts."""
    from cxlib.pipeline.store import ResultsStore
    from tests.data.test_silent_inputs import QUALTRICS_SPEC, qualtrics_export

    qualtrics_export(
        tmp_path,
        ["anonymous", "preview", "anonymous", "test", "anonymous", "email"],
        ["True", "True", "False", "True", "True", "True"],
        na_at=(0, 4),
    )
    (tmp_path / "study.yaml").write_text(QUALTRICS_SPEC)
    raw = {
        "name": "quality",
        "studies": [{"spec": str(tmp_path / "study.yaml")}],
        "notebooks": [{"path": str(REPO / "notebooks" / "01-data-quality.ipynb")}],
        "runs_dir": str(tmp_path / "runs"),
        "execution": {"export_html": False, "timeout_s": 120},
    }
    result = run_pipeline(pipeline_from_dict(raw, path=tmp_path / "p.yaml"), progress=False)
    assert result.ok and all(r.published for r in result.records), result.summary_table()
    out = Path(result.records[0].manifest["output_dir"])
    summary = pd.read_parquet(out / "tables" / "data_quality_summary.parquet").iloc[0]
    assert summary["n_respondents"] == 3 and summary["excluded_rows"] == 3
    assert [summary[f"excluded_{k}"] for k in ("preview", "test", "unfinished")] == [1, 1, 1]
    assert summary["missing_text_cells"] == 2
    texts = pd.read_parquet(out / "tables" / "data_quality_missing_texts.parquet")
    assert texts[["column", "text", "cells"]].values.tolist() == [["COMP2", "NA", 2]]
    report = json.loads((out / "quality_report.json").read_text())
    assert report["excluded_rows"] == {"preview": 1, "test": 1, "unfinished": 1}
    store = ResultsStore(tmp_path / "runs" / "results.duckdb")
    live = store.query(
        "select excluded_rows, missing_text_cells from published_data_quality_summary"
    )
    assert live.values.tolist() == [[3, 2]]
