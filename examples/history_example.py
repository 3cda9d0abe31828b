"""A three-task pipeline whose last task fails while $HISTORY_EXAMPLE_FAIL is set: a run to list,
inspect, restart and replay with `taskiq-dataflow runs` (README, "Run history").

export DATAFLOW_STORE=runs.db
HISTORY_EXAMPLE_FAIL=1 taskiq-dataflow run examples.history_example:registry -i n=3
taskiq-dataflow runs restart "$(taskiq-dataflow runs ls -q --limit 1)"
"""

import os

from taskiq_dataflow import DataflowRegistry, pipeline_task


@pipeline_task(output="numbers")
def numbers(n: int) -> list[int]:
    return list(range(1, n + 1))


@pipeline_task(output="squares")
def squares(numbers: list[int]) -> dict[str, int]:
    return {str(x): x * x for x in numbers}


@pipeline_task(output="total")
def total(squares: dict[str, int]) -> int:
    if os.environ.get("HISTORY_EXAMPLE_FAIL"):
        raise RuntimeError("total fails while $HISTORY_EXAMPLE_FAIL is set")
    return sum(squares.values())


registry = DataflowRegistry()
for task in (numbers, squares, total):
    registry.register_task(task)
