"""The fitted SEM: lavaan-style estimates, effects, fit measures, reliability and scores."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.errors import ImproperSolutionWarning, ModelSpecificationError
from cxlib.models.base import ModelResult
from cxlib.models.diagnostics import chain_diagnostics, count_divergences, diagnose
from cxlib.models.sem.data import prepare_data, saturated_em
from cxlib.models.sem.quality import ImproperSolution, check_improper, htmt_draws
from cxlib.models.sem.structure import SEMStructure
from cxlib.stats import interval_columns, summarize_draws

if TYPE_CHECKING:  # pragma: no cover
    from cxlib.models.sem.model import BayesianSEM

__all__ = ["ImproperSolution", "ReliabilityReport", "SEMResult"]


@dataclass
class ReliabilityReport:
    """Reliability and validity of the measurement model.

    Attributes
    ----------
    constructs : pandas.DataFrame
        Per construct (the index): ``items``; ``alpha`` (Cronbach's alpha from the raw
        item covariances, as lavaan/semTools report it; the column name is kept for
        older tables) and ``alpha_standardized`` (from the item correlations, as seminr
        and SmartPLS report it), both from the data and NaN for one item; ``rho_a``
        (Dijkstra-Henseler's rho_A) with ``rho_a_hdi_low`` / ``rho_a_hdi_high``;
        ``omega`` (composite reliability) and ``ave`` (average variance extracted), each
        with ``_hdi_low`` / ``_hdi_high``. See :meth:`SEMResult.reliability`.
    htmt : pandas.DataFrame
        Heterotrait-monotrait ratios between constructs from the data (construct by
        construct; NaN on the diagonal).
    htmt_intervals : pandas.DataFrame
        One row per pair of constructs: ``construct``, ``versus``, ``htmt_data`` (the
        matrix's value), ``htmt`` (posterior mean of the model-implied HTMT),
        ``htmt_hdi_low``, ``htmt_hdi_high`` and ``p_above_0_9`` (posterior probability
        that it exceeds 0.9).
    notes : list of str
        How single-item constructs and the columns were computed.
    """

    constructs: pd.DataFrame
    htmt: pd.DataFrame
    htmt_intervals: pd.DataFrame | None = None
    notes: list[str] | None = None

    def _repr_html_(self) -> str:
        out = self.constructs._repr_html_() + "<br>HTMT<br>" + self.htmt._repr_html_()
        if self.htmt_intervals is not None:
            out += "<br>HTMT, posterior<br>" + self.htmt_intervals._repr_html_()
        return out

    def __str__(self) -> str:
        out = f"{self.constructs}\n\nHTMT\n{self.htmt.round(3)}"
        if self.htmt_intervals is not None:
            out += f"\n\nHTMT, posterior\n{self.htmt_intervals.round(3).to_string(index=False)}"
        if self.notes:
            out += "\n\n" + "\n".join(f"note: {n}" for n in self.notes)
        return out


class SEMResult(ModelResult):
    """A fitted :class:`BayesianSEM`: estimates, effects, R², reliability, fit and scores.

    Attributes
    ----------
    idata : arviz.InferenceData
        The posterior. Matrices on the data's scale as ``pm.Deterministic``:
        ``Lambda`` (item, latent), ``B`` (latent, latent_; outcome by predictor),
        ``Psi`` (latent (residual) covariances), ``Theta`` (item residual
        covariances), ``nu`` (intercepts), ``alpha`` (group latent means),
        ``defined`` and ``loglik``; ordinal fits add ``thresholds``.
    model : BayesianSEM
    improper : ImproperSolution
        Signs of an improper solution (see :attr:`improper`); ``trustworthy`` is
        ``diagnostics.ok and improper.ok``.
    """

    def __init__(self, model: BayesianSEM, idata):
        super().__init__(model, idata)
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ basics
    @property
    def structure(self) -> SEMStructure:
        """The model's parameter structure."""
        return self.model.structure

    @property
    def groups(self) -> list[str]:
        """Group labels (``[config.EVERYONE]`` without groups)."""
        return list(self.model.fit_options.get("groups", [config.EVERYONE]))

    @property
    def grouped(self) -> bool:
        """True when fitted with ``group=``."""
        return len(self.groups) > 1

    @property
    def ordinal(self) -> bool:
        """True when fitted with the ordinal (pairwise) likelihood, for all items or some."""
        return bool(self.model.fit_options.get("ordinal"))

    @property
    def ordinal_items(self) -> list[str]:
        """The items fitted as ordered categories (empty for a continuous fit)."""
        return list(self.model.fit_options.get("ordinal") or [])

    def _draws(self, name: str) -> np.ndarray:
        """Posterior draws of a variable, shape ``(chain, draw, ...)``."""
        return np.asarray(self.idata.posterior[name].values)

    def matrices(self) -> dict[str, np.ndarray]:
        """Draws of the model matrices with a group axis: ``(chain, draw, G, ...)``.

        ``Lambda, B, Psi, Theta, nu, alpha`` and what follows from them: ``inv``
        (``(I - B)^-1``), ``cov_eta``, ``sigma`` (implied item covariance), ``mean_eta``
        and ``mu`` (implied item means). Computed once and cached.
        """
        if "matrices" in self._cache:
            return self._cache["matrices"]
        G = len(self.groups)
        post = self.idata.posterior
        st = self.structure

        def with_group(name: str, base_ndim: int) -> np.ndarray:
            arr = np.asarray(post[name].values)
            if arr.ndim == 2 + base_ndim:
                arr = arr[:, :, None]
            return np.broadcast_to(arr, arr.shape[:2] + (G,) + arr.shape[3:])

        mats = {
            "Lambda": with_group("Lambda", 2),
            "B": with_group("B", 2),
            "Psi": with_group("Psi", 2),
            "Theta": with_group("Theta", 2),
            "nu": with_group("nu", 1),
        }
        if "alpha" in post:
            mats["alpha"] = np.asarray(post["alpha"].values)
        else:
            mats["alpha"] = np.zeros(mats["B"].shape[:3] + (st.n_latents,))
        inv = _nilpotent_inverse_np(mats["B"])
        cov_eta = inv @ mats["Psi"] @ np.swapaxes(inv, -1, -2)
        mean_src = mats["alpha"]
        if st.interactions:
            # product terms: their variance adds to the disturbances' (see
            # _product_moments) and their means to the latents' means
            mats["Gamma"] = with_group("Gamma", 1)
            mats["interaction_keys"] = [(p.row, p.parts, p.rhs) for p in st.interactions]
            var_q, mean_q = _product_moments(st, mats["Gamma"], cov_eta)
            cov_eta = inv @ (mats["Psi"] + var_q) @ np.swapaxes(inv, -1, -2)
            mean_src = mean_src + mean_q
        sigma = mats["Lambda"] @ cov_eta @ np.swapaxes(mats["Lambda"], -1, -2) + mats["Theta"]
        mats["inv"] = inv
        mats["cov_eta"] = cov_eta
        mats["sigma"] = sigma
        mats["mean_eta"] = (inv @ mean_src[..., None])[..., 0]
        mats["mu"] = mats["nu"] + (mats["Lambda"] @ mats["mean_eta"][..., None])[..., 0]
        self._cache["matrices"] = mats
        return mats

    # ------------------------------------------------------------------ diagnostics
    def _compute_diagnostics(self):
        table = self._param_draws(standardized=False, free_only=True)
        names, arr = table
        import xarray as xr

        da = xr.DataArray(arr, dims=("chain", "draw", "param"), coords={"param": names})
        # ArViZ's numba kernels cost ~1 s of JIT compiling per process for a few
        # dozen parameters, more than the NumPy versions take to run
        from arviz.utils import Numba

        was = Numba.numba_flag
        Numba.disable_numba()
        try:
            return diagnose(
                da,
                divergences=count_divergences(self.idata),
                sign_disagreement=self._sign_disagreement(names, arr),
            )
        finally:
            if was:
                Numba.enable_numba()

    @staticmethod
    def _sign_disagreement(names: list[str], arr: np.ndarray) -> list[str]:
        if arr.shape[0] < 2:
            return []
        out = []
        means = arr.mean(axis=1)
        sds = arr.std(axis=1) + 1e-12
        for j, name in enumerate(names):
            if "=~" not in name:
                continue
            mj, sj = means[:, j], sds[:, j]
            clear = np.abs(mj) > 2 * sj
            if clear.all() and (np.sign(mj).min() != np.sign(mj).max()):
                out.append(name)
        return out

    # ------------------------------------------------------------------ estimates
    def _rows(self, free_only: bool = False) -> list[tuple[Any, int]]:
        rows = []
        G = len(self.groups)
        ordinal = set(self.ordinal_items)
        st = self.structure
        for prm in st.params:
            if prm.kind == "latent_mean" and not (self.grouped and not self.ordinal):
                continue
            if prm.kind == "intercept" and prm.lhs in ordinal:
                continue
            if prm.kind in ("loading", "item_cov") and prm.lhs in st.observed:
                continue  # an observed variable is its own latent, measured without error
            if free_only and not prm.is_free and prm.kind != "latent_mean":
                continue
            for g in range(G):
                if prm.kind == "latent_mean" and g == 0:
                    if free_only:
                        continue
                if (
                    free_only
                    and g > 0
                    and prm.kind not in ("path", "latent_mean")
                    and not (
                        prm.kind == "loading" and self.model.fit_options.get("invariance") == "none"
                    )
                ):
                    continue
                rows.append((prm, g))
        return rows

    def _param_draws(self, *, standardized: bool, free_only: bool = False):
        mats = self.matrices()
        names, cols = [], []
        sd_y = np.sqrt(np.diagonal(mats["sigma"], axis1=-2, axis2=-1))
        sd_eta = np.sqrt(np.diagonal(mats["cov_eta"], axis1=-2, axis2=-1))
        for prm, g in self._rows(free_only):
            x = self._param_value(mats, prm, g)
            if standardized:
                x = x / self._std_divisor(prm, g, sd_y, sd_eta)
            suffix = f" [{self.groups[g]}]" if self.grouped else ""
            names.append(prm.name + suffix)
            cols.append(x)
        if self.ordinal and "thresholds" in self.idata.posterior:
            th = self._draws("thresholds")
            for j, it in enumerate(self.structure.items):
                for k in range(th.shape[-1]):
                    if np.all(np.isnan(th[..., j, k])):
                        continue
                    names.append(f"{it} | t{k + 1}")
                    cols.append(th[..., j, k])
        if not free_only:
            for g in range(len(self.groups)):
                for d, x in self._defined_draws(mats, g, standardized):
                    names.append(
                        f"{d.name} := {d.expression}"
                        + (f" [{self.groups[g]}]" if self.grouped else "")
                    )
                    cols.append(x)
        arr = np.stack(cols, axis=-1) if cols else np.zeros(mats["B"].shape[:2] + (0,))
        return names, arr

    @staticmethod
    def _param_value(mats, prm, g) -> np.ndarray:
        if prm.kind == "loading":
            return mats["Lambda"][:, :, g, prm.row, prm.col]
        if prm.kind == "path":
            return mats["B"][:, :, g, prm.row, prm.col]
        if prm.kind == "composite_path":
            # F ~ X for a composite F: sum_j w_j (x_j ~ X) over F's indicators x_j
            B = mats["B"][:, :, g]
            return (B[..., prm.row, :] * B[..., :, prm.col]).sum(-1)
        if prm.kind == "item_cov":
            return mats["Theta"][:, :, g, prm.row, prm.col]
        if prm.kind == "latent_cov":
            return mats["Psi"][:, :, g, prm.row, prm.col]
        if prm.kind == "intercept":
            return mats["nu"][:, :, g, prm.row]
        if prm.kind == "interaction":
            return mats["Gamma"][:, :, g, _interaction_index(mats, prm)]
        return mats["alpha"][:, :, g, prm.row]

    @staticmethod
    def _std_divisor(prm, g, sd_y, sd_eta) -> np.ndarray:
        sy, se = sd_y[:, :, g], sd_eta[:, :, g]
        if prm.kind == "loading":
            return sy[..., prm.row] / se[..., prm.col]
        if prm.kind in ("path", "composite_path"):
            return se[..., prm.row] / se[..., prm.col]
        if prm.kind == "item_cov":
            return sy[..., prm.row] * sy[..., prm.col]
        if prm.kind == "latent_cov":
            return se[..., prm.row] * se[..., prm.col]
        if prm.kind == "intercept":
            return sy[..., prm.row]
        if prm.kind == "interaction":
            # as lavaan for a product term: times sd(X) sd(Z), over sd(Y)
            a, b = prm.parts
            return se[..., prm.row] / (se[..., a] * se[..., b])
        return se[..., prm.row]

    def _defined_draws(self, mats, g: int, standardized: bool):
        st = self.structure
        if not st.parsed.defined:
            return []
        sd_y = np.sqrt(np.diagonal(mats["sigma"], axis1=-2, axis2=-1))
        sd_eta = np.sqrt(np.diagonal(mats["cov_eta"], axis1=-2, axis2=-1))
        env: dict[str, Any] = {}
        for prm in st.params:
            if prm.label and prm.label not in env:
                x = self._param_value(mats, prm, g)
                if standardized:
                    x = x / self._std_divisor(prm, g, sd_y, sd_eta)
                env[prm.label] = x
        out = []
        for d in st.parsed.defined:
            value = eval(d.expression.replace("^", "**"), {"__builtins__": {}}, env)  # noqa: S307
            env[d.name] = value
            out.append((d, np.broadcast_to(np.asarray(value, dtype=float), mats["B"].shape[:2])))
        return out

    def estimates(
        self, standardized: bool = False, *, hdi_prob: float = config.HDI_PROB
    ) -> pd.DataFrame:
        """The parameter table, named as lavaan's ``parameterEstimates()``.

        Parameters
        ----------
        standardized : bool
            False: on the data's scale. True: the fully standardized solution
            (``std.all``: latents and items with variance 1; defined parameters
            recomputed from the standardized labelled parameters).
        hdi_prob : float
            Probability mass of the highest-density interval (default 0.94).

        Returns
        -------
        pandas.DataFrame
            Columns ``lhs, op, rhs, label, mean, sd, hdi_low, hdi_high, r_hat,
            ess_bulk`` (and ``group`` when fitted with groups). Fixed parameters have
            ``sd`` 0 and no R-hat.
        """
        key = ("estimates", standardized, hdi_prob)
        if key in self._cache:
            return self._cache[key].copy()
        names, arr = self._param_draws(standardized=standardized)
        summary = _summarize(arr, hdi_prob)
        rows = []
        rows_meta = self._rows()
        i = 0
        for prm, g in rows_meta:
            rows.append(
                {
                    "lhs": prm.lhs,
                    "op": prm.op,
                    "rhs": prm.rhs,
                    "label": prm.label or "",
                    "group": self.groups[g],
                }
            )
            i += 1
        if self.ordinal and "thresholds" in self.idata.posterior:
            for name in names[i:]:
                if " | " in name:
                    it, t = name.split(" | ")
                    rows.append(
                        {"lhs": it, "op": "|", "rhs": t, "label": "", "group": self.groups[0]}
                    )
        for g in range(len(self.groups)):
            for d in self.structure.parsed.defined:
                rows.append(
                    {
                        "lhs": d.name,
                        "op": ":=",
                        "rhs": d.expression,
                        "label": d.name,
                        "group": self.groups[g],
                    }
                )
        table = pd.DataFrame(rows)
        table = pd.concat([table, summary], axis=1)
        if not self.grouped:
            table = table.drop(columns="group")
        self._cache[key] = table
        return table.copy()

    # ------------------------------------------------------------------ effects
    def effects(
        self, standardized: bool = False, *, hdi_prob: float = config.HDI_PROB
    ) -> pd.DataFrame:
        """Direct, indirect and total effects of every construct on every other.

        Parameters
        ----------
        standardized : bool
            Effects in standard deviations of the outcome per SD of the predictor.
        hdi_prob : float
            Interval mass.

        Returns
        -------
        pandas.DataFrame
            Columns ``from, to, effect, path, mean, sd, hdi_low, hdi_high, p_positive``
            (and ``group``). ``effect`` is ``direct``, ``indirect`` (all mediated
            paths), ``total``, ``specific indirect`` (one path, named in ``path``) or
            ``proportion mediated`` (indirect / total, per path and overall).
            ``note`` says how a row was computed: a proportion mediated is the
            posterior of the per-draw ratio when the total effect's HDI excludes 0,
            and is reported as not defined (NaN estimates, with the reason in
            ``note``) when it includes 0: the ratio's draws then spread without bound
            (a mean of 17.5 with an SD of 789 is typical) and no summary of them is
            meaningful. Other rows have an empty ``note``.

        Notes
        -----
        In a model with interactions (``Y ~ X + Z + X:Z``) the effects are conditional
        on the moderators at their mean (latents have mean 0, observed variables are
        centred at theirs): the slope of ``X`` there is ``B[Y, X]`` because the product
        term's derivative ``g Z`` vanishes at ``Z = 0``. For the slope at other values of
        the moderator see :meth:`simple_slopes`, :meth:`johnson_neyman` and
        :meth:`moderated_mediation`.
        """
        mats = self.matrices()
        st = self.structure
        latents = st.latents
        B_all = mats["B"]
        inv_all = mats["inv"]
        preds: dict[int, list[int]] = {}
        for prm in st.of_kind("path"):
            preds.setdefault(prm.row, []).append(prm.col)
        succ: dict[int, list[int]] = {}
        for y, xs in preds.items():
            for x in xs:
                succ.setdefault(x, []).append(y)

        def paths_from(x: int, y: int) -> list[list[int]]:
            if x == y:
                return [[y]]
            return [[x, *rest] for nxt in succ.get(x, []) for rest in paths_from(nxt, y)]

        rows, cols = [], []
        for g in range(len(self.groups)):
            B, inv = B_all[:, :, g], inv_all[:, :, g]
            sd = np.sqrt(np.diagonal(mats["cov_eta"][:, :, g], axis1=-2, axis2=-1))
            for x in range(len(latents)):
                for y in range(len(latents)):
                    if x == y:
                        continue
                    chains = paths_from(x, y)
                    if not chains:
                        continue
                    scale = sd[..., x] / sd[..., y] if standardized else 1.0
                    direct = B[..., y, x] * scale
                    total = inv[..., y, x] * scale
                    indirect = total - direct
                    base = {"from": latents[x], "to": latents[y], "group": self.groups[g]}
                    arrow = f"{latents[x]} → {latents[y]}"
                    entries = [("direct", arrow, direct)]
                    mediated = [c for c in chains if len(c) > 2]
                    if mediated:
                        entries.append(("indirect", "all mediated paths", indirect))
                    entries.append(("total", arrow, total))
                    for c in mediated:
                        prod = np.ones_like(total)
                        for a, b in zip(c, c[1:], strict=False):
                            prod = prod * B[..., b, a]
                        entries.append(
                            ("specific indirect", " → ".join(latents[i] for i in c), prod * scale)
                        )
                    if mediated:
                        with np.errstate(divide="ignore", invalid="ignore"):
                            entries.append(
                                ("proportion mediated", "all mediated paths", indirect / total)
                            )
                            for c in mediated if len(mediated) > 1 else []:
                                prod = np.ones_like(total)
                                for a, b in zip(c, c[1:], strict=False):
                                    prod = prod * B[..., b, a]
                                entries.append(
                                    (
                                        "proportion mediated",
                                        " → ".join(latents[i] for i in c),
                                        prod * scale / total,
                                    )
                                )
                    for effect, path, draws in entries:
                        rows.append({**base, "effect": effect, "path": path})
                        cols.append(np.broadcast_to(draws, B.shape[:2]))
        if not cols:
            return pd.DataFrame(
                columns=[
                    "from",
                    "to",
                    "effect",
                    "path",
                    "mean",
                    "sd",
                    "hdi_low",
                    "hdi_high",
                    "p_positive",
                    "note",
                ]
            )
        arr = np.stack(cols, axis=-1)
        summary = _summarize(arr, hdi_prob, diagnostics=False)
        summary["p_positive"] = (arr.reshape(-1, arr.shape[-1]) > 0).mean(0)
        table = pd.concat([pd.DataFrame(rows), summary], axis=1)
        table["note"] = ""
        totals = table[table.effect == "total"].set_index(["from", "to", "group"])
        for i in np.flatnonzero((table.effect == "proportion mediated").to_numpy()):
            row = table.iloc[i]
            tot = totals.loc[(row["from"], row["to"], row["group"])]
            if tot["hdi_low"] <= 0 <= tot["hdi_high"]:
                table.iloc[i, table.columns.get_indexer(_ESTIMATE_COLUMNS)] = np.nan
                table.iloc[i, table.columns.get_loc("note")] = (
                    f"not defined: the total effect's {hdi_prob:.0%} interval includes 0 "
                    f"({tot['hdi_low']:.3f} to {tot['hdi_high']:.3f}), so indirect / total "
                    "has no stable value; read the indirect and total effects"
                )
            else:
                table.iloc[i, table.columns.get_loc("note")] = (
                    "indirect / total per draw (the total effect's interval excludes 0)"
                )
        if not self.grouped:
            table = table.drop(columns="group")
        return table

    def group_differences(self, *, hdi_prob: float = config.HDI_PROB) -> pd.DataFrame:
        """Posterior of the differences in paths between segments (fits with ``group=``).

        Returns
        -------
        pandas.DataFrame
            Per path and pair of groups: ``lhs, op, rhs, group, versus, mean, sd,
            hdi_low, hdi_high, p_positive`` (``group`` minus ``versus``).
        """
        if not self.grouped:
            raise ModelSpecificationError("group_differences() needs a fit with group=...")
        mats = self.matrices()
        rows, cols = [], []
        G = len(self.groups)
        for prm in self.structure.of_kind("path"):
            for a in range(G):
                for b in range(a + 1, G):
                    diff = (
                        mats["B"][:, :, b, prm.row, prm.col] - mats["B"][:, :, a, prm.row, prm.col]
                    )
                    rows.append(
                        {
                            "lhs": prm.lhs,
                            "op": "~",
                            "rhs": prm.rhs,
                            "group": self.groups[b],
                            "versus": self.groups[a],
                        }
                    )
                    cols.append(diff)
        arr = np.stack(cols, axis=-1)
        summary = _summarize(arr, hdi_prob, diagnostics=False)
        summary["p_positive"] = (arr.reshape(-1, arr.shape[-1]) > 0).mean(0)
        return pd.concat([pd.DataFrame(rows), summary], axis=1)

    # ------------------------------------------------------------------ r2
    def r2(self, *, hdi_prob: float = config.HDI_PROB) -> pd.DataFrame:
        """Explained variance of endogenous constructs and of items.

        Returns
        -------
        pandas.DataFrame
            Columns ``variable, kind (latent|observed|item), mean, sd, hdi_low,
            hdi_high`` (and ``group``): endogenous constructs and observed outcomes, then
            the items of the constructs. Composites are left out (a composite is its
            indicators' weighted sum).
        """
        mats = self.matrices()
        st = self.structure
        rows, cols = [], []
        for g in range(len(self.groups)):
            cov_eta = mats["cov_eta"][:, :, g]
            for lat in st.endogenous:
                if lat in st.composites:
                    continue  # a composite is its indicators' weighted sum (R² 1 by definition)
                k = st.latents.index(lat)
                kind = "observed" if lat in st.observed else "latent"
                rows.append({"variable": lat, "kind": kind, "group": self.groups[g]})
                cols.append(1 - mats["Psi"][:, :, g, k, k] / cov_eta[..., k, k])
            sigma = mats["sigma"][:, :, g]
            for j, it in enumerate(st.items):
                if it in st.observed:
                    continue
                rows.append({"variable": it, "kind": "item", "group": self.groups[g]})
                cols.append(1 - mats["Theta"][:, :, g, j, j] / sigma[..., j, j])
        summary = _summarize(np.stack(cols, -1), hdi_prob, diagnostics=False)
        table = pd.concat([pd.DataFrame(rows), summary], axis=1)
        return table if self.grouped else table.drop(columns="group")

    def composites(self, *, hdi_prob: float = config.HDI_PROB) -> pd.DataFrame:
        """Weights, standardized weights, implied loadings and VIF of each composite's indicators.

        See :mod:`cxlib.models.sem.composites` for how a composite (``F <~ x1 + x2``) is
        identified and what each column means. Empty for a model without composites.

        Returns
        -------
        pandas.DataFrame
            ``composite, indicator, weight, weight_std, loading`` (each with its HDI),
            ``vif, p_positive, note`` (and ``group``).
        """
        from cxlib.models.sem.composites import composite_table

        return composite_table(
            self.structure, self.matrices(), groups=self.groups, hdi_prob=hdi_prob
        )

    # ------------------------------------------------------------------ reliability
    def reliability(self, *, hdi_prob: float = config.HDI_PROB) -> ReliabilityReport:
        """Cronbach's alpha (raw and standardized), rho_A, omega, AVE and HTMT.

        - ``alpha`` (raw item covariances) and ``alpha_standardized`` (item
          correlations) are computed from the data: the saturated covariance, which uses
          every answer under missingness at random. Both are NaN for a single item.
        - ``omega`` (composite reliability, ``(sum lambda)^2 var(eta) / var(sum y)``)
          and ``ave`` (mean squared standardized loading) are computed per posterior draw
          (model-implied, first group) and reported with HDIs. AVE from a factor model
          is lower than PLS's: a PLS loading is the correlation of an item with a
          composite that contains the item itself, so it is inflated by the item's own
          error variance; a factor model's standardized loading is not.
        - ``rho_a`` is Dijkstra and Henseler's (2015) rho_A,
          ``(w'w)^2 w'(S - diag S)w / w'(ww' - diag ww')w`` with ``S`` the data's item
          correlations and ``w`` the weights scaled to ``w'Sw = 1``. PLS takes ``w``
          from its outer weights; a factor model has none, so ``w`` is proportional to
          the standardized loadings of each draw (``rho_a`` is then the reliability of
          the loading-weighted composite) and is reported with an HDI.
        - HTMT (Henseler, Ringle & Sarstedt, 2015) from the data (``htmt``), and per
          draw from the model-implied item correlations (``htmt_intervals``, with
          HDIs). For a single-item construct the monotrait-heteromethod term (the mean
          correlation among its items) is taken as its stated reliability, else 1 (the
          item measures the construct without error, as it is fitted).
        - Single-item constructs: ``omega``, ``rho_a`` and ``ave`` are the item's
          share of true variance as fitted (1, or the stated reliability).

        After a fit with ordinal items (all or some), omega, AVE, rho_A's weights and
        the model-implied HTMT use the latent responses for the ordinal items (the
        data's scale for continuous ones); alpha and the data HTMT use the answers as
        numbers.

        Returns
        -------
        ReliabilityReport
        """
        st = self.structure
        mats = self.matrices()
        _, cov_z = self._h1(group=None)
        cov = cov_z * np.outer(self.data.scale, self.data.scale)
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        g = 0
        Lam = mats["Lambda"][:, :, g]
        sigma = mats["sigma"][:, :, g]
        cov_eta = mats["cov_eta"][:, :, g]
        sd_y = np.sqrt(np.diagonal(sigma, axis1=-2, axis2=-1))
        # reflective constructs only: a composite has no reliability (see composites())
        # and an observed variable is not a construct
        measured = st.reflective
        blocks = [[st.items.index(it) for it in st.indicators(lat)] for lat in measured]
        mono_single = [st.reliability.get(lat, 1.0) for lat in measured]
        rows = []
        for b, lat in enumerate(measured):
            k = st.latents.index(lat)
            idx = blocks[b]
            kk = len(idx)
            sub = cov[np.ix_(idx, idx)]
            rsub = corr[np.ix_(idx, idx)]
            if kk > 1:
                alpha = kk / (kk - 1) * (1 - np.trace(sub) / sub.sum())
                rbar = rsub[np.triu_indices(kk, 1)].mean()
                alpha_std = kk * rbar / (1 + (kk - 1) * rbar)
            else:
                alpha = alpha_std = np.nan
            lam_sum = Lam[..., idx, k].sum(-1)
            true_var = lam_sum**2 * cov_eta[..., k, k]
            total_var = sigma[..., idx, :][..., :, idx].sum((-2, -1))
            omega = true_var / total_var
            std_l = Lam[..., idx, k] * np.sqrt(cov_eta[..., k, k])[..., None] / sd_y[..., idx]
            ave = (std_l**2).mean(-1)
            if kk > 1:
                w = std_l / np.sqrt(np.einsum("...i,ij,...j->...", std_l, rsub, std_l))[..., None]
                ww = (w**2).sum(-1)
                off = rsub - np.diag(np.diag(rsub))
                num = ww**2 * np.einsum("...i,ij,...j->...", w, off, w)
                rho_a = num / (ww**2 - (w**4).sum(-1))
            else:
                rho_a = omega
            row = {"construct": lat, "items": kk, "alpha": alpha, "alpha_standardized": alpha_std}
            for name, x in (("rho_a", rho_a), ("omega", omega), ("ave", ave)):
                sm = _summarize(x[..., None], hdi_prob, diagnostics=False).iloc[0]
                low, high = interval_columns(name)
                row |= {name: sm["mean"], low: sm["hdi_low"], high: sm["hdi_high"]}
            rows.append(row)
        ht_data = htmt_draws(corr, blocks, mono_single)
        htmt = pd.DataFrame(ht_data, index=measured, columns=measured)
        sd_w = sd_y
        corr_w = sigma / (sd_w[..., :, None] * sd_w[..., None, :])
        ht = htmt_draws(corr_w, blocks, mono_single)
        pairs, cols = [], []
        m = len(measured)
        for i in range(m):
            for j in range(i + 1, m):
                pairs.append((measured[i], measured[j], float(ht_data[i, j])))
                cols.append(ht[..., i, j])
        if cols:
            arr = np.stack(cols, -1)
            sm = _summarize(arr, hdi_prob, diagnostics=False)
            above = (arr.reshape(-1, arr.shape[-1]) > 0.9).mean(0)
        intervals = pd.DataFrame(
            {
                "construct": [p[0] for p in pairs],
                "versus": [p[1] for p in pairs],
                "htmt_data": [p[2] for p in pairs],
                "htmt": sm["mean"].to_numpy() if cols else [],
                "htmt_hdi_low": sm["hdi_low"].to_numpy() if cols else [],
                "htmt_hdi_high": sm["hdi_high"].to_numpy() if cols else [],
                "p_above_0_9": above if cols else [],
            }
        )
        notes = [
            "alpha: Cronbach's alpha from the raw item covariances; alpha_standardized: "
            "from the item correlations (seminr's and SmartPLS's)",
            "rho_a: Dijkstra-Henseler rho_A with weights proportional to the standardized "
            "loadings of each posterior draw (a factor model has no PLS outer weights)",
            "ave: from the factor model's standardized loadings; PLS reports higher AVEs "
            "because a PLS loading correlates an item with a composite that contains the "
            "item's own error",
        ]
        single = [lat for b, lat in enumerate(measured) if len(blocks[b]) == 1]
        if single:
            notes.append(
                "single-item constructs ("
                + ", ".join(
                    f"{lat}: reliability {st.reliability[lat]:g} as stated"
                    if lat in st.reliability
                    else f"{lat}: measured without error"
                    for lat in single
                )
                + "): no alpha; omega, rho_a and ave are the item's share of true variance "
                "as fitted; in HTMT their monotrait term is that reliability (1 without one)"
            )
        return ReliabilityReport(pd.DataFrame(rows).set_index("construct"), htmt, intervals, notes)

    # ------------------------------------------------------------------ fit
    def _h1(self, group: int | None):
        key = ("h1", group)
        if key not in self._cache:
            self._cache[key] = saturated_em(self.data, group=group)
        return self._cache[key]

    def fit_measures(
        self,
        *,
        n_replicates: int = 500,
        random_seed: int | None = None,
        hdi_prob: float = config.HDI_PROB,
    ) -> pd.Series:
        """Posterior predictive p-value of the chi-square discrepancy, BRMSEA and BCFI.

        The discrepancy of each posterior draw is the likelihood-ratio chi-square
        against the saturated model (estimated by EM under missingness at random).
        Replicated data of the same size are drawn from the model at that draw
        (complete data; the reference distribution is the same asymptotically), and
        PPP is the share of draws whose replicated chi-square exceeds the observed.
        BRMSEA and BCFI follow Garnier-Villarreal & Jorgensen (2020) with the number of
        free parameters as ``pD``; the null model's chi-square is its ML value.

        Returns
        -------
        pandas.Series
            ``chisq`` (posterior mean), ``df``, ``ppp``, ``brmsea`` (mean,
            ``_hdi_low``, ``_hdi_high``), ``bcfi`` (mean, ``_hdi_low``, ``_hdi_high``), ``npar``,
            ``n_moments``, ``n_obs``.
        """
        if self.structure.interactions:
            raise ModelSpecificationError(
                "fit_measures() is not available for a model with interactions (Y ~ X:Z): "
                "its items are not multivariate normal (a product of latents is not normal), "
                "so the chi-square against the saturated mean-and-covariance model, and "
                "BRMSEA/BCFI built on it, do not apply. Compare the model with and without "
                "the product terms through their estimates (the interaction's interval) instead"
            )
        if self.ordinal:
            raise ModelSpecificationError(
                "fit_measures() is available for the continuous likelihood only; the "
                "pairwise likelihood (ordinal or mixed ordinal/continuous items) has no "
                "saturated chi-square"
            )
        from scipy import stats

        d = self.data
        G = len(self.groups)
        p = len(d.items)
        l_h1 = 0.0
        chisq_null = 0.0
        h1 = []
        for g in range(G):
            mu_g, sig_g = self._h1(group=g if G > 1 else None)
            h1.append((mu_g, sig_g))
            sel = d.pat_group == g
            from cxlib.models.sem.data import pattern_loglik_np

            mu_arr = np.broadcast_to(mu_g, (G, p))
            sig_arr = np.broadcast_to(sig_g, (G, p, p))
            l_h1 += float(pattern_loglik_np(d, mu_arr, sig_arr, patterns=np.flatnonzero(sel)).sum())
            # null (independence) model: available-case ML, factorizes over items
            diag = np.diag(np.diag(sig_g))
            l_null = 0.0
            for j in range(p):
                obs = sel & d.pat_mask[:, j]
                W = d.pat_w[obs]
                m = d.pat_mean[obs, j]
                v = d.pat_cov[obs, j, j]
                mj = (W * m).sum() / W.sum()
                vj = (W * (v + (m - mj) ** 2)).sum() / W.sum()
                l_null += -0.5 * W.sum() * (np.log(2 * np.pi) + np.log(vj) + 1)
            del diag
            chisq_null += 2 * (
                float(pattern_loglik_np(d, mu_arr, sig_arr, patterns=np.flatnonzero(sel)).sum())
                - l_null
            )
        loglik = self._draws("loglik").reshape(-1)
        chisq = 2 * (l_h1 - loglik)
        n_moments = G * (p * (p + 3) // 2 - self.structure.n_fixed_x_moments)
        npar = self._n_free_total()
        df = n_moments - npar
        df_null = n_moments - G * 2 * p
        N = float(d.pat_w.sum())
        # replicated chi-square at thinned draws
        rng = np.random.default_rng(config.DEFAULT_SEED if random_seed is None else random_seed)
        mats = self.matrices()
        S = loglik.size
        pick = rng.choice(S, size=min(n_replicates, S), replace=False)
        sig_all = mats["sigma"].reshape((S,) + mats["sigma"].shape[2:])
        mu_all = mats["mu"].reshape((S,) + mats["mu"].shape[2:])
        scale = d.scale
        inv_s = 1 / scale
        exceed = []
        for idx in pick:
            rep = 0.0
            for g in range(G):
                Wg = float(d.pat_w[d.pat_group == g].sum())
                sig = sig_all[idx, g] * np.outer(inv_s, inv_s)
                mu = (mu_all[idx, g] - d.center) * inv_s
                L = np.linalg.cholesky(sig)
                nu = max(Wg - 1, p)
                Srep = stats.wishart.rvs(df=nu, scale=sig, random_state=rng) / Wg
                mrep = mu + L @ rng.standard_normal(p) / np.sqrt(Wg)
                Linv = np.linalg.inv(L)
                dev = Linv @ (mrep - mu)
                F = (
                    2 * np.log(np.diag(L)).sum()
                    + np.sum((Linv @ Srep) * Linv)
                    - np.linalg.slogdet(Srep)[1]
                    - p
                    + dev @ dev
                )
                rep += Wg * F
            exceed.append(rep >= chisq[idx])
        ppp = float(np.mean(exceed))
        brmsea = np.sqrt(np.maximum(0.0, (chisq - n_moments) / (max(df, 1) * N)))
        num = np.maximum(0.0, chisq - n_moments)
        den = np.maximum(chisq_null - df_null, num)
        bcfi = 1 - np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
        out = {"chisq": float(chisq.mean()), "df": df, "ppp": ppp}
        for name, x in (("brmsea", brmsea), ("bcfi", bcfi)):
            sm = _summarize(x[None, :, None], hdi_prob, diagnostics=False).iloc[0]
            out[name] = sm["mean"]
            low, high = interval_columns(name)
            out[low], out[high] = sm["hdi_low"], sm["hdi_high"]
        out.update(
            {
                "chisq_null": chisq_null,
                "npar": npar,
                "n_moments": n_moments,
                "n_obs": int(d.pat_n.sum()),
            }
        )
        return pd.Series(out, dtype=float)

    def _n_free_total(self) -> int:
        post = self.idata.posterior
        total = 0
        for name in (
            "loading",
            "loading_positive",
            "path",
            "item_sd",
            "item_corr",
            "latent_sd",
            "latent_corr",
            "intercept",
            "latent_mean",
            "threshold",
        ):
            if name in post:
                total += int(np.prod(post[name].shape[2:]))
        total -= len(self.structure.normalized)  # a direction: one less than its weights
        if self.grouped:
            total += len(self.structure.free_names["path"]) * (
                len(self.groups) - int(np.sum(self._pooled_mask())) - 1
            )
        return total

    def _pooled_mask(self) -> np.ndarray:
        pooled = set(self.model.fit_options.get("pooled_groups", []))
        return np.array([g in pooled for g in self.groups])

    # ------------------------------------------------------------------ scores
    def scores(
        self, data=None, *, n_draws: int = 200, random_seed: int | None = None
    ) -> pd.DataFrame:
        """Posterior mean latent scores per respondent.

        The expected latent value given a respondent's answers (the regression
        score ``E[eta | y]``), averaged over posterior draws, using every answered
        item (missing answers are skipped, not imputed).

        Parameters
        ----------
        data : DataFrame or SurveyData, optional
            The data the model was fitted to (required after ``load``; its hash is
            checked).
        n_draws : int
            Posterior draws averaged over (thinned at random).
        random_seed : int, optional

        Returns
        -------
        pandas.DataFrame
            One row per respondent (the data's index), one column per construct, on
            the construct's scale (its marker item's units, or SD 1).
        """
        if self.structure.interactions:
            raise ModelSpecificationError(
                "scores() is not available for a model with interactions (Y ~ X:Z) yet: the "
                "regression score E[eta | y] assumes normal latents, which a product term "
                "breaks, and the latent scores sampled in the fit are not stored"
            )
        if self.ordinal:
            raise ModelSpecificationError(
                "scores() is available for the continuous likelihood only for now (not "
                "after a fit with ordinal items, all or some)"
            )
        d = self.data
        if data is not None or d is None or d.y.shape[0] == 0:
            if data is None:
                raise ModelSpecificationError(
                    "scores() after load() needs the data the model was fitted to: "
                    "result.scores(data)"
                )
            group = self.model.fit_options.get("group")
            fresh = prepare_data(data, self.structure.items, weights=False, group=group)
            stored = self.idata.attrs.get("data_hash", "")
            if hasattr(data, "data_hash") and stored and data.data_hash != stored:
                raise ModelSpecificationError(
                    "these data are not the data the model was fitted to (data hash "
                    f"{data.data_hash[:12]} vs {stored[:12]})"
                )
            # keep the fitted standardization
            fresh.y = fresh.y * fresh.scale / d.scale + (fresh.center - d.center) / d.scale
            d_use = fresh
        else:
            d_use = d
        mats = self.matrices()
        S = mats["B"].shape[0] * mats["B"].shape[1]
        rng = np.random.default_rng(config.DEFAULT_SEED if random_seed is None else random_seed)
        pick = rng.choice(S, size=min(n_draws, S), replace=False)

        def flat(name):
            a = mats[name]
            return a.reshape((S,) + a.shape[2:])[pick]

        Lam, cov_eta, sigma, mu, mean_eta = (
            flat(n) for n in ("Lambda", "cov_eta", "sigma", "mu", "mean_eta")
        )
        # to standardized item scale
        s, ctr = d.scale, d.center
        Lam_z = Lam / s[None, None, :, None]
        sigma_z = sigma / np.outer(s, s)
        mu_z = (mu - ctr) / s
        C = cov_eta @ np.swapaxes(Lam_z, -1, -2)  # (D, G, m, p)
        out = np.full((d_use.y.shape[0], self.structure.n_latents), np.nan)
        obs_all = ~np.isnan(d_use.y)
        keys = np.concatenate([d_use.group_codes[:, None], obs_all], axis=1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.ravel()
        for k in range(uniq.shape[0]):
            rows = np.flatnonzero(inv == k)
            g = int(uniq[k, 0])
            o = np.flatnonzero(uniq[k, 1:].astype(bool))
            Soo = sigma_z[:, g][:, o][:, :, o]
            K = np.linalg.solve(Soo, np.swapaxes(C[:, g][:, :, o], -1, -2))  # (D, |o|, m)
            K = np.swapaxes(K, -1, -2)  # (D, m, |o|)
            offset = mean_eta[:, g] - (K @ mu_z[:, g, o][..., None])[..., 0]
            out[rows] = offset.mean(0) + d_use.y[np.ix_(rows, o)] @ K.mean(0).T
        return pd.DataFrame(out, index=d_use.respondent_ids, columns=self.structure.latents)

    # ------------------------------------------------------------------ moderation
    def simple_slopes(
        self,
        x: str,
        moderator: str,
        at=None,
        *,
        outcome: str | None = None,
        hdi_prob: float = config.HDI_PROB,
    ) -> pd.DataFrame:
        """The slope of ``x`` at values of ``moderator`` (a fit with ``x:moderator``).

        Default values: the moderator's mean - 1 SD, mean and mean + 1 SD; see
        :func:`cxlib.models.sem.moderation.simple_slopes`.

        Returns
        -------
        pandas.DataFrame
            ``outcome, predictor, moderator, at, moderator_value, mean, sd, hdi_low,
            hdi_high, p_positive``.
        """
        from cxlib.models.sem.moderation import simple_slopes

        return simple_slopes(self, x, moderator, at, outcome=outcome, hdi_prob=hdi_prob)

    def johnson_neyman(
        self,
        x: str,
        moderator: str,
        *,
        outcome: str | None = None,
        grid=None,
        hdi_prob: float = config.HDI_PROB,
    ):
        """Where the slope of ``x`` has an interval excluding 0, along ``moderator``.

        See :func:`cxlib.models.sem.moderation.johnson_neyman`.

        Returns
        -------
        JohnsonNeyman
            ``table`` (the slope and ``p_positive`` along the grid) and ``regions``.
        """
        from cxlib.models.sem.moderation import johnson_neyman

        return johnson_neyman(self, x, moderator, outcome=outcome, grid=grid, hdi_prob=hdi_prob)

    def moderated_mediation(
        self, x: str, mediator: str, y: str, moderator: str, at=None, *, hdi_prob=config.HDI_PROB
    ):
        """Conditional indirect effects of ``x -> mediator -> y`` and the index of moderated mediation.

        See :func:`cxlib.models.sem.moderation.moderated_mediation`.

        Returns
        -------
        ModeratedMediation
            ``index`` (one row) and ``conditional`` (indirect and direct effects at the
            moderator's values).
        """
        from cxlib.models.sem.moderation import moderated_mediation

        return moderated_mediation(self, x, mediator, y, moderator, at, hdi_prob=hdi_prob)

    def simple_slope_lines(
        self, x: str, moderator: str, at=None, *, outcome: str | None = None
    ) -> pd.DataFrame:
        """The data of :func:`cxlib.plots.plot_simple_slopes` (conditional means along ``x``)."""
        from cxlib.models.sem.moderation import simple_slope_lines

        return simple_slope_lines(self, x, moderator, at, outcome=outcome)

    # ------------------------------------------------------------------ quality
    @property
    def improper(self) -> ImproperSolution:
        """Signs of an improper solution on the posterior (computed once).

        Standardized structural coefficients beyond ±1, latent R² of 0.95 or more,
        near-singular latent correlations, HTMT above 0.9 and variances at their
        boundary (Heywood cases); see :mod:`cxlib.models.sem.quality`.
        """
        if "improper" not in self._cache:
            self._cache["improper"] = check_improper(self)
        return self._cache["improper"]

    @property
    def trustworthy(self) -> bool:
        """True when the sampler converged (``diagnostics.ok``) and the solution is proper."""
        return bool(self.diagnostics.ok and self.improper.ok)

    def warn_if_not_converged(self) -> None:
        """The fit's warnings: a :class:`ConvergenceWarning`, then an improper solution's.

        ``CxModel.fit`` calls this once after sampling; an SEM adds
        :meth:`warn_if_improper` to the convergence gates.
        """
        super().warn_if_not_converged()
        self.warn_if_improper(stacklevel=5)

    def warn_if_improper(self, *, stacklevel: int = 2) -> None:
        """Emit one :class:`~cxlib.errors.ImproperSolutionWarning` listing every problem.

        Parameters
        ----------
        stacklevel : int
            As :func:`warnings.warn` (5 from ``fit``: the caller of ``fit``).
        """
        imp = self.improper
        if not imp.ok:
            warnings.warn(
                f"{type(self.model).__name__}: improper solution; do not read the estimates "
                "as they stand:\n  - " + "\n  - ".join(imp.messages()),
                ImproperSolutionWarning,
                stacklevel=stacklevel,
            )

    def summary(self) -> str:
        """A short text summary: trustworthiness, diagnostics, improper solutions, the paths.

        The paths include composite weights (``<~``) and second-order loadings.
        """
        est = self.estimates()
        st = self.structure
        structural = est["op"].isin(["~", "<~", ":="]) | (
            (est["op"] == "=~") & est["lhs"].isin(list(st.higher_order))
        )
        paths = est[structural]
        head = []
        if not self.trustworthy:
            why = []
            if not self.diagnostics.ok:
                why.append("the sampler did not converge")
            if not self.improper.ok:
                why.append("the solution is improper")
            head.append("!" * 72)
            head.append(f"NOT TRUSTWORTHY: {' and '.join(why)}")
            head.append("!" * 72)
        return "\n".join(
            [*head, str(self.diagnostics), str(self.improper), paths.to_string(index=False)]
        )

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        state = (
            "trustworthy"
            if self.trustworthy
            else (
                "NOT TRUSTWORTHY: "
                + ", ".join(
                    w
                    for w, bad in (
                        ("not converged", not self.diagnostics.ok),
                        (
                            f"improper ({len(self.improper.problems)} problems)",
                            not self.improper.ok,
                        ),
                    )
                    if bad
                )
            )
        )
        return (
            f"<SEMResult: {self.structure.n_latents} constructs, {self.structure.n_items} "
            f"items; {state}>"
        )


_ESTIMATE_COLUMNS = ["mean", "sd", "hdi_low", "hdi_high", "p_positive"]


def _interaction_index(mats, prm) -> int:
    """Position of an interaction ``Param`` in ``structure.interactions`` (``mats["Gamma"]``)."""
    return mats["interaction_keys"].index((prm.row, prm.parts, prm.rhs))


def _product_moments(st, gamma: np.ndarray, cov_lin: np.ndarray):
    """Variance and mean that product terms add to each outcome's disturbance.

    For zero-mean jointly normal parts (Isserlis), ``E[XZ] = Cov(X, Z)``,
    ``Cov(XZ, UV) = Cov(X, U) Cov(Z, V) + Cov(X, V) Cov(Z, U)`` and ``Cov(XZ, W) = 0``
    for any linear combination ``W`` of the latents: a product term is uncorrelated
    with the linear part and adds ``Gamma Var(q) Gamma'`` to the disturbances'
    covariance, ``Gamma E[q]`` to their mean. The parts' covariance is ``cov_lin``, the
    latents' covariance from the linear part of the model (exact when no part is itself
    an outcome of a product term; an approximation then, and for observed parts that
    are not normal, such as a dummy).

    Parameters
    ----------
    st : SEMStructure
    gamma : numpy.ndarray
        ``(..., K)`` the interactions' coefficients.
    cov_lin : numpy.ndarray
        ``(..., m, m)``.

    Returns
    -------
    var_q : numpy.ndarray
        ``(..., m, m)`` added to ``Psi``.
    mean_q : numpy.ndarray
        ``(..., m)`` added to the latents' intercepts.
    """
    inter = st.interactions
    K, m = len(inter), st.n_latents
    a = [p.parts[0] for p in inter]
    b = [p.parts[1] for p in inter]
    S = cov_lin
    cov_q = S[..., a, :][..., :, a] * S[..., b, :][..., :, b] + (
        S[..., a, :][..., :, b] * S[..., b, :][..., :, a]
    )
    mean_q = S[..., a, b]
    G = np.zeros(gamma.shape[:-1] + (m, K))
    for k, prm in enumerate(inter):
        G[..., prm.row, k] = gamma[..., k]
    var = G @ cov_q @ np.swapaxes(G, -1, -2)
    return var, (G @ mean_q[..., None])[..., 0]


def _nilpotent_inverse_np(B: np.ndarray) -> np.ndarray:
    m = B.shape[-1]
    out = np.broadcast_to(np.eye(m), B.shape).copy()
    term = np.broadcast_to(np.eye(m), B.shape).copy()
    for _ in range(m):
        term = term @ B
        if not np.any(term):
            break
        out = out + term
    return out


def _summarize(arr: np.ndarray, hdi_prob: float, *, diagnostics: bool = True) -> pd.DataFrame:
    """mean, sd, HDI (:mod:`cxlib.stats`) and R-hat, bulk ESS of ``(chain, draw, k)`` draws."""
    k = arr.shape[-1]
    flat = arr.reshape(-1, k)
    out = pd.DataFrame(summarize_draws(flat.T, hdi_prob))
    if diagnostics:
        out["r_hat"], out["ess_bulk"] = chain_diagnostics(arr)
    return out
