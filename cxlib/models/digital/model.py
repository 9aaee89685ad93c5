r"""Digital experience: behaviour signals of sessions calibrated against stated satisfaction.

Every web or app session *i* has a latent satisfaction on the rating scale,

.. math::

    s_i = \alpha + u_{\text{segment}(i)} + x_i^\top\beta + \sigma\varepsilon_i, \qquad
    u \sim \text{ZeroSumNormal}(\tau)

with :math:`x_i` the transformed, standardized signals (:mod:`.data`), :math:`\beta`
rating points per SD of a signal, segment effects partially pooled (zero-sum normal,
spread :math:`\tau`: they sum to zero, so :math:`\alpha` is the mean over segments and
does not trade off against them; centred, since a segment has hundreds of sessions or
more, where the non-centred form has a hyperbolic ridge between :math:`\tau` and
:math:`z` that diverged: 19 divergences in 1,000 draws with two segments, measured)
and :math:`\varepsilon_i` standard normal.

**Stated rating** (``outcome="ordinal"``, any integer scale ``min..max`` with three or
more categories: 1-5, 0-10, ...): the rating is the category :math:`s_i` falls in,
between cutpoints :math:`\kappa_1 < \dots < \kappa_{C-1}`. The first and last cutpoints
are anchored half a point inside the scale's ends (:math:`\min + 0.5`, :math:`\max -
0.5`), which fixes the location and unit of :math:`s` (rating points) and so
identifies :math:`\alpha` and :math:`\sigma`; the cutpoints between them are free
(their gaps a softmax of ``C - 3`` parameters, equal gaps a priori), so respondents
need not use the scale as equal intervals. Given :math:`x`, this is an ordered probit
with scale :math:`\sigma`. ``outcome="gaussian"``: a continuous score (a construct's
0-100 score, say) observed as :math:`s_i` itself.

**Survey response** (``selection="model"``, the default): frustrated sessions answer
less often, :math:`P(\text{respond} \mid s) = \Phi(g_0 + g_1 (s - m))` with :math:`m`
the scale midpoint, fitted on *all* sessions, surveyed or not, with :math:`s`
integrated out. With :math:`q = \sqrt{1 + g_1^2\sigma^2}`, :math:`h_i = (g_0 + g_1(\mu_i
- m))/q` and :math:`\rho = -g_1\sigma/q`:

* an unsurveyed session contributes :math:`\log P(\text{no answer}\mid x_i) = \log
  \Phi(-h_i)` (closed form);
* a surveyed session with rating in :math:`(\kappa_{c-1}, \kappa_c]` contributes
  :math:`\log[\Phi_2(b_i, h_i; \rho) - \Phi_2(a_i, h_i; \rho)]`, :math:`a_i, b_i` the
  category's cutpoints standardized by :math:`\mu_i, \sigma`: the exact integral of the
  joint probability of the rating and the answer over :math:`s`. The bivariate normal
  CDF :math:`\Phi_2` is Drezner and Wesolowsky's one-dimensional integral over the
  correlation angle, evaluated by 12-point Gauss-Legendre quadrature (smooth in all
  arguments), whose gradient is written in closed form (:func:`bivariate_normal_cdf_op`:
  the exact CDF's derivatives, half the cost of differentiating the quadrature). Because
  the rating is a deterministic category of :math:`s`, the integral over :math:`s` is over
  an interval, where Gauss-Hermite quadrature over the whole line would be inexact (an
  indicator times a normal); this form is exact. A Gaussian score: :math:`\log N(y_i;
  \mu_i, \sigma) + \log\Phi(g_0 + g_1(y_i - m))`.

So :math:`g_1` is identified twice: by the ratings of those who answered and by how the
response rate varies with the signals over all sessions (response depends on :math:`x`
only through :math:`\mu`). An unsurveyed session's predicted satisfaction is then
:math:`s \mid x, \text{no answer}`, pulled down when :math:`g_1 > 0`
(:meth:`~cxlib.models.digital.DigitalExperienceResult.predict`). ``selection="ignore"``
fits the naive model (the surveyed sessions' ratings only, as if they were a random
sample), for comparison.

**Weights**: a survey weight multiplies the surveyed session's log-likelihood term
(normalized to mean 1 over the surveyed sessions). They are design weights (say, the
intercept survey invited app sessions at half the rate of web ones): they make the
surveyed sessions represent the invited population; they do not correct for
non-response that depends on satisfaction, which the response model does.

Sampling: PyMC's NUTS from the Laplace approximation with a dense mass matrix (the
models' common start, :func:`cxlib.models.sampling.nuts_start`), the default. The
intercept, the residual SD, the cutpoints and the two response parameters are
correlated in the posterior, which a dense mass matrix absorbs; nutpie
(``nuts_sampler="nutpie"``, the graph is plain PyTensor and compiles) adapts a diagonal
one and was slower here: on 3,000 sessions (1,000 surveyed), 2 x 500 draws, PyMC
sampled in 11 s with 7 leapfrog steps per draw and no divergence; nutpie took 82 s with
an earlier (non-centred) segment parametrization, and a nutpie run of a zero-sum one had
not finished after 10 minutes (measured on 2 busy cores; not retried with the final
centred parametrization).

Large session tables: ``max_unsurveyed`` (default 50,000) caps the unsurveyed sessions
in the response likelihood by a fixed random subsample whose terms are weighted by
``n_unsurveyed / n_subsample`` (an unbiased estimate of their sum; the subsample is
seeded, so the posterior is reproducible). Predictions are for every session.

>>> from cxlib.models.digital import DigitalExperienceModel, simulate_sessions
>>> sessions, truth = simulate_sessions(20_000, n_surveyed=2_000)   # doctest: +SKIP
>>> result = DigitalExperienceModel(scale=(1, 5)).fit(sessions)       # doctest: +SKIP
>>> result.signal_effects()                                           # doctest: +SKIP
>>> result.predict(sessions)                                          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cxlib import config
from cxlib.errors import ModelSpecificationError
from cxlib.models.base import CxModel, make_prior
from cxlib.models.digital.data import OUTCOMES, DigitalData, prepare_digital_data
from cxlib.models.digital.result import DigitalExperienceResult, bivariate_normal_cdf
from cxlib.models.digital.simulate import SIGNALS

__all__ = ["SELECTIONS", "DigitalExperienceModel", "bivariate_normal_cdf_op"]

#: How survey response is treated: modelled (default) or ignored (the naive fit).
SELECTIONS = ("model", "ignore")

#: Standardized cutpoints are clipped here (Phi(8) = 1 - 6e-16).
_CLIP = 8.0


class DigitalExperienceModel(CxModel):
    """Calibration of session behaviour signals against stated satisfaction.

    Parameters
    ----------
    scale : (number, number)
        The rating scale's ends (e.g. (1, 5), (0, 10); (0, 100) for a score).
    outcome : {"ordinal", "gaussian"}
        An ordinal rating (default) or a continuous score.
    signals : sequence of str
        The signals to calibrate (default: all of :data:`SIGNALS`).
    selection : {"model", "ignore"}
        Model survey response as depending on satisfaction (default), or ignore it.
    rating, weights, segment : str or None
        The rating column, an optional survey-weight column and the segment column.
    max_unsurveyed : int or None
        At most this many unsurveyed sessions enter the response likelihood (a seeded
        random subsample, weighted up); None: all.
    model_config : dict, optional
        Prior overrides keyed by PyMC variable name (see :attr:`default_model_config`).
    sampler_config : dict, optional
        Overrides of the sampling arguments.
    """

    _model_type: ClassVar[str] = "DigitalExperienceModel"
    _result_class = DigitalExperienceResult
    _data_class = DigitalData

    def __init__(
        self,
        scale: tuple[float, float] | list[float] = (1, 5),
        outcome: str = "ordinal",
        *,
        signals: tuple[str, ...] | list[str] = SIGNALS,
        selection: str = "model",
        rating: str = "rating",
        weights: str | None = None,
        segment: str | None = "segment",
        max_unsurveyed: int | None = 50_000,
        model_config: dict[str, Any] | None = None,
        sampler_config: dict[str, Any] | None = None,
    ):
        if outcome not in OUTCOMES:
            raise ModelSpecificationError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        if selection not in SELECTIONS:
            raise ModelSpecificationError(
                f"selection must be one of {SELECTIONS}, got {selection!r}"
            )
        if len(scale) != 2 or not float(scale[1]) > float(scale[0]):
            raise ModelSpecificationError(f"scale must be (min, max) with max > min, got {scale}")
        self.scale = [float(scale[0]), float(scale[1])]
        self.outcome = outcome
        self.signals = list(signals)
        self.selection = selection
        self.rating = rating
        self.weights = weights
        self.segment = segment
        if max_unsurveyed is not None and int(max_unsurveyed) < 1:
            raise ModelSpecificationError(
                f"max_unsurveyed must be a positive number or None, got {max_unsurveyed}"
            )
        self.max_unsurveyed = None if max_unsurveyed is None else int(max_unsurveyed)
        self.data: DigitalData | None = None
        super().__init__(model_config=model_config, sampler_config=sampler_config)

    @property
    def default_model_config(self) -> dict[str, Any]:
        """Default priors, in rating points (scaled by the scale's width ``W = max - min``)."""
        lo, hi = self.scale
        w = hi - lo
        return {
            "intercept": {"dist": "Normal", "mu": 0.5 * (lo + hi), "sigma": 0.5 * w},
            "signal_effect": {"dist": "Normal", "mu": 0.0, "sigma": 0.25 * w},
            "sigma": {"dist": "HalfNormal", "sigma": 0.5 * w},
            "segment_sd": {"dist": "HalfNormal", "sigma": 0.1 * w},
            "cutpoint_gaps": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            "response_intercept": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
            "response_slope": {"dist": "Normal", "mu": 0.0, "sigma": 4.0 / w},
        }

    @property
    def default_sampler_config(self) -> dict[str, Any]:
        """2 chains x 1000 draws after 1000 tuning, PyMC's NUTS from the Laplace start.

        The target acceptance is 0.92: at 0.85, fits of the sample study and of 110,000
        sessions had 1-19 divergences.
        """
        return super().default_sampler_config | {
            "draws": 1000,
            "tune": 1000,
            "target_accept": 0.92,
        }

    def prepare(self, data) -> DigitalData:
        """Check and prepare the session table (see :mod:`.data`)."""
        self.data = prepare_digital_data(
            data,
            signals=self.signals,
            rating=self.rating,
            scale=tuple(self.scale),
            outcome=self.outcome,
            weights=self.weights,
            segment=self.segment,
        )
        return self.data

    def coords(self) -> dict[str, list[str]]:
        """Named coordinates of the PyMC model."""
        d = self._need_data()
        out = {"signal": d.signals, "segment": d.segments}
        if self.outcome == "ordinal":
            out["cutpoint"] = [
                f"{k + 0.5:g}" for k in np.arange(d.scale_range[0], d.scale_range[1])
            ]
        return out

    def build_model(self, data=None):
        """Build the PyMC model.

        Parameters
        ----------
        data : pandas.DataFrame, optional
            The session table; may be left out when :meth:`prepare` was called.

        Returns
        -------
        pymc.Model
        """
        import pymc as pm
        import pytensor.tensor as pt

        d = self.prepared_data(data)
        cfg = self.model_config
        S, U = d.surveyed, ~d.surveyed
        u_weight = 1.0
        if self.max_unsurveyed is not None and U.sum() > self.max_unsurveyed:
            rows = np.flatnonzero(U)
            keep = np.random.default_rng(config.DEFAULT_SEED).choice(
                rows, size=self.max_unsurveyed, replace=False
            )
            u_weight = rows.size / self.max_unsurveyed
            U = np.zeros_like(U)
            U[np.sort(keep)] = True
        mid = d.midpoint
        with pm.Model(coords=self.coords()) as model:
            alpha = make_prior("intercept", cfg["intercept"])
            beta = make_prior("signal_effect", cfg["signal_effect"], dims="signal")
            sigma = make_prior("sigma", cfg["sigma"])
            if len(d.segments) > 1:
                seg_sd = make_prior("segment_sd", cfg["segment_sd"])
                seg = pm.ZeroSumNormal("segment_effect", sigma=seg_sd, dims="segment")
                mu_s = alpha + seg[d.segment_index[S]] + pt.dot(d.X[S], beta)
                mu_u = alpha + seg[d.segment_index[U]] + pt.dot(d.X[U], beta)
            else:
                mu_s = alpha + pt.dot(d.X[S], beta)
                mu_u = alpha + pt.dot(d.X[U], beta)
            w = d.weight[S]
            if self.selection == "model":
                g0 = make_prior("response_intercept", cfg["response_intercept"])
                g1 = make_prior("response_slope", cfg["response_slope"])
            if self.outcome == "ordinal":
                cut = self._cutpoints(d, cfg)
                cat = d.category[S]
                C = d.n_categories
                lower = (cut[np.maximum(cat - 1, 0)] - mu_s) / sigma
                upper = (cut[np.minimum(cat, C - 2)] - mu_s) / sigma
                lower = pt.clip(lower, -_CLIP, _CLIP)
                upper = pt.clip(upper, -_CLIP, _CLIP)
                top, bottom = cat == C - 1, cat == 0
                if self.selection == "model":
                    q = pt.sqrt(1.0 + (g1 * sigma) ** 2)
                    h = (g0 + g1 * (mu_s - mid)) / q
                    rho = -g1 * sigma / q
                    phi2 = bivariate_normal_cdf_op()
                    p_up = pt.switch(top, _ndtr(h), phi2(upper, h, rho))
                    p_lo = pt.switch(bottom, 0.0, phi2(lower, h, rho))
                else:
                    p_up = pt.switch(top, 1.0, _ndtr(upper))
                    p_lo = pt.switch(bottom, 0.0, _ndtr(lower))
                loglik_s = pt.log(pt.maximum(p_up - p_lo, 1e-300))
            else:
                y = d.y[S]
                loglik_s = (
                    -0.5 * ((y - mu_s) / sigma) ** 2 - pt.log(sigma) - 0.5 * np.log(2 * np.pi)
                )
                if self.selection == "model":
                    loglik_s = loglik_s + _log_ndtr(g0 + g1 * (y - mid))
            pm.Potential("surveyed_loglik", pt.sum(w * loglik_s))
            if self.selection == "model" and U.any():
                q = pt.sqrt(1.0 + (g1 * sigma) ** 2)
                h_u = (g0 + g1 * (mu_u - mid)) / q
                pm.Potential("unsurveyed_loglik", u_weight * pt.sum(_log_ndtr(-h_u)))
        self.model = model
        return model

    def _cutpoints(self, d: DigitalData, cfg):
        """The ordinal cutpoints: the first and last anchored, the gaps between them free."""
        import pymc as pm
        import pytensor.tensor as pt

        lo, hi = d.scale_range
        first, last = lo + 0.5, hi - 0.5
        C = d.n_categories
        if C == 3:
            cut = pt.as_tensor_variable(np.array([first, last]))
        else:
            gaps = make_prior("cutpoint_gaps", cfg["cutpoint_gaps"], shape=C - 3)
            share = pt.special.softmax(pt.concatenate([pt.zeros(1), gaps]))
            cut = pt.concatenate(
                [
                    pt.as_tensor_variable(np.array([first])),
                    first + (last - first) * pt.cumsum(share),
                ]
            )
        return pm.Deterministic("cutpoints", cut, dims="cutpoint")

    def start_values(self) -> dict[str, np.ndarray] | None:
        """Start near the naive estimates: the intercept at the surveyed ratings' mean."""
        d = self._need_data()
        start = {"intercept": np.array(float(np.nanmean(d.y[d.surveyed])))}
        sd = float(np.nanstd(d.y[d.surveyed])) or 0.25 * d.width
        start["sigma"] = np.array(max(sd, 0.05 * d.width))
        if self.selection == "model":
            share = d.surveyed.mean()
            from scipy.special import ndtri

            start["response_intercept"] = np.array(float(ndtri(np.clip(share, 1e-6, 1 - 1e-6))))
            start["response_slope"] = np.array(0.0)
        return start


def bivariate_normal_cdf_op():
    r"""A symbolic bivariate normal CDF with its gradient in closed form.

    The op computes :func:`.result.bivariate_normal_cdf` of vectors ``x, y`` and a scalar
    ``rho``; its gradient is :math:`\partial\Phi_2/\partial x = \phi(x)\,\Phi\big((y - \rho x)/\sqrt{1-\rho^2}\big)`
    (``y`` alike) and :math:`\partial\Phi_2/\partial\rho = \phi_2(x, y; \rho)`, the density:
    two ``erfc`` and three ``exp`` per session instead of differentiating the 12 quadrature
    nodes (on 10,000 surveyed sessions: a logp and gradient of the rated terms 1.3 ms instead
    of 3.2 ms, measured). The closed form is the derivative of the exact CDF; the quadrature
    differs from it by less than 1e-9, and the sampler's acceptance uses the quadrature's value,
    so the posterior stays exact.
    """
    import pytensor.tensor as pt
    from pytensor.compile.builders import OpFromGraph

    x, y, rho = pt.dvector("x"), pt.dvector("y"), pt.dscalar("rho")

    def gradient(inputs, outputs, output_grads):
        x, y, rho = inputs
        (g,) = output_grads
        s = pt.sqrt(1.0 - rho**2)
        density = pt.exp(-(x**2 - 2.0 * rho * x * y + y**2) / (2.0 * s**2)) / (2.0 * np.pi * s)
        return [
            g * _normal_pdf(x) * _ndtr((y - rho * x) / s),
            g * _normal_pdf(y) * _ndtr((x - rho * y) / s),
            pt.sum(g * density),
        ]

    return OpFromGraph(
        [x, y, rho],
        [bivariate_normal_cdf(x, y, rho, backend=pt)],
        lop_overrides=gradient,
        inline=True,
        name="bivariate_normal_cdf",
    )


def _normal_pdf(v):
    import pytensor.tensor as pt

    return pt.exp(-0.5 * v**2) / np.sqrt(2.0 * np.pi)


def _ndtr(v):
    import pytensor.tensor as pt

    return 0.5 * pt.erfc(-v / np.sqrt(2.0))


def _log_ndtr(v):
    """The log of Phi(v): one erfc per element, floored at 1e-300 (v far below -37)."""
    import pytensor.tensor as pt

    return pt.log(pt.maximum(0.5 * pt.erfc(-v / np.sqrt(2.0)), 1e-300))
