"""Digital experience: behaviour signals of web and app sessions calibrated against stated satisfaction.

One module per part: :mod:`.data` (the session table prepared for the model),
:mod:`.model` (:class:`DigitalExperienceModel`), :mod:`.result`
(:class:`DigitalExperienceResult`) and :mod:`.simulate` (sessions with a known truth).
"""

from __future__ import annotations

from cxlib.models.digital.simulate import SIGNALS, default_digital_truth, simulate_sessions

__all__ = [
    "SIGNALS",
    "DigitalExperienceModel",
    "DigitalExperienceResult",
    "default_digital_truth",
    "simulate_sessions",
]


def __getattr__(name: str):
    # the model and its result import PyMC: loaded on first use
    if name == "DigitalExperienceModel":
        from cxlib.models.digital.model import DigitalExperienceModel

        return DigitalExperienceModel
    if name == "DigitalExperienceResult":
        from cxlib.models.digital.result import DigitalExperienceResult

        return DigitalExperienceResult
    raise AttributeError(f"module 'cxlib.models.digital' has no attribute {name!r}")
