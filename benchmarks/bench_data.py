"""Benchmark the data layer: simulate, then load + validate 1,000,000 respondents.

Each step runs in its own Python process, so its import time and peak memory
are its own. Prints a table and writes it to benchmarks/RESULTS.md.

Usage: python benchmarks/bench_data.py [--n 1000000]
Targets (issue "Workbench foundation", 2-core machine): simulate 1M < 5 s;
load + validate 1M x 40 from Parquet < 10 s and from CSV < 20 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
WORK = HERE / ".work"
TARGETS = {"simulate": 5.0, "load parquet": 10.0, "load csv": 20.0}


def step(name: str, n: int) -> dict:
    """Run one step in this process and return its timings."""
    t0 = time.perf_counter()
    from cxlib import config
    from cxlib.study import load_study

    study = load_study(config.SAMPLE_STUDY)
    if name == "simulate":
        from cxlib.simulate import Truth, simulate_responses, write_responses

        truth = Truth.from_yaml(config.SAMPLE_TRUTH)
        t1 = time.perf_counter()
        frame = simulate_responses(study, truth, n=n, seed=1)
        t2 = time.perf_counter()
        WORK.mkdir(exist_ok=True)
        write_responses(frame, WORK / "responses.parquet")
        write_responses(frame, WORK / "responses.csv")
        shape = frame.shape
    else:
        from cxlib.data import load_responses

        path = WORK / ("responses.parquet" if name == "load parquet" else "responses.csv")
        t1 = time.perf_counter()
        data = load_responses(study, path)
        data.quality_report()
        t2 = time.perf_counter()
        shape = data.frame.shape
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "import": t1 - t0,
        "work": t2 - t1,
        "peak_mb": peak,
        "rows": shape[0],
        "columns": shape[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.n)))
        return
    from _results import machine, markdown_table, update_results

    rows = []
    for name in ("simulate", "load parquet", "load csv"):
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--step", name, "--n", str(args.n)],
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        res = json.loads(out.stdout.strip().splitlines()[-1])
        target = TARGETS[name]
        rows.append(
            {
                "step": name,
                "respondents": f"{args.n:,}",
                "columns": res["columns"],
                "import s": f"{res['import']:.2f}",
                "work s": f"{res['work']:.2f}",
                "process wall s": f"{wall:.2f}",
                "peak MB": f"{res['peak_mb']:.0f}",
                "target s": f"< {target:g}",
                "met": "yes" if res["work"] < target else "NO",
            }
        )
        print(
            f"{name:<13} work {res['work']:6.2f} s   import {res['import']:5.2f} s   peak {res['peak_mb']:6.0f} MB"
        )
    cols = [
        "step",
        "respondents",
        "columns",
        "import s",
        "work s",
        "process wall s",
        "peak MB",
        "target s",
        "met",
    ]
    table = markdown_table(rows, cols)
    print(table)
    note = (
        "`work` is the step itself (simulate: drawing the responses; load: read + validate + "
        "data-quality report); writing the simulated files is not timed. Each step runs in a fresh "
        "process, so `peak MB` is that step's peak resident memory."
    )
    update_results(
        "bench_data", f"## Data layer (`bench_data.py`)\n\n{machine()}\n\n{table}\n\n{note}"
    )


if __name__ == "__main__":
    main()
