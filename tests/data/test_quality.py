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


def test_published_tables_count_rows_left_out_and_texts_read_as_missing(tmp_path):
    """Issue #22: the excluded Qualtrics rows and the "NA"-like texts reach the tables."""
    from cxlib.pipeline.schemas import validate_table
    from cxlib.pipeline.tables import data_quality_tables
    from tests.data.test_silent_inputs import QUALTRICS_SPEC, qualtrics_export, write_study

    qualtrics_export(
        tmp_path,
        ["anonymous", "preview", "anonymous", "test", "anonymous", "email"],
        ["True", "True", "False", "True", "True", "True"],
        na_at=(0, 4),
    )
    data = load_responses(write_study(tmp_path, export=None, spec=QUALTRICS_SPEC))
    report = data.quality_report()
    text = report.to_text()
    assert "left out     1 preview, 1 test, 1 unfinished response(s)" in text
    assert "texts read as missing: 'NA' 2 in 1 column(s) (COMP2 2)" in text

    tables = data_quality_tables(data, report)
    summary = tables["data_quality_summary"].iloc[0]
    assert summary["n_respondents"] == 3
    assert summary["excluded_rows"] == 3
    assert (summary["excluded_preview"], summary["excluded_test"]) == (1, 1)
    assert summary["excluded_unfinished"] == 1
    assert summary["missing_text_cells"] == 2
    items = tables["data_quality_items"].set_index("item")["missing_text_cells"]
    assert items.to_dict() == {"COMP1": 0, "COMP2": 2, "COMP3": 0, "NPS": 0}
    texts = tables["data_quality_missing_texts"]
    assert texts[["column", "text", "cells"]].to_dict(orient="records") == [
        {"column": "COMP2", "text": "NA", "cells": 2}
    ]
    for name, table in tables.items():
        validate_table(name, table, notebook="01-data-quality")  # as published


def test_published_tables_of_a_clean_file_count_zero(data):
    from cxlib.pipeline.schemas import validate_table
    from cxlib.pipeline.tables import data_quality_tables

    tables = data_quality_tables(data, data.quality_report())
    summary = tables["data_quality_summary"].iloc[0]
    assert summary["excluded_rows"] == summary["missing_text_cells"] == 0
    assert tables["data_quality_missing_texts"].empty
    assert (tables["data_quality_items"]["missing_text_cells"] == 0).all()
    for name, table in tables.items():
        validate_table(name, table, notebook="01-data-quality")
