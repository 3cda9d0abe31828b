"""The registry example's four-task pipeline: inspect it, then run it in-process (no server).

python examples/demo.py
taskiq-dataflow run examples.demo:registry -i source=data.csv     # the same run, by the CLI
"""

import asyncio

from taskiq import InMemoryBroker
from taskiq_dataflow import ExecutionEngine, StepCompleted, pipeline_task
from taskiq_dataflow.dataflow.registry import DataflowRegistry

broker = InMemoryBroker()


@broker.task
@pipeline_task(output="raw_data")
async def load_data(source: str) -> dict:
    return {"source": source, "records": [{"value": v} for v in (3, -1, 4, 0, 5)]}


@broker.task
@pipeline_task(output="cleaned_data")
async def clean_data(raw_data: dict) -> dict:
    records = [r for r in raw_data["records"] if r["value"] > 0]
    return {"source": raw_data["source"], "records": records}


@broker.task
@pipeline_task(output="features")
async def extract_features(cleaned_data: dict) -> dict:
    total = sum(r["value"] for r in cleaned_data["records"])
    return {"total": total, "count": len(cleaned_data["records"])}


@broker.task
@pipeline_task(output="report")
async def generate_report(features: dict) -> dict:
    return {"report_id": "RPT-001", "summary": features}


registry = DataflowRegistry()
registry.register_task(load_data, output="raw_data", inputs=["source"])
registry.register_task(clean_data, output="cleaned_data", inputs=["raw_data"])
registry.register_task(extract_features, output="features", inputs=["cleaned_data"])
registry.register_task(generate_report, output="report", inputs=["features"])


async def main() -> None:
    print("Tasks:", [t.task_name for t in registry.get_tasks()])
    for task in registry.get_tasks():
        print(f"  {task.task_name} depends on {registry.get_data_dependencies(task.task)}")
    print("External inputs:", registry.get_external_inputs())
    print("Outputs:", registry.get_outputs())

    dag = registry.build_dag()
    print(f"\nDAG: {len(dag.nodes)} nodes, {len(dag.edges)} edges")
    print("Order:", [n.task_name for n in dag.topological_sort()])
    for i, level in enumerate(dag.levels):
        print(f"Level {i}: {[n.task_name for n in level]}")
    print()
    dag.print()

    engine = ExecutionEngine(broker, dag, max_parallel=4)
    engine.events.subscribe(lambda e: print(f"  done: {e.task_name}"), StepCompleted)
    print("\nRunning in-process:")
    results = await engine.execute(inputs={"source": "local://data/file.csv"})
    print("Report:", results["report"])


if __name__ == "__main__":
    asyncio.run(main())
