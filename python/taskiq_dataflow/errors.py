"""Errors users see. Each names the culprit: the task, the key, the cycle as a path."""

from __future__ import annotations

from collections.abc import Sequence

MAX_LISTED = 20


class DAGValidationError(ValueError):
    """The graph is invalid. `problems` lists every problem found, each a readable sentence."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            shown = self.problems[:MAX_LISTED]
            listed = "\n".join(f"  - {p}" for p in shown)
            more = len(self.problems) - len(shown)
            tail = f"\n  ... and {more} more (see .problems)" if more else ""
            message = f"the DAG has {len(self.problems)} problems:\n{listed}{tail}"
        super().__init__(message)


class CycleError(DAGValidationError):
    """The graph has a cycle; `cycle` is the path as task names, first name repeated at the end."""

    def __init__(self, cycle: Sequence[str], problems: Sequence[str] | None = None) -> None:
        self.cycle = list(cycle)
        super().__init__(problems or [format_cycle(self.cycle)])


def format_cycle(names: Sequence[str]) -> str:
    return "Cycle detected: " + " -> ".join(names)
