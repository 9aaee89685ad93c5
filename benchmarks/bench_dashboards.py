"""Dashboards in a real browser: time to the first chart, and what-if latency.

Publishes the sample study in a temporary runs folder (no model sampled; see
tests/dashboard/sample.py), starts `cx serve` on a free port (preheated kernels, as
configured in voila.json), and drives Debian's Chromium headless with Playwright:

- first chart: from the page request to the first chart's marks drawn, with a
  preheated kernel (the pool is given time to refill between loads);
- what-if latency: from a slider step (keyboard, as a release) to the chart showing
  the new prediction.

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
STEPS = 8


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        publish_sample(tmp / "runs", tmp / "work")
        server = Server(tmp / "runs", tmp / "serve.log")
        try:
            server.wait()
            server.wait_pools(["overview", "drivers", "what-if", "segments"])
            load = os.getloadavg()[0]
            with sync_playwright() as p:
                ctx = p.chromium.launch_persistent_context(
                    str(tmp / "profile"), executable_path=CHROMIUM, headless=True,
                    args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1000},
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
                            latencies = slider_latencies(page)
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
            f"What-if: slider step (keyboard) → chart shows the new prediction, {len(lat)} steps: "
            f"median {statistics.median(lat) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms "
            f"(target ≤ 150 ms: {'met' if statistics.median(lat) <= 0.15 else 'not met'}).",
        ]
    )
    print(text)
    update_results("bench_dashboards", text)


def slider_latencies(page) -> list[float]:
    handle = page.locator(".cx-slider-Image .noUi-handle")
    handle.focus()
    out = []
    for _ in range(STEPS):
        before = page.eval_on_selector_all(
            ".cx-chart svg [aria-label]", "els => els.map(e => e.getAttribute('aria-label')).join('|')"
        )
        start = time.perf_counter()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "(b) => [...document.querySelectorAll('.cx-chart svg [aria-label]')]"
            ".map(e => e.getAttribute('aria-label')).join('|') !== b",
            arg=before,
            polling="raf",
            timeout=10_000,
        )
        out.append(time.perf_counter() - start)
        time.sleep(0.3)
    return out


if __name__ == "__main__":
    main()
