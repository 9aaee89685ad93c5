"""``cx serve``: Voila on the dashboards directory, configured from the repository.

The settings live in ``voila.json`` at the repository root (read here explicitly,
whatever the working directory): the ``cx`` template (Voila's lab template without
CDN stylesheets), sources stripped, no tracebacks to viewers, no files served from
the dashboards folder, preheated kernels, an execution timeout, ``port_retries = 0``
(a busy port is an error, not a silent move) and culling of idle kernels that no
tab is connected to.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from cxlib import config
from cxlib.errors import CxError

__all__ = [
    "DASHBOARDS_DIR",
    "VOILA_CONFIG",
    "ServeError",
    "dashboard_url",
    "serve",
    "trust_dashboards",
    "voila_argv",
]

#: The dashboards Voila serves.
DASHBOARDS_DIR = config.REPO_ROOT / "dashboards"
#: Voila's configuration (``voila.json``) lives here.
VOILA_CONFIG = config.REPO_ROOT / "voila.json"
#: Holds ``voila/templates/cx`` (added to ``JUPYTER_PATH``).
TEMPLATE_ROOT = Path(__file__).resolve().parent


class ServeError(CxError):
    """The dashboards cannot be served (busy port, missing folder)."""


def dashboard_url(host: str, port: int, name: str = "overview") -> str:
    """The URL of a dashboard."""
    return f"http://{host}:{port}/voila/render/{name}.ipynb"


def voila_argv(port: int, host: str, dashboards_dir: Path) -> list[str]:
    """Voila's command line (the rest comes from ``voila.json``)."""
    return [
        str(dashboards_dir),
        f"--port={port}",
        f"--Voila.ip={host}",
        "--Voila.port_retries=0",
        "--no-browser",
        f"--Voila.config_file_paths={VOILA_CONFIG.parent}",
    ]


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
    from voila.app import Voila

    Voila.launch_instance(argv=voila_argv(port, host, folder))
    Voila.clear_instance()
