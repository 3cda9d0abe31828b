"""The dashboard: a live web page of an engine's runs, and offline HTML reports.

    async with serve_dashboard(engine, port=0) as dash:   # or Dashboard(engine).start()/stop()
        print(dash.url)
        await engine.execute()
    write_report("run.html", engine=engine)                # or store=RunStore(...), run_id=...

Modules by level: `limits` (caps) < `views` (snapshot parts from plain data) < `monitor` (a
live engine's runs, sampled at a cost the engine does not notice) and `from_store` (a recorded
run) < `report` (the self-contained file) and `server` (aiohttp, imported when it starts).
The page itself (`static/`) follows the data contract in the project notes.
"""

from .from_store import store_snapshot
from .monitor import EngineMonitor, RunMonitor, watch_runs
from .report import write_report
from .server import Dashboard, serve_dashboard

__all__ = [
    "Dashboard",
    "EngineMonitor",
    "RunMonitor",
    "serve_dashboard",
    "store_snapshot",
    "watch_runs",
    "write_report",
]
