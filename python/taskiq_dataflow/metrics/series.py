"""The engine's per-task series, kept as plain dicts and lists and exported when scraped.

prometheus_client's metrics take a lock and walk a few Python calls per increment (and search
a histogram's buckets in Python per observation); counted per task, that was most of what
metrics cost a 100k-task in-process run. Here a batch adds its counts under one lock, an
observation is a C-level bisect; a scrape (another thread) reads copies. Label values are
bounded: past `limit` distinct ones, the rest count as OTHER.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from .labels import OTHER


def _check_limit(limit: int) -> int:
    if type(limit) is not int or limit < 1:
        raise ValueError(f"the label value limit must be an int of at least 1, got {limit!r}")
    return limit


class Counts:
    """A counter by one label (`name` ends in _total), as {label value: count}."""

    def __init__(self, name: str, documentation: str, label: str, limit: int) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.limit = _check_limit(limit)
        self.values: dict[str, float] = {}
        self._lock = threading.Lock()  # engines on several threads may share the metrics

    def _key(self, value: str) -> str:
        if value in self.values or len(self.values) < self.limit:
            return value
        return OTHER

    def add(self, value: str, n: float = 1) -> None:
        with self._lock:
            key = value if value in self.values else self._key(value)
            self.values[key] = self.values.get(key, 0) + n

    def add_many(self, counts: Mapping[str, float]) -> None:
        with self._lock:
            values = self.values
            for value, n in counts.items():
                key = value if value in values else self._key(value)
                values[key] = values.get(key, 0) + n

    def get(self, value: str) -> float:
        return self.values.get(value, 0)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, n in sorted(list(self.values.items())):
            family.add_metric([value], n)
        yield family


class Durations:
    """A histogram by task name: per name the counts per bucket (the last +Inf), then the
    sum."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], limit: int):
        bounds = sorted(float(b) for b in buckets if b != float("inf"))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"buckets must be distinct numbers, got {list(buckets)!r}")
        self.name, self.documentation = name, documentation
        self.bounds, self.limit = bounds, _check_limit(limit)
        self.series: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def observe(self, task: str, seconds: float) -> None:
        with self._lock:
            series = self.series.get(task) or self._new(task)
            series[bisect.bisect_left(self.bounds, seconds)] += 1
            series[-1] += seconds

    def observe_many(self, observed: list[tuple[str, float]]) -> None:
        """(task, seconds) pairs, under one lock (a kick's worth of quick tasks)."""
        find, bounds, all_series = bisect.bisect_left, self.bounds, self.series
        with self._lock:
            for task, seconds in observed:
                series = all_series.get(task) or self._new(task)
                series[find(bounds, seconds)] += 1
                series[-1] += seconds

    def _new(self, task: str) -> list[float]:
        if len(self.series) >= self.limit:
            task = OTHER
        series = self.series.get(task)
        if series is None:
            series = self.series[task] = [0.0] * (len(self.bounds) + 2)
        return series

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["task"])
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        with self._lock:
            copies = sorted((task, list(series)) for task, series in self.series.items())
        for task, counts in copies:
            cumulative, buckets = 0.0, []
            for le, n in zip(les, counts[:-1], strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            family.add_metric([task], buckets, counts[-1])
        yield family
