"""Runs sent to a real dask.distributed cluster (a LocalCluster reached over TCP)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cxlib.cli import cx
from cxlib.pipeline.errors import PipelineSpecError
from cxlib.pipeline.publish import read_pointer
from cxlib.pipeline.runner import run_pipeline

#: executes notebooks with papermill and real kernels (make check leaves them out)
pytestmark = pytest.mark.notebooks

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """A small in-process cluster on TCP: one worker, two threads (2-core machine)."""
    with distributed.LocalCluster(
        processes=False,
        n_workers=1,
        threads_per_worker=2,
        protocol="tcp",
        dashboard_address=None,
    ) as local:
        yield local


def test_runs_on_a_dask_cluster(cluster, make_spec, tmp_path):
    spec = make_spec(parameter_sets={"w1": {"wave": "01"}, "w2": {"wave": "02"}})
    result = CliRunner().invoke(
        cx, ["run", str(spec), "--executor", "dask", "--scheduler", cluster.scheduler_address]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("  published  ") == 2
    pointer = read_pointer(tmp_path / "runs" / "telecom")
    assert set(pointer["runs"]) == {"toy/w1", "toy/w2"}
    again = run_pipeline(spec, executor="dask", scheduler=cluster.scheduler_address, progress=False)
    assert again.counts() == {"skipped": 2}


def test_dask_executor_needs_a_scheduler_address(make_spec):
    with pytest.raises(PipelineSpecError, match="--scheduler tcp://HOST:8786"):
        run_pipeline(make_spec(), executor="dask", progress=False)
    result = CliRunner().invoke(
        cx, ["run", str(make_spec()), "--executor", "local", "--scheduler", "tcp://x:1"]
    )
    assert result.exit_code == 2 and "use it with --executor dask" in result.output
