"""Check a raw survey export against its study spec and return clean data.

The checks (a pandera schema built from the spec, plus the conversions before
it): required columns present, respondent ids present and unique, item answers
whole numbers inside their scale (scale labels such as "Agree" are mapped to
their codes), segment and wave values from the declared sets, weights positive,
dates readable. Every problem is collected (not only the first) and reported with
the file, the column, the first offending rows and values, and what was expected.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.data.personal import find_personal_data
from cxlib.data.readers import DEFAULT_NA_TEXT, RawTable
from cxlib.errors import DataProblem, DataValidationError, closest, did_you_mean
from cxlib.study import Study, code_number

__all__ = ["ValidatedTable", "build_schema", "validate_table"]

QUALTRICS_ID = "ResponseId"
#: Qualtrics' columns saying how a response came in and whether it was finished.
QUALTRICS_CHANNEL = "DistributionChannel"
QUALTRICS_FINISHED = "Finished"
#: Texts pandas reads as missing; in a segment column they are values ("NA": North America).
_NA_TEXT = frozenset(t for t in DEFAULT_NA_TEXT if t)
#: ``Finished`` values of an unfinished response (numeric, text and Excel exports).
_NOT_FINISHED = {"0", "0.0", "false"}
#: Headers an unnamed first column gets: ``""`` as written, ``"Unnamed: 0"`` as pandas reads it.
_UNNAMED = re.compile(r"^(Unnamed: 0)?$")


class ValidatedTable(NamedTuple):
    """What :func:`validate_table` returns.

    Attributes
    ----------
    frame : pandas.DataFrame
        The clean responses.
    personal : dict
        Columns dropped as personal data, with the reason for each.
    ignored : list of str
        Columns the study does not use.
    missing_codes : dict
        Per item, how many answers each missing-value code turned missing
        (``{"SAT1": {"-99": 4}}``; items without coded answers are left out).
    segment_labels : dict
        Per segment column, the code -> label mapping applied (from the spec or the
        file's value labels).
    notes : list of str
        What the loading did that a researcher should know (row numbers as ids,
        value labels used as segment labels ...).
    excluded_rows : dict
        Rows left out on load, by reason (``{"preview": 2, "test": 1, "unfinished":
        5}``: Qualtrics preview, test and unfinished responses).
    missing_tokens : dict
        Per column of the clean frame, how many of its cells each "no answer" text
        (``"NA"``, ``"#N/A"``, ``"null"`` ...) turned missing, rows left out not counted.
    """

    frame: pd.DataFrame
    personal: dict[str, str]
    ignored: list[str]
    missing_codes: dict[str, dict[str, int]]
    segment_labels: dict[str, dict[str, str]]
    notes: list[str]
    excluded_rows: dict[str, int] = {}
    missing_tokens: dict[str, dict[str, int]] = {}


def _problem(raw: RawTable, column, message, where, values, expected) -> DataProblem:
    """A problem at ``where`` (a boolean mask or positions) with its offending values."""
    where = np.asarray(where)
    positions = np.flatnonzero(where) if where.dtype == np.bool_ else where.astype(np.int64)
    shown = positions[: config.SHOW_ROWS]
    vals = ()
    if values is not None:
        vals = tuple(_plain(v) for v in np.asarray(values, dtype=object)[: config.SHOW_ROWS])
    return DataProblem(
        column,
        message,
        rows=tuple(raw.rows(shown)),
        values=vals,
        n_rows=int(positions.size),
        expected=expected,
    )


def _plain(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _near(name: str, columns: Sequence[str]) -> str:
    lower = {str(c).lower(): c for c in columns}
    if name.lower() in lower:
        return f" (the file has {lower[name.lower()]!r}: names are case-sensitive)"
    return did_you_mean(name, columns, cutoff=0.75, parens=True)


def build_schema(
    study: Study, columns: Sequence[str], *, segment_values: dict[str, list[str]] | None = None
):
    """The pandera schema a clean, numeric export of ``study`` must pass.

    Parameters
    ----------
    study : Study
        The study spec.
    columns : sequence of str
        Columns present in the data (checks are built for those only; missing
        columns are reported before the schema runs). The respondent id column is
        checked under its name in loaded data (``study.columns.id_column``).
    segment_values : dict, optional
        Allowed values per segment column (default: the spec's segment labels).

    Returns
    -------
    pandera.DataFrameSchema
    """
    import pandera.pandas as pa

    cols = study.columns
    present = set(columns)
    spec: dict[str, pa.Column] = {}
    if not cols.rows_numbered and cols.id_column in present:
        spec[cols.id_column] = pa.Column(nullable=False, unique=True, required=True)
    allowed = {**cols.segments, **(segment_values or {})}
    for col in cols.segments:
        values = allowed[col]
        if col in present:
            checks = [pa.Check.isin(values)] if values else []
            spec[col] = pa.Column(nullable=False, checks=checks)
    if cols.wave and cols.wave in present:
        checks = [pa.Check.isin(study.source.wave_order)] if study.source.wave_order else []
        spec[cols.wave] = pa.Column(nullable=False, checks=checks)
    if cols.weight and cols.weight in present:
        spec[cols.weight] = pa.Column(
            nullable=False,
            checks=[pa.Check(lambda s: np.isfinite(s), name="finite"), pa.Check.gt(0)],
        )
    for name, item in study.all_items.items():
        if name in present:
            spec[name] = pa.Column(
                nullable=True,
                checks=[
                    pa.Check(lambda s: s % 1 == 0, name="whole_number"),
                    pa.Check.in_range(item.scale.min, item.scale.max),
                ],
            )
    return pa.DataFrameSchema(spec, strict=False)


def _expected(
    study: Study, column: str, check: str, labels: dict[str, dict[str, str]] | None = None
) -> tuple[str, str]:
    """(message, expected) for a failed pandera check on ``column``."""
    cols = study.columns
    if check == "field_uniqueness":
        return "respondent ids are not unique", "one row per respondent, each with its own id"
    if check == "not_nullable":
        return "values are missing", "a value in every row"
    if column in study.all_items:
        scale = study.item(column).scale
        if check == "whole_number":
            return "answers are not whole numbers", f"whole numbers from {scale.min} to {scale.max}"
        return (
            f"answers lie outside the item's {scale} scale",
            f"whole numbers from {scale.min} to {scale.max} (or empty for no answer)",
        )
    if column in cols.segments:
        mapping = (labels or {}).get(column) or {}
        if mapping:
            declared = set(cols.segments[column] or mapping.values())
            allowed = ", ".join(
                f"{code!r} ({label})" for code, label in mapping.items() if label in declared
            )
        else:
            allowed = ", ".join(map(repr, cols.segments[column] or []))
        return "values are not among the declared segments", f"one of {allowed}"
    if column == cols.wave:
        return "values are not among the declared waves", "one of " + ", ".join(
            map(repr, study.source.wave_order)
        )
    if column == cols.weight:
        if check == "finite":
            return (
                "weights are infinite (KPIs would come out NaN)",
                "a positive, finite number for every respondent",
            )
        return "weights are not positive", "a positive number for every respondent"
    return f"check {check!r} failed", ""


def _missing_columns(study: Study, raw: RawTable, columns: list[str]) -> list[DataProblem]:
    problems: list[DataProblem] = []
    present = set(columns)
    cols = study.columns
    specials = [
        ("respondent id", cols.respondent_id or None),
        ("weight", cols.weight),
        ("wave", cols.wave),
        ("date", cols.date),
    ]
    specials += [("segment", c) for c in cols.segments]
    for role, col in specials:
        if col and col not in present:
            problems.append(
                DataProblem(
                    col,
                    f"the {role} column is missing" + _near(col, columns),
                    expected=f"a column named {col!r}",
                )
            )
    for cname, construct in study.constructs.items():
        missing = [i for i in construct.item_names if i not in present]
        if not missing:
            continue
        hints = "".join(_near(i, columns) for i in missing[:3])
        if len(missing) == len(construct.items):
            problems.append(
                DataProblem(
                    None,
                    f"construct {cname!r} has none of its items in the data "
                    f"({', '.join(missing)}){hints}",
                    expected=f"columns {', '.join(missing)}",
                )
            )
        else:
            for item in missing:
                problems.append(
                    DataProblem(
                        item,
                        f"item of construct {cname!r} is missing" + _near(item, columns),
                        expected=f"a column named {item!r}",
                    )
                )
    for item in study.items:
        if item not in present:
            problems.append(
                DataProblem(
                    item,
                    "item is missing" + _near(item, columns),
                    expected=f"a column named {item!r}",
                )
            )
    return problems


def _to_numeric(
    study: Study, raw: RawTable, series: pd.Series, column: str
) -> tuple[pd.Series, DataProblem | None]:
    if pd.api.types.is_bool_dtype(series):
        series = series.astype(float)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64"), None
    text = series.astype("string[pyarrow]").str.strip()
    labels = {}
    if column in study.all_items:
        labels = {str(v).strip().lower(): k for k, v in study.item(column).scale.labels.items()}
    mapped = text.str.lower().map(labels) if labels else None
    numeric = pd.to_numeric(text.where(text != ""), errors="coerce").astype("float64")
    if mapped is not None:
        numeric = numeric.fillna(mapped.astype("float64"))
    bad = (text.notna() & (text != "") & numeric.isna()).to_numpy()
    if not bad.any():
        return numeric, None
    expected = "numbers"
    if column in study.all_items:
        scale = study.item(column).scale
        expected = f"whole numbers from {scale.min} to {scale.max}"
        if scale.labels:
            expected += (
                " or the scale's labels ("
                + ", ".join(f"{k} {v!r}" for k, v in scale.labels.items())
                + ")"
            )
    problem = _problem(
        raw, column, "has text where numbers were expected", bad, series.to_numpy()[bad], expected
    )
    return numeric, problem


def _as_text(series: pd.Series, *, is_id: bool = False) -> pd.Series:
    """Text values with surrounding blanks removed; blanks and NaN become None.

    Whole numbers read as floats (a numeric column with gaps) become ``"1"``, not
    ``"1.0"``, so that codes match the spec's ``[1, 2]``.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        labels = [str(c).strip() or None for c in series.cat.categories]
        lookup = np.array([*labels, None], dtype=object)
        return pd.Series(lookup[series.cat.codes.to_numpy()], index=series.index)
    if pd.api.types.is_float_dtype(series):
        finite = series.dropna()
        if is_id or bool((finite % 1 == 0).all()):
            series = series.astype("Int64")
    text = series.astype("string[pyarrow]").str.strip()
    return text.astype(object).where(text.notna() & (text != ""), None)


def _blank_missing_codes(series: pd.Series, codes: Sequence) -> tuple[pd.Series, dict[str, int]]:
    """``series`` with every missing-value code blanked, and how many answers each code hit."""
    if not codes or series.empty:
        return series, {}
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if numeric:
        values = series.astype("float64")
    else:
        text = series.astype("string[pyarrow]").str.strip()
        values = pd.to_numeric(text, errors="coerce").astype("float64")
    hit = np.zeros(len(series), dtype=bool)
    counts: dict[str, int] = {}
    for code in codes:
        number = code_number(code)
        if number is not None:
            mask = (values == number).fillna(False).to_numpy(dtype=bool)
        elif numeric:
            continue
        else:
            mask = (text == str(code).strip()).fillna(False).to_numpy(dtype=bool)
        mask &= ~hit
        if mask.any():
            counts[str(code)] = int(mask.sum())
            hit |= mask
    if not hit.any():
        return series, {}
    out = series.astype("float64") if numeric else series.astype(object)
    out = out.where(~hit, np.nan if numeric else None)
    return out, counts


def _resolve_id(raw: RawTable, study: Study, frame: pd.DataFrame):
    """The id column as named in ``frame``, a problem when there is none, and a note."""
    rid = study.columns.respondent_id
    if rid is None:
        note = "no respondent id: rows are numbered 1..N in file order"
        if study.columns.id_column in frame.columns:
            note += (
                f" (the file has a column {study.columns.id_column!r}: name it under "
                "`columns: {respondent_id: ...}` to use it)"
            )
        return None, None, note
    if rid != "":
        return rid, None, None
    first = frame.columns[0] if len(frame.columns) else None
    if first is not None and _UNNAMED.match(str(first)):
        shown = "''" if first == "" else repr(first)
        return first, None, f"respondent id: the file's unnamed first column ({shown})"
    problem = DataProblem(
        None,
        'columns.respondent_id is "" (the file\'s unnamed first column), but the first '
        f"column is named {first!r}",
        expected="a first column with an empty header (as pandas writes its index: '' or "
        "'Unnamed: 0'); or name the id column under `columns: {respondent_id: COLUMN}`, or "
        "leave respondent_id out to number the rows",
    )
    return None, problem, None


def _segment_mapping(raw: RawTable, study: Study, col: str) -> tuple[dict[str, str], str | None]:
    """The code -> label mapping of a segment column, and a note when it comes from the file."""
    spec = study.columns.segment_labels.get(col)
    if spec:
        return dict(spec), None
    file_labels = raw.value_labels.get(col) or {}
    if not file_labels:
        return {}, None
    mapping = {}
    for code, label in file_labels.items():
        key = str(int(code)) if isinstance(code, float) and code.is_integer() else str(code)
        mapping[key.strip()] = str(label).strip()
    shown = ", ".join(f"{k} {v}" for k, v in list(mapping.items())[:6])
    return mapping, f"segment {col!r}: the file's value labels name the codes ({shown})"


def _qualtrics_exclusions(frame: pd.DataFrame, study: Study) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows are Qualtrics previews, tests or unfinished, and how many of each.

    Returns the rows to keep (a boolean mask) and the counts of the rows left out by
    reason; ``source.keep_preview`` / ``source.keep_unfinished`` keep them.
    """
    keep = np.ones(len(frame), dtype=bool)
    counts: dict[str, int] = {}
    if QUALTRICS_CHANNEL in frame.columns and not study.source.keep_preview:
        channel = frame[QUALTRICS_CHANNEL].astype("string").str.strip().str.lower()
        for kind in ("preview", "test"):
            hit = (channel == kind).fillna(False).to_numpy(dtype=bool) & keep
            if hit.any():
                counts[kind] = int(hit.sum())
                keep &= ~hit
    if QUALTRICS_FINISHED in frame.columns and not study.source.keep_unfinished:
        finished = frame[QUALTRICS_FINISHED].astype("string").str.strip().str.lower()
        hit = finished.isin(_NOT_FINISHED).fillna(False).to_numpy(dtype=bool) & keep
        if hit.any():
            counts["unfinished"] = int(hit.sum())
            keep &= ~hit
    return keep, counts


def _exclusion_note(counts: dict[str, int], total: int) -> str:
    shown = ", ".join(
        f"{n:,} {'unfinished (Finished = 0/False)' if kind == 'unfinished' else kind}"
        for kind, n in counts.items()
    )
    keys = []
    if "preview" in counts or "test" in counts:
        keys.append("keep_preview: true")
    if "unfinished" in counts:
        keys.append("keep_unfinished: true")
    return (
        f"{sum(counts.values()):,} of {total:,} rows left out as Qualtrics responses that "
        f"are not respondents ({shown}); to keep them, `source: {{{', '.join(keys)}}}`"
    )


def _duplicate_problems(raw: RawTable, used: set[str]) -> tuple[list[DataProblem], list[str]]:
    """Problems for duplicated header names the study uses; notes for the others."""
    problems, notes = [], []
    for name, numbers in raw.duplicate_columns.items():
        where = ", ".join(map(str, numbers))
        if name in used:
            problems.append(
                DataProblem(
                    name,
                    f"{len(numbers)} columns ({where}) are named {name!r}; which one holds the "
                    "answers is not clear",
                    expected="each column name once in the header (rename or drop the copies)",
                )
            )
        else:
            notes.append(
                f"the header names {len(numbers)} columns ({where}) {name!r}; the study does "
                "not use them (ignored)"
            )
    return problems, notes


def validate_table(raw: RawTable, study: Study) -> ValidatedTable:
    """Validate a raw export against the study spec.

    Parameters
    ----------
    raw : RawTable
        What :func:`cxlib.data.readers.read_table` read.
    study : Study
        The study spec.

    Returns
    -------
    ValidatedTable
        The clean frame, dropped personal-data columns with reasons, ignored columns,
        per-item counts of answers turned missing by each missing-value code, the
        segment labels applied and notes.

    Raises
    ------
    DataValidationError
        Listing every problem found.
    """
    import pandera.errors

    cols = study.columns
    keep_rows, excluded = _qualtrics_exclusions(raw.frame, study)
    if excluded:
        if not keep_rows.any():
            raise DataValidationError(
                str(raw.path),
                [
                    DataProblem(
                        None,
                        _exclusion_note(excluded, len(keep_rows)) + ": no response is left",
                        expected="at least one finished, distributed response",
                    )
                ],
                row_label=raw.row_label,
            )
        positions = np.flatnonzero(keep_rows)
        kept = raw.frame.iloc[positions]
        if isinstance(raw.frame.index, pd.RangeIndex):
            kept = kept.reset_index(drop=True)
        texts = {c: t[t.index.isin(positions)] for c, t in raw.missing_texts.items()}
        raw = dataclasses.replace(raw, frame=kept, row_positions=positions, missing_texts=texts)
    frame = raw.frame
    index_ids = None
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        if cols.respondent_id == "" and frame.index.name in (None, ""):
            index_ids = frame.index.to_numpy()  # a Parquet file written with its index
        frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    notes: list[str] = [_exclusion_note(excluded, len(keep_rows))] if excluded else []
    if index_ids is not None:  # frame is reset_index's new frame: insert in place
        frame.insert(0, "", index_ids)
    dup_cols = frame.columns[frame.columns.duplicated()].unique().tolist()
    if dup_cols:
        raise DataValidationError(
            str(raw.path),
            [
                DataProblem(
                    c,
                    "the column appears more than once in the header",
                    expected="each column once",
                )
                for c in dup_cols
            ],
            row_label=raw.row_label,
        )
    id_source, id_problem, id_note = _resolve_id(raw, study, frame)
    if id_note:
        notes.append(id_note)
    rename = {}
    if id_source is not None and id_source != cols.id_column:
        if cols.id_column in frame.columns:
            raise DataValidationError(
                str(raw.path),
                [
                    DataProblem(
                        cols.id_column,
                        f"the unnamed first column is the respondent id, but the file also "
                        f"has a column named {cols.id_column!r}",
                        expected="one respondent id column",
                    )
                ],
                row_label=raw.row_label,
                hint="Name the id column under `columns: {respondent_id: COLUMN}`.",
            )
        rename = {id_source: cols.id_column}
    elif (
        raw.format == "qualtrics"
        and cols.respondent_id
        and cols.respondent_id not in frame.columns
        and QUALTRICS_ID in frame.columns
    ):
        rename = {QUALTRICS_ID: cols.respondent_id}
    columns = {rename.get(c, c): frame[c] for c in frame.columns}

    used = [
        None if cols.rows_numbered else cols.id_column,
        cols.weight,
        cols.wave,
        cols.date,
        *cols.segments,
        *study.item_names,
    ]
    used = [c for c in used if c]
    personal = find_personal_data(
        frame.rename(columns=rename) if rename else frame, declared=cols.personal_data, keep=used
    )
    for col in personal:
        del columns[col]
    ignored = [c for c in columns if c not in used]

    duplicate_problems, duplicate_notes = _duplicate_problems(raw, set(used))
    notes += duplicate_notes
    problems = duplicate_problems + _missing_columns(study, raw, list(columns))
    if id_problem is not None:
        problems.insert(0, id_problem)
    present = [c for c in used if c in columns]
    work: dict[str, pd.Series] = {}
    missing_codes: dict[str, dict[str, int]] = {}
    for col in present:
        if col in study.all_items or col == cols.weight:
            series = columns[col]
            if col in study.all_items:
                series, counts = _blank_missing_codes(series, study.missing_codes(col))
                if counts:
                    missing_codes[col] = counts
            work[col], problem = _to_numeric(study, raw, series, col)
            if problem:
                problems.append(problem)
        elif col != cols.date:
            work[col] = _as_text(columns[col], is_id=col == cols.id_column)

    segment_labels: dict[str, dict[str, str]] = {}
    segment_values: dict[str, list[str]] = {}
    for col in cols.segments:
        if col not in work:
            continue
        as_missing = pd.Series(work[col]).isin(_NA_TEXT)
        if as_missing.any():
            found = pd.Series(work[col])[as_missing].value_counts()
            shown = ", ".join(f"{v!r} ({n:,} rows)" for v, n in found.items())
            notes.append(
                f"segment {col!r}: {shown} read as segment value(s), not as missing: a "
                "respondent needs a segment (blank cells are refused)"
            )
        mapping, note = _segment_mapping(raw, study, col)
        if not mapping:
            continue
        segment_labels[col] = mapping
        if note:
            notes.append(note)
        work[col] = work[col].map(lambda v, m=mapping: m.get(v, v) if v is not None else None)
        if cols.segments[col]:
            segment_values[col] = list(dict.fromkeys(mapping.get(v, v) for v in cols.segments[col]))

    schema = build_schema(study, list(work), segment_values=segment_values)
    text_problem_cols = {p.column for p in problems}
    check_frame = pd.DataFrame({c: v for c, v in work.items() if c not in text_problem_cols})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schema.validate(check_frame, lazy=True, inplace=True)
    except pandera.errors.SchemaErrors as exc:
        problems += _problems_from_pandera(
            exc.failure_cases, raw, study, check_frame, segment_values, segment_labels
        )

    clean: dict[str, object] = {}
    if cols.date and cols.date in columns:
        dates = (
            pd.to_datetime(columns[cols.date], errors="coerce", format="mixed")
            if not pd.api.types.is_datetime64_any_dtype(columns[cols.date])
            else columns[cols.date]
        )
        bad = (columns[cols.date].notna() & dates.isna()).to_numpy()
        if bad.any():
            problems.append(
                _problem(
                    raw,
                    cols.date,
                    "values are not dates",
                    bad,
                    columns[cols.date].to_numpy()[bad],
                    "dates such as 2026-03-31",
                )
            )
        clean_dates = dates
    if problems:
        raise DataValidationError(
            str(raw.path),
            problems,
            row_label=raw.row_label,
            hint=f"Rows are counted as in the file ({raw.row_label} {raw.first_row} is the first response). "
            "Fix the export or the study spec and run `cx validate` again.",
        )

    if cols.rows_numbered:
        clean[cols.id_column] = np.arange(1, len(frame) + 1).astype(str).astype(object)
    else:
        clean[cols.id_column] = work[cols.id_column].astype(str).to_numpy()
    for col, declared in cols.segments.items():
        declared = segment_values.get(col, declared)
        if not declared:
            seen = set(work[col].dropna().unique())
            by_code = [label for label in segment_labels.get(col, {}).values() if label in seen]
            declared = list(dict.fromkeys(by_code)) + sorted(seen - set(by_code), key=str)
        clean[col] = pd.Categorical(work[col], categories=declared)
    if cols.wave:
        order = study.source.wave_order or sorted(work[cols.wave].unique(), key=str)
        clean[cols.wave] = pd.Categorical(
            work[cols.wave].astype(str), categories=[str(w) for w in order], ordered=True
        )
    if cols.date:
        clean[cols.date] = clean_dates.to_numpy()
    if cols.weight:
        clean[cols.weight] = work[cols.weight].to_numpy()
    for name, item in study.all_items.items():
        values = work[name].to_numpy(dtype="float64")
        if item.reverse:
            values = item.scale.min + item.scale.max - values
        clean[name] = values
    clean = pd.DataFrame(clean)
    tokens = {
        rename.get(name, name): counts
        for name, counts in ((str(c).strip(), n) for c, n in raw.missing_tokens.items())
    }
    tokens = {c: n for c, n in tokens.items() if c in clean.columns}
    return ValidatedTable(
        clean, personal, ignored, missing_codes, segment_labels, notes, excluded, tokens
    )


def _problems_from_pandera(
    failures: pd.DataFrame,
    raw: RawTable,
    study: Study,
    frame: pd.DataFrame,
    segment_values: dict[str, list[str]] | None = None,
    segment_labels: dict[str, dict[str, str]] | None = None,
) -> list[DataProblem]:
    problems = []
    failures = failures[failures["index"].notna()] if "index" in failures else failures
    for (column, check), group in failures.groupby(["column", "check"], sort=False):
        check = str(check).split("(")[0]
        positions = np.asarray(group["index"], dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        positions = positions[order]
        values = (
            frame[column].to_numpy()[positions]
            if column in frame
            else group["failure_case"].to_numpy()[order]
        )
        if check == "field_uniqueness":
            message, expected = _expected(study, column, check)
            counts = pd.Series(values).value_counts()
            message += f": {len(counts)} id(s) appear more than once"
        else:
            message, expected = _expected(study, column, check, segment_labels)
            if check == "isin" and column in study.columns.segments:
                allowed = (segment_values or {}).get(column) or study.columns.segments[column] or []
                allowed = [*allowed, *(segment_labels or {}).get(column, {})]
                near = {v: closest(v, allowed) for v in pd.unique(values)[:3]}
                hints = [f"{v!r} -> {m!r}?" for v, m in near.items() if m is not None]
                if hints:
                    message += " (" + "; ".join(hints) + ")"
                file_labels = raw.value_labels.get(column) or {}
                if file_labels and study.columns.segment_labels.get(column):
                    shown = ", ".join(f"{_plain(k)} {v}" for k, v in list(file_labels.items())[:6])
                    message += (
                        f"; the file's value labels say {shown}, but the spec's codes come "
                        "first: give the segments without codes (a list of labels, or null) "
                        "to use the file's"
                    )
        problems.append(_problem(raw, column, message, positions, values, expected))
    return problems
