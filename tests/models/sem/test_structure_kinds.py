"""The model kinds researchers write, read into the SEM's structure (no sampling).

Composites (``<~``), interactions (``X:Z``, ``X:X``), higher-order constructs and
observed variables in regressions: what each becomes in the LISREL matrices, and the
clear errors for the models that cannot be identified or make no sense.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxlib.errors import ModelSpecificationError, ModelSyntaxError
from cxlib.models import BayesianSEM
from cxlib.syntax import parse_model

REFLECTIVE = "Y =~ y1 + y2 + y3\nZ =~ z1 + z2 + z3\n"


def fixed(st, name):
    return next(p.fixed for p in st.params if p.name == name)


# ----------------------------------------------------------------------------- syntax
def test_composite_and_interaction_terms_parse():
    m = parse_model("F <~ x1 + w*x2 + x3\nY =~ y1 + y2\nY ~ F + tenure + F:tenure + F:F")
    assert m.latents == ["F", "Y"]
    assert m.composites == {"F": ["x1", "x2", "x3"]}
    assert [t.rhs for t in m.interactions] == ["F:tenure", "F:F"]
    assert m.interactions[0].parts == ("F", "tenure")
    assert "tenure" in m.observed and "F:tenure" not in m.variables
    assert next(t for t in m.terms if t.rhs == "x2").label == "w"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("F <~ x1\nY =~ y1 + y2 + y3\nY ~ F", "formed by one indicator only"),
        ("F =~ x1 + X:Z", "can only be a predictor in a regression"),
        ("Y ~ Y:Z", "regressed on itself"),
        ("F <~ F + x2", "formed by itself"),
        ("Y ~ X::Z", "not a valid variable name"),
    ],
)
def test_bad_new_syntax_names_the_line(text, match):
    with pytest.raises(ModelSyntaxError, match=match):
        parse_model(text)


# ----------------------------------------------------------------------------- lowering
def test_composite_is_a_weighted_sum_without_disturbance():
    st = BayesianSEM("F <~ x1 + x2 + x3\n" + REFLECTIVE + "Y ~ F\nZ ~ Y").structure
    assert st.composites == {"F": ["x1", "x2", "x3"]}
    assert set(st.observed) == {"x1", "x2", "x3"}
    weights = [p for p in st.params if p.kind == "path" and p.op == "<~"]
    assert [p.rhs for p in weights] == ["x1", "x2", "x3"]
    # variance 1 (normalized weights); '1*x1' asks for lavaan's classic scaling
    assert [p.fixed for p in weights] == [None, None, None]
    assert st.normalized == ["F"] and st.n_free == sum(map(len, st.free_names.values())) - 1
    assert all(p.row == st.latents.index("F") for p in weights)
    assert fixed(st, "F ~~ F") == 0.0
    # the indicators are exogenous observed variables: conditioned on (lavaan's fixed.x)
    assert st.fixed_x == ["x1", "x2", "x3"]
    assert not {"x1 ~~ x2", "x1 ~~ x3", "x2 ~~ x3"} & set(st.free_names["latent_cov"])
    assert ("F", "x2") in st.regression_pairs and st.depth == 3
    assert "F" not in st.reflective and "F" in st.constructs


def test_a_fixed_weight_gives_lavaans_classic_scaling():
    st = BayesianSEM("F <~ 1*x1 + x2\n" + REFLECTIVE + "Y ~ F").structure
    assert not st.normalized and fixed(st, "F <~ x1") == 1.0


def test_composite_scaling_holds_under_unit_variance():
    st = BayesianSEM(
        "F <~ x1 + x2\n" + REFLECTIVE + "Y ~ F\nZ ~ F", scaling="unit_variance"
    ).structure
    assert fixed(st, "F ~~ F") == 0.0 and st.normalized == ["F"]
    assert st.fixed_x == ["x1", "x2"]  # an observed variance is the sample's, not 1


def test_formative_higher_order_over_latents():
    text = (
        "Store =~ s1 + s2 + s3\nPhone =~ p1 + p2 + p3\nWeb =~ w1 + w2 + w3\n"
        "CX <~ Store + Phone + Web\nLoyalty =~ l1 + l2 + l3\nLoyalty ~ CX"
    )
    st = BayesianSEM(text).structure
    assert not st.observed
    assert [p.name for p in st.of_kind("path")] == [
        "Loyalty ~ CX",
        "CX <~ Store",
        "CX <~ Phone",
        "CX <~ Web",
    ]


def test_second_order_loadings_are_entries_of_b():
    text = (
        "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"
        "g =~ visual + textual + speed"
    )
    st = BayesianSEM(text).structure
    assert st.higher_order == {"g": ["visual", "textual", "speed"]}
    second = [p for p in st.of_kind("path") if p.op == "=~"]
    assert [(p.lhs, p.rhs, p.fixed) for p in second] == [
        ("g", "visual", 1.0),
        ("g", "textual", None),
        ("g", "speed", None),
    ]
    assert all(p.row == st.latents.index(p.rhs) and p.col == st.latents.index("g") for p in second)
    assert st.exogenous == ["g"]
    # first-order residuals do not covary by default (they are indicators of g)
    assert not [
        n for n in st.free_names["latent_cov"] if " ~~ " in n and len(set(n.split(" ~~ "))) > 1
    ]
    assert st.df == 24  # lavaan: 45 moments - 21 free parameters (with means: 54 - 30)


def test_observed_variables_as_predictor_and_outcome():
    st = BayesianSEM(REFLECTIVE + "Y ~ tenure + mobile\nspend ~ Y").structure
    assert st.observed == {"tenure": "tenure", "mobile": "mobile", "spend": "spend"}
    assert "spend ~~ spend" in st.free_names["latent_cov"]  # residual variance of the outcome
    assert {"Y ~ tenure", "Y ~ mobile", "spend ~ Y"} <= set(st.free_names["path"])
    assert st.fixed_x == ["tenure", "mobile"]  # conditioned on (lavaan's fixed.x)
    assert {"Z ~~ tenure", "Z ~~ mobile"} <= set(st.free_names["latent_cov"])


def test_interaction_params():
    st = BayesianSEM(REFLECTIVE + "W =~ w1 + w2 + w3\nW ~ Y + Z + Y:Z + Y:Y").structure
    inter = st.interactions
    assert [p.name for p in inter] == ["W ~ Y:Z", "W ~ Y:Y"]
    li = st.latents.index
    assert inter[0].parts == (li("Y"), li("Z")) and inter[1].parts == (li("Y"), li("Y"))
    assert inter[0].row == li("W")
    assert st.free_names["interaction"] == ["W ~ Y:Z", "W ~ Y:Y"]


def test_interaction_with_an_observed_moderator():
    st = BayesianSEM(REFLECTIVE + "Z ~ Y + tenure + Y:tenure").structure
    assert st.observed == {"tenure": "tenure"}
    assert st.interactions[0].parts == (st.latents.index("Y"), st.latents.index("tenure"))


def test_prior_keys_accept_the_new_terms():
    BayesianSEM(
        "F <~ x1 + x2\n" + REFLECTIVE + "Y ~ F\nZ ~ Y + F + Y:F",
        model_config={"F <~ x2": {"sigma": 1.0}, "Z ~ Y : F": {"sigma": 0.5}},
    )


# ----------------------------------------------------------------------------- identification
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("F <~ x1 + x2 + x3\n" + REFLECTIVE + "Z ~ Y", "predicts nothing"),
        (REFLECTIVE + "Z ~ Y:tenure", r"Add 'Z ~ Y \+ tenure'"),
        (REFLECTIVE + "Z ~ Y + Y:Q", r"Add 'Z ~ Q'"),
        (
            "a =~ x1 + x2 + x3\nb =~ x4 + x5 + x6\ng =~ a + b\n" + REFLECTIVE + "Y ~ g",
            "fewer than three",
        ),
        ("F <~ 0*x1 + 0*x2\n" + REFLECTIVE + "Y ~ F", "F has no free weight"),
        ("F <~ x1 + x2\n" + REFLECTIVE + "Y ~ F\nF ~~ F", "2\\+ emitted paths"),
        ("F =~ x1 + x2\nF <~ x3 + x4\n" + REFLECTIVE + "Y ~ F", "either reflective or a composite"),
        ("a =~ x1 + x2 + x3\nb =~ x4 + x5 + x6\ng =~ a + b + q", "by constructs"),
        (REFLECTIVE + "Z ~ y1", "is an item of Y"),
    ],
)
def test_models_that_cannot_be_identified_say_what_to_add(text, match):
    with pytest.raises(ModelSpecificationError, match=match):
        BayesianSEM(text)


def test_two_first_order_constructs_with_equal_loadings_are_allowed():
    text = "a =~ x1 + x2 + x3\nb =~ x4 + x5 + x6\ng =~ l*a + l*b\n" + REFLECTIVE + "Y ~ g"
    assert BayesianSEM(text).structure.higher_order == {"g": ["a", "b"]}


def test_a_name_that_is_neither_construct_nor_column_is_named_at_fit():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 6)), columns=["y1", "y2", "y3", "z1", "z2", "z3"])
    sem = BayesianSEM(REFLECTIVE + "Z ~ Y + Cost + Y:Cost")
    with pytest.raises(ModelSpecificationError, match=r"'Cost'.*'Z ~ Y:Cost' \(line 3\)"):
        sem.fit(frame, draws=5, tune=5)


def test_a_constant_observed_variable_is_refused():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 6)), columns=["y1", "y2", "y3", "z1", "z2", "z3"])
    frame["tenure"] = 3.0
    with pytest.raises(ModelSpecificationError, match=r"\['tenure'\].*same answer"):
        BayesianSEM(REFLECTIVE + "Z ~ Y + tenure").fit(frame, draws=5, tune=5)


def test_a_fixed_covariance_enters_once():
    """``a ~~ 0.3*b`` fixes the covariance at 0.3 (it was added twice before #18)."""
    rng = np.random.default_rng(1)
    f = rng.multivariate_normal([0, 0], [[1, 0.3], [0.3, 1]], 400)
    frame = pd.DataFrame(
        {
            f"{n}{i}": f[:, k] + 0.5 * rng.normal(size=400)
            for k, n in enumerate("ab")
            for i in (1, 2, 3)
        }
    )
    sem = BayesianSEM("A =~ a1 + a2 + a3\nB =~ b1 + b2 + b3\nA ~~ 0.3*B")
    sem.prepare_fit(frame)
    point = sem.model.initial_point()
    model = sem.model
    psi = model.compile_fn(
        model["Psi"], inputs=model.value_vars, point_fn=True, on_unused_input="ignore"
    )(point)
    assert psi[0, 1] == psi[1, 0] == pytest.approx(0.3)


def test_exogenous_observed_variables_are_conditioned_on():
    """lavaan's fixed.x: their (co)variances are the sample's, and the df leave them out."""
    rng = np.random.default_rng(2)
    n = 300
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["y1", "y2", "y3"])
    frame["tenure"] = rng.normal(5, 2, n)
    frame["app"] = (rng.random(n) < 0.4).astype(float)
    sem = BayesianSEM("Y =~ y1 + y2 + y3\nY ~ tenure + app")
    st = sem.structure
    assert st.fixed_x == ["tenure", "app"] and st.n_fixed_x_moments == 3
    assert "tenure ~~ tenure" not in st.free_names["latent_cov"]
    sem.prepare_fit(frame)
    values = {p.name: p.fixed for p in st.of_kind("latent_cov")}
    cov = np.cov(frame[["tenure", "app"]].to_numpy(), rowvar=False, ddof=0)
    assert values["tenure ~~ tenure"] == pytest.approx(cov[0, 0])
    assert values["tenure ~~ app"] == pytest.approx(cov[0, 1])
    # 5 items: 15 covariances + 5 means - 3 fixed.x (co)variances
    assert st.n_moments == 17
