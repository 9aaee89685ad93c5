"""The session event log: spec section, loading, bad input, personal data (issue #21)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from cxlib import config
from cxlib.data.events import (
    CLEAN_COLUMNS,
    EventLogReport,
    NoSurveyedSessionWarning,
    load_events,
)
from cxlib.data.signals import compute_signals
from cxlib.errors import DataValidationError, NotApplicable, StudySpecError
from cxlib.study import EventsSource, study_from_dict

T0 = pd.Timestamp("2026-03-01 10:00:00", tz="UTC")
PAGES = {"/app/order*": "app_order", "/web/*": "web_compare"}


def write(tmp_path: Path, rows: list[dict], name: str = "events.csv") -> Path:
    file = tmp_path / name
    frame = pd.DataFrame(rows)
    if name.endswith(".csv"):
        frame.to_csv(file, index=False)
    else:
        frame.to_parquet(file, index=False)
    return file


def event(session="s", seconds=0.0, kind="page_view", page="/app/order", **extra) -> dict:
    return {
        "session_id": session,
        "timestamp": (T0 + pd.Timedelta(seconds=seconds)).isoformat(),
        "event": kind,
        "page": page,
        **extra,
    }


def source(file, **changes) -> EventsSource:
    return EventsSource(file=str(file), pages=changes.pop("pages", PAGES), **changes)


def load(tmp_path, rows, name="events.csv", **changes):
    file = write(tmp_path, rows, name)
    return load_events(source(file, **changes), tmp_path / "out")


BASIC = [
    event(seconds=0),
    event(seconds=1, kind="click", element="buy"),
    event(seconds=2, kind="scroll"),
]


# ------------------------------------------------------------------ the study spec
def sample_raw() -> dict:
    return yaml.safe_load(Path(config.SAMPLE_STUDY).read_text(encoding="utf-8"))


def with_events(events: dict):
    raw = sample_raw()
    raw["source"]["events"] = events
    return study_from_dict(raw, path=Path(config.SAMPLE_STUDY).resolve())


def test_spec_events_section_is_read_and_resolved():
    study = with_events(
        {
            "file": "sessions.parquet",
            "pages": {"/app/order*": "app_order"},
            "completion": {"app_order": "/app/order/done"},
            "feedback": {"file": "fb.csv", "scale": "agree5"},
            "thresholds": {"rage_click_window_s": 3},
        }
    )
    events = study.events_source
    assert Path(events.file) == Path(config.SAMPLE_STUDY).resolve().parent / "sessions.parquet"
    assert Path(events.feedback.file).is_absolute()
    assert study.feedback_scale.max == 5
    assert study.unmet("events") is None


def test_spec_without_events_says_how_to_add_them():
    raw = sample_raw()
    raw["source"].pop("events", None)
    study = study_from_dict(raw)
    assert "source: {events: {file: ..., pages: {...}}}" in study.unmet("events")
    with pytest.raises(NotApplicable, match="session event log"):
        load_events(study, "unused")


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ({"file": "e.csv", "pages": {"/app/*": "app_ordr"}}, "did you mean 'app_order'"),
        ({"file": "e.csv", "pages": {"/shop/*": "store_advice"}}, "face_to_face channel"),
        ({"file": "e.csv", "pages": {}}, "map the log's pages"),
        (
            {"file": "e.csv", "pages": {"/a": "app_order"}, "completion": {"web_compar": "/x"}},
            "did you mean 'web_compare'",
        ),
        (
            {"file": "e.csv", "pages": {"/a": "app_order"}, "thresholds": {"rage_window": 3}},
            "did you mean 'rage_click_window_s'",
        ),
        ({"file": "e.csv", "pages": {"/a": "app_order"}, "colums": {}}, "did you mean 'columns'"),
        (
            {"file": "e.csv", "pages": {"/a": "app_order"}, "columns": {"sesion_id": "sid"}},
            "did you mean 'session_id'",
        ),
        (
            {
                "file": "e.csv",
                "pages": {"/a": "app_order"},
                "feedback": {"file": "f.csv", "scale": "agree"},
            },
            "did you mean 'agree5'",
        ),
        (
            {"file": "e.csv", "pages": {"/a": "app_order"}, "timezone": "Europe/Berln"},
            "did you mean 'Europe/Berlin'",
        ),
    ],
)
def test_spec_errors_name_the_fix(events, message):
    with pytest.raises(StudySpecError, match=message.replace("(", r"\(")):
        with_events(events)


# ------------------------------------------------------------------ loading
def test_clean_log_is_typed_sorted_and_reported(tmp_path):
    log = load(tmp_path, BASIC + [event("t", 5, page="/web/compare?q=secret#top")])
    clean = pd.read_parquet(log.path)
    assert tuple(clean.columns) == CLEAN_COLUMNS
    assert (
        str(clean["timestamp"].dtype).startswith("datetime64")
        and str(clean["timestamp"].dt.tz) == "UTC"
    )
    assert clean["page"].tolist()[-1] == "/web/compare"  # query string and fragment left out
    assert clean["touchpoint"].tolist() == ["app_order"] * 3 + ["web_compare"]
    report = log.report
    assert isinstance(report, EventLogReport)
    assert (report.rows_read, report.events, report.sessions) == (4, 4, 2)
    assert report.duplicates == report.out_of_order == report.sessions_without_start == 0
    assert report.warnings == [w for w in report.warnings if "declares no session feedback" in w]
    assert len(report.warnings) == 1  # only: no feedback declared
    assert "4 rows read" in report.to_text()


def test_missing_required_column_names_it_with_did_you_mean(tmp_path):
    rows = [{"sessionid": "s", "timestamp": T0.isoformat(), "event": "page_view"}]
    with pytest.raises(DataValidationError) as err:
        load(tmp_path, rows)
    assert "'session_id'" in str(err.value) and "did you mean 'sessionid'" in str(err.value)


def test_renamed_columns_are_read(tmp_path):
    rows = [{"sid": "s", "when": T0.isoformat(), "what": "page_view", "url": "/app/order"}]
    log = load(
        tmp_path,
        rows,
        columns={"session_id": "sid", "timestamp": "when", "event": "what", "page": "url"},
    )
    assert pd.read_parquet(log.path)["touchpoint"].tolist() == ["app_order"]


def test_unknown_event_type_is_an_error_naming_rows_and_values(tmp_path):
    rows = BASIC + [event(seconds=3, kind="hover"), event(seconds=4, kind="tap")]
    with pytest.raises(DataValidationError) as err:
        load(tmp_path, rows)
    text = str(err.value)
    assert "unknown event type" in text and "'hover'" in text and "'tap'" in text
    assert "line 5" in text and "line 6" in text  # CSV lines, header is line 1
    assert "page_view" in text  # what was expected
    assert not (tmp_path / "out" / "events.parquet").exists()  # nothing written


def test_duplicated_events_are_counted_and_dropped(tmp_path):
    log = load(tmp_path, BASIC + [BASIC[1], BASIC[1]])
    assert log.report.duplicates == 2 and log.report.events == 3
    assert len(pd.read_parquet(log.path)) == 3
    assert "2 duplicated events dropped" in log.report.to_text()


def test_events_out_of_order_are_sorted_and_counted(tmp_path):
    rows = [BASIC[0], BASIC[2], BASIC[1]]
    log = load(tmp_path, rows)
    assert log.report.out_of_order == 1 and log.report.sessions_out_of_order == 1
    assert pd.read_parquet(log.path)["event"].tolist() == ["page_view", "click", "scroll"]
    assert "out of order" in log.report.to_text()


def test_session_without_start_is_counted(tmp_path):
    log = load(tmp_path, BASIC + [event("t", 0, kind="click", element="x")])
    assert log.report.sessions_without_start == 1
    assert any("do not start with a page_view" in w for w in log.report.warnings)


def test_mixed_time_zones_are_normalized_and_counted(tmp_path):
    rows = [
        {"session_id": "s", "timestamp": "2026-03-01T11:00:00+01:00", "event": "page_view"},
        {"session_id": "s", "timestamp": "2026-03-01T10:00:01Z", "event": "click"},
        {"session_id": "s", "timestamp": "2026-03-01 11:00:02", "event": "scroll"},
    ]
    log = load(tmp_path, rows, timezone="Europe/Berlin")  # naive: read in Berlin (UTC+1)
    stamps = pd.read_parquet(log.path)["timestamp"]
    assert stamps.tolist() == [T0, T0 + pd.Timedelta(seconds=1), T0 + pd.Timedelta(seconds=2)]
    assert log.report.mixed_time_zones
    assert log.report.time_zones == {"+01:00": 1, "Z": 1, "naive (read in Europe/Berlin)": 1}
    assert any("mixed time zones" in w for w in log.report.warnings)


def test_timestamps_in_the_future_are_refused(tmp_path):
    rows = BASIC + [event(seconds=86400 * 365 * 5)]
    with pytest.raises(DataValidationError, match="in the future") as err:
        load_events(
            source(write(tmp_path, rows)),
            tmp_path / "out",
            now=T0.to_pydatetime() + pd.Timedelta(days=1),
        )
    assert "line 5" in str(err.value)


def test_unreadable_timestamps_are_refused(tmp_path):
    rows = BASIC + [{"session_id": "s", "timestamp": "yesterday", "event": "click"}]
    with pytest.raises(DataValidationError, match="cannot be read") as err:
        load(tmp_path, rows)
    assert "'yesterday'" in str(err.value)


def test_unmapped_pages_are_counted_per_page(tmp_path):
    rows = BASIC + [
        event(seconds=3, page="/help"),
        event(seconds=4, page="/help"),
        event(seconds=5, page="/careers"),
    ]
    log = load(tmp_path, rows)
    assert log.report.unmapped_pages == {"/help": 2, "/careers": 1}
    assert "'/help' (2)" in log.report.to_text()
    assert pd.read_parquet(log.path)["touchpoint"].isna().sum() == 3  # kept, unmapped


def test_no_surveyed_session_is_a_warning_for_the_calibration(tmp_path):
    fb = write(tmp_path, [{"session_id": "other", "rating": 4}], "feedback.csv")
    spec = {"file": str(fb), "scale": "agree5"}
    with pytest.warns(NoSurveyedSessionWarning, match="no surveyed session"):
        log = load(tmp_path, BASIC, feedback=spec)
    assert log.report.surveyed_sessions == 0 and log.report.feedback_rows == 1
    with pytest.warns(NoSurveyedSessionWarning):
        compute_signals(log.path, log.source)


def test_feedback_ratings_off_the_scale_are_refused(tmp_path):
    raw = sample_raw()
    events = write(tmp_path, BASIC)
    fb = write(tmp_path, [{"session_id": "s", "rating": 9}], "feedback.csv")
    raw["source"]["events"] = {
        "file": str(events),
        "pages": {"/app/*": "app_order"},
        "feedback": {"file": str(fb), "scale": "agree5"},
    }
    study = study_from_dict(raw, path=Path(config.SAMPLE_STUDY).resolve())
    with pytest.raises(DataValidationError, match="not on the scale") as err:
        load_events(study, tmp_path / "out")
    assert "from 1 to 5" in str(err.value) and "line 2" in str(err.value)


def test_personal_data_never_reaches_an_output(tmp_path):
    secret = {
        "ip": "203.0.113.7",
        "user_agent": "SecretBrowser/1.0",
        "input_text": "my-password-123",
        "value": "jane@example.com",
    }
    rows = [{**r, **secret} for r in BASIC]
    fb = write(tmp_path, [{"session_id": "s", "rating": 4}], "feedback.csv")
    file = write(tmp_path, rows, "events.parquet")
    spec = source(file, feedback={"file": str(fb), "scale": "agree5"})
    log = load_events(spec, tmp_path / "out")
    assert sorted(log.report.dropped_personal_data) == ["input_text", "ip", "user_agent", "value"]
    out = compute_signals(log.path, spec, out_dir=tmp_path / "signals")
    frames = [pd.read_parquet(p) for p in (tmp_path / "out").glob("*.parquet")]
    frames += [pd.read_parquet(p) for p in (tmp_path / "signals").glob("*.parquet")]
    frames += [out.sessions, out.touchpoints, out.pages]
    assert len(frames) == 8
    for frame in frames:
        assert not set(frame.columns) & set(secret)
        text = frame.astype(str).to_csv()
        assert not any(value in text for value in secret.values())
    assert not any(value in log.report.to_text() for value in secret.values())
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != tmp_path]
    for file in files:
        assert b"SecretBrowser" not in file.read_bytes()


def test_a_personal_data_column_cannot_be_mapped_in(tmp_path):
    rows = [{**r, "ua": "x"} for r in BASIC]
    with pytest.raises(DataValidationError, match="personal data"):
        load(tmp_path, rows, columns={"element": "ua"})


def test_a_failed_load_keeps_the_last_good_result(tmp_path):
    good = load(tmp_path, BASIC)
    before = good.path.read_bytes()
    with pytest.raises(DataValidationError):
        load(tmp_path, BASIC + [event(kind="hover")])
    assert good.path.read_bytes() == before


def test_parquet_log_with_naive_timestamps(tmp_path):
    rows = [{**r, "timestamp": pd.Timestamp(r["timestamp"]).tz_convert(None)} for r in BASIC]
    log = load(tmp_path, rows, "events.parquet", timezone="America/New_York")
    first = duckdb.connect().execute(f"SELECT min(timestamp) FROM '{log.path}'").fetchone()[0]
    assert pd.Timestamp(first) == T0 + pd.Timedelta(hours=5)
    assert log.report.time_zones == {"naive (read in America/New_York)": 3}
