"""Driver charts: the priority map with uncertainty, and what-if bars."""

from __future__ import annotations

import altair as alt
import pandas as pd

from cxlib import config
from cxlib.errors import CxError
from cxlib.plots.labels import labeller
from cxlib.stats import interval_columns

__all__ = ["priority_map", "what_if_bars"]

_QUADRANT_COLORS = {
    "fix first": "#d62728",
    "keep up": "#2ca02c",
    "possible overkill": "#9467bd",
    "low priority": "#7f7f7f",
}


def _need(table: pd.DataFrame, columns: set[str], what: str) -> None:
    missing = columns - set(table.columns)
    if missing:
        raise CxError(f"a {what} table needs the columns {', '.join(sorted(missing))}")


def priority_map(
    priorities: pd.DataFrame,
    *,
    segment: str = config.EVERYONE,
    wave: str | None = None,
    labels=None,
) -> alt.LayerChart:
    """The importance-performance map: each driver with its HDI cross, coloured by quadrant.

    The dashed lines are the median driver's importance and performance, the split the
    quadrant probabilities use. The tooltip shows P(fix first). Drivers and the target
    are named by the spec's labels when ``labels`` is given; a table from a model that
    did not converge or is improper (``model_converged``, ``model_improper``) says so
    in the chart's subtitle.

    Parameters
    ----------
    priorities : pandas.DataFrame
        From :func:`cxlib.insights.driver_priorities`.
    segment : str
        Which segment (default: everyone).
    wave : str, optional
        Which wave (default: the latest).
    labels : Study or mapping, optional
        How to name constructs (:func:`cxlib.plots.labels.labeller`): the study, or
        its ``summary()["labels"]``.

    Returns
    -------
    altair.LayerChart
    """
    _need(
        priorities,
        {
            "driver",
            "segment",
            "wave",
            "importance",
            *interval_columns("importance"),
            "performance",
            *interval_columns("performance"),
            "p_fix_first",
            "quadrant",
        },
        "driver priorities",
    )
    wave = wave if wave is not None else list(dict.fromkeys(priorities["wave"]))[-1]
    rows = priorities[(priorities["segment"] == segment) & (priorities["wave"] == wave)]
    if rows.empty:
        raise CxError(f"no driver priorities for segment {segment!r} in wave {wave!r}")
    rows = rows.copy()
    label = labeller(labels)
    rows["driver_label"] = [label(d) for d in rows["driver"]]
    target = (
        label(str(rows["target"].iloc[0]))
        if "target" in rows and str(rows["target"].iloc[0])
        else "the target"
    )
    rows["median_importance"] = rows["importance"].median()
    rows["median_performance"] = rows["performance"].median()
    base = alt.Chart(rows)
    color = alt.Color(
        "quadrant:N",
        scale=alt.Scale(domain=list(_QUADRANT_COLORS), range=list(_QUADRANT_COLORS.values())),
        title="Most probable quadrant",
    )
    x = alt.X("performance:Q", title="Performance (0-100)", scale=alt.Scale(zero=False))
    y = alt.Y("importance:Q", title=f"Importance (total effect on {target}, 0-100 metric)")
    perf_low, perf_high = interval_columns("performance")
    imp_low, imp_high = interval_columns("importance")
    h_err = base.mark_rule(opacity=0.5).encode(
        x=f"{perf_low}:Q", x2=f"{perf_high}:Q", y=y, color=color
    )
    v_err = base.mark_rule(opacity=0.5).encode(
        y=f"{imp_low}:Q", y2=f"{imp_high}:Q", x=x, color=color
    )
    points = base.mark_circle(size=120).encode(
        x=x,
        y=y,
        color=color,
        tooltip=[
            alt.Tooltip("driver_label:N", title="driver"),
            alt.Tooltip("importance:Q", format=".3f"),
            alt.Tooltip("performance:Q", format=".1f"),
            alt.Tooltip("p_fix_first:Q", format=".2f", title="P(fix first)"),
        ],
    )
    names = base.mark_text(dx=8, align="left").encode(x=x, y=y, text="driver_label:N")
    vline = base.mark_rule(strokeDash=[4, 4], color="gray").encode(x="mean(median_performance):Q")
    hline = base.mark_rule(strokeDash=[4, 4], color="gray").encode(y="mean(median_importance):Q")
    title = alt.TitleParams(f"Driver priorities for {target} — {segment}, {wave}")
    warning = _flag_note(rows)
    if warning:
        title = alt.TitleParams(title.text, subtitle=[warning], subtitleColor="#d62728")
    return (h_err + v_err + points + names + vline + hline).properties(
        title=title, width=420, height=320
    )


def _flag_note(rows: pd.DataFrame) -> str:
    """What the model flags say about a table's rows ("" when converged and proper)."""
    notes = []
    if "model_converged" in rows and not bool(rows["model_converged"].all()):
        notes.append("the model did not converge")
    if "model_improper" in rows:
        improper = [m for m in rows["model_improper"].astype(str).unique() if m]
        if improper:
            notes.append("the solution is improper")
    return (
        ("Caution: " + " and ".join(notes) + " — treat these estimates as provisional")
        if notes
        else ""
    )


def what_if_bars(table: pd.DataFrame) -> alt.LayerChart:
    """Predicted changes of a what-if, one bar per outcome with its HDI.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`cxlib.insights.WhatIf.table`.

    Returns
    -------
    altair.LayerChart
    """
    low, high = interval_columns("change")
    _need(table, {"label", "change", low, high}, "what-if")
    base = alt.Chart(table).encode(y=alt.Y("label:N", title=None, sort=None))
    bars = base.mark_bar(opacity=0.7).encode(
        x=alt.X("change:Q", title="Predicted change"),
        tooltip=[
            "label:N",
            alt.Tooltip("change:Q", format="+.2f"),
            alt.Tooltip("p_increase:Q", format=".2f"),
        ],
    )
    err = base.mark_rule().encode(x=f"{low}:Q", x2=f"{high}:Q")
    title = alt.TitleParams("What it would buy")
    warning = _flag_note(table)
    if warning:
        title = alt.TitleParams(title.text, subtitle=[warning], subtitleColor="#d62728")
    return (bars + err).properties(title=title, width=360, height=120)
