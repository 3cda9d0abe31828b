"""A crawl of 250 shards, four tasks each (fetch, parse, count, score), planned by one task and
summed up by another: 1,002 tasks whose graph stays readable. DOT and Mermaid show it by task
name (`shard[*].fetch` and its count, 250), its external inputs `seed` and `weights` as nodes
of their own.

taskiq-dataflow graph examples.wide_graph:registry -f mermaid       # within Mermaid's limits
taskiq-dataflow graph examples.wide_graph:registry -f dot           # 8 nodes, 7 edges
taskiq-dataflow run examples.wide_graph:registry -i seed=3 -i 'weights={"a": 2}' --json
"""

from __future__ import annotations

from typing import Any

from taskiq_dataflow.dataflow.registry import DataflowRegistry

SHARDS = 250


def plan(seed: int) -> tuple[str, ...]:
    return tuple(f"https://example.test/{seed}/{i}" for i in range(SHARDS))


def fetch(url: str) -> str:
    return f"a b a {url}"


def parse(page: str) -> list[str]:
    return page.split()


def count(words: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    return counts


def score(counts: dict[str, int], weights: dict[str, int]) -> int:
    return sum(weights.get(word, 0) * n for word, n in counts.items())


def report(*scores: int) -> int:
    return sum(scores)


registry = DataflowRegistry()
registry.register_task(plan, outputs=[f"shard[{i}].url" for i in range(SHARDS)], inputs=["seed"])
for i in range(SHARDS):
    shard = f"shard[{i}]"
    registry.register_task(fetch, f"{shard}.page", [f"{shard}.url"], name=f"{shard}.fetch")
    registry.register_task(parse, f"{shard}.words", [f"{shard}.page"], name=f"{shard}.parse")
    registry.register_task(count, f"{shard}.counts", [f"{shard}.words"], name=f"{shard}.count")
    registry.register_task(
        score, f"{shard}.score", [f"{shard}.counts", "weights"], name=f"{shard}.score"
    )
registry.register_task(report, "total", [f"shard[{i}].score" for i in range(SHARDS)])


def main() -> Any:
    from taskiq_dataflow.visualization import DAGVisualizer

    print(DAGVisualizer.to_mermaid(registry.build_dag()))


if __name__ == "__main__":
    main()
