"""python/taskiq_dataflow/_core.pyi must describe the compiled module exactly.

The stub is parsed with `ast`; every public class, function, method and property in it must exist
at runtime with the same kind, and every public runtime member must be in the stub. Parameter
names, order and defaults are compared with the signatures pyo3 exposes (`__text_signature__`).
"""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import pytest
from taskiq_dataflow import _core

STUB = Path(_core.__file__).with_name("_core.pyi")
TREE = ast.parse(STUB.read_text(), filename=str(STUB))
DUNDERS = {"__init__", "__len__"}


def public(name: str) -> bool:
    return not name.startswith("_") or name in DUNDERS


def decorators(func: ast.FunctionDef) -> set[str]:
    return {d.id for d in func.decorator_list if isinstance(d, ast.Name)}


STUB_CLASSES = {node.name: node for node in TREE.body if isinstance(node, ast.ClassDef)}
STUB_FUNCTIONS = {node.name: node for node in TREE.body if isinstance(node, ast.FunctionDef)}
STUB_VARIABLES = {
    node.target.id
    for node in TREE.body
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
}
STUB_ALIASES = {
    target.id
    for node in TREE.body
    if isinstance(node, ast.Assign)
    for target in node.targets
    if isinstance(target, ast.Name)
}
STUB_MEMBERS = {
    (cls, item.name): item
    for cls, node in STUB_CLASSES.items()
    for item in node.body
    if isinstance(item, ast.FunctionDef)
}


def runtime_members(cls: type) -> set[str]:
    """Public members defined by the class itself (pyo3 defines `__new__`, not `__init__`)."""
    names = {name for name in vars(cls) if public(name)}
    if "__new__" in vars(cls) and cls.__init__ is object.__init__:
        names.add("__init__")
    return names


def test_stub_parses_and_describes_the_module():
    assert STUB.is_file()
    assert set(STUB_CLASSES) == {"Graph", "Scheduler", "CycleError", "SchedulerError"}
    assert {"Problem", "State"} == STUB_ALIASES  # type aliases: typing only, not at runtime


def test_every_stub_module_member_exists_at_runtime():
    for name in [*STUB_CLASSES, *STUB_FUNCTIONS, *STUB_VARIABLES]:
        assert hasattr(_core, name), f"_core.pyi declares {name}, which _core does not have"
    for name in STUB_CLASSES:
        assert inspect.isclass(getattr(_core, name)), f"{name} is a class in the stub only"
    for name in STUB_FUNCTIONS:
        assert callable(getattr(_core, name)), f"{name} is a function in the stub only"
    assert isinstance(_core.__version__, str)


def test_every_runtime_module_member_is_in_the_stub():
    stubbed = set(STUB_CLASSES) | set(STUB_FUNCTIONS) | STUB_VARIABLES
    runtime = {name for name in dir(_core) if not name.startswith("_")} | set(_core.__all__)
    missing = sorted(runtime - stubbed)
    assert not missing, f"_core has {missing}, which _core.pyi does not declare"


@pytest.mark.parametrize("name", sorted(STUB_CLASSES))
def test_class_bases(name):
    runtime = getattr(_core, name)
    for base in STUB_CLASSES[name].bases:
        base_name = ast.unparse(base)
        expected = getattr(builtins, base_name, None)
        assert expected is not None, f"unknown base {base_name} of {name} in the stub"
        assert issubclass(runtime, expected), f"{name} is not a {base_name} at runtime"


@pytest.mark.parametrize("name", sorted(STUB_CLASSES))
def test_class_members_match(name):
    runtime = getattr(_core, name)
    stubbed = {member for cls, member in STUB_MEMBERS if cls == name and public(member)}
    actual = runtime_members(runtime)
    assert not sorted(stubbed - actual), (
        f"_core.pyi declares {name}.{sorted(stubbed - actual)}, missing at runtime"
    )
    assert not sorted(actual - stubbed), (
        f"_core.{name} has {sorted(actual - stubbed)}, which _core.pyi does not declare"
    )


def member_kind(cls: type, name: str) -> str:
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, staticmethod):
        return "staticmethod"
    if isinstance(raw, classmethod) or inspect.ismethod(getattr(cls, name)):
        return "classmethod"
    if inspect.isdatadescriptor(raw) and not callable(raw):
        return "property"
    return "method"


def stub_kind(func: ast.FunctionDef) -> str:
    found = decorators(func) & {"staticmethod", "classmethod", "property"}
    return found.pop() if found else "method"


@pytest.mark.parametrize(
    ("cls", "name"), sorted(key for key in STUB_MEMBERS if key[1] in vars(getattr(_core, key[0])))
)
def test_member_kind(cls, name):
    runtime = getattr(_core, cls)
    assert member_kind(runtime, name) == stub_kind(STUB_MEMBERS[cls, name]), (
        f"{cls}.{name} is a {member_kind(runtime, name)} at runtime but a "
        f"{stub_kind(STUB_MEMBERS[cls, name])} in _core.pyi"
    )


# -- signatures --------------------------------------------------------------------------------


def stub_params(func: ast.FunctionDef) -> list[tuple[str, str, str | None]]:
    """(name, kind, default source) of each parameter, `self` dropped for methods."""
    args = func.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = [
        (a.arg, "positional_only" if i < len(args.posonlyargs) else "positional_or_keyword", d)
        for i, (a, d) in enumerate(zip(positional, defaults, strict=True))
    ]
    if args.vararg:
        params.append((args.vararg.arg, "var_positional", None))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append((a.arg, "keyword_only", d))
    if args.kwarg:
        params.append((args.kwarg.arg, "var_keyword", None))
    if stub_kind(func) in ("method", "classmethod") and params and params[0][0] in ("self", "cls"):
        params = params[1:]
    return [(n, k, None if d is None else ast.unparse(d)) for n, k, d in params]


def text_signature_params(obj) -> list[tuple[str, str | None]] | None:
    """(name, default source) from `__text_signature__`, for what inspect cannot parse
    (a parameter named like a Python keyword, e.g. `from`)."""
    text = getattr(obj, "__text_signature__", None)
    if not text:
        return None
    params = []
    for part in text.strip().removeprefix("(").removesuffix(")").split(","):
        part = part.strip()
        if not part or part in ("/", "*") or part.startswith("$"):
            continue
        name, _, default = part.partition("=")
        params.append((name.strip().lstrip("*"), default.strip() or None))
    return params


def runtime_params(cls: type, name: str) -> list[tuple[str, str | None]] | None:
    """(name, default source) of the runtime callable's parameters, `self` dropped."""
    obj = cls if name == "__init__" else getattr(cls, name)
    try:
        sig = inspect.signature(obj)
    except ValueError:
        return text_signature_params(obj)
    params = list(sig.parameters.values())
    is_method = name != "__init__" and member_kind(cls, name) == "method"
    if is_method and params and params[0].name == "self":
        params = params[1:]
    return [
        (p.name, None if p.default is inspect.Parameter.empty else repr(p.default)) for p in params
    ]


CALLABLES = sorted(
    key
    for key, func in STUB_MEMBERS.items()
    if stub_kind(func) != "property" and hasattr(getattr(_core, key[0]), key[1])
)


@pytest.mark.parametrize(("cls", "name"), CALLABLES)
def test_signature(cls, name):
    runtime_cls = getattr(_core, cls)
    actual = runtime_params(runtime_cls, name)
    if actual is None:
        pytest.skip(f"{cls}.{name} has no introspectable signature")
    expected = stub_params(STUB_MEMBERS[cls, name])
    where = (
        f"{cls}.{name}: _core.pyi has ({', '.join(n for n, _, _ in expected)}), "
        f"runtime has ({', '.join(n for n, _ in actual)})"
    )
    assert len(actual) == len(expected), where
    for (stub_name, kind, stub_default), (run_name, run_default) in zip(
        expected, actual, strict=True
    ):
        if kind != "positional_only":  # a positional-only name is never used by callers
            assert stub_name == run_name, (
                f"{where}: parameter {stub_name!r} is {run_name!r} at runtime, so calling "
                f"{cls}.{name}({stub_name}=...) as the stub allows raises TypeError"
            )
        assert (stub_default is None) == (run_default is None), (
            f"{where}: {stub_name!r} has default {stub_default} in the stub, {run_default} "
            "at runtime"
        )
        if stub_default not in (None, "..."):
            assert ast.literal_eval(stub_default) == ast.literal_eval(run_default), where


def test_signatures_were_compared():
    """Guard: pyo3 exposes signatures, so nearly every method is really compared above."""
    unreadable = [
        f"{cls}.{name}"
        for cls, name in CALLABLES
        if runtime_params(getattr(_core, cls), name) is None
    ]
    assert not unreadable, f"no signature at runtime for {unreadable}"


@pytest.mark.parametrize(
    ("cls", "name"),
    sorted(key for key, func in STUB_MEMBERS.items() if stub_kind(func) == "property"),
)
def test_property_values_have_the_stub_type(cls, name):
    graph = _core.Graph([[], ["x"]], [["x"], ["y"]])
    instance = graph if cls == "Graph" else _core.Scheduler(graph)
    annotation = ast.unparse(STUB_MEMBERS[cls, name].returns)
    value = getattr(instance, name)
    assert type(value).__name__ == annotation, f"{cls}.{name} is {value!r}, stub says {annotation}"
