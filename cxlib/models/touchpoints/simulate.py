"""Simulated touchpoint data with known effects, for recovery checks of the touchpoint model.

The sample study's responses (:mod:`cxlib.simulate`) come from a reflective SEM, in
which no touchpoint *causes* the overall evaluation. This simulator writes data in
which each touchpoint's performance moves the outcome by a known number of points,
so :class:`~cxlib.models.touchpoints.TouchpointModel` can be checked against truth:

* touchpoint answers share a common factor (customers who like one touchpoint tend
  to like the others) and are cut onto each item's scale;
* each respondent uses a touchpoint with its channel's usage share (a skipped
  touchpoint is a missing answer, "not used");
* ``outcome = 50 + sum_t effect_t (performance_t - 50) used_t + shift_t (1 - used_t) + noise``
  and ``target = 50 + outcome_to_target (outcome - 50) + noise`` (0-100), written to the
  outcome's and target's items on their scales.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxlib.models.touchpoints.data import journey_map
from cxlib.study import Study

__all__ = ["TouchpointTruth", "default_touchpoint_truth", "simulate_touchpoints"]


@dataclass
class TouchpointTruth:
    """True parameters of simulated touchpoint data.

    Attributes
    ----------
    effects : dict
        Touchpoint -> outcome points per performance point.
    outcome_to_target : float
        Target points per outcome point.
    usage : dict
        Channel -> share of respondents who use a touchpoint of it.
    not_used_shift : float
        Outcome points a non-user of a touchpoint differs by.
    sigma, target_sigma : float
        Residual SDs (points) of the outcome and the target.
    factor_loading : float
        Weight of the common factor in each touchpoint's latent rating.
    """

    effects: dict[str, float]
    outcome_to_target: float = 0.6
    usage: dict[str, float] = field(
        default_factory=lambda: {"face_to_face": 0.7, "personal_distant": 0.75, "electronic": 0.85}
    )
    not_used_shift: float = -2.0
    sigma: float = 8.0
    target_sigma: float = 10.0
    factor_loading: float = 0.5


def default_touchpoint_truth(study: Study) -> TouchpointTruth:
    """Effects built from channel and stage (plus a small touchpoint deviation)."""
    journey = journey_map(study)
    channel = {"face_to_face": 0.03, "personal_distant": 0.0, "electronic": -0.02}
    stage = {"before": -0.02, "during": 0.0, "after": 0.04}
    rng = np.random.default_rng(7)
    effects = {
        r.touchpoint: round(
            0.08 + channel[r.channel] + stage[r.stage] + 0.01 * rng.standard_normal(), 4
        )
        for r in journey.itertuples()
    }
    return TouchpointTruth(effects=effects)


def _write_items(study: Study, name: str, score: np.ndarray, rng) -> dict[str, np.ndarray]:
    items = study.constructs[name].item_names if name in study.constructs else [name]
    out = {}
    for i in items:
        s = study.item(i).scale
        noisy = score + (2.0 * rng.standard_normal(score.size) if len(items) > 1 else 0.0)
        out[i] = np.clip(np.round(s.min + (s.max - s.min) * noisy / 100.0), s.min, s.max)
    return out


def simulate_touchpoints(
    study: Study,
    truth: TouchpointTruth | None = None,
    *,
    n: int = 3000,
    outcome: str = "Satisfaction",
    target: str = "Loyalty",
    seed: int = 1,
) -> pd.DataFrame:
    """Simulate respondents' touchpoint, outcome and target answers.

    Parameters
    ----------
    study : Study
        A spec with touchpoint-tagged items and the outcome and target.
    truth : TouchpointTruth, optional
        Default :func:`default_touchpoint_truth`.
    n : int
        Respondents.
    outcome, target : str
        Constructs or items receiving the simulated scores.
    seed : int
        Random seed.

    Returns
    -------
    pandas.DataFrame
        The respondent id column and every simulated item (floats, NaN for "not used").
    """
    truth = truth or default_touchpoint_truth(study)
    journey = journey_map(study)
    rng = np.random.default_rng(seed)
    factor = rng.standard_normal(n)
    frame: dict[str, np.ndarray] = {}
    if study.columns.respondent_id:  # else the rows are numbered on load
        frame[study.columns.respondent_id] = np.arange(1, n + 1)
    y = np.full(n, 50.0)
    lam = truth.factor_loading
    for r in journey.itertuples():
        latent = lam * factor + np.sqrt(1 - lam**2) * rng.standard_normal(n)
        mid, half = (r.scale_min + r.scale_max) / 2, (r.scale_max - r.scale_min) / 2
        answer = np.clip(np.round(mid + half * latent / 1.8), r.scale_min, r.scale_max)
        perf = 100.0 * (answer - r.scale_min) / (r.scale_max - r.scale_min)
        used = rng.random(n) < truth.usage.get(r.channel, 1.0)
        y += np.where(used, truth.effects[r.touchpoint] * (perf - 50.0), truth.not_used_shift)
        frame[r.item] = np.where(used, answer, np.nan)
    y += truth.sigma * rng.standard_normal(n)
    z = 50.0 + truth.outcome_to_target * (y - 50.0) + truth.target_sigma * rng.standard_normal(n)
    frame.update(_write_items(study, outcome, y, rng))
    frame.update(_write_items(study, target, z, rng))
    return pd.DataFrame(frame)
