r"""Technical vs. emotional expectations: asymmetric disconfirmation with a posterior.

:class:`ExpectationsModel` explains an outcome (a construct score, one item, or NPS)
by each attribute's gap (perception - expectation), with one slope for a shortfall
(the *penalty*) and another for a surplus (the *reward*), pooled dimension ->
attribute -> segment. The complete rows enter through per-segment sufficient
statistics (cost independent of the number of respondents); rows with a missing
answer, and the ordinal family, through one compiled likelihood (:mod:`.likelihood`,
:mod:`.missing`). The model in formulas, and why it is built so:
``docs/design/expectations.md``.

>>> from cxlib.models import ExpectationsModel
>>> result = ExpectationsModel(study, outcome="Loyalty").fit(data)     # doctest: +SKIP
>>> result.penalty_reward()                                             # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from cxlib.errors import ModelSpecificationError
from cxlib.models.base import CxModel, make_prior
from cxlib.models.expectations.data import (
    MISSING_ROUTES,
    ExpectationsData,
    outcome_items,
    prepare_expectations_data,
)
from cxlib.models.expectations.result import ExpectationsResult
from cxlib.models.moments import gaussian_loglik_from_moments
from cxlib.study import Study

__all__ = ["ExpectationsModel", "SmallSegmentWarning", "UnidentifiedGapWarning"]

DIMENSIONS = ("technical", "emotional")
SIDES = ("penalty", "reward")
FAMILIES = ("normal", "ordinal")
REFERENCES = ("midpoint", "segment_norm")


class SmallSegmentWarning(UserWarning):
    """A segment smaller than the study's minimum cell size: its slopes lean on the others."""


class UnidentifiedGapWarning(UserWarning):
    """Nobody has a shortfall (or a surplus) on an attribute: the data say nothing about its slope."""


# ============================================================================ model
class ExpectationsModel(CxModel):
    """Bayesian model of technical vs. emotional disconfirmation (penalty and reward).

    Parameters
    ----------
    study : Study
        The study spec; its ``attributes`` (expectation/perception pairs tagged
        technical or emotional) are the model's predictors.
    outcome : str
        A construct (its score is the mean of the answered items, on their scale), or
        one item (e.g. ``"LOY_STAY"`` or ``"NPS"``). Default ``"Loyalty"``.
    segment : str, False or None
        Segment column for segment-specific slopes; None (default) takes the study's
        first segment column, False fits one segment.
    family : {"normal", "ordinal"}
        ``normal`` (default): Gaussian outcome, likelihood from sufficient statistics.
        ``ordinal``: ordered-logistic for an item outcome (slopes on the logit scale).
    reference : {"midpoint", "segment_norm"}
        For an attribute without an expectation item: measure its gap against the
        scale midpoint (default) or against its segment's mean perception.
    weights : str, array-like, False or None
        Respondent weights; None (default) uses the study's weight column.
    n_counterfactual : int
        Respondents per segment kept (a fixed random sample) for top-2-box
        counterfactuals. Default 1000.
    model_config : dict, optional
        Prior overrides keyed by PyMC variable name (see :attr:`default_model_config`),
        plus ``"attribute_sd_min_contrasts"`` (6) and ``"attribute_sd_when_few"``
        (0.15): the attributes' spread is learned from at least that many deviations
        from their dimension's mean (attributes minus dimensions), fixed at that value
        below (see :meth:`learns_attribute_sd`),
        ``"attribute_parametrization"`` (default ``"centered"``),
        ``"segment_parametrization"`` (default ``"centered"``; ``"auto"``: centred
        shifts for segments with at least ``"centered_min_respondents"`` (500)
        respondents, non-centred for smaller ones), ``"missing"`` (default ``"model"``; ``"mean_imputation"`` for
        comparison) and ``"likelihood"`` (``"sufficient"`` or ``"rowwise"``).
    sampler_config : dict, optional
        Overrides of the ``pymc.sample`` arguments.

    Notes
    -----
    The free parameters of the Gaussian model are on the standardized outcome (one
    outcome standard deviation per scale point of gap); every reported quantity
    (``penalty``, ``reward``, ``dimension_weight``, ...) is a ``pm.Deterministic`` in
    outcome units (scale points of the outcome per scale point of gap). With
    ``family="ordinal"`` they are on the latent logit scale.
    """

    _model_type: ClassVar[str] = "ExpectationsModel"
    _result_class = ExpectationsResult
    _data_class = ExpectationsData

    def __init__(
        self,
        study: Study,
        outcome: str = "Loyalty",
        *,
        segment: str | bool | None = None,
        family: str = "normal",
        reference: str = "midpoint",
        weights=None,
        n_counterfactual: int = 1000,
        model_config: dict[str, Any] | None = None,
        sampler_config: dict[str, Any] | None = None,
    ):
        if family not in FAMILIES:
            raise ModelSpecificationError(
                f"family={family!r} is not supported; use one of {', '.join(FAMILIES)}"
            )
        if reference not in REFERENCES:
            raise ModelSpecificationError(
                f"reference={reference!r} is not supported; use one of {', '.join(REFERENCES)}"
            )
        if not study.attributes:
            raise ModelSpecificationError(
                f"study {study.name!r} declares no attributes; add expectation/perception pairs "
                "under 'attributes' in the spec"
            )
        kind, _ = outcome_items(study, outcome)
        if family == "ordinal" and kind != "item":
            raise ModelSpecificationError(
                f"family='ordinal' needs a single item as the outcome; {outcome!r} is a construct"
            )
        self.study = study
        self.outcome = outcome
        self.segment = segment
        self.family = family
        self.reference = reference
        self.weights = weights
        self.n_counterfactual = int(n_counterfactual)
        self.data: ExpectationsData | None = None
        super().__init__(model_config=model_config, sampler_config=sampler_config)
        if self.model_config["missing"] not in MISSING_ROUTES:
            raise ModelSpecificationError(
                f"model_config['missing'] must be one of {', '.join(map(repr, MISSING_ROUTES))}, "
                f"got {self.model_config['missing']!r}"
            )
        if self.model_config["likelihood"] not in ("sufficient", "rowwise"):
            raise ModelSpecificationError(
                "model_config['likelihood'] must be 'sufficient' or 'rowwise', "
                f"got {self.model_config['likelihood']!r}"
            )
        few = self.model_config["attribute_sd_when_few"]
        if few is not None and not (isinstance(few, int | float) and few > 0):
            raise ModelSpecificationError(
                "model_config['attribute_sd_when_few'] must be a positive number or None, "
                f"got {few!r}"
            )
        for key, allowed in (
            ("attribute_parametrization", ("centered", "non_centered")),
            ("segment_parametrization", ("auto", "centered", "non_centered")),
        ):
            if self.model_config[key] not in allowed:
                raise ModelSpecificationError(
                    f"model_config[{key!r}] must be "
                    + " or ".join(repr(a) for a in allowed)
                    + f", got {self.model_config[key]!r}"
                )

    # -- configuration ----------------------------------------------------------
    @property
    def default_model_config(self) -> dict[str, Any]:
        """Default priors (standardized outcome per scale point of gap) and options."""
        return {
            "segment_mean": {"dist": "Normal", "mu": 0.0, "sigma": 1.5},
            "penalty_dimension": {"dist": "Normal", "mu": 0.0, "sigma": 0.5},
            "reward_dimension": {"dist": "Normal", "mu": 0.0, "sigma": 0.5},
            # a boundary-avoiding Gamma(2, .) prior for the attributes' spread (Chung et
            # al., 2013): with 8 attributes a half-normal lets the sampler fall into the
            # funnel at zero spread
            "attribute_sd": {"dist": "Gamma", "alpha": 2.0, "beta": 10.0},
            # ... but a spread is learned from the attributes' deviations from their
            # dimension's mean: A attributes in D dimensions give A - D of them per side
            # (6 for the sample's 4 + 4, 2 for a 2 + 2 study). From 2 its posterior stays
            # wide and spans both the regime where the data pin the slopes (divergences
            # of the non-centred form at 0.26) and where the prior does (the centred
            # form's at 0.035), so no parametrization samples it (issue #17: 5-50
            # divergences; 3 + 3 attributes, 4 deviations: 11-13). With fewer than
            # attribute_sd_min_contrasts deviations (6: the sample's, verified there) the
            # spread is fixed at attribute_sd_when_few (about the Gamma(2, 10) prior's
            # median, 0.17, and the fixed segment_sd): the slopes' posterior is then
            # nearly Gaussian. None learns it anyway; a number for attribute_sd fixes it
            # always. See docs/design/expectations.md.
            "attribute_sd_min_contrasts": 6,
            "attribute_sd_when_few": 0.15,
            # the segments' spread around the population slopes, learned (per side). With
            # 3 segments (6 shifts per side) the prior matters: Gamma(2, 10) has its mode
            # at 0.1 and mean 0.2 standardized outcome per scale point (segment differences
            # of about a third of a typical slope), 95% in [0.02, 0.56]; it is zero at zero
            # (no funnel for centred shifts) and lets a small segment be pooled. A number
            # fixes the spread instead (the former default was 0.15).
            # NOT YET the default: with the learned spread the slow tests showed divergences
            # and segment_sd ESS < 400 (sample study, small segment); so the default stays
            # the fixed 0.15 and {"dist": "Gamma", "alpha": 2.0, "beta": 10.0} is opt-in
            "segment_sd": 0.15,
            "sigma": {"dist": "HalfNormal", "sigma": 1.0},
            "cutpoints": {"dist": "Normal", "mu": 0.0, "sigma": 3.0},
            # centered suits levels the data pin down (attributes); non-centered levels
            # the data say little about (segment differences, often near zero): with a
            # learned segment_sd, centred shifts funnel when the segments hardly differ
            # (divergences on the sample study); "auto" centres segments with at least
            # centered_min_respondents respondents
            "attribute_parametrization": "centered",
            "segment_parametrization": "centered",
            "centered_min_respondents": 500,
            # missing expectation/perception answers: "model" (default) integrates them
            # out of the likelihood (expectations_missing); "mean_imputation" (biased,
            # for comparison) sets the gaps to the segment's means
            "missing": "model",
            # "sufficient" (default): the Gaussian likelihood from per-segment X'WX, X'Wy,
            # y'Wy; "rowwise": one term per respondent (same value; for checks and benchmarks)
            "likelihood": "sufficient",
        }

    @property
    def default_sampler_config(self) -> dict[str, Any]:
        """Default ``pymc.sample`` arguments (2 chains x 1000 draws after 1000 tuning)."""
        return super().default_sampler_config | {
            "draws": 1000,
            "tune": 1000,
            "target_accept": 0.9,
            # a dense mass matrix absorbs the correlation of the gap slopes (tree depth
            # ~4 instead of ~7 at 20,000 respondents)
            "init": "jitter+adapt_full",
        }

    # -- data and model ---------------------------------------------------------
    def prepare(self, data) -> ExpectationsData:
        """Compute gaps, features and sufficient statistics (see :mod:`.data`)."""
        self.data = prepare_expectations_data(
            data,
            self.study,
            self.outcome,
            segment=self.segment,
            weights=self.weights,
            reference=self.reference,
            family=self.family,
            n_counterfactual=self.n_counterfactual,
            keep_rows=self.model_config["likelihood"] == "rowwise",
            missing=self.model_config["missing"],
        )
        small = self.small_segments()
        if small:
            warnings.warn(
                "segment(s) "
                + ", ".join(f"{g!r} ({n} respondents)" for g, n in small.items())
                + f" have fewer than {self.study.min_cell_size} respondents: their slopes are "
                "pooled toward the other segments and flagged (small_segment) in the results",
                SmallSegmentWarning,
                stacklevel=3,
            )
        pen_ok, rew_ok = self.data.identified(min_gaps=1)
        for side, feature, ok in (("penalty", "shortfall", pen_ok), ("reward", "surplus", rew_ok)):
            none = [a for a, flag in zip(self.data.attributes, ok[-1], strict=True) if not flag]
            if none:
                warnings.warn(
                    f"no respondent has a {feature} (or everyone the same) on {', '.join(none)}: "
                    f"the data say nothing about the {side}; its posterior leans on the prior "
                    "and the other attributes (kano_class 'undetermined')",
                    UnidentifiedGapWarning,
                    stacklevel=3,
                )
        return self.data

    def small_segments(self) -> dict[str, int]:
        """Segments below the study's minimum cell size, with their respondent counts."""
        if self.data is None or len(self.data.segments) < 2:
            return {}
        return {
            g: int(n)
            for g, n in zip(self.data.segments, self.data.n_likelihood, strict=True)
            if n < self.study.min_cell_size
        }

    def coords(self) -> dict[str, list[str]]:
        """Named coordinates of the PyMC model."""
        d = self._need_data()
        out = {
            "dimensions": list(DIMENSIONS),
            "attributes": d.attributes,
            "segments": d.segments,
            "side": list(SIDES),
        }
        if self.family == "ordinal":
            out["cutpoint"] = [
                f"{k}|{k + 1}" for k in range(int(d.outcome_min), int(d.outcome_max))
            ]
        return out

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

        from cxlib.models.expectations.likelihood import MixtureLoglik, MixtureRows, concat_rows

        d = self.prepared_data(data)
        cfg = self.model_config
        dim_idx = np.array([DIMENSIONS.index(x) for x in d.attribute_dimensions])
        G = len(d.segments)
        scale = d.y_scale if self.family == "normal" else 1.0
        with pm.Model(coords=self.coords()) as model:
            # the segment's mean (standardized) outcome: with features centred within the
            # segment it is nearly uncorrelated with the slopes
            if self.family == "normal":
                level = make_prior("segment_mean", cfg["segment_mean"], dims="segments")
            elif G > 1:
                level = pm.ZeroSumNormal(
                    "segment_mean", sigma=cfg["segment_mean"].get("sigma", 1.5), dims="segments"
                )
            else:
                level = pt.zeros(1)
            side_dim = {
                "penalty": make_prior(
                    "penalty_dimension", cfg["penalty_dimension"], dims="dimensions"
                ),
                "reward": make_prior(
                    "reward_dimension", cfg["reward_dimension"], dims="dimensions"
                ),
            }
            attribute_sd = self._attribute_sd(cfg)
            per_attr = {}
            for k, side in enumerate(SIDES):
                mu = side_dim[side][dim_idx]
                if cfg["attribute_parametrization"] == "centered":
                    per_attr[side] = pm.Normal(
                        f"{side}_attribute", mu=mu, sigma=attribute_sd[k], dims="attributes"
                    )
                else:
                    z = pm.Normal(f"{side}_attribute_z", 0.0, 1.0, dims="attributes")
                    per_attr[side] = pm.Deterministic(
                        f"{side}_attribute", mu + attribute_sd[k] * z, dims="attributes"
                    )
            if G > 1:
                shift = self._segment_shift(cfg)
                pen = per_attr["penalty"][:, None] + shift[0][dim_idx, :]
                rew = per_attr["reward"][:, None] + shift[1][dim_idx, :]
            else:
                pen = per_attr["penalty"][:, None]
                rew = per_attr["reward"][:, None]
            # coefficients per segment: (G, K) over features [1, shortfalls, surpluses]
            slopes = pt.concatenate([-pen, rew], axis=0).T  # (G, 2A)
            xbar = d.feature_moments()[0]  # (G, 2A)
            intercept = level - pt.sum(slopes * xbar, axis=1)
            beta = pt.concatenate([intercept[:, None], slopes], axis=1)

            if self.family == "normal":
                sigma = make_prior("sigma", cfg["sigma"])
                if cfg["likelihood"] == "rowwise":
                    X, ys, wl, seg = d.rows
                    mu = pt.dot(_by_segment(X, seg, G), beta.T.flatten())
                    logp = pm.logp(pm.Normal.dist(mu, sigma), ys)
                    loglik = pt.sum(wl * logp)
                else:
                    loglik = gaussian_loglik_from_moments(
                        beta, d.xtwx, d.xtwy, d.ytwy, d.xtwx[:, 0, 0], sigma
                    )
                if d.incomplete is not None and d.incomplete.n_rows:
                    # respondents with missing answers: a mixture over their values
                    rows = MixtureRows.from_incomplete(d.incomplete)
                    loglik = loglik + MixtureLoglik(rows, "normal")(beta, sigma)[0]

                pm.Deterministic("outcome_sd", sigma * scale)
                pm.Deterministic(
                    "outcome_without_gaps", d.y_center + intercept * scale, dims="segments"
                )
            else:
                n_cut = d.n_outcome_categories - 1
                cspec = dict(cfg["cutpoints"])
                cutpoints = pm.Normal(
                    "cutpoints",
                    mu=cspec.get("mu", 0.0),
                    sigma=cspec.get("sigma", 3.0),
                    transform=pm.distributions.transforms.ordered,
                    initval=np.linspace(-2, 2, n_cut),
                    dims="cutpoint",
                )
                # the cutpoints below and above each answer (+-1e3: no bound); every
                # answer pattern (and every respondent with missing answers, as a
                # mixture) goes through one compiled likelihood with its gradient
                bounds = pt.concatenate([[-1e3], cutpoints, [1e3]])
                rows = MixtureRows.complete(d.pat_x, d.pat_y, d.pat_w, d.pat_segment)
                if d.incomplete is not None and d.incomplete.n_rows:
                    rows = concat_rows(rows, MixtureRows.from_incomplete(d.incomplete))
                loglik = MixtureLoglik(rows, "ordinal")(beta, bounds)[0]
            pm.Potential("loglik", loglik)
            pm.Deterministic("penalty", pen * scale, dims=("attributes", "segments"))
            pm.Deterministic("reward", rew * scale, dims=("attributes", "segments"))
            pm.Deterministic("penalty_all_segments", per_attr["penalty"] * scale, dims="attributes")
            pm.Deterministic("reward_all_segments", per_attr["reward"] * scale, dims="attributes")
            onehot = np.zeros((len(DIMENSIONS), len(d.attributes)))
            onehot[dim_idx, np.arange(len(d.attributes))] = 1.0
            onehot /= np.maximum(onehot.sum(1, keepdims=True), 1.0)
            pm.Deterministic(
                "dimension_weight",
                pt.dot(pt.as_tensor_variable(onehot), (pen + rew) / 2.0) * scale,
                dims=("dimensions", "segments"),
            )
        self.model = model
        return model

    def attribute_contrasts(self) -> int:
        """Deviations from their dimension's mean the attributes give, per side.

        ``A - D`` for ``A`` attributes in ``D`` dimensions (those with an attribute):
        the degrees of freedom from which ``attribute_sd`` is learned.
        """
        d = self._need_data()
        return len(d.attributes) - len(set(d.attribute_dimensions))

    def learns_attribute_sd(self) -> bool:
        """Whether ``attribute_sd`` is learned (a prior) or fixed (a number).

        It is learned when ``model_config["attribute_sd"]`` is a prior and the
        attributes give at least ``model_config["attribute_sd_min_contrasts"]``
        deviations from their dimension's mean (:meth:`attribute_contrasts`), or
        ``model_config["attribute_sd_when_few"]`` is None. With fewer (e.g. two
        technical and two emotional attributes) a spread learned from so few deviations
        is its prior, and sampling it funnels (see :attr:`default_model_config`).
        """
        cfg = self.model_config
        if not isinstance(cfg["attribute_sd"], dict):
            return False
        if cfg["attribute_sd_when_few"] is None:
            return True
        return self.attribute_contrasts() >= int(cfg["attribute_sd_min_contrasts"])

    def _attribute_sd(self, cfg):
        """The attributes' spread around their dimension's slope, one per side."""
        import pytensor.tensor as pt

        if self.learns_attribute_sd():
            return make_prior("attribute_sd", cfg["attribute_sd"], dims="side")
        spec = cfg["attribute_sd"]
        value = cfg["attribute_sd_when_few"] if isinstance(spec, dict) else spec
        return pt.as_tensor_variable(np.full(2, float(value)))

    def centered_segments(self) -> np.ndarray:
        """Which segments' shifts are parametrized centered (the others non-centered).

        ``segment_parametrization="auto"`` centres the shifts of segments with
        at least ``model_config["centered_min_respondents"]`` respondents (their data
        pin the shifts down: a centred shift does not funnel) and uses the non-centred
        form for smaller ones (their shifts lean on ``segment_sd``).
        """
        d = self._need_data()
        param = self.model_config["segment_parametrization"]
        if param == "auto":
            return np.asarray(d.n_likelihood) >= self.model_config["centered_min_respondents"]
        return np.full(len(d.segments), param == "centered")

    def _segment_shift(self, cfg):
        """The segments' shifts of the dimension slopes, ``(side, dimensions, segments)``."""
        import pymc as pm
        import pytensor.tensor as pt

        spec = cfg["segment_sd"]
        if isinstance(spec, dict):
            segment_sd = make_prior("segment_sd", spec, dims="side")
        else:
            segment_sd = pt.as_tensor_variable(np.full(2, float(spec)))
        dims = ("side", "dimensions", "segments")
        sd = segment_sd[:, None, None]
        centered = self.centered_segments()
        if centered.all():
            return pm.Normal("segment_shift", 0.0, sd, dims=dims)
        nc = ~centered[None, None, :]
        raw = pm.Normal("segment_shift_z", 0.0, pt.where(nc, 1.0, sd), dims=dims)
        return pm.Deterministic("segment_shift", pt.where(nc, sd * raw, raw), dims=dims)


# ============================================================================ likelihood
def _by_segment(x: np.ndarray, segment: np.ndarray, n_segments: int) -> np.ndarray:
    """Rows of ``x`` spread over segment blocks: ``(N, K * G)``, column ``k * G + g``.

    ``_by_segment(x, seg, G) @ beta.T.flatten()`` is each row's ``x @ beta[seg]``
    without an indexing operation (whose gradient is slow).
    """
    onehot = np.eye(n_segments)[segment]
    return (x[:, :, None] * onehot[:, None, :]).reshape(x.shape[0], -1)
