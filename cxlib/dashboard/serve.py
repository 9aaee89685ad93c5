"""``cx serve``: Voila on the dashboards directory, configured from the repository.

The settings live in ``voila.json`` at the repository root (read here explicitly,
whatever the working directory): the ``cx`` template (Voila's lab template without
CDN stylesheets), sources stripped, no tracebacks to viewers, no files served from
the dashboards folder, preheated kernels, an execution timeout, ``port_retries = 0``
(a busy port is an error, not a silent move) and culling of idle kernels that no
tab is connected to.

Every page view starts a kernel, so the kernels are bounded here (:func:`voila_app`):

- a tab that closes shuts its kernel down: Voila's ``beforeunload`` beacon
  (``POST /voila/api/shutdown/<kernel>``) sends back the ``_xsrf`` cookie, which Voila's
  page itself never sets; the page handler sets it, so the beacon passes the xsrf check;
- a kernel no tab is connected to (a closed tab whose beacon was lost, a ``curl`` or a
  link-preview bot that never opens a websocket) is culled once idle for
  ``MappingKernelManager.cull_idle_timeout`` (checked every ``cull_interval``); a kernel
  with an open tab is never culled (``cull_connected = false``);
- past ``CxVoila.max_kernels`` kernels (the preheated ones included) a page view gets a
  small "busy, retry in a minute" page (HTTP 503, ``Retry-After``) instead of a kernel.

A preheated kernel runs its page's notebook up to the cell that waits for its viewer's
request (:func:`cxlib.dashboard.query_string`) and waits there until a viewer comes; that
cell has no execution timeout (:class:`WaitingCellTimeout`), the others
``VoilaExecutor.timeout`` (else a kernel preheated more than that before its viewer logs
"Timeout waiting for execute reply" and its page's rendering stops at that cell).

A kernel's errors stay in the server log: the kernels start with
:mod:`cxlib.dashboard.kernel` (:func:`voila_app`'s kernel spec manager adds its
arguments), so a hostile page's failing ``comm_open`` or widget message sends the viewer
no traceback and no server path.

``CX_VOILA_CONFIG_DIR`` names a folder whose ``voila.json`` overrides the repository's,
key by key (a larger machine's ``max_kernels``, a test server's short cull timings).
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import deque
from functools import cache
from pathlib import Path

from cxlib import config
from cxlib.errors import CxError

__all__ = [
    "DASHBOARDS_DIR",
    "KernelAdmission",
    "VOILA_CONFIG",
    "ServeError",
    "WaitingCellTimeout",
    "dashboard_url",
    "serve",
    "trust_dashboards",
    "voila_app",
    "voila_argv",
    "voila_config_dirs",
]

#: The dashboards Voila serves.
DASHBOARDS_DIR = config.REPO_ROOT / "dashboards"
#: Voila's configuration (``voila.json``) lives here.
VOILA_CONFIG = config.REPO_ROOT / "voila.json"
#: Holds ``voila/templates/cx`` (added to ``JUPYTER_PATH``).
TEMPLATE_ROOT = Path(__file__).resolve().parent
#: The page a viewer gets when every kernel is taken (HTTP 503).
BUSY_PAGE = TEMPLATE_ROOT / "voila" / "templates" / "cx" / "busy.html"
#: Names a folder whose ``voila.json`` overrides the repository's (see the module docstring).
CONFIG_DIR_VARIABLE = "CX_VOILA_CONFIG_DIR"


class ServeError(CxError):
    """The dashboards cannot be served (busy port, missing folder)."""


def dashboard_url(host: str, port: int, name: str = "overview") -> str:
    """The URL of a dashboard."""
    return f"http://{host}:{port}/voila/render/{name}.ipynb"


def voila_config_dirs() -> list[Path]:
    """The folders Voila reads ``voila.json`` from, the highest priority first.

    ``$CX_VOILA_CONFIG_DIR`` (when set) overrides the repository's ``voila.json`` key by key.
    """
    extra = os.environ.get(CONFIG_DIR_VARIABLE, "").strip()
    if not extra:
        return [VOILA_CONFIG.parent]
    folder = Path(extra).resolve()
    if not (folder / "voila.json").is_file():
        raise ServeError(f"{CONFIG_DIR_VARIABLE}={extra}: no voila.json in {folder}")
    return [folder, VOILA_CONFIG.parent]


def voila_argv(port: int, host: str, dashboards_dir: Path) -> list[str]:
    """Voila's command line (the rest comes from ``voila.json``)."""
    return [
        str(dashboards_dir),
        f"--port={port}",
        f"--Voila.ip={host}",
        "--Voila.port_retries=0",
        "--no-browser",
        *(f"--Voila.config_file_paths={folder}" for folder in voila_config_dirs()),
    ]


class KernelAdmission:
    """Counts the kernels a server holds and admits a page view only below the maximum.

    A page view costs one kernel: the preheated one it takes is replaced, or a kernel starts
    for it. The replacement starts a moment later (Voila's ``fill_delay``), so a burst of views
    would all see the old count: an admitted view therefore counts as a kernel of its own until
    a kernel not seen before appears (oldest view first), or ``settle_s`` seconds at most.

    Parameters
    ----------
    max_kernels : int
        The most kernels the server may hold, the preheated ones included.
    settle_s : float
        The longest an admitted view counts on its own (a kernel that started and was culled
        between two page views is never seen).
    """

    def __init__(self, max_kernels: int, settle_s: float = 30.0):
        if max_kernels < 1:
            raise ServeError(f"voila.json: CxVoila.max_kernels = {max_kernels}; expected >= 1")
        self.max_kernels = max_kernels
        self.settle_s = settle_s
        self._unsettled: deque[float] = deque()
        self._seen: set[str] = set()

    @staticmethod
    def kernel_ids(kernel_manager) -> set[str]:
        """Kernels running or starting (a starting kernel has a process already)."""
        ids = set(kernel_manager.list_kernel_ids())
        # jupyter_client lists a starting kernel only here (no public API in 8.10; a test
        # fails when an upgrade renames it: test_kernel_bounds.py, private names)
        ids.update(getattr(kernel_manager, "_pending_kernels", {}))
        return ids

    def kernels_held(self, kernel_manager) -> int:
        """Kernels running or starting, plus the admitted views whose kernel has not started."""
        ids = self.kernel_ids(kernel_manager)
        for _ in ids - self._seen:
            if self._unsettled:
                self._unsettled.popleft()
        self._seen = ids
        now = time.monotonic()
        while self._unsettled and self._unsettled[0] < now - self.settle_s:
            self._unsettled.popleft()
        return len(ids) + len(self._unsettled)

    def admit(self, kernel_manager) -> bool:
        """Whether a page view may have a kernel; counts it when it may."""
        if self.kernels_held(kernel_manager) >= self.max_kernels:
            return False
        self._unsettled.append(time.monotonic())
        return True


class WaitingCellTimeout:
    """Each cell's execution timeout: none for the cell that waits for the viewer's request.

    nbclient's ``timeout_func``: in a preheated kernel the cell calling ``query_string()``
    (or Voila's ``wait_for_request()``) runs until a viewer requests the page, for minutes
    or hours; every other cell gets ``timeout``.

    Parameters
    ----------
    timeout : int or None
        Seconds (``VoilaExecutor.timeout``); None: no timeout.
    """

    #: A cell that waits for the request.
    WAITS = re.compile(r"\b(?:query_string|wait_for_request)\(")

    def __init__(self, timeout: int | None):
        self.timeout = timeout

    def __call__(self, cell) -> int | None:
        """The cell's timeout in seconds (None: none)."""
        if self.WAITS.search(cell.get("source", "")):
            return None
        return self.timeout


@cache
def voila_app():
    """Voila's application class with the kernel bounds (imports Voila, hence a function).

    ``CxVoila`` reads the ``Voila`` section of ``voila.json`` and its own ``CxVoila`` section
    (``max_kernels``); its page handler sets the xsrf cookie the tab-close beacon needs and
    serves the busy page past the maximum.
    """
    import tornado.web
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from traitlets import Int
    from voila.app import Voila
    from voila.tornado.handler import TornadoVoilaHandler

    from cxlib.dashboard.kernel import KERNEL_ARGUMENTS

    class DashboardKernelSpecManager(KernelSpecManager):
        """Python kernels start with :mod:`cxlib.dashboard.kernel` (errors to the server log)."""

        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            spec = super().get_kernel_spec(kernel_name)
            if any("ipykernel" in part for part in spec.argv):
                spec = KernelSpec(
                    **{**spec.to_dict(), "argv": [*spec.argv, *KERNEL_ARGUMENTS]},
                    resource_dir=spec.resource_dir,
                )
            return spec

    class BoundedPageHandler(TornadoVoilaHandler):
        """A dashboard page: the xsrf cookie set, a kernel only below the maximum."""

        def initialize(self, admission: KernelAdmission, **kwargs):
            super().initialize(**kwargs)
            self.admission = admission

        @tornado.web.authenticated
        async def get(self, path=None):
            # The page's beforeunload beacon posts this cookie's value as `_xsrf`; Voila's
            # page never reads the token, so without this the cookie (and the beacon) is empty.
            self.xsrf_token  # noqa: B018 (reading it sets the cookie)
            if not self.admission.admit(self.kernel_manager):
                self.log.warning(
                    "busy: %d kernel(s) held, at most %d; served the busy page for %s",
                    self.admission.kernels_held(self.kernel_manager),
                    self.admission.max_kernels,
                    path,
                )
                self.set_status(503)
                self.set_header("Retry-After", "60")
                self.set_header("Content-Type", "text/html; charset=utf-8")
                self.set_header("Cache-Control", "no-store")
                self.finish(BUSY_PAGE.read_bytes())
                return
            await super().get(path)

    class CxVoila(Voila):
        """Voila with a bounded number of kernels (see :mod:`cxlib.dashboard.serve`)."""

        max_kernels = Int(
            40,
            config=True,
            help="The most kernels the server holds, the preheated ones included; "
            "past it a page view gets the busy page (HTTP 503).",
        )

        #: The kernel spec manager the kernels start from (unless one is configured).
        dashboard_kernel_spec_manager = DashboardKernelSpecManager

        def init_settings(self):
            executor = self.config.VoilaExecutor
            if executor.get("timeout_func") is None:
                executor.timeout_func = WaitingCellTimeout(executor.get("timeout"))
            configured = self.voila_configuration.kernel_spec_manager_class
            if configured is KernelSpecManager:
                self.voila_configuration.kernel_spec_manager_class = DashboardKernelSpecManager
            else:
                self.log.warning(
                    "VoilaConfiguration.kernel_spec_manager_class = %s: the kernels start "
                    "without cxlib.dashboard.kernel (their errors may reach the viewers)",
                    configured.__name__,
                )
            return super().init_settings()

        def init_handlers(self):
            admission = KernelAdmission(self.max_kernels)
            handlers = []
            for spec in super().init_handlers():
                if len(spec) > 1 and spec[1] is TornadoVoilaHandler:
                    pattern, _, kwargs = spec
                    spec = (pattern, BoundedPageHandler, {**kwargs, "admission": admission})
                handlers.append(spec)
            return handlers

    return CxVoila


def trust_dashboards(folder: Path) -> int:
    """Sign the dashboards as trusted (what ``jupyter trust`` does); the count signed.

    They are this project's own notebooks; unsigned, Jupyter's contents manager logs "Notebook
    ... is not trusted" for each one as Voila loads it. A signature database that cannot be
    written (a read-only home) only leaves those lines in the log.
    """
    import nbformat
    from nbformat.sign import NotebookNotary

    signed = 0
    try:
        notary = NotebookNotary()
        for path in sorted(folder.glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            if not notary.check_signature(notebook):
                notary.sign(notebook)
                signed += 1
    except (OSError, ValueError):  # unwritable data dir or database
        pass
    return signed


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeError(
                f"cannot serve on {host}:{port}: {exc.strerror or exc}; "
                "stop what uses it or pick another with --port"
            ) from None


def serve(
    port: int = 8866,
    host: str = "127.0.0.1",
    *,
    runs_dir: str | Path | None = None,
    dashboards_dir: str | Path | None = None,
    echo=print,
) -> None:
    """Serve the dashboards with Voila until interrupted.

    Parameters
    ----------
    port, host : int, str
        Where to listen (default: localhost only).
    runs_dir : str or Path, optional
        Whose published studies to show (default ``config.RUNS_DIR``); passed to the
        kernels as ``CX_RUNS_DIR``.
    dashboards_dir : str or Path, optional
        Default: the repository's ``dashboards/``.
    """
    folder = Path(dashboards_dir or DASHBOARDS_DIR).resolve()
    if not folder.is_dir():
        raise ServeError(f"{folder}: dashboards folder not found")
    voila_config_dirs()  # a misnamed override folder is an error before anything starts
    _check_port(host, port)
    from cxlib.dashboard.results import published_studies

    runs = Path(runs_dir or config.RUNS_DIR).resolve()
    os.environ["CX_RUNS_DIR"] = str(runs)
    paths = [
        str(TEMPLATE_ROOT),
        *filter(None, os.environ.get("JUPYTER_PATH", "").split(os.pathsep)),
    ]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)
    studies = published_studies(runs)
    echo(
        f"serving {len(list(folder.glob('*.ipynb')))} dashboard(s) of "
        f"{', '.join(studies) or 'no published study yet'} ({runs})"
    )
    echo(f"open {dashboard_url(host, port)}  (Ctrl-C stops)")
    for name in sorted(p.stem for p in folder.glob("*.ipynb") if p.stem != "overview"):
        echo(f"  and  {dashboard_url(host, port, name)}")
    trust_dashboards(folder)
    app = voila_app()
    app.launch_instance(argv=voila_argv(port, host, folder))
    app.clear_instance()
