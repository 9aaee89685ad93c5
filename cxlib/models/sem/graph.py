"""What the SEM's graph steps hand to a likelihood: the model matrices and their context.

A likelihood object (:class:`~cxlib.models.sem.continuous.ContinuousLikelihood`,
:class:`~cxlib.models.sem.ordinal.PairwiseOrdinalLikelihood`) receives one
:class:`SEMGraph` and adds its intercepts, thresholds and log-likelihood to the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxlib.models.sem.data import SEMData
from cxlib.models.sem.structure import SEMStructure

__all__ = ["SEMGraph"]


@dataclass
class SEMGraph:
    """The model matrices on the data scale, inside an open ``pymc.Model``.

    Attributes
    ----------
    model : pymc.Model
        The model being built (its context is open).
    structure : SEMStructure
        The parameter table.
    data : SEMData
        The prepared responses.
    model_config : dict
        The merged priors and options.
    prior_spec : callable
        ``(kind, names) -> spec``: a kind's prior with per-term overrides as arrays.
    latent_units : numpy.ndarray
        Each latent's unit on the data's scale.
    lambda_y, lambda_g : tensor
        Loadings ``(p, m)`` and per group ``(G, p, m)``.
    b_g : tensor
        Paths per group ``(G or 1, m, m)``.
    psi, theta_y : tensor
        Latent (residual) covariance ``(m, m)`` and item residual covariance ``(p, p)``.
    initvals : dict
        Starting values by RV name; a likelihood adds its own.
    gamma : tensor or None
        The product terms' coefficients ``(len(structure.interactions),)`` on the data's
        scale (None without interactions).
    """

    model: Any
    structure: SEMStructure
    data: SEMData
    model_config: dict[str, Any]
    prior_spec: Callable[[str, list[str]], dict[str, Any]]
    latent_units: np.ndarray
    lambda_y: Any
    lambda_g: Any
    b_g: Any
    psi: Any
    theta_y: Any
    initvals: dict[str, np.ndarray] = field(default_factory=dict)
    gamma: Any = None

    @property
    def n_groups(self) -> int:
        """Number of groups (1 without groups)."""
        return len(self.data.groups)
