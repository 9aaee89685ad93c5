"""Touchpoints across journey stages and the three kinds of customer interface.

One module per part: :mod:`.data` (the journey map, performance and sufficient
statistics), :mod:`.model` (:class:`TouchpointModel`), :mod:`.result`
(:class:`TouchpointResult`) and :mod:`.simulate` (studies with a known truth).
"""

from __future__ import annotations

from cxlib.models.touchpoints.data import journey_map
from cxlib.models.touchpoints.model import FIXED_SPREADS, TouchpointModel
from cxlib.models.touchpoints.result import TouchpointResult
from cxlib.models.touchpoints.simulate import (
    TouchpointTruth,
    default_touchpoint_truth,
    simulate_touchpoints,
)

__all__ = [
    "FIXED_SPREADS",
    "TouchpointModel",
    "TouchpointResult",
    "TouchpointTruth",
    "default_touchpoint_truth",
    "journey_map",
    "simulate_touchpoints",
]
