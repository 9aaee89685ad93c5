"""Dashboard kernels keep their errors in the server log, never on the viewer's page.

A dashboard kernel answers the messages of whoever holds its page's websocket. What goes
wrong there would reach that client: ipykernel and ``comm`` log a failed ``comm_open``
(an unknown target, a widget that cannot be made from the message) or ``comm_msg`` with
the traceback, and a kernel's log records and warnings go to its ``sys.stderr``, which is
a stream to the client; ipywidgets shows a failing widget message's traceback as an
``error`` message to the client. Each names the server's files.

``cx serve`` starts its kernels with this module as an IPython extension and without
capturing the process's own stderr (``--IPKernelApp.capture_fd_output=False``, see
:data:`KERNEL_ARGUMENTS`), so the process's stderr is the server's log, and then
(:func:`load_ipython_extension`):

- log records (the root logger, ``tornado``'s) and warnings go to the server log;
- a traceback shown outside a cell (a widget message's) goes to the server log only; a
  cell's error goes its usual way (Voila replaces it on the page, ``show_tracebacks``).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["KERNEL_ARGUMENTS", "SERVER_LOG_FORMAT", "load_ipython_extension"]

#: Added to a dashboard kernel's command line (its kernel spec's ``argv``).
KERNEL_ARGUMENTS = (
    "--IPKernelApp.capture_fd_output=False",
    f"--IPKernelApp.extensions={__name__}",
)
#: How a kernel's records read in the server log.
SERVER_LOG_FORMAT = "[cx kernel %(process)d] %(levelname)s %(name)s | %(message)s"
#: The logger of the tracebacks kept from the viewer.
log = logging.getLogger(__name__)


def route_logging_to_server_log(stream=None) -> logging.Handler:
    """Send log records and warnings to ``stream`` (default: the process's own stderr).

    The root logger gets a handler (so Python's last-resort handler, which writes to the
    kernel's ``sys.stderr`` stream, is never used); handlers already writing to
    ``sys.stderr`` (``tornado``'s) are moved to ``stream``; warnings become log records.
    """
    stream = stream or sys.__stderr__
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(SERVER_LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    for logger in [root, *logging.root.manager.loggerDict.values()]:
        for other in getattr(logger, "handlers", ()):
            if isinstance(other, logging.StreamHandler) and other.stream is sys.stderr:
                other.setStream(stream)
    logging.captureWarnings(True)
    return handler


def keep_tracebacks_out_of_widgets(shell) -> None:
    """A traceback shown outside a cell (a widget message's) goes to the server log only."""
    cells_running = []
    shell.events.register("pre_run_cell", lambda info: cells_running.append(info))
    shell.events.register("post_run_cell", lambda result: cells_running and cells_running.pop())
    show = shell.showtraceback

    def showtraceback(exc_tuple=None, *args, **kwargs):
        if cells_running:
            return show(exc_tuple, *args, **kwargs)
        exc_info = exc_tuple or sys.exc_info()
        name = getattr(exc_info[0], "__name__", "error")
        log.error(
            "%s in a message from the page (not shown to the viewer)", name, exc_info=exc_info
        )
        return None

    shell.showtraceback = showtraceback


def load_ipython_extension(shell) -> None:
    """IPython's entry point (``--IPKernelApp.extensions=cxlib.dashboard.kernel``)."""
    route_logging_to_server_log()
    keep_tracebacks_out_of_widgets(shell)
