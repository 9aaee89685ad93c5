"""Building blocks of the dashboards: a study picker, status banner, offline chart, notes.

Everything a viewer sees is built from published aggregates and escaped before
it reaches the page. Charts are altair rendered by :class:`ChartView`, an
``alt.JupyterChart`` in offline mode (Vega comes from vl-convert inside the kernel,
never from a CDN) that updates in place when its chart changes.
"""

from __future__ import annotations

import hashlib
import html
import logging
import math
import os
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from cxlib import config
from cxlib.dashboard.results import (
    MODEL_NOTEBOOKS,
    NOTEBOOKS,
    PublishedResults,
    load_published,
    published_studies,
    requested_study,
)
from cxlib.pipeline.publish import read_pointer
from cxlib.stats import interval_columns

__all__ = [
    "ChartView",
    "chart_spec",
    "chart_values",
    "offline_chart",
    "Dashboard",
    "HDI_LABEL",
    "flags_html",
    "fmt",
    "html_table",
    "interval",
    "missing",
    "not_applicable",
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


#: How pages name the interval mass of every HDI they show (``94%``).
HDI_LABEL = f"{config.HDI_PROB:.0%}"


def fmt(value: Any, digits: int = 1, *, sign: bool = False) -> str:
    """A number as the page shows it (``-`` for missing)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "-"
    if math.isnan(x):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def interval(row, quantity: str | None = None, digits: int = 1, *, sign: bool = False) -> str:
    """A row's HDI as the page shows it, ``[low, high]``.

    Parameters
    ----------
    row : mapping
        A table row (a dict or a pandas row).
    quantity : str, optional
        The named quantity (``change``, ``gain`` ...); None: the row's own estimate.
        The columns follow :func:`cxlib.stats.interval_columns`.
    digits : int
        Decimals.
    sign : bool
        Write a ``+`` before positive bounds.

    Returns
    -------
    str
    """
    low, high = interval_columns(quantity)
    return f"[{fmt(row[low], digits, sign=sign)}, {fmt(row[high], digits, sign=sign)}]"


def esc(value: Any) -> str:
    """Text escaped for HTML."""
    return html.escape(str(value), quote=True)


def html_table(
    rows: list[list[str]], head: list[str], cls: str = "", row_attrs: list[str] | None = None
) -> str:
    """A table from already-escaped cells (``row_attrs``: each row's ``<tr>`` attributes)."""
    out = [f'<table class="cx-table {cls}"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        attrs = row_attrs[i] if row_attrs else ""
        out.append(f"<tr{attrs}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return "".join(out) + "</table>"


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


def not_applicable(what: str, notebook: str, reason: str) -> str:
    """The note shown where a notebook does not apply to the study: why, and how to add it."""
    name = NOTEBOOKS.get(notebook, notebook)
    return (
        f'<div class="cx-note cx-missing cx-not-applicable" data-missing="{esc(name)}" '
        f'data-not-applicable="{esc(name)}">{esc(what)}: not applicable for this study: '
        f"{esc(reason)}</div>"
    )


def not_measured(what: str, role: str, reason: str) -> str:
    """The note shown where the study lacks an input a part of a page needs: how to add it."""
    return (
        f'<div class="cx-note cx-missing cx-unmeasured" data-role="{esc(role)}">{esc(what)}: '
        f"not measured: {esc(reason)}</div>"
    )


def missing(
    results: PublishedResults | None, what: str, notebook: str, role: str | None = None
) -> str:
    """Why a part of a page is empty.

    Not applicable (the notebook does not apply to the study, with the reason); not
    measured (the notebook is published, but the study lacks ``role``, e.g. a touchpoint
    cost table, with how to add it); else not published yet.
    """
    reason = results.not_applicable(notebook) if results is not None else None
    if reason:
        return not_applicable(what, notebook, reason)
    lacking = results.unmet(role) if results is not None and role else None
    if lacking and results.has(notebook):
        return not_measured(what, role, lacking)
    return not_published(what, notebook)


def _sentence(text: str) -> str:
    text = str(text).strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def flags_html(results: PublishedResults, notebooks=MODEL_NOTEBOOKS) -> str:
    """A warning banner per published model that did not converge or is improper.

    Parameters
    ----------
    results : PublishedResults
    notebooks : sequence of str
        The notebooks whose models the page shows (:attr:`Dashboard.MODEL_NOTEBOOKS`).

    Returns
    -------
    str
        HTML: ``cx-flag-unconverged`` and ``cx-flag-improper`` notes naming the
        notebook, the constructs (by their labels) and what to try; "" when all is well.
    """
    parts = []
    for flag in results.model_flags(notebooks):
        constructs = [results.label(c) for c in flag["constructs"]]
        codes = ",".join(flag["constructs"])
        if flag["kind"] == "improper":
            text = f"Improper solution in {flag['notebook']}"
            text += f" ({', '.join(constructs)})" if constructs else ""
            text += f": {_sentence(flag['message'])}"
            if flag["advice"]:
                text += f" What to try: {_sentence(flag['advice'])}"
            text += " Read what rests on this model with care."
            cls = "cx-flag-improper"
        else:
            text = (
                f"Not converged: the model of {flag['notebook']} did not converge "
                f"({flag['message']}); what rests on it is provisional."
            )
            cls = "cx-flag-unconverged"
        parts.append(
            f'<div class="cx-note cx-bad cx-flag {cls}" data-notebook="{esc(flag["notebook"])}" '
            f'data-constructs="{esc(codes)}">{esc(text)}</div>'
        )
    return "".join(parts)


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


def read_pointer_id(results: PublishedResults) -> str | None:
    """The publication id now in a study's pointer (None when it cannot be read)."""
    try:
        return (read_pointer(results.study_dir) or {}).get("publication_id")
    except (OSError, ValueError):
        return None


def status_html(results: PublishedResults) -> str:
    """The header: study, date and runs of the published result, diagnostics, warnings."""
    status = results.status()
    runs = ", ".join(f"{esc(nb)}: <code>{esc(run)}</code>" for nb, run in status["runs"].items())
    diag = ", ".join(
        f"{esc(nb)} {esc(s)}" for nb, s in status["diagnostics"].items() if s != "none"
    )
    parts = [
        f'<h2 class="cx-title">{esc(results.title)}</h2>',
        f'<div class="cx-muted cx-published">Published {esc(status["published_at"] or "?")} '
        f"(publication <code>{esc(status['publication_id'])}</code>). Runs: {runs}.</div>",
        f'<div class="cx-muted cx-diagnostics">Model diagnostics: {diag or "no model published yet"}.</div>',
    ]
    skipped = results.not_applicable_notebooks
    if skipped:
        parts.append(
            '<div class="cx-muted cx-not-applicable-notebooks">Not applicable for this study '
            f"(what it does not measure): {esc(', '.join(skipped))}.</div>"
        )
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


#: Where altair's widget source gets the patch below (after the chart is embedded).
_EMBEDDED = "        finalize = api.finalize;\n"
#: Rows swapped in before a view was drawn (``ChartView.show_data``, or ``show`` with a
#: spec that differs only in its data) are applied as soon as the view exists: the
#: update channel's listener is only added once the chart is embedded, so an update
#: that arrived earlier (e.g. a ``?study=`` link handled while the page loads) would
#: otherwise be lost and the page would show the first data.
_APPLY_PENDING_ROWS = """
        // cx: apply the latest rows sent before this view was drawn
        const pending = (model.get("_py_to_js_updates") ?? []).filter((u) => u.namespace === "data");
        for (const update of pending) {
            setDataValue(api.view, update.name, update.scope, update.value);
        }
        if (pending.length) {
            await api.view.runAsync();
        }
"""
_CHART_CLASS: tuple[type, bool] | None = None


def offline_chart() -> tuple[type, bool]:
    """The chart widget class, rendering offline; and whether it can swap rows in place.

    A subclass of ``alt.JupyterChart`` whose JavaScript is altair's own, patched to
    apply rows sent before the view was drawn (see ``_APPLY_PENDING_ROWS``), and
    bundled with Vega, Vega-Lite and vega-embed by vl-convert (nothing from a CDN),
    as ``alt.JupyterChart.enable_offline()`` does. Bundling takes ~2.5 s of CPU, so
    the bundle is built once per versions and kept in ``$XDG_CACHE_HOME/cxlib``
    (default ``~/.cache/cxlib``; written atomically; built in memory when the folder
    is not writable). Should altair's source no longer have the patch's anchor, the
    chart is altair's offline ``JupyterChart`` and charts are always redrawn (the
    second value is ``False``).
    """
    global _CHART_CLASS
    if _CHART_CLASS is not None:
        return _CHART_CLASS
    import altair as alt

    try:
        import vl_convert as vlc
        from altair.jupyter.jupyter_chart import load_js_src
        from altair.utils._importers import vl_version_for_vl_convert

        source = load_js_src()
        swap = source.count(_EMBEDDED) == 1
        if swap:
            source = source.replace(_EMBEDDED, _EMBEDDED + _APPLY_PENDING_ROWS)
        lines = source.split("\n")
        while lines and (not lines[0].strip() or lines[0].startswith(("import", "//"))):
            lines.pop(0)  # vl-convert provides the imports (as altair's enable_offline does)
        source = "\n".join(lines)
        vl_version = vl_version_for_vl_convert()
        key = hashlib.sha256(
            "\0".join([source, vl_version, vlc.__version__, alt.__version__]).encode()
        ).hexdigest()[:16]
        cache = _cache_dir() / f"jupyterchart-offline-{key}.js"
        if cache.is_file():
            bundle = cache.read_text(encoding="utf-8")
        else:
            bundle = vlc.javascript_bundle(source, vl_version=vl_version)
            _write_atomic(cache, bundle)
        chart_class = type("CxChart", (alt.JupyterChart,), {"_esm": bundle, "__module__": __name__})
        _CHART_CLASS = (chart_class, swap)
    except Exception:  # noqa: BLE001 - a private altair detail changed: altair's own way
        logger.warning("cannot build the patched chart bundle; charts redraw on every change")
        alt.JupyterChart.enable_offline()
        _CHART_CLASS = (alt.JupyterChart, False)
    return _CHART_CLASS


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "cxlib"


def _write_atomic(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        logger.debug("cannot cache the chart bundle in %s", path.parent, exc_info=True)


def chart_spec(chart) -> tuple[dict, dict[str, list]]:
    """An altair chart as (Vega-Lite spec without its data, datasets by stable name).

    Altair names each inline dataset after a hash of its rows; here they are renamed
    ``cx-data-0``, ``cx-data-1``... in order, so that two charts that differ only in
    their data have equal specs (and the page can swap the data without redrawing).
    """
    spec = chart.to_dict()
    datasets = spec.pop("datasets", {}) or {}
    names = {old: f"cx-data-{i}" for i, old in enumerate(datasets)}

    def rename(node):
        if isinstance(node, dict):
            return {k: rename(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rename(v) for v in node]
        return names.get(node, node) if isinstance(node, str) else node

    return rename(spec), {names[k]: v for k, v in datasets.items()}


def chart_values(frame) -> list[dict]:
    """A data frame's rows as JSON records, as an altair chart embeds them.

    Numbers, booleans and text go straight through (missing and infinite numbers
    become ``null``), ~50x faster than altair's data transformer on a small table;
    any other column type (dates, categories, ...) goes through that transformer.
    """
    columns = {}
    for name in frame.columns:
        series = frame[name]
        kind = series.dtype.kind
        if kind == "f":
            values = [v if math.isfinite(v) else None for v in series.tolist()]
        elif kind in "iub":
            values = series.tolist()
        elif kind == "O" and all(isinstance(v, str) or v is None for v in series.tolist()):
            values = series.tolist()
        else:
            import altair as alt

            return alt.data_transformers.get()(frame)["values"]
        columns[str(name)] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


class ChartView(widgets.VBox):
    """An altair chart rendered offline, updated in place; or a note when there is none.

    The first chart creates an ``alt.JupyterChart`` (:func:`offline_chart`: Vega is
    bundled in the kernel, never fetched from a CDN). A later chart whose spec differs
    only in its data does not redraw the chart: its rows are swapped into the page's
    Vega view (``JupyterChart``'s data update channel; rows sent before the view was
    drawn are applied when it is), which takes a few milliseconds where re-embedding
    (Vega-Lite compile, Vega parse, render) takes tens.
    :meth:`show_data` goes faster still for a chart with one dataset: it takes the
    new rows and skips building the altair chart.
    """

    def __init__(self, **kwargs):
        self.note = widgets.HTML()
        self.chart: Any = None
        self._skeleton: dict | None = None
        self._dataset_names: list[str] = []
        self._data_seq = 0
        #: How the last chart reached the page: ``"spec"`` (drawn) or ``"data"`` (swapped).
        self.last_update = ""
        super().__init__([self.note], **kwargs)
        self.add_class("cx-chart")

    def show(self, chart, message: str = "") -> None:
        """Show ``chart`` (an altair chart), or hide the chart and show ``message`` (HTML)."""
        self.note.value = message
        if chart is None:
            if self.chart is not None:
                self.chart.layout.display = "none"
            return
        skeleton, datasets = chart_spec(chart)
        if self.chart is not None and offline_chart()[1] and skeleton == self._skeleton:
            self._send_data(datasets)
        else:
            self._draw(skeleton, datasets)
        self.chart.layout.display = None

    def show_data(self, frame, message: str = "") -> bool:
        """Swap ``frame``'s rows in as the data of the chart shown; ``False`` if there is none.

        For a chart built from one data frame (one dataset) whose encodings and title
        do not depend on the rows: the caller builds the chart with :meth:`show` once
        and passes only new rows afterwards.
        """
        if self.chart is None or len(self._dataset_names) != 1 or not offline_chart()[1]:
            return False
        self.note.value = message
        self._send_data({self._dataset_names[0]: chart_values(frame)})
        self.chart.layout.display = None
        return True

    def _draw(self, skeleton: dict, datasets: dict[str, list]) -> None:
        spec = {**skeleton, "datasets": datasets} if datasets else skeleton
        if self.chart is None:
            chart_class, _ = offline_chart()
            self.chart = chart_class(None, embed_options={"renderer": "svg", "actions": False})
            self.chart.spec = spec
            self.children = [self.note, self.chart]
        else:
            with self.chart.hold_sync():
                self.chart._py_to_js_updates = None
                self.chart.spec = spec
        self._skeleton = skeleton
        self._dataset_names = list(datasets)
        self.last_update = "spec"

    def _send_data(self, datasets: dict[str, list]) -> None:
        self._data_seq += 1
        self.chart._py_to_js_updates = [
            {"namespace": "data", "name": name, "scope": [], "value": values, "seq": self._data_seq}
            for name, values in datasets.items()
        ]
        self.last_update = "data"


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

    #: The notebooks whose published models the page shows (flagged when not converged or
    #: improper; keys of :data:`~cxlib.dashboard.results.NOTEBOOKS` or notebook names).
    MODEL_NOTEBOOKS: tuple[str, ...] = MODEL_NOTEBOOKS

    def __init__(self, studies: list[str], *, runs_dir=None, study: str | None = None):
        self.runs_dir = runs_dir
        self.studies = list(studies)
        self.results: PublishedResults | None = None
        self._started = False
        self.picker = widgets.Dropdown(
            options=self.studies, description="Study", layout=widgets.Layout(width="360px")
        )
        self.request_note = widgets.HTML()
        self.header = widgets.HTML()
        self.flags = widgets.HTML()
        self.error = widgets.HTML()
        self.body = widgets.VBox()
        super().__init__(
            [
                widgets.HTML(STYLE),
                self.picker,
                self.request_note,
                self.header,
                self.flags,
                self.error,
                self.body,
            ]
        )
        self.add_class("cx-dashboard")
        if not self.studies:
            self._none_published()
            return
        self._start(study)

    def _none_published(self) -> None:
        self.picker.layout.display = "none"
        self.header.value = note(
            "No study is published yet: run `cx run pipelines/demo.yaml` (or `make run`) "
            "and reload this page.",
            "warn",
        )

    def _start(self, study: str | None) -> None:
        """Build the controls and show the first study (once there is one)."""
        self._started = True
        self.picker.layout.display = None
        self.build()
        if study is not None and study in self.studies:
            self.picker.value = study
        elif self.picker.value is None:
            self.picker.value = self.studies[0]
        self.picker.observe(self._on_study, "value")
        self.load(self.picker.value)

    @classmethod
    def from_runs(cls, runs_dir=None, **kwargs) -> Dashboard:
        """A dashboard over the studies published under ``runs_dir``."""
        return cls(published_studies(runs_dir), runs_dir=runs_dir, **kwargs)

    def refresh(self) -> bool:
        """Read the published studies again; reload the study shown if it was republished.

        Voila runs a dashboard's first cell in a preheated kernel before anyone asks for
        the page, so the list it made then misses a study published since (the "first
        load" of a page after publishing). :meth:`apply_request` calls this when the
        request arrives.

        Returns
        -------
        bool
            Whether anything changed (the list, or the publication shown).
        """
        studies = published_studies(self.runs_dir)
        if studies == self.studies:
            if self.results is None or not self._started:
                return False
            current = read_pointer_id(self.results)
            if current == self.results.pointer.get("publication_id"):
                return False
            self.load(self.picker.value)
            return True
        self.studies = studies
        if not studies:
            return True
        if not self._started:
            self.picker.options = studies
            self._start(None)
            return True
        shown = self.picker.value
        self.picker.unobserve(self._on_study, "value")
        try:
            self.picker.options = studies
            if shown in studies:
                self.picker.value = shown
        finally:
            self.picker.observe(self._on_study, "value")
        self.load(self.picker.value)
        return True

    def apply_request(self, query: str | None) -> None:
        """Follow a page link's ``?study=NAME`` when NAME is a published study; refuse the rest.

        The published studies are read again first (:meth:`refresh`), so a study
        published after the page's kernel started is offered and can be linked to.
        """
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - a viewer sees a note, never a traceback
            self._failed(exc)
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
            self.flags.value = ""
            self.error.value = ""
            self.flags.value = flags_html(self.results, self.MODEL_NOTEBOOKS)
            self.render()
        except Exception as exc:  # noqa: BLE001 - a viewer sees a note, never a traceback
            self._failed(exc)

    def missing(self, what: str, notebook: str, role: str | None = None) -> str:
        """The note for an empty part of the page (see :func:`missing`)."""
        return missing(self.results, what, notebook, role)

    def safely(self, update) -> None:
        """Run an update, turning an error into a note on the page."""
        try:
            update()
            self.error.value = ""
        except Exception as exc:  # noqa: BLE001 - a viewer sees a note, never a traceback
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        logger.exception("dashboard update failed")
        self.error.value = (
            '<div class="cx-error">'
            + note(
                f"This part of the dashboard could not be shown ({type(exc).__name__}). "
                "The published results may be incomplete; ask the CX team to check the last run.",
                "bad",
            )
            + "</div>"
        )

    def build(self) -> None:
        """Create the controls (once)."""

    def render(self) -> None:
        """Fill the controls from ``self.results``."""
