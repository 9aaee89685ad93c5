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

Each switch first copies the pointer it replaces to ``published.previous.json``. A
pointer that cannot be read (truncated, not JSON, JSON of another shape) is then
no dead end: :func:`read_pointer` returns the previous publication instead,
flagged with a ``"fallback"`` entry that says which file is damaged, why, and what
to do (dashboards show it); with no previous copy, an empty publication flagged the
same way. The runner, holding the study's lock, repairs it
(:func:`restore_pointer`): the damaged file is moved aside as
``published.json.corrupt-<time>`` and the previous publication put back, and the
refresh republishes the up-to-date runs over it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cxlib import config
from cxlib.pipeline.provenance import write_json_atomic

__all__ = [
    "FALLBACK",
    "POINTER_FILE",
    "PREVIOUS_POINTER_FILE",
    "pointer_problem",
    "published_runs",
    "read_pointer",
    "restore_pointer",
    "switch_pointer",
]

POINTER_FILE = "published.json"
#: The publication a switch replaced (what readers fall back to when the pointer is damaged).
PREVIOUS_POINTER_FILE = "published.previous.json"
#: The key of a pointer :func:`read_pointer` returned in place of a damaged one.
FALLBACK = "fallback"


def pointer_problem(pointer: Any) -> str | None:
    """What makes a parsed ``published.json`` unusable, or None when it is a publication.

    A publication is an object whose ``runs`` (when present) maps slots to entries
    with a ``run_id`` string, and whose ``not_applicable`` (when present) is an object.
    """
    if not isinstance(pointer, dict):
        return f"JSON of the wrong shape: a {type(pointer).__name__}, not an object"
    runs = pointer.get("runs", {})
    if not isinstance(runs, dict):
        return f'"runs" is a {type(runs).__name__}, not an object of slot -> run'
    for slot, entry in runs.items():
        if not isinstance(entry, dict):
            return f'"runs" entry {slot!r} is a {type(entry).__name__}, not an object'
        if entry.get("status") != "not_applicable" and not isinstance(entry.get("run_id"), str):
            return f'"runs" entry {slot!r} has no "run_id" string'
    if not isinstance(pointer.get("not_applicable", {}), dict):
        return '"not_applicable" is not an object'
    return None


def _parsed(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(pointer, None)`` when ``path`` holds a publication, else ``(None, problem)``.

    Raises FileNotFoundError when there is no file.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not text ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except IsADirectoryError:
        return None, "a folder, not a file"
    problem = pointer_problem(data)
    return (None, problem) if problem else (data, None)


def read_pointer(study_dir: str | Path) -> dict[str, Any] | None:
    """The study's current publication, or None when nothing was published yet.

    A ``published.json`` that cannot be read as a publication (truncated, not JSON,
    JSON of another shape) gives the previous publication instead
    (``published.previous.json``) — or, without one, an empty publication — with a
    ``"fallback"`` entry: ``{"file", "problem", "previous" (its publication id or
    None), "message"}``, where the message names the file and the fix. Never
    raises for a damaged file (OSError only when the folder cannot be read).
    """
    study_dir = Path(study_dir)
    path = study_dir / POINTER_FILE
    try:
        pointer, problem = _parsed(path)
    except FileNotFoundError:
        return None
    if pointer is not None:
        return pointer
    try:
        previous, _ = _parsed(study_dir / PREVIOUS_POINTER_FILE)
    except (FileNotFoundError, PermissionError):
        previous = None
    if previous is not None:
        shown = (
            f"the previous publication {previous.get('publication_id') or '?'} of "
            f"{previous.get('published_at') or '?'} ({PREVIOUS_POINTER_FILE})"
        )
    else:
        previous = {"study": {"name": study_dir.name}, "runs": {}, "not_applicable": {}}
        shown = f"nothing (there is no usable {PREVIOUS_POINTER_FILE} to fall back to)"
    message = (
        f"{path} is damaged ({problem}); showing {shown}. Fix: run the pipeline again "
        "(`cx run PIPELINE`): it moves the damaged file aside and republishes the "
        "up-to-date runs without re-running them"
    )
    return {
        **previous,
        FALLBACK: {
            "file": str(path),
            "problem": problem,
            "previous": previous.get("publication_id"),
            "message": message,
        },
    }


def restore_pointer(study_dir: str | Path) -> str | None:
    """Repair a damaged ``published.json``; return what was done (None when it was fine).

    The damaged file is moved aside as ``published.json.corrupt-<time>`` (kept for
    inspection) and the previous publication (``published.previous.json``), when
    usable, put back in its place; without one the study has no pointer until the
    refresh publishes its up-to-date runs. Call it only while holding the study's lock.
    """
    study_dir = Path(study_dir)
    pointer = read_pointer(study_dir)
    if pointer is None or FALLBACK not in pointer:
        return None
    damage = pointer.pop(FALLBACK)
    path = study_dir / POINTER_FILE
    aside = path.with_name(
        f"{POINTER_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    what = f"{path} was damaged ({damage['problem']}): moved aside to {aside.name}"
    if damage["previous"] is None:
        os.replace(path, aside)
        return f"{what}; no previous publication to put back"
    aside.write_bytes(path.read_bytes())  # kept; readers never see the study unpublished
    write_json_atomic(path, pointer)
    return f"{what}; put back the previous publication {damage['previous']}"


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
    finished and passed their gates, while holding the study's lock. The pointer
    replaced is first copied to ``published.previous.json``; a damaged one is moved
    aside (:func:`restore_pointer`) and the new one built on its fallback.

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
    if FALLBACK in current:  # the pointer is damaged: keep it aside, build on its fallback
        restore_pointer(study_dir)
        current = read_pointer(study_dir) or {"runs": {}}
    elif current.get("publication_id"):  # what readers fall back to if the new one is damaged
        write_json_atomic(study_dir / PREVIOUS_POINTER_FILE, current)
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
