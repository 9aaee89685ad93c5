"""Improper solutions of a fitted SEM: Heywood cases, near-collinear constructs, HTMT.

A posterior can converge and still be unreadable: a standardized path of 1.5, an
outcome whose R² is 0.97 with a negative path beside a large one, two constructs that
correlate at 0.98. :func:`check_improper` looks for the usual signs on the posterior
draws (vectorized over draws; a few milliseconds) and returns an
:class:`ImproperSolution` whose messages name the constructs and what to try.

==========================  ==================================================  =========
kind                        flagged when (posterior mean)                       limit
==========================  ==================================================  =========
``standardized_beyond_one``  a standardized structural coefficient beyond ±1     1.0
``latent_r2``               the R² of an endogenous construct                   0.95
``latent_correlation``      the correlation of two constructs (absolute)        0.95
``htmt``                    HTMT of two constructs (model-implied)              0.90
``boundary_variance``       an item's residual variance below this share of      0.01
                            its variance (a Heywood case: standardized loading
                            near 1), or a latent (residual) variance that
                            explains less than this share of its items
==========================  ==================================================  =========

Fixed parameters are not checked (a single-item construct's residual variance of 0 is
a choice, not a boundary estimate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LIMITS", "ImproperSolution", "check_improper", "htmt_draws"]

#: The limits of :func:`check_improper` (see the module docstring).
LIMITS = {
    "standardized": 1.0,
    "latent_r2": 0.95,
    "latent_correlation": 0.95,
    "htmt": 0.90,
    "boundary": 0.01,
}

_COLLINEAR_ADVICE = (
    "drop one of the overlapping constructs or merge their items into one construct; "
    "or give the paths an informative prior (model_config={{'path': {{'dist': 'Normal', "
    "'mu': 0.0, 'sigma': 0.3}}}}, or per path '{lhs} ~ {rhs}'); composites (PLS-style "
    "constructs) are another route once the workbench offers them"
)


@dataclass
class ImproperSolution:
    """What makes a fitted SEM improper (empty when nothing does).

    Attributes
    ----------
    problems : list of dict
        One per problem: ``kind`` (see :mod:`cxlib.models.sem.quality`), ``constructs``
        (the constructs involved), ``value`` (the posterior mean that crossed the
        limit), ``message`` (what was found) and ``advice`` (what to try).
    seconds : float
        How long the checks took.
    """

    problems: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no check flagged anything."""
        return not self.problems

    def messages(self) -> list[str]:
        """One line per problem: what was found, then what to try."""
        return [f"{p['message']}. Try: {p['advice']}" for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"ok": bool, "problems": [...]}``."""
        return {"ok": self.ok, "problems": [dict(p) for p in self.problems]}

    def __str__(self) -> str:
        if self.ok:
            return (
                "solution: proper (no standardized path beyond ±1, no latent R² ≥ 0.95, "
                "no near-singular constructs, no boundary variances)"
            )
        lines = [
            f"IMPROPER SOLUTION ({len(self.problems)} problem"
            f"{'s' if len(self.problems) > 1 else ''}): do not read the estimates as they stand"
        ]
        lines += [f"  - {m}" for m in self.messages()]
        return "\n".join(lines)


def htmt_draws(corr: np.ndarray, blocks: list[list[int]], mono_single: list[float]) -> np.ndarray:
    """Heterotrait-monotrait ratios of correlation matrices, vectorized over leading axes.

    Parameters
    ----------
    corr : numpy.ndarray
        Item correlations, shape ``(..., p, p)``.
    blocks : list of list of int
        The item indices of each construct.
    mono_single : list of float
        The monotrait term of each construct used when it has a single item (its
        stated reliability, else 1); ignored for constructs with several items.

    Returns
    -------
    numpy.ndarray
        Shape ``(..., m, m)``: ``mean |r| between the blocks / sqrt(mono_a mono_b)``
        with ``mono`` the mean absolute correlation within a block; NaN on the diagonal.
    """
    a = np.abs(corr)
    m = len(blocks)
    mono = []
    for k, idx in enumerate(blocks):
        if len(idx) < 2:
            mono.append(np.full(a.shape[:-2], float(mono_single[k])))
            continue
        sub = a[..., idx, :][..., :, idx]
        iu = np.triu_indices(len(idx), 1)
        mono.append(sub[..., iu[0], iu[1]].mean(-1))
    out = np.full(a.shape[:-2] + (m, m), np.nan)
    for i in range(m):
        for j in range(i + 1, m):
            hetero = a[..., blocks[i], :][..., :, blocks[j]].mean((-2, -1))
            out[..., i, j] = out[..., j, i] = hetero / np.sqrt(mono[i] * mono[j])
    return out


def _problem(kind, constructs, value, message, advice) -> dict[str, Any]:
    return {
        "kind": kind,
        "constructs": [str(c) for c in constructs],
        "value": float(value),
        "message": message,
        "advice": advice,
    }


def check_improper(result, limits: dict[str, float] | None = None) -> ImproperSolution:
    """Check a fitted SEM's posterior for an improper solution.

    Parameters
    ----------
    result : SEMResult
        The fitted model (its :meth:`~cxlib.models.sem.result.SEMResult.matrices`).
    limits : dict, optional
        Overrides of :data:`LIMITS`.

    Returns
    -------
    ImproperSolution
    """
    import time

    start = time.perf_counter()
    lim = {**LIMITS, **(limits or {})}
    st = result.structure
    mats = result.matrices()
    latents = st.latents
    groups = result.groups
    problems: list[dict[str, Any]] = []
    measured = st.reflective
    blocks = [[st.items.index(it) for it in st.indicators(lat)] for lat in measured]
    mono_single = [st.reliability.get(lat, 1.0) for lat in measured]
    # a composite and its indicators, a higher-order construct and its first-order ones
    # are related by construction: their correlation is not a problem
    related = {frozenset((c, x)) for c, xs in st.composites.items() for x in xs} | {
        frozenset((h, f)) for h, fs in st.higher_order.items() for f in fs
    }
    for g, group in enumerate(groups):
        where = f" in {group}" if len(groups) > 1 else ""
        cov_eta = mats["cov_eta"][:, :, g]
        sigma = mats["sigma"][:, :, g]
        psi = mats["Psi"][:, :, g]
        theta = mats["Theta"][:, :, g]
        lam = mats["Lambda"][:, :, g]
        B = mats["B"][:, :, g]
        var_eta = np.diagonal(cov_eta, axis1=-2, axis2=-1)
        sd_eta = np.sqrt(np.maximum(var_eta, 1e-300))
        var_y = np.diagonal(sigma, axis1=-2, axis2=-1)
        # standardized structural coefficients
        for prm in st.of_kind("path"):
            if prm.op == "<~":
                continue  # weights of collinear indicators: see the composites' VIF
            std = B[..., prm.row, prm.col] * sd_eta[..., prm.col] / sd_eta[..., prm.row]
            mean = float(std.mean())
            if abs(mean) > lim["standardized"]:
                prob = float((np.abs(std) > lim["standardized"]).mean())
                preds = [p.rhs for p in st.of_kind("path") if p.lhs == prm.lhs]
                problems.append(
                    _problem(
                        "standardized_beyond_one",
                        [prm.lhs, *preds],
                        mean,
                        f"standardized {prm.rhs} → {prm.lhs}{where} is {mean:.2f} (beyond ±1 "
                        f"with probability {prob:.2f}): the predictors of {prm.lhs} "
                        f"({', '.join(preds)}) are near-collinear",
                        _COLLINEAR_ADVICE.format(lhs=prm.lhs, rhs=prm.rhs),
                    )
                )
        # latent R²
        for lat in st.endogenous:
            if lat in st.composites:
                continue  # a composite's R² is 1 by definition
            k = latents.index(lat)
            r2 = 1 - psi[..., k, k] / var_eta[..., k]
            mean = float(r2.mean())
            if mean >= lim["latent_r2"]:
                preds = [p.rhs for p in st.of_kind("path") if p.lhs == lat]
                problems.append(
                    _problem(
                        "latent_r2",
                        [lat, *preds],
                        mean,
                        f"R² of {lat}{where} is {mean:.3f} (≥ {lim['latent_r2']}): {lat} is "
                        f"nearly a copy of its predictors ({', '.join(preds)})",
                        _COLLINEAR_ADVICE.format(lhs=lat, rhs=preds[0])
                        + f"; or check whether {lat} and its predictors measure one thing",
                    )
                )
        # latent correlations
        corr_eta = cov_eta / (sd_eta[..., :, None] * sd_eta[..., None, :])
        mean_corr = corr_eta.mean((0, 1))
        for i in range(len(latents)):
            for j in range(i + 1, len(latents)):
                r = float(mean_corr[i, j])
                if frozenset((latents[i], latents[j])) in related:
                    continue
                if abs(r) > lim["latent_correlation"]:
                    a, b = latents[i], latents[j]
                    problems.append(
                        _problem(
                            "latent_correlation",
                            [a, b],
                            r,
                            f"{a} and {b}{where} correlate at {r:.3f}: the two constructs are "
                            "barely distinguishable (near-singular latent covariance)",
                            f"merge {a} and {b} into one construct, or drop one of them; "
                            "an informative prior on the paths that involve them "
                            "(model_config={'path': {'dist': 'Normal', 'mu': 0.0, 'sigma': "
                            "0.3}}) steadies the estimates but does not make them distinct",
                        )
                    )
        # HTMT (model-implied, per draw)
        sd_y = np.sqrt(np.maximum(var_y, 1e-300))
        corr_y = sigma / (sd_y[..., :, None] * sd_y[..., None, :])
        ht = htmt_draws(corr_y, blocks, mono_single).mean((0, 1))
        for i in range(len(measured)):
            for j in range(i + 1, len(measured)):
                h = float(ht[i, j])
                if h > lim["htmt"]:
                    a, b = measured[i], measured[j]
                    problems.append(
                        _problem(
                            "htmt",
                            [a, b],
                            h,
                            f"HTMT of {a} and {b}{where} is {h:.3f} (> {lim['htmt']}): "
                            "discriminant validity is not established",
                            f"check whether {a} and {b} measure one thing: merge them, drop "
                            "one, or move items that load on both",
                        )
                    )
        # boundary variances: item residuals (free ones) and latent variances
        for prm in st.of_kind("item_cov"):
            if not prm.is_variance or prm.fixed is not None:
                continue
            j = prm.row
            share = theta[..., j, j] / var_y[..., j]
            mean = float(share.mean())
            if mean < lim["boundary"]:
                lats = [latents[k] for k in range(len(latents)) if np.any(lam[..., j, k] != 0)]
                std_l = float(np.sqrt(np.maximum(1 - share, 0)).mean())
                problems.append(
                    _problem(
                        "boundary_variance",
                        lats,
                        mean,
                        f"the residual variance of {prm.lhs}{where} is at its boundary "
                        f"({mean:.4f} of its variance; standardized loading {std_l:.3f} on "
                        f"{', '.join(lats)}): a Heywood case",
                        f"check {prm.lhs} for a duplicate or a recode of another item, drop "
                        f"it, or, if {prm.lhs} should measure {', '.join(lats)} alone, make it "
                        "a single-item construct",
                    )
                )
        for prm in st.of_kind("latent_cov"):
            if not prm.is_variance or prm.fixed is not None:
                continue
            k = prm.row
            if latents[k] not in measured or latents[k] in st.endogenous:
                continue
            idx = blocks[measured.index(latents[k])]
            if not idx:
                continue  # a residual variance near 0 is a latent R² near 1 (checked above)
            explained = (lam[..., idx, k] ** 2 * psi[..., k, k][..., None] / var_y[..., idx]).max(
                -1
            )
            mean = float(explained.mean())
            if mean < lim["boundary"]:
                lat = latents[k]
                problems.append(
                    _problem(
                        "boundary_variance",
                        [lat],
                        mean,
                        f"the variance of {lat}{where} is at its boundary (it explains "
                        f"{mean:.4f} of its best item's variance)",
                        f"check that {lat}'s items measure one thing (and their coding); "
                        f"drop {lat} or give latent_sd an informative prior",
                    )
                )
    return ImproperSolution(problems, seconds=time.perf_counter() - start)
