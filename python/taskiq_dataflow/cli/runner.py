"""One run of a pipeline as the command line shows it: target loaded, engine made, progress on
stderr, Ctrl-C and SIGTERM cancelling the run, a taskiq broker started around it, outputs on
stdout. The body of `run`, shared with `cluster` (which passes the broker its workers serve).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

from ..errors import CLIError, ClusterError, DAGValidationError
from ..execution_engine import (
    DataflowExecutionError,
    ExecutionCancelled,
    ExecutionEngine,
    MissingInputError,
    TaskFailedError,
)
from ..pipeline import BrokerConflictError
from .args import parse_inputs
from .console import Console, logging_to
from .dashboard import watching
from .engine import make_engine, warn_unused
from .output import (
    EXIT_FAILED,
    PROG,
    cancelled_error,
    describe,
    format_outputs,
    input_error,
    summarise_failures,
    traceback_hint,
    tracebacks,
)
from .progress import Progress
from .targets import as_pipeline, load_broker_option, load_target


async def run_pipeline(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO | Console,
    broker: Any = None,
) -> int:
    """`run`: `broker` (from `cluster`) or `--broker` overrides the tasks' own broker."""
    console = err if isinstance(err, Console) else Console(err)
    inputs = parse_inputs(args.input)
    target = await load_target(args.target)
    if broker is None and getattr(args, "broker", None):
        broker = load_broker_option(args.broker)
    try:
        engine = make_engine(as_pipeline(target, broker), inputs, args, broker)
    except BrokerConflictError as exc:
        raise CLIError(f"{exc} (on the command line: --broker module:attr)") from exc
    warn_unused(engine.dag, inputs, console)

    progress = Progress(args.progress, console)
    progress.attach(engine)
    run_id = None
    if args.store:
        run_id = uuid.uuid4().hex
        console.echo(f"{PROG}: run {run_id} (recorded in {args.store})")
    try:
        with logging_to(console), _cancel_on_signals(engine, console) as stopped_by:
            async with _broker_started(engine.broker, console), watching(engine, args, console):
                outputs = await _execute(engine, inputs, run_id, args, out, stopped_by)
    finally:
        progress.close()
        progress.detach()
    text = format_outputs(outputs, args.json)
    if text:
        out.write(text + "\n")
    return 0


async def _execute(
    engine: ExecutionEngine,
    inputs: dict[str, Any],
    run_id: str | None,
    args: argparse.Namespace,
    out: TextIO,
    stopped_by: list[int],
) -> dict[str, Any]:
    try:
        return await engine.execute(inputs, pipeline_id=run_id)
    except (MissingInputError, DAGValidationError) as exc:
        raise input_error(exc) from exc
    except TaskFailedError as exc:
        raise CLIError(
            f"{exc.error}{traceback_hint(args)}", EXIT_FAILED, exc.error.traceback
        ) from exc
    except DataflowExecutionError as exc:
        if exc.results:
            out.write(format_outputs(exc.results, args.json) + "\n")
        raise CLIError(summarise_failures(exc, args), EXIT_FAILED, tracebacks(exc)) from exc
    except ExecutionCancelled as exc:
        raise cancelled_error(exc, stopped_by, run_id, args) from exc
    except ClusterError as exc:
        raise CLIError(str(exc), EXIT_FAILED) from exc
    except Exception as exc:
        raise CLIError(f"the run failed: {describe(exc)}", EXIT_FAILED) from exc


@contextlib.contextmanager
def _cancel_on_signals(engine: ExecutionEngine, console: Console) -> Iterator[list[int]]:
    """The first Ctrl-C (or SIGTERM) cancels the run: the engine stops dispatching, cancels
    what is in flight (on workers too) and ends with ExecutionCancelled. A second Ctrl-C is
    Python's KeyboardInterrupt, for a run that does not stop."""
    loop = asyncio.get_running_loop()
    stopped_by: list[int] = []
    installed: list[int] = []

    def on_signal(sig: int) -> None:
        stopped_by.append(sig)
        for each in installed:
            loop.remove_signal_handler(each)
        installed.clear()
        console.echo(f"{PROG}: cancelling the run (Ctrl-C again to stop at once)")
        engine.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not main thread
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        yield stopped_by
    finally:
        for each in installed:
            loop.remove_signal_handler(each)


@contextlib.asynccontextmanager
async def _broker_started(broker: Any, console: Console) -> Any:
    """A taskiq broker the engine sends tasks through (transport 'broker') must be started
    first. Not a DataflowNatsBroker: the engine opens its own checked connection, while
    taskiq's startup() would retry an unreachable server forever, printing tracebacks."""
    from ..cluster.broker import DataflowNatsBroker

    if broker is None or isinstance(broker, DataflowNatsBroker) or not hasattr(broker, "startup"):
        yield
        return
    try:
        await broker.startup()
    except Exception as exc:
        raise CLIError(f"starting the broker failed: {describe(exc)}", EXIT_FAILED) from exc
    try:
        yield
    finally:
        try:
            await broker.shutdown()
        except Exception as exc:  # report it, do not mask the run's outcome
            console.echo(f"{PROG}: warning: broker shutdown failed: {describe(exc)}")
