"""The engine of one CLI run: the command line's options over the pipeline's own, the broker the
tasks run on, and the inputs checked in command-line terms (`-i KEY=VALUE`).
"""

from __future__ import annotations

import argparse
import difflib
import os
from typing import Any

from ..compose import Flow
from ..dataflow.dag import DAG
from ..errors import CLIError, DAGValidationError
from ..execution_engine import ExecutionEngine, MissingInputError
from ..pipeline import DataflowPipeline
from .args import DEFAULT_MAX_PARALLEL
from .console import Console
from .output import PROG, input_error
from .targets import full_dag, tasks_broker


def make_engine(
    runnable: DataflowPipeline | DAG | Flow,
    inputs: dict[str, Any],
    args: argparse.Namespace,
    broker: Any = None,
) -> ExecutionEngine:
    """The engine for one CLI run: inputs checked in CLI terms, the broker the tasks run on,
    and the CLI's options (a default bound on the tasks in flight)."""
    options: dict[str, Any] = {}
    own = runnable.engine_options if isinstance(runnable, DataflowPipeline) else {}
    if args.max_parallel is not None or own.get("max_parallel") is None:
        options["max_parallel"] = args.max_parallel or DEFAULT_MAX_PARALLEL
    if args.no_fail_fast:
        options["fail_fast"] = False
    if args.store:
        from ..store import RunStore

        options["store"] = RunStore(args.store, target=recorded_target(args.target))
    if getattr(args, "metrics", None) or getattr(args, "metrics_push", None):
        from ..metrics import EngineMetrics

        options["metrics"] = EngineMetrics()
    try:
        full = full_dag(runnable)
        check_cli_inputs(full, inputs)
        if isinstance(runnable, Flow):
            return runnable.engine(broker or tasks_broker(full), **options)
        if isinstance(runnable, DAG):
            return ExecutionEngine(broker or tasks_broker(full), runnable, **options)
        if broker is not None:
            runnable.broker = broker
        return runnable.create_engine(inputs, **options)
    except (MissingInputError, DAGValidationError) as exc:
        raise input_error(exc) from exc


def recorded_target(target: str) -> str:
    """`target` as a run row keeps it for `runs restart`: a file path made absolute, so the
    run can be restarted from another directory (a module name is found as it was found)."""
    module, sep, attr = target.rpartition(":")
    if module.endswith(".py") or os.sep in module or "/" in module:
        return f"{os.path.abspath(module)}{sep}{attr}"
    return target


def check_cli_inputs(dag: DAG, inputs: dict[str, Any]) -> None:
    """Each external input of `dag` missing from `inputs`: one error naming the key, the
    tasks needing it, the -i option to give it, and the closest given key (a typo?)."""
    missing = [key for key in dag.external_inputs if key not in inputs]
    if not missing:
        return
    unused = [key for key in inputs if key not in dag.external_inputs]
    parts = []
    for key in missing:
        consumers = [dag.nodes[i].task_name for i in dag.graph.consumers(key)]
        names = ", ".join(repr(n) for n in consumers[:5])
        if len(consumers) > 5:
            names += f" and {len(consumers) - 5} more"
        task_word = "task" if len(consumers) == 1 else "tasks"
        part = f"missing input {key!r} (needed by {task_word} {names}): give it with -i {key}=VALUE"
        close = difflib.get_close_matches(key, unused, n=1, cutoff=0.6)
        if close:
            part += f" (-i {close[0]}=... was given: a typo for {key!r}?)"
        parts.append(part)
    raise CLIError("; ".join(parts))


def warn_unused(dag: DAG, inputs: dict[str, Any], console: Console) -> None:
    consumed = set(dag.external_inputs)
    unused = [k for k in inputs if k not in consumed and dag.graph.producer(k) is None]
    if unused:
        console.echo(
            f"{PROG}: warning: no task consumes input(s) {', '.join(repr(k) for k in unused)}"
        )
