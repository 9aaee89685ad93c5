"""Pipeline specs: which studies, notebooks and parameter sets to run, when, and with which gates.

A pipeline spec is one YAML file in ``pipelines/`` (see ``pipelines/demo.yaml``).
Paths in it are relative to the file's own folder. It is validated twice: its
shape here (pydantic, on load), and what it names — studies, data, notebooks and
their declared parameters — by :func:`cxlib.pipeline.plan.plan_runs`, before any
run starts.

>>> from cxlib.pipeline import load_pipeline
>>> spec = load_pipeline("pipelines/demo.yaml")            # doctest: +SKIP
>>> [n.path for n in spec.notebooks]                       # doctest: +SKIP
['../notebooks/01-data-quality.ipynb']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cxlib import config
from cxlib.errors import did_you_mean
from cxlib.pipeline.errors import PipelineSpecError
from cxlib.study import MAX_SPEC_BYTES, AlertRule, YamlLimitError, load_yaml

__all__ = [
    "EACH",
    "SEGMENT_PARAMETER",
    "AlertRule",
    "Execution",
    "Gates",
    "NotebookEntry",
    "PipelineSpec",
    "Schedule",
    "StudyEntry",
    "YamlScalar",
    "load_pipeline",
    "pipeline_from_dict",
]

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: A parameter set's ``segment`` value meaning "one run per segment of the study".
EACH = "each"
#: The parameter a per-segment parameter set varies.
SEGMENT_PARAMETER = "segment"
_NAME_HELP = "use letters, digits, '-' and '_' (it names run folders and database rows)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Gates(_Strict):
    """Quality gates a run must pass to be published.

    They read the ``diagnostics.json`` that a model notebook writes into its
    output directory (:meth:`cxlib.pipeline.artifacts.Artifacts.diagnostics`). A
    notebook that fits no model writes none and has no gate to fail. ``null``
    switches a gate off.
    """

    max_r_hat: float | None = Field(default=config.MAX_R_HAT, gt=1.0)
    min_ess_bulk: float | None = Field(default=config.MIN_ESS_BULK, ge=0)
    max_divergences: int | None = Field(default=config.MAX_DIVERGENCES, ge=0)

    def merged(self, override: Gates | None) -> Gates:
        """These gates with the keys ``override`` sets replaced."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class Schedule(_Strict):
    """When ``cx schedule`` refreshes the pipeline's studies."""

    cron: str | None = None
    timezone: str = "UTC"
    watch_data: bool = True
    poll_s: float = Field(default=config.SCHEDULE_POLL_S, gt=0)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, cron: str | None) -> str | None:
        if cron is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise ValueError(
                f"{cron!r} is not a cron expression (five fields: minute hour day-of-month "
                "month day-of-week, e.g. '0 6 * * 1' for Mondays at 06:00)"
            )
        return cron

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, tz: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {tz!r} (use an IANA name, e.g. Europe/Berlin)"
            ) from None
        return tz


class Execution(_Strict):
    """How notebooks are executed, and how long they may take.

    ``timeout_s`` bounds one cell (papermill's execution timeout; a notebook's own
    ``timeout_s`` overrides it); ``run_timeout_s`` one notebook run, all its cells
    together; ``pipeline_timeout_s`` the whole ``cx run`` (every run of every
    study). A run that reaches a limit fails with the limit named; runs that have
    not started when the pipeline's limit is reached are not started (``blocked``).
    """

    timeout_s: float = Field(default=config.EXECUTION_TIMEOUT_S, gt=0)
    start_timeout_s: float = Field(default=config.KERNEL_START_TIMEOUT_S, gt=0)
    run_timeout_s: float | None = Field(default=None, gt=0)
    pipeline_timeout_s: float | None = Field(default=None, gt=0)
    kernel: str | None = None
    export_html: bool = True


class StudyEntry(_Strict):
    """A study the pipeline refreshes.

    ``spec`` is the study spec (YAML); ``data`` a file or a glob (default: the
    spec's ``source.file``). With a glob, the last match in name order is the
    current export (name exports so that they sort by date or wave); a new or
    changed file triggers a refresh.
    """

    spec: str
    data: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, raw: Any) -> Any:
        return {"spec": raw} if isinstance(raw, str) else raw


class NotebookEntry(_Strict):
    """A notebook the pipeline runs, once per parameter set it uses.

    ``inputs`` declares what the notebook needs from other notebooks of the same
    refresh: parameter -> notebook name (``02-experience-brand-loyalty``: its run
    with the same parameter set) or ``notebook/set`` (its run with that set). The
    runner runs those first and passes each one's output directory (an absolute
    path) in the parameter; when one fails, the dependent run is ``blocked``.
    ``optional_inputs`` lists inputs the notebook can do without: when such an input
    fails or is blocked the dependent still runs, with the parameter left at its
    default; when it is gated (finished, but failed a quality gate) the dependent
    gets its output directory, whose diagnostics say why (e.g. the overview reports
    a model that failed its gates instead of disappearing with it).
    """

    path: str
    parameter_sets: list[str] | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    optional_inputs: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    fast_parameters: dict[str, Any] = Field(default_factory=dict)
    gates: Gates | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, raw: Any) -> Any:
        return {"path": raw} if isinstance(raw, str) else raw

    @property
    def stem(self) -> str:
        """The notebook's name without folder and suffix (``01-data-quality``)."""
        return Path(self.path).stem

    def input_for(self, parameter: str, label: str) -> tuple[str, str]:
        """The (notebook, parameter set) whose output ``parameter`` receives in run ``label``."""
        notebook, _, fixed = self.inputs[parameter].partition("/")
        return notebook, fixed or label


class PipelineSpec(_Strict):
    """A validated pipeline spec.

    Build one with :func:`load_pipeline` (from YAML) or :func:`pipeline_from_dict`.
    """

    name: str
    description: str = ""
    studies: list[StudyEntry] = Field(min_length=1)
    notebooks: list[NotebookEntry] = Field(min_length=1)
    parameter_sets: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"default": {}})
    parameters: dict[str, Any] = Field(default_factory=dict)
    fast_parameters: dict[str, Any] = Field(default_factory=dict)
    gates: Gates = Field(default_factory=Gates)
    fast_gates: Gates | None = None
    schedule: Schedule | None = None
    alerts: list[AlertRule] = Field(default_factory=list)
    execution: Execution = Field(default_factory=Execution)
    runs_dir: str | None = None
    results_db: str | None = None
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name_is_label(cls, name: str) -> str:
        if not _LABEL.match(name):
            raise ValueError(f"{name!r}: {_NAME_HELP}")
        return name

    @field_validator("parameter_sets")
    @classmethod
    def _labels(cls, sets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not sets:
            raise ValueError(
                "give at least one parameter set (an empty one, `default: {}`, will do)"
            )
        for label, params in sets.items():
            if not _LABEL.match(str(label)):
                raise ValueError(f"parameter set {label!r}: {_NAME_HELP}")
            for name, value in params.items():
                if _is_each(value) and name != SEGMENT_PARAMETER:
                    raise ValueError(
                        f"parameter set {label!r}: {name}: {EACH!r} expands only "
                        f"`{SEGMENT_PARAMETER}: {EACH}` (one run per segment of the study)"
                    )
        return sets

    @property
    def per_segment_sets(self) -> list[str]:
        """The parameter sets given as ``segment: each``: one run per segment of each study.

        Such a set expands, study by study, into one parameter set per value of
        the study's segment columns (:func:`cxlib.pipeline.plan.expand_parameter_set`),
        and into none for a study without segments.
        """
        return [
            label
            for label, params in self.parameter_sets.items()
            if _is_each(params.get(SEGMENT_PARAMETER))
        ]

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        for i, nb in enumerate(self.notebooks):
            for label in nb.parameter_sets or ():
                if label not in self.parameter_sets:
                    raise ValueError(
                        f"notebooks[{i}].parameter_sets names {label!r}, which is not in "
                        f"parameter_sets ({', '.join(self.parameter_sets)})"
                        + did_you_mean(label, self.parameter_sets)
                    )
        stems = [nb.stem for nb in self.notebooks]
        dupes = sorted({s for s in stems if stems.count(s) > 1})
        if dupes:
            raise ValueError(f"notebook {dupes[0]!r} is listed twice; list each notebook once")
        self._check_inputs()
        names = [a.name for a in self.alerts]
        dupes = sorted({a for a in names if names.count(a) > 1})
        if dupes:
            raise ValueError(f"alert rule {dupes[0]!r} is declared twice")
        return self

    def _labels_of(self, nb: NotebookEntry) -> list[str]:
        return list(nb.parameter_sets or self.parameter_sets)

    def _check_inputs(self) -> None:
        """Inputs name listed notebooks and parameter sets they run, without cycles."""
        by_stem = {nb.stem: nb for nb in self.notebooks}
        for i, nb in enumerate(self.notebooks):
            for name in nb.optional_inputs:
                if name not in nb.inputs:
                    raise ValueError(
                        f"notebooks[{i}].optional_inputs: {name!r} is not one of its inputs "
                        f"({', '.join(nb.inputs) or 'it has none'})"
                        + did_you_mean(name, list(nb.inputs))
                    )
            for param, ref in nb.inputs.items():
                where = f"notebooks[{i}].inputs.{param}"
                notebook, slash, fixed = str(ref).partition("/")
                if notebook == nb.stem:
                    raise ValueError(f"{where}: {nb.stem} cannot take its own output as an input")
                if notebook not in by_stem:
                    raise ValueError(
                        f"{where}: {ref!r} names no notebook of the pipeline (they are: "
                        f"{', '.join(by_stem)})" + did_you_mean(notebook, by_stem)
                    )
                runs = self._labels_of(by_stem[notebook])
                if slash:
                    if fixed in self.per_segment_sets:
                        raise ValueError(
                            f"{where}: {ref!r} names the per-segment set {fixed!r}, which runs "
                            "once per segment; name a set that runs once (e.g. "
                            f"'{notebook}/all'), or give both notebooks parameter set {fixed!r}"
                        )
                    if fixed not in runs:
                        raise ValueError(
                            f"{where}: {notebook} runs no parameter set {fixed!r} (it runs: "
                            f"{', '.join(runs)})" + did_you_mean(fixed, runs)
                        )
                    continue
                missing = [label for label in self._labels_of(nb) if label not in runs]
                if missing:
                    raise ValueError(
                        f"{where}: {nb.stem} runs parameter set(s) {', '.join(map(repr, missing))} "
                        f"that {notebook} does not (it runs: {', '.join(runs)}); give both the "
                        f"same parameter_sets, or name one run as '{notebook}/<set>'"
                    )
        self.notebook_order()  # raises on a cycle

    def notebook_order(self) -> list[NotebookEntry]:
        """The notebooks with each one's inputs before it (otherwise in spec order).

        Raises
        ------
        ValueError
            When inputs form a cycle, naming it.
        """
        by_stem = {nb.stem: nb for nb in self.notebooks}
        order: list[NotebookEntry] = []
        state: dict[str, str] = {}

        def visit(stem: str, path: list[str]) -> None:
            if state.get(stem) == "done":
                return
            if state.get(stem) == "visiting":
                cycle = path[path.index(stem) :] + [stem]
                raise ValueError(
                    "notebook inputs form a cycle: "
                    + " -> ".join(cycle)
                    + "; a notebook can only take outputs of notebooks that do not need its own"
                )
            state[stem] = "visiting"
            nb = by_stem[stem]
            for ref in nb.inputs.values():
                dep = str(ref).partition("/")[0]
                if dep in by_stem:
                    visit(dep, [*path, stem])
            state[stem] = "done"
            order.append(nb)

        for nb in self.notebooks:
            visit(nb.stem, [])
        return order

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the spec are resolved against."""
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def source(self) -> str:
        """How error messages name this spec: its file, or 'pipeline spec'."""
        return str(self.path) if self.path is not None else "pipeline spec"

    def resolve(self, path: str | Path) -> Path:
        """A path of the spec, made absolute against :attr:`base_dir`."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def runs_path(self) -> Path:
        """The runs directory: the spec's ``runs_dir``, else ``config.RUNS_DIR``."""
        return self.resolve(self.runs_dir) if self.runs_dir else config.RUNS_DIR.resolve()

    def results_db_path(self, runs_dir: str | Path | None = None) -> Path:
        """The results store's file.

        The spec's ``results_db``; else ``results.duckdb`` in the runs directory
        (``runs_dir``, else the spec's); else ``config.RESULTS_DB``.
        """
        if self.results_db:
            return self.resolve(self.results_db)
        if runs_dir is not None:
            return Path(runs_dir).resolve() / "results.duckdb"
        if self.runs_dir:
            return self.runs_path / "results.duckdb"
        return config.RESULTS_DB.resolve()

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (YAML scalars as they were written)."""
        return _plain(self.model_dump(mode="python", exclude={"path"}))


def _is_each(value: Any) -> bool:
    """Whether a parameter set's value is the per-segment marker ``each`` (unquoted or not)."""
    if isinstance(value, YamlScalar):
        return False
    return isinstance(value, str) and value.strip() == EACH


# ---------------------------------------------------------------------- YAML
@dataclass(frozen=True)
class YamlScalar:
    """An unquoted YAML scalar that YAML read as a number, boolean, null or date.

    Parameters keep the text as written, so that a notebook parameter declared
    ``str`` receives ``"01"`` for ``wave: 01`` rather than the integer 1 that YAML
    makes of it. Other parameters receive ``value``.
    """

    value: Any
    text: str


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys and keeps the text of plain scalars."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, YamlScalar):
            key = key.text
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first given at line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    mapping = loader.construct_mapping(node, deep=deep)
    return {(k.text if isinstance(k, YamlScalar) else k): v for k, v in mapping.items()}


def _keep_text(tag: str):
    base = yaml.SafeLoader.yaml_constructors[tag]

    def construct(loader: _Loader, node: yaml.ScalarNode):
        value = base(loader, node)
        return YamlScalar(value, node.value) if node.style is None else value

    return construct


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
for _tag in ("bool", "int", "float", "null", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _keep_text(f"tag:yaml.org,2002:{_tag}"))

#: Keys whose values are notebook parameters (where YamlScalar is kept).
_PARAMETER_KEYS = {"parameters", "fast_parameters"}


def _plain(value: Any) -> Any:
    """Unwrap every YamlScalar in ``value`` (to its YAML value)."""
    if isinstance(value, YamlScalar):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _unwrap_spec(raw: Any) -> Any:
    """Unwrap every YamlScalar outside the parameter mappings of a raw spec."""
    if isinstance(raw, YamlScalar):
        return raw.value
    if isinstance(raw, list):
        return [_unwrap_spec(v) for v in raw]
    if not isinstance(raw, dict):
        return raw
    out = {}
    for key, value in raw.items():
        if key in _PARAMETER_KEYS and isinstance(value, dict):
            out[key] = {k: _unwrap_nested(v) for k, v in value.items()}
        elif key == "parameter_sets" and isinstance(value, dict):
            out[key] = {
                label: (
                    {k: _unwrap_nested(v) for k, v in params.items()}
                    if isinstance(params, dict)
                    else _unwrap_spec(params)
                )
                for label, params in value.items()
            }
        else:
            out[key] = _unwrap_spec(value)
    return out


def _unwrap_nested(value: Any) -> Any:
    """A parameter value: keep a top-level YamlScalar; unwrap inside lists and dicts."""
    if isinstance(value, YamlScalar):
        return value
    return _plain(value)


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_MODELS: dict[str, type[BaseModel]] = {
    "studies": StudyEntry,
    "notebooks": NotebookEntry,
    "gates": Gates,
    "schedule": Schedule,
    "alerts": AlertRule,
    "execution": Execution,
}


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] = PipelineSpec
    for part in loc:
        if isinstance(part, int):
            continue
        target = _MODELS.get(str(part))
        if target is None or str(part) not in model.model_fields:
            return []
        model = target
    return [f for f in model.model_fields if not (model is PipelineSpec and f == "path")]


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            allowed = _allowed_keys(loc[:-1])
            msg = f"unknown key {key!r}"
            if allowed:
                msg += f" (allowed here: {', '.join(allowed)})" + did_you_mean(key, allowed)
        elif err["type"] == "missing":
            msg = "this key is required"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{_key_path(loc)}: {msg}")
    return problems


def pipeline_from_dict(
    raw: dict[str, Any], *, path: str | Path | None = None, name: str | None = None
) -> PipelineSpec:
    """Validate a pipeline spec given as a dictionary.

    Parameters
    ----------
    raw : dict
        The spec, as the YAML file would hold it.
    path : str or Path, optional
        The file it came from; relative paths in the spec resolve against its
        folder (default: the working directory).
    name : str, optional
        The pipeline's name when ``raw`` has none (default: the file's stem).

    Returns
    -------
    PipelineSpec

    Raises
    ------
    PipelineSpecError
        Listing every problem with the key at fault.
    """
    source = str(path) if path is not None else "pipeline spec"
    if not isinstance(raw, dict):
        raise PipelineSpecError(source, [f"expected a mapping of keys, got {type(raw).__name__}"])
    raw = _unwrap_spec(raw)
    if "name" not in raw:
        raw["name"] = name or (Path(path).stem if path is not None else "pipeline")
    try:
        return PipelineSpec.model_validate(
            {**raw, "path": Path(path).resolve() if path is not None else None}
        )
    except ValidationError as exc:
        raise PipelineSpecError(source, _format_errors(exc)) from None


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Read and validate a pipeline spec (YAML).

    Parameters
    ----------
    path : str or Path
        The pipeline file, e.g. ``pipelines/demo.yaml``.

    Returns
    -------
    PipelineSpec

    Raises
    ------
    PipelineSpecError
        When the file is missing, is not YAML, or has unknown, missing or
        invalid keys — naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        near = ""
        if path.parent.is_dir():
            near = did_you_mean(path.name, [p.name for p in path.parent.glob("*.y*ml")])
        raise PipelineSpecError(str(path), [f"no such file{near}"])
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise PipelineSpecError(
            str(path), [f"the file has {size:,} bytes; a pipeline spec has at most {MAX_SPEC_BYTES:,}"]
        )
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"), loader=_Loader)
    except YamlLimitError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PipelineSpecError(str(path), [f"{where}refused: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PipelineSpecError(str(path), [f"{where}not valid YAML: {problem}"]) from None
    except UnicodeDecodeError:
        raise PipelineSpecError(str(path), ["not UTF-8 text"]) from None
    return pipeline_from_dict(raw if raw is not None else {}, path=path)
