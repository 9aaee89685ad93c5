"""Published results as dashboards read them: a fixed study list, aggregates only.

A dashboard never opens a path it was given. It asks :func:`published_studies`
which studies have a published pointer under the runs directory, offers exactly
those, and :func:`load_published` reads the live runs of the one picked through
the pointer (``runs/<study>/published.json``). Every file it opens is one of the
contract's names (``notebooks/README.md``) inside a published run folder; a
pointer entry that points outside its study folder is ignored.

Missing artifacts are normal (a notebook not published yet): accessors return
``None`` and dashboards say "not published yet". A notebook the pipeline recorded as
not applicable to the study (a pointer slot ``{"status": "not_applicable", "reason":
...}``) is said so, with its reason (:meth:`PublishedResults.not_applicable`). The
pointer's ``"study"`` entry, when it is the study's summary
(:meth:`cxlib.study.Study.summary`: labels, KPIs, roles, what the study lacks), gives
pages the spec's labels and KPI names; a pointer written before it (``"study"`` is
only the name) gives construct codes and the published tables' KPIs, as before. A published table is checked
against its declaration (:mod:`cxlib.pipeline.schemas`) when it is read, so pages
use the declared columns only; a run written in an older artifact format is
flagged as stale.

Small cells (segment x wave with fewer than the study's ``min_cell_size``
respondents) are removed by :func:`suppress_small_cells` before anything is
drawn or printed, with the next smallest cell of their wave (complementary
suppression), so that no withheld cell can be worked out from the everyone row
(``docs/disclosure.md``).

Damaged files never take a page down. A ``published.json`` that cannot be read
gives its previous publication, flagged (:attr:`PublishedResults.fallback`, with
:attr:`PublishedResults.fallback_reason`; the header's warnings say it). Every
published file a page opens is checked against the size and SHA-256 recorded when
its notebook wrote it (the run's ``manifest.json``): a file that fails, or that
cannot be read, is not shown and is reported as damaged
(:meth:`PublishedResults.damage`, :meth:`PublishedResults.damaged_files`, the
header's warnings), with the fix — ``cx run`` re-runs its slot.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pandas as pd

from cxlib import config
from cxlib.errors import CxError
from cxlib.pipeline.artifacts import ARTIFACT_FORMAT, MANIFEST_FILE, expected_files, file_damage
from cxlib.pipeline.publish import FALLBACK, POINTER_FILE, read_pointer
from cxlib.pipeline.schemas import published_table
from cxlib.study import ROLES

__all__ = [
    "MODEL_NOTEBOOKS",
    "NOTEBOOKS",
    "NOT_APPLICABLE",
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
    "digital": "06-digital-experience",
}
#: The notebooks that publish a fitted model (whose convergence and propriety pages flag).
MODEL_NOTEBOOKS = ("sem", "expectations", "drivers", "journey", "digital")
#: A pointer slot's status for a notebook the study's design does not allow.
NOT_APPLICABLE = "not_applicable"
#: The parameter set dashboards read first (every respondent); others are fallbacks.
PREFERRED_SET = config.EVERYONE
#: A published result older than this is flagged as stale on the page.
STALE_AFTER_DAYS = 45

#: A published run whose artifacts the runner found damaged (``cxlib.pipeline.store``).
DAMAGED = "damaged"

logger = logging.getLogger(__name__)

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_ARTIFACT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class StudyNotPublishedError(CxError):
    """A study that is not among the published ones (or a name that is no study at all)."""


def published_studies(runs_dir: str | Path | None = None) -> list[str]:
    """The studies with a published result under the runs directory, sorted.

    Only plain folder names (letters, digits, ``-``, ``_``) holding a
    ``published.json`` count: this list is all a dashboard ever offers. A study
    whose pointer is damaged stays in the list (its pages show the previous
    publication, flagged, or say what is damaged); one study's folder that cannot
    be read never hides the others.
    """
    root = Path(runs_dir or config.RUNS_DIR)
    if not root.is_dir():
        return []
    names = []
    for child in sorted(root.iterdir()):
        try:
            if not (_STUDY_NAME.match(child.name) and child.is_dir() and not child.is_symlink()):
                continue
            pointer = read_pointer(child)
        except Exception as exc:  # noqa: BLE001 - one study's folder never hides the others
            logger.warning("cannot read the published pointer of %s: %s", child, exc)
            continue
        if pointer and (pointer.get("runs") or FALLBACK in pointer):
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
    study_dir : Path
        The study's folder in the runs directory.
    """

    study: str
    pointer: dict[str, Any]
    folders: dict[str, Path]
    manifests: dict[str, dict[str, Any]]
    study_dir: Path
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _damage: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ damaged files
    @property
    def fallback(self) -> bool:
        """Whether ``published.json`` is damaged and this is its fallback (the previous one)."""
        return FALLBACK in self.pointer

    @property
    def fallback_reason(self) -> str | None:
        """Which pointer file is damaged, what is shown instead, and the fix; None when intact."""
        found = self.pointer.get(FALLBACK)
        return str(found.get("message") or "") if isinstance(found, dict) else None

    def artifact(self, notebook: str, relative: str) -> Path | None:
        """A published file of a notebook's run, checked; None when absent or damaged.

        Parameters
        ----------
        notebook : str
            A key of :data:`NOTEBOOKS` or a notebook name.
        relative : str
            The file's path in the run's artifacts folder (``tables/kpis.parquet``).

        Returns
        -------
        Path or None
            None when the run has no such file, or when it fails its size or
            SHA-256 check (then :meth:`damage` says why).
        """
        slot = self.slot(notebook)
        if slot is None:
            return None
        folder = self.folders[slot]
        path = (folder / relative).resolve()
        if not path.is_relative_to(folder.resolve()) or not path.is_file():
            return None
        known = self._expected(slot).get(relative)
        damage = file_damage(path, known) if known else None
        if damage:
            self._report(slot, relative, damage)
            return None
        return path

    def damage(self, notebook: str, name: str | None = None) -> str | None:
        """Why a notebook's published file (or any of them) is not shown, or None.

        Parameters
        ----------
        notebook : str
            A key of :data:`NOTEBOOKS` or a notebook name.
        name : str, optional
            The file (``tables/kpis.parquet``) or a table's name (``kpis``); None:
            the first damaged file of the notebook's run found so far.
        """
        slot = self.slot(notebook)
        for (where, relative), why in sorted(self._damage.items()):
            if where != slot:
                continue
            if name is None or relative in (name, f"tables/{name}.parquet"):
                return why
        return None

    def damaged_files(self) -> list[str]:
        """Every published file that fails its check, with why and the fix (checks them all).

        Returns
        -------
        list of str
            ``"<file> of <slot> is damaged (<why>) ..."`` per file.
        """
        for slot, folder in sorted(self.folders.items()):
            for relative, known in sorted(self._expected(slot).items()):
                damage = file_damage(folder / relative, known)
                if damage:
                    self._report(slot, relative, damage)
        return [why for _, why in sorted(self._damage.items())]

    def _expected(self, slot: str) -> dict[str, dict[str, Any]]:
        """What the run of a slot recorded about its files (``{path: {bytes, sha256}}``)."""
        key = f"expected:{slot}"
        if key not in self._cache:
            listed = self.manifests.get(slot, {}).get("artifacts")
            expected, problems = expected_files(self.folders[slot], listed)
            for problem in problems:
                self._report(slot, MANIFEST_FILE, problem.split(": ", 1)[-1])
            self._cache[key] = expected
        return self._cache[key]

    def _report(self, slot: str, relative: str, damage: str) -> None:
        if (slot, relative) not in self._damage:
            logger.warning("%s/%s is damaged: %s", self.folders.get(slot), relative, damage)
        self._damage[(slot, relative)] = (
            f"{relative} of {slot} is damaged ({damage}) and is not shown; run the pipeline "
            "again (`cx run PIPELINE`): it re-runs this slot"
        )

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
            relative = f"tables/{self._name(name)}.parquet"
            path = self._file(notebook, relative)
            frame = None
            if path is not None:
                try:
                    frame = pd.read_parquet(path)
                except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not raised
                    self._report(self.slot(notebook), relative, f"unreadable: {type(exc).__name__}")
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
            relative = f"{self._name(name)}.json"
            path = self._file(notebook, relative)
            try:
                self._cache[key] = json.loads(path.read_text(encoding="utf-8")) if path else None
            except (OSError, ValueError) as exc:
                self._report(self.slot(notebook), relative, f"unreadable: {type(exc).__name__}")
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
                    except Exception as exc:  # noqa: BLE001 - reported as damaged, never raised
                        why = str(exc) if isinstance(exc, DriverError) else type(exc).__name__
                        self._report(self.slot(notebook), "driver_model.npz", f"unreadable: {why}")
                        continue
            self._cache["driver_model"] = model
        return self._cache["driver_model"]

    def _name(self, name: str) -> str:
        if not _ARTIFACT_NAME.match(name):
            raise ValueError(f"not an artifact name: {name!r}")
        return name

    def _file(self, notebook: str, relative: str) -> Path | None:
        return self.artifact(notebook, relative)

    # ------------------------------------------------------------------ what the study has
    @property
    def study_summary(self) -> dict[str, Any] | None:
        """The study's summary the pipeline published (``Study.summary()``), or None.

        None for a pointer written before the pointer carried it (its ``"study"``
        entry is then only the study's name, or ``{"name": ...}``): pages fall back to
        construct codes and to the KPIs the published tables hold.
        """
        summary = self.pointer.get("study")
        if isinstance(summary, dict) and {"labels", "kpis", "roles", "unmet"} & set(summary):
            return summary
        return None

    def label(self, name: Any) -> str:
        """The spec's label of a construct or attribute (the name itself when unknown)."""
        labels = (self.study_summary or {}).get("labels") or {}
        return str(labels.get(name) or name)

    def unmet(self, role: str) -> str | None:
        """Why the study lacks a role (:data:`cxlib.study.ROLES`) and how to add it, or None.

        None also when the pointer carries no summary (then nothing is known).
        """
        unmet = (self.study_summary or {}).get("unmet") or {}
        reason = unmet.get(role)
        return str(reason) if reason else None

    def how_to_add(self, role: str) -> str:
        """How to add a role to a study spec (:data:`cxlib.study.ROLES`)."""
        return ROLES.get(role, "")

    @property
    def kpi_items(self) -> dict[str, str | None]:
        """The study's ``kpis`` (nps, satisfaction, loyalty -> item or construct); {} unknown."""
        return dict((self.study_summary or {}).get("kpis") or {})

    def kpi_label(self, kpi: str) -> str:
        """How pages name a KPI, with the study's own construct label for the loyalty index."""
        from cxlib.insights.kpis import KPI_LABELS

        base = KPI_LABELS.get(kpi, kpi)
        construct = self.kpi_items.get("loyalty")
        if kpi == "loyalty_index" and construct:
            label = self.label(construct)
            if label.strip().lower() != "loyalty":
                return f"{label} index (0-100)"
        return base

    @property
    def target(self) -> str | None:
        """The construct driver analyses explain: the summary's role, else the baseline's."""
        roles = (self.study_summary or {}).get("roles") or {}
        if roles.get("target"):
            return str(roles["target"])
        baseline = self.json("drivers", "what_if_baseline") or {}
        return str(baseline["target"]) if baseline.get("target") else None

    def not_applicable(self, notebook: str) -> str | None:
        """Why a notebook does not apply to this study (the pipeline's reason), or None.

        Read from the pointer's slots recorded as ``{"status": "not_applicable",
        "reason": ...}`` (under ``"runs"``, or a ``"not_applicable"`` map of slot ->
        entry or reason). The every-respondent slot decides; else, when no run of the
        notebook is published, the first not-applicable slot's reason.
        """
        name = NOTEBOOKS.get(notebook, notebook)
        reasons = {
            slot: reason
            for slot, reason in self._not_applicable_slots().items()
            if slot.split("/", 1)[0] == name
        }
        preferred = f"{name}/{PREFERRED_SET}"
        if preferred in reasons:
            return reasons[preferred]
        if reasons and not self.has(notebook):
            return reasons[sorted(reasons)[0]]
        return None

    @property
    def not_applicable_notebooks(self) -> dict[str, str]:
        """Notebook -> why it does not apply to the study (those dashboards read)."""
        out = {}
        for key, name in NOTEBOOKS.items():
            reason = self.not_applicable(key)
            if reason:
                out[name] = reason
        return out

    def _not_applicable_slots(self) -> dict[str, str]:
        out: dict[str, str] = {}
        extra = self.pointer.get(NOT_APPLICABLE)
        for slot, entry in extra.items() if isinstance(extra, dict) else ():
            reason = entry.get("reason") if isinstance(entry, dict) else entry
            out[str(slot)] = str(reason or "the study lacks what this notebook needs")
        for slot, entry in (self.pointer.get("runs") or {}).items():
            if isinstance(entry, dict) and entry.get("status") == NOT_APPLICABLE:
                out[str(slot)] = str(entry.get("reason") or "the study lacks what it needs")
        return out

    def model_flags(self, notebooks=MODEL_NOTEBOOKS) -> list[dict[str, Any]]:
        """What is wrong with the published models of ``notebooks`` (default: all of them).

        Read from each run's ``diagnostics.json`` (else its manifest's ``diagnostics``):
        convergence figures outside the run's gates or ``ok: false`` give a
        ``not_converged`` flag; an ``improper`` entry with ``ok: false`` gives one
        ``improper`` flag per problem. For the drivers, the driver model's own
        ``flags`` (``{"converged": bool, "improper": [messages]}``) count too.

        Returns
        -------
        list of dict
            ``notebook``, ``kind`` (``"not_converged"`` or ``"improper"``),
            ``constructs``, ``message`` and ``advice``.
        """
        flags: list[dict[str, Any]] = []

        def add(name, kind, message, constructs=(), advice=""):
            # one flag per problem: a driver model repeats its SEM's flags (as the SEM's
            # message followed by ". Try: <advice>")
            if not any(f["kind"] == kind and str(message).startswith(f["message"]) for f in flags):
                flags.append(
                    {
                        "notebook": name,
                        "kind": kind,
                        "constructs": [str(c) for c in constructs],
                        "message": str(message),
                        "advice": str(advice or ""),
                    }
                )

        for notebook in notebooks:
            slot = self.slot(notebook)
            if slot is None:
                continue
            name = NOTEBOOKS.get(notebook, notebook)
            manifest = self.manifests.get(slot, {})
            diag = self.json(notebook, "diagnostics") or manifest.get("diagnostics") or {}
            if not isinstance(diag, dict):
                continue
            if diag and not diagnostics_ok(diag, manifest.get("gates") or {}):
                problems = [str(p) for p in diag.get("problems") or []]
                add(name, "not_converged", "; ".join(problems) or _figures(diag))
            improper = diag.get("improper")
            if isinstance(improper, dict) and improper.get("ok") is False:
                problems = [p for p in improper.get("problems") or [] if isinstance(p, dict)]
                for p in problems:
                    add(
                        name,
                        "improper",
                        p.get("message") or p.get("kind", ""),
                        p.get("constructs") or (),
                        p.get("advice"),
                    )
                if not problems:
                    add(name, "improper", "the solution is improper")
            if notebook in ("drivers", NOTEBOOKS["drivers"]):
                driver_model = self.driver_model()
                model_flags = driver_model.flags if driver_model is not None else {}
                if model_flags.get("converged") is False and not any(
                    f["kind"] == "not_converged" for f in flags
                ):
                    add(
                        name,
                        "not_converged",
                        "the driver model comes from a model that did not converge",
                    )
                known = {f["message"] for f in flags if f["kind"] == "improper"}
                for message in model_flags.get("improper") or []:
                    if str(message) not in known:
                        add(name, "improper", message)
        return flags

    # ------------------------------------------------------------------ what the page says
    @property
    def title(self) -> str:
        """The study's title (the pointer's summary, else ``overview.json``), else its name."""
        title = (self.study_summary or {}).get("title")
        if title:
            return str(title)
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
            failed or were gated and so are not shown, an old publication, a damaged
            pointer or file), ``fallback`` (:attr:`fallback_reason`) and ``damaged``
            (:meth:`damaged_files`).
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
            if gates or manifest.get("status") not in (None, "succeeded", DAMAGED):
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
        damaged = self.damaged_files()
        stale += damaged
        if self.fallback:
            stale.insert(0, self.fallback_reason or "the published pointer is damaged")
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
            "fallback": self.fallback_reason,
            "damaged": damaged,
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


def _figures(diagnostics: dict[str, Any]) -> str:
    """A run's convergence figures in words (for a flag without problems listed)."""
    parts = [
        f"{key.replace('_', ' ')} {diagnostics[key]}"
        for key in ("max_r_hat", "min_ess_bulk", "divergences")
        if diagnostics.get(key) is not None
    ]
    return "convergence outside the gates" + (f" ({', '.join(parts)})" if parts else "")


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
        if not isinstance(entry, dict) or entry.get("status") == NOT_APPLICABLE:
            continue  # no run: the study lacks what the notebook needs (not_applicable())
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
    table: pd.DataFrame | None,
    min_cell_size: int,
    *,
    n_column: str = "n",
    cells: pd.DataFrame | None = None,
    waves: list[str] | None = None,
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Drop the rows of withheld cells; return ``(kept, withheld cells)``.

    A cell is withheld when its ``small_cell`` flag is set or its respondent count is
    below ``min_cell_size``, and so is the next smallest cell of its wave when the
    table shows the wave's everyone row (complementary suppression,
    :func:`cxlib.insights.cells.suppressed_cells`): the everyone row minus the
    segments shown would otherwise give a withheld cell's size and values back. A
    kept row's change since the wave before is blanked when that wave's cell is
    withheld (and a kept ``change`` alert is dropped), since the change would give the
    withheld value back too.

    Parameters
    ----------
    table : pandas.DataFrame or None
        A published table with ``segment`` and ``wave`` columns.
    min_cell_size : int
        The study's minimum cell size.
    n_column : str
        The respondent count of a row (absent: only ``small_cell`` and ``cells`` decide).
    cells : pandas.DataFrame, optional
        Cells withheld in another table the page shows (e.g. the ``kpis`` one for the
        alerts of the same cells): withheld here too.
    waves : list of str, optional
        The waves' order (default: as they first appear in ``table``).

    Returns
    -------
    (pandas.DataFrame or None, pandas.DataFrame)
        The kept rows, and the withheld ``segment, wave`` pairs with their ``reason``
        (``small`` or ``complementary``; no values) for the page's note.
    """
    from cxlib.insights.cells import (
        CHANGE_COLUMNS,
        after_withheld_wave,
        suppressed_cells,
        withheld_rows,
    )

    columns = ["segment", "wave", "reason"]
    if table is None:
        return None, pd.DataFrame(columns=columns)
    found = suppressed_cells(table, min_cell_size, n_column=n_column)
    found = found[[c for c in columns if c in found.columns]]
    if cells is not None and len(cells):
        extra = cells[[c for c in columns if c in cells.columns]]
        found = pd.concat([found, extra], ignore_index=True)
    found = found.drop_duplicates([c for c in ("segment", "wave") if c in found.columns])
    withheld = withheld_rows(table, found)
    kept = table.loc[~withheld].copy()
    after = after_withheld_wave(kept, found, waves)
    if after.any():
        if "kind" in kept.columns:  # an alert on the change since a withheld wave
            kept = kept.loc[~(after & (kept["kind"].astype(str) == "change"))]
            after = after.loc[kept.index]
        blank = [c for c in CHANGE_COLUMNS if c in kept.columns]
        kept.loc[after, blank] = float("nan")
    return kept.reset_index(drop=True), found.reset_index(drop=True)


def pointer_path(study: str, runs_dir: str | Path | None = None) -> Path:
    """Where a study's published pointer lives (for messages)."""
    return Path(runs_dir or config.RUNS_DIR) / study / POINTER_FILE
