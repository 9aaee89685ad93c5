"""Defaults in one place: paths, intervals, seeds and diagnostic thresholds.

Everything that would otherwise be a magic number in several modules lives here,
so that a study, a notebook or a dashboard reads the same value.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DATA_DIR",
    "DEFAULT_SEED",
    "EVERYONE",
    "EXECUTION_TIMEOUT_S",
    "FLOOR_CEILING_SHARE",
    "HDI_PROB",
    "KERNEL_START_TIMEOUT_S",
    "MAX_DIVERGENCES",
    "MAX_R_HAT",
    "MIN_CELL_SIZE",
    "MIN_ESS_BULK",
    "REPO_ROOT",
    "RESULTS_DB",
    "RUNS_DIR",
    "SAMPLE_STUDY",
    "SAMPLE_TRUTH",
    "SCHEDULE_POLL_S",
    "SHOW_ROWS",
    "STRAIGHTLINE_MIN_ITEMS",
]

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
#: The repository root (where ``data/``, ``notebooks/`` and ``pipelines/`` live): the
#: checkout cxlib runs from, or the working directory when cxlib is an installed package
#: (never the installation's own folder, e.g. ``site-packages``).
REPO_ROOT = (
    _PACKAGE_PARENT if (_PACKAGE_PARENT / "pyproject.toml").is_file() else Path.cwd().resolve()
)
#: Where studies and their data live.
DATA_DIR = REPO_ROOT / "data"
#: The sample study shipped with the workbench (a telecom operator's CX tracker).
SAMPLE_STUDY = DATA_DIR / "telecom" / "study.yaml"
#: The committed true parameters the sample data are simulated from.
SAMPLE_TRUTH = DATA_DIR / "telecom" / "truth.yaml"

#: Default seed for simulations and samplers.
DEFAULT_SEED = 2026
#: Probability mass of reported highest-density intervals.
HDI_PROB = 0.94

#: The one label for "every respondent": the group of an ungrouped fit, the segment
#: of an unsegmented study and the row of a table that is not filtered.
EVERYONE = "all"

#: Convergence gates: a result is flagged when any parameter breaks one.
MAX_R_HAT = 1.01
MIN_ESS_BULK = 400
#: Divergent transitions a published fit may have (quality gate of the pipelines).
MAX_DIVERGENCES = 0

#: Cells (segment x wave) with fewer respondents are suppressed in dashboards.
MIN_CELL_SIZE = 30

#: Data quality: share of answers at the scale's floor or ceiling that flags an item
#: (15%, the usual threshold after Terwee et al., 2007).
FLOOR_CEILING_SHARE = 0.15
#: A respondent straight-lines when they give one answer to every item of a grid of
#: at least this many answered items.
STRAIGHTLINE_MIN_ITEMS = 5
#: How many offending rows an error message lists before saying "and N more".
SHOW_ROWS = 5

#: Where pipeline runs live: ``RUNS_DIR/<study>/<run-id>/`` (override with ``CX_RUNS_DIR``).
RUNS_DIR = Path(os.environ.get("CX_RUNS_DIR") or REPO_ROOT / "runs")
#: The results store (DuckDB): run catalog and published tables (override with ``CX_RESULTS_DB``).
RESULTS_DB = Path(os.environ.get("CX_RESULTS_DB") or RUNS_DIR / "results.duckdb")
#: Pipelines: seconds one notebook cell may run before the run fails (papermill has no
#: limit by default, and a notebook can hang, e.g. on widget output).
EXECUTION_TIMEOUT_S = 1800
#: Pipelines: seconds to wait for a notebook's kernel to start.
KERNEL_START_TIMEOUT_S = 60
#: ``cx schedule``: seconds between checks of the cron schedule and the data sources.
SCHEDULE_POLL_S = 30
