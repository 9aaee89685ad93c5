"""What a run was made with: code version, package versions, file hashes.

A run's manifest records these, and the up-to-date check compares them: a run
is skipped only when data, parameters, notebook and code are all unchanged.
"""

from __future__ import annotations

import errno
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
from cxlib.errors import CxError

__all__ = [
    "DiskFullError",
    "code_version",
    "disk_full_error",
    "file_sha256",
    "is_disk_full",
    "package_versions",
    "run_key",
    "write_json_atomic",
]


class DiskFullError(CxError, OSError):
    """A file could not be written because its disk is full (the previous file stays).

    An :class:`OSError` too (``errno`` ``ENOSPC``), so code that handles write
    failures keeps handling it; the command line prints its message, which names the
    file and the disk, with exit status 2.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(errno.ENOSPC, message, None if path is None else str(path))

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self):
        return type(self), (self.strerror, self.filename)


#: Words of a full disk in the messages of libraries that do not raise ENOSPC (DuckDB).
_FULL_DISK_WORDS = ("no space left on device", "disk is full", "disk full")


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error (or the error it was raised from) is a full disk."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(words in str(exc).lower() for words in _FULL_DISK_WORDS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def disk_full_error(path: str | Path, exc: BaseException, *, doing: str = "write") -> DiskFullError:
    """The error to raise when writing ``path`` failed on a full disk.

    Parameters
    ----------
    path : str or Path
        The file that could not be written.
    exc : BaseException
        The error the write raised (its text is quoted).
    doing : str
        What was being done, for the message (``"write"``, ``"update"``).
    """
    path = Path(path)
    cause = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0]
    return DiskFullError(
        f"the disk is full: cannot {doing} {path} ({cause}); free space on the disk holding "
        f"{path.parent} and run again (the previous version of the file stays in place)",
        path,
    )


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
    writing fails, ``path`` is untouched and the temporary file removed; a full disk
    raises :class:`DiskFullError`, which names the file.
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
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise disk_full_error(path, exc) from exc
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
