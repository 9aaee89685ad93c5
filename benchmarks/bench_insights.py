"""Benchmark the insights layer: what-if latency, and the priority map + KPI table.

Targets (issue "cxlib.insights"): one what-if evaluation for 1,000 draws x 6 drivers in
<= 50 ms; the full priority map and KPI table for 8 waves x 3 segments x 20,000
respondents in <= 2 s after the model is fitted.

The posterior draws are those of a structural model with the sample study's structure
(6 constructs, 28 items, its paths) drawn around the study's true parameters: the
timings depend on the numbers of draws, drivers, items and respondents, not on how the
draws were obtained, so no SEM is fitted here (see bench_sem.py for fitting).

Usage: python benchmarks/bench_insights.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def driver_model_from_truth(study, truth, n_draws: int, seed: int = 1):
    """Draws of (I - B)^-1, loadings and item SDs around the true parameters."""
    from cxlib.insights.drivers import DriverModel

    rng = np.random.default_rng(seed)
    s = truth.structure(study)
    latents = [c for c in study.constructs if c in s.order]
    items = {c: study.constructs[c].item_names for c in latents}
    order = [i for c in latents for i in items[c]]
    L = len(latents)
    B = np.zeros((n_draws, 1, L, L))
    for (outcome, predictor), beta in s.paths.items():
        if outcome in latents and predictor in latents:
            B[:, 0, latents.index(outcome), latents.index(predictor)] = (
                beta + 0.02 * rng.standard_normal(n_draws)
            )
    total = np.linalg.inv(np.eye(L) - B)
    loadings = np.zeros((n_draws, 1, len(order), L))
    for j, item in enumerate(order):
        latent, lam = truth.item_loading(study, item)
        if latent in latents:
            loadings[:, 0, j, latents.index(latent)] = lam + 0.02 * rng.standard_normal(n_draws)
    scales = {i: (study.item(i).scale.min, study.item(i).scale.max) for i in order}
    return DriverModel(
        latents=latents,
        items=items,
        scales=scales,
        total=total,
        loadings=loadings,
        item_sd=np.ones((n_draws, 1, len(order))),
        item_order=order,
    )


def main() -> None:
    from _results import machine, markdown_table, update_results

    from cxlib import config
    from cxlib.data import SurveyData, validate_table
    from cxlib.data.readers import RawTable
    from cxlib.insights import driver_priorities, estimate_kpis, what_if
    from cxlib.simulate import Truth, simulate_responses
    from cxlib.study import load_study, study_from_dict

    study = load_study(config.SAMPLE_STUDY)
    truth = Truth.from_yaml(config.SAMPLE_TRUTH)
    waves = [f"{y}-Q{q}" for y in (2025, 2026) for q in (1, 2, 3, 4)]
    raw_spec = study.to_dict()
    raw_spec["source"]["wave_order"] = waves
    study8 = study_from_dict(raw_spec, path=study.path)
    truth8 = truth.model_copy(update={"waves": {w: {} for w in waves}})
    frame = simulate_responses(study8, truth8, n=8 * 20_000, seed=3)
    clean, _, _ = validate_table(
        RawTable(frame=frame, path=Path("memory"), format="parquet", first_row=1), study8
    )
    data = SurveyData(
        frame=clean, study=study8, source=Path("memory"), format="memory", data_hash=""
    )

    rows = []
    model = driver_model_from_truth(study8, truth8, n_draws=1000)
    drivers = model.drivers_of("Loyalty")
    baseline = {"top2_box": 0.3, "promoters": 0.35, "detractors": 0.25}
    what_if(model, {drivers[0]: 1.0}, baseline=baseline)  # warm up
    times = []
    for k in range(50):
        shifts = {d: 1.0 + 0.1 * k for d in drivers}
        t0 = time.perf_counter()
        what_if(model, shifts, baseline=baseline)
        times.append(time.perf_counter() - t0)
    wi = float(np.median(times)) * 1000
    rows.append(
        {
            "measure": f"what-if, {len(drivers)} drivers shifted at once, 1,000 draws",
            "median": f"{wi:.1f} ms",
            "max": f"{max(times) * 1000:.1f} ms",
            "target": "<= 50 ms",
            "met": "yes" if wi <= 50 else "NO",
        }
    )
    t0 = time.perf_counter()
    kpis = estimate_kpis(data, n_draws=1000)
    t_kpi = time.perf_counter() - t0
    t0 = time.perf_counter()
    pm_c = driver_priorities(model, data, level="construct")
    pm_i = driver_priorities(model, data, level="item")
    t_pm = time.perf_counter() - t0
    total = t_kpi + t_pm
    rows.append(
        {
            "measure": f"KPI table ({len(kpis.table)} rows) + priority map, constructs and items "
            f"({len(pm_c) + len(pm_i)} rows): 8 waves x 3 segments x 20,000 respondents",
            "median": f"{total:.2f} s (KPIs {t_kpi:.2f} s, priorities {t_pm:.2f} s)",
            "max": "",
            "target": "<= 2 s",
            "met": "yes" if total <= 2 else "NO",
        }
    )
    table = markdown_table(rows, ["measure", "median", "max", "target", "met"])
    print(table)
    note = (
        "Posterior draws: a structural model with the sample study's structure drawn around its "
        "true parameters (timings depend on sizes, not on the draws' origin). Respondents simulated "
        "from data/telecom/truth.yaml over 8 waves; the KPI and priority timings include the "
        "per-cell posteriors (1,000 draws per cell) and the quadrant probabilities."
    )
    update_results(
        "bench_insights", f"## Insights (`bench_insights.py`)\n\n{machine()}\n\n{table}\n\n{note}"
    )


if __name__ == "__main__":
    main()
