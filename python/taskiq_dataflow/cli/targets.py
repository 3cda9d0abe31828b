"""What the command line names: `module:attr` (or `path/to/file.py:attr`) resolved to a pipeline,
a `--broker`, the broker module of `cluster`, and the broker the pipeline's tasks declare.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from typing import Any

from ..compose import Flow
from ..dataflow.dag import DAG, DAGBuilder
from ..dataflow.registry import DataflowRegistry
from ..errors import CLIError
from ..pipeline import DataflowPipeline, cluster_broker_of
from ..task import get_spec
from .output import describe, where

TARGET_KINDS = "a DataflowRegistry, DAG, DAGBuilder, DataflowPipeline or Flow"


def _import_module(name: str) -> Any:
    """Import a module by dotted name or file path, with the current directory importable."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    is_path = name.endswith(".py") or os.sep in name or "/" in name
    try:
        if is_path:
            if not os.path.isfile(name):
                raise CLIError(f"cannot load {name!r}: no such file")
            mod_name = os.path.splitext(os.path.basename(name))[0]
            spec = importlib.util.spec_from_file_location(mod_name, name)
            if spec is None or spec.loader is None:
                raise CLIError(f"cannot load {name!r}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(name)
    except CLIError:
        raise
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not is_path and (name == missing or name.startswith(missing + ".")):
            raise CLIError(
                f"cannot import module {name!r}: no module named {missing!r} (searched the "
                "current directory and PYTHONPATH; check the spelling of the module:attr target)"
            ) from exc
        raise CLIError(
            f"importing module {name!r} failed{where(exc)}: {describe(exc)} "
            "(a dependency of the module is not installed?)"
        ) from exc
    except SyntaxError as exc:
        at = f" at {exc.filename}:{exc.lineno}" if exc.filename else ""
        raise CLIError(f"module {name!r} has a syntax error{at}: {exc.msg}") from exc
    except Exception as exc:
        raise CLIError(f"importing module {name!r} raised{where(exc)} {describe(exc)}") from exc


def _is_target(obj: Any) -> bool:
    return isinstance(obj, (DataflowRegistry, DAG, DAGBuilder, DataflowPipeline, Flow))


def _candidates(module: Any) -> list[str]:
    """Names in a module that could be a target: pipeline objects and its own functions."""
    names = []
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        if _is_target(value) or (
            inspect.isfunction(value)
            and value.__module__ == module.__name__
            and get_spec(value) is None
            and not attr.endswith("__taskiq_original")
        ):
            names.append(attr)
    return names


async def load_target(spec: str) -> Any:
    """Resolve `module:attr` to a DataflowRegistry, DAG, DAGBuilder, DataflowPipeline or Flow."""
    module_name, sep, attr_path = spec.rpartition(":")
    if not sep or not module_name or not attr_path:
        raise CLIError(
            f"target {spec!r} is not of the form module:attr (for example "
            "myproject.flows:registry or flows.py:build_pipeline)"
        )
    module = _import_module(module_name)
    obj: Any = module
    for i, part in enumerate(attr_path.split(".")):
        if not hasattr(obj, part):
            owner = module_name if i == 0 else f"{module_name}:{'.'.join(attr_path.split('.')[:i])}"
            hint = ""
            if i == 0:
                names = _candidates(module)
                hint = (
                    f"; candidates in it: {', '.join(names[:15])}"
                    if names
                    else f"; it defines no {TARGET_KINDS} and no functions"
                )
            raise CLIError(f"{owner!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    if _is_target(obj):
        return obj
    if get_spec(obj) is not None or hasattr(obj, "kiq"):
        raise CLIError(
            f"{spec!r} is a single task, not a pipeline: point at the DataflowRegistry, DAG, "
            "DAGBuilder, DataflowPipeline or Flow that contains it"
        )
    if not callable(obj):
        raise CLIError(
            f"{spec!r} is of type {type(obj).__name__}; the target must be {TARGET_KINDS} "
            "or a zero-argument callable returning one"
        )
    try:
        signature = inspect.signature(obj)
        signature.bind()
    except TypeError as exc:
        raise CLIError(
            f"{spec!r} is a callable that needs arguments ({exc}); the target must be "
            f"{TARGET_KINDS} or a zero-argument callable returning one"
        ) from exc
    except ValueError:
        pass  # no signature (a builtin): just call it
    try:
        made = obj()
        if inspect.isawaitable(made):
            made = await made
    except Exception as exc:
        raise CLIError(f"calling {spec}() raised{where(exc)} {describe(exc)}") from exc
    if not _is_target(made):
        raise CLIError(
            f"{spec}() returned an object of type {type(made).__name__}; it must return "
            f"{TARGET_KINDS}"
        )
    return made


def as_pipeline(target: Any, broker: Any = None) -> DataflowPipeline | DAG | Flow:
    """A DAG or a Flow stays itself; everything else becomes a DataflowPipeline (on `broker`,
    else on its tasks' DataflowNatsBroker if they have one)."""
    if isinstance(target, DAG | DataflowPipeline | Flow):
        return target
    if isinstance(target, DataflowRegistry):
        return DataflowPipeline.from_registry(target, broker)
    if isinstance(target, DAGBuilder):
        registry = getattr(target, "registry", None)
        if not isinstance(registry, DataflowRegistry):
            registry = target.registry
        return DataflowPipeline.from_registry(registry, broker)
    raise TypeError(f"not a pipeline target: {type(target).__name__}")


def graph_dag(target: Any) -> DAG:
    runnable = as_pipeline(target)
    if isinstance(runnable, Flow):
        return runnable.build_dag()
    return runnable if isinstance(runnable, DAG) else runnable.dag


def load_broker_option(spec: str) -> Any:
    """`--broker module:attr`: a taskiq broker, or a zero-argument callable returning one."""
    from taskiq import AsyncBroker

    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise CLIError(
            f"--broker {spec!r} is not of the form module:attr (for example flows:broker)"
        )
    module = _import_module(module_name)
    if not hasattr(module, attr):
        raise CLIError(f"--broker {spec!r}: module {module_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if callable(obj) and not isinstance(obj, AsyncBroker):
        try:
            inspect.signature(obj).bind()
        except TypeError:
            raise CLIError(
                f"--broker {spec!r} is a callable that needs arguments; name a taskiq broker "
                "or a zero-argument function returning one"
            ) from None
        except ValueError:
            pass  # no signature (a builtin): just call it
        obj = obj()
    if not isinstance(obj, AsyncBroker):
        raise CLIError(f"--broker {spec!r} is a {type(obj).__name__}, not a taskiq broker")
    return obj


def load_cluster_broker(spec: str) -> Any:
    from ..cluster.serve import load_broker

    module_name = spec.partition(":")[0]
    _import_module(module_name)  # one clear line for an unimportable module, cwd importable
    try:
        return load_broker(spec)
    except (ImportError, ValueError) as exc:
        raise CLIError(f"cannot load broker {spec!r}: {exc}") from exc


def tasks_broker(dag: DAG) -> Any:
    return cluster_broker_of(dag.distinct_tasks())


def full_dag(runnable: DataflowPipeline | DAG | Flow) -> DAG:
    """The validated DAG with every input the run needs as an external input."""
    if isinstance(runnable, Flow):
        return runnable.build_dag()
    if isinstance(runnable, DAG):
        runnable.validate()
        return runnable
    return runnable.dag
