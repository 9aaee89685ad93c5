"""The fitted expectations model: dimension weights, penalties and rewards, Kano classes, gap closing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import special, stats

from cxlib import config
from cxlib.models.base import ModelResult
from cxlib.models.diagnostics import Diagnostics, diagnose_posterior
from cxlib.models.expectations.data import (
    ExpectationsData,
)
from cxlib.stats import interval_columns, summarize_draws

if TYPE_CHECKING:  # pragma: no cover
    from cxlib.models.expectations.model import ExpectationsModel

__all__ = ["KANO_CLASSES", "ExpectationsResult", "gap_table"]

#: The Kano classes an attribute can fall in, by its penalty and reward.
KANO_CLASSES = ("must-be", "attractive", "performance", "indifferent")


class ExpectationsResult(ModelResult):
    """A fitted :class:`ExpectationsModel`: tidy tables and draws of what it means.

    Every table method returns a DataFrame with posterior means, standard deviations
    and HDIs (``hdi_prob``, default :data:`cxlib.config.HDI_PROB`); ``draws=True``
    returns the posterior draws as an xarray DataArray with ``(chain, draw, ...)``
    dims instead.
    """

    model: ExpectationsModel

    # -- plumbing ---------------------------------------------------------------
    def _post(self, name: str):
        return self.idata.posterior[name]

    def _wrap(self, values: np.ndarray, name: str, dims: tuple[str, ...], coords: dict):
        import xarray as xr

        post = self.idata.posterior
        c, d = post.sizes["chain"], post.sizes["draw"]
        return xr.DataArray(
            values.reshape(c, d, *values.shape[1:]),
            dims=("chain", "draw", *dims),
            coords={"chain": post["chain"].values, "draw": post["draw"].values, **coords},
            name=name,
        )

    def _small(self) -> dict[str, bool]:
        small = self.model.small_segments()
        return {g: g in small for g in self.data.segments}

    def _compute_diagnostics(self) -> Diagnostics:
        post = self.idata.posterior
        names = [
            v
            for v in post.data_vars
            if not v.endswith("_z") and v not in ("outcome_without_gaps", "outcome_sd")
        ]
        return diagnose_posterior(self.idata, names)

    # -- weights ----------------------------------------------------------------
    def dimension_weights(self, *, hdi_prob: float = config.HDI_PROB, draws: bool = False):
        """Technical and emotional weight per segment, and P(emotional > technical).

        The weight of a dimension is the mean over its attributes of
        ``(penalty + reward) / 2``: the outcome change per scale point of gap.

        Returns
        -------
        pandas.DataFrame
            One row per segment: ``technical``, ``emotional`` (means, sd, HDI),
            ``emotional_minus_technical`` and ``p_emotional_greater``, with
            ``n_respondents`` and ``small_segment``. With ``draws=True`` the
            ``dimension_weight`` draws ``(chain, draw, dimensions, segments)``.
        """
        if draws:
            return self._post("dimension_weight")
        w = self.flat_draws("dimension_weight")  # (S, D, G)
        tech, emo = w[:, 0, :], w[:, 1, :]
        out = pd.DataFrame({"segment": self.data.segments})
        for name, arr in (
            ("technical", tech),
            ("emotional", emo),
            ("emotional_minus_technical", emo - tech),
        ):
            for k, v in summarize_draws(arr, hdi_prob, quantity=name, axis=0).items():
                out[k] = v
        out["p_emotional_greater"] = (emo > tech).mean(0)
        out["n_respondents"] = self.data.n_likelihood
        out["small_segment"] = out["segment"].map(self._small())
        return out

    # -- emotional share --------------------------------------------------------
    def emotional_share(self, *, hdi_prob: float = config.HDI_PROB, draws: bool = False):
        """The emotional dimension's share of the explained outcome, per segment and overall.

        The explained outcome is the gap part of the linear predictor,
        ``c_T + c_E`` (technical and emotional contributions). The emotional share is
        ``Cov(c_E, c_T + c_E) / Var(c_T + c_E)`` within a segment (a variance
        decomposition that splits the covariance evenly; the technical share is one
        minus it). ``config.EVERYONE`` pools the within-segment moments by population
        share. Also returns ``explained_share``: the gap part's share of the outcome's
        variance (an R-squared), for the normal family.

        Returns
        -------
        pandas.DataFrame or xarray.DataArray
            ``draws=True``: ``emotional_share`` draws ``(chain, draw, segments)`` with
            a ``config.EVERYONE`` entry (only that one without segments).
        """
        d = self.data
        pen, rew = self.flat_draws("penalty"), self.flat_draws("reward")  # (S, A, G)
        beta = np.concatenate([-pen, rew], axis=1)  # (S, 2A, G)
        cov = d.feature_moments()[1]  # (G, 2A, 2A)
        is_emo = np.array([x == "emotional" for x in d.attribute_dimensions] * 2)
        var_total = np.einsum("sig,gij,sjg->sg", beta, cov, beta)
        beta_e = beta * is_emo[None, :, None]
        cov_e = np.einsum("sig,gij,sjg->sg", beta_e, cov, beta)
        share = d.population_share
        num = np.concatenate([cov_e, (cov_e * share).sum(1, keepdims=True)], axis=1)
        den = np.concatenate([var_total, (var_total * share).sum(1, keepdims=True)], axis=1)
        idx, segs = d.segment_rows()
        num, den = num[:, idx], den[:, idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            emo_share = num / den
        if draws:
            return self._wrap(emo_share, "emotional_share", ("segments",), {"segments": segs})
        out = pd.DataFrame({"segment": segs})
        for k, v in summarize_draws(
            emo_share, hdi_prob, quantity="emotional_share", axis=0
        ).items():
            out[k] = v
        out["p_emotional_majority"] = (emo_share > 0.5).mean(0)
        if "outcome_sd" in self.idata.posterior:
            resid = self.flat_draws("outcome_sd") ** 2  # (S,)
            r2 = den / (den + resid[:, None])
            for k, v in summarize_draws(r2, hdi_prob, quantity="explained_share", axis=0).items():
                out[k] = v
        out["small_segment"] = out["segment"].map({**self._small(), config.EVERYONE: False})
        return out

    # -- penalty, reward and Kano -----------------------------------------------
    def kano_probabilities(
        self, *, ratio: float = 2.0, min_effect: float | None = None, by_segment: bool = False
    ):
        """Posterior probability of each Kano class per attribute (and segment).

        In each draw, with ``P = max(penalty, 0)`` and ``R = max(reward, 0)``:
        *indifferent* when both are below ``min_effect``; else *must-be* when
        ``P >= ratio * R``; *attractive* when ``R >= ratio * P``; else *performance*.

        Parameters
        ----------
        ratio : float
            How many times larger one slope must be to count as "much larger" (2).
        min_effect : float, optional
            A slope below this is negligible; default 0.05 outcome standard
            deviations per scale point (0.05 logits for the ordinal family).
        by_segment : bool
            Per segment instead of for all segments.

        Returns
        -------
        xarray.DataArray
            ``(kano_class, attributes[, segments])`` probabilities.
        """
        import xarray as xr

        d = self.data
        if min_effect is None:
            min_effect = 0.05 * (d.y_scale if self.model.family == "normal" else 1.0)
        if by_segment:
            pen, rew = self.flat_draws("penalty"), self.flat_draws("reward")
        else:
            pen, rew = self.flat_draws("penalty_all_segments"), self.flat_draws("reward_all_segments")
        P, R = np.maximum(pen, 0.0), np.maximum(rew, 0.0)
        indiff = (P < min_effect) & (R < min_effect)
        must = ~indiff & (P >= ratio * R)
        attr = ~indiff & ~must & (R >= ratio * P)
        perf = ~indiff & ~must & ~attr
        probs = np.stack([must.mean(0), attr.mean(0), perf.mean(0), indiff.mean(0)])
        dims = ("kano_class", "attributes") + (("segments",) if by_segment else ())
        coords = {"kano_class": list(KANO_CLASSES), "attributes": d.attributes}
        if by_segment:
            coords["segments"] = d.segments
        return xr.DataArray(probs, dims=dims, coords=coords, name="kano_probability")

    def penalty_reward(
        self,
        *,
        by_segment: bool = False,
        hdi_prob: float = config.HDI_PROB,
        kano_ratio: float = 2.0,
        kano_min_effect: float | None = None,
        min_gaps: int = 20,
    ) -> pd.DataFrame:
        """Penalty and reward per attribute (and segment), with the Kano class.

        Parameters
        ----------
        by_segment : bool
            One row per attribute and segment instead of per attribute.
        hdi_prob : float
            HDI probability.
        kano_ratio, kano_min_effect : float
            See :meth:`kano_probabilities`.
        min_gaps : int
            Fewer respondents with a shortfall (surplus) than this, or no variation in
            it, and the penalty (reward) is flagged as not identified by the data (its
            posterior leans on the prior and the other attributes); the class is then
            ``undetermined``.

        Returns
        -------
        pandas.DataFrame
            ``attribute, label, dimension, reference, segment, penalty*, reward*,
            asymmetry*`` (penalty - reward), ``p_penalty_greater``, ``kano_class``,
            ``kano_probability``, ``p_must_be, p_attractive, p_performance,
            p_indifferent``, ``penalty_identified, reward_identified``.
        """
        d = self.data
        if by_segment:
            pen, rew = self.flat_draws("penalty"), self.flat_draws("reward")
        else:
            pen, rew = (
                self.flat_draws("penalty_all_segments")[..., None],
                self.flat_draws("reward_all_segments")[..., None],
            )
        probs = self.kano_probabilities(
            ratio=kano_ratio, min_effect=kano_min_effect, by_segment=by_segment
        ).values
        if not by_segment:
            probs = probs[..., None]
        segs = d.segments if by_segment else [config.EVERYONE]
        gi = {g: i for i, g in enumerate(d.segments)} | {config.EVERYONE: len(d.segments)}
        pen_ok, rew_ok = d.identified(min_gaps)
        blocks = {}
        blocks.update(summarize_draws(pen, hdi_prob, quantity="penalty", axis=0))
        blocks.update(summarize_draws(rew, hdi_prob, quantity="reward", axis=0))
        blocks.update(summarize_draws(pen - rew, hdi_prob, quantity="asymmetry", axis=0))
        rows = []
        for ai, a in enumerate(d.attributes):
            for si, g in enumerate(segs):
                row = {
                    "attribute": a,
                    "label": d.attribute_labels[ai],
                    "dimension": d.attribute_dimensions[ai],
                    "reference": d.references[ai],
                    "segment": g,
                }
                for k, v in blocks.items():
                    row[k] = float(v[ai, si])
                row["p_penalty_greater"] = float((pen[:, ai, si] > rew[:, ai, si]).mean())
                p = probs[:, ai, si]
                ident_p = bool(pen_ok[gi[g], ai])
                ident_r = bool(rew_ok[gi[g], ai])
                k = int(np.argmax(p))
                row["kano_class"] = KANO_CLASSES[k] if (ident_p and ident_r) else "undetermined"
                row["kano_probability"] = float(p[k])
                for cls, pv in zip(KANO_CLASSES, p, strict=True):
                    row[f"p_{cls.replace('-', '_')}"] = float(pv)
                row["penalty_identified"] = ident_p
                row["reward_identified"] = ident_r
                row["small_segment"] = self._small().get(g, False)
                rows.append(row)
        return pd.DataFrame(rows)

    # -- closing the gaps -------------------------------------------------------
    def _predict(self, eta: np.ndarray, s_idx: np.ndarray | None = None):
        """Expected outcome and top-2-box probability for linear predictors ``eta`` (S, R)."""
        d = self.data
        if self.model.family == "normal":
            mean = d.y_center + d.y_scale * eta
            sd = self.flat_draws("outcome_sd")[:, None]
            top = special.ndtr((mean - d.top_box_threshold) / sd)
            return mean, top
        cut = self.flat_draws("cutpoints")  # (S, C)
        above = special.expit(eta[:, :, None] - cut[:, None, :])  # P(y > k) for each cut
        mean = d.outcome_min + above.sum(-1)
        top = above[:, :, -2] if cut.shape[1] >= 2 else above[:, :, -1]
        return mean, top

    def gap_closing(self, *, hdi_prob: float = config.HDI_PROB, draws: bool = False):
        """Expected change in the outcome and its top-2-box share from closing each gap.

        Closing an attribute's gap raises every respondent's perception that falls
        short of their expectation up to it (the shortfall becomes 0; surpluses stay).
        The change in the mean outcome is exact (from the feature means of all
        respondents, normal family); the change in the top-2-box share (answers in the
        scale's top two boxes; NPS: promoters 9-10) averages over a fixed sample of up
        to ``n_counterfactual`` respondents per segment.

        Returns
        -------
        pandas.DataFrame or xarray.Dataset
            Per attribute and segment (plus everyone, ``config.EVERYONE``): ``outcome_change*``,
            ``top2_change*``, ``share_short`` (respondents with a shortfall) and
            ``mean_shortfall``. ``draws=True``: ``outcome_change`` and ``top2_change``
            draws ``(chain, draw, attributes, segments)``.
        """
        import xarray as xr

        d = self.data
        G, A = len(d.segments), len(d.attributes)
        pen, rew = self.flat_draws("penalty"), self.flat_draws("reward")
        S = pen.shape[0]
        if "segment_mean" in self.idata.posterior:
            level = self.flat_draws("segment_mean")  # standardized outcome (normal) or logits
        else:
            level = np.zeros((S, G))
        if self.model.family == "normal":
            pen_l, rew_l = pen / d.y_scale, rew / d.y_scale
        else:
            pen_l, rew_l = pen, rew
        slopes = np.concatenate([-pen_l, rew_l], axis=1)  # (S, 2A, G)
        xbar = d.feature_moments()[0]  # (G, 2A)
        intercept = level - np.einsum("skg,gk->sg", slopes, xbar)
        beta = np.concatenate([intercept[:, None, :], slopes], axis=1)  # (S, K, G)
        d_out = np.zeros((S, A, G))
        d_top = np.zeros((S, A, G))
        mean_short = xbar
        for g in range(G):
            rows = d.cf_segment == g
            X = d.cf_x[rows]
            w = d.cf_weight[rows] / d.cf_weight[rows].sum()
            eta = beta[:, :, g] @ X.T  # (S, R)
            base_mean, base_top = self._predict(eta)
            for a in range(A):
                closed = eta + pen_l[:, a, g][:, None] * X[:, 1 + a][None, :]
                m2, t2 = self._predict(closed)
                d_top[:, a, g] = (t2 - base_top) @ w
                if self.model.family == "normal":
                    d_out[:, a, g] = pen[:, a, g] * mean_short[g, a]
                else:
                    d_out[:, a, g] = (m2 - base_mean) @ w
        share = d.population_share
        d_out = np.concatenate([d_out, (d_out * share).sum(-1, keepdims=True)], axis=-1)
        d_top = np.concatenate([d_top, (d_top * share).sum(-1, keepdims=True)], axis=-1)
        idx, segs = d.segment_rows()
        d_out, d_top = d_out[..., idx], d_top[..., idx]
        if draws:
            coords = {"attributes": d.attributes, "segments": segs}
            return xr.Dataset(
                {
                    "outcome_change": self._wrap(
                        d_out, "outcome_change", ("attributes", "segments"), coords
                    ),
                    "top2_change": self._wrap(
                        d_top, "top2_change", ("attributes", "segments"), coords
                    ),
                }
            )
        from cxlib.models.expectations.data import GAP_STATS

        oc = summarize_draws(d_out, hdi_prob, quantity="outcome_change", axis=0)
        tc = summarize_draws(d_top, hdi_prob, quantity="top2_change", axis=0)
        rows = []
        for ai, a in enumerate(d.attributes):
            for col, (gi, g) in enumerate(zip(idx, segs, strict=True)):
                row = {
                    "attribute": a,
                    "label": d.attribute_labels[ai],
                    "dimension": d.attribute_dimensions[ai],
                    "segment": g,
                }
                row.update({k: float(v[ai, col]) for k, v in {**oc, **tc}.items()})
                row["share_short"] = float(d.gap_stats[gi, ai, GAP_STATS.index("share_shortfall")])
                row["mean_shortfall"] = float(
                    mean_short[gi, ai] if gi < G else (mean_short[:, ai] * share).sum()
                )
                row["small_segment"] = self._small().get(g, False)
                rows.append(row)
        return pd.DataFrame(rows)

    # -- the gap table ----------------------------------------------------------
    def gap_table(self, *, interval_prob: float = config.HDI_PROB) -> pd.DataFrame:
        """Mean expectation, mean perception and gap per attribute and segment, with intervals.

        Means are weighted by the respondent weights; intervals are normal
        approximations of the weighted mean's posterior under a Bayesian bootstrap
        (``mean +- z * se``). The gap of an attribute without an expectation item is
        measured against its ``reference`` (the scale midpoint or the segment norm).

        Returns
        -------
        pandas.DataFrame
            One row per segment (and everyone, ``config.EVERYONE``) and attribute.
        """
        return gap_table(self.data, interval_prob=interval_prob, small=self._small())


def gap_table(
    data: ExpectationsData, *, interval_prob: float = config.HDI_PROB, small=None
) -> pd.DataFrame:
    """The gap table of prepared data (see :meth:`ExpectationsResult.gap_table`)."""
    out = data.gap_frame()
    z = stats.norm.ppf(0.5 + interval_prob / 2)
    for name, se in (
        ("mean_expectation", "se_expectation"),
        ("mean_perception", "se_perception"),
        ("mean_gap", "se_gap"),
    ):
        # the HDI of the mean's posterior under a flat prior (normal, so symmetric)
        low, high = interval_columns(name)
        out[low] = out[name] - z * out[se]
        out[high] = out[name] + z * out[se]
    out["small_segment"] = (
        out["segment"].map({**(small or {}), config.EVERYONE: False}).fillna(False)
    )
    cols = [
        "segment",
        "attribute",
        "label",
        "dimension",
        "reference",
        "n_respondents",
        "mean_expectation",
        "mean_expectation_hdi_low",
        "mean_expectation_hdi_high",
        "mean_perception",
        "mean_perception_hdi_low",
        "mean_perception_hdi_high",
        "mean_gap",
        "mean_gap_hdi_low",
        "mean_gap_hdi_high",
        "share_shortfall",
        "share_surplus",
        "share_at_ceiling",
        "n_gap_answered",
        "n_reference_imputed",
        "n_perception_missing",
        "small_segment",
    ]
    return out[cols]
