"""The one summarizer behind every interval cxlib reports.

Every table of results states a posterior the same way: its mean, its standard
deviation and its highest-density interval at ``config.HDI_PROB``, in columns named
by :func:`interval_columns`. ArviZ's ``hdi`` is the reference; this NumPy version is
vectorized over leading dimensions and keeps ArviZ out of dashboards and pipelines
that only summarise stored draws.
"""

from __future__ import annotations

import numpy as np

from cxlib import config

__all__ = ["hdi", "interval_columns", "pair_draws", "summarize_draws"]


def hdi(draws: np.ndarray, prob: float = config.HDI_PROB) -> np.ndarray:
    """Highest-density interval of draws along the last axis.

    Parameters
    ----------
    draws : numpy.ndarray
        Draws on the last axis; any leading shape. NaN draws make the interval NaN.
    prob : float
        Probability mass inside the interval (default ``config.HDI_PROB``).

    Returns
    -------
    numpy.ndarray
        Shape ``draws.shape[:-1] + (2,)``: the lower and upper bounds.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie between 0 and 1, got {prob}")
    x = np.sort(np.asarray(draws, dtype=float), axis=-1)
    n = x.shape[-1]
    width = max(1, int(np.floor(prob * n)))
    if width >= n:
        return np.stack([x[..., 0], x[..., -1]], axis=-1)
    spans = x[..., width:] - x[..., : n - width]
    start = np.nanargmin(np.where(np.isnan(spans), np.inf, spans), axis=-1)[..., None]
    low = np.take_along_axis(x, start, axis=-1)[..., 0]
    high = np.take_along_axis(x, start + width, axis=-1)[..., 0]
    nan = np.isnan(x).any(axis=-1)
    return np.stack([np.where(nan, np.nan, low), np.where(nan, np.nan, high)], axis=-1)


def interval_columns(quantity: str | None = None) -> tuple[str, str]:
    """The names of an interval's two columns: the one rule every table follows.

    A row's own estimate (its ``mean``) has ``hdi_low`` / ``hdi_high``; a named
    quantity ``q`` reported beside it (a change, a penalty) has ``q_hdi_low`` /
    ``q_hdi_high``.

    >>> interval_columns()
    ('hdi_low', 'hdi_high')
    >>> interval_columns("change")
    ('change_hdi_low', 'change_hdi_high')
    """
    prefix = f"{quantity}_" if quantity else ""
    return f"{prefix}hdi_low", f"{prefix}hdi_high"


def summarize_draws(
    draws: np.ndarray,
    prob: float = config.HDI_PROB,
    *,
    quantity: str | None = None,
    axis: int = -1,
) -> dict[str, np.ndarray]:
    """Mean, standard deviation and HDI of draws along one axis (the last by default).

    Parameters
    ----------
    draws : numpy.ndarray
        Draws on ``axis``; any other shape.
    prob : float
        Probability mass inside the interval (default ``config.HDI_PROB``).
    axis : int
        The axis of the draws (``0`` for ``(draw, ...)`` arrays).
    quantity : str, optional
        Name of the quantity; without it the keys are ``mean, sd, hdi_low,
        hdi_high``, with it ``q, q_sd, q_hdi_low, q_hdi_high`` (see
        :func:`interval_columns`).

    Returns
    -------
    dict of str to numpy.ndarray
        Each of the shape of ``draws`` without ``axis``.
    """
    draws = np.moveaxis(np.asarray(draws, dtype=float), axis, -1)
    bounds = hdi(draws, prob)
    low, high = interval_columns(quantity)
    return {
        quantity or "mean": draws.mean(axis=-1),
        f"{quantity}_sd" if quantity else "sd": (
            draws.std(axis=-1, ddof=1) if draws.shape[-1] > 1 else np.zeros(draws.shape[:-1])
        ),
        low: bounds[..., 0],
        high: bounds[..., 1],
    }


def pair_draws(draws: np.ndarray, size: int, seed: int = config.DEFAULT_SEED) -> np.ndarray:
    """Another posterior's draws matched to ``size`` of this one's (a seeded shuffle or resample).

    Two independent posteriors (say, a touchpoint model's and a SEM's) combine draw by
    draw once their draws are paired at random: a permutation when both have as many
    draws, resampling with replacement otherwise.
    """
    rng = np.random.default_rng(seed)
    if draws.size == size:
        return draws[rng.permutation(size)]
    return draws[rng.integers(0, draws.size, size=size)]
