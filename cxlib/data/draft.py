"""Draft a study spec from a survey export (what ``cx init DATA`` writes).

The draft is a commented YAML file the researcher edits: a candidate respondent id
column (or none: rows are numbered), a scale per item (the range observed, widened by
SPSS value labels), likely missing-value codes (``-99``, ``-999``, ``99``/``999``
beyond the bulk of a scale, ``"NA"``), segment and wave candidates, item groups by
name prefix (``SAT1``..``SAT3``) as construct stubs with their ``=~`` lines, and the
columns that look like personal data. The draft is itself a valid spec: it loads with
:func:`cxlib.study.load_study` and ``cx validate`` runs on it before anything is edited.

>>> from cxlib.data.draft import draft_study
>>> draft = draft_study("export.csv", spec_dir=".")       # doctest: +SKIP
>>> draft.write("study.yaml")                            # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cxlib.data.personal import find_personal_data
from cxlib.data.readers import DEFAULT_NA_TEXT, FORMATS, RawTable, read_table, sniff_delimiter
from cxlib.errors import CxError, StudySpecError
from cxlib.study import Study, study_from_dict

__all__ = ["StudyDraft", "draft_study"]

#: Codes exports use for "no answer" (SPSS, Qualtrics, SAS, Excel habits).
NEGATIVE_CODES = (-9, -99, -999, -9999, -98, -88, -77, -1)
HIGH_CODES = (98, 99, 999, 9999)
#: Text tokens that mean "no answer" (pandas reads them as missing by default).
TEXT_CODES = tuple(t for t in DEFAULT_NA_TEXT if t)
#: The widest item scale the drafter recognises (0-10 likelihood: 11 points).
MAX_SCALE_POINTS = 11
MAX_SEGMENT_VALUES = 12

_ID_NAMES = {
    "id", "respondentid", "respid", "responseid", "caseid", "case", "serial", "serialno",
    "recordid", "record", "interviewid", "participantid", "pid", "uid", "rid", "lfdn",
}  # fmt: skip
_WAVE_RE = re.compile(r"(wave|quarter|period|round|year|month|welle|fieldwork)", re.I)
#: Names of segment columns (matched against the whole name, without _ and case).
_SEGMENT_RE = re.compile(
    r"(customer|respondent|user)?(segment|region|country|state|gender|sex|agegroup|agegrp|age|"
    r"agecat|channel|plan|tariff|type|group|branch|store|market|tenure|language|cluster|class|"
    r"brand|product|sector|industry|department|business|area|city)(s|id|code|cat|grp)?"
)
_DATE_RE = re.compile(r"(date|time|timestamp|day)", re.I)
_WEIGHT_RE = re.compile(r"^(weight|wgt|weights|design_?weight|w)$", re.I)
_NPS_RE = re.compile(r"(nps|recommend|ltr)", re.I)
_QUALTRICS_META = {
    "StartDate", "EndDate", "Status", "IPAddress", "Progress", "Duration (in seconds)",
    "Finished", "RecordedDate", "ResponseId", "RecipientLastName", "RecipientFirstName",
    "RecipientEmail", "ExternalReference", "LocationLatitude", "LocationLongitude",
    "DistributionChannel", "UserLanguage", "Q_RecaptchaScore",
}  # fmt: skip
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_PREFIX_NUM = re.compile(r"^(?P<prefix>[A-Za-z][A-Za-z0-9]*?)[_.]?(?P<num>\d+)$")


@dataclass
class _Column:
    name: str
    role: str  # id, personal, wave, segment, item, weight, ignored
    why: str = ""
    scale: tuple[int, int] | None = None
    labels: dict[int, str] = field(default_factory=dict)
    codes: list[Any] = field(default_factory=list)
    codes_seen: dict[str, int] = field(default_factory=dict)
    values: list[str] = field(default_factory=list)
    value_labels: dict[str, str] = field(default_factory=dict)
    text: str = ""


@dataclass
class StudyDraft:
    """A drafted study spec.

    Attributes
    ----------
    spec : dict
        The spec as data (what the YAML holds, without its comments); valid as it is.
    text : str
        The commented YAML.
    source : Path
        The export the draft was made from.
    findings : list of str
        What the drafter found, one line each (also in the YAML's comments).
    """

    spec: dict[str, Any]
    text: str
    source: Path
    findings: list[str] = field(default_factory=list)

    @property
    def study(self) -> Study:
        """The draft, validated as a study spec."""
        return study_from_dict(self.spec, source=f"draft of {self.source}")

    def write(self, path: str | Path, *, force: bool = False) -> Path:
        """Write the commented YAML to ``path``; an existing file is kept unless ``force``.

        Raises
        ------
        StudySpecError
            When ``path`` exists and ``force`` is not set.
        """
        path = Path(path)
        if path.exists() and not force:
            raise StudySpecError(
                f"{path}: the file exists; cx init does not overwrite a study spec "
                "(give another --out, or --force to replace it)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text, encoding="utf-8")
        return path


def _flow(value: Any) -> str:
    """One YAML value on one line (flow style, quoted where YAML needs it)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
    return text.strip().removesuffix("...").strip()


def _name_of(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_-") or "study"
    return name if name[0].isalnum() else f"s{name}"


def _whole(values: np.ndarray) -> bool:
    return bool(np.all(np.mod(values, 1) == 0))


def _numeric_view(series: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    """The column as numbers, and the text "no answer" tokens it holds (with counts)."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float), {}
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64"), {}
    text = series.astype("string").str.strip()
    tokens = {t: int((text == t).sum()) for t in TEXT_CODES}
    tokens = {t: n for t, n in tokens.items() if n}
    blank = text.isin(TEXT_CODES) | text.isna() | (text == "")
    numbers = pd.to_numeric(text.where(~blank), errors="coerce").astype("float64")
    if (numbers.isna() & ~blank).any():
        return pd.Series(np.nan, index=series.index), {}  # real text: not numeric
    return numbers, tokens


def _split_codes(values: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Separate likely missing-value codes from the answers (the bulk)."""
    distinct = set(np.unique(values).tolist())
    codes = [c for c in NEGATIVE_CODES if c in distinct]
    rest = np.array(sorted(distinct - set(codes)))
    if codes and rest.size and rest.min() < 0:
        codes = [c for c in codes if c < rest.min() - 1]  # a -3..3 scale keeps its -1
        rest = np.array(sorted(distinct - set(codes)))
    high = [c for c in HIGH_CODES if c in distinct]
    for c in sorted(high, reverse=True):
        below = rest[rest < c]
        if below.size and below.max() <= MAX_SCALE_POINTS and c - below.max() >= 10:
            codes.append(c)
            rest = below
    keep = ~np.isin(values, codes)
    return values[keep], [int(c) for c in codes]


def _classify(raw: RawTable) -> list[_Column]:
    frame = raw.frame
    personal = find_personal_data(frame)
    out: list[_Column] = []
    n = len(frame)
    for pos, col in enumerate(frame.columns):
        name = str(col)
        series = frame[col]
        norm = re.sub(r"[^a-z0-9]", "", name.lower())
        text = raw.question_text.get(name, "")
        if name in personal:
            out.append(_Column(name, "personal", personal[name]))
            continue
        gaps = series.isna().to_numpy()
        if not pd.api.types.is_numeric_dtype(series):
            tokens_at = series.astype("string").str.strip().isin(TEXT_CODES)
            gaps |= tokens_at.fillna(False).to_numpy(dtype=bool)
        complete = not gaps.any()
        unique = complete and series.nunique(dropna=False) == n
        if unique and (norm in _ID_NAMES or (pos == 0 and re.fullmatch(r"(Unnamed: 0)?", name))):
            out.append(_Column(name, "id", "a value per row, each different"))
            continue
        if raw.format == "qualtrics" and name in _QUALTRICS_META:
            out.append(_Column(name, "ignored", "Qualtrics metadata"))
            continue
        numbers, tokens = _numeric_view(series)
        answered = numbers.dropna().to_numpy()
        labels = {
            int(k): str(v)
            for k, v in (raw.value_labels.get(name) or {}).items()
            if isinstance(k, int | float) and float(k).is_integer()
        }
        is_numeric = answered.size > 0 and _whole(answered)
        bulk, codes = _split_codes(answered) if is_numeric else (answered, [])
        distinct = np.unique(bulk) if is_numeric else np.array([])
        n_text = series.dropna().astype(str).str.strip().nunique()
        if _WAVE_RE.search(name) and (is_numeric or n_text <= 40):
            values = sorted({_plain_text(v) for v in series.dropna()}, key=_sort_key)
            ok = complete
            out.append(
                _Column(name, "wave" if ok else "ignored",
                        "its name says wave/quarter/period" + ("" if ok else
                        ", but some rows have no value (a wave column needs one in every row)"),
                        values=values)
            )  # fmt: skip
            continue
        if _WEIGHT_RE.match(name) and answered.size == n and (answered > 0).all():
            out.append(_Column(name, "weight", "its name says weight; every value positive"))
            continue
        segment_like = _SEGMENT_RE.fullmatch(norm) is not None
        if not is_numeric and _DATE_RE.search(name) and series.notna().any():
            parsed = pd.to_datetime(series, errors="coerce", format="mixed")
            if parsed.notna().sum() == series.notna().sum():
                out.append(_Column(name, "date", "its values are dates"))
                continue
        if (
            not is_numeric
            or segment_like
            or (is_numeric and distinct.size <= 2)
            or (labels and not _looks_like_scale(labels))
        ):
            values = [_plain_text(v) for v in series.dropna().unique()]
            values = sorted(dict.fromkeys(v for v in values if v), key=_sort_key)
            few = 2 <= len(values) <= MAX_SEGMENT_VALUES
            if few and complete:
                value_labels = {str(k): labels[k] for k in sorted(labels)} if labels else {}
                if value_labels:  # codes the file does not label keep their code
                    value_labels.update({v: v for v in values if v not in value_labels})
                out.append(
                    _Column(name, "segment", "few distinct values" +
                            (", labelled in the file" if labels else ""),
                            values=values, value_labels=value_labels)
                )  # fmt: skip
                continue
            if few:
                why = "few distinct values, but some rows have none (segments need a value in every row)"
            elif not is_numeric:
                why = "text" if n_text > MAX_SEGMENT_VALUES else "one value only"
            else:
                why = "not a scale"
            out.append(_Column(name, "ignored", why))
            continue
        lo, hi = (int(bulk.min()), int(bulk.max())) if bulk.size else (0, 1)
        observed = (lo, hi)
        if 1 < lo <= 3:
            lo = 1  # rating scales start at 0 or 1; nobody answered the lowest points
        if labels:
            in_labels = [k for k in labels if k not in codes]
            lo, hi = min(lo, *in_labels), max(hi, *in_labels)
        if hi - lo + 1 > MAX_SCALE_POINTS or hi - lo < 2 or not _IDENT.match(name):
            why = (
                "its name is not usable as an item name (letters, digits, _ only)"
                if not _IDENT.match(name)
                else f"whole numbers {lo}-{hi}: not a rating scale"
            )
            out.append(_Column(name, "ignored", why))
            continue
        if _NPS_RE.search(name) and 0 <= lo and 8 <= hi <= 10:
            lo, hi = 0, 10  # a likelihood-to-recommend item
        seen = {str(c): int((answered == c).sum()) for c in codes}
        seen.update(tokens)
        out.append(
            _Column(
                name,
                "item",
                scale=(lo, hi),
                labels={k: v for k, v in labels.items() if lo <= k <= hi},
                codes=[*codes, *tokens],
                codes_seen=seen,
                text=text,
                why=f"observed {observed[0]}-{observed[1]}",
            )
        )
    return out


_SCALE_WORDS = re.compile(
    r"(agree|satisf|likely|poor|good|bad|excellent|never|always|often|very|not at all|"
    r"extremely|important|\d)",
    re.I,
)


def _looks_like_scale(labels: dict[int, str]) -> bool:
    return sum(bool(_SCALE_WORDS.search(v)) for v in labels.values()) >= max(1, len(labels) // 2)


def _plain_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        return _plain_text(value.item())
    return str(value).strip()


def _sort_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _groups(items: list[_Column]) -> dict[str, list[_Column]]:
    """Items grouped by name prefix (SAT1, SAT_2 -> SAT; IMG_REPUTATION -> IMG)."""
    groups: dict[str, list[_Column]] = {}
    for item in items:
        m = _PREFIX_NUM.match(item.name)
        if m:
            prefix = m["prefix"]
        elif "_" in item.name.strip("_"):
            prefix = item.name.strip("_").split("_")[0]
        else:
            prefix = item.name
        groups.setdefault(prefix, []).append(item)
    return groups


def draft_study(
    path: str | Path,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    sheet: str | int | None = None,
    spec_dir: str | Path | None = None,
    name: str | None = None,
) -> StudyDraft:
    """Draft a study spec from a survey export.

    Parameters
    ----------
    path : str or Path
        The export: CSV (its delimiter is sniffed unless given), Qualtrics CSV, SPSS
        ``.sav``, Excel or Parquet.
    delimiter, encoding, sheet : optional
        How to read the export (as :func:`cxlib.data.read_table`).
    spec_dir : str or Path, optional
        The folder the spec will be written to: ``source.file`` is relative to it.
    name : str, optional
        The study's name (default: from the file name).

    Returns
    -------
    StudyDraft
        Its ``spec`` validates as it is; ``text`` is the commented YAML.

    Raises
    ------
    DataValidationError
        When the export cannot be read (missing, empty, wrong encoding ...).
    """
    path = Path(path)
    text_file = FORMATS.get(path.suffix.lower()) == "csv" and path.is_file()
    if delimiter is None:
        delimiter = sniff_delimiter(path, encoding) if text_file and path.stat().st_size else ","
    raw = read_table(
        path, delimiter=delimiter, encoding=encoding, sheet=sheet, keep_text=TEXT_CODES
    )
    raw.frame.columns = [str(c).strip() for c in raw.frame.columns]
    columns = _classify(raw)
    by_role: dict[str, list[_Column]] = {}
    for c in columns:
        by_role.setdefault(c.role, []).append(c)
    items = by_role.get("item", [])
    if not items:
        raise StudySpecError(
            f"{path}: no column looks like a rating-scale item (whole numbers on a scale of "
            f"3 to {MAX_SCALE_POINTS} points), so there is nothing to draft a spec from"
        )
    study_name = name or _name_of(path)
    spec_dir = Path(spec_dir) if spec_dir is not None else None
    file = str(path.resolve())
    if spec_dir is not None:
        relative = os.path.relpath(path.resolve(), spec_dir.resolve())
        if not relative.startswith(os.path.join("..", "..")):
            file = relative

    # --- missing codes: study-wide when no item's scale holds them
    code_items: dict[Any, list[str]] = {}
    for item in items:
        for code in item.codes:
            code_items.setdefault(code, []).append(item.name)

    def valid_somewhere(code: Any) -> bool:
        return isinstance(code, int) and any(i.scale[0] <= code <= i.scale[1] for i in items)

    study_codes = [c for c in code_items if not valid_somewhere(c)]
    item_codes = {c: names for c, names in code_items.items() if valid_somewhere(c)}

    # --- scales: one per distinct (min, max, labels)
    scales: dict[str, dict[str, Any]] = {}
    scale_of: dict[str, str] = {}
    groups = _groups(items)
    for members in groups.values():
        lo = min(i.scale[0] for i in members)
        hi = max(i.scale[1] for i in members)
        labels = next((i.labels for i in members if i.labels), {})
        body: dict[str, Any] = {"min": lo, "max": hi}
        if labels:
            body["labels"] = {k: v for k, v in sorted(labels.items()) if lo <= k <= hi}
        key = next((k for k, v in scales.items() if v == body), None)
        if key is None:
            key = f"scale_{lo}_{hi}".replace("-", "m")
            while key in scales:
                key += "b"
            scales[key] = body
        for i in members:
            scale_of[i.name] = key

    constructs: dict[str, dict[str, Any]] = {}
    standalone: dict[str, dict[str, Any]] = {}
    used_names = {c.name for c in columns}

    def item_spec(i: _Column) -> dict[str, Any]:
        body: dict[str, Any] = {"text": i.text or i.name, "scale": scale_of[i.name]}
        own = [c for c in i.codes if c in item_codes]
        if own:
            body["missing_values"] = own
        return body

    for prefix, members in groups.items():
        if len(members) < 2:
            standalone.update({i.name: item_spec(i) for i in members})
            continue
        cname = prefix if _IDENT.match(prefix) else f"C_{prefix}"
        while cname in used_names or cname in constructs:
            cname += "_"
        constructs[cname] = {"items": {i.name: item_spec(i) for i in members}}
    if not constructs:  # a spec needs a construct: the standalone items form one
        constructs["Items"] = {"items": standalone}
        standalone = {}

    ids = by_role.get("id", [])
    spec_columns: dict[str, Any] = {}
    findings: list[str] = []
    if ids:
        first = ids[0].name
        spec_columns["respondent_id"] = "" if re.fullmatch(r"(Unnamed: 0)?", first) else first
        findings.append(
            f"respondent id: {first!r} (a value per row, each different)"
            if spec_columns["respondent_id"]
            else f"respondent id: the unnamed first column ({first!r})"
        )
    else:
        findings.append("no respondent id column found: rows will be numbered 1..N")
    weights = by_role.get("weight", [])
    if weights:
        spec_columns["weight"] = weights[0].name
    waves = by_role.get("wave", [])
    if waves:
        spec_columns["wave"] = waves[0].name
    dates = by_role.get("date", [])
    if dates:
        spec_columns["date"] = dates[0].name
    segments = by_role.get("segment", [])
    if segments:
        spec_columns["segments"] = {
            s.name: (
                {int(k) if k.lstrip("-").isdigit() else k: v for k, v in s.value_labels.items()}
                if s.value_labels
                else [int(v) if v.lstrip("-").isdigit() else v for v in s.values]
            )
            for s in segments
        }
    personal = by_role.get("personal", [])
    if personal:
        spec_columns["personal_data"] = [p.name for p in personal]

    source: dict[str, Any] = {"file": file}
    if delimiter != ",":
        source["delimiter"] = delimiter
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        source["encoding"] = encoding
    if sheet is not None:
        source["sheet"] = sheet
    if waves:
        source["wave_order"] = waves[0].values
    if study_codes:
        source["missing_values"] = study_codes

    kpis: dict[str, str] = {}
    nps = [i for i in items if _NPS_RE.search(i.name) and i.scale == (0, 10)]
    nps.sort(key=lambda i: "nps" not in i.name.lower())
    if nps:
        kpis["nps"] = nps[0].name

    spec: dict[str, Any] = {
        "name": study_name,
        "title": study_name,
        "columns": spec_columns,
        "source": source,
        "scales": scales,
        "constructs": constructs,
    }
    if standalone:
        spec["items"] = standalone
    measurement = [f"{c} =~ {' + '.join(body['items'])}" for c, body in constructs.items()]
    names = list(constructs)
    if len(names) >= 2:  # a structural line to uncomment and edit
        measurement.append(f"# {names[-1]} ~ {' + '.join(names[:-1])}")
    spec["model"] = "\n".join(measurement) + "\n"
    if kpis:
        spec["kpis"] = kpis
    try:
        study_from_dict(spec, source=f"draft of {path}")
    except CxError as exc:  # a drafter bug: say so plainly rather than write a broken spec
        raise StudySpecError(f"cx init could not draft a valid spec from {path}: {exc}") from None

    for code, names in code_items.items():
        n_hit = sum(c.codes_seen.get(str(code), 0) for c in items if c.name in names)
        shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
        where = "declared for every item" if code in study_codes else "declared on those items"
        findings.append(
            f"missing-value code {code!r}: {n_hit} answer(s) in {len(names)} item(s) "
            f"({shown}); {where}"
        )
    text = _render(spec, raw, columns, groups, findings, delimiter)
    return StudyDraft(spec=spec, text=text, source=path, findings=findings)


def _render(
    spec: dict[str, Any],
    raw: RawTable,
    columns: list[_Column],
    groups: dict[str, list[_Column]],
    findings: list[str],
    delimiter: str,
) -> str:
    """The spec as commented YAML."""
    by_role: dict[str, list[_Column]] = {}
    for c in columns:
        by_role.setdefault(c.role, []).append(c)
    why = {c.name: c.why for c in columns}
    L: list[str] = []
    add = L.append
    add(f"# Study spec drafted by `cx init` from {raw.path.name} ({raw.format}, "
        f"{len(raw.frame):,} rows x {raw.frame.shape[1]} columns).")  # fmt: skip
    add("# It is valid as it is; edit it, then run")
    add(f"#   cx validate --study THIS_FILE {raw.path}")
    add(
        "# and read docs/own-study.md for the whole path (validate -> fit -> pipeline -> dashboards)."
    )
    add("#")
    add("# What the drafter found:")
    for f in findings:
        add(f"#   - {f}")
    add("")
    add(f"name: {_flow(spec['name'])}")
    add(f"title: {_flow(spec['title'])}   # shown on pages and reports")
    add("")
    add("columns:")
    cols = spec["columns"]
    if "respondent_id" in cols:
        add(f"  respondent_id: {_flow(cols['respondent_id'])}"
            + ("   # \"\": the file's unnamed first column" if cols["respondent_id"] == "" else ""))  # fmt: skip
    else:
        add("  # respondent_id: COLUMN   # none found: respondents are numbered 1..N in file order")
    unique_others = [c.name for c in by_role.get("id", [])[1:]]
    if unique_others:
        add(f"  # other columns with a value per row: {', '.join(unique_others)}")
    if "weight" in cols:
        add(f"  weight: {_flow(cols['weight'])}")
    else:
        add("  # weight: COLUMN          # respondent weights (positive numbers), if any")
    if "wave" in cols:
        add(f"  wave: {_flow(cols['wave'])}   # waves are ordered by source.wave_order")
    else:
        add("  # wave: COLUMN            # the wave/quarter/period column of a tracker, if any")
    if "date" in cols:
        add(f"  date: {_flow(cols['date'])}   # interview dates")
    else:
        add("  # date: COLUMN            # interview dates, if any")
    if "segments" in cols:
        add("  segments:                # codes -> labels: results say the label")
        for col, values in cols["segments"].items():
            add(f"    {_flow(col)}: {_flow(values)}")
    else:
        add("  # segments: {COLUMN: {1: North, 2: South}}   # none found")
    waves_more = [c.name for c in by_role.get("wave", [])[1:]]
    if waves_more:
        add(f"  # other wave candidates: {', '.join(waves_more)}")
    if "personal_data" in cols:
        add("  personal_data:           # dropped on load, never reach a model or a page")
        for p in by_role.get("personal", []):
            add(f"    - {_flow(p.name)}   # {p.why}")
    add("")
    add("source:")
    for key, value in spec["source"].items():
        note = {
            "file": "   # a relative path resolves against this file's folder",
            "delimiter": "   # sniffed from the header",
            "missing_values": "   # codes that mean 'no answer' on every item",
        }.get(key, "")
        add(f"  {key}: {_flow(value)}{note}")
    if "missing_values" not in spec["source"]:
        add("  # missing_values: [-99, -999, NA]   # none found")
    add("")
    add("# Scales: the range observed in the data (widened by the file's value labels).")
    add("# Widen a range the data do not fully use (e.g. 1-6 observed on a 1-7 scale).")
    add("scales:")
    for key, body in spec["scales"].items():
        add(f"  {key}: {_flow(body)}")
    add("")
    add("# Constructs: items grouped by name prefix. Check each group, rename the constructs")
    add("# (and give them a `label:`), move items between them, or drop what is not a construct.")
    add("# A construct with one item gets its loading fixed at 1 and its residual variance at 0;")
    add("# state `reliability: 0.8` on it to allow for measurement error.")
    add("constructs:")
    for cname, body in spec["constructs"].items():
        add(f"  {cname}:")
        add(f"    # label: {cname}   # the name pages show")
        add("    items:")
        for iname, item in body["items"].items():
            add(f"      {iname}: {_flow(item)}   # {why[iname]}")
    if spec.get("items"):
        add("")
        add("# Items that measure no construct (KPIs such as NPS, overall satisfaction ...).")
        add("items:")
        for iname, item in spec["items"].items():
            add(f"  {iname}: {_flow(item)}   # {why[iname]}")
    add("")
    add("# The model in lavaan syntax: measurement lines (=~) are ready; write the paths")
    add("# between constructs (e.g. `LOY ~ SAT + IMG`) to get driver analyses.")
    add("model: |")
    for line in spec["model"].splitlines():
        add(f"  {line}")
    add("")
    kpis = spec.get("kpis", {})
    add("kpis:" if kpis else "# kpis:")
    if "nps" in kpis:
        add(f"  nps: {_flow(kpis['nps'])}   # a 0-10 likelihood-to-recommend item")
    else:
        add("#   nps: ITEM              # a 0-10 likelihood-to-recommend item")
    add("#   satisfaction: ITEM     # an overall satisfaction item")
    add("#   loyalty: CONSTRUCT     # the loyalty construct")
    add("")
    add(
        "# roles: {target: CONSTRUCT}   # what driver analyses explain (default: the model's final outcome)"
    )
    add(
        "# attributes:                  # expectation/perception pairs; the expectation is optional"
    )
    add("#   speed: {dimension: technical, perception: ITEM}   # gap against the scale midpoint")
    ignored = by_role.get("ignored", [])
    if ignored:
        add("")
        add("# Columns left out of the spec (cx validate lists them as ignored):")
        for c in ignored:
            add(f"#   {c.name}: {c.why}")
    return "\n".join(L) + "\n"
