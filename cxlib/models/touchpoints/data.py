"""Data for :class:`~cxlib.models.touchpoints.TouchpointModel`: the journey map and its statistics.

The study spec tags each touchpoint item with ``touchpoint``, ``channel``
(``face_to_face``, ``personal_distant``, ``electronic``) and ``stage`` (``before``,
``during``, ``after``); :func:`journey_map` reads those tags into a table.

From a survey frame, :func:`prepare_touchpoint_data` computes per touchpoint its
*performance* (answers rescaled to 0-100) and the sufficient statistics of two
weighted Gaussian regressions, so the likelihood costs the same for 2,000 or 200,000
respondents:

* the **outcome** (an overall evaluation of the experience, default the
  ``Satisfaction`` construct's 0-100 score) on the touchpoints' performance, with
  features ``[1, centred performance_t, not_used_t]``;
* the **target** (default ``Loyalty``, 0-100) on the outcome, features ``[1, centred outcome]``.

Missing answers: many customers never use a touchpoint (in real data "not used" is
common). A missing touchpoint answer is set to the touchpoint's mean (centred value 0)
and flagged by its own ``not_used`` indicator, whose coefficient absorbs how much
non-users differ; the touchpoint's slope is therefore learnt from its users only. A
touchpoint nobody skipped has no indicator. A construct score is the mean of the
answered items; a respondent with no outcome answer leaves the outcome regression
(and one with no target answer the target regression), counted in ``notes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxlib.errors import ModelSpecificationError
from cxlib.models.base import as_frame, frame_hash
from cxlib.study import KNOWN_TAGS, Study

__all__ = ["CHANNELS", "STAGES", "TouchpointData", "journey_map", "prepare_touchpoint_data"]

#: Kinds of customer interface, in display order.
CHANNELS: tuple[str, ...] = KNOWN_TAGS["channel"]
#: Stages of the customer journey, in order.
STAGES: tuple[str, ...] = KNOWN_TAGS["stage"]


def journey_map(study: Study) -> pd.DataFrame:
    """The study's touchpoints: one row per item tagged with a ``touchpoint``.

    Returns
    -------
    pandas.DataFrame
        ``touchpoint, item, label, channel, stage, scale_min, scale_max`` in spec order.

    Raises
    ------
    ModelSpecificationError
        When no item is tagged, a touchpoint item lacks its channel or stage tag, or
        two items claim the same touchpoint.
    """
    rows = []
    for name, item in study.all_items.items():
        tp = item.tags.get("touchpoint")
        if not tp:
            continue
        missing = [t for t in ("channel", "stage") if t not in item.tags]
        if missing:
            raise ModelSpecificationError(
                f"item {name!r} is tagged touchpoint={tp!r} but has no {' and no '.join(missing)} "
                f"tag; add e.g. tags: {{touchpoint: {tp}, channel: electronic, stage: after}}"
            )
        rows.append(
            {
                "touchpoint": tp,
                "item": name,
                "label": item.text,
                "channel": item.tags["channel"],
                "stage": item.tags["stage"],
                "scale_min": float(item.scale.min),
                "scale_max": float(item.scale.max),
            }
        )
    if not rows:
        raise ModelSpecificationError(
            f"study {study.name!r} tags no item with a touchpoint; tag the items of the journey "
            "with tags: {touchpoint: NAME, channel: face_to_face|personal_distant|electronic, "
            "stage: before|during|after}"
        )
    out = pd.DataFrame(rows)
    dup = out["touchpoint"][out["touchpoint"].duplicated()].unique()
    if len(dup):
        raise ModelSpecificationError(
            f"touchpoint(s) {', '.join(map(repr, dup))} are tagged on more than one item; "
            "give each touchpoint one item"
        )
    return out


def _score(frame: pd.DataFrame, study: Study, name: str, role: str) -> np.ndarray:
    """0-100 score of a construct (mean of answered items) or of one item."""
    if name in study.constructs:
        items = study.constructs[name].item_names
    elif name in study.all_items:
        items = [name]
    else:
        raise ModelSpecificationError(
            f"{role} {name!r} is neither a construct nor an item of study {study.name!r} "
            f"(constructs: {', '.join(study.constructs)})"
        )
    absent = [i for i in items if i not in frame.columns]
    if absent:
        raise ModelSpecificationError(f"{role} {name!r}: item(s) {absent} are not in the data")
    cols = []
    for i in items:
        s = study.item(i).scale
        cols.append(100.0 * (frame[i].to_numpy(dtype=float) - s.min) / (s.max - s.min))
    x = np.column_stack(cols)
    answered = np.isfinite(x).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(answered > 0, np.nansum(x, axis=1) / answered, np.nan)


@dataclass
class TouchpointData:
    """What the touchpoint model and its results need from the data (no respondent rows).

    Attributes
    ----------
    touchpoints, items, labels, channels, stages : list of str
        Per touchpoint: name, item, question text, channel and stage tags.
    outcome, target : str
        The overall evaluation the touchpoints feed, and what it carries into.
    n_respondents : int
        Respondents in the data.
    n_answered : numpy.ndarray
        Per touchpoint, respondents who answered (used it).
    performance_mean, performance_se, performance_df : numpy.ndarray
        Per touchpoint, weighted mean 0-100 performance among its users, the standard
        error and degrees of freedom of the mean's Student-t posterior (Kish's
        effective sample size minus one).
    not_used : list of str
        Touchpoints with a ``not_used`` indicator (someone skipped them).
    xtwx, xtwy, ytwy, sum_w : numpy.ndarray or float
        Sufficient statistics of the outcome regression (centred outcome, features
        ``[1, performance_t - mean_t, not_used]``).
    target_xtwx, target_xtwy, target_ytwy, target_sum_w :
        The same for the target regression on the centred outcome.
    outcome_center, outcome_sd, target_center, target_sd : float
        Weighted mean and SD of the outcome and target scores (0-100).
    n_outcome, n_target : int
        Respondents in each regression.
    notes : list of str
        What was imputed, left out or flagged.
    data_hash : str
        Hash of the data the statistics came from.
    """

    touchpoints: list[str]
    items: list[str]
    labels: list[str]
    channels: list[str]
    stages: list[str]
    outcome: str
    target: str
    n_respondents: int
    n_answered: np.ndarray
    performance_mean: np.ndarray
    performance_se: np.ndarray
    performance_df: np.ndarray
    not_used: list[str]
    xtwx: np.ndarray
    xtwy: np.ndarray
    ytwy: float
    sum_w: float
    target_xtwx: np.ndarray
    target_xtwy: np.ndarray
    target_ytwy: float
    target_sum_w: float
    outcome_center: float
    outcome_sd: float
    target_center: float
    target_sd: float
    n_outcome: int
    n_target: int
    notes: list[str] = field(default_factory=list)
    data_hash: str = ""

    @property
    def features(self) -> list[str]:
        """Feature names of the outcome regression."""
        return (
            ["intercept"]
            + [f"performance:{t}" for t in self.touchpoints]
            + [f"not_used:{t}" for t in self.not_used]
        )

    @property
    def share_used(self) -> np.ndarray:
        """Per touchpoint, the share of respondents who answered (used it)."""
        return self.n_answered / max(self.n_respondents, 1)

    _META = (
        "touchpoints", "items", "labels", "channels", "stages", "outcome", "target",
        "n_respondents", "not_used", "ytwy", "sum_w", "target_ytwy", "target_sum_w",
        "outcome_center", "outcome_sd", "target_center", "target_sd", "n_outcome", "n_target",
        "notes", "data_hash",
    )  # fmt: skip
    _ARRAYS = (
        "n_answered", "performance_mean", "performance_se", "performance_df", "xtwx", "xtwy",
        "target_xtwx", "target_xtwy",
    )  # fmt: skip

    def to_dataset(self):
        """The statistics as an xarray Dataset (stored in ``idata.constant_data``)."""
        import xarray as xr

        meta = {k: getattr(self, k) for k in self._META}
        feats = self.features
        return xr.Dataset(
            {
                "n_answered": (("touchpoints",), self.n_answered.astype(np.int64)),
                "performance_mean": (("touchpoints",), self.performance_mean),
                "performance_se": (("touchpoints",), self.performance_se),
                "performance_df": (("touchpoints",), self.performance_df),
                "xtwx": (("feature", "feature_col"), self.xtwx),
                "xtwy": (("feature",), self.xtwy),
                "target_xtwx": (("target_feature", "target_feature_col"), self.target_xtwx),
                "target_xtwy": (("target_feature",), self.target_xtwy),
            },
            coords={
                "touchpoints": self.touchpoints,
                "feature": feats,
                "feature_col": feats,
                "target_feature": ["intercept", "outcome"],
                "target_feature_col": ["intercept", "outcome"],
            },
            attrs={"touchpoint_meta": json.dumps(meta, default=float)},
        )

    @classmethod
    def from_dataset(cls, ds) -> TouchpointData:
        """Rebuild from :meth:`to_dataset` output (e.g. a loaded ``constant_data``)."""
        meta: dict[str, Any] = json.loads(ds.attrs["touchpoint_meta"])
        arrays = {k: np.asarray(ds[k].values) for k in cls._ARRAYS}
        arrays["n_answered"] = arrays["n_answered"].astype(np.int64)
        return cls(**meta, **arrays)


def _stats(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    Xw = X * w[:, None]
    return Xw.T @ X, Xw.T @ y, float(np.sum(w * y * y)), float(w.sum())


def prepare_touchpoint_data(
    data, study: Study, outcome: str = "Satisfaction", target: str = "Loyalty", *, weights=None
) -> TouchpointData:
    """Compute performance and the regressions' sufficient statistics.

    Parameters
    ----------
    data : pandas.DataFrame or SurveyData
        The responses.
    study : Study
        The spec (touchpoint tags, scales, constructs).
    outcome : str
        Construct or item the touchpoints feed (its 0-100 score).
    target : str
        Construct or item the outcome carries into (0-100).
    weights : str, array-like, False or None
        Respondent weights; None uses the study's weight column.

    Returns
    -------
    TouchpointData
    """
    frame, data_hash = as_frame(data)
    journey = journey_map(study)
    absent = [i for i in journey["item"] if i not in frame.columns]
    if absent:
        raise ModelSpecificationError(
            f"touchpoint item(s) {', '.join(absent)} are not in the data; the study tags them "
            "as touchpoints"
        )
    if outcome == target:
        raise ModelSpecificationError(f"outcome and target are both {outcome!r}; give two")
    n = len(frame)
    if weights is None:
        wcol = study.columns.weight
        weights = wcol if wcol and wcol in frame.columns else False
    if weights is False:
        w = np.ones(n)
    elif isinstance(weights, str):
        if weights not in frame.columns:
            raise ModelSpecificationError(f"weight column {weights!r} is not in the data")
        w = frame[weights].to_numpy(dtype=float)
    else:
        w = np.asarray(weights, dtype=float).ravel()
    if w.size != n or not np.all(np.isfinite(w) & (w >= 0)):
        raise ModelSpecificationError(
            "respondent weights must be finite, not negative, one per row of the data"
        )
    notes: list[str] = []
    T = len(journey)
    perf = np.column_stack(
        [
            100.0
            * (frame[r.item].to_numpy(dtype=float) - r.scale_min)
            / (r.scale_max - r.scale_min)
            for r in journey.itertuples()
        ]
    )
    used = np.isfinite(perf)
    n_answered = used.sum(axis=0)
    never = [tp for tp, k in zip(journey["touchpoint"], n_answered, strict=True) if k < 2]
    if never:
        raise ModelSpecificationError(
            f"touchpoint(s) {', '.join(never)} have fewer than 2 answers in the data; "
            "nothing can be said about them (drop their tags or collect answers)"
        )
    # performance: weighted mean among users, Student-t posterior of a mean
    mean = np.empty(T)
    se = np.empty(T)
    df = np.empty(T)
    for t in range(T):
        ok = used[:, t]
        x, ww = perf[ok, t], w[ok]
        sw, sw2 = ww.sum(), (ww**2).sum()
        mean[t] = np.sum(ww * x) / sw
        var = np.sum(ww * (x - mean[t]) ** 2) / sw
        n_eff = sw**2 / sw2
        df[t] = max(n_eff - 1.0, 1.0)
        se[t] = np.sqrt(var / df[t])
    # outcome regression
    y = _score(frame, study, outcome, "outcome")
    z = _score(frame, study, target, "target")
    has_y = np.isfinite(y) & (w > 0)
    if has_y.sum() < T + 3:
        raise ModelSpecificationError(
            f"only {int(has_y.sum())} respondent(s) answered the outcome {outcome!r}; the "
            f"touchpoint model needs more than {T + 2}"
        )
    if (~has_y).sum():
        notes.append(f"{int((~has_y).sum())} respondent(s) without an {outcome!r} answer left out")
    skipped = (~used[has_y]).any(axis=0)
    not_used = [tp for tp, s in zip(journey["touchpoint"], skipped, strict=True) if s]
    centred = np.where(used, perf - mean[None, :], 0.0)
    X = np.column_stack([np.ones(n), centred, (~used[:, skipped]).astype(float)])
    wy = w[has_y] * has_y.sum() / w[has_y].sum()  # likelihood weights: mean 1
    y_center = float(np.sum(wy * y[has_y]) / wy.sum())
    y_sd = float(np.sqrt(np.sum(wy * (y[has_y] - y_center) ** 2) / wy.sum()))
    xtwx, xtwy, ytwy, sum_w = _stats(X[has_y], y[has_y] - y_center, wy)
    if np.linalg.matrix_rank(xtwx) < xtwx.shape[0]:
        raise ModelSpecificationError(
            "the touchpoints' answers are collinear (e.g. two touchpoints always skipped "
            "together, or one touchpoint has a single answer value); their effects cannot be "
            "told apart"
        )
    share = n_answered / n
    for tp, s in zip(journey["touchpoint"], share, strict=True):
        if s < 0.5:
            notes.append(f"touchpoint {tp!r} was answered by {s:.0%} of respondents (sparse)")
    # target regression on the outcome
    has_z = has_y & np.isfinite(z)
    if has_z.sum() < 3:
        raise ModelSpecificationError(
            f"only {int(has_z.sum())} respondent(s) answered both {outcome!r} and {target!r}"
        )
    if (has_y & ~has_z).sum():
        notes.append(
            f"{int((has_y & ~has_z).sum())} respondent(s) without a {target!r} answer left out "
            "of the target regression"
        )
    wz = w[has_z] * has_z.sum() / w[has_z].sum()
    z_center = float(np.sum(wz * z[has_z]) / wz.sum())
    z_sd = float(np.sqrt(np.sum(wz * (z[has_z] - z_center) ** 2) / wz.sum()))
    X2 = np.column_stack([np.ones(int(has_z.sum())), y[has_z] - y_center])
    t_xtwx, t_xtwy, t_ytwy, t_sum_w = _stats(X2, z[has_z] - z_center, wz)
    return TouchpointData(
        touchpoints=list(journey["touchpoint"]),
        items=list(journey["item"]),
        labels=list(journey["label"]),
        channels=list(journey["channel"]),
        stages=list(journey["stage"]),
        outcome=outcome,
        target=target,
        n_respondents=n,
        n_answered=n_answered.astype(np.int64),
        performance_mean=mean,
        performance_se=se,
        performance_df=df,
        not_used=not_used,
        xtwx=xtwx,
        xtwy=xtwy,
        ytwy=ytwy,
        sum_w=sum_w,
        target_xtwx=t_xtwx,
        target_xtwy=t_xtwy,
        target_ytwy=t_ytwy,
        target_sum_w=t_sum_w,
        outcome_center=y_center,
        outcome_sd=y_sd,
        target_center=z_center,
        target_sd=z_sd,
        n_outcome=int(has_y.sum()),
        n_target=int(has_z.sum()),
        notes=notes,
        data_hash=data_hash or frame_hash(frame[[*journey["item"]]]),
    )
