"""Not applicable, not failed: steps a study lacks the inputs for, and their dependents.

Tiny generated notebooks: ``up`` raises :class:`cxlib.errors.NotApplicable` on request;
``down`` needs its output; ``maybe`` takes it as an optional input; ``other`` needs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxlib.pipeline.publish import read_pointer
from cxlib.pipeline.runner import run_pipeline
from cxlib.pipeline.store import ResultsStore

from .conftest import write_notebook

#: executes notebooks with papermill and real kernels (make check leaves them out)
pytestmark = pytest.mark.notebooks

REASON = "the study declares no widgets; to add them, tag items with `widget:`"

UP = """\
output_dir: str = ""  # where artifacts go
mode: str = "na"  # na (not applicable) or ok
"""
UP_BODY = f"""\
import pathlib
from cxlib.errors import NotApplicable

if mode == "na":
    raise NotApplicable({REASON!r})
(pathlib.Path(output_dir) / "value.txt").write_text("up")
"""
DOWN = """\
output_dir: str = ""  # where artifacts go
up_dir: str = ""  # output folder of up
"""
DOWN_BODY = """\
import pathlib
(pathlib.Path(output_dir) / "seen.txt").write_text((pathlib.Path(up_dir) / "value.txt").read_text())
"""
MAYBE_BODY = """\
import pathlib
(pathlib.Path(output_dir) / "seen.txt").write_text(up_dir or "without up")
"""
LAST = """\
output_dir: str = ""  # where artifacts go
down_dir: str = ""  # output folder of down
"""
OTHER = """\
output_dir: str = ""  # where artifacts go
"""


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("na-notebooks")
    return {
        "up": write_notebook(folder / "up.ipynb", UP, UP_BODY),
        "down": write_notebook(folder / "down.ipynb", DOWN, DOWN_BODY),
        "maybe": write_notebook(folder / "maybe.ipynb", DOWN, MAYBE_BODY),
        "last": write_notebook(folder / "last.ipynb", LAST, "assert down_dir"),
        "other": write_notebook(folder / "other.ipynb", OTHER, "print('other')"),
    }


@pytest.fixture
def na_spec(make_spec, notebooks):
    def make(mode: str = "na", **overrides):
        entries = [
            {"path": str(notebooks["up"]), "parameters": {"mode": mode}},
            {"path": str(notebooks["down"]), "inputs": {"up_dir": "up"}},
            {"path": str(notebooks["last"]), "inputs": {"down_dir": "down"}},
            {
                "path": str(notebooks["maybe"]),
                "inputs": {"up_dir": "up"},
                "optional_inputs": ["up_dir"],
            },
            {"path": str(notebooks["other"])},
        ]
        return make_spec("na", notebooks=entries, **overrides)

    return make


def by_slot(result) -> dict:
    return {r.slot: r for r in result.records}


def test_not_applicable_steps_and_their_dependents_are_recorded_not_failed(na_spec, tmp_path):
    result = run_pipeline(na_spec(), jobs=2, progress=False)
    runs = by_slot(result)
    assert result.ok and not result.failed, result.summary_table()  # exit status 0
    up, down, last = runs["up/default"], runs["down/default"], runs["last/default"]
    assert up.status == "not_applicable" and up.reason == REASON
    assert down.status == "not_applicable"
    assert down.reason == f"needs up/default, which is not applicable: {REASON}"
    assert last.reason.startswith("needs down/default, which is not applicable: needs up/default")
    assert runs["maybe/default"].status == "succeeded"  # an optional input is left out
    maybe_out = Path(runs["maybe/default"].manifest["output_dir"])
    assert (maybe_out / "seen.txt").read_text() == "without up"
    assert runs["other/default"].status == "succeeded"

    # the manifests: the executed one and the dependent's (which never ran)
    manifest = json.loads((Path(up.run_dir) / "manifest.json").read_text())
    assert manifest["status"] == "not_applicable" and manifest["reason"] == REASON
    assert manifest["error"] is None
    dependent = json.loads((Path(down.run_dir) / "manifest.json").read_text())
    assert dependent["status"] == "not_applicable" and dependent["needs"] == ["up/default"]
    assert not (Path(down.run_dir) / "down.ipynb").exists()

    # the summary cx run prints
    table = result.summary_table()
    assert "not applicable" in table and REASON in table and "FAILED" not in table

    # the results store: a status value and the reason
    store = ResultsStore(tmp_path / "runs" / "results.duckdb")
    rows = {r["slot"]: r for r in store.runs()}
    assert rows["up/default"]["status"] == "not_applicable"
    assert rows["up/default"]["reason"] == REASON
    assert rows["down/default"]["status"] == "not_applicable"

    # the published pointer: a not-applicable entry per slot, the study's summary
    pointer = read_pointer(tmp_path / "runs" / "telecom")
    assert set(pointer["runs"]) == {"maybe/default", "other/default"}
    na = pointer["not_applicable"]
    assert set(na) == {"up/default", "down/default", "last/default"}
    assert na["up/default"]["status"] == "not_applicable"
    assert na["up/default"]["reason"] == REASON
    assert na["down/default"]["needs"] == ["up/default"]
    assert pointer["study"]["name"] == "telecom"
    assert {"labels", "kpis", "roles", "unmet"} <= set(pointer["study"])

    # up to date like a succeeded run: nothing runs again, the same runs are reported
    again = by_slot(run_pipeline(na_spec(), progress=False))
    assert again["up/default"].status == "not_applicable"
    assert again["up/default"].run_id == up.run_id
    assert again["down/default"].run_id == down.run_id
    assert again["other/default"].status == "skipped"


def test_a_slot_found_not_applicable_never_touches_other_published_results(na_spec, tmp_path):
    first = by_slot(run_pipeline(na_spec("ok"), progress=False))
    assert all(r.status == "succeeded" for r in first.values())
    study_dir = tmp_path / "runs" / "telecom"
    assert set(read_pointer(study_dir)["runs"]) == set(first)

    # a smoke run finding it not applicable changes nothing that is live
    run_pipeline(na_spec(), fast=True, progress=False)
    pointer = read_pointer(study_dir)
    assert pointer["runs"]["up/default"]["run_id"] == first["up/default"].run_id
    assert "up/default" not in pointer.get("not_applicable", {})

    # a real run retires the slot's own result (and its dependents'), keeps every other one
    result = run_pipeline(na_spec(), progress=False)
    assert result.ok, result.summary_table()
    pointer = read_pointer(study_dir)
    assert set(pointer["not_applicable"]) == {"up/default", "down/default", "last/default"}
    assert "up/default" not in pointer["runs"]
    assert pointer["runs"]["other/default"]["run_id"] == first["other/default"].run_id
    assert "maybe/default" in pointer["runs"]

    # applicable again: published, and its not-applicable entry goes
    run_pipeline(na_spec("ok"), progress=False)
    pointer = read_pointer(study_dir)
    assert {"up/default", "down/default", "last/default"} <= set(pointer["runs"])
    assert pointer["not_applicable"] == {}
