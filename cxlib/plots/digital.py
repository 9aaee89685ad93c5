"""Digital experience charts: the score of a selection of sessions by day, with its interval.

The chart draws what it is given (rows of the published ``digital_scores`` table for one
selection, picked by the caller, e.g. :func:`cxlib.dashboard.digital.day_scores`); it
computes nothing.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from cxlib import config
from cxlib.errors import CxError
from cxlib.stats import interval_columns

__all__ = ["score_by_day"]

#: The interval mass as charts label it (``94%``).
_HDI = f"{config.HDI_PROB:.0%}"


def score_by_day(
    rows: pd.DataFrame, *, title: str = "Digital experience score by day", width: int = 560
) -> alt.LayerChart:
    """The digital experience score (0-100) by day: its mean as a line, its HDI as a band.

    Days with few sessions (``few_sessions``) are drawn as hollow points, the others
    filled, so a jump resting on a handful of sessions reads as such.

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per day: ``day`` (ISO date), ``score``, ``score_hdi_low``,
        ``score_hdi_high``, ``sessions`` and ``few_sessions`` (rows of the published
        ``digital_scores`` table).
    title : str
        The chart's title.
    width : int
        Chart width (pixels).

    Returns
    -------
    altair.LayerChart

    Raises
    ------
    CxError
        When a column the chart needs is missing.
    """
    low, high = interval_columns("score")
    needed = {"day", "score", low, high, "sessions", "few_sessions"}
    missing = needed - set(rows.columns)
    if missing:
        raise CxError(f"a score-by-day table needs the columns {', '.join(sorted(missing))}")
    data = rows[["day", "score", low, high, "sessions", "few_sessions"]].copy()
    data["day"] = data["day"].astype(str)
    data["few_sessions"] = data["few_sessions"].astype(bool)
    base = alt.Chart(data).encode(x=alt.X("day:T", title="Day", axis=alt.Axis(format="%d %b")))
    band = base.mark_area(opacity=0.2, color="#1565c0").encode(
        y=alt.Y(f"{low}:Q", title="Score (0-100)", scale=alt.Scale(zero=False)),
        y2=f"{high}:Q",
    )
    line = base.mark_line(color="#1565c0").encode(y="score:Q")
    points = base.mark_point(size=40, filled=True, color="#1565c0", stroke="#1565c0").encode(
        y="score:Q",
        fillOpacity=alt.condition("datum.few_sessions", alt.value(0.0), alt.value(1.0)),
        tooltip=[
            alt.Tooltip("day:T", title="Day", format="%Y-%m-%d"),
            alt.Tooltip("score:Q", format=".1f", title="Score"),
            alt.Tooltip(f"{low}:Q", format=".1f", title=f"{_HDI} HDI low"),
            alt.Tooltip(f"{high}:Q", format=".1f", title=f"{_HDI} HDI high"),
            alt.Tooltip("sessions:Q", format=",d", title="Sessions"),
            alt.Tooltip("few_sessions:N", title="Few sessions"),
        ],
    )
    return (band + line + points).properties(title=title, width=width, height=220)
