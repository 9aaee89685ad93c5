"""The demo pipeline on studies unlike the sample: nothing fails, what does not apply says why.

``retail``: no segments, no waves, no NPS, no attributes, no touchpoints, other construct
names (Quality -> Value -> Retention, the loyalty KPI on Retention). ``retail_regions``: the
same with segments given as numeric codes (``region: {1: North, 2: South}`` and
``plan: [10, 20]``, stored as integers in the data). Both simulated with
:mod:`cxlib.simulate` (400 respondents) and run through a copy of ``pipelines/demo.yaml``
with only the study (and the runs folder) changed, ``--fast``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cxlib.pipeline.errors import PipelineSpecError
from cxlib.pipeline.plan import plan_runs, segment_label
from cxlib.pipeline.publish import read_pointer
from cxlib.pipeline.spec import pipeline_from_dict
from cxlib.simulate import default_truth, simulate_responses, write_responses
from cxlib.study import load_study

from .conftest import REPO

DEMO = REPO / "pipelines" / "demo.yaml"

RETAIL = """\
name: {name}
title: Retail value study
columns:
  respondent_id: rid
{segments}
source:
  file: responses.parquet
scales:
  agree7: {{min: 1, max: 7}}
constructs:
  Quality:
    label: Perceived quality
    items:
      Q1: {{text: "The products are well made.", scale: agree7}}
      Q2: {{text: "The products last.", scale: agree7}}
      Q3: {{text: "The products work as promised.", scale: agree7}}
  Value:
    label: Value for money
    items:
      V1: {{text: "The prices are fair.", scale: agree7}}
      V2: {{text: "I get a lot for what I pay.", scale: agree7}}
      V3: {{text: "It is worth the money.", scale: agree7}}
  Retention:
    label: Customer retention
    items:
      R1: {{text: "I will buy here again.", scale: agree7}}
      R2: {{text: "I will stay a customer.", scale: agree7}}
      R3: {{text: "I prefer this shop to others.", scale: agree7}}
model: |
  Value ~ Quality
  Retention ~ Value
kpis:
  loyalty: Retention
"""
REGIONS = """\
  segments:
    region: {1: North, 2: South}
    plan: [10, 20]
"""


def _write_study(folder: Path, name: str, segments: str = "") -> Path:
    spec = folder / "study.yaml"
    spec.write_text(RETAIL.format(name=name, segments=segments), encoding="utf-8")
    study = load_study(spec)
    frame = simulate_responses(study, default_truth(study), n=400, seed=17)
    if segments:  # as an export holds them: the codes, as integers
        codes = {label: int(code) for code, label in study.columns.segment_labels["region"].items()}
        frame["region"] = frame["region"].astype(str).map(codes).astype(int)
        frame["plan"] = frame["plan"].astype(str).astype(int)
    write_responses(frame, folder / "responses.parquet")
    return spec


@pytest.fixture(scope="module")
def retail(tmp_path_factory) -> Path:
    return _write_study(tmp_path_factory.mktemp("retail"), "retail")


@pytest.fixture(scope="module")
def regions(tmp_path_factory) -> Path:
    return _write_study(tmp_path_factory.mktemp("regions"), "retail_regions", REGIONS)


def demo_for(study: Path, runs: Path):
    """pipelines/demo.yaml with only the study (and where runs go) changed."""
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["studies"] = [{"spec": str(study)}]
    raw["runs_dir"] = str(runs)
    raw["results_db"] = str(runs / "results.duckdb")
    return pipeline_from_dict(raw, path=DEMO)


# ---------------------------------------------------------------------- parameter sets
def test_segment_labels_name_run_folders():
    assert segment_label("segment", "Small business") == "small-business"
    assert segment_label("region", "1") == "region-1"
    assert segment_label("region", "North", with_column=True) == "region-north"
    assert segment_label("Plan Type", "10") == "plan-type-10"


def test_each_segment_expands_per_study(tmp_path, small_study, retail, regions):
    def sets(study):
        return [
            (t.label, t.parameters.get("segment"))
            for t in plan_runs(demo_for(study, tmp_path / "runs"), fast=True)
            if t.notebook == "01-data-quality"
        ]

    assert sets(small_study) == [
        ("all", None),
        ("consumer", "Consumer"),
        ("small-business", "Small business"),
        ("enterprise", "Enterprise"),
    ]
    assert sets(retail) == [("all", None)]  # no segments: no per-segment runs
    assert sets(regions) == [
        ("all", None),
        ("region-north", "region=North"),
        ("region-south", "region=South"),
        ("plan-10", "plan=10"),
        ("plan-20", "plan=20"),
    ]


def test_per_segment_sets_are_checked(tmp_path, retail):
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["studies"] = [{"spec": str(retail)}]
    raw["parameter_sets"]["waves"] = {"wave": "each"}
    with pytest.raises(PipelineSpecError, match="expands only `segment: each`"):
        pipeline_from_dict(raw, path=DEMO)
    raw = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    raw["notebooks"][3]["inputs"] = {"sem_dir": "02-experience-brand-loyalty/each_segment"}
    with pytest.raises(PipelineSpecError, match="per-segment set 'each_segment'"):
        pipeline_from_dict(raw, path=DEMO)


def test_an_alert_on_a_kpi_the_study_lacks_is_not_applicable(retail):
    from cxlib.data import load_responses
    from cxlib.insights.alerts import AlertRule, evaluate_alerts
    from cxlib.insights.kpis import estimate_kpis

    study = load_study(retail)
    kpis = estimate_kpis(load_responses(study), seed=1)
    rules = [
        AlertRule(name="nps-drop", rule="P(change(NPS) < -5) > 0.95"),
        AlertRule(name="low-retention", rule="P(loyalty < 101) > 0.5"),
    ]
    alerts = evaluate_alerts(rules, study=study.name, kpis=kpis)
    nps = alerts[alerts["rule_name"] == "nps-drop"]
    assert len(nps) == 1 and nps["status"].iloc[0] == "not_applicable"
    assert (
        "does not measure NPS" in nps["reason"].iloc[0] and "kpis: {nps:" in nps["reason"].iloc[0]
    )
    assert not nps["fired"].iloc[0]
    low = alerts[alerts["rule_name"] == "low-retention"]
    assert set(low["status"]) == {"evaluated"} and low["fired"].all()
    assert set(low["segment"]) == {"all"}  # no segments: everyone


# ---------------------------------------------------------------------- the demo pipeline
def _check_demo(result, study: Path, runs: Path) -> dict:
    """Every step succeeded or is not applicable with its reason; returns records by slot."""
    assert result.ok and not result.failed, result.summary_table()
    runs_by_slot = {r.slot: r for r in result.records}
    summary = load_study(study).summary()
    unmet = summary["unmet"]
    expected_na = {
        "03-technical-vs-emotional/all": unmet["attributes"],
        "05-touchpoints-and-journey/all": unmet["touchpoints"],
    }
    if "events" in unmet:  # no web and app sessions: 06 is not applicable, with the how-to
        expected_na["06-digital-experience/all"] = unmet["events"]
    for slot, record in runs_by_slot.items():
        if slot in expected_na:
            assert record.status == "not_applicable", (slot, record.error)
            assert record.reason == expected_na[slot]
        else:
            assert record.status == "succeeded", (slot, record.status, record.error)
    pointer = read_pointer(runs / summary["name"])
    assert pointer["runs"] == {}  # smoke runs are never published
    assert {s: e["reason"] for s, e in pointer["not_applicable"].items()} == expected_na
    assert all(e["status"] == "not_applicable" for e in pointer["not_applicable"].values())
    assert pointer["study"] == summary

    # 02 flags improper solutions where they flow; 04 ranks the study's own target
    sem_out = Path(runs_by_slot["02-experience-brand-loyalty/all"].manifest["output_dir"])
    diagnostics = json.loads((sem_out / "diagnostics.json").read_text())
    assert set(diagnostics["improper"]) == {"ok", "problems"}
    assert diagnostics["trustworthy"] == (diagnostics["ok"] and diagnostics["improper"]["ok"])
    warnings = pd.read_parquet(sem_out / "tables" / "sem_warnings.parquet")
    assert len(warnings) == len(diagnostics["improper"]["problems"])
    flags = json.loads((sem_out / "driver_model_flags.json").read_text())
    assert flags["trustworthy"] == diagnostics["trustworthy"]
    drivers_out = Path(runs_by_slot["04-drivers-and-what-if/all"].manifest["output_dir"])
    priorities = pd.read_parquet(drivers_out / "tables" / "driver_priorities.parquet")
    assert "Value" in set(priorities["driver"])

    # 00: the loyalty KPI's trend (no NPS), the NPS alert not applicable with its reason
    overview_out = Path(runs_by_slot["00-study-overview/all"].manifest["output_dir"])
    assert (overview_out / "charts" / "kpi_trend.json").is_file() or any(
        p.stem == "kpi_trend" for p in overview_out.rglob("*")
    )
    alerts = pd.read_parquet(overview_out / "tables" / "alerts.parquet")
    nps = alerts[alerts["rule_name"] == "nps-drop"]
    assert nps["status"].tolist() == ["not_applicable"]
    assert "does not measure NPS" in nps["reason"].iloc[0]
    return runs_by_slot


@pytest.mark.slow
@pytest.mark.notebooks
def test_demo_pipeline_on_a_study_without_segments_waves_nps_attributes_touchpoints(
    tmp_path, retail
):
    runs = tmp_path / "runs"
    result = _run(retail, runs)
    records = _check_demo(result, retail, runs)
    assert set(records) == {
        "01-data-quality/all",
        "02-experience-brand-loyalty/all",
        "03-technical-vs-emotional/all",
        "04-drivers-and-what-if/all",
        "05-touchpoints-and-journey/all",
        "06-digital-experience/all",
        "00-study-overview/all",
    }


@pytest.mark.slow
@pytest.mark.notebooks
def test_demo_pipeline_on_numeric_segment_codes(tmp_path, regions):
    runs = tmp_path / "runs"
    result = _run(regions, runs)
    records = _check_demo(result, regions, runs)
    per_segment = sorted(
        s for s in records if s.startswith("01-data-quality/") and s != "01-data-quality/all"
    )
    assert per_segment == [
        "01-data-quality/plan-10",
        "01-data-quality/plan-20",
        "01-data-quality/region-north",
        "01-data-quality/region-south",
    ]
    record = records["01-data-quality/region-north"]
    assert "region-north" in Path(record.run_dir).name  # the run folder names the segment
    cells = pd.read_parquet(
        Path(record.manifest["output_dir"]) / "tables" / "data_quality_cells.parquet"
    )
    region_cells = cells[cells["segment_column"] == "region"]
    assert set(region_cells["segment"]) == {"North"}  # the label, not the code


def _run(study: Path, runs: Path):
    from cxlib.pipeline.runner import run_pipeline

    return run_pipeline(demo_for(study, runs), fast=True, jobs=2, progress=False)
