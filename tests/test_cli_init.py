"""`cx init DATA`: a study spec drafted from an export loads and validates as it is."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from cxlib.cli import main
from cxlib.data import load_responses
from cxlib.data.draft import draft_study
from cxlib.study import load_study


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def make_export(n: int = 60, seed: int = 5) -> pd.DataFrame:
    """An export unlike the sample: numeric region codes, -99/999 codes, a wave column."""
    rng = np.random.default_rng(seed)
    factor = rng.standard_normal(n)

    def items(prefix, k, lo, hi, sep=""):
        out = {}
        for j in range(1, k + 1):
            mid, half = (lo + hi) / 2, (hi - lo) / 2
            x = np.clip(
                np.round(mid + half * (0.5 * factor + 0.5 * rng.standard_normal(n))), lo, hi
            )
            out[f"{prefix}{sep}{j}"] = x.astype(int)
        return out

    frame = pd.DataFrame(
        {
            "quarter": np.where(np.arange(n) < n // 2, "2025Q1", "2025Q2"),
            "region": 1 + np.arange(n) % 2,
            "email": [f"person{i}@mail.example.org" for i in range(n)],
            **items("SAT", 3, 1, 7),
            **items("IMAG", 3, 1, 7),
            **items("CUSL_", 2, 1, 7),
            "NPS": np.clip(np.round(7 + 2 * factor), 0, 10).astype(int),
            "comment": [f"free text answer number {i}" for i in range(n)],
        }
    )
    frame.loc[[3, 17, n - 1], "SAT2"] = -99
    frame.loc[[5], "IMAG3"] = -999
    frame.loc[[8, 9], "NPS"] = 99
    return frame


def test_draft_of_a_semicolon_csv_without_id(capsys, tmp_path):
    path = tmp_path / "export.csv"
    frame = make_export()
    frame.to_csv(path, sep=";", index=False)
    out = tmp_path / "specs" / "study.yaml"
    code, stdout, err = run_cli(capsys, "init", path, "--out", out)
    assert code == 0, err
    assert "no respondent id column found: rows will be numbered 1..N" in stdout
    spec = yaml.safe_load(out.read_text())
    assert spec["source"]["file"] == "../export.csv"
    assert spec["source"]["delimiter"] == ";"
    assert spec["source"]["missing_values"] == [-99, -999, 99]
    assert "respondent_id" not in spec["columns"]
    assert spec["columns"]["segments"] == {"region": [1, 2]}
    assert spec["columns"]["wave"] == "quarter"
    assert spec["source"]["wave_order"] == ["2025Q1", "2025Q2"]
    assert spec["columns"]["personal_data"] == ["email"]
    assert {c: list(b["items"]) for c, b in spec["constructs"].items()} == {
        "SAT": ["SAT1", "SAT2", "SAT3"],
        "IMAG": ["IMAG1", "IMAG2", "IMAG3"],
        "CUSL": ["CUSL_1", "CUSL_2"],
    }
    assert spec["items"]["NPS"]["scale"] == "scale_0_10"
    assert spec["scales"]["scale_0_10"] == {"min": 0, "max": 10}
    assert spec["kpis"] == {"nps": "NPS"}
    assert "SAT =~ SAT1 + SAT2 + SAT3" in spec["model"]
    text = out.read_text()
    assert "#   comment: text" in text  # left out, and said why
    # the draft is a valid spec as it is, and cx validate runs on it
    study = load_study(out)
    assert study.columns.rows_numbered
    code, stdout, err = run_cli(capsys, "validate", "--study", out, path)
    assert code == 0, err
    assert "code -99: 3 answer(s) turned missing in 1 item(s) (SAT2 3)" in stdout
    assert "code 99: 2 answer(s) turned missing in 1 item(s) (NPS 2)" in stdout
    assert "no respondent id: rows are numbered" in stdout
    assert "email (declared as personal data in the study spec)" in stdout


def test_init_never_overwrites_without_force(capsys, tmp_path):
    path = tmp_path / "export.csv"
    make_export().to_csv(path, index=False)
    out = tmp_path / "study.yaml"
    out.write_text("# my edited spec\n")
    code, _, err = run_cli(capsys, "init", path, "--out", out)
    assert code == 2
    assert "the file exists; cx init does not overwrite a study spec" in err
    assert out.read_text() == "# my edited spec\n"
    code, _, err = run_cli(capsys, "init", path, "--out", out, "--force")
    assert code == 0, err
    assert load_study(out).name == "export"


def test_init_on_a_missing_file_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "init", tmp_path / "nope.csv", "--out", tmp_path / "s.yaml")
    assert code == 2 and "file not found" in err
    assert not (tmp_path / "s.yaml").exists()


def test_draft_finds_an_id_column_and_the_pandas_index(tmp_path):
    frame = make_export()
    frame.insert(0, "caseid", [f"C{i:04d}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "a.csv", index=False)
    draft = draft_study(tmp_path / "a.csv", spec_dir=tmp_path)
    assert draft.spec["columns"]["respondent_id"] == "caseid"
    make_export().to_csv(tmp_path / "b.csv")  # with the pandas index: header ""
    draft = draft_study(tmp_path / "b.csv", spec_dir=tmp_path)
    assert draft.spec["columns"]["respondent_id"] == ""
    path = draft.write(tmp_path / "b.yaml")
    data = load_responses(load_study(path))
    assert data.frame["respondent_id"].tolist()[:2] == ["0", "1"]


def test_draft_of_a_qualtrics_export(capsys, tmp_path):
    frame = make_export(n=40)
    frame.insert(0, "ResponseId", [f"R_{i:05d}" for i in range(len(frame))])
    frame.insert(1, "IPAddress", "10.0.0.1")
    frame.insert(2, "Finished", 1)
    frame.insert(3, "Progress", 100)
    header = list(frame.columns)
    question = [f"Question about {c}" for c in header]
    import_ids = [json.dumps({"ImportId": c}) for c in header]
    path = tmp_path / "qualtrics.csv"
    meta = pd.DataFrame([question, import_ids], columns=header)
    pd.concat([meta, frame.astype(object)], ignore_index=True).to_csv(path, index=False)
    out = tmp_path / "study.yaml"
    code, stdout, err = run_cli(capsys, "init", path, "--out", out)
    assert code == 0, err
    spec = yaml.safe_load(out.read_text())
    assert spec["columns"]["respondent_id"] == "ResponseId"
    assert set(spec["columns"]["personal_data"]) == {"IPAddress", "email"}
    assert spec["constructs"]["SAT"]["items"]["SAT1"]["text"] == "Question about SAT1"
    assert "#   Finished: Qualtrics metadata" in out.read_text()
    code, stdout, err = run_cli(capsys, "validate", "--study", out, path)
    assert code == 0, err
    assert "respondents 40" in stdout


def test_draft_of_an_spss_file_uses_value_labels(capsys, tmp_path):
    import pyreadstat

    frame = make_export().drop(columns=["email", "comment"]).astype({"region": float})
    frame["quarter"] = frame["quarter"].astype(str)
    path = tmp_path / "export.sav"
    agree = {float(k): v for k, v in {1: "Strongly disagree", 7: "Strongly agree"}.items()}
    pyreadstat.write_sav(
        frame.astype({c: float for c in frame.columns if c != "quarter"}),
        str(path),
        column_labels={"SAT1": "Overall, how satisfied are you?"},
        variable_value_labels={"region": {1.0: "North", 2.0: "South"}, "SAT1": agree},
    )
    out = tmp_path / "study.yaml"
    code, _, err = run_cli(capsys, "init", path, "--out", out)
    assert code == 0, err
    spec = yaml.safe_load(out.read_text())
    assert spec["columns"]["segments"] == {"region": {1: "North", 2: "South"}}
    sat_scale = spec["constructs"]["SAT"]["items"]["SAT1"]["scale"]
    assert spec["scales"][sat_scale]["labels"] == {1: "Strongly disagree", 7: "Strongly agree"}
    assert spec["constructs"]["SAT"]["items"]["SAT1"]["text"] == "Overall, how satisfied are you?"
    data = load_responses(load_study(out))
    assert list(data.frame["region"].cat.categories) == ["North", "South"]
    code, stdout, err = run_cli(capsys, "validate", "--study", out, path)
    assert code == 0, err
    assert "region      North 30, South 30" in stdout


@pytest.mark.parametrize("suffix", [".xlsx", ".parquet"])
def test_draft_of_excel_and_parquet(capsys, tmp_path, suffix):
    frame = make_export()
    path = tmp_path / f"export{suffix}"
    if suffix == ".xlsx":
        frame.to_excel(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    out = tmp_path / "study.yaml"
    code, _, err = run_cli(capsys, "init", path, "--out", out)
    assert code == 0, err
    spec = yaml.safe_load(out.read_text())
    assert set(spec["constructs"]) == {"SAT", "IMAG", "CUSL"}
    assert spec["source"]["missing_values"] == [-99, -999, 99]
    code, stdout, err = run_cli(capsys, "validate", "--study", out, path)
    assert code == 0, err
    assert "respondents 60" in stdout


def test_draft_text_and_spec_agree(tmp_path):
    path = tmp_path / "export.csv"
    make_export().to_csv(path, index=False)
    draft = draft_study(path, spec_dir=tmp_path)
    assert yaml.safe_load(draft.text) == draft.spec
    assert draft.study.name == "export"


def test_text_na_codes_are_proposed(tmp_path):
    frame = make_export().astype({"SAT1": object})
    frame.loc[[1, 2], "SAT1"] = "NA"
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    draft = draft_study(path, spec_dir=tmp_path)
    assert "NA" in draft.spec["source"]["missing_values"]
    path_spec = draft.write(tmp_path / "study.yaml")
    data = load_responses(load_study(path_spec))
    assert data.missing_codes["SAT1"] == {"NA": 2}


def test_segment_with_gaps_is_left_out_and_the_draft_still_validates(capsys, tmp_path):
    frame = make_export().astype({"region": object, "SAT1": object})
    frame.loc[4, "region"] = "NA"
    frame.loc[6, "SAT1"] = "NA"
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "study.yaml"
    code, _, err = run_cli(capsys, "init", path, "--out", out)
    assert code == 0, err
    spec = yaml.safe_load(out.read_text())
    assert "segments" not in spec["columns"]
    assert "#   region: few distinct values, but some rows have none" in out.read_text()
    code, stdout, err = run_cli(capsys, "validate", "--study", out, path)
    assert code == 0, err
    assert "code NA: 1 answer(s) turned missing in 1 item(s) (SAT1 1)" in stdout
