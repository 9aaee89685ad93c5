"""Studies unlike the sample, end to end: the demo pipeline spec unchanged, every dashboard page.

Three studies (``tests/own_studies.py``) go through ``pipelines/demo.yaml`` with only its
``studies:`` list changed, run by the real ``cx run``: a retailer survey with no KPIs,
segments, waves, attributes or touchpoints (a ``;`` CSV with ``-99`` codes, no id column, a
single-item construct), a bank tracker with coded segments, waves and no NPS, and a study
whose two experience constructs are nearly one (an improper SEM solution). Nothing may fail:
what a study lacks is *not applicable*, with the reason. Then a real ``cx serve`` and
Chromium load every page of every study: no error, no traceback, the spec's labels, the
not-applicable reasons, and the improper solution flagged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.dashboard.conftest import chromium, serving
from tests.own_studies import bank_study, collinear_study, retail_study

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = ("overview", "drivers", "what-if", "segments", "journey")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The three studies refreshed and published by `cx run` on a copy of demo.yaml."""
    root = tmp_path_factory.mktemp("own-studies")
    specs = {
        "retail": retail_study(root / "retail"),
        "bank": bank_study(root / "bank"),
        "collinear": collinear_study(root / "collinear"),
    }
    pipeline = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text(encoding="utf-8"))
    pipeline["studies"] = [{"spec": str(path)} for path in specs.values()]
    pipeline["notebooks"] = [
        {**nb, "path": str((REPO / "pipelines" / nb["path"]).resolve())}
        for nb in pipeline["notebooks"]
    ]
    spec_path = root / "pipeline.yaml"
    spec_path.write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
    runs = root / "runs"
    env = dict(os.environ, CX_RUNS_DIR=str(runs), PYTHONUNBUFFERED="1")
    cx = Path(sys.executable).with_name("cx")
    proc = subprocess.run(
        [str(cx), "run", str(spec_path), "--jobs", "2"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    return {"specs": specs, "runs": runs, "proc": proc, "root": root}


def pointer(published, study: str) -> dict:
    return json.loads((published["runs"] / study / "published.json").read_text())


def test_the_demo_pipeline_runs_every_study_without_a_failure(published):
    proc = published["proc"]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "✗" not in out, out[-4000:]  # no run failed or was gated
    assert "publishing" not in out or "failed" not in out, out[-4000:]
    assert "not applicable" in out.lower(), out[-4000:]


@pytest.mark.parametrize(
    ("study", "not_applicable"),
    [
        (
            "retail",
            {
                "00-study-overview": "no KPIs",
                "03-technical-vs-emotional": "attributes",
                "05-touchpoints-and-journey": "touchpoints",
            },
        ),
        ("bank", {}),
        (
            "collinear",
            {
                "03-technical-vs-emotional": "attributes",
                "05-touchpoints-and-journey": "touchpoints",
            },
        ),
    ],
)
def test_what_does_not_apply_is_said_and_the_rest_is_published(published, study, not_applicable):
    text = json.dumps(pointer(published, study))
    for notebook, reason in not_applicable.items():
        assert notebook in text and reason in text, text[:3000]
    assert "02-experience-brand-loyalty" in text
    assert "04-drivers-and-what-if" in text


def test_the_improper_solution_is_in_the_published_tables(published):
    runs = published["runs"] / "collinear"
    warnings = list(runs.rglob("sem_warnings.parquet"))
    assert warnings, "no sem_warnings table was published"
    import pandas as pd

    table = pd.concat(pd.read_parquet(p) for p in warnings)
    assert {"Staff", "Service"} <= set(" ".join(table["constructs"].astype(str)).split(", ")) | set(
        " ".join(table["constructs"].astype(str)).replace(",", " ").split()
    ), table
    priorities = list(runs.rglob("driver_priorities.parquet"))
    assert priorities
    flagged = pd.read_parquet(priorities[0])
    assert (flagged["model_improper"].astype(str).str.len() > 0).all()


# ------------------------------------------------------------------ every page, in Chromium
#: Per study and page: texts the page must show (labels from the spec, reasons, flags).
EXPECTED = {
    "retail": {
        "overview": ["not applicable", "no KPIs"],
        "drivers": ["Perceived quality", "Value for money", "Customer retention"],
        "what-if": ["Customer retention"],
        "segments": ["not applicable", "no KPIs"],
        "journey": ["not applicable", "no touchpoints"],
    },
    "bank": {
        "overview": ["Customer loyalty index", "Not measured: NPS"],
        "drivers": ["Competence", "Likeability", "Customer satisfaction"],
        "what-if": ["Customer loyalty"],
        "segments": ["Private", "Business"],
        "journey": ["branch", "hotline", "app", "not measured", "touchpoint_costs"],
    },
    "collinear": {
        "overview": ["Improper solution", "Staff experience", "Service experience"],
        "drivers": ["Improper solution", "Staff experience", "Service experience", "HTMT"],
        "what-if": ["Improper solution", "Loyalty"],
        "segments": ["no segment column"],
        "journey": ["not applicable", "no touchpoints"],
    },
}


@pytest.fixture(scope="module")
def server(published, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "cx-serve.log"
    with serving(published["runs"], log, pools=DASHBOARDS) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chromium-profile"), height=2400) as context:
        yield context


LOCAL = ("data:", "blob:", "about:")


@pytest.mark.browser
@pytest.mark.parametrize("study", list(EXPECTED))
def test_every_page_of_every_study(browser, server, published, study):
    title = pointer(published, study)["study"]["title"]
    problems = []
    for name, texts in EXPECTED[study].items():
        page = browser.new_page()
        outside: list[str] = []
        page.on(
            "request",
            lambda r, out=outside: (
                None if r.url.startswith((server.origin, *LOCAL)) else out.append(r.url)
            ),
        )
        page.goto(f"{server.origin}/voila/render/{name}.ipynb?study={study}", timeout=150_000)
        page.wait_for_selector(".cx-dashboard", timeout=90_000)
        page.wait_for_function(
            "t => [...document.querySelectorAll('.cx-title')].some(e => e.textContent.trim() === t)",
            arg=title,
            timeout=60_000,
        )
        # a chart drawn or a note saying why there is none (a hidden chart may be first)
        page.wait_for_selector(".cx-chart svg .role-mark, .cx-missing", state="attached")
        page.wait_for_timeout(1500)  # the page's other sections draw
        body = page.inner_text("body")
        if "Traceback" in body or page.locator(".cx-error").count():
            problems.append(f"{name}: an error is on the page:\n{body[:1500]}")
        if page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count():
            problems.append(f"{name}: stderr output is on the page")
        if outside:
            problems.append(f"{name}: requests left the server's origin: {outside[:3]}")
        missing = [t for t in texts if t.lower() not in body.lower()]
        if missing:
            problems.append(f"{name}: does not show {missing}:\n{body[:1500]}")
        if "not published yet" in body.lower():
            problems.append(f"{name}: says 'not published yet' for a published study")
        page.close()
    assert not problems, "\n\n".join(problems)
