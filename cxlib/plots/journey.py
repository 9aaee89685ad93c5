"""Journey charts: the stage x channel heat map, the allocation plan and the delivery gap."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from cxlib import config
from cxlib.errors import CxError
from cxlib.plots.labels import labeller
from cxlib.stats import interval_columns

__all__ = ["allocation_chart", "delivery_gap_chart", "journey_heatmap"]

_STAGES = ["before", "during", "after"]
_CHANNELS = ["face_to_face", "personal_distant", "electronic"]
#: The interval mass as charts label it (``94%``).
_HDI = f"{config.HDI_PROB:.0%}"
_CHANNEL_LABELS = {
    "face_to_face": "Face to face",
    "personal_distant": "Personal, distant",
    "electronic": "Electronic",
}


def _need(table: pd.DataFrame, columns: set[str], what: str) -> None:
    missing = columns - set(table.columns)
    if missing:
        raise CxError(f"a {what} table needs the columns {', '.join(sorted(missing))}")


def journey_heatmap(
    matrix: pd.DataFrame, *, width: int = 420, height: int = 260, labels=None
) -> alt.LayerChart:
    """The stage x channel matrix: colour = effect on the target, opacity = certainty.

    Each cell shows its touchpoints' mean effect on the target (points per performance
    point) with its interval, and their performance (0-100). The cell's opacity is its
    certainty, one minus the interval's width relative to the widest cell's, so a vague
    cell fades; an empty cell (no touchpoint, the pooled expectation) is hatched grey.

    Parameters
    ----------
    matrix : pandas.DataFrame
        From :meth:`cxlib.models.touchpoints.TouchpointResult.journey_matrix`.
    width, height : int
        Chart size (pixels).
    labels : Study or mapping, optional
        How to name the target (:func:`cxlib.plots.labels.labeller`).

    Returns
    -------
    altair.LayerChart
    """
    low, high = interval_columns("effect_on_target")
    _need(
        matrix,
        {"stage", "channel", "touchpoints", "has_touchpoints", "effect_on_target", low, high,
         "performance", "p_effective", "target"},
        "journey matrix",
    )  # fmt: skip
    rows = matrix.copy()
    width_ci = rows[high] - rows[low]
    widest = float(width_ci.max()) if np.isfinite(width_ci.max()) and width_ci.max() > 0 else 1.0
    rows["certainty"] = (1 - width_ci / widest).clip(0, 1) * 0.7 + 0.3
    rows["channel_label"] = rows["channel"].map(_CHANNEL_LABELS).fillna(rows["channel"])
    rows["effect_text"] = [
        f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
        for m, lo, hi in zip(rows["effect_on_target"], rows[low], rows[high], strict=True)
    ]
    rows["performance_text"] = [
        f"performance {p:.0f}" if np.isfinite(p) else "no touchpoint" for p in rows["performance"]
    ]
    target = labeller(labels)(str(rows["target"].iloc[0])) if len(rows) else "the target"
    x = alt.X(
        "channel_label:N",
        sort=[_CHANNEL_LABELS[c] for c in _CHANNELS],
        title="Channel",
        axis=alt.Axis(labelAngle=0),
    )
    y = alt.Y("stage:N", sort=_STAGES, title="Stage of the journey")
    base = alt.Chart(rows).encode(x=x, y=y)
    cells = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color(
            "effect_on_target:Q",
            title=f"{target} points per point",
            scale=alt.Scale(scheme="blues", zero=True),
        ),
        opacity=alt.Opacity("certainty:Q", legend=None, scale=alt.Scale(domain=[0, 1])),
        tooltip=[
            alt.Tooltip("stage:N"),
            alt.Tooltip("channel_label:N", title="channel"),
            alt.Tooltip("touchpoints:N"),
            alt.Tooltip("effect_text:N", title=f"effect on {target} [{_HDI} HDI]"),
            alt.Tooltip("performance:Q", format=".1f"),
            alt.Tooltip("p_effective:Q", title="P(effect > 0)", format=".2f"),
        ],
    )
    names = base.mark_text(dy=-18, fontSize=11, fontWeight="bold").encode(text="touchpoints:N")
    effect = base.mark_text(fontSize=11).encode(text="effect_text:N")
    perf = base.mark_text(dy=16, fontSize=10, color="#424242").encode(text="performance_text:N")
    return (cells + names + effect + perf).properties(
        width=width,
        height=height,
        title=f"Touchpoint effectiveness on {target}, by stage and channel",
    )


def allocation_chart(
    plan: pd.DataFrame, *, target: str | None = None, labels=None
) -> alt.LayerChart:
    """The plan: expected gain of each improved touchpoint with its interval.

    Parameters
    ----------
    plan : pandas.DataFrame
        :attr:`cxlib.insights.allocation.AllocationPlan.plan`.
    target : str, optional
        What the gain is measured in (``TouchpointGains.target``: the target
        construct, or ``NPS``); default: "the target".
    labels : Study or mapping, optional
        How to name the target (:func:`cxlib.plots.labels.labeller`).

    Returns
    -------
    altair.LayerChart
    """
    low, high = interval_columns("gain")
    _need(plan, {"touchpoint", "points", "cost", "gain", low, high}, "allocation plan")
    rows = plan.copy()
    rows["what"] = [
        f"+{p:g} pts, cost {c:,.0f}" for p, c in zip(rows["points"], rows["cost"], strict=True)
    ]
    if rows.empty:
        rows = pd.DataFrame(
            {"touchpoint": ["(nothing)"], "gain": [0.0], low: [0.0], high: [0.0],
             "what": ["no improvement fits the budget"], "points": [0.0], "cost": [0.0]}
        )  # fmt: skip
    y = alt.Y("touchpoint:N", sort="-x", title=None)
    base = alt.Chart(rows).encode(y=y)
    bars = base.mark_bar(color="#1f77b4").encode(
        x=alt.X(
            "gain:Q",
            title=f"Expected gain in {labeller(labels)(target) if target else 'the target'} "
            f"(points), {_HDI} interval",
        ),
        tooltip=[
            alt.Tooltip("touchpoint:N"),
            alt.Tooltip("what:N", title="improvement"),
            alt.Tooltip("gain:Q", format=".2f"),
            alt.Tooltip(f"{low}:Q", format=".2f"),
            alt.Tooltip(f"{high}:Q", format=".2f"),
        ],
    )
    rules = base.mark_rule(color="#212121").encode(x=f"{low}:Q", x2=f"{high}:Q")
    text = base.mark_text(align="left", dx=4, dy=-8, fontSize=10).encode(
        x=f"{high}:Q", text="what:N"
    )
    return (bars + rules + text).properties(width=420, title="Allocation plan")


def delivery_gap_chart(gap: pd.DataFrame) -> alt.LayerChart:
    """Company vs customers per touchpoint: the gap with its interval, coloured by P(overrates).

    Parameters
    ----------
    gap : pandas.DataFrame
        :attr:`cxlib.insights.delivery_gap.DeliveryGap.table`.

    Returns
    -------
    altair.LayerChart
    """
    low, high = interval_columns("gap")
    _need(
        gap,
        {"touchpoint", "gap", low, high, "p_company_overrates", "internal_rating",
         "customer_mean"},
        "delivery gap",
    )  # fmt: skip
    rows = gap.copy()
    rows["verdict"] = np.select(
        [rows["p_company_overrates"] > 0.9, rows["p_company_overrates"] < 0.1],
        ["company overrates", "company underrates"],
        "unclear",
    )
    colors = {"company overrates": "#d62728", "unclear": "#9e9e9e", "company underrates": "#2ca02c"}
    y = alt.Y("touchpoint:N", sort="-x", title=None)
    base = alt.Chart(rows).encode(y=y)
    color = alt.Color(
        "verdict:N",
        scale=alt.Scale(domain=list(colors), range=list(colors.values())),
        title="P(company overrates)",
    )
    rule = base.mark_rule(strokeWidth=2).encode(x=f"{low}:Q", x2=f"{high}:Q", color=color)
    point = base.mark_point(filled=True, size=70).encode(
        x=alt.X(
            "gap:Q", title=f"Company rating minus customers' mean (scale points), {_HDI} interval"
        ),
        color=color,
        tooltip=[
            alt.Tooltip("touchpoint:N"),
            alt.Tooltip("internal_rating:Q", title="company", format=".2f"),
            alt.Tooltip("customer_mean:Q", title="customers", format=".2f"),
            alt.Tooltip("gap:Q", format=".2f"),
            alt.Tooltip("p_company_overrates:Q", title="P(company overrates)", format=".2f"),
        ],
    )
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4]).encode(x="x:Q")
    return (zero + rule + point).properties(width=420, title="The delivery gap")
