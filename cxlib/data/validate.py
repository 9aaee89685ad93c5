"""Check a raw survey export against its study spec and return clean data.

The checks (a pandera schema built from the spec, plus the conversions before
it): required columns present, respondent ids present and unique, item answers
whole numbers inside their scale (scale labels such as "Agree" are mapped to
their codes), segment and wave values from the declared sets, weights positive,
dates readable. Every problem is collected (not only the first) and reported with
the file, the column, the first offending rows and values, and what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.data.personal import find_personal_data
from cxlib.data.readers import RawTable
from cxlib.errors import DataProblem, DataValidationError, closest, did_you_mean
from cxlib.study import Study

__all__ = ["validate_table", "build_schema"]

QUALTRICS_ID = "ResponseId"


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


def build_schema(study: Study, columns: Sequence[str]):
    """The pandera schema a clean, numeric export of ``study`` must pass.

    Parameters
    ----------
    study : Study
        The study spec.
    columns : sequence of str
        Columns present in the data (checks are built for those only; missing
        columns are reported before the schema runs).

    Returns
    -------
    pandera.DataFrameSchema
    """
    import pandera.pandas as pa

    cols = study.columns
    present = set(columns)
    spec: dict[str, pa.Column] = {}
    if cols.respondent_id in present:
        spec[cols.respondent_id] = pa.Column(nullable=False, unique=True, required=True)
    for col, values in cols.segments.items():
        if col in present:
            checks = [pa.Check.isin(values)] if values else []
            spec[col] = pa.Column(nullable=False, checks=checks)
    if cols.wave and cols.wave in present:
        checks = [pa.Check.isin(study.source.wave_order)] if study.source.wave_order else []
        spec[cols.wave] = pa.Column(nullable=False, checks=checks)
    if cols.weight and cols.weight in present:
        spec[cols.weight] = pa.Column(nullable=False, checks=[pa.Check.gt(0)])
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


def _expected(study: Study, column: str, check: str) -> tuple[str, str]:
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
        allowed = ", ".join(map(repr, cols.segments[column] or []))
        return "values are not among the declared segments", f"one of {allowed}"
    if column == cols.wave:
        return "values are not among the declared waves", "one of " + ", ".join(
            map(repr, study.source.wave_order)
        )
    if column == cols.weight:
        return "weights are not positive", "a positive number for every respondent"
    return f"check {check!r} failed", ""


def _missing_columns(study: Study, raw: RawTable, columns: list[str]) -> list[DataProblem]:
    problems: list[DataProblem] = []
    present = set(columns)
    cols = study.columns
    specials = [
        ("respondent id", cols.respondent_id),
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
    """Text values with surrounding blanks removed; blanks and NaN become None."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        labels = [str(c).strip() or None for c in series.cat.categories]
        lookup = np.array([*labels, None], dtype=object)
        return pd.Series(lookup[series.cat.codes.to_numpy()], index=series.index)
    if is_id and pd.api.types.is_float_dtype(series):
        series = series.astype("Int64")
    text = series.astype("string[pyarrow]").str.strip()
    return text.astype(object).where(text.notna() & (text != ""), None)


def validate_table(raw: RawTable, study: Study):
    """Validate a raw export against the study spec.

    Parameters
    ----------
    raw : RawTable
        What :func:`cxlib.data.readers.read_table` read.
    study : Study
        The study spec.

    Returns
    -------
    tuple
        ``(clean frame, dropped personal-data columns with reasons, ignored columns)``.

    Raises
    ------
    DataValidationError
        Listing every problem found.
    """
    import pandera.errors

    frame = raw.frame
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    cols = study.columns
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
    rename = {}
    if (
        raw.format == "qualtrics"
        and cols.respondent_id not in frame.columns
        and QUALTRICS_ID in frame.columns
    ):
        rename = {QUALTRICS_ID: cols.respondent_id}
    columns = {rename.get(c, c): frame[c] for c in frame.columns}

    used = [
        cols.respondent_id,
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

    problems = _missing_columns(study, raw, list(columns))
    present = [c for c in used if c in columns]
    work: dict[str, pd.Series] = {}
    for col in present:
        if col in study.all_items or col == cols.weight:
            work[col], problem = _to_numeric(study, raw, columns[col], col)
            if problem:
                problems.append(problem)
        elif col != cols.date:
            work[col] = _as_text(columns[col], is_id=col == cols.respondent_id)

    schema = build_schema(study, list(work))
    text_problem_cols = {p.column for p in problems}
    check_frame = pd.DataFrame({c: v for c, v in work.items() if c not in text_problem_cols})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schema.validate(check_frame, lazy=True, inplace=True)
    except pandera.errors.SchemaErrors as exc:
        problems += _problems_from_pandera(exc.failure_cases, raw, study, check_frame)

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

    clean[cols.respondent_id] = work[cols.respondent_id].astype(str).to_numpy()
    for col, declared in cols.segments.items():
        categories = declared or sorted(work[col].unique())
        clean[col] = pd.Categorical(work[col], categories=categories)
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
    return clean, personal, ignored


def _problems_from_pandera(
    failures: pd.DataFrame, raw: RawTable, study: Study, frame: pd.DataFrame
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
            message, expected = _expected(study, column, check)
            if check == "isin" and column in study.columns.segments:
                allowed = study.columns.segments[column] or []
                near = {v: closest(v, allowed) for v in pd.unique(values)[:3]}
                hints = [f"{v!r} -> {m!r}?" for v, m in near.items() if m is not None]
                if hints:
                    message += " (" + "; ".join(hints) + ")"
        problems.append(_problem(raw, column, message, positions, values, expected))
    return problems
