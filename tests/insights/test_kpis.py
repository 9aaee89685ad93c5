import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cxlib.config import EVERYONE
from cxlib.data import SurveyData
from cxlib.insights.kpis import KpiError, estimate_kpis, nps_posterior_moments
from cxlib.stats import hdi
from cxlib.study import study_from_dict

SPEC = {
    "name": "kpi-demo",
    "columns": {
        "respondent_id": "id",
        "weight": "w",
        "wave": "wave",
        "segments": {"segment": ["A", "B"]},
    },
    "source": {"wave_order": ["W1", "W2"]},
    "constructs": {
        "Loyalty": {
            "items": {
                "L1": {"text": "stay", "scale": [1, 5]},
                "L2": {"text": "again", "scale": [1, 5]},
            }
        }
    },
    "items": {
        "NPS": {"text": "recommend", "scale": [0, 10]},
        "SAT": {"text": "satisfied", "scale": [1, 5]},
    },
    "kpis": {"nps": "NPS", "satisfaction": "SAT", "loyalty": "Loyalty"},
}


def survey(frame: pd.DataFrame, **spec_changes) -> SurveyData:
    study = study_from_dict({**SPEC, **spec_changes})
    frame = frame.copy()
    frame["segment"] = pd.Categorical(frame["segment"], categories=["A", "B"])
    frame["wave"] = pd.Categorical(frame["wave"], categories=["W1", "W2"], ordered=True)
    frame["id"] = [f"r{i}" for i in range(len(frame))]
    return SurveyData(frame=frame, study=study, source="memory", format="memory", data_hash="")


def make_frame(nps_answers, wave="W1", segment="A", sat=None, weights=None):
    n = len(nps_answers)
    return pd.DataFrame(
        {
            "segment": segment,
            "wave": wave,
            "w": 1.0 if weights is None else weights,
            "NPS": np.asarray(nps_answers, dtype=float),
            "SAT": np.asarray(sat if sat is not None else [3] * n, dtype=float),
            "L1": 4.0,
            "L2": 5.0,
        }
    )


def test_nps_matches_the_dirichlet_closed_form():
    answers = [10] * 30 + [8] * 10 + [3] * 20  # 30 promoters, 10 passives, 20 detractors
    est = estimate_kpis(survey(make_frame(answers)), n_draws=40_000, seed=1)
    mean, sd = nps_posterior_moments(promoters=30, passives=10, detractors=20)
    d = est.cell("nps", EVERYONE, "W1")
    assert d.mean() == pytest.approx(mean, abs=4 * sd / np.sqrt(d.size))
    assert d.std() == pytest.approx(sd, rel=0.02)
    row = est.table.query("kpi == 'nps' and segment == @EVERYONE and wave == 'W1'").iloc[0]
    assert row["n"] == 60 and row["n_eff"] == 60


def test_weights_use_the_effective_sample_size():
    answers = [10] * 30 + [3] * 30
    weights = np.r_[np.full(30, 3.0), np.full(30, 1.0)]  # promoters count three times
    est = estimate_kpis(survey(make_frame(answers, weights=weights)), n_draws=40_000, seed=2)
    n_eff = weights.sum() ** 2 / (weights**2).sum()
    share_p = 90 / 120
    mean, sd = nps_posterior_moments(share_p * n_eff, 0.0, (1 - share_p) * n_eff)
    d = est.cell("nps", EVERYONE, "W1")
    assert d.mean() == pytest.approx(mean, abs=0.5)
    assert d.std() == pytest.approx(sd, rel=0.03)


def test_top_box_is_the_beta_marginal():
    sat = [5] * 12 + [4] * 20 + [2] * 8
    est = estimate_kpis(survey(make_frame([9] * 40, sat=sat)), n_draws=40_000, seed=3)
    beta = stats.beta(1 + 12, 4 + 28)  # Dirichlet(1,...,1) over 5 answers: top share marginal
    d = est.cell("satisfaction_top_box") / 100
    assert d.mean() == pytest.approx(beta.mean(), abs=0.003)
    assert d.std() == pytest.approx(beta.std(), rel=0.03)
    mean_sat = est.cell("satisfaction_mean")
    assert mean_sat.mean() == pytest.approx((5 * 13 + 4 * 21 + 3 + 2 * 9 + 1) / 45, abs=0.01)


def test_loyalty_index_is_a_t_posterior_of_the_mean():
    frame = make_frame([9] * 50)
    rng = np.random.default_rng(0)
    frame["L1"] = rng.integers(1, 6, 50).astype(float)
    frame["L2"] = np.nan  # answered by no one: the index uses L1 alone
    est = estimate_kpis(survey(frame), n_draws=40_000, seed=4)
    score = 100 * (frame["L1"] - 1) / 4
    d = est.cell("loyalty_index")
    assert d.mean() == pytest.approx(score.mean(), abs=0.3)
    assert d.std() == pytest.approx(score.std(ddof=1) / np.sqrt(50) * np.sqrt(49 / 47), rel=0.03)


def test_change_between_waves_and_its_probability():
    drop = pd.concat(
        [make_frame([10] * 60 + [2] * 40), make_frame([10] * 30 + [2] * 70, wave="W2")]
    )
    est = estimate_kpis(survey(drop), n_draws=8000, seed=5)
    row = est.table.query("kpi == 'nps' and segment == @EVERYONE and wave == 'W2'").iloc[0]
    assert row["change"] == pytest.approx(-60, abs=4)
    assert row["p_change_negative"] > 0.999
    first = est.table.query("kpi == 'nps' and segment == @EVERYONE and wave == 'W1'").iloc[0]
    assert np.isnan(first["change"]) and np.isnan(first["p_change_negative"])
    same = pd.concat(
        [make_frame([10] * 50 + [2] * 50), make_frame([10] * 50 + [2] * 50, wave="W2")]
    )
    p = (
        estimate_kpis(survey(same), n_draws=8000, seed=6)
        .table.query("kpi == 'nps' and segment == @EVERYONE and wave == 'W2'")["p_change_negative"]
        .item()
    )
    assert 0.45 < p < 0.55


def test_small_cells_are_flagged_and_wide():
    frame = pd.concat(
        [make_frame([10] * 40 + [8] * 40 + [3] * 20), make_frame([10, 9, 3, 8, 10], segment="B")]
    )
    est = estimate_kpis(survey(frame), n_draws=4000, seed=7)
    t = est.table.query("kpi == 'nps' and wave == 'W1'").set_index("segment")
    assert t.loc["B", "small_cell"] and not t.loc["A", "small_cell"]
    assert t.loc["B", "n"] == 5 and t.loc[EVERYONE, "n"] == 105
    assert t.loc["B", "hdi_high"] - t.loc["B", "hdi_low"] > 50
    assert t.loc["A", "hdi_high"] - t.loc["A", "hdi_low"] < 40


def test_asking_for_a_wave_without_responses():
    est = estimate_kpis(survey(make_frame([10, 9, 8])), n_draws=100)
    assert est.waves == ["W1"]
    with pytest.raises(KpiError, match="no responses in wave 'W2'"):
        est.cell("nps", wave="W2")
    with pytest.raises(KpiError, match="unknown KPI"):
        est.cell("churn")


def test_study_without_kpis_is_refused():
    data = survey(make_frame([10]), kpis={})
    with pytest.raises(KpiError, match="declares no KPIs"):
        estimate_kpis(data)


def test_sample_study_kpis(study):
    from cxlib.data import load_responses

    est = estimate_kpis(load_responses(study), n_draws=1000)
    assert est.segments == [EVERYONE, "Consumer", "Small business", "Enterprise"]
    assert est.waves == study.source.wave_order
    nps = est.table.query("kpi == 'nps' and segment == @EVERYONE").set_index("wave")
    assert nps.loc["2026-Q3", "p_change_negative"] > 0.95  # the outage quarter


def test_hdi_against_a_known_distribution():
    draws = stats.norm(0, 1).rvs(size=200_000, random_state=1)
    low, high = hdi(draws, 0.94)
    assert low == pytest.approx(-1.881, abs=0.02) and high == pytest.approx(1.881, abs=0.02)
    skewed = stats.expon().rvs(size=200_000, random_state=2)
    low, high = hdi(skewed, 0.9)
    assert low == pytest.approx(0.0, abs=0.01) and high == pytest.approx(-np.log(0.1), abs=0.03)
