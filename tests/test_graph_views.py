"""Graph views that stay readable: DOT and Mermaid collapse a large DAG by task name, draw the
external inputs, and Mermaid never exceeds its edge and text limits. The diagrams are parsed
(`graph_syntax.py`), so the assertions are on the graph drawn: its nodes, edges and counts."""

# ruff: noqa: RUF001  (the multiplication sign of the counts is what is drawn and asserted)

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest
from graph_syntax import Drawn, parse_dot, parse_mermaid
from hypothesis import given, settings
from hypothesis import strategies as st
from taskiq_dataflow.dataflow.graph import DAG
from taskiq_dataflow.visualization import DAGVisualizer, MermaidGenerator
from taskiq_dataflow.visualization import collapse as collapse_module
from taskiq_dataflow.visualization.collapse import collapse
from taskiq_dataflow.visualization.labels import mermaid_length

STEPS = ("fetch", "parse", "score", "store")


def mapped(items: int) -> DAG:
    """`items` copies of fetch -> parse -> score -> store, each fetch reading its own external
    `items[i].url`, each score also reading `model`, which `train` makes from `config`."""
    names: list[str] = []
    inputs: list[tuple[str, ...]] = []
    outputs: list[tuple[str, ...]] = []
    for i in range(items):
        p = f"items[{i}]."
        names += [p + step for step in STEPS]
        inputs += [(p + "url",), (p + "page",), (p + "parsed", "model"), (p + "score",)]
        outputs += [(p + "page",), (p + "parsed",), (p + "score",), (p + "stored",)]
    names.append("train")
    inputs.append(("config",))
    outputs.append(("model",))
    n = len(names)
    return DAG.from_columns([None] * n, names, list(inputs), list(outputs), [None] * n)


def columns(names: list[str], inputs: list[tuple[str, ...]], outputs: list[tuple[str, ...]]) -> DAG:
    n = len(names)
    return DAG.from_columns([None] * n, names, list(inputs), list(outputs), [None] * n)


def within_limits(text: str, max_edges: int = 500, max_text_size: int = 50_000) -> Drawn:
    drawn = parse_mermaid(text)
    assert len(drawn.edges) <= max_edges
    assert mermaid_length(text) <= max_text_size
    return drawn


def by_label(drawn: Drawn) -> dict[tuple[str, str], str]:
    """(source label, target label) -> edge label."""
    label = {n: text for n, (text, _) in drawn.nodes.items()}
    return {(label[a], label[b]): text for a, b, text in drawn.edges}


# -- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("items", [250, 25_000])  # 1,001 and 100,001 tasks
def test_large_dags_give_small_views_within_mermaid_limits(items):
    dag = mapped(items)
    for text in (
        DAGVisualizer.to_mermaid(dag),
        MermaidGenerator(dag).to_mermaid(),
        MermaidGenerator(dag).to_mermaid_with_styling(),
    ):
        drawn = within_limits(text)
        assert len(drawn.nodes) == 7  # 5 names, 2 inputs
        edges = by_label(drawn)
        assert edges[(f"items[*].fetch ×{items}", f"items[*].parse ×{items}")] == f"×{items}"
        assert edges[(f"items[*].url ×{items}", f"items[*].fetch ×{items}")] == f"×{items}"
        assert edges[("train", f"items[*].score ×{items}")] == f"×{items}"
        assert edges[("config", "train")] == ""
    dot = parse_dot(DAGVisualizer.to_dot(dag))
    assert len(dot.nodes) == 7 and len(dot.edges) == 6
    assert {label for label, shape in dot.nodes.values() if shape == "ellipse"} == {
        f"items[*].url ×{items}",
        "config",
    }


def test_collapse_above_sets_where_views_collapse():
    dag = mapped(50)  # 201 tasks
    assert "n200" in parse_dot(DAGVisualizer.to_dot(dag, collapse_above=201)).nodes
    assert len(parse_dot(DAGVisualizer.to_dot(dag, collapse_above=200)).nodes) == 7
    # 0: never, however large
    full = parse_dot(DAGVisualizer.to_dot(mapped(300), collapse_above=0))
    assert len(full.nodes) == 1201 + 301 and len(full.edges) == 3 * 300 + 300 + 301
    # Mermaid too, while within its limits (200 task edges, 51 input edges)
    drawn = within_limits(DAGVisualizer.to_mermaid(dag, collapse_above=0))
    assert "n200" in drawn.nodes and len(drawn.edges) == 251


def test_mermaid_collapses_beyond_its_limits_even_when_told_not_to():
    # 60 tasks, 900 edges: a full view Mermaid would refuse
    names = ["p"] * 30 + ["c"] * 30
    inputs = [()] * 30 + [tuple(f"k{i}" for i in range(30))] * 30
    outputs = [(f"k{i}",) for i in range(30)] + [(f"out{i}",) for i in range(30)]
    dag = columns(names, inputs, outputs)
    for collapse_above in (0, 200):
        drawn = within_limits(DAGVisualizer.to_mermaid(dag, collapse_above=collapse_above))
        assert by_label(drawn) == {("p ×30", "c ×30"): "×900"}
    # DOT has no such limit: below collapse_above it draws every edge
    assert len(parse_dot(DAGVisualizer.to_dot(dag)).edges) == 900


def test_input_edges_count_towards_mermaids_edge_limit():
    # 300 tasks without a dependency between them, reading two external keys each
    names = [f"items[{i}].t" for i in range(300)]
    inputs = [(f"items[{i}].a", f"items[{i}].b") for i in range(300)]
    dag = columns(names, inputs, [(f"o{i}",) for i in range(300)])
    drawn = within_limits(DAGVisualizer.to_mermaid(dag, collapse_above=0))
    assert by_label(drawn) == {
        ("items[*].a ×300", "items[*].t ×300"): "×300",
        ("items[*].b ×300", "items[*].t ×300"): "×300",
    }


def test_an_empty_dag_has_empty_views():
    dag = columns([], [], [])
    assert parse_dot(DAGVisualizer.to_dot(dag)).nodes == {}
    assert parse_mermaid(DAGVisualizer.to_mermaid(dag)).nodes == {}
    assert collapse(dag) == ([], [], [], [], [], [])


# -- summaries ---------------------------------------------------------------------------------


def chain_of_distinct_names(n: int) -> DAG:
    names = [f"step_{i}" for i in range(n)]
    inputs = [()] + [(f"k{i - 1}",) for i in range(1, n)]
    return columns(names, inputs, [(f"k{i}",) for i in range(n)])


def note_counts(drawn: Drawn) -> tuple[int, int, int]:
    label, cls = drawn.nodes["more"]
    assert cls == "note"
    found = re.fullmatch(
        r"(\d+) more task names?(?:, (\d+) more inputs?)? / (\d+) edges? not shown", label
    )
    assert found, label
    return int(found[1]), int(found[2] or 0), int(found[3])


def test_a_collapsed_view_beyond_the_limits_is_summarised_with_a_note():
    dag = chain_of_distinct_names(2000)  # 2,000 names, 1,999 edges: no collapsing helps
    text = DAGVisualizer.to_mermaid(dag)
    drawn = within_limits(text)
    names, inputs, edges = note_counts(drawn)
    shown = [n for n in drawn.nodes if n.startswith("g")]
    assert names == 2000 - len(shown) and inputs == 0 and edges == 1999 - len(drawn.edges)
    assert len(shown) > 100  # as many as fit, not a token few
    assert mermaid_length(text) > 40_000


def test_a_summary_keeps_the_most_frequent_names_and_heaviest_edges():
    # 700 one-task names; two names of 300 tasks each with 300 edges between them; an input
    # read by 100 of those tasks
    names = [f"solo_{i}" for i in range(700)] + ["big"] * 300 + ["bigger"] * 300
    reads = [(f"b{i}", "cfg") if i < 100 else (f"b{i}",) for i in range(300)]
    inputs = [()] * 1000 + reads
    outputs = [(f"s{i}",) for i in range(700)] + [(f"b{i}",) for i in range(300)] + [()] * 300
    dag = columns(names, inputs, outputs)
    drawn = within_limits(DAGVisualizer.to_mermaid(dag, max_edges=1, max_text_size=2_000))
    assert by_label(drawn) == {("big ×300", "bigger ×300"): "×300"}  # the heaviest edge
    shown = drawn.labelled("g").values()
    assert {"big ×300", "bigger ×300"} <= set(shown)
    # ties of one task each are broken by the dependencies they take part in: cfg first
    assert list(drawn.labelled("in").values()) == ["cfg"]
    assert note_counts(drawn) == (702 - len(shown), 0, 1)


def test_limits_are_parameters():
    dag = mapped(250)  # collapsed: 7 nodes, 6 edges
    drawn = within_limits(DAGVisualizer.to_mermaid(dag, max_edges=4), max_edges=4)
    assert len(drawn.edges) == 4 and note_counts(drawn)[2] == 2
    small = DAGVisualizer.to_mermaid(dag, max_text_size=400)
    within_limits(small, max_text_size=400)
    assert "more" in parse_mermaid(small).nodes
    with pytest.raises(ValueError, match="max_text_size=20 is too small"):
        DAGVisualizer.to_mermaid(dag, max_text_size=20)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: DAGVisualizer.to_dot(d, collapse_above=-1), "collapse_above must be"),
        (lambda d: DAGVisualizer.to_mermaid(d, collapse_above=2.5), "collapse_above must be"),
        (lambda d: DAGVisualizer.to_mermaid(d, max_edges=0), "max_edges must be"),
        (lambda d: MermaidGenerator(d).to_mermaid(max_text_size=True), "max_text_size must be"),
        (lambda d: DAGVisualizer.to_dot(d, rankdir="UP"), "unknown DOT rankdir 'UP'"),
        (lambda d: DAGVisualizer.to_mermaid(d, "UP"), "unknown Mermaid orientation 'UP'"),
    ],
)
def test_bad_view_parameters_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(mapped(2))


# -- external inputs ---------------------------------------------------------------------------


def test_external_inputs_are_drawn_in_full_views():
    dag = columns(
        ["load", "clean", "report"],
        [("source",), ("raw", "rules"), ("clean", "rules")],
        [("raw",), ("clean",), ("report",)],
    )
    dot = parse_dot(DAGVisualizer.to_dot(dag))
    inputs = {n: label for n, (label, shape) in dot.nodes.items() if shape == "ellipse"}
    assert inputs == {"in0": "source", "in1": "rules"}
    assert {(a, b) for a, b, _ in dot.edges if a.startswith("in")} == {
        ("in0", "n0"),
        ("in1", "n1"),
        ("in1", "n2"),
    }
    for text in (DAGVisualizer.to_mermaid(dag), MermaidGenerator(dag).to_mermaid_with_styling()):
        drawn = parse_mermaid(text)
        assert {n: c for n, (_, c) in drawn.nodes.items() if n.startswith("in")} == {
            "in0": "input",
            "in1": "input",
        }
        assert ("in1", "n2", "") in drawn.edges and ("n0", "n1", "raw") in drawn.edges


# -- counts against a naive collapse ------------------------------------------------------------


def naive_collapse(
    dag: DAG,
) -> tuple[Counter[str], Counter[tuple[str, str]], Counter[str], Counter[tuple[str, str]]]:
    """Names, edges, inputs, input edges as label counts, one node at a time."""

    def strip(text: str) -> str:
        return re.sub(r"\[\d+\]", "[*]", text)

    names = [strip(n) for n in dag.task_names]
    producer = {k: i for i, keys in enumerate(dag.node_outputs) for k in keys}
    pairs = {
        (producer[k], b) for b, keys in enumerate(dag.node_inputs) for k in keys if k in producer
    }
    pairs |= set(dag.explicit_edges)
    external = {(k, b) for b, keys in enumerate(dag.node_inputs) for k in keys if k not in producer}
    return (
        Counter(names),
        Counter((names[a], names[b]) for a, b in pairs),
        Counter(strip(k) for k in {k for k, _ in external}),
        Counter((strip(k), names[b]) for k, b in external),
    )


def as_labels(
    dag: DAG,
) -> tuple[Counter[str], Counter[tuple[str, str]], Counter[str], Counter[tuple[str, str]]]:
    view = collapse(dag)
    return (
        Counter(dict(zip(view.names, view.counts, strict=True))),
        Counter({(view.names[a], view.names[b]): c for a, b, c in view.edges}),
        Counter(dict(zip(view.inputs, view.input_counts, strict=True))),
        Counter({(view.inputs[j], view.names[t]): c for j, t, c in view.input_edges}),
    )


@contextlib.contextmanager
def consumer_calls(limit: int) -> Iterator[None]:
    saved = collapse_module.CONSUMER_CALLS
    collapse_module.CONSUMER_CALLS = limit
    try:
        yield
    finally:
        collapse_module.CONSUMER_CALLS = saved


NAMES = st.sampled_from(["fetch", "parse", 'q"x', "a[1]b", "m[2]", "we\x00ird", "nl\n"])
PREFIXES = st.sampled_from(["", "items[0].", "items[7].", "items[12].inner[3].", "other[1]."])
EXTERNAL = st.sampled_from(["cfg", "items[0].url", "items[5].url", "seed", "x[1][2]"])


@st.composite
def dags(draw: st.DrawFn) -> DAG:
    n = draw(st.integers(0, 40))
    names, inputs, outputs = [], [], []
    for i in range(n):
        names.append(draw(PREFIXES) + draw(NAMES))
        earlier = [f"k{j}" for j in range(i)]
        keys = draw(st.lists(st.sampled_from(earlier) if earlier else EXTERNAL, max_size=4))
        keys += draw(st.lists(EXTERNAL, max_size=2))
        inputs.append(tuple(keys))  # duplicates included: a node may list a key twice
        outputs.append((f"k{i}",))
    dag = columns(names, inputs, outputs)
    for a, b in draw(st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=5)):
        if a < b < n:
            dag.add_edge(a, b)
    return dag


@pytest.mark.parametrize("calls", [0, 1_000])  # one pass over the inputs / a call per key
@settings(max_examples=150, deadline=None)
@given(dag=dags())
def test_collapsed_counts_match_a_naive_collapse(calls, dag):
    with consumer_calls(calls):
        assert as_labels(dag) == naive_collapse(dag)


def test_collapse_crosses_into_rust_a_bounded_number_of_times():
    """The Rust graph is asked for its edges once, its external inputs once, and consumers
    per key only up to CONSUMER_CALLS keys: nothing per task."""
    calls: Counter[str] = Counter()

    class Counting:
        def __init__(self, graph):
            self._graph = graph

        def __getattr__(self, name):
            calls[name] += 1
            return getattr(self._graph, name)

    class CountingDAG(DAG):
        @property
        def graph(self):
            return Counting(super().graph)

    base = mapped(2_000)  # 2,000 external keys of items, and config
    dag = CountingDAG.from_columns(
        list(base.tasks), list(base.task_names), list(base.node_inputs),
        list(base.node_outputs), list(base.node_metadata),
    )  # fmt: skip
    view = collapse(dag)
    assert view.counts == [2000, 2000, 2000, 2000, 1]
    assert calls == {"edges": 1, "unproduced_inputs": 1}


# -- escaping ----------------------------------------------------------------------------------

HOSTILE = [
    'quote"d',
    "new\nline",
    "<script>alert(1)</script>",
    "close]bracket",
    'end"]; n9["x',
    "pipe|d",
    "#quot;",
    "back\\slash",
    "`tick`",
    "semi; n0 --> n1",
    "%% comment",
    "nul\x00ctl\r\t",
    "lone\ud800surrogate",
    "{{curly}}",
    "x" * 5_000,
]


@pytest.mark.parametrize("collapse_above", [0, 1])
def test_hostile_names_and_keys_cannot_break_dot_or_mermaid(collapse_above):
    names = HOSTILE
    # keys go to Rust as UTF-8, which has no lone surrogates (names stay in Python)
    keys = [name.replace("\ud800", "?") for name in names]
    inputs = [(f"in:{key}",) for key in keys]
    outputs = [(f"out:{key}",) for key in keys]
    dag = columns(list(names), inputs, outputs)
    dot = DAGVisualizer.to_dot(dag, name='g"raph', collapse_above=collapse_above)
    dot.encode("utf-8")  # no lone surrogate
    drawn = parse_dot(dot)
    assert len([n for n, (_, shape) in drawn.nodes.items() if shape == "box"]) == len(names)
    assert len(drawn.edges) == len(names)  # each input to its one consumer
    labels = {label.split("\n")[0] for label, _ in drawn.nodes.values()}
    assert 'quote"d' in labels and "<script>alert(1)</script>" in labels and "back\\slash" in labels
    for text in (
        DAGVisualizer.to_mermaid(dag, collapse_above=collapse_above),
        MermaidGenerator(dag).to_mermaid_with_styling(collapse_above=collapse_above),
    ):
        text.encode("utf-8")
        drawn = within_limits(text)
        assert len(drawn.edges) == len(names)
        shown = {label for label, _ in drawn.nodes.values()}
        assert {'quote"d', "new line", "<script>alert(1)</script>", "#quot;", "pipe|d"} <= shown
        assert max(map(len, shown)) <= 100  # a 5,000-character name is cut


def test_edge_labels_with_markup_are_quoted():
    dag = columns(["a", "b"], [(), ("k|<x>",)], [("k|<x>",), ()])
    drawn = parse_mermaid(DAGVisualizer.to_mermaid(dag))
    assert drawn.edges == [("n0", "n1", "k|<x>")]


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
@pytest.mark.parametrize("collapse_above", [0, 1])
def test_graphviz_reads_the_dot(collapse_above):
    keys = [name.replace("\ud800", "?") for name in HOSTILE]
    dag = columns(list(HOSTILE), [(f"in:{k}",) for k in keys], [(f"o:{k}",) for k in keys])
    text = DAGVisualizer.to_dot(dag, collapse_above=collapse_above)
    proc = subprocess.run(
        ["dot", "-Tsvg"], input=text.encode(), capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
