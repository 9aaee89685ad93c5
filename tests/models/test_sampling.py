"""How the models start NUTS (cxlib.models.sampling): the Laplace approximation and its fallback."""

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from cxlib.errors import ModelSpecificationError
from cxlib.models.sampling import laplace_approximation, laplace_nuts, nuts_start


def _regression_model(seed=3, n=200):
    """A conjugate-looking linear regression: posterior mode and covariance are known."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = X @ np.array([1.0, -0.5]) + rng.normal(scale=0.7, size=n)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0.0, 10.0, shape=2)
        sigma = pm.HalfNormal("sigma", 2.0)
        pm.Normal("y", pt.dot(X, beta), sigma, observed=y)
    return model, X, y


def test_laplace_approximation_finds_the_mode_and_its_curvature():
    model, X, y = _regression_model()
    step = pm.NUTS(vars=model.value_vars, model=model)
    mode, cov = laplace_approximation(model, step)
    # value vars in model order: beta (2), sigma_log__ (1)
    beta_ols = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(mode[:2], beta_ols, atol=2e-3)  # the N(0, 10) prior barely pulls
    s = np.exp(mode[2])
    resid = y - X @ mode[:2]
    assert s == pytest.approx(np.sqrt(resid @ resid / len(y)), rel=0.02)
    # the coefficients' covariance is sigma^2 (X'X)^-1 (up to the weak prior)
    np.testing.assert_allclose(cov[:2, :2], s**2 * np.linalg.inv(X.T @ X), rtol=0.02)
    # log sigma: variance 1 / (2 n) at the mode
    assert cov[2, 2] == pytest.approx(1 / (2 * len(y)), rel=0.05)


def test_laplace_nuts_gives_distinct_starts_and_samples():
    model, _, _ = _regression_model()
    step, starts = laplace_nuts(model, tune=50, chains=3, seed=1, target_accept=0.9)
    assert len(starts) == 3
    assert {"beta", "sigma"} <= set(starts[0])
    assert not np.allclose(starts[0]["beta"], starts[1]["beta"])  # overdispersed, not one point
    assert step.target_accept == 0.9
    kwargs = {
        "mass_matrix": "laplace",
        "tune": 100,
        "draws": 100,
        "chains": 2,
        "cores": 1,
        "random_seed": 5,
        "init": "jitter+adapt_full",
        "target_accept": 0.85,
        "progressbar": False,
        "compute_convergence_checks": False,
    }
    assert nuts_start(model, kwargs) == "laplace"
    assert "init" not in kwargs and "target_accept" not in kwargs and "mass_matrix" not in kwargs
    with model:
        idata = pm.sample(**kwargs)
    assert int(idata.sample_stats.diverging.sum()) == 0


def _badly_scaled_model(n=5000):
    """Coefficients whose posterior SDs differ 1,000-fold and correlate: hard for a unit start."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), 50 * x, 50 * x + rng.normal(size=n)])
    y = X @ np.array([1.0, 0.01, -0.005]) + rng.normal(size=n)
    with pm.Model() as model:
        beta = pm.Normal("beta", 0, 10, shape=3)
        sigma = pm.HalfNormal("sigma", 2)
        pm.Normal("y", pt.dot(X, beta), sigma, observed=y)
    return model


def test_the_laplace_start_saves_leapfrog_steps_where_pymcs_start_struggles():
    steps = {}
    for mode in ("laplace", "adapt"):
        model = _badly_scaled_model()
        kwargs = {
            "mass_matrix": mode,
            "tune": 100,
            "draws": 100,
            "chains": 2,
            "cores": 1,
            "random_seed": 5,
            "init": "jitter+adapt_full",
            "target_accept": 0.85,
            "progressbar": False,
            "compute_convergence_checks": False,
            "discard_tuned_samples": False,
        }
        assert nuts_start(model, kwargs) == mode
        with model:
            idata = pm.sample(**kwargs)
        steps[mode] = float(
            idata.warmup_sample_stats.n_steps.sum() + idata.sample_stats.n_steps.sum()
        )
    # measured: ~12 steps per iteration (laplace) vs ~78 (adapt) over tuning + draws
    assert steps["laplace"] < 0.5 * steps["adapt"], steps


@pytest.mark.parametrize(
    "seed",
    [
        None,
        7,
        np.int64(7),
        [1, 2],
        np.random.default_rng(7),
        np.random.RandomState(7),
        np.random.SeedSequence(7),
    ],
    ids=["None", "int", "np.int64", "list", "Generator", "RandomState", "SeedSequence"],
)
def test_any_seed_pymc_takes_gives_starts_without_touching_it(seed):
    model, _, _ = _regression_model()
    state = seed.bit_generator.state if isinstance(seed, np.random.Generator) else None
    _, starts = laplace_nuts(model, tune=10, chains=2, seed=seed, target_accept=0.8)
    assert len(starts) == 2
    if state is not None:
        assert seed.bit_generator.state == state  # copied, not advanced
    if isinstance(seed, int):
        again = laplace_nuts(model, tune=10, chains=2, seed=seed, target_accept=0.8)[1]
        np.testing.assert_array_equal(again[0]["beta"], starts[0]["beta"])


def test_chains_and_the_callers_initvals_are_respected():
    model, _, _ = _regression_model()
    kwargs = {"chains": None, "cores": 3, "random_seed": 1}
    assert nuts_start(model, kwargs) == "laplace"
    assert len(kwargs["initvals"]) == 3  # PyMC runs max(2, cores) chains
    mine = {"sigma": 0.7}
    kwargs = {"chains": 2, "random_seed": 1, "initvals": mine}
    assert nuts_start(model, kwargs) == "laplace"
    assert kwargs["initvals"] is mine and "step" in kwargs  # Laplace mass matrix, their start


def test_a_collapsed_pooling_spread_falls_back_to_pymcs_start():
    # no data on the group effects: the mode is at spread -> 0 (log spread -> -inf), where the
    # Hessian is not positive definite; Laplace must say so, not hand NUTS a broken matrix
    with pm.Model() as model:
        spread = pm.HalfNormal("spread", 1.0)
        pm.Normal("effect", 0.0, spread, shape=4)
    step = pm.NUTS(vars=model.value_vars, model=model)
    assert laplace_approximation(model, step) is None
    kwargs = {"tune": 10, "chains": 2, "random_seed": 1, "init": "jitter+adapt_diag"}
    assert nuts_start(model, kwargs) == "adapt"
    assert kwargs == {"tune": 10, "chains": 2, "random_seed": 1, "init": "jitter+adapt_diag"}


def test_mass_matrix_choice_is_checked_and_respected():
    model, _, _ = _regression_model()
    with pytest.raises(ModelSpecificationError, match="mass_matrix.*'laplace', 'adapt'.*'dense'"):
        nuts_start(model, {"mass_matrix": "dense"})
    kwargs = {"mass_matrix": "adapt", "init": "jitter+adapt_full"}
    assert nuts_start(model, kwargs) == "adapt"
    assert kwargs == {"init": "jitter+adapt_full"}
    own = pm.NUTS(vars=model.value_vars, model=model)
    kwargs = {"step": own}
    assert nuts_start(model, kwargs) == "adapt" and kwargs["step"] is own  # the caller's step
    assert nuts_start(model, {"nuts_sampler": "numpyro"}) == "adapt"


def test_each_model_passes_its_own_laplace_weight(monkeypatch):
    # the SEM's marginal posterior is close to Gaussian (weight 10 draws per dimension); the
    # hierarchical models' default is 1 — a refactor once dropped the SEM's back to 1
    import cxlib.models.base as base_module
    from cxlib.models import BayesianSEM
    from cxlib.models.base import CxModel
    from cxlib.models.sampling import nuts_start as real
    from tests.models.sem.builders import MODEL, simulate_small

    seen = []

    def spy(model, kwargs, weight=1.0):
        seen.append(weight)
        return real(model, kwargs, weight=weight)

    monkeypatch.setattr(base_module, "nuts_start", spy)
    sem = BayesianSEM(MODEL)
    sem.fit(simulate_small(n=200), draws=20, tune=20, chains=1, cores=1)
    assert seen == [10.0] and BayesianSEM._laplace_weight == 10.0
    assert sem.fit_options["nuts_start"] == "laplace"

    # the hierarchical models sample through the same CxModel.sample with their own weight
    class Tiny(CxModel):
        default_model_config = {}

        def build_model(self):
            self.model = _regression_model()[0]
            return self.model

    tiny = Tiny()
    tiny.build_model()
    idata = tiny.sample(
        {
            "draws": 20,
            "tune": 20,
            "chains": 1,
            "cores": 1,
            "random_seed": 1,
            "progressbar": False,
            "compute_convergence_checks": False,
        }
    )
    assert seen[-1] == CxModel._laplace_weight == 1.0
    assert idata.attrs["nuts_start"] == "laplace"
    step, _ = laplace_nuts(
        _regression_model()[0], tune=10, chains=1, seed=0, target_accept=0.8, weight=10.0
    )
    assert step.potential._initial_weight == 10 * 3  # 3 unconstrained dimensions
