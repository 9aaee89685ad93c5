r"""Simulated web and app sessions with a known truth, at the level of the session signals.

The generative story (:func:`simulate_sessions`):

1. Each session has a latent *experience quality* :math:`q_i \sim N(0, 1)` (higher is
   smoother). It drives the behaviour signals: a frustrated session (low :math:`q`) has
   more rage and dead clicks, form errors, quick backs and page loops, hesitates longer,
   sits still more often and completes its task less often.
2. The session's satisfaction, on the rating scale, is

   .. math:: s_i = \alpha + u_{\text{segment}(i)} + \sum_k \beta_k
             \frac{f_k(x_{ik}) - c_k}{d_k} + \sigma\varepsilon_i

   with :math:`f_k` the transform of the signal (``log1p`` for counts and durations in
   seconds, the identity for ``stillness_share`` and ``completed``) and :math:`c_k,
   d_k` *fixed* constants stored in the truth (``truth["center"]``,
   ``truth["scale"]``), so that an effect per natural (transformed) unit,
   :math:`\beta_k / d_k`, can be compared with the model's, whatever standardization
   the model uses. ``time_to_complete_s`` only exists for completed sessions; for the
   others its standardized value is 0.
3. The stated rating is the category of the scale :math:`s_i` falls in (cutpoints
   ``truth["cutpoints"]``, the first and last half a point inside the scale's ends, as
   :class:`~cxlib.models.digital.DigitalExperienceModel` anchors them).
4. Survey response depends on satisfaction: :math:`P(\text{respond} \mid s) =
   \Phi(g_0 + g_1 (s - m))` with :math:`m` the scale midpoint and :math:`g_1 > 0`, so
   frustrated sessions answer less often and the surveyed sessions are not a random
   sample.

The returned table has the columns of the session signal table (the contract shared
with :func:`cxlib.data.signals.compute_signals`) plus ``rating`` (NaN when the session
did not answer), ``surveyed`` (bool) and ``satisfaction`` (the latent truth
:math:`s_i`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from cxlib import config
from cxlib.data import signals as data_signals
from cxlib.errors import ModelSpecificationError

__all__ = [
    "COUNT_SIGNALS",
    "DURATION_SIGNALS",
    "SESSION_COLUMNS",
    "SIGNALS",
    "default_digital_truth",
    "simulate_sessions",
]

#: The behaviour signals of the session signal table (:data:`cxlib.data.signals.SIGNALS`).
SIGNALS: tuple[str, ...] = data_signals.SIGNALS
#: Signals that count events (transformed with ``log1p``).
COUNT_SIGNALS = ("rage_clicks", "dead_clicks", "quick_backs", "page_loops", "form_errors")
#: Signals in seconds (transformed with ``log1p``).
DURATION_SIGNALS = ("dwell_time_s", "hesitation_s", "time_to_complete_s")
#: The identifying columns of the session signal table, before the signals.
SESSION_COLUMNS = data_signals.SESSION_COLUMNS[: -len(SIGNALS)]


def default_digital_truth(scale: tuple[int, int] = (1, 5)) -> dict[str, Any]:
    """The true parameters :func:`simulate_sessions` uses unless given others.

    Effects are rating points per standard deviation of the transformed signal (with the
    fixed constants ``center`` and ``scale``), written for a 1-5 scale and stretched to
    another scale's width.

    Parameters
    ----------
    scale : (int, int)
        The rating scale's ends.

    Returns
    -------
    dict
        ``alpha, beta (dict signal -> effect), segment_effect (dict), sigma, cutpoints,
        g0, g1, midpoint, center, scale, scale_range``.
    """
    lo, hi = int(scale[0]), int(scale[1])
    width = (hi - lo) / 4.0
    beta = {
        "dwell_time_s": 0.05,
        "hesitation_s": -0.15,
        "stillness_share": -0.10,
        "rage_clicks": -0.35,
        "dead_clicks": -0.15,
        "quick_backs": -0.10,
        "page_loops": -0.05,
        "form_errors": -0.25,
        "completed": 0.30,
        "time_to_complete_s": -0.10,
    }
    n_cut = hi - lo
    cut = lo + 0.5 + np.arange(n_cut, dtype=float)
    if n_cut >= 3:  # a little unequal spacing inside the anchors
        cut[1:-1] += 0.08 * np.sin(np.arange(1, n_cut - 1))
    return {
        "alpha": lo + 0.55 * (hi - lo),
        "beta": {k: v * width for k, v in beta.items()},
        "segment_effect": {"private": 0.1 * width, "business": -0.1 * width},
        "sigma": 0.55 * width,
        "cutpoints": cut.tolist(),
        "g0": -0.6,
        "g1": 0.9 / width,
        "midpoint": (lo + hi) / 2.0,
        "center": {
            "dwell_time_s": 5.0,
            "hesitation_s": 1.0,
            "stillness_share": 0.3,
            "rage_clicks": 0.25,
            "dead_clicks": 0.5,
            "quick_backs": 0.3,
            "page_loops": 0.1,
            "form_errors": 0.25,
            "completed": 0.6,
            "time_to_complete_s": 4.8,
        },  # fmt: skip
        "scale": {
            "dwell_time_s": 0.8,
            "hesitation_s": 0.5,
            "stillness_share": 0.15,
            "rage_clicks": 0.45,
            "dead_clicks": 0.55,
            "quick_backs": 0.45,
            "page_loops": 0.3,
            "form_errors": 0.45,
            "completed": 0.5,
            "time_to_complete_s": 0.7,
        },  # fmt: skip
        "scale_range": [lo, hi],
    }


def _signals(q: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Behaviour signals driven by the latent experience quality ``q`` (higher = smoother)."""
    n = q.size
    bad = -q  # frustration
    out: dict[str, np.ndarray] = {}
    out["rage_clicks"] = rng.poisson(np.exp(-1.9 + 0.9 * bad))
    out["dead_clicks"] = rng.poisson(np.exp(-0.9 + 0.6 * bad))
    out["quick_backs"] = rng.poisson(np.exp(-1.5 + 0.6 * bad))
    out["page_loops"] = rng.poisson(np.exp(-2.5 + 0.7 * bad))
    out["form_errors"] = rng.poisson(np.exp(-1.8 + 0.8 * bad))
    out["hesitation_s"] = np.exp(0.3 + 0.35 * bad + 0.4 * rng.standard_normal(n))
    out["stillness_share"] = special.expit(-0.9 + 0.5 * bad + 0.6 * rng.standard_normal(n))
    out["completed"] = rng.random(n) < special.expit(0.6 + 1.0 * q)
    out["dwell_time_s"] = np.exp(4.9 + 0.2 * bad + 0.7 * rng.standard_normal(n))
    ttc = np.exp(4.7 + 0.25 * bad + 0.6 * rng.standard_normal(n))
    done = out["completed"]
    out["time_to_complete_s"] = np.where(done, np.minimum(ttc, out["dwell_time_s"]), np.nan)
    return out


def transformed_signal(name: str, values: np.ndarray) -> np.ndarray:
    """The transform of a signal the simulator and the model use (``log1p`` or identity)."""
    x = np.asarray(values, dtype=float)
    if name in COUNT_SIGNALS or name in DURATION_SIGNALS:
        return np.log1p(np.maximum(x, 0.0))
    return x


def simulate_sessions(
    n_sessions: int,
    *,
    n_surveyed: int | None = None,
    truth: dict[str, Any] | None = None,
    touchpoints: tuple[str, ...] = ("web_compare", "app_order", "app_self_service"),
    segments: tuple[str, ...] | None = ("private", "business"),
    days: int = 28,
    scale: tuple[int, int] = (1, 5),
    start_date: str = "2026-11-01",
    seed: int = config.DEFAULT_SEED,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate a session signal table with stated ratings from a known truth.

    Parameters
    ----------
    n_sessions : int
        Sessions to simulate.
    n_surveyed : int, optional
        The expected number of sessions that answer the survey: the response intercept
        ``g0`` is set so that the mean response probability is ``n_surveyed /
        n_sessions`` (the response still depends on satisfaction through ``g1``). None
        keeps ``truth["g0"]``.
    truth : dict, optional
        Overrides of :func:`default_digital_truth` (e.g. ``{"g1": 0.0}`` for response
        at random).
    touchpoints : tuple of str
        The sessions' main touchpoints (drawn with equal chance).
    segments : tuple of str, optional
        Customer segments (their effects from ``truth["segment_effect"]``, 0 for a
        segment it does not name); None gives every session segment None.
    days : int
        Days the sessions start over.
    scale : (int, int)
        The rating scale's ends (integers, e.g. (1, 5) or (0, 10)).
    start_date : str
        The first day (UTC).
    seed : int
        Random seed.

    Returns
    -------
    sessions : pandas.DataFrame
        The session signal table plus ``rating``, ``surveyed`` and ``satisfaction``.
    truth : dict
        The parameters used (with ``g0`` as solved for ``n_surveyed``) and
        ``mean_satisfaction_unsurveyed`` / ``mean_satisfaction_all``.
    """
    if n_sessions < 1:
        raise ModelSpecificationError(f"n_sessions must be at least 1, got {n_sessions}")
    lo, hi = int(scale[0]), int(scale[1])
    if hi - lo < 2:
        raise ModelSpecificationError(f"scale {scale} needs at least three categories")
    t = default_digital_truth((lo, hi)) | dict(truth or {})
    rng = np.random.default_rng(seed)
    n = int(n_sessions)
    q = rng.standard_normal(n)
    sig = _signals(q, rng)
    seg = (
        rng.choice(np.asarray(segments, dtype=object), size=n)
        if segments
        else np.full(n, None, dtype=object)
    )
    s = np.full(n, float(t["alpha"]))
    if segments:
        effect = {g: float(t["segment_effect"].get(g, 0.0)) for g in segments}
        s += pd.Series(seg).map(effect).to_numpy(dtype=float)
    for name, b in t["beta"].items():
        z = (transformed_signal(name, sig[name]) - t["center"][name]) / t["scale"][name]
        s += b * np.nan_to_num(z, nan=0.0)
    s += t["sigma"] * rng.standard_normal(n)
    cut = np.asarray(t["cutpoints"], dtype=float)
    rating = lo + np.searchsorted(cut, s).astype(float)
    mid = float(t["midpoint"])
    if n_surveyed is not None:
        share = float(n_surveyed) / n
        if not 0 < share < 1:
            raise ModelSpecificationError(
                f"n_surveyed must lie between 0 and n_sessions ({n}), got {n_surveyed}"
            )
        g1 = float(t["g1"])
        t["g0"] = float(
            optimize.brentq(lambda g0: special.ndtr(g0 + g1 * (s - mid)).mean() - share, -20, 20)
        )
    p = special.ndtr(t["g0"] + t["g1"] * (s - mid))
    surveyed = rng.random(n) < p
    day0 = pd.Timestamp(start_date, tz="UTC")
    start = day0 + pd.to_timedelta(rng.integers(0, days * 86400, size=n), unit="s")
    start = pd.DatetimeIndex(start).sort_values()
    n_pages = 1 + rng.poisson(np.exp(1.2 + 0.1 * -q)) + sig["quick_backs"] + sig["page_loops"]
    clicks = rng.poisson(6, size=n) + 3 * sig["rage_clicks"] + sig["dead_clicks"]
    frame = pd.DataFrame(
        {
            "session_id": [f"s{i:07d}" for i in range(n)],
            "respondent_id": pd.Series([None] * n, dtype=object),
            "touchpoint": rng.choice(np.asarray(touchpoints, dtype=object), size=n),
            "segment": seg,
            "day": start.tz_localize(None).normalize().astype("datetime64[ns]"),
            "start": start.astype("datetime64[ns, UTC]"),
            "n_events": (n_pages + clicks + rng.poisson(20, size=n)).astype(np.int64),
            "n_pages": n_pages.astype(np.int64),
        }
    )
    for name in SIGNALS:
        v = sig[name]
        frame[name] = (
            v.astype(bool)
            if name == "completed"
            else (v.astype(np.int64) if name in COUNT_SIGNALS else v.astype(float))
        )
    frame["rating"] = np.where(surveyed, rating, np.nan)
    frame["surveyed"] = surveyed
    frame["satisfaction"] = s
    t["mean_satisfaction_all"] = float(s.mean())
    t["mean_satisfaction_unsurveyed"] = float(s[~surveyed].mean()) if (~surveyed).any() else np.nan
    t["mean_satisfaction_surveyed"] = float(s[surveyed].mean()) if surveyed.any() else np.nan
    return frame, t
