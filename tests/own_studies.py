"""Studies unlike the sample, as researchers bring them: specs written by hand, exports simulated.

Each builder writes ``study.yaml`` and an export into a folder and returns the spec's path.
None of them shares the sample's construct names, and each lacks something the sample has:

- :func:`retail_study` (like the ECSI mobile-phone survey): 1-10 items, a ``;``-separated CSV
  with ``-99`` for "no answer" and no id column; constructs Quality (a composite of its
  items, ``<~``), Value (a single item) and Retention; no KPIs, segments, waves,
  attributes or touchpoints.
- :func:`bank_study` (like a corporate-reputation survey): 1-7 items in Parquet; numeric
  segment codes with labels (1 = Private, 2 = Business); waves; a satisfaction and a loyalty
  KPI but no NPS; perception-only attributes; three touchpoints; an observed covariate
  (years as a customer) in the regression of loyalty.
- :func:`collinear_study`: two experience constructs that are nearly the same construct
  (latent correlation 0.97), so the SEM solution is improper (a discriminant-validity
  problem) although the sampler converges.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from cxlib.simulate import Latent, Loading, Missingness, SegmentTruth, Truth, simulate_responses
from cxlib.study import study_from_dict


def _items(prefix: str, n: int, scale: str, text: str) -> dict:
    return {f"{prefix}{i}": {"text": f"{text} ({i})", "scale": scale} for i in range(1, n + 1)}


def _write_spec(folder: Path, spec: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def retail_study(folder: Path, *, n: int = 400, seed: int = 11) -> Path:
    """Quality -> Value (one item) -> Retention, 1-10 scales, ``;`` CSV, -99 codes, no id."""
    spec = {
        "name": "retail",
        "title": "Mobile retailer survey",
        "columns": {},  # no id column: rows are numbered
        "source": {"file": "export.csv", "delimiter": ";", "missing_values": [-99]},
        "scales": {"ten": {"min": 1, "max": 10}},
        "constructs": {
            "Quality": {"label": "Perceived quality", "items": _items("QUAL", 3, "ten", "Quality")},
            "Value": {
                "label": "Value for money",
                "items": {"VALUE": {"text": "Value for the price paid", "scale": "ten"}},
            },
            "Retention": {"label": "Customer retention", "items": _items("RET", 3, "ten", "Stay")},
        },
        "model": "Quality <~ QUAL1 + QUAL2 + QUAL3\nValue ~ Quality\nRetention ~ Quality + Value\n",
    }
    path = _write_spec(folder, spec)
    study = study_from_dict(spec, path=path)
    truth = Truth(
        paths={"Value ~ Quality": 0.5, "Retention ~ Quality": 0.3, "Retention ~ Value": 0.4},
        loadings={name: 0.8 for name in study.item_names},
        missing=Missingness(rate=0.03),
    )
    frame = simulate_responses(study, truth, n=n, seed=seed)
    frame = frame.astype("float64").fillna(-99).astype(int)
    frame.to_csv(folder / "export.csv", sep=";", index=False)
    return path


BANK_SEGMENTS = {1: "Private", 2: "Business"}


def bank_study(folder: Path, *, n: int = 600, seed: int = 12) -> Path:
    """Competence, likeability -> satisfaction -> loyalty; coded segments, waves, no NPS."""
    seven = "seven"
    spec = {
        "name": "bank",
        "title": "Retail bank reputation tracker",
        "columns": {
            "respondent_id": "case",
            "wave": "period",
            "segments": {"clientele": dict(BANK_SEGMENTS)},
        },
        "source": {"file": "export.parquet", "wave_order": ["2026-H1", "2026-H2"]},
        "scales": {seven: {"min": 1, "max": 7, "labels": {1: "Not at all", 7: "Very much"}}},
        "kpis": {"satisfaction": "CUSA1", "loyalty": "CUSL"},
        "constructs": {
            "COMP": {
                "label": "Competence",
                "items": {
                    "COMP1": {
                        "text": "A top competitor",
                        "scale": seven,
                        "tags": {"dimension": "technical", "role": "perception"},
                    },
                    "COMP2": {
                        "text": "Recognised worldwide",
                        "scale": seven,
                        "tags": {"dimension": "technical", "role": "perception"},
                    },
                    "COMP3": {"text": "Believe in its success", "scale": seven},
                },
            },
            "LIKE": {
                "label": "Likeability",
                "items": {
                    "LIKE1": {
                        "text": "A company I can identify with",
                        "scale": seven,
                        "tags": {"dimension": "emotional", "role": "perception"},
                    },
                    "LIKE2": {
                        "text": "Would regret its loss",
                        "scale": seven,
                        "tags": {"dimension": "emotional", "role": "perception"},
                    },
                    "LIKE3": {"text": "A likeable company", "scale": seven},
                },
            },
            "CUSA": {
                "label": "Customer satisfaction",
                "items": {"CUSA1": {"text": "Satisfied overall", "scale": seven}},
                "reliability": 0.8,
            },
            "CUSL": {
                "label": "Customer loyalty",
                "items": {
                    "CUSL1": {"text": "Would recommend", "scale": seven},
                    "CUSL2": {"text": "Would stay", "scale": seven},
                    "CUSL3": {"text": "Would choose again", "scale": seven},
                },
            },
            "SERV": {
                "label": "Service experience",
                "items": {
                    "TP_BRANCH": {
                        "text": "Branch visit",
                        "scale": seven,
                        "tags": {
                            "touchpoint": "branch",
                            "channel": "face_to_face",
                            "stage": "during",
                        },
                    },
                    "TP_HOTLINE": {
                        "text": "Hotline",
                        "scale": seven,
                        "tags": {
                            "touchpoint": "hotline",
                            "channel": "personal_distant",
                            "stage": "after",
                        },
                    },
                    "TP_APP": {
                        "text": "Banking app",
                        "scale": seven,
                        "tags": {"touchpoint": "app", "channel": "electronic", "stage": "after"},
                    },
                },
            },
        },
        "attributes": {
            "leadership": {
                "label": "Market leadership",
                "dimension": "technical",
                "perception": "COMP1",
            },
            "renown": {"label": "Renown", "dimension": "technical", "perception": "COMP2"},
            "identification": {
                "label": "Identification",
                "dimension": "emotional",
                "perception": "LIKE1",
            },
            "attachment": {"label": "Attachment", "dimension": "emotional", "perception": "LIKE2"},
        },
        "items": {"TENURE": {"text": "Years as a customer", "scale": [0, 20]}},
        "model": "CUSA ~ COMP + LIKE + SERV\nCUSL ~ CUSA + LIKE + TENURE\n",
    }
    path = _write_spec(folder, spec)
    study = study_from_dict(spec, path=path)
    truth = Truth(
        paths={
            "CUSA ~ COMP": 0.2,
            "CUSA ~ LIKE": 0.3,
            "CUSA ~ SERV": 0.3,
            "CUSL ~ CUSA": 0.5,
            "CUSL ~ LIKE": 0.2,
        },
        loadings={
            **{name: 0.8 for name in study.item_names if name != "TENURE"},
            "TENURE": Loading(latent="CUSL", loading=0.3),
        },
        latent=Latent(correlations={"COMP ~~ LIKE": 0.4, "COMP ~~ SERV": 0.2, "LIKE ~~ SERV": 0.2}),
        segments={
            "clientele": {"Private": SegmentTruth(share=0.6), "Business": SegmentTruth(share=0.4)}
        },
        waves={"2026-H1": {}, "2026-H2": {"LIKE": 0.1}},
        missing=Missingness(rate=0.02),
    )
    frame = simulate_responses(study, truth, n=n, seed=seed)
    codes = {label: code for code, label in BANK_SEGMENTS.items()}
    frame["clientele"] = frame["clientele"].astype(str).map(codes).astype("int64")
    frame["period"] = frame["period"].astype(str)
    frame.to_parquet(folder / "export.parquet", index=False)
    return path


def collinear_study(folder: Path, *, n: int = 500, seed: int = 13) -> Path:
    """Two experience constructs correlated 0.97: a converged but improper SEM."""
    five = "five"
    spec = {
        "name": "collinear",
        "title": "Near-collinear experience constructs",
        "columns": {"respondent_id": "rid"},
        "source": {"file": "export.csv"},
        "scales": {five: {"min": 1, "max": 5}},
        "kpis": {"loyalty": "Loyal"},
        "constructs": {
            "Staff": {"label": "Staff experience", "items": _items("STAFF", 3, five, "Staff")},
            "Service": {
                "label": "Service experience",
                "items": _items("SERVICE", 3, five, "Service"),
            },
            "Loyal": {"label": "Loyalty", "items": _items("LOYAL", 3, five, "Loyal")},
        },
        "model": "Loyal ~ Staff + Service\n",
    }
    path = _write_spec(folder, spec)
    study = study_from_dict(spec, path=path)
    truth = Truth(
        paths={"Loyal ~ Staff": 0.3, "Loyal ~ Service": 0.3},
        loadings={name: 0.85 for name in study.item_names},
        latent=Latent(correlations={"Staff ~~ Service": 0.97}),
    )
    frame = simulate_responses(study, truth, n=n, seed=seed)
    frame.to_csv(folder / "export.csv", index=False)
    return path
