"""Interval summaries of posterior draws, vectorized over any leading dimensions.

ArviZ's ``hdi`` is the reference; this NumPy version avoids importing ArviZ in
dashboards and pipelines that only summarise stored draws.
"""

from __future__ import annotations

import numpy as np

from cxlib import config

__all__ = ["hdi", "summarize_draws"]


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


def summarize_draws(draws: np.ndarray, prob: float = config.HDI_PROB) -> dict[str, np.ndarray]:
    """Mean, standard deviation and HDI of draws along the last axis."""
    draws = np.asarray(draws, dtype=float)
    bounds = hdi(draws, prob)
    return {
        "mean": draws.mean(axis=-1),
        "sd": draws.std(axis=-1, ddof=1) if draws.shape[-1] > 1 else np.zeros(draws.shape[:-1]),
        "hdi_low": bounds[..., 0],
        "hdi_high": bounds[..., 1],
    }
