"""What a guarded request asks and what its answer cost, read from the wire.

The guard sees HTTP, not SDK objects, so it reads the three request shapes the official
SDKs send: OpenAI's chat completions and responses, and Anthropic's messages. From a
request it takes the model, the prompt (for the worst-case estimate), the answer's cap
and whether it streams; from an answer, the usage the server reported. A stream is read
as it passes (server-sent events): its usage when the server sends one, otherwise the
tokens are counted (one per content chunk, as llama.cpp streams) and marked estimated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taskorch_nb.llm.base import estimate_input_tokens

#: Assumed answer cap of a request that names none: the worst case must be bounded.
DEFAULT_MAX_TOKENS = 4096

OPENAI_CHAT = "openai.chat"
OPENAI_RESPONSES = "openai.responses"
ANTHROPIC_MESSAGES = "anthropic.messages"


@dataclass(slots=True)
class Ask:
    """One model request as the guard understands it."""

    kind: str
    provider: str
    """The wire's vendor ("openai" or "anthropic"): the breaker's and the price's prefix."""
    model: str
    stream: bool
    input_tokens: int
    """An upper estimate of the prompt, for the reservation."""
    max_tokens: int
    body: dict[str, Any]


@dataclass(slots=True)
class Tokens:
    """What one answer used (and whether the guard had to count it itself)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    tool_calls: int = 0
    estimated: bool = False


def kind_of(method: str, path: str) -> str | None:
    """Which model API a request calls, or None for any other request (passed through)."""
    if method != "POST":
        return None
    if path.endswith("/chat/completions"):
        return OPENAI_CHAT
    if path.endswith("/responses"):
        return OPENAI_RESPONSES
    if path.endswith("/messages"):
        return ANTHROPIC_MESSAGES
    return None


def read_ask(kind: str, content: bytes, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> Ask:
    """Parse a request body; ValueError when it is not the JSON object the API takes."""
    body = json.loads(content or b"{}")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ValueError("the request body is not a JSON object naming a model")
    tools = body.get("tools") if isinstance(body.get("tools"), list) else None
    if kind == OPENAI_CHAT:
        messages = _dicts(body.get("messages"))
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
    elif kind == OPENAI_RESPONSES:
        given = body.get("input")
        messages = [{"content": given}] if isinstance(given, str) else _dicts(given)
        if isinstance(body.get("instructions"), str):
            messages.append({"content": body["instructions"]})
        cap = body.get("max_output_tokens")
    else:
        messages = _dicts(body.get("messages"))
        if body.get("system"):
            messages.append({"content": body["system"]})
        cap = body.get("max_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        cap = default_max_tokens
    return Ask(kind=kind, provider="anthropic" if kind == ANTHROPIC_MESSAGES else "openai",
               model=body["model"], stream=body.get("stream") is True,
               input_tokens=estimate_input_tokens(messages, tools), max_tokens=cap, body=body)


def _dicts(value: Any) -> list[dict]:
    if not isinstance(value, list):
        return []
    return [m if isinstance(m, dict) else {"content": m} for m in value]


def asking_for_usage(ask: Ask) -> bool:
    """Ask a chat stream to carry its usage in the last chunk (OpenAI's
    `stream_options.include_usage`); True when the body was changed."""
    if ask.kind != OPENAI_CHAT or not ask.stream:
        return False
    options = ask.body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is not None:
        return False
    ask.body["stream_options"] = {**(options or {}), "include_usage": True}
    return True


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _int(mapping: Any, key: str) -> int:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def read_usage(kind: str, data: Any) -> Tokens | None:
    """The usage of a whole (not streamed) answer, or None when it carries none."""
    if not isinstance(data, dict) or not isinstance(data.get("usage"), dict):
        return None
    usage = data["usage"]
    if kind == OPENAI_CHAT:
        message = ((data.get("choices") or [{}])[0] or {}).get("message") or {}
        return Tokens(_int(usage, "prompt_tokens"), _int(usage, "completion_tokens"),
                      _int(usage.get("prompt_tokens_details"), "cached_tokens"),
                      tool_calls=len(message.get("tool_calls") or []))
    if kind == OPENAI_RESPONSES:
        calls = sum(1 for item in data.get("output") or []
                    if isinstance(item, dict) and item.get("type") == "function_call")
        return Tokens(_int(usage, "input_tokens"), _int(usage, "output_tokens"),
                      _int(usage.get("input_tokens_details"), "cached_tokens"),
                      tool_calls=calls)
    return _anthropic_usage(usage, sum(1 for block in data.get("content") or []
                                       if isinstance(block, dict)
                                       and block.get("type") == "tool_use"))


def _anthropic_usage(usage: dict, tool_calls: int = 0) -> Tokens:
    read, write = _int(usage, "cache_read_input_tokens"), _int(usage, "cache_creation_input_tokens")
    return Tokens(_int(usage, "input_tokens") + read + write, _int(usage, "output_tokens"),
                  read, write, tool_calls)


@dataclass(slots=True)
class StreamMeter:
    """Reads a server-sent-event stream as it passes and keeps what it cost."""

    kind: str
    estimated_input: int
    _buffer: bytes = b""
    _usage: Tokens | None = None
    _chunks: int = 0
    _calls: set[Any] = field(default_factory=set)
    _input: int = 0
    _output: int = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if not payload or payload == b"[DONE]":
            return
        try:
            event = json.loads(payload)
        except ValueError:
            return  # not ours to judge: the SDK reports a broken stream
        if isinstance(event, dict):
            self._event(event)

    def _event(self, event: dict) -> None:
        kind = self.kind
        if kind == OPENAI_CHAT:
            if isinstance(event.get("usage"), dict):
                self._usage = read_usage(kind, {"usage": event["usage"]})
            for choice in event.get("choices") or []:
                delta = (choice or {}).get("delta") or {}
                if delta.get("content") or delta.get("refusal"):
                    self._chunks += 1
                for call in delta.get("tool_calls") or []:
                    self._chunks += 1
                    self._calls.add(call.get("index", call.get("id")))
        elif kind == OPENAI_RESPONSES:
            what = event.get("type", "")
            if what.endswith(".delta"):
                self._chunks += 1
            elif what == "response.output_item.added" and (
                    (event.get("item") or {}).get("type") == "function_call"):
                self._calls.add(event.get("output_index"))
            elif what == "response.completed":
                self._usage = read_usage(kind, event.get("response"))
        else:
            what = event.get("type")
            if what == "message_start":
                usage = _anthropic_usage((event.get("message") or {}).get("usage") or {})
                self._input = usage.input_tokens
                self._usage = usage
            elif what == "content_block_start":
                if (event.get("content_block") or {}).get("type") == "tool_use":
                    self._calls.add(event.get("index"))
            elif what == "content_block_delta":
                self._chunks += 1
            elif what == "message_delta" and isinstance(event.get("usage"), dict):
                self._output = _int(event["usage"], "output_tokens")
                if self._usage is not None:
                    self._usage.output_tokens = self._output

    def tokens(self) -> Tokens:
        """What the stream cost so far: the server's usage, else a count."""
        if self._buffer.strip():
            self._line(self._buffer.strip())
            self._buffer = b""
        usage = self._usage
        calls = len(self._calls)
        if usage is not None and (usage.output_tokens or not self._chunks):
            usage.tool_calls = calls
            return usage
        return Tokens(self._input or self.estimated_input, max(self._chunks, 0),
                      tool_calls=calls, estimated=True)


def error_body(kind: str, message: str, reason: str) -> bytes:
    """An error answer in the API's own shape, so the SDK raises its usual error class."""
    if kind == ANTHROPIC_MESSAGES:
        body = {"type": "error", "error": {"type": reason, "message": message}}
    else:
        body = {"error": {"message": message, "type": reason, "code": reason, "param": None}}
    return json.dumps(body).encode()


__all__ = [
    "ANTHROPIC_MESSAGES", "DEFAULT_MAX_TOKENS", "OPENAI_CHAT", "OPENAI_RESPONSES", "Ask",
    "StreamMeter", "Tokens", "asking_for_usage", "encode", "error_body", "kind_of",
    "read_ask", "read_usage",
]
