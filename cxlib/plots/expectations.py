"""Technical vs. emotional: the two dimensions' weights per segment, with intervals."""

from __future__ import annotations

import altair as alt
import pandas as pd

from cxlib.errors import CxError

__all__ = ["dimension_weights_chart", "dimension_weights_long"]

_DIMENSIONS = ("technical", "emotional")


def dimension_weights_long(weights: pd.DataFrame) -> pd.DataFrame:
    """The weights table in long form: one row per segment and dimension.

    Parameters
    ----------
    weights : pandas.DataFrame
        :meth:`cxlib.models.expectations.ExpectationsResult.dimension_weights` (one row
        per segment with ``technical``, ``technical_hdi_low`` ... and
        ``p_emotional_greater``).

    Returns
    -------
    pandas.DataFrame
        ``segment, dimension, weight, hdi_low, hdi_high, p_emotional_greater``.
    """
    needed = {"segment", "p_emotional_greater"} | {
        f"{d}{s}" for d in _DIMENSIONS for s in ("", "_hdi_low", "_hdi_high")
    }
    missing = needed - set(weights.columns)
    if missing:
        raise CxError(f"a dimension-weights table needs the columns {', '.join(sorted(missing))}")
    rows = []
    for _, row in weights.iterrows():
        for d in _DIMENSIONS:
            rows.append(
                {
                    "segment": row["segment"],
                    "dimension": d,
                    "weight": row[d],
                    "hdi_low": row[f"{d}_hdi_low"],
                    "hdi_high": row[f"{d}_hdi_high"],
                    "p_emotional_greater": row["p_emotional_greater"],
                }
            )
    return pd.DataFrame(rows)


def dimension_weights_chart(weights: pd.DataFrame) -> alt.LayerChart:
    """Technical vs. emotional weight per segment: points with HDI bars, side by side.

    The tooltip gives P(emotional > technical) for the segment.

    Parameters
    ----------
    weights : pandas.DataFrame
        The wide table from ``dimension_weights()`` (converted with
        :func:`dimension_weights_long`; the long table is ``chart.data``).

    Returns
    -------
    altair.LayerChart
    """
    long = dimension_weights_long(weights)
    color = alt.Color(
        "dimension:N",
        scale=alt.Scale(domain=list(_DIMENSIONS), range=["#1f77b4", "#ff7f0e"]),
        title=None,
    )
    base = alt.Chart(long).encode(
        y=alt.Y("segment:N", title=None, sort=None),
        yOffset="dimension:N",
        color=color,
    )
    bars = base.mark_rule(strokeWidth=2).encode(
        x=alt.X("hdi_low:Q", title="Weight (outcome change per scale point of gap)"),
        x2="hdi_high:Q",
    )
    points = base.mark_point(filled=True, size=70).encode(
        x="weight:Q",
        tooltip=[
            "segment:N",
            "dimension:N",
            alt.Tooltip("weight:Q", format=".2f"),
            alt.Tooltip("p_emotional_greater:Q", format=".2f", title="P(emotional > technical)"),
        ],
    )
    return (bars + points).properties(
        title="Technical vs. emotional weight by segment", width=420, height=200
    )
