"""Driver priorities (a Bayesian importance-performance map) and what-if analyses.

Executives ask what to fix first and what it would buy. Both answers come from the
posterior draws of a fitted structural model, never from refitting:

- **Importance** of a driver for the target construct (the study's ``target`` role:
  ``roles.target``, else the loyalty KPI's construct, else the model's final outcome)
  is its total effect on the IPMA metric users know: both constructs rescaled to
  0-100. A construct's 0-100 score is the mean of its items rescaled to 0-100, so one
  point of driver score moves the target by ``T * k_target / k_driver`` points, where
  ``T`` is the total effect between the latents and
  ``k = mean_i(100 * loading_i / range_i)`` converts a latent unit into score points.
- **Item importance** follows the item's measurement weight, as SmartPLS's IPMA does:
  the construct's importance times the item's *rescaled weight* ``w_i``, its
  standardized loading (per draw; or a composite's outer weight, ``item_weights``)
  divided by the sum over the construct's items, so the weights of a construct sum to
  one and its items' importances sum to the construct's. An item's performance is its
  own 0-100 mean, and its quadrant is decided among the items.
- **Performance** is the (weighted) mean 0-100 score in each segment and wave, with the
  Student-t posterior of a mean (:func:`cxlib.insights.cells.weighted_mean_draws`).
- **Quadrants** are decided draw by draw against the median driver's importance and
  performance, so each driver gets the probability of each quadrant (they sum to one):
  ``fix first`` (important, under-performing), ``keep up``, ``possible overkill``,
  ``low priority``.
- **What-if** shifts one or several drivers (constructs by score points, or items by
  points on their own scale) as interventions on their equations and propagates
  them through the structural model, ``d_eta = (I - B)^-1 delta``, for every draw at
  once. The target's top-2-box share and NPS move along the model's probit link: an
  item whose latent response shifts by ``d`` standard deviations has
  ``share_new = Phi(Phi^-1(share_now) + d)`` above any cut. An item's shift moves its
  construct's score by the item's rescaled weight times the item's 0-100 points.
- **Kinds of model** beyond reflective constructs: an observed variable in a regression
  (``Loyalty ~ tenure``) is a construct with one item, its own column, on the study's
  scale for it (else the range seen in the data). A composite (``F <~ x1 + x2``) scores
  the weighted mean of its indicators' scores, weighted by its weights per score point,
  so an observed indicator's importance is its weight times the composite's total
  effect; its observed indicators are its items, not drivers of their own. A
  higher-order construct (``g =~ F1 + F2 + F3``) scores the mean of its first-order
  constructs' scores, and their items are its items. With product terms
  (``Y ~ X + Z + X:Z``) importance is the effect at the moderators' means, and a
  what-if propagates through the products (:func:`propagate_shifts`): shifting the
  moderator changes the slope it moderates.
- **Flags**: a driver model remembers whether the SEM it came from converged and
  whether its solution is improper (:attr:`DriverModel.flags`);
  :meth:`DriverModel.from_sem` refuses such a result unless asked
  (``allow_unconverged=True``), and every table built from the model carries the flags
  (``model_converged``, ``model_improper``) so a page can say so.

:class:`DriverModel` holds what these need (draws of the total-effect matrix,
loadings and item SDs per group) and is built from a fitted SEM with
:meth:`DriverModel.from_sem`, or by hand for tests and custom models.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from cxlib import config
from cxlib.errors import DriverError
from cxlib.insights.cells import segment_wave_cells, weighted_mean_draws, withheld_segments
from cxlib.stats import interval_columns, summarize_draws

__all__ = [
    "DriverError",
    "DriverModel",
    "QUADRANTS",
    "WhatIf",
    "driver_priorities",
    "propagate_shifts",
    "sem_flags",
    "what_if",
    "what_if_baseline",
    "what_if_examples",
]

QUADRANTS = ("fix first", "keep up", "possible overkill", "low priority")
_FORMAT = "cxlib.DriverModel/1"
#: the format of models with composites, higher-order constructs or interactions (a
#: reader of the first format would weigh them wrongly, so it refuses them)
_FORMAT_KINDS = "cxlib.DriverModel/2"


@dataclass
class DriverModel:
    """Posterior draws a driver analysis needs, per group.

    Attributes
    ----------
    latents : list of str
        Latent constructs, in the order of the matrices' axes.
    items : dict
        Construct -> its items.
    scales : dict
        Item -> (min, max) of its answer scale.
    total : numpy.ndarray
        Total effects ``(I - B)^-1``, shape (draw, group, latent_to, latent_from).
    loadings : numpy.ndarray
        Loadings, shape (draw, group, item, latent) with items in ``item_order``.
    item_sd : numpy.ndarray
        Model-implied item standard deviations, shape (draw, group, item).
    item_order : list of str
        Items along the item axes.
    groups : list of str
        Group labels (segments when the model was fitted with ``group=``), or
        ``[config.EVERYONE]``.
    group_column : str or None
        The segment column the groups come from.
    target : str or None
        The construct the study's driver analyses explain (``study.target`` when built
        with :meth:`from_sem`); the default target without a study at hand.
    flags : dict
        ``{"converged": bool, "improper": [messages]}``: whether the SEM passed its
        convergence diagnostics and what makes its solution improper (empty: proper).
        A hand-built model is taken as converged and proper.
    item_weights : numpy.ndarray or None
        Outer weights given by hand, shape (draw, group, item); None (a factor model):
        items are weighted by their standardized loadings (:meth:`item_weight`).
    composites : dict
        Composite (``F <~ x1 + x2``) -> its indicators, latents of the model: an observed
        indicator is the latent of its item's name (its one item, loading 1). The
        composite's score is the weighted mean of its indicators' scores
        (:meth:`member_weights`); its observed indicators are its items, not drivers of
        their own.
    higher_order : dict
        Higher-order construct (``g =~ F1 + F2 + F3``) -> its first-order constructs: it
        has no items of its own; its score is the mean of theirs.
    interactions : list of tuple
        ``(outcome, x, z)`` of each product term ``outcome ~ x:z``, along the last axis
        of ``gamma``.
    gamma : numpy.ndarray or None
        The product terms' coefficients, shape (draw, group, interaction).
    """

    latents: list[str]
    items: dict[str, list[str]]
    scales: dict[str, tuple[float, float]]
    total: np.ndarray
    loadings: np.ndarray
    item_sd: np.ndarray
    item_order: list[str]
    groups: list[str] = field(default_factory=lambda: [config.EVERYONE])
    group_column: str | None = None
    target: str | None = None
    flags: dict = field(default_factory=lambda: {"converged": True, "improper": []})
    item_weights: np.ndarray | None = None
    composites: dict[str, list[str]] = field(default_factory=dict)
    higher_order: dict[str, list[str]] = field(default_factory=dict)
    interactions: list[tuple[str, str, str]] = field(default_factory=list)
    gamma: np.ndarray | None = None

    def __post_init__(self):
        self.flags = _checked_flags(self.flags, "DriverModel(flags=...)")
        if self.target is not None and self.target not in self.latents:
            raise DriverError(
                f"DriverModel(target=...): {self.target!r} is not a construct of the model "
                f"(constructs: {', '.join(self.latents)})"
            )
        if self.item_weights is not None:
            self.item_weights = np.asarray(self.item_weights, dtype=float)
            if self.item_weights.shape != self.item_sd.shape:
                raise DriverError(
                    "DriverModel(item_weights=...): expected shape (draw, group, item) "
                    f"{self.item_sd.shape}, got {self.item_weights.shape}"
                )
        self.interactions = [tuple(t) for t in self.interactions]
        built = {**self.composites, **self.higher_order}
        for name in [*built, *(v for m in built.values() for v in m)]:
            self._latent(name)
        for name in (v for term in self.interactions for v in term):
            self._latent(name)
        if self.interactions:
            self.gamma = np.asarray(self.gamma, dtype=float)
            want = self.total.shape[:2] + (len(self.interactions),)
            if self.gamma.shape != want:
                raise DriverError(
                    f"DriverModel(gamma=...): expected shape (draw, group, interaction) {want}, "
                    f"got {self.gamma.shape}"
                )

    @classmethod
    def from_sem(cls, result, study=None, *, allow_unconverged: bool = False) -> DriverModel:
        """Build from a fitted :class:`cxlib.models.sem.SEMResult`.

        Parameters
        ----------
        result : SEMResult
            The fitted SEM.
        study : Study, optional
            For item scales and the target (default: the study the SEM was built from).
        allow_unconverged : bool
            False (default) refuses a result whose convergence diagnostics failed or
            whose solution is improper (``result.improper``); True builds the model
            anyway, with :attr:`flags` saying what is wrong (every table built from it
            carries them).

        Raises
        ------
        DriverError
            Without a study, or for an unconverged or improper result (naming its
            problems) unless ``allow_unconverged=True``.
        """
        study = study or getattr(result.model, "study", None)
        if study is None:
            raise DriverError("driver analyses need the study spec (item scales); pass study=")
        flags = sem_flags(result)
        if not allow_unconverged and not (flags["converged"] and not flags["improper"]):
            what = []
            if not flags["converged"]:
                problems = list(result.diagnostics.problems())
                what.append(
                    "did not converge (" + "; ".join(problems or ["diagnostics failed"]) + ")"
                )
            if flags["improper"]:
                what.append("is improper (" + "; ".join(flags["improper"]) + ")")
            raise DriverError(
                f"the SEM of study {study.name!r} {' and '.join(what)}: driver priorities and "
                "what-if answers from it would not be trustworthy. Refit it (more draws and "
                "tuning, or the changes named above), or pass allow_unconverged=True to "
                "DriverModel.from_sem to build the driver model anyway (its tables then say "
                "so in model_converged / model_improper)"
            )
        target = study.target if study.target in result.structure.latents else None
        mats = result.matrices()
        st = result.structure
        s = mats["inv"].shape
        flat = s[0] * s[1]
        sigma = mats["sigma"].reshape((flat,) + mats["sigma"].shape[2:])
        groups = list(result.groups)
        grouped = len(groups) > 1
        observed = dict(st.observed)
        composites = {c: list(m) for c, m in st.composites.items()}
        higher = {g: list(m) for g, m in st.higher_order.items()}
        items = {
            lat: [i for i in its if i not in st.latents]
            for lat, its in st.parsed.indicators.items()
        }
        items |= {lat: [item] for lat, item in observed.items()}
        items |= {g: [] for g in higher}
        items |= {c: [m for m in members if m in observed] for c, members in composites.items()}
        interactions, gamma = [], None
        terms = list(st.interactions)
        if terms:
            interactions = [
                (prm.lhs, st.latents[prm.parts[0]], st.latents[prm.parts[1]]) for prm in terms
            ]
            g_draws = np.asarray(result.idata.posterior["Gamma"].values).reshape(flat, -1)
            gamma = np.broadcast_to(g_draws[:, None, :], (flat, s[2], len(terms))).copy()
        return cls(
            latents=list(st.latents),
            items={lat: items.get(lat, []) for lat in st.latents},
            scales=_item_scales(result, study),
            total=mats["inv"].reshape((flat,) + s[2:]),
            loadings=mats["Lambda"].reshape((flat,) + mats["Lambda"].shape[2:]),
            item_sd=np.sqrt(np.diagonal(sigma, axis1=-2, axis2=-1)),
            item_order=list(st.items),
            groups=groups if grouped else [config.EVERYONE],
            group_column=result.model.fit_options.get("group") if grouped else None,
            target=target,
            flags=flags,
            composites=composites,
            higher_order=higher,
            interactions=interactions,
            gamma=gamma,
        )

    @property
    def trustworthy(self) -> bool:
        """True when the SEM converged and its solution is proper (see :attr:`flags`)."""
        return bool(self.flags["converged"]) and not self.flags["improper"]

    def flag_columns(self) -> dict:
        """The flags as table columns: ``model_converged`` (bool), ``model_improper`` (str).

        ``model_improper`` joins the improper-solution messages with ``"; "`` (empty
        when the solution is proper).
        """
        return {
            "model_converged": bool(self.flags["converged"]),
            "model_improper": "; ".join(self.flags["improper"]),
        }

    @property
    def n_draws(self) -> int:
        """Number of posterior draws."""
        return self.total.shape[0]

    def save(self, path: str | Path) -> Path:
        """Write the draws to a compressed ``.npz`` file (what dashboards load).

        Dashboards recompute what-if answers from these draws in milliseconds with
        NumPy alone: no PyMC, no refitting.
        """
        path = Path(path)
        meta = {
            "format": _FORMAT,
            "latents": self.latents,
            "items": self.items,
            "scales": {k: list(v) for k, v in self.scales.items()},
            "item_order": self.item_order,
            "groups": self.groups,
            "group_column": self.group_column,
            "target": self.target,
            "flags": self.flags,
        }
        arrays = {"total": self.total, "loadings": self.loadings, "item_sd": self.item_sd}
        if self.item_weights is not None:
            arrays["item_weights"] = self.item_weights
        if self.composites or self.higher_order or self.interactions:
            # files of reflective models stay in the first format, which older readers load
            meta["format"] = _FORMAT_KINDS
            meta["composites"] = self.composites
            meta["higher_order"] = self.higher_order
            meta["interactions"] = [list(t) for t in self.interactions]
            if self.gamma is not None:
                arrays["gamma"] = self.gamma
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, **arrays, meta=json.dumps(meta))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> DriverModel:
        """Read draws written by :meth:`save`.

        Files written before the flags existed load as converged and proper, with no
        target (the caller's study gives it).
        """
        path = Path(path)
        if not path.exists():
            raise DriverError(f"{path}: driver model file not found")
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                arrays = {k: f[k] for k in ("total", "loadings", "item_sd")}
                for optional in ("item_weights", "gamma"):
                    if optional in f.files:
                        arrays[optional] = f[optional]
        except (OSError, ValueError, KeyError) as exc:
            raise DriverError(f"{path}: not a driver model file ({exc})") from None
        if meta.get("format") not in (_FORMAT, _FORMAT_KINDS):
            raise DriverError(
                f"{path}: written in format {meta.get('format')!r}, expected {_FORMAT!r} "
                f"or {_FORMAT_KINDS!r}"
            )
        return cls(
            latents=meta["latents"],
            items=meta["items"],
            scales={k: tuple(v) for k, v in meta["scales"].items()},
            item_order=meta["item_order"],
            groups=meta["groups"],
            group_column=meta["group_column"],
            target=meta.get("target"),
            flags=_checked_flags(
                meta.get("flags", {"converged": True, "improper": []}), f"{path}: flags"
            ),
            composites=meta.get("composites", {}),
            higher_order=meta.get("higher_order", {}),
            interactions=[tuple(t) for t in meta.get("interactions", [])],
            **arrays,
        )

    def _latent(self, name: str) -> int:
        if name not in self.latents:
            raise DriverError(
                f"{name!r} is not a construct of the model (constructs: {', '.join(self.latents)})"
            )
        return self.latents.index(name)

    def _group(self, segment: str) -> int:
        if segment in self.groups:
            return self.groups.index(segment)
        if len(self.groups) == 1:
            return 0  # one model for everyone: its effects hold in every segment
        if segment == config.EVERYONE:
            return -1  # averaged over groups by the caller
        raise DriverError(
            f"segment {segment!r} is not among the model's groups ({', '.join(self.groups)})"
        )

    def score_factor(self) -> np.ndarray:
        """``k``: score points (0-100) per latent unit, shape (draw, group, latent).

        A construct measured by items: ``mean_i(100 * loading_i / range_i)``. A composite
        ``F = sum_m w_m m`` scores the weighted mean of its indicators' scores with
        weights ``w_m / k_m`` rescaled to absolute sum one, so ``k_F = 1 / sum_m |w_m / k_m|``
        (an observed indicator ``x`` has ``k = 100 / range_x``). A higher-order construct
        scores the mean of its first-order constructs' scores, ``k_g = mean_m(l_m k_m)``
        with ``l_m`` the second-order loading. Weights and loadings are the total effects
        of ``total`` (per draw).
        """
        out = np.full(self.loadings.shape[:2] + (len(self.latents),), np.nan)
        for k, lat in enumerate(self.latents):
            if lat in self.composites or lat in self.higher_order:
                continue
            idx = [self.item_order.index(i) for i in self.items[lat]]
            ranges = np.array([self.scales[i][1] - self.scales[i][0] for i in self.items[lat]])
            out[..., k] = (100 * self.loadings[..., idx, k] / ranges).mean(axis=-1)
        for lat in self._member_order():
            c = self.latents.index(lat)
            members = self.composites.get(lat) or self.higher_order[lat]
            m = [self.latents.index(x) for x in members]
            if lat in self.composites:
                w = self.total[..., c, m]  # F = sum_m w_m m
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[..., c] = 1.0 / np.abs(w / out[..., m]).sum(axis=-1)
            else:
                loading = self.total[..., m, c]  # m = l_m g + ...
                out[..., c] = (loading * out[..., m]).mean(axis=-1)
        return out

    def _member_order(self) -> list[str]:
        """Composites and higher-order constructs, each after the ones it is built from."""
        built = {**self.composites, **self.higher_order}
        order: list[str] = []

        def visit(lat: str, seen: tuple[str, ...]) -> None:
            if lat in order or lat not in built:
                return
            if lat in seen:
                raise DriverError(f"{lat!r} is built from itself ({' -> '.join(seen)})")
            for m in built[lat]:
                visit(m, (*seen, lat))
            order.append(lat)

        for lat in built:
            visit(lat, ())
        return order

    def member_weights(self, construct: str) -> tuple[list[str], np.ndarray]:
        """How a composite's or higher-order construct's score is made of its members' scores.

        Parameters
        ----------
        construct : str
            A composite or higher-order construct.

        Returns
        -------
        members : list of str
            Its indicators (composite) or first-order constructs (higher-order).
        weights : numpy.ndarray
            Shape (draw, group, member): the score is ``sum_m weight_m * score_m``. A
            composite's weights are ``w_m / k_m`` rescaled to absolute sum one (its
            weight per point of the member's score); a higher-order construct's are
            ``1 / n_members``.
        """
        members = self.composites.get(construct) or self.higher_order.get(construct)
        if not members:
            raise DriverError(f"{construct!r} is neither a composite nor a higher-order construct")
        m = [self.latents.index(x) for x in members]
        if construct in self.higher_order:
            return list(members), np.full(self.total.shape[:2] + (len(m),), 1.0 / len(m))
        k = self.score_factor()
        with np.errstate(invalid="ignore", divide="ignore"):
            raw = self.total[..., self.latents.index(construct), m] / k[..., m]
        return list(members), raw / np.abs(raw).sum(axis=-1, keepdims=True)

    def indicator_stand_ins(self) -> list[str]:
        """Observed indicators of composites: latents that stand for their one item.

        They are reported and shifted as their composite's items, not as drivers.
        """
        return [
            m
            for members in self.composites.values()
            for m in members
            if self.items.get(m) == [m] and m in self.item_order
        ]

    def construct_items(self, construct: str) -> tuple[list[str], np.ndarray]:
        """The items a construct's score is made of and their rescaled weights.

        Parameters
        ----------
        construct : str
            A construct of the model.

        Returns
        -------
        items : list of str
            Its own items; a composite's observed indicators; a higher-order
            construct's first-order items (empty for a composite of constructs: those
            constructs are drivers with items of their own).
        weights : numpy.ndarray
            Shape (draw, group, item), as :meth:`item_weight` defines them: absolute sum
            one within the construct.
        """
        k = self._latent(construct)
        shape = self.item_sd.shape[:2]
        if construct in self.composites:
            members, w = self.member_weights(construct)
            own = [j for j, m in enumerate(members) if self.items.get(m) == [m]]
            return [members[j] for j in own], w[..., own]
        if construct in self.higher_order:
            members, w = self.member_weights(construct)
            names, cols = [], []
            for j, m in enumerate(members):
                its, wm = self.construct_items(m)
                for i, item in enumerate(its):
                    if item not in names:
                        names.append(item)
                        cols.append(w[..., j] * wm[..., i])
            return names, np.stack(cols, axis=-1) if cols else np.zeros(shape + (0,))
        idx = [self.item_order.index(i) for i in self.items[construct]]
        if not idx:
            return [], np.zeros(shape + (0,))
        if self.item_weights is not None:
            raw = self.item_weights[..., idx]
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                raw = self.loadings[..., idx, k] / self.item_sd[..., idx]
        scale = np.abs(raw).sum(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = np.where(scale > 0, raw / scale, 1.0 / len(idx))
        return list(self.items[construct]), weights

    def item_weight(self) -> np.ndarray:
        """Rescaled item weights ``w``, shape (draw, group, item) along ``item_order``.

        Within each construct, an item's standardized loading
        ``loading_i * sd(latent) / sd(item_i)`` divided by the sum of the absolute
        standardized loadings of the construct's items (IPMA's rescaling: the weights of
        a construct's items sum to one; the latent's SD cancels). With
        ``item_weights`` the given outer weights are rescaled the same way. A
        composite's observed indicators get their weights in the composite
        (:meth:`member_weights`); items of a higher-order construct keep those of
        their first-order construct (see :meth:`construct_items` for theirs in it).
        """
        out = np.zeros(self.item_sd.shape)
        ordered = [lat for lat in self.latents if lat not in self.composites]
        for lat in [*ordered, *self.composites]:
            if lat in self.higher_order:
                continue
            names, weights = self.construct_items(lat)
            for j, item in enumerate(names):
                out[..., self.item_order.index(item)] = weights[..., j]
        return out

    def item_owner(self, item: str, target: str | None = None) -> str:
        """The construct an item's shift moves: the one whose score it is part of.

        An observed variable moves its own latent; an item of a first-order construct
        under a higher-order one moves the construct that drives ``target`` (the
        higher-order one), else its own construct.

        Raises
        ------
        DriverError
            When no construct has the item.
        """
        if self.items.get(item) == [item]:
            return item
        owners = [lat for lat in self.latents if item in self.construct_items(lat)[0]]
        if not owners:
            raise DriverError(
                f"{item!r} is neither a construct nor an item of the model "
                f"(constructs: {', '.join(self.latents)})"
            )
        if target is not None:
            drivers = set(self.drivers_of(target)) | {target}
            owners = [lat for lat in owners if lat in drivers] or owners
        return owners[0]

    def final_outcomes(self) -> list[str]:
        """Constructs that are explained by others and explain none."""
        effect = np.abs(self.total).max(axis=(0, 1)).copy()  # (to, from)
        np.fill_diagonal(effect, 0.0)
        return [
            lat
            for k, lat in enumerate(self.latents)
            if effect[k].max() > 0 and effect[:, k].max() == 0
        ]

    def resolve_target(self, target: str | None = None, study=None) -> str:
        """The target to explain: ``target``, else ``study.target``, else :attr:`target`.

        Without any of these, the model's final outcome (the one construct that is
        explained and explains no other) when there is exactly one.

        Parameters
        ----------
        target : str, optional
            The target asked for.
        study : Study, optional
            The study whose ``target`` role applies when none is asked for.

        Returns
        -------
        str
            A construct of the model.

        Raises
        ------
        DriverError
            When none is given and the study has no target (with the study's reason and
            how to add one), or the target is not a construct of the model.
        """
        if target is None and study is not None:
            target = study.target
        if target is None:
            target = self.target
        if target is None:
            final = self.final_outcomes()
            target = final[0] if len(final) == 1 else None
        if target is None:
            reason = study.unmet("target") if study is not None else None
            raise DriverError(
                f"no target for driver analyses: {reason or 'the model has no single final outcome'}"
                f"; or pass target= (a construct of the model: {', '.join(self.latents)})"
            )
        self._latent(target)
        return target

    def drivers_of(self, target: str | None = None) -> list[str]:
        """Constructs with a path (direct or mediated) to ``target`` (default :attr:`target`).

        A composite's observed indicators are its items, not drivers of their own
        (:meth:`indicator_stand_ins`).
        """
        t = self._latent(self.resolve_target(target))
        effect = np.abs(self.total[..., t, :]).max(axis=(0, 1))
        items_only = set(self.indicator_stand_ins())
        return [
            lat
            for k, lat in enumerate(self.latents)
            if k != t and effect[k] > 0 and lat not in items_only
        ]

    def importance(
        self, target: str | None = None, *, level: str = "construct"
    ) -> tuple[list[str], np.ndarray]:
        """Importance draws of each driver, shape (draw, group, driver).

        ``level="item"`` gives each driver item's importance (target points per point
        of the item's 0-100 score): its construct's importance times the item's
        rescaled weight in it (:meth:`construct_items`). For a composite's indicator
        this is its weight times the composite's total effect on the target, in score
        points; a higher-order construct's items are those of its first-order
        constructs. An item is listed once (under the first driver it belongs to).
        """
        target = self.resolve_target(target)
        t = self._latent(target)
        drivers = self.drivers_of(target)
        if not drivers:
            raise DriverError(f"no construct of the model has a path to {target!r}")
        if level not in ("construct", "item"):
            raise DriverError(f"level must be 'construct' or 'item', got {level!r}")
        k = self.score_factor()
        names, cols = [], []
        for d in drivers:
            j = self.latents.index(d)
            imp = self.total[..., t, j] * k[..., t] / k[..., j]
            if level == "construct":
                names.append(d)
                cols.append(imp)
            elif level == "item":
                items, w = self.construct_items(d)
                for i, item in enumerate(items):
                    if item not in names:
                        names.append(item)
                        cols.append(imp * w[..., i])
        if not cols:
            raise DriverError(f"no driver of {target!r} has items of its own")
        return names, np.stack(cols, axis=-1)


def sem_flags(result) -> dict:
    """``{"converged": bool, "improper": [messages]}`` of a fitted SEM.

    ``converged`` is the result's convergence diagnostics (``result.diagnostics.ok``);
    ``improper`` the messages of ``result.improper`` when the SEM reports an improper
    solution (results without that check count as proper).
    """
    converged = bool(result.diagnostics.ok)
    improper = getattr(result, "improper", None)
    messages = [] if improper is None or improper.ok else [str(m) for m in improper.messages()]
    if improper is not None and not improper.ok and not messages:
        messages = ["the solution is improper"]
    return {"converged": converged, "improper": messages}


def _item_scales(result, study) -> dict[str, tuple[float, float]]:
    """Answer scales of the model's items: the study's, else the range seen in the data.

    An observed variable the study does not declare as an item (a covariate such as
    tenure given to the SEM by its column) takes the range of its values in the fitted
    data, with a warning saying so: its 0-100 score is then relative to that range.
    """
    scales, from_data = {}, []
    known = study.all_items
    for i in result.structure.items:
        if i in known:
            scales[i] = (known[i].scale.min, known[i].scale.max)
            continue
        data = result.model.data  # the fitted data (SEMData), standardized per item
        j = list(data.items).index(i)
        raw = data.y[:, j] * data.scale[j] + data.center[j]
        lo, hi = float(np.nanmin(raw)), float(np.nanmax(raw))
        if not hi > lo:
            raise DriverError(f"{i!r} takes one value in the data: it has no scale to score")
        scales[i] = (lo, hi)
        from_data.append(f"{i} ({lo:g}-{hi:g})")
    if from_data:
        warnings.warn(
            "driver analyses: no answer scale in the study for "
            + ", ".join(from_data)
            + "; their 0-100 scores use the range of their values in the fitted data",
            UserWarning,
            stacklevel=3,
        )
    return scales


def _checked_flags(flags, where: str) -> dict:
    """Flags as ``{"converged": bool, "improper": [str]}``, or a DriverError naming ``where``."""
    if not isinstance(flags, dict) or not isinstance(flags.get("improper", []), list):
        raise DriverError(
            f"{where}: expected {{'converged': bool, 'improper': [messages]}}, got {flags!r}"
        )
    return {
        "converged": bool(flags.get("converged", True)),
        "improper": [str(m) for m in flags.get("improper", [])],
    }


# ----------------------------------------------------------------------------- performance
def _score_columns(
    frame: pd.DataFrame, model: DriverModel, drivers: list[str], level: str
) -> dict[str, np.ndarray]:
    """0-100 scores per respondent: constructs (mean of rescaled items) or items.

    A composite's or higher-order construct's score is the weighted mean of its members'
    scores (posterior-mean :meth:`DriverModel.member_weights`, over the members
    answered); at the item level, the items of :meth:`DriverModel.construct_items`.
    """
    out = {}
    for d in drivers:
        if d in model.composites or d in model.higher_order:
            if level == "item":
                items, _ = model.construct_items(d)
                out |= _score_columns(frame, model, items, "item")
                continue
            members, w = model.member_weights(d)
            w = w.mean(axis=(0, 1))
            parts = _score_columns(frame, model, members, "construct")
            values = np.column_stack([parts[m] for m in members])
            answered = np.isfinite(values)
            norm = (np.abs(w) * answered).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[d] = np.where(norm > 0, np.nansum(values * w, axis=1) / norm, np.nan)
            continue
        items = model.items.get(d) or [d]
        rescaled = np.column_stack(
            [
                100
                * (frame[i].to_numpy(dtype=float) - model.scales[i][0])
                / (model.scales[i][1] - model.scales[i][0])
                for i in items
            ]
        )
        if level == "item":
            for j, item in enumerate(items):
                out[item] = rescaled[:, j]
        else:
            # respondents who answered none of the items get NaN (skipped later), not a warning
            answered = np.isfinite(rescaled).sum(axis=1)
            total = np.nansum(rescaled, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[d] = np.where(answered > 0, total / answered, np.nan)
    return out


def driver_priorities(
    model: DriverModel,
    data,
    *,
    target: str | None = None,
    level: str = "construct",
    segment: str | None = "default",
    seed: int = config.DEFAULT_SEED,
    hdi_prob: float = config.HDI_PROB,
) -> pd.DataFrame:
    """The Bayesian importance-performance map, per segment and wave.

    Parameters
    ----------
    model : DriverModel
        Posterior draws of the fitted structural model.
    data : SurveyData
        The responses (for performance, per segment and wave, weights respected).
    target : str, optional
        The target construct (default: the study's target, ``study.target``).
    level : {"construct", "item"}
        Drivers are constructs, or the items of the driver constructs (importance by
        measurement weight, quadrants decided among the items).
    segment : str or None
        Segment column (default: the model's group column, else the study's first).
    seed : int
        Seed of the performance draws.
    hdi_prob : float
        Interval mass.

    Returns
    -------
    pandas.DataFrame
        One row per driver x segment x wave: ``driver, construct, level, target,
        segment, wave, n``, ``weight`` (the item's rescaled weight in its construct,
        posterior mean; 1 for a construct), the estimates ``importance`` and
        ``performance`` (each with ``_sd``, ``_hdi_low``, ``_hdi_high``),
        ``p_fix_first, p_keep_up, p_possible_overkill, p_low_priority, quadrant`` (the
        most probable one), ``small_cell`` and the model's flags ``model_converged``
        (bool) and ``model_improper`` (its improper-solution messages, ``"; "``-joined;
        empty when proper).

    Raises
    ------
    DriverError
        When no target is given and the study has none, or for an unknown target.
    """
    study = data.study
    target = model.resolve_target(target, study)
    if segment == "default":
        segment = model.group_column or (
            study.segment_columns[0] if study.segment_columns else None
        )
    names, imp = model.importance(target, level=level)
    construct_of, weight_of = {}, {}
    for d in model.drivers_of(target):
        if level == "item":
            items, w = model.construct_items(d)
            for i, item in enumerate(items):
                if item not in construct_of:
                    construct_of[item] = d
                    weight_of[item] = float(w[..., i].mean())
        else:
            construct_of[d], weight_of[d] = d, 1.0
    weight = [weight_of[nm] for nm in names]
    cells = segment_wave_cells(data, segment, study.columns.wave)
    seg_labels, wave_labels = cells.segments, cells.waves
    n_seg, n_wave = cells.shape
    n_cells = cells.n_cells
    n_draws = model.n_draws
    rng = np.random.default_rng(seed)
    rows_idx = cells.rows
    w = data.weights[rows_idx]
    scores = _score_columns(data.frame, model, list(dict.fromkeys(construct_of.values())), level)
    scores = {name: scores[name] for name in names}
    perf = np.empty((n_cells, n_draws, len(names)))
    counts = np.zeros((n_cells, len(names)), dtype=int)
    for j, name in enumerate(names):
        d, n, _ = weighted_mean_draws(scores[name][rows_idx], w, cells.cell, n_cells, n_draws, rng)
        perf[:, :, j] = d
        counts[:, j] = n
    # importance per segment: the segment's group, or everyone's model
    seg_imp = np.empty((n_seg, n_draws, len(names)))
    for i, seg in enumerate(seg_labels):
        g = model._group(seg)
        seg_imp[i] = imp.mean(axis=1) if g < 0 else imp[:, g]
    out = []
    for i, seg in enumerate(seg_labels):
        for t, wave in enumerate(wave_labels):
            cell = i * n_wave + t
            imp_d, perf_d = seg_imp[i], perf[cell]  # (draw, driver)
            high_i = imp_d > np.median(imp_d, axis=-1, keepdims=True)
            low_p = perf_d < np.median(perf_d, axis=-1, keepdims=True)
            valid = ~np.isnan(perf_d).any(axis=-1)
            with np.errstate(invalid="ignore"):
                probs = {
                    "p_fix_first": (high_i & low_p)[valid].mean(axis=0),
                    "p_keep_up": (high_i & ~low_p)[valid].mean(axis=0),
                    "p_possible_overkill": (~high_i & ~low_p)[valid].mean(axis=0),
                    "p_low_priority": (~high_i & low_p)[valid].mean(axis=0),
                }
            table = pd.DataFrame(
                {
                    "driver": names,
                    "construct": [construct_of[nm] for nm in names],
                    "level": level,
                    "target": target,
                    "segment": seg,
                    "wave": wave,
                    "n": counts[cell],
                    "weight": weight,
                    **summarize_draws(imp_d.T, hdi_prob, quantity="importance"),
                    **summarize_draws(perf_d.T, hdi_prob, quantity="performance"),
                    **probs,
                }
            )
            out.append(table)
    result = pd.concat(out, ignore_index=True)
    pcols = ["p_fix_first", "p_keep_up", "p_possible_overkill", "p_low_priority"]
    best = result[pcols].fillna(-1).to_numpy().argmax(axis=1)
    result["quadrant"] = np.where(
        result[pcols].isna().all(axis=1), "", np.asarray(QUADRANTS, dtype=object)[best]
    )
    result["small_cell"] = result["n"] < study.min_cell_size
    for column, value in model.flag_columns().items():
        result[column] = value
    return result


# ----------------------------------------------------------------------------- what-if
@dataclass
class WhatIf:
    """The predicted effect of shifting drivers, as draws and as a summary table.

    Attributes
    ----------
    draws : dict
        ``target_score``, ``top2_box`` and (when the model measures NPS) ``nps``:
        draws of the change, each of shape (draw,).
    table : pandas.DataFrame
        ``outcome, label, change, change_sd, change_hdi_low, change_hdi_high,
        p_increase`` per outcome.
    shifts : dict
        The shifts applied (driver -> points).
    target : str
        The construct whose outcomes were predicted.
    flags : dict
        The driver model's :attr:`DriverModel.flags` (did its SEM converge, is it
        improper).
    """

    draws: dict[str, np.ndarray]
    table: pd.DataFrame
    shifts: dict[str, float]
    target: str = ""
    flags: dict = field(default_factory=lambda: {"converged": True, "improper": []})


def _top_share(values: np.ndarray, weights: np.ndarray, cut: float) -> float:
    ok = ~np.isnan(values)
    return float(np.sum(weights[ok] * (values[ok] >= cut)) / np.sum(weights[ok]))


def what_if(
    model: DriverModel,
    shifts: dict[str, float],
    *,
    target: str | None = None,
    data=None,
    baseline: dict[str, float] | None = None,
    mode: str = "shift",
    segment: str = config.EVERYONE,
    nps_item: str | None = "default",
    at: dict[str, float] | None = None,
    hdi_prob: float = config.HDI_PROB,
) -> WhatIf:
    """Predict what shifting drivers would buy, from stored posterior draws.

    Parameters
    ----------
    model : DriverModel
        Posterior draws of the structural model.
    shifts : dict
        Driver -> amount. A construct moves by score points (0-100); an item by points
        on its own answer scale (moving its construct's score by its rescaled weight
        times its 0-100 points). With ``mode="set"`` the amount is the level to reach.
    target : str, optional
        The construct whose score, top-2-box share and NPS are predicted (default: the
        study's target when ``data`` is given, else the model's :attr:`~DriverModel.target`).
    data : SurveyData, optional
        Current answers: needed for ``mode="set"``, for checking that a shift stays on
        the scale, and for the top-2-box and NPS baselines (without data the
        baselines default to ``baseline``).
    baseline : dict, optional
        Current levels, overriding what ``data`` gives: driver -> score or item mean,
        ``"top2_box"`` -> current share of the target's items (0-1) and ``"promoters"``
        / ``"detractors"`` -> current NPS shares (0-1).
    mode : {"shift", "set"}
        Shift by the amounts, or set the drivers to them.
    segment : str
        Whose effects to use (a group of a grouped model; ``config.EVERYONE``
        otherwise, which averages a grouped model's groups).
    nps_item : str or None
        The NPS item among the target's items (default: the study's ``kpis.nps`` when it
        measures the target; without data, the target's one 0-10 item); None leaves NPS out.
    at : dict, optional
        For a model with interactions (``Y ~ X + Z + X:Z``): where the customers stand,
        construct -> score points above (or below) its mean (default: every construct at
        its mean). A shift of ``X`` by ``dX`` moves ``Y`` by ``(b_X + gamma Z) dX``,
        with ``Z`` its level here; shifting ``X`` and ``Z`` together adds
        ``gamma dX dZ``: shifts propagate through the structural equations with the
        product terms (:func:`propagate_shifts`).
    hdi_prob : float
        Interval mass.

    Returns
    -------
    WhatIf
        With the model's flags (``WhatIf.flags``).

    Raises
    ------
    DriverError
        For a driver that is not in the model, a shift that leaves the scale, a
        missing baseline, or no target.
    """
    target = model.resolve_target(target, data.study if data is not None else None)
    if mode not in ("shift", "set"):
        raise DriverError(f"mode must be 'shift' or 'set', got {mode!r}")
    if not shifts:
        raise DriverError("give at least one driver to shift, e.g. {'Experience': 5}")
    t = model._latent(target)
    g = model._group(segment)
    total = model.total.mean(axis=1) if g < 0 else model.total[:, g]
    loadings = model.loadings.mean(axis=1) if g < 0 else model.loadings[:, g]
    item_sd = model.item_sd.mean(axis=1) if g < 0 else model.item_sd[:, g]
    k = model.score_factor()
    k = k.mean(axis=1) if g < 0 else k[:, g]
    current = _current_levels(model, data, segment, shifts)
    if baseline:
        current.update(baseline)
    delta = np.zeros((model.n_draws, len(model.latents)))
    applied = {}
    stand_ins = set(model.indicator_stand_ins())
    for driver, amount in shifts.items():
        amount = float(amount)
        if driver in model.latents and driver not in stand_ins:
            j = model.latents.index(driver)
            lo, hi = 0.0, 100.0
            unit = "score points"
        else:
            owner = model.item_owner(driver, target)
            j = model.latents.index(owner)
            lo, hi = model.scales[driver]
            unit = "scale points"
        now = current.get(driver)
        if mode == "set":
            if now is None:
                raise DriverError(
                    f"setting {driver!r} to a level needs its current level: pass data= or baseline="
                )
            amount = amount - now
        if now is not None and not lo - 1e-9 <= now + amount <= hi + 1e-9:
            raise DriverError(
                f"shifting {driver!r} by {amount:+.2f} {unit} leaves its scale: "
                f"{now:.2f} -> {now + amount:.2f}, outside {lo:g}-{hi:g}"
            )
        applied[driver] = amount
        if unit == "score points":
            delta[:, j] += amount / k[:, j]
        else:
            names, w = model.construct_items(model.latents[j])
            w = w.mean(axis=1) if g < 0 else w[:, g]
            rng = model.scales[driver][1] - model.scales[driver][0]
            weight = w[:, names.index(driver)]
            delta[:, j] += (100 * amount / rng * weight) / k[:, j]
    level = np.zeros_like(delta)
    for name, points in (at or {}).items():
        level[:, model._latent(name)] = float(points) / k[:, model.latents.index(name)]
    gamma = None
    if model.interactions:
        gamma = model.gamma.mean(axis=1) if g < 0 else model.gamma[:, g]
    d_eta = propagate_shifts(model, total, delta, gamma=gamma, level=level)[:, t]
    draws = {"target_score": k[:, t] * d_eta}
    # a composite's items make it, they do not reflect it: its score is the one outcome
    target_items = [] if target in model.composites else model.items[target]
    idx = [model.item_order.index(i) for i in target_items]
    shift_sd = loadings[:, idx, t] * d_eta[:, None] / item_sd[:, idx]  # (draw, item) in SDs
    if nps_item == "default":
        nps_item = _study_nps(model, data, target_items)
    box_items = [i for i in target_items if i != nps_item]
    if box_items:
        shares = np.array([current.get(f"top2_box:{i}", np.nan) for i in box_items])
        if "top2_box" in current:
            shares = np.full(len(box_items), current["top2_box"])
        if np.isnan(shares).any():
            raise DriverError(
                "the top-2-box baseline is unknown: pass data= or baseline={'top2_box': share}"
            )
        cols = [target_items.index(i) for i in box_items]
        now = shares.mean()
        new = ndtr(ndtri(np.clip(shares, 1e-6, 1 - 1e-6)) + shift_sd[:, cols]).mean(axis=1)
        draws["top2_box"] = 100 * (new - now)
    if nps_item is not None and nps_item in target_items:
        p0, d0 = current.get("promoters"), current.get("detractors")
        if p0 is None or d0 is None:
            raise DriverError(
                "the NPS baseline is unknown: pass data= or baseline={'promoters': .., 'detractors': ..}"
            )
        s = shift_sd[:, target_items.index(nps_item)]
        p1 = ndtr(ndtri(np.clip(p0, 1e-6, 1 - 1e-6)) + s)
        d1 = ndtr(ndtri(np.clip(d0, 1e-6, 1 - 1e-6)) - s)
        draws["nps"] = 100 * ((p1 - d1) - (p0 - d0))
    name = data.study.label_of(target) if data is not None else target
    labels = {
        "target_score": f"{name} score (0-100)",
        "top2_box": f"{name} top-2-box (%)",
        "nps": "NPS",
    }
    rows = []
    for name, d in draws.items():
        s = summarize_draws(d, hdi_prob, quantity="change")
        rows.append(
            {
                "outcome": name,
                "label": labels[name],
                **{k: float(v) for k, v in s.items()},
                # changes are in points (0-100, %): below 1e-9 is rounding, not an increase
                "p_increase": float((d > 1e-9).mean()),
            }
        )
    return WhatIf(
        draws=draws,
        table=pd.DataFrame(rows),
        shifts=applied,
        target=target,
        flags={"converged": model.flags["converged"], "improper": list(model.flags["improper"])},
    )


def propagate_shifts(
    model: DriverModel,
    total: np.ndarray,
    delta: np.ndarray,
    *,
    gamma: np.ndarray | None = None,
    level: np.ndarray | None = None,
) -> np.ndarray:
    """Change of every latent when ``delta`` is added to the structural equations.

    Without interactions, ``d_eta = (I - B)^-1 delta``. With product terms
    ``Y ~ ... + gamma X:Z``, the change of ``Y`` gains
    ``gamma * ((X0 + dX)(Z0 + dZ) - X0 Z0) = gamma (X0 dZ + Z0 dX + dX dZ)`` with ``X0, Z0``
    the levels the customers start from (``level``; 0 is the mean). The equations are
    solved by substitution, one pass per latent (exact for a recursive model).

    Parameters
    ----------
    model : DriverModel
        For its :attr:`~DriverModel.interactions`.
    total : numpy.ndarray
        ``(I - B)^-1`` per draw, shape (draw, latent, latent).
    delta : numpy.ndarray
        Shifts of the equations in latent units, shape (draw, latent).
    gamma : numpy.ndarray, optional
        Product coefficients, shape (draw, interaction).
    level : numpy.ndarray, optional
        Starting levels in latent units, shape (draw, latent) (default: 0, the means).

    Returns
    -------
    numpy.ndarray
        Shape (draw, latent).
    """
    d_eta = np.einsum("sij,sj->si", total, delta)
    if not model.interactions or gamma is None:
        return d_eta
    level = np.zeros_like(delta) if level is None else level
    parts = [tuple(model.latents.index(v) for v in term) for term in model.interactions]
    for _ in range(len(model.latents)):
        extra = np.zeros_like(delta)
        for q, (y, x, z) in enumerate(parts):
            x0, z0 = level[:, x], level[:, z]
            extra[:, y] += gamma[:, q] * ((x0 + d_eta[:, x]) * (z0 + d_eta[:, z]) - x0 * z0)
        new = np.einsum("sij,sj->si", total, delta + extra)
        if np.allclose(new, d_eta, rtol=0, atol=1e-12):
            return new
        d_eta = new
    return d_eta


def _study_nps(model: DriverModel, data, target_items: list[str]) -> str | None:
    """The NPS item among the target's items: the study's ``kpis.nps``, else a 0-10 item."""
    if data is not None:
        nps = data.study.kpis.nps
        return nps if nps in target_items else None
    zero_to_ten = [i for i in target_items if tuple(model.scales[i]) == (0, 10)]
    return zero_to_ten[0] if len(zero_to_ten) == 1 else None


def _current_levels(
    model: DriverModel, data, segment: str, shifts: dict[str, float]
) -> dict[str, float]:
    """Current weighted levels in the segment: driver scores, item means, target shares."""
    if data is None:
        return {}
    frame, w = data.frame, data.weights
    seg_col = model.group_column or (
        data.study.segment_columns[0] if data.study.segment_columns else None
    )
    if segment != config.EVERYONE and seg_col:
        mask = (frame[seg_col] == segment).to_numpy()
        frame, w = frame[mask], w[mask]
    if len(frame) == 0:
        raise DriverError(f"no respondents in segment {segment!r}")
    out: dict[str, float] = {}
    stand_ins = set(model.indicator_stand_ins())
    for driver in shifts:
        if driver in model.latents and driver not in stand_ins:
            score = _score_columns(frame, model, [driver], "construct")[driver]
            ok = ~np.isnan(score)
            out[driver] = float(np.average(score[ok], weights=w[ok]))
        elif driver in model.scales:
            x = frame[driver].to_numpy(dtype=float)
            ok = ~np.isnan(x)
            out[driver] = float(np.average(x[ok], weights=w[ok]))
    for lat_items in model.items.values():
        for item in lat_items:
            lo, hi = model.scales[item]
            if item == data.study.kpis.nps:
                x = frame[item].to_numpy(dtype=float)
                out["promoters"] = _top_share(x, w, 9)
                out["detractors"] = 1 - _top_share(x, w, 7)
            else:
                out[f"top2_box:{item}"] = _top_share(frame[item].to_numpy(dtype=float), w, hi - 1)
    return out


def what_if_baseline(
    model: DriverModel, data, *, target: str | None = None, min_cell_size: int | None = None
) -> dict:
    """Current levels a what-if starts from, per segment: what dashboards show beside sliders.

    Parameters
    ----------
    model : DriverModel
        The structural model's draws (for drivers, items and scales).
    data : SurveyData
        The responses (weights respected).
    target : str, optional
        The target construct (default: the study's target).
    min_cell_size : int, optional
        Disclosure control (default: the study's ``min_cell_size``): a segment with
        fewer respondents is withheld, and with it the next smallest segments
        (complementary, :func:`cxlib.insights.cells.withheld_segments`), so that
        the everyone entry minus the segments shown gives no withheld segment's size
        or levels back.

    Returns
    -------
    dict
        ``target``, ``target_label`` (the spec's label), ``flags`` (the model's
        :attr:`~DriverModel.flags`), ``segment_column`` and ``segments``: segment
        (``config.EVERYONE`` first) ->
        ``n`` (respondents), ``drivers`` (driver -> current 0-100 score),
        ``top2_box`` (mean top-2-box share of the target's items other than NPS,
        0-1) and, when the study's NPS item measures the target, ``promoters`` and
        ``detractors`` (shares, 0-1). Aggregates only. A withheld segment's entry
        has ``n`` 0, every level None and ``withheld`` (``"small"`` or
        ``"complementary"``).
    """
    target = model.resolve_target(target, data.study)
    drivers = model.drivers_of(target)
    target_items = [] if target in model.composites else model.items[target]
    nps = data.study.kpis.nps if data.study.kpis.nps in target_items else None
    column = model.group_column or (
        data.study.segment_columns[0] if data.study.segment_columns else None
    )
    segments = [config.EVERYONE]
    if column:
        segments += sorted(data.frame[column].dropna().astype(str).unique())
    out = {
        "target": target,
        "target_label": data.study.label_of(target),
        "flags": {"converged": model.flags["converged"], "improper": list(model.flags["improper"])},
        "segment_column": column,
        "segments": {},
    }
    for seg in segments:
        levels = _current_levels(model, data, seg, {d: 0.0 for d in drivers})
        n = (
            len(data.frame)
            if seg == config.EVERYONE
            else int((data.frame[column].astype(str) == seg).sum())
        )
        boxes = [levels[f"top2_box:{i}"] for i in target_items if i != nps]
        entry = {
            "n": n,
            "drivers": {d: levels[d] for d in drivers},
            "top2_box": float(np.mean(boxes)) if boxes else None,
        }
        if nps is not None:
            entry["promoters"], entry["detractors"] = levels["promoters"], levels["detractors"]
        out["segments"][seg] = entry
    limit = data.study.min_cell_size if min_cell_size is None else min_cell_size
    sizes = {seg: entry["n"] for seg, entry in out["segments"].items()}
    for seg, why in withheld_segments(sizes, limit).items():
        entry = out["segments"].get(seg)
        if entry is None:
            continue
        entry["n"] = 0
        entry["drivers"] = dict.fromkeys(entry["drivers"])
        for key in ("top2_box", "promoters", "detractors"):
            if key in entry:
                entry[key] = None
        entry["withheld"] = why
    return out


def what_if_examples(
    model: DriverModel,
    data,
    *,
    target: str | None = None,
    shift: float = 5.0,
    hdi_prob: float = config.HDI_PROB,
) -> pd.DataFrame:
    """What raising each driver by ``shift`` score points would buy, per segment.

    Parameters
    ----------
    model : DriverModel
        The structural model's draws.
    data : SurveyData
        The responses (current levels).
    target : str, optional
        The target construct (default: the study's target).
    shift : float
        Score points each driver is raised by.
    hdi_prob : float
        Interval mass.

    Returns
    -------
    pandas.DataFrame
        :attr:`WhatIf.table` rows for each driver x segment (everyone and the
        segments of :func:`what_if_baseline`), with ``driver``, ``shift`` and
        ``segment`` columns in front and the model's flags ``model_converged`` and
        ``model_improper`` at the end. A shift that would leave the 0-100 scale is
        left out.
    """
    target = model.resolve_target(target, data.study)
    baseline = what_if_baseline(model, data, target=target)
    frames = []
    for seg in baseline["segments"]:
        for driver in model.drivers_of(target):
            try:
                result = what_if(
                    model,
                    {driver: shift},
                    target=target,
                    data=data,
                    segment=seg,
                    hdi_prob=hdi_prob,
                )
            except DriverError:
                continue
            table = result.table.copy()
            table.insert(0, "segment", seg)
            table.insert(0, "shift", shift)
            table.insert(0, "driver", driver)
            frames.append(table)
    flags = model.flag_columns()
    if not frames:
        return pd.DataFrame(
            columns=["driver", "shift", "segment", "outcome", "label", "change", "change_sd",
                     *interval_columns("change"), "p_increase", *flags]
        )  # fmt: skip
    out = pd.concat(frames, ignore_index=True)
    for column, value in flags.items():
        out[column] = value
    return out
