"""Journey insights: what a point of touchpoint performance gains, and a budget to start from.

:func:`touchpoint_gains` turns a fitted touchpoint model (and, optionally, the SEM's
draws) into the draws an allocation needs; :func:`default_budget` proposes a budget.
The published tables of notebook 05 are built by :func:`cxlib.pipeline.tables.journey_tables`.
"""

from __future__ import annotations

import pandas as pd

from cxlib.errors import DriverError, ModelSpecificationError
from cxlib.insights.allocation import TouchpointGains
from cxlib.insights.drivers import what_if
from cxlib.stats import pair_draws

__all__ = ["default_budget", "touchpoint_gains"]


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


def touchpoint_gains(result, driver_model=None, *, metric: str = "target", data=None):
    """The draws an allocation needs: gain per performance point, per touchpoint.

    Parameters
    ----------
    result : TouchpointResult
        The fitted touchpoint model.
    driver_model : DriverModel, optional
        The SEM's draws (see
        :meth:`~cxlib.models.touchpoints.TouchpointResult.outcome_to_target_draws`).
    metric : {"target", "nps"}
        ``target``: target points (0-100) per point. ``nps``: Net Promoter Score
        points per point, linearized at the current level: the NPS change of raising
        the outcome by one point, carried through the SEM to the target and its NPS
        item along the probit link (:func:`cxlib.insights.drivers.what_if`), times
        the touchpoint's effect on the outcome. Needs ``driver_model`` and ``data``.
    data : SurveyData, optional
        Current answers (the NPS baseline), for ``metric="nps"``.

    Returns
    -------
    cxlib.insights.allocation.TouchpointGains
    """
    d = result.data
    if metric == "target":
        gain, unit = result.effect_draws(driver_model)["effect_on_target"], d.target
    elif metric == "nps":
        if driver_model is None or data is None:
            raise ModelSpecificationError(
                "NPS gains need the structural model's draws and the data: "
                "touchpoint_gains(result, driver_model, metric='nps', data=data)"
            )
        try:
            change = what_if(driver_model, {d.outcome: 1.0}, target=d.target, data=data)
        except DriverError as exc:
            raise ModelSpecificationError(f"no NPS gains: {exc}") from None
        if "nps" not in change.draws:
            raise ModelSpecificationError(
                f"no NPS gains: the study's NPS item does not measure {d.target!r} in the "
                "structural model"
            )
        beta = result.effect_draws()["effect_on_outcome"]
        gain, unit = beta * pair_draws(change.draws["nps"], beta.shape[0])[:, None], "NPS"
    else:
        raise ModelSpecificationError(f"metric must be 'target' or 'nps', got {metric!r}")
    return TouchpointGains(
        touchpoints=list(d.touchpoints),
        gain_per_point=gain,
        performance=d.performance_mean.copy(),
        labels=list(d.labels),
        channels=list(d.channels),
        stages=list(d.stages),
        target=unit,
    )
