"""Headline KPIs with uncertainty: NPS, satisfaction and loyalty per segment and wave.

Every KPI is a posterior, not a point:

- **NPS** — the shares of promoters (9-10), passives (7-8) and detractors (0-6) get a
  Dirichlet posterior from a Dirichlet(1, 1, 1) prior and the (weighted) counts;
  NPS = 100 x (promoters - detractors).
- **Satisfaction** — the shares of each answer of the satisfaction item get a Dirichlet
  posterior (uniform prior); the mean, the top-box share and the top-2-box share are
  functions of those shares, so a move from 1 to 2 counts as much as one from 4 to 5.
- **Loyalty index** — each respondent's loyalty items rescaled to 0-100 and averaged;
  the cell mean gets a Student-t posterior (the reference prior for a mean). It is
  labelled with the spec's label of the loyalty construct (``Retention index``).

Each KPI is optional: a study gets the KPIs it declares under ``kpis:`` (any one of
them), with or without segments and waves. :func:`headline_kpi` picks the one to show
first (NPS, else satisfaction, else loyalty).

Respondent weights enter through the Kish effective sample size: a cell's weighted
shares are treated as counts of ``n_eff = (sum w)^2 / sum w^2`` respondents, so heavy
weighting widens the intervals as it should. Cells smaller than the study's
``min_cell_size`` are flagged ``small_cell``: their intervals are honest (wide), and
dashboards suppress them.

The change from the previous wave is the difference of the two waves' independent
posteriors, with ``P(change < 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxlib import config
from cxlib.errors import CxError
from cxlib.insights.cells import segment_wave_cells, weighted_mean_draws
from cxlib.stats import interval_columns, summarize_draws

__all__ = [
    "HEADLINE_KPIS",
    "KPI_LABELS",
    "KpiEstimates",
    "estimate_kpis",
    "headline_kpi",
    "nps_posterior_moments",
    "segment_differences",
]

#: KPI name -> how dashboards and reports name it.
KPI_LABELS = {
    "nps": "NPS",
    "promoters": "Promoters (%)",
    "passives": "Passives (%)",
    "detractors": "Detractors (%)",
    "satisfaction_mean": "Satisfaction (mean)",
    "satisfaction_top_box": "Satisfaction top-box (%)",
    "satisfaction_top2_box": "Satisfaction top-2-box (%)",
    "loyalty_index": "Loyalty index (0-100)",
}
#: The KPIs a chart or page shows first, in order of preference.
HEADLINE_KPIS = ("nps", "satisfaction_mean", "loyalty_index")


class KpiError(CxError):
    """KPIs that cannot be computed from the data or spec given."""


@dataclass
class KpiEstimates:
    """Posterior draws and the tidy table of a study's KPIs.

    Attributes
    ----------
    draws : dict
        KPI name -> array (segment, wave, draw).
    segments, waves : list of str
        The cells' labels (``config.EVERYONE`` first among segments).
    n, n_eff : dict
        KPI name -> array (segment, wave): respondents who answered, and the
        Kish effective sample size.
    table : pandas.DataFrame
        One row per KPI x segment x wave: ``kpi, label, segment, wave, n, n_eff, mean,
        sd, hdi_low, hdi_high, change, change_sd, change_hdi_low, change_hdi_high,
        p_change_negative, small_cell`` (the ``kpis`` table of
        :mod:`cxlib.pipeline.schemas`, less its ``study`` label).
    labels : dict
        KPI name -> its label in this study (the loyalty index named after the
        spec's label of the loyalty construct).
    """

    draws: dict[str, np.ndarray]
    segments: list[str]
    waves: list[str]
    n: dict[str, np.ndarray]
    n_eff: dict[str, np.ndarray]
    table: pd.DataFrame
    segment_column: str | None
    hdi_prob: float
    min_cell_size: int = config.MIN_CELL_SIZE
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def headline(self) -> str:
        """The KPI to show first (see :func:`headline_kpi`)."""
        return headline_kpi(list(self.draws))

    def cell(self, kpi: str, segment: str = config.EVERYONE, wave: str | None = None) -> np.ndarray:
        """Draws of one KPI in one cell (default: everyone, latest wave)."""
        if kpi not in self.draws:
            raise KpiError(f"unknown KPI {kpi!r}; available: {', '.join(self.draws)}")
        wave = self.waves[-1] if wave is None else wave
        if segment not in self.segments:
            raise KpiError(f"unknown segment {segment!r}; available: {', '.join(self.segments)}")
        if wave not in self.waves:
            raise KpiError(f"no responses in wave {wave!r}; waves: {', '.join(self.waves)}")
        return self.draws[kpi][self.segments.index(segment), self.waves.index(wave)]

    def change(self, kpi: str) -> np.ndarray:
        """Draws of the change from the previous wave (segment, wave, draw); NaN for the first."""
        d = self.draws[kpi]
        out = np.full_like(d, np.nan)
        out[:, 1:] = d[:, 1:] - d[:, :-1]
        return out


def _weighted_counts(categories: np.ndarray, k: int, cell: np.ndarray, n_cells: int, w: np.ndarray):
    """Per cell: effective counts per category, n and n_eff (rows with category < 0 skipped)."""
    ok = categories >= 0
    idx = cell[ok] * k + categories[ok]
    wsum = np.bincount(idx, weights=w[ok], minlength=n_cells * k).reshape(n_cells, k)
    total = wsum.sum(axis=1)
    w2 = np.bincount(cell[ok], weights=w[ok] ** 2, minlength=n_cells)
    n = np.bincount(cell[ok], minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = np.where(w2 > 0, total**2 / w2, 0.0)
        shares = np.where(total[:, None] > 0, wsum / total[:, None], 0.0)
    return shares * n_eff[:, None], n, n_eff


def _dirichlet(alpha: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Dirichlet draws for each row of ``alpha``: shape (rows, draws, k)."""
    g = rng.standard_gamma(alpha[:, None, :], size=(alpha.shape[0], n_draws, alpha.shape[1]))
    return g / g.sum(axis=-1, keepdims=True)


def nps_posterior_moments(promoters: float, passives: float, detractors: float, prior: float = 1.0):
    """Closed-form posterior mean and sd of NPS from (effective) counts.

    With shares ``p ~ Dirichlet(prior + counts)`` and ``a0`` the total concentration,
    ``E[NPS] = 100 (a_P - a_D) / a0`` and
    ``Var[NPS] = 100^2 (V_P + V_D + 2 a_P a_D / (a0^2 (a0 + 1)))`` with
    ``V_i = a_i (a0 - a_i) / (a0^2 (a0 + 1))``.
    """
    a = np.array([detractors, passives, promoters], dtype=float) + prior
    a0 = a.sum()
    var = a * (a0 - a) / (a0**2 * (a0 + 1))
    cov = -a[0] * a[2] / (a0**2 * (a0 + 1))
    mean = 100 * (a[2] - a[0]) / a0
    sd = 100 * np.sqrt(var[2] + var[0] - 2 * cov)
    return float(mean), float(sd)


def estimate_kpis(
    data,
    *,
    segment: str | None = "default",
    n_draws: int = 2000,
    seed: int = config.DEFAULT_SEED,
    hdi_prob: float = config.HDI_PROB,
) -> KpiEstimates:
    """Estimate the study's KPIs per segment and wave, with posteriors.

    Parameters
    ----------
    data : SurveyData
        Validated responses; the study's ``kpis`` section says which items to use.
    segment : str or None
        Segment column to split by (default: the study's first; None: no split).
    n_draws : int
        Posterior draws per cell.
    seed : int
        Random seed (the same seed gives the same draws).
    hdi_prob : float
        Probability mass of the reported intervals.

    Returns
    -------
    KpiEstimates

    Raises
    ------
    KpiError
        When the study declares no KPI, or names a segment column it does not have.
    """
    study = data.study
    kpis = study.kpis
    if not (kpis.nps or kpis.satisfaction or kpis.loyalty):
        raise KpiError(
            f"{study.unmet('kpis')} (e.g. `kpis: {{satisfaction: ITEM}}`; any one of them will do)"
        )
    if segment == "default":
        segment = study.segment_columns[0] if study.segment_columns else None
    if segment is not None and segment not in study.columns.segments:
        raise KpiError(
            f"{segment!r} is not a segment column of study {study.name!r} "
            f"(segments: {', '.join(study.segment_columns) or 'none'})"
        )
    cells = segment_wave_cells(data, segment, study.columns.wave)
    seg_labels, wave_labels = cells.segments, cells.waves
    n_seg, n_wave = cells.shape
    rows, cell = cells.rows, cells.cell
    ww = data.weights[rows]
    rng = np.random.default_rng(seed)
    frame = data.frame
    n_cells = cells.n_cells

    draws: dict[str, np.ndarray] = {}
    counts_n: dict[str, np.ndarray] = {}
    counts_eff: dict[str, np.ndarray] = {}

    def store(name, values, n, n_eff):
        draws[name] = values.reshape(n_seg, n_wave, n_draws)
        counts_n[name] = n.reshape(n_seg, n_wave)
        counts_eff[name] = n_eff.reshape(n_seg, n_wave)

    if kpis.nps:
        answers = frame[kpis.nps].to_numpy(dtype=float)[rows]
        group = np.full(answers.shape, -1)
        group[answers <= 6] = 0
        group[(answers >= 7) & (answers <= 8)] = 1
        group[answers >= 9] = 2
        eff, n, n_eff = _weighted_counts(group, 3, cell, n_cells, ww)
        p = _dirichlet(eff + 1.0, n_draws, rng)
        store("nps", 100 * (p[..., 2] - p[..., 0]), n, n_eff)
        store("promoters", 100 * p[..., 2], n, n_eff)
        store("passives", 100 * p[..., 1], n, n_eff)
        store("detractors", 100 * p[..., 0], n, n_eff)
    if kpis.satisfaction:
        scale = study.item(kpis.satisfaction).scale
        answers = frame[kpis.satisfaction].to_numpy(dtype=float)[rows]
        cat = np.where(np.isnan(answers), -1, answers - scale.min).astype(int)
        eff, n, n_eff = _weighted_counts(cat, scale.n_points, cell, n_cells, ww)
        p = _dirichlet(eff + 1.0, n_draws, rng)
        values = np.arange(scale.min, scale.max + 1, dtype=float)
        store("satisfaction_mean", p @ values, n, n_eff)
        store("satisfaction_top_box", 100 * p[..., -1], n, n_eff)
        store("satisfaction_top2_box", 100 * p[..., -2:].sum(axis=-1), n, n_eff)
    if kpis.loyalty:
        store(
            "loyalty_index",
            *_loyalty_index(data, kpis.loyalty, rows, cell, n_cells, ww, n_draws, rng),
        )

    labels = {k: KPI_LABELS[k] for k in draws}
    if "loyalty_index" in draws:
        labels["loyalty_index"] = f"{study.label_of(kpis.loyalty)} index (0-100)"
    table = _table(
        draws, counts_n, counts_eff, seg_labels, wave_labels, study.min_cell_size, hdi_prob, labels
    )
    return KpiEstimates(
        draws,
        seg_labels,
        wave_labels,
        counts_n,
        counts_eff,
        table,
        segment,
        hdi_prob,
        study.min_cell_size,
        labels,
    )


def headline_kpi(kpis) -> str:
    """The KPI to show first: NPS, else satisfaction (mean), else the loyalty index.

    Parameters
    ----------
    kpis : KpiEstimates, pandas.DataFrame or list of str
        Estimates, a KPI table (its ``kpi`` column) or KPI names.

    Returns
    -------
    str
        The first of :data:`HEADLINE_KPIS` present, else the first KPI there is.

    Raises
    ------
    KpiError
        When there is no KPI at all.
    """
    if isinstance(kpis, KpiEstimates):
        names = list(kpis.draws)
    elif isinstance(kpis, pd.DataFrame):
        if "kpi" not in kpis.columns:
            raise KpiError("a KPI table needs the column kpi")
        names = list(dict.fromkeys(kpis["kpi"]))
    else:
        names = list(kpis)
    for name in HEADLINE_KPIS:
        if name in names:
            return name
    if not names:
        raise KpiError("no KPI to show: the table is empty")
    return names[0]


def _loyalty_index(data, construct, rows, cell, n_cells, w, n_draws, rng):
    study = data.study
    items = study.constructs[construct].item_names
    block = data.frame[items].to_numpy(dtype=float)
    lo = np.array([study.item(i).scale.min for i in items], dtype=float)
    hi = np.array([study.item(i).scale.max for i in items], dtype=float)
    with np.errstate(invalid="ignore"):
        score = np.nanmean(100 * (block - lo) / (hi - lo), axis=1)[rows]
    return weighted_mean_draws(score, w, cell, n_cells, n_draws, rng)


def _table(
    draws, counts_n, counts_eff, seg_labels, wave_labels, min_cell, hdi_prob, labels
) -> pd.DataFrame:
    frames = []
    for kpi, d in draws.items():
        change = np.full_like(d, np.nan)
        change[:, 1:] = d[:, 1:] - d[:, :-1]
        summary = {
            **summarize_draws(d, hdi_prob),
            **summarize_draws(change, hdi_prob, quantity="change"),
        }
        with np.errstate(invalid="ignore"):
            p_neg = np.where(np.isnan(change).all(axis=-1), np.nan, (change < 0).mean(axis=-1))
        seg, wave = np.meshgrid(
            np.arange(len(seg_labels)), np.arange(len(wave_labels)), indexing="ij"
        )
        frames.append(
            pd.DataFrame(
                {
                    "kpi": kpi,
                    "label": labels.get(kpi, KPI_LABELS[kpi]),
                    "segment": np.asarray(seg_labels, dtype=object)[seg.ravel()],
                    "wave": np.asarray(wave_labels, dtype=object)[wave.ravel()],
                    "n": counts_n[kpi].ravel(),
                    "n_eff": np.round(counts_eff[kpi].ravel(), 1),
                    **{k: v.ravel() for k, v in summary.items()},
                    "p_change_negative": p_neg.ravel(),
                    "small_cell": counts_n[kpi].ravel() < min_cell,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def segment_differences(kpis: KpiEstimates, *, hdi_prob: float | None = None) -> pd.DataFrame:
    """Differences of each KPI between every pair of segments, per wave.

    The segments' posteriors are independent, so the draws of ``a - b`` are the
    differences of their draws.

    Parameters
    ----------
    kpis : KpiEstimates
        From :func:`estimate_kpis` (split by a segment column).
    hdi_prob : float, optional
        Interval mass (default: the one the KPIs were estimated with).

    Returns
    -------
    pandas.DataFrame
        One row per KPI x wave x pair of segments (everyone left out; pairs in the
        segments' order): ``kpi, label, wave, segment_a, segment_b, n_a, n_b,
        difference, difference_sd, difference_hdi_low, difference_hdi_high,
        p_a_greater, small_cell``
        (either segment below the study's minimum cell size). Pairs with a segment
        that has no answers in the wave are left out.
    """
    prob = kpis.hdi_prob if hdi_prob is None else hdi_prob
    segments = [s for s in kpis.segments if s != config.EVERYONE]
    pairs = [(a, b) for i, a in enumerate(segments) for b in segments[i + 1 :]]
    rows = []
    for kpi, draws in kpis.draws.items():
        for j, wave in enumerate(kpis.waves):
            for a, b in pairs:
                ia, ib = kpis.segments.index(a), kpis.segments.index(b)
                n_a, n_b = int(kpis.n[kpi][ia, j]), int(kpis.n[kpi][ib, j])
                diff = draws[ia, j] - draws[ib, j]
                if min(n_a, n_b) == 0 or np.isnan(diff).all():
                    continue  # a segment without answers in this wave: only its prior
                s = summarize_draws(diff, prob, quantity="difference")
                rows.append(
                    {
                        "kpi": kpi,
                        "label": kpis.labels.get(kpi, KPI_LABELS[kpi]),
                        "wave": wave,
                        "segment_a": a,
                        "segment_b": b,
                        "n_a": n_a,
                        "n_b": n_b,
                        **{k: float(v) for k, v in s.items()},
                        "p_a_greater": float((diff > 0).mean()),
                        "small_cell": min(n_a, n_b) < kpis.min_cell_size,
                    }
                )
    columns = [
        "kpi", "label", "wave", "segment_a", "segment_b", "n_a", "n_b", "difference",
        "difference_sd", *interval_columns("difference"), "p_a_greater", "small_cell",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)
