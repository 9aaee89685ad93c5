r"""What a researcher reads about a composite (``F <~ x1 + x2 + x3``): weights, loadings, VIF.

A composite is a weighted sum of its indicators, :math:`F = \sum_j w_j x_j`, with no
disturbance (its residual variance is fixed at 0), identified by what it explains (at
least one outgoing path). The indicators are exogenous with free variances and
covariances (observed variables enter measured without error; latents make a
formative higher-order construct); a composite that is itself explained (``F ~ X``)
has its indicators regressed on ``X``, and ``F ~ X`` is reported as the regression of
the composite, :math:`\sum_j w_j \gamma_{jX}` (kind ``composite_path``).

Scale. By default a composite has variance 1, as PLS's Mode B composites do: the
sampler draws a direction ``v`` and the weights are ``w = v / sqrt(v' Cov(x) v)`` with
``Cov(x)`` the model-implied covariance of the indicators, and the sign chosen so that
the standardized weights sum to a positive number (the composite points the way most of
its indicators do; a sign taken from the first weight alone flips whenever that weight's
posterior reaches 0). lavaan's classic ``<~`` scaling, the first weight fixed at 1, is what
you get by writing it (``F <~ 1*x1 + x2 + x3``); it is not the default because the
path out of the composite and its weights then trade off as a product (``b * w``),
which NUTS samples badly when the path is small (measured on a retail study at
N = 400: 32 divergences with the classic scaling, none with variance 1; and on
:func:`~cxlib.models.sem.simulate.corporate_reputation`). Standardized weights are the
same under both scalings.

Reported per indicator, per posterior draw, from the model matrices:

- ``weight``: the raw weight :math:`w_j` (1 for the first);
- ``weight_std``: the standardized weight :math:`w_j\,\sigma_{x_j}/\sigma_F`, what PLS
  Mode B and seminr report as the outer weight;
- ``loading``: the correlation of the indicator with the composite,
  :math:`\operatorname{Cov}(x_j, F)/(\sigma_{x_j}\sigma_F)` (PLS's outer loading, for
  reporting; the model has no loadings);
- ``vif``: the variance inflation factor of the indicator among the composite's
  indicators, :math:`[R^{-1}]_{jj}` with :math:`R` their model-implied correlation
  matrix (above 5, collinearity makes the weights unstable; above 3 is worth a look).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.stats import interval_columns, summarize_draws

__all__ = ["composite_table", "VIF_CAUTION"]

#: VIF above which an indicator's weight is flagged (Hair et al.'s rule for Mode B)
VIF_CAUTION = 5.0


def composite_table(
    structure, mats: dict[str, np.ndarray], *, groups: list[str], hdi_prob: float = config.HDI_PROB
) -> pd.DataFrame:
    """Weights, standardized weights, implied loadings and VIF of every composite indicator.

    Parameters
    ----------
    structure : SEMStructure
        The model's parameter table (its ``composites``).
    mats : dict
        Draws of the model matrices, ``(chain, draw, G, ...)``
        (:meth:`~cxlib.models.sem.result.SEMResult.matrices`).
    groups : list of str
        The group labels (one without groups).
    hdi_prob : float
        Interval mass.

    Returns
    -------
    pandas.DataFrame
        One row per composite, indicator and group: ``composite, indicator, group,
        weight, weight_hdi_low, weight_hdi_high, weight_std (with HDI), loading (with
        HDI), vif, p_positive`` and ``note`` (collinearity warnings).
    """
    latents = structure.latents
    rows = []
    for g, group in enumerate(groups):
        B = mats["B"][:, :, g]
        cov = mats["cov_eta"][:, :, g]
        sd = np.sqrt(np.maximum(np.diagonal(cov, axis1=-2, axis2=-1), 1e-300))
        for comp, members in structure.composites.items():
            c = latents.index(comp)
            idx = [latents.index(x) for x in members]
            sub = cov[..., idx, :][..., :, idx]
            sub_sd = sd[..., idx]
            corr = sub / (sub_sd[..., :, None] * sub_sd[..., None, :])
            vif = np.diagonal(np.linalg.inv(corr), axis1=-2, axis2=-1).mean((0, 1))
            for j, (x, k) in enumerate(zip(members, idx, strict=True)):
                w = B[..., c, k]
                w_std = w * sd[..., k] / sd[..., c]
                loading = cov[..., k, c] / (sd[..., k] * sd[..., c])
                row = {"composite": comp, "indicator": x, "group": group}
                for name, draws in (("weight", w), ("weight_std", w_std), ("loading", loading)):
                    sm = summarize_draws(draws.reshape(-1), hdi_prob)
                    low, high = interval_columns(name)
                    row |= {name: float(sm["mean"]), low: float(sm["hdi_low"])}
                    row[high] = float(sm["hdi_high"])
                row["vif"] = float(vif[j])
                row["p_positive"] = float((w_std > 0).mean())
                row["note"] = (
                    f"VIF {vif[j]:.1f} > {VIF_CAUTION:g}: {x} overlaps the other indicators of "
                    f"{comp}; its weight is unstable (merge or drop overlapping indicators)"
                    if vif[j] > VIF_CAUTION
                    else ""
                )
                rows.append(row)
    columns = ["composite", "indicator", "group"]
    for name in ("weight", "weight_std", "loading"):
        columns += [name, *interval_columns(name)]
    columns += ["vif", "p_positive", "note"]
    table = pd.DataFrame(rows, columns=columns)
    if len(groups) == 1:
        table = table.drop(columns="group")
    return table
