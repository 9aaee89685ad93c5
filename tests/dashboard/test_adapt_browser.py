"""A study unlike the sample, in a real browser, published after the server's kernels started.

``mobile`` (tests/dashboard/plain.py: no NPS, no segments, labels, an improper SEM) is
copied into the runs directory only once every dashboard's preheated kernel has run its
first cell: the first load must still offer it (issue #17: the picker missed a
just-published study), and its pages must show what the study has.
"""

from __future__ import annotations

import shutil
import time

import pytest

from cxlib.dashboard.widgets import fmt
from tests.dashboard.conftest import Server
from tests.dashboard.plain import NAME
from tests.dashboard.test_browser import Page

pytestmark = pytest.mark.browser


def wait_kernels_ran_first_cell(pid: int, count: int, timeout: float = 180) -> None:
    """Wait until ``count`` preheated kernels have run their first cell and wait for a request.

    Voila's "pool is filled" comes when a kernel has started, before it has run anything;
    a kernel that has imported cxlib and built its dashboard (seconds of CPU) and then
    spends no CPU for a while is blocked in ``wait_for_request``.
    """
    psutil = pytest.importorskip("psutil")
    deadline, last = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        kernels = [
            p
            for p in psutil.Process(pid).children(recursive=True)
            if "ipykernel" in " ".join(p.cmdline())
        ]
        cpu = {p.pid: sum(p.cpu_times()[:2]) for p in kernels}
        settled = [k for k, t in cpu.items() if t > 2.0 and abs(t - last.get(k, -1)) < 0.02]
        if len(settled) >= count:
            return
        last = cpu
        time.sleep(2.0)
    pytest.fail(f"the preheated kernels did not settle in {timeout} s")


@pytest.fixture(scope="module")
def late_server(sample, plain, tmp_path_factory):
    runs = tmp_path_factory.mktemp("late-runs")
    shutil.copytree(sample.runs_dir / "telecom-pilot", runs / "telecom-pilot")
    srv = Server(runs, tmp_path_factory.mktemp("late-serve") / "cx-serve.log")
    try:
        srv.wait()
        srv.wait_pools(["overview", "segments"])
        wait_kernels_ran_first_cell(srv.proc.pid, count=5)  # every dashboard's kernel
        shutil.copytree(plain["runs_dir"] / NAME, runs / NAME)  # published since
        yield srv
    finally:
        srv.stop()


def test_a_study_without_nps_or_segments_published_after_start(browser, late_server, plain):
    page = Page(browser, late_server, "overview", f"?study={NAME}")
    page.wait_text(".cx-title", "Mobile phone survey (ECSI-like)", timeout=30_000)
    picker = page.page.locator(".widget-dropdown", has_text="Study").locator("select")
    assert picker.input_value() == NAME
    kpis = plain["kpis"]
    row = kpis[(kpis.kpi == "loyalty_index") & (kpis.wave == "2026")].iloc[0]
    page.wait_text("[data-kpi='loyalty_index'] [data-field='mean']", fmt(row["mean"]))
    assert page.page.locator("[data-kpi='nps']").count() == 0
    assert "Customer loyalty index (0-100)" in page.text("[data-kpi='loyalty_index']")
    assert "Not measured: NPS" in page.text(".cx-unmeasured")
    assert "Brand image, Expectations" in page.text("body")  # the improper flag, by label
    assert page.page.locator(".cx-flag-improper").count() == 2
    page.page.wait_for_selector(".cx-chart svg .role-mark", timeout=30_000)
    page.check_clean()
    segments = Page(browser, late_server, "segments", f"?study={NAME}")
    segments.page.wait_for_selector(".cx-no-segments", timeout=30_000)
    assert "columns: {segments:" in segments.text(".cx-no-segments")
    segments.check_clean()
