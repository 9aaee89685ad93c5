"""Defaults in one place: paths, intervals, seeds and diagnostic thresholds.

Everything that would otherwise be a magic number in several modules lives here,
so that a study, a notebook or a dashboard reads the same value.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DATA_DIR",
    "DEFAULT_SEED",
    "FLOOR_CEILING_SHARE",
    "HDI_PROB",
    "MAX_R_HAT",
    "MIN_CELL_SIZE",
    "MIN_ESS_BULK",
    "REPO_ROOT",
    "SAMPLE_STUDY",
    "SAMPLE_TRUTH",
    "SHOW_ROWS",
    "STRAIGHTLINE_MIN_ITEMS",
]

#: The repository root (where ``data/``, ``notebooks/`` and ``pipelines/`` live).
REPO_ROOT = Path(__file__).resolve().parent.parent
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

#: Convergence gates: a result is flagged when any parameter breaks one.
MAX_R_HAT = 1.01
MIN_ESS_BULK = 400

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
