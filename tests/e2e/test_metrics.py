"""Prometheus metrics through the real commands: a `taskiq-dataflow worker --metrics` pool on a
real nats-server serves one endpoint for all its processes, whose task counts equal the tasks
run and survive a worker SIGKILLed and restarted; `taskiq-dataflow run --metrics` serves the
engine's while the run goes on. Scraped over HTTP, parsed with prometheus_client's parser."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .support import CLI, E2E, TESTS, URL_ENV, Processes, Server, Workers, run, wait_until

pytestmark = pytest.mark.e2e

BOUND = 30.0  # seconds for each command; each takes 1-3 s
WHERE = "e2e_tasks:where"  # the names the brokers registered the tasks under
ON_WORKER = "metrics_tasks:wait_on_worker"  # the engine says the DAG's name, "wait_on_worker"
CLI_NAME = "taskiq-dataflow"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def url_in(text: str, what: str) -> str:
    found = re.search(rf"{what} on (http://\S+/metrics)", text)
    assert found, f"no '{what} on URL' line in:\n{text[-3000:]}"
    return found.group(1)


def spread(procs: Processes, server: Server, n: int) -> None:
    env = procs.env({URL_ENV: server.url}, pythonpath=[E2E, TESTS])
    cmd = [sys.executable, str(E2E / "engine_run.py"), "spread", str(n), "0"]
    outcome = run(procs, cmd, BOUND, env=env)
    assert outcome.code == 0, outcome.describe()
    assert outcome.seconds < BOUND


def test_a_worker_pool_serves_one_endpoint_whose_counts_survive_a_restart(procs, e2e_server):
    started = time.monotonic()
    workers = Workers(procs, e2e_server.url, workers=2, args=["--metrics", "127.0.0.1:0"]).ready()
    url = url_in(workers.log(), "worker metrics")
    assert scrape(url)["dataflow_worker_processes", ()] == 2

    spread(procs, e2e_server, 30)
    samples = scrape(url)
    assert total(samples, "dataflow_worker_tasks_started_total", task=WHERE) == 30
    assert total(samples, "dataflow_worker_tasks_completed_total", task=WHERE) == 30
    assert total(samples, "dataflow_worker_tasks_failed_total") == 0
    assert total(samples, "dataflow_worker_task_duration_seconds_count", task=WHERE) == 30
    assert total(samples, "dataflow_worker_slots") == 2 * 64  # both processes' gauges

    # a stream producer on a worker: its items are counted where it ran
    env = procs.env({URL_ENV: e2e_server.url}, pythonpath=[E2E, TESTS])
    streamed = run(procs, [sys.executable, str(E2E / "engine_run.py"), "stream", "5", "0"], BOUND,
                   env=env)  # fmt: skip
    assert streamed.code == 0, streamed.describe()
    assert total(scrape(url), "dataflow_stream_items_total", key="ticks") == 5

    killed = min(workers.beating_pids())
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: killed not in workers.children(), 10, "the killed worker to be gone")
    workers.ready(timeout=20)  # its replacement heart-beats
    spread(procs, e2e_server, 20)
    samples = scrape(url)
    # the killed process's counts still count, the new one's add to them
    assert total(samples, "dataflow_worker_tasks_completed_total", task=WHERE) == 50
    assert samples["dataflow_worker_restarts_total", ()] == 1
    assert samples["dataflow_worker_processes", ()] == 2
    # the dead process's gauges went with it: two processes' slots, not three
    wait_until(lambda: total(scrape(url), "dataflow_worker_slots") == 2 * 64, 5, "live gauges")

    directories = list(procs.home.glob("home-*/tmp/dataflow-metrics-*"))
    assert directories, "the pool's metrics directory is under its TMPDIR"
    procs.end_group(workers.process)
    assert not [d for d in directories if d.exists()], "the pool removed its metrics directory"
    assert time.monotonic() - started < 3 * BOUND


def test_run_metrics_endpoint_is_reachable_during_the_run(procs, tmp_path):
    gate = tmp_path / "gate"
    env = procs.env(pythonpath=[E2E])
    cmd = [CLI, "run", "metrics_tasks:gated", "-i", f"gate={gate}", "--metrics", "0",
           "--progress", "none"]  # fmt: skip
    started = time.monotonic()
    proc = procs.spawn(cmd, env=env)
    wait_until(lambda: "metrics on" in procs.output(proc) or proc.poll() is not None, BOUND,
               "the metrics URL")  # fmt: skip
    url = url_in(procs.output(proc), "metrics")
    assert url.startswith("http://127.0.0.1:")

    def gated() -> bool:
        return total(scrape(url), "dataflow_tasks_in_flight") == 1

    wait_until(gated, BOUND, "the gated task in flight")
    samples = scrape(url)
    assert samples["dataflow_runs_in_progress", ()] == 1
    assert total(samples, "dataflow_tasks_started_total", task="wait_for_gate") == 1
    assert total(samples, "dataflow_tasks_started_total", task="after_gate") == 0
    gate.touch()
    proc.wait(BOUND)
    output = procs.output(proc)
    assert proc.returncode == 0, output
    assert "opened" in output
    assert time.monotonic() - started < BOUND


def test_a_bad_metrics_address_is_refused_before_anything_starts(procs):
    outcome = run(procs, [CLI, "run", "metrics_tasks:gated", "--metrics", "localhost:http"], BOUND,
                  env=procs.env(pythonpath=[E2E]))  # fmt: skip
    assert outcome.code == 2, outcome.describe()
    assert "--metrics" in outcome.stderr and "'localhost:http'" in outcome.stderr
    assert outcome.seconds < BOUND


def test_cluster_serves_the_engine_and_the_workers_on_ports_of_their_own(procs, tmp_path):
    gate = tmp_path / "gate"
    env = procs.env(pythonpath=[E2E, TESTS])
    cmd = [CLI, "cluster", "metrics_tasks:broker", "metrics_tasks:gated_on_workers",
           "--workers", "1", "-i", f"gate={gate}", "--metrics", "127.0.0.1:0",
           "--progress", "none"]  # fmt: skip
    started = time.monotonic()
    proc = procs.spawn(cmd, env=env)

    def both_urls() -> bool:
        text = procs.output(proc)
        return ("worker metrics on" in text and f"{CLI_NAME}: metrics on" in text) or (
            proc.poll() is not None
        )

    wait_until(both_urls, BOUND, "both metrics URLs")
    text = procs.output(proc)
    engine_url, workers_url = url_in(text, f"{CLI_NAME}: metrics"), url_in(text, "worker metrics")
    assert engine_url != workers_url

    def running_on_a_worker() -> bool:
        return total(scrape(workers_url), "dataflow_worker_busy_slots") == 1

    wait_until(running_on_a_worker, BOUND, "the gated task busy on the worker")
    engine = scrape(engine_url)
    assert total(engine, "dataflow_tasks_in_flight") == 1
    assert total(engine, "dataflow_tasks_started_total", task="wait_on_worker") == 1
    assert total(scrape(workers_url), "dataflow_worker_tasks_started_total", task=ON_WORKER) == 1
    gate.touch()
    proc.wait(BOUND)
    output = procs.output(proc)
    assert proc.returncode == 0, output
    assert "open" in output
    assert time.monotonic() - started < BOUND


class Gateway:
    """A stand-in Pushgateway: a real HTTP server on a free loopback port that keeps what is
    pushed to it (method, path, body)."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, str, str]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _keep(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size).decode(errors="replace")
                gateway.pushed.append((self.command, self.path, body))
                self.send_response(200)
                self.end_headers()

            do_PUT = do_POST = _keep

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


def test_run_pushes_its_metrics_when_it_ends(procs, tmp_path, gateway):
    gate = tmp_path / "gate"
    gate.touch()
    cmd = [CLI, "run", "metrics_tasks:gated", "-i", f"gate={gate}", "--metrics-push", gateway.url]
    outcome = run(procs, cmd, BOUND, env=procs.env(pythonpath=[E2E]))
    assert outcome.code == 0, outcome.describe()
    assert outcome.seconds < BOUND
    [(method, path, body)] = gateway.pushed
    assert (method, path) == ("PUT", "/metrics/job/taskiq-dataflow")
    assert 'dataflow_tasks_completed_total{task="after_gate"} 1.0' in body
    assert 'dataflow_runs_total{status="succeeded"} 1.0' in body


def test_a_push_that_fails_is_a_warning_not_the_runs_failure(procs, tmp_path):
    from taskiq_dataflow.cluster.server import free_port

    gate = tmp_path / "gate"
    gate.touch()
    nowhere = f"http://127.0.0.1:{free_port()}"
    cmd = [CLI, "run", "metrics_tasks:gated", "-i", f"gate={gate}", "--metrics-push", nowhere]
    outcome = run(procs, cmd, BOUND, env=procs.env(pythonpath=[E2E]))
    assert outcome.code == 0, outcome.describe()
    assert f"warning: cannot push metrics to {nowhere}" in outcome.stderr
    assert "opened" in outcome.stdout  # the outputs were printed all the same


def test_a_worker_pool_pushes_when_it_stops(procs, e2e_server, gateway):
    workers = Workers(
        procs, e2e_server.url, workers=1, args=["--metrics-push", gateway.url]
    ).ready()
    spread(procs, e2e_server, 5)
    procs.end_group(workers.process)
    assert workers.process.returncode == 0, workers.log()
    assert gateway.pushed, workers.log()
    method, path, body = gateway.pushed[-1]
    assert (method, path) == ("PUT", "/metrics/job/taskiq-dataflow-worker")
    assert f'dataflow_worker_tasks_completed_total{{task="{WHERE}"}} 5.0' in body
