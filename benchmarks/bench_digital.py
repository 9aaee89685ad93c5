"""Benchmark the digital experience model: calibration fit and prediction for every session.

Targets (issue "Online customer experience"): the calibration model on 10,000 surveyed
sessions under 60 s; prediction for 1,000,000 sessions under 10 s.

* **fit**: :func:`~cxlib.models.digital.simulate_sessions` makes ``--surveyed`` surveyed
  and ``--unsurveyed`` unsurveyed sessions (response depending on satisfaction);
  :class:`~cxlib.models.digital.DigitalExperienceModel` is fitted with its defaults
  (response modelled, PyMC's NUTS from the Laplace start, 2 chains x 1,000 draws after
  1,000 tuning). Reported: import, build + compile + Laplace start (fit minus sampling),
  sampling, total, min bulk ESS and ESS per sampling second, divergences.
* **gradient**: the rated sessions' bivariate normal CDF with its closed-form gradient
  (the model's) against PyTensor's differentiation of the quadrature, side by side.
* **predict**: :meth:`~cxlib.models.digital.DigitalExperienceResult.predict` for
  ``--predict`` sessions (the simulated ones repeated), 200 draws, float32 chunks; the
  median of 3 calls, and the peak of traced memory during one call.

The machine is shared: the load (``uptime``) is printed with the numbers. Nothing is
written to RESULTS.md unless ``--write-results`` is given.

Usage: python benchmarks/bench_digital.py [--surveyed 10000] [--unsurveyed 100000]
       [--predict 1000000] [--draws 1000] [--write-results]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def time_fit(n_surveyed: int, n_unsurveyed: int, draws: int) -> tuple[dict, object, object]:
    """Simulate, fit, and return the timings with the result and the sessions."""
    t0 = time.perf_counter()
    from cxlib.models.digital import DigitalExperienceModel, simulate_sessions

    t_import = time.perf_counter() - t0
    n = n_surveyed + n_unsurveyed
    sessions, _ = simulate_sessions(n, n_surveyed=n_surveyed, seed=1)
    model = DigitalExperienceModel(scale=(1, 5))
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(sessions, draws=draws, tune=draws, random_seed=1)
    fit_s = time.perf_counter() - t1
    sampling_s = float(result.idata.posterior.attrs.get("sampling_time", float("nan")))
    d = result.diagnostics
    ess = float(d.min_ess_bulk)
    row = {
        "sessions": n,
        "surveyed": int(sessions["surveyed"].sum()),
        "import_s": round(t_import, 2),
        "compile_start_s": round(fit_s - sampling_s, 1),
        "sampling_s": round(sampling_s, 1),
        "fit_s": round(fit_s, 1),
        "min_ess_bulk": round(ess),
        "ess_per_s": round(ess / sampling_s, 1),
        "max_r_hat": round(float(d.max_r_hat), 3),
        "divergences": int(d.divergences),
    }
    return row, result, sessions


def time_gradient(n: int = 10_000, repeats: int = 50) -> dict:
    """The bivariate normal CDF's value and gradient over ``n`` sessions, side by side.

    The model's op (closed-form gradient) against PyTensor's differentiation of the same
    12-node quadrature: median milliseconds per call of a compiled logp + gradient.
    """
    import numpy as np
    import pytensor
    import pytensor.tensor as pt

    from cxlib.models.digital.model import bivariate_normal_cdf_op
    from cxlib.models.digital.result import bivariate_normal_cdf

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=n), rng.normal(size=n)
    xs, ys, rs = pt.dvector("x"), pt.dvector("y"), pt.dscalar("rho")
    out = {"sessions": n}
    for name, value in (
        ("closed_form_ms", bivariate_normal_cdf_op()(xs, ys, rs)),
        ("differentiated_ms", bivariate_normal_cdf(xs, ys, rs, backend=pt)),
    ):
        total = pt.log(value).sum()
        f = pytensor.function([xs, ys, rs], [total, *pytensor.grad(total, [xs, ys, rs])])
        f(x, y, -0.4)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            f(x, y, -0.4)
            times.append(time.perf_counter() - t)
        out[name] = round(1000 * statistics.median(times), 2)
    out["ratio"] = round(out["differentiated_ms"] / out["closed_form_ms"], 2)
    return out


def time_predict(result, sessions, n: int, repeats: int = 3) -> dict:
    """Median wall time of ``predict`` on ``n`` sessions, and its traced peak memory."""
    import pandas as pd

    big = pd.concat([sessions] * (n // len(sessions) + 1), ignore_index=True).iloc[:n]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result.predict(big, draws=200)
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    result.predict(big, draws=200)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "sessions": n,
        "draws": 200,
        "predict_s_median": round(statistics.median(times), 2),
        "predict_s_min": round(min(times), 2),
        "peak_traced_mb": round(peak / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surveyed", type=int, default=10_000)
    parser.add_argument("--unsurveyed", type=int, default=100_000)
    parser.add_argument("--predict", type=int, default=1_000_000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    gradient = time_gradient(args.surveyed)
    print("gradient:", gradient, flush=True)
    fit, result, sessions = time_fit(args.surveyed, args.unsurveyed, args.draws)
    print("fit:", fit, flush=True)
    pred = time_predict(result, sessions, args.predict)
    print("predict:", pred, flush=True)
    from _results import machine, markdown_table

    text = (
        f"## Digital experience model\n\n{machine()}, load {load:.1f} at the start.\n\n"
        f"Calibration fit (2 chains, draws = tune = {args.draws}):\n\n"
        + markdown_table([fit], list(fit))
        + "\n\nThe rated sessions' bivariate normal CDF, value and gradient (ms per call):\n\n"
        + markdown_table([gradient], list(gradient))
        + "\n\nPrediction (200 draws, float32 chunks):\n\n"
        + markdown_table([pred], list(pred))
    )
    print(text)
    if args.write_results:
        from _results import update_results

        update_results("bench_digital", text)


if __name__ == "__main__":
    main()
