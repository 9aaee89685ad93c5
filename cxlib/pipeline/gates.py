"""Quality gates: convergence checks a run must pass before it is published.

A model notebook writes ``diagnostics.json`` into its output directory (see
:meth:`cxlib.pipeline.artifacts.Artifacts.diagnostics`)::

    {"max_r_hat": 1.004, "min_ess_bulk": 812.0, "divergences": 0, ...}

The runner reads it after the notebook finished and checks it against the
pipeline's gates. A notebook that fits no model writes no diagnostics and has no
gate to fail. A diagnostics file that lacks a gated figure fails that gate: a
gate is never passed by omission.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["DIAGNOSTICS_FILE", "evaluate_gates", "read_diagnostics"]

#: The file a model notebook writes into its output directory.
DIAGNOSTICS_FILE = "diagnostics.json"

#: gate -> (diagnostic it reads, comparison, wording)
_GATES = {
    "max_r_hat": ("max_r_hat", "le", "R-hat"),
    "min_ess_bulk": ("min_ess_bulk", "ge", "bulk ESS"),
    "max_divergences": ("divergences", "le", "divergent transitions"),
}


def read_diagnostics(output_dir: str | Path) -> dict[str, Any] | None:
    """The diagnostics a notebook wrote, or None when it wrote none.

    Raises
    ------
    ValueError
        When the file exists but is not a JSON object.
    """
    path = Path(output_dir) / DIAGNOSTICS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of diagnostics")
    return data


def evaluate_gates(diagnostics: dict[str, Any] | None, gates: dict[str, Any]) -> list[str]:
    """Check diagnostics against gates; return what failed (empty: all passed).

    Parameters
    ----------
    diagnostics : dict or None
        What the notebook wrote; None when it fits no model (nothing to check).
    gates : dict
        ``max_r_hat``, ``min_ess_bulk``, ``max_divergences``; None switches one off.

    Returns
    -------
    list of str
        One sentence per failed gate, e.g. ``"R-hat 1.08 > 1.01 (max_r_hat)"``.
    """
    if diagnostics is None:
        return []
    failures = []
    for gate, (key, how, words) in _GATES.items():
        limit = gates.get(gate)
        if limit is None:
            continue
        if key not in diagnostics or diagnostics[key] is None:
            failures.append(f"{words}: diagnostics.json has no {key!r} ({gate} cannot be checked)")
            continue
        try:
            value = float(diagnostics[key])
        except (TypeError, ValueError):
            failures.append(f"{words}: {key}={diagnostics[key]!r} is not a number")
            continue
        if math.isnan(value):
            failures.append(f"{words} is NaN ({gate} {limit})")
        elif how == "le" and value > limit:
            failures.append(f"{words} {value:g} > {limit:g} ({gate})")
        elif how == "ge" and value < limit:
            failures.append(f"{words} {value:g} < {limit:g} ({gate})")
    return failures
