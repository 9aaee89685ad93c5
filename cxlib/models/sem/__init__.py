"""The structural equation model: experience -> brand image -> loyalty, in lavaan syntax.

One module per part: :mod:`.structure` (the parameter table of the syntax),
:mod:`.data` (patterns and moments of the responses), :mod:`.likelihood` (the
continuous likelihood from pattern moments), :mod:`.ordinal` (the pairwise ordinal
likelihood), :mod:`.model` (:class:`BayesianSEM`: building the graph and fitting) and
:mod:`.result` (:class:`SEMResult`: estimates, effects, fit measures, scores);
:mod:`.simulate` draws respondents of every model kind from lavaan syntax and true
standardized values (:func:`simulate_sem`).
"""

from __future__ import annotations

from cxlib.models.sem.model import BayesianSEM
from cxlib.models.sem.result import ReliabilityReport, SEMResult
from cxlib.models.sem.simulate import (
    CORPORATE_REPUTATION_MODEL,
    SimulatedSEM,
    corporate_reputation,
    simulate_sem,
)

__all__ = [
    "CORPORATE_REPUTATION_MODEL",
    "BayesianSEM",
    "ReliabilityReport",
    "SEMResult",
    "SimulatedSEM",
    "corporate_reputation",
    "simulate_sem",
]
