"""One run of a pipeline as the command line shows it: target loaded, engine made, progress on
stderr, Ctrl-C and SIGTERM cancelling the run, a taskiq broker started around it, outputs on
stdout. The body of `run`, shared with `cluster` (which passes the broker its workers serve)
and with `runs restart` / `runs replay` (which pass the stored run to continue or replay).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from ..errors import CLIError, ClusterError, DAGValidationError, StoreError
from ..execution_engine import (
    DataflowExecutionError,
    ExecutionCancelled,
    ExecutionEngine,
    MissingInputError,
    TaskFailedError,
)
from ..pipeline import BrokerConflictError
from .args import STORE_ENV, parse_inputs
from .console import Console, logging_to
from .dashboard import watching
from .engine import make_engine, warn_unused
from .output import (
    EXIT_FAILED,
    EXIT_USAGE,
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


@dataclass(frozen=True)
class Resume:
    """A stored run to go on with: `runs restart` (rerun None: the same run, its completed
    tasks not run again) or `runs replay` (a new run re-running `rerun` and what depends on
    them). `inputs` are the run's recorded ones."""

    run_id: str
    inputs: dict[str, Any]
    rerun: tuple[str, ...] | None = None


async def run_pipeline(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO | Console,
    broker: Any = None,
    resume: Resume | None = None,
) -> int:
    """`run`: `broker` (from `cluster`) or `--broker` overrides the tasks' own broker;
    `resume` continues or replays a stored run instead of starting one from `-i`."""
    console = err if isinstance(err, Console) else Console(err)
    store = args.store or os.environ.get(STORE_ENV) or None
    if store != args.store:
        args = argparse.Namespace(**{**vars(args), "store": store})
    inputs = dict(resume.inputs) if resume is not None else parse_inputs(args.input)
    target = await load_target(args.target)
    if broker is None and getattr(args, "broker", None):
        broker = load_broker_option(args.broker)
    try:
        engine = make_engine(as_pipeline(target, broker), inputs, args, broker)
    except BrokerConflictError as exc:
        raise CLIError(f"{exc} (on the command line: --broker module:attr)") from exc
    if getattr(args, "server", None):
        _use_servers(engine, args.server)
    warn_unused(engine.dag, inputs, console)

    progress = Progress(args.progress, console)
    progress.attach(engine)
    run_id, start = _start(engine, inputs, args, resume, console)
    try:
        with (
            logging_to(console, args.log_level, args.log_format),
            _cancel_on_signals(engine, console) as stopped_by,
            _metrics_exposed(engine, args, console),
        ):
            async with _broker_started(engine.broker, console), watching(engine, args, console):
                outputs = await _execute(start, run_id, args, out, stopped_by)
    finally:
        progress.close()
        progress.detach()
    text = format_outputs(outputs, args.json)
    if text:
        out.write(text + "\n")
    return 0


Start = Callable[[], Awaitable[dict[str, Any]]]


def _start(
    engine: ExecutionEngine,
    inputs: dict[str, Any],
    args: argparse.Namespace,
    resume: Resume | None,
    console: Console,
) -> tuple[str | None, Start]:
    """The run's id (None when not recorded) and how it starts; the id is shown first."""
    if resume is None:
        run_id = uuid.uuid4().hex if args.store else None
        if run_id is not None:
            console.echo(f"{PROG}: run {run_id} (recorded in {args.store})")
        return run_id, lambda: engine.execute(inputs, pipeline_id=run_id)
    if resume.rerun is None:
        console.echo(f"{PROG}: run {resume.run_id} restarted (recorded in {args.store})")
        return resume.run_id, lambda: engine.restart(resume.run_id)
    rerun, new_id = resume.rerun, uuid.uuid4().hex
    console.echo(f"{PROG}: run {new_id}, a replay of {resume.run_id} (recorded in {args.store})")
    return new_id, lambda: engine.replay(resume.run_id, rerun, pipeline_id=new_id)


async def _execute(
    start: Start,
    run_id: str | None,
    args: argparse.Namespace,
    out: TextIO,
    stopped_by: list[int],
) -> dict[str, Any]:
    try:
        return await start()
    except (MissingInputError, DAGValidationError) as exc:
        raise input_error(exc) from exc
    except StoreError as exc:  # restart / replay: another DAG, an unknown task to re-run
        raise CLIError(f"{exc} (in the run store {args.store})", EXIT_USAGE) from exc
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


@contextlib.contextmanager
def _metrics_exposed(engine: ExecutionEngine, args: argparse.Namespace, console: Console) -> Any:
    """--metrics: the engine's endpoint while the run goes on; --metrics-push: one push when
    it ends, whatever its outcome (a push that fails is a warning, not the run's failure)."""
    metrics = engine.metrics
    address, gateway = getattr(args, "metrics", None), getattr(args, "metrics_push", None)
    if metrics is None or (address is None and gateway is None):
        yield
        return
    from ..metrics.serving import parse_address

    server = None
    if address is not None:
        host, port = parse_address(address)
        try:
            server = metrics.serve(port, host)
        except OSError as exc:
            raise CLIError(f"--metrics {address}: {exc}", EXIT_FAILED) from exc
        console.echo(f"{PROG}: metrics on {server.url}")
    try:
        yield
    finally:
        if gateway is not None:
            try:
                metrics.push(gateway)
            except OSError as exc:
                console.echo(f"{PROG}: warning: {exc}")
        if server is not None:
            server.close()


def _use_servers(engine: ExecutionEngine, servers: list[str]) -> None:
    from ..cluster.broker import DataflowNatsBroker

    if not isinstance(engine.broker, DataflowNatsBroker):
        where = "in-process" if engine.broker is None else f"on {type(engine.broker).__name__}"
        raise CLIError(
            f"--server is for tasks of a DataflowNatsBroker; this pipeline's tasks run {where} "
            "(give --broker module:attr naming a DataflowNatsBroker)"
        )
    engine.broker.use_servers(servers)


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
