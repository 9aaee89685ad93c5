"""Tidy result tables the notebooks publish (one row per observation, long format).

Every table carries ``study``, ``segment`` and ``wave`` columns saying which
respondents a row describes (``config.EVERYONE`` when not filtered), so that the
results store can stack runs and dashboards can query trends per segment and wave.
Each table's columns and dtypes are declared in :mod:`cxlib.pipeline.schemas`, which
:meth:`Artifacts.table <cxlib.pipeline.artifacts.Artifacts.table>` checks on write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxlib import config
from cxlib.insights.cells import (
    CHANGE_COLUMNS,
    after_withheld_wave,
    suppressed_cells,
    withheld_rows,
    withheld_segments,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from cxlib.insights.allocation import AllocationPlan
    from cxlib.insights.delivery_gap import DeliveryGap

__all__ = [
    "BEHAVIOUR_COLUMNS",
    "EXCLUDED_REASONS",
    "behaviour_performance",
    "data_quality_tables",
    "digital_tables",
    "driver_tables",
    "expectations_tables",
    "journey_tables",
    "label_table",
    "sem_tables",
    "sem_warnings",
    "study_overview",
    "withhold_cells",
    "withhold_segment_rows",
    "withhold_small_cells",
]

#: Why rows of a file are left out on load (``SurveyData.excluded_rows``), each a
#: ``data_quality_summary`` column ``excluded_<reason>``: Qualtrics preview, test and
#: unfinished responses.
EXCLUDED_REASONS = ("preview", "test", "unfinished")


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
        ``data_quality_summary`` (one row; with the rows of the file left out on
        load, ``excluded_rows`` and per reason ``excluded_preview``,
        ``excluded_test``, ``excluded_unfinished`` (Qualtrics), and
        ``missing_text_cells``, the cells a "no answer" text such as ``"NA"`` turned
        missing), ``data_quality_items`` (one row per item: missing share, the
        cells of it read as missing from a text, floor and ceiling shares, flag),
        ``data_quality_missing_texts`` (one row per column and text read as missing:
        how many cells) and ``data_quality_cells`` (respondents per segment x wave
        cell, with a flag for cells below the study's minimum cell size; a cell
        withheld by disclosure control, :func:`withhold_small_cells`, has 0
        respondents: the wave's total is published elsewhere, so with each small cell
        the next smallest of its split is withheld too). The excluded rows and the
        missing texts are counted over the whole file, before a segment or wave
        filter.
    """
    import pandas as pd

    study = data.study
    everyone = config.EVERYONE
    label = {"study": study.name, "segment": segment or everyone, "wave": wave or everyone}
    fc = report.floor_ceiling
    tokens = report.missing_tokens or {}
    items = pd.DataFrame(
        {
            **label,
            "item": list(fc.index),
            "construct": [study.construct_of(i) or "" for i in fc.index],
            "scale": fc["scale"].to_numpy(),
            "missing": report.missing_by_item.reindex(fc.index).to_numpy(dtype=float),
            "missing_text_cells": [int(sum(tokens.get(i, {}).values())) for i in fc.index],
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
                        "segment": str(values[column]) if column else everyone,
                        "wave": str(values[wave_col]) if wave_col else everyone,
                        "n_respondents": int(n),
                    }
                )
        else:
            rows.append(
                {
                    "study": study.name,
                    "segment_column": "",
                    "segment": everyone,
                    "wave": everyone,
                    "n_respondents": len(frame),
                }
            )
    cells = pd.DataFrame(
        rows, columns=["study", "segment_column", "segment", "wave", "n_respondents"]
    )
    cells["below_min_cell_size"] = cells["n_respondents"] < study.min_cell_size
    small_cells = int(cells["below_min_cell_size"].sum())
    cells = withhold_cells(
        cells,
        suppressed_cells(cells, study.min_cell_size, n_column="n_respondents", complement="always"),
        counts=("n_respondents",),
    )

    excluded = report.excluded_rows or {}
    texts = pd.DataFrame(
        [
            {**label, "column": str(column), "text": str(text), "cells": int(n)}
            for column, counts in tokens.items()
            for text, n in counts.items()
        ],
        columns=[*label, "column", "text", "cells"],
    ).astype({"cells": "int64"})
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
                "small_cells": small_cells,
                "excluded_rows": int(sum(excluded.values())),
                **{f"excluded_{why}": int(excluded.get(why, 0)) for why in EXCLUDED_REASONS},
                "missing_text_cells": int(texts["cells"].sum()),
            }
        ]
    )
    return {
        "data_quality_summary": summary,
        "data_quality_items": items,
        "data_quality_missing_texts": texts,
        "data_quality_cells": cells,
    }


def label_table(frame, *, study: str, segment: str = "", wave: str = ""):
    """The table with ``study``, ``segment`` and ``wave`` columns in front.

    Columns the table already has (e.g. a ``segment`` per row) are kept; the
    others say which respondents the run used (``config.EVERYONE`` when not filtered).
    """
    frame = frame.reset_index(drop=True).copy()
    for name, value in reversed(
        [
            ("study", study),
            ("segment", segment or config.EVERYONE),
            ("wave", wave or config.EVERYONE),
        ]
    ):
        if name not in frame.columns:
            frame.insert(0, name, value)
    front = ["study", "segment", "wave"]
    return frame[front + [c for c in frame.columns if c not in front]]


def sem_tables(
    result, *, study: str, segment: str = "", wave: str = "", seed: int | None = None
) -> dict:
    """A fitted SEM's results as tidy tables (what ``02-experience-brand-loyalty`` publishes).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``sem_estimates``, ``sem_estimates_standardized`` (lavaan's columns),
        ``sem_effects``, ``sem_r2``, ``sem_reliability`` (per construct), ``sem_htmt``
        (per pair of constructs: HTMT from the data and its posterior interval),
        ``sem_composites`` (weights, implied loadings and VIF of each composite
        indicator; empty without composites), ``sem_fit`` (one row per fit measure:
        ``measure, value``; empty for a model with product terms) and
        ``sem_warnings`` (one row per sign of an improper solution:
        ``kind, constructs, value, message, advice``; empty when the solution is
        proper), each labelled with study, segment and wave.
    """
    import pandas as pd

    if result.structure.interactions:
        # a model with product terms has no normal-theory fit measures (its items are
        # not multivariate normal): an empty table, said so by the notebook
        fit = pd.DataFrame({"measure": pd.Series(dtype=str), "value": pd.Series(dtype=float)})
    else:
        fit = result.fit_measures(random_seed=seed)
    if isinstance(fit, pd.Series):
        fit = fit.rename("value").rename_axis("measure").reset_index()
    elif isinstance(fit, dict):
        fit = pd.DataFrame({"measure": list(fit), "value": list(fit.values())})
    report = result.reliability()
    reliability = report.constructs
    if not isinstance(reliability.index, pd.RangeIndex):
        reliability = reliability.rename_axis(reliability.index.name or "construct").reset_index()
    r2 = result.r2()
    if not isinstance(r2.index, pd.RangeIndex):
        r2 = r2.rename_axis(r2.index.name or "construct").reset_index()
    tables = {
        "sem_estimates": result.estimates(),
        "sem_estimates_standardized": result.estimates(standardized=True),
        "sem_effects": result.effects(standardized=True),
        "sem_r2": r2,
        "sem_reliability": reliability,
        "sem_htmt": report.htmt_intervals.reset_index(drop=True),
        "sem_composites": result.composites(),
        "sem_fit": fit,
        "sem_warnings": sem_warnings(result),
    }
    return {k: label_table(v, study=study, segment=segment, wave=wave) for k, v in tables.items()}


#: The columns of ``sem_warnings`` after study, segment and wave.
SEM_WARNING_COLUMNS = ["kind", "constructs", "value", "message", "advice"]


def sem_warnings(result):
    """The problems of a fitted SEM's improper-solution report, one row each.

    Parameters
    ----------
    result : SEMResult
        A fitted SEM; its ``improper`` report lists the problems.

    Returns
    -------
    pandas.DataFrame
        ``kind, constructs`` (comma-separated), ``value`` (the posterior mean that
        crossed the limit), ``message, advice``; no rows when the solution is proper.
    """
    import pandas as pd

    rows = [
        {
            "kind": str(p.get("kind", "")),
            "constructs": ", ".join(str(c) for c in p.get("constructs") or []),
            "value": float(p["value"]) if p.get("value") is not None else float("nan"),
            "message": str(p.get("message", "")),
            "advice": str(p.get("advice", "")),
        }
        for p in result.improper.problems
    ]
    frame = pd.DataFrame.from_records(rows, columns=SEM_WARNING_COLUMNS)
    return frame.astype({"value": "float64"}).astype(
        {c: "str" for c in SEM_WARNING_COLUMNS if c != "value"}
    )


def expectations_tables(result, *, study: str, segment: str = "", wave: str = "") -> dict:
    """A fitted expectations model's results as tidy tables (``03-technical-vs-emotional``).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``expectations_dimension_weights``, ``expectations_emotional_share``,
        ``expectations_penalty_reward`` (per attribute and segment),
        ``expectations_gap_closing`` and ``expectations_gaps``; rows keep the
        model's own ``segment`` column. Disclosure control: the rows of a segment
        with fewer respondents than the study's ``min_cell_size``, and of the next
        smallest segments withheld with it (:func:`withhold_segment_rows`), have their
        numbers blanked (floats NaN, counts 0, ``kano_class`` ``undetermined``) and
        ``small_segment`` set, so that the everyone rows minus the segments shown give
        no withheld segment's size or values back.
    """
    tables = {
        "expectations_dimension_weights": result.dimension_weights(),
        "expectations_emotional_share": result.emotional_share(),
        "expectations_penalty_reward": result.penalty_reward(by_segment=True),
        "expectations_gap_closing": result.gap_closing(),
        "expectations_gaps": result.gap_table(),
    }
    gaps = tables["expectations_gaps"]
    sizes = gaps.groupby(gaps["segment"].astype(str), sort=False)["n_respondents"].min()
    withheld = withheld_segments(sizes.to_dict(), result.model.study.min_cell_size)
    return {
        k: label_table(withhold_segment_rows(v, withheld), study=study, segment=segment, wave=wave)
        for k, v in tables.items()
    }


#: Respondent counts of the per-segment tables, set to 0 in a withheld segment's rows.
SEGMENT_COUNTS = ("n", "n_respondents", "n_gap_answered", "n_reference_imputed",
                  "n_perception_missing")  # fmt: skip


def withhold_segment_rows(frame, withheld: dict[str, str]):
    """A copy of a per-segment table with the withheld segments' numbers blanked.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows with a ``segment`` column (a model's per-segment results).
    withheld : dict of str to str
        :func:`cxlib.insights.cells.withheld_segments`. When it withholds everyone
        (``config.EVERYONE``: the run's respondents are a small cell themselves),
        every row is blanked.

    Returns
    -------
    pandas.DataFrame
        Floats NaN, :data:`SEGMENT_COUNTS` 0, a ``kano_class`` ``undetermined``, the
        ``*_identified`` flags False and ``small_segment`` True in the withheld rows.
    """
    import pandas as pd

    if not withheld or frame is None or len(frame) == 0 or "segment" not in frame.columns:
        return frame
    if config.EVERYONE in withheld:
        rows = pd.Series(True, index=frame.index)
    else:
        rows = frame["segment"].astype(str).isin(list(withheld))
    counts = tuple(c for c in SEGMENT_COUNTS if c in frame.columns)
    out = withhold_cells(frame, None, rows=rows, counts=counts)
    if not rows.any():
        return out
    if "kano_class" in out.columns:
        out.loc[rows, "kano_class"] = "undetermined"
    for column in ("penalty_identified", "reward_identified"):
        if column in out.columns:
            out.loc[rows, column] = False
    if "small_segment" in out.columns:
        out.loc[rows, "small_segment"] = True
    return out


def driver_tables(
    model,
    data,
    *,
    target: str | None = None,
    segment: str = "",
    wave: str = "",
    seed: int | None = None,
) -> dict:
    """Driver priorities (construct and item level) and what-if examples (``04-drivers-and-what-if``).

    ``target`` is the construct whose drivers are ranked (None: the study's
    target, :attr:`cxlib.study.Study.target`).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``driver_priorities`` (one row per driver x segment x wave, ``level``
        ``construct`` or ``item``; a withheld cell's numbers blanked, see
        :func:`withhold_small_cells`) and ``what_if_examples`` (each driver raised by
        5 score points, per segment; the segments the what-if baseline withholds,
        :func:`cxlib.insights.drivers.what_if_baseline`, blanked the same way).
    """
    import pandas as pd

    from cxlib.insights.drivers import driver_priorities, what_if_baseline, what_if_examples

    seed = config.DEFAULT_SEED if seed is None else seed
    priorities = pd.concat(
        [
            driver_priorities(model, data, target=target, level=level, seed=seed)
            for level in ("construct", "item")
        ],
        ignore_index=True,
    )
    name = data.study.name
    priorities = withhold_cells(
        priorities, suppressed_cells(priorities, data.study.min_cell_size), counts=("n",)
    )
    # a what-if starts from the segment's current levels: withheld as the baseline is
    baseline = what_if_baseline(model, data, target=target)
    withheld = {s: e["withheld"] for s, e in baseline["segments"].items() if e.get("withheld")}
    examples = withhold_segment_rows(what_if_examples(model, data, target=target), withheld)
    return {
        "driver_priorities": label_table(priorities, study=name, segment=segment, wave=wave),
        "what_if_examples": label_table(examples, study=name, segment=segment, wave=wave),
    }


def study_overview(
    data,
    *,
    rules,
    model_dirs: dict,
    drivers_dir=None,
    digital_dir=None,
    segment: str = "",
    wave: str = "",
    seed: int | None = None,
) -> tuple[dict, dict]:
    """KPIs, alerts and segment differences of a study (what ``00-study-overview`` publishes).

    Parameters
    ----------
    data : SurveyData
        The responses.
    rules : list of AlertRule
        The study's and the pipeline's alert rules.
    model_dirs : dict
        Model name -> output folder of its notebook (or None): their
        ``diagnostics.json`` feed ``diagnostics_failed`` rules.
    drivers_dir : Path, optional
        Output folder of ``04-drivers-and-what-if``: its construct-level
        ``driver_priorities`` feed ``fix_first`` rules.
    digital_dir : Path, optional
        Output folder of ``06-digital-experience``: the rules on digital metrics it
        evaluated (``digital_alerts``) join the alerts.

    Returns
    -------
    (dict of str to pandas.DataFrame, dict)
        The tables ``kpis``, ``alerts``, ``segment_differences``, and the
        ``overview`` document (study title, respondents, waves, models'
        diagnostics status, alert rules that could not be evaluated).
    """
    import json
    from pathlib import Path

    import pandas as pd

    from cxlib.insights.alerts import evaluate_alerts, rules_needing_missing_inputs
    from cxlib.insights.kpis import estimate_kpis, segment_differences
    from cxlib.pipeline.gates import read_diagnostics

    study = data.study
    kpis = estimate_kpis(data, seed=config.DEFAULT_SEED if seed is None else seed)
    diagnostics = {}
    for model, folder in model_dirs.items():
        found = read_diagnostics(folder) if folder else None
        if found is not None:
            if "ok" not in found:
                found = {**found, "ok": not found.get("problems")}
            diagnostics[model] = found
    priorities = None
    if drivers_dir:
        path = Path(drivers_dir) / "tables" / "driver_priorities.parquet"
        if path.is_file():
            priorities = pd.read_parquet(path)
            priorities = priorities[priorities["level"] == "construct"]
    skipped = rules_needing_missing_inputs(
        rules, kpis=kpis, priorities=priorities, diagnostics=diagnostics
    )
    alerts = evaluate_alerts(
        [r for r in rules if r.name not in skipped],
        study=study.name,
        kpis=kpis,
        priorities=priorities,
        diagnostics=diagnostics,
    )
    path = Path(digital_dir) / "tables" / "digital_alerts.parquet" if digital_dir else None
    if path is not None and path.is_file():
        digital = pd.read_parquet(path)
        evaluated = set(digital["rule_name"])
        digital = digital[[c for c in alerts.columns if c in digital.columns]]
        alerts = pd.concat([alerts, digital], ignore_index=True) if len(digital) else alerts
        skipped = {name: why for name, why in skipped.items() if name not in evaluated}
    protected = withhold_small_cells(
        {"kpis": kpis.table, "alerts": alerts, "segment_differences": segment_differences(kpis)},
        study.min_cell_size,
        waves=list(kpis.waves),
    )
    alerts = protected["alerts"]
    tables = {
        name: label_table(table, study=study.name, segment=segment, wave=wave)
        for name, table in protected.items()
    }
    overview = {
        "study": study.name,
        "title": study.title or study.name,
        "segment": segment or config.EVERYONE,
        "wave": wave or config.EVERYONE,
        "respondents": int(data.n_respondents),
        "waves": list(kpis.waves),
        "segments": list(kpis.segments),
        "models": {
            model: {
                "ok": bool(d.get("ok")),
                "problems": list(d.get("problems") or []),
                **{k: d.get(k) for k in ("max_r_hat", "min_ess_bulk", "divergences")},
            }
            for model, d in diagnostics.items()
        },
        "alerts_fired": int(alerts["fired"].sum()) if len(alerts) else 0,
        "alert_rules_not_evaluated": skipped,
    }
    json.dumps(overview)  # plain data only
    return tables, overview


def withhold_cells(frame, cells, *, rows=None, counts=(), columns=None):
    """A copy of ``frame`` with the numbers of its withheld cells' rows blanked.

    Parameters
    ----------
    frame : pandas.DataFrame
        A table with cell labels (``segment``, ``wave``, ...).
    cells : pandas.DataFrame
        :func:`cxlib.insights.cells.suppressed_cells`' frame.
    rows : pandas.Series of bool, optional
        The rows to blank (default: those of ``cells``).
    counts : tuple of str
        Integer columns set to 0 (respondent counts).
    columns : list of str, optional
        The columns set to NaN (default: every float column, and ``small_cell`` set).
    """
    rows = withheld_rows(frame, cells) if rows is None else rows
    frame = frame.copy()
    if not rows.any():
        return frame
    floats = columns or [c for c in frame.columns if frame[c].dtype.kind == "f"]
    frame.loc[rows, floats] = float("nan")
    for column in counts:
        frame.loc[rows, column] = 0
    if "small_cell" in frame.columns and columns is None:
        frame.loc[rows, "small_cell"] = True
    return frame


#: What a withheld alert says instead of its message (which names the cell's estimate and n).
WITHHELD_MESSAGE = "withheld: a cell with too few respondents, or withheld with one"


def withhold_small_cells(tables: dict, min_cell_size: int, *, waves=None) -> dict:
    """The overview's tables with every withheld cell's numbers blanked (disclosure control).

    The cells to withhold are decided on ``kpis`` by
    :func:`cxlib.insights.cells.suppressed_cells`: the small cells and, in each wave
    with one, the next smallest (complementary), so that the everyone row minus the
    segments published gives no withheld cell's size or values back. A withheld row
    keeps its labels; its numbers are blanked (floats NaN, counts 0), its
    ``small_cell`` flag is set, and its alert does not fire. A row comparing with a
    withheld cell — a change since a withheld wave, a difference with a withheld
    segment — is blanked the same way (``docs/disclosure.md``).

    Parameters
    ----------
    tables : dict of str to pandas.DataFrame
        ``kpis`` and, when there, ``alerts`` and ``segment_differences`` (unlabelled or
        labelled).
    min_cell_size : int
        The study's minimum cell size.
    waves : list of str, optional
        The waves in order (default: as they first appear in ``kpis``).

    Returns
    -------
    dict of str to pandas.DataFrame
        The same tables, protected (copies).
    """
    kpis = tables["kpis"]
    cells = suppressed_cells(kpis, min_cell_size, n_column="n")
    out = dict(tables)
    table = withhold_cells(kpis, cells, counts=("n",))
    after = after_withheld_wave(table, cells, waves)
    changes = [c for c in CHANGE_COLUMNS if c in table.columns]
    out["kpis"] = withhold_cells(table, cells, rows=after, columns=changes)
    differences = tables.get("segment_differences")
    if differences is not None:
        rows = withheld_rows(differences, cells, segment="segment_a") | withheld_rows(
            differences, cells, segment="segment_b"
        )
        out["segment_differences"] = withhold_cells(
            differences, cells, rows=rows, counts=("n_a", "n_b")
        )
    alerts = tables.get("alerts")
    if alerts is not None and len(alerts):
        rows = withheld_rows(alerts, cells)
        if "kind" in alerts.columns:
            rows |= after_withheld_wave(alerts, cells, waves) & (alerts["kind"] == "change")
        # the threshold is the rule's, not the cell's
        alerts = withhold_cells(alerts, cells, rows=rows, columns=["probability"])
        if rows.any():
            alerts.loc[rows, "small_cell"] = True
            alerts.loc[rows, "fired"] = False
            alerts.loc[rows, "message"] = WITHHELD_MESSAGE
        out["alerts"] = alerts
    return out


def journey_tables(
    result,
    data,
    *,
    driver_model=None,
    costs: pd.DataFrame | None = None,
    budget: float | None = None,
    internal: pd.DataFrame | None = None,
    objective: str = "expected",
    metric: str = "target",
    segment: str = "",
    wave: str = "",
    hdi_prob: float = config.HDI_PROB,
    cost_source: str = "cost table",
    digital_scores: pd.DataFrame | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Touchpoint table, stage x channel matrix, allocation and delivery gap as tidy tables.

    Parameters
    ----------
    result : TouchpointResult
        The fitted touchpoint model.
    data : SurveyData
        The responses (for the delivery gap).
    driver_model : DriverModel, optional
        The SEM's draws: effects reach the target through its total effect.
    costs : pandas.DataFrame, optional
        A checked cost table (no allocation without one).
    budget : float, optional
        Default :func:`default_budget`.
    internal : pandas.DataFrame, optional
        A checked internal assessment (no delivery gap without one).
    objective : {"expected", "quantile"}
        The allocation's objective.
    metric : {"target", "nps"}
        Allocation gains in target points, or in NPS points (needs ``driver_model``;
        see :func:`cxlib.insights.journey.touchpoint_gains`).
    segment, wave : str
        The filter the notebook applied (labels).
    digital_scores : pandas.DataFrame, optional
        ``06-digital-experience``'s published ``digital_scores``: its touchpoint rows
        become the electronic touchpoints' behaviour-based performance
        (``behaviour_performance``, the mean satisfaction predicted for all their web and
        app sessions, 0-100, with its interval, and ``behaviour_sessions``) beside the
        survey-based ``performance``.

    Returns
    -------
    (dict of str to DataFrame, dict)
        Tables ``touchpoint_effects``, ``journey_matrix`` and, when given their inputs,
        ``touchpoint_costs``, ``allocation_plan``, ``allocation_alternatives``,
        ``allocation_summary``, ``delivery_gap``, ``delivery_gap_summary``; and the
        objects ``gains`` (TouchpointGains), ``plan`` (AllocationPlan or None), ``gap``
        (DeliveryGap or None).
    """
    import pandas as pd

    from cxlib.insights.allocation import allocate_budget
    from cxlib.insights.delivery_gap import delivery_gap
    from cxlib.insights.journey import default_budget, touchpoint_gains
    from cxlib.models.touchpoints.data import journey_map

    study = result.model.study
    tables = {
        "touchpoint_effects": result.touchpoint_table(driver_model=driver_model, hdi_prob=hdi_prob),
        "journey_matrix": result.journey_matrix(driver_model=driver_model, hdi_prob=hdi_prob),
    }
    if digital_scores is not None:
        tables["touchpoint_effects"] = behaviour_performance(
            tables["touchpoint_effects"], digital_scores
        )
    gains = touchpoint_gains(result, driver_model, metric=metric, data=data)
    plan: AllocationPlan | None = None
    gap: DeliveryGap | None = None
    if costs is not None:
        budget = default_budget(costs, gains) if budget is None else float(budget)
        plan = allocate_budget(
            gains, costs, budget, objective=objective, hdi_prob=hdi_prob, cost_source=cost_source
        )
        tables["touchpoint_costs"] = costs
        tables["allocation_plan"] = plan.plan
        tables["allocation_alternatives"] = plan.alternatives
        tables["allocation_summary"] = pd.DataFrame([plan.summary])
    if internal is not None:
        gap = delivery_gap(data, journey_map(study), internal, hdi_prob=hdi_prob)
        tables["delivery_gap"] = gap.table
        tables["delivery_gap_summary"] = pd.DataFrame([gap.summary])
    labelled = {
        name: label_table(t, study=study.name, segment=segment, wave=wave)
        for name, t in tables.items()
    }
    return labelled, {"gains": gains, "plan": plan, "gap": gap}


#: The behaviour-based columns :func:`behaviour_performance` adds to ``touchpoint_effects``.
BEHAVIOUR_COLUMNS = (
    "behaviour_performance",
    "behaviour_performance_hdi_low",
    "behaviour_performance_hdi_high",
    "behaviour_sessions",
)


def behaviour_performance(effects: pd.DataFrame, digital_scores: pd.DataFrame) -> pd.DataFrame:
    """``effects`` with each electronic touchpoint's behaviour-based performance beside its own.

    Parameters
    ----------
    effects : pandas.DataFrame
        The ``touchpoint_effects`` table (one row per touchpoint).
    digital_scores : pandas.DataFrame
        ``digital_scores`` of ``06-digital-experience`` (its ``level == "touchpoint"`` rows).

    Returns
    -------
    pandas.DataFrame
        ``effects`` with :data:`BEHAVIOUR_COLUMNS` (NaN, and 0 sessions, for touchpoints
        without web or app sessions).
    """
    import pandas as pd

    from cxlib.stats import interval_columns

    rows = digital_scores[digital_scores["level"] == "touchpoint"]
    low, high = interval_columns("score")
    behaviour = pd.DataFrame(
        {
            "touchpoint": rows["touchpoint"].astype(str),
            "behaviour_performance": rows["score"].astype(float),
            "behaviour_performance_hdi_low": rows[low].astype(float),
            "behaviour_performance_hdi_high": rows[high].astype(float),
            "behaviour_sessions": rows["sessions"].astype("int64"),
        }
    )
    out = effects.drop(columns=[c for c in BEHAVIOUR_COLUMNS if c in effects.columns])
    out = out.merge(behaviour, on="touchpoint", how="left")
    out["behaviour_sessions"] = out["behaviour_sessions"].fillna(0).astype("int64")
    return out


#: Each signal's own unit (``digital_signals.unit``).
SIGNAL_UNITS = {
    "dwell_time_s": "seconds",
    "hesitation_s": "seconds",
    "stillness_share": "share of the session",
    "rage_clicks": "bursts per session",
    "dead_clicks": "per session",
    "quick_backs": "per session",
    "page_loops": "per session",
    "form_errors": "per session",
    "completed": "share of sessions",
    "time_to_complete_s": "seconds",
}
#: cxlib.insights.digital's share-dissatisfied columns -> the published tables' names.
_SHARE_COLUMNS = {
    f"share_dissatisfied{suffix}": f"dissatisfied_share{suffix}"
    for suffix in ("", "_sd", "_hdi_low", "_hdi_high")
}
#: The count signals ranked per page view in ``digital_worst_pages``.
PAGE_SIGNALS = ("rage_clicks", "dead_clicks", "quick_backs", "form_errors")
#: Pages kept per signal in ``digital_worst_pages``.
WORST_PAGES = 20


def digital_tables(
    result,
    sessions,
    pages,
    *,
    study: str,
    thresholds=None,
    validation=None,
    min_cell_size: int = config.MIN_CELL_SIZE,
    segment: str = "",
    draws: int = 200,
    hdi_prob: float = config.HDI_PROB,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """A calibrated digital experience model's results as tidy tables (06-digital-experience).

    Parameters
    ----------
    result : DigitalExperienceResult
        The calibration of the signals against the sessions' stated satisfaction.
    sessions : pandas.DataFrame
        Every session's signals with its rating (NaN: not surveyed) — the sessions scored.
    pages : pandas.DataFrame
        The session x page table of :func:`cxlib.data.signals.compute_signals`.
    study : str
        The study's name (the tables' label).
    thresholds : SignalThresholds, optional
        The signals' thresholds (for the definitions shown).
    validation : HoldoutValidation, optional
        The held-out check (``digital_calibration``; none without it).
    min_cell_size : int
        A score of fewer sessions is flagged ``few_sessions``; a page with fewer views is
        not ranked (unless no page has that many).
    segment : str
        The segment the sessions were filtered to (label).
    draws : int
        Posterior draws the scores use.

    Returns
    -------
    (dict of str to DataFrame, dict)
        The tables declared for ``06-digital-experience`` in :mod:`cxlib.pipeline.schemas`,
        and the summary the notebook publishes as ``digital.json``.
    """
    import numpy as np
    import pandas as pd

    from cxlib.data.signals import signal_definitions
    from cxlib.insights.digital import (
        digital_experience_scores,
        dissatisfied_share,
        surveyed_vs_all,
    )

    everyone = config.EVERYONE
    rating = result.model.rating
    frame = sessions.reset_index(drop=True).copy()
    frame["day"] = pd.to_datetime(frame["day"]).dt.strftime("%Y-%m-%d")
    frame["level_all"] = everyone
    frame["touchpoint_day"] = frame["touchpoint"].astype(str) + "\x1f" + frame["day"]
    answered = pd.to_numeric(frame[rating], errors="coerce").notna()

    def rename(table: pd.DataFrame) -> pd.DataFrame:
        return table.rename(
            columns={
                "n_sessions": "sessions",
                "hdi_low": "score_hdi_low",
                "hdi_high": "score_hdi_high",
                **_SHARE_COLUMNS,
            }
        )

    levels = []
    for level, by in (
        ("all", "level_all"),
        ("touchpoint", "touchpoint"),
        ("day", "day"),
        ("touchpoint_day", "touchpoint_day"),
        ("page", "page"),
    ):
        if by == "page":
            table = digital_experience_scores(
                result, frame, by="page", pages=pages, draws=draws, hdi_prob=hdi_prob
            )
            viewed = pages[["session_id", "page"]].drop_duplicates()
            surveyed_ids = set(frame.loc[answered, "session_id"])
            counts = viewed.assign(s=viewed["session_id"].isin(surveyed_ids)).groupby("page")["s"]
            table["surveyed"] = table["page"].map(counts.sum()).fillna(0).astype("int64")
            table = table.assign(
                touchpoint=table["page"]
                .map(pages.drop_duplicates("page").set_index("page")["touchpoint"])
                .fillna(everyone),
                day=everyone,
            )
        else:
            table = digital_experience_scores(result, frame, by=by, draws=draws, hdi_prob=hdi_prob)
            key = table[by].astype(str)
            if by == "day":
                key = pd.to_datetime(table[by]).dt.strftime("%Y-%m-%d")
            table["surveyed"] = key.map(answered.groupby(frame[by]).sum()).fillna(0)
            table["surveyed"] = table["surveyed"].astype("int64")
            if by == "touchpoint_day":
                parts = key.str.split("\x1f", expand=True)
                table["touchpoint"], table["day"] = parts[0], parts[1]
            elif by == "day":
                table["day"], table["touchpoint"] = key, everyone
            elif by == "touchpoint":
                table["touchpoint"], table["day"] = key, everyone
            else:
                table["touchpoint"], table["day"] = everyone, everyone
            table["page"] = everyone
        table["level"] = level
        levels.append(rename(table))
    scores = pd.concat(levels, ignore_index=True)
    scores["sessions"] = scores["sessions"].astype("int64")
    scores["few_sessions"] = scores["sessions"] < min_cell_size
    keep = [
        "level", "touchpoint", "day", "page", "sessions", "surveyed",
        "score", "score_sd", "score_hdi_low", "score_hdi_high",
        "dissatisfied_share", "dissatisfied_share_sd",
        "dissatisfied_share_hdi_low", "dissatisfied_share_hdi_high", "few_sessions",
    ]  # fmt: skip
    scores = scores[keep]

    definitions = signal_definitions(thresholds)
    effects = result.signal_effects(hdi_prob=hdi_prob)
    to100 = 100.0 / result.data.width
    signals = pd.DataFrame(
        {
            "signal": effects["signal"],
            "label": effects["signal"].map(lambda s: definitions.get(s, (s, ""))[0]),
            # the signal's own unit (of per_session and per_surveyed_session); the effect is
            # in 0-100 points per SD of the signal
            "unit": effects["signal"].map(SIGNAL_UNITS).fillna(""),
            "definition": effects["signal"].map(lambda s: definitions.get(s, (s, ""))[1]),
            "effect": effects["effect_per_sd"] * to100,
            "effect_sd": effects["effect_per_sd_sd"] * to100,
            "effect_hdi_low": effects["effect_per_sd_hdi_low"] * to100,
            "effect_hdi_high": effects["effect_per_sd_hdi_high"] * to100,
            "p_largest_cost": effects["p_largest_cost"],
            "per_session": [float(pd.to_numeric(frame[s]).mean()) for s in effects["signal"]],
            "per_surveyed_session": [
                float(pd.to_numeric(frame.loc[answered, s]).mean()) for s in effects["signal"]
            ],
        }
    )

    worst = []
    page_rows = pages.groupby("page", as_index=False).agg(
        touchpoint=("touchpoint", "first"),
        views=("views", "sum"),
        sessions=("session_id", "nunique"),
        **{s: (s, "sum") for s in PAGE_SIGNALS if s in pages.columns},
    )
    ranked = page_rows[page_rows["views"] >= min_cell_size]
    if ranked.empty:
        ranked = page_rows
    for signal in PAGE_SIGNALS:
        if signal not in ranked.columns:
            continue
        table = ranked.assign(signal=signal, rate=ranked[signal] / ranked["views"])
        table = table.sort_values(["rate", "views"], ascending=[False, False]).head(WORST_PAGES)
        table["rank"] = np.arange(1, len(table) + 1, dtype=np.int64)
        worst.append(table[["signal", "page", "touchpoint", "views", "sessions", "rate", "rank"]])
    worst_pages = pd.concat(worst, ignore_index=True)
    worst_pages["touchpoint"] = worst_pages["touchpoint"].fillna(everyone).astype(str)
    worst_pages[["views", "sessions"]] = worst_pages[["views", "sessions"]].astype("int64")

    named = {"surveyed": "surveyed", "unsurveyed": "unsurveyed", "all": "all"}
    groups = surveyed_vs_all(result, frame, draws=draws, hdi_prob=hdi_prob).rename(
        columns={"sessions": "group", "hdi_low": "score_hdi_low", "hdi_high": "score_hdi_high"}
    )
    shares = dissatisfied_share(result, frame, draws=draws, hdi_prob=hdi_prob).rename(
        columns={
            "sessions": "group",
            "n_sessions": "sessions",
            **_SHARE_COLUMNS,
        }
    )
    versus = groups[groups["group"].isin(list(named))].merge(shares, on="group", how="left")
    versus["group"] = versus["group"].map(named)
    surveyed_vs = versus[
        ["group", "sessions", "score", "score_sd", "score_hdi_low", "score_hdi_high", "stated",
         "dissatisfied_share", "dissatisfied_share_sd", "dissatisfied_share_hdi_low",
         "dissatisfied_share_hdi_high"]
    ].copy()  # fmt: skip
    surveyed_vs["sessions"] = surveyed_vs["sessions"].astype("int64")

    tables = {
        "digital_scores": scores,
        "digital_signals": signals,
        "digital_worst_pages": worst_pages,
        "digital_surveyed_vs_all": surveyed_vs,
    }
    lo = result.data.scale_range[0]
    if validation is not None:
        deciles = validation.deciles
        tables["digital_calibration"] = pd.DataFrame(
            {
                "bin": deciles["decile"].astype("int64"),
                "sessions": deciles["n"].astype("int64"),
                "predicted": (deciles["predicted"] - lo) * to100,
                "stated": (deciles["stated"] - lo) * to100,
                "difference": deciles["difference"] * to100,
            }
        )
    labelled = {name: label_table(t, study=study, segment=segment) for name, t in tables.items()}
    selection = result.selection(frame, draws=draws, hdi_prob=hdi_prob)
    slope = selection[selection["quantity"] == "response_slope_per_sd"]
    summary = {
        "sessions": int(len(frame)),
        "surveyed": int(answered.sum()),
        "response_rate": float(answered.mean()) if len(frame) else float("nan"),
        "scale": {
            "min": float(result.data.scale_range[0]),
            "max": float(result.data.scale_range[1]),
        },
        "dissatisfied_at": float(result.dissatisfied_below()),
        "selection": (
            {
                "modelled": True,
                "coefficient": float(slope["mean"].iloc[0]),
                "hdi_low": float(slope["hdi_low"].iloc[0]),
                "hdi_high": float(slope["hdi_high"].iloc[0]),
                "p_positive": float(slope["p_positive"].iloc[0]),
                "meaning": (
                    "Answering the survey rises with satisfaction (the probit of answering "
                    "per SD of satisfaction is above 0 when it does): frustrated sessions "
                    "answer less often, so the survey alone overstates satisfaction, and the "
                    "unsurveyed sessions' scores allow for it."
                ),
            }
            if len(slope)
            else {
                "modelled": False,
                "meaning": "survey response taken as unrelated to satisfaction",
            }
        ),
        "elpd_holdout": float(validation.elpd) if validation is not None else None,
        "elpd_holdout_se": float(validation.elpd_se) if validation is not None else None,
        "holdout_sessions": int(validation.n_held_out) if validation is not None else 0,
        "period": {"start": str(frame["day"].min()), "end": str(frame["day"].max())},
        "min_cell_size": int(min_cell_size),
        "thresholds": dict(vars(thresholds)) if thresholds is not None else {},
    }
    return labelled, summary
