"""Shared model pieces of cxlib.models.base."""

import numpy as np
import pytest
from scipy import stats

from cxlib.models.moments import gaussian_loglik_from_moments
from cxlib.models.sampling import one_blas_thread


def test_gaussian_loglik_from_moments_is_the_weighted_sum_over_respondents():
    rng = np.random.default_rng(7)
    G, n, k = 3, 50, 4  # segments, respondents per segment, coefficients
    X = np.concatenate([np.ones((G, n, 1)), rng.normal(size=(G, n, k - 1))], axis=2)
    beta = rng.normal(size=(G, k))
    y = np.einsum("gnk,gk->gn", X, beta) + rng.normal(scale=1.5, size=(G, n))
    w = rng.uniform(0.2, 2.0, size=(G, n))
    sigma = 1.3
    xtwx = np.einsum("gn,gnj,gnk->gjk", w, X, X)
    xtwy = np.einsum("gn,gnk,gn->gk", w, X, y)
    ytwy = np.einsum("gn,gn,gn->g", w, y, y)
    got = gaussian_loglik_from_moments(beta, xtwx, xtwy, ytwy, w.sum(1), sigma).eval()
    mu = np.einsum("gnk,gk->gn", X, beta)
    want = float(np.sum(w * stats.norm.logpdf(y, mu, sigma)))
    assert got == pytest.approx(want, rel=1e-10)


def test_one_blas_thread_limits_blas_inside_and_restores_it():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    assert before, "numpy loads a BLAS library"
    with one_blas_thread():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_a_model_without_data_says_what_to_call():
    from cxlib import config
    from cxlib.errors import ModelSpecificationError
    from cxlib.models.expectations import ExpectationsModel
    from cxlib.models.touchpoints import TouchpointModel
    from cxlib.study import load_study

    study = load_study(config.SAMPLE_STUDY)
    for model in (ExpectationsModel(study), TouchpointModel(study)):
        with pytest.raises(ModelSpecificationError, match=r"call build_model\(data\) or fit"):
            model.build_model()


def _every_model(study):
    from cxlib.models import BayesianSEM, ExpectationsModel, TouchpointModel

    return [BayesianSEM(study), ExpectationsModel(study), TouchpointModel(study)]


def test_every_init_argument_is_saved_in_the_attrs(study):
    import json

    for model in _every_model(study):
        attrs = model.attrs()
        saved = json.loads(attrs["init_arguments"])
        assert set(saved) == set(type(model).init_parameter_names()), type(model).__name__
        rebuilt = type(model).from_init_arguments(saved)
        assert json.loads(rebuilt.attrs()["init_arguments"]) == saved


def test_a_model_with_an_unsaved_init_argument_is_refused(study):
    from cxlib.errors import ModelSpecificationError
    from cxlib.models import TouchpointModel

    class Forgetful(TouchpointModel):
        def __init__(self, study, *, new_option: int = 1, **kwargs):
            self.renamed_option = new_option  # not under its own name: init_arguments misses it
            super().__init__(study, **kwargs)

    with pytest.raises(ModelSpecificationError, match="not in the attrs: new_option"):
        Forgetful(study).attrs()


def test_load_refuses_a_file_without_the_init_arguments(study, tmp_path):
    import arviz as az
    import xarray as xr

    from cxlib.errors import ModelFileError
    from cxlib.models import TouchpointModel

    attrs = TouchpointModel(study).attrs()
    del attrs["init_arguments"]
    idata = az.InferenceData(posterior=xr.Dataset({"x": (("chain", "draw"), np.zeros((1, 2)))}))
    idata.attrs.update(attrs)
    path = tmp_path / "old.nc"
    idata.to_netcdf(str(path))
    with pytest.raises(ModelFileError, match="does not record the model's argument"):
        TouchpointModel.load(path)
