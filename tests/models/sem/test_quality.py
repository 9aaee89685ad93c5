"""Single-item constructs, improper solutions, the reliability table and proportion mediated.

The fits are small (N = 500, 300 draws, 2 chains): they are not expected to pass the
convergence gates, only to locate the posterior well enough for the checks.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from cxlib import config
from cxlib.errors import ConvergenceWarning, ImproperSolutionWarning, ModelSpecificationError
from cxlib.models.sem import BayesianSEM
from cxlib.models.sem.quality import ImproperSolution
from cxlib.study import load_study, study_from_dict
from tests.models.sem.builders import (
    MODEL_CORE,
    MODEL_SINGLE,
    TRUE_NPS_CORR,
    simulate_collinear,
    simulate_single_item,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*")

ITEMS9 = ["CX1", "CX2", "CX3", "IMG1", "IMG2", "IMG3", "LOY1", "LOY2", "LOY3"]


def _fit(model, frame, **kwargs):
    """Fit, recording the warnings (convergence warnings are expected at this size)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit(frame, draws=300, tune=300, chains=2, random_seed=1, **kwargs)
    return result, [w for w in caught if not issubclass(w.category, ConvergenceWarning)]


def _row(table, **where):
    mask = np.ones(len(table), dtype=bool)
    for k, v in where.items():
        mask &= (table[k] == v).to_numpy()
    assert mask.sum() == 1, where
    return table[mask].iloc[0]


# ----------------------------------------------------------------------------- single items
@pytest.fixture(scope="module")
def single_frame():
    return simulate_single_item(500, seed=2)


@pytest.fixture(scope="module")
def single_fit(single_frame):
    return _fit(BayesianSEM(MODEL_SINGLE), single_frame)[0]


@pytest.fixture(scope="module")
def single_fit_reliable(single_frame):
    return _fit(BayesianSEM(MODEL_SINGLE, reliability={"Advocacy": 0.75}), single_frame)[0]


def test_single_item_construct_fits_with_fixed_loading_and_no_error(single_fit):
    est = single_fit.estimates()
    load = _row(est, lhs="Advocacy", op="=~", rhs="NPS")
    resid = _row(est, lhs="NPS", op="~~", rhs="NPS")
    assert (load["mean"], load["sd"]) == (1.0, 0.0)
    assert (resid["mean"], resid["sd"]) == (0.0, 0.0)
    std = single_fit.estimates(standardized=True)
    path = _row(std, lhs="Advocacy", op="~", rhs="Loyalty")
    # NPS correlates 0.6 with the Loyalty latent; without error the path is that correlation
    assert path["mean"] == pytest.approx(TRUE_NPS_CORR, abs=0.07)


def test_stated_reliability_fixes_the_residual_and_disattenuates(
    single_fit, single_fit_reliable, single_frame
):
    est = single_fit_reliable.estimates()
    resid = _row(est, lhs="NPS", op="~~", rhs="NPS")
    var = float(single_frame["NPS"].var(ddof=0))
    assert resid["mean"] == pytest.approx(0.25 * var, rel=1e-9)
    assert resid["sd"] < 1e-12  # fixed (float rounding only)

    def std(r):
        return _row(r.estimates(standardized=True), lhs="Advocacy", op="~", rhs="Loyalty")

    ratio = std(single_fit_reliable)["mean"] / std(single_fit)["mean"]
    # corrected for attenuation: 1 / sqrt(0.75) = 1.155
    assert ratio == pytest.approx(1 / np.sqrt(0.75), abs=0.03)
    rel = single_fit_reliable.reliability()
    row = rel.constructs.loc["Advocacy"]
    assert np.isnan(row["alpha"]) and np.isnan(row["alpha_standardized"])
    # 1 - fixed residual / model-implied variance (close to the sample variance)
    assert row["omega"] == pytest.approx(0.75, abs=0.01)
    assert row["rho_a"] == row["omega"]
    # HTMT is defined for the single item (monotrait term = its stated reliability)
    assert np.isfinite(rel.htmt.loc["Advocacy", "Loyalty"])
    pair = _row(rel.htmt_intervals, construct="Loyalty", versus="Advocacy")
    assert pair["htmt_hdi_low"] <= pair["htmt"] <= pair["htmt_hdi_high"]
    assert any("Advocacy: reliability 0.75 as stated" in n for n in rel.notes)


def test_reliability_is_read_from_the_study_spec():
    raw = load_study(config.SAMPLE_STUDY).to_dict()
    loyalty = raw["constructs"]["Loyalty"]["items"]
    raw["constructs"]["Advocacy"] = {"items": {"NPS": loyalty.pop("NPS")}, "reliability": 0.8}
    raw["model"] = raw["model"] + "\nAdvocacy ~ Loyalty\n"
    sem = BayesianSEM(study_from_dict(raw))
    assert sem.reliability == {"Advocacy": 0.8}
    assert sem.structure.single_items == {"Advocacy": "NPS"}
    assert sem.init_arguments()["reliability"] == {"Advocacy": 0.8}


def test_bad_reliability_is_a_clear_error():
    with pytest.raises(ModelSpecificationError, match=r"single-item constructs only.*Loyalty"):
        BayesianSEM(MODEL_SINGLE, reliability={"Loyalty": 0.8})
    with pytest.raises(ModelSpecificationError, match=r"must lie in \(0, 1\]"):
        BayesianSEM(MODEL_SINGLE, reliability={"Advocacy": 1.5})


def test_ordinal_single_item_construct_is_refused_up_front(single_frame):
    answers = single_frame.round()
    with pytest.raises(ModelSpecificationError, match=r"Advocacy \(item NPS\)") as err:
        BayesianSEM(MODEL_SINGLE).fit(answers, ordinal=True, draws=10, tune=10)
    assert f"ordinal={ITEMS9}" in str(err.value)


def test_mixed_fit_keeps_the_single_item_continuous(single_frame):
    from tests.models.sem.test_ordinal import five_point

    answers = single_frame.copy()
    answers[ITEMS9] = five_point(single_frame[ITEMS9] - 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = BayesianSEM(MODEL_SINGLE).fit(
            answers, ordinal=ITEMS9, draws=60, tune=60, chains=1, random_seed=1
        )
    est = result.estimates()
    assert _row(est, lhs="NPS", op="~~", rhs="NPS")["mean"] == 0.0
    std = result.estimates(standardized=True)
    path = _row(std, lhs="Advocacy", op="~", rhs="Loyalty")
    assert path["mean"] == pytest.approx(TRUE_NPS_CORR, abs=0.1)


# ----------------------------------------------------------------------------- improper
def _sample_study_fit(correlation: float | None):
    from cxlib.simulate import Missingness, Truth, simulate_responses

    study = load_study(config.SAMPLE_STUDY)
    truth = Truth.from_yaml(config.SAMPLE_TRUTH)
    update = {
        "segments": {},
        "waves": {},
        "missing": Missingness(rate=0.0, blocks=truth.missing.blocks),
    }
    if correlation is not None:
        corr = {
            "Experience ~~ Technical": 0.5,
            "Experience ~~ Emotional": 0.5,
            "Technical ~~ Emotional": correlation,
            "TechnicalExpectation ~~ EmotionalExpectation": 0.35,
        }
        update["latent"] = truth.latent.model_copy(update={"correlations": corr})
    frame = simulate_responses(
        study, truth.model_copy(update=update), n=500, seed=5, discretize=False
    )
    return _fit(BayesianSEM(study), frame, weights=False)


@pytest.fixture(scope="module")
def collinear_fit():
    """The sample study with Technical and Emotional correlating 0.98."""
    return _sample_study_fit(0.98)


@pytest.fixture(scope="module")
def clean_fit():
    """The sample study as simulated (latent correlations 0.4-0.5)."""
    return _sample_study_fit(None)


def test_near_collinear_constructs_are_flagged(collinear_fit):
    result, caught = collinear_fit
    imp = result.improper
    assert isinstance(imp, ImproperSolution) and not imp.ok
    kinds = {p["kind"]: p for p in imp.problems}
    assert {"latent_correlation", "htmt"} <= set(kinds)
    for kind in ("latent_correlation", "htmt"):
        assert kinds[kind]["constructs"] == ["Technical", "Emotional"]
        assert kinds[kind]["value"] > 0.95
    # one warning, naming every problem and what to try
    improper = [w for w in caught if issubclass(w.category, ImproperSolutionWarning)]
    assert len(improper) == 1
    text = str(improper[0].message)
    assert (
        "Technical and Emotional correlate at" in text and "HTMT of Technical and Emotional" in text
    )
    assert "merge" in text
    assert not result.trustworthy
    assert "NOT TRUSTWORTHY" in result.summary() and "IMPROPER SOLUTION" in str(result)
    assert "NOT TRUSTWORTHY" in repr(result)
    assert json.loads(json.dumps(imp.to_dict()))["ok"] is False
    assert len(imp.messages()) == len(imp.problems)
    assert imp.seconds < 0.5  # measured ~0.01 s (28 items, 600 draws)
    rel = result.reliability()
    pair = _row(rel.htmt_intervals, construct="Technical", versus="Emotional")
    assert pair["p_above_0_9"] > 0.95 and pair["htmt_data"] > 0.9


def test_clean_sample_study_is_not_flagged(clean_fit):
    result, caught = clean_fit
    assert result.improper.ok, result.improper.messages()
    assert result.improper.to_dict() == {"ok": True, "problems": []}
    assert not [w for w in caught if issubclass(w.category, ImproperSolutionWarning)]
    assert result.trustworthy == result.diagnostics.ok
    assert "IMPROPER" not in result.summary()


def test_outcome_copy_of_its_predictors_is_flagged():
    """Loyalty with R² 0.98 and a standardized Image path of 1.35 (simulated by hand)."""
    result, _ = _fit(BayesianSEM(MODEL_CORE), simulate_collinear(500, seed=4))
    kinds = {p["kind"]: p for p in result.improper.problems}
    assert kinds["latent_r2"]["constructs"][0] == "Loyalty"
    assert kinds["latent_r2"]["value"] >= 0.95
    beyond = kinds["standardized_beyond_one"]
    assert beyond["value"] > 1 and set(beyond["constructs"]) == {"Loyalty", "Image", "Experience"}
    assert "probability" in beyond["message"]


# ----------------------------------------------------------------------------- reliability
def test_reliability_table_columns_and_values(clean_fit):
    result, _ = clean_fit
    table = result.reliability().constructs
    for col in (
        "items",
        "alpha",
        "alpha_standardized",
        "rho_a",
        "rho_a_hdi_low",
        "rho_a_hdi_high",
        "omega",
        "omega_hdi_low",
        "omega_hdi_high",
        "ave",
        "ave_hdi_low",
        "ave_hdi_high",
    ):
        assert col in table.columns, col
    assert (table["rho_a_hdi_low"] <= table["rho_a"]).all()
    assert (table["rho_a"] <= table["rho_a_hdi_high"]).all()
    # continuous simulated items (standardized scale): raw and standardized alpha agree
    # closely; rho_A lies between alpha and the loading-weighted ideal of one factor
    assert (table["alpha"] - table["alpha_standardized"]).abs().max() < 0.03
    assert (table["rho_a"] >= table["alpha_standardized"] - 0.01).all()
    assert (table["rho_a"] - table["omega"]).abs().max() < 0.03


def test_rho_a_of_equal_loadings_is_the_composite_reliability(single_fit):
    # three items with loadings 0.8: omega = rho_A = 5.76 / 6.84 = 0.842
    table = single_fit.reliability().constructs
    assert table.loc["Experience", "rho_a"] == pytest.approx(0.842, abs=0.04)
    assert table.loc["Advocacy", "rho_a"] == pytest.approx(1.0, abs=1e-9)


# ----------------------------------------------------------------------------- mediation
def test_proportion_mediated_is_not_defined_when_the_total_straddles_zero(collinear_fit):
    result, _ = collinear_fit
    eff = result.effects(standardized=True)
    props = eff[eff.effect == "proportion mediated"]
    totals = eff[eff.effect == "total"].set_index(["from", "to"])
    straddle = [
        (r["from"], r["to"])
        for _, r in totals.reset_index().iterrows()
        if r["hdi_low"] <= 0 <= r["hdi_high"]
    ]
    assert straddle  # Technical/Emotional -> Loyalty are unstable here
    for _, row in props.iterrows():
        if (row["from"], row["to"]) in straddle:
            assert np.isnan(row["mean"]) and row["note"].startswith("not defined")
        else:
            assert np.isfinite(row["mean"]) and "per draw" in row["note"]
    assert (eff.loc[eff.effect != "proportion mediated", "note"] == "").all()
