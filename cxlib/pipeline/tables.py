"""Tidy result tables the notebooks publish (one row per observation, long format).

Every table carries ``study``, ``segment`` and ``wave`` columns saying which
respondents a row describes (``"all"`` when not filtered), so that the results
store can stack runs and dashboards can query trends per segment and wave.

The tables of the model notebooks (``estimates``, ``effects``, ``kpis``,
``alerts``) follow the same rule when they land.
"""

from __future__ import annotations

from cxlib.pipeline.inputs import ALL

__all__ = ["data_quality_tables"]


def data_quality_tables(data, report, *, segment: str = "", wave: str = "") -> dict:
    """The data-quality report as three tidy tables.

    Parameters
    ----------
    data : SurveyData
        The (possibly filtered) responses the report describes.
    report : QualityReport
        ``data.quality_report()``.
    segment, wave : str
        The filter the notebook applied (``""``: none).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``data_quality_summary`` (one row), ``data_quality_items`` (one row per
        item: missing share, floor and ceiling shares, flag) and
        ``data_quality_cells`` (respondents per segment x wave cell, with a flag
        for cells below the study's minimum cell size).
    """
    import pandas as pd

    study = data.study
    label = {"study": study.name, "segment": segment or ALL, "wave": wave or ALL}
    fc = report.floor_ceiling
    items = pd.DataFrame(
        {
            **label,
            "item": list(fc.index),
            "construct": [study.construct_of(i) or "" for i in fc.index],
            "scale": fc["scale"].to_numpy(),
            "missing": report.missing_by_item.reindex(fc.index).to_numpy(dtype=float),
            "floor": fc["floor"].to_numpy(dtype=float),
            "ceiling": fc["ceiling"].to_numpy(dtype=float),
            "flag": fc["flag"].to_numpy(),
        }
    )

    frame = data.frame
    wave_col = study.columns.wave
    rows = []
    for column in study.segment_columns or [None]:
        keys = [c for c in (column, wave_col) if c]
        if keys:
            counts = frame.groupby(keys, observed=True).size()
            for key, n in counts.items():
                key = key if isinstance(key, tuple) else (key,)
                values = dict(zip(keys, key, strict=True))
                rows.append(
                    {
                        "study": study.name,
                        "segment_column": column or "",
                        "segment": str(values[column]) if column else ALL,
                        "wave": str(values[wave_col]) if wave_col else ALL,
                        "n_respondents": int(n),
                    }
                )
        else:
            rows.append(
                {"study": study.name, "segment_column": "", "segment": ALL, "wave": ALL,
                 "n_respondents": len(frame)}
            )
    cells = pd.DataFrame(
        rows, columns=["study", "segment_column", "segment", "wave", "n_respondents"]
    )
    cells["below_min_cell_size"] = cells["n_respondents"] < study.min_cell_size

    n = max(report.n_respondents, 1)
    mr = report.missing_by_respondent
    summary = pd.DataFrame(
        [
            {
                **label,
                "data_hash": data.data_hash,
                "n_respondents": report.n_respondents,
                "n_items": report.n_items,
                "missing_share": float(report.missing_by_item.mean()),
                "complete_share": float(mr["complete"]),
                "over_half_missing_share": float(mr["over_half"]),
                "straightliners": report.straightliners,
                "straightliner_share": report.straightliners / n,
                "floor_ceiling_items": len(report.flagged_items),
                "small_cells": int(cells["below_min_cell_size"].sum()),
            }
        ]
    )
    return {
        "data_quality_summary": summary,
        "data_quality_items": items,
        "data_quality_cells": cells,
    }
