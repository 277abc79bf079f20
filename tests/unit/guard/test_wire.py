"""Reading requests, answers and streams of the three model APIs."""

from __future__ import annotations

import json

import pytest

from taskorch_nb.guard import wire
from taskorch_nb.llm.base import estimate_input_tokens


@pytest.mark.parametrize(("method", "path", "kind"), [
    ("POST", "/v1/chat/completions", wire.OPENAI_CHAT),
    ("POST", "/api/v1/responses", wire.OPENAI_RESPONSES),
    ("POST", "/v1/messages", wire.ANTHROPIC_MESSAGES),
    ("GET", "/v1/chat/completions", None),
    ("POST", "/v1/embeddings", None),
    ("POST", "/v1/messages/count_tokens", None),
])
def test_kind_of(method, path, kind) -> None:
    assert wire.kind_of(method, path) == kind


def test_a_chat_request_is_read_with_its_cap_and_estimate() -> None:
    messages = [{"role": "user", "content": "hello there"}]
    body = {"model": "m", "messages": messages, "max_completion_tokens": 77, "stream": True}
    ask = wire.read_ask(wire.OPENAI_CHAT, json.dumps(body).encode())
    assert (ask.provider, ask.model, ask.stream, ask.max_tokens) == ("openai", "m", True, 77)
    assert ask.input_tokens == estimate_input_tokens(messages)


def test_an_anthropic_request_counts_its_system_prompt() -> None:
    body = {"model": "c", "system": "x" * 300, "max_tokens": 10,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    ask = wire.read_ask(wire.ANTHROPIC_MESSAGES, json.dumps(body).encode())
    assert ask.provider == "anthropic"
    assert ask.input_tokens > 100  # the 300-byte system prompt is in the estimate


def test_a_request_without_a_cap_gets_the_default_worst_case() -> None:
    body = {"model": "m", "input": "hi"}
    assert wire.read_ask(wire.OPENAI_RESPONSES, json.dumps(body).encode()).max_tokens == 4096
    assert wire.read_ask(wire.OPENAI_RESPONSES, json.dumps(body).encode(), 99).max_tokens == 99


@pytest.mark.parametrize("content", [b"[1]", b'{"messages": []}', b"not json"])
def test_an_unreadable_body_is_a_value_error(content) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's and ours share the type
        wire.read_ask(wire.OPENAI_CHAT, content)


def test_a_chat_stream_is_asked_for_its_usage_once() -> None:
    ask = wire.read_ask(wire.OPENAI_CHAT, b'{"model": "m", "stream": true}')
    assert wire.asking_for_usage(ask) is True
    assert ask.body["stream_options"] == {"include_usage": True}
    assert wire.asking_for_usage(ask) is False  # the caller's choice stands
    plain = wire.read_ask(wire.OPENAI_CHAT, b'{"model": "m"}')
    assert wire.asking_for_usage(plain) is False


def test_usage_of_whole_answers() -> None:
    chat = {"choices": [{"message": {"tool_calls": [{}, {}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4,
                      "prompt_tokens_details": {"cached_tokens": 3}}}
    assert wire.read_usage(wire.OPENAI_CHAT, chat) == wire.Tokens(10, 4, 3, tool_calls=2)
    responses = {"output": [{"type": "function_call"}, {"type": "message"}],
                 "usage": {"input_tokens": 8, "output_tokens": 2}}
    assert wire.read_usage(wire.OPENAI_RESPONSES, responses) == wire.Tokens(8, 2, tool_calls=1)
    claude = {"content": [{"type": "tool_use"}],
              "usage": {"input_tokens": 5, "output_tokens": 6, "cache_read_input_tokens": 7,
                        "cache_creation_input_tokens": 2}}
    assert wire.read_usage(wire.ANTHROPIC_MESSAGES, claude) == wire.Tokens(14, 6, 7, 2, 1)
    assert wire.read_usage(wire.OPENAI_CHAT, {"choices": []}) is None


def _sse(events: list[dict]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def test_a_stream_split_anywhere_gives_the_same_count() -> None:
    data = _sse([{"choices": [{"delta": {"content": w}}]} for w in ("a", "b", "c")]) \
        + b"data: [DONE]\n\n"
    for size in (1, 7, len(data)):
        meter = wire.StreamMeter(wire.OPENAI_CHAT, estimated_input=40)
        for i in range(0, len(data), size):
            meter.feed(data[i:i + size])
        assert meter.tokens() == wire.Tokens(40, 3, estimated=True)


def test_a_streams_own_usage_wins_over_the_count() -> None:
    meter = wire.StreamMeter(wire.OPENAI_CHAT, estimated_input=40)
    meter.feed(_sse([{"choices": [{"delta": {"content": "a"}}]},
                     {"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]},
                     {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}]))
    assert meter.tokens() == wire.Tokens(9, 2, tool_calls=1)


def test_anthropic_and_responses_streams() -> None:
    meter = wire.StreamMeter(wire.ANTHROPIC_MESSAGES, estimated_input=1)
    meter.feed(_sse([
        {"type": "message_start", "message": {"usage": {"input_tokens": 30,
                                                        "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use"}},
        {"type": "content_block_delta", "delta": {}},
        {"type": "message_delta", "usage": {"output_tokens": 12}}]))
    assert meter.tokens() == wire.Tokens(30, 12, tool_calls=1)
    meter = wire.StreamMeter(wire.OPENAI_RESPONSES, estimated_input=1)
    meter.feed(_sse([{"type": "response.output_text.delta", "delta": "x"},
                     {"type": "response.completed",
                      "response": {"usage": {"input_tokens": 4, "output_tokens": 1}}}]))
    assert meter.tokens() == wire.Tokens(4, 1)


def test_error_bodies_speak_each_apis_shape() -> None:
    claude = json.loads(wire.error_body(wire.ANTHROPIC_MESSAGES, "no", "budget_exceeded"))
    assert claude == {"type": "error", "error": {"type": "budget_exceeded", "message": "no"}}
    chat = json.loads(wire.error_body(wire.OPENAI_CHAT, "no", "budget_exceeded"))
    assert chat["error"]["message"] == "no"
    assert chat["error"]["code"] == "budget_exceeded"
