"""Benchmark the pipelines: the demo pipeline end to end, and papermill's per-notebook overhead.

    .venv/bin/python benchmarks/bench_pipeline.py            # writes benchmarks/RESULTS.md

Everything goes through cxlib.pipeline.run_pipeline (the one runner) into
benchmarks/.work/ (git-ignored), never into runs/.

- demo pipeline: ``cx run pipelines/demo.yaml --force`` in a fresh process (Python
  start, planning, every notebook run, HTML export, gates, publish, results
  store), with --jobs 1 and --jobs 2; then the same command again, when every
  run is up to date (the incremental-refresh path).
- per-notebook overhead: notebooks that do nothing (kernel start + shutdown,
  parameter injection, writing the executed notebook) and that only import what
  a research notebook imports; the median of several runs, as the runner's
  manifest times them (``execution_s``), plus the HTML export.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import machine, markdown_table, update_results  # noqa: E402

WORK = ROOT / "benchmarks" / ".work" / "pipeline"
BIN = Path(sys.executable).parent
TARGET_DEMO_S = 90
REPEATS = 3

PARAMETERS = 'output_dir: str = ""  # where artifacts go\n'
IMPORTS = """\
import pandas as pd

from cxlib.pipeline.artifacts import Artifacts
from cxlib.pipeline.inputs import load_inputs
from cxlib.pipeline.tables import data_quality_tables
"""


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMETERS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def cx_run(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(
        [str(BIN / "cx"), "run", "pipelines/demo.yaml", *args,
         "--runs-dir", str(WORK / "runs"), "--db", str(WORK / "runs" / "results.duckdb")],
        cwd=ROOT, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"cx run failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return elapsed, out.stdout


def overhead_rows() -> list[dict]:
    from cxlib import config
    from cxlib.pipeline.runner import run_pipeline
    from cxlib.pipeline.spec import pipeline_from_dict

    nbs = WORK / "notebooks"
    nbs.mkdir(parents=True, exist_ok=True)
    cases = {
        "empty notebook (kernel start, inject, save)": notebook(nbs / "empty.ipynb", "pass"),
        "+ a research notebook's imports": notebook(nbs / "imports.ipynb", IMPORTS),
    }
    rows = []
    for what, path in cases.items():
        spec = pipeline_from_dict(
            {
                "name": "overhead",
                "studies": [str(config.SAMPLE_STUDY)],
                "notebooks": [str(path)],
                "runs_dir": str(WORK / "runs-overhead"),
                "results_db": str(WORK / "runs-overhead" / "results.duckdb"),
            },
            path=ROOT / "pipelines" / "overhead.yaml",
        )
        run_pipeline(spec, force=True, progress=False)  # warm the disk cache and the exporter
        execution, export, total = [], [], []
        for _ in range(REPEATS):
            record = run_pipeline(spec, force=True, progress=False).records[0]
            timings = record.manifest["timings"]
            execution.append(timings["execution_s"])
            export.append(timings.get("export_s", 0.0))
            total.append(timings["duration_s"])
        rows.append(
            {
                "notebook": what,
                "papermill s": f"{statistics.median(execution):.2f}",
                "HTML export s": f"{statistics.median(export):.2f}",
                "run total s": f"{statistics.median(total):.2f}",
            }
        )
    return rows


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    subprocess.run([str(BIN / "cx"), "sample"], cwd=ROOT, check=True, capture_output=True)

    demo = []
    for jobs in ("1", "2"):
        elapsed, out = cx_run("--force", "--jobs", jobs)
        runs = out.strip().splitlines()[-1]
        demo.append({"command": f"cx run pipelines/demo.yaml --force --jobs {jobs}",
                     "runs": runs.split(" in ")[0], "wall s": f"{elapsed:.1f}",
                     "target s": f"< {TARGET_DEMO_S}", "met": "yes" if elapsed < TARGET_DEMO_S else "NO"})
    for _ in range(3):  # a cxlib edit in between (code version) makes runs out of date again
        elapsed, out = cx_run()
        if "skipped" in out.strip().splitlines()[-1] and "succeeded" not in out.strip().splitlines()[-1]:
            break
    demo.append({"command": "cx run pipelines/demo.yaml (all up to date)",
                 "runs": out.strip().splitlines()[-1].split(" in ")[0], "wall s": f"{elapsed:.1f}",
                 "target s": "", "met": ""})

    overhead = overhead_rows()
    markdown = "\n\n".join(
        [
            "## Pipelines (`bench_pipeline.py`)",
            machine() + f", load average {os.getloadavg()[0]:.1f} at the start",
            "Demo pipeline on the sample study (8,000 respondents), end to end in a fresh process: "
            "planning and checks, every notebook run through papermill, HTML export, gates, "
            "atomic publish, results store. Today the demo pipeline is `01-data-quality` for all "
            "respondents plus one run per segment (4 runs); the model notebooks join it when "
            "the SEM engine lands.",
            markdown_table(demo, ["command", "runs", "wall s", "target s", "met"]),
            f"Per-notebook overhead of a run (median of {REPEATS}, as the runner times it): "
            "`papermill s` is kernel start, parameter injection, execution and saving the executed "
            "notebook; the HTML export comes on top.",
            markdown_table(overhead, ["notebook", "papermill s", "HTML export s", "run total s"]),
        ]
    )
    print(markdown)
    update_results("bench_pipeline", markdown)


if __name__ == "__main__":
    main()
