"""Composites (``F <~ x1 + x2 + x3``) against closed forms, and as an outcome.

With observed indicators and an outcome measured without error, ``Y ~ F`` with
``F <~ x1 + x2 + x3`` is the regression of ``Y`` on the indicators: ``b * w_j`` is the
indicators' OLS coefficient ``beta_j``. The composite has variance 1, so ``b`` is
``sqrt(beta' Cov(x) beta)`` and the weights are ``beta / b``. The posterior under the
default priors must sit on the OLS solution at N = 2,000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxlib.models import BayesianSEM

pytestmark = pytest.mark.slow


def _regression_data(n=2000, seed=5):
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.3, 0.2], [0.3, 1.0, 0.4], [0.2, 0.4, 1.0]])
    x = rng.multivariate_normal(np.zeros(3), cov, n) * [1.0, 2.0, 0.5] + [3.0, 1.0, 0.0]
    y = x @ [0.4, 0.1, 0.8] + rng.normal(scale=1.0, size=n)
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": y})


def test_composite_weights_are_the_regression_of_the_outcome_on_its_indicators():
    frame = _regression_data()
    design = np.column_stack([np.ones(len(frame)), frame[["x1", "x2", "x3"]].to_numpy()])
    beta = np.linalg.lstsq(design, frame["y"].to_numpy(), rcond=None)[0][1:]
    result = BayesianSEM("F <~ x1 + x2 + x3\nY =~ y\nY ~ F").fit(
        frame, draws=700, tune=700, random_seed=3
    )
    assert result.diagnostics.ok
    est = result.estimates().set_index(["lhs", "op", "rhs"])["mean"]
    x = frame[["x1", "x2", "x3"]].to_numpy()
    b = np.sqrt(beta @ np.cov(x, rowvar=False, ddof=0) @ beta)
    np.testing.assert_allclose(est[("Y", "~", "F")], b, rtol=0.03)
    weights = np.array([est[("F", "<~", v)] for v in ("x1", "x2", "x3")])
    # posterior SDs of the weights here are ~0.01-0.02
    np.testing.assert_allclose(weights, beta / b, atol=0.04)
    table = result.composites().set_index("indicator")
    np.testing.assert_allclose(table["weight"], weights)
    # the composite has variance 1 (its scale); its standardized weights sum above 0 (its sign)
    np.testing.assert_allclose(np.var(x @ weights), 1.0, atol=0.03)
    # VIF from the model-implied correlations equals the data's (a saturated block)
    corr = np.corrcoef(frame[["x1", "x2", "x3"]].to_numpy(), rowvar=False)
    np.testing.assert_allclose(table["vif"], np.diag(np.linalg.inv(corr)), rtol=0.05)
    # standardized weights: raw weight x sd(x) / sd(F), F the weighted sum
    f = x @ weights
    std = weights * frame[["x1", "x2", "x3"]].std(ddof=0).to_numpy() / f.std()
    np.testing.assert_allclose(table["weight_std"], std, atol=0.03)
    # the implied loading is the indicator's correlation with the composite
    loading = [np.corrcoef(frame[x], f)[0, 1] for x in ("x1", "x2", "x3")]
    np.testing.assert_allclose(table["loading"], loading, atol=0.03)


def test_a_composite_as_mediator_reports_its_regression():
    rng = np.random.default_rng(8)
    n = 1500
    X = rng.normal(size=n)
    x = np.column_stack([0.5 * X + rng.normal(size=n) for _ in range(3)])
    y = x @ [0.3, 0.3, 0.2] + rng.normal(size=n)
    frame = pd.DataFrame({"X": X, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": y})
    sem = BayesianSEM("F <~ x1 + x2 + x3\nY =~ y\nF ~ X\nY ~ F")
    kinds = {p.name: p.kind for p in sem.structure.params}
    assert kinds["F ~ X"] == "composite_path" and kinds["x2 ~ X"] == "path"
    result = sem.fit(frame, draws=500, tune=500, random_seed=2)
    est = result.estimates().set_index(["lhs", "op", "rhs"])["mean"]
    w = np.array([est[("F", "<~", v)] for v in ("x1", "x2", "x3")])
    # 'F ~ X' is the regression of the composite on X: OLS of w'x on X
    f = x @ w
    slope = np.polyfit(X, f, 1)[0]
    np.testing.assert_allclose(est[("F", "~", "X")], slope, rtol=0.05)
