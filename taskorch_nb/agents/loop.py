"""The agent loop: ask the model, run the tools it asks for, until it answers.

The loop owns no guards: every model call and tool call goes through the
`AgentContext` the run hands it (budget, breakers, retries, immune system,
journal). Tools whose breaker is open are withheld from the model, and the
immune system's corrective prompts are added to the conversation as they come.

Small models loop and ramble, so the conversation is kept lean: only the latest
invalid answer and its repair request stay in it, and an agent that makes the
same tool call `REPEAT_LIMIT` times (a reply may hold several) is stopped with a
`WorkflowError`. The first repeat already withholds the tools for the rest of the
agent's run, so the model answers with what it has instead of asking again.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
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
from taskorch_nb.llm.prompted import extract_json

TOOL_RESULT_LIMIT = 8000
#: The same tool with the same arguments this many times in one agent run: it is looping.
REPEAT_LIMIT = 3


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
    """The model's final answer as the archetype's typed output.

    Code fences and prose around the JSON object are tolerated (prompted JSON from a
    server without a JSON mode); the object itself must be valid.
    """
    text = unfence(text.strip())
    try:
        return output.model_validate_json(text)
    except ValidationError:
        found = extract_json(text)
        if found is None or found == text.strip():
            raise
        return output.model_validate_json(found)


async def run_agent(ctx: AgentContext, archetype: Archetype, instruction: str) -> BaseModel:
    """Run one agent to its typed answer; raise `WorkflowError` if it never gives one."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": archetype.system_prompt},
        {"role": "user", "content": instruction},
    ]
    fmt = response_format(archetype.output)
    calls: Counter[tuple[str, str]] = Counter()
    repair: list[dict[str, Any]] = []
    withhold = False
    for _ in range(archetype.max_steps):
        for prompt in ctx.take_prompts():
            messages.append({"role": "system", "content": prompt})
        tools = [] if withhold else ctx.tool_schemas(archetype.tools)
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
                seen = _count(calls, archetype, call.name, call.arguments)
                content = await _tool_result(ctx, call.name, call.arguments, offered)
                if seen > 1:
                    withhold = True
                    content += (f"\n(You made this exact call {seen} times and its result is "
                                "above. No more tools: give your final answer now.)")
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            continue
        try:
            return parse_output(archetype.output, completion.text)
        except (ValidationError, ValueError) as exc:
            for stale in repair:  # only the latest repair stays: they must not pile up
                messages.remove(stale)
            cut = (" It was cut off at the length limit: answer shorter."
                   if completion.finish_reason == "length" else "")
            repair = [
                {"role": "assistant", "content": completion.text},
                {"role": "user",
                 "content": f"That answer is not valid {archetype.output.__name__} JSON: "
                 f"{str(exc)[:500]}.{cut} Answer again with JSON only."},
            ]
            messages.extend(repair)
    raise WorkflowError(f"agent {archetype.name!r} gave no valid answer in "
                        f"{archetype.max_steps} steps")


def _count(calls: Counter[tuple[str, str]], archetype: Archetype, name: str,
           arguments: dict[str, Any]) -> int:
    """How often this exact call was made; a `WorkflowError` at `REPEAT_LIMIT`."""
    key = (name, json.dumps(arguments, sort_keys=True, default=str))
    calls[key] += 1
    if calls[key] >= REPEAT_LIMIT:
        shown = key[1] if len(key[1]) <= 200 else key[1][:200] + "..."
        raise WorkflowError(
            f"agent {archetype.name!r} called {name}({shown}) {calls[key]} times with the same "
            "arguments: the model is looping, so the agent stops"
        )
    return calls[key]


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
