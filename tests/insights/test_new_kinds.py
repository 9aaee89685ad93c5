"""Driver priorities and what-if on composites, observed covariates, second-order constructs and
interactions.

Three small SEM fits (600 respondents, 2 x 200 draws) on data simulated from a known truth:

- a composite ``Quality <~ q1 + q2 + q3`` (raw weights 1, 0.6, 0.8) driving Loyalty;
- an observed covariate, ``Loyalty ~ Experience + tenure`` (tenure in years, 0-20);
- a second-order ``CX =~ Store + Phone + Web`` driving Loyalty.

Each driver model is checked against identities of the posterior it comes from (per draw)
and against the truth where the importance follows from it. Interactions are checked on
hand-built posteriors against the closed form of ``Y = b_X X + b_Z Z + gamma X Z``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from cxlib.data import load_responses
from cxlib.errors import DriverError
from cxlib.insights.drivers import DriverModel, driver_priorities, what_if
from cxlib.study import study_from_dict

N = 600
WEIGHTS = np.array([1.0, 0.6, 0.8])  # raw composite weights (the first is the scale: 1)
B_QUALITY = 0.3  # Loyalty per unit of the composite (in q1's points)
LAMBDA = np.array([1.0, 0.9, 0.8])  # Loyalty's loadings (marker: the first is 1)
FIT = {"draws": 200, "tune": 200, "chains": 2, "cores": 1, "random_seed": 1}


def items(prefix: str, n: int = 3, scale=(0, 100)) -> dict:
    return {
        f"{prefix}{i}": {"text": f"{prefix} {i}", "scale": list(scale)} for i in range(1, n + 1)
    }


def answers(latent: np.ndarray, loadings, rng, *, sd: float = 5.0, prefix: str) -> dict:
    """0-100 answers ``50 + loading * latent + error``, rounded (whole numbers)."""
    return {
        f"{prefix}{i + 1}": np.clip(
            np.round(50 + lam * latent + sd * rng.standard_normal(N)), 0, 100
        )
        for i, lam in enumerate(loadings)
    }


def load(tmp_path, spec: dict, frame: pd.DataFrame):
    study = study_from_dict(spec)
    path = tmp_path / f"{spec['name']}.csv"
    frame.assign(id=np.arange(len(frame))).to_csv(path, index=False)
    return load_responses(study, path)


def fit(model, data):
    from cxlib.models import BayesianSEM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianSEM(model).fit(data, **FIT)


def draws_of(result, name: str) -> np.ndarray:
    """Draws of a matrix, flattened to (draw, ...), group 0."""
    mats = result.matrices()
    arr = mats[name][:, :, 0]
    return arr.reshape((-1,) + arr.shape[2:])


# ----------------------------------------------------------------------------- fits
@pytest.fixture(scope="module")
def composite(tmp_path_factory):
    rng = np.random.default_rng(3)
    corr = np.full((3, 3), 0.3) + 0.7 * np.eye(3)
    z = rng.multivariate_normal(np.zeros(3), corr, N)
    quality = 10 * z @ WEIGHTS  # in q1's points
    loyalty = B_QUALITY * quality + 5 * rng.standard_normal(N)
    frame = pd.DataFrame(
        {f"q{j + 1}": np.clip(np.round(50 + 10 * z[:, j]), 0, 100) for j in range(3)}
        | answers(loyalty, LAMBDA, rng, prefix="l")
    )
    spec = {
        "name": "composite",
        "columns": {"respondent_id": "id"},
        "constructs": {"Quality": {"items": items("q")}, "Loyalty": {"items": items("l")}},
        "model": "Quality <~ q1 + q2 + q3\nLoyalty ~ Quality\n",
    }
    data = load(tmp_path_factory.mktemp("composite"), spec, frame)
    result = fit(data.study, data)
    return result, data, DriverModel.from_sem(result, data.study, allow_unconverged=True)


@pytest.fixture(scope="module")
def covariate(tmp_path_factory):
    rng = np.random.default_rng(4)
    experience = 8 * rng.standard_normal(N)
    tenure = np.clip(np.round(rng.gamma(2.0, 3.0, N)), 0, 20)
    loyalty = 0.5 * experience + 1.0 * (tenure - tenure.mean()) + 5 * rng.standard_normal(N)
    frame = pd.DataFrame(
        answers(experience, LAMBDA, rng, prefix="x")
        | answers(loyalty, LAMBDA, rng, prefix="l")
        | {"tenure": tenure}
    )
    spec = {
        "name": "covariate",
        "columns": {"respondent_id": "id"},
        "constructs": {"Experience": {"items": items("x")}, "Loyalty": {"items": items("l")}},
        "items": {"tenure": {"text": "years as a customer", "scale": [0, 20]}},
        "model": "Loyalty ~ Experience + tenure\n",
    }
    data = load(tmp_path_factory.mktemp("covariate"), spec, frame)
    result = fit(data.study, data)
    return result, data, DriverModel.from_sem(result, data.study, allow_unconverged=True)


SECOND_ORDER = np.array([1.0, 0.8, 0.7])  # CX =~ Store + Phone + Web
B_CX = 0.5


@pytest.fixture(scope="module")
def second_order(tmp_path_factory):
    rng = np.random.default_rng(5)
    cx = 8 * rng.standard_normal(N)
    frame = {}
    for name, lam in zip(("s", "p", "w"), SECOND_ORDER, strict=True):
        first = lam * cx + 4 * rng.standard_normal(N)
        frame |= answers(first, LAMBDA, rng, prefix=name)
    loyalty = B_CX * cx + 5 * rng.standard_normal(N)
    frame = pd.DataFrame(frame | answers(loyalty, LAMBDA, rng, prefix="l"))
    # the spec declares the first-order constructs; the model names the second-order one
    spec = {
        "name": "second",
        "columns": {"respondent_id": "id"},
        "constructs": {
            "Store": {"items": items("s")},
            "Phone": {"items": items("p")},
            "Web": {"items": items("w")},
            "Loyalty": {"items": items("l")},
        },
        "model": "CX =~ Store + Phone + Web\nLoyalty ~ CX\n",
    }
    data = load(tmp_path_factory.mktemp("second"), spec, frame)
    result = fit(data.study, data)
    return result, data, DriverModel.from_sem(result, data.study, allow_unconverged=True)


# ----------------------------------------------------------------------------- composites
def test_composite_indicators_are_its_items_not_drivers(composite):
    _, _, model = composite
    assert model.drivers_of("Loyalty") == ["Quality"]
    assert model.construct_items("Quality")[0] == ["q1", "q2", "q3"]
    assert model.composites == {"Quality": ["q1", "q2", "q3"]}


def test_indicator_importance_is_weight_times_the_composites_total_effect(composite):
    result, data, model = composite
    B, inv = draws_of(result, "B"), draws_of(result, "inv")
    lat = result.structure.latents
    f, t = lat.index("Quality"), lat.index("Loyalty")
    q = [lat.index(x) for x in ("q1", "q2", "q3")]
    k_loyalty = model.score_factor()[:, 0, t]
    # per draw: importance of q_j (Loyalty points per q_j point, both 0-100) is its raw
    # weight times the composite's total effect on Loyalty (the scales' ranges are equal)
    names, imp = model.importance("Loyalty", level="item")
    assert names == ["q1", "q2", "q3"]
    expected = B[:, f, q] * inv[:, t, f][:, None] * k_loyalty[:, None]
    np.testing.assert_allclose(imp[:, 0], expected, rtol=1e-10)
    # the items' importances add up to the composite's
    _, construct = model.importance("Loyalty")
    np.testing.assert_allclose(imp[:, 0].sum(axis=1), construct[:, 0, 0], rtol=1e-10)
    # against the reports: weights from composites(), total effect from effects()
    table = result.composites().set_index("indicator")
    effects = result.effects()
    total = effects.query("effect == 'total' and to == 'Loyalty'").set_index("from")["mean"]
    approx = table["weight"].to_numpy() * total["Quality"] * k_loyalty.mean()
    np.testing.assert_allclose(imp[:, 0].mean(axis=0), approx, rtol=0.05)
    # standardized: the indicator's total effect is its standardized weight times the
    # composite's standardized total effect
    std = result.effects(standardized=True)
    std_total = std.query("effect == 'total' and to == 'Loyalty'").set_index("from")["mean"]
    np.testing.assert_allclose(
        std_total[["q1", "q2", "q3"]].to_numpy(),
        table["weight_std"].to_numpy() * std_total["Quality"],
        rtol=0.05,
    )
    # and the truth: Loyalty points per q_j point = b * w_j * mean(loadings)
    truth = B_QUALITY * WEIGHTS * LAMBDA.mean()
    np.testing.assert_allclose(imp[:, 0].mean(axis=0), truth, rtol=0.2)
    table = driver_priorities(model, data, level="item").set_index("driver")
    np.testing.assert_allclose(table.loc[["q1", "q2", "q3"], "importance"], imp[:, 0].mean(axis=0))
    assert table.loc["q1", "weight"] > table.loc["q3", "weight"] > table.loc["q2", "weight"]


def test_composite_performance_is_its_weighted_indicators(composite):
    _, data, model = composite
    _, w = model.member_weights("Quality")
    np.testing.assert_allclose(np.abs(w).sum(axis=-1), 1.0)
    frame = data.frame
    expected = (frame[["q1", "q2", "q3"]].to_numpy() @ w.mean(axis=(0, 1))).mean()
    table = driver_priorities(model, data).set_index("driver")
    assert table.loc["Quality", "performance"] == pytest.approx(expected, abs=1.5)


def test_an_indicator_shift_moves_the_composite_by_its_weight(composite):
    result, data, model = composite
    base = {"top2_box": 0.3}
    one = what_if(model, {"q2": 1.0}, target="Loyalty", baseline=base)
    B, inv = draws_of(result, "B"), draws_of(result, "inv")
    lat = result.structure.latents
    f, t, q2 = lat.index("Quality"), lat.index("Loyalty"), lat.index("q2")
    k = model.score_factor()[:, 0, t]
    np.testing.assert_allclose(one.draws["target_score"], B[:, f, q2] * inv[:, t, f] * k)
    # with the data: the indicator's current mean is its baseline, and its scale bounds the shift
    now = data.frame["q2"].mean()
    assert what_if(model, {"q2": 1.0}, data=data).shifts == {"q2": 1.0}
    with pytest.raises(DriverError, match="leaves its scale"):
        what_if(model, {"q2": 101 - now}, data=data)
    # a shift of the composite by 5 score points is 5 x its importance
    five = what_if(model, {"Quality": 5.0}, target="Loyalty", baseline=base)
    _, imp = model.importance("Loyalty")
    np.testing.assert_allclose(five.draws["target_score"], 5 * imp[:, 0, 0])


def test_composite_driver_model_round_trips(composite, tmp_path):
    _, data, model = composite
    back = DriverModel.load(model.save(tmp_path / "dm.npz"))
    assert back.composites == model.composites
    pd.testing.assert_frame_equal(driver_priorities(back, data), driver_priorities(model, data))


# ----------------------------------------------------------------------------- observed
def test_an_observed_covariate_is_a_driver_on_its_own_scale(covariate):
    result, data, model = covariate
    assert model.scales["tenure"] == (0, 20)
    assert set(model.drivers_of("Loyalty")) == {"Experience", "tenure"}
    _, imp = model.importance("Loyalty")
    lat = result.structure.latents
    t, ten = lat.index("Loyalty"), lat.index("tenure")
    inv = draws_of(result, "inv")
    k = model.score_factor()[:, 0]
    # one point of tenure's 0-100 score is 0.2 years
    np.testing.assert_allclose(k[:, ten], 100 / 20)
    np.testing.assert_allclose(imp[:, 0, 1], inv[:, t, ten] * k[:, t] * 20 / 100)
    assert imp[:, 0, 1].mean() == pytest.approx(1.0 * LAMBDA.mean() * 0.2, rel=0.2)
    # +10 score points of tenure = +2 years
    res = what_if(model, {"tenure": 10}, target="Loyalty", data=data)
    change = res.table.set_index("outcome").loc["target_score", "change"]
    assert change == pytest.approx(2 * 1.0 * LAMBDA.mean(), rel=0.2)
    table = driver_priorities(model, data).set_index("driver")
    tenure = data.frame["tenure"].to_numpy(dtype=float)
    assert table.loc["tenure", "performance"] == pytest.approx(np.mean(tenure) * 5, abs=1.0)


def test_an_observed_variable_missing_from_the_study_takes_its_scale_from_the_data(covariate):
    result, data, _ = covariate
    spec = data.study.to_dict()
    spec.pop("items")
    spec["model"] = "Loyalty ~ Experience\n"
    study = study_from_dict(spec)
    with pytest.warns(UserWarning, match=r"no answer scale in the study for tenure \(0-20\)"):
        model = DriverModel.from_sem(result, study, allow_unconverged=True)
    tenure = data.frame["tenure"]
    assert model.scales["tenure"] == (tenure.min(), tenure.max())


# ----------------------------------------------------------------------------- second order
def test_a_second_order_construct_is_scored_from_its_first_order_constructs(second_order):
    result, data, model = second_order
    assert model.higher_order == {"CX": ["Store", "Phone", "Web"]}
    assert model.drivers_of("Loyalty") == ["CX"]
    lat = result.structure.latents
    inv = draws_of(result, "inv")
    k = model.score_factor()[:, 0]
    cx, t = lat.index("CX"), lat.index("Loyalty")
    first = [lat.index(x) for x in ("Store", "Phone", "Web")]
    np.testing.assert_allclose(k[:, cx], (inv[:, first, cx] * k[:, first]).mean(axis=1))
    _, imp = model.importance("Loyalty")
    np.testing.assert_allclose(imp[:, 0, 0], inv[:, t, cx] * k[:, t] / k[:, cx])
    # the truth: b / (mean second-order loading x mean first-order item loading) x mean(LAMBDA)
    truth = B_CX * LAMBDA.mean() / (SECOND_ORDER.mean() * LAMBDA.mean())
    assert imp[:, 0, 0].mean() == pytest.approx(truth, rel=0.2)
    constructs = driver_priorities(model, data, target="Loyalty").set_index("driver")
    scores = [data.frame[[f"{p}{i}" for i in (1, 2, 3)]].to_numpy().mean() for p in "spw"]
    assert constructs.loc["CX", "performance"] == pytest.approx(np.mean(scores), abs=1.0)
    items = driver_priorities(model, data, target="Loyalty", level="item").set_index("driver")
    assert len(items) == 9 and set(items["construct"]) == {"CX"}
    assert items["importance"].sum() == pytest.approx(constructs.loc["CX", "importance"])
    assert items["weight"].sum() == pytest.approx(1.0)
    # shifting an item of a first-order construct moves CX by the item's weight in it
    res = what_if(model, {"s1": 10}, target="Loyalty", baseline={"top2_box": 0.3})
    w = items.loc["s1", "weight"]
    assert res.draws["target_score"].mean() == pytest.approx(10 * w * imp[:, 0, 0].mean(), rel=0.05)


# ----------------------------------------------------------------------------- interactions
B_X, B_Z, GAMMA = 0.4, 0.3, -0.2  # Y = b_X X + b_Z Z + gamma X Z


def moderated_model(n_draws: int = 50) -> DriverModel:
    """X, Z -> Y with a product term; one item per construct on 0-100, loading 1.

    Score points equal latent units, so a what-if answers in the closed form.
    """
    latents = ["X", "Z", "Y"]
    B = np.zeros((n_draws, 1, 3, 3))
    B[..., 2, 0], B[..., 2, 1] = B_X, B_Z
    order = ["x1", "z1", "y1"]
    loadings = np.zeros((n_draws, 1, 3, 3))
    for k in range(3):
        loadings[..., k, k] = 1.0
    return DriverModel(
        latents=latents,
        items={"X": ["x1"], "Z": ["z1"], "Y": ["y1"]},
        scales={i: (0, 100) for i in order},
        total=np.linalg.inv(np.eye(3) - B),
        loadings=loadings,
        item_sd=np.full((n_draws, 1, 3), 10.0),
        item_order=order,
        interactions=[("Y", "X", "Z")],
        gamma=np.full((n_draws, 1, 1), GAMMA),
    )


def test_a_what_if_on_a_moderator_changes_the_slope_it_moderates(tmp_path):
    model = moderated_model()
    base = {"top2_box": 0.3}

    def change(shifts, **kw):
        return what_if(model, shifts, target="Y", baseline=base, **kw).draws["target_score"]

    np.testing.assert_allclose(change({"X": 5}), 5 * B_X)  # at the mean of Z
    np.testing.assert_allclose(change({"Z": 5}), 5 * B_Z)  # at the mean of X
    np.testing.assert_allclose(change({"X": 5, "Z": 10}), 5 * B_X + 10 * B_Z + GAMMA * 50)
    # customers 10 points above the mean of Z: X's slope is b_X + gamma * 10
    np.testing.assert_allclose(change({"X": 5}, at={"Z": 10}), 5 * (B_X + GAMMA * 10))
    np.testing.assert_allclose(change({"Z": 5}, at={"X": -10}), 5 * (B_Z - GAMMA * 10))
    back = DriverModel.load(model.save(tmp_path / "moderated.npz"))
    assert back.interactions == [("Y", "X", "Z")]
    np.testing.assert_allclose(back.gamma, model.gamma)


def test_a_moderated_mediator_carries_the_product_downstream():
    # X -> M (moderated by Z) -> Y: d Y = c * (a dX + gamma dX dZ)
    latents = ["X", "Z", "M", "Y"]
    n = 10
    B = np.zeros((n, 1, 4, 4))
    B[..., 2, 0], B[..., 2, 1], B[..., 3, 2] = 0.5, 0.2, 0.6
    loadings = np.zeros((n, 1, 4, 4))
    for k in range(4):
        loadings[..., k, k] = 1.0
    model = DriverModel(
        latents=latents,
        items={lat: [lat.lower()] for lat in latents},
        scales={lat.lower(): (0, 100) for lat in latents},
        total=np.linalg.inv(np.eye(4) - B),
        loadings=loadings,
        item_sd=np.ones((n, 1, 4)),
        item_order=[lat.lower() for lat in latents],
        interactions=[("M", "X", "Z")],
        gamma=np.full((n, 1, 1), 0.1),
    )
    res = what_if(model, {"X": 2, "Z": 3}, target="Y", baseline={"top2_box": 0.3})
    np.testing.assert_allclose(res.draws["target_score"], 0.6 * (0.5 * 2 + 0.2 * 3 + 0.1 * 6))


def test_bad_kinds_are_clear_errors():
    model = moderated_model(n_draws=5)
    with pytest.raises(DriverError, match="gamma"):
        DriverModel(**{**model.__dict__, "gamma": np.zeros((5, 1, 2))})
    with pytest.raises(DriverError, match="'W' is not a construct"):
        DriverModel(**{**model.__dict__, "interactions": [("Y", "X", "W")]})
    with pytest.raises(DriverError, match="neither a composite nor a higher-order"):
        model.member_weights("X")


def test_a_composite_of_constructs_weighs_them_by_weight_per_score_point(tmp_path):
    # Experience <~ Store + Web (weights 1, 0.5), Loyalty ~ 0.4 Experience. Web's items
    # load 2 on 0-100 scales, so a Web score point is half a latent unit: k = 1 and 2.
    latents = ["Store", "Web", "Experience", "Loyalty"]
    n = 4
    B = np.zeros((n, 1, 4, 4))
    B[..., 2, 0], B[..., 2, 1], B[..., 3, 2] = 1.0, 0.5, 0.4
    order = ["s1", "s2", "w1", "w2", "l1"]
    owner = {"s1": 0, "s2": 0, "w1": 1, "w2": 1, "l1": 3}
    loadings = np.zeros((n, 1, 5, 4))
    for i, item in enumerate(order):
        loadings[..., i, owner[item]] = 2.0 if item.startswith("w") else 1.0
    model = DriverModel(
        latents=latents,
        items={"Store": ["s1", "s2"], "Web": ["w1", "w2"], "Experience": [], "Loyalty": ["l1"]},
        scales={i: (0, 100) for i in order},
        total=np.linalg.inv(np.eye(4) - B),
        loadings=loadings,
        item_sd=np.ones((n, 1, 5)),
        item_order=order,
        composites={"Experience": ["Store", "Web"]},
    )
    k = model.score_factor()[0, 0]
    assert k[2] == pytest.approx(1 / (1 / 1 + 0.5 / 2))  # 0.8
    members, w = model.member_weights("Experience")
    np.testing.assert_allclose(w[0, 0], [0.8, 0.2])
    names, imp = model.importance("Loyalty")
    assert names == ["Store", "Web", "Experience"]
    np.testing.assert_allclose(imp[0, 0], [0.4, 0.1, 0.5])
    # a member's importance is its weight in the composite's score times the composite's
    np.testing.assert_allclose(imp[0, 0, :2], w[0, 0] * imp[0, 0, 2])
    base = {"top2_box": 0.3}
    res = what_if(model, {"Experience": 5}, target="Loyalty", baseline=base)
    np.testing.assert_allclose(res.draws["target_score"], 2.5)
    items, _ = model.importance("Loyalty", level="item")
    assert items == ["s1", "s2", "w1", "w2"]  # the composite has no items of its own
    # reflective models keep the first file format; these kinds write the second
    assert json_format(model.save(tmp_path / "kinds.npz")) == "cxlib.DriverModel/2"
    plain = DriverModel(**{**model.__dict__, "composites": {}})
    assert json_format(plain.save(tmp_path / "plain.npz")) == "cxlib.DriverModel/1"


def json_format(path) -> str:
    import json

    with np.load(path) as f:
        return json.loads(str(f["meta"]))["format"]


@pytest.mark.slow
def test_a_fitted_interaction_model_what_if_follows_its_posterior(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(N)
    z = 0.3 * x + np.sqrt(0.91) * rng.standard_normal(N)
    y = 0.4 * x + 0.3 * z - 0.25 * x * z + 0.6 * rng.standard_normal(N)
    frame = pd.DataFrame(
        answers(10 * x, LAMBDA, rng, prefix="x")
        | answers(10 * z, LAMBDA, rng, prefix="z")
        | answers(10 * y, LAMBDA, rng, prefix="y")
    )
    spec = {
        "name": "moderated",
        "columns": {"respondent_id": "id"},
        "constructs": {c: {"items": items(c.lower())} for c in ("X", "Z", "Y")},
        "model": "Y ~ X + Z + X:Z\n",
    }
    data = load(tmp_path, spec, frame)
    result = fit(data.study, data)
    model = DriverModel.from_sem(result, data.study, allow_unconverged=True)
    assert model.interactions == [("Y", "X", "Z")]
    gamma = np.asarray(result.idata.posterior["Gamma"].values).reshape(-1)
    # raw units: y = 10 (... - 0.25 x z) = ... - 0.025 X Z in the items' points
    assert gamma.mean() == pytest.approx(-0.025, abs=0.01)
    B = draws_of(result, "B")
    k = model.score_factor()[:, 0]
    x, z, y = (model.latents.index(v) for v in ("X", "Z", "Y"))
    dx, dz = 5 / k[:, x], 5 / k[:, z]  # 5 score points each, in latent units
    both = what_if(model, {"X": 5, "Z": 5}, baseline={"top2_box": 0.3}).draws["target_score"]
    expected = k[:, y] * (B[:, y, x] * dx + B[:, y, z] * dz + gamma * dx * dz)
    np.testing.assert_allclose(both, expected, rtol=1e-8)
    high = what_if(model, {"X": 5}, at={"Z": 10}, baseline={"top2_box": 0.3})
    slope = B[:, y, x] + gamma * 10 / k[:, z]
    np.testing.assert_allclose(high.draws["target_score"], k[:, y] * slope * dx, rtol=1e-8)
