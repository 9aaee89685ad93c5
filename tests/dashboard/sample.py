"""A published sample study for the dashboard tests and benchmark, built in seconds.

No model is sampled: the artifacts the notebooks publish (``notebooks/README.md``) are
written directly from cxlib computations on the sample data — KPIs, alerts, segment
differences, a hand-built :class:`DriverModel` with its priorities and what-if
baseline — into run folders with manifests, and published with the pipeline's
own pointer switch.

Two studies:

- ``telecom``: everything (00, 02, 03, 04); Enterprise x 2025-Q4 is cut to 20
  respondents, a small cell the dashboards must suppress;
- ``telecom-pilot``: only 00 (the drivers and what-if are "not published yet"),
  its NPS 7 points below telecom's (so a page showing the wrong study's numbers fails),
  and a newer run of 00 that failed, so its page is flagged stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.data import load_responses
from cxlib.insights import (
    DriverModel,
    driver_priorities,
    estimate_kpis,
    evaluate_alerts,
    what_if_examples,
)
from cxlib.insights.drivers import what_if_baseline
from cxlib.insights.kpis import segment_differences
from cxlib.pipeline.artifacts import Artifacts
from cxlib.pipeline.provenance import write_json_atomic
from cxlib.pipeline.publish import switch_pointer
from cxlib.pipeline.schemas import published_table
from cxlib.pipeline.tables import label_table
from cxlib.study import load_study

SMALL_SEGMENT, SMALL_WAVE, SMALL_N = "Enterprise", "2025-Q4", 20
#: Structural paths of the hand-built driver model (to <- from).
PATHS = {
    ("Image", "Experience"): 0.40,
    ("Image", "Technical"): 0.15,
    ("Image", "Emotional"): 0.30,
    ("Satisfaction", "Experience"): 0.30,
    ("Satisfaction", "Technical"): 0.30,
    ("Satisfaction", "Emotional"): 0.20,
    ("Loyalty", "Image"): 0.35,
    ("Loyalty", "Satisfaction"): 0.30,
    ("Loyalty", "Experience"): 0.10,
}


@dataclass
class SampleStudy:
    """What the tests compare the pages with."""

    runs_dir: Path
    study: str
    kpis: pd.DataFrame
    priorities: pd.DataFrame
    differences: pd.DataFrame
    model: DriverModel
    baseline: dict
    min_cell_size: int
    weights: pd.DataFrame
    pilot_kpis: pd.DataFrame


def driver_model(study, n_draws: int = 200, seed: int = 3, paths=None) -> DriverModel:
    """A DriverModel over the study's constructs with known paths (default ``PATHS``)."""
    rng = np.random.default_rng(seed)
    latents = list(study.constructs)
    items = {c: list(study.constructs[c].item_names) for c in latents}
    order = [i for c in latents for i in items[c]]
    scales = {i: (study.item(i).scale.min, study.item(i).scale.max) for i in order}
    B = np.zeros((n_draws, 1, len(latents), len(latents)))
    for (to, frm), value in (paths or PATHS).items():
        B[:, 0, latents.index(to), latents.index(frm)] = value + 0.03 * rng.standard_normal(n_draws)
    total = np.linalg.inv(np.eye(len(latents)) - B)
    sd = np.array([(scales[i][1] - scales[i][0]) / 4 for i in order])
    loadings = np.zeros((n_draws, 1, len(order), len(latents)))
    for k, c in enumerate(latents):
        for i in items[c]:
            j = order.index(i)
            loadings[:, 0, j, k] = 0.8 * sd[j] * (1 + 0.02 * rng.standard_normal(n_draws))
    item_sd = np.broadcast_to(sd, (n_draws, 1, len(order))).copy()
    return DriverModel(latents, items, scales, total, loadings, item_sd, order)


def dimension_weights_table() -> pd.DataFrame:
    """03's ``expectations_dimension_weights`` (columns as ``dimension_weights()`` writes them).

    Hand-set numbers, one row per segment; Enterprise has too few respondents for the
    study's minimum cell size, so the dashboards must leave it out.
    """
    segments = ["Consumer", "Small business", "Enterprise"]
    tech, tech_lo, tech_hi = [0.88, 1.13, 0.97], [0.74, 0.90, 0.66], [1.02, 1.35, 1.24]
    emo, emo_lo, emo_hi = [1.54, 1.63, 1.38], [1.41, 1.40, 1.14], [1.67, 1.85, 1.69]
    diff = np.subtract(emo, tech)
    return pd.DataFrame(
        {
            "study": "telecom",
            "segment": segments,
            "wave": "all",
            "technical": tech,
            "technical_sd": 0.1,
            "technical_hdi_low": tech_lo,
            "technical_hdi_high": tech_hi,
            "emotional": emo,
            "emotional_sd": 0.1,
            "emotional_hdi_low": emo_lo,
            "emotional_hdi_high": emo_hi,
            "emotional_minus_technical": diff,
            "emotional_minus_technical_sd": 0.15,
            "emotional_minus_technical_hdi_low": diff - 0.3,
            "emotional_minus_technical_hdi_high": diff + 0.3,
            "p_emotional_greater": [1.0, 0.99, 0.945],
            "n_respondents": [4776, 2006, SMALL_N],
            "small_segment": False,
        }
    )


def sem_effects_table() -> pd.DataFrame:
    """02's ``sem_effects`` (the declared columns): the hand-built model's direct paths."""
    paths = list(PATHS.items())
    mean = np.array([value for _, value in paths])
    return pd.DataFrame(
        {
            "study": "telecom",
            "segment": config.EVERYONE,
            "wave": config.EVERYONE,
            "from": [frm for (_, frm), _ in paths],
            "to": [to for (to, _), _ in paths],
            "effect": "direct",
            "path": [f"{frm} → {to}" for (to, frm), _ in paths],
            "mean": mean,
            "sd": 0.03,
            "hdi_low": mean - 0.056,
            "hdi_high": mean + 0.056,
            "p_positive": 1.0,
        }
    )


def declared_columns(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The columns of a table its declaration knows (cxlib may compute more than is published)."""
    columns = published_table(name).columns
    return table[[c for c in table.columns if c in columns]]


def publish_run(
    study_dir: Path,
    study: str,
    notebook: str,
    write,
    *,
    stamp: str,
    status="succeeded",
    diagnostics=None,
    publish=True,
) -> str:
    run_id = f"{stamp}-{notebook}-all-{abs(hash((study, notebook, stamp))) % 16**6:06x}"
    run_dir = study_dir / run_id
    out = Artifacts(run_dir / "artifacts", notebook=notebook)
    write(out)
    if diagnostics:
        out.diagnostics(diagnostics)
    out.finish()
    slot = f"{notebook}/all"
    manifest = {
        "run_id": run_id,
        "study": study,
        "pipeline": "dashboard-tests",
        "label": "all",
        "slot": slot,
        "status": status,
        "fast": False,
        "notebook": {"name": notebook},
        "diagnostics": diagnostics,
        "gate_failures": [],
        "run_dir": str(run_dir),
        "output_dir": str(run_dir / "artifacts"),
        "timings": {"finished_at": stamp},
    }
    write_json_atomic(run_dir / "manifest.json", manifest)
    if publish:
        switch_pointer(
            study_dir,
            study,
            {
                slot: {
                    "run_id": run_id,
                    "notebook": notebook,
                    "label": "all",
                    "output_dir": f"{run_id}/artifacts",
                }
            },
        )
    return run_id


def publish_sample(runs_dir: Path, work: Path) -> SampleStudy:
    """Publish ``telecom`` and ``telecom-pilot`` under ``runs_dir`` (``work``: scratch)."""
    study = load_study(config.SAMPLE_STUDY)
    frame = pd.read_parquet(config.SAMPLE_STUDY.parent / "responses.parquet")
    small = (frame["segment"] == SMALL_SEGMENT) & (frame["wave"] == SMALL_WAVE)
    keep = ~small | (small.cumsum() <= SMALL_N)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "responses.parquet"
    frame[keep].to_parquet(path)
    data = load_responses(study, path)
    kpis = estimate_kpis(data, n_draws=400)
    kpi_table = label_table(kpis.table, study=study.name)
    alerts = evaluate_alerts(
        study.alerts, study=study.name, kpis=kpis, diagnostics={"sem": {"ok": True}}
    )
    if "status" not in alerts.columns:  # evaluate_alerts before it said which rules apply
        alerts = alerts.assign(status="evaluated", reason="")
    differences = label_table(segment_differences(kpis), study=study.name)
    model = driver_model(study)
    pri = label_table(
        pd.concat(
            [driver_priorities(model, data, level=lv) for lv in ("construct", "item")],
            ignore_index=True,
        ),
        study=study.name,
    )
    pri = declared_columns(pri, "driver_priorities")
    baseline = what_if_baseline(model, data)
    examples = label_table(what_if_examples(model, data), study=study.name)
    weights = dimension_weights_table()
    ok_diag = {"max_r_hat": 1.004, "min_ess_bulk": 900.0, "divergences": 0}
    overview = {
        "study": study.name,
        "title": study.title,
        "respondents": int(len(data.frame)),
        "waves": kpis.waves,
        "min_cell_size": study.min_cell_size,
        "diagnostics": {"sem": {"ok": True}, "expectations": {"ok": True}},
    }

    def write_overview(out):
        out.table("kpis", kpi_table)
        out.table("alerts", alerts)
        out.table("segment_differences", differences)
        out.json("overview", overview)

    def write_sem(out):
        out.table("sem_effects", sem_effects_table())
        model.save(out.path / "driver_model.npz")

    def write_expectations(out):
        out.table("expectations_dimension_weights", weights)

    def write_drivers(out):
        out.table("driver_priorities", pri)
        out.table("what_if_examples", examples)
        model.save(out.path / "driver_model.npz")
        out.json("what_if_baseline", baseline)

    stamp = "20261120T060000Z"
    study_dir = runs_dir / study.name
    publish_run(study_dir, study.name, "00-study-overview", write_overview, stamp=stamp)
    publish_run(
        study_dir,
        study.name,
        "02-experience-brand-loyalty",
        write_sem,
        stamp=stamp,
        diagnostics=ok_diag,
    )
    publish_run(
        study_dir,
        study.name,
        "03-technical-vs-emotional",
        write_expectations,
        stamp=stamp,
        diagnostics=ok_diag,
    )
    publish_run(study_dir, study.name, "04-drivers-and-what-if", write_drivers, stamp=stamp)

    pilot = "telecom-pilot"
    pilot_dir = runs_dir / pilot
    pilot_overview = overview | {"study": pilot, "title": "Telecom pilot — overview only"}

    pilot_kpis = kpi_table.assign(study=pilot)
    nps = pilot_kpis["kpi"] == "nps"
    for column in ("mean", "hdi_low", "hdi_high"):
        pilot_kpis.loc[nps, column] = (pilot_kpis.loc[nps, column] - 7).round(0)

    def write_pilot(out):
        out.table("kpis", pilot_kpis)
        out.table("alerts", alerts)
        out.json("overview", pilot_overview)

    publish_run(pilot_dir, pilot, "00-study-overview", write_pilot, stamp=stamp)
    publish_run(
        pilot_dir,
        pilot,
        "00-study-overview",
        write_pilot,
        stamp="20261121T060000Z",
        status="failed",
        publish=False,
    )
    return SampleStudy(
        runs_dir,
        study.name,
        kpi_table,
        pri,
        differences,
        model,
        baseline,
        study.min_cell_size,
        weights,
        pilot_kpis,
    )


# ------------------------------------------------------------------ 06-digital-experience
# Test fixtures only: hand-set numbers in the shape 06 publishes, no model fitted.
DIGITAL_NOTEBOOK = "06-digital-experience"
#: The fixture's touchpoints; the last has fewer sessions than the minimum (flagged).
DIGITAL_TOUCHPOINTS = ("web_compare", "app_order", "app_selfservice")
DIGITAL_SESSIONS = {"web_compare": 5200, "app_order": 3100, "app_selfservice": 14}
DIGITAL_DAYS = 14
DIGITAL_SIGNALS = {
    # signal: (label, unit, effect in points per SD, P(largest cost))
    "rage_clicks": ("Rage clicks", "bursts", -6.1, 0.71),
    "form_errors": ("Form errors", "errors", -4.2, 0.22),
    "dead_clicks": ("Dead clicks", "clicks", -2.0, 0.05),
    "quick_backs": ("Quick backs", "backs", -1.1, 0.02),
    "hesitation_s": ("Hesitation", "s", -0.4, 0.0),
}
#: The signals with a per-page rate (worst pages).
DIGITAL_PAGE_SIGNALS = ("rage_clicks", "dead_clicks", "quick_backs", "form_errors")
#: A page name a page must escape.
DIGITAL_ODD_PAGE = "/compare?plan=<b>bold</b>&x=1"


def _estimate(name: str, mean, half) -> dict:
    mean = np.asarray(mean, dtype=float)
    low, high = (f"{name}_hdi_low", f"{name}_hdi_high")
    return {name: mean, f"{name}_sd": half / 2, low: mean - half, high: mean + half}


def digital_tables(study: str, seed: int = 6) -> dict:
    """The five 06 tables and ``digital.json`` for ``study`` (test fixture, declared columns)."""
    rng = np.random.default_rng(seed)
    days = [str(d.date()) for d in pd.date_range("2026-11-01", periods=DIGITAL_DAYS, freq="D")]
    base = {"web_compare": 71.0, "app_order": 64.0, "app_selfservice": 55.0}
    rows = []

    def add(level, touchpoint, day, page, sessions, score, half, share):
        rows.append(
            {"level": level, "touchpoint": touchpoint, "day": day, "page": page,
             "sessions": int(sessions), "surveyed": max(int(sessions) // 30, 0),
             "score": score, "score_sd": half / 2, "score_hdi_low": score - half,
             "score_hdi_high": score + half, "dissatisfied_share": share,
             "dissatisfied_share_sd": 0.01, "dissatisfied_share_hdi_low": max(share - 0.02, 0),
             "dissatisfied_share_hdi_high": share + 0.02,
             "few_sessions": bool(sessions < 100)}
        )  # fmt: skip

    total = sum(DIGITAL_SESSIONS.values())
    add("all", "all", "all", "all", total, 67.4, 0.8, 0.182)
    for tp in DIGITAL_TOUCHPOINTS:
        n = DIGITAL_SESSIONS[tp]
        add("touchpoint", tp, "all", "all", n, base[tp], 1.0 if n > 100 else 9.0, 0.15)
    for k, day in enumerate(days):
        add("day", "all", day, "all", total // DIGITAL_DAYS, 67 + 2 * np.sin(k / 2), 2.0, 0.18)
        for tp in DIGITAL_TOUCHPOINTS:
            n = DIGITAL_SESSIONS[tp] // DIGITAL_DAYS
            add("touchpoint_day", tp, day, "all", n, base[tp] + rng.normal(0, 2), 3.0, 0.2)
    pages = [(f"/{tp}/step-{i}", tp) for tp in DIGITAL_TOUCHPOINTS for i in range(1, 5)]
    pages.append((DIGITAL_ODD_PAGE, "web_compare"))
    for page, tp in pages:
        add("page", "all", "all", page, 300, base[tp] - 3, 4.0, 0.2)
    scores = pd.DataFrame(rows)

    names = list(DIGITAL_SIGNALS)
    signals = pd.DataFrame(
        {"signal": names, "label": [DIGITAL_SIGNALS[s][0] for s in names],
         "unit": [DIGITAL_SIGNALS[s][1] for s in names],
         "definition": [f"<i>{DIGITAL_SIGNALS[s][0]}</i> as cxlib.data.signals defines it"
                        for s in names],
         **_estimate("effect", [DIGITAL_SIGNALS[s][2] for s in names], 0.9),
         "p_largest_cost": [DIGITAL_SIGNALS[s][3] for s in names],
         "per_session": [0.4, 0.2, 0.6, 0.3, 1.8], "per_surveyed_session": [0.2, 0.1, 0.5, 0.2, 1.5]}
    )  # fmt: skip

    worst = []
    for signal in DIGITAL_PAGE_SIGNALS:
        rates = rng.uniform(0.001, 0.2, len(pages))
        order = np.argsort(-rates)
        for rank, j in enumerate(order, start=1):
            page, tp = pages[j]
            worst.append(
                {"signal": signal, "page": page, "touchpoint": tp, "views": 900 + 10 * j,
                 "sessions": 400 + j, "rate": float(rates[j]), "rank": rank}
            )  # fmt: skip
    worst_pages = pd.DataFrame(worst)

    groups = pd.DataFrame(
        {"group": ["surveyed", "unsurveyed", "all"], "sessions": [276, total - 276, total],
         **_estimate("score", [72.9, 67.2, 67.4], 1.2), "stated": [74.0, np.nan, np.nan],
         **_estimate("dissatisfied_share", [0.11, 0.186, 0.182], 0.02)}
    )  # fmt: skip
    calibration = pd.DataFrame(
        {"bin": [1, 2, 3, 4, 5], "sessions": [20, 20, 20, 20, 19],
         "predicted": [40.0, 55.0, 65.0, 75.0, 88.0], "stated": [42.0, 53.0, 66.0, 77.0, 86.0]}
    )  # fmt: skip
    calibration["difference"] = calibration["predicted"] - calibration["stated"]
    summary = {
        "sessions": total,
        "surveyed": 276,
        "response_rate": 276 / total,
        "scale": {"min": 1, "max": 5},
        "dissatisfied_at": 2,
        "selection": {
            "coefficient": 0.42,
            "hdi_low": 0.21,
            "hdi_high": 0.63,
            "p_positive": 0.999,
            "meaning": "The more satisfied a session, the likelier it answers the survey",
        },
        "elpd_holdout": -131.7,
        "holdout_sessions": 99,
        "period": {"start": days[0], "end": days[-1]},
        "min_cell_size": 100,
    }
    tables = {
        "digital_scores": scores,
        "digital_signals": signals,
        "digital_worst_pages": worst_pages,
        "digital_surveyed_vs_all": groups,
        "digital_calibration": calibration,
    }
    return {"tables": {k: label_table(v, study=study) for k, v in tables.items()},
            "summary": summary}  # fmt: skip


def publish_digital(
    runs_dir: Path, study: str, *, diagnostics=None, stamp: str = "20261120T060000Z"
) -> dict:
    """Publish a 06 run for ``study`` under ``runs_dir`` (test fixture); return what it wrote."""
    published = digital_tables(study)
    diagnostics = diagnostics or {"max_r_hat": 1.004, "min_ess_bulk": 800.0, "divergences": 0}

    def write(out):
        for name, table in published["tables"].items():
            out.table(name, table)
        out.json("digital", published["summary"])

    publish_run(
        runs_dir / study, study, DIGITAL_NOTEBOOK, write, stamp=stamp, diagnostics=diagnostics
    )
    return published


def publish_overview_only(
    runs_dir: Path, study: str, *, summary=None, not_applicable=None, stamp="20261120T060000Z"
) -> None:
    """Publish only an overview document for ``study`` (test fixture), with its pointer summary.

    ``not_applicable`` (slot -> reason) records slots the pipeline found not applicable.
    """
    overview = {"study": study, "title": f"{study} (test)", "min_cell_size": 30}
    publish_run(
        runs_dir / study,
        study,
        "00-study-overview",
        lambda out: out.json("overview", overview),
        stamp=stamp,
    )
    if summary is not None or not_applicable:
        switch_pointer(
            runs_dir / study,
            study,
            {},
            not_applicable={
                slot: {"status": "not_applicable", "reason": reason}
                for slot, reason in (not_applicable or {}).items()
            },
            summary=summary,
        )


if __name__ == "__main__":  # build one by hand: python -m tests.dashboard.sample DIR
    import sys
    import time

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cx-dashboard-runs")
    start = time.perf_counter()
    sample = publish_sample(target, target / ".work")
    print(json.dumps({"runs_dir": str(target), "seconds": round(time.perf_counter() - start, 1)}))
