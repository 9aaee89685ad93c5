"""The named steps of prepare_expectations_data, each on data small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxlib.errors import ModelSpecificationError
from cxlib.models.expectations import simulate_expectations
from cxlib.models.expectations.data import (
    GAP_STATS,
    _kish_weights,
    _step02_segments,
    _step03_outcome,
    _step04_attributes,
    _step05_imputation_notes,
    _step10_counterfactual_sample,
    prepare_expectations_data,
)
from cxlib.study import study_from_dict


@pytest.fixture(scope="module")
def two_attributes(study):
    """The sample study with two attributes: reliability (expectation item), understood (none)."""
    raw = study.to_dict()
    raw["attributes"] = {k: raw["attributes"][k] for k in ("reliability", "understood")}
    return study_from_dict(raw)


@pytest.fixture()
def tiny():
    """Five respondents in two segments, one missing expectation."""
    return pd.DataFrame(
        {
            "segment": ["Consumer", "Consumer", "Consumer", "Enterprise", "Enterprise"],
            "weight": [1.0, 2.0, 1.0, 1.0, 3.0],
            "TEC_RELIABILITY_E": [4.0, 3.0, np.nan, 2.0, 5.0],
            "TEC_RELIABILITY_P": [3.0, 5.0, 4.0, 2.0, 4.0],
            "EMO_UNDERSTOOD_P": [1.0, 2.0, 3.0, 4.0, 5.0],
            "LOY_STAY": [1.0, 2.0, 3.0, 4.0, 5.0],
            "NPS": [0.0, np.nan, 10.0, 5.0, np.nan],
        }
    )


def _stat(cols, row, attribute, name):
    return cols.gap_stats[row, attribute, GAP_STATS.index(name)]


def test_gap_statistics_of_a_tiny_frame_are_the_hand_computed_weighted_means(two_attributes, tiny):
    notes = []
    seg = _step02_segments(tiny, two_attributes, None, None, None, notes)
    assert seg.levels == ["Consumer", "Enterprise"]
    cols = _step04_attributes(tiny, two_attributes, seg, "midpoint", notes)
    # observed gaps P - E: Consumer -1 (w 1), +2 (w 2), missing (w 1); Enterprise 0 (w 1), -1 (w 3)
    assert _stat(cols, 0, 0, "mean_gap") == pytest.approx((-1 * 1 + 2 * 2) / 3)
    assert _stat(cols, 1, 0, "mean_gap") == pytest.approx((0 * 1 - 1 * 3) / 4)
    assert _stat(cols, 2, 0, "mean_gap") == pytest.approx((-1 + 4 + 0 - 3) / 7)
    assert _stat(cols, 0, 0, "se_gap") == pytest.approx(np.sqrt((1 * -2) ** 2 + (2 * 1) ** 2) / 3)
    assert _stat(cols, 0, 0, "mean_expectation") == pytest.approx((4 + 2 * 3) / 3)
    assert _stat(cols, 0, 0, "mean_perception") == pytest.approx((3 + 2 * 5 + 4) / 4)
    assert _stat(cols, 0, 0, "share_shortfall") == pytest.approx(1 / 3)
    assert _stat(cols, 1, 0, "share_shortfall") == pytest.approx(3 / 4)
    assert _stat(cols, 1, 0, "share_surplus") == 0.0
    assert _stat(cols, 1, 0, "share_at_ceiling") == pytest.approx(3 / 4)
    assert _stat(cols, 0, 0, "n_gap_answered") == 2
    assert _stat(cols, 0, 0, "n_reference_imputed") == 1
    assert _stat(cols, 2, 0, "n_respondents") == 5
    assert [_stat(cols, g, 0, "n_shortfall") for g in range(3)] == [1, 1, 2]
    # the missing expectation is measured against the segment's mean expectation
    assert cols.U[2, 0] == pytest.approx(4 - 10 / 3)
    assert cols.S[2, 0] == 0.0
    # understood has no expectation item: shortfall/surplus against the midpoint (3)
    np.testing.assert_array_equal(cols.S[:, 1], [2, 1, 0, 0, 0])
    np.testing.assert_array_equal(cols.U[:, 1], [0, 0, 0, 1, 2])
    assert cols.references == ["expectation", "scale midpoint"]
    assert notes == [
        "attribute 'understood' has no expectation item: its gap is measured against the "
        "scale midpoint"
    ]
    # the item model sees perception, expectation of reliability and perception of understood
    assert cols.items.names == ["TEC_RELIABILITY_P", "TEC_RELIABILITY_E", "EMO_UNDERSTOOD_P"]
    np.testing.assert_array_equal(cols.items.item_of, [[0, 1], [2, -1]])
    np.testing.assert_array_equal(cols.items.affected[:, 0], [False, False, True, False, False])


def test_segment_norm_reference_is_the_segments_weighted_mean_perception(two_attributes, tiny):
    notes = []
    seg = _step02_segments(tiny, two_attributes, None, None, None, notes)
    cols = _step04_attributes(tiny, two_attributes, seg, "segment_norm", notes)
    norm = np.array([(1 + 2 * 2 + 3) / 4] * 3 + [(4 + 3 * 5) / 4] * 2)
    np.testing.assert_allclose(cols.U[:, 1] - cols.S[:, 1], tiny["EMO_UNDERSTOOD_P"] - norm)
    assert cols.references[1] == "segment norm"
    np.testing.assert_array_equal(cols.items.fixed_ref[:, 1], norm)


def test_imputation_notes_only_for_mean_imputation(two_attributes, tiny):
    seg = _step02_segments(tiny, two_attributes, None, None, None, [])
    cols = _step04_attributes(tiny, two_attributes, seg, "midpoint", [])
    notes = []
    _step05_imputation_notes(cols, "model", notes)
    assert notes == []
    _step05_imputation_notes(cols, "mean_imputation", notes)
    assert notes == [
        "1 missing expectation answer(s) were replaced by the segment's mean expectation"
    ]


def test_construct_score_is_the_mean_of_the_answered_items_on_0_100(two_attributes, tiny):
    kind_items = ["LOY_STAY", "NPS"]
    out = _step03_outcome(tiny, two_attributes, "Loyalty", "construct", kind_items)
    stay = 100 * (tiny["LOY_STAY"] - 1) / 4
    nps = 10 * tiny["NPS"]
    expect = [(stay[0] + nps[0]) / 2, stay[1], (stay[2] + nps[2]) / 2, (stay[3] + nps[3]) / 2]
    np.testing.assert_allclose(out.y[:4], expect)
    assert out.y[4] == stay[4]
    assert (out.out_min, out.out_max) == (0.0, 100.0)
    item = _step03_outcome(tiny, two_attributes, "LOY_STAY", "item", ["LOY_STAY"])
    assert (item.out_min, item.out_max, item.top_box) == (1.0, 5.0, 3.5)


def test_kish_weights_sum_to_the_effective_size_per_segment():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 3, 200)
    w = rng.gamma(2.0, 1.0, 200)
    sw, wl = _kish_weights(codes, w, 4)  # segment 3 is empty
    for g in range(3):
        m = codes == g
        assert sw[g] == pytest.approx(w[m].sum())
        assert wl[m].sum() == pytest.approx(w[m].sum() ** 2 / (w[m] ** 2).sum())
        # within a segment the weights keep their ratios
        np.testing.assert_allclose(wl[m] / w[m], wl[m][0] / w[m][0])
    assert sw[3] == 0.0
    _, equal_wl = _kish_weights(codes, np.full(200, 2.5), 3)
    np.testing.assert_allclose(equal_wl, 1.0)


def test_counterfactual_sample_keeps_at_most_n_rows_per_segment():
    codes = np.repeat([0, 1, 2], [5, 30, 12])
    np.random.default_rng(0).shuffle(codes)
    cf = _step10_counterfactual_sample(codes, 3, 10, seed=4)
    counts = np.bincount(codes[cf], minlength=3)
    np.testing.assert_array_equal(counts, [5, 10, 10])
    assert np.unique(cf).size == cf.size
    # segment by segment, sorted within each
    segs = codes[cf]
    assert np.all(np.diff(segs) >= 0)
    for g in range(3):
        assert np.all(np.diff(cf[segs == g]) > 0)
    np.testing.assert_array_equal(cf, _step10_counterfactual_sample(codes, 3, 10, seed=4))
    assert not np.array_equal(cf, _step10_counterfactual_sample(codes, 3, 10, seed=5))


@pytest.fixture(scope="module")
def with_missing(study):
    from cxlib.models.expectations.simulate import default_expectations_truth

    truth = default_expectations_truth(study)
    truth.missing_rate = 0.1
    return simulate_expectations(study, truth, n=400, seed=8)[0]


def test_ordinal_patterns_carry_the_complete_rows_weight(study, with_missing):
    d = prepare_expectations_data(
        with_missing, study, "LOY_STAY", family="ordinal", keep_rows=True, n_counterfactual=50
    )
    x, ys, wl, seg = d.rows
    assert d.pat_w.sum() == pytest.approx(wl.sum())
    assert len(d.pat_w) <= len(wl)
    for g in range(len(d.segments)):
        assert d.pat_w[d.pat_segment == g].sum() == pytest.approx(wl[seg == g].sum())
    assert set(np.unique(d.pat_y)) <= set(range(d.n_outcome_categories))
    # the incomplete respondents are in the mixture likelihood, with their answer code
    inc = d.incomplete
    assert inc is not None and inc.n_rows + len(wl) == d.n_likelihood.sum()
    assert set(np.unique(inc.y)) <= set(range(d.n_outcome_categories))
    # everyone in the likelihood: Kish weights, complete and incomplete together
    np.testing.assert_allclose(
        d.sum_w,
        np.bincount(seg, weights=wl, minlength=3) + np.bincount(inc.segment, weights=inc.w),
    )
    assert np.bincount(d.cf_segment).max() <= 50


def test_ordinal_needs_an_item_outcome(study, with_missing):
    with pytest.raises(ModelSpecificationError, match="'Loyalty' is a construct"):
        prepare_expectations_data(
            with_missing, study, "Loyalty", family="ordinal", missing="mean_imputation"
        )
