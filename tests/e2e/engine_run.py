"""An engine in a process of its own, as a user's script would run one:

    python engine_run.py spread N DELAY     # N `where` tasks on the cluster's default pool
    python engine_run.py gpu                # one task for pool 'gpu'
    python engine_run.py stream N DELAY     # a producer streaming N items to a consumer

The server is $DATAFLOW_NATS_URL. Prints one JSON object on stdout: {"results": ..., "seconds"}
on success (exit 0), or {"error": "<type>: <message>", "seconds"} (exit 1). A drill judges the
outcome from it, and a crash of the engine (a signal) shows as the exit status, not as a dead
test session.
"""

from __future__ import annotations

import sys

import e2e_tasks
from script_report import run_and_report
from taskiq_dataflow import DataflowRegistry, ExecutionEngine


def build(argv: list[str]) -> tuple[DataflowRegistry, dict[str, object]]:
    if argv[0] == "spread":
        return e2e_tasks.spread(int(argv[1]), float(argv[2]))
    if argv[0] == "gpu":
        return e2e_tasks.gpu_registry, {}
    if argv[0] == "stream":
        registry, _ = e2e_tasks.streaming()
        return registry, {"n": int(argv[1]), "delay": float(argv[2])}
    raise SystemExit(
        f"engine_run.py: unknown graph {argv[0]!r} (spread N DELAY | gpu | stream N DELAY)"
    )


def main(argv: list[str]) -> int:
    registry, inputs = build(argv)
    engine = ExecutionEngine(e2e_tasks.broker, registry.build_dag(), max_parallel=4)
    return run_and_report(engine, inputs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
