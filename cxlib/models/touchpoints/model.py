r"""Touchpoints across the customer journey: performance and effectiveness, pooled by channel and stage.

Every touchpoint item of the study (tagged ``touchpoint``, ``channel`` and ``stage``)
has a *performance*, its users' mean answer rescaled to 0-100, and an
*effectiveness*: how many points of the overall experience evaluation (the
``outcome``, default the Satisfaction construct's 0-100 score) one more point of its
performance buys, and, carried through the outcome, how many points of the
``target`` (default Loyalty, 0-100):

.. math::

    y_i = \alpha + \sum_t \beta_t (x_{it} - \bar x_t)\,u_{it}
          + \sum_t \delta_t (1 - u_{it}) + \varepsilon_i, \qquad
    \beta_t = \mu + \gamma_{\text{channel}(t)} + \kappa_{\text{stage}(t)} + \tau z_t

with :math:`u_{it}` = 1 when respondent *i* used (answered) touchpoint *t*, and
:math:`\delta_t` the not-used shift. Channel and stage effects are zero-sum normal
around the common mean :math:`\mu`, and each touchpoint normal around its channel +
stage expectation, so a sparse touchpoint borrows strength from the touchpoints
sharing its channel and stage (partial pooling). The three spreads are learned from
the data (half-normal priors in ``model_config``): given them and the residual SD,
every coefficient is Gaussian, so the sampler explores the exact marginal posterior of
the SD and the spreads while the coefficients are drawn non-centred (mean + Cholesky
factor x standard normal), which has no funnel to fall into
(:meth:`TouchpointModel._collapsed_outcome_model`). ``model_config=FIXED_SPREADS``
fixes them at 0.05 instead (the coefficients then sampled, whitened). The target
regression ``target = a + g (y - ybar) + e`` is fitted alongside; the effect on the target is :math:`\beta_t g`. When a structural
model is given (:meth:`TouchpointResult.gains` with a
:class:`~cxlib.insights.drivers.DriverModel`), ``g`` is instead the SEM's total
effect of the outcome construct on the target in 0-100 points (its IPMA importance).

The Gaussian likelihoods are evaluated from sufficient statistics
(:mod:`cxlib.models.touchpoints.data`).

>>> from cxlib.models import TouchpointModel
>>> result = TouchpointModel(study).fit(data)           # doctest: +SKIP
>>> result.touchpoint_table()                           # doctest: +SKIP
>>> result.journey_matrix()                             # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cxlib.errors import ModelSpecificationError
from cxlib.models.base import CxModel, make_prior
from cxlib.models.moments import gaussian_loglik_from_moments
from cxlib.models.touchpoints.data import (
    CHANNELS,
    STAGES,
    TouchpointData,
    journey_map,
    prepare_touchpoint_data,
)
from cxlib.models.touchpoints.result import TouchpointResult
from cxlib.study import Study

__all__ = ["FIXED_SPREADS", "SPREADS", "TouchpointModel"]

#: The pooling spreads: of the channel effects, the stage effects, and of the
#: touchpoints around their channel + stage expectation (outcome points per point).
SPREADS = ("channel_sd", "stage_sd", "touchpoint_sd")

#: ``model_config`` fixing the spreads at 0.05 (points per point) instead of learning
#: them: the former default, kept for comparison and for very small studies.
FIXED_SPREADS = {"channel_sd": 0.05, "stage_sd": 0.05, "touchpoint_sd": 0.05}


class TouchpointModel(CxModel):
    """Hierarchical regression of the overall experience on touchpoint performance.

    Parameters
    ----------
    study : Study
        The spec; its items tagged ``touchpoint``/``channel``/``stage`` are the touchpoints.
    outcome : str
        Construct or item the touchpoints feed: the overall experience evaluation
        (default: the construct of the study's satisfaction KPI, else ``Satisfaction``).
    target : str
        Construct or item the outcome carries into (default: the study's loyalty KPI,
        else ``Loyalty``).
    weights : str, array-like, False or None
        Respondent weights; None (default) uses the study's weight column.
    model_config : dict, optional
        Prior overrides keyed by PyMC variable name (see :attr:`default_model_config`).
    sampler_config : dict, optional
        Overrides of the ``pymc.sample`` arguments.

    Notes
    -----
    Effects are in points of the outcome (0-100) per point of touchpoint performance
    (0-100); effects on the target in target points per performance point.
    """

    _model_type: ClassVar[str] = "TouchpointModel"
    _result_class = TouchpointResult
    _data_class = TouchpointData

    def __init__(
        self,
        study: Study,
        outcome: str | None = None,
        target: str | None = None,
        *,
        weights=None,
        model_config: dict[str, Any] | None = None,
        sampler_config: dict[str, Any] | None = None,
    ):
        if outcome is None:
            sat = study.kpis.satisfaction
            outcome = (study.construct_of(sat) if sat else None) or "Satisfaction"
        if target is None:
            target = study.kpis.loyalty or "Loyalty"
        journey_map(study)  # fail early when the spec tags no touchpoint
        for role, name in (("outcome", outcome), ("target", target)):
            if name not in study.constructs and name not in study.all_items:
                raise ModelSpecificationError(
                    f"{role} {name!r} is neither a construct nor an item of study "
                    f"{study.name!r} (constructs: {', '.join(study.constructs)})"
                )
        self.study = study
        self.outcome = outcome
        self.target = target
        self.weights = weights
        self.data: TouchpointData | None = None
        super().__init__(model_config=model_config, sampler_config=sampler_config)

    @property
    def default_model_config(self) -> dict[str, Any]:
        """Default priors (points of outcome per point of touchpoint performance)."""
        return {
            "intercept": {"dist": "Normal", "mu": 0.0, "sigma": 20.0},
            "effect_mean": {"dist": "Normal", "mu": 0.0, "sigma": 0.5},
            # the spreads of the channel and stage effects, and of the touchpoints around
            # their channel + stage expectation (points per point), learned from the data:
            # half-normal priors, the regression coefficients integrated out (see
            # build_model). A number instead of a prior dict fixes a spread (FIXED_SPREADS:
            # the former default, 0.05 each).
            "channel_sd": {"dist": "HalfNormal", "sigma": 0.1},
            "stage_sd": {"dist": "HalfNormal", "sigma": 0.1},
            "touchpoint_sd": {"dist": "HalfNormal", "sigma": 0.1},
            "not_used_shift": {"dist": "Normal", "mu": 0.0, "sigma": 20.0},
            "sigma": {"dist": "HalfNormal", "sigma": 50.0},
            "target_intercept": {"dist": "Normal", "mu": 0.0, "sigma": 20.0},
            "outcome_to_target": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            "target_sigma": {"dist": "HalfNormal", "sigma": 50.0},
        }

    @property
    def learns_spreads(self) -> bool:
        """Whether a pooling spread has a prior (learned) rather than a fixed value."""
        return any(isinstance(self.model_config[k], dict) for k in SPREADS)

    @property
    def default_sampler_config(self) -> dict[str, Any]:
        """Default ``pymc.sample`` arguments (2 chains x 1000 draws after 1000 tuning).

        With learned spreads, a dense mass matrix (``jitter+adapt_full``) and smaller
        steps (``target_accept`` 0.97): the residual SD and the spreads are correlated
        in their marginal posterior (with a diagonal mass matrix the two chains' scales
        of the residual SD came apart: R-hat 1.012 on the sample study, 1.003 dense),
        and where the channel and stage spreads both near zero the touchpoint spread
        takes over along a curved ridge (5 divergences in 2,000 draws at 0.9, none at
        0.97).
        """
        out = super().default_sampler_config | {
            "draws": 1000,
            "tune": 1000,
            "target_accept": 0.9,
        }
        if self.learns_spreads:
            out |= {"init": "jitter+adapt_full", "target_accept": 0.97}
        return out

    def prepare(self, data) -> TouchpointData:
        """Performance and sufficient statistics (see :mod:`.data`)."""
        self.data = prepare_touchpoint_data(
            data, self.study, self.outcome, self.target, weights=self.weights
        )
        return self.data

    def coords(self) -> dict[str, list[str]]:
        """Named coordinates of the PyMC model."""
        d = self._need_data()
        return {
            "touchpoints": d.touchpoints,
            "channel": list(CHANNELS),
            "stage": list(STAGES),
            "not_used": d.not_used,
        }

    def build_model(self, data=None):
        """Build the PyMC model.

        Parameters
        ----------
        data : pandas.DataFrame or SurveyData, optional
            The responses; may be left out when :meth:`prepare` was called.

        Returns
        -------
        pymc.Model
        """
        import pymc as pm
        import pytensor.tensor as pt

        d = self.prepared_data(data)
        cfg = self.model_config

        def prior(name: str, value, **dims):
            spec = dict(cfg[name])
            dist = getattr(pm, str(spec.pop("dist")))
            return pm.Potential(f"{name}_prior", pm.logp(dist.dist(**spec), value).sum(), **dims)

        with pm.Model(coords=self.coords()) as model:
            if self.learns_spreads:
                effect, mu, channel_effect, stage_effect = self._collapsed_outcome_model(d)
            else:
                effect, mu, channel_effect, stage_effect = self._sampled_outcome_model(d, prior)
            b2_hat, chol2 = _whitening(d.target_xtwx, d.target_xtwy, d.target_ytwy, d.target_sum_w)
            z2 = pm.Flat("target_coef_z", shape=2)
            beta2 = pt.as_tensor_variable(b2_hat) + pt.dot(pt.as_tensor_variable(chol2), z2)
            a = pm.Deterministic("target_intercept", beta2[0])
            g = pm.Deterministic("outcome_to_target", beta2[1])
            prior("target_intercept", a)
            prior("outcome_to_target", g)
            tsigma = make_prior("target_sigma", cfg["target_sigma"])
            pm.Potential(
                "target_loglik",
                gaussian_loglik_from_moments(
                    beta2, d.target_xtwx, d.target_xtwy, d.target_ytwy, d.target_sum_w, tsigma
                ),
            )
            pm.Deterministic(
                "cell_effect",
                mu + stage_effect[:, None] + channel_effect[None, :],
                dims=("stage", "channel"),
            )
            pm.Deterministic("effect_on_target", effect * g, dims="touchpoints")
        self.model = model
        return model

    def _sampled_outcome_model(self, d: TouchpointData, prior):
        """The outcome regression with fixed spreads, its coefficients sampled (whitened).

        Returns the touchpoint effects, the common mean and the channel and stage effects.
        """
        import pymc as pm
        import pytensor.tensor as pt

        cfg = self.model_config
        ch = np.array([CHANNELS.index(c) for c in d.channels])
        st = np.array([STAGES.index(s) for s in d.stages])
        # The regression coefficients are sampled whitened, beta = b_ols + L z with
        # L L' the OLS covariance: the likelihood is then close to a standard normal in
        # z (correlated touchpoints otherwise need ~500 leapfrog steps per draw). The
        # map is linear, so the priors below apply to beta itself unchanged.
        b_hat, chol = _whitening(d.xtwx, d.xtwy, d.ytwy, d.sum_w)
        z = pm.Flat("outcome_coef_z", shape=len(b_hat))
        beta = pt.as_tensor_variable(b_hat) + pt.dot(pt.as_tensor_variable(chol), z)
        T = len(d.touchpoints)
        intercept = pm.Deterministic("intercept", beta[0])
        effect = pm.Deterministic("effect_on_outcome", beta[1 : T + 1], dims="touchpoints")
        mu = make_prior("effect_mean", cfg["effect_mean"])
        # only reached with every spread fixed (a prior on any: _collapsed_outcome_model)
        channel_sd, stage_sd, touchpoint_sd = (float(cfg[k]) for k in SPREADS)
        channel_z = pm.ZeroSumNormal("channel_z", sigma=1.0, dims="channel")
        stage_z = pm.ZeroSumNormal("stage_z", sigma=1.0, dims="stage")
        channel_effect = pm.Deterministic("channel_effect", channel_sd * channel_z, dims="channel")
        stage_effect = pm.Deterministic("stage_effect", stage_sd * stage_z, dims="stage")
        # partial pooling: each touchpoint's slope around its channel + stage expectation
        pm.Potential(
            "effect_prior",
            pm.logp(
                pm.Normal.dist(mu + channel_effect[ch] + stage_effect[st], touchpoint_sd),
                effect,
            ).sum(),
        )
        prior("intercept", intercept)
        if d.not_used:
            shift = pm.Deterministic("not_used_shift", beta[T + 1 :], dims="not_used")
            prior("not_used_shift", shift)
        sigma = make_prior("sigma", cfg["sigma"])
        pm.Potential(
            "outcome_loglik",
            gaussian_loglik_from_moments(beta, d.xtwx, d.xtwy, d.ytwy, d.sum_w, sigma),
        )
        return effect, mu, channel_effect, stage_effect

    def _collapsed_outcome_model(self, d: TouchpointData):
        r"""The outcome regression with learned spreads: Gaussian parts integrated out.

        Given the residual SD and the three spreads, everything else of the outcome
        regression is Gaussian: the intercept, the not-used shifts, the common mean
        :math:`\mu`, the channel and stage effects (zero-sum, :math:`\sigma_c Q\zeta_c`
        with :math:`Q` an orthonormal basis of the zero-sum plane) and each
        touchpoint's deviation :math:`\tau\varepsilon_t` (non-centred). With
        :math:`u` those coefficients (standard normal ``zeta``, ``epsilon``),
        :math:`\beta = M u` and the likelihood from sufficient statistics, :math:`u`
        has precision :math:`\Lambda = M^\top X^\top W X M / \sigma^2 + P_0`. The
        sampler sees the exact marginal likelihood of the SDs and spreads, and draws
        :math:`u = \Lambda^{-1} r + L^{-\top} w` with :math:`LL^\top = \Lambda` and
        :math:`w` standard normal: no funnel between a spread and the effects it
        scales, whatever the data say (Neal's funnel is what sampling the effects
        directly runs into). Needs Normal priors for ``intercept``, ``effect_mean``
        and ``not_used_shift``.

        Returns the touchpoint effects, the common mean and the channel and stage effects.
        """
        import pymc as pm
        import pytensor.tensor as pt
        from pytensor.tensor.slinalg import cholesky, solve_triangular

        cfg = self.model_config
        for name in ("intercept", "effect_mean", "not_used_shift"):
            if cfg[name].get("dist") != "Normal":
                raise ModelSpecificationError(
                    f"model_config[{name!r}]: learned spreads integrate the coefficients out "
                    f"and need a Normal prior, got {cfg[name].get('dist')!r}; use a Normal "
                    "prior, or fix the spreads (model_config=FIXED_SPREADS)"
                )
        T, nu = len(d.touchpoints), len(d.not_used)
        basis = _zero_sum_basis(3)  # (3, 2)
        on_channel = np.eye(3)[[CHANNELS.index(c) for c in d.channels]] @ basis  # (T, 2)
        on_stage = np.eye(3)[[STAGES.index(s) for s in d.stages]] @ basis
        # u = (intercept, epsilon (T), shifts (nu), mu, zeta_channel (2), zeta_stage (2))
        k = 1 + T + nu + 5
        eps, mu_at, zc, zs = slice(1, T + 1), 1 + T + nu, slice(k - 4, k - 2), slice(k - 2, k)
        fixed = np.zeros((1 + T + nu, k))
        fixed[0, 0] = 1.0
        fixed[T + 1 :, T + 1 : T + 1 + nu] = np.eye(nu)
        fixed[1 : T + 1, mu_at] = 1.0
        part = {name: np.zeros_like(fixed) for name in SPREADS}
        part["touchpoint_sd"][1 : T + 1, eps] = np.eye(T)
        part["channel_sd"][1 : T + 1, zc] = on_channel
        part["stage_sd"][1 : T + 1, zs] = on_stage
        spread = {
            name: make_prior(name, cfg[name]) if isinstance(cfg[name], dict) else cfg[name]
            for name in SPREADS
        }
        sigma = make_prior("sigma", cfg["sigma"])
        M = pt.as_tensor_variable(fixed) + sum(
            spread[name] * pt.as_tensor_variable(part[name]) for name in SPREADS
        )
        prior_mean = np.zeros(k)
        prior_sd = np.ones(k)
        for at, name in ((0, "intercept"), (mu_at, "effect_mean")):
            prior_mean[at], prior_sd[at] = cfg[name].get("mu", 0.0), cfg[name]["sigma"]
        prior_mean[T + 1 : T + 1 + nu] = cfg["not_used_shift"].get("mu", 0.0)
        prior_sd[T + 1 : T + 1 + nu] = cfg["not_used_shift"]["sigma"]
        prior_prec = 1.0 / prior_sd**2
        precision = M.T @ pt.as_tensor_variable(d.xtwx) @ M / sigma**2 + np.diag(prior_prec)
        shift = M.T @ pt.as_tensor_variable(d.xtwy) / sigma**2 + prior_prec * prior_mean
        chol = cholesky(precision, lower=True)
        whitened = solve_triangular(chol, shift, lower=True)
        # log p(data | sigma, spreads): the Gaussian integral over u
        pm.Potential(
            "outcome_loglik",
            -0.5 * d.sum_w * pt.log(2.0 * np.pi * sigma**2)
            - 0.5 * d.ytwy / sigma**2
            - 0.5 * float(np.sum(prior_prec * prior_mean**2))
            + 0.5 * float(np.sum(np.log(prior_prec)))
            + 0.5 * pt.sum(whitened**2)
            - pt.sum(pt.log(chol[np.arange(k), np.arange(k)])),
        )
        w = pm.Normal("outcome_coef_w", 0.0, 1.0, shape=k)
        u = solve_triangular(chol.T, whitened + w, lower=False)
        beta = M @ u
        pm.Deterministic("intercept", beta[0])
        effect = pm.Deterministic("effect_on_outcome", beta[1 : T + 1], dims="touchpoints")
        if nu:
            pm.Deterministic("not_used_shift", beta[T + 1 :], dims="not_used")
        mu = pm.Deterministic("effect_mean", u[mu_at])
        channel_effect = pm.Deterministic(
            "channel_effect", spread["channel_sd"] * pt.dot(basis, u[zc]), dims="channel"
        )
        stage_effect = pm.Deterministic(
            "stage_effect", spread["stage_sd"] * pt.dot(basis, u[zs]), dims="stage"
        )
        return effect, mu, channel_effect, stage_effect


def _zero_sum_basis(n: int) -> np.ndarray:
    """An orthonormal basis (n, n - 1) of the vectors that sum to zero."""
    q, _ = np.linalg.qr(np.eye(n) - 1.0 / n, mode="reduced")
    return q[:, : n - 1]


def _whitening(xtwx, xtwy, ytwy, sum_w) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients and the Cholesky factor of their covariance, from sufficient statistics."""
    inv = np.linalg.inv(xtwx)
    b = inv @ xtwy
    rss = max(float(ytwy - b @ xtwy), 1e-9)
    s2 = rss / max(sum_w - len(b), 1.0)
    return b, np.linalg.cholesky(inv * s2)
