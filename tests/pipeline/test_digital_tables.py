"""What 06-digital-experience publishes, from a calibration fitted on simulated sessions.

The sessions come from :func:`cxlib.models.digital.simulate_sessions` (response depends on
satisfaction), so the published comparison of surveyed and unsurveyed sessions has a known
direction, and every table must match its declaration in :mod:`cxlib.pipeline.schemas`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from cxlib.config import EVERYONE
from cxlib.pipeline.schemas import NOTEBOOK_TABLES, validate_table
from cxlib.pipeline.tables import BEHAVIOUR_COLUMNS, behaviour_performance, digital_tables

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted():
    from cxlib.insights.alerts import digital_alert_draws
    from cxlib.models.digital import DigitalExperienceModel, simulate_sessions
    from cxlib.models.digital.data import holdout_split

    sessions, truth = simulate_sessions(4000, n_surveyed=800, seed=3)
    rng = np.random.default_rng(1)
    pages = pd.DataFrame(
        {
            "session_id": sessions["session_id"],
            "page": sessions["touchpoint"] + "/p" + rng.integers(0, 4, len(sessions)).astype(str),
            "touchpoint": sessions["touchpoint"],
            "views": rng.integers(1, 4, len(sessions)),
            "dwell_time_s": 10.0,
            "rage_clicks": sessions["rage_clicks"],
            "dead_clicks": sessions["dead_clicks"],
            "quick_backs": sessions["quick_backs"],
            "form_errors": sessions["form_errors"],
        }
    )
    train, held = holdout_split(sessions, 0.2, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = DigitalExperienceModel(scale=(1, 5)).fit(
            train, draws=300, tune=300, chains=2, random_seed=4
        )
    validation = result.validate(held)
    tables, summary = digital_tables(
        result, sessions, pages, study="s", validation=validation, draws=100
    )
    metrics = digital_alert_draws(result, sessions, draws=200)
    return sessions, truth, tables, summary, metrics


def test_every_table_is_the_declared_one(fitted):
    _, _, tables, summary, _ = fitted
    declared = set(NOTEBOOK_TABLES["06-digital-experience"]) - {"digital_alerts"}
    assert set(tables) == declared
    for name, table in tables.items():
        validate_table(name, table, notebook="06-digital-experience")
    assert summary["sessions"] == 4000 and 0 < summary["response_rate"] < 1
    assert summary["holdout_sessions"] > 0 and np.isfinite(summary["elpd_holdout"])


def test_scores_cover_every_level_and_say_the_survey_overstates(fitted):
    sessions, truth, tables, summary, _ = fitted
    scores = tables["digital_scores"]
    assert set(scores["level"]) == {"all", "touchpoint", "day", "touchpoint_day", "page"}
    everyone = scores[scores["level"] == "all"].iloc[0]
    assert everyone["sessions"] == len(sessions)
    assert everyone["surveyed"] == int(sessions["rating"].notna().sum())
    tps = scores[scores["level"] == "touchpoint"]
    assert tps["sessions"].sum() == len(sessions) and (tps["day"] == EVERYONE).all()
    days = scores[scores["level"] == "touchpoint_day"]
    assert days["sessions"].sum() == len(sessions)
    assert (scores["score_hdi_low"] <= scores["score"]).all()
    assert (scores["score"] <= scores["score_hdi_high"]).all()
    # frustrated sessions answer less often: the surveyed overstate everyone (the truth too)
    versus = tables["digital_surveyed_vs_all"].set_index("group")
    assert versus.loc["surveyed", "score"] > versus.loc["unsurveyed", "score"] + 2
    assert truth["mean_satisfaction_surveyed"] > truth["mean_satisfaction_unsurveyed"]
    lo, hi = truth["scale_range"]
    true_all = 100 * (truth["mean_satisfaction_all"] - lo) / (hi - lo)
    row = versus.loc["all"]
    assert row["score_hdi_low"] - 3 <= true_all <= row["score_hdi_high"] + 3
    assert summary["selection"]["modelled"] and summary["selection"]["coefficient"] > 0


def test_signals_and_worst_pages(fitted):
    _, truth, tables, _, _ = fitted
    signals = tables["digital_signals"].set_index("signal")
    worst = signals["p_largest_cost"].idxmax()
    assert worst == min(truth["beta"], key=truth["beta"].get)  # the costliest signal by truth
    assert signals["p_largest_cost"].sum() == pytest.approx(1.0)
    assert signals.loc["rage_clicks", "definition"].startswith("bursts of 3 or more clicks")
    pages = tables["digital_worst_pages"]
    for _, ranked in pages.groupby("signal"):
        assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
        assert ranked["rate"].is_monotonic_decreasing


def test_alert_draws_and_the_journeys_behaviour_performance(fitted):
    sessions, _, tables, _, metrics = fitted
    rates = metrics["rage_click_rate"]
    assert set(rates) == {EVERYONE, *sessions["touchpoint"].unique()}
    assert np.mean(rates[EVERYONE]) == pytest.approx(sessions["rage_clicks"].mean(), rel=0.05)
    score = tables["digital_scores"].set_index(["level", "touchpoint"])
    assert np.mean(metrics["digital_score"][EVERYONE]) == pytest.approx(
        score.loc[("all", EVERYONE), "score"], abs=1.5
    )
    effects = pd.DataFrame({"touchpoint": ["app_order", "store_advice"], "performance": [70.0, 60]})
    merged = behaviour_performance(effects, tables["digital_scores"])
    assert list(merged.columns[-4:]) == list(BEHAVIOUR_COLUMNS)
    assert merged.loc[1, "behaviour_sessions"] == 0 and np.isnan(merged.loc[1, "behaviour_performance"])
    assert merged.loc[0, "behaviour_performance"] == pytest.approx(
        score.loc[("touchpoint", "app_order"), "score"]
    )
