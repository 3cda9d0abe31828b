"""The demo pipeline on the NATS worker cluster; each task reports the pid it ran in.

One command (a local nats-server, 2 worker processes, a run):
    taskiq-dataflow cluster examples.cluster_example:broker examples.cluster_example:registry \\
        --workers 2 -i source=local://data.csv

Each output's "ran_on" maps the tasks so far to the pid of the process that ran them: a worker's
pid (`cluster` prints its workers' pids when they are ready), never the pid of the command.
"""

import os

from taskiq_dataflow import DataflowRegistry, pipeline_task
from taskiq_dataflow.cluster import DataflowNatsBroker

broker = DataflowNatsBroker()  # $DATAFLOW_NATS_URL, else nats://127.0.0.1:4222


def ran_on(task: str, upstream: dict | None = None) -> dict:
    """Where the tasks so far ran: the upstream's record plus this process for `task`."""
    return {**(upstream or {}).get("ran_on", {}), task: {"pid": os.getpid()}}


@broker.task
@pipeline_task(output="raw_data")
async def load_data(source: str) -> dict:
    records = [{"value": v} for v in (3, -1, 4, 0, 5)]
    return {"source": source, "records": records, "ran_on": ran_on("load_data")}


@broker.task
@pipeline_task(output="cleaned_data")
def clean_data(raw_data: dict) -> dict:
    records = [r for r in raw_data["records"] if r["value"] > 0]
    return {**raw_data, "records": records, "ran_on": ran_on("clean_data", raw_data)}


@broker.task
@pipeline_task(output="features")
def extract_features(cleaned_data: dict) -> dict:
    values = [r["value"] for r in cleaned_data["records"]]
    where = ran_on("extract_features", cleaned_data)
    return {"total": sum(values), "count": len(values), "ran_on": where}


@broker.task
@pipeline_task(output="report")
async def generate_report(features: dict) -> dict:
    summary = {"total": features["total"], "count": features["count"]}
    return {
        "report_id": "RPT-001",
        "summary": summary,
        "ran_on": ran_on("generate_report", features),
    }


registry = DataflowRegistry()
for task in (load_data, clean_data, extract_features, generate_report):
    registry.register_task(task)
