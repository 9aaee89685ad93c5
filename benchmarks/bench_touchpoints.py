"""Benchmark the touchpoint layer: the budget allocator, and fitting the touchpoint model.

Target (issue "Touchpoints across the customer journey"): an allocation for 30
touchpoints x 1,000 posterior draws in <= 1 s, deterministic. Measured for the expected-
gain objective (exact integer knapsack, plus its runner-up plans) and the risk-aware one
(10th percentile of the total gain), at three budgets; the median of repeated calls.

Also: preparing the sufficient statistics and fitting
:class:`~cxlib.models.touchpoints.TouchpointModel` on the sample study (8,000
respondents, 9 touchpoints, 2 chains x 1,000 draws after 1,000 tuning), once.

Usage: python benchmarks/bench_touchpoints.py [--no-fit]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def allocation_case(T: int = 30, S: int = 1000, seed: int = 0):
    """Gain draws and a cost table of ``T`` touchpoints (half of them capped at 10 points)."""
    from cxlib.insights.allocation import TouchpointGains

    rng = np.random.default_rng(seed)
    mean = rng.uniform(0.01, 0.1, T)
    common = rng.standard_normal((S, 1))  # draws share a factor, as a model's do
    draws = mean + rng.uniform(0.005, 0.03, T) * (0.6 * common + 0.8 * rng.standard_normal((S, T)))
    gains = TouchpointGains([f"tp{k:02d}" for k in range(T)], draws, rng.uniform(40, 80, T))
    costs = pd.DataFrame(
        {
            "touchpoint": gains.touchpoints,
            "cost_per_point": rng.uniform(1_000, 10_000, T).round(-2),
            "max_improvement": np.where(rng.random(T) < 0.5, 10.0, np.nan),
        }
    )
    return gains, costs


def time_allocation(repeats: int = 7) -> list[dict]:
    from cxlib.insights.allocation import allocate_budget

    gains, costs = allocation_case()
    full = float((costs["cost_per_point"] * costs["max_improvement"].fillna(40)).sum())
    rows = []
    for objective in ("expected", "quantile"):
        for share in (0.02, 0.1, 0.4):
            budget = round(share * full, -3)
            allocate_budget(gains, costs, budget, objective=objective)  # warm (imports)
            times, plans = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                plan = allocate_budget(gains, costs, budget, objective=objective)
                times.append(time.perf_counter() - start)
                plans.append(plan.points.tobytes())
            rows.append(
                {
                    "objective": objective,
                    "budget": f"{budget:,.0f} ({share:.0%} of all caps)",
                    "median s": f"{statistics.median(times):.3f}",
                    "max s": f"{max(times):.3f}",
                    "touchpoints improved": int((plan.points > 0).sum()),
                    "runner-ups": len(plan.alternatives),
                    "same plan every call": len(set(plans)) == 1,
                    "load avg": f"{os.getloadavg()[0]:.1f}",
                }
            )
            print(rows[-1], flush=True)
    return rows


def time_fit() -> dict:
    from cxlib.models.touchpoints import TouchpointModel
    from cxlib.pipeline.inputs import load_inputs

    study, data = load_inputs()
    model = TouchpointModel(study)
    start = time.perf_counter()
    model.prepare(data)
    prepared = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit()
    fitted = time.perf_counter() - start
    d = result.diagnostics
    row = {
        "respondents": data.n_respondents,
        "touchpoints": len(model.data.touchpoints),
        "prepare s": f"{prepared:.2f}",
        "fit s (compile + 2 x 2,000 iterations)": f"{fitted:.1f}",
        "max R-hat": f"{d.max_r_hat:.3f}",
        "min bulk ESS": f"{d.min_ess_bulk:.0f}",
        "divergences": d.divergences,
        "load avg": f"{os.getloadavg()[0]:.1f}",
    }
    print(row, flush=True)
    return row


def main() -> None:
    from _results import machine, markdown_table, update_results

    alloc = time_allocation()
    text = (
        "## Touchpoints (`bench_touchpoints.py`)\n\n"
        f"{machine()}. Target: an allocation for 30 touchpoints x 1,000 draws in <= 1 s. Times "
        "are of the whole `allocate_budget` call (the plan, its runner-up plans and their "
        "summaries); the machine is shared (load average at the time in the table).\n\n"
        + markdown_table(alloc, list(alloc[0]))
    )
    if "--no-fit" not in sys.argv:
        fit = time_fit()
        text += "\n\nFitting the touchpoint model on the sample study:\n\n" + markdown_table(
            [fit], list(fit)
        )
    update_results("bench_touchpoints", text)


if __name__ == "__main__":
    main()
