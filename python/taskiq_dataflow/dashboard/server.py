"""The dashboard's web server (aiohttp), inside the engine's own event loop.

Routes (dashboard-schema.md): `/` and `/static/<file>` (the page, shipped in the package),
`/api/runs`, `/api/runs/<run_id>` (a Snapshot), `/api/events?run=<run_id>` (Server-Sent
Events: `runs` and `snapshot`, at most once per tick, only when something changed).

A snapshot is built and encoded once per tick and run, whatever the number of clients. A
client that does not read is dropped once a write has waited WRITE_TIMEOUT: nothing is
buffered for it beyond the one event in its socket.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .limits import MAX_RUN_ID, TICK
from .monitor import EngineMonitor, RunMonitor

if TYPE_CHECKING:
    from aiohttp import web

    from ..execution_engine import ExecutionEngine

STATIC = Path(__file__).parent / "static"
PAGE = "index.html"
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

WRITE_TIMEOUT = 10.0  # seconds a client may take to take one event before it is dropped
MAX_CLIENTS = 64  # event streams at once; more get 503
KEEP_ALIVE = 15.0  # seconds of silence after which a comment line keeps the stream open


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


class Dashboard:
    """A web page showing `engine`'s runs live: `await dash.start()` serves it on
    `host:port` (port 0: a free one) at `dash.url`, `await dash.stop()` ends it. Also an async
    context manager (`serve_dashboard`). `label` names the engine's runs in the page."""

    def __init__(
        self,
        engine: ExecutionEngine,
        host: str = "127.0.0.1",
        port: int = 8787,
        *,
        label: str | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"dashboard port must be 0 to 65535, got {port}")
        self.engine, self.host, self.port = engine, host, port
        self.monitor = EngineMonitor.of(engine, label)
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._clients = 0
        # per tick: the runs list and each asked-for run's snapshot, encoded once
        self._runs: tuple[float, bytes] = (-1.0, b"")
        self._snapshots: dict[int, tuple[int, bytes]] = {}
        self._streams: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        """Serve the page; returns its URL."""
        from aiohttp import web

        if self._runner is not None:
            raise RuntimeError(f"the dashboard is already serving at {self.url}")
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/runs", self._list)
        app.router.add_get("/api/runs/{run_id}", self._snapshot)
        app.router.add_get("/api/events", self._events)
        app.router.add_route("*", "/api/{tail:.*}", self._unknown)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno, f"cannot serve the dashboard on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self._runner = runner
        self.monitor.start()
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}/"
        return self.url

    async def stop(self) -> None:
        """Stop serving (clients are disconnected) and stop watching the engine's runs."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._streams):
            task.cancel()
        await runner.cleanup()
        await self.monitor.stop()

    async def __aenter__(self) -> Dashboard:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- data -----------------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """The RunSummary of each run, newest first."""
        return [run.summary() for run in self.monitor.newest_first()]

    def snapshot(self, run_id: str) -> dict[str, Any]:
        """The Snapshot of the newest run of that id; KeyError naming it if there is none."""
        run = self.monitor.find(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r}")
        return run.snapshot()

    def _runs_payload(self) -> bytes:
        at = time.monotonic()
        if at - self._runs[0] >= TICK / 2:
            self._runs = (at, encode({"runs": self.runs()}))
        return self._runs[1]

    def _snapshot_payload(self, run: RunMonitor) -> bytes:
        found = self._snapshots.get(id(run))
        if found is None or found[0] != run.version:
            found = self._snapshots[id(run)] = (run.version, encode(run.snapshot()))
            live = {id(r) for r in self.monitor.runs.values()}
            for key in [k for k in self._snapshots if k not in live]:
                del self._snapshots[key]
        return found[1]

    # -- routes ---------------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return self._file(PAGE)

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.StreamResponse:
        from aiohttp import web

        path = STATIC / name
        if not _STATIC_NAME.match(name) or not path.is_file():
            return _error(404, f"no file {name[:100]!r} in the dashboard's static files")
        kind = _TYPES.get(path.suffix, "application/octet-stream")
        return web.Response(
            body=path.read_bytes(),
            content_type=kind,
            charset="utf-8" if kind.startswith("text/") else None,
            headers={"Cache-Control": "no-cache"},
        )

    async def _list(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        return web.Response(body=self._runs_payload(), content_type="application/json")

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        found = self._find(request.match_info["run_id"])
        if not isinstance(found, RunMonitor):
            return found
        return web.Response(body=self._snapshot_payload(found), content_type="application/json")

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        return _error(404, f"no such API: {request.path[:200]!r}")

    def _find(self, run_id: str) -> RunMonitor | web.StreamResponse:
        if len(run_id) > MAX_RUN_ID:
            return _error(404, f"no run {run_id[:40] + '…'!r}: run ids are shorter")
        run = self.monitor.find(run_id)
        if run is None:
            return _error(404, f"no run {run_id!r}")
        return run

    async def _events(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        asked = request.query.get("run") or None
        pinned: RunMonitor | None = None
        if asked is not None:
            found = self._find(asked)
            if not isinstance(found, RunMonitor):
                return found
            pinned = found
        if self._clients >= MAX_CLIENTS:
            return _error(503, f"too many event streams open ({MAX_CLIENTS}); close one")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        self._clients += 1
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        try:
            await self._push(response, pinned)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass  # the client went away, stopped reading, or the dashboard stops
        finally:
            self._clients -= 1
            if task is not None:
                self._streams.discard(task)
        return response

    async def _push(self, response: web.StreamResponse, pinned: RunMonitor | None) -> None:
        sent_runs: bytes | None = None
        sent: tuple[int, int] | None = None  # (run, version) of the last snapshot sent
        quiet_since = time.monotonic()
        while True:
            parts = []
            runs = self._runs_payload()
            if runs != sent_runs:
                parts.append(b"event: runs\ndata: " + runs + b"\n\n")
                sent_runs = runs
            run = pinned
            if run is None:
                newest = self.monitor.newest_first()
                run = newest[0] if newest else None
            if run is not None and sent != (id(run), run.version):
                payload = self._snapshot_payload(run)
                parts.append(b"event: snapshot\ndata: " + payload + b"\n\n")
                sent = (id(run), run.version)
            if not parts and time.monotonic() - quiet_since > KEEP_ALIVE:
                parts.append(b": keep-alive\n\n")
            if parts:
                await asyncio.wait_for(response.write(b"".join(parts)), WRITE_TIMEOUT)
                quiet_since = time.monotonic()
            await self.monitor.ticked.wait()


def _error(status: int, message: str) -> web.Response:
    from aiohttp import web

    return web.Response(
        status=status, body=encode({"error": message}), content_type="application/json"
    )


def serve_dashboard(
    engine: ExecutionEngine, host: str = "127.0.0.1", port: int = 8787, *, label: str | None = None
) -> Dashboard:
    """`async with serve_dashboard(engine, port=0) as dash: print(dash.url)`: the engine's
    runs on a web page while the block runs."""
    return Dashboard(engine, host, port, label=label)
