"""Rendering event logs from session signal tables, and back (issue #21)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from cxlib.data.event_simulation import render_events
from cxlib.data.events import CLEAN_COLUMNS, load_events
from cxlib.data.signals import SignalThresholds, compute_signals
from cxlib.study import EventsSource

TOUCHPOINTS = ["web_compare", "app_order", "app_selfservice"]
PAGES = {tp: [f"/{tp}/home", f"/{tp}/list", f"/{tp}/step", f"/{tp}/done"] for tp in TOUCHPOINTS}
COUNTS = ["rage_clicks", "dead_clicks", "quick_backs", "page_loops", "form_errors"]


def sessions(n: int, seed: int = 3, dwell_scale: float = 30.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "session_id": [f"s{i:06d}" for i in range(n)],
            "respondent_id": [f"r{i}" if i % 10 == 0 else None for i in range(n)],
            "touchpoint": rng.choice(TOUCHPOINTS, n),
            "segment": rng.choice(["private", "business"], n),
            "start": pd.Timestamp("2026-03-01", tz="UTC")
            + pd.to_timedelta(rng.uniform(0, 20 * 86400, n), unit="s"),
            "dwell_time_s": rng.gamma(4, dwell_scale, n),
            "hesitation_s": rng.gamma(2, 0.7, n),
            "stillness_share": rng.uniform(0, 0.5, n),
            **{c: rng.poisson(0.5, n) for c in COUNTS},
            "completed": rng.random(n) < 0.6,
        }
    )
    frame["time_to_complete_s"] = np.where(frame["completed"], 0.8 * frame["dwell_time_s"], np.nan)
    return frame


def events_source(file) -> EventsSource:
    return EventsSource(
        file=str(file),
        pages={p: tp for tp, ps in PAGES.items() for p in ps},
        completion={tp: ps[-1] for tp, ps in PAGES.items()},
    )


def roundtrip(truth: pd.DataFrame, tmp_path, thresholds=None) -> pd.DataFrame:
    file = tmp_path / "rendered.parquet"
    table = render_events(truth, PAGES, seed=1, thresholds=thresholds, path=file)
    assert tuple(table.column_names) == CLEAN_COLUMNS
    out = compute_signals(file, events_source(file), thresholds=thresholds)
    return out.sessions.set_index("session_id").loc[truth["session_id"]].reset_index()


def test_integer_signals_come_back_exactly(tmp_path):
    truth = sessions(1500)
    got = roundtrip(truth, tmp_path)
    for column in [*COUNTS, "completed"]:
        assert (got[column].to_numpy() == truth[column].to_numpy()).all(), column
    assert (got["touchpoint"].to_numpy() == truth["touchpoint"].to_numpy()).all()
    assert got["respondent_id"].tolist() == truth["respondent_id"].tolist()
    assert (got["start"].to_numpy() == truth["start"].dt.floor("us").to_numpy()).all()


def test_durations_come_back_approximately(tmp_path):
    truth = sessions(1500, dwell_scale=60.0)
    got = roundtrip(truth, tmp_path)
    structural = got["dwell_time_s"] > truth["dwell_time_s"] + 1  # too short for its signals
    assert structural.mean() < 0.1
    ok = ~structural
    assert np.allclose(got["dwell_time_s"][ok], truth["dwell_time_s"][ok], rtol=0.01, atol=0.5)
    assert np.allclose(got["hesitation_s"], truth["hesitation_s"].clip(0.05), atol=0.05)
    done = truth["completed"].to_numpy()
    late = got["time_to_complete_s"] > truth["time_to_complete_s"] + 1  # signals take longer
    assert late[done].mean() < 0.1
    done &= ~late.to_numpy()
    assert np.allclose(
        got["time_to_complete_s"][done], truth["time_to_complete_s"][done], rtol=0.01, atol=0.5
    )
    close = np.abs(got["stillness_share"].to_numpy() - truth["stillness_share"].to_numpy())
    assert np.median(close) < 0.05


def test_other_thresholds_render_their_own_log(tmp_path):
    th = SignalThresholds(
        rage_click_min_clicks=4,
        rage_click_window_s=3.0,
        page_loop_min_views=4,
        quick_back_window_s=5.0,
    )
    truth = sessions(400, seed=5)
    got = roundtrip(truth, tmp_path, thresholds=th)
    for column in [*COUNTS, "completed"]:
        assert (got[column].to_numpy() == truth[column].to_numpy()).all(), column


def test_rendered_log_loads_cleanly(tmp_path):
    file = tmp_path / "rendered.parquet"
    render_events(sessions(200), PAGES, seed=2, path=file)
    log = load_events(events_source(file), tmp_path / "clean")
    report = log.report
    assert report.duplicates == report.out_of_order == report.sessions_without_start == 0
    assert report.unmapped_pages == {} and report.sessions == 200


def test_too_few_pages_is_refused():
    with pytest.raises(ValueError, match="at least three distinct pages"):
        render_events(
            sessions(5).assign(touchpoint="app_order"),
            {**PAGES, "app_order": ["/a", "/done"]},
            seed=1,
        )


@pytest.mark.slow
def test_two_hundred_thousand_sessions_render_fast():
    truth = sessions(200_000, dwell_scale=5.0)
    began = time.perf_counter()
    table = render_events(truth, PAGES, seed=1)
    elapsed = time.perf_counter() - began
    assert table.num_rows > 2_000_000
    assert elapsed < 30, f"{elapsed:.1f} s for {table.num_rows:,} events"
