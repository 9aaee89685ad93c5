"""ExpectationsModel: data preparation, likelihood, results, bad input, recovery (slow)."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

from cxlib import config
from cxlib.errors import CxError, ModelFileError, ModelSpecificationError, StudySpecError
from cxlib.models.expectations import (
    ExpectationsModel,
    ExpectationsResult,
    SmallSegmentWarning,
    UnidentifiedGapWarning,
    simulate_expectations,
)
from cxlib.models.expectations.data import prepare_expectations_data
from cxlib.study import study_from_dict

TINY = {"draws": 30, "tune": 30, "chains": 1, "cores": 1}


def _quiet_fit(model, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(data, **(TINY | kwargs))


@pytest.fixture(scope="module")
def sim(study):
    """1,500 simulated respondents, no missing answers."""
    from cxlib.models.expectations.simulate import default_expectations_truth

    truth = default_expectations_truth(study)
    truth.missing_rate = 0.0
    return simulate_expectations(study, truth, n=1500, seed=5)


@pytest.fixture(scope="module")
def tiny_result(study, sim):
    return _quiet_fit(ExpectationsModel(study), sim[0])


# ----------------------------------------------------------------------------- data
def _features(study, frame):
    """Shortfall and surplus per attribute, computed the obvious way (no missing answers)."""
    short, surplus = {}, {}
    for name, attr in study.attributes.items():
        ref = (
            frame[attr.expectation]
            if attr.expectation
            else study.item(attr.perception).scale.midpoint
        )
        gap = frame[attr.perception] - ref
        short[f"s_{name}"] = np.maximum(-gap, 0)
        surplus[f"u_{name}"] = np.maximum(gap, 0)
    return pd.DataFrame(short | surplus)


def test_sufficient_statistics_give_the_rowwise_likelihood(study, sim):
    frame = sim[0].iloc[:400]
    logps = []
    for likelihood in ("sufficient", "rowwise"):
        model = ExpectationsModel(study, model_config={"likelihood": likelihood})
        pm_model = model.build_model(frame)
        rng = np.random.default_rng(0)
        point = {
            k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()
        }
        logps.append(pm_model.compile_logp()(point))
    assert logps[0] == pytest.approx(logps[1], rel=1e-10)


def test_statistics_match_a_direct_computation(study, sim):
    frame = sim[0]
    d = prepare_expectations_data(frame, study, "Loyalty")
    feats = _features(study, frame)
    seg = frame["segment"].astype(str)
    w = frame["weight"].to_numpy()
    for g, name in enumerate(d.segments):
        m = (seg == name).to_numpy()
        expect = np.average(feats[m].to_numpy(), axis=0, weights=w[m])
        assert np.allclose(d.feature_moments()[0][g], expect)
        # likelihood weights sum to Kish's effective sample size
        assert d.sum_w[g] == pytest.approx(w[m].sum() ** 2 / (w[m] ** 2).sum())
    assert d.n_likelihood.sum() == len(frame)


def test_gap_table_means_are_weighted_means(study, sim):
    frame = sim[0]
    d = prepare_expectations_data(frame, study, "Loyalty")
    from cxlib.models.expectations import gap_table

    table = gap_table(d)
    row = table.query("segment == 'Consumer' and attribute == 'reliability'").iloc[0]
    sub = frame[frame["segment"] == "Consumer"]
    w = sub["weight"]
    assert row["mean_expectation"] == pytest.approx(np.average(sub["TEC_RELIABILITY_E"], weights=w))
    assert row["mean_perception"] == pytest.approx(np.average(sub["TEC_RELIABILITY_P"], weights=w))
    gap = sub["TEC_RELIABILITY_P"] - sub["TEC_RELIABILITY_E"]
    assert row["mean_gap"] == pytest.approx(np.average(gap, weights=w))
    assert row["mean_gap_hdi_low"] < row["mean_gap"] < row["mean_gap_hdi_high"]
    assert row["share_shortfall"] == pytest.approx(np.average(gap < 0, weights=w))
    everyone = table.query("segment == 'all' and attribute == 'reliability'").iloc[0]
    assert everyone["n_respondents"] == len(frame)


def test_attribute_without_expectation_item(study, sim):
    frame = sim[0]
    mid = prepare_expectations_data(frame, study, "Loyalty")
    norm = prepare_expectations_data(frame, study, "Loyalty", reference="segment_norm")
    from cxlib.models.expectations import gap_table

    t_mid = gap_table(mid).set_index(["segment", "attribute"])
    t_norm = gap_table(norm).set_index(["segment", "attribute"])
    assert t_mid.loc[("Consumer", "understood"), "reference"] == "scale midpoint"
    assert t_norm.loc[("Consumer", "understood"), "reference"] == "segment norm"
    assert t_mid.loc[("Consumer", "reliability"), "reference"] == "expectation"
    sub = frame[frame["segment"] == "Consumer"]
    expect = np.average(sub["EMO_UNDERSTOOD_P"] - 3.0, weights=sub["weight"])
    assert t_mid.loc[("Consumer", "understood"), "mean_gap"] == pytest.approx(expect)
    assert np.isnan(t_mid.loc[("Consumer", "understood"), "mean_expectation"])
    for g in norm.segments:
        assert t_norm.loc[(g, "understood"), "mean_gap"] == pytest.approx(0.0, abs=1e-12)
    assert any("'understood' has no expectation item" in n for n in mid.notes)


def test_missing_answers_are_handled_not_dropped(study):
    frame, _ = simulate_expectations(study, n=800, seed=2)
    frame.loc[:9, "TEC_TRUST_X"] = 0  # an unused column does not matter
    frame.loc[:49, "TEC_RELIABILITY_E"] = np.nan
    frame.loc[50:79, "EMO_VALUED_P"] = np.nan
    loyalty = study.constructs["Loyalty"].item_names
    frame.loc[80:89, loyalty] = np.nan  # no outcome at all
    frame.loc[90:99, loyalty[:2]] = np.nan  # part of the outcome
    d = prepare_expectations_data(frame, study, "Loyalty")
    assert d.n_likelihood.sum() == len(frame) - 10
    table = d.gap_frame().set_index(["segment", "attribute"])
    rel = table.loc[("all", "reliability")]
    assert rel["n_reference_imputed"] >= 40  # perception answered, expectation missing
    assert table.loc[("all", "valued"), "n_perception_missing"] >= 30
    assert rel["n_respondents"] == len(frame)
    text = " ".join(d.notes)
    assert "averages over the likely values of the missing answers" in text
    assert "did not answer the outcome 'Loyalty'" in text
    assert np.all(np.isfinite(d.xtwx))
    # respondents with a missing expectation/perception answer are in the likelihood
    # as mixtures (not imputed), the others in the sufficient statistics
    inc = d.incomplete
    affected = frame.index[:80].difference(frame.index[80:90])
    assert inc.n_rows >= len(affected)
    assert d.xtwx[:, 0, 0].sum() + inc.w.sum() == pytest.approx(d.sum_w.sum())
    probs = np.bincount(inc.combo_row, weights=np.exp(inc.combo_logp), minlength=inc.n_rows)
    assert np.allclose(probs, 1.0)
    # the old route, for comparison
    old = prepare_expectations_data(frame, study, "Loyalty", missing="mean_imputation")
    assert old.incomplete is None
    assert "replaced by the segment's mean expectation" in " ".join(old.notes)
    with pytest.raises(ModelSpecificationError, match="missing='drop' is not supported"):
        prepare_expectations_data(frame, study, "Loyalty", missing="drop")


def test_missing_answer_distribution_follows_the_item_model():
    """One missing item of a bivariate normal: the interval masses of its conditional."""
    from scipy import stats

    from cxlib.models.expectations.missing import ItemModel, missing_value_combinations

    levels = np.arange(1.0, 6.0)
    cov = np.array([[1.0, 0.6], [0.6, 0.8]])
    model = ItemModel(["E", "P"], np.array([[3.5, 3.0]]), cov[None], [levels, levels], [1])
    observed = np.array([[4.0, np.nan], [1.0, np.nan]])
    values, logp = missing_value_combinations(model, 0, observed, np.array([False, True]))
    mean = 3.0 + 0.6 * (observed[:, 0] - 3.5)
    sd = np.sqrt(0.8 - 0.36)
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    for r in range(2):
        expect = np.diff(stats.norm.cdf(edges, mean[r], sd))
        got = np.zeros(5)
        ok = np.isfinite(logp[r])
        got[values[r, ok, 0].astype(int) - 1] = np.exp(logp[r, ok])
        kept = expect >= 1e-3 * expect.sum()
        assert np.allclose(got[kept], expect[kept] / expect[kept].sum(), atol=1e-12)
        assert np.isclose(np.exp(logp[r, ok]).sum(), 1.0)


def test_mixture_likelihood_and_gradient(study):
    """The compiled mixture likelihood equals a direct computation; its gradient is exact."""
    from scipy import special

    from cxlib.models.expectations.likelihood import (
        MixtureRows,
        concat_rows,
        mixture_loglik_numpy,
    )

    frame, _ = simulate_expectations(study, n=600, seed=4)
    d = prepare_expectations_data(frame, study, "Loyalty")
    inc = d.incomplete
    rows = MixtureRows.from_incomplete(inc)
    rng = np.random.default_rng(0)
    beta = rng.normal(0, 0.3, (3, 17))
    sigma = 0.7
    value, dbeta, dsigma = mixture_loglik_numpy(rows, beta, sigma, "normal")
    x = inc.x[inc.combo_row].copy()
    x[:, 1:] += inc.dense_combinations(16)
    eta = np.einsum("ck,ck->c", x, beta[inc.segment[inc.combo_row]])
    lp = inc.combo_logp + __import__("scipy").stats.norm.logpdf(inc.y[inc.combo_row], eta, sigma)
    per_row = [special.logsumexp(lp[inc.combo_row == r]) for r in range(inc.n_rows)]
    assert value == pytest.approx(float(inc.w @ per_row), rel=1e-6)
    eps = 1e-6
    for g, k in [(0, 0), (1, 3), (2, 12), (0, 16)]:
        b2 = beta.copy()
        b2[g, k] += eps
        numeric = (mixture_loglik_numpy(rows, b2, sigma, "normal")[0] - value) / eps
        assert dbeta[g, k] == pytest.approx(numeric, rel=1e-4, abs=1e-4)
    numeric = (mixture_loglik_numpy(rows, beta, sigma + eps, "normal")[0] - value) / eps
    assert dsigma == pytest.approx(numeric, rel=1e-4)
    # ordinal: complete rows equal PyMC's ordered logistic
    import pymc as pm

    od = prepare_expectations_data(frame, study, "LOY_STAY", family="ordinal")
    complete = MixtureRows.complete(od.pat_x, od.pat_y, od.pat_w, od.pat_segment)
    bounds = np.array([-1e3, -1.5, -0.2, 0.9, 2.2, 1e3])
    value = mixture_loglik_numpy(complete, beta, bounds, "ordinal")[0]
    eta = np.einsum("rk,rk->r", od.pat_x, beta[od.pat_segment])
    ref = pm.logp(pm.OrderedLogistic.dist(eta=eta, cutpoints=bounds[1:-1]), od.pat_y).eval()
    assert value == pytest.approx(float(od.pat_w @ ref), rel=1e-6)
    both = concat_rows(complete, MixtureRows.from_incomplete(od.incomplete))
    value, dbeta, dbounds = mixture_loglik_numpy(both, beta, bounds, "ordinal")
    for j in range(1, 5):
        bb = bounds.copy()
        bb[j] += eps
        numeric = (mixture_loglik_numpy(both, beta, bb, "ordinal")[0] - value) / eps
        assert dbounds[j] == pytest.approx(numeric, rel=1e-4)
    b2 = beta.copy()
    b2[1, 5] += eps
    numeric = (mixture_loglik_numpy(both, b2, bounds, "ordinal")[0] - value) / eps
    assert dbeta[1, 5] == pytest.approx(numeric, rel=1e-4)


# ----------------------------------------------------------------------------- bad input
def _spec(study, **changes):
    raw = study.to_dict()
    raw.update(changes)
    return raw


def test_spec_refuses_expectation_and_perception_on_different_scales(study):
    raw = study.to_dict()
    raw["items"]["TEC_RELIABILITY_E"]["scale"] = {"min": 1, "max": 7}
    with pytest.raises(StudySpecError, match="the gap needs one scale"):
        study_from_dict(raw)


def test_spec_refuses_a_dimension_neither_technical_nor_emotional(study):
    raw = study.to_dict()
    raw["attributes"]["reliability"]["dimension"] = "functional"
    with pytest.raises(StudySpecError, match="attributes.reliability.dimension"):
        study_from_dict(raw)


def test_constant_outcome_is_refused(study, sim):
    frame = sim[0].copy()
    frame["LOY_STAY"] = 4.0
    with pytest.raises(ModelSpecificationError, match="'LOY_STAY'.*same value \\(4\\) for every"):
        ExpectationsModel(study, outcome="LOY_STAY").build_model(frame)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outcome": "Loyality"}, "did you mean 'Loyalty'"),
        ({"family": "poisson"}, "family='poisson' is not supported"),
        ({"reference": "mean"}, "reference='mean' is not supported"),
        ({"family": "ordinal"}, "needs a single item"),
        ({"model_config": {"segment_parametrization": "x"}}, "must be 'auto' or 'centered' or"),
        ({"model_config": {"missing": "drop"}}, "'missing'\\] must be one of 'model'"),
        ({"model_config": {"attribute_sd_when_few": 0}}, "must be a positive number or None"),
        ({"model_config": {"slope": {"sigma": 1}}}, "unknown key"),
    ],
)
def test_bad_arguments(study, kwargs, message):
    with pytest.raises(ModelSpecificationError, match=message):
        ExpectationsModel(study, **kwargs)


def test_bad_data_columns(study, sim):
    frame = sim[0]
    with pytest.raises(ModelSpecificationError, match="segment column 'region'"):
        ExpectationsModel(study, segment="region").build_model(frame)
    with pytest.raises(ModelSpecificationError, match="perception column 'TEC_RELIABILITY_P'"):
        ExpectationsModel(study).build_model(frame.drop(columns="TEC_RELIABILITY_P"))
    bad = frame.copy()
    bad.loc[3, "weight"] = -1.0
    with pytest.raises(ModelSpecificationError, match="rows \\[3\\]") as err:
        ExpectationsModel(study).build_model(bad)
    assert isinstance(err.value, CxError)
    with pytest.raises(ModelSpecificationError, match="call build_model\\(data\\) or fit"):
        ExpectationsModel(study).build_model()


def test_study_without_attributes(study):
    raw = study.to_dict()
    raw["attributes"] = {}
    with pytest.raises(ModelSpecificationError, match="declares no attributes"):
        ExpectationsModel(study_from_dict(raw))


# ----------------------------------------------------------------------------- results
def test_result_tables(tiny_result):
    r = tiny_result
    assert isinstance(r, ExpectationsResult)
    w = r.dimension_weights()
    assert list(w["segment"]) == ["Consumer", "Small business", "Enterprise"]
    assert w["p_emotional_greater"].between(0, 1).all()
    draws = r.dimension_weights(draws=True)
    assert draws.dims == ("chain", "draw", "dimensions", "segments")
    share = r.emotional_share()
    assert list(share["segment"])[-1] == config.EVERYONE
    assert share["emotional_share"].between(-0.5, 1.5).all()
    assert r.emotional_share(draws=True).dims == ("chain", "draw", "segments")
    pr = r.penalty_reward()
    assert len(pr) == 8
    assert set(pr["kano_class"]) <= {"must-be", "attractive", "performance", "indifferent"}
    probs = pr[["p_must_be", "p_attractive", "p_performance", "p_indifferent"]].sum(axis=1)
    assert np.allclose(probs, 1.0)
    assert len(r.penalty_reward(by_segment=True)) == 24
    closing = r.gap_closing()
    assert len(closing) == 8 * 4
    assert {"outcome_change", "top2_change_hdi_low"} <= set(closing.columns)
    assert r.gap_closing(draws=True)["outcome_change"].dims[-2:] == ("attributes", "segments")
    gaps = r.gap_table()
    assert len(gaps) == 8 * 4
    assert r.idata.posterior["penalty"].dims == ("chain", "draw", "attributes", "segments")


def test_save_and_load(tiny_result, tmp_path):
    path = tiny_result.save(tmp_path / "expectations.nc")
    loaded = ExpectationsModel.load(path)
    assert loaded.model.outcome == "Loyalty"
    pd.testing.assert_frame_equal(loaded.penalty_reward(), tiny_result.penalty_reward())
    pd.testing.assert_frame_equal(loaded.gap_table(), tiny_result.gap_table())
    pd.testing.assert_frame_equal(loaded.gap_closing(), tiny_result.gap_closing())
    assert loaded.attrs["data_hash"] == tiny_result.attrs["data_hash"]
    idata = az.from_netcdf(path)
    idata.attrs["model_type"] = "BayesianSEM"
    other = tmp_path / "other.nc"
    idata.to_netcdf(str(other))
    with pytest.raises(ModelFileError, match="holds a BayesianSEM model"):
        ExpectationsModel.load(other)


def test_kano_classes_follow_the_rules(tiny_result):
    """Kano rules on a hand-made posterior: must-be, attractive, performance, indifferent."""
    pen = np.array([10.0, 1.0, 6.0, 0.1, 0, 0, 0, 0])
    rew = np.array([1.0, 10.0, 5.0, 0.2, 0, 0, 0, 0])
    n = 40
    draws = {
        "penalty_all_segments": np.broadcast_to(pen, (1, n, 8)).copy(),
        "reward_all_segments": np.broadcast_to(rew, (1, n, 8)).copy(),
    }
    idata = az.from_dict(
        posterior=draws,
        coords={"attributes": tiny_result.data.attributes},
        dims={k: ["attributes"] for k in draws},
    )
    fake = ExpectationsResult(tiny_result.model, idata)
    probs = fake.kano_probabilities(min_effect=0.5)
    best = probs.idxmax("kano_class").values
    assert list(best[:4]) == ["must-be", "attractive", "performance", "indifferent"]


def test_everyone_at_the_ceiling(study):
    frame, _ = simulate_expectations(study, n=600, seed=3, ceiling=True)
    model = ExpectationsModel(study)
    with pytest.warns(UnidentifiedGapWarning, match="no respondent has a shortfall"):
        model.prepare(frame)
    result = _quiet_fit(model, None)
    gaps = result.gap_table()
    with_expectation = gaps["reference"] == "expectation"
    assert (gaps.loc[with_expectation, "mean_gap"] == 0).all()
    assert (gaps.loc[~with_expectation, "mean_gap"] == 2).all()  # 5 against the midpoint 3
    assert (gaps["share_at_ceiling"] == 1).all()
    pr = result.penalty_reward()
    assert (pr["kano_class"] == "undetermined").all()
    assert not pr["penalty_identified"].any()
    assert not pr["reward_identified"].any()


def test_ordinal_family_plumbing(study, sim):
    frame = sim[0].iloc[:300]
    model = ExpectationsModel(study, outcome="LOY_STAY", family="ordinal")
    result = _quiet_fit(model, frame, draws=10, tune=10)
    assert model.data.pat_w.sum() == pytest.approx(model.data.sum_w.sum())
    assert result.idata.posterior["cutpoints"].shape[-1] == 4
    closing = result.gap_closing()
    assert closing["top2_change"].notna().all()


def test_segment_spread_is_learned_with_a_configurable_prior(study, sim):
    frame = sim[0].iloc[:400]
    learned = {"segment_sd": {"dist": "Gamma", "alpha": 2.0, "beta": 10.0}}
    model = ExpectationsModel(study, model_config=learned | {"segment_parametrization": "auto"})
    pm_model = model.build_model(frame)
    free = {v.name for v in pm_model.free_RVs}
    assert "segment_sd" in free
    assert pm_model["segment_sd"].owner.op.name == "gamma"
    # "auto" centres segments of 500 respondents or more: none of these 400
    assert not model.centered_segments().any()
    assert "segment_shift_z" in free
    fixed = ExpectationsModel(
        study, model_config={"segment_sd": 0.15, "segment_parametrization": "centered"}
    ).build_model(frame)
    assert "segment_sd" not in {v.name for v in fixed.free_RVs}
    assert "segment_shift" in {v.name for v in fixed.free_RVs}
    wide = ExpectationsModel(
        study, model_config={"segment_sd": {"dist": "HalfNormal", "sigma": 0.3}}
    ).build_model(frame)
    assert wide["segment_sd"].owner.op.name == "halfnormal"


def test_lazy_import():
    from cxlib.models import ExpectationsModel as Lazy

    assert Lazy is ExpectationsModel


# ----------------------------------------------------------------------------- slow
def _covered(value, low, high):
    return low <= value <= high


@pytest.mark.slow
def test_recovery_of_weights_asymmetry_and_segments(study):
    from cxlib.models.expectations.simulate import default_expectations_truth

    # with missing answers (3%, missing at random given the expectations): they enter
    # the likelihood as mixtures over their likely values (mean imputation attenuated
    # the slopes by 5-10% and failed this test)
    truth = default_expectations_truth(study)
    truth.missing_rate = 0.03
    truth.missing_mechanism = "mar"
    frame, truth = simulate_expectations(study, truth, n=6000, seed=11)
    result = ExpectationsModel(study).fit(frame)
    assert result.data.incomplete.n_rows > 1000
    assert result.ok, str(result.diagnostics)
    scale = 25.0  # the Loyalty score is 0-100; one point on the 1-5 items is 25 score points
    by_seg = result.penalty_reward(by_segment=True, hdi_prob=0.9)
    hits = []
    for row in by_seg.itertuples():
        hits.append(
            _covered(
                truth.penalty_for(study, row.attribute, row.segment) * scale,
                row.penalty_hdi_low,
                row.penalty_hdi_high,
            )
        )
        hits.append(
            _covered(
                truth.reward_for(study, row.attribute, row.segment) * scale,
                row.reward_hdi_low,
                row.reward_hdi_high,
            )
        )
    assert np.mean(hits) >= 0.85, f"90% intervals cover {np.mean(hits):.0%} of 48 slopes"
    weights = result.dimension_weights(hdi_prob=0.99).set_index("segment")
    for seg in weights.index:
        for dim in ("technical", "emotional"):
            true = truth.dimension_weight(study, dim, seg) * scale
            assert _covered(
                true, weights.loc[seg, f"{dim}_hdi_low"], weights.loc[seg, f"{dim}_hdi_high"]
            )
    assert weights.loc["Small business", "p_emotional_greater"] > 0.95
    assert weights.loc["Enterprise", "p_emotional_greater"] < 0.05
    # Kano classes of all segments together
    expected = {
        "reliability": "must-be",
        "competence": "performance",
        "accuracy": "must-be",
        "responsiveness": "performance",
        "valued": "attractive",
        "empathy": "performance",
        "trust": "attractive",
        "understood": "performance",
    }
    classes = result.penalty_reward().set_index("attribute")
    assert classes["kano_class"].to_dict() == expected
    assert (classes["kano_probability"] > 0.8).all()
    # closing a must-be gap buys more than closing an attractive one
    closing = result.gap_closing().query("segment == 'all'").set_index("attribute")
    assert (
        closing.loc["reliability", "outcome_change"] > 2 * closing.loc["valued", "outcome_change"]
    )
    assert (closing["top2_change"] >= 0).all()


def _ordinal_frame(study, n, seed, penalty_logit, reward_logit, cutpoints):
    """Answers from the sample study's attributes; LOY_STAY drawn from an ordered logit."""
    from scipy import special

    from cxlib.models.expectations.simulate import default_expectations_truth

    truth = default_expectations_truth(study)
    truth.missing_rate = 0.0
    frame, _ = simulate_expectations(study, truth, n=n, seed=seed)
    feats = _features(study, frame)
    eta = sum(
        -penalty_logit[a] * feats[f"s_{a}"] + reward_logit[a] * feats[f"u_{a}"]
        for a in study.attributes
    ).to_numpy()
    eta = eta - eta.mean()
    above = special.expit(eta[:, None] - np.asarray(cutpoints)[None, :])  # P(y > k)
    rng = np.random.default_rng([seed, 1])  # not the simulation's stream (its segments)
    frame["LOY_STAY"] = 1.0 + (rng.random(n)[:, None] < above).sum(1)
    items = [a.perception for a in study.attributes.values()] + [
        a.expectation for a in study.attributes.values() if a.expectation
    ]
    for item in items:  # 2% of the attribute answers missing completely at random
        frame.loc[rng.random(n) < 0.02, item] = np.nan
    return frame


@pytest.mark.slow
def test_ordinal_recovery_with_missing_answers(study):
    """Ordered-logit truth (logit per scale point of gap): intervals cover, Kano classes."""
    names = list(study.attributes)
    kinds = ["must-be", "performance"] * 2 + ["attractive", "performance"] * 2
    slopes = {"must-be": (1.2, 0.15), "performance": (0.7, 0.7), "attractive": (0.15, 1.2)}
    penalty = {a: slopes[k][0] for a, k in zip(names, kinds, strict=True)}
    reward = {a: slopes[k][1] for a, k in zip(names, kinds, strict=True)}
    frame = _ordinal_frame(study, 3000, 21, penalty, reward, [-2.5, -1.0, 0.5, 2.0])
    model = ExpectationsModel(study, outcome="LOY_STAY", family="ordinal")
    result = model.fit(frame)
    assert result.data.incomplete.n_rows > 500  # the missing answers are in the likelihood
    assert result.ok, str(result.diagnostics)
    table = result.penalty_reward(hdi_prob=0.9).set_index("attribute")
    hits = [
        table.loc[a, f"{side}_hdi_low"] <= truth[a] <= table.loc[a, f"{side}_hdi_high"]
        for a in names
        for side, truth in (("penalty", penalty), ("reward", reward))
    ]
    assert np.mean(hits) >= 0.85, f"90% intervals cover {np.mean(hits):.0%} of 16 slopes"
    assert table["kano_class"].to_dict() == dict(zip(names, kinds, strict=True))


@pytest.mark.slow
def test_small_segment_is_pooled_and_flagged(study):
    from cxlib.models.expectations.simulate import default_expectations_truth

    truth = default_expectations_truth(study)
    truth.segment_shift["Enterprise"] = {"emotional": 0.4}
    frame, _ = simulate_expectations(
        study,
        truth,
        segment_sizes={"Consumer": 2500, "Small business": 2500, "Enterprise": 5},
        seed=7,
    )
    model = ExpectationsModel(study)
    with pytest.warns(SmallSegmentWarning, match="'Enterprise' \\(5 respondents\\)"):
        # 2 x 2,000 draws: the max R-hat over ~80 parameters at 2 x 1,000 draws is within
        # sampling noise of the 1.01 gate (1.004-1.010 over seeds, either NUTS start)
        result = model.fit(frame, draws=2000)
    assert result.ok, str(result.diagnostics)
    w = result.dimension_weights().set_index("segment")
    assert w.loc["Enterprise", "small_segment"]
    assert not w.loc["Consumer", "small_segment"]
    others = w.loc[["Consumer", "Small business"], "emotional"].mean()
    true_gap = (truth.dimension_weight(study, "emotional", "Enterprise") * 25) - others
    assert abs(w.loc["Enterprise", "emotional"] - others) < 0.5 * abs(true_gap)
    assert w.loc["Enterprise", "emotional_sd"] > 2 * w.loc["Consumer", "emotional_sd"]
    assert (
        result.penalty_reward(by_segment=True)
        .query("segment == 'Enterprise'")["small_segment"]
        .all()
    )


@pytest.mark.slow
def test_sample_study_fits_with_clean_diagnostics(study, truth, tmp_path):
    from cxlib.data import load_responses
    from cxlib.simulate import simulate_responses, write_responses

    path = write_responses(simulate_responses(study, truth), tmp_path / "responses.parquet")
    result = ExpectationsModel(study).fit(load_responses(study, path))
    assert result.ok, str(result.diagnostics)
    assert result.diagnostics.max_r_hat <= 1.01
    share = result.emotional_share().set_index("segment")
    assert 0 < share.loc[config.EVERYONE, "emotional_share"] < 1


def test_without_segments_every_table_has_one_everyone_row_per_attribute(study, sim):
    """Unsegmented, the one segment is everyone: no second, pooled row with the same label."""
    result = _quiet_fit(ExpectationsModel(study, segment=False), sim[0])
    attributes = list(study.attributes)
    assert result.data.segments == [config.EVERYONE]
    for name, table in (
        ("gap_table", result.gap_table()),
        ("gap_closing", result.gap_closing()),
        ("penalty_reward", result.penalty_reward()),
    ):
        assert set(table["segment"]) == {config.EVERYONE}, name
        assert sorted(table["attribute"]) == sorted(attributes), name  # one row each
    share = result.emotional_share()
    assert list(share["segment"]) == [config.EVERYONE]
    draws = result.emotional_share(draws=True)
    assert list(draws["segments"].values) == [config.EVERYONE]
    # the everyone row is the pooled entry, which equals the one segment's
    closing = result.gap_closing(draws=True)["outcome_change"]
    assert closing.sizes["segments"] == 1


# ------------------------------------------------------- few attributes (issue #17)
def _bank(tmp_path_factory):
    from cxlib.data import load_responses
    from cxlib.study import load_study
    from tests.own_studies import bank_study

    study = load_study(bank_study(tmp_path_factory.mktemp("bank") / "bank"))
    return study, load_responses(study)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A study unlike the sample: 600 respondents, 2 + 2 perception-only attributes."""
    return _bank(tmp_path_factory)


def test_attribute_spread_is_fixed_when_few_attributes_inform_it(study, sim, bank):
    bank_study_, bank_data = bank
    sample = ExpectationsModel(study)
    sample.prepare(sim[0])
    assert sample.attribute_contrasts() == 6  # 4 + 4 attributes
    assert sample.learns_attribute_sd()
    assert "attribute_sd" in sample.build_model().named_vars
    few = ExpectationsModel(bank_study_, outcome="CUSL")
    few.prepare(bank_data)
    assert few.attribute_contrasts() == 2  # 2 + 2 attributes
    assert not few.learns_attribute_sd()
    model = few.build_model()
    assert "attribute_sd" not in model.named_vars
    assert "penalty_attribute" in model.named_vars
    anyway = ExpectationsModel(
        bank_study_, outcome="CUSL", model_config={"attribute_sd_when_few": None}
    )
    anyway.prepare(bank_data)
    assert anyway.learns_attribute_sd()
    fixed = ExpectationsModel(study, model_config={"attribute_sd": 0.2})
    fixed.prepare(sim[0])
    assert not fixed.learns_attribute_sd()
    assert "attribute_sd" not in fixed.build_model().named_vars


@pytest.mark.slow
def test_few_perception_only_attributes_converge_with_the_defaults(bank):
    """Issue #17: 2 + 2 perception-only attributes, 600 respondents, default settings.

    With the attributes' spread learned from 2 deviations per side the fit had 5-50
    divergences whatever the parametrization; with it fixed it passes the gates.
    """
    bank_study_, bank_data = bank
    model = ExpectationsModel(bank_study_, outcome="CUSL", segment="clientele")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(bank_data, random_seed=2026, progressbar=False)
    diag = result.diagnostics
    assert result.ok, str(diag)
    assert int(result.idata.sample_stats.diverging.sum()) == 0
    assert diag.max_r_hat <= 1.01
    assert diag.min_ess_bulk >= 400
    assert "attribute_sd" not in result.idata.posterior
    weights = result.dimension_weights().set_index("segment")
    assert np.isfinite(weights[["technical", "emotional"]].to_numpy()).all()
    assert set(weights.index) == {"Private", "Business"}
