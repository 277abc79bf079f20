"""OpenAI-compatible chat completions over httpx.

Speaks `POST {base_url}/chat/completions`, so besides OpenAI it reaches any
server with the same API: Ollama (`http://localhost:11434/v1`), vLLM,
llama.cpp's server, OpenRouter. Key and base URL come from the arguments or
`OPENAI_API_KEY` / `OPENAI_BASE_URL`.
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
)

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(HTTPProvider):
    """Chat completions with tool calls and JSON output, for OpenAI and compatible servers.

    `token_param` names the length limit field: OpenAI itself wants
    `max_completion_tokens` (reasoning models refuse `max_tokens`), while most
    compatible servers read `max_tokens`; by default it follows the host.
    """

    name = "openai"
    price_provider = "openai"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        headers: dict[str, str] | None = None,
        *,
        token_param: str | None = None,
    ) -> None:
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        official = "api.openai.com" in base_url
        if api_key is None and official:
            raise ConfigurationError(
                "OpenAIProvider needs an API key: pass api_key= or set OPENAI_API_KEY "
                "(a local server such as Ollama needs only OPENAI_BASE_URL)"
            )
        all_headers = {"content-type": "application/json"}
        if api_key:
            all_headers["authorization"] = f"Bearer {api_key}"
        all_headers.update(headers or {})
        super().__init__(
            base_url=base_url, timeout=timeout, transport=transport, clock=clock,
            headers=all_headers,
        )
        self.token_param = token_param or ("max_completion_tokens" if official else "max_tokens")

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self.base_url!r})"

    path = "chat/completions"

    def build(self, messages: list[dict], *, model: str, max_tokens: int,
              tools: list[dict] | None, response_format: dict | None,
              temperature: float | None) -> dict[str, Any]:
        return build_request(messages, model=model, max_tokens=max_tokens, tools=tools,
                             response_format=response_format, temperature=temperature,
                             token_param=self.token_param)

    def parse(self, data: dict, *, model: str, latency: float,
              response_format: dict | None) -> Completion:
        return parse_response(data, model=model, latency=latency)


def to_openai_message(message: dict) -> dict:
    """A neutral message in the chat completions shape (tool call arguments as JSON text)."""
    role = message["role"]
    out: dict[str, Any] = {"role": role, "content": message.get("content")}
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
            }
            for call in message["tool_calls"]
        ]
    elif role == "tool":
        out["tool_call_id"] = message["tool_call_id"]
        out["content"] = message_text(message.get("content"))
    if out["content"] is None and role != "assistant":
        out["content"] = ""
    if message.get("name"):
        out["name"] = message["name"]
    return out


def build_request(
    messages: list[dict],
    *,
    model: str,
    max_tokens: int,
    tools: list[dict] | None,
    response_format: dict | None,
    temperature: float | None,
    token_param: str = "max_tokens",
) -> dict[str, Any]:
    """The JSON body of `POST /chat/completions`."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": [to_openai_message(m) for m in messages],
        token_param: max_tokens,
    }
    if tools:
        payload["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "description": tool.get("description", ""),
                    "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
                },
            }
            for tool in tools
        ]
    if response_format:
        kind = response_format.get("type")
        if kind == "json_schema":
            spec: dict[str, Any] = {
                "name": response_format.get("name") or "response",
                "schema": response_format["schema"],
            }
            if "strict" in response_format:
                spec["strict"] = bool(response_format["strict"])
            payload["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif kind == "json_object":
            payload["response_format"] = {"type": "json_object"}
        else:
            raise ConfigurationError(
                f"response_format type {kind!r} unknown; use 'json_object' or 'json_schema'"
            )
    if temperature is not None:
        payload["temperature"] = temperature
    return payload


def parse_response(data: dict, *, model: str, latency: float) -> Completion:
    """A `Completion` from a chat completions body; KeyError/TypeError/ValueError if malformed."""
    choice = data["choices"][0]
    message = choice["message"]
    calls = []
    for raw in message.get("tool_calls") or []:
        function = raw["function"]
        arguments = function.get("arguments") or "{}"
        decoded = json.loads(arguments) if isinstance(arguments, str) else arguments
        if not isinstance(decoded, dict):
            raise TypeError(f"arguments of tool call {raw.get('id')!r} are not an object")
        calls.append(ToolCall(id=str(raw["id"]), name=str(function["name"]), arguments=decoded))
    usage = data["usage"]
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Completion(
        text=message_text(message.get("content")),
        tool_calls=calls,
        usage=Usage(
            input_tokens=require_int(usage, "prompt_tokens"),
            output_tokens=require_int(usage, "completion_tokens"),
            cached_tokens=require_int(prompt_details, "cached_tokens", 0),
            reasoning_tokens=require_int(completion_details, "reasoning_tokens", 0),
        ),
        model=str(data.get("model") or model),
        provider=OpenAIProvider.name,
        latency=latency,
        finish_reason=choice.get("finish_reason"),
    )
