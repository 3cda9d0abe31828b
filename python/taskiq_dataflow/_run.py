"""Former home of the engine loop, kept for the names other modules import from it.

The loop is now run_state.RunState (pure state machine) and driver.Driver (its async driver);
see ARCHITECTURE.md.
"""

from .run_state import (
    COMPENSATION,
    OVERRIDES,
    Plan,
    Policy,
    StepResult,
    split_outputs,
)
from .task import all_names, params_of, positional_params

__all__ = [
    "COMPENSATION",
    "OVERRIDES",
    "Plan",
    "Policy",
    "StepResult",
    "all_names",
    "params_of",
    "positional_params",
    "split_outputs",
]
