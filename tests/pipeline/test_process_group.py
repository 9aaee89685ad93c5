"""Process hygiene: a run's kernel and everything it starts die together.

Finding 6 of issue #22: a kernel killed by SIGKILL (what the OOM killer does) left its
PyMC chain processes behind, re-parented and blocked for minutes. Finding 10: ipykernel
printed "KeyboardInterrupt caught in kernel" during normal runs — jupyter_client
interrupts every kernel (SIGINT to its process group) before shutting it down.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cxlib.pipeline.runner import run_pipeline

from .conftest import write_notebook

#: executes notebooks with papermill and real kernels (make check leaves them out)
pytestmark = pytest.mark.notebooks

FORK_PARAMETERS = """\
output_dir: str = ""  # where artifacts go
then: str = "finish"  # after starting the child: "finish", or "wait" to be killed
"""

#: The kernel starts a child the way PyMC starts its chain processes (same process group);
#: the child ignores SIGINT, so an interrupt sent to the group does not end it either.
FORK_BODY = """\
import json
import os
import pathlib
import signal
import subprocess
import time

child = subprocess.Popen(
    ["sleep", "300"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
)
pids = {"kernel": os.getpid(), "child": child.pid}
pathlib.Path(output_dir, "pids.json").write_text(json.dumps(pids))
if then == "wait":
    time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a zombie is dead, awaiting its reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


@pytest.fixture
def fork_spec(make_spec, tmp_path):
    def build(then: str):
        notebook = write_notebook(tmp_path / "nb" / "fork.ipynb", FORK_PARAMETERS, FORK_BODY)
        return make_spec(notebooks=[{"path": str(notebook), "parameters": {"then": then}}])

    return build


def wait_for_pids(tmp_path: Path, seconds: float = 60) -> dict[str, int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        found = list((tmp_path / "runs" / "telecom").glob("*/artifacts/pids.json"))
        if found:
            try:
                return json.loads(found[0].read_text())
            except json.JSONDecodeError:
                pass  # being written
        time.sleep(0.1)
    raise AssertionError("the notebook never started its child")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_nothing_outlives_a_sigkilled_kernel(fork_spec, tmp_path):
    spec = fork_spec("wait")
    result: list = []
    runner = threading.Thread(target=lambda: result.append(run_pipeline(spec, progress=False)))
    runner.start()
    pids = wait_for_pids(tmp_path)
    try:
        os.kill(pids["kernel"], signal.SIGKILL)  # the OOM killer kills the kernel alone
        runner.join(60)
        assert not runner.is_alive()
        assert [r.status for r in result[0].records] == ["failed"]
        assert gone_within(pids["child"], 5), "the kernel's child outlived it"
    finally:
        if alive(pids["child"]):
            os.kill(pids["child"], signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_finished_run_leaves_no_process_behind(fork_spec, tmp_path):
    result = run_pipeline(fork_spec("finish"), progress=False)
    pids = json.loads((Path(result.records[0].manifest["output_dir"]) / "pids.json").read_text())
    try:
        assert result.ok, result.summary_table()
        assert gone_within(pids["child"], 5), "a process the notebook started outlived its run"
    finally:
        if alive(pids["child"]):
            os.kill(pids["child"], signal.SIGKILL)


def test_a_normal_run_never_interrupts_its_kernel(make_spec, monkeypatch):
    """No SIGINT at a normal shutdown, hence no "KeyboardInterrupt caught in kernel" line."""
    sent: list[int] = []
    killpg = os.killpg

    def spy(pgid: int, signum: int) -> None:
        sent.append(signum)
        killpg(pgid, signum)

    monkeypatch.setattr(os, "killpg", spy)
    result = run_pipeline(make_spec(), progress=False)
    assert result.ok, result.summary_table()
    assert signal.SIGINT not in sent


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_nothing_outlives_a_sigkilled_runner(fork_spec, tmp_path):
    """`cx run` killed by SIGKILL (the OOM killer): its kernel, the kernel's child, all go."""
    import subprocess
    import sys

    spec = fork_spec("wait")
    runner = subprocess.Popen(
        [sys.executable, "-c", "from cxlib.cli import main; main()", "run", str(spec)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in pytest's group, as a runner started from a shell
    )
    pids: dict[str, int] = {}
    try:
        pids = wait_for_pids(tmp_path)
        group = os.getpgid(pids["kernel"])
        assert group == pids["kernel"] and os.getpgid(pids["child"]) == group
        runner.kill()
        runner.wait(10)
        assert gone_within(pids["kernel"], 5), "the kernel outlived its runner"
        assert gone_within(pids["child"], 5), "the kernel's child outlived its runner"
        end = time.monotonic() + 5
        while group_members(group) and time.monotonic() < end:
            time.sleep(0.1)
        assert group_members(group) == [], "processes of the kernel's group outlived the runner"
    finally:
        if runner.poll() is None:
            runner.kill()
        for pid in pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_kernel_guard_leaves_with_its_kernel(fork_spec, tmp_path, monkeypatch):
    """The guard stops with its kernel: a finished refresh leaves no guard behind."""
    from cxlib.pipeline import runner as runner_module

    guards = []
    start = runner_module.start_kernel_guard

    def spy(pgid):
        guards.append(start(pgid))
        return guards[-1]

    monkeypatch.setattr(runner_module, "start_kernel_guard", spy)
    result = run_pipeline(fork_spec("finish"), progress=False)
    assert result.ok, result.summary_table()
    assert len(guards) == 1 and guards[0] is not None
    assert guards[0].poll() is not None  # stopped and reaped
