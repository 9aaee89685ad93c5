"""Check dashboards that are being served (e.g. by `make run`) in Chromium headless.

    .venv/bin/python -m tests.dashboard.live_check [http://127.0.0.1:8866] [--shots DIR]

Opens the six dashboards one after another, waits for their widgets and charts, and
reports for each: the study and publication shown, the number of chart marks drawn,
any notes about missing, stale or failed results, the time to the first chart, and
problems (an error note, a Python traceback, a request that left the server's origin,
no chart). Exits 1 when any page has a problem. Not a pytest test: it checks whatever
a running server publishes (the browser tests use their own sample publication).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS

DASHBOARDS = ("overview", "drivers", "what-if", "segments", "journey", "digital")
LOCAL = ("data:", "blob:", "about:")


def check(origin: str, shots: Path | None, timeout_s: float = 120) -> list[dict]:
    """Load every dashboard at ``origin``; one report per page."""
    from playwright.sync_api import sync_playwright

    reports = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 2400},  # Voila scrolls inside the page: tall
            accept_downloads=False,
        )
        for name in DASHBOARDS:
            page = context.new_page()
            outside: list[str] = []
            page.on(
                "request",
                lambda r, out=outside: (
                    None if r.url.startswith((origin, *LOCAL)) else out.append(r.url)
                ),
            )
            report: dict = {"dashboard": name, "problems": []}
            start = time.perf_counter()
            try:
                page.goto(f"{origin}/voila/render/{name}.ipynb", timeout=timeout_s * 1000)
                page.wait_for_selector(".cx-dashboard", timeout=timeout_s * 1000)
                page.wait_for_selector(
                    ".cx-chart svg .role-mark, .cx-missing, .cx-error",
                    state="attached",  # a what-if at rest draws zero-width bars
                    timeout=timeout_s * 1000,
                )
                report["first chart s"] = round(time.perf_counter() - start, 1)
                time.sleep(1.0)  # let the other charts of the page draw
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                report["problems"].append(f"did not load: {type(exc).__name__}: {exc}")
            body = page.inner_text("body") if not report["problems"] else ""
            title = page.locator(".cx-title")
            report["study"] = title.first.inner_text() if title.count() else ""
            published = page.locator(".cx-published")
            report["published"] = published.first.inner_text() if published.count() else ""
            report["chart marks"] = page.locator(".cx-chart svg .role-mark").count()
            report["notes"] = [
                page.locator(sel).nth(i).inner_text()
                for sel in (".cx-missing", ".cx-flag-stale", ".cx-flag-failed")
                for i in range(page.locator(sel).count())
            ]
            if page.locator(".cx-error").count():
                report["problems"].append(
                    "error note: " + page.locator(".cx-error").first.inner_text()
                )
            if "Traceback" in body:
                report["problems"].append("a Python traceback is on the page")
            if outside:
                report["problems"].append(f"requests left the origin: {outside[:3]}")
            if not report["problems"] and report["chart marks"] == 0:
                report["problems"].append("no chart drawn")
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
            reports.append(report)
            page.close()
        context.close()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("origin", nargs="?", default="http://127.0.0.1:8866")
    parser.add_argument("--shots", type=Path, help="save a full-page screenshot of each page here")
    args = parser.parse_args(argv)
    reports = check(args.origin.rstrip("/"), args.shots)
    for r in reports:
        print(f"{r['dashboard']}: {'OK' if not r['problems'] else 'PROBLEM'}")
        for key in ("study", "published", "first chart s", "chart marks", "notes", "problems"):
            if r.get(key):
                print(f"  {key}: {r[key]}")
    return 1 if any(r["problems"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
