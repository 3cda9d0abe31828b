"""The dataflow layer imports one way: graph <- registry <- builder <- dag, graph <-
visualization.dag_visualizer <- visualization.mermaid.

The import graph is read from the source with `ast`, counting every import statement wherever it
is (module level, inside a function, under `if TYPE_CHECKING:`), since a lazy import still ties
the two modules together: the cycle only moves from import time to call time."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import taskiq_dataflow

PACKAGE_DIR = Path(taskiq_dataflow.__file__).parent
LAYER = (
    "taskiq_dataflow.dataflow.builder",
    "taskiq_dataflow.dataflow.dag",
    "taskiq_dataflow.dataflow.graph",
    "taskiq_dataflow.dataflow.registry",
    "taskiq_dataflow.visualization",
    "taskiq_dataflow.visualization.dag_visualizer",
    "taskiq_dataflow.visualization.mermaid",
)


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Module name -> source file, for every .py under `root` (a package named `package`)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def extension_modules(root: Path, package: str) -> set[str]:
    """Compiled modules (known by their stubs or shared objects), which import nothing back."""
    names = {p.name.split(".")[0] for p in root.glob("*.so")} | {p.stem for p in root.glob("*.pyi")}
    return {f"{package}.{name}" for name in names}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve(name, is_package, node.module, node.level)
            for alias in node.names:
                # `from . import x` imports the module x when there is one, else a name of base
                child = f"{base}.{alias.name}"
                found.add(child if child in known else base)
    return {m for m in found if m in known}


def resolve(name: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = name.split(".")
    anchor = parts if is_package else parts[:-1]
    base = anchor[: len(anchor) - (level - 1)]
    return ".".join([*base, module] if module else base)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    files = module_files(root, package)
    known = set(files) | extension_modules(root, package)
    return {name: imports_of(name, path, known) - {name} for name, path in files.items()}


def cycles_through(graph: dict[str, set[str]], modules: tuple[str, ...]) -> list[list[str]]:
    """For each module in `modules`, a shortest import path that leads back to it, if any."""
    found = []
    for start in modules:
        path = shortest_path_back(graph, start)
        if path:
            found.append(path)
    return found


def shortest_path_back(graph: dict[str, set[str]], start: str) -> list[str] | None:
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph.get(module, ())):
                if target == start:
                    path = [module]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if target not in parents:
                    parents[target] = module
                    following.append(target)
        frontier = following
    return None


@functools.cache
def package_graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE_DIR, "taskiq_dataflow")


def test_no_import_cycle_through_the_dag_registry_or_visualizer():
    graph = package_graph()
    assert set(LAYER) <= set(graph), "a module of the layer was renamed: update LAYER"
    cycles = cycles_through(graph, LAYER)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_dag_imports_neither_the_registry_nor_the_visualizer():
    graph = package_graph()
    below = graph["taskiq_dataflow.dataflow.graph"]
    assert "taskiq_dataflow.dataflow.registry" not in below
    assert not {m for m in below if m.startswith("taskiq_dataflow.visualization")}
    # the visualizer needs the DAG only, not the registry or the documented re-export module
    visualizer = graph["taskiq_dataflow.visualization.dag_visualizer"]
    assert visualizer & set(LAYER) == {"taskiq_dataflow.dataflow.graph"}
    assert graph["taskiq_dataflow.visualization.mermaid"] & set(LAYER) == {
        "taskiq_dataflow.dataflow.graph",
        "taskiq_dataflow.visualization.dag_visualizer",
    }


def test_the_checker_sees_function_level_and_type_checking_imports(tmp_path):
    # The shape dag.py had: the visualizer imported inside a method, the DAG imported back for
    # type hints only. The checker must report it, or the tests above prove nothing.
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .dag import DAG\n")
    (pkg / "sub" / "dag.py").write_text(
        "class DAG:\n    def print(self):\n        from ..viz import draw\n        draw(self)\n"
    )
    (pkg / "viz.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.dag import DAG\n"
    )
    graph = import_graph(pkg, "pkg")
    assert cycles_through(graph, ("pkg.viz",)) == [["pkg.viz", "pkg.sub.dag", "pkg.viz"]]
    assert graph["pkg.sub"] == {"pkg.sub.dag"}
