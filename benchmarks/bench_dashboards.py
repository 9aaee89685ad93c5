"""Dashboards in a real browser: time to the first chart, and what-if latency.

Publishes the sample study in a temporary runs folder (no model sampled; see
tests/dashboard/sample.py), starts `cx serve` on a free port (preheated kernels, as
configured in voila.json), and drives Debian's Chromium headless with Playwright:

- first chart: from the page request to the first chart's marks drawn, with a
  preheated kernel (the pool is given time to refill between loads);
- what-if latency: from a slider step (keyboard, as a release) to the chart showing
  the new prediction; and, in this process, the kernel's share of it (the slider's
  new value in, the page's updates out: what-if from the stored draws, the table's
  HTML and the chart's new rows).

    .venv/bin/python benchmarks/bench_dashboards.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import machine, markdown_table, update_results  # noqa: E402

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS, Server  # noqa: E402
from tests.dashboard.sample import publish_sample  # noqa: E402

LOADS = 3
REFILL_S = 25
STEPS = 12


def kernel_update_ms(runs_dir: Path, steps: int = 50) -> tuple[float, float, str]:
    """The kernel's share of a what-if step: median ms, max ms, and how the chart updated."""
    from cxlib.dashboard import WhatIfDashboard

    page = WhatIfDashboard.from_runs(runs_dir)
    slider = page.sliders["Image"]
    times = []
    for i in range(steps):
        start = time.perf_counter()
        slider.value = float(1 + i % 10)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, max(times) * 1000, page.chart.last_update


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        publish_sample(tmp / "runs", tmp / "work")
        kernel_ms = kernel_update_ms(tmp / "runs")
        server = Server(tmp / "runs", tmp / "serve.log")
        try:
            server.wait()
            server.wait_pools(["overview", "drivers", "what-if", "segments"])
            load = os.getloadavg()[0]
            with sync_playwright() as p:
                ctx = p.chromium.launch_persistent_context(
                    str(tmp / "profile"),
                    executable_path=CHROMIUM,
                    headless=True,
                    args=CHROMIUM_ARGS,
                    viewport={"width": 1280, "height": 1000},
                )
                rows = []
                for name in ("overview", "what-if"):
                    times = []
                    for i in range(LOADS + 1):
                        time.sleep(REFILL_S if i else 40)  # let the preheated kernel get ready
                        page = ctx.new_page()
                        start = time.perf_counter()
                        page.goto(f"{server.origin}/voila/render/{name}.ipynb", timeout=150_000)
                        page.wait_for_selector(".cx-chart svg .role-mark", timeout=150_000)
                        times.append(time.perf_counter() - start)
                        if name == "what-if" and i == LOADS:
                            time.sleep(REFILL_S)  # steady state: the pool's new kernel is up
                            latencies, table_latencies = slider_latencies(page)
                        page.close()
                    rows.append(
                        {
                            "dashboard": name,
                            "loads": LOADS,
                            "median s": f"{statistics.median(times[1:]):.2f}",
                            "max s": f"{max(times[1:]):.2f}",
                            "target s": "≤ 3",
                            "met": "yes" if statistics.median(times[1:]) <= 3 else "no",
                        }
                    )
                ctx.close()
        finally:
            server.stop()
    lat = sorted(latencies)
    text = "\n\n".join(
        [
            "## Dashboards (`bench_dashboards.py`)",
            f"{machine()}, load average {load:.1f} at the start",
            "Voila (`cx serve`, preheated kernels) on the sample publication; Chromium headless "
            "via Playwright on the same machine. First chart: request → first chart's marks "
            f"drawn, preheated kernel, median of {LOADS} loads after a warm-up load.",
            markdown_table(rows, ["dashboard", "loads", "median s", "max s", "target s", "met"]),
            "What-if, measured once the pool's replacement kernel has started (steady state; "
            "right after a page load that kernel's start competes for the 2 cores): "
            f"slider step (keyboard) → chart shows the new prediction, {len(lat)} steps: "
            f"median {statistics.median(lat) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms "
            f"(target ≤ 150 ms: {'met' if statistics.median(lat) <= 0.15 else 'not met'}). "
            f"The outcome table (HTML, same message round trip) changed after a median "
            f"{statistics.median(table_latencies) * 1000:.0f} ms. "
            f"The kernel's share (slider value in → page updates ready, measured in-process, without sending): "
            f"median {kernel_ms[0]:.1f} ms, max {kernel_ms[1]:.1f} ms; the rest is the "
            "websocket round trip and the browser's redraw.",
            "How: the what-if chart is drawn once; a slider step recomputes the what-if from "
            "the stored draws (~1 ms) and sends only the chart's new rows, which the page swaps "
            "into its Vega view (`JupyterChart`'s data update channel, "
            f"chart updated by: `{kernel_ms[2]}`) instead of a new spec that the page would "
            "compile and draw from scratch. Before (the previous code, measured right after the "
            "page load, load average 7.1): median 158 ms, max 210 ms; and 2 s after a page load, old "
            "code 79 ms median at load average 5.5 vs. this code 43-54 ms at load average 8-12 "
            "— building the altair chart and its spec in the kernel took "
            "~45 ms per step and the page re-embedded the chart (Vega-Lite compile, Vega parse, "
            "render). The offline Vega bundle is cached on disk (`~/.cache/cxlib`), so a "
            "preheated kernel no longer spends ~2.5 s of CPU building it.",
        ]
    )
    print(text)
    update_results("bench_dashboards", text)


def slider_latencies(page) -> tuple[list[float], list[float]]:
    """Per slider step: seconds until the outcome table changed, and until the chart did."""
    handle = page.locator(".cx-slider-Image .noUi-handle")
    handle.focus()
    labels = (
        "() => [...document.querySelectorAll('.cx-chart svg [aria-label]')]"
        ".map(e => e.getAttribute('aria-label')).join('|')"
    )
    table_text = "() => document.querySelector('.cx-whatif').textContent"
    table, chart = [], []
    for _ in range(STEPS):
        before_chart = page.evaluate(labels)
        before_table = page.evaluate(table_text)
        start = time.perf_counter()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            f"(b) => ({table_text})() !== b", arg=before_table, polling="raf", timeout=10_000
        )
        table.append(time.perf_counter() - start)
        page.wait_for_function(
            f"(b) => ({labels})() !== b", arg=before_chart, polling="raf", timeout=10_000
        )
        chart.append(time.perf_counter() - start)
        time.sleep(0.3)
    return chart, table


if __name__ == "__main__":
    main()
