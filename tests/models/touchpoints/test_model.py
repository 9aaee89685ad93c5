"""The touchpoint model: journey map, data statistics, recovery of known effects, save/load."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from cxlib import config
from cxlib.errors import ModelSpecificationError
from cxlib.insights.journey import touchpoint_gains
from cxlib.models.touchpoints import (
    TouchpointModel,
    TouchpointResult,
    default_touchpoint_truth,
    simulate_touchpoints,
)
from cxlib.models.touchpoints.data import journey_map, prepare_touchpoint_data
from cxlib.study import study_from_dict


def _recovery_study():
    """The sample study's nine touchpoints, with 0-100 outcome and target items."""
    raw = yaml.safe_load(config.SAMPLE_STUDY.read_text())
    experience = raw["constructs"]["Experience"]
    for item in experience["items"].values():
        item["scale"] = "rating7"
    spec = {
        "name": "touchpoint-recovery",
        "columns": {"respondent_id": "respondent_id"},
        "scales": {"rating7": {"min": 1, "max": 7}, "slider": {"min": 0, "max": 100}},
        "constructs": {
            "Experience": experience,
            "Overall": {"items": {"OVERALL": {"text": "Overall experience", "scale": "slider"}}},
            "Loyalty": {"items": {"STAY": {"text": "Likelihood to stay", "scale": "slider"}}},
        },
    }
    return study_from_dict(spec)


def test_journey_map_of_the_sample_study(study):
    journey = journey_map(study)
    assert len(journey) == 9
    assert set(journey["channel"]) == {"face_to_face", "personal_distant", "electronic"}
    assert set(journey["stage"]) == {"before", "during", "after"}
    assert journey.groupby(["stage", "channel"]).size().eq(1).all()


def test_touchpoint_without_stage_is_refused(study):
    raw = study.to_dict()
    raw["constructs"]["Experience"]["items"]["CX_APP_ORDER"]["tags"].pop("stage")
    broken = study_from_dict(raw)
    with pytest.raises(ModelSpecificationError, match="CX_APP_ORDER.*no stage tag"):
        journey_map(broken)
    with pytest.raises(ModelSpecificationError, match="outcome 'Satisfactionn'"):
        TouchpointModel(study, outcome="Satisfactionn")


def test_prepared_statistics(study, export):
    d = prepare_touchpoint_data(export, study, "Satisfaction", "Loyalty", weights=False)
    frame = export.astype({c: float for c in export.columns if c.startswith(("CX_", "SAT_"))})
    x = 100 * (frame["CX_PHONE_SUPPORT"] - 1) / 6
    t = d.touchpoints.index("phone_support")
    assert d.performance_mean[t] == pytest.approx(x.mean())
    assert d.performance_se[t] == pytest.approx(x.std(ddof=1) / np.sqrt(x.notna().sum()))
    assert d.n_answered[t] == x.notna().sum()
    # the sufficient statistics are X'WX of [1, centred performance (0 if not used), not used]
    sat = frame[study.constructs["Satisfaction"].item_names].astype(float)
    y = (100 * (sat - 1) / 4).mean(axis=1)
    ok = y.notna().to_numpy()
    cols = [np.ones(len(frame))]
    for k, item in enumerate(d.items):
        p = 100 * (frame[item].to_numpy(float) - 1) / 6
        cols.append(np.where(np.isnan(p), 0.0, p - d.performance_mean[k]))
    cols += [frame[d.items[d.touchpoints.index(tp)]].isna().to_numpy(float) for tp in d.not_used]
    X = np.column_stack(cols)[ok]
    expected = X.T @ X
    # entries such as sum(centred performance) are zero up to rounding (~1e-12, set by the
    # summation order); a purely relative tolerance fails on those. atol: 1e-12 of the
    # largest entry (~2e5, so ~2e-7) - far below the smallest true non-zero entry (1)
    np.testing.assert_allclose(d.xtwx, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(d.xtwy, X.T @ (y[ok] - y[ok].mean()), rtol=1e-8, atol=1e-6)
    assert d.n_outcome == ok.sum()
    assert set(d.not_used) <= set(d.touchpoints)


def test_learned_spreads_by_default_fixed_on_request(study, export):
    from cxlib.models.touchpoints import FIXED_SPREADS

    learned = TouchpointModel(study)
    assert learned.learns_spreads
    assert learned.model_config["touchpoint_sd"] == {"dist": "HalfNormal", "sigma": 0.1}
    assert learned.sampler_config["init"] == "jitter+adapt_full"
    model = learned.build_model(export)
    names = {v.name for v in model.free_RVs}
    assert {"channel_sd", "stage_sd", "touchpoint_sd", "outcome_coef_w"} <= names
    assert "outcome_coef_z" not in names  # the coefficients are integrated out
    assert {"effect_on_outcome", "channel_effect", "stage_effect", "effect_mean"} <= {
        v.name for v in model.deterministics
    }
    fixed = TouchpointModel(study, model_config=FIXED_SPREADS)
    assert not fixed.learns_spreads
    assert "init" not in fixed.sampler_config
    fixed_names = {v.name for v in fixed.build_model(export).free_RVs}
    assert "outcome_coef_z" in fixed_names and "touchpoint_sd" not in fixed_names
    with pytest.raises(ModelSpecificationError, match="need a Normal prior.*FIXED_SPREADS"):
        TouchpointModel(
            study, model_config={"effect_mean": {"dist": "StudentT", "nu": 3, "sigma": 0.5}}
        ).build_model(export)


def test_collapsed_likelihood_is_the_gaussian_integral(study, export):
    """Learned spreads integrate the coefficients out: check that integral in closed form.

    At given SDs and spreads, the model's ``outcome_loglik`` must be log p(data | sigma,
    spreads), here computed directly: the coefficients' Gaussian prior (channel, stage
    and touchpoint structure in its covariance), the likelihood from the sufficient
    statistics, and log p(y) = log p(y | b) + log p(b) - log p(b | y) at the posterior mean b.
    """
    from scipy import stats as st

    model = TouchpointModel(study)
    pm_model = model.build_model(export)
    d = model.data
    point = pm_model.initial_point()
    rng = np.random.default_rng(0)
    point["outcome_coef_w"] = rng.standard_normal(point["outcome_coef_w"].shape)
    for k, v in {
        "channel_sd": 0.03,
        "stage_sd": 0.02,
        "touchpoint_sd": 0.01,
        "sigma": 18.0,
    }.items():
        point[f"{k}_log__"] = np.log(v)
    (potential,) = pm_model.replace_rvs_by_values([pm_model["outcome_loglik"]])
    logp = float(
        pm_model.compile_fn(potential, inputs=pm_model.value_vars, on_unused_input="ignore")(point)
    )
    from cxlib.models.touchpoints.data import CHANNELS, STAGES

    T, nu = len(d.touchpoints), len(d.not_used)
    cfg = model.model_config
    ch = np.eye(3)[[CHANNELS.index(c) for c in d.channels]]
    stg = np.eye(3)[[STAGES.index(s) for s in d.stages]]
    P = np.eye(3) - 1 / 3
    cov_eff = (
        cfg["effect_mean"]["sigma"] ** 2 * np.ones((T, T))
        + 0.03**2 * ch @ P @ ch.T
        + 0.02**2 * stg @ P @ stg.T
        + 0.01**2 * np.eye(T)
    )
    prior_cov = np.zeros((1 + T + nu, 1 + T + nu))
    prior_cov[0, 0] = cfg["intercept"]["sigma"] ** 2
    prior_cov[1 : T + 1, 1 : T + 1] = cov_eff
    prior_cov[T + 1 :, T + 1 :] = cfg["not_used_shift"]["sigma"] ** 2 * np.eye(nu)
    prior_mean = np.zeros(1 + T + nu)
    prior_mean[T + 1 :] = cfg["not_used_shift"]["mu"]
    s2 = 18.0**2
    post_prec = d.xtwx / s2 + np.linalg.inv(prior_cov)
    post_cov = np.linalg.inv(post_prec)
    b = post_cov @ (d.xtwy / s2 + np.linalg.solve(prior_cov, prior_mean))
    loglik = -0.5 * d.sum_w * np.log(2 * np.pi * s2) - (
        d.ytwy - 2 * b @ d.xtwy + b @ d.xtwx @ b
    ) / (2 * s2)
    expected = (
        loglik
        + st.multivariate_normal(prior_mean, prior_cov).logpdf(b)
        - st.multivariate_normal(b, post_cov).logpdf(b)
    )
    assert logp == pytest.approx(expected, rel=1e-8)


@pytest.fixture(scope="module")
def recovery():
    study = _recovery_study()
    truth = default_touchpoint_truth(study)
    frame = simulate_touchpoints(study, truth, n=3000, outcome="Overall", target="Loyalty", seed=3)
    model = TouchpointModel(study, outcome="Overall", target="Loyalty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = model.fit(frame, draws=500, tune=500, random_seed=11)
    return study, truth, frame, result


@pytest.mark.slow
def test_recovers_touchpoint_effects(recovery):
    study, truth, frame, result = recovery
    assert result.diagnostics.divergences == 0
    assert result.diagnostics.max_r_hat <= config.MAX_R_HAT  # 1.01
    # the pooling spreads are learned (the default): true channel and stage effects
    # spread by ~0.02-0.03 around the mean, touchpoints by ~0.01 around their cell
    post = result.idata.posterior
    assert {"channel_sd", "stage_sd", "touchpoint_sd"} <= set(post.data_vars)
    assert float(post["touchpoint_sd"].mean()) < 0.03
    assert 0.005 < float(post["channel_sd"].mean()) < 0.15
    table = result.touchpoint_table()
    true = table["touchpoint"].map(truth.effects)
    inside = (table["effect_on_outcome_hdi_low"] <= true) & (
        true <= table["effect_on_outcome_hdi_high"]
    )
    assert inside.sum() >= 8, table[
        [
            "touchpoint",
            "effect_on_outcome",
            "effect_on_outcome_hdi_low",
            "effect_on_outcome_hdi_high",
        ]
    ].assign(truth=true)
    assert np.corrcoef(table["effect_on_outcome"], true)[0, 1] > 0.9
    g = result.outcome_to_target_draws()
    assert abs(g.mean() - truth.outcome_to_target) < 0.05
    eff = result.effect_draws()
    np.testing.assert_allclose(eff["effect_on_target"], eff["effect_on_outcome"] * g[:, None])
    # performance: the users' mean answer on 0-100
    used = frame["CX_APP_ORDER"].notna()
    perf = table.set_index("touchpoint").loc["app_order"]
    assert perf["performance"] == pytest.approx(
        (100 * (frame.loc[used, "CX_APP_ORDER"] - 1) / 6).mean()
    )
    assert perf["share_used"] == pytest.approx(used.mean())
    matrix = result.journey_matrix()
    assert len(matrix) == 9 and matrix["has_touchpoints"].all()
    cell = matrix[(matrix.stage == "after") & (matrix.channel == "face_to_face")].iloc[0]
    repair = table.set_index("touchpoint").loc["store_repair"]
    assert cell["effect_on_target"] == pytest.approx(repair["effect_on_target"], rel=1e-9)


@pytest.mark.slow
def test_save_load_and_gains_through_a_structural_model(recovery, tmp_path):
    from cxlib.insights.drivers import DriverModel

    study, _, _, result = recovery
    path = result.save(tmp_path / "touchpoints.nc")
    back = TouchpointModel.load(path)
    assert isinstance(back, TouchpointResult)
    pd.testing.assert_frame_equal(back.touchpoint_table(), result.touchpoint_table())
    # a structural model saying Overall -> Loyalty is 0.5 (both 0-100 scores, one item each)
    S = 300
    total = np.tile(np.eye(3), (S, 1, 1, 1))
    total[:, 0, 2, 1] = 0.5  # Loyalty <- Overall
    loadings = np.zeros((S, 1, 2, 3))
    loadings[:, 0, 0, 1] = loadings[:, 0, 1, 2] = 20.0
    sem = DriverModel(
        latents=["Experience", "Overall", "Loyalty"],
        items={"Experience": [], "Overall": ["OVERALL"], "Loyalty": ["STAY"]},
        scales={"OVERALL": (0, 100), "STAY": (0, 100)},
        total=total,
        loadings=loadings,
        item_sd=np.full((S, 1, 2), 20.0),
        item_order=["OVERALL", "STAY"],
    )
    gains = touchpoint_gains(result, sem)
    beta = result.effect_draws()["effect_on_outcome"]
    np.testing.assert_allclose(gains.gain_per_point, beta * 0.5)
    total[:, 0, 2, 1] = 0.0
    total[:, 0, 2, 0] = 0.3  # Loyalty <- Experience only: nothing carries Overall
    with pytest.raises(ModelSpecificationError, match="no path from 'Overall' to 'Loyalty'"):
        touchpoint_gains(result, sem)


@pytest.mark.slow
def test_gains_in_nps_through_a_structural_model(recovery):
    """NPS gains: the touchpoint's effect on the outcome times the SEM's NPS change per outcome point."""
    from types import SimpleNamespace

    from cxlib.insights.drivers import DriverModel, what_if

    _, _, frame, result = recovery
    S = 300
    rng = np.random.default_rng(0)
    total = np.tile(np.eye(3), (S, 1, 1, 1))
    total[:, 0, 2, 1] = 0.5 + 0.05 * rng.standard_normal(S)  # Loyalty <- Overall
    loadings = np.zeros((S, 1, 3, 3))
    loadings[:, 0, 0, 1] = loadings[:, 0, 1, 2] = 20.0
    loadings[:, 0, 2, 2] = 2.0  # NPS (0-10) loads on Loyalty
    sem = DriverModel(
        latents=["Experience", "Overall", "Loyalty"],
        items={"Experience": [], "Overall": ["OVERALL"], "Loyalty": ["STAY", "NPS"]},
        scales={"OVERALL": (0, 100), "STAY": (0, 100), "NPS": (0, 10)},
        total=total,
        loadings=loadings,
        item_sd=np.tile([20.0, 20.0, 2.5], (S, 1, 1)),
        item_order=["OVERALL", "STAY", "NPS"],
    )
    answers = frame.assign(NPS=(frame["STAY"] / 10).round())
    data = SimpleNamespace(
        frame=answers,
        weights=np.ones(len(answers)),
        study=SimpleNamespace(
            kpis=SimpleNamespace(nps="NPS"), segment_columns=[], label_of=lambda name: name
        ),
    )
    gains = touchpoint_gains(result, sem, metric="nps", data=data)
    assert gains.target == "NPS"
    beta = result.effect_draws()["effect_on_outcome"]
    per_point = gains.gain_per_point / beta  # NPS points per outcome point, one value per draw
    np.testing.assert_allclose(per_point, per_point[:, :1] * np.ones_like(per_point), rtol=1e-9)
    expected = what_if(sem, {"Overall": 1.0}, target="Loyalty", data=data).draws["nps"]
    # each draw's NPS points per outcome point is one of what_if's draws (paired at random).
    # Matched to the nearest within rounding: (beta * c) / beta is c only to an ulp or two,
    # and rounding both to 12 decimals splits a value that sits at a rounding boundary.
    # 1e-12 of the scale is far below the spacing of distinct draws (~1e-6 relative)
    nearest = np.abs(per_point[:, :1] - expected[None, :]).min(axis=1)
    assert nearest.max() <= 1e-12 * np.abs(expected).max()
    assert per_point.mean() > 0
    with pytest.raises(ModelSpecificationError, match="need the structural model's draws"):
        touchpoint_gains(result, metric="nps")
