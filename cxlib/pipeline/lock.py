"""One runner per study at a time: an exclusive lock on ``runs/<study>/.lock``.

The lock is an OS file lock (``flock``), so it is released when its holder
exits in any way — including ``kill -9`` — and never goes stale. The file's text
says who holds it, for the message the second runner prints.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from cxlib.pipeline.errors import StudyBusyError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_FILE", "StudyLock"]

LOCK_FILE = ".lock"


class StudyLock:
    """An exclusive, per-study lock held while a runner writes the study's runs.

    Parameters
    ----------
    study_dir : str or Path
        ``runs/<study>/`` (created when missing).
    wait_s : float
        How long to wait for another runner to finish; 0 fails at once.
    holder : str
        What holds the lock (shown to a runner that finds it taken).

    Raises
    ------
    StudyBusyError
        On entering, when another runner still holds the lock after ``wait_s``.
    """

    def __init__(self, study_dir: str | Path, *, wait_s: float = 0.0, holder: str = "cx run"):
        self.study_dir = Path(study_dir)
        self.path = self.study_dir / LOCK_FILE
        self.wait_s = max(float(wait_s), 0.0)
        self.holder = holder
        self._fh = None

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._fh is not None

    def acquire(self) -> StudyLock:
        """Take the lock, waiting up to ``wait_s``; see the class docstring."""
        if fcntl is None:  # pragma: no cover
            raise StudyBusyError("study locks need a POSIX system (Linux, macOS)")
        self.study_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        deadline = time.monotonic() + self.wait_s
        delay = 0.05
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    who = self.describe_holder()
                    fh.close()
                    waited = f" after waiting {self.wait_s:g} s" if self.wait_s else ""
                    raise StudyBusyError(
                        f"study {self.study_dir.name!r} is being refreshed by another runner "
                        f"({who}){waited}; nothing was run. Wait for it to finish, or pass "
                        "--wait SECONDS to queue behind it."
                    ) from None
                time.sleep(min(delay, max(deadline - time.monotonic(), 0.01)))
                delay = min(delay * 2, 1.0)
        fh.seek(0)
        fh.truncate()
        fh.write(
            json.dumps(
                {
                    "holder": self.holder,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
            )
        )
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Release the lock (a no-op when not held)."""
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._fh = None

    def describe_holder(self) -> str:
        """Who holds the lock, as the lock file says."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError):
            info = {}
        if not info:
            return "holder unknown"
        return (
            f"{info.get('holder', 'a runner')}, pid {info.get('pid', '?')} on "
            f"{info.get('host', '?')}, since {info.get('since', '?')}"
        )

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
