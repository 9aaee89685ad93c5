"""Tests of cxlib.models.sem.ordinal: the bivariate-normal CDF, the pairwise likelihood Op,
the shrinkage of the variability matrix, and recovery by the ordinal SEM (slow)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from cxlib.errors import ModelSpecificationError
from cxlib.models.sem import BayesianSEM
from cxlib.models.sem.ordinal import (
    OrdinalData,
    PairwiseLogLik,
    bivariate_normal_cdf,
    bivariate_normal_cdf_grad,
    shrink_variability,
)
from tests.models.sem.builders import MODEL_CORE as MODEL
from tests.models.sem.builders import TRUE_LOADING, TRUE_PATHS, latent_responses

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*")

CUTS = np.array([-1.5, -0.5, 0.5, 1.5])


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


ORDINAL_HALF = ["CX1", "CX3", "IMG2", "LOY1", "LOY3"]


def mixed_answers(n: int, seed: int, ordinal=ORDINAL_HALF) -> pd.DataFrame:
    """Five-point answers for ``ordinal`` items, 0-10 ratings (treated as continuous) for the rest.

    The ratings are the latent response rounded to half an SD (``5 + 2 y*``): few
    distinct values, so the ordinal x continuous pairs stay cheap; the rounding error
    lowers their standardized loadings from 0.8 to about 0.79.
    """
    lat = latent_responses(n, seed=seed)
    out = lat.copy()
    out[ordinal] = five_point(lat[ordinal])
    rest = [c for c in lat if c not in ordinal]
    out[rest] = np.clip(np.round(5 + 2 * lat[rest]), 0, 10)
    return out * 1.0


def _built_mixed_model(frame, ordinal, weights=None):
    """Build (not fit) the mixed model; returns the SEM and its prepared data."""
    from cxlib.models.sem.data import prepare_data

    sem = BayesianSEM(MODEL, scaling="unit_variance")
    prepared = prepare_data(frame, sem.structure.items, weights=weights)
    sem.build_model(prepared, ordinal=ordinal)
    return sem, prepared


def test_mixed_pairwise_likelihood_is_the_sum_over_respondents():
    """cl of the graph = sum over respondents and item pairs of the pair log-likelihoods."""
    import pytensor
    from scipy.stats import norm

    rng = np.random.default_rng(31)
    frame = mixed_answers(400, seed=30, ordinal=["CX1", "CX2", "IMG1", "LOY2"])
    frame["CX3"] = latent_responses(400, seed=30)["CX3"].round(2)  # many distinct values
    frame = frame.mask(rng.random(frame.shape) < 0.05)
    frame["w"] = rng.uniform(0.5, 2.0, len(frame))
    ordinal = ["CX1", "CX2", "IMG1", "LOY2"]
    sem, prepared = _built_mixed_model(frame, ordinal, weights="w")
    model, pdata = sem.model, sem.likelihood.pairs
    graph = sem.likelihood.graph
    outs = model.replace_rvs_by_values(
        [graph["cl"], graph["logp_cells"]]
        + [model[n] for n in ("Lambda", "B", "Psi", "Theta", "nu", "thresholds")]
    )
    f = pytensor.function(model.value_vars, outs, on_unused_input="ignore")
    ip = model.initial_point()
    point = [ip[v.name] + rng.normal(0, 0.1, ip[v.name].shape) for v in model.value_vars]
    cl, units, Lam, B, Psi, Theta, nu, th = f(*point)
    assert np.isfinite(cl)
    # the composite likelihood is linear in the counts and sufficient statistics
    assert cl == pytest.approx(float(pdata.unit_counts @ units), rel=1e-10)
    # brute force, respondent by respondent, on the working scale
    inv = np.linalg.inv(np.eye(3) - B)
    sigma = Lam @ inv @ Psi @ inv.T @ Lam.T + Theta
    items = sem.structure.items
    is_ord = np.isin(items, ordinal)
    s_w = np.where(is_ord, 1.0, prepared.scale)
    sigma_w = sigma / np.outer(s_w, s_w)
    np.testing.assert_allclose(np.diag(sigma_w)[is_ord], 1.0, atol=1e-10)
    mu_w = np.where(is_ord, 0.0, (nu - prepared.center) / prepared.scale)
    y = frame[items].to_numpy()
    z = (y - prepared.center) / prepared.scale
    w = prepared.weights
    od = pdata.od
    o_idx = list(np.flatnonzero(is_ord))
    total = od.loglik_and_grad(
        np.concatenate([th[j][~np.isnan(th[j])] for j in o_idx]), sigma_w[np.ix_(o_idx, o_idx)]
    )[0]
    for j in range(len(items)):
        for k in range(j + 1, len(items)):
            both = ~np.isnan(y[:, j]) & ~np.isnan(y[:, k])
            if is_ord[j] and is_ord[k]:
                continue
            if not is_ord[j] and not is_ord[k]:
                mvn = multivariate_normal(mu_w[[j, k]], sigma_w[np.ix_([j, k], [j, k])])
                total += float(w[both] @ mvn.logpdf(z[np.ix_(both, [j, k])]))
                continue
            o, c = (j, k) if is_ord[j] else (k, j)
            zc, a = z[both, c], y[both, o].astype(int) - int(np.nanmin(y[:, o]))
            s_cc, s_oc = sigma_w[c, c], sigma_w[o, c]
            m = s_oc / s_cc * (zc - mu_w[c])
            sd = np.sqrt(1 - s_oc**2 / s_cc)
            cuts = np.concatenate([[-np.inf], th[o][~np.isnan(th[o])], [np.inf]])
            prob = norm.cdf((cuts[a + 1] - m) / sd) - norm.cdf((cuts[a] - m) / sd)
            logp = norm.logpdf(zc, mu_w[c], np.sqrt(s_cc)) + np.log(prob)
            total += float(w[both] @ logp)
    assert cl == pytest.approx(total, rel=1e-9)


def test_ordinal_continuous_gradient_matches_finite_differences():
    from cxlib.models.sem.ordinal import PairData

    frame = mixed_answers(500, seed=36)
    frame["CX2"] = latent_responses(500, seed=36)["CX2"].round(3)
    frame = frame.mask(np.random.default_rng(37).random(frame.shape) < 0.05)
    y = frame.to_numpy()
    center, scale = np.nanmean(y, 0), np.nanstd(y, 0)
    pdata = PairData(y, np.ones(len(y)), list(frame), ORDINAL_HALF, center, scale)
    rng = np.random.default_rng(38)
    tau = np.concatenate(pdata.od.start_thresholds())
    n_pairs = len(pdata.oc_pairs)
    s_oc = rng.uniform(0.2, 0.6, n_pairs) * np.where(np.arange(n_pairs) % 7 == 0, -1, 1)
    s_cc = rng.uniform(0.8, 1.2, n_pairs)
    mu_c = rng.normal(0, 0.1, n_pairs)
    args = [tau, s_oc, s_cc, mu_c]
    value, *grads = pdata.oc_loglik_and_grad(*args)
    assert value == pytest.approx(float(pdata.entry_count @ pdata.oc_entry_logp(*args)))
    eps = 1e-6
    for i, g in enumerate(grads):
        for t in range(g.size):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[i][t] += eps
            minus[i][t] -= eps
            fd = (pdata.oc_loglik_and_grad(*plus)[0] - pdata.oc_loglik_and_grad(*minus)[0]) / (
                2 * eps
            )
            assert g[t] == pytest.approx(fd, rel=1e-5, abs=1e-4), (i, t)
    # outside the support (conditional variance <= 0)
    bad = s_oc.copy()
    bad[0] = 1.5
    assert pdata.oc_loglik_and_grad(tau, bad, s_cc, mu_c)[0] == -np.inf


def test_mixed_pattern_scores_add_up_to_the_gradient():
    """Sum over respondents of w_i * score_i is the gradient of the composite likelihood."""
    import pytensor
    import pytensor.tensor as pt

    frame = mixed_answers(300, seed=32)
    frame = frame.mask(np.random.default_rng(33).random(frame.shape) < 0.04)
    sem, _ = _built_mixed_model(frame, ORDINAL_HALF)
    model, pdata = sem.model, sem.likelihood.pairs
    cl_v, units_v = model.replace_rvs_by_values(
        [sem.likelihood.graph["cl"], sem.likelihood.graph["logp_cells"]]
    )
    x = pt.vector("x")
    ip = model.initial_point()
    pieces, start = {}, 0
    for v in model.value_vars:
        size = int(np.prod(ip[v.name].shape))
        pieces[v] = x[start : start + size].reshape(ip[v.name].shape)
        start += size
    cl_x, units_x = pytensor.clone_replace([cl_v, units_v], replace=pieces)
    f = pytensor.function([x], [cl_x, units_x])
    x0 = np.concatenate([ip[v.name].ravel() for v in model.value_vars])
    x0 = x0 + np.random.default_rng(34).normal(0, 0.05, x0.size)
    eps = 1e-6
    grad, jac = [], []
    for e in np.eye(x0.size):
        (cl_plus, u_plus), (cl_minus, u_minus) = f(x0 + eps * e), f(x0 - eps * e)
        grad.append((cl_plus - cl_minus) / (2 * eps))
        jac.append((u_plus - u_minus) / (2 * eps))
    uniq, inv = np.unique(pdata.codes, axis=0, return_inverse=True)
    w1 = np.bincount(inv.ravel(), weights=pdata.weights)
    score = pdata.pattern_scores(uniq, np.column_stack(jac))
    np.testing.assert_allclose(w1 @ score, np.array(grad), rtol=1e-5, atol=1e-3)


def test_mixed_fit_reports_thresholds_intercepts_and_refuses_scores(tmp_path):
    """A quick (unconverged) mixed fit: the parameter table and the refusals."""
    from cxlib.models.sem.ordinal import PairData

    frame = mixed_answers(300, seed=35)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = BayesianSEM(MODEL, scaling="unit_variance").fit(
            frame, ordinal=ORDINAL_HALF, draws=40, tune=40, chains=1, random_seed=1
        )
    assert isinstance(result.model.likelihood.pairs, PairData)
    assert result.ordinal and result.ordinal_items == ORDINAL_HALF
    est = result.estimates()
    continuous = [it for it in result.structure.items if it not in ORDINAL_HALF]
    assert sorted(est.loc[est["op"] == "|", "lhs"].unique()) == sorted(ORDINAL_HALF)
    assert (est.loc[est["op"] == "|"].groupby("lhs").size() == 4).all()
    assert sorted(est.loc[est["op"] == "~1", "lhs"]) == sorted(continuous)
    # intercepts and residual variances of the continuous items on the data's scale
    icpt = est[est["op"] == "~1"].set_index("lhs")["mean"]
    assert (icpt - frame[continuous].mean()).abs().max() < 0.3
    var = est[(est["op"] == "~~") & (est["lhs"] == est["rhs"])].set_index("lhs")["mean"]
    assert (var[continuous] > 0.5).all()  # ratings have variance ~4, residual ~1.4
    assert (var[ORDINAL_HALF] < 1).all()  # latent responses: 1 - communality
    std = result.estimates(standardized=True)
    loads = std[std["op"] == "=~"]["mean"]
    assert loads.between(0.3, 1.0).all()
    assert np.isfinite(result.reliability().constructs["omega"]).all()
    assert len(result.effects()) > 0 and len(result.r2()) > 0
    with pytest.raises(ModelSpecificationError, match="mixed ordinal/continuous"):
        result.fit_measures()
    with pytest.raises(ModelSpecificationError, match="ordinal items"):
        result.scores()
    loaded = BayesianSEM.load(result.save(tmp_path / "mixed.nc"))
    assert loaded.ordinal_items == ORDINAL_HALF
    pd.testing.assert_frame_equal(loaded.estimates(), est)


def test_mixed_ordinal_items_bad_input_is_a_clear_error():
    frame = mixed_answers(300, seed=7)
    with pytest.raises(ModelSpecificationError, match=r"\['CX9'\] are not items of the model"):
        BayesianSEM(MODEL).fit(frame, ordinal=["CX1", "CX9"], draws=10, tune=10)
    bad = frame.copy()
    bad["CX2"] = latent_responses(300, seed=7)["CX2"]  # continuous values
    with pytest.raises(ModelSpecificationError, match="'CX2' is listed as ordinal but has answers"):
        BayesianSEM(MODEL).fit(bad, ordinal=["CX1", "CX2"], draws=10, tune=10)
    bad["CX2"] = np.arange(300) % 20  # 20 categories
    with pytest.raises(ModelSpecificationError, match="'CX2' has 20 distinct answers"):
        BayesianSEM(MODEL).fit(bad, ordinal=["CX1", "CX2"], draws=10, tune=10)
    frame["segment"] = np.where(np.arange(300) % 2, "a", "b")
    with pytest.raises(ModelSpecificationError, match="group= is not supported"):
        BayesianSEM(MODEL).fit(frame, ordinal=["CX1"], group="segment", draws=10, tune=10)


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
    for key, value in TRUE_PATHS.items():
        row = est.loc[key]
        assert row["hdi_low"] <= value <= row["hdi_high"], (key, row["mean"])
    th = est.xs("|", level="op")
    assert np.abs(th["mean"].to_numpy().reshape(9, 4) - CUTS).max() < 0.12
    loadings = est.xs("=~", level="op")["mean"]
    assert (loadings - TRUE_LOADING).abs().max() < 0.08


@pytest.fixture(scope="module")
def mixed_fit_2500():
    """Mixed fit at N = 2,500: five ordinal five-point items, four 0-10 ratings."""
    import time

    answers = mixed_answers(2500, seed=41)
    answers = answers.mask(np.random.default_rng(42).random(answers.shape) < 0.02)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        result = BayesianSEM(MODEL, scaling="unit_variance").fit(
            answers,
            ordinal=ORDINAL_HALF,
            draws=1000,
            tune=1000,
            chains=2,
            cores=2,
            random_seed=5,
        )
    return result, time.perf_counter() - start


@pytest.mark.slow
def test_mixed_sem_converges_and_recovers_the_truth(mixed_fit_2500):
    result, seconds = mixed_fit_2500
    print(f"mixed fit N=2500: {seconds:.1f} s; {result.diagnostics}")
    d = result.diagnostics
    assert d.max_r_hat <= 1.01 and d.divergences == 0 and d.min_ess_bulk >= 400, str(d)
    est = result.estimates(standardized=True).set_index(["lhs", "op", "rhs"])
    for key, value in TRUE_PATHS.items():
        # within 3 posterior SDs (not the 94% HDI: in this sample even the continuous
        # fit of the latent responses gives 0.543 (HDI 0.507-0.576) for a = 0.5)
        row = est.loc[key]
        assert abs(row["mean"] - value) <= 3 * row["sd"], (key, row["mean"], row["sd"])
    th = est.xs("|", level="op")
    assert sorted(th.index.get_level_values("lhs").unique()) == sorted(ORDINAL_HALF)
    assert np.abs(th["mean"].to_numpy().reshape(5, 4) - CUTS).max() < 0.12
    loadings = est.xs("=~", level="op")["mean"]
    assert (loadings - TRUE_LOADING).abs().max() < 0.06
    # the ratings' intercepts on the data's scale: 5 (+ the rounding's tiny bias)
    raw = result.estimates().set_index(["lhs", "op", "rhs"]).xs("~1", level="op")
    assert (raw["mean"] - 5.0).abs().max() < 0.15


@pytest.mark.slow
def test_mixed_sem_agrees_with_the_continuous_fit_of_the_latent_responses(mixed_fit_2500):
    """Same respondents: continuous fit of the latent responses vs the mixed fit."""
    mixed, _ = mixed_fit_2500
    latent = latent_responses(2500, seed=41)
    latent = latent.mask(np.random.default_rng(42).random(latent.shape) < 0.02)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        continuous = BayesianSEM(MODEL, scaling="unit_variance").fit(
            latent, draws=1000, tune=1000, chains=2, cores=2, random_seed=5
        )
    a = mixed.estimates(standardized=True).set_index(["lhs", "op", "rhs"])
    b = continuous.estimates(standardized=True).set_index(["lhs", "op", "rhs"])
    for op in ("=~", "~"):
        x, y = a.xs(op, level="op", drop_level=False), b.xs(op, level="op", drop_level=False)
        gap = (x["mean"] - y["mean"]).abs()
        tolerance = 2.5 * np.maximum(x["sd"], y["sd"]) + 0.02
        assert (gap <= tolerance).all(), pd.concat([x["mean"], y["mean"], tolerance], axis=1)
