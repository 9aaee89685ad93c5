"""Driver priorities and what-if against closed-form answers on hand-built posteriors."""

import time

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr, ndtri

from cxlib.config import EVERYONE
from cxlib.data import SurveyData
from cxlib.insights.drivers import DriverError, DriverModel, driver_priorities, what_if
from cxlib.study import study_from_dict

LATENTS = ["Experience", "Image", "Loyalty"]
ITEMS = {"Experience": ["X1", "X2"], "Image": ["M1", "M2"], "Loyalty": ["Y1", "Y2", "NPS"]}
A, B_, C = 0.5, 0.4, 0.1  # Experience -> Image, Image -> Loyalty, Experience -> Loyalty


def path_model(n_draws=200, noise=0.0, seed=0) -> DriverModel:
    """A known linear path model: total effect of Experience on Loyalty = c + a*b = 0.3."""
    rng = np.random.default_rng(seed)
    B = np.zeros((n_draws, 1, 3, 3))
    B[..., 1, 0] = A + noise * rng.standard_normal((n_draws, 1))
    B[..., 2, 1] = B_ + noise * rng.standard_normal((n_draws, 1))
    B[..., 2, 0] = C + noise * rng.standard_normal((n_draws, 1))
    total = np.linalg.inv(np.eye(3) - B)
    order = [i for lat in LATENTS for i in ITEMS[lat]]
    loadings = np.zeros((n_draws, 1, len(order), 3))
    for k, lat in enumerate(LATENTS):
        for item in ITEMS[lat]:
            loadings[..., order.index(item), k] = 1.0 if item != "NPS" else 2.5
    scales = {i: (1, 5) for i in order} | {"NPS": (0, 10)}
    return DriverModel(
        latents=LATENTS,
        items=ITEMS,
        scales=scales,
        total=total,
        loadings=loadings,
        item_sd=np.ones((n_draws, 1, len(order))),
        item_order=order,
    )


def test_what_if_equals_delta_times_total_effect():
    model = path_model()
    k = model.score_factor()[0, 0]
    assert k[0] == pytest.approx(25.0)  # 100 * loading / range(4), averaged over items
    res = what_if(
        model, {"Experience": 10}, baseline={"top2_box": 0.3, "promoters": 0.35, "detractors": 0.25}
    )
    total_effect = C + A * B_
    expected = 10 * total_effect * k[2] / k[0]
    np.testing.assert_allclose(res.draws["target_score"], expected)
    # combined shifts add up along the structural equations
    both = what_if(
        model,
        {"Experience": 10, "Image": 5},
        baseline={"top2_box": 0.3, "promoters": 0.35, "detractors": 0.25},
    )
    np.testing.assert_allclose(both.draws["target_score"], expected + 5 * B_ * k[2] / k[1])


def test_top2_box_and_nps_follow_the_probit_link():
    model = path_model()
    res = what_if(
        model, {"Experience": 10}, baseline={"top2_box": 0.3, "promoters": 0.35, "detractors": 0.25}
    )
    d_eta = 10 / model.score_factor()[0, 0, 0] * (C + A * B_)
    assert res.draws["top2_box"][0] == pytest.approx(100 * (ndtr(ndtri(0.3) + d_eta) - 0.3))
    nps_shift = 2.5 * d_eta  # NPS loads 2.5 with item SD 1
    expected = 100 * ((ndtr(ndtri(0.35) + nps_shift) - ndtr(ndtri(0.25) - nps_shift)) - 0.10)
    assert res.draws["nps"][0] == pytest.approx(expected)
    assert set(res.table["outcome"]) == {"target_score", "top2_box", "nps"}


def test_what_if_is_fast():
    model = path_model(n_draws=1000, noise=0.05)
    base = {"top2_box": 0.3, "promoters": 0.35, "detractors": 0.25}
    what_if(model, {"Experience": 1}, baseline=base)
    start = time.perf_counter()
    for _ in range(10):
        what_if(model, {"Experience": 5, "Image": -3}, baseline=base)
    assert (time.perf_counter() - start) / 10 < 0.05


def test_what_if_bad_input():
    model = path_model()
    base = {"top2_box": 0.3, "promoters": 0.35, "detractors": 0.25}
    with pytest.raises(DriverError, match="'Price' is neither a construct nor an item"):
        what_if(model, {"Price": 5}, baseline=base)
    with pytest.raises(DriverError, match="leaves its scale: 95.00 -> 105.00, outside 0-100"):
        what_if(model, {"Experience": 10}, baseline=base | {"Experience": 95})
    with pytest.raises(DriverError, match="leaves its scale"):
        what_if(model, {"X1": 2}, baseline=base | {"X1": 4.2})
    with pytest.raises(DriverError, match="needs its current level"):
        what_if(model, {"Experience": 80}, mode="set", baseline=base)
    with pytest.raises(DriverError, match="not a construct of the model"):
        what_if(model, {"Experience": 1}, target="Churn", baseline=base)


def test_set_mode_moves_to_the_target_level():
    model = path_model()
    base = {"top2_box": 0.3, "promoters": 0.35, "detractors": 0.25, "Experience": 60.0}
    res = what_if(model, {"Experience": 70}, mode="set", baseline=base)
    assert res.shifts == {"Experience": 10.0}


def survey(n=400, seed=1) -> SurveyData:
    items = {
        lat: {"items": {i: {"text": i, "scale": [0, 10] if i == "NPS" else [1, 5]} for i in its}}
        for lat, its in ITEMS.items()
    }
    study = study_from_dict(
        {
            "name": "drivers",
            "columns": {"respondent_id": "id", "wave": "wave", "segments": {"segment": ["A", "B"]}},
            "source": {"wave_order": ["W1", "W2"]},
            "constructs": items,
            "kpis": {"nps": "NPS"},
        }
    )
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(n)]})
    frame["segment"] = pd.Categorical(rng.choice(["A", "B"], n), categories=["A", "B"])
    frame["wave"] = pd.Categorical(
        rng.choice(["W1", "W2"], n), categories=["W1", "W2"], ordered=True
    )
    for lat, its in ITEMS.items():
        for i in its:
            hi = 10 if i == "NPS" else 5
            low = {"Experience": 1, "Image": 3, "Loyalty": 2}[lat]  # Experience performs worst
            frame[i] = rng.integers(low, hi + 1, n).astype(float)
    return SurveyData(frame=frame, study=study, source="memory", format="memory", data_hash="")


def test_priority_map_quadrants():
    model = path_model(n_draws=500, noise=0.02)
    pm = driver_priorities(model, survey(), target="Loyalty")
    assert set(pm["driver"]) == {"Experience", "Image"}
    pcols = ["p_fix_first", "p_keep_up", "p_possible_overkill", "p_low_priority"]
    np.testing.assert_allclose(pm[pcols].sum(axis=1), 1.0)
    # two drivers: the median splits them. Image matters more (total effect 0.4 vs 0.3)
    # and performs better (answers 3-5 vs 1-5): keep up; Experience: low priority.
    row = pm.query("segment == @EVERYONE and wave == 'W1'").set_index("driver")
    assert row.loc["Experience", "importance"] == pytest.approx(0.3, abs=0.01)
    assert row.loc["Image", "importance"] == pytest.approx(0.4, abs=0.01)
    assert row.loc["Image", "performance"] > row.loc["Experience", "performance"] + 15
    assert row.loc["Image", "p_keep_up"] > 0.99 and row.loc["Image", "quadrant"] == "keep up"
    assert row.loc["Experience", "p_low_priority"] > 0.99
    assert set(pm["segment"]) == {EVERYONE, "A", "B"} and set(pm["wave"]) == {"W1", "W2"}


def test_item_level_priorities_split_construct_importance():
    model = path_model(n_draws=100)
    items = driver_priorities(model, survey(), level="item").query(
        "segment == @EVERYONE and wave == 'W1'"
    )
    assert list(items["driver"]) == ["X1", "X2", "M1", "M2"]
    assert items.set_index("driver").loc["X1", "importance"] == pytest.approx(0.15)


def test_what_if_reads_baselines_from_data():
    model = path_model()
    data = survey()
    res = what_if(model, {"Experience": 5}, data=data)
    assert {"target_score", "top2_box", "nps"} == set(res.draws)
    with pytest.raises(DriverError, match="leaves its scale"):
        what_if(model, {"Experience": -90}, data=data)


def test_driver_model_round_trips_through_a_file(tmp_path):
    model = path_model(n_draws=50, noise=0.05)
    path = model.save(tmp_path / "drivers.npz")
    back = DriverModel.load(path)
    np.testing.assert_array_equal(back.total, model.total)
    assert back.scales["NPS"] == (0, 10) and back.items == model.items
    base = {"top2_box": 0.3, "promoters": 0.35, "detractors": 0.25}
    np.testing.assert_allclose(
        what_if(back, {"Experience": 5}, baseline=base).draws["nps"],
        what_if(model, {"Experience": 5}, baseline=base).draws["nps"],
    )
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DriverError, match="not a driver model file"):
        DriverModel.load(tmp_path / "bad.npz")
    with pytest.raises(DriverError, match="not found"):
        DriverModel.load(tmp_path / "missing.npz")
