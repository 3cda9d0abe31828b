"""What the e2e engine scripts print: run `engine` on `inputs` and write one JSON line,
{"results": {key: value produced}, "seconds"} (exit code 0), or {"error": "<type>: <message>",
"seconds"} (exit code 1)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


def run_and_report(engine: Any, inputs: dict[str, Any]) -> int:
    started = time.monotonic()
    try:
        results = asyncio.run(engine.execute(inputs))
    except Exception as exc:
        seconds = time.monotonic() - started
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "seconds": seconds}))
        return 1
    produced = {key: value for key, value in results.items() if key not in inputs}
    print(json.dumps({"results": produced, "seconds": time.monotonic() - started}))
    return 0
