"""The runner: the one function that executes pipeline notebooks.

:func:`run_pipeline` is what ``cx run``, ``cx schedule``, the benchmarks and the
tests call. For each study it:

1. plans every run and checks every input (:func:`~cxlib.pipeline.plan.plan_runs`)
   — a bad spec, or data that do not read, fail here, before anything runs — and
   freezes each study's data: every run of the refresh reads one frozen copy
   (``runs/<study>/.data/<sha256>/``), never the file that may change meanwhile;
2. takes the study's lock (a second runner waits ``wait_s`` or stops with a
   clear message), marks runs a killed runner left behind as ``aborted``;
3. skips runs that are up to date (a finished run with the same data, study
   spec, parameters, notebook, code and inputs exists), unless forced;
4. executes the others with papermill — one folder ``runs/<study>/<run-id>/``
   each, holding the executed notebook, its HTML export, the notebook's
   artifacts and ``manifest.json`` — locally (``jobs`` at a time) or on a Dask
   cluster; a cell that runs longer than the execution timeout fails the run.
   A notebook's ``inputs`` (other notebooks' runs) come first: the runner passes
   each one's output directory (that of its last succeeded run when it is up to
   date), and a new input run makes the dependent run again;
5. checks each finished run's quality gates;
6. publishes the runs that finished and passed (never ``--fast`` smoke runs),
   by switching the study's pointer atomically, and mirrors catalog and tables
   into the results store — unless a file the runs were planned on (the data, the
   study spec, a side table) changed during the refresh: then the publication stays
   as it was and :attr:`PipelineResult.inputs_changed` says so (``cx schedule``
   refreshes the study again at once, on the new version). After a publish, the
   frozen data versions nothing needs any more are removed
   (:func:`~cxlib.pipeline.retention.prune_data_versions`: kept are those of the live
   and the previous publication, of running runs, of waiting runners, and the newest
   :data:`~cxlib.pipeline.retention.DATA_VERSIONS_KEPT`).

Each kernel runs in a process group of its own with everything it starts (PyMC's
chain processes); when a kernel stops — shut down, killed, or dead of its own
(the OOM killer) — the runner kills what is left of its group, so nothing
outlives a run. When the runner itself is killed (SIGKILL, the OOM killer), each
kernel's guard (:func:`start_kernel_guard`) kills the kernel's group.

:func:`run_pipeline` reads as these steps: :func:`check_run_options`,
:func:`~cxlib.pipeline.plan.plan_runs`, :func:`lock_studies`, :func:`prepare_studies`,
a :class:`RefreshState` (what is up to date: :func:`latest_succeeded`), the ready-set
loop :func:`execute_runs` (:func:`ready_tasks`, :func:`start_run`, :func:`input_runs`)
over an executor, and :func:`finish_result`.

A run's status is ``succeeded`` (finished, gates passed), ``failed`` (the
notebook raised, timed out, or could not start), ``gated`` (finished, but a
quality gate failed), ``aborted`` (its runner was killed), ``blocked`` (not
run: a run it takes as input failed, was gated or blocked) or ``not_applicable``
(the study lacks what the notebook needs: the notebook raised
:class:`~cxlib.errors.NotApplicable`, or a run it requires as input is not
applicable; its manifest and the published pointer say why). Failed, gated and
aborted runs keep their folder and error; the published result stays as it was.
A not-applicable run is no failure (the pipeline still succeeds), is up to date
like a succeeded one while its key holds, and never touches another slot's
published result; a notebook that needs it as an optional input goes without it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from cxlib.pipeline.errors import PipelineSpecError
from cxlib.pipeline.gates import evaluate_gates, read_diagnostics
from cxlib.pipeline.lock import StudyLock
from cxlib.pipeline.plan import RunTask, changed_inputs, plan_runs
from cxlib.pipeline.provenance import (
    code_version,
    host,
    package_versions,
    write_json_atomic,
)
from cxlib.pipeline.publish import read_pointer, switch_pointer
from cxlib.pipeline.retention import (
    claim_data_versions,
    prune_data_versions,
    release_data_claims,
)
from cxlib.pipeline.spec import PipelineSpec, load_pipeline
from cxlib.pipeline.store import ResultsStore

__all__ = [
    "EXECUTORS",
    "MANIFEST_FILE",
    "PipelineResult",
    "RunRecord",
    "execute_task",
    "run_pipeline",
]

logger = logging.getLogger("cxlib.pipeline")

#: The run folder's manifest.
MANIFEST_FILE = "manifest.json"
#: Where notebook runs can execute.
EXECUTORS = ("local", "dask")
#: Statuses of a run that did not produce a publishable result.
FAILED_STATUSES = ("failed", "gated", "aborted", "blocked")
#: The status of a run whose study lacks what its notebook needs (not a failure).
NOT_APPLICABLE = "not_applicable"
#: The exception (papermill's ``ename``) a notebook raises when it does not apply.
_NOT_APPLICABLE_ENAME = "NotApplicable"
_NOT_APPLICABLE_PREFIX = "not applicable: "
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Keeps the kernel's own start-up chatter (e.g. transport warnings) off the terminal.
_KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
#: Seconds a kernel has to exit after its shutdown request (jupyter_client's default: 5).
_KERNEL_SHUTDOWN_WAIT_S = 1.0

#: The kernels of the runs executing in this process: id -> (kernel manager, its runner's pool).
_RUNNING_KERNELS: dict[int, tuple[Any, Any]] = {}
_RUNNING_LOCK = threading.Lock()
_TRACKED_MANAGER: type | None = None
#: Per worker thread: the pool (``_Threads``) whose run it executes, if any.
_WORKER = threading.local()
#: How often the runner's main loop looks for a stop request while runs execute (seconds).
_POLL_S = 0.2


def _tracked_kernel_manager() -> type:
    """The kernel manager for nbclient, remembering the kernels it starts until they stop.

    When a kernel stops (shut down, or found dead) what is left of its process group
    is killed (:func:`_kill_group`). An interrupted runner (Ctrl-C, SIGTERM) kills the
    kernels with :func:`kill_running_kernels` instead of waiting for their notebooks to
    finish. A kernel that comes up after its runner began stopping (the signal arrived
    while it was starting) is killed at once.
    """
    global _TRACKED_MANAGER
    if _TRACKED_MANAGER is None:
        from jupyter_client import AsyncKernelManager
        from traitlets import Float

        class TrackedKernelManager(AsyncKernelManager):
            # A kernel that does not answer the shutdown request (a cell still running
            # after a timeout: it is no longer interrupted first, see below) gets SIGTERM
            # after half of this, SIGKILL after all; an idle kernel exits in well under.
            shutdown_wait_time = Float(_KERNEL_SHUTDOWN_WAIT_S)

            async def start_kernel(self, **kwargs):
                await super().start_kernel(**kwargs)
                self.cx_guard = start_kernel_guard(getattr(self.provisioner, "pgid", None))
                owner = getattr(_WORKER, "pool", None)
                with _RUNNING_LOCK:
                    _RUNNING_KERNELS[id(self)] = (self, owner)
                if owner is not None and owner.stopping.is_set():
                    _kill_kernel(self)  # too late to run: nbclient reports it dead

            async def shutdown_kernel(self, *args, **kwargs):
                group = getattr(self.provisioner, "pgid", None)
                try:
                    await super().shutdown_kernel(*args, **kwargs)
                finally:
                    self._forget(group)

            async def cleanup_resources(self, *args, **kwargs):
                # nbclient calls only this for a kernel that died (no shutdown_kernel)
                group = getattr(self.provisioner, "pgid", None)
                try:
                    await super().cleanup_resources(*args, **kwargs)
                finally:
                    self._forget(group)

            def _forget(self, group: int | None) -> None:
                with _RUNNING_LOCK:
                    _RUNNING_KERNELS.pop(id(self), None)
                _kill_group(group)
                stop_kernel_guard(getattr(self, "cx_guard", None))
                self.cx_guard = None

            async def _async_interrupt_kernel(self):
                # jupyter_client interrupts every kernel before shutting it down. The
                # runner shuts a kernel down only once its notebook has finished (or to
                # stop it, by force), so the SIGINT is of no use and, landing in a
                # message handler, makes ipykernel print "KeyboardInterrupt caught in
                # kernel" on the terminal. An interrupt asked for otherwise still goes.
                if not self.shutting_down:
                    await super()._async_interrupt_kernel()

        _TRACKED_MANAGER = TrackedKernelManager
    return _TRACKED_MANAGER


#: The kernel guard (:func:`start_kernel_guard`): run as ``python -I -S -c GUARD runner group``.
#: It waits for the runner to exit (a pidfd where the OS has them, else its parent pid
#: changing) and then SIGKILLs the kernel's group; it exits by itself once the group is empty.
_GUARD = """
import os, select, signal, sys, time
runner, group = int(sys.argv[1]), int(sys.argv[2])
try:
    fd = os.pidfd_open(runner)
except (AttributeError, OSError):
    fd = None
poller = select.poll()
if fd is not None:
    poller.register(fd, select.POLLIN)

def runner_alive():
    if fd is not None:
        return not poller.poll(500)
    time.sleep(0.2)
    return os.getppid() == runner

while runner_alive():
    try:
        os.killpg(group, 0)
    except OSError:
        sys.exit(0)  # the kernel and all it started are gone
try:  # the runner is gone (killed): nothing it started may outlive it
    os.killpg(group, signal.SIGKILL)
except OSError:
    pass
"""


def start_kernel_guard(pgid: int | None):
    """Start the guard that kills a kernel's process group if this process dies.

    A runner SIGKILLed (the OOM killer) cannot stop its kernels; ipykernel notices
    its parent is gone within a second and exits, but the processes the kernel
    started (PyMC's chain processes) would live on. The guard is a tiny Python
    process (no site, no imports beyond the standard library's) in a session of its
    own, so a Ctrl-C or hang-up of the runner's terminal does not end it first. It
    waits on the runner (a Linux pidfd; elsewhere it polls its parent pid) and, when
    the runner exits without stopping the kernel, SIGKILLs the kernel's whole group.
    It exits by itself once that group is empty, and the runner stops it when the
    kernel stops (:func:`stop_kernel_guard`).

    Returns
    -------
    subprocess.Popen or None
        The guard, or None where there is no process group to guard (not POSIX) or
        it could not start (logged; the kernel runs unguarded).
    """
    import subprocess
    import sys

    if not pgid or not hasattr(os, "killpg"):
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), str(pgid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        logger.warning("could not start the guard of kernel group %s: %s", pgid, exc)
        return None


def stop_kernel_guard(guard) -> None:
    """Stop (and reap) a kernel's guard once its kernel stopped; never fails."""
    if guard is None:
        return
    try:
        guard.kill()
        guard.wait(timeout=5)
    except Exception:  # noqa: BLE001 - a guard that is gone already
        pass


def _kill_kernel(km) -> bool:
    """SIGKILL a kernel's process group (the kernel and e.g. its sampler processes)."""
    provisioner = getattr(km, "provisioner", None)
    pgid = getattr(provisioner, "pgid", None)
    process = getattr(provisioner, "process", None)
    try:
        if pgid:
            os.killpg(pgid, signal.SIGKILL)
        elif process is not None:
            process.kill()
        else:
            return False
    except OSError:
        return False
    return True


def _kill_group(pgid: int | None) -> None:
    """SIGKILL what is left of a stopped kernel's process group (e.g. its sampler processes).

    The kernel leads its group (jupyter_client starts it in a new session), so the
    group's id is the kernel's pid; children a kernel killed by SIGKILL (the OOM
    killer) leaves behind keep it, and die here rather than blocking for minutes.
    """
    if not pgid or not hasattr(os, "killpg"):
        return
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:  # no process left in the group: the usual case
        pass


def kill_running_kernels(owner: Any = None) -> int:
    """Kill the kernels (and what they started, e.g. sampler processes) of this process's runs.

    Each kernel runs in its own process group; the whole group gets SIGKILL, so a
    run's notebook stops at once (its run is recorded as failed). ``owner``: only
    the kernels of that runner's pool (default: all). Returns how many.
    """
    with _RUNNING_LOCK:
        managers = [km for km, pool in _RUNNING_KERNELS.values() if owner in (None, pool)]
    return sum(_kill_kernel(km) for km in managers)


@dataclass
class RunRecord:
    """The outcome of one planned run.

    Attributes
    ----------
    study, notebook, label : str
        What ran: study name, notebook name, parameter set.
    status : str
        ``succeeded``, ``failed``, ``gated``, ``aborted``, ``blocked`` (not run: an
        input run failed), ``not_applicable`` (the study lacks what the notebook
        needs; :attr:`reason` says what), or ``skipped`` (up to date).
    run_id : str or None
        The run folder's name (for ``skipped``: the up-to-date run).
    run_dir : str or None
    duration_s : float
        Wall time of the run (0 for skipped).
    error : str or None
        What went wrong, in a line.
    gate_failures : list of str
    diagnostics : dict or None
    published : bool
        Whether this run is in the study's publication after the pipeline.
    manifest : dict
        The run's full manifest.
    reason : str or None
        For ``not_applicable``: what the study lacks and how to add it.
    """

    study: str
    notebook: str
    label: str
    status: str
    run_id: str | None = None
    run_dir: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    gate_failures: list[str] = field(default_factory=list)
    diagnostics: dict[str, Any] | None = None
    published: bool = False
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    reason: str | None = None

    @property
    def slot(self) -> str:
        """``notebook/label``: what the run stands for within its study."""
        return f"{self.notebook}/{self.label}"

    @property
    def ok(self) -> bool:
        """Whether the run finished and passed its gates (or was up to date)."""
        return self.status in ("succeeded", "skipped")

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], *, status: str | None = None) -> RunRecord:
        """A record from a run's manifest."""
        error = manifest.get("error")
        return cls(
            study=manifest["study"],
            notebook=manifest["notebook"]["name"],
            label=manifest["label"],
            status=status or manifest["status"],
            run_id=manifest["run_id"],
            run_dir=manifest.get("run_dir"),
            duration_s=float(manifest.get("timings", {}).get("duration_s") or 0.0),
            error=_one_line(error) if error else None,
            gate_failures=list(manifest.get("gate_failures") or []),
            diagnostics=manifest.get("diagnostics"),
            manifest=manifest,
            reason=manifest.get("reason"),
        )


@dataclass
class PipelineResult:
    """What a pipeline run did: one record per planned run, and the publications."""

    pipeline: str
    records: list[RunRecord]
    publications: dict[str, dict[str, Any]] = field(default_factory=dict)
    publish_errors: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    #: Per study left unpublished because files its runs were planned on changed meanwhile:
    #: one line per file (:func:`~cxlib.pipeline.plan.changed_inputs`).
    inputs_changed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def failed(self) -> list[RunRecord]:
        """Runs that failed, were gated, aborted or blocked."""
        return [r for r in self.records if r.status in FAILED_STATUSES]

    @property
    def ok(self) -> bool:
        """True when every run succeeded or was up to date, and every publish worked."""
        return not self.failed and not self.publish_errors

    def counts(self) -> dict[str, int]:
        """How many runs ended in each status."""
        out: dict[str, int] = {}
        for r in self.records:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def summary_table(self) -> str:
        """A plain-text table of the runs, for the terminal."""
        head = ("study", "notebook", "set", "status", "time", "run / what went wrong")
        rows = []
        for r in self.records:
            shown = {
                "succeeded": "published"
                if r.published
                else ("ok (fast)" if r.manifest.get("fast") else "succeeded"),
                "skipped": "up to date",
                "failed": "FAILED",
                "gated": "GATED",
                "aborted": "ABORTED",
                "blocked": "BLOCKED",
                NOT_APPLICABLE: "not applicable",
            }.get(r.status, r.status)
            note = r.run_id or ""
            if r.status == "blocked":
                note = r.error or ""
            elif r.status == NOT_APPLICABLE:
                note = r.reason or ""
            elif r.status == "failed" and r.error:
                note = f"{r.error}  [{r.run_dir}]"
            elif r.status == "gated":
                note = "; ".join(r.gate_failures) + f"  [{r.run_dir}]"
            time_s = (
                f"{r.duration_s:.1f} s"
                if r.status not in ("skipped", "blocked", NOT_APPLICABLE) or r.duration_s
                else "-"
            )
            rows.append((r.study, r.notebook, r.label, shown, time_s, note))
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
        widths[-1] = 0
        lines = [
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in (head, *rows)
        ]
        lines.insert(1, "  ".join("-" * max(w, 3) for w in widths[:-1]) + "  " + "-" * 21)
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        lines.append(f"{len(self.records)} run(s) in {self.duration_s:.1f} s: {counts}")
        for study, err in self.publish_errors.items():
            lines.append(f"publishing {study} failed, the previous publication stays live: {err}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- one run
def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _one_line(error: dict[str, Any] | str) -> str:
    if isinstance(error, dict):
        text = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    else:
        text = str(error)
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."


def new_run_id(task: RunTask) -> str:
    """A new, sortable, unique run id: ``<UTC time>-<notebook>-<set>-<random>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{task.notebook}-{task.label}-{uuid.uuid4().hex[:6]}"


def _base_manifest(task: RunTask, run_id: str, run_dir: Path, out_dir: Path) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "study": task.study,
        "pipeline": task.pipeline,
        "label": task.label,
        "slot": task.slot,
        "status": "running",
        "fast": task.fast,
        "notebook": {
            "name": task.notebook,
            "source": task.notebook_path,
            "hash": task.key_parts["notebook_hash"],
            "executed": None,
            "html": None,
        },
        "study_spec": {"path": task.study_path, "hash": task.key_parts["study_hash"]},
        "data": {
            "path": task.data_path,
            "source": task.data_source,
            "hash": task.data_hash,
            "side_files": task.side_files,
        },
        "parameters": dict(task.parameters),
        "inputs": {
            name: {"slot": slot, "run_id": task.key_parts.get("inputs", {}).get(name)}
            for name, slot in task.inputs
        },
        "key": task.key,
        "code": {"version": code_version(), "planned": task.key_parts["code_version"]},
        "packages": package_versions(),
        "host": host(),
        "gates": task.gates,
        "timings": {"started_at": _now_iso()},
        "run_dir": str(run_dir),
        "output_dir": str(out_dir),
        "error": None,
        "reason": None,
        "diagnostics": None,
        "gate_failures": [],
        "artifacts": [],
        "warnings": [],
    }


def execute_task(task: RunTask, run_id: str) -> dict[str, Any]:
    """Execute one planned run in its own folder; return its manifest.

    Notebook errors, timeouts and gate failures are recorded in the manifest,
    not raised. This is the unit of work the runner hands to its executor (a
    thread, or a Dask worker); call :func:`run_pipeline` rather than this.
    """
    started = time.time()
    run_dir = Path(task.runs_dir) / task.study / run_id
    out_dir = run_dir / task.output_subdir
    out_dir.mkdir(parents=True, exist_ok=False)
    manifest_path = run_dir / MANIFEST_FILE
    manifest = _start_manifest(task, run_id, run_dir, out_dir, started)
    write_json_atomic(manifest_path, manifest)

    params = _notebook_parameters(task, run_id, out_dir)
    manifest["parameters"] = params
    executed = run_dir / f"{task.notebook}.ipynb"
    limit = _time_limit(task, started)
    t0 = time.perf_counter()
    try:
        status, error = _run_notebook(task, params, executed, out_dir, limit)
    except KeyboardInterrupt:
        manifest.update(
            status="failed", error={"type": "KeyboardInterrupt", "message": "interrupted"}
        )
        _finish(manifest, manifest_path, started, t0, executed)
        raise
    except Exception as exc:  # noqa: BLE001 - any failure is the run's, recorded, not raised
        status, error = "failed", _run_error(exc, task, limit)
    manifest["timings"]["execution_s"] = round(time.perf_counter() - t0, 3)

    if task.export_html and executed.exists():
        _export_into(manifest, executed)
    if status == "succeeded":
        status, error = _check_gates(manifest, out_dir, task.gates)
    if status == NOT_APPLICABLE:
        error, manifest["reason"] = None, error["message"]
    manifest.update(status=status, error=error)
    _finish(manifest, manifest_path, started, t0, executed)
    return manifest


def _start_manifest(
    task: RunTask, run_id: str, run_dir: Path, out_dir: Path, started: float
) -> dict[str, Any]:
    """The manifest of a run that starts now, warning when this cxlib is not the runner's."""
    manifest = _base_manifest(task, run_id, run_dir, out_dir)
    manifest["timings"]["started_at"] = _iso(started)
    if manifest["code"]["version"] != manifest["code"]["planned"]:
        manifest["warnings"].append(
            f"cxlib here ({manifest['code']['version']}) differs from the runner's "
            f"({manifest['code']['planned']}): install the same cxlib on every worker"
        )
    return manifest


def _notebook_parameters(task: RunTask, run_id: str, out_dir: Path) -> dict[str, Any]:
    """The run's parameters, with those the runner sets that the notebook declares."""
    params = dict(task.parameters)
    runner_values = {
        "output_dir": str(out_dir),
        "study_path": task.study_path,
        "data_path": task.data_path or "",
        "run_id": run_id,
    }
    params.update({k: runner_values[k] for k in task.runner_parameters})
    return params


def _run_notebook(
    task: RunTask,
    params: dict[str, Any],
    executed: Path,
    out_dir: Path,
    limit: tuple[float, str] | None,
) -> tuple[str, dict[str, Any] | None]:
    """Execute the notebook with papermill.

    Returns ``("succeeded", None)``, ``("failed", error)`` for an error a cell
    raised, or ``("not_applicable", {"type": "NotApplicable", "message": reason})``
    when a cell raised :class:`~cxlib.errors.NotApplicable` (papermill reports its
    ``ename``). Other failures (a timeout, a kernel that died) raise.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    engine_kwargs = {}
    if limit is not None:  # every cell's timeout is cut to what is left of the limit
        engine_kwargs["timeout_func"] = partial(_cell_timeout, task.timeout_s, limit[0])
    try:
        pm.execute_notebook(
            task.notebook_path,
            str(executed),
            parameters=params,
            kernel_name=task.kernel,
            progress_bar=False,
            log_output=False,
            start_timeout=task.start_timeout_s,
            execution_timeout=task.timeout_s,
            resources={"metadata": {"path": str(out_dir)}},
            extra_arguments=_KERNEL_ARGS,
            kernel_manager_class=_tracked_kernel_manager(),
            **engine_kwargs,
        )
    except PapermillExecutionError as exc:
        if exc.ename == _NOT_APPLICABLE_ENAME:
            reason = str(exc.evalue or "").strip()
            reason = reason.removeprefix(_NOT_APPLICABLE_PREFIX).strip() or "not applicable"
            return NOT_APPLICABLE, {"type": exc.ename, "message": reason}
        return "failed", {
            "type": exc.ename,
            "message": exc.evalue,
            "cell_index": exc.cell_index,
            "execution_count": exc.exec_count,
            "traceback": _ANSI.sub("", "\n".join(exc.traceback))[-6000:],
        }
    return "succeeded", None


def _run_error(exc: Exception, task: RunTask, limit: tuple[float, str] | None) -> dict[str, Any]:
    """The error of a run that could not execute; a timeout says which limit it reached."""
    error = {"type": type(exc).__name__, "message": str(exc) or repr(exc)}
    if "Timeout" in type(exc).__name__:
        if limit is not None and time.time() >= limit[0] - 1:
            error["message"] = f"the run reached {limit[1]} and was stopped: {exc}"
        else:
            error["message"] = (
                f"a cell ran longer than the execution timeout ({task.timeout_s:g} s; "
                f"execution.timeout_s or the notebook's timeout_s in the pipeline): {exc}"
            )
    return error


def _export_into(manifest: dict[str, Any], executed: Path) -> None:
    """Export the executed notebook as HTML; a failed export is a warning, not a failure."""
    t1 = time.perf_counter()
    try:
        manifest["notebook"]["html"] = str(_export_html(executed))
    except Exception as exc:  # noqa: BLE001 - an export problem does not fail the run
        manifest["warnings"].append(f"HTML export failed: {type(exc).__name__}: {exc}")
    manifest["timings"]["export_s"] = round(time.perf_counter() - t1, 3)


def _check_gates(
    manifest: dict[str, Any], out_dir: Path, gates: dict[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """Read a finished run's diagnostics into its manifest and check its quality gates.

    Returns ``("succeeded", None)`` or ``("gated", error)``.
    """
    try:
        diagnostics = read_diagnostics(out_dir)
    except ValueError as exc:
        diagnostics, failures = None, [str(exc)]
    else:
        failures = evaluate_gates(diagnostics, gates)
    manifest["diagnostics"] = diagnostics
    manifest["gate_failures"] = failures
    if failures:
        return "gated", {"type": "QualityGate", "message": "; ".join(failures)}
    return "succeeded", None


def _time_limit(task: RunTask, started: float) -> tuple[float, str] | None:
    """When the run must end (epoch seconds) and which limit that is, or None."""
    limits = []
    if task.run_timeout_s is not None:
        limits.append(
            (
                started + task.run_timeout_s,
                f"its time limit (execution.run_timeout_s = {task.run_timeout_s:g} s)",
            )
        )
    if task.deadline is not None:
        limits.append((task.deadline, "the pipeline's time limit (execution.pipeline_timeout_s)"))
    return min(limits) if limits else None


def _cell_timeout(per_cell: float, end: float, _cell) -> float:
    """A cell's timeout: the per-cell limit, or what is left until ``end`` if less.

    Never 0: nbclient reads 0 as "no timeout".
    """
    return max(0.1, min(per_cell, end - time.time()))


def _finish(manifest, manifest_path: Path, started: float, t0: float, executed: Path) -> None:
    finished = time.time()
    manifest["timings"].update(finished_at=_iso(finished), duration_s=round(finished - started, 3))
    if executed.exists():
        manifest["notebook"]["executed"] = str(executed)
    out_dir = Path(manifest["output_dir"])
    if out_dir.is_dir():
        manifest["artifacts"] = [
            {"path": p.relative_to(out_dir).as_posix(), "bytes": p.stat().st_size}
            for p in sorted(out_dir.rglob("*"))
            if p.is_file()
        ]
    write_json_atomic(manifest_path, manifest)


def _export_html(executed: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(executed))
    html = executed.with_suffix(".html")
    tmp = html.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(html)
    return html


def _failure_manifest(task: RunTask, run_id: str, exc: BaseException) -> dict[str, Any]:
    """Record a run whose worker died before writing its own final manifest."""
    run_dir = Path(task.runs_dir) / task.study / run_id
    path = run_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        manifest = _base_manifest(task, run_id, run_dir, run_dir / task.output_subdir)
    if manifest.get("status") not in (None, "running"):
        return manifest
    manifest["status"] = "failed"
    manifest["error"] = {"type": type(exc).__name__, "message": str(exc) or repr(exc)}
    manifest["timings"].setdefault("finished_at", _now_iso())
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, manifest)
    except OSError:  # pragma: no cover - e.g. disk full; the record still reports it
        pass
    return manifest


# ----------------------------------------------------------------------------- study state
def _manifests(study_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(study_dir.glob(f"*/{MANIFEST_FILE}")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def abort_stale_runs(study_dir: str | Path) -> list[str]:
    """Mark runs left ``running`` by a runner that is gone as ``aborted``.

    Call only while holding the study's lock: then no run of the study can
    still be running. Returns the ids marked.
    """
    marked = []
    for manifest in _manifests(Path(study_dir)):
        if manifest.get("status") != "running":
            continue
        manifest["status"] = "aborted"
        manifest["error"] = {
            "type": "Aborted",
            "message": "the runner stopped before this run finished (killed, crashed, or the "
            "machine went down); the folder is kept for inspection",
        }
        write_json_atomic(Path(manifest["run_dir"]) / MANIFEST_FILE, manifest)
        marked.append(manifest["run_id"])
    return marked


def _not_applicable_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    """The published pointer's entry for a slot that does not apply to the study."""
    return {
        "status": NOT_APPLICABLE,
        "reason": manifest.get("reason") or "",
        "run_id": manifest["run_id"],
        "notebook": manifest["notebook"]["name"],
        "label": manifest["label"],
        "key": manifest["key"],
        "needs": manifest.get("needs") or [],
        "fast": bool(manifest.get("fast")),
        "finished_at": manifest["timings"].get("finished_at"),
    }


def _publish_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": manifest["run_id"],
        "notebook": manifest["notebook"]["name"],
        "label": manifest["label"],
        "key": manifest["key"],
        "data_hash": manifest["data"]["hash"],
        "finished_at": manifest["timings"].get("finished_at"),
        "output_dir": Path(manifest["output_dir"])
        .relative_to(Path(manifest["run_dir"]).parent)
        .as_posix(),
    }


# ----------------------------------------------------------------------------- the runner
def run_pipeline(
    pipeline: str | Path | PipelineSpec,
    *,
    study: str | None = None,
    jobs: int = 1,
    force: bool = False,
    fast: bool = False,
    executor: str = "local",
    scheduler: str | None = None,
    runs_dir: str | Path | None = None,
    results_db: str | Path | None = None,
    wait_s: float = 0.0,
    progress: bool | None = None,
    on_record: Callable[[RunRecord], None] | None = None,
) -> PipelineResult:
    """Run a pipeline: plan, lock, skip what is up to date, execute, gate, publish.

    Parameters
    ----------
    pipeline : str, Path or PipelineSpec
        The pipeline spec (YAML file) or a loaded spec.
    study : str, optional
        Run only this study.
    jobs : int
        Runs executed at once by the local executor (each is a kernel process).
    force : bool
        Run even what is up to date.
    fast : bool
        A smoke run: apply the spec's ``fast_parameters`` (small draws) and
        ``fast_gates``. Smoke runs are recorded but never published, so a quick
        check can never replace a dashboard's result.
    executor : {"local", "dask"}
        Where runs execute. ``dask`` sends them to the cluster at ``scheduler``
        (``tcp://host:8786``); its workers need cxlib installed and the runs
        directory, data and notebooks at the same paths (a shared file system).
    scheduler : str, optional
        The Dask scheduler's address (for ``executor="dask"``).
    runs_dir, results_db : str or Path, optional
        Override the spec's (and ``config``'s) runs directory and results store.
    wait_s : float
        How long to wait for another runner holding a study's lock; 0 fails at once.
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).
    on_record : callable, optional
        Called with each :class:`RunRecord` as it completes.

    Returns
    -------
    PipelineResult

    Raises
    ------
    PipelineSpecError
        When the spec, or anything it names, is invalid — before any run starts.
    StudyBusyError
        When another runner holds a study's lock after ``wait_s``.
    """
    started = time.perf_counter()
    spec = pipeline if isinstance(pipeline, PipelineSpec) else load_pipeline(pipeline)
    check_run_options(spec, executor=executor, scheduler=scheduler, jobs=jobs)
    tasks = plan_runs(spec, study=study, fast=fast, runs_dir=runs_dir, freeze=True)
    limit_s = spec.execution.pipeline_timeout_s
    deadline = time.time() + limit_s if limit_s is not None else None
    store = ResultsStore(results_db or spec.results_db_path(runs_dir))
    studies = sorted({t.study for t in tasks})
    runs_root = Path(tasks[0].runs_dir) if tasks else spec.runs_path

    from tqdm.auto import tqdm

    with ExitStack() as stack:
        # the frozen versions this refresh reads: no other runner's prune removes them
        stack.callback(release_data_claims, claim_data_versions(tasks))
        lock_studies(stack, runs_root, studies, wait_s=wait_s, holder=f"cx run {spec.name}")
        signals = stack.enter_context(_StopSignals())
        prepare_studies(spec, store, runs_root, studies)
        bar = stack.enter_context(
            tqdm(total=len(tasks), desc=spec.name, unit="run", disable=_no_progress(progress))
        )
        state = RefreshState(
            spec,
            tasks,
            store,
            runs_root,
            bar=bar,
            force=force,
            on_record=on_record,
            check_inputs=changed_inputs,
        )
        pool = stack.enter_context(_pool(executor, jobs, scheduler))
        execute_runs(state, pool, signals.check, deadline=deadline)
    return finish_result(state.result, tasks, runs_root, started=started)


def check_run_options(
    spec: PipelineSpec, *, executor: str, scheduler: str | None, jobs: int
) -> None:
    """Check how :func:`run_pipeline` is asked to run, before anything is planned.

    Raises
    ------
    PipelineSpecError
        For an unknown executor, the Dask executor without a scheduler, or
        fewer than one job.
    """
    if executor not in EXECUTORS:
        raise PipelineSpecError(
            spec.source, [f"executor {executor!r}: use one of {', '.join(EXECUTORS)}"]
        )
    if executor == "dask" and not scheduler:
        raise PipelineSpecError(
            spec.source,
            ["executor 'dask' needs the scheduler's address (--scheduler tcp://HOST:8786)"],
        )
    if jobs < 1:
        raise PipelineSpecError(spec.source, [f"jobs must be at least 1, got {jobs}"])


def lock_studies(
    stack: ExitStack, runs_root: Path, studies: list[str], *, wait_s: float, holder: str
) -> None:
    """Take each study's lock, in name order, for as long as ``stack`` is open.

    Waiting here, a signal stops the runner as usual.

    Raises
    ------
    StudyBusyError
        When another runner holds a study's lock after ``wait_s``.
    """
    for name in studies:
        stack.enter_context(StudyLock(runs_root / name, wait_s=wait_s, holder=holder))


def prepare_studies(
    spec: PipelineSpec, store: ResultsStore, runs_root: Path, studies: list[str]
) -> None:
    """Ready the locked studies: declare the alert rules, abort stale runs, sync the store.

    Runs a killed runner left ``running`` are marked ``aborted``
    (:func:`abort_stale_runs`); the results store then mirrors each study's
    folder. The alert rules are only declared here; they are evaluated later.
    """
    if spec.alerts:
        store.set_alert_rules(spec.name, spec.alerts)
    for name in studies:
        for run_id in abort_stale_runs(runs_root / name):
            logger.warning(
                "run %s was left running by a runner that is gone: marked aborted", run_id
            )
        store.sync_study(runs_root / name)


def latest_succeeded(study_dir: str | Path) -> dict[str, dict[str, Any]]:
    """A study's up-to-date candidates: per run key, the manifest of its newest succeeded run.

    Parameters
    ----------
    study_dir : str or Path
        The study's folder in the runs directory.

    Returns
    -------
    dict
        Run key -> manifest (of the runs with that key, the greatest run id).
    """
    return _latest_with_status(study_dir, "succeeded")


def latest_not_applicable(study_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Per run key, the manifest of the newest run found not applicable (up to date too).

    A not-applicable run is up to date while its key holds (same study spec,
    data, notebook, parameters and inputs): the study still lacks the same thing.
    """
    return _latest_with_status(study_dir, NOT_APPLICABLE)


def _latest_with_status(study_dir: str | Path, status: str) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for manifest in _manifests(Path(study_dir)):
        if manifest.get("status") == status:
            prev = latest.get(manifest.get("key"))
            if prev is None or manifest["run_id"] > prev["run_id"]:
                latest[manifest["key"]] = manifest
    return latest


def not_applicable_input(task: RunTask, outcome: Outcomes) -> str:
    """Why ``task`` is not applicable because a run it requires is not, or "".

    Optional inputs that are not applicable are left out instead (see
    :func:`input_runs`).
    """
    for param, slot in task.inputs:
        got = outcome.get((task.study, slot))
        if (
            param not in task.optional_inputs
            and isinstance(got, RunRecord)
            and got.status == NOT_APPLICABLE
        ):
            return f"needs {slot}, which is not applicable: {got.reason or 'no reason given'}"
    return ""


#: (study, slot) -> the manifest of its usable run, or a RunRecord of why there is none.
Outcomes = dict[tuple[str, str], "dict[str, Any] | RunRecord"]


def input_runs(task: RunTask, outcome: Outcomes) -> tuple[dict[str, dict[str, Any] | None], str]:
    """The manifests of the runs whose output ``task`` takes, or why it cannot run.

    Parameters
    ----------
    task : RunTask
        The run.
    outcome : dict
        (study, slot) -> the manifest of the slot's usable run, or the
        :class:`RunRecord` of why there is none (failed, gated, blocked).

    Returns
    -------
    tuple
        ``(parameter -> input manifest, or None for an optional input it goes
        without; "" or why the run is blocked)``. An optional input that was
        gated is still given (its artifacts are complete); one that failed, was
        blocked or is not applicable is None. A required one that is not usable
        blocks the run (a required one that is not applicable makes the run not
        applicable: :func:`not_applicable_input`, checked first).
    """
    inputs: dict[str, dict[str, Any] | None] = {}
    for param, slot in task.inputs:
        got = outcome.get((task.study, slot))
        usable = not (isinstance(got, RunRecord) or got is None)
        if usable:
            inputs[param] = got
        elif param in task.optional_inputs:
            gated = isinstance(got, RunRecord) and got.status == "gated" and got.manifest
            inputs[param] = got.manifest if gated else None
        elif got is None:
            return inputs, f"its input {slot} was not planned"
        else:
            return inputs, f"its input {slot} is {got.status}" + (
                f" ({got.run_id})" if got.run_id else ""
            )
    return inputs, ""


def ready_tasks(
    waiting: list[RunTask],
    outcome: Outcomes,
    planned: set[tuple[str, str]],
    weight: dict[tuple[str, str], int],
) -> list[RunTask]:
    """The waiting runs whose planned inputs are all resolved; those more runs wait on first.

    An input that is not planned (e.g. outside ``--study``) does not hold a run
    back: :func:`input_runs` blocks it. The sort is stable: ties keep plan order.
    """
    ready = [
        t
        for t in waiting
        if all((t.study, slot) in outcome or (t.study, slot) not in planned for slot in t.needs)
    ]
    ready.sort(key=lambda t: -weight.get((t.study, t.slot), 0))
    return ready


class RefreshState:
    """The bookkeeping of one :func:`run_pipeline` call while its runs resolve.

    Each planned run is resolved once — up to date (an earlier run reused),
    blocked, or executed — and a study is published as soon as its last run is.

    Parameters
    ----------
    spec : PipelineSpec
        The pipeline.
    tasks : list of RunTask
        Its planned runs (:func:`~cxlib.pipeline.plan.plan_runs`).
    store : ResultsStore
        Where finished runs are recorded and publications mirrored.
    runs_root : Path
        The runs directory (a folder per study).
    bar : tqdm.tqdm
        The progress bar records are written to (a disabled one logs them).
    force : bool
        Run even what is up to date.
    on_record : callable, optional
        Called with each :class:`RunRecord` as it completes.
    check_inputs : callable, optional
        ``check_inputs(a study's tasks) -> lines``: what the runs were planned on
        that changed since (:func:`~cxlib.pipeline.plan.changed_inputs`, what
        :func:`run_pipeline` passes); a study with any is not published. None: no check.

    Attributes
    ----------
    result : PipelineResult
        What the pipeline did so far.
    outcome : dict
        (study, slot) -> the manifest of its usable run, or the RunRecord of why
        there is none.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        tasks: list[RunTask],
        store: ResultsStore,
        runs_root: Path,
        *,
        bar: Any,
        force: bool = False,
        on_record: Callable[[RunRecord], None] | None = None,
        check_inputs: Callable[[list[RunTask]], list[str]] | None = None,
    ):
        self.spec, self.tasks, self.store, self.runs_root = spec, tasks, store, runs_root
        self.bar, self.force, self.on_record = bar, force, on_record
        self.check_inputs = check_inputs
        self.result = PipelineResult(pipeline=spec.name, records=[])
        studies = sorted({t.study for t in tasks})
        self.latest = {s: latest_succeeded(runs_root / s) for s in studies}
        self.latest_na = {s: latest_not_applicable(runs_root / s) for s in studies}
        self.reuse: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in studies}
        #: per study: slot -> the manifest of an up-to-date not-applicable run reused
        self.reuse_na: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in studies}
        self.study_paths = {t.study: t.study_path for t in tasks}
        self.finished: dict[str, list[dict[str, Any]]] = {s: [] for s in studies}
        self.remaining = {s: sum(1 for t in tasks if t.study == s) for s in studies}
        self.outcome: Outcomes = {}
        self.planned = {(t.study, t.slot) for t in tasks}
        self.weight = _dependents(tasks)

    def ready(self, waiting: list[RunTask]) -> list[RunTask]:
        """The waiting runs that can start now (:func:`ready_tasks`)."""
        return ready_tasks(waiting, self.outcome, self.planned, self.weight)

    def report(self, record: RunRecord) -> None:
        """Add a record to the result, show it, and pass it to ``on_record``."""
        self.result.records.append(record)
        line = _record_line(record)
        if self.bar.disable:
            (logger.info if record.ok or record.status == NOT_APPLICABLE else logger.warning)(line)
        else:
            self.bar.write(line)
        self.bar.update(1)
        if self.on_record is not None:
            self.on_record(record)

    def resolve(self, task: RunTask, value: dict[str, Any] | RunRecord) -> None:
        """Settle a run's outcome; publish its study when it was the study's last run."""
        self.outcome[(task.study, task.slot)] = value
        self.remaining[task.study] -= 1
        if self.remaining[task.study] == 0:
            _publish_study(
                self.spec,
                self.runs_root / task.study,
                task.study,
                self.finished[task.study],
                self.reuse[task.study],
                self.store,
                self.result,
                not_applicable=self.reuse_na[task.study],
                study_path=self.study_paths.get(task.study),
                changed=self.check_inputs([t for t in self.tasks if t.study == task.study])
                if self.check_inputs is not None
                else [],
            )

    def block(self, task: RunTask, why: str) -> None:
        """Resolve a run as ``blocked`` (not run), saying why."""
        record = RunRecord(
            task.study, task.notebook, task.label, "blocked", error=f"not run: {why}"
        )
        self.report(record)
        self.resolve(task, record)

    def prepare(self, task: RunTask) -> RunTask | None:
        """The task with its inputs filled in, or None when it is resolved without running.

        That is: not applicable (a required input is not applicable), blocked,
        or up to date (a succeeded or not-applicable run with the same key).
        """
        why = not_applicable_input(task, self.outcome)
        if why:
            self.not_applicable(task, why)
            return None
        inputs, blocked = input_runs(task, self.outcome)
        if blocked:
            self.block(task, blocked)
            return None
        if inputs:
            task = _with_inputs(task, inputs)
        return None if self.reused(task) else task

    def reused(self, task: RunTask) -> bool:
        """Resolve ``task`` from an up-to-date run with its key, if there is one (not forced)."""
        if self.force:
            return False
        existing = self.latest[task.study].get(task.key)
        if existing is not None:
            self.reuse[task.study][task.slot] = existing
            self.report(RunRecord.from_manifest(existing, status="skipped"))
            self.resolve(task, existing)
            return True
        existing = self.latest_na[task.study].get(task.key)
        if existing is not None:
            self.reuse_na[task.study][task.slot] = existing
            record = RunRecord.from_manifest(existing)
            record.duration_s = 0.0
            self.report(record)
            self.resolve(task, record)
            return True
        return False

    def not_applicable(self, task: RunTask, why: str) -> None:
        """Resolve a run as not applicable without running it: a required input is not.

        It gets a run folder with only its manifest (status ``not_applicable``, the
        reason, the slots it needs), keyed by its inputs' runs, so that it is up
        to date while they are.
        """
        runs = {
            param: _outcome_run_id(self.outcome.get((task.study, slot)))
            for param, slot in task.inputs
        }
        from cxlib.pipeline.provenance import run_key

        key_parts = {**task.key_parts, "inputs": runs}
        task = replace(task, key=run_key(**key_parts), key_parts=key_parts)
        if self.reused(task):
            return
        run_id = new_run_id(task)
        manifest = _not_applicable_manifest(task, run_id, why)
        self.complete(task, run_id, manifest)

    def complete(self, task: RunTask, run_id: str, manifest: dict[str, Any]) -> None:
        """Record an executed run (in the results store too) and resolve it."""
        try:
            self.store.record_run(manifest)
        except Exception as exc:  # noqa: BLE001 - the run folder is the record; sync repairs
            logger.warning("could not record run %s in the results store: %s", run_id, exc)
        self.finished[task.study].append(manifest)
        record = RunRecord.from_manifest(manifest)
        self.report(record)
        self.resolve(task, manifest if record.ok else record)


def execute_runs(
    state: RefreshState,
    pool: Any,
    check_stop: Callable[[], None],
    *,
    deadline: float | None = None,
) -> None:
    """Resolve every planned run, inputs first: the runner's ready-set loop.

    Each pass starts the runs whose inputs are resolved (:meth:`RefreshState.ready`)
    while the executor has room, then waits up to :data:`_POLL_S` seconds for one
    to finish. ``check_stop`` runs at the start of each pass (it raises to stop).

    Parameters
    ----------
    state : RefreshState
        The runs and their bookkeeping.
    pool : executor
        Has ``capacity``, ``submit(task, run_id) -> future`` and
        ``wait(futures, timeout) -> finished futures`` (``future.result()`` is the
        run's manifest).
    check_stop : callable
        Raises (KeyboardInterrupt) when the runner must stop.
    deadline : float, optional
        When the pipeline's time limit ends (epoch seconds): runs not started by
        then are blocked, and running ones are cut off at it.
    """
    waiting = list(state.tasks)
    running: dict[Any, tuple[RunTask, str]] = {}
    while waiting or running:
        check_stop()
        ready = state.ready(waiting)
        for task in ready:
            if len(running) >= pool.capacity:
                break
            waiting.remove(task)
            started = start_run(state, task, pool, deadline=deadline)
            if started is not None:
                future, task, run_id = started
                running[future] = (task, run_id)
        if not running:
            if waiting and not ready:  # cannot happen for a validated plan; never spin
                for task in waiting:
                    state.prepare(task)
                waiting = []
            continue
        for future in pool.wait(list(running), timeout=_POLL_S):
            task, run_id = running.pop(future)
            state.complete(task, run_id, _run_manifest(future, task, run_id))


def start_run(
    state: RefreshState, task: RunTask, pool: Any, *, deadline: float | None
) -> tuple[Any, RunTask, str] | None:
    """Submit a ready run to the executor, unless it is blocked, up to date or out of time.

    Returns
    -------
    tuple or None
        ``(future, the task as submitted, its run id)``, or None when the run
        was resolved without executing.
    """
    if deadline is not None and time.time() >= deadline:
        limit_s = state.spec.execution.pipeline_timeout_s
        state.block(
            task,
            f"the pipeline's time limit (execution.pipeline_timeout_s = {limit_s:g} s) was reached",
        )
        return None
    prepared = state.prepare(task)
    if prepared is None:
        return None
    if deadline is not None:
        prepared = replace(prepared, deadline=deadline)
    run_id = new_run_id(prepared)
    state.bar.set_postfix_str(f"{prepared.study} {prepared.slot}")
    return pool.submit(prepared, run_id), prepared, run_id


def _outcome_run_id(got: dict[str, Any] | RunRecord | None) -> str | None:
    """The run id of a slot's outcome (a manifest or a record), if it has one."""
    if isinstance(got, RunRecord):
        return got.run_id
    return got.get("run_id") if got else None


def _not_applicable_manifest(task: RunTask, run_id: str, reason: str) -> dict[str, Any]:
    """Write the manifest of a run that is not applicable without running (its folder too)."""
    run_dir = Path(task.runs_dir) / task.study / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    manifest = _base_manifest(task, run_id, run_dir, run_dir / task.output_subdir)
    now = _now_iso()
    manifest.update(status=NOT_APPLICABLE, reason=reason, needs=task.needs)
    manifest["timings"].update(started_at=now, finished_at=now, duration_s=0.0)
    write_json_atomic(run_dir / MANIFEST_FILE, manifest)
    return manifest


def _run_manifest(future: Any, task: RunTask, run_id: str) -> dict[str, Any]:
    """A finished run's manifest; a worker that died is recorded as a failed run."""
    try:
        return future.result()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk, a lost worker
        return _failure_manifest(task, run_id, exc)


def finish_result(
    result: PipelineResult, tasks: list[RunTask], runs_root: Path, *, started: float
) -> PipelineResult:
    """Mark the published records, put them in plan order, and time the pipeline.

    ``started`` is the :func:`time.perf_counter` value the pipeline began at.
    """
    studies = sorted({t.study for t in tasks})
    published = {
        s: {e["run_id"] for e in (p or {}).get("runs", {}).values()}
        for s, p in ((s, read_pointer(runs_root / s)) for s in studies)
    }
    for record in result.records:
        record.published = record.run_id in published.get(record.study, set())
    order = {(t.study, t.slot): i for i, t in enumerate(tasks)}
    result.records.sort(key=lambda r: order.get((r.study, r.slot), len(order)))
    result.duration_s = time.perf_counter() - started
    return result


class _StopSignals:
    """While the runner runs, SIGTERM (``kill``, ``timeout``, systemd) and Ctrl-C stop it.

    The handler only records the signal; the runner's main loop, which wakes every
    :data:`_POLL_S` seconds, then raises :class:`KeyboardInterrupt` at a point of its
    own choosing: between runs, never inside a lock, a publish or the executor's
    bookkeeping. Running notebooks are then killed and recorded as failed, and the
    study locks released. A KeyboardInterrupt raised at an arbitrary bytecode (the
    default) could land while the main thread holds a future's lock and hang the
    shutdown, or before a starting kernel was registered and leave it running.

    Installed only in the main thread, and only for a signal still at its default
    disposition (``cx schedule`` sets its own SIGTERM handler; a parent that ignores
    SIGINT keeps it ignored).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
        for signum, default in defaults.items():
            if signal.getsignal(signum) is default:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.received is None:
            self.received = signum

    def check(self) -> None:
        """Raise KeyboardInterrupt when a stop signal arrived."""
        if self.received is not None:
            name = signal.Signals(self.received).name
            raise KeyboardInterrupt(f"{name} received")

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def _no_progress(progress: bool | None) -> bool | None:
    if progress is None:
        return None  # tqdm: off when not a terminal
    return not progress


def _record_line(record: RunRecord) -> str:
    what = f"{record.study} {record.slot}"
    if record.status == "skipped":
        return f"= {what}: up to date ({record.run_id})"
    if record.status == "blocked":
        return f"✗ {what}: blocked, {record.error}"
    if record.status == NOT_APPLICABLE:
        return f"- {what}: not applicable: {record.reason} ({record.run_id})"
    diag = _diagnostics_text(record.diagnostics)
    if record.status == "succeeded":
        return f"✓ {what}: succeeded in {record.duration_s:.1f} s{diag} ({record.run_id})"
    detail = "; ".join(record.gate_failures) if record.status == "gated" else record.error
    return f"✗ {what}: {record.status} after {record.duration_s:.1f} s: {detail} ({record.run_dir})"


def _diagnostics_text(diagnostics: dict[str, Any] | None) -> str:
    if not diagnostics:
        return ""
    parts = []
    for key, label in (
        ("max_r_hat", "R-hat"),
        ("min_ess_bulk", "bulk ESS"),
        ("divergences", "divergences"),
    ):
        if diagnostics.get(key) is not None:
            value = diagnostics[key]
            parts.append(f"{label} {value:.3g}" if isinstance(value, float) else f"{label} {value}")
    return f" [{', '.join(parts)}]" if parts else ""


def _publish_study(
    spec: PipelineSpec,
    study_dir: Path,
    study: str,
    finished: list[dict[str, Any]],
    reused: dict[str, dict[str, Any]],
    store: ResultsStore,
    result: PipelineResult,
    *,
    not_applicable: dict[str, dict[str, Any]] | None = None,
    study_path: str | None = None,
    changed: list[str] | None = None,
) -> None:
    """Publish a study's succeeded runs and record its not-applicable slots.

    ``changed``: the files the study's runs were planned on that changed during
    the refresh (:func:`~cxlib.pipeline.plan.changed_inputs`). If there are any,
    nothing is published (the runs are recorded, consistent with the version they
    read) and ``result`` says what changed.

    Succeeded runs (executed now or reused) go live in their slots. Each slot
    found not applicable (executed now, or an up-to-date run reused from
    ``not_applicable``) gets a not-applicable entry in the pointer; a real (not
    ``--fast``) not-applicable run also retires the slot's earlier published run
    (the study no longer has what it showed), while a smoke run never changes
    what is live. Other slots keep their published runs.
    """
    if changed:
        result.inputs_changed[study] = changed
        result.publish_errors[study] = (
            "files the runs were planned on changed during the refresh ("
            + "; ".join(changed)
            + "); the runs read the version frozen at planning, the publication stays as it "
            "was: refresh again to publish the new version"
        )
        logger.error("not publishing %s: %s", study, result.publish_errors[study])
        try:
            store.sync_study(study_dir)  # the runs are in the catalog all the same
        except Exception as exc:  # noqa: BLE001 - the run folders are the record
            logger.warning("could not mirror %s into the results store: %s", study, exc)
        return
    pointer_now = read_pointer(study_dir) or {}
    current = pointer_now.get("runs", {})
    current_na = pointer_now.get("not_applicable", {})
    na_entries: dict[str, dict[str, Any]] = {}
    retire: list[str] = []
    for manifest in [*(not_applicable or {}).values(), *finished]:
        if manifest.get("status") != NOT_APPLICABLE:
            continue
        slot, fast = manifest["slot"], bool(manifest.get("fast"))
        if slot in current:
            if fast:
                continue  # a smoke run never changes what is live
            retire.append(slot)
        if slot in retire or current_na.get(slot, {}).get("run_id") != manifest["run_id"]:
            na_entries[slot] = _not_applicable_entry(manifest)
    entries = {}
    for slot, manifest in reused.items():
        if manifest.get("fast"):
            continue  # smoke runs are never published
        if current.get(slot, {}).get("run_id") != manifest["run_id"]:
            entries[slot] = _publish_entry(manifest)
    for manifest in finished:
        if manifest.get("status") == "succeeded" and not manifest.get("fast"):
            entries[manifest["slot"]] = _publish_entry(manifest)
    try:
        if entries or na_entries:
            store.sync_study(study_dir)  # load the new runs' tables before they go live
            pointer = switch_pointer(
                study_dir,
                study,
                entries,
                pipeline=spec.name,
                not_applicable=na_entries,
                retire=retire,
                summary=_study_summary(study_path, study),
            )
            result.publications[study] = pointer
            logger.info("published %s: %s", study, ", ".join(sorted(entries)))
        store.sync_study(study_dir)
    except Exception as exc:  # noqa: BLE001 - reported; the previous publication stays live
        result.publish_errors[study] = f"{type(exc).__name__}: {exc}"
        logger.error("publishing %s failed: %s", study, exc)
        return
    if entries or na_entries:  # published: drop the data versions nothing needs any more
        try:
            prune_data_versions(study_dir)
        except OSError as exc:
            logger.warning("could not prune the old data versions of %s: %s", study, exc)


def _study_summary(study_path: str | None, study: str) -> dict[str, Any]:
    """``study.summary()`` of the study spec for the pointer; ``{"name": ...}`` if unreadable."""
    if study_path:
        from cxlib.study import load_study

        try:
            return load_study(study_path).summary()
        except Exception as exc:  # noqa: BLE001 - the pointer still goes live without it
            logger.warning("could not summarise study %s for its pointer: %s", study, exc)
    return {"name": study}


def _dependents(tasks: list[RunTask]) -> dict[tuple[str, str], int]:
    """How many runs wait, directly or not, on each run: those start first."""
    needs = {(t.study, t.slot): [(t.study, s) for s in t.needs] for t in tasks}
    out: dict[tuple[str, str], int] = {}
    for start in needs:
        seen: set[tuple[str, str]] = set()
        todo = list(needs[start])
        while todo:
            slot = todo.pop()
            if slot not in seen:
                seen.add(slot)
                todo += needs.get(slot, [])
        for slot in seen:
            out[slot] = out.get(slot, 0) + 1
    return out


def _with_inputs(task: RunTask, inputs: dict[str, dict[str, Any] | None]) -> RunTask:
    """The task with each input's output directory as its parameter, and its run id in the key.

    A new run of an input gives a new key, so the dependent run is not up to date. An
    optional input that is missing (``None``) leaves its parameter at the notebook's
    default and is keyed as missing.
    """
    from cxlib.pipeline.provenance import run_key

    key_parts = {
        **task.key_parts,
        "inputs": {param: m["run_id"] if m else None for param, m in inputs.items()},
    }
    parameters = {
        **task.parameters,
        **{param: str(Path(m["output_dir"]).resolve()) for param, m in inputs.items() if m},
    }
    return replace(task, parameters=parameters, key=run_key(**key_parts), key_parts=key_parts)


class _Threads:
    """``jobs`` runs at once, each a thread driving its own kernel process.

    With ``jobs=1`` too: the main thread stays free to notice a stop signal and
    kill the running notebook's kernel.
    """

    def __init__(self, jobs: int):
        from concurrent.futures import ThreadPoolExecutor

        self.capacity = jobs
        self.stopping = threading.Event()
        self.reason = ""
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cx-run")

    def submit(self, task: RunTask, run_id: str):
        return self.pool.submit(self._run, task, run_id)

    def _run(self, task: RunTask, run_id: str) -> dict[str, Any]:
        if self.stopping.is_set():
            raise RuntimeError("not started: the runner is stopping")
        _WORKER.pool = self
        try:
            manifest = execute_task(task, run_id)
        finally:
            _WORKER.pool = None
        if self.stopping.is_set() and manifest.get("status") == "failed":
            # its kernel was killed: say why, rather than "kernel died"
            manifest["error"] = {
                "type": "Interrupted",
                "message": f"the runner was stopped ({self.reason}) while this run executed; "
                "its notebook was killed",
                "cause": manifest.get("error"),
            }
            write_json_atomic(Path(manifest["run_dir"]) / MANIFEST_FILE, manifest)
        return manifest

    def wait(self, futures: list, timeout: float | None = None) -> list:
        from concurrent.futures import FIRST_COMPLETED, wait

        return list(wait(futures, timeout=timeout, return_when=FIRST_COMPLETED).done)

    def stop(self, reason: str = "interrupted") -> int:
        """Kill the kernels of the runs executing now; runs that start later stop at once."""
        self.reason = reason
        self.stopping.set()
        return kill_running_kernels(owner=self)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Dask:
    """Runs on a dask.distributed cluster; the cluster decides how many at once."""

    capacity = 1_000_000

    def __init__(self, scheduler: str):
        from cxlib.errors import CxError

        try:
            import distributed
        except ImportError:  # pragma: no cover - a dependency, but say so clearly
            raise CxError(
                "the dask executor needs dask.distributed: pip install 'dask[distributed]'"
            ) from None
        self.distributed = distributed
        try:
            self.client = distributed.Client(scheduler, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise CxError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None

    def submit(self, task: RunTask, run_id: str):
        return self.client.submit(execute_task, task, run_id, key=f"cx-run-{run_id}", pure=False)

    def wait(self, futures: list, timeout: float | None = None) -> list:
        with self.client.as_current():  # the client is not the process's default
            try:
                done = self.distributed.wait(
                    futures, timeout=timeout, return_when="FIRST_COMPLETED"
                )
            except TimeoutError:
                return []
            return list(done.done)

    def close(self) -> None:
        self.client.close()


class _pool:  # noqa: N801 - used as a context manager, like open()
    """The executor: submit runs, wait for the first to finish; started on first use."""

    def __init__(self, executor: str, jobs: int, scheduler: str | None):
        self.executor, self.jobs, self.scheduler = executor, jobs, scheduler
        self.capacity = _Dask.capacity if executor == "dask" else jobs
        self.backend = None

    def __enter__(self) -> _pool:
        return self

    def __exit__(self, exc_type, exc, _tb) -> None:
        if self.backend is not None:
            if exc_type is not None and isinstance(self.backend, _Threads):
                # the runner is going down (Ctrl-C, SIGTERM, an error): stop the notebooks
                # still running instead of waiting for them to finish
                killed = self.backend.stop(str(exc) or exc_type.__name__)
                if killed:
                    logger.warning("stopped %d running notebook(s)", killed)
            self.backend.close()

    def submit(self, task: RunTask, run_id: str):
        if self.backend is None:
            if self.executor == "dask":
                self.backend = _Dask(self.scheduler)
            else:
                self.backend = _Threads(self.jobs)
        return self.backend.submit(task, run_id)

    def wait(self, futures: list, timeout: float | None = None) -> list:
        return self.backend.wait(futures, timeout)
