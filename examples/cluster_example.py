"""The demo pipeline on the NATS worker cluster.

One command (a local nats-server, 2 worker processes, a run):
    taskiq-dataflow cluster examples.cluster_example:broker examples.cluster_example:registry \\
        --workers 2 -i source=local://data.csv
"""

from taskiq_dataflow import DataflowRegistry, pipeline_task
from taskiq_dataflow.cluster import DataflowNatsBroker

broker = DataflowNatsBroker()  # $DATAFLOW_NATS_URL, else nats://127.0.0.1:4222


@broker.task
@pipeline_task(output="raw_data")
async def load_data(source: str) -> dict:
    return {"source": source, "records": [{"value": v} for v in (3, -1, 4, 0, 5)]}


@broker.task
@pipeline_task(output="cleaned_data")
def clean_data(raw_data: dict) -> dict:
    return {**raw_data, "records": [r for r in raw_data["records"] if r["value"] > 0]}


@broker.task
@pipeline_task(output="features")
def extract_features(cleaned_data: dict) -> dict:
    values = [r["value"] for r in cleaned_data["records"]]
    return {"total": sum(values), "count": len(values)}


@broker.task
@pipeline_task(output="report")
async def generate_report(features: dict) -> dict:
    return {"report_id": "RPT-001", "summary": features}


registry = DataflowRegistry()
for task in (load_data, clean_data, extract_features, generate_report):
    registry.register_task(task)
