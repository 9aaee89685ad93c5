"""The simulator of every model kind: its moments match the truth it reports (large N)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxlib.errors import CxError
from cxlib.models.sem.simulate import (
    CORPORATE_REPUTATION_MODEL,
    corporate_reputation,
    simulate_sem,
)

N = 200_000


def ols(scores: pd.DataFrame, outcome: str, predictors: list[str]) -> np.ndarray:
    """Least-squares coefficients of standardized scores (with an intercept, dropped)."""
    x = np.column_stack([scores[p] for p in predictors] + [np.ones(len(scores))])
    return np.linalg.lstsq(x, scores[outcome], rcond=None)[0][:-1]


def test_reflective_items_follow_loadings_and_paths():
    sim = simulate_sem(
        "Experience =~ CX1 + CX2 + CX3\nImage =~ IMG1 + IMG2 + IMG3\nImage ~ Experience",
        {"Image ~ Experience": 0.4, "Experience =~ CX1": 0.8, "Image =~ IMG2": 0.6},
        n=N,
        seed=1,
    )
    d = sim.data
    assert list(d.columns) == ["CX1", "CX2", "CX3", "IMG1", "IMG2", "IMG3"]
    assert d.var().to_numpy() == pytest.approx(1.0, abs=0.01)
    assert np.corrcoef(d.CX1, d.IMG2)[0, 1] == pytest.approx(0.8 * 0.4 * 0.6, abs=0.01)
    assert np.corrcoef(d.CX1, d.CX2)[0, 1] == pytest.approx(0.8 * 0.7, abs=0.01)
    assert sim.value("Image ~~ Image") == pytest.approx(1 - 0.4**2)
    assert sim.value("IMG2 ~~ IMG2") == pytest.approx(1 - 0.6**2)


def test_composite_is_the_standardized_weighted_sum_of_its_indicators():
    sim = simulate_sem(
        "F <~ x1 + x2 + x3\nY =~ y1 + y2 + y3\nY ~ F",
        {"F <~ x1": 0.5, "F <~ x2": 0.3, "F <~ x3": 0.4, "x1 ~~ x2": 0.5, "Y ~ F": 0.5},
        n=N,
        seed=2,
    )
    w = np.array([sim.value(f"F <~ x{i}") for i in (1, 2, 3)])
    corr = np.array([[1, 0.5, 0.3], [0.5, 1, 0.3], [0.3, 0.3, 1]])
    assert w @ corr @ w == pytest.approx(1.0)  # standardized weights: Var(F) = 1
    assert w / w[0] == pytest.approx([1, 0.6, 0.8])  # the raw ratios are kept
    x = sim.data[["x1", "x2", "x3"]].to_numpy()
    np.testing.assert_allclose(x @ w, sim.scores["F"], atol=1e-6)  # no residual
    assert np.var(x @ w) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(np.corrcoef(x.T), corr, atol=0.01)
    assert ols(sim.scores, "Y", ["F"]) == pytest.approx([0.5], abs=0.01)
    assert np.corrcoef(sim.data.y1, sim.scores.F)[0, 1] == pytest.approx(0.7 * 0.5, abs=0.01)


def test_composite_as_an_outcome_and_correlated_composites():
    sim = simulate_sem(
        "A <~ a1 + a2\nB <~ b1 + b2\nC <~ c1 + c2 + c3\nC ~ A + B",
        {"A ~~ B": 0.5, "C ~ A": 0.3, "C ~ B": 0.2},
        n=N,
        seed=3,
    )
    s = sim.scores
    assert s[["A", "B", "C"]].var().to_numpy() == pytest.approx(1.0, abs=0.01)
    assert np.corrcoef(s.A, s.B)[0, 1] == pytest.approx(0.5, abs=0.01)
    assert ols(s, "C", ["A", "B"]) == pytest.approx([0.3, 0.2], abs=0.01)
    w = np.array([sim.value(f"C <~ c{i}") for i in (1, 2, 3)])
    c = sim.data[["c1", "c2", "c3"]].to_numpy()
    np.testing.assert_allclose(c @ w, s["C"], atol=1e-6)
    assert sim.value("C ~~ C") == pytest.approx(1 - (0.3**2 + 0.2**2 + 2 * 0.3 * 0.2 * 0.5))


@pytest.mark.parametrize("r", [0.0, 0.4])
def test_interaction_and_quadratic_keep_the_outcome_at_variance_one(r):
    sim = simulate_sem(
        "X =~ x1 + x2 + x3\nZ =~ z1 + z2 + z3\nY =~ y1 + y2 + y3\nY ~ X + Z + X:Z + X:X",
        {"X ~~ Z": r, "Y ~ X": 0.4, "Y ~ Z": 0.2, "Y ~ Z:X": 0.25, "Y ~ X:X": 0.1},
        n=400_000,
        seed=4,
    )
    s = sim.scores
    xz = s.X * s.Z
    assert xz.var() == pytest.approx(1 + r**2, abs=0.02)  # Var(XZ) = Var X Var Z + Cov^2
    assert xz.mean() == pytest.approx(r, abs=0.01)
    assert s.Y.var() == pytest.approx(1.0, abs=0.01)
    assert s.Y.mean() == pytest.approx(0.0, abs=0.01)  # the products are centred
    s = s.assign(XZ=xz, XX=s.X**2)
    assert ols(s, "Y", ["X", "Z", "XZ", "XX"]) == pytest.approx([0.4, 0.2, 0.25, 0.1], abs=0.01)
    assert sim.value("Y ~ X:Z") == 0.25  # either order of the parts
    # the closed form of the residual (Isserlis): the explained variance
    cov_prod = np.array([[1 + r**2, 2 * r], [2 * r, 2.0]])
    g = np.array([0.25, 0.1])
    explained = 0.16 + 0.04 + 2 * 0.4 * 0.2 * r + g @ cov_prod @ g
    assert sim.value("Y ~~ Y") == pytest.approx(1 - explained)


def test_interaction_with_a_dummy_uses_the_monte_carlo_residual():
    sim = simulate_sem(
        "X =~ x1 + x2 + x3\nY =~ y1 + y2 + y3\nY ~ X + app + X:app",
        {"X ~~ app": 0.3, "Y ~ X:app": 0.3},
        n=N,
        seed=5,
        dummies={"app": 0.3},
    )
    s = sim.scores
    assert s.Y.var() == pytest.approx(1.0, abs=0.015)
    assert sim.data["app"].mean() == pytest.approx(0.3, abs=0.005)
    assert np.corrcoef(s.X, s.app)[0, 1] == pytest.approx(0.3, abs=0.01)
    s = s.assign(Xapp=s.X * s.app)
    assert ols(s, "Y", ["X", "app", "Xapp"]) == pytest.approx([0.3, 0.3, 0.3], abs=0.015)


def test_second_order_factor():
    sim = simulate_sem(
        "\n".join(f"F{k} =~ f{k}_1 + f{k}_2 + f{k}_3" for k in (1, 2, 3))
        + "\ng =~ F1 + F2 + F3\nY =~ y1 + y2 + y3\nY ~ g",
        {"g =~ F1": 0.8, "g =~ F2": 0.7, "g =~ F3": 0.6, "Y ~ g": 0.5},
        n=N,
        seed=6,
    )
    s = sim.scores
    assert s[["g", "F1", "F2", "F3", "Y"]].var().to_numpy() == pytest.approx(1.0, abs=0.01)
    assert np.corrcoef(s.F1, s.F3)[0, 1] == pytest.approx(0.8 * 0.6, abs=0.01)
    assert np.corrcoef(sim.data.f1_1, sim.data.f2_1)[0, 1] == pytest.approx(
        0.7 * 0.8 * 0.7 * 0.7, abs=0.01
    )
    assert sim.value("F2 ~~ F2") == pytest.approx(1 - 0.49)
    assert sim.value("g =~ F1") == 0.8


def test_observed_covariates_as_predictors_and_outcomes():
    sim = simulate_sem(
        "F <~ x1 + x2 + x3\nY =~ y1 + y2 + y3\nY ~ F + app + tenure\nchurn ~ F\nspend ~ Y",
        {"Y ~ F": 0.4, "Y ~ app": 0.2, "F ~~ tenure": 0.3, "churn ~ F": -0.3},
        n=N,
        seed=7,
        covariates={"tenure": (5.0, 3.0)},
        dummies={"app": 0.3, "churn": 0.2},
    )
    d, s = sim.data, sim.scores
    assert d.tenure.mean() == pytest.approx(5.0, abs=0.03)
    assert d.tenure.std() == pytest.approx(3.0, abs=0.03)
    assert set(d.app.unique()) == {0, 1}
    assert d.app.mean() == pytest.approx(0.3, abs=0.005)
    assert d.churn.mean() == pytest.approx(0.2, abs=0.005)
    assert ols(s, "Y", ["F", "app", "tenure"]) == pytest.approx([0.4, 0.2, 0.3], abs=0.01)
    # a dummy outcome: the truth is its standardized linear coefficient
    assert np.corrcoef(d.churn, s.F)[0, 1] == pytest.approx(-0.3, abs=0.01)
    assert sim.value("churn ~~ churn") == pytest.approx(1 - 0.09)
    assert np.corrcoef(d.spend, s.Y)[0, 1] == pytest.approx(0.3, abs=0.01)  # default path
    assert d.spend.var() == pytest.approx(1.0, abs=0.01)


def test_likert_answers_and_missing_share():
    sim = simulate_sem(
        "F =~ y1 + y2 + y3 + y4\nY ~ F + tenure",
        n=20_000,
        seed=8,
        likert=5,
        missing=0.1,
        covariates={"tenure": (2.0, 1.0)},
    )
    d = sim.data
    items = d[["y1", "y2", "y3", "y4", "Y"]]
    assert set(np.unique(items.stack())) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert items.isna().mean().to_numpy() == pytest.approx(0.1, abs=0.01)
    assert d.tenure.notna().all()


def test_same_seed_same_data_and_compare():
    text = "F <~ x1 + x2\nY =~ y1 + y2 + y3\nY ~ a*F\nind := a*2"
    a = simulate_sem(text, {"Y ~ F": 0.5}, n=1000, seed=9)
    b = simulate_sem(text, {"Y ~ F": 0.5}, n=1000, seed=9)
    c = simulate_sem(text, {"Y ~ F": 0.5}, n=1000, seed=10)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert not a.data.equals(c.data)
    assert a.truth.query("op == ':='")["value"].item() == pytest.approx(1.0)
    est = pd.DataFrame(
        {"lhs": ["Y", "F"], "op": ["~", "<~"], "rhs": ["F", "x1"], "mean": [0.45, 0.6]}
    )
    out = a.compare(est)
    assert out.set_index("rhs")["error"].to_dict() == pytest.approx(
        {"F": -0.05, "x1": 0.6 - a.value("F <~ x1")}
    )


@pytest.mark.parametrize(
    ("text", "values", "kwargs", "message"),
    [
        ("F =~ y1 + y2 + y3", {"G =~ y1": 0.5}, {}, "does not have"),
        ("F =~ y1 + y2 + y3", {"F =~ y1": 1.2}, {}, "in \\(-1, 1\\)"),
        ("F =~ y1 + y2\nG =~ z1 + z2\nG ~ F + x", {"G ~ F": 0.9, "G ~ x": 0.6}, {}, "explain"),
        ("Y ~ a + b", {"a ~~ b": 0.2}, {"dummies": ["a", "b"]}, "two dummies"),
        ("F =~ y1 + y2\nG =~ z1 + z2\nG ~ F\nF ~ G", {}, {}, "loop"),
        ("Y ~ F\nF =~ y1 + y2", {"F ~~ Y": 0.2}, {}, "does not have"),
        ("Y ~ x", {}, {"dummies": {"z": 0.5}}, "not an observed"),
        ("F =~ y1 + y2\nd ~ F\nw ~ d", {}, {"dummies": {"d": 0.5}}, "also predicts"),
        ("F =~ y1 + y2", {"F bad y1": 0.2}, {}, "lavaan term"),
        ("F =~ y1 + y2\nd ~ F + a", {}, {"dummies": ["a", "d"]}, "needs normal predictors"),
    ],
)
def test_bad_truths_are_clear_errors(text, values, kwargs, message):
    with pytest.raises(CxError, match=message):
        simulate_sem(text, values, n=10, seed=1, **kwargs)


def test_corporate_reputation_has_the_primer_shape():
    sim = corporate_reputation(100_000, seed=11)
    d, s = sim.data, sim.scores
    expected = (
        [f"qual_{i}" for i in range(1, 9)]
        + [f"perf_{i}" for i in range(1, 6)]
        + [f"csor_{i}" for i in range(1, 6)]
        + [f"attr_{i}" for i in range(1, 4)]
        + [f"{c}_{i}" for c in ("comp", "like", "cusl") for i in range(1, 4)]
        + ["cusa"]
    )
    assert sorted(d.columns) == sorted(expected)
    assert "QUAL <~ qual_1" in CORPORATE_REPUTATION_MODEL
    assert s[["QUAL", "PERF", "CSOR", "ATTR", "COMP", "LIKE", "CUSL"]].var().to_numpy() == (
        pytest.approx(1.0, abs=0.015)
    )
    assert ols(s, "COMP", ["QUAL", "PERF", "CSOR", "ATTR"]) == pytest.approx(
        [sim.value(f"COMP ~ {x}") for x in ("QUAL", "PERF", "CSOR", "ATTR")], abs=0.015
    )
    assert ols(s, "CUSL", ["cusa", "COMP", "LIKE"]) == pytest.approx(
        [sim.value(f"CUSL ~ {x}") for x in ("cusa", "COMP", "LIKE")], abs=0.015
    )
    seven = corporate_reputation(500, seed=11, likert=7)
    assert seven.data.stack().between(1, 7).all()


def test_indicators_of_an_exogenous_composite_correlate_through_it():
    sim = simulate_sem(
        "F <~ x1 + x2\nG <~ g1 + g2\nY =~ y1 + y2 + y3\nY ~ F + G + tenure",
        {"F ~~ G": 0.5, "F ~~ tenure": 0.3, "F <~ x1": 0.7, "F <~ x2": 0.4},
        n=N,
        seed=12,
    )
    d = sim.data
    for x, v in [("x1", "tenure"), ("x2", "g1"), ("x1", "g2")]:
        assert np.corrcoef(d[x], d[v])[0, 1] == pytest.approx(sim.value(f"{x} ~~ {v}"), abs=0.01)
    assert sim.value("x1 ~~ tenure") != 0
