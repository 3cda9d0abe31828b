"""`--dashboard [HOST:]PORT`, `--dashboard-keep` and `--report PATH` of `run` and `cluster`: the
engine's runs on a web page while the run goes (and after it, until Ctrl-C, with
`--dashboard-keep`), the report written when it ends, whatever its outcome."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

from ..errors import CLIError
from .console import Console
from .output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, PROG


@contextlib.asynccontextmanager
async def watching(engine: Any, args: argparse.Namespace, console: Console) -> AsyncIterator[None]:
    if args.dashboard_keep and args.dashboard is None:
        raise CLIError("--dashboard-keep needs --dashboard [HOST:]PORT", EXIT_USAGE)
    if args.dashboard is None and args.report is None:
        yield
        return
    from ..dashboard import Dashboard, watch_runs, write_report

    async with contextlib.AsyncExitStack() as stack:
        if args.dashboard is not None:
            host, port = args.dashboard
            dash = Dashboard(engine, host, port, label=getattr(args, "target", None))
            try:
                url = await dash.start()
            except OSError as exc:
                raise CLIError(f"--dashboard: {exc.strerror or exc}", EXIT_USAGE) from exc
            stack.push_async_callback(dash.stop)
            console.echo(f"{PROG}: dashboard at {url}")
        else:
            await stack.enter_async_context(watch_runs(engine))
        try:
            yield
        except CLIError as exc:  # the run failed or was stopped: its report is still wanted
            if args.report is not None:
                _write(write_report, args.report, engine, console)
            if args.dashboard_keep and exc.code not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
                await _keep_serving(console)
            raise
        if args.report is not None:
            _write(write_report, args.report, engine, console)
        if args.dashboard_keep:
            await _keep_serving(console)


def _write(write_report: Any, path: str, engine: Any, console: Console) -> None:
    try:
        written = write_report(path, engine=engine)
    except (OSError, ValueError) as exc:
        raise CLIError(f"--report {path}: {exc}", EXIT_FAILED) from exc
    console.echo(f"{PROG}: report written to {written}")


async def _keep_serving(console: Console) -> None:
    """Until Ctrl-C or SIGTERM (which then stop the page, not a run: there is none)."""
    console.echo(f"{PROG}: the run is over; the dashboard keeps serving (Ctrl-C stops it)")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
