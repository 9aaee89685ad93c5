"""What a notebook writes into its output directory, and the manifest that lists it.

Notebooks stay thin: they compute with cxlib and hand results to an
:class:`Artifacts` writer, which puts them where the runner (and the results
store) expect them::

    <output_dir>/
        tables/<name>.parquet     tidy tables; the results store loads each into a
                                  DuckDB table of the same name
        <name>.json               reports and other JSON documents
        charts/<name>.vl.json     charts as Vega-Lite specs (+ .svg / .png)
        diagnostics.json          convergence figures of a fitted model (quality gates)
        manifest.json             what the notebook wrote, with sizes and hashes

The hashes (SHA-256, taken as each file is written) let readers notice a file
damaged since: :func:`damaged_artifacts` checks a run's folder against them (and
against the sizes the runner listed in the run's own manifest); the dashboards do
when they load a published file, and the runner re-runs a slot whose run fails.

>>> out = Artifacts(output_dir, notebook="01-data-quality")     # doctest: +SKIP
>>> out.table("data_quality_items", items)                     # doctest: +SKIP
>>> out.finish()                                               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from cxlib import __version__, config
from cxlib.pipeline.gates import DIAGNOSTICS_FILE
from cxlib.pipeline.provenance import write_json_atomic

__all__ = [
    "ARTIFACT_FORMAT",
    "MANIFEST_FILE",
    "RESERVED_TABLES",
    "TABLES_DIR",
    "Artifacts",
    "damaged_artifacts",
    "default_output_dir",
    "diagnostics_dict",
    "diagnostics_from_idata",
    "expected_files",
    "file_damage",
    "is_table_name",
]

#: Version of what a run folder holds (tables, their columns, labels): 2 is the one
#: results vocabulary (``cxlib.pipeline.schemas``). Each table's Parquet metadata
#: and manifest entry carry it; the results store loads only tables of this format
#: and rebuilds itself from the run folders when it changes.
ARTIFACT_FORMAT = 2
#: Subfolder of the output directory holding tidy tables (Parquet).
TABLES_DIR = "tables"
#: The notebook's own manifest in its output directory.
MANIFEST_FILE = "manifest.json"
#: Table names the results store uses itself.
RESERVED_TABLES = ("runs", "publications", "published_runs", "alert_rules")
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_table_name(name: str) -> bool:
    """Whether ``name`` may name a run's table (and so a table of the results store).

    Parameters
    ----------
    name : str
        The table's name (its Parquet file's stem).

    Returns
    -------
    bool
        True for a lower-case identifier of at most 63 characters that is not
        one of :data:`RESERVED_TABLES` and does not start with ``published_``.
    """
    return (
        bool(_TABLE_NAME.match(name))
        and name not in RESERVED_TABLES
        and not name.startswith("published_")
    )


def expected_files(output_dir: str | Path, listed=None) -> tuple[dict[str, dict], list[str]]:
    """What a run's output folder should hold: ``({path: {"bytes", "sha256"}}, problems)``.

    Read from the notebook's ``manifest.json`` in the folder (sizes and hashes) and
    ``listed``, the run manifest's ``artifacts`` (path and size of every file the
    runner found there when the run finished); for a file both list, the notebook's
    record (taken as it wrote the file) wins. A notebook manifest the runner listed but
    that is now missing, or one that is unreadable, is a problem.
    """
    folder = Path(output_dir)
    expected: dict[str, dict] = {}
    problems: list[str] = []
    for entry in listed or ():
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            expected[entry["path"]] = {k: entry.get(k) for k in ("bytes", "sha256")}
    path = folder / MANIFEST_FILE
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get("files") or []
    except FileNotFoundError:
        files = []
        if MANIFEST_FILE in expected:
            problems.append(f"{MANIFEST_FILE}: missing")
    except (OSError, ValueError, AttributeError) as exc:
        files = []
        problems.append(f"{MANIFEST_FILE}: unreadable ({type(exc).__name__})")
    for entry in files if isinstance(files, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            known = expected.setdefault(entry["path"], {})
            for key in ("bytes", "sha256"):
                if entry.get(key) is not None:
                    known[key] = entry[key]
    # the manifest itself is checked by reading it (above), not by size: it is the record
    expected.pop(MANIFEST_FILE, None)
    return expected, problems


def file_damage(path: str | Path, expected: dict[str, Any]) -> str | None:
    """Why a file is not what was written (missing, size, checksum), or None when it is.

    Parameters
    ----------
    path : str or Path
        The file.
    expected : dict
        ``bytes`` and/or ``sha256`` recorded when it was written (either may be absent).
    """
    from cxlib.pipeline.provenance import file_sha256

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if expected.get("bytes") is not None and size != expected["bytes"]:
        return f"{size} bytes, {expected['bytes']} when written"
    if expected.get("sha256"):
        try:
            digest = file_sha256(path)
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"
        if digest != expected["sha256"]:
            return "its SHA-256 checksum differs from the one taken when it was written"
    return None


def damaged_artifacts(output_dir: str | Path, listed=None) -> list[str]:
    """What is damaged in a run's output folder: ``"<file>: <why>"`` per file, [] when intact.

    A file is damaged when it is missing, or its size or SHA-256 differs from what
    the notebook's ``manifest.json`` recorded as it wrote it (or the size the runner
    listed, ``listed``: the run manifest's ``artifacts``). Files with nothing
    recorded about them are not checked.

    Parameters
    ----------
    output_dir : str or Path
        The run's output folder (``<run>/artifacts``).
    listed : list of dict, optional
        The run manifest's ``artifacts`` entries (``path``, ``bytes``, maybe ``sha256``).
    """
    folder = Path(output_dir)
    expected, problems = expected_files(folder, listed)
    for relative, known in sorted(expected.items()):
        target = (folder / relative).resolve()
        if not target.is_relative_to(folder.resolve()):
            continue  # a manifest never sends the check outside the run folder
        damage = file_damage(target, known)
        if damage:
            problems.append(f"{relative}: {damage}")
    return problems


def default_output_dir(notebook: str) -> Path:
    """Where a notebook run by hand writes: ``RUNS_DIR/manual/<notebook>-<time>/``.

    The runs directory is git-ignored, so a manual run never writes into the
    repository's tracked files.
    """
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return config.RUNS_DIR / "manual" / f"{notebook}-{stamp}"


class Artifacts:
    """Writes a notebook's results into its output directory.

    Parameters
    ----------
    output_dir : str or Path
        The notebook's ``output_dir`` parameter; ``""`` (a manual run) means
        :func:`default_output_dir`.
    notebook : str
        The notebook's name, e.g. ``01-data-quality``.
    parameters : dict, optional
        The notebook's parameter values, recorded in the manifest.
    """

    def __init__(
        self, output_dir: str | Path, *, notebook: str, parameters: dict[str, Any] | None = None
    ):
        self.path = Path(output_dir) if str(output_dir) else default_output_dir(notebook)
        self.path.mkdir(parents=True, exist_ok=True)
        self.notebook = notebook
        self.parameters = dict(parameters or {})
        self.files: list[dict[str, Any]] = []
        self._started = time.time()

    def __repr__(self) -> str:
        return f"Artifacts({str(self.path)!r}, {len(self.files)} file(s))"

    def record(self, path: Path | str, kind: str, **extra: Any) -> Path:
        """List a file the notebook wrote itself (under the run folder) in the manifest.

        Parameters
        ----------
        path : pathlib.Path or str
            The file, inside :attr:`path`.
        kind : str
            What it is (``"draws"``, ``"table"``, ...), for the manifest.
        **extra
            More manifest fields for this file.

        Returns
        -------
        pathlib.Path
            ``path``, so that a save can be recorded in one line.
        """
        path = Path(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rel = path.relative_to(self.path).as_posix()
        self.files = [f for f in self.files if f["path"] != rel]
        self.files.append(
            {"path": rel, "kind": kind, "bytes": path.stat().st_size, "sha256": digest, **extra}
        )
        return path

    def table(self, name: str, frame) -> Path:
        """Write a tidy table as ``tables/<name>.parquet``.

        Parameters
        ----------
        name : str
            Lower-case identifier; the results store loads the table into a DuckDB
            table of this name (``estimates``, ``effects``, ``kpis``,
            ``data_quality_items`` ...).
        frame : pandas.DataFrame
            One row per observation, one column per variable; a non-default
            index is kept as columns. A table declared in
            :mod:`cxlib.pipeline.schemas` must match its declaration.

        Returns
        -------
        Path

        Raises
        ------
        TableSchemaError
            When a declared table breaks its declaration, or a notebook the
            declarations know writes a table not declared for it (nothing is written).
        """
        if not is_table_name(name):
            raise ValueError(
                f"table name {name!r}: use lower-case letters, digits and '_' (it names a "
                f"database table); {', '.join(RESERVED_TABLES)} and published_* are reserved"
            )
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        from cxlib.pipeline.schemas import validate_table

        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()
        if any(not isinstance(c, str) for c in frame.columns):
            frame = frame.rename(columns=str)
        frame = validate_table(name, frame, notebook=self.notebook)
        folder = self.path / TABLES_DIR
        folder.mkdir(exist_ok=True)
        path = folder / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        data = pa.Table.from_pandas(frame, preserve_index=False)
        # a column with no values at all (an empty table, a column of None) has no type
        # in Arrow; the store could not append typed rows to it later: write it as text
        for i, field in enumerate(data.schema):
            if pa.types.is_null(field.type):
                data = data.set_column(i, field.name, data.column(i).cast(pa.string()))
        meta = {**(data.schema.metadata or {}), b"cxlib.artifact_format": str(ARTIFACT_FORMAT)}
        pq.write_table(data.replace_schema_metadata(meta), tmp)
        tmp.replace(path)
        return self.record(
            path,
            "table",
            rows=len(frame),
            columns=list(frame.columns),
            format=ARTIFACT_FORMAT,
        )

    def json(self, name: str, data: Any) -> Path:
        """Write a JSON document as ``<name>.json`` (e.g. a report's ``to_dict()``)."""
        self._check_name(name)
        path = self.path / f"{name}.json"
        write_json_atomic(path, data)
        return self.record(path, "json")

    def chart(self, name: str, chart, formats: tuple[str, ...] = ("svg",)) -> list[Path]:
        """Write an altair chart as ``charts/<name>.vl.json`` plus images.

        Parameters
        ----------
        name : str
            File name without suffix.
        chart : altair.Chart
            The chart (from :mod:`cxlib.plots`).
        formats : tuple of str
            Image formats to add: ``svg`` and/or ``png`` (rendered with vl-convert).

        Returns
        -------
        list of Path
        """
        self._check_name(name)
        folder = self.path / "charts"
        folder.mkdir(exist_ok=True)
        spec = chart.to_dict()
        paths = [folder / f"{name}.vl.json"]
        write_json_atomic(paths[0], spec)
        self.record(paths[0], "chart")
        import vl_convert as vlc

        for fmt in formats:
            if fmt == "svg":
                out = folder / f"{name}.svg"
                out.write_text(vlc.vegalite_to_svg(spec), encoding="utf-8")
            elif fmt == "png":
                out = folder / f"{name}.png"
                out.write_bytes(vlc.vegalite_to_png(spec, scale=2))
            else:
                raise ValueError(f"chart format {fmt!r}: use 'svg' or 'png'")
            paths.append(self.record(out, "image"))
        return paths

    def diagnostics(self, diagnostics, *, improper=None) -> Path:
        """Write a fitted model's convergence figures (``diagnostics.json``) for the gates.

        Parameters
        ----------
        diagnostics : dict, Diagnostics or arviz.InferenceData
            A dict with at least ``max_r_hat``, ``min_ess_bulk`` and
            ``divergences``; a fitted model's
            :class:`~cxlib.models.base.Diagnostics` (``result.diagnostics``:
            written with its ``ok`` flag and ``problems``); or an InferenceData
            to compute them from (:func:`diagnostics_from_idata`).
        improper : ImproperSolution or dict, optional
            A SEM's improper-solution report (``result.improper``): written as
            ``"improper": {"ok": bool, "problems": [...]}``, with ``"trustworthy"``
            (converged and proper) beside it, so that the overview and the
            dashboards flag a result that is improper as well as one that did not
            converge.

        Returns
        -------
        Path
        """
        if hasattr(diagnostics, "max_r_hat") and hasattr(diagnostics, "ok"):
            diagnostics = diagnostics_dict(diagnostics)
        elif not isinstance(diagnostics, dict):
            diagnostics = diagnostics_from_idata(diagnostics)
        if improper is not None:
            report = improper.to_dict() if hasattr(improper, "to_dict") else dict(improper)
            diagnostics = {
                **diagnostics,
                "improper": report,
                "trustworthy": bool(diagnostics.get("ok", True)) and bool(report.get("ok", True)),
            }
        path = self.path / DIAGNOSTICS_FILE
        write_json_atomic(path, diagnostics)
        return self.record(path, "diagnostics")

    def finish(self) -> Path:
        """Write ``manifest.json`` listing every file written; return its path."""
        path = self.path / MANIFEST_FILE
        write_json_atomic(
            path,
            {
                "notebook": self.notebook,
                "cxlib_version": __version__,
                "parameters": self.parameters,
                "started_at": _iso(self._started),
                "finished_at": _iso(time.time()),
                "files": sorted(self.files, key=lambda f: f["path"]),
            },
        )
        return path

    @staticmethod
    def _check_name(name: str) -> None:
        if not _FILE_NAME.match(name) or name in ("manifest", "diagnostics"):
            raise ValueError(f"artifact name {name!r}: use letters, digits, '.', '-' and '_'")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def diagnostics_dict(diagnostics) -> dict[str, Any]:
    """A model's :class:`~cxlib.models.base.Diagnostics` as the JSON the gates read.

    Returns
    -------
    dict
        ``max_r_hat``, ``min_ess_bulk``, ``divergences``, ``ok``, ``problems`` and
        ``sign_disagreement`` (plain numbers and strings).
    """
    import math

    def number(x) -> float | None:
        x = float(x)
        return x if math.isfinite(x) else None

    return {
        "max_r_hat": number(diagnostics.max_r_hat),
        "min_ess_bulk": number(diagnostics.min_ess_bulk),
        "divergences": int(diagnostics.divergences),
        "ok": bool(diagnostics.ok),
        "problems": [str(p) for p in diagnostics.problems()],
        "sign_disagreement": [str(p) for p in getattr(diagnostics, "sign_disagreement", [])],
    }


def diagnostics_from_idata(idata) -> dict[str, Any]:
    """Convergence figures of a posterior: worst R-hat, lowest bulk ESS, divergences.

    Parameters
    ----------
    idata : arviz.InferenceData
        With a ``posterior`` group (and ``sample_stats.diverging`` from NUTS).

    Returns
    -------
    dict
        ``max_r_hat``, ``min_ess_bulk``, ``divergences``, ``chains``, ``draws``.
    """
    import arviz as az
    import numpy as np

    posterior = idata.posterior
    rhat = az.rhat(posterior)
    ess = az.ess(posterior, method="bulk")

    def extreme(dataset, fn) -> float:
        values = [np.asarray(dataset[v]).ravel() for v in dataset.data_vars]
        values = [v for v in values if v.size]
        if not values:
            return float("nan")
        return float(fn(np.concatenate(values)))

    divergences = 0
    if hasattr(idata, "sample_stats") and "diverging" in idata.sample_stats:
        divergences = int(np.asarray(idata.sample_stats["diverging"]).sum())
    return {
        "max_r_hat": extreme(rhat, np.nanmax),
        "min_ess_bulk": extreme(ess, np.nanmin),
        "divergences": divergences,
        "chains": int(posterior.sizes.get("chain", 0)),
        "draws": int(posterior.sizes.get("draw", 0)),
    }
