"""The fitted touchpoint model: touchpoint effects, gains and the journey matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from cxlib import config
from cxlib.errors import DriverError, ModelSpecificationError
from cxlib.models.base import ModelResult
from cxlib.models.touchpoints.data import (
    CHANNELS,
    STAGES,
)
from cxlib.stats import pair_draws, summarize_draws

if TYPE_CHECKING:  # pragma: no cover
    from cxlib.models.touchpoints.model import TouchpointModel

__all__ = ["TouchpointResult"]


class TouchpointResult(ModelResult):
    """A fitted :class:`TouchpointModel`: per-touchpoint table, stage x channel matrix, gains."""

    model: TouchpointModel

    def _compute_diagnostics(self):
        from cxlib.models.diagnostics import diagnose_posterior

        post = self.idata.posterior
        names = [
            "effect_on_outcome",
            "effect_mean",
            *[k for k in ("channel_sd", "stage_sd", "touchpoint_sd") if k in post],
            "sigma",
            "outcome_to_target",
            "target_sigma",
            "intercept",
            *(["not_used_shift"] if "not_used_shift" in post else []),
        ]
        return diagnose_posterior(self.idata, names)

    # -- draws -------------------------------------------------------------------
    def performance_draws(self, n_draws: int | None = None, *, seed: int = config.DEFAULT_SEED):
        """Draws of each touchpoint's mean performance (0-100), shape (draw, touchpoint).

        The Student-t posterior of a weighted mean (reference prior), as for KPIs.
        """
        d = self.data
        S = n_draws or self.flat_draws("effect_on_outcome").shape[0]
        rng = np.random.default_rng(seed)
        t = rng.standard_t(d.performance_df[None, :], size=(S, len(d.touchpoints)))
        return d.performance_mean[None, :] + d.performance_se[None, :] * t

    def outcome_to_target_draws(self, driver_model=None, *, seed: int = config.DEFAULT_SEED):
        """Target points per outcome point, shape (draw,).

        Without ``driver_model``: the model's own target regression. With a
        :class:`~cxlib.insights.drivers.DriverModel` (the SEM's draws): the SEM's total
        effect of the outcome construct on the target in 0-100 points (its importance),
        averaged over groups, its draws paired at random (seeded) with this model's.
        """
        own = self.flat_draws("outcome_to_target")
        if driver_model is None:
            return own
        d = self.data
        try:
            names, imp = driver_model.importance(d.target)
        except DriverError as exc:
            raise ModelSpecificationError(
                f"the structural model cannot carry the effects: {exc}"
            ) from None
        if d.outcome not in names:
            raise ModelSpecificationError(
                f"the structural model has no path from {d.outcome!r} to {d.target!r} "
                f"(drivers of {d.target!r}: {', '.join(names)}); fit the touchpoint model with "
                "an outcome the SEM has, or leave driver_model out"
            )
        sem = imp[..., names.index(d.outcome)].mean(axis=1)  # (draw,)
        return pair_draws(sem, own.size, seed)

    def effect_draws(self, driver_model=None) -> dict[str, np.ndarray]:
        """``effect_on_outcome`` and ``effect_on_target`` draws, each (draw, touchpoint)."""
        beta = self.flat_draws("effect_on_outcome")
        g = self.outcome_to_target_draws(driver_model)
        return {"effect_on_outcome": beta, "effect_on_target": beta * g[:, None]}

    # -- tables ------------------------------------------------------------------
    def touchpoint_table(
        self, *, driver_model=None, hdi_prob: float = config.HDI_PROB
    ) -> pd.DataFrame:
        """One row per touchpoint: performance and effectiveness with intervals.

        Returns
        -------
        pandas.DataFrame
            ``touchpoint, item, label, channel, stage, n_answered, share_used,
            performance, performance_hdi_low, performance_hdi_high`` (0-100, among users;
            the HDI of the Student-t posterior of a mean), ``effect_on_outcome*``
            (outcome points per performance point), ``effect_on_target*`` (target
            points per performance point), ``p_effective`` (P(effect > 0)),
            ``rank`` (by effect on the target), ``not_used_shift`` (outcome points
            non-users differ by; NaN when nobody skipped it) and ``sparse`` (answered by
            fewer than the study's minimum cell size).
        """
        d = self.data
        draws = self.effect_draws(driver_model)
        z = stats.t.ppf(0.5 + hdi_prob / 2, d.performance_df)
        out = pd.DataFrame(
            {
                "touchpoint": d.touchpoints,
                "item": d.items,
                "label": d.labels,
                "channel": d.channels,
                "stage": d.stages,
                "n_answered": d.n_answered,
                "share_used": d.share_used,
                "performance": d.performance_mean,
                "performance_hdi_low": d.performance_mean - z * d.performance_se,
                "performance_hdi_high": d.performance_mean + z * d.performance_se,
            }
        )
        for name in ("effect_on_outcome", "effect_on_target"):
            for k, v in summarize_draws(draws[name], hdi_prob, quantity=name, axis=0).items():
                out[k] = v
        out["p_effective"] = (draws["effect_on_target"] > 0).mean(axis=0)
        out["rank"] = out["effect_on_target"].rank(ascending=False, method="first").astype(int)
        shift = pd.Series(np.nan, index=d.touchpoints)
        if d.not_used:
            shift[d.not_used] = self.flat_draws("not_used_shift").mean(axis=0)
        out["not_used_shift"] = shift.to_numpy()
        out["sparse"] = out["n_answered"] < self.model.study.min_cell_size
        out["outcome"] = d.outcome
        out["target"] = d.target
        return out

    def journey_matrix(
        self,
        *,
        driver_model=None,
        hdi_prob: float = config.HDI_PROB,
        seed: int = config.DEFAULT_SEED,
    ) -> pd.DataFrame:
        """The stage x channel matrix: performance and effectiveness of each cell.

        A cell's effectiveness is the mean effect on the target of its touchpoints
        (draw by draw); a cell without touchpoints shows the pooled expectation for a
        touchpoint there (``effect_mean + stage + channel`` effect, carried to the
        target) with ``has_touchpoints`` False. Performance is the mean of its
        touchpoints' performance (NaN for an empty cell).

        Returns
        -------
        pandas.DataFrame
            One row per stage x channel (9): ``stage, channel, touchpoints,
            n_touchpoints, has_touchpoints, performance*, effect_on_target*,
            p_effective``.
        """
        d = self.data
        eff = self.effect_draws(driver_model)["effect_on_target"]
        g = self.outcome_to_target_draws(driver_model)
        cell = self.flat_draws("cell_effect") * g[:, None, None]  # (S, stage, channel)
        perf = self.performance_draws(eff.shape[0], seed=seed)
        rows, e_cols, p_cols = [], [], []
        for si, s in enumerate(STAGES):
            for ci, c in enumerate(CHANNELS):
                idx = [
                    k for k in range(len(d.touchpoints)) if d.stages[k] == s and d.channels[k] == c
                ]
                rows.append(
                    {
                        "stage": s,
                        "channel": c,
                        "touchpoints": ", ".join(d.touchpoints[k] for k in idx),
                        "n_touchpoints": len(idx),
                        "has_touchpoints": bool(idx),
                    }
                )
                e_cols.append(eff[:, idx].mean(axis=1) if idx else cell[:, si, ci])
                p_cols.append(perf[:, idx].mean(axis=1) if idx else np.full(eff.shape[0], np.nan))
        out = pd.DataFrame(rows)
        E, P = np.stack(e_cols, axis=1), np.stack(p_cols, axis=1)
        for k, v in summarize_draws(P, hdi_prob, quantity="performance", axis=0).items():
            out[k] = v
        for k, v in summarize_draws(E, hdi_prob, quantity="effect_on_target", axis=0).items():
            out[k] = v
        out["p_effective"] = (E > 0).mean(axis=0)
        out["target"] = d.target
        return out
