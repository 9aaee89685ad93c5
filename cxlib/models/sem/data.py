"""Survey data prepared for an SEM: checks, weights, groups and sufficient statistics.

The continuous likelihood never touches respondents: it reads one weighted mean
vector and covariance matrix per (group, missingness pattern). :func:`prepare_data`
validates the items, normalizes the weights to sum to the number of respondents,
standardizes every item by its pooled weighted mean and standard deviation (so that
the default priors are on a common, unit-free scale), and computes those moments in
one pass over the sorted rows (``O(N p^2)``, a few seconds for 1,000,000 respondents).

:func:`saturated_em` estimates the unrestricted (H1) mean and covariance under
missingness at random from the same moments, for the chi-square discrepancy of the
fit measures.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.errors import ModelSpecificationError, did_you_mean
from cxlib.models.base import as_frame, frame_hash

__all__ = ["SEMData", "prepare_data", "saturated_em", "pattern_loglik_np"]

LOG2PI = float(np.log(2 * np.pi))


@dataclass
class SEMData:
    """Items, weights, groups and their sufficient statistics (standardized scale).

    Attributes
    ----------
    items : list of str
        Item columns, in model order.
    y : numpy.ndarray
        ``(N, p)`` standardized answers, NaN where missing.
    weights : numpy.ndarray
        ``(N,)`` respondent weights summing to N.
    group_codes : numpy.ndarray
        ``(N,)`` group index (all 0 without groups).
    groups : list of str
        Group labels.
    center, scale : numpy.ndarray
        ``(p,)`` pooled weighted mean and standard deviation of each item.
    pattern_of : numpy.ndarray
        ``(N,)`` index of each respondent's (group, missingness) pattern.
    pat_mask, pat_group, pat_w, pat_n, pat_mean, pat_cov
        Per pattern: observed items (bool), group, weight sum, respondents, weighted
        mean (zeros where unobserved) and weighted covariance (zeros where unobserved).
    data_hash : str
        Hash of the data the moments came from.
    respondent_ids : pandas.Index
        Row labels of the respondents kept.
    """

    items: list[str]
    y: np.ndarray
    weights: np.ndarray
    group_codes: np.ndarray
    groups: list[str]
    center: np.ndarray
    scale: np.ndarray
    pattern_of: np.ndarray
    pat_mask: np.ndarray
    pat_group: np.ndarray
    pat_w: np.ndarray
    pat_n: np.ndarray
    pat_mean: np.ndarray
    pat_cov: np.ndarray
    data_hash: str
    respondent_ids: pd.Index
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Respondents used."""
        return int(self.y.shape[0])

    @property
    def n_patterns(self) -> int:
        """Number of (group, missingness) patterns."""
        return int(self.pat_w.size)

    def group_sizes(self) -> np.ndarray:
        """Respondents per group."""
        return np.bincount(self.group_codes, minlength=len(self.groups))

    def moments_dict(self) -> dict[str, np.ndarray]:
        """The sufficient statistics as plain arrays (stored with the posterior)."""
        return {
            "pat_mask": self.pat_mask.astype(np.int8),
            "pat_group": self.pat_group,
            "pat_w": self.pat_w,
            "pat_n": self.pat_n,
            "pat_mean": self.pat_mean,
            "pat_cov": self.pat_cov,
            "center": self.center,
            "scale": self.scale,
        }

    def to_dataset(self):
        """The pattern moments as an xarray Dataset (``constant_data`` of a posterior)."""
        import xarray as xr

        return xr.Dataset(
            {
                "pat_mask": (("pattern", "item"), self.pat_mask.astype(np.int8)),
                "pat_group": (("pattern",), self.pat_group.astype(np.int64)),
                "pat_w": (("pattern",), self.pat_w),
                "pat_n": (("pattern",), self.pat_n.astype(np.int64)),
                "pat_mean": (("pattern", "item"), self.pat_mean),
                "pat_cov": (("pattern", "item", "item_"), self.pat_cov),
                "item_center": (("item",), self.center),
                "item_scale": (("item",), self.scale),
            },
            coords={
                "item": self.items,
                "item_": self.items,
                "pattern": np.arange(self.n_patterns),
            },
        )

    @classmethod
    def from_dataset(cls, ds, *, groups: list[str], data_hash: str = "") -> SEMData:
        """The pattern moments of a stored posterior (no respondent rows)."""
        items = [str(i) for i in ds["item"].values]
        p = len(items)
        return cls(
            items=items,
            y=np.zeros((0, p)),
            weights=np.zeros(0),
            group_codes=np.zeros(0, dtype=np.int64),
            groups=list(groups),
            center=ds["item_center"].values,
            scale=ds["item_scale"].values,
            pattern_of=np.zeros(0, dtype=np.int64),
            pat_mask=ds["pat_mask"].values.astype(bool),
            pat_group=ds["pat_group"].values.astype(np.int64),
            pat_w=ds["pat_w"].values,
            pat_n=ds["pat_n"].values,
            pat_mean=ds["pat_mean"].values,
            pat_cov=ds["pat_cov"].values,
            data_hash=data_hash,
            respondent_ids=pd.RangeIndex(0),
        )


def prepare_data(
    data,
    items: list[str],
    *,
    weights=None,
    group: str | None = None,
    data_hash: str | None = None,
) -> SEMData:
    """Validate data for an SEM and compute its sufficient statistics.

    Parameters
    ----------
    data : pandas.DataFrame or cxlib.data.SurveyData
        One row per respondent. With a ``SurveyData``, its study's weights are used
        unless ``weights`` says otherwise, and its file hash becomes the data hash.
    items : list of str
        The model's items.
    weights : str, array-like, False or None
        A column name, an array of respondent weights, ``False`` for none, or None
        (the study's weight column for ``SurveyData``; none for a DataFrame).
    group : str, optional
        Column defining groups (segments).
    data_hash : str, optional
        Overrides the computed hash.

    Returns
    -------
    SEMData

    Raises
    ------
    ModelSpecificationError
        When an item or the group column is missing, an item is not numeric or
        constant, the weights are invalid, or the sample covariance is not
        positive definite.
    """
    frame, file_hash = as_frame(data)
    if weights is None and file_hash is not None:
        wcol = data.study.columns.weight
        weights = wcol if wcol and wcol in frame.columns else None
    missing = [it for it in items if it not in frame.columns]
    if missing:
        hints = "; ".join(f"{m!r}{did_you_mean(m, frame.columns, parens=True)}" for m in missing)
        raise ModelSpecificationError(
            f"{len(missing)} item(s) of the model are not columns of the data: {hints}. "
            "Rename the columns or fix the model syntax"
        )
    notes: list[str] = []
    y = np.empty((len(frame), len(items)))
    for j, it in enumerate(items):
        col = frame[it]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise ModelSpecificationError(
                f"item {it!r} is not numeric (dtype {col.dtype}); recode its answers as numbers"
            )
        y[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    # weights
    if weights is None or weights is False:
        w = np.ones(len(frame))
    elif isinstance(weights, str):
        if weights not in frame.columns:
            raise ModelSpecificationError(
                f"weight column {weights!r} is not in the data{did_you_mean(weights, frame.columns, parens=True)}"
            )
        w = frame[weights].to_numpy(dtype=float, na_value=np.nan)
    else:
        w = np.asarray(weights, dtype=float).ravel()
        if w.size != len(frame):
            raise ModelSpecificationError(
                f"weights has {w.size} values but the data have {len(frame)} rows"
            )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = np.flatnonzero(~np.isfinite(w) | (w < 0))[:5]
        raise ModelSpecificationError(
            f"weights must be finite and not negative; rows {list(bad)} are not"
        )
    # groups
    if group is not None:
        if group not in frame.columns:
            raise ModelSpecificationError(
                f"group column {group!r} is not in the data{did_you_mean(group, frame.columns, parens=True)}"
            )
        gcol = frame[group]
        if gcol.isna().any():
            n_na = int(gcol.isna().sum())
            notes.append(f"{n_na} respondents without a {group!r} value were left out")
        cats = (
            [c for c in gcol.cat.categories if (gcol == c).any()]
            if isinstance(gcol.dtype, pd.CategoricalDtype)
            else sorted(gcol.dropna().unique().tolist(), key=str)
        )
        lookup = {c: i for i, c in enumerate(cats)}
        codes = gcol.map(lookup).to_numpy(dtype=float, na_value=np.nan)
        groups = [str(c) for c in cats]
    else:
        codes = np.zeros(len(frame))
        groups = [config.EVERYONE]
    missing_any = bool(np.isnan(y).any())
    empty = np.all(np.isnan(y), axis=1) if missing_any else np.zeros(len(y), dtype=bool)
    n_empty = int(empty.sum())
    if n_empty:
        notes.append(f"{n_empty} respondents answered none of the model's items and were left out")
    keep = np.isfinite(codes) & (w > 0) & ~empty
    if not keep.all():
        y, w, codes = y[keep], w[keep], codes[keep]
        ids = frame.index[keep]
    else:
        ids = frame.index
    codes = codes.astype(np.int64)
    if y.shape[0] < 2:
        raise ModelSpecificationError("fewer than two respondents answered the model's items")
    w = w * (w.size / w.sum())
    # pooled standardization (available cases)
    if missing_any:
        obs = ~np.isnan(y)
        yz0 = np.where(obs, y, 0.0)
        wsum = (w[:, None] * obs).sum(0)
        few = [items[j] for j in np.flatnonzero(wsum <= 1)]
        if few:
            raise ModelSpecificationError(f"item(s) {few} have fewer than two answers")
        center = (w[:, None] * yz0).sum(0) / wsum
        var = (w[:, None] * np.where(obs, (y - center) ** 2, 0.0)).sum(0) / wsum
    else:
        # complete data (the common case at scale): no masks
        wsum = np.full(y.shape[1], w.sum())
        center = w @ y / wsum
        var = w @ (y - center) ** 2 / wsum
    const = [items[j] for j in np.flatnonzero(var <= 1e-12 * np.maximum(1.0, center**2))]
    if const:
        raise ModelSpecificationError(
            f"item(s) {const} have the same answer from every respondent (zero variance); "
            "leave them out of the model"
        )
    scale = np.sqrt(var)
    z = (y - center) / scale
    d = SEMData(
        items=list(items),
        y=z,
        weights=w,
        group_codes=codes,
        groups=groups,
        center=center,
        scale=scale,
        pattern_of=np.zeros(0, dtype=np.int64),
        pat_mask=np.zeros((0, len(items)), dtype=bool),
        pat_group=np.zeros(0, dtype=np.int64),
        pat_w=np.zeros(0),
        pat_n=np.zeros(0, dtype=np.int64),
        pat_mean=np.zeros((0, len(items))),
        pat_cov=np.zeros((0, len(items), len(items))),
        data_hash=data_hash or file_hash or frame_hash(frame[items]),
        respondent_ids=ids,
        notes=notes,
    )
    _pattern_moments(d)
    _check_positive_definite(d)
    return d


def _pattern_moments(d: SEMData) -> None:
    n, p = d.y.shape
    obs = ~np.isnan(d.y)
    if obs.all():
        # complete data (the common case at scale): one pattern per group, no row sort
        present, inverse = np.unique(d.group_codes, return_inverse=True)
        uniq = np.concatenate(
            [present[:, None], np.full((present.size, 1), -1, dtype=np.int64)], axis=1
        )
        if present.size == 1:
            _complete_moments(d, int(present[0]))
            return
    else:
        bits = np.packbits(obs, axis=1, bitorder="little").astype(np.int64)
        combined = np.concatenate([d.group_codes[:, None].astype(np.int64), bits], axis=1)
        uniq, inverse = np.unique(combined, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(uniq.shape[0] + 1))
    n_pat = uniq.shape[0]
    mask = np.zeros((n_pat, p), dtype=bool)
    mean = np.zeros((n_pat, p))
    cov = np.zeros((n_pat, p, p))
    wsum = np.zeros(n_pat)
    count = np.zeros(n_pat, dtype=np.int64)
    for k in range(n_pat):
        rows = order[bounds[k] : bounds[k + 1]]
        o = obs[rows[0]]
        mask[k] = o
        yk = d.y[np.ix_(rows, np.flatnonzero(o))]
        wk = d.weights[rows]
        W = wk.sum()
        m = wk @ yk / W
        c = yk - m
        S = (c * wk[:, None]).T @ c / W
        idx = np.flatnonzero(o)
        mean[k, idx] = m
        cov[np.ix_([k], idx, idx)] = S[None]
        wsum[k] = W
        count[k] = rows.size
    d.pattern_of = inverse
    d.pat_mask = mask
    d.pat_group = uniq[:, 0].astype(np.int64)
    d.pat_w = wsum
    d.pat_n = count
    d.pat_mean = mean
    d.pat_cov = cov


def _complete_moments(d: SEMData, group: int) -> None:
    """Moments of complete data in one group, without copying or sorting the rows."""
    n, p = d.y.shape
    w = d.weights
    W = float(w.sum())
    m = w @ d.y / W
    c = d.y - m
    cov = (c * w[:, None]).T @ c / W if not np.all(w == 1.0) else c.T @ c / W
    d.pattern_of = np.zeros(n, dtype=np.int64)
    d.pat_mask = np.ones((1, p), dtype=bool)
    d.pat_group = np.array([group], dtype=np.int64)
    d.pat_w = np.array([W])
    d.pat_n = np.array([n], dtype=np.int64)
    d.pat_mean = m[None]
    d.pat_cov = ((cov + cov.T) / 2)[None]


def _check_positive_definite(d: SEMData) -> None:
    if d.n_patterns == len(d.groups) and d.pat_mask.all():
        covs = [d.pat_cov[g] for g in range(d.n_patterns)]
        names = [d.groups[int(g)] for g in d.pat_group]
    else:
        _, sigma = saturated_em(d, max_iter=200, tol=1e-6)
        covs, names = [sigma], [config.EVERYONE]
    for name, cov in zip(names, covs, strict=True):
        sd = np.sqrt(np.clip(np.diag(cov), 1e-300, None))
        corr = cov / np.outer(sd, sd)
        vals, vecs = np.linalg.eigh(corr)
        if vals[0] < 1e-8:
            v = vecs[:, 0]
            involved = [d.items[j] for j in np.argsort(-np.abs(v))[:4] if abs(v[j]) > 0.2]
            where = "" if name == config.EVERYONE and len(d.groups) == 1 else f" in group {name!r}"
            raise ModelSpecificationError(
                f"the sample covariance matrix{where} is not positive definite (smallest "
                f"eigenvalue {vals[0]:.2e}): items {', '.join(involved)} are (nearly) linear "
                "combinations of each other. Drop a duplicated or derived item, or collect "
                "more respondents than items"
            )


def pattern_loglik_np(
    d: SEMData, mu: np.ndarray, sigma: np.ndarray, *, patterns=None
) -> np.ndarray:
    """Log-likelihood of each pattern given group means ``(G, p)`` and covariances ``(G, p, p)``."""
    patterns = range(d.n_patterns) if patterns is None else patterns
    out = []
    for k in patterns:
        o = np.flatnonzero(d.pat_mask[k])
        g = d.pat_group[k]
        S = sigma[g][np.ix_(o, o)]
        L = np.linalg.cholesky(S)
        Li = np.linalg.inv(L)
        dvec = d.pat_mean[k, o] - mu[g][o]
        tr = np.sum((Li @ d.pat_cov[k][np.ix_(o, o)]) * Li)
        quad = np.sum((Li @ dvec) ** 2)
        logdet = 2 * np.log(np.diag(L)).sum()
        out.append(-0.5 * d.pat_w[k] * (o.size * LOG2PI + logdet + tr + quad))
    return np.asarray(out)


def saturated_em(
    d: SEMData, *, group: int | None = None, max_iter: int = 1000, tol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood mean and covariance under missingness at random (EM).

    Works from the pattern moments alone. With complete data it returns the
    weighted sample moments in one step.

    Parameters
    ----------
    d : SEMData
    group : int, optional
        Restrict to one group (default: all respondents pooled).
    max_iter : int
    tol : float
        Stop when no mean or covariance changes by more than this.

    Returns
    -------
    mu, sigma : numpy.ndarray
        ``(p,)`` and ``(p, p)``, on the standardized scale.
    """
    sel = np.arange(d.n_patterns) if group is None else np.flatnonzero(d.pat_group == group)
    p = len(d.items)
    w = d.pat_w[sel]
    W = w.sum()
    obs = d.pat_mask[sel]
    mean = d.pat_mean[sel]  # zero where unobserved
    # start: available-case means, identity covariance
    mu = (w @ mean) / np.maximum(w @ obs, 1e-300)
    sigma = np.eye(p)
    # the observed part of every pattern's sum of squares is the same in every iteration
    second = d.pat_cov[sel] + mean[:, :, None] * mean[:, None, :]
    s2_obs = np.einsum("k,kij->ij", w, second)
    s1_obs = w @ mean
    # incomplete patterns, batched by their number of missing items r
    n_missing = (~obs).sum(1)
    batches = []
    for r in np.unique(n_missing[n_missing > 0]):
        ks = np.flatnonzero(n_missing == r)
        miss = np.nonzero(~obs[ks])[1].reshape(ks.size, r)  # (K, r) missing items
        onehot = np.zeros((ks.size * r, p))  # row (k, a): item miss[k, a]
        onehot[np.arange(ks.size * r), miss.ravel()] = 1.0
        pairs = (miss[:, :, None] * p + miss[:, None, :]).ravel()  # (k, a, b) -> flat (p, p)
        batches.append((w[ks], obs[ks], mean[ks], second[ks], miss, onehot, pairs))
    for _ in range(1 if not batches else max_iter):
        s1 = s1_obs.copy()
        s2 = s2_obs.copy()
        if batches:
            P = np.linalg.inv(sigma)
        for wk, ok, mk, Mk, miss, onehot, pairs in batches:
            # E-step per pattern with the precision P: y_m | y_o ~ N(mu_m + B (y_o - mu_o),
            # P_mm^-1) with B = -P_mm^-1 P_mo (columns at m are multiplied by zeros)
            Pmm_inv = np.linalg.inv(P[miss[:, :, None], miss[:, None, :]])  # (K, r, r)
            B = -Pmm_inv @ P[miss] * ok[:, None, :]  # (K, r, p)
            c = mu[miss] - B @ mu  # (K, r): y_m-hat = B y_o + c
            Bm = (B @ mk[:, :, None])[..., 0]
            s1 += np.bincount(miss.ravel(), (wk[:, None] * (Bm + c)).ravel(), minlength=p)
            MB = Mk @ np.swapaxes(B, 1, 2)  # (K, p, r)
            om = wk[:, None, None] * (MB + mk[:, :, None] * c[:, None, :])
            # scatter the (K, p, r) blocks into the columns of their missing items
            om_full = (onehot.T @ np.swapaxes(om, 1, 2).reshape(-1, p)).T
            mm = (
                B @ MB
                + Bm[:, :, None] * c[:, None, :]
                + c[:, :, None] * Bm[:, None, :]
                + c[:, :, None] * c[:, None, :]
                + Pmm_inv
            ) * wk[:, None, None]
            s2 += om_full + om_full.T
            s2 += np.bincount(pairs, mm.ravel(), minlength=p * p).reshape(p, p)
        new_mu = s1 / W
        new_sigma = s2 / W - np.outer(new_mu, new_mu)
        delta = max(np.abs(new_mu - mu).max(), np.abs(new_sigma - sigma).max())
        mu, sigma = new_mu, (new_sigma + new_sigma.T) / 2
        if delta < tol:
            break
    else:
        if batches:
            warnings.warn(
                "the saturated (H1) model did not converge; fit measures are approximate",
                stacklevel=2,
            )
    return mu, sigma
