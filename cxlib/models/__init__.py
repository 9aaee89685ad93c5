"""Bayesian models of customer experience, one module and one class per model.

Importing this package is cheap; each model module imports PyMC itself.
"""

from __future__ import annotations

import importlib

__all__ = ["BayesianSEM", "ExpectationsModel", "TouchpointModel"]

_LAZY = {
    "BayesianSEM": "cxlib.models.sem",
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
