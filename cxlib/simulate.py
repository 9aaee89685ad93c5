"""Simulate survey responses from a study spec and known true parameters.

The simulator gives the sample study, the tests and the recovery benchmarks a
known truth. It draws latent constructs from a linear structural model (with
segment-specific paths and means, and wave trends), each item's latent response
as ``location + loading * construct + noise`` (unit variance), and cuts it into
the item's answer scale with thresholds. It then adds missing answers (at random
and in blocks, e.g. a channel the respondent did not use), straight-liners and,
on request, a personal-data column that the data layer must drop.

Everything is deterministic by seed; 1,000,000 respondents take a few seconds.

>>> from cxlib.study import load_study
>>> from cxlib.simulate import Truth, simulate_responses
>>> study = load_study("data/telecom/study.yaml")                  # doctest: +SKIP
>>> truth = Truth.from_yaml("data/telecom/truth.yaml")             # doctest: +SKIP
>>> frame = simulate_responses(study, truth, n=10_000, seed=1)     # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cxlib import config
from cxlib.errors import CxError, StudySpecError
from cxlib.study import Study

__all__ = ["Truth", "build_sample_data", "default_truth", "simulate_responses", "write_responses"]

_TERM = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(~~|~)\s*([A-Za-z_][\w.]*)\s*$")


def _split_term(term: str, op: str) -> tuple[str, str]:
    match = _TERM.match(term)
    if not match or match.group(2) != op:
        raise ValueError(f"{term!r}: expected 'A {op} B'")
    return match.group(1), match.group(3)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Loading(_Strict):
    """An item's loading on a latent variable (for items outside the constructs)."""

    latent: str
    loading: float = Field(gt=-1, lt=1)


class SegmentTruth(_Strict):
    """A segment's share of respondents, design weight, latent mean shifts and path changes."""

    share: float = Field(gt=0)
    weight: float = Field(default=1.0, gt=0)
    means: dict[str, float] = Field(default_factory=dict)
    paths: dict[str, float] = Field(default_factory=dict)


class MissingBlock(_Strict):
    """A block of items missing together (e.g. a channel the respondent did not use)."""

    items: list[str]
    rate: float = Field(ge=0, lt=1)
    label: str = ""


class Missingness(_Strict):
    """Missing answers: at random per answer, and in blocks per respondent."""

    rate: float = Field(default=0.0, ge=0, lt=1)
    blocks: list[MissingBlock] = Field(default_factory=list)


class Latent(_Strict):
    """Correlations between exogenous latents, and hidden latents outside the model."""

    correlations: dict[str, float] = Field(default_factory=dict)
    hidden: list[str] = Field(default_factory=list)


class Truth(_Strict):
    """True parameters to simulate a study from.

    Attributes
    ----------
    paths : dict
        Structural coefficients keyed ``"Outcome ~ Predictor"``.
    loadings : dict
        Standardized loading per item (on the item's construct), or a
        :class:`Loading` naming the latent for items outside the constructs.
    latent : Latent
        Correlations between exogenous latents (``"A ~~ B"``).
    locations : dict
        Mean latent response per item (``default`` for the rest).
    thresholds : dict
        Explicit thresholds per item (``n_points - 1`` increasing values); by default
        they are evenly spaced over +-1.5 (+-2 for scales of more than 7 points), so
        answers bunch in the middle at location 0, as Likert answers do.
    segments : dict
        Per segment column, per segment value: :class:`SegmentTruth`.
    waves : dict
        Per wave label, latent mean shifts of exogenous constructs.
    """

    study: str | None = None
    seed: int = config.DEFAULT_SEED
    n_respondents: int = Field(default=2000, gt=0)
    latent: Latent = Field(default_factory=Latent)
    paths: dict[str, float] = Field(default_factory=dict)
    loadings: dict[str, float | Loading] = Field(default_factory=dict)
    locations: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, list[float]] = Field(default_factory=dict)
    segments: dict[str, dict[str, SegmentTruth]] = Field(default_factory=dict)
    waves: dict[str, dict[str, float]] = Field(default_factory=dict)
    missing: Missingness = Field(default_factory=Missingness)
    straightliner_rate: float = Field(default=0.0, ge=0, lt=1)
    personal_data: bool = False

    @field_validator("paths")
    @classmethod
    def _path_terms(cls, paths: dict[str, float]) -> dict[str, float]:
        for term in paths:
            _split_term(term, "~")
        return paths

    @field_validator("thresholds")
    @classmethod
    def _increasing(cls, thresholds: dict[str, list[float]]) -> dict[str, list[float]]:
        for item, values in thresholds.items():
            if any(b <= a for a, b in zip(values, values[1:], strict=False)):
                raise ValueError(f"thresholds of {item!r} must increase, got {values}")
        return thresholds

    @classmethod
    def from_yaml(cls, path: str | Path) -> Truth:
        """Read true parameters from a YAML file, with errors that name the key."""
        path = Path(path)
        if not path.exists():
            raise StudySpecError(f"{path}: true-parameter file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            return cls.model_validate(raw)
        except yaml.YAMLError as exc:
            raise StudySpecError(f"{path}: not valid YAML: {exc}") from None
        except ValidationError as exc:
            problems = "\n".join(
                f"  - {'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise StudySpecError(f"{path}: the true parameters are not valid\n{problems}") from None

    # ------------------------------------------------------------------ derived
    def item_loading(self, study: Study, item: str) -> tuple[str, float]:
        """The latent an item loads on and its standardized loading."""
        value = self.loadings.get(item)
        if isinstance(value, Loading):
            return value.latent, value.loading
        latent = study.construct_of(item)
        if latent is None:
            raise StudySpecError(
                f"item {item!r} is outside the constructs; give its loading as "
                "{latent: NAME, loading: VALUE} in the true parameters"
            )
        return latent, 0.7 if value is None else float(value)

    def item_location(self, item: str) -> float:
        """Mean latent response of an item."""
        return float(self.locations.get(item, self.locations.get("default", 0.0)))

    def item_thresholds(self, study: Study, item: str) -> np.ndarray:
        """The thresholds that cut an item's latent response into its answer scale."""
        n_points = study.item(item).scale.n_points
        if item in self.thresholds:
            values = np.asarray(self.thresholds[item], dtype=float)
            if values.size != n_points - 1:
                raise StudySpecError(
                    f"item {item!r} has {n_points} answer options, so it needs "
                    f"{n_points - 1} thresholds; the true parameters give {values.size}"
                )
            return values
        spread = 1.5 if n_points <= 7 else 2.0
        return np.linspace(-spread, spread, n_points - 1)

    def structure(self, study: Study) -> _Structure:
        """Latents in causal order with their paths and residual variances."""
        return _Structure.build(study, self)

    def latent_covariance(self, study: Study) -> pd.DataFrame:
        """Model-implied covariance matrix of the latents in the reference segment and wave."""
        return self.structure(study).covariance()

    def parameter_table(self, study: Study) -> pd.DataFrame:
        """The true parameters as a lavaan-style table (``lhs, op, rhs, value``).

        Loadings and paths are on the standardized scale of the latent response;
        residual variances of endogenous latents make their variance 1 in the
        reference segment. Defined parameters (``:=``) of the study's model are
        evaluated from the labelled paths.
        """
        s = self.structure(study)
        rows = []
        for item in study.item_names:
            latent, lam = self.item_loading(study, item)
            rows.append((latent, "=~", item, lam))
        for (outcome, predictor), beta in s.paths.items():
            rows.append((outcome, "~", predictor, beta))
        for latent, psi in s.residual_variance.items():
            rows.append((latent, "~~", latent, psi))
        for i, a in enumerate(s.exogenous):
            for b in s.exogenous[i + 1 :]:
                rows.append((a, "~~", b, s.correlation(a, b)))
        defined = self.defined_values(study)
        for d in study.parsed_model.defined if study.model.strip() else []:
            rows.append((d.name, ":=", d.expression, defined[d.name]))
        return pd.DataFrame(rows, columns=["lhs", "op", "rhs", "value"])

    def defined_values(self, study: Study) -> dict[str, float]:
        """True values of the model's labelled paths and defined parameters."""
        if not study.model.strip():
            return {}
        parsed = study.parsed_model
        s = self.structure(study)
        values: dict[str, float] = {}
        for term in parsed.regressions:
            if term.label:
                values[term.label] = s.paths.get((term.lhs, term.rhs), 0.0)
        for d in parsed.defined:
            values[d.name] = float(
                eval(d.expression.replace("^", "**"), {"__builtins__": {}}, dict(values))
            )  # noqa: S307 - parsed arithmetic only
        return values


class _Structure:
    """The latent structure implied by a study's model and a truth.

    Attributes
    ----------
    order : list of str
        The latents, exogenous first, each after its predictors.
    exogenous : list of str
        The latents no path leads into.
    paths : dict
        ``(outcome, predictor) -> coefficient``.
    residual_variance : dict
        Per endogenous latent, the variance its predictors leave unexplained.
    exo_corr : numpy.ndarray
        Correlations of the exogenous latents.
    pair_covariance : dict
        ``(a, b) -> model-implied covariance`` of every pair of latents
        (reference segment); :meth:`covariance` as a table.
    """

    def __init__(self):
        self.order: list[str] = []
        self.exogenous: list[str] = []
        self.paths: dict[tuple[str, str], float] = {}
        self.residual_variance: dict[str, float] = {}
        self.exo_corr = np.eye(0)
        self.pair_covariance: dict[tuple[str, str], float] = {}

    def covariance(self) -> pd.DataFrame:
        """Model-implied covariance of all latents (reference segment)."""
        return pd.DataFrame(
            [[self.pair_covariance[(a, b)] for b in self.order] for a in self.order],
            index=self.order,
            columns=self.order,
        )

    def correlation(self, a: str, b: str) -> float:
        i, j = self.exogenous.index(a), self.exogenous.index(b)
        return float(self.exo_corr[i, j])

    def predictors(self, outcome: str) -> list[str]:
        return [p for (o, p) in self.paths if o == outcome]

    @classmethod
    def build(cls, study: Study, truth: Truth) -> _Structure:
        s = cls()
        latents = list(study.constructs) + [
            h for h in truth.latent.hidden if h not in study.constructs
        ]
        for term, beta in truth.paths.items():
            outcome, predictor = _split_term(term, "~")
            for name in (outcome, predictor):
                if name not in latents:
                    raise StudySpecError(f"path {term!r}: {name!r} is not a construct of the study")
            s.paths[(outcome, predictor)] = float(beta)
        endogenous = {o for (o, _) in s.paths}
        s.exogenous = [name for name in latents if name not in endogenous]
        s.order = list(s.exogenous)
        remaining = [name for name in latents if name in endogenous]
        while remaining:
            ready = [n for n in remaining if all(p in s.order for p in s.predictors(n))]
            if not ready:
                raise StudySpecError(
                    f"the paths between {', '.join(remaining)} form a loop; the simulator "
                    "needs a recursive (acyclic) model"
                )
            s.order += ready
            remaining = [n for n in remaining if n not in ready]
        k = len(s.exogenous)
        corr = np.eye(k)
        for term, r in truth.latent.correlations.items():
            a, b = _split_term(term, "~~")
            if a not in s.exogenous or b not in s.exogenous:
                raise StudySpecError(
                    f"correlation {term!r}: both sides must be exogenous latents "
                    f"({', '.join(s.exogenous)})"
                )
            i, j = s.exogenous.index(a), s.exogenous.index(b)
            corr[i, j] = corr[j, i] = r
        if np.linalg.eigvalsh(corr).min() <= 0:
            raise StudySpecError("the latent correlations are not positive definite")
        s.exo_corr = corr
        cov = {
            (a, b): corr[i, j] for i, a in enumerate(s.exogenous) for j, b in enumerate(s.exogenous)
        }
        for name in s.order[k:]:
            preds = s.predictors(name)
            betas = np.array([s.paths[(name, p)] for p in preds])
            sub = np.array([[cov[(p, q)] for q in preds] for p in preds])
            explained = float(betas @ sub @ betas)
            if explained >= 1:
                raise StudySpecError(
                    f"the paths into {name!r} explain {explained:.2f} > 1 of its variance; "
                    "make them smaller"
                )
            s.residual_variance[name] = 1.0 - explained
            for other in list({a for a, _ in cov}):
                c = float(sum(b * cov[(p, other)] for b, p in zip(betas, preds, strict=True)))
                cov[(name, other)] = cov[(other, name)] = c
            cov[(name, name)] = 1.0
        s.pair_covariance = cov
        return s


def default_truth(study: Study, *, loading: float = 0.75, path: float = 0.3) -> Truth:
    """Plain true parameters for any study: equal loadings and paths.

    Every regression in the study's model gets ``path``; every construct item gets
    ``loading``; items outside the constructs load on the first construct.
    """
    paths = {}
    if study.model.strip():
        for term in study.parsed_model.regressions:
            if term.lhs in study.constructs and term.rhs in study.constructs:
                paths[f"{term.lhs} ~ {term.rhs}"] = path
    first = next(iter(study.constructs))
    loadings: dict[str, Any] = {
        name: loading for name in study.item_names if study.construct_of(name)
    }
    for name in study.items:
        loadings[name] = Loading(latent=first, loading=loading)
    segments = {
        col: {value: SegmentTruth(share=1.0) for value in values}
        for col, values in study.columns.segments.items()
        if values
    }
    return Truth(study=study.name, paths=paths, loadings=loadings, segments=segments)


def _segment_assignment(truth: Truth, study: Study, n: int, rng: np.random.Generator):
    """Segment values per respondent (first segment column drives differences)."""
    columns: dict[str, np.ndarray] = {}
    driver: tuple[str, list[str], np.ndarray] | None = None
    for col, declared in study.columns.segments.items():
        spec = truth.segments.get(col)
        if spec:
            values = list(spec)
            shares = np.array([spec[v].share for v in values], dtype=float)
        elif declared:
            values, shares = list(declared), np.ones(len(declared))
        else:
            values, shares = [config.EVERYONE], np.ones(1)
        codes = rng.choice(len(values), size=n, p=shares / shares.sum())
        columns[col] = np.asarray(values, dtype=object)[codes]
        if driver is None and spec:
            driver = (col, values, codes)
    return columns, driver


def simulate_responses(
    study: Study,
    truth: Truth | None = None,
    *,
    n: int | None = None,
    seed: int | None = None,
    discretize: bool = True,
) -> pd.DataFrame:
    """Simulate a survey export for ``study`` from known true parameters.

    Parameters
    ----------
    study : Study
        The study spec (items, scales, segments, model).
    truth : Truth, optional
        True parameters; :func:`default_truth` when not given.
    n : int, optional
        Number of respondents (default ``truth.n_respondents``).
    seed : int, optional
        Random seed (default ``truth.seed``). The same seed gives the same data.
    discretize : bool
        True (default) cuts latent responses into the answer scales; False returns
        the continuous latent responses as they are (not reverse-coded, no
        straight-liners), for checks of the continuous likelihood.

    Returns
    -------
    pandas.DataFrame
        One row per respondent, laid out like the raw export the study spec
        describes: reverse-coded items are reversed, missing answers are missing.
    """
    truth = truth or default_truth(study)
    n = truth.n_respondents if n is None else int(n)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(truth.seed if seed is None else seed)
    s = truth.structure(study)
    cols = study.columns

    seg_columns, driver = _segment_assignment(truth, study, n, rng)
    wave_labels = list(truth.waves) or list(study.source.wave_order)
    wave_codes = rng.integers(0, len(wave_labels), size=n) if wave_labels else np.zeros(n, int)
    if wave_labels:
        wave_codes = np.sort(wave_codes)

    # latent means per respondent: segment shifts + wave shifts (exogenous only)
    k = len(s.exogenous)
    means = np.zeros((n, k))
    for j, name in enumerate(s.exogenous):
        if driver:
            col, values, codes = driver
            shift = np.array([truth.segments[col][v].means.get(name, 0.0) for v in values])
            means[:, j] += shift[codes]
        if wave_labels:
            wshift = np.array([truth.waves.get(w, {}).get(name, 0.0) for w in wave_labels])
            means[:, j] += wshift[wave_codes]
    chol = np.linalg.cholesky(s.exo_corr)
    exo = rng.standard_normal((n, k)) @ chol.T + means
    latent: dict[str, np.ndarray] = {name: exo[:, j] for j, name in enumerate(s.exogenous)}
    for name in s.order[k:]:
        value = np.sqrt(s.residual_variance[name]) * rng.standard_normal(n)
        for pred in s.predictors(name):
            beta = np.full(n, s.paths[(name, pred)])
            if driver:
                col, values, codes = driver
                term = f"{name} ~ {pred}"
                delta = np.array(
                    [_segment_path_delta(truth.segments[col][v].paths, term) for v in values]
                )
                beta = beta + delta[codes]
            value += beta * latent[pred]
        latent[name] = value

    items: dict[str, np.ndarray] = {}
    for name in study.item_names:
        spec = study.item(name)
        lname, lam = truth.item_loading(study, name)
        if lname not in latent:
            raise StudySpecError(
                f"item {name!r} loads on {lname!r}, which is not a latent variable"
            )
        ystar = (
            truth.item_location(name)
            + lam * latent[lname]
            + np.sqrt(1 - lam**2) * rng.standard_normal(n)
        )
        if not discretize:
            items[name] = ystar
            continue
        answer = spec.scale.min + np.searchsorted(truth.item_thresholds(study, name), ystar)
        if spec.reverse:
            answer = spec.scale.min + spec.scale.max - answer
        items[name] = answer.astype(np.float64)

    if discretize and truth.straightliner_rate > 0:
        _add_straightliners(study, items, truth.straightliner_rate, rng, n)
    _add_missing(study, items, truth.missing, rng, n)

    ids = _respondent_ids(n)
    frame = pd.DataFrame({cols.respondent_id: ids} if cols.respondent_id else {}, index=range(n))
    for col, values in seg_columns.items():
        frame[col] = pd.Categorical(
            values,
            categories=list(
                dict.fromkeys(
                    (truth.segments.get(col) or {}).keys()
                    or (study.columns.segments[col] or [config.EVERYONE])
                )
            ),
        )
    if cols.wave and wave_labels:
        frame[cols.wave] = pd.Categorical.from_codes(wave_codes, categories=wave_labels)
    if cols.date and wave_labels:
        frame[cols.date] = _interview_dates(wave_labels, wave_codes, rng)
    if cols.weight:
        design = np.ones(n)
        if driver:
            col, values, codes = driver
            design = np.array([truth.segments[col][v].weight for v in values])[codes]
        w = design * rng.lognormal(0.0, 0.25, size=n)
        frame[cols.weight] = np.round(w / w.mean(), 4)
    for name, values in items.items():
        if discretize:
            mask = np.isnan(values)
            codes = np.where(mask, 0, values).astype(np.int8)
            frame[name] = pd.arrays.IntegerArray(codes, mask)
        else:
            frame[name] = values
    if truth.personal_data:
        for col in cols.personal_data or ["email"]:
            frame[col] = [f"customer.{rid.lower()}@example.com" for rid in ids]
    return frame


def _segment_path_delta(paths: dict[str, float], term: str) -> float:
    for key, value in paths.items():
        if _split_term(key, "~") == _split_term(term, "~"):
            return value
    return 0.0


def _respondent_ids(n: int) -> np.ndarray:
    width = max(6, len(str(n)))
    return np.array([f"R{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def _interview_dates(wave_labels: list[str], codes: np.ndarray, rng: np.random.Generator):
    starts = []
    for i, label in enumerate(wave_labels):
        match = re.match(r"^(\d{4})-?Q([1-4])$", str(label))
        if match:
            year, quarter = int(match.group(1)), int(match.group(2))
            starts.append(np.datetime64(f"{year}-{3 * quarter - 2:02d}-01"))
        else:
            starts.append(np.datetime64("2026-01-01") + np.timedelta64(91 * i, "D"))
    start = np.array(starts, dtype="datetime64[D]")[codes]
    return pd.to_datetime(start + rng.integers(0, 80, size=codes.size).astype("timedelta64[D]"))


def _add_straightliners(study: Study, items: dict, rate: float, rng, n: int) -> None:
    who = rng.random(n) < rate
    if not who.any():
        return
    by_scale: dict[tuple[int, int], list[str]] = {}
    for name in study.item_names:
        scale = study.item(name).scale
        by_scale.setdefault((scale.min, scale.max), []).append(name)
    for (lo, hi), names in by_scale.items():
        if len(names) < config.STRAIGHTLINE_MIN_ITEMS:
            continue
        value = rng.integers(lo, hi + 1, size=int(who.sum())).astype(float)
        for name in names:
            items[name][who] = value


def _add_missing(study: Study, items: dict, missing: Missingness, rng, n: int) -> None:
    for block in missing.blocks:
        names = [
            name
            for name in study.item_names
            if any(fnmatch.fnmatchcase(name, p) for p in block.items)
        ]
        if not names:
            raise StudySpecError(
                f"missing block {block.label or block.items}: matches no item of the study"
            )
        skip = rng.random(n) < block.rate
        for name in names:
            items[name] = np.where(skip, np.nan, items[name])
    if missing.rate > 0:
        for name in study.item_names:
            items[name] = np.where(rng.random(n) < missing.rate, np.nan, items[name])


def write_responses(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write simulated responses in the format the file suffix names.

    Supports ``.parquet``, ``.csv``, ``.xlsx`` and ``.sav``. The file is written
    to a temporary name first and moved into place, so a crash never leaves a
    half-written file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    elif suffix == ".csv":
        frame.to_csv(tmp, index=False)
    elif suffix == ".xlsx":
        frame.to_excel(tmp, index=False, engine="openpyxl")
    elif suffix == ".sav":
        import pyreadstat

        out = frame.copy()
        for col in out.columns:
            if isinstance(out[col].dtype, pd.CategoricalDtype):
                out[col] = out[col].astype(str)
            elif str(out[col].dtype) == "Int8":
                out[col] = out[col].astype("float64")
        pyreadstat.write_sav(out, str(tmp))
    else:
        raise CxError(f"{path}: unknown format {suffix!r}; use .parquet, .csv, .xlsx or .sav")
    tmp.replace(path)
    return path


#: The sample study's files shipped inside cxlib (package data): spec, truth, side tables.
SAMPLE_FILES = ("study.yaml", "truth.yaml", "touchpoint_costs.csv", "internal_assessment.csv")
#: Where ``cx sample`` builds the sample study, relative to the working directory.
SAMPLE_FOLDER = Path("data") / "telecom"


def sample_study_files() -> Path:
    """The folder of the sample study's files shipped with cxlib (its package data)."""
    from importlib.resources import files

    return Path(str(files("cxlib") / "sample_study"))


def build_sample_data(
    *, force: bool = False, folder: str | Path | None = None
) -> tuple[Path, bool]:
    """Build the sample study in ``folder``: its spec and truth, and responses simulated from them.

    The spec, the truth and the side tables are copied from cxlib's package data
    (:func:`sample_study_files`) where ``folder`` lacks them (files there are kept:
    edit them freely). The responses are rebuilt when missing, when the study spec,
    the truth or cxlib's version changed since they were written (a stamp file
    beside them records that), or when ``force`` is set. Nothing is written inside
    the installed package, so a non-editable install or a Dask worker can build it.

    Parameters
    ----------
    force : bool
        Rebuild the responses even when they are up to date.
    folder : str or Path, optional
        Where the study goes; default ``./data/telecom`` of the working directory
        (in a checkout's root: the committed sample study).

    Returns
    -------
    tuple
        ``(path of the responses file, whether it was rebuilt)``.
    """
    import hashlib
    import shutil

    from cxlib import __version__
    from cxlib.study import load_study

    folder = Path(folder) if folder is not None else Path.cwd() / SAMPLE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    shipped = sample_study_files()
    for name in SAMPLE_FILES:
        if not (folder / name).exists():
            shutil.copyfile(shipped / name, folder / name)
    spec, truth = folder / "study.yaml", folder / "truth.yaml"
    study = load_study(spec)
    out = study.data_path
    stamp = out.with_name(f".{out.name}.source")
    digest = hashlib.sha256(
        spec.read_bytes() + truth.read_bytes() + __version__.encode()
    ).hexdigest()
    if out.exists() and not force and stamp.exists() and stamp.read_text().strip() == digest:
        return out, False
    frame = simulate_responses(study, Truth.from_yaml(truth))
    write_responses(frame, out)
    stamp.write_text(digest + "\n")
    return out, True
