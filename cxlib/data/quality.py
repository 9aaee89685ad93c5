"""The data-quality report of a validated survey export.

What a researcher checks before modelling: how many respondents per segment and
wave, how much is missing (per item and per respondent), who straight-lines
(the same answer to a whole grid), and which items bunch at the floor or ceiling
of their scale (then top-box shares say more than means, and the item
discriminates poorly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from cxlib import config

if TYPE_CHECKING:
    from cxlib.study import Study

__all__ = ["QualityReport", "Responses", "quality_report", "straightlining"]


class Responses(Protocol):
    """What the report reads of validated responses: a :class:`~cxlib.data.SurveyData`.

    Declared here rather than imported, so that this module does not import the
    package that imports it.
    """

    frame: pd.DataFrame
    study: Study
    source: Path
    format: str
    encoding: str | None
    dropped_personal_data: dict[str, str]
    ignored_columns: list[str]
    missing_codes: dict[str, dict[str, int]]
    notes: list[str]


@dataclass
class QualityReport:
    """Data-quality figures of one export (aggregates only: no respondent rows).

    Attributes
    ----------
    n_respondents, n_items : int
        Rows and items.
    segments : dict
        Per segment column, respondents per segment value.
    waves : dict
        Respondents per wave.
    missing_by_item : pandas.Series
        Share of missing answers per item.
    missing_by_respondent : dict
        ``complete`` (share of respondents with no missing answer), ``mean`` (mean
        share missing), ``over_half`` (share missing more than half the items).
    straightliners : int
        Respondents who gave one answer to every item of a grid.
    floor_ceiling : pandas.DataFrame
        Per item: share at the scale's floor and ceiling, and a flag when either
        reaches ``config.FLOOR_CEILING_SHARE``.
    missing_codes : dict
        Per missing-value code, how many answers it turned missing in all
        (``answers``) and per item (``items``).
    missing_tokens : dict
        Per column, how many cells of the file each "no answer" text (``"NA"``,
        ``"#N/A"``, ``"null"`` ...) turned missing.
    excluded_rows : dict
        Rows of the file left out on load, by reason (Qualtrics ``preview``, ``test``,
        ``unfinished``).
    notes : list of str
        What loading did and how the spec will be read (row numbers as ids, value
        labels as segment labels, single-item constructs).
    """

    study: str
    source: str
    format: str
    n_respondents: int
    n_items: int
    segments: dict[str, dict[str, int]]
    waves: dict[str, int]
    missing_by_item: pd.Series
    missing_by_respondent: dict[str, float]
    straightliners: int
    floor_ceiling: pd.DataFrame
    dropped_personal_data: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    encoding: str | None = None
    missing_codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing_tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    excluded_rows: dict[str, int] = field(default_factory=dict)

    @property
    def flagged_items(self) -> list[str]:
        """Items with a floor or ceiling effect."""
        fc = self.floor_ceiling
        return fc.index[fc["flag"] != ""].tolist()

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "study": self.study,
            "source": self.source,
            "format": self.format,
            "encoding": self.encoding,
            "n_respondents": self.n_respondents,
            "n_items": self.n_items,
            "segments": self.segments,
            "waves": self.waves,
            "missing_by_item": {k: round(float(v), 4) for k, v in self.missing_by_item.items()},
            "missing_by_respondent": {
                k: round(v, 4) for k, v in self.missing_by_respondent.items()
            },
            "straightliners": self.straightliners,
            "floor_ceiling": self.floor_ceiling.reset_index().to_dict(orient="records"),
            "dropped_personal_data": self.dropped_personal_data,
            "ignored_columns": self.ignored_columns,
            "missing_codes": self.missing_codes,
            "missing_tokens": self.missing_tokens,
            "excluded_rows": self.excluded_rows,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=2, default=float)

    def to_text(self, max_items: int = 8) -> str:
        """A short report for the terminal or a notebook."""
        n = self.n_respondents
        out = [
            f"Data quality — study {self.study!r}",
            f"  file        {self.source} ({self.format}{', ' + self.encoding if self.encoding else ''})",
            f"  respondents {n:,}   items {self.n_items}",
        ]
        for col, counts in self.segments.items():
            out.append(f"  {col:<11} " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        if self.waves:
            out.append("  waves       " + ", ".join(f"{k} {v:,}" for k, v in self.waves.items()))
        mr = self.missing_by_respondent
        out.append(
            f"  missing     {self.missing_by_item.mean():.1%} of answers; "
            f"{mr['complete']:.1%} of respondents answered every item; "
            f"{mr['over_half']:.1%} skipped more than half"
        )
        top = self.missing_by_item.sort_values(ascending=False).head(max_items)
        top = top[top > 0]
        if len(top):
            out.append(
                "              most missing: " + ", ".join(f"{k} {v:.0%}" for k, v in top.items())
            )
        for code, hit in self.missing_codes.items():
            items = hit["items"]
            shown = ", ".join(f"{k} {v:,}" for k, v in list(items.items())[:max_items])
            more = f" ... and {len(items) - max_items} more" if len(items) > max_items else ""
            out.append(
                f"              code {code}: {hit['answers']:,} answer(s) turned missing "
                f"in {len(items)} item(s) ({shown}{more})"
            )
        if self.missing_tokens:
            by_text: dict[str, int] = {}
            for counts in self.missing_tokens.values():
                for text, k in counts.items():
                    by_text[text] = by_text.get(text, 0) + k
            texts = ", ".join(f"{t!r} {k:,}" for t, k in by_text.items())
            shown = ", ".join(
                f"{col} {sum(c.values()):,}"
                for col, c in list(self.missing_tokens.items())[:max_items]
            )
            more = len(self.missing_tokens) - max_items
            out.append(
                f"              texts read as missing: {texts} in {len(self.missing_tokens)} "
                f"column(s) ({shown}{f' ... and {more} more' if more > 0 else ''})"
            )
        if self.excluded_rows:
            out.append(
                "  left out     "
                + ", ".join(f"{n:,} {kind}" for kind, n in self.excluded_rows.items())
                + " response(s) (Qualtrics; not counted as respondents)"
            )
        out.append(
            f"  straight-lining  {self.straightliners:,} respondents ({self.straightliners / max(n, 1):.1%}) "
            f"gave one answer to a whole grid of {config.STRAIGHTLINE_MIN_ITEMS}+ items"
        )
        flagged = self.floor_ceiling[self.floor_ceiling["flag"] != ""]
        if len(flagged):
            out.append(
                f"  floor/ceiling    {len(flagged)} item(s) with {config.FLOOR_CEILING_SHARE:.0%}+ of answers "
                "at an end of the scale:"
            )
            for item, row in flagged.head(max_items).iterrows():
                out.append(
                    f"                   {item:<22} floor {row['floor']:.0%}  ceiling {row['ceiling']:.0%}"
                )
            if len(flagged) > max_items:
                out.append(f"                   ... and {len(flagged) - max_items} more")
        else:
            out.append("  floor/ceiling    none")
        if self.dropped_personal_data:
            out.append(
                "  personal data    dropped on load: "
                + ", ".join(f"{c} ({why})" for c, why in self.dropped_personal_data.items())
            )
        if self.ignored_columns:
            shown = ", ".join(self.ignored_columns[:8]) + (
                " ..." if len(self.ignored_columns) > 8 else ""
            )
            out.append(f"  not in the spec  {len(self.ignored_columns)} column(s) ignored: {shown}")
        for i, note in enumerate(self.notes):
            out.append(f"  {'notes' if i == 0 else '':<16} {note}")
        return "\n".join(out)


def straightlining(data: Responses) -> pd.Series:
    """Which respondents straight-line: one answer to every item of a grid.

    A grid is a set of items sharing a scale (as surveys ask them); only grids of
    at least ``config.STRAIGHTLINE_MIN_ITEMS`` items count, and a respondent must
    have answered at least that many of them. Answers are compared as given
    (before reverse coding), since a straight-liner ignores reversed wording.
    """
    study = data.study
    grids: dict[tuple[int, int], list[str]] = {}
    for name, item in study.all_items.items():
        grids.setdefault((item.scale.min, item.scale.max), []).append(name)
    flag = np.zeros(len(data.frame), dtype=bool)
    for (lo, hi), names in grids.items():
        if len(names) < config.STRAIGHTLINE_MIN_ITEMS:
            continue
        block = data.frame[names].to_numpy(dtype=float, copy=True)
        for j, name in enumerate(names):
            if study.item(name).reverse:
                block[:, j] = lo + hi - block[:, j]
        answered = np.isfinite(block).sum(axis=1)
        with np.errstate(invalid="ignore"):
            same = np.nanmax(np.where(np.isfinite(block), block, -np.inf), axis=1) == np.nanmin(
                np.where(np.isfinite(block), block, np.inf), axis=1
            )
        flag |= same & (answered >= config.STRAIGHTLINE_MIN_ITEMS)
    return pd.Series(flag, index=data.frame.index, name="straightlining")


def quality_report(data: Responses) -> QualityReport:
    """Compute the data-quality report of validated responses.

    Parameters
    ----------
    data : SurveyData
        Validated responses.

    Returns
    -------
    QualityReport
    """
    study = data.study
    frame = data.frame
    items = frame[study.item_names]
    values = items.to_numpy(dtype=float)
    missing = np.isnan(values)
    missing_by_item = pd.Series(missing.mean(axis=0), index=study.item_names, name="missing")
    per_resp = missing.mean(axis=1)
    fc_rows = []
    for j, (name, item) in enumerate(study.all_items.items()):
        col = values[:, j]
        answered = col[~missing[:, j]]
        raw = item.scale.min + item.scale.max - answered if item.reverse else answered
        n_ans = max(answered.size, 1)
        floor = float((raw == item.scale.min).sum() / n_ans)
        ceiling = float((raw == item.scale.max).sum() / n_ans)
        flag = " & ".join(
            f
            for f, v in (("floor", floor), ("ceiling", ceiling))
            if v >= config.FLOOR_CEILING_SHARE
        )
        fc_rows.append((name, str(item.scale), floor, ceiling, flag))
    floor_ceiling = pd.DataFrame(
        fc_rows, columns=["item", "scale", "floor", "ceiling", "flag"]
    ).set_index("item")
    segments = {
        col: {str(k): int(v) for k, v in frame[col].value_counts(sort=False).items()}
        for col in study.segment_columns
    }
    waves = {}
    if study.columns.wave:
        waves = {
            str(k): int(v) for k, v in frame[study.columns.wave].value_counts(sort=False).items()
        }
    codes: dict[str, dict[str, Any]] = {}
    for item, counts in (getattr(data, "missing_codes", None) or {}).items():
        for code, n in counts.items():
            hit = codes.setdefault(code, {"answers": 0, "items": {}})
            hit["answers"] += int(n)
            hit["items"][item] = int(n)
    notes = [*(getattr(data, "notes", None) or []), *study.single_item_notes]
    return QualityReport(
        study=study.name,
        source=str(data.source),
        format=data.format,
        encoding=data.encoding,
        n_respondents=len(frame),
        n_items=len(study.item_names),
        segments=segments,
        waves=waves,
        missing_by_item=missing_by_item,
        missing_by_respondent={
            "complete": float((per_resp == 0).mean()),
            "mean": float(per_resp.mean()),
            "over_half": float((per_resp > 0.5).mean()),
        },
        straightliners=int(straightlining(data).sum()),
        floor_ceiling=floor_ceiling,
        dropped_personal_data=dict(data.dropped_personal_data),
        ignored_columns=list(data.ignored_columns),
        missing_codes=codes,
        notes=notes,
        missing_tokens=dict(getattr(data, "missing_tokens", None) or {}),
        excluded_rows=dict(getattr(data, "excluded_rows", None) or {}),
    )
