"""What the benchmark scripts share: the DAG shapes, the machine description, BENCHMARKS.md."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

Preds = list[tuple[int, ...]]


def wide(width: int, depth: int, seed: int = 1) -> Preds:
    """Node ids layer by layer; each node of layer d > 0 has 2 random parents in layer d - 1."""
    rnd = random.Random(seed)
    sample = rnd.sample
    cols = range(width)
    preds: Preds = [()] * width
    for d in range(1, depth):
        base = (d - 1) * width
        for _ in cols:
            a, b = sample(cols, 2)
            preds.append((base + a, base + b))
    return preds


def chain(n: int) -> Preds:
    return [()] + [(i - 1,) for i in range(1, n)]


def taskiq_flow_dag(dag_class: Any, nodes: list[Any], preds: Preds) -> Any:
    """A taskiq-flow DAG over `nodes`, its lists filled directly: taskiq-flow's own add_node /
    add_edge make building a large DAG quadratic."""
    dag = dag_class(nodes=nodes)
    for i, ps in enumerate(preds):
        child = nodes[i]
        for p in ps:
            parent = nodes[p]
            dag.edges.append((parent, child))
            parent.dependents.append(child)
            child.dependencies.append(parent)
    return dag


def git_commit() -> str:
    """The checked-out commit, flagged when the work tree has uncommitted changes."""
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
        ).stdout.strip()
        commit = run("rev-parse", "--short", "HEAD")
        if run("status", "--porcelain", "--untracked-files=no"):
            commit += " (with uncommitted changes)"
        return commit
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 0


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def write_section(path: str, title: str, section: str) -> None:
    """Replace the section starting with `title` (up to the next `## `) in `path`, or append it;
    other sections stay as they are. Read right before writing: each script owns one section."""
    p = Path(path)
    text = p.read_text() if p.exists() else "# Benchmarks\n"
    start = text.find(title)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(title))
        rest = "" if end < 0 else text[end + 1 :]
        text = text[:start] + section + ("\n" + rest if rest else "")
    p.write_text(text)
