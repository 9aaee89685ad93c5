"""Bounded dashboard kernels: a closed tab frees its kernel, a GET without a websocket does
not keep one, and past the maximum a page view gets the busy page instead of a kernel.

The server tests run ``cx serve`` with an override ``voila.json`` (``CX_VOILA_CONFIG_DIR``):
short cull timings, one preheated page, at most four kernels, so each finishes in seconds.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from cxlib.dashboard import serve
from tests.dashboard.conftest import serving

#: the test server's bounds (the override voila.json below)
MAX_KERNELS = 4
CULL_IDLE_S = 6
CULL_INTERVAL_S = 2
POOL = 1  # overview.ipynb only


def production_config() -> dict:
    return json.loads(serve.VOILA_CONFIG.read_text())


def test_production_culls_disconnected_kernels_within_a_minute():
    culling = production_config()["MappingKernelManager"]
    assert culling["cull_connected"] is False, "a connected (open) tab must never be culled"
    assert culling["cull_idle_timeout"] + culling["cull_interval"] <= 60


def test_production_bounds_the_kernels():
    config = production_config()
    assert config["CxVoila"]["max_kernels"] >= 10
    assert config["VoilaConfiguration"]["preheat_kernel"] is True


def test_override_folder_comes_first(tmp_path, monkeypatch):
    (tmp_path / "voila.json").write_text("{}")
    monkeypatch.setenv(serve.CONFIG_DIR_VARIABLE, str(tmp_path))
    assert serve.voila_config_dirs() == [tmp_path.resolve(), serve.VOILA_CONFIG.parent]
    argv = serve.voila_argv(8866, "127.0.0.1", serve.DASHBOARDS_DIR)
    assert f"--Voila.config_file_paths={tmp_path.resolve()}" in argv


def test_override_folder_without_voila_json_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(serve.CONFIG_DIR_VARIABLE, str(tmp_path))
    with pytest.raises(serve.ServeError, match=r"CX_VOILA_CONFIG_DIR=.*no voila.json"):
        serve.voila_config_dirs()


class FakeKernels:
    def __init__(self, *ids):
        self.ids = list(ids)

    def list_kernel_ids(self):
        return list(self.ids)


def test_admission_counts_a_view_until_its_kernel_appears():
    kernels = FakeKernels("pool")
    admission = serve.KernelAdmission(max_kernels=3)
    assert admission.admit(kernels)  # takes the pool's kernel; the refill has not started
    assert admission.admit(kernels)
    assert not admission.admit(kernels), "a burst must not pass the maximum"
    kernels.ids += ["refill-1"]
    assert admission.kernels_held(kernels) == 3
    kernels.ids += ["refill-2"]
    assert admission.kernels_held(kernels) == 3
    assert not admission.admit(kernels)
    kernels.ids.remove("pool")  # culled
    assert admission.admit(kernels)


def test_admission_refuses_a_maximum_below_one():
    with pytest.raises(serve.ServeError, match="max_kernels = 0"):
        serve.KernelAdmission(max_kernels=0)


# --- a real server --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bounded_server(sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("voila-override")
    (folder / "voila.json").write_text(
        json.dumps(
            {
                "CxVoila": {"max_kernels": MAX_KERNELS},
                "MappingKernelManager": {
                    "cull_idle_timeout": CULL_IDLE_S,
                    "cull_interval": CULL_INTERVAL_S,
                },
                "VoilaKernelManager": {
                    "kernel_pools_config": {
                        "default": {"pool_size": 0},
                        "overview.ipynb": {"pool_size": POOL},
                    }
                },
            }
        )
    )
    log = tmp_path_factory.mktemp("serve-bounded") / "cx-serve.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(serve.CONFIG_DIR_VARIABLE, str(folder))
        with serving(sample.runs_dir, log, pools=("overview",)) as srv:
            yield srv


def kernel_processes(srv) -> list[psutil.Process]:
    """The server's live kernels (a kernel that exited and is not reaped yet is none)."""
    kernels = []
    for child in psutil.Process(srv.proc.pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "ipykernel" in " ".join(child.cmdline()):
                kernels.append(child)
        except psutil.Error:  # exited while we looked
            pass
    return kernels


def wait_kernels(srv, count: int, timeout: float) -> float:
    """Seconds until the server holds ``count`` kernels (fails past ``timeout``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if len(kernel_processes(srv)) == count:
            return time.monotonic() - start
        time.sleep(0.25)
    pytest.fail(f"{len(kernel_processes(srv))} kernels after {timeout} s, expected {count}")


def get(url: str):
    """Status, headers (an ``email.message.Message``) and body of a plain GET."""
    try:
        with urllib.request.urlopen(url, timeout=120) as reply:
            return reply.status, reply.headers, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


@pytest.mark.browser
def test_plain_gets_keep_no_kernel_and_past_the_maximum_get_the_busy_page(bounded_server):
    srv = bounded_server
    wait_kernels(srv, POOL, 30)
    url = f"{srv.origin}/voila/render/overview.ipynb"
    most = 0
    with ThreadPoolExecutor(max_workers=10) as pool:  # ten viewers (or a bot) at once
        replies = [pool.submit(get, url) for _ in range(10)]
        while not all(r.done() for r in replies):
            most = max(most, len(kernel_processes(srv)))
            time.sleep(0.1)
    assert most <= MAX_KERNELS
    statuses = sorted(r.result()[0] for r in replies)
    # one kernel per view (the pool's, then new ones) up to the maximum, then the busy page
    assert statuses == [200] * (MAX_KERNELS - POOL) + [503] * (10 - MAX_KERNELS + POOL)
    for status, headers, body in (r.result() for r in replies):
        if status == 503:
            assert headers["Retry-After"] == "60"
            assert "The dashboards are busy" in body
            assert "Traceback" not in body
        else:
            cookies = headers.get_all("Set-Cookie") or []
            assert any(c.startswith("_xsrf=") for c in cookies), "the beacon's token is not set"
    waited = wait_kernels(srv, POOL, CULL_IDLE_S + 2 * CULL_INTERVAL_S + 10)
    print(f"kernels of plain GETs culled {waited:.1f} s after the last GET")
    status, _, _ = get(url)
    assert status == 200, "a freed kernel must admit the next viewer"


@pytest.mark.browser
def test_open_tab_keeps_its_kernel_and_closed_tab_shuts_it_down(bounded_server, browser):
    srv = bounded_server
    wait_kernels(srv, POOL, CULL_IDLE_S + 2 * CULL_INTERVAL_S + 30)
    page = browser.new_page()
    page.goto(f"{srv.origin}/voila/render/overview.ipynb", timeout=120_000)
    page.wait_for_selector(".cx-chart svg .role-mark, .cx-missing", timeout=90_000)
    config = json.loads(page.locator("#jupyter-config-data").text_content())
    kernel_id = config["kernelId"]
    wait_kernels(srv, POOL + 1, 30)
    # an idle viewer with the tab open: connected, so never culled
    time.sleep(CULL_IDLE_S + 2 * CULL_INTERVAL_S + 1)
    assert len(kernel_processes(srv)) == POOL + 1, "the open tab's kernel was culled"
    page.goto("about:blank")  # leaving the page: its beforeunload beacon shuts the kernel down
    page.close()
    wait_kernels(srv, POOL, 10)
    log = srv.log.read_text()
    assert not re.search(r"403 POST /voila/api/shutdown", log), "the beacon was refused"
    lines = [line for line in log.splitlines() if kernel_id in line]
    ends = [line for line in lines if "Kernel shutdown" in line or "Culling" in line]
    # the beacon's shutdown comes first (the culler may see the kernel exiting after it)
    story = "\n".join(lines)
    assert ends and "Kernel shutdown" in ends[0], f"culled, not shut down by the tab:\n{story}"
