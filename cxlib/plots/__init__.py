"""Charts (altair only): each takes tidy data and returns a Chart; no computing, no files.

The data behind a chart is the DataFrame passed in (``chart.data``), so analysts can
export exactly what they see with :func:`export_table`.
"""

from __future__ import annotations

from cxlib.plots.drivers import priority_map, what_if_bars
from cxlib.plots.expectations import dimension_weights_chart, dimension_weights_long
from cxlib.plots.export import export_table
from cxlib.plots.kpis import kpi_trend, segment_comparison
from cxlib.plots.labels import labeller
from cxlib.plots.moderation import plot_simple_slopes

__all__ = [
    "dimension_weights_chart",
    "dimension_weights_long",
    "export_table",
    "kpi_trend",
    "labeller",
    "plot_simple_slopes",
    "priority_map",
    "segment_comparison",
    "what_if_bars",
]
