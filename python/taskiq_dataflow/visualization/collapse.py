"""A DAG collapsed by task name, for views of large DAGs: one node per name with the number of
tasks it stands for, one edge per pair of names with the number of task-level edges it stands
for, and the external inputs (keys no task produces) grouped the same way.

A name's indices are dropped before grouping: a map's items `items[3].fetch`, `items[4].fetch`
are all `items[*].fetch`, and so are their keys (`items[3].url` is `items[*].url`).

It is built from the DAG's columns and the Rust graph's edge list (one call across the
boundary), with loops that run in C (str.join, one regex over the joined names, dict.fromkeys,
map, Counter) rather than a Python statement per node: a million-node DAG collapses in well
under a second."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from itertools import accumulate, chain, compress, count, repeat
from operator import add, mul
from typing import NamedTuple

from ..dataflow.graph import DAG

INDEX = re.compile(r"\[\d+\]")
INDEX_MARK = "[*]"
_SEPARATOR = "\x00"

# External keys up to this many are looked up one call each (`Graph.consumers`, which answers
# from a table Rust builds once); beyond it, one pass over the input column matches them all,
# so a map with a key of its own per item costs no call per item.
CONSUMER_CALLS = 64

# Views of DAGs with more tasks than this show them by name unless told otherwise.
DEFAULT_COLLAPSE_ABOVE = 200


class Collapsed(NamedTuple):
    """Groups are numbered by first appearance (node id order), edges sorted by their ends."""

    names: list[str]
    """The label of each task group: the task name without indices."""
    counts: list[int]
    """How many tasks each group stands for."""
    edges: list[tuple[int, int, int]]
    """(source group, target group, task-level edges): a group may have an edge to itself."""
    inputs: list[str]
    """The label of each group of external keys."""
    input_counts: list[int]
    """How many keys each input group stands for."""
    input_edges: list[tuple[int, int, int]]
    """(input group, task group, (key, consumer task) pairs)."""

    @property
    def task_count(self) -> int:
        return sum(self.counts)


def collapses(dag: DAG, collapse_above: int) -> bool:
    """Whether a view with this `collapse_above` (0: never) shows `dag` by task name."""
    if (
        isinstance(collapse_above, bool)
        or not isinstance(collapse_above, int)
        or collapse_above < 0
    ):
        raise ValueError(
            "collapse_above must be a whole number >= 0 (0: never collapse), "
            f"got {collapse_above!r}"
        )
    return 0 < collapse_above < len(dag)


def strip_indices(strings: Sequence[str]) -> list[str]:
    """Each string with every `[digits]` replaced by `[*]`, by one regex over the joined
    strings when no string holds the separator (the usual case) and one per string otherwise."""
    if not strings:
        return []
    joined = _SEPARATOR.join(strings)
    if "[" not in joined:
        return list(strings)
    if joined.count(_SEPARATOR) == len(strings) - 1:
        return INDEX.sub(INDEX_MARK, joined).split(_SEPARATOR)
    return [INDEX.sub(INDEX_MARK, s) for s in strings]


def group(strings: Sequence[str]) -> tuple[list[str], list[int], list[int]]:
    """(group labels in order of first appearance, the group of each string, the size of each
    group): strings are grouped by their text without indices."""
    stripped = strip_indices(strings)
    index = dict.fromkeys(stripped, 0)
    for number, label in enumerate(index):
        index[label] = number
    of = list(map(index.__getitem__, stripped))
    sizes = Counter(of)
    return list(index), of, [sizes[g] for g in range(len(index))]


def collapse(dag: DAG) -> Collapsed:
    """The DAG by task name (see the module)."""
    graph = dag.graph
    names, group_of, counts = group(dag.task_names)
    width = len(names)
    edge_codes = Counter([group_of[a] * width + group_of[b] for a, b in graph.edges()])
    edges = [(*divmod(code, width), count) for code, count in sorted(edge_codes.items())]

    keys = graph.unproduced_inputs()
    inputs, key_group, input_counts = group(keys)
    if len(keys) <= CONSUMER_CALLS:
        consumers = [graph.consumers(key) for key in keys]
        input_codes = Counter(
            key_group[k] * width + group_of[node]
            for k, nodes in enumerate(consumers)
            for node in nodes
        )
    else:
        input_codes = _input_codes(dag, keys, key_group, group_of, width)
    input_edges = [(*divmod(code, width), count) for code, count in sorted(input_codes.items())]
    return Collapsed(names, counts, edges, inputs, input_counts, input_edges)


def _input_codes(
    dag: DAG, keys: list[str], key_group: list[int], group_of: list[int], width: int
) -> Counter[int]:
    """input group * width + task group -> (key, consumer) pairs, in one pass over the input
    column: the column flattened, each entry looked up once (its key's number plus one, so
    that only external entries are true), a node listing a key twice counted once (as the
    Rust graph does)."""
    columns = dag.node_inputs
    number = {key: k for k, key in enumerate(keys, 1)}
    found = list(map(number.get, chain.from_iterable(columns)))
    ext_keys = [k - 1 for k in filter(None, found)]
    # the node of each external entry: the entries of node i end at ends[i]
    ends = list(accumulate(map(len, columns)))
    ext_nodes = list(map(bisect_right, repeat(ends), compress(count(), found)))
    nodes = len(columns)
    pairs = list(map(add, map(mul, ext_keys, repeat(nodes)), ext_nodes))
    if len(set(pairs)) < len(pairs):
        ext_keys, ext_nodes = map(list, zip(*map(divmod, set(pairs), repeat(nodes)), strict=True))
    groups = map(mul, map(key_group.__getitem__, ext_keys), repeat(width))
    return Counter(map(add, groups, map(group_of.__getitem__, ext_nodes)))
