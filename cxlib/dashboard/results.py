"""Published results as dashboards read them: a fixed study list, aggregates only.

A dashboard never opens a path it was given. It asks :func:`published_studies`
which studies have a published pointer under the runs directory, offers exactly
those, and :func:`load_published` reads the live runs of the one picked through
the pointer (``runs/<study>/published.json``). Every file it opens is one of the
contract's names (``notebooks/README.md``) inside a published run folder; a
pointer entry that points outside its study folder is ignored.

Missing artifacts are normal (a notebook not published yet): accessors return
``None`` and dashboards say "not published yet". A published table is checked
against its declaration (:mod:`cxlib.pipeline.schemas`) when it is read, so pages
use the declared columns only; a run written in an older artifact format is
flagged as stale.

Small cells (segment x wave with fewer than the study's ``min_cell_size``
respondents) are removed by :func:`suppress_small_cells` before anything is
drawn or printed.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pandas as pd

from cxlib import config
from cxlib.errors import CxError
from cxlib.pipeline.artifacts import ARTIFACT_FORMAT, MANIFEST_FILE
from cxlib.pipeline.publish import POINTER_FILE, read_pointer
from cxlib.pipeline.schemas import published_table

__all__ = [
    "NOTEBOOKS",
    "PublishedResults",
    "StudyNotPublishedError",
    "load_published",
    "published_studies",
    "requested_study",
    "suppress_small_cells",
]

#: The notebooks whose published artifacts dashboards read (``notebooks/README.md``).
NOTEBOOKS = {
    "overview": "00-study-overview",
    "quality": "01-data-quality",
    "sem": "02-experience-brand-loyalty",
    "expectations": "03-technical-vs-emotional",
    "drivers": "04-drivers-and-what-if",
    "journey": "05-touchpoints-and-journey",
}
#: The parameter set dashboards read first (every respondent); others are fallbacks.
PREFERRED_SET = config.EVERYONE
#: A published result older than this is flagged as stale on the page.
STALE_AFTER_DAYS = 45

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_ARTIFACT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class StudyNotPublishedError(CxError):
    """A study that is not among the published ones (or a name that is no study at all)."""


def published_studies(runs_dir: str | Path | None = None) -> list[str]:
    """The studies with a published result under the runs directory, sorted.

    Only plain folder names (letters, digits, ``-``, ``_``) holding a readable
    ``published.json`` count: this list is all a dashboard ever offers.
    """
    root = Path(runs_dir or config.RUNS_DIR)
    if not root.is_dir():
        return []
    names = []
    for child in sorted(root.iterdir()):
        if not (_STUDY_NAME.match(child.name) and child.is_dir() and not child.is_symlink()):
            continue
        try:
            pointer = read_pointer(child)
        except (OSError, ValueError):
            continue
        if pointer and pointer.get("runs"):
            names.append(child.name)
    return names


def requested_study(query_string: str | None, studies: list[str]) -> tuple[str | None, str]:
    """The study a page's query string asks for, only when it is one of ``studies``.

    Parameters
    ----------
    query_string : str or None
        The request's query string (``study=telecom``).
    studies : list of str
        The published studies (the fixed list).

    Returns
    -------
    tuple
        ``(study or None, note)``: the note says why a request was refused (it
        never echoes more than a short, escaped excerpt of what was asked).
    """
    if not query_string:
        return None, ""
    values = parse_qs(query_string, keep_blank_values=True).get("study")
    if not values:
        return None, ""
    asked = values[-1]
    if asked in studies:
        return asked, ""
    shown = asked if len(asked) <= 40 else asked[:37] + "..."
    return None, (
        f"The link asked for study {shown!r}, which is not a published study; "
        "pick one from the list."
    )


@dataclass
class PublishedResults:
    """The live results of one published study.

    Attributes
    ----------
    study : str
        The study's name.
    pointer : dict
        Its ``published.json``.
    folders : dict
        Slot (``notebook/parameter-set``) -> the run's artifacts folder.
    manifests : dict
        Slot -> the run's ``manifest.json`` (or ``{}`` when unreadable).
    """

    study: str
    pointer: dict[str, Any]
    folders: dict[str, Path]
    manifests: dict[str, dict[str, Any]]
    study_dir: Path
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ finding artifacts
    def slot(self, notebook: str) -> str | None:
        """The slot dashboards read for a notebook (``<notebook>/all`` first), or None."""
        name = NOTEBOOKS.get(notebook, notebook)
        candidates = sorted(s for s in self.folders if s.split("/", 1)[0] == name)
        preferred = f"{name}/{PREFERRED_SET}"
        if preferred in candidates:
            return preferred
        return candidates[0] if candidates else None

    def has(self, notebook: str) -> bool:
        """Whether a notebook has a published run."""
        return self.slot(notebook) is not None

    def table(self, notebook: str, name: str) -> pd.DataFrame | None:
        """A published tidy table (``tables/<name>.parquet``), or None when not published.

        Raises
        ------
        TableSchemaError
            When a declared table does not match its declaration (e.g. a run
            written in an older artifact format).
        """
        key = f"table:{notebook}:{name}"
        if key not in self._cache:
            path = self._file(notebook, f"tables/{self._name(name)}.parquet")
            frame = pd.read_parquet(path) if path else None
            declared = published_table(name)
            if frame is not None and declared is not None:
                frame = declared.validate(frame, notebook=NOTEBOOKS.get(notebook, notebook))
            self._cache[key] = frame
        frame = self._cache[key]
        return None if frame is None else frame.copy()

    def json(self, notebook: str, name: str) -> dict[str, Any] | None:
        """A published JSON document (``<name>.json``), or None."""
        key = f"json:{notebook}:{name}"
        if key not in self._cache:
            path = self._file(notebook, f"{self._name(name)}.json")
            try:
                self._cache[key] = json.loads(path.read_text(encoding="utf-8")) if path else None
            except (OSError, ValueError):
                self._cache[key] = None
        return self._cache[key]

    def driver_model(self):
        """The posterior draws for what-if (``driver_model.npz`` of 04, else 02), or None."""
        if "driver_model" not in self._cache:
            from cxlib.insights.drivers import DriverError, DriverModel

            model = None
            for notebook in ("drivers", "sem"):
                path = self._file(notebook, "driver_model.npz")
                if path:
                    try:
                        model = DriverModel.load(path)
                        break
                    except DriverError:
                        continue
            self._cache["driver_model"] = model
        return self._cache["driver_model"]

    def _name(self, name: str) -> str:
        if not _ARTIFACT_NAME.match(name):
            raise ValueError(f"not an artifact name: {name!r}")
        return name

    def _file(self, notebook: str, relative: str) -> Path | None:
        slot = self.slot(notebook)
        if slot is None:
            return None
        path = self.folders[slot] / relative
        return path if path.is_file() else None

    # ------------------------------------------------------------------ what the page says
    @property
    def title(self) -> str:
        """The study's title (from ``overview.json``), else its name."""
        overview = self.json("overview", "overview") or {}
        return str(overview.get("title") or self.study)

    @property
    def min_cell_size(self) -> int:
        """The study's minimum cell size (``overview.json``, else the default)."""
        overview = self.json("overview", "overview") or {}
        try:
            return int(overview.get("min_cell_size") or config.MIN_CELL_SIZE)
        except (TypeError, ValueError):
            return config.MIN_CELL_SIZE

    @property
    def published_at(self) -> str:
        """When the current publication went live (UTC, ISO 8601)."""
        return str(self.pointer.get("published_at") or "")

    def run_id(self, notebook: str) -> str | None:
        """The live run of a notebook."""
        slot = self.slot(notebook)
        return None if slot is None else self.pointer["runs"][slot].get("run_id")

    def status(self, *, now: float | None = None) -> dict[str, Any]:
        """The trust status of what the page shows.

        Returns
        -------
        dict
            ``published_at``, ``runs`` (notebook -> run id), ``diagnostics``
            (notebook -> "passed" / "failed" / "none"), ``failed`` (notebooks whose
            published diagnostics or gates failed), ``stale`` (reasons: newer runs that
            failed or were gated and so are not shown, an old publication).
        """
        runs, diagnostics, failed, stale = {}, {}, [], []
        for key, name in NOTEBOOKS.items():
            slot = self.slot(key)
            if slot is None:
                continue
            manifest = self.manifests.get(slot, {})
            runs[name] = self.pointer["runs"][slot].get("run_id", "")
            diag = manifest.get("diagnostics")
            gates = manifest.get("gate_failures") or []
            if gates or manifest.get("status") not in (None, "succeeded"):
                diagnostics[name] = "failed"
                failed.append(name)
            elif diag:
                ok = diagnostics_ok(diag, manifest.get("gates") or {})
                diagnostics[name] = "passed" if ok else "failed"
                if not ok:
                    failed.append(name)
            else:
                diagnostics[name] = "none"
        overview = self.json("overview", "overview") or {}
        for model, state in (overview.get("diagnostics") or {}).items():
            ok = state.get("ok") if isinstance(state, dict) else state
            if ok is False or ok in ("failed", "fail"):
                failed.append(str(model))
        stale += self._newer_failures()
        stale += self._old_formats()
        age = self._age_days(now)
        if age is not None and age > STALE_AFTER_DAYS:
            stale.append(f"published {age:.0f} days ago")
        return {
            "published_at": self.published_at,
            "publication_id": self.pointer.get("publication_id", ""),
            "runs": runs,
            "diagnostics": diagnostics,
            "failed": sorted(set(failed)),
            "stale": stale,
        }

    def _age_days(self, now: float | None) -> float | None:
        try:
            published = calendar.timegm(time.strptime(self.published_at, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return None
        return ((now or time.time()) - published) / 86400

    def _old_formats(self) -> list[str]:
        """Published runs whose tables were written in another artifact format."""
        reasons = []
        for slot, folder in sorted(self.folders.items()):
            try:
                files = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))["files"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found = {f.get("format") for f in files if f.get("kind") == "table"}
            if found - {ARTIFACT_FORMAT}:
                reasons.append(
                    f"{slot} was published in an older results format; run the pipeline "
                    "again to refresh it"
                )
        return reasons

    def _newer_failures(self) -> list[str]:
        """Slots whose latest run is newer than the published one and did not succeed."""
        reasons = []
        live = {e.get("run_id") for e in self.pointer.get("runs", {}).values()}
        latest: dict[str, tuple[str, str]] = {}
        for manifest_path in self.study_dir.glob("*/manifest.json"):
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            slot, run_id = manifest.get("slot"), manifest.get("run_id", "")
            if slot not in self.pointer.get("runs", {}) or manifest.get("fast"):
                continue
            if manifest.get("status") == "running":
                continue
            if slot not in latest or run_id > latest[slot][0]:
                latest[slot] = (run_id, manifest.get("status", ""))
        for slot, (run_id, status) in sorted(latest.items()):
            if run_id not in live and status in ("failed", "gated", "aborted"):
                reasons.append(
                    f"the latest run of {slot} {status}; the page shows the previous result"
                )
        return reasons


def diagnostics_ok(diagnostics: dict[str, Any], gates: dict[str, Any] | None = None) -> bool:
    """Whether a run's convergence figures pass its gates (default: ``cxlib.config``'s)."""
    gates = gates or {}
    if diagnostics.get("ok") is False:
        return False
    checks = (
        ("max_r_hat", gates.get("max_r_hat", config.MAX_R_HAT), lambda v, t: v <= t),
        ("min_ess_bulk", gates.get("min_ess_bulk", config.MIN_ESS_BULK), lambda v, t: v >= t),
        ("divergences", gates.get("max_divergences", config.MAX_DIVERGENCES), lambda v, t: v <= t),
    )
    for key, threshold, passes in checks:
        value = diagnostics.get(key)
        if value is None or threshold is None:
            continue
        try:
            if not passes(float(value), float(threshold)):
                return False
        except (TypeError, ValueError):
            return False
    return True


def load_published(study: str, runs_dir: str | Path | None = None) -> PublishedResults:
    """The live results of a published study.

    Parameters
    ----------
    study : str
        One of :func:`published_studies` (anything else is refused).
    runs_dir : str or Path, optional
        Default ``config.RUNS_DIR``.

    Raises
    ------
    StudyNotPublishedError
        When ``study`` is not a published study.
    """
    root = Path(runs_dir or config.RUNS_DIR)
    if study not in published_studies(root):
        raise StudyNotPublishedError(
            f"{study!r} is not a published study (published: "
            f"{', '.join(published_studies(root)) or 'none'})"
        )
    study_dir = (root / study).resolve()
    pointer = read_pointer(study_dir) or {}
    folders, manifests = {}, {}
    for slot, entry in (pointer.get("runs") or {}).items():
        run_id = str(entry.get("run_id", ""))
        relative = str(entry.get("output_dir") or f"{run_id}/artifacts")
        folder = (study_dir / relative).resolve()
        run_dir = (study_dir / run_id).resolve()
        if not (folder.is_relative_to(study_dir) and run_dir.is_relative_to(study_dir)):
            continue  # a pointer never sends a dashboard outside its study folder
        if not folder.is_dir():
            continue
        folders[slot] = folder
        try:
            manifests[slot] = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifests[slot] = {}
    return PublishedResults(study, pointer, folders, manifests, study_dir)


def suppress_small_cells(
    table: pd.DataFrame | None, min_cell_size: int, *, n_column: str = "n"
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Drop the rows of small cells; return ``(kept, suppressed cells)``.

    A row is suppressed when its ``small_cell`` flag is set or its respondent count
    is below ``min_cell_size``. The second frame lists the suppressed
    ``segment, wave`` pairs (no values) for the page's note.
    """
    if table is None:
        return None, pd.DataFrame(columns=["segment", "wave"])
    small = pd.Series(False, index=table.index)
    if "small_cell" in table.columns:
        small |= table["small_cell"].fillna(False).astype(bool)
    if n_column in table.columns:
        small |= pd.to_numeric(table[n_column], errors="coerce").fillna(0) < min_cell_size
    keys = [c for c in ("segment", "wave") if c in table.columns]
    cells = table.loc[small, keys].drop_duplicates().reset_index(drop=True)
    return table.loc[~small].reset_index(drop=True), cells


def pointer_path(study: str, runs_dir: str | Path | None = None) -> Path:
    """Where a study's published pointer lives (for messages)."""
    return Path(runs_dir or config.RUNS_DIR) / study / POINTER_FILE
