"""Pages adapt to the study (issue #17): labels, KPIs it has, not applicable, model flags.

On ``mobile`` (tests/dashboard/plain.py: no NPS, no segments, construct codes with
labels, 03 and 05 not applicable, an improper SEM) and on pointers written before the
pointer carried the study's summary. No Voila, no browser.
"""

from __future__ import annotations

import json
import shutil

import pytest

from cxlib.config import EVERYONE
from cxlib.dashboard import (
    DriversDashboard,
    JourneyDashboard,
    OverviewDashboard,
    SegmentsDashboard,
    WhatIfDashboard,
    load_published,
)
from cxlib.dashboard.widgets import fmt
from tests.dashboard.plain import LABELS, NAME, without_summary
from tests.dashboard.test_widgets import reseal


def _copy(plain, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(plain["runs_dir"], runs)
    return runs


def test_the_pointer_says_what_the_study_has(plain):
    results = load_published(NAME, plain["runs_dir"])
    assert results.study_summary["kpis"]["nps"] is None
    assert results.title == "Mobile phone survey (ECSI-like)"
    assert results.label("IMAG") == "Brand image" and results.label("other") == "other"
    assert results.target == "LOY"
    assert results.kpi_label("loyalty_index") == "Customer loyalty index (0-100)"
    assert (
        results.not_applicable("expectations") == plain["reasons"]["03-technical-vs-emotional/all"]
    )
    assert "declares no touchpoints" in results.not_applicable("05-touchpoints-and-journey")
    assert results.not_applicable("overview") is None and results.not_applicable("drivers") is None
    assert not results.has("expectations")
    assert "kpis: {nps: ITEM}" in results.unmet("nps")
    assert list(results.not_applicable_notebooks) == [
        "03-technical-vs-emotional",
        "05-touchpoints-and-journey",
    ]
    header = OverviewDashboard.from_runs(plain["runs_dir"]).header.value
    assert "Not applicable for this study" in header and "05-touchpoints-and-journey" in header


def test_a_pointer_written_before_the_summary_behaves_as_before(plain, tmp_path):
    runs = _copy(plain, tmp_path)
    path = runs / NAME / "published.json"
    path.write_text(json.dumps(without_summary(json.loads(path.read_text()))))
    results = load_published(NAME, runs)
    assert results.study_summary is None
    assert results.label("IMAG") == "IMAG"
    assert results.unmet("nps") is None and results.not_applicable("expectations") is None
    assert results.target == "LOY"  # from the published what-if baseline
    assert results.title == "Mobile phone survey (ECSI-like)"  # overview.json
    drivers = DriversDashboard.from_runs(runs)
    assert "not published yet" in drivers.weights.value
    assert "cx-flag-improper" in drivers.flags.value  # diagnostics.json still says so
    segments = SegmentsDashboard.from_runs(runs)
    assert "no segments" in segments.segments_note.value  # the KPIs hold only everyone
    assert "columns: {segments:" in segments.segments_note.value
    overview = OverviewDashboard.from_runs(runs)
    assert overview.error.value == "" and 'data-kpi="loyalty_index"' in overview.cards.value


def test_overview_without_nps_leads_with_the_kpis_the_study_has(plain):
    page = OverviewDashboard.from_runs(plain["runs_dir"])
    assert page.error.value == ""
    assert page.headline == ["satisfaction_mean", "loyalty_index"]
    assert 'data-kpi="nps"' not in page.cards.value
    row = plain["kpis"].query("kpi == 'loyalty_index' and wave == '2026'").iloc[0]
    assert f'data-field="mean">{fmt(row["mean"])}<' in page.cards.value
    assert "Customer loyalty index (0-100)" in page.cards.value
    assert page.kpi.value == "satisfaction_mean"  # the trend of the first one present
    spec = page.trend.chart.spec
    assert "Satisfaction (mean)" in json.dumps(spec["title"])
    intro = page.intro.value
    assert "Satisfaction (mean) and Customer loyalty index (0-100)" in intro
    assert "NPS" not in intro
    assert 'data-role="nps"' in page.unmeasured.value
    assert "kpis: {nps: ITEM}" in page.unmeasured.value
    page.kpi.value = "loyalty_index"
    assert "Customer loyalty index" in json.dumps(page.trend.chart.spec["title"])


def test_an_improper_model_is_flagged_on_every_page_that_shows_it(plain):
    for cls in (OverviewDashboard, DriversDashboard, WhatIfDashboard):
        page = cls.from_runs(plain["runs_dir"])
        flags = page.flags.value
        assert flags.count("cx-flag-improper") == 2, cls.__name__  # once per problem
        assert "Satisfaction, Customer loyalty" in flags and "Brand image, Expectations" in flags
        assert "beyond ±1" in flags and "What to try: merge IMAG and EXPE." in flags
        assert "cx-flag-unconverged" not in flags
    assert SegmentsDashboard.from_runs(plain["runs_dir"]).flags.value == ""  # KPIs only


def test_a_model_that_did_not_converge_is_flagged(plain, tmp_path):
    runs = _copy(plain, tmp_path)
    diag_path = next((runs / NAME).glob("*02-experience*/artifacts/diagnostics.json"))
    diag = json.loads(diag_path.read_text()) | {"max_r_hat": 1.2, "ok": False}
    diag["problems"] = ["max R-hat 1.200 > 1.01"]
    diag["improper"] = {"ok": True, "problems": []}
    diag_path.write_text(json.dumps(diag))
    reseal(diag_path)
    for cls in (OverviewDashboard, DriversDashboard, WhatIfDashboard):
        page = cls.from_runs(runs)
        assert "cx-flag-unconverged" in page.flags.value, cls.__name__
        assert "max R-hat 1.200" in page.flags.value
    journey = JourneyDashboard.from_runs(runs)  # its model (05) is not applicable here
    assert "cx-flag" not in journey.flags.value


def test_drivers_speak_the_spec_labels_and_say_what_is_not_applicable(plain):
    page = DriversDashboard.from_runs(plain["runs_dir"])
    assert page.error.value == ""
    assert "drivers of Customer loyalty" in page.intro.value
    for code in ("IMAG", "SAT"):
        assert f'data-code="{code}">{LABELS[code]}<' in page.table.value
    assert ">IMAG<" not in page.table.value
    rows = page.map.chart.spec["datasets"]["cx-data-0"]
    assert {r["driver_label"] for r in rows} == {"Brand image", "Expectations", "Satisfaction"}
    assert "total effect on Customer loyalty" in str(page.map.chart.spec)  # the target's label
    assert "Technical vs. emotional weights: not applicable for this study" in page.weights.value
    assert "declares no attributes" in page.weights.value and "attributes:" in page.weights.value
    assert page.weights_chart.layout.display == "none"  # the view appears only when published


def test_what_if_explains_the_study_target_without_nps(plain):
    page = WhatIfDashboard.from_runs(plain["runs_dir"])
    assert page.error.value == ""
    assert page.target == "LOY"
    assert set(page.sliders) == {"IMAG", "EXPE", "SAT"}
    assert page.sliders["IMAG"].description == "Brand image"
    page.sliders["SAT"].value = 5
    table = page.compute(EVERYONE, {"SAT": 5.0}).table
    assert list(table["outcome"]) == ["target_score", "top2_box"]  # no NPS item
    assert "Customer loyalty score (0-100)" in page.outcomes.value
    assert "Satisfaction +5" in page.outcomes.value
    assert "Customer loyalty, its top-2-box share" in page.intro.value
    assert "NPS" not in page.intro.value


def test_segments_and_journey_say_why_they_are_empty(plain):
    segments = SegmentsDashboard.from_runs(plain["runs_dir"])
    assert segments.error.value == ""
    note = segments.segments_note.value
    assert "This study has no segments to compare" in note and "columns: {segments:" in note
    assert segments.chart.chart is None and segments.pairs.value == ""
    journey = JourneyDashboard.from_runs(plain["runs_dir"])
    assert journey.error.value == ""
    for part in (journey.heatmap.note.value, journey.plan_html.value, journey.gap_html.value):
        assert "not applicable for this study" in part and "declares no touchpoints" in part


def test_the_picker_offers_a_study_published_after_the_kernel_started(plain, sample, tmp_path):
    """Voila runs the first cell before the request: the request reads the list again."""
    runs = tmp_path / "runs"
    shutil.copytree(sample.runs_dir / "telecom-pilot", runs / "telecom-pilot")
    page = OverviewDashboard.from_runs(runs)  # the preheated kernel
    assert page.studies == ["telecom-pilot"]
    shutil.copytree(plain["runs_dir"] / NAME, runs / NAME)  # published since
    page.apply_request(f"study={NAME}")  # the first request
    assert list(page.picker.options) == [NAME, "telecom-pilot"]
    assert page.picker.value == NAME and page.request_note.value == ""
    assert 'data-kpi="loyalty_index"' in page.cards.value
    # no study at all when the kernel started, one when the page is asked for
    empty = tmp_path / "empty"
    empty.mkdir()
    page = OverviewDashboard.from_runs(empty)
    assert "No study is published yet" in page.header.value
    shutil.copytree(plain["runs_dir"] / NAME, empty / NAME)
    page.apply_request("")
    assert page.picker.value == NAME and page.picker.layout.display is None
    assert 'data-kpi="loyalty_index"' in page.cards.value and page.error.value == ""


def test_a_study_republished_after_the_kernel_started_is_shown_fresh(plain, tmp_path):
    runs = _copy(plain, tmp_path)
    page = DriversDashboard.from_runs(runs)
    assert "Brand image" in page.table.value
    path = runs / NAME / "published.json"
    pointer = json.loads(path.read_text())
    pointer["study"]["labels"]["IMAG"] = "Corporate image"
    pointer["publication_id"] = "20261201T000000Z-renamed"
    path.write_text(json.dumps(pointer))
    page.apply_request("")
    assert "Corporate image" in page.table.value


@pytest.mark.parametrize("shape", ["runs", "not_applicable"])
def test_not_applicable_slots_in_either_place(plain, tmp_path, shape):
    runs = _copy(plain, tmp_path)
    path = runs / NAME / "published.json"
    pointer = json.loads(path.read_text())
    entry = {"status": "not_applicable", "reason": "study 'mobile' declares no NPS item"}
    slot = "00-study-overview/all"
    if shape == "runs":
        pointer["runs"][slot] = entry
    else:
        pointer["runs"].pop(slot)
        pointer["not_applicable"][slot] = entry
    path.write_text(json.dumps(pointer))
    results = load_published(NAME, runs)
    assert not results.has("overview")
    assert results.not_applicable("overview") == entry["reason"]
    page = OverviewDashboard.from_runs(runs)
    assert "KPIs: not applicable for this study: study &#x27;mobile&#x27; declares no NPS" in (
        page.cards.value
    )
    assert page.error.value == ""
