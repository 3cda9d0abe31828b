"""`scripts/bench`, the command users' benchmark suites call (README, "Benchmarks"): what it
lists exists, and a wrong name is refused before anything is installed or measured."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "bench"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_every_listed_bench_names_a_script_that_exists():
    started = time.monotonic()
    listed = bench("--list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == ["dag", "graph", "registry", "engine", "latency", "cluster", "scale"]
    scripts = re.findall(r"\(benches/(\w+\.py)\)", listed.stdout)
    assert len(scripts) == len(names)
    for script in scripts:
        assert (ROOT / "benches" / script).is_file(), script
    # listing installs nothing and measures nothing
    assert time.monotonic() - started < 5


def test_an_unknown_bench_is_refused_with_its_name():
    refused = bench("--quick", "latency", "dags")
    assert refused.returncode == 2
    assert "unknown bench 'dags'" in refused.stderr
    assert "scripts/bench --list" in refused.stderr


def test_the_hop_floor_bench_measures_round_trips_on_its_own_server():
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "bench_hop_floor.py"), "--hops", "50",
         "--rounds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = re.search(r"50 hops x 2 rounds: median (\d+) µs/hop, best (\d+) µs/hop", done.stdout)
    assert found is not None, done.stdout
    assert 0 < int(found[2]) <= int(found[1])
    assert time.monotonic() - started < 30
