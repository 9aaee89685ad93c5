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
(the Bayesian equivalent of FIML, see :mod:`cxlib.models.sem.likelihood`). Sampling
cost does not depend on the number of respondents.

``ordinal=True`` treats Likert items as ordered categories through a pairwise
(composite) likelihood with a curvature adjustment; see :mod:`cxlib.models.sem.ordinal`
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
``weight``                composite weights (``F <~ x``) before normalization
                          (standardized units; only their direction matters,
                          see :mod:`cxlib.models.sem.composites`)
``item_sd``               item residual standard deviations
``item_corr``             item residual correlations (``y1 ~~ y5``)
``latent_sd``             latent (residual) standard deviations
``latent_corr``           latent (residual) correlations
``latent_mean``           latent means of groups after the first
``path_group_sd``         between-group SD of paths (partial pooling; a number
                          fixes it, a prior dict estimates it)
``loading_group_sd``      between-group SD of loadings (``invariance="none"``; same)
``threshold``             ordinal thresholds (standard-normal scale)
``interaction``           product terms ``Y ~ X:Z`` (units: the outcome's scale over
                          the product of the parts' scales)
========================  =====================================================

A key of the form ``"Loyalty ~ Image"`` overrides the prior parameters of that one
parameter (same distribution family as its kind).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxlib import config
from cxlib.errors import ModelSpecificationError, did_you_mean
from cxlib.models.base import CxModel, as_frame, make_prior
from cxlib.models.sem.continuous import ContinuousLikelihood
from cxlib.models.sem.data import SEMData, prepare_data, saturated_em
from cxlib.models.sem.graph import SEMGraph
from cxlib.models.sem.result import SEMResult
from cxlib.models.sem.structure import SEMStructure
from cxlib.syntax import parse_model

__all__ = ["INVARIANCE", "BayesianSEM", "GraphPlan", "make_likelihood", "ordinal_item_list"]

_TERM_KEY = re.compile(r"^\s*([\w.]+)\s*(=~|<~|~~|~)\s*([\w.]+(?:\s*:\s*[\w.]+)?)\s*$")
_MATRIX = {
    "loading": "Lambda",
    "path": "B",
    "item_cov": "Theta",
    "latent_cov": "Psi",
    "intercept": "nu",
    "latent_mean": "alpha",
}


#: The SD of a normalized composite's weight vector length around 1 (only its direction
#: enters the likelihood; see BayesianSEM._composite_directions)
WEIGHT_RADIUS_SD = 0.1


def _norm_key(key: str) -> str | None:
    m = _TERM_KEY.match(key)
    if m is None:
        return None
    rhs = re.sub(r"\s+", "", m.group(3))
    return f"{m.group(1)} {m.group(2)} {rhs}"


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
    reliability : dict of str to float, optional
        Stated reliabilities of single-item constructs (construct -> r in (0, 1]); by
        default those of the study spec (``reliability:`` on a construct). A construct
        measured by one item has its loading fixed at 1 and the item's residual
        variance fixed at 0 (lavaan's, SmartPLS's and seminr's default), or at
        ``(1 - r)`` times the item's sample variance when ``r`` is stated; no
        ``=~ 1*`` or ``~~ 0*`` lines are needed.

    Raises
    ------
    ModelSyntaxError
        When the syntax does not parse (the message names the line).
    ModelSpecificationError
        When the model is not identified or uses unsupported features.
    """

    _model_type = "BayesianSEM"
    _result_class = SEMResult
    _data_class = SEMData
    fit_option_names = ("ordinal", "group", "weights", "invariance")
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
        reliability: dict[str, float] | None = None,
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
        if reliability is None and self.study is not None:
            reliability = {
                name: con.reliability
                for name, con in self.study.constructs.items()
                if con.reliability is not None and name in self.parsed.latents
            }
        self.reliability = dict(reliability or {})
        self.structure = SEMStructure.from_parsed(
            self.parsed, scaling=scaling, reliability=self.reliability
        )
        self.scaling = scaling
        super().__init__(model_config=model_config, sampler_config=sampler_config)
        self.structure.check_identification()
        self._check_term_keys()
        self.likelihood = ContinuousLikelihood()
        self.initvals: dict[str, np.ndarray] = {}
        self.pooled = np.zeros(1, dtype=bool)

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
            "weight": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
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
            "interaction": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            "min_group_size": 50,
        }

    @property
    def default_sampler_config(self) -> dict[str, Any]:
        """Default ``pymc.sample`` arguments (2 chains on 2 cores, no progress bar)."""
        return {
            "chains": 2,
            "cores": 2,
            "draws": 1000,
            "tune": 1000,
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
    def init_arguments(self) -> dict[str, Any]:
        """Every ``__init__`` argument: the syntax, the scaling and the configs."""
        return super().init_arguments() | {"model": self.syntax, "scaling": self.scaling}

    def restore_data(self, idata) -> SEMData:
        """The pattern moments of a loaded posterior (no respondent rows)."""
        return SEMData.from_dataset(
            idata.constant_data,
            groups=list(self.fit_options.get("groups", [config.EVERYONE])),
            data_hash=idata.attrs.get("data_hash", ""),
        )

    # ------------------------------------------------------------------ priors
    def prior_spec(self, kind_key: str, names: list[str]) -> dict[str, Any]:
        """Prior spec of a vector RV, with per-term overrides (``"Loyalty ~ Image"``) as arrays."""
        spec = dict(self.model_config[kind_key])
        overrides = {}
        if kind_key == "path":
            # composite weights and second-order loadings are entries of B with priors of
            # their own kind (``weight``, ``loading``)
            ops = {p.name: p.op for p in self.structure.of_kind("path")}
            for name in names:
                if ops.get(name) == "<~":
                    overrides[name] = self.model_config["weight"]
                elif ops.get(name) == "=~":
                    overrides[name] = self.model_config["loading"]
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

    # ------------------------------------------------------------------ building
    def build_model(
        self, data: SEMData, *, ordinal: bool | list[str] = False, invariance: str = "loadings"
    ):
        """Build the PyMC model for prepared data.

        The graph is built in named steps, in the order of its random variables:
        the free slots and their units (:meth:`_plan`), loadings, paths, residual and
        latent (co)variances, the model matrices, the likelihood (an object:
        :class:`~cxlib.models.sem.likelihood.ContinuousLikelihood` or
        :class:`~cxlib.models.sem.ordinal.PairwiseOrdinalLikelihood`) and the reported
        quantities.

        Parameters
        ----------
        data : SEMData
            From :func:`cxlib.models.sem.data.prepare_data` (``fit`` calls both).
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

        if invariance not in INVARIANCE:
            raise ModelSpecificationError(
                f"invariance must be 'loadings' or 'none', got {invariance!r}"
            )
        self._check_single_item_ordinal(ordinal)
        self.structure.fix_single_item_residuals(
            {it: float(data.scale[j]) ** 2 for j, it in enumerate(data.items)}
        )
        self._fix_observed_exogenous(data)
        likelihood = make_likelihood(ordinal, self.structure.items, structure=self.structure)
        likelihood.prepare(data)
        plan = self._plan(data, likelihood)
        initvals: dict[str, np.ndarray] = {}
        with pm.Model(coords=plan.coords) as model:
            load_vals = self._loadings(plan, initvals)
            path_vals_g = self._paths(plan, initvals)
            ic_vals = self._item_covariances(plan, initvals)
            lc_vals = self._latent_covariances(plan, initvals)
            graph = self._matrices(
                plan, model, load_vals, path_vals_g, ic_vals, lc_vals, invariance
            )
            graph.initvals = initvals
            graph.gamma = self._interactions(plan, initvals)
            ll, theta_y, nu_y, alpha = likelihood.add(graph)
            self._report(plan, graph, ll, theta_y, nu_y, alpha, invariance)
        for name, value in initvals.items():
            model.set_initval(model[name], value)
        self.model = model
        self.likelihood = likelihood
        self.initvals = initvals
        self.pooled = plan.pooled
        return model

    def _fix_observed_exogenous(self, data: SEMData) -> None:
        """Fix exogenous observed (co)variances at their sample values (lavaan's ``fixed.x``)."""
        st = self.structure
        if not st.fixed_x:
            return
        _, cov_z = saturated_em(data)
        cov = cov_z * np.outer(data.scale, data.scale)
        j = {it: k for k, it in enumerate(data.items)}
        st.fix_observed_exogenous(
            {
                (a, b): float(cov[j[st.observed[a]], j[st.observed[b]]])
                for a in st.fixed_x
                for b in st.fixed_x
            }
        )

    def _check_single_item_ordinal(self, ordinal) -> None:
        """Refuse ordinal items that measure a construct alone (the pairwise likelihood cannot)."""
        st = self.structure
        listed = set(ordinal_item_list(ordinal, st.items))
        observed = [it for it in st.observed.values() if it in listed]
        if observed:
            keep = [it for it in st.items if it in listed and it not in st.observed]
            raise ModelSpecificationError(
                f"ordinal: {', '.join(observed)} enter the model as observed variables (in a "
                "regression, an interaction or a composite), measured without error; the "
                "pairwise ordinal likelihood cannot fit an ordinal item without measurement "
                f"error. List the construct items only (ordinal={keep}), so that the observed "
                "variables enter as continuous, or use the continuous likelihood"
            )
        bad = {lat: it for lat, it in st.single_items.items() if it in listed}
        if not bad:
            return
        named = ", ".join(f"{lat} (item {it})" for lat, it in bad.items())
        keep = [it for it in st.items if it in listed and it not in bad.values()]
        singles = ", ".join(bad.values())
        advice = (
            f"list the other items only, so that {singles} enters as continuous: ordinal={keep}"
            if keep
            else "use the continuous likelihood (ordinal=False)"
        )
        raise ModelSpecificationError(
            f"ordinal: the single-item construct(s) {named} cannot be fitted with the item "
            "as ordinal: an ordinal item's latent response has variance 1 and its residual "
            "variance is 1 - communality, so one ordinal item cannot fix the construct's "
            "variance and its measurement error (the pairwise likelihood has no clear "
            f"maximum). To keep the other items ordinal, {advice}; or give the construct "
            "more items"
        )

    def _units(
        self, data: SEMData, latent_response_items: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Item SDs and latent scales (the unit of each latent on the data's scale).

        Ordinal items are latent responses of variance 1 (unit 1).
        """
        st = self.structure
        s = np.where(np.isin(data.items, list(latent_response_items)), 1.0, data.scale)
        c = np.ones(st.n_latents)
        # a composite takes its scale from its fixed weight's indicator and a higher-order
        # construct from its fixed first-order loading: resolve indicators first
        marker_of = {}
        for prm in st.params:
            if prm.kind == "path" and prm.op in ("<~", "=~") and prm.fixed not in (None, 0.0):
                owner, member = (prm.row, prm.col) if prm.op == "<~" else (prm.col, prm.row)
                marker_of.setdefault(owner, (member, abs(prm.fixed)))
        for k, lat in enumerate(st.latents):
            loads = [
                p
                for p in st.params
                if p.kind == "loading" and p.lhs == lat and p.fixed not in (None, 0.0)
            ]
            var = next(p for p in st.params if p.kind == "latent_cov" and p.lhs == lat == p.rhs)
            if loads:
                c[k] = s[loads[0].row] / abs(loads[0].fixed)
            elif var.fixed is not None and var.fixed > 0:
                c[k] = np.sqrt(var.fixed)
        for _ in range(st.n_latents):
            for owner, (member, w) in marker_of.items():
                c[owner] = c[member] * w if st.latents[owner] in st.composites else c[member] / w
        return s, c

    def _plan(self, data: SEMData, likelihood) -> GraphPlan:
        """Step 1: the free slots of each kind, their coordinates and their units."""
        st = self.structure
        G = len(data.groups)
        grouped = G > 1
        latent_responses = likelihood.latent_response_items
        s, c = self._units(data, latent_responses)
        pooled = self._pooled_groups(data) if grouped else np.zeros(G, dtype=bool)
        free = st.free_names
        coords: dict[str, Any] = {
            "item": st.items,
            "item_": st.items,
            "latent": st.latents,
            "latent_": st.latents,
        }
        pos_idx = [i for i, pos in enumerate(st.free_positive["loading"]) if pos]
        unc_idx = [i for i, pos in enumerate(st.free_positive["loading"]) if not pos]
        coords["loading_free"] = [free["loading"][i] for i in unc_idx]
        coords["loading_first"] = [free["loading"][i] for i in pos_idx]
        coords["path_free"] = free["path"]
        item_var = [i for i, n in enumerate(free["item_cov"]) if _is_var(n)]
        # latent responses (ordinal items): no free residual variance (1 - communality)
        fixed_var = [
            i for i in item_var if free["item_cov"][i].partition(" ~~ ")[0] in latent_responses
        ]
        item_var = [i for i in item_var if i not in fixed_var]
        item_cov = [i for i, n in enumerate(free["item_cov"]) if not _is_var(n)]
        lat_var = [i for i, n in enumerate(free["latent_cov"]) if _is_var(n)]
        lat_cov = [i for i, n in enumerate(free["latent_cov"]) if not _is_var(n)]
        coords["item_var_free"] = [free["item_cov"][i] for i in item_var]
        coords["item_cov_free"] = [free["item_cov"][i] for i in item_cov]
        coords["latent_var_free"] = [free["latent_cov"][i] for i in lat_var]
        coords["latent_cov_free"] = [free["latent_cov"][i] for i in lat_cov]
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
            return c[prm.row]  # latent_cov

        if st.interactions:
            coords["interaction_term"] = [prm.name for prm in st.interactions]
            coords["interaction_free"] = free["interaction"]
        return GraphPlan(
            data=data,
            coords=coords,
            n_groups=G,
            pooled=pooled,
            latent_units=c,
            loading_unit=np.array([unit("loading", i) for i in range(len(free["loading"]))]),
            path_unit=np.array([unit("path", i) for i in range(len(free["path"]))]),
            loading_free=unc_idx,
            loading_first=pos_idx,
            item_var=item_var,
            item_var_fixed=fixed_var,
            item_cov=item_cov,
            latent_var=lat_var,
            latent_cov=lat_cov,
            item_var_unit=np.array([unit("item_cov", i) for i in item_var]),
            latent_var_unit=np.array([unit("latent_cov", i) for i in lat_var]),
            interaction_unit=np.array(
                [
                    c[prm.row] / (c[prm.parts[0]] * c[prm.parts[1]])
                    for prm in (first[("interaction", i)] for i in range(len(free["interaction"])))
                ]
            ),
        )

    def _loadings(self, plan: GraphPlan, initvals: dict) -> Any:
        """Step 2: the free loadings (data-scale values per free slot)."""
        import pytensor.tensor as pt

        st, unc, pos, unit = (
            self.structure,
            plan.loading_free,
            plan.loading_first,
            plan.loading_unit,
        )
        values = pt.zeros(len(unit))
        if unc:
            raw = make_prior(
                "loading",
                self.prior_spec("loading", plan.coords["loading_free"]),
                dims="loading_free",
            )
            values = pt.set_subtensor(values[unc], raw * unit[unc])
            initvals["loading"] = self._start(
                "loading", unc, unit, default=1.0 if st.scaling == "marker" else 0.7
            )
        if pos:
            raw = make_prior(
                "loading_positive",
                self.prior_spec("loading_positive", plan.coords["loading_first"]),
                dims="loading_first",
            )
            values = pt.set_subtensor(values[pos], raw * unit[pos])
            initvals["loading_positive"] = np.abs(self._start("loading", pos, unit, default=0.8))
        return values

    def _paths(self, plan: GraphPlan, initvals: dict) -> Any:
        """Step 3: the paths, ``(groups, free paths)``, partially pooled across groups."""
        import pymc as pm
        import pytensor.tensor as pt

        free, unit, G = self.structure.free_names["path"], plan.path_unit, plan.n_groups
        if not free:
            return pt.zeros((1, 0))
        raw = make_prior("path", self.prior_spec("path", free), dims="path_free")
        initvals["path"] = self._start("path", range(len(free)), unit, default=0.0)
        self._composite_directions(raw, initvals)
        if G == 1:
            return (raw * unit)[None, :]
        tau = self._group_sd("path_group_sd", "path_free")
        keep = (~plan.pooled).astype(float)[:, None]
        if isinstance(tau, float):
            # fixed SD: centered segment paths (the data pin each segment's paths, so this
            # is close to Gaussian; the non-centered form correlates the common path with
            # every deviation)
            seg = pm.Normal("path_group", mu=raw[None, :], sigma=tau, dims=("group", "path_free"))
            initvals["path_group"] = np.tile(initvals["path"], (G, 1))
            return (keep * seg + (1 - keep) * raw[None, :]) * unit
        z = pm.Normal("path_group_z", 0.0, 1.0, dims=("group", "path_free"))
        return (raw * unit)[None, :] + keep * tau * unit * z

    def _composite_slots(self) -> dict[str, list[int]]:
        """The free path slots of each normalized composite's weights, in indicator order."""
        st = self.structure
        return {
            comp: [
                p.free for p in st.of_kind("path") if p.op == "<~" and p.lhs == comp and p.is_free
            ]
            for comp in st.normalized
        }

    def _composite_directions(self, raw, initvals: dict) -> None:
        r"""The weights of a normalized composite are a direction: pin their length near 1.

        Only ``v / |v|`` enters the likelihood, so the length ``|v|`` is set by the prior
        alone. With the Normal prior only, the density of ``v`` would peak at the origin,
        where the direction is undefined, and the length would spread over (0.4, 4): the
        direction's spread in ``v``-space is proportional to the length, a funnel that
        NUTS crosses with divergences (measured: 7 in 2,000 draws). The radial terms
        ``(k - 1) log |v| - (|v| - 1)^2 / (2 * 0.1^2)`` (the polar Jacobian and a tight
        length) keep ``|v|`` at 1 +- 0.1 and leave the direction's distribution unchanged.
        """
        import pymc as pm
        import pytensor.tensor as pt

        for comp, slots in self._composite_slots().items():
            if len(slots) < 2:
                continue
            radius = pt.sqrt(pt.sum(raw[slots] ** 2))
            pm.Potential(
                f"weight_radius_{comp}",
                (len(slots) - 1) * pt.log(radius) - 0.5 * ((radius - 1.0) / WEIGHT_RADIUS_SD) ** 2,
            )
            start = initvals["path"]
            start[slots] = np.where(start[slots] == 0.0, 1.0 / np.sqrt(len(slots)), start[slots])

    def _normalize_composites(self, b_g, psi):
        """Scale each normalized composite to variance 1: ``w = v / sqrt(v' Cov(x) v)``.

        ``Cov(x)`` is the model-implied covariance of the composite's indicators (the
        model without the composites' own weights, which do not affect it). The sign
        makes the standardized weights sum to a positive number.
        """
        import pytensor.tensor as pt

        from cxlib.models.sem.likelihood import nilpotent_inverse

        st = self.structure
        if not st.normalized:
            return b_g
        li = {v: k for k, v in enumerate(st.latents)}
        fixed_x = set(st.fixed_x)
        cov = None
        for comp in st.normalized:
            c = li[comp]
            members = st.composites[comp]
            idx = [li[x] for x in members]
            known = {
                frozenset((p.lhs, p.rhs)): p.fixed
                for p in st.of_kind("latent_cov")
                if p.lhs in members and p.rhs in members
            }
            pairs = [[known.get(frozenset((a, b))) for b in members] for a in members]
            if set(members) <= fixed_x and all(x is not None for row in pairs for x in row):
                # observed exogenous indicators: their covariance is the sample's (a
                # constant), which keeps the normalization out of the gradient's way
                block = pt.as_tensor_variable(np.array(pairs, dtype=float))[None]
            else:
                if cov is None:
                    rows = [li[x] for x in st.normalized]
                    base = pt.set_subtensor(b_g[:, rows, :], 0.0)
                    inv = nilpotent_inverse(base, st.depth)
                    cov = inv @ psi[None] @ pt.swapaxes(inv, -1, -2)
                block = cov[:, idx][:, :, idx]
            v = b_g[:, c, idx]
            var = pt.sum(v[:, :, None] * block * v[:, None, :], axis=(1, 2))
            # the sign: the indicators' standardized weights sum to a positive number (the
            # composite points the way most of its indicators do; a sign taken from one
            # weight flips whenever that weight's posterior reaches 0)
            sd = pt.sqrt(pt.diagonal(block, axis1=1, axis2=2))
            w = v / pt.sqrt(var)[:, None] * pt.sgn(pt.sum(v * sd, axis=1))[:, None]
            b_g = pt.set_subtensor(b_g[:, c, idx], w)
        return b_g

    def _item_covariances(self, plan: GraphPlan, initvals: dict) -> Any:
        """Step 4: item residual variances (data scale) and residual correlations."""
        import pytensor.tensor as pt

        values = pt.zeros(len(self.structure.free_names["item_cov"]))
        if plan.item_var_fixed:
            # latent responses: residual variance = 1 - communality (set by the ordinal
            # likelihood); 1 here makes the off-diagonal entries residual correlations
            values = pt.set_subtensor(values[plan.item_var_fixed], 1.0)
        return self._covariance_values(
            values, "item", plan.item_var, plan.item_var_unit, plan.item_cov, plan, initvals, 0.6
        )

    def _latent_covariances(self, plan: GraphPlan, initvals: dict) -> Any:
        """Step 5: latent (residual) variances and correlations."""
        import pytensor.tensor as pt

        values = pt.zeros(len(self.structure.free_names["latent_cov"]))
        return self._covariance_values(
            values,
            "latent",
            plan.latent_var,
            plan.latent_var_unit,
            plan.latent_cov,
            plan,
            initvals,
            0.7,
        )

    def _covariance_values(
        self, values, kind: str, var_slots, var_unit, cov_slots, plan, initvals, sd_start
    ):
        """Free variances (``<kind>_sd`` times its unit, squared) and correlations of a kind.

        The correlations stay correlations here; :func:`_fill_cov` scales them by the SDs.
        """
        import pytensor.tensor as pt

        if var_slots:
            raw = make_prior(
                f"{kind}_sd",
                self.prior_spec(f"{kind}_sd", plan.coords[f"{kind}_var_free"]),
                dims=f"{kind}_var_free",
            )
            values = pt.set_subtensor(values[var_slots], (raw * var_unit) ** 2)
            initvals[f"{kind}_sd"] = np.full(len(var_slots), sd_start)
        if cov_slots:
            raw = make_prior(
                f"{kind}_corr", self.model_config[f"{kind}_corr"], dims=f"{kind}_cov_free"
            )
            values = pt.set_subtensor(values[cov_slots], raw)
            initvals[f"{kind}_corr"] = np.zeros(len(cov_slots))
        return values

    def _interactions(self, plan: GraphPlan, initvals: dict) -> Any:
        """Step 5b: the product terms' coefficients, one per interaction (None without)."""
        import pytensor.tensor as pt

        st = self.structure
        if not st.interactions:
            return None
        free = st.free_names["interaction"]
        values = pt.zeros(len(free))
        if free:
            raw = make_prior(
                "interaction", self.prior_spec("interaction", free), dims="interaction_free"
            )
            values = raw * plan.interaction_unit
            initvals["interaction"] = self._start(
                "interaction", range(len(free)), plan.interaction_unit, default=0.0
            )
        out = []
        for prm in st.interactions:
            out.append(values[prm.free] if prm.is_free else pt.as_tensor_variable(prm.fixed))
        return pt.stack(out).astype("float64")

    def _matrices(
        self, plan: GraphPlan, model, load_vals, path_vals_g, ic_vals, lc_vals, invariance: str
    ) -> SEMGraph:
        """Step 6: the model matrices on the data scale (group-specific where they differ)."""
        import pymc as pm
        import pytensor.tensor as pt

        st, G = self.structure, plan.n_groups
        p, m = st.n_items, st.n_latents
        load_params = st.of_kind("loading")
        lambda_y = _fill(pt, (p, m), load_params, load_vals)
        if G > 1 and invariance == "none" and plan.loading_free:
            unc, unit = plan.loading_free, plan.loading_unit
            tau_l = self._group_sd("loading_group_sd", "loading_free")
            zl = pm.Normal("loading_group_z", 0.0, 1.0, dims=("group", "loading_free"))
            dev = pt.zeros((G, len(unit)))
            dev = pt.set_subtensor(dev[:, unc], tau_l * unit[unc] * zl)
            lambda_g = pt.stack(
                [_fill(pt, (p, m), load_params, load_vals + dev[g]) for g in range(G)]
            )
        else:
            lambda_g = pt.broadcast_to(lambda_y, (G, p, m))
        path_params = st.of_kind("path")
        if st.free_names["path"]:
            b_g = pt.stack(
                [_fill(pt, (m, m), path_params, path_vals_g[g]) for g in range(G if G > 1 else 1)]
            )
        else:
            b_g = pt.as_tensor_variable(np.zeros((1, m, m)))
        if G > 1 and not st.free_names["path"]:
            b_g = pt.broadcast_to(b_g, (G, m, m))
        psi = _fill_cov(pt, m, st.of_kind("latent_cov"), lc_vals)
        b_g = self._normalize_composites(b_g, psi)
        return SEMGraph(
            model=model,
            structure=st,
            data=plan.data,
            model_config=self.model_config,
            prior_spec=self.prior_spec,
            latent_units=plan.latent_units,
            lambda_y=lambda_y,
            lambda_g=lambda_g,
            b_g=b_g,
            psi=psi,
            theta_y=_fill_cov(pt, p, st.of_kind("item_cov"), ic_vals),
        )

    def _report(self, plan: GraphPlan, graph: SEMGraph, ll, theta_y, nu_y, alpha, invariance):
        """Step 8: the reported matrices, defined parameters and the log-likelihood."""
        import pymc as pm
        import pytensor.tensor as pt

        grouped = plan.n_groups > 1
        by_group = grouped and invariance == "none"
        gdims = ("group",) if grouped else ()
        pm.Deterministic(
            "Lambda",
            graph.lambda_g if by_group else graph.lambda_y,
            dims=(*gdims, "item", "latent") if by_group else ("item", "latent"),
        )
        b_g = graph.b_g
        pm.Deterministic("B", b_g if grouped else b_g[0], dims=(*gdims, "latent", "latent_"))
        pm.Deterministic("Psi", graph.psi, dims=("latent", "latent_"))
        pm.Deterministic("Theta", theta_y, dims=("item", "item_"))
        pm.Deterministic("nu", nu_y, dims=("item",))
        if grouped and alpha is not None:
            pm.Deterministic("alpha", alpha, dims=("group", "latent"))
        if self.structure.parsed.defined:
            values = [
                self._defined_tensor(
                    pt, graph.lambda_g[g], b_g[g], graph.psi, theta_y, gamma=graph.gamma
                )
                for g in range(plan.n_groups if grouped else 1)
            ]
            pm.Deterministic(
                "defined",
                pt.stack(values) if grouped else values[0],
                dims=(*gdims, "defined_parameter"),
            )
        if graph.gamma is not None:
            pm.Deterministic("Gamma", graph.gamma, dims="interaction_term")
        # a variable of its own: the Potential holds ``ll`` itself, and PyMC's conversion
        # to a function graph (the compiled sampler's) would merge the two names
        pm.Deterministic("loglik", ll + 0.0)

    def _defined_tensor(self, pt, Lambda, B, Psi, Theta, *, gamma=None):
        st = self.structure
        mats = {"loading": Lambda, "path": B, "item_cov": Theta, "latent_cov": Psi}
        env: dict[str, Any] = {}
        for prm in st.params:
            if prm.label and prm.label not in env and prm.kind in mats:
                env[prm.label] = mats[prm.kind][prm.row, prm.col]
        for i, prm in enumerate(st.interactions):
            if prm.label and prm.label not in env and gamma is not None:
                env[prm.label] = gamma[i]
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
                stacklevel=7,
            )
        return pooled

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data,
        *,
        draws: int | None = None,
        tune: int | None = None,
        chains: int | None = None,
        random_seed: int | None = None,
        ordinal: bool | list[str] = False,
        group: str | None = None,
        weights=None,
        invariance: str = "loadings",
        **sample_kwargs,
    ) -> SEMResult:
        """Sample the posterior (the life cycle of :meth:`CxModel.fit`).

        Parameters
        ----------
        data : pandas.DataFrame or cxlib.data.SurveyData
            One row per respondent, a column per item (reverse-coded items already
            reversed). Missing answers are used, not dropped (one set of moments per
            missingness pattern).
        draws, tune : int, optional
            Draws kept and tuning steps per chain (default from ``sampler_config``:
            1,000 each).
        chains : int, optional
            Number of chains (default from ``sampler_config``: 2).
        random_seed : int, optional
            Seed (default :data:`cxlib.config.DEFAULT_SEED`).
        ordinal : bool or list of str
            Treat all items (True) or the items listed as ordered categories, through
            the pairwise likelihood of :mod:`cxlib.models.sem.ordinal`; with a list, the
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
            ``nuts_sampler="nutpie"`` samples with nutpie's compiled NUTS instead
            (:func:`cxlib.models.sampling.sample_nutpie`; compiled once per model
            structure in the process), the default of models with interactions;
            ``nuts_sampler="pymc"`` is PyMC's, the default of the others.

        Returns
        -------
        SEMResult
            Warns with :class:`~cxlib.errors.ConvergenceWarning` when a diagnostic gate
            fails and with :class:`~cxlib.errors.ImproperSolutionWarning` (once, listing
            every problem) when the solution is improper (:attr:`SEMResult.improper`);
            ``result.trustworthy`` is False in either case.
        """
        given = {"draws": draws, "tune": tune, "chains": chains}
        sample_kwargs |= {k: v for k, v in given.items() if v is not None}
        return super().fit(
            data,
            random_seed=random_seed,
            ordinal=ordinal,
            group=group,
            weights=weights,
            invariance=invariance,
            **sample_kwargs,
        )

    def prepare_fit(
        self,
        data=None,
        *,
        ordinal: bool | list[str] = False,
        group: str | None = None,
        weights=None,
        invariance: str = "loadings",
    ) -> None:
        """Prepare the pattern moments, build the graph and let the likelihood finish it."""
        if data is None:
            raise ModelSpecificationError("fit() needs the data: fit(data)")
        if ordinal_item_list(ordinal, self.structure.items) and group is not None:
            raise ModelSpecificationError(
                "group= is not supported with the ordinal likelihood yet; fit the segments "
                "separately or use the continuous likelihood"
            )
        self._check_observed_columns(data)
        prepared = prepare_data(data, self.structure.items, weights=weights, group=group)
        for note in prepared.notes:
            warnings.warn(note, UserWarning, stacklevel=4)
        self.data = prepared
        self.build_model(prepared, ordinal=ordinal, invariance=invariance)
        self.initvals = self.likelihood.finish(self.model, self.initvals)
        self.fit_options = {
            "ordinal": self.likelihood.latent_response_items,
            "group": group,
            "groups": prepared.groups,
            "pooled_groups": [prepared.groups[g] for g in np.flatnonzero(self.pooled)],
            "invariance": invariance,
            "weighted": weights is not False
            and weights is not None
            or (weights is None and hasattr(data, "study") and bool(data.study.columns.weight)),
            "n_respondents": prepared.n,
        }

    def _check_observed_columns(self, data) -> None:
        """Name the regression, composite or interaction that uses a column the data lacks."""
        st = self.structure
        columns = as_frame(data)[0].columns
        absent = [v for v in st.observed if v not in columns]
        if not absent:
            return
        lines = []
        for v in absent:
            uses = [
                f"'{t.lhs} {t.op} {t.rhs}' (line {t.line})"
                for t in st.parsed.terms
                if t.op in ("~", "<~") and (v == t.lhs or v in t.parts)
            ]
            hint = did_you_mean(v, [*st.constructs, *columns], parens=True)
            lines.append(f"{v!r}{hint}, used in {', '.join(uses)}")
        raise ModelSpecificationError(
            "the model uses name(s) that are neither constructs of the model ("
            + ", ".join(st.constructs)
            + ") nor columns of the data, so they cannot be read as observed variables: "
            + "; ".join(lines)
            + ". Define the construct ('Name =~ item1 + item2'), fix the spelling, or add the "
            "column"
        )

    def start_values(self) -> dict[str, np.ndarray]:
        """The graph's starting values (the pairwise maximum for ordinal fits)."""
        return self.initvals

    def sample(self, kwargs: dict[str, Any]):
        """Sample with the likelihood's own NUTS step where it has one (pairwise)."""
        kwargs = self.likelihood.sampler_kwargs(self.model, kwargs, weight=self._laplace_weight)
        idata = super().sample(kwargs)
        idata.attrs["nuts_start"] = self.likelihood.nuts_start or idata.attrs["nuts_start"]
        self.fit_options["nuts_start"] = idata.attrs["nuts_start"]
        return idata


@dataclass
class GraphPlan:
    """The free slots of each kind, their coordinates and units: what the graph steps share."""

    data: SEMData
    coords: dict[str, Any]
    n_groups: int
    pooled: np.ndarray
    latent_units: np.ndarray
    loading_unit: np.ndarray
    path_unit: np.ndarray
    loading_free: list[int]
    loading_first: list[int]
    item_var: list[int]
    item_var_fixed: list[int]
    item_cov: list[int]
    latent_var: list[int]
    latent_cov: list[int]
    item_var_unit: np.ndarray
    latent_var_unit: np.ndarray
    #: per free interaction: the outcome's scale over the product of its parts' scales
    interaction_unit: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _is_var(name: str) -> bool:
    lhs, _, rhs = name.partition(" ~~ ")
    return lhs == rhs


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
    # a copy: pytensor keeps a reference to the array, and the fixed covariances written
    # into ``base`` below are added once, as ``fixed_off``
    out = pt.as_tensor_variable(base.copy())
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


#: The measurement invariance choices of a grouped fit.
INVARIANCE = ("loadings", "none")


def ordinal_item_list(ordinal, items: list[str]) -> list[str]:
    """The items ``ordinal=`` names, in the model's order (all for True, none for False)."""
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


def make_likelihood(ordinal, items: list[str], *, structure: SEMStructure | None = None):
    """The likelihood object of the model and ``ordinal=``.

    The latent-score likelihood (:mod:`cxlib.models.sem.scores`) when the structure
    has product terms (``Y ~ X:Z``), else continuous or the pairwise ordinal one.
    """
    listed = ordinal_item_list(ordinal, items)
    if structure is not None and structure.interactions:
        if listed:
            raise ModelSpecificationError(
                "ordinal items are not supported with interactions (Y ~ X:Z) yet: the "
                "latent-score likelihood treats items as continuous; fit with ordinal=False"
            )
        from cxlib.models.sem.scores import LatentScoreLikelihood

        return LatentScoreLikelihood(structure)
    if not listed:
        return ContinuousLikelihood()
    from cxlib.models.sem.ordinal import PairwiseOrdinalLikelihood

    return PairwiseOrdinalLikelihood(listed)
