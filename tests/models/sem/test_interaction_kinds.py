"""Quadratic terms (``X:X``) and latent x observed interactions (a covariate, a dummy).

Recovery against the simulator's known truth (:func:`simulate_sem`, standardized values),
and the moderation results of each kind: simple slopes, Johnson-Neyman, moderated
mediation and the simple-slopes chart. Two model structures, one fit each (N = 600,
2 chains x (500 + 500), fixed seeds). The truths are standardized; slopes and effects
in model units are compared after multiplying by the fit's ``sd(x) / sd(y)`` (so the
marker item's sampling error in a latent's unit does not count against them).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from cxlib.models import BayesianSEM
from cxlib.models.sem.simulate import simulate_sem
from cxlib.plots import plot_simple_slopes

LOADINGS = {f"{f} =~ {f.lower()}{j}": 0.8 for f in "XMY" for j in (1, 2, 3)}
MEASUREMENT = """
X =~ x1 + x2 + x3
M =~ m1 + m2 + m3
Y =~ y1 + y2 + y3
"""
QUADRATIC = MEASUREMENT + "M ~ X + X:X\nY ~ M\n"
QUADRATIC_VALUES = LOADINGS | {"M ~ X": 0.4, "M ~ X:X": 0.2, "Y ~ M": 0.5}
MODERATORS = MEASUREMENT + "M ~ X + app + X:app\nY ~ M + age + M:age\n"
MODERATOR_VALUES = LOADINGS | {
    "M ~ X": 0.4,
    "M ~ app": 0.2,
    "M ~ X:app": 0.25,
    "Y ~ M": 0.5,
    "Y ~ age": 0.2,
    "Y ~ M:age": 0.2,
    "X ~~ app": 0.3,
    "X ~~ age": 0.2,
}
AGE = (40.0, 10.0)  # the covariate's raw mean and SD
APP = 0.4  # share of ones of the dummy
APP_SD = np.sqrt(APP * (1 - APP))
#: the largest error allowed of a standardized product coefficient (measured on these seeds:
#: X:X +0.031, X:app -0.018, M:age +0.025; their posterior SDs are 0.03-0.04)
STD_MARGIN = 0.07


def _simulate_quadratic(n: int, seed: int):
    return simulate_sem(QUADRATIC, QUADRATIC_VALUES, n=n, seed=seed)


def _simulate_moderators(n: int, seed: int):
    return simulate_sem(
        MODERATORS, MODERATOR_VALUES, n=n, seed=seed, covariates={"age": AGE}, dummies={"app": APP}
    )


def _fit(model: str, data: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianSEM(model).fit(data, random_seed=7, draws=500, tune=500, chains=2)


def _row(table: pd.DataFrame, lhs: str, op: str, rhs: str) -> pd.Series:
    sel = table[(table["lhs"] == lhs) & (table["op"] == op) & (table["rhs"] == rhs)]
    assert len(sel) == 1, (lhs, op, rhs)
    return sel.iloc[0]


def _assert_converged(result, names: list[tuple[str, str, str]]) -> None:
    """The structural terms: R-hat <= 1.02 and bulk ESS >= 100; everything R-hat < 1.05."""
    est = result.estimates()
    for key in names:
        row = _row(est, *key)
        assert row["r_hat"] <= 1.02 and row["ess_bulk"] >= 100, (key, row["r_hat"])
    assert est["r_hat"].max() < 1.05, est.loc[est["r_hat"].idxmax(), ["lhs", "op", "rhs"]]


def _covers(row, truth: float, slack: float = 0.0, scale: float = 1.0) -> bool:
    """The interval, times ``scale``, covers the truth (within ``slack``)."""
    return row["hdi_low"] * scale - slack < truth < row["hdi_high"] * scale + slack


def _sd(result, name: str) -> float:
    """A latent's model-implied SD (posterior mean), to put model units on the truth's scale.

    Slopes in model units times ``sd(x) / sd(y)`` are standardized: the truths of
    :func:`simulate_sem` are, and so the estimates do not carry the marker item's
    sampling error in the latent's unit.
    """
    k = result.structure.latents.index(name)
    return float(np.sqrt(result.matrices()["cov_eta"][:, :, 0, k, k]).mean())


# ---------------------------------------------------------------------- the simulator
def test_simulated_quadratic_term_has_its_standardized_truth():
    """Var(M) = b^2 + 2 g^2 + psi = 1 for normal X (Var(X^2) = 2), product centred."""
    sim = _simulate_quadratic(200_000, seed=1)
    assert sim.value("M ~~ M") == pytest.approx(1 - 0.4**2 - 2 * 0.2**2)
    x, m = sim.scores["X"], sim.scores["M"]
    assert m.mean() == pytest.approx(0.0, abs=0.01)
    assert m.var() == pytest.approx(1.0, abs=0.01)
    design = np.column_stack([np.ones_like(x), x, x**2])
    coef = np.linalg.lstsq(design, m, rcond=None)[0]
    assert coef[1:] == pytest.approx([0.4, 0.2], abs=0.01)


def test_simulated_dummy_and_covariate_moderators_have_their_truth():
    sim = _simulate_moderators(200_000, seed=2)
    data, s = sim.data, sim.scores
    assert set(np.unique(data["app"])) == {0, 1}
    assert data["app"].mean() == pytest.approx(APP, abs=0.005)
    assert data["age"].mean() == pytest.approx(AGE[0], abs=0.1)
    assert data["age"].std() == pytest.approx(AGE[1], abs=0.1)
    d = (data["app"] - APP) / APP_SD
    # M = 0.4 X + 0.2 D + 0.25 X D + e on the standardized scale, Var(M) = 1
    design = np.column_stack([np.ones(len(d)), s["X"], d, s["X"] * d])
    coef = np.linalg.lstsq(design, s["M"], rcond=None)[0]
    assert coef[1:] == pytest.approx([0.4, 0.2, 0.25], abs=0.01)
    assert s["M"].var() == pytest.approx(1.0, abs=0.02)
    assert np.corrcoef(s["X"], d)[0, 1] == pytest.approx(0.3, abs=0.01)


# ---------------------------------------------------------------------- quadratic X:X
@pytest.fixture(scope="module")
def quadratic():
    sim = _simulate_quadratic(600, seed=11)
    return sim, _fit(QUADRATIC, sim.data)


@pytest.mark.slow
def test_quadratic_term_recovers_curvature_and_simple_slopes(quadratic):
    sim, result = quadratic
    _assert_converged(result, [("M", "~", "X"), ("M", "~", "X:X"), ("Y", "~", "M")])
    # the standardized curvature (lavaan's: g sd(X)^2 / sd(M)) against the truth
    std = result.estimates(standardized=True)
    row = _row(std, "M", "~", "X:X")
    assert _covers(row, sim.value("M ~ X:X"))
    assert abs(row["mean"] - sim.value("M ~ X:X")) < STD_MARGIN
    # simple slopes of X at X = mean -+ 1 SD (about 0.8 model units), standardized:
    # b + 2 g w = 0.4 -+ 0.4
    scale = _sd(result, "X") / _sd(result, "M")
    slopes = result.simple_slopes("X", "X")
    assert list(slopes["at"]) == ["mean - 1 SD", "mean", "mean + 1 SD"]
    assert slopes["moderator_value"].to_numpy() == pytest.approx([-0.8, 0.0, 0.8], abs=0.15)
    for (_, row), truth in zip(slopes.iterrows(), [0.0, 0.4, 0.8], strict=True):
        assert _covers(row, truth, scale=scale), (row["at"], row["mean"])
    assert slopes["mean"].is_monotonic_increasing
    sd_x = _sd(result, "X")
    given = result.simple_slopes("X", "X", at=[-sd_x, 0.0, sd_x])
    assert list(given["at"]) == [f"{-sd_x:g}", "0", f"{sd_x:g}"]
    for (_, row), truth in zip(given.iterrows(), [0.0, 0.4, 0.8], strict=True):
        assert _covers(row, truth, scale=scale), (row["at"], row["mean"])


@pytest.mark.slow
def test_quadratic_floodlight_mediation_and_chart(quadratic):
    _, result = quadratic
    # the standardized slope 0.4 + 0.4 x crosses 0 at x = -1 SD
    jn = result.johnson_neyman("X", "X")
    table = jn.table
    assert table["p_positive"].is_monotonic_increasing
    near = table.iloc[(table["moderator_value"] + _sd(result, "X")).abs().argsort()[:1]]
    assert not bool(near["excludes_zero"].iloc[0])
    assert bool(table.loc[table["moderator_value"].between(0.0, 2.0), "excludes_zero"].all())
    assert jn.regions[-1][1] == pytest.approx(table["moderator_value"].max())
    # moderated mediation by X itself: a(w) = a + 2 a3 w, index 2 a3 b, standardized
    # 2 * 0.2 * 0.5 (times sd(X)^2 / sd(Y): per SD of X, per SD of X)
    mm = result.moderated_mediation("X", "M", "Y", "X")
    idx = mm.index.iloc[0]
    assert "quadratic" in idx["note"] and "2*a3*b" in idx["note"]
    sd_x, sd_y = _sd(result, "X"), _sd(result, "Y")
    assert _covers(idx, 0.2, scale=sd_x**2 / sd_y)
    ind = mm.conditional[mm.conditional["effect"] == "indirect"]
    assert list(ind["at"]) == ["mean - 1 SD", "mean", "mean + 1 SD"]
    for (_, row), truth in zip(ind.iterrows(), [0.0, 0.2, 0.4], strict=True):
        assert _covers(row, truth, slack=0.02, scale=sd_x / sd_y), (row["at"], row["mean"])
    # the index is the derivative of the conditional indirect effect (linear in w here)
    values = ind["moderator_value"].to_numpy()
    assert (ind["mean"].iloc[2] - ind["mean"].iloc[0]) / (values[2] - values[0]) == (
        pytest.approx(idx["mean"], rel=0.05)
    )
    # the chart: the fitted curve and its tangents at the chosen values
    lines = result.simple_slope_lines("X", "X")
    assert list(dict.fromkeys(lines["at"])) == [
        "fitted curve",
        "mean - 1 SD",
        "mean",
        "mean + 1 SD",
    ]
    curve = lines[lines["at"] == "fitted curve"]
    assert np.all(np.diff(curve["mean"].to_numpy(), 2) > 0)  # convex: g > 0
    slopes = result.simple_slopes("X", "X")
    for _, s in slopes.iterrows():
        tangent = lines[lines["at"] == s["at"]]
        dx = np.diff(tangent["predictor_value"].to_numpy())
        dy = np.diff(tangent["mean"].to_numpy())
        assert dy / dx == pytest.approx(np.full(dx.size, s["mean"]), rel=0.05, abs=0.03)
    spec = plot_simple_slopes(lines).to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["area", "line"]


# ---------------------------------------------------------------------- observed moderators
@pytest.fixture(scope="module")
def moderators():
    sim = _simulate_moderators(600, seed=12)
    return sim, _fit(MODERATORS, sim.data)


@pytest.mark.slow
def test_latent_by_observed_interactions_recover_the_truth(moderators):
    sim, result = moderators
    terms = [("M", "~", t) for t in ("X", "app", "X:app")]
    terms += [("Y", "~", t) for t in ("M", "age", "M:age")]
    _assert_converged(result, terms)
    std = result.estimates(standardized=True)
    for lhs, op, rhs in terms:
        row = _row(std, lhs, op, rhs)
        truth = sim.value(f"{lhs} {op} {rhs}")
        assert _covers(row, truth), (rhs, row["mean"], truth)
        if ":" in rhs:
            assert abs(row["mean"] - truth) < STD_MARGIN, (rhs, row["mean"])


@pytest.mark.slow
def test_dummy_moderator_slopes_are_per_group(moderators):
    _, result = moderators
    slopes = result.simple_slopes("X", "app")
    assert list(slopes["at"]) == ["app = 0", "app = 1"]
    assert list(slopes["moderator_value"]) == [0.0, 1.0]
    # standardized slope of X in group d: 0.4 + 0.25 (d - 0.4) / sd(app)
    truths = [0.4 + 0.25 * (d - APP) / APP_SD for d in (0.0, 1.0)]
    sd_x, sd_m, sd_y = (_sd(result, v) for v in "XMY")
    for (_, row), truth in zip(slopes.iterrows(), truths, strict=True):
        assert _covers(row, truth, scale=sd_x / sd_m), (row["at"], row["mean"], truth)
    jn = result.johnson_neyman("X", "app")
    assert list(jn.table["moderator_value"]) == [0.0, 1.0]
    assert jn.table["mean"].to_numpy() == pytest.approx(slopes["mean"].to_numpy(), rel=1e-9)
    assert "excludes 0 for app = 0 and app = 1" in str(jn)
    # moderated first stage: index a3 b, conditional indirect effects per group
    mm = result.moderated_mediation("X", "M", "Y", "app")
    idx = mm.index.iloc[0]
    assert "first stage" in idx["note"]
    assert _covers(idx, 0.25 / APP_SD * 0.5, slack=0.02, scale=sd_x / sd_y)
    ind = mm.conditional[mm.conditional["effect"] == "indirect"]
    assert list(ind["at"]) == ["app = 0", "app = 1"]
    for (_, row), truth in zip(ind.iterrows(), truths, strict=True):
        assert _covers(row, truth * 0.5, slack=0.02, scale=sd_x / sd_y), (row["at"], row["mean"])
    diff = ind["mean"].iloc[1] - ind["mean"].iloc[0]
    assert diff == pytest.approx(idx["mean"], rel=0.02)
    lines = result.simple_slope_lines("X", "app")
    assert list(dict.fromkeys(lines["at"])) == ["app = 0", "app = 1"]
    assert set(lines["moderator_value"]) == {0.0, 1.0}
    spec = plot_simple_slopes(lines).to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["area", "line"]


@pytest.mark.slow
def test_covariate_moderator_slopes_floodlight_and_second_stage(moderators):
    sim, result = moderators
    age = sim.data["age"]
    slopes = result.simple_slopes("M", "age")
    assert list(slopes["at"]) == ["mean - 1 SD", "mean", "mean + 1 SD"]
    # reported on the covariate's own scale (years): its sample mean -+ its SD
    expect = age.mean() + age.std(ddof=0) * np.array([-1.0, 0.0, 1.0])
    assert slopes["moderator_value"].to_numpy() == pytest.approx(expect, rel=0.01)
    given = result.simple_slopes("M", "age", at=[30.0, 40.0, 50.0])
    sd_x, sd_m, sd_y = (_sd(result, v) for v in "XMY")
    for (_, row), truth in zip(given.iterrows(), [0.3, 0.5, 0.7], strict=True):
        assert _covers(row, truth, scale=sd_m / sd_y), (row["at"], row["mean"])
    jn = result.johnson_neyman("M", "age")
    assert jn.table["moderator_value"].iloc[0] == pytest.approx(age.min())
    assert jn.table["moderator_value"].iloc[-1] == pytest.approx(age.max())
    assert jn.table["mean"].is_monotonic_increasing
    assert "age" in str(jn)
    # second stage moderated by age: index a b3 = 0.4 * 0.02 per year
    mm = result.moderated_mediation("X", "M", "Y", "age", at=[30.0, 50.0])
    idx = mm.index.iloc[0]
    assert "second stage" in idx["note"]
    assert _covers(idx, 0.4 * 0.02, slack=0.002, scale=sd_x / sd_y)
    ind = mm.conditional[mm.conditional["effect"] == "indirect"]
    assert list(ind["at"]) == ["30", "50"]
    # the conditional effects at a slope of the moderated path at the mean of app (0.4)
    for (_, row), b in zip(ind.iterrows(), [0.3, 0.7], strict=True):
        assert _covers(row, 0.4 * b, slack=0.02, scale=sd_x / sd_y), (row["at"], row["mean"])
    lines = result.simple_slope_lines("M", "age", at=[30.0, 50.0])
    assert list(dict.fromkeys(lines["at"])) == ["30", "50"]
    assert plot_simple_slopes(lines).to_dict()["layer"][1]["mark"]["type"] == "line"


# ---------------------------------------------------------------------- the score parameterization
def test_score_means_are_an_exact_reparameterization(monkeypatch):
    """``eta = m + z - mean(z)`` leaves the density of the scores unchanged.

    The log density at ``(z, m)`` equals the plain parameterization's at ``eta = m + z
    - mean(z)`` up to the potential on ``mean(z)`` alone (0 where ``mean(z) = 0``), and
    the scores, so the likelihood, do not depend on ``mean(z)``.
    """
    from cxlib.models.sem import scores

    sim = _simulate_quadratic(120, seed=3)
    models = {}
    for centred in (False, True):
        monkeypatch.setattr(scores, "CENTRED_SCORE_MEANS", centred)
        sem = BayesianSEM(QUADRATIC)
        sem.prepare_fit(sim.data)
        models[centred] = sem.model
    plain, centred = models[False], models[True]
    assert "score_mean_exo" in centred.named_vars and "score_mean_endo" in centred.named_vars
    point = plain.initial_point()
    rng = np.random.default_rng(0)
    eta = {k: point[k] + rng.normal(0.0, 0.3, point[k].shape) for k in ("score_exo", "score_endo")}
    plain_point = point | eta
    new_point = dict(plain_point)
    for which in ("exo", "endo"):
        e = eta[f"score_{which}"]
        new_point[f"score_mean_{which}"] = e.mean(0)
        new_point[f"score_{which}"] = e - e.mean(0)
    logp_plain = plain.compile_logp()(plain_point)
    logp_new = centred.compile_logp()
    assert logp_new(new_point) == pytest.approx(logp_plain, rel=1e-10)
    # shifting z by c moves only the potential on its mean: the same drop wherever the
    # scores and parameters are
    other = new_point | {k: v + rng.normal(0.0, 0.3, v.shape) for k, v in new_point.items()}
    other["score_exo"] = other["score_exo"] - other["score_exo"].mean(0)
    drops = []
    for at in (new_point, other):
        shifted = at | {"score_exo": at["score_exo"] + 0.01}
        drops.append(logp_new(at) - logp_new(shifted))
    assert drops[0] > 0
    assert drops[1] == pytest.approx(drops[0], rel=1e-8)
