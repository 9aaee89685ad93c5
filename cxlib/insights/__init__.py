"""Insights built on the models: KPIs with uncertainty, alerts, driver priorities, what-if.

Every answer is a posterior: a KPI comes with its interval and the probability that it
changed; an alert fires on a probability, not on a point estimate.
"""

from __future__ import annotations

from cxlib.insights.alerts import (
    AlertRule,
    AlertRuleError,
    evaluate_alerts,
    parse_rule,
    rules_needing_missing_inputs,
)
from cxlib.insights.allocation import (
    AllocationError,
    AllocationPlan,
    TouchpointGains,
    allocate_budget,
    read_cost_table,
)
from cxlib.insights.delivery_gap import DeliveryGap, delivery_gap, read_internal_assessment
from cxlib.insights.drivers import (
    QUADRANTS,
    DriverError,
    DriverModel,
    WhatIf,
    driver_priorities,
    sem_flags,
    what_if,
    what_if_baseline,
    what_if_examples,
)
from cxlib.insights.kpis import (
    HEADLINE_KPIS,
    KPI_LABELS,
    KpiEstimates,
    estimate_kpis,
    headline_kpi,
    segment_differences,
)
from cxlib.stats import hdi, summarize_draws

__all__ = [
    "AllocationError",
    "AllocationPlan",
    "DeliveryGap",
    "TouchpointGains",
    "allocate_budget",
    "delivery_gap",
    "read_cost_table",
    "read_internal_assessment",
    "HEADLINE_KPIS",
    "KPI_LABELS",
    "AlertRule",
    "AlertRuleError",
    "DriverError",
    "DriverModel",
    "QUADRANTS",
    "WhatIf",
    "driver_priorities",
    "what_if",
    "KpiEstimates",
    "estimate_kpis",
    "evaluate_alerts",
    "headline_kpi",
    "hdi",
    "parse_rule",
    "rules_needing_missing_inputs",
    "segment_differences",
    "sem_flags",
    "summarize_draws",
    "what_if_baseline",
    "what_if_examples",
]
