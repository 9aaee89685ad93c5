"""Turn a pipeline spec into the list of notebook runs, checking everything first.

:func:`plan_runs` resolves the studies, data sources and notebooks a spec names,
reads each notebook's declared parameters and checks every value against them.
All problems are collected and raised together, before any run starts.

Parameters reach a run in this order, later ones winning: the pipeline's
``parameters``, the study entry's, the notebook entry's, the parameter set's,
and with ``--fast`` the pipeline's and notebook's ``fast_parameters``.
Pipeline- and study-level parameters go to the notebooks that declare them
(each must be declared by at least one); the others must be declared by their
notebook. The runner sets ``output_dir`` (and ``study_path``, ``data_path``,
``run_id`` where declared) itself, and each parameter a notebook entry names under
``inputs``: the output directory of that notebook's run in the same refresh; and
``alert_rules`` (where declared, as ``str``): the pipeline's ``alerts:`` as a JSON list.
Tasks come with each notebook's inputs before it.

A parameter set given as ``segment: each`` (``each_segment: {segment: each}``)
stands for one set per segment of the study (:func:`expand_parameter_set`): per
value of its segment column, a set labelled after the value (``Small business`` ->
``small-business``; a numeric code ``1`` of column ``region`` -> ``region-1``) whose ``segment`` is the
value (``column=value`` when the study has several segment columns). A study
without segments gets none of these runs. The values are the study spec's
(``columns.segments``, code labels applied), else those in the data.

A run's key (what makes it up to date) covers every file it reads: the study
spec, the data file, and its side files (:func:`side_files`) — the study's side
tables (``source.touchpoint_costs``, ``source.internal_assessment``) for a
notebook whose code names them, and the file named by any ``*_path`` parameter
it is given. Changing a cost table reruns the touchpoints notebook, not the SEM.

One data version per refresh: :func:`run_pipeline` plans with ``freeze=True``, and
each study's data file is then frozen (:func:`freeze_study_data`) — copied once per
content into ``<runs>/<study>/.data/<sha256>/<file name>`` — and checked readable
(:func:`check_data_readable`) before any notebook starts. Every run of the refresh
reads that copy (its ``data_path``), so a file replaced mid-refresh cannot give two
notebooks two versions; :func:`changed_inputs` tells the runner at publish time
whether the files the runs were planned on changed since.

:func:`plan_runs` reads as its steps, each a function of its own:

1. :func:`resolve_studies` — each study entry's spec and data file (:func:`resolve_study`),
   then :func:`select_study` for ``--study``;
2. :func:`read_notebooks` — each notebook and its declared parameters (:func:`read_notebook`);
3. :func:`check_shared_parameters` — the pipeline's and study entries' parameters;
4. :func:`plan_tasks` — per study x notebook x parameter set: :func:`parameter_layers`,
   :func:`layered_values`, :func:`run_parameters`, and :func:`make_task` (the key).
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxlib.errors import did_you_mean
from cxlib.pipeline.errors import PipelineSpecError
from cxlib.pipeline.params import (
    DeclaredParameter,
    NotebookParameterError,
    coerce_parameter,
    declared_parameters,
    notebook_hash,
)
from cxlib.pipeline.provenance import code_version, file_sha256, run_key
from cxlib.pipeline.spec import SEGMENT_PARAMETER, NotebookEntry, PipelineSpec, StudyEntry

if TYPE_CHECKING:
    from cxlib.study import Study

__all__ = [
    "ALERT_RULES_PARAMETER",
    "DATA_SNAPSHOTS",
    "changed_inputs",
    "check_data_readable",
    "freeze_study_data",
    "expand_parameter_set",
    "segment_label",
    "segment_values",
    "OUTPUT_PARAMETER",
    "RUNNER_PARAMETERS",
    "SIDE_TABLES",
    "PlannedNotebook",
    "PlannedStudy",
    "RunTask",
    "plan_runs",
    "resolve_data",
    "side_files",
]

#: The parameter every pipeline notebook declares: where it writes its artifacts.
OUTPUT_PARAMETER = "output_dir"
#: Parameters the runner sets (where the notebook declares them); a spec may not.
RUNNER_PARAMETERS = ("study_path", "data_path", "run_id")
#: Set by the planner from the pipeline (where declared): its ``alerts:`` as a JSON list.
ALERT_RULES_PARAMETER = "alert_rules"
#: The run folder's subfolder that is a run's output directory by default.
ARTIFACTS = "artifacts"
#: The study spec's ``source`` keys naming side tables (CSV files beside the responses)
#: that notebooks read through ``study.source_path(key)``.
SIDE_TABLES = ("touchpoint_costs", "internal_assessment")
#: Parameters named ``*_path`` name a file the run reads (besides the runner's own).
PATH_PARAMETER_SUFFIX = "_path"
#: A study's folder (in the runs directory) of frozen data versions: ``<sha256>/<file name>``.
DATA_SNAPSHOTS = ".data"


@dataclass(frozen=True)
class RunTask:
    """One notebook run to make: a study x notebook x parameter set.

    Everything a worker (local or on a Dask cluster) needs; plain data, picklable.
    """

    pipeline: str
    study: str
    study_path: str
    notebook: str
    notebook_path: str
    label: str
    parameters: dict[str, Any]
    #: The data file the notebook reads: the refresh's frozen copy (see ``data_source``).
    data_path: str | None
    data_hash: str | None
    key: str
    key_parts: dict[str, Any]
    gates: dict[str, Any]
    runs_dir: str
    output_subdir: str = ARTIFACTS
    timeout_s: float = 1800
    start_timeout_s: float = 60
    #: Limit of the whole notebook run (all cells), seconds; None: only the cells' limit.
    run_timeout_s: float | None = None
    #: When the pipeline's time limit ends (epoch seconds; set by the runner).
    deadline: float | None = None
    kernel: str | None = None
    export_html: bool = True
    runner_parameters: tuple[str, ...] = field(default_factory=tuple)
    fast: bool = False
    inputs: tuple[tuple[str, str], ...] = ()
    #: Inputs (parameter names) the run goes ahead without (see ``NotebookEntry``).
    optional_inputs: tuple[str, ...] = ()
    #: Other files the run reads (side tables, ``*_path`` parameters): name -> path, hash.
    side_files: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The data file as the pipeline names it (``data_path`` is its frozen copy, or the same).
    data_source: str | None = None

    @property
    def slot(self) -> str:
        """What a published run stands for within its study: ``notebook/label``."""
        return f"{self.notebook}/{self.label}"

    @property
    def needs(self) -> list[str]:
        """Slots (``notebook/label``) of the runs whose output this run takes as input."""
        return [slot for _, slot in self.inputs]

    @property
    def study_dir(self) -> Path:
        """The study's folder in the runs directory."""
        return Path(self.runs_dir) / self.study


_GLOB_CHARS = set("*?[")


def resolve_data(pattern: Path) -> list[Path]:
    """The files a data source names: the file itself, or a glob's matches in name order."""
    text = str(pattern)
    if _GLOB_CHARS & set(text):
        return [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
    return [pattern] if pattern.is_file() else []


def _file_state(path: Path) -> str:
    """A file's SHA-256, or what stands in for it (``missing``, ``not a file``)."""
    if path.is_file():
        return file_sha256(path)
    return "not a file" if path.exists() else "missing"


def _notebook_code(path: Path) -> str:
    """The source of a notebook's code cells (what it does, not its outputs)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def side_files(
    study, notebook: str | Path, parameters: dict[str, Any], base: Path | None = None
) -> dict[str, dict[str, str]]:
    """The files a run reads besides the study spec and the data file, with their hashes.

    Side tables count when the notebook's code names their key; the event log and its
    feedback file (``source.events``) when the code names ``source.events``.

    Parameters
    ----------
    study : Study
        The loaded study spec (its ``source`` names the side tables).
    notebook : str or Path
        The notebook: it reads a side table when its code names the table's key
        (e.g. ``study.source_path("touchpoint_costs")``).
    parameters : dict
        The run's parameters: each non-empty ``*_path`` value (``costs_path``)
        names a file the run reads; relative ones resolve against ``base``.
    base : Path, optional
        The folder relative path parameters are read from (the pipeline's).

    Returns
    -------
    dict
        ``{"source.touchpoint_costs": {"path": ..., "hash": ...}, "costs_path": ...}``;
        the hash is ``missing`` for a named file that does not exist, so creating
        it later makes the run out of date too.
    """
    out: dict[str, dict[str, str]] = {}
    code = _notebook_code(Path(notebook))
    for key in SIDE_TABLES:
        path = study.source_path(key)
        if path is None or key not in code:
            continue
        out[f"source.{key}"] = {"path": str(path), "hash": _file_state(path)}
    events = getattr(study.source, "events", None)
    if events is not None and "source.events" in code:
        # the session event log and its intercept-survey ratings (06-digital-experience)
        named = {"source.events": events.file}
        if events.feedback is not None:
            named["source.events.feedback"] = events.feedback.file
        for key, value in named.items():
            path = Path(value).expanduser()
            if not path.is_absolute() and study.path is not None:
                path = study.path.parent / path
            out[key] = {"path": str(path), "hash": _file_state(path)}
    for name, value in sorted(parameters.items()):
        if not name.endswith(PATH_PARAMETER_SUFFIX) or not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        out[name] = {"path": str(path), "hash": _file_state(path)}
    return out


@dataclass(frozen=True)
class PlannedStudy:
    """A study entry of the pipeline, resolved: its spec loaded, its data file found.

    Attributes
    ----------
    index : int
        Its place in the pipeline's ``studies`` (messages say ``studies[index]``).
    entry : StudyEntry
        The entry as the pipeline spec gives it.
    path : Path
        The study spec file.
    study : Study
        The loaded study spec.
    data_file : Path
        The data file its runs read (of a glob's matches, the last in name order;
        once frozen, the refresh's copy of it).
    data_hash : str or None
        SHA-256 of ``data_file`` once frozen (None: hashed when planned).
    data_source : Path or None
        The file the data were frozen from (None: not frozen, ``data_file`` itself).
    """

    index: int
    entry: StudyEntry
    path: Path
    study: Study
    data_file: Path
    data_hash: str | None = None
    data_source: Path | None = None

    @property
    def name(self) -> str:
        """The study's name (from its spec)."""
        return self.study.name


@dataclass(frozen=True)
class PlannedNotebook:
    """A notebook entry of the pipeline, resolved: the notebook found, its parameters read.

    Attributes
    ----------
    index : int
        Its place in the pipeline's ``notebooks`` (messages say ``notebooks[index]``).
    entry : NotebookEntry
        The entry as the pipeline spec gives it.
    path : Path
        The notebook file.
    declared : dict
        Its parameters cell: name -> :class:`~cxlib.pipeline.params.DeclaredParameter`.
    """

    index: int
    entry: NotebookEntry
    path: Path
    declared: dict[str, DeclaredParameter]


def plan_runs(
    spec: PipelineSpec,
    *,
    study: str | None = None,
    fast: bool = False,
    runs_dir: str | Path | None = None,
    freeze: bool = False,
) -> list[RunTask]:
    """Plan a pipeline's runs and check every input before anything runs.

    Parameters
    ----------
    spec : PipelineSpec
        The pipeline.
    study : str, optional
        Run only this study (by its name in the study spec).
    fast : bool
        A smoke run: apply the ``fast_parameters`` (small draws) and the
        ``fast_gates``; such runs are recorded but never published.
    runs_dir : str or Path, optional
        Where runs go (default: the spec's ``runs_dir``, else ``config.RUNS_DIR``).
    freeze : bool
        Freeze each study's data for a refresh (:func:`freeze_study_data`) and
        check that it reads and validates (:func:`check_data_readable`); the runs
        then read the frozen copy. The runner sets it; a plan only to check does not.

    Returns
    -------
    list of RunTask
        Studies in spec order, then notebooks, then parameter sets.

    Raises
    ------
    PipelineSpecError
        Listing every problem: a study spec, data file or notebook that does not
        exist, a data glob matching nothing, a parameter the notebook does not
        declare or of the wrong type, an output path outside the runs directory;
        with ``freeze``, data that cannot be frozen, read or validated.
    """
    runs = Path(runs_dir).resolve() if runs_dir is not None else spec.runs_path
    studies, problems = resolve_studies(spec)
    studies = select_study(spec, studies, study, any_problems=bool(problems))
    if freeze:
        studies, found = freeze_studies(studies, runs)
        problems += found
    notebooks, notebook_problems = read_notebooks(spec)
    problems += notebook_problems
    problems += check_shared_parameters(spec, studies, notebooks, runs=runs, fast=fast)
    tasks, task_problems = plan_tasks(spec, studies, notebooks, runs=runs, fast=fast)
    problems += task_problems
    if problems:
        raise PipelineSpecError(spec.source, list(dict.fromkeys(problems)))
    return tasks


# ----------------------------------------------------------------------------- step 1: studies
def resolve_study(spec: PipelineSpec, index: int, entry: StudyEntry) -> PlannedStudy | str:
    """Load one study entry's spec and find its data file.

    Parameters
    ----------
    spec : PipelineSpec
        The pipeline (its folder resolves the entry's paths).
    index : int
        The entry's place in ``spec.studies``.
    entry : StudyEntry
        The entry.

    Returns
    -------
    PlannedStudy or str
        The resolved study, or the problem that stops it (a message naming the
        entry's key: the spec or data file missing, the spec invalid, no data).
    """
    from cxlib.errors import CxError
    from cxlib.study import load_study

    where = f"studies[{index}].spec"
    path = spec.resolve(entry.spec)
    if not path.is_file():
        return f"{where}: study spec {str(path)!r} does not exist"
    try:
        loaded = load_study(path)
    except CxError as exc:
        return f"{where}: {exc}"
    if entry.data is not None:
        source, where_data = spec.resolve(entry.data), f"studies[{index}].data"
    elif loaded.data_path is not None:
        source, where_data = loaded.data_path, f"{path.name}: source.file"
    else:
        return (
            f"studies[{index}]: give `data:` (a file or a glob) — study {loaded.name!r} "
            "has no source.file"
        )
    files = resolve_data(source)
    if not files:
        what = "the glob" if _GLOB_CHARS & set(str(source)) else "the data file"
        hint = " (build the sample data with `cx sample`)" if "telecom" in str(source) else ""
        return f"{where_data}: {what} {str(source)!r} matches no file{hint}"
    return PlannedStudy(index, entry, path, loaded, files[-1])


def resolve_studies(spec: PipelineSpec) -> tuple[list[PlannedStudy], list[str]]:
    """Resolve every study entry (:func:`resolve_study`); a study listed twice is a problem.

    Returns
    -------
    tuple
        ``(the studies resolved, in spec order; the problems found)``.
    """
    studies: list[PlannedStudy] = []
    problems: list[str] = []
    for index, entry in enumerate(spec.studies):
        got = resolve_study(spec, index, entry)
        if isinstance(got, str):
            problems.append(got)
        else:
            studies.append(got)
    names = [s.name for s in studies]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"studies: study {dupes[0]!r} is listed twice")
    return studies, problems


def select_study(
    spec: PipelineSpec, studies: list[PlannedStudy], name: str | None, *, any_problems: bool
) -> list[PlannedStudy]:
    """The studies to plan: all of them, or only the one ``--study`` names.

    Raises
    ------
    PipelineSpecError
        When ``name`` is none of the studies and nothing else is wrong so far
        (``any_problems`` false; otherwise the study may be among those that
        failed to load, and the problems say why).
    """
    if name is None:
        return studies
    known = [s.name for s in studies]
    if name not in known and not any_problems:
        raise PipelineSpecError(
            spec.source,
            [
                f"--study {name!r}: the pipeline has no such study (it has: {', '.join(known)})"
                + did_you_mean(name, known)
            ],
        )
    return [s for s in studies if s.name == name]


# ----------------------------------------------------------------------------- frozen data
def freeze_studies(studies: list[PlannedStudy], runs: Path) -> tuple[list[PlannedStudy], list[str]]:
    """Freeze each study's data (:func:`freeze_study_data`) and check it reads and validates.

    Returns
    -------
    tuple
        ``(the studies reading their frozen data; the problems: data that could not
        be frozen, read or validated, each naming the study entry and the file)``.
    """
    from cxlib.errors import CxError

    frozen: list[PlannedStudy] = []
    problems: list[str] = []
    for planned in studies:
        where = f"studies[{planned.index}]"
        try:
            planned = freeze_study_data(planned, runs)
        except OSError as exc:
            problems.append(
                f"{where}: cannot freeze the data {str(planned.data_file)!r} for this refresh "
                f"in {str(runs / planned.name / DATA_SNAPSHOTS)!r}: {exc.strerror or exc}"
            )
            continue
        try:
            check_data_readable(planned)
        except CxError as exc:
            problems.append(f"{where}: {exc}")
            _drop_frozen(planned.data_file)  # no run will read it
            continue
        frozen.append(planned)
    return frozen, problems


def freeze_study_data(study: PlannedStudy, runs: Path) -> PlannedStudy:
    """The study reading a frozen copy of its data file, one copy per content.

    The copy is ``<runs>/<study>/.data/<sha256>/<file name>`` (read-only; the file
    name kept, so formats and messages stay as they were). A version already
    frozen is reused (the copy's time set to now: the newest versions are kept
    when old ones are pruned, :mod:`cxlib.pipeline.retention`); else the file is cloned (copy-on-write where the file system
    can) or copied, hashed as it is copied. Not a hard link: a hard link shares the
    file, so a program that rewrites the export in place (``DataFrame.to_csv``, a
    spreadsheet's save) would change the frozen version too.

    Returns
    -------
    PlannedStudy
        With ``data_file`` the frozen copy, ``data_hash`` its SHA-256 and
        ``data_source`` the file it was frozen from.

    Raises
    ------
    OSError
        When the copy cannot be written (e.g. the disk is full).
    """
    source = study.data_file.resolve()
    store = runs / study.name / DATA_SNAPSHOTS
    known = file_sha256(source)
    frozen = store / known / source.name
    if frozen.is_file():
        try:  # this version is the newest in use again (what pruning keeps)
            os.utime(frozen)
        except OSError:
            pass
        return replace(study, data_file=frozen, data_hash=known, data_source=source)
    store.mkdir(parents=True, exist_ok=True)
    tmp = store / f".{source.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        digest = _copy_hashing(source, tmp)
        frozen = store / digest / source.name
        frozen.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, frozen)
    finally:
        tmp.unlink(missing_ok=True)
    return replace(study, data_file=frozen, data_hash=digest, data_source=source)


def _drop_frozen(frozen: Path) -> None:
    """Remove a frozen copy and its folder (a version no run reads); never fails."""
    try:
        frozen.unlink(missing_ok=True)
        frozen.parent.rmdir()
    except OSError:
        pass


#: ``ioctl`` request that clones a file's extents (Linux: btrfs, XFS, ...).
_FICLONE = 0x40049409


def _copy_hashing(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (a clone where possible); return the copy's SHA-256."""
    import hashlib

    digest = hashlib.sha256()
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            import fcntl

            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        except (ImportError, OSError):  # no copy-on-write here: copy the bytes
            while chunk := src.read(1 << 22):
                digest.update(chunk)
                dst.write(chunk)
            return digest.hexdigest()
    return file_sha256(target)  # the clone's bytes, read back


def check_data_readable(study: PlannedStudy) -> None:
    """Read and validate a study's (frozen) data as every notebook will, before any starts.

    Raises
    ------
    CxError
        The reader's or the validation's message, naming the file as the pipeline
        names it (not its frozen copy).
    """
    from cxlib.data import load_responses
    from cxlib.errors import CxError

    try:
        load_responses(study.study, study.data_file)
    except CxError as exc:
        message = str(exc)
        if study.data_source is not None:
            message = message.replace(str(study.data_file), str(study.data_source))
        message = message.replace("\n", "\n    ")  # its own list, under the pipeline's
        raise CxError(
            f"the data cannot be read as study {study.name!r} expects: {message}"
        ) from None


def changed_inputs(tasks: list[RunTask]) -> list[str]:
    """What the runs were planned on that is no longer so: each file changed since.

    Hashed afresh (no cache): the data file as the pipeline names it and its
    frozen copy, the study spec, and the side files. Each file is checked once.

    Returns
    -------
    list of str
        One line per changed file (``responses.csv: planned 3f2a9c1d…, now 81b0e2aa…``);
        empty when everything is as planned.
    """
    from cxlib.data import file_hash

    expected: dict[str, str] = {}
    for task in tasks:
        if task.data_path and task.data_hash:
            expected.setdefault(task.data_path, task.data_hash)
            expected.setdefault(task.data_source or task.data_path, task.data_hash)
        expected.setdefault(task.study_path, task.key_parts.get("study_hash", ""))
        for side in task.side_files.values():
            expected.setdefault(side["path"], side["hash"])
    changed = []
    for path, planned in expected.items():
        file = Path(path)
        try:
            now = file_hash(file) if file.is_file() else _file_state(file)
        except OSError as exc:
            now = f"unreadable ({exc.strerror or exc})"
        if now != planned:
            changed.append(f"{path}: planned {planned[:12]}, now {now[:12]}")
    return changed


# ----------------------------------------------------------------------------- step 2: notebooks
def read_notebook(
    spec: PipelineSpec, index: int, entry: NotebookEntry
) -> tuple[PlannedNotebook | None, list[str]]:
    """Find one notebook entry's notebook and read its declared parameters.

    Parameters
    ----------
    spec : PipelineSpec
        The pipeline (its folder resolves the entry's path).
    index : int
        The entry's place in ``spec.notebooks``.
    entry : NotebookEntry
        The entry.

    Returns
    -------
    tuple
        ``(the resolved notebook, or None when it cannot be planned; the problems
        found)``. A notebook whose runner-set parameters or inputs are declared
        wrongly is still returned (with those problems), so that its parameters
        are checked too.
    """
    where = f"notebooks[{index}].path"
    path = spec.resolve(entry.path)
    if path.suffix != ".ipynb":
        return None, [f"{where}: {entry.path!r} is not a notebook (.ipynb)"]
    if not path.is_file():
        near = ""
        if path.parent.is_dir():
            near = did_you_mean(path.name, [p.name for p in path.parent.glob("*.ipynb")])
        return None, [f"{where}: notebook {str(path)!r} does not exist{near}"]
    try:
        declared = declared_parameters(path)
    except NotebookParameterError as exc:
        return None, [f"{where}: {path.name} {exc}"]
    if OUTPUT_PARAMETER not in declared:
        return None, [
            f"{where}: {path.name} declares no {OUTPUT_PARAMETER!r} parameter; the runner "
            'passes each run\'s output folder in it (add `output_dir: str = ""  # where '
            "artifacts go` to its parameters cell)"
        ]
    problems = []
    for name in (OUTPUT_PARAMETER, *RUNNER_PARAMETERS):
        if name in declared:
            try:
                coerce_parameter(declared[name], "x")
            except NotebookParameterError:
                problems.append(
                    f"{where}: {path.name} declares {name!r} as "
                    f"`{declared[name].type_name}`; the runner passes a path as str"
                )
    for name in entry.inputs:
        problems += _input_parameter(f"notebooks[{index}].inputs.{name}", path.name, name, declared)
    return PlannedNotebook(index, entry, path, declared), problems


def read_notebooks(spec: PipelineSpec) -> tuple[list[PlannedNotebook], list[str]]:
    """Read every notebook entry (:func:`read_notebook`), each one's inputs before it.

    Returns
    -------
    tuple
        ``(the notebooks resolved, in :meth:`PipelineSpec.notebook_order`; the
        problems found)``.
    """
    index = {id(nb): j for j, nb in enumerate(spec.notebooks)}
    notebooks: list[PlannedNotebook] = []
    problems: list[str] = []
    for entry in spec.notebook_order():
        notebook, found = read_notebook(spec, index[id(entry)], entry)
        problems += found
        if notebook is not None:
            notebooks.append(notebook)
    return notebooks, problems


# ----------------------------------------------------------------------------- step 3: shared
def check_shared_parameters(
    spec: PipelineSpec,
    studies: list[PlannedStudy],
    notebooks: list[PlannedNotebook],
    *,
    runs: Path,
    fast: bool,
) -> list[str]:
    """Problems with the parameters that go to every notebook declaring them.

    The pipeline's ``parameters`` (and with ``fast`` its ``fast_parameters``) and
    each study entry's: none may be one the runner sets, and each must be
    declared by at least one of the (readable) notebooks.
    """
    all_declared = set().union(*(nb.declared for nb in notebooks)) if notebooks else set()
    shared = [("parameters", spec.parameters)]
    if fast:
        shared.append(("fast_parameters", spec.fast_parameters))
    shared += [(f"studies[{s.index}].parameters", s.entry.parameters) for s in studies]
    problems: list[str] = []
    for where, params in shared:
        for name in params:
            problems += _runner_owned(where, name, runs)
            if notebooks and name not in all_declared:
                problems.append(
                    f"{where}.{name}: no notebook of the pipeline declares a parameter {name!r}"
                    + did_you_mean(name, all_declared)
                )
    return problems


# ----------------------------------------------------------------------------- step 4: tasks
def segment_label(column: str, value: str, *, with_column: bool = False) -> str:
    """The parameter-set label of one segment: ``Small business`` -> ``small-business``.

    A value without letters (a numeric code such as ``1``), and every value when
    ``with_column`` (a study with several segment columns), is prefixed with its
    column's name: ``segment-1``, ``region-north``. The label names run folders
    and database rows, so it keeps to letters, digits, ``-`` and ``_``.
    """

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9_]+", "-", str(text).strip().lower()).strip("-_")

    part = slug(value)
    if with_column or not re.search(r"[a-z]", part):
        part = "-".join(p for p in (slug(column) or "segment", part) if p)
    return part or "segment"


def segment_values(study: PlannedStudy) -> dict[str, list[str]]:
    """Each segment column of a study and its values, in order.

    The values the study spec lists (``columns.segments``, with code labels
    applied); for a column listed as ``null``, the values in the data file, sorted.

    Raises
    ------
    CxError
        When the data must be read and cannot be (its validation error).
    """
    columns = dict(study.study.columns.segments)
    frame = None
    if any(values is None for values in columns.values()):
        from cxlib.data import load_responses

        frame = load_responses(study.study, study.data_file).frame
    out: dict[str, list[str]] = {}
    for column, values in columns.items():
        if values is None:
            values = sorted(frame[column].dropna().astype(str).unique())
        out[column] = [str(v) for v in values]
    return out


def expand_parameter_set(
    spec: PipelineSpec, study: PlannedStudy | None, label: str
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The parameter sets one of the spec's sets stands for on a study.

    A plain set stands for itself. A per-segment set (``segment: each``, see
    :attr:`PipelineSpec.per_segment_sets`) stands for one set per segment value
    of the study (labelled by :func:`segment_label`, its ``segment`` the value, or
    ``column=value`` with several segment columns), and for none without
    segments. Without a study (none could be loaded) it stands for itself with
    ``segment: ""``, so that its other parameters are still checked.

    Returns
    -------
    tuple
        ``([(label, parameters), ...]; the problems: segment values unreadable,
        or labels that clash with other parameter sets or with each other)``.
    """
    from cxlib.errors import CxError

    params = spec.parameter_sets[label]
    if label not in spec.per_segment_sets:
        return [(label, params)], []
    if study is None:
        return [(label, {**params, SEGMENT_PARAMETER: ""})], []
    try:
        columns = segment_values(study)
    except CxError as exc:
        return [], [
            f"parameter_sets.{label}: reading the segments of study {study.name!r} "
            f"from its data failed: {exc}"
        ]
    several = len(columns) > 1
    sets: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for column, values in columns.items():
        for value in values:
            run_label = segment_label(column, value, with_column=several)
            shown = f"{column}={value}"
            if run_label in spec.parameter_sets:
                problems.append(
                    f"parameter_sets.{label}: segment {shown!r} of study {study.name!r} would "
                    f"run as {run_label!r}, which is another parameter set's name; rename that set"
                )
            elif run_label in seen:
                problems.append(
                    f"parameter_sets.{label}: segments {seen[run_label]!r} and {shown!r} of "
                    f"study {study.name!r} both make the label {run_label!r}; give them "
                    "distinct names in the study spec (columns.segments)"
                )
            seen[run_label] = shown
            sets.append((run_label, {**params, SEGMENT_PARAMETER: shown if several else value}))
    return sets, problems


def parameter_layers(
    spec: PipelineSpec,
    study: PlannedStudy | None,
    notebook: PlannedNotebook,
    label: str,
    *,
    fast: bool,
    set_values: dict[str, Any] | None = None,
) -> list[tuple[str, dict[str, Any], bool]]:
    """Where a run's parameters come from, in order, later ones winning.

    ``label`` names the spec's parameter set; ``set_values`` replaces its
    values (a per-segment set's, expanded for one segment).

    Returns
    -------
    list of tuple
        ``(where, parameters, strict)``: a strict layer names only parameters
        its notebook declares (the notebook entry's, the parameter set's); the
        shared ones go to the notebooks that declare them.
    """
    j, nb = notebook.index, notebook.entry
    layers = [
        ("parameters", spec.parameters, False),
        (
            f"studies[{study.index if study else None}].parameters",
            study.entry.parameters if study else {},
            False,
        ),
        (f"notebooks[{j}].parameters", nb.parameters, True),
        (
            f"parameter_sets.{label}",
            spec.parameter_sets[label] if set_values is None else set_values,
            True,
        ),
    ]
    if fast:
        layers += [
            ("fast_parameters", spec.fast_parameters, False),
            (f"notebooks[{j}].fast_parameters", nb.fast_parameters, True),
        ]
    return layers


def layered_values(
    layers: list[tuple[str, dict[str, Any], bool]], notebook: PlannedNotebook
) -> tuple[dict[str, tuple[str, Any]], list[str]]:
    """Each parameter's value from :func:`parameter_layers`, the last layer setting it winning.

    Returns
    -------
    tuple
        ``(name -> (where, value) for the parameters the notebook declares; the
        problems: a strict layer naming an input or an undeclared parameter)``.
    """
    entry, name_of, declared = notebook.entry, notebook.path.name, notebook.declared
    values: dict[str, tuple[str, Any]] = {}
    problems: list[str] = []
    for where, params, strict in layers:
        for name, value in params.items():
            if name in entry.inputs:
                if strict:
                    problems.append(
                        f"{where}.{name}: the runner sets {name!r} of {name_of} "
                        f"(notebooks[{notebook.index}].inputs); remove it here"
                    )
                continue
            if name in declared:
                values[name] = (where, value)
            elif strict:
                problems.append(
                    f"{where}.{name}: {name_of} does not declare a parameter "
                    f"{name!r} (it declares: {', '.join(declared)})" + did_you_mean(name, declared)
                )
    return values, problems


def run_parameters(
    spec: PipelineSpec,
    values: dict[str, tuple[str, Any]],
    notebook: PlannedNotebook,
    *,
    runs: Path,
    study_name: str,
) -> tuple[dict[str, Any], str, list[str]]:
    """A run's parameters, checked against the notebook's declarations.

    Parameters
    ----------
    spec : PipelineSpec
        The pipeline (its ``alerts`` go to a notebook declaring ``alert_rules``).
    values : dict
        From :func:`layered_values`: name -> (where it was given, value).
    notebook : PlannedNotebook
        The notebook run.
    runs : Path
        The runs directory (``output_dir`` must lie inside the run's folder).
    study_name : str
        The study's name (for the run folder an ``output_dir`` is checked against).

    Returns
    -------
    tuple
        ``(the parameters, coerced to their declared types; the output
        subfolder; the problems: runner-set parameters given, wrong types, an
        output folder outside the run's)``.
    """
    output_subdir = ARTIFACTS
    final: dict[str, Any] = {}
    problems: list[str] = []
    for name, (where, value) in values.items():
        if name in RUNNER_PARAMETERS:
            problems += _runner_owned(where, name, runs)
            continue
        if name == ALERT_RULES_PARAMETER:
            problems.append(
                f"{where}.{name}: the runner sets {name!r} (from the pipeline's "
                "`alerts:`); declare alert rules there"
            )
            continue
        try:
            value = coerce_parameter(notebook.declared[name], value)
        except NotebookParameterError as exc:
            problems.append(f"{where}.{name}: {notebook.path.name} parameter {name!r} {exc}")
            continue
        if name == OUTPUT_PARAMETER:
            sub = _output_subdir(where, value, runs, study_name)
            if isinstance(sub, list):
                problems += sub
            else:
                output_subdir = sub
            continue
        final[name] = value
    if ALERT_RULES_PARAMETER in notebook.declared:
        final[ALERT_RULES_PARAMETER] = json.dumps(
            [rule.model_dump(mode="json") for rule in spec.alerts]
        )
    return final, output_subdir, problems


def make_task(
    spec: PipelineSpec,
    study: PlannedStudy,
    notebook: PlannedNotebook,
    label: str,
    parameters: dict[str, Any],
    output_subdir: str,
    *,
    runs: Path,
    fast: bool,
    version: str,
) -> RunTask:
    """The run of ``notebook`` with parameter set ``label`` on ``study``, and its key.

    The key covers the notebook, the parameters, the study spec, the data file
    and the side files (by hash), the code version (``version``), the output
    subfolder, the gates and ``fast``.
    """
    nb, nb_path = notebook.entry, notebook.path
    data_hash = study.data_hash or file_sha256(study.data_file)
    files = side_files(study.study, nb_path, parameters, base=spec.base_dir)
    gates = spec.gates.merged(nb.gates)
    if fast:
        gates = gates.merged(spec.fast_gates)
    key_parts = {
        "notebook": nb_path.stem,
        "notebook_hash": notebook_hash(nb_path),
        "label": label,
        "parameters": parameters,
        "study_hash": file_sha256(study.path),
        "data_hash": data_hash,
        "side_files": {name: f["hash"] for name, f in files.items()},
        "code_version": version,
        "output_subdir": output_subdir,
        "gates": gates.model_dump(),
        "fast": fast,
    }
    return RunTask(
        pipeline=spec.name,
        study=study.name,
        study_path=str(study.path),
        notebook=nb_path.stem,
        notebook_path=str(nb_path),
        label=label,
        parameters=parameters,
        data_path=str(study.data_file.resolve()),
        data_hash=data_hash,
        data_source=str((study.data_source or study.data_file).resolve()),
        side_files=files,
        key=run_key(**key_parts),
        key_parts=key_parts,
        gates=gates.model_dump(),
        runs_dir=str(runs),
        output_subdir=output_subdir,
        timeout_s=nb.timeout_s or spec.execution.timeout_s,
        start_timeout_s=spec.execution.start_timeout_s,
        run_timeout_s=spec.execution.run_timeout_s,
        kernel=spec.execution.kernel,
        export_html=spec.execution.export_html,
        fast=fast,
        runner_parameters=tuple(
            n for n in (*RUNNER_PARAMETERS, OUTPUT_PARAMETER) if n in notebook.declared
        ),
        inputs=tuple((name, "/".join(nb.input_for(name, label))) for name in nb.inputs),
        optional_inputs=tuple(nb.optional_inputs),
    )


def plan_tasks(
    spec: PipelineSpec,
    studies: list[PlannedStudy],
    notebooks: list[PlannedNotebook],
    *,
    runs: Path,
    fast: bool,
) -> tuple[list[RunTask], list[str]]:
    """One task per study x notebook x parameter set, each run's parameters checked.

    With no valid study the notebooks' parameters are still checked, so that
    every problem is reported at once; there are no tasks then.

    Returns
    -------
    tuple
        ``(the tasks: studies in order, then notebooks, then parameter sets; the
        problems found)``.
    """
    tasks: list[RunTask] = []
    problems: list[str] = []
    version = code_version()
    for study in studies or [None]:
        expanded: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for name in spec.parameter_sets:
            expanded[name], found = expand_parameter_set(spec, study, name)
            problems += found
        for notebook in notebooks:
            sets = [
                (name, label, values)
                for name in notebook.entry.parameter_sets or list(spec.parameter_sets)
                for label, values in expanded[name]
            ]
            for name, label, set_values in sets:
                layers = parameter_layers(
                    spec, study, notebook, name, fast=fast, set_values=set_values
                )
                values, found = layered_values(layers, notebook)
                problems += found
                parameters, output_subdir, found = run_parameters(
                    spec, values, notebook, runs=runs, study_name=study.name if study else "study"
                )
                problems += found
                if study is not None:
                    tasks.append(
                        make_task(
                            spec,
                            study,
                            notebook,
                            label,
                            parameters,
                            output_subdir,
                            runs=runs,
                            fast=fast,
                            version=version,
                        )
                    )
    return tasks, problems


def _input_parameter(
    where: str, notebook: str, name: str, declared: dict[str, DeclaredParameter]
) -> list[str]:
    """Problems with a parameter that receives another notebook's output directory."""
    if name == OUTPUT_PARAMETER or name in RUNNER_PARAMETERS:
        return [f"{where}: the runner sets {name!r} itself; name another parameter for this input"]
    if name not in declared:
        return [
            f"{where}: {notebook} does not declare a parameter {name!r} to receive the input's "
            f"output folder (it declares: {', '.join(declared)})"
            + did_you_mean(name, declared)
            + f'; add `{name}: str = ""  # output folder of ...` to its parameters cell'
        ]
    try:
        coerce_parameter(declared[name], "x")
    except NotebookParameterError:
        return [
            f"{where}: {notebook} declares {name!r} as `{declared[name].type_name}`; the runner "
            "passes the input's output folder as str"
        ]
    return []


def _runner_owned(where: str, name: str, runs: Path) -> list[str]:
    if name in RUNNER_PARAMETERS:
        what = {
            "study_path": "the study entry's `spec:`",
            "data_path": "the study entry's `data:`",
            "run_id": "the runner",
        }[name]
        return [f"{where}.{name}: the runner sets {name!r} (from {what}); remove it here"]
    return []


def _output_subdir(where: str, value: Any, runs: Path, study: str) -> str | list[str]:
    """A run's output folder, relative to its run folder; refuses paths outside the runs directory."""
    if value in (None, ""):
        return ARTIFACTS
    text = str(value)
    path = Path(text).expanduser()
    sample_run = runs / study / "RUN-ID"
    target = (path if path.is_absolute() else sample_run / path).resolve()
    try:
        relative = target.relative_to(sample_run.resolve())
    except ValueError:
        inside_runs = target.is_relative_to(runs)
        reason = (
            "outside the run's own folder"
            if inside_runs
            else f"outside the runs directory {str(runs)!r}"
        )
        return [
            f"{where}.{OUTPUT_PARAMETER}: {text!r} lies {reason}; each run writes only into "
            f"runs/<study>/<run-id>/ (give a relative folder such as 'artifacts', or leave it out)"
        ]
    if str(relative) in ("", "."):
        return [f"{where}.{OUTPUT_PARAMETER}: give a subfolder of the run folder, e.g. 'artifacts'"]
    return relative.as_posix()
