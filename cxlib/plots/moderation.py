"""Moderation charts: simple slopes of a predictor at values of its moderator."""

from __future__ import annotations

import altair as alt
import pandas as pd

from cxlib.errors import CxError

__all__ = ["plot_simple_slopes"]


def plot_simple_slopes(lines: pd.DataFrame, *, labels=None) -> alt.LayerChart:
    """The outcome's conditional mean along the predictor, one line per moderator value.

    Each line carries its HDI band; parallel lines mean no moderation.

    Parameters
    ----------
    lines : pandas.DataFrame
        From :meth:`cxlib.models.sem.SEMResult.simple_slope_lines` (columns
        ``outcome, predictor, moderator, at, predictor_value, mean, hdi_low,
        hdi_high``).
    labels : Study or mapping, optional
        How to name constructs (:func:`cxlib.plots.labels.labeller`).

    Returns
    -------
    altair.LayerChart
    """
    from cxlib.plots.labels import labeller

    need = {"outcome", "predictor", "moderator", "at", "predictor_value", "mean"}
    need |= {"hdi_low", "hdi_high"}
    missing = need - set(lines.columns)
    if missing:
        raise CxError(f"a simple-slopes table needs the columns {', '.join(sorted(missing))}")
    if lines.empty:
        raise CxError("the simple-slopes table is empty")
    label = labeller(labels)
    y, x, w = (label(str(lines[c].iloc[0])) for c in ("outcome", "predictor", "moderator"))
    order = list(dict.fromkeys(lines["at"]))
    base = alt.Chart(lines)
    color = alt.Color("at:N", sort=order, title=w)
    xenc = alt.X("predictor_value:Q", title=x)
    band = base.mark_area(opacity=0.18).encode(x=xenc, y="hdi_low:Q", y2="hdi_high:Q", color=color)
    line = base.mark_line().encode(
        x=xenc,
        y=alt.Y("mean:Q", title=f"{y} (relative to its value at the means)"),
        color=color,
        tooltip=[
            alt.Tooltip("at:N", title=w),
            alt.Tooltip("predictor_value:Q", format=".2f", title=x),
            alt.Tooltip("mean:Q", format=".3f"),
        ],
    )
    title = alt.TitleParams(f"Simple slopes of {x} on {y} by {w}")
    return (band + line).properties(title=title, width=420, height=300)
