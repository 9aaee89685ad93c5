"""The Digital experience page: predicted satisfaction of every web and app session.

Reads what ``06-digital-experience`` publishes (``notebooks/README.md``): the
``digital_scores``, ``digital_signals``, ``digital_worst_pages``,
``digital_surveyed_vs_all`` and ``digital_calibration`` tables and the ``digital.json``
document (sessions, response rate, the rating scale, the selection coefficient, the
held-out check). The scores are the satisfaction the calibrated model predicts for every
session (0-100 of the feedback scale), the unsurveyed ones conditioned on not having
answered; nothing is fitted or sampled here.

The page shows, for a study with a session event log:

- the headline: the score of all sessions, the share of unsurveyed sessions likely
  dissatisfied, and surveyed against all sessions, with what the selection coefficient
  says about who answers the survey;
- a touchpoint selector, the score by day of the selection with its interval band, and
  a table of touchpoints (few-session rows flagged);
- which behaviour signal costs most satisfaction (effect per SD, interval, P(largest));
- the worst pages by a signal picked in a dropdown (top :data:`TOP_PAGES` by rate).

A study without an event log is "not applicable" with how to add one (the ``events``
role); a study whose 06 run is not published yet says so; a calibration model that did
not converge is flagged (:attr:`DigitalDashboard.MODEL_NOTEBOOKS`).
"""

from __future__ import annotations

import logging
from typing import Any

import ipywidgets as widgets
import pandas as pd

from cxlib import config
from cxlib.dashboard.widgets import (
    HDI_LABEL,
    ChartView,
    Dashboard,
    esc,
    fmt,
    html_table,
    interval,
    not_applicable,
    not_measured,
    not_published,
    note,
)
from cxlib.pipeline.schemas import TableSchemaError
from cxlib.stats import interval_columns

__all__ = [
    "ALL_TOUCHPOINTS",
    "DIGITAL_NOTEBOOK",
    "TOP_PAGES",
    "DigitalDashboard",
    "day_scores",
    "worst_pages",
]

#: The notebook whose published artifacts the page reads.
DIGITAL_NOTEBOOK = "06-digital-experience"
#: The study role of the session event log (:data:`cxlib.study.ROLES`).
EVENTS_ROLE = "events"
#: How to add an event log, when the study module does not know the role yet.
EVENTS_HOW_TO = (
    "declare the session event log under `source: {events: {file: ..., pages: {...}}}` "
    "in the study spec and run the pipeline again"
)
#: The touchpoint selector's value for every session (the tables' "all").
ALL_TOUCHPOINTS = config.EVERYONE
#: How many pages the worst-pages table shows.
TOP_PAGES = 10

logger = logging.getLogger("cxlib.dashboard")


def day_scores(scores: pd.DataFrame, touchpoint: str = ALL_TOUCHPOINTS) -> pd.DataFrame:
    """The rows of ``digital_scores`` for one selection by day, in day order.

    Parameters
    ----------
    scores : pandas.DataFrame
        The published ``digital_scores`` table.
    touchpoint : str
        A touchpoint, or :data:`ALL_TOUCHPOINTS` (every session: the ``day`` level).

    Returns
    -------
    pandas.DataFrame
        The ``day`` rows (every session) or the ``touchpoint_day`` rows of the touchpoint.
    """
    if touchpoint == ALL_TOUCHPOINTS:
        rows = scores[scores["level"] == "day"]
    else:
        rows = scores[(scores["level"] == "touchpoint_day") & (scores["touchpoint"] == touchpoint)]
    return rows.sort_values("day").reset_index(drop=True)


def worst_pages(pages: pd.DataFrame, signal: str, top: int = TOP_PAGES) -> pd.DataFrame:
    """The ``top`` pages of one signal, by the published rank (highest rate per view first).

    Parameters
    ----------
    pages : pandas.DataFrame
        The published ``digital_worst_pages`` table.
    signal : str
        The signal's name (``rage_clicks``...).
    top : int
        How many pages.

    Returns
    -------
    pandas.DataFrame
    """
    rows = pages[pages["signal"] == signal]
    rows = rows.sort_values(["rank", "rate", "page"], ascending=[True, False, True])
    return rows.head(top).reset_index(drop=True)


def _share(row, quantity: str = "dissatisfied_share") -> str:
    """A share (0-1) as a percentage with its interval: ``12.3% [10.1, 14.6]``."""
    low, high = interval_columns(quantity)
    return (
        f"{fmt(100 * _num(row[quantity]))}% "
        f"[{fmt(100 * _num(row[low]))}, {fmt(100 * _num(row[high]))}]"
    )


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _rate(value: Any) -> str:
    x = _num(value)
    return fmt(x, 3 if abs(x) < 1 else 1)


def _span(field: str, text: str, **attrs: str) -> str:
    extra = "".join(f' data-{k}="{esc(v)}"' for k, v in attrs.items())
    return f'<span data-field="{esc(field)}"{extra}>{text}</span>'


class DigitalDashboard(Dashboard):
    """Digital experience: scores by touchpoint and day, costly signals, worst pages."""

    _quiet = False
    MODEL_NOTEBOOKS = (DIGITAL_NOTEBOOK,)

    def build(self) -> None:
        """Create the controls."""
        self.headline = widgets.HTML()
        self.selection_note = widgets.HTML()
        self.touchpoint = widgets.Dropdown(
            options=[("All touchpoints", ALL_TOUCHPOINTS)],
            description="Touchpoint",
            layout=widgets.Layout(width="360px"),
        )
        self.touchpoint.add_class("cx-touchpoint")
        self.day_caption = widgets.HTML()
        self.day_chart = ChartView()
        self.touchpoints_html = widgets.HTML()
        self.signals_html = widgets.HTML()
        self.signal = widgets.Dropdown(
            options=[], description="Signal", layout=widgets.Layout(width="360px")
        )
        self.signal.add_class("cx-signal")
        self.pages_html = widgets.HTML()
        self.check_html = widgets.HTML()
        self.sections = widgets.VBox(
            [
                widgets.HTML("<h3>Scores by touchpoint and day</h3>"),
                self.touchpoint,
                self.day_caption,
                self.day_chart,
                self.touchpoints_html,
                widgets.HTML(
                    "<h3>Which signal costs most satisfaction</h3><div class='cx-muted'>What "
                    "one standard deviation more of a signal costs in satisfaction points "
                    "(0-100), and the probability that it is the costliest signal. Hover a "
                    "signal for its definition.</div>"
                ),
                self.signals_html,
                widgets.HTML("<h3>Worst pages by signal</h3>"),
                self.signal,
                self.pages_html,
                widgets.HTML("<h3>Model check</h3>"),
                self.check_html,
            ]
        )
        self.body.children = [
            widgets.HTML("<h3>Digital experience</h3>"),
            self.headline,
            self.selection_note,
            self.sections,
        ]
        self.touchpoint.observe(self._touchpoint_changed, "value")
        self.signal.observe(self._signal_changed, "value")

    def _touchpoint_changed(self, _change) -> None:
        if not self._quiet:
            self.safely(self.show_selection)

    def _signal_changed(self, _change) -> None:
        if not self._quiet:
            self.safely(self.show_pages)

    # ------------------------------------------------------------------ loading
    def _missing(self, what: str) -> str:
        """Why the page (or a part of it) is empty: not applicable, not measured, not published."""
        results = self.results
        how = results.how_to_add(EVENTS_ROLE) or EVENTS_HOW_TO
        reason = results.not_applicable(DIGITAL_NOTEBOOK)
        if reason:
            text = reason if how in reason else f"{reason.rstrip('.')}; to add it, {how}"
            text += "" if text.endswith((".", "!", "?")) else "."
            return not_applicable(what, DIGITAL_NOTEBOOK, text)
        lacking = results.unmet(EVENTS_ROLE)
        if lacking:
            end = "" if lacking.endswith((".", "!", "?")) else "."
            return not_measured(what, EVENTS_ROLE, lacking + end)
        return not_published(what, DIGITAL_NOTEBOOK)

    def render(self) -> None:
        """Fill from the published artifacts of ``06-digital-experience``."""
        results = self.results
        self.unreadable: dict[str, str] = {}
        self.scores = self._read("digital_scores")
        summary = results.json(DIGITAL_NOTEBOOK, "digital")
        self.summary = summary if isinstance(summary, dict) else {}
        self.signals = self._read("digital_signals")
        self.pages = self._read("digital_worst_pages")
        self.groups = self._read("digital_surveyed_vs_all")
        self.calibration = self._read("digital_calibration")
        if self.scores is None:
            self.headline.value = self._absent("Digital experience", "digital_scores")
            self.selection_note.value = ""
            self.sections.layout.display = "none"
            return
        self.sections.layout.display = None
        self._headline()
        self._touchpoint_options()
        self.show_selection()
        self._touchpoints()
        self._signals()
        self._signal_options()
        self.show_pages()
        self._check()

    def _read(self, name: str) -> pd.DataFrame | None:
        """A published 06 table; None (and noted) when it breaks its declaration."""
        try:
            return self.results.table(DIGITAL_NOTEBOOK, name)
        except TableSchemaError:
            logger.exception("published table %s cannot be shown", name)
            self.unreadable[name] = (
                f"the published table {name} does not match what this page reads (written in "
                "another results format); run the pipeline again to refresh it"
            )
            return None

    def _absent(self, what: str, name: str) -> str:
        """Why a part is empty: its table breaks its declaration, or :meth:`_missing`."""
        if name in self.unreadable:
            return note(f"{what} cannot be shown: {self.unreadable[name]}.", "bad")
        return self._missing(what)

    @property
    def min_sessions(self) -> int:
        """The fewest sessions a cell needs to be read without care (``min_cell_size``)."""
        try:
            return int(self.summary.get("min_cell_size") or self.results.min_cell_size)
        except (TypeError, ValueError):
            return self.results.min_cell_size

    def _group(self, name: str) -> dict | None:
        if self.groups is None:
            return None
        rows = self.groups[self.groups["group"] == name]
        return rows.iloc[0].to_dict() if len(rows) else None

    # ------------------------------------------------------------------ headline
    def _headline(self) -> None:
        s = self.summary
        everyone = self.scores[self.scores["level"] == "all"]
        cards = []
        if len(everyone):
            r = everyone.iloc[0]
            period = s.get("period") or {}
            when = (
                f" · {esc(period.get('start', '?'))} to {esc(period.get('end', '?'))}"
                if isinstance(period, dict) and period
                else ""
            )
            sessions = _span("sessions", f"{int(r['sessions']):,}")
            cards.append(
                '<div class="cx-card"><div>Digital experience score, all sessions (0-100)</div>'
                f'<div class="cx-big">{_span("score_all", fmt(r["score"]))}</div>'
                f"<div class='cx-muted'>{HDI_LABEL} interval "
                f"{_span('score_all_interval', interval(r, 'score'))} · "
                f"{sessions} sessions{when}</div></div>"
            )
        unsurveyed = self._group("unsurveyed")
        scale = s.get("scale") if isinstance(s.get("scale"), dict) else {}
        if unsurveyed is not None:
            low, high = interval_columns("dissatisfied_share")
            at = s.get("dissatisfied_at")
            rule = (
                f"a rating of {esc(fmt(at, 0))} or less on {esc(fmt(scale.get('min'), 0))}-"
                f"{esc(fmt(scale.get('max'), 0))}"
                if at is not None
                else "predicted dissatisfied"
            )
            share = fmt(100 * _num(unsurveyed["dissatisfied_share"])) + "%"
            bounds = f"[{fmt(100 * _num(unsurveyed[low]))}, {fmt(100 * _num(unsurveyed[high]))}]%"
            cards.append(
                '<div class="cx-card"><div>Unsurveyed sessions likely dissatisfied</div>'
                f'<div class="cx-big">{_span("unsurveyed_dissatisfied", share)}</div>'
                f"<div class='cx-muted'>{HDI_LABEL} interval "
                f"{_span('unsurveyed_dissatisfied_interval', bounds)} · {rule} · "
                f"{int(unsurveyed['sessions']):,} sessions</div></div>"
            )
        surveyed, everyone_group = self._group("surveyed"), self._group("all")
        if surveyed is not None and everyone_group is not None:
            cards.append(
                '<div class="cx-card"><div>Surveyed vs all sessions (predicted)</div>'
                f'<div class="cx-big">{_span("score_surveyed", fmt(surveyed["score"]))} vs '
                f"{_span('score_group_all', fmt(everyone_group['score']))}</div>"
                f"<div class='cx-muted'>surveyed {interval(surveyed, 'score')}, all "
                f"{interval(everyone_group, 'score')} · the surveyed stated "
                f"{_span('stated_surveyed', fmt(surveyed['stated']))}</div></div>"
            )
        answered = ""
        if s.get("sessions") is not None and s.get("surveyed") is not None:
            rate = fmt(100 * _num(s.get("response_rate")), 1) + "%"
            count = f"{int(s['surveyed']):,}"
            answered = (
                f'<div class="cx-muted cx-response">{_span("surveyed", count)} of '
                f"{int(s['sessions']):,} sessions answered the intercept survey "
                f"({_span('response_rate', rate)}).</div>"
            )
        groups_note = (
            self._absent("Surveyed vs all sessions", "digital_surveyed_vs_all")
            if self.groups is None
            else ""
        )
        self.headline.value = (
            f'<div class="cx-cards cx-digital-headline">{"".join(cards)}</div>{answered}'
            + groups_note
        )
        self.selection_note.value = self._selection_html(surveyed, everyone_group)

    def _selection_html(self, surveyed: dict | None, everyone: dict | None) -> str:
        """Who answers the survey: the survey-only reading against all sessions, in words."""
        parts, heading = [], "Who answers the survey."
        if surveyed is not None and everyone is not None:
            gap = _num(surveyed["score"]) - _num(everyone["score"])
            if gap == gap:  # not NaN
                way = "overstate" if gap > 0 else "understate"
                if gap > 0:
                    heading = "Frustrated sessions answer less often."
                elif gap < 0:
                    heading = "Here, satisfied sessions answer less often."
                parts.append(
                    f"Surveyed sessions score {fmt(surveyed['score'])} (predicted; they stated "
                    f"{fmt(surveyed['stated'])}), all sessions {fmt(everyone['score'])}: read "
                    f"from the survey alone, the digital experience would {way} satisfaction by "
                    f"{fmt(abs(gap))} points."
                )
        selection = self.summary.get("selection") or {}
        if isinstance(selection, dict) and selection.get("coefficient") is not None:
            meaning = str(selection.get("meaning") or "").strip()
            if meaning and not meaning.endswith((".", "!", "?")):
                meaning += "."
            parts.append(
                f"{meaning} Selection coefficient {fmt(selection['coefficient'], 2, sign=True)} "
                f"({HDI_LABEL} interval [{fmt(selection.get('hdi_low'), 2, sign=True)}, "
                f"{fmt(selection.get('hdi_high'), 2, sign=True)}], P(positive) = "
                f"{fmt(selection.get('p_positive'), 2)})."
            )
        if not parts:
            return ""
        parts.append(
            "So the scores here are predicted for every session from its behaviour, the "
            "unsurveyed ones conditioned on not having answered."
        )
        return (
            f'<div class="cx-note cx-warn cx-selection"><b>{esc(heading)}</b> '
            f"{esc(' '.join(parts))}</div>"
        )

    # ------------------------------------------------------------------ touchpoints and days
    def _touchpoint_options(self) -> None:
        rows = self.scores[self.scores["level"] == "touchpoint"]
        names = sorted(rows["touchpoint"].astype(str).unique())
        options = [("All touchpoints", ALL_TOUCHPOINTS)] + [
            (self.results.label(t), t) for t in names if t != ALL_TOUCHPOINTS
        ]
        shown = self.touchpoint.value
        self._quiet = True
        try:
            self.touchpoint.options = options
            values = [v for _, v in options]
            self.touchpoint.value = shown if shown in values else ALL_TOUCHPOINTS
        finally:
            self._quiet = False

    def selected_days(self) -> pd.DataFrame:
        """The score-by-day rows of the selected touchpoint (what the chart draws)."""
        return day_scores(self.scores, self.touchpoint.value)

    def show_selection(self) -> None:
        """Draw the score by day of the selected touchpoint (or of every session)."""
        from cxlib.plots.digital import score_by_day

        chosen = self.touchpoint.value
        name = "all sessions" if chosen == ALL_TOUCHPOINTS else self.results.label(chosen)
        level = "all" if chosen == ALL_TOUCHPOINTS else "touchpoint"
        row = self.scores[
            (self.scores["level"] == level)
            & ((self.scores["touchpoint"] == chosen) | (level == "all"))
        ]
        caption = f"Score by day of {esc(name)}"
        if len(row):
            r = row.iloc[0]
            caption += (
                f": {_span('selection_score', fmt(r['score']))} "
                f"{_span('selection_interval', interval(r, 'score'))} over "
                f"{int(r['sessions']):,} sessions; hollow points: days with fewer than "
                f"{self.min_sessions} sessions."
            )
        self.day_caption.value = f'<div class="cx-muted cx-day-caption">{caption}</div>'
        days = self.selected_days()
        if days.empty:
            self.day_chart.show(None, note(f"No daily scores are published for {name}.", "warn"))
            return
        self.day_chart.show(score_by_day(days, title="Digital experience score by day"))

    def _touchpoints(self) -> None:
        rows = self.scores[self.scores["level"] == "touchpoint"].sort_values("score")
        if rows.empty:
            self.touchpoints_html.value = note("No touchpoint scores are published.")
            return
        cells, attrs = [], []
        for r in rows.to_dict("records"):
            tp = str(r["touchpoint"])
            few = bool(r["few_sessions"])
            flag = (
                f'<span class="cx-few" title="fewer than {self.min_sessions} sessions: read '
                'with care">few sessions</span>'
                if few
                else ""
            )
            cells.append(
                [
                    esc(self.results.label(tp)),
                    _span("score", fmt(r["score"]), touchpoint=tp),
                    _span("score_interval", interval(r, "score"), touchpoint=tp),
                    _span("sessions", f"{int(r['sessions']):,}", touchpoint=tp),
                    f"{int(r['surveyed']):,}",
                    _span("dissatisfied", _share(r), touchpoint=tp),
                    flag,
                ]
            )
            attrs.append(f' data-touchpoint="{esc(tp)}"' + (' class="cx-few-row"' if few else ""))
        few_note = (
            note(
                f"Flagged: touchpoints with fewer than {self.min_sessions} sessions; their "
                "scores lean on the model more than on their own sessions.",
                "warn",
            )
            if rows["few_sessions"].astype(bool).any()
            else ""
        )
        self.touchpoints_html.value = few_note + html_table(
            cells,
            [
                "touchpoint",
                "score",
                f"{HDI_LABEL} HDI",
                "sessions",
                "surveyed",
                f"likely dissatisfied [{HDI_LABEL} HDI]",
                "",
            ],
            "cx-touchpoints",
            attrs,
        )

    # ------------------------------------------------------------------ signals
    def _signal_order(self) -> list[dict]:
        if self.signals is None:
            return []
        return self.signals.sort_values(
            ["p_largest_cost", "signal"], ascending=[False, True]
        ).to_dict("records")

    def _signals(self) -> None:
        records = self._signal_order()
        if not records:
            self.signals_html.value = self._absent("Signals", "digital_signals")
            return
        cells = []
        for r in records:
            name = str(r["signal"])
            definition = str(r["definition"] or "")
            unit = str(r["unit"] or "")
            cells.append(
                [
                    f'<span title="{esc(definition)}">{esc(r["label"])}</span>'
                    f'<div class="cx-muted cx-definition">{esc(definition)}</div>',
                    _span("effect", fmt(r["effect"], 2, sign=True), signal=name),
                    interval(r, "effect", 2, sign=True),
                    _span("p_largest_cost", fmt(r["p_largest_cost"], 2), signal=name),
                    f"{_rate(r['per_session'])} / {_rate(r['per_surveyed_session'])} {esc(unit)}",
                ]
            )
        self.signals_html.value = html_table(
            cells,
            [
                "signal",
                "effect (points per SD)",
                f"{HDI_LABEL} HDI",
                "P(largest cost)",
                "mean per session: all / surveyed",
            ],
            "cx-signals",
            [f' data-signal="{esc(r["signal"])}"' for r in records],
        )

    def _signal_options(self) -> None:
        if self.pages is None or self.pages.empty:
            self.signal.layout.display = "none"
            return
        present = set(self.pages["signal"].astype(str))
        labels = {str(r["signal"]): str(r["label"]) for r in self._signal_order()}
        ordered = [s for s in labels if s in present] + sorted(present - set(labels))
        options = [(labels.get(s, s), s) for s in ordered]
        shown = self.signal.value
        self._quiet = True
        try:
            self.signal.options = options
            self.signal.value = shown if shown in ordered else ordered[0]
        finally:
            self._quiet = False
        self.signal.layout.display = None

    def selected_pages(self) -> pd.DataFrame:
        """The worst pages of the selected signal (what the table shows)."""
        if self.pages is None or self.signal.value is None:
            return pd.DataFrame()
        return worst_pages(self.pages, self.signal.value)

    def show_pages(self) -> None:
        """Fill the worst-pages table for the selected signal."""
        if self.pages is None:
            self.pages_html.value = self._absent("Worst pages", "digital_worst_pages")
            return
        rows = self.selected_pages()
        if rows.empty:
            self.pages_html.value = note("No pages are published for this signal.")
            return
        cells = [
            [
                str(int(r["rank"])),
                _span("page", esc(r["page"]), rank=str(int(r["rank"]))),
                esc(self.results.label(r["touchpoint"])),
                _span("rate", _rate(r["rate"]), rank=str(int(r["rank"]))),
                f"{int(r['views']):,}",
                f"{int(r['sessions']):,}",
            ]
            for r in rows.to_dict("records")
        ]
        self.pages_html.value = html_table(
            cells,
            ["rank", "page", "touchpoint", "rate per view", "views", "sessions"],
            "cx-pages",
        )

    # ------------------------------------------------------------------ model check
    def _check(self) -> None:
        s = self.summary
        parts = []
        if s.get("elpd_holdout") is not None:
            parts.append(
                f'<div class="cx-muted cx-elpd">Held-out check on '
                f"{esc(s.get('holdout_sessions', '?'))} surveyed sessions the model did not "
                f"see: ELPD {esc(fmt(s['elpd_holdout'], 1))}.</div>"
            )
        if self.calibration is not None and not self.calibration.empty:
            cells = [
                [
                    str(int(r["bin"])),
                    f"{int(r['sessions']):,}",
                    fmt(r["predicted"]),
                    fmt(r["stated"]),
                    fmt(r.get("difference", _num(r["predicted"]) - _num(r["stated"])), sign=True),
                ]
                for r in self.calibration.sort_values("bin").to_dict("records")
            ]
            parts.append(
                "<div class='cx-muted'>Held-out surveyed sessions binned by predicted "
                "satisfaction: predicted against stated (0-100).</div>"
                + html_table(
                    cells,
                    ["bin", "sessions", "predicted", "stated", "predicted - stated"],
                    "cx-calibration",
                )
            )
        if "digital_calibration" in self.unreadable:
            parts.append(
                self._absent("The calibration of held-out sessions", "digital_calibration")
            )
        self.check_html.value = "".join(parts) or note("No held-out check is published.")
