"""Technical vs. emotional expectations: asymmetric disconfirmation with a posterior.

One module per part: :mod:`.data` (gaps, features and sufficient statistics),
:mod:`.missing` (missing answers integrated out), :mod:`.likelihood` (the compiled
row likelihoods), :mod:`.model` (:class:`ExpectationsModel`), :mod:`.result`
(:class:`ExpectationsResult`) and :mod:`.simulate` (studies with a known truth).
"""

from __future__ import annotations

from cxlib.models.expectations.model import (
    ExpectationsModel,
    SmallSegmentWarning,
    UnidentifiedGapWarning,
)
from cxlib.models.expectations.result import ExpectationsResult, gap_table
from cxlib.models.expectations.simulate import (
    ExpectationsTruth,
    default_expectations_truth,
    simulate_expectations,
)

__all__ = [
    "ExpectationsModel",
    "ExpectationsResult",
    "ExpectationsTruth",
    "SmallSegmentWarning",
    "UnidentifiedGapWarning",
    "default_expectations_truth",
    "gap_table",
    "simulate_expectations",
]
