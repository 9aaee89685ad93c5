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


# ------------------------------------------- per-segment artifacts without waves (03, 04)
def test_the_rule_for_one_split_without_waves():
    from cxlib.insights.cells import withheld_segments

    sizes = {EVERYONE: 1634, "a": 20, "b": 500, "c": 1114}
    assert withheld_segments(sizes, 30) == {"a": SMALL, "b": COMPLEMENTARY}
    # the total is counted as published: a complement even when it is not in sizes
    assert withheld_segments({"a": 20, "b": 500, "c": 1114}, 30) == {
        "a": SMALL,
        "b": COMPLEMENTARY,
    }
    assert withheld_segments({EVERYONE: 90, "a": 40, "b": 50}, 30) == {}
    # a run on a small subset: everything, the total too
    assert withheld_segments({EVERYONE: 25, "a": 25}, 30) == {EVERYONE: SMALL, "a": SMALL}


def three_segment_survey(sizes=(("A", 258), ("B", 130), ("C", 12)), seed=1):
    """The drivers tests' survey with segments A, B and a small C (12 respondents)."""
    from cxlib.data import SurveyData
    from cxlib.study import study_from_dict

    from .test_drivers import ITEMS

    names = [s for s, _ in sizes]
    items = {
        lat: {"items": {i: {"text": i, "scale": [0, 10] if i == "NPS" else [1, 5]} for i in its}}
        for lat, its in ITEMS.items()
    }
    study = study_from_dict(
        {
            "name": "drivers",
            "columns": {"respondent_id": "id", "wave": "wave", "segments": {"segment": names}},
            "source": {"wave_order": ["W1", "W2"]},
            "constructs": items,
            "kpis": {"nps": "NPS"},
        }
    )
    n = sum(k for _, k in sizes)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)]})
    frame["segment"] = pd.Categorical(np.repeat(names, [k for _, k in sizes]), categories=names)
    frame["wave"] = pd.Categorical(rng.choice(["W1", "W2"], n), categories=["W1", "W2"])
    for lat, its in ITEMS.items():
        for i in its:
            hi = 10 if i == "NPS" else 5
            low = {"Experience": 1, "Image": 3, "Loyalty": 2}[lat]
            values = rng.integers(low, hi + 1, n).astype(float)
            values[frame["segment"].to_numpy() == "C"] = hi  # the small segment stands out
            frame[i] = values
    return SurveyData(frame=frame, study=study, source="memory", format="memory", data_hash="")


def numbers_in(value) -> list[float]:
    """Every number in a JSON-like value (bools left out)."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers_in(v)]
    if isinstance(value, list):
        return [x for v in value for x in numbers_in(v)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [float(value)]
    return []


def test_the_what_if_baseline_holds_no_number_of_a_small_segment():
    import json

    from cxlib.insights.drivers import what_if_baseline
    from cxlib.pipeline.schemas import validate_table
    from cxlib.pipeline.tables import driver_tables

    from .test_drivers import path_model

    model, data = path_model(), three_segment_survey()
    min_cell = data.study.min_cell_size
    assert min_cell > 12
    unprotected = what_if_baseline(model, data, min_cell_size=0)["segments"]
    assert unprotected["C"]["n"] == 12  # what leaked before
    base = what_if_baseline(model, data)
    json.dumps(base)
    segments = base["segments"]
    assert {s: e.get("withheld") for s, e in segments.items()} == {
        EVERYONE: None,
        "A": None,
        "B": COMPLEMENTARY,
        "C": SMALL,
    }
    for seg in ("B", "C"):
        assert numbers_in(segments[seg]) == [0.0]  # n 0, every level None
        assert set(segments[seg]["drivers"]) == set(unprotected[seg]["drivers"])
    assert segments["A"] == unprotected["A"] and segments[EVERYONE] == unprotected[EVERYONE]
    # the subtraction: everyone minus the segments shown is B and C together, not C
    shown = [s for s, e in segments.items() if s != EVERYONE and not e.get("withheld")]
    rest = segments[EVERYONE]["n"] - sum(segments[s]["n"] for s in shown)
    assert rest == 130 + 12 >= min_cell
    for driver, level in unprotected["C"]["drivers"].items():
        combined = (
            segments[EVERYONE]["drivers"][driver] * segments[EVERYONE]["n"]
            - sum(segments[s]["drivers"][driver] * segments[s]["n"] for s in shown)
        ) / rest
        assert abs(combined - level) > 1.0  # B and C mixed, far from C's own level

    examples = driver_tables(model, data)["what_if_examples"]
    validate_table("what_if_examples", examples, notebook="04-drivers-and-what-if")
    withheld = examples[examples["segment"].isin(["B", "C"])]
    assert len(withheld) and withheld.select_dtypes("float").isna().all().all()
    kept = examples[examples["segment"].isin([EVERYONE, "A"])]
    assert kept["change"].notna().all()


class FakeExpectationsResult:
    """What expectations_tables reads of a fitted result: five per-segment tables."""

    def __init__(self, study, sizes: dict[str, int]):
        from types import SimpleNamespace

        self.model = SimpleNamespace(study=study)
        self.sizes = sizes  # with everyone
        rng = np.random.default_rng(0)
        self.means = {s: float(rng.uniform(2, 5)) for s in sizes}
        self.means[EVERYONE] = sum(self.means[s] * n for s, n in sizes.items() if s != EVERYONE)
        self.means[EVERYONE] /= sizes[EVERYONE]

    def _rows(self, everyone: bool, **extra):
        segs = [s for s in self.sizes if everyone or s != EVERYONE]
        return pd.DataFrame(
            {
                "segment": segs,
                "attribute": "reliability",
                **{k: [v(s) for s in segs] for k, v in extra.items()},
                "small_segment": [s != EVERYONE and self.sizes[s] < 30 for s in segs],
            }
        )

    def dimension_weights(self):
        return self._rows(
            False, technical=lambda s: 1.0 + self.means[s], n_respondents=lambda s: self.sizes[s]
        )

    def emotional_share(self):
        return self._rows(True, emotional_share=lambda s: self.means[s] / 10)

    def penalty_reward(self, by_segment=False):
        return self._rows(
            False,
            penalty=lambda s: self.means[s] / 2,
            kano_class=lambda s: "must-be",
            penalty_identified=lambda s: True,
            reward_identified=lambda s: True,
        )

    def gap_closing(self):
        return self._rows(True, outcome_change=lambda s: self.means[s] / 3)

    def gap_table(self):
        return self._rows(
            True,
            n_respondents=lambda s: self.sizes[s],
            mean_perception=lambda s: self.means[s],
            n_gap_answered=lambda s: self.sizes[s] - 1,
        )


def test_the_expectations_tables_hold_no_number_of_a_small_segment():
    from cxlib.pipeline.tables import expectations_tables

    study = load_study(config.SAMPLE_STUDY)
    sizes = {EVERYONE: 530, "Consumer": 387, "Small business": 131, "Enterprise": 12}
    tables = expectations_tables(FakeExpectationsResult(study, sizes), study=study.name)
    for name, table in tables.items():
        withheld = table[table["segment"].isin(["Enterprise", "Small business"])]
        assert len(withheld) and withheld["small_segment"].all(), name
        assert withheld.select_dtypes("float").isna().all().all(), name
        for count in ("n_respondents", "n_gap_answered"):
            if count in table.columns:
                assert (withheld[count] == 0).all(), name
        shown = table[table["segment"].isin(["Consumer", EVERYONE])]
        assert shown.select_dtypes("float").notna().all().all(), name
    pr = tables["expectations_penalty_reward"].set_index("segment")
    assert pr.loc["Enterprise", "kano_class"] == "undetermined"
    assert not pr.loc["Enterprise", "penalty_identified"]
    # the subtraction on the gap table gives Small business and Enterprise together
    gaps = tables["expectations_gaps"].set_index("segment")
    rest = gaps.loc[EVERYONE, "n_respondents"] - gaps.loc["Consumer", "n_respondents"]
    assert rest == 131 + 12 >= study.min_cell_size

    # a run on a small subset (segment filter): nothing of it is published
    tiny = expectations_tables(
        FakeExpectationsResult(study, {EVERYONE: 12, "Enterprise": 12}), study=study.name
    )
    for name, table in tiny.items():
        assert table.select_dtypes("float").isna().all().all(), name


@pytest.mark.slow
def test_a_fitted_expectations_model_publishes_no_number_of_a_small_segment(tmp_path):
    """Through the real model (50 draws): 03's tables for a study with 12 Enterprise rows."""
    from cxlib.models import ExpectationsModel
    from cxlib.pipeline.schemas import validate_table
    from cxlib.pipeline.tables import expectations_tables
    from cxlib.simulate import Truth, simulate_responses, write_responses

    study = load_study(config.SAMPLE_STUDY)
    frame = simulate_responses(study, Truth.from_yaml(config.SAMPLE_TRUTH), n=600, seed=5)
    small = frame["segment"] == "Enterprise"
    frame = frame[~small | (small.cumsum() <= 12)]
    data = load_responses(study, write_responses(frame, tmp_path / "responses.parquet"))
    model = ExpectationsModel(study, outcome=study.expectations_outcome, segment="segment")
    with pytest.warns(Warning):
        result = model.fit(data, draws=50, tune=50, chains=1, random_seed=1)
    tables = expectations_tables(result, study=study.name)
    sizes = frame["segment"].value_counts()
    assert sizes["Enterprise"] == 12 and sizes["Small business"] < sizes["Consumer"]
    for name, table in tables.items():
        validate_table(name, table, notebook="03-technical-vs-emotional")
        withheld = table[table["segment"].isin(["Enterprise", "Small business"])]
        assert len(withheld) and withheld.select_dtypes("float").isna().all().all(), name
        assert (withheld.select_dtypes("int") == 0).all().all(), name
        assert table.loc[table["segment"] == "Consumer"].select_dtypes("float").notna().any().any()
    gaps = tables["expectations_gaps"]
    n = gaps.groupby("segment")["n_respondents"].min()
    assert n[EVERYONE] - n["Consumer"] >= study.min_cell_size  # two segments together
