"""The runner's parts without a kernel: gates, pointer, lock, store, artifacts, inputs."""

from __future__ import annotations

import errno
import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from cxlib.pipeline import provenance
from cxlib.pipeline.artifacts import Artifacts, diagnostics_from_idata
from cxlib.pipeline.errors import StudyBusyError
from cxlib.pipeline.gates import evaluate_gates
from cxlib.pipeline.inputs import SubsetError, load_inputs, select_respondents
from cxlib.pipeline.lock import StudyLock
from cxlib.pipeline.publish import published_runs, read_pointer, switch_pointer
from cxlib.pipeline.store import ResultsStore
from cxlib.pipeline.tables import data_quality_tables

GATES = {"max_r_hat": 1.01, "min_ess_bulk": 400, "max_divergences": 0}


# ---------------------------------------------------------------- gates
def test_gates():
    assert evaluate_gates(None, GATES) == []  # no model fitted: nothing to fail
    good = {"max_r_hat": 1.005, "min_ess_bulk": 900, "divergences": 0}
    assert evaluate_gates(good, GATES) == []
    bad = {"max_r_hat": float("nan"), "min_ess_bulk": 120, "divergences": 3}
    assert evaluate_gates(bad, GATES) == [
        "R-hat is NaN (max_r_hat 1.01)",
        "bulk ESS 120 < 400 (min_ess_bulk)",
        "divergent transitions 3 > 0 (max_divergences)",
    ]
    assert evaluate_gates({"max_r_hat": 1.0}, GATES)[0].startswith(
        "bulk ESS: diagnostics.json has no"
    )
    assert (
        evaluate_gates(bad, {"max_r_hat": None, "min_ess_bulk": None, "max_divergences": 5}) == []
    )


# ---------------------------------------------------------------- published pointer
def test_pointer_switch_is_atomic_when_the_disk_is_full(tmp_path, monkeypatch):
    study_dir = tmp_path / "telecom"
    study_dir.mkdir()
    first = switch_pointer(study_dir, "telecom", {"nb/all": {"run_id": "r1"}})
    assert read_pointer(study_dir) == first

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(provenance.os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        switch_pointer(study_dir, "telecom", {"nb/all": {"run_id": "r2"}})
    monkeypatch.undo()
    assert read_pointer(study_dir) == first  # the old publication stays live
    assert sorted(p.name for p in study_dir.iterdir()) == ["published.json"]  # no temp file left

    second = switch_pointer(study_dir, "telecom", {"nb/consumer": {"run_id": "r3"}})
    assert second["previous"] == first["publication_id"]
    assert set(second["runs"]) == {"nb/all", "nb/consumer"}  # other slots keep their run
    assert published_runs("telecom", tmp_path) == {
        "nb/all": study_dir / "r1",
        "nb/consumer": study_dir / "r3",
    }


# ---------------------------------------------------------------- lock
def test_lock_is_exclusive_and_says_who_holds_it(tmp_path):
    with StudyLock(tmp_path / "telecom", holder="cx run demo"):
        with pytest.raises(StudyBusyError, match=f"cx run demo, pid {os.getpid()}"):
            StudyLock(tmp_path / "telecom").acquire()
        started = time.perf_counter()
        with pytest.raises(StudyBusyError, match="after waiting 0.3 s"):
            StudyLock(tmp_path / "telecom", wait_s=0.3).acquire()
        assert time.perf_counter() - started >= 0.3
    with StudyLock(tmp_path / "telecom") as lock:  # released on exit
        assert lock.locked


# ---------------------------------------------------------------- results store
def fake_run(runs, run_id, status="succeeded", rows=None, **extra):
    run_dir = runs / "telecom" / run_id
    out = run_dir / "artifacts"
    (out / "tables").mkdir(parents=True)
    if rows is not None:
        pd.DataFrame(rows).to_parquet(out / "tables" / "kpis.parquet")
    manifest = {
        "run_id": run_id,
        "study": "telecom",
        "pipeline": "demo",
        "label": "all",
        "slot": "02-sem/all",
        "status": status,
        "notebook": {"name": "02-sem"},
        "data": {"hash": "abc"},
        "key": "k-" + run_id,
        "code": {"version": "0.1.0+x"},
        "parameters": {"draws": 100},
        "timings": {"started_at": "2026-03-01T06:00:00.000Z", "duration_s": 1.5},
        "diagnostics": {"max_r_hat": 1.002, "min_ess_bulk": 800, "divergences": 0},
        "run_dir": str(run_dir),
        "output_dir": str(out),
        **extra,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_store_loads_tables_grows_columns_and_rebuilds_from_disk(tmp_path):
    runs = tmp_path / "runs"
    store = ResultsStore(runs / "results.duckdb")
    fake_run(runs, "r1", rows={"segment": ["all"], "wave": ["2026-Q1"], "nps": [31.0]})
    fake_run(
        runs, "r2", rows={"segment": ["all"], "wave": ["2026-Q2"], "nps": [33.5], "nps_lo": [30.1]}
    )
    fake_run(runs, "r3", status="failed", error={"type": "ValueError", "message": "boom"})
    switch_pointer(runs / "telecom", "telecom", {"02-sem/all": {"run_id": "r2"}})
    store.sync_study(runs / "telecom")

    history = store.query("select run_id, wave, nps, nps_lo from kpis order by wave")
    assert history["run_id"].tolist() == ["r1", "r2"]  # failed runs load no tables
    assert np.isnan(history["nps_lo"][0]) and history["nps_lo"][1] == pytest.approx(30.1)
    live = store.query("select run_id, study, nps from published_kpis")
    assert live.to_dict("records") == [{"run_id": "r2", "study": "telecom", "nps": 33.5}]
    assert store.tables() == ["kpis"]
    rows = {r["run_id"]: r for r in store.runs()}
    assert rows["r3"]["status"] == "failed" and rows["r3"]["error"] == "ValueError: boom"
    assert rows["r2"]["published"] and not rows["r1"]["published"]
    assert rows["r1"]["max_r_hat"] == pytest.approx(1.002)
    assert store.find_run("r2")["run_id"] == "r2"
    with pytest.raises(ValueError, match="matches 3 runs"):
        store.find_run("r")

    # the store is a mirror: lost, it is rebuilt from the run folders and the pointer
    (runs / "results.duckdb").unlink()
    store.sync_study(runs / "telecom")
    assert store.query("select run_id from published_kpis")["run_id"].tolist() == ["r2"]


# ---------------------------------------------------------------- artifacts
def test_artifacts_writer(tmp_path):
    out = Artifacts(tmp_path / "out", notebook="02-sem", parameters={"draws": 10})
    out.table("effects", pd.DataFrame({"lhs": ["Loyalty"], "est": [0.4]}, index=["a"]))
    out.json("summary", {"n": 3})
    out.diagnostics({"max_r_hat": 1.0, "min_ess_bulk": 500, "divergences": 0})
    manifest = json.loads(out.finish().read_text())
    assert [f["path"] for f in manifest["files"]] == [
        "diagnostics.json",
        "summary.json",
        "tables/effects.parquet",
    ]
    table = pd.read_parquet(tmp_path / "out" / "tables" / "effects.parquet")
    assert list(table.columns) == ["index", "lhs", "est"]
    for bad in ("runs", "published_kpis", "Estimates", "a b"):
        with pytest.raises(ValueError, match="table name"):
            out.table(bad, table)


def test_artifacts_default_to_runs_manual(monkeypatch, tmp_path):
    from cxlib import config

    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    out = Artifacts("", notebook="01-data-quality")
    assert out.path.parent == tmp_path / "runs" / "manual"
    assert out.path.name.startswith("01-data-quality-")


def test_chart_artifacts(tmp_path):
    alt = pytest.importorskip("altair")
    chart = alt.Chart(pd.DataFrame({"x": [1, 2], "y": [3, 4]})).mark_line().encode(x="x", y="y")
    paths = Artifacts(tmp_path, notebook="nb").chart("trend", chart)
    assert [p.name for p in paths] == ["trend.vl.json", "trend.svg"]
    assert paths[1].read_text().lstrip().startswith("<svg")


def test_diagnostics_from_inference_data():
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(1)
    idata = az.from_dict(
        posterior={"a": rng.normal(size=(2, 200)), "b": rng.normal(size=(2, 200, 3))},
        sample_stats={"diverging": np.zeros((2, 200), dtype=bool)},
    )
    diag = diagnostics_from_idata(idata)
    assert diag["divergences"] == 0 and diag["chains"] == 2 and diag["draws"] == 200
    assert 0.99 < diag["max_r_hat"] < 1.05 and diag["min_ess_bulk"] > 100
    assert evaluate_gates(diag, {**GATES, "min_ess_bulk": 50}) == []


# ---------------------------------------------------------------- inputs and tables
def test_segment_and_wave_filters(small_study):
    study, data = load_inputs(str(small_study))
    consumer = select_respondents(data, segment="Consumer")
    assert set(consumer.frame["segment"]) == {"Consumer"}
    assert select_respondents(data, segment="segment=Enterprise").n_respondents > 0
    wave = str(data.frame["wave"].iloc[0])
    both = select_respondents(data, segment="Consumer", wave=wave)
    assert set(both.frame["wave"].astype(str)) == {wave}
    with pytest.raises(SubsetError, match="segment 'Consumers' is not in the data"):
        select_respondents(data, segment="Consumers")
    with pytest.raises(SubsetError, match="wave '2030-Q1' is not in the data"):
        select_respondents(data, wave="2030-Q1")
    with pytest.raises(SubsetError, match="'region' is not a segment column"):
        select_respondents(data, segment="region=North")

    tables = data_quality_tables(consumer, consumer.quality_report(), segment="Consumer")
    summary = tables["data_quality_summary"].iloc[0]
    assert summary["segment"] == "Consumer" and summary["wave"] == "all"
    assert summary["n_respondents"] == consumer.n_respondents
    assert len(tables["data_quality_items"]) == len(study.item_names)
    cells = tables["data_quality_cells"]
    assert cells["n_respondents"].sum() == consumer.n_respondents
