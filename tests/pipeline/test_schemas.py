"""The published tables' declarations: one vocabulary, and every notebook's tables declared.

The research notebooks themselves run in ``test_notebooks.py``, where
:meth:`Artifacts.table` refuses an undeclared table or a column outside its
declaration; here the declarations are checked against the notebooks' sources and
the vocabulary, and the tables the model-free producers build are written through
the same check.
"""

from __future__ import annotations

import ast
import json

import numpy as np
import pandas as pd
import pytest

from cxlib import config
from cxlib.pipeline.artifacts import Artifacts
from cxlib.pipeline.schemas import (
    NOTEBOOK_TABLES,
    TABLES,
    TableSchemaError,
    published_table,
    validate_table,
)
from cxlib.stats import interval_columns

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _code(path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_every_research_notebook_declares_its_tables():
    assert set(NOTEBOOK_TABLES) == {p.stem for p in NOTEBOOKS}
    assert sum(len(t) for t in NOTEBOOK_TABLES.values()) == len(TABLES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_writes_only_its_declared_tables(path):
    """``out.table`` takes a declared name, or the names of a cxlib producer's tables."""
    calls = [
        node
        for node in ast.walk(ast.parse(_code(path)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "table"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "out"
    ]
    assert calls, f"{path.stem} publishes no table"
    for call in calls:
        name = call.args[0]
        if isinstance(name, ast.Constant):
            assert name.value in NOTEBOOK_TABLES[path.stem], name.value
        else:  # `for name, table in tables.items(): out.table(name, table)`
            assert isinstance(name, ast.Name) and name.id == "name", ast.unparse(call)


@pytest.mark.parametrize("table", list(TABLES.values()), ids=lambda t: t.name)
def test_declarations_follow_the_one_vocabulary(table):
    columns = list(table.columns)
    assert columns[:3] in (["study", "segment", "wave"], ["study", "segment_column", "segment"])
    for column in columns:
        if column.endswith(("_low", "_high")):  # an interval: hdi_low or <q>_hdi_low
            quantity = column.rsplit("hdi_", 1)[0].removesuffix("_") or None
            assert column in interval_columns(quantity), column
            assert (quantity or "mean") in columns, f"{column}: no estimate beside it"
        assert not column.endswith("_mean") or column == "customer_mean", column
    if "hdi_low" in columns:
        assert {"mean", "sd"} <= set(columns)


def test_the_model_free_producers_publish_their_declared_tables(tmp_path):
    from cxlib.data import load_responses
    from cxlib.insights.allocation import TouchpointGains, allocate_budget, read_cost_table
    from cxlib.insights.delivery_gap import delivery_gap, read_internal_assessment
    from cxlib.insights.journey import default_budget
    from cxlib.models.touchpoints.data import journey_map
    from cxlib.pipeline.tables import (
        data_quality_tables,
        driver_tables,
        label_table,
        study_overview,
    )
    from cxlib.study import load_study
    from tests.dashboard.sample import driver_model

    study = load_study(config.SAMPLE_STUDY)
    data = load_responses(study)
    written = {}
    quality = data_quality_tables(data, data.quality_report())
    overview, _ = study_overview(data, rules=list(study.alerts), model_dirs={})
    drivers = driver_tables(driver_model(study, n_draws=50), data)
    journey = journey_map(study)
    gains = TouchpointGains(
        list(journey["touchpoint"]),
        np.random.default_rng(1).normal(0.03, 0.01, (200, len(journey))),
        np.full(len(journey), 60.0),
    )
    costs = read_cost_table(study.source_path("touchpoint_costs"), gains.touchpoints)
    plan = allocate_budget(gains, costs, default_budget(costs, gains))
    gap = delivery_gap(
        data, journey, read_internal_assessment(study.source_path("internal_assessment"), journey)
    )
    journey_tables = {  # as journey_tables() labels them
        name: label_table(table, study=study.name)
        for name, table in {
            "touchpoint_costs": costs,
            "allocation_plan": plan.plan,
            "allocation_alternatives": plan.alternatives,
            "allocation_summary": pd.DataFrame([plan.summary]),
            "delivery_gap": gap.table,
            "delivery_gap_summary": pd.DataFrame([gap.summary]),
        }.items()
    }
    for notebook, tables in [
        ("01-data-quality", quality),
        ("00-study-overview", overview),
        ("04-drivers-and-what-if", drivers),
        ("05-touchpoints-and-journey", journey_tables),
    ]:
        out = Artifacts(tmp_path / notebook, notebook=notebook)
        for name, table in tables.items():
            out.table(name, table)
            back = pd.read_parquet(out.path / "tables" / f"{name}.parquet")
            assert set(back.columns) == set(TABLES[name].columns), name
            written[name] = back
    assert set(written) == set(NOTEBOOK_TABLES["01-data-quality"]) | set(
        NOTEBOOK_TABLES["00-study-overview"]
    ) | set(NOTEBOOK_TABLES["04-drivers-and-what-if"]) | set(journey_tables)
    everyone = config.EVERYONE
    kpis = written["kpis"]
    assert everyone in set(kpis["segment"]) and "All" not in set(kpis["segment"])
    assert set(written["driver_priorities"]["segment"]) >= {everyone, "Consumer"}
    assert set(written["data_quality_summary"][["segment", "wave"]].iloc[0]) == {everyone}


def test_dtype_problems_name_the_column_and_what_was_expected():
    table = published_table("data_quality_cells")
    good = pd.DataFrame(
        {
            "study": ["telecom"] * 2,
            "segment_column": ["segment"] * 2,
            "segment": ["Consumer", "Enterprise"],
            "wave": ["2026-Q1"] * 2,
            "n_respondents": np.array([12, 40], dtype="int32"),  # any integer dtype is fine
            "below_min_cell_size": np.array([True, False], dtype=object),
        }
    )
    fixed = table.validate(good)
    assert fixed["n_respondents"].dtype == "int64" and fixed["below_min_cell_size"].dtype == bool
    bad = good.assign(n_respondents=[12.5, 40.0], segment=["Consumer", None])
    with pytest.raises(TableSchemaError) as err:
        validate_table("data_quality_cells", bad, notebook="01-data-quality")
    message = str(err.value)
    assert "column 'n_respondents' holds float64; expected int" in message
    assert "column 'segment' has missing values (row 1); expected a value in every row" in message
    assert err.value.table == "data_quality_cells" and len(err.value.problems) == 2
    # a table no declaration knows, from a notebook no declaration knows: not checked
    assert validate_table("toy_values", bad, notebook="toy") is bad
