"""Behaviour signals of web and app sessions, computed in DuckDB over the cleaned event log.

:func:`compute_signals` reads the events Parquet that :func:`cxlib.data.events.load_events`
writes and computes, with SQL window functions (streaming, spilling to disk beyond
:data:`cxlib.data.events.DUCKDB_MEMORY_LIMIT`; 10 million events never sit in pandas), one
row per session with the signals :data:`SIGNALS`, one row per session and touchpoint, and
one row per session and page. Every definition, and where it comes from, is written next to
its threshold in :class:`SignalThresholds`; the thresholds can be overridden from the study
spec (``source.events.thresholds``).

Events are ordered by time within a session (ties by their row in the source file).
"Response" events are ``page_view``, ``input``, ``scroll``, ``form_submit`` and
``form_error``; "actions" are ``click``, ``input`` and ``form_submit``; "activity" is any
event but ``mouse_stillness`` (a tracker's marker that the pointer stopped, which is not
itself activity).

>>> signals = compute_signals("runs/events/events.parquet", study)   # doctest: +SKIP
>>> signals.sessions[["session_id", "rage_clicks", "completed"]]      # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from cxlib.data.events import (
    NoSurveyedSessionWarning,
    connect,
    load_feedback,
    sql_text,
)
from cxlib.errors import DataProblem, DataValidationError
from cxlib.study import EventsSource, Study

__all__ = [
    "PAGE_COLUMNS",
    "SESSION_COLUMNS",
    "SIGNALS",
    "TOUCHPOINT_COLUMNS",
    "SessionSignals",
    "SignalThresholds",
    "compute_signals",
    "signal_definitions",
]

#: The behaviour signals of a session, in order (the shared signal-table interface).
SIGNALS = (
    "dwell_time_s",
    "hesitation_s",
    "stillness_share",
    "rage_clicks",
    "dead_clicks",
    "quick_backs",
    "page_loops",
    "form_errors",
    "completed",
    "time_to_complete_s",
)

#: The columns of :attr:`SessionSignals.sessions`, in order (``rating`` and ``weight``
#: follow when feedback is joined).
SESSION_COLUMNS = (
    "session_id",
    "respondent_id",
    "touchpoint",
    "segment",
    "day",
    "start",
    "n_events",
    "n_pages",
    *SIGNALS,
)

#: The columns of :attr:`SessionSignals.touchpoints`, in order.
TOUCHPOINT_COLUMNS = ("session_id", "touchpoint", "n_events", "n_pages", *SIGNALS)

#: The columns of :attr:`SessionSignals.pages` ("worst pages by signal"), in order.
PAGE_COLUMNS = (
    "session_id",
    "page",
    "touchpoint",
    "views",
    "dwell_time_s",
    "rage_clicks",
    "dead_clicks",
    "quick_backs",
    "form_errors",
)

_RESPONSES = ("page_view", "input", "scroll", "form_submit", "form_error")
_ACTIONS = ("click", "input", "form_submit")
_INTS = (
    "n_events",
    "n_pages",
    "rage_clicks",
    "dead_clicks",
    "quick_backs",
    "page_loops",
    "form_errors",
)


@dataclass(frozen=True)
class SignalThresholds:
    """The thresholds of the behaviour signals, with their definitions and sources.

    Attributes
    ----------
    rage_click_min_clicks : int
        **Rage click** (default 3 clicks within ``rage_click_window_s`` = 2 s): a burst of
        at least this many clicks on one element within the window (Conviva's definition;
        Microsoft Clarity and Contentsquare count the same signal). A click is *flagged*
        when it and the ``min_clicks - 1`` clicks before it on the same element fall in the
        window; a run of consecutive flagged clicks is one burst, and ``rage_clicks``
        counts bursts. Clicks without an element are never rage clicks.
    rage_click_window_s : float
        See ``rage_click_min_clicks``.
    page_loop_min_views : int
        **Page loop** (default 3 views within ``page_loop_window_s`` = 15 s): the same page
        viewed at least this many times within the window (Conviva's definition, "the same
        URL >= 3 times within 15 s"); counted as bursts, like rage clicks.
    page_loop_window_s : float
        See ``page_loop_min_views``.
    dead_click_window_s : float
        **Dead click** (default 1 s): a click followed by no response (page view, input,
        scroll, form submit or form error) within this time (Microsoft Clarity's notion of a
        click with no effect). A click inside a rage-click burst counts there, not as a
        dead click (Clarity reports the two as separate signals).
    quick_back_window_s : float
        **Quick back** (default 10 s): a visit to a page left within this time, back to the
        page viewed before it (A -> B -> A), or by a ``back`` event within this time of
        arriving (Microsoft Clarity's "quick back": a visitor who navigates to a page and
        quickly returns). At most one per visit.
    stillness_min_s : float
        **Mouse stillness** (default 3 s): a pause of at least this long between two
        activity events is stillness; ``stillness_share`` is the share of the session's
        dwell time in such pauses (Contentsquare and Medallia DXA read hesitation and
        stillness as friction). **Hesitation** (``hesitation_s``) is the median, over the
        session's actions (click, input, form submit), of the time since the previous
        activity event: the stillness before an action.

    Notes
    -----
    Definitions that need no threshold: ``dwell_time_s`` is the last event's time less
    the first's; ``form_errors`` counts ``form_error`` events (Medallia DXA's form pillar,
    Contentsquare's validation errors); ``completed`` says the session viewed the
    completion page of its touchpoint (``source.events.completion``) and
    ``time_to_complete_s`` is the time from the session's first event to the first view of
    that page (NaN when not completed). A session's ``touchpoint`` is the one most of its
    page views map to (ties: the one viewed first).
    """

    rage_click_min_clicks: int = 3
    rage_click_window_s: float = 2.0
    page_loop_min_views: int = 3
    page_loop_window_s: float = 15.0
    dead_click_window_s: float = 1.0
    quick_back_window_s: float = 10.0
    stillness_min_s: float = 3.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ValueError(f"SignalThresholds.{f.name} must be positive, got {value}")
        for name in ("rage_click_min_clicks", "page_loop_min_views"):
            value = getattr(self, name)
            if value < 2 or value != int(value):
                raise ValueError(
                    f"SignalThresholds.{name} must be a whole number >= 2, got {value}"
                )
            object.__setattr__(self, name, int(value))

    @classmethod
    def from_source(cls, source: EventsSource | None) -> SignalThresholds:
        """The defaults, with the overrides of ``source.events.thresholds``."""
        if source is None or not source.thresholds:
            return cls()
        return replace(cls(), **source.thresholds)


def signal_definitions(thresholds: SignalThresholds | None = None) -> dict[str, tuple[str, str]]:
    """Each signal's label and one-sentence definition, with the thresholds it was computed with.

    Parameters
    ----------
    thresholds : SignalThresholds, optional
        The thresholds (default: the defaults).

    Returns
    -------
    dict
        Signal -> ``(label, definition)``, in :data:`SIGNALS` order (what pages and tables
        show next to a signal; the sources are in :class:`SignalThresholds`).
    """
    th = thresholds or SignalThresholds()
    return {
        "dwell_time_s": ("Dwell time", "seconds from the session's first event to its last"),
        "hesitation_s": (
            "Hesitation",
            "median seconds of stillness before an action (click, input, form submit)",
        ),
        "stillness_share": (
            "Mouse stillness",
            f"share of the session in pauses of {th.stillness_min_s:g} s or more without "
            "activity",
        ),
        "rage_clicks": (
            "Rage clicks",
            f"bursts of {th.rage_click_min_clicks} or more clicks on one element within "
            f"{th.rage_click_window_s:g} s (Conviva)",
        ),
        "dead_clicks": (
            "Dead clicks",
            f"clicks with no page view, input, scroll or form event within "
            f"{th.dead_click_window_s:g} s (Microsoft Clarity)",
        ),
        "quick_backs": (
            "Quick backs",
            f"returns to the previous page within {th.quick_back_window_s:g} s of arriving "
            "(Microsoft Clarity)",
        ),
        "page_loops": (
            "Page loops",
            f"the same page viewed {th.page_loop_min_views} or more times within "
            f"{th.page_loop_window_s:g} s (Conviva)",
        ),
        "form_errors": ("Form errors", "form validation errors shown"),
        "completed": ("Task completed", "the session reached its touchpoint's completion page"),
        "time_to_complete_s": (
            "Time to complete",
            "seconds from the first event to the completion page",
        ),
    }


@dataclass
class SessionSignals:
    """The behaviour signals of the sessions of an event log.

    Attributes
    ----------
    sessions : pandas.DataFrame
        One row per session, columns :data:`SESSION_COLUMNS` (the shared signal-table
        interface), then ``rating`` and ``weight`` when feedback is joined (NaN for
        sessions not surveyed).
    touchpoints : pandas.DataFrame
        One row per session and touchpoint its events map to, :data:`TOUCHPOINT_COLUMNS`:
        the signals of the part of the session on that touchpoint (dwell time is the time
        spent on its pages; completion is of that touchpoint's completion page, timed from
        the session's first event on it).
    pages : pandas.DataFrame
        One row per session and page, :data:`PAGE_COLUMNS` (dwell time: time from each view
        of the page to the next page view or the session's end).
    thresholds : SignalThresholds
        The thresholds used.
    paths : dict
        ``sessions``, ``touchpoints``, ``pages`` -> Parquet files, when written.
    """

    sessions: pd.DataFrame
    touchpoints: pd.DataFrame
    pages: pd.DataFrame
    thresholds: SignalThresholds
    paths: dict[str, Path]


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(sql_text(v) for v in values) + ")"


def _enrich(con, events: str, th: SignalThresholds, tmp: Path) -> None:
    """Write the window passes (events, clicks, page views) as Parquet files in ``tmp``."""
    order = "ORDER BY t, file_row"
    pv = "event = 'page_view'"

    def before(value: str) -> str:
        # the value at the last page view before this event (lag skipping other events)
        return f"lag(CASE WHEN {pv} THEN {value} END IGNORE NULLS) OVER s"

    con.execute(f"""
        COPY (
        SELECT session_id, event, element, file_row, t,
          coalesce(page, CASE WHEN {pv} THEN NULL ELSE {before("page")} END) AS page,
          coalesce(touchpoint, CASE WHEN {pv} THEN NULL ELSE {before("touchpoint")} END)
            AS touchpoint,
          lead(CASE WHEN event IN {_in(_RESPONSES)} THEN t END IGNORE NULLS) OVER s
            AS next_response_t,
          lag(CASE WHEN event <> 'mouse_stillness' THEN t END IGNORE NULLS) OVER s
            AS prev_activity_t,
          CASE WHEN {pv} THEN file_row ELSE {before("file_row")} END AS visit,
          CASE WHEN {pv} THEN t ELSE {before("t")} END AS arrival_t
        FROM (SELECT *, epoch_us("timestamp") / 1e6 AS t FROM read_parquet({sql_text(events)}))
        WINDOW s AS (PARTITION BY session_id {order})
        ) TO {sql_text(tmp / "w.parquet")} (FORMAT parquet)
    """)
    w = f"read_parquet({sql_text(tmp / 'w.parquet')})"
    n = th.rage_click_min_clicks
    con.execute(f"""
        COPY (
        SELECT session_id, page, touchpoint, t,
          flag AND NOT coalesce(lag(flag) OVER el, false) AS burst_start,
          NOT coalesce(bool_or(flag) OVER (el ROWS BETWEEN CURRENT ROW AND {n - 1} FOLLOWING),
                       false)
            AND (next_response_t IS NULL OR next_response_t - t > {th.dead_click_window_s})
            AS dead
        FROM (
          SELECT *, element IS NOT NULL
                    AND coalesce(t - lag(t, {n - 1}) OVER el <= {th.rage_click_window_s}, false)
                    AS flag
          FROM {w} WHERE event = 'click'
          WINDOW el AS (PARTITION BY session_id, element {order})
        )
        WINDOW el AS (PARTITION BY session_id, element {order})
        ) TO {sql_text(tmp / "clicks.parquet")} (FORMAT parquet)
    """)
    m = th.page_loop_min_views
    q = th.quick_back_window_s
    con.execute(f"""
        COPY (
        WITH ends AS (SELECT session_id, max(t) AS end_t FROM {w} GROUP BY session_id),
        backs AS (
          SELECT session_id, visit FROM {w}
          WHERE event = 'back' AND t - arrival_t <= {q} GROUP BY ALL
        ),
        pv AS (
          SELECT session_id, page, touchpoint, t, file_row,
            lag(page) OVER s AS prev_page, lead(page) OVER s AS next_page,
            lead(t) OVER s AS next_t
          FROM {w} WHERE event = 'page_view'
          WINDOW s AS (PARTITION BY session_id {order})
        ),
        looped AS (
          SELECT *, coalesce(t - lag(t, {m - 1}) OVER p <= {th.page_loop_window_s}, false)
                    AS flag
          FROM pv WINDOW p AS (PARTITION BY session_id, page {order})
        )
        SELECT l.session_id, l.page, l.touchpoint, l.t,
          coalesce(l.next_t, e.end_t) - l.t AS visit_s,
          l.flag AND NOT coalesce(lag(l.flag) OVER p, false) AS loop_start,
          (l.next_page IS NOT NULL AND l.next_page = l.prev_page AND l.page <> l.prev_page
           AND l.next_t - l.t <= {q}) OR b.visit IS NOT NULL AS quick_back
        FROM looped l
        JOIN ends e USING (session_id)
        LEFT JOIN backs b ON b.session_id = l.session_id AND b.visit = l.file_row
        WINDOW p AS (PARTITION BY l.session_id, l.page ORDER BY l.t, l.file_row)
        ) TO {sql_text(tmp / "pv.parquet")} (FORMAT parquet)
    """)


def _completion_sql(source: EventsSource, pv: str) -> str:
    """Rows (session_id, touchpoint, done_t): first view of each touchpoint's completion page."""
    parts = [
        f"SELECT session_id, {sql_text(tp)} AS touchpoint, min(t) AS done_t FROM {pv} "
        f"WHERE page GLOB {sql_text(pattern)} GROUP BY session_id"
        for tp, pattern in source.completion.items()
    ]
    if not parts:
        return (
            "SELECT CAST(NULL AS VARCHAR) AS session_id, CAST(NULL AS VARCHAR) AS touchpoint, "
            "CAST(NULL AS DOUBLE) AS done_t WHERE false"
        )
    return " UNION ALL ".join(parts)


def _aggregate(con, source: EventsSource, th: SignalThresholds, tmp: Path, events: str):
    w = f"read_parquet({sql_text(tmp / 'w.parquet')})"
    clicks = f"read_parquet({sql_text(tmp / 'clicks.parquet')})"
    pv = f"read_parquet({sql_text(tmp / 'pv.parquet')})"
    s = th.stillness_min_s

    def event_stats(keys: str, where: str = "") -> str:
        return f"""
          SELECT {keys}, count(*) AS n_events,
            count(*) FILTER (WHERE event = 'page_view') AS n_pages,
            min(t) AS first_t, max(t) AS last_t,
            median(t - prev_activity_t) FILTER (WHERE event IN {_in(_ACTIONS)}) AS hesitation_s,
            coalesce(sum(t - prev_activity_t) FILTER (
              WHERE event <> 'mouse_stillness' AND t - prev_activity_t >= {s}), 0) AS still_s,
            count(*) FILTER (WHERE event = 'form_error') AS form_errors
          FROM {w} {where} GROUP BY {keys}"""

    def click_stats(keys: str, where: str = "") -> str:
        return f"""
          SELECT {keys}, count(*) FILTER (WHERE burst_start) AS rage_clicks,
            count(*) FILTER (WHERE dead) AS dead_clicks
          FROM {clicks} {where} GROUP BY {keys}"""

    def pv_stats(keys: str, where: str = "") -> str:
        return f"""
          SELECT {keys}, count(*) FILTER (WHERE quick_back) AS quick_backs,
            count(*) FILTER (WHERE loop_start) AS page_loops, sum(visit_s) AS visit_s
          FROM {pv} {where} GROUP BY {keys}"""

    done = _completion_sql(source, pv)
    signals_sql = """
        ev.n_events, ev.n_pages, {dwell} AS dwell_time_s, ev.hesitation_s,
        CASE WHEN {dwell} > 0 THEN least(ev.still_s / {dwell}, 1.0) ELSE 0.0 END
          AS stillness_share,
        coalesce(c.rage_clicks, 0) AS rage_clicks, coalesce(c.dead_clicks, 0) AS dead_clicks,
        coalesce(p.quick_backs, 0) AS quick_backs, coalesce(p.page_loops, 0) AS page_loops,
        ev.form_errors, d.done_t IS NOT NULL AS completed,
        d.done_t - ev.first_t AS time_to_complete_s"""
    # ---- per session and touchpoint
    tp_keys = "session_id, touchpoint"
    nn = "WHERE touchpoint IS NOT NULL"
    con.execute(f"""
        CREATE TEMP TABLE tp AS
        SELECT ev.session_id, ev.touchpoint, ev.first_t,
          {signals_sql.format(dwell="coalesce(p.visit_s, 0.0)")}
        FROM ({event_stats(tp_keys, nn)}) ev
        LEFT JOIN ({click_stats(tp_keys, nn)}) c USING (session_id, touchpoint)
        LEFT JOIN ({pv_stats(tp_keys, nn)}) p USING (session_id, touchpoint)
        LEFT JOIN (SELECT session_id, touchpoint, min(done_t) AS done_t FROM ({done})
                   GROUP BY ALL) d USING (session_id, touchpoint)
    """)
    # ---- per session
    con.execute(f"""
        CREATE TEMP TABLE sess AS
        WITH base AS (
          SELECT session_id, max(respondent_id) AS respondent_id, max(segment) AS segment,
            min("timestamp") AS start
          FROM read_parquet({sql_text(events)}) GROUP BY session_id
        ),
        main AS (
          SELECT session_id, touchpoint FROM (
            SELECT session_id, touchpoint, row_number() OVER (PARTITION BY session_id
              ORDER BY n_pages DESC, n_events DESC, first_t, touchpoint) AS rank
            FROM tp) WHERE rank = 1
        )
        SELECT b.session_id, b.respondent_id, m.touchpoint, b.segment,
          CAST(date_trunc('day', b.start) AS TIMESTAMP) AS day,
          b.start, {signals_sql.format(dwell="(ev.last_t - ev.first_t)")}
        FROM base b
        JOIN ({event_stats("session_id")}) ev USING (session_id)
        LEFT JOIN main m USING (session_id)
        LEFT JOIN ({click_stats("session_id")}) c USING (session_id)
        LEFT JOIN ({pv_stats("session_id")}) p USING (session_id)
        LEFT JOIN ({done}) d ON d.session_id = b.session_id AND d.touchpoint = m.touchpoint
    """)
    # ---- per session and page
    pg_keys = "session_id, page"
    con.execute(f"""
        CREATE TEMP TABLE pg AS
        SELECT ev.session_id, ev.page, ev.touchpoint, coalesce(p.views, 0) AS views,
          coalesce(p.visit_s, 0.0) AS dwell_time_s,
          coalesce(c.rage_clicks, 0) AS rage_clicks, coalesce(c.dead_clicks, 0) AS dead_clicks,
          coalesce(p.quick_backs, 0) AS quick_backs, ev.form_errors
        FROM (SELECT {pg_keys}, max(touchpoint) AS touchpoint,
                count(*) FILTER (WHERE event = 'form_error') AS form_errors
              FROM {w} WHERE page IS NOT NULL GROUP BY {pg_keys}) ev
        LEFT JOIN ({click_stats(pg_keys, "WHERE page IS NOT NULL")}) c USING (session_id, page)
        LEFT JOIN (SELECT {pg_keys}, count(*) AS views,
                     count(*) FILTER (WHERE quick_back) AS quick_backs, sum(visit_s) AS visit_s
                   FROM {pv} WHERE page IS NOT NULL GROUP BY {pg_keys}) p
          USING (session_id, page)
    """)


def _typed(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    frame = frame[list(columns)].copy()
    for col in _INTS:
        if col in frame:
            frame[col] = frame[col].fillna(0).astype("int64")
    if "completed" in frame:
        frame["completed"] = frame["completed"].fillna(False).astype(bool)
    for col in ("dwell_time_s", "hesitation_s", "stillness_share", "time_to_complete_s"):
        if col in frame:
            frame[col] = frame[col].astype("float64")
    for col in ("respondent_id", "segment", "touchpoint"):
        if col in frame:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    if "start" in frame:
        frame["start"] = pd.to_datetime(frame["start"], utc=True).astype("datetime64[ns, UTC]")
        frame["day"] = pd.to_datetime(frame["day"]).astype("datetime64[ns]")
    return frame


def compute_signals(
    events_parquet: str | Path,
    source: Study | EventsSource,
    thresholds: SignalThresholds | None = None,
    out_dir: str | Path | None = None,
    *,
    feedback: pd.DataFrame | None = None,
    threads: int | None = None,
) -> SessionSignals:
    """Compute the behaviour signals of every session of a cleaned event log.

    Parameters
    ----------
    events_parquet : str or Path
        The cleaned events file (:attr:`cxlib.data.events.EventLog.path`).
    source : Study or EventsSource
        The event log's declaration: its ``completion`` pages and ``thresholds``, and its
        ``feedback`` (read and joined when ``feedback`` is not given).
    thresholds : SignalThresholds, optional
        Overrides the thresholds of ``source`` (default: its ``thresholds``, over the
        defaults).
    out_dir : str or Path, optional
        Where to write ``sessions.parquet``, ``touchpoints.parquet`` and ``pages.parquet``.
    feedback : pandas.DataFrame, optional
        ``session_id, rating[, weight]`` to join (instead of the source's feedback file).
    threads : int, optional
        DuckDB worker threads (default: the number of cores).

    Returns
    -------
    SessionSignals

    Raises
    ------
    DataValidationError
        When the events file is missing or lacks the cleaned columns.

    Warns
    -----
    NoSurveyedSessionWarning
        When feedback is joined but rates none of the sessions.
    """
    scale = None
    if isinstance(source, Study):
        scale = source.feedback_scale
        source = source.events_source
        if source is None:
            raise ValueError("the study declares no session event log (source.events)")
    th = thresholds or SignalThresholds.from_source(source)
    events = Path(events_parquet)
    if not events.exists():
        raise DataValidationError(
            str(events),
            [
                DataProblem(
                    None,
                    "the cleaned events file does not exist",
                    expected="the file load_events wrote (EventLog.path)",
                )
            ],
        )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".cx-signals-", dir=out_dir))
    con = connect(tmp / "spill", threads=threads)
    try:
        have = {
            r[0]
            for r in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({sql_text(events)})"
            ).fetchall()
        }
        need = {
            "session_id",
            "timestamp",
            "event",
            "page",
            "element",
            "touchpoint",
            "file_row",
            "respondent_id",
            "segment",
        }
        if need - have:
            raise DataValidationError(
                str(events),
                [
                    DataProblem(
                        None,
                        "the file lacks the columns " + ", ".join(sorted(need - have)),
                        expected="a cleaned events file written by cxlib.data.events.load_events",
                    )
                ],
            )
        _enrich(con, str(events), th, tmp)
        _aggregate(con, source, th, tmp, str(events))
        paths: dict[str, Path] = {}
        if out_dir is not None:
            out = Path(out_dir)
            for name, table in (("sessions", "sess"), ("touchpoints", "tp"), ("pages", "pg")):
                partial = out / f".{name}.parquet.partial"
                con.execute(
                    f"COPY (SELECT * FROM {table} ORDER BY ALL) "
                    f"TO {sql_text(partial)} (FORMAT parquet)"
                )
                paths[name] = out / f"{name}.parquet"
        sessions = _typed(
            con.execute("SELECT * FROM sess ORDER BY session_id").df(), SESSION_COLUMNS
        )
        touchpoints = _typed(
            con.execute("SELECT * FROM tp ORDER BY session_id, touchpoint").df(), TOUCHPOINT_COLUMNS
        )
        pages = _typed(con.execute("SELECT * FROM pg ORDER BY session_id, page").df(), PAGE_COLUMNS)
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if feedback is None and source.feedback is not None:
        feedback = load_feedback(source, scale)
    if feedback is not None:
        sessions = _join_feedback(sessions, feedback)
    for name, path in paths.items():
        os.replace(path.parent / f".{name}.parquet.partial", path)
    if feedback is not None and "sessions" in paths:
        sessions.to_parquet(paths["sessions"], index=False)
    return SessionSignals(sessions, touchpoints, pages, th, paths)


def _join_feedback(sessions: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    fb = feedback[["session_id", "rating"]].copy()
    fb["weight"] = feedback["weight"] if "weight" in feedback else 1.0
    fb["session_id"] = fb["session_id"].astype(str)
    out = sessions.merge(fb, on="session_id", how="left", validate="one_to_one")
    out["rating"] = out["rating"].astype(float)
    out["weight"] = out["weight"].astype(float)
    if not np.isfinite(out["rating"]).any():
        warnings.warn(
            f"no surveyed session: none of the {len(fb):,} rated sessions is among the "
            f"{len(sessions):,} sessions of the event log; the calibration has no stated "
            "satisfaction to learn from (do the session ids match?)",
            NoSurveyedSessionWarning,
            stacklevel=3,
        )
    return out
