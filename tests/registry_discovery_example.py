"""taskiq-flow's examples/registry_discovery_example.py, transcribed from its documentation with
only `taskiq_flow` replaced by `taskiq_dataflow` in the imports (and `...` in the sample records
filled in). test_examples.py runs every example function."""

from taskiq import InMemoryBroker
from taskiq_dataflow import pipeline_task
from taskiq_dataflow.dataflow.cache import DataCache
from taskiq_dataflow.dataflow.registry import DataflowRegistry
from taskiq_dataflow.execution_engine import ExecutionEngine
from taskiq_dataflow.visualization import DAGVisualizer

broker = InMemoryBroker()


@broker.task
@pipeline_task(output="raw_data")
async def load_data(source: str) -> dict:
    return {"source": source, "records": [{"value": 3}, {"value": -1}, {"value": 4}]}


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


async def example_manual_registry():
    registry = DataflowRegistry()
    # Register tasks manually
    registry.register_task(load_data, output="raw_data", inputs=["source"])
    registry.register_task(clean_data, output="cleaned_data", inputs=["raw_data"])
    registry.register_task(extract_features, output="features", inputs=["cleaned_data"])
    registry.register_task(generate_report, output="report", inputs=["features"])
    # Inspect the registry
    print(f"Tasks: {[t.task_name for t in registry.get_tasks()]}")
    # Query dependencies
    deps = registry.get_data_dependencies(generate_report)
    print(f"generate_report depends on: {deps}")  # ['features']
    # Find who produces 'features'
    producer = registry.get_producer("features")
    print(f"'features' produced by: {producer.task_name}")  # extract_features
    # Find who consumes 'raw_data'
    consumers = registry.get_consumers("raw_data")
    print(f"'raw_data' consumed by: {[c.task_name for c in consumers]}")  # [clean_data]
    # External inputs (not produced by any task)
    external = registry.get_external_inputs()
    print(f"External inputs: {external}")  # ['source']
    # Outputs (final results)
    outputs = registry.get_outputs()
    print(f"Pipeline outputs: {outputs}")
    return registry


async def example_build_and_visualize(registry, dot_path):
    # Build DAG
    dag = registry.build_dag()
    print(f"DAG: {len(dag.nodes)} nodes, {len(dag.edges)} edges")
    # Execution order (topological sort)
    order = dag.topological_sort()
    for i, node in enumerate(order):
        print(f"{i + 1}. {node.task_name}")
    # Parallel execution levels
    for level_idx, level_nodes in enumerate(dag.levels):
        tasks = [n.task_name for n in level_nodes]
        print(f"Level {level_idx}: {tasks}")
    # ASCII visualization
    dag.print()
    # DOT format
    dot = DAGVisualizer.to_dot(dag)
    with open(dot_path, "w") as f:
        f.write(dot)
    return dag


async def example_validation():
    registry = DataflowRegistry()
    registry.register_task(load_data, output="raw_data", inputs=["source"])

    # Broken: depends on nonexistent output
    @broker.task
    @pipeline_task(output="result")
    async def broken_task(nonexistent_data: dict):
        return {"result": "broken"}

    registry.register_task(broken_task, output="result", inputs=["nonexistent_data"])
    # Declared external inputs are the whole list: any other unproduced input is an error.
    # (Without a declaration every unproduced input is external, given at run time.)
    registry.register_external_input("source")
    try:
        dag = registry.build_dag()  # Raises ValueError
    except ValueError as e:
        print(f"Caught expected error: {e}")
        return str(e)
    return dag


async def example_execution_with_engine():
    registry = DataflowRegistry()
    registry.register_task(load_data, output="raw_data", inputs=["source"])
    registry.register_task(clean_data, output="cleaned_data", inputs=["raw_data"])
    registry.register_task(extract_features, output="features", inputs=["cleaned_data"])
    registry.register_task(generate_report, output="report", inputs=["features"])
    dag = registry.build_dag()
    engine = ExecutionEngine(
        broker=broker,
        dag=dag,
        fail_fast=True,
        max_parallel=4,
    )
    results = await engine.execute(
        inputs={"source": "local://data/file.csv"},
        pipeline_id="manual_pipeline_example",
    )
    return results


async def example_manual_execution_with_cache():
    registry = DataflowRegistry()
    registry.register_task(load_data, output="raw_data", inputs=["source"])
    registry.register_task(clean_data, output="cleaned_data", inputs=["raw_data"])
    registry.register_task(extract_features, output="features", inputs=["cleaned_data"])
    registry.register_task(generate_report, output="report", inputs=["features"])
    dag = registry.build_dag()
    cache = DataCache()
    # Initialize external inputs
    cache.set("source", "local://data/file.csv")
    completed_nodes = set()
    while True:
        ready = dag.get_ready_tasks(completed_nodes)
        if not ready:
            break
        for node in ready:
            task = node.task
            deps = registry.get_data_dependencies(task)
            # Inject dependencies from cache
            args = cache.inject(deps)  # {'raw_data': {...}, ...}
            # Execute task
            result = await task.kiq(**args)
            output_value = (await result.wait_result()).return_value
            # Store output in cache
            output_name = registry.get_task_metadata(task)["output"]
            cache.set(output_name, output_value)
            completed_nodes.add(node)
    # Final outputs in cache
    final_report = cache.get("report")
    return final_report
