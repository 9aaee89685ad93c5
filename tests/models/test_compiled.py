"""The likelihood kernels in PyTensor's numba backend, and the nutpie sampler."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cxlib.models.compiled import register_numba, source_version
from tests.models.sem.test_model import _many_pattern_data, _random_moments


def _numba_and_c(build):
    """Compile ``build()``'s outputs in the C and the numba backends; object-mode warnings."""
    import pytensor

    register_numba()
    inputs, outputs, values = build()
    c_fn = pytensor.function(inputs, outputs, mode="FAST_RUN")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nb_fn = pytensor.function(inputs, outputs, mode="NUMBA")
        nb = nb_fn(*values)
    object_mode = [str(w.message) for w in caught if "object mode" in str(w.message)]
    return c_fn(*values), nb, object_mode


@pytest.mark.slow
def test_pattern_likelihood_runs_in_numba_without_object_mode():
    import pytensor.tensor as pt

    from cxlib.models.sem.likelihood import pattern_loglik

    d = _many_pattern_data(groups=True)
    mu, sigma = _random_moments(np.random.default_rng(3), len(d.items), len(d.groups))

    def build():
        m = pt.dmatrix("mu")
        s = pt.tensor3("sigma", dtype="float64")
        ll = pattern_loglik(m, s, d.moments_dict())
        return [m, s], [ll, *pt.grad(ll, [m, s])], [mu, sigma]

    c_out, nb_out, object_mode = _numba_and_c(build)
    assert object_mode == []
    for a, b in zip(c_out, nb_out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_item_likelihood_runs_in_numba_without_object_mode():
    import pytensor.tensor as pt

    from cxlib.models.sem.scores import ItemData, item_log_lik

    rng = np.random.default_rng(0)
    n, p = 200, 6
    y = rng.normal(size=(n, p))
    y[rng.random((n, p)) < 0.1] = np.nan
    data = ItemData(y, rng.uniform(0.5, 1.5, n), [[j // 3] for j in range(p)])
    values = [rng.normal(size=(n, 2)), rng.uniform(0.5, 1.5, (p, 2)), rng.normal(size=p)]
    values.append(rng.uniform(0.5, 1.0, p))

    def build():
        eta, lam = pt.dmatrix("eta"), pt.dmatrix("lam")
        nu, sd = pt.dvector("nu"), pt.dvector("sd")
        ll = item_log_lik(eta, lam, nu, sd, data)
        return [eta, lam, nu, sd], [ll, *pt.grad(ll, [eta, lam, nu, sd])], values

    c_out, nb_out, object_mode = _numba_and_c(build)
    assert object_mode == []
    for a, b in zip(c_out, nb_out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_source_version_changes_with_the_source(tmp_path, monkeypatch):
    import importlib
    import sys

    path = tmp_path / "cx_kernel_probe.py"
    path.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("cx_kernel_probe")
    first = source_version("cx_kernel_probe")
    assert first == source_version("cx_kernel_probe")
    path.write_text("X = 2\n")
    importlib.reload(module)
    assert source_version("cx_kernel_probe") != first
    sys.modules.pop("cx_kernel_probe", None)


@pytest.mark.slow
def test_nutpie_and_pymc_agree_on_a_continuous_sem():
    """Same model, both samplers: posterior means within a few Monte Carlo errors."""
    from cxlib.models.sem import BayesianSEM
    from tests.models.sem.builders import MODEL, simulate_small

    frame = simulate_small(n=400, seed=11)
    fits = {
        s: BayesianSEM(MODEL).fit(frame, draws=500, tune=500, nuts_sampler=s, random_seed=3)
        for s in ("pymc", "nutpie")
    }
    assert fits["nutpie"].idata.posterior.attrs["nuts_sampler"] == "nutpie"
    est = {s: r.estimates().set_index(["lhs", "op", "rhs"]) for s, r in fits.items()}
    for s, r in fits.items():
        assert r.diagnostics.max_r_hat < 1.02, s
        assert r.diagnostics.divergences == 0, s
    diff = (est["nutpie"]["mean"] - est["pymc"]["mean"]).abs()
    mcse = np.hypot(est["nutpie"]["sd"], est["pymc"]["sd"]) / np.sqrt(200)
    assert (diff < 5 * mcse + 1e-3).all(), diff[diff >= 5 * mcse + 1e-3]


TINY_MODEL = """
Experience =~ CX1 + CX2 + CX3
Loyalty =~ LOY1 + LOY2 + LOY3
Loyalty ~ Experience
"""


def _tiny(n: int, seed: int, prefix: tuple[str, str] = ("CX", "LOY")):
    import pandas as pd

    rng = np.random.default_rng(seed)
    exp = rng.normal(size=n)
    loy = 0.5 * exp + np.sqrt(0.75) * rng.normal(size=n)
    cols = {}
    for name, lat in zip(prefix, (exp, loy), strict=True):
        for k in range(1, 4):
            cols[f"{name}{k}"] = 3 + 0.8 * lat + 0.6 * rng.normal(size=n)
    return pd.DataFrame(cols)


@pytest.mark.slow
def test_a_refit_of_the_same_structure_reuses_the_compiled_model():
    """Compile once per structure: a second dataset is a cache hit with its own posterior."""
    from cxlib.models.compiled import clear_cache
    from cxlib.models.sem import BayesianSEM

    def fit(frame, model=TINY_MODEL):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return BayesianSEM(model).fit(
                frame, draws=400, tune=400, nuts_sampler="nutpie", random_seed=5
            )

    clear_cache()
    first = fit(_tiny(300, seed=1))
    assert first.idata.posterior.attrs["compiled"] == "miss"
    other = _tiny(300, seed=2)
    hit = fit(other)
    assert hit.idata.posterior.attrs["compiled"] == "hit"
    clear_cache()
    fresh = fit(other)  # a new process would do this: the callbacks come from the disk cache
    assert fresh.idata.posterior.attrs["compiled"] == "disk"
    est = {
        k: r.estimates().set_index(["lhs", "op", "rhs"])
        for k, r in (("hit", hit), ("fresh", fresh))
    }
    mcse = np.hypot(est["hit"]["sd"], est["fresh"]["sd"]) / np.sqrt(150)
    diff = (est["hit"]["mean"] - est["fresh"]["mean"]).abs()
    assert (diff < 5 * mcse + 1e-3).all(), diff[diff >= 5 * mcse + 1e-3]
    # the hit fitted the second dataset, not the first one's data
    path = ("Loyalty", "~", "Experience")
    gap = abs(
        est["hit"].loc[path, "mean"]
        - first.estimates().set_index(["lhs", "op", "rhs"]).loc[path, "mean"]
    )
    assert gap > 0.01
    # other item names are other labels: not the same compiled model
    renamed = other.rename(columns=lambda c: c.replace("CX", "EXP"))
    relabeled = fit(renamed, TINY_MODEL.replace("CX", "EXP"))
    assert relabeled.idata.posterior.attrs["compiled"] == "miss"
    assert "EXP1" in relabeled.estimates()["rhs"].tolist()


_FIT_IN_A_PROCESS = """
import json, sys, warnings
warnings.simplefilter("ignore")
from cxlib.models.sem import BayesianSEM
from tests.models.test_compiled import TINY_MODEL, _tiny
fit = BayesianSEM(TINY_MODEL).fit(_tiny(300, seed=1), draws=200, tune=200, chains=2,
                                  nuts_sampler="nutpie", random_seed=5)
path = fit.estimates().set_index(["lhs", "op", "rhs"]).loc[("Loyalty", "~", "Experience"), "mean"]
print(json.dumps({"compiled": fit.idata.posterior.attrs["compiled"], "path": float(path)}))
"""


def _fit_in_a_new_process(cache) -> dict:
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "CX_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _FIT_IN_A_PROCESS],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_new_process_loads_the_compiled_callbacks_from_disk(tmp_path):
    """The sampler's C callbacks survive the process: cold, warm, damaged, unwritable."""
    cold = _fit_in_a_new_process(tmp_path)
    assert cold["compiled"] == "miss"
    warm = _fit_in_a_new_process(tmp_path)
    assert warm["compiled"] == "disk"
    assert warm["path"] == pytest.approx(cold["path"], abs=1e-12)  # the same function, seeded
    # damaged cache files (a full disk, a crash while numba wrote them) are compiled again
    for index in (tmp_path / "nutpie" / "__pycache__").glob("*.nbc"):
        index.write_bytes(index.read_bytes()[:1000])
    damaged = _fit_in_a_new_process(tmp_path)
    assert damaged["compiled"] == "miss"
    assert damaged["path"] == pytest.approx(cold["path"], abs=1e-12)
    # a cache folder that cannot be created: nutpie's own compile, and the fit goes on
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = _fit_in_a_new_process(blocker)
    assert unwritable["compiled"] == "miss (unwritable)"
    assert unwritable["path"] == pytest.approx(cold["path"], abs=1e-12)


def test_the_cache_folder_keeps_the_most_recently_used_structures(tmp_path):
    import os

    from cxlib.models import callbacks

    for k in range(5):
        module = tmp_path / f"cx_nutpie_{k}.py"
        module.write_text("")
        (tmp_path / "__pycache__").mkdir(exist_ok=True)
        (tmp_path / "__pycache__" / f"cx_nutpie_{k}.logp-1.py311.nbi").write_text("")
        module.with_suffix(".used").touch()
        os.utime(module.with_suffix(".used"), (1000 + k, 1000 + k))
    callbacks.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("*.py")) == ["cx_nutpie_3.py", "cx_nutpie_4.py"]
    assert sorted(p.name for p in (tmp_path / "__pycache__").iterdir()) == [
        "cx_nutpie_3.logp-1.py311.nbi",
        "cx_nutpie_4.logp-1.py311.nbi",
    ]


def test_the_disk_cache_uses_the_nutpie_helpers_it_was_checked_with():
    """nutpie's compile helpers are private: an upgrade must be checked, and says so here."""
    import nutpie
    from nutpie import compile_pymc

    from cxlib.models import callbacks

    assert nutpie.__version__ in callbacks.NUTPIE_VERSIONS, (
        f"nutpie {nutpie.__version__} is not among the versions cxlib.models.callbacks was "
        "checked with: check its use of nutpie.compile_pymc._make_functions, "
        "_prepare_dims_and_coords and CompiledPyMCModel, then add the version"
    )
    for name in (
        "_make_functions",
        "_prepare_dims_and_coords",
        "CompiledPyMCModel",
        "address_as_void_pointer",
    ):
        assert hasattr(compile_pymc, name), name
