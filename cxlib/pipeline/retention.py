"""Which frozen data versions a study keeps, and pruning the rest after a publish.

Every refresh reads a frozen copy of its study's data
(``<runs>/<study>/.data/<sha256>/<file name>``, :func:`~cxlib.pipeline.plan.freeze_study_data`),
one per content. Without pruning the folder grows by a copy of the export with every
new data version. After a successful publish (:func:`prune_data_versions`, called by
the runner while it holds the study's lock) a copy is kept when

- an entry of the live publication (``published.json``) read it,
- an entry of the previous publication (``published.previous.json``, what pages
  fall back to when the pointer is damaged) read it,
- a run of the study is still ``running`` on it (its manifest says so),
- a runner holds a claim on it (:func:`claim_data_versions`: a runner that froze it
  and may still be waiting for the study's lock), or
- it is among the ``keep`` newest versions (:data:`DATA_VERSIONS_KEPT`, default 2;
  "newest" by when a refresh last froze it: reusing a version touches its copy),

and removed otherwise. Nothing is pruned when a refresh publishes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from cxlib.pipeline.artifacts import MANIFEST_FILE
from cxlib.pipeline.plan import DATA_SNAPSHOTS, RunTask
from cxlib.pipeline.publish import POINTER_FILE, PREVIOUS_POINTER_FILE

__all__ = [
    "CLAIM_PREFIX",
    "DATA_VERSIONS_KEPT",
    "claim_data_versions",
    "data_versions_in_use",
    "prune_data_versions",
    "release_data_claims",
]

logger = logging.getLogger(__name__)

#: Frozen data versions kept beyond those in use (the newest, by when a refresh froze them).
DATA_VERSIONS_KEPT = 2
#: A runner's claim on a frozen version: ``<version folder>/.claim-<host>-<pid>-<random>``.
CLAIM_PREFIX = ".claim-"
#: A claim of another host (whose process cannot be checked) counts for this long (seconds).
FOREIGN_CLAIM_MAX_AGE_S = 24 * 3600.0
_VERSION = re.compile(r"[0-9a-f]{64}")


def claim_data_versions(tasks: Iterable[RunTask]) -> list[Path]:
    """Claim the frozen data versions ``tasks`` read, so no prune removes them meanwhile.

    A runner claims its versions right after planning (before it waits for the
    study's lock) and releases them when it ends (:func:`release_data_claims`). A
    claim whose process is gone (a killed runner) no longer counts.

    Returns
    -------
    list of Path
        The claim files written (one per version folder).
    """
    host = socket.gethostname().replace("-", "_")
    claims = []
    for folder in sorted({Path(t.data_path).parent for t in tasks if t.data_path}):
        if folder.parent.name != DATA_SNAPSHOTS or not folder.is_dir():
            continue  # not a frozen copy (a plan without freeze)
        claim = folder / f"{CLAIM_PREFIX}{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            claim.write_text("")
        except OSError as exc:
            logger.warning("could not claim the data version %s: %s", folder, exc)
            continue
        claims.append(claim)
    return claims


def release_data_claims(claims: Iterable[Path]) -> None:
    """Remove claims written by :func:`claim_data_versions`; never fails."""
    for claim in claims:
        try:
            claim.unlink(missing_ok=True)
        except OSError:
            pass


def _claim_is_live(claim: Path) -> bool:
    """Whether a claim's runner may still be running."""
    host, _, rest = claim.name.removeprefix(CLAIM_PREFIX).partition("-")
    pid = rest.partition("-")[0]
    if host != socket.gethostname().replace("-", "_"):
        try:
            return time.time() - claim.stat().st_mtime < FOREIGN_CLAIM_MAX_AGE_S
        except OSError:
            return False
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _pointer_hashes(path: Path) -> set[str]:
    """The data hashes the entries of a pointer file read (empty when unreadable)."""
    try:
        pointer = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    runs = pointer.get("runs") if isinstance(pointer, dict) else None
    if not isinstance(runs, dict):
        return set()
    return {
        entry["data_hash"]
        for entry in runs.values()
        if isinstance(entry, dict) and isinstance(entry.get("data_hash"), str)
    }


def data_versions_in_use(study_dir: str | Path) -> set[str]:
    """The frozen data versions (SHA-256) a study needs now, whatever their age.

    Those of the live and the previous publication's entries, of runs still
    ``running``, and of versions a live runner claims (:func:`claim_data_versions`).
    """
    study_dir = Path(study_dir)
    used = _pointer_hashes(study_dir / POINTER_FILE)
    used |= _pointer_hashes(study_dir / PREVIOUS_POINTER_FILE)
    for path in study_dir.glob(f"*/{MANIFEST_FILE}"):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(manifest, dict) and manifest.get("status") == "running":
            digest = (manifest.get("data") or {}).get("hash")
            if isinstance(digest, str):
                used.add(digest)
    store = study_dir / DATA_SNAPSHOTS
    for claim in store.glob(f"*/{CLAIM_PREFIX}*"):
        if _claim_is_live(claim):
            used.add(claim.parent.name)
    return used


def _frozen_at(folder: Path) -> float:
    """When a refresh last froze a version: its copy's time (claims left out), else 0."""
    times = []
    for path in folder.iterdir():
        if not path.name.startswith(CLAIM_PREFIX):
            try:
                times.append(path.stat().st_mtime)
            except OSError:
                continue
    return max(times, default=0.0)


def prune_data_versions(study_dir: str | Path, *, keep: int = DATA_VERSIONS_KEPT) -> list[str]:
    """Remove the frozen data versions of a study that nothing needs; return their hashes.

    Keeps every version in use (:func:`data_versions_in_use`) and the ``keep``
    newest versions (by the time a refresh last froze them). Call it only after a
    successful publish, while holding the study's lock.

    Parameters
    ----------
    study_dir : str or Path
        The study's folder in the runs directory.
    keep : int
        How many of the newest versions to keep, in use or not (>= 0).

    Returns
    -------
    list of str
        The SHA-256 of each version removed, oldest first.
    """
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    study_dir = Path(study_dir)
    store = study_dir / DATA_SNAPSHOTS
    if not store.is_dir():
        return []
    versions = [
        (_frozen_at(folder), folder.name, folder)
        for folder in store.iterdir()
        if folder.is_dir() and _VERSION.fullmatch(folder.name)
    ]
    versions.sort()  # oldest first
    newest = {name for _, name, _ in versions[max(len(versions) - keep, 0) :]} if keep else set()
    used = data_versions_in_use(study_dir)
    removed = []
    for _, name, folder in versions:
        if name in used or name in newest:
            continue
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            logger.warning("could not remove the old data version %s: %s", folder, exc)
            continue
        removed.append(name)
    if removed:
        logger.info(
            "removed %d old data version(s) of %s: %s",
            len(removed),
            study_dir.name,
            ", ".join(h[:12] for h in removed),
        )
    return removed
