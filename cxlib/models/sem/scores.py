r"""The latent-score likelihood of an SEM with product terms (``Y ~ X + Z + X:Z``).

Why not the continuous (marginal normal) likelihood: with ``eta_Y = b_X X + b_Z Z +
g X Z + zeta`` the product ``X Z`` of two normal latents is not normal (its skewness is
``2 rho (3 + rho^2) / (1 + rho^2)^{3/2}`` for correlation ``rho``, and it is
heteroscedastic given either part), so the items are not multivariate normal and a
likelihood from means and covariances alone identifies ``g`` only through the third
moments it ignores: it would be wrong, not merely inefficient. Here the latent
variables are kept in the model, one score per respondent and latent, and the
likelihood is exact given them:

- exogenous latents ``eta_x ~ MVN(0, Psi_x)``, one score per respondent and latent;
- endogenous latents in topological order, ``eta_k = sum_j B_kj eta_j + sum_i g_i
  eta_a(i) eta_b(i) + zeta_k``, with ``zeta ~ MVN(0, Psi_endo)``; a latent whose
  residual variance is fixed at 0 (a composite ``F <~ x1 + x2``) is deterministic,
  ``eta_F = sum_j B_Fj eta_j``; an outcome that predicts nothing, is measured by items
  of its own and has an uncorrelated disturbance has its score integrated out exactly
  (its items are a one-factor normal given its predictors, evaluated elementwise by the
  Woodbury identity for any missingness: :func:`marginal_outcome_logp`);
- items given the latents normal with diagonal residual variances ``Theta``; missing
  answers drop out of the sum (missing at random given the latents);
- observed variables (``structure.observed``: a latent of the same name measured
  without error by its column, and single-item constructs whose item has a residual
  variance of 0) enter with their data value, centred at the sample mean for an
  exogenous one (so that main effects are the slopes at the moderator's mean, as for a
  latent moderator). Exogenous observed variables are conditioned on, as lavaan's
  ``fixed.x``: their block of ``Psi`` enters the joint normal with the latent scores,
  whose density factors as ``p(observed) p(latent | observed)``, so the paths and
  interactions have the posterior of the model conditional on the observed values
  (the observed variables' own normal density informs only their variances and
  covariances, whose estimates are their sample moments). An endogenous observed
  variable has density ``N(pred, psi)``.

Respondent weights multiply each respondent's log density (items, scores and the
observed variables' densities): a weighted pseudo-posterior, as the continuous
likelihood's weighted moments are.

Parameterization, measured (X, Z correlated 0.4, 3 items each, one outcome with 3
items, ``X:Z = 0.25``, N = 2,500, 2 chains x (500 + 500), smallest bulk ESS of the
model's parameters): non-centred scores (``eta = L z``, ``z ~ N(0, 1)``) 91 (the
latent correlation; well-measured latents make the scale of ``L`` and all ``z`` a
ridge); scores on the latents' own scale (centred, used here) 67, now for the item
intercepts, which trade off against a shift of all scores; intercepts written as
``nu = a - lambda mean(eta)`` (exact, the mean of the scores' sample) 215-260, with
each latent's score mean a parameter of its own besides (``eta = m + z - mean(z)``,
:meth:`LatentScoreLikelihood._scores`, used here); the
outcome's score integrated out lifts the outcome's parameters from ~260 to 1,000+. The
recovery of ``g`` was right in all four (0.247-0.250, truth 0.25 on the data scale).

Cost is ``O(N (p + m))`` per gradient: one compiled kernel for the items
(:class:`ItemLogLik`, 46 us for N = 2,500 and 9 items), elementwise PyTensor for the
structure and the scalar Cholesky factors of the small ``Psi`` blocks (PyTensor's
Cholesky and triangular-solve gradients cost ~7 ms here). NUTS runs over ``N x``
(sampled latents) scores plus the parameters; the Laplace start (a dense Hessian) does
not scale to thousands of scores, so NUTS starts from the scores' data proxies and the
parameters' default starts, with a diagonal mass matrix adapted in tuning
(:meth:`LatentScoreLikelihood.sampler_kwargs`); the score draws are not stored
(``var_names``). The sampler's cost grows linearly with N (the posterior's shape per
score does not change with N). See the report of issue #18 for timings.

Not supported (clear errors): residual item covariances, ``group=``, ordinal items,
an observed moderator coded in 3 or 4 categories (an ordinal variable used as a
number: use one dummy per category, or a variable with 5 or more values), missing
values in an observed variable, residual covariances of an observed outcome.
"""

from __future__ import annotations

import itertools
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from cxlib.errors import ModelSpecificationError
from cxlib.models import compiled
from cxlib.models.base import make_prior
from cxlib.models.sem.data import SEMData
from cxlib.models.sem.graph import SEMGraph

__all__ = [
    "ItemData",
    "ItemLogLik",
    "LatentScoreLikelihood",
    "ScorePlan",
    "item_log_lik",
    "score_plan",
]

LOG2PI = float(np.log(2 * np.pi))
#: Fewest distinct values of an observed moderator used as a number (2 = a dummy is fine).
MIN_MODERATOR_VALUES = 5
#: sample each latent's score mean as a parameter of its own (see LatentScoreLikelihood._scores)
CENTRED_SCORE_MEANS = True
#: SD (latent units, over sqrt(N)) of the potential on the unused mean of the raw scores
SCORE_SHIFT_SD = 0.5


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp", "nsz"})
def _item_loglik_kernel(y_t, wm_t, wsum, eta, lam, nu, sd, load_ptr, load_lat):
    """Value and gradients of ``sum_ij wm_ij log N(y_ij | nu_j + lam_j eta_i, sd_j)``.

    ``y_t`` and ``wm_t`` are ``(p, N)`` (answers, zero where missing, and weight times
    the answered mask): item-major, so that the inner loops over respondents vectorize.
    """
    p, n = y_t.shape
    m = eta.shape[1]
    eta_t = np.ascontiguousarray(eta.T)
    g_eta_t = np.zeros((m, n))
    g_lam = np.zeros((p, m))
    g_nu = np.zeros(p)
    g_sd = np.zeros(p)
    mu = np.empty(n)
    a = np.empty(n)
    value = 0.0
    for j in range(p):
        inv = 1.0 / (sd[j] * sd[j])
        for i in range(n):
            mu[i] = nu[j]
        for t in range(load_ptr[j], load_ptr[j + 1]):
            k = load_lat[t]
            lk = lam[j, k]
            for i in range(n):
                mu[i] += lk * eta_t[k, i]
        s_a = 0.0
        s_r2 = 0.0
        for i in range(n):
            r = y_t[j, i] - mu[i]
            ai = wm_t[j, i] * r
            a[i] = ai
            s_a += ai
            s_r2 += ai * r
        for t in range(load_ptr[j], load_ptr[j + 1]):
            k = load_lat[t]
            lk = inv * lam[j, k]
            acc = 0.0
            for i in range(n):
                g_eta_t[k, i] += lk * a[i]
                acc += a[i] * eta_t[k, i]
            g_lam[j, k] = inv * acc
        value -= 0.5 * inv * s_r2 + wsum[j] * (np.log(sd[j]) + 0.5 * LOG2PI)
        g_nu[j] = inv * s_a
        g_sd[j] = inv * s_r2 / sd[j] - wsum[j] / sd[j]
    return value, np.ascontiguousarray(g_eta_t.T), g_lam, g_nu, g_sd


class ItemData:
    """The items' data as :class:`ItemLogLik` takes them (item-major, zero where missing).

    Parameters
    ----------
    y : numpy.ndarray
        ``(N, p)`` standardized answers, NaN where missing.
    weights : numpy.ndarray
        ``(N,)`` respondent weights.
    loads : list of list of int
        Per item, the latents it loads on (the loading matrix's non-zero pattern).
    """

    def __init__(self, y: np.ndarray, weights: np.ndarray, loads: list[list[int]]):
        mask = ~np.isnan(y)
        self.y_t = np.ascontiguousarray(np.where(mask, y, 0.0).T)
        self.wm_t = np.ascontiguousarray((np.asarray(weights, dtype=float)[:, None] * mask).T)
        self.wsum = self.wm_t.sum(1)
        self.load_ptr = np.concatenate([[0], np.cumsum([len(v) for v in loads])]).astype(np.int64)
        self.load_lat = np.asarray([k for v in loads for k in v], dtype=np.int64)

    def arrays(self) -> list[np.ndarray]:
        """The kernel's data arguments: ``y_t, wm_t, wsum, load_ptr, load_lat``."""
        return [self.y_t, self.wm_t, self.wsum, self.load_ptr, self.load_lat]


@numba.njit(cache=True, nogil=True)
def item_loglik(eta, lam, nu, sd, y_t, wm_t, wsum, load_ptr, load_lat):
    """Value and gradients, ``-inf`` and zeros for a non-positive SD or a non-finite score."""
    ok = True
    for j in range(sd.size):
        if not sd[j] > 0.0:
            ok = False
    for x in eta.ravel():
        if not np.isfinite(x):
            ok = False
    if not ok:
        return -np.inf, np.zeros_like(eta), np.zeros_like(lam), np.zeros_like(nu), sd * 0.0
    return _item_loglik_kernel(y_t, wm_t, wsum, eta, lam, nu, sd, load_ptr, load_lat)


@compiled.declare
class ItemLogLik(Op):
    """Normal log-likelihood of the items given the latent scores, with its gradients.

    One compiled pass over respondents computes the value and the gradients with
    respect to the scores ``eta (N, m)``, loadings ``lam (p, m)``, intercepts ``nu
    (p,)`` and residual SDs ``sd (p,)`` (standardized item scale); the gradient reuses
    them (as :class:`~cxlib.models.sem.likelihood.GaussianPatternLogLik` does). The
    data (:meth:`ItemData.arrays`) are inputs, so the Op holds none and one
    compiled kernel serves PyTensor's C backend and its numba backend (nutpie,
    :func:`cxlib.models.compiled.register_numba`).
    """

    __props__ = ()
    kernel = staticmethod(item_loglik)

    def make_node(self, eta, lam, nu, sd, *arrays):
        """Inputs: scores ``(N, m)``, loadings ``(p, m)``, intercepts and SDs ``(p,)``, data."""
        ins = [pt.as_tensor_variable(x).astype("float64") for x in (eta, lam, nu, sd)]
        data = [pt.as_tensor_variable(a) for a in arrays]
        if len(data) != 5:
            raise TypeError("ItemLogLik takes the 5 arrays of ItemData.arrays()")
        return Apply(self, ins + data, [pt.dscalar()] + [x.type() for x in ins])

    def perform(self, node, inputs, outputs):
        """Evaluate value and gradients (``-inf`` for a non-positive SD)."""
        eta, lam, nu, sd = (np.ascontiguousarray(x, dtype=float) for x in inputs[:4])
        res = item_loglik(eta, lam, nu, sd, *inputs[4:])
        outputs[0][0] = np.asarray(res[0])
        for k in range(4):
            outputs[k + 1][0] = res[k + 1]

    def connection_pattern(self, node):
        """The outputs depend on the four parameters' inputs; the data are constants."""
        return [[True] * 5 for _ in range(4)] + [[False] * 5 for _ in range(5)]

    def L_op(self, inputs, outputs, output_grads):
        """Gradients of the value output, reusing the computed gradient outputs."""
        from pytensor.gradient import disconnected_type

        g = output_grads[0]
        return [g * outputs[k] for k in range(1, 5)] + [disconnected_type() for _ in range(5)]


def item_log_lik(eta, lam, nu, sd, data: ItemData):
    """The items' log-likelihood (a tensor) given scores and measurement parameters."""
    arrays = [_data(a, dtype=a.dtype) for a in data.arrays()]
    return ItemLogLik()(eta, lam, nu, sd, *arrays)[0]


class ScorePlan:
    """Which latents are sampled, known from data or deterministic, in topological order.

    Attributes
    ----------
    order : list of int
        The latents in topological order (predictors first).
    exo_known, exo_sampled : list of int
        Exogenous latents whose values are data (observed variables) or sampled scores.
    endo_known, endo_sampled, endo_fixed : list of int
        Endogenous latents that are observed (a density on their residual), sampled
        (a free disturbance) or deterministic (residual variance fixed at 0).
    known_item : dict of int to int
        Data-determined latent -> its item's column.
    measured_items : list of int
        Items entering :class:`ItemLogLik` (those of latents measured with error).
    preds : dict of int to list of int
        Each latent's direct predictors (non-zero entries of B).
    products : dict of int to list of (int, int, int)
        Each outcome's interactions: ``(index into structure.interactions, a, b)``.
    """

    def __init__(self, structure):
        st = structure
        m = st.n_latents
        li = {v: i for i, v in enumerate(st.latents)}
        ii = {v: i for i, v in enumerate(st.items)}
        self.preds: dict[int, list[int]] = {}
        for prm in st.of_kind("path"):
            if prm.is_free or prm.fixed != 0.0:
                self.preds.setdefault(prm.row, []).append(prm.col)
        self.products: dict[int, list[tuple[int, int, int]]] = {}
        for i, prm in enumerate(st.interactions):
            a, b = prm.parts
            self.products.setdefault(prm.row, []).append((i, a, b))
        parents = {k: set(self.preds.get(k, [])) for k in range(m)}
        for k, prods in self.products.items():
            for _, a, b in prods:
                parents[k] |= {a, b}
        order: list[int] = []
        done: set[int] = set()
        while len(order) < m:
            ready = [k for k in range(m) if k not in done and parents[k] <= done]
            if not ready:
                raise ModelSpecificationError("the structural model has a loop")
            order.extend(ready)
            done.update(ready)
        self.order = order
        var = {
            p.row: p for p in st.of_kind("latent_cov") if p.is_variance
        }  # latent -> its (residual) variance
        self.known_item: dict[int, int] = {}
        self.known_loading: dict[int, float] = {}
        for lat, k in li.items():
            loads = [p for p in st.of_kind("loading") if p.lhs == lat]
            if len(loads) != 1:
                continue
            it = loads[0].rhs
            resid = next(p for p in st.of_kind("item_cov") if p.lhs == it == p.rhs)
            if resid.fixed == 0.0:
                if not loads[0].fixed:
                    raise ModelSpecificationError(
                        f"{lat} is measured without error by {it} but its loading is free; "
                        "interaction models need its loading fixed (the default marker scaling)"
                    )
                self.known_item[k] = ii[it]
                self.known_loading[k] = float(loads[0].fixed)
        endogenous = {k for k in range(m) if parents[k]}
        self.exo_known = [k for k in order if k not in endogenous and k in self.known_item]
        self.exo_sampled = [k for k in order if k not in endogenous and k not in self.known_item]
        for k in self.exo_sampled:
            if var[k].fixed == 0.0:
                raise ModelSpecificationError(
                    f"{st.latents[k]} is exogenous with its variance fixed at 0: it would be a "
                    "constant; free its variance or remove it"
                )
        self.endo_known = [k for k in order if k in endogenous and k in self.known_item]
        self.endo_fixed = [
            k for k in order if k in endogenous and k not in self.known_item and var[k].fixed == 0.0
        ]
        self.endo_sampled = [
            k
            for k in order
            if k in endogenous and k not in self.known_item and k not in self.endo_fixed
        ]
        exo = set(self.exo_known) | set(self.exo_sampled)
        for p in st.of_kind("latent_cov"):
            if p.is_variance or (not p.is_free and p.fixed == 0.0):
                continue
            a, b = p.row, p.col
            if (a in exo) != (b in exo):
                raise ModelSpecificationError(
                    f"{p.name}: a covariance between an exogenous latent and an endogenous "
                    "one's disturbance is not supported in a model with interactions"
                )
            if a in self.endo_known or b in self.endo_known:
                raise ModelSpecificationError(
                    f"{p.name}: a residual covariance of an observed outcome is not supported "
                    "in a model with interactions; fix it at 0 ('"
                    f"{st.latents[a]} ~~ 0*{st.latents[b]}')"
                )
            if a in self.endo_fixed or b in self.endo_fixed:
                raise ModelSpecificationError(
                    f"{p.name}: a latent with no disturbance cannot have a residual covariance"
                )
        for p in st.of_kind("item_cov"):
            if not p.is_variance and (p.is_free or p.fixed != 0.0):
                raise ModelSpecificationError(
                    f"{p.name}: residual covariances between items are not supported in a "
                    "model with interactions (the latent-score likelihood has diagonal "
                    "residuals); remove the line or model the shared variance as a latent"
                )
        known_items = set(self.known_item.values())
        item_lats: dict[int, set[int]] = {}
        for p in st.of_kind("loading"):
            if p.is_free or p.fixed != 0.0:
                item_lats.setdefault(p.row, set()).add(p.col)
        # an outcome that predicts nothing, whose items measure it alone and whose
        # disturbance is uncorrelated: its score is integrated out (a one-factor normal
        # given its predictors), see marginal_outcome_logp
        used = {j for js in self.preds.values() for j in js}
        used |= {v for prods in self.products.values() for _, a, b in prods for v in (a, b)}
        correlated = {
            v
            for p in st.of_kind("latent_cov")
            if not p.is_variance and (p.is_free or p.fixed != 0.0)
            for v in (p.row, p.col)
        }
        self.marginal_items: dict[int, list[int]] = {}
        for k in self.endo_sampled:
            own = sorted(j for j, lats in item_lats.items() if k in lats)
            if (
                k not in used
                and k not in correlated
                and own
                and all(item_lats[j] == {k} for j in own)
            ):
                self.marginal_items[k] = own
        self.endo_sampled = [k for k in self.endo_sampled if k not in self.marginal_items]
        marginal = {j for js in self.marginal_items.values() for j in js}
        self.measured_items = [
            j for j in range(st.n_items) if j not in known_items and j not in marginal
        ]
        loads = {j: [] for j in self.measured_items}
        for p in st.of_kind("loading"):
            if p.row in loads and (p.is_free or p.fixed != 0.0):
                loads[p.row].append(p.col)
        self.loads = [loads[j] for j in self.measured_items]


def score_plan(structure) -> ScorePlan:
    """The :class:`ScorePlan` of a structure (raises for what the likelihood refuses)."""
    return ScorePlan(structure)


class LatentScoreLikelihood:
    """Latent scores per respondent: the exact likelihood of a model with product terms.

    The protocol of :class:`~cxlib.models.sem.continuous.ContinuousLikelihood`:
    :meth:`prepare` checks the data, :meth:`add` adds the scores, intercepts and the
    likelihood, :meth:`finish` the scores' starting values and :meth:`sampler_kwargs`
    how NUTS starts. See the module docstring for the formulation.

    Parameters
    ----------
    structure : SEMStructure
        The model's parameter table (with ``structure.interactions``).
    """

    latent_response_items: list[str] = []
    nuts_start = "scores"

    def __init__(self, structure):
        self.structure = structure
        self.plan = score_plan(structure)
        self.data: SEMData | None = None
        self.score_names: list[str] = []

    # ------------------------------------------------------------------ data
    def prepare(self, data: SEMData) -> None:
        """Check the data: one group, observed variables complete and usable as numbers.

        Raises
        ------
        ModelSpecificationError
            For several groups, missing values in an observed variable, or an observed
            interaction part coded in 3 or 4 categories.
        """
        st, plan = self.structure, self.plan
        if len(data.groups) > 1:
            raise ModelSpecificationError(
                "group= is not supported with interactions (Y ~ X:Z) yet: fit the segments "
                "separately, or use the segment as an observed moderator (a 0/1 column in "
                "the interaction, e.g. 'Loyalty ~ Experience + app + Experience:app')"
            )
        parts = {k for prm in st.interactions for k in prm.parts}
        for k, j in plan.known_item.items():
            col = data.y[:, j]
            miss = np.flatnonzero(np.isnan(col))
            name = st.items[j]
            if miss.size:
                rows = ", ".join(str(r) for r in data.respondent_ids[miss[:10]])
                more = f" and {miss.size - 10} more" if miss.size > 10 else ""
                raise ModelSpecificationError(
                    f"the observed variable {name!r} has {miss.size} missing value(s) (rows "
                    f"{rows}{more}); in a model with interactions an observed variable enters "
                    "with its value, so it cannot be missing. Drop or impute those rows"
                )
            if k in parts:
                n_values = np.unique(np.round(col * data.scale[j] + data.center[j], 9)).size
                if 2 < n_values < MIN_MODERATOR_VALUES:
                    raise ModelSpecificationError(
                        f"the observed variable {name!r} has {n_values} distinct values and is "
                        f"used in a product term ({_products_of(st, k)}): an ordinal variable "
                        f"with fewer than {MIN_MODERATOR_VALUES} categories cannot be used as a "
                        "number in an interaction. Use one 0/1 dummy per category (all but "
                        f"one), or a variable with {MIN_MODERATOR_VALUES} or more values"
                    )
        self.data = data

    # ------------------------------------------------------------------ graph
    def add(self, graph: SEMGraph):
        """Add scores, intercepts and the latent-score likelihood to the model.

        Returns
        -------
        tuple
            ``(loglik, theta_y, nu_y, None)``: the log-likelihood given the scores
            (items and observed variables), the item residual covariance and the
            intercepts on the data's scale; no group latent means.
        """
        import pymc as pm

        st, plan, data = self.structure, self.plan, graph.data
        model = graph.model
        p = st.n_items
        s, ctr = data.scale, data.center
        known_items = set(plan.known_item.values())
        exo_known_items = {plan.known_item[k] for k in plan.exo_known}
        # intercepts: free for measured items and observed outcomes; an exogenous
        # observed variable is centred at its mean (its intercept is the mean). The free
        # values are the intercepts at the scores' (predictions') sample mean, ``nu = a -
        # lambda * mean(eta)``: an exact reparameterization that removes the ridge between
        # every intercept and a shift of all scores (intercepts' bulk ESS 67 of 1,000
        # draws without it)
        free_nu = [j for j in range(p) if j not in exo_known_items]
        model.add_coord("item_intercept", [st.items[j] for j in free_nu])
        nu_raw = make_prior(
            "intercept",
            graph.prior_spec("intercept", [st.items[j] for j in free_nu]),
            dims="item_intercept",
        )
        graph.initvals["intercept"] = np.zeros(len(free_nu))
        a_z = pt.set_subtensor(pt.zeros(p)[free_nu], nu_raw)
        nu_known: dict[int, Any] = {}
        B = graph.b_g[0]
        psi = graph.psi
        gamma = graph.gamma
        y = data.y
        w = data.weights
        w_t = _data(w)
        N = y.shape[0]
        cols: dict[int, Any] = {}
        ll_known = pt.as_tensor_variable(0.0)
        wsum = float(w.sum())

        def known_value(k, nu_j=0.0):
            j = plan.known_item[k]
            lam = plan.known_loading[k]
            # data scale: y = nu + lam * eta, with nu = mean for an exogenous variable
            return (s[j] * (_data(y[:, j]) - nu_j)) / lam

        # scores on the latents' own scale (centred parameterization, see the module
        # docstring), each block's density from a Cholesky factor of scalar entries
        # (PyTensor's Cholesky and triangular-solve gradients cost milliseconds here)
        self.score_names = []
        if plan.exo_sampled or plan.endo_sampled:
            model.add_coord("respondent", np.arange(N))
        units = graph.latent_units
        if plan.exo_sampled:
            model.add_coord("exogenous_latent", [st.latents[k] for k in plan.exo_sampled])
            eta_x = self._scores("exo", "exogenous_latent", units[plan.exo_sampled], w_t, wsum)
            for c, k in enumerate(plan.exo_sampled):
                cols[k] = eta_x[:, c]
        for k in plan.exo_known:
            cols[k] = known_value(k)
        exo = plan.exo_known + plan.exo_sampled
        if exo:
            ll_known = ll_known + _mvn_logp([cols[k] for k in exo], psi, exo, w_t, wsum)
        if plan.endo_sampled:
            model.add_coord("endogenous_latent", [st.latents[k] for k in plan.endo_sampled])
            eta_e = self._scores("endo", "endogenous_latent", units[plan.endo_sampled], w_t, wsum)
        residuals = {}
        for k in plan.order:
            if k in cols:
                continue
            pred = pt.zeros(N)
            for j in plan.preds.get(k, []):
                pred = pred + B[k, j] * cols[j]
            for i, a, b in plan.products.get(k, []):
                pred = pred + gamma[i] * cols[a] * cols[b]
            if k in plan.endo_known:
                j = plan.known_item[k]
                pred_bar = pt.sum(w_t * pred) / wsum
                nu_known[j] = a_z[j] - plan.known_loading[k] * pred_bar / s[j]
                cols[k] = known_value(k, nu_known[j])
                ll_known = ll_known + _mvn_logp([cols[k] - pred], psi, [k], w_t, wsum)
            elif k in plan.endo_sampled:
                cols[k] = eta_e[:, plan.endo_sampled.index(k)]
                residuals[k] = cols[k] - pred
            elif k in plan.marginal_items:
                idx = plan.marginal_items[k]
                pred_bar = pt.sum(w_t * pred) / wsum
                lam_k = graph.lambda_y[idx, k] / s[idx]
                d_k = graph.theta_y[idx, idx] / s[idx] ** 2
                for c, j in enumerate(idx):
                    nu_known[j] = a_z[j] - lam_k[c] * pred_bar
                ll_known = ll_known + marginal_outcome_logp(
                    y[:, idx], w, a_z[idx], lam_k, d_k, psi[k, k], pred - pred_bar
                )
                cols[k] = pred
            else:
                cols[k] = pred
        if plan.endo_sampled:
            zeta = [residuals[k] for k in plan.endo_sampled]
            ll_known = ll_known + _mvn_logp(zeta, psi, plan.endo_sampled, w_t, wsum)
        eta = pt.stack([cols[k] for k in range(st.n_latents)], axis=1)
        # items given the scores (standardized item scale)
        items = plan.measured_items
        lam_z = graph.lambda_y[items] / s[items][:, None]
        sd_z = pt.sqrt(graph.theta_y[items, items]) / s[items]
        eta_bar = pt.dot(w_t, eta) / wsum
        nu_items = a_z[items] - pt.dot(lam_z, eta_bar)
        nu_z = pt.set_subtensor(pt.zeros(p)[items], nu_items)
        for j, value in nu_known.items():
            nu_z = pt.set_subtensor(nu_z[j], value)
        nu_y = ctr + s * nu_z
        ll_items = item_log_lik(eta, lam_z, nu_items, sd_z, ItemData(y[:, items], w, plan.loads))
        ll = ll_items + ll_known
        pm.Potential("likelihood", ll)
        self._start_scores(graph, known_items)
        return ll, graph.theta_y, nu_y, None

    def _scores(self, which: str, dim: str, units: np.ndarray, w_t, wsum: float):
        """Scores ``(N, k)`` of a block: their weighted mean and the deviations from it.

        ``eta = m + (z - zbar)``: ``m`` (``score_mean_<which>``, one per latent) is the
        scores' weighted mean, an explicit parameter, and ``z - zbar`` the deviations
        (``score_<which>``, centred by construction). The density of the scores is
        unchanged (an exact reparameterization); ``zbar``, which the scores do not
        depend on, gets an independent normal potential of SD ``SCORE_SHIFT_SD`` latent
        units over ``sqrt(N)`` so that the posterior stays proper. Why: the common shift
        of all of a latent's scores is otherwise a direction across N coordinates that a
        diagonal mass matrix cannot scale, and it trades with the intercepts and, through
        a product ``X:app``, with the coefficient of the product's other part. Measured
        on the coverage study's first 10 datasets (N = 400, 2 x (500 + 500)): largest
        R-hat 1.008-1.045 (median 1.019) and smallest bulk ESS 80-222 (median 168),
        against 1.008-2.27 (median 1.020) and 3-159 (median 110) without; the dataset
        whose chain stuck (R-hat 2.27 on the intercepts, 369 s) samples in 10 s with
        R-hat 1.02. Sampling the scores' SD the same way (a radial decomposition) made
        2 of 8 chains stick on the marker items' residual variances: not used.
        """
        import pymc as pm

        z = pm.Flat(f"score_{which}", dims=("respondent", dim))
        self.score_names.append(f"score_{which}")
        if not CENTRED_SCORE_MEANS:
            return z
        m = pm.Flat(f"score_mean_{which}", dims=dim)
        self.score_names.append(f"score_mean_{which}")
        zbar = pt.dot(w_t, z) / wsum
        sd = SCORE_SHIFT_SD * np.asarray(units, dtype=float)
        pm.Potential(f"score_shift_{which}", -0.5 * wsum * pt.sum((zbar / sd) ** 2))
        return m[None, :] + z - zbar[None, :]

    def _start_scores(self, graph: SEMGraph, known_items: set[int]) -> None:
        """Starting scores from the data: each latent's mean standardized item, scaled."""
        st, plan, data = self.structure, self.plan, graph.data
        y = data.y
        N = y.shape[0]
        proxy = np.zeros((N, st.n_latents))
        for k, lat in enumerate(st.latents):
            idx = [st.items.index(it) for it in st.indicators(lat)]
            idx = [j for j in idx if j not in known_items] or idx
            if idx:
                with np.errstate(invalid="ignore"):
                    v = np.nanmean(y[:, idx], axis=1)
                v = np.where(np.isfinite(v), v, 0.0)
                proxy[:, k] = (v - v.mean()) / (v.std() + 1e-12)
        # latent (residual) SDs start at 0.7 units, the scores at their proxies on that scale
        units = graph.latent_units
        w = data.weights
        for which, idx in (("exo", plan.exo_sampled), ("endo", plan.endo_sampled)):
            if not idx:
                continue
            start = 0.7 * units[idx] * np.clip(proxy[:, idx], -4, 4)
            if CENTRED_SCORE_MEANS:
                start = start - (w @ start) / w.sum()
                graph.initvals[f"score_mean_{which}"] = np.zeros(len(idx))
            graph.initvals[f"score_{which}"] = start

    def finish(self, model, initvals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Nothing to adjust: the scores' starting values are set in :meth:`add`."""
        return initvals

    def sampler_kwargs(self, model, kwargs: dict[str, Any], *, weight: float) -> dict[str, Any]:
        """NUTS of nutpie, a diagonal mass matrix adapted in tuning, the scores not stored.

        The Laplace start's dense Hessian over thousands of scores would cost more than
        the sampling; a caller's ``nuts_sampler`` (``"pymc"`` is the fallback),
        ``mass_matrix``, ``step`` or ``var_names`` is kept. nutpie because the cost is
        the sampler's: thousands of scores take long trees, and PyMC's Python tree
        building cost 3-4 times the gradient (measured in ``benchmarks/RESULTS.md``).
        """
        kwargs = dict(kwargs)
        kwargs.setdefault("nuts_sampler", "nutpie")
        if kwargs["nuts_sampler"] == "nutpie":
            # the draws' variance, not nutpie's gradient-based estimate: min bulk ESS 511
            # vs 359 of 2 x 1,000 draws at N = 2,500 (the interaction benchmark), same cost
            extra = {"use_grad_based_mass_matrix": False}
            kwargs["nuts_sampler_kwargs"] = extra | dict(kwargs.get("nuts_sampler_kwargs") or {})
        if kwargs.get("mass_matrix", "laplace") == "laplace":
            kwargs["mass_matrix"] = "adapt"
            if str(kwargs.get("init", "")).startswith("jitter+"):
                kwargs["init"] = kwargs["init"].removeprefix("jitter+")
        if "var_names" not in kwargs:
            skip = set(self.score_names)
            kwargs["var_names"] = [
                v.name for v in model.free_RVs + model.deterministics if v.name not in skip
            ]
        return kwargs


def marginal_outcome_logp(y, w, a, lam, d, psi, pred_c):
    r"""Weighted log-likelihood of one outcome's items with its score integrated out.

    The items of an outcome ``eta = pred + zeta`` measured by it alone are, given its
    predictors, normal with mean ``a + lam pred_c`` and covariance ``psi lam lam' +
    diag(d)``; per respondent, over the answered items ``o``, the Woodbury identity
    gives ``log|S_o| = sum_o log d + log(1 + psi s)`` and ``r' S_o^-1 r = sum_o r^2 / d -
    psi t^2 / (1 + psi s)``, with ``s = sum_o lam^2 / d`` and ``t = sum_o lam r / d``:
    elementwise, for any missingness.

    Parameters
    ----------
    y : numpy.ndarray
        ``(N, q)`` standardized answers (NaN missing).
    w : numpy.ndarray
        ``(N,)`` weights.
    a, lam, d : tensor
        ``(q,)`` intercepts at the mean prediction, loadings and residual variances
        (standardized item scale).
    psi : tensor
        The outcome's disturbance variance.
    pred_c : tensor
        ``(N,)`` its prediction, centred at its weighted mean.
    """
    mask = ~np.isnan(y)
    n_obs = mask.sum(1).astype(float)
    maskf = _data(mask.astype(float))
    y0 = _data(np.where(mask, y, 0.0))
    r = (y0 - a[None, :] - pred_c[:, None] * lam[None, :]) * maskf
    inv_d = 1.0 / d
    s_i = pt.dot(maskf, lam**2 * inv_d)
    t_i = pt.dot(r, lam * inv_d)
    quad = pt.dot(r**2, inv_d) - psi * t_i**2 / (1.0 + psi * s_i)
    logdet = pt.dot(maskf, pt.log(d)) + pt.log1p(psi * s_i)
    return -0.5 * pt.sum(_data(w) * (logdet + quad)) - 0.5 * LOG2PI * float(w @ n_obs)


_DATA_NAMES = itertools.count()


def _data(values: np.ndarray, dtype=float):
    """Respondent-level data as a shared variable, not a graph constant.

    A constant of N values is hashed and folded by the graph rewrites at every compile,
    and is code in a compiled numba graph. Named uniquely (nutpie requires it).
    """
    import pytensor

    values = np.ascontiguousarray(values, dtype=dtype)
    return pytensor.shared(values, name=f"cx_data_{next(_DATA_NAMES)}", borrow=True)


def _mvn_logp(values: list[Any], cov, idx: list[int], w, wsum: float):
    """Weighted ``sum_i w_i log MVN(v_i | 0, cov[idx][:, idx])`` of per-respondent columns.

    ``values[r]`` is the ``(N,)`` column of latent ``idx[r]``; forward substitution
    through the scalar Cholesky factor whitens them.
    """
    L = _cholesky_entries(cov, idx)
    z_cols: list[Any] = []
    out = 0.0
    for r, v in enumerate(values):
        z = v
        for c in range(r):
            z = z - L[r][c] * z_cols[c]
        z = z / L[r][r]
        z_cols.append(z)
        out = out - 0.5 * pt.sum(w * z**2) - wsum * (pt.log(L[r][r]) + 0.5 * LOG2PI)
    return out


def _cholesky_entries(cov, idx: list[int]) -> list[list[Any]]:
    """The lower Cholesky factor of ``cov[idx][:, idx]`` as scalar tensors (row lists).

    A covariance that is not positive definite gives a NaN entry (a rejected proposal).
    """
    n = len(idx)
    L: list[list[Any]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            acc = cov[idx[i], idx[j]]
            for c in range(j):
                acc = acc - L[i][c] * L[j][c]
            L[i][j] = pt.sqrt(acc) if i == j else acc / L[j][j]
    return L


def _products_of(structure, k: int) -> str:
    """The product terms latent ``k`` is a part of, as written."""
    names = [p.name for p in structure.interactions if k in p.parts]
    return ", ".join(f"'{n}'" for n in names)
