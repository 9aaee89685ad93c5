"""Load survey responses, validate them against a study spec, report their quality.

>>> from cxlib.study import load_study
>>> from cxlib.data import load_responses
>>> study = load_study("data/telecom/study.yaml")              # doctest: +SKIP
>>> data = load_responses(study)                               # doctest: +SKIP
>>> print(data.quality_report().to_text())                     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxlib.data.quality import QualityReport, quality_report
from cxlib.data.readers import RawTable, file_hash, read_table
from cxlib.data.validate import ValidatedTable, build_schema, validate_table
from cxlib.errors import DataProblem, DataValidationError
from cxlib.study import Study, code_number

__all__ = [
    "EVENT_TYPES",
    "PERSONAL_DATA_COLUMNS",
    "SIGNALS",
    "EventLog",
    "EventLogReport",
    "NoSurveyedSessionWarning",
    "QualityReport",
    "RawTable",
    "SessionSignals",
    "SignalThresholds",
    "SurveyData",
    "ValidatedTable",
    "build_schema",
    "compute_signals",
    "file_hash",
    "load_events",
    "load_feedback",
    "load_responses",
    "quality_report",
    "read_table",
    "render_events",
    "validate_table",
]

#: The web and app sessions' API (DuckDB): imported on first use, so that reading
#: survey data does not import DuckDB.
_SESSIONS_API = {
    "EVENT_TYPES": "cxlib.data.events",
    "PERSONAL_DATA_COLUMNS": "cxlib.data.events",
    "EventLog": "cxlib.data.events",
    "EventLogReport": "cxlib.data.events",
    "NoSurveyedSessionWarning": "cxlib.data.events",
    "load_events": "cxlib.data.events",
    "load_feedback": "cxlib.data.events",
    "SIGNALS": "cxlib.data.signals",
    "SessionSignals": "cxlib.data.signals",
    "SignalThresholds": "cxlib.data.signals",
    "compute_signals": "cxlib.data.signals",
    "render_events": "cxlib.data.event_simulation",
}


def __getattr__(name: str):
    if name in _SESSIONS_API:
        import importlib

        return getattr(importlib.import_module(_SESSIONS_API[name]), name)
    raise AttributeError(f"module 'cxlib.data' has no attribute {name!r}")



@dataclass
class SurveyData:
    """Validated survey responses of a study.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per respondent: id (``study.columns.id_column``; row numbers "1".."N"
        when the spec names no id column), segments (their labels), wave, date, weight
        and every item (floats, reverse-coded items already reversed, missing answers
        and missing-value codes as NaN). Personal data and columns the study does not
        use are not in it.
    study : Study
        The study spec the data were validated against.
    source : Path
        The file read.
    format : str
        ``csv``, ``qualtrics``, ``parquet``, ``excel`` or ``spss``.
    data_hash : str
        SHA-256 of the file's bytes.
    dropped_personal_data : dict
        Columns dropped as personal data, with the reason for each (names only;
        their values are never kept).
    ignored_columns : list of str
        Columns the study does not use (left out of ``frame``).
    question_text, value_labels : dict
        Question wording and value labels where the file carries them.
    missing_codes : dict
        Per item, how many answers each missing-value code turned missing
        (``{"SAT1": {"-99": 4}}``).
    segment_labels : dict
        Per segment column, the code -> label mapping applied on load (from the spec,
        else from the file's value labels).
    missing_tokens : dict
        Per column the study uses, how many cells each "no answer" text (``"NA"``,
        ``"#N/A"``, ``"null"`` ...) turned missing (``{"SAT1": {"NA": 3}}``).
    excluded_rows : dict
        Rows left out on load, by reason: Qualtrics ``preview``, ``test`` and
        ``unfinished`` responses (``source.keep_preview`` / ``keep_unfinished`` keep them).
    notes : list of str
        What loading did that the researcher should know (e.g. "no respondent id:
        rows are numbered 1..N in file order").
    """

    frame: pd.DataFrame
    study: Study
    source: Path
    format: str
    data_hash: str
    encoding: str | None = None
    dropped_personal_data: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    question_text: dict[str, str] = field(default_factory=dict)
    value_labels: dict[str, dict] = field(default_factory=dict)
    missing_codes: dict[str, dict[str, int]] = field(default_factory=dict)
    segment_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing_tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    excluded_rows: dict[str, int] = field(default_factory=dict)

    @property
    def n_respondents(self) -> int:
        """Number of respondents (rows)."""
        return len(self.frame)

    @property
    def items(self) -> pd.DataFrame:
        """The item answers only (respondents x items)."""
        return self.frame[self.study.item_names]

    @property
    def weights(self) -> np.ndarray:
        """Respondent weights (ones when the study declares no weight column)."""
        col = self.study.columns.weight
        if col:
            return self.frame[col].to_numpy(dtype=float)
        return np.ones(len(self.frame))

    def quality_report(self) -> QualityReport:
        """The data-quality report (missing answers, straight-lining, floor/ceiling ...)."""
        return quality_report(self)


def load_responses(
    study: Study,
    path: str | Path | None = None,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | int | None = None,
) -> SurveyData:
    """Load and validate a study's responses.

    Parameters
    ----------
    study : Study
        The study spec.
    path : str or Path, optional
        The data file; by default the spec's ``source.file``.
    delimiter, encoding : str, optional
        How a text export is written; default: the spec's ``source`` settings
        (comma, UTF-8).
    sheet : str or int, optional
        Excel sheet; default: the spec's ``source.sheet``. A workbook with several
        sheets is refused without one (the message lists them).

    Returns
    -------
    SurveyData

    Raises
    ------
    DataValidationError
        Naming the file, the columns, the first offending rows and values, and
        what was expected.
    """
    if path is None:
        path = study.data_path
        if path is None:
            raise DataValidationError(
                study.name,
                [DataProblem(None, "no data file given and the study spec has no source.file")],
                hint="Pass the data file, e.g. `cx validate --study study.yaml responses.csv`.",
            )
    text_columns = tuple(
        c for c in (study.columns.respondent_id, *study.columns.segments, study.columns.wave) if c
    )
    text_codes = {
        str(code).strip()
        for name in study.item_names
        for code in study.missing_codes(name)
        if code_number(code) is None
    }
    raw = read_table(
        path,
        delimiter=delimiter or study.source.delimiter,
        encoding=encoding or study.source.encoding,
        sheet=sheet if sheet is not None else study.source.sheet,
        text_columns=text_columns,
        keep_text=tuple(sorted(text_codes)),
        values_as_written=tuple(study.columns.segments),
    )
    valid = validate_table(raw, study)
    personal = valid.personal
    return SurveyData(
        frame=valid.frame,
        study=study,
        source=raw.path,
        format=raw.format,
        data_hash=raw.sha256,
        encoding=raw.encoding,
        dropped_personal_data=personal,
        ignored_columns=valid.ignored,
        question_text={k: v for k, v in raw.question_text.items() if k not in personal},
        value_labels={k: v for k, v in raw.value_labels.items() if k not in personal},
        missing_codes=valid.missing_codes,
        segment_labels=valid.segment_labels,
        notes=valid.notes,
        missing_tokens=valid.missing_tokens,
        excluded_rows=valid.excluded_rows,
    )
