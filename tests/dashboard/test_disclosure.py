"""The pages withhold a small cell's complement too: everyone minus the segments shown
gives no small cell back (issue #22, finding 5), also on a publication made before the
published tables were protected (the sample publishes the KPIs unprotected)."""

from __future__ import annotations

from cxlib.config import EVERYONE
from cxlib.dashboard import (
    DriversDashboard,
    OverviewDashboard,
    SegmentsDashboard,
    WhatIfDashboard,
)

SMALL = ("Enterprise", "2025-Q4")


def subtraction(table, kpi, wave, withheld):
    """Everyone's n minus the shown segments' n: the withheld cells' respondents together."""
    rows = table[(table["kpi"] == kpi) & (table["wave"] == wave)]
    everyone = int(rows.loc[rows["segment"] == EVERYONE, "n"].iloc[0])
    shown = rows[(rows["segment"] != EVERYONE) & ~rows["segment"].isin(withheld)]
    return everyone - int(shown["n"].sum())


def test_segments_page_cannot_be_differenced(sample):
    page = SegmentsDashboard.from_runs(sample.runs_dir)
    segment, wave = SMALL
    kpis = sample.kpis
    small_n = int(kpis.query("kpi == 'nps' and segment == @segment and wave == @wave")["n"].iloc[0])
    withheld = page.cells[page.cells["wave"] == wave]
    assert set(withheld["segment"]) == {segment, "Small business"}  # the next smallest
    assert dict(zip(withheld["segment"], withheld["reason"], strict=True)) == {
        segment: "small",
        "Small business": "complementary",
    }
    shown = page.kpis
    assert (
        not shown[(shown["wave"] == wave) & shown["segment"].isin(withheld["segment"])].any().any()
    )
    for kpi in dict.fromkeys(shown["kpi"]):
        together = subtraction(shown, kpi, wave, set(withheld["segment"]))
        # the small cell's n could be anything from 1 to together - 1: far wider than min
        assert together - 1 >= small_n and together - 2 >= sample.min_cell_size
    # nothing else is withheld: every other cell of the study is shown
    cells = kpis[["segment", "wave"]].drop_duplicates()
    assert len(shown[["segment", "wave"]].drop_duplicates()) == len(cells) - 2
    assert "Small business × 2025-Q4" in page.suppressed.value
    assert "cx-complementary" in page.suppressed.value
    page.wave.value = wave
    assert "Small business" not in page.pairs.value and page.error.value == ""


def test_a_change_since_a_withheld_wave_is_not_shown(sample):
    page = OverviewDashboard.from_runs(sample.runs_dir)
    after = page.kpis[
        (page.kpis["wave"] == "2026-Q1")
        & page.kpis["segment"].isin(["Enterprise", "Small business"])
    ]
    assert len(after) and after["mean"].notna().all() and after["change"].isna().all()
    consumer = page.kpis[(page.kpis["wave"] == "2026-Q1") & (page.kpis["segment"] == "Consumer")]
    assert consumer["change"].notna().all()
    assert "Small business × 2025-Q4" in page.suppressed.value and page.error.value == ""


def test_drivers_page_withholds_the_complement(sample):
    page = DriversDashboard.from_runs(sample.runs_dir)
    shown = page.priorities
    q4 = set(shown.loc[shown["wave"] == "2025-Q4", "segment"])
    assert q4 == {EVERYONE, "Consumer"}
    assert "Small business × 2025-Q4" in page.suppressed.value and page.error.value == ""


def test_what_if_withholds_the_complement_of_a_small_segment(sample):
    page = WhatIfDashboard.from_runs(sample.runs_dir)
    assert page.withheld_segments() == set()  # the sample's segments are all large overall
    page.baseline = {
        seg: {**entry, "n": 20} if seg == "Enterprise" else entry
        for seg, entry in page.baseline.items()
    }
    sizes = {seg: entry["n"] for seg, entry in page.baseline.items()}
    complement = min((n, s) for s, n in sizes.items() if s not in (EVERYONE, "Enterprise"))[1]
    page.segment.value = complement
    page.update()
    assert "withheld with a segment of fewer than" in page.outcomes.value
    page.segment.value = next(s for s in sizes if s not in (EVERYONE, "Enterprise", complement))
    page.update()
    assert "Predicted change" in page.outcomes.value and page.error.value == ""


def test_what_if_reads_why_the_published_baseline_withholds_a_segment(sample):
    """A baseline published by notebook 04 says why (n 0, no levels): the page says the same."""
    page = WhatIfDashboard.from_runs(sample.runs_dir)
    segments = [s for s in page.baseline if s != EVERYONE]
    small, complement = segments[0], segments[1]
    for seg, why in ((small, "small"), (complement, "complementary")):
        entry = page.baseline[seg]
        page.baseline[seg] = {**entry, "n": 0, "withheld": why}
    page.segment.value = small
    page.update()
    assert "has fewer than" in page.outcomes.value
    page.segment.value = complement
    page.update()
    assert "withheld with a segment of fewer than" in page.outcomes.value
    assert page.error.value == ""
