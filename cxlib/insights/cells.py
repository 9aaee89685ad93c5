"""Segment x wave cells, and the posterior of a weighted mean in each cell.

KPIs and driver performance are both reported per segment (plus everyone,
``config.EVERYONE``) and wave. Every respondent counts twice: in their segment's cell
and in the everyone cell of their wave.

Disclosure control (:func:`suppressed_cells`): a cell with fewer respondents than the
study's ``min_cell_size`` is withheld, and with it the next smallest cells of its wave
(complementary suppression), so that subtracting the shown segments from everyone does
not give a withheld cell's size or values back (``docs/disclosure.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxlib import config

__all__ = [
    "CELL_KEYS",
    "CHANGE_COLUMNS",
    "COMPLEMENTARY",
    "SMALL",
    "Cells",
    "after_withheld_wave",
    "segment_wave_cells",
    "suppressed_cells",
    "weighted_mean_draws",
    "withheld_rows",
    "withheld_segments",
]


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


# ----------------------------------------------------------------------------- disclosure control
#: Why a cell is withheld: too few respondents, or withheld with a small cell of its split.
SMALL, COMPLEMENTARY = "small", "complementary"
#: The columns that say which cell a row of a published table describes (those it has).
CELL_KEYS = ("segment_column", "segment", "wave")
#: The columns of a row that compare a cell with the wave before it.
CHANGE_COLUMNS = ("change", "change_sd", "change_hdi_low", "change_hdi_high", "p_change_negative")


def suppressed_cells(
    table,
    min_cell_size: int,
    *,
    n_column: str = "n",
    complement: str = "with_total",
):
    """The cells a published table must withhold, with why (primary and complementary).

    A cell (one ``segment`` in one ``wave``, per ``segment_column`` where the table has
    one) is *small* when any of its rows has the ``small_cell`` flag or fewer than
    ``min_cell_size`` respondents in ``n_column``. Withholding a small cell alone does
    not hide it: the everyone row of its wave minus the segments shown gives its
    respondents exactly, and with them its mean. So whenever a split (the segments of
    one wave) has a small cell, the next smallest cells of the split are withheld too
    (*complementary*), until at least two are withheld and together they hold at least
    ``min_cell_size`` respondents (or none is left to withhold). The everyone row
    itself is never withheld for its segments' sake, and an empty cell (no respondent
    in any row, e.g. a segment before the wave it was introduced) is withheld without a
    complement: there is nothing in it to give away. A cell's size is its smallest
    count over its rows (e.g. over KPIs).

    Parameters
    ----------
    table : pandas.DataFrame or None
        Rows labelled ``segment`` and ``wave`` (and ``segment_column``); counts in
        ``n_column``, a ``small_cell`` flag, or both.
    min_cell_size : int
        The study's minimum cell size.
    n_column : str
        The respondent count of a row (absent: only the flag decides, and no
        complementary cell is chosen).
    complement : {"with_total", "always", "never"}
        When to add complementary cells: when the split's everyone row is in the table
        (default: the total that differencing needs is right there), always (the total
        is published elsewhere), or never.

    Returns
    -------
    pandas.DataFrame
        One row per withheld cell: the table's cell keys and ``reason``
        (:data:`SMALL` or :data:`COMPLEMENTARY`), small cells first.
    """
    import pandas as pd

    if complement not in ("with_total", "always", "never"):
        raise ValueError(f"complement must be with_total, always or never, not {complement!r}")
    if table is None or len(table) == 0 or "segment" not in table.columns:
        keys = [c for c in CELL_KEYS if table is not None and c in table.columns] or [
            "segment",
            "wave",
        ]
        return pd.DataFrame(columns=[*keys, "reason"])
    keys = [c for c in CELL_KEYS if c in table.columns]
    frame = table[keys].astype(str)
    small = pd.Series(False, index=table.index)
    if "small_cell" in table.columns:
        small |= table["small_cell"].fillna(False).astype(bool)
    has_n = n_column in table.columns
    n = pd.to_numeric(table[n_column], errors="coerce") if has_n else pd.Series(0, table.index)
    if has_n:
        small |= n.fillna(0) < min_cell_size
    per_cell = (
        frame.assign(small=small.to_numpy(), n=n.fillna(0).to_numpy())
        .groupby(keys, sort=False)
        .agg(small=("small", "any"), n=("n", "min"), most=("n", "max"))
        .reset_index()
    )
    per_cell["reason"] = per_cell["small"].map({True: SMALL, False: ""})
    split = [k for k in keys if k != "segment"]
    if has_n and complement != "never":
        groups = per_cell.groupby(split, sort=False).groups if split else {(): per_cell.index}
        for rows in groups.values():
            cells = per_cell.loc[rows]
            segments = cells[cells["segment"] != config.EVERYONE]
            if not (segments["small"] & (segments["most"] > 0)).any():
                continue  # no small cell, or only empty ones (nothing to give away)
            if complement == "with_total" and len(segments) == len(cells):
                continue  # no everyone row here to subtract from
            withheld = segments[segments["small"] & (segments["most"] > 0)]
            rest = segments[~segments["small"]].sort_values(["n", "segment"])
            count, total = len(withheld), float(withheld["n"].sum())
            for index, n_cell in zip(rest.index, rest["n"], strict=True):
                if count >= 2 and total >= min_cell_size:
                    break
                per_cell.loc[index, "reason"] = COMPLEMENTARY
                count, total = count + 1, total + float(n_cell)
    out = per_cell[per_cell["reason"] != ""]
    order = out["reason"].map({SMALL: 0, COMPLEMENTARY: 1})
    return (
        out.assign(_order=order)
        .sort_values("_order", kind="stable")[[*keys, "reason"]]
        .reset_index(drop=True)
    )


def withheld_segments(sizes, min_cell_size: int) -> dict[str, str]:
    """The segments of one split to withhold, with why: the small ones and their complements.

    For what is published per segment without waves (e.g. a what-if baseline, a
    model's per-segment tables): :func:`suppressed_cells` on the split, its total
    (``config.EVERYONE``) counted as published, so a complement is always chosen.
    When the total itself has fewer than ``min_cell_size`` respondents (a run on a
    small subset of the study), every segment and the total are withheld.

    Parameters
    ----------
    sizes : mapping of str to int
        Segment -> respondents; ``config.EVERYONE`` -> the split's total, when known
        (else the segments' sum).
    min_cell_size : int
        The study's minimum cell size.

    Returns
    -------
    dict of str to str
        Withheld segment -> :data:`SMALL` or :data:`COMPLEMENTARY` (small ones first);
        empty when nothing is withheld.

    Examples
    --------
    >>> withheld_segments({"all": 1634, "A": 20, "B": 500, "C": 1114}, 30)
    {'A': 'small', 'B': 'complementary'}
    """
    import pandas as pd

    sizes = {str(k): float(v or 0) for k, v in dict(sizes).items()}
    total = sizes.get(config.EVERYONE, sum(v for k, v in sizes.items() if k != config.EVERYONE))
    if 0 < total < min_cell_size:
        return dict.fromkeys(sizes | {config.EVERYONE: total}, SMALL)
    frame = pd.DataFrame(
        {"segment": list(sizes), "n": list(sizes.values())}, columns=["segment", "n"]
    )
    cells = suppressed_cells(frame, min_cell_size, complement="always")
    return dict(zip(cells["segment"].astype(str), cells["reason"], strict=True))


def withheld_rows(table, cells, *, segment: str = "segment"):
    """Which rows of ``table`` describe a withheld cell (a boolean Series on its index).

    ``cells`` is :func:`suppressed_cells`' frame; rows match it on the cell keys both
    have, the row's ``segment`` read from the column ``segment`` names (e.g.
    ``segment_a`` of a table of differences).
    """
    import pandas as pd

    if table is None or len(table) == 0 or cells is None or len(cells) == 0:
        return pd.Series(False, index=getattr(table, "index", None), dtype=bool)
    keys = [
        c
        for c in CELL_KEYS
        if c in cells.columns and (c if c != "segment" else segment) in table.columns
    ]
    if "segment" not in keys:
        return pd.Series(False, index=table.index, dtype=bool)
    withheld = set(cells[keys].astype(str).itertuples(index=False, name=None))
    columns = [segment if k == "segment" else k for k in keys]
    rows = table[columns].astype(str).itertuples(index=False, name=None)
    return pd.Series([r in withheld for r in rows], index=table.index, dtype=bool)


def after_withheld_wave(table, cells, waves=None):
    """Rows whose previous wave's cell is withheld (their change would give its value away).

    ``waves`` is the waves' order (default: the order they first appear in ``table``).
    """
    import pandas as pd

    if table is None or len(table) == 0 or "wave" not in table.columns:
        return pd.Series(False, index=getattr(table, "index", None), dtype=bool)
    order = [str(w) for w in (waves if waves is not None else dict.fromkeys(table["wave"]))]
    previous = {w: order[i - 1] for i, w in enumerate(order) if i > 0}
    shifted = table.assign(wave=[previous.get(str(w), "\0none") for w in table["wave"]])
    return withheld_rows(shifted, cells)
