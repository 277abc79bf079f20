"""Anthropic Messages API over httpx.

`POST {base}/v1/messages` with `x-api-key` and `anthropic-version`. System
messages move to the top-level `system` field, tool calls become `tool_use`
blocks and tool answers `tool_result` blocks (consecutive turns of one role
are merged, as the API wants strict alternation). JSON output is asked for in
the system prompt, which every Claude model and Anthropic-compatible endpoint
honours; a fenced answer is unwrapped. Key and base URL come from the
arguments or `ANTHROPIC_API_KEY` / `ANTHROPIC_BASE_URL`.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from taskorch_nb.core.clock import Clock
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.llm.base import (
    Completion,
    HTTPProvider,
    ToolCall,
    Usage,
    message_text,
    require_int,
    unfence,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

class AnthropicProvider(HTTPProvider):
    """Claude through the Messages API, with tool use and JSON output."""

    name = "anthropic"
    price_provider = "anthropic"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        api_key = api_key or os.environ.get("ANTHROPIC_API_KEY") or None
        base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL
        if api_key is None and "api.anthropic.com" in base_url:
            raise ConfigurationError(
                "AnthropicProvider needs an API key: pass api_key= or set ANTHROPIC_API_KEY"
            )
        all_headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if api_key:
            all_headers["x-api-key"] = api_key
        all_headers.update(headers or {})
        super().__init__(
            base_url=base_url, timeout=timeout, transport=transport, clock=clock,
            headers=all_headers,
        )

    def __repr__(self) -> str:
        return f"AnthropicProvider(base_url={self.base_url!r})"

    path = "v1/messages"

    def build(self, messages: list[dict], *, model: str, max_tokens: int,
              tools: list[dict] | None, response_format: dict | None,
              temperature: float | None) -> dict[str, Any]:
        return build_request(messages, model=model, max_tokens=max_tokens, tools=tools,
                             response_format=response_format, temperature=temperature)

    def parse(self, data: dict, *, model: str, latency: float,
              response_format: dict | None) -> Completion:
        return parse_response(data, model=model, latency=latency,
                              wants_json=bool(response_format))


def json_instruction(response_format: dict) -> str:
    """The system-prompt line that asks for JSON output."""
    kind = response_format.get("type")
    if kind == "json_object":
        return "Answer with one JSON object and nothing else: no prose, no code fences."
    if kind == "json_schema":
        schema = json.dumps(response_format["schema"], separators=(",", ":"))
        return (
            "Answer with one JSON object and nothing else (no prose, no code fences) "
            f"that validates against this JSON schema: {schema}"
        )
    raise ConfigurationError(
        f"response_format type {kind!r} unknown; use 'json_object' or 'json_schema'"
    )


def _blocks(message: dict) -> list[dict[str, Any]]:
    """A neutral user/assistant/tool message as Anthropic content blocks."""
    role = message["role"]
    text = message_text(message.get("content"))
    if role == "tool":
        return [{"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": text}]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    if role == "assistant":
        blocks += [
            {"type": "tool_use", "id": call["id"], "name": call["name"],
             "input": call["arguments"]}
            for call in message.get("tool_calls") or []
        ]
    return blocks


def build_request(
    messages: list[dict],
    *,
    model: str,
    max_tokens: int,
    tools: list[dict] | None,
    response_format: dict | None,
    temperature: float | None,
) -> dict[str, Any]:
    """The JSON body of `POST /v1/messages`."""
    system = [message_text(m.get("content")) for m in messages if m["role"] == "system"]
    if response_format:
        system.append(json_instruction(response_format))
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message["role"] == "system":
            continue
        role = "assistant" if message["role"] == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    payload: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": turns}
    if system:
        payload["system"] = "\n\n".join(s for s in system if s)
    if tools:
        payload["tools"] = [
            {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "input_schema": tool.get("parameters") or {"type": "object", "properties": {}},
            }
            for tool in tools
        ]
    if temperature is not None:
        payload["temperature"] = temperature
    return payload


def parse_response(
    data: dict, *, model: str, latency: float, wants_json: bool = False
) -> Completion:
    """A `Completion` from a Messages body; KeyError/TypeError/ValueError if malformed."""
    if data.get("type") not in (None, "message"):
        raise ValueError(f"answer type is {data.get('type')!r}, not 'message'")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in data["content"]:
        if block["type"] == "text":
            texts.append(str(block["text"]))
        elif block["type"] == "tool_use":
            arguments = block["input"]
            if not isinstance(arguments, dict):
                raise TypeError(f"input of tool_use {block.get('id')!r} is not an object")
            calls.append(ToolCall(id=str(block["id"]), name=str(block["name"]),
                                  arguments=arguments))
    text = "".join(texts)
    if wants_json:
        text = unfence(text)
    usage = data["usage"]
    fresh = require_int(usage, "input_tokens")
    cache_read = require_int(usage, "cache_read_input_tokens", 0)
    cache_write = require_int(usage, "cache_creation_input_tokens", 0)
    return Completion(
        text=text,
        tool_calls=calls,
        usage=Usage(
            input_tokens=fresh + cache_read + cache_write,
            output_tokens=require_int(usage, "output_tokens"),
            cached_tokens=cache_read,
            cache_write_tokens=cache_write,
        ),
        model=str(data.get("model") or model),
        provider=AnthropicProvider.name,
        latency=latency,
        finish_reason=data.get("stop_reason"),
    )
