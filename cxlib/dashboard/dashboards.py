"""The four executive dashboards: overview, drivers, what-if and segments.

Each is a :class:`~cxlib.dashboard.widgets.Dashboard` over the published results of
one study; the notebooks in ``dashboards/`` only create one and display it. They
read published artifacts (``notebooks/README.md``), suppress small cells, and never
fit anything: the what-if recomputes from the stored posterior draws
(:func:`cxlib.insights.what_if`) in milliseconds.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import pandas as pd

from cxlib import config
from cxlib.dashboard.results import suppress_small_cells
from cxlib.dashboard.widgets import (
    HDI_LABEL,
    ChartView,
    Dashboard,
    esc,
    fmt,
    interval,
    not_published,
    note,
    suppressed_note,
)
from cxlib.insights.kpis import KPI_LABELS

__all__ = [
    "DriversDashboard",
    "HEADLINE_KPIS",
    "OverviewDashboard",
    "SegmentsDashboard",
    "WhatIfDashboard",
]

#: The KPIs the overview leads with.
HEADLINE_KPIS = ("nps", "satisfaction_mean", "loyalty_index")
#: How far a what-if slider moves a driver (score points, 0-100 scale).
WHAT_IF_RANGE = 20


def _waves(table: pd.DataFrame) -> list[str]:
    return [str(w) for w in dict.fromkeys(table["wave"])]


def _set_options(dropdown: widgets.Dropdown, options: list, keep: bool = True) -> None:
    """Replace a dropdown's options, keeping its value when it is still offered."""
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    old = dropdown.value
    dropdown.options = options
    if keep and old in values:
        dropdown.value = old
    elif values:
        dropdown.index = 0


def _html_table(rows: list[list[str]], head: list[str], cls: str = "") -> str:
    """A table from already-escaped cells."""
    out = [f'<table class="cx-table {cls}"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "".join(out) + "</table>"


class _Quiet:
    """Suspend a dashboard's observers while it refills its controls."""

    def __init__(self, dashboard):
        self.dashboard = dashboard

    def __enter__(self):
        self.dashboard._quiet = True

    def __exit__(self, *exc):
        self.dashboard._quiet = False


class _Wired(Dashboard):
    _quiet = False

    def _wire(self, *controls) -> None:
        for control in controls:
            control.observe(self._changed, "value")

    def _changed(self, _change) -> None:
        if not self._quiet:
            self.safely(self.update)

    def update(self) -> None:
        """Redraw after a control changed."""


# ----------------------------------------------------------------------------- overview
class OverviewDashboard(_Wired):
    """How the customer experience is doing: headline KPIs, their trend, open alerts."""

    def build(self) -> None:
        """Create the controls."""
        self.segment = widgets.Dropdown(description="Segment")
        self.kpi = widgets.Dropdown(
            options=[(KPI_LABELS[k], k) for k in HEADLINE_KPIS], description="Trend of"
        )
        self.cards = widgets.HTML()
        self.suppressed = widgets.HTML()
        self.trend = ChartView()
        self.alerts = widgets.HTML()
        self.body.children = [
            widgets.HBox([self.segment, self.kpi]),
            self.cards,
            self.suppressed,
            self.trend,
            self.alerts,
        ]
        self._wire(self.segment, self.kpi)

    def render(self) -> None:
        """Fill from the published ``kpis`` and ``alerts`` tables."""
        results = self.results
        kpis = results.table("overview", "kpis")
        self.kpis, self.cells = suppress_small_cells(kpis, results.min_cell_size)
        if kpis is None:
            with _Quiet(self):
                _set_options(self.segment, [])
            self.cards.value = not_published("KPIs", "overview")
            self.suppressed.value = ""
            self.trend.show(None)
        else:
            self.all_kpis = kpis
            with _Quiet(self):
                _set_options(self.segment, list(dict.fromkeys(kpis["segment"].astype(str))))
                available = [
                    (KPI_LABELS.get(k, k), k) for k in HEADLINE_KPIS if k in set(kpis["kpi"])
                ]
                _set_options(self.kpi, available)
            self.suppressed.value = suppressed_note(self.cells, results.min_cell_size)
        self.alerts.value = self._alerts_html()
        if kpis is not None:
            self.update()

    def update(self) -> None:
        """Redraw the cards and the trend for the chosen segment and KPI."""
        if self.kpis is None or self.segment.value is None:
            return
        segment, kpi = self.segment.value, self.kpi.value
        waves = _waves(self.all_kpis)
        latest = waves[-1]
        cards = []
        for key in HEADLINE_KPIS:
            if key not in set(self.all_kpis["kpi"]):
                continue
            rows = self.kpis[
                (self.kpis["kpi"] == key)
                & (self.kpis["segment"] == segment)
                & (self.kpis["wave"] == latest)
            ]
            label = esc(KPI_LABELS.get(key, key))
            if rows.empty:
                cards.append(
                    f'<div class="cx-card" data-kpi="{key}"><div>{label}</div>'
                    f'<div class="cx-big cx-suppressed-value">—</div><div class="cx-muted">'
                    f"suppressed: fewer than {self.results.min_cell_size} respondents</div></div>"
                )
                continue
            r = rows.iloc[0]
            digits = 2 if key == "satisfaction_mean" else 1
            p_up = 1 - r["p_change_negative"] if pd.notna(r["p_change_negative"]) else math.nan
            change = (
                f'<div class="cx-change">vs. last wave: <span data-field="change">'
                f"{fmt(r['change'], digits, sign=True)}</span> "
                f"{interval(r, 'change', digits, sign=True)}, "
                f'P(up) = <span data-field="p_up">{fmt(p_up, 2)}</span></div>'
                if pd.notna(r["change"])
                else '<div class="cx-change cx-muted">first wave: no change yet</div>'
            )
            cards.append(
                f'<div class="cx-card" data-kpi="{key}"><div>{label} · {esc(segment)} · '
                f'{esc(latest)}</div><div class="cx-big" data-field="mean">{fmt(r["mean"], digits)}'
                f'</div><div class="cx-muted">{HDI_LABEL} interval <span data-field="interval">'
                f"{interval(r, digits=digits)}</span> · "
                f"n = {int(r['n'])}</div>{change}</div>"
            )
        self.cards.value = f'<div class="cx-cards">{"".join(cards)}</div>'
        from cxlib.plots import kpi_trend

        everyone = config.EVERYONE
        segments = [segment] if segment == everyone else [everyone, segment]
        shown = self.kpis[(self.kpis["kpi"] == kpi) & self.kpis["segment"].isin(segments)]
        if shown.empty:
            self.trend.show(None, note("No wave of this segment has enough respondents to show."))
            return
        chart = kpi_trend(self.kpis, kpi, segments=segments)
        self.trend.show(chart)

    def _alerts_html(self) -> str:
        alerts = self.results.table("overview", "alerts")
        if alerts is None:
            return not_published("Alerts", "overview")
        open_, _ = suppress_small_cells(
            alerts[alerts["fired"]], self.results.min_cell_size, n_column="__none__"
        )
        if open_.empty:
            return '<h3>Open alerts</h3><div class="cx-note cx-alerts-none">No open alerts.</div>'
        open_ = open_.sort_values("probability", ascending=False)
        rows = [
            [
                esc(r["rule_name"]),
                esc(r["segment"]),
                esc(r["wave"]),
                fmt(r["probability"], 2),
                esc(r["message"]),
            ]
            for r in open_.to_dict("records")
        ]
        return "<h3>Open alerts</h3>" + _html_table(
            rows, ["alert", "segment", "wave", "probability", "message"], "cx-alerts"
        )


# ----------------------------------------------------------------------------- drivers
class DriversDashboard(_Wired):
    """What to fix first: the priority map by segment, and technical vs. emotional weights."""

    def build(self) -> None:
        """Create the controls."""
        self.segment = widgets.Dropdown(description="Segment")
        self.map = ChartView()
        self.table = widgets.HTML()
        self.suppressed = widgets.HTML()
        self.weights = widgets.HTML()
        self.weights_chart = ChartView()
        self.weights_chart.add_class("cx-weights-chart")
        self.dimension_weights, self.weights_suppressed, self.weights_ok = None, set(), False
        self.body.children = [
            self.segment,
            self.suppressed,
            self.map,
            self.table,
            self.weights,
            self.weights_chart,
        ]
        self._wire(self.segment)

    def render(self) -> None:
        """Fill from ``driver_priorities`` (04) and the expectations tables (03)."""
        results = self.results
        pri = results.table("drivers", "driver_priorities")
        if pri is not None:
            pri = pri[pri["level"] == "construct"]
        self.priorities, cells = suppress_small_cells(pri, results.min_cell_size)
        if pri is None:
            with _Quiet(self):
                _set_options(self.segment, [])
            self.map.show(None, not_published("Driver priorities", "drivers"))
            self.table.value = ""
            self.suppressed.value = ""
        else:
            self.latest = _waves(pri)[-1]
            with _Quiet(self):
                _set_options(self.segment, list(dict.fromkeys(pri["segment"].astype(str))))
            self.suppressed.value = suppressed_note(cells, results.min_cell_size)
        self.safely(self._render_weights)  # a broken weights table leaves the map standing
        self.update()

    def update(self) -> None:
        """Redraw the map, the table and the weights' summary for the chosen segment."""
        from cxlib.plots import priority_map

        segment = self.segment.value
        self.weights.value = self._weights_html(segment)
        if self.priorities is None or segment is None:
            return
        rows = self.priorities[
            (self.priorities["segment"] == segment) & (self.priorities["wave"] == self.latest)
        ]
        if rows.empty:
            self.map.show(
                None,
                note(
                    f"{segment} in {self.latest} has fewer than {self.results.min_cell_size} "
                    "respondents: suppressed."
                ),
            )
            self.table.value = ""
            return
        self.map.show(priority_map(self.priorities, segment=segment, wave=self.latest))
        rows = rows.sort_values("p_fix_first", ascending=False)
        body = [
            [
                esc(r["driver"]),
                f"{fmt(r['importance'], 3)} {interval(r, 'importance', 3)}",
                f"{fmt(r['performance'])} {interval(r, 'performance')}",
                f'<span data-driver="{esc(r["driver"])}" data-field="p_fix_first">'
                f"{fmt(r['p_fix_first'], 2)}</span>",
                esc(r["quadrant"]),
            ]
            for r in rows.to_dict("records")
        ]
        self.table.value = _html_table(
            body,
            [
                "driver",
                f"importance [{HDI_LABEL} HDI]",
                f"performance [{HDI_LABEL} HDI]",
                "P(fix first)",
                "quadrant",
            ],
            "cx-priorities",
        )

    def _render_weights(self) -> None:
        """The technical vs. emotional chart: every segment side by side (from 03)."""
        from cxlib.plots.expectations import dimension_weights_chart

        self.dimension_weights, self.weights_suppressed, self.weights_ok = None, set(), False
        table = self.results.table("expectations", "expectations_dimension_weights")
        weights, cells = suppress_small_cells(
            table, self.results.min_cell_size, n_column="n_respondents"
        )
        if table is None:
            self.weights_chart.show(None)
        elif weights.empty:
            self.weights_chart.show(
                None, suppressed_note(cells, self.results.min_cell_size) or note("No segment.")
            )
        else:
            self.weights_chart.show(
                dimension_weights_chart(weights), suppressed_note(cells, self.results.min_cell_size)
            )
        self.dimension_weights = weights
        self.weights_suppressed = set(cells["segment"].astype(str)) if "segment" in cells else set()
        self.weights_ok = True

    def _weights_html(self, segment: str | None) -> str:
        """The heading, and the chosen segment's weights in words (every segment for everyone)."""
        head = "<h3>Technical vs. emotional</h3>"
        weights = self.dimension_weights
        if not self.weights_ok:
            return head + note("The technical vs. emotional weights could not be shown.", "bad")
        if weights is None:
            return head + not_published("Technical vs. emotional weights", "expectations")
        if segment in self.weights_suppressed:
            return head + note(
                f"{segment} has fewer than {self.results.min_cell_size} respondents: suppressed."
            )
        chosen = weights[weights["segment"].astype(str) == str(segment)]
        rows = chosen if not chosen.empty else weights  # everyone: every segment
        lines = [
            f'<div class="cx-weight" data-segment="{esc(r["segment"])}">{esc(r["segment"])}: '
            f"emotional {fmt(r['emotional'], 2)} {interval(r, 'emotional', 2)} vs. technical "
            f"{fmt(r['technical'], 2)} {interval(r, 'technical', 2)}; "
            'P(emotional > technical) = <span data-field="p_emotional_greater">'
            f"{fmt(r['p_emotional_greater'], 2)}</span></div>"
            for r in rows.to_dict("records")
        ]
        return (
            head
            + '<div class="cx-muted">Outcome change per scale point of gap '
            + f"({HDI_LABEL} intervals).</div>"
            + f'<div class="cx-weights">{"".join(lines)}</div>'
        )


# ----------------------------------------------------------------------------- what-if
class WhatIfDashboard(_Wired):
    """What it would buy: one slider per driver; predicted loyalty, top-2-box and NPS."""

    def build(self) -> None:
        """Create the controls (sliders come with the driver model)."""
        self.segment = widgets.Dropdown(description="Segment")
        self.sliders_box = widgets.VBox()
        self.sliders: dict[str, widgets.FloatSlider] = {}
        self.reset = widgets.Button(description="Reset", tooltip="Set every slider back to 0")
        self.reset.on_click(lambda _b: self.safely(self._reset))
        self.outcomes = widgets.HTML()
        self.chart = ChartView()
        self.body.children = [
            self.segment,
            widgets.HTML(
                "<div class='cx-muted'>Move a driver's score (0-100 points) to see "
                "what it would buy; computed from the stored posterior draws.</div>"
            ),
            self.sliders_box,
            self.reset,
            self.outcomes,
            self.chart,
        ]
        self._wire(self.segment)

    def render(self) -> None:
        """Fill from ``driver_model.npz`` and ``what_if_baseline.json`` (04)."""
        results = self.results
        self.model = results.driver_model()
        baseline = results.json("drivers", "what_if_baseline")
        if self.model is None or not baseline or not baseline.get("segments"):
            what = "What-if (posterior draws)" if self.model is None else "What-if baseline"
            self.outcomes.value = not_published(what, "drivers")
            self.sliders_box.children = []
            self.chart.show(None)
            with _Quiet(self):
                _set_options(self.segment, [])
            return
        self.target = str(baseline.get("target") or "Loyalty")
        self.baseline = baseline["segments"]
        drivers = self.model.drivers_of(self.target)
        self.sliders = {
            d: widgets.FloatSlider(
                value=0.0,
                min=-WHAT_IF_RANGE,
                max=WHAT_IF_RANGE,
                step=1.0,
                description=d,
                continuous_update=False,
                readout_format="+.0f",
                style={"description_width": "120px"},
                layout=widgets.Layout(width="520px"),
            )
            for d in drivers
        }
        for name, slider in self.sliders.items():
            slider.add_class(f"cx-slider-{name}")
        self.sliders_box.children = list(self.sliders.values())
        self._wire(*self.sliders.values())
        with _Quiet(self):
            _set_options(self.segment, list(self.baseline))
        self.update()

    def _reset(self) -> None:
        with _Quiet(self):
            for slider in self.sliders.values():
                slider.value = 0.0
        self.update()

    def levels(self, segment: str) -> dict[str, float]:
        """The published current levels of a segment, as :func:`cxlib.insights.what_if` takes them.

        Reads ``what_if_baseline.json`` as :func:`cxlib.insights.drivers.what_if_baseline`
        writes it (``drivers`` nested; ``top2_box``, ``promoters``, ``detractors``) or flat.
        """
        entry = self.baseline[segment]
        flat = dict(entry.get("drivers") or {})
        flat.update({k: v for k, v in entry.items() if k not in ("drivers", "n")})
        return {k: float(v) for k, v in flat.items() if isinstance(v, int | float)}

    def compute(self, segment: str, shifts: dict[str, float]):
        """The what-if for a segment and driver shifts (what the page shows)."""
        from cxlib.insights import what_if

        return what_if(
            self.model, shifts, target=self.target, baseline=self.levels(segment), segment=segment
        )

    def update(self) -> None:
        """Recompute from the draws and redraw."""
        if not self.sliders or self.segment.value is None:
            return
        segment = self.segment.value
        n = self.baseline[segment].get("n")
        levels = self.levels(segment)
        if n is not None and n < self.results.min_cell_size:
            self.outcomes.value = note(
                f"{segment} has fewer than {self.results.min_cell_size} respondents: suppressed."
            )
            self.chart.show(None)
            return
        with _Quiet(self):  # keep every slider on its driver's 0-100 scale
            for driver, slider in self.sliders.items():
                now = float(levels.get(driver, 50.0))
                slider.min = float(max(-WHAT_IF_RANGE, -math.floor(now)))
                slider.max = float(min(WHAT_IF_RANGE, math.floor(100 - now)))
        shifts = {d: float(s.value) for d, s in self.sliders.items()}
        result = self.compute(segment, shifts)
        rows = [
            [
                esc(r["label"]),
                f'<span data-outcome="{esc(r["outcome"])}" data-field="change">'
                f"{fmt(r['change'], 2, sign=True)}</span>",
                interval(r, "change", 2, sign=True),
                fmt(r["p_increase"], 2),
            ]
            for r in result.table.to_dict("records")
        ]
        moved = ", ".join(f"{esc(d)} {v:+.0f}" for d, v in shifts.items() if v) or "no change"
        self.outcomes.value = (
            f"<h3>Predicted change for {esc(segment)} ({moved})</h3>"
            + _html_table(
                rows, ["outcome", "change", f"{HDI_LABEL} interval", "P(increase)"], "cx-whatif"
            )
        )
        if not self.chart.show_data(result.table):  # the bars exist: swap their rows only
            from cxlib.plots import what_if_bars

            self.chart.show(what_if_bars(result.table))


# ----------------------------------------------------------------------------- segments
class SegmentsDashboard(_Wired):
    """Segments side by side, with the posterior probability that they differ."""

    def build(self) -> None:
        """Create the controls."""
        self.kpi = widgets.Dropdown(description="KPI")
        self.wave = widgets.Dropdown(description="Wave")
        self.chart = ChartView()
        self.pairs = widgets.HTML()
        self.suppressed = widgets.HTML()
        self.body.children = [
            widgets.HBox([self.kpi, self.wave]),
            self.suppressed,
            self.chart,
            self.pairs,
        ]
        self._wire(self.kpi, self.wave)

    def render(self) -> None:
        """Fill from ``kpis`` and ``segment_differences`` (00)."""
        results = self.results
        kpis = results.table("overview", "kpis")
        self.kpis, self.cells = suppress_small_cells(kpis, results.min_cell_size)
        self.differences = results.table("overview", "segment_differences")
        if kpis is None:
            with _Quiet(self):
                _set_options(self.kpi, [])
                _set_options(self.wave, [])
            self.chart.show(None, not_published("KPIs by segment", "overview"))
            self.pairs.value = ""
            self.suppressed.value = ""
            return
        present = list(dict.fromkeys(kpis["kpi"]))
        with _Quiet(self):
            _set_options(self.kpi, [(KPI_LABELS.get(k, k), k) for k in present])
            waves = _waves(kpis)
            _set_options(self.wave, waves, keep=False)
            self.wave.value = waves[-1]
        self.suppressed.value = suppressed_note(self.cells, results.min_cell_size)
        self.update()

    def update(self) -> None:
        """Redraw for the chosen KPI and wave."""
        from cxlib.plots import segment_comparison

        if self.kpis is None or self.kpi.value is None:
            return
        kpi, wave = self.kpi.value, self.wave.value
        shown = self.kpis[(self.kpis["kpi"] == kpi) & (self.kpis["wave"] == wave)]
        if shown.empty:
            self.chart.show(None, note("No segment has enough respondents in this wave."))
        else:
            self.chart.show(segment_comparison(self.kpis, kpi, wave=wave))
        self.pairs.value = self._pairs_html(kpi, wave, set(shown["segment"].astype(str)))

    def _pairs_html(self, kpi: str, wave: str, visible: set[str]) -> str:
        if self.differences is None:
            return not_published("Differences between segments", "overview")
        d = self.differences
        d = d[(d["kpi"] == kpi) & (d["wave"].astype(str) == wave) & ~d["small_cell"]]
        d = d[d["segment_a"].astype(str).isin(visible) & d["segment_b"].astype(str).isin(visible)]
        if d.empty:
            return note("No pair of segments with enough respondents to compare in this wave.")
        digits = 2 if kpi == "satisfaction_mean" else 1
        rows = [
            [
                f"{esc(r['segment_a'])} − {esc(r['segment_b'])}",
                fmt(r["difference"], digits, sign=True),
                interval(r, "difference", digits, sign=True),
                f'<span data-pair="{esc(r["segment_a"])}|{esc(r["segment_b"])}" data-field="p">'
                f"{fmt(r['p_a_greater'], 2)}</span>",
            ]
            for r in d.to_dict("records")
        ]
        return "<h3>Do the segments differ?</h3>" + _html_table(
            rows, ["difference", "mean", f"{HDI_LABEL} interval", "P(first > second)"], "cx-pairs"
        )
