"""Building blocks of the dashboards: a study picker, status banner, offline chart, notes.

Everything a viewer sees is built from published aggregates and escaped before
it reaches the page. Charts are altair rendered by :class:`ChartView`, an
``alt.JupyterChart`` in offline mode (Vega comes from vl-convert inside the kernel,
never from a CDN) that updates in place when its chart changes.
"""

from __future__ import annotations

import html
import logging
import math
import os
from typing import Any

import ipywidgets as widgets

from cxlib.dashboard.results import (
    NOTEBOOKS,
    PublishedResults,
    load_published,
    published_studies,
    requested_study,
)

__all__ = [
    "ChartView",
    "Dashboard",
    "fmt",
    "not_published",
    "query_string",
    "status_html",
]

logger = logging.getLogger("cxlib.dashboard")

#: Styles of the dashboards' HTML parts (one place; no external stylesheet).
STYLE = """<style>
.cx-note{padding:6px 10px;margin:4px 0;border-left:4px solid #9e9e9e;background:#f5f5f5}
.cx-warn{border-left-color:#e65100;background:#fff3e0}
.cx-bad{border-left-color:#c62828;background:#ffebee}
.cx-cards{display:flex;gap:12px;flex-wrap:wrap}
.cx-card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:190px}
.cx-card .cx-big{font-size:1.8em;font-weight:600}
.cx-muted{color:#616161;font-size:.9em}
table.cx-table{border-collapse:collapse;margin:4px 0}
table.cx-table td,table.cx-table th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
</style>"""


def fmt(value: Any, digits: int = 1, *, sign: bool = False) -> str:
    """A number as the page shows it (``-`` for missing)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "-"
    if math.isnan(x):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def esc(value: Any) -> str:
    """Text escaped for HTML."""
    return html.escape(str(value), quote=True)


def note(text: str, kind: str = "") -> str:
    """A note box (``kind``: ``""``, ``"warn"`` or ``"bad"``); ``text`` is escaped."""
    cls = f"cx-note cx-{kind}" if kind else "cx-note"
    return f'<div class="{cls}">{esc(text)}</div>'


def not_published(what: str, notebook: str) -> str:
    """The note shown where a notebook's results are not published yet."""
    name = NOTEBOOKS.get(notebook, notebook)
    return (
        f'<div class="cx-note cx-missing" data-missing="{esc(name)}">{esc(what)}: not published '
        f"yet (notebook {esc(name)} has no published run for this study).</div>"
    )


def suppressed_note(cells, min_cell_size: int) -> str:
    """The note listing suppressed segment x wave cells (labels only, never values)."""
    if cells is None or len(cells) == 0:
        return ""
    labels = sorted({" × ".join(str(v) for v in row) for row in cells.itertuples(index=False)})
    shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
    return (
        f'<div class="cx-note cx-suppressed">{len(labels)} cell(s) with fewer than '
        f"{min_cell_size} respondents are suppressed and not shown: {esc(shown)}.</div>"
    )


def status_html(results: PublishedResults) -> str:
    """The header: study, date and runs of the published result, diagnostics, warnings."""
    status = results.status()
    runs = ", ".join(f"{esc(nb)}: <code>{esc(run)}</code>" for nb, run in status["runs"].items())
    diag = ", ".join(f"{esc(nb)} {esc(s)}" for nb, s in status["diagnostics"].items() if s != "none")
    parts = [
        f'<h2 class="cx-title">{esc(results.title)}</h2>',
        f'<div class="cx-muted cx-published">Published {esc(status["published_at"] or "?")} '
        f"(publication <code>{esc(status['publication_id'])}</code>). Runs: {runs}.</div>",
        f'<div class="cx-muted cx-diagnostics">Model diagnostics: {diag or "no model published yet"}.</div>',
    ]
    if status["failed"]:
        parts.append(
            '<div class="cx-note cx-bad cx-flag-failed">Caution: the published results of '
            f"{esc(', '.join(status['failed']))} failed their diagnostics or quality gates; "
            "treat them as provisional.</div>"
        )
    if status["stale"]:
        parts.append(
            '<div class="cx-note cx-warn cx-flag-stale">Stale: '
            f"{esc('; '.join(status['stale']))}.</div>"
        )
    return "".join(parts)


def query_string() -> str:
    """The page request's query string (waits for the request in a preheated kernel)."""
    try:
        from voila.utils import wait_for_request

        wait_for_request()
    except Exception:  # noqa: BLE001 - outside Voila there is no request to wait for
        pass
    return os.environ.get("QUERY_STRING", "")


class ChartView(widgets.VBox):
    """An altair chart rendered offline, updated in place; or a note when there is none."""

    def __init__(self, **kwargs):
        self.note = widgets.HTML()
        self.chart: Any = None
        super().__init__([self.note], **kwargs)
        self.add_class("cx-chart")

    def show(self, chart, message: str = "") -> None:
        """Show ``chart`` (an altair chart), or hide the chart and show ``message`` (HTML)."""
        self.note.value = message
        if chart is None:
            if self.chart is not None:
                self.chart.layout.display = "none"
            return
        if self.chart is None:
            import altair as alt

            alt.JupyterChart.enable_offline()
            self.chart = alt.JupyterChart(
                chart, embed_options={"renderer": "svg", "actions": False}
            )
            self.children = [self.note, self.chart]
        else:
            self.chart.chart = chart
        self.chart.layout.display = None


class Dashboard(widgets.VBox):
    """A dashboard over one published study, with a picker of the published studies.

    Subclasses build their controls in :meth:`build` and fill them in :meth:`render`.

    Parameters
    ----------
    studies : list of str
        The published studies (the fixed list offered to viewers).
    runs_dir : str or Path, optional
        The runs directory (default ``config.RUNS_DIR``).
    study : str, optional
        The study shown first (default: the first published).
    """

    def __init__(self, studies: list[str], *, runs_dir=None, study: str | None = None):
        self.runs_dir = runs_dir
        self.studies = list(studies)
        self.results: PublishedResults | None = None
        self.picker = widgets.Dropdown(
            options=self.studies, description="Study", layout=widgets.Layout(width="360px")
        )
        self.request_note = widgets.HTML()
        self.header = widgets.HTML()
        self.error = widgets.HTML()
        self.body = widgets.VBox()
        super().__init__(
            [widgets.HTML(STYLE), self.picker, self.request_note, self.header, self.error, self.body]
        )
        self.add_class("cx-dashboard")
        if not self.studies:
            self.picker.layout.display = "none"
            self.header.value = note(
                "No study is published yet: run `cx run pipelines/demo.yaml` (or `make run`) "
                "and reload this page.",
                "warn",
            )
            return
        self.build()
        if study is not None and study in self.studies:
            self.picker.value = study
        self.picker.observe(self._on_study, "value")
        self.load(self.picker.value)

    @classmethod
    def from_runs(cls, runs_dir=None, **kwargs) -> Dashboard:
        """A dashboard over the studies published under ``runs_dir``."""
        return cls(published_studies(runs_dir), runs_dir=runs_dir, **kwargs)

    def apply_request(self, query: str | None) -> None:
        """Follow a page link's ``?study=NAME`` when NAME is a published study; refuse the rest."""
        study, refusal = requested_study(query, self.studies)
        self.request_note.value = note(refusal, "warn") if refusal else ""
        if study is not None and study != self.picker.value:
            self.picker.value = study

    def _on_study(self, change) -> None:
        self.load(change["new"])

    def load(self, study: str) -> None:
        """Read a study's published results and show them."""
        try:
            self.results = load_published(study, self.runs_dir)
            self.header.value = status_html(self.results)
            self.error.value = ""
            self.render()
        except Exception as exc:  # noqa: BLE001 - a viewer sees a note, never a traceback
            self._failed(exc)

    def safely(self, update) -> None:
        """Run an update, turning an error into a note on the page."""
        try:
            update()
            self.error.value = ""
        except Exception as exc:  # noqa: BLE001 - a viewer sees a note, never a traceback
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        logger.exception("dashboard update failed")
        self.error.value = '<div class="cx-error">' + note(
            f"This part of the dashboard could not be shown ({type(exc).__name__}). "
            "The published results may be incomplete; ask the CX team to check the last run.",
            "bad",
        ) + "</div>"

    def build(self) -> None:
        """Create the controls (once)."""

    def render(self) -> None:
        """Fill the controls from ``self.results``."""
