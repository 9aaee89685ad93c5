"""Reading uv.lock: its locked versions and the project requirements it was resolved for.

Used by tests/test_lock.py and by ``make test-latest`` (``python tests/lockfile.py
--differences < freeze.txt`` prints the installed versions that differ from the lock).
"""

from __future__ import annotations

import functools
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "uv.lock"
PYPROJECT = REPO / "pyproject.toml"
PROJECT = "cxlib"


def canonical(name: str) -> str:
    """A distribution name as the lock spells it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def read_lock(path: Path = LOCK) -> dict:
    """uv.lock, parsed (once per process: it is a megabyte of TOML)."""
    return tomllib.loads(path.read_text())


def locked_versions(lock: dict | None = None) -> dict[str, str]:
    """Every locked distribution (but the project itself) -> its version."""
    lock = read_lock() if lock is None else lock
    return {canonical(p["name"]): p["version"] for p in lock["package"] if p["name"] != PROJECT}


def _requirement_key(name: str, extras, specifier: str, marker: str | None) -> tuple:
    specs = ",".join(sorted(s.strip() for s in specifier.split(",") if s.strip()))
    return (canonical(name), tuple(sorted(extras or ())), specs, (marker or "").replace('"', "'"))


def recorded_requirements(lock: dict | None = None) -> set[tuple]:
    """The project's requirements as the lock recorded them: (name, extras, specifier, marker)."""
    lock = read_lock() if lock is None else lock
    (project,) = [p for p in lock["package"] if p["name"] == PROJECT]
    return {
        _requirement_key(r["name"], r.get("extras"), r.get("specifier", ""), r.get("marker"))
        for r in project["metadata"]["requires-dist"]
    }


def pyproject_requirements(path: Path = PYPROJECT) -> set[tuple]:
    """pyproject.toml's requirements in the same form (extras become ``extra == '...'`` markers)."""
    from packaging.requirements import Requirement

    project = tomllib.loads(path.read_text())["project"]
    listed = [(r, None) for r in project["dependencies"]]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        listed += [(r, extra) for r in reqs]
    out = set()
    for text, extra in listed:
        req = Requirement(text)
        marker = str(req.marker) if req.marker else ""
        if extra:
            marker = f"extra == '{extra}'" if not marker else f"({marker}) and extra == '{extra}'"
        out.add(_requirement_key(req.name, req.extras, str(req.specifier), marker or None))
    return out


def differences(freeze: str, lock: dict | None = None) -> list[str]:
    """``name==version`` lines (``pip freeze``) that differ from the lock, as readable lines."""
    locked = locked_versions(lock)
    out = []
    for line in freeze.splitlines():
        if "==" not in line:
            continue
        name, version = line.split("==", 1)
        name = canonical(name.strip())
        if name == PROJECT:
            continue
        want = locked.get(name)
        if want != version.strip():
            out.append(f"{name}: {want or 'not locked'} -> {version.strip()}")
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--differences"]:
        raise SystemExit("usage: python tests/lockfile.py --differences < freeze.txt")
    lines = differences(sys.stdin.read())
    print("\n".join(f"  {line}" for line in lines) if lines else "  (none: the lock is the newest)")
