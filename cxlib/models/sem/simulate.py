r"""Simulate respondents from lavaan syntax and true values on the standardized scale.

:func:`simulate_sem` reads a model as users write it (``=~``, ``<~``, ``~`` with
``X:Z`` products, ``~~``, ``:=``) and draws data whose true standardized solution is
known, so that tests and benchmarks can compare ``result.estimates(standardized=True)``
with the truth. Every latent and every structural observed variable has variance 1.

How each kind is generated:

* **Reflective constructs** ``F =~ y1 + y2``: ``y = loading * F + e`` with
  ``Var(e) = 1 - loading**2`` (several loadings on one item: the residual makes the
  item's variance 1). ``loading`` is the standardized loading.
* **Composites** ``F <~ x1 + x2 + x3``: the indicators are correlated normals with
  unit variance (correlation ``x1 ~~ x2``, default :data:`INDICATOR_CORRELATION`) and
  ``F = w' x`` exactly, with the weights rescaled so that ``Var(F) = w' R w = 1``. The
  weights in ``values`` and in the truth are therefore **standardized weights**: the
  weights of the standardized indicators in the standardized composite, as lavaan's
  ``std.all`` reports ``<~`` and PLS reports outer weights. The indicators relate to the
  rest of the model only through ``F`` (drawn as ``x = R w F + e`` with
  ``Var(e) = R - R w w' R``), so a composite can be exogenous (``F ~~ G`` is the
  correlation of two composites) or an outcome (``F ~ X``: the composite itself is
  regressed on ``X``, as in PLS path models).
* **Interactions and quadratic terms** ``Y ~ X + Z + X:Z``: ``Y`` gets
  ``gamma * (X Z - E[X Z])``, the product of the standardized parts, centred. The
  residual variance of ``Y`` makes ``Var(Y) = 1``; it is exact where the parts are
  jointly normal (``Var(XZ) = Var(X) Var(Z) + Cov(X, Z)**2``, Isserlis' theorem for
  every covariance of products) and otherwise (dummies or products of products in a
  product) from a Monte Carlo draw of 1,000,000 respondents. The truth's
  ``Y ~ X:Z`` is ``gamma``: the coefficient of the product of the standardized parts
  (the product itself has variance ``1 + r**2``, not 1).
* **Higher-order reflective** ``g =~ F1 + F2 + F3``: ``F1 = loading * g + d`` with
  ``Var(d) = 1 - loading**2``.
* **Observed variables** in regressions (``Loyalty ~ tenure``, ``cusa ~ COMP``):
  continuous by default (``covariates`` gives a raw mean and standard deviation, e.g.
  tenure in years), or 0/1 dummies (``dummies`` gives the share of ones). A dummy
  predictor is ``(D - p) / sqrt(p (1 - p))`` on the standardized scale; a dummy
  outcome is a probit ``D = 1[D* > c]`` whose coefficients are scaled so that the
  truth is the standardized *linear* coefficient a linear SEM estimates (exact for
  normal predictors, Stein's lemma); such a dummy may not predict anything itself.

Defaults for anything ``values`` does not give: loadings :data:`LOADING` (also for
second-order loadings), paths :data:`PATH`, interaction and quadratic coefficients
:data:`INTERACTION`, equal composite weights (then standardized), indicator
correlations :data:`INDICATOR_CORRELATION` within a composite, and correlations 0
between exogenous variables.

>>> from cxlib.models.sem.simulate import simulate_sem
>>> sim = simulate_sem("F <~ x1 + x2\nY =~ y1 + y2 + y3\nY ~ F", {"Y ~ F": 0.5}, n=500, seed=1)
>>> sim.data.shape
(500, 5)
>>> float(sim.truth.query("op == '~'")["value"].iloc[0])
0.5
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from cxlib.errors import CxError
from cxlib.syntax import parse_model

__all__ = [
    "CORPORATE_REPUTATION_MODEL",
    "INDICATOR_CORRELATION",
    "INTERACTION",
    "LOADING",
    "PATH",
    "SimulatedSEM",
    "corporate_reputation",
    "simulate_sem",
]

#: default standardized loading of an item (and of a first-order on a second-order factor)
LOADING = 0.7
#: default standardized path coefficient
PATH = 0.3
#: default coefficient of a product term (``Y ~ X:Z``, ``Y ~ X:X``)
INTERACTION = 0.2
#: default correlation between two indicators of one composite
INDICATOR_CORRELATION = 0.3
#: respondents of the Monte Carlo draw that sets residual variances where no closed form applies
MONTE_CARLO_N = 1_000_000

_KEY = re.compile(
    r"^\s*([A-Za-z_.][\w.]*)\s*(=~|<~|~~|~)\s*([A-Za-z_.][\w.]*)\s*(?::\s*([A-Za-z_.][\w.]*))?\s*$"
)


class SimulatedSEM(NamedTuple):
    """Simulated respondents with the truth they were drawn from.

    Attributes
    ----------
    data : pandas.DataFrame
        One row per respondent: items, composite indicators and observed variables.
    truth : pandas.DataFrame
        ``lhs, op, rhs, value``: the true standardized solution (loadings, standardized
        weights, paths, interaction coefficients, correlations of exogenous variables,
        residual variances, defined parameters).
    scores : pandas.DataFrame
        The true standardized scores of every latent and structural observed variable.
    """

    data: pd.DataFrame
    truth: pd.DataFrame
    scores: pd.DataFrame

    def value(self, term: str) -> float:
        """The true standardized value of one term, e.g. ``"Y ~ X:Z"`` or ``"F <~ x1"``."""
        lhs, op, rhs = _split_key(term)
        rows = self.truth[
            (self.truth["op"] == op)
            & (
                ((self.truth["lhs"] == lhs) & (self.truth["rhs"].isin(_rhs_spellings(rhs))))
                | ((op == "~~") & (self.truth["lhs"] == rhs) & (self.truth["rhs"] == lhs))
            )
        ]
        if rows.empty:
            raise KeyError(f"{term!r} is not a term of the simulated model")
        return float(rows["value"].iloc[0])

    def compare(self, estimates: pd.DataFrame) -> pd.DataFrame:
        """The truth beside the estimates (``lhs, op, rhs`` matched; ``X:Z`` either order).

        Parameters
        ----------
        estimates : pandas.DataFrame
            A table with ``lhs, op, rhs, mean`` (and optionally ``sd, hdi_low, hdi_high``),
            e.g. ``result.estimates(standardized=True)``.

        Returns
        -------
        pandas.DataFrame
            ``lhs, op, rhs, value, mean, error`` (with ``sd``, and ``covered`` when the
            estimates have intervals), one row per true term that the estimates report.
        """
        est = estimates.copy()
        est["key"] = [_canonical(a, o, b) for a, o, b in zip(est.lhs, est.op, est.rhs, strict=True)]
        truth = self.truth.copy()
        truth["key"] = [
            _canonical(a, o, b) for a, o, b in zip(truth.lhs, truth.op, truth.rhs, strict=True)
        ]
        keep = ["key", "mean"] + [c for c in ("sd", "hdi_low", "hdi_high") if c in est]
        out = truth.merge(est[keep].drop_duplicates("key"), on="key", how="inner")
        out["error"] = out["mean"] - out["value"]
        if "hdi_low" in out:
            out["covered"] = (out["hdi_low"] <= out["value"]) & (out["value"] <= out["hdi_high"])
        return out.drop(columns="key")


def _split_key(term: str) -> tuple[str, str, str]:
    match = _KEY.match(term)
    if not match:
        raise CxError(
            f"{term!r}: a true value is keyed by a lavaan term such as 'Y ~ X', 'F =~ x1', "
            "'F <~ x1', 'X ~~ Z' or 'Y ~ X:Z'"
        )
    lhs, op, rhs, second = match.groups()
    if second is not None:
        if op != "~":
            raise CxError(f"{term!r}: a product 'X:Z' is only a predictor of '~'")
        rhs = f"{rhs}:{second}"
    return lhs, op, rhs


def _rhs_spellings(rhs: str) -> list[str]:
    if ":" in rhs:
        a, b = rhs.split(":")
        return [f"{a}:{b}", f"{b}:{a}"]
    return [rhs]


def _canonical(lhs: str, op: str, rhs: str) -> tuple[str, str, str]:
    if op == "~~":
        a, b = sorted((lhs, rhs))
        return a, op, b
    if ":" in rhs:
        rhs = ":".join(sorted(rhs.split(":")))
    return lhs, op, rhs


# ---------------------------------------------------------------------------- the plan
@dataclass
class _Node:
    """One variable of the data-generating process (latent, item or observed)."""

    name: str
    kind: str  # "latent", "composite", "item", "observed"
    parents: list[tuple[str, float, str]] = field(default_factory=list)  # (name, coef, op)
    products: list[tuple[str, str, float]] = field(default_factory=list)  # (a, b, gamma)
    residual: float | None = None  # residual variance (endogenous)
    composite: str | None = None  # for a composite indicator: the composite it forms
    dummy: float | None = None  # share of ones for a 0/1 variable
    threshold: float = 0.0  # for a dummy outcome: D = 1[D* > threshold]


@dataclass
class _Plan:
    nodes: dict[str, _Node]
    order: list[str]
    exogenous: list[str]
    exo_corr: np.ndarray
    composites: dict[str, tuple[list[str], np.ndarray, np.ndarray]]  # F -> (ind, w, R)
    product_mean: dict[tuple[str, int], float] = field(default_factory=dict)


def _build_plan(
    text: str,
    values: Mapping[str, float],
    dummies: Mapping[str, float],
    loading: float,
    path: float,
    interaction: float,
    indicator_correlation: float,
) -> tuple[_Plan, object, dict[tuple[str, str, str], float]]:
    parsed = parse_model(text)
    given: dict[tuple[str, str, str], float] = {}
    for key, val in values.items():
        given[_canonical(*_split_key(key))] = float(val)
    used: set[tuple[str, str, str]] = set()

    def take(lhs: str, op: str, rhs: str, default: float) -> float:
        key = _canonical(lhs, op, rhs)
        if key in given:
            used.add(key)
            return given[key]
        return default

    latents = set(parsed.latents)
    composites = parsed.composites
    nodes: dict[str, _Node] = {}

    def node(name: str) -> _Node:
        if name not in nodes:
            kind = "composite" if name in composites else "latent" if name in latents else "item"
            nodes[name] = _Node(name, kind)
        return nodes[name]

    for t in parsed.terms:
        if t.op == "=~":
            lam = take(t.lhs, "=~", t.rhs, loading)
            if not -1 < lam < 1:
                raise CxError(f"'{t.lhs} =~ {t.rhs}': a standardized loading is in (-1, 1)")
            node(t.lhs)
            node(t.rhs).parents.append((t.lhs, lam, "=~"))
        elif t.op == "~":
            child = node(t.lhs)
            if t.is_interaction:
                a, b = t.parts
                node(a)
                node(b)
                child.products.append((a, b, take(t.lhs, "~", t.rhs, interaction)))
            else:
                node(t.rhs)
                child.parents.append((t.rhs, take(t.lhs, "~", t.rhs, path), "~"))
        elif t.op == "<~":
            node(t.lhs)
            node(t.rhs)
    for name in nodes:
        if nodes[name].kind == "item" and any(
            name in (t.lhs, *t.parts) for t in parsed.terms if t.op in ("~", "<~")
        ):
            nodes[name].kind = "observed"
    blocks: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    for comp, indicators in composites.items():
        for x in indicators:
            other = [c for c, ind in composites.items() if c != comp and x in ind]
            if nodes[x].parents or nodes[x].products or other:
                raise CxError(
                    f"{x!r} forms the composite {comp!r} and is also "
                    + (f"an indicator of {other[0]!r}" if other else "an outcome of a regression")
                    + "; the simulator draws a composite's indicators from the composite alone"
                )
            nodes[x].composite = comp
        k = len(indicators)
        corr = np.eye(k)
        for i in range(k):
            for j in range(i + 1, k):
                r = take(indicators[i], "~~", indicators[j], indicator_correlation)
                corr[i, j] = corr[j, i] = r
        if np.linalg.eigvalsh(corr).min() <= 0:
            raise CxError(f"the indicator correlations of {comp!r} are not positive definite")
        raw = np.array([take(comp, "<~", x, 1.0) for x in indicators])
        scale = float(raw @ corr @ raw)
        if scale <= 0:
            raise CxError(f"the weights of {comp!r} give the composite no variance")
        blocks[comp] = (list(indicators), raw / math.sqrt(scale), corr)
    for name, share in dummies.items():
        if name not in nodes or nodes[name].kind != "observed":
            raise CxError(f"dummy {name!r} is not an observed variable of a regression")
        if not 0 < share < 1:
            raise CxError(f"dummy {name!r}: the share of ones is in (0, 1), got {share}")
        nodes[name].dummy = float(share)

    # causal order: parents before children, a composite before its indicators
    edges: dict[str, set[str]] = {n: set() for n in nodes}
    for n in nodes.values():
        edges[n.name] |= {p for p, _, _ in n.parents} | {
            x for a, b, _ in n.products for x in (a, b)
        }
        if n.composite:
            edges[n.name].add(n.composite)
    order: list[str] = []
    remaining = list(nodes)
    while remaining:
        ready = [n for n in remaining if edges[n] <= set(order)]
        if not ready:
            raise CxError(
                f"the paths between {', '.join(remaining)} form a loop; the simulator needs a "
                "recursive (acyclic) model"
            )
        order += ready
        remaining = [n for n in remaining if n not in ready]
    exogenous = [n for n in order if not edges[n]]
    for n in nodes.values():
        if n.dummy is not None and (n.parents or n.products):
            children = [m.name for m in nodes.values() if n.name in edges[m.name]]
            if children:
                raise CxError(
                    f"the dummy outcome {n.name!r} also predicts {', '.join(children)}; the "
                    "simulator supports a dummy outcome only at the end of the paths"
                )
    # normal variables: no dummy and no product term upstream
    non_normal: set[str] = set()
    for name in order:
        n = nodes[name]
        if n.dummy is not None or n.products or (edges[name] & non_normal):
            non_normal.add(name)
    for n in nodes.values():
        if n.dummy is None or not (n.parents or n.products):
            continue
        odd = [p for p, _, _ in n.parents if p in non_normal]
        if n.products or odd:
            raise CxError(
                f"the dummy outcome {n.name!r} needs normal predictors (no dummy and no "
                f"product term upstream): {', '.join(odd) or 'a product term'} is not normal"
            )
        # a probit D = 1[D* > c]: D*'s coefficients make the standardized linear ones
        n.threshold = float(stats.norm.ppf(1 - n.dummy))
        k = _probit_slope(n)
        n.parents = [(q, coef / k, op) for q, coef, op in n.parents]
    k = len(exogenous)
    corr = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            key = _canonical(exogenous[i], "~~", exogenous[j])
            if key in given:
                used.add(key)
                corr[i, j] = corr[j, i] = given[key]
    if k and np.linalg.eigvalsh(corr).min() <= 0:
        raise CxError("the correlations of the exogenous variables are not positive definite")
    dummy_idx = [i for i, n in enumerate(exogenous) if nodes[n].dummy is not None]
    for a in dummy_idx:
        for b in dummy_idx:
            if a < b and corr[a, b] != 0:
                raise CxError(
                    f"'{exogenous[a]} ~~ {exogenous[b]}': two dummies are drawn independently; "
                    "the simulator cannot correlate them"
                )
    unused = [f"{a} {o} {b}" for (a, o, b) in given if (a, o, b) not in used]
    if unused:
        raise CxError(
            "true values for terms the model does not have (or covariances the simulator "
            f"cannot set; only exogenous variables and a composite's indicators): {unused}"
        )
    plan = _Plan(nodes, order, exogenous, corr, blocks)
    return plan, parsed, given


def _probit_slope(node: _Node) -> float:
    """Corr(D, X) / Corr(D*, X) for ``D = 1[D* > c]`` and normal ``X`` (Stein's lemma)."""
    p = node.dummy
    return float(stats.norm.pdf(node.threshold) / math.sqrt(p * (1 - p)))


# ----------------------------------------------------------------------- moments
class _Moments:
    """Exact second moments: every variable as ``a' u + sum_k c_k (P_k - E P_k)``.

    ``u`` are uncorrelated unit-variance shocks; ``P_k`` products of two linear forms
    in normal shocks (Isserlis' theorem gives their covariances).
    """

    def __init__(self, plan: _Plan):
        self.plan = plan
        self.non_normal: set[int] = set()
        self.a: dict[str, np.ndarray] = {}
        self.c: dict[str, dict[int, float]] = {}
        self.products: list[tuple[np.ndarray, np.ndarray]] = []
        self.dim = 0
        self.exact = True

    def _shock(self, count: int = 1) -> list[int]:
        idx = list(range(self.dim, self.dim + count))
        self.dim += count
        return idx

    def _vec(self, coefs: dict[int, float]) -> np.ndarray:
        v = np.zeros(self.dim)
        for i, x in coefs.items():
            v[i] += x
        return v

    def _pad(self, v: np.ndarray) -> np.ndarray:
        return np.concatenate([v, np.zeros(self.dim - v.size)])

    def cov(self, x: str, y: str) -> float:
        ax, ay = self._pad(self.a[x]), self._pad(self.a[y])
        out = float(ax @ ay)
        for k, ck in self.c[x].items():
            for m, cm in self.c[y].items():
                out += ck * cm * self.product_cov(k, m)
        return out

    def product_cov(self, k: int, m: int) -> float:
        fk, gk = (self._pad(v) for v in self.products[k])
        fm, gm = (self._pad(v) for v in self.products[m])
        return float((fk @ fm) * (gk @ gm) + (fk @ gm) * (gk @ fm))

    def normal(self, name: str) -> bool:
        v = self._pad(self.a[name])
        return not self.c[name] and not any(v[i] != 0 for i in self.non_normal)

    def run(self) -> bool:
        """Set residual variances and product means; False where no closed form applies."""
        plan = self.plan
        exo = plan.exogenous
        dummies = [n for n in exo if plan.nodes[n].dummy is not None]
        cont = [n for n in exo if plan.nodes[n].dummy is None]
        d_idx = self._shock(len(dummies))
        self.non_normal.update(d_idx)
        for n, i in zip(dummies, d_idx, strict=True):
            self.a[n], self.c[n] = self._vec({i: 1.0}), {}
        load, root = _exogenous_factors(plan, dummies, cont)
        g_idx = self._shock(len(cont))
        for r, n in enumerate(cont):
            coefs = {d_idx[j]: load[r, j] for j in range(len(dummies))}
            coefs.update({g_idx[j]: root[r, j] for j in range(len(cont))})
            self.a[n], self.c[n] = self._vec(coefs), {}
        for name in plan.order:
            node = plan.nodes[name]
            if name in self.a:
                continue
            if node.composite:
                self._block(node.composite)
                continue
            lin = np.zeros(self.dim)
            comp: dict[int, float] = {}
            for parent, coef, _ in node.parents:
                lin = lin + coef * self._pad(self.a[parent])
                for k, ck in self.c[parent].items():
                    comp[k] = comp.get(k, 0.0) + coef * ck
            for j, (a, b, gamma) in enumerate(node.products):
                if not (self.normal(a) and self.normal(b)):
                    return False
                fa, fb = self._pad(self.a[a]), self._pad(self.a[b])
                self.products.append((fa, fb))
                k = len(self.products) - 1
                comp[k] = comp.get(k, 0.0) + gamma
                plan.product_mean[(name, j)] = float(fa @ fb)
            self.a[name], self.c[name] = lin, comp
            explained = self.cov(name, name)
            if explained >= 1:
                raise CxError(
                    f"the paths into {name!r} explain {explained:.2f} >= 1 of its variance; "
                    "make them smaller"
                )
            node.residual = 1.0 - explained
            (i,) = self._shock()
            self.a[name] = self._pad(self.a[name])
            self.a[name][i] = math.sqrt(node.residual)
        return True

    def _block(self, comp: str) -> None:
        indicators, w, corr = self.plan.composites[comp]
        loadings, root = _indicator_factors(w, corr)
        idx = self._shock(len(indicators))
        f_a = self._pad(self.a[comp])
        for r, x in enumerate(indicators):
            v = loadings[r] * f_a
            for j, i in enumerate(idx):
                v[i] += root[r, j]
            self.a[x] = v
            self.c[x] = {k: loadings[r] * ck for k, ck in self.c[comp].items()}


def _exogenous_factors(plan: _Plan, dummies: list[str], cont: list[str]):
    """Continuous exogenous = load @ dummies + root @ normals, with the given correlations."""
    pos = {n: i for i, n in enumerate(plan.exogenous)}
    r_cd = np.array([[plan.exo_corr[pos[c], pos[d]] for d in dummies] for c in cont]).reshape(
        len(cont), len(dummies)
    )
    r_cc = np.array([[plan.exo_corr[pos[a], pos[b]] for b in cont] for a in cont]).reshape(
        len(cont), len(cont)
    )
    rest = r_cc - r_cd @ r_cd.T
    if cont and np.linalg.eigvalsh(rest).min() <= 0:
        raise CxError("the correlations of the exogenous variables are not positive definite")
    return r_cd, np.linalg.cholesky(rest) if cont else np.zeros((0, 0))


def _indicator_factors(w: np.ndarray, corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x = (R w) F + root e`` with ``root root' = R - R w w' R`` (so ``w' x = F``)."""
    rw = corr @ w
    vals, vecs = np.linalg.eigh(corr - np.outer(rw, rw))
    return rw, vecs * np.sqrt(np.clip(vals, 0, None))


# -------------------------------------------------------------------------- drawing
def _draw(
    plan: _Plan, n: int, rng: np.random.Generator, *, calibrate: bool
) -> dict[str, np.ndarray]:
    """Draw every variable in causal order (``calibrate``: set residuals from the draw)."""
    exo = plan.exogenous
    dummies = [x for x in exo if plan.nodes[x].dummy is not None]
    cont = [x for x in exo if plan.nodes[x].dummy is None]
    std: dict[str, np.ndarray] = {}
    for name in dummies:
        p = plan.nodes[name].dummy
        std[name] = ((rng.random(n) < p) - p) / math.sqrt(p * (1 - p))
    load, root = _exogenous_factors(plan, dummies, cont)
    if cont:
        d_mat = np.column_stack([std[d] for d in dummies]) if dummies else np.zeros((n, 0))
        values = d_mat @ load.T + rng.standard_normal((n, len(cont))) @ root.T
        for j, name in enumerate(cont):
            std[name] = values[:, j]
    for name in plan.order:
        node = plan.nodes[name]
        if name in std:
            continue
        if node.composite:
            indicators, w, corr = plan.composites[node.composite]
            loadings, r = _indicator_factors(w, corr)
            e = rng.standard_normal((n, len(indicators))) @ r.T
            for j, x in enumerate(indicators):
                std[x] = loadings[j] * std[node.composite] + e[:, j]
            continue
        s = np.zeros(n)
        for parent, coef, _ in node.parents:
            s += coef * std[parent]
        for j, (a, b, gamma) in enumerate(node.products):
            prod = std[a] * std[b]
            if calibrate:
                plan.product_mean[(name, j)] = float(prod.mean())
            s += gamma * (prod - plan.product_mean[(name, j)])
        if calibrate:
            explained = float(s.var())
            if explained >= 1:
                raise CxError(
                    f"the paths into {name!r} explain {explained:.2f} >= 1 of its variance; "
                    "make them smaller"
                )
            node.residual = 1.0 - explained
        value = s + math.sqrt(node.residual) * rng.standard_normal(n)
        if node.dummy is not None:
            p = node.dummy
            std[name] = ((value > node.threshold) - p) / math.sqrt(p * (1 - p))
        else:
            std[name] = value
    return std


# ---------------------------------------------------------------------------- public
def simulate_sem(
    model: str,
    values: Mapping[str, float] | None = None,
    *,
    n: int,
    seed: int,
    loading: float = LOADING,
    path: float = PATH,
    interaction: float = INTERACTION,
    indicator_correlation: float = INDICATOR_CORRELATION,
    covariates: Mapping[str, tuple[float, float]] | None = None,
    dummies: Mapping[str, float] | Iterable[str] | None = None,
    likert: int | None = None,
    missing: float = 0.0,
) -> SimulatedSEM:
    """Simulate respondents from a lavaan model and its true standardized values.

    Parameters
    ----------
    model : str
        The model in lavaan syntax: ``=~`` (items or first-order constructs), ``<~``,
        ``~`` (with ``X:Z`` and ``X:X`` products), ``~~`` and ``:=``. Fixed values and
        modifiers in the text are ignored (the truth comes from ``values``); labels
        name the terms that defined parameters (``:=``) use. Residual covariances the
        text declares (``y1 ~~ y2``, ``Y1 ~~ Y2``) are simulated as 0.
    values : mapping, optional
        True values on the standardized scale keyed by lavaan terms:
        ``"Image ~ Experience"``, ``"Experience =~ CX1"``, ``"F <~ x1"`` (standardized
        weight; the weights of a composite are rescaled so that it has variance 1),
        ``"X ~~ Z"`` (correlation of two exogenous variables or two indicators of a
        composite), ``"Y ~ X:Z"``, ``"g =~ F1"``, ``"Loyalty ~ tenure"``.
    n : int
        Number of respondents.
    seed : int
        Random seed; the same seed gives the same data.
    loading, path, interaction, indicator_correlation : float
        Defaults for the terms ``values`` does not give (module constants
        :data:`LOADING`, :data:`PATH`, :data:`INTERACTION`, :data:`INDICATOR_CORRELATION`);
        composite weights default to equal raw weights.
    covariates : mapping, optional
        Raw scale of continuous observed variables: ``{"tenure": (mean, sd)}``. The
        column is ``mean + sd * z``; others are standardized.
    dummies : mapping or iterable, optional
        0/1 observed variables with their share of ones (``{"app": 0.4}``; a list gives
        0.5 each).
    likert : int, optional
        Cut the answers (items, composite indicators and observed variables that are
        neither covariates nor dummies) into ``likert``-point answers ``1..likert`` at
        thresholds evenly spaced over +-1.5 (+-2 above 7 points). None (default): the
        continuous responses. The truth refers to the continuous responses.
    missing : float
        Share of answers missing completely at random (covariates and dummies stay
        complete).

    Returns
    -------
    SimulatedSEM
        ``(data, truth, scores)``; ``truth`` has ``lhs, op, rhs, value``.

    Raises
    ------
    CxError
        For values of terms the model lacks, loadings outside (-1, 1), paths that
        explain more than all of a variance, loops, or correlations that are not
        positive definite.
    """
    if n <= 0:
        raise CxError(f"n must be positive, got {n}")
    if not 0 <= missing < 1:
        raise CxError(f"missing is a share in [0, 1), got {missing}")
    if likert is not None and likert < 2:
        raise CxError(f"likert needs at least 2 answer options, got {likert}")
    covariates = dict(covariates or {})
    if dummies is None:
        dummies = {}
    elif not isinstance(dummies, Mapping):
        dummies = dict.fromkeys(dummies, 0.5)
    plan, parsed, _ = _build_plan(
        model, values or {}, dummies, loading, path, interaction, indicator_correlation
    )
    for name in covariates:
        if name not in plan.nodes or plan.nodes[name].kind != "observed":
            raise CxError(f"covariate {name!r} is not an observed variable of a regression")
    if not _Moments(plan).run():
        _draw(plan, MONTE_CARLO_N, np.random.default_rng([seed, 1]), calibrate=True)
    rng = np.random.default_rng(seed)
    std = _draw(plan, int(n), rng, calibrate=False)

    columns = [v for v in parsed.observed if v in plan.nodes]
    data = {}
    for name in columns:
        node = plan.nodes[name]
        if node.dummy is not None:
            data[name] = (std[name] > 0).astype(np.int64)
        elif name in covariates:
            mean, sd = covariates[name]
            data[name] = mean + sd * std[name]
        else:
            col = std[name]
            if likert is not None:
                spread = 1.5 if likert <= 7 else 2.0
                col = 1.0 + np.searchsorted(np.linspace(-spread, spread, likert - 1), col)
            if missing > 0:
                col = np.where(rng.random(n) < missing, np.nan, col)
            data[name] = col
    frame = pd.DataFrame(data)
    latent_names = [v for v in plan.order if plan.nodes[v].kind in ("latent", "composite")]
    scores = pd.DataFrame({v: std[v] for v in latent_names + [c for c in columns]})
    return SimulatedSEM(frame, _truth_table(plan, parsed), scores)


def _truth_table(plan: _Plan, parsed) -> pd.DataFrame:
    rows: list[tuple[str, str, str, float]] = []
    nodes = plan.nodes
    for t in parsed.terms:
        if t.op == "=~":
            coef = next(c for p, c, op in nodes[t.rhs].parents if p == t.lhs and op == "=~")
            rows.append((t.lhs, "=~", t.rhs, coef))
        elif t.op == "<~":
            indicators, w, _ = plan.composites[t.lhs]
            rows.append((t.lhs, "<~", t.rhs, float(w[indicators.index(t.rhs)])))
        elif t.op == "~" and t.is_interaction:
            a, b = t.parts
            gamma = next(g for x, y, g in nodes[t.lhs].products if (x, y) == (a, b))
            rows.append((t.lhs, "~", t.rhs, gamma))
        elif t.op == "~":
            node = nodes[t.lhs]
            coef = next(c for p, c, op in node.parents if p == t.rhs and op == "~")
            if node.dummy is not None:
                coef *= _probit_slope(node)
            rows.append((t.lhs, "~", t.rhs, coef))
    exo = plan.exogenous
    for i, a in enumerate(exo):
        for j in range(i + 1, len(exo)):
            rows.append((a, "~~", exo[j], float(plan.exo_corr[i, j])))
    for indicators, _, corr in plan.composites.values():
        for i, a in enumerate(indicators):
            for j in range(i + 1, len(indicators)):
                rows.append((a, "~~", indicators[j], float(corr[i, j])))
    # an exogenous composite's indicators correlate with the other exogenous variables
    # through the composite: Corr(x, V) = (R w) Corr(F, V), as lavaan's '<~' reports them
    reach = {}
    for name in exo:
        if name in plan.composites:
            indicators, w, corr = plan.composites[name]
            reach[name] = list(zip(indicators, corr @ w, strict=True))
        else:
            reach[name] = [(name, 1.0)]
    for i, a in enumerate(exo):
        for j in range(i + 1, len(exo)):
            b = exo[j]
            if a not in plan.composites and b not in plan.composites:
                continue
            for x, cx in reach[a]:
                for y, cy in reach[b]:
                    rows.append((x, "~~", y, float(cx * cy * plan.exo_corr[i, j])))
    for name in plan.order:
        node = nodes[name]
        if name in exo and node.kind != "composite":
            rows.append((name, "~~", name, 1.0))
        elif node.residual is not None and node.kind != "composite":
            resid = node.residual
            if node.dummy is not None:
                resid = 1.0 - (1.0 - resid) * _probit_slope(node) ** 2
            rows.append((name, "~~", name, resid))
        elif node.kind == "composite" and node.residual is not None:
            rows.append((name, "~~", name, node.residual))
    labelled = {}
    for t in parsed.terms:
        if t.label:
            match = [r for r in rows if (r[0], r[1], r[2]) == (t.lhs, t.op, t.rhs)]
            if match:
                labelled[t.label] = match[0][3]
    for d in parsed.defined:
        value = float(
            eval(d.expression.replace("^", "**"), {"__builtins__": {}}, dict(labelled))  # noqa: S307
        )
        labelled[d.name] = value
        rows.append((d.name, ":=", d.expression, value))
    return pd.DataFrame(rows, columns=["lhs", "op", "rhs", "value"])


# ------------------------------------------------------------- corporate reputation
#: the corporate-reputation model of Hair et al.'s PLS-SEM primer (seminr's teaching
#: model): four Mode-B composites drive competence and likeability, which drive
#: satisfaction (one item, ``cusa``) and loyalty
CORPORATE_REPUTATION_MODEL = """
QUAL <~ qual_1 + qual_2 + qual_3 + qual_4 + qual_5 + qual_6 + qual_7 + qual_8
PERF <~ perf_1 + perf_2 + perf_3 + perf_4 + perf_5
CSOR <~ csor_1 + csor_2 + csor_3 + csor_4 + csor_5
ATTR <~ attr_1 + attr_2 + attr_3
COMP =~ comp_1 + comp_2 + comp_3
LIKE =~ like_1 + like_2 + like_3
CUSL =~ cusl_1 + cusl_2 + cusl_3
COMP ~ QUAL + PERF + CSOR + ATTR
LIKE ~ QUAL + PERF + CSOR + ATTR
cusa ~ COMP + LIKE
CUSL ~ cusa + COMP + LIKE
"""

#: illustrative true values in the primer's range (outer weights, loadings and path
#: coefficients of the extended corporate-reputation model, rounded); not the primer's
#: estimates to the digit
CORPORATE_REPUTATION_VALUES: dict[str, float] = {
    **{
        f"QUAL <~ qual_{i}": w
        for i, w in enumerate((0.20, 0.04, 0.11, 0.16, 0.40, 0.23, 0.19, 0.20), start=1)
    },
    **{f"PERF <~ perf_{i}": w for i, w in enumerate((0.47, 0.18, 0.19, 0.34, 0.20), start=1)},
    **{f"CSOR <~ csor_{i}": w for i, w in enumerate((0.31, 0.04, 0.41, 0.08, 0.42), start=1)},
    **{f"ATTR <~ attr_{i}": w for i, w in enumerate((0.41, 0.20, 0.66), start=1)},
    **{f"COMP =~ comp_{i}": v for i, v in enumerate((0.82, 0.82, 0.84), start=1)},
    **{f"LIKE =~ like_{i}": v for i, v in enumerate((0.88, 0.87, 0.84), start=1)},
    **{f"CUSL =~ cusl_{i}": v for i, v in enumerate((0.83, 0.92, 0.84), start=1)},
    "COMP ~ QUAL": 0.43,
    "COMP ~ PERF": 0.30,
    "COMP ~ CSOR": 0.06,
    "COMP ~ ATTR": 0.09,
    "LIKE ~ QUAL": 0.38,
    "LIKE ~ PERF": 0.12,
    "LIKE ~ CSOR": 0.18,
    "LIKE ~ ATTR": 0.17,
    "cusa ~ COMP": 0.15,
    "cusa ~ LIKE": 0.44,
    "CUSL ~ cusa": 0.51,
    "CUSL ~ COMP": 0.01,
    "CUSL ~ LIKE": 0.34,
    "QUAL ~~ PERF": 0.65,
    "QUAL ~~ CSOR": 0.60,
    "QUAL ~~ ATTR": 0.60,
    "PERF ~~ CSOR": 0.50,
    "PERF ~~ ATTR": 0.55,
    "CSOR ~~ ATTR": 0.50,
}


def corporate_reputation(
    n: int,
    seed: int,
    *,
    likert: int | None = None,
    missing: float = 0.0,
    indicator_correlation: float = 0.5,
) -> SimulatedSEM:
    """Respondents in the shape of the corporate-reputation teaching model.

    The structure of Hair et al.'s PLS-SEM primer as seminr ships it
    (:data:`CORPORATE_REPUTATION_MODEL`): Mode-B composites QUAL (``qual_1..qual_8``),
    PERF (``perf_1..5``), CSOR (``csor_1..5``) and ATTR (``attr_1..3``) drive the
    reflective COMP (``comp_1..3``) and LIKE (``like_1..3``), which drive the
    single-item satisfaction ``cusa`` and loyalty CUSL (``cusl_1..3``). The true values
    (:data:`CORPORATE_REPUTATION_VALUES`) are illustrative, in the range the primer
    reports; they are not its data.

    Parameters
    ----------
    n : int
        Number of respondents.
    seed : int
        Random seed.
    likert : int, optional
        Answer points (the primer's data use 7); None: continuous responses.
    missing : float
        Share of answers missing completely at random.
    indicator_correlation : float
        Correlation of two indicators of one composite (default 0.5).

    Returns
    -------
    SimulatedSEM
        ``(data, truth, scores)``.
    """
    return simulate_sem(
        CORPORATE_REPUTATION_MODEL,
        CORPORATE_REPUTATION_VALUES,
        n=n,
        seed=seed,
        likert=likert,
        missing=missing,
        indicator_correlation=indicator_correlation,
    )
