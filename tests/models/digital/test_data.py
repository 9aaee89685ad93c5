"""The digital experience model's input: the simulator, data checks and the bivariate normal CDF."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy import stats

from cxlib.errors import CxError, ModelSpecificationError
from cxlib.insights.digital import signal_rate_alerts
from cxlib.models.digital import SIGNALS, DigitalExperienceModel, simulate_sessions
from cxlib.models.digital.data import holdout_split, prepare_digital_data, signal_matrix
from cxlib.models.digital.result import bivariate_normal_cdf
from cxlib.models.digital.simulate import SESSION_COLUMNS


@pytest.fixture(scope="module")
def sessions():
    frame, _ = simulate_sessions(2000, n_surveyed=600, seed=3)
    return frame


def test_signals_mirror_the_contract():
    if importlib.util.find_spec("cxlib.data.signals") is None:
        pytest.skip("cxlib.data.signals not built yet")
    from cxlib.data.signals import SIGNALS as CONTRACT

    assert tuple(CONTRACT) == SIGNALS


def test_simulated_table_has_the_contract_columns(sessions):
    assert list(sessions.columns[: len(SESSION_COLUMNS) + len(SIGNALS)]) == [
        *SESSION_COLUMNS,
        *SIGNALS,
    ]
    assert sessions["completed"].dtype == bool
    assert sessions["rage_clicks"].dtype == np.int64
    assert str(sessions["start"].dtype) == "datetime64[ns, UTC]"
    assert str(sessions["day"].dtype) == "datetime64[ns]"
    assert sessions["time_to_complete_s"].isna().equals(~sessions["completed"])
    assert sessions["rating"].notna().equals(sessions["surveyed"])
    assert set(sessions["rating"].dropna().unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert sessions["session_id"].is_unique


def test_simulated_response_depends_on_satisfaction():
    frame, truth = simulate_sessions(20_000, n_surveyed=4000, seed=1)
    assert 3600 < frame["surveyed"].sum() < 4400
    gap = truth["mean_satisfaction_surveyed"] - truth["mean_satisfaction_unsurveyed"]
    assert gap > 0.4
    frame0, truth0 = simulate_sessions(20_000, n_surveyed=4000, truth={"g1": 0.0}, seed=1)
    gap0 = truth0["mean_satisfaction_surveyed"] - truth0["mean_satisfaction_unsurveyed"]
    assert abs(gap0) < 0.05
    # frustrated sessions show more rage clicks and complete less often
    low = frame["satisfaction"] < frame["satisfaction"].median()
    assert frame.loc[low, "rage_clicks"].mean() > 1.5 * frame.loc[~low, "rage_clicks"].mean()
    assert frame.loc[low, "completed"].mean() < frame.loc[~low, "completed"].mean()


def test_simulated_scale_0_10():
    frame, truth = simulate_sessions(3000, n_surveyed=900, scale=(0, 10), seed=2)
    r = frame["rating"].dropna()
    assert r.min() >= 0 and r.max() <= 10 and r.nunique() >= 7
    assert len(truth["cutpoints"]) == 10


def test_prepare_standardizes_over_all_sessions(sessions):
    d = prepare_digital_data(sessions)
    assert d.signals == list(SIGNALS)
    assert d.n_surveyed == int(sessions["surveyed"].sum())
    np.testing.assert_allclose(d.X[:, d.signals.index("rage_clicks")].mean(), 0.0, atol=1e-9)
    np.testing.assert_allclose(d.X[:, d.signals.index("rage_clicks")].std(), 1.0, atol=1e-9)
    assert d.segments == ["business", "private"]
    X = signal_matrix(sessions, d.signals, d.center, d.scale)
    np.testing.assert_allclose(X, d.X)


def test_no_surveyed_session_is_a_clear_error(sessions):
    frame = sessions.assign(rating=np.nan)
    with pytest.raises(CxError, match="no surveyed session"):
        prepare_digital_data(frame)


def test_rating_outside_the_scale_names_the_rows(sessions):
    frame = sessions.copy()
    rows = frame.index[frame["surveyed"]][:2]
    frame.loc[rows, "rating"] = [7.0, 2.5]
    with pytest.raises(ModelSpecificationError, match="outside the scale") as err:
        prepare_digital_data(frame)
    for sid in frame.loc[rows, "session_id"]:
        assert sid in str(err.value)
    assert "integer from 1 to 5" in str(err.value)


def test_missing_signal_column_is_named(sessions):
    with pytest.raises(ModelSpecificationError, match="'dead_clicks'"):
        prepare_digital_data(sessions.drop(columns=["dead_clicks"]))


def test_missing_rating_column_is_named(sessions):
    with pytest.raises(ModelSpecificationError, match="no rating column 'rating'"):
        prepare_digital_data(sessions.drop(columns=["rating"]))


def test_constant_signal_is_dropped_with_a_note(sessions):
    d = prepare_digital_data(sessions.assign(page_loops=0))
    assert "page_loops" not in d.signals
    assert any("page_loops" in n and "dropped" in n for n in d.notes)
    with pytest.raises(ModelSpecificationError, match="varies"):
        prepare_digital_data(sessions.assign(page_loops=0), signals=["page_loops"])


def test_bad_signal_values_name_the_sessions(sessions):
    frame = sessions.copy()
    frame.loc[frame.index[5], "hesitation_s"] = -1.0
    with pytest.raises(ModelSpecificationError, match="hesitation_s") as err:
        prepare_digital_data(frame)
    assert frame.loc[frame.index[5], "session_id"] in str(err.value)


def test_bad_weights_and_scale(sessions):
    frame = sessions.assign(w=1.0)
    frame.loc[frame.index[frame["surveyed"]][0], "w"] = -2.0
    with pytest.raises(ModelSpecificationError, match="negative weight"):
        prepare_digital_data(frame, weights="w")
    with pytest.raises(ModelSpecificationError, match="3 or more categories"):
        prepare_digital_data(sessions, scale=(1, 2))
    d = prepare_digital_data(sessions.assign(w=2.0), weights="w")
    np.testing.assert_allclose(d.weight[d.surveyed].mean(), 1.0)


def test_holdout_split_keeps_every_session(sessions):
    train, test = holdout_split(sessions, 0.25, seed=1)
    assert len(train) + len(test) == len(sessions)
    assert 0.18 < len(test) / len(sessions) < 0.32
    assert not set(train["session_id"]) & set(test["session_id"])


@pytest.mark.parametrize("rho", [-0.7, -0.3, 0.0, 0.5])
def test_bivariate_normal_cdf_matches_scipy(rho):
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1.5, 30), rng.normal(0, 1.5, 30)
    ours = bivariate_normal_cdf(x, y, rho)
    ref = stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]]).cdf(np.column_stack([x, y]))
    np.testing.assert_allclose(ours, ref, atol=1e-7)



@pytest.mark.parametrize("rho", [-0.7, -0.3, 0.0, 0.5])
def test_the_closed_form_gradient_of_the_bivariate_cdf_matches_its_derivative(rho):
    """The likelihood's Phi_2 op: its value is the quadrature's, its gradient the exact one."""
    import pytensor
    import pytensor.tensor as pt

    from cxlib.models.digital.model import bivariate_normal_cdf_op

    rng = np.random.default_rng(1)
    x, y = rng.normal(0, 1.5, 40), rng.normal(0, 1.5, 40)
    wx = rng.normal(size=40)
    xs, ys, rs = pt.dvector("x"), pt.dvector("y"), pt.dscalar("rho")
    # a weighted sum, so each element's gradient is checked, not only their total
    total = (pt.as_tensor(wx) * bivariate_normal_cdf_op()(xs, ys, rs)).sum()
    f = pytensor.function([xs, ys, rs], [total, *pytensor.grad(total, [xs, ys, rs])])
    value, gx, gy, gr = f(x, y, rho)
    assert value == pytest.approx(float(wx @ bivariate_normal_cdf(x, y, rho)), abs=1e-12)
    h = 1e-5

    def central(dx=0.0, dy=0.0, dr=0.0):
        up = wx * bivariate_normal_cdf(x + dx, y + dy, rho + dr)
        down = wx * bivariate_normal_cdf(x - dx, y - dy, rho - dr)
        return (up - down) / (2 * h)

    np.testing.assert_allclose(gx, central(dx=h), atol=1e-7)
    np.testing.assert_allclose(gy, central(dy=h), atol=1e-7)
    assert gr == pytest.approx(central(dr=h).sum(), abs=1e-6)


def test_the_model_gradient_matches_finite_differences():
    """The whole likelihood's gradient (closed-form Phi_2 inside) against its logp."""
    sessions, _ = simulate_sessions(1500, n_surveyed=500, seed=3)
    model = DigitalExperienceModel(scale=(1, 5)).build_model(sessions)
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    point = model.initial_point()
    rng = np.random.default_rng(2)
    point = {k: v + rng.normal(0, 0.1, np.shape(v)) for k, v in point.items()}
    grad = dlogp(point)
    h, numeric = 1e-5, []
    for name in [v.name for v in model.value_vars]:
        flat = np.atleast_1d(point[name]).astype(float)
        for j in range(flat.size):
            up, down = dict(point), dict(point)
            e = np.zeros(flat.size)
            e[j] = h
            up[name] = (flat + e).reshape(np.shape(point[name]))
            down[name] = (flat - e).reshape(np.shape(point[name]))
            numeric.append((logp(up) - logp(down)) / (2 * h))
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def test_signal_rate_alerts(sessions):
    out = signal_rate_alerts(sessions, signal="rage_clicks", by="touchpoint", threshold=0.3)
    assert list(out["touchpoint"]) == sorted(sessions["touchpoint"].unique())
    assert out["n_sessions"].sum() == len(sessions)
    assert ((out["p_above"] >= 0) & (out["p_above"] <= 1)).all()
    assert (out["rate_hdi_low"] < out["rate"]).all() and (out["rate"] < out["rate_hdi_high"]).all()
    # a rate far below / above every group's
    assert (signal_rate_alerts(sessions, threshold=5.0)["p_above"] < 1e-6).all()
    assert (signal_rate_alerts(sessions, threshold=0.01)["p_above"] > 0.999).all()
    with pytest.raises(ModelSpecificationError, match="no column 'rage_click'"):
        signal_rate_alerts(sessions, signal="rage_click")
