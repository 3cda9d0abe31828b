"""A stand-in dashboard server for the page's browser tests: it serves the shipped static files
and plays a synthetic sequence of snapshots that follows the data contract exactly
(/work/notes/dashboard-schema.md; DASHBOARD CONTRACT below), so the page is tested on its own,
without an engine.

    python tests/e2e/dashboard_fake.py --port 8787            # live: /, /static, /api/...
    python tests/e2e/dashboard_fake.py --write-report r.html  # an offline report, then exit

Two runs: `run-live` (100,000 tasks, running: progress moves, bars, a failure with its
traceback, workers of which one is lost, a stream, logs) and `run-old` (2,000 tasks, failed,
finished, in-process slots). Every value is a function of the time since the fake started, so
two reads a second apart differ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import taskiq_dataflow
from aiohttp import web

STATIC = Path(taskiq_dataflow.__file__).resolve().parent / "dashboard" / "static"
CSS_TAG = '<link rel="stylesheet" href="/static/dashboard.css">'
JS_TAG = '<script src="/static/dashboard.js"></script>'

TRACEBACK = """Traceback (most recent call last):
  File "examples/dashboard_demo.py", line 41, in score
    return model.predict(features)
  File "examples/dashboard_demo.py", line 27, in predict
    raise ValueError(f"feature vector {row} has NaN in column 'price'")
ValueError: feature vector 4711 has NaN in column 'price'
"""

HOSTILE = 'row 7 said <b id="injected">bold</b></script><script>window.INJECTED = 1</script>'

LIVE_NAMES = [  # name, total, position in the pipeline (0 = first)
    ("load", 20_000, 0),
    ("parse", 20_000, 1),
    ("validate", 10_000, 2),
    ("features", 20_000, 2),
    ("score", 20_000, 3),
    ("aggregate", 9_999, 4),
    ("report", 1, 5),
]
LIVE_EDGES = [
    ("load", "parse", 20_000),
    ("parse", "validate", 10_000),
    ("parse", "features", 20_000),
    ("features", "score", 20_000),
    ("validate", "aggregate", 10_000),
    ("score", "aggregate", 20_000),
    ("aggregate", "report", 9_999),
]
LIVE_INPUTS = [{"key": "source", "targets": ["load"]}, {"key": "model", "targets": ["score"]}]
WORKERS = [
    "worker-node1-4101-0",
    "worker-node1-4102-1",
    "worker-node2-5120-0",
    "worker-node2-5121-1",
]


class FakeRuns:
    def __init__(self, rate: float, started: float | None = None) -> None:
        self.rate = rate  # tasks per second of the live run
        self.t0 = time.time() if started is None else started
        self.old_started = self.t0 - 600.0
        self.lane_bars = [self._lane_plan(lane) for lane in range(len(WORKERS))]

    # -- the live run ---------------------------------------------------------------------

    def _lane_plan(self, lane: int) -> list[dict[str, Any]]:
        """Every bar a lane will draw over 10 minutes, back to back with small gaps."""
        rng = random.Random(lane)
        bars, t = [], 0.0
        names = [n for n, _, _ in LIVE_NAMES[:-1]]
        while t < 600.0:
            name = rng.choice(names)
            length = rng.uniform(0.05, 0.45) * (2.0 if name == "score" else 1.0)
            bars.append(
                {
                    "lane": lane,
                    "name": name,
                    "start": round(t, 3),
                    "end": round(t + length, 3),
                    "status": "done",
                }
            )
            t += length + rng.uniform(0.0, 0.05)
        return bars

    def live_elapsed(self, now: float) -> float:
        return max(0.0, now - self.t0)

    def live(self, now: float) -> dict[str, Any]:
        el = self.live_elapsed(now)
        total = sum(t for _, t, _ in LIVE_NAMES)
        frac = min(1.0, el * self.rate / total)
        failed_at = 1.0
        by_name = []
        for name, n, pos in LIVE_NAMES:
            share = min(1.0, frac * (1.25 - 0.05 * pos))  # later names lag behind
            finished = int(n * share)
            failed = 1 if name == "score" and el >= failed_at else 0
            skipped = 1 if name == "aggregate" and el >= failed_at else 0
            cached = min(finished, 500) if name == "load" else 0
            done = max(0, finished - failed - skipped - cached)
            running = 0 if finished >= n else min(n - finished, 4 + pos)
            waiting = n - done - failed - skipped - cached - running
            by_name.append(
                {
                    "name": name,
                    "total": n,
                    "waiting": waiting,
                    "running": running,
                    "done": done,
                    "failed": failed,
                    "skipped": skipped,
                    "cached": cached,
                    "mean_duration": round(0.12 + 0.03 * pos, 3),
                }
            )
        counts = {
            k: sum(b[k] for b in by_name)
            for k in ("waiting", "running", "done", "failed", "skipped", "cached")
        }
        finished = counts["waiting"] == 0 and counts["running"] == 0
        status = "failed" if finished else "running"
        bars = [
            b for lane in self.lane_bars for b in lane if el - 20.0 <= b["start"] and b["end"] <= el
        ]
        if el >= failed_at:
            bars.append(
                {
                    "lane": 2,
                    "name": "score",
                    "start": round(failed_at - 0.3, 3),
                    "end": failed_at,
                    "status": "failed",
                }
            )
        bars = sorted(bars, key=lambda b: b["end"])[-2000:]
        lost = el >= 3.0
        workers = []
        for i, wid in enumerate(WORKERS):
            gone = lost and i == 3
            workers.append(
                {
                    "id": wid,
                    "pool": "default",
                    "host": wid.split("-")[1],
                    "pid": int(wid.split("-")[2]),
                    "slots": 4,
                    "in_use": 0 if gone else (i + int(el)) % 5,
                    "last_heartbeat": round(el - 3.0 + 1.0, 1)
                    if gone
                    else round((el * 7 + i) % 1.0, 2),
                    "state": "lost" if gone else "alive",
                    "done": int(counts["done"] * (0.26 if not gone else 0.05)),
                }
            )
        throughput = [
            [round(t, 2), round(self.rate * (1.0 + 0.25 * math.sin(t * 1.3 + 0.5)), 1)]
            for t in (i * 0.5 for i in range(1, int(el * 2) + 1))
        ][-600:]
        failures = []
        if el >= failed_at:
            failures.append(
                {
                    "task": "score",
                    "node": 64_711,
                    "attempt": 1,
                    "type": "ValueError",
                    "message": "feature vector 4711 has NaN in column 'price'",
                    "traceback": TRACEBACK,
                    "t": failed_at,
                }
            )
        logs = [
            {
                "t": round(i * 0.5, 2),
                "level": "WARNING" if i % 7 == 3 else "INFO",
                "task": LIVE_NAMES[i % 6][0],
                "message": f"processed batch {i} ({i * 250:,} rows)",
            }
            for i in range(int(el * 2) + 1)
        ][-500:]
        return {
            "run_id": "run-live",
            "status": status,
            "started_at": self.t0,
            "finished_at": now if finished else None,
            "now": now,
            "elapsed": el,
            "total": total,
            "label": "dashboard demo",
            "counts": counts,
            "by_name": by_name,
            "graph": {
                "nodes": [{"name": n, "count": c} for n, c, _ in LIVE_NAMES],
                "edges": [{"source": s, "target": t, "count": c} for s, t, c in LIVE_EDGES],
                "inputs": LIVE_INPUTS,
            },
            "stream": {"lanes": WORKERS, "bars": bars, "window": [max(0.0, el - 20.0), el]},
            "throughput": throughput,
            "workers": workers,
            "redeliveries": 3 if lost else 0,
            "lost_workers": 1 if lost else 0,
            "failures": failures,
            "streams": [
                {
                    "key": "rows",
                    "producer": "load",
                    "items": int(el * 800),
                    "credits": 64,
                    "state": "closed" if finished else "open",
                }
            ],
            "logs": logs,
        }

    # -- a finished run of the same engine ------------------------------------------------

    def old(self, now: float) -> dict[str, Any]:
        names = [("extract", 1000), ("transform", 999), ("store", 1)]
        by_name = [
            {
                "name": "extract",
                "total": 1000,
                "waiting": 0,
                "running": 0,
                "done": 1000,
                "failed": 0,
                "skipped": 0,
                "cached": 0,
                "mean_duration": 0.02,
            },
            {
                "name": "transform",
                "total": 999,
                "waiting": 0,
                "running": 0,
                "done": 997,
                "failed": 2,
                "skipped": 0,
                "cached": 0,
                "mean_duration": 0.05,
            },
            {
                "name": "store",
                "total": 1,
                "waiting": 0,
                "running": 0,
                "done": 0,
                "failed": 0,
                "skipped": 1,
                "cached": 0,
                "mean_duration": None,
            },
        ]
        counts = {"waiting": 0, "running": 0, "done": 1997, "failed": 2, "skipped": 1, "cached": 0}
        lanes = [f"slot {i}" for i in range(8)]
        bars = [
            {
                "lane": i % 8,
                "name": "extract" if i < 250 else "transform",
                "start": (i // 8) * 0.1,
                "end": (i // 8) * 0.1 + 0.09,
                "status": "failed" if i in (300, 301) else "done",
            }
            for i in range(400)
        ]
        failures = [
            {
                "task": "transform",
                "node": 1000 + i,
                "attempt": 3,
                "type": "KeyError",
                "message": f"'customer_id' (row {i})",
                "traceback": f'Traceback (most recent call last):\n  File "etl.py", line 12, in '
                f"transform\n    key = row['customer_id']\nKeyError: 'customer_id' (row {i})\n",
                "t": 3.1 + i,
            }
            for i in range(2)
        ]
        return {
            "run_id": "run-old",
            "status": "failed",
            "started_at": self.old_started,
            "finished_at": self.old_started + 6.0,
            "now": now,
            "elapsed": 6.0,
            "total": 2000,
            "label": "nightly etl",
            "counts": counts,
            "by_name": by_name,
            "graph": {
                "nodes": [{"name": n, "count": c} for n, c in names],
                "edges": [
                    {"source": "extract", "target": "transform", "count": 999},
                    {"source": "transform", "target": "store", "count": 999},
                ],
                "inputs": [{"key": "day", "targets": ["extract"]}],
            },
            "stream": {"lanes": lanes, "bars": bars, "window": [0.0, 6.0]},
            "throughput": [[t * 0.5, 333.0] for t in range(1, 13)],
            "workers": [],
            "redeliveries": 0,
            "lost_workers": 0,
            "failures": failures,
            "streams": [],
            "logs": [
                {
                    "t": 3.1,
                    "level": "ERROR",
                    "task": "transform",
                    "message": "KeyError: 'customer_id' (row 0)",
                },
                # data is text: the page must not make markup of it, nor the report
                # end its script early
                {"t": 3.2, "level": "WARNING", "task": "transform", "message": HOSTILE},
            ],
        }

    def snapshot(self, run_id: str, now: float) -> dict[str, Any] | None:
        return {"run-live": self.live, "run-old": self.old}.get(run_id, lambda _: None)(now)

    def runs(self, now: float) -> list[dict[str, Any]]:
        out = []
        for snap in (self.live(now), self.old(now)):  # newest first
            out.append(
                {
                    k: snap[k]
                    for k in ("run_id", "status", "started_at", "finished_at", "total", "label")
                }
                | {
                    "done": snap["counts"]["done"] + snap["counts"]["cached"],
                    "failed": snap["counts"]["failed"],
                }
            )
        return out


class FakeBigRuns(FakeRuns):
    """The live run at every cap of the contract, as the server sends a 1M-task run: 200
    names, 2,000 bars on 64 lanes, 600 throughput points, 100 failures, 500 logs, 64 workers."""

    def live(self, now: float) -> dict[str, Any]:
        snap = super().live(now)
        el = snap["elapsed"]
        names = [f"stage{i:03d}" for i in range(200)]
        per = 5_000
        done = min(per, int(el * self.rate / 200))
        snap["total"] = per * len(names)
        snap["by_name"] = [
            {
                "name": n,
                "total": per,
                "waiting": per - done - min(3, per - done),
                "done": done,
                "running": min(3, per - done),
                "failed": 0,
                "skipped": 0,
                "cached": 0,
                "mean_duration": 0.01,
            }
            for n in names
        ]
        counts = dict.fromkeys(("waiting", "running", "done", "failed", "skipped", "cached"), 0)
        for row in snap["by_name"]:
            for k in counts:
                counts[k] += row[k]
        snap["counts"] = counts
        snap["graph"] = {
            "nodes": [{"name": n, "count": per} for n in names],
            "edges": [
                {"source": names[i], "target": names[j], "count": per}
                for i in range(200)
                for j in (i + 1, i + 7)
                if j < 200
            ],
            "inputs": [{"key": "source", "targets": names[:10]}],
        }
        lanes = [f"worker-{i:02d}" for i in range(64)]
        t0 = max(0.0, el - 10)
        snap["stream"] = {
            "lanes": lanes,
            "bars": [
                {
                    "lane": i % 64,
                    "name": names[i % 200],
                    "start": t0 + i * 0.005,
                    "end": t0 + i * 0.005 + 0.3,
                    "status": "done",
                }
                for i in range(2000)
            ],
            "window": [max(0.0, el - 10), el + 0.5],
        }
        snap["throughput"] = [[i * 0.5, 50_000.0 + (i % 17) * 1000] for i in range(600)]
        first = snap["failures"][:1]
        snap["failures"] = [dict(f, node=i, t=float(i)) for f in first for i in range(100)]
        snap["logs"] = [
            {"t": i * 0.01, "level": "INFO", "task": names[i % 200], "message": f"record {i}"}
            for i in range(500)
        ]
        snap["workers"] = [
            {
                "id": lane,
                "pool": "default",
                "host": "node",
                "pid": 1000 + i,
                "slots": 8,
                "in_use": i % 9,
                "last_heartbeat": 0.5,
                "state": "alive",
                "done": done,
            }
            for i, lane in enumerate(lanes)
        ]
        return snap


# -- the HTTP side --------------------------------------------------------------------------


def app(runs: FakeRuns) -> web.Application:
    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def api_runs(_: web.Request) -> web.Response:
        return web.json_response({"runs": runs.runs(time.time())})

    async def api_run(request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        snap = runs.snapshot(run_id, time.time())
        if snap is None:
            return web.json_response({"error": f"no run {run_id!r}"}, status=404)
        return web.json_response(snap)

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        wanted = request.query.get("run")
        try:
            while True:
                now = time.time()
                listed = runs.runs(now)
                await resp.write(f"event: runs\ndata: {json.dumps({'runs': listed})}\n\n".encode())
                snap = runs.snapshot(wanted or listed[0]["run_id"], now)
                if snap is not None:
                    await resp.write(f"event: snapshot\ndata: {json.dumps(snap)}\n\n".encode())
                await asyncio.sleep(0.5)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    application = web.Application()
    application.router.add_get("/", index)
    application.router.add_static("/static/", STATIC)
    application.router.add_get("/api/runs", api_runs)
    application.router.add_get("/api/runs/{run_id}", api_run)
    application.router.add_get("/api/events", events)
    return application


def report_html(runs: FakeRuns, now: float) -> str:
    """index.html with its css and js inlined and the runs embedded, as the contract says."""
    page = (STATIC / "index.html").read_text()
    css = (STATIC / "dashboard.css").read_text()
    js = (STATIC / "dashboard.js").read_text()
    data = {
        "runs": runs.runs(now),
        "snapshots": {"run-live": runs.live(now), "run-old": runs.old(now)},
    }
    embedded = json.dumps(data).replace("</", "<\\/")
    assert CSS_TAG in page and JS_TAG in page, "index.html lost the asset tags the report inlines"
    page = page.replace(CSS_TAG, f"<style>\n{css}</style>")
    return page.replace(
        JS_TAG, f"<script>window.DATAFLOW_REPORT = {embedded};</script>\n<script>\n{js}</script>"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rate", type=float, default=4000.0, help="tasks/s of the live run")
    parser.add_argument("--big", action="store_true", help="the live run at the contract's caps")
    parser.add_argument("--write-report", metavar="PATH", help="write an offline report and exit")
    parser.add_argument("--at", type=float, default=12.0, help="report: seconds into the live run")
    args = parser.parse_args(argv)
    if args.write_report:
        now = time.time()
        runs = FakeRuns(args.rate, started=now - args.at)
        Path(args.write_report).write_text(report_html(runs, now))
        return
    print(f"fake dashboard on http://{args.host}:{args.port}/", flush=True)
    runs = (FakeBigRuns if args.big else FakeRuns)(args.rate)
    web.run_app(app(runs), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main(sys.argv[1:])
