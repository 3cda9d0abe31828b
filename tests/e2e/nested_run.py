"""A user's script that runs parents which each await a sub-run on the cluster:

    python nested_run.py N DELAY [refusing]   # N parents x 3 children (nested_tasks.py)

The server is $DATAFLOW_NATS_URL. Prints one JSON object: {"results": {key: parent's output},
"seconds"} (exit 0), or {"error": "<type>: <message>", "seconds"} (exit 1).
"""

from __future__ import annotations

import sys

import nested_tasks
from script_report import run_and_report
from taskiq_dataflow import DataflowRegistry, ExecutionEngine


def build(n: int, delay: float, refusing: bool) -> tuple[DataflowRegistry, dict[str, object]]:
    task = nested_tasks.parent_of_refusing if refusing else nested_tasks.parent
    registry = DataflowRegistry()
    registry.register_external_input("delay")
    for i in range(n):
        registry.register_external_input(f"i{i}")
        registry.register_task(task, output=f"p{i}", inputs=[f"i{i}", "delay"])
    return registry, {"delay": delay, **{f"i{i}": i for i in range(n)}}


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[2:] not in ([], ["refusing"]):
        raise SystemExit("nested_run.py: usage: nested_run.py N DELAY [refusing]")
    registry, inputs = build(int(argv[0]), float(argv[1]), argv[2:] == ["refusing"])
    engine = ExecutionEngine(nested_tasks.broker, registry.build_dag())
    return run_and_report(engine, inputs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
