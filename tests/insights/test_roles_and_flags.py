"""Insights on studies unlike the sample: roles instead of names, model flags, IPMA item weights.

The studies here have other construct names (a target called ``Retention``), no
segments, no waves and no NPS item. One tiny SEM fit (40 draws, one chain: it does not
converge, on purpose) feeds the checks of :meth:`DriverModel.from_sem`.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from cxlib.config import EVERYONE
from cxlib.data import load_responses
from cxlib.errors import DriverError
from cxlib.insights import (
    DriverModel,
    driver_priorities,
    estimate_kpis,
    headline_kpi,
    sem_flags,
    what_if,
    what_if_baseline,
    what_if_examples,
)
from cxlib.plots import kpi_trend, labeller, priority_map, segment_comparison, what_if_bars
from cxlib.simulate import default_truth, simulate_responses, write_responses
from cxlib.study import study_from_dict

LABELS = {"Service": "Service quality", "Trust": "Trust in the brand", "Retention": "Staying"}


def retail_spec(**changes) -> dict:
    """Three constructs on 1-7 scales, no segments, no waves, no NPS; Retention is explained."""
    spec = {
        "name": "retail",
        "columns": {"respondent_id": "id"},
        "constructs": {
            name: {
                "label": LABELS[name],
                "items": {
                    f"{name[0]}{k}": {"text": f"{name} {k}", "scale": [1, 7]} for k in (1, 2, 3)
                },
            }
            for name in ("Service", "Trust", "Retention")
        },
        "items": {"SAT": {"text": "overall satisfied", "scale": [1, 5]}},
        "model": "Trust ~ Service\nRetention ~ Trust + Service\n",
        "kpis": {"loyalty": "Retention", "satisfaction": "SAT"},
    }
    spec.update(changes)
    return spec


def load(tmp_path, spec: dict, n: int = 300, seed: int = 5):
    study = study_from_dict(spec)
    frame = simulate_responses(study, default_truth(study, loading=0.8, path=0.4), n=n, seed=seed)
    path = write_responses(frame, tmp_path / f"{spec['name']}-{seed}.csv")
    return load_responses(study, path)


@pytest.fixture(scope="module")
def retail(tmp_path_factory):
    return load(tmp_path_factory.mktemp("retail"), retail_spec())


@pytest.fixture(scope="module")
def quick_fit(retail):
    """A tiny fit of the retail study: its diagnostics fail (40 draws, one chain)."""
    from cxlib.models import BayesianSEM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianSEM(retail.study).fit(
            retail, draws=40, tune=40, chains=1, cores=1, random_seed=1
        )


# ----------------------------------------------------------------------------- KPIs
@pytest.mark.parametrize(
    ("kpis", "expected", "headline"),
    [
        ({"loyalty": "Retention", "satisfaction": "SAT"}, {"satisfaction_mean", "loyalty_index"},
         "satisfaction_mean"),
        ({"loyalty": "Retention"}, {"loyalty_index"}, "loyalty_index"),
        ({"satisfaction": "SAT"}, {"satisfaction_mean", "satisfaction_top_box"}, "satisfaction_mean"),
    ],
)  # fmt: skip
def test_kpis_without_nps_segments_or_waves(tmp_path, kpis, expected, headline):
    data = load(tmp_path, retail_spec(kpis=kpis), n=120)
    est = estimate_kpis(data, n_draws=200)
    assert est.segments == [EVERYONE] and est.waves == [EVERYONE]
    assert expected <= set(est.table["kpi"]) and "nps" not in set(est.table["kpi"])
    assert headline_kpi(est.table) == headline == est.headline
    chart = kpi_trend(est.table)  # no KPI named: the headline one, and the title says which
    assert set(chart.data["kpi"]) == {headline}
    assert chart.to_dict()["title"] == f"{est.labels[headline]} by wave"
    assert set(segment_comparison(est.table).data["kpi"]) == {headline}
    if "loyalty_index" in expected:
        row = est.table.query("kpi == 'loyalty_index'").iloc[0]
        assert row["label"] == "Staying index (0-100)"  # the spec's label of Retention
        assert 0 < row["mean"] < 100 and row["n"] == 120


def test_kpis_with_nps_only_and_none_at_all(tmp_path):
    spec = retail_spec(kpis={"nps": "REC"})
    spec["items"] = {"REC": {"text": "recommend", "scale": [0, 10]}}
    est = estimate_kpis(load(tmp_path, spec, n=100), n_draws=200)
    assert set(est.table["kpi"]) == {"nps", "promoters", "passives", "detractors"}
    assert headline_kpi(est) == "nps"
    with pytest.raises(Exception, match="declares no KPIs; to add it, name at least one KPI"):
        estimate_kpis(load(tmp_path, retail_spec(kpis={}), n=50))


# ----------------------------------------------------------------------------- flags
def test_from_sem_refuses_an_unconverged_result(retail, quick_fit):
    assert not quick_fit.ok
    with pytest.raises(DriverError) as err:
        DriverModel.from_sem(quick_fit, retail.study)
    message = str(err.value)
    assert "'retail'" in message and "did not converge" in message and "bulk ESS" in message
    assert "allow_unconverged=True" in message


def test_an_allowed_unconverged_model_flags_every_table(retail, quick_fit, tmp_path):
    model = DriverModel.from_sem(quick_fit, retail.study, allow_unconverged=True)
    flags = sem_flags(quick_fit)  # improper: [] until (unless) the SEM reports a problem
    assert model.flags == flags and flags["converged"] is False and not model.trustworthy
    assert model.target == "Retention"  # the study's target: the model's final outcome
    w = model.item_weight()  # from the fit's loadings and implied item SDs, per draw
    for items in model.items.values():
        idx = [model.item_order.index(i) for i in items]
        np.testing.assert_allclose(w[..., idx].sum(axis=-1), 1.0)
        per_item = w[..., idx].mean(axis=(0, 1))  # three loadings of 0.8 in truth: ~1/3
        assert ((per_item > 0.25) & (per_item < 0.42)).all(), per_item
    back = DriverModel.load(model.save(tmp_path / "drivers.npz"))
    assert back.flags == model.flags and back.target == "Retention"
    pri = driver_priorities(back, retail)  # no target named: the study's
    assert set(pri["target"]) == {"Retention"} and set(pri["driver"]) == {"Service", "Trust"}
    assert (~pri["model_converged"]).all()
    assert (pri["model_improper"] == "; ".join(flags["improper"])).all()
    examples = what_if_examples(back, retail)
    assert set(examples["segment"]) == {EVERYONE} and (~examples["model_converged"]).all()
    assert set(examples["label"]) >= {"Staying score (0-100)"}  # no NPS: no NPS row
    assert "nps" not in set(examples["outcome"])
    base = what_if_baseline(back, retail)
    assert base["target"] == "Retention" and base["target_label"] == "Staying"
    assert base["flags"] == flags
    json.dumps(base)
    res = what_if(back, {"Service": 5}, data=retail)
    assert res.target == "Retention" and res.flags["converged"] is False
    chart = priority_map(pri, labels=retail.study).to_dict()
    assert chart["title"]["text"] == f"Driver priorities for Staying — {EVERYONE}, {EVERYONE}"
    assert "did not converge" in chart["title"]["subtitle"][0]
    assert (
        "did not converge"
        in what_if_bars(res.table.assign(model_converged=False)).to_dict()["title"]["subtitle"][0]
    )


class _Improper:
    """The SEM room's ``result.improper`` contract (ok, messages(), to_dict())."""

    ok = False

    def messages(self):
        return ["standardized Retention ~ Trust is 1.42, beyond 1 (Trust, Retention)"]

    def to_dict(self):
        return {"ok": False, "problems": [{"message": self.messages()[0]}]}


def test_an_improper_result_is_refused_and_flagged(retail, quick_fit, monkeypatch):
    monkeypatch.setattr(
        type(quick_fit), "improper", property(lambda self: _Improper()), raising=False
    )
    with pytest.raises(DriverError, match=r"is improper \(standardized Retention ~ Trust is 1.42"):
        DriverModel.from_sem(quick_fit, retail.study)
    model = DriverModel.from_sem(quick_fit, retail.study, allow_unconverged=True)
    assert model.flags["improper"] == _Improper().messages()
    pri = driver_priorities(model, retail)
    assert (pri["model_improper"] == _Improper().messages()[0]).all()


def test_old_files_without_flags_load_as_converged(tmp_path):
    model = ipma_model()
    path = model.save(tmp_path / "new.npz")
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        arrays = {k: f[k] for k in ("total", "loadings", "item_sd")}
    for key in ("flags", "target"):
        meta.pop(key)
    np.savez_compressed(tmp_path / "old.npz", **arrays, meta=json.dumps(meta))
    old = DriverModel.load(tmp_path / "old.npz")
    assert old.flags == {"converged": True, "improper": []} and old.target is None
    assert old.resolve_target() == "Retention"  # the one final outcome
    assert DriverModel.flag_columns(old) == {"model_converged": True, "model_improper": ""}


def two_outcome_model() -> DriverModel:
    """Service -> Trust and Service -> Retention: two final outcomes, one item each."""
    latents = ["Service", "Trust", "Retention"]
    total = np.broadcast_to(np.eye(3), (10, 1, 3, 3)).copy()
    total[..., 1, 0] = total[..., 2, 0] = 0.5
    return DriverModel(
        latents=latents,
        items={lat: [f"{lat[0]}1"] for lat in latents},
        scales={f"{lat[0]}1": (1, 7) for lat in latents},
        total=total,
        loadings=np.broadcast_to(np.eye(3), (10, 1, 3, 3)).copy(),
        item_sd=np.ones((10, 1, 3)),
        item_order=["S1", "T1", "R1"],
    )


def test_no_target_is_a_clear_error(tmp_path):
    model = two_outcome_model()  # and a study without a structural model
    assert model.final_outcomes() == ["Trust", "Retention"]
    data = load(tmp_path, retail_spec(model="", kpis={"satisfaction": "SAT"}), n=40)
    assert data.study.target is None
    with pytest.raises(DriverError, match="no target for driver analyses: study 'retail' declares "
                       "no target construct.*roles: \\{target: CONSTRUCT\\}"):  # fmt: skip
        driver_priorities(model, data)
    with pytest.raises(DriverError, match="no single final outcome; or pass target="):
        what_if(model, {"Service": 1}, baseline={"top2_box": 0.3})
    assert set(driver_priorities(model, data, target="Trust")["driver"]) == {"Service"}
    with pytest.raises(DriverError, match="'Loyalty' is not a construct of the model"):
        what_if(model, {"Service": 1}, target="Loyalty", baseline={"top2_box": 0.3})


def test_roles_target_is_used(tmp_path):
    spec = retail_spec(roles={"target": "Trust"})
    data = load(tmp_path, spec, n=60)
    pri = driver_priorities(two_outcome_model(), data)
    assert set(pri["target"]) == {"Trust"} and set(pri["driver"]) == {"Service"}


# ----------------------------------------------------------------------------- IPMA item weights
SERVICE = ["S1", "S2", "S3", "S4"]  # loadings 0.9, 0.8, 0.5, 0.4
LOADINGS = {"S1": 0.9, "S2": 0.8, "S3": 0.5, "S4": 0.4}
PRICE = ["P1", "P2", "P3"]


def ipma_model(n_draws=200) -> DriverModel:
    """Service (4 items), Trust (1) and Price (3) drive Retention; Service matters most.

    Total effects on Retention: Service 0.5, Trust 0.3, Price 0.1. Every item has SD 1,
    so the rescaled weights are the loadings over their sum.
    """
    latents = ["Service", "Trust", "Price", "Retention"]
    items = {"Service": SERVICE, "Trust": ["T1"], "Price": PRICE, "Retention": ["R1", "R2"]}
    order = [i for lat in latents for i in items[lat]]
    B = np.zeros((n_draws, 1, 4, 4))
    B[..., 3, 0], B[..., 3, 1], B[..., 3, 2] = 0.5, 0.3, 0.1
    total = np.linalg.inv(np.eye(4) - B)
    loadings = np.zeros((n_draws, 1, len(order), 4))
    for k, lat in enumerate(latents):
        for item in items[lat]:
            loadings[..., order.index(item), k] = LOADINGS.get(item, 1.0)
    return DriverModel(
        latents=latents,
        items=items,
        scales={i: (1, 7) for i in order},
        total=total,
        loadings=loadings,
        item_sd=np.ones((n_draws, 1, len(order))),
        item_order=order,
    )


def ipma_data(tmp_path):
    spec = {
        "name": "ipma",
        "columns": {"respondent_id": "id"},
        "constructs": {
            "Service": {"items": {i: {"text": i, "scale": [1, 7]} for i in SERVICE}},
            "Trust": {"items": {"T1": {"text": "t", "scale": [1, 7]}}},
            "Price": {"items": {i: {"text": i, "scale": [1, 7]} for i in PRICE}},
            "Retention": {"items": {i: {"text": i, "scale": [1, 7]} for i in ("R1", "R2")}},
        },
        "model": "Retention ~ Service + Trust + Price\n",
    }
    study = study_from_dict(spec)
    rng = np.random.default_rng(4)
    frame = {"id": [f"r{i}" for i in range(300)]}
    for item in SERVICE:
        frame[item] = rng.integers(1, 4, 300)  # Service performs badly (1-3)
    for item in ("T1", *PRICE, "R1", "R2"):
        frame[item] = rng.integers(4, 8, 300)  # the others perform well (4-7)
    import pandas as pd

    path = tmp_path / "ipma.csv"
    pd.DataFrame(frame).to_csv(path, index=False)
    return load_responses(study, path)


def test_item_weights_are_rescaled_standardized_loadings():
    model = ipma_model()
    w = model.item_weight()[0, 0]
    order = model.item_order
    service = np.array([w[order.index(i)] for i in SERVICE])
    np.testing.assert_allclose(service, np.array(list(LOADINGS.values())) / 2.6)
    assert service.sum() == pytest.approx(1.0) and w[order.index("T1")] == pytest.approx(1.0)
    # the latent's SD cancels: doubling an item's SD halves its standardized loading
    model.item_sd[..., order.index("S1")] = 2.0
    w2 = model.item_weight()[0, 0]
    assert w2[order.index("S1")] == pytest.approx(0.45 / (0.45 + 1.7))


def test_item_importance_follows_the_weights_and_sums_to_the_construct(tmp_path):
    model, data = ipma_model(), ipma_data(tmp_path)
    constructs = driver_priorities(model, data).set_index("driver")
    items = driver_priorities(model, data, level="item").set_index("driver")
    assert constructs.loc["Service", "quadrant"] == "fix first"
    assert items.loc[SERVICE, "importance"].sum() == pytest.approx(
        constructs.loc["Service", "importance"]
    )
    assert items.loc["S1", "importance"] > items.loc["S3", "importance"]  # loading 0.9 vs 0.5
    assert items.loc["S1", "weight"] == pytest.approx(0.9 / 2.6)
    assert items.loc["T1", "importance"] == pytest.approx(constructs.loc["Trust", "importance"])
    # consistent with the construct level: the strong Service items are "fix first" too.
    # Item importances 0.173, 0.154, 0.096, 0.077 (Service), 0.3 (Trust), 0.033 x 3
    # (Price): the median 0.087 splits Service's items; an equal split (0.125 each, the
    # median) would have left all four "low priority".
    assert set(items.loc[["S1", "S2", "S3"], "quadrant"]) == {"fix first"}
    assert items.loc["S4", "quadrant"] == "low priority"
    assert not (items.loc[SERVICE, "quadrant"] == "low priority").all()


def test_an_item_shift_moves_the_target_by_its_importance():
    model = ipma_model()
    k = model.score_factor()[0, 0]
    base = {"top2_box": 0.3}
    res = what_if(model, {"S1": 1.0}, baseline=base)
    _, imp = model.importance(level="item")
    per_point = imp[0, 0, 0]  # S1: target points per 0-100 point of the item
    np.testing.assert_allclose(res.draws["target_score"], per_point * 100 / 6)
    assert k[2] > 0


def test_composite_weights_are_used_when_given():
    model = ipma_model(n_draws=20)
    weights = np.ones(model.item_sd.shape)
    weights[..., model.item_order.index("S4")] = 3.0
    model.item_weights = weights
    w = model.item_weight()[0, 0]
    assert w[model.item_order.index("S4")] == pytest.approx(0.5)
    with pytest.raises(DriverError, match="item_weights"):
        DriverModel(**{**model.__dict__, "item_weights": np.ones((20, 1, 2))})


def test_labeller():
    assert labeller({"Retention": "Staying"})("Retention") == "Staying"
    assert labeller()("Retention") == "Retention"
