"""Linking the models' compiled likelihoods to an optimized BLAS.

PyTensor compiles every model to C, and its matrix products (``Dot22``, ``Gemv``...) call a
BLAS library named by its ``blas__ldflags`` setting. Installed from PyPI, PyTensor finds none
on a Debian machine: the OpenBLAS inside the NumPy and SciPy wheels has renamed symbols it
cannot link to, and its search for a system BLAS wants ``libcblas`` or ``libgfortran`` beside
Debian's OpenBLAS. It then prints a five-line warning in every process (notebooks, pipeline
logs, ``make run``) and falls back to NumPy's C API for each product.

:func:`configure_blas` runs when :mod:`cxlib.models` is imported, before any model imports
PyTensor, and decides once per process:

1. a ``blas__ldflags`` the user chose (``PYTENSOR_FLAGS`` or a ``.pytensorrc``) is kept;
2. outside Linux, or in a conda environment, PyTensor's own search is left to run (it finds
   conda's MKL or OpenBLAS and macOS's Accelerate);
3. else an OpenBLAS on the system (Debian's ``libopenblas-dev``, which ``make run`` and
   ``make test`` install) is linked;
4. else NumPy's fallback is chosen explicitly and one line says what to install.

The setting goes into ``PYTENSOR_FLAGS`` so that the processes a fit starts (PyMC's chains,
papermill's kernels) make the same choice without searching again.

A linked OpenBLAS runs on one thread (unless ``OPENBLAS_NUM_THREADS`` says otherwise): the
models' products are small (a few dozen coefficients, items or segments), so threads only
compete with the other chains. Measured on the sample study's expectations model, 2 cores
(benchmarks/bench_blas.py): sampling 24.2 s with OpenBLAS's default two threads per chain,
14.6 s with one, 14.7 s with NumPy's fallback.
"""

from __future__ import annotations

import configparser
import ctypes
import logging
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MISSING_BLAS_HINT", "BlasChoice", "choose_blas", "configure_blas", "find_openblas"]

logger = logging.getLogger(__name__)

#: What to install when no BLAS is found (one line, shown once per process).
MISSING_BLAS_HINT = (
    "cxlib: no optimized BLAS found, so model fits use NumPy's slower fallback for matrix "
    "products; install OpenBLAS (Debian/Ubuntu: apt-get install libopenblas-dev) or set "
    "PYTENSOR_FLAGS=blas__ldflags=... to your BLAS"
)

_CHOICE: BlasChoice | None = None
#: The ``PYTENSOR_FLAGS`` entry this module added, if any.
_OWN_FLAG: str | None = None


@dataclass(frozen=True)
class BlasChoice:
    """How PyTensor links BLAS in this process.

    Attributes
    ----------
    source : str
        ``"user"`` (the user's own setting), ``"pytensor"`` (PyTensor's own search),
        ``"openblas"`` (a system OpenBLAS that cxlib found) or ``"none"`` (NumPy's fallback).
    ldflags : str or None
        The flags cxlib set, or ``None`` where it set none.
    threads : int or None
        The OpenBLAS threads cxlib set, or ``None`` where it set none.
    """

    source: str
    ldflags: str | None = None
    threads: int | None = None


def _system_dirs() -> list[Path]:
    """The system's library directories: the ones a linker searches without ``-L``."""
    multiarch = sysconfig.get_config_var("MULTIARCH")
    dirs = []
    for root in ("/usr/local/lib", "/usr/lib", "/lib"):
        if multiarch:
            dirs.append(Path(root) / multiarch)
        dirs.append(Path(root))
    return [*dirs, Path("/usr/lib64")]


def _library_dirs() -> list[Path]:
    """Where a linker looks for ``-l`` libraries on this machine, most specific first."""
    dirs = [Path(sys.prefix) / "lib"]
    dirs += [Path(p) for p in os.environ.get("LIBRARY_PATH", "").split(os.pathsep) if p]
    return [*dirs, *_system_dirs(), Path("/usr/local/lib64")]


def find_openblas(dirs: list[Path] | None = None) -> str | None:
    """The linker flags for an OpenBLAS found on this machine, or ``None``.

    Parameters
    ----------
    dirs : list of pathlib.Path, optional
        Directories to search (default: the prefix's ``lib``, ``LIBRARY_PATH`` and the
        system's library directories).

    Returns
    -------
    str or None
        ``"-lopenblas"`` for a library the linker finds by itself, with ``-L``/``-rpath``
        for one elsewhere; ``None`` when no linkable ``libopenblas.so`` exists (the runtime
        ``libopenblas.so.0`` alone cannot be linked to).
    """
    default_dirs = set(_system_dirs())
    for folder in _library_dirs() if dirs is None else dirs:
        if (folder / "libopenblas.so").exists():
            if folder in default_dirs:
                return "-lopenblas"
            return f"-L{folder} -Wl,-rpath,{folder} -lopenblas"
    return None


def _without_own_flag(flags: str) -> str:
    """``PYTENSOR_FLAGS`` less the entry this module added (so a user's own stays visible)."""
    if _OWN_FLAG is None:
        return flags
    return ",".join(part for part in flags.split(",") if part and part != _OWN_FLAG)


def _flag_keys(flags: str) -> set[str]:
    return {part.split("=", 1)[0].strip() for part in flags.split(",") if "=" in part}


def _user_chose_blas() -> bool:
    """Whether ``PYTENSOR_FLAGS`` or a ``.pytensorrc`` sets ``blas__ldflags``."""
    flags = _without_own_flag(os.environ.get("PYTENSOR_FLAGS", ""))
    if _flag_keys(flags) & {"blas__ldflags", "blas.ldflags"}:
        return True
    default_rc = os.pathsep.join(["~/.pytensorrc", "~/.pytensorrc.txt"])
    for name in os.environ.get("PYTENSORRC", default_rc).split(os.pathsep):
        path = Path(name).expanduser()
        if not path.is_file():
            continue
        rc = configparser.ConfigParser()
        try:
            rc.read(path)
        except configparser.Error:
            continue
        if rc.has_option("blas", "ldflags") or rc.has_option("global", "blas__ldflags"):
            return True
    return False


def _set_ldflags(ldflags: str) -> None:
    """Hand ``ldflags`` to PyTensor: the environment now, its config if already imported."""
    global _OWN_FLAG
    current = _without_own_flag(os.environ.get("PYTENSOR_FLAGS", ""))
    _OWN_FLAG = f"blas__ldflags={ldflags}"
    os.environ["PYTENSOR_FLAGS"] = ",".join(p for p in (current, _OWN_FLAG) if p)
    if "pytensor" in sys.modules:  # imported before cxlib: its setting is read lazily
        import pytensor

        pytensor.config.blas__ldflags = ldflags


def choose_blas(
    *, user_chose: bool, platform: str, in_conda: bool, openblas: str | None
) -> BlasChoice:
    """The rule of the module docstring, on the facts it depends on.

    Parameters
    ----------
    user_chose : bool
        Whether the user set ``blas__ldflags`` themselves.
    platform : str
        ``sys.platform``.
    in_conda : bool
        Whether Python runs in a conda environment.
    openblas : str or None
        :func:`find_openblas`'s answer.

    Returns
    -------
    BlasChoice
    """
    if user_chose:
        return BlasChoice("user")
    if not platform.startswith("linux") or in_conda:
        return BlasChoice("pytensor")
    if openblas is not None:
        return BlasChoice("openblas", openblas)
    return BlasChoice("none", "")


def _one_openblas_thread() -> int | None:
    """Pin the system OpenBLAS (the library PyTensor links) to one thread, unless told."""
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        return None
    try:
        library = ctypes.CDLL("libopenblas.so.0")  # the instance PyTensor's modules will share
        library.openblas_set_num_threads(1)
    except (OSError, AttributeError):
        return None
    return 1


def configure_blas(*, again: bool = False) -> BlasChoice:
    """Choose how PyTensor links BLAS in this process, once; later calls return the choice.

    Parameters
    ----------
    again : bool
        Decide afresh (after installing a BLAS in a running session, or in tests).

    Returns
    -------
    BlasChoice
        What was chosen (:func:`choose_blas`). With ``"none"``, one line on the
        ``cxlib.models.blas`` logger says what to install.
    """
    global _CHOICE
    if _CHOICE is None or again:
        user_chose = _user_chose_blas()
        in_conda = (Path(sys.prefix) / "conda-meta").is_dir()
        choice = choose_blas(
            user_chose=user_chose,
            platform=sys.platform,
            in_conda=in_conda,
            openblas=None if user_chose or in_conda else find_openblas(),
        )
        if choice.ldflags is not None:
            _set_ldflags(choice.ldflags)
        if choice.source == "openblas":
            choice = BlasChoice(choice.source, choice.ldflags, _one_openblas_thread())
        if choice.source == "none":
            logger.warning(MISSING_BLAS_HINT)
        _CHOICE = choice
    return _CHOICE
