"""environment.yml must mirror pyproject.toml, the single source of dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

from tests.lockfile import canonical

REPO = Path(__file__).resolve().parent.parent


def _normalise(requirement: str) -> tuple[str, str]:
    requirement = requirement.split(";")[0].replace(" ", "")
    match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?(.*)$", requirement)
    name, _, spec = match.groups()
    return canonical(name), ",".join(sorted(spec.split(","))) if spec else ""


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return dict(_normalise(r) for r in reqs)


def _environment() -> dict[str, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    reqs = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            reqs += [r for r in dep.get("pip", []) if not r.startswith("-e")]
        elif not dep.startswith(("python=", "pip")) or dep.startswith("pip-"):
            reqs.append(dep)
    return dict(_normalise(r) for r in reqs)


def test_environment_yml_mirrors_pyproject():
    py, env = _pyproject(), _environment()
    assert sorted(set(py) - set(env)) == [], "in pyproject.toml but not environment.yml"
    assert sorted(set(env) - set(py)) == [], "in environment.yml but not pyproject.toml"
    differ = {name: (py[name], env[name]) for name in py if py[name] != env[name]}
    assert differ == {}, "version ranges differ (pyproject, environment.yml)"


def test_environment_pins_python_311():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    assert (
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
        == ">=3.11"
    )
