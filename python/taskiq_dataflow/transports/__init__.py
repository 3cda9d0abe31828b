"""Interchangeable dispatch: in-process, any taskiq broker."""

from .base import Completion, Job, Transport
from .local import LocalTransport

__all__ = ["Completion", "Job", "LocalTransport", "Transport"]
