"""The caps of the dashboard's data (the contract's, dashboard-schema.md) and of its sampling.

Everything the page receives is bounded here, whatever the size of the run: a 1M-task run and
a 10-task run cost the browser the same.
"""

from __future__ import annotations

TICK = 0.5  # seconds between two looks at a run (and at most one push per client per tick)

MAX_NAMES = 200  # by_name rows and graph nodes; the rest summed as OTHER
OTHER = "(other)"
MAX_BARS = 2000  # task stream bars, the most recent
MAX_LANES = 200  # task stream lanes (slots in process, else workers); bars beyond are dropped
MAX_POINTS = 600  # throughput points: pairs are merged when a run outlasts them
MAX_FAILURES = 100  # the first ones kept
MAX_LOGS = 500  # the most recent
MAX_STREAMS = 100
MAX_WORKERS = 500
MAX_INPUTS = 100  # external inputs of the graph, each with at most MAX_NAMES targets
MAX_RUNS = 50  # finished runs an engine's dashboard keeps (running ones are always kept)
MAX_LISTED = 200  # runs in a runs list, the newest (nested runs may be many)

MAX_TEXT = 2000  # characters of a message, a task name or a log line
MAX_TRACEBACK = 16_000  # characters of a traceback (its end is kept: the raise is there)
MAX_RUN_ID = 200  # longer run ids in a request are refused without a look-up

# sampling of the task stream, per tick: of the batches dispatched and completed since the
# last tick, those kept (thinned evenly over the tick: KEPT_PER_TICK items at most each way,
# ~1 ms to match), the bars made of the matches (spread evenly over the tick), and the starts
# remembered to match later completions (per run; oldest dropped first)
KEPT_PER_TICK = 16_384
SCAN_PER_TICK = 2048  # bars per tick at most
STARTS_KEPT = 65_536


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_end(text: str, limit: int = MAX_TRACEBACK) -> str:
    return text if len(text) <= limit else "…" + text[len(text) - limit + 1 :]
