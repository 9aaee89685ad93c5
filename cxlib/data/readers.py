"""Read survey exports: CSV, Qualtrics CSV, Parquet, Excel and SPSS ``.sav``.

Readers only parse files; checking the contents against a study spec is
:mod:`cxlib.data.validate`'s job. Every problem with the file itself (missing,
empty, header only, wrong delimiter, wrong encoding, unreadable) is a
:class:`~cxlib.errors.DataValidationError` naming the file and what to do.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxlib.errors import DataProblem, DataValidationError

__all__ = ["FORMATS", "RawTable", "file_hash", "read_table", "sniff_delimiter"]

#: File formats cxlib reads, by suffix.
FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
    ".sav": "spss",
}
_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
#: What pandas reads as "no answer" in text files by default (``pandas.read_csv``'s
#: ``na_values``). A study's text missing-value codes are taken out of it, so that the
#: validation can count how many answers each code turned missing.
DEFAULT_NA_TEXT = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip


@dataclass
class RawTable:
    """A survey export as read from disk, before validation.

    Attributes
    ----------
    frame : pandas.DataFrame
        The responses, one row per respondent.
    path : Path
        The file.
    format : str
        ``csv``, ``qualtrics``, ``parquet``, ``excel`` or ``spss``.
    first_row : int
        Which row number the first response has in the file (2 for a CSV with one
        header line, 4 for a Qualtrics export), so messages can point at it.
    row_label : str
        How to name rows in messages: ``line`` (text files), ``row`` (Excel,
        Parquet) or ``case`` (SPSS).
    question_text : dict
        Question wording per column, where the file carries it (Qualtrics, SPSS).
    value_labels : dict
        Value labels per column (SPSS), e.g. ``{1: "Strongly disagree"}``.
    sha256 : str
        Hash of the file's bytes (what pipelines use to notice new data).
    missing_texts : dict
        Per column, the "no answer" texts read as missing (text and Excel files, see
        :data:`DEFAULT_NA_TEXT`), indexed by the row's position in ``frame``'s file order;
        :attr:`missing_tokens` counts them.
    duplicate_columns : dict
        Header names given to more than one column, with their 1-based column numbers
        (the reader renames the later copies ``NAME.1``, ...).
    row_positions : numpy.ndarray, optional
        The file position of each row of ``frame`` when rows were left out (Qualtrics
        previews ...), so messages still name rows as in the file.
    """

    frame: pd.DataFrame
    path: Path
    format: str
    first_row: int = 2
    row_label: str = "line"
    encoding: str | None = None
    delimiter: str | None = None
    question_text: dict[str, str] = field(default_factory=dict)
    value_labels: dict[str, dict] = field(default_factory=dict)
    sha256: str = ""
    missing_texts: dict[str, pd.Series] = field(default_factory=dict)
    duplicate_columns: dict[str, list[int]] = field(default_factory=dict)
    row_positions: np.ndarray | None = None

    @property
    def missing_tokens(self) -> dict[str, dict[str, int]]:
        """Per column, how many cells each "no answer" text turned missing.

        E.g. ``{"SAT1": {"NA": 3, "#N/A": 1}}``; columns without such texts are left out.
        """
        return {
            col: {str(k): int(v) for k, v in texts.value_counts(sort=False).items()}
            for col, texts in self.missing_texts.items()
            if len(texts)
        }

    def rows(self, index) -> list[int]:
        """File row numbers of frame positions ``index``."""
        if self.row_positions is not None:
            return [int(self.row_positions[int(i)]) + self.first_row for i in index]
        return [int(i) + self.first_row for i in index]


def file_hash(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_side_table(path: str | Path, expected: str) -> pd.DataFrame:
    """Read a small user-supplied CSV table (cost table, internal assessment) as text.

    Values stay strings (the caller validates and converts them, naming lines); column
    names are stripped. A missing or unreadable file raises
    :class:`~cxlib.errors.DataValidationError` naming the file and what was ``expected``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(
            str(path), [DataProblem(None, "file not found", expected=expected)]
        )
    try:
        table = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(
            str(path), [DataProblem(None, f"not a readable CSV file ({exc})")]
        ) from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _fail(path: Path, message: str, *, expected: str = "", hint: str = "", column=None):
    return DataValidationError(
        str(path), [DataProblem(column, message, expected=expected)], hint=hint
    )


def read_table(
    path: str | Path,
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    sheet: str | int | None = None,
    text_columns: tuple[str, ...] = (),
    keep_text: tuple[str, ...] = (),
    values_as_written: tuple[str, ...] = (),
) -> RawTable:
    """Read a survey export.

    Parameters
    ----------
    path : str or Path
        The file. Its suffix picks the reader: ``.csv``/``.tsv``/``.txt``,
        ``.parquet``, ``.xlsx``, ``.sav``. Qualtrics CSV exports (three header
        rows) are recognised by their content.
    delimiter : str
        Field delimiter of text files (default ``,``). A file that uses another one
        is refused with a message naming the one it seems to use.
    encoding : str
        Text encoding (default UTF-8). A file in another encoding is refused with a
        message naming the line and the likely encoding.
    sheet : str or int, optional
        Excel sheet. A workbook with more than one sheet is refused unless one is
        chosen (the message lists the sheets).
    text_columns : tuple of str
        Columns to read as text as they are (ids: ``"007"`` stays ``"007"``).
    keep_text : tuple of str
        Texts that CSV and Excel readers would otherwise turn into missing values
        (``"NA"``, ``"N/A"`` ...) but that a study declares as missing-value codes:
        kept as text, so that the validation can count them. Every other such text
        is read as missing and counted per column in ``missing_tokens``.
    values_as_written : tuple of str
        Columns whose texts are all values, "NA" included (segment columns: "NA" may
        be North America); only empty cells are missing there.

    Returns
    -------
    RawTable

    Raises
    ------
    DataValidationError
        When the file is missing, empty, has no responses or cannot be parsed.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "file not found", hint="Check the path, or the study spec's source.file.")
    if path.is_dir():
        raise _fail(path, "is a folder, not a data file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise _fail(
            path,
            f"unknown file type {path.suffix or '(no suffix)'!r}",
            expected="one of " + ", ".join(sorted(FORMATS)),
        )
    if path.stat().st_size == 0:
        raise _fail(
            path, "the file is empty (0 bytes)", expected="a header row and one row per respondent"
        )
    if fmt == "csv":
        table = _read_csv(path, delimiter, encoding, text_columns)
    elif fmt == "parquet":
        table = _read_parquet(path)
    elif fmt == "excel":
        table = _read_excel(path, sheet, text_columns)
    else:
        table = _read_spss(path)
    if fmt in ("csv", "excel"):
        table.frame, table.missing_texts = _blank_missing_text(
            table.frame, keep_text, values_as_written, text_columns
        )
    if table.frame.shape[1] == 0:
        raise _fail(
            path, "the file has no columns", expected="a header row and one row per respondent"
        )
    if len(table.frame) == 0:
        raise _fail(
            path,
            f"the file has a header ({table.frame.shape[1]} columns) but no responses",
            expected="at least one row per respondent under the header",
        )
    table.sha256 = file_hash(path)
    return table


def _head_text(path: Path, encoding: str, n_bytes: int = 1 << 16) -> str:
    with open(path, "rb") as fh:
        head = fh.read(n_bytes)
    return head.decode(encoding, errors="replace")


def _encoding_error(path: Path, encoding: str) -> DataValidationError:
    data = path.read_bytes()
    try:
        data.decode(encoding)
        pos = -1
    except UnicodeDecodeError as exc:
        pos = exc.start
    line = data.count(b"\n", 0, pos) + 1 if pos >= 0 else None
    start = data.rfind(b"\n", 0, max(pos, 0)) + 1
    end = data.find(b"\n", max(pos, 0))
    snippet = data[start : end if end >= 0 else None][:80].decode("latin-1").strip()
    what = (
        f"byte 0x{data[pos]:02x} at line {line} cannot be decoded ({snippet!r})" if pos >= 0 else ""
    )
    return DataValidationError(
        str(path),
        [
            DataProblem(
                None,
                f"the file is not {encoding} text: {what}; it looks like latin-1 (ISO-8859-1) "
                "or cp1252 (Windows), as older Excel and SPSS exports are",
                expected=f"{encoding} text",
            )
        ],
        hint=(
            "Re-export the file as UTF-8, or say how it is encoded: "
            "`cx validate --encoding latin-1 ...` or `source: {encoding: latin-1}` in the study spec."
        ),
    )


def _check_delimiter(path: Path, header: str, delimiter: str) -> None:
    counts = {d: header.count(d) for d in _DELIMITERS}
    if counts.get(delimiter, 0) > 0:
        return
    other = max((d for d in _DELIMITERS if d != delimiter), key=lambda d: counts[d])
    if counts[other] == 0:
        return  # a single-column file: let the column checks speak
    raise DataValidationError(
        str(path),
        [
            DataProblem(
                None,
                f"the header has no {_DELIMITERS.get(delimiter, repr(delimiter))} "
                f"({delimiter!r}) but {counts[other]} {_DELIMITERS[other]}s ({other!r}): "
                f"the file looks {_DELIMITERS[other]}-separated",
                rows=(1,),
                values=(header[:60],),
                n_rows=1,
                expected=f"{_DELIMITERS.get(delimiter, repr(delimiter))}-separated values",
            )
        ],
        row_label="line",
        hint=(
            f"Re-export with {_DELIMITERS.get(delimiter, repr(delimiter))}s, or say which delimiter "
            f"the file uses: `cx validate --delimiter '{other}' ...` or "
            f"`source: {{delimiter: '{other}'}}` in the study spec."
        ),
    )


def _is_qualtrics(lines: list[str]) -> bool:
    return len(lines) >= 3 and '"ImportId"' in lines[2].replace('""', '"')


#: Read only empty cells as missing; the "no answer" texts are blanked (and counted) after.
_ONLY_EMPTY_IS_MISSING = {"keep_default_na": False, "na_values": [""]}


def _blank_missing_text(
    frame: pd.DataFrame,
    keep_text: tuple[str, ...],
    as_written: tuple[str, ...],
    text_columns: tuple[str, ...],
) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Blank the "no answer" texts (``"NA"``, ``"#N/A"``, ``"null"`` ...), keeping them aside.

    What pandas does by default, but the texts are returned per column (indexed by row
    position), so the data-quality report can count what was read as missing. Texts in ``keep_text`` (a study's own
    missing-value codes, counted by the validation) and columns in ``as_written`` are
    left as they are. A column that holds numbers once its texts are blanked becomes
    numeric, as pandas would have read it (``text_columns`` stay text).
    """
    tokens = {t for t in DEFAULT_NA_TEXT if t} - {str(t).strip() for t in keep_text}
    found: dict[str, pd.Series] = {}
    if not tokens:
        return frame, found
    changed: dict[str, pd.Series] = {}
    for col in frame.columns:
        series = frame[col]
        if col in as_written or series.dtype != object or not isinstance(col, str | int):
            continue
        hit = series.isin(tokens).to_numpy()
        if not hit.any():
            continue
        found[str(col)] = pd.Series(series.to_numpy()[hit], index=np.flatnonzero(hit), dtype=object)
        blanked = series.where(~hit, np.nan)
        if col not in text_columns:
            try:  # numbers once the texts are blanked, as pandas would have read them
                blanked = pd.Series(
                    blanked.to_numpy(dtype=object).astype("float64"), index=blanked.index
                )
            except (TypeError, ValueError):
                pass  # text answers: the validation names them
        changed[col] = blanked
    if changed:
        frame = frame.copy()
        for col, values in changed.items():
            frame[col] = values
    return frame, found


def _header_duplicates(names: list[str]) -> dict[str, list[int]]:
    """Header names given to more than one column, with their 1-based column numbers."""
    where: dict[str, list[int]] = {}
    for number, name in enumerate(names, start=1):
        where.setdefault(str(name).strip(), []).append(number)
    return {name: numbers for name, numbers in where.items() if len(numbers) > 1}


def sniff_delimiter(path: str | Path, encoding: str = "utf-8") -> str:
    """The delimiter a text export's header line seems to use (``,`` when unclear).

    Counts commas, semicolons, tabs and pipes outside quotes in the first line; the
    most frequent one wins (European Excel writes ``;``).
    """
    head = _head_text(Path(path), encoding).lstrip("\ufeff")
    first = head.splitlines()[0] if head.strip() else ""
    outside, quoted = [], False
    for ch in first:
        if ch == '"':
            quoted = not quoted
        elif not quoted:
            outside.append(ch)
    text = "".join(outside)
    counts = {d: text.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_csv(
    path: Path,
    delimiter: str,
    encoding: str,
    text_columns: tuple[str, ...],
) -> RawTable:
    head = _head_text(path, encoding)
    if head.startswith("\ufeff"):
        head = head[1:]
        encoding = (
            "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        )
    if not head.strip():
        raise _fail(
            path,
            "the file holds only blank space",
            expected="a header row and one row per respondent",
        )
    lines = head.splitlines()
    _check_delimiter(path, lines[0], delimiter)
    qualtrics = _is_qualtrics(lines)
    skip = [1, 2] if qualtrics else None
    dtype = {c: str for c in text_columns}
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            encoding=encoding,
            encoding_errors="strict",
            skiprows=skip,
            dtype=dtype or None,
            low_memory=False,
            skipinitialspace=False,
            **_ONLY_EMPTY_IS_MISSING,
        )
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None
    except LookupError:
        raise _fail(
            path, f"unknown text encoding {encoding!r}", expected="e.g. utf-8, latin-1, cp1252"
        ) from None
    except pd.errors.EmptyDataError:
        raise _fail(
            path, "the file has no header row", expected="a header row naming the columns"
        ) from None
    except pd.errors.ParserError as exc:
        raise _fail(
            path,
            f"cannot parse the file as {_DELIMITERS.get(delimiter, repr(delimiter))}-separated values: {exc}",
            hint="A row with more fields than the header usually means an unquoted delimiter in a text answer.",
        ) from None
    question_text: dict[str, str] = {}
    if qualtrics:
        second = next(csv.reader(io.StringIO(_second_record(head))), [])
        question_text = dict(zip(frame.columns, second, strict=False))
    header = []
    if len(delimiter) == 1:
        header = next(csv.reader(io.StringIO(head), delimiter=delimiter), [])
    return RawTable(
        duplicate_columns=_header_duplicates(header),
        frame=frame,
        path=path,
        format="qualtrics" if qualtrics else "csv",
        first_row=4 if qualtrics else 2,
        row_label="line",
        encoding=encoding,
        delimiter=delimiter,
        question_text=question_text,
    )


def _second_record(text: str) -> str:
    """The second CSV record of ``text`` (records may span lines inside quotes)."""
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    record = next(reader, [])
    buf = io.StringIO()
    csv.writer(buf).writerow(record)
    return buf.getvalue()


def _read_parquet(path: Path) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise _fail(path, f"cannot read the Parquet file: {exc}") from None
    return RawTable(frame=frame, path=path, format="parquet", first_row=1, row_label="row")


def _read_excel(path: Path, sheet, text_columns: tuple[str, ...]) -> RawTable:
    try:
        with pd.ExcelFile(path) as book:
            names = [str(n) for n in book.sheet_names]
            if sheet is None and len(names) > 1:
                raise _sheet_choice(path, names)
            chosen = names[0] if sheet is None else sheet
            frame = book.parse(
                chosen, dtype={c: str for c in text_columns} or None, **_ONLY_EMPTY_IS_MISSING
            )
            header = book.parse(chosen, header=None, nrows=1, dtype=str).iloc[0].tolist()
    except DataValidationError:
        raise
    except (ValueError, KeyError, IndexError) as exc:
        raise _fail(
            path,
            f"cannot read the sheet {sheet!r}: {exc}",
            expected="one of the workbook's sheets",
        ) from None
    except Exception as exc:  # openpyxl raises several types for corrupt files
        raise _fail(path, f"cannot read the Excel file: {exc}") from None
    header = ["" if pd.isna(h) else h for h in header]
    return RawTable(
        frame=frame,
        path=path,
        format="excel",
        first_row=2,
        row_label="row",
        duplicate_columns=_header_duplicates(header),
    )


def _sheet_choice(path: Path, names: list[str]) -> DataValidationError:
    """The refusal of a workbook with several sheets when none is chosen."""
    first = names[0]
    quoted = f"'{first}'" if not first.isidentifier() else first
    return _fail(
        path,
        f"the workbook has {len(names)} sheets ({', '.join(map(repr, names))}) and no sheet "
        "is chosen; cxlib reads one sheet, and does not guess which holds the responses",
        expected="a chosen sheet",
        hint=(
            f"Choose the sheet: `source: {{sheet: {quoted}}}` in the study spec, or "
            f"`--sheet {quoted}` (cx validate, cx init)."
        ),
    )


def _read_spss(path: Path) -> RawTable:
    import pyreadstat

    try:
        frame, meta = pyreadstat.read_sav(str(path), apply_value_formats=False)
    except Exception as exc:  # pyreadstat raises its own ReadstatError and others
        raise _fail(path, f"cannot read the SPSS file: {exc}") from None
    return RawTable(
        frame=frame,
        path=path,
        format="spss",
        first_row=1,
        row_label="case",
        encoding=getattr(meta, "file_encoding", None),
        question_text={k: v for k, v in meta.column_names_to_labels.items() if v},
        value_labels=dict(meta.variable_value_labels),
    )
