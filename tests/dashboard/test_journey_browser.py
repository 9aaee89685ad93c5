"""The Journey page in a real browser: heat map, budget slider re-allocating from stored draws, gap.

The sample publication (``tests/dashboard/sample.py``) gets a published run of
``05-touchpoints-and-journey`` built here without sampling: hand-set gain draws, the
sample study's cost table and internal assessment, and the tables cxlib computes from
them. The page must show exactly what cxlib computes for the budget the viewer picks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxlib import config
from cxlib.dashboard.journey import JOURNEY_NOTEBOOK, budget_range, snap_budget
from cxlib.dashboard.widgets import fmt
from cxlib.data import load_responses
from cxlib.insights.allocation import TouchpointGains, allocate_budget, read_cost_table
from cxlib.insights.delivery_gap import delivery_gap, read_internal_assessment
from cxlib.insights.journey import default_budget
from cxlib.models.touchpoints.data import CHANNELS, STAGES, journey_map
from cxlib.pipeline.tables import label_table
from cxlib.stats import interval_columns, summarize_draws
from cxlib.study import load_study
from tests.dashboard.conftest import Server
from tests.dashboard.sample import publish_run

#: a real Voila server driven by Debian's chromium (make check leaves these out)
pytestmark = pytest.mark.browser

LOCAL = ("data:", "blob:", "about:")


def publish_journey(runs_dir: Path) -> dict:
    """Publish a 05 run for ``telecom`` under ``runs_dir``; return what the page must show."""
    study = load_study(config.SAMPLE_STUDY)
    data = load_responses(study)
    journey = journey_map(study)
    rng = np.random.default_rng(21)
    T = len(journey)
    perf = np.array(
        [np.nanmean(100 * (data.frame[i].to_numpy(float) - 1) / 6) for i in journey["item"]]
    )
    mean = np.linspace(0.02, 0.05, T)
    gains = TouchpointGains(
        list(journey["touchpoint"]),
        mean + 0.006 * rng.standard_normal((400, T)),
        perf,
        labels=list(journey["label"]),
        channels=list(journey["channel"]),
        stages=list(journey["stage"]),
        target="Loyalty",
    )
    costs = read_cost_table(study.source_path("touchpoint_costs"), gains.touchpoints)
    budget = default_budget(costs, gains)
    plan = allocate_budget(gains, costs, budget)
    gap = delivery_gap(
        data, journey, read_internal_assessment(study.source_path("internal_assessment"), journey)
    )
    rows = []
    for s in STAGES:
        for c in CHANNELS:
            k = [j for j in range(T) if journey["stage"][j] == s and journey["channel"][j] == c]
            e = summarize_draws(
                gains.gain_per_point[:, k].mean(axis=1), quantity="effect_on_target"
            )
            rows.append(
                {"stage": s, "channel": c, "touchpoints": ", ".join(journey["touchpoint"][k]),
                 "n_touchpoints": len(k), "has_touchpoints": bool(k),
                 "performance": perf[k].mean(),
                 **dict.fromkeys(["performance_sd", *interval_columns("performance")], np.nan),
                 **{q: float(v) for q, v in e.items()},
                 "p_effective": 1.0, "target": "Loyalty"}
            )  # fmt: skip
    effect = summarize_draws(gains.gain_per_point.T, quantity="effect_on_target")
    effects = pd.DataFrame(
        {"touchpoint": gains.touchpoints, "item": journey["item"], "label": journey["label"],
         "channel": journey["channel"], "stage": journey["stage"],
         "n_answered": [int(data.frame[i].notna().sum()) for i in journey["item"]],
         "share_used": 1.0, "performance": perf,
         **dict.fromkeys(interval_columns("performance"), np.nan),
         **effect,
         **dict.fromkeys(
             ["effect_on_outcome", "effect_on_outcome_sd", *interval_columns("effect_on_outcome")],
             np.nan,
         ),
         "p_effective": 1.0, "rank": np.arange(1, T + 1), "not_used_shift": 0.0, "sparse": False,
         "outcome": "Satisfaction", "target": "Loyalty"}
    )  # fmt: skip

    def write(out):
        tables = {
            "journey_matrix": pd.DataFrame(rows),
            "touchpoint_effects": effects,
            "touchpoint_costs": costs,
            "allocation_summary": pd.DataFrame([plan.summary]),
            "delivery_gap": gap.table,
            "delivery_gap_summary": pd.DataFrame([gap.summary]),
        }
        for name, table in tables.items():
            out.table(name, label_table(table, study=study.name))
        gains.save(out.path / "touchpoint_gains.npz")

    publish_run(
        runs_dir / study.name,
        study.name,
        JOURNEY_NOTEBOOK,
        write,
        stamp="20261120T060000Z",
        diagnostics={"max_r_hat": 1.003, "min_ess_bulk": 1200.0, "divergences": 0},
    )
    return {"gains": gains, "costs": costs, "budget": budget, "gap": gap}


@pytest.fixture(scope="module")
def journey(sample):
    return publish_journey(sample.runs_dir)


@pytest.fixture(scope="module")
def journey_server(sample, journey, tmp_path_factory):
    srv = Server(sample.runs_dir, tmp_path_factory.mktemp("serve-journey") / "cx-serve.log")
    try:
        srv.wait()
        srv.wait_pools(["journey"])
        yield srv
    finally:
        srv.stop()


def _open(browser, server):
    page = browser.new_page()
    outside: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith((server.origin, *LOCAL)) else outside.append(r.url),
    )
    page.goto(f"{server.origin}/voila/render/journey.ipynb", timeout=150_000)
    page.wait_for_selector(".cx-dashboard", timeout=90_000)
    page.wait_for_selector("[data-field='gain']", timeout=60_000)
    page.wait_for_selector(".cx-chart svg .role-mark", timeout=60_000)
    return page, outside


def _clean(page, outside) -> None:
    assert "Traceback" not in page.inner_text("body")
    assert page.locator(".cx-error").count() == 0
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert outside == [], "requests left the server's origin"


def _wait_text(page, selector: str, expected: str) -> None:
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return e && e.textContent.trim() === t; }",
        arg=[selector, expected],
        timeout=20_000,
    )


def test_journey_page(browser, journey_server, journey, tmp_path):
    page, outside = _open(browser, journey_server)
    _clean(page, outside)
    gains, costs = journey["gains"], journey["costs"]
    low, high, step = budget_range(costs, gains)
    budget = snap_budget(journey["budget"], low, high, step)  # the slider's grid
    # the heat map: one cell per stage x channel, named by its touchpoint
    labels = page.eval_on_selector_all(
        ".cx-chart svg [aria-label]", "els => els.map(e => e.getAttribute('aria-label'))"
    )
    assert any("web_compare" in lab for lab in labels)
    # the plan for the published budget is what cxlib computes
    plan = allocate_budget(gains, costs, budget)
    _wait_text(page, "[data-field='gain']", fmt(plan.summary["gain"], 2))
    assert page.locator("[data-field='spent']").first.inner_text().strip() == fmt(
        plan.summary["spent"], 0
    )
    for r in plan.plan.itertuples():
        selector = f"[data-touchpoint='{r.touchpoint}'][data-field='points']"
        assert page.locator(selector).first.inner_text().strip() == f"+{fmt(r.points, 0)}"
    # the delivery gap: the share overrated and each touchpoint's P(company overrates)
    gap = journey["gap"]
    share = page.locator("[data-field='share_overrated']").first.inner_text().strip()
    assert share == f"{fmt(100 * gap.summary['share_overrated'], 0)}%"
    for r in gap.table.itertuples():
        selector = f"[data-touchpoint='{r.touchpoint}'][data-field='p_overrates']"
        assert page.locator(selector).first.inner_text().strip() == fmt(r.p_company_overrates, 2)
    page.screenshot(path=str(tmp_path / "journey.png"), full_page=True)
    assert (tmp_path / "journey.png").stat().st_size > 10_000
    # move the budget slider five steps up: the plan is re-optimized from the stored draws
    handle = page.locator(".cx-budget .noUi-handle")
    handle.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    more = allocate_budget(gains, costs, min(budget + 5 * step, high))
    assert more.summary["gain"] >= plan.summary["gain"]
    _wait_text(page, "[data-field='gain']", fmt(more.summary["gain"], 2))
    _wait_text(page, "[data-field='spent']", fmt(more.summary["spent"], 0))
    _clean(page, outside)


def test_journey_page_without_a_published_run(sample, journey):
    """The pilot study has no 05 run: every part says "not published yet", nothing fails."""
    from cxlib.dashboard import JourneyDashboard

    page = JourneyDashboard(["telecom-pilot"], runs_dir=sample.runs_dir)
    assert page.error.value == ""
    for part in (page.plan_html.value, page.gap_html.value, page.heatmap.note.value):
        assert "not published yet" in part and JOURNEY_NOTEBOOK in part
    assert page.budget.layout.display == "none"


def test_budget_slider_range(journey):
    gains, costs = journey["gains"], journey["costs"]
    low, high, step = budget_range(costs, gains)
    assert low >= costs["cost_per_point"].min() and (low - costs["cost_per_point"].min()) < step
    assert high >= journey["budget"] and step > 0
    assert snap_budget(journey["budget"], low, high, step) == pytest.approx(
        low + round((journey["budget"] - low) / step) * step
    )
