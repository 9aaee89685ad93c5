"""The sample study's web and app sessions: an event log and intercept-survey ratings, simulated.

``cx sample`` (and ``make run``) builds them beside the sample study's responses: every
session of the study's electronic touchpoints (``source.events.pages``) is drawn from
:func:`~cxlib.models.digital.simulate.simulate_sessions` (a known truth: a latent session
quality drives the signals, satisfaction follows the signals, and frustrated sessions answer
the intercept survey less often), rendered as an event log whose signals are exactly those
(:func:`~cxlib.data.event_simulation.render_events`), and the sessions that answered are
linked to respondents of the study's own segment. The truth is written to
``digital_truth.yaml`` so the calibration can be checked against it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cxlib import __version__
from cxlib.models.digital.simulate import simulate_sessions
from cxlib.study import Study, load_study

__all__ = ["SAMPLE_SESSIONS", "SAMPLE_SURVEYED", "build_sample_sessions", "sample_pages"]

#: Sessions of the sample study (about 2% of them answer the intercept survey).
SAMPLE_SESSIONS = 200_000
#: The expected number of the sample's sessions that answer the intercept survey (2%: fewer
#: sessions answer in proportion).
SAMPLE_SURVEYED = 4_000
#: The days the sample's sessions span, and the first of them (the last wave's quarter end).
SAMPLE_DAYS = 28
SAMPLE_START = "2026-09-01"
SAMPLE_SEED = 2026


def sample_pages(study: Study) -> dict[str, list[str]]:
    """Each electronic touchpoint's pages, its completion page last (what the log is drawn on).

    The pages follow the study's ``source.events.pages`` patterns (a glob's stem, e.g.
    ``/app/order*`` gives ``/app/order``, ``/app/order/basket``, ...) and its ``completion``
    page.
    """
    events = study.source.events
    pages: dict[str, list[str]] = {}
    for pattern, touchpoint in events.pages.items():
        stem = pattern.rstrip("*").rstrip("/")
        done = events.completion.get(touchpoint, f"{stem}/done").rstrip("*")
        pages.setdefault(
            touchpoint, [stem, f"{stem}/details", f"{stem}/options", f"{stem}/help", done]
        )
    return pages


def _link_respondents(
    sessions: pd.DataFrame, responses: pd.DataFrame, study: Study, rng: np.random.Generator
) -> pd.Series:
    """Respondent ids for the surveyed sessions, drawn from respondents of their segment."""
    ids = pd.Series([None] * len(sessions), index=sessions.index, dtype=object)
    id_column = study.columns.respondent_id
    if id_column not in responses.columns:
        return ids
    segment_column = next(iter(study.columns.segments), None)
    surveyed = sessions.loc[sessions["surveyed"].to_numpy()]
    # a study without segments has sessions of segment None: one pool of respondents
    segments = surveyed["segment"].astype(object).where(surveyed["segment"].notna(), "")
    for segment, rows in surveyed.groupby(segments).groups.items():
        pool = responses
        if segment_column is not None and segment != "":
            pool = responses[responses[segment_column].astype(str) == str(segment)]
        pool_ids = pool[id_column].astype(str).to_numpy()
        if len(pool_ids) == 0:
            continue
        chosen = rng.choice(pool_ids, size=len(rows), replace=len(rows) > len(pool_ids))
        ids.loc[rows] = chosen
    return ids


def build_sample_sessions(
    folder: str | Path, *, force: bool = False, n_sessions: int = SAMPLE_SESSIONS
) -> tuple[Path | None, bool]:
    """Build the sample study's event log and session ratings in ``folder`` when out of date.

    Parameters
    ----------
    folder : str or Path
        The sample study's folder (its ``study.yaml`` declares ``source.events``; its
        responses file must exist: :func:`cxlib.simulate.build_sample_data` first).
    force : bool
        Rebuild even when up to date (a stamp beside the log records the spec, the
        responses and cxlib's version it was built from).
    n_sessions : int
        Sessions to simulate.

    Returns
    -------
    tuple
        ``(path of the event log or None when the spec declares none, whether it was
        rebuilt)``.
    """
    from cxlib.data.event_simulation import render_events
    from cxlib.data.readers import file_hash

    folder = Path(folder)
    study = load_study(folder / "study.yaml")
    events = study.source.events
    if events is None:
        return None, False
    log = study.path.parent / events.file
    feedback = events.feedback
    ratings = study.path.parent / feedback.file if feedback is not None else None
    responses_path = study.data_path
    stamp = log.with_name(f".{log.name}.source")
    digest = hashlib.sha256(
        (folder / "study.yaml").read_bytes()
        + file_hash(responses_path).encode()
        + f"{__version__}:{n_sessions}".encode()
    ).hexdigest()
    up_to_date = log.exists() and (ratings is None or ratings.exists()) and stamp.exists()
    if up_to_date and not force and stamp.read_text().strip() == digest:
        return log, False
    scale = study.scales[feedback.scale] if feedback is not None else None
    segments = tuple(next(iter(study.columns.segments.values()), ())) or None
    pages = sample_pages(study)
    lo, hi = (int(scale.min), int(scale.max)) if scale is not None else (1, 5)
    width = (hi - lo) / 4.0
    effects = dict(zip(segments or (), (0.1, 0.0, -0.15), strict=False))
    frame, truth = simulate_sessions(
        n_sessions,
        n_surveyed=max(1, round(n_sessions * SAMPLE_SURVEYED / SAMPLE_SESSIONS)),
        # frustrated sessions answer less often, as in default_digital_truth, a little milder
        truth={"g1": 0.5 / width, "segment_effect": {k: v * width for k, v in effects.items()}},
        touchpoints=tuple(pages),
        segments=segments,
        days=SAMPLE_DAYS,
        scale=(lo, hi),
        start_date=SAMPLE_START,
        seed=SAMPLE_SEED,
    )
    rng = np.random.default_rng(SAMPLE_SEED + 1)
    responses = pd.read_parquet(responses_path)
    frame["respondent_id"] = _link_respondents(frame, responses, study, rng)
    render_events(frame, pages, seed=SAMPLE_SEED, path=log)
    if ratings is not None:
        answered = frame.loc[frame["surveyed"], ["session_id", "rating"]].copy()
        answered["rating"] = answered["rating"].astype(np.int64)
        answered.rename(
            columns={"session_id": feedback.session_id, "rating": feedback.rating}
        ).to_parquet(ratings, index=False)
    (folder / "digital_truth.yaml").write_text(
        "# The truth the sample study's sessions were simulated from (cx sample).\n"
        + yaml.safe_dump(_plain(truth), sort_keys=False)
    )
    stamp.write_text(digest + "\n")
    return log, True


def _plain(value):
    """The truth as plain YAML values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
