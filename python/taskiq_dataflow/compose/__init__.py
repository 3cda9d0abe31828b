"""Composition: flows wired with `>>`, sub-flows called inline, sub-flows mapped over lists.

Everything expands into ONE DAG for the Rust scheduler. A call node inlines the sub-flow's
tasks (names and keys prefixed with the call's name); a map node is one in-process task that,
once the list exists, builds one DAG with a copy of the sub-flow per item and runs it on a
nested engine with the same broker and transport: a map over 100,000 items is 100,000
scheduled tasks (times the sub-flow's size), at most `max_parallel` in flight. With a run store
the nested run is recorded too, under an id derived from the outer run's, so restarting the
outer run does not run the items that completed again.

Wiring is by name: `a >> b` renames b's single unbound input to a's output key; an input that
no `>>` wires and no node produces is an external input of the flow.

>>> import asyncio
>>> from taskiq_dataflow import Flow
>>> def strip(text):
...     return text.strip()
>>> def lower(s):
...     return s.lower()
>>> def split(text):
...     return text.split()
>>> def count(word):
...     return len(word)
>>> def total(counts):
...     return sum(counts)
>>> normalize = Flow("normalize")        # one source input ('text'), one sink output
>>> _ = normalize.node(strip) >> normalize.node(lower)
>>> words = Flow("words")
>>> _ = words.node(count)
>>> flow = Flow("main")
>>> _ = (
...     flow.node(normalize, name="norm")               # call node: inlined, keys 'norm.*'
...     >> flow.node(split)
...     >> flow.map(words, name="lengths", max_parallel=100)  # one task per word
...     >> flow.node(total)
... )
>>> results = asyncio.run(flow.run({"text": "  A bb CCC "}))
>>> results["norm"], results["lengths"], results["total"]
('a bb ccc', [1, 2, 3], 6)
>>> list(results)                                 # every output, the call's inner ones too
['norm.strip', 'norm', 'split', 'lengths', 'total']

A node's output key is `output=`, else its `pipeline_task` output, else the node's name. Plain
functions run in the engine's process whatever the transport (like map nodes); `@broker.task`
tasks go through the broker or the NATS cluster.
"""

from ..errors import FlowError
from .flow import Flow, FlowNode

__all__ = ["Flow", "FlowError", "FlowNode"]
