"""The offline report: the dashboard's page as ONE self-contained HTML file (its css and js
inlined, no network) showing runs embedded as `window.DATAFLOW_REPORT`, as Dask's
`performance_report`. From an engine (its dashboard's runs, or its latest run) or a RunStore."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .monitor import EngineMonitor, RunMonitor
from .views import summary

if TYPE_CHECKING:
    from ..dataflow.dag import DAG
    from ..execution_engine import ExecutionEngine
    from ..store import RunStore

STATIC = Path(__file__).parent / "static"
_CSS = re.compile(r'<link[^>]*href="[^"]*dashboard\.css"[^>]*>')
_JS = re.compile(r'<script[^>]*src="[^"]*dashboard\.js"[^>]*>\s*</script>')


def write_report(
    path: str | Path,
    *,
    engine: ExecutionEngine | None = None,
    store: RunStore | None = None,
    run_id: str | None = None,
    dag: DAG | None = None,
) -> Path:
    """Write the report of `run_id` (None: every run watched on the engine: a Dashboard's
    or `watch_runs`') from `engine`, or of `run_id` from `store` (`dag`: the run's DAG, for the
    graph's edges). Returns the path written."""
    if (engine is None) == (store is None):
        raise TypeError("write_report() needs engine= or store= (one of them)")
    if store is not None:
        if run_id is None:
            raise TypeError("write_report(store=...) needs the run_id of the run to report")
        from .from_store import store_snapshot

        snapshots = [store_snapshot(store, run_id, dag)]
    else:
        assert engine is not None
        snapshots = [run.snapshot() for run in _engine_runs(engine, run_id)]
    data = {
        "runs": [summary(s) for s in snapshots],
        "snapshots": {s["run_id"]: s for s in snapshots},
    }
    target = Path(path)
    try:
        target.write_text(render(data), encoding="utf-8")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write the report to {target}: {exc.strerror}") from exc
    return target


def _engine_runs(engine: ExecutionEngine, run_id: str | None) -> list[RunMonitor]:
    monitor = EngineMonitor.attached(engine)
    if monitor is None:
        raise ValueError(
            "nothing watched this engine's runs: serve a Dashboard(engine) or wrap the runs in "
            "`async with watch_runs(engine):` before running them (or write the report from "
            "the run store: write_report(path, store=..., run_id=...))"
        )
    runs = monitor.newest_first()
    if run_id is not None:
        runs = [r for r in runs if r.run_id == run_id][:1]
        if not runs:
            raise KeyError(f"no run {run_id!r} of this engine to report")
    if not runs:
        raise ValueError("the engine has not run anything yet: there is nothing to report")
    return runs


def render(data: dict[str, Any]) -> str:
    """index.html with dashboard.css and dashboard.js inlined and `data` before the script."""
    try:
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        css = (STATIC / "dashboard.css").read_text(encoding="utf-8")
        js = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"the dashboard's page is not installed: {exc.filename} is missing"
        ) from None
    # "</" may not appear inside an inline script: "<\/" reads the same in JSON and JS strings
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    script = js.replace("</script", "<\\/script")
    inline = f"<script>window.DATAFLOW_REPORT = {blob};</script>\n<script>\n{script}\n</script>"
    page, found_css = _CSS.subn(lambda _: f"<style>\n{css}\n</style>", page, count=1)
    page, found_js = _JS.subn(lambda _: inline, page, count=1)
    if not (found_css and found_js):
        raise ValueError(
            f"{STATIC / 'index.html'} does not link dashboard.css and dashboard.js as the "
            'report expects (<link ... href="/static/dashboard.css"> and '
            '<script src="/static/dashboard.js"></script>)'
        )
    return page
