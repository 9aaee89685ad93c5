"""The ordinal likelihood: Likert items as ordered categories, by pairwise likelihood.

Each item ``j`` answers category ``a`` when its latent response ``y*_j`` falls between
thresholds ``tau_j,a-1 < y*_j <= tau_j,a``; the latent responses are multivariate
normal with the model-implied correlation matrix (latent responses standardized,
residual variances ``1 - communality``: the "delta" parametrization of lavaan).

Formulations measured (benchmarks/RESULTS.md, 3 constructs x 4 five-point items,
N = 2,500, 2 chains x 1,000 draws after 1,000 tuning steps, this 2-core machine):

* **Latent scores sampled per respondent** (ordered probit given ``eta_i``; what a
  user writes from the PyMC examples). 7,500 latent scores plus the parameters. The
  prototype needed 135 s at N = 250 and ended with R-hat 1.10; its cost and its
  funnel (loadings against scores) grow with N: even the continuous latent-score
  model needs 196 s of sampling at N = 2,500 for a min bulk ESS of 438 (2.2 ESS/s).
* **Data augmentation** (Chib & Greenberg; blavaan): sample the continuous responses
  behind each answer, latent variables integrated out. The target stays Gaussian but
  has N x p = 30,000 truncated dimensions whose bounds move with the thresholds;
  thresholds mix slowly (Cowles 1996) and a gradient costs O(N p^2). Not
  implemented: its cost grows with N, which rules out N >= 25,000 in the time targets.
* **Pairwise likelihood (chosen)**: the composite log-likelihood of all bivariate
  item tables, ``sum_{j<k} sum_{a,b} n_jk(a,b) log pi_jk(a,b; theta)``, where
  ``pi`` is a rectangle probability of the bivariate normal (12-point Gauss-Legendre
  integral of its density over the correlation; error < 1e-8 for |rho| <= 0.9).
  Its cost depends on the number of item pairs and categories, not on N (the tables
  are computed once), it uses every answered pair under missingness, and weights
  enter the tables. A composite likelihood counts each item ``p - 1`` times, so the
  raw "posterior" is too narrow: we apply the curvature adjustment of Ribatet, Cooley
  & Davison (2012): with ``H`` the negative Hessian of the composite log-likelihood
  at its maximum ``theta_hat``, ``J`` the variance of the per-respondent composite
  scores and ``G = H J^-1 H`` (Godambe information), the sampled target is
  ``CL(theta_hat + C (theta - theta_hat))`` with ``C = M^-1 M_G`` (``H = M'M``,
  ``G = M_G' M_G``), whose curvature at the mode is ``G``. The posterior then has
  the asymptotic covariance of the PML estimator (the sandwich) and is close to
  Gaussian, so NUTS mixes as well as for the continuous model. Measured (9 items,
  N = 2,500): with PyMC's adapted diagonal mass matrix 768 s of sampling (the
  adjustment correlates the parameters; ~30 leapfrog steps per draw), min ESS 1,579;
  with the Godambe covariance ``G^-1`` as a dense starting mass matrix (what ``fit``
  does) 81 s, min ESS 2,779, R-hat 1.005. With 12 items (66 pairs) on a loaded machine
  the benchmark took 654 s: the 60 s target is missed (benchmarks/RESULTS.md). At
  N = 250 with 66 parameters the variability matrix ``J`` is poorly estimated and the
  sampler slows down badly; use the continuous likelihood there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxlib.models.base import ModelSpecificationError, maximize_logp

__all__ = ["OrdinalData", "prepare_ordinal", "bivariate_normal_cdf", "add_ordinal_likelihood"]

_BIG = 10.0
_GL_X, _GL_W = np.polynomial.legendre.leggauss(12)


class OrdinalData:
    """Categories, pair tables and per-respondent answers of ordinal items.

    Parameters
    ----------
    y : numpy.ndarray
        ``(N, p)`` answers on the data's scale (NaN for missing).
    weights : numpy.ndarray
        ``(N,)`` weights summing to N.
    items : list of str
    """

    def __init__(self, y: np.ndarray, weights: np.ndarray, items: list[str]):
        self.items = list(items)
        n, p = y.shape
        self.levels: list[np.ndarray] = []
        codes = np.full((n, p), -1, dtype=np.int64)
        for j in range(p):
            obs = ~np.isnan(y[:, j])
            levels = np.unique(y[obs, j])
            if levels.size < 2:
                raise ModelSpecificationError(
                    f"item {items[j]!r} has fewer than two distinct answers; an ordinal item "
                    "needs at least two categories"
                )
            if levels.size > 15:
                raise ModelSpecificationError(
                    f"item {items[j]!r} has {levels.size} distinct answers; the ordinal "
                    "likelihood is for rating scales (up to 15 categories)"
                )
            self.levels.append(levels)
            codes[obs, j] = np.searchsorted(levels, y[obs, j])
        self.codes = codes
        self.weights = weights
        self.n_cat = np.array([lv.size for lv in self.levels])
        pairs = [(j, k) for j in range(p) for k in range(j + 1, p)]
        self.pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        # cell tables
        cell_pair, cell_a, cell_b, counts = [], [], [], []
        self.cell_offset = np.zeros(len(pairs) + 1, dtype=np.int64)
        for q, (j, k) in enumerate(pairs):
            both = (codes[:, j] >= 0) & (codes[:, k] >= 0)
            Kj, Kk = self.n_cat[j], self.n_cat[k]
            table = np.bincount(
                codes[both, j] * Kk + codes[both, k], weights=weights[both], minlength=Kj * Kk
            )
            a, b = np.divmod(np.arange(Kj * Kk), Kk)
            cell_pair.append(np.full(Kj * Kk, q))
            cell_a.append(a)
            cell_b.append(b)
            counts.append(table)
            self.cell_offset[q + 1] = self.cell_offset[q] + Kj * Kk
        self.cell_pair = np.concatenate(cell_pair)
        self.cell_a = np.concatenate(cell_a)
        self.cell_b = np.concatenate(cell_b)
        self.counts = np.concatenate(counts)

    @property
    def n_cells(self) -> int:
        """Cells over all pair tables."""
        return int(self.counts.size)

    def start_thresholds(self) -> list[np.ndarray]:
        """Thresholds from the marginal proportions (probit of cumulative shares)."""
        from scipy.stats import norm

        out = []
        for j in range(len(self.items)):
            obs = self.codes[:, j] >= 0
            share = np.bincount(
                self.codes[obs, j], weights=self.weights[obs], minlength=self.n_cat[j]
            )
            cum = np.cumsum(share)[:-1] / share.sum()
            cum = np.clip(cum, 1e-3, 1 - 1e-3)
            t = norm.ppf(cum)
            t = np.maximum.accumulate(t + np.arange(t.size) * 1e-3)
            out.append(t)
        return out

    def respondent_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Unique answer patterns ``(U, p)`` codes and their summed squared weights.

        J (the variability matrix) sums squared weights times score outer products; the
        score depends only on the answer pattern, so patterns are aggregated.
        """
        uniq, inv = np.unique(self.codes, axis=0, return_inverse=True)
        w2 = np.bincount(inv.ravel(), weights=self.weights**2, minlength=uniq.shape[0])
        return uniq, w2


def prepare_ordinal(y: np.ndarray, weights: np.ndarray, items: list[str]) -> OrdinalData:
    """Build the pair tables of ordinal items (see :class:`OrdinalData`)."""
    return OrdinalData(y, weights, items)


def bivariate_normal_cdf(pt, h, k, rho):
    """``P(X <= h, Y <= k)`` for standard bivariate normals with correlation ``rho``.

    ``Phi(h) Phi(k) + int_0^rho phi2(h, k; r) dr`` by 12-point Gauss-Legendre
    quadrature; differentiable in ``h``, ``k`` and ``rho``.
    """

    def std_cdf(x):
        return 0.5 * (1.0 + pt.erf(x / np.sqrt(2.0)))

    x = _GL_X[:, None]
    w = _GL_W[:, None]
    r = rho[None, :] * (x + 1.0) / 2.0
    one_minus = 1.0 - r**2
    expo = -(h[None, :] ** 2 - 2.0 * r * h[None, :] * k[None, :] + k[None, :] ** 2) / (
        2.0 * one_minus
    )
    dens = pt.exp(expo) / (2.0 * np.pi * pt.sqrt(one_minus))
    integral = pt.sum(w * dens, axis=0) * rho / 2.0
    return std_cdf(h) * std_cdf(k) + integral


def _cell_log_probs(pt, od: OrdinalData, thresholds_ext, corr):
    """Log pi of every cell of every pair table.

    ``thresholds_ext`` is a flat vector holding, per item, ``[-BIG, tau_1 .. tau_K-1, BIG]``
    at offsets ``od.ext_offset``.
    """
    j = od.pairs[od.cell_pair, 0]
    k = od.pairs[od.cell_pair, 1]
    oj = od.ext_offset[j]
    ok = od.ext_offset[k]
    a, b = od.cell_a, od.cell_b
    rho = corr[j, k]
    hi_h = thresholds_ext[oj + a + 1]
    lo_h = thresholds_ext[oj + a]
    hi_k = thresholds_ext[ok + b + 1]
    lo_k = thresholds_ext[ok + b]
    h = pt.concatenate([hi_h, lo_h, hi_h, lo_h])
    kk = pt.concatenate([hi_k, hi_k, lo_k, lo_k])
    rr = pt.concatenate([rho, rho, rho, rho])
    F = bivariate_normal_cdf(pt, h, kk, rr).reshape((4, -1))
    prob = F[0] - F[1] - F[2] + F[3]
    return pt.log(pt.maximum(prob, 1e-300))


def add_ordinal_likelihood(sem, model, data, ordinal_items, Lambda_g, B_g, Psi, Theta_y, initvals):
    """Add thresholds and the (curvature-adjusted) pairwise likelihood to ``model``.

    Called by :meth:`BayesianSEM.build_model` inside the model context. The item
    residual variances are ``1 - communality`` (not free); residual covariances
    declared with ``~~`` are residual correlations times the residual SDs.

    Returns
    -------
    cl : tensor
        The unadjusted composite log-likelihood (the adjustment is added by ``fit``).
    theta : tensor
        Residual covariances of the latent responses.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from cxlib.models.sem import _depth
    from cxlib.models.sem_likelihood import nilpotent_inverse

    st = sem.structure
    od: OrdinalData = sem._ordinal_data
    p = st.n_items
    # thresholds, one ordered RV per number of categories
    ext_parts = []
    offsets = np.zeros(p + 1, dtype=np.int64)
    for j in range(p):
        offsets[j + 1] = offsets[j] + od.n_cat[j] + 1
    od.ext_offset = offsets[:-1]
    starts = od.start_thresholds()
    per_item: list = [None] * p
    spec = dict(sem.model_config["threshold"])
    for K in sorted(set(od.n_cat.tolist())):
        idx = [j for j in range(p) if od.n_cat[j] == K]
        name = "threshold" if len(set(od.n_cat.tolist())) == 1 else f"threshold_{K}"
        dims_item = f"{name}_item"
        model.add_coord(dims_item, [st.items[j] for j in idx])
        model.add_coord(f"{name}_cut", [f"t{i + 1}" for i in range(K - 1)])
        init = np.stack([starts[j] for j in idx])
        from pymc.distributions.transforms import ordered

        rv = pm.Normal(
            name,
            mu=spec.get("mu", 0.0),
            sigma=spec.get("sigma", 2.0),
            dims=(dims_item, f"{name}_cut"),
            transform=ordered,
            initval=init,
        )
        initvals[name] = init
        for r, j in enumerate(idx):
            per_item[j] = rv[r]
    for j in range(p):
        ext_parts.append(pt.concatenate([[-_BIG], per_item[j], [_BIG]]))
    thresholds_ext = pt.concatenate(ext_parts)
    max_cut = int(od.n_cat.max()) - 1
    th = pt.full((p, max_cut), np.nan)
    for j in range(p):
        th = pt.set_subtensor(th[j, : od.n_cat[j] - 1], per_item[j])
    model.add_coord("cut", [f"t{i + 1}" for i in range(max_cut)])
    pm.Deterministic("thresholds", th, dims=("item", "cut"))

    # implied latent-response correlation (delta parametrization)
    Lam = Lambda_g[0]
    inv = nilpotent_inverse(B_g[0], _depth(st))
    cov_eta = inv @ Psi @ inv.T
    common = Lam @ cov_eta @ Lam.T
    resid = 1.0 - pt.diagonal(common)
    # Theta_y holds 0 on the diagonal (no free item variances) and residual correlations
    # off the diagonal; scale them by the residual SDs
    rsd = pt.sqrt(pt.maximum(resid, 1e-12))
    off = Theta_y - pt.diag(pt.diagonal(Theta_y))
    theta = off * pt.outer(rsd, rsd) + pt.diag(resid)
    corr = common + theta - pt.diag(pt.diagonal(common + theta)) + pt.eye(p)
    feasible = pt.all(resid > 1e-6)
    logp_cells = _cell_log_probs(pt, od, thresholds_ext, corr)
    cl = pt.sum(od.counts * logp_cells)
    cl = pt.switch(feasible, cl, -np.inf)
    sem._ordinal_graph = {"cl": cl, "logp_cells": logp_cells, "theta": theta}
    return cl, theta


def curvature_adjustment(sem, model, cl, logp_cells, initvals):
    """Estimate ``theta_hat``, ``H`` and ``J`` and return ``(theta_hat, C)`` (unconstrained).

    Parameters
    ----------
    sem : BayesianSEM
    model : pymc.Model
        The model with the unadjusted composite likelihood graph ``cl``.
    cl, logp_cells : tensor
        Composite log-likelihood and per-cell log-probabilities (in terms of RVs).
    initvals : dict
        Starting values (constrained) by RV name.

    Returns
    -------
    theta_hat : numpy.ndarray
    C : numpy.ndarray
    info : dict
        ``H``, ``J``, ``value_vars`` and the optimizer's message.
    """
    import pytensor
    import pytensor.tensor as pt
    from pymc.blocking import DictToArrayBijection

    od: OrdinalData = sem._ordinal_data
    value_vars = model.value_vars
    cl_v, cells_v = model.replace_rvs_by_values([cl, logp_cells])
    x = pt.vector("x")
    pieces, start = {}, 0
    ip = model.initial_point()
    for v in value_vars:
        size = int(np.prod(ip[v.name].shape)) if ip[v.name].shape else 1
        pieces[v] = x[start : start + size].reshape(ip[v.name].shape)
        start += size
    cl_x, cells_x = pytensor.clone_replace([cl_v, cells_v], replace=pieces)
    f = pytensor.function([x], [cl_x, pytensor.grad(cl_x, x), cells_x])
    x0 = DictToArrayBijection.map({v.name: ip[v.name] for v in value_vars}).data

    if not np.isfinite(f(x0)[0]):
        raise ModelSpecificationError(
            "the starting values of the ordinal model imply item communalities above 1; "
            "give smaller start() values for the loadings"
        )
    # objective per pair answer: gradients of order 1
    res = maximize_logp(lambda z: f(z)[:2], x0, scale=float(od.counts.sum()))
    theta_hat = res.x
    # curvature and per-cell score Jacobian by central differences of the exact
    # gradient and cell log-probabilities (2 d evaluations; no symbolic Hessian to compile)
    d = theta_hat.size
    eps = 1e-5
    H = np.zeros((d, d))
    Gc = np.zeros((od.n_cells, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = eps
        _, g_plus, c_plus = f(theta_hat + e)
        _, g_minus, c_minus = f(theta_hat - e)
        H[:, i] = -(g_plus - g_minus) / (2 * eps)
        Gc[:, i] = (c_plus - c_minus) / (2 * eps)
    # per-pattern scores: sum over answered pairs of the cell gradient
    uniq, w2 = od.respondent_cells()
    J = np.zeros((d, d))
    Kk = od.n_cat[od.pairs[:, 1]]
    for lo in range(0, uniq.shape[0], 20000):
        block = uniq[lo : lo + 20000]
        score = np.zeros((block.shape[0], d))
        for q, (j, k) in enumerate(od.pairs):
            both = (block[:, j] >= 0) & (block[:, k] >= 0)
            cell = od.cell_offset[q] + block[both, j] * Kk[q] + block[both, k]
            score[both] += Gc[cell]
        J += (score * w2[lo : lo + 20000, None]).T @ score
    H = (H + H.T) / 2
    # guard: H must be positive definite at the maximum
    evals = np.linalg.eigvalsh(H)
    if evals.min() <= 0:
        raise ModelSpecificationError(
            "the pairwise likelihood has no clear maximum (its curvature is not positive "
            f"definite; optimizer: {res.message}); the ordinal model may not be identified "
            "by these data"
        )
    G = H @ np.linalg.solve(J, H)
    M = np.linalg.cholesky(H).T
    MG = np.linalg.cholesky((G + G.T) / 2).T
    C = np.linalg.solve(M, MG)
    return (
        theta_hat,
        C,
        {
            "H": H,
            "J": J,
            "G": G,
            "value_vars": [v.name for v in value_vars],
            "message": str(res.message),
            "converged": bool(res.success),
        },
    )


def adjusted_potential(model, cl, theta_hat: np.ndarray, C: np.ndarray):
    """The composite log-likelihood evaluated at ``theta_hat + C (theta - theta_hat)``."""
    import pytensor
    import pytensor.tensor as pt

    value_vars = model.value_vars
    (cl_v,) = model.replace_rvs_by_values([cl])
    flat = pt.concatenate([v.ravel() for v in value_vars]) if value_vars else pt.zeros(0)
    star = theta_hat + pt.dot(C, flat - theta_hat)
    ip = model.initial_point()
    pieces, start = {}, 0
    for v in value_vars:
        shape = ip[v.name].shape
        size = int(np.prod(shape)) if shape else 1
        pieces[v] = star[start : start + size].reshape(shape) if shape else star[start]
        start += size
    return pytensor.clone_replace(cl_v, replace=pieces)


def ordinal_pair_frame(od: OrdinalData) -> pd.DataFrame:
    """The pair tables as a tidy frame (for inspection)."""
    return pd.DataFrame(
        {
            "item": [od.items[od.pairs[q, 0]] for q in od.cell_pair],
            "item_": [od.items[od.pairs[q, 1]] for q in od.cell_pair],
            "a": od.cell_a,
            "b": od.cell_b,
            "count": od.counts,
        }
    )
