"""The parts of a Snapshot made the same way from a live run and from a run store: rows per
task name (capped, the rest as "(other)"), the collapsed graph, task stream lanes, throughput.
Plain data in, contract-shaped dicts out (dashboard-schema.md)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .limits import MAX_BARS, MAX_INPUTS, MAX_LANES, MAX_NAMES, MAX_POINTS, OTHER, clip

STATES = ("waiting", "running", "done", "failed", "skipped", "cached")


def name_row(name: str) -> dict[str, Any]:
    row: dict[str, Any] = {"name": clip(name), "total": 0}
    row.update(dict.fromkeys(STATES, 0))
    row["mean_duration"] = None
    return row


def capped_rows(
    rows: list[dict[str, Any]], durations: Mapping[str, tuple[float, int]]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rows (one per name, counts filled) with their mean durations (`durations`: name ->
    (sum, count) of the sampled ones), at most MAX_NAMES: the largest kept in their order, the
    rest summed as OTHER. Also: which names went to OTHER (for the graph)."""
    moved: dict[str, str] = {}
    if len(rows) > MAX_NAMES:
        keep = {id(r) for r in heapq.nlargest(MAX_NAMES - 1, rows, key=lambda r: r["total"])}
        other = name_row(OTHER)
        kept = []
        for row in rows:
            if id(row) in keep:
                kept.append(row)
                continue
            moved[row["name"]] = OTHER
            for field in ("total", *STATES):
                other[field] += row[field]
        kept.append(other)
        rows = kept
        total = [0.0, 0]
        for name, (s, n) in durations.items():
            if name in moved:
                total[0] += s
                total[1] += int(n)
        durations = {**durations, OTHER: (total[0], int(total[1]))}
    for row in rows:
        s, n = durations.get(row["name"], (0.0, 0))
        row["mean_duration"] = s / n if n else None
    return rows, moved


def counts_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for row in rows:
        for state in STATES:
            counts[state] += row[state]
    return counts


def collapsed_graph(
    nodes: Sequence[tuple[str, int]],
    edges: Iterable[tuple[str, str, int]],
    inputs: Iterable[tuple[str, Iterable[str]]],
    moved: Mapping[str, str],
) -> dict[str, Any]:
    """The DAG collapsed by task name: `nodes` (name, count), `edges` (source name, target
    name, node-level edges), `inputs` (external key, the names reading it); names in `moved`
    are drawn as the one they were summed into."""
    counts: dict[str, int] = {}
    for name, count in nodes:
        name = moved.get(name, name)
        counts[name] = counts.get(name, 0) + count
    between: dict[tuple[str, str], int] = {}
    for source, target, count in edges:
        pair = (moved.get(source, source), moved.get(target, target))
        between[pair] = between.get(pair, 0) + count
    listed: list[dict[str, Any]] = []
    for key, targets in inputs:
        if len(listed) >= MAX_INPUTS:
            break
        names = list(dict.fromkeys(moved.get(t, t) for t in targets))[:MAX_NAMES]
        listed.append({"key": clip(key), "targets": [clip(n) for n in names]})
    return {
        "nodes": [{"name": clip(n), "count": c} for n, c in counts.items()],
        "edges": [
            {"source": clip(s), "target": clip(t), "count": c} for (s, t), c in between.items()
        ],
        "inputs": listed,
    }


def stream_view(
    bars: Sequence[tuple[str | None, str, float, float, bool]], now: float
) -> dict[str, Any]:
    """Task stream lanes and bars from (worker or None, name, start, end, ok), oldest first:
    a worker's bars go to its lane; bars without a worker (in process) to "slot N", the first
    slot free at their start (as many slots as were busy at once). At most MAX_LANES lanes and
    MAX_BARS bars (the most recent)."""
    bars = sorted(bars[-MAX_BARS:], key=lambda b: b[2])
    lanes: list[str] = []
    lane_of: dict[str, int] = {}
    free: list[tuple[float, int]] = []  # (end, slot lane) of in-process slots
    slots = 0
    out: list[dict[str, Any]] = []
    for worker, name, start, end, ok in bars:
        if worker is not None:
            lane = lane_of.get(worker)
            if lane is None:
                if len(lanes) >= MAX_LANES:
                    continue
                lane = lane_of[worker] = len(lanes)
                lanes.append(clip(worker))
        else:
            if free and free[0][0] <= start:
                _, lane = heapq.heappop(free)
            elif len(lanes) < MAX_LANES:
                slots += 1
                lane = len(lanes)
                lanes.append(f"slot {slots}")
            else:
                continue
            heapq.heappush(free, (end, lane))
        status = "done" if ok else "failed"
        out.append({"lane": lane, "name": clip(name), "start": start, "end": end, "status": status})
    first: float = out[0]["start"] if out else 0.0
    return {"lanes": lanes, "bars": out, "window": [first, max(now, first)]}


def add_point(points: list[list[float]], t: float, rate: float) -> None:
    """Append a throughput point; past MAX_POINTS, neighbours are merged two by two (the
    resolution halves, the whole run stays on the chart)."""
    points.append([t, rate])
    if len(points) > MAX_POINTS:
        merged = [
            [points[i + 1][0], (points[i][1] + points[i + 1][1]) / 2]
            for i in range(0, len(points) - 1, 2)
        ]
        if len(points) % 2:
            merged.append(points[-1])
        points[:] = merged


def throughput_of(ends: Sequence[float], elapsed: float) -> list[list[float]]:
    """Throughput points from completion times (seconds since the start), a finished run's."""
    if not ends or elapsed <= 0:
        return []
    bucket = max(elapsed / MAX_POINTS, 0.5)
    count = int(elapsed / bucket) + 1
    hist = [0] * count
    for t in ends:
        hist[min(max(int(t / bucket), 0), count - 1)] += 1
    return [[(i + 1) * bucket, n / bucket] for i, n in enumerate(hist)]


def summary(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """A Snapshot's RunSummary."""
    counts = snapshot["counts"]
    return {
        "run_id": snapshot["run_id"],
        "status": snapshot["status"],
        "started_at": snapshot["started_at"],
        "finished_at": snapshot["finished_at"],
        "total": snapshot["total"],
        "done": counts["done"] + counts["cached"],
        "failed": counts["failed"],
        "label": snapshot["label"],
    }
