"""Model providers behind one seam: OpenAI-compatible, Anthropic, and the offline simulator.

`OpenAIProvider` and `AnthropicProvider` load on first use (they import httpx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskorch_nb.llm.base import Completion as Completion
from taskorch_nb.llm.base import Provider as Provider
from taskorch_nb.llm.base import ToolCall as ToolCall
from taskorch_nb.llm.base import Usage as Usage
from taskorch_nb.llm.base import estimate_input_tokens as estimate_input_tokens
from taskorch_nb.llm.faults import Fault as Fault
from taskorch_nb.llm.faults import FaultPlan as FaultPlan
from taskorch_nb.llm.faults import FaultSpecError as FaultSpecError
from taskorch_nb.llm.registry import make_provider as make_provider
from taskorch_nb.llm.simulated import Responder as Responder
from taskorch_nb.llm.simulated import ScriptedResponder as ScriptedResponder
from taskorch_nb.llm.simulated import SimReply as SimReply
from taskorch_nb.llm.simulated import SimRequest as SimRequest
from taskorch_nb.llm.simulated import SimulatedProvider as SimulatedProvider

if TYPE_CHECKING:
    from taskorch_nb.llm.anthropic import AnthropicProvider as AnthropicProvider
    from taskorch_nb.llm.openai import OpenAIProvider as OpenAIProvider

__all__ = [
    "AnthropicProvider",
    "Completion",
    "Fault",
    "FaultPlan",
    "FaultSpecError",
    "OpenAIProvider",
    "Provider",
    "Responder",
    "ScriptedResponder",
    "SimReply",
    "SimRequest",
    "SimulatedProvider",
    "ToolCall",
    "Usage",
    "estimate_input_tokens",
    "make_provider",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAIProvider":
        from taskorch_nb.llm.openai import OpenAIProvider

        return OpenAIProvider
    if name == "AnthropicProvider":
        from taskorch_nb.llm.anthropic import AnthropicProvider

        return AnthropicProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
