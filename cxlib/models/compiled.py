"""The models' compiled kernels in PyTensor's numba backend (what nutpie samples).

The likelihood Ops (:class:`~cxlib.models.sem.likelihood.GaussianPatternLogLik`,
:class:`~cxlib.models.sem.scores.ItemLogLik`) evaluate one numba kernel, held as the
Op class's ``kernel``: called from ``perform`` in PyTensor's C backend, and compiled
into the graph in its numba backend once :func:`register_numba` has registered it, so
that nutpie's graph runs without object mode and without the GIL. A kernel takes the
Op's inputs in order (parameters, then the data as constant inputs, so the Op holds no
data) and returns the value first, then the gradients.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections import OrderedDict
from typing import Any

import numpy as np

from cxlib.models.callbacks import compile_cached

__all__ = [
    "CACHE_SIZE",
    "clear_cache",
    "compile_nutpie",
    "declare",
    "register_numba",
    "source_version",
]

_DECLARED: list[type] = []
_REGISTERED: set[type] = set()


def declare(op_type: type) -> type:
    """Class decorator: an Op whose ``kernel`` :func:`register_numba` registers.

    Declaring costs nothing (PyTensor's numba backend is imported at registration).
    """
    if op_type not in _DECLARED:
        _DECLARED.append(op_type)
    return op_type


def source_version(module: str) -> int:
    """A version of a module's kernels for numba's on-disk cache: a hash of its source.

    PyTensor keys a cached numba function by its Op's type, props and this number, so
    an edited kernel is never served from a stale cache.
    """
    text = inspect.getsource(sys.modules[module])
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def register_numba(*op_types: type) -> None:
    """Register the numba implementation of each Op type's ``kernel`` (idempotent).

    Without arguments, every :func:`declare`-d Op. Done on demand (by the nutpie
    sampler), so that fits with PyMC's sampler do not import PyTensor's numba backend.
    """
    todo = [t for t in (op_types or _DECLARED) if t not in _REGISTERED]
    if not todo:
        return
    from pytensor.link.numba.dispatch.basic import (
        numba_njit,
        register_funcify_default_op_cache_key,
    )

    for op_type in todo:
        kernel = op_type.kernel
        version = source_version(op_type.__module__)

        def funcify(op, node, kernel=kernel, version=version, **kwargs):
            @numba_njit
            def kernel_op(*args):
                out = kernel(*args)
                return (np.array(out[0]),) + out[1:]

            return kernel_op, version

        register_funcify_default_op_cache_key(op_type)(funcify)
        _REGISTERED.add(op_type)


# ----------------------------------------------------------------------------- compile once
#: Compiled nutpie models kept in this process (least recently used dropped first).
CACHE_SIZE = 8
_CACHE: OrderedDict[str, Any] = OrderedDict()


def _round_scalar(value: float) -> bool:
    """Whether a scalar constant is structural (kept in the graph): 0, +-1, halves up to 10."""
    return not np.isfinite(value) or (abs(value) <= 10 and float(value * 2).is_integer())


def _describe(obj, depth: int = 0):
    """A value-based description of an Op's prop (a transform, a function, an array)."""
    import types

    if depth > 4:
        return "<deep>"
    if isinstance(obj, types.FunctionType):
        cells = tuple(_describe(c.cell_contents, depth + 1) for c in obj.__closure__ or ())
        code = hashlib.sha256(obj.__code__.co_code + repr(obj.__code__.co_consts).encode())
        return ("function", obj.__module__, obj.__qualname__, code.hexdigest(), cells)
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes().hex())
    if isinstance(obj, str | int | float | bool | type(None) | np.generic):
        return repr(obj)
    if isinstance(obj, tuple | list):
        return tuple(_describe(o, depth + 1) for o in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        state = sorted((k, _describe(v, depth + 1)) for k, v in vars(obj).items())
        return (type(obj).__module__, type(obj).__qualname__, tuple(state))
    return repr(obj)


def _op_signature(op) -> str | None:
    """A stable description of an Op (type and props), or None when there is none.

    PyMC's model-variable wrappers carry a transform object as their prop: described
    by its type and state (a function by its code and closure). Anything whose
    description still holds a memory address is unstable.
    """
    if type(op).__module__ == "pymc.model.fgraph":
        props = [_describe(getattr(op, p)) for p in getattr(op, "__props__", ())]
        text = repr((type(op).__qualname__, props))
    elif hasattr(op, "__props__"):
        props = tuple(getattr(op, p) for p in op.__props__)
        text = repr((type(op).__module__, type(op).__qualname__, props))
    else:
        return None
    return None if " at 0x" in text else text


#: The packs the lifted data travel in, by dtype kind: one shared vector each.
_PACKS = {"f": ("cx_data_float", "float64"), "i": ("cx_data_int", "int64")}


def _lift_data(model):
    """A copy of ``model`` whose data are two shared vectors, those data, and its key.

    Every float constant of the model's graph that is an array, or a scalar that is not
    a small round number, and every shared tensor of the model (its respondent-level
    data) is replaced by a slice of one shared vector per dtype kind (``cx_data_float``,
    ``cx_data_int``), reshaped to its shape: a compiled model reads two data arrays
    however many the graph had (nutpie's compile grows with their number). The key
    hashes the graph with those slices as typed placeholders (offsets and shapes
    included) and every other constant by value: two models with one key compute the
    same function of their data, so one compiled model serves both, given the other's
    data (``with_data``). A graph whose Ops cannot be named stably gets no key (None).

    Returns
    -------
    (pymc.Model, dict of str to numpy.ndarray, str or None)
    """
    import pytensor
    from pymc.model.fgraph import fgraph_from_model, model_from_fgraph
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.tensor.type import TensorType

    fgraph, _ = fgraph_from_model(model)
    lifted_vars: list[tuple[Any, np.ndarray, str, int]] = []
    sizes = dict.fromkeys(_PACKS, 0)
    digest = hashlib.sha256()
    # the graph's own inputs (value variables) by position; shared inputs are data
    ids: dict[Any, tuple] = {
        v: ("input", i, str(v.type))
        for i, v in enumerate(fgraph.inputs)
        if not isinstance(v, SharedVariable)
    }
    stable = True
    for k, node in enumerate(fgraph.toposort()):
        entries = []
        for var in node.inputs:
            if var in ids:
                entries.append(ids[var])
                continue
            shared = isinstance(var, SharedVariable)
            value = var.get_value(borrow=True) if shared else getattr(var, "data", None)
            kind = np.asarray(value).dtype.kind if value is not None else ""
            kind = "i" if kind in "iub" and shared else kind
            lift = (
                isinstance(var.type, TensorType)
                and kind in _PACKS
                and (shared or kind == "f" and not (np.ndim(value) == 0 and _round_scalar(value)))
            )
            if lift:
                value = np.asarray(value)
                lifted_vars.append((var, value, kind, sizes[kind]))
                ids[var] = ("data", kind, sizes[kind], value.shape, str(var.type))
                sizes[kind] += value.size
            elif isinstance(var, Constant):
                raw = np.asarray(var.data)
                ids[var] = ("const", str(var.type), raw.dtype.str, raw.shape, raw.tobytes().hex())
            else:  # random generators and other non-data shared state
                ids[var] = ("shared", type(var.type).__name__)
            entries.append(ids[var])
        signature = _op_signature(node.op)
        stable &= signature is not None
        digest.update(repr((signature, entries)).encode())
        for j, out in enumerate(node.outputs):
            ids[out] = ("node", k, j)
    digest.update(repr([(ids.get(o), o.name) for o in fgraph.outputs]).encode())
    # the labels the posterior is stored with are the compiled model's
    coords = sorted((k, tuple(map(str, v or ()))) for k, v in model.coords.items())
    dims = sorted((k, tuple(v)) for k, v in model.named_vars_to_dims.items())
    digest.update(repr((coords, dims)).encode())
    data, packs = {}, {}
    for kind, (name, dtype) in _PACKS.items():
        parts = [v.ravel() for _, v, kd, _ in lifted_vars if kd == kind]
        if parts:
            data[name] = np.ascontiguousarray(np.concatenate(parts), dtype=dtype)
            packs[kind] = pytensor.shared(data[name], name=name, borrow=True)
    replacements = []
    for var, value, kind, start in lifted_vars:
        piece = packs[kind][start : start + value.size].reshape(value.shape)
        replacements.append((var, piece.astype(var.type.dtype)))
    if replacements:
        fgraph.replace_all(replacements, import_missing=True)
    lifted = model_from_fgraph(fgraph, mutate_fgraph=True)
    if _names(lifted) != _names(model):  # e.g. a Potential and a Deterministic of one variable
        return model, {}, None
    return lifted, data, (digest.hexdigest() if stable else None)


def _names(model) -> tuple:
    """The names of a model's free variables, deterministics and potentials."""
    return tuple(
        sorted(v.name for v in group)
        for group in (model.free_RVs, model.deterministics, model.potentials)
    )


def compile_nutpie(model, *, var_names=None):
    """The compiled nutpie model of ``model``, compiled once per structure in this process.

    The model's data are lifted into shared variables (:func:`_lift_data`); a model of
    the same structure compiled before (same key, and the same PyTensor, nutpie and
    cxlib kernels) is reused with this model's data, so a refit on another segment,
    wave or simulated dataset of the same shapes pays no compile. The graph's initial
    values are left out (the sampler sets the chains' starts). In a new process, the
    C callbacks of a structure compiled before are loaded from the disk cache of
    :mod:`cxlib.models.callbacks` (only PyTensor's graph functions are prepared again,
    from PyTensor's own cache).

    Returns
    -------
    (nutpie.compiled_pyfunc.CompiledModel, str)
        The compiled model and how it was obtained: ``"hit"`` (reused in this process),
        ``"disk"`` (its callbacks loaded from the disk cache), ``"miss"`` (compiled and
        kept; ``"miss (unwritable)"`` / ``"miss (unsupported)"`` when the disk cache
        could not be used), or ``"uncached"`` (compiled, its graph has no stable key).
    """
    import nutpie

    register_numba()
    names = tuple(var_names) if var_names is not None else None
    # the starts are the sampler's, not the graph's: PyMC's conversion to a function graph
    # refuses models with initial values
    saved = dict(model.rvs_to_initial_values)
    try:
        model.rvs_to_initial_values.update(dict.fromkeys(saved))
        lifted, data, key = _lift_data(model)
    finally:
        model.rvs_to_initial_values.update(saved)
    if key is not None:
        key = hashlib.sha256(repr((key, names)).encode()).hexdigest()
        if key in _CACHE:
            _CACHE.move_to_end(key)
            cached = _CACHE[key]
            # a pack the compiled functions do not read (e.g. dimension lengths only) is not theirs
            data = {k: v for k, v in data.items() if k in cached.shared_data}
            return cached.with_data(**data), "hit"
    if key is None:
        return nutpie.compile_pymc_model(lifted, backend="numba", var_names=var_names), "uncached"
    compiled, origin = compile_cached(lifted, key, var_names=var_names)
    _CACHE[key] = compiled
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled, {"disk": "disk", "compiled": "miss"}.get(origin, f"miss ({origin})")


def clear_cache() -> None:
    """Forget the compiled models of this process."""
    _CACHE.clear()
