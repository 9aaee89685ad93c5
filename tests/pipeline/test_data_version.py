"""One data version per refresh: the data are frozen at planning, checked again at publish.

Finding 1 of issue #22: a data file replaced (atomic ``mv``) during a refresh gave two
notebooks two versions, and the publication carried the planned file's hash for both.
Finding 10: a pipeline whose data is not a readable export started every notebook.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import Future
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cxlib.cli import cx
from cxlib.pipeline.errors import PipelineSpecError
from cxlib.pipeline.plan import DATA_SNAPSHOTS, plan_runs
from cxlib.pipeline.publish import read_pointer
from cxlib.pipeline.runner import PipelineResult, run_pipeline
from cxlib.pipeline.schedule import Scheduler, Trigger
from cxlib.pipeline.spec import load_pipeline

from .conftest import write_notebook

#: executes notebooks with papermill and real kernels (make check leaves them out)
pytestmark = pytest.mark.notebooks

READER_PARAMETERS = """\
output_dir: str = ""  # where artifacts go
study_path: str = ""  # the study spec
data_path: str = ""  # the responses
swap: str = ""  # a file moved over `target` when this notebook starts (a new export arriving)
target: str = ""  # the study's data file
"""

READER_BODY = """\
import hashlib
import json
import os
import pathlib

import pandas as pd

if swap and pathlib.Path(swap).exists():
    os.replace(swap, target)  # what `mv new.parquet responses.parquet` does
frame = pd.read_parquet(data_path)
digest = hashlib.sha256(pathlib.Path(data_path).read_bytes()).hexdigest()
pathlib.Path(output_dir, "read.json").write_text(json.dumps({"n": len(frame), "hash": digest}))
"""


@pytest.fixture
def study_copy(tmp_path, small_study) -> Path:
    """A study spec and its 400 responses in a folder of the test's own."""
    folder = tmp_path / "study"
    folder.mkdir()
    spec = Path(shutil.copy(small_study, folder / "study.yaml"))
    shutil.copy(small_study.parent / "responses.parquet", folder / "responses.parquet")
    return spec


@pytest.fixture
def swap_spec(tmp_path, make_spec, study_copy):
    """Two notebooks reading the data; the first one replaces the data file as it starts."""
    data = study_copy.parent / "responses.parquet"
    incoming = tmp_path / "incoming.parquet"
    swapper = write_notebook(tmp_path / "nb" / "a-swapper.ipynb", READER_PARAMETERS, READER_BODY)
    reader = write_notebook(tmp_path / "nb" / "b-reader.ipynb", READER_PARAMETERS, READER_BODY)
    spec = make_spec(
        studies=[{"spec": str(study_copy)}],
        notebooks=[
            {"path": str(swapper), "parameters": {"swap": str(incoming), "target": str(data)}},
            {"path": str(reader)},
        ],
    )
    return spec, data, incoming


def published_reads(study_dir: Path) -> list[tuple[str, dict]]:
    """(data hash in the pointer, what the notebook read) for every published entry."""
    pointer = read_pointer(study_dir)
    return [
        (
            entry["data_hash"],
            json.loads((study_dir / entry["output_dir"] / "read.json").read_text()),
        )
        for entry in pointer["runs"].values()
    ]


def test_a_data_file_replaced_mid_refresh_never_mixes_two_versions(swap_spec, tmp_path):
    spec, data, incoming = swap_spec
    study_dir = tmp_path / "runs" / "telecom"
    first = run_pipeline(spec, progress=False)
    assert first.ok, first.summary_table()
    before = read_pointer(study_dir)
    old = published_reads(study_dir)
    assert {h for h, _ in old} == {r["hash"] for _, r in old}  # the pointer's hash is what was read
    assert {r["n"] for _, r in old} == {400}

    # a new export (300 respondents) arrives while the refresh runs: the first notebook
    # moves it over the data file, the second starts after that
    pd.read_parquet(data).head(300).to_parquet(incoming)
    swapped = run_pipeline(spec, force=True, progress=False)
    assert not incoming.exists() and len(pd.read_parquet(data)) == 300
    assert [r.status for r in swapped.records] == ["succeeded", "succeeded"]
    reads = [
        json.loads((Path(r.manifest["output_dir"]) / "read.json").read_text())
        for r in swapped.records
    ]
    planned = swapped.records[0].manifest["data"]
    assert reads == [{"n": 400, "hash": planned["hash"]}] * 2  # both read the frozen version
    assert planned["source"] == str(data.resolve())
    assert Path(planned["path"]).parent == study_dir / DATA_SNAPSHOTS / planned["hash"]
    # ... and the publication stays as it was, saying why
    assert read_pointer(study_dir)["runs"] == before["runs"]
    assert not any(r.published for r in swapped.records)
    assert "changed during the refresh" in swapped.publish_errors["telecom"]
    assert [line.split(":")[0] for line in swapped.inputs_changed["telecom"]] == [
        str(data.resolve())
    ]
    assert "the previous publication stays live" in swapped.summary_table()

    # the next refresh runs on the new version: one data hash and one n across the entries
    again = run_pipeline(spec, progress=False)
    assert again.ok and all(r.published for r in again.records), again.summary_table()
    new = published_reads(study_dir)
    assert len({h for h, _ in new}) == 1 and {r["n"] for _, r in new} == {300}
    assert {h for h, _ in new} == {r["hash"] for _, r in new} != {h for h, _ in old}


def test_the_frozen_copy_is_made_once_per_version_and_keeps_its_name(
    make_spec, study_copy, tmp_path
):
    spec = load_pipeline(make_spec(studies=[{"spec": str(study_copy)}]))
    runs = tmp_path / "runs"
    (task,) = plan_runs(spec, runs_dir=runs)  # a plan to check freezes nothing
    assert task.data_path == task.data_source == str(study_copy.parent / "responses.parquet")
    assert not (runs / "telecom" / DATA_SNAPSHOTS).exists()

    (frozen,) = plan_runs(spec, runs_dir=runs, freeze=True)
    copy = Path(frozen.data_path)
    assert copy == runs / "telecom" / DATA_SNAPSHOTS / frozen.data_hash / "responses.parquet"
    assert copy.read_bytes() == Path(frozen.data_source).read_bytes()
    assert not copy.stat().st_mode & 0o222  # read-only
    assert copy.stat().st_ino != Path(frozen.data_source).stat().st_ino  # not a hard link
    assert frozen.key == task.key  # the same content: runs made before stay up to date
    (again,) = plan_runs(spec, runs_dir=runs, freeze=True)
    assert again.data_path == frozen.data_path
    assert len(list((runs / "telecom" / DATA_SNAPSHOTS).iterdir())) == 1

    # a rewrite in place (what DataFrame.to_parquet does) leaves the frozen version as it was
    before = copy.read_bytes()
    pd.read_parquet(frozen.data_source).head(10).to_parquet(frozen.data_source)
    assert copy.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"PAR1 this is not parquet", "cannot read the Parquet file"), (b"", "empty")],
)
def test_unreadable_data_is_refused_before_any_notebook_starts(swap_spec, tmp_path, content, what):
    spec, data, _ = swap_spec
    data.write_bytes(content)
    with pytest.raises(PipelineSpecError) as err:
        run_pipeline(spec, progress=False)
    message = str(err.value)
    assert "studies[0]" in message and str(data) in message and what in message
    assert DATA_SNAPSHOTS not in message  # names the file, not its frozen copy
    assert not list((tmp_path / "runs").glob("telecom/*/manifest.json"))  # nothing started
    assert not list((tmp_path / "runs").glob(f"telecom/{DATA_SNAPSHOTS}/*/*"))  # nor kept

    result = CliRunner().invoke(cx, ["run", str(spec)])
    assert result.exit_code == 2, result.output
    assert what in result.output and "Nothing was run." in result.output
    assert "bug in cx" not in result.output


def test_the_scheduler_refreshes_again_when_the_data_changed_mid_refresh(make_spec):
    spec = make_spec(schedule={"cron": "0 6 * * *", "timezone": "UTC"})
    handles: list[Future] = []

    def launch(study, trigger):
        handles.append(Future())
        return handles[-1]

    scheduler = Scheduler(spec, launch=launch)
    scheduler.pending["telecom"] = Trigger("telecom", "cron", "a scheduled refresh")
    assert len(scheduler.tick()) == 1
    changed = PipelineResult(
        pipeline="toy", records=[], inputs_changed={"telecom": ["responses.parquet: ..."]}
    )
    handles[-1].set_result(changed)
    started = scheduler.tick()
    assert [(t.study, t.reason) for t in started] == [("telecom", "data")]
    assert "changed during the last refresh" in started[0].detail
    handles[-1].set_result(PipelineResult(pipeline="toy", records=[]))
    assert scheduler.tick() == []  # a refresh that published: nothing more
