"""Gaussian likelihoods from sufficient statistics, shared by the regression models.

With ``X'WX``, ``X'Wy``, ``y'Wy`` and the summed weights a regression's log-likelihood
costs the same for 2,000 or 200,000 respondents.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_loglik_from_moments"]


def gaussian_loglik_from_moments(beta, xtwx, xtwy, ytwy, sum_w, sigma):
    """Weighted normal regression log-likelihood from sufficient statistics.

    ``y ~ Normal(X beta, sigma)`` summed over respondents with weights ``w``, evaluated from
    X'WX, X'Wy, y'Wy and the weight total only, so its cost does not depend on the number of
    respondents. Leading axes (one set of moments per segment) are summed over.

    Parameters
    ----------
    beta : tensor, shape (..., k)
        Regression coefficients (intercept column included in X).
    xtwx : array, shape (..., k, k)
    xtwy : array, shape (..., k)
    ytwy, sum_w : array, shape (...)
    sigma : tensor
        Residual standard deviation.

    Returns
    -------
    pytensor.tensor.TensorVariable
        The summed log-likelihood (a scalar).
    """
    import pytensor.tensor as pt

    quad = pt.sum(beta[..., :, None] * xtwx * beta[..., None, :], axis=(-2, -1))
    rss = ytwy - 2.0 * pt.sum(beta * xtwy, axis=-1) + quad
    return pt.sum(-0.5 * sum_w * pt.log(2.0 * np.pi * sigma**2) - rss / (2.0 * sigma**2))
