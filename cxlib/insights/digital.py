"""Digital experience scores: predicted satisfaction of every session, summarized.

Every table here comes from a fitted
:class:`~cxlib.models.digital.DigitalExperienceModel` result and the session signal
table, except :func:`signal_rate_alerts`, which needs only the signals. Scores are on
0-100 (the rating scale's minimum at 0, its maximum at 100). A group's score and its
interval come from the posterior draws: per draw, the mean over the group's sessions of
their predicted satisfaction (given whether each answered the survey), so the interval
is that of the group's mean, not a mean of per-session intervals.

Each function returns a tidy DataFrame, one row per group, with the interval columns of
:func:`cxlib.stats.interval_columns`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from cxlib import config
from cxlib.errors import ModelSpecificationError, did_you_mean
from cxlib.stats import hdi, summarize_draws

__all__ = [
    "digital_experience_scores",
    "dissatisfied_share",
    "signal_rate_alerts",
    "surveyed_vs_all",
]


def _to_100(result, values: np.ndarray) -> np.ndarray:
    lo, hi = result.data.scale_range
    return 100.0 * (np.asarray(values) - lo) / (hi - lo)


def _group_table(
    result, sessions, codes, labels, by, rows=None, *, draws, hdi_prob, dissatisfied_below=None
):
    g = result.group_draws(
        sessions,
        codes,
        len(labels),
        rows=rows,
        draws=draws,
        dissatisfied_below=dissatisfied_below,
    )
    out = pd.DataFrame({by: labels, "n_sessions": g["n"]})
    for k, v in summarize_draws(_to_100(result, g["mean"]), hdi_prob).items():
        out["score" if k == "mean" else f"score_{k}" if k == "sd" else k] = v
    for k, v in summarize_draws(g["dissatisfied"], hdi_prob, quantity="share_dissatisfied").items():
        out[k] = v
    return out


def digital_experience_scores(
    result,
    sessions: pd.DataFrame,
    *,
    by: str = "touchpoint",
    pages: pd.DataFrame | None = None,
    draws: int = 200,
    hdi_prob: float = config.HDI_PROB,
    dissatisfied_below: float | None = None,
) -> pd.DataFrame:
    """The digital experience score (mean predicted satisfaction, 0-100) per group.

    Parameters
    ----------
    result : DigitalExperienceResult
        The fitted calibration model.
    sessions : pandas.DataFrame
        The session signal table with ratings (NaN = not surveyed).
    by : str
        A column of ``sessions`` (``"touchpoint"``, ``"day"``, ``"segment"``) or
        ``"page"`` (with ``pages``).
    pages : pandas.DataFrame, optional
        For ``by="page"``: a session -> page table (``session_id, page``; the per-page
        signal table will do). A session counts once for every page it viewed.
    draws : int
        Posterior draws.
    hdi_prob : float
        Probability of the intervals.
    dissatisfied_below : float, optional
        A rating below this is dissatisfied (default: the scale midpoint rounded up).

    Returns
    -------
    pandas.DataFrame
        ``<by>, n_sessions, score, score_sd, hdi_low, hdi_high`` (0-100) and
        ``share_dissatisfied*`` (the expected share of the group's sessions that are
        dissatisfied, with its interval).
    """
    if by == "page":
        if pages is None:
            raise ModelSpecificationError(
                "by='page' needs the session -> page table: pages=DataFrame(session_id, page)"
            )
        missing = [c for c in ("session_id", "page") if c not in pages.columns]
        if missing or "session_id" not in sessions.columns:
            raise ModelSpecificationError(
                "by='page' needs session_id in the sessions and session_id and page in pages"
                + (f" (pages lacks {', '.join(missing)})" if missing else "")
            )
        pairs = pages[["session_id", "page"]].drop_duplicates()
        row_of = pd.Series(np.arange(len(sessions)), index=sessions["session_id"].to_numpy())
        rows = pairs["session_id"].map(row_of)
        unknown = rows.isna()
        if unknown.all():
            raise ModelSpecificationError(
                "no session of the page table is in the session table (session_id differ)"
            )
        pairs, rows = pairs[~unknown], rows[~unknown].to_numpy(dtype=np.int64)
        codes, labels = pd.factorize(pairs["page"], sort=True)
        out = _group_table(
            result, sessions, codes, list(labels), "page", rows,
            draws=draws, hdi_prob=hdi_prob, dissatisfied_below=dissatisfied_below,
        )  # fmt: skip
        if unknown.any():
            out.attrs["note"] = f"{int(unknown.sum())} page view(s) of unknown sessions left out"
        return out
    if by not in sessions.columns:
        raise ModelSpecificationError(
            f"the session table has no column {by!r} to score by"
            f"{did_you_mean(by, [*sessions.columns, 'page'])}"
        )
    key = sessions[by]
    if by == "day":
        key = pd.to_datetime(key).dt.normalize()
    codes, labels = pd.factorize(key, sort=True)
    if (codes < 0).any():
        raise ModelSpecificationError(
            f"column {by!r}: {int((codes < 0).sum())} session(s) have no value; fill them in"
        )
    return _group_table(
        result, sessions, codes, list(labels), by,
        draws=draws, hdi_prob=hdi_prob, dissatisfied_below=dissatisfied_below,
    )  # fmt: skip


def dissatisfied_share(
    result,
    sessions: pd.DataFrame,
    *,
    draws: int = 200,
    hdi_prob: float = config.HDI_PROB,
    dissatisfied_below: float | None = None,
    likely: float = 0.5,
) -> pd.DataFrame:
    """The share of sessions likely dissatisfied, for unsurveyed, surveyed and all sessions.

    Returns
    -------
    pandas.DataFrame
        ``sessions`` (``unsurveyed``, ``surveyed``, ``all``), ``n_sessions``,
        ``share_dissatisfied*`` (the expected share whose satisfaction is below the
        threshold, with its interval over the posterior and predictive draws) and
        ``n_likely_dissatisfied`` (sessions with P(dissatisfied) > ``likely``).
    """
    rating = result.model.rating
    answered = (
        pd.to_numeric(sessions[rating], errors="coerce").notna().to_numpy()
        if rating in sessions.columns
        else np.zeros(len(sessions), dtype=bool)
    )
    groups = np.where(answered, 1, 0)
    labels = ["unsurveyed", "surveyed"]
    g = result.group_draws(sessions, groups, 2, draws=draws, dissatisfied_below=dissatisfied_below)
    all_draws = (g["dissatisfied"] * g["n"][:, None]).sum(axis=0) / max(g["n"].sum(), 1)
    shares = np.vstack([g["dissatisfied"], all_draws[None, :]])
    pred = result.predict(sessions, draws=draws, dissatisfied_below=dissatisfied_below)[
        "p_dissatisfied"
    ].to_numpy()
    likely_n = [
        int((pred[~answered] > likely).sum()),
        int((pred[answered] > likely).sum()),
        int((pred > likely).sum()),
    ]
    out = pd.DataFrame(
        {
            "sessions": [*labels, "all"],
            "n_sessions": [*g["n"].tolist(), int(g["n"].sum())],
        }
    )
    for k, v in summarize_draws(shares, hdi_prob, quantity="share_dissatisfied").items():
        out[k] = v
    out["n_likely_dissatisfied"] = likely_n
    out["dissatisfied_below"] = result.dissatisfied_below(dissatisfied_below)
    return out[out["n_sessions"] > 0].reset_index(drop=True)


def surveyed_vs_all(
    result,
    sessions: pd.DataFrame | None = None,
    *,
    draws: int = 200,
    hdi_prob: float = config.HDI_PROB,
) -> pd.DataFrame:
    """Mean predicted satisfaction (0-100) of surveyed, unsurveyed and all sessions.

    Returns
    -------
    pandas.DataFrame
        ``sessions`` (``surveyed``, ``unsurveyed``, ``all``, ``surveyed_minus_all``),
        ``score, score_sd, hdi_low, hdi_high`` (0-100; the difference in 0-100 points),
        ``stated`` (the surveyed sessions' mean stated rating on 0-100) and
        ``p_positive``.
    """
    groups = result.group_means(sessions, draws=draws)
    lo, hi = result.data.scale_range
    rows = []
    for name, v in groups.items():
        v100 = (
            100.0 * np.asarray(v) / (hi - lo)
            if name == "surveyed_minus_all"
            else _to_100(result, v)
        )
        s = summarize_draws(v100, hdi_prob)
        rows.append(
            {
                "sessions": name,
                "score": float(s["mean"]),
                "score_sd": float(s["sd"]),
                "hdi_low": float(s["hdi_low"]),
                "hdi_high": float(s["hdi_high"]),
                "p_positive": float((v100 > 0).mean()),
            }
        )
    out = pd.DataFrame(rows)
    frame = result.fitted_sessions() if sessions is None else sessions
    rating = result.model.rating
    stated = pd.to_numeric(frame[rating], errors="coerce") if rating in frame else pd.Series([])
    out["stated"] = np.where(
        out["sessions"] == "surveyed",
        float(_to_100(result, stated.mean())) if stated.notna().any() else np.nan,
        np.nan,
    )
    return out


def signal_rate_alerts(
    sessions: pd.DataFrame,
    *,
    signal: str = "rage_clicks",
    by: str = "touchpoint",
    threshold: float = 0.5,
    prior: tuple[float, float] = (0.5, 1.0),
    hdi_prob: float = config.HDI_PROB,
) -> pd.DataFrame:
    r"""The posterior of a signal's per-session rate by group, alert-ready.

    The count of a signal (e.g. rage clicks) in a session is Poisson with the group's rate
    :math:`\lambda` (events per session); with a Gamma(a, b) prior (shape, rate) the
    posterior is Gamma(a + events, b + sessions).

    Parameters
    ----------
    sessions : pandas.DataFrame
        The session signal table.
    signal : str
        A count signal (``rage_clicks``, ``dead_clicks``, ``quick_backs``,
        ``page_loops``, ``form_errors``).
    by : str
        The grouping column (``touchpoint``, ``day``, ...).
    threshold : float
        The rate (events per session) the alert compares with.
    prior : (float, float)
        Shape and rate of the Gamma prior (default: half an event in one session's worth
        of prior data: weak).
    hdi_prob : float
        Probability of the interval.

    Returns
    -------
    pandas.DataFrame
        ``<by>, n_sessions, events, rate, rate_sd, rate_hdi_low, rate_hdi_high,
        p_above`` (:math:`P(\lambda > \text{threshold})`, what an alert rule such as
        ``P(rage_click_rate > x) > 0.9`` reads), ``threshold``, ``signal``.
    """
    for col in (signal, by):
        if col not in sessions.columns:
            raise ModelSpecificationError(
                f"the session table has no column {col!r}{did_you_mean(col, sessions.columns)}"
            )
    counts = pd.to_numeric(sessions[signal], errors="coerce")
    bad = counts.isna() | (counts < 0)
    if bad.any():
        raise ModelSpecificationError(
            f"signal {signal!r}: {int(bad.sum())} session(s) have a missing or negative count"
        )
    a0, b0 = float(prior[0]), float(prior[1])
    if not (a0 > 0 and b0 > 0):
        raise ModelSpecificationError(f"prior shape and rate must be positive, got {prior}")
    key = sessions[by]
    if by == "day":
        key = pd.to_datetime(key).dt.normalize()
    agg = (
        pd.DataFrame({by: key, "c": counts})
        .groupby(by, sort=True)["c"]
        .agg(n_sessions="size", events="sum")
        .reset_index()
    )
    shape = a0 + agg["events"].to_numpy(dtype=float)
    rate = b0 + agg["n_sessions"].to_numpy(dtype=float)
    dist = stats.gamma(shape, scale=1.0 / rate)
    agg["rate"] = shape / rate
    agg["rate_sd"] = np.sqrt(shape) / rate
    rng = np.random.default_rng(config.DEFAULT_SEED)
    sample = rng.gamma(shape[:, None], 1.0 / rate[:, None], size=(len(agg), 4000))
    bounds = hdi(sample, hdi_prob)
    agg["rate_hdi_low"], agg["rate_hdi_high"] = bounds[:, 0], bounds[:, 1]
    agg["p_above"] = dist.sf(threshold)
    agg["threshold"] = float(threshold)
    agg["signal"] = signal
    agg["events"] = agg["events"].astype(np.int64)
    return agg
