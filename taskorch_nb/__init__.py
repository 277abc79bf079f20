"""taskorch_nb: safe, visible LLM agents from a Jupyter notebook.

This module only re-exports the public names; the work happens in the layers
below (see DESIGN.md). `%load_ext taskorch_nb` loads the notebook magics.
The front-end names (`Dashboard`, `current_orchestrator`) and the testing kit
load on first use, so `import taskorch_nb` pulls in no widgets, IPython or HTTP
client.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from taskorch_nb.agents.archetypes import Archetype as Archetype
from taskorch_nb.agents.archetypes import register_archetype as register_archetype
from taskorch_nb.agents.workflow import register_workflow as register_workflow
from taskorch_nb.batch.batch import Batch as Batch
from taskorch_nb.core.budget import BudgetGuard as BudgetGuard
from taskorch_nb.core.budget import CostReport as CostReport
from taskorch_nb.core.circuit import CircuitBreaker as CircuitBreaker
from taskorch_nb.core.circuit import CircuitState as CircuitState
from taskorch_nb.core.clock import RealClock as RealClock
from taskorch_nb.core.immune import Pattern as Pattern
from taskorch_nb.core.pattern_frame import patterns_df as patterns_df
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
from taskorch_nb.notebook.analysis import compare as compare
from taskorch_nb.notebook.analysis import failures as failures
from taskorch_nb.notebook.analysis import phase_durations as phase_durations
from taskorch_nb.report import write_report as write_report
from taskorch_nb.tracing.frames import cost_df as cost_df
from taskorch_nb.tracing.frames import events_df as events_df
from taskorch_nb.tracing.frames import spans_df as spans_df

if _typing.TYPE_CHECKING:
    from taskorch_nb.notebook.magics import current_orchestrator as current_orchestrator
    from taskorch_nb.notebook.widgets import Dashboard as Dashboard
    from taskorch_nb.testing import FakeClock as FakeClock
    from taskorch_nb.testing import FaultPlan as FaultPlan
    from taskorch_nb.testing import FlakyTool as FlakyTool
    from taskorch_nb.testing import NaiveOutcome as NaiveOutcome
    from taskorch_nb.testing import ScriptedResponder as ScriptedResponder
    from taskorch_nb.testing import SimReply as SimReply
    from taskorch_nb.testing import SimRequest as SimRequest
    from taskorch_nb.testing import SimulatedProvider as SimulatedProvider
    from taskorch_nb.testing import http_error as http_error
    from taskorch_nb.testing import naive_retry_agent as naive_retry_agent

# Registers the HTML views of results (core and engine stay free of notebook code).
from taskorch_nb.notebook import display as _display  # noqa: F401

__version__ = "0.1.0"

#: Names loaded on first use, and the module each comes from.
_LAZY = {
    "Dashboard": "taskorch_nb.notebook.widgets",
    "current_orchestrator": "taskorch_nb.notebook.magics",
    **dict.fromkeys(
        ("FakeClock", "FaultPlan", "FlakyTool", "NaiveOutcome", "ScriptedResponder", "SimReply",
         "SimRequest", "SimulatedProvider", "http_error", "naive_retry_agent"),
        "taskorch_nb.testing",
    ),
}

__all__ = [
    "Archetype",
    "Batch",
    "BudgetExceededError",
    "BudgetGuard",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitState",
    "ConfigurationError",
    "CostReport",
    "Dashboard",
    "FakeClock",
    "FaultPlan",
    "FlakyTool",
    "NaiveOutcome",
    "Orchestrator",
    "Pattern",
    "RealClock",
    "RetryPolicy",
    "Run",
    "RunStatus",
    "ScriptedResponder",
    "SimReply",
    "SimRequest",
    "SimulatedProvider",
    "TaskorchError",
    "WorkflowError",
    "compare",
    "cost_df",
    "current_orchestrator",
    "events_df",
    "failures",
    "history",
    "http_error",
    "load_ipython_extension",
    "naive_retry_agent",
    "patterns_df",
    "phase_durations",
    "register_archetype",
    "register_workflow",
    "spans_df",
    "write_report",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskorch_nb' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def load_ipython_extension(ipython: object) -> None:
    """`%load_ext taskorch_nb`: register the `%%orchestrate` magics."""
    from taskorch_nb.notebook.magics import load_ipython_extension as load

    load(ipython)
