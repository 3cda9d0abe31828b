"""The taskiq-flow registry example runs unchanged but for its imports."""

import registry_discovery_example as ex
from conftest import run

EXPECTED_REPORT = {"report_id": "RPT-001", "summary": {"total": 7, "count": 2}}


def test_example_1_manual_registry(capsys):
    run(ex.example_manual_registry())
    out = capsys.readouterr().out
    assert "Tasks: ['load_data', 'clean_data', 'extract_features', 'generate_report']" in out
    assert "generate_report depends on: ['features']" in out
    assert "'features' produced by: extract_features" in out
    assert "'raw_data' consumed by: ['clean_data']" in out
    assert "External inputs: ['source']" in out
    assert "Pipeline outputs: ['raw_data', 'cleaned_data', 'features', 'report']" in out


def test_example_2_build_and_visualize(capsys, tmp_path):
    registry = run(ex.example_manual_registry())
    capsys.readouterr()
    run(ex.example_build_and_visualize(registry, tmp_path / "pipeline.dot"))
    out = capsys.readouterr().out
    assert "DAG: 4 nodes, 3 edges" in out
    assert "1. load_data\n2. clean_data\n3. extract_features\n4. generate_report" in out
    assert "Level 3: ['generate_report']" in out
    assert "[0] load_data (source) => raw_data" in out
    assert (tmp_path / "pipeline.dot").read_text().startswith("digraph")


def test_example_3_validation():
    message = run(ex.example_validation())
    assert message.startswith(
        "Task 'broken_task' requires input 'nonexistent_data' but no task produces it"
    )


def test_example_4_engine():
    results = run(ex.example_execution_with_engine())
    assert set(results) == {"raw_data", "cleaned_data", "features", "report"}
    assert results["report"] == EXPECTED_REPORT


def test_example_5_manual_loop_with_cache():
    assert run(ex.example_manual_execution_with_cache()) == EXPECTED_REPORT
