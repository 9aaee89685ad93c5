"""The digital experience model: recovery of a known truth, the selection effect, validation.

One simulated set of 3,000 sessions (1,000 answered the survey, response depending on
satisfaction), fitted twice (response modelled, and ignored), 2 chains x 500 draws.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from cxlib.errors import ModelFileError, ModelSpecificationError
from cxlib.insights.digital import (
    digital_experience_scores,
    dissatisfied_share,
    surveyed_vs_all,
)
from cxlib.models.digital import DigitalExperienceModel, DigitalExperienceResult, simulate_sessions
from cxlib.models.digital.data import holdout_split

SAMPLING = {"draws": 500, "tune": 500, "random_seed": 11}


@pytest.fixture(scope="module")
def simulated():
    return simulate_sessions(3000, n_surveyed=1000, seed=7)


def _fit(sessions, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DigitalExperienceModel(scale=(1, 5), **kwargs).fit(sessions, **SAMPLING)


@pytest.fixture(scope="module")
def fitted(simulated):
    return _fit(simulated[0])


@pytest.fixture(scope="module")
def naive(simulated):
    return _fit(simulated[0], selection="ignore")


def _true_per_unit(truth, signals):
    """The true effect per transformed unit of each signal."""
    return np.array([truth["beta"][s] / truth["scale"][s] for s in signals])


@pytest.mark.slow
def test_signal_effects_recover_the_truth(fitted, simulated):
    _, truth = simulated
    res = fitted
    assert res.diagnostics.divergences == 0
    table = res.signal_effects(hdi_prob=0.9)
    d = res.data
    est = table["effect_per_sd"].to_numpy() / d.scale
    low = table["effect_per_sd_hdi_low"].to_numpy() / d.scale
    high = table["effect_per_sd_hdi_high"].to_numpy() / d.scale
    true = _true_per_unit(truth, d.signals)
    inside = (low <= true) & (true <= high)
    assert inside.sum() >= 8, dict(zip(d.signals, np.round(est - true, 3), strict=True))
    # per SD of the fitted sessions, the errors are small in rating points
    err_sd = (est - true) * d.scale
    assert np.max(np.abs(err_sd)) < 0.12, np.round(err_sd, 3)
    # rage clicks cost most satisfaction (the truth's largest negative effect per SD)
    worst = table.loc[table["p_largest_cost"].idxmax(), "signal"]
    true_sd = true * d.scale
    assert worst == d.signals[int(np.argmin(true_sd))]
    assert table["p_largest_cost"].sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_unsurveyed_predictions_cover_at_about_90_percent(fitted, simulated):
    sessions, _ = simulated
    pred = fitted.predict(sessions, hdi_prob=0.9)
    un = ~sessions["surveyed"].to_numpy()
    assert un.sum() >= 1900
    s = sessions["satisfaction"].to_numpy()
    cover = ((s >= pred["hdi_low"]) & (s <= pred["hdi_high"]))[un].mean()
    assert 0.84 <= cover <= 0.96, cover
    assert pred["stated"].notna().sum() == sessions["surveyed"].sum()
    assert pred["p_dissatisfied"].between(0, 1).all()
    # dissatisfied sessions (true rating below 3) are flagged more often
    truly = s < 2.5
    assert (
        pred.loc[truly & un, "p_dissatisfied"].mean()
        > 2 * pred.loc[~truly & un, "p_dissatisfied"].mean()
    )


@pytest.mark.slow
def test_selection_effect_is_handled(fitted, naive, simulated):
    _, truth = simulated
    target = truth["mean_satisfaction_unsurveyed"]
    sel = fitted.selection(hdi_prob=0.9).set_index("quantity")
    nav = naive.selection(hdi_prob=0.9).set_index("quantity")
    # the response model finds that frustrated sessions answer less often
    assert sel.loc["response_slope", "p_positive"] > 0.99
    assert (
        sel.loc["response_slope", "hdi_low"] <= truth["g1"] <= sel.loc["response_slope", "hdi_high"]
    )
    # the naive model overstates the unsurveyed sessions' satisfaction; the selection model does not
    assert sel.loc["unsurveyed", "hdi_low"] <= target <= sel.loc["unsurveyed", "hdi_high"]
    assert nav.loc["unsurveyed", "hdi_low"] > target
    assert nav.loc["unsurveyed", "mean"] - target > 0.15
    assert "response_slope" not in nav.index


@pytest.mark.slow
def test_holdout_calibration_and_elpd(simulated):
    sessions, _ = simulated
    train, test = holdout_split(sessions, 0.3, seed=5)
    res = _fit(train)
    val = res.validate(test)
    assert val.n_held_out == int(test["surveyed"].sum())
    assert np.isfinite(val.elpd) and val.elpd_se > 0
    # better than guessing the categories' shares (the log of the observed shares)
    shares = val.categories["observed_share"].to_numpy()
    baseline = float(np.sum(val.categories["observed_share"] * np.log(np.maximum(shares, 1e-12))))
    assert val.elpd_per_session > baseline
    assert val.categories["predicted_share"].sum() == pytest.approx(1.0, abs=1e-6)
    assert np.abs(val.categories["difference"]).max() < 0.06
    assert len(val.deciles) == 10
    assert np.abs(val.deciles["difference"]).max() < 0.35


@pytest.mark.slow
def test_insight_tables(fitted, simulated):
    sessions, truth = simulated
    by_tp = digital_experience_scores(fitted, sessions, by="touchpoint", draws=100)
    assert set(by_tp["touchpoint"]) == set(sessions["touchpoint"])
    assert (by_tp["hdi_low"] < by_tp["score"]).all() and (by_tp["score"] < by_tp["hdi_high"]).all()
    by_day = digital_experience_scores(fitted, sessions, by="day", draws=50)
    assert by_day["n_sessions"].sum() == len(sessions)
    pages = pd.DataFrame(
        {"session_id": np.repeat(sessions["session_id"].to_numpy()[:100], 2),
         "page": ["home", "checkout"] * 100}
    )  # fmt: skip
    by_page = digital_experience_scores(fitted, sessions, by="page", pages=pages, draws=50)
    assert list(by_page["n_sessions"]) == [100, 100]
    share = dissatisfied_share(fitted, sessions, draws=100).set_index("sessions")
    assert (
        share.loc["unsurveyed", "share_dissatisfied"] > share.loc["surveyed", "share_dissatisfied"]
    )
    # dissatisfied: a rating below 3, i.e. satisfaction below the truth's second cutpoint
    below = truth["cutpoints"][1]
    true_share = (sessions.loc[~sessions["surveyed"], "satisfaction"] < below).mean()
    assert share.loc["unsurveyed", "share_dissatisfied_hdi_low"] <= true_share
    assert true_share <= share.loc["unsurveyed", "share_dissatisfied_hdi_high"]
    comp = surveyed_vs_all(fitted, sessions, draws=100).set_index("sessions")
    assert comp.loc["surveyed_minus_all", "hdi_low"] > 0
    assert np.isfinite(comp.loc["surveyed", "stated"])


@pytest.mark.slow
def test_save_and_load(fitted, simulated, tmp_path):
    sessions, _ = simulated
    path = fitted.save(tmp_path / "digital.nc")
    loaded = DigitalExperienceModel.load(path)
    assert isinstance(loaded, DigitalExperienceResult)
    a = fitted.predict(sessions.iloc[:50], draws=50)
    b = loaded.predict(sessions.iloc[:50], draws=50)
    np.testing.assert_allclose(a["satisfaction"], b["satisfaction"], rtol=1e-5)
    assert loaded.model.selection == "model"
    with pytest.raises(ModelFileError):
        from cxlib.models.touchpoints import TouchpointModel

        TouchpointModel.load(path)


@pytest.mark.slow
def test_predict_one_million_sessions_chunked(fitted, simulated):
    sessions, _ = simulated
    big = pd.concat([sessions] * 4, ignore_index=True)
    out = fitted.predict(big, draws=100, chunk=1000)
    ref = fitted.predict(big, draws=100)
    np.testing.assert_allclose(out["satisfaction"], ref["satisfaction"], rtol=1e-5)
    assert out["satisfaction"].dtype == np.float32


def test_bad_options_are_clear_errors():
    with pytest.raises(ModelSpecificationError, match="selection"):
        DigitalExperienceModel(selection="heckman")
    with pytest.raises(ModelSpecificationError, match="outcome"):
        DigitalExperienceModel(outcome="binary")
    with pytest.raises(ModelSpecificationError, match="scale"):
        DigitalExperienceModel(scale=(5, 1))


@pytest.mark.slow
def test_scale_0_10_and_gaussian_score_fit():
    sessions, truth = simulate_sessions(1500, n_surveyed=500, scale=(0, 10), seed=4)
    res = _fit_scale(sessions, (0, 10))
    table = res.signal_effects(hdi_prob=0.9)
    assert table["p_largest_cost"].sum() == pytest.approx(1.0)
    assert res.idata.posterior["cutpoints"].shape[-1] == 10
    pred = res.predict(sessions)
    s = sessions["satisfaction"].to_numpy()
    un = ~sessions["surveyed"].to_numpy()
    cover = ((s >= pred["hdi_low"]) & (s <= pred["hdi_high"]))[un].mean()
    assert 0.82 <= cover <= 0.97, cover
    np.testing.assert_allclose(pred["satisfaction_100"], pred["satisfaction"] * 10, rtol=1e-4)
    assert np.corrcoef(pred["satisfaction"], s)[0, 1] > 0.6
    # a continuous score: the latent satisfaction observed for the surveyed sessions
    score = sessions.assign(rating=np.where(sessions["surveyed"], sessions["satisfaction"], np.nan))
    score["rating"] = score["rating"].clip(0, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = DigitalExperienceModel(scale=(0, 10), outcome="gaussian").fit(score, **SAMPLING)
    sel = g.selection(hdi_prob=0.9).set_index("quantity")
    assert (
        sel.loc["response_slope", "hdi_low"] <= truth["g1"] <= sel.loc["response_slope", "hdi_high"]
    )
    val = g.validate(score.iloc[:300])
    assert np.isfinite(val.elpd)


def _fit_scale(sessions, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DigitalExperienceModel(scale=scale).fit(sessions, **SAMPLING)
