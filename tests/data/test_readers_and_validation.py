"""Loading every supported format, and every bad input the issue lists, through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxlib import config
from cxlib.cli import main
from cxlib.data import load_responses
from cxlib.errors import DataValidationError
from cxlib.simulate import write_responses

STUDY = str(config.SAMPLE_STUDY)


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def validate(capsys, path, *extra):
    return run_cli(capsys, "validate", "--study", STUDY, str(path), *extra)


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx", ".sav"])
def test_each_format_loads_the_same_answers(study, export, tmp_path, suffix):
    path = write_responses(export, tmp_path / f"responses{suffix}")
    data = load_responses(study, path)
    assert data.n_respondents == 300
    assert data.frame["respondent_id"].iloc[0] == "R000001"
    raw = export["CX_APP_ORDER"].astype("float64").to_numpy()
    np.testing.assert_array_equal(data.frame["CX_APP_ORDER"].to_numpy(), raw)
    # reverse-coded item is reversed back: 1 <-> 5
    rev = export["LOY_SWITCH_R"].astype("float64").to_numpy()
    np.testing.assert_array_equal(data.frame["LOY_SWITCH_R"].to_numpy(), 6 - rev)
    # missing answers stay missing
    assert data.frame["CX_STORE_ADVICE"].isna().sum() == export["CX_STORE_ADVICE"].isna().sum() > 0
    assert "email" not in data.frame.columns
    assert data.dropped_personal_data == {"email": "declared as personal data in the study spec"}
    assert list(data.frame["wave"].cat.categories) == study.source.wave_order
    assert len(data.data_hash) == 64


def test_spss_keeps_value_labels(study, export, tmp_path):
    import pyreadstat

    out = export.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(str)
        elif str(out[col].dtype) == "Int8":
            out[col] = out[col].astype("float64")
    path = tmp_path / "responses.sav"
    pyreadstat.write_sav(
        out,
        str(path),
        column_labels={"NPS": "How likely are you to recommend us?"},
        variable_value_labels={"IMG_REPUTATION": {1.0: "Strongly disagree", 5.0: "Strongly agree"}},
    )
    data = load_responses(study, path)
    assert data.format == "spss"
    assert data.value_labels["IMG_REPUTATION"][5.0] == "Strongly agree"
    assert data.question_text["NPS"] == "How likely are you to recommend us?"


def test_qualtrics_export_with_three_header_rows(study, export, tmp_path):
    frame = export.rename(columns={"respondent_id": "ResponseId", "email": "RecipientEmail"})
    frame.insert(1, "IPAddress", "192.168.0.1")
    frame.insert(2, "LocationLatitude", 52.1)
    frame.insert(3, "Duration (in seconds)", 300)
    header = list(frame.columns)
    text = ["Response ID" if c == "ResponseId" else f"Question {c}" for c in header]
    import_ids = [json.dumps({"ImportId": c}) for c in header]
    path = tmp_path / "qualtrics.csv"
    pd.DataFrame([text, import_ids], columns=header).pipe(
        lambda meta: pd.concat([meta, frame.astype(object)], ignore_index=True)
    ).to_csv(path, index=False)
    data = load_responses(study, path)
    assert data.format == "qualtrics"
    assert data.n_respondents == 300
    assert data.frame["respondent_id"].iloc[0] == "R000001"
    assert set(data.dropped_personal_data) == {"RecipientEmail", "IPAddress", "LocationLatitude"}
    assert data.ignored_columns == ["Duration (in seconds)"]
    assert data.question_text["NPS"] == "Question NPS"
    # rows are counted as in the file: the first response is on line 4
    frame.loc[2, "NPS"] = 11
    frame.astype(object).pipe(
        lambda f: pd.concat([pd.DataFrame([text, import_ids], columns=header), f])
    ).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"line 6 \(11\)"):
        load_responses(study, path)


def test_personal_data_found_by_name_and_content(study, export, tmp_path):
    export["Phone Number"] = "+49 30 1234567"
    export["contact"] = [f"person{i}@mail.example.org" for i in range(len(export))]
    export["notes"] = "called back"
    path = write_responses(export, tmp_path / "r.csv")
    data = load_responses(study, path)
    assert set(data.dropped_personal_data) == {"email", "Phone Number", "contact"}
    assert "e-mail addresses" in data.dropped_personal_data["contact"]
    assert data.ignored_columns == ["notes"]
    report = data.quality_report().to_text()
    assert "person0@" not in report and "Phone Number" in report


def test_ids_keep_leading_zeros(study, export, tmp_path):
    export["respondent_id"] = [f"{i:05d}" for i in range(len(export))]
    data = load_responses(study, write_responses(export, tmp_path / "r.csv"))
    assert data.frame["respondent_id"].iloc[1] == "00001"


def test_scale_labels_are_mapped_to_codes(study, export, tmp_path):
    export["IMG_REPUTATION"] = export["IMG_REPUTATION"].astype(object)
    export.loc[0, "IMG_REPUTATION"] = "Strongly agree"
    export.loc[1, "IMG_REPUTATION"] = " disagree "
    data = load_responses(study, write_responses(export, tmp_path / "r.csv"))
    assert data.frame["IMG_REPUTATION"].iloc[:2].tolist() == [5.0, 2.0]


def test_declared_delimiter_and_encoding(study, export, tmp_path):
    export["segment"] = export["segment"].cat.rename_categories({"Consumer": "Consumer"})
    path = tmp_path / "r.csv"
    export.to_csv(path, index=False, sep=";", encoding="latin-1")
    data = load_responses(study, path, delimiter=";", encoding="latin-1")
    assert data.n_respondents == 300


# --------------------------------------------------------------------------- CLI: good data
def test_cli_validate_prints_quality_report(capsys, export, tmp_path):
    path = write_responses(export, tmp_path / "responses.csv")
    code, out, err = validate(capsys, path)
    assert code == 0, err
    assert "respondents 300" in out
    assert "segment     Consumer" in out
    assert "straight-lining" in out and "floor/ceiling" in out
    assert "personal data    dropped on load: email" in out
    code, out, _ = validate(capsys, path, "--json")
    assert code == 0 and json.loads(out)["n_respondents"] == 300


# --------------------------------------------------------------------------- CLI: bad data
def _expect_bad(capsys, path, *fragments, extra=()):
    code, out, err = validate(capsys, path, *extra)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert str(path) in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_file_that_does_not_exist(capsys, tmp_path):
    _expect_bad(capsys, tmp_path / "nope.csv", "file not found")


def test_empty_file(capsys, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    _expect_bad(capsys, path, "the file is empty (0 bytes)")


def test_header_only_file(capsys, export, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text(",".join(export.columns) + "\n")
    _expect_bad(capsys, path, "has a header (", "but no responses")


def test_wrong_delimiter(capsys, export, tmp_path):
    path = tmp_path / "semicolons.csv"
    export.to_csv(path, index=False, sep=";")
    _expect_bad(capsys, path, "looks semicolon-separated", "--delimiter ';'")


def test_latin1_export(capsys, export, tmp_path):
    export["segment"] = export["segment"].astype(str).replace("Small business", "Petite entreprise")
    export.loc[5, "segment"] = "Société"
    path = tmp_path / "latin1.csv"
    export.to_csv(path, index=False, encoding="latin-1")
    err = _expect_bad(capsys, path, "not utf-8 text", "byte 0xe9 at line 7", "--encoding latin-1")
    assert "Soci" in err


def test_duplicated_ids(capsys, export, tmp_path):
    export.loc[[3, 7], "respondent_id"] = "R000002"
    path = write_responses(export, tmp_path / "dups.csv")
    _expect_bad(
        capsys,
        path,
        "column 'respondent_id': respondent ids are not unique: 1 id(s) appear more than once",
        "line 3 ('R000002'), line 5 ('R000002'), line 9 ('R000002')",
    )


def test_text_in_a_numeric_item(capsys, export, tmp_path):
    export["SAT_OVERALL"] = export["SAT_OVERALL"].astype(object)
    export.loc[[0, 9], "SAT_OVERALL"] = ["very good", "n/a?"]
    path = write_responses(export, tmp_path / "text.csv")
    _expect_bad(
        capsys,
        path,
        "column 'SAT_OVERALL': has text where numbers were expected",
        "line 2 ('very good'), line 11 ('n/a?')",
        "whole numbers from 1 to 5 or the scale's labels",
    )


@pytest.mark.parametrize(
    ("item", "value", "scale"),
    [("NPS", 11, "0 to 10"), ("IMG_REPUTATION", 0, "1 to 5")],
)
def test_values_outside_the_scale(capsys, export, tmp_path, item, value, scale):
    export.loc[[4, 20, 21], item] = value
    path = write_responses(export, tmp_path / "range.csv")
    _expect_bad(
        capsys,
        path,
        f"column {item!r}: answers lie outside the item's",
        f"line 6 ({value}), line 22 ({value}), line 23 ({value})",
        f"whole numbers from {scale}",
    )


def test_fractional_answers(capsys, export, tmp_path):
    export["NPS"] = export["NPS"].astype("float64")
    export.loc[0, "NPS"] = 7.5
    _expect_bad(
        capsys,
        write_responses(export, tmp_path / "f.csv"),
        "answers are not whole numbers",
        "line 2 (7.5)",
    )


def test_missing_item_column(capsys, export, tmp_path):
    path = write_responses(export.drop(columns=["SAT_IDEAL"]), tmp_path / "missing.csv")
    _expect_bad(capsys, path, "column 'SAT_IDEAL': item of construct 'Satisfaction' is missing")


def test_construct_with_no_items_in_the_data(capsys, export, tmp_path):
    cols = ["IMG_REPUTATION", "IMG_INNOVATIVE", "IMG_TRUSTWORTHY"]
    path = write_responses(export.drop(columns=cols), tmp_path / "noimage.csv")
    _expect_bad(
        capsys,
        path,
        "construct 'Image' has none of its items in the data (IMG_REPUTATION, IMG_INNOVATIVE",
    )


def test_renamed_columns_get_a_hint(capsys, export, tmp_path):
    path = write_responses(export.rename(columns={"NPS": "nps"}), tmp_path / "lower.csv")
    _expect_bad(
        capsys,
        path,
        "column 'NPS': item of construct 'Loyalty' is missing (the file has 'nps': names are case-sensitive)",
    )


def test_undeclared_segment_values(capsys, export, tmp_path):
    export["segment"] = export["segment"].astype(str)
    export.loc[1, "segment"] = "enterprise"
    export.loc[2, "segment"] = "Goverment"
    path = write_responses(export, tmp_path / "seg.csv")
    _expect_bad(
        capsys,
        path,
        "column 'segment': values are not among the declared segments",
        "'enterprise' -> 'Enterprise'?",
        "line 3 ('enterprise'), line 4 ('Goverment')",
        "one of 'Consumer', 'Small business', 'Enterprise'",
    )


def test_bad_weights_and_waves(capsys, export, tmp_path):
    export.loc[0, "weight"] = -1
    export["wave"] = export["wave"].astype(str)
    export.loc[1, "wave"] = "2027-Q1"
    path = write_responses(export, tmp_path / "w.csv")
    _expect_bad(
        capsys,
        path,
        "column 'weight': weights are not positive",
        "column 'wave': values are not among the declared waves",
        "2 problems found",
    )


def test_several_problems_are_all_reported(study, export, tmp_path):
    export.loc[0, "NPS"] = 12
    export.loc[1, "respondent_id"] = "R000001"
    path = write_responses(export.drop(columns=["SAT_IDEAL"]), tmp_path / "many.csv")
    with pytest.raises(DataValidationError) as info:
        load_responses(study, path)
    assert set(info.value.columns) == {"SAT_IDEAL", "NPS", "respondent_id"}


def test_many_offenders_are_summarised(capsys, export, tmp_path):
    export["NPS"] = 42
    path = write_responses(export, tmp_path / "all.csv")
    _expect_bad(capsys, path, "and 295 more")


def test_bad_spec_exits_2(capsys, tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_text("name: x\ncolumns: {respondent_id: id}\nconstructs: {Image: {items: {}}}\n")
    code, _, err = run_cli(capsys, "validate", "--study", str(spec), str(tmp_path / "d.csv"))
    assert code == 2 and "at least one item" in err and "Traceback" not in err
