"""Bounded dashboard kernels: a closed tab frees its kernel, a GET without a websocket does
not keep one, and past the maximum a page view gets the busy page instead of a kernel.

The server tests run ``cx serve`` with an override ``voila.json`` (``CX_VOILA_CONFIG_DIR``):
short cull timings, one preheated page, at most four kernels, so each finishes in seconds.
Also: a hostile page's failing comm messages get no traceback back (the server log keeps
it); ten tabs opened and closed give their kernels back (production's culling and pool
size); a kernel preheated longer than the execution timeout still serves its viewer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

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


def test_jupyter_client_still_has_the_private_names_cx_relies_on():
    """Two private names of jupyter_client have no public equivalent (8.10): fail loudly when
    an upgrade renames them, rather than silently losing what they give.

    - ``MultiKernelManager._pending_kernels``: a kernel being started is there only;
      ``list_kernel_ids()`` lists it once it is ready (unless ``use_pending_kernels``, which
      changes how jupyter_server and Voila hand out kernels). ``KernelAdmission.kernel_ids``
      (cxlib/dashboard/serve.py) counts it, so a burst of views cannot pass ``max_kernels``.
    - ``KernelManager._async_interrupt_kernel``: ``shutdown_kernel`` calls it directly (not
      the public ``interrupt_kernel``), and a kernel spec's ``interrupt_mode = "message"``
      ends in the same SIGINT; the runner's ``TrackedKernelManager``
      (cxlib/pipeline/runner.py) overrides it to skip the SIGINT before a shutdown
      ("KeyboardInterrupt caught in kernel" on the terminal otherwise).
    """
    import inspect

    import jupyter_client
    from jupyter_client import KernelManager, MultiKernelManager

    version = jupyter_client.__version__
    starts = inspect.getsource(MultiKernelManager._async_start_kernel)
    assert "_pending_kernels" in MultiKernelManager.class_traits() and (
        "self._pending_kernels[kernel_id]" in starts
    ), (
        f"jupyter_client {version} no longer keeps starting kernels in "
        "MultiKernelManager._pending_kernels: KernelAdmission.kernel_ids "
        "(cxlib/dashboard/serve.py) would not count them and a burst of page views could "
        "pass CxVoila.max_kernels; count them from the new name (or a public API)"
    )
    shutdown = inspect.getsource(KernelManager._async_shutdown_kernel)
    assert "await self._async_interrupt_kernel()" in shutdown, (
        f"jupyter_client {version}: KernelManager.shutdown_kernel no longer calls "
        "_async_interrupt_kernel; the override in cxlib/pipeline/runner.py "
        "(TrackedKernelManager) no longer skips the SIGINT before a shutdown: override "
        "what shutdown_kernel calls now"
    )


def test_admission_refuses_a_maximum_below_one():
    with pytest.raises(serve.ServeError, match="max_kernels = 0"):
        serve.KernelAdmission(max_kernels=0)


# --- a real server --------------------------------------------------------------------------


@contextmanager
def serving_with(sample, tmp_path_factory, override: dict, pools=("overview",)):
    """`cx serve` on the sample with ``override`` as its override ``voila.json``."""
    folder = tmp_path_factory.mktemp("voila-override")
    (folder / "voila.json").write_text(json.dumps(override))
    log = tmp_path_factory.mktemp("serve-bounded") / "cx-serve.log"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(serve.CONFIG_DIR_VARIABLE, str(folder))
        with serving(sample.runs_dir, log, pools=pools) as srv:
            yield srv


def overview_pool(size: int) -> dict:
    """Preheat ``size`` kernels of the overview page only (the others start on demand)."""
    return {
        "VoilaKernelManager": {
            "kernel_pools_config": {
                "default": {"pool_size": 0},
                "overview.ipynb": {"pool_size": size},
            }
        }
    }


@pytest.fixture(scope="module")
def bounded_server(sample, tmp_path_factory):
    override = {
        "CxVoila": {"max_kernels": MAX_KERNELS},
        "MappingKernelManager": {
            "cull_idle_timeout": CULL_IDLE_S,
            "cull_interval": CULL_INTERVAL_S,
        },
        **overview_pool(POOL),
    }
    with serving_with(sample, tmp_path_factory, override) as srv:
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


# --- what a hostile page's comm messages get back --------------------------------------------

#: a filesystem path in a message (the server's install, home or temp folders)
SERVER_PATH = re.compile(r"(?:/[\w.+-]+){2,}\.py|/(?:home|usr|work|tmp|opt|srv|root)/")


async def kernel_replies(origin: str, kernel_id: str, messages: list[dict], listen_s: float):
    """Send ``messages`` (header fields filled in) on the kernel's websocket, as a page does;
    every message the client gets back in ``listen_s`` seconds."""
    import uuid

    from tornado.websocket import websocket_connect

    url = origin.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(url)
    session = uuid.uuid4().hex
    try:
        for message in messages:
            header = {
                "msg_id": uuid.uuid4().hex,
                "msg_type": message["msg_type"],
                "session": session,
                "username": "viewer",
                "date": "2026-01-01T00:00:00Z",
                "version": "5.3",
            }
            await ws.write_message(
                json.dumps(
                    {
                        "header": header,
                        "parent_header": {},
                        "metadata": message.get("metadata", {}),
                        "content": message["content"],
                        "channel": "shell",
                        "buffers": [],
                    }
                )
            )
        replies = []
        deadline = time.monotonic() + listen_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                text = await asyncio.wait_for(ws.read_message(), left)
            except TimeoutError:
                break
            if text is None:
                break
            replies.append(json.loads(text))
        return replies
    finally:
        ws.close()


def run_in_thread(coroutine):
    """``asyncio.run`` in a thread of its own (playwright's loop runs in this one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def page_kernel_id(body: str) -> str:
    match = re.search(r'"kernelId":\s*"([0-9a-f-]+)"', body)
    assert match, "the page names no kernel"
    return match.group(1)


def hostile_comms(comm_ids: list[str]) -> list[dict]:
    """A comm_open for no target, one a widget cannot be made from, and bad widget updates."""
    import uuid

    return [
        {
            "msg_type": "comm_open",
            "content": {
                "comm_id": uuid.uuid4().hex,
                "target_name": "cx.no-such-target",
                "data": {},
            },
        },
        {
            "msg_type": "comm_open",
            "metadata": {"version": "2.1.0"},
            "content": {
                "comm_id": uuid.uuid4().hex,
                "target_name": "jupyter.widget",
                "data": {
                    "state": {
                        "_model_name": "NoSuchModel",
                        "_model_module": "cx-evil",
                        "_model_module_version": "6.6.6",
                    },
                    "buffer_paths": [],
                },
            },
        },
        *(
            {
                "msg_type": "comm_msg",
                "content": {
                    "comm_id": comm_id,
                    "data": {"method": "update", "state": {"layout": "IPY_MODEL_nope"}},
                },
            }
            for comm_id in comm_ids
        ),
    ]


@pytest.mark.browser
def test_failed_comms_send_the_viewer_no_traceback_and_the_server_log_keeps_it(bounded_server):
    srv = bounded_server
    wait_kernels(srv, POOL, CULL_IDLE_S + 2 * CULL_INTERVAL_S + 30)
    status, _, body = get(f"{srv.origin}/voila/render/overview.ipynb")
    assert status == 200
    kernel_id = page_kernel_id(body)
    info = {"msg_type": "comm_info_request", "content": {"target_name": "jupyter.widget"}}
    replies = run_in_thread(kernel_replies(srv.origin, kernel_id, [info], 5))
    comms = next(r for r in replies if r["header"]["msg_type"] == "comm_info_reply")
    comm_ids = list(comms["content"]["comms"])[:5]
    assert comm_ids, "the page has no widgets to send updates to"
    log_before = len(srv.log.read_text())
    replies = run_in_thread(kernel_replies(srv.origin, kernel_id, hostile_comms(comm_ids), 8))
    seen = [r for r in replies if r["header"]["msg_type"] in ("stream", "error")]
    leaked = [r["content"] for r in seen if "Traceback" in json.dumps(r["content"])]
    leaked += [r["content"] for r in seen if SERVER_PATH.search(json.dumps(r["content"]))]
    assert not leaked, f"the viewer got a traceback or a server path: {leaked[:2]}"
    log = srv.log.read_text()[log_before:]
    assert "No such comm target registered: cx.no-such-target" in log, log[-3000:]
    assert "Exception opening comm with target: jupyter.widget\nTraceback" in log, log[-3000:]
    assert "TraitError in a message from the page" in log, "the widget's traceback is lost"


def test_voila_starts_python_kernels_with_the_error_routing():
    from jupyter_client.kernelspec import KernelSpecManager

    from cxlib.dashboard.kernel import KERNEL_ARGUMENTS

    spec = serve.voila_app().dashboard_kernel_spec_manager().get_kernel_spec("python3")
    assert spec.argv[-len(KERNEL_ARGUMENTS) :] == list(KERNEL_ARGUMENTS)
    assert (
        spec.argv[: -len(KERNEL_ARGUMENTS)] == KernelSpecManager().get_kernel_spec("python3").argv
    )


def test_a_failing_widget_message_goes_to_the_server_log_and_a_cell_error_as_before(tmp_path):
    """A kernel with cxlib.dashboard.kernel (no Voila): what a page's messages break is logged."""
    import uuid

    from jupyter_client.manager import start_new_kernel

    from cxlib.dashboard.kernel import KERNEL_ARGUMENTS

    server_log = tmp_path / "kernel-stderr.log"
    with server_log.open("w") as stderr:
        km, kc = start_new_kernel(
            kernel_name="python3", extra_arguments=list(KERNEL_ARGUMENTS), stderr=stderr
        )
    try:
        setup = (
            "import ipywidgets, warnings\n"
            "button = ipywidgets.Button()\n"
            "def fail(_):\n"
            "    raise RuntimeError('boom in /srv/cx/handler.py')\n"
            "button.on_click(fail)\n"
            "print(button.comm.comm_id)\n"
        )
        outputs = []
        kc.execute_interactive(setup, timeout=60, output_hook=outputs.append)
        comm_id = next(m["content"]["text"].strip() for m in outputs if m["msg_type"] == "stream")
        for msg_type, content in [
            (
                "comm_msg",
                {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}},
            ),
            ("comm_open", {"comm_id": uuid.uuid4().hex, "target_name": "cx.nope", "data": {}}),
        ]:
            kc.shell_channel.send(kc.session.msg(msg_type, content))
        seen = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                seen.append(kc.get_iopub_msg(timeout=0.5))
            except Exception:  # queue.Empty: nothing more yet
                pass
        leaked = [
            m["content"]
            for m in seen
            if m["msg_type"] in ("stream", "error")
            and ("boom" in json.dumps(m["content"]) or "comm" in json.dumps(m["content"]))
        ]
        assert not leaked, f"the page got: {leaked}"
        cell = []
        kc.execute_interactive("warnings.warn('quiet'); 1/0", timeout=30, output_hook=cell.append)
        assert [m["content"]["ename"] for m in cell if m["msg_type"] == "error"] == [
            "ZeroDivisionError"
        ], "a cell's error must still reach Voila (which hides its traceback)"
        assert not [m for m in cell if m["msg_type"] == "stream"], "a warning reached the page"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    text = server_log.read_text()
    assert "RuntimeError in a message from the page" in text and "boom in /srv" in text
    assert "No such comm target registered: cx.nope" in text
    assert "UserWarning: quiet" in text


# --- ten viewers open and close their tabs ---------------------------------------------------

#: production's pool of a page, and room for ten tabs beside it
TABS, TABS_POOL = 10, 2


@pytest.fixture(scope="module")
def tabs_server(sample, tmp_path_factory):
    """Production's culling and pool size (for the overview page), room for ten tabs."""
    override = {"CxVoila": {"max_kernels": TABS + TABS_POOL + 2}, **overview_pool(TABS_POOL)}
    with serving_with(sample, tmp_path_factory, override) as srv:
        yield srv


@pytest.mark.slow
@pytest.mark.browser
def test_ten_closed_tabs_give_their_kernels_back_within_a_minute(tabs_server, browser):
    srv = tabs_server
    wait_kernels(srv, TABS_POOL, 60)
    url = f"{srv.origin}/voila/render/overview.ipynb"
    start = time.monotonic()
    pages = []
    for _ in range(TABS):
        page = browser.new_page()
        page.goto(url, wait_until="commit", timeout=120_000)
        pages.append(page)
    for page in pages:  # ten kernels start at once on this machine's cores: generous
        page.wait_for_selector(".cx-chart svg .role-mark, .cx-missing", timeout=300_000)
    rendered_s = time.monotonic() - start
    held = len(kernel_processes(srv))
    assert held >= TABS, f"{held} kernels for {TABS} open tabs"
    closing = time.monotonic()
    for page in pages:
        page.close(run_before_unload=True)  # as a browser closes a tab
    wait_kernels(srv, TABS_POOL, 60)
    freed_s = time.monotonic() - closing
    print(
        f"ten tabs rendered in {rendered_s:.1f} s ({held} kernels held); "
        f"back to the pool of {TABS_POOL} {freed_s:.1f} s after closing them"
    )
    log = srv.log.read_text()
    assert not re.search(r"403 POST /voila/api/shutdown", log), "a beacon was refused"
    assert log.count("Kernel shutdown") >= TABS, "the tabs' kernels were culled, not shut down"


# --- a preheated kernel waits for its viewer ---------------------------------------------------

#: the waiting test server's execution timeout (production: 120 s)
EXECUTE_TIMEOUT_S = 12


@pytest.fixture(scope="module")
def waiting_server(sample, tmp_path_factory):
    override = {"VoilaExecutor": {"timeout": EXECUTE_TIMEOUT_S}, **overview_pool(1)}
    with serving_with(sample, tmp_path_factory, override) as srv:
        yield srv


def test_the_cell_waiting_for_the_viewer_has_no_timeout_and_the_others_keep_theirs():
    timeout = serve.WaitingCellTimeout(120)
    assert timeout({"source": "dashboard.apply_request(query_string())  # ?study=NAME"}) is None
    assert (
        timeout({"source": "from voila.utils import wait_for_request\nwait_for_request()"}) is None
    )
    assert timeout({"source": "from cxlib.dashboard import query_string"}) == 120
    assert timeout({"source": "dashboard = OverviewDashboard.from_runs()"}) == 120


@pytest.mark.slow
@pytest.mark.browser
def test_a_kernel_preheated_longer_than_the_timeout_still_serves_its_viewer(waiting_server):
    srv = waiting_server
    wait_kernels(srv, 1, 60)
    time.sleep(EXECUTE_TIMEOUT_S + 18)  # the pool's kernel waits at the request cell
    log = srv.log.read_text()
    assert "Timeout waiting for execute reply" not in log, "the preheated kernel timed out"
    status, _, body = get(f"{srv.origin}/voila/render/overview.ipynb?study=telecom-pilot")
    assert status == 200
    assert "timed out" not in body
