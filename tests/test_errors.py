"""One exception root: everything the package raises derives from DataflowError, and keeps
the builtin base users (and taskiq-flow's documentation) catch."""

import asyncio
import importlib
import inspect
import pkgutil

import taskiq_dataflow
from taskiq_dataflow import DataflowError


def package_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(taskiq_dataflow.__path__, "taskiq_dataflow."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__.startswith("taskiq_dataflow")
                and obj.__module__ != "taskiq_dataflow._core"  # pyo3's own, re-raised as ours
            ):
                found[f"{obj.__module__}.{name}"] = obj
    return found


def test_every_exception_of_the_package_derives_from_dataflow_error():
    found = package_exceptions()
    assert len(found) >= 15
    strays = sorted(name for name, cls in found.items() if not issubclass(cls, DataflowError))
    assert not strays, strays


def test_every_exception_is_defined_in_errors_and_re_exported_where_it_was():
    from taskiq_dataflow import errors, store, streams
    from taskiq_dataflow.cluster import broker, protocol

    public = {c for c in package_exceptions().values() if not c.__name__.startswith("_")}
    assert {c.__module__ for c in public} == {"taskiq_dataflow.errors"}
    assert store.StoreError is errors.StoreError
    assert streams.StreamError is errors.StreamError
    assert broker.ClusterError is errors.ClusterError
    assert protocol.ProtocolError is errors.ProtocolError
    assert protocol.EncodeError is errors.EncodeError


def test_the_builtin_bases_stay():
    from taskiq_dataflow import errors

    assert issubclass(errors.DAGValidationError, ValueError)
    assert issubclass(errors.MissingInputError, ValueError)
    assert issubclass(errors.TaskFailedError, RuntimeError)
    assert issubclass(errors.ClusterError, RuntimeError)
    assert issubclass(errors.EncodeError, TypeError)
    assert issubclass(errors.StoreError, LookupError)
    assert not issubclass(errors.ExecutionCancelled, asyncio.CancelledError)
