"""Bayesian structural equation models from lavaan syntax: experience -> brand image -> loyalty.

>>> from cxlib.models import BayesianSEM
>>> sem = BayesianSEM('''
...     Experience =~ CX1 + CX2 + CX3
...     Image      =~ IMG1 + IMG2 + IMG3
...     Loyalty    =~ LOY1 + LOY2 + LOY3
...     Image   ~ a*Experience
...     Loyalty ~ b*Image + c*Experience
...     indirect := a*b
... ''')                                                         # doctest: +SKIP
>>> result = sem.fit(frame)                                      # doctest: +SKIP
>>> result.estimates()                                           # doctest: +SKIP
>>> result.effects()                                             # doctest: +SKIP

The continuous likelihood (default) integrates the latent variables out: the items
are multivariate normal with the model-implied mean and covariance, and the
likelihood is evaluated from weighted means and covariances per missingness pattern
(the Bayesian equivalent of FIML, see :mod:`cxlib.models.sem_likelihood`). Sampling
cost does not depend on the number of respondents.

``ordinal=True`` treats Likert items as ordered categories through a pairwise
(composite) likelihood with a curvature adjustment; see :mod:`cxlib.models.ordinal`
for the formulations measured and why this one was picked. ``ordinal=[items]`` mixes
ordinal items (thresholds, latent responses of variance 1) with continuous ones
(intercepts and residual variances on the data's scale) in the same pairwise
likelihood.

Priors are set on a unit-free scale: every item is standardized by its pooled
weighted mean and standard deviation before fitting, and each free parameter is a
standardized value times its unit (the item's SD over the latent's scale for a
loading, and so on). The posterior is reported on the data's scale, as lavaan does.
Defaults (:attr:`BayesianSEM.default_model_config`), keyed by PyMC variable name:

========================  =====================================================
``intercept``             item intercepts (standardized units)
``loading``               free loadings (units: item SD / latent scale)
``loading_positive``      first loadings under ``scaling="unit_variance"``
``path``                  regressions between latents
``item_sd``               item residual standard deviations
``item_corr``             item residual correlations (``y1 ~~ y5``)
``latent_sd``             latent (residual) standard deviations
``latent_corr``           latent (residual) correlations
``latent_mean``           latent means of groups after the first
``path_group_sd``         between-group SD of paths (partial pooling; a number
                          fixes it, a prior dict estimates it)
``loading_group_sd``      between-group SD of loadings (``invariance="none"``; same)
``threshold``             ordinal thresholds (standard-normal scale)
========================  =====================================================

A key of the form ``"Loyalty ~ Image"`` overrides the prior parameters of that one
parameter (same distribution family as its kind).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.models.base import (
    CxModel,
    ModelResult,
    ModelSpecificationError,
    count_divergences,
    diagnose,
    make_prior,
)
from cxlib.models.sampling import constrained_point, dense_mass_matrix, nuts_start
from cxlib.models.sem_data import SEMData, prepare_data, saturated_em
from cxlib.models.sem_structure import SEMStructure
from cxlib.syntax import parse_model

__all__ = ["BayesianSEM", "SEMResult", "ReliabilityReport"]

_TERM_KEY = re.compile(r"^\s*([\w.]+)\s*(=~|~~|~)\s*([\w.]+)\s*$")
_MATRIX = {
    "loading": "Lambda",
    "path": "B",
    "item_cov": "Theta",
    "latent_cov": "Psi",
    "intercept": "nu",
    "latent_mean": "alpha",
}


def _norm_key(key: str) -> str | None:
    m = _TERM_KEY.match(key)
    return f"{m.group(1)} {m.group(2)} {m.group(3)}" if m else None


class BayesianSEM(CxModel):
    """A Bayesian structural equation model written in lavaan syntax.

    Parameters
    ----------
    model : str, Study or path
        Lavaan syntax (``=~``, ``~``, ``~~``, labels, ``:=``), a study spec
        (:class:`cxlib.study.Study`, whose ``lavaan_model`` is used) or the path of a
        study YAML file.
    scaling : {"marker", "unit_variance"}
        How latents are scaled: the first loading fixed at 1 (lavaan's default), or
        latent (residual) variances fixed at 1 with the first loading positive.
    model_config : dict, optional
        Prior overrides, keyed by PyMC variable name or by a lavaan term
        (``"Loyalty ~ Image"``); merged over :attr:`default_model_config`.
    sampler_config : dict, optional
        Overrides of ``pymc.sample`` arguments; merged over
        :attr:`default_sampler_config`.

    Raises
    ------
    ModelSyntaxError
        When the syntax does not parse (the message names the line).
    ModelSpecificationError
        When the model is not identified or uses unsupported features.
    """

    _model_type = "BayesianSEM"
    #: The marginal posterior is close to Gaussian: the Laplace covariance counts as 10
    #: draws per dimension in NUTS's mass matrix (cxlib.models.sampling).
    _laplace_weight = 10.0

    def __init__(
        self,
        model,
        *,
        scaling: str = "marker",
        model_config: dict[str, Any] | None = None,
        sampler_config: dict[str, Any] | None = None,
    ):
        self.study = None
        if hasattr(model, "lavaan_model"):
            self.study = model
            text = model.lavaan_model
        elif isinstance(model, Path) or (
            isinstance(model, str)
            and model.strip().endswith((".yaml", ".yml"))
            and "\n" not in model
        ):
            from cxlib.study import load_study

            self.study = load_study(model)
            text = self.study.lavaan_model
        else:
            text = model
        self.syntax = text
        self.parsed = parse_model(text)
        self.structure = SEMStructure.from_parsed(self.parsed, scaling=scaling)
        self.scaling = scaling
        super().__init__(model_config=model_config, sampler_config=sampler_config)
        self.structure.check_identification()
        self._check_term_keys()
        self.data: SEMData | None = None
        self.fit_options: dict[str, Any] = {}

    @classmethod
    def from_study(cls, study, **kwargs) -> BayesianSEM:
        """Build the model of a study spec (its constructs and structural model)."""
        return cls(study, **kwargs)

    # ------------------------------------------------------------------ config
    @property
    def default_model_config(self) -> dict[str, Any]:
        """Default priors (standardized units) and options."""
        return {
            "intercept": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
            "loading": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
            "loading_positive": {"dist": "HalfNormal", "sigma": 2.0},
            "path": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            "item_sd": {"dist": "HalfNormal", "sigma": 1.0},
            "item_corr": {"dist": "Uniform", "lower": -1.0, "upper": 1.0},
            "latent_sd": {"dist": "HalfNormal", "sigma": 1.0},
            "latent_corr": {"dist": "Uniform", "lower": -1.0, "upper": 1.0},
            "latent_mean": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            # segment deviations from the common path / loading, in standardized units:
            # a number fixes their SD; a prior dict such as {"dist": "HalfNormal",
            # "sigma": 0.25} estimates it (hierarchical, but with a handful of segments
            # the estimated SD forms a funnel with the deviations that NUTS mixes badly)
            "path_group_sd": 0.25,
            "loading_group_sd": 0.1,
            "threshold": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
            "min_group_size": 50,
        }

    @property
    def default_sampler_config(self) -> dict[str, Any]:
        """Default ``pymc.sample`` arguments (2 chains on 2 cores, no progress bar)."""
        return {
            "chains": 2,
            "cores": 2,
            "target_accept": 0.85,
            "init": "jitter+adapt_diag",
            "progressbar": False,
            "compute_convergence_checks": False,
        }

    def _accepts_config_key(self, key: str) -> bool:
        return _norm_key(key) is not None

    def _check_term_keys(self) -> None:
        names = {p.name for p in self.structure.params if p.is_free}
        for key in self._user_model_config:
            norm = _norm_key(key)
            if norm is not None and norm not in names:
                raise ModelSpecificationError(
                    f"model_config key {key!r} names no free parameter of the model"
                )

    # ------------------------------------------------------------------ attrs
    def _attrs(self, data_hash: str = "") -> dict[str, str]:
        attrs = super()._attrs(data_hash)
        attrs.update(
            {
                "model_syntax": self.syntax,
                "scaling": self.scaling,
                "fit_options": json.dumps(self.fit_options, sort_keys=True, default=str),
            }
        )
        return attrs

    @classmethod
    def _from_attrs(cls, attrs: dict[str, Any]) -> BayesianSEM:
        return cls(
            attrs["model_syntax"],
            scaling=attrs.get("scaling", "marker"),
            model_config=json.loads(attrs["model_config"]),
            sampler_config=json.loads(attrs["sampler_config"]),
        )

    def _restore(self, idata) -> SEMResult:
        self.fit_options = json.loads(idata.attrs.get("fit_options", "{}"))
        self.data = _data_from_constant(idata, self.structure.items, self.fit_options)
        self.result = SEMResult(self, idata, data=self.data)
        return self.result

    # ------------------------------------------------------------------ building
    def _units(
        self, data: SEMData, *, ordinal_items: list[str] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """Item SDs and latent scales (the unit of each latent on the data's scale).

        Ordinal items are latent responses of variance 1 (unit 1).
        """
        s = np.where(np.isin(data.items, list(ordinal_items)), 1.0, data.scale)
        c = np.ones(self.structure.n_latents)
        for k, lat in enumerate(self.structure.latents):
            loads = [
                p
                for p in self.structure.params
                if p.kind == "loading" and p.lhs == lat and p.fixed not in (None, 0.0)
            ]
            var = next(
                p for p in self.structure.params if p.kind == "latent_cov" and p.lhs == lat == p.rhs
            )
            if loads:
                c[k] = s[loads[0].row] / abs(loads[0].fixed)
            elif var.fixed is not None and var.fixed > 0:
                c[k] = np.sqrt(var.fixed)
        return s, c

    def _prior_arrays(self, kind_key: str, names: list[str]) -> dict[str, Any]:
        """Prior spec of a vector RV, with per-term overrides as arrays."""
        spec = dict(self.model_config[kind_key])
        overrides = {}
        for key, value in self.model_config.items():
            norm = _norm_key(key)
            if norm is not None and norm in names:
                overrides[norm] = value
        if not overrides:
            return spec
        family = spec.get("dist")
        for norm, value in overrides.items():
            if value.get("dist", family) != family:
                raise ModelSpecificationError(
                    f"model_config[{norm!r}]: the prior of a {kind_key} must be a {family} "
                    f"(the family of {kind_key!r}); got {value.get('dist')}"
                )
        for param in [k for k in spec if k != "dist"]:
            spec[param] = np.array(
                [float(overrides.get(n, {}).get(param, spec[param])) for n in names]
            )
        return spec

    def build_model(
        self, data: SEMData, *, ordinal: bool | list[str] = False, invariance: str = "loadings"
    ):
        """Build the PyMC model for prepared data.

        Parameters
        ----------
        data : SEMData
            From :func:`cxlib.models.sem_data.prepare_data` (``fit`` calls both).
        ordinal : bool or list of str
            Use the pairwise ordinal likelihood for all items (True) or for the items
            listed, the other items entering it as continuous.
        invariance : {"loadings", "none"}
            With groups: loadings equal across groups ("loadings", the default) or
            group-specific with partial pooling ("none"). Intercepts, residual
            variances and latent (residual) covariances are always shared.

        Returns
        -------
        pymc.Model
        """
        import pymc as pm
        import pytensor.tensor as pt

        st = self.structure
        items, latents = st.items, st.latents
        p, m = st.n_items, st.n_latents
        G = len(data.groups)
        grouped = G > 1
        ordinal_items = _ordinal_items(ordinal, items)
        s, c = self._units(data, ordinal_items=ordinal_items)
        if invariance not in ("loadings", "none"):
            raise ModelSpecificationError(
                f"invariance must be 'loadings' or 'none', got {invariance!r}"
            )
        pooled = self._pooled_groups(data) if grouped else np.zeros(G, dtype=bool)

        coords: dict[str, Any] = {
            "item": items,
            "item_": items,
            "latent": latents,
            "latent_": latents,
        }
        free = st.free_names
        load_params = st.of_kind("loading")
        pos_idx = [i for i, pos in enumerate(st.free_positive["loading"]) if pos]
        unc_idx = [i for i, pos in enumerate(st.free_positive["loading"]) if not pos]
        coords["loading_free"] = [free["loading"][i] for i in unc_idx]
        coords["loading_first"] = [free["loading"][i] for i in pos_idx]
        coords["path_free"] = free["path"]
        item_var_slots = [i for i, n in enumerate(free["item_cov"]) if _is_var(n)]
        # ordinal items: no free residual variance (latent responses, 1 - communality)
        ord_var_slots = [
            i for i in item_var_slots if free["item_cov"][i].partition(" ~~ ")[0] in ordinal_items
        ]
        item_var_slots = [i for i in item_var_slots if i not in ord_var_slots]
        item_cov_slots = [i for i, n in enumerate(free["item_cov"]) if not _is_var(n)]
        lat_var_slots = [i for i, n in enumerate(free["latent_cov"]) if _is_var(n)]
        lat_cov_slots = [i for i, n in enumerate(free["latent_cov"]) if not _is_var(n)]
        coords["item_var_free"] = [free["item_cov"][i] for i in item_var_slots]
        coords["item_cov_free"] = [free["item_cov"][i] for i in item_cov_slots]
        coords["latent_var_free"] = [free["latent_cov"][i] for i in lat_var_slots]
        coords["latent_cov_free"] = [free["latent_cov"][i] for i in lat_cov_slots]
        if grouped:
            coords["group"] = data.groups
            coords["group_free"] = data.groups[1:]
        if st.parsed.defined:
            coords["defined_parameter"] = [d.name for d in st.parsed.defined]

        first = {}
        for prm in st.params:
            if prm.is_free and (prm.kind, prm.free) not in first:
                first[(prm.kind, prm.free)] = prm

        def unit(kind: str, slot: int) -> float:
            prm = first[(kind, slot)]
            if kind == "loading":
                return s[prm.row] / c[prm.col]
            if kind == "path":
                return c[prm.row] / c[prm.col]
            if kind == "item_cov":
                return s[prm.row]
            if kind == "latent_cov":
                return c[prm.row]
            return 1.0

        initvals: dict[str, np.ndarray] = {}
        with pm.Model(coords=coords) as model:
            # ---- loadings (y-scale values per free slot)
            n_load = len(free["loading"])
            load_unit = np.array([unit("loading", i) for i in range(n_load)])
            load_vals = pt.zeros(n_load)
            if unc_idx:
                raw = make_prior(
                    "loading",
                    self._prior_arrays("loading", coords["loading_free"]),
                    dims="loading_free",
                )
                load_vals = pt.set_subtensor(load_vals[unc_idx], raw * load_unit[unc_idx])
                initvals["loading"] = self._start(
                    "loading", unc_idx, load_unit, default=1.0 if st.scaling == "marker" else 0.7
                )
            if pos_idx:
                raw = make_prior(
                    "loading_positive",
                    self._prior_arrays("loading_positive", coords["loading_first"]),
                    dims="loading_first",
                )
                load_vals = pt.set_subtensor(load_vals[pos_idx], raw * load_unit[pos_idx])
                initvals["loading_positive"] = np.abs(
                    self._start("loading", pos_idx, load_unit, default=0.8)
                )
            # ---- paths, with partial pooling across groups
            n_path = len(free["path"])
            path_unit = np.array([unit("path", i) for i in range(n_path)])
            if n_path:
                raw = make_prior("path", self._prior_arrays("path", free["path"]), dims="path_free")
                path_vals = raw * path_unit
                initvals["path"] = self._start("path", range(n_path), path_unit, default=0.0)
                if grouped:
                    tau = self._group_sd("path_group_sd", "path_free")
                    keep = (~pooled).astype(float)[:, None]
                    if isinstance(tau, float):
                        # fixed SD: centered segment paths (the data pin each segment's
                        # paths, so this is close to Gaussian; the non-centered form
                        # correlates the common path with every deviation)
                        seg = pm.Normal(
                            "path_group",
                            mu=raw[None, :],
                            sigma=tau,
                            dims=("group", "path_free"),
                        )
                        initvals["path_group"] = np.tile(initvals["path"], (G, 1))
                        path_vals_g = (keep * seg + (1 - keep) * raw[None, :]) * path_unit
                    else:
                        z = pm.Normal("path_group_z", 0.0, 1.0, dims=("group", "path_free"))
                        path_vals_g = path_vals[None, :] + keep * tau * path_unit * z
                else:
                    path_vals_g = path_vals[None, :]
            else:
                path_vals_g = pt.zeros((1, 0))
            # ---- item residual variances / covariances
            n_ic = len(free["item_cov"])
            ic_vals = pt.zeros(n_ic)
            if ord_var_slots:
                # latent responses: residual variance = 1 - communality (set in ordinal.py);
                # 1 here makes the off-diagonal entries residual correlations
                ic_vals = pt.set_subtensor(ic_vals[ord_var_slots], 1.0)
            if item_var_slots:
                iu = np.array([unit("item_cov", i) for i in item_var_slots])
                raw = make_prior(
                    "item_sd",
                    self._prior_arrays("item_sd", coords["item_var_free"]),
                    dims="item_var_free",
                )
                ic_vals = pt.set_subtensor(ic_vals[item_var_slots], (raw * iu) ** 2)
                initvals["item_sd"] = np.full(len(item_var_slots), 0.6)
            if item_cov_slots:
                raw = make_prior("item_corr", self.model_config["item_corr"], dims="item_cov_free")
                ic_vals = pt.set_subtensor(ic_vals[item_cov_slots], raw)  # correlation for now
                initvals["item_corr"] = np.zeros(len(item_cov_slots))
            # ---- latent variances / covariances
            n_lc = len(free["latent_cov"])
            lc_vals = pt.zeros(n_lc)
            if lat_var_slots:
                lu = np.array([unit("latent_cov", i) for i in lat_var_slots])
                raw = make_prior(
                    "latent_sd",
                    self._prior_arrays("latent_sd", coords["latent_var_free"]),
                    dims="latent_var_free",
                )
                lc_vals = pt.set_subtensor(lc_vals[lat_var_slots], (raw * lu) ** 2)
                initvals["latent_sd"] = np.full(len(lat_var_slots), 0.7)
            if lat_cov_slots:
                raw = make_prior(
                    "latent_corr", self.model_config["latent_corr"], dims="latent_cov_free"
                )
                lc_vals = pt.set_subtensor(lc_vals[lat_cov_slots], raw)
                initvals["latent_corr"] = np.zeros(len(lat_cov_slots))

            # ---- matrices on the data (y) scale
            Lambda_y = _fill(pt, (p, m), load_params, load_vals)
            if grouped and invariance == "none" and unc_idx:
                tau_l = self._group_sd("loading_group_sd", "loading_free")
                zl = pm.Normal("loading_group_z", 0.0, 1.0, dims=("group", "loading_free"))
                dev = pt.zeros((G, n_load))
                dev = pt.set_subtensor(dev[:, unc_idx], tau_l * load_unit[unc_idx] * zl)
                Lambda_g = pt.stack(
                    [_fill(pt, (p, m), load_params, load_vals + dev[g]) for g in range(G)]
                )
            else:
                Lambda_g = pt.broadcast_to(Lambda_y, (G, p, m))
            path_params = st.of_kind("path")
            if n_path:
                B_g = pt.stack(
                    [
                        _fill(pt, (m, m), path_params, path_vals_g[g])
                        for g in range(G if grouped else 1)
                    ]
                )
            else:
                B_g = pt.as_tensor_variable(np.zeros((1, m, m)))
            if G > 1 and not (grouped and n_path):
                B_g = pt.broadcast_to(B_g, (G, m, m))
            Theta_y = _fill_cov(pt, p, st.of_kind("item_cov"), ic_vals)
            Psi = _fill_cov(pt, m, st.of_kind("latent_cov"), lc_vals)

            if ordinal_items:
                from cxlib.models.ordinal import add_ordinal_likelihood

                ll, Theta_y, nu_y = add_ordinal_likelihood(
                    self, model, data, ordinal_items, Lambda_g, B_g, Psi, Theta_y, initvals
                )
                alpha = pt.zeros((G, m))
            else:
                raw_nu = make_prior(
                    "intercept", self._prior_arrays("intercept", items), dims="item"
                )
                initvals["intercept"] = np.zeros(p)
                nu_z = raw_nu
                nu_y = data.center + data.scale * nu_z
                if grouped:
                    raw_a = make_prior(
                        "latent_mean",
                        self.model_config["latent_mean"],
                        dims=("group_free", "latent"),
                    )
                    initvals["latent_mean"] = np.zeros((G - 1, m))
                    alpha = pt.concatenate([pt.zeros((1, m)), raw_a * c], axis=0)
                else:
                    alpha = pt.zeros((1, m))
                inv_s = 1.0 / data.scale
                Lambda_z = Lambda_g * inv_s[None, :, None]
                Theta_z = Theta_y * np.outer(inv_s, inv_s)
                from cxlib.models.sem_likelihood import implied_moments, pattern_loglik

                mu_z, sigma_z = implied_moments(
                    Lambda_z,
                    B_g,
                    pt.broadcast_to(Psi, (G, m, m)),
                    Theta_z,
                    nu_z,
                    alpha,
                    _depth(st),
                )
                ll = pattern_loglik(mu_z, sigma_z, data.moments_dict())
                pm.Potential("likelihood", ll)

            gdims = ("group",) if grouped else ()
            pm.Deterministic(
                "Lambda",
                Lambda_g if grouped and invariance == "none" else Lambda_y,
                dims=(*gdims, "item", "latent")
                if grouped and invariance == "none"
                else ("item", "latent"),
            )
            pm.Deterministic("B", B_g if grouped else B_g[0], dims=(*gdims, "latent", "latent_"))
            pm.Deterministic("Psi", Psi, dims=("latent", "latent_"))
            pm.Deterministic("Theta", Theta_y, dims=("item", "item_"))
            pm.Deterministic("nu", nu_y, dims=("item",))
            if grouped and not ordinal_items:
                pm.Deterministic("alpha", alpha, dims=("group", "latent"))
            if st.parsed.defined:
                values = [
                    self._defined_tensor(pt, Lambda_g[g], B_g[g], Psi, Theta_y)
                    for g in range(G if grouped else 1)
                ]
                pm.Deterministic(
                    "defined",
                    pt.stack(values) if grouped else values[0],
                    dims=(*gdims, "defined_parameter"),
                )
            pm.Deterministic("loglik", ll)
        for name, value in initvals.items():
            model.set_initval(model[name], value)
        self.model = model
        self._initvals = initvals
        self._pooled = pooled
        return model

    def _group_sd(self, key: str, dims: str):
        """Between-group SD of deviations: fixed (a number) or a prior (a dict)."""
        spec = self.model_config[key]
        if isinstance(spec, dict):
            return make_prior(key, spec, dims=dims)
        try:
            value = float(spec)
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value) or value <= 0:
            raise ModelSpecificationError(
                f"model_config[{key!r}] must be a positive number (a fixed SD) or a prior "
                f"dict such as {{'dist': 'HalfNormal', 'sigma': 0.25}}; got {spec!r}"
            )
        return value

    def _start(self, kind: str, slots, units: np.ndarray, *, default: float) -> np.ndarray:
        """Starting values (standardized units): syntax ``start()`` values or a default."""
        st = self.structure
        out = []
        for slot in slots:
            prm = next(p for p in st.params if p.kind == kind and p.free == slot)
            out.append(prm.start / units[slot] if prm.start is not None else default)
        return np.asarray(out, dtype=float)

    def _defined_tensor(self, pt, Lambda, B, Psi, Theta):
        st = self.structure
        mats = {"loading": Lambda, "path": B, "item_cov": Theta, "latent_cov": Psi}
        env: dict[str, Any] = {}
        for prm in st.params:
            if prm.label and prm.label not in env and prm.kind in mats:
                env[prm.label] = mats[prm.kind][prm.row, prm.col]
        out = []
        for d in st.parsed.defined:
            value = eval(d.expression.replace("^", "**"), {"__builtins__": {}}, env)  # noqa: S307
            env[d.name] = value
            out.append(pt.as_tensor_variable(value).astype("float64"))
        return pt.stack(out)

    def _pooled_groups(self, data: SEMData) -> np.ndarray:
        sizes = data.group_sizes()
        n_group_params = len(self.structure.free_names["path"])
        minimum = max(int(self.model_config["min_group_size"]), 5 * n_group_params)
        pooled = sizes < minimum
        if pooled.any():
            names = ", ".join(
                f"{data.groups[g]!r} ({sizes[g]} respondents)" for g in np.flatnonzero(pooled)
            )
            warnings.warn(
                f"too few respondents to estimate group-specific paths for {names} (fewer "
                f"than {minimum}); their paths are pooled with the overall paths. Lower "
                "model_config['min_group_size'] to change this",
                UserWarning,
                stacklevel=4,
            )
        return pooled

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data,
        *,
        draws: int = 1000,
        tune: int = 1000,
        chains: int | None = None,
        random_seed: int | None = None,
        ordinal: bool | list[str] = False,
        group: str | None = None,
        weights=None,
        invariance: str = "loadings",
        **sample_kwargs,
    ) -> SEMResult:
        """Sample the posterior.

        Parameters
        ----------
        data : pandas.DataFrame or cxlib.data.SurveyData
            One row per respondent, a column per item (reverse-coded items already
            reversed). Missing answers are used, not dropped (one set of moments per
            missingness pattern).
        draws, tune : int
            Draws kept and tuning steps per chain.
        chains : int, optional
            Number of chains (default from ``sampler_config``: 2).
        random_seed : int, optional
            Seed (default :data:`cxlib.config.DEFAULT_SEED`).
        ordinal : bool or list of str
            Treat all items (True) or the items listed as ordered categories, through
            the pairwise likelihood of :mod:`cxlib.models.ordinal`; with a list, the
            other items stay continuous (intercepts and residual variances on the
            data's scale) and enter the same pairwise likelihood. Ordinal items must
            be coded as whole numbers with 2 to 15 categories. Not combinable with
            ``group``. Mixed and ordinal fits report thresholds (``op`` ``|``) and
            no intercepts for ordinal items; ``fit_measures()`` and ``scores()`` are
            refused for them.
        group : str, optional
            A segment column: segment-specific paths with partial pooling, shared
            loadings and intercepts, segment latent means.
        weights : str, array-like, False or None
            Respondent weights (column, array or False); for ``SurveyData`` the
            study's weight column by default.
        invariance : {"loadings", "none"}
            With ``group``: measurement invariance of loadings (default) or
            partially pooled group-specific loadings.
        **sample_kwargs
            Passed on to ``pymc.sample`` (override ``sampler_config``).

        Returns
        -------
        SEMResult
        """
        import pymc as pm

        prepared = prepare_data(data, self.structure.items, weights=weights, group=group)
        for note in prepared.notes:
            warnings.warn(note, UserWarning, stacklevel=2)
        self.data = prepared
        ordinal_items = _ordinal_items(ordinal, self.structure.items)
        if ordinal_items and group is not None:
            raise ModelSpecificationError(
                "group= is not supported with the ordinal likelihood yet; fit the segments "
                "separately or use the continuous likelihood"
            )
        if ordinal_items:
            from cxlib.models.ordinal import prepare_pairs

            self._pair_data = prepare_pairs(
                prepared.y * prepared.scale + prepared.center,
                prepared.weights,
                self.structure.items,
                ordinal_items,
                prepared.center,
                prepared.scale,
            )
            self._ordinal_data = self._pair_data.od
        self.build_model(prepared, ordinal=ordinal_items, invariance=invariance)
        if ordinal_items:
            import pymc as pm

            from cxlib.models.ordinal import adjusted_potential, curvature_adjustment

            graph = self._ordinal_graph
            theta_hat, C, info = curvature_adjustment(
                self, self.model, graph["cl"], graph["logp_cells"], self._initvals
            )
            self._ordinal_info = info
            with self.model:
                pm.Potential(
                    "likelihood", adjusted_potential(self.model, graph["cl"], theta_hat, C)
                )
            # start every chain at the pairwise-likelihood maximum, without jitter (a
            # jitter of +-1 on the unconstrained scale can leave the feasible region)
            self._initvals = constrained_point(self.model, theta_hat)
        self.fit_options = {
            "ordinal": ordinal_items,
            "group": group,
            "groups": prepared.groups,
            "pooled_groups": [prepared.groups[g] for g in np.flatnonzero(self._pooled)],
            "invariance": invariance,
            "weighted": weights is not False
            and weights is not None
            or (weights is None and hasattr(data, "study") and bool(data.study.columns.weight)),
            "n_respondents": prepared.n,
        }
        kwargs = {k: v for k, v in self.sampler_config.items()}
        if ordinal_items and str(kwargs.get("init", "")).startswith("jitter+"):
            kwargs["init"] = kwargs["init"].removeprefix("jitter+")
        if chains is not None:
            kwargs["chains"] = chains
        kwargs.update(sample_kwargs)
        kwargs.update(
            draws=draws,
            tune=tune,
            random_seed=config.DEFAULT_SEED if random_seed is None else random_seed,
        )
        kwargs.setdefault("target_accept", 0.85)
        nuts_sampler = kwargs.setdefault("nuts_sampler", "pymc")
        if nuts_sampler != "pymc":
            for key in ("init", "compute_convergence_checks", "cores"):
                kwargs.pop(key, None)
        if not ordinal_items:
            # NUTS from the Laplace approximation (cxlib.models.sampling); the caller's
            # initvals, if any, are kept
            self.fit_options["nuts_start"] = nuts_start(
                self.model, kwargs, weight=self._laplace_weight
            )
        else:
            kwargs.pop("mass_matrix", None)
            self.fit_options["nuts_start"] = "pairwise"
            if "step" not in kwargs and nuts_sampler == "pymc":
                # the adjusted pairwise posterior is close to N(theta_hat, G^-1): give NUTS
                # that covariance as its mass matrix, so it needs a few leapfrog steps per draw
                G = self._ordinal_info["G"]
                cov = np.linalg.inv((G + G.T) / 2)
                potential = dense_mass_matrix(
                    cov.shape[0], theta_hat, cov, tune=tune, weight=self._laplace_weight
                )
                kwargs["step"] = pm.NUTS(
                    vars=self.model.value_vars,
                    potential=potential,
                    model=self.model,
                    target_accept=kwargs.pop("target_accept"),
                )
                kwargs.pop("init", None)
        if kwargs.get("initvals") is None:
            kwargs["initvals"] = self._initvals
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*BLAS.*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            idata = pm.sample(model=self.model, **kwargs)
        _attach_constant_data(idata, prepared)
        idata.attrs.update(self._attrs(prepared.data_hash))
        self.result = SEMResult(self, idata, data=prepared)
        self.result.warn_if_not_converged()
        return self.result


def _is_var(name: str) -> bool:
    lhs, _, rhs = name.partition(" ~~ ")
    return lhs == rhs


def _ordinal_items(ordinal, items: list[str]) -> list[str]:
    if ordinal is True:
        return list(items)
    if not ordinal:
        return []
    if isinstance(ordinal, str):
        ordinal = [ordinal]
    listed = list(ordinal)
    unknown = [it for it in listed if it not in items]
    if unknown:
        raise ModelSpecificationError(
            f"ordinal items {unknown} are not items of the model (its items: {list(items)})"
        )
    return [it for it in items if it in set(listed)]


def _depth(st: SEMStructure) -> int:
    preds: dict[str, set[str]] = {}
    for t in st.parsed.regressions:
        preds.setdefault(t.lhs, set()).add(t.rhs)
    memo: dict[str, int] = {}

    def depth(v: str) -> int:
        if v not in memo:
            memo[v] = 0 if v not in preds else 1 + max(depth(w) for w in preds[v])
        return memo[v]

    return max([depth(v) for v in st.latents] + [0])


def _fill(pt, shape, params, values):
    """A matrix with fixed entries and free entries from ``values`` (one per slot)."""
    base = np.zeros(shape)
    rows, cols, slots = [], [], []
    for prm in params:
        if prm.is_free:
            rows.append(prm.row)
            cols.append(prm.col)
            slots.append(prm.free)
        else:
            base[prm.row, prm.col] = prm.fixed
    out = pt.as_tensor_variable(base)
    if rows:
        out = pt.set_subtensor(out[rows, cols], values[slots])
    return out


def _fill_cov(pt, size, params, values):
    """Build a symmetric covariance matrix from fixed and free entries.

    Free variances come from ``values``; free covariances are correlations in
    ``values`` times the two standard deviations.
    """
    base = np.zeros((size, size))
    var_rows, var_slots = [], []
    cov_rows, cov_cols, cov_slots = [], [], []
    for prm in params:
        if prm.is_variance:
            if prm.is_free:
                var_rows.append(prm.row)
                var_slots.append(prm.free)
            else:
                base[prm.row, prm.row] = prm.fixed
    out = pt.as_tensor_variable(base)
    if var_rows:
        out = pt.set_subtensor(out[var_rows, var_rows], values[var_slots])
    variances = pt.diagonal(out)
    for prm in params:
        if not prm.is_variance:
            if prm.is_free:
                cov_rows.append(prm.row)
                cov_cols.append(prm.col)
                cov_slots.append(prm.free)
            else:
                base[prm.row, prm.col] = base[prm.col, prm.row] = prm.fixed
    fixed_off = np.triu(base, 1) + np.tril(base, -1)
    if fixed_off.any():
        out = out + fixed_off
    if cov_rows:
        cov = values[cov_slots] * pt.sqrt(variances[cov_rows] * variances[cov_cols])
        out = pt.set_subtensor(out[cov_rows, cov_cols], cov)
        out = pt.set_subtensor(out[cov_cols, cov_rows], cov)
    return out


def _attach_constant_data(idata, d: SEMData) -> None:
    import xarray as xr

    p = len(d.items)
    ds = xr.Dataset(
        {
            "pat_mask": (("pattern", "item"), d.pat_mask.astype(np.int8)),
            "pat_group": (("pattern",), d.pat_group.astype(np.int64)),
            "pat_w": (("pattern",), d.pat_w),
            "pat_n": (("pattern",), d.pat_n.astype(np.int64)),
            "pat_mean": (("pattern", "item"), d.pat_mean),
            "pat_cov": (("pattern", "item", "item_"), d.pat_cov),
            "item_center": (("item",), d.center),
            "item_scale": (("item",), d.scale),
        },
        coords={"item": d.items, "item_": d.items, "pattern": np.arange(d.n_patterns)},
    )
    assert ds["pat_cov"].shape[1] == p
    if "constant_data" in idata.groups():
        idata.constant_data = idata.constant_data.merge(ds)
    else:
        idata.add_groups({"constant_data": ds})


def _data_from_constant(idata, items: list[str], options: dict[str, Any]) -> SEMData:
    cd = idata.constant_data
    p = len(items)
    return SEMData(
        items=list(items),
        y=np.zeros((0, p)),
        weights=np.zeros(0),
        group_codes=np.zeros(0, dtype=np.int64),
        groups=list(options.get("groups", ["all"])),
        center=cd["item_center"].values,
        scale=cd["item_scale"].values,
        pattern_of=np.zeros(0, dtype=np.int64),
        pat_mask=cd["pat_mask"].values.astype(bool),
        pat_group=cd["pat_group"].values.astype(np.int64),
        pat_w=cd["pat_w"].values,
        pat_n=cd["pat_n"].values,
        pat_mean=cd["pat_mean"].values,
        pat_cov=cd["pat_cov"].values,
        data_hash=idata.attrs.get("data_hash", ""),
        respondent_ids=pd.RangeIndex(0),
    )


# ============================================================================ results
@dataclass
class ReliabilityReport:
    """Reliability and validity of the measurement model.

    Attributes
    ----------
    constructs : pandas.DataFrame
        Per construct: ``alpha`` (Cronbach, from the data), ``omega`` (composite
        reliability) and ``ave`` (average variance extracted) with posterior means and
        HDIs (``omega_low``, ``omega_high``, ``ave_low``, ``ave_high``).
    htmt : pandas.DataFrame
        Heterotrait-monotrait ratios between constructs (from the data).
    """

    constructs: pd.DataFrame
    htmt: pd.DataFrame

    def _repr_html_(self) -> str:
        return self.constructs._repr_html_() + "<br>HTMT<br>" + self.htmt._repr_html_()

    def __str__(self) -> str:
        return f"{self.constructs}\n\nHTMT\n{self.htmt.round(3)}"


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
    """

    def __init__(self, model: BayesianSEM, idata, *, data: SEMData | None = None):
        super().__init__(model, idata)
        self.data = data
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ basics
    @property
    def structure(self) -> SEMStructure:
        """The model's parameter structure."""
        return self.model.structure

    @property
    def groups(self) -> list[str]:
        """Group labels (``["all"]`` without groups)."""
        return list(self.model.fit_options.get("groups", ["all"]))

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

    def _matrices(self) -> dict[str, np.ndarray]:
        """Draws of the matrices with a group axis: ``(chain, draw, G, ...)``."""
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
        sigma = mats["Lambda"] @ cov_eta @ np.swapaxes(mats["Lambda"], -1, -2) + mats["Theta"]
        mats["inv"] = inv
        mats["cov_eta"] = cov_eta
        mats["sigma"] = sigma
        mats["mean_eta"] = (inv @ mats["alpha"][..., None])[..., 0]
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
        for prm in self.structure.params:
            if prm.kind == "latent_mean" and not (self.grouped and not self.ordinal):
                continue
            if prm.kind == "intercept" and prm.lhs in ordinal:
                continue
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
        mats = self._matrices()
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
        if prm.kind == "item_cov":
            return mats["Theta"][:, :, g, prm.row, prm.col]
        if prm.kind == "latent_cov":
            return mats["Psi"][:, :, g, prm.row, prm.col]
        if prm.kind == "intercept":
            return mats["nu"][:, :, g, prm.row]
        return mats["alpha"][:, :, g, prm.row]

    @staticmethod
    def _std_divisor(prm, g, sd_y, sd_eta) -> np.ndarray:
        sy, se = sd_y[:, :, g], sd_eta[:, :, g]
        if prm.kind == "loading":
            return sy[..., prm.row] / se[..., prm.col]
        if prm.kind == "path":
            return se[..., prm.row] / se[..., prm.col]
        if prm.kind == "item_cov":
            return sy[..., prm.row] * sy[..., prm.col]
        if prm.kind == "latent_cov":
            return se[..., prm.row] * se[..., prm.col]
        if prm.kind == "intercept":
            return sy[..., prm.row]
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
        """
        mats = self._matrices()
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
                ]
            )
        arr = np.stack(cols, axis=-1)
        summary = _summarize(arr, hdi_prob, diagnostics=False)
        summary["p_positive"] = (arr.reshape(-1, arr.shape[-1]) > 0).mean(0)
        table = pd.concat([pd.DataFrame(rows), summary], axis=1)
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
        mats = self._matrices()
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
            Columns ``variable, kind (latent|item), mean, sd, hdi_low, hdi_high``
            (and ``group``).
        """
        mats = self._matrices()
        st = self.structure
        rows, cols = [], []
        for g in range(len(self.groups)):
            cov_eta = mats["cov_eta"][:, :, g]
            for lat in st.endogenous:
                k = st.latents.index(lat)
                rows.append({"variable": lat, "kind": "latent", "group": self.groups[g]})
                cols.append(1 - mats["Psi"][:, :, g, k, k] / cov_eta[..., k, k])
            sigma = mats["sigma"][:, :, g]
            for j, it in enumerate(st.items):
                rows.append({"variable": it, "kind": "item", "group": self.groups[g]})
                cols.append(1 - mats["Theta"][:, :, g, j, j] / sigma[..., j, j])
        summary = _summarize(np.stack(cols, -1), hdi_prob, diagnostics=False)
        table = pd.concat([pd.DataFrame(rows), summary], axis=1)
        return table if self.grouped else table.drop(columns="group")

    # ------------------------------------------------------------------ reliability
    def reliability(self, *, hdi_prob: float = config.HDI_PROB) -> ReliabilityReport:
        """Cronbach's alpha, composite reliability (omega), AVE and HTMT.

        Alpha and HTMT are computed from the data (the saturated covariance, which
        uses every answer under missingness at random); omega and AVE are computed per
        posterior draw (model-implied, first group) and reported with HDIs. After a fit
        with ordinal items (all or some), omega and AVE use the latent responses for
        the ordinal items (the data's scale for continuous ones); alpha and HTMT use
        the answers as numbers.

        Returns
        -------
        ReliabilityReport
        """
        st = self.structure
        mats = self._matrices()
        _, cov_z = self._h1(group=None)
        cov = cov_z * np.outer(self.data.scale, self.data.scale)
        g = 0
        Lam = mats["Lambda"][:, :, g]
        sigma = mats["sigma"][:, :, g]
        cov_eta = mats["cov_eta"][:, :, g]
        sd_y = np.sqrt(np.diagonal(sigma, axis1=-2, axis2=-1))
        rows = []
        for k, lat in enumerate(st.latents):
            idx = [st.items.index(it) for it in st.indicators(lat)]
            kk = len(idx)
            sub = cov[np.ix_(idx, idx)]
            alpha = kk / (kk - 1) * (1 - np.trace(sub) / sub.sum()) if kk > 1 else np.nan
            lam_sum = Lam[..., idx, k].sum(-1)
            true_var = lam_sum**2 * cov_eta[..., k, k]
            total_var = sigma[..., idx, :][..., :, idx].sum((-2, -1))
            omega = true_var / total_var
            std_l = Lam[..., idx, k] * np.sqrt(cov_eta[..., k, k])[..., None] / sd_y[..., idx]
            ave = (std_l**2).mean(-1)
            so = _summarize(omega[..., None], hdi_prob, diagnostics=False).iloc[0]
            sa = _summarize(ave[..., None], hdi_prob, diagnostics=False).iloc[0]
            rows.append(
                {
                    "construct": lat,
                    "items": kk,
                    "alpha": alpha,
                    "omega": so["mean"],
                    "omega_low": so["hdi_low"],
                    "omega_high": so["hdi_high"],
                    "ave": sa["mean"],
                    "ave_low": sa["hdi_low"],
                    "ave_high": sa["hdi_high"],
                }
            )
        sd = np.sqrt(np.diag(cov))
        corr = np.abs(cov / np.outer(sd, sd))
        htmt = pd.DataFrame(np.nan, index=st.latents, columns=st.latents)
        mono = {}
        for lat in st.latents:
            idx = [st.items.index(it) for it in st.indicators(lat)]
            sub = corr[np.ix_(idx, idx)]
            off = sub[np.triu_indices(len(idx), 1)]
            mono[lat] = (idx, off.mean() if off.size else np.nan)
        for a in st.latents:
            for b in st.latents:
                if a == b:
                    continue
                ia, ma = mono[a]
                ib, mb = mono[b]
                hetero = corr[np.ix_(ia, ib)].mean()
                htmt.loc[a, b] = hetero / np.sqrt(ma * mb)
        return ReliabilityReport(pd.DataFrame(rows).set_index("construct"), htmt)

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
            ``chisq`` (posterior mean), ``df``, ``ppp``, ``brmsea`` (mean, ``_low``,
            ``_high``), ``bcfi`` (mean, ``_low``, ``_high``), ``npar``,
            ``n_moments``, ``n_obs``.
        """
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
            from cxlib.models.sem_data import pattern_loglik_np

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
        n_moments = G * (p * (p + 3) // 2)
        npar = self._n_free_total()
        df = n_moments - npar
        df_null = n_moments - G * 2 * p
        N = float(d.pat_w.sum())
        # replicated chi-square at thinned draws
        rng = np.random.default_rng(config.DEFAULT_SEED if random_seed is None else random_seed)
        mats = self._matrices()
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
            out[f"{name}_low"] = sm["hdi_low"]
            out[f"{name}_high"] = sm["hdi_high"]
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
        mats = self._matrices()
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

    def summary(self) -> str:
        """A short text summary: diagnostics and the structural paths."""
        est = self.estimates()
        paths = est[est["op"].isin(["~", ":="])]
        return f"{self.diagnostics}\n{paths.to_string(index=False)}"


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
    """mean, sd, HDI (and R-hat, bulk ESS) of ``(chain, draw, k)`` draws."""
    import arviz as az
    import xarray as xr

    chains, draws_, k = arr.shape
    flat = arr.reshape(-1, k)
    out = pd.DataFrame(
        {"mean": flat.mean(0), "sd": flat.std(0, ddof=1) if flat.shape[0] > 1 else np.zeros(k)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdi = az.hdi(arr, hdi_prob=hdi_prob) if k else np.zeros((0, 2))
    hdi = np.asarray(hdi).reshape(k, 2)
    out["hdi_low"], out["hdi_high"] = hdi[:, 0], hdi[:, 1]
    if diagnostics:
        constant = flat.std(0) < 1e-12
        da = xr.DataArray(arr, dims=("chain", "draw", "param")).to_dataset(name="x")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rhat = az.rhat(da)["x"].values if chains > 1 else np.full(k, np.nan)
            ess = az.ess(da, method="bulk")["x"].values
        out["r_hat"] = np.where(constant, np.nan, rhat)
        out["ess_bulk"] = np.where(constant, np.nan, ess)
    return out
