"""The continuous likelihood of the SEM as an object: items multivariate normal (Bayesian FIML).

The latent variables are integrated out and the likelihood is evaluated from weighted
means and covariances per missingness pattern (:mod:`cxlib.models.sem.likelihood`), so
sampling cost does not depend on the number of respondents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxlib.models.base import make_prior
from cxlib.models.sem.data import SEMData
from cxlib.models.sem.graph import SEMGraph

__all__ = ["ContinuousLikelihood"]


class ContinuousLikelihood:
    """Every item continuous: intercepts, residual variances, group latent means."""

    #: Items entering as latent responses of variance 1 (none here).
    latent_response_items: list[str] = []
    #: How NUTS starts, when the likelihood decides it (None: the model's Laplace start).
    nuts_start: str | None = None

    def prepare(self, data: SEMData) -> None:
        """Nothing to prepare: the pattern moments are the data's."""

    def add(self, graph: SEMGraph):
        """Add the intercepts, group latent means and the pattern likelihood to the model.

        Returns
        -------
        tuple
            ``(loglik, theta_y, nu_y, alpha)``: the log-likelihood, the residual
            covariance and intercepts on the data's scale and the group latent means.
        """
        import pymc as pm
        import pytensor.tensor as pt

        from cxlib.models.sem.likelihood import implied_moments, pattern_loglik

        st, data, G = graph.structure, graph.data, graph.n_groups
        p, m = st.n_items, st.n_latents
        nu_z = make_prior("intercept", graph.prior_spec("intercept", st.items), dims="item")
        graph.initvals["intercept"] = np.zeros(p)
        nu_y = data.center + data.scale * nu_z
        if G > 1:
            raw_a = make_prior(
                "latent_mean", graph.model_config["latent_mean"], dims=("group_free", "latent")
            )
            graph.initvals["latent_mean"] = np.zeros((G - 1, m))
            alpha = pt.concatenate([pt.zeros((1, m)), raw_a * graph.latent_units], axis=0)
        else:
            alpha = pt.zeros((1, m))
        inv_s = 1.0 / data.scale
        mu_z, sigma_z = implied_moments(
            graph.lambda_g * inv_s[None, :, None],
            graph.b_g,
            pt.broadcast_to(graph.psi, (G, m, m)),
            graph.theta_y * np.outer(inv_s, inv_s),
            nu_z,
            alpha,
            st.depth,
        )
        ll = pattern_loglik(mu_z, sigma_z, data.moments_dict())
        pm.Potential("likelihood", ll)
        return ll, graph.theta_y, nu_y, alpha

    def finish(self, model, initvals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Nothing to adjust: the starting values stay."""
        return initvals

    def sampler_kwargs(self, model, kwargs: dict[str, Any], *, weight: float) -> dict[str, Any]:
        """The model's own sampling (NUTS from the Laplace approximation)."""
        return kwargs
