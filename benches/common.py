"""What the benchmark scripts share: the DAG shapes, the machine description, BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
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


def proc_status(field: str) -> int:
    """A byte count of this process's /proc/self/status (VmRSS, VmHWM...); 0 if absent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


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


# -- the small cluster scripts (bench_streams.py, bench_map.py) ----------------------------------


@contextlib.contextmanager
def bench_cluster(workers: int = 2) -> Iterator[Any]:
    """A nats-server on a free loopback port and `workers` processes serving
    cluster_bench_tasks:broker, which finds the server through $DATAFLOW_NATS_URL (set here
    for this process too). Yields the server."""
    from taskiq_dataflow.cluster import NatsServer

    with NatsServer() as server:
        os.environ["DATAFLOW_NATS_URL"] = server.url
        env = {**os.environ, "PYTHONPATH": str(ROOT / "benches")}
        procs = subprocess.Popen(
            [sys.executable, "-m", "taskiq_dataflow.cluster.serve",
             "cluster_bench_tasks:broker", "--workers", str(workers)],
            env=env, start_new_session=True, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield server
        finally:
            os.killpg(procs.pid, signal.SIGTERM)
            procs.wait(30)


def best_rates(systems: Sequence[tuple[str, Callable[[], float]]], repeat: int) -> dict[str, float]:
    """The highest rate of each system over `repeat` rounds, the systems alternating."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        for name, run in systems:
            best[name] = max(best.get(name, 0.0), run())
    return best


def rates_section(
    title: str, command: str, setup: str, best: dict[str, float], peer: str, digits: int
) -> list[str]:
    """A BENCHMARKS.md section's head: the machine, the setup, items/s per system and its
    ratio to `peer`."""
    lines = [
        title,
        "",
        f"`{command}` on {cpu_model()} ({nproc()} CPUs, load {loadavg()}), Python "
        f"{platform.python_version()}, commit {git_commit()}. {setup}",
        "",
        f"| system | items/s | vs {peer} |",
        "|---|---:|---:|",
    ]
    for name, rate in best.items():
        lines.append(f"| {name} | {rate:,.0f} | {rate / best[peer]:.{digits}f}x |")
    return lines
