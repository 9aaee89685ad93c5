"""The delivery gap: intervals against the closed form, several raters, the share overrated, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cxlib import config
from cxlib.errors import DataValidationError
from cxlib.insights.delivery_gap import delivery_gap, read_internal_assessment
from cxlib.models.touchpoints.data import journey_map


@pytest.fixture(scope="module")
def journey(study):
    return journey_map(study)


def test_gap_interval_matches_the_closed_form(journey):
    rng = np.random.default_rng(5)
    n = 40
    x = rng.integers(2, 8, size=n).astype(float)
    frame = pd.DataFrame({"CX_PHONE_SUPPORT": x})
    internal = pd.DataFrame({"touchpoint": ["phone_support"], "rating": [5.0]})
    gap = delivery_gap(frame, journey, internal, n_draws=200_000, seed=1)
    row = gap.table.iloc[0]
    m, s = x.mean(), x.std(ddof=1)
    se = s / np.sqrt(n)
    half = stats.t.ppf(0.5 + config.HDI_PROB / 2, n - 1) * se
    # the gap 5 - mean has the posterior 5 - m - se * t(n - 1): symmetric, so HDI = central interval
    assert row["gap"] == pytest.approx(5 - m, abs=0.01)
    assert row["gap_hdi_low"] == pytest.approx(5 - m - half, abs=0.01)
    assert row["gap_hdi_high"] == pytest.approx(5 - m + half, abs=0.01)
    assert row["p_company_overrates"] == pytest.approx(stats.t.cdf((5 - m) / se, n - 1), abs=0.005)
    assert row["n_customers"] == n and row["n_raters"] == 1


def test_share_overrated_and_several_raters(journey):
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "CX_STORE_ADVICE": rng.integers(3, 6, 500).astype(float),  # mean 4
            "CX_APP_ORDER": rng.integers(5, 8, 500).astype(float),  # mean 6
            "CX_WEB_COMPARE": rng.integers(1, 8, 500).astype(float),  # mean 4
        }
    )
    frame.loc[:99, "CX_APP_ORDER"] = np.nan  # non-users are skipped, not counted
    internal = pd.DataFrame(
        {
            "touchpoint": ["store_advice"] * 3 + ["app_order"] * 3 + ["web_compare"],
            "rater": ["a", "b", "c"] * 2 + ["a"],
            "rating": [6, 7, 6, 5, 5, 4, 7],
        }
    )
    gap = delivery_gap(frame, journey, internal, n_draws=4000)
    t = gap.table.set_index("touchpoint")
    assert t.loc["store_advice", "n_raters"] == 3
    assert t.loc["app_order", "n_customers"] == 400
    assert t.loc["store_advice", "p_company_overrates"] > 0.95
    assert t.loc["app_order", "p_company_overrates"] < 0.05
    assert t.loc["web_compare", "p_company_overrates"] > 0.99
    # several raters: the company's mean is uncertain too, so the gap's interval is wider
    # than the customers' mean's alone
    cust_width = (
        t.loc["store_advice", "customer_mean_hdi_high"]
        - t.loc["store_advice", "customer_mean_hdi_low"]
    )
    assert (
        t.loc["store_advice", "gap_hdi_high"] - t.loc["store_advice", "gap_hdi_low"]
        > 5 * cust_width
    )
    s = gap.summary
    assert s["n_touchpoints"] == 3
    assert s["share_overrated"] == pytest.approx((gap.gap_draws > 0).mean(), abs=1e-12)
    assert 0.55 < s["share_overrated"] < 0.72  # two of three, with some doubt on store_advice
    assert s["share_clearly_overrated"] == pytest.approx(2 / 3)
    assert t.loc["web_compare", "gap_points"] == pytest.approx(
        t.loc["web_compare", "gap"] * 100 / 6
    )


def test_sample_assessment_reads(study, journey):
    table = read_internal_assessment(study.source_path("internal_assessment"), journey)
    assert set(table["touchpoint"]) == set(journey["touchpoint"])


def test_bad_internal_assessment(tmp_path, journey):
    path = tmp_path / "internal.csv"
    path.write_text("touchpoint,rating\nstore_advice,6\nstore_advise,5\napp_order,9\n")
    with pytest.raises(DataValidationError) as err:
        read_internal_assessment(path, journey)
    text = str(err.value)
    assert str(path) in text
    assert "line 3" in text and "did you mean 'store_advice'" in text
    assert "line 4" in text and "outside the touchpoint's scale" in text and "1-7" in text


def test_raters_who_agree_still_leave_doubt(journey):
    """Raters' disagreement is pooled over touchpoints: three identical ratings are not certainty."""
    rng = np.random.default_rng(9)
    n = 50_000  # customers' mean nearly exact: the gap's spread is the company's
    frame = pd.DataFrame(
        {"CX_STORE_ADVICE": rng.integers(1, 8, n).astype(float),
         "CX_APP_ORDER": rng.integers(1, 8, n).astype(float)}
    )  # fmt: skip
    internal = pd.DataFrame(
        {"touchpoint": ["store_advice"] * 3 + ["app_order"] * 3, "rating": [6, 6, 6, 4, 6, 5]}
    )
    gap = delivery_gap(frame, journey, internal, n_draws=100_000, seed=3)
    row = gap.table.set_index("touchpoint").loc["store_advice"]
    pooled_var = 2.0 / 4  # (0 + 2) / ((3 - 1) + (3 - 1))
    half = stats.t.ppf(0.5 + config.HDI_PROB / 2, 4) * np.sqrt(pooled_var / 3)
    assert row["gap_hdi_high"] - row["gap_hdi_low"] == pytest.approx(2 * half, rel=0.05)
