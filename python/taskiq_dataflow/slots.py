"""Slots shared by every concurrent run of one engine: `ExecutionEngine(max_parallel=N)` bounds
the tasks in flight across all of them, and ready tasks of concurrent runs share the slots
fairly (a big run does not starve a small one started after it).

Each run's Rust scheduler keeps its ready tasks back beyond its capacity; this module only sets
those capacities (`Scheduler.set_capacity`) after every batch any run handled, and tells a run
whose capacity grew to take its ready tasks (a SlotsGranted event through its sink). The bound
holds at every moment: a run is raised only by slots that are free now, and a run above its
fair share is lowered to it, so it gives slots back as its tasks end.

A task that secedes (seceding.py: it awaits a nested run, or called `secede()`) stays running
in its scheduler but holds no slot: the counts here are the scheduler's `running` less the
run's seceded tasks, and its capacity is its share plus those tasks. A task rejoining waits in
`rejoiners` while every slot is busy and gets the first slot a batch frees: while one waits
(or when a task ended seceded), a batch is recorded with its run's capacity at 0, so the
rebalance after it hands the freed slots to the rejoiners before any task starts. A run
bounded only by its own `execute(max_parallel=)` gets slots of its own at its first secede
(`slots_of`); in a run bounded by nothing, a secede gives back nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import _core
from .run_state import SlotsGranted

if TYPE_CHECKING:
    from .driver import Driver
    from .transports.base import Completion

_GRANTED = SlotsGranted()


class SharedSlots:
    __slots__ = ("away", "drivers", "rejoiners", "seceded", "soon", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.drivers: list[Driver] = []
        # seceded tasks, (driver, node) -> open secedes (they nest), until a task holds its
        # slot again; `away` counts a run's seceded tasks that are not waiting to rejoin
        self.seceded: dict[tuple[Driver, int], int] = {}
        self.away: dict[Driver, int] = {}
        self.rejoiners: deque[tuple[Driver, int, asyncio.Future[None]]] = deque()
        self.soon = False  # a rebalance is due at the loop's next turn (rebalance_soon)

    def join(self, driver: Driver) -> None:
        self.drivers.append(driver)
        self.rebalance()

    def leave(self, driver: Driver) -> None:
        if driver in self.drivers:
            self.drivers.remove(driver)
            if self.seceded:
                self._forget(driver)
            # its slots go to the others at the loop's next turn, with whatever else changed
            # in this one (concurrent runs end and start together)
            self.rebalance_soon()

    def rebalance_soon(self) -> None:
        """`rebalance()` at the event loop's next turn, once for every batch of every run
        handled in this one. The bound holds meanwhile: the capacities sum to at most the
        slots, and each run stays within its own until then."""
        if not self.soon:
            self.soon = True
            asyncio.get_running_loop().call_soon(self._rebalance_due)

    def _rebalance_due(self) -> None:
        self.soon = False
        self.rebalance()

    def rebalance(self) -> None:
        """Fair targets by water-filling over each run's demand (running + ready, at most its
        own limit); free slots go to the runs furthest below their target."""
        drivers = [d for d in self.drivers if d.state.status is None]
        if not drivers:
            return
        if len(drivers) == 1 and not self.rejoiners:
            # alone (most runs of a service): water-filling gives it every slot its own limit
            # allows, plus its seceded tasks
            self._alone(drivers[0])
            return
        total = self.total
        schedulers = [d.state.scheduler for d in drivers]
        away = [self.away.get(d, 0) for d in drivers] if self.away else [0] * len(drivers)
        if not self.rejoiners and all(d.limit is None for d in drivers):
            # every run's demand fits (a service's concurrent small runs, on every loop turn):
            # each gets it and an equal share of the rest as headroom, which is what the
            # general case below comes to then; one call for all the schedulers
            granted = _core.share_slots(schedulers, total, away)
            if granted is not None:
                for i in granted:
                    drivers[i].sink.signal(_GRANTED)
                return
        # read what it needs, not counts()'s dict of every state
        in_scheduler = [s.running for s in schedulers]
        ready = [s.ready for s in schedulers]
        # tasks holding a slot, and those waiting to rejoin (a slot is theirs before anyone's)
        running = [r - a for r, a in zip(in_scheduler, away, strict=True)]
        if self.rejoiners:
            self._admit(drivers, running)
        limits = [d.limit if d.limit is not None else total for d in drivers]
        demand = [min(r + q, m) for r, q, m in zip(running, ready, limits, strict=True)]
        targets = water_fill(total, demand)
        free = total - sum(running)
        # what each run needs now first, most below its target first (the run that waits
        # longest for its share gets it first); a run over its target keeps only the target
        order = sorted(range(len(drivers)), key=lambda i: running[i] - targets[i])
        have = targets.copy()
        for i in order:
            if targets[i] >= running[i]:
                extra = min(targets[i] - running[i], max(free, 0))
                free -= extra
                have[i] = running[i] + extra
        # then the slots nobody needs now, as headroom: a run dispatches what its next batch
        # makes ready without waiting for a rebalance
        room = [max(m - h, 0) for m, h in zip(limits, have, strict=True)]
        spare = water_fill(max(free, 0), room)
        for i, scheduler in enumerate(schedulers):
            # seceded tasks are running in the scheduler, on no slot
            capacity = have[i] + spare[i] + away[i]
            scheduler.set_capacity(capacity)
            if capacity > in_scheduler[i] and ready[i]:
                drivers[i].sink.signal(_GRANTED)

    def _alone(self, driver: Driver) -> None:
        limit = driver.limit
        capacity = self.total if limit is None else min(limit, self.total)
        capacity += self.away.get(driver, 0) if self.away else 0
        scheduler = driver.state.scheduler
        scheduler.set_capacity(capacity)
        if capacity > scheduler.running and scheduler.ready:
            driver.sink.signal(_GRANTED)

    # -- secede / rejoin (seceding.py) ----------------------------------------------------------

    def _secede(self, key: tuple[Driver, int]) -> None:
        depth = self.seceded.get(key, 0)
        self.seceded[key] = depth + 1
        if depth == 0:
            driver = key[0]
            self.away[driver] = self.away.get(driver, 0) + 1
            self.rebalance()

    async def _rejoin(self, key: tuple[Driver, int], wait: bool = True) -> None:
        depth = self.seceded.get(key)
        if depth is None:
            return  # never seceded (or rejoined already): it holds its slot
        if depth > 1:
            self.seceded[key] = depth - 1
            return
        driver, node = key
        self._back(driver)
        if not wait or driver not in self.drivers or (not self.rejoiners and self._room(driver)):
            # without waiting, it may run over the bound until it ends
            del self.seceded[key]
            self.rebalance()
            return
        granted = asyncio.get_running_loop().create_future()
        entry = (driver, node, granted)
        self.rejoiners.append(entry)
        self.rebalance()  # no task starts on the slot it now waits for
        try:
            await granted
        except asyncio.CancelledError:
            # ending anyway: it holds a slot again (over the bound if need be) until it ends
            self.seceded.pop(key, None)
            if entry in self.rejoiners:
                self.rejoiners.remove(entry)
            raise

    def taking(self, driver: Driver, batch: Sequence[Completion]) -> bool:
        """Before `driver` records `batch` (while some task is seceded): a seceded task that
        ended takes its extra capacity with it, and while tasks wait to rejoin no task starts
        on a slot the batch frees. Either way the batch is recorded at capacity 0 and the
        rebalance after it (True: the caller runs it) sets the run's capacity."""
        hold = bool(self.rejoiners)
        if self.away.get(driver):
            seceded = self.seceded
            for c in batch:
                if seceded.pop((driver, c.node), None) is not None:
                    self._back(driver)
                    hold = True
        if hold:
            driver.state.scheduler.set_capacity(0)
        return hold

    def _back(self, driver: Driver) -> None:
        left = self.away[driver] - 1
        if left:
            self.away[driver] = left
        else:
            del self.away[driver]

    def _room(self, driver: Driver) -> bool:
        """Whether a slot is free now for a task of `driver` rejoining (none waits before it)."""
        held = 0
        mine = 0
        for d in self.drivers:
            if d.state.status is None:
                running = d.state.scheduler.running - self.away.get(d, 0)
                held += running
                if d is driver:
                    mine = running
        # (the rejoining task, no longer away, is counted in `held` and `mine` already)
        return held - 1 < self.total and (driver.limit is None or mine - 1 < driver.limit)

    def _admit(self, drivers: list[Driver], running: list[int]) -> None:
        """Give the free slots to the tasks waiting to rejoin, first come first served (one
        that its run's own bound holds back does not hold back the others)."""
        waiting: dict[Driver, int] = {}
        for driver, _, granted in self.rejoiners:
            if not granted.done():
                waiting[driver] = waiting.get(driver, 0) + 1
        held = {d: r - waiting.get(d, 0) for d, r in zip(drivers, running, strict=True)}
        free = self.total - sum(held.values())
        kept: deque[tuple[Driver, int, asyncio.Future[None]]] = deque()
        for entry in self.rejoiners:
            driver, node, granted = entry
            if granted.done():
                continue  # cancelled while it waited
            mine = held.get(driver)
            if mine is not None:  # (a run that has ended bounds nothing any more)
                if free <= 0 or (driver.limit is not None and mine >= driver.limit):
                    kept.append(entry)
                    continue
                free -= 1
                held[driver] = mine + 1
            self.seceded.pop((driver, node), None)
            granted.set_result(None)
        self.rejoiners = kept

    def _forget(self, driver: Driver) -> None:
        """A run left: its seceded tasks bound nothing now, those waiting go on at once."""
        for key in [k for k in self.seceded if k[0] is driver]:
            del self.seceded[key]
        self.away.pop(driver, None)
        kept: deque[tuple[Driver, int, asyncio.Future[None]]] = deque()
        for entry in self.rejoiners:
            if entry[0] is not driver:
                kept.append(entry)
            elif not entry[2].done():
                entry[2].set_result(None)
        self.rejoiners = kept


def slots_of(driver: Driver) -> SharedSlots | None:
    """The slots a task of `driver` gives back when it secedes: the engine's, else slots of
    the run's own (its `execute(max_parallel=)`, made at its first secede), else None (an
    unbounded run: nothing to give back)."""
    slots = driver.slots
    if slots is None and driver.limit is not None:
        slots = driver.slots = SharedSlots(driver.limit)
        slots.drivers.append(driver)
    return slots


def water_fill(total: int, demand: list[int]) -> list[int]:
    """Split `total` slots: every run gets min(its demand, an equal level), the level as high
    as the slots allow; what the equal split cannot divide goes to the first runs."""
    if sum(demand) <= total:
        return list(demand)  # enough for all: the level rises above every demand
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
