"""Slots shared by every concurrent run of one engine: `ExecutionEngine(max_parallel=N)` bounds
the tasks in flight across all of them, and ready tasks of concurrent runs share the slots
fairly (a big run does not starve a small one started after it).

Each run's Rust scheduler keeps its ready tasks back beyond its capacity; this module only sets
those capacities (`Scheduler.set_capacity`) after every batch any run handled, and tells a run
whose capacity grew to take its ready tasks (a SlotsGranted event through its sink). The bound
holds at every moment: a run is raised only by slots that are free now, and a run above its
fair share is lowered to it, so it gives slots back as its tasks end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .run_state import SlotsGranted

if TYPE_CHECKING:
    from .driver import Driver

_GRANTED = SlotsGranted()


class SharedSlots:
    __slots__ = ("drivers", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.drivers: list[Driver] = []

    def join(self, driver: Driver) -> None:
        self.drivers.append(driver)
        self.rebalance()

    def leave(self, driver: Driver) -> None:
        if driver in self.drivers:
            self.drivers.remove(driver)
            self.rebalance()

    def rebalance(self) -> None:
        """Fair targets by water-filling over each run's demand (running + ready, at most its
        own limit); free slots go to the runs furthest below their target."""
        drivers = [d for d in self.drivers if d.state.status is None]
        if not drivers:
            return
        counts = [d.state.scheduler.counts() for d in drivers]
        running = [c["running"] for c in counts]
        demand = [
            min(c["running"] + c["ready"], d.limit if d.limit is not None else self.total)
            for d, c in zip(drivers, counts, strict=True)
        ]
        targets = water_fill(self.total, demand)
        # slots nobody needs now are headroom, so that a run dispatches what its next batch
        # makes ready without waiting for a rebalance
        limits = [d.limit if d.limit is not None else self.total for d in drivers]
        room = [m - t for m, t in zip(limits, targets, strict=True)]
        spare = water_fill(self.total - sum(targets), room)
        targets = [t + s for t, s in zip(targets, spare, strict=True)]
        free = self.total - sum(running)
        # most below target first: the run that waits longest for its share gets it first
        order = sorted(range(len(drivers)), key=lambda i: running[i] - targets[i])
        for i in order:
            extra = min(max(targets[i] - running[i], 0), max(free, 0))
            free -= extra
            capacity = targets[i] if targets[i] < running[i] else running[i] + extra
            driver = drivers[i]
            driver.state.scheduler.set_capacity(capacity)
            if capacity > running[i] and counts[i]["ready"]:
                driver.sink.signal(_GRANTED)


def water_fill(total: int, demand: list[int]) -> list[int]:
    """Split `total` slots: every run gets min(its demand, an equal level), the level as high
    as the slots allow; what the equal split cannot divide goes to the first runs."""
    targets = [0] * len(demand)
    left = total
    open_runs = sorted(range(len(demand)), key=demand.__getitem__)
    while open_runs and left > 0:
        share = max(left // len(open_runs), 1)
        i = open_runs[0]
        if demand[i] - targets[i] <= share:
            left -= demand[i] - targets[i]
            targets[i] = demand[i]
            open_runs.pop(0)
            continue
        for i in list(open_runs):
            give = min(share, demand[i] - targets[i], left)
            targets[i] += give
            left -= give
            if targets[i] == demand[i]:
                open_runs.remove(i)
            if left == 0:
                break
    return targets
