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

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.errors import ModelSpecificationError, did_you_mean
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


@dataclass
class ExpectationsData:
    """Everything the model and its results need from the data (no respondent rows).

    Attributes
    ----------
    attributes, attribute_labels, attribute_dimensions, references : list of str
        Per attribute: name, label, ``technical``/``emotional`` and what its gap is
        measured against (``expectation``, ``scale midpoint`` or ``segment norm``).
    segments : list of str
        Segment levels (``[config.EVERYONE]`` without a segment column).
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
        ``(segments + 1, attributes, len(GAP_STATS))``; the last row is everyone (pooled).
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

    def segment_rows(self) -> tuple[list[int], list[str]]:
        """Which entries of a ``segments + everyone`` axis a table shows, and their labels.

        Per-segment arrays carry the segments and then everyone (pooled by population
        share); a table shows each segment and ``config.EVERYONE``. Without segments
        the one segment is everyone, so only the pooled entry is shown.
        """
        G = len(self.segments)
        if G == 1:
            return [G], [config.EVERYONE]
        return list(range(G + 1)), [*self.segments, config.EVERYONE]

    def gap_frame(self) -> pd.DataFrame:
        """The gap statistics as a tidy frame (one row per segment and attribute)."""
        rows = []
        for gi, g in zip(*self.segment_rows(), strict=True):
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
                "gap_segment": np.arange(len(self.segments) + 1),
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
def _column(frame: pd.DataFrame, name: str, role: str) -> np.ndarray:
    if name not in frame.columns:
        raise ModelSpecificationError(
            f"{role} column {name!r} is not in the data{did_you_mean(name, frame.columns, parens=True)}"
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
        return np.zeros(len(frame), dtype=np.int64), [config.EVERYONE], None
    if segment not in frame.columns:
        raise ModelSpecificationError(
            f"segment column {segment!r} is not in the data{did_you_mean(segment, frame.columns, parens=True)}"
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
        + did_you_mean(outcome, [*study.constructs, *study.all_items], parens=True)
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
    notes: list[str] = []
    frame, file_hash = _step01_inputs(data, study, missing)
    kind, y_items = outcome_items(study, outcome)
    seg = _step02_segments(frame, study, segment, weights, file_hash, notes)
    out = _step03_outcome(frame, study, outcome, kind, y_items)
    cols = _step04_attributes(frame, study, seg, reference, notes)
    _step05_imputation_notes(cols, missing, notes)
    lik = _step06_likelihood_rows(seg, out, cols, missing, notes)
    incomplete = _step07_incomplete_rows(lik, seg, cols.items, notes)
    suff = _step08_sufficient_statistics(lik, seg)
    moments = _step09_feature_moments(lik, seg, suff, incomplete, cols.n_features, seed)
    cf = _step10_counterfactual_sample(lik.codes, seg.n_groups, n_counterfactual, seed)
    d = _step11_assemble(
        study,
        seg,
        out,
        cols,
        lik,
        suff,
        moments,
        cf,
        notes=notes,
        incomplete=incomplete,
        missing=missing,
        data_hash=file_hash or _data_hash(frame, study, out.items, seg.column, weights),
    )
    if keep_rows:
        d.rows = lik.complete_rows()
    if family == "ordinal":
        _step12_ordinal_patterns(d, out, lik, incomplete)
    return d


# ---------------------------------------------------------------------------- steps
@dataclass
class _Segments:
    """Segment code (-1: left out) and weight of every respondent."""

    codes: np.ndarray
    levels: list[str]
    column: str | None
    w: np.ndarray
    #: whether each respondent is in a segment
    in_segment: np.ndarray = field(init=False)
    #: segment codes with the left-out respondents at 0 (their weight ``w_seg`` is 0)
    codes_safe: np.ndarray = field(init=False)
    w_seg: np.ndarray = field(init=False)

    def __post_init__(self):
        self.in_segment = self.codes >= 0
        self.codes_safe = np.where(self.in_segment, self.codes, 0)
        self.w_seg = np.where(self.in_segment, self.w, 0.0)

    @property
    def n_groups(self) -> int:
        """Number of segments."""
        return len(self.levels)


@dataclass
class _OutcomeValues:
    """The outcome per respondent (NaN: not answered) and its scale."""

    name: str
    kind: str
    items: list[str]
    y: np.ndarray
    item_min: float
    out_min: float
    out_max: float
    top_box: float


@dataclass
class _Reference:
    """What one attribute's gap is measured against, and its expectation statistics."""

    label: str
    e: np.ndarray
    e_mean: np.ndarray
    e_se: np.ndarray
    ref: np.ndarray
    ref_imputed: np.ndarray
    observed_gap: np.ndarray
    at_ceiling: np.ndarray


@dataclass
class _ItemAnswers:
    """The answers behind the gaps, for the model of the items (``missing="model"``)."""

    names: list[str]
    values: list[np.ndarray]
    levels: list[np.ndarray]
    #: (attributes, 2) the (perception, expectation) column of each attribute (-1: none)
    item_of: np.ndarray
    #: (n, attributes) the reference of an attribute without an expectation item
    fixed_ref: np.ndarray
    #: (n, attributes) a missing answer behind the gap
    affected: np.ndarray

    @classmethod
    def empty(cls, n: int, n_attributes: int) -> _ItemAnswers:
        """No answers yet, for ``n`` respondents."""
        return cls(
            names=[],
            values=[],
            levels=[],
            item_of=np.full((n_attributes, 2), -1, dtype=np.int64),
            fixed_ref=np.full((n, n_attributes), np.nan),
            affected=np.zeros((n, n_attributes), dtype=bool),
        )

    def add(self, name: str, values: np.ndarray, levels: np.ndarray) -> int:
        """Append an item's answers; returns its column."""
        self.names.append(name)
        self.values.append(values)
        self.levels.append(levels)
        return len(self.names) - 1


@dataclass
class _AttributeColumns:
    """Per attribute: reference, shortfall ``S`` and surplus ``U`` columns, gap statistics."""

    names: list[str]
    references: list[str]
    S: np.ndarray
    U: np.ndarray
    gap_stats: np.ndarray
    items: _ItemAnswers
    n_perception_imputed: int = 0

    @property
    def n_features(self) -> int:
        """Number of gap features (``2 * attributes``)."""
        return 2 * len(self.names)


@dataclass
class _LikelihoodRows:
    """The respondents in the likelihood: features, standardized outcome, weights."""

    keep: np.ndarray
    y: np.ndarray
    w: np.ndarray
    codes: np.ndarray
    X: np.ndarray
    y_center: float
    y_scale: float
    ys: np.ndarray
    #: per segment sum of the respondent weights
    sw: np.ndarray
    #: likelihood weights (Kish)
    wl: np.ndarray
    is_incomplete: np.ndarray

    def complete_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Features, standardized outcome, likelihood weight and segment of the complete rows."""
        c = ~self.is_incomplete
        return self.X[c], self.ys[c], self.wl[c], self.codes[c]


@dataclass
class _SufficientStatistics:
    """Per segment ``X'WX``, ``X'Wy``, ``y'Wy`` of the complete rows and respondent counts."""

    xtwx: np.ndarray
    xtwy: np.ndarray
    ytwy: np.ndarray
    n_lik: np.ndarray


@dataclass
class _FeatureMoments:
    """Per segment weight sum, feature mean and covariance; features of the counterfactuals."""

    sum_w: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    X_cf: np.ndarray


def _step01_inputs(data, study: Study, missing: str) -> tuple[pd.DataFrame, str | None]:
    """Check the missing route and the study, and read the respondent frame."""
    if missing not in MISSING_ROUTES:
        raise ModelSpecificationError(
            f"missing={missing!r} is not supported; use one of {', '.join(MISSING_ROUTES)}"
        )
    frame, file_hash = as_frame(data)
    if not study.attributes:
        raise ModelSpecificationError(
            f"study {study.name!r} declares no attributes; add expectation/perception "
            "pairs under 'attributes' in the spec"
        )
    return frame, file_hash


def _step02_segments(frame, study, segment, weights, file_hash, notes) -> _Segments:
    """Segment codes (a note on respondents without one) and respondent weights."""
    codes, levels, column = _segment_codes(frame, study, segment, notes)
    w = _weights(frame, study, weights, file_hash is not None)
    return _Segments(codes=codes, levels=levels, column=column, w=w)


def _step03_outcome(frame, study: Study, outcome: str, kind: str, y_items) -> _OutcomeValues:
    """The outcome's scores (item answer or construct score), scale and top-box threshold."""
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
        # the most common scale; a tie goes to the scale of the earlier item (a set's
        # order would depend on the hash seed)
        scales = [str(study.item(i).scale) for i in y_items]
        common = max(dict.fromkeys(scales), key=scales.count)
        sc = next(study.item(i).scale for i in y_items if str(study.item(i).scale) == common)
        step = 100.0 / (sc.max - sc.min)
        out_min, out_max = 0.0, 100.0
        top_box = 100.0 - step - 0.5 * step / len(y_items)
    else:
        out_min, out_max = float(oscale.min), float(oscale.max)
        top_box = oscale.max - 1.5
    return _OutcomeValues(
        name=outcome,
        kind=kind,
        items=list(y_items),
        y=y,
        item_min=oscale.min,
        out_min=out_min,
        out_max=out_max,
        top_box=top_box,
    )


def _step04_attributes(frame, study: Study, seg, reference: str, notes) -> _AttributeColumns:
    """Per attribute: reference, gap features and gap statistics (see the ``_attribute_*``)."""
    names = list(study.attributes)
    n, A = len(frame), len(names)
    cols = _AttributeColumns(
        names=names,
        references=[],
        S=np.zeros((n, A)),
        U=np.zeros((n, A)),
        gap_stats=np.full((seg.n_groups + 1, A, len(GAP_STATS)), np.nan),
        items=_ItemAnswers.empty(n, A),
    )
    in_segment, codes_safe = seg.in_segment, seg.codes_safe
    n_resp = np.append(
        _group_sum(codes_safe, in_segment.astype(float), seg.n_groups), in_segment.sum()
    )
    for ai, name in enumerate(names):
        attr = study.attributes[name]
        scale = study.item(attr.perception).scale
        p = _attribute_perception(frame, name, attr, in_segment)
        r = _attribute_reference(frame, name, attr, scale, p, seg, reference)
        cols.references.append(r.label)
        _attribute_items(cols.items, ai, attr, scale, p, r, in_segment)
        p_missing = _attribute_features(cols, ai, p, r.ref, seg)
        cols.n_perception_imputed += int((p_missing & in_segment).sum())
        _attribute_gap_stats(cols.gap_stats[:, ai], seg, p, p_missing, r, n_resp)
        if r.label != "expectation":
            notes.append(
                f"attribute {name!r} has no expectation item: its gap is measured against the "
                f"{r.label}"
            )
    return cols


def _attribute_perception(frame, name: str, attr, in_segment) -> np.ndarray:
    """An attribute's perception answers (NaN outside the segments); someone must answer."""
    p = _column(frame, attr.perception, f"attribute {name!r} perception")
    p = np.where(in_segment, p, np.nan)
    if not np.isfinite(p).any():
        raise ModelSpecificationError(
            f"attribute {name!r}: nobody answered its perception item {attr.perception!r}; "
            "leave the attribute out of the study or check the column"
        )
    return p


def _attribute_reference(frame, name, attr, scale, p, seg: _Segments, reference) -> _Reference:
    """An attribute's expectation answers, or the midpoint or segment norm without them."""
    in_segment, codes_safe, n_groups, n = seg.in_segment, seg.codes_safe, seg.n_groups, p.size
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
        e_mean, e_se, _ = _weighted_group_mean(codes_safe, e, seg.w_seg, n_groups)
        e_norm = np.where(np.isfinite(e_mean[:-1]), e_mean[:-1], e_mean[-1])
        return _Reference(
            label="expectation",
            e=e,
            e_mean=e_mean,
            e_se=e_se,
            ref=np.where(np.isfinite(e), e, e_norm[codes_safe]),
            ref_imputed=np.isfinite(p) & ~np.isfinite(e),
            observed_gap=p - e,
            at_ceiling=np.where(np.isfinite(e), (e >= scale.max).astype(float), np.nan),
        )
    e = np.full(n, np.nan)
    e_mean = e_se = np.full(n_groups + 1, np.nan)
    if reference == "midpoint":
        ref = np.full(n, scale.midpoint)
        label = "scale midpoint"
    else:
        p_mean, _, _ = _weighted_group_mean(codes_safe, p, seg.w_seg, n_groups)
        p_norm = np.where(np.isfinite(p_mean[:-1]), p_mean[:-1], p_mean[-1])
        ref = p_norm[codes_safe]
        label = "segment norm"
    return _Reference(
        label=label,
        e=e,
        e_mean=e_mean,
        e_se=e_se,
        ref=ref,
        ref_imputed=np.zeros(n, dtype=bool),
        observed_gap=p - ref,
        at_ceiling=np.where(np.isfinite(p), (p >= scale.max).astype(float), np.nan),
    )


def _attribute_items(items: _ItemAnswers, ai, attr, scale, p, r: _Reference, in_segment):
    """Collect an attribute's answers for the item model and mark the gaps they leave open."""
    levels = np.arange(scale.min, scale.max + 1, dtype=float)
    items.item_of[ai, 0] = items.add(attr.perception, p, levels)
    if attr.expectation is not None:
        items.item_of[ai, 1] = items.add(attr.expectation, r.e, levels)
        items.affected[:, ai] = in_segment & ~(np.isfinite(p) & np.isfinite(r.e))
    else:
        items.fixed_ref[:, ai] = r.ref
        items.affected[:, ai] = in_segment & ~np.isfinite(p)


def _attribute_features(cols: _AttributeColumns, ai, p, ref, seg: _Segments) -> np.ndarray:
    """Fill an attribute's shortfall and surplus (segment means for a missing perception).

    Returns which respondents' perception is missing.
    """
    gap = p - ref
    s = np.maximum(-gap, 0.0)
    u = np.maximum(gap, 0.0)
    s_mean, _, _ = _weighted_group_mean(seg.codes_safe, s, seg.w_seg, seg.n_groups)
    u_mean, _, _ = _weighted_group_mean(seg.codes_safe, u, seg.w_seg, seg.n_groups)
    s_fill = np.where(np.isfinite(s_mean[:-1]), s_mean[:-1], s_mean[-1])
    u_fill = np.where(np.isfinite(u_mean[:-1]), u_mean[:-1], u_mean[-1])
    p_missing = ~np.isfinite(p)
    cols.S[:, ai] = np.where(p_missing, s_fill[seg.codes_safe], s)
    cols.U[:, ai] = np.where(p_missing, u_fill[seg.codes_safe], u)
    return p_missing


def _attribute_gap_stats(gs, seg: _Segments, p, p_missing, r: _Reference, n_resp) -> None:
    """Fill one attribute's ``(segments + 1, len(GAP_STATS))`` gap statistics in place."""
    codes_safe, w_seg, n_groups, in_segment = (
        seg.codes_safe,
        seg.w_seg,
        seg.n_groups,
        seg.in_segment,
    )
    stat = {k: i for i, k in enumerate(GAP_STATS)}
    observed_gap = r.observed_gap
    p_mean, p_se, _ = _weighted_group_mean(codes_safe, p, w_seg, n_groups)
    g_mean, g_se, g_cnt = _weighted_group_mean(codes_safe, observed_gap, w_seg, n_groups)
    short = np.where(np.isfinite(observed_gap), (observed_gap < 0).astype(float), np.nan)
    surp = np.where(np.isfinite(observed_gap), (observed_gap > 0).astype(float), np.nan)
    sh_mean, _, _ = _weighted_group_mean(codes_safe, short, w_seg, n_groups)
    su_mean, _, _ = _weighted_group_mean(codes_safe, surp, w_seg, n_groups)
    ceil_mean, _, _ = _weighted_group_mean(codes_safe, r.at_ceiling, w_seg, n_groups)
    gs[:, stat["n_respondents"]] = n_resp
    gs[:, stat["n_gap_answered"]] = g_cnt
    imp = (r.ref_imputed & in_segment).astype(float)
    gs[:, stat["n_reference_imputed"]] = np.append(_group_sum(codes_safe, imp, n_groups), imp.sum())
    pm_ = (p_missing & in_segment).astype(float)
    gs[:, stat["n_perception_missing"]] = np.append(
        _group_sum(codes_safe, pm_, n_groups), pm_.sum()
    )
    gs[:, stat["mean_expectation"]] = r.e_mean
    gs[:, stat["se_expectation"]] = r.e_se
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


def _step05_imputation_notes(cols: _AttributeColumns, missing: str, notes: list[str]) -> None:
    """Count the mean-imputed answers in ``notes`` (``missing="mean_imputation"`` only)."""
    n_ref_imp = int(cols.gap_stats[-1, :, GAP_STATS.index("n_reference_imputed")].sum())
    if missing == "mean_imputation":
        if n_ref_imp:
            notes.append(
                f"{n_ref_imp} missing expectation answer(s) were replaced by the segment's mean "
                "expectation"
            )
        if cols.n_perception_imputed:
            notes.append(
                f"{cols.n_perception_imputed} missing perception answer(s): the shortfall and "
                "surplus were set to the segment's mean"
            )


def _step06_likelihood_rows(seg, out: _OutcomeValues, cols, missing, notes) -> _LikelihoodRows:
    """The respondents with an outcome: features, standardized outcome, Kish weights."""
    y, w, outcome = out.y, seg.w, out.name
    in_segment = seg.in_segment
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
    yk, wk, ck = y[keep], w[keep], seg.codes[keep]
    S, U, affected = cols.S, cols.U, cols.items.affected
    if missing == "model":
        # the gaps of attributes with a missing answer are integrated out (mixture
        # likelihood): zero here, added per combination of the missing answers
        S = np.where(affected, 0.0, S)
        U = np.where(affected, 0.0, U)
    Xk = np.column_stack([np.ones(yk.size), S[keep], U[keep]])
    y_center, y_scale, ys = _standardize(yk, wk, outcome, out.items)
    sw, wl = _kish_weights(ck, wk, seg.n_groups)
    # respondents with a missing answer behind a gap (missing="model"): mixture likelihood
    is_incomplete = affected[keep].any(1) if missing == "model" else np.zeros(yk.size, bool)
    return _LikelihoodRows(
        keep=keep,
        y=yk,
        w=wk,
        codes=ck,
        X=Xk,
        y_center=y_center,
        y_scale=y_scale,
        ys=ys,
        sw=sw,
        wl=wl,
        is_incomplete=is_incomplete,
    )


def _standardize(yk, wk, outcome: str, y_items) -> tuple[float, float, np.ndarray]:
    """Weighted mean and standard deviation of the outcome, and the standardized outcome."""
    y_center = float(np.average(yk, weights=wk))
    y_var = float(np.average((yk - y_center) ** 2, weights=wk))
    if y_var <= 1e-12 * max(1.0, y_center**2):
        raise ModelSpecificationError(
            f"outcome {outcome!r} ({', '.join(y_items)}) has the same value ({yk[0]:g}) for every "
            "respondent: there is no variation for the gaps to explain; choose another outcome"
        )
    y_scale = float(np.sqrt(y_var))
    return y_center, y_scale, (yk - y_center) / y_scale


def _kish_weights(codes, w, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per segment weight sum, and the weights scaled to sum to Kish's effective size."""
    sw = _group_sum(codes, w, n_groups)
    sw2 = _group_sum(codes, w**2, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(sw2 > 0, sw / sw2, 0.0)
    return sw, w * factor[codes]


def _step07_incomplete_rows(lik: _LikelihoodRows, seg, items: _ItemAnswers, notes):
    """The respondents with a missing answer behind a gap, for the mixture likelihood."""
    if not lik.is_incomplete.any():
        return None
    values = np.column_stack(items.values)
    item_model = fit_item_model(values, seg.codes, seg.n_groups, items.names, items.levels)
    inc = lik.is_incomplete
    incomplete = _incomplete_rows(
        item_model,
        values[lik.keep][inc],
        lik.codes[inc],
        lik.X[inc],
        lik.ys[inc],
        lik.wl[inc],
        items.item_of,
        items.fixed_ref[lik.keep][inc],
    )
    n_answers = int((~np.isfinite(values[lik.keep])).sum())
    notes.append(
        f"{incomplete.n_rows} respondent(s) with {n_answers} missing expectation or "
        "perception answer(s): their likelihood averages over the likely values of the "
        "missing answers given their other answers (a normal model of the items per "
        "segment), instead of imputing them"
    )
    return incomplete


def _step08_sufficient_statistics(lik: _LikelihoodRows, seg: _Segments) -> _SufficientStatistics:
    """Per segment ``X'WX``, ``X'Wy``, ``y'Wy`` of the complete rows; every segment filled."""
    n_groups, ck = seg.n_groups, lik.codes
    K = lik.X.shape[1]
    xtwx = np.zeros((n_groups, K, K))
    xtwy = np.zeros((n_groups, K))
    ytwy = np.zeros(n_groups)
    for g in range(n_groups):
        m = (ck == g) & ~lik.is_incomplete
        Xg, wg, yg = lik.X[m], lik.wl[m], lik.ys[m]
        xtwx[g] = (Xg * wg[:, None]).T @ Xg
        xtwy[g] = Xg.T @ (wg * yg)
        ytwy[g] = float(wg @ (yg * yg))
    n_lik = np.bincount(ck, minlength=n_groups)
    empty = [seg.levels[g] for g in range(n_groups) if n_lik[g] == 0]
    if empty:
        raise ModelSpecificationError(
            f"segment(s) {empty} have no respondent with an outcome answer; "
            "leave them out (filter the data) or merge them with another segment"
        )
    return _SufficientStatistics(xtwx=xtwx, xtwy=xtwy, ytwy=ytwy, n_lik=n_lik)


def _step09_feature_moments(lik, seg, suff, incomplete, n_features, seed) -> _FeatureMoments:
    """Feature moments over everyone in the likelihood; one draw of the incomplete rows.

    The incomplete respondents enter the moments at their expected features and the
    counterfactual rows with features drawn (``seed + 1``) given their other answers.
    """
    sum_w = np.bincount(lik.codes, weights=lik.wl, minlength=seg.n_groups)
    second = suff.xtwx.copy()
    X_cf = lik.X.copy()
    if incomplete is not None:
        _, second_inc = incomplete.expected_features(n_features)
        second[: second_inc.shape[0]] += second_inc
        X_cf[lik.is_incomplete] = incomplete.sample_features(
            n_features, np.random.default_rng(seed + 1)
        )
    mean = second[:, 0, 1:] / sum_w[:, None]
    cov = second[:, 1:, 1:] / sum_w[:, None, None] - (mean[:, :, None] * mean[:, None, :])
    return _FeatureMoments(sum_w=sum_w, mean=mean, cov=cov, X_cf=X_cf)


def _step10_counterfactual_sample(codes, n_groups: int, n_counterfactual: int, seed: int):
    """Row indices of at most ``n_counterfactual`` respondents per segment (sorted in each)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        idx = np.flatnonzero(codes == g)
        if idx.size > n_counterfactual:
            idx = np.sort(rng.choice(idx, size=n_counterfactual, replace=False))
        rows.append(idx)
    return np.concatenate(rows)


def _data_hash(frame, study: Study, y_items, seg_col, weights) -> str:
    """Hash of the columns the statistics come from."""
    return frame_hash(
        frame[[c for c in frame.columns if c in _used(study, y_items, seg_col, weights)]]
    )


def _step11_assemble(study, seg, out, cols, lik, suff, moments, cf, **fields) -> ExpectationsData:
    """The :class:`ExpectationsData` of the steps' results; ``fields`` set the rest."""
    names = cols.names
    return ExpectationsData(
        attributes=names,
        attribute_labels=[study.attributes[a].label or a for a in names],
        attribute_dimensions=[study.attributes[a].dimension for a in names],
        references=cols.references,
        segments=[str(s) for s in seg.levels],
        segment_column=seg.column,
        outcome=out.name,
        outcome_kind=out.kind,
        outcome_min=out.out_min,
        outcome_max=out.out_max,
        top_box_threshold=float(out.top_box),
        y_center=lik.y_center,
        y_scale=lik.y_scale,
        xtwx=suff.xtwx,
        xtwy=suff.xtwy,
        ytwy=suff.ytwy,
        sum_w=moments.sum_w,
        n_likelihood=suff.n_lik,
        population_share=lik.sw / lik.sw.sum(),
        gap_stats=cols.gap_stats,
        cf_x=moments.X_cf[cf],
        cf_segment=lik.codes[cf],
        cf_weight=lik.w[cf],
        feature_mean=moments.mean,
        feature_cov=moments.cov,
        **fields,
    )


def _step12_ordinal_patterns(d: ExpectationsData, out, lik, incomplete) -> None:
    """Aggregate identical complete rows (segment, features, answer) into weighted patterns."""
    if out.kind != "item":
        raise ModelSpecificationError(
            f"family='ordinal' needs a single item as the outcome; {out.name!r} is a construct "
            "(use family='normal' for its score, or name one of its items)"
        )
    yi = np.rint(lik.y - out.item_min).astype(np.int64)
    if incomplete is not None:
        incomplete.y = yi[lik.is_incomplete].astype(float)
    c = ~lik.is_incomplete
    table = np.column_stack([lik.codes[c].astype(float), lik.X[c, 1:], yi[c].astype(float)])
    uniq, inverse = np.unique(table, axis=0, return_inverse=True)
    d.pat_segment = uniq[:, 0].astype(np.int64)
    d.pat_x = np.column_stack([np.ones(len(uniq)), uniq[:, 1:-1]])
    d.pat_y = uniq[:, -1].astype(np.int64)
    d.pat_w = np.bincount(inverse.ravel(), weights=lik.wl[c], minlength=len(uniq))


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
