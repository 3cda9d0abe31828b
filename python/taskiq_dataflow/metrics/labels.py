"""Label values with a bound: a metric by task name (or stream key) keeps at most `limit`
distinct values, the rest share OTHER, so a run adding tasks with generated names cannot grow
the scrape (and Prometheus' memory) without end. (The engine's own series do the same in
series.py; this is for prometheus_client metrics, which the workers' multiprocess mode needs.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

OTHER = "(other)"
DEFAULT_LABEL_LIMIT = 200  # distinct task names (or stream keys) per metric

C = TypeVar("C")


class BoundedChildren(Generic[C]):
    """The children of one labelled metric by label value, at most `limit` of them (then
    OTHER's). Cached: `metric.labels(value)` takes a lock and builds a key on every call."""

    __slots__ = ("_children", "_labels", "limit")

    def __init__(self, labels: Callable[[str], C], limit: int = DEFAULT_LABEL_LIMIT) -> None:
        if type(limit) is not int or limit < 1:
            raise ValueError(f"the label value limit must be an int of at least 1, got {limit!r}")
        self._labels, self.limit = labels, limit
        self._children: dict[str, C] = {}

    def __getitem__(self, value: str) -> C:
        child = self._children.get(value)
        if child is None:
            if len(self._children) >= self.limit:
                value = OTHER
                child = self._children.get(OTHER)
            if child is None:
                child = self._children[value] = self._labels(value)
        return child

    def __len__(self) -> int:
        return len(self._children)


def children(metric: Any, limit: int) -> BoundedChildren[Any]:
    """The bounded children of a one-label prometheus_client metric."""
    return BoundedChildren(metric.labels, limit)
