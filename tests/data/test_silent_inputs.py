"""Inputs once accepted silently now give a clear error or a reported rule (issue #22, item 8).

Infinite weights, duplicate column names, Qualtrics preview/test/unfinished rows, a
multi-sheet workbook, SPSS value labels on segment codes, "NA"/"#N/A"/"null" texts read as
missing, and a segment value "NA".
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxlib.data import load_responses
from cxlib.errors import DataValidationError
from cxlib.study import load_study
from tests.data import test_own_exports as own_exports
from tests.data.test_own_exports import run_cli

EXPORT = """\
region,w,COMP1,COMP2,COMP3,NPS
1,1.0,7,6,5,9
2,0.5,6,5,5,10
1,2.0,5,5,4,0
2,1.5,7,7,7,8
1,1.0,3,2,3,5
2,1.0,4,4,5,7
"""

SPEC = """\
name: silent
columns:
  weight: w
  segments: {region: {1: North, 2: South}}
source: {file: export.csv}
scales: {s7: {min: 1, max: 7}}
constructs:
  COMP: {items: {COMP1: {text: a, scale: s7}, COMP2: {text: b, scale: s7}, COMP3: {text: c, scale: s7}}}
items:
  NPS: {text: n, scale: {min: 0, max: 10}}
"""


def write_study(tmp_path, export=EXPORT, spec=SPEC, name="export.csv"):
    """The spec (and the export unless None) written to ``tmp_path``, loaded."""
    if export is None:
        (tmp_path / "study.yaml").write_text(spec)
        return load_study(tmp_path / "study.yaml")
    return own_exports.write_study(tmp_path, export, spec, name)


def frame_of(export=EXPORT) -> pd.DataFrame:
    return pd.read_csv(pd.io.common.StringIO(export))


# ------------------------------------------------------------------- infinite weights
def test_infinite_weights_are_refused_naming_the_column_and_rows(tmp_path, capsys):
    export = EXPORT.replace("2,0.5,", "2,inf,").replace("2,1.5,", "2,-inf,")
    write_study(tmp_path, export=export)
    with pytest.raises(DataValidationError) as info:
        load_responses(load_study(tmp_path / "study.yaml"))
    text = str(info.value)
    assert "column 'w': weights are infinite (KPIs would come out NaN)" in text
    assert "at line 3 (inf), line 5 (-inf)" in text
    code, _, err = run_cli(capsys, "validate", "--study", str(tmp_path / "study.yaml"))
    assert code == 2 and "weights are infinite" in err and "internal error" not in err


# ------------------------------------------------------------------ duplicate columns
def test_duplicate_column_names_the_study_uses_are_refused(tmp_path, capsys):
    lines = EXPORT.splitlines()
    export = (
        "\n".join([lines[0] + ",COMP1"] + [f"{row},1" for row in lines[1:]]) + "\n"
    )  # a second COMP1 at the end: pandas would read it as 'COMP1.1'
    write_study(tmp_path, export=export)
    code, _, err = run_cli(capsys, "validate", "--study", str(tmp_path / "study.yaml"))
    assert code == 2
    assert "column 'COMP1': 2 columns (3, 7) are named 'COMP1'" in err


def test_duplicate_unused_columns_are_noted(tmp_path):
    lines = EXPORT.splitlines()
    export = "\n".join([lines[0] + ",comment,comment"] + [f"{row},x,y" for row in lines[1:]]) + "\n"
    data = load_responses(write_study(tmp_path, export=export))
    assert any("2 columns (7, 8) 'comment'; the study does not use them" in n for n in data.notes)


def test_duplicate_columns_in_excel_are_refused(tmp_path):
    frame = frame_of()
    frame.insert(3, "COMP1_copy", frame["COMP1"])
    frame.columns = [c.replace("COMP1_copy", "COMP1") for c in frame.columns]
    frame.to_excel(tmp_path / "export.xlsx", index=False)
    study = write_study(tmp_path, export=None, spec=SPEC.replace("export.csv", "export.xlsx"))
    with pytest.raises(DataValidationError, match=r"2 columns \(3, 4\) are named 'COMP1'"):
        load_responses(study)


# --------------------------------------------------------- Qualtrics preview/test/unfinished
def qualtrics_export(tmp_path, channels, finished, na_at=()) -> None:
    frame = frame_of().astype(object)
    for row in na_at:
        frame.loc[row, "COMP2"] = "NA"
    frame.insert(0, "ResponseId", [f"R_{i}" for i in range(len(frame))])
    frame.insert(1, "DistributionChannel", channels)
    frame.insert(2, "Finished", finished)
    header = list(frame.columns)
    meta = pd.DataFrame(
        [[f"Question {c}" for c in header], [json.dumps({"ImportId": c}) for c in header]],
        columns=header,
    )
    pd.concat([meta, frame.astype(object)], ignore_index=True).to_csv(
        tmp_path / "export.csv", index=False
    )


QUALTRICS_SPEC = SPEC.replace("columns:\n", "columns:\n  respondent_id: ResponseId\n")


def test_qualtrics_preview_test_and_unfinished_rows_are_left_out_and_counted(tmp_path, capsys):
    qualtrics_export(
        tmp_path,
        ["anonymous", "preview", "anonymous", "test", "anonymous", "email"],
        ["True", "True", "False", "True", "True", "True"],
        na_at=(1, 4),  # a preview's "NA" is not counted: the preview is not a respondent
    )
    study = write_study(tmp_path, export=None, spec=QUALTRICS_SPEC)
    data = load_responses(study)
    assert data.missing_tokens == {"COMP2": {"NA": 1}}
    assert data.format == "qualtrics"
    assert data.n_respondents == 3
    assert data.frame["ResponseId"].tolist() == ["R_0", "R_4", "R_5"]
    assert data.excluded_rows == {"preview": 1, "test": 1, "unfinished": 1}
    report = data.quality_report()
    assert report.to_dict()["excluded_rows"] == {"preview": 1, "test": 1, "unfinished": 1}
    assert "left out     1 preview, 1 test, 1 unfinished response(s)" in report.to_text()
    assert any(
        "3 of 6 rows left out" in n and "keep_preview: true, keep_unfinished: true" in n
        for n in data.notes
    )
    code, out, _ = run_cli(capsys, "validate", "--study", str(tmp_path / "study.yaml"))
    assert code == 0 and "respondents 3" in out


def test_qualtrics_rows_are_kept_on_request_and_numeric_finished_is_read(tmp_path):
    qualtrics_export(tmp_path, ["anonymous", "preview"] + ["anonymous"] * 4, [1, 1, 0, 0, 1, 1])
    spec = QUALTRICS_SPEC
    assert load_responses(write_study(tmp_path, export=None, spec=spec)).n_respondents == 3
    keep = spec.replace(
        "source: {file: export.csv}",
        "source: {file: export.csv, keep_preview: true, keep_unfinished: true}",
    )
    data = load_responses(write_study(tmp_path, export=None, spec=keep))
    assert data.n_respondents == 6 and data.excluded_rows == {}


def test_rows_are_still_named_as_in_the_file_after_rows_are_left_out(tmp_path):
    qualtrics_export(tmp_path, ["preview"] + ["anonymous"] * 5, ["True"] * 6)
    text = (tmp_path / "export.csv").read_text().splitlines()
    text[-1] = text[-1].replace(",7\n", ",11").rsplit(",", 1)[0] + ",11"  # NPS 11: last row
    (tmp_path / "export.csv").write_text("\n".join(text) + "\n")
    study = write_study(tmp_path, export=None, spec=QUALTRICS_SPEC)
    with pytest.raises(DataValidationError, match=r"line 9 \(11\)"):
        load_responses(study)


# -------------------------------------------------------------------- multi-sheet Excel
def two_sheet_workbook(tmp_path):
    frame = frame_of()
    with pd.ExcelWriter(tmp_path / "export.xlsx") as writer:
        frame.head(2).to_excel(writer, sheet_name="Pilot", index=False)
        frame.to_excel(writer, sheet_name="Main wave", index=False)
        pd.DataFrame({"code": [1, 2], "label": ["North", "South"]}).to_excel(
            writer, sheet_name="Codebook", index=False
        )


def test_a_workbook_with_several_sheets_is_refused_without_a_chosen_sheet(tmp_path, capsys):
    two_sheet_workbook(tmp_path)
    write_study(tmp_path, export=None, spec=SPEC.replace("export.csv", "export.xlsx"))
    code, _, err = run_cli(capsys, "validate", "--study", str(tmp_path / "study.yaml"))
    assert code == 2
    assert "the workbook has 3 sheets ('Pilot', 'Main wave', 'Codebook')" in err
    assert "`source: {sheet: Pilot}` in the study spec, or `--sheet Pilot`" in err
    code, out, _ = run_cli(
        capsys, "validate", "--study", str(tmp_path / "study.yaml"), "--sheet", "Main wave"
    )
    assert code == 0 and "respondents 6" in out


def test_the_spec_chooses_the_sheet(tmp_path):
    two_sheet_workbook(tmp_path)
    spec = SPEC.replace("source: {file: export.csv}", "source: {file: export.xlsx, sheet: Pilot}")
    assert load_responses(write_study(tmp_path, export=None, spec=spec)).n_respondents == 2
    wrong = spec.replace("sheet: Pilot", "sheet: Pilots")
    with pytest.raises(DataValidationError, match="cannot read the sheet 'Pilots'"):
        load_responses(write_study(tmp_path, export=None, spec=wrong))


def test_cx_init_on_a_workbook_with_several_sheets_suggests_the_sheet(tmp_path, capsys):
    two_sheet_workbook(tmp_path)
    out = tmp_path / "drafted.yaml"
    code, _, err = run_cli(capsys, "init", str(tmp_path / "export.xlsx"), "--out", str(out))
    assert code == 2 and "--sheet Pilot" in err
    code, _, _ = run_cli(
        capsys, "init", str(tmp_path / "export.xlsx"), "--out", str(out), "--sheet", "Main wave"
    )
    assert code == 0
    assert load_study(out).source.sheet == "Main wave"


# ------------------------------------------------------------------------ SPSS labels
@pytest.mark.parametrize(
    "segments", ["{region: [North, South]}", "{region: null}", "{region: [1, 2]}"]
)
def test_spss_value_labels_are_applied_to_numeric_segment_codes(tmp_path, segments):
    import pyreadstat

    frame = frame_of().astype(float)
    pyreadstat.write_sav(
        frame,
        str(tmp_path / "export.sav"),
        variable_value_labels={"region": {1.0: "North", 2.0: "South"}},
    )
    spec = SPEC.replace("export.csv", "export.sav").replace(
        "{region: {1: North, 2: South}}", segments
    )
    data = load_responses(write_study(tmp_path, export=None, spec=spec))
    assert data.frame["region"].tolist() == ["North", "South"] * 3
    assert data.segment_labels == {"region": {"1": "North", "2": "South"}}
    report = data.quality_report()
    assert report.segments == {"region": {"North": 3, "South": 3}}


# ---------------------------------------------------------------- missing texts counted
def test_texts_read_as_missing_are_counted_per_column(tmp_path, capsys):
    export = (
        EXPORT.replace("2,0.5,6,5,5,10", "2,0.5,6,NA,5,10")
        .replace("1,2.0,5,5,4,0", "1,2.0,#N/A,5,null,0")
        .replace("1,1.0,3,2,3,5", "1,1.0,3,NA,3,5")
    )
    data = load_responses(write_study(tmp_path, export=export))
    assert data.missing_tokens == {"COMP1": {"#N/A": 1}, "COMP2": {"NA": 2}, "COMP3": {"null": 1}}
    assert data.frame["COMP2"].isna().sum() == 2
    assert data.frame["COMP2"].dtype == np.float64
    report = data.quality_report()
    assert report.to_dict()["missing_tokens"] == data.missing_tokens
    text = report.to_text()
    assert "texts read as missing: '#N/A' 1, 'NA' 2, 'null' 1 in 3 column(s)" in text
    code, out, _ = run_cli(capsys, "validate", "--study", str(tmp_path / "study.yaml"), "--json")
    assert code == 0 and json.loads(out)["missing_tokens"]["COMP2"] == {"NA": 2}


def test_a_declared_text_code_is_counted_as_a_code_not_twice(tmp_path):
    export = EXPORT.replace("2,0.5,6,5,5,10", "2,0.5,6,NA,5,10")
    spec = SPEC.replace(
        "source: {file: export.csv}", "source: {file: export.csv, missing_values: [NA]}"
    )
    data = load_responses(write_study(tmp_path, export=export, spec=spec))
    assert data.missing_codes == {"COMP2": {"NA": 1}}
    assert data.missing_tokens == {}


# --------------------------------------------------------------------- segment "NA"
def test_a_segment_named_na_is_a_segment_not_none(tmp_path):
    export = EXPORT.replace("\n1,", "\nEU,").replace("\n2,", "\nNA,")
    spec = SPEC.replace("{region: {1: North, 2: South}}", "{region: [EU, NA]}")
    data = load_responses(write_study(tmp_path, export=export, spec=spec))
    assert data.frame["region"].tolist() == ["EU", "NA"] * 3
    assert data.quality_report().segments == {"region": {"EU": 3, "NA": 3}}
    assert any("'NA' (3 rows) read as segment value(s), not as missing" in n for n in data.notes)
    # whatever the data hold: "NA" is a segment too, and said so
    spec_null = SPEC.replace("{region: {1: North, 2: South}}", "{region: null}")
    data = load_responses(write_study(tmp_path, export=export, spec=spec_null))
    assert list(data.frame["region"].cat.categories) == ["EU", "NA"]


def test_an_undeclared_segment_na_is_reported_as_na(tmp_path):
    export = EXPORT.replace("\n2,0.5,", "\nNA,0.5,")
    with pytest.raises(DataValidationError) as info:
        load_responses(write_study(tmp_path, export=export))
    text = str(info.value)
    assert "column 'region': values are not among the declared segments" in text
    assert "at line 3 ('NA')" in text and "None" not in text


def test_spss_labels_that_disagree_with_the_spec_codes_are_named(tmp_path):
    import pyreadstat

    frame = frame_of().assign(region=lambda f: f["region"] - 1).astype(float)
    pyreadstat.write_sav(
        frame,
        str(tmp_path / "export.sav"),
        variable_value_labels={"region": {0.0: "North", 1.0: "South"}},
    )
    study = write_study(tmp_path, export=None, spec=SPEC.replace("export.csv", "export.sav"))
    with pytest.raises(DataValidationError) as info:
        load_responses(study)
    assert "the file's value labels say 0 North, 1 South, but the spec's codes come" in str(
        info.value
    )
