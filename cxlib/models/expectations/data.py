"""Data for :class:`~cxlib.models.expectations.ExpectationsModel`: gaps, features, statistics.

From a survey frame this module computes, per respondent and attribute, the gap
(perception - expectation, in scale points) and splits it into two features:
the *shortfall* ``max(-gap, 0)`` and the *surplus* ``max(gap, 0)``. The outcome's
linear predictor is linear in these features, so for a Gaussian outcome the
weighted likelihood of a whole segment depends on the data only through

    ``X'WX``, ``X'Wy``, ``y'Wy`` and ``sum(W)``   (X = [1, shortfalls, surpluses])

which are computed here once: the likelihood's cost no longer depends on the number
of respondents. For an ordinal outcome, identical rows (segment, features, answer)
are aggregated into patterns with summed weights.

Missing answers are handled, not dropped:

* a missing expectation or perception answer (``missing="model"``, the default):
  the respondent's likelihood is a mixture over the likely values of the missing
  answers given their other answers (see :mod:`.missing`); such
  respondents are kept apart in :class:`~.expectations_missing.IncompleteRows` and
  the sufficient statistics hold the complete respondents only.
  ``missing="mean_imputation"`` (for comparison only: it attenuates the slopes)
  measures a missing expectation against the segment's mean expectation and sets the
  shortfall and surplus of a missing perception to the segment's means;
* outcome missing: a construct score is the mean of the answered items; a
  respondent with no outcome answer at all stays in the gap table but not in the
  likelihood (counted in ``notes``).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxlib.errors import ModelSpecificationError
from cxlib.models.base import as_frame, frame_hash
from cxlib.models.expectations.missing import (
    IncompleteRows,
    fit_item_model,
    missing_value_combinations,
)
from cxlib.study import Study

__all__ = ["GAP_STATS", "MISSING_ROUTES", "ExpectationsData", "prepare_expectations_data"]

#: How missing attribute answers enter the likelihood.
MISSING_ROUTES = ("model", "mean_imputation")

#: Columns of the per-(segment, attribute) gap statistics.
GAP_STATS = (
    "n_respondents",
    "n_gap_answered",
    "n_reference_imputed",
    "n_perception_missing",
    "mean_expectation",
    "se_expectation",
    "mean_perception",
    "se_perception",
    "mean_gap",
    "se_gap",
    "share_shortfall",
    "share_surplus",
    "n_shortfall",
    "n_surplus",
    "share_at_ceiling",
)

ALL = "all segments"


@dataclass
class ExpectationsData:
    """Everything the model and its results need from the data (no respondent rows).

    Attributes
    ----------
    attributes, attribute_labels, attribute_dimensions, references : list of str
        Per attribute: name, label, ``technical``/``emotional`` and what its gap is
        measured against (``expectation``, ``scale midpoint`` or ``segment norm``).
    segments : list of str
        Segment levels (``["all"]`` without a segment column).
    segment_column : str or None
        The segment column used.
    outcome, outcome_kind : str
        The outcome's name and ``construct`` (score = mean of its items) or ``item``.
    outcome_min, outcome_max, top_box_threshold : float
        The outcome's scale and the value above which an answer is in the top two boxes.
    y_center, y_scale : float
        Weighted mean and standard deviation of the outcome (the Gaussian model works
        on the standardized outcome).
    xtwx, xtwy, ytwy : numpy.ndarray
        Per segment sufficient statistics of the standardized outcome with the
        likelihood weights (features ``[1, shortfalls, surpluses]``), over the
        respondents with complete attribute answers.
    sum_w : numpy.ndarray
        Per segment sum of the likelihood weights of all respondents in the likelihood
        (Kish's effective sample size).
    n_likelihood : numpy.ndarray
        Respondents per segment in the likelihood (with an outcome).
    feature_mean, feature_cov : numpy.ndarray
        Per segment weighted mean ``(G, 2A)`` and covariance ``(G, 2A, 2A)`` of the
        gap features over all respondents in the likelihood (missing answers at their
        expected value under the item model).
    population_share : numpy.ndarray
        Each segment's share of the total respondent weight.
    gap_stats : numpy.ndarray
        ``(segments + 1, attributes, len(GAP_STATS))``; the last row is all segments.
    cf_x, cf_segment, cf_weight : numpy.ndarray
        A fixed sample of respondents (features, segment code, weight) for
        counterfactuals that need the distribution (top-2-box changes).
    pat_x, pat_segment, pat_y, pat_w : numpy.ndarray
        Aggregated rows for the ordinal likelihood (empty for the Gaussian one).
    notes : list of str
        What was imputed, left out or flagged.
    data_hash : str
        Hash of the data the statistics came from.
    """

    attributes: list[str]
    attribute_labels: list[str]
    attribute_dimensions: list[str]
    references: list[str]
    segments: list[str]
    segment_column: str | None
    outcome: str
    outcome_kind: str
    outcome_min: float
    outcome_max: float
    top_box_threshold: float
    y_center: float
    y_scale: float
    xtwx: np.ndarray
    xtwy: np.ndarray
    ytwy: np.ndarray
    sum_w: np.ndarray
    n_likelihood: np.ndarray
    population_share: np.ndarray
    gap_stats: np.ndarray
    cf_x: np.ndarray
    cf_segment: np.ndarray
    cf_weight: np.ndarray
    feature_mean: np.ndarray | None = None
    feature_cov: np.ndarray | None = None
    pat_x: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    pat_segment: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pat_y: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pat_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    notes: list[str] = field(default_factory=list)
    data_hash: str = ""
    #: respondent rows (features, standardized outcome, likelihood weight, segment); kept
    #: only for the row-wise likelihood (checks and benchmarks), never saved
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    #: respondents with missing attribute answers (mixture likelihood); never saved
    incomplete: IncompleteRows | None = None
    #: how missing attribute answers were handled (see MISSING_ROUTES)
    missing: str = "model"

    @property
    def features(self) -> list[str]:
        """Feature names: intercept, ``shortfall:<attribute>``, ``surplus:<attribute>``."""
        return (
            ["intercept"]
            + [f"shortfall:{a}" for a in self.attributes]
            + [f"surplus:{a}" for a in self.attributes]
        )

    @property
    def n_outcome_categories(self) -> int:
        """Number of answer options of an item outcome."""
        return int(round(self.outcome_max - self.outcome_min)) + 1

    def feature_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per segment weighted mean ``(G, 2A)`` and covariance ``(G, 2A, 2A)`` of the gap features."""
        if self.feature_mean is not None and self.feature_cov is not None:
            return self.feature_mean, self.feature_cov
        m = self.xtwx[:, 0, 1:] / self.sum_w[:, None]
        second = self.xtwx[:, 1:, 1:] / self.sum_w[:, None, None]
        cov = second - m[:, :, None] * m[:, None, :]
        return m, cov

    def identified(self, min_gaps: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Whether the data inform each penalty and reward, ``(segments + 1, attributes)`` each.

        A slope is informed when at least ``min_gaps`` respondents have a shortfall
        (surplus) on the attribute *and* the shortfall (surplus) varies between
        respondents (a constant feature is absorbed by the intercept). The last row is
        all segments together.
        """
        A = len(self.attributes)
        _, cov = self.feature_moments()
        var = np.stack([np.diagonal(c) for c in cov])  # (G, 2A)
        var = np.vstack([var, (var * self.population_share[:, None]).sum(0)])
        n_short = self.gap_stats[..., GAP_STATS.index("n_shortfall")]
        n_surp = self.gap_stats[..., GAP_STATS.index("n_surplus")]
        pen = (n_short >= min_gaps) & (var[:, :A] > 1e-9)
        rew = (n_surp >= min_gaps) & (var[:, A:] > 1e-9)
        return pen, rew

    def gap_frame(self) -> pd.DataFrame:
        """The gap statistics as a tidy frame (one row per segment and attribute)."""
        segs = [*self.segments, ALL]
        rows = []
        for gi, g in enumerate(segs):
            for ai, a in enumerate(self.attributes):
                row = {
                    "segment": g,
                    "attribute": a,
                    "label": self.attribute_labels[ai],
                    "dimension": self.attribute_dimensions[ai],
                    "reference": self.references[ai],
                }
                row.update(dict(zip(GAP_STATS, self.gap_stats[gi, ai].tolist(), strict=True)))
                rows.append(row)
        out = pd.DataFrame(rows)
        for c in ("n_respondents", "n_gap_answered", "n_reference_imputed"):
            out[c] = out[c].astype(int)
        for c in ("n_perception_missing", "n_shortfall", "n_surplus"):
            out[c] = out[c].astype(int)
        return out

    # -- storage in InferenceData.constant_data ---------------------------------
    def to_dataset(self):
        """The statistics as an xarray Dataset (stored in ``idata.constant_data``)."""
        import xarray as xr

        feats = self.features
        meta = {
            k: getattr(self, k)
            for k in (
                "attribute_labels",
                "attribute_dimensions",
                "references",
                "segment_column",
                "outcome",
                "outcome_kind",
                "outcome_min",
                "outcome_max",
                "top_box_threshold",
                "y_center",
                "y_scale",
                "notes",
                "data_hash",
                "missing",
            )
        }
        return xr.Dataset(
            {
                "xtwx": (("segments", "feature", "feature_col"), self.xtwx),
                "xtwy": (("segments", "feature"), self.xtwy),
                "ytwy": (("segments",), self.ytwy),
                "sum_w": (("segments",), self.sum_w),
                "n_likelihood": (("segments",), self.n_likelihood.astype(np.int64)),
                "population_share": (("segments",), self.population_share),
                "gap_stats": (("gap_segment", "attributes", "gap_stat"), self.gap_stats),
                "cf_x": (("cf_row", "feature"), self.cf_x),
                "cf_segment": (("cf_row",), self.cf_segment.astype(np.int64)),
                "cf_weight": (("cf_row",), self.cf_weight),
                "feature_mean": (("segments", "gap_feature"), self.feature_moments()[0]),
                "feature_cov": (
                    ("segments", "gap_feature", "gap_feature_col"),
                    self.feature_moments()[1],
                ),
            },
            coords={
                "segments": self.segments,
                "feature": feats,
                "feature_col": feats,
                "gap_feature": feats[1:],
                "gap_feature_col": feats[1:],
                "attributes": self.attributes,
                "gap_segment": [*self.segments, ALL],
                "gap_stat": list(GAP_STATS),
            },
            attrs={"expectations_meta": json.dumps(meta, default=float)},
        )

    @classmethod
    def from_dataset(cls, ds) -> ExpectationsData:
        """Rebuild from :meth:`to_dataset` output (e.g. a loaded ``constant_data``)."""
        meta: dict[str, Any] = json.loads(ds.attrs["expectations_meta"])
        return cls(
            attributes=[str(a) for a in ds["attributes"].values],
            segments=[str(s) for s in ds["segments"].values],
            xtwx=np.asarray(ds["xtwx"].values, dtype=float),
            xtwy=np.asarray(ds["xtwy"].values, dtype=float),
            ytwy=np.asarray(ds["ytwy"].values, dtype=float),
            sum_w=np.asarray(ds["sum_w"].values, dtype=float),
            n_likelihood=np.asarray(ds["n_likelihood"].values, dtype=np.int64),
            population_share=np.asarray(ds["population_share"].values, dtype=float),
            gap_stats=np.asarray(ds["gap_stats"].values, dtype=float),
            cf_x=np.asarray(ds["cf_x"].values, dtype=float),
            cf_segment=np.asarray(ds["cf_segment"].values, dtype=np.int64),
            cf_weight=np.asarray(ds["cf_weight"].values, dtype=float),
            feature_mean=(
                np.asarray(ds["feature_mean"].values, dtype=float) if "feature_mean" in ds else None
            ),
            feature_cov=(
                np.asarray(ds["feature_cov"].values, dtype=float) if "feature_cov" in ds else None
            ),
            **meta,
        )


# ---------------------------------------------------------------------------- helpers
def _did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _column(frame: pd.DataFrame, name: str, role: str) -> np.ndarray:
    if name not in frame.columns:
        raise ModelSpecificationError(
            f"{role} column {name!r} is not in the data{_did_you_mean(name, frame.columns)}"
        )
    col = frame[name]
    if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
        raise ModelSpecificationError(
            f"{role} column {name!r} is not numeric (dtype {col.dtype}); recode it as numbers"
        )
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _group_sum(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=n_groups)


def _weighted_group_mean(codes, x, w, n_groups):
    """Per group weighted mean, its standard error and count over finite ``x``; plus all groups."""
    ok = np.isfinite(x)
    ww = np.where(ok, w, 0.0)
    xx = np.where(ok, x, 0.0)
    sw = np.append(_group_sum(codes, ww, n_groups), ww.sum())
    swx = np.append(_group_sum(codes, ww * xx, n_groups), (ww * xx).sum())
    cnt = np.append(_group_sum(codes, ok.astype(float), n_groups), ok.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = swx / sw
    # standard error of a weighted mean (Bayesian bootstrap / sandwich approximation)
    mean_i = np.where(ok, mean[codes], 0.0)
    mean_all = np.where(ok, mean[-1], 0.0)
    r2 = np.append(_group_sum(codes, (ww * (xx - mean_i)) ** 2, n_groups), 0.0)
    r2[-1] = ((ww * (xx - mean_all)) ** 2).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(r2) / sw
    return mean, se, cnt


def _segment_codes(frame: pd.DataFrame, study: Study, segment, notes: list[str]):
    if segment is None:
        segment = next((c for c in study.segment_columns if c in frame.columns), False)
    if segment is False:
        return np.zeros(len(frame), dtype=np.int64), ["all"], None
    if segment not in frame.columns:
        raise ModelSpecificationError(
            f"segment column {segment!r} is not in the data{_did_you_mean(segment, frame.columns)}"
        )
    col = frame[segment]
    declared = study.columns.segments.get(segment) or []
    if isinstance(col.dtype, pd.CategoricalDtype):
        order = [str(c) for c in col.cat.categories]
    else:
        order = sorted(col.dropna().astype(str).unique().tolist())
    order = [g for g in declared if g in order] + [g for g in order if g not in declared]
    values = col.astype(object).where(col.notna(), None)
    present = set(values.dropna().astype(str).unique())
    levels = [g for g in order if g in present]
    lookup = {g: i for i, g in enumerate(levels)}
    codes = values.map(lambda v: lookup.get(str(v), -1) if v is not None else -1).to_numpy()
    n_na = int((codes < 0).sum())
    if n_na:
        notes.append(f"{n_na} respondent(s) without a {segment!r} value were left out")
    if not levels:
        raise ModelSpecificationError(f"segment column {segment!r} has no values")
    return codes.astype(np.int64), levels, segment


def _weights(frame: pd.DataFrame, study: Study, weights, from_survey: bool) -> np.ndarray:
    if weights is None:
        wcol = study.columns.weight
        weights = wcol if wcol and wcol in frame.columns else False
    if weights is False:
        return np.ones(len(frame))
    if isinstance(weights, str):
        w = _column(frame, weights, "weight")
    else:
        w = np.asarray(weights, dtype=float).ravel()
        if w.size != len(frame):
            raise ModelSpecificationError(
                f"weights has {w.size} values but the data have {len(frame)} rows"
            )
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise ModelSpecificationError(
            f"respondent weights must be finite and not negative; rows {bad[:5].tolist()} "
            f"are not ({bad.size} in all)"
        )
    return w


def outcome_items(study: Study, outcome: str) -> tuple[str, list[str]]:
    """The outcome's kind (``construct`` or ``item``) and its item names.

    Raises
    ------
    ModelSpecificationError
        When ``outcome`` is neither a construct nor an item of the study, or a
        construct's items are on different scales.
    """
    if outcome in study.constructs:
        return "construct", study.constructs[outcome].item_names
    if outcome in study.all_items:
        return "item", [outcome]
    raise ModelSpecificationError(
        f"outcome {outcome!r} is neither a construct nor an item of study {study.name!r}"
        + _did_you_mean(outcome, [*study.constructs, *study.all_items])
    )


# ---------------------------------------------------------------------------- main
def prepare_expectations_data(
    data,
    study: Study,
    outcome: str,
    *,
    segment: str | bool | None = None,
    weights=None,
    reference: str = "midpoint",
    family: str = "normal",
    n_counterfactual: int = 1000,
    seed: int = 0,
    keep_rows: bool = False,
    missing: str = "model",
) -> ExpectationsData:
    """Validate the data and compute gaps, features and sufficient statistics.

    Parameters
    ----------
    data : pandas.DataFrame or cxlib.data.SurveyData
        One row per respondent, analysis-ready (reverse-coded items reversed).
    study : Study
        The study spec (attributes, items, scales, columns).
    outcome : str
        A construct (its score is the mean of its answered items) or an item.
    segment : str, False or None
        Segment column; None takes the study's first segment column, False none.
    weights : str, array-like, False or None
        Respondent weights: a column, an array, False for none, None for the study's
        weight column.
    reference : {"midpoint", "segment_norm"}
        What the gap of an attribute without an expectation item is measured against.
    family : {"normal", "ordinal"}
        ``ordinal`` also aggregates identical rows into weighted patterns.
    n_counterfactual : int
        Respondents per segment kept for distributional counterfactuals.
    seed : int
        Seed of that sample.
    keep_rows : bool
        Keep the respondent rows (for the row-wise likelihood).
    missing : {"model", "mean_imputation"}
        How missing attribute answers enter the likelihood: integrated over their
        distribution given the respondent's other answers (default), or the old mean
        imputation within the segment (biased; kept for comparison).

    Returns
    -------
    ExpectationsData

    Raises
    ------
    ModelSpecificationError
        Naming the column at fault: a missing column, a constant outcome, an
        attribute nobody answered, invalid weights, too few respondents.
    """
    if missing not in MISSING_ROUTES:
        raise ModelSpecificationError(
            f"missing={missing!r} is not supported; use one of {', '.join(MISSING_ROUTES)}"
        )
    frame, file_hash = as_frame(data)
    notes: list[str] = []
    if not study.attributes:
        raise ModelSpecificationError(
            f"study {study.name!r} declares no attributes; add expectation/perception "
            "pairs under 'attributes' in the spec"
        )
    kind, y_items = outcome_items(study, outcome)
    codes, segments, seg_col = _segment_codes(frame, study, segment, notes)
    n_groups = len(segments)
    w = _weights(frame, study, weights, file_hash is not None)
    in_segment = codes >= 0
    codes_safe = np.where(in_segment, codes, 0)
    w_seg = np.where(in_segment, w, 0.0)

    # -- outcome
    ymat = np.column_stack([_column(frame, it, f"outcome {outcome!r} item") for it in y_items])
    if kind == "construct":
        # a construct score: the mean of its answered items, each rescaled to 0-100
        # (as cxlib.insights' loyalty index), so items on different scales can mix
        lo = np.array([study.item(it).scale.min for it in y_items], dtype=float)
        hi = np.array([study.item(it).scale.max for it in y_items], dtype=float)
        ymat = 100.0 * (ymat - lo) / (hi - lo)
    answered = np.isfinite(ymat)
    with np.errstate(invalid="ignore"):
        y = np.where(answered.any(1), np.nansum(ymat, 1) / np.maximum(answered.sum(1), 1), np.nan)
    oscale = study.item(y_items[0]).scale
    if kind == "construct":
        # top two boxes of the construct's most common scale, on 0-100
        common = max(
            {str(study.item(i).scale) for i in y_items},
            key=[str(study.item(i).scale) for i in y_items].count,
        )
        sc = next(study.item(i).scale for i in y_items if str(study.item(i).scale) == common)
        step = 100.0 / (sc.max - sc.min)
        out_min, out_max = 0.0, 100.0
        top_box = 100.0 - step - 0.5 * step / len(y_items)
    else:
        out_min, out_max = float(oscale.min), float(oscale.max)
        top_box = oscale.max - 1.5

    # -- attributes: gaps and features
    names = list(study.attributes)
    A = len(names)
    n = len(frame)
    S = np.zeros((n, A))
    U = np.zeros((n, A))
    gap_stats = np.full((n_groups + 1, A, len(GAP_STATS)), np.nan)
    references = []
    stat = {k: i for i, k in enumerate(GAP_STATS)}
    n_resp = np.append(_group_sum(codes_safe, in_segment.astype(float), n_groups), in_segment.sum())
    n_imputed_total = 0
    # the answers behind each gap, for the model of the items (missing="model")
    item_names: list[str] = []
    item_values: list[np.ndarray] = []
    item_levels: list[np.ndarray] = []
    item_of = np.full((A, 2), -1, dtype=np.int64)  # (perception, expectation) columns
    fixed_ref = np.full((n, A), np.nan)  # reference of an attribute without expectation
    affected = np.zeros((n, A), dtype=bool)  # a missing answer behind the gap
    for ai, name in enumerate(names):
        attr = study.attributes[name]
        scale = study.item(attr.perception).scale
        p = _column(frame, attr.perception, f"attribute {name!r} perception")
        p = np.where(in_segment, p, np.nan)
        if not np.isfinite(p).any():
            raise ModelSpecificationError(
                f"attribute {name!r}: nobody answered its perception item {attr.perception!r}; "
                "leave the attribute out of the study or check the column"
            )
        if attr.expectation is not None:
            e = np.where(
                in_segment,
                _column(frame, attr.expectation, f"attribute {name!r} expectation"),
                np.nan,
            )
            if not np.isfinite(e).any():
                raise ModelSpecificationError(
                    f"attribute {name!r}: nobody answered its expectation item {attr.expectation!r}"
                )
            e_mean, e_se, _ = _weighted_group_mean(codes_safe, e, w_seg, n_groups)
            e_norm = np.where(np.isfinite(e_mean[:-1]), e_mean[:-1], e_mean[-1])
            ref = np.where(np.isfinite(e), e, e_norm[codes_safe])
            ref_imputed = np.isfinite(p) & ~np.isfinite(e)
            references.append("expectation")
            observed_gap = p - e
            at_ceiling = np.where(np.isfinite(e), (e >= scale.max).astype(float), np.nan)
        else:
            e = np.full(n, np.nan)
            e_mean = e_se = np.full(n_groups + 1, np.nan)
            if reference == "midpoint":
                ref = np.full(n, scale.midpoint)
                references.append("scale midpoint")
            else:
                p_mean, _, _ = _weighted_group_mean(codes_safe, p, w_seg, n_groups)
                p_norm = np.where(np.isfinite(p_mean[:-1]), p_mean[:-1], p_mean[-1])
                ref = p_norm[codes_safe]
                references.append("segment norm")
            ref_imputed = np.zeros(n, dtype=bool)
            observed_gap = p - ref
            at_ceiling = np.where(np.isfinite(p), (p >= scale.max).astype(float), np.nan)
        levels = np.arange(scale.min, scale.max + 1, dtype=float)
        item_of[ai, 0] = len(item_names)
        item_names.append(attr.perception)
        item_values.append(p)
        item_levels.append(levels)
        if attr.expectation is not None:
            item_of[ai, 1] = len(item_names)
            item_names.append(attr.expectation)
            item_values.append(e)
            item_levels.append(levels)
            affected[:, ai] = in_segment & ~(np.isfinite(p) & np.isfinite(e))
        else:
            fixed_ref[:, ai] = ref
            affected[:, ai] = in_segment & ~np.isfinite(p)
        gap = p - ref
        s = np.maximum(-gap, 0.0)
        u = np.maximum(gap, 0.0)
        s_mean, _, _ = _weighted_group_mean(codes_safe, s, w_seg, n_groups)
        u_mean, _, _ = _weighted_group_mean(codes_safe, u, w_seg, n_groups)
        s_fill = np.where(np.isfinite(s_mean[:-1]), s_mean[:-1], s_mean[-1])
        u_fill = np.where(np.isfinite(u_mean[:-1]), u_mean[:-1], u_mean[-1])
        p_missing = ~np.isfinite(p)
        S[:, ai] = np.where(p_missing, s_fill[codes_safe], s)
        U[:, ai] = np.where(p_missing, u_fill[codes_safe], u)
        n_imputed_total += int((p_missing & in_segment).sum())

        p_mean, p_se, _ = _weighted_group_mean(codes_safe, p, w_seg, n_groups)
        g_mean, g_se, g_cnt = _weighted_group_mean(codes_safe, observed_gap, w_seg, n_groups)
        short = np.where(np.isfinite(observed_gap), (observed_gap < 0).astype(float), np.nan)
        surp = np.where(np.isfinite(observed_gap), (observed_gap > 0).astype(float), np.nan)
        sh_mean, _, _ = _weighted_group_mean(codes_safe, short, w_seg, n_groups)
        su_mean, _, _ = _weighted_group_mean(codes_safe, surp, w_seg, n_groups)
        ceil_mean, _, _ = _weighted_group_mean(codes_safe, at_ceiling, w_seg, n_groups)
        gs = gap_stats[:, ai]
        gs[:, stat["n_respondents"]] = n_resp
        gs[:, stat["n_gap_answered"]] = g_cnt
        imp = (ref_imputed & in_segment).astype(float)
        gs[:, stat["n_reference_imputed"]] = np.append(
            _group_sum(codes_safe, imp, n_groups), imp.sum()
        )
        pm_ = (p_missing & in_segment).astype(float)
        gs[:, stat["n_perception_missing"]] = np.append(
            _group_sum(codes_safe, pm_, n_groups), pm_.sum()
        )
        gs[:, stat["mean_expectation"]] = e_mean
        gs[:, stat["se_expectation"]] = e_se
        gs[:, stat["mean_perception"]] = p_mean
        gs[:, stat["se_perception"]] = p_se
        gs[:, stat["mean_gap"]] = g_mean
        gs[:, stat["se_gap"]] = g_se
        gs[:, stat["share_shortfall"]] = sh_mean
        gs[:, stat["share_surplus"]] = su_mean
        ns = (np.nan_to_num(short) * in_segment).astype(float)
        nu = (np.nan_to_num(surp) * in_segment).astype(float)
        gs[:, stat["n_shortfall"]] = np.append(_group_sum(codes_safe, ns, n_groups), ns.sum())
        gs[:, stat["n_surplus"]] = np.append(_group_sum(codes_safe, nu, n_groups), nu.sum())
        gs[:, stat["share_at_ceiling"]] = ceil_mean
        if references[-1] != "expectation":
            notes.append(
                f"attribute {name!r} has no expectation item: its gap is measured against the "
                f"{references[-1]}"
            )
    n_ref_imp = int(gap_stats[-1, :, stat["n_reference_imputed"]].sum())
    if missing == "mean_imputation":
        if n_ref_imp:
            notes.append(
                f"{n_ref_imp} missing expectation answer(s) were replaced by the segment's mean "
                "expectation"
            )
        if n_imputed_total:
            notes.append(
                f"{n_imputed_total} missing perception answer(s): the shortfall and surplus were "
                "set to the segment's mean"
            )

    # -- likelihood rows
    keep = in_segment & np.isfinite(y) & (w > 0)
    n_no_outcome = int((in_segment & ~np.isfinite(y)).sum())
    if n_no_outcome:
        notes.append(
            f"{n_no_outcome} respondent(s) did not answer the outcome {outcome!r}: they are in the "
            "gap table but not in the model"
        )
    if keep.sum() < 10:
        raise ModelSpecificationError(
            f"only {int(keep.sum())} respondent(s) have an answer to the outcome {outcome!r}; "
            "the model needs at least 10"
        )
    yk, wk, ck = y[keep], w[keep], codes[keep]
    if missing == "model":
        # the gaps of attributes with a missing answer are integrated out (mixture
        # likelihood): zero here, added per combination of the missing answers
        S = np.where(affected, 0.0, S)
        U = np.where(affected, 0.0, U)
    Xk = np.column_stack([np.ones(yk.size), S[keep], U[keep]])
    y_center = float(np.average(yk, weights=wk))
    y_var = float(np.average((yk - y_center) ** 2, weights=wk))
    if y_var <= 1e-12 * max(1.0, y_center**2):
        raise ModelSpecificationError(
            f"outcome {outcome!r} ({', '.join(y_items)}) has the same value ({yk[0]:g}) for every "
            "respondent: there is no variation for the gaps to explain; choose another outcome"
        )
    y_scale = float(np.sqrt(y_var))
    ys = (yk - y_center) / y_scale
    # likelihood weights: within each segment, scaled to sum to Kish's effective size
    sw = _group_sum(ck, wk, n_groups)
    sw2 = _group_sum(ck, wk**2, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(sw2 > 0, sw / sw2, 0.0)
    wl = wk * factor[ck]
    K = Xk.shape[1]
    # respondents with a missing answer behind a gap (missing="model"): mixture likelihood
    is_incomplete = affected[keep].any(1) if missing == "model" else np.zeros(yk.size, bool)
    incomplete = None
    if is_incomplete.any():
        item_model = fit_item_model(
            np.column_stack(item_values), codes, n_groups, item_names, item_levels
        )
        incomplete = _incomplete_rows(
            item_model,
            np.column_stack(item_values)[keep][is_incomplete],
            ck[is_incomplete],
            Xk[is_incomplete],
            ys[is_incomplete],
            wl[is_incomplete],
            item_of,
            fixed_ref[keep][is_incomplete],
        )
        n_answers = int((~np.isfinite(np.column_stack(item_values)[keep])).sum())
        notes.append(
            f"{incomplete.n_rows} respondent(s) with {n_answers} missing expectation or "
            "perception answer(s): their likelihood averages over the likely values of the "
            "missing answers given their other answers (a normal model of the items per "
            "segment), instead of imputing them"
        )
    xtwx = np.zeros((n_groups, K, K))
    xtwy = np.zeros((n_groups, K))
    ytwy = np.zeros(n_groups)
    for g in range(n_groups):
        m = (ck == g) & ~is_incomplete
        Xg, wg, yg = Xk[m], wl[m], ys[m]
        xtwx[g] = (Xg * wg[:, None]).T @ Xg
        xtwy[g] = Xg.T @ (wg * yg)
        ytwy[g] = float(wg @ (yg * yg))
    n_lik = np.bincount(ck, minlength=n_groups)
    empty = [segments[g] for g in range(n_groups) if n_lik[g] == 0]
    if empty:
        raise ModelSpecificationError(
            f"segment(s) {empty} have no respondent with an outcome answer; "
            "leave them out (filter the data) or merge them with another segment"
        )
    share = sw / sw.sum()
    # moments of the features over everyone in the likelihood (expected values for the
    # incomplete respondents)
    sum_w = np.bincount(ck, weights=wl, minlength=n_groups)
    second = xtwx.copy()
    X_cf = Xk.copy()
    if incomplete is not None:
        _, second_inc = incomplete.expected_features(2 * A)
        second[: second_inc.shape[0]] += second_inc
        X_cf[is_incomplete] = incomplete.sample_features(2 * A, np.random.default_rng(seed + 1))
    feature_mean = second[:, 0, 1:] / sum_w[:, None]
    feature_cov = second[:, 1:, 1:] / sum_w[:, None, None] - (
        feature_mean[:, :, None] * feature_mean[:, None, :]
    )

    # -- counterfactual sample
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        idx = np.flatnonzero(ck == g)
        if idx.size > n_counterfactual:
            idx = np.sort(rng.choice(idx, size=n_counterfactual, replace=False))
        rows.append(idx)
    cf = np.concatenate(rows)

    d = ExpectationsData(
        attributes=names,
        attribute_labels=[study.attributes[a].label or a for a in names],
        attribute_dimensions=[study.attributes[a].dimension for a in names],
        references=references,
        segments=[str(s) for s in segments],
        segment_column=seg_col,
        outcome=outcome,
        outcome_kind=kind,
        outcome_min=out_min,
        outcome_max=out_max,
        top_box_threshold=float(top_box),
        y_center=y_center,
        y_scale=y_scale,
        xtwx=xtwx,
        xtwy=xtwy,
        ytwy=ytwy,
        sum_w=sum_w,
        n_likelihood=n_lik,
        population_share=share,
        gap_stats=gap_stats,
        cf_x=X_cf[cf],
        cf_segment=ck[cf],
        cf_weight=wk[cf],
        feature_mean=feature_mean,
        feature_cov=feature_cov,
        notes=notes,
        incomplete=incomplete,
        missing=missing,
        data_hash=file_hash
        or frame_hash(
            frame[[c for c in frame.columns if c in _used(study, y_items, seg_col, weights)]]
        ),
    )
    if keep_rows:
        c = ~is_incomplete
        d.rows = (Xk[c], ys[c], wl[c], ck[c])
    if family == "ordinal":
        if kind != "item":
            raise ModelSpecificationError(
                f"family='ordinal' needs a single item as the outcome; {outcome!r} is a construct "
                "(use family='normal' for its score, or name one of its items)"
            )
        yi = np.rint(yk - oscale.min).astype(np.int64)
        if incomplete is not None:
            incomplete.y = yi[is_incomplete].astype(float)
        c = ~is_incomplete
        table = np.column_stack([ck[c].astype(float), Xk[c, 1:], yi[c].astype(float)])
        uniq, inverse = np.unique(table, axis=0, return_inverse=True)
        d.pat_segment = uniq[:, 0].astype(np.int64)
        d.pat_x = np.column_stack([np.ones(len(uniq)), uniq[:, 1:-1]])
        d.pat_y = uniq[:, -1].astype(np.int64)
        d.pat_w = np.bincount(inverse.ravel(), weights=wl[c], minlength=len(uniq))
    return d


def _incomplete_rows(
    item_model,
    values: np.ndarray,
    segment: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    item_of: np.ndarray,
    fixed_ref: np.ndarray,
) -> IncompleteRows:
    """Combinations of the missing answers and the gap features they imply.

    Respondents sharing a segment and a pattern of missing items are handled together.
    """
    A = item_of.shape[0]
    miss = ~np.isfinite(values)
    keys = np.column_stack([segment, miss]).astype(np.int64)
    patterns, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    # affected attributes of each pattern: a missing perception or expectation
    p_col, e_col = item_of[:, 0], item_of[:, 1]
    rows_out, short_out, surp_out, logp_out, attr_out = [], [], [], [], []
    n_entries = 1
    for k, key in enumerate(patterns):
        g, pat = int(key[0]), key[1:].astype(bool)
        idx = np.flatnonzero(inverse == k)
        combos, logp = missing_value_combinations(item_model, g, values[idx], pat)
        R, K = logp.shape
        pos = np.full(values.shape[1], -1)
        pos[pat] = np.arange(pat.sum())
        attrs = [a for a in range(A) if pat[p_col[a]] or (e_col[a] >= 0 and pat[e_col[a]])]
        short = np.zeros((R, K, len(attrs)))
        surp = np.zeros((R, K, len(attrs)))
        for t, a in enumerate(attrs):
            if pat[p_col[a]]:
                per = combos[:, :, pos[p_col[a]]]
            else:
                per = np.broadcast_to(values[idx, p_col[a]][:, None], (R, K))
            if e_col[a] < 0:
                ref = np.broadcast_to(fixed_ref[idx, a][:, None], (R, K))
            elif pat[e_col[a]]:
                ref = combos[:, :, pos[e_col[a]]]
            else:
                ref = np.broadcast_to(values[idx, e_col[a]][:, None], (R, K))
            gap = per - ref
            short[:, :, t] = np.maximum(-gap, 0.0)
            surp[:, :, t] = np.maximum(gap, 0.0)
        ok = np.isfinite(logp)
        rows_out.append(np.broadcast_to(idx[:, None], (R, K))[ok])
        short_out.append(short[ok])
        surp_out.append(surp[ok])
        logp_out.append(logp[ok])
        attr_out.append((idx, attrs))
        n_entries = max(n_entries, len(attrs))
    C = sum(r.size for r in rows_out)
    shortfall = np.zeros((C, n_entries))
    surplus = np.zeros((C, n_entries))
    attribute = np.full((x.shape[0], n_entries), -1, dtype=np.int64)
    at = 0
    for sh, su, (idx, attrs) in zip(short_out, surp_out, attr_out, strict=True):
        shortfall[at : at + sh.shape[0], : sh.shape[1]] = sh
        surplus[at : at + su.shape[0], : su.shape[1]] = su
        attribute[idx, : len(attrs)] = attrs
        at += sh.shape[0]
    row = np.concatenate(rows_out)
    order = np.argsort(row, kind="stable")
    return IncompleteRows(
        x=x,
        y=y,
        w=w,
        segment=segment.astype(np.int64),
        attribute=attribute,
        combo_row=row[order],
        combo_shortfall=shortfall[order],
        combo_surplus=surplus[order],
        combo_logp=np.concatenate(logp_out)[order],
    )


def _used(study: Study, y_items: list[str], seg_col: str | None, weights) -> set[str]:
    cols = set(y_items)
    for attr in study.attributes.values():
        cols.add(attr.perception)
        if attr.expectation:
            cols.add(attr.expectation)
    if seg_col:
        cols.add(seg_col)
    if isinstance(weights, str):
        cols.add(weights)
    elif weights is None and study.columns.weight:
        cols.add(study.columns.weight)
    return cols
