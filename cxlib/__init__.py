"""cx workbench: Bayesian models and insights for customer-experience research.

Importing :mod:`cxlib` is cheap: the heavy parts (PyMC, ArviZ) load only when a
model is first used.

>>> import cxlib
>>> study = cxlib.load_study("data/telecom/study.yaml")        # doctest: +SKIP
>>> data = cxlib.load_responses(study)                         # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
    "BayesianSEM",
    "CxError",
    "DataValidationError",
    "ModelSyntaxError",
    "StudySpecError",
    "SurveyData",
    "Truth",
    "__version__",
    "load_responses",
    "load_study",
    "parse_model",
    "simulate_responses",
]

# public name -> module that defines it; resolved on first access (PEP 562)
_LAZY = {
    "BayesianSEM": "cxlib.models.sem",
    "CxError": "cxlib.errors",
    "DataValidationError": "cxlib.errors",
    "ModelSyntaxError": "cxlib.errors",
    "StudySpecError": "cxlib.errors",
    "SurveyData": "cxlib.data",
    "load_responses": "cxlib.data",
    "load_study": "cxlib.study",
    "parse_model": "cxlib.syntax",
    "Truth": "cxlib.simulate",
    "simulate_responses": "cxlib.simulate",
}

if TYPE_CHECKING:  # pragma: no cover
    from cxlib.data import SurveyData, load_responses
    from cxlib.errors import CxError, DataValidationError, ModelSyntaxError, StudySpecError
    from cxlib.models.sem import BayesianSEM
    from cxlib.simulate import Truth, simulate_responses
    from cxlib.study import load_study
    from cxlib.syntax import parse_model


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cxlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
