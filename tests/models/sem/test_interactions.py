"""Latent interactions (``Y ~ X + Z + X:Z``): the latent-score likelihood and moderation results."""

from __future__ import annotations

import warnings

import altair as alt
import numpy as np
import pandas as pd
import pytest

from cxlib.errors import ModelSpecificationError
from cxlib.models import BayesianSEM
from cxlib.models.sem.scores import ItemData, item_log_lik

LATENT_MODEL = """
X =~ x1 + x2 + x3
Z =~ z1 + z2 + z3
Y =~ y1 + y2 + y3
Y ~ X + Z + X:Z
"""
#: the truth of :func:`simulate_latent` (data scale: marker loadings are 1)
TRUTH = {"Y ~ X": 0.4, "Y ~ Z": 0.3, "Y ~ X:Z": 0.25, "X ~~ Z": 0.4, "Y ~~ Y": 0.5}


def simulate_latent(n: int, seed: int) -> pd.DataFrame:
    """X, Z standard normal with correlation 0.4; Y = 0.4 X + 0.3 Z + 0.25 XZ + N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    xz = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.4], [0.4, 1.0]], n)
    X, Z = xz.T
    Y = 0.4 * X + 0.3 * Z + 0.25 * X * Z + rng.normal(0.0, np.sqrt(0.5), n)
    lam = np.array([1.0, 0.8, 0.9])
    cols = {}
    for name, f in (("x", X), ("z", Z), ("y", Y)):
        for j in range(3):
            cols[f"{name}{j + 1}"] = 3.0 + lam[j] * f + rng.normal(0.0, 0.5, n)
    frame = pd.DataFrame(cols)
    # the sample's own covariance of the latents: the truth a posterior can recover
    frame.attrs["cov_xz"] = float(np.cov(X, Z)[0, 1])
    return frame


def simulate_observed(n: int, seed: int) -> pd.DataFrame:
    """Observed x, w, m, y: m = 0.5 x + 0.2 w + 0.3 x w + e, y = 0.6 m + 0.1 x + e."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    w = 0.3 * x + np.sqrt(1 - 0.09) * rng.normal(size=n)
    m = 0.5 * x + 0.2 * w + 0.3 * x * w + rng.normal(0.0, 0.8, n)
    y = 0.6 * m + 0.1 * x + rng.normal(0.0, 0.7, n)
    return pd.DataFrame({"x": 10 + 2 * x, "w": 5 + w, "m": m, "y": y})


def _fit(model: str, data: pd.DataFrame, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianSEM(model).fit(data, random_seed=3, **kwargs)


def _row(table: pd.DataFrame, name: str) -> pd.Series:
    lhs, op, rhs = name.split(" ")
    sel = table[(table["lhs"] == lhs) & (table["op"] == op) & (table["rhs"] == rhs)]
    assert len(sel) == 1, name
    return sel.iloc[0]


# ---------------------------------------------------------------------- the likelihood kernel
def test_item_loglik_matches_normal_density_and_its_gradient():
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    n, p, m = 300, 6, 2
    y = rng.normal(size=(n, p))
    y[rng.random((n, p)) < 0.15] = np.nan
    w = rng.uniform(0.5, 1.5, n)
    eta = rng.normal(size=(n, m))
    lam = np.zeros((p, m))
    for j in range(p):
        lam[j, j // 3] = rng.uniform(0.5, 1.5)
    nu, sd = rng.normal(size=p), rng.uniform(0.5, 1.0, p)
    data = ItemData(y, w, [[j // 3] for j in range(p)])
    import pytensor.tensor as pt

    args = [pt.as_tensor_variable(a) for a in (eta, lam, nu, sd)]
    out = item_log_lik(*args, data).owner.outputs
    value = out[0].eval()
    ref = np.nansum(w[:, None] * norm.logpdf(y, nu + eta @ lam.T, sd))
    assert value == pytest.approx(ref, rel=1e-10)
    # gradients against central differences
    grads = [o.eval() for o in out[1:]]
    for k, base in enumerate((eta, lam, nu, sd)):
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(grads[k]))), base.shape))
        hi, lo = [a.copy() for a in (eta, lam, nu, sd)], [a.copy() for a in (eta, lam, nu, sd)]
        hi[k][idx] += 1e-6
        lo[k][idx] -= 1e-6

        def f(vals):
            return item_log_lik(*[pt.as_tensor_variable(v) for v in vals], data).eval()

        assert (f(hi) - f(lo)) / 2e-6 == pytest.approx(grads[k][idx], rel=1e-5)


# ---------------------------------------------------------------------- bad input
def test_refuses_group_ordinal_and_item_residual_covariances():
    data = simulate_latent(200, seed=1)
    data["segment"] = np.where(np.arange(200) % 2, "a", "b")
    with pytest.raises(ModelSpecificationError, match="group= is not supported with interactions"):
        BayesianSEM(LATENT_MODEL).fit(data, group="segment")
    with pytest.raises(ModelSpecificationError, match="ordinal items are not supported with"):
        BayesianSEM(LATENT_MODEL).fit(data.round(), ordinal=True)
    with pytest.raises(ModelSpecificationError, match="residual covariances between items"):
        BayesianSEM(LATENT_MODEL + "x1 ~~ x2\n").fit(data)


def test_refuses_few_category_moderator_constant_and_missing_observed():
    data = simulate_latent(300, seed=2)
    rng = np.random.default_rng(0)
    model = LATENT_MODEL.replace("Y ~ X + Z + X:Z", "Y ~ X + Z + tenure + X:tenure")
    data["tenure"] = rng.integers(1, 4, 300)  # 3 categories
    with pytest.raises(ModelSpecificationError, match=r"'tenure' has 3 distinct values"):
        BayesianSEM(model).fit(data)
    data["tenure"] = 2.0
    with pytest.raises(ModelSpecificationError, match="same answer from every respondent"):
        BayesianSEM(model).fit(data)
    data["tenure"] = rng.normal(size=300)
    data.loc[[4, 17], "tenure"] = np.nan
    with pytest.raises(
        ModelSpecificationError, match=r"'tenure' has 2 missing value\(s\) \(rows 4, 17\)"
    ):
        BayesianSEM(model).fit(data)


def test_a_dummy_moderator_is_accepted():
    data = simulate_latent(200, seed=3)
    data["app"] = np.arange(200) % 2
    sem = BayesianSEM(LATENT_MODEL.replace("X:Z", "X:Z + app + X:app"))
    sem.prepare_fit(data)
    assert "score_exo" in sem.model.named_vars
    assert list(sem.model.coords["interaction_term"]) == ["Y ~ X:Z", "Y ~ X:app"]


# ---------------------------------------------------------------------- closed form
@pytest.fixture(scope="module")
def observed_fit():
    data = simulate_observed(1500, seed=4)
    model = """
    Mf =~ m
    Yf =~ y
    Mf ~ x + w + x:w
    Yf ~ Mf + x
    """
    return data, _fit(model, data, draws=500, tune=500)


@pytest.mark.slow
def test_observed_interaction_equals_the_regression_estimate(observed_fit):
    """With x, w and m measured without error the posterior is a linear regression's."""
    data, result = observed_fit
    xc, wc = data["x"] - data["x"].mean(), data["w"] - data["w"].mean()
    X = np.column_stack([np.ones(len(data)), xc, wc, xc * wc])
    beta, res, *_ = np.linalg.lstsq(X, data["m"], rcond=None)
    se = np.sqrt(np.diag(np.linalg.inv(X.T @ X)) * res[0] / (len(data) - 4))
    est = result.estimates()
    for name, k in (("Mf ~ x", 1), ("Mf ~ w", 2), ("Mf ~ x:w", 3)):
        row = _row(est, name)
        assert abs(row["mean"] - beta[k]) < 0.2 * se[k], name
        assert row["sd"] == pytest.approx(se[k], rel=0.15), name
    # the observed exogenous variables' covariance is their sample covariance
    assert _row(est, "x ~~ w")["mean"] == pytest.approx(
        np.cov(data["x"], data["w"])[0, 1], rel=0.02
    )
    # standardized as lavaan does for a product term: times sd(x) sd(w), over sd(Mf)
    std = _row(result.estimates(standardized=True), "Mf ~ x:w")["mean"]
    mats = result.matrices()
    sd = np.sqrt(np.diagonal(mats["cov_eta"][:, :, 0], axis1=-2, axis2=-1))
    li = result.structure.latents
    g = mats["Gamma"][:, :, 0, 0]
    expect = g * sd[..., li.index("x")] * sd[..., li.index("w")] / sd[..., li.index("Mf")]
    assert std == pytest.approx(float(expect.mean()), rel=1e-9)
    # R² with the product's variance: the sample R² of the regression
    fitted = X @ beta
    r2 = _row_r2(result, "Mf")
    assert r2 == pytest.approx(np.var(fitted) / np.var(data["m"]), abs=0.02)


def _row_r2(result, name: str) -> float:
    r2 = result.r2()
    return float(r2.loc[r2["variable"] == name, "mean"].iloc[0])


@pytest.mark.slow
def test_moderated_mediation_index_and_conditional_effects(observed_fit):
    data, result = observed_fit
    mm = result.moderated_mediation("x", "Mf", "Yf", "w", at=[4.0, 5.0, 6.0])
    # truth on the data scale: x = 10 + 2 x*, so a = 0.25, a3 = 0.15 per unit of x; b = 0.6
    idx = mm.index.iloc[0]
    assert idx["hdi_low"] < 0.15 * 0.6 < idx["hdi_high"]
    assert "first stage" in idx["note"]
    ind = mm.conditional[mm.conditional["effect"] == "indirect"]
    for _, row in ind.iterrows():
        truth = (0.25 + 0.15 * (row["moderator_value"] - 5.0)) * 0.6
        assert row["hdi_low"] - 0.02 < truth < row["hdi_high"] + 0.02
    with pytest.raises(ModelSpecificationError, match="moderates neither stage"):
        result.moderated_mediation("x", "Mf", "Yf", "x")
    with pytest.raises(ModelSpecificationError, match="no interaction"):
        result.simple_slopes("w", "Mf")
    with pytest.raises(
        ModelSpecificationError, match="not available for a model with interactions"
    ):
        result.fit_measures()
    chart = alt.layer(
        __import__("cxlib.plots", fromlist=["plot_simple_slopes"]).plot_simple_slopes(
            result.simple_slope_lines("x", "w")
        )
    )
    spec = chart.to_dict()
    assert spec["layer"][0]["layer"][0]["mark"]["type"] == "area"
    assert set(result.simple_slope_lines("x", "w")["at"]) == {"mean - 1 SD", "mean", "mean + 1 SD"}


# ---------------------------------------------------------------------- latent recovery
@pytest.fixture(scope="module")
def latent_fit():
    data = simulate_latent(1500, seed=5)
    return data, _fit(LATENT_MODEL, data, draws=500, tune=500)


@pytest.mark.slow
def test_latent_interaction_recovers_the_truth(latent_fit):
    data, latent_fit = latent_fit
    est = latent_fit.estimates()
    truths = TRUTH | {"X ~~ Z": data.attrs["cov_xz"]}
    for name, truth in truths.items():
        row = _row(est, name)
        assert row["hdi_low"] < truth < row["hdi_high"], (name, row["mean"])
        assert row["r_hat"] < 1.02, name
    # R² of Y includes the product's variance: Var(XZ) = 1 + 0.4² with normal parts
    var_y = 0.16 + 0.09 + 2 * 0.4 * 0.3 * 0.4 + 0.25**2 * (1 + 0.4**2) + 0.5
    assert _row_r2(latent_fit, "Y") == pytest.approx(1 - 0.5 / var_y, abs=0.04)
    mats = latent_fit.matrices()
    var_eta_y = mats["cov_eta"][:, :, 0, 2, 2].mean()
    assert var_eta_y == pytest.approx(var_y, rel=0.08)
    std = latent_fit.estimates(standardized=True)
    assert 0.15 < _row(std, "Y ~ X:Z")["mean"] < 0.35


@pytest.mark.slow
def test_simple_slopes_and_johnson_neyman_match_the_truth(latent_fit):
    _, latent_fit = latent_fit
    slopes = latent_fit.simple_slopes("X", "Z", at=[-1.0, 0.0, 1.0])
    for _, row in slopes.iterrows():
        truth = 0.4 + 0.25 * row["moderator_value"]
        assert row["hdi_low"] < truth < row["hdi_high"], row["at"]
        assert row["p_positive"] > 0.99
    default = latent_fit.simple_slopes("X", "Z")
    assert list(default["at"]) == ["mean - 1 SD", "mean", "mean + 1 SD"]
    assert default["mean"].is_monotonic_increasing
    jn = latent_fit.johnson_neyman("X", "Z")
    table = jn.table
    # the true slope 0.4 + 0.25 z crosses 0 at z = -1.6
    assert table["p_positive"].is_monotonic_increasing
    near = table.iloc[(table["moderator_value"] + 1.6).abs().argsort()[:1]]
    assert not bool(near["excludes_zero"].iloc[0])
    assert bool(table.loc[table["moderator_value"].between(-0.8, 2.5), "excludes_zero"].all())
    assert jn.regions and jn.regions[-1][1] == pytest.approx(table["moderator_value"].max())
    assert "excludes 0" in str(jn)
    # effects are the slopes at the moderator's mean
    eff = latent_fit.effects()
    direct = eff[(eff["from"] == "X") & (eff["to"] == "Y") & (eff["effect"] == "direct")]
    assert float(direct["mean"].iloc[0]) == pytest.approx(float(default["mean"].iloc[1]), abs=0.01)


def test_marginal_outcome_logp_is_the_multivariate_normal_density():
    """An outcome's score integrated out: the one-factor normal, for any missingness."""
    from scipy.stats import multivariate_normal

    from cxlib.models.sem.scores import marginal_outcome_logp

    rng = np.random.default_rng(1)
    n, q = 40, 3
    y = rng.normal(size=(n, q))
    y[rng.random((n, q)) < 0.3] = np.nan
    w = rng.uniform(0.5, 2.0, n)
    a, lam, d = rng.normal(size=q), rng.uniform(0.5, 1.5, q), rng.uniform(0.2, 0.6, q)
    psi, pred = 0.7, rng.normal(size=n)
    value = marginal_outcome_logp(y, w, a, lam, d, psi, pred).eval()
    ref = 0.0
    for i in range(n):
        o = ~np.isnan(y[i])
        if not o.any():
            continue
        cov = psi * np.outer(lam[o], lam[o]) + np.diag(d[o])
        ref += w[i] * multivariate_normal(a[o] + lam[o] * pred[i], cov).logpdf(y[i, o])
    assert value == pytest.approx(ref, rel=1e-10)


# ---------------------------------------------------------------------- coverage
#: repeated simulations of the coverage check (each a refit of one compiled structure)
COVERAGE_REPS = 20


@pytest.mark.slow
def test_interaction_intervals_cover_the_truth_over_repeated_simulations():
    """The 94% intervals of X, Z and X:Z (X and Z correlated 0.4) cover the truth ~94%.

    20 datasets of N = 400: with calibrated intervals each path is covered 16+ times
    with probability 0.994 (binomial, p = 0.94), and 54+ of the 60 with 0.97. Every fit
    after the first reuses the compiled model (the nutpie compile cache).
    """
    covered = {name: 0 for name in ("Y ~ X", "Y ~ Z", "Y ~ X:Z")}
    compiled = []
    for rep in range(COVERAGE_REPS):
        fit = _fit(LATENT_MODEL, simulate_latent(400, seed=1000 + rep), draws=500, tune=500)
        compiled.append(fit.idata.posterior.attrs.get("compiled"))
        est = fit.estimates()
        for name in covered:
            row = _row(est, name)
            covered[name] += int(row["hdi_low"] < TRUTH[name] < row["hdi_high"])
    assert compiled[1:] == ["hit"] * (COVERAGE_REPS - 1), compiled
    assert all(c >= 16 for c in covered.values()), covered
    assert sum(covered.values()) >= 54, covered
