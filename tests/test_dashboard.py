"""The dashboard's back end: counts that match the run's truth (failures, skips, cache hits,
growth, concurrent runs), the HTTP/SSE API on a real aiohttp server with real runs, hostile
requests, and the offline report (from an engine and from a run store)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from taskiq_dataflow import (
    DAG,
    DAGNode,
    DataflowRegistry,
    ExecutionEngine,
    ResultCache,
    RunStore,
    add_tasks,
    pipeline_task,
)
from taskiq_dataflow.dashboard import (
    Dashboard,
    serve_dashboard,
    store_snapshot,
    watch_runs,
    write_report,
)
from taskiq_dataflow.dashboard import monitor as monitor_module
from taskiq_dataflow.dashboard import server as server_module
from taskiq_dataflow.dashboard.report import STATIC

STATES = ("waiting", "running", "done", "failed", "skipped", "cached")
needs_page = pytest.mark.skipif(
    not (STATIC / "index.html").is_file(), reason="the dashboard page (static/) is not installed"
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def dag_of(*nodes: DAGNode) -> DAG:
    dag = DAG()
    for node in nodes:
        dag.add_node(node)
    return dag


async def source(n: int) -> int:
    return n


async def ok(s: int) -> int:
    return s + 1


async def bad(s: int) -> int:
    raise ValueError(f"bad input {s}")


async def after(x: int) -> int:
    return x


@pipeline_task(output="kept", cache=True)
async def cached(s: int) -> int:
    return s * 2


async def child(s: int) -> int:
    return s


async def grow(s: int) -> int:
    add_tasks(DAGNode(child, output=f"c{i}", inputs=["s"], name="child") for i in range(5))
    return s


def mixed_dag() -> DAG:
    nodes = [DAGNode(source, output="s", inputs=["n"], name="source")]
    nodes += [DAGNode(ok, output=f"ok{i}", inputs=["s"], name="ok") for i in range(10)]
    nodes += [DAGNode(bad, output=f"bad{i}", inputs=["s"], name="bad") for i in range(2)]
    nodes += [DAGNode(after, output=f"a{i}", inputs=[f"bad{i}"], name="after") for i in range(2)]
    nodes += [DAGNode(cached, output="kept", inputs=["s"], name="cached")]
    nodes += [DAGNode(grow, output="g", inputs=["s"], name="grow")]
    return dag_of(*nodes)


def by_name(snapshot: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {
        row["name"]: {k: row[k] for k in ("total", *STATES) if row[k]}
        for row in snapshot["by_name"]
    }


def test_counts_match_the_runs_truth_with_failures_skips_cache_hits_growth_and_two_runs(
    tmp_path: Path,
) -> None:
    engine = ExecutionEngine(
        None, mixed_dag(), fail_fast=False, skip_failed=True, cache=ResultCache(tmp_path / "c.db")
    )

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        async with watch_runs(engine) as monitor:
            await engine.execute({"n": 1}, pipeline_id="first")  # the cache is filled
            runs = [engine.start({"n": 1}, pipeline_id=f"r{i}") for i in (1, 2)]
            progress = []
            for handle in runs:
                await handle
                progress.append(handle.progress())
        snapshots = {r.run_id: r.snapshot() for r in monitor.newest_first()}
        return snapshots, progress, [r.summary() for r in monitor.newest_first()]

    snapshots, progress, summaries = run(main())
    assert [s["run_id"] for s in summaries] == ["r2", "r1", "first"]  # newest first
    expected = {
        "source": {"total": 1, "done": 1},
        "ok": {"total": 10, "done": 10},
        "bad": {"total": 2, "failed": 2},
        "after": {"total": 2, "skipped": 2},
        "grow": {"total": 1, "done": 1},
        "child": {"total": 5, "done": 5},
    }
    first = snapshots["first"]
    assert by_name(first) == {**expected, "cached": {"total": 1, "done": 1}}
    for run_id, truth in zip(("r1", "r2"), progress, strict=True):
        snap = snapshots[run_id]
        assert by_name(snap) == {**expected, "cached": {"total": 1, "cached": 1}}
        assert snap["total"] == truth["total"] == 22
        assert snap["counts"]["done"] + snap["counts"]["cached"] == truth["done"]
        assert snap["counts"]["failed"] == truth["failed"] == 2
        assert snap["counts"]["skipped"] == truth["skipped"] == 2
        assert snap["status"] == "failed" and snap["finished_at"] >= snap["started_at"]
        assert sum(snap["counts"].values()) == snap["total"]
        failures = snap["failures"]
        assert sorted(f["task"] for f in failures) == ["bad", "bad"]
        assert all(f["type"] == "ValueError" and f["message"] == "bad input 1" for f in failures)
        assert all("raise ValueError" in f["traceback"] for f in failures)
        assert {f["attempt"] for f in failures} == {1}
    # the graph collapsed by task name, with node-level edge counts and the run's input
    graph = first["graph"]
    assert {n["name"]: n["count"] for n in graph["nodes"]} == {
        "source": 1, "ok": 10, "bad": 2, "after": 2, "cached": 1, "grow": 1, "child": 5,
    }  # fmt: skip
    edges = {(e["source"], e["target"]): e["count"] for e in graph["edges"]}
    assert edges == {
        ("source", "ok"): 10, ("source", "bad"): 2, ("bad", "after"): 2,
        ("source", "cached"): 1, ("source", "grow"): 1, ("source", "child"): 5,
    }  # fmt: skip
    assert graph["inputs"] == [{"key": "n", "targets": ["source"]}]
    assert first["workers"][0]["id"] == "in-process" and first["workers"][0]["done"] == 18


def test_a_fail_fast_run_counts_its_failure_and_nothing_left_running() -> None:
    engine = ExecutionEngine(None, mixed_dag())

    async def main() -> dict[str, Any]:
        async with watch_runs(engine) as monitor:
            with pytest.raises(Exception, match="bad input"):
                await engine.execute({"n": 3}, pipeline_id="ff")
        found = monitor.find("ff")
        assert found is not None
        return found.snapshot()

    snap = run(main())
    assert snap["status"] == "failed"
    assert snap["counts"]["failed"] >= 1 and snap["counts"]["running"] == 0
    assert sum(snap["counts"].values()) == snap["total"]


async def slow(s: int) -> int:
    await asyncio.sleep(0.01)
    return s


def slow_dag(width: int = 40, depth: int = 10) -> DAG:
    nodes = [DAGNode(source, output="l0_0", inputs=["n"], name="source")]
    for layer in range(1, depth):
        name = f"step{layer % 3}"
        for i in range(width):
            nodes.append(
                DAGNode(slow, output=f"l{layer}_{i}", inputs=[f"l{layer - 1}_0"], name=name)
            )
    return dag_of(*nodes)


async def read_events(url: str, until: float, seen: list[tuple[str, Any]]) -> None:
    """The (event, data) pairs of the stream at `url` until the monotonic time `until`."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        event = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(until - time.monotonic()):
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[len("event: ") :]
                    elif line.startswith("data: "):
                        seen.append((event or "", json.loads(line[len("data: ") :])))


def test_api_and_event_stream_follow_a_live_run() -> None:
    engine = ExecutionEngine(None, slow_dag(), max_parallel=4)

    async def main() -> None:
        async with serve_dashboard(engine, port=0) as dash:
            assert dash.url is not None and re.match(r"http://127\.0\.0\.1:\d+/$", dash.url)
            seen: list[tuple[str, Any]] = []
            reader = asyncio.ensure_future(
                read_events(dash.url + "api/events", time.monotonic() + 30, seen)
            )
            await asyncio.sleep(0.2)
            handle = engine.start({"n": 1}, pipeline_id="live")
            started = time.monotonic()
            async with aiohttp.ClientSession() as session:
                while not handle.done():
                    await asyncio.sleep(0.3)
                    async with session.get(dash.url + "api/runs") as r:
                        assert r.status == 200
                        runs = (await r.json())["runs"]
                    assert runs[0]["run_id"] == "live" and runs[0]["total"] == 361
                await handle
                elapsed = time.monotonic() - started
                await asyncio.sleep(0.8)  # the finished run's snapshot is pushed
                async with session.get(dash.url + "api/runs/live") as r:
                    assert r.status == 200 and r.content_type == "application/json"
                    final = await r.json()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        assert elapsed > 0.8  # long enough for several pushes
        snaps = [data for event, data in seen if event == "snapshot"]
        assert seen[0][0] == "runs"
        running = [s for s in snaps if s["status"] == "running"]
        assert len(running) >= 2, [s["counts"] for s in snaps]
        done = [s["counts"]["done"] for s in running]
        assert done == sorted(done) and done[-1] > done[0]
        assert snaps[-1]["status"] == "succeeded" and snaps[-1]["counts"]["done"] == 361
        assert final["counts"]["done"] == 361 and final["run_id"] == "live"
        names = {row["name"] for row in final["by_name"]}
        assert names == {"source", "step0", "step1", "step2"}
        stream = final["stream"]
        assert stream["bars"] and all(b["lane"] < len(stream["lanes"]) for b in stream["bars"])
        assert all(lane.startswith("slot ") for lane in stream["lanes"])
        assert len(stream["lanes"]) <= 4  # max_parallel=4: at most four slots busy at once
        assert all(b["end"] >= b["start"] >= 0 for b in stream["bars"])
        assert final["throughput"] and max(rate for _, rate in final["throughput"]) > 0
        assert all(row["mean_duration"] > 0.005 for row in final["by_name"][1:])

    run(main())


def test_hostile_requests_get_errors_and_the_server_keeps_serving(monkeypatch: Any) -> None:
    monkeypatch.setattr(server_module, "WRITE_TIMEOUT", 1.0)
    monkeypatch.setattr(monitor_module, "TICK", 0.05)  # more pushes: its socket fills sooner
    engine = ExecutionEngine(None, slow_dag(width=200, depth=10), max_parallel=50)

    async def main() -> None:
        async with Dashboard(engine, port=0) as dash:
            base = dash.url
            assert base is not None
            async with aiohttp.ClientSession() as session:
                for path, status, text in [
                    ("api/runs/nope", 404, "no run 'nope'"),
                    ("api/events?run=nope", 404, "no run 'nope'"),
                    ("api/runs/" + "x" * 5000, 404, "run ids are shorter"),
                    ("api/other", 404, "no such API"),
                    ("static/..%2f..%2fserver.py", 404, "no file"),
                    ("static/.hidden", 404, "no file"),
                ]:
                    async with session.get(base + path) as r:
                        assert r.status == status, path
                        assert text in (await r.json())["error"], path
                # a client that asks for the event stream and never reads it
                host, port = base[len("http://") :].rstrip("/").split(":")
                lazy = socket.socket()
                lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
                lazy.connect((host, int(port)))
                lazy.sendall(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    for _ in range(100):
                        if dash._clients == 1:
                            break
                        await asyncio.sleep(0.02)
                    assert dash._clients == 1  # it is being served
                    started = time.monotonic()
                    await engine.execute({"n": 1})
                    engine_took = time.monotonic() - started
                    # it is dropped (a write waited WRITE_TIMEOUT), not buffered for
                    deadline = time.monotonic() + 20
                    while dash._clients and time.monotonic() < deadline:
                        await engine.execute({"n": 2})
                    assert dash._clients == 0
                    async with session.get(base + "api/runs") as r:
                        assert r.status == 200 and len((await r.json())["runs"]) >= 2
                finally:
                    lazy.close()
                assert engine_took < 30

    run(main())


def test_a_busy_port_is_an_error_naming_it() -> None:
    engine = ExecutionEngine(None, mixed_dag())

    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(OSError, match=f"cannot serve the dashboard on 127.0.0.1:{port}"):
                await Dashboard(engine, port=port).start()

    run(main())
    with pytest.raises(ValueError, match="port must be 0 to 65535"):
        Dashboard(engine, port=70000)


def embedded(html: str) -> dict[str, Any]:
    found = re.search(r"<script>window\.DATAFLOW_REPORT = (.*?);</script>", html, re.S)
    assert found, "no window.DATAFLOW_REPORT in the report"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


@needs_page
def test_report_of_an_engine_is_one_self_contained_file(tmp_path: Path) -> None:
    engine = ExecutionEngine(None, mixed_dag(), fail_fast=False, skip_failed=True)

    async def main() -> None:
        async with watch_runs(engine):
            await engine.execute({"n": 5}, pipeline_id="rep")

    run(main())
    path = write_report(tmp_path / "report.html", engine=engine)
    html = path.read_text()
    assert 'src="http' not in html and 'href="http' not in html
    assert "/static/" not in html  # css and js inlined
    assert "<style>" in html and "function" in html
    data = embedded(html)
    assert [r["run_id"] for r in data["runs"]] == ["rep"]
    snap = data["snapshots"]["rep"]
    assert snap["counts"]["failed"] == 2 and snap["counts"]["done"] == 18
    assert any("bad input 5" in f["message"] for f in snap["failures"])
    with pytest.raises(KeyError, match="no run 'other'"):
        write_report(tmp_path / "x.html", engine=engine, run_id="other")


def test_report_needs_a_watched_engine_or_a_store(tmp_path: Path) -> None:
    engine = ExecutionEngine(None, mixed_dag())
    with pytest.raises(ValueError, match="nothing watched this engine's runs"):
        write_report(tmp_path / "r.html", engine=engine)
    with pytest.raises(TypeError, match="engine= or store="):
        write_report(tmp_path / "r.html")
    with pytest.raises(TypeError, match="needs the run_id"):
        write_report(tmp_path / "r.html", store=RunStore())


@needs_page
def test_report_from_a_store_has_the_same_views(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.db")
    dag = mixed_dag()
    engine = ExecutionEngine(None, dag, fail_fast=False, skip_failed=True, store=store)
    run(engine.execute({"n": 7}, pipeline_id="stored"))
    snap = store_snapshot(store, "stored", dag)
    assert snap["status"] == "failed" and snap["total"] == 22
    assert by_name(snap) == {
        "source": {"total": 1, "done": 1},
        "ok": {"total": 10, "done": 10},
        "bad": {"total": 2, "failed": 2},
        "after": {"total": 2, "skipped": 2},
        "cached": {"total": 1, "done": 1},
        "grow": {"total": 1, "done": 1},
        "child": {"total": 5, "done": 5},
    }
    (failure,) = {f["task"]: f for f in snap["failures"]}.values()
    assert failure["type"] == "ValueError" and failure["message"] == "bad input 7"
    assert "raise ValueError" in failure["traceback"]
    edges = {(e["source"], e["target"]) for e in snap["graph"]["edges"]}
    assert ("bad", "after") in edges and ("source", "ok") in edges
    assert len(snap["stream"]["bars"]) == 20  # every attempt that ran (18 done, 2 failed)
    # without the DAG: the names and counts, no edges
    bare = store_snapshot(store, "stored")
    assert by_name(bare) == by_name(snap) and bare["graph"]["edges"] == []
    path = write_report(tmp_path / "stored.html", store=store, run_id="stored", dag=dag)
    data = embedded(path.read_text())
    assert data["runs"][0]["run_id"] == "stored" and data["runs"][0]["failed"] == 2
    assert data["snapshots"]["stored"]["counts"] == snap["counts"]
    from taskiq_dataflow.errors import StoreError

    with pytest.raises(StoreError, match="no run 'missing'"):
        store_snapshot(store, "missing")


def test_many_task_names_are_capped_with_the_rest_as_other() -> None:
    nodes = [DAGNode(source, output="s", inputs=["n"], name="source")]
    nodes += [DAGNode(ok, output=f"o{i}", inputs=["s"], name=f"name{i}") for i in range(300)]
    engine = ExecutionEngine(None, dag_of(*nodes))

    async def main() -> dict[str, Any]:
        async with watch_runs(engine) as monitor:
            await engine.execute({"n": 1}, pipeline_id="many")
        found = monitor.find("many")
        assert found is not None
        return found.snapshot()

    snap = run(main())
    assert len(snap["by_name"]) == 200
    other = snap["by_name"][-1]
    assert other["name"] == "(other)" and other["total"] == 301 - 199
    assert sum(row["total"] for row in snap["by_name"]) == 301
    assert len(snap["graph"]["nodes"]) == 200
    assert sum(e["count"] for e in snap["graph"]["edges"]) == 300


def test_streams_show_their_items_and_credits_while_they_flow() -> None:
    gate = asyncio.Event()

    @pipeline_task(output="ticks", inputs=[])
    async def ticker() -> AsyncIterator[int]:
        for i in range(20):
            yield i
        await gate.wait()  # the stream stays open until the test has looked

    @pipeline_task(output="total")
    async def summer(ticks: AsyncIterator[int]) -> int:
        await gate.wait()  # reads nothing until the test has looked: the items wait in line
        return sum([i async for i in ticks])

    registry = DataflowRegistry()
    registry.register_task(ticker)
    registry.register_task(summer)
    engine = ExecutionEngine(None, registry.build_dag())

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        async with watch_runs(engine) as monitor:
            handle = engine.start(pipeline_id="streamed")
            found = None
            for _ in range(200):
                await asyncio.sleep(0.01)
                found = monitor.find("streamed")
                streams = found.snapshot()["streams"] if found is not None else []
                if streams and streams[0]["items"] == 20:
                    break
            assert found is not None
            during = found.snapshot()["streams"]
            gate.set()
            outputs = await handle
            return during, found.snapshot()["streams"], outputs["total"]

    during, after, total = run(main())
    assert total == sum(range(20))
    (stream,) = during
    assert stream == {
        "key": "ticks", "producer": "ticker", "items": 20, "credits": 64 - 20, "state": "open",
    }  # fmt: skip
    assert after == [{**stream, "credits": 64, "state": "closed"}]  # read to its end


def test_two_concurrent_runs_are_listed_and_each_selectable_on_the_event_stream() -> None:
    engine = ExecutionEngine(None, slow_dag(width=10, depth=10), max_parallel=4)

    async def main() -> None:
        async with serve_dashboard(engine, port=0) as dash:
            assert dash.url is not None
            one = engine.start({"n": 1}, pipeline_id="one")
            two = engine.start({"n": 2}, pipeline_id="two")
            seen: list[tuple[str, Any]] = []
            await read_events(dash.url + "api/events?run=one", time.monotonic() + 1.2, seen)
            await asyncio.gather(one.result(), two.result())
        runs = [data for event, data in seen if event == "runs"]
        assert {r["run_id"] for r in runs[-1]["runs"]} == {"one", "two"}
        snaps = [data for event, data in seen if event == "snapshot"]
        assert snaps and {s["run_id"] for s in snaps} == {"one"}

    run(main())


def test_host_port_of_the_command_line() -> None:
    import argparse

    from taskiq_dataflow.cli.args import host_port

    assert host_port("8787") == ("127.0.0.1", 8787)
    assert host_port("0.0.0.0:0") == ("0.0.0.0", 0)
    assert host_port("[::1]:9000") == ("::1", 9000)
    for bad in ("x", ":80", "1.2.3.4:port", "70000"):
        with pytest.raises(argparse.ArgumentTypeError):
            host_port(bad)


def test_throughput_and_task_stream_stay_within_their_caps() -> None:
    from taskiq_dataflow.dashboard.limits import MAX_BARS, MAX_LANES, MAX_POINTS
    from taskiq_dataflow.dashboard.views import add_point, stream_view

    points: list[list[float]] = []
    for i in range(5000):
        add_point(points, i * 0.5, 10.0)
    assert len(points) <= MAX_POINTS and points[-1][0] == 4999 * 0.5  # the whole run, coarser
    assert all(rate == 10.0 for _, rate in points)
    # overlapping bars in process take as many slots as were busy at once, then reuse them
    bars = [(None, "t", float(i), i + 2.5, True) for i in range(10)]
    view = stream_view(bars, 20.0)
    assert view["lanes"] == ["slot 1", "slot 2", "slot 3"]
    assert view["window"] == [0.0, 20.0]
    # workers get a lane each; past the caps bars and lanes are dropped, not piled up
    many = [(f"w{i % 500}", "t", float(i), i + 1.0, i % 7 != 0) for i in range(5000)]
    view = stream_view(many, 5000.0)
    assert len(view["bars"]) <= MAX_BARS and len(view["lanes"]) <= MAX_LANES
    assert {b["status"] for b in view["bars"]} == {"done", "failed"}


async def nap(s: int) -> int:
    await asyncio.sleep(random.uniform(0.01, 0.07))  # completions spread out, not in lockstep
    return s


def test_task_stream_bars_spread_over_the_whole_run_not_only_the_moments_before_ticks(
    monkeypatch: Any,
) -> None:
    # a tick samples far fewer completions than happened since the last one (as on a fast
    # run): the bars it keeps must still cover the time between two ticks evenly
    monkeypatch.setattr(monitor_module, "SCAN_PER_TICK", 100)
    monkeypatch.setattr(monitor_module, "KEPT_PER_TICK", 400)
    nodes = [DAGNode(source, output="s", inputs=["n"], name="source")]
    nodes += [DAGNode(nap, output=f"o{i}", inputs=["s"], name="nap") for i in range(2500)]
    engine = ExecutionEngine(None, dag_of(*nodes), max_parallel=50)  # ~1,250 tasks a second

    async def main() -> dict[str, Any]:
        async with watch_runs(engine) as runs:
            await engine.execute({"n": 1}, pipeline_id="spread")
            found = runs.find("spread")
            assert found is not None
            return found.snapshot()

    snap = run(main())
    ends = [bar["end"] for bar in snap["stream"]["bars"]]
    assert len(ends) > 100
    buckets = {int(end / 0.1) for end in ends}
    span = range(2, int((snap["elapsed"] - 0.2) / 0.1))
    covered = sum(b in buckets for b in span) / len(span)
    assert covered > 0.6, f"bars in only {covered:.0%} of the run's tenths of a second"


async def chatty(s: int) -> int:
    logging.getLogger("tests.chatty").info("working on %d", s)
    return s


def test_what_tasks_log_reaches_the_dashboard_without_a_store(monkeypatch: Any) -> None:
    # records exist only from the logger's own level up (the root's WARNING by default)
    monkeypatch.setattr(logging.getLogger("tests.chatty"), "level", logging.INFO)
    nodes = [DAGNode(source, output="s", inputs=["n"], name="source")]
    nodes += [DAGNode(chatty, output=f"c{i}", inputs=["s"], name="chatty") for i in range(3)]
    engine = ExecutionEngine(None, dag_of(*nodes))

    async def main() -> dict[str, Any]:
        async with watch_runs(engine) as runs:
            await engine.execute({"n": 7}, pipeline_id="chat")
            found = runs.find("chat")
            assert found is not None
            return found.snapshot()

    logs = run(main())["logs"]
    assert [(r["task"], r["level"], r["message"]) for r in logs] == [
        ("chatty", "INFO", "working on 7")
    ] * 3
    assert all(r["t"] >= 0 for r in logs)
