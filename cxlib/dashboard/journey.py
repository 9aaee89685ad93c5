"""The Journey page: stage x channel heat map, budget allocation with a slider, delivery gap.

Reads what ``05-touchpoints-and-journey`` publishes (``notebooks/README.md``): the
``journey_matrix``, ``touchpoint_costs``, ``allocation_summary`` and ``delivery_gap``
tables and the gain draws ``touchpoint_gains.npz``. Moving the budget slider
re-allocates from those stored draws (:func:`cxlib.insights.allocation.allocate_budget`,
milliseconds, NumPy and HiGHS); nothing is fitted or sampled.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import pandas as pd

from cxlib.dashboard.widgets import (
    HDI_LABEL,
    ChartView,
    Dashboard,
    esc,
    fmt,
    html_table,
    interval,
    note,
)
from cxlib.stats import interval_columns

__all__ = [
    "JOURNEY_NOTEBOOK",
    "JourneyDashboard",
    "behaviour_table",
    "budget_range",
    "snap_budget",
]

#: The notebook whose published artifacts the page reads.
JOURNEY_NOTEBOOK = "05-touchpoints-and-journey"
#: Steps of the budget slider between the cheapest step and the cost of every cap.
SLIDER_STEPS = 100


def budget_range(costs: pd.DataFrame, gains) -> tuple[float, float, float]:
    """``(min, max, step)`` of the budget slider.

    The minimum is the cheapest one-point step; the maximum what raising every priced
    touchpoint to its cap (or the top of the scale) costs; the step a round share of it.
    """
    perf = dict(zip(gains.touchpoints, gains.performance, strict=True))
    full, cheapest = 0.0, math.inf
    for r in costs.itertuples():
        cap = 100.0 - perf.get(r.touchpoint, 100.0)
        if pd.notna(r.max_improvement):
            cap = min(cap, float(r.max_improvement))
        if cap >= 1:
            cheapest = min(cheapest, float(r.cost_per_point))
            full += math.floor(cap) * float(r.cost_per_point)
    if not math.isfinite(cheapest):
        return 0.0, 0.0, 1.0
    raw = max((full - cheapest) / SLIDER_STEPS, 1e-9)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=raw)
    low = math.ceil(cheapest / step) * step
    return float(low), float(max(math.ceil(full / step) * step, low)), float(step)


def snap_budget(value: float, low: float, high: float, step: float) -> float:
    """The slider position nearest to a budget (on the slider's grid, within its range)."""
    k = round((min(max(value, low), high) - low) / step)
    return float(min(low + k * step, high))


def behaviour_table(effects: pd.DataFrame | None) -> str:
    """The web and app touchpoints' survey-based and behaviour-based performance, side by side.

    ``effects`` is the published ``touchpoint_effects``; its behaviour columns come from
    ``06-digital-experience`` (the satisfaction predicted for every session, 0-100). Empty
    when there are none.
    """
    if effects is None or "behaviour_performance" not in effects.columns:
        return ""
    rows = effects[effects["behaviour_performance"].notna()]
    if rows.empty:
        return ""
    body = [
        [
            esc(r["label"] if isinstance(r.get("label"), str) and r["label"] else r["touchpoint"]),
            fmt(r["performance"]),
            fmt(r["behaviour_performance"]),
            f"[{fmt(r['behaviour_performance_hdi_low'])}, "
            f"{fmt(r['behaviour_performance_hdi_high'])}]",
            f"{int(r['behaviour_sessions']):,}",
        ]
        for _, r in rows.iterrows()
    ]
    return (
        "<h4>Web and app touchpoints: what customers say and what their sessions show</h4>"
        "<div class='cx-muted'>Survey-based performance (0-100) beside the satisfaction "
        "predicted from the behaviour of every web and app session (Digital experience page)."
        "</div>"
        + html_table(
            body,
            ["touchpoint", "survey", "behaviour", f"{HDI_LABEL} interval", "sessions"],
            "cx-behaviour",
        )
    )


class JourneyDashboard(Dashboard):
    """Touchpoints across the journey: what works, where the budget goes, the delivery gap."""

    _quiet = False
    MODEL_NOTEBOOKS = (JOURNEY_NOTEBOOK,)

    def build(self) -> None:
        """Create the controls."""
        self.heatmap = ChartView()
        self.matrix_note = widgets.HTML()
        self.budget = widgets.FloatSlider(
            description="Budget",
            continuous_update=False,
            readout_format=",.0f",
            style={"description_width": "80px"},
            layout=widgets.Layout(width="560px"),
        )
        self.budget.add_class("cx-budget")
        self.objective = widgets.Dropdown(
            options=[("Expected gain", "expected"), ("10th percentile of gain", "quantile")],
            description="Maximize",
        )
        self.behaviour_html = widgets.HTML()
        self.plan_html = widgets.HTML()
        self.plan_chart = ChartView()
        self.gap_html = widgets.HTML()
        self.gap_chart = ChartView()
        self.body.children = [
            widgets.HTML("<h3>Touchpoints by stage and channel</h3>"),
            self.matrix_note,
            self.heatmap,
            self.behaviour_html,
            widgets.HTML(
                "<h3>Where the budget goes</h3><div class='cx-muted'>Move the budget: the plan "
                "is re-optimized from the stored posterior draws.</div>"
            ),
            widgets.HBox([self.budget, self.objective]),
            self.plan_html,
            self.plan_chart,
            widgets.HTML("<h3>The delivery gap</h3>"),
            self.gap_html,
            self.gap_chart,
        ]
        self.budget.observe(self._changed, "value")
        self.objective.observe(self._changed, "value")

    def _changed(self, _change) -> None:
        if not self._quiet:
            self.safely(self.update)

    # ------------------------------------------------------------------ loading
    def _gains(self):
        from cxlib.insights.allocation import AllocationError, TouchpointGains

        slot = self.results.slot(JOURNEY_NOTEBOOK)
        if slot is None:
            return None
        path = self.results.folders[slot] / "touchpoint_gains.npz"
        if not path.is_file():
            return None
        try:
            return TouchpointGains.load(path)
        except AllocationError:
            return None

    def render(self) -> None:
        """Fill from the published artifacts of ``05-touchpoints-and-journey``."""
        from cxlib.insights.allocation import validate_cost_table
        from cxlib.plots.journey import journey_heatmap

        results = self.results
        matrix = results.table(JOURNEY_NOTEBOOK, "journey_matrix")
        if matrix is None:
            self.heatmap.show(None, self.missing("Touchpoint map", JOURNEY_NOTEBOOK))
        else:
            matrix["target"] = matrix["target"].map(results.label)  # the spec's label
            self.heatmap.show(journey_heatmap(matrix))
        effects = results.table(JOURNEY_NOTEBOOK, "touchpoint_effects")
        sparse = []
        if effects is not None:
            sparse = list(effects.loc[effects["n_answered"] < results.min_cell_size, "touchpoint"])
        self.matrix_note.value = (
            note(
                f"Answered by fewer than {results.min_cell_size} respondents (pooled with their "
                f"channel and stage, read with care): {', '.join(sparse)}.",
                "warn",
            )
            if sparse
            else ""
        )
        self.behaviour_html.value = behaviour_table(effects)
        self.gains = self._gains()
        costs = results.table(JOURNEY_NOTEBOOK, "touchpoint_costs")
        self.costs = None
        if self.gains is not None and costs is not None:
            self.costs = validate_cost_table(
                costs[["touchpoint", "cost_per_point", "max_improvement"]],
                self.gains.touchpoints,
                source="published touchpoint_costs",
            )
        if self.costs is None:
            self.budget.layout.display = "none"
            self.objective.layout.display = "none"
            self.plan_html.value = self.missing(
                "Budget allocation", JOURNEY_NOTEBOOK, "touchpoint_costs"
            )
            self.plan_chart.show(None)
        else:
            low, high, step = budget_range(self.costs, self.gains)
            summary = results.table(JOURNEY_NOTEBOOK, "allocation_summary")
            start = float(summary["budget"].iloc[0]) if summary is not None else (low + high) / 2
            self._quiet = True
            try:
                self.budget.max = high
                self.budget.min = low
                self.budget.step = step
                self.budget.value = snap_budget(start, low, high, step)
                if summary is not None and summary["objective"].iloc[0] in ("expected", "quantile"):
                    self.objective.value = summary["objective"].iloc[0]
            finally:
                self._quiet = False
            self.budget.layout.display = None
            self.objective.layout.display = None
            self.update()
        self._gap()

    # ------------------------------------------------------------------ allocation
    def compute(self, budget: float, objective: str = "expected"):
        """The allocation for a budget (what the page shows), from the stored draws."""
        from cxlib.insights.allocation import allocate_budget

        return allocate_budget(self.gains, self.costs, budget, objective=objective)

    def update(self) -> None:
        """Re-allocate for the slider's budget and redraw the plan."""
        from cxlib.insights.allocation import AllocationError
        from cxlib.plots.journey import allocation_chart

        if self.costs is None:
            return
        try:
            plan = self.compute(float(self.budget.value), self.objective.value)
        except AllocationError as exc:
            self.plan_html.value = note(str(exc), "warn")
            self.plan_chart.show(None)
            return
        s = plan.summary
        rows = [
            [
                esc(r["touchpoint"]),
                f'<span data-touchpoint="{esc(r["touchpoint"])}" data-field="points">'
                f"+{fmt(r['points'], 0)}</span>",
                fmt(r["cost"], 0),
                f"{fmt(r['gain'], 2)} {interval(r, 'gain', 2)}",
            ]
            for r in plan.plan.to_dict("records")
        ]
        alternatives = [
            [
                esc(r["plan"]),
                esc(r["points"]),
                f"{fmt(r['gain'], 2)} {interval(r, 'gain', 2)}",
                fmt(r["p_plan_better"], 2),
            ]
            for r in plan.alternatives.to_dict("records")
        ]
        target = esc(self.results.label(self.gains.target))
        self.plan_html.value = (
            f'<div class="cx-cards"><div class="cx-card"><div>Expected gain in {target} '
            f'(points)</div><div class="cx-big" data-field="gain">'
            f"{fmt(s['gain'], 2)}</div><div class='cx-muted'>{HDI_LABEL} interval "
            f'<span data-field="gain_interval">{interval(s, "gain", 2)}</span> · 10th percentile '
            f'<span data-field="gain_quantile">{fmt(s["gain_quantile"], 2)}</span></div></div>'
            f'<div class="cx-card"><div>Spent of budget</div><div class="cx-big" '
            f'data-field="spent">{fmt(s["spent"], 0)}</div><div class="cx-muted">of '
            f"{fmt(s['budget'], 0)}</div></div></div>"
            + html_table(
                rows, ["touchpoint", "points", "cost", f"gain [{HDI_LABEL} HDI]"], "cx-plan"
            )
            + (
                "<h4>Runner-up plans</h4>"
                + html_table(
                    alternatives,
                    [
                        "plan",
                        "improvements",
                        f"expected gain [{HDI_LABEL} HDI]",
                        "P(plan gains more)",
                    ],
                    "cx-alternatives",
                )
                if alternatives
                else ""
            )
        )
        self.plan_chart.show(
            allocation_chart(plan.plan, target=self.results.label(self.gains.target))
        )

    # ------------------------------------------------------------------ delivery gap
    def _gap(self) -> None:
        from cxlib.plots.journey import delivery_gap_chart

        results = self.results
        gap = results.table(JOURNEY_NOTEBOOK, "delivery_gap")
        summary = results.table(JOURNEY_NOTEBOOK, "delivery_gap_summary")
        if gap is None or summary is None:
            self.gap_html.value = self.missing(
                "Delivery gap", JOURNEY_NOTEBOOK, "internal_assessment"
            )
            self.gap_chart.show(None)
            return
        small = gap["n_customers"] < results.min_cell_size
        shown = gap.loc[~small]
        s = summary.iloc[0]
        low, high = interval_columns("share_overrated")
        text = (
            f'<div class="cx-note cx-gap-summary">The company rates <b data-field="share_overrated">'
            f"{fmt(100 * s['share_overrated'], 0)}%</b> of its {int(s['n_touchpoints'])} "
            f"assessed touchpoints above its customers ({HDI_LABEL} interval "
            f"{fmt(100 * s[low], 0)}–{fmt(100 * s[high], 0)}%); "
            f"clearly (P &gt; 0.9) for {fmt(100 * s['share_clearly_overrated'], 0)}%.</div>"
        )
        if small.any():
            text += note(
                f"{int(small.sum())} touchpoint(s) rated by fewer than {results.min_cell_size} "
                "customers are suppressed.",
            )
        rows = [
            [
                esc(r["touchpoint"]),
                fmt(r["internal_rating"], 2),
                fmt(r["customer_mean"], 2),
                f"{fmt(r['gap'], 2, sign=True)} {interval(r, 'gap', 2, sign=True)}",
                f'<span data-touchpoint="{esc(r["touchpoint"])}" data-field="p_overrates">'
                f"{fmt(r['p_company_overrates'], 2)}</span>",
            ]
            for r in shown.sort_values("gap", ascending=False).to_dict("records")
        ]
        self.gap_html.value = text + html_table(
            rows,
            [
                "touchpoint",
                "company",
                "customers",
                f"gap [{HDI_LABEL} HDI]",
                "P(company overrates)",
            ],
            "cx-gap",
        )
        self.gap_chart.show(delivery_gap_chart(shown) if not shown.empty else None)
