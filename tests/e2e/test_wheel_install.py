"""The wheel of scripts/wheel installs where there is no Rust toolchain and runs the demo.

Each case makes a fresh venv (no `--system-site-packages`) whose PATH holds no cargo, rustc or
maturin, installs the wheel from dist/ into it with its dependencies from PyPI (wheels only: no
compiler either), and runs examples/demo.py and the same pipeline through the `taskiq-dataflow`
command, from a directory outside the repository so that only the installed package can be
imported. The wheel is abi3, so besides the suite's own CPython it goes on the newest other
CPython found here.

scripts/test builds the wheel before pytest; a wheel missing from dist/, or older than the sources
it is built from, is built here first by scripts/wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .support import ROOT, Outcome, Processes, run

pytestmark = pytest.mark.e2e

DIST = ROOT / "dist"
TOOLCHAIN = ("cargo", "rustc", "maturin")
BUILD_TIMEOUT = 900.0  # a build from scratch on two busy cores
INSTALL_TIMEOUT = 300.0  # the wheel and ~25 dependencies from PyPI
DEMO_TIMEOUT = 60.0  # the demo runs four tasks in-process: a second when all is well
# what the wheel is built from: a newer one of these means dist/ holds an old build
SOURCES = [ROOT / "Cargo.toml", ROOT / "pyproject.toml", ROOT / "README.md"]
SOURCE_TREES = {ROOT / "rust": ("*.rs", "*.toml"), ROOT / "python": ("*.py", "*.pyi", "py.typed")}
REPORT = "Report: {'report_id': 'RPT-001', 'summary': {'total': 12, 'count': 3}}"


def newest_source() -> float:
    files = list(SOURCES)
    for tree, patterns in SOURCE_TREES.items():
        files += [f for pattern in patterns for f in tree.rglob(pattern)]
    return max(f.stat().st_mtime for f in files)


def built_wheel(procs: Processes) -> Path:
    """dist/'s one wheel, built by scripts/wheel first when missing or out of date."""
    wheels = sorted(DIST.glob("taskiq_dataflow-*.whl"))
    if len(wheels) != 1 or wheels[0].stat().st_mtime < newest_source():
        env = {**os.environ, "DATAFLOW_E2E_TAG": procs.tag}
        outcome = run(procs, ["bash", str(ROOT / "scripts" / "wheel")], BUILD_TIMEOUT, env=env)
        assert outcome.code == 0, f"scripts/wheel failed; {outcome.describe()}"
        wheels = sorted(DIST.glob("taskiq_dataflow-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {DIST} after scripts/wheel, found {wheels}"
    return wheels[0]


def python_version(python: str) -> tuple[int, int] | None:
    """(major, minor) of a working interpreter; None for a missing one or a pyenv shim of a
    version that is not selected."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    major, minor = out.split()
    return int(major), int(minor)


def other_cpython() -> str | None:
    """The newest CPython >= 3.12 on PATH or under pyenv, other than the suite's."""
    for minor in range(20, 11, -1):
        name = f"python3.{minor}"
        pyenv = sorted((Path.home() / ".pyenv" / "versions").glob(f"3.{minor}.*/bin/{name}"))
        for candidate in [shutil.which(name), *map(str, reversed(pyenv))]:
            if candidate and python_version(candidate) == (3, minor) != sys.version_info[:2]:
                return candidate
    return None


def base_python() -> str:
    """The suite's interpreter itself, not its venv (a fresh venv is made from it)."""
    return str(getattr(sys, "_base_executable", sys.executable))


def no_toolchain_env(procs: Processes, venv: Path) -> dict[str, str]:
    """A user's shell without Rust: the venv's bin, then system dirs that hold none of cargo,
    rustc, maturin; no variables pointing at a toolchain, another venv or the checkout (the
    package must come from the wheel, not the PYTHONPATH procs.env() gives other tests)."""
    env = procs.env()
    for var in (
        "CARGO_HOME", "RUSTUP_HOME", "PYENV_ROOT", "PYENV_VERSION", "VIRTUAL_ENV", "PYTHONPATH"
    ):  # fmt: skip
        env.pop(var, None)
    system = ["/usr/local/bin", "/usr/bin", "/bin"]
    clean = [d for d in system if not any((Path(d) / tool).exists() for tool in TOOLCHAIN)]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *clean])
    # pip's download cache of the real user: the packages still come from PyPI's index
    env["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
    return env


def check_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    extensions = [n for n in names if n.endswith((".so", ".pyd"))]
    assert extensions == ["taskiq_dataflow/_core.abi3.so"], (
        f"{wheel.name}: expected the one abi3 extension module, found {extensions}"
    )
    assert "-abi3-" in wheel.name and "manylinux_2_17_x86_64" in wheel.name, (
        f"{wheel.name} is not an abi3 manylinux_2_17 wheel"
    )


def install_and_run_demo(procs: Processes, python: str, tmp_path: Path) -> None:
    wheel = built_wheel(procs)
    check_wheel_contents(wheel)
    venv = tmp_path / "venv"
    env = no_toolchain_env(procs, venv)
    work = tmp_path / "work"  # not the repository: only the installed package is importable
    work.mkdir()
    shutil.copy(ROOT / "examples" / "demo.py", work / "demo.py")

    def step(cmd: list[str], timeout: float) -> Outcome:
        outcome = run(procs, cmd, timeout, env=env, cwd=work)
        assert outcome.code == 0, f"{cmd} failed; {outcome.describe()}"
        assert outcome.seconds < timeout
        return outcome

    step([python, "-m", "venv", str(venv)], 120)
    py = str(venv / "bin" / "python")
    probe = (
        "import json, shutil, sys; "
        "print(json.dumps({t: shutil.which(t) for t in sys.argv[1:]} | {'prefix': sys.prefix}))"
    )
    found = json.loads(step([py, "-c", probe, *TOOLCHAIN], 30).stdout)
    assert found.pop("prefix") == str(venv)
    assert found == dict.fromkeys(TOOLCHAIN), f"a Rust toolchain is on the venv's PATH: {found}"

    # wheels only: a dependency that had to be built from source would need a compiler too
    install = [py, "-m", "pip", "install", "--only-binary=:all:", "--no-compile", "--quiet"]
    step([*install, str(wheel)], INSTALL_TIMEOUT)

    imported = step([py, "-c", "import taskiq_dataflow._core as c; print(c.__file__)"], 30)
    where = imported.stdout.strip()
    assert Path(where).is_relative_to(venv) and where.endswith("_core.abi3.so"), where

    out = step([py, "demo.py"], DEMO_TIMEOUT).stdout
    assert "Order: ['load_data', 'clean_data', 'extract_features', 'generate_report']" in out, out
    assert out.rstrip().endswith(REPORT), out

    cli = [str(venv / "bin" / "taskiq-dataflow"), "run", "demo:registry", "-i", "source=data.csv"]
    ran = step(cli, DEMO_TIMEOUT)
    assert 'features: {"total": 12, "count": 3}' in ran.stdout, ran.describe()
    assert "finished succeeded: 4/4 succeeded, 0 failed, 0 skipped" in ran.stderr, ran.describe()


def test_the_wheel_installs_and_runs_the_demo_without_rust(procs: Processes, tmp_path: Path):
    install_and_run_demo(procs, base_python(), tmp_path)


def test_the_abi3_wheel_runs_on_another_cpython(procs: Processes, tmp_path: Path):
    python = other_cpython()
    if python is None:
        pytest.skip("no CPython >= 3.12 other than the suite's on PATH or under ~/.pyenv")
    install_and_run_demo(procs, python, tmp_path)
