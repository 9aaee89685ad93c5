r"""Missing attribute answers: integrate them out of the outcome's likelihood.

A respondent who skipped an expectation or a perception item still carries
information: the other answers (their own expectations and perceptions) say what the
missing one probably was, and the outcome says more. Mean imputation throws the first
away and attenuates the slopes (a respondent "imputed to the average" has a gap that
explains nothing). Here the missing answers are *marginalized* instead:

1. **A model of the items.** Per segment, the attribute items (expectations and
   perceptions) follow a multivariate normal whose mean and covariance are estimated
   by EM from every respondent's observed answers (valid when answers are missing at
   random given the other answers: MCAR or MAR).
2. **The missing answers' distribution.** For a respondent with missing items, the
   conditional normal of the missing items given the observed ones is *discretized* on
   the answer scale: item by item (chain rule), each item's probabilities are the
   normal's mass in ``[v - 0.5, v + 0.5)`` (open at the scale's ends), given the
   observed items and the values already assigned. Unlikely combinations
   (< 1e-4) are pruned, at most :data:`MAX_COMBINATIONS` kept per respondent.
3. **The likelihood** of that respondent's outcome is the mixture over the
   combinations: ``p(y | observed) = sum_k pi_k p(y | gaps_k)``, where ``gaps_k`` are
   the gaps the combination implies. The slopes see the uncertainty of the missing
   answers, and the outcome updates it (a low outcome makes a shortfall more likely),
   all inside one posterior: no imputation rounds to combine, and the model of the
   outcome is the analysis model itself (no congeniality problem).

Complete respondents keep the fast route (sufficient statistics); only the incomplete
ones (about a quarter of the respondents at 2% missing answers per item over 15 items)
are evaluated row by row.

The item model is a plug-in (its parameters are estimated once, not sampled): with
hundreds of respondents per segment their uncertainty is negligible next to the
slopes'. Missingness that depends on the *outcome* (not on other answers) is not
covered by the EM estimate of the item model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "MAX_COMBINATIONS",
    "IncompleteRows",
    "ItemModel",
    "fit_item_model",
    "missing_value_combinations",
]

#: At most this many combinations of missing answers are kept per respondent.
MAX_COMBINATIONS = 20
#: Combinations less likely than this (relative to the respondent's total) are pruned.
MIN_PROBABILITY = 1e-3


@dataclass
class ItemModel:
    """Per segment multivariate normal of the attribute items.

    Attributes
    ----------
    items : list of str
        Item names (columns of ``mean``).
    mean : numpy.ndarray
        ``(segments, items)``.
    cov : numpy.ndarray
        ``(segments, items, items)``.
    levels : list of numpy.ndarray
        The answer values of each item (its scale's integer points).
    n_iter : numpy.ndarray
        EM iterations per segment.
    """

    items: list[str]
    mean: np.ndarray
    cov: np.ndarray
    levels: list[np.ndarray]
    n_iter: np.ndarray


@dataclass
class IncompleteRows:
    """Respondents with missing attribute answers, for the mixture likelihood.

    Attributes
    ----------
    x : numpy.ndarray
        ``(R, 1 + 2A)`` features ``[1, shortfalls, surpluses]`` with the gaps of the
        affected attributes left at zero.
    y, w : numpy.ndarray
        ``(R,)`` standardized outcome and likelihood weight.
    segment : numpy.ndarray
        ``(R,)`` segment codes.
    attribute : numpy.ndarray
        ``(R, E)`` the attributes whose gap depends on a missing answer (-1 pads).
    combo_row : numpy.ndarray
        ``(C,)`` the respondent (row of ``x``) of each combination, sorted.
    combo_shortfall, combo_surplus : numpy.ndarray
        ``(C, E)`` the affected attributes' shortfall and surplus under the
        combination (0 pads).
    combo_logp : numpy.ndarray
        ``(C,)`` log probability of the combination given the observed answers.
    """

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    segment: np.ndarray
    attribute: np.ndarray
    combo_row: np.ndarray
    combo_shortfall: np.ndarray
    combo_surplus: np.ndarray
    combo_logp: np.ndarray

    @property
    def n_rows(self) -> int:
        """Number of incomplete respondents."""
        return int(self.y.size)

    def dense_combinations(self, n_features: int) -> np.ndarray:
        """``(C, n_features)`` the features each combination adds (no intercept)."""
        A = n_features // 2
        C, E = self.combo_shortfall.shape
        z = np.zeros((C, n_features))
        attr = self.attribute[self.combo_row]  # (C, E)
        ok = attr >= 0
        rows = np.broadcast_to(np.arange(C)[:, None], (C, E))[ok]
        z[rows, attr[ok]] = self.combo_shortfall[ok]
        z[rows, A + attr[ok]] = self.combo_surplus[ok]
        return z

    def expected_features(self, n_features: int) -> tuple[np.ndarray, np.ndarray]:
        """Per respondent ``E[x]`` ``(R, 1 + F)`` and ``E[x x']`` summed with weights ``w``.

        Returns
        -------
        mean : numpy.ndarray
            ``(R, 1 + n_features)`` expected features.
        second : numpy.ndarray
            ``(G, 1 + F, 1 + F)`` weighted sums of ``E[x x']`` per segment, for
            ``G = segment.max() + 1``.
        """
        z = self.dense_combinations(n_features)
        pi = np.exp(self.combo_logp)
        zfull = np.zeros((z.shape[0], 1 + n_features))
        zfull[:, 1:] = z
        mean_z = np.zeros_like(self.x)
        np.add.at(mean_z, self.combo_row, pi[:, None] * zfull)
        mean = self.x + mean_z
        n_groups = int(self.segment.max()) + 1 if self.segment.size else 0
        K = self.x.shape[1]
        second = np.zeros((n_groups, K, K))
        wc = self.w[self.combo_row] * pi
        gc = self.segment[self.combo_row]
        for g in range(n_groups):
            r = self.segment == g
            xb, mz, w = self.x[r], mean_z[r], self.w[r]
            cross = (xb * w[:, None]).T @ mz
            c = gc == g
            second[g] = (xb * w[:, None]).T @ xb + cross + cross.T
            second[g] += (zfull[c] * wc[c, None]).T @ zfull[c]
        return mean, second

    def sample_features(self, n_features: int, rng: np.random.Generator) -> np.ndarray:
        """One draw of every incomplete respondent's features ``(R, 1 + F)``."""
        pi = np.exp(self.combo_logp)
        # a draw per row: the first combination whose cumulative probability passes u
        order = np.argsort(self.combo_row, kind="stable")
        rows, p = self.combo_row[order], pi[order]
        cum = np.cumsum(p)
        start = np.searchsorted(rows, np.arange(self.n_rows))
        base = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
        total = np.bincount(rows, weights=p, minlength=self.n_rows)
        u = base + rng.random(self.n_rows) * total
        pick = np.minimum(np.searchsorted(cum, u, side="right"), rows.size - 1)
        pick = np.clip(pick, start, np.append(start[1:], rows.size) - 1)
        z = self.dense_combinations(n_features)[order][pick]
        out = self.x.copy()
        out[:, 1:] += z
        return out


# ---------------------------------------------------------------------------- item model
def _em_normal(values: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """EM estimate of a multivariate normal's mean and covariance from rows with NaNs."""
    n, J = values.shape
    miss = ~np.isfinite(values)
    mu = np.nanmean(values, axis=0)
    var = np.nanvar(values, axis=0)
    var = np.where(np.isfinite(var) & (var > 1e-6), var, 1.0)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    cov = np.diag(var)
    filled = np.where(miss, mu, values)
    patterns, inverse = np.unique(miss, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    groups = [np.flatnonzero(inverse == k) for k in range(len(patterns))]
    ridge = 1e-6 * np.eye(J)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (reported after the loop)
        sum_x = np.zeros(J)
        sum_xx = np.zeros((J, J))
        for pat, idx in zip(patterns, groups, strict=True):
            x = filled[idx]
            if pat.any():
                o, m = ~pat, pat
                if o.any():
                    B = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)]).T
                    x[:, m] = mu[m] + (values[np.ix_(idx, o)] - mu[o]) @ B.T
                    cond = cov[np.ix_(m, m)] - B @ cov[np.ix_(o, m)]
                else:
                    x[:, m] = mu[m]
                    cond = cov[np.ix_(m, m)]
                sum_xx[np.ix_(m, m)] += len(idx) * cond
            sum_x += x.sum(0)
            sum_xx += x.T @ x
        new_mu = sum_x / n
        new_cov = sum_xx / n - np.outer(new_mu, new_mu) + ridge
        change = max(np.abs(new_mu - mu).max(), np.abs(new_cov - cov).max())
        mu, cov = new_mu, new_cov
        if change < tol:
            break
    return mu, cov, n_iter


def fit_item_model(
    values: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
    items: list[str],
    levels: list[np.ndarray],
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    min_rows: int = 50,
) -> ItemModel:
    """Fit the per segment multivariate normal of the items by EM.

    Parameters
    ----------
    values : numpy.ndarray
        ``(n, J)`` answers with NaN for missing ones.
    codes : numpy.ndarray
        ``(n,)`` segment codes (negative: not in a segment, left out).
    n_groups : int
        Number of segments.
    items : list of str
        Item names.
    levels : list of numpy.ndarray
        Each item's answer values.
    max_iter, tol : int, float
        EM iterations and convergence tolerance (largest change of a moment).
    min_rows : int
        A segment with fewer respondents uses the model of all segments together.

    Returns
    -------
    ItemModel
    """
    J = values.shape[1]
    inside = codes >= 0
    mu_all, cov_all, it_all = _em_normal(values[inside], max_iter, tol)
    mean = np.zeros((n_groups, J))
    cov = np.zeros((n_groups, J, J))
    n_iter = np.zeros(n_groups, dtype=np.int64)
    for g in range(n_groups):
        rows = values[codes == g]
        answered = np.isfinite(rows).sum(0)
        if rows.shape[0] < min_rows or (answered < 2).any():
            mean[g], cov[g], n_iter[g] = mu_all, cov_all, it_all
        else:
            mean[g], cov[g], n_iter[g] = _em_normal(rows, max_iter, tol)
    return ItemModel(items=list(items), mean=mean, cov=cov, levels=levels, n_iter=n_iter)


# ---------------------------------------------------------------------------- combinations
def _interval_logp(mean: np.ndarray, sd: float, levels: np.ndarray) -> np.ndarray:
    """Log mass of ``Normal(mean, sd)`` on each answer value's interval: ``(..., L)``."""
    lo = np.concatenate([[-np.inf], levels[1:] - 0.5 * np.diff(levels)])
    hi = np.concatenate([levels[:-1] + 0.5 * np.diff(levels), [np.inf]])
    z_lo = (lo - mean[..., None]) / sd
    z_hi = (hi - mean[..., None]) / sd
    # mass = Phi(z_hi) - Phi(z_lo), stably on the side away from the mean
    upper = z_lo > 0
    a = np.where(upper, -z_hi, z_lo)
    b = np.where(upper, -z_lo, z_hi)
    with np.errstate(divide="ignore"):
        lb = special.log_ndtr(b)
        la = special.log_ndtr(a)
        out = lb + np.log1p(-np.exp(np.minimum(la - lb, 0.0)))
    return out


def missing_value_combinations(
    model: ItemModel, segment: int, observed: np.ndarray, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Discrete distribution of the missing answers of respondents sharing one pattern.

    Parameters
    ----------
    model : ItemModel
        The fitted item model.
    segment : int
        The respondents' segment code.
    observed : numpy.ndarray
        ``(R, J)`` answers (values at missing positions are ignored).
    missing : numpy.ndarray
        ``(J,)`` bool: the pattern's missing items (at least one).

    Returns
    -------
    values : numpy.ndarray
        ``(R, K, M)`` answer combinations of the ``M`` missing items.
    logp : numpy.ndarray
        ``(R, K)`` their log probabilities (``-inf`` pads), normalized per respondent.
    """
    mu, cov = model.mean[segment], model.cov[segment]
    m_idx = np.flatnonzero(missing)
    o_idx = np.flatnonzero(~missing)
    R = observed.shape[0]
    if o_idx.size:
        B = np.linalg.solve(cov[np.ix_(o_idx, o_idx)], cov[np.ix_(o_idx, m_idx)]).T
        cmean = mu[m_idx] + (observed[:, o_idx] - mu[o_idx]) @ B.T  # (R, M)
        ccov = cov[np.ix_(m_idx, m_idx)] - B @ cov[np.ix_(o_idx, m_idx)]
    else:
        cmean = np.broadcast_to(mu[m_idx], (R, m_idx.size))
        ccov = cov[np.ix_(m_idx, m_idx)]
    values = np.zeros((R, 1, 0))
    logp = np.zeros((R, 1))
    for k, j in enumerate(m_idx):
        lev = model.levels[j]
        if k:
            # item k given the items already assigned (within the conditional normal)
            coef = np.linalg.solve(ccov[:k, :k], ccov[:k, k])
            mean_k = cmean[:, None, k] + (values - cmean[:, None, :k]) @ coef
            var_k = ccov[k, k] - ccov[:k, k] @ coef
        else:
            mean_k = np.broadcast_to(cmean[:, None, 0], (R, 1))
            var_k = ccov[0, 0]
        sd = float(np.sqrt(max(var_k, 1e-4)))
        lp = _interval_logp(mean_k, sd, lev)  # (R, K, L)
        K, L = values.shape[1], lev.size
        new_values = np.concatenate(
            [
                np.repeat(values, L, axis=1),
                np.broadcast_to(np.tile(lev, K), (R, K * L))[..., None],
            ],
            axis=2,
        )
        new_logp = (logp[:, :, None] + lp).reshape(R, K * L)
        # prune: relative mass below MIN_PROBABILITY, and keep the most likely ones
        new_logp = new_logp - special.logsumexp(new_logp, axis=1, keepdims=True)
        new_logp = np.where(new_logp < np.log(MIN_PROBABILITY), -np.inf, new_logp)
        keep = min(MAX_COMBINATIONS, K * L)
        order = np.argsort(-new_logp, axis=1, kind="stable")[:, :keep]
        values = np.take_along_axis(new_values, order[..., None], axis=1)
        logp = np.take_along_axis(new_logp, order, axis=1)
        logp = logp - special.logsumexp(logp, axis=1, keepdims=True)
        alive = np.isfinite(logp).any(0)
        values, logp = values[:, alive], logp[:, alive]
    return values, logp
