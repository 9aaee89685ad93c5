"""Segment x wave cells, and the posterior of a weighted mean in each cell.

KPIs and driver performance are both reported per segment (plus everyone,
``config.EVERYONE``) and wave. Every respondent counts twice: in their segment's cell
and in the everyone cell of their wave.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxlib import config

__all__ = ["Cells", "segment_wave_cells", "weighted_mean_draws"]


@dataclass(frozen=True)
class Cells:
    """Which cell each (possibly repeated) respondent row falls in.

    Attributes
    ----------
    segments, waves : list of str
        Cell labels; ``config.EVERYONE`` first among segments (and the one wave
        label when the study has no wave column).
    rows : numpy.ndarray
        Respondent row of each entry (respondents appear once per level they belong to).
    cell : numpy.ndarray
        Cell index of each entry: ``segment_index * n_waves + wave_index``.
    """

    segments: list[str]
    waves: list[str]
    rows: np.ndarray
    cell: np.ndarray

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return len(self.segments) * len(self.waves)

    @property
    def shape(self) -> tuple[int, int]:
        """(segments, waves)."""
        return len(self.segments), len(self.waves)


def segment_wave_cells(data, segment_column: str | None, wave_column: str | None) -> Cells:
    """Cells of validated responses, by segment (plus everyone) and by the waves present."""
    frame = data.frame
    n = len(frame)
    if segment_column:
        seg = frame[segment_column]
        seg_labels = [config.EVERYONE, *map(str, seg.cat.categories)]
        seg_codes = seg.cat.codes.to_numpy() + 1
    else:
        seg_labels, seg_codes = [config.EVERYONE], np.zeros(n, dtype=int)
    if wave_column:
        wave = frame[wave_column]
        present = [c for c in wave.cat.categories if (wave == c).any()]
        wave_labels = [str(w) for w in present]
        wave_codes = wave.map({c: i for i, c in enumerate(present)}).to_numpy(dtype=int)
    else:
        wave_labels, wave_codes = [config.EVERYONE], np.zeros(n, dtype=int)
    n_wave = len(wave_labels)
    rows = np.arange(n)
    cell = wave_codes
    if len(seg_labels) > 1:
        rows = np.concatenate([rows, rows])
        cell = np.concatenate([wave_codes, seg_codes * n_wave + wave_codes])
    return Cells(seg_labels, wave_labels, rows, cell)


def weighted_mean_draws(
    values: np.ndarray,
    weights: np.ndarray,
    cell: np.ndarray,
    n_cells: int,
    n_draws: int,
    rng: np.random.Generator,
):
    """Posterior draws of the weighted mean of ``values`` in each cell.

    The reference-prior posterior of a mean: Student-t with ``n_eff - 1`` degrees of
    freedom around the weighted mean, scaled by its standard error, where ``n_eff`` is
    Kish's effective sample size. Missing values are skipped; cells with fewer than
    two answers get NaN draws.

    Returns
    -------
    tuple
        ``(draws (cell, draw), n (cell,), n_eff (cell,))``.
    """
    ok = ~np.isnan(values)
    c, x, w = cell[ok], values[ok], weights[ok]
    sw = np.bincount(c, weights=w, minlength=n_cells)
    sw2 = np.bincount(c, weights=w**2, minlength=n_cells)
    n = np.bincount(c, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(c, weights=w * x, minlength=n_cells) / sw
        var = np.bincount(c, weights=w * (x - mean[c]) ** 2, minlength=n_cells) / sw
        n_eff = np.where(sw2 > 0, sw**2 / sw2, 0.0)
        df = np.maximum(n_eff - 1, 1.0)
        se = np.sqrt(var / df)
    draws = mean[:, None] + se[:, None] * rng.standard_t(df[:, None], size=(n_cells, n_draws))
    draws[n < 2] = np.nan
    return draws, n, n_eff
