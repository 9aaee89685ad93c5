"""Paths come from the working directory, never from the installed package.

Finding 9 of issue #22: ``cx sample`` run from another folder wrote into the source tree
of the installed package, so a non-editable install or a Dask worker could not build
the sample study.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cxlib import config
from cxlib.cli import cx
from cxlib.pipeline.inputs import sample_study_path
from cxlib.simulate import SAMPLE_FILES, sample_study_files

REPO = Path(__file__).resolve().parent.parent


def tree(folder: Path) -> dict[str, int]:
    """Every file below ``folder`` with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_cx_sample_writes_into_the_working_directory(tmp_path, monkeypatch):
    package = Path(__import__("cxlib").__file__).resolve().parent
    before_data = tree(config.SAMPLE_STUDY.parent)
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(cx, ["sample"])
    assert result.exit_code == 0, result.output
    built = tmp_path / "data" / "telecom"
    assert "sample study data written: data/telecom/responses.parquet" in result.output
    assert (built / "responses.parquet").stat().st_size > 0
    assert {p.name for p in built.iterdir()} >= {*SAMPLE_FILES, "responses.parquet"}
    # nothing written inside the package, nor into the checkout's own sample study
    assert not [p for p in package.rglob("*") if "responses.parquet" in p.name]
    assert tree(config.SAMPLE_STUDY.parent) == before_data

    again = CliRunner().invoke(cx, ["sample"])
    assert "up to date: data/telecom/responses.parquet" in again.output
    # an edited spec is kept (not overwritten by the shipped one) and rebuilds the data
    spec = built / "study.yaml"
    spec.write_text(spec.read_text() + "\n# edited\n")
    edited = CliRunner().invoke(cx, ["sample"])
    assert "written" in edited.output and spec.read_text().endswith("# edited\n")

    # a notebook run by hand here without study_path reads this sample study
    assert sample_study_path() == built / "study.yaml"


def test_cx_sample_into_a_given_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cx, ["sample", "--dir", "elsewhere/telecom"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "telecom" / "responses.parquet").is_file()
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_the_shipped_sample_study_is_the_checkout_s(name):
    """The package data (what a non-editable install has) match data/telecom/ of the checkout."""
    shipped = sample_study_files() / name
    assert shipped.is_file()
    assert shipped.read_bytes() == (REPO / "data" / "telecom" / name).read_bytes(), (
        f"cxlib/sample_study/{name} differs from data/telecom/{name}: copy the one you edited"
    )


def test_no_sample_study_says_how_to_build_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "SAMPLE_STUDY", tmp_path / "none" / "study.yaml")
    from cxlib.errors import CxError

    with pytest.raises(CxError, match="cx sample"):
        sample_study_path()
    assert os.getcwd() == str(tmp_path)


def test_an_installed_package_resolves_paths_from_the_working_directory(tmp_path):
    """Outside a checkout (no pyproject.toml beside the package) runs and data are under cwd."""
    import shutil
    import subprocess
    import sys

    from cxlib import config

    site = tmp_path / "site-packages" / "cxlib"
    site.mkdir(parents=True)
    shutil.copy(Path(config.__file__), site / "config.py")
    work = tmp_path / "work"
    work.mkdir()
    probe = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('cfg', {str(site / 'config.py')!r}); "
        "cfg = importlib.util.module_from_spec(spec); spec.loader.exec_module(cfg); "
        "print(cfg.RUNS_DIR); print(cfg.SAMPLE_STUDY)"
    )
    env = {k: v for k, v in os.environ.items() if k != "CX_RUNS_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=work, capture_output=True, text=True, env=env
    )
    runs, sample = out.stdout.split()
    assert Path(runs) == work.resolve() / "runs"
    assert Path(sample) == work.resolve() / "data" / "telecom" / "study.yaml"
    # in the checkout they stay the checkout's
    checkout = Path(config.__file__).resolve().parent.parent
    assert config.REPO_ROOT == checkout
    assert "CX_RUNS_DIR" in os.environ or config.RUNS_DIR == checkout / "runs"
