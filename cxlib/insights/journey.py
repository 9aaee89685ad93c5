"""The journey results as tidy tables: what ``05-touchpoints-and-journey`` publishes.

One call turns a fitted touchpoint model, the cost table, a budget and the internal
assessment into the tables the results store and the Journey dashboard read
(``notebooks/README.md``).
"""

from __future__ import annotations

import pandas as pd

from cxlib import config
from cxlib.insights.allocation import AllocationPlan, TouchpointGains, allocate_budget
from cxlib.insights.delivery_gap import DeliveryGap, delivery_gap

__all__ = ["default_budget", "journey_tables"]


def default_budget(costs: pd.DataFrame, gains: TouchpointGains, *, share: float = 0.25) -> float:
    """A budget to start from: ``share`` of what raising every priced touchpoint to its cap costs."""
    perf = dict(zip(gains.touchpoints, gains.performance, strict=True))
    full = 0.0
    for r in costs.itertuples():
        cap = 100.0 - perf.get(r.touchpoint, 100.0)
        if pd.notna(r.max_improvement):
            cap = min(cap, r.max_improvement)
        full += max(cap, 0.0) * r.cost_per_point
    return float(round(share * full, -2)) if full >= 1000 else float(share * full)


def journey_tables(
    result,
    data,
    *,
    driver_model=None,
    costs: pd.DataFrame | None = None,
    budget: float | None = None,
    internal: pd.DataFrame | None = None,
    objective: str = "expected",
    metric: str = "target",
    segment: str = "",
    wave: str = "",
    hdi_prob: float = config.HDI_PROB,
    cost_source: str = "cost table",
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Touchpoint table, stage x channel matrix, allocation and delivery gap as tidy tables.

    Parameters
    ----------
    result : TouchpointResult
        The fitted touchpoint model.
    data : SurveyData
        The responses (for the delivery gap).
    driver_model : DriverModel, optional
        The SEM's draws: effects reach the target through its total effect.
    costs : pandas.DataFrame, optional
        A checked cost table (no allocation without one).
    budget : float, optional
        Default :func:`default_budget`.
    internal : pandas.DataFrame, optional
        A checked internal assessment (no delivery gap without one).
    objective : {"expected", "quantile"}
        The allocation's objective.
    metric : {"target", "nps"}
        Allocation gains in target points, or in NPS points (needs ``driver_model``;
        see :meth:`~cxlib.models.touchpoints.TouchpointResult.gains`).
    segment, wave : str
        The filter the notebook applied (labels).

    Returns
    -------
    (dict of str to DataFrame, dict)
        Tables ``touchpoint_effects``, ``journey_matrix`` and, when given their inputs,
        ``touchpoint_costs``, ``allocation_plan``, ``allocation_alternatives``,
        ``allocation_summary``, ``delivery_gap``, ``delivery_gap_summary``; and the
        objects ``gains`` (TouchpointGains), ``plan`` (AllocationPlan or None), ``gap``
        (DeliveryGap or None).
    """
    from cxlib.models.touchpoints_data import journey_map
    from cxlib.pipeline.tables import label_table

    study = result.model.study
    tables = {
        "touchpoint_effects": result.touchpoint_table(driver_model=driver_model, hdi_prob=hdi_prob),
        "journey_matrix": result.journey_matrix(driver_model=driver_model, hdi_prob=hdi_prob),
    }
    gains = result.gains(driver_model, metric=metric, data=data)
    plan: AllocationPlan | None = None
    gap: DeliveryGap | None = None
    if costs is not None:
        budget = default_budget(costs, gains) if budget is None else float(budget)
        plan = allocate_budget(
            gains, costs, budget, objective=objective, hdi_prob=hdi_prob, cost_source=cost_source
        )
        tables["touchpoint_costs"] = costs
        tables["allocation_plan"] = plan.plan
        tables["allocation_alternatives"] = plan.alternatives
        tables["allocation_summary"] = pd.DataFrame([plan.summary])
    if internal is not None:
        gap = delivery_gap(data, journey_map(study), internal, hdi_prob=hdi_prob)
        tables["delivery_gap"] = gap.table
        tables["delivery_gap_summary"] = pd.DataFrame([gap.summary])
    labelled = {
        name: label_table(t, study=study.name, segment=segment, wave=wave)
        for name, t in tables.items()
    }
    return labelled, {"gains": gains, "plan": plan, "gap": gap}
