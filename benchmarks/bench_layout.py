"""Benchmark a refactor: the models of an earlier revision and of this tree, side by side.

Each model of the sample study (8,000 respondents) is fitted in a fresh process with the
cxlib of a base revision (a git worktree under ``benchmarks/.work/``, put first on
``PYTHONPATH``) and with the cxlib of this working tree, alternately, so the machine's
load falls on both alike; which side runs first alternates from pair to pair. Every fit
starts from an empty PyTensor compile cache and uses the BLAS cxlib chooses. The fit is
:func:`bench_blas.one` (2 chains x 1,000 draws after 1,000 tuning steps, the SEM 500;
seed 1), so the two sides run the same script and differ only in the library.

Usage: python benchmarks/bench_layout.py [--base REV] [--models sem expectations touchpoints]
       [--repeats 1] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
MODELS = ("sem", "expectations", "touchpoints")
#: The last commit before the house plan (issue #16).
DEFAULT_BASE = "06e9d37"


def worktree(rev: str) -> Path:
    """A checkout of ``rev`` under benchmarks/.work/ (made once), with the sample data."""
    path = HERE / ".work" / f"tree-{rev}"
    if not path.exists():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), rev],
            check=True,
            capture_output=True,
        )
    data = REPO / "data" / "telecom" / "responses.parquet"
    target = path / "data" / "telecom" / data.name
    if not target.exists():
        target.write_bytes(data.read_bytes())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help="the revision to compare with")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()

    from _results import machine, markdown_table, update_results
    from bench_blas import fit_in_fresh_process

    subprocess.run(
        [sys.executable, "-m", "cxlib.cli", "sample"], check=True, capture_output=True, cwd=REPO
    )
    base = worktree(args.base)
    rows = []
    for k, name in enumerate(args.models):
        for r in range(args.repeats):
            # alternate which side runs first, so that an order effect falls on both
            order = ("base", "now") if (k + r) % 2 == 0 else ("now", "base")
            trees = {"base": base, "now": REPO}
            rows.append({side: fit_in_fresh_process(name, tree=trees[side]) for side in order})
    table = []
    for pair in rows:
        a, b = pair["base"], pair["now"]
        table.append(
            {
                "model": a["model"],
                "process s: base / now": f"{a['process_s']:.1f} / {b['process_s']:.1f}",
                "ratio": f"{a['process_s'] / b['process_s']:.2f}",
                "sampling s": f"{a['sampling_s']:.1f} / {b['sampling_s']:.1f}",
                "ratio ": f"{a['sampling_s'] / b['sampling_s']:.2f}",
                "compile + start s": f"{a['other_s']:.1f} / {b['other_s']:.1f}",
                "import s": f"{a['import_s']:.2f} / {b['import_s']:.2f}",
                "ESS/s": f"{a['ess_per_s']:.0f} / {b['ess_per_s']:.0f}",
                "min ESS": f"{a['min_ess_bulk']:.0f} / {b['min_ess_bulk']:.0f}",
                "peak MB": f"{a['peak_mb']:.0f} / {b['peak_mb']:.0f}",
            }
        )
    md = "\n".join(
        [
            "## A refactor side by side (`bench_layout.py`)",
            "",
            machine()
            + f", base `{args.base}` vs this tree, load average {os.getloadavg()[0]:.1f} at the end",
            "",
            markdown_table(table, list(table[0])),
            "",
            "Each cell: the cxlib of the base revision / of this tree, every fit in a fresh "
            "process with an empty compile cache, the two alternately (which runs first "
            "alternates from pair to pair); ratios > 1 mean this "
            "tree is faster. `process s` = import, load the sample study (8,000 respondents), "
            "compile, Laplace start and sampling; `compile + start s` = the fit less its "
            "sampling. The same seed gives the same draws on both sides when a refactor keeps "
            "the numbers (`min ESS` equal).",
        ]
    )
    print(md)
    if not args.no_write:
        update_results("bench_layout", md)


if __name__ == "__main__":
    main()
