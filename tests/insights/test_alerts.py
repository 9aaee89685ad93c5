import numpy as np
import pandas as pd
import pytest

from cxlib.config import EVERYONE
from cxlib.errors import StudySpecError
from cxlib.insights.alerts import AlertRule, AlertRuleError, evaluate_alerts, parse_rule
from cxlib.insights.kpis import KpiEstimates
from cxlib.study import study_from_dict


def hand_built(nps_draws: np.ndarray, waves=("W1", "W2"), n=100) -> KpiEstimates:
    """KPI posteriors built by hand: segments x waves x draws."""
    segs = [EVERYONE, "A"]
    shape = (len(segs), len(waves))
    counts = np.full(shape, n)
    return KpiEstimates(
        draws={"nps": nps_draws},
        segments=segs,
        waves=list(waves),
        n={"nps": counts},
        n_eff={"nps": counts.astype(float)},
        table=pd.DataFrame(),
        segment_column="segment",
        hdi_prob=0.94,
        min_cell_size=30,
    )


def draws_with_share_below(share: float, value: float, size: int = 1000) -> np.ndarray:
    below = int(round(share * size))
    return np.r_[np.full(below, value - 1.0), np.full(size - below, value + 1.0)]


@pytest.mark.parametrize(
    ("share", "rule", "fires"),
    [
        (0.90, "P(NPS < 20) > 0.9", False),  # exactly at the boundary: '>' does not fire
        (0.90, "P(NPS < 20) >= 0.9", True),
        (0.91, "P(NPS < 20) > 0.9", True),
        (0.89, "P(NPS < 20) > 0.9", False),
    ],
)
def test_threshold_rule_at_its_boundary(share, rule, fires):
    d = np.stack([np.stack([draws_with_share_below(share, 20)] * 2)] * 2)
    alerts = evaluate_alerts([AlertRule(name="low", rule=rule)], study="s", kpis=hand_built(d))
    assert list(alerts["wave"]) == ["W2", "W2"]  # latest wave, every segment
    assert alerts["probability"].tolist() == pytest.approx([share, share])
    assert alerts["fired"].tolist() == [fires, fires]


def test_change_rule():
    w1 = np.full(1000, 30.0)
    w2 = np.r_[np.full(960, 25.0), np.full(40, 29.0)]  # dropped 5 points with prob 0.96
    d = np.stack([np.stack([w1, w2])] * 2)
    rule = AlertRule(name="drop", rule="P(change(NPS) < -3) > 0.95", message="NPS dropped")
    alerts = evaluate_alerts([rule], study="s", kpis=hand_built(d))
    assert alerts["fired"].all()
    assert alerts["probability"].iloc[0] == pytest.approx(0.96)
    assert alerts["message"].iloc[0].startswith("NPS dropped — change in NPS since W1 < -3.0")
    strict = AlertRule(name="drop", rule="P(change(NPS) < -3) > 0.97")
    assert not evaluate_alerts([strict], study="s", kpis=hand_built(d))["fired"].any()


def test_segments_and_waves_can_be_chosen():
    d = np.zeros((2, 2, 10))
    rule = AlertRule(name="x", rule="P(NPS < 1) > 0.5", segments=["A"], waves="all")
    alerts = evaluate_alerts([rule], study="s", kpis=hand_built(d))
    assert alerts[["segment", "wave"]].values.tolist() == [["A", "W1"], ["A", "W2"]]
    with pytest.raises(AlertRuleError, match="unknown segment 'Z'"):
        evaluate_alerts(
            [AlertRule(name="x", rule="P(NPS < 1) > 0.5", segments=["Z"])],
            study="s",
            kpis=hand_built(d),
        )


def test_fix_first_fires_when_a_driver_enters_the_quadrant():
    priorities = pd.DataFrame(
        {
            "driver": ["Experience", "Image", "Experience", "Image"],
            "segment": [EVERYONE] * 4,
            "wave": ["W1", "W1", "W2", "W2"],
            "p_fix_first": [0.2, 0.9, 0.85, 0.95],
        }
    )
    alerts = evaluate_alerts(
        [AlertRule(name="ff", rule="P(fix_first) > 0.8")], study="s", priorities=priorities
    )
    fired = alerts[alerts["fired"]]
    assert fired["subject"].tolist() == ["Experience"]  # Image was already there in W1
    assert "entered 'fix first'" in fired["message"].iloc[0]


def test_diagnostics_rule():
    alerts = evaluate_alerts(
        [AlertRule(name="conv", rule="diagnostics_failed")],
        study="s",
        diagnostics={
            "sem": {"ok": False, "problems": ["R-hat 1.05 for b"]},
            "expectations": {"ok": True},
        },
    )
    assert alerts["fired"].tolist() == [True, False]
    assert "R-hat 1.05 for b" in alerts["message"].iloc[0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("NPS < 20", "cannot read the alert rule"),
        ("P(NPS < 20) > 1.5", "between 0 and 1"),
        ("P(churn < 20) > 0.9", "unknown KPI 'churn'"),
        ("P(NPS is low) > 0.9", "inside P(...)"),
        ("", "non-empty"),
    ],
)
def test_rules_that_do_not_parse(text, fragment):
    with pytest.raises(
        AlertRuleError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        parse_rule(text)


def test_rules_parse():
    assert parse_rule("P(change(nps) <= -3) > 0.95").kind == "change"
    assert parse_rule("P(loyalty < 50) > 0.8").kpi == "loyalty_index"
    assert parse_rule("diagnostics_failed").kind == "diagnostics"


def test_missing_inputs_are_named():
    with pytest.raises(AlertRuleError, match="needs KPI estimates"):
        evaluate_alerts([AlertRule(name="a", rule="P(NPS < 1) > 0.5")], study="s")
    with pytest.raises(AlertRuleError, match="needs driver priorities"):
        evaluate_alerts([AlertRule(name="a", rule="P(fix_first) > 0.5")], study="s")


def test_study_spec_refuses_a_bad_rule(study):
    raw = study.to_dict()
    raw["alerts"] = [{"name": "broken", "rule": "P(NPS << 3) > 0.9"}]
    with pytest.raises(StudySpecError, match=r"alerts\.0\.rule"):
        study_from_dict(raw)


def test_sample_study_alerts(study):
    from cxlib.data import load_responses
    from cxlib.insights.kpis import estimate_kpis

    kpis = estimate_kpis(load_responses(study), n_draws=2000)
    alerts = evaluate_alerts(
        study.alerts, study=study.name, kpis=kpis, diagnostics={"sem": {"ok": True}}
    )
    fired = alerts[alerts["fired"]]
    assert ("nps_drop", EVERYONE) in set(zip(fired["rule_name"], fired["segment"], strict=True))


def test_a_rule_on_a_digital_metric_parses_and_is_evaluated_per_touchpoint():
    from cxlib.insights.alerts import rules_needing_missing_inputs

    parsed = parse_rule("P(rage_click_rate > 0.3) > 0.9")
    assert (parsed.kind, parsed.kpi, parsed.op, parsed.value) == ("digital", "rage_click_rate", ">", 0.3)
    with pytest.raises(AlertRuleError, match="change\\(\\) is for survey KPIs"):
        parse_rule("P(change(digital_score) < -3) > 0.9")
    with pytest.raises(AlertRuleError, match="digital metric: rage_click_rate"):
        parse_rule("P(rage_clicks > 0.3) > 0.9")  # the signal, not its rate
    rule = AlertRule(name="rage", rule="P(rage_click_rate > 0.3) > 0.9", message="Too many")
    digital = {
        "rage_click_rate": {
            EVERYONE: draws_with_share_below(0.5, 0.3),  # P(> 0.3) = 0.5: no alert
            "app_order": draws_with_share_below(0.05, 0.3),  # P(> 0.3) = 0.95: alert
        }
    }
    alerts = evaluate_alerts([rule], study="s", digital=digital)
    fired = alerts.set_index("subject")["fired"]
    assert fired.to_dict() == {"rage_click_rate: all": False, "rage_click_rate: app_order": True}
    assert alerts.loc[alerts["fired"], "message"].iloc[0].startswith("Too many — rage_click_rate")
    # the overview (no sessions' metrics) names what the rule needs instead of evaluating it
    assert "06-digital-experience" in rules_needing_missing_inputs([rule])["rage"]
    with pytest.raises(AlertRuleError, match="sessions' metrics"):
        evaluate_alerts([rule], study="s")
