"""segment_differences, what_if_baseline / what_if_examples and rules_needing_missing_inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxlib.config import EVERYONE
from cxlib.insights import (
    AlertRule,
    estimate_kpis,
    rules_needing_missing_inputs,
    segment_differences,
    what_if_baseline,
    what_if_examples,
)

from .test_drivers import path_model
from .test_drivers import survey as driver_survey
from .test_kpis import make_frame
from .test_kpis import survey as kpi_survey


def test_segment_differences_are_differences_of_independent_posteriors():
    import pandas as pd

    frame = pd.concat(
        [
            make_frame([10] * 80 + [0] * 20, segment="A"),
            make_frame([10] * 50 + [0] * 50, segment="B"),
        ],
        ignore_index=True,
    )
    kpis = estimate_kpis(survey := kpi_survey(frame), n_draws=4000, seed=3)
    diff = segment_differences(kpis)
    row = diff.query("kpi == 'nps' and wave == 'W1'").iloc[0]
    assert (row["segment_a"], row["segment_b"]) == ("A", "B")  # everyone is left out
    np.testing.assert_allclose(
        row["difference"], (kpis.cell("nps", "A", "W1") - kpis.cell("nps", "B", "W1")).mean()
    )
    assert row["difference"] == pytest.approx(60 - 0, abs=6)  # NPS 60 vs 0
    assert (
        row["difference_hdi_low"] < row["difference"] < row["difference_hdi_high"]
        and row["p_a_greater"] > 0.99
    )
    assert (row["n_a"], row["n_b"]) == (100, 100) and not row["small_cell"]
    assert set(diff["wave"]) == {"W1"}  # W2 has no answers: no rows
    assert survey.study.name == "kpi-demo"
    one = estimate_kpis(kpi_survey(make_frame([10] * 30)), n_draws=100)
    assert len(segment_differences(one)) == 0  # one segment answered: nothing to compare


def test_what_if_baseline_and_examples_are_aggregates_per_segment():
    model, data = path_model(), driver_survey()
    base = what_if_baseline(model, data)
    assert list(base["segments"]) == [EVERYONE, "A", "B"]
    everyone = base["segments"][EVERYONE]
    assert everyone["n"] == 400 and set(everyone["drivers"]) == {"Experience", "Image"}
    assert 0 <= everyone["top2_box"] <= 1 and 0 <= everyone["detractors"] <= 1
    x = data.frame["NPS"].to_numpy()
    assert everyone["promoters"] == pytest.approx((x >= 9).mean())
    json.dumps(base)  # plain data: ready for what_if_baseline.json

    examples = what_if_examples(model, data, shift=5)
    assert set(examples["segment"]) == {EVERYONE, "A", "B"}
    assert set(examples["driver"]) == {"Experience", "Image"} and set(examples["shift"]) == {5}
    assert {"outcome", "change", "change_hdi_low", "change_hdi_high", "p_increase"} <= set(
        examples.columns
    )
    assert "id" not in examples.columns


def test_rules_needing_missing_inputs():
    rules = [
        AlertRule(name="low", rule="P(NPS < 0) > 0.9"),
        AlertRule(name="fix", rule="P(fix_first) > 0.8"),
        AlertRule(name="conv", rule="diagnostics_failed"),
    ]
    assert rules_needing_missing_inputs(rules) == {
        "low": "needs KPI estimates",
        "fix": "needs driver priorities",
        "conv": "needs models' diagnostics",
    }
    kpis = estimate_kpis(kpi_survey(make_frame([10] * 30)), n_draws=50)
    assert rules_needing_missing_inputs(rules, kpis=kpis, diagnostics={"sem": {"ok": True}}) == {
        "fix": "needs driver priorities"
    }
