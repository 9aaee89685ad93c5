"""The dashboards' loader and widgets, without Voila or a browser."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from cxlib.cli import cx
from cxlib.config import EVERYONE
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
from cxlib.pipeline.schemas import TableSchemaError


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
    assert cells.to_dict("records") == [
        {"segment": "Enterprise", "wave": "2025-Q4", "reason": "small"},
        # withheld with it, so that everyone minus the segments shown does not give it back
        {"segment": "Small business", "wave": "2025-Q4", "reason": "complementary"},
    ]
    assert not ((kept.segment == "Enterprise") & (kept.wave == "2025-Q4")).any()
    assert not ((kept.segment == "Small business") & (kept.wave == "2025-Q4")).any()


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
    entry = sample.baseline["segments"][EVERYONE]
    levels = entry["drivers"] | {k: entry[k] for k in ("top2_box", "promoters", "detractors")}
    shifts = dict.fromkeys(page.sliders, 0.0) | {"Experience": 7.0}
    expected = what_if(sample.model, shifts, baseline=levels).table.set_index("outcome")
    got = page.compute(EVERYONE, shifts).table.set_index("outcome")
    assert got["change"].to_dict() == pytest.approx(expected["change"].to_dict())
    assert (
        f'data-field="change">{fmt(expected.loc["nps", "change"], 2, sign=True)}<'
        in page.outcomes.value
    )


def reseal(path) -> None:
    """Record a published file rewritten on purpose as its notebook's own (size, SHA-256).

    Dashboards refuse a file that differs from what its notebook wrote (damaged);
    these tests alter files to exercise the checks that come after that one.
    """
    import hashlib

    out = next(p for p in path.parents if p.name == "artifacts")
    manifest = json.loads((out / "manifest.json").read_text())
    relative = path.relative_to(out).as_posix()
    for entry in manifest["files"]:
        if entry["path"] == relative:
            entry["bytes"] = path.stat().st_size
            entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))


def test_a_broken_artifact_shows_a_note_not_a_traceback(sample, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(sample.runs_dir, runs)
    next((runs / "telecom").glob("*00-study*/artifacts/tables/kpis.parquet")).write_bytes(b"junk")
    page = OverviewDashboard.from_runs(runs)
    assert "tables/kpis.parquet of 00-study-overview/" in page.header.value
    assert "is damaged" in page.header.value and "Traceback" not in page.error.value


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


def test_drivers_show_the_dimension_weights_chart(sample):
    page = DriversDashboard.from_runs(sample.runs_dir)
    assert page.error.value == ""
    assert page.weights_chart.chart is not None
    data = page.weights_chart.chart.spec["datasets"]["cx-data-0"]
    shown = {(r["segment"], r["dimension"]): r["weight"] for r in data}
    weights = sample.weights.set_index("segment")
    assert shown == {
        (s, d): pytest.approx(weights.loc[s, d])
        for s in ("Consumer", "Small business")  # Enterprise: too few respondents
        for d in ("technical", "emotional")
    }
    assert "Enterprise" in page.weights_chart.note.value
    page.segment.value = "Consumer"
    p = fmt(weights.loc["Consumer", "p_emotional_greater"], 2)
    assert f'data-field="p_emotional_greater">{p}<' in page.weights.value
    assert "Small business" not in page.weights.value
    page.segment.value = "Enterprise"
    assert "suppressed" in page.weights.value


def test_a_chart_with_new_data_only_swaps_its_rows(sample):
    from cxlib.dashboard.widgets import chart_values

    page = WhatIfDashboard.from_runs(sample.runs_dir)
    chart = page.chart
    assert chart.last_update == "spec"
    spec = chart.chart.spec
    page.sliders["Image"].value = 4
    assert chart.last_update == "data"
    assert chart.chart.spec is spec  # not redrawn
    (update,) = chart.chart._py_to_js_updates
    expected = page.compute(EVERYONE, dict.fromkeys(page.sliders, 0.0) | {"Image": 4.0}).table
    assert update["name"] == "cx-data-0"
    assert update["value"] == chart_values(expected)
    # the same chart built by altair embeds the same rows
    import altair as alt

    assert update["value"] == alt.data_transformers.get()(expected)["values"]
    # a chart whose spec differs (not only its data) is drawn anew
    overview = OverviewDashboard.from_runs(sample.runs_dir)
    overview.kpi.value = "loyalty_index"
    assert overview.trend.last_update == "spec"


def test_the_offline_chart_bundle_is_built_once_and_cached(tmp_path, monkeypatch):
    from cxlib.dashboard import widgets

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(widgets, "_CHART_CLASS", None)
    chart_class, swaps_rows = widgets.offline_chart()
    (cached,) = (tmp_path / "cxlib").glob("jupyterchart-offline-*.js")
    assert swaps_rows and chart_class._esm == cached.read_text()
    assert "esm.sh" not in chart_class._esm  # nothing fetched from a CDN
    import altair as alt

    alt.JupyterChart.enable_offline()  # altair's own bundle, unpatched
    patched, plain = chart_class._esm, alt.JupyterChart._esm
    assert patched.count("_py_to_js_updates") == plain.count("_py_to_js_updates") + 1
    cached.write_text(chart_class._esm + "\n// cached")
    monkeypatch.setattr(widgets, "_CHART_CLASS", None)
    assert widgets.offline_chart()[0]._esm.endswith("// cached")


def test_a_broken_weights_table_leaves_the_priority_map_standing(sample, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(sample.runs_dir, runs)
    table = next((runs / "telecom").glob("*03-technical*/artifacts/tables/*weights.parquet"))
    pd.read_parquet(table).drop(columns=["technical_hdi_low"]).to_parquet(table)
    reseal(table)
    page = DriversDashboard.from_runs(runs)
    assert "could not be shown" in page.error.value
    assert page.map.chart is not None and page.map.chart.layout.display is None
    assert 'data-field="p_fix_first"' in page.table.value


def test_a_run_in_an_older_results_format_is_flagged_and_not_half_shown(sample, tmp_path):
    """Published before the one vocabulary (``change_mean``, ``"All"``): stale, and a note."""
    runs = tmp_path / "runs"
    shutil.copytree(sample.runs_dir, runs)
    out = next((runs / "telecom").glob("*00-study*/artifacts"))
    kpis = pd.read_parquet(out / "tables" / "kpis.parquet")
    old = kpis.rename(columns={"change": "change_mean"}).drop(columns=["change_sd"])
    old.replace({"segment": {EVERYONE: "All"}}).to_parquet(out / "tables" / "kpis.parquet")
    reseal(out / "tables" / "kpis.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["files"]:
        entry.pop("format", None)
    (out / "manifest.json").write_text(json.dumps(manifest))
    results = load_published("telecom", runs)
    assert any("older results format" in s for s in results.status()["stale"])
    with pytest.raises(TableSchemaError, match="column 'change_mean' is not declared"):
        results.table("overview", "kpis")
    page = OverviewDashboard.from_runs(runs)
    assert "cx-flag-stale" in page.header.value
    assert "could not be shown (TableSchemaError)" in page.error.value
