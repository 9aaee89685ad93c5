"""Simulate expectation/perception survey data with a known, asymmetric truth.

The sample study's own truth (``data/telecom/truth.yaml``) is a linear latent SEM with
no disconfirmation effect, so it cannot check :class:`~cxlib.models.expectations.ExpectationsModel`.
This module draws data from exactly the model's assumptions instead:

* each attribute's expectation answer from a skewed distribution on its scale, its
  perception as ``expectation + gap`` (the gap rounded from a normal, the perception
  clipped to the scale; the *realized* gap is what drives the outcome);
* the outcome's latent level per respondent (its noise uniform, so bounded; respondents
  whose expected level would leave the scale get fresh attribute answers),
  ``intercept[segment] + sum_a (-penalty[a, segment] * shortfall_a + reward[a, segment] * surplus_a) + noise``,
  with ``penalty[a, segment] = penalty[a] + segment_shift[segment][dimension(a)]`` (the
  same for the reward);
* every outcome item as the latent level *stochastically rounded* to the scale
  (``floor(level + U)``, U uniform), so that the expected item answer, and the expected
  construct score, equal the latent level exactly: the truth is linear in the gap
  features, as the model assumes;
* NPS (0-10) as ``2.5 * (level - 1)`` stochastically rounded;
* answers missing completely at random (``missing_mechanism="mcar"``), or at random
  given other answers (``"mar"``: expectation answers complete, a perception answer
  missing more often the higher the respondent's expectations, the outcome's items
  missing completely at random).

>>> from cxlib.study import load_study
>>> from cxlib.models.expectations.simulate import simulate_expectations
>>> study = load_study("data/telecom/study.yaml")                        # doctest: +SKIP
>>> frame, truth = simulate_expectations(study, n=5_000, seed=1)          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.study import Study

__all__ = ["ExpectationsTruth", "default_expectations_truth", "simulate_expectations"]


@dataclass
class ExpectationsTruth:
    """Known true parameters of expectation/perception data (outcome units per scale point).

    Attributes
    ----------
    penalty, reward : dict of str to float
        Population penalty (drop in the outcome per scale point of shortfall, positive
        = hurts) and reward (rise per scale point of surplus) per attribute.
    segment_shift : dict of str to dict of str to float
        Per segment and dimension (``technical``/``emotional``), added to the penalty
        and the reward of every attribute of that dimension.
    intercept : dict of str to float
        The outcome's latent level per segment when every gap is closed.
    residual_sd : float
        Standard deviation of the outcome's latent noise.
    expectation_mean : dict of str to float
        Mean expectation answer per attribute (scale points).
    gap_mean, gap_sd : dict of str to float, float
        Mean and spread of the latent gap (perception - expectation) per attribute.
    segment_share, segment_weight : dict of str to float
        Share of respondents and design weight per segment.
    missing_rate : float
        Share of answers missing (on average over the items).
    missing_mechanism : {"mcar", "mar"}
        ``mcar``: every item's answers missing completely at random. ``mar``: the
        expectation items complete; respondent ``i``'s perception answers missing with
        probability ``2 * missing_rate * expit(2 z_i)``, ``z_i`` their standardized mean
        expectation (high expectations, more skipped perceptions: missing at random
        given the expectations); the outcome's items missing completely at random.
    """

    penalty: dict[str, float]
    reward: dict[str, float]
    segment_shift: dict[str, dict[str, float]]
    intercept: dict[str, float]
    residual_sd: float = 0.35
    expectation_mean: dict[str, float] = field(default_factory=dict)
    gap_mean: dict[str, float] = field(default_factory=dict)
    gap_sd: float = 0.8
    segment_share: dict[str, float] = field(default_factory=dict)
    segment_weight: dict[str, float] = field(default_factory=dict)
    missing_rate: float = 0.02
    missing_mechanism: str = "mcar"

    def penalty_for(self, study: Study, attribute: str, segment: str) -> float:
        """True penalty of an attribute in a segment."""
        dim = study.attributes[attribute].dimension
        return self.penalty[attribute] + self.segment_shift.get(segment, {}).get(dim, 0.0)

    def reward_for(self, study: Study, attribute: str, segment: str) -> float:
        """True reward of an attribute in a segment."""
        dim = study.attributes[attribute].dimension
        return self.reward[attribute] + self.segment_shift.get(segment, {}).get(dim, 0.0)

    def dimension_weight(self, study: Study, dimension: str, segment: str) -> float:
        """True dimension weight: mean of (penalty + reward) / 2 over its attributes."""
        names = [a for a, at in study.attributes.items() if at.dimension == dimension]
        return float(
            np.mean(
                [
                    (self.penalty_for(study, a, segment) + self.reward_for(study, a, segment)) / 2
                    for a in names
                ]
            )
        )


def _segment_levels(study: Study) -> tuple[str | None, list[str]]:
    if not study.columns.segments:
        return None, [config.EVERYONE]
    col, levels = next(iter(study.columns.segments.items()))
    return col, list(levels or ["A", "B", "C"])


def default_expectations_truth(study: Study) -> ExpectationsTruth:
    """A truth with clear Kano classes and segment differences for ``study``'s attributes.

    Technical attributes alternate must-be (penalty 0.40, reward 0.05) and performance
    (0.22, 0.22); emotional ones alternate attractive (0.05, 0.40) and performance.
    The second segment weighs emotional attributes more (+0.10), the third technical
    ones more (+0.10) and emotional ones less (-0.05).

    Parameters
    ----------
    study : Study
        The study spec; its attributes and first segment column are used.

    Returns
    -------
    ExpectationsTruth
    """
    _, levels = _segment_levels(study)
    penalty, reward, exp_mean, gap_mean = {}, {}, {}, {}
    counters = {"technical": 0, "emotional": 0}
    for name, attr in study.attributes.items():
        k = counters[attr.dimension]
        counters[attr.dimension] += 1
        if k % 2 == 1:
            penalty[name], reward[name] = 0.22, 0.22
        elif attr.dimension == "technical":
            penalty[name], reward[name] = 0.40, 0.05
        else:
            penalty[name], reward[name] = 0.05, 0.40
        scale = study.item(attr.perception).scale
        exp_mean[name] = scale.min + 0.68 * (scale.max - scale.min)
        gap_mean[name] = -0.3 if attr.dimension == "technical" else -0.1
    shifts = [{}, {"emotional": 0.10}, {"technical": 0.10, "emotional": -0.05}]
    return ExpectationsTruth(
        penalty=penalty,
        reward=reward,
        segment_shift={g: shifts[i % 3] for i, g in enumerate(levels)},
        intercept={g: 3.3 + 0.1 * (i % 3) for i, g in enumerate(levels)},
        expectation_mean=exp_mean,
        gap_mean=gap_mean,
        segment_share={g: s for g, s in zip(levels, [0.5, 0.3, 0.2, *[0.2] * 20], strict=False)},
        segment_weight={g: w for g, w in zip(levels, [1.2, 0.8, 0.6, *[1.0] * 20], strict=False)},
    )


def _stochastic_round(x: np.ndarray, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """``floor(x + U)`` clipped to ``[lo, hi]``: unbiased rounding inside the scale."""
    return np.clip(np.floor(x + rng.random(x.shape)), lo, hi)


def simulate_expectations(
    study: Study,
    truth: ExpectationsTruth | None = None,
    *,
    n: int = 5000,
    segment_sizes: dict[str, int] | None = None,
    outcome: str = "Loyalty",
    seed: int = 0,
    ceiling: bool = False,
) -> tuple[pd.DataFrame, ExpectationsTruth]:
    """Simulate expectation/perception answers and an outcome with a known asymmetric truth.

    Parameters
    ----------
    study : Study
        The study spec: its attributes (items and scales), first segment column,
        weight and respondent-id columns, the outcome construct's items and ``NPS``
        when the spec has it.
    truth : ExpectationsTruth, optional
        Default: :func:`default_expectations_truth`.
    n : int
        Number of respondents (ignored when ``segment_sizes`` is given).
    segment_sizes : dict of str to int, optional
        Exact respondents per segment (e.g. a segment of 5 respondents).
    outcome : str
        The construct whose items carry the outcome (its items share one scale).
    seed : int
        Random seed; the same seed gives the same data.
    ceiling : bool
        True puts every expectation and perception answer at the scale's maximum
        (no gap anywhere), for ceiling checks.

    Returns
    -------
    frame : pandas.DataFrame
        One row per respondent in the layout of ``SurveyData.frame`` (analysis-ready:
        reverse-coded items already reversed, floats, NaN for missing answers).
    truth : ExpectationsTruth
        The truth used.
    """
    truth = truth or default_expectations_truth(study)
    rng = np.random.default_rng(seed)
    seg_col, levels = _segment_levels(study)
    if segment_sizes is not None:
        unknown = set(segment_sizes) - set(levels)
        if unknown:
            raise ValueError(f"segment_sizes names unknown segment(s) {sorted(unknown)}")
        codes = np.repeat(np.arange(len(levels)), [int(segment_sizes.get(g, 0)) for g in levels])
        rng.shuffle(codes)
    else:
        shares = np.array([truth.segment_share.get(g, 1.0) for g in levels], dtype=float)
        codes = rng.choice(len(levels), size=int(n), p=shares / shares.sum())
    n = codes.size
    cols: dict[str, np.ndarray] = {}
    if study.columns.respondent_id:  # else the rows are numbered on load
        cols[study.columns.respondent_id] = np.array([f"S{i:07d}" for i in range(n)], dtype=object)
    if seg_col is not None:
        cols[seg_col] = np.asarray(levels, dtype=object)[codes]
    weights = np.array([truth.segment_weight.get(g, 1.0) for g in levels])[codes]
    weights = weights * rng.uniform(0.8, 1.25, size=n)
    if study.columns.weight:
        cols[study.columns.weight] = weights

    construct = study.constructs[outcome]
    scale = construct.items[construct.item_names[0]].scale
    # bounded noise (uniform, sd = residual_sd) and respondents whose expected level lies
    # at least its half-width inside the scale: the level never needs clipping, so the
    # expected outcome is exactly linear in the gap features. Redrawing a respondent's
    # answers by their *features* only (selection on covariates) leaves the outcome's
    # conditional distribution, and so the truth, unchanged.
    half = truth.residual_sd * np.sqrt(3.0)
    answers: dict[str, np.ndarray] = {}
    mean_level = np.zeros(n)
    todo = np.arange(n)
    for _ in range(100):
        m = todo.size
        level_m = np.array([truth.intercept[g] for g in levels])[codes[todo]]
        for name, attr in study.attributes.items():
            ascale = study.item(attr.perception).scale
            lo, hi = ascale.min, ascale.max
            if ceiling:
                exp = np.full(m, float(hi))
                per = np.full(m, float(hi))
            else:
                exp = _stochastic_round(
                    truth.expectation_mean[name] + 0.9 * rng.standard_normal(m), lo, hi, rng
                )
                gap = np.round(truth.gap_mean[name] + truth.gap_sd * rng.standard_normal(m))
                per = np.clip(exp + gap, lo, hi)
            ref = exp if attr.expectation is not None else np.full(m, ascale.midpoint)
            realized = per - ref
            pen = np.array([truth.penalty_for(study, name, g) for g in levels])[codes[todo]]
            rew = np.array([truth.reward_for(study, name, g) for g in levels])[codes[todo]]
            level_m += -pen * np.maximum(-realized, 0) + rew * np.maximum(realized, 0)
            for item, values in ((attr.perception, per), (attr.expectation, exp)):
                if item is not None:
                    answers.setdefault(item, np.zeros(n))[todo] = values
        mean_level[todo] = level_m
        inside = (level_m - half >= scale.min) & (level_m + half <= scale.max)
        todo = todo[~inside]
        if todo.size == 0:
            break
    else:
        raise ValueError(
            "the truth puts the outcome outside its scale for most respondents; "
            "lower the intercepts, slopes or residual_sd"
        )
    cols.update(answers)
    level = mean_level + rng.uniform(-half, half, size=n)
    for item in construct.item_names:
        cols[item] = _stochastic_round(level, scale.min, scale.max, rng)
    if "NPS" in study.all_items:
        nps = study.item("NPS").scale
        frac = (level - scale.min) / (scale.max - scale.min)
        cols["NPS"] = _stochastic_round(nps.min + frac * (nps.max - nps.min), nps.min, nps.max, rng)
    frame = pd.DataFrame(cols)
    if seg_col is not None:
        frame[seg_col] = pd.Categorical(frame[seg_col], categories=levels)
    items = [c for c in frame.columns if c in study.all_items]
    if truth.missing_mechanism not in ("mcar", "mar"):
        raise ValueError(f"missing_mechanism={truth.missing_mechanism!r}: use 'mcar' or 'mar'")
    if truth.missing_rate > 0 and truth.missing_mechanism == "mcar":
        for item in items:
            frame.loc[rng.random(n) < truth.missing_rate, item] = np.nan
    elif truth.missing_rate > 0:
        expectations = [a.expectation for a in study.attributes.values() if a.expectation]
        perceptions = [a.perception for a in study.attributes.values()]
        mean_exp = frame[expectations].mean(axis=1).to_numpy()
        z = (mean_exp - mean_exp.mean()) / max(mean_exp.std(), 1e-9)
        p_missing = np.clip(2 * truth.missing_rate / (1 + np.exp(-2 * z)), 0, 1)
        for item in items:
            if item in expectations:
                continue
            p = p_missing if item in perceptions else truth.missing_rate
            frame.loc[rng.random(n) < p, item] = np.nan
    return frame, truth
