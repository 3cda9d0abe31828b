"""Structural checkers of the DOT and Mermaid text the visualizer writes: every line is a
statement of a known form, every quoted string is closed and holds no character that would end
it early, and every edge joins declared nodes. They return what they parsed so that tests can
assert on the graph drawn, not on substrings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DOT_STRING = r'"(?:[^"\\\n]|\\.)*"'
_DOT_ATTRS = rf"\[(?:\w+=(?:{_DOT_STRING}|[\w.#]+)(?:, )?)+\]"
_DOT_NODE = re.compile(rf"^  (?P<id>\w+) (?P<attrs>{_DOT_ATTRS});$")
_DOT_EDGE = re.compile(rf"^  (?P<a>\w+) -> (?P<b>\w+)(?: (?P<attrs>{_DOT_ATTRS}))?;$")
_DOT_SETTING = re.compile(rf"^  (?:rankdir=(TB|LR|BT|RL)|labelloc=t|label={_DOT_STRING});$")
_DOT_LABEL = re.compile(rf"label=(?P<label>{_DOT_STRING})")

# a Mermaid label: quoted, with no quote inside, nor anything Mermaid would read as markup
_MM_STRING = r'"[^"<>&`|\n\r]*"'
_MM_NODE = re.compile(
    rf"^\s+(?P<id>\w+)(?P<shape>\[{_MM_STRING}\]|\(\[{_MM_STRING}\]\)|\{{\{{{_MM_STRING}\}}\}})"
    r"(?::::(?P<cls>\w+))?$"
)
_MM_EDGE = re.compile(
    rf"^\s+(?P<a>\w+) (?P<arrow>-->|-\.->)(?:\|(?P<label>[\w ,.:\-\u00d7]+|{_MM_STRING})\|)? "
    r"(?P<b>\w+)$"
)
_MM_OTHER = re.compile(r"^\s+(?:classDef \w+ [^\n]+;|%% [^\n]*)$")


@dataclass
class Drawn:
    """A parsed diagram: node id -> (label, shape or class), edges with their labels."""

    nodes: dict[str, tuple[str, str]] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)

    def labelled(self, prefix: str) -> dict[str, str]:
        return {n: label for n, (label, _) in self.nodes.items() if n.startswith(prefix)}


def parse_dot(text: str) -> Drawn:
    lines = text.split("\n")
    assert re.fullmatch(rf"digraph {_DOT_STRING} \{{", lines[0]), lines[0]
    assert lines[1].startswith("  rankdir=") and lines[2] == "  node [shape=box];", lines[:3]
    assert lines[-1] == "}", lines[-1]
    drawn = Drawn()
    for line in lines[3:-1]:
        if node := _DOT_NODE.match(line):
            label = _DOT_LABEL.search(node["attrs"])
            assert label, line
            assert node["id"] not in drawn.nodes, f"node declared twice: {line}"
            shape = "ellipse" if "shape=ellipse" in node["attrs"] else "box"
            drawn.nodes[node["id"]] = (_undot(label["label"]), shape)
        elif edge := _DOT_EDGE.match(line):
            label = _DOT_LABEL.search(edge["attrs"] or "")
            drawn.edges.append((edge["a"], edge["b"], _undot(label["label"]) if label else ""))
        else:
            assert _DOT_SETTING.match(line), f"not a DOT statement of the visualizer: {line!r}"
    _edges_join_nodes(drawn)
    return drawn


def parse_mermaid(text: str) -> Drawn:
    lines = text.split("\n")
    assert re.fullmatch(r"(graph|flowchart) (TD|LR|BT|RL)", lines[0]), lines[0]
    drawn = Drawn()
    for line in lines[1:]:
        if node := _MM_NODE.match(line):
            assert node["id"] not in drawn.nodes, f"node declared twice: {line}"
            shape = node["shape"]
            kind = {"[": "box", "(": "stadium", "{": "hexagon"}[shape[0]]
            label = shape[shape.index('"') + 1 : shape.rindex('"')]
            drawn.nodes[node["id"]] = (_unmermaid(label), node["cls"] or kind)
        elif edge := _MM_EDGE.match(line):
            label = _unmermaid((edge["label"] or "").strip('"'))
            drawn.edges.append((edge["a"], edge["b"], label))
        else:
            assert _MM_OTHER.match(line), f"not a Mermaid statement of the visualizer: {line!r}"
    _edges_join_nodes(drawn)
    return drawn


def _edges_join_nodes(drawn: Drawn) -> None:
    undeclared = [(a, b) for a, b, _ in drawn.edges if a not in drawn.nodes or b not in drawn.nodes]
    assert not undeclared, f"edges between undeclared nodes: {undeclared[:5]}"


def _undot(quoted: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], quoted[1:-1])


def _unmermaid(text: str) -> str:
    names = {"quot": '"', "lt": "<", "gt": ">", "amp": "&"}
    return re.sub(r"#(\w+);", lambda m: chr(int(m[1])) if m[1].isdigit() else names[m[1]], text)
