"""Shared fixtures: the sample study spec and small simulated exports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cxlib import config
from cxlib.simulate import Truth, simulate_responses
from cxlib.study import Study, load_study

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def compiled_callbacks_cache(tmp_path_factory):
    """The session's own disk cache of compiled sampler callbacks: every test run starts cold."""
    import os

    folder = tmp_path_factory.mktemp("cx-cache")
    before = os.environ.get("CX_CACHE_DIR")
    os.environ["CX_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("CX_CACHE_DIR", None)
    else:
        os.environ["CX_CACHE_DIR"] = before


@pytest.fixture(scope="session", autouse=True)
def sample_data() -> Path:
    """The sample study's responses, simulated from its truth when missing (fresh clones)."""
    from cxlib import config
    from cxlib.simulate import build_sample_data

    path, _ = build_sample_data(folder=config.SAMPLE_STUDY.parent)
    return path


@pytest.fixture(scope="session")
def study() -> Study:
    """The sample telecom study spec."""
    return load_study(config.SAMPLE_STUDY)


@pytest.fixture(scope="session")
def truth() -> Truth:
    """The sample study's committed true parameters."""
    return Truth.from_yaml(config.SAMPLE_TRUTH)


@pytest.fixture(scope="session")
def raw_export(study, truth) -> pd.DataFrame:
    """A small raw export of the sample study (300 respondents, fixed seed)."""
    return simulate_responses(study, truth, n=300, seed=11)


@pytest.fixture
def export(raw_export) -> pd.DataFrame:
    """A fresh copy of the small export, safe to break in a test."""
    return raw_export.copy()
