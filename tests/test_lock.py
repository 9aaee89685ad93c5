"""The lock (uv.lock) is what gets installed, and it agrees with pyproject.toml."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.lockfile import (
    PYPROJECT,
    REPO,
    canonical,
    differences,
    locked_versions,
    pyproject_requirements,
    read_lock,
    recorded_requirements,
)

#: ``make test-latest`` runs the suite against the newest releases, not the lock.
UNLOCKED = os.environ.get("CX_TEST_LATEST") == "1"


def test_lock_records_pyprojects_requirements():
    """A dependency edited in pyproject.toml without `make lock` fails here."""
    in_lock, in_pyproject = recorded_requirements(), pyproject_requirements()
    assert sorted(in_pyproject - in_lock) == [], (
        "in pyproject.toml, not in uv.lock: run `make lock`"
    )
    assert sorted(in_lock - in_pyproject) == [], (
        "in uv.lock, not in pyproject.toml: run `make lock`"
    )


def test_locked_versions_satisfy_the_ranges():
    import tomllib

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    locked = locked_versions()
    outside = {
        r.name: locked.get(canonical(r.name))
        for r in reqs
        if locked.get(canonical(r.name)) is None or locked[canonical(r.name)] not in r.specifier
    }
    assert outside == {}


def test_lock_is_for_python_311():
    from packaging.markers import Marker

    lock = read_lock()
    assert lock["requires-python"] == ">=3.11"

    def supported(version: str) -> bool:
        env = {"python_full_version": version, "python_version": version.rsplit(".", 1)[0]}
        return any(Marker(m).evaluate(env) for m in lock["supported-markers"])

    assert supported("3.11.7") and supported("3.11.0")
    assert not supported("3.12.0")


def test_a_changed_requirement_is_caught(tmp_path):
    """The check above can fail: a range edited in a copy of pyproject.toml."""
    text = PYPROJECT.read_text().replace('"pymc>=5.28,<6"', '"pymc>=5.27,<6"')
    assert text != PYPROJECT.read_text()
    (tmp_path / "pyproject.toml").write_text(text)
    assert pyproject_requirements(tmp_path / "pyproject.toml") != recorded_requirements()


def test_differences_names_what_drifted():
    locked = locked_versions()
    freeze = f"numpy=={locked['numpy']}\npymc==99.0\ncxlib==0.1.0\nunheard-of==1.0\n"
    assert differences(freeze) == [
        f"pymc: {locked['pymc']} -> 99.0",
        "unheard-of: not locked -> 1.0",
    ]


@pytest.mark.skipif(UNLOCKED, reason="make test-latest installs the newest releases on purpose")
def test_installed_environment_is_the_lock():
    """Every distribution in this environment is at its locked version (the Makefile syncs)."""
    locked = locked_versions()
    # the environment's own site-packages only: importing setuptools puts its vendored
    # packages (importlib-metadata, jaraco.*) on sys.path, and those are not installs
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {
        canonical(d.metadata["Name"]): d.version for d in metadata.distributions(path=site)
    }
    installed.pop("cxlib", None)
    for tool in ("pip", "setuptools", "wheel"):  # a venv's own, not the project's
        if tool not in locked:
            installed.pop(tool, None)
    off = {
        name: (locked.get(name), version)
        for name, version in installed.items()
        if locked.get(name) != version
    }
    assert off == {}, "(locked, installed): run `make test`, which syncs .venv to uv.lock"


def _uv() -> str | None:
    for candidate in (REPO / ".make" / "tools" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


@pytest.mark.skipif(_uv() is None, reason="uv is not installed (make test installs it)")
def test_uv_agrees_the_lock_is_current():
    """uv's own check, offline: the lock satisfies pyproject.toml as it is."""
    env = {**os.environ, "UV_OFFLINE": "1", "UV_PYTHON": sys.executable, "UV_NO_PROGRESS": "1"}
    out = subprocess.run(
        [_uv(), "lock", "--check"], cwd=REPO, capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr


def test_makefile_installs_the_lock_exactly():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^UV_SYNC := \$\(UV\) sync .*--locked", makefile, re.M)
    for target in (r"\$\(VENV\)/\.installed-run", r"\$\(VENV\)/\.installed-test"):
        rule = re.search(target + r":.*\n((?:\t.*\n)+)", makefile)
        assert rule and "$(UV_SYNC)" in rule.group(1), target
        assert "uv.lock" in re.search(target + r":(.*)", makefile).group(1)
    assert "pip install -e" not in makefile and "pip install -q -e" not in makefile
