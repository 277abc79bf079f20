"""The agent loop: ask the model, run the tools it asks for, until it answers.

The loop owns no guards: every model call and tool call goes through the
`AgentContext` the run hands it (budget, breakers, retries, immune system,
journal). Tools whose breaker is open are withheld from the model, and the
immune system's corrective prompts are added to the conversation as they come.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from taskorch_nb.agents.archetypes import Archetype
from taskorch_nb.errors import (
    BudgetExceededError,
    CircuitOpenError,
    ConfigurationError,
    WorkflowError,
)
from taskorch_nb.llm.base import unfence

TOOL_RESULT_LIMIT = 8000


class AgentContext(Protocol):
    """What an agent may do; the run provides it with every guard in place."""

    async def complete(self, messages: list[dict], *, archetype: Archetype,
                       tools: list[dict] | None, response_format: dict | None) -> Any: ...

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any: ...

    def tool_schemas(self, names: tuple[str, ...]) -> list[dict]: ...

    def take_prompts(self) -> list[str]: ...


@functools.cache
def response_format(output: type[BaseModel]) -> dict[str, Any]:
    """The JSON-schema response format of a typed output (built once per class: ~3 ms)."""
    return {"type": "json_schema", "name": output.__name__, "schema": output.model_json_schema()}


def parse_output(output: type[BaseModel], text: str) -> BaseModel:
    """The model's final answer as the archetype's typed output."""
    return output.model_validate_json(unfence(text.strip()))


async def run_agent(ctx: AgentContext, archetype: Archetype, instruction: str) -> BaseModel:
    """Run one agent to its typed answer; raise `WorkflowError` if it never gives one."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": archetype.system_prompt},
        {"role": "user", "content": instruction},
    ]
    fmt = response_format(archetype.output)
    for _ in range(archetype.max_steps):
        for prompt in ctx.take_prompts():
            messages.append({"role": "system", "content": prompt})
        tools = ctx.tool_schemas(archetype.tools)
        completion = await ctx.complete(messages, archetype=archetype, tools=tools or None,
                                        response_format=fmt)
        if completion.tool_calls:
            messages.append({
                "role": "assistant",
                "content": completion.text,
                "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments}
                               for c in completion.tool_calls],
            })
            offered = {t["name"] for t in tools}
            for call in completion.tool_calls:
                content = await _tool_result(ctx, call.name, call.arguments, offered)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            continue
        try:
            return parse_output(archetype.output, completion.text)
        except (ValidationError, ValueError) as exc:
            messages.append({"role": "assistant", "content": completion.text})
            messages.append({
                "role": "user",
                "content": f"That answer is not valid {archetype.output.__name__} JSON: "
                f"{str(exc)[:500]}. Answer again with JSON only.",
            })
    raise WorkflowError(f"agent {archetype.name!r} gave no valid answer in "
                        f"{archetype.max_steps} steps")


async def _tool_result(ctx: AgentContext, name: str, arguments: dict[str, Any],
                       offered: set[str]) -> str:
    """A tool's result for the model; a failed tool becomes an error message it can act on."""
    if name not in offered:
        return f"error: tool {name!r} is not available now; available: {sorted(offered)}"
    try:
        result = await ctx.call_tool(name, arguments)
    except (BudgetExceededError, ConfigurationError):
        raise  # money and misconfiguration stop the run, not the model
    except CircuitOpenError as exc:
        return f"error: {exc}"
    except Exception as exc:  # reported as tool.failed already; the model decides what next
        return f"error: {type(exc).__name__}: {exc}"[:TOOL_RESULT_LIMIT]
    if isinstance(result, str):
        return result[:TOOL_RESULT_LIMIT]
    return json.dumps(result, default=str)[:TOOL_RESULT_LIMIT]
