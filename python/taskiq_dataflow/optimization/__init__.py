"""Resource-aware parallelism (taskiq-flow's `optimization` package); see parallel.py."""

from .parallel import (
    ResourceAwareExecutor,
    TaskResourceProfile,
    get_default_executor,
    machine_resources,
    profile_of,
)

__all__ = [
    "ResourceAwareExecutor",
    "TaskResourceProfile",
    "get_default_executor",
    "machine_resources",
    "profile_of",
]
