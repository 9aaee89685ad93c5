"""The sample study's sessions builder, on the sample's spec and on a study without segments."""

from __future__ import annotations

import shutil

import pandas as pd
import yaml

from cxlib import config
from cxlib.models.digital.sample import build_sample_sessions
from cxlib.simulate import Truth, simulate_responses, write_responses
from cxlib.study import load_study


def _study(folder, *, segments: bool):
    spec = folder / "study.yaml"
    shutil.copy(config.SAMPLE_STUDY, spec)
    if not segments:
        raw = yaml.safe_load(spec.read_text())
        raw["columns"].pop("segments")
        raw["source"]["events"]["feedback"]["scale"] = "nps"  # a 0-10 rating
        spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    study = load_study(spec)
    frame = simulate_responses(study, Truth.from_yaml(config.SAMPLE_TRUTH), n=300, seed=1)
    write_responses(frame, folder / "responses.parquet")
    return study


def test_sessions_link_rated_ones_to_respondents_of_their_segment(tmp_path):
    study = _study(tmp_path, segments=True)
    log, built = build_sample_sessions(tmp_path, n_sessions=3000)
    assert built and log == tmp_path / "events.parquet"
    events = pd.read_parquet(log, columns=["session_id", "respondent_id", "segment"])
    sessions = events.drop_duplicates("session_id")
    linked = sessions[sessions["respondent_id"].notna()]
    responses = pd.read_parquet(tmp_path / "responses.parquet")
    segment_of = responses.set_index("respondent_id")["segment"].astype(str)
    assert len(linked) > 0
    assert (linked["respondent_id"].map(segment_of) == linked["segment"]).all()
    ratings = pd.read_parquet(tmp_path / "session_feedback.parquet")
    assert set(ratings["session_id"]) == set(linked["session_id"])
    assert ratings["rating"].between(1, 5).all()
    # up to date: not built again
    assert build_sample_sessions(tmp_path, n_sessions=3000) == (log, False)
    assert study.source.events is not None


def test_a_study_without_segments_gets_its_sessions_too(tmp_path):
    _study(tmp_path, segments=False)
    log, built = build_sample_sessions(tmp_path, n_sessions=3000)
    events = pd.read_parquet(log, columns=["session_id", "respondent_id", "segment"])
    assert built and events["segment"].isna().all()
    assert events.drop_duplicates("session_id")["respondent_id"].notna().any()
    ratings = pd.read_parquet(tmp_path / "session_feedback.parquet")
    assert ratings["rating"].between(0, 10).all() and len(ratings) > 0
