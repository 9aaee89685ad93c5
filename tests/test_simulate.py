import numpy as np
import pandas as pd
import pytest

from cxlib.cli import main
from cxlib.errors import StudySpecError
from cxlib.simulate import Truth, default_truth, simulate_responses


def test_same_seed_same_data(study, truth):
    a = simulate_responses(study, truth, n=500, seed=3)
    b = simulate_responses(study, truth, n=500, seed=3)
    c = simulate_responses(study, truth, n=500, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["NPS"].equals(c["NPS"])


def test_layout_matches_the_spec(study, truth):
    frame = simulate_responses(study, truth, n=4000, seed=1)
    assert list(frame.columns[:5]) == [
        "respondent_id",
        "segment",
        "wave",
        "interview_date",
        "weight",
    ]
    assert set(study.item_names) <= set(frame.columns)
    assert frame["respondent_id"].is_unique
    for name, item in study.all_items.items():
        values = frame[name].dropna()
        assert values.between(item.scale.min, item.scale.max).all(), name
    shares = frame["segment"].value_counts(normalize=True)
    assert shares["Consumer"] == pytest.approx(0.60, abs=0.03)
    assert list(frame["wave"].cat.categories) == ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"]
    assert frame["weight"].mean() == pytest.approx(1.0, abs=1e-3)
    assert frame["email"].str.endswith("@example.com").all()
    # block missingness: about 30% skipped the store, plus 2% at random
    assert frame["CX_STORE_ADVICE"].isna().mean() == pytest.approx(0.30 + 0.7 * 0.02, abs=0.03)


def test_continuous_responses_follow_the_true_structure(study, truth):
    """Item correlations equal loading x loading x latent correlation."""
    plain = truth.model_copy(
        update={
            "segments": {},
            "waves": {},
            "missing": truth.missing.model_copy(update={"rate": 0.0, "blocks": []}),
        }
    )
    frame = simulate_responses(study, plain, n=200_000, seed=5, discretize=False)
    cov = plain.latent_covariance(study)
    np.testing.assert_allclose(
        np.diag(cov.loc[study.constructs.keys(), study.constructs.keys()]), 1.0
    )
    pairs = [
        ("IMG_REPUTATION", "IMG_TRUSTWORTHY", 0.80 * 0.82 * 1.0),
        ("LOY_STAY", "IMG_REPUTATION", 0.82 * 0.80 * cov.loc["Loyalty", "Image"]),
        ("SAT_OVERALL", "CX_APP_ORDER", 0.88 * 0.72 * cov.loc["Satisfaction", "Experience"]),
        ("NPS", "LOY_STAY", 0.85 * 0.82),
    ]
    for a, b, expected in pairs:
        observed = np.corrcoef(frame[a], frame[b])[0, 1]
        assert observed == pytest.approx(expected, abs=0.01), (a, b)
    # the reverse-coded item is reversed in the raw export: it correlates negatively
    assert (
        np.corrcoef(frame["LOY_SWITCH_R"], frame["LOY_STAY"])[0, 1] > 0
    )  # continuous: not reversed
    disc = simulate_responses(study, plain, n=20_000, seed=5)
    assert disc[["LOY_SWITCH_R", "LOY_STAY"]].astype(float).corr().iloc[0, 1] < -0.3


def test_segment_differences_show_in_the_data(study, truth):
    frame = simulate_responses(study, truth, n=40_000, seed=2)
    means = frame.groupby("segment", observed=True)["EMO_VALUED_P"].mean()
    assert means["Enterprise"] < means["Small business"] < means["Consumer"]


def test_parameter_table_and_defined_values(study, truth):
    table = truth.parameter_table(study)
    loading = table.query("lhs == 'Image' and op == '=~' and rhs == 'IMG_REPUTATION'")["value"]
    assert loading.item() == 0.80
    defined = table.set_index("lhs").loc["indirect_via_image"]
    assert defined["value"] == pytest.approx(0.45 * 0.40)
    psi = table.query("lhs == 'Loyalty' and op == '~~' and rhs == 'Loyalty'")["value"].item()
    assert 0 < psi < 1


def test_default_truth_works_for_any_study(study):
    frame = simulate_responses(study, default_truth(study), n=100, seed=1)
    assert len(frame) == 100


@pytest.mark.parametrize(
    ("update", "fragment"),
    [
        ({"paths": {"Loyalty ~ Brand": 0.3}}, "'Brand' is not a construct"),
        ({"paths": {"Loyalty ~ Image": 0.3, "Image ~ Loyalty": 0.3}}, "form a loop"),
        ({"paths": {"Loyalty ~ Image": 0.9, "Loyalty ~ Satisfaction": 0.9}}, "explain"),
        ({"thresholds": {"NPS": [0.0, 1.0]}}, "needs 10 thresholds"),
    ],
)
def test_inconsistent_truths_are_refused(study, truth, update, fragment):
    broken = truth.model_copy(update=update)
    with pytest.raises(StudySpecError, match=fragment):
        simulate_responses(study, broken, n=10, seed=1)


def test_truth_file_errors(tmp_path):
    path = tmp_path / "truth.yaml"
    path.write_text("paths: {Loyalty Image: 0.3}\n")
    with pytest.raises(StudySpecError, match="expected 'A ~ B'"):
        Truth.from_yaml(path)
    with pytest.raises(StudySpecError, match="not found"):
        Truth.from_yaml(tmp_path / "nope.yaml")


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "sim.csv"
    code = main(
        [
            "simulate",
            "--study",
            "data/telecom/study.yaml",
            "--truth",
            "data/telecom/truth.yaml",
            "--n",
            "250",
            "--seed",
            "9",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "simulated 250 respondents" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 250
    code = main(
        [
            "simulate",
            "--study",
            "data/telecom/study.yaml",
            "--n",
            "5",
            "--out",
            str(tmp_path / "x.json"),
        ]
    )
    assert code == 2
    assert "unknown format '.json'" in capsys.readouterr().err
