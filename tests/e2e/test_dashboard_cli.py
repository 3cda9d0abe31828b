"""`--dashboard [HOST:]PORT`, `--report PATH` and `taskiq-dataflow report` end to end: the
console script in a subprocess, the dashboard read over HTTP while the run goes on, exit codes,
the report files, bounded times; `cluster --dashboard` on a real nats-server and workers."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .support import CLI, E2E, ROOT, Processes, run, wait_until

pytestmark = pytest.mark.e2e

URL = re.compile(r"dashboard at (http://127\.0\.0\.1:\d+/)")


def env(procs: Processes, **extra: str) -> dict[str, str]:
    # the checkout's package first (a worktree's, when the venv's .pth names another)
    return procs.env(extra, pythonpath=[ROOT / "python", E2E])


def get(url: str, proc: Any = None) -> tuple[int, Any]:
    """(status, JSON body); (0, None) when `proc` exited meanwhile (its dashboard with it)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except urllib.error.URLError:
        if proc is not None and proc.wait(5) is not None:
            return 0, None
        raise


def dashboard_url(procs: Processes, proc: Any, timeout: float = 30) -> str:
    found: list[str] = []

    def printed() -> bool:
        match = URL.search(procs.output(proc))
        if match:
            found.append(match.group(1))
        return bool(found) or proc.poll() is not None

    wait_until(printed, timeout, "the dashboard's URL on stderr")
    assert found, procs.output(proc)
    return found[0]


def embedded(path: Path) -> dict[str, Any]:
    html = path.read_text()
    assert 'src="http' not in html and "/static/" not in html
    found = re.search(r"<script>window\.DATAFLOW_REPORT = (.*?);</script>", html, re.S)
    assert found, html[:500]
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_run_serves_the_dashboard_while_it_runs_and_exits_with_the_run(
    procs: Processes,
) -> None:
    cmd = [CLI, "run", "dashboard_flows:local", "-i", "n=1", "--dashboard", "127.0.0.1:0",
           "-j", "4", "--progress", "none"]  # fmt: skip
    started = time.monotonic()
    proc = procs.spawn(cmd, env=env(procs, DASHBOARD_E2E_DELAY="0.1"))
    url = dashboard_url(procs, proc)
    seen = []
    while proc.poll() is None and time.monotonic() - started < 60:
        status, body = get(url + "api/runs", proc)
        if status == 0:
            break
        assert status == 200
        if body["runs"] and body["runs"][0]["status"] == "running":
            seen.append(body["runs"][0])
            status, snap = get(url + f"api/runs/{body['runs'][0]['run_id']}", proc)
            if status == 0:
                break
            assert status == 200 and snap["total"] == 121
            assert {row["name"] for row in snap["by_name"]} == {"start", "load", "square", "total"}
        time.sleep(0.3)
    proc.wait(60)
    output = procs.output(proc)
    assert proc.returncode == 0, output
    assert time.monotonic() - started < 60
    assert seen, output
    assert seen[0]["label"] == "dashboard_flows:local" and seen[0]["total"] == 121
    assert "l3_39: 4" in output
    # the dashboard stopped with the run
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "api/runs", timeout=2)


def test_failed_run_writes_its_report_with_the_traceback(procs: Processes) -> None:
    report = procs.home / "run.html"
    cmd = [CLI, "run", "dashboard_flows:failing", "-i", "n=1", "--no-fail-fast",
           "--report", str(report), "--progress", "none"]  # fmt: skip
    outcome = run(procs, cmd, 60, env=env(procs, DASHBOARD_E2E_DELAY="0"))
    assert outcome.code == 1, outcome.describe()
    assert f"report written to {report}" in outcome.stderr
    data = embedded(report)
    (snap,) = data["snapshots"].values()
    assert snap["status"] == "failed" and snap["counts"]["failed"] == 1
    assert snap["counts"]["done"] == 121
    (failure,) = snap["failures"]
    assert failure["task"] == "broken" and "broken on purpose at 2" in failure["message"]
    assert "raise RuntimeError" in failure["traceback"]


def test_report_command_writes_a_stored_run(procs: Processes) -> None:
    db, out = procs.home / "runs.db", procs.home / "stored.html"
    cmd = [CLI, "run", "dashboard_flows:failing", "-i", "n=1", "--no-fail-fast",
           "--store", str(db), "--progress", "none"]  # fmt: skip
    first = run(procs, cmd, 60, env=env(procs, DASHBOARD_E2E_DELAY="0"))
    assert first.code == 1, first.describe()
    run_id = re.search(r"run ([0-9a-f]{32}) \(recorded in", first.stderr)
    assert run_id, first.describe()
    cmd = [CLI, "report", run_id.group(1), "--store", str(db), "-o", str(out),
           "--dag", "dashboard_flows:failing"]  # fmt: skip
    outcome = run(procs, cmd, 30, env=env(procs))
    assert outcome.code == 0, outcome.describe()
    snap = embedded(out)["snapshots"][run_id.group(1)]
    assert snap["total"] == 122 and snap["counts"]["failed"] == 1
    assert any(e["source"] == "load" and e["target"] == "broken" for e in snap["graph"]["edges"])
    # an unknown run, a missing store: one error line naming it, exit 2
    missing = run(
        procs, [CLI, "report", "nope", "--store", str(db), "-o", str(out)], 30, env(procs)
    )
    assert missing.code == 2 and "no run 'nope'" in missing.stderr, missing.describe()
    nostore = procs.home / "none.db"
    gone = run(procs, [CLI, "report", "x", "--store", str(nostore), "-o", str(out)], 30, env(procs))
    assert gone.code == 2 and f"no run store at {str(nostore)!r}" in gone.stderr
    assert not nostore.exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nope", "expected [HOST:]PORT"),
        ("127.0.0.1:99999", "the port must be 0 to 65535"),
    ],
)
def test_bad_dashboard_value_is_a_usage_error(procs: Processes, value: str, message: str) -> None:
    cmd = [CLI, "run", "dashboard_flows:local", "-i", "n=1", "--dashboard", value]
    outcome = run(procs, cmd, 30, env=env(procs))
    assert outcome.code == 2 and message in outcome.stderr, outcome.describe()


def test_cluster_dashboard_shows_the_workers_and_their_pids(procs: Processes) -> None:
    cmd = [CLI, "cluster", "dashboard_flows:broker", "dashboard_flows:on_cluster",
           "--workers", "2", "-i", "n=1", "--dashboard", "127.0.0.1:0", "--progress", "none",
           "--json"]  # fmt: skip
    started = time.monotonic()
    proc = procs.spawn(cmd, env=env(procs, DASHBOARD_E2E_DELAY="2"))
    url = dashboard_url(procs, proc, timeout=60)
    workers: list[dict[str, Any]] = []
    busiest = 0  # the most tasks the workers said they held at once
    while proc.poll() is None and time.monotonic() - started < 90:
        status, body = get(url + "api/runs", proc)
        if status and body["runs"]:
            status, snap = get(url + f"api/runs/{body['runs'][0]['run_id']}", proc)
            if status == 200 and len(snap["workers"]) >= 2:
                workers = snap["workers"]
                busiest = max(busiest, sum(w["in_use"] for w in workers))
        time.sleep(0.3)
    proc.wait(90)
    output = procs.output(proc)
    assert proc.returncode == 0, output
    ready = re.search(r"2 worker\(s\) of pool 'default' ready: pids (\d+), (\d+)", output)
    assert ready, output
    assert {w["pid"] for w in workers} == {int(p) for p in ready.groups()}, workers
    assert all(w["state"] == "alive" and w["pool"] == "default" for w in workers)
    assert all(w["last_heartbeat"] is not None and w["last_heartbeat"] < 5 for w in workers)
    ran_on = {int(pid) for pid in re.findall(r'"pid":\s*(\d+)', output)}
    assert ran_on and ran_on <= {w["pid"] for w in workers}, output
    assert busiest > 1 and all(w["slots"] for w in workers), workers


def test_dashboard_keep_serves_the_finished_run_until_ctrl_c(procs: Processes) -> None:
    cmd = [CLI, "run", "dashboard_flows:local", "-i", "n=1", "--dashboard", "127.0.0.1:0",
           "--dashboard-keep", "--progress", "none"]  # fmt: skip
    proc = procs.spawn(cmd, env=env(procs, DASHBOARD_E2E_DELAY="0"))
    url = dashboard_url(procs, proc)
    wait_until(lambda: "keeps serving" in procs.output(proc), 30, "the run to end")
    status, body = get(url + "api/runs")
    assert status == 200 and body["runs"][0]["status"] == "succeeded"
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0, procs.output(proc)
    assert "l3_39: 4" in procs.output(proc)


def test_dashboard_keep_needs_a_dashboard(procs: Processes) -> None:
    cmd = [CLI, "run", "dashboard_flows:local", "-i", "n=1", "--dashboard-keep"]
    outcome = run(procs, cmd, 30, env=env(procs))
    assert outcome.code == 2 and "--dashboard-keep needs --dashboard" in outcome.stderr
