"""DataNode: one data key of a dataflow, with the task producing it and the tasks consuming it.

The registry and the DAG keep keys in their columns; `DataflowRegistry.data_nodes` hands out
these records for inspection, and users may make their own (the documented module path
`taskiq_dataflow.dataflow.node`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataNode:
    """A named data key: `producer_task` (None for an external input), `consumers`, and
    `is_external` (given at run time rather than produced by a task)."""

    name: str
    producer_task: Any = None
    consumers: list[Any] = field(default_factory=list)
    is_external: bool = False

    def add_consumer(self, task: Any) -> None:
        """Record `task` as reading this key (once, however often it is added)."""
        if not any(c is task for c in self.consumers):
            self.consumers.append(task)

    def set_producer(self, task: Any) -> None:
        """Record `task` as producing this key: the key is no longer external."""
        self.producer_task = task
        self.is_external = False
