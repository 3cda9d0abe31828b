"""The CLI and compose packages are split by level: a module imports only modules below it, so
there is no import cycle, no subcommand imports another, and the map runtime can be replaced
without touching the Flow DSL. Importing taskiq_dataflow does not import the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import taskiq_dataflow

PACKAGE = Path(taskiq_dataflow.__file__).parent

# a module may import only modules of a strictly lower level within its package
LAYERS = {
    "cli": {
        "output": 0,
        "args": 1,
        "console": 1,
        "targets": 1,
        "progress": 2,
        "engine": 2,
        "dashboard": 2,
        "runner": 3,
        "run": 4,
        "graph": 4,
        "worker": 4,
        "server": 4,
        "cluster": 4,
        "report": 4,
        "__init__": 5,
        "__main__": 6,
    },
    "compose": {"binding": 0, "map_node": 0, "flow": 1, "__init__": 2},
}


def sibling_imports(path: Path) -> set[str]:
    """The modules of its own package that `path` imports (relative imports of level 1)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import x, y
                found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_each_module_imports_only_lower_levels(package):
    levels = LAYERS[package]
    modules = sorted(p.stem for p in (PACKAGE / package).glob("*.py"))
    unplaced = [m for m in modules if m not in levels]
    assert not unplaced, f"{package}/: give {unplaced} a level in LAYERS"
    wrong = [
        f"{package}/{module}.py (level {levels[module]}) imports {other} (level {levels[other]})"
        for module in modules
        for other in sorted(sibling_imports(PACKAGE / package / f"{module}.py"))
        if other in levels and levels[other] >= levels[module]
    ]
    assert not wrong, "; ".join(wrong)


def test_importing_the_package_does_not_import_the_cli():
    code = (
        "import sys, taskiq_dataflow\n"
        "cli = sorted(m for m in sys.modules if m.startswith('taskiq_dataflow.cli'))\n"
        "assert not cli, cli\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_all_nats_code_lives_under_cluster():
    """Only modules of taskiq_dataflow/cluster/ import nats-py or taskiq-nats."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "cluster" and path.parent.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            found += [
                f"{path.relative_to(PACKAGE)}: {n}"
                for n in names
                if n.split(".")[0] in ("nats", "taskiq_nats")
            ]
    assert not found, found
