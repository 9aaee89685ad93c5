r"""Moderation results of an SEM with product terms: simple slopes, floodlight, moderated mediation.

With ``Y ~ b_X X + b_Z Z + g X:Z`` the slope of ``X`` at a value ``w`` of the moderator
``Z`` is ``b_X + g w`` (``b_X + 2 g w`` for a quadratic ``X:X`` at ``X = w``), computed per
posterior draw, so its interval carries the joint uncertainty of ``b_X`` and ``g``
(and of the moderator's SD when the values are "mean +- 1 SD"). Latent moderators
have mean 0 in the model; an observed moderator is centred at its sample mean, and its
values are given and reported on its own (raw) scale. Other product terms of ``X``
hold their other part at its mean.

- :func:`simple_slopes`: the slope at chosen values (default mean - 1 SD, mean,
  mean + 1 SD), with HDI and the posterior probability that it is positive;
- :func:`johnson_neyman`: the slope along a grid of moderator values (the floodlight),
  the regions where its interval excludes 0 and ``p_positive`` along the grid;
- :func:`moderated_mediation`: conditional indirect effects ``a(w) b(w)`` of
  ``X -> M -> Y`` and the index of moderated mediation (Hayes, 2015): ``a_3 b`` for a
  moderated first stage, ``a b_3`` for a moderated second stage, ``a_3 b + a b_3`` (the
  derivative at the moderator's mean; the indirect effect is then quadratic in ``w``)
  for both. A quadratic stage (``M ~ X + X:X`` with ``X`` its own moderator) has
  ``a(w) = a + 2 a_3 w`` and the index ``2 a_3 b`` (the instantaneous indirect effect
  of Hayes and Preacher, 2010). A dummy moderator's default values are its two values.

:class:`~cxlib.models.sem.result.SEMResult` has one method per function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.errors import ModelSpecificationError
from cxlib.stats import summarize_draws

__all__ = [
    "JohnsonNeyman",
    "ModeratedMediation",
    "johnson_neyman",
    "moderated_mediation",
    "simple_slope_lines",
    "simple_slopes",
]


@dataclass
class JohnsonNeyman:
    """The slope of a predictor along its moderator's values (floodlight analysis).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per grid value: ``moderator_value`` (the moderator's scale), ``mean,
        sd, hdi_low, hdi_high`` of the slope, ``p_positive`` and ``excludes_zero``.
    regions : list of (float, float)
        Moderator ranges (on the grid) where the slope's interval excludes 0.
    outcome, predictor, moderator : str
    hdi_prob : float
    discrete : bool
        The grid is a dummy moderator's two values (regions are then read per value).
    """

    table: pd.DataFrame
    regions: list[tuple[float, float]]
    outcome: str
    predictor: str
    moderator: str
    hdi_prob: float = config.HDI_PROB
    discrete: bool = False

    def __str__(self) -> str:
        if self.discrete:
            hits = self.table.loc[self.table["excludes_zero"], "moderator_value"]
            where = " and ".join(f"{self.moderator} = {v:g}" for v in hits) or "neither value"
            return (
                f"slope of {self.predictor} on {self.outcome} by {self.moderator}: its "
                f"{self.hdi_prob:.0%} interval excludes 0 for {where}"
            )
        if self.regions:
            where = ", ".join(f"{lo:.3g} to {hi:.3g}" for lo, hi in self.regions)
        else:
            where = "nowhere on the grid"
        lo, hi = self.table["moderator_value"].iloc[[0, -1]]
        return (
            f"slope of {self.predictor} on {self.outcome} by {self.moderator} "
            f"({lo:.3g} to {hi:.3g}): its {self.hdi_prob:.0%} interval excludes 0 for "
            f"{self.moderator} in {where}"
        )


@dataclass
class ModeratedMediation:
    """Conditional indirect effects of ``X -> M -> Y`` and the index of moderated mediation.

    Attributes
    ----------
    index : pandas.DataFrame
        One row: ``mean, sd, hdi_low, hdi_high, p_positive`` and ``note`` (which stage
        is moderated and how the index is defined).
    conditional : pandas.DataFrame
        Per moderator value (``at``, ``moderator_value``): ``effect`` (``indirect`` or
        ``direct``) with ``mean, sd, hdi_low, hdi_high, p_positive``.
    """

    index: pd.DataFrame
    conditional: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"index of moderated mediation\n{self.index.round(3).to_string(index=False)}\n\n"
            f"conditional effects\n{self.conditional.round(3).to_string(index=False)}"
        )


# ---------------------------------------------------------------------- helpers
def _flat(x: np.ndarray) -> np.ndarray:
    """``(chain, draw, ...)`` -> ``(draws, ...)``."""
    return x.reshape((-1,) + x.shape[2:])


def _summary(draws: np.ndarray, hdi_prob: float) -> dict[str, np.ndarray]:
    """mean, sd, HDI and P(> 0) of ``(draws, k)``."""
    out = summarize_draws(draws.T, hdi_prob)
    out["p_positive"] = (draws > 0).mean(0)
    return out


def _latent(result, name: str, what: str) -> int:
    st = result.structure
    if name not in st.latents:
        raise ModelSpecificationError(
            f"{what} {name!r} is not a construct or observed variable of the model "
            f"(its variables: {', '.join(st.latents)})"
        )
    return st.latents.index(name)


def _offset(st, mats, k: int) -> float:
    """What to add to a variable's model-scale value to report it on its own scale.

    An observed variable's value in the model is its answer minus its intercept (its
    sample mean when exogenous); a latent's is reported as is (0).
    """
    name = st.latents[k]
    if name not in st.observed:
        return 0.0
    j = st.items.index(st.observed[name])
    return float(mats["nu"][:, :, 0, j].mean())


class _Moderation:
    """Draws of the slopes of one predictor in one outcome, as functions of a moderator."""

    def __init__(self, result, predictor: str, moderator: str, outcome: str | None):
        st = result.structure
        if not st.interactions:
            raise ModelSpecificationError(
                "the model has no interactions: write the product term in the syntax "
                "('Y ~ X + Z + X:Z') to estimate how Z moderates the slope of X"
            )
        if result.grouped:
            raise ModelSpecificationError("moderation results are not available with groups")
        self.result = result
        self.x = _latent(result, predictor, "predictor")
        self.w = _latent(result, moderator, "moderator")
        mats = result.matrices()
        self.mats = mats
        outcomes = []
        for prm in st.interactions:
            if set(prm.parts) == {self.x, self.w} and (
                self.x != self.w or prm.parts[0] == prm.parts[1]
            ):
                outcomes.append(st.latents[prm.row])
        outcomes = list(dict.fromkeys(outcomes))
        if outcome is not None:
            outcomes = [o for o in outcomes if o == outcome]
        if not outcomes:
            term = f"{predictor}:{moderator}"
            raise ModelSpecificationError(
                f"no interaction {term} in the model"
                + (f" on {outcome}" if outcome else "")
                + f": add it ('Y ~ {predictor} + {moderator} + {term}') to estimate how "
                f"{moderator} moderates the slope of {predictor}"
            )
        self.outcomes = outcomes
        # the moderator's mean and SD (per draw) on the model's scale, and the offset of
        # the reported scale (an observed variable's sample mean)
        self.mean = _flat(mats["mean_eta"][:, :, 0, self.w])
        self.sd = np.sqrt(_flat(mats["cov_eta"][:, :, 0, self.w, self.w]))
        name = st.latents[self.w]
        self.offset = _offset(st, mats, self.w)
        self.observed = name in st.observed
        #: the two values (its own scale) of an observed 0/1 (two-valued) moderator, else None
        self.levels = self._levels(name) if self.observed else None

    def _levels(self, name: str) -> np.ndarray | None:
        """The distinct values of a two-valued observed moderator (a dummy), else None."""
        data = self.result.data
        if data is None or not data.y.shape[0]:
            return None
        j = data.items.index(self.result.structure.observed[name])
        raw = data.y[:, j] * data.scale[j] + data.center[j]
        values = np.unique(np.round(raw[np.isfinite(raw)], 9))
        return values if values.size == 2 else None

    def slope(self, outcome: str, w_model: np.ndarray) -> np.ndarray:
        """``(draws, len(w))`` slopes of the predictor on ``outcome`` at model-scale values."""
        st, mats = self.result.structure, self.mats
        y = st.latents.index(outcome)
        base = _flat(mats["B"][:, :, 0, y, self.x])
        gamma = _flat(mats["Gamma"][:, :, 0])
        mean_eta = _flat(mats["mean_eta"][:, :, 0])
        out = np.broadcast_to(base[:, None], (base.size, w_model.shape[-1])).copy()
        for k, prm in enumerate(st.interactions):
            if prm.row != y or self.x not in prm.parts:
                continue
            a, b = prm.parts
            other = b if a == self.x else a
            if a == b == self.x:
                # d(g X^2)/dX = 2 g X: at X = w when X moderates itself, else at its mean
                at = w_model if self.w == self.x else mean_eta[:, [self.x]]
                out += 2 * gamma[:, [k]] * at
            elif other == self.w:
                out += gamma[:, [k]] * w_model
            else:
                out += gamma[:, [k]] * mean_eta[:, [other]]
        return out

    def values(self, at) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Labels, model-scale values ``(draws, k)`` and reported values ``(k,)``.

        Default: the two values of a dummy moderator (labelled ``"app = 0"``, ``"app =
        1"``), else mean - 1 SD, mean and mean + 1 SD.
        """
        name = self.result.structure.latents[self.w]
        if at is None and self.levels is not None:
            labels = [f"{name} = {v:g}" for v in self.levels]
            w = np.broadcast_to(self.levels - self.offset, (self.mean.size, self.levels.size))
            return labels, w, self.levels.copy()
        if at is None:
            labels = ["mean - 1 SD", "mean", "mean + 1 SD"]
            w = self.mean[:, None] + self.sd[:, None] * np.array([-1.0, 0.0, 1.0])
        else:
            given = np.atleast_1d(np.asarray(at, dtype=float))
            labels = [f"{v:g}" for v in given]
            w = np.broadcast_to(given - self.offset, (self.mean.size, given.size))
            return labels, w, given
        return labels, w, w.mean(0) + self.offset


# ---------------------------------------------------------------------- results
def simple_slopes(
    result,
    predictor: str,
    moderator: str,
    at=None,
    *,
    outcome: str | None = None,
    hdi_prob: float = config.HDI_PROB,
) -> pd.DataFrame:
    """The slope of ``predictor`` at chosen values of ``moderator``, with intervals.

    Parameters
    ----------
    result : SEMResult
        A fit with the product term ``predictor:moderator``.
    predictor, moderator : str
        Constructs or observed variables of the model (``moderator == predictor`` for a
        quadratic term: the slope at values of the predictor itself).
    at : sequence of float, optional
        Moderator values on its scale: an observed variable's own values, a latent's
        values in its units around its mean of 0. Default: the two values of a dummy
        (0/1) moderator, else mean - 1 SD, mean and mean + 1 SD (the SD per posterior
        draw).
    outcome : str, optional
        Restrict to one outcome (default: every outcome with the product term).
    hdi_prob : float

    Returns
    -------
    pandas.DataFrame
        ``outcome, predictor, moderator, at, moderator_value, mean, sd, hdi_low,
        hdi_high, p_positive``.
    """
    mod = _Moderation(result, predictor, moderator, outcome)
    labels, w, shown = mod.values(at)
    rows = []
    for y in mod.outcomes:
        sm = _summary(mod.slope(y, w), hdi_prob)
        for i, label in enumerate(labels):
            rows.append(
                {
                    "outcome": y,
                    "predictor": predictor,
                    "moderator": moderator,
                    "at": label,
                    "moderator_value": float(shown[i]),
                    **{k: float(v[i]) for k, v in sm.items()},
                }
            )
    return pd.DataFrame(rows)


def johnson_neyman(
    result,
    predictor: str,
    moderator: str,
    *,
    outcome: str | None = None,
    grid=None,
    n_grid: int = 201,
    hdi_prob: float = config.HDI_PROB,
) -> JohnsonNeyman:
    """Johnson-Neyman (floodlight) analysis: where the slope's interval excludes 0.

    Parameters
    ----------
    result : SEMResult
    predictor, moderator : str
    outcome : str, optional
        Which outcome (default: the first with the product term).
    grid : sequence of float, optional
        Moderator values (its scale). Default: the two values of a dummy moderator,
        ``n_grid`` values over the observed range of another observed moderator, mean
        +- 3 SD of a latent one.
    n_grid : int
    hdi_prob : float

    Returns
    -------
    JohnsonNeyman
    """
    mod = _Moderation(result, predictor, moderator, outcome)
    y = mod.outcomes[0]
    shown = None
    if grid is None and mod.levels is not None:
        shown = mod.levels
        grid_model = mod.levels - mod.offset
    elif grid is None:
        data = result.data
        name = result.structure.latents[mod.w]
        if mod.observed and data is not None and data.y.shape[0]:
            j = data.items.index(result.structure.observed[name])
            raw = data.y[:, j] * data.scale[j] + data.center[j]
            lo, hi = float(np.nanmin(raw)), float(np.nanmax(raw))
            lo, hi = (lo - mod.offset, hi - mod.offset)
        else:
            m, s = float(mod.mean.mean()), float(mod.sd.mean())
            lo, hi = m - 3 * s, m + 3 * s
        grid_model = np.linspace(lo, hi, int(n_grid))
    else:
        shown = np.asarray(grid, dtype=float)
        grid_model = shown - mod.offset
    slopes = mod.slope(y, grid_model[None, :])
    sm = _summary(slopes, hdi_prob)
    excludes = (sm["hdi_low"] > 0) | (sm["hdi_high"] < 0)
    shown = grid_model + mod.offset if shown is None else shown
    table = pd.DataFrame({"moderator_value": shown, **sm})
    table["excludes_zero"] = excludes
    regions = []
    start = None
    values = table["moderator_value"].to_numpy()
    for i, flag in enumerate(excludes):
        if flag and start is None:
            start = i
        if start is not None and (not flag or i == len(excludes) - 1):
            end = i if flag else i - 1
            regions.append((float(values[start]), float(values[end])))
            start = None
    discrete = grid is None and mod.levels is not None
    return JohnsonNeyman(table, regions, y, predictor, moderator, hdi_prob, discrete)


def moderated_mediation(
    result,
    predictor: str,
    mediator: str,
    outcome: str,
    moderator: str,
    at=None,
    *,
    hdi_prob: float = config.HDI_PROB,
) -> ModeratedMediation:
    """Conditional indirect effects of ``predictor -> mediator -> outcome`` and their index.

    Parameters
    ----------
    result : SEMResult
    predictor, mediator, outcome, moderator : str
        The moderator moderates the first stage (``mediator ~ predictor:moderator``),
        the second (``outcome ~ mediator:moderator``) or both.
    at : sequence of float, optional
        Moderator values (default mean - 1 SD, mean, mean + 1 SD), as in
        :func:`simple_slopes`.
    hdi_prob : float

    Returns
    -------
    ModeratedMediation
    """
    st = result.structure
    x = _latent(result, predictor, "predictor")
    m = _latent(result, mediator, "mediator")
    y = _latent(result, outcome, "outcome")
    if (mediator, predictor) not in st.regression_pairs or (outcome, mediator) not in (
        st.regression_pairs
    ):
        raise ModelSpecificationError(
            f"{predictor} -> {mediator} -> {outcome} is not a mediation of the model: it "
            f"needs '{mediator} ~ {predictor}' and '{outcome} ~ {mediator}'"
        )
    w = _latent(result, moderator, "moderator")
    first = any(p.row == m and set(p.parts) == {x, w} for p in st.interactions)
    second = any(p.row == y and set(p.parts) == {m, w} for p in st.interactions)
    direct_mod = any(p.row == y and set(p.parts) == {x, w} for p in st.interactions)
    if not (first or second):
        raise ModelSpecificationError(
            f"{moderator} moderates neither stage of {predictor} -> {mediator} -> {outcome}: "
            f"add '{mediator} ~ {predictor}:{moderator}' (first stage) or "
            f"'{outcome} ~ {mediator}:{moderator}' (second stage), with the main effects"
        )
    stage_a = (
        _Moderation(result, predictor, moderator, mediator if first else None) if first else None
    )
    stage_b = (
        _Moderation(result, mediator, moderator, outcome if second else None) if second else None
    )
    ref = stage_a or stage_b
    labels, wv, shown = ref.values(at)
    mats = ref.mats
    a_fixed = _flat(mats["B"][:, :, 0, m, x])[:, None]
    b_fixed = _flat(mats["B"][:, :, 0, y, m])[:, None]
    a_w = stage_a.slope(mediator, wv) if first else np.broadcast_to(a_fixed, wv.shape)
    b_w = stage_b.slope(outcome, wv) if second else np.broadcast_to(b_fixed, wv.shape)
    indirect = a_w * b_w
    if direct_mod:
        direct = _Moderation(result, predictor, moderator, outcome).slope(outcome, wv)
    else:
        direct = np.broadcast_to(_flat(mats["B"][:, :, 0, y, x])[:, None], wv.shape)
    gamma = _flat(mats["Gamma"][:, :, 0])

    def coef(row: int, parts: set[int]) -> np.ndarray:
        """The coefficient's draws; twice it for a quadratic term (d(g w^2)/dw = 2 g w)."""
        k = next(i for i, p in enumerate(st.interactions) if p.row == row and set(p.parts) == parts)
        return gamma[:, k] * (2.0 if len(parts) == 1 else 1.0)

    a, b = a_fixed[:, 0], b_fixed[:, 0]
    if first and second:
        index = coef(m, {x, w}) * b + a * coef(y, {m, w})
        note = (
            "both stages moderated: a3*b + a*b3, the derivative of the indirect effect at "
            f"the mean of {moderator} (the indirect effect is quadratic in {moderator}: "
            "read the conditional effects)"
        )
    elif first:
        index = coef(m, {x, w}) * b
        note = f"first stage moderated ({mediator} ~ {predictor}:{moderator}): a3*b"
        if x == w:
            note = f"first stage quadratic ({mediator} ~ {predictor}:{predictor}): 2*a3*b"
    else:
        index = a * coef(y, {m, w})
        note = f"second stage moderated ({outcome} ~ {mediator}:{moderator}): a*b3"
        if m == w:
            note = f"second stage quadratic ({outcome} ~ {mediator}:{mediator}): 2*a*b3"
    sm = _summary(index[:, None], hdi_prob)
    index_table = pd.DataFrame({k: v for k, v in sm.items()})
    index_table.insert(0, "moderator", moderator)
    index_table.insert(0, "path", f"{predictor} → {mediator} → {outcome}")
    index_table["note"] = note
    rows = []
    for effect, draws in (("indirect", indirect), ("direct", direct)):
        s2 = _summary(np.asarray(draws), hdi_prob)
        for i, label in enumerate(labels):
            rows.append(
                {
                    "effect": effect,
                    "at": label,
                    "moderator_value": float(shown[i]),
                    **{k: float(v[i]) for k, v in s2.items()},
                }
            )
    return ModeratedMediation(index_table, pd.DataFrame(rows), [note])


def simple_slope_lines(
    result,
    predictor: str,
    moderator: str,
    at=None,
    *,
    outcome: str | None = None,
    n_points: int = 41,
    hdi_prob: float = config.HDI_PROB,
) -> pd.DataFrame:
    """The data of a simple-slopes chart: the outcome's conditional mean along the predictor.

    For each moderator value, ``E[Y | X = x, Z = w]`` minus its value at ``X`` and ``Z``
    at their means (other predictors at their means), over ``x`` from mean - 2 SD to
    mean + 2 SD of the predictor, on the model's scales (an observed variable's on its
    own). For a quadratic term (``moderator == predictor``) the line labelled ``"fitted
    curve"`` is the curve itself and each chosen value ``w`` has the curve's tangent
    there, over ``w`` +- 1 SD: its slope is the simple slope at ``w``.

    Returns
    -------
    pandas.DataFrame
        ``outcome, predictor, moderator, at, moderator_value, predictor_value, mean,
        hdi_low, hdi_high`` (for :func:`cxlib.plots.plot_simple_slopes`).
    """
    mod = _Moderation(result, predictor, moderator, outcome)
    y = mod.outcomes[0]
    st, mats = result.structure, mod.mats
    labels, wv, shown = mod.values(at)
    x_mean = _flat(mats["mean_eta"][:, :, 0, mod.x])
    x_sd = np.sqrt(_flat(mats["cov_eta"][:, :, 0, mod.x, mod.x]))
    x_offset = _offset(st, mats, mod.x)
    steps = np.linspace(-2, 2, int(n_points))
    yi = st.latents.index(y)
    b_w = _flat(mats["B"][:, :, 0, yi, mod.w]) if mod.w != mod.x else 0.0
    gamma = _flat(mats["Gamma"][:, :, 0])
    curves: list[tuple[str, float, np.ndarray, np.ndarray]] = []  # label, value, x, pred
    if mod.w == mod.x:
        # quadratic: f(x) = b (x - mean) + g (x^2 - mean^2), other terms at their means
        k = next(
            j for j, p in enumerate(st.interactions) if p.row == yi and p.parts == (mod.x, mod.x)
        )
        base = _flat(mats["B"][:, :, 0, yi, mod.x])

        def curve(x):
            return base[:, None] * (x - x_mean[:, None]) + gamma[:, [k]] * (
                x**2 - x_mean[:, None] ** 2
            )

        x = x_mean[:, None] + x_sd[:, None] * steps[None, :]
        curves.append(("fitted curve", float("nan"), x, curve(x)))
        for i, label in enumerate(labels):
            w = wv[:, [i]]
            x = w + x_sd[:, None] * (steps[None, :] / 2)
            slope = mod.slope(y, w)
            curves.append((label, float(shown[i]), x, curve(w) + slope * (x - w)))
    else:
        x = x_mean[:, None] + x_sd[:, None] * steps[None, :]
        for i, label in enumerate(labels):
            w = wv[:, i]
            slope = mod.slope(y, w[:, None])
            shift = np.broadcast_to(b_w, w.shape) * (w - mod.mean)
            curves.append(
                (label, float(shown[i]), x, slope * (x - x_mean[:, None]) + shift[:, None])
            )
    rows = []
    for label, value, x, pred in curves:
        sm = summarize_draws(pred.T, hdi_prob)
        xs = x.mean(0) + x_offset
        for j in range(steps.size):
            rows.append(
                {
                    "outcome": y,
                    "predictor": predictor,
                    "moderator": moderator,
                    "at": label,
                    "moderator_value": value,
                    "predictor_value": float(xs[j]),
                    "mean": float(sm["mean"][j]),
                    "hdi_low": float(sm["hdi_low"][j]),
                    "hdi_high": float(sm["hdi_high"][j]),
                }
            )
    return pd.DataFrame(rows)
