"""A Snapshot of a run recorded in a RunStore (runs and task_executions rows), the same views as
a live run's: counts by task name, task stream from each attempt's start and finish, throughput
from the finishes, failures with their traceback text, workers from the rows' worker ids; the
graph collapsed from the DAG when it is given, else its task names alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import _core
from .limits import MAX_BARS, MAX_FAILURES, MAX_LOGS, MAX_WORKERS, clip, clip_end
from .views import (
    capped_rows,
    collapsed_graph,
    counts_of,
    name_row,
    stream_view,
    throughput_of,
)

if TYPE_CHECKING:
    from ..dataflow.dag import DAG
    from ..store import RunStore

# a task_executions status -> the Snapshot's state
_STATE = {
    "completed": "done",
    "compensated": "done",
    "cached": "cached",
    "failed": "failed",
    "skipped": "skipped",
    "running": "running",
}


def _latest(rows: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Each node's last attempt (a skip is attempt 0 and comes alone)."""
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        found = latest.get(row["node"])
        if found is None or row["attempt"] >= found["attempt"]:
            latest[row["node"]] = row
    return latest


def store_snapshot(
    store: RunStore, run_id: str, dag: DAG | None = None, label: str | None = None
) -> dict[str, Any]:
    """The Snapshot of `run_id` in `store` (StoreError naming it when the store has no such
    run); `dag`: the run's DAG, for the graph's edges and the tasks that never started."""
    run = store.get_run(run_id)
    rows = store.get_task_executions(run_id)
    started_at = float(run["started_at"])
    finished_at = run["finished_at"]
    over = run["status"] != "running"
    latest = _latest(rows)
    names_of = {node: row["task_name"] for node, row in latest.items()}
    if dag is not None:
        for node, name in enumerate(dag.task_names):
            names_of.setdefault(node, name)
    order: dict[str, dict[str, Any]] = {}
    for node in sorted(names_of):
        name = names_of[node]
        row = order.get(name)
        if row is None:
            row = order[name] = name_row(name)
        found = latest.get(node)
        state = "waiting" if found is None else _STATE.get(found["status"], "waiting")
        if state == "running" and over:
            state = "skipped"  # the run ended (or its engine died) while it ran
        row[state] += 1
        row["total"] += 1
    durations: dict[str, tuple[float, int]] = {}
    bars: list[tuple[str | None, str, float, float, bool]] = []
    ends: list[float] = []
    failures: list[dict[str, Any]] = []
    workers: dict[str, int] = {}
    for r in rows:
        start, end = r["started_at"], r["finished_at"]
        status = r["status"]
        if status == "failed" and len(failures) < MAX_FAILURES:
            failures.append(_failure(r, started_at))
        if start is None or end is None or status not in ("completed", "compensated", "failed"):
            continue
        ok = status != "failed"
        bars.append((r["worker"], r["task_name"], start - started_at, end - started_at, ok))
        ends.append(end - started_at)
        if ok:
            s, n = durations.get(clip(r["task_name"]), (0.0, 0))
            durations[clip(r["task_name"])] = (s + end - start, n + 1)
            if r["worker"]:
                workers[r["worker"]] = workers.get(r["worker"], 0) + 1
    bars.sort(key=lambda b: b[3])
    rows_out = list(order.values())
    totals = {row["name"]: row["total"] for row in rows_out}
    rows_out, moved = capped_rows(rows_out, durations)
    last = finished_at if finished_at is not None else max(ends, default=0.0) + started_at
    elapsed = max(float(last) - started_at, 0.0)
    total = len(names_of)
    return {
        "run_id": run["run_id"],
        "status": run["status"],
        "started_at": started_at,
        "finished_at": finished_at,
        "now": float(last),
        "elapsed": elapsed,
        "total": total,
        "label": label,
        "counts": counts_of(rows_out),
        "by_name": rows_out,
        "graph": _graph(dag, totals, moved),
        "stream": stream_view(bars[-MAX_BARS:], elapsed),
        "throughput": throughput_of(ends, elapsed),
        "workers": [_worker(w, n) for w, n in list(workers.items())[:MAX_WORKERS]],
        "redeliveries": 0,
        "lost_workers": 0,
        "failures": failures,
        "streams": [],
        "logs": _logs(store, run_id, started_at),
    }


def _failure(row: dict[str, Any], started_at: float) -> dict[str, Any]:
    """The store keeps an attempt's error as "Type: message" then the traceback text."""
    text = row["error"] or ""
    head, _, trace = text.partition("\n")
    kind, sep, message = head.partition(": ")
    if not sep:
        kind, message = "Error", head
    at = row["finished_at"] if row["finished_at"] is not None else started_at
    return {
        "task": clip(row["task_name"]),
        "node": row["node"],
        "attempt": row["attempt"],
        "type": clip(kind),
        "message": clip(message),
        "traceback": clip_end(trace),
        "t": at - started_at,
    }


def _worker(worker: str, done: int) -> dict[str, Any]:
    parts = worker.rsplit("-", 2)
    host, pid = None, None
    if len(parts) == 3 and parts[1].isdigit() and len(parts[2]) == 6:
        host, pid = parts[0], int(parts[1])
    return {
        "id": clip(worker, 200), "pool": None, "host": host, "pid": pid, "slots": None,
        "in_use": None, "last_heartbeat": None, "state": "alive", "done": done,
    }  # fmt: skip


def _graph(dag: DAG | None, totals: dict[str, int], moved: dict[str, str]) -> dict[str, Any]:
    nodes = list(totals.items())
    if dag is None:
        return collapsed_graph(nodes, [], [], moved)
    names = list(dict.fromkeys(dag.task_names))
    index = {name: i for i, name in enumerate(names)}
    scheduler = _core.Scheduler(dag.graph)
    scheduler.set_labels(0, [index[n] for n in dag.task_names])
    edges = [(names[s], names[t], n) for s, t, n in scheduler.edge_counts_by_label()]
    graph = dag.graph
    inputs = [
        (key, [dag.task_names[c] for c in graph.consumers(key)[:1000]])
        for key in dag.external_inputs
    ]
    return collapsed_graph(nodes, [(clip(s), clip(t), n) for s, t, n in edges], inputs, moved)


def _logs(store: RunStore, run_id: str, started_at: float) -> list[dict[str, Any]]:
    """The run's task logs when the store keeps them (a store with `task_logs`)."""
    read = getattr(store, "task_logs", None)
    if read is None:
        return []
    records = read(run_id)[-MAX_LOGS:]
    return [
        {
            "t": float(r["time"]) - started_at,
            "level": clip(str(r["level"]), 20),
            "task": clip(str(r["task_name"])),
            "message": clip(str(r["message"])),
        }
        for r in records
    ]
