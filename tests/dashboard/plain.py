"""A published study unlike the sample, for the dashboard tests: built in about a second.

``mobile`` (ECSI-like construct codes IMAG, EXPE, SAT, LOY with the spec's labels, 1-10
items, two waves) has **no NPS, no segments, no attributes and no touchpoints**: its
pointer carries the study's summary (:meth:`cxlib.study.Study.summary`) and records
03 and 05 as not applicable with the study's own reasons, as the pipeline does. The
SEM it rests on (02) is published with an *improper* solution (a standardized
SAT -> LOY beyond 1, near-collinear IMAG/EXPE), and the hand-built driver model
carries that flag, so every page that shows it must say so.

No model is sampled: KPIs come from cxlib's estimators on simulated answers, the
driver model is built by hand from known paths (:func:`tests.dashboard.sample.driver_model`).
"""

from __future__ import annotations

from pathlib import Path

from cxlib.data import load_responses
from cxlib.insights import driver_priorities, estimate_kpis, evaluate_alerts
from cxlib.insights.drivers import what_if_baseline
from cxlib.insights.kpis import segment_differences
from cxlib.pipeline.publish import switch_pointer
from cxlib.pipeline.tables import label_table
from cxlib.simulate import default_truth, simulate_responses
from cxlib.study import load_study
from tests.dashboard.sample import declared_columns, driver_model, publish_run

NAME = "mobile"
TARGET = "LOY"
LABELS = {
    "IMAG": "Brand image",
    "EXPE": "Expectations",
    "SAT": "Satisfaction",
    "LOY": "Customer loyalty",
}
PATHS = {
    ("SAT", "IMAG"): 0.35,
    ("SAT", "EXPE"): 0.25,
    ("LOY", "SAT"): 0.45,
    ("LOY", "IMAG"): 0.20,
}
#: What 02 publishes in diagnostics.json: converged, but improper (the SEM room's shape).
IMPROPER = {
    "ok": False,
    "problems": [
        {
            "kind": "standardized_beyond_one",
            "constructs": ["SAT", "LOY"],
            "value": 1.51,
            "message": "the standardized path SAT -> LOY is 1.51, beyond ±1",
            "advice": "merge or drop near-collinear constructs, or use an informative prior",
        },
        {
            "kind": "htmt",
            "constructs": ["IMAG", "EXPE"],
            "value": 0.97,
            "message": "HTMT of IMAG and EXPE is 0.97 (> 0.9): they are hardly distinct",
            "advice": "merge IMAG and EXPE",
        },
    ],
}

SPEC = """\
name: mobile
title: "Mobile phone survey (ECSI-like)"
columns:
  respondent_id: id
  wave: wave
source:
  file: responses.parquet
  wave_order: [2025, 2026]
min_cell_size: 30
kpis:
  satisfaction: SAT1
  loyalty: LOY
scales:
  ten: {min: 1, max: 10}
constructs:
"""


def _spec() -> str:
    lines = [SPEC]
    for code, label in LABELS.items():
        lines.append(f"  {code}:\n    label: {label}\n    items:\n")
        lines += [f"      {code}{i}: {{scale: ten, text: {label} {i}}}\n" for i in (1, 2, 3)]
    lines.append("model: |\n  SAT ~ IMAG + EXPE\n  LOY ~ SAT + IMAG\n")
    return "".join(lines)


def publish_plain(runs_dir: Path, work: Path, *, name: str = NAME) -> dict:
    """Publish ``mobile`` (or ``name``) under ``runs_dir``; what the tests compare with."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "study.yaml").write_text(_spec().replace("name: mobile", f"name: {name}"))
    study = load_study(work / "study.yaml")
    frame = simulate_responses(study, default_truth(study), n=400, seed=5)
    frame.to_parquet(work / "responses.parquet")
    data = load_responses(study, work / "responses.parquet")
    kpis = estimate_kpis(data, n_draws=300)
    kpi_table = label_table(kpis.table, study=study.name)
    alerts = evaluate_alerts(study.alerts, study=study.name, kpis=kpis, diagnostics={})
    if "status" not in alerts.columns:  # evaluate_alerts before it said which rules apply
        alerts = alerts.assign(status="evaluated", reason="")
    differences = label_table(segment_differences(kpis), study=study.name)
    model = driver_model(study, paths=PATHS)
    model.target = TARGET
    model.flags = {"converged": True, "improper": [p["message"] for p in IMPROPER["problems"]]}
    pri = label_table(driver_priorities(model, data, target=TARGET), study=study.name)
    pri = declared_columns(pri, "driver_priorities")
    baseline = what_if_baseline(model, data, target=TARGET)
    overview = {
        "study": study.name,
        "title": study.title,
        "respondents": int(len(data.frame)),
        "waves": kpis.waves,
        "min_cell_size": study.min_cell_size,
    }

    def write_overview(out):
        out.table("kpis", kpi_table)
        out.table("alerts", alerts)
        out.table("segment_differences", differences)
        out.json("overview", overview)

    def write_sem(out):
        model.save(out.path / "driver_model.npz")

    def write_drivers(out):
        out.table("driver_priorities", pri)
        model.save(out.path / "driver_model.npz")
        out.json("what_if_baseline", baseline)

    stamp = "20261125T060000Z"
    study_dir = runs_dir / study.name
    diagnostics = {
        "max_r_hat": 1.003,
        "min_ess_bulk": 800.0,
        "divergences": 0,
        "ok": True,
        "problems": [],
        "improper": IMPROPER,
    }
    publish_run(study_dir, study.name, "00-study-overview", write_overview, stamp=stamp)
    publish_run(
        study_dir,
        study.name,
        "02-experience-brand-loyalty",
        write_sem,
        stamp=stamp,
        diagnostics=diagnostics,
    )
    publish_run(study_dir, study.name, "04-drivers-and-what-if", write_drivers, stamp=stamp)
    reasons = {
        "03-technical-vs-emotional/all": study.unmet("attributes"),
        "05-touchpoints-and-journey/all": study.unmet("touchpoints"),
    }
    switch_pointer(
        study_dir,
        study.name,
        {},
        not_applicable={
            slot: {"status": "not_applicable", "reason": reason} for slot, reason in reasons.items()
        },
        summary=study.summary(),
    )
    return {
        "study": study,
        "kpis": kpi_table,
        "priorities": pri,
        "baseline": baseline,
        "model": model,
        "reasons": reasons,
    }


def without_summary(pointer: dict) -> dict:
    """A pointer as written before it carried the study's summary and not-applicable slots."""
    return {k: v for k, v in pointer.items() if k != "not_applicable"} | {
        "study": pointer["study"]["name"]
        if isinstance(pointer["study"], dict)
        else pointer["study"]
    }


__all__ = ["LABELS", "NAME", "TARGET", "publish_plain", "without_summary"]
