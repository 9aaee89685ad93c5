"""What a run was made with: code version, package versions, file hashes.

A run's manifest records these, and the up-to-date check compares them: a run
is skipped only when data, parameters, notebook and code are all unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import cxlib

__all__ = ["code_version", "file_sha256", "package_versions", "run_key", "write_json_atomic"]

#: Packages whose versions each manifest records.
RECORDED_PACKAGES = (
    "cxlib",
    "papermill",
    "nbclient",
    "nbconvert",
    "ipykernel",
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "pymc",
    "pytensor",
    "arviz",
    "dask",
    "distributed",
)


@cache
def code_version() -> str:
    """Cxlib's version plus a digest of its source files (``0.1.0+3f2a9c1d``).

    Any change to cxlib's code — released or not — changes it, so runs made with
    other code are never taken as up to date.
    """
    root = Path(cxlib.__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        if "__pycache__" in file.parts:
            continue
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return f"{cxlib.__version__}+{digest.hexdigest()[:12]}"


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (None when missing)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def host() -> dict[str, Any]:
    """Where a run ran: host name and process id."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "platform": platform.platform()}


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (cached by path, size and modification time)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def run_key(**parts: Any) -> str:
    """A digest of everything that determines a run's result."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one.

    The text goes to a temporary file beside ``path``, is flushed to disk, and
    replaces ``path`` with :func:`os.replace` (atomic on POSIX and Windows). If
    writing fails (disk full), ``path`` is untouched and the temporary file removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, default=_json_default)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover
        pass
    return str(value)
