"""Fixtures: a published sample study in tmp (no model sampled), and `cx serve` on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.dashboard.sample import publish_sample

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """``telecom`` (complete, one small cell) and ``telecom-pilot`` (00 only, stale)."""
    root = tmp_path_factory.mktemp("dashboard-runs")
    return publish_sample(root / "runs", root / "work")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`cx serve` in a subprocess, stopped by its own process id."""

    def __init__(self, runs_dir: Path, log: Path):
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = dict(os.environ, CX_RUNS_DIR=str(runs_dir), PYTHONUNBUFFERED="1")
        cx = Path(sys.executable).with_name("cx")
        self.proc = subprocess.Popen(
            [str(cx), "serve", "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cx serve exited: {self.log.read_text()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"cx serve did not listen in {timeout} s: {self.log.read_text()[-2000:]}"
        )

    def wait_pools(self, names, timeout: float = 120) -> None:
        """Wait until every dashboard's preheated kernel is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if all(f"Kernel pool of {n}.ipynb is filled" in text for n in names):
                return
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@contextmanager
def serving(runs_dir: Path, log: Path, pools=("overview", "drivers", "what-if", "segments")):
    """`cx serve` on ``runs_dir`` until the block ends, once the pages' kernels are ready."""
    srv = Server(runs_dir, log)
    try:
        srv.wait()
        srv.wait_pools(list(pools))
        yield srv
    finally:
        srv.stop()


@contextmanager
def chromium(profile: Path, *, height: int = 1000):
    """Debian's Chromium, headless, a fresh profile, nothing downloaded (skips without it)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": height},
            accept_downloads=False,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def server(sample, tmp_path_factory):
    with serving(sample.runs_dir, tmp_path_factory.mktemp("serve") / "cx-serve.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, fresh profile, nothing downloaded."""
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


@pytest.fixture(scope="session")
def plain(tmp_path_factory):
    """``mobile``: no NPS, no segments, labels, 03 and 05 not applicable, an improper SEM."""
    from tests.dashboard.plain import publish_plain

    root = tmp_path_factory.mktemp("dashboard-plain")
    return publish_plain(root / "runs", root / "work") | {"runs_dir": root / "runs"}
