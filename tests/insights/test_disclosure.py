"""Disclosure control survives differencing: the attack of issue #22, finding 5.

A study with one small cell (Enterprise x 2025-Q4 cut to 20 respondents, equal weights)
is run through the overview's table building; then the subtraction is attempted on
what is published — everyone's n and mean minus the segments shown — and must fail
for the small cell's size and its values, while nothing else is hidden beyond the one
complementary cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxlib import config
from cxlib.data import load_responses
from cxlib.insights.cells import COMPLEMENTARY, SMALL, suppressed_cells
from cxlib.pipeline.tables import WITHHELD_MESSAGE, study_overview, withhold_small_cells
from cxlib.study import load_study

EVERYONE = config.EVERYONE
SMALL_SEGMENT, SMALL_WAVE, SMALL_N = "Enterprise", "2025-Q4", 20
#: KPI -> (prior pseudo-counts in a cell's posterior mean, its range): ``(n + c) * mean``
#: adds up over the segments of a wave (NPS: Dirichlet(1, 1, 1); loyalty: a plain mean).
ADDITIVE = {"nps": (3, (-100.0, 100.0)), "loyalty_index": (0, (0.0, 100.0))}


def difference_attack(
    table: pd.DataFrame, kpi: str, wave: str, target: str, withheld: set, at_most: int | None = None
):
    """What everyone minus the shown segments says about ``target``'s n and mean.

    Parameters
    ----------
    table : pandas.DataFrame
        The rows an onlooker sees (withheld rows left out or blanked).
    withheld : set of str
        The segments of the wave the page says are withheld (``target`` among them).
    at_most : int, optional
        What the onlooker knows besides: the target has at most this many respondents
        (it was withheld as small).

    Returns
    -------
    ((int, int), (float, float))
        The smallest and largest n, and mean, consistent with everything shown.
    """
    c, (lo, hi) = ADDITIVE[kpi]
    rows = table[(table["kpi"] == kpi) & (table["wave"] == wave) & table["mean"].notna()]
    everyone = rows[rows["segment"] == EVERYONE].iloc[0]
    shown = rows[(rows["segment"] != EVERYONE) & ~rows["segment"].isin(withheld)]
    n_rest = int(everyone["n"] - shown["n"].sum())  # the withheld cells' respondents together
    q_rest = (everyone["n"] + c) * everyone["mean"] - ((shown["n"] + c) * shown["mean"]).sum()
    k = len(withheld)
    sizes = range(1, n_rest - (k - 1) + 1) if k > 1 else range(n_rest, n_rest + 1)
    if at_most is not None and k > 1:
        sizes = range(1, min(n_rest - (k - 1), at_most) + 1)
    means = []
    for n in sizes:
        others = n_rest - n + (k - 1) * c  # the other withheld cells' weight in q_rest
        low, high = (q_rest - others * hi) / (n + c), (q_rest - others * lo) / (n + c)
        if high >= lo and low <= hi:
            means += [max(low, lo), min(high, hi)]
    return (min(sizes), max(sizes)), (min(means), max(means))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The overview's published tables of a study with one small cell, equal weights."""
    study = load_study(config.SAMPLE_STUDY)
    frame = pd.read_parquet(config.SAMPLE_STUDY.parent / "responses.parquet")
    small = (frame["segment"] == SMALL_SEGMENT) & (frame["wave"] == SMALL_WAVE)
    frame = frame[~small | (small.cumsum() <= SMALL_N)].copy()
    frame[study.columns.weight] = 1.0
    path = tmp_path_factory.mktemp("disclosure") / "responses.parquet"
    frame.to_parquet(path)
    data = load_responses(study, path)
    tables, overview = study_overview(data, rules=list(study.alerts), model_dirs={}, seed=1)
    from cxlib.insights.kpis import estimate_kpis

    raw = estimate_kpis(data, seed=1).table  # what the table held before disclosure control
    from cxlib.pipeline.tables import data_quality_tables, driver_tables
    from tests.dashboard.sample import driver_model

    tables.update(data_quality_tables(data, data.quality_report()))
    tables.update(driver_tables(driver_model(study, n_draws=50), data))
    return tables, overview, raw, study.min_cell_size


def test_only_primary_suppression_leaks(published):
    """The finding reproduced: withholding the small cell alone gives it back exactly."""
    _, _, raw, min_cell = published
    shown = raw[~raw["small_cell"]]
    truth = raw.set_index(["kpi", "segment", "wave"])
    for kpi in ADDITIVE:
        (n_lo, n_hi), (m_lo, m_hi) = difference_attack(
            shown, kpi, SMALL_WAVE, SMALL_SEGMENT, {SMALL_SEGMENT}
        )
        hidden = truth.loc[(kpi, SMALL_SEGMENT, SMALL_WAVE)]
        assert n_lo == n_hi == hidden["n"] < min_cell
        assert m_hi - m_lo < 1e-6 and abs(m_lo - hidden["mean"]) < 1.0  # recovered


def test_differencing_the_published_tables_fails(published):
    tables, _, raw, min_cell = published
    kpis = tables["kpis"]
    withheld = kpis[kpis["mean"].isna() & (kpis["wave"] == SMALL_WAVE)]
    segments = set(withheld["segment"])
    assert SMALL_SEGMENT in segments and len(segments) == 2  # one complementary cell
    truth = raw.set_index(["kpi", "segment", "wave"])
    for kpi, (_, (lo, hi)) in ADDITIVE.items():
        (n_lo, n_hi), (m_lo, m_hi) = difference_attack(
            kpis, kpi, SMALL_WAVE, SMALL_SEGMENT, segments
        )
        hidden = truth.loc[(kpi, SMALL_SEGMENT, SMALL_WAVE)]
        assert n_lo <= hidden["n"] <= n_hi and n_hi - n_lo + 1 >= min_cell
        assert m_lo <= hidden["mean"] <= m_hi and m_hi - m_lo >= 0.5 * (hi - lo)
        # knowing it is small (the page says so) narrows n to 1..min - 1, not the mean
        (n_lo, n_hi), (m_lo, m_hi) = difference_attack(
            kpis, kpi, SMALL_WAVE, SMALL_SEGMENT, segments, at_most=min_cell - 1
        )
        assert n_hi - n_lo + 1 == min_cell - 1 and m_hi - m_lo >= 0.5 * (hi - lo)
        # nor is the complementary cell recoverable: it is as wide
        other = (segments - {SMALL_SEGMENT}).pop()
        (o_lo, o_hi), _ = difference_attack(kpis, kpi, SMALL_WAVE, other, segments)
        assert o_hi - o_lo + 1 >= min_cell
    # a withheld row keeps its labels and says it is withheld: no number left
    assert (withheld["n"] == 0).all() and withheld["small_cell"].all()
    assert withheld[["n_eff", "sd", "hdi_low", "hdi_high", "change"]].isna().all().all()


def test_nothing_else_is_hidden(published):
    tables, _, raw, _ = published
    kpis = tables["kpis"]
    blanked = kpis[kpis["mean"].isna()][["segment", "wave"]].drop_duplicates()
    raw_missing = raw[raw["mean"].isna()][["segment", "wave"]].drop_duplicates()
    assert len(blanked) == 2 + len(raw_missing)
    assert set(blanked["wave"]) | set(raw_missing["wave"]) == {SMALL_WAVE}


def test_changes_and_differences_do_not_give_it_back(published):
    """A change since a withheld wave, or a difference with a withheld segment, is blanked."""
    tables, _, raw, _ = published
    kpis, differences = tables["kpis"], tables["segment_differences"]
    waves = list(dict.fromkeys(raw["wave"]))
    after = kpis[(kpis["wave"] == waves[1]) & kpis["segment"].isin([SMALL_SEGMENT])]
    assert after["mean"].notna().all() and after["change"].isna().all()
    assert after["p_change_negative"].isna().all()
    everyone = kpis[(kpis["wave"] == waves[1]) & (kpis["segment"] == EVERYONE)]
    assert everyone["change"].notna().all()  # everyone's change is not withheld
    withheld = set(kpis.loc[kpis["mean"].isna() & (kpis["wave"] == SMALL_WAVE), "segment"])
    rows = differences[differences["wave"] == SMALL_WAVE]
    touches = rows["segment_a"].isin(withheld) | rows["segment_b"].isin(withheld)
    assert touches.any() and rows.loc[touches, "difference"].isna().all()
    assert (rows.loc[touches, ["n_a", "n_b"]] == 0).all().all()
    assert rows.loc[touches, "small_cell"].all()


def test_withheld_alerts_say_nothing(published):
    """An alert's message names its cell's estimate and n: a withheld cell's says neither."""
    tables, overview, raw, min_cell = published
    assert overview["alerts_fired"] == int(tables["alerts"]["fired"].sum())
    waves = list(dict.fromkeys(raw["wave"]))
    alerts = pd.DataFrame(
        {
            "segment": [SMALL_SEGMENT, "Consumer", SMALL_SEGMENT, EVERYONE],
            "wave": [SMALL_WAVE, SMALL_WAVE, waves[1], waves[1]],
            "rule_name": "nps_low",
            "kind": ["level", "level", "change", "change"],
            "probability": 0.97,
            "threshold": 0.9,
            "fired": True,
            "small_cell": [True, False, False, False],
            "message": "NPS < 20 (estimate 17.1, n=20)",
        }
    )
    protected = withhold_small_cells({"kpis": raw, "alerts": alerts}, min_cell, waves=waves)
    out = protected["alerts"]
    withheld = out["message"] == WITHHELD_MESSAGE
    assert withheld.tolist() == [True, False, True, False]
    assert out.loc[withheld, "probability"].isna().all() and not out.loc[withheld, "fired"].any()
    assert (out["threshold"] == 0.9).all() and out.loc[~withheld, "fired"].all()


def test_respondent_counts_and_driver_priorities_are_withheld_too(published):
    tables, _, raw, min_cell = published
    cells = tables["data_quality_cells"]
    split = cells[(cells["segment_column"] == "segment") & (cells["wave"] == SMALL_WAVE)]
    withheld = split[split["n_respondents"] == 0]
    assert set(withheld["segment"]) == {SMALL_SEGMENT, "Small business"}
    assert (cells["n_respondents"] == 0).sum() == 2  # nothing else
    assert tables["data_quality_summary"]["small_cells"].iloc[0] == 1  # still counted
    everyone = raw.query("kpi == 'nps' and segment == @EVERYONE and wave == @SMALL_WAVE")["n"]
    assert (
        int(everyone.iloc[0]) - split.loc[split["n_respondents"] > 0, "n_respondents"].sum()
        >= min_cell
    )
    pri = tables["driver_priorities"]
    blanked = pri[pri["performance"].isna()][["segment", "wave"]].drop_duplicates()
    assert sorted(blanked.values.tolist()) == [
        [SMALL_SEGMENT, SMALL_WAVE],
        ["Small business", SMALL_WAVE],
    ]
    assert (pri.loc[pri["performance"].isna(), "n"] == 0).all()


def cell_table(sizes: dict[str, int], wave: str = "w1") -> pd.DataFrame:
    return pd.DataFrame({"segment": list(sizes), "wave": wave, "n": list(sizes.values())})


def test_the_rule():
    # one small cell: the next smallest goes with it, nothing else
    found = suppressed_cells(cell_table({EVERYONE: 640, "a": 20, "b": 500, "c": 120}), 30)
    assert found[["segment", "reason"]].values.tolist() == [["a", SMALL], ["c", COMPLEMENTARY]]
    # two small cells that together are still small: one more
    found = suppressed_cells(cell_table({EVERYONE: 553, "a": 5, "b": 8, "c": 40, "d": 500}), 30)
    assert found[["segment", "reason"]].values.tolist() == [
        ["a", SMALL],
        ["b", SMALL],
        ["c", COMPLEMENTARY],
    ]
    # an empty cell (a segment not there yet) is withheld alone: nothing to give away
    found = suppressed_cells(cell_table({EVERYONE: 620, "a": 0, "b": 500, "c": 120}), 30)
    assert found[["segment", "reason"]].values.tolist() == [["a", SMALL]]
    # no small cell: nothing withheld; no everyone row: no complement unless asked
    assert suppressed_cells(cell_table({EVERYONE: 90, "a": 40, "b": 50}), 30).empty
    without_total = cell_table({"a": 20, "b": 500, "c": 120})
    assert list(suppressed_cells(without_total, 30)["segment"]) == ["a"]
    assert list(suppressed_cells(without_total, 30, complement="always")["segment"]) == ["a", "c"]
    # each wave on its own; a cell small for one KPI is withheld for all
    table = pd.concat(
        [
            cell_table({EVERYONE: 70, "a": 20, "b": 50}),
            cell_table({EVERYONE: 90, "a": 40, "b": 50}, "w2"),
        ]
    )
    table = pd.concat(
        [table.assign(kpi="x"), table.assign(kpi="y", n=np.where(table["n"] == 40, 10, table["n"]))]
    )
    found = suppressed_cells(table, 30)
    assert found[["segment", "wave"]].values.tolist() == [
        ["a", "w1"],
        ["a", "w2"],
        ["b", "w1"],
        ["b", "w2"],
    ]
