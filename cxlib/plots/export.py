"""Export the tidy table behind a chart, for decks and spreadsheets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxlib.errors import CxError

__all__ = ["export_table"]


def export_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a chart's table to CSV or Excel (by the file suffix).

    Parameters
    ----------
    table : pandas.DataFrame
        The tidy data (e.g. ``chart.data`` or a KPI table).
    path : str or Path
        ``.csv`` or ``.xlsx``.

    Returns
    -------
    Path
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        table.to_csv(path, index=False)
    elif path.suffix.lower() == ".xlsx":
        table.to_excel(path, index=False, engine="openpyxl")
    else:
        raise CxError(f"{path}: export to .csv or .xlsx")
    return path
