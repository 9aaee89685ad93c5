"""Frozen data versions are pruned after a publish, keeping every one still needed.

Issue #22: ``runs/<study>/.data/<sha256>/`` grew by a copy of the export with every new
data version. A publish now removes the copies that no live or previous publication, no
running run and no waiting runner needs, beyond the newest ``DATA_VERSIONS_KEPT``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from cxlib.pipeline import runner as runner_module
from cxlib.pipeline.plan import DATA_SNAPSHOTS, plan_runs
from cxlib.pipeline.publish import POINTER_FILE, PREVIOUS_POINTER_FILE, read_pointer
from cxlib.pipeline.retention import (
    CLAIM_PREFIX,
    DATA_VERSIONS_KEPT,
    claim_data_versions,
    prune_data_versions,
    release_data_claims,
)
from cxlib.pipeline.runner import run_pipeline
from cxlib.pipeline.spec import load_pipeline


def version(n: int) -> str:
    return f"{n:064x}"


@pytest.fixture
def versions(tmp_path) -> Path:
    """A study folder with eight frozen versions, version(1) the oldest."""
    study_dir = tmp_path / "runs" / "telecom"
    for n in range(1, 9):
        folder = study_dir / DATA_SNAPSHOTS / version(n)
        folder.mkdir(parents=True)
        (folder / "responses.parquet").write_bytes(b"x" * n)
        os.chmod(folder / "responses.parquet", 0o444)
        os.utime(folder / "responses.parquet", (1_000_000 + n, 1_000_000 + n))
    return study_dir


def left(study_dir: Path) -> set[int]:
    return {int(p.name, 16) for p in (study_dir / DATA_SNAPSHOTS).iterdir()}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_prune_keeps_what_is_in_use_and_the_newest(versions):
    study_dir = versions
    (study_dir / POINTER_FILE).write_text(
        json.dumps({"runs": {"a/all": {"run_id": "r1", "data_hash": version(1)}}})
    )
    (study_dir / PREVIOUS_POINTER_FILE).write_text(
        json.dumps({"runs": {"a/all": {"run_id": "r0", "data_hash": version(2)}}})
    )
    running = study_dir / "r9"
    running.mkdir()
    (running / "manifest.json").write_text(
        json.dumps({"status": "running", "data": {"hash": version(3)}})
    )
    failed = study_dir / "r8"
    failed.mkdir()
    (failed / "manifest.json").write_text(
        json.dumps({"status": "failed", "data": {"hash": version(5)}})
    )
    reader = SimpleNamespace(data_path=str(study_dir / DATA_SNAPSHOTS / version(4) / "d"))
    (claim,) = claim_data_versions([reader])  # a runner that froze version 4 and waits
    host = socket.gethostname().replace("-", "_")
    gone = study_dir / DATA_SNAPSHOTS / version(6) / f"{CLAIM_PREFIX}{host}-{dead_pid()}-cd"
    gone.write_text("")  # the claim of a runner that was killed

    removed = prune_data_versions(study_dir, keep=2)

    # 1, 2: live and previous publication; 3: a running run; 4: a live claim; 7, 8: newest
    assert left(study_dir) == {1, 2, 3, 4, 7, 8}
    assert removed == [version(5), version(6)]  # a failed run and a dead runner's claim
    release_data_claims([claim])
    assert not claim.exists()
    assert prune_data_versions(study_dir, keep=2) == [version(4)]
    assert prune_data_versions(study_dir, keep=0) == [version(7), version(8)]
    assert left(study_dir) == {1, 2, 3}


def test_a_damaged_pointer_prunes_nothing_it_may_still_need(versions):
    (versions / POINTER_FILE).write_text("{not json")
    (versions / PREVIOUS_POINTER_FILE).write_text(
        json.dumps({"runs": {"a/all": {"run_id": "r0", "data_hash": version(1)}}})
    )
    prune_data_versions(versions, keep=1)
    assert left(versions) == {1, 8}  # the fallback's version stays


def test_prune_refuses_a_negative_keep(versions):
    with pytest.raises(ValueError, match="keep"):
        prune_data_versions(versions, keep=-1)


def test_the_default_keeps_two():
    assert DATA_VERSIONS_KEPT == 2


@pytest.mark.notebooks
def test_refreshes_on_new_data_versions_keep_only_what_pages_need(
    make_spec, tmp_path, small_study, monkeypatch
):
    folder = tmp_path / "study"
    folder.mkdir()
    study = Path(shutil.copy(small_study, folder / "study.yaml"))
    data = folder / "responses.parquet"
    original = pd.read_parquet(small_study.parent / "responses.parquet")
    spec = make_spec(studies=[{"spec": str(study)}])
    study_dir = tmp_path / "runs" / "telecom"
    # no newest versions kept beyond those in use: what stays is what pages need
    monkeypatch.setattr(runner_module, "prune_data_versions", partial(prune_data_versions, keep=0))

    hashes = []
    for n in (400, 390, 380, 370):
        original.head(n).to_parquet(data)
        result = run_pipeline(spec, progress=False)
        assert result.ok and all(r.published for r in result.records), result.summary_table()
        hashes.append(result.records[0].manifest["data"]["hash"])
        pointer = read_pointer(study_dir)
        live = {e["data_hash"] for e in pointer["runs"].values()}
        assert live == {hashes[-1]}
        kept = {p.name for p in (study_dir / DATA_SNAPSHOTS).iterdir()}
        # the live version and the previous publication's (the fallback), nothing more
        assert kept == set(hashes[-2:]), (n, kept)
        for digest in kept:
            assert (study_dir / DATA_SNAPSHOTS / digest / "responses.parquet").is_file()
        assert not list((study_dir / DATA_SNAPSHOTS).glob(f"*/{CLAIM_PREFIX}*"))  # released
    assert len(set(hashes)) == 4

    # a refresh that publishes nothing (up to date) prunes nothing
    assert run_pipeline(spec, progress=False).ok
    assert {p.name for p in (study_dir / DATA_SNAPSHOTS).iterdir()} == set(hashes[-2:])


def test_a_version_a_waiting_runner_froze_survives_a_prune(make_spec, tmp_path, small_study):
    """A runner that planned (froze and claimed) and waits for the lock keeps its copy."""
    folder = tmp_path / "study"
    folder.mkdir()
    study = Path(shutil.copy(small_study, folder / "study.yaml"))
    original = pd.read_parquet(small_study.parent / "responses.parquet")
    original.head(300).to_parquet(folder / "responses.parquet")
    spec = load_pipeline(make_spec(studies=[{"spec": str(study)}]))
    runs = tmp_path / "runs"
    (task,) = plan_runs(spec, runs_dir=runs, freeze=True)
    claims = claim_data_versions([task])
    newer = []
    for n in (310, 320, 330):  # newer versions frozen by other refreshes since
        original.head(n).to_parquet(folder / "responses.parquet")
        newer.append(plan_runs(spec, runs_dir=runs, freeze=True)[0].data_hash)
    assert sorted(prune_data_versions(runs / "telecom", keep=1)) == sorted(newer[:2])
    assert Path(task.data_path).is_file()  # claimed: kept although the oldest
    release_data_claims(claims)
    assert prune_data_versions(runs / "telecom", keep=1) == [task.data_hash]
    assert left(runs / "telecom") == {int(newer[-1], 16)}


def test_keeping_more_than_there_are_removes_nothing(versions):
    assert prune_data_versions(versions, keep=20) == []
    assert left(versions) == set(range(1, 9))
