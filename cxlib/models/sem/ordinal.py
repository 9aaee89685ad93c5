"""The ordinal likelihood: Likert items as ordered categories, by pairwise likelihood.

Each item answers a category when its latent response falls between two thresholds;
the latent responses are multivariate normal with the model-implied correlations
(lavaan's "delta" parametrization). :class:`PairwiseOrdinalLikelihood` sums the
log-probabilities of all bivariate item tables (cost independent of the number of
respondents) and applies the curvature adjustment of Ribatet, Cooley & Davison (2012),
so that the posterior has the sandwich covariance. The formulations measured, and why
this one, are in ``docs/design/ordinal-sem.md``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from scipy.special import ndtr

from cxlib.errors import ModelSpecificationError
from cxlib.models.sampling import maximize_logp
from cxlib.models.sem.graph import SEMGraph

__all__ = [
    "OrdinalContinuousLogLik",
    "OrdinalData",
    "PairData",
    "PairwiseLogLik",
    "PairwiseOrdinalLikelihood",
    "add_pairwise_likelihood",
    "adjusted_potential",
    "bivariate_normal_cdf",
    "bivariate_normal_cdf_grad",
    "curvature_adjustment",
    "ordinal_pair_frame",
    "prepare_ordinal",
    "prepare_pairs",
    "shrink_variability",
]

_GL = {n: np.polynomial.legendre.leggauss(n) for n in (6, 12, 20)}
_TWO_PI = 2.0 * np.pi
_INV_SQRT_2PI = 1.0 / np.sqrt(_TWO_PI)
_PROB_FLOOR = 1e-300


class _LastResult:
    """A function's last evaluation, kept: the same arguments again cost nothing.

    PyTensor's rewrites can leave several copies of an Op node on the same inputs in
    one compiled gradient; with this, they cost one evaluation. Arrays come back as
    copies (callers may write into them).
    """

    def __init__(self, compute):
        self.compute = compute
        self.args: tuple | None = None
        self.out: tuple = ()

    def __call__(self, *args):
        if self.args is None or not all(
            np.array_equal(a, b) for a, b in zip(self.args, args, strict=True)
        ):
            self.out = self.compute(*args)
            self.args = tuple(np.array(a, copy=True) for a in args)
        return tuple(x.copy() if isinstance(x, np.ndarray) else x for x in self.out)


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
            values = y[obs, j]
            whole = np.round(values)
            off = np.abs(values - whole) > 1e-6 * np.maximum(1.0, np.abs(values))
            if off.any():
                raise ModelSpecificationError(
                    f"item {items[j]!r} is listed as ordinal but has answers that are not "
                    f"whole numbers (e.g. {values[off][0]:g}); ordinal items must be coded as "
                    "categories 1, 2, 3, ...; leave it out of ordinal= to treat it as continuous"
                )
            levels = np.unique(whole)
            if levels.size < 2:
                raise ModelSpecificationError(
                    f"item {items[j]!r} has fewer than two distinct answers; an ordinal item "
                    "needs at least two categories"
                )
            if levels.size > 15:
                raise ModelSpecificationError(
                    f"item {items[j]!r} has {levels.size} distinct answers; the ordinal "
                    "likelihood is for rating scales (up to 15 categories); leave it out of "
                    "ordinal= to treat it as continuous"
                )
            self.levels.append(levels)
            codes[obs, j] = np.searchsorted(levels, whole)
        self.codes = codes
        self.weights = weights
        self._last = _LastResult(self._loglik_and_grad)
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
        self.cell_pair = np.concatenate(cell_pair) if pairs else np.zeros(0, np.int64)
        self.cell_a = np.concatenate(cell_a) if pairs else np.zeros(0, np.int64)
        self.cell_b = np.concatenate(cell_b) if pairs else np.zeros(0, np.int64)
        self.counts = np.concatenate(counts) if pairs else np.zeros(0)
        self._build_grid()

    def _build_grid(self) -> None:
        """Index arrays mapping thresholds and correlations to the cells' corners.

        The rectangle probability of cell ``(a, b)`` of pair ``(j, k)`` is
        ``F(a, b) - F(a-1, b) - F(a, b-1) + F(a-1, b-1)`` with ``F(a, b) =
        Phi2(tau_j,a, tau_k,b; rho_jk)``. Corners at ``-inf`` are 0, at ``(+inf, +inf)``
        1, on one ``+inf`` edge a univariate ``Phi``; only the interior grid points
        (``(K_j - 1) (K_k - 1)`` per pair) need the bivariate CDF. All corner values
        sit in one vector ``V = [0, 1, Phi(tau), Phi2(grid)]``; each cell holds the
        positions of its four corners in ``V``.
        """
        n_cut = self.n_cat - 1
        self.tau_offset = np.concatenate([[0], np.cumsum(n_cut)]).astype(np.int64)
        self.n_tau = int(self.tau_offset[-1])
        # consecutive thresholds of the same item (must increase)
        lower = np.concatenate(
            [self.tau_offset[j] + np.arange(n_cut[j] - 1) for j in range(len(n_cut))]
        ).astype(np.int64)
        self.tau_step = (lower, lower + 1)
        grid_h, grid_k, grid_pair = [], [], []
        grid_offset = np.zeros(len(self.pairs) + 1, dtype=np.int64)
        for q, (j, k) in enumerate(self.pairs):
            a, b = np.divmod(np.arange(n_cut[j] * n_cut[k]), n_cut[k])
            grid_h.append(self.tau_offset[j] + a)
            grid_k.append(self.tau_offset[k] + b)
            grid_pair.append(np.full(a.size, q))
            grid_offset[q + 1] = grid_offset[q] + a.size
        empty = np.zeros(0, np.int64)
        self.grid_h = np.concatenate(grid_h) if grid_h else empty
        self.grid_k = np.concatenate(grid_k) if grid_k else empty
        self.grid_pair = np.concatenate(grid_pair) if grid_pair else empty
        base_phi, base_grid = 2, 2 + self.n_tau

        j = self.pairs[self.cell_pair, 0] if self.cell_pair.size else empty
        k = self.pairs[self.cell_pair, 1] if self.cell_pair.size else empty
        top_j, top_k = n_cut[j], n_cut[k]  # index K - 1 stands for +inf

        def slot(ia, ib):
            out = base_grid + grid_offset[self.cell_pair] + ia * n_cut[k] + ib
            out = np.where(ib == top_k, base_phi + self.tau_offset[j] + ia, out)
            out = np.where(ia == top_j, base_phi + self.tau_offset[k] + ib, out)
            out = np.where((ia == top_j) & (ib == top_k), 1, out)
            return np.where((ia < 0) | (ib < 0), 0, out)

        a, b = self.cell_a, self.cell_b
        self.corners = np.stack([slot(a, b), slot(a - 1, b), slot(a, b - 1), slot(a - 1, b - 1)])
        self.corner_sign = np.array([1.0, -1.0, -1.0, 1.0])
        self.n_slots = base_grid + int(grid_offset[-1])
        # the cells a respondent answered, per pair, for the score vectors
        self.pairs_j = self.pairs[:, 0] if self.pairs.size else empty
        self.pairs_k = self.pairs[:, 1] if self.pairs.size else empty

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

    def respondent_cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unique answer patterns ``(U, p)`` codes, their summed squared and 4th-power weights.

        J (the variability matrix) sums squared weights times score outer products; the
        score depends only on the answer pattern, so patterns are aggregated.
        """
        uniq, inv = np.unique(self.codes, axis=0, return_inverse=True)
        inv = inv.ravel()
        w2 = np.bincount(inv, weights=self.weights**2, minlength=uniq.shape[0])
        w4 = np.bincount(inv, weights=self.weights**4, minlength=uniq.shape[0])
        return uniq, w2, w4

    # ------------------------------------------------------------ likelihood in NumPy
    def _check(self, tau: np.ndarray, corr: np.ndarray):
        """Pair correlations, or None when the point is outside the model's support."""
        rho = corr[self.pairs_j, self.pairs_k]
        if not (np.all(np.isfinite(tau)) and np.all(np.isfinite(rho))):
            return None
        if np.any(np.abs(rho) >= 1.0):
            return None
        if np.any(tau[self.tau_step[1]] <= tau[self.tau_step[0]]):
            return None
        return rho

    def cell_probabilities(self, tau: np.ndarray, corr: np.ndarray):
        """Rectangle probabilities of all cells and the corner values ``V``.

        Returns ``(prob, V, rho)``, or ``None`` outside the support (``|rho| >= 1``,
        unordered thresholds, non-finite input).
        """
        rho = self._check(tau, corr)
        if rho is None:
            return None
        F = _bvn_upper(-tau[self.grid_h], -tau[self.grid_k], rho, self.grid_pair)
        V = np.concatenate([[0.0, 1.0], ndtr(tau), F])
        c = self.corners
        prob = V[c[0]] - V[c[1]] - V[c[2]] + V[c[3]]
        return prob, V, rho

    def cell_log_probs(self, tau: np.ndarray, corr: np.ndarray) -> np.ndarray:
        """``log pi`` of every cell (``-inf`` everywhere outside the support)."""
        res = self.cell_probabilities(tau, corr)
        if res is None:
            return np.full(self.n_cells, -np.inf)
        return np.log(np.maximum(res[0], _PROB_FLOOR))

    def loglik_and_grad(self, tau: np.ndarray, corr: np.ndarray):
        """Composite log-likelihood and its gradient w.r.t. thresholds and ``corr``.

        The gradient uses the closed forms ``dPhi2/dh = phi(h) Phi((k - rho h) / s)``,
        ``dPhi2/dk = phi(k) Phi((h - rho k) / s)`` and ``dPhi2/drho = phi2(h, k; rho)``
        (``s = sqrt(1 - rho^2)``); ``d corr`` is nonzero in the upper triangle only (the
        pair correlations are read from there). The last result is kept: PyTensor's
        rewrites can leave several copies of the Op node on the same inputs in one
        compiled gradient, and these then cost one evaluation (:class:`_LastResult`).
        """
        return self._last(tau, corr)

    def _loglik_and_grad(self, tau: np.ndarray, corr: np.ndarray):
        p = len(self.items)
        res = self.cell_probabilities(tau, corr)
        if res is None:
            return -np.inf, np.zeros(self.n_tau), np.zeros((p, p))
        prob, _, rho = res
        ok = prob > _PROB_FLOOR
        value = float(self.counts @ np.log(np.maximum(prob, _PROB_FLOOR)))
        g_prob = np.where(ok, self.counts / np.where(ok, prob, 1.0), 0.0)
        g_V = np.bincount(
            self.corners.ravel(),
            weights=(self.corner_sign[:, None] * g_prob).ravel(),
            minlength=self.n_slots,
        )
        base_grid = 2 + self.n_tau
        g_tau = g_V[2:base_grid] * _INV_SQRT_2PI * np.exp(-0.5 * tau * tau)
        g_F = g_V[base_grid:]
        h, k = tau[self.grid_h], tau[self.grid_k]
        dh, dk, dr = _bvn_partials(h, k, rho[self.grid_pair])
        g_tau = (
            g_tau
            + np.bincount(self.grid_h, weights=g_F * dh, minlength=self.n_tau)
            + np.bincount(self.grid_k, weights=g_F * dk, minlength=self.n_tau)
        )
        g_rho = np.bincount(self.grid_pair, weights=g_F * dr, minlength=len(self.pairs))
        g_corr = np.zeros((p, p))
        g_corr[self.pairs_j, self.pairs_k] = g_rho
        return value, g_tau, g_corr


def prepare_ordinal(y: np.ndarray, weights: np.ndarray, items: list[str]) -> OrdinalData:
    """Build the pair tables of ordinal items (see :class:`OrdinalData`)."""
    return OrdinalData(y, weights, items)


class PairData:
    """Pair statistics of a mix of ordinal and continuous items (see the module docstring).

    Three kinds of item pairs enter the composite likelihood:

    * ordinal x ordinal: the bivariate tables of :class:`OrdinalData` (``od``);
    * continuous x continuous: the bivariate normal log-density, which is linear in the
      pair's weighted sufficient statistics ``(sum w, sum w z_j, sum w z_k, sum w z_j^2,
      sum w z_j z_k, sum w z_k^2)`` (respondents answering both, standardized scale):
      ``sum_i w_i log N2(z_i) = coef(theta) . stats`` with six coefficients per pair;
    * ordinal x continuous: ``log p(z_c) + log P(y_o | z_c)``, the answer's latent
      response given ``z_c`` being normal with the conditional mean and variance of the
      implied bivariate covariance. Respondents are aggregated into the distinct
      (category, value) entries of the pair with summed weights: a Likert-like
      continuous item costs ``K_o x V_c`` entries per pair, a truly continuous one
      ``O(number of distinct values)``, up to ``K_o x N``.

    The composite log-likelihood is therefore ``counts . units(theta)`` where
    ``units`` concatenates the ordinal cells' log-probabilities, the (category, value)
    entries' log-densities and the continuous pairs' coefficients, and ``counts`` the
    matching weighted counts and sufficient statistics. A respondent's score is the sum
    over the pairs they answered of the gradient of their unit (for a continuous pair,
    their features ``(1, z_j, z_k, z_j^2, z_j z_k, z_k^2)`` times the coefficients'
    gradient): that is what the variability matrix ``J`` of the curvature adjustment
    needs (:meth:`pattern_scores`).

    Parameters
    ----------
    y : numpy.ndarray
        ``(N, p)`` answers on the data's scale (NaN for missing).
    weights : numpy.ndarray
        ``(N,)`` weights summing to N.
    items : list of str
        All items of the model, in order.
    ordinal_items : list of str
        The items treated as ordered categories (at least one).
    center, scale : numpy.ndarray
        ``(p,)`` standardization of the items (continuous items enter as ``z``).
    """

    def __init__(
        self,
        y: np.ndarray,
        weights: np.ndarray,
        items: list[str],
        ordinal_items: list[str],
        center: np.ndarray,
        scale: np.ndarray,
    ):
        self.items = list(items)
        n, p = y.shape
        ordinal = set(ordinal_items)
        self.ord_idx = np.array([j for j, it in enumerate(items) if it in ordinal], np.int64)
        self.cont_idx = np.array([j for j, it in enumerate(items) if it not in ordinal], np.int64)
        self.is_ordinal = np.isin(np.arange(p), self.ord_idx)
        self.weights = weights
        self.n = n
        self.od = OrdinalData(y[:, self.ord_idx], weights, [items[j] for j in self.ord_idx])
        # continuous items: standardized values coded by their distinct values
        self.levels: dict[int, np.ndarray] = {}
        codes = np.full((n, p), -1, dtype=np.int64)
        codes[:, self.ord_idx] = self.od.codes
        for j in self.cont_idx:
            obs = ~np.isnan(y[:, j])
            z = (y[obs, j] - center[j]) / scale[j]
            levels, inv = np.unique(z, return_inverse=True)
            self.levels[int(j)] = levels
            codes[obs, j] = inv.ravel()
        self.codes = codes
        # ordinal x continuous pairs: distinct (category, value) entries with weights
        local = {int(j): i for i, j in enumerate(self.ord_idx)}
        oc = [(int(o), int(c)) for o in self.ord_idx for c in self.cont_idx]
        self.oc_pairs = np.array(oc, dtype=np.int64).reshape(-1, 2)
        self.oc_local = np.array([local[o] for o, _ in oc], dtype=np.int64)
        self._oc_keys: list[np.ndarray] = []
        e_pair, e_a, e_z, e_count = [], [], [], []
        self.entry_offset = np.zeros(len(oc) + 1, dtype=np.int64)
        for r, (o, c) in enumerate(oc):
            both = (codes[:, o] >= 0) & (codes[:, c] >= 0)
            V = self.levels[c].size
            key = codes[both, o] * V + codes[both, c]
            ukey, inv = np.unique(key, return_inverse=True)
            self._oc_keys.append(ukey)
            e_pair.append(np.full(ukey.size, r))
            e_a.append(ukey // V)
            e_z.append(self.levels[c][ukey % V])
            e_count.append(np.bincount(inv.ravel(), weights=weights[both], minlength=ukey.size))
            self.entry_offset[r + 1] = self.entry_offset[r] + ukey.size

        def cat(parts, dtype):
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        self.entry_pair = cat(e_pair, np.int64)
        self.entry_a = cat(e_a, np.int64)
        self.entry_z = cat(e_z, float)
        self.entry_count = cat(e_count, float)
        # each entry's thresholds in the concatenated tau, with n_tau standing for +inf
        # and n_tau + 1 for -inf
        loc = self.oc_local[self.entry_pair] if self.entry_pair.size else self.entry_pair
        first = self.od.tau_offset[loc] if loc.size else loc
        top = self.entry_a == self.od.n_cat[loc] - 1 if loc.size else loc.astype(bool)
        self._entry_hi = np.where(top, self.od.n_tau, first + self.entry_a).astype(np.int64)
        self._entry_lo = np.where(
            self.entry_a == 0, self.od.n_tau + 1, first + self.entry_a - 1
        ).astype(np.int64)
        self._oc_last = _LastResult(self._oc_loglik_and_grad)
        # continuous x continuous pairs: weighted sufficient statistics
        cc = [(int(j), int(k)) for a, j in enumerate(self.cont_idx) for k in self.cont_idx[a + 1 :]]
        self.cc_pairs = np.array(cc, dtype=np.int64).reshape(-1, 2)
        stats = np.zeros((len(cc), 6))
        for q, (j, k) in enumerate(cc):
            both = (codes[:, j] >= 0) & (codes[:, k] >= 0)
            feats = self._features(codes[both], j, k)
            stats[q] = weights[both] @ feats
        self.cc_stats = stats

    # ------------------------------------------------ ordinal x continuous in NumPy
    def _oc_terms(self, tau, s_oc, s_cc, mu_c):
        """Per-entry pieces of ``log p(z_c) + log P(y_o | z_c)``, or None outside the support."""
        if not (
            np.all(np.isfinite(tau))
            and np.all(np.isfinite(s_oc))
            and np.all(np.isfinite(mu_c))
            and np.all(s_cc > 1e-8)
        ):
            return None
        beta = s_oc / s_cc
        var = 1.0 - s_oc * beta
        if np.any(var <= 1e-8):
            return None
        sd = np.sqrt(var)
        e = self.entry_pair
        dev = self.entry_z - mu_c[e]
        m = beta[e] * dev
        sd_e = sd[e]
        tau_ext = np.concatenate([tau, [np.inf, -np.inf]])
        u = (tau_ext[self._entry_hi] - m) / sd_e
        low = (tau_ext[self._entry_lo] - m) / sd_e
        # P = Phi(u) - Phi(l), from the upper tails when both are positive (no cancellation)
        upper_side = low > 0
        prob = np.where(upper_side, ndtr(-low) - ndtr(-u), ndtr(u) - ndtr(low))
        log_marg = -0.5 * (np.log(_TWO_PI) + np.log(s_cc[e]) + dev * dev / s_cc[e])
        return beta, sd, e, dev, sd_e, u, low, prob, log_marg

    def oc_entry_logp(self, tau, s_oc, s_cc, mu_c) -> np.ndarray:
        """Log-density of every (category, value) entry (``-inf`` outside the support)."""
        res = self._oc_terms(tau, s_oc, s_cc, mu_c)
        if res is None:
            return np.full(self.n_entries, -np.inf)
        prob, log_marg = res[7], res[8]
        return log_marg + np.log(np.maximum(prob, _PROB_FLOOR))

    def oc_loglik_and_grad(self, tau, s_oc, s_cc, mu_c):
        """Weighted sum of the entries' log-densities and its gradient (closed form).

        With ``u, l`` the standardized bounds of the answer given ``z_c``, ``d log P/du =
        phi(u) / P`` and ``d log P/dl = -phi(l) / P``, chained through the conditional
        mean ``beta (z - mu_c)`` and SD ``sqrt(1 - s_oc beta)``, ``beta = s_oc / s_cc``.
        Returns ``(value, d/dtau, d/ds_oc, d/ds_cc, d/dmu_c)``; the last result is kept.
        """
        return self._oc_last(tau, s_oc, s_cc, mu_c)

    def _oc_loglik_and_grad(self, tau, s_oc, s_cc, mu_c):
        n_pairs = len(self.oc_pairs)
        res = self._oc_terms(tau, s_oc, s_cc, mu_c)
        if res is None:
            zero = np.zeros(n_pairs)
            return -np.inf, np.zeros(tau.size), zero, zero.copy(), zero.copy()
        beta, sd, e, dev, sd_e, u, low, prob, log_marg = res
        ok = prob > _PROB_FLOOR
        n = self.entry_count
        value = float(n @ (log_marg + np.log(np.maximum(prob, _PROB_FLOOR))))
        w = np.where(ok, n / np.where(ok, prob, 1.0), 0.0)
        fin_u, fin_l = np.isfinite(u), np.isfinite(low)
        uf, lf = np.where(fin_u, u, 0.0), np.where(fin_l, low, 0.0)
        phi_u = np.where(fin_u, _INV_SQRT_2PI * np.exp(-0.5 * uf * uf), 0.0)
        phi_l = np.where(fin_l, _INV_SQRT_2PI * np.exp(-0.5 * lf * lf), 0.0)
        # d(n log P)/d(bound value tau) and d/dm, d/dsd
        g_hi = w * phi_u / sd_e
        g_lo = -w * phi_l / sd_e
        g_m = -(g_hi + g_lo)
        g_sd = -(w * (phi_u * uf - phi_l * lf)) / sd_e
        n_tau = tau.size
        g_tau = (
            np.bincount(self._entry_hi[fin_u], weights=g_hi[fin_u], minlength=n_tau + 2)[:n_tau]
            + np.bincount(self._entry_lo[fin_l], weights=g_lo[fin_l], minlength=n_tau + 2)[:n_tau]
        )
        # per pair: m = beta dev, sd = sqrt(1 - s_oc beta), log_marg(mu, s_cc)
        g_beta = np.bincount(e, weights=g_m * dev, minlength=n_pairs)
        g_sdp = np.bincount(e, weights=g_sd, minlength=n_pairs)
        g_mu = np.bincount(e, weights=-g_m * beta[e] + n * dev / s_cc[e], minlength=n_pairs)
        g_scc_marg = np.bincount(
            e, weights=n * (-0.5 / s_cc[e] + 0.5 * dev * dev / s_cc[e] ** 2), minlength=n_pairs
        )
        g_soc = g_beta / s_cc - g_sdp * beta / sd
        g_scc = -g_beta * beta / s_cc + g_sdp * beta * beta / (2.0 * sd) + g_scc_marg
        return value, g_tau, g_soc, g_scc, g_mu

    def _features(self, codes: np.ndarray, j: int, k: int) -> np.ndarray:
        """``(1, z_j, z_k, z_j^2, z_j z_k, z_k^2)`` of rows answering both ``j`` and ``k``."""
        zj = self.levels[j][codes[:, j]]
        zk = self.levels[k][codes[:, k]]
        return np.column_stack([np.ones(zj.size), zj, zk, zj * zj, zj * zk, zk * zk])

    @property
    def mixed(self) -> bool:
        """True when some items are continuous."""
        return self.cont_idx.size > 0

    @property
    def n_entries(self) -> int:
        """Distinct (category, value) entries over all ordinal x continuous pairs."""
        return int(self.entry_count.size)

    @property
    def n_units(self) -> int:
        """Length of the unit vector: cells, entries and 6 coefficients per continuous pair."""
        return self.od.n_cells + self.n_entries + 6 * len(self.cc_pairs)

    @property
    def unit_counts(self) -> np.ndarray:
        """Weighted counts (and sufficient statistics) matching the unit vector."""
        return np.concatenate([self.od.counts, self.entry_count, self.cc_stats.ravel()])

    @property
    def n_pair_answers(self) -> float:
        """Weighted number of answered item pairs (the scale of the composite likelihood)."""
        return float(self.od.counts.sum() + self.entry_count.sum() + self.cc_stats[:, 0].sum())

    def respondent_patterns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct answer patterns ``(U, p)`` (codes), their summed squared and 4th-power weights."""
        uniq, inv = np.unique(self.codes, axis=0, return_inverse=True)
        inv = inv.ravel()
        w2 = np.bincount(inv, weights=self.weights**2, minlength=uniq.shape[0])
        w4 = np.bincount(inv, weights=self.weights**4, minlength=uniq.shape[0])
        return uniq, w2, w4

    def pattern_scores(self, uniq: np.ndarray, jac: np.ndarray) -> np.ndarray:
        """Score vectors ``(U, d)`` of patterns from the units' Jacobian ``jac`` ``(n_units, d)``."""
        od = self.od
        score = np.zeros((uniq.shape[0], jac.shape[1]))
        ucodes = uniq[:, self.ord_idx]
        Kk = od.n_cat[od.pairs[:, 1]] if od.pairs.size else np.zeros(0, np.int64)
        for q, (j, k) in enumerate(od.pairs):
            both = (ucodes[:, j] >= 0) & (ucodes[:, k] >= 0)
            cell = od.cell_offset[q] + ucodes[both, j] * Kk[q] + ucodes[both, k]
            score[both] += jac[cell]
        base = od.n_cells
        for r, (o, c) in enumerate(self.oc_pairs):
            both = (uniq[:, o] >= 0) & (uniq[:, c] >= 0)
            key = uniq[both, o] * self.levels[int(c)].size + uniq[both, c]
            entry = self.entry_offset[r] + np.searchsorted(self._oc_keys[r], key)
            score[both] += jac[base + entry]
        base += self.n_entries
        for q, (j, k) in enumerate(self.cc_pairs):
            both = (uniq[:, j] >= 0) & (uniq[:, k] >= 0)
            score[both] += self._features(uniq[both], j, k) @ jac[base + 6 * q : base + 6 * q + 6]
        return score


def prepare_pairs(
    y: np.ndarray,
    weights: np.ndarray,
    items: list[str],
    ordinal_items: list[str],
    center: np.ndarray,
    scale: np.ndarray,
) -> PairData:
    """Build the pair statistics of ordinal (and continuous) items (see :class:`PairData`)."""
    return PairData(y, weights, items, ordinal_items, center, scale)


# ----------------------------------------------------------------------------- Phi2
def _bvn_upper(h: np.ndarray, k: np.ndarray, r_val: np.ndarray, r_idx: np.ndarray):
    """``P(X > h, Y > k)`` for finite ``h``, ``k`` and correlation ``r_val[r_idx]``.

    The method of Drezner & Wesolowsky (1989) as refined by Genz (2004, Statistics and
    Computing 14, 251-260): for ``|r| < 0.925`` Gauss-Legendre quadrature (6, 12 or 20
    nodes by ``|r|``) of ``int_0^asin(r) exp(-(h^2 + k^2 - 2 h k sin t) / (2 cos^2 t))
    dt / (2 pi)`` added to ``Phi(-h) Phi(-k)``; above, Genz's expansion around
    ``r = +-1`` with the singular part taken out analytically. Absolute error below
    ``1e-15``. The sines of the nodes depend on the correlation only, so they are
    computed once per distinct correlation (one per item pair).
    """
    out = np.empty(h.shape)
    abs_r = np.abs(r_val)
    n_nodes = np.where(abs_r < 0.3, 6, np.where(abs_r < 0.75, 12, 20))
    low_r = abs_r < 0.925
    point_low = low_r[r_idx]
    asin_r = np.arcsin(np.clip(r_val, -1.0, 1.0))
    for n in (6, 12, 20):
        sel_r = low_r & (n_nodes == n)
        if not sel_r.any():
            continue
        sel = np.flatnonzero(sel_r[r_idx])
        x, w = _GL[n]
        sn = np.sin(asin_r[:, None] * (1.0 + x) / 2.0)
        inv = 1.0 / (1.0 - sn * sn)
        hh, kk, ri = h[sel], k[sel], r_idx[sel]
        hk = (hh * kk)[:, None]
        hs = ((hh * hh + kk * kk) / 2.0)[:, None]
        integral = np.exp((sn[ri] * hk - hs) * inv[ri]) @ w
        out[sel] = integral * asin_r[ri] / (2.0 * _TWO_PI) + ndtr(-hh) * ndtr(-kk)
    if not point_low.all():
        sel = np.flatnonzero(~point_low)
        hh, rr = h[sel], r_val[r_idx[sel]]
        neg = rr < 0
        kk = np.where(neg, -k[sel], k[sel])
        hk = hh * kk
        one_r2 = np.maximum((1.0 - np.abs(rr)) * (1.0 + np.abs(rr)), 1e-300)
        a = np.sqrt(one_r2)
        bs = (hh - kk) ** 2
        c = (4.0 - hk) / 8.0
        d = (12.0 - hk) / 16.0
        x, w = _GL[20]
        with np.errstate(all="ignore"):
            asr = -(bs / one_r2 + hk) / 2.0
            bvn = np.where(
                asr > -100.0,
                a
                * np.exp(asr)
                * (1.0 - c * (bs - one_r2) * (1.0 - d * bs / 5.0) / 3.0 + c * d * one_r2**2 / 5.0),
                0.0,
            )
            b = np.sqrt(bs)
            tail = (
                np.exp(-hk / 2.0)
                * np.sqrt(_TWO_PI)
                * ndtr(-b / a)
                * b
                * (1.0 - c * bs * (1.0 - d * bs / 5.0) / 3.0)
            )
            bvn = bvn - np.where(hk > -100.0, tail, 0.0)
            a2 = a / 2.0
            xs = (a2[:, None] * (1.0 + x)) ** 2
            rs = np.sqrt(1.0 - xs)
            asr2 = -(bs[:, None] / xs + hk[:, None]) / 2.0
            ep = np.exp(-hk[:, None] * (1.0 - rs) / (2.0 * (1.0 + rs))) / rs
            sp = 1.0 + c[:, None] * xs * (1.0 + d[:, None] * xs)
            term = np.where(asr2 > -100.0, np.exp(asr2) * (ep - sp), 0.0)
        bvn = -(bvn + a2 * (term @ w)) / _TWO_PI
        out[sel] = np.where(
            neg,
            -bvn + np.maximum(0.0, ndtr(-hh) - ndtr(-kk)),
            bvn + ndtr(-np.maximum(hh, kk)),
        )
    return np.clip(out, 0.0, 1.0)


def _bvn_partials(h: np.ndarray, k: np.ndarray, rho: np.ndarray):
    """``(dPhi2/dh, dPhi2/dk, dPhi2/drho)`` at finite ``h``, ``k`` and ``|rho| < 1``."""
    s2 = (1.0 - rho) * (1.0 + rho)
    s = np.sqrt(s2)
    phi_h = _INV_SQRT_2PI * np.exp(-0.5 * h * h)
    phi_k = _INV_SQRT_2PI * np.exp(-0.5 * k * k)
    dh = phi_h * ndtr((k - rho * h) / s)
    dk = phi_k * ndtr((h - rho * k) / s)
    dr = np.exp(-(h * h - 2.0 * rho * h * k + k * k) / (2.0 * s2)) / (_TWO_PI * s)
    return dh, dk, dr


def bivariate_normal_cdf(h, k, rho) -> np.ndarray:
    """``Phi2(h, k; rho) = P(X <= h, Y <= k)`` for standard bivariate normals.

    Vectorized over broadcast arrays; ``h`` and ``k`` may be ``+-inf``. Absolute error
    below ``1e-15`` (Genz 2004; see :func:`_bvn_upper`).

    Parameters
    ----------
    h, k : array_like
        Upper limits.
    rho : array_like
        Correlations, ``-1 < rho < 1``.

    Returns
    -------
    numpy.ndarray
    """
    h, k, rho = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(h, k, rho))
    out = np.zeros(h.shape)
    fin = np.isfinite(h) & np.isfinite(k)
    if fin.any():
        r_val, r_idx = np.unique(rho[fin], return_inverse=True)
        out[fin] = _bvn_upper(-h[fin], -k[fin], r_val, r_idx.ravel())
    out = np.where(np.isposinf(h) & ~np.isnan(k), ndtr(k), out)
    out = np.where(np.isposinf(k) & ~np.isnan(h), ndtr(h), out)
    return out[()] if out.ndim == 0 else out


def bivariate_normal_cdf_grad(h, k, rho):
    """Partial derivatives of :func:`bivariate_normal_cdf`, in closed form.

    ``dPhi2/dh = phi(h) Phi((k - rho h) / s)``, ``dPhi2/dk = phi(k) Phi((h - rho k) / s)``
    and ``dPhi2/drho = phi2(h, k; rho)`` (Plackett's identity), ``s = sqrt(1 - rho^2)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(d/dh, d/dk, d/drho)``; at infinite limits the derivatives are those of the
        univariate margins.
    """
    h, k, rho = (np.asarray(v, dtype=float) for v in np.broadcast_arrays(h, k, rho))
    fin = np.isfinite(h) & np.isfinite(k)
    hf, kf = np.where(fin, h, 0.0), np.where(fin, k, 0.0)
    dh, dk, dr = _bvn_partials(hf, kf, rho)
    zero = np.zeros(h.shape)
    phi_h = _INV_SQRT_2PI * np.exp(-0.5 * np.where(np.isfinite(h), h, 0.0) ** 2)
    phi_k = _INV_SQRT_2PI * np.exp(-0.5 * np.where(np.isfinite(k), k, 0.0) ** 2)
    dh = np.where(fin, dh, np.where(np.isposinf(k) & np.isfinite(h), phi_h, zero))
    dk = np.where(fin, dk, np.where(np.isposinf(h) & np.isfinite(k), phi_k, zero))
    dr = np.where(fin, dr, zero)
    return dh, dk, dr


# ----------------------------------------------------------------------------- PyTensor
def _ordinal_key(od: OrdinalData) -> int:
    return hash(
        (
            od.counts.tobytes(),
            od.n_cat.tobytes(),
            od.pairs.tobytes(),
            id(od),
        )
    )


class _OrdinalDataOp(Op):
    """An Op over one :class:`OrdinalData`, keyed by its fingerprint; inputs ``(tau, corr)``."""

    __props__ = ("key",)

    def __init__(self, od: OrdinalData):
        self.od = od
        self.key = _ordinal_key(od)

    @staticmethod
    def _inputs(tau, corr):
        """Thresholds ``(T,)`` and correlations ``(p, p)`` as tensors."""
        return pt.as_tensor_variable(tau), pt.as_tensor_variable(corr)


class PairwiseLogLik(_OrdinalDataOp):
    """Composite log-likelihood of all pair tables, with its gradient, as one Op.

    Inputs: the thresholds of all items concatenated (``tau``, item ``j`` at
    ``od.tau_offset[j]:od.tau_offset[j + 1]``) and the ``(p, p)`` latent-response
    correlation matrix (read in its upper triangle). Outputs ``(loglik, d/dtau,
    d/dcorr)``; the gradient of ``loglik`` reuses the last two, so a value and gradient
    cost one NumPy evaluation (:meth:`OrdinalData.loglik_and_grad`). ``-inf`` (and zero
    gradients) outside the support. PyTensor chains ``d/dcorr`` through the
    model-implied correlations to loadings, paths and variances.
    """

    def make_node(self, tau, corr):
        """Inputs: thresholds ``(T,)`` and correlations ``(p, p)``."""
        tau, corr = self._inputs(tau, corr)
        return Apply(self, [tau, corr], [pt.dscalar(), tau.type(), corr.type()])

    def perform(self, node, inputs, outputs):
        """Evaluate value and gradients with NumPy."""
        tau, corr = inputs
        value, g_tau, g_corr = self.od.loglik_and_grad(np.asarray(tau), np.asarray(corr))
        outputs[0][0] = np.asarray(value)
        outputs[1][0] = g_tau
        outputs[2][0] = g_corr

    def L_op(self, inputs, outputs, output_grads):
        """Gradient of the value output, reusing the computed gradient outputs."""
        for i in (1, 2):
            if not isinstance(output_grads[i].type, DisconnectedType):
                return [
                    grad_not_implemented(self, 0, inputs[0], "second derivatives"),
                    grad_not_implemented(self, 1, inputs[1], "second derivatives"),
                ]
        g = output_grads[0]
        return [g * outputs[1], g * outputs[2]]

    def connection_pattern(self, node):
        """Every output depends on both inputs."""
        return [[True, True, True], [True, True, True]]


class PairCellLogProb(_OrdinalDataOp):
    """``log pi`` of every cell of every pair table (for the score vectors; no gradient)."""

    def make_node(self, tau, corr):
        """Inputs: thresholds ``(T,)`` and correlations ``(p, p)``."""
        tau, corr = self._inputs(tau, corr)
        return Apply(self, [tau, corr], [pt.dvector()])

    def perform(self, node, inputs, outputs):
        """Evaluate with NumPy."""
        tau, corr = inputs
        outputs[0][0] = self.od.cell_log_probs(np.asarray(tau), np.asarray(corr))

    def L_op(self, inputs, outputs, output_grads):
        """Not differentiable (the scores are taken by finite differences)."""
        return [
            grad_not_implemented(self, 0, inputs[0], "cell log-probabilities"),
            grad_not_implemented(self, 1, inputs[1], "cell log-probabilities"),
        ]


class _PairDataOp(Op):
    """An Op over the ordinal x continuous entries of one :class:`PairData`.

    Inputs: thresholds ``(T,)`` and, per ordinal x continuous pair, the implied
    covariance ``s_oc``, the continuous item's variance ``s_cc`` and mean ``mu_c`` (working
    scale).
    """

    __props__ = ("key",)

    def __init__(self, pdata: PairData):
        self.pdata = pdata
        self.key = hash(
            (
                pdata.entry_count.tobytes(),
                pdata.entry_z.tobytes(),
                pdata.oc_pairs.tobytes(),
                id(pdata),
            )
        )

    @staticmethod
    def _inputs(*args):
        return [pt.as_tensor_variable(a) for a in args]


class OrdinalContinuousLogLik(_PairDataOp):
    """Composite log-likelihood of the ordinal x continuous pairs, with its gradient.

    Outputs ``(loglik, d/dtau, d/ds_oc, d/ds_cc, d/dmu_c)``; the gradient of ``loglik``
    reuses the others, so a value and gradient cost one NumPy evaluation
    (:meth:`PairData.oc_loglik_and_grad`).
    """

    def make_node(self, tau, s_oc, s_cc, mu_c):
        """Inputs: thresholds and the per-pair implied moments."""
        ins = self._inputs(tau, s_oc, s_cc, mu_c)
        return Apply(self, ins, [pt.dscalar()] + [x.type() for x in ins])

    def perform(self, node, inputs, outputs):
        """Evaluate value and gradients with NumPy."""
        res = self.pdata.oc_loglik_and_grad(*(np.asarray(x) for x in inputs))
        outputs[0][0] = np.asarray(res[0])
        for i in range(1, 5):
            outputs[i][0] = res[i]

    def L_op(self, inputs, outputs, output_grads):
        """Gradient of the value output, reusing the computed gradient outputs."""
        for i in range(1, 5):
            if not isinstance(output_grads[i].type, DisconnectedType):
                return [
                    grad_not_implemented(self, j, inputs[j], "second derivatives") for j in range(4)
                ]
        g = output_grads[0]
        return [g * outputs[i] for i in range(1, 5)]

    def connection_pattern(self, node):
        """Every output depends on every input."""
        return [[True] * 5 for _ in range(4)]


class OrdinalContinuousEntryLogProb(_PairDataOp):
    """Log-density of every (category, value) entry (for the score vectors; no gradient)."""

    def make_node(self, tau, s_oc, s_cc, mu_c):
        """Inputs: thresholds and the per-pair implied moments."""
        return Apply(self, self._inputs(tau, s_oc, s_cc, mu_c), [pt.dvector()])

    def perform(self, node, inputs, outputs):
        """Evaluate with NumPy."""
        outputs[0][0] = self.pdata.oc_entry_logp(*(np.asarray(x) for x in inputs))

    def L_op(self, inputs, outputs, output_grads):
        """Not differentiable (the scores are taken by finite differences)."""
        return [grad_not_implemented(self, j, inputs[j], "entry log-densities") for j in range(4)]


def add_pairwise_likelihood(graph: SEMGraph, pdata: PairData):
    """Add thresholds (and continuous items' intercepts) and the unadjusted pairwise likelihood.

    Called by :meth:`PairwiseOrdinalLikelihood.add` inside the model context. The
    working scale of the likelihood is the latent response (variance 1) for an ordinal
    item and the standardized value ``z = (y - center) / scale`` for a continuous one.
    Ordinal items' residual variances are ``1 - communality`` (not free); continuous
    items keep their free residual variances and intercepts. Residual covariances
    declared with ``~~`` are residual correlations times the residual SDs.

    Returns
    -------
    cl : tensor
        The unadjusted composite log-likelihood (the adjustment is added by
        :meth:`PairwiseOrdinalLikelihood.finish`).
    logp_units : tensor
        Its units (cells, ordinal x continuous entries, continuous pairs' coefficients).
    theta : tensor
        Residual covariances on the reported scale (latent responses for ordinal
        items, the data's scale for continuous ones).
    nu : tensor
        Intercepts on the reported scale (0 for ordinal items).
    """
    import pymc as pm
    from pymc.distributions.transforms import ordered

    from cxlib.models.base import make_prior
    from cxlib.models.sem.likelihood import nilpotent_inverse

    model, data, initvals = graph.model, graph.data, graph.initvals
    Lambda_g, B_g, Psi, Theta_y = graph.lambda_g, graph.b_g, graph.psi, graph.theta_y
    st = graph.structure
    od: OrdinalData = pdata.od
    p = st.n_items
    ordi, cont = pdata.ord_idx, pdata.cont_idx
    p_o = ordi.size
    # thresholds, one ordered RV per number of categories
    starts = od.start_thresholds()
    per_item: list = [None] * p_o
    spec = dict(graph.model_config["threshold"])
    n_cats = sorted(set(od.n_cat.tolist()))
    for K in n_cats:
        idx = [j for j in range(p_o) if od.n_cat[j] == K]
        name = "threshold" if len(n_cats) == 1 else f"threshold_{K}"
        dims_item = f"{name}_item"
        model.add_coord(dims_item, [od.items[j] for j in idx])
        model.add_coord(f"{name}_cut", [f"t{i + 1}" for i in range(K - 1)])
        init = np.stack([starts[j] for j in idx])
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
    tau = pt.concatenate(per_item)
    max_cut = int(od.n_cat.max()) - 1
    th = pt.full((p, max_cut), np.nan)
    for j in range(p_o):
        th = pt.set_subtensor(th[ordi[j], : od.n_cat[j] - 1], per_item[j])
    model.add_coord("cut", [f"t{i + 1}" for i in range(max_cut)])
    pm.Deterministic("thresholds", th, dims=("item", "cut"))

    # working scale: latent responses (ordinal) and standardized values (continuous)
    s_w = np.ones(p)
    s_w[cont] = data.scale[cont]
    is_ord = pdata.is_ordinal.astype(float)
    eye = np.eye(p)
    # implied covariance on the working scale; written with constant masks rather than
    # diag/set_subtensor, so the gradient graph stays in C
    Lam = Lambda_g[0] if not pdata.mixed else Lambda_g[0] / s_w[:, None]
    inv = nilpotent_inverse(B_g[0], st.depth)
    cov_eta = inv @ Psi @ inv.T
    lam_cov = Lam @ cov_eta
    common = lam_cov @ Lam.T
    communality = pt.sum(lam_cov * Lam, axis=1)
    if not pdata.mixed:
        resid = 1.0 - communality
        # Theta_y holds 1 on the diagonal (placeholders) and residual correlations off
        # the diagonal; scale them by the residual SDs
        rsd = pt.sqrt(pt.maximum(resid, 1e-12))
        resid_cov = Theta_y * (1.0 - eye) * rsd[:, None] * rsd[None, :]
        theta = resid_cov + eye * resid[None, :]
        # off the diagonal: the latent-response correlations (the Op reads j < k only)
        sigma_w = common + resid_cov
        feasible = pt.all(resid > 1e-6)
        nu_y = pt.zeros(p)
    else:
        theta0 = Theta_y / np.outer(s_w, s_w)
        v0 = pt.sum(theta0 * eye, axis=1)  # 1 (ordinal placeholder) or the free variance
        resid = is_ord * (1.0 - communality) + (1.0 - is_ord) * v0
        rsd0 = pt.sqrt(pt.maximum(v0, 1e-12))
        rsd = pt.sqrt(pt.maximum(resid, 1e-12))
        corr_resid = theta0 * (1.0 - eye) / (rsd0[:, None] * rsd0[None, :])
        resid_cov = corr_resid * rsd[:, None] * rsd[None, :]
        theta_w = resid_cov + eye * resid[None, :]
        sigma_w = common + theta_w
        theta = theta_w * np.outer(s_w, s_w)
        feasible = pt.all(pt.take(1.0 - communality, ordi) > 1e-6)
        # intercepts of the continuous items (standardized units)
        cont_names = [st.items[j] for j in cont]
        model.add_coord("intercept_item", cont_names)
        nu_z = make_prior(
            "intercept", graph.prior_spec("intercept", cont_names), dims="intercept_item"
        )
        initvals["intercept"] = np.zeros(cont.size)
        select = np.zeros((p, cont.size))
        select[cont, np.arange(cont.size)] = 1.0
        mu_w = pt.dot(select, nu_z)
        nu_y = pt.dot(select, data.center[cont] + data.scale[cont] * nu_z)

    units = []
    cl = pt.as_tensor_variable(np.float64(0.0))
    if od.pairs.size:
        corr_oo = sigma_w if not pdata.mixed else sigma_w[ordi][:, ordi]
        cl = cl + PairwiseLogLik(od)(tau, corr_oo)[0]
        units.append(PairCellLogProb(od)(tau, corr_oo))
    if pdata.oc_pairs.size:
        po, pc = pdata.oc_pairs[:, 0], pdata.oc_pairs[:, 1]
        s_oc, s_cc, mu_c = sigma_w[po, pc], sigma_w[pc, pc], mu_w[pc]
        cl = cl + OrdinalContinuousLogLik(pdata)(tau, s_oc, s_cc, mu_c)[0]
        units.append(OrdinalContinuousEntryLogProb(pdata)(tau, s_oc, s_cc, mu_c))
    if pdata.cc_pairs.size:
        cj, ck = pdata.cc_pairs[:, 0], pdata.cc_pairs[:, 1]
        s11, s22, s12 = sigma_w[cj, cj], sigma_w[ck, ck], sigma_w[cj, ck]
        det = s11 * s22 - s12 * s12
        feasible = feasible & pt.all(det > 1e-10)
        det = pt.maximum(det, 1e-10)
        p11, p22, p12 = s22 / det, s11 / det, -s12 / det
        m1, m2 = mu_w[cj], mu_w[ck]
        pm1, pm2 = p11 * m1 + p12 * m2, p12 * m1 + p22 * m2
        # log N2(z) = a0 + a1 zj + a2 zk + a3 zj^2 + a4 zj zk + a5 zk^2
        coef = pt.stack(
            [
                -np.log(_TWO_PI) - 0.5 * pt.log(det) - 0.5 * (m1 * pm1 + m2 * pm2),
                pm1,
                pm2,
                -0.5 * p11,
                -p12,
                -0.5 * p22,
            ],
            axis=1,
        )
        cl = cl + pt.sum(coef * pdata.cc_stats)
        units.append(coef.ravel())
    cl = pt.switch(feasible, cl, -np.inf)
    logp_units = pt.concatenate(units) if len(units) > 1 else units[0]
    return cl, logp_units, theta, nu_y


class PairwiseOrdinalLikelihood:
    """Ordinal items (with continuous ones, if any) through the adjusted pairwise likelihood.

    The SEM's ordinal route as one object: :meth:`prepare` builds the pair statistics,
    :meth:`add` the thresholds and the unadjusted composite likelihood, :meth:`finish`
    the curvature adjustment (and the start at the pairwise maximum) and
    :meth:`sampler_kwargs` NUTS with the adjusted posterior's covariance as its mass
    matrix.

    Parameters
    ----------
    items : list of str
        The ordinal items (the model's other items enter as continuous).
    """

    nuts_start = "pairwise"

    def __init__(self, items: list[str]):
        self.latent_response_items = list(items)
        self.pairs: PairData | None = None
        self.graph: dict[str, Any] = {}
        self.theta_hat: np.ndarray | None = None
        self.info: dict[str, Any] = {}

    def prepare(self, data) -> None:
        """The pair tables and sufficient statistics of the responses."""
        self.pairs = prepare_pairs(
            data.y * data.scale + data.center,
            data.weights,
            data.items,
            self.latent_response_items,
            data.center,
            data.scale,
        )

    def add(self, graph: SEMGraph):
        """Thresholds, intercepts of continuous items and the unadjusted pairwise likelihood.

        Returns ``(cl, theta_y, nu_y, None)``: no group latent means.
        """
        cl, logp_units, theta, nu_y = add_pairwise_likelihood(graph, self.pairs)
        self.graph = {"cl": cl, "logp_cells": logp_units, "theta": theta}
        return cl, theta, nu_y, None

    def finish(self, model, initvals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Add the curvature-adjusted likelihood; start every chain at the pairwise maximum.

        Without jitter: a jitter of +-1 on the unconstrained scale can leave the feasible
        region.
        """
        import pymc as pm

        from cxlib.models.sampling import constrained_point

        theta_hat, C, info = curvature_adjustment(
            self.pairs, model, self.graph["cl"], self.graph["logp_cells"]
        )
        self.theta_hat, self.info = theta_hat, info
        with model:
            pm.Potential("likelihood", adjusted_potential(model, self.graph["cl"], theta_hat, C))
        return constrained_point(model, theta_hat)

    def sampler_kwargs(self, model, kwargs: dict[str, Any], *, weight: float) -> dict[str, Any]:
        """NUTS with the adjusted posterior's covariance ``G^-1`` as its mass matrix.

        The adjusted pairwise posterior is close to ``N(theta_hat, G^-1)``, so NUTS
        needs a few leapfrog steps per draw. A caller's ``step`` or another sampler is
        kept; PyMC's ``init`` loses its jitter.
        """
        import pymc as pm

        from cxlib.models.sampling import dense_mass_matrix

        kwargs = dict(kwargs)
        if str(kwargs.get("init", "")).startswith("jitter+"):
            kwargs["init"] = kwargs["init"].removeprefix("jitter+")
        kwargs.pop("mass_matrix", None)
        if "step" not in kwargs and kwargs.get("nuts_sampler", "pymc") == "pymc":
            G = self.info["G"]
            cov = np.linalg.inv((G + G.T) / 2)
            potential = dense_mass_matrix(
                cov.shape[0], self.theta_hat, cov, tune=int(kwargs.get("tune", 1000)), weight=weight
            )
            kwargs["step"] = pm.NUTS(
                vars=model.value_vars,
                potential=potential,
                model=model,
                target_accept=kwargs.pop("target_accept", 0.85),
            )
            kwargs.pop("init", None)
        return kwargs


def shrink_variability(H: np.ndarray, scores: np.ndarray, w2: np.ndarray, w4: np.ndarray):
    """The variability matrix ``J`` with Ledoit-Wolf shrinkage in ``H``-whitened coordinates.

    ``J = sum_i w_i^2 s_i s_i'`` estimated from ``N`` score vectors of ``d`` parameters
    is noisy when ``N`` is not much larger than ``d`` (63 parameters for 12 five-point
    items): its small eigenvalues come out too small, ``G = H J^-1 H`` too large, and
    the adjusted posterior too narrow in those directions. With ``H = M'M`` and
    whitened scores ``z = M^-T s``, ``K = M^-T J M^-1`` holds the design effects of the
    composite likelihood (the identity for a full likelihood). We shrink the
    per-respondent ``S = K / n`` toward its diagonal (Schaefer & Strimmer 2005, target
    "D"; the off-diagonal elements toward 0) with the Ledoit-Wolf intensity estimated
    from the scores themselves: it vanishes as ``N`` grows and is large when ``N`` is
    comparable to ``d``. Measured on the benchmark model (12 items): the eigenvalues of
    ``K`` are about 1.2-40 at N = 25,000; the raw estimate at N = 250 gives 0.47-44,
    the shrunk one 1.0-28 (shrinkage toward the identity instead: 3.9-30).

    Parameters
    ----------
    H : numpy.ndarray
        ``(d, d)`` negative Hessian, positive definite.
    scores : numpy.ndarray
        ``(U, d)`` score vectors of the distinct answer patterns.
    w2, w4 : numpy.ndarray
        ``(U,)`` sums of squared and fourth-power weights per pattern.

    Returns
    -------
    J : numpy.ndarray
        Shrunk variability matrix.
    J_raw : numpy.ndarray
        Unshrunk estimate.
    lam : float
        Shrinkage intensity in ``[0, 1]``.
    """
    d = H.shape[0]
    M = np.linalg.cholesky(H).T
    Z = np.linalg.solve(M.T, scores.T).T  # rows z' = s' M^-1
    n_w = float(w2.sum())
    S = (Z * w2[:, None]).T @ Z / n_w
    S = (S + S.T) / 2
    off = 1.0 - np.eye(d)
    S_off = S * off
    delta2 = float(np.sum(S_off**2))
    # sum over respondents of w^4 ||off-diagonal of (z z' - S)||^2
    zz = np.sum(Z * Z, axis=1)
    z4 = np.sum(Z**4, axis=1)
    dev2 = (zz**2 - z4) - 2.0 * np.sum((Z @ S_off) * Z, axis=1) + delta2
    b2 = float(np.sum(w4 * dev2)) / n_w**2
    lam = 1.0 if delta2 <= 0 else min(b2, delta2) / delta2
    K = n_w * (S - lam * S_off)
    J = M.T @ K @ M
    J_raw = M.T @ (n_w * S) @ M
    return (J + J.T) / 2, (J_raw + J_raw.T) / 2, lam


def curvature_adjustment(pdata: PairData, model, cl, logp_cells):
    """Estimate ``theta_hat``, ``H`` and ``J`` and return ``(theta_hat, C)`` (unconstrained).

    Parameters
    ----------
    pdata : PairData
        The pair statistics.
    model : pymc.Model
        The model with the unadjusted composite likelihood graph ``cl``.
    cl, logp_cells : tensor
        Composite log-likelihood and its units (in terms of RVs): the cells'
        log-probabilities, the ordinal x continuous entries' log-densities and the
        continuous pairs' coefficients (:class:`PairData`).

    Returns
    -------
    theta_hat : numpy.ndarray
    C : numpy.ndarray
    info : dict
        ``H``, ``J`` (shrunk), ``J_raw``, ``G``, ``shrinkage``, ``value_vars`` and the
        optimizer's message.
    """
    import pytensor
    from pymc.blocking import DictToArrayBijection

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
    f_grad = pytensor.function([x], [cl_x, pytensor.grad(cl_x, x)])
    f_cells = pytensor.function([x], cells_x)
    x0 = DictToArrayBijection.map({v.name: ip[v.name] for v in value_vars}).data

    if not np.isfinite(f_grad(x0)[0]):
        raise ModelSpecificationError(
            "the starting values of the ordinal model imply item communalities above 1; "
            "give smaller start() values for the loadings"
        )
    # objective per pair answer: gradients of order 1
    res = maximize_logp(f_grad, x0, scale=pdata.n_pair_answers)
    theta_hat = res.x
    # curvature and per-unit score Jacobian by central differences of the exact
    # gradient and the units (2 d evaluations; no symbolic Hessian to compile)
    d = theta_hat.size
    eps = 1e-5
    H = np.zeros((d, d))
    Gc = np.zeros((pdata.n_units, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = eps
        _, g_plus = f_grad(theta_hat + e)
        _, g_minus = f_grad(theta_hat - e)
        H[:, i] = -(g_plus - g_minus) / (2 * eps)
        Gc[:, i] = (f_cells(theta_hat + e) - f_cells(theta_hat - e)) / (2 * eps)
    H = (H + H.T) / 2
    # guard: H must be positive definite at the maximum
    evals = np.linalg.eigvalsh(H)
    if not np.all(np.isfinite(H)) or evals.min() <= 0:
        raise ModelSpecificationError(
            "the pairwise likelihood has no clear maximum (its curvature is not positive "
            f"definite; optimizer: {res.message}); the ordinal model may not be identified "
            "by these data"
        )
    # per-pattern scores: sum over answered pairs of the unit gradient
    uniq, w2, w4 = pdata.respondent_patterns()
    score = pdata.pattern_scores(uniq, Gc)
    J, J_raw, lam = shrink_variability(H, score, w2, w4)
    if lam > 0.5:
        warnings.warn(
            f"the ordinal model has {d} parameters and the variability of its pairwise "
            f"scores is estimated from {pdata.n} respondents: shrunk by "
            f"{lam:.2f} (Ledoit-Wolf); its posterior SDs are "
            "approximate",
            UserWarning,
            stacklevel=3,
        )
    G = H @ np.linalg.solve(J, H)
    G = (G + G.T) / 2
    M = np.linalg.cholesky(H).T
    MG = np.linalg.cholesky(G).T
    C = np.linalg.solve(M, MG)
    return (
        theta_hat,
        C,
        {
            "H": H,
            "J": J,
            "J_raw": J_raw,
            "G": G,
            "shrinkage": lam,
            "value_vars": [v.name for v in value_vars],
            "message": str(res.message),
            "converged": bool(res.success),
        },
    )


def adjusted_potential(model, cl, theta_hat: np.ndarray, C: np.ndarray):
    """The composite log-likelihood evaluated at ``theta_hat + C (theta - theta_hat)``."""
    import pytensor

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
