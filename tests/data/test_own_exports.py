"""Real exports as they come: missing-value codes, no id column, labelled segment codes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cxlib.cli import main
from cxlib.data import load_responses
from cxlib.errors import DataValidationError
from cxlib.study import load_study

# A corporate-reputation style export: `;`-separated, -99/-999/NA for no answer, no id
# column, numeric region codes, a single-item construct (PRICE) and a 0-10 NPS item.
EXPORT = """\
region;COMP1;COMP2;COMP3;LIKE1;LIKE2;PRICE;NPS
1;7;6;-99;5;5;3;9
2;6;-99;5;4;NA;2;10
1;5;5;4;-999;4;1;0
2;7;7;7;6;6;-99;8
1;3;2;3;2;1;2;5
2;4;4;5;3;3;4;7
"""

SPEC = """\
name: reputation
columns:
  segments: {region: {1: North, 2: South}}
source: {file: export.csv, delimiter: ";", missing_values: [-99, -999, NA]}
scales: {s7: {min: 1, max: 7}}
constructs:
  COMP: {items: {COMP1: {text: a, scale: s7}, COMP2: {text: b, scale: s7}, COMP3: {text: c, scale: s7}}}
  LIKE: {items: {LIKE1: {text: a, scale: s7}, LIKE2: {text: b, scale: s7}}}
  Price: {reliability: 0.8, items: {PRICE: {text: p, scale: s7}}}
items:
  NPS: {text: n, scale: {min: 0, max: 10}}
model: |
  LIKE ~ COMP + Price
"""


def write_study(tmp_path, export=EXPORT, spec=SPEC, name="export.csv"):
    (tmp_path / name).write_text(export)
    path = tmp_path / "study.yaml"
    path.write_text(spec)
    return load_study(path)


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_missing_codes_no_id_and_labelled_segments(tmp_path):
    study = write_study(tmp_path)
    data = load_responses(study)
    frame = data.frame
    assert frame["respondent_id"].tolist() == ["1", "2", "3", "4", "5", "6"]
    assert frame["region"].tolist() == ["North", "South"] * 3
    assert list(frame["region"].cat.categories) == ["North", "South"]
    assert np.isnan(frame.loc[0, "COMP3"]) and np.isnan(frame.loc[1, "LIKE2"])
    assert np.isnan(frame.loc[2, "LIKE1"]) and frame.loc[2, "NPS"] == 0
    assert data.missing_codes == {
        "COMP2": {"-99": 1},
        "COMP3": {"-99": 1},
        "PRICE": {"-99": 1},
        "LIKE1": {"-999": 1},
        "LIKE2": {"NA": 1},
    }
    report = data.quality_report()
    assert report.missing_codes["-99"] == {
        "answers": 3,
        "items": {"COMP2": 1, "COMP3": 1, "PRICE": 1},
    }
    text = report.to_text()
    assert "code -99: 3 answer(s) turned missing in 3 item(s) (COMP2 1, COMP3 1, PRICE 1)" in text
    assert "code NA: 1 answer(s) turned missing in 1 item(s) (LIKE2 1)" in text
    assert "no respondent id: rows are numbered 1..N in file order" in text
    assert "region      North 3, South 3" in text
    assert "construct 'Price' has one item (PRICE)" in text
    assert report.to_dict()["notes"] == report.notes


def test_cli_validate_says_what_the_codes_did(capsys, tmp_path):
    write_study(tmp_path)
    code, out, err = run_cli(capsys, "validate", "--study", str(tmp_path / "study.yaml"))
    assert code == 0, err
    assert "code -999: 1 answer(s) turned missing" in out
    assert "its residual variance at (1 - 0.8) x the item's variance" in out
    code, out, err = run_cli(capsys, "validate", "--study", str(tmp_path / "study.yaml"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["missing_codes"]["-999"] == {"answers": 1, "items": {"LIKE1": 1}}
    assert report["notes"][0] == "no respondent id: rows are numbered 1..N in file order"


def test_without_the_codes_minus_99_is_outside_the_scale(tmp_path):
    study = write_study(tmp_path, spec=SPEC.replace(", missing_values: [-99, -999, NA]", ""))
    with pytest.raises(DataValidationError) as info:
        load_responses(study)
    assert "column 'COMP3': answers lie outside the item's 1-7 scale" in str(info.value)


def test_item_codes_add_to_the_study_codes(tmp_path):
    export = EXPORT.replace("1;5;5;4;-999;4;1;0", "1;5;5;4;-999;4;1;98")
    spec = SPEC.replace(
        "NPS: {text: n, scale: {min: 0, max: 10}}",
        "NPS: {text: n, scale: {min: 0, max: 10}, missing_values: [98]}",
    )
    data = load_responses(write_study(tmp_path, export=export, spec=spec))
    assert data.missing_codes["NPS"] == {"98": 1}
    assert np.isnan(data.frame.loc[2, "NPS"])


def test_unknown_segment_code_in_the_validation_style(tmp_path):
    export = EXPORT.replace("2;4;4;5;3;3;4;7", "3;4;4;5;3;3;4;7")
    study = write_study(tmp_path, export=export)
    with pytest.raises(DataValidationError) as info:
        load_responses(study)
    message = str(info.value)
    assert "export.csv: 1 problem found" in message
    assert "column 'region': values are not among the declared segments" in message
    assert "at line 7 ('3')" in message
    assert "expected: one of '1' (North), '2' (South)" in message


def test_numeric_segment_codes_unquoted_and_labels_accepted(tmp_path):
    spec = SPEC.replace("{region: {1: North, 2: South}}", "{region: [1, 2]}")
    data = load_responses(write_study(tmp_path, spec=spec))
    assert data.frame["region"].tolist()[:2] == ["1", "2"]
    # an export that already holds the labels loads with the labelled spec too
    export = EXPORT.replace("\n1;", "\nNorth;").replace("\n2;", "\nSouth;")
    data = load_responses(write_study(tmp_path, export=export))
    assert data.frame["region"].tolist()[:2] == ["North", "South"]


def test_parquet_with_numeric_codes_and_gaps(tmp_path):
    frame = pd.read_csv(pd.io.common.StringIO(EXPORT), sep=";", keep_default_na=False)
    frame["NPS"] = frame["NPS"].astype(float)
    frame["region"] = frame["region"].astype(float)  # 1.0 / 2.0 as Parquet floats
    frame.to_parquet(tmp_path / "export.parquet")
    study = write_study(tmp_path, spec=SPEC.replace("export.csv", "export.parquet"))
    data = load_responses(study)
    assert data.frame["region"].tolist()[:2] == ["North", "South"]
    assert data.missing_codes["LIKE2"] == {"NA": 1}


def test_spss_value_labels_name_segment_codes(tmp_path):
    import pyreadstat

    frame = pd.read_csv(pd.io.common.StringIO(EXPORT), sep=";", na_values=["NA"]).astype(float)
    pyreadstat.write_sav(
        frame,
        str(tmp_path / "export.sav"),
        variable_value_labels={"region": {1.0: "Nord", 2.0: "Sued"}},
    )
    spec = SPEC.replace("export.csv", "export.sav").replace(
        "{region: {1: North, 2: South}}", "{region: [1, 2]}"
    )
    data = load_responses(write_study(tmp_path, spec=spec))
    assert data.frame["region"].tolist()[:2] == ["Nord", "Sued"]
    assert data.segment_labels == {"region": {"1": "Nord", "2": "Sued"}}
    assert any("value labels name the codes (1 Nord, 2 Sued)" in n for n in data.notes)
    # the spec's own labels win over the file's
    labelled = write_study(tmp_path, spec=SPEC.replace("export.csv", "export.sav"))
    assert load_responses(labelled).frame["region"].tolist()[:2] == ["North", "South"]
    # no declared values at all: the file's labels, in code order
    spec_none = spec.replace("{region: [1, 2]}", "{region: null}")
    data = load_responses(write_study(tmp_path, spec=spec_none))
    assert list(data.frame["region"].cat.categories) == ["Nord", "Sued"]


def test_unnamed_first_column_as_respondent_id(tmp_path):
    frame = pd.read_csv(pd.io.common.StringIO(EXPORT), sep=";", keep_default_na=False)
    frame.index = [f"C{i}" for i in range(100, 106)]
    frame.to_csv(tmp_path / "export.csv", sep=";")  # pandas writes its index, header ""
    assert (tmp_path / "export.csv").read_text().startswith(";region;")
    spec = SPEC.replace("columns:\n", 'columns:\n  respondent_id: ""\n')
    study = write_study(tmp_path, export=(tmp_path / "export.csv").read_text(), spec=spec)
    data = load_responses(study)
    assert data.frame["respondent_id"].tolist()[:2] == ["C100", "C101"]
    assert "respondent id: the file's unnamed first column ('Unnamed: 0')" in data.notes
    assert "Unnamed: 0" not in data.ignored_columns
    # Parquet keeps a pandas index as its index
    frame.to_parquet(tmp_path / "export.parquet")
    study = write_study(tmp_path, spec=spec.replace("export.csv", "export.parquet"))
    assert load_responses(study).frame["respondent_id"].tolist()[-1] == "C105"


def test_unnamed_id_without_an_unnamed_column_is_a_clear_error(capsys, tmp_path):
    spec = SPEC.replace("columns:\n", 'columns:\n  respondent_id: ""\n')
    write_study(tmp_path, spec=spec)
    code, out, err = run_cli(capsys, "validate", "--study", str(tmp_path / "study.yaml"))
    assert code == 2
    assert "internal error" not in err
    assert (
        'columns.respondent_id is "" (the file\'s unnamed first column), but the first '
        "column is named 'region'"
    ) in err
    assert "leave respondent_id out to number the rows" in err


def test_named_id_still_required_and_unique(tmp_path):
    lines = EXPORT.splitlines()
    export = "\n".join(
        ["caseid;" + lines[0]] + [f"{i % 3};{line}" for i, line in enumerate(lines[1:])]
    )
    spec = SPEC.replace("columns:\n", "columns:\n  respondent_id: caseid\n")
    with pytest.raises(DataValidationError, match="respondent ids are not unique"):
        load_responses(write_study(tmp_path, export=export + "\n", spec=spec))


def test_a_column_named_respondent_id_is_pointed_out_when_rows_are_numbered(tmp_path):
    lines = EXPORT.splitlines()
    export = "\n".join(
        ["respondent_id;" + lines[0]] + [f"R{i};{x}" for i, x in enumerate(lines[1:])]
    )
    data = load_responses(write_study(tmp_path, export=export + "\n"))
    assert data.frame["respondent_id"].iloc[0] == "1"
    assert "the file has a column 'respondent_id': name it under" in data.notes[0]


def test_excel_keeps_declared_text_codes_countable(tmp_path):
    frame = pd.read_csv(pd.io.common.StringIO(EXPORT), sep=";", keep_default_na=False)
    frame.to_excel(tmp_path / "export.xlsx", index=False)
    study = write_study(
        tmp_path, spec=SPEC.replace("export.csv", "export.xlsx").replace('delimiter: ";", ', "")
    )
    data = load_responses(study)
    assert data.missing_codes["LIKE2"] == {"NA": 1}
    assert data.frame["region"].tolist()[:2] == ["North", "South"]


def test_sem_data_from_an_export_without_id(tmp_path):
    """The models read items and segments; they need no id column."""
    from cxlib.models.sem.data import prepare_data

    rng = np.random.default_rng(3)
    n = 80
    factor = rng.standard_normal(n)
    rows = ["region;COMP1;COMP2;COMP3;LIKE1;LIKE2;PRICE;NPS"]
    for i in range(n):
        answers = np.clip(np.round(4 + 1.2 * factor[i] + rng.standard_normal(7)), 1, 7)
        answers[6] = np.clip(answers[6] + 3, 0, 10)
        cells = [str(int(a)) for a in answers]
        if i % 9 == 0:
            cells[i % 6] = "-99"
        rows.append(";".join([str(1 + i % 2), *cells]))
    data = load_responses(write_study(tmp_path, export="\n".join(rows) + "\n"))
    items = data.study.item_names
    sem = prepare_data(data, items, group="region")
    assert list(sem.groups) == ["North", "South"]
    assert len(sem.respondent_ids) == n
    assert sum(data.missing_codes[i]["-99"] for i in data.missing_codes) == 9
