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
import inspect
import json
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cxlib import __version__, config
from cxlib.errors import ConvergenceWarning, ModelFileError, ModelSpecificationError
from cxlib.models.diagnostics import Diagnostics, diagnose_posterior
from cxlib.models.sampling import nuts_start, one_blas_thread, sample_nutpie
from cxlib.study import Study, study_from_dict

__all__ = [
    "CxModel",
    "ModelResult",
    "as_frame",
    "frame_hash",
    "make_prior",
    "merge_config",
]


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


# ----------------------------------------------------------------------------- result
class ModelResult:
    """A fitted model: the InferenceData, its diagnostics, and saving.

    Parameters
    ----------
    model : CxModel
        The model that was fitted (or rebuilt from a file).
    idata : arviz.InferenceData
        The posterior, with the attrs :meth:`CxModel.attrs` wrote.
    """

    def __init__(self, model: CxModel, idata):
        self.model = model
        self.idata = idata
        #: The prepared data the model was fitted to (kept: a refit does not change it).
        self.data = model.data
        self._diagnostics: Diagnostics | None = None

    def flat_draws(self, name: str) -> np.ndarray:
        """A posterior variable's draws with the chains stacked: (samples, ...)."""
        v = self.idata.posterior[name]
        return np.asarray(v.values).reshape(-1, *v.shape[2:])

    @property
    def notes(self) -> list[str]:
        """What was imputed, left out or flagged when the data were prepared."""
        return list(getattr(self.data, "notes", []) or [])

    # subclasses override to monitor their own parameters
    def _compute_diagnostics(self) -> Diagnostics:
        return diagnose_posterior(self.idata)

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
    """Base of every cxlib model, and the one life cycle they share.

    :meth:`fit` is written once, here: prepare the data and build the graph
    (:meth:`prepare_fit`), merge the sampler config with the caller's arguments
    (:meth:`sampler_kwargs`), sample under one BLAS thread (:meth:`sample`: NUTS from
    the Laplace approximation), attach the data and the attrs, make the result and
    warn when a diagnostic gate fails. A model supplies its data preparation, its
    graph (:meth:`build_model`), the arguments that rebuild it
    (:meth:`init_arguments`) and, where it must, its own sampling step.

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
    #: The class of the prepared data (with ``to_dataset`` / ``from_dataset``).
    _data_class: ClassVar[type | None] = None
    #: Keyword arguments of :meth:`fit` that are options of the fit (passed to
    #: :meth:`prepare_fit`), not arguments of ``pymc.sample``.
    fit_option_names: ClassVar[tuple[str, ...]] = ()

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
        self.data = getattr(self, "data", None)
        self.fit_options: dict[str, Any] = {}
        self.result: ModelResult | None = None

    def _need_data(self):
        """The prepared data, or a clear error when no data was given yet."""
        if getattr(self, "data", None) is None:
            raise ModelSpecificationError("no data yet: call build_model(data) or fit(data) first")
        return self.data

    def prepared_data(self, data=None):
        """The prepared data: ``data`` prepared (:meth:`prepare`), else what was prepared before."""
        if data is not None:
            self.prepare(data)
        return self._need_data()

    def prepare(self, data):
        """Prepare the responses for the model (a model with data preparation overrides this)."""
        raise ModelSpecificationError(f"{type(self).__name__} prepares its data in fit()")

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

    @abstractmethod
    def build_model(self, *args, **kwargs):
        """Build and return the PyMC model (also kept as ``self.model``)."""

    # -- the life cycle ------------------------------------------------------
    def fit(self, data=None, *, random_seed: int | None = None, **kwargs) -> ModelResult:
        """Sample the posterior.

        Parameters
        ----------
        data : pandas.DataFrame or SurveyData, optional
            The responses (left out when :meth:`build_model` was called with them).
        random_seed : int, optional
            Default: ``sampler_config["random_seed"]``, else
            :data:`cxlib.config.DEFAULT_SEED`.
        **kwargs
            Options of the fit (:attr:`fit_option_names`), the rest passed to
            ``pymc.sample`` over :attr:`sampler_config`.

        Returns
        -------
        ModelResult
            Warns with :class:`~cxlib.errors.ConvergenceWarning` when a diagnostic
            gate fails.
        """
        options = {k: kwargs.pop(k) for k in self.fit_option_names if k in kwargs}
        self.prepare_fit(data, **options)
        sample_kwargs = self.sampler_kwargs(kwargs, random_seed)
        with one_blas_thread():
            idata = self.sample(sample_kwargs)
        self.attach_data(idata)
        idata.attrs.update(self.attrs())
        self.result = self._result_class(self, idata)
        self.result.warn_if_not_converged()
        return self.result

    def prepare_fit(self, data=None, **options) -> None:
        """Prepare the data and build the graph for :meth:`fit`.

        The default builds the model from ``data``, or keeps the model built before
        when ``data`` is left out.
        """
        if data is not None or self.model is None:
            if data is None and self.data is None:
                raise ModelSpecificationError("fit() needs the data: fit(data)")
            self.build_model(data)

    def sampler_kwargs(
        self, sample_kwargs: dict[str, Any], random_seed: int | None = None
    ) -> dict[str, Any]:
        """The arguments of ``pymc.sample``: the sampler config, then the caller's."""
        kwargs = self.sampler_config | dict(sample_kwargs)
        if random_seed is not None:
            kwargs["random_seed"] = random_seed
        kwargs.setdefault("random_seed", config.DEFAULT_SEED)
        return kwargs

    def start_values(self) -> dict[str, np.ndarray] | None:
        """Starting values of the chains when NUTS does not start from the Laplace draws."""
        return None

    def sample(self, kwargs: dict[str, Any]):
        """Sample :attr:`model` with the NUTS of ``kwargs["nuts_sampler"]`` (default PyMC's).

        ``"nutpie"``: :func:`cxlib.models.sampling.sample_nutpie` (compiled, its own
        adaptation). PyMC's (``"pymc"``, or another of ``pymc.sample``'s external
        samplers): ``pymc.sample(**kwargs)``, where NUTS starts from the Laplace
        approximation by default
        (:func:`cxlib.models.sampling.nuts_start`); ``idata.attrs["nuts_start"]``
        records how it started. :meth:`fit` calls this under one BLAS thread.
        """
        import pymc as pm

        kwargs = dict(kwargs)
        sampler = kwargs.pop("nuts_sampler", None) or "pymc"
        if sampler == "nutpie":
            initvals = kwargs.get("initvals") or self.start_values()
            idata = sample_nutpie(self.model, kwargs | {"initvals": initvals})
            idata.attrs["nuts_start"] = "adapt"
            return idata
        if sampler != "pymc":
            kwargs["nuts_sampler"] = sampler
            for key in ("init", "compute_convergence_checks", "cores"):
                kwargs.pop(key, None)
        with self.model:
            start = nuts_start(self.model, kwargs, weight=self._laplace_weight)
            if kwargs.get("initvals") is None:
                kwargs["initvals"] = self.start_values()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*BLAS.*")
                warnings.filterwarnings("ignore", category=FutureWarning)
                idata = pm.sample(**kwargs)
        idata.attrs["nuts_start"] = start
        return idata

    def attach_data(self, idata) -> None:
        """Store the prepared data in ``idata.constant_data`` (what a loaded result needs)."""
        ds = self.data.to_dataset()
        if "constant_data" in idata.groups():
            idata.constant_data = idata.constant_data.merge(ds)
        else:
            idata.add_groups({"constant_data": ds})

    # -- attrs ---------------------------------------------------------------
    def init_arguments(self) -> dict[str, Any]:
        """Every ``__init__`` argument, JSON-serializable: what rebuilds this model.

        Read from the attribute of the same name: a study is saved as its spec; a value
        that is not JSON (an array of weights) is saved as None (the data hash names the
        data). A model whose attribute is named otherwise adds it here;
        :meth:`attrs` refuses a model whose ``__init__`` has an argument missing from
        this dict.
        """
        out: dict[str, Any] = {}
        for name in self.init_parameter_names():
            if hasattr(self, name):
                out[name] = _json_argument(getattr(self, name))
        return out

    @classmethod
    def from_init_arguments(cls, arguments: dict[str, Any]) -> CxModel:
        """Rebuild the model (unfitted) from :meth:`init_arguments`."""
        arguments = dict(arguments)
        if isinstance(arguments.get("study"), dict):
            arguments["study"] = study_from_dict(arguments["study"], source="saved model")
        return cls(**arguments)

    @classmethod
    def init_parameter_names(cls) -> list[str]:
        """The names of the ``__init__`` parameters (what the attrs must hold)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [
            p.name
            for p in params
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def attrs(self) -> dict[str, str]:
        """Attrs written with the posterior: version, type, configs, init arguments, data hash."""
        arguments = self.init_arguments()
        missing = sorted(set(self.init_parameter_names()) - set(arguments))
        if missing:
            raise ModelSpecificationError(
                f"{type(self).__name__}.__init__ has parameters that are not in the attrs: "
                f"{', '.join(missing)}; add them to init_arguments() (saving and loading "
                "would lose them)"
            )
        data_hash = getattr(self.data, "data_hash", "") if self.data is not None else ""
        return {
            "cxlib_version": __version__,
            "model_type": self._model_type,
            "model_config": json.dumps(self.model_config, sort_keys=True, default=str),
            "sampler_config": json.dumps(self.sampler_config, sort_keys=True, default=str),
            "init_arguments": json.dumps(arguments, sort_keys=True, default=str),
            "fit_options": json.dumps(self.fit_options, sort_keys=True, default=str),
            "data_hash": data_hash,
        }

    def restore_data(self, idata):
        """The prepared data of a loaded posterior (from its ``constant_data``)."""
        return self._data_class.from_dataset(idata.constant_data)

    def restore(self, idata) -> ModelResult:
        """Attach a loaded posterior: its fit options, its data and the result."""
        self.fit_options = json.loads(idata.attrs.get("fit_options", "{}"))
        self.data = self.restore_data(idata)
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
            The result, with ``.model`` rebuilt from the stored arguments.

        Raises
        ------
        ModelFileError
            When the file is missing, was made by another model type or by another
            cxlib version, or lacks an argument of this model's ``__init__``.
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
        arguments = json.loads(attrs.get("init_arguments", "{}"))
        missing = sorted(set(cls.init_parameter_names()) - set(arguments))
        if missing:
            raise ModelFileError(
                f"{path}: the file does not record the model's argument(s) "
                f"{', '.join(missing)} (saved by an older build of cxlib); refit the model"
            )
        model = cls.from_init_arguments(arguments)
        return model.restore(idata)


def _json_argument(value: Any) -> Any:
    """An ``__init__`` argument as saved in the attrs (see :meth:`CxModel.init_arguments`)."""
    if isinstance(value, Study):
        return value.to_dict()
    if value is None or isinstance(value, str | bool | int | float | list | dict):
        return value
    return None
