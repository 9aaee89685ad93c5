"""Behaviour signals against hand-built event sequences (issue #21)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from cxlib.data.events import load_events
from cxlib.data.signals import (
    PAGE_COLUMNS,
    SESSION_COLUMNS,
    SIGNALS,
    SignalThresholds,
    compute_signals,
)
from cxlib.study import EVENT_THRESHOLD_NAMES, EventsSource

T0 = pd.Timestamp("2026-03-01 10:00:00", tz="UTC")
PAGES = {"/app/order/done": "app_order", "/app/order*": "app_order", "/web/*": "web_compare"}


def signals(tmp_path, events, **source):
    """Signals of hand-built events: (session, seconds, event, page, element) tuples."""
    frame = pd.DataFrame(
        [
            {
                "session_id": s,
                "timestamp": T0 + pd.Timedelta(seconds=dt),
                "event": e,
                "page": page,
                "element": element,
            }
            for s, dt, e, page, element in events
        ]
    )
    file = tmp_path / "events.parquet"
    frame.to_parquet(file, index=False)
    spec = EventsSource(
        file=str(file),
        pages=PAGES,
        completion={"app_order": "/app/order/done"},
        **source,
    )
    log = load_events(spec, tmp_path / "out")
    return compute_signals(log.path, spec)


def one(tmp_path, events, **source) -> pd.Series:
    sessions = signals(tmp_path, events, **source).sessions
    assert len(sessions) == 1
    return sessions.iloc[0]


def clicks(times, element="buy", page="/app/order"):
    return [("s", t, "click", page, element) for t in times]


START = [("s", 0.0, "page_view", "/app/order", None)]


def test_interface_columns_and_types(tmp_path):
    out = signals(tmp_path, START + clicks([1.0]) + [("s", 1.2, "scroll", "/app/order", None)])
    sessions = out.sessions
    assert tuple(sessions.columns) == SESSION_COLUMNS
    assert tuple(SESSION_COLUMNS[-len(SIGNALS) :]) == SIGNALS
    assert tuple(out.pages.columns) == PAGE_COLUMNS
    row = sessions.iloc[0]
    assert row.session_id == "s" and row.touchpoint == "app_order"
    assert row.respondent_id is None and row.segment is None
    assert str(sessions["start"].dtype) == "datetime64[ns, UTC]"
    assert str(sessions["day"].dtype) == "datetime64[ns]"
    assert sessions["day"].iloc[0] == pd.Timestamp("2026-03-01")
    assert sessions["rage_clicks"].dtype == np.int64 and sessions["completed"].dtype == bool
    assert row.n_events == 3 and row.n_pages == 1 and row.dwell_time_s == pytest.approx(1.2)


def test_rage_click_is_found(tmp_path):
    row = one(tmp_path, START + clicks([1.0, 1.5, 2.0]))
    assert row.rage_clicks == 1
    assert row.dead_clicks == 0  # the burst's clicks count as rage, not dead


def test_two_slow_clicks_are_not_rage(tmp_path):
    row = one(tmp_path, START + clicks([1.0, 4.0]))
    assert row.rage_clicks == 0
    assert row.dead_clicks == 2


def test_three_clicks_too_slow_or_on_different_elements_are_not_rage(tmp_path):
    assert one(tmp_path, START + clicks([1.0, 2.0, 3.1])).rage_clicks == 0
    spread = START + clicks([1.0], "a") + clicks([1.2], "b") + clicks([1.4], "c")
    assert one(tmp_path, spread).rage_clicks == 0


def test_a_long_burst_is_one_rage_click_and_two_bursts_are_two(tmp_path):
    assert one(tmp_path, START + clicks([1.0, 1.3, 1.6, 1.9, 2.2, 2.5])).rage_clicks == 1
    assert one(tmp_path, START + clicks([1.0, 1.3, 1.6, 9.0, 9.3, 9.6])).rage_clicks == 2


def test_dead_click_yes_and_no(tmp_path):
    answered = START + clicks([1.0]) + [("s", 1.5, "page_view", "/app/order/2", None)]
    assert one(tmp_path, answered).dead_clicks == 0
    late = START + clicks([1.0]) + [("s", 2.5, "page_view", "/app/order/2", None)]
    assert one(tmp_path, late).dead_clicks == 1
    moved = START + clicks([1.0]) + [("s", 1.3, "mouse_move", "/app/order", None)]
    assert one(tmp_path, moved).dead_clicks == 1  # a mouse move is no response


def test_page_loop_yes_and_no(tmp_path):
    views = [("s", t, "page_view", "/app/order", None) for t in (0.0, 5.0, 10.0)]
    assert one(tmp_path, views).page_loops == 1
    slow = [("s", t, "page_view", "/app/order", None) for t in (0.0, 10.0, 20.0)]
    assert one(tmp_path, slow).page_loops == 0


def test_quick_back_by_return_and_by_back_event(tmp_path):
    pv = "page_view"
    back = [
        ("s", 0.0, pv, "/web/a", None),
        ("s", 20.0, pv, "/web/b", None),
        ("s", 24.0, pv, "/web/a", None),
    ]
    assert one(tmp_path, back).quick_backs == 1
    slow = [
        ("s", 0.0, pv, "/web/a", None),
        ("s", 20.0, pv, "/web/b", None),
        ("s", 45.0, pv, "/web/a", None),
    ]
    assert one(tmp_path, slow).quick_backs == 0
    event = [("s", 0.0, pv, "/web/a", None), ("s", 3.0, "back", "/web/a", None)]
    assert one(tmp_path, event).quick_backs == 1
    late = [("s", 0.0, pv, "/web/a", None), ("s", 30.0, "back", "/web/a", None)]
    assert one(tmp_path, late).quick_backs == 0


def test_hesitation_and_stillness(tmp_path):
    events = START + [
        ("s", 1.0, "mouse_move", "/app/order", None),
        ("s", 5.0, "click", "/app/order", "a"),  # 4 s still before it
        ("s", 5.2, "scroll", "/app/order", None),
        ("s", 5.6, "mouse_stillness", "/app/order", None),  # a marker, not activity
        ("s", 7.2, "input", "/app/order", None),  # 2 s still before it
        ("s", 10.0, "form_submit", "/app/order", None),  # 2.8 s
    ]
    row = one(tmp_path, events)
    assert row.hesitation_s == pytest.approx(2.8)  # median of 4, 2, 2.8
    assert row.stillness_share == pytest.approx(4.0 / 10.0)  # only the pause >= 3 s
    no_action = one(tmp_path, START + [("s", 2.0, "scroll", "/app/order", None)])
    assert np.isnan(no_action.hesitation_s)


def test_completion_and_time_to_complete(tmp_path):
    done = START + [
        ("s", 30.0, "page_view", "/app/order/done", None),
        ("s", 40.0, "exit", "/app/order/done", None),
    ]
    row = one(tmp_path, done)
    assert row.completed and row.time_to_complete_s == pytest.approx(30.0)
    assert row.dwell_time_s == pytest.approx(40.0)
    row = one(tmp_path, START + [("s", 40.0, "exit", "/app/order", None)])
    assert not row.completed and np.isnan(row.time_to_complete_s)


def test_form_errors_and_page_table(tmp_path):
    events = START + [
        ("s", 2.0, "form_submit", "/app/order", None),
        ("s", 2.1, "form_error", "/app/order", None),
        ("s", 5.0, "form_error", "/app/order", None),
        ("s", 8.0, "page_view", "/web/compare", None),
        *clicks([9.0, 9.2, 9.4], "x", "/web/compare"),
    ]
    out = signals(tmp_path, events)
    assert out.sessions.iloc[0].form_errors == 2
    assert out.sessions.iloc[0].touchpoint == "app_order"  # tie of views: the first viewed
    pages = out.pages.set_index("page")
    assert pages.loc["/app/order", "form_errors"] == 2
    assert pages.loc["/app/order", "dwell_time_s"] == pytest.approx(8.0)
    assert pages.loc["/web/compare", "rage_clicks"] == 1
    assert pages.loc["/web/compare", "touchpoint"] == "web_compare"
    tps = out.touchpoints.set_index("touchpoint")
    assert tps.loc["web_compare", "rage_clicks"] == 1 and tps.loc["app_order", "rage_clicks"] == 0
    assert tps.loc["app_order", "form_errors"] == 2


def test_thresholds_from_the_spec(tmp_path):
    slow = START + clicks([1.0, 2.0, 3.5])
    assert one(tmp_path, slow).rage_clicks == 0
    row = one(tmp_path, slow, thresholds={"rage_click_window_s": 3.0})
    assert row.rage_clicks == 1


def test_threshold_names_match_the_spec():
    names = tuple(f.name for f in dataclasses.fields(SignalThresholds))
    assert names == EVENT_THRESHOLD_NAMES
    with pytest.raises(ValueError, match="rage_click_min_clicks"):
        SignalThresholds(rage_click_min_clicks=1)


def test_feedback_is_joined(tmp_path):
    fb = tmp_path / "feedback.csv"
    pd.DataFrame({"sid": ["s"], "stars": [4]}).to_csv(fb, index=False)
    events = START + [("t", 0.0, "page_view", "/web/a", None)]
    out = signals(
        tmp_path,
        events,
        feedback={"file": str(fb), "session_id": "sid", "rating": "stars", "scale": "agree5"},
    )
    by = out.sessions.set_index("session_id")
    assert by.loc["s", "rating"] == 4 and by.loc["s", "weight"] == 1.0
    assert np.isnan(by.loc["t", "rating"])


def test_events_without_a_page_take_the_page_viewed_before(tmp_path):
    events = START + [
        ("s", 5.0, "page_view", "/web/compare", None),
        ("s", 6.0, "click", None, "a"),
        ("s", 6.2, "click", None, "a"),
        ("s", 6.4, "click", None, "a"),
    ]
    out = signals(tmp_path, events)
    pages = out.pages.set_index("page")
    assert pages.loc["/web/compare", "rage_clicks"] == 1
    assert pages.loc["/app/order", "rage_clicks"] == 0
    assert out.touchpoints.set_index("touchpoint").loc["web_compare", "rage_clicks"] == 1
