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
from cxlib.pipeline.artifacts import ARTIFACT_FORMAT, Artifacts, diagnostics_from_idata
from cxlib.pipeline.errors import StudyBusyError
from cxlib.pipeline.gates import evaluate_gates
from cxlib.pipeline.inputs import SubsetError, load_inputs, select_respondents
from cxlib.pipeline.lock import StudyLock
from cxlib.pipeline.publish import published_runs, read_pointer, switch_pointer
from cxlib.pipeline.schemas import TableSchemaError
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
def write_table(path, rows, fmt=ARTIFACT_FORMAT) -> None:
    """A run's Parquet table as Artifacts.table writes it (``fmt`` None: before formats)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    if fmt is not None:
        table = table.replace_schema_metadata(
            {**table.schema.metadata, b"cxlib.artifact_format": str(fmt)}
        )
    pq.write_table(table, path)


def fake_run(runs, run_id, status="succeeded", rows=None, fmt=ARTIFACT_FORMAT, **extra):
    run_dir = runs / "telecom" / run_id
    out = run_dir / "artifacts"
    (out / "tables").mkdir(parents=True)
    if rows is not None:
        write_table(out / "tables" / "kpis.parquet", rows, fmt)
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


def test_an_empty_table_first_does_not_block_typed_rows_later(tmp_path):
    """A table published empty (no improper-solution warnings) and later with rows."""
    out = Artifacts(tmp_path / "a", notebook="02-experience-brand-loyalty")
    empty = pd.DataFrame(
        {
            c: pd.Series([], dtype=object)
            for c in ("study", "segment", "wave", "kind", "constructs", "message", "advice")
        }
    )
    path = out.table("sem_warnings", empty.assign(value=pd.Series([], dtype=float)))
    import pyarrow.parquet as pq

    assert str(pq.read_schema(path).field("kind").type) == "string"
    store = ResultsStore(tmp_path / "results.duckdb")
    store.load_tables("r1", "s", out.path)
    rows = Artifacts(tmp_path / "b", notebook="02-experience-brand-loyalty")
    rows.table(
        "sem_warnings",
        pd.DataFrame(
            {
                "study": ["s"],
                "segment": ["all"],
                "wave": ["all"],
                "kind": ["htmt"],
                "constructs": ["A, B"],
                "value": [0.95],
                "message": ["m"],
                "advice": ["a"],
            }
        ),
    )
    store.load_tables("r2", "s", rows.path)
    assert store.query("select kind from sem_warnings")["kind"].tolist() == ["htmt"]


def test_store_rebuilds_itself_after_an_artifact_format_change(tmp_path):
    """A store built for an older format is dropped and reloaded from the run folders."""
    from click.testing import CliRunner

    from cxlib.cli import cx

    runs = tmp_path / "runs"
    db = runs / "results.duckdb"
    store = ResultsStore(db)
    old = {"segment": ["All"], "wave": ["2026-Q1"], "change_mean": [-2.0]}
    fake_run(runs, "r1", rows=old, fmt=None)  # written before formats
    fake_run(runs, "r2", rows={"segment": ["all"], "wave": ["2026-Q2"], "change": [1.5]})
    switch_pointer(runs / "telecom", "telecom", {"02-sem/all": {"run_id": "r2"}})
    store.sync_study(runs / "telecom")
    history = store.query("select run_id, change from kpis")
    assert history.to_dict("list") == {"run_id": ["r2"], "change": [1.5]}  # r1: other format
    assert {r["run_id"] for r in store.runs()} == {"r1", "r2"}  # both stay in the catalog

    # a store an older cxlib built: r1's table loaded, no format recorded
    with store.connect() as con:
        con.execute("COMMENT ON TABLE runs IS NULL")
        con.execute("ALTER TABLE kpis ADD COLUMN change_mean DOUBLE")
        con.execute(
            "INSERT INTO kpis (run_id, study, wave, change_mean) "
            "VALUES ('r1', 'telecom', '2026-Q1', -2.0)"
        )
    result = CliRunner().invoke(cx, ["runs", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"results store rebuilt from the run folders (artifact format {ARTIFACT_FORMAT})" in (
        result.output
    )
    assert "change_mean" not in store.query("select * from kpis").columns
    assert store.query("select run_id from published_kpis")["run_id"].tolist() == ["r2"]
    assert not store.upgrade()  # current now: nothing to do
    again = CliRunner().invoke(cx, ["runs", "--db", str(db)])
    assert "rebuilt" not in again.output and "r2 *" in again.output


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
    entry = next(f for f in manifest["files"] if f["kind"] == "table")
    assert entry["format"] == ARTIFACT_FORMAT


def test_a_table_that_breaks_its_declaration_is_not_written(tmp_path):
    out = Artifacts(tmp_path / "out", notebook="01-data-quality")
    items = pd.DataFrame(
        {
            "study": ["telecom"],
            "segment": ["all"],
            "wave": ["all"],
            "item": ["NPS"],
            "construct": ["Loyalty"],
            "scale": ["0-10"],
            "missing": ["a lot"],  # not a number
            "floor": [0.1],
            "ceilling": [0.2],  # misspelt
            "flag": [""],
        }
    )
    with pytest.raises(TableSchemaError) as err:
        out.table("data_quality_items", items)
    message = str(err.value)
    assert "published table 'data_quality_items' (01-data-quality)" in message
    assert "column 'ceilling' is not declared (did you mean 'ceiling'?)" in message
    assert "column 'ceiling' is missing (expected float)" in message
    assert "column 'missing' holds 'a lot' (row 0); expected float" in message
    assert "Traceback" not in message and "pandera" not in message.lower()
    assert not (tmp_path / "out" / "tables" / "data_quality_items.parquet").exists()
    # a notebook the declarations know publishes only its declared tables
    with pytest.raises(TableSchemaError, match="01-data-quality cannot publish the table 'kpiz'"):
        out.table("kpiz", items)


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
