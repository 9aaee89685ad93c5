"""The published pointer: which runs of a study are live.

``runs/<study>/published.json`` maps each slot (``notebook/parameter-set``) to
the run that dashboards read, and says which slots do not apply to the study::

    {"study": {"name": "telecom", "labels": {...}, "kpis": {...}, "roles": {...},
               "segments": [...], "wave": "wave", "unmet": {...}},
     "publication_id": "...", "published_at": "...", "pipeline": "demo", "previous": "...",
     "runs": {"01-data-quality/consumer": {"run_id": "...", "key": "...", ...}},
     "not_applicable": {"03-technical-vs-emotional/all": {
         "status": "not_applicable", "reason": "the study declares no attributes ...",
         "run_id": "...", "notebook": "...", "label": "all", "key": "...",
         "needs": [], "fast": false, "finished_at": "..."}}}

``study`` is :meth:`cxlib.study.Study.summary` of the spec the runs read (a
pointer written before it existed holds the study's name there). A slot is in
``runs`` or in ``not_applicable``, never both: publishing a run in a slot drops
the slot's not-applicable entry, and a real run found not applicable retires the
slot's published run.

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
from collections.abc import Iterable
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
    study_dir: str | Path,
    study: str,
    runs: dict[str, dict[str, Any]],
    *,
    pipeline: str = "",
    not_applicable: dict[str, dict[str, Any]] | None = None,
    retire: Iterable[str] = (),
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Publish ``runs`` (slot -> run entry) over the current publication, atomically.

    Slots not in ``runs`` keep their current run. Call it only with runs that
    finished and passed their gates, while holding the study's lock.

    Parameters
    ----------
    study_dir : str or Path
        The study's folder in the runs directory.
    study : str
        The study's name.
    runs : dict
        Slot -> run entry to publish.
    pipeline : str
        The pipeline publishing.
    not_applicable : dict, optional
        Slot -> not-applicable entry (``{"status": "not_applicable", "reason": ...}``),
        merged over the current ones.
    retire : iterable of str
        Slots whose published run is withdrawn (found not applicable since).
    summary : dict, optional
        The study's :meth:`~cxlib.study.Study.summary` (default: the current
        pointer's, else ``{"name": study}``).

    Returns
    -------
    dict
        The new pointer.
    """
    study_dir = Path(study_dir)
    current = read_pointer(study_dir) or {"runs": {}}
    merged = dict(current.get("runs", {}))
    merged.update(runs)
    for slot in retire:
        merged.pop(slot, None)
    skipped = dict(current.get("not_applicable") or {})
    skipped.update(not_applicable or {})
    for slot in runs:
        skipped.pop(slot, None)
    if summary is None:
        summary = current.get("study")
        summary = summary if isinstance(summary, dict) else {"name": study}
    pointer = {
        "study": summary,
        "publication_id": f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}",
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pipeline": pipeline,
        "previous": current.get("publication_id"),
        "runs": dict(sorted(merged.items())),
        "not_applicable": dict(sorted(skipped.items())),
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
