"""KPI charts: trend over waves with intervals, and segments side by side.

Without a ``kpi``, a chart shows the study's headline KPI, the first the table has of
NPS, satisfaction (mean) and the loyalty index (:func:`cxlib.insights.kpis.headline_kpi`),
and its title names it.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from cxlib.errors import CxError
from cxlib.insights.kpis import headline_kpi

__all__ = ["kpi_trend", "segment_comparison"]

_COLUMNS = {"kpi", "label", "segment", "wave", "mean", "hdi_low", "hdi_high", "small_cell"}


def _rows(table: pd.DataFrame, kpi: str | None) -> tuple[str, pd.DataFrame]:
    missing = _COLUMNS - set(table.columns)
    if missing:
        raise CxError(f"a KPI table needs the columns {', '.join(sorted(missing))}")
    if kpi is None:
        if table.empty:
            raise CxError("the KPI table is empty: no KPI to show")
        kpi = headline_kpi(table)
    rows = table[table["kpi"] == kpi]
    if rows.empty:
        raise CxError(f"no rows for KPI {kpi!r}; the table has {', '.join(table['kpi'].unique())}")
    return kpi, rows[~rows["small_cell"]].copy()


def kpi_trend(
    table: pd.DataFrame, kpi: str | None = None, *, segments: list[str] | None = None
) -> alt.Chart:
    """A KPI over waves: posterior mean line and its HDI band, one colour per segment.

    Small cells (``small_cell``) are left out, not drawn with false confidence.

    Parameters
    ----------
    table : pandas.DataFrame
        The KPI table (:attr:`cxlib.insights.KpiEstimates.table`).
    kpi : str, optional
        Which KPI (default: the headline KPI the table has: NPS, else satisfaction,
        else the loyalty index).
    segments : list of str, optional
        Which segments (default: all).

    Returns
    -------
    altair.LayerChart
    """
    kpi, rows = _rows(table, kpi)
    if segments is not None:
        rows = rows[rows["segment"].isin(segments)]
    label = str(table.loc[table["kpi"] == kpi, "label"].iloc[0])
    waves = list(dict.fromkeys(table["wave"]))
    base = alt.Chart(rows).encode(
        x=alt.X("wave:N", sort=waves, title="Wave"),
        color=alt.Color("segment:N", title="Segment"),
    )
    band = base.mark_area(opacity=0.2).encode(y=alt.Y("hdi_low:Q", title=label), y2="hdi_high:Q")
    line = base.mark_line(point=True).encode(
        y="mean:Q",
        tooltip=[
            "segment:N",
            "wave:N",
            alt.Tooltip("mean:Q", format=".1f"),
            alt.Tooltip("hdi_low:Q", format=".1f", title="HDI low"),
            alt.Tooltip("hdi_high:Q", format=".1f", title="HDI high"),
        ],
    )
    return (band + line).properties(title=f"{label} by wave", width=420, height=240)


def segment_comparison(
    table: pd.DataFrame, kpi: str | None = None, *, wave: str | None = None
) -> alt.Chart:
    """Segments side by side in one wave: posterior mean and HDI as point and rule.

    Parameters
    ----------
    table : pandas.DataFrame
        The KPI table.
    kpi : str, optional
        Which KPI (default: the headline KPI the table has).
    wave : str, optional
        Which wave (default: the latest).

    Returns
    -------
    altair.LayerChart
    """
    kpi, rows = _rows(table, kpi)
    wave = wave if wave is not None else list(dict.fromkeys(table["wave"]))[-1]
    rows = rows[rows["wave"] == wave]
    label = str(table.loc[table["kpi"] == kpi, "label"].iloc[0])
    base = alt.Chart(rows).encode(y=alt.Y("segment:N", title=None, sort=None))
    rule = base.mark_rule().encode(x=alt.X("hdi_low:Q", title=label), x2="hdi_high:Q")
    point = base.mark_point(filled=True, size=80).encode(
        x="mean:Q", tooltip=["segment:N", alt.Tooltip("mean:Q", format=".1f"), "n:Q"]
    )
    return (rule + point).properties(title=f"{label} by segment, {wave}", width=420, height=160)
