"""A 100,001-task run to watch on the dashboard: 19,960 shards, each loaded, parsed, validated,
turned into features and scored (some of it sleeping a little, as real work would), a hundred
shards aggregated at a time, and one report. Shard 4711's score fails, so with --no-fail-fast
the run goes on around it and ends failed, its aggregate and the report skipped.

    taskiq-dataflow run examples.dashboard_demo:build -i source=demo --no-fail-fast \\
        --dashboard 127.0.0.1:8787                 # then open http://127.0.0.1:8787/

`build(shards)` makes a smaller one of the same shape (the tests use it too).
"""

from __future__ import annotations

import asyncio
import logging
import os

from taskiq_dataflow.dataflow.dag import DAG

SHARDS = 19_960
GROUP = 100  # shards per aggregate
BAD_SHARD = 4711
log = logging.getLogger("dashboard_demo")
# the seconds a score sleeps: the demo runs ~10-20 s on a laptop; DASHBOARD_DEMO_SLEEP changes it
SCORE_SLEEP = float(os.environ.get("DASHBOARD_DEMO_SLEEP", "0.4"))


async def load(source: str, shard: int) -> dict:
    if shard % 2000 == 0:
        log.info("loading shard %d of %s", shard, source)
    return {"shard": shard, "rows": [shard % 97, shard % 89, shard % 83]}


async def parse(raw: dict) -> dict:
    return {"shard": raw["shard"], "values": [float(v) for v in raw["rows"]]}


async def validate(parsed: dict) -> bool:
    return all(v >= 0 for v in parsed["values"])


async def features(parsed: dict) -> list[float]:
    await asyncio.sleep(SCORE_SLEEP / 4)
    values = parsed["values"]
    return [sum(values), max(values) - min(values)]


async def score(feats: list[float], shard: int, bad: int) -> float:
    await asyncio.sleep(SCORE_SLEEP)
    if shard == bad:
        raise ValueError(f"feature vector of shard {shard} has NaN in column 'price'")
    return feats[0] / (1.0 + feats[1])


async def aggregate(*parts: float | bool) -> float:
    scores = [p for p in parts if not isinstance(p, bool)]
    if not all(p for p in parts if isinstance(p, bool)):
        log.warning("a shard of this group did not validate")
    return sum(scores) / max(1, len(scores))


async def report(*groups: float) -> dict:
    return {"groups": len(groups), "mean_score": sum(groups) / max(1, len(groups))}


def _bind(fn, *bound):
    """`fn` with its shard number (and more) bound; the engine passes the inputs positionally."""

    async def task(*args):
        return await fn(*args, *bound)

    task.__name__ = fn.__name__
    return task


def build(shards: int = SHARDS) -> DAG:
    """The DAG: one node per task, built as columns (no per-node registry objects). The
    failing shard is 4711 (of fewer shards: 4711 modulo their number)."""
    tasks, names, inputs, outputs = [], [], [], []
    bad = BAD_SHARD % shards

    def add(task, name, ins, out):
        tasks.append(task)
        names.append(name)
        inputs.append(ins)
        outputs.append((out,))

    for i in range(shards):
        add(_bind(load, i), "load", ("source",), f"raw{i}")
        add(parse, "parse", (f"raw{i}",), f"parsed{i}")
        add(validate, "validate", (f"parsed{i}",), f"valid{i}")
        add(features, "features", (f"parsed{i}",), f"feats{i}")
        add(_bind(score, i, bad), "score", (f"feats{i}",), f"score{i}")
    groups = range(0, shards, GROUP)
    for g in groups:
        members = range(g, min(g + GROUP, shards))
        ins = tuple(f"score{i}" for i in members) + tuple(f"valid{i}" for i in members)
        add(aggregate, "aggregate", ins, f"group{g // GROUP}")
    add(report, "report", tuple(f"group{g // GROUP}" for g in groups), "report")
    return DAG.from_columns(tasks, names, inputs, outputs, [None] * len(tasks), external=["source"])


if __name__ == "__main__":
    dag = build()
    print(f"{len(dag.nodes):,} tasks; run it with the dashboard:")
    print(
        "  taskiq-dataflow run examples.dashboard_demo:build -i source=demo --no-fail-fast "
        "--dashboard 127.0.0.1:8787"
    )
