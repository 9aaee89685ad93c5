import pytest

from cxlib.config import EVERYONE
from cxlib.data import load_responses
from cxlib.errors import CxError
from cxlib.insights.kpis import estimate_kpis
from cxlib.plots import export_table, kpi_trend, segment_comparison


@pytest.fixture(scope="module")
def table(study):
    return estimate_kpis(load_responses(study), n_draws=500).table


def test_kpi_trend_shows_the_table_rows(table):
    chart = kpi_trend(table, "nps")
    spec = chart.to_dict()
    assert len(spec["layer"]) == 2
    data = chart.data
    assert set(data["segment"]) == {EVERYONE, "Consumer", "Small business", "Enterprise"}
    assert (data["kpi"] == "nps").all()


def test_small_cells_are_left_out(table):
    t = table.copy()
    t.loc[(t["segment"] == "Enterprise") & (t["kpi"] == "nps"), "small_cell"] = True
    assert "Enterprise" not in set(kpi_trend(t, "nps").data["segment"])


def test_segment_comparison_uses_the_latest_wave(table):
    chart = segment_comparison(table, "loyalty_index")
    assert set(chart.data["wave"]) == {"2026-Q3"}


def test_unknown_kpi(table):
    with pytest.raises(CxError, match="no rows for KPI 'churn'"):
        kpi_trend(table, "churn")


def test_export(table, tmp_path):
    assert export_table(kpi_trend(table).data, tmp_path / "nps.csv").stat().st_size > 0
    assert export_table(table, tmp_path / "kpis.xlsx").exists()


def test_priority_map_and_what_if_bars():
    from cxlib.insights.drivers import driver_priorities, what_if
    from cxlib.plots import priority_map, what_if_bars
    from tests.insights.test_drivers import path_model, survey

    pm = driver_priorities(path_model(n_draws=100), survey())
    chart = priority_map(pm, segment="A")
    assert set(chart.data["driver"]) == {"Experience", "Image"}
    assert set(chart.data["wave"]) == {"W2"}
    assert len(chart.to_dict()["layer"]) == 6
    with pytest.raises(CxError, match="no driver priorities for segment 'Z'"):
        priority_map(pm, segment="Z")
    res = what_if(
        path_model(),
        {"Experience": 5},
        baseline={"top2_box": 0.3, "promoters": 0.3, "detractors": 0.3},
    )
    bars = what_if_bars(res.table)
    assert list(bars.data["outcome"]) == ["target_score", "top2_box", "nps"]


def test_dimension_weights_chart():
    import pandas as pd

    from cxlib.plots import dimension_weights_chart

    wide = pd.DataFrame(
        {
            "segment": ["Consumer", "Enterprise"],
            "technical": [2.0, 3.0],
            "technical_hdi_low": [1.5, 2.5],
            "technical_hdi_high": [2.5, 3.5],
            "emotional": [4.0, 1.0],
            "emotional_hdi_low": [3.5, 0.5],
            "emotional_hdi_high": [4.5, 1.5],
            "p_emotional_greater": [0.99, 0.02],
        }
    )
    chart = dimension_weights_chart(wide)
    data = chart.data.set_index(["segment", "dimension"])
    assert data.loc[("Enterprise", "technical"), "weight"] == 3.0
    assert data.loc[("Consumer", "emotional"), "hdi_high"] == 4.5
    assert len(chart.to_dict()["layer"]) == 2
    with pytest.raises(CxError, match="p_emotional_greater"):
        dimension_weights_chart(wide.drop(columns="p_emotional_greater"))
