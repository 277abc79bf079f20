"""taskorch_nb: safe, visible LLM agents from a Jupyter notebook.

This module only re-exports the public names; the work happens in the layers
below (see DESIGN.md).
"""

from __future__ import annotations

from taskorch_nb.core.circuit import CircuitBreaker as CircuitBreaker
from taskorch_nb.core.circuit import CircuitState as CircuitState
from taskorch_nb.core.clock import FakeClock as FakeClock
from taskorch_nb.core.clock import RealClock as RealClock
from taskorch_nb.core.immune import Pattern as Pattern
from taskorch_nb.core.orchestrator import Orchestrator as Orchestrator
from taskorch_nb.core.retry import RetryPolicy as RetryPolicy
from taskorch_nb.errors import CircuitOpenError as CircuitOpenError
from taskorch_nb.errors import ConfigurationError as ConfigurationError
from taskorch_nb.errors import TaskorchError as TaskorchError

__version__ = "0.1.0"

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ConfigurationError",
    "FakeClock",
    "Orchestrator",
    "Pattern",
    "RealClock",
    "RetryPolicy",
    "TaskorchError",
]
