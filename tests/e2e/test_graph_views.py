"""`taskiq-dataflow graph` on the 1,002-task example, as a user runs it: the console script in a
subprocess, its exit code, the diagram it prints (parsed, within Mermaid's limits) and a
bounded time."""

# ruff: noqa: RUF001  (the multiplication sign of the counts is what is drawn and asserted)

from __future__ import annotations

import pytest
from graph_syntax import parse_dot, parse_mermaid
from taskiq_dataflow.visualization.labels import mermaid_length

from .support import CLI, ROOT, Processes, run

pytestmark = pytest.mark.e2e

TARGET = "examples.wide_graph:registry"
COLLAPSED = {
    "in": {"seed", "weights"},
    "g": {
        "plan",
        "report",
        *(f"shard[*].{step} ×250" for step in ("fetch", "parse", "count", "score")),
    },
}


def graph(procs: Processes, *args: str) -> tuple[int, str, str, float]:
    # the package of this checkout (the venv's console script may have another one installed)
    env = procs.env(pythonpath=[ROOT / "python"])
    out = run(procs, [CLI, "graph", TARGET, *args], timeout=60, env=env)
    return out.code, out.stdout, out.stderr, out.seconds


def test_mermaid_of_a_1000_task_dag_is_within_mermaid_limits(procs):
    code, stdout, stderr, seconds = graph(procs, "-f", "mermaid")
    assert code == 0, stderr
    assert seconds < 30
    text = stdout.removesuffix("\n")
    drawn = parse_mermaid(text)
    assert len(drawn.edges) <= 500 and mermaid_length(text) <= 50_000
    assert set(drawn.labelled("in").values()) == COLLAPSED["in"]
    assert set(drawn.labelled("g").values()) == COLLAPSED["g"]
    labels = {n: label for n, (label, _) in drawn.nodes.items()}
    edges = {(labels[a], labels[b]): label for a, b, label in drawn.edges}
    assert edges[("plan", "shard[*].fetch ×250")] == "×250"
    assert edges[("weights", "shard[*].score ×250")] == "×250"
    assert edges[("shard[*].score ×250", "report")] == "×250"
    assert len(edges) == 7


def test_dot_of_a_1000_task_dag_is_a_few_nodes(procs):
    code, stdout, stderr, seconds = graph(procs, "-f", "dot", "--direction", "TB")
    assert code == 0, stderr
    assert seconds < 30
    drawn = parse_dot(stdout.removesuffix("\n"))
    assert "  rankdir=TB;" in stdout
    assert len(drawn.nodes) == 8 and len(drawn.edges) == 7
    assert {label for label, shape in drawn.nodes.values() if shape == "ellipse"} == {
        "seed",
        "weights",
    }


def test_a_small_mermaid_budget_gives_a_summary(procs):
    code, stdout, stderr, _ = graph(procs, "-f", "mermaid", "--max-edges", "3")
    assert code == 0, stderr
    drawn = parse_mermaid(stdout.removesuffix("\n"))
    assert len(drawn.edges) == 3
    assert drawn.nodes["more"][0].endswith("/ 4 edges not shown")


def test_an_option_of_another_format_is_one_error_line(procs):
    code, stdout, stderr, _ = graph(procs, "-f", "dot", "--max-edges", "3")
    assert code == 2 and not stdout
    assert stderr.splitlines() == [
        "taskiq-dataflow: error: --max-edges applies to --format mermaid, not dot"
    ]
