"""examples/dashboard_demo.py, the run the dashboard's browser tests and screenshots watch: its
shape (five tasks a shard, an aggregate per hundred shards, one report) and its one failure."""

import pytest
from conftest import run
from taskiq_dataflow import DataflowExecutionError, ExecutionEngine

from examples.dashboard_demo import build


def test_the_demo_has_its_shape_and_fails_one_score_skipping_what_needs_it():
    dag = build(250)
    names = list(dag.task_names)
    assert len(names) == 5 * 250 + 3 + 1
    assert sorted(set(names)) == [
        "aggregate", "features", "load", "parse", "report", "score", "validate",
    ]  # fmt: skip
    assert dag.external_inputs == ["source"]
    engine = ExecutionEngine(None, dag, fail_fast=False)
    with pytest.raises(DataflowExecutionError) as caught:
        run(engine.execute({"source": "test"}))
    error = caught.value
    assert [f.task_name for f in error.failures] == ["score"]
    assert "feature vector of shard 211 has NaN in column 'price'" in str(error.failures[0])
    assert sorted(error.skipped) == ["aggregate", "report"]
    assert len(error.results) == len(names) - 3  # all but the failed score, its group, the report
