"""Bayesian models of customer experience, one module and one class per model.

Importing this package is cheap; each model module imports PyMC itself. It first
chooses how PyTensor links BLAS (:func:`cxlib.models.blas.configure_blas`), so that no
model compiles before that choice.
"""

from __future__ import annotations

import importlib

from cxlib.models.blas import configure_blas

configure_blas()

__all__ = ["BayesianSEM", "DigitalExperienceModel", "ExpectationsModel", "TouchpointModel"]

_LAZY = {
    "BayesianSEM": "cxlib.models.sem",
    "DigitalExperienceModel": "cxlib.models.digital",
    "ExpectationsModel": "cxlib.models.expectations",
    "TouchpointModel": "cxlib.models.touchpoints",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cxlib.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
