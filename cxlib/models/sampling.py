"""How the models start NUTS: from the Laplace approximation, with a dense mass matrix.

:func:`laplace_nuts` finds the posterior mode, takes the inverse negative Hessian there
as NUTS's starting dense mass matrix (still adapted in tuning) and starts each chain
from its own overdispersed draw of that Gaussian; where the mode is improper it falls
back to PyMC's start. Also the sampling helpers every model shares (one BLAS thread, a
mode search). Measurements and reasoning: ``docs/design/laplace-start.md``.
"""

from __future__ import annotations

import warnings

import numpy as np

from cxlib.errors import ModelSpecificationError

__all__ = [
    "MASS_MATRIX_STARTS",
    "maximize_logp",
    "one_blas_thread",
    "constrained_point",
    "dense_mass_matrix",
    "laplace_approximation",
    "laplace_nuts",
    "nuts_start",
    "nutpie_seed",
    "sample_nutpie",
]


def one_blas_thread():
    """A context in which BLAS uses one thread (for sampling).

    The models' linear algebra per gradient is small (a dense mass matrix, a few
    dozen coefficients), so BLAS threads only compete with the other chains' processes
    (forked, so the limit carries over) and with the compiled likelihood. Measured on
    2 busy cores: the touchpoint model sampled in 158 s with OpenBLAS's default threads
    and in 14 s with one.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def maximize_logp(value_and_grad, x0: np.ndarray, scale: float):
    """Maximize a log density with L-BFGS-B, given its value and gradient.

    Parameters
    ----------
    value_and_grad : callable
        ``z -> (value, gradient)`` on the unconstrained scale; non-finite values are
        treated as a wall.
    x0 : numpy.ndarray
        Starting point.
    scale : float
        The objective is divided by it, so that gradients are of order 1.

    Returns
    -------
    scipy.optimize.OptimizeResult
    """
    from scipy.optimize import minimize

    def objective(z):
        val, grad = value_and_grad(z)
        if not np.isfinite(val):
            return 1e10, np.zeros_like(z)
        return -val / scale, -grad / scale

    return minimize(
        objective,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-15},
    )


#: The ``mass_matrix`` choices of the models' ``sampler_config``: ``"laplace"`` (default,
#: :func:`laplace_nuts`, falling back to PyMC's start) or ``"adapt"`` (PyMC's ``init``).
MASS_MATRIX_STARTS = ("laplace", "adapt")

#: How far apart the chains start: each from the Laplace Gaussian with its SD times this.
START_SPREAD = 1.5


def dense_mass_matrix(n: int, mean: np.ndarray, cov: np.ndarray, *, tune: int, weight: float):
    """A dense mass matrix started at ``cov`` (worth ``weight * n`` draws), adapted in tuning.

    PyMC's ``QuadPotentialFullAdapt`` replaces its estimate by the covariance of the
    last window's draws alone (no initial weight) after every ``adaptation_window``
    draws: with the default window of 101 the Laplace covariance was thrown away after
    101 early tuning draws and replaced by a noisy ~100-draw estimate in ~100-135
    dimensions (small step sizes, tree depth 5, slow mixing of segment models). A
    window longer than the tuning keeps the initial covariance in the running,
    weighted estimate for the whole tuning phase.
    """
    from pymc.step_methods.hmc.quadpotential import QuadPotentialFullAdapt

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*experimental feature.*")
        return QuadPotentialFullAdapt(
            n,
            mean,
            (cov + cov.T) / 2,
            initial_weight=max(1, int(weight * n)),
            adaptation_window=max(101, int(tune) + 1),
        )


def _flat_logp(model, step):
    """``f(x) -> (logp, grad)`` over the flat unconstrained vector, and the initial ``x0``.

    Reuses the compiled function of ``step`` (a NUTS step over ``model.value_vars``).
    """
    from pymc.blocking import DictToArrayBijection

    ip = model.initial_point()
    fn = step._logp_dlogp_func._pytensor_function
    x0 = DictToArrayBijection.map({v.name: ip[v.name] for v in model.value_vars}).data

    def value_and_grad(x):
        # copies: a compiled function may hand out its output buffers again
        logp, grad = fn(np.asarray(x, dtype=x0.dtype))
        return float(logp), np.array(grad, copy=True)

    return value_and_grad, x0


def laplace_approximation(model, step):
    """Posterior mode and inverse negative Hessian (unconstrained), or None on failure.

    ``step`` (a NUTS step over ``model.value_vars``) lends its compiled logp and
    gradient; the Hessian comes from central differences of the gradient. None when
    the optimum is not finite or the Hessian there is not positive definite (e.g. a
    pooling spread collapsed to zero).
    """
    f, x0 = _flat_logp(model, step)
    start = f(x0)[0]
    if not np.isfinite(start):
        return None
    res = maximize_logp(f, x0, scale=max(1.0, abs(float(start))))
    mode = res.x
    if not np.all(np.isfinite(mode)):
        return None
    d = mode.size
    H = np.zeros((d, d))
    eps = 1e-5
    for i in range(d):
        e = np.zeros(d)
        e[i] = eps
        H[:, i] = -(f(mode + e)[1] - f(mode - e)[1]) / (2 * eps)
    H = (H + H.T) / 2
    try:
        if not np.all(np.isfinite(H)) or np.linalg.eigvalsh(H).min() <= 0:
            return None
        cov = np.linalg.inv(H)
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    return mode, (cov + cov.T) / 2


def constrained_point(model, flat: np.ndarray) -> dict[str, np.ndarray]:
    """Map a flat vector of unconstrained values to constrained values per RV name."""
    import pytensor

    cached = getattr(model, "_cx_constrain", None)
    if cached is None:
        # compiled once per model (one call per chain start)
        ip = model.initial_point()
        shapes = [ip[v.name].shape for v in model.value_vars]
        exprs = model.replace_rvs_by_values(model.free_RVs)
        fn = pytensor.function(model.value_vars, exprs, on_unused_input="ignore")
        cached = model._cx_constrain = (shapes, fn)
    shapes, fn = cached
    values, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape)) if shape else 1
        values.append(flat[start : start + size].reshape(shape))
        start += size
    return {rv.name: np.asarray(x) for rv, x in zip(model.free_RVs, fn(*values), strict=True)}


def _start_rng(seed) -> np.random.Generator:
    """A generator for the chains' starts from any seed ``pymc.sample`` accepts (no side effects)."""
    from pymc.util import get_random_generator

    if isinstance(seed, np.random.RandomState):
        copy = np.random.RandomState()
        copy.set_state(seed.get_state())
        seed = int(copy.randint(2**31 - 1))
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    return get_random_generator(seed, copy=True)


def _n_chains(kwargs: dict) -> int:
    """The number of chains ``pymc.sample`` will run for these arguments."""
    import os

    chains = kwargs.get("chains")
    if chains is not None:
        return int(chains)
    cores = kwargs.get("cores")
    if cores is None:
        cores = min(4, os.cpu_count() or 1)
    return max(2, int(cores))


def laplace_nuts(
    model, *, tune: int, chains: int, seed=None, target_accept: float, weight: float = 1.0
):
    """A NUTS step started from the Laplace approximation, and one start per chain.

    Parameters
    ----------
    model : pymc.Model
    tune : int
        Tuning steps (the mass matrix keeps the Laplace covariance in its running
        estimate throughout, see :func:`dense_mass_matrix`).
    chains : int
        Number of chains (one start each).
    seed : int, sequence of int, numpy Generator, RandomState, SeedSequence or None
        Seed of the chains' starting draws (what ``pymc.sample`` takes as
        ``random_seed``; a generator is copied, not advanced).
    target_accept : float
        NUTS's target acceptance rate.
    weight : float
        How many draws per dimension the Laplace covariance is worth in the mass
        matrix's running estimate (:func:`dense_mass_matrix`): 10 where the posterior
        is close to Gaussian (the SEM), 1 for hierarchical models, whose pooling
        spreads are skewed and whose mode understates them.

    Returns
    -------
    (pymc.NUTS, list of dict) or None
        The step and the chains' starting points (constrained values per RV name),
        or None when the Laplace approximation failed (use PyMC's start then).
    """
    import pymc as pm

    step = pm.NUTS(vars=model.value_vars, model=model, target_accept=target_accept)
    laplace = laplace_approximation(model, step)
    if laplace is None:
        return None
    mode, cov = laplace
    potential = dense_mass_matrix(cov.shape[0], mode, cov, tune=tune, weight=weight)
    step.potential = potential
    step.integrator._potential = potential
    rng = _start_rng(seed)
    chol = np.linalg.cholesky(cov)
    starts = [
        constrained_point(model, mode + START_SPREAD * chol @ rng.standard_normal(mode.size))
        for _ in range(int(chains))
    ]
    return step, starts


def nuts_start(model, kwargs: dict, weight: float = 1.0) -> str:
    """Apply the ``mass_matrix`` choice to ``pymc.sample`` arguments (in place).

    With ``"laplace"`` (the default) and no ``step`` of the caller's, puts a
    :func:`laplace_nuts` step and starts into ``kwargs`` (dropping ``init`` and
    ``target_accept``, which the step carries). Returns how NUTS starts:
    ``"laplace"``, or ``"adapt"`` (PyMC's ``init``: asked for, a caller's step or
    sampler, or a failed Laplace approximation). ``weight``: see :func:`laplace_nuts`.
    The caller's ``initvals`` are kept (the Laplace covariance still sets the mass
    matrix); without them each chain starts from its own Laplace draw.
    """
    choice = kwargs.pop("mass_matrix", "laplace")
    if choice not in MASS_MATRIX_STARTS:
        raise ModelSpecificationError(
            f"sampler_config['mass_matrix'] must be one of "
            f"{', '.join(map(repr, MASS_MATRIX_STARTS))}, got {choice!r}"
        )
    if choice != "laplace" or "step" in kwargs or kwargs.get("nuts_sampler", "pymc") != "pymc":
        return "adapt"
    start = laplace_nuts(
        model,
        tune=int(kwargs.get("tune", 1000)),
        chains=_n_chains(kwargs),
        seed=kwargs.get("random_seed"),
        target_accept=float(kwargs.get("target_accept", 0.8)),
        weight=weight,
    )
    if start is None:
        return "adapt"
    kwargs["step"] = start[0]
    if kwargs.get("initvals") is None:
        kwargs["initvals"] = start[1]
    kwargs.pop("init", None)
    kwargs.pop("target_accept", None)
    return "laplace"



def nutpie_seed(seed) -> int:
    """The integer seed of nutpie from any seed ``pymc.sample`` accepts (an int is kept)."""
    if isinstance(seed, int | np.integer):
        return int(seed)
    return int(_start_rng(seed).integers(2**31 - 1))


def sample_nutpie(model, kwargs: dict):
    """Sample ``model`` with nutpie's NUTS over its numba-compiled graph.

    The likelihood Ops' kernels are registered for PyTensor's numba backend first
    (:func:`cxlib.models.compiled.register_numba`), so nothing runs in object mode and
    the chains run in parallel threads without the GIL. nutpie adapts a diagonal mass
    matrix (``nuts_sampler_kwargs`` reach ``nutpie.sample``, e.g.
    ``{"low_rank_modified_mass_matrix": True}``); each chain starts from the caller's
    ``initvals`` (or the model's initial point) jittered by U(-1, 1) on the unconstrained
    scale, as PyMC's ``jitter+`` starts (:func:`_initial_point_func`). The model is
    compiled once per structure in the process
    (:func:`cxlib.models.compiled.compile_nutpie`): ``posterior.attrs["compiled"]`` says
    whether this fit reused a compiled model (``"hit"``); ``"sampling_time"`` is the
    sampling alone.

    Parameters
    ----------
    model : pymc.Model
    kwargs : dict
        ``pymc.sample``'s arguments (``draws``, ``tune``, ``chains``, ``cores``,
        ``target_accept``, ``random_seed``, ``initvals``, ``var_names``,
        ``nuts_sampler_kwargs``); PyMC-only ones are ignored.

    Returns
    -------
    arviz.InferenceData
    """
    import dataclasses
    import time

    import nutpie

    from cxlib.models.compiled import compile_nutpie

    initvals = kwargs.get("initvals")
    if isinstance(initvals, list | tuple):
        initvals = initvals[0] if initvals else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Cannot cache compiled function.*")
        compiled, status = compile_nutpie(model, var_names=kwargs.get("var_names"))
    compiled = dataclasses.replace(
        compiled, initial_point_func=_initial_point_func(model, initvals, compiled)
    )
    options = {"save_warmup": False}  # tuning draws are not kept (as PyMC's default)
    start = time.perf_counter()
    idata = nutpie.sample(
        compiled,
        draws=int(kwargs.get("draws", 1000)),
        tune=int(kwargs.get("tune", 1000)),
        chains=int(kwargs.get("chains") or 2),
        cores=int(kwargs.get("cores") or kwargs.get("chains") or 2),
        target_accept=float(kwargs.get("target_accept", 0.8)),
        seed=nutpie_seed(kwargs.get("random_seed")),
        progress_bar=bool(kwargs.get("progressbar", False)),
        **(options | dict(kwargs.get("nuts_sampler_kwargs") or {})),
    )
    idata.posterior.attrs["sampling_time"] = time.perf_counter() - start
    idata.posterior.attrs["nuts_sampler"] = "nutpie"
    idata.posterior.attrs["compiled"] = status
    return idata


def _initial_point_func(model, initvals: dict | None, compiled):
    """``seed -> flat start``: ``model``'s starts jittered as PyMC's, in the compiled layout.

    Each chain starts from ``initvals`` (the model's own starting values) plus U(-1, 1)
    on the unconstrained scale, as PyMC's ``jitter+`` starts do, laid out as the compiled
    model lays out its free variables (its ``shape_info``), which need not be
    ``model``'s order. This model's function, not the one compiled with a cached
    structure's first model. nutpie calls it from its chains' threads: locked.
    """
    import threading

    from pymc.initial_point import make_initial_point_fn

    point_fn = make_initial_point_fn(
        model=model,
        overrides=initvals or None,
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    layout = [
        (name, where)
        for name, where, _ in zip(*compiled.shape_info, strict=True)
        if where.stop <= compiled.n_dim
    ]
    lock = threading.Lock()

    def initial_point(seed=None) -> np.ndarray:
        with lock:
            point = point_fn(seed)
        flat = np.empty(compiled.n_dim, dtype="float64")
        for name, where in layout:
            flat[where] = np.ravel(point[name])
        return flat

    return initial_point
