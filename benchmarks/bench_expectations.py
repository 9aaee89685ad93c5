"""Benchmark ExpectationsModel: fit time and ESS/s for 2,000 / 20,000 / 200,000 respondents.

Data: ``simulate_expectations`` on the sample study (3 segments x 8 attributes, Loyalty
score as the outcome). Each size is fitted with the default likelihood from sufficient
statistics; the row-wise likelihood (one term per respondent, same posterior) is fitted
for comparison at the sizes given by ``--rowwise`` (default 2,000 only: its cost grows
with the respondents, and at 20,000 it ran for over 10 minutes on the shared 2-core machine). Every fit runs in its own process, one after another, so
import and compile times are included and the numbers are side by side.

The simulated data have 2% of the answers missing (completely at random), so the
default fits include the cost of the missing-data route (respondents with a missing
expectation or perception answer enter the likelihood as mixtures over the likely
values of the missing answers); ``--mean-imputation`` sizes add fits with the old mean
imputation for comparison.

``--missing`` instead measures the *bias* of the two routes: for each scenario (2% and
5% missing completely at random, 5% missing at random given the expectations) it fits
``--missing-n`` respondents with ``missing="model"`` and ``missing="mean_imputation"``
and reports the mean relative error of the 48 segment slopes (penalty and reward per
attribute and segment) and how many of them their 90% HDI covers.

Usage: python benchmarks/bench_expectations.py [--sizes 2000 20000 200000] [--rowwise 2000]
       python benchmarks/bench_expectations.py --missing [--missing-n 6000]
Target (issue "cxlib.models.expectations"): 20,000 respondents converged
(R-hat <= 1.01) in under 60 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TARGET_S = 60.0


def one(n: int, likelihood: str, missing: str = "model") -> dict:
    """Simulate, prepare and fit once in this process; return the timings."""
    import warnings

    t0 = time.perf_counter()
    from cxlib import config
    from cxlib.models.expectations import ExpectationsModel, simulate_expectations
    from cxlib.study import load_study

    study = load_study(config.SAMPLE_STUDY)
    frame, _ = simulate_expectations(study, n=n, seed=1)
    t1 = time.perf_counter()
    model = ExpectationsModel(study, model_config={"likelihood": likelihood, "missing": missing})
    model.prepare(frame)
    t2 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit()
    t3 = time.perf_counter()
    diag = result.diagnostics
    stats = result.idata.sample_stats
    sampling = float(stats.attrs.get("sampling_time", float("nan")))
    inc = model.data.incomplete
    return {
        "respondents": n,
        "likelihood": likelihood,
        "missing": missing,
        "incomplete": 0 if inc is None else inc.n_rows,
        "load": _load(),
        "simulate_s": t1 - t0,
        "prepare_s": t2 - t1,
        "fit_s": t3 - t2,
        "sampling_s": sampling,
        "max_r_hat": diag.max_r_hat,
        "min_ess_bulk": diag.min_ess_bulk,
        "divergences": diag.divergences,
        "tree_depth": float(stats["tree_depth"].mean()),
        "ok": bool(diag.ok),
    }


def _load() -> float:
    """The 1-minute load average (the machine is shared: timings depend on it)."""
    import os

    return float(os.getloadavg()[0])


def bias_one(n: int, rate: float, mechanism: str, missing: str, seed: int = 11) -> dict:
    """Fit simulated data with missing answers; the slopes' error against the truth."""
    import warnings

    import numpy as np

    from cxlib import config
    from cxlib.models.expectations import (
        ExpectationsModel,
        default_expectations_truth,
        simulate_expectations,
    )
    from cxlib.study import load_study

    study = load_study(config.SAMPLE_STUDY)
    truth = default_expectations_truth(study)
    truth.missing_rate = rate
    truth.missing_mechanism = mechanism
    frame, truth = simulate_expectations(study, truth, n=n, seed=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ExpectationsModel(study, model_config={"missing": missing}).fit(
            frame, draws=500, tune=500
        )
    fit_s = time.perf_counter() - t0
    scale = 25.0  # Loyalty score points per item point
    table = result.penalty_reward(by_segment=True, hdi_prob=0.9)
    est, true, covered = [], [], []
    for row in table.itertuples():
        for side, fn in (("penalty", truth.penalty_for), ("reward", truth.reward_for)):
            t = fn(study, row.attribute, row.segment) * scale
            est.append(getattr(row, side))
            true.append(t)
            covered.append(getattr(row, f"{side}_hdi_low") <= t <= getattr(row, f"{side}_hdi_high"))
    est, true = np.array(est), np.array(true)
    return {
        "respondents": n,
        "rate": rate,
        "mechanism": mechanism,
        "missing": missing,
        "slope_bias_pct": float(100 * (est - true).sum() / true.sum()),
        "slope_mae": float(np.abs(est - true).mean()),
        "coverage90": float(np.mean(covered)),
        "fit_s": fit_s,
        "max_r_hat": result.diagnostics.max_r_hat,
        "incomplete": int(result.data.incomplete.n_rows) if result.data.incomplete else 0,
        "load": _load(),
    }


def _subprocess(args: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"run {args} failed")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["process_s"] = time.perf_counter() - t0
    print(json.dumps(r), flush=True)
    return r


def missing_study(n: int, write: bool, scenarios: list[str]) -> None:
    """Bias of the missing-data routes; writes its own RESULTS.md section."""
    from _results import machine, markdown_table, update_results

    rows = []
    for scenario in scenarios:
        rate_text, mechanism = scenario.split(":")
        rate = float(rate_text)
        for missing in ("mean_imputation", "model"):
            rows.append(_subprocess(["--bias", str(n), str(rate), mechanism, missing]))
    table = [
        {
            "missing answers": f"{r['rate']:.0%} {r['mechanism'].upper()}",
            "route": r["missing"],
            "respondents with a missing answer": f"{r['incomplete']:,}",
            "slope bias %": f"{r['slope_bias_pct']:+.1f}",
            "mean abs. error": f"{r['slope_mae']:.2f}",
            "90% HDI covers": f"{r['coverage90']:.0%}",
            "fit s": f"{r['fit_s']:.0f}",
            "max R-hat": f"{r['max_r_hat']:.3f}",
            "load": f"{r['load']:.1f}",
        }
        for r in rows
    ]
    md = "\n".join(
        [
            "## Expectations model: missing answers (`bench_expectations.py --missing`)",
            "",
            machine(),
            "",
            markdown_table(table, list(table[0])),
            "",
            f"{n:,} simulated respondents x 3 segments x 8 attributes (known truth, "
            "`simulate_expectations`), Loyalty score (0-100), 2 chains x 500 draws after 500 "
            "tuning steps. `slope bias %` = sum of "
            "(posterior mean - truth) over the 48 segment slopes (penalty and reward per "
            "attribute and segment) / sum of the truths; `mean abs. error` in score points "
            "per scale point; `90% HDI covers` = share of the 48 truths inside their 90% "
            "HDI. MCAR: every item missing completely at random; MAR: expectations "
            "complete, perceptions skipped more often by respondents with high "
            "expectations. `mean_imputation` = the former route (segment means); `model` "
            "= the mixture likelihood over the missing answers (default). `load` = 1-minute "
            "load average at the end of the fit (shared 2-core machine).",
        ]
    )
    print(md)
    if write:
        update_results("bench_expectations_missing", md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    parser.add_argument("--rowwise", type=int, nargs="*", default=[2000])
    parser.add_argument("--mean-imputation", type=int, nargs="*", default=[20000])
    parser.add_argument("--missing", action="store_true", help="bias of the missing routes")
    parser.add_argument("--missing-n", type=int, default=6000)
    parser.add_argument("--scenarios", nargs="+", default=["0.02:mcar", "0.05:mcar", "0.05:mar"])
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--bias", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), *args.one[1:])))
        return
    if args.bias:
        n, rate, mechanism, missing = args.bias
        print(json.dumps(bias_one(int(n), float(rate), mechanism, missing)))
        return
    if args.missing:
        missing_study(args.missing_n, not args.no_write, args.scenarios)
        return

    from _results import machine, markdown_table, update_results

    runs = (
        [(n, "sufficient", "model") for n in args.sizes]
        + [(n, "sufficient", "mean_imputation") for n in args.mean_imputation]
        + [(n, "rowwise", "model") for n in args.rowwise]
    )
    rows = [_subprocess(["--one", str(n), lik, miss]) for n, lik, miss in runs]

    table = []
    for r in rows:
        met = ""
        if (
            r["respondents"] == 20000
            and r["likelihood"] == "sufficient"
            and r["missing"] == "model"
        ):
            met = "yes" if (r["fit_s"] < TARGET_S and r["max_r_hat"] <= 1.01) else "no"
        table.append(
            {
                "respondents": f"{r['respondents']:,}",
                "likelihood": r["likelihood"],
                "missing answers": r["missing"],
                "with a missing answer": f"{r['incomplete']:,}",
                "prepare s": f"{r['prepare_s']:.2f}",
                "fit s": f"{r['fit_s']:.1f}",
                "sampling s": f"{r['sampling_s']:.1f}",
                "max R-hat": f"{r['max_r_hat']:.3f}",
                "min bulk ESS": f"{r['min_ess_bulk']:.0f}",
                "ESS/s (fit)": f"{r['min_ess_bulk'] / r['fit_s']:.1f}",
                "divergences": r["divergences"],
                "mean tree depth": f"{r['tree_depth']:.2f}",
                "target < 60 s": met,
                "load": f"{r['load']:.1f}",
            }
        )
    cols = list(table[0])
    md = "\n".join(
        [
            "## Expectations model (`bench_expectations.py`)",
            "",
            machine(),
            "",
            markdown_table(table, cols),
            "",
            "3 segments x 8 attributes (4 technical, 4 emotional), Loyalty score (0-100) as the "
            "outcome, simulated with `simulate_expectations` (known asymmetric truth). Default "
            "sampler: 2 chains x 1,000 draws after 1,000 tuning steps, NUTS started from the "
            "Laplace approximation (its covariance as the starting dense mass matrix, "
            "cxlib/models/sampling.py). `fit` = build + compile + Laplace + sample + "
            "diagnostics (`prepare` "
            "= gaps, features and sufficient statistics from the frame). `ESS/s` = smallest bulk "
            "ESS over all monitored parameters / fit seconds. `sufficient` evaluates the "
            "Gaussian likelihood from per-segment X'WX, X'Wy, y'Wy (cost independent of the "
            "number of respondents); `rowwise` is the same likelihood with one term per "
            "respondent. `missing answers`: 2% of the answers are missing completely at random "
            "(a quarter of the respondents miss at least one of their 15 attribute answers: "
            "`with a missing answer`); `model` (default) puts those respondents into the "
            "likelihood as mixtures over the likely values of their missing answers (one "
            "compiled numba pass with its gradient, `expectations_likelihood`), while the "
            "complete ones stay in the sufficient statistics; `mean_imputation` is the former "
            "route (biased, see the next section), shown for its cost. `prepare` includes the "
            "EM fit of the item model and the combinations of missing answers. The machine "
            "was shared with other work while these ran (`load` = 1-minute load average at "
            "the end of the fit, 2 cores), so timings are noisy; each row ran in its own "
            "process, one after another.",
        ]
    )
    print(md)
    if not args.no_write:
        update_results("bench_expectations", md)


if __name__ == "__main__":
    main()
