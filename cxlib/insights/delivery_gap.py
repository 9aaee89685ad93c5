"""The delivery gap: the company's own rating of each touchpoint against its customers'.

In a well-known survey 80% of companies said they deliver a great experience and 8%
of their customers agreed. An *internal assessment* table (staff or managers rate
each touchpoint on the item's own scale; one row per rater and touchpoint, or one row
per touchpoint) set against the customers' answers makes that gap precise:

* the customers' mean rating of a touchpoint (its users, weighted) has the
  reference-prior posterior of a mean: Student-t with ``n_eff - 1`` degrees of freedom
  around the weighted mean, scaled by its standard error (Kish's effective sample
  size), as for the KPIs;
* the company's rating is its raters' mean: a fixed number with one rater; with
  several, the Student-t posterior of a mean whose spread is the raters' disagreement
  pooled over all touchpoints (a handful of raters who happen to agree on one
  touchpoint do not make its rating certain);
* the **gap** is company minus customers (positive: the company overrates), with its
  interval and ``P(company overrates) = P(gap > 0)``; the **share of touchpoints the
  company overrates** is summarized draw by draw (with its interval), next to the
  share it overrates with probability above 0.9.

With one rater the gap's posterior is closed form, ``rating - mean - se * t(df)``,
which the tests check the draws against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.errors import CxError, DataProblem, DataValidationError, did_you_mean
from cxlib.stats import hdi, summarize_draws

__all__ = [
    "DeliveryGap",
    "DeliveryGapError",
    "delivery_gap",
    "read_internal_assessment",
    "validate_internal_assessment",
]


class DeliveryGapError(CxError, ValueError):
    """A delivery-gap analysis that cannot be made as asked."""


def validate_internal_assessment(
    table: pd.DataFrame,
    journey: pd.DataFrame,
    *,
    source: str = "internal assessment",
    row_label: str = "row",
    first_row: int = 1,
) -> pd.DataFrame:
    """Check an internal assessment against the study's touchpoints and their scales.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``touchpoint`` and ``rating`` (on the touchpoint item's scale);
        optionally ``rater`` (one row per rater and touchpoint).
    journey : pandas.DataFrame
        :func:`cxlib.models.touchpoints.data.journey_map` of the study.
    source, row_label, first_row :
        How to name the table and its rows in errors.

    Returns
    -------
    pandas.DataFrame
        ``touchpoint, rating`` (and ``rater`` when given).

    Raises
    ------
    DataValidationError
        Naming the file, the column and the rows at fault.
    """
    missing = [c for c in ("touchpoint", "rating") if c not in table.columns]
    if missing:
        raise DataValidationError(
            source,
            [
                DataProblem(
                    None,
                    f"missing column(s) {', '.join(missing)}",
                    expected="columns touchpoint, rating and optionally rater",
                )
            ],
            row_label=row_label,
        )
    problems = []
    rows = np.arange(len(table)) + first_row
    names = table["touchpoint"].astype(str).str.strip()
    known = list(journey["touchpoint"])
    unknown = ~names.isin(known)
    if unknown.any():
        problems.append(
            DataProblem(
                "touchpoint",
                "touchpoint(s) not in the study" + did_you_mean(names[unknown].iloc[0], known),
                rows=tuple(int(r) for r in rows[unknown.to_numpy()][: config.SHOW_ROWS]),
                values=tuple(names[unknown].iloc[: config.SHOW_ROWS]),
                n_rows=int(unknown.sum()),
                expected="one of " + ", ".join(known),
            )
        )
    rating = pd.to_numeric(table["rating"], errors="coerce")
    scale = journey.set_index("touchpoint")
    lo = names.map(scale["scale_min"])
    hi = names.map(scale["scale_max"])
    bad = ~unknown & (rating.isna() | (rating < lo) | (rating > hi))
    if bad.any():
        first = names[bad].iloc[0]
        problems.append(
            DataProblem(
                "rating",
                "ratings missing or outside the touchpoint's scale",
                rows=tuple(int(r) for r in rows[bad.to_numpy()][: config.SHOW_ROWS]),
                values=tuple(table["rating"][bad].iloc[: config.SHOW_ROWS]),
                n_rows=int(bad.sum()),
                expected=f"a number on the item's own scale (e.g. {first}: "
                f"{scale.loc[first, 'scale_min']:g}-{scale.loc[first, 'scale_max']:g})",
            )
        )
    if problems:
        raise DataValidationError(
            source,
            problems,
            row_label=row_label,
            hint="Fix the internal assessment (the company's rating of each touchpoint) and run again.",
        )
    out = pd.DataFrame({"touchpoint": names.to_numpy(), "rating": rating.to_numpy(float)})
    if "rater" in table.columns:
        out["rater"] = table["rater"].astype(str).to_numpy()
    return out


def read_internal_assessment(path: str | Path, journey: pd.DataFrame) -> pd.DataFrame:
    """Read and check an internal assessment (CSV): ``touchpoint, rating[, rater]``."""
    from cxlib.data.readers import read_side_table  # cxlib.data loads pandera

    table = read_side_table(path, expected="a CSV internal assessment")
    return validate_internal_assessment(
        table, journey, source=str(path), row_label="line", first_row=2
    )


@dataclass
class DeliveryGap:
    """The gap per touchpoint and the share of touchpoints the company overrates.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per assessed touchpoint: ``touchpoint, label, channel, stage,
        scale_min, scale_max, internal_rating, n_raters, customer_mean,
        customer_mean_hdi_low, customer_mean_hdi_high, n_customers, gap, gap_sd,
        gap_hdi_low, gap_hdi_high, p_company_overrates`` (item scale points) and
        ``gap_points`` (0-100).
    summary : dict
        ``n_touchpoints``, ``share_overrated`` (posterior mean of the share of
        touchpoints with gap > 0) with ``share_overrated_sd`` and its HDI
        ``share_overrated_hdi_low/high``,
        ``share_clearly_overrated`` (share with P(overrates) > 0.9),
        ``internal_top2_share`` (share of touchpoints the company rates in its scale's
        top two boxes) and ``customer_top2_share`` (share of customers' answers there).
    gap_draws : numpy.ndarray
        (draw, touchpoint) draws of the gap.
    """

    table: pd.DataFrame
    summary: dict
    gap_draws: np.ndarray


def _mean_posterior(x: np.ndarray, w: np.ndarray):
    """Weighted mean, its standard error and the t degrees of freedom (Kish)."""
    sw, sw2 = w.sum(), (w**2).sum()
    mean = float(np.sum(w * x) / sw)
    var = float(np.sum(w * (x - mean) ** 2) / sw)
    df = max(sw**2 / sw2 - 1.0, 1.0)
    return mean, np.sqrt(var / df), df


def delivery_gap(
    data,
    journey: pd.DataFrame,
    internal: pd.DataFrame,
    *,
    n_draws: int = 4000,
    seed: int = config.DEFAULT_SEED,
    hdi_prob: float = config.HDI_PROB,
    weights=None,
) -> DeliveryGap:
    """Compare the company's rating of each touchpoint with its customers'.

    Parameters
    ----------
    data : SurveyData or pandas.DataFrame
        The responses (a DataFrame: unweighted unless ``weights`` is given).
    journey : pandas.DataFrame
        :func:`cxlib.models.touchpoints.data.journey_map` of the study.
    internal : pandas.DataFrame
        A checked internal assessment (:func:`read_internal_assessment`).
    n_draws : int
        Posterior draws.
    seed : int
        Seed of the draws.
    hdi_prob : float
        Interval mass.
    weights : array-like, optional
        Respondent weights (default: ``data.weights`` of a SurveyData, else 1).

    Returns
    -------
    DeliveryGap
    """
    frame = data.frame if hasattr(data, "frame") else data
    if weights is None:
        weights = getattr(data, "weights", None)
    w_all = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=float)
    rng = np.random.default_rng(seed)
    meta = journey.set_index("touchpoint")
    assessed = list(dict.fromkeys(internal["touchpoint"]))
    if not assessed:
        raise DeliveryGapError("the internal assessment rates no touchpoint")
    rows, draws = [], []
    cust_top2, int_top2 = [], []
    # raters' disagreement, pooled over the touchpoints rated more than once
    groups = [g.to_numpy(float) for _, g in internal.groupby("touchpoint")["rating"] if len(g) > 1]
    pooled_df = sum(g.size - 1 for g in groups)
    pooled_var = sum(((g - g.mean()) ** 2).sum() for g in groups) / pooled_df if pooled_df else 0.0
    for tp in assessed:
        m = meta.loc[tp]
        x = frame[m["item"]].to_numpy(dtype=float)
        ok = np.isfinite(x) & (w_all > 0)
        if ok.sum() < 2:
            raise DeliveryGapError(
                f"touchpoint {tp!r}: fewer than 2 customers rated it ({m['item']}); no gap can be "
                "estimated"
            )
        mean, se, df = _mean_posterior(x[ok], w_all[ok])
        cust = mean + se * rng.standard_t(df, size=n_draws)
        ratings = internal.loc[internal["touchpoint"] == tp, "rating"].to_numpy(float)
        if ratings.size > 1 and pooled_var > 0:
            imean = float(ratings.mean())
            ise = np.sqrt(pooled_var / ratings.size)
            comp = imean + ise * rng.standard_t(pooled_df, size=n_draws)
        elif ratings.size > 1:
            imean = float(ratings.mean())  # every rater agrees everywhere: taken as fixed
            comp = np.full(n_draws, imean)
        else:
            imean = float(ratings[0])
            comp = np.full(n_draws, imean)
        gap = comp - cust
        draws.append(gap)
        span = m["scale_max"] - m["scale_min"]
        top2 = m["scale_max"] - 1
        cust_top2.append(float(np.sum(w_all[ok] * (x[ok] >= top2)) / w_all[ok].sum()))
        int_top2.append(imean >= top2)
        cust_low, cust_high = hdi(cust, hdi_prob)
        gs = summarize_draws(gap, hdi_prob, quantity="gap")
        rows.append(
            {
                "touchpoint": tp,
                "label": m["label"],
                "channel": m["channel"],
                "stage": m["stage"],
                "scale_min": m["scale_min"],
                "scale_max": m["scale_max"],
                "internal_rating": imean,
                "n_raters": int(ratings.size),
                "customer_mean": mean,
                "customer_mean_hdi_low": float(cust_low),
                "customer_mean_hdi_high": float(cust_high),
                "n_customers": int(ok.sum()),
                **{k: float(v) for k, v in gs.items()},
                "p_company_overrates": float((gap > 0).mean()),
                "gap_points": float(gs["gap"]) * 100.0 / span,
            }
        )
    table = pd.DataFrame(rows)
    G = np.column_stack(draws)
    share = (G > 0).mean(axis=1)
    summary = {
        "n_touchpoints": len(assessed),
        **{
            k: float(v)
            for k, v in summarize_draws(share, hdi_prob, quantity="share_overrated").items()
        },
        "share_clearly_overrated": float((table["p_company_overrates"] > 0.9).mean()),
        "internal_top2_share": float(np.mean(int_top2)),
        "customer_top2_share": float(np.mean(cust_top2)),
    }
    return DeliveryGap(table, summary, G)
