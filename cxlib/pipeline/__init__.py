"""Pipelines: papermill runs of the research notebooks, quality gates, atomic publishing.

The pieces, one module each:

- :mod:`~cxlib.pipeline.spec` — pipeline specs (YAML), validated with pydantic;
- :mod:`~cxlib.pipeline.plan` — the runs a spec asks for, every input checked
  (studies, data, notebooks, declared parameters) before anything runs;
- :mod:`~cxlib.pipeline.runner` — :func:`run_pipeline`, the one function every
  caller (``cx run``, ``cx schedule``, tests, benchmarks) executes notebooks with;
- :mod:`~cxlib.pipeline.gates`, :mod:`~cxlib.pipeline.publish`,
  :mod:`~cxlib.pipeline.lock` — quality gates, the atomic published pointer, the
  per-study lock;
- :mod:`~cxlib.pipeline.retention` — which frozen data versions a study keeps
  (the rest are pruned after a publish);
- :mod:`~cxlib.pipeline.store` — the DuckDB results store;
- :mod:`~cxlib.pipeline.schedule` — ``cx schedule``: cron and data-change triggers;
- :mod:`~cxlib.pipeline.artifacts`, :mod:`~cxlib.pipeline.inputs`,
  :mod:`~cxlib.pipeline.tables` — what the notebooks call (the notebook kit);
- :mod:`~cxlib.pipeline.schemas` — the published tables, declared once and checked
  when a notebook writes them and when a dashboard reads them.

Importing this package is cheap; papermill, DuckDB and pandas load on first use.

>>> from cxlib.pipeline import run_pipeline
>>> result = run_pipeline("pipelines/demo.yaml", jobs=2)      # doctest: +SKIP
>>> print(result.summary_table())                             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "Artifacts",
    "PipelineResult",
    "PipelineSpec",
    "PipelineSpecError",
    "ResultsStore",
    "RunRecord",
    "RunTask",
    "Scheduler",
    "StudyBusyError",
    "StudyLock",
    "declared_parameters",
    "load_inputs",
    "load_pipeline",
    "pipeline_from_dict",
    "plan_runs",
    "published_runs",
    "run_pipeline",
]

_LAZY = {
    "Artifacts": "cxlib.pipeline.artifacts",
    "PipelineResult": "cxlib.pipeline.runner",
    "PipelineSpec": "cxlib.pipeline.spec",
    "PipelineSpecError": "cxlib.pipeline.errors",
    "ResultsStore": "cxlib.pipeline.store",
    "RunRecord": "cxlib.pipeline.runner",
    "RunTask": "cxlib.pipeline.plan",
    "Scheduler": "cxlib.pipeline.schedule",
    "StudyBusyError": "cxlib.pipeline.errors",
    "StudyLock": "cxlib.pipeline.lock",
    "declared_parameters": "cxlib.pipeline.params",
    "load_inputs": "cxlib.pipeline.inputs",
    "load_pipeline": "cxlib.pipeline.spec",
    "pipeline_from_dict": "cxlib.pipeline.spec",
    "plan_runs": "cxlib.pipeline.plan",
    "published_runs": "cxlib.pipeline.publish",
    "run_pipeline": "cxlib.pipeline.runner",
}

if TYPE_CHECKING:  # pragma: no cover
    from cxlib.pipeline.artifacts import Artifacts
    from cxlib.pipeline.errors import PipelineSpecError, StudyBusyError
    from cxlib.pipeline.inputs import load_inputs
    from cxlib.pipeline.lock import StudyLock
    from cxlib.pipeline.params import declared_parameters
    from cxlib.pipeline.plan import RunTask, plan_runs
    from cxlib.pipeline.publish import published_runs
    from cxlib.pipeline.runner import PipelineResult, RunRecord, run_pipeline
    from cxlib.pipeline.schedule import Scheduler
    from cxlib.pipeline.spec import PipelineSpec, load_pipeline, pipeline_from_dict
    from cxlib.pipeline.store import ResultsStore


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cxlib.pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
