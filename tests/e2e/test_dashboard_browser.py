"""The real product in a real browser: `taskiq-dataflow run examples.dashboard_demo:build
--dashboard HOST:PORT` (100,001 tasks, one failing, --no-fail-fast) in a subprocess, its page in
headless chromium while the run goes on: progress moves, the task stream has bars, the failed
task's traceback is one click away; then the run ends with exit code 1 and the dashboard stops
with it. The offline report the same command writes (`--report`) shows the finished run with
the network blocked."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .browser_support import (
    PACKAGE_ROOT,
    chromium,
    coloured_fraction,
    done_count,
    open_offline,
    wait_for,
    watched_page,
)
from .support import E2E, ROOT, Processes, free_port, listening, wait_until

pytestmark = pytest.mark.e2e

DEMO = "examples.dashboard_demo:build"
RUN_TIMEOUT = 120  # the demo runs ~10-20 s; a loaded 2-core machine gets slack, not forever
STATUS_JS = "document.getElementById('run-status').textContent"


def demo_command(port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "taskiq_dataflow", "run", DEMO, "-i", "source=demo",
        "--no-fail-fast", "--progress", "lines", "--dashboard", f"127.0.0.1:{port}", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def start_demo(procs: Processes, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = procs.env(pythonpath=[PACKAGE_ROOT, ROOT])
    proc = procs.spawn(demo_command(port, *extra), env=env, cwd=ROOT)
    wait_until(lambda: listening(port) or proc.poll() is not None, 60, "the dashboard to listen")
    assert proc.poll() is None, (
        f"the run ended before its dashboard listened:\n{procs.output(proc)}"
    )
    return proc, f"http://127.0.0.1:{port}/"


def finished(procs: Processes, proc: subprocess.Popen[bytes], started: float) -> int:
    left = RUN_TIMEOUT - (time.monotonic() - started)
    try:
        return proc.wait(max(1.0, left))
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the demo did not finish within {RUN_TIMEOUT} s:\n{procs.output(proc)[-3000:]}"
        ) from None


def test_a_live_100k_task_run_on_the_dashboard(procs, browser):
    started = time.monotonic()
    proc, url = start_demo(procs)
    with watched_page(browser) as watched:
        page = watched.page
        page.goto(url)
        page.wait_for_function(f"{STATUS_JS} === 'running'")
        assert page.inner_text("#run-total") == "100,001"
        # progress moves between two reads
        first = wait_for(lambda: done_count(page), 20, "the first completions")
        second = wait_for(lambda: done_count(page) > first and done_count(page), 10, "progress")
        assert second > first
        names = page.locator("[data-testid=progress-row]")
        wait_for(lambda: names.count() == 7, 5, "a progress row per task name")
        # the DAG collapsed by task name: 7 nodes and the external input, not 100,001 nodes
        assert page.locator("#graph g.node:not(.input)").count() == 7
        assert page.locator("#graph g.node.input[data-name=source]").count() == 1
        assert "\u00d719,960" in page.text_content("#graph g.node[data-name=score]")
        # the task stream has bars
        wait_for(lambda: coloured_fraction(page) > 0.02, 10, "bars on the task stream")
        # the failed task's traceback is reachable
        failure = page.locator("[data-testid=failure]").first
        failure.wait_for(timeout=30_000)
        assert "score" in failure.inner_text()
        failure.click()
        text = page.inner_text("#traceback")
        assert "Traceback (most recent call last):" in text, text
        assert "ValueError: feature vector of shard 4711 has NaN in column 'price'" in text
        assert "dashboard_demo.py" in text
        watched.assert_clean()  # before the server goes away with the run
    code = finished(procs, proc, started)
    output = procs.output(proc)
    assert code == 1, output[-3000:]
    assert url in output  # the URL is printed for the user to open
    assert "1 failed, 2 skipped" in output
    assert not listening(int(url.rsplit(":", 1)[1].strip("/"))), "the dashboard outlived the run"


def test_the_report_of_the_run_opens_offline(procs, browser, tmp_path):
    report = tmp_path / "run.html"
    started = time.monotonic()
    proc, _ = start_demo(procs, "--report", str(report))
    assert finished(procs, proc, started) == 1, procs.output(proc)[-3000:]
    assert report.is_file(), procs.output(proc)[-3000:]
    html = report.read_text()
    assert "window.DATAFLOW_REPORT" in html and 'src="' not in html
    with watched_page(browser) as watched:
        page = watched.page
        blocked = open_offline(page, report)
        page.wait_for_function(f"{STATUS_JS} === 'failed'")
        assert done_count(page) == 99_998
        assert coloured_fraction(page) > 0.02
        page.locator("[data-testid=failure]").first.click()
        assert "shard 4711" in page.inner_text("#traceback")
        assert blocked == [], f"the report asked the network for {blocked}"
        watched.assert_clean()


def test_the_workers_of_a_cluster_run_on_the_page(procs, browser):
    """`cluster ... --dashboard` on a real nats-server and two worker processes: the workers
    table lists both by their pids, alive, and the task stream has a lane per worker."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "taskiq_dataflow", "cluster", "dashboard_flows:broker",
        "dashboard_flows:on_cluster", "--workers", "2", "-i", "n=1", "--progress", "none",
        "-j", "4",  # 40 tasks of 1 s, 4 at a time: ~10 s of a run to look at
        "--dashboard", f"127.0.0.1:{port}",
    ]  # fmt: skip
    env = procs.env({"DASHBOARD_E2E_DELAY": "1"}, pythonpath=[PACKAGE_ROOT, E2E])
    started = time.monotonic()
    proc = procs.spawn(cmd, env=env, cwd=ROOT)
    wait_until(lambda: listening(port) or proc.poll() is not None, 60, "the dashboard to listen")
    with watched_page(browser) as watched:
        page = watched.page
        page.goto(f"http://127.0.0.1:{port}/")
        rows = page.locator("#workers tbody tr")
        wait_for(lambda: rows.count() == 2, 30, "two workers in the table")
        ready = wait_for(
            lambda: re.search(r"ready: pids (\d+), (\d+)", procs.output(proc)), 10, "the pids"
        )
        table = page.inner_text("#workers")
        for pid in ready.groups():
            assert pid in table, table
        assert table.count("alive") == 2 and "lost" not in table
        wait_for(lambda: "2 lanes" in page.inner_text("#stream-note"), 30, "a lane per worker")
        assert page.locator("#workers tr.lost").count() == 0
        watched.assert_clean()
    assert finished(procs, proc, started) == 0, procs.output(proc)[-3000:]
