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

    def rows(self, index) -> list[int]:
        """File row numbers of frame positions ``index``."""
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
        Excel sheet (default: the first).
    text_columns : tuple of str
        Columns to read as text as they are (ids: ``"007"`` stays ``"007"``).
    keep_text : tuple of str
        Texts that CSV and Excel readers would otherwise turn into missing values
        (``"NA"``, ``"N/A"`` ...) but that a study declares as missing-value codes:
        kept as text, so that the validation can count them.

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
        table = _read_csv(path, delimiter, encoding, text_columns, keep_text)
    elif fmt == "parquet":
        table = _read_parquet(path)
    elif fmt == "excel":
        table = _read_excel(path, sheet, text_columns, keep_text)
    else:
        table = _read_spss(path)
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


def _na_options(keep_text: tuple[str, ...]) -> dict:
    """``na_values`` options that read every default "no answer" text but ``keep_text``."""
    if not keep_text:
        return {}
    keep = {str(t).strip() for t in keep_text}
    return {"keep_default_na": False, "na_values": [t for t in DEFAULT_NA_TEXT if t not in keep]}


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
    keep_text: tuple[str, ...] = (),
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
            **_na_options(keep_text),
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
    return RawTable(
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


def _read_excel(
    path: Path, sheet, text_columns: tuple[str, ...], keep_text: tuple[str, ...] = ()
) -> RawTable:
    try:
        frame = pd.read_excel(
            path,
            sheet_name=0 if sheet is None else sheet,
            dtype={c: str for c in text_columns} or None,
            **_na_options(keep_text),
        )
    except ValueError as exc:
        raise _fail(path, f"cannot read the sheet {sheet!r}: {exc}") from None
    except Exception as exc:  # openpyxl raises several types for corrupt files
        raise _fail(path, f"cannot read the Excel file: {exc}") from None
    return RawTable(frame=frame, path=path, format="excel", first_row=2, row_label="row")


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
