"""Damaged files never stop the workbench (issue #22, findings 3, 4 and two of 10).

A damaged pointer falls back to the previous publication, flagged, and the runner
repairs it; a corrupt catalog is moved aside and rebuilt from the run folders; a
catalog behind the pointer catches up; published files carry checksums that the
dashboards and the runner check; ``cx runs | head`` ends quietly; a full disk is
named as such. Most tests build run folders with :class:`Artifacts` (no kernel);
the ``notebooks``-marked ones run the toy notebook through ``cx run``.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cxlib.cli import cx
from cxlib.dashboard.results import load_published, published_studies
from cxlib.pipeline import provenance
from cxlib.pipeline.artifacts import Artifacts, damaged_artifacts
from cxlib.pipeline.provenance import DiskFullError, write_json_atomic
from cxlib.pipeline.publish import (
    FALLBACK,
    PREVIOUS_POINTER_FILE,
    read_pointer,
    restore_pointer,
    switch_pointer,
)
from cxlib.pipeline.store import DAMAGED, ResultsStore, mark_damaged_runs

STUDY = "telecom"
SLOT = "toy/all"
DAMAGES = {
    "truncated": lambda text: text[: len(text) // 2],
    "not JSON": lambda _text: "\x00\x01 garbage",
    "wrong shape": lambda _text: "[1, 2]",
}


def published_run(runs: Path, run_id: str, value: int = 1, *, study: str = STUDY) -> dict:
    """A succeeded run of the toy notebook as the runner leaves it (manifests and a table)."""
    run_dir = runs / study / run_id
    out = Artifacts(run_dir / "artifacts", notebook="toy")
    out.table("toy_values", pd.DataFrame({"wave": ["all"], "value": [value]}))
    out.finish()
    manifest = {
        "run_id": run_id,
        "study": study,
        "pipeline": "toy",
        "notebook": {"name": "toy"},
        "label": "all",
        "slot": SLOT,
        "status": "succeeded",
        "key": f"key-{run_id}",
        "data": {"hash": "abc"},
        "timings": {"started_at": "2026-12-01T06:00:00Z", "duration_s": 1.0},
        "run_dir": str(run_dir),
        "output_dir": str(out.path),
        "artifacts": [
            {"path": p.relative_to(out.path).as_posix(), "bytes": p.stat().st_size}
            for p in sorted(out.path.rglob("*"))
            if p.is_file()
        ],
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def publish(runs: Path, run_id: str, *, study: str = STUDY) -> dict:
    entry = {
        "run_id": run_id,
        "notebook": "toy",
        "label": "all",
        "output_dir": f"{run_id}/artifacts",
    }
    return switch_pointer(runs / study, study, {SLOT: entry}, pipeline="toy")


def two_publications(runs: Path) -> tuple[dict, dict]:
    published_run(runs, "r1", 1)
    first = publish(runs, "r1")
    published_run(runs, "r2", 2)
    return first, publish(runs, "r2")


# ---------------------------------------------------------------- finding 3: the pointer
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_pointer_falls_back_to_the_previous_publication_flagged(tmp_path, damage):
    runs = tmp_path / "runs"
    first, second = two_publications(runs)
    assert second["previous"] == first["publication_id"]
    assert json.loads((runs / STUDY / PREVIOUS_POINTER_FILE).read_text()) == first
    pointer_file = runs / STUDY / "published.json"
    pointer_file.write_text(DAMAGES[damage](pointer_file.read_text()))

    pointer = read_pointer(runs / STUDY)
    assert pointer["publication_id"] == first["publication_id"]
    assert pointer["runs"][SLOT]["run_id"] == "r1"
    message = pointer[FALLBACK]["message"]
    assert str(pointer_file) in message and "cx run" in message

    assert published_studies(runs) == [STUDY]  # the study stays on the dashboards
    results = load_published(STUDY, runs)
    assert results.fallback and results.fallback_reason == message
    assert results.table("toy", "toy_values")["value"].tolist() == [1]
    assert results.status()["fallback"] == message and message in results.status()["stale"]


def test_one_studys_bad_pointer_never_hides_the_others(tmp_path):
    """What ``cx serve`` lists: a wrong-shaped pointer (no previous copy) made it exit."""
    runs = tmp_path / "runs"
    published_run(runs, "r1")
    publish(runs, "r1")
    (runs / "broken").mkdir()
    (runs / "broken" / "published.json").write_text("[1, 2]")
    assert published_studies(runs) == ["broken", STUDY]
    broken = load_published("broken", runs)
    assert broken.fallback and broken.folders == {}
    assert "wrong shape" in broken.fallback_reason and "no usable" in broken.fallback_reason
    assert load_published(STUDY, runs).table("toy", "toy_values") is not None


def test_restoring_a_damaged_pointer_keeps_it_aside(tmp_path):
    runs = tmp_path / "runs"
    first, _ = two_publications(runs)
    (runs / STUDY / "published.json").write_text('{"runs": ')
    said = restore_pointer(runs / STUDY)
    assert "was damaged (not JSON" in said and first["publication_id"] in said
    assert read_pointer(runs / STUDY) == first
    kept = list((runs / STUDY).glob("published.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == '{"runs": '
    assert restore_pointer(runs / STUDY) is None  # intact now: nothing to do

    third = publish(runs, "r2")  # a switch over a damaged pointer builds on its fallback
    (runs / STUDY / "published.json").write_text("[]")
    fourth = publish(runs, "r1")
    assert fourth["previous"] == first["publication_id"] != third["publication_id"]
    assert FALLBACK not in read_pointer(runs / STUDY)


# ---------------------------------------------------------------- finding 4: the catalog
def test_a_corrupt_catalog_is_moved_aside_and_rebuilt_by_cx_runs(tmp_path):
    runs = tmp_path / "runs"
    db = runs / "results.duckdb"
    two_publications(runs)
    ResultsStore(db).sync_study(runs / STUDY)
    db.write_bytes(os.urandom(4096))

    result = CliRunner().invoke(cx, ["runs", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "bug in cx" not in result.output
    assert "was unreadable" in result.output and "rebuilt from the run folders" in result.output
    assert "r2 *" in result.output and "r1 " in result.output
    assert len(list(runs.glob("results.duckdb.corrupt-*"))) == 1

    db.write_bytes(b"not a database")  # the runner's path: sync_study at its start
    store = ResultsStore(db)
    store.sync_study(runs / STUDY)
    assert store.query("select run_id from published_toy_values")["run_id"].tolist() == ["r2"]


def test_a_catalog_behind_the_pointer_catches_up(tmp_path):
    """A runner killed right after switching the pointer leaves the catalog one behind."""
    runs = tmp_path / "runs"
    db = runs / "results.duckdb"
    published_run(runs, "r1", 1)
    publish(runs, "r1")
    ResultsStore(db).sync_study(runs / STUDY)
    published_run(runs, "r2", 2)
    publish(runs, "r2")  # ... and killed before the store mirrored it

    result = CliRunner().invoke(cx, ["runs", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "r2 *" in result.output and "r1 *" not in result.output
    live = ResultsStore(db).query("select run_id from published_runs")["run_id"].tolist()
    assert live == ["r2"]
    assert ResultsStore(db).catch_up(runs) == []  # in step now


# ---------------------------------------------------------------- finding 4: checksums
def test_damaged_artifacts_name_each_file_and_why(tmp_path):
    manifest = published_run(tmp_path / "runs", "r1")
    out = Path(manifest["output_dir"])
    assert damaged_artifacts(out, manifest["artifacts"]) == []
    table = out / "tables" / "toy_values.parquet"
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size
    table.write_bytes(bytes(data))
    assert damaged_artifacts(out, manifest["artifacts"]) == [
        "tables/toy_values.parquet: its SHA-256 checksum differs from the one taken when it "
        "was written"
    ]
    table.write_bytes(b"junk")
    assert damaged_artifacts(out)[0].startswith("tables/toy_values.parquet: 4 bytes")
    table.unlink()
    assert damaged_artifacts(out) == ["tables/toy_values.parquet: missing"]
    (out / "manifest.json").unlink()
    assert damaged_artifacts(out, manifest["artifacts"])[0] == "manifest.json: missing"


def test_dashboards_report_a_damaged_table_and_do_not_show_it(tmp_path):
    runs = tmp_path / "runs"
    manifest = published_run(runs, "r1")
    publish(runs, "r1")
    table = Path(manifest["output_dir"]) / "tables" / "toy_values.parquet"
    pd.DataFrame({"wave": ["all"], "value": [999]}).to_parquet(table)  # valid, but not ours

    results = load_published(STUDY, runs)
    assert results.table("toy", "toy_values") is None  # never the altered numbers
    why = results.damage("toy", "toy_values")
    assert "tables/toy_values.parquet of toy/all is damaged" in why and "cx run" in why
    status = results.status()
    assert status["damaged"] == [why] and why in status["stale"]


def test_the_runner_marks_a_run_with_damaged_artifacts_so_it_is_not_reused(tmp_path):
    runs = tmp_path / "runs"
    manifest = published_run(runs, "r1")
    publish(runs, "r1")
    assert mark_damaged_runs(runs / STUDY) == []
    (Path(manifest["output_dir"]) / "tables" / "toy_values.parquet").write_bytes(b"junk")

    store = ResultsStore(runs / "results.duckdb")
    store.sync_study(runs / STUDY)  # what the runner does at its start, holding the lock
    marked = json.loads((runs / STUDY / "r1" / "manifest.json").read_text())
    assert marked["status"] == DAMAGED and marked["damage"]["status_was"] == "succeeded"
    assert marked["damage"]["files"][0].startswith("tables/toy_values.parquet: 4 bytes")
    assert store.runs()[0]["status"] == DAMAGED
    assert mark_damaged_runs(runs / STUDY) == []  # said once


# ---------------------------------------------------------------- finding 10: rough edges
def test_cx_runs_into_a_closed_pipe_ends_quietly(tmp_path):
    runs = tmp_path / "runs"
    two_publications(runs)
    ResultsStore(runs / "results.duckdb").sync_study(runs / STUDY)
    read, write = os.pipe()
    os.close(read)  # `cx runs | head -1` once head has gone
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cxlib.cli", "runs", "--db", str(runs / "results.duckdb")],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.stderr == ""  # no "internal error: BrokenPipeError", no traceback
    assert done.returncode in (0, 1)


def test_a_full_disk_is_named_with_the_file(tmp_path, monkeypatch):
    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(provenance.os, "replace", full)
    with pytest.raises(DiskFullError, match="the disk is full: cannot write .*published.json"):
        write_json_atomic(tmp_path / "published.json", {"runs": {}})
    monkeypatch.undo()


def test_a_full_disk_in_the_catalog_is_not_hidden_by_the_failed_rollback(tmp_path, monkeypatch):
    """DuckDB ends the transaction itself on a failed write; ROLLBACK then fails too."""
    import duckdb

    runs = tmp_path / "runs"
    two_publications(runs)
    store = ResultsStore(runs / "results.duckdb")

    def disk_full(self, study, pointer, con=None):
        con.execute("ROLLBACK")  # what DuckDB does when a write fails
        raise duckdb.IOException(
            'IO Error: Could not write file "results.duckdb.wal": No space left on device'
        )

    monkeypatch.setattr(ResultsStore, "set_published", disk_full)
    with pytest.raises(DiskFullError) as caught:
        store.sync_study(runs / STUDY)
    message = str(caught.value)
    assert "the disk is full" in message and str(store.path) in message
    assert "No space left on device" in message and "cannot rollback" not in message


# ---------------------------------------------------------------- through `cx run`
@pytest.mark.notebooks  # runs the toy notebook with papermill (a few seconds)
def test_cx_run_repairs_a_damaged_pointer_and_catalog(make_spec, tmp_path):
    spec = make_spec()
    db = tmp_path / "runs" / "results.duckdb"
    assert CliRunner().invoke(cx, ["run", str(spec)]).exit_code == 0
    first = read_pointer(tmp_path / "runs" / STUDY)
    assert CliRunner().invoke(cx, ["run", str(spec), "--force"]).exit_code == 0
    second = read_pointer(tmp_path / "runs" / STUDY)
    for damaged in ("[1, 2]", '{"runs": {'):
        (tmp_path / "runs" / STUDY / "published.json").write_text(damaged)
        db.write_bytes(os.urandom(2048))
        result = CliRunner().invoke(cx, ["run", str(spec)])
        assert result.exit_code == 0, result.output
        assert "bug in cx" not in result.output and "up to date" in result.output
        pointer = read_pointer(tmp_path / "runs" / STUDY)
        assert FALLBACK not in pointer and pointer["previous"] == first["publication_id"]
        assert pointer["runs"] == second["runs"]  # the up-to-date runs, republished
    assert len(list((tmp_path / "runs" / STUDY).glob("published.json.corrupt-*"))) >= 1
    assert len(list((tmp_path / "runs").glob("results.duckdb.corrupt-*"))) >= 1
    live = ResultsStore(db).query("select run_id from published_runs")["run_id"].tolist()
    assert live == [second["runs"][next(iter(second["runs"]))]["run_id"]]


@pytest.mark.notebooks  # runs the toy notebook with papermill (a few seconds)
def test_cx_run_reruns_a_slot_whose_published_table_is_damaged(make_spec, tmp_path):
    spec = make_spec()
    assert CliRunner().invoke(cx, ["run", str(spec)]).exit_code == 0
    pointer = read_pointer(tmp_path / "runs" / STUDY)
    (entry,) = pointer["runs"].values()
    table = tmp_path / "runs" / STUDY / entry["output_dir"] / "tables" / "toy_values.parquet"
    table.write_bytes(b"junk")

    result = CliRunner().invoke(cx, ["run", str(spec)])
    assert result.exit_code == 0, result.output
    assert "up to date" not in result.output and "published" in result.output
    (fresh,) = read_pointer(tmp_path / "runs" / STUDY)["runs"].values()
    assert fresh["run_id"] != entry["run_id"]
    old = json.loads((tmp_path / "runs" / STUDY / entry["run_id"] / "manifest.json").read_text())
    assert old["status"] == DAMAGED
    assert "up to date" in CliRunner().invoke(cx, ["run", str(spec)]).output


@pytest.mark.notebooks  # runs the toy notebook with papermill (a few seconds)
def test_cx_run_names_the_full_disk_when_publishing_fails(make_spec, tmp_path, monkeypatch):
    import duckdb

    def disk_full(self, run_id, study, output_dir, con=None):  # loading the new run's tables
        con.execute("ROLLBACK")  # what DuckDB does when a write fails
        raise duckdb.IOException("IO Error: Could not write to file: No space left on device")

    monkeypatch.setattr(ResultsStore, "load_tables", disk_full)
    result = CliRunner().invoke(cx, ["run", str(make_spec())])
    assert result.exit_code == 1, result.output
    assert "the disk is full: cannot update" in result.output
    assert "results.duckdb" in result.output and "cannot rollback" not in result.output
    assert read_pointer(tmp_path / "runs" / STUDY) is None  # nothing went live half-way
