"""The dashboards' loader and widgets, without Voila or a browser."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from cxlib.cli import cx
from cxlib.dashboard import (
    DriversDashboard,
    OverviewDashboard,
    SegmentsDashboard,
    StudyNotPublishedError,
    WhatIfDashboard,
    load_published,
    published_studies,
    requested_study,
    suppress_small_cells,
)
from cxlib.dashboard.widgets import fmt
from cxlib.insights import what_if


def test_only_published_studies_are_offered(sample, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(sample.runs_dir, runs)
    (runs / "unpublished").mkdir()
    (runs / ".hidden").mkdir()
    assert published_studies(runs) == ["telecom", "telecom-pilot"]
    for name in ("../telecom", "/etc", "unpublished", "telecom/../telecom"):
        with pytest.raises(StudyNotPublishedError, match="not a published study"):
            load_published(name, runs)


def test_query_string_names_a_study_never_a_path():
    studies = ["telecom", "telecom-pilot"]
    assert requested_study("study=telecom-pilot", studies) == ("telecom-pilot", "")
    assert requested_study("", studies) == (None, "")
    study, note = requested_study("study=../../etc/passwd", studies)
    assert study is None and "not a published study" in note


def test_pointer_outside_the_study_folder_is_ignored(sample, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(sample.runs_dir, runs)
    pointer = json.loads((runs / "telecom" / "published.json").read_text())
    slot = "00-study-overview/all"
    pointer["runs"][slot]["output_dir"] = "../telecom-pilot/x"
    (runs / "telecom" / "published.json").write_text(json.dumps(pointer))
    assert not load_published("telecom", runs).has("overview")


def test_small_cells_are_suppressed(sample):
    kept, cells = suppress_small_cells(sample.kpis, sample.min_cell_size)
    assert cells.to_dict("records") == [{"segment": "Enterprise", "wave": "2025-Q4"}]
    assert not ((kept.segment == "Enterprise") & (kept.wave == "2025-Q4")).any()


def test_status_flags_stale_and_failed(sample, tmp_path):
    status = load_published("telecom-pilot", sample.runs_dir).status()
    assert status["stale"] and "failed" in status["stale"][0]
    runs = tmp_path / "runs"
    shutil.copytree(sample.runs_dir, runs)
    manifest = next((runs / "telecom").glob("*02-experience*/manifest.json"))
    data = json.loads(manifest.read_text())
    data["diagnostics"]["max_r_hat"] = 1.2
    manifest.write_text(json.dumps(data))
    status = load_published("telecom", runs).status()
    assert status["failed"] == ["02-experience-brand-loyalty"]
    page = OverviewDashboard.from_runs(runs)
    assert "cx-flag-failed" in page.header.value


def test_overview_cards_follow_the_segment(sample):
    page = OverviewDashboard.from_runs(sample.runs_dir)
    assert page.studies == ["telecom", "telecom-pilot"]
    row = sample.kpis.query("kpi == 'nps' and segment == 'Consumer' and wave == '2026-Q3'").iloc[0]
    page.segment.value = "Consumer"
    assert f'data-field="mean">{fmt(row["mean"])}<' in page.cards.value
    assert "Enterprise × 2025-Q4" in page.suppressed.value
    assert page.error.value == ""


def test_missing_notebooks_say_not_published(sample):
    drivers = DriversDashboard.from_runs(sample.runs_dir, study="telecom-pilot")
    assert "not published yet" in drivers.map.note.value
    assert "not published yet" in drivers.weights.value
    whatif = WhatIfDashboard.from_runs(sample.runs_dir, study="telecom-pilot")
    assert "not published yet" in whatif.outcomes.value
    segments = SegmentsDashboard.from_runs(sample.runs_dir, study="telecom-pilot")
    assert "not published yet" in segments.pairs.value
    for page in (drivers, whatif, segments):
        assert page.error.value == ""


def test_what_if_slider_recomputes_from_draws(sample):
    page = WhatIfDashboard.from_runs(sample.runs_dir)
    page.sliders["Experience"].value = 7
    entry = sample.baseline["segments"]["All"]
    levels = entry["drivers"] | {k: entry[k] for k in ("top2_box", "promoters", "detractors")}
    shifts = dict.fromkeys(page.sliders, 0.0) | {"Experience": 7.0}
    expected = what_if(sample.model, shifts, baseline=levels).table.set_index("outcome")
    got = page.compute("All", shifts).table.set_index("outcome")
    assert got["change"].to_dict() == pytest.approx(expected["change"].to_dict())
    assert f'data-field="change">{fmt(expected.loc["nps", "change"], 2, sign=True)}<' in page.outcomes.value


def test_a_broken_artifact_shows_a_note_not_a_traceback(sample, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(sample.runs_dir, runs)
    next((runs / "telecom").glob("*00-study*/artifacts/tables/kpis.parquet")).write_bytes(b"junk")
    page = OverviewDashboard.from_runs(runs)
    assert "could not be shown" in page.error.value


def test_no_study_published(tmp_path):
    page = OverviewDashboard.from_runs(tmp_path)
    assert "No study is published yet" in page.header.value


def test_cx_serve_refuses_a_busy_port(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = CliRunner().invoke(cx, ["serve", "--port", str(port), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{port}" in result.output
