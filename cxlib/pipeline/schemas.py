"""The published tables, declared once: each table a notebook writes, its columns and dtypes.

Every table the research notebooks publish (``tables/<name>.parquet``, loaded by the
results store and read by the dashboards) is declared here with the notebook that
writes it, its columns and their dtypes. :meth:`Artifacts.table
<cxlib.pipeline.artifacts.Artifacts.table>` validates a declared table when a notebook
writes it, and the dashboards read only declared columns, so a producer and its
readers cannot drift apart silently.

The vocabulary every declaration follows:

- ``study``, ``segment`` and ``wave`` lead every table; ``config.EVERYONE`` (``"all"``)
  labels every respondent (no segment, no wave filter).
- A row's own estimate is ``mean, sd, hdi_low, hdi_high``; a named quantity ``q``
  beside it is ``q, q_sd, q_hdi_low, q_hdi_high`` (:func:`cxlib.stats.interval_columns`,
  the keys :func:`cxlib.stats.summarize_draws` returns). Intervals are HDIs at
  ``config.HDI_PROB``.

A declared table must have exactly its declared columns (optional ones may be
absent), in any order; a notebook that the declarations know may publish only its
declared tables. Notebooks outside the declarations (a pipeline's own notebooks)
publish what they like.

>>> TABLES["kpis"].notebook
'00-study-overview'
>>> [c for c in TABLES["kpis"].columns if "change" in c]
['change', 'change_sd', 'change_hdi_low', 'change_hdi_high', 'p_change_negative']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from cxlib.errors import CxError, did_you_mean
from cxlib.stats import interval_columns

__all__ = [
    "DTYPES",
    "NOTEBOOK_TABLES",
    "TABLES",
    "PublishedTable",
    "TableSchemaError",
    "published_table",
    "validate_table",
]

#: The dtypes a declared column may have, as pandas names them.
DTYPES = {"str": "str", "float": "float64", "int": "int64", "bool": "bool"}
_STR, _FLOAT, _INT, _BOOL = "str", "float", "int", "bool"
#: The columns every published table starts with.
_LABELS = {"study": _STR, "segment": _STR, "wave": _STR}
#: Where the declarations live (for messages).
_HERE = "cxlib/pipeline/schemas.py"


class TableSchemaError(CxError):
    """A published table that breaks its declaration (or a notebook's undeclared table).

    Parameters
    ----------
    table : str
        The table's name.
    problems : list of str
        What is wrong, each naming the column and what was expected.
    notebook : str, optional
        The notebook that wrote (or read) it.
    headline : str, optional
        The message's first line (default: the table does not match its declaration,
        followed by the declared columns).
    """

    def __init__(
        self,
        table: str,
        problems: list[str],
        *,
        notebook: str | None = None,
        headline: str | None = None,
    ):
        self.table = table
        self.problems = list(dict.fromkeys(problems))
        self.notebook = notebook
        declared = TABLES.get(table)
        lines = [headline or "", *(f"  - {p}" for p in self.problems)]
        if headline is None:
            who = declared.notebook if declared else notebook
            lines[0] = (
                f"published table {table!r}{f' ({who})' if who else ''} does not match its "
                f"declaration in {_HERE}:"
            )
            if declared is not None:
                lines.append(f"Declared columns: {', '.join(declared.columns)}.")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class PublishedTable:
    """One published table: who writes it and what it holds.

    Attributes
    ----------
    name : str
        The table's name (``tables/<name>.parquet``, the store's table).
    notebook : str
        The research notebook that writes it.
    columns : mapping of str to str
        Column -> dtype (``str``, ``float``, ``int`` or ``bool``), in the order
        the producers write them.
    keys : tuple of str
        String columns that never hold a missing value (besides the labels).
    optional : tuple of str
        Declared columns a table may lack (e.g. ``group`` of a grouped fit).
    description : str
        One line on what a row is.
    """

    name: str
    notebook: str
    columns: Mapping[str, str]
    keys: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    description: str = ""

    @cached_property
    def schema(self):
        """The pandera schema of the table (strict: no undeclared column)."""
        import pandera.pandas as pa

        spec = {}
        for column, dtype in self.columns.items():
            key = column in _LABELS or column in self.keys
            spec[column] = pa.Column(
                DTYPES[dtype],
                nullable=dtype == _FLOAT or (dtype == _STR and not key),
                required=column not in self.optional,
                coerce=dtype == _FLOAT,
            )
        return pa.DataFrameSchema(spec, name=self.name, strict=True, ordered=False)

    def validate(self, frame, *, notebook: str | None = None):
        """The frame, checked against the declaration (floats coerced to ``float64``).

        Parameters
        ----------
        frame : pandas.DataFrame
            The table (columns named as strings, a plain index).
        notebook : str, optional
            Who wrote or reads it, for the message.

        Returns
        -------
        pandas.DataFrame
            The frame with lossless dtype fixes (any integer dtype to ``int64``, a
            column of booleans to ``bool``, floats to ``float64``).

        Raises
        ------
        TableSchemaError
            Naming each column at fault and what was expected.
        """
        import pandera.errors

        frame = self._conform(frame)
        try:
            return self.schema.validate(frame, lazy=True)
        except pandera.errors.SchemaErrors as exc:
            raise TableSchemaError(
                self.name, self._problems(exc.failure_cases), notebook=notebook
            ) from None

    def _conform(self, frame):
        """Lossless dtype fixes pandera's checks would otherwise refuse."""
        import pandas as pd

        fixed = {}
        for column, dtype in self.columns.items():
            if column not in frame.columns:
                continue
            values = frame[column]
            if dtype == _INT and values.dtype != "int64":
                if len(values) == 0 or (
                    pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any()
                ):
                    fixed[column] = values.astype("int64")
            elif dtype == _BOOL and values.dtype != "bool":
                if len(values) == 0 or _all_bools(values):
                    fixed[column] = values.astype("bool")
            elif dtype == _STR and len(values) == 0 and values.dtype != object:
                fixed[column] = values.astype(object)
        return frame.assign(**fixed) if fixed else frame

    def _problems(self, failures) -> list[str]:
        out = []
        declared = list(self.columns)
        for (column, check), group in failures.groupby(
            [failures["column"].fillna(""), failures["check"].astype(str)], sort=False
        ):
            cases = group["failure_case"].tolist()
            rows = list(dict.fromkeys(int(i) for i in group["index"].dropna()))
            at = _rows(rows)
            if check == "column_in_schema":
                for name in cases:
                    out.append(
                        f"column {name!r} is not declared"
                        + did_you_mean(name, declared, parens=True)
                    )
            elif check == "column_in_dataframe":
                for name in cases:
                    out.append(f"column {name!r} is missing (expected {self.columns[name]})")
            elif check == "not_nullable":
                out.append(
                    f"column {column!r} has missing values{at}; expected a value in every row"
                )
            elif check.startswith(("dtype(", "coerce_dtype(")):
                want = self.columns.get(column, "?")
                found = cases[0] if not rows else f"{cases[0]!r}{at}"
                out.append(f"column {column!r} holds {found}; expected {want}")
            else:
                out.append(f"column {column!r} fails the check {check}{at}")
        return out


def _rows(rows: list[int]) -> str:
    """`` (row 3)``, `` (rows 0, 4, 9, ...)`` or ``""``."""
    if not rows:
        return ""
    shown = ", ".join(map(str, rows[:3])) + (", ..." if len(rows) > 3 else "")
    return f" (row{'s' if len(rows) > 1 else ''} {shown})"


def _all_bools(values) -> bool:
    """Whether a non-bool column holds only booleans (object or nullable ``boolean``)."""
    if str(values.dtype) == "boolean":
        return not values.isna().any()
    import numpy as np

    return values.dtype == object and all(isinstance(v, bool | np.bool_) for v in values)


def _estimate(quantity: str | None = None, *, sd: bool = True) -> dict[str, str]:
    """The columns of one estimate: mean (or ``q``), sd (``q_sd``) and HDI."""
    low, high = interval_columns(quantity)
    columns = {quantity or "mean": _FLOAT}
    if sd:
        columns[f"{quantity}_sd" if quantity else "sd"] = _FLOAT
    return {**columns, low: _FLOAT, high: _FLOAT}


def _table(name: str, notebook: str, description: str, columns: dict[str, str], **kw):
    return PublishedTable(name, notebook, {**_LABELS, **columns}, description=description, **kw)


def _floats(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, _FLOAT)


def _strs(*names: str) -> dict[str, str]:
    return dict.fromkeys(names, _STR)


_SEM_ESTIMATE = {
    **_strs("lhs", "op", "rhs", "label"),
    **_estimate(),
    **_floats("r_hat", "ess_bulk"),
}
_SEM_GROUP = {"group": _STR}

_DECLARED = [
    # ------------------------------------------------------------ 00-study-overview
    _table(
        "kpis",
        "00-study-overview",
        "one KPI in one segment and wave, with the change since the wave before",
        {
            **_strs("kpi", "label"),
            "n": _INT,
            "n_eff": _FLOAT,
            **_estimate(),
            **_estimate("change"),
            "p_change_negative": _FLOAT,
            "small_cell": _BOOL,
        },
        keys=("kpi",),
    ),
    _table(
        "alerts",
        "00-study-overview",
        "one alert rule evaluated in one cell (fired or not)",
        {
            **_strs("rule_name", "rule", "kind", "subject"),
            **_floats("probability", "threshold"),
            "fired": _BOOL,
            "small_cell": _BOOL,
            "message": _STR,
            # "evaluated", or "not_applicable" (e.g. an NPS rule on a study without NPS)
            **_strs("status", "reason"),
        },
        keys=("rule_name",),
    ),
    _table(
        "segment_differences",
        "00-study-overview",
        "one KPI in one wave: the difference between two segments",
        {
            **_strs("kpi", "label", "segment_a", "segment_b"),
            "n_a": _INT,
            "n_b": _INT,
            **_estimate("difference"),
            "p_a_greater": _FLOAT,
            "small_cell": _BOOL,
        },
        keys=("kpi", "segment_a", "segment_b"),
    ),
    # ------------------------------------------------------------ 01-data-quality
    _table(
        "data_quality_summary",
        "01-data-quality",
        "the data-quality report in one row",
        {
            "data_hash": _STR,
            "n_respondents": _INT,
            "n_items": _INT,
            **_floats("missing_share", "complete_share", "over_half_missing_share"),
            "straightliners": _INT,
            "straightliner_share": _FLOAT,
            "floor_ceiling_items": _INT,
            "small_cells": _INT,
            # rows of the file left out on load (Qualtrics), in all and per reason
            **dict.fromkeys(
                ("excluded_rows", "excluded_preview", "excluded_test", "excluded_unfinished"),
                _INT,
            ),
            # cells a "no answer" text ("NA", "#N/A", "null" ...) turned missing
            "missing_text_cells": _INT,
        },
    ),
    _table(
        "data_quality_items",
        "01-data-quality",
        "one item: missing answers and floor and ceiling shares",
        {
            **_strs("item", "construct", "scale"),
            "missing": _FLOAT,
            "missing_text_cells": _INT,
            **_floats("floor", "ceiling"),
            "flag": _STR,
        },
        keys=("item",),
    ),
    _table(
        "data_quality_missing_texts",
        "01-data-quality",
        'one column and one text read as missing ("NA", "#N/A", "null" ...): how many cells',
        {**_strs("column", "text"), "cells": _INT},
        keys=("column", "text"),
    ),
    PublishedTable(
        "data_quality_cells",
        "01-data-quality",
        {
            "study": _STR,
            "segment_column": _STR,
            "segment": _STR,
            "wave": _STR,
            "n_respondents": _INT,
            "below_min_cell_size": _BOOL,
        },
        keys=("segment_column",),
        description="respondents in one segment x wave cell",
    ),
    # ------------------------------------------------------------ 02-experience-brand-loyalty
    _table(
        "sem_estimates",
        "02-experience-brand-loyalty",
        "one parameter (lavaan's parameter table)",
        {**_SEM_ESTIMATE, **_SEM_GROUP},
        keys=("lhs", "op", "rhs"),
        optional=("group",),
    ),
    _table(
        "sem_estimates_standardized",
        "02-experience-brand-loyalty",
        "one standardized parameter (std.all)",
        {**_SEM_ESTIMATE, **_SEM_GROUP},
        keys=("lhs", "op", "rhs"),
        optional=("group",),
    ),
    _table(
        "sem_effects",
        "02-experience-brand-loyalty",
        "one direct, indirect or total effect between two constructs",
        {
            **_strs("from", "to", "effect", "path"),
            **_estimate(),
            "p_positive": _FLOAT,
            **_SEM_GROUP,
            # why a row has no estimate (e.g. a proportion mediated whose total spans 0)
            "note": _STR,
        },
        keys=("from", "to", "effect"),
        optional=("group", "note"),
    ),
    _table(
        "sem_r2",
        "02-experience-brand-loyalty",
        "the explained variance of one latent or item",
        {**_strs("variable", "kind"), **_estimate(), **_SEM_GROUP},
        keys=("variable", "kind"),
        optional=("group",),
    ),
    _table(
        "sem_reliability",
        "02-experience-brand-loyalty",
        "one construct: alpha (raw and standardized), rho_A, omega and AVE",
        {
            "construct": _STR,
            "items": _INT,
            "alpha": _FLOAT,
            "alpha_standardized": _FLOAT,
            **_estimate("rho_a", sd=False),
            **_estimate("omega", sd=False),
            **_estimate("ave", sd=False),
        },
        keys=("construct",),
    ),
    _table(
        "sem_htmt",
        "02-experience-brand-loyalty",
        "one pair of constructs: HTMT from the data and its posterior (discriminant validity)",
        {
            "construct": _STR,
            "versus": _STR,
            "htmt_data": _FLOAT,
            **_estimate("htmt", sd=False),
            "p_above_0_9": _FLOAT,
        },
        keys=("construct", "versus"),
    ),
    _table(
        "sem_composites",
        "02-experience-brand-loyalty",
        "one indicator of a composite (F <~ x1 + x2): weights, implied loading, VIF "
        "(none without composites)",
        {
            **_strs("composite", "indicator"),
            **_estimate("weight", sd=False),
            **_estimate("weight_std", sd=False),
            **_estimate("loading", sd=False),
            **_floats("vif", "p_positive"),
            "note": _STR,
            **_SEM_GROUP,
        },
        keys=("composite", "indicator"),
        optional=("group",),
    ),
    _table(
        "sem_fit",
        "02-experience-brand-loyalty",
        "one fit measure",
        {"measure": _STR, "value": _FLOAT},
        keys=("measure",),
    ),
    _table(
        "sem_warnings",
        "02-experience-brand-loyalty",
        "one sign of an improper solution (none when the solution is proper)",
        {
            **_strs("kind", "constructs"),
            "value": _FLOAT,
            **_strs("message", "advice"),
        },
        keys=("kind", "constructs"),
    ),
    # ------------------------------------------------------------ 03-technical-vs-emotional
    _table(
        "expectations_dimension_weights",
        "03-technical-vs-emotional",
        "one segment: the weights of the technical and emotional gaps",
        {
            **_estimate("technical"),
            **_estimate("emotional"),
            **_estimate("emotional_minus_technical"),
            "p_emotional_greater": _FLOAT,
            "n_respondents": _INT,
            "small_segment": _BOOL,
        },
    ),
    _table(
        "expectations_emotional_share",
        "03-technical-vs-emotional",
        "one segment: the emotional share of the explained outcome",
        {
            **_estimate("emotional_share"),
            "p_emotional_majority": _FLOAT,
            **_estimate("explained_share"),
            "small_segment": _BOOL,
        },
    ),
    _table(
        "expectations_penalty_reward",
        "03-technical-vs-emotional",
        "one attribute in one segment: penalty, reward and Kano class",
        {
            **_strs("attribute", "label", "dimension", "reference"),
            **_estimate("penalty"),
            **_estimate("reward"),
            **_estimate("asymmetry"),
            "p_penalty_greater": _FLOAT,
            "kano_class": _STR,
            **_floats("kano_probability", "p_must_be", "p_attractive", "p_performance"),
            "p_indifferent": _FLOAT,
            "penalty_identified": _BOOL,
            "reward_identified": _BOOL,
            "small_segment": _BOOL,
        },
        keys=("attribute",),
    ),
    _table(
        "expectations_gap_closing",
        "03-technical-vs-emotional",
        "one attribute in one segment: what closing its gap would buy",
        {
            **_strs("attribute", "label", "dimension"),
            **_estimate("outcome_change"),
            **_estimate("top2_change"),
            **_floats("share_short", "mean_shortfall"),
            "small_segment": _BOOL,
        },
        keys=("attribute",),
    ),
    _table(
        "expectations_gaps",
        "03-technical-vs-emotional",
        "one attribute in one segment: expectation, perception and their gap",
        {
            **_strs("attribute", "label", "dimension", "reference"),
            "n_respondents": _INT,
            **_estimate("mean_expectation", sd=False),
            **_estimate("mean_perception", sd=False),
            **_estimate("mean_gap", sd=False),
            **_floats("share_shortfall", "share_surplus", "share_at_ceiling"),
            **dict.fromkeys(
                ("n_gap_answered", "n_reference_imputed", "n_perception_missing"), _INT
            ),
            "small_segment": _BOOL,
        },
        keys=("attribute",),
    ),
    # ------------------------------------------------------------ 04-drivers-and-what-if
    _table(
        "driver_priorities",
        "04-drivers-and-what-if",
        "one driver (construct or item) in one segment and wave: importance and performance",
        {
            **_strs("driver", "construct", "level", "target"),
            "n": _INT,
            "weight": _FLOAT,
            **_estimate("importance"),
            **_estimate("performance"),
            **_floats("p_fix_first", "p_keep_up", "p_possible_overkill", "p_low_priority"),
            "quadrant": _STR,
            "small_cell": _BOOL,
            "model_converged": _BOOL,
            "model_improper": _STR,
        },
        keys=("driver", "level"),
        optional=("target", "weight", "model_converged", "model_improper"),
    ),
    _table(
        "what_if_examples",
        "04-drivers-and-what-if",
        "one driver raised in one segment: the change of one outcome",
        {
            "driver": _STR,
            "shift": _FLOAT,
            **_strs("outcome", "label"),
            **_estimate("change"),
            "p_increase": _FLOAT,
            "model_converged": _BOOL,
            "model_improper": _STR,
        },
        keys=("driver", "outcome"),
        optional=("model_converged", "model_improper"),
    ),
    # ------------------------------------------------------------ 05-touchpoints-and-journey
    _table(
        "touchpoint_effects",
        "05-touchpoints-and-journey",
        "one touchpoint: performance and effect on the outcome and the target",
        {
            **_strs("touchpoint", "item", "label", "channel", "stage"),
            "n_answered": _INT,
            "share_used": _FLOAT,
            **_estimate("performance", sd=False),
            **_estimate("effect_on_outcome"),
            **_estimate("effect_on_target"),
            "p_effective": _FLOAT,
            "rank": _INT,
            "not_used_shift": _FLOAT,
            "sparse": _BOOL,
            **_strs("outcome", "target"),
            # web and app touchpoints: the satisfaction 06-digital-experience predicts for
            # their sessions (0-100), beside the survey-based performance
            **_floats(
                "behaviour_performance",
                "behaviour_performance_hdi_low",
                "behaviour_performance_hdi_high",
            ),
            "behaviour_sessions": _INT,
        },
        keys=("touchpoint",),
        optional=(
            "behaviour_performance",
            "behaviour_performance_hdi_low",
            "behaviour_performance_hdi_high",
            "behaviour_sessions",
        ),
    ),
    _table(
        "journey_matrix",
        "05-touchpoints-and-journey",
        "one stage x channel cell of the journey",
        {
            **_strs("stage", "channel", "touchpoints"),
            "n_touchpoints": _INT,
            "has_touchpoints": _BOOL,
            **_estimate("performance"),
            **_estimate("effect_on_target"),
            "p_effective": _FLOAT,
            "target": _STR,
        },
        keys=("stage", "channel"),
    ),
    _table(
        "touchpoint_costs",
        "05-touchpoints-and-journey",
        "one touchpoint: cost per performance point and its cap",
        {"touchpoint": _STR, **_floats("cost_per_point", "max_improvement")},
        keys=("touchpoint",),
    ),
    _table(
        "allocation_plan",
        "05-touchpoints-and-journey",
        "one touchpoint the budget's best plan improves",
        {
            **_strs("touchpoint", "label", "channel", "stage"),
            **_floats("performance", "points", "new_performance", "cost"),
            **_estimate("gain"),
            **_floats("gain_per_point", "cost_per_point"),
        },
        keys=("touchpoint",),
    ),
    _table(
        "allocation_alternatives",
        "05-touchpoints-and-journey",
        "one runner-up plan",
        {
            "rank": _INT,
            **_strs("plan", "points"),
            "spent": _FLOAT,
            **_estimate("gain"),
            **_floats("gain_quantile", "p_plan_better"),
        },
        keys=("plan",),
    ),
    _table(
        "allocation_summary",
        "05-touchpoints-and-journey",
        "the budget's best plan in one row",
        {
            "target": _STR,
            **_floats("budget", "spent"),
            "objective": _STR,
            **_floats("quantile", "step"),
            **_estimate("gain"),
            **_floats("gain_quantile", "p_gain_positive"),
        },
        keys=("objective",),
    ),
    _table(
        "delivery_gap",
        "05-touchpoints-and-journey",
        "one assessed touchpoint: the company's rating against its customers'",
        {
            **_strs("touchpoint", "label", "channel", "stage"),
            **_floats("scale_min", "scale_max", "internal_rating"),
            "n_raters": _INT,
            **_estimate("customer_mean", sd=False),
            "n_customers": _INT,
            **_estimate("gap"),
            **_floats("p_company_overrates", "gap_points"),
        },
        keys=("touchpoint",),
    ),
    _table(
        "delivery_gap_summary",
        "05-touchpoints-and-journey",
        "the share of touchpoints the company overrates, in one row",
        {
            "n_touchpoints": _INT,
            **_estimate("share_overrated"),
            **_floats("share_clearly_overrated", "internal_top2_share", "customer_top2_share"),
        },
    ),
]

_DECLARED += [
    # ------------------------------------------------------------ 06-digital-experience
    # Scores are the satisfaction the calibrated model predicts for every session (0-100 of
    # the feedback scale), unsurveyed sessions conditioned on not having answered.
    _table(
        "digital_scores",
        "06-digital-experience",
        "the digital experience score of all sessions, a touchpoint, a day or a page",
        {
            # level: "all", "touchpoint", "day", "touchpoint_day" or "page"; the other
            # keys are "all" where the level does not split by them
            **_strs("level", "touchpoint", "day", "page"),
            **{"sessions": _INT, "surveyed": _INT},
            **_estimate("score"),
            **_estimate("dissatisfied_share"),
            "few_sessions": _BOOL,
        },
        keys=("level", "touchpoint", "day", "page"),
    ),
    _table(
        "digital_signals",
        "06-digital-experience",
        "one behaviour signal: what one SD more of it costs in satisfaction points",
        {
            **_strs("signal", "label", "unit", "definition"),
            **_estimate("effect"),
            "p_largest_cost": _FLOAT,
            **_floats("per_session", "per_surveyed_session"),
        },
        keys=("signal",),
    ),
    _table(
        "digital_worst_pages",
        "06-digital-experience",
        "one page ranked by one signal's rate per view",
        {
            **_strs("signal", "page", "touchpoint"),
            **{"views": _INT, "sessions": _INT},
            "rate": _FLOAT,
            "rank": _INT,
        },
        keys=("signal", "page"),
    ),
    _table(
        "digital_surveyed_vs_all",
        "06-digital-experience",
        "surveyed, unsurveyed and all sessions: predicted (and stated) satisfaction",
        {
            "group": _STR,
            "sessions": _INT,
            **_estimate("score"),
            "stated": _FLOAT,
            **_estimate("dissatisfied_share"),
        },
        keys=("group",),
    ),
    _table(
        "digital_alerts",
        "06-digital-experience",
        "one alert rule on a digital metric evaluated for all sessions or one touchpoint",
        {
            **_strs("rule_name", "rule", "kind", "subject"),
            **_floats("probability", "threshold"),
            "fired": _BOOL,
            "small_cell": _BOOL,
            "message": _STR,
            **_strs("status", "reason"),
        },
        keys=("rule_name", "subject"),
    ),
    _table(
        "digital_calibration",
        "06-digital-experience",
        "held-out surveyed sessions binned by predicted satisfaction: predicted against stated",
        # 0-100 of the feedback scale; difference = predicted - stated
        {"bin": _INT, "sessions": _INT, **_floats("predicted", "stated", "difference")},
        keys=("bin",),
    ),
]

#: Every published table, by name.
TABLES: dict[str, PublishedTable] = {t.name: t for t in _DECLARED}
#: Notebook -> the tables it publishes, in declaration order.
NOTEBOOK_TABLES: dict[str, tuple[str, ...]] = {}
for _t in _DECLARED:
    NOTEBOOK_TABLES[_t.notebook] = (*NOTEBOOK_TABLES.get(_t.notebook, ()), _t.name)
del _t


def published_table(name: str) -> PublishedTable | None:
    """The declaration of a published table, or None for an undeclared name."""
    return TABLES.get(name)


def validate_table(name: str, frame, *, notebook: str | None = None):
    """Check a table a notebook writes (or a dashboard reads) against its declaration.

    Parameters
    ----------
    name : str
        The table's name.
    frame : pandas.DataFrame
        The table.
    notebook : str, optional
        The notebook writing it: a declared notebook may write only its declared
        tables; another notebook's undeclared tables pass unchecked.

    Returns
    -------
    pandas.DataFrame
        The frame, with lossless dtype fixes (see :meth:`PublishedTable.validate`).

    Raises
    ------
    TableSchemaError
        When the table breaks its declaration, or a declared notebook writes a
        table that is not among its declared ones.
    """
    declared = TABLES.get(name)
    if notebook in NOTEBOOK_TABLES and (declared is None or declared.notebook != notebook):
        mine = NOTEBOOK_TABLES[notebook]
        why = (
            f"it is declared for {declared.notebook}"
            if declared
            else "it is not declared" + did_you_mean(name, mine, parens=True)
        )
        raise TableSchemaError(
            name,
            [f"{notebook} publishes {', '.join(mine)}; declare a new table in {_HERE}"],
            notebook=notebook,
            headline=f"notebook {notebook} cannot publish the table {name!r}: {why}:",
        )
    if declared is None:
        return frame
    return declared.validate(frame, notebook=notebook)
