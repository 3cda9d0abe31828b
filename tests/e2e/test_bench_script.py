"""`scripts/bench`, the command users' benchmark suites call (README, "Benchmarks"): what it
lists exists, and a wrong name is refused before anything is installed or measured."""

from __future__ import annotations

import re
import subprocess
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
