"""Structured output and tool calls for servers whose API lacks them: said in the prompt.

When a server has no JSON schema mode, the schema goes into the system prompt
(pydantic-ai's "prompted output"). When it never returns tool calls, the tools
are described in the prompt and the model calls one by answering with a JSON
action object, `{"tool": "write_file", "arguments": {...}}`; earlier calls and
their results travel as ordinary assistant and user turns. With a server that
constrains its output to a schema (llama.cpp's JSON mode with a schema), the
schema given is the union of every action and the final answer, so even a very
small model answers with something this module can read.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from taskorch_nb.llm.base import ToolCall, message_text

_ids = itertools.count(1)


def output_instructions(schema: dict[str, Any], *, final: bool = False) -> str:
    """The prompt that stands in for a JSON schema response format (`final`: after tools)."""
    lead = ("The final answer is only a JSON object that matches this JSON schema"
            if final else "Answer with only a JSON object that matches this JSON schema")
    return (f"{lead}, with no text and no code fences around it:\n"
            + json.dumps(schema, separators=(",", ":")))


def _signature(tool: dict[str, Any]) -> str:
    props = (tool.get("parameters") or {}).get("properties") or {}
    args = ", ".join(f'"{name}": {spec.get("type", "value")}' for name, spec in props.items())
    description = (tool.get("description") or "").strip().splitlines()
    summary = f": {description[0]}" if description else ""
    return f'- {tool["name"]} {{{args}}}{summary}'


def tool_instructions(tools: list[dict[str, Any]], *, final: str) -> str:
    """The prompt that stands in for the API's `tools`; `final` says how to finish."""
    listed = "\n".join(_signature(tool) for tool in tools)
    return (
        "You can use tools. To call one, answer with only this JSON object:\n"
        '{"tool": "<tool name>", "arguments": {<arguments>}}\n'
        "Its result comes back in the next message. The tools:\n"
        f"{listed}\n{final}"
    )


def action_schema(tools: list[dict[str, Any]], output: dict[str, Any] | None) -> dict[str, Any]:
    """One schema for "call one of these tools" or "give the final answer" (`output`)."""
    choices: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "tool": {"type": "string", "const": tool["name"]},
                "arguments": tool.get("parameters") or {"type": "object", "properties": {}},
            },
            "required": ["tool", "arguments"],
        }
        for tool in tools
    ]
    union: dict[str, Any] = {"anyOf": choices}
    if output is not None:
        answer = dict(output)
        defs = answer.pop("$defs", None)  # refs point at the root: hoist them there
        choices.append(answer)
        if defs:
            union["$defs"] = defs
    return union


def as_text_turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with tool calls as JSON action text and results as user turns."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            actions = []
            for call in message["tool_calls"]:
                names[call["id"]] = call["name"]
                actions.append(json.dumps({"tool": call["name"], "arguments": call["arguments"]},
                                          ensure_ascii=False))
            out.append({"role": "assistant", "content": "\n".join(actions)})
        elif role == "tool":
            name = names.get(message.get("tool_call_id", ""), "the tool")
            out.append({"role": "user",
                        "content": f"Result of {name}:\n{message_text(message.get('content'))}"})
        else:
            out.append(message)
    return out


def with_instructions(messages: list[dict[str, Any]], parts: list[str]) -> list[dict[str, Any]]:
    """`parts` added to the first system message (some chat templates take only one)."""
    if not parts:
        return messages
    extra = "\n\n".join(parts)
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{message_text(first.get('content'))}\n\n{extra}"
        return [first, *messages[1:]]
    return [{"role": "system", "content": extra}, *messages]


def extract_json(text: str) -> str | None:
    """The first complete JSON object in `text` (prose or fences around it), else None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return text[start:end]
        start = text.find("{", end)
    return None


def parse_action(text: str, tools: list[dict[str, Any]],
                 output: dict[str, Any] | None) -> ToolCall | None:
    """The tool call a prompted answer makes, or None when it is the final answer.

    Reads `{"tool": name, "arguments": {...}}` and the common `{"name": ..., "arguments":
    ...}`, for an offered tool only, and never when the final answer's own schema has a
    field of that name.
    """
    found = extract_json(text)
    if found is None:
        return None
    data = json.loads(found)
    offered = {tool["name"] for tool in tools}
    answer_fields = set((output or {}).get("properties") or {})
    for key in ("tool", "name"):
        name = data.get(key)
        if key in answer_fields or not isinstance(name, str) or name not in offered:
            continue
        arguments = data.get("arguments", data.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if not isinstance(arguments, dict):
            return None
        return ToolCall(id=f"call_p{next(_ids)}", name=name, arguments=arguments)
    return None
