"""taskorch_nb: safe, visible LLM agents from a Jupyter notebook.

This module only re-exports the public names; the work happens in the layers
below (see DESIGN.md). `%load_ext taskorch_nb` loads the notebook magics.
"""

from __future__ import annotations

from taskorch_nb.agents.archetypes import Archetype as Archetype
from taskorch_nb.agents.archetypes import register_archetype as register_archetype
from taskorch_nb.agents.workflow import register_workflow as register_workflow
from taskorch_nb.core.budget import BudgetGuard as BudgetGuard
from taskorch_nb.core.budget import CostReport as CostReport
from taskorch_nb.core.circuit import CircuitBreaker as CircuitBreaker
from taskorch_nb.core.circuit import CircuitState as CircuitState
from taskorch_nb.core.clock import FakeClock as FakeClock
from taskorch_nb.core.clock import RealClock as RealClock
from taskorch_nb.core.immune import Pattern as Pattern
from taskorch_nb.core.retry import RetryPolicy as RetryPolicy
from taskorch_nb.engine.orchestrator import Orchestrator as Orchestrator
from taskorch_nb.engine.orchestrator import history as history
from taskorch_nb.engine.run import Run as Run
from taskorch_nb.engine.run import RunStatus as RunStatus
from taskorch_nb.errors import BudgetExceededError as BudgetExceededError
from taskorch_nb.errors import CircuitOpenError as CircuitOpenError
from taskorch_nb.errors import ConfigurationError as ConfigurationError
from taskorch_nb.errors import TaskorchError as TaskorchError
from taskorch_nb.errors import WorkflowError as WorkflowError

# Registers the HTML views of results (core and engine stay free of notebook code).
from taskorch_nb.notebook import display as _display  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "Archetype",
    "BudgetExceededError",
    "BudgetGuard",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ConfigurationError",
    "CostReport",
    "FakeClock",
    "Orchestrator",
    "Pattern",
    "RealClock",
    "RetryPolicy",
    "Run",
    "RunStatus",
    "TaskorchError",
    "WorkflowError",
    "history",
    "load_ipython_extension",
    "register_archetype",
    "register_workflow",
]


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext taskorch_nb`: register the `%%orchestrate` magics."""
    from taskorch_nb.notebook.magics import load_ipython_extension as load

    load(ipython)
