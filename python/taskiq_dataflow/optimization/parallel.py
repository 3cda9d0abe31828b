"""Resource-aware parallelism: how many tasks of a given size this machine runs at once.

    engine = ExecutionEngine(broker, dag, max_parallel=8, resource_aware=True,
                             resource_profiles={"decode": {"estimated_cpu_cores": 2.0}})

With `resource_aware=True` an engine bounds its tasks in flight by what the machine has free
for tasks of the DAG's average profile (CPU cores not busy by the 1-minute load average, memory
available), never above `max_parallel` (10 when unset) nor below 1. A task's profile comes from
`resource_profiles` (by task name) or `pipeline_task(..., resources=...)`; a task
without one counts as `TaskResourceProfile()` (100 MB, half a core).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ResourceAwareExecutor",
    "TaskResourceProfile",
    "get_default_executor",
    "machine_resources",
    "profile_of",
]


@dataclass(frozen=True)
class TaskResourceProfile:
    """What one running task is expected to use."""

    estimated_memory_mb: int = 100
    estimated_cpu_cores: float = 0.5
    io_bound: bool = False  # waits on I/O: its cores do not count against the CPU bound

    def __post_init__(self) -> None:
        if self.estimated_memory_mb < 0 or self.estimated_cpu_cores < 0:
            raise ValueError(
                "TaskResourceProfile: estimated_memory_mb and estimated_cpu_cores must not be "
                f"negative, got {self.estimated_memory_mb} and {self.estimated_cpu_cores}"
            )


def profile_of(value: Any, where: str = "resource profile") -> TaskResourceProfile:
    """A TaskResourceProfile from a profile or a mapping of its fields (unknown fields raise)."""
    if isinstance(value, TaskResourceProfile):
        return value
    if isinstance(value, Mapping):
        known = TaskResourceProfile.__dataclass_fields__
        unknown = [k for k in value if k not in known]
        if unknown:
            raise TypeError(
                f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                f"a profile has {', '.join(known)}"
            )
        return TaskResourceProfile(**value)
    raise TypeError(
        f"{where}: expected a TaskResourceProfile or a dict of its fields, got "
        f"{type(value).__name__}"
    )


def machine_resources() -> tuple[float, float]:
    """(CPU cores not busy, memory available in MB) now, without sampling for a while."""
    cores = float(os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - no load average on this platform
        busy = 0.0
    free_cores = max(cores - busy, 0.0)
    memory_mb = _available_memory_mb()
    return free_cores, memory_mb


def _available_memory_mb() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (AttributeError, ValueError, OSError):  # pragma: no cover - unknown platform
        return float("inf")


class ResourceAwareExecutor:
    """Tasks to run at once for a profile, within `max_cpu_percent` / `max_memory_percent` of
    what is free now, between `min_parallel` and `max_parallel`."""

    def __init__(
        self,
        max_cpu_percent: float = 80.0,
        max_memory_percent: float = 80.0,
        min_parallel: int = 1,
        max_parallel: int = 10,
    ) -> None:
        for name, percent in (
            ("max_cpu_percent", max_cpu_percent),
            ("max_memory_percent", max_memory_percent),
        ):
            if not 0 < percent <= 100:
                raise ValueError(
                    f"ResourceAwareExecutor: {name} must be in (0, 100], got {percent}"
                )
        if not 1 <= min_parallel <= max_parallel:
            raise ValueError(
                "ResourceAwareExecutor: need 1 <= min_parallel <= max_parallel, got "
                f"{min_parallel} and {max_parallel}"
            )
        self.max_cpu = max_cpu_percent
        self.max_memory = max_memory_percent
        self.min_parallel = min_parallel
        self.max_parallel = max_parallel

    def get_optimal_parallelism(
        self,
        task_memory_estimate: float = 0,
        task_cpu_estimate: float = 0.5,
        *,
        io_bound: bool = False,
        resources: tuple[float, float] | None = None,
    ) -> int:
        """How many tasks using this much memory (MB) and CPU (cores) fit now.

        `resources` is (free cores, free memory MB), measured by machine_resources() if not
        given."""
        free_cores, free_mb = resources if resources is not None else machine_resources()
        bound = self.max_parallel
        if task_cpu_estimate > 0 and not io_bound:
            bound = min(bound, int(free_cores * self.max_cpu / 100 / task_cpu_estimate))
        if task_memory_estimate > 0:
            bound = min(bound, int(free_mb * self.max_memory / 100 / task_memory_estimate))
        return max(bound, self.min_parallel)

    def parallelism_for(
        self,
        profiles: Iterable[TaskResourceProfile],
        resources: tuple[float, float] | None = None,
    ) -> int:
        """The bound for a set of tasks: the bound for their average profile."""
        profiles = list(profiles) or [TaskResourceProfile()]
        n = len(profiles)
        memory = sum(p.estimated_memory_mb for p in profiles) / n
        # an I/O-bound task waits rather than computes: it takes no core
        cpu = sum(0.0 if p.io_bound else p.estimated_cpu_cores for p in profiles) / n
        return self.get_optimal_parallelism(memory, cpu, resources=resources)

    def __repr__(self) -> str:
        return (
            f"ResourceAwareExecutor(max_cpu_percent={self.max_cpu}, "
            f"max_memory_percent={self.max_memory}, min_parallel={self.min_parallel}, "
            f"max_parallel={self.max_parallel})"
        )


def get_default_executor() -> ResourceAwareExecutor:
    """A ResourceAwareExecutor with the default limits."""
    return ResourceAwareExecutor()
