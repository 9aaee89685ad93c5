"""The four executive dashboards: overview, drivers, what-if and segments.

Each is a :class:`~cxlib.dashboard.widgets.Dashboard` over the published results of
one study; the notebooks in ``dashboards/`` only create one and display it. They
read published artifacts (``notebooks/README.md``), suppress small cells, and never
fit anything: the what-if recomputes from the stored posterior draws
(:func:`cxlib.insights.what_if`) in milliseconds.

Pages adapt to the study: texts and charts name constructs by the spec's labels and
KPIs as the study has them (:class:`~cxlib.dashboard.results.PublishedResults`); a part
the study cannot have says so, with the reason and how to add it; a model that did not
converge or is improper is flagged above everything it feeds.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import pandas as pd

from cxlib import config
from cxlib.dashboard.results import PublishedResults, suppress_small_cells
from cxlib.dashboard.widgets import (
    HDI_LABEL,
    ChartView,
    Dashboard,
    esc,
    fmt,
    html_table,
    interval,
    not_applicable,
    note,
    suppressed_note,
)
from cxlib.insights.kpis import HEADLINE_KPIS

__all__ = [
    "DriversDashboard",
    "HEADLINE_KPIS",
    "OverviewDashboard",
    "SegmentsDashboard",
    "WhatIfDashboard",
]

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


def _labelled_kpis(table: pd.DataFrame, results: PublishedResults) -> pd.DataFrame:
    """A ``kpis`` table whose ``label`` column names each KPI as the study does."""
    table = table.copy()
    table["label"] = [results.kpi_label(k) for k in table["kpi"]]
    return table


def _list(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and " + words[-1]


def _unmeasured(results: PublishedResults, roles: tuple[str, ...]) -> str:
    """One note per role the study lacks: what is not measured and how to add it."""
    names = {"nps": "NPS", "satisfaction": "Satisfaction", "loyalty": "Loyalty index"}
    return "".join(
        f'<div class="cx-note cx-unmeasured" data-role="{esc(role)}">Not measured: '
        f"{esc(names.get(role, role))}. {esc(reason)}.</div>"
        for role in roles
        if (reason := results.unmet(role))
    )


def _withheld_note(cells: pd.DataFrame, min_cell_size: int) -> str:
    """The note listing the withheld cells: the small ones, then their complements (no values).

    ``cells`` is :func:`~cxlib.dashboard.results.suppress_small_cells`' second frame.
    """
    if cells is None or len(cells) == 0:
        return ""
    if "reason" not in cells.columns:
        return suppressed_note(cells, min_cell_size)
    keys = [c for c in cells.columns if c != "reason"]
    complementary = cells["reason"].astype(str) == "complementary"
    note_html = suppressed_note(cells.loc[~complementary, keys], min_cell_size)
    if complementary.any():
        labels = sorted(
            {
                " × ".join(map(str, r))
                for r in cells.loc[complementary, keys].itertuples(index=False)
            }
        )
        note_html += (
            f'<div class="cx-note cx-suppressed cx-complementary">{len(labels)} more cell(s) '
            "are withheld with them, so that a small cell cannot be worked out from the "
            f"totals: {esc(', '.join(labels))}.</div>"
        )
    return note_html


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
        self.intro = widgets.HTML()
        self.unmeasured = widgets.HTML()
        self.segment = widgets.Dropdown(description="Segment")
        self.kpi = widgets.Dropdown(description="Trend of")
        self.cards = widgets.HTML()
        self.suppressed = widgets.HTML()
        self.trend = ChartView()
        self.alerts = widgets.HTML()
        self.headline: list[str] = []
        self.body.children = [
            self.intro,
            self.unmeasured,
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
        if kpis is not None:
            kpis = _labelled_kpis(kpis, results)
        self.kpis, self.cells = suppress_small_cells(kpis, results.min_cell_size)
        self.unmeasured.value = _unmeasured(results, ("nps", "satisfaction", "loyalty"))
        if kpis is None:
            self.headline = []
            with _Quiet(self):
                _set_options(self.segment, [])
                _set_options(self.kpi, [])
            self.intro.value = ""
            self.cards.value = self.missing("KPIs", "overview")
            self.suppressed.value = ""
            self.trend.show(None)
        else:
            self.all_kpis = kpis
            present = list(dict.fromkeys(kpis["kpi"]))
            # the headline KPIs the study has (any KPI it publishes when it has none of them)
            self.headline = [k for k in HEADLINE_KPIS if k in present] or present
            with _Quiet(self):
                _set_options(self.segment, list(dict.fromkeys(kpis["segment"].astype(str))))
                _set_options(self.kpi, [(results.kpi_label(k), k) for k in self.headline])
            named = _list([esc(results.kpi_label(k)) for k in self.headline])
            self.intro.value = (
                f'<div class="cx-muted cx-intro">How the customer experience is doing: {named} '
                "with their intervals, the trend over waves, the change since the last wave "
                "with its probability, and the open alerts.</div>"
            )
            self.suppressed.value = _withheld_note(self.cells, results.min_cell_size)
        self.alerts.value = self._alerts_html()
        if kpis is not None:
            self.update()

    def update(self) -> None:
        """Redraw the cards and the trend for the chosen segment and KPI."""
        if self.kpis is None or self.segment.value is None or self.kpi.value is None:
            return
        segment, kpi = self.segment.value, self.kpi.value
        waves = _waves(self.all_kpis)
        latest = waves[-1]
        cards = []
        for key in self.headline:
            rows = self.kpis[
                (self.kpis["kpi"] == key)
                & (self.kpis["segment"] == segment)
                & (self.kpis["wave"] == latest)
            ]
            label = esc(self.results.kpi_label(key))
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
            return self.missing("Alerts", "overview")
        skipped = ""
        if "status" in alerts.columns:  # rules the study cannot evaluate (e.g. NPS without NPS)
            na = alerts[alerts["status"] == "not_applicable"].drop_duplicates("rule_name")
            skipped = "".join(
                f'<div class="cx-note cx-muted cx-alert-not-applicable" '
                f'data-rule="{esc(r["rule_name"])}">Alert {esc(r["rule_name"])}: not applicable '
                f"for this study: {esc(r['reason'] or 'it needs what the study lacks')}</div>"
                for r in na.to_dict("records")
            )
            alerts = alerts[alerts["status"] != "not_applicable"]
        open_, _ = suppress_small_cells(
            alerts[alerts["fired"].astype(bool)],
            self.results.min_cell_size,
            n_column="__none__",
            cells=getattr(self, "cells", None),  # the cells the KPIs withhold
            waves=_waves(self.all_kpis) if getattr(self, "all_kpis", None) is not None else None,
        )
        if open_.empty:
            return (
                '<h3>Open alerts</h3><div class="cx-note cx-alerts-none">No open alerts.</div>'
                + skipped
            )
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
        return (
            "<h3>Open alerts</h3>"
            + html_table(rows, ["alert", "segment", "wave", "probability", "message"], "cx-alerts")
            + skipped
        )


# ----------------------------------------------------------------------------- drivers
class DriversDashboard(_Wired):
    """What to fix first: the priority map by segment, and technical vs. emotional weights."""

    MODEL_NOTEBOOKS = ("sem", "drivers", "expectations")

    def build(self) -> None:
        """Create the controls."""
        self.intro = widgets.HTML()
        self.segment = widgets.Dropdown(description="Segment")
        self.map = ChartView()
        self.table = widgets.HTML()
        self.suppressed = widgets.HTML()
        self.weights = widgets.HTML()
        self.weights_chart = ChartView()
        self.weights_chart.add_class("cx-weights-chart")
        self.dimension_weights, self.weights_suppressed, self.weights_ok = None, set(), False
        self.body.children = [
            self.intro,
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
        target = results.target
        self.intro.value = (
            '<div class="cx-muted cx-intro">The importance-performance map of the drivers of '
            f"{esc(results.label(target)) if target else 'the target'}, by segment, with "
            "uncertainty and the probability that each belongs in <i>fix first</i>.</div>"
        )
        pri = results.table("drivers", "driver_priorities")
        if pri is not None:
            pri = pri[pri["level"] == "construct"]
        self.priorities, cells = suppress_small_cells(pri, results.min_cell_size)
        if pri is None:
            with _Quiet(self):
                _set_options(self.segment, [])
            self.map.show(None, self.missing("Driver priorities", "drivers"))
            self.table.value = ""
            self.suppressed.value = ""
        else:
            self.latest = _waves(pri)[-1]
            with _Quiet(self):
                _set_options(self.segment, list(dict.fromkeys(pri["segment"].astype(str))))
            self.suppressed.value = _withheld_note(cells, results.min_cell_size)
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
        self.map.show(
            priority_map(
                self.priorities, segment=segment, wave=self.latest, labels=self.results.label
            )
        )
        rows = rows.sort_values("p_fix_first", ascending=False)
        body = [
            [
                f'<span class="cx-driver" data-code="{esc(r["driver"])}">'
                f"{esc(self.results.label(r['driver']))}</span>",
                f"{fmt(r['importance'], 3)} {interval(r, 'importance', 3)}",
                f"{fmt(r['performance'])} {interval(r, 'performance')}",
                f'<span data-driver="{esc(r["driver"])}" data-field="p_fix_first">'
                f"{fmt(r['p_fix_first'], 2)}</span>",
                esc(r["quadrant"]),
            ]
            for r in rows.to_dict("records")
        ]
        self.table.value = html_table(
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
        # the view appears only when published
        self.weights_chart.layout.display = "none" if table is None else None
        if table is None:
            self.weights_chart.show(None)
        elif weights.empty:
            self.weights_chart.show(
                None, _withheld_note(cells, self.results.min_cell_size) or note("No segment.")
            )
        else:
            self.weights_chart.show(
                dimension_weights_chart(weights), _withheld_note(cells, self.results.min_cell_size)
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
            return head + self.missing("Technical vs. emotional weights", "expectations")
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
    """What it would buy: one slider per driver; the predicted target, top-2-box and NPS.

    The target is the published baseline's (``what_if_baseline.json``), else the
    study's ``roles.target``; NPS is predicted only when the study's NPS item measures it.
    """

    MODEL_NOTEBOOKS = ("sem", "drivers")

    def build(self) -> None:
        """Create the controls (sliders come with the driver model)."""
        self.intro = widgets.HTML()
        self.segment = widgets.Dropdown(description="Segment")
        self.sliders_box = widgets.VBox()
        self.sliders: dict[str, widgets.FloatSlider] = {}
        self.reset = widgets.Button(description="Reset", tooltip="Set every slider back to 0")
        self.reset.on_click(lambda _b: self.safely(self._reset))
        self.outcomes = widgets.HTML()
        self.chart = ChartView()
        self.body.children = [
            self.segment,
            self.intro,
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
        self.target = None
        if self.model is not None and baseline and baseline.get("segments"):
            self.target = str(
                baseline.get("target") or results.target or getattr(self.model, "target", "") or ""
            )
            if self.target not in self.model.latents:
                self.target = None
        if self.target is None:
            if self.model is None:
                what = "What-if (posterior draws)"
            elif baseline and baseline.get("segments"):
                what = "What-if target"
            else:
                what = "What-if baseline"
            reason = results.not_applicable("drivers")
            if reason:
                self.outcomes.value = not_applicable("What-if", "drivers", reason)
            elif what == "What-if target":
                self.outcomes.value = note(
                    f"The what-if baseline names no target construct of the driver model "
                    f"({', '.join(self.model.latents)}); run 04-drivers-and-what-if again.",
                    "warn",
                )
            else:
                self.outcomes.value = self.missing(what, "drivers")
            self.intro.value = ""
            self.sliders_box.children = []
            self.sliders = {}
            self.chart.show(None)
            with _Quiet(self):
                _set_options(self.segment, [])
            return
        self.baseline = baseline["segments"]
        kpis = results.kpi_items
        # the study's NPS item when the pointer says which (none: no NPS); else the model's
        known = "kpis" in (results.study_summary or {})
        self.nps_item = kpis.get("nps") if known else "default"
        target = esc(results.label(self.target))
        measures = f"{target}, its top-2-box share"
        if self.nps_item == "default":
            measures += " (and NPS, where the study measures it)"
        elif self.nps_item in self.model.items.get(self.target, []):
            measures += " and NPS"
        self.intro.value = (
            "<div class='cx-muted cx-intro'>Move a driver's score (0-100 points) to see what "
            f"it would buy in {measures}; computed from the stored posterior draws.</div>"
        )
        drivers = self.model.drivers_of(self.target)
        self.sliders = {
            d: widgets.FloatSlider(
                value=0.0,
                min=-WHAT_IF_RANGE,
                max=WHAT_IF_RANGE,
                step=1.0,
                description=results.label(d),
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

    def withheld_segments(self) -> set[str]:
        """Segments withheld as complements of a small one (their levels give it away)."""
        sizes = pd.DataFrame(
            [
                {"segment": str(seg), "wave": config.EVERYONE, "n": entry.get("n")}
                for seg, entry in self.baseline.items()
                if isinstance(entry, dict) and isinstance(entry.get("n"), int | float)
            ],
            columns=["segment", "wave", "n"],
        )
        _, cells = suppress_small_cells(sizes, self.results.min_cell_size)
        return set(cells["segment"].astype(str))

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
        """The what-if for a segment and driver shifts (what the page shows).

        Its table's ``label`` names the target by the spec's label.
        """
        from cxlib.insights import what_if

        result = what_if(
            self.model,
            shifts,
            target=self.target,
            baseline=self.levels(segment),
            segment=segment,
            nps_item=self.nps_item,
        )
        label = self.results.label(self.target)
        names = {"target_score": f"{label} score (0-100)", "top2_box": f"{label} top-2-box (%)"}
        result.table["label"] = [
            names.get(o, lab)
            for o, lab in zip(result.table["outcome"], result.table["label"], strict=True)
        ]
        return result

    def update(self) -> None:
        """Recompute from the draws and redraw."""
        if not self.sliders or self.segment.value is None:
            return
        segment = self.segment.value
        n = self.baseline[segment].get("n")
        # the published baseline says why a segment is withheld (older ones: its n)
        withheld = self.baseline[segment].get("withheld")
        levels = self.levels(segment)
        if withheld == "small" or (
            withheld is None and n is not None and n < self.results.min_cell_size
        ):
            self.outcomes.value = note(
                f"{segment} has fewer than {self.results.min_cell_size} respondents: suppressed."
            )
            self.chart.show(None)
            return
        if withheld == "complementary" or segment in self.withheld_segments():
            self.outcomes.value = note(
                f"{segment} is withheld with a segment of fewer than "
                f"{self.results.min_cell_size} respondents, so that it cannot be worked out "
                "from the totals."
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
        moved = (
            ", ".join(f"{esc(self.results.label(d))} {v:+.0f}" for d, v in shifts.items() if v)
            or "no change"
        )
        self.outcomes.value = (
            f"<h3>Predicted change for {esc(segment)} ({moved})</h3>"
            + html_table(
                rows, ["outcome", "change", f"{HDI_LABEL} interval", "P(increase)"], "cx-whatif"
            )
        )
        if not self.chart.show_data(result.table):  # the bars exist: swap their rows only
            from cxlib.plots import what_if_bars

            self.chart.show(what_if_bars(result.table))


# ----------------------------------------------------------------------------- segments
class SegmentsDashboard(_Wired):
    """Segments side by side, with the posterior probability that they differ."""

    MODEL_NOTEBOOKS = ()

    def build(self) -> None:
        """Create the controls."""
        self.segments_note = widgets.HTML()
        self.kpi = widgets.Dropdown(description="KPI")
        self.wave = widgets.Dropdown(description="Wave")
        self.chart = ChartView()
        self.pairs = widgets.HTML()
        self.suppressed = widgets.HTML()
        self.body.children = [
            self.segments_note,
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
        if kpis is not None:
            kpis = _labelled_kpis(kpis, results)
        self.kpis, self.cells = suppress_small_cells(kpis, results.min_cell_size)
        self.differences = results.table("overview", "segment_differences")
        self.segments_note.value = ""
        if kpis is None:
            with _Quiet(self):
                _set_options(self.kpi, [])
                _set_options(self.wave, [])
            self.chart.show(None, self.missing("KPIs by segment", "overview"))
            self.pairs.value = ""
            self.suppressed.value = ""
            return
        reason = results.unmet("segments")
        if reason is None and set(kpis["segment"].astype(str)) <= {config.EVERYONE}:
            reason = (
                f"study {results.study!r} declares no segment column; to add it, "
                + results.how_to_add("segments")
            )
        if reason is not None:
            self.kpis = None
            with _Quiet(self):
                _set_options(self.kpi, [])
                _set_options(self.wave, [])
            self.segments_note.value = (
                '<div class="cx-note cx-missing cx-no-segments" data-missing="segments">'
                f"This study has no segments to compare: {esc(reason)}.</div>"
            )
            self.chart.show(None)
            self.pairs.value = ""
            self.suppressed.value = ""
            return
        present = list(dict.fromkeys(kpis["kpi"]))
        with _Quiet(self):
            _set_options(self.kpi, [(results.kpi_label(k), k) for k in present])
            waves = _waves(kpis)
            _set_options(self.wave, waves, keep=False)
            self.wave.value = waves[-1]
        self.suppressed.value = _withheld_note(self.cells, results.min_cell_size)
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
            return self.missing("Differences between segments", "overview")
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
        return "<h3>Do the segments differ?</h3>" + html_table(
            rows, ["difference", "mean", f"{HDI_LABEL} interval", "P(first > second)"], "cx-pairs"
        )
