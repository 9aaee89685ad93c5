import numpy as np
import pytest

from cxlib.data import load_responses
from cxlib.data.quality import straightlining
from cxlib.simulate import write_responses


@pytest.fixture
def data(study, export, tmp_path):
    # three planted straight-liners: one answer to the whole 7-point experience grid
    cx_items = study.constructs["Experience"].item_names
    export.loc[[10, 11, 12], cx_items] = 7
    # one respondent who skipped almost everything
    export.loc[20, study.item_names[1:]] = None
    # an item at its ceiling
    export["IMG_INNOVATIVE"] = 5
    return load_responses(study, write_responses(export, tmp_path / "r.parquet"))


def test_straightliners_are_found(data):
    flags = straightlining(data)
    assert flags.iloc[[10, 11, 12]].all()
    assert data.quality_report().straightliners == int(flags.sum())


def test_reverse_coded_items_count_as_given(study, export, tmp_path):
    """A respondent answering 5 everywhere straight-lines, although LOY_SWITCH_R reverses to 1."""
    agree_items = [n for n, i in study.all_items.items() if i.scale.max == 5]
    export.loc[0, agree_items] = 5
    data = load_responses(study, write_responses(export, tmp_path / "r.parquet"))
    assert data.frame.loc[0, "LOY_SWITCH_R"] == 1
    assert straightlining(data).iloc[0]


def test_missing_shares(data, export, study):
    report = data.quality_report()
    expected = export[study.item_names].isna().mean()
    np.testing.assert_allclose(report.missing_by_item.to_numpy(), expected.to_numpy())
    answered_all = export[study.item_names].notna().all(axis=1).mean()
    assert report.missing_by_respondent["complete"] == pytest.approx(answered_all)
    assert report.missing_by_respondent["over_half"] >= 1 / 300


def test_floor_and_ceiling(data):
    report = data.quality_report()
    row = report.floor_ceiling.loc["IMG_INNOVATIVE"]
    assert row["ceiling"] == 1.0 and row["flag"] == "ceiling"
    assert "IMG_INNOVATIVE" in report.flagged_items
    assert "IMG_INNOVATIVE" in report.to_text(max_items=50)


def test_report_counts_segments_and_waves(data):
    report = data.quality_report()
    assert sum(report.segments["segment"].values()) == 300
    assert list(report.waves) == ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"]
    as_dict = report.to_dict()
    assert as_dict["dropped_personal_data"] == {
        "email": "declared as personal data in the study spec"
    }
    assert "R000001" not in report.to_json()  # aggregates only
