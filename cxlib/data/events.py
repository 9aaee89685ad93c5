"""Load and validate a session event log (web and app sessions), streaming with DuckDB.

The log is a Parquet or CSV file with one row per event, declared in the study spec under
``source.events`` (see :class:`cxlib.study.EventsSource`). :func:`load_events` checks it
and writes a cleaned, typed copy (Parquet, written by DuckDB ``COPY``: the file never sits
in pandas, so 10 million events load in little memory), with an :class:`EventLogReport`
that counts every rule it applied:

=============================  ==========================================================
what is found                  what happens
=============================  ==========================================================
a required column missing      error naming it (with "did you mean" for a rename)
an unknown event type          error naming the rows and values (nothing is dropped)
an unreadable timestamp        error naming the rows and values
a timestamp in the future      error naming the rows (beyond :data:`FUTURE_TOLERANCE_S`)
mixed time zones               normalized to UTC and counted per offset
naive timestamps               read in ``source.events.timezone`` and counted
identical rows (duplicates)    counted and dropped (one copy kept)
events out of order            sorted by time within the session and counted
a session without a start      counted (its first event is not a ``page_view``)
a page mapped to no touchpoint counted per page, named; the events are kept, touchpoint null
no surveyed session            a warning (:class:`NoSurveyedSessionWarning`) and a report line
personal data                  dropped on load (:data:`PERSONAL_DATA_COLUMNS`) and named
=============================  ==========================================================

The cleaned file has the columns :data:`CLEAN_COLUMNS`: ``timestamp`` is a UTC
``TIMESTAMP WITH TIME ZONE``, ``page`` is without its query string and fragment,
``touchpoint`` is the study touchpoint the page maps to, and ``file_row`` the event's
line (CSV) or row (Parquet) in the source file, which orders events with equal timestamps.

>>> from cxlib.study import load_study
>>> log = load_events(load_study("study.yaml"), "runs/events")   # doctest: +SKIP
>>> print(log.report.to_text())                                  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from cxlib.errors import DataProblem, DataValidationError, did_you_mean
from cxlib.study import EVENT_COLUMNS, EventsSource, Scale, Study

__all__ = [
    "CLEAN_COLUMNS",
    "DUCKDB_MEMORY_LIMIT",
    "EVENT_TYPES",
    "FUTURE_TOLERANCE_S",
    "PERSONAL_DATA_COLUMNS",
    "EventLog",
    "EventLogReport",
    "NoSurveyedSessionWarning",
    "connect",
    "load_events",
    "load_feedback",
    "page_touchpoint_sql",
    "sql_text",
]

#: The event types a log may hold (lower case; surrounding blanks are ignored).
EVENT_TYPES = (
    "page_view",
    "click",
    "mouse_move",
    "mouse_stillness",
    "scroll",
    "input",
    "form_error",
    "form_submit",
    "back",
    "exit",
)

#: Columns dropped on load because they hold personal data or free text (compared in lower
#: case): IP addresses, user agents, and what customers typed. They never reach a result;
#: the report names them (never their values). Every other column cxlib does not use is
#: dropped too.
PERSONAL_DATA_COLUMNS = (
    "ip",
    "ip_address",
    "ipaddress",
    "client_ip",
    "remote_addr",
    "user_agent",
    "useragent",
    "ua",
    "text",
    "value",
    "input_text",
    "input_value",
    "free_text",
    "email",
    "query",
    "query_string",
    "url_query",
)

#: How far past the time of loading a timestamp may lie (seconds; clock skew) before
#: the event is refused as "in the future".
FUTURE_TOLERANCE_S = 300.0

#: DuckDB's memory limit for loading and computing signals (it spills to disk beyond).
DUCKDB_MEMORY_LIMIT = "1.5GB"

#: The columns of the cleaned events file, in order.
CLEAN_COLUMNS = (
    "session_id",
    "respondent_id",
    "segment",
    "timestamp",
    "event",
    "page",
    "element",
    "x",
    "y",
    "touchpoint",
    "file_row",
)

_REQUIRED = ("session_id", "timestamp", "event")
_TEXT_COLUMNS = ("session_id", "respondent_id", "segment", "event", "page", "element", "touchpoint")
_SHOWN = 5  # offending rows shown per problem


class NoSurveyedSessionWarning(UserWarning):
    """The event log has no session the feedback (intercept survey) rated.

    The calibration of signals against stated satisfaction has nothing to learn from.
    """


def sql_text(value: object) -> str:
    """A value as a SQL string literal (single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def connect(temp_dir: str | Path | None = None, *, threads: int | None = None):
    """A DuckDB connection with the memory limit and a spill folder set.

    Parameters
    ----------
    temp_dir : str or Path, optional
        Where DuckDB spills what does not fit in :data:`DUCKDB_MEMORY_LIMIT`.
    threads : int, optional
        Worker threads (default: DuckDB's, the number of cores).

    Returns
    -------
    duckdb.DuckDBPyConnection
    """
    con = duckdb.connect(":memory:")
    con.execute(f"SET memory_limit = {sql_text(DUCKDB_MEMORY_LIMIT)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET TimeZone = 'UTC'")
    if temp_dir is not None:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {sql_text(temp_dir)}")
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    return con


def page_touchpoint_sql(patterns: dict[str, str], column: str = "page") -> str:
    """A SQL ``CASE`` giving the touchpoint of ``column`` by the first matching pattern.

    Parameters
    ----------
    patterns : dict
        Page pattern (exact, or a glob with ``*``, ``?``, ``[...]``) -> touchpoint, in
        the order they are tried.
    column : str
        The SQL expression of the page.

    Returns
    -------
    str
        ``CASE WHEN page GLOB '/app/order*' THEN 'app_order' ... END`` (NULL when none
        matches; ``NULL`` when there are no patterns).
    """
    if not patterns:
        return "CAST(NULL AS VARCHAR)"
    whens = " ".join(
        f"WHEN {column} GLOB {sql_text(p)} THEN {sql_text(t)}" for p, t in patterns.items()
    )
    return f"(CASE {whens} END)"


# --------------------------------------------------------------------------- report
@dataclass
class EventLogReport:
    """What loading an event log found and did, rule by rule.

    Attributes
    ----------
    source : str
        The file read.
    rows_read : int
        Rows in the file.
    events : int
        Events kept (``rows_read`` less ``duplicates``).
    sessions : int
        Distinct sessions.
    dropped_personal_data : list of str
        Columns dropped as personal data or free text (names only).
    dropped_unused : list of str
        Other columns dropped because cxlib does not use them.
    duplicates : int
        Identical rows dropped (one copy of each kept).
    out_of_order : int
        Events that come before, in the file, an earlier event of their session
        (sorted by time).
    sessions_out_of_order : int
        Sessions with at least one such event.
    sessions_without_start : int
        Sessions whose first event is not a ``page_view``.
    time_zones : dict
        How the timestamps were written: UTC offset (``"+01:00"``, ``"Z"``) or
        ``"naive (read in <zone>)"`` -> number of events; all normalized to UTC.
    unmapped_pages : dict
        Page -> events on it, for pages that map to no touchpoint (largest first).
    surveyed_sessions : int or None
        Sessions of the log with a feedback rating (None without feedback).
    feedback_rows : int or None
        Ratings in the feedback file (None without feedback).
    warnings : list of str
        The counted warnings, as sentences.
    """

    source: str
    rows_read: int = 0
    events: int = 0
    sessions: int = 0
    dropped_personal_data: list[str] = field(default_factory=list)
    dropped_unused: list[str] = field(default_factory=list)
    duplicates: int = 0
    out_of_order: int = 0
    sessions_out_of_order: int = 0
    sessions_without_start: int = 0
    time_zones: dict[str, int] = field(default_factory=dict)
    unmapped_pages: dict[str, int] = field(default_factory=dict)
    surveyed_sessions: int | None = None
    feedback_rows: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def mixed_time_zones(self) -> bool:
        """Whether the timestamps were written in more than one time zone."""
        return len(self.time_zones) > 1

    @property
    def unmapped_events(self) -> int:
        """Events on pages that map to no touchpoint."""
        return sum(self.unmapped_pages.values())

    def to_text(self) -> str:
        """The report as a few lines of text."""
        lines = [
            f"{self.source}: {self.rows_read:,} rows read, {self.events:,} events kept in "
            f"{self.sessions:,} sessions",
        ]
        if self.dropped_personal_data:
            lines.append("personal data dropped on load: " + ", ".join(self.dropped_personal_data))
        if self.dropped_unused:
            lines.append("columns not used, dropped: " + ", ".join(self.dropped_unused))
        zones = ", ".join(f"{z}: {n:,}" for z, n in self.time_zones.items())
        lines.append(f"time zones (all normalized to UTC): {zones or 'none'}")
        lines.append(f"duplicated events dropped: {self.duplicates:,}")
        lines.append(
            f"events out of order (sorted by time): {self.out_of_order:,} in "
            f"{self.sessions_out_of_order:,} sessions"
        )
        lines.append(
            f"sessions without a start (no page_view first): {self.sessions_without_start:,}"
        )
        if self.unmapped_pages:
            shown = list(self.unmapped_pages.items())[:10]
            more = len(self.unmapped_pages) - len(shown)
            lines.append(
                f"pages mapped to no touchpoint: {len(self.unmapped_pages):,} "
                f"({self.unmapped_events:,} events): "
                + ", ".join(f"{p!r} ({n:,})" for p, n in shown)
                + (f" and {more} more" if more else "")
            )
        else:
            lines.append("pages mapped to no touchpoint: none")
        if self.surveyed_sessions is None:
            lines.append("surveyed sessions: no feedback declared")
        else:
            lines.append(
                f"surveyed sessions: {self.surveyed_sessions:,} of {self.sessions:,} "
                f"({self.feedback_rows:,} feedback ratings)"
            )
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class EventLog:
    """A loaded, cleaned event log.

    Attributes
    ----------
    path : Path
        The cleaned events file (Parquet, columns :data:`CLEAN_COLUMNS`, sorted by session
        and time).
    report : EventLogReport
    source : EventsSource
        The declaration it was loaded with (files resolved).
    feedback : pandas.DataFrame or None
        ``session_id, rating, weight`` of the surveyed sessions (see :func:`load_feedback`).
    """

    path: Path
    report: EventLogReport
    source: EventsSource
    feedback: pd.DataFrame | None = None


# --------------------------------------------------------------------------- loading
def _fail(path: Path | str, problems: list[DataProblem], row_label: str, hint: str = ""):
    raise DataValidationError(str(path), problems, row_label=row_label, hint=hint)


def _format(path: Path) -> str:
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt", ".tsv", ".csv.gz"):
        return "csv"
    _fail(
        path,
        [
            DataProblem(
                None,
                f"cannot read {suffix or 'a file without suffix'!r} as an event log",
                expected="a Parquet (.parquet) or CSV (.csv) file, one row per event",
            )
        ],
        "row",
    )
    raise AssertionError  # unreachable


def _resolve_source(source: Study | EventsSource) -> tuple[EventsSource, Scale | None]:
    if isinstance(source, Study):
        events = source.events_source
        if events is None:
            from cxlib.errors import NotApplicable

            raise NotApplicable(source.unmet("events") or "no session event log")
        return events, source.feedback_scale
    return source, None


def load_events(
    source: Study | EventsSource,
    out_dir: str | Path,
    *,
    now: datetime | None = None,
    threads: int | None = None,
) -> EventLog:
    """Load, validate and clean a session event log; write it as Parquet.

    Parameters
    ----------
    source : Study or EventsSource
        A study with ``source.events`` (files resolved against its folder; the feedback
        rating is checked against its scale), or the declaration itself.
    out_dir : str or Path
        The folder the cleaned ``events.parquet`` (and ``feedback.parquet``) are written
        to. A failed load leaves what is there untouched.
    now : datetime, optional
        The time timestamps may not lie beyond (default: the time of loading).
    threads : int, optional
        DuckDB worker threads.

    Returns
    -------
    EventLog

    Raises
    ------
    DataValidationError
        Naming the file, column, rows and values, for every rule that refuses the file
        (missing columns, unknown event types, unreadable or future timestamps, ...).
    NotApplicable
        When the study declares no event log.
    """
    events, scale = _resolve_source(source)
    path = Path(events.file)
    if not path.exists():
        _fail(
            path,
            [
                DataProblem(
                    None,
                    "the event log file does not exist",
                    expected="the file named in source.events.file",
                )
            ],
            "row",
        )
    kind = _format(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".duckdb_tmp"
    con = connect(tmp, threads=threads)
    try:
        return _load(con, events, scale, path, kind, out_dir, now)
    finally:
        con.close()
        for leftover in (out_dir / ".events.staged.parquet", out_dir / ".events.parquet.partial"):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _load(con, events, scale, path, kind, out_dir, now) -> EventLog:
    report = EventLogReport(source=str(path))
    row_label, offset = ("line", 2) if kind == "csv" else ("row", 1)
    staged = out_dir / ".events.staged.parquet"
    try:
        if kind == "csv":
            # keep the file's order (row numbers for messages) and read every value as text
            con.execute("SET preserve_insertion_order = true")
            con.execute(
                f"COPY (SELECT * FROM read_csv({sql_text(path)}, all_varchar = true, "
                f"header = true)) TO {sql_text(staged)} (FORMAT parquet)"
            )
            con.execute("SET preserve_insertion_order = false")
            read = f"read_parquet({sql_text(staged)}, file_row_number = true)"
        else:
            read = f"read_parquet({sql_text(path)}, file_row_number = true)"
        schema = con.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()
    except duckdb.Error as exc:
        _fail(
            path,
            [
                DataProblem(
                    None,
                    f"cannot read the file: {str(exc).splitlines()[0]}",
                    expected=f"a readable {kind} event log",
                )
            ],
            row_label,
        )
    file_columns = {name: dtype for name, dtype, *_ in schema if name != "file_row_number"}
    # ---- columns: renames, required, personal data
    names = {c: events.columns.get(c, c) for c in EVENT_COLUMNS}
    problems = []
    for logical in _REQUIRED:
        column = names[logical]
        if column not in file_columns:
            problems.append(
                DataProblem(
                    column,
                    f"the required column {column!r} ({logical}) is not in the file"
                    + did_you_mean(column, file_columns),
                    expected=f"columns {', '.join(file_columns)} hold no {logical}; name it "
                    f"under source.events.columns: {{{logical}: COLUMN}}",
                )
            )
    for logical, column in events.columns.items():
        if logical not in _REQUIRED and column not in file_columns:
            problems.append(
                DataProblem(
                    column,
                    f"source.events.columns.{logical} names {column!r}, which is not in the file"
                    + did_you_mean(column, file_columns),
                )
            )
        if column.lower() in PERSONAL_DATA_COLUMNS:
            problems.append(
                DataProblem(
                    column,
                    f"source.events.columns.{logical} names {column!r}, a column of personal data "
                    "or free text, which is dropped on load",
                )
            )
    if problems:
        _fail(path, problems, row_label)
    used = {logical: col for logical, col in names.items() if col in file_columns}
    report.dropped_personal_data = [
        c for c in file_columns if c.lower() in PERSONAL_DATA_COLUMNS and c not in used.values()
    ]
    report.dropped_unused = [
        c for c in file_columns if c not in used.values() and c not in report.dropped_personal_data
    ]

    def col(logical: str, cast: str = "VARCHAR") -> str:
        if logical not in used:
            return f"CAST(NULL AS {cast})"
        return f'"{used[logical]}"'

    ts_type = file_columns[used["timestamp"]].upper()
    text = ", ".join(
        f"NULLIF(trim(CAST({col(c)} AS VARCHAR)), '') AS {c}"
        for c in ("session_id", "respondent_id", "segment", "page", "element", "touchpoint")
    )
    con.execute(
        f"CREATE TEMP VIEW raw AS SELECT {text}, "
        f"lower(trim(CAST({col('event')} AS VARCHAR))) AS event, "
        f"{col('timestamp')} AS ts_raw, "
        f"{col('x')} AS x_raw, {col('y')} AS y_raw, file_row_number AS row_no FROM {read}"
    )
    # ---- timestamps: how to parse them (time zones: offsets, or naive in the timezone)
    tz = sql_text(events.timezone)
    if "WITH TIME ZONE" in ts_type:
        parsed, zone = "ts_raw", "'+00:00 (typed)'"
    elif ts_type.startswith("TIMESTAMP") or ts_type == "DATE":
        parsed = f"timezone({tz}, CAST(ts_raw AS TIMESTAMP))"
        zone = sql_text(f"naive (read in {events.timezone})")
    elif ts_type == "VARCHAR":
        offset_re = r"'(Z|[+-]\d{2}(:?\d{2})?)$'"
        trimmed = "trim(ts_raw)"
        parsed = (
            f"CASE WHEN regexp_matches({trimmed}, {offset_re}) "
            f"THEN try_cast({trimmed} AS TIMESTAMPTZ) "
            f"ELSE timezone({tz}, try_cast({trimmed} AS TIMESTAMP)) END"
        )
        zone = (
            f"CASE WHEN regexp_matches({trimmed}, {offset_re}) "
            f"THEN regexp_extract({trimmed}, {offset_re}) "
            f"ELSE {sql_text(f'naive (read in {events.timezone})')} END"
        )
    else:
        problem = DataProblem(
            used["timestamp"],
            f"the timestamps are stored as {ts_type}",
            expected="ISO 8601 date-times (e.g. 2026-03-01T10:15:00+01:00), or a Parquet "
            "timestamp column",
        )
        _fail(path, [problem], row_label)
    con.execute(f"CREATE TEMP VIEW parsed AS SELECT *, {parsed} AS ts, {zone} AS zone FROM raw")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    limit = pd.Timestamp(now).tz_convert("UTC") + pd.Timedelta(seconds=FUTURE_TOLERANCE_S)
    allowed = ", ".join(sql_text(t) for t in EVENT_TYPES)
    conditions = {
        "session_id": "session_id IS NULL",
        "event": f"event IS NULL OR event NOT IN ({allowed})",
        "timestamp": "ts IS NULL",
        "future": f"ts > CAST({sql_text(limit.isoformat())} AS TIMESTAMPTZ)",
    }
    for axis in ("x", "y"):
        if axis in used:
            conditions[axis] = (
                f"{axis}_raw IS NOT NULL AND trim(CAST({axis}_raw AS VARCHAR)) <> '' AND "
                f"try_cast({axis}_raw AS DOUBLE) IS NULL"
            )
    # one pass counts every rule; the offending rows are looked up only where there are any
    counted = con.execute(
        "SELECT count(*), histogram(zone), "
        + ", ".join(f"count(*) FILTER (WHERE {c})" for c in conditions.values())
        + " FROM parsed"
    ).fetchone()
    report.rows_read = int(counted[0])
    zones = counted[1] or {}
    report.time_zones = dict(
        sorted(((str(z), int(n)) for z, n in zones.items()), key=lambda kv: -kv[1])
    )
    found = dict(zip(conditions, map(int, counted[2:]), strict=True))
    if report.rows_read == 0:
        _fail(
            path,
            [DataProblem(None, "the event log has no rows", expected="one row per event")],
            row_label,
        )

    def offending(key: str, value: str) -> tuple[tuple[int, ...], tuple]:
        shown = con.execute(
            f"SELECT row_no, {value} FROM parsed WHERE {conditions[key]} "
            f"ORDER BY row_no LIMIT {_SHOWN}"
        ).fetchall()
        return tuple(int(r) + offset for r, _ in shown), tuple(v for _, v in shown)

    problems = []
    column_of = lambda logical: used.get(logical, logical)  # noqa: E731
    if n := found["session_id"]:
        rows, _ = offending("session_id", "session_id")
        problems.append(
            DataProblem(
                column_of("session_id"),
                f"{n:,} events have no session id",
                rows,
                (),
                n,
                "a session id on every event",
            )
        )
    if n := found["event"]:
        rows, values = offending("event", "event")
        kinds = con.execute(
            f"SELECT event, count(*) FROM parsed WHERE {conditions['event']} "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 5"
        ).fetchall()
        problems.append(
            DataProblem(
                column_of("event"),
                f"{n:,} events have an unknown event type ("
                + ", ".join(f"{k!r}: {c:,}" for k, c in kinds)
                + ")",
                rows,
                values,
                n,
                "one of " + ", ".join(EVENT_TYPES),
            )
        )
    for axis in ("x", "y"):
        if n := found.get(axis, 0):
            rows, values = offending(axis, f"CAST({axis}_raw AS VARCHAR)")
            problems.append(
                DataProblem(
                    column_of(axis),
                    f"{n:,} values are not numbers",
                    rows,
                    values,
                    n,
                    "a number (pixels) or empty",
                )
            )
    if n := found["timestamp"]:
        rows, values = offending("timestamp", "CAST(ts_raw AS VARCHAR)")
        problems.append(
            DataProblem(
                used["timestamp"],
                f"{n:,} timestamps cannot be read",
                rows,
                values,
                n,
                "ISO 8601 date-times, e.g. 2026-03-01T10:15:00+01:00",
            )
        )
    if n := found["future"]:
        rows, values = offending("future", "CAST(ts_raw AS VARCHAR)")
        problems.append(
            DataProblem(
                used["timestamp"],
                f"{n:,} timestamps lie in the future (after {limit:%Y-%m-%d %H:%M} "
                "UTC, the time of loading)",
                rows,
                values,
                n,
                "the time each event happened; check the device clock or the time zone",
            )
        )
    if problems:
        _fail(path, problems, row_label, hint="Nothing was loaded; fix the file and load again.")
    # ---- touchpoints of pages
    known = set(events.pages.values()) | set(events.completion)
    page = "regexp_replace(page, '[?#].*$', '')"
    mapped = page_touchpoint_sql(events.pages, "page")
    given = (
        f"CASE WHEN touchpoint IN ({', '.join(sql_text(t) for t in sorted(known))}) "
        "THEN touchpoint END"
        if known
        else "CAST(NULL AS VARCHAR)"
    )
    con.execute(
        "CREATE TEMP VIEW typed AS SELECT session_id, respondent_id, segment, ts AS ts, event, "
        f"page, element, try_cast(x_raw AS DOUBLE) AS x, try_cast(y_raw AS DOUBLE) AS y, "
        f"coalesce({mapped}, {given}) AS touchpoint, row_no "
        f"FROM (SELECT * EXCLUDE (page), {page} AS page FROM parsed)"
    )
    # ---- duplicates, order
    con.execute(
        "CREATE TEMP TABLE dedup AS SELECT session_id, respondent_id, segment, ts, event, page, "
        "element, x, y, touchpoint, min(row_no) AS row_no, count(*) AS copies "
        "FROM typed GROUP BY ALL"
    )
    report.duplicates = int(
        con.execute("SELECT coalesce(sum(copies - 1), 0) FROM dedup").fetchone()[0]
    )
    order = con.execute(
        "SELECT count(*) FILTER (WHERE late), count(DISTINCT session_id) FILTER (WHERE late), "
        "count(DISTINCT session_id) FROM (SELECT session_id, ts < max(ts) OVER (PARTITION BY "
        "session_id ORDER BY row_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS late "
        "FROM dedup)"
    ).fetchone()
    report.out_of_order, report.sessions_out_of_order, report.sessions = map(int, order)
    report.events = report.rows_read - report.duplicates
    report.sessions_without_start = int(
        con.execute(
            "SELECT count(*) FROM (SELECT arg_min(event, (ts, row_no)) AS first FROM dedup "
            "GROUP BY session_id) WHERE first <> 'page_view'"
        ).fetchone()[0]
    )
    report.unmapped_pages = {
        str(p): int(n)
        for p, n in con.execute(
            "SELECT page, count(*) FROM dedup WHERE page IS NOT NULL AND touchpoint IS NULL "
            "GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    }
    # ---- warnings
    if report.duplicates:
        report.warnings.append(f"{report.duplicates:,} duplicated events dropped")
    if report.out_of_order:
        report.warnings.append(
            f"{report.out_of_order:,} events out of order in {report.sessions_out_of_order:,} "
            "sessions, sorted by time"
        )
    if report.sessions_without_start:
        report.warnings.append(
            f"{report.sessions_without_start:,} sessions do not start with a page_view"
        )
    if report.mixed_time_zones:
        report.warnings.append(
            "timestamps in mixed time zones ("
            + ", ".join(report.time_zones)
            + "), normalized to UTC"
        )
    if report.unmapped_pages:
        report.warnings.append(
            f"{len(report.unmapped_pages):,} pages ({report.unmapped_events:,} events) map to no "
            "touchpoint (add them under source.events.pages): "
            + ", ".join(list(map(repr, report.unmapped_pages))[:5])
        )
    # ---- feedback
    feedback = None
    if events.feedback is not None:
        feedback = load_feedback(events, scale)
        con.register("feedback_frame", feedback[["session_id"]])
        report.feedback_rows = len(feedback)
        report.surveyed_sessions = int(
            con.execute(
                "SELECT count(*) FROM feedback_frame WHERE session_id IN "
                "(SELECT DISTINCT session_id FROM dedup)"
            ).fetchone()[0]
        )
        if report.surveyed_sessions == 0:
            message = (
                f"no surveyed session: none of the {len(feedback):,} sessions rated in "
                f"{events.feedback.file} is in the event log, so signals cannot be calibrated "
                "against stated satisfaction (do the session ids of the two files match?)"
            )
            report.warnings.append(message)
            warnings.warn(message, NoSurveyedSessionWarning, stacklevel=3)
    else:
        report.warnings.append(
            "no surveyed session: the study declares no session feedback "
            "(source.events.feedback), so the signals cannot be calibrated against stated "
            "satisfaction"
        )
    # ---- write (to a temporary file first: a failed run keeps the last good result)
    target = out_dir / "events.parquet"
    partial = out_dir / ".events.parquet.partial"
    con.execute(
        f'COPY (SELECT session_id, respondent_id, segment, ts AS "timestamp", event, page, '
        f"element, x, y, touchpoint, row_no + {offset} AS file_row FROM dedup "
        f"ORDER BY session_id, ts, row_no) TO {sql_text(partial)} (FORMAT parquet)"
    )
    os.replace(partial, target)
    if feedback is not None:
        feedback.to_parquet(out_dir / "feedback.parquet", index=False)
    return EventLog(path=target, report=report, source=events, feedback=feedback)


def load_feedback(source: EventsSource, scale: Scale | None = None) -> pd.DataFrame:
    """Read the session feedback (intercept survey ratings) of an event log.

    Parameters
    ----------
    source : EventsSource
        Its ``feedback`` names the file and columns.
    scale : Scale, optional
        The rating's scale (ratings outside it, or not whole numbers, are refused).

    Returns
    -------
    pandas.DataFrame
        ``session_id`` (str), ``rating`` (float), ``weight`` (float, 1.0 when the feedback
        has no weight column), one row per surveyed session.

    Raises
    ------
    DataValidationError
        When the file or a column is missing, a rating is not on the scale, a weight is not
        positive, or a session is rated twice.
    """
    spec = source.feedback
    if spec is None:
        raise ValueError("the events source declares no feedback")
    path = Path(spec.file)
    if not path.exists():
        _fail(
            path,
            [
                DataProblem(
                    None,
                    "the feedback file does not exist",
                    expected="the file named in source.events.feedback.file",
                )
            ],
            "row",
        )
    csv = path.suffix.lower() in (".csv", ".txt")
    row_label, offset = ("line", 2) if csv else ("row", 1)
    frame = pd.read_csv(path, dtype=str) if csv else pd.read_parquet(path)
    problems = []
    for key in ("session_id", "rating", "weight"):
        column = getattr(spec, key)
        if column is not None and column not in frame.columns:
            problems.append(
                DataProblem(
                    column,
                    f"the feedback has no column {column!r} ({key})"
                    + did_you_mean(column, frame.columns),
                    expected=f"name it under source.events.feedback: {{{key}: COLUMN}}",
                )
            )
    if problems:
        _fail(path, problems, row_label)
    out = pd.DataFrame({"session_id": frame[spec.session_id].astype("string").str.strip()})
    rating = pd.to_numeric(frame[spec.rating], errors="coerce")
    bad = frame[spec.rating].notna() & rating.isna()
    if scale is not None:
        bad |= rating.notna() & ~(rating.between(scale.min, scale.max) & (rating % 1 == 0))
    if bad.any():
        idx = np.flatnonzero(bad.to_numpy())
        problems.append(
            DataProblem(
                spec.rating,
                f"{len(idx):,} ratings are not on the scale",
                tuple(int(i) + offset for i in idx[:_SHOWN]),
                tuple(frame[spec.rating].iloc[idx[:_SHOWN]]),
                len(idx),
                f"whole numbers from {scale.min} to {scale.max}" if scale else "numbers",
            )
        )
    out["rating"] = rating.astype(float)
    if spec.weight is not None:
        weight = pd.to_numeric(frame[spec.weight], errors="coerce")
        bad = ~(weight > 0)
        if bad.any():
            idx = np.flatnonzero(bad.to_numpy())
            problems.append(
                DataProblem(
                    spec.weight,
                    f"{len(idx):,} weights are missing or not positive",
                    tuple(int(i) + offset for i in idx[:_SHOWN]),
                    tuple(frame[spec.weight].iloc[idx[:_SHOWN]]),
                    len(idx),
                    "positive numbers",
                )
            )
        out["weight"] = weight.astype(float)
    else:
        out["weight"] = 1.0
    twice = out["session_id"].duplicated(keep=False) & out["session_id"].notna()
    if twice.any():
        idx = np.flatnonzero(twice.to_numpy())
        problems.append(
            DataProblem(
                spec.session_id,
                f"{int(out['session_id'][twice].nunique()):,} sessions are rated more than once",
                tuple(int(i) + offset for i in idx[:_SHOWN]),
                tuple(out["session_id"].iloc[idx[:_SHOWN]]),
                len(idx),
                "one rating per session",
            )
        )
    if problems:
        _fail(path, problems, row_label)
    out = out[out["rating"].notna() & out["session_id"].notna()].reset_index(drop=True)
    out["session_id"] = out["session_id"].astype(str)
    return out
