"""The Digital experience page: widgets driven directly, and once in a real browser.

A published 06 run is written without fitting (``tests/dashboard/sample.py``:
:func:`publish_digital`, hand-set numbers in the declared columns) for four studies:

- ``shop``: everything, a converged model;
- ``shop-pilot``: only an overview (06 "not published yet");
- ``shop-unconverged``: 06 published from a model that did not converge;
- ``shop-web``: no session event log, 06 recorded not applicable by the pipeline;
- ``shop-noevents``: no session event log, nothing recorded about 06 (not measured).
"""

from __future__ import annotations

import json

import pytest

from cxlib.dashboard.digital import (
    ALL_TOUCHPOINTS,
    DIGITAL_NOTEBOOK,
    TOP_PAGES,
    DigitalDashboard,
    day_scores,
    worst_pages,
)
from cxlib.dashboard.serve import CONFIG_DIR_VARIABLE
from cxlib.dashboard.widgets import esc, fmt, interval
from cxlib.errors import CxError
from cxlib.study import ROLES
from tests.dashboard.conftest import Server
from tests.dashboard.sample import (
    DIGITAL_DAYS,
    DIGITAL_ODD_PAGE,
    DIGITAL_PAGE_SIGNALS,
    DIGITAL_TOUCHPOINTS,
    publish_digital,
    publish_overview_only,
)

LOCAL = ("data:", "blob:", "about:")
#: What the pipeline records for a study without an event log (no how-to: the page adds it).
NO_EVENTS = "study 'shop-web' declares no session event log"


@pytest.fixture(scope="module")
def digital(tmp_path_factory):
    runs = tmp_path_factory.mktemp("digital-runs") / "runs"
    published = publish_digital(runs, "shop")
    publish_digital(
        runs, "shop-unconverged", diagnostics={"max_r_hat": 1.31, "min_ess_bulk": 40.0,
                                               "divergences": 12}
    )  # fmt: skip
    publish_overview_only(runs, "shop-pilot")
    how = ROLES.get("events", "declare the session event log under `source: events`")
    summary = {
        "name": "shop-web",
        "title": "Shop, web only",
        "labels": {},
        "kpis": {},
        "roles": {},
        "unmet": {"events": f"{NO_EVENTS}; to add it, {how}"},
    }
    publish_overview_only(
        runs,
        "shop-web",
        summary=summary,
        not_applicable={f"{DIGITAL_NOTEBOOK}/all": NO_EVENTS},
    )
    # the same study before the pipeline recorded 06 as not applicable: not measured
    publish_overview_only(runs, "shop-noevents", summary=summary | {"name": "shop-noevents"})
    return published | {"runs_dir": runs}


def _page(digital, study="shop") -> DigitalDashboard:
    page = DigitalDashboard.from_runs(digital["runs_dir"], study=study)
    assert page.error.value == ""
    return page


def _field(html: str, field: str, **attrs) -> str:
    """The text of the ``<span data-field=...>`` in ``html`` (first match)."""
    extra = "".join(f' data-{k}="{v}"' for k, v in attrs.items())
    start = html.index(f'<span data-field="{field}"{extra}>') + len(
        f'<span data-field="{field}"{extra}>'
    )
    return html[start : html.index("</span>", start)]


def _chart_rows(view) -> list[dict]:
    """The rows the chart shows now (swapped in, or in its spec)."""
    if view.last_update == "data":
        return view.chart._py_to_js_updates[0]["value"]
    return next(iter(view.chart.spec["datasets"].values()))


def test_headline_is_the_published_numbers(digital):
    page = _page(digital)
    scores = digital["tables"]["digital_scores"]
    groups = digital["tables"]["digital_surveyed_vs_all"].set_index("group")
    everyone = scores[scores["level"] == "all"].iloc[0]
    html = page.headline.value
    assert _field(html, "score_all") == fmt(everyone["score"])
    assert _field(html, "score_all_interval") == interval(everyone, "score")
    assert _field(html, "sessions") == f"{everyone['sessions']:,}"
    unsurveyed = groups.loc["unsurveyed"]
    assert (
        _field(html, "unsurveyed_dissatisfied") == f"{fmt(100 * unsurveyed['dissatisfied_share'])}%"
    )
    assert _field(html, "score_surveyed") == fmt(groups.loc["surveyed", "score"])
    assert _field(html, "score_group_all") == fmt(groups.loc["all", "score"])
    assert _field(html, "stated_surveyed") == fmt(groups.loc["surveyed", "stated"])
    summary = digital["summary"]
    assert _field(html, "response_rate") == f"{fmt(100 * summary['response_rate'])}%"
    assert "a rating of 2 or less on 1-5" in html
    # who answers: the survey-only reading overstates, and the coefficient's meaning is said
    note = page.selection_note.value
    gap = groups.loc["surveyed", "score"] - groups.loc["all", "score"]
    assert "Frustrated sessions answer less often." in note
    assert f"overstate satisfaction by {fmt(gap)} points" in note
    assert summary["selection"]["meaning"] in note and "+0.42" in note
    assert page.flags.value == ""
    assert DIGITAL_NOTEBOOK in page.header.value


def test_touchpoint_table_flags_few_sessions(digital):
    page = _page(digital)
    scores = digital["tables"]["digital_scores"]
    html = page.touchpoints_html.value
    for r in scores[scores["level"] == "touchpoint"].to_dict("records"):
        tp = r["touchpoint"]
        assert _field(html, "score", touchpoint=tp) == fmt(r["score"])
        assert _field(html, "score_interval", touchpoint=tp) == interval(r, "score")
        assert _field(html, "sessions", touchpoint=tp) == f"{r['sessions']:,}"
        row = html[html.index(f'<tr data-touchpoint="{tp}"') :].split("</tr>", 1)[0]
        assert ("few sessions" in row) == r["few_sessions"]
    assert "fewer than 100 sessions" in html  # the study's min_cell_size of digital.json
    # worst touchpoint first
    assert html.index('data-touchpoint="app_selfservice"') < html.index(
        'data-touchpoint="web_compare"'
    )


def test_touchpoint_selection_filters_the_chart(digital):
    page = _page(digital)
    scores = digital["tables"]["digital_scores"]
    assert [label for label, _ in page.touchpoint.options][0] == "All touchpoints"
    assert {v for _, v in page.touchpoint.options} == {ALL_TOUCHPOINTS, *DIGITAL_TOUCHPOINTS}
    every_day = scores[scores["level"] == "day"].sort_values("day")
    shown = _chart_rows(page.day_chart)
    assert [r["score"] for r in shown] == pytest.approx(list(every_day["score"]))
    page.touchpoint.value = "app_order"
    assert page.error.value == ""
    expected = day_scores(scores, "app_order")
    assert len(expected) == DIGITAL_DAYS and set(expected["touchpoint"]) == {"app_order"}
    shown = _chart_rows(page.day_chart)
    assert [r["day"] for r in shown] == list(expected["day"])
    assert [r["score"] for r in shown] == pytest.approx(list(expected["score"]))
    assert page.day_chart.last_update == "data"  # swapped in place, not redrawn
    row = scores[(scores["level"] == "touchpoint") & (scores["touchpoint"] == "app_order")]
    assert _field(page.day_caption.value, "selection_score") == fmt(row["score"].iloc[0])
    assert "app_order" in page.day_caption.value
    # back to every session
    page.touchpoint.value = ALL_TOUCHPOINTS
    assert len(_chart_rows(page.day_chart)) == len(every_day)


def test_signals_ranked_by_largest_cost_with_definitions(digital):
    page = _page(digital)
    signals = digital["tables"]["digital_signals"].sort_values("p_largest_cost", ascending=False)
    html = page.signals_html.value
    positions = [html.index(f'<tr data-signal="{s}"') for s in signals["signal"]]
    assert positions == sorted(positions)
    for r in signals.to_dict("records"):
        assert _field(html, "effect", signal=r["signal"]) == fmt(r["effect"], 2, sign=True)
        assert _field(html, "p_largest_cost", signal=r["signal"]) == fmt(r["p_largest_cost"], 2)
    # the definition in a tooltip and small text, escaped
    assert 'title="&lt;i&gt;Rage clicks&lt;/i&gt; as cxlib.data.signals defines it"' in html
    assert "<i>" not in html


def test_signal_dropdown_reorders_worst_pages(digital):
    page = _page(digital)
    pages = digital["tables"]["digital_worst_pages"]
    assert [v for _, v in page.signal.options][0] == "rage_clicks"  # the costliest first
    assert {v for _, v in page.signal.options} == set(DIGITAL_PAGE_SIGNALS)
    orders = {}
    for signal in DIGITAL_PAGE_SIGNALS:
        page.signal.value = signal
        assert page.error.value == ""
        html = page.pages_html.value
        expected = worst_pages(pages, signal)
        assert len(expected) == TOP_PAGES and html.count("<tr>") == TOP_PAGES + 1
        for r in expected.to_dict("records"):
            rank = str(r["rank"])
            assert _field(html, "rate", rank=rank) == fmt(r["rate"], 3)
        orders[signal] = [_field(html, "page", rank=str(k)) for k in range(1, TOP_PAGES + 1)]
        assert orders[signal][0] != ""
    assert len({tuple(o) for o in orders.values()}) > 1  # the order follows the signal
    # the odd page name is escaped wherever it shows
    odd = [s for s, o in orders.items() if any("bold" in p for p in o)]
    assert odd, "the fixture's odd page is among some signal's top pages"
    page.signal.value = odd[0]
    assert "&lt;b&gt;bold&lt;/b&gt;&amp;x=1" in page.pages_html.value
    assert DIGITAL_ODD_PAGE not in page.pages_html.value


def test_model_check(digital):
    page = _page(digital)
    html = page.check_html.value
    assert "ELPD -131.7" in html and "99 surveyed sessions" in html
    assert html.count("<tr>") == 1 + len(digital["tables"]["digital_calibration"])


def test_not_published_yet(digital):
    page = _page(digital, "shop-pilot")
    assert 'data-missing="06-digital-experience"' in page.headline.value
    assert "not published yet" in page.headline.value
    assert page.sections.layout.display == "none"


def test_not_applicable_says_how_to_add_an_event_log(digital):
    page = _page(digital, "shop-web")
    html = page.headline.value
    assert "cx-not-applicable" in html and "not applicable for this study" in html
    assert esc(NO_EVENTS) in html
    assert "source:" in html and "events" in html  # the events role's how-to
    assert page.sections.layout.display == "none"


def test_not_measured_says_how_to_add_an_event_log(digital):
    page = _page(digital, "shop-noevents")
    html = page.headline.value
    assert 'data-role="events"' in html and "not measured" in html
    assert esc(ROLES.get("events", "source: events")) in html


def test_not_converged_is_flagged(digital):
    page = _page(digital, "shop-unconverged")
    assert "cx-flag-unconverged" in page.flags.value
    assert 'data-notebook="06-digital-experience"' in page.flags.value
    assert "06-digital-experience failed" in page.header.value  # the diagnostics line
    assert page.headline.value  # the numbers still show, provisional


@pytest.mark.parametrize("broken", ["digital_calibration", "digital_scores"])
def test_a_table_in_another_format_leaves_the_rest(digital, monkeypatch, broken):
    """A table that breaks its declaration is said so in its part; the page never fails."""
    from cxlib.dashboard.results import PublishedResults
    from cxlib.pipeline.schemas import TableSchemaError

    table = PublishedResults.table

    def old_format(self, notebook, name):
        if name == broken:
            raise TableSchemaError(name, ["column 'stated_se' is not declared"])
        return table(self, notebook, name)

    monkeypatch.setattr(PublishedResults, "table", old_format)
    page = _page(digital)
    if broken == "digital_calibration":
        assert "cannot be shown" in page.check_html.value and "ELPD" in page.check_html.value
        assert "score_all" in page.headline.value and page.signals_html.value
    else:
        assert "cannot be shown" in page.headline.value
        assert page.sections.layout.display == "none"
    assert "stated_se" not in page.check_html.value + page.headline.value


def test_switching_studies_keeps_a_known_selection(digital):
    page = _page(digital)
    page.touchpoint.value = "web_compare"
    page.signal.value = "form_errors"
    page.picker.value = "shop-unconverged"
    assert page.error.value == ""
    assert page.touchpoint.value == "web_compare" and page.signal.value == "form_errors"
    page.picker.value = "shop-pilot"
    assert page.error.value == "" and page.sections.layout.display == "none"
    page.picker.value = "shop"
    assert page.sections.layout.display is None and "score_all" in page.headline.value


def test_score_by_day_chart():
    from cxlib.plots.digital import score_by_day
    from tests.dashboard.sample import digital_tables

    scores = digital_tables("shop")["tables"]["digital_scores"]
    chart = score_by_day(day_scores(scores))
    spec = chart.to_dict()
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["area", "line", "point"]
    with pytest.raises(CxError, match="score_hdi_low"):
        score_by_day(scores.drop(columns=["score_hdi_low"]))


# ---------------------------------------------------------------------- in a real browser
@pytest.fixture(scope="module")
def digital_server(digital, tmp_path_factory):
    """`cx serve` on the fixture, one preheated kernel of the digital page only."""
    folder = tmp_path_factory.mktemp("voila-digital")
    pools = {"default": {"pool_size": 0}, "digital.ipynb": {"pool_size": 1}}
    (folder / "voila.json").write_text(
        json.dumps({"VoilaKernelManager": {"kernel_pools_config": pools}})
    )
    log = tmp_path_factory.mktemp("serve-digital") / "cx-serve.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CONFIG_DIR_VARIABLE, str(folder))
        srv = Server(digital["runs_dir"], log)
    try:
        srv.wait()
        srv.wait_pools(["digital"])
        yield srv
    finally:
        srv.stop()


def _wait_text(page, selector: str, expected: str) -> None:
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return e && e.textContent.trim() === t; }",
        arg=[selector, expected],
        timeout=20_000,
    )


@pytest.mark.browser
def test_digital_page_in_a_browser(browser, digital_server, digital, tmp_path):
    page = browser.new_page()
    outside: list[str] = []
    origin = digital_server.origin
    page.on(
        "request", lambda r: None if r.url.startswith((origin, *LOCAL)) else outside.append(r.url)
    )
    page.goto(f"{origin}/voila/render/digital.ipynb?study=shop", timeout=150_000)
    page.wait_for_selector(".cx-dashboard", timeout=90_000)
    page.wait_for_selector("[data-field='score_all']", timeout=60_000)
    page.wait_for_selector(".cx-chart svg .role-mark", timeout=60_000)
    scores = digital["tables"]["digital_scores"]
    everyone = scores[scores["level"] == "all"].iloc[0]
    _wait_text(page, "[data-field='score_all']", fmt(everyone["score"]))
    assert page.locator("table.cx-touchpoints tr").count() == 1 + len(DIGITAL_TOUCHPOINTS)
    assert page.locator("table.cx-signals tr").count() == 1 + len(
        digital["tables"]["digital_signals"]
    )
    assert page.locator("table.cx-pages tr").count() == 1 + TOP_PAGES
    # pick a touchpoint: the caption and the chart follow
    page.select_option(".cx-touchpoint select", label="app_order")
    row = scores[(scores["level"] == "touchpoint") & (scores["touchpoint"] == "app_order")]
    _wait_text(page, "[data-field='selection_score']", fmt(row["score"].iloc[0]))
    # pick a signal: the worst pages follow
    page.select_option(".cx-signal select", label="Dead clicks")
    first = worst_pages(digital["tables"]["digital_worst_pages"], "dead_clicks").iloc[0]
    _wait_text(page, "[data-field='page'][data-rank='1']", first["page"])
    page.wait_for_selector(".cx-chart svg .role-mark", timeout=20_000)
    assert "Traceback" not in page.inner_text("body")
    assert page.locator(".cx-error").count() == 0
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert outside == [], "requests left the server's origin"
    page.screenshot(path=str(tmp_path / "digital.png"), full_page=True)
    assert (tmp_path / "digital.png").stat().st_size > 10_000
    page.close()


def test_journey_shows_the_behaviour_based_performance_beside_the_survey():
    import pandas as pd

    from cxlib.dashboard.journey import behaviour_table

    effects = pd.DataFrame(
        {
            "touchpoint": ["app_order", "store_advice"],
            "label": ["Ordering in the <app>", ""],
            "performance": [71.0, 60.0],
            "behaviour_performance": [58.4, float("nan")],
            "behaviour_performance_hdi_low": [55.0, float("nan")],
            "behaviour_performance_hdi_high": [61.9, float("nan")],
            "behaviour_sessions": [66335, 0],
        }
    )
    html = behaviour_table(effects)
    assert "Ordering in the &lt;app&gt;" in html and "58.4" in html and "66,335" in html
    assert "store_advice" not in html  # no web or app sessions: not in the table
    assert behaviour_table(effects.drop(columns=["behaviour_performance"])) == ""
    assert behaviour_table(None) == ""
