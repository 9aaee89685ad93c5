"""The session table prepared for :class:`~cxlib.models.digital.DigitalExperienceModel`.

Input: the session signal table (one row per session, the columns of
:func:`cxlib.data.signals.compute_signals`) joined with the survey's feedback: a
``rating`` column, NaN where the session did not answer, an optional survey
``weight`` and an optional ``segment``.

Each signal is transformed (``log1p`` for counts and for durations in seconds, the
identity for ``stillness_share`` and the 0/1 of ``completed``) and standardized with
the mean and SD of **all** sessions (surveyed or not), kept in :class:`DigitalData` so
that :meth:`~cxlib.models.digital.DigitalExperienceResult.predict` standardizes new
sessions the same way (:func:`signal_matrix`). ``time_to_complete_s`` exists only for
completed sessions: it is standardized among them and set to 0 (its mean) for the
others, so its effect reads "among completed sessions, per SD slower" and ``completed``
carries the difference completion makes. A signal that does not vary is dropped, with
a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cxlib.errors import CxError, ModelSpecificationError, did_you_mean
from cxlib.models.base import frame_hash
from cxlib.models.digital.simulate import SIGNALS, transformed_signal

__all__ = ["OUTCOMES", "DigitalData", "holdout_split", "prepare_digital_data", "signal_matrix"]

#: The outcome kinds: an ordinal rating (categories ``min..max``) or a continuous score.
OUTCOMES = ("ordinal", "gaussian")


def _rows(frame: pd.DataFrame, mask: np.ndarray, limit: int = 5) -> str:
    """The first offending rows, named by ``session_id`` where there is one."""
    idx = np.flatnonzero(mask)
    if "session_id" in frame.columns:
        names = [f"session {frame['session_id'].iloc[i]!s}" for i in idx[:limit]]
    else:
        names = [f"row {frame.index[i]}" for i in idx[:limit]]
    more = f" and {idx.size - limit} more" if idx.size > limit else ""
    return ", ".join(names) + more


def signal_matrix(
    frame: pd.DataFrame,
    signals: list[str] | tuple[str, ...],
    center: np.ndarray,
    scale: np.ndarray,
    *,
    dtype=np.float64,
) -> np.ndarray:
    """The transformed, standardized signals of a session table, shape (session, signal).

    Parameters
    ----------
    frame : pandas.DataFrame
        Sessions with the signal columns.
    signals : sequence of str
        The signals, in the model's order.
    center, scale : numpy.ndarray
        The standardization (of the transformed signal), per signal.
    dtype : numpy dtype
        float64 for fitting, float32 for fast prediction.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    ModelSpecificationError
        When a signal column is missing or holds a missing or negative value (other than
        ``time_to_complete_s`` of a session that did not complete).
    """
    missing = [s for s in signals if s not in frame.columns]
    if missing:
        hint = did_you_mean(missing[0], frame.columns)
        raise ModelSpecificationError(
            f"the session table has no signal column(s) {', '.join(map(repr, missing))}{hint}; "
            "expected the columns of the session signal table (cxlib.data.signals.SIGNALS)"
        )
    n = len(frame)
    X = np.empty((n, len(signals)), dtype=dtype)
    completed = (
        frame["completed"].to_numpy(dtype=bool)
        if "completed" in frame.columns
        else np.ones(n, bool)
    )
    for k, name in enumerate(signals):
        raw = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(raw)
        if name == "time_to_complete_s":
            bad &= completed
        bad |= np.isfinite(raw) & (raw < 0)
        if bad.any():
            raise ModelSpecificationError(
                f"signal {name!r}: {int(bad.sum())} session(s) have a missing, non-numeric or "
                f"negative value ({_rows(frame, bad)}); expected a number >= 0"
                + (" for every completed session" if name == "time_to_complete_s" else "")
            )
        z = (transformed_signal(name, raw) - center[k]) / scale[k]
        if name == "time_to_complete_s":
            z = np.where(completed & np.isfinite(z), z, 0.0)
        X[:, k] = z
    return X


@dataclass
class DigitalData:
    """What the digital experience model and its results need from the session table.

    Attributes
    ----------
    signals : list of str
        The signals in the model (constant ones dropped).
    center, scale : numpy.ndarray
        Per signal, the mean and SD of the transformed signal (over all sessions).
    X : numpy.ndarray
        Standardized signals, (session, signal).
    surveyed : numpy.ndarray
        Per session, whether it answered the survey (rating not NaN).
    y : numpy.ndarray
        The rating (NaN when not surveyed).
    category : numpy.ndarray
        Per session, the rating's category index ``rating - min`` (-1 when not surveyed).
    weight : numpy.ndarray
        Survey weights of the sessions (mean 1 over the surveyed; 1 for the others).
    segment_index : numpy.ndarray
        Per session, its segment's index into ``segments``.
    segments : list of str
        The segment levels (``["all"]`` when there are none).
    scale_range : (float, float)
        The rating scale's ends.
    outcome : str
        ``"ordinal"`` or ``"gaussian"``.
    notes : list of str
        What was dropped or flagged.
    data_hash : str
        Hash of the session table's signals and ratings.
    """

    signals: list[str]
    center: np.ndarray
    scale: np.ndarray
    X: np.ndarray
    surveyed: np.ndarray
    y: np.ndarray
    category: np.ndarray
    weight: np.ndarray
    segment_index: np.ndarray
    segments: list[str]
    scale_range: tuple[float, float]
    outcome: str
    notes: list[str] = field(default_factory=list)
    data_hash: str = ""

    @property
    def n_sessions(self) -> int:
        """Sessions in the data."""
        return int(self.X.shape[0])

    @property
    def n_surveyed(self) -> int:
        """Sessions that answered the survey."""
        return int(self.surveyed.sum())

    @property
    def n_categories(self) -> int:
        """Categories of the ordinal rating (``max - min + 1``)."""
        lo, hi = self.scale_range
        return int(round(hi - lo)) + 1

    @property
    def midpoint(self) -> float:
        """The middle of the rating scale (where the response model is centred)."""
        return 0.5 * (self.scale_range[0] + self.scale_range[1])

    @property
    def width(self) -> float:
        """``max - min`` of the rating scale."""
        return float(self.scale_range[1] - self.scale_range[0])

    _META = ("signals", "segments", "scale_range", "outcome", "notes", "data_hash")
    _ARRAYS = (
        "center", "scale", "X", "surveyed", "y", "category", "weight", "segment_index",
    )  # fmt: skip

    def to_dataset(self):
        """The prepared data as an xarray Dataset (stored in ``idata.constant_data``)."""
        import xarray as xr

        meta = {k: getattr(self, k) for k in self._META}
        meta["scale_range"] = list(self.scale_range)
        sess = ("digital_session",)
        return xr.Dataset(
            {
                "signal_center": (("signal",), self.center),
                "signal_scale": (("signal",), self.scale),
                "X": (("digital_session", "signal"), self.X),
                "surveyed": (sess, self.surveyed.astype(np.int8)),
                "y": (sess, self.y),
                "category": (sess, self.category.astype(np.int64)),
                "weight": (sess, self.weight),
                "segment_index": (sess, self.segment_index.astype(np.int64)),
            },
            coords={"signal": self.signals},
            attrs={"digital_meta": json.dumps(meta, default=float)},
        )

    @classmethod
    def from_dataset(cls, ds) -> DigitalData:
        """Rebuild from :meth:`to_dataset` output (e.g. a loaded ``constant_data``)."""
        meta: dict[str, Any] = json.loads(ds.attrs["digital_meta"])
        meta["scale_range"] = tuple(meta["scale_range"])
        return cls(
            **meta,
            center=np.asarray(ds["signal_center"].values),
            scale=np.asarray(ds["signal_scale"].values),
            X=np.asarray(ds["X"].values),
            surveyed=np.asarray(ds["surveyed"].values).astype(bool),
            y=np.asarray(ds["y"].values),
            category=np.asarray(ds["category"].values).astype(np.int64),
            weight=np.asarray(ds["weight"].values),
            segment_index=np.asarray(ds["segment_index"].values).astype(np.int64),
        )


def prepare_digital_data(
    sessions: pd.DataFrame,
    *,
    signals: tuple[str, ...] | list[str] = SIGNALS,
    rating: str = "rating",
    scale: tuple[float, float] = (1, 5),
    outcome: str = "ordinal",
    weights: str | None = None,
    segment: str | None = "segment",
) -> DigitalData:
    """Check and prepare the session table (signals joined with the survey's ratings).

    Parameters
    ----------
    sessions : pandas.DataFrame
        One row per session: the signal columns, ``rating`` (NaN = not surveyed) and
        optionally a weight and a segment column.
    signals : sequence of str
        The signals to calibrate (default: all of the contract's).
    rating : str
        The rating column.
    scale : (number, number)
        The rating scale's ends; an ordinal rating must be an integer in ``min..max``.
    outcome : {"ordinal", "gaussian"}
        An ordinal rating, or a continuous score (e.g. a construct's 0-100 score).
    weights : str, optional
        A column of survey weights (used for surveyed sessions only).
    segment : str, optional
        The segment column (None, or a column that is absent or all missing: no segments).

    Returns
    -------
    DigitalData

    Raises
    ------
    CxError
        When no session answered the survey.
    ModelSpecificationError
        When a column is missing, a rating lies outside the scale (the rows named), a
        weight is negative or missing, or no signal varies.
    """
    if not isinstance(sessions, pd.DataFrame):
        raise ModelSpecificationError(
            f"sessions must be a pandas DataFrame (the session signal table), got "
            f"{type(sessions).__name__}"
        )
    if outcome not in OUTCOMES:
        raise ModelSpecificationError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    lo, hi = float(scale[0]), float(scale[1])
    if outcome == "ordinal":
        if not (lo.is_integer() and hi.is_integer()) or hi - lo < 2:
            raise ModelSpecificationError(
                f"an ordinal rating needs integer scale ends at least 2 apart (3 or more "
                f"categories), got {scale}"
            )
    elif not hi > lo:
        raise ModelSpecificationError(f"scale {scale}: the maximum must exceed the minimum")
    if rating not in sessions.columns:
        raise ModelSpecificationError(
            f"the session table has no rating column {rating!r}"
            f"{did_you_mean(rating, sessions.columns)}; join the survey feedback "
            "(session_id, rating) to the signals, rating NaN for sessions not surveyed"
        )
    signals = list(dict.fromkeys(signals))
    unknown = [s for s in signals if s not in SIGNALS]
    if unknown:
        raise ModelSpecificationError(
            f"unknown signal(s) {', '.join(map(repr, unknown))}"
            f"{did_you_mean(unknown[0], SIGNALS)}; known: {', '.join(SIGNALS)}"
        )
    n = len(sessions)
    y = pd.to_numeric(sessions[rating], errors="coerce").to_numpy(dtype=float)
    text = sessions[rating].notna().to_numpy() & ~np.isfinite(y)
    if text.any():
        raise ModelSpecificationError(
            f"column {rating!r}: {int(text.sum())} value(s) are not numbers ({_rows(sessions, text)})"
        )
    surveyed = np.isfinite(y)
    if not surveyed.any():
        raise CxError(
            f"no surveyed session: column {rating!r} is missing (NaN) in all {n} sessions; the "
            "calibration needs sessions whose satisfaction was asked (join the survey feedback "
            "by session_id)"
        )
    if outcome == "ordinal":
        bad = surveyed & ((y < lo) | (y > hi) | (np.round(y) != y))
        expected = f"an integer from {lo:g} to {hi:g}"
    else:
        bad = surveyed & ((y < lo) | (y > hi))
        expected = f"a number from {lo:g} to {hi:g}"
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in y[bad][:5])
        raise ModelSpecificationError(
            f"column {rating!r}: {int(bad.sum())} rating(s) outside the scale "
            f"({_rows(sessions, bad)}: {shown}); expected {expected} or NaN (not surveyed)"
        )
    # standardization over all sessions
    missing = [s for s in signals if s not in sessions.columns]
    if missing:
        signal_matrix(sessions, missing, np.zeros(len(missing)), np.ones(len(missing)))
    completed = (
        sessions["completed"].to_numpy(dtype=bool)
        if "completed" in sessions.columns
        else np.ones(n, bool)
    )
    notes: list[str] = []
    center, sd, kept = [], [], []
    for name in signals:
        raw = pd.to_numeric(sessions[name], errors="coerce").to_numpy(dtype=float)
        t = transformed_signal(name, raw)
        use = completed & np.isfinite(t) if name == "time_to_complete_s" else np.isfinite(t)
        spread = float(np.std(t[use])) if use.sum() > 1 else 0.0
        if not spread > 1e-12 or not (surveyed & use).any():
            notes.append(
                f"signal {name!r} does not vary across the sessions (or none has it); "
                "dropped from the model"
            )
            continue
        kept.append(name)
        center.append(float(np.mean(t[use])))
        sd.append(spread)
    if not kept:
        raise ModelSpecificationError(
            f"none of the signals {', '.join(signals)} varies across the sessions; nothing to "
            "calibrate"
        )
    center_a, sd_a = np.asarray(center), np.asarray(sd)
    X = signal_matrix(sessions, kept, center_a, sd_a)
    # weights
    w = np.ones(n)
    if weights is not None:
        if weights not in sessions.columns:
            raise ModelSpecificationError(
                f"weight column {weights!r} is not in the session table"
                f"{did_you_mean(weights, sessions.columns)}"
            )
        raw_w = pd.to_numeric(sessions[weights], errors="coerce").to_numpy(dtype=float)
        bad_w = surveyed & ~(np.isfinite(raw_w) & (raw_w >= 0))
        if bad_w.any():
            raise ModelSpecificationError(
                f"weight column {weights!r}: {int(bad_w.sum())} surveyed session(s) have a "
                f"missing or negative weight ({_rows(sessions, bad_w)}); expected a number >= 0"
            )
        total = raw_w[surveyed].sum()
        if not total > 0:
            raise ModelSpecificationError(f"weight column {weights!r}: every weight is 0")
        w[surveyed] = raw_w[surveyed] * surveyed.sum() / total
    # segments
    segments, seg_index = ["all"], np.zeros(n, dtype=np.int64)
    if segment is not None and segment in sessions.columns and sessions[segment].notna().any():
        labels = sessions[segment].astype(object).where(sessions[segment].notna(), "(none)")
        codes, levels = pd.factorize(labels.astype(str), sort=True)
        if len(levels) > 1:
            segments, seg_index = [str(v) for v in levels], codes.astype(np.int64)
        if sessions[segment].isna().any():
            notes.append(
                f"{int(sessions[segment].isna().sum())} session(s) without a {segment!r}: "
                "pooled as segment '(none)'"
            )
    category = np.where(surveyed, np.round(np.nan_to_num(y) - lo), -1).astype(np.int64)
    if outcome == "gaussian":
        category[:] = np.where(surveyed, 0, -1)
    hash_cols = [*kept, rating] + ([weights] if weights else [])
    return DigitalData(
        signals=kept,
        center=center_a,
        scale=sd_a,
        X=X,
        surveyed=surveyed,
        y=y,
        category=category,
        weight=w,
        segment_index=seg_index,
        segments=segments,
        scale_range=(lo, hi),
        outcome=outcome,
        notes=notes,
        data_hash=frame_hash(sessions[hash_cols].astype(float)),
    )


def holdout_split(
    sessions: pd.DataFrame, share: float = 0.25, *, seed: int = 2026
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split sessions at random into a training and a held-out part.

    All sessions are split, surveyed or not, so that the training part keeps the
    survey's response rate (holding out only surveyed sessions would make the training
    sessions look less willing to answer); the held-out part's surveyed sessions are the
    ones :meth:`~cxlib.models.digital.DigitalExperienceResult.validate` scores.

    Parameters
    ----------
    sessions : pandas.DataFrame
        The session table with ratings.
    share : float
        Share of sessions held out.
    seed : int
        Random seed.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        Training sessions, held-out sessions.
    """
    if not 0 < share < 1:
        raise ModelSpecificationError(f"share must lie between 0 and 1, got {share}")
    rng = np.random.default_rng(seed)
    held = rng.random(len(sessions)) < share
    return sessions.loc[~held], sessions.loc[held]
