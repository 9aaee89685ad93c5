"""Study specs: one YAML file per study, validated before anything runs.

A study spec says which columns of the survey export hold what (respondent id,
weight, segments, wave), which items measure which construct on which scale, the
expectation/perception pairs of each attribute, and the structural model in
lavaan syntax. See ``data/telecom/study.yaml`` for a complete example.

>>> from cxlib.study import load_study
>>> study = load_study("data/telecom/study.yaml")      # doctest: +SKIP
>>> study.constructs["Image"].item_names               # doctest: +SKIP
['IMG_REPUTATION', 'IMG_INNOVATIVE', 'IMG_TRUSTWORTHY']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cxlib import config
from cxlib.errors import (
    AlertRuleError,
    ModelSyntaxError,
    NotApplicable,
    StudySpecError,
    did_you_mean,
)
from cxlib.syntax import ParsedModel, parse_model

__all__ = [
    "DIGITAL_METRICS",
    "KPI_NAMES",
    "AlertRule",
    "Attribute",
    "EVENT_COLUMNS",
    "EVENT_THRESHOLD_NAMES",
    "EventsSource",
    "FeedbackSource",
    "Columns",
    "Construct",
    "Item",
    "MissingCode",
    "ROW_NUMBER_ID",
    "Kpis",
    "ParsedRule",
    "MAX_SPEC_BYTES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "ROLES",
    "Roles",
    "Scale",
    "Study",
    "YamlLimitError",
    "check_yaml_limits",
    "code_number",
    "is_valid_answer",
    "load_study",
    "load_yaml",
    "parse_rule",
    "require",
    "study_from_dict",
]

#: Allowed values of the item tags cxlib reads; other tags are free text.
KNOWN_TAGS: dict[str, tuple[str, ...]] = {
    "dimension": ("technical", "emotional"),
    "channel": ("face_to_face", "personal_distant", "electronic"),
    "stage": ("before", "during", "after"),
    "role": ("expectation", "perception"),
}

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scale(_Strict):
    """A response scale: integer answers from ``min`` to ``max``.

    Examples: 1-5 agreement, 1-7 agreement, 0-10 likelihood to recommend.
    """

    min: int
    max: int
    labels: dict[int, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> Scale:
        if self.min >= self.max:
            raise ValueError(f"a scale needs min < max, got min={self.min}, max={self.max}")
        bad = [k for k in self.labels if not self.min <= k <= self.max]
        if bad:
            raise ValueError(f"labels for values {bad} lie outside the scale {self.min}-{self.max}")
        return self

    @property
    def n_points(self) -> int:
        """Number of answer options."""
        return self.max - self.min + 1

    @property
    def midpoint(self) -> float:
        """The scale's midpoint."""
        return (self.min + self.max) / 2

    def __str__(self) -> str:
        return f"{self.min}-{self.max}"


#: A missing-value code as a study spec gives it: a number (``-99``) or a text (``"NA"``).
MissingCode = int | float | str


def code_number(code: MissingCode) -> float | None:
    """A missing-value code as a number (``"-99"`` -> -99.0), or None for a text code."""
    if isinstance(code, bool):
        return None
    if isinstance(code, int | float):
        return float(code)
    try:
        return float(str(code).strip())
    except ValueError:
        return None


def is_valid_answer(code: MissingCode, scale: Scale) -> bool:
    """Whether a missing-value code is also a valid answer on ``scale``.

    A number (or a text that reads as one) is a valid answer when it is a whole number
    from ``scale.min`` to ``scale.max``; a text when it is one of the scale's labels.
    """
    number = code_number(code)
    if number is not None:
        return number.is_integer() and scale.min <= number <= scale.max
    text = str(code).strip().lower()
    return any(text == str(label).strip().lower() for label in scale.labels.values())


class Item(_Strict):
    """A survey item (a question): its text, scale, coding and tags.

    ``missing_values`` are codes that mean "no answer" on this item (e.g. ``[98]`` for
    "don't know"), in addition to the study's ``source.missing_values``.
    """

    name: str = ""
    text: str
    scale: Scale
    reverse: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    missing_values: list[MissingCode] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _known_tag_values(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, allowed in KNOWN_TAGS.items():
            if key in tags and tags[key] not in allowed:
                raise ValueError(f"tag {key}={tags[key]!r} is not one of {', '.join(allowed)}")
        return tags

    @property
    def dimension(self) -> str | None:
        """``technical`` or ``emotional`` when tagged."""
        return self.tags.get("dimension")


class Construct(_Strict):
    """A latent construct and the items that measure it."""

    name: str = ""
    label: str = ""
    description: str = ""
    items: dict[str, Item]
    reliability: float | None = Field(
        default=None,
        description=(
            "Single-item constructs only: the item's stated reliability, in (0, 1]. The "
            "residual variance is fixed at (1 - reliability) x the item's variance; without "
            "it the item measures its construct without error (as lavaan, SmartPLS, seminr)."
        ),
    )

    @field_validator("items")
    @classmethod
    def _not_empty(cls, items: dict[str, Item]) -> dict[str, Item]:
        if not items:
            raise ValueError("a construct needs at least one item; this one has none")
        return items

    @model_validator(mode="after")
    def _reliability_of_one_item(self) -> Construct:
        if self.reliability is None:
            return self
        if not 0 < self.reliability <= 1:
            raise ValueError(
                f"reliability {self.reliability} must lie in (0, 1]: the share of the item's "
                "variance that is the construct's (1 = measured without error)"
            )
        if len(self.items) != 1:
            raise ValueError(
                f"reliability is stated for single-item constructs; this one has "
                f"{len(self.items)} items, whose reliability the model estimates"
            )
        return self

    @property
    def single_item(self) -> bool:
        """Whether one item measures the construct."""
        return len(self.items) == 1

    @property
    def display_name(self) -> str:
        """The label to show (the construct's name when the spec gives none)."""
        return self.label or self.name

    @property
    def item_names(self) -> list[str]:
        """The construct's item (column) names, in spec order."""
        return list(self.items)


class Attribute(_Strict):
    """An attribute customers hold expectations about (e.g. reliability, empathy).

    ``perception`` is required; ``expectation`` may be left out, in which case the
    gap is measured against the scale midpoint or the segment norm.
    """

    name: str = ""
    label: str = ""
    dimension: Literal["technical", "emotional"]
    perception: str
    expectation: str | None = None


def _code_text(value: Any) -> str:
    """A segment code as text: ``1`` and ``1.0`` -> ``"1"``, ``" North "`` -> ``"North"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


#: The name of the respondent id column in loaded data when the spec names none.
ROW_NUMBER_ID = "respondent_id"


class Columns(_Strict):
    """Which columns of the data hold what.

    ``respondent_id`` names the id column; left out (or ``null``), respondents are
    numbered 1..N in file order; ``""`` means the file's unnamed first column (a CSV
    written with a pandas index has the header ``""``, read as ``"Unnamed: 0"``).

    ``segments`` maps each segment column to its values: a list (``[A, B]``, or codes
    such as ``[1, 2]``), a mapping of codes to labels (``{1: North, 2: South}``: the
    loaded data and every result say "North"), or ``null`` (whatever the data hold;
    SPSS value labels name the codes). The mapping form is kept as ``segments`` (the
    labels) plus ``segment_labels`` (code -> label), which may also be given directly.
    """

    respondent_id: str | None = None
    weight: str | None = None
    wave: str | None = None
    date: str | None = None
    segments: dict[str, list[str] | None] = Field(default_factory=dict)
    segment_labels: dict[str, dict[str, str]] = Field(default_factory=dict)
    personal_data: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _segment_codes(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        segments, given = raw.get("segments"), raw.get("segment_labels")
        if not isinstance(segments, dict) or not isinstance(given or {}, dict):
            return raw
        labels: dict[Any, Any] = {}
        for col, mapping in (given or {}).items():
            labels[col] = (
                {_code_text(k): _code_text(v) for k, v in mapping.items()}
                if isinstance(mapping, dict)
                else mapping
            )
        out: dict[Any, Any] = {}
        for col, values in segments.items():
            if isinstance(values, dict):
                mapping = {_code_text(k): _code_text(v) for k, v in values.items()}
                if isinstance(labels.get(col), dict):
                    mapping = {**labels[col], **mapping}
                labels[col] = mapping
                values = list(mapping)
            if isinstance(values, list | tuple):
                lookup = labels[col] if isinstance(labels.get(col), dict) else {}
                values = list(
                    dict.fromkeys(lookup.get(_code_text(v), _code_text(v)) for v in values)
                )
            out[col] = values
        return {**raw, "segments": out, **({"segment_labels": labels} if labels else {})}

    @model_validator(mode="after")
    def _labelled_columns_are_segments(self) -> Columns:
        for col in self.segment_labels:
            if col not in self.segments:
                raise ValueError(
                    f"segment_labels.{col}: {col!r} is not a segment column"
                    + did_you_mean(col, self.segments)
                )
        return self

    @property
    def id_column(self) -> str:
        """The respondent id column's name in loaded data (``respondent_id`` when numbered)."""
        return self.respondent_id or ROW_NUMBER_ID

    @property
    def rows_numbered(self) -> bool:
        """Whether respondents are numbered 1..N because the spec names no id column."""
        return self.respondent_id is None


class Kpis(_Strict):
    """Which items and constructs the headline KPIs are computed from.

    ``nps`` names a 0-10 likelihood-to-recommend item; ``satisfaction`` an item whose
    mean, top-box and top-2-box shares are reported; ``loyalty`` a construct whose
    items (rescaled to 0-100 and averaged) give the loyalty index.
    """

    nps: str | None = None
    satisfaction: str | None = None
    loyalty: str | None = None


class Roles(_Strict):
    """What the constructs are for, beyond the KPIs (each optional).

    ``target`` is the construct driver priorities, what-if analyses, touchpoint gains
    and budget allocation explain; by default the loyalty KPI's construct when the
    structural model explains it, else the model's final outcome (an explained construct
    that explains nothing further). ``touchpoint_outcome`` is the overall evaluation the
    touchpoints feed directly (default: the satisfaction KPI's construct, else the
    target). ``expectations_outcome`` is what expectation gaps are related to (default:
    the target).
    """

    target: str | None = None
    touchpoint_outcome: str | None = None
    expectations_outcome: str | None = None


#: What a notebook, pipeline step or dashboard section can need from a study, and how
#: to add it when the study lacks it (see :meth:`Study.unmet`).
ROLES: dict[str, str] = {
    "structural_model": "write the paths between constructs under `model:` in lavaan syntax "
    "(e.g. `Loyalty ~ Image + Satisfaction`)",
    "target": "write a structural model under `model:` (its final outcome becomes the target) "
    "or name one under `roles: {target: CONSTRUCT}`",
    "attributes": "declare expectation/perception pairs under `attributes:` (an attribute "
    "needs a perception item; the expectation item is optional)",
    "touchpoints": "tag the journey's items with "
    "`tags: {touchpoint: NAME, channel: face_to_face|personal_distant|electronic, "
    "stage: before|during|after}`",
    "segments": "name the segment column(s) under `columns: {segments: {COLUMN: [values]}}`",
    "waves": "name the wave column under `columns: {wave: COLUMN}`",
    "nps": "name a 0-10 likelihood-to-recommend item under `kpis: {nps: ITEM}`",
    "satisfaction": "name an overall satisfaction item under `kpis: {satisfaction: ITEM}`",
    "loyalty": "name the loyalty construct under `kpis: {loyalty: CONSTRUCT}`",
    "kpis": "name at least one KPI under `kpis:` (nps, satisfaction or loyalty)",
    "touchpoint_costs": "name a CSV of touchpoint costs under `source: {touchpoint_costs: FILE}`",
    "internal_assessment": "name a CSV of the company's own touchpoint ratings under "
    "`source: {internal_assessment: FILE}`",
    "events": "declare the session event log under `source: {events: {file: ..., pages: {...}}}`",
}


# ------------------------------------------------------------------ session events
#: The columns of a session event log, by the name cxlib gives them (``columns:`` of
#: ``source.events`` renames them from the file's names). ``session_id``, ``timestamp``
#: and ``event`` are required; the others are optional.
EVENT_COLUMNS = (
    "session_id",
    "respondent_id",
    "timestamp",
    "event",
    "page",
    "element",
    "x",
    "y",
    "touchpoint",
    "segment",
)

#: The thresholds of the behaviour signals a spec may override under
#: ``source.events.thresholds`` (the fields of :class:`cxlib.data.signals.SignalThresholds`,
#: listed here because the spec is read below the data layer; a test keeps them equal).
EVENT_THRESHOLD_NAMES = (
    "rage_click_min_clicks",
    "rage_click_window_s",
    "page_loop_min_views",
    "page_loop_window_s",
    "dead_click_window_s",
    "quick_back_window_s",
    "stillness_min_s",
)


class FeedbackSource(_Strict):
    """The intercept survey of sessions: one rating per surveyed session.

    ``file`` (CSV or Parquet, resolved against the spec's folder) holds the columns named
    by ``session_id``, ``rating`` and optionally ``weight``; ``scale`` names one of the
    study's ``scales:`` the rating is given on (e.g. a 1-5 or 0-10 scale).
    """

    file: str
    session_id: str = "session_id"
    rating: str = "rating"
    scale: str
    weight: str | None = None


class EventsSource(_Strict):
    """The session event log of the electronic touchpoints (web and app sessions).

    ``file`` is a Parquet or CSV file with one row per event, resolved against the spec's
    folder. ``columns`` renames the log's columns to cxlib's names (``{cxlib name: file
    column}``, names in :data:`EVENT_COLUMNS`). ``pages`` maps page patterns (an exact page
    such as ``/web/compare`` or a glob such as ``/app/order*``; the query string and
    fragment are left out before matching) to the study's touchpoints; the first pattern
    that matches, in spec order, wins. A touchpoint named here must be one an item is
    tagged with, and an electronic one: a touchpoint whose items are tagged with another
    channel (``face_to_face``, ``personal_distant``) is refused, since web and app
    sessions cannot reach it. ``completion`` maps a touchpoint to the pattern of its
    completion page (the task is done when the session views it). ``feedback`` names
    the intercept survey's ratings (see :class:`FeedbackSource`). Naive timestamps are
    read in ``timezone`` (an IANA name, default UTC). ``thresholds`` overrides the
    signal thresholds (names in :data:`EVENT_THRESHOLD_NAMES`).
    """

    file: str
    columns: dict[str, str] = Field(default_factory=dict)
    pages: dict[str, str] = Field(default_factory=dict)
    completion: dict[str, str] = Field(default_factory=dict)
    feedback: FeedbackSource | None = None
    timezone: str = "UTC"
    thresholds: dict[str, float] = Field(default_factory=dict)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        for name in columns:
            if name not in EVENT_COLUMNS:
                raise ValueError(
                    f"columns.{name}: {name!r} is not a column of an event log (use one of "
                    f"{', '.join(EVENT_COLUMNS)})" + did_you_mean(name, EVENT_COLUMNS)
                )
        return columns

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, thresholds: dict[str, float]) -> dict[str, float]:
        for name, value in thresholds.items():
            if name not in EVENT_THRESHOLD_NAMES:
                raise ValueError(
                    f"thresholds.{name}: unknown threshold {name!r} (use one of "
                    f"{', '.join(EVENT_THRESHOLD_NAMES)})"
                    + did_you_mean(name, EVENT_THRESHOLD_NAMES)
                )
            if not value > 0:
                raise ValueError(f"thresholds.{name}: {value} must be positive")
        return thresholds

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        from zoneinfo import available_timezones

        zones = available_timezones() | {"UTC"}
        if timezone not in zones:
            raise ValueError(
                f"timezone {timezone!r} is not an IANA time zone name (e.g. 'UTC', "
                "'Europe/Berlin')" + did_you_mean(timezone, sorted(zones))
            )
        return timezone

    def resolved(self, folder: Path | None) -> EventsSource:
        """The same source with ``file`` (and the feedback file) resolved against ``folder``."""
        if folder is None:
            return self

        def resolve(value: str) -> str:
            file = Path(value)
            return str(file if file.is_absolute() else folder / file)

        update: dict[str, Any] = {"file": resolve(self.file)}
        if self.feedback is not None:
            update["feedback"] = self.feedback.model_copy(
                update={"file": resolve(self.feedback.file)}
            )
        return self.model_copy(update=update)


class Source(_Strict):
    """Where the study's responses live, and how the file is written.

    ``delimiter`` and ``encoding`` describe text exports; cxlib does not guess
    them silently, so a file that does not match says so and names the fix.
    ``wave_order`` orders waves chronologically (else they sort as text).
    ``touchpoint_costs`` names a CSV of the cost of one point of each touchpoint's
    performance (``touchpoint, cost_per_point[, max_improvement]``) and
    ``internal_assessment`` a CSV of the company's own rating of each touchpoint
    (``touchpoint, rating[, rater]``); both resolve against the spec's folder.
    ``sheet`` chooses the Excel sheet (a workbook with several is refused without it).
    Qualtrics preview/test responses (``DistributionChannel``) and unfinished ones
    (``Finished`` = 0/False) are left out on load unless ``keep_preview`` /
    ``keep_unfinished``; the data-quality report counts them.
    """

    file: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    sheet: str | None = Field(
        default=None,
        description="The Excel sheet holding the responses (required when a workbook has "
        "several sheets).",
    )
    keep_unfinished: bool = Field(
        default=False,
        description="Keep Qualtrics responses with Finished = 0/False (left out by default, "
        "and counted in the data-quality report).",
    )
    keep_preview: bool = Field(
        default=False,
        description="Keep Qualtrics preview and test responses (DistributionChannel "
        "'preview' or 'test'; left out by default, and counted in the data-quality report).",
    )
    wave_order: list[str] = Field(default_factory=list)
    events: EventsSource | None = Field(
        default=None,
        description="The session event log of the electronic touchpoints (see EventsSource).",
    )
    touchpoint_costs: str | None = None
    internal_assessment: str | None = None
    missing_values: list[MissingCode] = Field(
        default_factory=list,
        description=(
            "Codes that mean 'no answer' on every item (e.g. [-99, -999, 'NA']); an item's "
            "own missing_values add to them. A code may not be a valid answer on an item's scale."
        ),
    )

    @field_validator("wave_order", mode="before")
    @classmethod
    def _waves_as_text(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [_code_text(v) for v in value]
        return value


# ------------------------------------------------------------------ alert rules
#: The KPIs alert rules can name (what :mod:`cxlib.insights.kpis` estimates), in order.
KPI_NAMES = (
    "nps",
    "promoters",
    "passives",
    "detractors",
    "satisfaction_mean",
    "satisfaction_top_box",
    "satisfaction_top2_box",
    "loyalty_index",
)
#: The digital-experience metrics alert rules can name, per touchpoint: a signal's rate
#: per session (rage clicks, ...), the digital experience score (0-100) and the share of
#: sessions dissatisfied. 06-digital-experience evaluates these rules.
DIGITAL_METRICS = (
    "rage_click_rate",
    "dead_click_rate",
    "quick_back_rate",
    "page_loop_rate",
    "form_error_rate",
    "digital_score",
    "dissatisfied_share",
)
_KPI_ALIASES = {
    "satisfaction": "satisfaction_mean",
    "loyalty": "loyalty_index",
    "top_box": "satisfaction_top_box",
    "top2_box": "satisfaction_top2_box",
}
_NUM = r"[+-]?\d+(?:\.\d+)?"
_PROB_RULE = re.compile(
    rf"^P\(\s*(?P<inner>.+?)\s*\)\s*(?P<op>>=|<=|>|<)\s*(?P<prob>{_NUM})\s*$", re.IGNORECASE
)
_INNER = re.compile(
    rf"^(?:(?P<change>change)\(\s*(?P<ckpi>[A-Za-z_0-9]+)\s*\)|(?P<kpi>[A-Za-z_0-9]+))"
    rf"\s*(?P<op>>=|<=|>|<)\s*(?P<value>{_NUM})$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ParsedRule:
    """A rule read from its text.

    ``kind`` is ``threshold`` (``P(kpi op value) op prob``), ``change``
    (``P(change(kpi) op value) op prob``), ``fix_first`` or ``diagnostics``.
    """

    kind: Literal["threshold", "change", "fix_first", "diagnostics", "digital"]
    kpi: str | None = None
    op: str | None = None
    value: float | None = None
    prob_op: str = ">"
    prob: float = 0.0


def _kpi_name(name: str, text: str) -> str:
    key = _KPI_ALIASES.get(name.lower(), name.lower())
    if key not in KPI_NAMES:
        raise AlertRuleError(
            f"alert rule {text!r}: unknown KPI {name!r}; use one of {', '.join(KPI_NAMES)}, "
            f"or a digital metric: {', '.join(DIGITAL_METRICS)}"
        )
    return key


def parse_rule(text: str) -> ParsedRule:
    """Parse an alert rule.

    Parameters
    ----------
    text : str
        E.g. ``"P(NPS < 20) > 0.9"`` or ``"P(change(NPS) < -3) > 0.95"``.

    Returns
    -------
    ParsedRule

    Raises
    ------
    AlertRuleError
        Saying what the rule should look like.
    """
    if not isinstance(text, str) or not text.strip():
        raise AlertRuleError("an alert rule must be a non-empty text such as 'P(NPS < 20) > 0.9'")
    stripped = text.strip()
    if stripped.lower() in ("diagnostics_failed", "diagnostics failed"):
        return ParsedRule("diagnostics")
    match = _PROB_RULE.match(stripped)
    if not match:
        raise AlertRuleError(
            f"cannot read the alert rule {text!r}; write 'P(<kpi> <op> <value>) > <probability>' "
            "(e.g. 'P(NPS < 20) > 0.9'), 'P(change(<kpi>) < <value>) > <probability>', "
            "'P(fix_first) > <probability>' or 'diagnostics_failed'"
        )
    prob = float(match["prob"])
    if not 0 <= prob <= 1:
        raise AlertRuleError(
            f"alert rule {text!r}: the probability {prob} must lie between 0 and 1"
        )
    inner = match["inner"]
    if inner.strip().lower() == "fix_first":
        return ParsedRule("fix_first", prob_op=match["op"], prob=prob)
    m = _INNER.match(inner.strip())
    if not m:
        raise AlertRuleError(
            f"alert rule {text!r}: inside P(...) write '<kpi> <op> <value>' or "
            f"'change(<kpi>) <op> <value>', got {inner!r}"
        )
    name = (m["ckpi"] or m["kpi"]).lower()
    if name in DIGITAL_METRICS:
        if m["change"]:
            raise AlertRuleError(
                f"alert rule {text!r}: change() is for survey KPIs between waves; a digital "
                f"metric ({name}) is compared with a value, e.g. 'P({name} > 0.3) > 0.9'"
            )
        return ParsedRule("digital", name, m["op"], float(m["value"]), match["op"], prob)
    if m["change"]:
        return ParsedRule(
            "change", _kpi_name(m["ckpi"], text), m["op"], float(m["value"]), match["op"], prob
        )
    return ParsedRule(
        "threshold", _kpi_name(m["kpi"], text), m["op"], float(m["value"]), match["op"], prob
    )


class AlertRule(BaseModel):
    """An alert rule as declared in a study or pipeline YAML.

    The rule's text is read (:func:`parse_rule`) when the spec is validated; the
    rules are evaluated by :func:`cxlib.insights.alerts.evaluate_alerts`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rule: str
    segments: list[str] | None = None
    waves: list[str] | Literal["latest", "all"] = "latest"
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str = Field(default="", description="Optional text shown with the alert.")

    @field_validator("rule")
    @classmethod
    def _parses(cls, rule: str) -> str:
        try:
            parse_rule(rule)
        except AlertRuleError as exc:
            raise ValueError(str(exc)) from None
        return rule

    @property
    def parsed(self) -> ParsedRule:
        """The rule, read."""
        return parse_rule(self.rule)


class Study(_Strict):
    """A validated study spec.

    Build one with :func:`load_study` (from YAML) or :func:`study_from_dict`.
    """

    name: str
    title: str = ""
    description: str = ""
    columns: Columns
    source: Source = Field(default_factory=Source)
    scales: dict[str, Scale] = Field(default_factory=dict)
    constructs: dict[str, Construct]
    items: dict[str, Item] = Field(default_factory=dict)
    attributes: dict[str, Attribute] = Field(default_factory=dict)
    model: str = ""
    kpis: Kpis = Field(default_factory=Kpis)
    roles: Roles = Field(default_factory=Roles)
    alerts: list[AlertRule] = Field(default_factory=list)
    min_cell_size: int = Field(default=config.MIN_CELL_SIZE, ge=1)
    path: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, name: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", name):
            raise ValueError(
                f"{name!r}: use letters, digits, '-' and '_' (it names folders and database rows)"
            )
        return name

    @field_validator("constructs")
    @classmethod
    def _has_constructs(cls, constructs: dict[str, Construct]) -> dict[str, Construct]:
        if not constructs:
            raise ValueError("a study needs at least one construct")
        for name in constructs:
            if not _IDENT.match(name):
                raise ValueError(
                    f"construct name {name!r} must be an identifier (letters, digits, _)"
                )
        return constructs

    @model_validator(mode="after")
    def _consistent(self) -> Study:
        seen: dict[str, str] = {}
        for cname, construct in self.constructs.items():
            for iname in construct.items:
                _claim(seen, iname, f"construct {cname!r}")
        for iname in self.items:
            _claim(seen, iname, "items")
        for name in seen:
            if not _IDENT.match(name):
                raise ValueError(f"item name {name!r} must be an identifier (letters, digits, _)")
            if name in self.constructs:
                raise ValueError(f"{name!r} is both a construct and an item; rename one")
        cols = self.columns
        special = [c for c in (cols.respondent_id, cols.weight, cols.wave, cols.date) if c]
        special += list(cols.segments)
        for col in special:
            if col in seen:
                raise ValueError(f"column {col!r} is declared both as an item and in 'columns'")
        if not cols.respondent_id and cols.id_column in seen:
            raise ValueError(
                f"item {cols.id_column!r} has the name loaded data give the respondent id "
                "column; rename the item or name the id column under `columns: {respondent_id: ...}`"
            )
        self._check_missing_codes()
        for col in cols.personal_data:
            if col in seen or col in special:
                raise ValueError(
                    f"column {col!r} is declared as personal data but the study also uses it; "
                    "personal data is dropped on load"
                )
        for aname, attr in self.attributes.items():
            for role in ("perception", "expectation"):
                item = getattr(attr, role)
                if item is not None and item not in seen:
                    raise ValueError(
                        f"attribute {aname!r}: its {role} item {item!r} is not declared"
                        + did_you_mean(item, seen)
                    )
            if attr.expectation is not None:
                exp, per = self.item(attr.expectation), self.item(attr.perception)
                if exp.scale != per.scale:
                    raise ValueError(
                        f"attribute {aname!r}: expectation {attr.expectation!r} is on a "
                        f"{exp.scale} scale but perception {attr.perception!r} on {per.scale}; "
                        "the gap needs one scale"
                    )
        if self.model.strip():
            self._check_model(seen)
        self._check_kpis(seen)
        self._check_roles()
        self._check_events()
        return self

    def _check_events(self) -> None:
        events = self.source.events
        if events is None:
            return
        channels: dict[str, set[str]] = {}
        for item in self.all_items.values():
            if item.tags.get("touchpoint"):
                channel = item.tags.get("channel")
                channels.setdefault(item.tags["touchpoint"], set()).update(
                    [channel] if channel else []
                )
        electronic = sorted(t for t, c in channels.items() if not c or "electronic" in c)

        def check(where: str, touchpoint: str) -> None:
            if touchpoint not in channels:
                known = ", ".join(sorted(channels)) or "none: no item is tagged with a touchpoint"
                raise ValueError(
                    f"source.events.{where}: {touchpoint!r} is not a touchpoint of the study "
                    f"(touchpoints: {known})" + did_you_mean(touchpoint, channels)
                )
            if touchpoint not in electronic:
                raise ValueError(
                    f"source.events.{where}: touchpoint {touchpoint!r} is on the "
                    f"{', '.join(sorted(channels[touchpoint]))} channel; web and app sessions "
                    "map to electronic touchpoints only (tag its items `channel: electronic`, "
                    f"or map the page to one of: {', '.join(electronic) or 'none'})"
                )

        if not events.pages:
            raise ValueError(
                "source.events.pages: map the log's pages to the study's electronic "
                f"touchpoints (e.g. `pages: {{'/app/order*': {electronic[0] if electronic else 'TOUCHPOINT'}}}`)"
            )
        for pattern, touchpoint in events.pages.items():
            check(f"pages.{pattern}", touchpoint)
        for touchpoint in events.completion:
            check(f"completion.{touchpoint}", touchpoint)
        feedback = events.feedback
        if feedback is not None and feedback.scale not in self.scales:
            raise ValueError(
                f"source.events.feedback.scale: unknown scale {feedback.scale!r} (declared "
                f"scales: {', '.join(self.scales) or 'none'})"
                + did_you_mean(feedback.scale, self.scales)
            )

    @property
    def events_source(self) -> EventsSource | None:
        """``source.events`` with its files resolved against the spec's folder (None if absent)."""
        events = self.source.events
        if events is None:
            return None
        return events.resolved(self.path.parent if self.path is not None else None)

    @property
    def feedback_scale(self) -> Scale | None:
        """The scale of the session feedback's rating (``source.events.feedback.scale``)."""
        events = self.source.events
        if events is None or events.feedback is None:
            return None
        return self.scales[events.feedback.scale]

    def _check_missing_codes(self) -> None:
        for name, item in self.all_items.items():
            sources = [
                (c, "source.missing_values, for every item") for c in self.source.missing_values
            ]
            sources += [(c, "the item's own missing_values") for c in item.missing_values]
            for code, where in sources:
                if not is_valid_answer(code, item.scale):
                    continue
                number = code_number(code)
                label = item.scale.labels.get(int(number)) if number is not None else None
                raise ValueError(
                    f"item {name!r} (scale {item.scale}): the missing-value code {code!r} "
                    f"(from {where}) is a valid answer on that scale"
                    + (f" ({label!r})" if label else "")
                    + f"; use a code outside {item.scale.min}-{item.scale.max} (e.g. -99), or "
                    "declare the code only on the items where it is not an answer "
                    "(`missing_values:` on the item)"
                )

    def missing_codes(self, item: str) -> list[MissingCode]:
        """The codes that mean "no answer" on ``item``: the study's, then the item's own."""
        codes = [*self.source.missing_values, *self.item(item).missing_values]
        return list(dict.fromkeys(codes))

    def _check_roles(self) -> None:
        roles = self.roles
        for role in ("target", "touchpoint_outcome", "expectations_outcome"):
            name = getattr(roles, role)
            if name is None:
                continue
            if name not in self.constructs:
                raise ValueError(
                    f"roles.{role}: {name!r} is not a construct of the spec"
                    + did_you_mean(name, self.constructs)
                )
            if role == "target" and name not in (outcomes := self._outcomes()):
                explained = ", ".join(outcomes) or "none: the spec has no structural model"
                raise ValueError(
                    f"roles.target: {name!r} is not explained by the structural model "
                    f"(constructs on the left of '~': {explained})"
                )

    @cached_property
    def _regressions(self) -> list:
        """The regression terms of the spec's model text, parsed once (none without a model)."""
        return parse_model(self.model).regressions if self.model.strip() else []

    def _outcomes(self) -> list[str]:
        """Constructs the structural model explains (left of ``~``), in model order."""
        lhs = dict.fromkeys(t.lhs for t in self._regressions)
        return [c for c in lhs if c in self.constructs]

    def _check_kpis(self, declared: dict[str, str]) -> None:
        kpis = self.kpis
        for role in ("nps", "satisfaction"):
            item = getattr(kpis, role)
            if item is not None and item not in declared:
                raise ValueError(
                    f"kpis.{role}: {item!r} is not an item of the spec"
                    + did_you_mean(item, declared)
                )
        if kpis.nps is not None:
            scale = self.item(kpis.nps).scale
            if (scale.min, scale.max) != (0, 10):
                raise ValueError(
                    f"kpis.nps: {kpis.nps!r} is on a {scale} scale; NPS needs a 0-10 item"
                )
        if kpis.loyalty is not None and kpis.loyalty not in self.constructs:
            raise ValueError(
                f"kpis.loyalty: {kpis.loyalty!r} is not a construct of the spec"
                + did_you_mean(kpis.loyalty, self.constructs)
            )

    def _check_model(self, declared: dict[str, str]) -> None:
        try:
            parsed = parse_model(self.model)
        except ModelSyntaxError as exc:
            raise ValueError(f"model: {exc}") from None
        # constructs the model itself defines: composites ('CX <~ Store + Web') and
        # higher-order constructs over the spec's constructs ('CX =~ Store + Phone + Web')
        defined = set(parsed.composites) | {
            latent
            for latent, items in parsed.indicators.items()
            if latent not in self.constructs and all(i in self.constructs for i in items)
        }
        for latent, items in parsed.indicators.items():
            if latent in defined:
                continue
            if latent not in self.constructs:
                raise ValueError(
                    f"model line {parsed.lines_for(latent)[0]}: {latent!r} is measured ('=~') "
                    "in the model but is not a construct in the spec"
                    + did_you_mean(latent, self.constructs)
                )
            for item in items:
                if item not in declared:
                    raise ValueError(
                        f"model line {parsed.lines_for(item)[0]}: item {item!r} of {latent!r} "
                        "is in the model but not in the spec" + did_you_mean(item, declared)
                    )
        known = set(self.constructs) | set(declared) | defined
        for name in parsed.variables:
            if name not in known:
                raise ValueError(
                    f"model line {parsed.lines_for(name)[0]}: {name!r} is neither a construct nor "
                    "an item of the spec" + did_you_mean(name, known)
                )

    # ------------------------------------------------------------------ accessors
    @cached_property
    def all_items(self) -> dict[str, Item]:
        """Every item of the study (construct items first), keyed by column name."""
        out: dict[str, Item] = {}
        for construct in self.constructs.values():
            out.update(construct.items)
        out.update(self.items)
        return out

    def item(self, name: str) -> Item:
        """Return one item by name, with a helpful error when it does not exist."""
        try:
            return self.all_items[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not an item of study {self.name!r}"
                + did_you_mean(name, self.all_items)
            ) from None

    @property
    def item_names(self) -> list[str]:
        """Every item column name."""
        return list(self.all_items)

    def construct_of(self, item: str) -> str | None:
        """The construct an item measures, or None for a standalone item."""
        for cname, construct in self.constructs.items():
            if item in construct.items:
                return cname
        return None

    def items_tagged(self, **tags: str) -> list[str]:
        """Items whose tags match all of ``tags`` (e.g. ``channel="electronic"``)."""
        return [
            name
            for name, item in self.all_items.items()
            if all(item.tags.get(k) == v for k, v in tags.items())
        ]

    @property
    def segment_columns(self) -> list[str]:
        """Segment column names."""
        return list(self.columns.segments)

    # ------------------------------------------------------------------ roles
    @property
    def target(self) -> str | None:
        """The construct driver analyses explain (see :class:`Roles`), or None.

        ``roles.target`` when given; else the loyalty KPI's construct when the structural
        model explains it; else the model's final outcome (the last explained construct
        that explains no other); None when the spec has no structural model.
        """
        if self.roles.target:
            return self.roles.target
        outcomes = self._outcomes()
        if not outcomes:
            return None
        if self.kpis.loyalty in outcomes:
            return self.kpis.loyalty
        predictors = {t.rhs for t in self._regressions}
        final = [c for c in outcomes if c not in predictors]
        return (final or outcomes)[-1]

    @property
    def touchpoint_outcome(self) -> str | None:
        """The construct the touchpoints feed directly (see :class:`Roles`), or None."""
        if self.roles.touchpoint_outcome:
            return self.roles.touchpoint_outcome
        if self.kpis.satisfaction is not None:
            construct = self.construct_of(self.kpis.satisfaction)
            if construct is not None:
                return construct
        return self.target

    @property
    def expectations_outcome(self) -> str | None:
        """What expectation gaps are related to (see :class:`Roles`), or None."""
        return self.roles.expectations_outcome or self.target

    def label_of(self, name: str) -> str:
        """The spec's label for a construct (or an attribute), else the name itself."""
        if name in self.constructs:
            return self.constructs[name].display_name
        if name in self.attributes:
            return self.attributes[name].label or name
        return name

    @property
    def single_item_notes(self) -> list[str]:
        """One sentence per single-item construct: how the model identifies it.

        As lavaan, SmartPLS and seminr do by default: the loading is fixed at 1 and the
        residual variance at 0, or at (1 - reliability) x the item's variance when the
        construct states a ``reliability``.
        """
        notes = []
        for cname, construct in self.constructs.items():
            if not construct.single_item:
                continue
            item = construct.item_names[0]
            r = construct.reliability
            residual = (
                f"at (1 - {r:g}) x the item's variance (from its stated reliability {r:g})"
                if r is not None
                else "at 0 (measured without error; state `reliability:` on the construct "
                "to allow for error)"
            )
            notes.append(
                f"construct {cname!r} has one item ({item}): its loading is fixed at 1 and "
                f"its residual variance {residual}"
            )
        return notes

    @property
    def touchpoint_items(self) -> list[str]:
        """Items tagged with a ``touchpoint``."""
        return [n for n, item in self.all_items.items() if item.tags.get("touchpoint")]

    def unmet(self, role: str) -> str | None:
        """Why the study lacks ``role``, with how to add it; None when the study has it.

        Parameters
        ----------
        role : str
            One of :data:`ROLES` (``"structural_model"``, ``"target"``, ``"attributes"``,
            ``"touchpoints"``, ``"segments"``, ``"waves"``, ``"nps"``, ``"satisfaction"``,
            ``"loyalty"``, ``"kpis"``, ``"touchpoint_costs"``, ``"internal_assessment"``,
            ``"events"``).

        Returns
        -------
        str or None
            E.g. "the study declares no attributes; declare expectation/perception pairs
            under `attributes:` ...".
        """
        if role not in ROLES:
            raise KeyError(
                f"unknown role {role!r}; use one of {', '.join(ROLES)}" + did_you_mean(role, ROLES)
            )
        has = {
            "structural_model": lambda: bool(self._outcomes()),
            "target": lambda: self.target is not None,
            "attributes": lambda: bool(self.attributes),
            "touchpoints": lambda: bool(self.touchpoint_items),
            "segments": lambda: bool(self.columns.segments),
            "waves": lambda: self.columns.wave is not None,
            "nps": lambda: self.kpis.nps is not None,
            "satisfaction": lambda: self.kpis.satisfaction is not None,
            "loyalty": lambda: self.kpis.loyalty is not None,
            "kpis": lambda: any(
                v is not None for v in (self.kpis.nps, self.kpis.satisfaction, self.kpis.loyalty)
            ),
            "touchpoint_costs": lambda: self.source.touchpoint_costs is not None,
            "internal_assessment": lambda: self.source.internal_assessment is not None,
            "events": lambda: self.source.events is not None,
        }[role]()
        if has:
            return None
        what = {
            "structural_model": "no structural model (no paths between constructs)",
            "target": "no target construct for driver analyses",
            "attributes": "no attributes (expectation/perception pairs)",
            "touchpoints": "no touchpoints (no item is tagged with a touchpoint)",
            "segments": "no segment column",
            "waves": "no wave column",
            "nps": "no NPS item",
            "satisfaction": "no satisfaction item",
            "loyalty": "no loyalty construct",
            "kpis": "no KPIs",
            "touchpoint_costs": "no touchpoint cost table",
            "internal_assessment": "no internal assessment of the touchpoints",
            "events": "no session event log",
        }[role]
        return f"study {self.name!r} declares {what}; to add it, {ROLES[role]}"

    @property
    def parsed_model(self) -> ParsedModel:
        """The full lavaan model: the spec's model text plus measurement lines.

        Every construct the model text names but does not measure with ``=~`` gets
        ``Construct =~ item1 + item2 + ...`` from the spec.
        """
        return parse_model(self.lavaan_model)

    @property
    def lavaan_model(self) -> str:
        """The full model as lavaan syntax (measurement lines first)."""
        text = self.model.strip()
        if not text:
            return "\n".join(
                f"{c} =~ {' + '.join(con.item_names)}" for c, con in self.constructs.items()
            )
        parsed = parse_model(text)
        measured = set(parsed.latents)
        used = [v for v in parsed.variables if v in self.constructs and v not in measured]
        lines = [f"{c} =~ {' + '.join(self.constructs[c].item_names)}" for c in used]
        return "\n".join([*lines, text])

    @property
    def data_path(self) -> Path | None:
        """The responses file named in ``source.file``, resolved against the spec's folder."""
        if not self.source.file:
            return None
        file = Path(self.source.file)
        if not file.is_absolute() and self.path is not None:
            file = self.path.parent / file
        return file

    def source_path(self, key: str) -> Path | None:
        """A file named in ``source`` (``touchpoint_costs``, ...), resolved against the spec's folder."""
        value = getattr(self.source, key)
        if not value:
            return None
        file = Path(value)
        if not file.is_absolute() and self.path is not None:
            file = self.path.parent / file
        return file

    def summary(self) -> dict[str, Any]:
        """What pages need to know about the study, as plain data (JSON-ready).

        Returns
        -------
        dict
            ``name``, ``title``, ``labels`` (construct and attribute labels from the spec),
            ``kpis`` (the KPI items and construct the study names, ``None`` when absent),
            ``roles`` (target, touchpoint_outcome, expectations_outcome as resolved),
            ``segments`` (segment columns), ``wave`` (the wave column) and ``unmet``
            (for every role of :data:`ROLES` the study lacks: why, and how to add it).
        """
        labels = {c: self.label_of(c) for c in self.constructs}
        labels.update({a: self.label_of(a) for a in self.attributes})
        unmet = {role: self.unmet(role) for role in ROLES}
        return {
            "name": self.name,
            "title": self.title or self.name,
            "labels": labels,
            "kpis": self.kpis.model_dump(),
            "roles": {
                "target": self.target,
                "touchpoint_outcome": self.touchpoint_outcome,
                "expectations_outcome": self.expectations_outcome,
            },
            "segments": self.segment_columns,
            "wave": self.columns.wave,
            "unmet": {role: why for role, why in unmet.items() if why},
        }

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what the YAML said, with defaults filled in)."""
        return self.model_dump(mode="json", exclude={"path"})


def require(study: Study, *roles: str) -> None:
    """Raise :class:`~cxlib.errors.NotApplicable` unless the study has every role.

    A notebook calls this first: run on a study that lacks what it needs, it stops
    with the reason (the pipeline records the step as not applicable, neither failed
    nor published as empty).

    Parameters
    ----------
    study : Study
    *roles : str
        Names from :data:`ROLES`.

    Raises
    ------
    NotApplicable
        Naming everything the study lacks and how to add it.
    """
    reasons = [r for r in (study.unmet(role) for role in roles) if r]
    if reasons:
        raise NotApplicable("; ".join(reasons))


def _claim(seen: dict[str, str], item: str, where: str) -> None:
    if item in seen:
        raise ValueError(f"item {item!r} is declared twice: in {seen[item]} and in {where}")
    seen[item] = where


# ---------------------------------------------------------------------- loading
#: The largest spec file read (bytes): study and pipeline specs are a few kilobytes.
MAX_SPEC_BYTES = 1_000_000
#: The most aliases (``*name``) a spec may use.
MAX_YAML_ALIASES = 1_000
#: The most values (scalars and collections) a spec may hold once its aliases are
#: expanded: an alias bomb ("billion laughs") expands a few kilobytes into billions.
MAX_YAML_VALUES = 100_000
#: The deepest nesting of mappings and lists in a spec.
MAX_YAML_DEPTH = 50


class YamlLimitError(yaml.MarkedYAMLError):
    """A YAML text beyond the limits on spec files (size, aliases, expansion, nesting).

    A :class:`yaml.YAMLError`, so that code reporting "not valid YAML" reports it too;
    ``problem`` says which limit and ``problem_mark`` where it was reached.
    """


def check_yaml_limits(text: str) -> None:
    """Refuse a YAML text that is too large, too deep or expands too far through aliases.

    The text's events are read once (no objects are built) and the values each anchor
    stands for are counted, so an alias bomb is refused in milliseconds, before anything
    is expanded.

    Parameters
    ----------
    text : str
        The YAML text.

    Raises
    ------
    YamlLimitError
        Naming the limit (:data:`MAX_SPEC_BYTES`, :data:`MAX_YAML_ALIASES`,
        :data:`MAX_YAML_VALUES`, :data:`MAX_YAML_DEPTH`) and the line it was reached at.
    yaml.YAMLError
        When the text is not valid YAML.
    """
    if len(text) > MAX_SPEC_BYTES:
        raise YamlLimitError(
            problem=f"the text has {len(text):,} characters; a spec has at most {MAX_SPEC_BYTES:,}"
        )
    sizes: dict[str, int] = {}  # anchor -> values it stands for
    open_anchors: list[str | None] = []  # one per open collection
    values = aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise YamlLimitError(
                    problem=f"more than {MAX_YAML_ALIASES:,} aliases (*name); a spec needs few",
                    problem_mark=event.start_mark,
                )
            if event.anchor in open_anchors:
                raise YamlLimitError(
                    problem=f"the alias *{event.anchor} refers to a collection that contains "
                    "it (a recursive alias)",
                    problem_mark=event.start_mark,
                )
            values += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            values += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            values += 1
            open_anchors.append(event.anchor)
            if event.anchor:
                sizes[event.anchor] = values  # the count when it opened; closed below
            if len(open_anchors) > MAX_YAML_DEPTH:
                raise YamlLimitError(
                    problem=f"mappings and lists nest deeper than {MAX_YAML_DEPTH} levels",
                    problem_mark=event.start_mark,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor = open_anchors.pop()
            if anchor:
                sizes[anchor] = values - sizes[anchor] + 1
        if values > MAX_YAML_VALUES:
            raise YamlLimitError(
                problem=f"the aliases (*name) expand the spec to more than "
                f"{MAX_YAML_VALUES:,} values (an alias bomb?); a spec holds a few thousand",
                problem_mark=event.start_mark,
            )


def load_yaml(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """Read one YAML document within the limits on spec files.

    Parameters
    ----------
    text : str
        The YAML text.
    loader : type, optional
        A :class:`yaml.SafeLoader` subclass (the study and pipeline specs refuse
        duplicate keys).

    Returns
    -------
    object
        The document (None for an empty text).

    Raises
    ------
    YamlLimitError
        When the text is beyond the limits (see :func:`check_yaml_limits`).
    yaml.YAMLError
        When it is not valid YAML.
    """
    check_yaml_limits(text)
    return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader (subclass)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise StudySpecError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first given at line {seen[key]})"
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _resolve_scales(raw: dict[str, Any]) -> None:
    """Replace scale names on items with the scale they name; fill in names."""
    scales = raw.get("scales") or {}
    if not isinstance(scales, dict):
        return

    def fix(items: Any, where: str) -> None:
        if not isinstance(items, dict):
            return
        for iname, item in items.items():
            if not isinstance(item, dict):
                continue
            item.setdefault("name", iname)
            scale = item.get("scale")
            if isinstance(scale, str):
                if scale not in scales:
                    raise StudySpecError(
                        f"{where}.{iname}.scale: unknown scale {scale!r} "
                        f"(declared scales: {', '.join(scales) or 'none'})"
                        + did_you_mean(scale, scales)
                    )
                item["scale"] = scales[scale]
            elif isinstance(scale, list | tuple) and len(scale) == 2:
                item["scale"] = {"min": scale[0], "max": scale[1]}

    for cname, construct in (raw.get("constructs") or {}).items():
        if isinstance(construct, dict):
            construct.setdefault("name", cname)
            fix(construct.get("items"), f"constructs.{cname}.items")
    fix(raw.get("items"), "items")
    for aname, attr in (raw.get("attributes") or {}).items():
        if isinstance(attr, dict):
            attr.setdefault("name", aname)


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: the study spec is not valid ({exc.error_count()} problem(s))"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(err["loc"][-1])
            parent = err["loc"][:-1]
            allowed = _allowed_keys(parent)
            msg = f"unknown key {key!r}"
            if allowed:
                msg += f" (allowed here: {', '.join(allowed)})" + did_you_mean(key, allowed)
        elif err["type"] == "missing":
            msg = "this key is required"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  - {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names allowed at a location of the spec, for 'did you mean' hints."""
    model: type[BaseModel] = Study
    path = list(loc)
    while path:
        part = path.pop(0)
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        target = {
            "columns": Columns,
            "source": Source,
            "events": EventsSource,
            "feedback": FeedbackSource,
            "kpis": Kpis,
            "roles": Roles,
            "constructs": Construct,
            "items": Item,
            "attributes": Attribute,
            "scales": Scale,
            "scale": Scale,
        }.get(str(part))
        if target is None:
            return []
        if target in (Construct, Item, Attribute, Scale) and part != "scale" and path:
            path.pop(0)  # skip the user's key (construct / item / attribute / scale name)
        model = target
    return [f for f in model.model_fields if f not in ("name", "path")]


def study_from_dict(
    raw: dict[str, Any], *, source: str = "study spec", path: Path | None = None
) -> Study:
    """Validate a study spec given as a dictionary.

    Parameters
    ----------
    raw : dict
        The spec, as read from YAML.
    source : str
        How to name the spec in error messages (usually its file path).
    path : Path, optional
        The file the spec came from; relative data paths resolve against it.

    Returns
    -------
    Study

    Raises
    ------
    StudySpecError
        Naming every problem and where it is in the spec.
    """
    if not isinstance(raw, dict):
        raise StudySpecError(
            f"{source}: a study spec must be a mapping of keys, got {type(raw).__name__}"
        )
    raw = _deepcopy(raw, source)
    try:
        _resolve_scales(raw)
    except StudySpecError as exc:
        raise StudySpecError(f"{source}: {exc}") from None
    try:
        study = Study.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise StudySpecError(_format_validation_error(exc, source)) from None
    return study


def _deepcopy(value: Any, source: str = "study spec") -> Any:
    """A copy of nested dicts and lists, refused beyond the YAML limits.

    Shared or recursive references (what YAML aliases give) are copied apart, so the
    copy is bounded by :data:`MAX_YAML_VALUES` values and :data:`MAX_YAML_DEPTH` levels.
    """
    count = 0

    def copy(node: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > MAX_YAML_VALUES:
            raise StudySpecError(
                f"{source}: the spec holds more than {MAX_YAML_VALUES:,} values once shared "
                "parts (YAML aliases) are expanded; a spec holds a few thousand"
            )
        if depth > MAX_YAML_DEPTH:
            raise StudySpecError(
                f"{source}: mappings and lists nest deeper than {MAX_YAML_DEPTH} levels "
                "(or a part of the spec contains itself)"
            )
        if isinstance(node, dict):
            return {k: copy(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [copy(v, depth + 1) for v in node]
        return node

    return copy(value, 0)


def load_study(path: str | Path) -> Study:
    """Read and validate a study spec from a YAML file.

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    Study

    Raises
    ------
    StudySpecError
        When the file is missing, is not YAML, or the spec is inconsistent. The
        message names the file and the key at fault.
    """
    path = Path(path)
    if not path.exists():
        raise StudySpecError(f"{path}: study spec not found")
    if path.is_dir():
        raise StudySpecError(f"{path}: is a folder; give the study's YAML file")
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise StudySpecError(
            f"{path}: the file has {size:,} bytes; a study spec has at most {MAX_SPEC_BYTES:,} "
            "(is it the data file rather than the spec?)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StudySpecError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        raw = load_yaml(text, loader=_UniqueKeyLoader)
    except StudySpecError as exc:
        raise StudySpecError(f"{path}: {exc}") from None
    except YamlLimitError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1})" if mark else ""
        raise StudySpecError(f"{path}: refused{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StudySpecError(f"{path}: not valid YAML{where}: {problem}") from None
    if raw is None:
        raise StudySpecError(f"{path}: the file is empty")
    return study_from_dict(raw, source=str(path), path=path.resolve())
