"""The published pointer: which runs of a study are live.

``runs/<study>/published.json`` maps each slot (``notebook/parameter-set``) to
the run that dashboards read::

    {"study": "telecom", "publication_id": "...", "published_at": "...",
     "runs": {"01-data-quality/consumer": {"run_id": "...", "key": "...", ...}}}

It is switched atomically: the new pointer is written to a temporary file and
moved over the old one with :func:`os.replace`, so a reader — or a runner
killed at any moment — sees the old publication or the new one, never a mix.
Only runs that finished and passed their quality gates are ever put in it; a
slot whose new run failed keeps its previous run. The pointer file is the
authority; the results store's ``published_runs`` table mirrors it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from cxlib import config
from cxlib.pipeline.provenance import write_json_atomic

__all__ = ["POINTER_FILE", "published_runs", "read_pointer", "switch_pointer"]

POINTER_FILE = "published.json"


def read_pointer(study_dir: str | Path) -> dict[str, Any] | None:
    """The study's current publication, or None when nothing was published yet."""
    path = Path(study_dir) / POINTER_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def switch_pointer(
    study_dir: str | Path, study: str, runs: dict[str, dict[str, Any]], *, pipeline: str = ""
) -> dict[str, Any]:
    """Publish ``runs`` (slot -> run entry) over the current publication, atomically.

    Slots not in ``runs`` keep their current run. Call it only with runs that
    finished and passed their gates, while holding the study's lock.

    Returns
    -------
    dict
        The new pointer.
    """
    study_dir = Path(study_dir)
    current = read_pointer(study_dir) or {"runs": {}}
    merged = dict(current.get("runs", {}))
    merged.update(runs)
    pointer = {
        "study": study,
        "publication_id": f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}",
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pipeline": pipeline,
        "previous": current.get("publication_id"),
        "runs": dict(sorted(merged.items())),
    }
    write_json_atomic(study_dir / POINTER_FILE, pointer)
    return pointer


def published_runs(study: str, runs_dir: str | Path | None = None) -> dict[str, Path]:
    """The published run folders of a study, by slot (what dashboards read).

    Parameters
    ----------
    study : str
        The study's name.
    runs_dir : str or Path, optional
        Default: ``config.RUNS_DIR``.

    Returns
    -------
    dict of str to Path
        ``{"01-data-quality/all": Path("runs/telecom/<run-id>"), ...}``; empty
        when nothing is published.
    """
    study_dir = Path(runs_dir or config.RUNS_DIR) / study
    pointer = read_pointer(study_dir) or {}
    return {slot: study_dir / entry["run_id"] for slot, entry in pointer.get("runs", {}).items()}
