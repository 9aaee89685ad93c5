"""Every dashboard in a real browser: `cx serve` on the sample publication, Chromium headless.

Each page must load with its widgets and charts, show no error or traceback, make no
request outside the server's origin, and show the numbers cxlib computes for what the
viewer picked.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cxlib.config import EVERYONE
from cxlib.dashboard.widgets import fmt
from cxlib.insights import what_if

#: a real Voila server driven by Debian's chromium (make check leaves these out)
pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
LOCAL = ("data:", "blob:", "about:")


class Page:
    def __init__(self, browser, server, name: str, query: str = ""):
        self.page = browser.new_page()
        self.outside: list[str] = []
        self.page.on(
            "request",
            lambda r: (
                None if r.url.startswith((server.origin, *LOCAL)) else self.outside.append(r.url)
            ),
        )
        self.page.goto(f"{server.origin}/voila/render/{name}.ipynb{query}", timeout=150_000)
        self.page.wait_for_selector(".cx-dashboard", timeout=90_000)
        self.page.wait_for_selector(".cx-chart svg .role-mark, .cx-missing", timeout=60_000)

    def check_clean(self) -> None:
        body = self.page.inner_text("body")
        assert "Traceback" not in body
        assert self.page.locator(".cx-error").count() == 0
        assert self.page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        assert self.page.locator(".jp-OutputArea-output .ansi-red-fg").count() == 0
        assert self.outside == [], "requests left the server's origin"

    def text(self, selector: str) -> str:
        return self.page.locator(selector).first.inner_text().strip()

    def wait_text(self, selector: str, expected: str, timeout: float = 15_000) -> None:
        self.page.wait_for_function(
            "([s, t]) => { const e = document.querySelector(s); return e && e.textContent.trim() === t; }",
            arg=[selector, expected],
            timeout=timeout,
        )

    def select(self, label: str, value: str) -> None:
        self.page.locator(".widget-dropdown", has_text=label).locator("select").select_option(value)

    def chart_labels(self) -> list[str]:
        return self.page.eval_on_selector_all(
            ".cx-chart svg [aria-label]", "els => els.map(e => e.getAttribute('aria-label'))"
        )

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000


def _kpi(sample, kpi, segment, wave=None):
    table = sample.kpis
    wave = wave or list(dict.fromkeys(table["wave"]))[-1]
    return table[(table.kpi == kpi) & (table.segment == segment) & (table.wave == wave)].iloc[0]


def test_overview(browser, server, sample, tmp_path):
    page = Page(browser, server, "overview")
    page.check_clean()
    row = _kpi(sample, "nps", EVERYONE)
    assert page.text("[data-kpi='nps'] [data-field='mean']") == fmt(row["mean"])
    assert page.text("[data-kpi='nps'] [data-field='interval']") == (
        f"[{fmt(row['hdi_low'])}, {fmt(row['hdi_high'])}]"
    )
    assert "Open alerts" in page.text("body")
    assert "Enterprise × 2025-Q4" in page.text(".cx-suppressed")
    page.screenshot(REPO / "docs" / "overview.png")
    page.screenshot(tmp_path / "overview.png")
    # switch segment: cards and chart follow
    page.select("Segment", "Consumer")
    consumer = _kpi(sample, "nps", "Consumer")
    page.wait_text("[data-kpi='nps'] [data-field='mean']", fmt(consumer["mean"]))
    page.page.wait_for_function(
        "() => [...document.querySelectorAll('.cx-chart svg [aria-label]')]"
        ".some(e => e.getAttribute('aria-label').includes('segment: Consumer'))"
    )
    page.check_clean()


def test_small_cell_is_not_shown(browser, server, sample):
    page = Page(browser, server, "overview")
    page.select("Segment", "Enterprise")
    page.page.wait_for_function(
        "() => [...document.querySelectorAll('.cx-chart svg [aria-label]')]"
        ".some(e => e.getAttribute('aria-label').includes('segment: Enterprise'))"
    )
    marks = [lab for lab in page.chart_labels() if "segment: Enterprise" in lab]
    assert marks and not [lab for lab in marks if "2025-Q4" in lab]
    small = _kpi(sample, "nps", "Enterprise", "2025-Q4")
    assert small["n"] < sample.min_cell_size
    assert f"n = {int(small['n'])}" not in page.text("body")
    page.check_clean()


def test_drivers(browser, server, sample, tmp_path):
    page = Page(browser, server, "drivers")
    page.check_clean()
    pri = sample.priorities[sample.priorities.level == "construct"]
    latest = list(dict.fromkeys(pri.wave))[-1]

    def expected(segment):
        rows = pri[(pri.segment == segment) & (pri.wave == latest)]
        return {r.driver: fmt(r.p_fix_first, 2) for r in rows.itertuples()}

    for driver, value in expected(EVERYONE).items():
        assert page.text(f"[data-driver='{driver}'][data-field='p_fix_first']") == value
    # technical vs emotional: a chart of every segment with enough respondents, P in words
    weights = sample.weights.set_index("segment")
    page.page.wait_for_selector(".cx-weights-chart svg .role-mark")
    labels = page.page.eval_on_selector_all(
        ".cx-weights-chart svg [aria-label]", "els => els.map(e => e.getAttribute('aria-label'))"
    )
    for segment in ("Consumer", "Small business"):
        for dim in ("technical", "emotional"):
            point = (
                f"weight: {float(weights.loc[segment, dim])}; segment: {segment}; dimension: {dim}"
            )
            assert any(point in lab for lab in labels), point
    assert not [lab for lab in labels if "Enterprise" in lab]  # too few respondents
    assert "Enterprise" in page.text(".cx-weights-chart .cx-suppressed")
    p = "[data-segment='Consumer'] [data-field='p_emotional_greater']"
    assert page.text(p) == fmt(weights.loc["Consumer", "p_emotional_greater"], 2)
    page.screenshot(tmp_path / "drivers.png")
    page.select("Segment", "Enterprise")
    for driver, value in expected("Enterprise").items():
        page.wait_text(f"[data-driver='{driver}'][data-field='p_fix_first']", value)
    page.page.wait_for_selector(f"text=/Driver priorities for .+ — Enterprise, {latest}/")
    page.select("Segment", "Small business")
    page.wait_text(
        "[data-segment='Small business'] [data-field='p_emotional_greater']",
        fmt(weights.loc["Small business", "p_emotional_greater"], 2),
    )
    page.check_clean()


def test_what_if_slider(browser, server, sample, tmp_path):
    page = Page(browser, server, "what-if")
    page.check_clean()
    assert page.text("[data-outcome='nps']") == "+0.00"
    handle = page.page.locator(".cx-slider-Image .noUi-handle")
    handle.focus()
    for _ in range(5):
        page.page.keyboard.press("ArrowRight")
    drivers = sample.model.drivers_of("Loyalty")
    shifts = {d: 5.0 if d == "Image" else 0.0 for d in drivers}

    def expected(segment):
        entry = sample.baseline["segments"][segment]
        levels = entry["drivers"] | {k: entry[k] for k in ("top2_box", "promoters", "detractors")}
        return what_if(sample.model, shifts, baseline=levels, segment=segment).table

    table = expected(EVERYONE)
    for r in table.itertuples():
        page.wait_text(f"[data-outcome='{r.outcome}']", fmt(r.change, 2, sign=True))
    nps = table.set_index("outcome").loc["nps", "change"]
    page.page.wait_for_function(
        "(t) => [...document.querySelectorAll('.cx-chart svg [aria-label]')]"
        ".some(e => e.getAttribute('aria-label').includes(t))",
        arg=f"label: NPS; change: {fmt(nps, 2, sign=True)}",
    )
    page.screenshot(tmp_path / "what-if.png")
    page.select("Segment", "Consumer")
    for r in expected("Consumer").itertuples():
        page.wait_text(f"[data-outcome='{r.outcome}']", fmt(r.change, 2, sign=True))
    page.check_clean()


def test_segments(browser, server, sample, tmp_path):
    page = Page(browser, server, "segments")
    page.check_clean()
    d = sample.differences
    latest = list(dict.fromkeys(sample.kpis.wave))[-1]
    rows = d[(d.kpi == "nps") & (d.wave == latest)]
    for r in rows.itertuples():
        assert page.text(f"[data-pair='{r.segment_a}|{r.segment_b}']") == fmt(r.p_a_greater, 2)
    page.screenshot(tmp_path / "segments.png")
    # Enterprise is a small cell in 2025-Q4, withheld with Small business (the next
    # smallest, so that everyone minus Consumer does not give it back): no pair is shown
    page.select("Wave", "2025-Q4")
    page.page.wait_for_function(
        "() => document.querySelectorAll(\"[data-pair]\").length === 0", timeout=30_000
    )
    assert "Small business × 2025-Q4" in page.text(".cx-complementary")
    assert page.page.locator("[data-pair*='Enterprise']").count() == 0
    assert not [lab for lab in page.chart_labels() if "Enterprise" in lab and "mean" in lab]
    page.check_clean()


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("segments", "?study=../../etc/passwd"),
        ("what-if", "?study=/etc/passwd"),
        ("drivers", "?study=telecom/../telecom-pilot"),
    ],
)
def test_a_path_in_the_query_string_is_refused(browser, server, name, query):
    page = Page(browser, server, name, query)
    page.page.wait_for_selector("text=is not a published study", timeout=30_000)
    assert (
        page.page.locator(".widget-dropdown", has_text="Study").locator("select").input_value()
        == "telecom"
    )
    assert "root:" not in page.text("body")
    page.check_clean()


def test_study_picker_link_and_missing_notebooks(browser, server, sample):
    page = Page(browser, server, "overview", "?study=telecom-pilot")
    page.page.wait_for_selector(".cx-flag-stale", timeout=30_000)
    page.select("Study", "telecom-pilot")  # (already chosen by the link)
    assert "Telecom pilot" in page.text(".cx-title")
    # the link switched the study while the page loaded: cards and chart show the pilot's
    pilot = sample.pilot_kpis
    latest = list(dict.fromkeys(pilot["wave"]))[-1]
    row = pilot[(pilot.kpi == "nps") & (pilot.segment == EVERYONE) & (pilot.wave == latest)].iloc[0]
    page.wait_text("[data-kpi='nps'] [data-field='mean']", fmt(row["mean"]))
    page.page.wait_for_function(
        "([t, s, w]) => [...document.querySelectorAll('.cx-chart svg [aria-label]')]"
        ".map(e => e.getAttribute('aria-label'))"
        ".some(l => l.includes(t) && l.includes(s) && l.includes(w))",
        # Vega writes a minus sign for "-"
        arg=[f"mean: {row['mean']:.12g}".replace("-", "\u2212"), f": {EVERYONE}", f": {latest}"],
        timeout=15_000,
    )
    page.check_clean()


def test_server_serves_no_files(server):
    for path in (
        "/voila/files/overview.ipynb",
        "/voila/files/../voila.json",
        "/voila/render/../voila.json",
    ):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.origin + path, timeout=10)
        assert err.value.code in (403, 404)


def test_server_log_reads_clean(server):
    """Kernels over IPC (voila.json): no 'TCP without encryption' per kernel; dashboards signed."""
    log = server.log.read_text()
    assert "Kernel pool of overview.ipynb is filled" in log
    assert "without encryption" not in log
    assert "BLAS" not in log
    assert "is not trusted" not in log  # cx serve signs its own dashboards
