"""Benchmark the models with and without an optimized BLAS, side by side in one run.

Each model of the sample study (8,000 respondents) is fitted in a fresh process twice: with
PyTensor's NumPy fallback (``blas__ldflags=``, what a pip install gave before cxlib linked
Debian's OpenBLAS) and with the BLAS that :mod:`cxlib.models.blas` chooses (``-lopenblas``
on Debian). Both start from an empty PyTensor compile cache (their own ``base_compiledir``),
so ``compile s`` is what a fresh machine pays, and the pairs run alternately (A B A B ...),
so the machine's load falls on both alike. Fits: 2 chains x 1,000 draws after 1,000 tuning
steps (the SEM: 500, as in pipelines/demo.yaml), seed 1.

Usage: python benchmarks/bench_blas.py [--models sem expectations touchpoints] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MODELS = ("sem", "expectations", "touchpoints")


def one(model_name: str) -> dict:
    """Load the sample study, fit one model in this process, return its timings."""
    import warnings

    t0 = time.perf_counter()
    import pytensor

    from cxlib import config, load_responses, load_study
    from cxlib.models import BayesianSEM, ExpectationsModel, TouchpointModel

    t_import = time.perf_counter() - t0
    study = load_study(config.SAMPLE_STUDY)
    data = load_responses(study)
    tune = 500 if model_name == "sem" else 1000
    if model_name == "sem":
        model = BayesianSEM(study)
    elif model_name == "expectations":
        segment = study.segment_columns[0] if study.segment_columns else False
        model = ExpectationsModel(study, outcome="Loyalty", segment=segment)
    else:
        model = TouchpointModel(study)
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(data, draws=1000, tune=tune, chains=2, random_seed=1)
    fit_s = time.perf_counter() - t1
    posterior = result.idata.posterior
    sampling_s = float(posterior.attrs.get("sampling_time", float("nan")))
    d = result.diagnostics
    return {
        "model": model_name,
        "ldflags": pytensor.config.blas__ldflags,
        "import_s": t_import,
        "fit_s": fit_s,
        "sampling_s": sampling_s,
        "other_s": fit_s - sampling_s,
        "min_ess_bulk": d.min_ess_bulk,
        "ess_per_s": d.min_ess_bulk / sampling_s,
        "max_r_hat": d.max_r_hat,
        "divergences": d.divergences,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg()[0],
    }


def fit_in_fresh_process(model_name: str, *, ldflags: str | None = None, tree=None) -> dict:
    """One fit (:func:`one`) in a fresh process with an empty PyTensor compile cache.

    ``ldflags``: PyTensor's ``blas__ldflags`` (None: cxlib's choice). ``tree``: a checkout
    whose ``cxlib`` is imported instead of this one (put first on ``PYTHONPATH``).
    """
    with tempfile.TemporaryDirectory(prefix="cx-bench-") as compiledir:
        env = dict(os.environ)
        flags = f"base_compiledir={compiledir}"
        env["PYTENSOR_FLAGS"] = flags if ldflags is None else f"{flags},blas__ldflags={ldflags}"
        if tree is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--one", model_name],
            capture_output=True,
            text=True,
            env=env,
            cwd=None if tree is None else str(tree),
            check=False,
        )
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{model_name} (blas__ldflags={ldflags!r}, tree={tree}) failed")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_s"] = time.perf_counter() - t0
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return

    from _results import machine, markdown_table, update_results

    from cxlib.models.blas import find_openblas

    flags = find_openblas()
    if flags is None:
        raise SystemExit("no OpenBLAS found (Debian: apt-get install libopenblas-dev)")
    subprocess.run(
        [sys.executable, "-m", "cxlib.cli", "sample"],
        check=True,
        capture_output=True,
        cwd=HERE.parent,
    )
    rows = []
    for name in args.models:
        for _ in range(args.repeats):
            pair = {
                label: fit_in_fresh_process(name, ldflags=ld)
                for label, ld in (("none", ""), ("openblas", flags))
            }
            rows.append(pair)
    table = []
    for pair in rows:
        a, b = pair["none"], pair["openblas"]
        table.append(
            {
                "model": a["model"],
                "process s: fallback / OpenBLAS": f"{a['process_s']:.1f} / {b['process_s']:.1f}",
                "ratio": f"{a['process_s'] / b['process_s']:.2f}",
                "sampling s": f"{a['sampling_s']:.1f} / {b['sampling_s']:.1f}",
                "ratio ": f"{a['sampling_s'] / b['sampling_s']:.2f}",
                "compile + start s": f"{a['other_s']:.1f} / {b['other_s']:.1f}",
                "ESS/s": f"{a['ess_per_s']:.0f} / {b['ess_per_s']:.0f}",
                "R-hat": f"{a['max_r_hat']:.3f} / {b['max_r_hat']:.3f}",
                "peak MB": f"{a['peak_mb']:.0f} / {b['peak_mb']:.0f}",
            }
        )
    md = "\n".join(
        [
            "## Models with and without an optimized BLAS (`bench_blas.py`)",
            "",
            machine() + f", load average {os.getloadavg()[0]:.1f} at the end",
            "",
            markdown_table(table, list(table[0])),
            "",
            "Each cell: PyTensor's NumPy fallback (`blas__ldflags=`, what a pip install of "
            f"PyTensor gives on Debian) / the BLAS cxlib links (`{flags}`, Debian's "
            "OpenBLAS). Every fit runs in a fresh process with an empty compile cache, the "
            "two alternately; ratios > 1 mean OpenBLAS is faster. `process s` = import, load "
            "the sample study (8,000 respondents), compile, Laplace start and sampling; "
            "`compile + start s` = the fit less its sampling. 2 chains x 1,000 draws after "
            "1,000 tuning steps (the SEM 500), seed 1. `ESS/s` = the smallest bulk ESS per "
            "second of sampling.",
        ]
    )
    print(md)
    if not args.no_write:
        update_results("bench_blas", md)


if __name__ == "__main__":
    main()
