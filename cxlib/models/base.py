"""The life cycle every cxlib model shares: configure, build, fit, diagnose, save, load.

A model class fixes two properties, :attr:`CxModel.default_model_config` (priors and
modelling options, keyed by the PyMC variable name) and
:attr:`CxModel.default_sampler_config`; the user's dicts are merged over them
(``defaults | user``, and one level deeper for prior dicts, so ``{"path": {"sigma": 0.5}}``
changes only the scale of the path prior). ``build_model()`` makes the PyMC model;
``fit()`` samples it and returns a :class:`ModelResult` that keeps the ArviZ
InferenceData, carries its :class:`Diagnostics` and saves itself to netCDF with the
cxlib version, the model type, both configs and the data hash in the attrs.
``CxModel.load`` refuses a file written by another model type or cxlib version.

PyMC and ArviZ are imported here, so import this module only when a model is used.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxlib import __version__, config
from cxlib.errors import CxError

__all__ = [
    "ConvergenceWarning",
    "CxModel",
    "Diagnostics",
    "ModelFileError",
    "ModelResult",
    "ModelSpecificationError",
    "as_frame",
    "diagnose",
    "frame_hash",
    "make_prior",
    "maximize_logp",
    "merge_config",
    "one_blas_thread",
]


class ModelSpecificationError(CxError, ValueError):
    """A model that cannot be fitted as specified (not identified, items missing, ...)."""


class ModelFileError(CxError):
    """A saved model file that does not belong to this model type or cxlib version."""


class ConvergenceWarning(UserWarning):
    """The sampler did not converge: R-hat too high, ESS too low or divergences."""


# ----------------------------------------------------------------------------- config
def merge_config(defaults: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    """Merge a user's config over defaults, one level deep for dict values.

    Parameters
    ----------
    defaults : dict
        The model's defaults.
    user : dict, optional
        The user's overrides. A dict value whose key exists in the defaults and has
        the same ``dist`` (or none) updates the default dict; otherwise it replaces it.

    Returns
    -------
    dict
        A new dict; neither input is changed.
    """
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in defaults.items()}
    for key, value in (user or {}).items():
        old = merged.get(key)
        if (
            isinstance(value, dict)
            and isinstance(old, dict)
            and value.get("dist", old.get("dist")) == old.get("dist")
        ):
            merged[key] = {**old, **value}
        else:
            merged[key] = dict(value) if isinstance(value, dict) else value
    return merged


def make_prior(name: str, spec: dict[str, Any], **kwargs):
    """Create a PyMC random variable from a prior spec such as ``{"dist": "Normal", "sigma": 1}``.

    Parameters
    ----------
    name : str
        PyMC variable name.
    spec : dict
        ``dist`` names a PyMC distribution; the other keys are its parameters.
    **kwargs
        Passed on (``dims``, ``shape``, ``initval``, ...). Parameters given here win.

    Returns
    -------
    pytensor.tensor.TensorVariable
    """
    import pymc as pm

    spec = dict(spec)
    dist_name = spec.pop("dist", None)
    dist = getattr(pm, str(dist_name), None)
    if dist is None:
        raise ModelSpecificationError(
            f"prior for {name!r}: unknown distribution {dist_name!r}; "
            "use the name of a PyMC distribution, e.g. {'dist': 'Normal', 'mu': 0, 'sigma': 1}"
        )
    spec.update({k: v for k, v in kwargs.items() if k not in ("dims", "shape", "initval")})
    extra = {k: v for k, v in kwargs.items() if k in ("dims", "shape", "initval")}
    return dist(name, **spec, **extra)


def gaussian_loglik_from_moments(beta, xtwx, xtwy, ytwy, sum_w, sigma):
    """Weighted normal regression log-likelihood from sufficient statistics.

    ``y ~ Normal(X beta, sigma)`` summed over respondents with weights ``w``, evaluated from
    X'WX, X'Wy, y'Wy and the weight total only, so its cost does not depend on the number of
    respondents. Leading axes (one set of moments per segment) are summed over.

    Parameters
    ----------
    beta : tensor, shape (..., k)
        Regression coefficients (intercept column included in X).
    xtwx : array, shape (..., k, k)
    xtwy : array, shape (..., k)
    ytwy, sum_w : array, shape (...)
    sigma : tensor
        Residual standard deviation.

    Returns
    -------
    pytensor.tensor.TensorVariable
        The summed log-likelihood (a scalar).
    """
    import pytensor.tensor as pt

    quad = pt.sum(beta[..., :, None] * xtwx * beta[..., None, :], axis=(-2, -1))
    rss = ytwy - 2.0 * pt.sum(beta * xtwy, axis=-1) + quad
    return pt.sum(-0.5 * sum_w * pt.log(2.0 * np.pi * sigma**2) - rss / (2.0 * sigma**2))


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


def frame_hash(values: np.ndarray | pd.DataFrame) -> str:
    """SHA-256 (first 16 hex digits) of an array's or frame's values, for data-hash checks."""
    if isinstance(values, pd.DataFrame):
        raw = pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes()
        raw += ",".join(map(str, values.columns)).encode()
    else:
        raw = np.ascontiguousarray(values).tobytes()
    return hashlib.sha256(raw).hexdigest()[:16]


def as_frame(data) -> tuple[pd.DataFrame, str | None]:
    """The respondent frame of a DataFrame or :class:`cxlib.data.SurveyData`, and its data hash."""
    if isinstance(data, pd.DataFrame):
        return data, None
    frame = getattr(data, "frame", None)
    if isinstance(frame, pd.DataFrame) and hasattr(data, "study"):
        return frame, getattr(data, "data_hash", None)
    raise ModelSpecificationError(
        f"data must be a pandas DataFrame or cxlib SurveyData, got {type(data).__name__}"
    )


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


# ----------------------------------------------------------------------------- diagnostics
@dataclass
class Diagnostics:
    """Convergence diagnostics of a fit.

    Attributes
    ----------
    max_r_hat : float
        Largest rank-normalized R-hat over the monitored parameters.
    min_ess_bulk : float
        Smallest bulk effective sample size.
    divergences : int
        Number of divergent transitions after tuning.
    r_hat, ess_bulk : pandas.Series
        Per parameter (index: readable parameter names).
    sign_disagreement : list of str
        Parameters whose chains settled in modes of opposite sign.
    max_r_hat_allowed, min_ess_allowed : float
        The thresholds applied (from :mod:`cxlib.config` unless overridden).
    """

    max_r_hat: float
    min_ess_bulk: float
    divergences: int
    r_hat: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    ess_bulk: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    sign_disagreement: list[str] = field(default_factory=list)
    max_r_hat_allowed: float = config.MAX_R_HAT
    min_ess_allowed: float = config.MIN_ESS_BULK

    @property
    def high_r_hat(self) -> list[str]:
        """Parameters with R-hat above the threshold."""
        return list(self.r_hat.index[self.r_hat > self.max_r_hat_allowed])

    @property
    def low_ess(self) -> list[str]:
        """Parameters with bulk ESS below the threshold."""
        return list(self.ess_bulk.index[self.ess_bulk < self.min_ess_allowed])

    @property
    def ok(self) -> bool:
        """True when every gate passes."""
        return not (
            self.high_r_hat or self.low_ess or self.divergences > 0 or self.sign_disagreement
        )

    def problems(self) -> list[str]:
        """One sentence per failed gate, naming the parameters."""
        out = []
        if self.high_r_hat:
            out.append(
                f"R-hat above {self.max_r_hat_allowed} for "
                + _name_list(self.high_r_hat, self.r_hat, "{:.3f}")
            )
        if self.low_ess:
            out.append(
                f"bulk ESS below {self.min_ess_allowed:g} for "
                + _name_list(self.low_ess, self.ess_bulk, "{:.0f}")
            )
        if self.divergences:
            out.append(
                f"{self.divergences} divergent transition(s); raise target_accept "
                "(sampler_config) or reparametrize"
            )
        if self.sign_disagreement:
            out.append(
                "chains disagree in sign (a reflected mode) for "
                + ", ".join(self.sign_disagreement[:8])
            )
        return out

    def to_frame(self) -> pd.DataFrame:
        """Per-parameter R-hat and bulk ESS."""
        return pd.DataFrame({"r_hat": self.r_hat, "ess_bulk": self.ess_bulk})

    def __str__(self) -> str:
        head = (
            f"max R-hat {self.max_r_hat:.3f}, min bulk ESS {self.min_ess_bulk:.0f}, "
            f"{self.divergences} divergences"
        )
        problems = self.problems()
        return head + ("" if not problems else "\n  - " + "\n  - ".join(problems))


def _name_list(names: list[str], values: pd.Series, fmt: str, limit: int = 8) -> str:
    shown = ", ".join(f"{n} ({fmt.format(values[n])})" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def diagnose(
    draws: Any,
    *,
    divergences: int = 0,
    sign_disagreement: list[str] | None = None,
    max_r_hat: float = config.MAX_R_HAT,
    min_ess_bulk: float = config.MIN_ESS_BULK,
) -> Diagnostics:
    """Compute R-hat and bulk ESS per parameter.

    Parameters
    ----------
    draws : xarray.DataArray
        Dims ``(chain, draw, param)`` with readable ``param`` coordinates.
    divergences : int
        Divergent transitions counted by the caller.
    sign_disagreement : list of str, optional
        Parameters whose chains disagree in sign.
    max_r_hat, min_ess_bulk : float
        Thresholds (default from :mod:`cxlib.config`).

    Returns
    -------
    Diagnostics
    """
    import arviz as az

    names = [str(p) for p in draws["param"].values]
    arr = np.asarray(draws.values, dtype=float)
    constant = np.nanstd(arr.reshape(-1, arr.shape[-1]), axis=0) < 1e-12
    ds = draws.to_dataset(name="x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat = az.rhat(ds)["x"].values
        ess = az.ess(ds, method="bulk")["x"].values
    rhat = np.where(constant, np.nan, rhat)
    ess = np.where(constant, np.nan, ess)
    r = pd.Series(rhat, index=names, dtype=float)
    e = pd.Series(ess, index=names, dtype=float)
    return Diagnostics(
        max_r_hat=float(np.nanmax(rhat)) if np.isfinite(rhat).any() else float("nan"),
        min_ess_bulk=float(np.nanmin(ess)) if np.isfinite(ess).any() else float("nan"),
        divergences=int(divergences),
        r_hat=r,
        ess_bulk=e,
        sign_disagreement=list(sign_disagreement or []),
        max_r_hat_allowed=max_r_hat,
        min_ess_allowed=min_ess_bulk,
    )


def count_divergences(idata) -> int:
    """Divergent transitions in ``idata.sample_stats`` (0 when not recorded)."""
    stats = getattr(idata, "sample_stats", None)
    if stats is None or "diverging" not in stats:
        return 0
    return int(np.asarray(stats["diverging"]).sum())


# ----------------------------------------------------------------------------- result
class ModelResult:
    """A fitted model: the InferenceData, its diagnostics, and saving.

    Parameters
    ----------
    model : CxModel
        The model that was fitted (or rebuilt from a file).
    idata : arviz.InferenceData
        The posterior, with the attrs :meth:`CxModel._attrs` wrote.
    """

    def __init__(self, model: CxModel, idata):
        self.model = model
        self.idata = idata
        self._diagnostics: Diagnostics | None = None

    # subclasses override to monitor their own parameters
    def _compute_diagnostics(self) -> Diagnostics:
        import arviz as az

        post = az.extract(self.idata, combined=False)
        names = [v for v in post.data_vars if "chain" in post[v].dims]
        stacked = [
            post[v].stack(param=[d for d in post[v].dims if d not in ("chain", "draw")])
            if post[v].ndim > 2
            else post[v].expand_dims(param=[v], axis=-1)
            for v in names
        ]
        import xarray as xr

        arr = xr.concat(
            [s.reset_index("param", drop=True) if "param" in s.indexes else s for s in stacked],
            dim="param",
        )
        return diagnose(arr, divergences=count_divergences(self.idata))

    @property
    def diagnostics(self) -> Diagnostics:
        """R-hat, bulk ESS and divergences (computed once)."""
        if self._diagnostics is None:
            self._diagnostics = self._compute_diagnostics()
        return self._diagnostics

    @property
    def ok(self) -> bool:
        """False when R-hat > 1.01, bulk ESS < 400, any divergence or a sign disagreement."""
        return self.diagnostics.ok

    def warn_if_not_converged(self) -> None:
        """Emit a :class:`ConvergenceWarning` naming the parameters when a gate fails."""
        d = self.diagnostics
        if not d.ok:
            warnings.warn(
                f"{type(self.model).__name__} did not converge: " + "; ".join(d.problems()),
                ConvergenceWarning,
                stacklevel=3,
            )

    @property
    def attrs(self) -> dict[str, Any]:
        """The attrs stored with the posterior (version, model type, configs, data hash)."""
        return dict(self.idata.attrs)

    def save(self, path: str | Path) -> Path:
        """Write the InferenceData (with its attrs) to a netCDF file.

        Parameters
        ----------
        path : str or Path
            The file to write; parent folders are created.

        Returns
        -------
        Path
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        self.idata.to_netcdf(str(tmp))
        tmp.replace(path)
        return path


# ----------------------------------------------------------------------------- model
class CxModel(ABC):
    """Base of every cxlib model.

    Parameters
    ----------
    model_config : dict, optional
        Overrides of :attr:`default_model_config` (priors keyed by PyMC variable name).
    sampler_config : dict, optional
        Overrides of :attr:`default_sampler_config` (arguments of ``pymc.sample``).
    """

    #: Written to the file attrs and checked on load.
    _model_type: ClassVar[str] = "CxModel"
    #: How much the Laplace covariance counts in NUTS's mass matrix (draws per dimension,
    #: see :func:`cxlib.models.sampling.laplace_nuts`): little for hierarchical models.
    _laplace_weight: ClassVar[float] = 1.0
    _result_class: ClassVar[type[ModelResult]] = ModelResult

    def __init__(
        self,
        *,
        model_config: dict[str, Any] | None = None,
        sampler_config: dict[str, Any] | None = None,
    ):
        self._user_model_config = dict(model_config or {})
        self._user_sampler_config = dict(sampler_config or {})
        unknown = set(self._user_model_config) - set(self.default_model_config)
        unknown = {k for k in unknown if not self._accepts_config_key(k)}
        if unknown:
            raise ModelSpecificationError(
                f"model_config has unknown key(s) {sorted(unknown)}; "
                f"known: {sorted(self.default_model_config)}"
            )
        self.model_config = merge_config(self.default_model_config, model_config)
        self.sampler_config = merge_config(self.default_sampler_config, sampler_config)
        self.model = None
        self.result: ModelResult | None = None

    def _need_data(self):
        """The prepared data, or a clear error when no data was given yet."""
        if getattr(self, "data", None) is None:
            raise ModelSpecificationError("no data yet: call build_model(data) or fit(data) first")
        return self.data

    def _accepts_config_key(self, key: str) -> bool:
        """Whether a model_config key outside the defaults is allowed (per-parameter priors)."""
        return False

    @property
    @abstractmethod
    def default_model_config(self) -> dict[str, Any]:
        """Default priors and options, keyed by PyMC variable name."""

    @property
    def default_sampler_config(self) -> dict[str, Any]:
        """Default arguments of ``pymc.sample``."""
        return {
            "chains": 2,
            "cores": 2,
            "target_accept": 0.85,
            "progressbar": False,
            "compute_convergence_checks": False,
        }

    def _sample(self, kwargs: dict[str, Any]):
        """``pymc.sample(**kwargs)`` over :attr:`model`, with one BLAS thread.

        NUTS starts as ``kwargs["mass_matrix"]`` says (:func:`cxlib.models.sampling.nuts_start`:
        from the Laplace approximation by default); ``idata.attrs["nuts_start"]``
        records how it started.
        """
        import pymc as pm

        from cxlib.models.sampling import nuts_start

        kwargs = dict(kwargs)
        with self.model, one_blas_thread():
            start = nuts_start(self.model, kwargs, weight=self._laplace_weight)
            idata = pm.sample(**kwargs)
        idata.attrs["nuts_start"] = start
        return idata

    @abstractmethod
    def build_model(self, *args, **kwargs):
        """Build and return the PyMC model (also kept as ``self.model``)."""

    # -- attrs ---------------------------------------------------------------
    def _attrs(self, data_hash: str = "") -> dict[str, str]:
        """Attrs written with the posterior; subclasses add their own keys."""
        return {
            "cxlib_version": __version__,
            "model_type": self._model_type,
            "model_config": json.dumps(self.model_config, sort_keys=True, default=str),
            "sampler_config": json.dumps(self.sampler_config, sort_keys=True, default=str),
            "data_hash": data_hash,
        }

    @classmethod
    def _from_attrs(cls, attrs: dict[str, Any]) -> CxModel:
        """Rebuild the model (unfitted) from the attrs of a saved file."""
        return cls(
            model_config=json.loads(attrs["model_config"]),
            sampler_config=json.loads(attrs["sampler_config"]),
        )

    def _restore(self, idata) -> ModelResult:
        """Attach a loaded posterior; subclasses restore what they need from it."""
        self.result = self._result_class(self, idata)
        return self.result

    def save(self, path: str | Path) -> Path:
        """Save the fitted posterior (see :meth:`ModelResult.save`)."""
        if self.result is None:
            raise ModelSpecificationError("nothing to save: call fit() first")
        return self.result.save(path)

    @classmethod
    def load(cls, path: str | Path) -> ModelResult:
        """Load a fitted model saved with ``save``.

        Parameters
        ----------
        path : str or Path
            A netCDF file written by ``save``.

        Returns
        -------
        ModelResult
            The result, with ``.model`` rebuilt from the stored syntax and config.

        Raises
        ------
        ModelFileError
            When the file is missing, was made by another model type or by another
            cxlib version.
        """
        import arviz as az

        path = Path(path)
        if not path.exists():
            raise ModelFileError(f"{path}: file not found")
        try:
            idata = az.from_netcdf(str(path))
        except Exception as exc:  # noqa: BLE001 - any reader failure means "not our file"
            raise ModelFileError(f"{path}: not a netCDF file written by cxlib ({exc})") from None
        attrs = dict(idata.attrs)
        kind = attrs.get("model_type")
        version = attrs.get("cxlib_version")
        if kind != cls._model_type:
            raise ModelFileError(
                f"{path}: this file holds a {kind or 'non-cxlib'} model, not a "
                f"{cls._model_type}; load it with the class that saved it"
            )
        if version != __version__:
            raise ModelFileError(
                f"{path}: saved by cxlib {version}, but this is cxlib {__version__}; "
                "refit the model with this version (results are not migrated)"
            )
        model = cls._from_attrs(attrs)
        return model._restore(idata)
