"""Convergence diagnostics: R-hat, bulk ESS, divergences and the gates a result must pass.

Every model's result reports its :class:`Diagnostics`; the gates come from
:mod:`cxlib.config` (``MAX_R_HAT``, ``MIN_ESS_BULK``), so a notebook, a pipeline gate
and a dashboard judge a fit the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxlib import config

__all__ = [
    "Diagnostics",
    "chain_diagnostics",
    "count_divergences",
    "diagnose",
    "diagnose_posterior",
]


@dataclass
class Diagnostics:
    """Convergence diagnostics of a fit.

    Attributes
    ----------
    max_r_hat : float
        Largest rank-normalized R-hat over the monitored parameters.
    min_ess_bulk : float
        Smallest bulk effective sample size.
    divergences : int
        Number of divergent transitions after tuning.
    r_hat, ess_bulk : pandas.Series
        Per parameter (index: readable parameter names).
    sign_disagreement : list of str
        Parameters whose chains settled in modes of opposite sign.
    max_r_hat_allowed, min_ess_allowed : float
        The thresholds applied (from :mod:`cxlib.config` unless overridden).
    """

    max_r_hat: float
    min_ess_bulk: float
    divergences: int
    r_hat: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    ess_bulk: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    sign_disagreement: list[str] = field(default_factory=list)
    max_r_hat_allowed: float = config.MAX_R_HAT
    min_ess_allowed: float = config.MIN_ESS_BULK

    @property
    def high_r_hat(self) -> list[str]:
        """Parameters with R-hat above the threshold."""
        return list(self.r_hat.index[self.r_hat > self.max_r_hat_allowed])

    @property
    def low_ess(self) -> list[str]:
        """Parameters with bulk ESS below the threshold."""
        return list(self.ess_bulk.index[self.ess_bulk < self.min_ess_allowed])

    @property
    def ok(self) -> bool:
        """True when every gate passes."""
        return not (
            self.high_r_hat or self.low_ess or self.divergences > 0 or self.sign_disagreement
        )

    def problems(self) -> list[str]:
        """One sentence per failed gate, naming the parameters."""
        out = []
        if self.high_r_hat:
            out.append(
                f"R-hat above {self.max_r_hat_allowed} for "
                + name_list(self.high_r_hat, self.r_hat, "{:.3f}")
            )
        if self.low_ess:
            out.append(
                f"bulk ESS below {self.min_ess_allowed:g} for "
                + name_list(self.low_ess, self.ess_bulk, "{:.0f}")
            )
        if self.divergences:
            out.append(
                f"{self.divergences} divergent transition(s); raise target_accept "
                "(sampler_config) or reparametrize"
            )
        if self.sign_disagreement:
            out.append(
                "chains disagree in sign (a reflected mode) for "
                + ", ".join(self.sign_disagreement[:8])
            )
        return out

    def to_frame(self) -> pd.DataFrame:
        """Per-parameter R-hat and bulk ESS."""
        return pd.DataFrame({"r_hat": self.r_hat, "ess_bulk": self.ess_bulk})

    def __str__(self) -> str:
        head = (
            f"max R-hat {self.max_r_hat:.3f}, min bulk ESS {self.min_ess_bulk:.0f}, "
            f"{self.divergences} divergences"
        )
        problems = self.problems()
        return head + ("" if not problems else "\n  - " + "\n  - ".join(problems))


def name_list(names: list[str], values: pd.Series, fmt: str, limit: int = 8) -> str:
    shown = ", ".join(f"{n} ({fmt.format(values[n])})" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def diagnose(
    draws: Any,
    *,
    divergences: int = 0,
    sign_disagreement: list[str] | None = None,
    max_r_hat: float = config.MAX_R_HAT,
    min_ess_bulk: float = config.MIN_ESS_BULK,
) -> Diagnostics:
    """Compute R-hat and bulk ESS per parameter.

    Parameters
    ----------
    draws : xarray.DataArray
        Dims ``(chain, draw, param)`` with readable ``param`` coordinates.
    divergences : int
        Divergent transitions counted by the caller.
    sign_disagreement : list of str, optional
        Parameters whose chains disagree in sign.
    max_r_hat, min_ess_bulk : float
        Thresholds (default from :mod:`cxlib.config`).

    Returns
    -------
    Diagnostics
    """
    import arviz as az

    names = [str(p) for p in draws["param"].values]
    arr = np.asarray(draws.values, dtype=float)
    constant = np.nanstd(arr.reshape(-1, arr.shape[-1]), axis=0) < 1e-12
    ds = draws.to_dataset(name="x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(ds)["x"].values
        ess = az.ess(ds, method="bulk")["x"].values
    rhat = np.where(constant, np.nan, rhat)
    ess = np.where(constant, np.nan, ess)
    r = pd.Series(rhat, index=names, dtype=float)
    e = pd.Series(ess, index=names, dtype=float)
    return Diagnostics(
        max_r_hat=float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan"),
        min_ess_bulk=float(np.nanmin(ess)) if np.isfinite(ess).any() else float("nan"),
        divergences=int(divergences),
        r_hat=r,
        ess_bulk=e,
        sign_disagreement=list(sign_disagreement or []),
        max_r_hat_allowed=max_r_hat,
        min_ess_allowed=min_ess_bulk,
    )


def count_divergences(idata) -> int:
    """Divergent transitions in ``idata.sample_stats`` (0 when not recorded)."""
    stats = getattr(idata, "sample_stats", None)
    if stats is None or "diverging" not in stats:
        return 0
    return int(np.asarray(stats["diverging"]).sum())


def chain_diagnostics(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalized R-hat and bulk ESS of ``(chain, draw, k)`` draws.

    Constant parameters (fixed values) get NaN for both; R-hat is NaN with one chain.
    """
    import arviz as az
    import xarray as xr

    chains, _, k = arr.shape
    constant = arr.reshape(-1, k).std(0) < 1e-12
    da = xr.DataArray(arr, dims=("chain", "draw", "param")).to_dataset(name="x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(da)["x"].values if chains > 1 else np.full(k, np.nan)
        ess = az.ess(da, method="bulk")["x"].values
    return np.where(constant, np.nan, rhat), np.where(constant, np.nan, ess)


def diagnose_posterior(idata, names: list[str] | None = None) -> Diagnostics:
    """:func:`diagnose` the posterior variables ``names`` (default: all) of an InferenceData.

    Each element of a variable is one parameter, labelled ``name[coord, ...]``; the
    divergences come from ``idata.sample_stats``.
    """
    import xarray as xr

    post = idata.posterior
    parts, labels = [], []
    for v in list(post.data_vars) if names is None else names:
        da = post[v]
        extra = [x for x in da.dims if x not in ("chain", "draw")]
        if extra:
            st = da.stack(param=extra)
            labels += [
                f"{v}[{', '.join(map(str, idx if isinstance(idx, tuple) else (idx,)))}]"
                for idx in st["param"].values
            ]
            parts.append(np.asarray(st.values))
        else:
            labels.append(v)
            parts.append(np.asarray(da.values)[..., None])
    arr = xr.DataArray(
        np.concatenate(parts, axis=-1),
        dims=("chain", "draw", "param"),
        coords={"param": labels},
    )
    return diagnose(arr, divergences=count_divergences(idata))
