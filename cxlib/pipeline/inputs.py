"""What a research notebook starts from: the study, its validated data, a segment and wave filter.

Every notebook's parameters cell names the study spec, the data file, and
optionally one segment and one wave; :func:`load_inputs` turns those strings into
a :class:`~cxlib.study.Study` and the matching :class:`~cxlib.data.SurveyData`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cxlib import config
from cxlib.errors import CxError

__all__ = [
    "MissingInputError",
    "SubsetError",
    "input_folder",
    "load_inputs",
    "sample_study_path",
    "select_respondents",
]


class SubsetError(CxError):
    """A segment or wave filter that matches no value in the data."""


def load_inputs(
    study_path: str | Path = "", data_path: str | Path = "", segment: str = "", wave: str = ""
):
    """Load a study and its validated responses, keeping one segment and/or wave.

    Parameters
    ----------
    study_path : str or Path
        The study spec; ``""`` is the sample study (:func:`sample_study_path`).
    data_path : str or Path
        The responses; ``""`` is the spec's ``source.file``.
    segment : str
        Keep only this segment (a value of a segment column, or
        ``column=value``); ``""`` keeps all.
    wave : str
        Keep only this wave; ``""`` keeps all.

    Returns
    -------
    (Study, SurveyData)
    """
    from cxlib.data import load_responses
    from cxlib.study import load_study

    study = load_study(study_path or sample_study_path())
    data = load_responses(study, data_path or None)
    return study, select_respondents(data, segment=segment, wave=wave)


def sample_study_path() -> Path:
    """The sample study a notebook run by hand without ``study_path`` reads.

    ``data/telecom/study.yaml`` of the working directory, or of its parent (a
    notebook in ``notebooks/`` runs there), else the checkout's
    (``config.SAMPLE_STUDY``) — never a file inside an installed package.

    Raises
    ------
    CxError
        When there is none, saying to build it with ``cx sample``.
    """
    from cxlib.simulate import SAMPLE_FOLDER

    here = Path.cwd()
    candidates = [here / SAMPLE_FOLDER / "study.yaml", here.parent / SAMPLE_FOLDER / "study.yaml"]
    for path in [*candidates, config.SAMPLE_STUDY]:
        if path.is_file():
            return path
    raise CxError(
        f"no study_path given and no sample study in {here / SAMPLE_FOLDER}: give the study "
        "spec as study_path, or build the sample study here with `cx sample`"
    )


def select_respondents(data, *, segment: str = "", wave: str = ""):
    """The respondents of one segment and/or wave (the same SurveyData, fewer rows).

    Raises
    ------
    SubsetError
        When the segment or wave does not occur, listing those that do.
    """
    study, frame = data.study, data.frame
    mask = None
    if segment:
        column, value = _segment_column(data, segment)
        mask = frame[column].astype(str) == value
    if wave:
        column = study.columns.wave
        if not column:
            raise SubsetError(f"wave {wave!r}: study {study.name!r} declares no wave column")
        values = sorted(frame[column].dropna().astype(str).unique())
        if wave not in values:
            raise SubsetError(f"wave {wave!r} is not in the data (waves: {', '.join(values)})")
        hit = frame[column].astype(str) == wave
        mask = hit if mask is None else mask & hit
    if mask is None:
        return data
    subset = frame.loc[mask.to_numpy()].reset_index(drop=True)
    for col in subset.select_dtypes("category").columns:
        subset[col] = subset[col].cat.remove_unused_categories()
    return dataclasses.replace(data, frame=subset)


def _segment_column(data, segment: str) -> tuple[str, str]:
    study, frame = data.study, data.frame
    columns = study.segment_columns
    if not columns:
        raise SubsetError(f"segment {segment!r}: study {study.name!r} declares no segment column")
    if "=" in segment:
        column, value = (part.strip() for part in segment.split("=", 1))
        if column not in columns:
            raise SubsetError(
                f"segment {segment!r}: {column!r} is not a segment column (they are: {', '.join(columns)})"
            )
        candidates = [column]
    else:
        value, candidates = segment, columns
    found = [c for c in candidates if value in set(frame[c].dropna().astype(str))]
    if not found:
        known = "; ".join(
            f"{c}: {', '.join(sorted(frame[c].dropna().astype(str).unique()))}" for c in candidates
        )
        raise SubsetError(f"segment {value!r} is not in the data ({known})")
    if len(found) > 1:
        raise SubsetError(
            f"segment {value!r} is a value of several segment columns ({', '.join(found)}); "
            f"write it as column=value, e.g. {found[0]}={value}"
        )
    return found[0], value


class MissingInputError(CxError):
    """A notebook input (another notebook's output folder) that is not there."""


def input_folder(
    path: str | Path,
    *,
    study,
    notebook: str,
    label: str = config.EVERYONE,
    needs: str | None = None,
    required: bool = True,
) -> Path | None:
    """The output folder of another notebook's run that this notebook reads.

    A pipeline passes it (the notebook entry's ``inputs``); run by hand, a
    notebook falls back to the study's published run of that notebook.

    Parameters
    ----------
    path : str or Path
        The folder given as a parameter; ``""``: the published run's.
    study : Study
        The study (its name locates its published runs under ``config.RUNS_DIR``).
    notebook : str
        The notebook whose output it is, e.g. ``02-experience-brand-loyalty``.
    label : str
        Its parameter set (default ``config.EVERYONE``, ``all``: the set of every
        respondent).
    needs : str, optional
        A file the folder must hold, e.g. ``driver_model.npz``.
    required : bool
        Raise when there is none (else return None).

    Raises
    ------
    MissingInputError
        Naming the folder or the missing publication and what to run.
    """
    from cxlib.pipeline.publish import read_pointer

    if str(path):
        folder = Path(path)
        where = f"{folder} (given)"
    else:
        study_dir = config.RUNS_DIR / study.name
        entry = ((read_pointer(study_dir) or {}).get("runs") or {}).get(f"{notebook}/{label}")
        if entry is None:
            if not required:
                return None
            raise MissingInputError(
                f"this notebook reads the output of {notebook} ({label}); give its output folder "
                f"as a parameter, or publish a run of it first (cx run pipelines/demo.yaml) — "
                f"study {study.name!r} has none under {study_dir}"
            )
        folder = study_dir / entry["output_dir"]
        where = f"{folder} (published run {entry.get('run_id')})"
    if not folder.is_dir() or (needs and not (folder / needs).is_file()):
        if not required:
            return None
        what = f"has no {needs}" if folder.is_dir() else "does not exist"
        raise MissingInputError(f"output folder of {notebook}: {where} {what}")
    return folder
