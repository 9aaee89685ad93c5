"""The two-command setup: cheap imports, a quick CLI, and `make run`'s steps."""

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_import_cxlib_does_not_import_pymc():
    code = "import sys, cxlib; cxlib.__all__; heavy = [m for m in ('pymc', 'pytensor', 'arviz', 'pandas') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cx_help_is_quick_and_light():
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cxlib.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    assert "validate" in out.stdout and "simulate" in out.stdout
    assert "pymc" not in out.stderr and "pandas" not in out.stderr
    assert elapsed < 3.0  # about a second with a cold disk cache; ~0.1 s warm


def test_lazy_exports_resolve():
    import cxlib

    assert cxlib.load_study.__module__ == "cxlib.study"
    assert "BayesianSEM" in cxlib.__all__


def test_make_run_steps(tmp_path):
    """What `make run` does after installing: build the sample data, validate it."""
    sample = subprocess.run([str(BIN / "cx"), "sample"], capture_output=True, text=True, cwd=REPO)
    assert sample.returncode == 0, sample.stderr
    again = subprocess.run([str(BIN / "cx"), "sample"], capture_output=True, text=True, cwd=REPO)
    assert "up to date" in again.stdout
    report = subprocess.run(
        [str(BIN / "cx"), "validate", "--study", "data/telecom/study.yaml"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert report.returncode == 0, report.stderr
    assert "respondents 8,000" in report.stdout
    assert "2025-Q4" in report.stdout


def test_readme_starts_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    block = text.split("```")[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make run", "make test"]


def test_ci_runs_make_test():
    assert "make test" in (REPO / ".ci" / "run").read_text()
