"""Tests of cxlib.models.ordinal: the bivariate-normal CDF, the pairwise likelihood Op,
the shrinkage of the variability matrix, and recovery by the ordinal SEM (slow)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from cxlib.models.base import ModelSpecificationError
from cxlib.models.ordinal import (
    OrdinalData,
    PairwiseLogLik,
    bivariate_normal_cdf,
    bivariate_normal_cdf_grad,
    shrink_variability,
)
from cxlib.models.sem import BayesianSEM

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*")

CUTS = np.array([-1.5, -0.5, 0.5, 1.5])
TRUE_LOADING = 0.8
TRUE_A, TRUE_B, TRUE_C = 0.5, 0.4, 0.2
MODEL = """
Experience =~ CX1 + CX2 + CX3
Image      =~ IMG1 + IMG2 + IMG3
Loyalty    =~ LOY1 + LOY2 + LOY3
Image   ~ a*Experience
Loyalty ~ b*Image + c*Experience
indirect := a*b
"""


def latent_responses(n: int, seed: int) -> pd.DataFrame:
    """Standardized latent responses of 9 items (3 constructs, loadings 0.8)."""
    rng = np.random.default_rng(seed)
    exp = rng.standard_normal(n)
    img = TRUE_A * exp + np.sqrt(1 - TRUE_A**2) * rng.standard_normal(n)
    explained = TRUE_B**2 + TRUE_C**2 + 2 * TRUE_B * TRUE_C * TRUE_A
    loy = TRUE_B * img + TRUE_C * exp + np.sqrt(1 - explained) * rng.standard_normal(n)
    cols = {}
    for prefix, lat in (("CX", exp), ("IMG", img), ("LOY", loy)):
        for k in range(1, 4):
            noise = np.sqrt(1 - TRUE_LOADING**2) * rng.standard_normal(n)
            cols[f"{prefix}{k}"] = TRUE_LOADING * lat + noise
    return pd.DataFrame(cols)


def five_point(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda col: 1 + np.searchsorted(CUTS, col.to_numpy()))


def small_tables(seed: int = 0, n: int = 600, missing: float = 0.05) -> OrdinalData:
    """Pair tables of 4 items with 3, 4 and 5 categories and some missing answers."""
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(n)
    lam = np.array([0.7, 0.97, 0.97, 0.5])  # items b and c correlate 0.94 (Genz's r > 0.925)
    y = lam * f[:, None] + np.sqrt(1 - lam**2) * rng.standard_normal((n, 4))
    cuts = [np.array([-0.5, 0.7]), CUTS, CUTS, np.array([-1.0, 0.0, 1.2])]
    codes = np.column_stack([np.searchsorted(c, y[:, j]) for j, c in enumerate(cuts)])
    answers = codes.astype(float) + 1.0
    answers[rng.random(answers.shape) < missing] = np.nan
    return OrdinalData(answers, np.ones(n), ["a", "b", "c", "d"])


def test_bivariate_normal_cdf_matches_scipy():
    rng = np.random.default_rng(1)
    rhos = np.array([-0.97, -0.93, -0.6, -0.2, 0.0, 0.1, 0.45, 0.8, 0.92, 0.95, 0.99])
    for rho in rhos:
        h = rng.normal(0, 1.5, 12)
        k = rng.normal(0, 1.5, 12)
        ours = bivariate_normal_cdf(h, k, rho)
        mvn = multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]])
        ref = np.array([mvn.cdf([a, b]) for a, b in zip(h, k, strict=True)])
        np.testing.assert_allclose(ours, ref, atol=1e-9, rtol=0, err_msg=f"rho={rho}")
    # infinite limits reduce to the margins
    assert bivariate_normal_cdf(np.inf, 0.3, 0.5) == pytest.approx(0.617911422, abs=1e-8)
    assert bivariate_normal_cdf(0.3, -np.inf, 0.5) == 0.0
    assert bivariate_normal_cdf(np.inf, np.inf, -0.5) == 1.0


def test_bivariate_normal_cdf_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    h = rng.normal(0, 1.2, 40)
    k = rng.normal(0, 1.2, 40)
    rho = rng.uniform(-0.97, 0.97, 40)
    dh, dk, dr = bivariate_normal_cdf_grad(h, k, rho)
    eps = 1e-6
    fd_h = (bivariate_normal_cdf(h + eps, k, rho) - bivariate_normal_cdf(h - eps, k, rho)) / (
        2 * eps
    )
    fd_k = (bivariate_normal_cdf(h, k + eps, rho) - bivariate_normal_cdf(h, k - eps, rho)) / (
        2 * eps
    )
    fd_r = (bivariate_normal_cdf(h, k, rho + eps) - bivariate_normal_cdf(h, k, rho - eps)) / (
        2 * eps
    )
    np.testing.assert_allclose(dh, fd_h, atol=1e-8)
    np.testing.assert_allclose(dk, fd_k, atol=1e-8)
    np.testing.assert_allclose(dr, fd_r, atol=1e-8)


def test_cell_probabilities_are_the_bivariate_table():
    od = small_tables()
    tau = np.concatenate(od.start_thresholds())
    corr = np.full((4, 4), 0.45) + 0.55 * np.eye(4)
    prob, _, _ = od.cell_probabilities(tau, corr)
    for q in range(len(od.pairs)):
        block = prob[od.cell_offset[q] : od.cell_offset[q + 1]]
        assert block.sum() == pytest.approx(1.0, abs=1e-12)
        assert block.min() > 0
    # one cell by hand: pair (b, c), answers (2, 3): thresholds b1 < y_b <= b2, c2 < y_c <= c3
    q = [tuple(p) for p in od.pairs].index((1, 2))
    cell = od.cell_offset[q] + 1 * 5 + 2
    tb = tau[od.tau_offset[1] : od.tau_offset[2]]
    tc = tau[od.tau_offset[2] : od.tau_offset[3]]
    mvn = multivariate_normal(mean=[0, 0], cov=[[1, 0.45], [0.45, 1]])
    expect = (
        mvn.cdf([tb[1], tc[2]])
        - mvn.cdf([tb[0], tc[2]])
        - mvn.cdf([tb[1], tc[1]])
        + mvn.cdf([tb[0], tc[1]])
    )
    assert prob[cell] == pytest.approx(expect, abs=1e-10)


def test_pairwise_loglik_gradient_matches_finite_differences():
    od = small_tables(seed=3)
    rng = np.random.default_rng(4)
    tau = np.concatenate(od.start_thresholds()) + rng.normal(0, 0.05, od.n_tau)
    # near the data's correlations (cells the data fill must not have tiny probabilities,
    # or the finite differences lose their digits), with one negative correlation
    corr = np.array(
        [[1, 0.7, 0.65, 0.3], [0.7, 1, 0.94, 0.5], [0.65, 0.94, 1, 0.45], [0.3, 0.5, 0.45, 1]]
    )
    corr[0, 3] = corr[3, 0] = -0.05
    value, g_tau, g_corr = od.loglik_and_grad(tau, corr)
    assert np.isfinite(value)
    eps = 1e-6
    for t in range(od.n_tau):
        e = np.zeros(od.n_tau)
        e[t] = eps
        fd = (od.loglik_and_grad(tau + e, corr)[0] - od.loglik_and_grad(tau - e, corr)[0]) / (
            2 * eps
        )
        assert g_tau[t] == pytest.approx(fd, rel=1e-5, abs=1e-4)
    for j, k in od.pairs:
        E = np.zeros((4, 4))
        E[j, k] = eps
        fd = (od.loglik_and_grad(tau, corr + E)[0] - od.loglik_and_grad(tau, corr - E)[0]) / (
            2 * eps
        )
        assert g_corr[j, k] == pytest.approx(fd, rel=1e-5, abs=1e-4)
        assert g_corr[k, j] == 0.0
    # the value is the count-weighted sum of the cells' log-probabilities
    assert value == pytest.approx(float(od.counts @ od.cell_log_probs(tau, corr)), rel=1e-12)


def test_pairwise_loglik_outside_support_is_minus_inf():
    od = small_tables()
    tau = np.concatenate(od.start_thresholds())
    corr = np.eye(4)
    corr[0, 1] = 1.0
    value, g_tau, g_corr = od.loglik_and_grad(tau, corr)
    assert value == -np.inf and not g_tau.any() and not g_corr.any()
    unordered = tau.copy()
    unordered[od.tau_offset[1]] = unordered[od.tau_offset[1] + 1] + 0.1
    assert od.loglik_and_grad(unordered, np.eye(4))[0] == -np.inf


def test_pairwise_op_chains_gradients_through_pytensor():
    import pytensor
    import pytensor.tensor as pt

    od = small_tables(seed=5)
    tau0 = np.concatenate(od.start_thresholds())
    lam = pt.vector("lam")
    tau = pt.vector("tau")
    corr = pt.outer(lam, lam) + pt.diag(1 - lam**2)
    cl = PairwiseLogLik(od)(tau, corr)[0]
    f = pytensor.function([lam, tau], [cl, *pytensor.grad(cl, [lam, tau])])
    lam0 = np.array([0.7, 0.6, 0.8, 0.5])
    value, g_lam, g_tau = f(lam0, tau0)
    eps = 1e-6
    for i in range(4):
        e = np.zeros(4)
        e[i] = eps
        fd = (f(lam0 + e, tau0)[0] - f(lam0 - e, tau0)[0]) / (2 * eps)
        assert g_lam[i] == pytest.approx(fd, rel=1e-5)
    np.testing.assert_allclose(g_tau, od.loglik_and_grad(tau0, lam0[:, None] * lam0)[1])


def test_shrinkage_of_the_variability_matrix():
    rng = np.random.default_rng(6)
    d = 20
    A = rng.normal(size=(d, d))
    H = A @ A.T / d + np.eye(d)
    M = np.linalg.cholesky(H).T
    # design effects that differ by direction, not aligned with the coordinates
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    K_true = Q @ np.diag(np.linspace(0.5, 4.0, d)) @ Q.T
    K_half = Q @ np.diag(np.sqrt(np.linspace(0.5, 4.0, d))) @ Q.T

    def draw(n):
        z = rng.normal(size=(n, d)) @ K_half
        return z @ M  # scores s = M' z, so that J = M' K M

    for n, lo, hi in ((40_000, 0.0, 0.05), (15, 0.3, 1.0)):
        scores = draw(n)
        J, J_raw, lam = shrink_variability(H, scores, np.ones(n), np.ones(n))
        assert lo <= lam <= hi, (n, lam)
        assert np.linalg.eigvalsh(J).min() > 0
    # with many respondents the estimate is close to the truth
    scores = draw(40_000)
    J, _, _ = shrink_variability(H, scores, np.ones(40_000), np.ones(40_000))
    K_hat = np.linalg.solve(M.T, np.linalg.solve(M.T, J.T).T) / 40_000
    np.testing.assert_allclose(K_hat, K_true, atol=0.1)


def test_mixed_ordinal_and_continuous_items_is_a_clear_error():
    answers = five_point(latent_responses(300, seed=7))
    with pytest.raises(ModelSpecificationError, match="mix of ordinal and continuous"):
        BayesianSEM(MODEL).fit(answers, ordinal=["CX1", "CX2"], draws=10, tune=10)
    with pytest.raises(ModelSpecificationError, match="not items of the model"):
        BayesianSEM(MODEL).fit(answers, ordinal=["CX9"], draws=10, tune=10)


@pytest.mark.slow
def test_ordinal_sem_recovers_thresholds_and_paths_quickly():
    answers = five_point(latent_responses(2000, seed=11))
    answers = answers.mask(np.random.default_rng(12).random(answers.shape) < 0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        result = BayesianSEM(MODEL, scaling="unit_variance").fit(
            answers, ordinal=True, draws=1000, tune=1000, chains=2, cores=2, random_seed=3
        )
    d = result.diagnostics
    assert d.max_r_hat <= 1.01 and d.divergences == 0, str(d)
    est = result.estimates(standardized=True).set_index(["lhs", "op", "rhs"])
    for key, value in {
        ("Image", "~", "Experience"): TRUE_A,
        ("Loyalty", "~", "Image"): TRUE_B,
        ("Loyalty", "~", "Experience"): TRUE_C,
    }.items():
        row = est.loc[key]
        assert row["hdi_low"] <= value <= row["hdi_high"], (key, row["mean"])
    th = est.xs("|", level="op")
    assert np.abs(th["mean"].to_numpy().reshape(9, 4) - CUTS).max() < 0.12
    loadings = est.xs("=~", level="op")["mean"]
    assert (loadings - TRUE_LOADING).abs().max() < 0.08
